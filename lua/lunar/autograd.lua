--- Autograd helpers: gradients of non-leaf tensors and numerical gradient checks.
-- @module lunar.autograd
local core = require("lunar.core")

local autograd = {}

--- Gradients of `outputs` with respect to `inputs`, leaves or not, without touching `.grad`.
-- @param outputs a tensor or a list of tensors
-- @param inputs a tensor (then one tensor is returned) or a list (then a list)
-- @param opts `{grad_outputs = ..., retain_graph = false}`
-- @usage local gx = lunar.autograd.grad((x * x):sum(), x)   -- 2 * x
function autograd.grad(outputs, inputs, opts)
  return core.autograd_grad(outputs, inputs, opts)
end

--- Runs fn with autograd off (also `local _ <close> = lunar.no_grad()`).
autograd.no_grad = core.no_grad

-- A fixed, non-trivial projection for the check: sum(fn(x) * v) with v = sin(1..n) + 1.5.
local function projection(y)
  local n = y:numel()
  local v = (core.arange(1, n + 1, {dtype = "float64", device = y:device()}):sin() + 1.5)
  return v:reshape(y:size()):type(y:dtype())
end

local function project(fn, inputs)
  local y = fn(table.unpack(inputs))
  if not core.is_tensor(y) then error("gradcheck: fn must return a tensor", 3) end
  return (y * projection(y)):sum()
end

--- Checks autograd's gradients of fn against central finite differences (use float64).
-- Compares the gradient of sum(fn(...) * v) for a fixed v, element by element.
-- @param fn function of the inputs, returning a tensor
-- @param inputs list of tensors; those with requires_grad are checked
-- @param opts `{eps = 1e-6, atol = 1e-5, rtol = 1e-3}`
-- @return true, or false and a message naming the input and element that differ
function autograd.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  local checked = {}
  for i, x in ipairs(inputs) do
    if x.requires_grad then
      if x:dtype() ~= "float64" then
        error(("gradcheck: input %d is %s; use float64"):format(i, x:dtype()), 2)
      end
      checked[#checked + 1] = i
    end
  end
  if #checked == 0 then error("gradcheck: no input requires grad", 2) end
  local wrt = {}
  for k, i in ipairs(checked) do wrt[k] = inputs[i] end
  local analytic = autograd.grad(project(fn, inputs), wrt)
  for k, i in ipairs(checked) do
    local x = inputs[i]
    local flat = x:view(-1)
    local ga = analytic[k] and analytic[k]:contiguous():view(-1) or core.zeros_like(flat)
    for e = 1, flat:numel() do
      local orig = flat[e]
      local plus, minus
      core.no_grad(function()
        flat[e] = orig + eps
        plus = project(fn, inputs):item()
        flat[e] = orig - eps
        minus = project(fn, inputs):item()
        flat[e] = orig
      end)
      local numeric = (plus - minus) / (2 * eps)
      local a = ga[e]
      if math.abs(a - numeric) > atol + rtol * math.abs(numeric) then
        return false, ("gradcheck: input %d, element %d: autograd %.8g, numeric %.8g")
          :format(i, e, a, numeric)
      end
    end
  end
  return true
end

return autograd
