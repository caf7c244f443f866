-- OpenCL reductions with few outputs over many elements: the two-stage path (partials per
-- fixed chunk, then a combine) against the CPU, every op it takes, strided input, integer
-- exact sums, NaN propagation; and the ops that stay single-stage (var, logsumexp).
local lunar = require("lunar")

if #lunar.devices() == 0 then
  describe("opencl reductions #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local values = ocl.values

-- normalised MSE <= tol; NaN only where the CPU has NaN; infinities equal
local function check(actual, expected, tol)
  assert.are.same(expected:size(), actual:size())
  assert.are.equal(expected:dtype(), actual:dtype())
  local a, e = values(actual), values(expected)
  local num, den = 0, 0
  for i = 1, #e do
    local x, y = a[i], e[i]
    if y ~= y then
      assert(x ~= x, ("element %d: %s where the CPU has NaN"):format(i, x))
    elseif math.abs(y) == math.huge or math.abs(x) == math.huge then
      assert(x == y, ("element %d: %s vs %s"):format(i, x, y))
    else
      assert(x == x, "NaN from OpenCL at element " .. i)
      num, den = num + (x - y) ^ 2, den + y ^ 2
    end
  end
  local err = den > 0 and num / den or num
  assert(err <= (tol or 1e-7), ("nmse %g > %g"):format(err, tol or 1e-7))
end

describe("opencl two-stage reductions #opencl", function()
  before_each(function() lunar.manual_seed(7) end)

  it("every combinable op over a long reduction, float32 and float64", function()
    for _, dt in ipairs({"float32", "float64"}) do
      local c = lunar.randn({300, 2000}, {dtype = dt})
      local g = c:to(DEV)
      for _, op in ipairs({"sum", "mean", "amax", "amin"}) do
        check(g[op](g), c[op](c))
        check(g[op](g, 2), c[op](c, 2))           -- 300 outputs of 2000
        check(g:t()[op](g:t(), 1), c:t()[op](c:t(), 1)) -- the same, strided
      end
      check((g * 0.001 + 1):prod(), (c * 0.001 + 1):prod(), 1e-6)
      for _, p in ipairs({0, 1, 2, 3, math.huge}) do check(g:norm(p), c:norm(p)) end
      check(g:gt(-10):all(), c:gt(-10):all())
      check(g:gt(4.5):any(), c:gt(4.5):any())
      check(g:gt(0):all(2), c:gt(0):all(2))
      check(g:var(), c:var())             -- single-stage ops still right
      check(g:logsumexp(), c:logsumexp())
    end
  end)

  it("integer sums and products stay exact", function()
    local c = (lunar.randn(5000, 3) * 1000):to("int64")
    check(c:to(DEV):sum(), c:sum(), 0)
    check(c:to(DEV):sum(1), c:sum(1), 0)
    local ci = (lunar.randn(4096) * 50):to("int32")
    check(ci:to(DEV):sum(), ci:sum(), 0)
    local ones = lunar.ones(3000, {dtype = "int64"})
    ones[1000] = 2
    check(ones:to(DEV):prod(), ones:prod(), 0)
  end)

  it("a NaN anywhere makes max, min and the inf-norm NaN", function()
    local c = lunar.randn(100000)
    c[77777] = 0 / 0
    local g = c:to(DEV)
    for _, op in ipairs({"amax", "amin", "sum"}) do check(g[op](g), c[op](c)) end
    check(g:norm(math.huge), c:norm(math.huge))
    local d = lunar.randn(100000)
    d[5] = math.huge
    check(d:to(DEV):amax(), d:amax())
    check(d:to(DEV):sum(), d:sum())
  end)
end)
