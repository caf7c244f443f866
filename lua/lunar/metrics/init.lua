--- Evaluation metrics: classification, curves, regression.
--
--     local metrics = require("lunar.metrics")
--     metrics.accuracy(logits, labels)                 -- argmax of each row vs 1-based labels
--     metrics.f1_score(pred, labels, {average = "macro"})
--     local fpr, tpr, thr = metrics.roc_curve(y01, scores)
--
-- Inputs are lunar tensors (on any device) or Lua tables (lists, or lists of rows). Results
-- are Lua numbers, except confusion_matrix (an int64 tensor) and the curves (float64
-- tensors), which are computed on the host and always returned on the CPU.
--
-- Predictions given to the classification metrics become labels this way:
--  * a 2-D [N, C] input (scores, logits or probabilities) gives the 1-based argmax of each row;
--  * a 1-D float input (a float tensor, or a table holding a non-integer number) holds binary
--    scores: 1 where score >= threshold (default 0.5), else 0;
--  * a 1-D integer input holds labels as they are.
-- Multi-class labels are 1-based (Lua's convention); binary metrics use labels 0 and 1 with
-- pos_label = 1, as scikit-learn does. Metrics follow scikit-learn's definitions; where
-- there is a division by zero (precision with no predicted positives, recall with no
-- positives) the result is `zero_division` (default 0, scikit-learn's default value; it
-- warns where this module does not).
-- @module lunar.metrics
local lunar = require("lunar")

local metrics = {}

-- Input handling --------------------------------------------------------------------------

local function shape_of(v)
  if lunar.is_tensor(v) then return "[" .. table.concat(v:size(), ", ") .. "]" end
  if type(v[1]) == "table" then return ("[%d, %d]"):format(#v, #v[1]) end
  return ("[%d]"):format(#v)
end

local function to_number(x)
  if type(x) == "boolean" then return x and 1 or 0 end
  return x
end

-- A flat list of numbers from a tensor or a (nested) table.
local function list(fname, what, v)
  if lunar.is_tensor(v) then
    local t = v:detach():reshape(-1):totable()
    for i = 1, #t do t[i] = to_number(t[i]) end
    return t
  end
  if type(v) ~= "table" then
    error(("%s: %s must be a tensor or a table (got %s)"):format(fname, what, type(v)), 3)
  end
  local out = {}
  local function walk(x)
    for _, e in ipairs(x) do
      if type(e) == "table" then walk(e) else out[#out + 1] = to_number(e) end
    end
  end
  walk(v)
  for i, e in ipairs(out) do
    if type(e) ~= "number" then
      error(("%s: %s holds a %s at %d"):format(fname, what, type(e), i), 3)
    end
  end
  return out
end

local function ndim(v)
  if lunar.is_tensor(v) then return v:dim() end
  return type(v[1]) == "table" and 2 or 1
end

-- Rows of a 2-D input as lists.
local function rows(fname, what, v)
  local t = lunar.is_tensor(v) and v:detach():totable() or v
  for i, r in ipairs(t) do
    if type(r) ~= "table" or #r ~= #t[1] then
      error(("%s: %s row %d is not a list of %d numbers"):format(fname, what, i, #t[1]), 3)
    end
  end
  return t
end

local function is_float(v, values)
  if lunar.is_tensor(v) then
    local dt = v:dtype()
    return dt == "float32" or dt == "float64"
  end
  for _, x in ipairs(values) do if math.type(x) == "float" and x ~= math.floor(x) then
    return true
  end end
  return false
end

local function check_len(fname, a, an, b, bn)
  if #a ~= #b then
    error(("%s: %s has %d elements and %s has %d"):format(fname, an, #a, bn, #b), 3)
  end
end

-- Predicted labels from pred (see the module's comment), and the true labels; both lists.
local function labels(fname, pred, target, opts)
  local y = list(fname, "target", target)
  local p
  if ndim(pred) == 2 then
    local r = rows(fname, "pred", pred)
    p = {}
    for i, row in ipairs(r) do
      local best, arg = -math.huge, 1
      for j, s in ipairs(row) do if s > best then best, arg = s, j end end
      p[i] = arg
    end
  else
    p = list(fname, "pred", pred)
    if is_float(pred, p) then
      local thr = opts and opts.threshold or 0.5
      for i, s in ipairs(p) do p[i] = s >= thr and 1 or 0 end
    end
  end
  if #p ~= #y then
    error(("%s: pred %s gives %d predictions for target %s with %d labels")
      :format(fname, shape_of(pred), #p, shape_of(target), #y), 3)
  end
  for i, l in ipairs(y) do
    if math.type(l) ~= "integer" and l ~= math.floor(l) then
      error(("%s: target %d is %s, not a class label"):format(fname, i, tostring(l)), 3)
    end
    y[i] = math.tointeger(l) or l
    p[i] = math.tointeger(p[i]) or p[i]
  end
  return p, y
end

local function ratio(num, den, zd)
  if den == 0 then return zd end
  return num / den
end

-- Classification -----------------------------------------------------------------------------

--- Fraction of correct predictions (see the module's comment for how pred becomes labels).
-- @param pred [N, C] scores, [N] binary scores, or [N] labels
-- @param target [N] labels
-- @param opts `{threshold = 0.5}`
-- @usage metrics.accuracy(lunar.tensor{{0.1, 0.9}, {0.8, 0.2}}, {2, 2})  --> 0.5
function metrics.accuracy(pred, target, opts)
  local p, y = labels("accuracy", pred, target, opts)
  if #y == 0 then error("accuracy: no samples", 2) end
  local ok = 0
  for i = 1, #y do if p[i] == y[i] then ok = ok + 1 end end
  return ok / #y
end

--- Top-k accuracy: a sample counts when fewer than k classes score strictly higher than its
-- true class (so ties go to the true class, which scikit-learn's argsort does not promise).
-- @param scores [N, C]
-- @param target [N] 1-based labels
-- @param k default 5
function metrics.top_k_accuracy(scores, target, k)
  k = k or 5
  if math.type(k) ~= "integer" or k < 1 then
    error("top_k_accuracy: k must be a positive integer (got " .. tostring(k) .. ")", 2)
  end
  if ndim(scores) ~= 2 then
    error(("top_k_accuracy: scores must be [N, C] (got %s)"):format(shape_of(scores)), 2)
  end
  local r = rows("top_k_accuracy", "scores", scores)
  local y = list("top_k_accuracy", "target", target)
  if #r ~= #y then
    error(("top_k_accuracy: scores %s and target %s differ in N")
      :format(shape_of(scores), shape_of(target)), 2)
  end
  if #y == 0 then error("top_k_accuracy: no samples", 2) end
  local ok = 0
  for i, row in ipairs(r) do
    local c = y[i]
    if math.type(c) ~= "integer" and c ~= math.floor(c) or c < 1 or c > #row then
      error(("top_k_accuracy: target %d is %s, outside 1..%d"):format(i, tostring(c), #row), 2)
    end
    local s, above = row[math.tointeger(c)], 0
    for _, v in ipairs(row) do if v > s then above = above + 1 end end
    if above < k then ok = ok + 1 end
  end
  return ok / #y
end

--- Binary decisions: 1 where score >= threshold, else 0, as an int64 tensor of pred's shape
-- (or a list for a table).
-- @param scores tensor or list
-- @param threshold default 0.5
function metrics.binarize(scores, threshold)
  threshold = threshold or 0.5
  if lunar.is_tensor(scores) then return scores:ge(threshold):long() end
  local v = list("binarize", "scores", scores)
  for i, s in ipairs(v) do v[i] = s >= threshold and 1 or 0 end
  return v
end

-- The sorted label set: opts.labels, or the union of the labels seen.
local function label_set(p, y, opts)
  if opts and opts.labels then return opts.labels end
  local seen, out = {}, {}
  for _, l in ipairs(y) do seen[l] = true end
  for _, l in ipairs(p) do seen[l] = true end
  for l in pairs(seen) do out[#out + 1] = l end
  table.sort(out)
  return out
end

-- Per-label true positives, predicted and true counts.
local function counts(p, y, set)
  local tp, npred, ntrue, index = {}, {}, {}, {}
  for i, l in ipairs(set) do tp[i], npred[i], ntrue[i], index[l] = 0, 0, 0, i end
  for i = 1, #y do
    local a, b = index[y[i]], index[p[i]]
    if a then ntrue[a] = ntrue[a] + 1 end
    if b then npred[b] = npred[b] + 1 end
    if a and y[i] == p[i] then tp[a] = tp[a] + 1 end
  end
  return tp, npred, ntrue
end

local AVERAGES = {binary = true, macro = true, micro = true, weighted = true, none = true}

--- Precision, recall and F1 together (scikit-learn's precision_recall_fscore_support).
-- average: "binary" (default; the pos_label class, labels 0/1), "macro" (unweighted mean over
-- labels), "micro" (from the summed counts), "weighted" (mean weighted by each label's
-- support), "none" (lists, one value per label, in the order of `labels`).
-- F1 = 2 TP / (2 TP + FP + FN); any 0/0 gives zero_division.
-- @param opts `{average = "binary", pos_label = 1, labels = nil, threshold = 0.5,
--   zero_division = 0}`
-- @return precision, recall, f1, support (support: a number, or a list for "none")
function metrics.precision_recall_fscore(pred, target, opts)
  local fname = "precision_recall_fscore"
  opts = opts or {}
  local average = opts.average or "binary"
  if not AVERAGES[average] then
    error(fname .. ": average must be binary, macro, micro, weighted or none (got " ..
      tostring(average) .. ")", 2)
  end
  local zd = opts.zero_division or 0
  local p, y = labels(fname, pred, target, opts)
  local set
  if average == "binary" then
    local pos = opts.pos_label or 1
    for _, l in ipairs(label_set(p, y, nil)) do
      if l ~= 0 and l ~= 1 and l ~= pos then
        error(("%s: average 'binary' needs labels 0 and 1 (found %s); choose another average")
          :format(fname, tostring(l)), 2)
      end
    end
    set = {pos}
  else
    set = label_set(p, y, opts)
  end
  local tp, npred, ntrue = counts(p, y, set)
  if average == "micro" then
    local a, b, c = 0, 0, 0
    for i = 1, #set do a, b, c = a + tp[i], b + npred[i], c + ntrue[i] end
    tp, npred, ntrue = {a}, {b}, {c}
  end
  local P, R, F1 = {}, {}, {}
  for i = 1, #tp do
    P[i] = ratio(tp[i], npred[i], zd)
    R[i] = ratio(tp[i], ntrue[i], zd)
    F1[i] = ratio(2 * tp[i], npred[i] + ntrue[i], zd)
  end
  if average == "none" then return P, R, F1, ntrue end
  if average == "binary" or average == "micro" then return P[1], R[1], F1[1], ntrue[1] end
  local wsum, ps, rs, fs, total = 0, 0, 0, 0, 0
  for i = 1, #set do
    local w = average == "weighted" and ntrue[i] or 1
    wsum = wsum + w
    ps, rs, fs = ps + w * P[i], rs + w * R[i], fs + w * F1[i]
    total = total + ntrue[i]
  end
  if wsum == 0 then return zd, zd, zd, total end
  return ps / wsum, rs / wsum, fs / wsum, total
end

--- Precision TP / (TP + FP); options as `precision_recall_fscore`.
function metrics.precision(pred, target, opts)
  return (metrics.precision_recall_fscore(pred, target, opts))
end

--- Recall (sensitivity, TPR) TP / (TP + FN); options as `precision_recall_fscore`.
function metrics.recall(pred, target, opts)
  local _, r = metrics.precision_recall_fscore(pred, target, opts)
  return r
end

--- F1 = 2 P R / (P + R) = 2 TP / (2 TP + FP + FN); options as `precision_recall_fscore`.
function metrics.f1_score(pred, target, opts)
  local _, _, f = metrics.precision_recall_fscore(pred, target, opts)
  return f
end

--- Confusion matrix: an int64 [C, C] tensor, rows = true class, columns = predicted class.
-- Classes are 1..C, C = opts.num_classes or the largest label seen; when a label 0 is seen
-- (binary labels), classes are 0..C-1 instead. Row/column i is then class i - 1.
-- @param opts `{num_classes = nil, threshold = 0.5}`
-- @return the tensor, and the list of class labels of its rows
function metrics.confusion_matrix(pred, target, opts)
  local fname = "confusion_matrix"
  local p, y = labels(fname, pred, target, opts)
  local nc = opts and opts.num_classes
  local lo, hi = 1, 0
  for i = 1, #y do
    for _, l in ipairs({y[i], p[i]}) do
      if l < 0 then error(fname .. ": negative label " .. tostring(l), 2) end
      if l == 0 then lo = 0 end
      if l > hi then hi = l end
    end
  end
  if nc then hi = lo + nc - 1 end
  local n = hi - lo + 1
  local cm = {}
  for i = 1, n do
    cm[i] = {}
    for j = 1, n do cm[i][j] = 0 end
  end
  for i = 1, #y do
    local a, b = y[i] - lo + 1, p[i] - lo + 1
    if a > n or b > n then
      error(("%s: label %d is outside the %d classes"):format(fname, math.max(y[i], p[i]), n), 2)
    end
    cm[a][b] = cm[a][b] + 1
  end
  local classes = {}
  for i = 1, n do classes[i] = lo + i - 1 end
  if n == 0 then return lunar.zeros({0, 0}, {dtype = "int64", device = "cpu"}), classes end
  return lunar.tensor(cm, {dtype = "int64", device = "cpu"}), classes
end

--- The confusion matrix as a text table: rows are true classes, columns predictions.
-- @param cm [C, C] tensor or table
-- @param names optional list of C class names (default: the class numbers 1..C)
-- @usage print(metrics.format_confusion_matrix(cm, {"cat", "dog"}))
function metrics.format_confusion_matrix(cm, names)
  local t = lunar.is_tensor(cm) and cm:totable() or cm
  local n = #t
  names = names or {}
  if #names ~= 0 and #names ~= n then
    error(("format_confusion_matrix: %d names for %d classes"):format(#names, n), 2)
  end
  local label = {}
  for i = 1, n do label[i] = tostring(names[i] or i) end
  local corner = "true \\ pred"
  local w0 = #corner
  for i = 1, n do w0 = math.max(w0, #label[i]) end
  local w = 1
  for i = 1, n do
    w = math.max(w, #label[i])
    for j = 1, n do w = math.max(w, #tostring(math.tointeger(t[i][j]) or t[i][j])) end
  end
  local lines = {}
  local head = {("%-" .. w0 .. "s"):format(corner)}
  for j = 1, n do head[#head + 1] = ("%" .. w .. "s"):format(label[j]) end
  lines[1] = table.concat(head, "  ")
  for i = 1, n do
    local row = {("%-" .. w0 .. "s"):format(label[i])}
    for j = 1, n do
      row[#row + 1] = ("%" .. w .. "s"):format(tostring(math.tointeger(t[i][j]) or t[i][j]))
    end
    lines[#lines + 1] = table.concat(row, "  ")
  end
  return table.concat(lines, "\n")
end

-- Curves ------------------------------------------------------------------------------------

-- scikit-learn's _binary_clf_curve: scores sorted descending; at the last index of each
-- run of equal scores, the cumulative false and true positives and that score.
local function binary_curve(fname, y_true, scores, opts)
  local y = list(fname, "y_true", y_true)
  local s = list(fname, "scores", scores)
  check_len(fname, y, "y_true", s, "scores")
  local pos = opts and opts.pos_label or 1
  local order = {}
  for i = 1, #s do
    if s[i] ~= s[i] then error(fname .. ": scores hold NaN", 3) end
    order[i] = i
  end
  table.sort(order, function(a, b)
    if s[a] ~= s[b] then return s[a] > s[b] end
    return a < b
  end)
  local fps, tps, thr = {}, {}, {}
  local tp, fp = 0, 0
  for k, i in ipairs(order) do
    if y[i] == pos then tp = tp + 1 else fp = fp + 1 end
    local nxt = order[k + 1]
    if nxt == nil or s[nxt] ~= s[i] then
      fps[#fps + 1], tps[#tps + 1], thr[#thr + 1] = fp, tp, s[i]
    end
  end
  return fps, tps, thr
end

local function f64(t) return lunar.tensor(t, {dtype = "float64", device = "cpu"}) end

--- ROC curve, as scikit-learn's roc_curve with drop_intermediate = false: one point per
-- distinct score (ties form one point), after a first point (0, 0) at threshold +inf
-- (scikit-learn >= 1.3; older versions put max(score) + 1 there).
-- With no negatives fpr is NaN; with no positives tpr is NaN (scikit-learn warns).
-- @param y_true [N] labels (pos_label = 1 is positive, anything else negative)
-- @param scores [N] scores, higher meaning more positive
-- @param opts `{pos_label = 1}`
-- @return fpr, tpr, thresholds (float64 tensors, thresholds decreasing)
function metrics.roc_curve(y_true, scores, opts)
  local fps, tps, thr = binary_curve("roc_curve", y_true, scores, opts)
  local nf, nt = fps[#fps] or 0, tps[#tps] or 0
  local fpr, tpr, th = {0 / nf}, {0 / nt}, {math.huge}
  if nf > 0 then fpr[1] = 0 end
  if nt > 0 then tpr[1] = 0 end
  for i = 1, #thr do
    fpr[i + 1], tpr[i + 1], th[i + 1] = fps[i] / nf, tps[i] / nt, thr[i]
  end
  return f64(fpr), f64(tpr), f64(th)
end

--- Area under the ROC curve by the trapezoid rule (ties give the diagonal segment, so a
-- constant scorer has AUC 0.5). Errors when y_true holds only one class.
function metrics.roc_auc(y_true, scores, opts)
  local fps, tps = binary_curve("roc_auc", y_true, scores, opts)
  local nf, nt = fps[#fps] or 0, tps[#tps] or 0
  if nf == 0 or nt == 0 then
    error("roc_auc: y_true holds only one class; the AUC is undefined", 2)
  end
  local area, x0, y0 = 0, 0, 0
  for i = 1, #fps do
    local x1, y1 = fps[i] / nf, tps[i] / nt
    area = area + (x1 - x0) * (y0 + y1) / 2
    x0, y0 = x1, y1
  end
  return area
end

--- Precision-recall curve, as scikit-learn's (>= 1.1): one point per distinct score,
-- ordered by increasing threshold, then a last point (precision 1, recall 0) that has no
-- threshold. Precision with no predicted positives is 0; with no positives recall is 1.
-- @return precision, recall, thresholds (float64 tensors; thresholds one shorter)
function metrics.precision_recall_curve(y_true, scores, opts)
  local fps, tps, thr = binary_curve("precision_recall_curve", y_true, scores, opts)
  local nt = tps[#tps] or 0
  local P, R, T = {}, {}, {}
  for i = #thr, 1, -1 do
    local den = tps[i] + fps[i]
    P[#P + 1] = den > 0 and tps[i] / den or 0
    R[#R + 1] = nt > 0 and tps[i] / nt or 1
    T[#T + 1] = thr[i]
  end
  P[#P + 1], R[#R + 1] = 1, 0
  return f64(P), f64(R), f64(T)
end

--- Average precision, scikit-learn's step formula sum_n (R_n - R_{n-1}) P_n over the
-- precision-recall curve (not the trapezoid, which is optimistic).
function metrics.average_precision(y_true, scores, opts)
  local P, R = metrics.precision_recall_curve(y_true, scores, opts)
  P, R = P:totable(), R:totable()
  local ap = 0
  for i = 1, #R - 1 do ap = ap - (R[i + 1] - R[i]) * P[i] end
  return ap
end

--- Cross-entropy of probabilistic predictions (scikit-learn's log_loss), the mean of
-- -log p[true class]. Binary: probs [N] = P(label 1) with labels 0/1. Multi-class: probs
-- [N, C] with 1-based labels; each row is renormalised to sum to 1 after clipping.
-- Probabilities are clipped to [eps, 1 - eps] (eps = 1e-15, scikit-learn's old default).
-- @param opts `{eps = 1e-15}`
function metrics.log_loss(y_true, probs, opts)
  local fname = "log_loss"
  local eps = opts and opts.eps or 1e-15
  local y = list(fname, "y_true", y_true)
  local total = 0
  local function clip(v) return math.min(math.max(v, eps), 1 - eps) end
  if ndim(probs) == 2 then
    local r = rows(fname, "probs", probs)
    check_len(fname, y, "y_true", r, "probs")
    for i, row in ipairs(r) do
      local c = y[i]
      if c < 1 or c > #row or c ~= math.floor(c) then
        error(("%s: label %d is %s, outside 1..%d"):format(fname, i, tostring(c), #row), 2)
      end
      local sum = 0
      for _, v in ipairs(row) do sum = sum + clip(v) end
      total = total - math.log(clip(row[math.tointeger(c)]) / sum)
    end
  else
    local p = list(fname, "probs", probs)
    check_len(fname, y, "y_true", p, "probs")
    for i, v in ipairs(p) do
      if y[i] ~= 0 and y[i] ~= 1 then
        error(("%s: binary label %d is %s, not 0 or 1"):format(fname, i, tostring(y[i])), 2)
      end
      v = clip(v)
      total = total - math.log(y[i] == 1 and v or 1 - v)
    end
  end
  if #y == 0 then error(fname .. ": no samples", 2) end
  return total / #y
end

-- Regression ---------------------------------------------------------------------------------

local function pair(fname, y_true, y_pred)
  local a, b = list(fname, "y_true", y_true), list(fname, "y_pred", y_pred)
  if #a ~= #b then
    error(("%s: y_true %s and y_pred %s differ in size")
      :format(fname, shape_of(y_true), shape_of(y_pred)), 3)
  end
  if #a == 0 then error(fname .. ": no samples", 3) end
  return a, b
end

--- Mean squared error.
function metrics.mse(y_true, y_pred)
  local a, b = pair("mse", y_true, y_pred)
  local s = 0
  for i = 1, #a do s = s + (a[i] - b[i]) ^ 2 end
  return s / #a
end

--- Root mean squared error.
function metrics.rmse(y_true, y_pred)
  return math.sqrt(metrics.mse(y_true, y_pred))
end

--- Mean absolute error.
function metrics.mae(y_true, y_pred)
  local a, b = pair("mae", y_true, y_pred)
  local s = 0
  for i = 1, #a do s = s + math.abs(a[i] - b[i]) end
  return s / #a
end

local function r2_list(a, b)
  local mean = 0
  for i = 1, #a do mean = mean + a[i] end
  mean = mean / #a
  local ss_res, ss_tot = 0, 0
  for i = 1, #a do
    ss_res = ss_res + (a[i] - b[i]) ^ 2
    ss_tot = ss_tot + (a[i] - mean) ^ 2
  end
  -- a constant y_true: scikit-learn's force_finite gives 1 for a perfect fit, else 0
  if ss_tot == 0 then return ss_res == 0 and 1 or 0 end
  return 1 - ss_res / ss_tot
end

--- Coefficient of determination R^2 = 1 - SS_res / SS_tot. A 2-D [N, K] input gives the
-- uniform average over the K outputs (scikit-learn's default). Constant y_true: 1 for a
-- perfect fit, else 0 (scikit-learn's force_finite).
function metrics.r2_score(y_true, y_pred)
  local a, b = pair("r2_score", y_true, y_pred)
  if ndim(y_true) ~= 2 then return r2_list(a, b) end
  local ra, rb = rows("r2_score", "y_true", y_true), rows("r2_score", "y_pred", y_pred)
  local k = #ra[1]
  if #rb[1] ~= k then
    error(("r2_score: y_true %s and y_pred %s differ in shape")
      :format(shape_of(y_true), shape_of(y_pred)), 2)
  end
  local total = 0
  for j = 1, k do
    local ca, cb = {}, {}
    for i = 1, #ra do ca[i], cb[i] = ra[i][j], rb[i][j] end
    total = total + r2_list(ca, cb)
  end
  return total / k
end

return metrics
