-- 5-fold stratified cross-validation of a small MLP on iris: each fold standardises with
-- its training statistics, trains a fresh 4-16-3 network with fit, and scores its test
-- fold; the mean and (sample) standard deviation of the accuracies summarise the model.
local lunar = require("lunar")
local nn, train, data = lunar.nn, lunar.train, lunar.data

lunar.manual_seed(0)
local X, y = data.iris()
local folds = data.stratified_kfold(y, 5, {shuffle = true, seed = 0})
local accs = {}
for k, f in ipairs(folds) do
  local Xtr, ytr = X:index_select(1, f.train), y:index_select(1, f.train)
  local Xte, yte = X:index_select(1, f.test), y:index_select(1, f.test)
  local mu, sd = Xtr:mean(1, true), Xtr:std(1, {keepdim = true})
  Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
  local model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
  train.fit(model, {Xtr, ytr}, {loss = "cross_entropy",
    optimizer = lunar.optim.Adam(model:parameters(), {lr = 0.01}), epochs = 60,
    batch_size = 16, seed = k, verbose = 0})
  local ev = train.evaluate(model, {Xte, yte}, {loss = "cross_entropy", metrics = {"accuracy"}})
  accs[k] = ev.accuracy
  print(("fold %d: %d train, %d test, test loss %.4f, accuracy %.4f"):format(k,
    Xtr:size(1), Xte:size(1), ev.loss, ev.accuracy))
end
local acc = lunar.tensor(accs, {dtype = "float64"})
print(("5-fold accuracy: mean %.4f, std %.4f"):format(acc:mean():item(), acc:std():item()))
