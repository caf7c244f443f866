-- The OpenCL convolution and pooling kernels against the CPU (tag: opencl): im2col / col2im
-- under conv1d, conv2d and conv_transpose2d (stride, padding incl. "same", dilation,
-- groups), the max / average / adaptive / LP pools, and the nn layers on them, forward and
-- backward, float32 and float64. Compared by normalised mean squared error (5e-4 for the
-- GEMM-based convolutions in float32, 1e-7 otherwise); max-pool indices must be equal.
-- Skipped, with a message, when no OpenCL device exists.
local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")

if #lunar.devices() == 0 then
  describe("opencl conv #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the OpenCL conv spec is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local check = ocl.check

local DTYPES = {"float32", "float64"}
local CONV_TOL = {float32 = 5e-4, float64 = 1e-7}

-- f on leaves (random of the given shapes, or copies of given tensors; dtype dt) on the
-- CPU and on OpenCL: the outputs, and the gradients of every leaf under a random upstream
-- gradient, must agree within tol
local function both(f, shapes, dt, tol)
  local leaves, dev = {}, {}
  for i, s in ipairs(shapes) do
    leaves[i] = lunar.is_tensor(s) and s:to(dt):clone() or lunar.randn(s, {dtype = dt})
    leaves[i]:requires_grad_(true)
  end
  local y = f(table.unpack(leaves))
  local up = lunar.randn(y:size(), {dtype = dt})
  y:backward(up)
  for i, l in ipairs(leaves) do
    dev[i] = l:detach():to(DEV)
    dev[i]:requires_grad_(true)
  end
  local yd = f(table.unpack(dev))
  check(yd, y:detach(), tol)
  yd:backward(up:to(DEV))
  for i = 1, #dev do check(dev[i].grad, leaves[i].grad, tol) end
end

describe("opencl convolutions against the CPU #opencl", function()
  before_each(function() lunar.manual_seed(4321) end)

  local conv2d_cases = {
    {"stride and padding", {2, 3, 9, 8}, {4, 3, 3, 3}, {stride = 2, padding = 1}},
    {"padding 'same', even kernel (asymmetric)", {2, 3, 7, 6}, {5, 3, 4, 2}, {padding = "same"}},
    {"padding per dim and stride per dim", {1, 2, 8, 9}, {3, 2, 3, 5},
     {stride = {2, 1}, padding = {1, 2}}},
    {"dilation", {2, 2, 10, 9}, {3, 2, 3, 3}, {dilation = {2, 3}, padding = {2, 1}}},
    {"groups", {2, 4, 7, 7}, {6, 2, 3, 3}, {groups = 2, stride = {1, 2}, padding = 1}},
    {"depthwise", {2, 3, 8, 7}, {3, 1, 3, 3}, {groups = 3, padding = 1}},
    {"depthwise with a channel multiplier, dilated", {1, 2, 9, 9}, {6, 1, 3, 2},
     {groups = 2, dilation = 2, stride = 2}},
    {"pointwise (no columns)", {2, 3, 5, 4}, {4, 3, 1, 1}, {}},
    {"kernel as large as the input", {2, 2, 3, 4}, {3, 2, 3, 4}, {}},
  }
  for _, c in ipairs(conv2d_cases) do
    it("conv2d: " .. c[1] .. ", input, weight and bias gradients", function()
      for _, dt in ipairs(DTYPES) do
        both(function(x, w, b) return lunar.conv2d(x, w, b, c[4]) end,
             {c[2], c[3], {c[3][1]}}, dt, CONV_TOL[dt])
      end
    end)
  end

  it("conv2d without bias, on a strided and an offset input", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x, w)
        return lunar.conv2d(x:transpose(3, 4), w, nil, {stride = 2, padding = 1})
      end, {{2, 3, 6, 9}, {4, 3, 3, 3}}, dt, CONV_TOL[dt])
      both(function(x, w)
        return lunar.conv2d(x:narrow(1, 2, 2), w, nil, {padding = 1})
      end, {{3, 2, 5, 5}, {3, 2, 3, 3}}, dt, CONV_TOL[dt])
    end
  end)

  it("conv2d on an unbatched input", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x, w, b) return lunar.conv2d(x, w, b, {padding = 1}) end,
           {{3, 6, 5}, {2, 3, 3, 3}, {2}}, dt, CONV_TOL[dt])
    end
  end)

  it("conv1d: stride, padding, dilation, groups, 'same'", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x, w, b)
        return lunar.conv1d(x, w, b, {stride = 2, padding = 1, dilation = 2})
      end, {{2, 3, 17}, {4, 3, 3}, {4}}, dt, CONV_TOL[dt])
      both(function(x, w, b) return lunar.conv1d(x, w, b, {groups = 2, padding = "same"}) end,
           {{2, 4, 11}, {6, 2, 4}, {6}}, dt, CONV_TOL[dt])
    end
  end)

  it("conv_transpose2d: stride, padding, output_padding, groups, dilation", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x, w, b) return lunar.conv_transpose2d(x, w, b) end,
           {{2, 3, 4, 5}, {3, 2, 3, 3}, {2}}, dt, CONV_TOL[dt])
      both(function(x, w, b)
        return lunar.conv_transpose2d(x, w, b, {stride = 2, padding = 1, output_padding = 1})
      end, {{2, 3, 5, 4}, {3, 4, 3, 3}, {4}}, dt, CONV_TOL[dt])
      both(function(x, w, b)
        return lunar.conv_transpose2d(x, w, b, {stride = {2, 1}, groups = 2, dilation = 2})
      end, {{1, 4, 4, 5}, {4, 3, 3, 2}, {6}}, dt, CONV_TOL[dt])
    end
  end)

  it("bad input still fails with a Lua error on the device", function()
    local x, w = lunar.randn(1, 3, 5, 5):to(DEV), lunar.randn(2, 4, 3, 3):to(DEV)
    H.raises(function() lunar.conv2d(x, w) end, "conv2d")
    H.raises(function() lunar.conv2d(x:to("int32"), w:to("int32")) end, "conv2d")
    H.raises(function() lunar.max_pool2d(x, 2, {padding = 2}) end, "max_pool2d", "half")
    H.raises(function() lunar.avg_pool2d(x:to("int64"), 2) end, "avg_pool2d")
    H.raises(function() lunar.adaptive_avg_pool2d(x, 0) end, "adaptive_avg_pool2d")
  end)
end)

describe("opencl pools against the CPU #opencl", function()
  before_each(function() lunar.manual_seed(8765) end)

  -- max_pool2d on x (CPU) and on its copy on the device: values and indices equal
  local function max_same(x, k, opts)
    opts = opts or {}
    opts.return_indices = true
    local y, i = lunar.max_pool2d(x, k, opts)
    local yd, id = lunar.max_pool2d(x:to(DEV), k, opts)
    check(yd, y, 0)
    check(id, i, 0)
  end

  local max_cases = {
    {2, {}},
    {3, {stride = 2, padding = 1}},
    {{3, 2}, {stride = 2, ceil_mode = true, dilation = {1, 2}, padding = {1, 0}}},
    {{2, 3}, {stride = {1, 2}, dilation = {2, 1}, padding = {1, 1}}},
    {3, {stride = 2, padding = 1, ceil_mode = true}},
    {4, {stride = 3, padding = 2, ceil_mode = true}},
  }

  it("max_pool2d values and indices: stride, padding, dilation, ceil_mode", function()
    for _, dt in ipairs(DTYPES) do
      for _, c in ipairs(max_cases) do
        max_same(lunar.randn({2, 3, 9, 10}, {dtype = dt}), c[1], c[2])
      end
    end
  end)

  it("max_pool2d ties go to the first maximum, -inf padding never wins, NaN wins", function()
    for _, dt in ipairs(DTYPES) do
      local ties = (lunar.randn({2, 2, 8, 7}, {dtype = dt}) * 1.5):floor()
      for _, c in ipairs(max_cases) do max_same(ties, c[1], c[2]) end
      local zeros = lunar.zeros({1, 2, 5, 6}, {dtype = dt})
      max_same(zeros, 3, {stride = 2, padding = 1})
      local neg = -(lunar.randn({1, 2, 6, 5}, {dtype = dt}):abs()) - 1e30
      max_same(neg, 3, {stride = 2, padding = 1, ceil_mode = true})
      local ninf = lunar.full({1, 1, 4, 4}, -math.huge, {dtype = dt})
      max_same(ninf, 3, {stride = 2, padding = 1})
      local _, ic = lunar.max_pool2d(ninf, 3, {stride = 2, padding = 1, return_indices = true})
      assert.are.same({{{{1, 2}, {5, 6}}}}, ic:totable()) -- the first in-bounds element
      local nan = lunar.tensor({{{{1, 2, 3, 4}, {5, 6, 0 / 0, 8}, {9, 10, 11, 12},
                                   {13, 14, 15, 16}}}}, {dtype = dt})
      local y, i = lunar.max_pool2d(nan:to(DEV), 2, {return_indices = true})
      local yv = y:to("cpu"):totable()[1][1]
      assert.is_true(yv[1][2] ~= yv[1][2]) -- NaN
      assert.are.same({{6, 7}, {14, 16}}, i:to("cpu"):totable()[1][1])
      local _, ic2 = lunar.max_pool2d(nan, 2, {return_indices = true})
      check(i, ic2, 0)
    end
  end)

  it("max_pool2d and max_pool1d gradients, overlapping windows and ties", function()
    for _, dt in ipairs(DTYPES) do
      for _, c in ipairs(max_cases) do
        both(function(x) return lunar.max_pool2d(x, c[1], c[2]) end, {{2, 3, 9, 10}}, dt)
        local ties = (lunar.randn({2, 2, 8, 7}) * 1.5):floor()
        both(function(x) return lunar.max_pool2d(x, c[1], c[2]) end, {ties}, dt)
      end
      both(function(x) return lunar.max_pool1d(x, 3, {stride = 2, padding = 1}) end,
           {{2, 3, 11}}, dt)
      -- a window wholly in the padding: -inf, an index past the plane, no gradient
      local empty = {stride = {2, 1}, padding = {1, 0}, dilation = {3, 1}, ceil_mode = true}
      max_same(lunar.randn({2, 2, 1, 3}, {dtype = dt}), {2, 1}, empty)
      both(function(x) return lunar.max_pool2d(x, {2, 1}, empty):clamp(-1, 1) end,
           {{2, 2, 1, 3}}, dt)
      both(function(x) return lunar.max_pool2d(x:transpose(3, 4), 2) end, {{2, 3, 7, 6}}, dt)
      both(function(x) return lunar.max_pool2d(x, 3, {stride = 1, padding = 1}) end,
           {{3, 6, 5}}, dt) -- unbatched
    end
  end)

  local avg_cases = {
    {2, {}},
    {3, {stride = 2, padding = 1}},
    {3, {stride = 2, padding = 1, count_include_pad = false}},
    {{3, 2}, {stride = 2, padding = 1, ceil_mode = true}},
    {{3, 2}, {stride = 2, padding = 1, ceil_mode = true, count_include_pad = false}},
    {{4, 3}, {stride = {3, 1}, padding = {2, 1}, ceil_mode = true}},
    {3, {stride = 1}},
  }

  it("avg_pool2d and avg_pool1d: padding, ceil_mode, count_include_pad", function()
    for _, dt in ipairs(DTYPES) do
      for _, c in ipairs(avg_cases) do
        both(function(x) return lunar.avg_pool2d(x, c[1], c[2]) end, {{2, 3, 9, 10}}, dt)
      end
      both(function(x) return lunar.avg_pool1d(x, 3, {stride = 2, padding = 1}) end,
           {{2, 3, 12}}, dt)
      both(function(x) return lunar.avg_pool2d(x:transpose(3, 4), 3, {stride = 2}) end,
           {{1, 2, 8, 9}}, dt)
    end
  end)

  it("adaptive_avg_pool2d: sizes that do not divide, upsampling, global", function()
    for _, dt in ipairs(DTYPES) do
      for _, size in ipairs({{3, 2}, {4, 4}, {5, 3}, {1, 1}, {7, 9}, {2, 7}}) do
        both(function(x) return lunar.adaptive_avg_pool2d(x, size) end, {{2, 3, 7, 5}}, dt)
      end
      both(function(x) return lunar.adaptive_avg_pool2d(x, 3) end, {{3, 10, 11}}, dt)
    end
  end)

  it("lp_pool2d", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x) return lunar.lp_pool2d(x, 2, {2, 3}, {stride = 2}) end,
           {{2, 3, 8, 9}}, dt)
      both(function(x) return lunar.lp_pool2d(x:abs() + 0.1, 3, 2, {ceil_mode = true}) end,
           {{1, 2, 7, 7}}, dt)
    end
  end)
end)

describe("opencl conv and pooling layers against the CPU #opencl", function()
  -- the same module (same seed) on the CPU and on the device: output, input gradient and
  -- every parameter's gradient
  local function layer(make, shape, dt, tol)
    lunar.manual_seed(55)
    local m = make()
    lunar.manual_seed(55)
    local md = make()
    if dt == "float64" then
      m:to("float64")
      md:to("float64")
    end
    md:to(DEV)
    local x = lunar.randn(shape, {dtype = dt})
    local xd = x:to(DEV)
    x:requires_grad_(true)
    xd:requires_grad_(true)
    local y, yd = m(x), md(xd)
    check(yd, y:detach(), tol)
    local up = lunar.randn(y:size(), {dtype = dt})
    y:backward(up)
    yd:backward(up:to(DEV))
    check(xd.grad, x.grad, tol)
    local p, pd = m:parameters(), md:parameters()
    assert.are.equal(#p, #pd)
    for i = 1, #p do
      assert.are.equal(DEV, pd[i]:device())
      check(pd[i].grad, p[i].grad, tol)
    end
  end

  it("nn.Conv2d, nn.Conv1d, nn.ConvTranspose2d", function()
    for _, dt in ipairs(DTYPES) do
      local tol = CONV_TOL[dt]
      layer(function() return nn.Conv2d(3, 8, 3, {stride = 2, padding = 1}) end,
            {2, 3, 9, 9}, dt, tol)
      layer(function() return nn.Conv2d(4, 8, {3, 1}, {groups = 4, bias = false}) end,
            {2, 4, 6, 5}, dt, tol)
      layer(function() return nn.Conv2d(2, 4, 4, {padding = "same", dilation = 2}) end,
            {1, 2, 9, 8}, dt, tol)
      layer(function() return nn.Conv1d(2, 4, 3, {padding = "same"}) end, {2, 2, 10}, dt, tol)
      layer(function() return nn.ConvTranspose2d(4, 6, 2, {stride = 2, groups = 2}) end,
            {2, 4, 3, 5}, dt, tol)
    end
  end)

  it("nn pooling layers", function()
    for _, dt in ipairs(DTYPES) do
      layer(function() return nn.MaxPool2d(2, {ceil_mode = true}) end, {2, 3, 7, 8}, dt)
      layer(function() return nn.MaxPool1d(3, {stride = 2}) end, {2, 3, 11}, dt)
      layer(function() return nn.AvgPool2d(3, {stride = 2, padding = 1}) end, {2, 3, 8, 8}, dt)
      layer(function() return nn.AvgPool1d(3) end, {2, 3, 10}, dt)
      layer(function() return nn.LPPool2d(2, 2) end, {2, 3, 8, 7}, dt)
      layer(function() return nn.AdaptiveAvgPool2d({3, 2}) end, {2, 3, 8, 7}, dt)
      layer(function() return nn.GlobalAvgPool2d() end, {2, 3, 5, 4}, dt)
    end
  end)

  it("a small LeNet, forward and backward", function()
    for _, dt in ipairs(DTYPES) do
      layer(function()
        return nn.Sequential(
          nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
          nn.AdaptiveAvgPool2d({3, 3}), nn.Flatten(), nn.Linear(16 * 9, 10))
      end, {3, 1, 28, 28}, dt, CONV_TOL[dt])
    end
  end)
end)

describe("opencl avg_pool2d divisor_override against the CPU #opencl", function()
  before_each(function() lunar.manual_seed(777) end)

  it("plain, padded with ceil_mode (windows past the padding), negative, strided input", function()
    for _, dt in ipairs(DTYPES) do
      both(function(x) return lunar.avg_pool2d(x, 2, {divisor_override = 3}) end,
           {{2, 3, 7, 6}}, dt)
      both(function(x)
        return lunar.avg_pool2d(x, {3, 2}, {stride = 2, padding = 1, ceil_mode = true,
          count_include_pad = false, divisor_override = 5})
      end, {{2, 3, 9, 10}}, dt)
      both(function(x) return lunar.avg_pool2d(x, 3, {stride = 1, divisor_override = -4}) end,
           {{3, 8, 7}}, dt)
      both(function(x)
        return nn.AvgPool2d(3, {stride = 2, divisor_override = 2})(x:transpose(3, 4))
      end, {{1, 2, 8, 9}}, dt)
    end
  end)
end)
