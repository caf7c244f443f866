-- Options that close gaps against PyTorch 1.13 (tests/fixtures/gen_parity.py): LBFGS with
-- the strong Wolfe line search, OneCycleLR's three phases, avg_pool2d's divisor_override,
-- conv_transpose2d with every option at once and its refusal of padding strings.
local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("parity")
local optim = lunar.optim
local S = optim.lr_scheduler

-- every element of the parameters ps, in order, as one Lua list
local function flatten(ps)
  local flat = {}
  for _, p in ipairs(ps) do
    for _, v in ipairs(p:reshape(-1):totable()) do flat[#flat + 1] = v end
  end
  return flat
end

describe("LBFGS with line_search_fn = 'strong_wolfe'", function()
  local function rosenbrock(x)
    local a, b = x:narrow(1, 2, x:numel() - 1), x:narrow(1, 1, x:numel() - 1)
    return ((a - b ^ 2) ^ 2 * 100 + (-b + 1) ^ 2):sum()
  end
  local X, Y = fx.logistic_X, fx.logistic_Y
  local A, B = fx.lsq_A, fx.lsq_B
  local function f64(v) return lunar.tensor(v, {dtype = "float64"}) end
  local CASES = {
    lsq = {{f64({0, 0, 0})}, function(ps, dt)
      local a, b = A:to(dt or "float64"), B:to(dt or "float64")
      return ((a:matmul(ps[1]) - b) ^ 2):sum()
    end,
      {lr = 1e-3, max_iter = 3}, 4},
    rosen4 = {{f64({-1.2, 1, -1.2, 1})}, function(ps) return rosenbrock(ps[1]) end, {}, 6},
    rosen2 = {{f64({-1.5, 2})}, function(ps) return rosenbrock(ps[1]) end,
      {lr = 0.5, max_iter = 10, history_size = 3}, 5},
    logistic = {{f64({0.1, -0.2, 0.3}), f64({0})}, function(ps, dt)
      local x, y = X:to(dt or "float64"), Y:to(dt or "float64")
      local z = x:matmul(ps[1]) + ps[2]
      return (z:exp():log1p() - y * z):mean() + (ps[1] * ps[1]):sum() * 0.01
    end, {max_iter = 4, history_size = 5}, 4},
  }
  for name, c in pairs(CASES) do
    it("follows PyTorch's trajectory (" .. name .. ")", function()
      local init, f, opts, steps = table.unpack(c)
      local ps = {}
      for i, p in ipairs(init) do ps[i] = p:clone():requires_grad_() end
      opts.line_search_fn = "strong_wolfe"
      local opt = optim.LBFGS(ps, opts)
      local function closure()
        opt:zero_grad()
        local l = f(ps)
        l:backward()
        return l
      end
      local traj, losses, evals = fx["lbfgs_" .. name .. "_traj"], {}, {}
      for s = 1, steps do
        losses[s] = opt:step(closure):item()
        evals[s] = opt.state[ps[1]].func_evals
        H.close(flatten(ps), traj[s], 1e-6, 1e-9)
      end
      H.close(losses, fx["lbfgs_" .. name .. "_loss"], 1e-6, 1e-12)
      assert.same(fx["lbfgs_" .. name .. "_evals"]:totable(), evals)
    end)
  end

  -- float32: the well-conditioned cases within 1e-5 (the scalars run in Lua doubles, see
  -- lbfgs.lua; Rosenbrock's line searches turn ulp differences into different steps)
  for _, name in ipairs({"lsq", "logistic"}) do
    it("follows PyTorch's float32 trajectory within 1e-5 (" .. name .. ")", function()
      local init, f, opts, steps = table.unpack(CASES[name])
      local ps = {}
      for i, p in ipairs(init) do ps[i] = p:to("float32"):requires_grad_() end
      local o = {line_search_fn = "strong_wolfe"}
      for k, v in pairs(opts) do o[k] = v end
      local opt = optim.LBFGS(ps, o)
      local function closure()
        opt:zero_grad()
        local l = f(ps, "float32")
        l:backward()
        return l
      end
      local traj, losses = fx["lbfgs_" .. name .. "_f32_traj"], {}
      for s = 1, steps do
        losses[s] = opt:step(closure):item()
        H.close(flatten(ps), traj[s], 1e-5, 1e-7)
      end
      H.close(losses, fx["lbfgs_" .. name .. "_f32_loss"], 1e-5, 1e-7)
    end)
  end

  it("decreases a float32 loss too and leaves the parameters at the chosen step", function()
    local x = lunar.tensor({-1.2, 1}):requires_grad_()
    local opt = optim.LBFGS({x}, {line_search_fn = "strong_wolfe", max_iter = 50})
    local function closure()
      opt:zero_grad()
      local l = rosenbrock(x)
      l:backward()
      return l
    end
    local first = opt:step(closure):item()
    local after = rosenbrock(x):item()
    assert.is_true(after < first * 1e-3, ("loss %g -> %g"):format(first, after))
  end)

  it("rejects other line searches", function()
    local x = lunar.zeros(3):requires_grad_()
    H.raises(function() optim.LBFGS({x}, {line_search_fn = "armijo"}) end,
      "LBFGS", "line_search_fn", "armijo")
  end)
end)

describe("OneCycleLR with three_phase = true", function()
  local SCHEDS = {
    onecycle3 = function(o) return S.OneCycleLR(o, 1.0, {total_steps = 30, three_phase = true}) end,
    onecycle3_lin = function(o)
      return S.OneCycleLR(o, 0.5, {epochs = 3, steps_per_epoch = 10, pct_start = 0.25,
        div_factor = 10, final_div_factor = 100, anneal_strategy = "linear", three_phase = true})
    end,
    onecycle3_odd = function(o)
      return S.OneCycleLR(o, 0.2, {total_steps = 31, pct_start = 0.35, base_momentum = 0.8,
        max_momentum = 0.9, three_phase = true})
    end,
  }
  for name, make in pairs(SCHEDS) do
    it("matches PyTorch's lr and momentum over 30 steps (" .. name .. ")", function()
      local p = lunar.zeros(1):requires_grad_()
      local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9})
      local s = make(opt)
      local lrs, moms = {s:get_last_lr()[1]}, {opt.param_groups[1].momentum}
      for _ = 1, 30 do
        opt:step()
        s:step()
        lrs[#lrs + 1] = s:get_last_lr()[1]
        moms[#moms + 1] = opt.param_groups[1].momentum
      end
      H.close(lrs, fx["lr_" .. name], 1e-10, 1e-12)
      H.close(moms, fx["mom_" .. name], 1e-10, 1e-12)
    end)
  end
end)

describe("avg_pool2d divisor_override", function()
  it("matches PyTorch's values and gradients", function()
    H.against_torch(fx, "dv_basic", {"x"}, function(x)
      return lunar.avg_pool2d(x, 2, {divisor_override = 3})
    end)
    -- count_include_pad is moot once a divisor is given; ceil_mode windows are not clipped
    H.against_torch(fx, "dv_pad", {"x"}, function(x)
      return lunar.avg_pool2d(x, 3, {stride = 2, padding = 1, ceil_mode = true,
        count_include_pad = false, divisor_override = 5})
    end)
    -- unbatched input, a negative divisor
    H.against_torch(fx, "dv_neg", {"x"}, function(x)
      return lunar.avg_pool2d(x, {3, 2}, {stride = {1, 2}, padding = {1, 0},
        divisor_override = -2})
    end)
  end)

  it("nn.AvgPool2d passes it on; gradcheck in float64", function()
    local x = fx.dv_pad_x
    local m = nn.AvgPool2d(3, {stride = 2, padding = 1, ceil_mode = true, divisor_override = 5})
    H.close(m(x), fx.dv_pad_out, 1e-5, 1e-6)
    assert.truthy(tostring(m):find("divisor_override=5", 1, true))
    H.gradcheck(function(a)
      return lunar.avg_pool2d(a, 3, {stride = 2, padding = 1, ceil_mode = true,
        divisor_override = 4})
    end, {H.leaf(1, 2, 6, 5)})
  end)

  it("rejects a zero or non-integer divisor, and avg_pool1d (PyTorch has none there)", function()
    local x = lunar.randn(1, 2, 4, 4)
    H.raises(function() lunar.avg_pool2d(x, 2, {divisor_override = 0}) end,
      "avg_pool2d", "divisor_override")
    H.raises(function() lunar.avg_pool2d(x, 2, {divisor_override = 1.5}) end,
      "avg_pool2d", "divisor_override")
    H.raises(function() lunar.avg_pool1d(lunar.randn(1, 2, 5), 2, {divisor_override = 2}) end,
      "avg_pool1d", "divisor_override")
  end)
end)

describe("conv_transpose2d against PyTorch", function()
  it("stride, padding, output_padding, dilation and groups together", function()
    H.against_torch(fx, "ct_all", {"x", "w", "b"}, function(x, w, b)
      return lunar.conv_transpose2d(x, w, b, {stride = {2, 3}, padding = {1, 0},
        output_padding = {1, 2}, groups = 3, dilation = {2, 1}})
    end, nil, 1e-4)
    -- output_padding 1 at stride 1 is allowed because the dilation is 2
    H.against_torch(fx, "ct_opdil", {"x", "w"}, function(x, w)
      return lunar.conv_transpose2d(x, w, nil, {padding = 2, output_padding = 1, dilation = 2})
    end, nil, 1e-4)
  end)

  it("nn.ConvTranspose2d with the same options", function()
    local m = nn.ConvTranspose2d(6, 6, {3, 2}, {stride = {2, 3}, padding = {1, 0},
      output_padding = {1, 2}, groups = 3, dilation = {2, 1}})
    m.weight = fx.ct_all_w:clone():requires_grad_()
    m.bias = fx.ct_all_b:clone():requires_grad_()
    H.close(m(fx.ct_all_x), fx.ct_all_out, 1e-4, 1e-4)
  end)

  it("takes no padding strings, as PyTorch 1.13", function()
    local x, w = lunar.randn(1, 2, 3, 3), lunar.randn(2, 3, 3, 3)
    for _, s in ipairs({"same", "valid"}) do
      H.raises(function() lunar.conv_transpose2d(x, w, nil, {padding = s}) end,
        "conv_transpose2d", "padding", s)
      H.raises(function() nn.ConvTranspose2d(2, 3, 3, {padding = s}) end,
        "ConvTranspose2d", "padding")
    end
    H.raises(function()
      lunar.conv_transpose2d(x, w, nil, {stride = 2, output_padding = 2})
    end, "conv_transpose2d", "output_padding")
  end)
end)
