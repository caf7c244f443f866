--- The optimizers whose step is one fused C kernel per parameter (lunar.optim_step):
-- SGD, Adagrad, Adadelta, RMSprop, Adam, AdamW, NAdam, Adamax. Formulas and defaults are
-- PyTorch 1.13's (its single-tensor code path); state names are PyTorch's too.
-- @module lunar.optim.fused
local lunar = require("lunar")
local Optimizer = require("lunar.optim.optimizer")

local M = {}

local function num(v, what)
  if type(v) ~= "number" then error("invalid " .. what .. " value: " .. tostring(v), 0) end
  return v
end

-- One hyper table reused for every call: the binding reads it and keeps nothing.
local hyper = {}

local function run(kind, p, g, slots, h)
  return lunar.optim_step(kind, p, g, slots, h)
end

local function zeros(p, st, name)
  local t = st[name]
  if t == nil then
    t = lunar.zeros_like(p)
    st[name] = t
  end
  return t
end

local function fill_hyper(g)
  for k in pairs(hyper) do hyper[k] = nil end
  hyper.lr = g.lr
  hyper.weight_decay = g.weight_decay or 0
  hyper.eps = g.eps or 0
  hyper.maximize = g.maximize or false
  return hyper
end

--- SGD with momentum, dampening, Nesterov momentum, weight decay and maximize.
-- `lunar.optim.SGD(params, {lr = 0.1, momentum = 0.9})`; lr is required.
M.SGD = Optimizer:extend("SGD")
function M.SGD:init(params, opts)
  opts = opts or {}
  if opts.lr == nil then error("SGD: lr is required (lunar.optim.SGD(params, {lr = ...}))", 3) end
  Optimizer.init(self, params, {lr = opts.lr, momentum = opts.momentum or 0,
    dampening = opts.dampening or 0, weight_decay = opts.weight_decay or 0,
    nesterov = opts.nesterov or false, maximize = opts.maximize or false})
end
function M.SGD.check(opt, g)
  Optimizer.check(opt, g)
  if num(g.momentum, "momentum") < 0 then error("invalid momentum value: " .. g.momentum, 0) end
  num(g.dampening, "dampening")
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    error("Nesterov momentum requires a momentum and zero dampening", 0)
  end
end
function M.SGD.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  h.momentum, h.dampening, h.nesterov = g.momentum, g.dampening, g.nesterov
  local slots = {}
  h.step = 2
  if g.momentum ~= 0 then
    if st.momentum_buffer == nil then h.step = 1 end
    slots[1] = zeros(p, st, "momentum_buffer")
  end
  run("sgd", p, gr, slots, h)
end

--- Adagrad: lr = 1e-2, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0,
-- eps = 1e-10, maximize = false.
M.Adagrad = Optimizer:extend("Adagrad")
function M.Adagrad:init(params, opts)
  opts = opts or {}
  Optimizer.init(self, params, {lr = opts.lr or 1e-2, lr_decay = opts.lr_decay or 0,
    weight_decay = opts.weight_decay or 0,
    initial_accumulator_value = opts.initial_accumulator_value or 0,
    eps = opts.eps or 1e-10, maximize = opts.maximize or false})
end
function M.Adagrad.check(opt, g)
  Optimizer.check(opt, g)
  if num(g.lr_decay, "lr_decay") < 0 then error("invalid lr_decay value: " .. g.lr_decay, 0) end
  if num(g.initial_accumulator_value, "initial_accumulator_value") < 0 then
    error("invalid initial_accumulator_value value: " .. g.initial_accumulator_value, 0)
  end
end
function M.Adagrad.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  if st.sum == nil then
    st.sum = lunar.full_like(p, g.initial_accumulator_value)
    st.step = 0
  end
  st.step = st.step + 1
  h.lr_decay, h.step = g.lr_decay, st.step
  run("adagrad", p, gr, {st.sum}, h)
end

--- Adadelta: lr = 1, rho = 0.9, eps = 1e-6, weight_decay = 0, maximize = false.
M.Adadelta = Optimizer:extend("Adadelta")
function M.Adadelta:init(params, opts)
  opts = opts or {}
  Optimizer.init(self, params, {lr = opts.lr or 1.0, rho = opts.rho or 0.9,
    eps = opts.eps or 1e-6, weight_decay = opts.weight_decay or 0,
    maximize = opts.maximize or false})
end
function M.Adadelta.check(opt, g)
  Optimizer.check(opt, g)
  if num(g.rho, "rho") < 0 or g.rho > 1 then error("invalid rho value: " .. g.rho, 0) end
end
function M.Adadelta.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  st.step = (st.step or 0) + 1
  h.beta1, h.step = g.rho, st.step
  run("adadelta", p, gr, {zeros(p, st, "square_avg"), zeros(p, st, "acc_delta")}, h)
end

--- RMSprop: lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0,
-- centered = false, maximize = false.
M.RMSprop = Optimizer:extend("RMSprop")
function M.RMSprop:init(params, opts)
  opts = opts or {}
  Optimizer.init(self, params, {lr = opts.lr or 1e-2, alpha = opts.alpha or 0.99,
    eps = opts.eps or 1e-8, weight_decay = opts.weight_decay or 0,
    momentum = opts.momentum or 0, centered = opts.centered or false,
    maximize = opts.maximize or false})
end
function M.RMSprop.check(opt, g)
  Optimizer.check(opt, g)
  if num(g.alpha, "alpha") < 0 then error("invalid alpha value: " .. g.alpha, 0) end
  if num(g.momentum, "momentum") < 0 then error("invalid momentum value: " .. g.momentum, 0) end
end
function M.RMSprop.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  st.step = (st.step or 0) + 1
  h.beta1, h.momentum, h.centered, h.step = g.alpha, g.momentum, g.centered, st.step
  local slots = {zeros(p, st, "square_avg")}
  if g.momentum > 0 then slots[2] = zeros(p, st, "momentum_buffer") end
  if g.centered then slots[3] = zeros(p, st, "grad_avg") end
  run("rmsprop", p, gr, slots, h)
end

local function adam_defaults(opts, lr, wd)
  local betas = opts.betas or {0.9, 0.999}
  return {lr = opts.lr or lr, betas = {betas[1], betas[2]}, eps = opts.eps or 1e-8,
    weight_decay = opts.weight_decay or wd, amsgrad = opts.amsgrad or false,
    maximize = opts.maximize or false}
end

local function adam_update(decoupled)
  return function(_, p, gr, g, st)
    local h = fill_hyper(g)
    st.step = (st.step or 0) + 1
    h.beta1, h.beta2, h.amsgrad, h.decoupled = g.betas[1], g.betas[2], g.amsgrad, decoupled
    h.step = st.step
    local slots = {zeros(p, st, "exp_avg"), zeros(p, st, "exp_avg_sq")}
    if g.amsgrad then slots[3] = zeros(p, st, "max_exp_avg_sq") end
    run("adam", p, gr, slots, h)
  end
end

--- Adam: lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0 (added to the
-- gradient), amsgrad = false, maximize = false.
M.Adam = Optimizer:extend("Adam")
function M.Adam:init(params, opts)
  Optimizer.init(self, params, adam_defaults(opts or {}, 1e-3, 0))
end
M.Adam.update = adam_update(false)

--- AdamW: Adam with decoupled weight decay (p = p * (1 - lr * weight_decay) before the
-- update); weight_decay defaults to 1e-2.
M.AdamW = Optimizer:extend("AdamW")
function M.AdamW:init(params, opts)
  Optimizer.init(self, params, adam_defaults(opts or {}, 1e-3, 1e-2))
end
M.AdamW.update = adam_update(true)

--- Adamax: lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, maximize = false.
M.Adamax = Optimizer:extend("Adamax")
function M.Adamax:init(params, opts)
  opts = opts or {}
  local d = adam_defaults(opts, 2e-3, 0)
  d.amsgrad = nil
  Optimizer.init(self, params, d)
end
function M.Adamax.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  st.step = (st.step or 0) + 1
  h.beta1, h.beta2, h.step = g.betas[1], g.betas[2], st.step
  run("adamax", p, gr, {zeros(p, st, "exp_avg"), zeros(p, st, "exp_inf")}, h)
end

--- NAdam: lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0,
-- momentum_decay = 4e-3. PyTorch 1.13's formula, including its mu_product_next (which
-- counts mu_t twice; PyTorch 2.0 changed it).
M.NAdam = Optimizer:extend("NAdam")
function M.NAdam:init(params, opts)
  opts = opts or {}
  local d = adam_defaults(opts, 2e-3, 0)
  d.amsgrad, d.maximize = nil, nil
  d.momentum_decay = opts.momentum_decay or 4e-3
  Optimizer.init(self, params, d)
end
function M.NAdam.check(opt, g)
  Optimizer.check(opt, g)
  if num(g.momentum_decay, "momentum_decay") < 0 then
    error("invalid momentum_decay value: " .. g.momentum_decay, 0)
  end
end
function M.NAdam.update(_, p, gr, g, st)
  local h = fill_hyper(g)
  st.step = (st.step or 0) + 1
  h.beta1, h.beta2, h.momentum_decay = g.betas[1], g.betas[2], g.momentum_decay
  h.step, h.mu_product = st.step, st.mu_product or 1
  st.mu_product = run("nadam", p, gr, {zeros(p, st, "exp_avg"), zeros(p, st, "exp_avg_sq")}, h)
end

return M
