local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")

local init = nn.init
local f64 = {dtype = "float64"}

local function shape(t) return t:size() end

local function mean_std(t)
  local v = t:double()
  return v:mean():item(), v:std():item()
end

describe("nn.init", function()
  it("computes fans with the receptive field, and PyTorch's gains", function()
    local fi, fo = init.calculate_fan_in_and_fan_out(lunar.empty(16, 8, 3, 5))
    assert.are.equal(8 * 15, fi)
    assert.are.equal(16 * 15, fo)
    fi, fo = init.calculate_fan_in_and_fan_out(lunar.empty(10, 7))
    assert.are.same({7, 10}, {fi, fo})
    H.close({init.calculate_gain("linear"), init.calculate_gain("conv2d"),
      init.calculate_gain("sigmoid"), init.calculate_gain("tanh"), init.calculate_gain("relu"),
      init.calculate_gain("leaky_relu"), init.calculate_gain("leaky_relu", 0.2),
      init.calculate_gain("selu")},
      {1, 1, 1, 5 / 3, math.sqrt(2), math.sqrt(2 / (1 + 1e-4)), math.sqrt(2 / 1.04), 0.75},
      1e-15)
    H.raises(function() init.calculate_gain("swishy") end, "calculate_gain", "swishy")
  end)

  it("xavier_uniform_ stays within sqrt(6 / (fan_in + fan_out)), uniform variance", function()
    lunar.manual_seed(7)
    local w = init.xavier_uniform_(lunar.empty(300, 200))
    local bound = math.sqrt(6 / 500)
    local hi, lo = w:max():item(), w:min():item()
    assert.is_true(hi <= bound and lo >= -bound)
    assert.is_true(hi > 0.99 * bound and lo < -0.99 * bound)
    local m, s = mean_std(w)
    assert.is_true(math.abs(m) < 0.01 * bound)
    H.close({s}, {bound / math.sqrt(3)}, 0.02)
    -- gain scales the bound
    local w2 = init.glorot_uniform_(lunar.empty(300, 200), 2)
    assert.is_true(w2:abs():max():item() > 1.98 * bound)
    assert.are.equal(init.xavier_uniform_, init.glorot_uniform_)
  end)

  it("xavier_normal_, kaiming_* and lecun_* have the stated std (fixed seed)", function()
    lunar.manual_seed(11)
    local _, s = mean_std(init.xavier_normal_(lunar.empty(300, 200)))
    H.close({s}, {math.sqrt(2 / 500)}, 0.02)
    -- conv weight [64, 32, 3, 3]: fan_in 288, fan_out 576
    local m
    m, s = mean_std(init.kaiming_normal_(lunar.empty(64, 32, 3, 3)))
    assert.is_true(math.abs(m) < 0.01)
    H.close({s}, {math.sqrt(2) / math.sqrt(288)}, 0.02)
    _, s = mean_std(init.he_normal_(lunar.empty(64, 32, 3, 3), {mode = "fan_out",
      nonlinearity = "relu"}))
    H.close({s}, {math.sqrt(2) / math.sqrt(576)}, 0.02)
    -- PyTorch's Linear/Conv default: kaiming_uniform_(w, a = sqrt(5)) gives bound 1/sqrt(fan_in)
    local w = init.kaiming_uniform_(lunar.empty(200, 300), math.sqrt(5))
    assert.is_true(w:abs():max():item() <= 1 / math.sqrt(300))
    assert.is_true(w:abs():max():item() > 0.99 / math.sqrt(300))
    w = init.kaiming_uniform_(lunar.empty(200, 300), 0, "fan_out", "relu")
    H.close({w:abs():max():item()}, {math.sqrt(6 / 200)}, 0.01)
    w = init.lecun_uniform_(lunar.empty(200, 300))
    H.close({w:abs():max():item()}, {math.sqrt(3 / 300)}, 0.01)
    _, s = mean_std(init.lecun_normal_(lunar.empty(200, 300)))
    H.close({s}, {math.sqrt(1 / 300)}, 0.02)
    _, s = mean_std(init.normal_(lunar.empty(100, 100), 0, 0.5))
    H.close({s}, {0.5}, 0.02)
    w = init.uniform_(lunar.empty(100, 100), 2, 3)
    assert.is_true(w:min():item() >= 2 and w:max():item() < 3)
  end)

  it("orthogonal_ gives W W^T = I (wide) and W^T W = I (tall, conv), times gain", function()
    lunar.manual_seed(3)
    local w = init.orthogonal_(lunar.empty(5, 8, f64))
    H.close(lunar.mm(w, w:t()), lunar.eye(5, f64), 0, 1e-12)
    local c = init.orthogonal_(lunar.empty(12, 2, 2, f64), 2)
    local f = c:reshape(12, 4)
    H.close(lunar.mm(f:t(), f), lunar.eye(4, f64) * 4, 0, 1e-12)
    local sq = init.orthogonal_(lunar.empty(6, 6))
    H.close(lunar.mm(sq, sq:t()), lunar.eye(6), 0, 1e-5)
    H.close(lunar.mm(sq:t(), sq), lunar.eye(6), 0, 1e-5)
  end)

  it("uses the default generator (by seed) or a given one, in place under no_grad", function()
    lunar.manual_seed(42)
    local a = init.kaiming_normal_(lunar.empty(4, 5))
    lunar.manual_seed(42)
    local b = init.kaiming_normal_(lunar.empty(4, 5))
    H.close(a, b, 0, 0)
    local g1, g2 = lunar.Generator(9), lunar.Generator(9)
    H.close(init.xavier_uniform_(lunar.empty(3, 4), {generator = g1}),
      init.xavier_uniform_(lunar.empty(3, 4), {generator = g2}), 0, 0)
    local p = nn.Parameter(lunar.empty(3, 4))
    assert.are.equal(p, init.zeros_(p))
    H.close(p, lunar.zeros(3, 4), 0, 0)
    assert.is_true(p.requires_grad)
    assert.is_nil(p.grad_fn)
    H.close(init.ones_(lunar.empty(2)), {1, 1}, 0, 0)
    H.close(init.constant_(lunar.empty(2), 0.3), {0.3, 0.3})
  end)

  it("rejects bad tensors and options naming the function", function()
    H.raises(function() init.xavier_uniform_(lunar.empty(5)) end, "xavier_uniform_", "[5]")
    H.raises(function() init.kaiming_normal_(lunar.zeros({3, 3}, {dtype = "int64"})) end,
      "kaiming_normal_", "int64")
    H.raises(function() init.kaiming_uniform_(lunar.empty(3, 3), {mode = "fan_avg"}) end,
      "kaiming_uniform_", "fan_avg")
    H.raises(function() init.orthogonal_(lunar.empty(4)) end, "orthogonal_", "[4]")
    H.raises(function() init.normal_("w") end, "normal_", "tensor")
  end)
end)

describe("shape layers", function()
  it("Flatten keeps the batch dim by default and passes gradients", function()
    local x = lunar.randn({2, 3, 4, 5}, {requires_grad = true})
    local y = nn.Flatten()(x)
    assert.are.same({2, 60}, shape(y))
    assert.are.same({120}, shape(nn.Flatten(1)(x)))
    assert.are.same({2, 12, 5}, shape(nn.Flatten(2, 3)(x)))
    assert.are.same({2, 3, 20}, shape(nn.Flatten(-2)(x)))
    H.close(y:reshape(2, 3, 4, 5), x)
    local loss = (y * 2):sum()
    loss:backward()
    H.close(x.grad, lunar.full({2, 3, 4, 5}, 2))
    H.raises(function() nn.Flatten(5)(x) end, "Flatten", "dim 5", "[2x3x4x5]")
    H.raises(function() nn.Flatten(3, 2)(x) end, "Flatten", "start_dim")
    assert.are.equal("Flatten(start_dim=2, end_dim=-1)", tostring(nn.Flatten()))
  end)

  it("Unflatten splits one dim, Reshape reshapes each sample", function()
    local x = lunar.arange(24):reshape(2, 12)
    local u = nn.Unflatten(2, {3, -1})(x)
    assert.are.same({2, 3, 4}, shape(u))
    H.close(u[{2, 3, 4}], 23)
    assert.are.same({2, 2, 2, 3}, shape(nn.Unflatten(-1, {2, 2, 3})(x)))
    H.raises(function() nn.Unflatten(2, {5, 2})(x) end, "Unflatten", "[2x12]", "{5, 2}")
    local r = nn.Reshape(4, 3)(x)
    assert.are.same({2, 4, 3}, shape(r))
    H.close(r[{1, 2, 1}], 3)
    assert.are.same({2, 6, 2}, shape(nn.Reshape({-1, 2})(x)))
    H.raises(function() nn.Reshape(5, 2)(x) end, "Reshape", "[2x12]", "[N, 5, 2]")
    H.raises(function() nn.Reshape(2.5) end, "Reshape", "2.5")
  end)
end)

describe("Residual, Concat, Parallel", function()
  it("Residual adds the identity (or a projection) and its gradients check", function()
    local lin = nn.Linear(4, 4, f64)
    local res = nn.Residual(lin)
    local x = lunar.randn({3, 4}, {dtype = "float64", requires_grad = true})
    H.close(res(x), lin(x) + x, 1e-12)
    assert.are.equal(2, #res:parameters())
    local ok, msg = lunar.autograd.gradcheck(function(v) return res(v) end, {x})
    assert(ok, msg)
    -- d sum(y) / dx = 1 + column sums of W
    local xx = x:detach():requires_grad_()
    res(xx):sum():backward()
    H.close(xx.grad, (lin.weight:detach():sum(1) + 1):expand(3, 4), 1e-12)

    local proj = nn.Residual(nn.Sequential(nn.Linear(4, 8, f64), nn.Tanh()),
      {projection = nn.Linear(4, 8, f64)})
    assert.are.same({3, 8}, shape(proj(x)))
    local names = {}
    for _, np in ipairs(proj:named_parameters()) do names[#names + 1] = np[1] end
    assert.are.same({"block.1.weight", "block.1.bias", "projection.weight", "projection.bias"},
      names)
    ok, msg = lunar.autograd.gradcheck(function(v) return proj(v) end, {x})
    assert(ok, msg)
  end)

  it("Residual names both shapes when they differ", function()
    local res = nn.Residual(nn.Linear(4, 8))
    H.raises(function() res(lunar.zeros(2, 4)) end, "Residual", "[2x8]", "[2x4]", "projection")
    H.raises(function() nn.Residual(3) end, "Residual", "module")
  end)

  it("Concat runs the branches on one input and concatenates (Inception-style)", function()
    local a, b = nn.Linear(4, 3, f64), nn.Linear(4, 5, f64)
    local cat = nn.Concat(2, a, b)
    local x = lunar.randn({2, 4}, {dtype = "float64", requires_grad = true})
    local y = cat(x)
    assert.are.same({2, 8}, shape(y))
    H.close(y, lunar.cat({a(x), b(x)}, 2), 1e-12)
    local ok, msg = lunar.autograd.gradcheck(function(v) return cat(v) end, {x})
    assert(ok, msg)
    assert.are.equal(4, #cat:parameters())
    H.raises(function() nn.Concat(1, nn.Linear(4, 3), nn.Linear(4, 5))(lunar.zeros(2, 4)) end,
      "Concat", "[2x3], [2x5]", "dim 1")
    H.raises(function() nn.Concat(nn.Linear(4, 3)) end, "Concat", "dim")
  end)

  it("Parallel runs branch i on input i", function()
    local a, b = nn.Linear(4, 3), nn.Linear(6, 2)
    local par = nn.Parallel(-1, a, b)
    local x1, x2 = lunar.randn(2, 4), lunar.randn(2, 6)
    H.close(par(x1, x2), lunar.cat({a(x1), b(x2)}, 2))
    H.raises(function() par(x1) end, "Parallel", "2 branches", "1 inputs")
  end)
end)

describe("nn.Graph", function()
  local function multitask()
    return nn.Graph{
      inputs = {"x"},
      nodes = {
        {"trunk", nn.Sequential(nn.Linear(4, 8, f64), nn.ReLU()), inputs = {"x"}},
        {"class", nn.Linear(8, 3, f64), inputs = {"trunk"}},
        {"value", nn.Linear(8, 1, f64), inputs = {"trunk"}},
      },
      outputs = {"class", "value"},
    }
  end

  it("runs a two-head multi-task model; parameters are named by node", function()
    local net = multitask()
    local x = lunar.randn({5, 4}, f64)
    local logits, value = net(x)
    local h = net.trunk(x)
    H.close(logits, net.class(h), 1e-12)
    H.close(value, net.value(h), 1e-12)
    local names = {}
    for _, np in ipairs(net:named_parameters()) do names[#names + 1] = np[1] end
    assert.are.same({"trunk.1.weight", "trunk.1.bias", "class.weight", "class.bias",
      "value.weight", "value.bias"}, names)
    -- both heads' losses reach the shared trunk
    local l1, l2 = net({x = x})
    local loss = (l1 * l1):sum() + l2:sum()
    loss:backward()
    for _, p in ipairs(net:parameters()) do assert.is_not_nil(p.grad) end
    local ok, msg = lunar.autograd.gradcheck(function(v)
      local c, val = net(v)
      return lunar.cat({c, val}, 2)
    end, {lunar.randn({3, 4}, {dtype = "float64", requires_grad = true})})
    assert(ok, msg)
  end)

  it("runs a GAN-like pair: shared discriminator, function nodes, multi-results", function()
    local G = nn.Sequential(nn.Linear(2, 4, f64), nn.Tanh())
    local D = nn.Sequential(nn.Linear(4, 1, f64), nn.Sigmoid())
    local gan = nn.Graph{
      inputs = {"z", "real"},
      nodes = {
        {"generator", G, inputs = {"z"}},
        {"discriminator", D, inputs = {"generator"}},
        {"d_real", D, inputs = {"real"}},
        {"halves", function(t) return t:split(2, 2)[1], t:split(2, 2)[2] end,
          inputs = {"generator"}, outputs = {"left", "right"}},
        {"sum", function(a, b) return a + b end, inputs = {"left", "right"}},
      },
      outputs = {"discriminator", "d_real", "sum"},
    }
    -- D is registered once, under its first node
    assert.are.equal(G:num_parameters() + D:num_parameters(), gan:num_parameters())
    local names = {}
    for _, np in ipairs(gan:named_parameters()) do names[#names + 1] = np[1] end
    assert.are.same({"generator.1.weight", "generator.1.bias", "discriminator.1.weight",
      "discriminator.1.bias"}, names)
    local z, real = lunar.randn({3, 2}, f64), lunar.randn({3, 4}, f64)
    local d_fake, d_real, s = gan(z, real)
    local fake = G(z)
    H.close(d_fake, D(fake), 1e-12)
    H.close(d_real, D(real), 1e-12)
    H.close(s, fake[{{}, {1, 2}}] + fake[{{}, {3, 4}}], 1e-12)
    -- the discriminator's gradient sums over both of its uses
    gan:zero_grad()
    local a, b = gan(z, real)
    local loss = a:sum() + b:sum()
    loss:backward()
    local g_both = D[1].weight.grad:clone()
    gan:zero_grad()
    D(G(z)):sum():backward()
    local g_fake = D[1].weight.grad:clone()
    gan:zero_grad()
    D(real):sum():backward()
    H.close(g_both, g_fake + D[1].weight.grad, 1e-12)
  end)

  it("validates the spec and the inputs", function()
    local L = nn.Linear(2, 2)
    H.raises(function()
      nn.Graph{inputs = {"x"}, nodes = {{"h", L, inputs = {"y"}}}, outputs = {"h"}}
    end, "Graph", "'h'", "'y'")
    H.raises(function()
      nn.Graph{inputs = {"x"}, nodes = {{"x", L, inputs = {"x"}}}, outputs = {"x"}}
    end, "Graph", "'x'", "twice")
    H.raises(function()
      nn.Graph{inputs = {"x"}, nodes = {{"forward", L, inputs = {"x"}}}, outputs = {"forward"}}
    end, "Graph", "reserved")
    H.raises(function()
      nn.Graph{inputs = {"x"}, nodes = {{"h", L, inputs = {"x"}}}, outputs = {"o"}}
    end, "Graph", "'o'")
    local g = nn.Graph{inputs = {"a", "b"}, nodes = {{"h", L, inputs = {"a"}}}, outputs = {"h"}}
    H.raises(function() g(lunar.zeros(1, 2)) end, "Graph", "expected 2 inputs", "a, b")
    H.raises(function() g({a = lunar.zeros(1, 2)}) end, "Graph", "'b'", "missing")
  end)
end)

describe("Module:summary", function()
  it("the Keras MNIST MLP 784-128-64-10 has 109,386 parameters", function()
    local mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64),
      nn.ReLU(), nn.Linear(64, 10))
    local s = mlp:summary({1, 28, 28}, {print = false})
    assert.are.equal(109386, s.total)
    assert.are.equal(109386, s.trainable)
    assert.are.equal(0, s.non_trainable)
    assert.are.equal(6, #s.rows)
    local want = {{"1", "Flatten", "[1, 784]", 0}, {"2", "Linear", "[1, 128]", 100480},
      {"3", "ReLU", "[1, 128]", 0}, {"4", "Linear", "[1, 64]", 8256},
      {"5", "ReLU", "[1, 64]", 0}, {"6", "Linear", "[1, 10]", 650}}
    for i, w in ipairs(want) do
      local r = s.rows[i]
      assert.are.same(w, {r.name, r.type, r.output_shape, r.params})
    end
    assert.is_truthy(s.text:find("Layer (type)", 1, true))
    assert.is_truthy(s.text:find("Total params: 109386", 1, true))
    assert.is_truthy(s.text:find("2 (Linear)", 1, true))
    -- the forward ran without recording a graph and left the mode alone
    assert.is_true(mlp.training)
    assert.is_nil(mlp[2].weight.grad)
  end)

  it("counts frozen parameters as non-trainable and shared modules once", function()
    local mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    mlp[1]:freeze()
    local s = nn.summary(mlp, {3, 4}, {print = false})
    assert.are.equal(4 * 8 + 8 + 8 * 2 + 2, s.total)
    assert.are.equal(8 * 2 + 2, s.trainable)
    assert.are.equal(40, s.non_trainable)

    local shared = nn.Linear(4, 4)
    local g = nn.Graph{inputs = {"a", "b"}, nodes = {{"f", shared, inputs = {"a"}},
      {"f2", shared, inputs = {"b"}}, {"cat", nn.Concat(2, nn.Identity(), nn.Linear(4, 2)),
      inputs = {"f2"}}}, outputs = {"f", "cat"}}
    s = g:summary({{2, 4}, {2, 4}}, {print = false})
    assert.are.equal(20 + 10, s.total)
    local got = {}
    for _, r in ipairs(s.rows) do got[#got + 1] = {r.name, r.output_shape, r.params} end
    assert.are.same({{"f", "[2, 4]", 20}, {"f", "[2, 4]", 0}, {"cat.1", "[2, 4]", 0},
      {"cat.2", "[2, 2]", 10}}, got)
  end)

  it("reports a failing forward and a bad shape", function()
    local m = nn.Sequential(nn.Linear(4, 2))
    H.raises(function() m:summary({1, 5}, {print = false}) end, "summary", "forward")
    H.raises(function() m:summary({1, 2.5}, {print = false}) end, "summary", "2.5")
    H.raises(function() m:summary({}, {print = false}) end, "summary", "input_shape")
  end)
end)
