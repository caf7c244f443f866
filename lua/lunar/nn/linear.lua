--- Linear and Identity layers.
-- @module lunar.nn.linear
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local linear = {}

--- y = x W^T + b, with W of shape [out_features, in_features] as in PyTorch.
-- Initialised as PyTorch does: W and b uniform in +-1/sqrt(in_features).
-- @usage local fc = nn.Linear(784, 128)  -- or nn.Linear(784, 128, {bias = false})
local Linear = Module:extend("Linear")
linear.Linear = Linear

function Linear:init(in_features, out_features, opts)
  if math.type(in_features) ~= "integer" or math.type(out_features) ~= "integer" or
      in_features < 1 or out_features < 1 then
    error(("Linear: sizes must be positive integers (got %s, %s)")
      :format(tostring(in_features), tostring(out_features)), 3)
  end
  opts = opts or {}
  self.in_features, self.out_features = in_features, out_features
  local bound = 1 / math.sqrt(in_features)
  local dtype = opts.dtype or lunar.get_default_dtype()
  self.weight = Module.Parameter(lunar.empty(out_features, in_features, {dtype = dtype})
    :uniform_(-bound, bound))
  if opts.bias ~= false then
    self.bias = Module.Parameter(lunar.empty(out_features, {dtype = dtype}):uniform_(-bound, bound))
  end
end

function Linear:forward(x)
  return lunar.linear(x, self.weight, self.bias)
end

function Linear:extra_repr()
  return ("in_features=%d, out_features=%d, bias=%s")
    :format(self.in_features, self.out_features, tostring(self.bias ~= nil))
end

--- Returns its input.
local Identity = Module:extend("Identity")
linear.Identity = Identity
function Identity:forward(x) return x end

return linear
