local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")

local F = nn.functional
local fx = require("tests.fixtures").load("activation")

-- name in the fixtures -> the function under test
local cases = {
  sigmoid = F.sigmoid,
  tanh = F.tanh,
  relu = F.relu,
  relu6 = F.relu6,
  leaky_relu = F.leaky_relu,
  leaky_relu_02 = function(x) return F.leaky_relu(x, 0.2) end,
  elu = F.elu,
  elu_05 = function(x) return F.elu(x, 0.5) end,
  selu = F.selu,
  gelu = F.gelu,
  gelu_tanh = function(x) return F.gelu(x, "tanh") end,
  silu = F.silu,
  mish = F.mish,
  softplus = F.softplus,
  softplus_b2_t10 = function(x) return F.softplus(x, 2, 10) end,
  softsign = F.softsign,
  hardtanh = F.hardtanh,
  hardtanh_m2_3 = function(x) return F.hardtanh(x, -2, 3) end,
  hardsigmoid = F.hardsigmoid,
}

-- the same functions as modules
local modules = {
  sigmoid = nn.Sigmoid(), tanh = nn.Tanh(), relu = nn.ReLU(), relu6 = nn.ReLU6(),
  leaky_relu = nn.LeakyReLU(), leaky_relu_02 = nn.LeakyReLU(0.2), elu = nn.ELU(),
  elu_05 = nn.ELU(0.5), selu = nn.SELU(), gelu = nn.GELU(),
  gelu_tanh = nn.GELU({approximate = "tanh"}), silu = nn.SiLU(), mish = nn.Mish(),
  softplus = nn.Softplus(), softplus_b2_t10 = nn.Softplus(2, 10), softsign = nn.Softsign(),
  hardtanh = nn.Hardtanh(), hardtanh_m2_3 = nn.Hardtanh(-2, 3), hardsigmoid = nn.Hardsigmoid(),
}

local names = {}
for k in pairs(cases) do names[#names + 1] = k end
table.sort(names)

describe("activations", function()
  for _, name in ipairs(names) do
    it(name .. ": values and gradients match PyTorch (float64, incl. kinks and +-100)", function()
      local x = fx.x:clone():requires_grad_()
      local y = cases[name](x)
      -- atol 1e-14: lunar's expm1 rule uses e^x = y + 1, so ELU's gradient at -100 is 0
      -- where PyTorch has 3.7e-44
      H.close(y, fx[name], 1e-9, 1e-14)
      y:sum():backward()
      -- PyTorch's hardsigmoid backward multiplies by the float constant 1/6f, even in float64
      local grtol = name == "hardsigmoid" and 1e-7 or 1e-9
      H.close(x.grad, fx[name .. "_grad"], grtol, 1e-14)
    end)

    it(name .. ": float32 values, and the module form", function()
      local x32 = fx.x:float()
      local y = modules[name](x32)
      assert.are.equal("float32", y:dtype())
      -- PyTorch's float32 kernels use vectorised exp/erf, ours libm: a few ulps apart, and
      -- 1 + erf(x) cancels near x = -3
      H.close(y, fx[name .. "_f32"], 1e-5, 1e-6)
      for _, v in ipairs(y:totable()) do assert.is_true(v == v) end
    end)
  end

  it("gradcheck passes for every differentiable activation (away from kinks)", function()
    local x = lunar.tensor({-7.5, -2.9, -1.3, -0.4, 0.3, 0.9, 2.2, 2.8, 5.5, 6.4, 12.0},
      {dtype = "float64", requires_grad = true})
    for _, name in ipairs(names) do
      local ok, msg = lunar.autograd.gradcheck(cases[name], {x})
      assert(ok, name .. ": " .. tostring(msg))
    end
    local w = lunar.tensor({0.1, -0.3, 0.7}, {dtype = "float64", requires_grad = true})
    local xc = lunar.tensor({{0.5, -1.2}, {-0.7, 2.0}, {-0.1, -3.0}},
      {dtype = "float64", requires_grad = true}):reshape(1, 3, 2)
    local ok, msg = lunar.autograd.gradcheck(F.prelu, {xc:detach():requires_grad_(), w})
    assert(ok, msg)
  end)

  it("softplus and sigmoid do not overflow and keep their tails", function()
    local x = lunar.tensor({-1000, -100, 100, 1000}, {dtype = "float32"})
    H.close(F.softplus(x), {0, 3.7200760e-44, 100, 1000}, 1e-5, 1e-45)
    H.close(F.sigmoid(x), {0, 0, 1, 1}, 0, 0)
    H.close(F.mish(x), {0, 0, 100, 1000}, 1e-6, 1e-40)
  end)

  it("step is the Heaviside step with a zero gradient", function()
    local x = fx.x:clone():requires_grad_()
    local y = nn.Step()(x)
    H.close(y, fx.step, 0, 0)
    y:sum():backward()
    H.close(x.grad, lunar.zeros_like(fx.x), 0, 0)
    local inf = lunar.tensor({-math.huge, math.huge}, {dtype = "float64", requires_grad = true})
    F.step(inf):sum():backward()
    H.close(inf.grad, {0, 0}, 0, 0)
  end)

  it("PReLU with one shared and with per-channel slopes matches PyTorch", function()
    for _, name in ipairs({"prelu1", "prelu3"}) do
      local m = nn.PReLU(fx[name .. "_w"]:numel(), 0.25, {dtype = "float64"})
      lunar.no_grad(function() m.weight:copy_(fx[name .. "_w"]) end)
      local x = fx.prelu_x:clone():requires_grad_()
      local y = m(x)
      H.close(y, fx[name], 1e-12, 1e-15)
      y:backward(fx.prelu_g)
      H.close(x.grad, fx[name .. "_gx"], 1e-12, 1e-15)
      H.close(m.weight.grad, fx[name .. "_gw"], 1e-12, 1e-15)
    end
    local p = nn.PReLU()
    assert.are.equal(1, #p:parameters())
    H.close(p.weight, {0.25})
    assert.are.equal("PReLU(num_parameters=1)", tostring(p))
  end)

  it("SELU uses PyTorch's constants, Swish is SiLU", function()
    local y = F.selu(lunar.tensor({-1e9, 1}, {dtype = "float64"}))
    H.close(y, {-1.0507009873554804934 * 1.6732632423543772848, 1.0507009873554804934}, 1e-15)
    assert.are.equal(nn.SiLU, nn.Swish)
    assert.are.equal(F.silu, F.swish)
  end)

  it("rejects bad arguments with messages naming the function", function()
    H.raises(function() F.relu(3) end, "relu", "tensor")
    H.raises(function() nn.LeakyReLU("a") end, "LeakyReLU", "negative_slope")
    H.raises(function() nn.Hardtanh(2, 1) end, "Hardtanh", "min_val")
    H.raises(function() nn.GELU({approximate = "fast"}) end, "GELU", "fast")
    H.raises(function() nn.PReLU(0) end, "PReLU", "num_parameters")
    H.raises(function() nn.PReLU(4)(lunar.zeros(2, 3)) end, "prelu", "4 elements", "2x3")
    H.raises(function() F.softplus(lunar.zeros(2), "x") end, "softplus", "beta")
  end)
end)
