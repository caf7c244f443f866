--- L-BFGS (PyTorch 1.13's algorithm, in Lua over one flat vector of all parameters).
--   local opt = lunar.optim.LBFGS(params, {lr = 1, max_iter = 20, history_size = 100,
--                                          line_search_fn = "strong_wolfe"})
--   opt:step(function() opt:zero_grad(); local l = loss(); l:backward(); return l end)
-- Options: lr = 1, max_iter = 20, max_eval = max_iter * 5 // 4, tolerance_grad = 1e-7,
-- tolerance_change = 1e-9, history_size = 100, line_search_fn = nil (a fixed step of lr)
-- or "strong_wolfe" (PyTorch's bracketing and zoom line search with cubic interpolation,
-- c1 = 1e-4, c2 = 0.9, at most 25 evaluations per search). One parameter group only.
-- The history lives in opt.state[first parameter] under PyTorch's names, so state_dict and
-- load_state_dict carry it and a checkpoint resumes a run exactly: func_evals and n_iter
-- (counters over all steps), d and t (the last direction and its step), old_dirs and
-- old_stps (the last history_size gradient and step differences y and s), ro (1 / y.s for
-- each), H_diag (the initial inverse Hessian scale), prev_flat_grad, prev_loss, and al (the
-- last two-loop coefficients). In opt.state they are Lua lists; state_dict gives old_dirs
-- and old_stps as [k, n] tensors (k entries of the n parameter elements) and ro and al as
-- 1-d float64 tensors, so lunar.optim.flatten_state_dict can write them.
-- float32: the scalars (dot products, t, ro, H_diag, the line search's arithmetic) are Lua
-- doubles, where PyTorch keeps some of them as float32 0-d tensors. Following PyTorch
-- there is not worth its cost in clarity: whether a value is a double or a float32 tensor
-- changes along the code paths (t is a tensor after the first iteration's step only when
-- the gradient's 1-norm exceeds 1; cubic interpolation returns either), `x / tensor` is
-- reciprocal-then-multiply and `add_(v, alpha = a)` a fused multiply-add on vectorised CPU
-- builds, and lunar's float32 reductions accumulate in double where PyTorch's stay in float.
-- Nor would it buy agreement: on Rosenbrock in float32, PyTorch, PyTorch with its scalars
-- made doubles (an experiment) and lunar all differ by a few percent within three steps,
-- the line search turning ulp differences, in scalars or in tensor kernels alike, into
-- other steps (and another count of evaluations). Well-conditioned problems agree to ~1e-7
-- (tests/parity_spec.lua checks two at 1e-5, and the float64 cases at 1e-6).
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
  local p1 = g.params[1]
  local st = self.state[p1]
  if st == nil then st = {func_evals = 0, n_iter = 0}; self.state[p1] = st end
  local orig_loss = lunar.enable_grad(closure)
  local loss = lunar.is_tensor(orig_loss) and orig_loss:item() or orig_loss
  local evals = 1
  st.func_evals = st.func_evals + 1
  lunar.no_grad(function()
    local flat_grad = self:_flat_grad()
    if absmax(flat_grad) <= tol_grad then return end
    local d, t = st.d, st.t
    local old_dirs, old_stps, ro, H_diag = st.old_dirs, st.old_stps, st.ro, st.H_diag
    local prev_flat_grad, prev_loss, al = st.prev_flat_grad, st.prev_loss, st.al
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
          -- (while: history_size may have been lowered since the history was made)
          while #old_dirs >= hist do
            table.remove(old_dirs, 1); table.remove(old_stps, 1); table.remove(ro, 1)
          end
          old_dirs[#old_dirs + 1], old_stps[#old_stps + 1], ro[#ro + 1] = y, s, 1 / ys
          H_diag = ys / y:dot(y):item()
        end
        al = {}
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
    st.prev_flat_grad, st.prev_loss, st.al = prev_flat_grad, prev_loss, al
  end)
  return orig_loss
end

local F64 = {dtype = "float64", device = "cpu"}

-- The number of elements of the flat vector L-BFGS works on.
local function flat_size(params)
  local n = 0
  for _, p in ipairs(params) do n = n + p:numel() end
  return n
end

-- A list of flat tensors as one [k, n] tensor (k may be 0) like the parameter p.
local function stack_rows(list, n, p)
  if #list == 0 then return lunar.zeros(0, n, {dtype = p:dtype(), device = p:device()}) end
  return lunar.stack(list)
end

--- The optimizer's state with the L-BFGS history under state[1] (see the module comment
-- for its layout). The history's tensors are copies; d and prev_flat_grad are live.
function LBFGS:state_dict()
  local sd = Optimizer.state_dict(self)
  local st = sd.state[1]
  if st ~= nil and st.old_dirs ~= nil then
    local params = self.param_groups[1].params
    local n = flat_size(params)
    st.old_dirs = stack_rows(st.old_dirs, n, params[1])
    st.old_stps = stack_rows(st.old_stps, n, params[1])
    st.ro = lunar.tensor(st.ro, F64)
    st.al = lunar.tensor(st.al or {}, F64)
  end
  return sd
end

local function shape_str(t)
  local parts = {}
  for i, v in ipairs(t:size()) do parts[i] = tostring(v) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

-- The history saved by state_dict (possibly through a file: numbers may come as 0-d
-- tensors) checked against the parameters and converted to the form step uses; raises
-- (level 0) on anything that does not fit, before the optimizer is touched.
local function read_history(saved, params, hist)
  if type(saved) ~= "table" then error("the L-BFGS state must be a table", 0) end
  local p1, n = params[1], flat_size(params)
  local function number(k, integer)
    local v = saved[k]
    if lunar.is_tensor(v) then
      if v:numel() ~= 1 then
        error(("%s has shape %s, not one number"):format(k, shape_str(v)), 0)
      end
      v = v:item()
    end
    if type(v) ~= "number" then error(("%s must be a number (got %s)"):format(k, type(v)), 0) end
    if integer then
      local i = math.tointeger(v)
      if i == nil or i < 0 then error(("%s must be a count (got %s)"):format(k, tostring(v)), 0) end
      v = i
    end
    return v
  end
  local function tensor(k, dim)
    local v = saved[k]
    if not lunar.is_tensor(v) then error(("%s must be a tensor (got %s)"):format(k, type(v)), 0) end
    if v:dim() ~= dim then
      error(("%s has shape %s, expected %d dimension(s)"):format(k, shape_str(v), dim), 0)
    end
    return v
  end
  -- on the parameters' device and dtype, as the kernels need (a loaded state is on the CPU)
  local function like_params(v) return v:to(p1:dtype()):to(p1:device()):clone():contiguous() end
  local st = {func_evals = number("func_evals", true), n_iter = number("n_iter", true)}
  if saved.d == nil then
    if st.n_iter > 0 then error("n_iter is " .. st.n_iter .. " but there is no history (d)", 0) end
    return st
  end
  for _, k in ipairs({"d", "prev_flat_grad"}) do
    local v = tensor(k, 1)
    if v:numel() ~= n then
      error(("%s has %d elements, but the parameters have %d"):format(k, v:numel(), n), 0)
    end
    st[k] = like_params(v)
  end
  st.t, st.H_diag, st.prev_loss = number("t"), number("H_diag"), number("prev_loss")
  local dirs, stps = tensor("old_dirs", 2), tensor("old_stps", 2)
  local k = dirs:size()[1]
  if dirs:size()[2] ~= n or stps:size()[1] ~= k or stps:size()[2] ~= n then
    error(("old_dirs %s and old_stps %s must both be [k, %d] (the parameters have %d elements)")
      :format(shape_str(dirs), shape_str(stps), n, n), 0)
  end
  if k > hist then
    error(("old_dirs holds %d entries, more than history_size %d"):format(k, hist), 0)
  end
  local ro, al = tensor("ro", 1):totable(), saved.al and tensor("al", 1):totable() or {}
  if #ro ~= k then error(("ro has %d entries, old_dirs %d"):format(#ro, k), 0) end
  if #al ~= 0 and #al ~= k then error(("al has %d entries, old_dirs %d"):format(#al, k), 0) end
  st.ro, st.al, st.old_dirs, st.old_stps = ro, al, {}, {}
  dirs, stps = like_params(dirs), like_params(stps)
  for i = 1, k do
    st.old_dirs[i] = dirs:narrow(1, i, 1):reshape(-1):clone()
    st.old_stps[i] = stps:narrow(1, i, 1):reshape(-1):clone()
  end
  return st
end

--- Loads what state_dict returned, the history included; a history that does not fit the
-- parameters (another model's) raises and leaves the optimizer as it was.
function LBFGS:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table"
    or type(sd.param_groups[1]) ~= "table" or type(sd.param_groups[1].params) ~= "table" then
    error("LBFGS:load_state_dict: expected a table with param_groups and state", 2)
  end
  local g, sg = self.param_groups[1], {}
  -- a file keeps numbers as float64 tensors: the integer options come back as 4.0
  for k, v in pairs(sd.param_groups[1]) do
    if (k == "max_iter" or k == "max_eval" or k == "history_size") and math.tointeger(v) then
      v = math.tointeger(v)
    end
    sg[k] = v
  end
  local first = sg.params[1]
  local groups = {sg}
  for i = 2, #sd.param_groups do groups[i] = sd.param_groups[i] end
  local rest, saved = {param_groups = groups, state = {}}, nil
  for i, v in pairs(sd.state or {}) do
    if tonumber(i) == first then saved = v else rest.state[i] = v end
  end
  local st
  if saved ~= nil then
    local hist = sg.history_size or g.history_size
    local ok, res = pcall(read_history, saved, g.params, hist)
    if not ok then error("LBFGS:load_state_dict: " .. tostring(res), 2) end
    st = res
  end
  -- the groups' checks (the base class raises before changing anything)
  local ok, err = pcall(Optimizer.load_state_dict, self, rest)
  if not ok then error((tostring(err):gsub("^.-:%d+: ", "")), 2) end
  if st ~= nil then self.state[g.params[1]] = st end
end

return {LBFGS = LBFGS}
