--- Convolution layers: Conv1d, Conv2d, ConvTranspose2d (PyTorch's shapes, defaults, init).
-- @module lunar.nn.conv
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local conv = {}

-- An integer or a pair {h, w} as a table of n integers, or an error naming the layer.
local function tuple(v, n, name, what)
  if math.type(v) == "integer" then
    local t = {}
    for i = 1, n do t[i] = v end
    return t
  end
  if type(v) == "table" and #v == n then
    for i = 1, n do
      if math.type(v[i]) ~= "integer" then break end
      if i == n then return {table.unpack(v)} end
    end
  end
  error(("%s: %s must be an integer%s (got %s)"):format(name, what,
    n > 1 and " or a table of " .. n .. " integers" or "", tostring(v)), 4)
end

local function tuple_str(t)
  if #t == 1 then return ("(%d,)"):format(t[1]) end
  return "(" .. table.concat(t, ", ") .. ")"
end

-- Shared constructor: sets sizes, options and PyTorch's default parameters
-- (kaiming_uniform(a = sqrt(5)), i.e. U(+-1/sqrt(fan_in)) for weight and bias).
local function setup(self, name, n, in_channels, out_channels, kernel_size, opts, transposed)
  for _, v in ipairs({in_channels, out_channels}) do
    if math.type(v) ~= "integer" or v < 1 then
      error(("%s: channel counts must be positive integers (got %s, %s)")
        :format(name, tostring(in_channels), tostring(out_channels)), 3)
    end
  end
  opts = opts or {}
  local groups = opts.groups or 1
  if math.type(groups) ~= "integer" or groups < 1 or in_channels % groups ~= 0 or
      out_channels % groups ~= 0 then
    error(("%s: groups %s must divide in_channels %d and out_channels %d")
      :format(name, tostring(groups), in_channels, out_channels), 3)
  end
  self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
  self.kernel_size = tuple(kernel_size, n, name, "kernel_size")
  self.stride = tuple(opts.stride or 1, n, name, "stride")
  self.dilation = tuple(opts.dilation or 1, n, name, "dilation")
  if opts.padding == "same" or opts.padding == "valid" then
    self.padding = opts.padding
  else
    self.padding = tuple(opts.padding or 0, n, name, "padding")
  end
  if transposed then
    self.output_padding = tuple(opts.output_padding or 0, n, name, "output_padding")
  end
  local shape = transposed and {in_channels, out_channels // groups}
    or {out_channels, in_channels // groups}
  local ksize = 1
  for _, k in ipairs(self.kernel_size) do
    shape[#shape + 1] = k
    ksize = ksize * k
  end
  -- PyTorch's fan_in is weight.size(1) * kernel area, for the transposed layer too
  local bound = 1 / math.sqrt(shape[2] * ksize)
  local dtype = opts.dtype or lunar.get_default_dtype()
  self.weight = Module.Parameter(lunar.empty(shape, {dtype = dtype}):uniform_(-bound, bound))
  if opts.bias ~= false then
    self.bias = Module.Parameter(lunar.empty(out_channels, {dtype = dtype})
      :uniform_(-bound, bound))
  end
end

local function options(self)
  return {stride = self.stride, padding = self.padding, dilation = self.dilation,
          groups = self.groups, output_padding = self.output_padding}
end

local function repr(self)
  local s = ("%d, %d, kernel_size=%s, stride=%s"):format(self.in_channels, self.out_channels,
    tuple_str(self.kernel_size), tuple_str(self.stride))
  local function nonzero(t)
    for _, v in ipairs(t) do if v ~= 0 then return true end end
    return false
  end
  if type(self.padding) == "string" then
    s = s .. ", padding=" .. self.padding
  elseif nonzero(self.padding) then
    s = s .. ", padding=" .. tuple_str(self.padding)
  end
  local one = true
  for _, v in ipairs(self.dilation) do if v ~= 1 then one = false end end
  if not one then s = s .. ", dilation=" .. tuple_str(self.dilation) end
  if self.output_padding and nonzero(self.output_padding) then
    s = s .. ", output_padding=" .. tuple_str(self.output_padding)
  end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if not self.bias then s = s .. ", bias=False" end
  return s
end

--- 2-d convolution over [N, C_in, H, W] with weight [C_out, C_in / groups, kH, kW].
-- Options: stride, padding (integer, pair, "same" or "valid"), dilation, groups, bias
-- (default true), dtype.
-- @usage local c = nn.Conv2d(3, 16, 3, {stride = 2, padding = 1, bias = false})
local Conv2d = Module:extend("Conv2d")
conv.Conv2d = Conv2d
function Conv2d:init(in_channels, out_channels, kernel_size, opts)
  setup(self, "Conv2d", 2, in_channels, out_channels, kernel_size, opts, false)
end
function Conv2d:forward(x) return lunar.conv2d(x, self.weight, self.bias, options(self)) end
Conv2d.extra_repr = repr

--- 1-d convolution over [N, C_in, L] with weight [C_out, C_in / groups, k].
-- @usage local c = nn.Conv1d(8, 16, 5, {padding = 2})
local Conv1d = Module:extend("Conv1d")
conv.Conv1d = Conv1d
function Conv1d:init(in_channels, out_channels, kernel_size, opts)
  setup(self, "Conv1d", 1, in_channels, out_channels, kernel_size, opts, false)
end
function Conv1d:forward(x)
  local o = options(self)
  if type(o.padding) == "table" then o.padding = o.padding[1] end
  o.stride, o.dilation = o.stride[1], o.dilation[1]
  return lunar.conv1d(x, self.weight, self.bias, o)
end
Conv1d.extra_repr = repr

--- Transposed 2-d convolution (the gradient of Conv2d in its input), for upsampling.
-- Weight [C_in, C_out / groups, kH, kW]. Options: stride, padding, output_padding, groups,
-- dilation, bias, dtype.
-- @usage local up = nn.ConvTranspose2d(16, 8, 2, {stride = 2})  -- doubles H and W
local ConvTranspose2d = Module:extend("ConvTranspose2d")
conv.ConvTranspose2d = ConvTranspose2d
function ConvTranspose2d:init(in_channels, out_channels, kernel_size, opts)
  if opts and type(opts.padding) == "string" then
    error("ConvTranspose2d: padding must be an integer or a pair (got " .. opts.padding .. ")", 2)
  end
  setup(self, "ConvTranspose2d", 2, in_channels, out_channels, kernel_size, opts, true)
end
function ConvTranspose2d:forward(x)
  return lunar.conv_transpose2d(x, self.weight, self.bias, options(self))
end
ConvTranspose2d.extra_repr = repr

return conv
