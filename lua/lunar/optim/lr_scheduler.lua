--- Learning-rate schedulers with PyTorch 1.13's semantics: construction already takes step 0
-- (sets each group's lr for epoch 0); call `sched:step()` once per epoch (or per batch for
-- OneCycleLR and CyclicLR) after `opt:step()`. `get_last_lr()` gives the list of the
-- groups' lrs. ReduceLROnPlateau takes the metric: `sched:step(val_loss)`.
--   local sched = lunar.optim.lr_scheduler.StepLR(opt, 30, {gamma = 0.1})
-- @module lunar.optim.lr_scheduler
local class = require("lunar.class")

local M = {}
local pi, cos = math.pi, math.cos

local function check_optimizer(opt, name)
  if type(opt) ~= "table" or type(opt.param_groups) ~= "table" then
    error(name .. ": expected an optimizer (got " .. type(opt) .. ")", 4)
  end
end

-- One value per group: a number for all of them, or a list with one per group.
local function per_group(opt, v, what, name)
  local n = #opt.param_groups
  if type(v) == "table" then
    if #v ~= n then
      error(string.format("%s: expected %d values for %s, got %d", name, n, what, #v), 4)
    end
    return {table.unpack(v)}
  end
  if type(v) ~= "number" then error(name .. ": " .. what .. " must be a number", 4) end
  local out = {}
  for i = 1, n do out[i] = v end
  return out
end

--- The base class: subclasses define `get_lr()` from self.last_epoch and the groups' lrs.
local LRScheduler = class("LRScheduler")
M.LRScheduler = LRScheduler

function LRScheduler:setup(opt, last_epoch)
  self.optimizer = opt
  last_epoch = last_epoch or -1
  if last_epoch == -1 then
    for _, g in ipairs(opt.param_groups) do
      if g.initial_lr == nil then g.initial_lr = g.lr end
    end
  else
    for i, g in ipairs(opt.param_groups) do
      if g.initial_lr == nil then
        error(string.format("%s: param group %d has no initial_lr for resuming", self.__name, i), 4)
      end
    end
  end
  self.base_lrs = {}
  for i, g in ipairs(opt.param_groups) do self.base_lrs[i] = g.initial_lr end
  self.last_epoch = last_epoch
  self._step_count = 0
  self:step()
end

--- Advances one epoch (or sets the epoch when given, using the closed form where the
-- scheduler has one) and writes the new lrs into the optimizer's groups.
function LRScheduler:step(epoch)
  self._step_count = self._step_count + 1
  local values
  if epoch == nil then
    self.last_epoch = self.last_epoch + 1
    values = self:get_lr()
  else
    self.last_epoch = epoch
    values = self.closed_form and self:closed_form() or self:get_lr()
  end
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = values[i]
    self._last_lr[i] = values[i]
  end
end

--- The lrs the last step set, one per group.
function LRScheduler:get_last_lr() return {table.unpack(self._last_lr)} end

--- The scheduler's numeric and table fields (not the optimizer nor functions).
function LRScheduler:state_dict()
  local sd = {}
  for k, v in pairs(self) do
    if k ~= "optimizer" and type(v) ~= "function" then
      sd[k] = type(v) == "table" and {table.unpack(v)} or v
    end
  end
  return sd
end

function LRScheduler:load_state_dict(sd)
  for k, v in pairs(sd) do self[k] = type(v) == "table" and {table.unpack(v)} or v end
end

local function lrs_of(self)
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = g.lr end
  return out
end

--- StepLR(opt, step_size, {gamma = 0.1}): lr *= gamma every step_size epochs.
M.StepLR = LRScheduler:extend("StepLR")
function M.StepLR:init(opt, step_size, opts)
  check_optimizer(opt, "StepLR")
  if type(step_size) ~= "number" or step_size < 1 then
    error("StepLR: step_size must be a positive integer (got " .. tostring(step_size) .. ")", 3)
  end
  opts = opts or {}
  self.step_size, self.gamma = step_size, opts.gamma or 0.1
  self:setup(opt, opts.last_epoch)
end
function M.StepLR:get_lr()
  local lrs = lrs_of(self)
  if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then return lrs end
  for i, lr in ipairs(lrs) do lrs[i] = lr * self.gamma end
  return lrs
end
function M.StepLR:closed_form()
  local out = {}
  for i, b in ipairs(self.base_lrs) do
    out[i] = b * self.gamma ^ (self.last_epoch // self.step_size)
  end
  return out
end

--- MultiStepLR(opt, milestones, {gamma = 0.1}): lr *= gamma at each milestone epoch.
M.MultiStepLR = LRScheduler:extend("MultiStepLR")
function M.MultiStepLR:init(opt, milestones, opts)
  check_optimizer(opt, "MultiStepLR")
  if type(milestones) ~= "table" then error("MultiStepLR: milestones must be a list", 3) end
  opts = opts or {}
  self.milestones = {}
  for _, m in ipairs(milestones) do self.milestones[m] = (self.milestones[m] or 0) + 1 end
  self.gamma = opts.gamma or 0.1
  self:setup(opt, opts.last_epoch)
end
function M.MultiStepLR:get_lr()
  local lrs = lrs_of(self)
  local k = self.milestones[self.last_epoch]
  if k == nil then return lrs end
  for i, lr in ipairs(lrs) do lrs[i] = lr * self.gamma ^ k end
  return lrs
end

--- ExponentialLR(opt, gamma): lr *= gamma every epoch.
M.ExponentialLR = LRScheduler:extend("ExponentialLR")
function M.ExponentialLR:init(opt, gamma, opts)
  check_optimizer(opt, "ExponentialLR")
  if type(gamma) ~= "number" then error("ExponentialLR: gamma must be a number", 3) end
  self.gamma = gamma
  self:setup(opt, (opts or {}).last_epoch)
end
function M.ExponentialLR:get_lr()
  local lrs = lrs_of(self)
  if self.last_epoch == 0 then return lrs end
  for i, lr in ipairs(lrs) do lrs[i] = lr * self.gamma end
  return lrs
end

--- CosineAnnealingLR(opt, T_max, {eta_min = 0}): PyTorch's recursive form.
M.CosineAnnealingLR = LRScheduler:extend("CosineAnnealingLR")
function M.CosineAnnealingLR:init(opt, T_max, opts)
  check_optimizer(opt, "CosineAnnealingLR")
  if type(T_max) ~= "number" or T_max <= 0 then
    error("CosineAnnealingLR: T_max must be a positive number (got " .. tostring(T_max) .. ")", 3)
  end
  opts = opts or {}
  self.T_max, self.eta_min = T_max, opts.eta_min or 0
  self:setup(opt, opts.last_epoch)
end
function M.CosineAnnealingLR:get_lr()
  local e, T, emin = self.last_epoch, self.T_max, self.eta_min
  local lrs = lrs_of(self)
  if e == 0 then return lrs end
  if self._step_count == 1 and e > 0 then return self:closed_form() end
  if (e - 1 - T) % (2 * T) == 0 then
    for i, lr in ipairs(lrs) do
      lrs[i] = lr + (self.base_lrs[i] - emin) * (1 - cos(pi / T)) / 2
    end
    return lrs
  end
  for i, lr in ipairs(lrs) do
    lrs[i] = (1 + cos(pi * e / T)) / (1 + cos(pi * (e - 1) / T)) * (lr - emin) + emin
  end
  return lrs
end
function M.CosineAnnealingLR:closed_form()
  local out = {}
  for i, b in ipairs(self.base_lrs) do
    out[i] = self.eta_min + (b - self.eta_min) * (1 + cos(pi * self.last_epoch / self.T_max)) / 2
  end
  return out
end

--- CosineAnnealingWarmRestarts(opt, T_0, {T_mult = 1, eta_min = 0}); step(epoch) accepts
-- fractional epochs as PyTorch does.
M.CosineAnnealingWarmRestarts = LRScheduler:extend("CosineAnnealingWarmRestarts")
function M.CosineAnnealingWarmRestarts:init(opt, T_0, opts)
  check_optimizer(opt, "CosineAnnealingWarmRestarts")
  opts = opts or {}
  if math.type(T_0) ~= "integer" or T_0 <= 0 then
    error("CosineAnnealingWarmRestarts: expected a positive integer T_0, got " .. tostring(T_0), 3)
  end
  local T_mult = opts.T_mult or 1
  if math.type(T_mult) ~= "integer" or T_mult < 1 then
    error("CosineAnnealingWarmRestarts: expected an integer T_mult >= 1, got "
      .. tostring(T_mult), 3)
  end
  self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, opts.eta_min or 0
  self.T_cur = opts.last_epoch or -1
  self:setup(opt, opts.last_epoch)
end
function M.CosineAnnealingWarmRestarts:get_lr()
  local out = {}
  for i, b in ipairs(self.base_lrs) do
    out[i] = self.eta_min + (b - self.eta_min) * (1 + cos(pi * self.T_cur / self.T_i)) / 2
  end
  return out
end
function M.CosineAnnealingWarmRestarts:step(epoch)
  if epoch == nil and self.last_epoch < 0 then epoch = 0 end
  if epoch == nil then
    epoch = self.last_epoch + 1
    self.T_cur = self.T_cur + 1
    if self.T_cur >= self.T_i then
      self.T_cur = self.T_cur - self.T_i
      self.T_i = self.T_i * self.T_mult
    end
  else
    if epoch < 0 then error("CosineAnnealingWarmRestarts: expected epoch >= 0, got "
      .. epoch, 2) end
    if epoch >= self.T_0 then
      if self.T_mult == 1 then
        self.T_cur = epoch % self.T_0
      else
        local n = math.floor(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        self.T_cur = epoch - self.T_0 * (self.T_mult ^ n - 1) / (self.T_mult - 1)
        self.T_i = self.T_0 * self.T_mult ^ n
      end
    else
      self.T_i = self.T_0
      self.T_cur = epoch
    end
  end
  self._step_count = self._step_count + 1
  self.last_epoch = math.floor(epoch)
  local values = self:get_lr()
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = values[i]
    self._last_lr[i] = values[i]
  end
end

--- LinearLR(opt, {start_factor = 1/3, end_factor = 1, total_iters = 5}): linear warm-up.
M.LinearLR = LRScheduler:extend("LinearLR")
function M.LinearLR:init(opt, opts)
  check_optimizer(opt, "LinearLR")
  opts = opts or {}
  local s, e = opts.start_factor or 1 / 3, opts.end_factor or 1
  if s > 1 or s <= 0 then
    error("LinearLR: start_factor must be in (0, 1] (got " .. tostring(s) .. ")", 3)
  end
  if e > 1 or e < 0 then error("LinearLR: end_factor must be in [0, 1] (got " .. tostring(e)
    .. ")", 3) end
  self.start_factor, self.end_factor, self.total_iters = s, e, opts.total_iters or 5
  self:setup(opt, opts.last_epoch)
end
function M.LinearLR:get_lr()
  local lrs = lrs_of(self)
  local s, e, n, t = self.start_factor, self.end_factor, self.total_iters, self.last_epoch
  if t == 0 then
    for i, lr in ipairs(lrs) do lrs[i] = lr * s end
    return lrs
  end
  if t > n then return lrs end
  for i, lr in ipairs(lrs) do
    lrs[i] = lr * (1 + (e - s) / (n * s + (t - 1) * (e - s)))
  end
  return lrs
end
function M.LinearLR:closed_form()
  local out = {}
  local s, e, n = self.start_factor, self.end_factor, self.total_iters
  for i, b in ipairs(self.base_lrs) do
    out[i] = b * (s + (e - s) * math.min(n, self.last_epoch) / n)
  end
  return out
end

--- LambdaLR(opt, fn or {fn per group}): lr = base_lr * fn(epoch).
M.LambdaLR = LRScheduler:extend("LambdaLR")
function M.LambdaLR:init(opt, lr_lambda, opts)
  check_optimizer(opt, "LambdaLR")
  local n = #opt.param_groups
  if type(lr_lambda) == "function" then
    self.lr_lambdas = {}
    for i = 1, n do self.lr_lambdas[i] = lr_lambda end
  elseif type(lr_lambda) == "table" and #lr_lambda == n then
    self.lr_lambdas = {table.unpack(lr_lambda)}
  else
    error(string.format("LambdaLR: expected a function or %d functions", n), 3)
  end
  self:setup(opt, (opts or {}).last_epoch)
end
function M.LambdaLR:get_lr()
  local out = {}
  for i, b in ipairs(self.base_lrs) do out[i] = b * self.lr_lambdas[i](self.last_epoch) end
  return out
end
function M.LambdaLR:state_dict()
  local sd = LRScheduler.state_dict(self)
  sd.lr_lambdas = nil
  return sd
end

--- OneCycleLR(opt, max_lr, {total_steps = n | epochs = e, steps_per_epoch = s,
-- pct_start = 0.3, anneal_strategy = "cos" | "linear", cycle_momentum = true,
-- base_momentum = 0.85, max_momentum = 0.95, div_factor = 25, final_div_factor = 1e4}).
-- three_phase = false: two phases (up to max_lr, then down to min_lr); three_phase = true:
-- up, back down to initial_lr symmetrically, then down to min_lr (the paper's schedule).
-- Step it once per batch.
M.OneCycleLR = LRScheduler:extend("OneCycleLR")
function M.OneCycleLR:init(opt, max_lr, opts)
  check_optimizer(opt, "OneCycleLR")
  opts = opts or {}
  local total = opts.total_steps
  if total == nil then
    local e, s = opts.epochs, opts.steps_per_epoch
    if e == nil or s == nil then
      error("OneCycleLR: give total_steps, or epochs and steps_per_epoch", 3)
    end
    if e <= 0 then error("OneCycleLR: expected a positive integer epochs, got " .. e, 3) end
    if s <= 0 then error("OneCycleLR: expected a positive integer steps_per_epoch, got "
      .. s, 3) end
    total = e * s
  elseif total <= 0 then
    error("OneCycleLR: expected a positive integer total_steps, got " .. tostring(total), 3)
  end
  self.total_steps = total
  local pct = opts.pct_start or 0.3
  if pct < 0 or pct > 1 then
    error("OneCycleLR: expected pct_start in [0, 1], got " .. tostring(pct), 3)
  end
  if opts.three_phase then
    self.phases = {
      {end_step = pct * total - 1, start_lr = "initial_lr", end_lr = "max_lr",
        start_m = "max_momentum", end_m = "base_momentum"},
      {end_step = 2 * pct * total - 2, start_lr = "max_lr", end_lr = "initial_lr",
        start_m = "base_momentum", end_m = "max_momentum"},
      {end_step = total - 1, start_lr = "initial_lr", end_lr = "min_lr",
        start_m = "max_momentum", end_m = "max_momentum"},
    }
  else
    self.phases = {
      {end_step = pct * total - 1, start_lr = "initial_lr", end_lr = "max_lr",
        start_m = "max_momentum", end_m = "base_momentum"},
      {end_step = total - 1, start_lr = "max_lr", end_lr = "min_lr",
        start_m = "base_momentum", end_m = "max_momentum"},
    }
  end
  local strategy = opts.anneal_strategy or "cos"
  if strategy ~= "cos" and strategy ~= "linear" then
    error("OneCycleLR: anneal_strategy must be 'cos' or 'linear', got " .. tostring(strategy), 3)
  end
  self.anneal_strategy = strategy
  local div, final = opts.div_factor or 25, opts.final_div_factor or 1e4
  local max_lrs = per_group(opt, max_lr, "max_lr", "OneCycleLR")
  local last = opts.last_epoch or -1
  if last == -1 then
    for i, g in ipairs(opt.param_groups) do
      g.initial_lr = max_lrs[i] / div
      g.max_lr = max_lrs[i]
      g.min_lr = g.initial_lr / final
    end
  end
  self.cycle_momentum = opts.cycle_momentum ~= false
  if self.cycle_momentum then
    local d = opt.defaults or {}
    if d.momentum == nil and d.betas == nil then
      error("OneCycleLR: the optimizer must have momentum or betas for cycle_momentum", 3)
    end
    self.use_beta1 = d.betas ~= nil
    local maxm = per_group(opt, opts.max_momentum or 0.95, "max_momentum", "OneCycleLR")
    local basem = per_group(opt, opts.base_momentum or 0.85, "base_momentum", "OneCycleLR")
    if last == -1 then
      for i, g in ipairs(opt.param_groups) do
        if self.use_beta1 then g.betas = {maxm[i], g.betas[2]} else g.momentum = maxm[i] end
        g.max_momentum, g.base_momentum = maxm[i], basem[i]
      end
    end
  end
  self:setup(opt, last)
end
function M.OneCycleLR:anneal(a, b, pct)
  if self.anneal_strategy == "linear" then return (b - a) * pct + a end
  return b + (a - b) / 2 * (cos(pi * pct) + 1)
end
function M.OneCycleLR:get_lr()
  local t = self.last_epoch
  if t > self.total_steps then
    error(string.format("OneCycleLR: tried to step %d times; total_steps is %d", t,
      self.total_steps), 3)
  end
  local out = {}
  for gi, g in ipairs(self.optimizer.param_groups) do
    local start = 0
    for i, ph in ipairs(self.phases) do
      if t <= ph.end_step or i == #self.phases then
        local pct = (t - start) / (ph.end_step - start)
        out[gi] = self:anneal(g[ph.start_lr], g[ph.end_lr], pct)
        if self.cycle_momentum then
          local m = self:anneal(g[ph.start_m], g[ph.end_m], pct)
          if self.use_beta1 then g.betas = {m, g.betas[2]} else g.momentum = m end
        end
        break
      end
      start = ph.end_step
    end
  end
  return out
end

--- CyclicLR(opt, base_lr, max_lr, {step_size_up = 2000, step_size_down, mode = "triangular"
-- | "triangular2" | "exp_range", gamma = 1, scale_fn, scale_mode = "cycle" | "iterations",
-- cycle_momentum = true, base_momentum = 0.8, max_momentum = 0.9}). Step it per batch.
M.CyclicLR = LRScheduler:extend("CyclicLR")
function M.CyclicLR:init(opt, base_lr, max_lr, opts)
  check_optimizer(opt, "CyclicLR")
  opts = opts or {}
  local last = opts.last_epoch or -1
  local base_lrs = per_group(opt, base_lr, "base_lr", "CyclicLR")
  if last == -1 then
    for i, g in ipairs(opt.param_groups) do g.lr = base_lrs[i] end
  end
  self.max_lrs = per_group(opt, max_lr, "max_lr", "CyclicLR")
  local up = opts.step_size_up or 2000
  local down = opts.step_size_down or up
  self.total_size = up + down
  self.step_ratio = up / self.total_size
  local mode = opts.mode or "triangular"
  self.mode, self.gamma = mode, opts.gamma or 1
  if opts.scale_fn then
    self.scale_fn, self.scale_mode = opts.scale_fn, opts.scale_mode or "cycle"
  elseif mode == "triangular" then
    self.scale_fn, self.scale_mode = function() return 1 end, "cycle"
  elseif mode == "triangular2" then
    self.scale_fn, self.scale_mode = function(x) return 1 / 2 ^ (x - 1) end, "cycle"
  elseif mode == "exp_range" then
    local gamma = self.gamma
    self.scale_fn, self.scale_mode = function(x) return gamma ^ x end, "iterations"
  else
    error("CyclicLR: mode must be triangular, triangular2 or exp_range (got "
      .. tostring(mode) .. ")", 3)
  end
  self.cycle_momentum = opts.cycle_momentum ~= false
  if self.cycle_momentum then
    if (opt.defaults or {}).momentum == nil then
      error("CyclicLR: the optimizer must support momentum for cycle_momentum", 3)
    end
    local basem = per_group(opt, opts.base_momentum or 0.8, "base_momentum", "CyclicLR")
    if last == -1 then
      for i, g in ipairs(opt.param_groups) do g.momentum = basem[i] end
    end
    self.base_momentums = {}
    for i, g in ipairs(opt.param_groups) do self.base_momentums[i] = g.momentum end
    self.max_momentums = per_group(opt, opts.max_momentum or 0.9, "max_momentum", "CyclicLR")
  end
  self:setup(opt, last)
  self.base_lrs = base_lrs
end
function M.CyclicLR:get_lr()
  local e = self.last_epoch
  local cycle = math.floor(1 + e / self.total_size)
  local x = 1 + e / self.total_size - cycle
  local scale
  if x <= self.step_ratio then scale = x / self.step_ratio
  else scale = (x - 1) / (self.step_ratio - 1) end
  local s = self.scale_fn(self.scale_mode == "cycle" and cycle or e)
  local out = {}
  for i, b in ipairs(self.base_lrs) do out[i] = b + (self.max_lrs[i] - b) * scale * s end
  if self.cycle_momentum then
    for i, g in ipairs(self.optimizer.param_groups) do
      local mx = self.max_momentums[i]
      g.momentum = mx - (mx - self.base_momentums[i]) * scale * s
    end
  end
  return out
end
function M.CyclicLR:state_dict()
  local sd = LRScheduler.state_dict(self)
  sd.scale_fn = nil
  return sd
end

--- ReduceLROnPlateau(opt, {mode = "min", factor = 0.1, patience = 10, threshold = 1e-4,
-- threshold_mode = "rel", cooldown = 0, min_lr = 0, eps = 1e-8}); `sched:step(metric)`.
M.ReduceLROnPlateau = class("ReduceLROnPlateau")
function M.ReduceLROnPlateau:init(opt, opts)
  check_optimizer(opt, "ReduceLROnPlateau")
  opts = opts or {}
  local factor = opts.factor or 0.1
  if factor >= 1 then error("ReduceLROnPlateau: factor should be < 1.0 (got " .. factor
    .. ")", 3) end
  self.optimizer, self.factor = opt, factor
  self.min_lrs = per_group(opt, opts.min_lr or 0, "min_lr", "ReduceLROnPlateau")
  self.patience, self.cooldown = opts.patience or 10, opts.cooldown or 0
  self.threshold, self.eps = opts.threshold or 1e-4, opts.eps or 1e-8
  self.mode, self.threshold_mode = opts.mode or "min", opts.threshold_mode or "rel"
  if self.mode ~= "min" and self.mode ~= "max" then
    error("ReduceLROnPlateau: mode " .. tostring(self.mode) .. " is unknown (min or max)", 3)
  end
  if self.threshold_mode ~= "rel" and self.threshold_mode ~= "abs" then
    error("ReduceLROnPlateau: threshold_mode " .. tostring(self.threshold_mode)
      .. " is unknown (rel or abs)", 3)
  end
  self.best = self.mode == "min" and math.huge or -math.huge
  self.num_bad_epochs, self.cooldown_counter, self.last_epoch = 0, 0, 0
  self._last_lr = lrs_of(self)
end
function M.ReduceLROnPlateau:is_better(a, best)
  local t = self.threshold
  if self.mode == "min" then
    if self.threshold_mode == "rel" then return a < best * (1 - t) end
    return a < best - t
  end
  if self.threshold_mode == "rel" then return a > best * (t + 1) end
  return a > best + t
end
--- Records a metric value (a number or a 0-d tensor) and reduces the lrs on a plateau.
function M.ReduceLROnPlateau:step(metric, epoch)
  if type(metric) ~= "number" then
    if type(metric) == "userdata" and metric.item then metric = metric:item()
    else error("ReduceLROnPlateau:step: metric must be a number (got " .. type(metric)
      .. ")", 2) end
  end
  self.last_epoch = epoch or self.last_epoch + 1
  if self:is_better(metric, self.best) then
    self.best, self.num_bad_epochs = metric, 0
  else
    self.num_bad_epochs = self.num_bad_epochs + 1
  end
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.num_bad_epochs = 0
  end
  if self.num_bad_epochs > self.patience then
    for i, g in ipairs(self.optimizer.param_groups) do
      local old = g.lr
      local new = math.max(old * self.factor, self.min_lrs[i])
      if old - new > self.eps then g.lr = new end
    end
    self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
  end
  self._last_lr = lrs_of(self)
end
M.ReduceLROnPlateau.get_last_lr = LRScheduler.get_last_lr
M.ReduceLROnPlateau.state_dict = LRScheduler.state_dict
M.ReduceLROnPlateau.load_state_dict = LRScheduler.load_state_dict

return M
