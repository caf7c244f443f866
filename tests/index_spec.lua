-- The indexing family and the t[...] syntax; values and gradients from PyTorch
-- (tests/fixtures/gen_index.py), finite-difference gradient checks, and bad input.
local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("index")

local function check(fn, inputs)
  local ok, msg = lunar.autograd.gradcheck(fn, inputs)
  assert(ok, msg)
end

local function leaf(t)
  return lunar.tensor(t, {dtype = "float64", requires_grad = true})
end

-- value and gradient of sum(fn(x) * w) for the fixture's x
local function value_and_grad(fn, w)
  local x = fx.x:clone():requires_grad_()
  local y = fn(x)
  ;(y * w):sum():backward()
  return y, x.grad
end

describe("gather, index_select, masked_select", function()
  it("match PyTorch's values and gradients", function()
    local y, g = value_and_grad(function(x) return x:gather(2, fx.gather_index) end, fx.gather_w)
    H.close(y, fx.gather_y)
    H.close(g, fx.gather_grad)
    y, g = value_and_grad(function(x) return x:index_select(1, fx.select_index) end, fx.select_w)
    H.close(y, fx.select_y)
    H.close(g, fx.select_grad)
    y, g = value_and_grad(function(x) return x:masked_select(fx.mask) end, fx.mask_w)
    H.close(y, fx.mask_y)
    H.close(g, fx.mask_grad)
  end)

  it("accept int32 indices and 0-d index_select indices", function()
    local x = lunar.tensor{{1, 2}, {3, 4}}
    assert.are.same({{2, 1}, {3, 3}},
      x:gather(2, lunar.tensor({{2, 1}, {1, 1}}, {dtype = "int32"})):totable())
    assert.are.same({{3, 4}}, x:index_select(1, lunar.tensor(2)):totable())
    assert.are.same({1, 4}, lunar.masked_select(x, lunar.tensor{{true, false}, {false, true}})
      :totable())
  end)

  it("masked_select broadcasts x and mask", function()
    local x = lunar.tensor{1, 2, 3}
    local m = lunar.tensor{{true}, {false}, {true}}
    assert.are.same({1, 2, 3, 1, 2, 3}, x:masked_select(m):totable())
  end)

  it("pass gradient checks", function()
    local idx = lunar.tensor{{2, 2, 1}, {1, 3, 3}}
    check(function(x) return x:gather(2, idx) end, {leaf{{1, 2, 3}, {4, 5, 6}}})
    check(function(x) return x:gather(1, idx) end, {leaf{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}})
    check(function(x) return x:index_select(2, lunar.tensor{3, 1, 3}) end,
      {leaf{{1, 2, 3}, {4, 5, 6}}})
    local m = lunar.tensor{{true, false, true}, {false, false, true}}
    check(function(x) return x:masked_select(m) end, {leaf{{1, 2, 3}, {4, 5, 6}}})
  end)
end)

describe("scatter and index_add", function()
  it("match PyTorch, out of place and in place", function()
    local base = fx.scatter_base
    H.close(base:scatter(1, fx.scatter_index, fx.scatter_src), fx.scatter_y)
    H.close(base:scatter_add(1, fx.scatter_index, fx.scatter_src), fx.scatter_add_y)
    H.close(base:scatter_add(2, fx.scatter2_index, fx.scatter2_src), fx.scatter2_add_y)
    H.close(base:index_add(2, fx.index_add_index, fx.index_add_src, {alpha = 2.5}),
      fx.index_add_y)
    local x = base:clone()
    x:scatter_(1, fx.scatter_index, fx.scatter_src)
    H.close(x, fx.scatter_y)
    x = base:clone()
    x:scatter_add_(1, fx.scatter_index, fx.scatter_src)
    H.close(x, fx.scatter_add_y)
    x = base:clone()
    x:index_add_(2, fx.index_add_index, fx.index_add_src, {alpha = 2.5})
    H.close(x, fx.index_add_y)
    H.close(base, lunar.arange(15, {dtype = "float64"}):view(3, 5)) -- untouched
  end)

  it("scatter a number; index_copy_ and index_fill_", function()
    local x = lunar.zeros(2, 3)
    assert.are.same({{0, 7, 0}, {7, 0, 0}}, x:scatter(2, lunar.tensor{{2}, {1}}, 7):totable())
    x:index_copy_(2, lunar.tensor{3, 1}, lunar.tensor{{1, 2}, {3, 4}})
    assert.are.same({{2, 0, 1}, {4, 0, 3}}, x:totable())
    x:index_fill_(1, lunar.tensor{2}, -1)
    assert.are.same({{2, 0, 1}, {-1, -1, -1}}, x:totable())
  end)

  it("pass gradient checks for both inputs", function()
    local idx = lunar.tensor{{2, 1, 3}, {3, 2, 1}}
    local src = leaf{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}
    check(function(x, s) return x:scatter(1, idx, s) end,
      {leaf{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}, src})
    check(function(x, s) return x:scatter_add(2, lunar.tensor{{1, 1}, {3, 1}}, s) end,
      {leaf{{1, 2, 3}, {4, 5, 6}}, leaf{{1, 2}, {3, 4}}})
    check(function(x, s) return x:index_add(1, lunar.tensor{2, 2, 1}, s, {alpha = -1.5}) end,
      {leaf{{1, 2}, {3, 4}}, leaf{{1, 2}, {3, 4}, {5, 6}}})
  end)

  it("scatter's gradient: zero where x was overwritten, gathered for src", function()
    local x, s = leaf{1, 2, 3}, leaf{10, 20}
    local y = x:scatter(1, lunar.tensor{3, 1}, s)
    ;(y * lunar.tensor({1, 2, 3}, {dtype = "float64"})):sum():backward()
    assert.are.same({0, 2, 0}, x.grad:totable())
    assert.are.same({3, 1}, s.grad:totable())
  end)
end)

describe("masked_fill", function()
  it("fills where the mask is true, broadcasting the mask", function()
    local x = lunar.tensor{{1.0, 2}, {3, 4}}
    H.close(x:masked_fill(lunar.tensor{true, false}, -1), {{-1, 2}, {-1, 4}})
    x:masked_fill_(lunar.tensor{{false, true}, {true, false}}, 0)
    H.close(x, {{1, 0}, {0, 4}})
  end)

  it("passes gradient checks for x and the value", function()
    local m = lunar.tensor{{true, false}, {false, true}}
    check(function(x, v) return x:masked_fill(m, v) end,
      {leaf{{1, 2}, {3, 4}}, lunar.tensor(0.5, {dtype = "float64", requires_grad = true})})
  end)
end)

describe("sort, topk", function()
  it("match PyTorch's values, indices and gradients", function()
    local idx
    local y, g = value_and_grad(function(x)
      local v, i = x:sort(2, {descending = true})
      idx = i
      return v
    end, fx.sort_w)
    H.close(y, fx.sort_y)
    H.close(g, fx.sort_grad)
    assert.are.same(fx.sort_index:totable(), idx:totable())
    local v, i = fx.x:sort(1)
    H.close(v, fx.sort1_y)
    assert.are.same(fx.sort1_index:totable(), i:totable())
    y, g = value_and_grad(function(x)
      local tv, ti = x:topk(2, 2)
      idx = ti
      return tv
    end, fx.topk_w)
    H.close(y, fx.topk_y)
    H.close(g, fx.topk_grad)
    assert.are.same(fx.topk_index:totable(), idx:totable())
    v, i = fx.x:topk(3, {largest = false})
    H.close(v, fx.topk_small_y)
    assert.are.same(fx.topk_small_index:totable(), i:totable())
  end)

  it("is stable in both directions", function()
    local _, i = fx.ties:sort({stable = true})
    assert.are.same(fx.ties_index:totable(), i:totable())
    _, i = fx.ties:sort(1, true)
    assert.are.same(fx.ties_desc_index:totable(), i:totable())
  end)

  it("puts NaN last ascending and first descending", function()
    local v = lunar.tensor{2, 0 / 0, 1}:sort()
    local t = v:totable()
    assert.are.same({1, 2}, {t[1], t[2]})
    assert.is_true(t[3] ~= t[3])
    v = lunar.tensor{2, 0 / 0, 1}:sort(1, true):totable()
    assert.is_true(v[1] ~= v[1])
  end)

  it("sorts every dtype and strided views", function()
    local v, i = lunar.tensor{{3, 1, 2}, {9, 7, 8}}:t():sort(1)
    assert.are.same({{1, 7}, {2, 8}, {3, 9}}, v:totable())
    assert.are.same({{2, 2}, {3, 3}, {1, 1}}, i:totable())
    assert.are.same({false, true, true},
      lunar.tensor{true, false, true}:sort():totable())
  end)

  it("pass gradient checks", function()
    local x = leaf{{3, 1, 2, 5}, {0.5, 4, -1, 2}}
    check(function(t) return (t:sort(2)) end, {x})
    check(function(t) return (t:sort(1, true)) end, {x})
    check(function(t) return (t:topk(2)) end, {x})
    check(function(t) return (t:topk(1, 1, {largest = false})) end, {x})
  end)
end)

describe("unique, one_hot, nonzero", function()
  it("match PyTorch", function()
    local v, inv, cnt = fx.unique_x:unique({return_inverse = true, return_counts = true})
    assert.are.same(fx.unique_values:totable(), v:totable())
    assert.are.same(fx.unique_inverse:totable(), inv:totable())
    assert.are.same(fx.unique_counts:totable(), cnt:totable())
    local c
    v, c = fx.unique_x:unique({return_counts = true})
    assert.are.same(fx.unique_counts:totable(), c:totable())
    assert.are.same(fx.one_hot:totable(), lunar.one_hot(fx.labels, 5):totable())
    assert.are.same(fx.nz:totable(), fx.nz_x:nonzero():totable())
    assert.are.equal(3, fx.nz_x:count_nonzero())
  end)

  it("one_hot infers the number of classes; unique of floats", function()
    assert.are.same({{0, 1}, {1, 0}}, lunar.one_hot(lunar.tensor{2, 1}):totable())
    H.close(lunar.tensor{0.5, -1, 0.5, 2}:unique(), {-1, 0.5, 2})
    assert.are.same({0, 1}, lunar.zeros(0):nonzero():size())
  end)
end)

describe("t[...] syntax", function()
  it("selects with integers, ranges and {}", function()
    local x = lunar.arange(24):view(2, 3, 4)
    assert.are.equal(23, x[{2, 3, 4}])
    assert.are.equal(23, x[{-1, -1, -1}])
    assert.are.same({4, 5, 6, 7}, x[{1, 2}]:totable())
    assert.are.same({{5, 6}, {9, 10}}, x[{1, {2, 3}, {2, 3}}]:totable())
    assert.are.same({{1, 5, 9}, {13, 17, 21}}, x[{ {}, {}, 2 }]:totable())
    assert.are.same({1, 1, 4}, x[{ {2}, {-1} }]:size())
    assert.are.same({2, 3, 4}, x[{}]:size())
    assert.are.same({{3, 7, 11}}, x[{ {1}, {}, -1 }]:totable())
    assert.is_true(x[{1, {2, 3}}]:is_same_storage(x))
    assert.are.equal(14, x[2][1][3])
    assert.are.equal(14, x[{4 / 2, 1.0, 3}]) -- integral floats count as integers
    H.raises(function() return x[{1, 1.5}] end, "expected an integer")
  end)

  it("selects with masks and index tensors", function()
    local x = lunar.tensor{{1, 2}, {3, 4}, {5, 6}}
    assert.are.same({3, 4, 5, 6}, x[x:gt(2)]:totable())
    assert.are.same({{5, 6}, {1, 2}, {5, 6}}, x[lunar.tensor{3, 1, 3}]:totable())
    assert.are.same({{2, 1}, {4, 3}, {6, 5}}, x[{ {}, lunar.tensor{2, 1} }]:totable())
    assert.are.same({6, 5}, x[{3, lunar.tensor{2, 1} }]:totable())
    H.raises(function() x[{ {}, lunar.tensor{1} }] = 0 end, "index_copy_")
  end)

  it("assigns through views, masks and index tensors", function()
    local x = lunar.zeros(3, 4)
    x[{2, {2, 3}}] = 5
    x[{ {}, 4 }] = lunar.tensor{1, 2, 3}
    x[{ {3}, {1, 2} }] = lunar.tensor{{7, 8}}
    assert.are.same({{0, 0, 0, 1}, {0, 5, 5, 2}, {7, 8, 0, 3}}, x:totable())
    x[x:eq(0)] = -1
    assert.are.same({{-1, -1, -1, 1}, {-1, 5, 5, 2}, {7, 8, -1, 3}}, x:totable())
    x[x:lt(0)] = lunar.tensor{10, 20, 30, 40, 50}
    assert.are.same({{10, 20, 30, 1}, {40, 5, 5, 2}, {7, 8, 50, 3}}, x:totable())
    x[lunar.tensor{3, 1}] = lunar.tensor{{1, 1, 1, 1}, {2, 2, 2, 2}}
    x[lunar.tensor{2}] = 0
    assert.are.same({{2, 2, 2, 2}, {0, 0, 0, 0}, {1, 1, 1, 1}}, x:totable())
    local t = lunar.zeros(2, 3):t() -- a strided tensor under a mask
    t[lunar.tensor{{true, false}, {false, false}, {false, true}}] = lunar.tensor{4, 9}
    assert.are.same({{4, 0}, {0, 0}, {0, 9}}, t:totable())
  end)

  it("tracks gradients through indexed views", function()
    check(function(x) return x[{ {2, 3}, -1 }] * 2 end, {leaf{{1, 2}, {3, 4}, {5, 6}}})
    check(function(x) return x[{2, {1, 2}}] end, {leaf{{1, 2}, {3, 4}, {5, 6}}})
    check(function(x) return x[lunar.tensor{3, 3, 1}] end, {leaf{{1, 2}, {3, 4}, {5, 6}}})
    check(function(x) return x[{ {2, 3}, lunar.tensor{2, 2} }] end, {leaf{{1, 2}, {3, 4}, {5, 6}}})
  end)
end)

describe("bad input", function()
  local x = lunar.tensor{{1.0, 2, 3, 4}, {5, 6, 7, 8}}

  it("names the op, the index and the size for out-of-range indices", function()
    H.raises(function() x:gather(2, lunar.tensor{{5}}) end, "gather", "index 5", "size 4")
    H.raises(function() x:gather(1, lunar.tensor{{0}}) end, "gather", "index 0", "size 2")
    H.raises(function() x:index_select(1, lunar.tensor{1, 3}) end, "index_select", "index 3",
      "size 2")
    H.raises(function() x:index_add(2, lunar.tensor{9}, lunar.ones(2, 1)) end, "index_add",
      "index 9", "size 4")
    H.raises(function() lunar.one_hot(lunar.tensor{1, 6}, 5) end, "one_hot", "class 6", "5")
    H.raises(function() return x[3] end, "index 3", "size 2")
    H.raises(function() return x[{1, 5}] end, "index 5", "size 4")
    H.raises(function() return x[{ {}, {2, 6} }] end, "range", "size 4")
    H.raises(function() return x[{1, 1, 1}] end, "3 indices for a 2-d tensor")
    H.raises(function() return x[lunar.tensor{3}] end, "index_select", "index 3")
  end)

  it("writes nothing when an index is out of range", function()
    local t = lunar.zeros(2, 3)
    H.raises(function() t:scatter_(2, lunar.tensor{{1, 4}}, lunar.ones(1, 2)) end, "scatter_",
      "index 4", "size 3")
    H.raises(function() t[lunar.tensor{1, 3}] = 1 end, "index_copy_", "index 3", "size 2")
    assert.are.same({{0, 0, 0}, {0, 0, 0}}, t:totable())
  end)

  it("refuses wrong index dtypes", function()
    H.raises(function() x:gather(2, lunar.tensor{{1.0}}) end, "gather", "int64", "float32")
    H.raises(function() x:index_select(1, lunar.tensor{true}) end, "index_select", "bool")
    H.raises(function() return x[lunar.tensor{1.5}] end, "index", "float32")
    H.raises(function() return x[1.5] end, "index", "number")
  end)

  it("refuses masks of the wrong shape or dtype", function()
    H.raises(function() x:masked_fill(lunar.tensor{true, false}, 0) end, "masked_fill",
      "mask [2]", "[2, 4]")
    H.raises(function() x:masked_fill(lunar.ones(2, 4), 0) end, "masked_fill", "bool", "float32")
    H.raises(function() return x[lunar.tensor{true, false, true, true}] end, "mask [4]",
      "[2, 4]")
    H.raises(function() x:masked_select(lunar.tensor{true, false, true}) end, "masked_select",
      "[3]", "[2, 4]")
    H.raises(function() lunar.zeros(2)[lunar.tensor{true, false}] = lunar.ones(3) end,
      "masked_scatter_", "[3]")
  end)

  it("refuses bad shapes and k", function()
    H.raises(function() x:topk(5) end, "topk", "k = 5", "size 4")
    H.raises(function() x:topk(-1) end, "topk", "k = -1")
    H.raises(function() x:gather(2, lunar.tensor{1}) end, "gather", "same number of dims")
    H.raises(function() x:gather(2, lunar.tensor{{1}, {1}, {1}}) end, "gather", "larger")
    H.raises(function() x:scatter(2, lunar.tensor{{1, 2}}, lunar.ones(1, 1)) end, "scatter",
      "larger than src")
    H.raises(function() x:index_add(2, lunar.tensor{1}, lunar.ones(2, 2)) end, "index_add",
      "[2, 2]", "[2, 4]")
    H.raises(function() x:index_select(1, lunar.tensor{{1}}) end, "index_select", "1-d")
    H.raises(function() x:gather(3, lunar.tensor{{1}}) end, "dim 3")
  end)

  it("refuses assignment into tensors that require grad", function()
    local w = leaf{1, 2, 3}
    H.raises(function() w[1] = 0 end, "requires grad")
    H.raises(function() w[{ {1, 2} }] = 0 end, "requires grad")
    H.raises(function() w:scatter_(1, lunar.tensor{1}, lunar.ones(1)) end, "requires grad")
    lunar.no_grad(function() w[1] = 5 end)
    assert.are.same({5, 2, 3}, w:totable())
  end)
end)
