local lunar = require("lunar")
local H = require("tests.helper")

-- A reference of the stream contract (core/philox.h) in plain Lua over lunar.philox: an
-- OpenCL kernel has to produce these same numbers.
local function block(seed, j)
  return {lunar.philox({j & 0xffffffff, j >> 32, 0, 0}, {seed & 0xffffffff, seed >> 32})}
end
local function u64(b, k) return b[2 * k + 1] | (b[2 * k + 2] << 32) end
local function mulhi64(a, b) -- the high 64 bits of the unsigned product
  local a0, a1, b0, b1 = a & 0xffffffff, a >> 32, b & 0xffffffff, b >> 32
  local p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
  local mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff)
  return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
end
local ref = {}
function ref.uniform32(seed, offset, i)
  return (block(seed, offset + i // 4)[i % 4 + 1] >> 8) * 2.0^-24
end
function ref.uniform64(seed, offset, i)
  return (u64(block(seed, offset + i // 2), i % 2) >> 11) * 2.0^-53
end
function ref.integer(seed, offset, i, low, high)
  return low + mulhi64(u64(block(seed, offset + i // 2), i % 2), high - low)
end
function ref.normal64(seed, offset, i)
  local b = block(seed, offset + i // 2)
  local u1, u2 = ((u64(b, 0) >> 11) + 1) * 2.0^-53, (u64(b, 1) >> 11) * 2.0^-53
  local r = math.sqrt(-2 * math.log(u1))
  return i % 2 == 0 and r * math.cos(2 * math.pi * u2) or r * math.sin(2 * math.pi * u2)
end

local function stats(t)
  local d = t:double()
  return d:mean():item(), d:var():item()
end

local function same(a, b) assert.are.same(a:totable(), b:totable()) end

describe("philox 4x32-10", function()
  it("matches the Random123 known-answer vectors", function()
    assert.are.same({0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {lunar.philox({0, 0, 0, 0}, {0, 0})})
    local m = 0xffffffff
    assert.are.same({0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {lunar.philox({m, m, m, m}, {m, m})})
    assert.are.same({0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
      {lunar.philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0})})
  end)

  it("refuses words outside 32 bits", function()
    H.raises(function() lunar.philox({0, 0, 0, 2^32 | 0}, {0, 0}) end, "philox", "counter")
    H.raises(function() lunar.philox({0, 0, 0, 0}, {0}) end, "philox", "key needs 2 words")
  end)
end)

describe("the stream contract", function()
  it("float32 uniforms take one lane each, four to a counter", function()
    lunar.manual_seed(42)
    local x = lunar.rand(10):totable()
    for i = 0, 9 do assert.are.equal(ref.uniform32(42, 0, i), x[i + 1]) end
    assert.are.equal(3, lunar.get_rng_state().offset) -- ceil(10 / 4)
  end)

  it("float64 uniforms take two lanes (53 bits) each, two to a counter", function()
    lunar.manual_seed(7)
    lunar.rand(3) -- offset 1
    local x = lunar.rand(5, {dtype = "float64"}):totable()
    for i = 0, 4 do assert.are.equal(ref.uniform64(7, 1, i), x[i + 1]) end
    assert.are.equal(4, lunar.get_rng_state().offset)
  end)

  it("integers map a 64-bit draw by multiply-shift", function()
    lunar.manual_seed(123)
    local x = lunar.randint(-5, 1000, 7):totable()
    for i = 0, 6 do assert.are.equal(ref.integer(123, 0, i, -5, 1000), x[i + 1]) end
  end)

  it("float64 normals are Box-Muller pairs of 53-bit uniforms", function()
    lunar.manual_seed(9)
    local x = lunar.randn(6, {dtype = "float64"}):totable()
    for i = 0, 5 do H.close({x[i + 1]}, {ref.normal64(9, 0, i)}, 1e-13, 1e-13) end
  end)

  it("does not depend on threads or on the layout of the tensor", function()
    lunar.manual_seed(5)
    local big = lunar.rand(100003) -- long enough to split across threads
    for _, i in ipairs({0, 1, 50001, 100002}) do
      assert.are.equal(ref.uniform32(5, 0, i), big[i + 1])
    end
    lunar.manual_seed(5)
    same(lunar.rand(8), big:narrow(1, 1, 8))
    -- a transposed (non-contiguous) target is filled in its own row-major order
    local t = lunar.zeros(3, 4):t()
    lunar.manual_seed(11)
    t:uniform_()
    lunar.manual_seed(11)
    same(t, lunar.rand(4, 3))
  end)

  it("pins the first numbers for seed 42 (regression guard)", function()
    lunar.manual_seed(42)
    H.close(lunar.rand(4), {0.612959862, 0.468586504, 0.0732316971, 0.340861499}, 0, 1e-9)
    H.close(lunar.randn(4), {-0.07318151, 0.139137492, -1.10666502, 0.326682955}, 0, 1e-7)
    assert.are.same({65, 77, 67, 37, 83, 23}, lunar.randint(0, 100, 6):totable())
    assert.are.same({6, 4, 5, 3, 1, 2}, lunar.randperm(6):totable())
    H.close(lunar.rand(2, {dtype = "float64"}), {0.13436197013315021, 0.49908123535707971},
      0, 1e-16)
    lunar.manual_seed(42)
    H.close(lunar.randn(2, {dtype = "float64"}), {-0.66537486780734856, 1.036023808655465},
      0, 1e-14)
  end)
end)

describe("generators", function()
  it("repeat a stream for a seed and differ across seeds", function()
    lunar.manual_seed(1)
    local a, an = lunar.rand(50), lunar.randn(3, 4)
    lunar.manual_seed(1)
    same(lunar.rand(50), a)
    same(lunar.randn(3, 4), an)
    lunar.manual_seed(2)
    assert.are_not.same(a:totable(), lunar.rand(50):totable())
    -- successive draws differ
    lunar.manual_seed(1)
    local b1, b2 = lunar.rand(50), lunar.rand(50)
    assert.are_not.same(b1:totable(), b2:totable())
  end)

  it("Generator objects draw the default's stream without disturbing it", function()
    local g = lunar.Generator(42)
    assert.are.equal(42, g:seed())
    local x = lunar.rand(5, {generator = g})
    lunar.manual_seed(42)
    same(x, lunar.rand(5))
    lunar.manual_seed(7)
    local expect = lunar.rand(6)
    lunar.manual_seed(7)
    lunar.randn(100, {generator = g})
    lunar.randint(0, 5, 10, {generator = g})
    lunar.zeros(4):normal_(0, 1, {generator = g})
    same(lunar.rand(6), expect)
    assert.are.same({seed = 42, offset = 2 + 25 + 5 + 1}, g:get_state())
    assert.are.equal(g, g:manual_seed(3))
    assert.are.same({seed = 3, offset = 0}, g:get_state())
    assert.matches("Generator%(seed=3, offset=0%)", tostring(g))
  end)

  it("get_state / set_state reproduce the next draw", function()
    lunar.manual_seed(99)
    lunar.rand(7)
    local s = lunar.get_rng_state()
    assert.are.same({seed = 99, offset = 2}, s)
    local nxt = lunar.randn(9)
    lunar.rand(100)
    lunar.set_rng_state(s)
    same(lunar.randn(9), nxt)
    local g = lunar.Generator(5)
    lunar.rand(3, {generator = g})
    local gs = g:get_state()
    local a = lunar.randperm(20, {generator = g})
    g:set_state(gs)
    same(lunar.randperm(20, {generator = g}), a)
    -- the default generator as an object shares the module-level state
    assert.are.same(lunar.get_rng_state(), lunar.default_generator:get_state())
    lunar.default_generator:manual_seed(17)
    assert.are.equal(17, lunar.initial_seed())
  end)

  it("take any 64-bit seed, negative ones as their two's complement", function()
    lunar.manual_seed(-1)
    local a = lunar.rand(4):totable()
    for i = 0, 3 do assert.are.equal(ref.uniform32(-1, 0, i), a[i + 1]) end
    assert.are.equal(-1, lunar.get_rng_state().seed)
  end)

  it("refuse bad states and options", function()
    H.raises(function() lunar.set_rng_state({seed = 1}) end, "offset")
    H.raises(function() lunar.rand(2, {generator = 5}) end, "lunar.Generator")
    H.raises(function() lunar.rand(2, "x") end, "rand", "options table")
  end)
end)

describe("distributions", function()
  it("uniforms lie in [0, 1) with the right mean and variance", function()
    local g = lunar.Generator(2024)
    for _, dt in ipairs({"float32", "float64"}) do
      local x = lunar.rand(100000, {dtype = dt, generator = g})
      assert.are.equal(dt, x:dtype())
      assert.is_true(x:min():item() >= 0 and x:max():item() < 1)
      local m, v = stats(x)
      assert.is_true(math.abs(m - 0.5) < 0.005, "mean " .. m)       -- 5 sigma
      assert.is_true(math.abs(v - 1 / 12) < 0.0015, "var " .. v)
    end
    local y = lunar.zeros(100000):uniform_(-2, 3, {generator = g})
    assert.is_true(y:min():item() >= -2 and y:max():item() < 3)
    local m, v = stats(y)
    assert.is_true(math.abs(m - 0.5) < 0.03 and math.abs(v - 25 / 12) < 0.04)
  end)

  it("never reaches the upper bound after rounding to float32", function()
    local b = 1 + 2^-23 -- the next float32 after 1: half the draws would round up to it
    local x = lunar.zeros(1000):uniform_(1, b)
    assert.are.equal(1, x:max():item())
    assert.are.same({5, 5}, lunar.zeros(2):uniform_(5, 5):totable())
  end)

  it("normals have the right mean and variance", function()
    local g = lunar.Generator(31337)
    for _, dt in ipairs({"float32", "float64"}) do
      local m, v = stats(lunar.randn(100000, {dtype = dt, generator = g}))
      assert.is_true(math.abs(m) < 0.02, "mean " .. m)            -- 5 sigma
      assert.is_true(math.abs(v - 1) < 0.025, "var " .. v)
    end
    local m, v = stats(lunar.zeros(100000, {dtype = "float64"}):normal_(3, 2, {generator = g}))
    assert.is_true(math.abs(m - 3) < 0.04 and math.abs(v - 4) < 0.1)
    -- no draw is infinite or NaN, even in the tails
    local z = lunar.randn(100000, {generator = g})
    assert.is_true(z:abs():max():item() < 7)
  end)

  it("bernoulli follows p element-wise", function()
    local g = lunar.Generator(8)
    local p = lunar.full({100000}, 0.3)
    local b = lunar.bernoulli(p, {generator = g})
    assert.are.equal("float32", b:dtype())
    assert.is_true(math.abs(b:mean():item() - 0.3) < 0.008)          -- 5 sigma
    local q = lunar.tensor({0, 1, 0, 1, 1, 0}, {dtype = "float64"})
    assert.are.same({0, 1, 0, 1, 1, 0}, lunar.bernoulli(q):totable())
    assert.are.equal("float64", q:bernoulli():dtype())
    local f = lunar.zeros(100000, {dtype = "int32"}):bernoulli(0.75, {generator = g})
    assert.are.equal("int32", f:dtype())
    assert.is_true(math.abs(f:double():mean():item() - 0.75) < 0.007)
    assert.are.same({false, false}, lunar.zeros(2, {dtype = "bool"}):bernoulli_(0):totable())
  end)

  it("bernoulli with a tensor of p draws what t:bernoulli(p) draws", function()
    lunar.manual_seed(3)
    local a = lunar.bernoulli(lunar.full({3, 5}, 0.25))
    lunar.manual_seed(3)
    same(lunar.zeros(3, 5):bernoulli(0.25), a)
  end)

  it("randint covers [low, high) and only that", function()
    local x = lunar.randint(-3, 4, 70000, {generator = lunar.Generator(6)})
    assert.are.equal("int64", x:dtype())
    assert.are.equal(-3, x:min():item())
    assert.are.equal(3, x:max():item())
    local counts = {}
    for _, v in ipairs(x:totable()) do counts[v] = (counts[v] or 0) + 1 end
    for v = -3, 3 do
      assert.is_true(math.abs(counts[v] - 10000) < 500, v .. ": " .. counts[v]) -- 5 sigma
    end
    assert.are.same({0, 0, 0}, lunar.randint(0, 1, 3):totable())
    -- randint(high, {shape}) means low = 0
    local y = lunar.randint(2, {2, 3})
    assert.are.same({2, 3}, y:size())
    assert.is_true(y:min():item() >= 0 and y:max():item() <= 1)
  end)

  it("randperm is a permutation of 1..n", function()
    local n = 1000
    local p = lunar.randperm(n)
    assert.are.equal("int64", p:dtype())
    local seen, moved = {}, 0
    for i, v in ipairs(p:totable()) do
      assert.is_nil(seen[v])
      assert.is_true(v >= 1 and v <= n)
      seen[v] = true
      if v ~= i then moved = moved + 1 end
    end
    assert.is_true(moved > 900) -- a fixed point has probability 1/n each
    assert.are.same({}, lunar.randperm(0):totable())
    assert.are.same({1}, lunar.randperm(1):totable())
    assert.are.equal("int32", lunar.randperm(5, {dtype = "int32"}):dtype())
    -- n - 1 draws of 64 bits, two to a counter
    lunar.manual_seed(0)
    lunar.randperm(10)
    assert.are.equal(5, lunar.get_rng_state().offset)
  end)

  it("gives every ordering of 3 about equally often", function()
    local g, counts = lunar.Generator(77), {}
    for _ = 1, 6000 do
      local k = table.concat(lunar.randperm(3, {generator = g}):totable())
      counts[k] = (counts[k] or 0) + 1
    end
    local orders = 0
    for _, c in pairs(counts) do
      orders = orders + 1
      assert.is_true(math.abs(c - 1000) < 150) -- 5 sigma
    end
    assert.are.equal(6, orders)
  end)
end)

describe("dtypes and options", function()
  it("use the default float dtype and honour dtype options", function()
    assert.are.equal("float32", lunar.rand(2):dtype())
    lunar.set_default_dtype("float64")
    local ok, err = pcall(function()
      assert.are.equal("float64", lunar.rand(2):dtype())
      assert.are.equal("float64", lunar.randn({2, 2}):dtype())
    end)
    lunar.set_default_dtype("float32")
    assert(ok, err)
    assert.are.equal("int32", lunar.randint(0, 9, 3, {dtype = "int32"}):dtype())
    assert.are.same({4}, lunar.randint(0, 256, {4}, {dtype = "uint8"}):size())
    assert.are.same({2, 3, 4}, lunar.rand(2, 3, 4):size())
    assert.are.same({2, 3}, lunar.randn({2, 3}):size())
    assert.are.same({}, lunar.rand():size())
  end)

  it("_like constructors keep the shape and (float) dtype", function()
    local x = lunar.zeros(2, 3, {dtype = "float64"})
    local r = lunar.rand_like(x)
    assert.are.same({2, 3}, r:size())
    assert.are.equal("float64", r:dtype())
    assert.are.equal("float32", lunar.randn_like(x, {dtype = "float32"}):dtype())
    local i = lunar.randint_like(lunar.zeros(4, {dtype = "int32"}), 5, 7)
    assert.are.equal("int32", i:dtype())
    assert.is_true(i:min():item() >= 5 and i:max():item() <= 6)
    assert.are.equal("int64", lunar.randint_like(x, 3):dtype()) -- float x: int64
    H.raises(function() lunar.rand_like(lunar.zeros(2, {dtype = "int64"})) end,
      "uniform_", "float dtype")
    local v = lunar.zeros(6, {dtype = "int64"}):random_(10)
    assert.is_true(v:min():item() >= 0 and v:max():item() <= 9)
  end)

  it("requires_grad makes leaves; in-place fills respect autograd", function()
    local w = lunar.rand(3, {requires_grad = true})
    assert.is_true(w.requires_grad)
    assert.is_true(lunar.randn_like(w, {requires_grad = true}).requires_grad)
    assert.is_false(lunar.randn_like(w).requires_grad)
    H.raises(function() w:normal_() end, "normal_", "requires grad")
    local before = w:totable()
    lunar.no_grad(function() w:uniform_(5, 6) end)
    assert.is_true(w:min():item() >= 5)
    assert.are_not.same(before, w:totable())
  end)
end)

describe("bad input", function()
  it("raises errors that name the function", function()
    H.raises(function() lunar.randint(5, 5, 3) end, "randint", "high (5)", "low (5)")
    H.raises(function() lunar.randint(5, 2, 3) end, "randint", "greater than low")
    H.raises(function() lunar.randint(0, 5, 3, {dtype = "float32"}) end, "randint", "integer dtype")
    H.raises(function() lunar.randint(0, 300, 2, {dtype = "uint8"}) end, "randint", "uint8")
    H.raises(function() lunar.randint(0, 2^60 | 0, 2) end, "randint", "does not fit")
    H.raises(function() lunar.rand(-1) end, "negative size")
    H.raises(function() lunar.randn(2, -3) end, "negative size")
    H.raises(function() lunar.rand(2, {dtype = "int64"}) end, "rand", "float dtype", "[2]")
    H.raises(function() lunar.randn(2, {dtype = "bool"}) end, "randn", "float dtype")
    H.raises(function() lunar.randperm(-1) end, "randperm", "negative")
    H.raises(function() lunar.randperm(3, {dtype = "float32"}) end, "randperm", "int32 or int64")
    H.raises(function() lunar.bernoulli(lunar.tensor({0.5, 1.5})) end, "bernoulli", "[0, 1]",
      "[2]")
    H.raises(function() lunar.bernoulli(lunar.tensor({-0.1})) end, "bernoulli", "[0, 1]")
    H.raises(function() lunar.bernoulli(lunar.tensor({0 / 0})) end, "bernoulli", "[0, 1]")
    H.raises(function() lunar.bernoulli(lunar.tensor({1, 0})) end, "bernoulli", "int64")
    H.raises(function() lunar.zeros(2):bernoulli(1.5) end, "bernoulli_", "outside [0, 1]")
    H.raises(function() lunar.zeros(2):uniform_(1, 0) end, "uniform_", "low <= high")
    H.raises(function() lunar.zeros(2):uniform_(0, math.huge) end, "uniform_", "finite")
    H.raises(function() lunar.zeros(2):normal_(0, -1) end, "normal_", "std >= 0")
    H.raises(function() lunar.zeros(2, {dtype = "int32"}):normal_() end, "normal_", "int32")
    H.raises(function() lunar.zeros(2):random_(0, 3) end, "randint", "float32")
  end)
end)
