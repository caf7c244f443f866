-- Element-wise families against PyTorch (tests/fixtures/gen_elementwise.py): unary and
-- binary ops in float32/float64 and integer dtypes, NaN/inf, broadcasting with gradients,
-- dtype promotion, gradient checks, views' backward rules, in-place forms and tostring.
local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("elementwise")

local F64 = {dtype = "float64", requires_grad = true}

-- The gradient of sum(fn(...) * g) w.r.t. each input, as lunar computes it.
local function grads(fn, g, ...)
  local ins = {}
  for i, t in ipairs({...}) do ins[i] = t:detach():clone():requires_grad_() end
  local y = fn(table.unpack(ins))
  ;(y * g):sum():backward()
  local out = {}
  for i, t in ipairs(ins) do out[i] = t.grad end
  return table.unpack(out)
end

local function check(fn, inputs, opts)
  local ok, msg = lunar.autograd.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

local UNARY_X = {"neg", "abs", "sign", "exp", "expm1", "square", "sin", "cos", "tanh",
                 "sigmoid", "relu", "floor", "ceil", "round", "trunc", "erf"}
local UNARY_P = {"log", "log1p", "sqrt", "rsqrt", "reciprocal"}
local SMOOTH = {neg = true, abs = true, exp = true, expm1 = true, square = true, sin = true,
                cos = true, tanh = true, sigmoid = true, relu = true, erf = true, log = true,
                log1p = true, sqrt = true, rsqrt = true, reciprocal = true}

describe("unary ops match PyTorch", function()
  local function unary_case(op, input)
    it(op .. " in float64 and float32, with its gradient", function()
      local x = fx["in." .. input]
      local want = fx["un." .. op .. ".f64"]
      local y = lunar[op](x)
      assert.are.equal("float64", y:dtype())
      H.close(y, want, 1e-6, 1e-12)
      local y32 = x:float()[op](x:float())
      assert.are.equal("float32", y32:dtype())
      H.close(y32, want, 1e-5, 1e-6)
      H.close(x[op](fx["in.s"]), fx["special." .. op], 1e-6, 1e-12) -- NaN, inf, 0, -1
      if SMOOTH[op] then
        H.close(grads(lunar[op], fx["in.g"], x), fx["un." .. op .. ".grad"], 1e-5, 1e-10)
      else -- step functions: zero almost everywhere, as in PyTorch
        H.close(grads(lunar[op], fx["in.g"], x), lunar.zeros(8))
      end
    end)
  end
  for _, op in ipairs(UNARY_X) do unary_case(op, "x") end
  for _, op in ipairs(UNARY_P) do unary_case(op, "p") end

  it("clamp with both bounds, one bound, and its gradient at the bounds", function()
    local x = fx["in.x"]
    H.close(x:clamp(-1, 1), fx["un.clamp.f64"])
    H.close(x:float():clamp(-1, 1), fx["un.clamp.f64"])
    H.close(x:clamp(0.3), fx["un.clamp_min.f64"])
    H.close(x:clip(0.3, nil), fx["un.clamp_min.f64"])
    H.close(fx["in.s"]:clamp(-1, 1), fx["special.clamp"])
    H.close(grads(function(t) return t:clamp(-1, 1) end, fx["in.g"], x), fx["un.clamp.grad"])
    H.raises(function() x:clamp() end, "clamp", "at least one")
  end)

  it("logical_not gives bool", function()
    local r = lunar.tensor{0.0, 1.0, -2.0, 0 / 0}:logical_not()
    assert.are.equal("bool", r:dtype())
    H.close(r, fx["un.logical_not.f64"])
  end)

  it("integer inputs: int ops stay int, the others give float32", function()
    local ia = fx["in.ia"]
    for _, op in ipairs({"neg", "abs", "sign", "square", "relu", "floor"}) do
      for _, dt in ipairs({"int64", "int32"}) do
        local r = ia:type(dt)[op](ia:type(dt))
        assert.are.equal(dt, r:dtype(), op)
        assert.are.same(fx["intun." .. op .. ".i64"]:totable(), r:totable(), op)
      end
    end
    assert.are.same(fx["intun.clamp.i64"]:totable(), ia:clamp(-3, 5):totable())
    assert.are.equal("int64", ia:clamp(-3, 5):dtype())
    local r = ia:abs():sqrt()
    assert.are.equal("float32", r:dtype())
    H.close(r, fx["intun.sqrt.f32"])
    H.close(fx["in.ib"]:exp(), fx["intun.exp.f32"])
  end)
end)

describe("binary ops match PyTorch", function()
  local BINARY = {"add", "sub", "mul", "div", "atan2", "maximum", "minimum", "fmod",
                  "remainder"}
  local function binary_case(op, ka, kb)
    it(op .. " in float64 and float32, with both gradients", function()
      local a, b = fx["in." .. ka], fx["in." .. kb]
      local want = fx["bin." .. op .. ".f64"]
      local y = lunar[op](a, b)
      assert.are.equal("float64", y:dtype())
      H.close(y, want, 1e-6, 1e-12)
      local y32 = lunar[op](a:float(), b:float())
      assert.are.equal("float32", y32:dtype())
      H.close(y32, want, 1e-5, 1e-6)
      local ga, gb = grads(lunar[op], fx["in.g"], a, b)
      H.close(ga, fx["bin." .. op .. ".ga"], 1e-5, 1e-10)
      H.close(gb, fx["bin." .. op .. ".gb"], 1e-5, 1e-10)
    end)
  end
  for _, op in ipairs(BINARY) do binary_case(op, "a", "b") end
  binary_case("pow", "ap", "bp") -- includes 0^2, 0^0 and x^0

  it("comparisons and logical ops give bool, NaN compares false", function()
    local a, b = fx["in.a"], fx["in.bc"]
    for _, op in ipairs({"eq", "ne", "lt", "le", "gt", "ge",
                         "logical_and", "logical_or", "logical_xor"}) do
      local r = lunar[op](a, b)
      assert.are.equal("bool", r:dtype(), op)
      H.close(r, fx["bin." .. op .. ".f64"])
      H.close(lunar[op](a:float(), b:float()), fx["bin." .. op .. ".f64"])
      H.close(lunar[op](fx["in.an"], fx["in.bn"]), fx["nan." .. op])
    end
    H.close(lunar.maximum(fx["in.an"], fx["in.bn"]), fx["nan.maximum"])
    H.close(lunar.minimum(fx["in.an"], fx["in.bn"]), fx["nan.minimum"])
  end)

  it("integers: int64 and int32 keep their dtype; division is true division", function()
    local ia, ib = fx["in.ia"], fx["in.ib"]
    for _, op in ipairs({"add", "sub", "mul", "maximum", "minimum", "fmod", "remainder"}) do
      for _, dt in ipairs({"int64", "int32"}) do
        local r = lunar[op](ia:type(dt), ib:type(dt))
        assert.are.equal(dt, r:dtype(), op)
        assert.are.same(fx["int." .. op .. ".i64"]:totable(), r:totable(), op)
      end
    end
    for _, op in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
      assert.are.same(fx["int." .. op .. ".i64"]:totable(), lunar[op](ia, ib:int()):totable())
    end
    local q = ia / ib
    assert.are.equal("float32", q:dtype())
    H.close(q, fx["int.div.i64"])
    H.close(ia:int() / ib:int(), fx["int.div.i64"])
    assert.are.same(fx["int.pow.i64"]:totable(), (ia ^ lunar.tensor{2, 3, 0, 1, 2, 1, 5, 3})
      :totable())
  end)

  it("operators + - * / ^ % and unary minus", function()
    local a, b = fx["in.a"], fx["in.b"]
    H.close(a + b, fx["bin.add.f64"])
    H.close(a - b, fx["bin.sub.f64"])
    H.close(a * b, fx["bin.mul.f64"])
    H.close(a / b, fx["bin.div.f64"])
    H.close(a % b, fx["bin.remainder.f64"])
    H.close(fx["in.ap"] ^ fx["in.bp"], fx["bin.pow.f64"])
    H.close(-a, fx["un.neg.f64"] and lunar.neg(a))
    H.close(-fx["in.x"], fx["un.neg.f64"])
    H.close(2 - lunar.tensor{1, 5}, {1, -3})
    H.close(1 / lunar.tensor{2.0, 4.0}, {0.5, 0.25})
    H.close(2 ^ lunar.tensor{1.0, 3.0}, {2, 8})
    H.close(lunar.tensor{-3.0, 3.0} % 2, {1, 1})
    H.close(lunar.tensor{1.0, 4.0} ^ 0.5, {1, 2})
  end)
end)

describe("broadcasting", function()
  local CASES = {r = "[3,1] with [1,4]", v = "[2,3,4] with [4]", s = "0-d with [2,3]"}
  for case, what in pairs(CASES) do
    it(what .. ": values and gradients summed over broadcast dims", function()
      local a, b = fx["bc." .. case .. ".a"], fx["bc." .. case .. ".b"]
      for _, op in ipairs({"add", "sub", "mul", "div", "maximum", "atan2"}) do
        local key = "bc." .. case .. "." .. op
        local y = lunar[op](a, b)
        assert.are.same(fx[key .. ".out"]:size(), y:size())
        H.close(y, fx[key .. ".out"], 1e-6, 1e-12)
        local gy = lunar.arange(y:numel(), {dtype = "float64"}):sin():reshape(y:size()) + 0.5
        local ga, gb = grads(lunar[op], gy, a, b)
        assert.are.same(a:size(), ga:size())
        assert.are.same(b:size(), gb:size())
        H.close(ga, fx[key .. ".ga"], 1e-5, 1e-10)
        H.close(gb, fx[key .. ".gb"], 1e-5, 1e-10)
      end
    end)
  end

  it("empty tensors broadcast to empty results", function()
    local e = lunar.zeros(0, 3)
    assert.are.same({0, 3}, (e + lunar.ones(3)):size())
    assert.are.same({0, 3}, (e * 2):size())
    assert.are.same({2, 0}, (lunar.ones(2, 1) + lunar.ones(0)):size())
    assert.are.same({0, 3}, lunar.exp(e):size())
    assert.are.same({0, 3}, lunar.lt(e, lunar.ones(1, 3)):size())
  end)

  it("incompatible shapes name the op and both shapes", function()
    H.raises(function() return lunar.ones(3, 1) + lunar.ones(2, 4) end,
      "add", "[3, 1]", "[2, 4]", "broadcast")
    H.raises(function() return lunar.mul(lunar.ones(2, 3), lunar.ones(4)) end,
      "mul", "[2, 3]", "[4]")
    H.raises(function() return lunar.lt(lunar.ones(5), lunar.ones(2)) end, "lt", "[5]", "[2]")
    H.raises(function() return lunar.ones(2, 3):add_(lunar.ones(4, 2, 3)) end,
      "add", "[4, 2, 3]", "[2, 3]")
  end)

  it("where: broadcast condition, values and gradients", function()
    local a, b = fx["where.a"], fx["where.b"]
    H.close(lunar.where(fx["where.cond"], a, b), fx["where.out"])
    local ga, gb = grads(function(u, v) return lunar.where(fx["where.cond"], u, v) end,
      lunar.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "float64"}), a, b)
    H.close(ga, fx["where.ga"])
    H.close(gb, fx["where.gb"])
    H.close(a:where(fx["where.cond"], 0), {{1, 2, 3}, {0, 0, 0}})
    H.close(lunar.where(lunar.tensor{true, false}, 1.5, lunar.tensor{7.0, 8.0}), {1.5, 8})
  end)
end)

describe("strided and threaded paths", function()
  it("agree with the contiguous ones", function()
    local x = lunar.arange(12, {dtype = "float64"}):view(3, 4) - 5
    local t = x:t()
    H.close(t:exp(), t:contiguous():exp(), 0, 0)
    H.close(t + lunar.tensor{1.0, 2.0, 3.0}, t:contiguous() + lunar.tensor{1.0, 2.0, 3.0}, 0, 0)
    H.close(lunar.tensor{1.0, 2.0, 3.0} - t, lunar.tensor{1.0, 2.0, 3.0} - t:contiguous(), 0, 0)
    -- over LUNAR_GRAIN elements: split across threads
    local big = lunar.ones(300, 200, {dtype = "float64"}) * lunar.arange(200)
    assert.are.equal(300 * 199 * 200 / 2, big:sum():item())
    local bt = lunar.arange(60000):view(300, 200):t() * 2
    assert.are.equal(59999 * 2, bt[200][300])
    assert.are.equal((200 + 2) * 2, bt[3][2])
    local y = lunar.ones(40000, {requires_grad = true})
    ;(y * y):sum():backward()
    assert.are.equal(80000, y.grad:sum():item())
  end)
end)

describe("dtype promotion follows PyTorch", function()
  local function dt(t) return t:dtype() end
  it("tensor with tensor", function()
    local i64, i32 = lunar.tensor{1, 2}, lunar.tensor({1, 2}, {dtype = "int32"})
    local f32, f64 = lunar.tensor{1.5, 2}, lunar.tensor({1.5, 2}, {dtype = "float64"})
    local u8, bool = lunar.tensor({1, 2}, {dtype = "uint8"}), lunar.tensor{true, false}
    assert.are.equal("float32", dt(i64 + f32))
    assert.are.equal("float64", dt(f32 * f64))
    assert.are.equal("int64", dt(i32 + i64))
    assert.are.equal("int32", dt(u8 + i32))
    assert.are.equal("uint8", dt(u8 + bool))
    assert.are.equal("float32", dt(i64 / i64))
    assert.are.equal("float32", dt(lunar.atan2(i64, i64)))
    assert.are.equal("bool", dt(f32:lt(f64)))
    assert.are.equal("bool", dt(i64:eq(f32)))
    assert.are.same({true, true}, i64:le(f32):totable())
  end)

  it("bool with bool: add is or, mul is and, subtraction refused", function()
    local a, b = lunar.tensor{true, true, false, false}, lunar.tensor{true, false, true, false}
    assert.are.equal("bool", dt(a + b))
    assert.are.same({true, true, true, false}, (a + b):totable())
    assert.are.same({true, false, false, false}, (a * b):totable())
    assert.are.same({true, true, true, false}, lunar.maximum(a, b):totable())
    assert.are.same({true, false, false, false}, lunar.minimum(a, b):totable())
    H.close(a / b, {1, 1 / 0, 0, 0 / 0})
    H.raises(function() return a - b end, "sub", "bool")
    H.raises(function() return -a end, "neg", "bool")
  end)

  it("0-d tensors count like numbers unless their kind is higher", function()
    local i32, f32 = lunar.tensor({1, 2}, {dtype = "int32"}), lunar.tensor{1.5, 2}
    assert.are.equal("int32", dt(i32 + lunar.tensor(3)))
    assert.are.equal("float32", dt(f32 + lunar.tensor(1.5, {dtype = "float64"})))
    assert.are.equal("float64", dt(lunar.tensor{1, 2} + lunar.tensor(1.5, {dtype = "float64"})))
    assert.are.equal("float64", dt(lunar.tensor(1, {dtype = "int32"})
      + lunar.tensor(1.5, {dtype = "float64"})))
  end)

  it("tensor with Lua number", function()
    local i64 = lunar.tensor{1, 2}
    assert.are.equal("int64", dt(i64 + 2))
    assert.are.same({3, 4}, (i64 + 2):totable())
    assert.are.equal("int32", dt(lunar.tensor({1, 2}, {dtype = "int32"}) * 3))
    assert.are.equal("float32", dt(i64 * 0.5))
    H.close(i64 * 0.5, {0.5, 1})
    assert.are.equal("float64", dt(lunar.tensor({1}, {dtype = "float64"}) + 2))
    assert.are.equal("int64", dt(lunar.tensor{true} + 2))
    assert.are.equal("float32", dt(lunar.tensor{true} + 2.5))
    assert.are.equal("bool", dt(i64:gt(1.5)))
    assert.are.same({false, true}, i64:gt(1.5):totable())
    assert.are.equal("float32", dt(i64 / 2))
    H.close(lunar.tensor{7, -7} / 2, {3.5, -3.5})
  end)
end)

describe("gradcheck (float64)", function()
  local function xs(t) return lunar.tensor(t, F64) end
  it("every differentiable unary op", function()
    local x = {-1.7, -0.6, 0.35, 0.8, 2.1, 1.3}
    local p = {0.3, 0.7, 1.2, 2.5, 4.0, 0.9}
    for _, op in ipairs({"neg", "abs", "exp", "expm1", "square", "sin", "cos", "tanh",
                         "sigmoid", "relu", "erf"}) do
      check(lunar[op], {xs(x)})
    end
    for _, op in ipairs(UNARY_P) do check(lunar[op], {xs(p)}) end
    check(function(t) return t:clamp(-1, 1) end, {xs(x)})
    check(function(t) return t:clamp(nil, 0.5) end, {xs(x)})
  end)

  it("every differentiable binary op, same shape and broadcast", function()
    local a = xs({{1.3, -0.7, 2.3}, {0.4, -1.9, 0.9}}) -- no point on a fmod jump
    local b = xs({{0.6, 1.7, -1.1}, {-2.3, 0.8, 0.5}})
    local r, c = xs({{0.9}, {-1.3}}), xs({0.35, -2.2, 1.6})
    for _, op in ipairs({"add", "sub", "mul", "div", "atan2", "maximum", "minimum", "fmod",
                         "remainder"}) do
      check(lunar[op], {a, b})
      check(lunar[op], {r, c}) -- [2,1] with [3]
      check(lunar[op], {a, c}) -- [2,3] with [3]
    end
    local pa = xs({{1.3, 0.7, 2.2}, {0.4, 1.9, 0.9}})
    check(lunar.pow, {pa, b}) -- tensor exponent
    check(lunar.pow, {xs({{1.3}, {0.4}}), c})
    check(function(t) return t ^ 3 end, {a})
    check(function(t) return 2 ^ t end, {a})
    check(function(t) return 1 / t end, {b})
    check(function(t) return 3 - t end, {b})
  end)

  it("where, with gradients through both branches", function()
    local cond = lunar.tensor{{true, false, true}, {false, false, true}}
    check(function(u, v) return lunar.where(cond, u, v) end,
      {xs({{1, 2, 3}, {4, 5, 6}}), xs({-1, -2, -3})})
    check(function(u) return lunar.where(u:gt(0), u, u * 0.1) end, {xs({1.5, -2, 0.3, -0.4})})
  end)

  it("views: narrow, select, permute, expand, unfold, reshape of a non-contiguous", function()
    local x = xs({{1.1, -0.2, 0.7, 2.0}, {0.3, 1.5, -1.2, 0.9}, {-0.4, 0.6, 1.8, -2.1}})
    check(function(t) return t:narrow(2, 2, 2):exp() end, {x})
    check(function(t) return t:select(1, 2) * t:select(1, -1) + t:select(2, 3):sum() end, {x})
    check(function(t) return t:view(3, 2, 2):permute(3, 1, 2):sin() end, {x})
    check(function(t) return t:t():reshape(2, 6) * lunar.arange(12):view(2, 6) end, {x})
    check(function(t) return t:narrow(1, 1, 1):expand(5, 4):cos() end, {x})
    check(function(t) return t:unfold(2, 2, 1):square() end, {x}) -- overlapping windows
    check(function(t) return t:unfold(1, 2, 1):tanh() end, {x})
    check(function(t) return t:transpose(1, 2):unsqueeze(1):squeeze(1):contiguous() * t:t() end,
      {x})
    check(function(t) return t:view(-1):narrow(1, 3, 6):view(2, 3):t():reshape(6) end, {x})
    check(function(t) return t:view(-1):unfold(1, 2, 3):square() end, {x}) -- gaps between
    check(function(t) return t:narrow(2, 1, 1):expand(-1, 3):sin() end, {x})
    check(function(t) return lunar.where(t:gt(0), 2.0, t) end, {x})
    -- through float32: a wide step keeps its rounding out of the finite difference
    check(function(t) return t:float():double() * 2 end, {x}, {eps = 1e-2, atol = 1e-4})
  end)
end)

describe("in-place forms", function()
  it("add_, exp_, clamp_, fill_, zero_, copy_ write into the tensor", function()
    local x = lunar.tensor{1.0, 2.0, 3.0}
    local v = x:view(3)
    assert.are.equal(x, x:add_(lunar.tensor{1.0, 1.0, 1.0}))
    H.close(v, {2, 3, 4})
    x:mul_(2)
    H.close(x, {4, 6, 8})
    x:clamp_(5, 7)
    H.close(x, {5, 6, 7})
    x:exp_()
    H.close(x, {math.exp(5), math.exp(6), math.exp(7)})
    x:fill_(1.5)
    H.close(v, {1.5, 1.5, 1.5})
    x:zero_()
    H.close(x, {0, 0, 0})
    local m = lunar.zeros(2, 3)
    m:copy_(lunar.tensor{1, 2, 3})    -- broadcast and cast
    H.close(m, {{1, 2, 3}, {1, 2, 3}})
    m:t():select(1, 2):add_(10)        -- through a strided view
    H.close(m, {{1, 12, 3}, {1, 12, 3}})
    local i = lunar.tensor{1, 2}
    i:add_(lunar.tensor({3, 4}, {dtype = "int32"}))
    assert.are.same({4, 6}, i:totable())
    local f = lunar.tensor{1.5, 2.5}
    f:mul_(lunar.tensor{2, 3})          -- an int operand is cast up
    H.close(f, {3, 7.5})
    f:lt_(5)                            -- a bool result is stored as 0/1
    H.close(f, {1, 0})
  end)

  it("refuses results that do not fit the tensor", function()
    H.raises(function() lunar.tensor{1, 2}:sqrt_() end, "sqrt_", "int64")
    local i = lunar.tensor{1, 2}
    H.raises(function() i:add_(0.5) end, "add_", "float32", "int64")
    H.raises(function() i:div_(lunar.tensor{2, 2}) end, "div_", "float32", "int64")
    assert.are.same({1, 2}, i:totable()) -- left untouched
    H.raises(function() lunar.tensor{true}:add_(2) end, "add_", "int64", "bool")
    H.raises(function() lunar.zeros(3):add_(lunar.ones(2, 3)) end, "add", "[2, 3]", "[3]")
  end)
end)

describe("tostring", function()
  it("prints values like PyTorch with a dtype and size footer", function()
    assert.are.equal("tensor([[1.0000, 2.5000],\n        [3.0000, 4.0000]])\n"
      .. "[float32 tensor of size 2x2]", tostring(lunar.tensor{{1, 2.5}, {3, 4}}))
    assert.are.equal("tensor([1, 2, 3])\n[int64 tensor of size 3]", tostring(lunar.tensor{1, 2, 3}))
    assert.are.equal("tensor([ True, False])\n[bool tensor of size 2]",
      tostring(lunar.tensor{true, false}))
    assert.are.equal("tensor(2.5000)\n[float64 tensor of size [] (a scalar)]",
      tostring(lunar.tensor(2.5, {dtype = "float64"})))
    assert.are.equal("tensor([1., 2.])\n[float32 tensor of size 2]",
      tostring(lunar.tensor{1.0, 2.0}))
    assert.are.equal("tensor([   nan,    inf, 1.5000])\n[float32 tensor of size 3]",
      tostring(lunar.tensor{0 / 0, 1 / 0, 1.5}))
    assert.are.equal("tensor([1.0000e-05, 1.0000e+00])\n[float32 tensor of size 2]",
      tostring(lunar.tensor{1e-5, 1}))
  end)

  it("elides tensors over 1000 elements", function()
    local s = tostring(lunar.arange(2000))
    assert.are.equal("tensor([   0,    1,    2, ..., 1997, 1998, 1999])\n"
      .. "[int64 tensor of size 2000]", s)
    local m = tostring(lunar.arange(1100):view(100, 11))
    assert.is_truthy(m:find("tensor([[   0,    1,    2, ...,    8,    9,   10],\n", 1, true))
    assert.is_truthy(m:find("...,\n", 1, true))
    assert.is_truthy(m:find("[1089, 1090, 1091, ..., 1097, 1098, 1099]])", 1, true))
    assert.is_truthy(m:find("[int64 tensor of size 100x11]", 1, true))
    assert.are.equal("tensor([])\n[float32 tensor of size 0]", tostring(lunar.zeros(0)))
  end)

  it("shows grad_fn and requires_grad", function()
    local x = lunar.tensor({1.0, 2.0}, {requires_grad = true})
    assert.is_truthy(tostring(x):find("requires_grad=true", 1, true))
    assert.is_truthy(tostring(x * 2):find("grad_fn=<mul>", 1, true))
  end)
end)
