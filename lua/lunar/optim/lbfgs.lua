--- L-BFGS (PyTorch 1.13's algorithm, in Lua over one flat vector of all parameters).
--   local opt = lunar.optim.LBFGS(params, {lr = 1, max_iter = 20, history_size = 100})
--   opt:step(function() opt:zero_grad(); local l = loss(); l:backward(); return l end)
-- Fixed step length t only: line_search_fn = "strong_wolfe" is not implemented (and raises).
-- Options: lr = 1, max_iter = 20, max_eval = max_iter * 5 // 4, tolerance_grad = 1e-7,
-- tolerance_change = 1e-9, history_size = 100. One parameter group only.
-- @module lunar.optim.lbfgs
local lunar = require("lunar")
local Optimizer = require("lunar.optim.optimizer")

local LBFGS = Optimizer:extend("LBFGS")

function LBFGS:init(params, opts)
  opts = opts or {}
  if opts.line_search_fn ~= nil then
    error("LBFGS: line_search_fn '" .. tostring(opts.line_search_fn)
      .. "' is not supported (only the fixed step)", 3)
  end
  local max_iter = opts.max_iter or 20
  Optimizer.init(self, params, {lr = opts.lr or 1, max_iter = max_iter,
    max_eval = opts.max_eval or max_iter * 5 // 4, tolerance_grad = opts.tolerance_grad or 1e-7,
    tolerance_change = opts.tolerance_change or 1e-9, history_size = opts.history_size or 100})
  if #self.param_groups ~= 1 then
    error("LBFGS: does not support per-parameter options (parameter groups)", 3)
  end
  self._lbfgs = {func_evals = 0, n_iter = 0}
end

function LBFGS.check(opt, g)
  Optimizer.check(opt, g)
  for _, k in ipairs({"max_iter", "max_eval", "history_size"}) do
    if math.type(g[k]) ~= "integer" or g[k] < 1 then
      error("invalid " .. k .. " value: " .. tostring(g[k]), 0)
    end
  end
end

function LBFGS:_flat_grad()
  local parts = {}
  for i, p in ipairs(self.param_groups[1].params) do
    local g = p.grad
    -- zeros_like keeps the parameter's device (an OpenCL parameter needs OpenCL zeros)
    parts[i] = g and g:reshape(-1) or lunar.zeros_like(p):reshape(-1)
  end
  return #parts == 1 and parts[1]:clone() or lunar.cat(parts)
end

function LBFGS:_add_grad(t, d)
  local off = 0
  for _, p in ipairs(self.param_groups[1].params) do
    local n = p:numel()
    p:add_(d:narrow(1, off + 1, n):view(p:size()) * t)
    off = off + n
  end
end

local function absmax(t) return t:abs():amax():item() end

--- One L-BFGS step: up to max_iter iterations, each re-evaluating closure. Returns the
-- loss of the first evaluation.
function LBFGS:step(closure)
  if type(closure) ~= "function" then error("LBFGS:step: a closure is required", 2) end
  local g = self.param_groups[1]
  self:check_step(g)
  local lr, max_iter, max_eval = g.lr, g.max_iter, g.max_eval
  local tol_grad, tol_change, hist = g.tolerance_grad, g.tolerance_change, g.history_size
  local st = self._lbfgs
  local orig_loss = lunar.enable_grad(closure)
  local loss = lunar.is_tensor(orig_loss) and orig_loss:item() or orig_loss
  local evals = 1
  st.func_evals = st.func_evals + 1
  lunar.no_grad(function()
    local flat_grad = self:_flat_grad()
    if absmax(flat_grad) <= tol_grad then return end
    local d, t = st.d, st.t
    local old_dirs, old_stps, ro, H_diag = st.old_dirs, st.old_stps, st.ro, st.H_diag
    local prev_flat_grad, prev_loss = st.prev_flat_grad, st.prev_loss
    local n_iter = 0
    while n_iter < max_iter do
      n_iter = n_iter + 1
      st.n_iter = st.n_iter + 1
      if st.n_iter == 1 then
        d = flat_grad:neg()
        old_dirs, old_stps, ro, H_diag = {}, {}, {}, 1
      else
        local y = flat_grad - prev_flat_grad
        local s = d * t
        local ys = y:dot(s):item()
        if ys > 1e-10 then
          if #old_dirs == hist then
            table.remove(old_dirs, 1); table.remove(old_stps, 1); table.remove(ro, 1)
          end
          old_dirs[#old_dirs + 1], old_stps[#old_stps + 1], ro[#ro + 1] = y, s, 1 / ys
          H_diag = ys / y:dot(y):item()
        end
        local al = {}
        local q = flat_grad:neg()
        for i = #old_dirs, 1, -1 do
          al[i] = old_stps[i]:dot(q):item() * ro[i]
          q = q - old_dirs[i] * al[i]
        end
        local r = q * H_diag
        for i = 1, #old_dirs do
          local be_i = old_dirs[i]:dot(r):item() * ro[i]
          r = r + old_stps[i] * (al[i] - be_i)
        end
        d = r
      end
      prev_flat_grad = flat_grad:clone()
      prev_loss = loss
      if st.n_iter == 1 then
        t = math.min(1, 1 / flat_grad:abs():sum():item()) * lr
      else
        t = lr
      end
      local gtd = flat_grad:dot(d):item()
      if gtd > -tol_change then break end
      local ls_evals = 0
      self:_add_grad(t, d)
      local opt_cond = false
      if n_iter ~= max_iter then
        local l = lunar.enable_grad(closure)
        loss = lunar.is_tensor(l) and l:item() or l
        flat_grad = self:_flat_grad()
        opt_cond = absmax(flat_grad) <= tol_grad
        ls_evals = 1
      end
      evals = evals + ls_evals
      st.func_evals = st.func_evals + ls_evals
      if n_iter == max_iter or evals >= max_eval or opt_cond then break end
      if absmax(d * t) <= tol_change then break end
      if math.abs(loss - prev_loss) < tol_change then break end
    end
    st.d, st.t, st.old_dirs, st.old_stps, st.ro, st.H_diag = d, t, old_dirs, old_stps, ro, H_diag
    st.prev_flat_grad, st.prev_loss = prev_flat_grad, prev_loss
  end)
  return orig_loss
end

return {LBFGS = LBFGS}
