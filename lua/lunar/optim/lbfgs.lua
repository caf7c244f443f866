--- L-BFGS (PyTorch 1.13's algorithm, in Lua over one flat vector of all parameters).
--   local opt = lunar.optim.LBFGS(params, {lr = 1, max_iter = 20, history_size = 100,
--                                          line_search_fn = "strong_wolfe"})
--   opt:step(function() opt:zero_grad(); local l = loss(); l:backward(); return l end)
-- Options: lr = 1, max_iter = 20, max_eval = max_iter * 5 // 4, tolerance_grad = 1e-7,
-- tolerance_change = 1e-9, history_size = 100, line_search_fn = nil (a fixed step of lr)
-- or "strong_wolfe" (PyTorch's bracketing and zoom line search with cubic interpolation,
-- c1 = 1e-4, c2 = 0.9, at most 25 evaluations per search). One parameter group only.
-- @module lunar.optim.lbfgs
local lunar = require("lunar")
local Optimizer = require("lunar.optim.optimizer")

local LBFGS = Optimizer:extend("LBFGS")

function LBFGS:init(params, opts)
  opts = opts or {}
  local ls = opts.line_search_fn
  if ls ~= nil and ls ~= "strong_wolfe" then
    error("LBFGS: line_search_fn must be nil or 'strong_wolfe' (got '" .. tostring(ls) .. "')", 3)
  end
  local max_iter = opts.max_iter or 20
  Optimizer.init(self, params, {lr = opts.lr or 1, max_iter = max_iter,
    max_eval = opts.max_eval or max_iter * 5 // 4, tolerance_grad = opts.tolerance_grad or 1e-7,
    tolerance_change = opts.tolerance_change or 1e-9, history_size = opts.history_size or 100,
    line_search_fn = ls})
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

-- The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped
-- to bounds (default: the interval between the points); the bounds' midpoint when the
-- cubic has no real minimiser.
local function cubic_interpolate(x1, f1, g1, x2, f2, g2, lo, hi)
  if lo == nil then lo, hi = math.min(x1, x2), math.max(x1, x2) end
  local d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
  local d2_square = d1 * d1 - g1 * g2
  if d2_square >= 0 then
    local d2 = math.sqrt(d2_square)
    local min_pos
    if x1 <= x2 then
      min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else
      min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    end
    return math.min(math.max(min_pos, lo), hi)
  end
  return (lo + hi) / 2
end

-- PyTorch's _strong_wolfe: from the step t along d (loss f, gradient g, slope gtd at t = 0),
-- brackets a step meeting the strong Wolfe conditions, then zooms into the bracket.
-- obj(t) evaluates loss and flat gradient at x + t d (leaving x as it was). Returns the
-- loss, gradient and step chosen and the number of evaluations.
local function strong_wolfe(obj, t, d, f, g, gtd, tolerance_change)
  local c1, c2, max_ls = 1e-4, 0.9, 25
  local d_norm = absmax(d)
  local f_new, g_new = obj(t)
  local evals = 1
  local gtd_new = g_new:dot(d):item()
  local t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
  local done, ls_iter = false, 0
  local br, br_f, br_g, br_gtd
  while ls_iter < max_ls do
    if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev) then
      br, br_f, br_g, br_gtd = {t_prev, t}, {f_prev, f_new}, {g_prev, g_new}, {gtd_prev, gtd_new}
      break
    end
    if math.abs(gtd_new) <= -c2 * gtd then
      br, br_f, br_g = {t}, {f_new}, {g_new}
      done = true
      break
    end
    if gtd_new >= 0 then
      br, br_f, br_g, br_gtd = {t_prev, t}, {f_prev, f_new}, {g_prev, g_new}, {gtd_prev, gtd_new}
      break
    end
    -- extrapolate: the cubic's minimiser within [t + (t - t_prev) / 100, 10 t]
    local tmp = t
    t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
      t + 0.01 * (t - t_prev), t * 10)
    t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
    f_new, g_new = obj(t)
    evals = evals + 1
    gtd_new = g_new:dot(d):item()
    ls_iter = ls_iter + 1
  end
  if ls_iter == max_ls then
    br, br_f, br_g = {0, t}, {f, f_new}, {g, g_new}
  end
  -- zoom (positions 1 and 2 of the bracket; lo holds the lower loss)
  local insuf_progress = false
  local lo, hi = 2, 1
  if br_f[1] <= br_f[#br_f] then lo, hi = 1, 2 end
  while not done and ls_iter < max_ls do
    if math.abs(br[2] - br[1]) * d_norm < tolerance_change then break end
    t = cubic_interpolate(br[1], br_f[1], br_gtd[1], br[2], br_f[2], br_gtd[2])
    -- a trial too close to an end of the bracket, twice in a row or outside it, moves to a
    -- tenth of the bracket's length inside the nearer end
    local bmax, bmin = math.max(br[1], br[2]), math.min(br[1], br[2])
    local eps = 0.1 * (bmax - bmin)
    if math.min(bmax - t, t - bmin) < eps then
      if insuf_progress or t >= bmax or t <= bmin then
        if math.abs(t - bmax) < math.abs(t - bmin) then t = bmax - eps else t = bmin + eps end
        insuf_progress = false
      else
        insuf_progress = true
      end
    else
      insuf_progress = false
    end
    f_new, g_new = obj(t)
    evals = evals + 1
    gtd_new = g_new:dot(d):item()
    ls_iter = ls_iter + 1
    if f_new > f + c1 * t * gtd or f_new >= br_f[lo] then
      br[hi], br_f[hi], br_g[hi], br_gtd[hi] = t, f_new, g_new, gtd_new
      if br_f[1] <= br_f[2] then lo, hi = 1, 2 else lo, hi = 2, 1 end
    else
      if math.abs(gtd_new) <= -c2 * gtd then
        done = true
      elseif gtd_new * (br[hi] - br[lo]) >= 0 then
        br[hi], br_f[hi], br_g[hi], br_gtd[hi] = br[lo], br_f[lo], br_g[lo], br_gtd[lo]
      end
      br[lo], br_f[lo], br_g[lo], br_gtd[lo] = t, f_new, g_new, gtd_new
    end
  end
  return br_f[lo], br_g[lo], br[lo], evals
end

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
      local opt_cond = false
      if g.line_search_fn == "strong_wolfe" then
        local x_init = {}
        for i, p in ipairs(g.params) do x_init[i] = p:clone() end
        local function obj(step)
          self:_add_grad(step, d)
          local l = lunar.enable_grad(closure)
          l = lunar.is_tensor(l) and l:item() or l
          local fg = self:_flat_grad()
          for i, p in ipairs(g.params) do p:copy_(x_init[i]) end
          return l, fg
        end
        loss, flat_grad, t, ls_evals = strong_wolfe(obj, t, d, loss, flat_grad, gtd, tol_change)
        self:_add_grad(t, d)
        opt_cond = absmax(flat_grad) <= tol_grad
      else
        self:_add_grad(t, d)
      end
      if g.line_search_fn == nil and n_iter ~= max_iter then
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
