--- Gradient clipping (by global norm, by value) and L1/L2 penalties to add to a loss.
-- @module lunar.optim.clip
local lunar = require("lunar")

local M = {}

local function param_list(params, fname)
  if lunar.is_tensor(params) then return {params} end
  if type(params) ~= "table" then
    error(fname .. ": params must be a tensor or a list of tensors (got " .. type(params) .. ")", 3)
  end
  for i, p in ipairs(params) do
    if not lunar.is_tensor(p) then
      error(string.format("%s: parameter %d is a %s, not a tensor", fname, i, type(p)), 3)
    end
  end
  return params
end

local function grads_of(params, fname)
  local out = {}
  for _, p in ipairs(param_list(params, fname)) do
    local g = p.grad
    if g ~= nil then out[#out + 1] = g end
  end
  return out
end

--- Scales the gradients of params in place so that their joint norm is at most max_norm,
-- as PyTorch does: coef = min(max_norm / (total + 1e-6), 1), applied always.
-- norm_type may be a number or math.huge / "inf". Returns the total norm (a 0-d tensor,
-- taken before clipping). opts.error_if_nonfinite raises when that norm is nan or inf.
function M.clip_grad_norm_(params, max_norm, norm_type, opts)
  if type(max_norm) ~= "number" then
    error("clip_grad_norm_: max_norm must be a number (got " .. type(max_norm) .. ")", 2)
  end
  if norm_type == "inf" then norm_type = math.huge end
  norm_type = norm_type or 2
  if type(norm_type) ~= "number" or norm_type < 0 then
    error("clip_grad_norm_: norm_type must be a number >= 0 (got " .. tostring(norm_type) .. ")", 2)
  end
  local grads = grads_of(params, "clip_grad_norm_")
  -- no gradient, no device to follow: the default device, as PyTorch's torch.tensor(0.)
  if #grads == 0 then return lunar.tensor(0.0) end
  local total
  lunar.no_grad(function()
    local norms = {}
    for i, g in ipairs(grads) do
      norms[i] = norm_type == math.huge and g:abs():amax() or g:norm(norm_type)
    end
    if norm_type == math.huge then
      total = #norms == 1 and norms[1] or lunar.stack(norms):amax()
    else
      total = lunar.stack(norms):norm(norm_type)
    end
    local t = total:item()
    if opts and opts.error_if_nonfinite and (t ~= t or t == math.huge) then
      error(string.format("clip_grad_norm_: the total norm of order %s is %s", norm_type, t), 3)
    end
    local coef = lunar.full_like(total, max_norm) / (total + 1e-6)
    coef = coef:clamp(nil, 1.0)
    for _, g in ipairs(grads) do g:mul_(coef:to(g:dtype())) end
  end)
  return total
end

--- Clamps every gradient of params to [-clip_value, clip_value] in place.
function M.clip_grad_value_(params, clip_value)
  if type(clip_value) ~= "number" or clip_value < 0 then
    error("clip_grad_value_: clip_value must be a number >= 0 (got "
      .. tostring(clip_value) .. ")", 2)
  end
  for _, g in ipairs(grads_of(params, "clip_grad_value_")) do g:clamp_(-clip_value, clip_value) end
end

local function penalty(params, weight, fname, term)
  weight = weight or 1
  if type(weight) ~= "number" then error(fname .. ": weight must be a number", 3) end
  local total
  for _, p in ipairs(param_list(params, fname)) do
    local s = term(p):sum()
    total = total and total + s or s
  end
  if total == nil then error(fname .. ": got no parameters", 3) end
  return weight == 1 and total or total * weight
end

--- weight * sum of |w| over params: a tensor to add to the loss (it carries gradients).
function M.l1_penalty(params, weight)
  return penalty(params, weight, "l1_penalty", function(p) return p:abs() end)
end

--- weight * sum of w^2 over params (Keras's l2(λ): the gradient is 2λw).
function M.l2_penalty(params, weight)
  return penalty(params, weight, "l2_penalty", function(p) return p:square() end)
end

return M
