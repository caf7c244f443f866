-- The OpenCL backend against the CPU (tag: opencl): every covered op on random inputs
-- (fixed seed) on both devices, compared by normalised mean squared error (<= 1e-7, 5e-4
-- for GEMM); a NaN fails and infinities must match. Forward and backward. Skipped, with a
-- message, when no OpenCL device exists.
local lunar = require("lunar")

local LUA = 'LUA_PATH_5_4="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="./?.so;;" lua5.4'

describe("opencl without a platform #opencl", function()
  it("loads, runs on the CPU, and fails clearly when asked for OpenCL", function()
    local p = io.popen("OCL_ICD_VENDORS=/nonexistent " .. LUA .. [[ -e '
      local l = require("lunar")
      print(#l.devices(), (l.ones(2) + 1):sum():item())
      print(select(2, pcall(l.device, "opencl")))' 2>&1]])
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("^0\t4%.0\n"), out)
    assert.truthy(out:find("no OpenCL device found", 1, true) or
                  out:find("built without OpenCL", 1, true), out)
  end)
end)

if #lunar.devices() == 0 then
  describe("opencl #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the OpenCL spec is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local check, pair = ocl.check, ocl.pair -- the comparison rule above, one copy for all specs

describe("opencl devices #opencl", function()
  it("lists devices and hands out device handles", function()
    local d = lunar.devices()[1]
    assert.are.equal(1, d.index)
    assert.is_string(d.name)
    assert.is_true(d.global_mem > 0)
    assert.is_boolean(d.fp64)
    assert.are.equal("opencl:1", tostring(lunar.device("opencl")))
    assert.are.equal(lunar.device("opencl"), lunar.device("opencl:1"))
    assert.are.equal("cpu", tostring(lunar.device("cpu")))
    local ok, msg = pcall(lunar.device, "opencl:99")
    assert.is_false(ok)
    assert.truthy(msg:find("no device opencl:99", 1, true))
    ok, msg = pcall(lunar.device, "tpu")
    assert.is_false(ok)
    assert.truthy(msg:find("unknown device 'tpu'", 1, true))
  end)

  it("moves tensors both ways, views included, every dtype", function()
    for _, dt in ipairs({"float32", "float64", "int32", "int64", "uint8", "bool"}) do
      local t = lunar.arange(24):reshape(2, 3, 4):to(dt)
      local g = t:to(lunar.device("opencl"))
      assert.are.equal("opencl:1", g:device())
      assert.are.same(t:totable(), g:to("cpu"):totable())
      assert.are.same(t:transpose(1, 3):totable(), g:transpose(1, 3):totable())
      assert.are.same(t:narrow(2, 2, 2):totable(), g:narrow(2, 2, 2):to("cpu"):totable())
    end
    assert.are.equal("cpu", lunar.ones(2):device())
  end)

  it("refuses to mix devices in one op", function()
    local ok, msg = pcall(function() return lunar.ones(2) + lunar.ones(2):to(DEV) end)
    assert.is_false(ok)
    assert.truthy(msg:find("different devices", 1, true), msg)
  end)
end)

describe("opencl kernels against the CPU #opencl", function()
  before_each(function() lunar.manual_seed(1234) end)

  it("copy casts between every pair of dtypes, strided", function()
    local dts = {"float32", "float64", "int32", "int64", "uint8", "bool"}
    local x = (lunar.randn(3, 4, 5) * 4):to(DEV)
    for _, from in ipairs(dts) do
      local src = x:to("cpu"):to(from)
      local gsrc = src:to(DEV):permute(3, 1, 2)
      for _, to in ipairs(dts) do
        check(gsrc:to(to):contiguous(), src:permute(3, 1, 2):to(to):contiguous())
      end
    end
  end)

  it("fill, strided, and arange", function()
    local c, g = pair({4, 5})
    check(g:clone():fill_(2.5), c:clone():fill_(2.5))
    check(g:to("int64"):fill_(7), c:to("int64"):fill_(7))
    local gt = g:t()
    gt:fill_(-3)
    local ct = c:t()
    ct:fill_(-3)
    check(g, c)
    local ci = lunar.arange(0, 10, 0.5)
    local gi = lunar.arange(20):to(DEV)
    gi:copy_(ci:to(DEV)) -- through copy: arange itself runs in the mask helpers below
    check(gi, lunar.arange(20):copy_(ci))
    check(lunar.ones(5, 5):to(DEV):tril(), lunar.ones(5, 5):tril()) -- arange + where
  end)

  it("every unary op, contiguous and strided, float32 and float64", function()
    local ops = {"neg", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt",
                 "square", "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil", "round",
                 "trunc", "reciprocal", "erf"}
    for _, dt in ipairs({"float32", "float64"}) do
      local c, g = pair({6, 7}, {dtype = dt})
      local pc, pg = c:abs() + 0.1, g:abs() + 0.1 -- inside log's and sqrt's domains
      for _, op in ipairs(ops) do
        local positive = op:find("log") or op:find("sqrt")
        local xc, xg = positive and pc or c, positive and pg or g
        check(xg[op](xg), xc[op](xc))
        check(xg:t()[op](xg:t()), xc:t()[op](xc:t()))
      end
      check(g:clamp(-0.5, 0.5), c:clamp(-0.5, 0.5))
    end
    -- integers keep integer ops integer; logical_not goes to bool
    local ci = (lunar.randn(5, 4) * 10):to("int64")
    local gi = ci:to(DEV)
    for _, op in ipairs({"neg", "abs", "sign", "square", "relu", "floor", "logical_not"}) do
      check(gi[op](gi), ci[op](ci))
    end
    check(gi:clamp(-3, 4), ci:clamp(-3, 4))
  end)

  it("every binary op with broadcasting, per dtype", function()
    local arith = {"add", "sub", "mul", "div", "pow", "atan2", "maximum", "minimum", "fmod",
                   "remainder"}
    local cmp = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
                 "logical_xor"}
    for _, dt in ipairs({"float32", "float64", "int32", "int64"}) do
      local float = dt:find("float")
      local a = (lunar.randn(3, 1, 5) * (float and 1 or 6)):to(dt)
      local b = (lunar.randn(4, 1) * (float and 1 or 6)):to(dt)
      if float then a = a:abs() + 0.5 else b = b:abs() + 1 end -- pow's and div's domains
      local ga, gb = a:to(DEV), b:to(DEV)
      for _, op in ipairs(arith) do
        if float or op ~= "atan2" then check(ga[op](ga, gb), a[op](a, b)) end
      end
      for _, op in ipairs(cmp) do check(ga[op](ga, gb), a[op](a, b)) end
      check(ga:transpose(1, 3) * 2, a:transpose(1, 3) * 2) -- strided, with a scalar
    end
    local ba, bb = lunar.randn(4, 4):gt(0), lunar.randn(4, 4):gt(0)
    check(ba:to(DEV) + bb:to(DEV), ba + bb)
    check(ba:to(DEV):logical_xor(bb:to(DEV)), ba:logical_xor(bb))
  end)

  it("infinities must match, NaN fails", function()
    local c = lunar.tensor{0.5, 0, -0, 2}
    local g = c:to(DEV)
    check(g:log(), c:log()) -- -inf
    check(g:reciprocal(), c:reciprocal()) -- +inf and -inf
    local ok = pcall(check, lunar.tensor{-1}:to(DEV):log(), lunar.tensor{-1}:log())
    assert.is_false(ok) -- a NaN fails the comparison
  end)

  it("where, with broadcasting", function()
    local cond = lunar.randn(3, 4):gt(0)
    local a, b = lunar.randn(3, 4), lunar.randn(4)
    check(lunar.where(cond:to(DEV), a:to(DEV), b:to(DEV)), lunar.where(cond, a, b))
  end)

  it("reductions over dim masks, strided input", function()
    local c, g = pair({4, 5, 6}, {dtype = "float64"})
    c, g = c:transpose(1, 3), g:transpose(1, 3)
    for _, op in ipairs({"sum", "mean", "prod", "amax", "amin", "logsumexp"}) do
      check(g[op](g), c[op](c))
      check(g[op](g, 2), c[op](c, 2))
      check(g[op](g, {1, 3}, true), c[op](c, {1, 3}, true))
    end
    check(g:norm(), c:norm())
    check(g:var(2), c:var(2))
    check(g:max(), c:max())
    local ci = (c * 5):to("int32")
    check(ci:to(DEV):sum(1), ci:sum(1))
    check(ci:to(DEV):gt(0):all(2), ci:gt(0):all(2))
    check(ci:to(DEV):gt(0):any(), ci:gt(0):any())
  end)

  it("gemm on CLBlast: mm, transposed operands, bmm with a broadcast batch", function()
    for _, dt in ipairs({"float32", "float64"}) do
      local a, ga = pair({33, 17}, {dtype = dt})
      local b, gb = pair({17, 9}, {dtype = dt})
      check(ga:mm(gb), a:mm(b), 5e-4)
      check(gb:t():mm(ga:t()), b:t():mm(a:t()), 5e-4)
      local x, gx = pair({3, 5, 4}, {dtype = dt})
      local y, gy = pair({3, 4, 6}, {dtype = dt})
      check(gx:bmm(gy), x:bmm(y), 5e-4)
      check(gx:matmul(gb:narrow(1, 1, 4):narrow(2, 1, 6)),
            x:matmul(b:narrow(1, 1, 4):narrow(2, 1, 6)), 5e-4)
      local bias, gbias = pair({9}, {dtype = dt})
      check(lunar.addmm(gbias, ga, gb, 0.5, 2), lunar.addmm(bias, a, b, 0.5, 2), 5e-4)
    end
  end)
end)

describe("opencl autograd #opencl", function()
  before_each(function() lunar.manual_seed(99) end)

  -- gradients of f on CPU leaves, computed on the CPU and through OpenCL
  local function grads(f, shapes)
    local leaves, dev = {}, {}
    for i, s in ipairs(shapes) do
      leaves[i] = lunar.randn(s, {dtype = "float64"})
      leaves[i]:requires_grad_(true)
    end
    f(table.unpack(leaves)):backward()
    local expected = {}
    for i, l in ipairs(leaves) do expected[i] = l.grad:clone() end
    for i, l in ipairs(leaves) do
      dev[i] = l:detach():to(DEV)
      dev[i]:requires_grad_(true)
    end
    f(table.unpack(dev)):backward()
    for i = 1, #dev do check(dev[i].grad, expected[i]) end
  end

  it("element-wise and reductions", function()
    grads(function(a, b) return (a * b):exp():sum() end, {{3, 4}, {3, 4}})
    grads(function(a, b) return (a / (b:abs() + 1)):tanh():mean() end, {{2, 3, 4}, {4}})
    grads(function(a) return (a:sigmoid() * a:sin()):amax(2):sum() end, {{5, 6}})
    grads(function(a) return a:clamp(-0.3, 0.3):square():logsumexp() end, {{4, 4}})
  end)

  it("matmul", function()
    grads(function(a, b) return a:matmul(b):relu():sum() end, {{4, 5}, {5, 3}})
    grads(function(a, b) return a:bmm(b):sum() end, {{2, 3, 4}, {2, 4, 5}})
  end)

  it("through to(): the gradient comes back to the CPU leaf", function()
    local a = lunar.randn({3, 3}, {dtype = "float64"})
    a:requires_grad_(true)
    local loss = (a:to(DEV) * 3):sum()
    loss:backward()
    assert.are.equal("cpu", a.grad:device())
    assert.are.same(lunar.full({3, 3}, 3, {dtype = "float64"}):totable(), a.grad:totable())
  end)
end)

describe("opencl backend coverage #opencl", function()
  it("has a kernel for every backend entry, as the CPU does", function()
    local missing = {}
    for name, has in pairs(lunar.backend_kernels(DEV)) do
      if not has then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.are.same({}, missing)
    local cpu_missing = 0
    for _, has in pairs(lunar.backend_kernels("cpu")) do
      if not has then cpu_missing = cpu_missing + 1 end
    end
    assert.are.equal(0, cpu_missing)
  end)
end)
