local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("conv")

-- Runs fn on leaf copies of the fixture inputs `name_<k>`, compares the output with
-- PyTorch's, backpropagates the fixture's upstream gradient and compares the gradients.
local function against_torch(name, keys, fn)
  local leaves = {}
  for i, k in ipairs(keys) do leaves[i] = fx[name .. "_" .. k]:clone():requires_grad_() end
  local y, idx = fn(table.unpack(leaves))
  H.close(y, fx[name .. "_out"], 1e-4, 1e-5)
  if idx then H.close(idx, (fx[name .. "_idx"] + 1):totable(), 0, 0) end
  y:backward(fx[name .. "_g"])
  for i, k in ipairs(keys) do H.close(leaves[i].grad, fx[name .. "_g" .. k], 1e-4, 1e-5) end
end

local function gradcheck(fn, inputs)
  local ok, msg = lunar.autograd.gradcheck(fn, inputs)
  assert(ok, msg)
end

local function leaf(...)
  local shape = {...}
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return (lunar.arange(n, {dtype = "float64"}):sin() * 2 + 0.1):reshape(shape):requires_grad_()
end

describe("conv values and gradients against PyTorch", function()
  local XWB = {"x", "w", "b"}
  local cases = {
    c2_basic = function(x, w, b) return lunar.conv2d(x, w, b) end,
    c2_stride = function(x, w, b) return lunar.conv2d(x, w, b, {stride = 2, padding = 1}) end,
    c2_dil = function(x, w, b)
      return lunar.conv2d(x, w, b, {dilation = 2, padding = {1, 2}})
    end,
    c2_groups = function(x, w, b)
      return lunar.conv2d(x, w, b, {groups = 2, stride = {1, 2}})
    end,
    c2_depth = function(x, w, b) return lunar.conv2d(x, w, b, {groups = 3, padding = 1}) end,
    c2_1x1 = function(x, w, b) return lunar.conv2d(x, w, b) end,
    c1 = function(x, w, b)
      return lunar.conv1d(x, w, b, {stride = 2, padding = 1, dilation = 2})
    end,
    ct_basic = function(x, w, b) return lunar.conv_transpose2d(x, w, b) end,
    ct_stride = function(x, w, b)
      return lunar.conv_transpose2d(x, w, b, {stride = 2, padding = 1, output_padding = 1})
    end,
    ct_groups = function(x, w, b)
      return lunar.conv_transpose2d(x, w, b, {stride = {2, 1}, groups = 2, dilation = 2})
    end,
  }
  for name, fn in pairs(cases) do
    it(name, function() against_torch(name, XWB, fn) end)
  end
  it("c2_same (even kernel: the extra padding goes bottom/right)", function()
    against_torch("c2_same", {"x", "w"}, function(x, w)
      return lunar.conv2d(x, w, nil, {padding = "same"})
    end)
  end)
end)

describe("pooling values, indices and gradients against PyTorch", function()
  local cases = {
    mp_basic = function(x) return lunar.max_pool2d(x, 2, {return_indices = true}) end,
    mp_pad = function(x)
      return lunar.max_pool2d(x, 3, {stride = 2, padding = 1, return_indices = true})
    end,
    mp_ceil = function(x)
      return lunar.max_pool2d(x, {3, 2}, {stride = 2, ceil_mode = true, dilation = {1, 2},
                                          return_indices = true})
    end,
    mp1 = function(x)
      return lunar.max_pool1d(x, 3, {stride = 2, padding = 1, return_indices = true})
    end,
    ap_basic = function(x) return lunar.avg_pool2d(x, 2) end,
    ap_pad = function(x) return lunar.avg_pool2d(x, 3, {stride = 2, padding = 1}) end,
    ap_nopad = function(x)
      return lunar.avg_pool2d(x, 3, {stride = 2, padding = 1, count_include_pad = false,
                                     ceil_mode = true})
    end,
    ap_ceil = function(x)
      return lunar.avg_pool2d(x, {3, 2}, {stride = 2, padding = 1, ceil_mode = true})
    end,
    ap1 = function(x) return lunar.avg_pool1d(x, 3, {stride = 2, padding = 1}) end,
    lp = function(x) return lunar.lp_pool2d(x, 2, {2, 3}, {stride = 2}) end,
    lp3 = function(x) return lunar.lp_pool2d(x, 3, 2, {ceil_mode = true}) end,
    aap = function(x) return lunar.adaptive_avg_pool2d(x, {3, 2}) end,
    aap_up = function(x) return lunar.adaptive_avg_pool2d(x, 4) end,
  }
  for name, fn in pairs(cases) do
    it(name, function() against_torch(name, {"x"}, fn) end)
  end
end)

describe("float64 gradcheck", function()
  it("conv2d: stride, padding, dilation, groups, 1x1, same", function()
    local x, w, b = leaf(2, 4, 5, 5), leaf(2, 2, 3, 2), leaf(2)
    gradcheck(function(a, c, d)
      return lunar.conv2d(a, c, d, {stride = {2, 1}, padding = 1, dilation = {1, 2}, groups = 2})
    end, {x, w, b})
    local w1 = leaf(3, 4, 1, 1)
    gradcheck(function(a, c) return lunar.conv2d(a, c) end, {x, w1})
    local wd = leaf(4, 1, 3, 3)
    gradcheck(function(a, c) return lunar.conv2d(a, c, nil, {groups = 4, padding = "same"}) end,
      {x, wd})
  end)
  it("conv1d and conv_transpose2d", function()
    local x, w, b = leaf(2, 2, 7), leaf(3, 2, 3), leaf(3)
    gradcheck(function(a, c, d) return lunar.conv1d(a, c, d, {stride = 2, padding = 1}) end,
      {x, w, b})
    local x2, wt, bt = leaf(1, 4, 3, 3), leaf(4, 1, 3, 2), leaf(2)
    gradcheck(function(a, c, d)
      return lunar.conv_transpose2d(a, c, d, {stride = 2, padding = 1, output_padding = 1,
                                              groups = 2})
    end, {x2, wt, bt})
  end)
  it("pooling", function()
    local x = leaf(2, 2, 5, 6)
    gradcheck(function(a) return lunar.max_pool2d(a, 3, {stride = 2, padding = 1}) end, {x})
    gradcheck(function(a) return lunar.avg_pool2d(a, 3, {stride = 2, padding = 1,
                                                         ceil_mode = true}) end, {x})
    gradcheck(function(a) return lunar.avg_pool2d(a, 2, {count_include_pad = false,
                                                         padding = 1}) end, {x})
    gradcheck(function(a) return lunar.adaptive_avg_pool2d(a, {2, 4}) end, {x})
    gradcheck(function(a) return lunar.lp_pool2d(a, 2, 2) end, {x})
    local x1 = leaf(2, 3, 7)
    gradcheck(function(a) return lunar.max_pool1d(a, 2) end, {x1})
    gradcheck(function(a) return lunar.avg_pool1d(a, 3, {stride = 2}) end, {x1})
  end)
end)

describe("conv identities", function()
  it("a 1x1 convolution is a matrix product over channels", function()
    local x, w = lunar.randn(2, 3, 4, 5), lunar.randn(6, 3, 1, 1)
    local ref = lunar.matmul(w:reshape(6, 3), x:reshape(2, 3, 20)):reshape(2, 6, 4, 5)
    H.close(lunar.conv2d(x, w), ref, 1e-5, 1e-5)
  end)
  it("unbatched inputs work as a batch of one", function()
    local x, w = lunar.randn(3, 6, 6), lunar.randn(4, 3, 3, 3)
    H.close(lunar.conv2d(x, w), lunar.conv2d(x:reshape(1, 3, 6, 6), w):reshape(4, 4, 4),
      1e-6, 1e-6)
    H.close(lunar.max_pool2d(x, 2), lunar.max_pool2d(x:reshape(1, 3, 6, 6), 2):reshape(3, 3, 3),
      0, 0)
  end)
end)

describe("conv on one thread and on two", function()
  it("gives the same values and gradients (images shared out, partial sums)", function()
    -- at 2 threads a chunk's per-image products are shared out over the threads and the
    -- weight gradient is summed from per-image partials; at 1 thread it is one chain of
    -- accumulating products: equal up to float32 rounding
    lunar.manual_seed(11)
    local saved = lunar.get_num_threads()
    local cases = {
      {x = {64, 1, 28, 28}, w = {6, 1, 5, 5}, opts = {padding = 2}},
      {x = {64, 6, 14, 14}, w = {16, 6, 5, 5}, opts = {}},
      {x = {9, 8, 20, 20}, w = {12, 4, 3, 3}, opts = {groups = 2, stride = 2, padding = 1}},
      {x = {300, 3, 16, 16}, w = {4, 3, 3, 3}, opts = {}}, -- several chunks at 1 thread
      {x = {100, 16, 32, 32}, w = {8, 16, 3, 3}, opts = {padding = 1}}, -- and at 2 threads
    }
    for _, c in ipairs(cases) do
      local x, w, b = lunar.randn(c.x), lunar.randn(c.w), lunar.randn(c.w[1])
      local g
      local function run(threads)
        lunar.set_num_threads(threads)
        local xl, wl, bl = x:clone():requires_grad_(), w:clone():requires_grad_(),
          b:clone():requires_grad_()
        local y = lunar.conv2d(xl, wl, bl, c.opts)
        g = g or lunar.randn_like(y)
        y:backward(g)
        return {y, xl.grad, wl.grad, bl.grad}
      end
      local one, two = run(1), run(2)
      lunar.set_num_threads(saved)
      for i = 1, 4 do H.close(two[i], one[i], 1e-4, 1e-4) end
    end
  end)
end)

describe("conv bad input", function()
  it("names the op and the shapes", function()
    local x, w = lunar.randn(2, 3, 5, 5), lunar.randn(4, 3, 3, 3)
    H.raises(function() lunar.conv2d(lunar.randn(5, 5), w) end, "conv2d", "[5, 5]")
    H.raises(function() lunar.conv2d(x, lunar.randn(4, 2, 3, 3)) end, "conv2d",
      "[2, 3, 5, 5]", "[4, 2, 3, 3]")
    H.raises(function() lunar.conv2d(x, lunar.randn(4, 3, 7, 7)) end, "conv2d", "larger")
    H.raises(function() lunar.conv2d(x, lunar.randn(4, 1, 3, 3), nil, {groups = 2}) end,
      "conv2d", "groups 2 must divide")
    H.raises(function() lunar.conv2d(x, w, lunar.randn(3)) end, "conv2d", "bias")
    H.raises(function() lunar.conv2d(x, w, nil, {stride = 2, padding = "same"}) end, "same")
    H.raises(function() lunar.conv2d(x, w, nil, {padding = "full"}) end, "padding")
    H.raises(function() lunar.conv1d(x, w) end, "conv1d", "[2, 3, 5, 5]")
    H.raises(function() lunar.max_pool2d(x, 7) end, "max_pool2d", "larger")
    H.raises(function() lunar.max_pool2d(x, 2, {padding = 2}) end, "max_pool2d", "half")
    H.raises(function() lunar.avg_pool2d(lunar.randn(5), 2) end, "avg_pool2d", "[5]")
    H.raises(function() lunar.conv2d(x, w:to("float64")) end, "conv2d", "float64")
    H.raises(function() lunar.conv_transpose2d(x, lunar.randn(2, 3, 3, 3)) end,
      "conv_transpose2d", "[2, 3, 3, 3]")
  end)
end)

describe("nn conv and pooling layers", function()
  it("Conv2d: shapes, parameter counts, init bounds, repr", function()
    local c = nn.Conv2d(3, 16, 3, {stride = 2, padding = 1})
    assert.same({16, 3, 3, 3}, c.weight:size())
    assert.same({2, 16, 4, 4}, c(lunar.randn(2, 3, 8, 8)):size())
    local n = 0
    for _, p in ipairs(c:parameters()) do n = n + p:numel() end
    assert.equal(16 * 3 * 9 + 16, n)
    local bound = 1 / math.sqrt(27)
    assert.is_true(c.weight:abs():max():item() <= bound)
    assert.equal("Conv2d(3, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))",
      tostring(c))
    local d = nn.Conv2d(4, 8, {3, 1}, {groups = 4, bias = false})
    assert.is_nil(d.bias)
    assert.same({8, 1, 3, 1}, d.weight:size())
    assert.equal("Conv2d(4, 8, kernel_size=(3, 1), stride=(1, 1), groups=4, bias=False)",
      tostring(d))
  end)
  it("Conv1d and ConvTranspose2d", function()
    local c = nn.Conv1d(2, 4, 3, {padding = "same"})
    assert.same({3, 4, 10}, c(lunar.randn(3, 2, 10)):size())
    local t = nn.ConvTranspose2d(4, 6, 2, {stride = 2, groups = 2})
    assert.same({4, 3, 2, 2}, t.weight:size())
    assert.same({1, 6, 10, 12}, t(lunar.randn(1, 4, 5, 6)):size())
    assert.is_true(t.weight:abs():max():item() <= 1 / math.sqrt(3 * 4))
  end)
  it("pooling layers", function()
    local x = lunar.randn(2, 3, 9, 8)
    assert.same({2, 3, 4, 4}, nn.MaxPool2d(2)(x):size())
    assert.same({2, 3, 5, 4}, nn.MaxPool2d(2, {ceil_mode = true})(x):size())
    assert.same({2, 3, 5, 4}, nn.AvgPool2d(3, {stride = 2, padding = 1})(x):size())
    assert.same({2, 3, 4, 4}, nn.LPPool2d(2, 2)(x):size())
    assert.same({2, 3, 3, 2}, nn.AdaptiveAvgPool2d({3, 2})(x):size())
    H.close(nn.GlobalAvgPool2d()(x), x:mean({3, 4}), 1e-6, 1e-6)
    assert.same({2, 3}, nn.GlobalAvgPool2d()(x):size())
    local x1 = lunar.randn(2, 3, 9)
    assert.same({2, 3, 4}, nn.MaxPool1d(2)(x1):size())
    assert.same({2, 3, 3}, nn.AvgPool1d(3)(x1):size())
    local v, i = nn.MaxPool2d(2, {return_indices = true})(x)
    H.close(v, x:reshape(2, 3, 72):gather(3, i:reshape(2, 3, 16)):reshape(2, 3, 4, 4), 0, 0)
  end)
  it("a LeNet-5-like stack maps [2, 1, 28, 28] to [2, 10]", function()
    local m = nn.Sequential(
      nn.Conv2d(1, 6, 5, {padding = 2}), nn.MaxPool2d(2),
      nn.Conv2d(6, 16, 5), nn.MaxPool2d(2))
    local h = m(lunar.randn(2, 1, 28, 28))
    assert.same({2, 16, 5, 5}, h:size())
    local fc = nn.Linear(16 * 5 * 5, 10)
    local y = fc(h:reshape(2, 400))
    assert.same({2, 10}, y:size())
    y:sum():backward()
    assert.same({6, 1, 5, 5}, m["1"].weight.grad:size())
  end)
end)
