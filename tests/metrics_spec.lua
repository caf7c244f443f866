-- Metrics against values worked out by hand (the arithmetic is in the comments).
local lunar = require("lunar")
local metrics = require("lunar.metrics")
local H = require("tests.helper")

local function near(a, b) H.close({a}, {b}, 1e-12, 1e-12) end

describe("metrics: accuracy", function()
  it("from labels, logits (argmax, 1-based) and thresholded probabilities", function()
    near(metrics.accuracy({1, 2, 3, 3}, {1, 2, 2, 3}), 3 / 4)
    -- argmax of the rows: 2, 1, 2 against 2, 2, 2
    local logits = lunar.tensor({{0.1, 0.9}, {0.8, 0.2}, {0.3, 0.7}})
    near(metrics.accuracy(logits, lunar.tensor({2, 2, 2})), 2 / 3)
    near(metrics.accuracy({{0.1, 0.9}, {0.8, 0.2}, {0.3, 0.7}}, {2, 2, 2}), 2 / 3)
    -- 0.2 0.5 0.7 0.4 >= 0.5 -> 0 1 1 0 against 0 1 0 0: three right
    local probs = lunar.tensor({0.2, 0.5, 0.7, 0.4})
    near(metrics.accuracy(probs, {0, 1, 0, 0}), 3 / 4)
    -- threshold 0.6 -> 0 0 1 0: two right
    near(metrics.accuracy(probs, {0, 1, 0, 0}, {threshold = 0.6}), 2 / 4)
    assert.are.same({0, 1, 1, 0}, metrics.binarize(probs):totable())
  end)

  it("top-k: counts the classes scoring strictly above the true one", function()
    local s = {{0.1, 0.5, 0.4}, {0.3, 0.3, 0.4}, {0.6, 0.3, 0.1}}
    local y = {3, 1, 3}
    -- classes above the true one: 1 (0.5 > 0.4), 1 (0.4 > 0.3; the tie 0.3 does not count),
    -- 2 (0.6 and 0.3 > 0.1)
    near(metrics.top_k_accuracy(s, y, 1), 0)
    near(metrics.top_k_accuracy(s, y, 2), 2 / 3)
    near(metrics.top_k_accuracy(lunar.tensor(s), lunar.tensor(y), 3), 1)
  end)
end)

describe("metrics: precision, recall, F1", function()
  -- y: 1 1 2 2 3 3 3, p: 1 2 2 2 3 1 2
  -- class 1: TP 1, predicted 2, true 2 -> P 1/2, R 1/2, F1 2/(2+2) = 1/2
  -- class 2: TP 2, predicted 4, true 2 -> P 1/2, R 1,   F1 4/(4+2) = 2/3
  -- class 3: TP 1, predicted 1, true 3 -> P 1,   R 1/3, F1 2/(1+3) = 1/2
  local y = {1, 1, 2, 2, 3, 3, 3}
  local p = {1, 2, 2, 2, 3, 1, 2}

  it("macro, micro, weighted, none", function()
    local P, R, F = metrics.precision_recall_fscore(p, y, {average = "macro"})
    near(P, (0.5 + 0.5 + 1) / 3)
    near(R, (0.5 + 1 + 1 / 3) / 3)
    near(F, (0.5 + 2 / 3 + 0.5) / 3)
    -- micro: TP 4 of 7 predictions and 7 labels: all equal the accuracy
    near(metrics.precision(p, y, {average = "micro"}), 4 / 7)
    near(metrics.recall(p, y, {average = "micro"}), 4 / 7)
    near(metrics.f1_score(p, y, {average = "micro"}), 4 / 7)
    near(metrics.accuracy(p, y), 4 / 7)
    -- weighted by the supports 2, 2, 3
    P, R, F = metrics.precision_recall_fscore(p, y, {average = "weighted"})
    near(P, (2 * 0.5 + 2 * 0.5 + 3 * 1) / 7)
    near(R, (2 * 0.5 + 2 * 1 + 3 / 3) / 7)
    near(F, (2 * 0.5 + 2 * 2 / 3 + 3 * 0.5) / 7)
    local Pn, Rn, Fn, S = metrics.precision_recall_fscore(lunar.tensor(p), lunar.tensor(y),
      {average = "none"})
    H.close(Pn, {0.5, 0.5, 1})
    H.close(Rn, {0.5, 1, 1 / 3})
    H.close(Fn, {0.5, 2 / 3, 0.5})
    assert.are.same({2, 2, 3}, S)
  end)

  it("binary on thresholded probabilities", function()
    -- 0.2 0.5 0.7 0.4 -> 0 1 1 0 against 0 1 0 0: TP 1, FP 1, FN 0
    local probs = {0.2, 0.5, 0.7, 0.4}
    local P, R, F = metrics.precision_recall_fscore(probs, {0, 1, 0, 0})
    near(P, 1 / 2)
    near(R, 1)
    near(F, 2 / (2 + 1))
    -- with pos_label 0: TP 2 (samples 1, 4), FP 0, FN 1 (sample 3)
    P, R = metrics.precision_recall_fscore(probs, {0, 1, 0, 0}, {pos_label = 0})
    near(P, 1)
    near(R, 2 / 3)
  end)

  it("zero division gives zero_division (default 0)", function()
    -- no predicted positives: P = 0/0, R = 0/2, F1 = 0/(0 + 2)
    local P, R, F = metrics.precision_recall_fscore({0, 0, 0}, {0, 1, 1})
    near(P, 0)
    near(R, 0)
    near(F, 0)
    P = metrics.precision({0, 0, 0}, {0, 1, 1}, {zero_division = 1})
    near(P, 1)
    -- class 3 is never predicted: its precision is 0/0
    local Pn = metrics.precision_recall_fscore({1, 1, 2}, {1, 2, 3}, {average = "none"})
    H.close(Pn, {0.5, 0, 0})
    Pn = metrics.precision_recall_fscore({1, 1, 2}, {1, 2, 3},
      {average = "none", zero_division = 1})
    H.close(Pn, {0.5, 0, 1})
    -- no positives at all: recall 0/0
    near(metrics.recall({0, 0}, {0, 0}), 0)
    near(metrics.recall({0, 0}, {0, 0}, {zero_division = 1}), 1)
  end)
end)

describe("metrics: confusion matrix", function()
  it("rows are true classes, columns predictions (1-based)", function()
    local cm, classes = metrics.confusion_matrix({1, 2, 2, 2, 3, 1, 2}, {1, 1, 2, 2, 3, 3, 3})
    assert.are.equal("int64", cm:dtype())
    -- true 1: predicted 1, 2; true 2: 2, 2; true 3: 3, 1, 2
    assert.are.same({{1, 1, 0}, {0, 2, 0}, {1, 1, 1}}, cm:totable())
    assert.are.same({1, 2, 3}, classes)
    cm = metrics.confusion_matrix(lunar.tensor({1, 2}), lunar.tensor({1, 1}), {num_classes = 4})
    assert.are.same({4, 4}, cm:size())
    near(cm:sum():item(), 2)
  end)

  it("binary labels 0/1 from probabilities", function()
    -- 0 1 1 0 against 0 1 0 0: true 0 -> pred 0 twice, pred 1 once; true 1 -> pred 1
    local cm, classes = metrics.confusion_matrix({0.2, 0.5, 0.7, 0.4}, {0, 1, 0, 0})
    assert.are.same({{2, 1}, {0, 1}}, cm:totable())
    assert.are.same({0, 1}, classes)
  end)

  it("prints with class names", function()
    local cm = metrics.confusion_matrix({1, 2, 2}, {1, 1, 2})
    local s = metrics.format_confusion_matrix(cm, {"cat", "dog"})
    assert.are.equal(table.concat({
      "true \\ pred  cat  dog",
      "cat            1    1",
      "dog            0    1",
    }, "\n"), s)
    assert.are.equal("true \\ pred  1  2\n1            1  1\n2            0  1",
      metrics.format_confusion_matrix(cm))
    H.raises(function() metrics.format_confusion_matrix(cm, {"a"}) end,
      "format_confusion_matrix", "1 names for 2 classes")
  end)
end)

describe("metrics: curves", function()
  -- scores sorted down: 0.8 (pos), 0.8 (pos), 0.4 (neg), 0.4 (neg), 0.35 (pos), 0.1 (neg)
  -- cumulative (TP, FP) at each distinct score: 0.8 (2, 0), 0.4 (2, 2), 0.35 (3, 2), 0.1 (3, 3)
  local y = {0, 0, 1, 1, 0, 1}
  local s = {0.1, 0.4, 0.35, 0.8, 0.4, 0.8}

  it("ROC with tied scores and its AUC", function()
    local fpr, tpr, thr = metrics.roc_curve(y, s)
    H.close(fpr, {0, 0, 2 / 3, 2 / 3, 1})
    H.close(tpr, {0, 2 / 3, 2 / 3, 1, 1})
    H.close(thr, {math.huge, 0.8, 0.4, 0.35, 0.1})
    -- trapezoids: 0 + (2/3)(2/3) + 0 + (1/3)(1) = 7/9; also 7 of the 9 (pos, neg) pairs
    -- are ordered right
    near(metrics.roc_auc(y, s), 7 / 9)
    near(metrics.roc_auc(lunar.tensor(y), lunar.tensor(s)), 7 / 9)
  end)

  it("perfect and constant classifiers", function()
    near(metrics.roc_auc({0, 0, 1, 1}, {0.1, 0.2, 0.8, 0.9}), 1)
    near(metrics.roc_auc({0, 0, 1, 1}, {0.9, 0.8, 0.2, 0.1}), 0)
    -- one point (1, 1): one trapezoid from (0, 0), area 1/2
    near(metrics.roc_auc({0, 1, 0, 1}, {0.5, 0.5, 0.5, 0.5}), 0.5)
    near(metrics.average_precision({0, 0, 1, 1}, {0.1, 0.2, 0.8, 0.9}), 1)
    -- one point P = 2/4 at R = 1: AP = (1 - 0) * 1/2
    near(metrics.average_precision({0, 1, 0, 1}, {0.5, 0.5, 0.5, 0.5}), 0.5)
  end)

  it("precision-recall curve and average precision (step formula)", function()
    local P, R, T = metrics.precision_recall_curve(y, s)
    -- thresholds going up: 0.1 (3/6, R 1), 0.35 (3/5, R 1), 0.4 (2/4, R 2/3), 0.8 (2/2, R 2/3)
    H.close(P, {0.5, 0.6, 0.5, 1, 1})
    H.close(R, {1, 1, 2 / 3, 2 / 3, 0})
    H.close(T, {0.1, 0.35, 0.4, 0.8})
    -- AP = sum (R_n - R_n+1) P_n = 0 * 0.5 + (1/3) * 0.6 + 0 * 0.5 + (2/3) * 1 = 13/15
    near(metrics.average_precision(y, s), 13 / 15)
  end)

  it("one class only: ROC AUC is an error, the curve holds NaN", function()
    H.raises(function() metrics.roc_auc({1, 1}, {0.2, 0.3}) end, "roc_auc", "one class")
    local fpr = metrics.roc_curve({1, 1}, {0.2, 0.3})
    local v = fpr:totable()
    assert.is_true(v[2] ~= v[2])
  end)
end)

describe("metrics: log loss and regression", function()
  it("log loss: binary, multi-class, clipping, renormalisation", function()
    near(metrics.log_loss({1, 0}, {0.8, 0.3}), -(math.log(0.8) + math.log(0.7)) / 2)
    near(metrics.log_loss({1}, {0}), -math.log(1e-15))
    near(metrics.log_loss({2, 1}, lunar.tensor({{0.2, 0.7, 0.1}, {0.5, 0.25, 0.25}},
      {dtype = "float64"})),
      -(math.log(0.7) + math.log(0.5)) / 2)
    -- the row 0.2 0.2 0.4 is renormalised to 1/4 1/4 1/2
    near(metrics.log_loss({3}, {{0.2, 0.2, 0.4}}), -math.log(0.5))
  end)

  it("mse, rmse, mae, r2", function()
    local yt, yp = {3, -0.5, 2, 7}, {2.5, 0.0, 2, 8}
    -- errors 0.5, -0.5, 0, -1
    near(metrics.mse(yt, yp), (0.25 + 0.25 + 0 + 1) / 4)
    near(metrics.rmse(yt, yp), math.sqrt(0.375))
    near(metrics.mae(lunar.tensor(yt), lunar.tensor(yp)), (0.5 + 0.5 + 0 + 1) / 4)
    -- mean 2.875: SS_tot = 0.125^2 + 3.375^2 + 0.875^2 + 4.125^2 = 29.1875, SS_res = 1.5
    near(metrics.r2_score(yt, yp), 1 - 1.5 / 29.1875)
    near(metrics.r2_score({1, 1}, {1, 1}), 1)
    near(metrics.r2_score({1, 1}, {1, 2}), 0)
    -- two outputs averaged: column 1 SS_res 1.25, SS_tot 36.1666..; column 2 SS_res 3,
    -- SS_tot 294/9
    local r2 = metrics.r2_score({{0.5, 1}, {-1, 1}, {7, -6}}, {{0, 2}, {-1, 2}, {8, -5}})
    local m1 = 6.5 / 3
    local tot1 = (0.5 - m1) ^ 2 + (-1 - m1) ^ 2 + (7 - m1) ^ 2
    near(r2, ((1 - 1.25 / tot1) + (1 - 3 / (294 / 9))) / 2)
  end)
end)

describe("metrics: bad input", function()
  it("names the sizes that differ", function()
    H.raises(function() metrics.accuracy({1, 2, 3}, {1, 2}) end, "accuracy", "[3]", "[2]")
    H.raises(function() metrics.accuracy(lunar.zeros(4, 3), lunar.ones(2)) end,
      "accuracy", "[4, 3]", "[2]")
    H.raises(function() metrics.mse({1, 2}, lunar.zeros(3)) end, "mse", "[2]", "[3]")
    H.raises(function() metrics.roc_curve({0, 1}, {0.5}) end, "roc_curve", "2", "1")
  end)

  it("refuses bad options and labels", function()
    H.raises(function() metrics.f1_score({1, 2}, {1, 3}) end, "binary", "average")
    H.raises(function() metrics.f1_score({1}, {1}, {average = "avg"}) end, "average", "avg")
    H.raises(function() metrics.top_k_accuracy({{1, 2}}, {3}, 1) end, "top_k_accuracy", "1..2")
    H.raises(function() metrics.log_loss({2}, {0.5}) end, "log_loss", "not 0 or 1")
    H.raises(function() metrics.accuracy("x", {1}) end, "accuracy", "tensor or a table")
  end)
end)
