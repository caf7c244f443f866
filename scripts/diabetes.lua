-- Diabetes progression (442 samples, 10 features): regression with MSE loss on
-- standardised features and target, reporting R^2 (and RMSE in the target's units) on a
-- hold-out.
local lunar = require("lunar")
local nn, train, metrics, data = lunar.nn, lunar.train, lunar.metrics, lunar.data

lunar.manual_seed(0)
local X, y = data.diabetes()
local Xtr, Xte, ytr, yte = data.train_test_split(X, y, {test_size = 0.2, seed = 0})
local mu, sd = Xtr:mean(1, true), Xtr:std(1, {keepdim = true})
Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
local ym, ys = ytr:mean():item(), ytr:std():item()
local ttr = ((ytr - ym) / ys):view(-1, 1)
print(("diabetes: %d training, %d hold-out samples, target mean %.1f, std %.1f")
  :format(Xtr:size(1), Xte:size(1), ym, ys))

local model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))
local history = train.fit(model, {Xtr, ttr}, {
  loss = "mse", optimizer = lunar.optim.Adam(model:parameters(), {lr = 3e-3,
    weight_decay = 1e-3}),
  epochs = 100, batch_size = 32, validation_split = 0.2, metrics = {"mae"}, seed = 0,
  callbacks = {train.EarlyStopping({patience = 15, restore_best_weights = true})},
  verbose = 0,
})
print(("trained %d epochs; last train MSE %.4f, best validation MSE %.4f (standardised)")
  :format(#history.loss, history.loss[#history.loss], math.min(table.unpack(history.val_loss))))
local pred = train.predict(model, Xte):view(-1) * ys + ym
print(("hold-out: R^2 %.3f  RMSE %.1f  MAE %.1f"):format(metrics.r2_score(yte, pred),
  metrics.rmse(yte, pred), metrics.mae(yte, pred)))
