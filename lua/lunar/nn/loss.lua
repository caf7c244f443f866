--- Loss functions (criteria), as modules and as functions.
--
--     local crit = nn.MSELoss()                      -- {reduction = "mean"} by default
--     local loss = crit(prediction, target)
--     local same = nn.functional.mse_loss(prediction, target, {reduction = "mean"})
--
-- Every loss takes `reduction` = "mean" (default), "sum" or "none" (the element-wise or
-- per-sample losses); KLDivLoss also takes "batchmean". Formulas and defaults are those of
-- PyTorch 1.13 unless a function says otherwise. Element-wise losses need input and target
-- of the same shape (PyTorch broadcasts with a warning; a mismatch is almost always a bug,
-- so here it is an error that names both shapes). Targets of another dtype are converted
-- to the input's dtype. Cross-entropy and NLL live in their own fused ops.
-- @module lunar.nn.loss
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local loss = {}
local F = {}
loss.functional = F

-- Checking helpers ---------------------------------------------------------------------

local function shape_str(t)
  return "[" .. table.concat(t:size(), ", ") .. "]"
end

local function check_tensor(fname, what, v)
  if not lunar.is_tensor(v) then
    error(("%s: %s must be a tensor (got %s)"):format(fname, what, type(v)), 3)
  end
end

local function check_float(fname, what, t)
  local dt = t:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(("%s: %s must be float32 or float64 (got %s)"):format(fname, what, dt), 3)
  end
end

local function same_shape(a, b)
  if a:dim() ~= b:dim() then return false end
  local sa, sb = a:size(), b:size()
  for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
  return true
end

-- input must be a float tensor, target a tensor of input's shape; returns target converted
-- to input's dtype.
local function check_pair(fname, input, target, names)
  local n1, n2 = names and names[1] or "input", names and names[2] or "target"
  check_tensor(fname, n1, input)
  check_tensor(fname, n2, target)
  check_float(fname, n1, input)
  if not same_shape(input, target) then
    error(("%s: %s %s and %s %s must have the same shape")
      :format(fname, n1, shape_str(input), n2, shape_str(target)), 3)
  end
  if target:dtype() ~= input:dtype() then target = target:type(input:dtype()) end
  return target
end

-- The smallest and largest element (as numbers), read without recording a graph.
local function min_max(t)
  if t:numel() == 0 then return 0, 0 end
  local d = t:detach()
  return d:min():item(), d:max():item()
end

local function check_range(fname, what, t, lo, hi)
  local mn, mx = min_max(t)
  if mn ~= mn or mx ~= mx or mn < lo or mx > hi then
    error(("%s: every element of %s must lie in [%g, %g] (found %s to %s)")
      :format(fname, what, lo, hi, tostring(mn), tostring(mx)), 3)
  end
end

-- Every element of t is -1 or 1.
local function check_sign(fname, what, t)
  if t:numel() == 0 then return end
  local ok = t:detach():eq(1):logical_or(t:detach():eq(-1)):all():item()
  if not ok then
    error(("%s: every element of %s must be 1 or -1"):format(fname, what), 3)
  end
end

local REDUCTIONS = {mean = true, sum = true, none = true}

local function get_reduction(fname, opts, extra)
  local r = opts and opts.reduction or "mean"
  if not (REDUCTIONS[r] or r == extra) then
    error(("%s: reduction must be 'mean', 'sum' or 'none'%s (got %s)")
      :format(fname, extra and (" or '" .. extra .. "'") or "", tostring(r)), 3)
  end
  return r
end

local function reduce(l, r)
  if r == "mean" then return l:mean() end
  if r == "sum" then return l:sum() end
  return l
end

local function num(fname, opts, key, default)
  local v = opts and opts[key]
  if v == nil then return default end
  if type(v) ~= "number" then
    error(("%s: %s must be a number (got %s)"):format(fname, key, tostring(v)), 3)
  end
  return v
end

-- An optional weight tensor that must broadcast to shape; returned in dtype.
local function opt_weight(fname, opts, key, dtype)
  local w = opts and opts[key]
  if w == nil then return nil end
  check_tensor(fname, key, w)
  if w:dtype() ~= dtype then w = w:type(dtype) end
  return w
end

-- softplus(-x) = log(1 + exp(-x)), stable for any x: log1p(exp(-|x|)) + relu(-x), with
-- relu(-x) written as (|x| - x) / 2 so that autograd's derivative at x = 0 is the true
-- -1/2 (abs and relu both have derivative 0 there).
local function softplus_neg(x)
  return x:abs():neg():exp():log1p() + (x:abs() - x) * 0.5
end

-- Regression losses ----------------------------------------------------------------------

--- Mean squared error: (input - target)^2, reduced.
-- @usage nn.functional.mse_loss(yhat, y)          -- a scalar
function F.mse_loss(input, target, opts)
  local r = get_reduction("mse_loss", opts)
  target = check_pair("mse_loss", input, target)
  return reduce((input - target):square(), r)
end

--- Mean absolute error (L1): |input - target|, reduced. The gradient at 0 is 0.
function F.l1_loss(input, target, opts)
  local r = get_reduction("l1_loss", opts)
  target = check_pair("l1_loss", input, target)
  return reduce((input - target):abs(), r)
end

--- Huber loss: 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta); d = input - target.
-- @param opts `{delta = 1, reduction = "mean"}`
function F.huber_loss(input, target, opts)
  local r = get_reduction("huber_loss", opts)
  local delta = num("huber_loss", opts, "delta", 1)
  if delta <= 0 then error("huber_loss: delta must be positive (got " .. delta .. ")", 2) end
  target = check_pair("huber_loss", input, target)
  local d = input - target
  local ad = d:abs()
  local l = lunar.where(ad:le(delta), d:square() * 0.5, (ad - 0.5 * delta) * delta)
  return reduce(l, r)
end

--- Smooth L1: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta = 0: L1).
-- Equals huber_loss / beta. With beta = 0 the gradient at d = 0 is 0, as for l1_loss
-- (PyTorch 1.13's kernel gives -1 there).
-- @param opts `{beta = 1, reduction = "mean"}`
function F.smooth_l1_loss(input, target, opts)
  local r = get_reduction("smooth_l1_loss", opts)
  local beta = num("smooth_l1_loss", opts, "beta", 1)
  if beta < 0 then error("smooth_l1_loss: beta must be >= 0 (got " .. beta .. ")", 2) end
  target = check_pair("smooth_l1_loss", input, target)
  local ad = (input - target):abs()
  if beta == 0 then return reduce(ad, r) end
  local l = lunar.where(ad:lt(beta), ad:square() * (0.5 / beta), ad - 0.5 * beta)
  return reduce(l, r)
end

-- Binary classification losses --------------------------------------------------------------

-- PyTorch's BCE backward divides by max(p (1 - p), EPSILON) with a float EPSILON = 1e-12:
-- that float's exact value.
local BCE_EPS = string.unpack("<f", string.pack("<f", 1e-12))

--- Binary cross-entropy on probabilities: -w [y log p + (1 - y) log(1 - p)].
-- As in PyTorch, each log is clamped at -100 so that p = 0 or 1 gives a finite loss, and the
-- gradient with respect to p is w (p - y) / max(p (1 - p), 1e-12) (also at p = 0 or 1).
-- input must lie in [0, 1]; so must target (soft labels are allowed). The target gets no
-- gradient.
-- @param opts `{weight = tensor broadcastable to input, reduction = "mean"}`
function F.binary_cross_entropy(input, target, opts)
  local fname = "binary_cross_entropy"
  local r = get_reduction(fname, opts)
  target = check_pair(fname, input, target)
  check_range(fname, "input", input, 0, 1)
  check_range(fname, "target", target, 0, 1)
  local w = opt_weight(fname, opts, "weight", input:dtype())
  local p, y = input:detach(), target:detach()
  local value, grad
  lunar.no_grad(function()
    local lp = p:log():clamp(-100)
    local lq = (1 - p):log():clamp(-100)
    value = -(y * lp + (1 - y) * lq)
    grad = (p - y) / ((1 - p) * p):clamp(BCE_EPS)
    if w then
      value = value * w
      grad = grad * w
    end
  end)
  -- value + (input - input.detach()) * grad: the forward value is exactly `value`, and the
  -- gradient with respect to input is `grad`, PyTorch's closed form.
  local l = value + (input - p) * grad
  return reduce(l, r)
end

--- Binary cross-entropy on logits, computed stably:
-- (1 - y) x + lw softplus(-x) with lw = 1 + (pos_weight - 1) y, times weight.
-- @param opts `{weight = ..., pos_weight = tensor over the last dim (one per class), reduction}`
function F.binary_cross_entropy_with_logits(input, target, opts)
  local fname = "binary_cross_entropy_with_logits"
  local r = get_reduction(fname, opts)
  target = check_pair(fname, input, target)
  local w = opt_weight(fname, opts, "weight", input:dtype())
  local pw = opt_weight(fname, opts, "pos_weight", input:dtype())
  local sp = softplus_neg(input)
  if pw then sp = sp * ((pw - 1) * target + 1) end
  local l = (1 - target) * input + sp
  if w then l = l * w end
  return reduce(l, r)
end

--- Binary focal loss on logits (Lin et al. 2017, "Focal Loss for Dense Object Detection"),
-- as torchvision.ops.sigmoid_focal_loss: with p = sigmoid(x) and
-- p_t = p y + (1 - p)(1 - y), loss = alpha_t (1 - p_t)^gamma bce_with_logits(x, y), where
-- alpha_t = alpha y + (1 - alpha)(1 - y); alpha < 0 turns the weighting off. Unlike
-- torchvision's function (reduction "none"), the default reduction here is "mean", as for
-- every other loss.
-- @param opts `{alpha = 0.25, gamma = 2, reduction = "mean"}`
function F.sigmoid_focal_loss(input, target, opts)
  local fname = "sigmoid_focal_loss"
  local r = get_reduction(fname, opts)
  local alpha = num(fname, opts, "alpha", 0.25)
  local gamma = num(fname, opts, "gamma", 2)
  if gamma < 0 then error(fname .. ": gamma must be >= 0 (got " .. gamma .. ")", 2) end
  target = check_pair(fname, input, target)
  local p = input:sigmoid()
  local ce = (1 - target) * input + softplus_neg(input)
  local p_t = p * target + (1 - p) * (1 - target)
  local l = ce
  if gamma ~= 0 then l = ce * (1 - p_t):pow(gamma) end
  if alpha >= 0 then l = l * (target * alpha + (1 - target) * (1 - alpha)) end
  return reduce(l, r)
end

--- Soft Dice loss on probabilities (Milletari et al. 2016, V-Net), per sample:
-- loss_n = 1 - (2 sum(p y) + smooth) / (sum(p) + sum(y) + smooth), the sums over every
-- dim but the first; input [N, ...] gives N losses ("none"), then "mean" or "sum" over N.
-- A 1-D input is one sample. smooth keeps empty masks (sum(p) = sum(y) = 0) at loss 0.
-- @param opts `{smooth = 1, reduction = "mean"}`
function F.dice_loss(input, target, opts)
  local fname = "dice_loss"
  local r = get_reduction(fname, opts)
  local smooth = num(fname, opts, "smooth", 1)
  target = check_pair(fname, input, target)
  local n = input:dim() >= 2 and input:size(1) or 1
  local p, y = input:reshape(n, -1), target:reshape(n, -1)
  local inter = (p * y):sum(2)
  local card = p:sum(2) + y:sum(2)
  local l = 1 - (inter * 2 + smooth) / (card + smooth)
  return reduce(l, r)
end

--- Binary hinge loss: max(0, margin - y x) with y in {-1, 1}.
-- @param opts `{margin = 1, reduction = "mean"}`
function F.hinge_loss(input, target, opts)
  local r = get_reduction("hinge_loss", opts)
  local margin = num("hinge_loss", opts, "margin", 1)
  target = check_pair("hinge_loss", input, target)
  check_sign("hinge_loss", "target", target)
  return reduce((margin - target * input):clamp(0), r)
end

-- Distribution losses -------------------------------------------------------------------------

--- Kullback-Leibler divergence KL(target || exp(input)), input being log-probabilities:
-- target (log target - input) (0 where target = 0); with log_target, target holds
-- log-probabilities too: exp(target) (target - input). "batchmean" divides the sum by the
-- batch size (the first dim) and is the true KL; "mean" divides by the number of elements
-- (PyTorch's default, kept for compatibility).
-- @param opts `{reduction = "mean", log_target = false}`
function F.kl_div(input, target, opts)
  local r = get_reduction("kl_div", opts, "batchmean")
  target = check_pair("kl_div", input, target)
  local l
  if opts and opts.log_target then
    l = target:exp() * (target - input)
  else
    local pos = target:gt(0)
    l = target * lunar.where(pos, target, 1):log() - target * input
  end
  if r == "batchmean" then
    return l:sum() / (input:dim() > 0 and input:size(1) or 1)
  end
  return reduce(l, r)
end

-- Margin losses ---------------------------------------------------------------------------------
-- Hinges are clamp(z, 0), whose gradient passes at z = 0, as PyTorch's clamp_min does for
-- these losses; multi_margin_loss's kernel in PyTorch uses z > 0, hence relu there.

--- Multi-class margin loss: for a sample x with class y (1-based),
-- sum over j ~= y of w[y] max(0, margin - x[y] + x[j])^p, divided by the number of classes C.
-- input [N, C] with target [N] (or [C] with a scalar target or [1]); p is 1 or 2.
-- @param opts `{p = 1, margin = 1, weight = [C] tensor, reduction = "mean"}`
function F.multi_margin_loss(input, target, opts)
  local fname = "multi_margin_loss"
  local r = get_reduction(fname, opts)
  local p = num(fname, opts, "p", 1)
  local margin = num(fname, opts, "margin", 1)
  if p ~= 1 and p ~= 2 then error(fname .. ": p must be 1 or 2 (got " .. p .. ")", 2) end
  check_tensor(fname, "input", input)
  check_tensor(fname, "target", target)
  check_float(fname, "input", input)
  local x = input
  if x:dim() == 1 then x = x:reshape(1, -1) end
  if x:dim() ~= 2 then
    error(("%s: input must be [N, C] or [C] (got %s)"):format(fname, shape_str(input)), 2)
  end
  local nb, c = x:size(1), x:size(2)
  local dt = target:dtype()
  if dt ~= "int64" and dt ~= "int32" then
    error(("%s: target must hold class indices, int64 (got %s)"):format(fname, dt), 2)
  end
  if target:numel() ~= nb or target:dim() > 1 or (input:dim() == 2 and target:dim() ~= 1) then
    error(("%s: target %s does not match input %s (want [%d])")
      :format(fname, shape_str(target), shape_str(input), nb), 2)
  end
  local y = target:reshape(nb, 1):long()
  local lo, hi = min_max(y)
  if nb > 0 and (lo < 1 or hi > c) then
    error(("%s: target holds class %d, outside 1..%d"):format(fname, lo < 1 and lo or hi, c), 2)
  end
  local xy = x:gather(2, y)
  local z = (x - xy + margin):relu()
  if p == 2 then z = z:square() end
  local others = 1 - lunar.one_hot(y:reshape(nb), c):type(x:dtype())
  z = z * others
  local w = opt_weight(fname, opts, "weight", x:dtype())
  if w then
    if w:dim() ~= 1 or w:size(1) ~= c then
      error(("%s: weight %s must be [%d]"):format(fname, shape_str(w), c), 2)
    end
    z = z * w:index_select(1, y:reshape(nb)):reshape(nb, 1)
  end
  local l = z:sum(2) / c
  if input:dim() == 1 then l = l:reshape({}) end
  return reduce(l, r)
end

--- Margin ranking loss: max(0, -y (x1 - x2) + margin), y in {-1, 1}.
-- @param opts `{margin = 0, reduction = "mean"}`
function F.margin_ranking_loss(input1, input2, target, opts)
  local fname = "margin_ranking_loss"
  local r = get_reduction(fname, opts)
  local margin = num(fname, opts, "margin", 0)
  input2 = check_pair(fname, input1, input2, {"input1", "input2"})
  target = check_pair(fname, input1, target, {"input1", "target"})
  check_sign(fname, "target", target)
  return reduce((-target * (input1 - input2) + margin):clamp(0), r)
end

--- Cosine embedding loss: 1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where
-- y = -1; cos along the last dim, with PyTorch's 1e-12 added to each squared norm.
-- x1, x2: [N, D] and y: [N], or [D] and a scalar y.
-- @param opts `{margin = 0, reduction = "mean"}`
function F.cosine_embedding_loss(input1, input2, target, opts)
  local fname = "cosine_embedding_loss"
  local r = get_reduction(fname, opts)
  local margin = num(fname, opts, "margin", 0)
  input2 = check_pair(fname, input1, input2, {"input1", "input2"})
  check_tensor(fname, "target", target)
  if input1:dim() ~= 1 and input1:dim() ~= 2 then
    error(("%s: inputs must be [N, D] or [D] (got %s)"):format(fname, shape_str(input1)), 2)
  end
  local want = input1:dim() == 2 and 1 or 0
  if target:dim() ~= want or (want == 1 and target:size(1) ~= input1:size(1)) then
    error(("%s: target %s does not match input1 %s")
      :format(fname, shape_str(target), shape_str(input1)), 2)
  end
  check_sign(fname, "target", target)
  if target:dtype() ~= input1:dtype() then target = target:type(input1:dtype()) end
  local d = input1:dim()
  local prod = (input1 * input2):sum(d)
  local m1 = input1:square():sum(d) + 1e-12
  local m2 = input2:square():sum(d) + 1e-12
  local cos = prod / (m1 * m2):sqrt()
  local l = lunar.where(target:eq(1), 1 - cos, (cos - margin):clamp(0))
  return reduce(l, r)
end

-- ||x1 - x2 + eps||_p along the last dim, as torch.pairwise_distance.
local function pairwise_distance(x1, x2, p, eps)
  return (x1 - x2 + eps):norm(p, x1:dim())
end

--- Triplet margin loss (Schroff et al. 2015; Balntas et al. 2016 for swap):
-- max(0, margin + d(a, pos) - d(a, neg)) with d(u, v) = ||u - v + eps||_p along the last dim;
-- swap uses min(d(a, neg), d(pos, neg)) as the negative distance. Inputs [N, D] or [D].
-- @param opts `{margin = 1, p = 2, eps = 1e-6, swap = false, reduction = "mean"}`
function F.triplet_margin_loss(anchor, positive, negative, opts)
  local fname = "triplet_margin_loss"
  local r = get_reduction(fname, opts)
  local margin = num(fname, opts, "margin", 1)
  local p = num(fname, opts, "p", 2)
  local eps = num(fname, opts, "eps", 1e-6)
  positive = check_pair(fname, anchor, positive, {"anchor", "positive"})
  negative = check_pair(fname, anchor, negative, {"anchor", "negative"})
  if anchor:dim() ~= 1 and anchor:dim() ~= 2 then
    error(("%s: inputs must be [N, D] or [D] (got %s)"):format(fname, shape_str(anchor)), 2)
  end
  local dpos = pairwise_distance(anchor, positive, p, eps)
  local dneg = pairwise_distance(anchor, negative, p, eps)
  if opts and opts.swap then
    dneg = lunar.minimum(dneg, pairwise_distance(positive, negative, p, eps))
  end
  return reduce((dpos - dneg + margin):clamp(0), r)
end

-- Modules ---------------------------------------------------------------------------------------

-- Defines a criterion module Name whose forward calls fn(inputs..., self's options).
-- keys: the option names kept (and printed); tensors among them become buffers.
local function criterion(name, fn, keys, doc_defaults)
  local C = Module:extend(name)
  loss[name] = C
  function C:init(opts)
    if opts ~= nil and type(opts) ~= "table" then
      error(("%s: expected an options table (got %s)"):format(name, type(opts)), 3)
    end
    opts = opts or {}
    for k in pairs(opts) do
      local known = k == "reduction"
      for _, key in ipairs(keys) do known = known or k == key end
      if not known then error(("%s: unknown option '%s'"):format(name, tostring(k)), 3) end
    end
    self.reduction = opts.reduction or "mean"
    for _, key in ipairs(keys) do
      local v = opts[key]
      if v == nil then v = doc_defaults[key] end
      if lunar.is_tensor(v) then v = Module.Buffer(v) end
      self[key] = v
    end
  end
  function C:forward(...)
    local o = {reduction = self.reduction}
    for _, key in ipairs(keys) do o[key] = self[key] end
    local args = table.pack(...)
    args[args.n + 1] = o
    return fn(table.unpack(args, 1, args.n + 1))
  end
  function C:extra_repr()
    local parts = {}
    for _, key in ipairs(keys) do
      local v = self[key]
      if v ~= nil and not lunar.is_tensor(v) then parts[#parts + 1] = key .. "=" .. tostring(v) end
    end
    parts[#parts + 1] = "reduction=" .. self.reduction
    return table.concat(parts, ", ")
  end
  return C
end

--- nn.MSELoss(opts): see `functional.mse_loss`. Call as crit(input, target).
criterion("MSELoss", F.mse_loss, {}, {})
--- nn.L1Loss(opts) (mean absolute error): see `functional.l1_loss`.
criterion("L1Loss", F.l1_loss, {}, {})
--- nn.HuberLoss({delta = 1, reduction = "mean"}).
criterion("HuberLoss", F.huber_loss, {"delta"}, {delta = 1})
--- nn.SmoothL1Loss({beta = 1, reduction = "mean"}).
criterion("SmoothL1Loss", F.smooth_l1_loss, {"beta"}, {beta = 1})
--- nn.BCELoss({weight = nil, reduction = "mean"}): input holds probabilities.
criterion("BCELoss", F.binary_cross_entropy, {"weight"}, {})
--- nn.BCEWithLogitsLoss({weight = nil, pos_weight = nil, reduction = "mean"}).
criterion("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits,
  {"weight", "pos_weight"}, {})
--- nn.FocalLoss({alpha = 0.25, gamma = 2, reduction = "mean"}): binary, on logits.
criterion("FocalLoss", F.sigmoid_focal_loss, {"alpha", "gamma"}, {alpha = 0.25, gamma = 2})
--- nn.DiceLoss({smooth = 1, reduction = "mean"}): soft Dice on probabilities.
criterion("DiceLoss", F.dice_loss, {"smooth"}, {smooth = 1})
--- nn.KLDivLoss({reduction = "mean", log_target = false}): input holds log-probabilities.
criterion("KLDivLoss", F.kl_div, {"log_target"}, {log_target = false})
--- nn.MultiMarginLoss({p = 1, margin = 1, weight = nil, reduction = "mean"}).
criterion("MultiMarginLoss", F.multi_margin_loss, {"p", "margin", "weight"},
  {p = 1, margin = 1})
--- nn.HingeLoss({margin = 1, reduction = "mean"}): binary, targets in {-1, 1}.
criterion("HingeLoss", F.hinge_loss, {"margin"}, {margin = 1})
--- nn.CosineEmbeddingLoss({margin = 0}): crit(x1, x2, y).
criterion("CosineEmbeddingLoss", F.cosine_embedding_loss, {"margin"}, {margin = 0})
--- nn.TripletMarginLoss({margin = 1, p = 2, eps = 1e-6, swap = false}): crit(a, pos, neg).
criterion("TripletMarginLoss", F.triplet_margin_loss, {"margin", "p", "eps", "swap"},
  {margin = 1, p = 2, eps = 1e-6, swap = false})
--- nn.MarginRankingLoss({margin = 0}): crit(x1, x2, y).
criterion("MarginRankingLoss", F.margin_ranking_loss, {"margin"}, {margin = 0})

return loss
