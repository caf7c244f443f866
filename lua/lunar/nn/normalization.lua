--- Normalisation layers: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm.
-- @module lunar.nn.normalization
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local M = {}

local function positive_int(fname, what, v)
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s: %s must be a positive integer (got %s)"):format(fname, what, tostring(v)), 4)
  end
end

local function batch_norm_class(name, dims)
  local BN = Module:extend(name)
  --- num_features C; options eps (1e-5), momentum (0.1; nil-able via false for a cumulative
  -- average), affine (true), track_running_stats (true), dtype.
  function BN:init(num_features, opts)
    positive_int(name, "num_features", num_features)
    opts = opts or {}
    self.num_features = num_features
    self.eps = opts.eps or 1e-5
    if opts.momentum == false then self.momentum = nil else self.momentum = opts.momentum or 0.1 end
    self.affine = opts.affine ~= false
    self.track_running_stats = opts.track_running_stats ~= false
    local dtype = opts.dtype or lunar.get_default_dtype()
    if self.affine then
      self.weight = Module.Parameter(lunar.ones(num_features, {dtype = dtype}))
      self.bias = Module.Parameter(lunar.zeros(num_features, {dtype = dtype}))
    end
    if self.track_running_stats then
      self.running_mean = Module.Buffer(lunar.zeros(num_features, {dtype = dtype}))
      self.running_var = Module.Buffer(lunar.ones(num_features, {dtype = dtype}))
      self.num_batches_tracked = Module.Buffer(lunar.tensor(0, {dtype = "int64"}))
    end
  end

  function BN:forward(x)
    local nd = x:dim()
    local ok = false
    for _, d in ipairs(dims) do ok = ok or nd == d end
    if not ok then
      error(("%s: expected a %s-d input (got %d dims)")
        :format(name, table.concat(dims, " or "), nd), 2)
    end
    if x:size(2) ~= self.num_features then
      error(("%s: input has %d channels, expected %d"):format(name, x:size(2),
        self.num_features), 2)
    end
    local momentum = self.momentum or 0
    if self.training and self.track_running_stats then
      self.num_batches_tracked:add_(1)
      if self.momentum == nil then momentum = 1 / self.num_batches_tracked:item() end
    end
    local use_batch = self.training or not self.track_running_stats
    return lunar.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
      {training = use_batch, momentum = momentum, eps = self.eps})
  end

  function BN:extra_repr()
    return ("%d, eps=%g, momentum=%s, affine=%s, track_running_stats=%s"):format(
      self.num_features, self.eps, tostring(self.momentum), tostring(self.affine),
      tostring(self.track_running_stats))
  end
  return BN
end

--- Batch normalisation of [N, C] or [N, C, L] (Ioffe & Szegedy 2015): training normalises
-- with the batch statistics and updates running_mean / running_var (unbiased) with
-- momentum; eval uses the running statistics.
-- @usage local bn = nn.BatchNorm1d(64, {momentum = 0.1})
M.BatchNorm1d = batch_norm_class("BatchNorm1d", {2, 3})

--- Batch normalisation of [N, C, H, W]; as BatchNorm1d.
M.BatchNorm2d = batch_norm_class("BatchNorm2d", {4})

--- Layer normalisation over the trailing dims given by normalized_shape (an integer or a
-- table), Ba et al. 2016. Options: eps (1e-5), elementwise_affine (true), dtype.
-- @usage local ln = nn.LayerNorm(512)
local LayerNorm = Module:extend("LayerNorm")
M.LayerNorm = LayerNorm
function LayerNorm:init(normalized_shape, opts)
  local shape = type(normalized_shape) == "table" and normalized_shape or {normalized_shape}
  if #shape == 0 then error("LayerNorm: normalized_shape is empty", 3) end
  for _, s in ipairs(shape) do positive_int("LayerNorm", "normalized_shape", s) end
  opts = opts or {}
  self.normalized_shape = shape
  self.eps = opts.eps or 1e-5
  self.elementwise_affine = opts.elementwise_affine ~= false
  local dtype = opts.dtype or lunar.get_default_dtype()
  if self.elementwise_affine then
    self.weight = Module.Parameter(lunar.ones(shape, {dtype = dtype}))
    self.bias = Module.Parameter(lunar.zeros(shape, {dtype = dtype}))
  end
end
function LayerNorm:forward(x)
  return lunar.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
end
function LayerNorm:extra_repr()
  return ("{%s}, eps=%g, elementwise_affine=%s"):format(table.concat(self.normalized_shape, ", "),
    self.eps, tostring(self.elementwise_affine))
end

--- Group normalisation (Wu & He 2018): the C channels of [N, C, ...] are split into
-- num_groups groups, each normalised per sample. Options: eps (1e-5), affine (true), dtype.
-- @usage local gn = nn.GroupNorm(8, 64)
local GroupNorm = Module:extend("GroupNorm")
M.GroupNorm = GroupNorm
function GroupNorm:init(num_groups, num_channels, opts)
  positive_int("GroupNorm", "num_groups", num_groups)
  positive_int("GroupNorm", "num_channels", num_channels)
  if num_channels % num_groups ~= 0 then
    error(("GroupNorm: %d channels do not split into %d groups"):format(num_channels,
      num_groups), 2)
  end
  opts = opts or {}
  self.num_groups, self.num_channels = num_groups, num_channels
  self.eps = opts.eps or 1e-5
  self.affine = opts.affine ~= false
  local dtype = opts.dtype or lunar.get_default_dtype()
  if self.affine then
    self.weight = Module.Parameter(lunar.ones(num_channels, {dtype = dtype}))
    self.bias = Module.Parameter(lunar.zeros(num_channels, {dtype = dtype}))
  end
end
function GroupNorm:forward(x)
  return lunar.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
end
function GroupNorm:extra_repr()
  return ("%d, %d, eps=%g, affine=%s"):format(self.num_groups, self.num_channels, self.eps,
    tostring(self.affine))
end

return M
