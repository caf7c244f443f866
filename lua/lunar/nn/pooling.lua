--- Pooling layers: MaxPool1d/2d, AvgPool1d/2d, LPPool2d, AdaptiveAvgPool2d,
-- GlobalAvgPool2d. Stride defaults to the kernel size, as in PyTorch.
-- @module lunar.nn.pooling
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local pooling = {}

local function check_size(name, what, v, n)
  local ok = math.type(v) == "integer" and v >= 0
  if type(v) == "table" and #v == n then
    ok = true
    for i = 1, n do ok = ok and math.type(v[i]) == "integer" and v[i] >= 0 end
  end
  if not ok then
    error(("%s: %s must be a non-negative integer%s (got %s)")
      :format(name, what, n > 1 and " or a pair" or "", tostring(v)), 4)
  end
  return v
end

local function show(v)
  if type(v) == "table" then return "(" .. table.concat(v, ", ") .. ")" end
  return tostring(v)
end

local function pool_class(name, n, fn, keys)
  local P = Module:extend(name)
  function P:init(kernel_size, opts)
    opts = opts or {}
    self.kernel_size = check_size(name, "kernel_size", kernel_size, n)
    self.stride = check_size(name, "stride", opts.stride or kernel_size, n)
    self.padding = check_size(name, "padding", opts.padding or 0, n)
    self.ceil_mode = opts.ceil_mode or false
    for _, k in ipairs(keys) do
      if opts[k] ~= nil then self[k] = opts[k] end
    end
  end
  function P:options()
    local o = {stride = self.stride, padding = self.padding, ceil_mode = self.ceil_mode}
    for _, k in ipairs(keys) do o[k] = self[k] end
    return o
  end
  function P:forward(x) return fn(x, self.kernel_size, self:options()) end
  function P:extra_repr()
    local s = ("kernel_size=%s, stride=%s, padding=%s"):format(show(self.kernel_size),
      show(self.stride), show(self.padding))
    for _, k in ipairs(keys) do
      if self[k] ~= nil then s = s .. (", %s=%s"):format(k, show(self[k])) end
    end
    return s .. ", ceil_mode=" .. tostring(self.ceil_mode)
  end
  pooling[name] = P
  return P
end

--- Max over each window. Options: stride, padding, dilation, ceil_mode, return_indices
-- (forward then returns values and 1-based flat indices per plane).
-- @usage local pool = nn.MaxPool2d(2)  -- halves H and W
pool_class("MaxPool2d", 2, lunar.max_pool2d, {"dilation", "return_indices"})
--- MaxPool2d over [N, C, L].
pool_class("MaxPool1d", 1, lunar.max_pool1d, {"dilation", "return_indices"})
--- Mean over each window. Options: stride, padding, ceil_mode, count_include_pad (true),
-- divisor_override (a nonzero integer that replaces the window size as the divisor).
pool_class("AvgPool2d", 2, lunar.avg_pool2d, {"count_include_pad", "divisor_override"})
--- AvgPool2d over [N, C, L].
pool_class("AvgPool1d", 1, lunar.avg_pool1d, {"count_include_pad"})

--- (sum over the window of x^p)^(1/p); p = 2 is L2 pooling. Options: stride, ceil_mode.
-- @usage local pool = nn.LPPool2d(2, 3, {stride = 2})
local LPPool2d = Module:extend("LPPool2d")
pooling.LPPool2d = LPPool2d
function LPPool2d:init(norm_type, kernel_size, opts)
  if type(norm_type) ~= "number" or norm_type <= 0 then
    error("LPPool2d: norm_type must be a positive number (got " .. tostring(norm_type) .. ")", 3)
  end
  opts = opts or {}
  self.norm_type = norm_type
  self.kernel_size = check_size("LPPool2d", "kernel_size", kernel_size, 2)
  self.stride = check_size("LPPool2d", "stride", opts.stride or kernel_size, 2)
  self.ceil_mode = opts.ceil_mode or false
end
function LPPool2d:forward(x)
  return lunar.lp_pool2d(x, self.norm_type, self.kernel_size,
    {stride = self.stride, ceil_mode = self.ceil_mode})
end
function LPPool2d:extra_repr()
  return ("norm_type=%s, kernel_size=%s, stride=%s, ceil_mode=%s"):format(self.norm_type,
    show(self.kernel_size), show(self.stride), tostring(self.ceil_mode))
end

--- Averages into a fixed output size (PyTorch's windows), whatever the input size.
-- @usage local pool = nn.AdaptiveAvgPool2d({7, 7})
local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")
pooling.AdaptiveAvgPool2d = AdaptiveAvgPool2d
function AdaptiveAvgPool2d:init(output_size)
  self.output_size = check_size("AdaptiveAvgPool2d", "output_size", output_size, 2)
end
function AdaptiveAvgPool2d:forward(x) return lunar.adaptive_avg_pool2d(x, self.output_size) end
function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. show(self.output_size) end

--- The mean over H and W: [N, C, H, W] -> [N, C].
local GlobalAvgPool2d = Module:extend("GlobalAvgPool2d")
pooling.GlobalAvgPool2d = GlobalAvgPool2d
function GlobalAvgPool2d.forward(_, x)
  if x:dim() ~= 4 then
    error(("GlobalAvgPool2d: expects [N, C, H, W] (got a %d-d input)"):format(x:dim()), 2)
  end
  return x:mean({3, 4})
end

return pooling
