-- The OpenCL random and optim_step kernels against the CPU (tag: opencl): the same seed and
-- offset draw the same numbers on both devices (bit for bit for uniform, integer and
-- bernoulli draws; normals within 1e-6 relative, as log/cos/sin may differ by an ulp), and
-- every fused optimizer steps an OpenCL parameter as the CPU steps it. Skipped when no
-- OpenCL device exists.
local lunar = require("lunar")
local nn = require("lunar.nn")
local optim = require("lunar.optim")
local H = require("tests.helper")

if #lunar.devices() == 0 then
  describe("opencl random and optim #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the OpenCL spec is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local values = ocl.values
local FP64 = lunar.devices()[1].fp64

-- actual (OpenCL) equals expected (CPU) bit for bit: same shape, dtype, values
local function exact(actual, expected)
  assert.are.equal(DEV, actual:device())
  assert.are.same(expected:size(), actual:size())
  assert.are.equal(expected:dtype(), actual:dtype())
  local a, e = values(actual), values(expected)
  for i = 1, #e do
    assert(a[i] == e[i], ("element %d: %.17g (opencl) vs %.17g (cpu)"):format(i, a[i], e[i]))
  end
end

-- within rtol relative (plus a tiny atol for values near 0)
local function near(actual, expected, rtol)
  assert.are.equal(DEV, actual:device())
  assert.are.equal(expected:dtype(), actual:dtype())
  H.close(actual:to("cpu"), expected, rtol, rtol * 1e-3)
end

local function state(g) local s = g:get_state() return s.seed, s.offset end

-- draw(device_tensor_maker, generator) on both devices from one seed; returns cpu, ocl
local function both(seed, draw)
  local gc, go = lunar.Generator(seed), lunar.Generator(seed)
  local c, o = draw("cpu", gc), draw(DEV, go)
  assert.are.same({state(gc)}, {state(go)})
  return c, o
end

local FLOATS = FP64 and {"float32", "float64"} or {"float32"}
-- uniforms with bounds other than [0, 1) are bit for bit only where the device computes
-- a + (b - a) u in double as the CPU does (see kernels/random.cl)
local exact_uniform = FP64 and exact or function(a, e) near(a, e, 1e-6) end

describe("opencl random #opencl", function()
  it("has a random kernel on OpenCL", function()
    assert.is_true(lunar.backend_kernels(DEV).random)
  end)

  for _, dt in ipairs(FLOATS) do
    it("rand/uniform_ equal the CPU's bit for bit (" .. dt .. ")", function()
      for _, shape in ipairs({{1}, {3}, {5, 7}, {2, 3, 17}, {1000}}) do
        local c, o = both(7, function(d, g)
          return lunar.rand(shape, {dtype = dt, device = d, generator = g})
        end)
        exact(o, c)
        c, o = both(11, function(d, g)
          return lunar.zeros(shape, {dtype = dt}):to(d):uniform_(-3, 5.5, {generator = g})
        end)
        exact_uniform(o, c)
      end
    end)

    it("randn/normal_ agree with the CPU within 1e-6 (" .. dt .. ")", function()
      for _, shape in ipairs({{1}, {3}, {5, 7}, {999}}) do
        local c, o = both(3, function(d, g)
          return lunar.randn(shape, {dtype = dt, device = d, generator = g})
        end)
        near(o, c, 1e-6)
        c, o = both(5, function(d, g)
          return lunar.zeros(shape, {dtype = dt}):to(d):normal_(2, 0.5, {generator = g})
        end)
        near(o, c, 1e-6)
      end
    end)

    it("uniform draws that round onto b stay below it (" .. dt .. ")", function()
      local hi = dt == "float32" and 1 + 2 ^ -23 or 1 + 2 ^ -52
      local c, o = both(1, function(d, g)
        return lunar.zeros({4000}, {dtype = dt}):to(d):uniform_(1, hi, {generator = g})
      end)
      exact_uniform(o, c)
      assert.is_true(o:lt(hi):all():item())
      c, o = both(1, function(d, g)
        return lunar.zeros({9}, {dtype = dt}):to(d):uniform_(2, 2, {generator = g})
      end)
      exact(o, c)
    end)

    it("rand_like/randn_like of an OpenCL tensor stay on OpenCL (" .. dt .. ")", function()
      local x = lunar.zeros({6, 5}, {dtype = dt})
      local c, o = both(9, function(d, g) return lunar.rand_like(x:to(d), {generator = g}) end)
      exact(o, c)
      c, o = both(9, function(d, g) return lunar.randn_like(x:to(d), {generator = g}) end)
      near(o, c, 1e-6)
    end)
  end

  it("randint equals the CPU's in every integer dtype, ranges of any width", function()
    local cases = {{"uint8", 0, 256}, {"uint8", 3, 9}, {"int32", -2147483648, 2147483647},
                   {"int32", -5, 5}, {"int64", -2 ^ 53, 2 ^ 53}, {"int64", 10, 11},
                   {"int64", -1000000007, 123456789012}}
    for _, cs in ipairs(cases) do
      local dt, lo, hi = cs[1], math.tointeger(cs[2]), math.tointeger(cs[3])
      for _, shape in ipairs({{1}, {7}, {33, 3}}) do
        local c, o = both(21, function(d, g)
          return lunar.randint(lo, hi, shape, {dtype = dt, device = d, generator = g})
        end)
        exact(o, c)
        c, o = both(22, function(d, g)
          return lunar.zeros(shape, {dtype = dt}):to(d):random_(lo, hi, {generator = g})
        end)
        exact(o, c)
      end
    end
    local x = lunar.zeros({4, 4}, {dtype = "int32"})
    local c, o = both(4, function(d, g) return lunar.randint_like(x:to(d), 50, {generator = g}) end)
    exact(o, c)
  end)

  it("bernoulli_ equals the CPU's in every dtype", function()
    local dts = {"bool", "uint8", "int32", "int64", "float32"}
    if FP64 then dts[#dts + 1] = "float64" end
    for _, dt in ipairs(dts) do
      for _, p in ipairs({0, 0.3, 0.5, 1 - 2 ^ -40, 1}) do
        local c, o = both(13, function(d, g)
          return lunar.zeros({5, 9}, {dtype = dt}):to(d):bernoulli_(p, {generator = g})
        end)
        exact(o, c)
      end
    end
  end)

  it("bernoulli(p tensor) and t:bernoulli(p) equal the CPU's", function()
    local p = lunar.rand({7, 6}, {generator = lunar.Generator(1)})
    local c, o = both(17, function(d, g) return lunar.bernoulli(p:to(d), {generator = g}) end)
    exact(o, c)
    c, o = both(17, function(d, g) return p:to(d):bernoulli(0.25, {generator = g}) end)
    exact(o, c)
  end)

  it("fills strided views in row-major order as the CPU does", function()
    local function run(d, g)
      local base = lunar.zeros({6, 8}):to(d)
      base:t():uniform_(0, 1, {generator = g})          -- transposed: column-major memory
      base:narrow(2, 2, 5):normal_(0, 1, {generator = g}) -- a strided block
      base:narrow(1, 3, 2):bernoulli_(0.5, {generator = g})
      return base
    end
    local c, o = both(23, run)
    near(o, c, 1e-6)
    -- the uniform part alone is exact
    local function uni(d, g)
      local base = lunar.zeros({5, 9}, {dtype = "int32"}):to(d)
      base:t():random_(0, 1000, {generator = g})
      base:narrow(2, 3, 4):random_(-7, 7, {generator = g})
      return base
    end
    c, o = both(29, uni)
    exact(o, c)
  end)

  it("two draws in a row equal the CPU's two draws and move the offset alike", function()
    local c, o = both(31, function(d, g)
      local a = lunar.rand({5}, {device = d, generator = g})  -- 2 blocks of 4
      local b = lunar.randn({3}, {device = d, generator = g}) -- 1 block
      local i = lunar.randint(0, 9, {3}, {device = d, generator = g}) -- 2 blocks of 2
      return lunar.cat({a, b, i:to(a:dtype())})
    end)
    near(o, c, 1e-6)
    local g = lunar.Generator(31)
    lunar.rand({5}, {device = DEV, generator = g})
    assert.are.equal(2, g:get_state().offset)
    lunar.randint(0, 9, {3}, {device = DEV, generator = g})
    assert.are.equal(4, g:get_state().offset)
  end)

  it("the default generator: manual_seed repeats OpenCL draws as on the CPU", function()
    local saved = lunar.get_rng_state()
    lunar.manual_seed(123)
    local c1, c2 = lunar.rand(4, 3), lunar.randn(10)
    lunar.manual_seed(123)
    local o1 = lunar.rand(4, 3, {device = DEV})
    local o2 = lunar.randn(10, {device = lunar.device(DEV)})
    exact(o1, c1)
    near(o2, c2, 1e-6)
    lunar.set_rng_state(saved)
  end)

  it("dropout masks on OpenCL are the CPU's", function()
    local x = lunar.randn({4, 3, 5, 2}, {generator = lunar.Generator(2)})
    for _, layer in ipairs({nn.Dropout(0.3), nn.AlphaDropout(0.2), nn.Dropout2d(0.5)}) do
      layer:train()
      lunar.manual_seed(77)
      local c = layer(x)
      lunar.manual_seed(77)
      local o = layer(x:to(DEV))
      near(o, c, 1e-6)
    end
  end)

  it("bad input still fails on OpenCL", function()
    local t = lunar.zeros({3}):to(DEV)
    H.raises(function() t:bernoulli_(1.5) end, "bernoulli_", "outside [0, 1]")
    H.raises(function() t:uniform_(1, 0) end, "uniform_")
    H.raises(function() lunar.randint(3, 3, {2}, {device = DEV}) end, "randint", "greater")
    H.raises(function() lunar.rand(2, {dtype = "int32", device = DEV}) end, "rand", "float")
    H.raises(function() lunar.rand(2, {device = "opencl:99"}) end, "opencl:99")
    H.raises(function() lunar.zeros({2}, {dtype = "int32"}):to(DEV):normal_() end, "normal_")
  end)

  it("randperm stays a host draw on the CPU", function()
    local p = lunar.randperm(10, {generator = lunar.Generator(1)})
    assert.are.equal("cpu", p:device())
  end)
end)

-- ---- optimizers ----

-- 10 steps of opt_fn(params) on a loss whose gradient is w + p (b: 2 b), from the same start
-- on both devices: element-wise products and sums only, so both see the same gradient bits.
local function steps(dev, dt, opt_fn, n)
  local g = lunar.Generator(99)
  local p0 = lunar.randn({7, 5}, {dtype = dt, generator = g})
  local w = lunar.randn({7, 5}, {dtype = dt, generator = g}):to(dev)
  local b0 = lunar.randn({5}, {dtype = dt, generator = g})
  local p = p0:to(dev):requires_grad_(true)
  local b = b0:to(dev):requires_grad_(true)
  local opt = opt_fn({p, b})
  for _ = 1, n or 10 do
    opt:zero_grad()
    local loss = (p * w):sum() + (p * p):sum() * 0.5 + (b * b):sum()
    loss:backward()
    opt:step()
  end
  return p:detach(), b:detach(), opt
end

local OPTIMIZERS = {
  {"SGD", function(ps) return optim.SGD(ps, {lr = 0.05}) end},
  {"SGD momentum", function(ps) return optim.SGD(ps, {lr = 0.05, momentum = 0.9,
                                                      dampening = 0.1}) end},
  {"SGD nesterov wd", function(ps) return optim.SGD(ps, {lr = 0.05, momentum = 0.9,
                                                         nesterov = true,
                                                         weight_decay = 0.01}) end},
  {"SGD maximize", function(ps) return optim.SGD(ps, {lr = 0.01, momentum = 0.5,
                                                      maximize = true}) end},
  {"Adagrad", function(ps) return optim.Adagrad(ps, {lr = 0.1, lr_decay = 0.01,
                                                     weight_decay = 0.1,
                                                     initial_accumulator_value = 0.1}) end},
  {"Adadelta", function(ps) return optim.Adadelta(ps, {lr = 1, rho = 0.8,
                                                       weight_decay = 0.01}) end},
  {"RMSprop", function(ps) return optim.RMSprop(ps, {lr = 0.01}) end},
  {"RMSprop centered momentum", function(ps) return optim.RMSprop(ps, {lr = 0.01,
                                                                       momentum = 0.9,
                                                                       centered = true,
                                                                       weight_decay = 0.1}) end},
  {"Adam", function(ps) return optim.Adam(ps, {lr = 0.01}) end},
  {"Adam amsgrad wd", function(ps) return optim.Adam(ps, {lr = 0.01, amsgrad = true,
                                                          weight_decay = 0.1}) end},
  {"Adam maximize", function(ps) return optim.Adam(ps, {lr = 0.01, maximize = true}) end},
  {"AdamW", function(ps) return optim.AdamW(ps, {lr = 0.01, weight_decay = 0.1}) end},
  {"AdamW amsgrad", function(ps) return optim.AdamW(ps, {lr = 0.01, amsgrad = true}) end},
  {"NAdam", function(ps) return optim.NAdam(ps, {lr = 0.01, weight_decay = 0.01}) end},
  {"Adamax", function(ps) return optim.Adamax(ps, {lr = 0.02, weight_decay = 0.01}) end},
}

describe("opencl optimizers #opencl", function()
  it("has an optim_step kernel on OpenCL", function()
    assert.is_true(lunar.backend_kernels(DEV).optim_step)
  end)

  for _, dt in ipairs(FLOATS) do
    for _, case in ipairs(OPTIMIZERS) do
      it(case[1] .. ": 10 steps on OpenCL equal the CPU's (" .. dt .. ")", function()
        local pc, bc = steps("cpu", dt, case[2])
        local po, bo, opt = steps(DEV, dt, case[2])
        -- bit for bit where the device computes in double as the CPU does (optim.cl)
        local same = FP64 and exact or function(a, e) near(a, e, 1e-6) end
        same(po, pc)
        same(bo, bc)
        -- the state lives beside the parameter
        for _, st in pairs(opt.state) do
          for _, v in pairs(st) do
            if lunar.is_tensor(v) then assert.are.equal(DEV, v:device()) end
          end
        end
      end)
    end
  end

  it("an nn.Linear moved to OpenCL trains as on the CPU (Adam, SGD)", function()
    for _, make in ipairs({function(ps) return optim.Adam(ps, {lr = 0.01}) end,
                           function(ps) return optim.SGD(ps, {lr = 0.05, momentum = 0.9}) end}) do
      lunar.manual_seed(5)
      local mc = nn.Linear(4, 3)
      lunar.manual_seed(5)
      local mo = nn.Linear(4, 3):to(DEV)
      local x = lunar.randn({8, 4}, {generator = lunar.Generator(6)})
      local y = lunar.randn({8, 3}, {generator = lunar.Generator(7)})
      local function train(m, dev)
        local opt = make(m:parameters())
        local xd, yd = x:to(dev), y:to(dev)
        for _ = 1, 10 do
          opt:zero_grad()
          local loss = ((m(xd) - yd) ^ 2):mean()
          loss:backward()
          opt:step()
        end
      end
      train(mc, "cpu")
      train(mo, DEV)
      assert.are.equal(DEV, mo.weight:device())
      -- GEMM sums in another order on OpenCL: close, not bit-equal
      near(mo.weight:detach(), mc.weight:detach(), 1e-5)
      near(mo.bias:detach(), mc.bias:detach(), 1e-5)
    end
  end)

  it("a CPU state dict loads onto OpenCL parameters and steps on", function()
    local make = function(ps) return optim.Adam(ps, {lr = 0.01, amsgrad = true}) end
    local pc, bc, oc = steps("cpu", "float32", make, 3)
    local dev_ps = {pc:to(DEV):requires_grad_(true), bc:to(DEV):requires_grad_(true)}
    local cpu = {pc:clone():requires_grad_(true), bc:clone():requires_grad_(true)}
    local o1, o2 = make(dev_ps), make(cpu)
    o1:load_state_dict(oc:state_dict())
    o2:load_state_dict(oc:state_dict())
    for _, st in pairs(o1.state) do
      for _, v in pairs(st) do
        if lunar.is_tensor(v) then assert.are.equal(DEV, v:device()) end
      end
    end
    for _, run in ipairs({{dev_ps, o1}, {cpu, o2}}) do
      local ps, opt = run[1], run[2]
      opt:zero_grad()
      local loss = (ps[1] * ps[1]):sum() + (ps[2] * ps[2]):sum()
      loss:backward()
      opt:step()
    end
    near(dev_ps[1]:detach(), cpu[1]:detach(), 1e-6)
    near(dev_ps[2]:detach(), cpu[2]:detach(), 1e-6)
  end)

  it("*_like constructors make the state on the parameter's device", function()
    local x = lunar.zeros({2, 3}, {dtype = "float64"}):to(DEV)
    for _, t in ipairs({lunar.zeros_like(x), lunar.ones_like(x), lunar.full_like(x, 2.5),
                        lunar.empty_like(x), lunar.zeros_like(x, {dtype = "float32"})}) do
      assert.are.equal(DEV, t:device())
      assert.are.same({2, 3}, t:size())
    end
    assert.are.same({{2.5, 2.5, 2.5}, {2.5, 2.5, 2.5}}, lunar.full_like(x, 2.5):to("cpu"):totable())
    assert.are.equal("float32", lunar.zeros_like(x, {dtype = "float32"}):dtype())
  end)

  it("pow's backward runs on OpenCL (its zero lives on the operand's device)", function()
    local x = lunar.randn({4, 3}, {generator = lunar.Generator(8)})
    local xc, xo = x:clone():requires_grad_(true), x:to(DEV):requires_grad_(true)
    for _, t in ipairs({xc, xo}) do
      local loss = (t ^ 3):sum() + lunar.where(t:gt(0), t, t * 2):sum()
      loss:backward()
    end
    near(xo.grad, xc.grad, 1e-6)
  end)

  it("a bad state still fails on OpenCL", function()
    local p = lunar.zeros({3}):to(DEV)
    local g = lunar.ones({3}):to(DEV)
    H.raises(function()
      lunar.optim_step("adam", p, g, {lunar.zeros({3}), lunar.zeros({3})},
                       {lr = 0.1, step = 1, beta1 = 0.9, beta2 = 0.99, eps = 1e-8})
    end, "Adam", "different devices")
  end)
end)
