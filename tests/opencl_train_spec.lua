-- Training on OpenCL follows the CPU: LeNet-5 on real MNIST digits, 50 SGD steps (momentum,
-- weight decay) from the same weights, the loss curves within 1e-3 relative; an Adam MLP
-- through lunar.train.fit with the model on the device and the data on the CPU.
local lunar = require("lunar")
local nn = lunar.nn

if #lunar.devices() == 0 then
  describe("opencl training #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): skipped")
  end)
  return
end

local DEV = "opencl:1"

local function lenet5()
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(),
    nn.Linear(84, 10))
end

describe("opencl training #opencl", function()
  it("LeNet-5: 50 steps on OpenCL follow the CPU's losses within 1e-3", function()
    lunar.manual_seed(11)
    local X, y = lunar.data.mnist({split = "train", float = true})
    local B, steps = 32, 50
    X, y = X:narrow(1, 1, B * 10), y:narrow(1, 1, B * 10)
    local cpu = lenet5()
    local dev = lenet5():to(DEV)
    dev:load_state_dict(cpu:state_dict())
    local opt_c = lunar.optim.SGD(cpu:parameters(), {lr = 0.05, momentum = 0.9,
                                                      weight_decay = 1e-4})
    local opt_d = lunar.optim.SGD(dev:parameters(), {lr = 0.05, momentum = 0.9,
                                                      weight_decay = 1e-4})
    local Xd, yd = X:to(DEV), y:to(DEV)
    local first, last
    for s = 0, steps - 1 do
      local k = (s % 10) * B + 1
      local lc, ld
      for _, side in ipairs({{cpu, opt_c, X, y}, {dev, opt_d, Xd, yd}}) do
        local model, opt, xs, ys = side[1], side[2], side[3], side[4]
        opt:zero_grad()
        local loss = lunar.cross_entropy(model(xs:narrow(1, k, B)), ys:narrow(1, k, B))
        loss:backward()
        opt:step()
        if model == cpu then lc = loss:item() else ld = loss:item() end
      end
      assert(math.abs(ld - lc) <= 1e-3 * math.abs(lc),
        ("step %d: OpenCL loss %.7g, CPU %.7g"):format(s + 1, ld, lc))
      first = first or lc
      last = lc
    end
    assert(last < 0.7 * first, ("the loss did not fall: %g -> %g"):format(first, last))
    assert.are.equal(DEV, dev[1].weight:device())
  end)

  it("fit with Adam: model on OpenCL, data on the CPU, the same history", function()
    local train = require("lunar.train")
    local function run(device)
      lunar.manual_seed(12)
      local X = lunar.randn(96, 8)
      local y = X:narrow(2, 1, 3):argmax(2)
      local model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
      if device then model:to(device) end
      local opt = lunar.optim.Adam(model:parameters(), {lr = 1e-2})
      return train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 3,
        batch_size = 32, metrics = {"accuracy"}, verbose = 0})
    end
    local hc, hd = run(nil), run(DEV)
    for e = 1, 3 do
      assert(math.abs(hd.loss[e] - hc.loss[e]) <= 1e-4 * hc.loss[e],
        ("epoch %d: %g vs %g"):format(e, hd.loss[e], hc.loss[e]))
      assert.are.equal(hc.accuracy[e], hd.accuracy[e])
    end
  end)
end)
