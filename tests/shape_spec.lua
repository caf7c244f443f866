local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("shape")

local function against_torch(name, keys, fn, prep)
  H.against_torch(fx, name, keys, fn, prep, 1e-6)
end
local gradcheck, leaf = H.gradcheck, H.leaf

-- the same values through a non-contiguous view
local function strided(x)
  local nd = x:dim()
  return x:transpose(1, nd):contiguous():transpose(1, nd)
end

local function scaled_cat(parts, dim)
  local s = {}
  for i, p in ipairs(parts) do s[i] = p * i end
  return lunar.cat(s, dim)
end

describe("shape ops against PyTorch (values and gradients)", function()
  it("cat and stack", function()
    against_torch("cat", {"a", "b", "c"}, function(a, b, c) return lunar.cat({a, b, c}, 2) end)
    against_torch("cat", {"a", "b", "c"}, function(a, b, c) return lunar.cat({a, b, c}, -1) end,
      strided)
    against_torch("stack", {"a", "b"}, function(a, b) return lunar.stack({a, b}, 2) end)
  end)

  it("split and chunk return views with gradients", function()
    against_torch("split", {"x"}, function(x) return scaled_cat(x:split(2, 1), 1) end)
    against_torch("chunk", {"x"}, function(x) return scaled_cat(x:chunk(2, 2), 2) end)
    local x = lunar.arange(10):view(5, 2)
    local p = x:split({1, 4}, 1)
    assert.are.equal(2, #p)
    assert.is_true(p[2]:is_same_storage(x))
    assert.are.same({{2, 3}, {4, 5}, {6, 7}, {8, 9}}, p[2]:totable())
    assert.are.equal(3, #lunar.split(lunar.zeros(7), 3))
    assert.are.same({3, 3, 1}, {#lunar.zeros(7):split(3)[1], #lunar.zeros(7):split(3)[2],
      #lunar.zeros(7):split(3)[3]})
    assert.are.equal(3, #lunar.zeros(6):chunk(4)) -- like PyTorch: pieces of ceil(6 / 4)
  end)

  it("flip and roll", function()
    against_torch("flip", {"x"}, function(x) return x:flip(1, 3) end)
    against_torch("flip", {"x"}, function(x) return x:flip({1, -1}) end, strided)
    against_torch("roll", {"x"}, function(x) return x:roll({1, -2}, {1, 2}) end)
    against_torch("roll", {"x"}, function(x) return x:roll({1, -2}, {1, 2}) end, strided)
    against_torch("rollflat", {"x"}, function(x) return x:roll(5) end)
  end)

  it("repeat_tensor (Torch's repeat) and tile", function()
    against_torch("repeat", {"x"}, function(x) return x:repeat_tensor(2, 3, 2, 2) end)
    against_torch("repeat", {"x"}, function(x) return x:repeat_tensor({2, 3, 2, 2}) end, strided)
    against_torch("tile", {"x"}, function(x) return x:tile(2) end)
    assert.are.same({{1, 2, 1, 2}, {1, 2, 1, 2}}, lunar.tensor{1, 2}:tile(2, 2):totable())
    assert.are.same({0, 3}, lunar.ones(2, 3):repeat_tensor(0, 1):size())
  end)

  it("tril and triu", function()
    against_torch("tril", {"x"}, function(x) return x:tril(-1) end)
    against_torch("triu", {"x"}, function(x) return x:triu(1) end, strided)
    assert.are.same({{1, 0}, {1, 1}}, lunar.ones(2, 2, {dtype = "int64"}):tril():totable())
  end)

  it("pad: constant (also negative), reflect, replicate", function()
    against_torch("padc", {"x"}, function(x) return lunar.pad(x, {1, 2, 0, 1}, {value = 1.5}) end)
    against_torch("padneg", {"x"}, function(x) return x:pad({-1, 2}) end)
    against_torch("padreflect", {"x"}, function(x)
      return lunar.pad(x, {1, 2, 2, 1}, {mode = "reflect"})
    end)
    against_torch("padreflect", {"x"}, function(x)
      return lunar.pad(x, {1, 2, 2, 1}, {mode = "reflect"})
    end, strided)
    against_torch("padreplicate", {"x"}, function(x)
      return lunar.pad(x, {2, 1, 1, 2}, {mode = "replicate"})
    end)
  end)
end)

describe("shape identities", function()
  it("split then cat gives the input back; cat promotes dtypes", function()
    local x = lunar.arange(24):view(2, 3, 4)
    assert.are.same(x:totable(), lunar.cat(x:split(3, 3), 3):totable())
    assert.are.same(x:totable(), lunar.cat(x:chunk(3, 2), 2):totable())
    local c = lunar.cat({lunar.ones(1, {dtype = "int64"}), lunar.tensor{2.5}}, 1)
    assert.are.equal("float32", c:dtype())
    H.close(c, {1, 2.5})
  end)

  it("stack equals cat of unsqueezed tensors, at every position", function()
    local a, b = lunar.arange(6):view(2, 3), lunar.arange(6, 12):view(2, 3)
    for d = 1, 3 do
      assert.are.same(lunar.cat({a:unsqueeze(d), b:unsqueeze(d)}, d):totable(),
        lunar.stack({a, b}, d):totable())
    end
  end)

  it("roll by the size is the identity; flip twice is the identity", function()
    local x = lunar.arange(12):view(3, 4)
    assert.are.same(x:totable(), x:roll({3, -8}, {1, 2}):totable())
    assert.are.same(x:totable(), x:flip(1, 2):flip(2, 1):totable())
    assert.are.same(x:roll(1, 1):roll(1, 1):totable(), x:roll(2, 1):totable())
  end)

  it("tril + triu(1) is the input, on batches", function()
    local x = lunar.arange(24):view(2, 3, 4)
    for k = -3, 3 do
      assert.are.same(x:totable(), (x:tril(k) + x:triu(k + 1)):totable())
    end
  end)

  it("repeat over more than three dims matches tiling one dim at a time", function()
    local x = lunar.arange(24):view(2, 3, 4)
    local a = x:repeat_tensor(2, 2, 3, 2)
    local b = x:unsqueeze(1):repeat_tensor(2, 1, 1, 1):repeat_tensor(1, 2, 1, 1)
      :repeat_tensor(1, 1, 3, 1):repeat_tensor(1, 1, 1, 2)
    assert.are.same({2, 4, 9, 8}, a:size())
    assert.are.same(b:totable(), a:totable())
  end)
end)

describe("shape gradcheck (float64)", function()
  it("cat, stack, split, chunk", function()
    gradcheck(function(a, b) return lunar.cat({a, b, a}, 2) end, {leaf(2, 3), leaf(2, 2)})
    gradcheck(function(a, b) return lunar.stack({a, b}, 3) end, {leaf(2, 3), leaf(2, 3)})
    gradcheck(function(x) return scaled_cat(x:split({2, 1, 2}, 2), 2) end, {leaf(3, 5)})
    gradcheck(function(x) return scaled_cat(x:chunk(3, 1), 1) end, {leaf(5, 2)})
  end)

  it("flip, roll, repeat_tensor, tile", function()
    gradcheck(function(x) return x:flip(2, 3) end, {leaf(2, 3, 4)})
    gradcheck(function(x) return x:roll({2, -1}, {1, 3}) end, {leaf(3, 2, 4)})
    gradcheck(function(x) return x:roll(-3) end, {leaf(2, 3)})
    gradcheck(function(x) return x:repeat_tensor(2, 1, 3, 2) end, {leaf(2, 1, 2)})
    gradcheck(function(x) return x:t():tile(3) end, {leaf(2, 3)})
  end)

  it("tril, triu", function()
    gradcheck(function(x) return x:tril(1) end, {leaf(2, 3, 4)})
    gradcheck(function(x) return x:triu(-1) end, {leaf(4, 3)})
  end)

  it("pad in every mode", function()
    gradcheck(function(x) return lunar.pad(x, {1, 2, 2, 0}, {value = 3}) end, {leaf(2, 3, 3)})
    gradcheck(function(x) return lunar.pad(x, {-1, 1, 1, -2}) end, {leaf(2, 3, 3)})
    gradcheck(function(x) return lunar.pad(x, {2, 1, 1, 2}, {mode = "reflect"}) end,
      {leaf(2, 3, 4)})
    gradcheck(function(x) return lunar.pad(x, {1, 1, 2, 2, 1, 0}, {mode = "reflect"}) end,
      {leaf(2, 3, 3)})
    gradcheck(function(x) return lunar.pad(x, {2, 3, 1, 2}, {mode = "replicate"}) end,
      {leaf(2, 3, 2)})
  end)
end)

describe("shape ops bad input", function()
  it("cat names the tensor index and the shapes", function()
    H.raises(function() lunar.cat({lunar.ones(2, 3), lunar.ones(2, 3), lunar.ones(3, 4)}, 2) end,
      "cat: tensor 3 has shape [3, 4] but tensor 1 has [2, 3]", "except in dim 2")
    H.raises(function() lunar.cat({lunar.ones(2, 3), lunar.ones(3)}, 1) end, "tensor 2", "[3]")
    H.raises(function() lunar.cat({lunar.ones(2), 5}) end, "cat", "element 2")
    H.raises(function() lunar.cat({}) end, "cat", "non-empty")
    H.raises(function() lunar.stack({lunar.ones(2, 3), lunar.ones(3, 2)}) end,
      "stack: tensor 2 has shape [3, 2] but tensor 1 has [2, 3]")
  end)

  it("bad dims", function()
    H.raises(function() lunar.cat({lunar.ones(2, 3)}, 3) end, "cat", "dim 3 out of range")
    H.raises(function() lunar.stack({lunar.ones(2, 3)}, 4) end, "stack", "dim 4 out of range")
    H.raises(function() lunar.ones(2, 3):flip(0) end, "flip", "1-based")
    H.raises(function() lunar.ones(2, 3):split(2, 3) end, "split", "dim 3")
    H.raises(function() lunar.ones(2, 3):roll({1, 2}, {1}) end, "roll", "2 shifts for 1 dims")
    H.raises(function() lunar.ones(2, 3):roll(1, 5) end, "roll", "dim 5")
    H.raises(function() lunar.ones(3):tril() end, "tril", "2 dims", "[3]")
  end)

  it("bad sizes", function()
    H.raises(function() lunar.ones(5):split({2, 2}) end, "split", "add up to 4", "size 5")
    H.raises(function() lunar.ones(5):split(0) end, "split", "positive")
    H.raises(function() lunar.ones(5):chunk(0) end, "chunk", "positive")
    H.raises(function() lunar.ones(2, 3):repeat_tensor(2) end, "repeat", "1 repeats", "2-d")
  end)

  it("pad: reflect larger than the input, bad counts and modes", function()
    H.raises(function() lunar.pad(lunar.ones(2, 3), {3, 0}, {mode = "reflect"}) end,
      "pad: reflect padding (3, 0) must be smaller than dim 2 of [2, 3]")
    H.raises(function() lunar.pad(lunar.ones(2, 3), {1, 1, 2, 2}, {mode = "reflect"}) end,
      "reflect", "dim 1 of [2, 3]")
    H.raises(function() lunar.pad(lunar.ones(2, 3), {1, 1, 1}) end, "pad", "3 pad values")
    H.raises(function() lunar.pad(lunar.ones(3), {1, 1, 1, 1}) end, "pad", "4 pad values")
    H.raises(function() lunar.pad(lunar.ones(3), {-1, 0}, {mode = "replicate"}) end,
      "pad", "negative", "replicate")
    H.raises(function() lunar.pad(lunar.ones(3), {-2, -2}) end, "pad", "negative")
    H.raises(function() lunar.pad(lunar.ones(3), {1, 1}, {mode = "circular"}) end,
      "pad", "circular")
  end)
end)
