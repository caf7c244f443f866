-- lunar.models against torchvision 0.14 (tests/fixtures/gen_models.py): ResNet-18/34
-- parameter counts, state_dict names and shapes (models_keys.json: the full-width models),
-- and a narrow ResNet-18 (width 4, both stems) loaded from torchvision's state dict: the
-- eval and train outputs, gradients and running statistics within 1e-4 relative. Then the
-- same narrow network on OpenCL against the CPU (skipped without an OpenCL device).
local lunar = require("lunar")
local models = require("lunar.models")
local H = require("tests.helper")
local fixtures = require("tests.fixtures")

local fx = fixtures.load("models")

local function torchvision_keys()
  local f = assert(io.open("tests/fixtures/models_keys.json"))
  local keys = fixtures.parse_json(f:read("a"))
  f:close()
  return keys
end

-- max |a - e| / max |e|: relative to the tensor's scale, so that a value near zero in a
-- sum of many terms is not held to a relative bound of its own
local function rel(a, e)
  local d = (a:to("cpu"):double() - e:double()):abs():max():item()
  return d / math.max(e:double():abs():max():item(), 1e-30)
end

local function assert_rel(a, e, tol, what)
  local sa, se = table.concat(a:size(), "x"), table.concat(e:size(), "x")
  assert(sa == se, ("%s: shape [%s] vs torch's [%s]"):format(what, sa, se))
  local r = rel(a, e)
  assert(r <= tol, ("%s: relative difference %g > %g"):format(what, r, tol))
end

-- the narrow ResNet-18 of the fixture, variant "cifar" or "std", with torchvision's state
local function narrow(variant)
  local net = models.resnet18({num_classes = 10, width = 4, small_input = variant == "cifar"})
  local sd = {}
  for k, v in pairs(fx) do
    local name = type(k) == "string" and k:match("^cifar%.sd%.(.+)$")
    if name then sd[name] = v end
  end
  if variant == "std" then sd["conv1.weight"] = fx["std.sd.conv1.weight"] end
  net:load_state_dict(sd)
  return net
end

describe("lunar.models", function()
  it("is lunar.models too", function()
    assert.are.equal(models, lunar.models)
    assert.is_function(models.resnet18)
    assert.is_function(models.resnet34)
  end)

  it("ResNet-18 and ResNet-34 have torchvision's parameter counts", function()
    assert.are.equal(11689512, models.resnet18():num_parameters())
    assert.are.equal(21797672, models.resnet34():num_parameters())
    -- the CIFAR stem (3x3 conv) and 10 classes: 9408 - 1728 fewer in conv1, 512 * 990 + 990
    -- fewer in fc
    assert.are.equal(11173962,
      models.resnet18({num_classes = 10, small_input = true}):num_parameters())
  end)

  for _, name in ipairs({"resnet18", "resnet34"}) do
    it(name .. ": state_dict names and shapes are torchvision's, parameters in its order",
      function()
        local want = torchvision_keys()[name]
        local net = models[name]()
        local sd = net:state_dict()
        local n = 0
        for _ in pairs(sd) do n = n + 1 end
        assert.are.equal(#want, n)
        local params = {}
        for _, ks in ipairs(want) do
          local k, shape = ks[1], ks[2]
          assert(sd[k] ~= nil, "missing " .. k)
          assert.are.same(shape, sd[k]:size())
          if not (k:find("running_") or k:find("num_batches_tracked")) then
            params[#params + 1] = k
          end
        end
        local mine = {}
        for i, np in ipairs(net:named_parameters()) do mine[i] = np[1] end
        assert.are.same(params, mine)
      end)
  end

  it("initialises as torchvision: He normal (fan_out) convolutions, BN 1 and 0", function()
    lunar.manual_seed(3)
    local net = models.resnet18()
    -- conv1 [64, 3, 7, 7]: std sqrt(2 / (64 * 49))
    local w = net.conv1.weight
    local std = math.sqrt(2 / (64 * 49))
    assert(math.abs(w:std():item() / std - 1) < 0.05, "conv1 std " .. w:std():item())
    assert(math.abs(w:mean():item()) < 0.1 * std)
    local l4 = net.layer4[1].conv2.weight -- [512, 512, 3, 3]: std sqrt(2 / (512 * 9))
    assert(math.abs(l4:std():item() / math.sqrt(2 / (512 * 9)) - 1) < 0.02)
    for _, bn in ipairs({net.bn1, net.layer2[0].bn2, net.layer3[0].downsample[1]}) do
      assert.are.equal(1, bn.weight:min():item())
      assert.are.equal(1, bn.weight:max():item())
      assert.are.equal(0, bn.bias:abs():max():item())
    end
    -- the Linear keeps its default U(+-1/sqrt(512))
    assert(net.fc.weight:abs():max():item() <= 1 / math.sqrt(512))
    assert(net.fc.weight:std():item() > 0.5 / math.sqrt(3 * 512))
    assert.are.equal(1, net.layer1[1].bn2.weight:min():item())
    local z = models.resnet18({zero_init_residual = true})
    for _, stage in ipairs({"layer1", "layer2", "layer3", "layer4"}) do
      for b = 0, 1 do
        assert.are.equal(0, z[stage][b].bn2.weight:abs():max():item())
        assert.are.equal(1, z[stage][b].bn1.weight:min():item())
      end
    end
  end)

  it("blocks are reached as in PyTorch: net.layer1[0], layer2[0].downsample[0]", function()
    local net = models.resnet18({width = 4})
    assert.is_true(models.BasicBlock:is_instance(net.layer1[0]))
    assert.is_true(models.BasicBlock:is_instance(net.layer1[1]))
    assert.is_nil(net.layer1[2])
    assert.are.equal(2, #net.layer1)
    assert.is_nil(net.layer1[0].downsample)
    assert.are.same({8, 4, 1, 1}, net.layer2[0].downsample[0].weight:size())
    assert.are.equal("MaxPool2d", getmetatable(net.maxpool).__name)
    assert.is_nil(models.resnet18({small_input = true}).maxpool)
  end)

  it("in_channels and num_classes shape the stem and the head", function()
    local net = models.resnet18({in_channels = 1, num_classes = 7, width = 2,
      small_input = true})
    assert.are.same({2, 1, 3, 3}, net.conv1.weight:size())
    assert.are.same({2, 7}, net(lunar.randn(2, 1, 12, 12)):size())
    local n64 = models.resnet34({num_classes = 5, width = 2, dtype = "float64"})
    assert.are.equal("float64", n64.fc.weight:dtype())
    assert.are.same({3, 5}, n64(lunar.randn(3, 3, 33, 33, {dtype = "float64"})):size())
  end)

  for _, variant in ipairs({"cifar", "std"}) do
    it(variant .. ": torchvision's state dict loads strict; eval and train outputs, "
      .. "gradients and running statistics match PyTorch's within 1e-4", function()
      local net = narrow(variant)
      local x = fx[variant .. ".x"]
      net:eval()
      lunar.no_grad(function()
        assert_rel(net(x), fx[variant .. ".eval"], 1e-4, "eval output")
      end)
      net:train()
      local xg = x:clone():requires_grad_()
      local y = net(xg)
      assert_rel(y, fx[variant .. ".train"], 1e-4, "train output")
      local loss = (y * fx[variant .. ".g"]):sum()
      loss:backward()
      local params = {}
      for _, np in ipairs(net:named_parameters()) do params[np[1]] = np[2] end
      local checked = 0
      for k, want in pairs(fx) do
        local pname = type(k) == "string" and k:match("^" .. variant .. "%.grad%.(.+)$")
        if pname then
          assert_rel(params[pname].grad, want, 1e-4, "grad of " .. pname)
          checked = checked + 1
        end
        local bname = type(k) == "string" and k:match("^" .. variant .. "%.after%.(.+)$")
        if bname then
          assert_rel(net:state_dict()[bname], want, 1e-4, bname)
          checked = checked + 1
        end
      end
      assert.are.equal(19, checked)
      if fx[variant .. ".gx"] then assert_rel(xg.grad, fx[variant .. ".gx"], 1e-4, "grad x") end
      assert.are.equal(4, net.bn1.num_batches_tracked:item())
    end)
  end

  it("a checkpoint with a torchvision key missing or extra does not load strict", function()
    local net = models.resnet18({num_classes = 10, width = 4, small_input = true})
    local sd = net:state_dict()
    sd["layer1.0.downsample.0.weight"] = lunar.zeros(4, 4, 1, 1)
    H.raises(function() net:load_state_dict(sd) end, "unexpected keys",
      "layer1.0.downsample.0.weight")
    sd["layer1.0.downsample.0.weight"] = nil
    sd["fc.bias"] = nil
    H.raises(function() net:load_state_dict(sd) end, "missing keys", "fc.bias")
  end)

  it("bad input and options give clear errors", function()
    local net = models.resnet18({num_classes = 10, width = 2, small_input = true})
    H.raises(function() net(lunar.randn(2, 1, 32, 32)) end,
      "ResNet: expected an input [N, 3, H, W], got [2, 1, 32, 32]")
    H.raises(function() net(lunar.randn(3, 32, 32)) end, "ResNet", "[3, 32, 32]")
    H.raises(function() net("x") end, "ResNet", "string")
    H.raises(function() models.resnet18({num_classes = 0}) end, "num_classes", "positive")
    H.raises(function() models.resnet34({width = 1.5}) end, "width")
    H.raises(function() models.resnet18({in_channels = "3"}) end, "in_channels")
    H.raises(function() models.resnet18(10) end, "resnet18: options must be a table")
    H.raises(function() models.ResNet(models.BasicBlock, {2, 2, 2}) end, "4 block counts")
  end)
end)

if #lunar.devices() == 0 then
  describe("lunar.models on OpenCL #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): skipped")
  end)
  return
end

local ocl = require("tests.ocl")

describe("lunar.models on OpenCL #opencl", function()
  for _, small in ipairs({true, false}) do
    it(("narrow ResNet-18 (small_input %s): forward and backward on OpenCL follow the CPU")
      :format(tostring(small)), function()
      lunar.manual_seed(21)
      local cpu = models.resnet18({num_classes = 10, width = 4, small_input = small})
      local dev = models.resnet18({num_classes = 10, width = 4, small_input = small})
      dev:to(ocl.DEV)
      dev:load_state_dict(cpu:state_dict())
      local x = lunar.randn(2, 3, small and 16 or 40, small and 16 or 40)
      local y = lunar.randint(1, 11, {2})
      local xd = x:to(ocl.DEV)
      local lc = lunar.cross_entropy(cpu(x), y)
      local ld = lunar.cross_entropy(dev(xd), y:to(ocl.DEV))
      ocl.check(ld, lc, 5e-4)
      lc:backward()
      ld:backward()
      local pd = dev:named_parameters()
      for i, np in ipairs(cpu:named_parameters()) do
        local why = ocl.compare(pd[i][2].grad, np[2].grad, 5e-4)
        assert(why == nil, np[1] .. ": " .. tostring(why))
      end
      local bd = dev:state_dict()
      for k, v in pairs(cpu:state_dict()) do
        if v:dtype() == "float32" then ocl.check(bd[k], v, 5e-4) end
      end
      dev:eval()
      cpu:eval()
      lunar.no_grad(function() ocl.check(dev(xd), cpu(x), 5e-4) end)
    end)
  end
end)
