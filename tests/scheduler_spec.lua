-- LR schedulers against PyTorch 1.13 (tests/fixtures/gen_optim.py): get_last_lr()[1] after
-- construction and after each of 30 steps; momentum where the scheduler cycles it;
-- ReduceLROnPlateau on a scripted loss sequence.
local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("optim")
local optim = lunar.optim
local S = optim.lr_scheduler

local function new_opt()
  local p = lunar.zeros(1)
  p.requires_grad = true
  return optim.SGD({p}, {lr = 0.1, momentum = 0.9})
end

local SCHEDS = {
  step = function(o) return S.StepLR(o, 7, {gamma = 0.5}) end,
  multistep = function(o) return S.MultiStepLR(o, {3, 8, 8, 20}, {gamma = 0.3}) end,
  exp = function(o) return S.ExponentialLR(o, 0.9) end,
  cos = function(o) return S.CosineAnnealingLR(o, 10, {eta_min = 0.01}) end,
  warm = function(o) return S.CosineAnnealingWarmRestarts(o, 4, {T_mult = 2, eta_min = 0.001}) end,
  warm1 = function(o) return S.CosineAnnealingWarmRestarts(o, 6) end,
  linear = function(o)
    return S.LinearLR(o, {start_factor = 0.25, end_factor = 1.0, total_iters = 8})
  end,
  linear_def = function(o) return S.LinearLR(o) end,
  onecycle = function(o) return S.OneCycleLR(o, 1.0, {total_steps = 30}) end,
  onecycle_opts = function(o)
    return S.OneCycleLR(o, 0.5, {epochs = 3, steps_per_epoch = 12, pct_start = 0.25,
      div_factor = 10, final_div_factor = 100, anneal_strategy = "linear"})
  end,
  cyclic = function(o) return S.CyclicLR(o, 0.01, 0.1, {step_size_up = 4}) end,
  cyclic2 = function(o)
    return S.CyclicLR(o, 0.01, 0.1, {step_size_up = 3, step_size_down = 5, mode = "triangular2"})
  end,
  cyclic_exp = function(o)
    return S.CyclicLR(o, 0.01, 0.1, {step_size_up = 4, mode = "exp_range", gamma = 0.95})
  end,
  lambda = function(o) return S.LambdaLR(o, function(e) return 1 / (1 + e) end) end,
}

describe("schedulers match PyTorch over 30 steps", function()
  for name, make in pairs(SCHEDS) do
    it(name, function()
      local opt = new_opt()
      local s = make(opt)
      local lrs, moms = {s:get_last_lr()[1]}, {opt.param_groups[1].momentum}
      for _ = 1, 30 do
        opt:step()
        s:step()
        lrs[#lrs + 1] = s:get_last_lr()[1]
        moms[#moms + 1] = opt.param_groups[1].momentum
        assert.are.equal(lrs[#lrs], opt.param_groups[1].lr)
      end
      H.close(lunar.tensor(lrs, {dtype = "float64"}), fx["lr_" .. name], 1e-10, 1e-12)
      if fx["mom_" .. name] then
        H.close(lunar.tensor(moms, {dtype = "float64"}), fx["mom_" .. name], 1e-10, 1e-12)
      end
    end)
  end

  it("OneCycleLR cycles Adam's beta1 and refuses to run past total_steps", function()
    local p = lunar.zeros(1)
    p.requires_grad = true
    local opt = optim.Adam({p})
    local s = S.OneCycleLR(opt, 0.01, {total_steps = 4})
    assert.are.equal(0.95, opt.param_groups[1].betas[1])
    for _ = 1, 4 do s:step() end
    assert.are.equal(0.999, opt.param_groups[1].betas[2])
    H.raises(function() s:step() end, "total_steps")
  end)

  it("schedulers act on every group, from each group's own lr", function()
    local a, b = lunar.zeros(1), lunar.zeros(1)
    local opt = optim.SGD({{params = {a}, lr = 1}, {params = {b}}}, {lr = 0.1})
    local s = S.StepLR(opt, 2, {gamma = 0.5})
    for _ = 1, 4 do s:step() end
    H.close(s:get_last_lr(), {0.25, 0.025}, 1e-12, 0)
  end)

  it("StepLR and CosineAnnealingLR take an explicit epoch (closed form)", function()
    local opt = new_opt()
    local s = S.StepLR(opt, 3, {gamma = 0.1})
    s:step(7)
    H.close(s:get_last_lr(), {0.1 * 0.01}, 1e-12, 0)
    local opt2 = new_opt()
    local c = S.CosineAnnealingLR(opt2, 10)
    c:step(5)
    H.close(c:get_last_lr(), {0.05}, 1e-12, 0)
  end)

  it("rejects bad arguments", function()
    local opt = new_opt()
    H.raises(function() S.StepLR(opt, 0) end, "step_size")
    H.raises(function() S.StepLR({}, 3) end, "optimizer")
    H.raises(function() S.LinearLR(opt, {start_factor = 0}) end, "start_factor")
    H.raises(function() S.CosineAnnealingWarmRestarts(opt, 0) end, "T_0")
    H.raises(function() S.OneCycleLR(opt, 1) end, "total_steps")
    H.raises(function() S.OneCycleLR(opt, {1, 2}, {total_steps = 3}) end, "expected 1 values")
    H.raises(function() S.CyclicLR(opt, 0.1, 1, {mode = "sine"}) end, "mode")
    H.raises(function() S.ReduceLROnPlateau(opt, {factor = 1}) end, "factor")
    H.raises(function() S.ReduceLROnPlateau(opt, {mode = "up"}) end, "mode")
    local p = lunar.zeros(1)
    H.raises(function() S.CyclicLR(optim.Adam({p}), 0.1, 1) end, "momentum")
  end)
end)

describe("ReduceLROnPlateau", function()
  local cases = {
    min = {patience = 2, factor = 0.5, cooldown = 1, min_lr = 0.02},
    abs = {patience = 1, threshold = 0.01, threshold_mode = "abs"},
    max = {mode = "max", patience = 0, factor = 0.9},
  }
  for name, opts in pairs(cases) do
    it("follows PyTorch's counters (" .. name .. ")", function()
      local p = lunar.zeros(1)
      local opt = optim.SGD({p}, {lr = 0.1})
      local s = S.ReduceLROnPlateau(opt, opts)
      local lrs = {}
      for _, v in ipairs(fx.plateau_losses:totable()) do
        s:step(v)
        lrs[#lrs + 1] = opt.param_groups[1].lr
      end
      H.close(lunar.tensor(lrs, {dtype = "float64"}), fx["plateau_" .. name], 1e-12, 0)
      assert.are.equal(lrs[#lrs], s:get_last_lr()[1])
    end)
  end
  it("accepts a 0-d tensor as the metric", function()
    local opt = optim.SGD({lunar.zeros(1)}, {lr = 0.1})
    local s = S.ReduceLROnPlateau(opt, {patience = 0})
    s:step(lunar.tensor(1.0))
    s:step(lunar.tensor(2.0))
    H.close(s:get_last_lr(), {0.01}, 1e-12, 0)
    H.raises(function() s:step("x") end, "metric")
  end)
end)
