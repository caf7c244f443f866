-- Optimizers against PyTorch 1.13 (tests/fixtures/gen_optim.py): 10 steps from p0 with the
-- fixed gradients grads[k]; param groups; state_dict round trips; clipping; penalties; LBFGS.
local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("optim")
local optim = lunar.optim

local function leaf(t)
  local p = t:clone()
  p.requires_grad = true
  return p
end

local CFGS = {
  sgd = {"SGD", {lr = 0.1}},
  sgd_mom = {"SGD", {lr = 0.05, momentum = 0.9, dampening = 0.1, weight_decay = 0.01}},
  sgd_nest = {"SGD", {lr = 0.05, momentum = 0.8, nesterov = true, maximize = true}},
  adagrad = {"Adagrad", {}},
  adagrad_opts = {"Adagrad", {lr = 0.1, lr_decay = 0.05, weight_decay = 0.1,
    initial_accumulator_value = 0.5, eps = 1e-6}},
  adadelta = {"Adadelta", {}},
  adadelta_opts = {"Adadelta", {lr = 0.5, rho = 0.8, eps = 1e-4, weight_decay = 0.05,
    maximize = true}},
  rmsprop = {"RMSprop", {}},
  rmsprop_opts = {"RMSprop", {lr = 0.01, alpha = 0.9, eps = 1e-6, weight_decay = 0.1,
    momentum = 0.5, centered = true}},
  rmsprop_mom = {"RMSprop", {lr = 0.02, momentum = 0.9}},
  adam = {"Adam", {lr = 0.01}},
  adam_opts = {"Adam", {lr = 0.02, betas = {0.8, 0.99}, eps = 1e-6, weight_decay = 0.1,
    amsgrad = true}},
  adam_max = {"Adam", {lr = 0.01, maximize = true}},
  adamw = {"AdamW", {lr = 0.01}},
  adamw_opts = {"AdamW", {lr = 0.02, betas = {0.85, 0.995}, weight_decay = 0.3, amsgrad = true}},
  nadam = {"NAdam", {}},
  nadam_opts = {"NAdam", {lr = 0.01, betas = {0.8, 0.99}, weight_decay = 0.1,
    momentum_decay = 0.01}},
  adamax = {"Adamax", {}},
  adamax_opts = {"Adamax", {lr = 0.05, betas = {0.8, 0.9}, eps = 1e-4, weight_decay = 0.1,
    maximize = true}},
}

local function run(opt, p, from, to)
  for s = from, to do
    p.grad = fx.grads[s]:to(p:dtype())
    opt:step()
  end
end

describe("optimizers match PyTorch 1.13 after 10 steps", function()
  for name, cfg in pairs(CFGS) do
    it(name, function()
      local p = leaf(fx.p0)
      local opt = optim[cfg[1]]({p}, cfg[2])
      run(opt, p, 1, 10)
      H.close(p, fx["final_" .. name], 1e-5, 1e-6)
    end)
    it(name .. " in float64", function()
      local p = leaf(fx.p0:double())
      local opt = optim[cfg[1]]({p}, cfg[2])
      run(opt, p, 1, 10)
      H.close(p, fx["final_" .. name]:double(), 1e-5, 1e-6)
    end)
    it(name .. ": state_dict round trip through lunar.save continues identically", function()
      local p = leaf(fx.p0)
      local opt = optim[cfg[1]]({p}, cfg[2])
      run(opt, p, 1, 5)
      local path = os.tmpname()
      lunar.save(path, optim.flatten_state_dict(opt:state_dict()))
      local q = leaf(p:detach())
      local opt2 = optim[cfg[1]]({q}, {lr = 123})
      opt2:load_state_dict(optim.unflatten_state_dict(lunar.load(path)))
      os.remove(path)
      assert.are.equal(opt.param_groups[1].lr, opt2.param_groups[1].lr)
      run(opt2, q, 6, 10)
      H.close(q, fx["final_" .. name], 1e-5, 1e-6)
    end)
  end
end)

describe("optimizer mechanics", function()
  it("param groups keep their own lr and take the defaults for the rest", function()
    local a, b = leaf(fx.p0), leaf(fx.p0 * 2)
    local opt = optim.SGD({{params = {a}, lr = 0.1}, {params = {b}}}, {lr = 0.01, momentum = 0.9})
    assert.are.equal(0.1, opt.param_groups[1].lr)
    assert.are.equal(0.01, opt.param_groups[2].lr)
    assert.are.equal(0.9, opt.param_groups[1].momentum)
    for s = 1, 10 do
      a.grad = fx.grads[s]:clone()
      b.grad = fx.grads[11 - s]:clone()
      opt:step()
    end
    H.close(a, fx.groups_a, 1e-5, 1e-6)
    H.close(b, fx.groups_b, 1e-5, 1e-6)
  end)

  it("skips parameters without a gradient and zero_grad zeroes or clears", function()
    local a, b = leaf(fx.p0), leaf(fx.p0)
    local opt = optim.Adam({a, b}, {lr = 0.1})
    a.grad = fx.grads[1]:clone()
    opt:step()
    H.close(b, fx.p0, 0, 0)
    assert.is_false(a:eq(fx.p0):all():item())
    opt:zero_grad()
    assert.are.equal(0, a.grad:abs():sum():item())
    opt:zero_grad(true)
    assert.is_nil(a.grad)
  end)

  it("uses the lr written into param_groups", function()
    local p = leaf(fx.p0)
    local opt = optim.SGD({p}, {lr = 1})
    opt.param_groups[1].lr = 0.5
    p.grad = lunar.ones_like(p)
    opt:step()
    H.close(p, fx.p0 - 0.5, 1e-6, 1e-6)
  end)

  it("trains a model through a closure", function()
    local w = leaf(lunar.tensor({0.0, 0.0}))
    local opt = optim.Adam({w}, {lr = 0.1})
    local target = lunar.tensor({1.0, -2.0})
    for _ = 1, 200 do
      opt:step(function()
        opt:zero_grad()
        local loss = ((w - target) ^ 2):sum()
        loss:backward()
        return loss
      end)
    end
    H.close(w, target, 0, 1e-2)
  end)

  it("rejects bad input", function()
    local p = leaf(fx.p0)
    H.raises(function() optim.SGD({p}, {lr = -1}) end, "invalid learning rate")
    H.raises(function() optim.SGD({p}, {}) end, "lr is required")
    H.raises(function() optim.Adam({p}, {betas = {1.0, 0.9}}) end, "beta parameter at index 1")
    H.raises(function() optim.Adam({p}, {betas = {0.9, -0.1}}) end, "beta parameter at index 2")
    H.raises(function() optim.Adam({p, 3}) end, "parameter 2 is a number")
    H.raises(function() optim.Adam("w") end, "params must be")
    H.raises(function() optim.Adam({}) end, "empty parameter list")
    H.raises(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end, "Nesterov")
    H.raises(function() optim.SGD({p, p}, {lr = 0.1}) end, "more than one group")
    H.raises(function() optim.SGD({{params = {p}, foo = 1}}, {lr = 0.1}) end, "unknown option")
    H.raises(function() optim.RMSprop({p}, {momentum = -1}) end, "momentum")
    H.raises(function() optim.Adam({p * 2}) end, "non-leaf")
    local opt = optim.Adam({p})
    opt.param_groups[1].lr = -0.5
    p.grad = lunar.ones_like(p)
    H.raises(function() opt:step() end, "invalid learning rate")
    local q = leaf(lunar.zeros(2))
    q.grad = lunar.ones(2, {dtype = "float64"})
    H.raises(function() optim.SGD({q}, {lr = 1}):step() end, "gradient")
  end)

  it("optim_step refuses a mismatched state", function()
    local p = lunar.zeros(3)
    H.raises(function()
      lunar.optim_step("adam", p, lunar.zeros(3), {lunar.zeros(3), lunar.zeros(4)}, {lr = 1})
    end, "Adam step")
    H.raises(function()
      lunar.optim_step("adam", p, lunar.zeros(3), {lunar.zeros(3)}, {lr = 1})
    end, "state 2 is missing")
    H.raises(function()
      lunar.optim_step("sgd", lunar.zeros(3, {dtype = "int64"}), lunar.zeros(3), {}, {lr = 1})
    end, "float32 or float64")
  end)
end)

describe("fused steps on threads", function()
  it("give the same bits on two threads as on one, below and above the split sizes", function()
    -- a step splits over the threads from 8192 elements; each element's update is alone
    lunar.manual_seed(12)
    local saved = lunar.get_num_threads()
    for _, n in ipairs({5000, 8193, 20000, 40000}) do
      for _, kind in ipairs({"sgd", "adam", "rmsprop", "adagrad"}) do
        local p0, g = lunar.randn(n), lunar.randn(n)
        local res = {}
        for t = 1, 2 do
          lunar.set_num_threads(t)
          local p = p0:clone()
          local st = {lunar.zeros(n)}
          if kind == "adam" or kind == "rmsprop" then st[2] = lunar.zeros(n) end
          for i = 1, 3 do
            lunar.optim_step(kind, p, g, st, {lr = 0.01, momentum = 0.9, beta1 = 0.9,
              beta2 = 0.999, eps = 1e-8, step = i})
          end
          res[t] = p
        end
        lunar.set_num_threads(saved)
        H.close(res[2], res[1], 0, 0)
        assert.is_true((res[1] - p0):abs():max():item() > 0, kind .. " moved nothing")
      end
    end
  end)
end)

describe("clipping and penalties", function()
  for _, key in ipairs({"2", "1", "inf", "3"}) do
    it("clip_grad_norm_ with norm " .. key, function()
      local a, b = leaf(fx.p0), leaf(lunar.zeros(4))
      a.grad = fx.grads[1]:clone()
      b.grad = lunar.tensor({3.0, -4.0, 0.5, 1.0})
      local nt = key == "inf" and "inf" or tonumber(key)
      local total = optim.clip_grad_norm_({a, b}, 1.5, nt)
      H.close(total:reshape(1), fx["clip_" .. key .. "_norm"], 1e-5, 1e-6)
      H.close(a.grad, fx["clip_" .. key .. "_a"], 1e-5, 1e-6)
      H.close(b.grad, fx["clip_" .. key .. "_b"], 1e-5, 1e-6)
    end)
  end

  it("clip_grad_norm_ leaves small gradients alone and ignores missing grads", function()
    local a, b = leaf(lunar.zeros(2)), leaf(lunar.zeros(2))
    a.grad = lunar.tensor({0.3, 0.4})
    local total = optim.clip_grad_norm_({a, b}, 10)
    H.close(total, lunar.tensor(0.5), 1e-6, 1e-6)
    H.close(a.grad, lunar.tensor({0.3, 0.4}), 1e-6, 1e-6)
    H.raises(function() optim.clip_grad_norm_({a, "x"}, 1) end, "parameter 2")
    H.raises(function() optim.clip_grad_norm_({a}, "1") end, "max_norm")
  end)

  it("clip_grad_value_ clamps in place", function()
    local a = leaf(lunar.zeros(4))
    a.grad = lunar.tensor({-3.0, 0.5, 2.0, -0.2})
    optim.clip_grad_value_({a}, 1)
    H.close(a.grad, lunar.tensor({-1.0, 0.5, 1.0, -0.2}), 0, 0)
    H.raises(function() optim.clip_grad_value_({a}, -1) end, "clip_value")
  end)

  it("l1_penalty and l2_penalty give values and gradients", function()
    local a, b = leaf(lunar.tensor({1.0, -2.0})), leaf(lunar.tensor({3.0}))
    local l1 = optim.l1_penalty({a, b}, 0.5)
    H.close(l1, lunar.tensor(3.0), 1e-6, 1e-6)
    local l2 = optim.l2_penalty({a, b}, 0.01)
    H.close(l2, lunar.tensor(0.14), 1e-6, 1e-6)
    l2:backward()
    H.close(a.grad, lunar.tensor({0.02, -0.04}), 1e-6, 1e-6)
    H.raises(function() optim.l2_penalty({a, {}}) end, "parameter 2")
  end)
end)

describe("LBFGS", function()
  local A, b = fx.lbfgs_A, fx.lbfgs_b
  for name, opts in pairs({plain = {lr = 0.1, max_iter = 5, history_size = 3}, def = {lr = 1}}) do
    it("matches PyTorch (" .. name .. ")", function()
      local x = lunar.zeros(3, {dtype = "float64"})
      x.requires_grad = true
      local opt = optim.LBFGS({x}, opts)
      local function closure()
        opt:zero_grad()
        local l = ((A:matmul(x) - b) ^ 2):sum()
        l:backward()
        return l
      end
      for _ = 1, 4 do opt:step(closure) end
      H.close(x, fx["lbfgs_" .. name], 1e-6, 1e-9)
    end)
  end
  it("rejects a line search and a missing closure", function()
    local x = leaf(lunar.zeros(3))
    H.raises(function() optim.LBFGS({x}, {line_search_fn = "backtracking"}) end, "line_search_fn")
    H.raises(function() optim.LBFGS({x}):step() end, "closure")
  end)
end)
