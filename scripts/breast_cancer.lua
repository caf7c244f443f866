-- Wisconsin breast cancer (569 samples, 30 features): a stratified hold-out, features
-- standardised with the training statistics, class weights against the 37/63 imbalance,
-- early stopping on the validation loss with the best weights restored, and precision,
-- recall, F1 and ROC-AUC of the malignant class on the hold-out.
local lunar = require("lunar")
local nn, train, metrics, data = lunar.nn, lunar.train, lunar.metrics, lunar.data

lunar.manual_seed(0)
local X, y, info = data.breast_cancer()       -- y: 1 = malignant, 2 = benign
local Xtr, Xte, ytr, yte = data.train_test_split(X, y, {test_size = 0.25, seed = 0,
  stratify = true})
local mu, sd = Xtr:mean(1, true), Xtr:std(1, {keepdim = true})
Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd

-- "balanced" weights: n / (classes * count of the class)
local counts = {0, 0}
for _, c in ipairs(ytr:totable()) do counts[c] = counts[c] + 1 end
local n = ytr:size(1)
local class_weight = {[1] = n / (2 * counts[1]), [2] = n / (2 * counts[2])}
print(("breast cancer: %d training (%d %s, %d %s), %d hold-out; class weights %.3f, %.3f")
  :format(n, counts[1], info.classes[1], counts[2], info.classes[2], yte:size(1),
  class_weight[1], class_weight[2]))

local model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
local stop = train.EarlyStopping({monitor = "val_loss", patience = 10,
  restore_best_weights = true, verbose = true})
local history = train.fit(model, {Xtr, ytr}, {
  loss = "cross_entropy", optimizer = lunar.optim.Adam(model:parameters(), {lr = 1e-3}),
  epochs = 200, batch_size = 16, validation_split = 0.2, metrics = {"accuracy"},
  class_weight = class_weight, callbacks = {stop}, seed = 0, verbose = 0,
})
print(("trained %d epochs, best val_loss %.4f at epoch %d"):format(#history.loss, stop.best,
  stop.best_epoch))

local scores = train.predict(model, Xte):softmax(2)
local pred = scores:argmax(2)
-- binary metrics take labels 0/1: malignant (class 1) is the positive label 1
local pred01, y01 = pred:eq(1):long(), yte:eq(1):long()
local p, r, f1 = metrics.precision_recall_fscore(pred01, y01)
local auc = metrics.roc_auc(y01, scores:select(2, 1))
print(("hold-out (malignant is positive): accuracy %.3f  precision %.3f  recall %.3f  "
  .. "F1 %.3f  ROC-AUC %.4f"):format(metrics.accuracy(pred, yte), p, r, f1, auc))
print(metrics.format_confusion_matrix(metrics.confusion_matrix(pred, yte), info.classes))
