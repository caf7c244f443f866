-- Where tensors go: the device= option of the constructors, the default device
-- (lunar.set_default_device, LUNAR_DEVICE), *_like on the input's device, Module:to(device),
-- fit moving batches to the model's device, empty_cache with OpenCL pools.
local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")

local LUA = 'LUA_PATH_5_4="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="./?.so;;" lua5.4'

local function run(env, code)
  local p = io.popen(env .. " " .. LUA .. " -e '" .. code .. "' 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

describe("default device", function()
  after_each(function() lunar.set_default_device("cpu") end)

  it("is the CPU unless told otherwise", function()
    assert.are.equal("cpu", lunar.get_default_device())
    assert.are.equal("cpu", lunar.zeros(2):device())
    assert.are.equal("cpu", run("LUNAR_DEVICE=", 'print(require("lunar").ones(1):device())')
      :match("^(%S+)"))
  end)

  it("rejects a bad device, naming it", function()
    H.raises(function() lunar.set_default_device("tpu") end, "unknown device 'tpu'")
    H.raises(function() lunar.zeros(2, {device = "gpu:1"}) end, "unknown device 'gpu:1'")
    H.raises(function() lunar.zeros(2, {device = 3}) end, "unknown device '3'")
    local out = run("LUNAR_DEVICE=vulkan",
                    'local l = require("lunar"); print(l.ones(1):sum():item())')
    assert.truthy(out:find("LUNAR_DEVICE='vulkan': device: unknown device 'vulkan'", 1, true), out)
    assert.are.equal("cpu", lunar.get_default_device()) -- unchanged by the failures
  end)

  it("an explicit cpu option wins over the default", function()
    assert.are.equal("cpu", lunar.zeros(2, {device = "cpu"}):device())
    assert.are.equal("cpu", lunar.zeros(2, {device = lunar.device("cpu")}):device())
  end)
end)

if #lunar.devices() == 0 then
  describe("devices #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the device placement spec is skipped")
  end)
  return
end

local DEV = "opencl:1"

describe("device= and the default device #opencl", function()
  after_each(function() lunar.set_default_device("cpu") end)

  it("every constructor honours device=, with the same values as on the CPU", function()
    local o = {device = "opencl"}
    local made = {
      {lunar.zeros(2, 3, o), lunar.zeros(2, 3)},
      {lunar.ones({4}, {device = lunar.device("opencl"), dtype = "int32"}),
       lunar.ones({4}, {dtype = "int32"})},
      {lunar.full({2, 2}, 7, o), lunar.full({2, 2}, 7)},
      {lunar.tensor({{1, 2}, {3, 4}}, o), lunar.tensor({{1, 2}, {3, 4}})},
      {lunar.tensor(2.5, o), lunar.tensor(2.5)},
      {lunar.arange(1, 10, 2, o), lunar.arange(1, 10, 2)},
      {lunar.linspace(0, 1, 5, o), lunar.linspace(0, 1, 5)},
      {lunar.eye(3, 4, o), lunar.eye(3, 4)},
    }
    for i, p in ipairs(made) do
      assert.are.equal(DEV, p[1]:device(), "constructor " .. i)
      assert.are.same(p[2]:totable(), p[1]:to("cpu"):totable(), "constructor " .. i)
      assert.are.equal(p[2]:dtype(), p[1]:dtype())
    end
    local e = lunar.empty(3, o)
    assert.are.equal(DEV, e:device())
    local p = lunar.randperm(6, o)
    assert.are.equal(DEV, p:device())
    assert.are.same({1, 2, 3, 4, 5, 6}, p:to("cpu"):sort():totable())
    local r = lunar.zeros(3, {device = "opencl", requires_grad = true})
    assert.is_true(r.requires_grad)
  end)

  it("*_like follow the input's device and dtype", function()
    local x = lunar.randn(3, 2):to(DEV):to("float64")
    for _, f in ipairs({"zeros_like", "ones_like", "empty_like"}) do
      local y = lunar[f](x)
      assert.are.equal(DEV, y:device(), f)
      assert.are.equal("float64", y:dtype(), f)
    end
    assert.are.same(lunar.full({3, 2}, 5, {dtype = "float64"}):totable(),
                    lunar.full_like(x, 5):to("cpu"):totable())
    assert.are.equal("cpu", lunar.zeros_like(x, {device = "cpu"}):device())
    assert.are.equal(DEV, lunar.tensor(x):device()) -- a copy stays where its source is
  end)

  it("set_default_device and LUNAR_DEVICE place tensors made without device=", function()
    lunar.set_default_device(lunar.device("opencl"))
    assert.are.equal(DEV, lunar.get_default_device())
    assert.are.equal(DEV, lunar.zeros(2):device())
    assert.are.equal(DEV, lunar.tensor({1, 2}):device())
    assert.are.equal(DEV, lunar.arange(3):device())
    lunar.set_default_device("cpu")
    assert.are.equal("cpu", lunar.zeros(2):device())
    local out = run("LUNAR_DEVICE=opencl", 'local l = require("lunar"); ' ..
      'print(l.get_default_device(), l.ones(2):device(), (l.ones(2) * 3):sum():item())')
    assert.truthy(out:find("^opencl:1\topencl:1\t6%.0\n"), out)
  end)
end)

describe("Module:to(device) #opencl", function()
  it("moves parameters, buffers and gradients, and back", function()
    lunar.manual_seed(3)
    local m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    local x = lunar.randn(5, 4)
    m(x):sum():backward()
    local w, g = m[1].weight:clone(), m[1].weight.grad:clone()
    assert.are.equal(m, m:to("opencl"))
    assert.are.equal(DEV, m:device())
    for _, p in ipairs(m:parameters()) do assert.are.equal(DEV, p:device()) end
    assert.are.equal(DEV, m[2].running_mean:device())
    assert.is_true(m[1].weight.requires_grad)
    assert.are.equal(DEV, m[1].weight.grad:device())
    H.close(m[1].weight.grad:to("cpu"), g)
    m:to("cpu")
    assert.are.equal("cpu", m:device())
    H.close(m[1].weight, w)
    H.raises(function() m:to("int32") end, "expected a device or a float dtype")
  end)

  it("the same forward and backward on both devices; a CPU state dict loads", function()
    lunar.manual_seed(4)
    local cpu = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    local dev = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)):to(DEV)
    dev:load_state_dict(cpu:state_dict())
    assert.are.equal(DEV, dev[1].weight:device())
    local x = lunar.randn(7, 6)
    local yc, yd = cpu(x), dev(x:to(DEV))
    assert.are.equal(DEV, yd:device())
    H.close(yd:to("cpu"), yc, 1e-5, 1e-6)
    yc:square():sum():backward()
    yd:square():sum():backward()
    H.close(dev[3].weight.grad:to("cpu"), cpu[3].weight.grad, 1e-4, 1e-5)
    local sd = dev:state_dict() -- saving works from the device
    local path = os.tmpname()
    lunar.save(path, sd)
    local back = lunar.load(path)
    os.remove(path)
    H.close(back["1.weight"], cpu[1].weight)
  end)
end)

describe("fit on OpenCL #opencl", function()
  it("moves each batch to the model's device and learns like the CPU", function()
    local train = require("lunar.train")
    local function run_fit(device)
      lunar.manual_seed(5)
      local X = lunar.randn(64, 3)
      local y = X:matmul(lunar.tensor({{1}, {-2}, {0.5}})) + 0.3
      local model = nn.Sequential(nn.Linear(3, 1))
      if device then model:to(device) end
      local opt = lunar.optim.SGD(model:parameters(), {lr = 0.1})
      local hist = train.fit(model, {X, y}, {loss = "mse", optimizer = opt, epochs = 3,
                                             batch_size = 16, verbose = 0})
      return hist, model
    end
    local hc = run_fit(nil)
    local ok, hd, md = pcall(run_fit, DEV)
    if not ok and tostring(hd):find("no kernel on opencl", 1, true) then
      pending("the OpenCL optimizer step is not there yet")
      return
    end
    assert(ok, hd)
    assert.are.equal(DEV, md:device())
    for e = 1, 3 do
      assert.is_true(math.abs(hd.loss[e] - hc.loss[e]) <= 1e-4 * math.abs(hc.loss[e]),
        ("epoch %d: %g vs %g"):format(e, hd.loss[e], hc.loss[e]))
    end
  end)
end)

describe("empty_cache #opencl", function()
  it("releases the OpenCL pools and the device keeps working", function()
    do local _ = lunar.ones(1000, {device = DEV}) end
    collectgarbage()
    lunar.empty_cache()
    assert.are.equal(2000, (lunar.ones(1000, {device = DEV}) * 2):sum():item())
  end)
end)
