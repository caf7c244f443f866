-- The OpenCL nn kernels against the CPU (tag: opencl): softmax / log_softmax, cross_entropy
-- and nll_loss, batch / layer / group norm (functions and nn layers), forward and backward,
-- float32 and float64, compared by normalised mean squared error (<= 1e-7). Skipped, with a
-- message, when no OpenCL device exists.
local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")

if #lunar.devices() == 0 then
  describe("opencl nn #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the OpenCL nn spec is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local check = ocl.check
local DTYPES = {"float32", "float64"}

-- f(inputs..., consts...) on CPU leaves and on OpenCL leaves: the outputs must agree, and so
-- must the gradients of sum(out * r) (r random, so every output element weighs differently).
-- consts (class weights) go to the device too but get no gradient.
local function both(f, inputs, consts)
  consts = consts or {}
  local function run(dev)
    local leaves, args = {}, {}
    for i, x in ipairs(inputs) do
      leaves[i] = x:detach():to(dev)
      if x:dtype():find("float") then leaves[i]:requires_grad_(true) end
      args[i] = leaves[i]
    end
    for _, c in ipairs(consts) do args[#args + 1] = c:to(dev) end
    local y = f(table.unpack(args))
    local r = lunar.rand(y:size(), {dtype = y:dtype()}) + 0.5
    ;(y * r:to(dev)):sum():backward()
    local gs = {}
    for i, l in ipairs(leaves) do gs[i] = l.grad end
    return y, gs
  end
  local seed = math.random(1, 1 << 30)
  lunar.manual_seed(seed)
  local yc, gc = run("cpu")
  lunar.manual_seed(seed)
  local yg, gg = run(DEV)
  check(yg, yc)
  for i = 1, #inputs do
    if gc[i] then check(gg[i], gc[i]) end
  end
end

local function randn(shape, dt) return lunar.randn(shape, {dtype = dt}) end

-- cross_entropy on integer targets checks them with count_nonzero, and weights (mean) and
-- nll_loss go through index_select / gather: those run once the index kernels exist
local kernels = lunar.backend_kernels(DEV)
local has_index = kernels.count_nonzero and kernels.index_select and kernels.gather

describe("opencl softmax #opencl", function()
  before_each(function() lunar.manual_seed(7) math.randomseed(7) end)

  it("softmax and log_softmax along every dim, forward and backward", function()
    for _, dt in ipairs(DTYPES) do
      for _, shape in ipairs({{3, 5, 4}, {7, 1, 9}, {2, 3, 4, 5}}) do
        local x = randn(shape, dt) * 3
        for d = 1, #shape do
          both(function(a) return a:softmax(d) end, {x})
          both(function(a) return a:log_softmax(d) end, {x})
        end
        both(function(a) return a:log_softmax(-1) end, {x})
      end
      both(function(a) return lunar.softmax(a) end, {randn({11}, dt)})
      both(function(a) return a:log_softmax(1) end, {randn({}, dt)})
    end
  end)

  it("strided and offset inputs, large and -inf logits", function()
    for _, dt in ipairs(DTYPES) do
      local x = randn({6, 8}, dt)
      both(function(a) return a:t():softmax(2) end, {x})
      both(function(a) return a:narrow(1, 2, 4):log_softmax(2) end, {x})
      local big = lunar.tensor({{1000, 999, -1000}, {-50, 0, 50}}, {dtype = dt})
      both(function(a) return a:softmax(2) end, {big})
      both(function(a) return a:log_softmax(1) end, {big})
      local inf = lunar.tensor({{0, -math.huge, 1}, {2, 3, -math.huge}}, {dtype = dt})
      check(inf:to(DEV):softmax(2), inf:softmax(2))
    end
  end)

  it("nn.Softmax and nn.LogSoftmax, and bad input", function()
    local x = randn({4, 6}, "float32")
    both(function(a) return nn.Softmax(1)(a) end, {x})
    both(function(a) return nn.LogSoftmax(2)(a) end, {x})
    H.raises(function() return lunar.ones({3}, {dtype = "int32"}):to(DEV):softmax() end,
      "softmax", "float")
    H.raises(function() return x:to(DEV):softmax(3) end, "softmax")
  end)
end)

describe("opencl cross_entropy and nll_loss #opencl", function()
  before_each(function() lunar.manual_seed(11) math.randomseed(11) end)

  -- cross_entropy with opts; a third argument (a const of both()) is the class weight
  local function ce(opts)
    return function(z, t, w)
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.weight = w
      return lunar.cross_entropy(z, t, o)
    end
  end

  it("integer targets: reductions, weights, label smoothing, ignore_index", function()
    if not has_index then
      pending("waits for the OpenCL index kernels (count_nonzero, index_select, gather)")
      return
    end
    for _, dt in ipairs(DTYPES) do
      local w = lunar.rand({5}, {dtype = dt}) + 0.5
      for _, shape in ipairs({{6, 5}, {3, 5, 4, 2}}) do
        local z = randn(shape, dt) * 2
        local tshape = {shape[1], table.unpack(shape, 3)}
        local t = lunar.randint(1, 6, tshape)
        local ti = t:clone()
        ti:view(-1):narrow(1, 2, 1):fill_(3) -- class 3 shows up to be ignored
        for _, red in ipairs({"mean", "sum", "none"}) do
          both(ce({reduction = red}), {z, t})
          both(ce({reduction = red}), {z, t}, {w})
          both(ce({reduction = red, label_smoothing = 0.2}), {z, t})
          both(ce({reduction = red, ignore_index = 3, label_smoothing = 0.15}), {z, ti}, {w})
        end
        both(function(a, b, wd) return lunar.nll_loss(a:log_softmax(2), b, {weight = wd,
          ignore_index = 3}) end, {z, ti}, {w})
        both(function(a, b) return lunar.nll_loss(a, b, {reduction = "sum"}) end, {z, t})
      end
      -- a single sample [C] with a 0-d target, and int32 targets
      both(ce(), {randn({5}, dt), lunar.tensor(2, {dtype = "int64"})})
      both(ce(), {randn({4, 5}, dt), lunar.tensor({1, 5, 2, 2}, {dtype = "int32"})})
    end
  end)

  it("the nn loss modules, and a bad class fails on the device too", function()
    if not has_index then
      pending("waits for the OpenCL index kernels (count_nonzero, index_select, gather)")
      return
    end
    local z, t = randn({4, 3}, "float32"), lunar.tensor({1, 3, 2, 3}, {dtype = "int64"})
    local w = lunar.tensor({0.2, 1, 3})
    local m = nn.CrossEntropyLoss({weight = w:to(DEV), ignore_index = 2, label_smoothing = 0.1})
    local mc = nn.CrossEntropyLoss({weight = w, ignore_index = 2, label_smoothing = 0.1})
    check(m(z:to(DEV), t:to(DEV)), mc(z, t))
    check(nn.NLLLoss()(z:to(DEV):log_softmax(2), t:to(DEV)), nn.NLLLoss()(z:log_softmax(2), t))
    H.raises(function() return lunar.cross_entropy(z:to(DEV), (t + 1):to(DEV)) end,
      "cross_entropy", "class 4", "3 classes")
  end)

  it("probability targets, weighted and smoothed, [N, C] and [N, C, H, W]", function()
    for _, dt in ipairs(DTYPES) do
      for _, shape in ipairs({{6, 5}, {2, 5, 3, 2}}) do
        local z = randn(shape, dt)
        local p = randn(shape, dt):softmax(2)
        local w = lunar.rand({5}, {dtype = dt}) + 0.5
        both(ce(), {z, p})
        both(ce({reduction = "none", label_smoothing = 0.3}), {z, p})
        both(ce({reduction = "sum", label_smoothing = 0.1}), {z, p}, {w})
      end
    end
  end)
end)

describe("opencl normalisation #opencl", function()
  before_each(function() lunar.manual_seed(5) math.randomseed(5) end)

  it("batch_norm in training and eval, running statistics updated alike", function()
    for _, dt in ipairs(DTYPES) do
      -- 600 values per channel: more than one work-group's share per work-item
      for _, shape in ipairs({{8, 3}, {5, 4, 7}, {6, 3, 10, 10}}) do
        local c = shape[2]
        local x = randn(shape, dt) * 2 + 1
        local w, b = randn({c}, dt), randn({c}, dt)
        local rm, rv = randn({c}, dt), lunar.rand({c}, {dtype = dt}) + 0.5
        local grm, grv = rm:to(DEV), rv:to(DEV)
        local crm, crv = rm:clone(), rv:clone()
        both(function(a, wa, ba)
          local dev = a:device() == DEV
          return lunar.batch_norm(a, dev and grm or crm, dev and grv or crv, wa, ba,
            {training = true, momentum = 0.2, eps = 1e-4})
        end, {x, w, b})
        check(grm, crm)
        check(grv, crv)
        both(function(a, wa, ba)
          local dev = a:device() == DEV
          return lunar.batch_norm(a, dev and grm or crm, dev and grv or crv, wa, ba,
            {training = false})
        end, {x, w, b})
        both(function(a) return lunar.batch_norm(a, nil, nil, nil, nil, {training = true}) end,
          {x})
      end
    end
  end)

  it("nn.BatchNorm1d and nn.BatchNorm2d: train steps, then eval", function()
    for _, dt in ipairs(DTYPES) do
      for _, case in ipairs({{nn.BatchNorm1d, {10, 4}}, {nn.BatchNorm1d, {6, 4, 5}},
                             {nn.BatchNorm2d, {3, 4, 5, 6}}}) do
        local cls, shape = case[1], case[2]
        local mc = cls(4, {dtype = dt})
        local mg = cls(4, {dtype = dt})
        mg:to(DEV)
        for _ = 1, 2 do
          local x = randn(shape, dt)
          both(function(a) return (a:device() == DEV and mg or mc)(a) end, {x})
        end
        check(mg.running_mean, mc.running_mean)
        check(mg.running_var, mc.running_var)
        check(mg.weight.grad, mc.weight.grad)
        check(mg.bias.grad, mc.bias.grad)
        mc:eval()
        mg:eval()
        both(function(a) return (a:device() == DEV and mg or mc)(a) end, {randn(shape, dt)})
      end
    end
    H.raises(function() return nn.BatchNorm1d(3):to(DEV)(lunar.randn(1, 3):to(DEV)) end,
      "batch_norm", "one value per channel")
  end)

  it("layer_norm and group_norm with affine parameters, and their layers", function()
    for _, dt in ipairs(DTYPES) do
      local x = randn({4, 6, 5}, dt) * 3 - 1
      both(function(a) return lunar.layer_norm(a, {5}) end, {x})
      both(function(a, w, b) return lunar.layer_norm(a, {6, 5}, w, b, 1e-3) end,
        {x, randn({6, 5}, dt), randn({6, 5}, dt)})
      both(function(a) return lunar.layer_norm(a:transpose(2, 3), {6}) end, {x})
      both(function(a) return lunar.group_norm(a, 3) end, {x})
      both(function(a, w, b) return lunar.group_norm(a, 2, w, b) end,
        {randn({3, 6, 4, 4}, dt), randn({6}, dt), randn({6}, dt)})
      both(function(a) return lunar.group_norm(a, 1) end, {randn({2, 4, 30, 30}, dt)})
      local ln, lng = nn.LayerNorm({5}, {dtype = dt}), nn.LayerNorm({5}, {dtype = dt})
      lng:to(DEV)
      both(function(a) return (a:device() == DEV and lng or ln)(a) end, {x})
      check(lng.weight.grad, ln.weight.grad)
      local gn, gng = nn.GroupNorm(3, 6, {dtype = dt}), nn.GroupNorm(3, 6, {dtype = dt})
      gng:to(DEV)
      both(function(a) return (a:device() == DEV and gng or gn)(a) end, {x})
      check(gng.bias.grad, gn.bias.grad)
    end
    H.raises(function() return lunar.layer_norm(lunar.randn(2, 3):to(DEV), {4}) end,
      "layer_norm", "normalized_shape")
  end)
end)

describe("opencl backward constants #opencl", function()
  -- backward rules that build a zero or one tensor must build it on the gradient's device
  it("narrow, where, pow and prod differentiate on the device", function()
    local x = lunar.randn({5, 6}, {dtype = "float64"})
    x:view(-1):narrow(1, 3, 1):fill_(0) -- a zero, for prod's special case
    both(function(a) return a:narrow(1, 2, 3):exp() end, {x})
    both(function(a) return lunar.where(a:gt(0), a, a * 2) end, {x})
    both(function(a) return a:pow(2) end, {x})
    both(function(a) return a:prod(2) end, {x})
    both(function(a) return a:prod() end, {x:abs() + 0.5})
  end)
end)

describe("opencl softmax and cross_entropy, long rows #opencl", function()
  -- rows of 64 or more take one work-group per row (nn.c: row_wg), shorter ones one
  -- work-item per row: both forms, row lengths that are no multiple of the work-group's,
  -- lanes with inner > 1, and both with -inf and infinite logits
  before_each(function() lunar.manual_seed(13) math.randomseed(13) end)
  local dts = ocl.FP64 and {"float32", "float64"} or {"float32"}

  it("softmax and log_softmax, forward and backward, on both sides of the switch", function()
    for _, dt in ipairs(dts) do
      for _, shape in ipairs({{5, 63}, {3, 64}, {2, 100}, {4, 1000}, {2, 9000}, {1, 70}}) do
        local x = randn(shape, dt) * 4
        both(function(a) return a:softmax(2) end, {x})
        both(function(a) return a:log_softmax(2) end, {x})
      end
      local x3 = randn({2, 300, 3}, dt) -- lanes strided by 3 along the row
      both(function(a) return a:softmax(2) end, {x3})
      both(function(a) return a:log_softmax(2) end, {x3})
      both(function(a) return a:t():log_softmax(2) end, {randn({777, 3}, dt)})
    end
  end)

  it("-inf logits anywhere in a row (first included), +inf and all -inf rows", function()
    for _, dt in ipairs(dts) do
      for _, n in ipairs({3, 5000}) do
        local x = randn({4, n}, dt)
        local xv = x:view(-1)
        -- row 1 starts with -inf, row 2 has -inf in many shares, row 3 one +inf,
        -- row 4 only -inf
        xv:narrow(1, 1, 1):fill_(-math.huge)
        for j = n + 1, 2 * n, 2 do xv:narrow(1, j, 1):fill_(-math.huge) end
        xv:narrow(1, 2 * n + 2, 1):fill_(math.huge)
        xv:narrow(1, 3 * n + 1, n):fill_(-math.huge)
        local xd = x:to(DEV)
        check(xd:softmax(2), x:softmax(2), nil, true)
        check(xd:log_softmax(2), x:log_softmax(2), nil, true)
        -- a leading -inf is a zero probability, not a NaN
        local p = x:softmax(2):narrow(1, 1, 1)
        assert.is_true(p:sum():item() == p:sum():item())
        assert.are.equal(0, p:view(-1):narrow(1, 1, 1):item())
      end
    end
    local cpu = lunar.tensor({-math.huge, 0}):softmax(1)
    H.close(cpu, lunar.tensor({0, 1}), 0, 0)
  end)

  it("cross_entropy with many classes: weights, smoothing, ignore_index", function()
    if not has_index then
      pending("waits for the OpenCL index kernels (count_nonzero, index_select, gather)")
      return
    end
    for _, dt in ipairs(dts) do
      for _, c in ipairs({10, 63, 64, 300, 4100}) do
        local z = randn({6, c}, dt) * 3
        local t = lunar.randint(1, c + 1, {6})
        t:narrow(1, 2, 1):fill_(2)
        local w = lunar.rand({c}, {dtype = dt}) + 0.5
        both(function(a, b) return lunar.cross_entropy(a, b) end, {z, t})
        both(function(a, b, wd) return lunar.cross_entropy(a, b, {weight = wd,
          label_smoothing = 0.2, ignore_index = 2, reduction = "sum"}) end, {z, t}, {w})
        both(function(a, b) return lunar.cross_entropy(a, b, {label_smoothing = 0.1,
          reduction = "none"}) end, {z, t})
      end
      -- [N, C, d]: lanes strided along the classes
      local z = randn({2, 200, 3}, dt)
      both(function(a, b) return lunar.cross_entropy(a, b) end,
        {z, lunar.randint(1, 201, {2, 3})})
    end
  end)
end)
