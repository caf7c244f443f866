--- Activations, as modules (`nn.ReLU()`) and as functions (`nn.functional.relu(x)`).
-- All are composed from the element-wise C ops, so their gradients come from autograd.
-- Where a formula has two branches, the branch that is not taken is fed a clamped input
-- so that its (masked) gradient cannot be inf * 0 = NaN. Gradients at kinks follow
-- PyTorch 1.13 (ReLU: 0 at 0; Hardtanh/ReLU6/Hardsigmoid: 0 at the bounds).
-- @module lunar.nn.activation
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local F = {}
local activation = {functional = F}

local function check_tensor(fname, x)
  if not lunar.is_tensor(x) then
    error(("%s: expected a tensor, got %s"):format(fname, type(x)), 3)
  end
end

local function check_number(fname, what, v)
  if type(v) ~= "number" then
    error(("%s: %s must be a number (got %s)"):format(fname, what, tostring(v)), 3)
  end
end

--- 1 / (1 + e^-x), range (0, 1).
function F.sigmoid(x) check_tensor("sigmoid", x) return x:sigmoid() end

--- tanh(x), range (-1, 1).
function F.tanh(x) check_tensor("tanh", x) return x:tanh() end

--- max(0, x), range [0, inf).
local relu = lunar.relu
function F.relu(x) check_tensor("relu", x) return relu(x) end

--- min(max(x, lo), hi); the gradient is 1 strictly inside (lo, hi) and 0 elsewhere.
function F.hardtanh(x, lo, hi)
  check_tensor("hardtanh", x)
  lo, hi = lo or -1, hi or 1
  check_number("hardtanh", "min_val", lo)
  check_number("hardtanh", "max_val", hi)
  if lo > hi then
    error(("hardtanh: min_val (%g) must not exceed max_val (%g)"):format(lo, hi), 2)
  end
  local inside = x:gt(lo):logical_and(x:lt(hi))
  return lunar.where(inside, x, x:detach():clamp(lo, hi))
end

--- min(max(x, 0), 6).
function F.relu6(x) check_tensor("relu6", x) return F.hardtanh(x, 0, 6) end

--- x where x > 0, else negative_slope * x (default 0.01).
function F.leaky_relu(x, negative_slope)
  check_tensor("leaky_relu", x)
  negative_slope = negative_slope or 0.01
  check_number("leaky_relu", "negative_slope", negative_slope)
  return lunar.where(x:gt(0), x, x * negative_slope)
end

--- x where x > 0, else weight * x; weight has 1 or C elements (C = size of dim 2).
function F.prelu(x, weight)
  check_tensor("prelu", x)
  local n = weight:numel()
  if n ~= 1 then
    if x:dim() < 2 or x:size(2) ~= n then
      error(("prelu: weight has %d elements but the input [%s] has %s channels (dim 2)")
        :format(n, table.concat(x:size(), "x"), x:dim() >= 2 and x:size(2) or "no"), 2)
    end
    local shape = {n}
    for _ = 3, x:dim() do shape[#shape + 1] = 1 end
    weight = weight:reshape(shape)
  end
  return lunar.where(x:gt(0), x, x * weight)
end

--- x where x > 0, else alpha (e^x - 1) (default alpha 1).
function F.elu(x, alpha)
  check_tensor("elu", x)
  alpha = alpha or 1
  check_number("elu", "alpha", alpha)
  return lunar.where(x:gt(0), x, x:clamp(nil, 0):expm1() * alpha)
end

-- Klambauer et al. 2017, as in PyTorch.
local SELU_ALPHA = 1.6732632423543772848170429916717
local SELU_SCALE = 1.0507009873554804934193349852946

--- scale * elu(x, alpha) with the self-normalising constants (alpha 1.67326, scale 1.05070).
function F.selu(x) check_tensor("selu", x) return F.elu(x, SELU_ALPHA) * SELU_SCALE end

local SQRT_HALF = math.sqrt(0.5)
local SQRT_2_OVER_PI = math.sqrt(2 / math.pi)

--- x * Phi(x) with the exact erf form, or `approximate = "tanh"`:
-- 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
function F.gelu(x, approximate)
  check_tensor("gelu", x)
  approximate = approximate or "none"
  if approximate == "tanh" then
    local inner = (x + x * x * x * 0.044715) * SQRT_2_OVER_PI
    return x * 0.5 * (inner:tanh() + 1)
  elseif approximate == "none" then
    return x * 0.5 * ((x * SQRT_HALF):erf() + 1)
  end
  error(("gelu: approximate must be 'none' or 'tanh' (got %s)"):format(tostring(approximate)), 2)
end

--- x * sigmoid(x) (also called Swish).
function F.silu(x) check_tensor("silu", x) return x * x:sigmoid() end
F.swish = F.silu

-- log(1 + e^z) = max(z, 0) + log1p(e^-|z|): never overflows. maximum's gradient splits
-- a tie, which gives the exact 1/2 at z = 0.
local function softplus1(z)
  return z:maximum(0) + z:abs():neg():exp():log1p()
end

--- log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (PyTorch's reversion
-- to linear; defaults beta 1, threshold 20).
function F.softplus(x, beta, threshold)
  check_tensor("softplus", x)
  beta, threshold = beta or 1, threshold or 20
  check_number("softplus", "beta", beta)
  check_number("softplus", "threshold", threshold)
  local z = x * beta
  local soft = softplus1(z)
  if beta ~= 1 then soft = soft / beta end
  return lunar.where(z:gt(threshold), x, soft)
end

--- x * tanh(softplus(x)).
function F.mish(x) check_tensor("mish", x) return x * softplus1(x):tanh() end

--- x / (1 + |x|), range (-1, 1).
function F.softsign(x) check_tensor("softsign", x) return x / (x:abs() + 1) end

--- relu6(x + 3) / 6, as in PyTorch; gradient 1/6 strictly inside (-3, 3).
function F.hardsigmoid(x)
  check_tensor("hardsigmoid", x)
  return F.hardtanh(x + 3, 0, 6) / 6
end

--- Heaviside step for the classic perceptron: 1 where x > 0, else 0 (0 at x = 0 and for
-- NaN). Its gradient is zero everywhere: the output stays in the graph (backward runs and
-- gives zeros), so a perceptron is trained with the perceptron rule, not by backprop.
function F.step(x)
  check_tensor("step", x)
  local y = x:gt(0):type(x:dtype())
  -- clamp keeps 0 * x finite for x = +-inf, so the zero gradient reaches x
  if x.requires_grad then y = y + x:clamp(-1, 1) * 0 end
  return y
end

-- Module wrappers ----------------------------------------------------------------------

local function simple(name, fn)
  local cls = Module:extend(name)
  function cls:forward(x) return fn(x) end
  activation[name] = cls
  return cls
end

--- nn.Sigmoid(): sigmoid as a layer.
simple("Sigmoid", F.sigmoid)
--- nn.Tanh()
simple("Tanh", F.tanh)
--- nn.ReLU()
local ReLU = simple("ReLU", F.relu)
-- straight to the op (it names relu when x is not a tensor): a call less per layer, which a
-- batch-1 forward notices
function ReLU.forward(_, x) return relu(x) end
--- nn.ReLU6()
simple("ReLU6", F.relu6)
--- nn.SELU()
simple("SELU", F.selu)
--- nn.SiLU() (also nn.Swish())
activation.Swish = simple("SiLU", F.silu)
--- nn.Mish()
simple("Mish", F.mish)
--- nn.Softsign()
simple("Softsign", F.softsign)
--- nn.Hardsigmoid()
simple("Hardsigmoid", F.hardsigmoid)
--- nn.Step(): Heaviside step (zero gradient; see functional.step).
simple("Step", F.step)

--- nn.LeakyReLU(negative_slope = 0.01)
local LeakyReLU = Module:extend("LeakyReLU")
activation.LeakyReLU = LeakyReLU
function LeakyReLU:init(negative_slope)
  negative_slope = negative_slope or 0.01
  check_number("LeakyReLU", "negative_slope", negative_slope)
  self.negative_slope = negative_slope
end
function LeakyReLU:forward(x) return F.leaky_relu(x, self.negative_slope) end
function LeakyReLU:extra_repr() return ("negative_slope=%g"):format(self.negative_slope) end

--- nn.PReLU(num_parameters = 1, init = 0.25, {dtype = ...}): leaky ReLU with a learned
-- slope, one shared or one per channel (dim 2 of the input).
local PReLU = Module:extend("PReLU")
activation.PReLU = PReLU
function PReLU:init(num_parameters, init, opts)
  num_parameters, init, opts = num_parameters or 1, init or 0.25, opts or {}
  if math.type(num_parameters) ~= "integer" or num_parameters < 1 then
    error(("PReLU: num_parameters must be a positive integer (got %s)")
      :format(tostring(num_parameters)), 3)
  end
  check_number("PReLU", "init", init)
  self.num_parameters = num_parameters
  self.weight = Module.Parameter(lunar.full({num_parameters}, init,
    {dtype = opts.dtype or lunar.get_default_dtype()}))
end
function PReLU:forward(x) return F.prelu(x, self.weight) end
function PReLU:extra_repr() return ("num_parameters=%d"):format(self.num_parameters) end

--- nn.ELU(alpha = 1)
local ELU = Module:extend("ELU")
activation.ELU = ELU
function ELU:init(alpha)
  alpha = alpha or 1
  check_number("ELU", "alpha", alpha)
  self.alpha = alpha
end
function ELU:forward(x) return F.elu(x, self.alpha) end
function ELU:extra_repr() return ("alpha=%g"):format(self.alpha) end

--- nn.GELU({approximate = "none" | "tanh"})
local GELU = Module:extend("GELU")
activation.GELU = GELU
function GELU:init(opts)
  local approximate = type(opts) == "table" and opts.approximate or opts or "none"
  if approximate ~= "none" and approximate ~= "tanh" then
    error(("GELU: approximate must be 'none' or 'tanh' (got %s)"):format(tostring(approximate)),
      3)
  end
  self.approximate = approximate
end
function GELU:forward(x) return F.gelu(x, self.approximate) end
function GELU:extra_repr() return ("approximate='%s'"):format(self.approximate) end

--- nn.Softplus(beta = 1, threshold = 20)
local Softplus = Module:extend("Softplus")
activation.Softplus = Softplus
function Softplus:init(beta, threshold)
  beta, threshold = beta or 1, threshold or 20
  check_number("Softplus", "beta", beta)
  check_number("Softplus", "threshold", threshold)
  self.beta, self.threshold = beta, threshold
end
function Softplus:forward(x) return F.softplus(x, self.beta, self.threshold) end
function Softplus:extra_repr()
  return ("beta=%g, threshold=%g"):format(self.beta, self.threshold)
end

--- nn.Hardtanh(min_val = -1, max_val = 1)
local Hardtanh = Module:extend("Hardtanh")
activation.Hardtanh = Hardtanh
function Hardtanh:init(min_val, max_val)
  min_val, max_val = min_val or -1, max_val or 1
  check_number("Hardtanh", "min_val", min_val)
  check_number("Hardtanh", "max_val", max_val)
  if min_val > max_val then
    error(("Hardtanh: min_val (%g) must not exceed max_val (%g)"):format(min_val, max_val), 3)
  end
  self.min_val, self.max_val = min_val, max_val
end
function Hardtanh:forward(x) return F.hardtanh(x, self.min_val, self.max_val) end
function Hardtanh:extra_repr()
  return ("min_val=%g, max_val=%g"):format(self.min_val, self.max_val)
end

return activation
