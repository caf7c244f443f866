--- nn.init: in-place weight initialisers, as in torch.nn.init (PyTorch 1.13 formulas).
--
--     nn.init.kaiming_normal_(conv.weight, {mode = "fan_out", nonlinearity = "relu"})
--     nn.init.xavier_uniform_(fc.weight)              -- also nn.init.glorot_uniform_
--     nn.init.zeros_(fc.bias)
--
-- Every function fills its tensor under no_grad and returns it. Draws use the default
-- generator (`lunar.manual_seed`) unless the options give `{generator = g}`.
-- Fans: a weight [out, in, k1, k2, ...] has fan_in = in * k1 * k2 ... and
-- fan_out = out * k1 * k2 ... (the receptive field multiplies both), as in PyTorch.
-- This file is `lunar.nn.inits` because `lunar.nn.init` is the nn package itself.
-- @module lunar.nn.init
local lunar = require("lunar")

local init = {}

local function check_float(fname, t)
  if not lunar.is_tensor(t) then
    error(("%s: expected a tensor, got %s"):format(fname, type(t)), 3)
  end
  local dt = t:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(("%s: needs a float tensor (float32 or float64), got %s"):format(fname, dt), 3)
  end
end

-- The last argument may be an options table; returns it (or {}) and the positional rest.
local function split_opts(...)
  local args = table.pack(...)
  local last = args[args.n]
  if type(last) == "table" then
    args[args.n] = nil
    args.n = args.n - 1
    return last, args
  end
  return {}, args
end

local function gen_opts(opts)
  return opts.generator and {generator = opts.generator} or nil
end

local function inplace(fn)
  return lunar.no_grad(fn)
end

--- fan_in and fan_out of a weight of at least 2 dims (receptive field included).
-- @return fan_in, fan_out
function init.calculate_fan_in_and_fan_out(t)
  if not lunar.is_tensor(t) then
    error("calculate_fan_in_and_fan_out: expected a tensor, got " .. type(t), 2)
  end
  if t:dim() < 2 then
    error(("calculate_fan_in_and_fan_out: needs a tensor of 2 or more dims, got [%s]")
      :format(table.concat(t:size(), "x")), 2)
  end
  local size = t:size()
  local receptive = 1
  for d = 3, #size do receptive = receptive * size[d] end
  return size[2] * receptive, size[1] * receptive
end

local function fan(fname, t, mode)
  mode = mode or "fan_in"
  if mode ~= "fan_in" and mode ~= "fan_out" then
    error(("%s: mode must be 'fan_in' or 'fan_out' (got %s)"):format(fname, tostring(mode)), 3)
  end
  if t:dim() < 2 then
    error(("%s: needs a tensor of 2 or more dims, got [%s]")
      :format(fname, table.concat(t:size(), "x")), 3)
  end
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  return mode == "fan_in" and fan_in or fan_out
end

local LINEAR = {linear = true, conv1d = true, conv2d = true, conv3d = true,
  conv_transpose1d = true, conv_transpose2d = true, conv_transpose3d = true, sigmoid = true}

--- The recommended gain for a nonlinearity (PyTorch's table): 1 for linear, conv* and
-- sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + a^2)) for leaky_relu (a = 0.01 by
-- default), 3/4 for selu.
function init.calculate_gain(nonlinearity, param)
  if LINEAR[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = param == nil and 0.01 or param
    if type(slope) ~= "number" then
      error("calculate_gain: negative_slope " .. tostring(slope) .. " is not a number", 2)
    end
    return math.sqrt(2 / (1 + slope * slope))
  end
  error("calculate_gain: unsupported nonlinearity " .. tostring(nonlinearity), 2)
end

--- Fills t from U[a, b) (defaults 0, 1).
function init.uniform_(t, ...)
  check_float("uniform_", t)
  local opts, args = split_opts(...)
  local a, b = args[1] or 0, args[2] or 1
  inplace(function() t:uniform_(a, b, gen_opts(opts)) end)
  return t
end

--- Fills t from N(mean, std^2) (defaults 0, 1).
function init.normal_(t, ...)
  check_float("normal_", t)
  local opts, args = split_opts(...)
  local mean, std = args[1] or 0, args[2] or 1
  inplace(function() t:normal_(mean, std, gen_opts(opts)) end)
  return t
end

--- Fills t with val.
function init.constant_(t, val)
  check_float("constant_", t)
  if type(val) ~= "number" then error("constant_: value must be a number", 2) end
  inplace(function() t:fill_(val) end)
  return t
end

--- Fills t with 0.
function init.zeros_(t) return init.constant_(t, 0) end

--- Fills t with 1.
function init.ones_(t) return init.constant_(t, 1) end

local function gain_of(fname, args, opts)
  local gain = args[1] or opts.gain or 1
  if type(gain) ~= "number" then
    error(("%s: gain must be a number (got %s)"):format(fname, tostring(gain)), 3)
  end
  return gain
end

--- Glorot & Bengio 2010: U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out)).
-- `xavier_uniform_(t [, gain] [, opts])`.
function init.xavier_uniform_(t, ...)
  check_float("xavier_uniform_", t)
  local opts, args = split_opts(...)
  local gain = gain_of("xavier_uniform_", args, opts)
  local fan_in, fan_out = fan("xavier_uniform_", t), fan("xavier_uniform_", t, "fan_out")
  local a = gain * math.sqrt(6 / (fan_in + fan_out))
  inplace(function() t:uniform_(-a, a, gen_opts(opts)) end)
  return t
end

--- Glorot & Bengio 2010: N(0, std^2) with std = gain sqrt(2 / (fan_in + fan_out)).
function init.xavier_normal_(t, ...)
  check_float("xavier_normal_", t)
  local opts, args = split_opts(...)
  local gain = gain_of("xavier_normal_", args, opts)
  local fan_in, fan_out = fan("xavier_normal_", t), fan("xavier_normal_", t, "fan_out")
  local std = gain * math.sqrt(2 / (fan_in + fan_out))
  inplace(function() t:normal_(0, std, gen_opts(opts)) end)
  return t
end

-- kaiming_*_(t [, a [, mode [, nonlinearity]]] [, opts]) with PyTorch's defaults
-- a = 0, mode = "fan_in", nonlinearity = "leaky_relu" (which with a = 0 is relu's sqrt 2).
local function kaiming_std(fname, t, ...)
  local opts, args = split_opts(...)
  local a = args[1] or opts.a or 0
  local mode = args[2] or opts.mode or "fan_in"
  local nonlinearity = args[3] or opts.nonlinearity or "leaky_relu"
  local n = fan(fname, t, mode)
  return init.calculate_gain(nonlinearity, a) / math.sqrt(n), opts
end

--- He et al. 2015: U(-b, b) with b = gain sqrt(3 / fan) (gain from nonlinearity and a).
-- @usage nn.init.kaiming_uniform_(w, {mode = "fan_out", nonlinearity = "relu"})
function init.kaiming_uniform_(t, ...)
  check_float("kaiming_uniform_", t)
  local std, opts = kaiming_std("kaiming_uniform_", t, ...)
  local b = math.sqrt(3) * std
  inplace(function() t:uniform_(-b, b, gen_opts(opts)) end)
  return t
end

--- He et al. 2015: N(0, std^2) with std = gain / sqrt(fan).
function init.kaiming_normal_(t, ...)
  check_float("kaiming_normal_", t)
  local std, opts = kaiming_std("kaiming_normal_", t, ...)
  inplace(function() t:normal_(0, std, gen_opts(opts)) end)
  return t
end

--- LeCun: U(-a, a) with a = sqrt(3 / fan_in) (variance 1 / fan_in).
function init.lecun_uniform_(t, opts)
  check_float("lecun_uniform_", t)
  opts = opts or {}
  local a = math.sqrt(3 / fan("lecun_uniform_", t))
  inplace(function() t:uniform_(-a, a, gen_opts(opts)) end)
  return t
end

--- LeCun: N(0, 1 / fan_in). Plain normal, not Keras' truncated normal.
function init.lecun_normal_(t, opts)
  check_float("lecun_normal_", t)
  opts = opts or {}
  local std = math.sqrt(1 / fan("lecun_normal_", t))
  inplace(function() t:normal_(0, std, gen_opts(opts)) end)
  return t
end

-- Orthonormal columns of the m x n (m >= n) row-major table a, by modified Gram-Schmidt
-- with one re-orthogonalisation pass. The columns come out with R's diagonal positive,
-- which is PyTorch's sign fix of its QR (q * sign(diag(r))).
local function orthonormal_columns(a, m, n)
  for j = 1, n do
    for _ = 1, 2 do
      for k = 1, j - 1 do
        local dot = 0
        for i = 1, m do dot = dot + a[(i - 1) * n + k] * a[(i - 1) * n + j] end
        for i = 1, m do a[(i - 1) * n + j] = a[(i - 1) * n + j] - dot * a[(i - 1) * n + k] end
      end
    end
    local norm = 0
    for i = 1, m do norm = norm + a[(i - 1) * n + j] ^ 2 end
    norm = math.sqrt(norm)
    if norm == 0 then error("orthogonal_: rank-deficient draw (try again)", 3) end
    for i = 1, m do a[(i - 1) * n + j] = a[(i - 1) * n + j] / norm end
  end
end

--- Saxe et al. 2013: t viewed as [rows, numel / rows] gets orthonormal rows (rows <= cols)
-- or columns (rows > cols), times gain; so W W^T = gain^2 I for a wide W.
-- Runs in Lua (O(rows * cols * min(rows, cols))): meant for layer-sized matrices.
function init.orthogonal_(t, ...)
  check_float("orthogonal_", t)
  local opts, args = split_opts(...)
  local gain = gain_of("orthogonal_", args, opts)
  if t:dim() < 2 then
    error(("orthogonal_: needs a tensor of 2 or more dims, got [%s]")
      :format(table.concat(t:size(), "x")), 2)
  end
  local rows = t:size(1)
  local cols = t:numel() // rows
  if t:numel() == 0 then return t end
  -- draw rows x cols, and work on the tall orientation
  -- the Gram-Schmidt runs in Lua: draw on the host (the same numbers as on any device)
  local draw = lunar.randn({rows, cols}, {dtype = "float64", generator = opts.generator,
    device = "cpu"})
  local tall = rows >= cols
  if not tall then draw = draw:t() end
  local m, n = tall and rows or cols, tall and cols or rows
  local a = draw:contiguous():view(-1):totable()
  orthonormal_columns(a, m, n)
  local q = lunar.tensor(a, {dtype = "float64", device = t:device()}):view(m, n)
  if not tall then q = q:t() end
  inplace(function() t:copy_((q * gain):reshape(t:size()):type(t:dtype())) end)
  return t
end

--- Aliases: Glorot is Xavier, He is Kaiming.
init.glorot_uniform_ = init.xavier_uniform_
init.glorot_normal_ = init.xavier_normal_
init.he_uniform_ = init.kaiming_uniform_
init.he_normal_ = init.kaiming_normal_

return init
