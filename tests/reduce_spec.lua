-- Reductions, max/min along a dim, argmax/argmin, cumsum/cumprod: values and gradients
-- against PyTorch (tests/fixtures/gen_reduce.py), gradient checks, large inputs, bad input.
local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("reduce")

local INF = math.huge
-- the configurations of gen_reduce.py, in Lua's 1-based dims
local CFGS = {
  all = {nil, false}, d1 = {2, false}, d02k = {{1, 3}, true}, dm1 = {-1, false},
  dm3k = {-3, true},
}
local CFG_NAMES = {"all", "d1", "d02k", "dm1", "dm3k"}

local NORM_P = {norm0 = 0, norm1 = 1, norm2 = 2, norm3 = 3, norminf = INF}
local CORR = {var = 1, var_biased = 0, var_c2 = 2, std = 1, std_biased = 0}

-- op name (as in gen_reduce.py) applied with dims and keepdim
local function red(op, t, dims, keep)
  local p, c = NORM_P[op], CORR[op]
  if p then return t:norm(p, dims, keep) end
  if c then
    local f = op:sub(1, 3) == "var" and t.var or t.std
    return f(t, dims, {correction = c, keepdim = keep})
  end
  return t[op](t, dims, keep)
end

local OPS = {"sum", "mean", "prod", "amax", "amin", "logsumexp", "norm0", "norm1", "norm2",
             "norm3", "norminf", "var", "var_biased", "var_c2", "std", "std_biased"}
local GRAD_OPS = {"sum", "mean", "prod", "amax", "amin", "logsumexp", "norm1", "norm2",
                  "norm3", "norminf", "var", "std"}

-- the upstream gradient of gen_reduce.py: arange(1, n + 1) * step + base in y's shape
local function upstream(y, step, base)
  local n = y:numel()
  local u = lunar.arange(1, n + 1):double() * step + base
  if y:dim() == 0 then return u:view({}) end
  return u:view(y:size())
end

local function grad_of(f, x0, up_step, up_base)
  local x = x0:clone():requires_grad_()
  local y = f(x)
  ;(y * upstream(y, up_step, up_base)):sum():backward()
  return x.grad
end

describe("reductions against PyTorch", function()
  for _, cfg in ipairs(CFG_NAMES) do
    local dims, keep = CFGS[cfg][1], CFGS[cfg][2]
    it("every op over " .. cfg, function()
      local want = fx["val_" .. cfg]
      for i, op in ipairs(OPS) do
        local y = red(op, fx.x, dims, keep)
        local w = want[i] -- a number when the result is 0-d
        assert.are.same(type(w) == "number" and {} or w:size(), y:size(), op)
        local ok, err = pcall(H.close, y, w, 1e-12, 1e-12)
        assert(ok, op .. " " .. cfg .. ": " .. tostring(err))
      end
      local b = fx["bool_" .. cfg]
      local function tbl(v) return lunar.is_tensor(v) and v:totable() or v end
      assert.are.same(tbl(b[1]), fx.x:gt(0):all(dims, keep):totable())
      assert.are.same(tbl(b[2]), fx.x:gt(2):any(dims, keep):totable())
    end)

    it("gradients over " .. cfg, function()
      local want = fx["grad_" .. cfg]
      for i, op in ipairs(GRAD_OPS) do
        local src = op == "prod" and fx.xp or fx.x
        local g = grad_of(function(t) return red(op, t, dims, keep) end, src, 0.5, -1)
        local ok, err = pcall(H.close, g, want[i], 1e-6, 1e-6) -- the fixture is float32
        assert(ok, op .. " " .. cfg .. ": " .. tostring(err))
      end
    end)
  end

  it("float32 inputs give float32 results accumulated in double", function()
    local y = fx.x:float():sum(2)
    assert.are.equal("float32", y:dtype())
    H.close(y, fx.val_d1[1], 1e-6, 1e-6)
    H.close(fx.x:float():var(nil, {unbiased = false}), fx.val_all[13], 1e-6, 1e-6)
    H.close(fx.x:float():std(2, false), fx.val_d1[16], 1e-6, 1e-6)
    H.close(fx.x:float():norm("inf", -1), fx.val_dm1[11], 1e-6, 1e-6)
  end)

  it("prod's gradient where the input has zeros (none, one or two in a group)", function()
    H.close(grad_of(function(t) return t:prod() end, fx.xz2, 1, -1.5), fx.g_prodz_all, 1e-12,
      1e-12)
    H.close(grad_of(function(t) return t:prod(2) end, fx.xz2, 1, -1.5), fx.g_prodz_1, 1e-12,
      1e-12)
    H.close(grad_of(function(t) return t:prod(1) end, fx.xz2, 1, -1.5), fx.g_prodz_0, 1e-12,
      1e-12)
    local z = lunar.tensor({{1.5, 0, 2, 0.5}, {0, 1.2, -0.7, 0}}, {dtype = "float64",
      requires_grad = true})
    local ok, msg = lunar.autograd.gradcheck(function(t) return t:prod(2) end, {z})
    assert(ok, msg)
  end)

  it("propagates NaN", function()
    H.close(fx.xn:sum(2), fx.nan_sum_d1)
    H.close(fx.xn:amax(2), fx.nan_amax_d1)
    local v, i = fx.xn:max(2)
    H.close(v, fx.nan_maxv_d1)
    assert.are.same((fx.nan_maxi_d1 + 1):totable(), i:totable())
    assert.are.equal(fx.nan_argmin_all:item() + 1, fx.xn:argmin():item())
  end)

  it("reduces an empty dim like PyTorch", function()
    local e = lunar.zeros(2, 0, 3)
    H.close(e:sum(2), fx.empty_sum_d1)
    H.close(e:mean(2), fx.empty_mean_d1)
    H.close(e:prod(2), fx.empty_prod_d1)
    H.close(e:logsumexp(2), fx.empty_logsumexp_d1)
    H.close(e:norm(2, 2), fx.empty_norm2_d1)
    H.close(e:var(2), fx.empty_var_d1)
    assert.are.equal(0, e:sum():item())
  end)

  it("keeps integers: sum and prod give int64, logsumexp promotes", function()
    local xi, xi32 = fx.xi, fx.xi32
    assert.are.equal("int64", xi:sum():dtype())
    assert.are.equal(fx.int_sum_all:item(), xi:sum():item())
    assert.are.same(fx.int_sum_d2:totable(), xi:sum(3):totable())
    assert.are.same(fx.int_prod_d1:totable(), xi:prod(2):totable())
    assert.are.same(fx.int_amax_d0:totable(), xi:amax(1):totable())
    assert.are.equal("int64", xi:amax(1):dtype())
    assert.are.equal("int64", xi32:sum(3):dtype())
    assert.are.same(fx.int32_sum_d2:totable(), xi32:sum(3):totable())
    assert.are.same(fx.bool_sum_d2:totable(), xi:gt(0):sum(3):totable())
    local v, i = xi:max(3)
    assert.are.same(fx.int_maxv_d2:totable(), v:totable())
    assert.are.same((fx.int_maxi_d2 + 1):totable(), i:totable())
    H.close(xi:logsumexp(3), fx.int_lse_d2, 1e-6, 1e-6)
    assert.are.equal("float32", xi:logsumexp(3):dtype())
    -- int64 beyond 2^53 compares exactly
    local big = lunar.tensor{9007199254740993, 9007199254740992}
    assert.are.equal(9007199254740993, big:max(1):item())
    assert.are.equal(1, big:argmax():item())
  end)
end)

describe("max/min along a dim", function()
  for d = 0, 2 do
    for _, keep in ipairs({false, true}) do
      local k = "d" .. d .. (keep and "k" or "")
      it("values, first-occurrence indices and gradient over " .. k, function()
        local vs, is, gs = fx["mmv_" .. k], fx["mmi_" .. k], fx["mmg_" .. k]
        for j, name in ipairs({"max", "min"}) do
          local v, i = fx.x[name](fx.x, d + 1, keep)
          H.close(v, vs[j], 0, 0)
          assert.are.same((is[j] + 1):totable(), i:totable())
          assert.are.equal("int64", i:dtype())
          local g = grad_of(function(t) return (t[name](t, d + 1, keep)) end, fx.x, 1, -2.5)
          H.close(g, gs[j], 0, 0)
        end
      end)
    end
  end

  it("argmax/argmin over everything and along a dim", function()
    assert.are.equal(fx.argmax_all:item() + 1, fx.x:argmax():item())
    assert.are.equal(fx.argmin_all:item() + 1, fx.x:argmin():item())
    assert.are.same((fx.argmax_d1 + 1):totable(), fx.x:argmax(2):totable())
    assert.are.same((fx.argmin_d2k + 1):totable(), fx.x:argmin(-1, true):totable())
    assert.are.same({2, 3}, fx.x:max(3):size())
    assert.are.same({2, 1, 4}, fx.x:min(2, {keepdim = true}):size())
  end)

  it("a 0-d tensor is its own max at index 1", function()
    local v, i = lunar.tensor(3.5):max(1)
    assert.are.equal(3.5, v:item())
    assert.are.equal(1, i:item())
    local x = lunar.tensor(2.5, {dtype = "float64", requires_grad = true})
    local m = x:max(1)
    ;(m * 3):backward()
    assert.are.equal(3, x.grad:item())
  end)
end)

describe("cumsum and cumprod", function()
  it("match PyTorch along every dim, with gradients through zeros", function()
    for d = 1, 3 do
      H.close(fx.x:cumsum(d), fx.cumsum[d], 1e-12, 1e-12)
      H.close(fx.x:cumprod(d), fx.cumprod[d], 1e-12, 1e-12)
      H.close(grad_of(function(t) return t:cumsum(d) end, fx.xz, 0.25, -2), fx.g_cumsum[d],
        1e-12, 1e-12)
      H.close(grad_of(function(t) return t:cumprod(d) end, fx.xz, 0.25, -2), fx.g_cumprod[d],
        1e-12, 1e-12)
    end
    H.close(fx.x:cumsum(-1), fx.cumsum[3], 1e-12, 1e-12)
    H.close(lunar.cumprod(fx.x, -3), fx.cumprod[1], 1e-12, 1e-12)
  end)

  it("on a strided view and on float32", function()
    local t = fx.x:transpose(1, 3) -- [4, 3, 2], not contiguous
    H.close(t:cumsum(3), fx.cumsum[1]:transpose(1, 3), 1e-12, 1e-12)
    local f = fx.x:float():cumprod(2)
    assert.are.equal("float32", f:dtype())
    H.close(f, fx.cumprod[2], 1e-6, 1e-6)
  end)

  it("integer and bool inputs give int64", function()
    local c = fx.xi:cumsum(3)
    assert.are.equal("int64", c:dtype())
    assert.are.same(fx.int_cumsum_d2:totable(), c:totable())
    local p = fx.xi32:cumprod(2)
    assert.are.equal("int64", p:dtype())
    assert.are.same(fx.int32_cumprod_d1:totable(), p:totable())
    assert.are.same(fx.bool_cumsum_d2:totable(), fx.xi:gt(0):cumsum(3):totable())
  end)
end)

describe("gradcheck", function()
  local function check(fn, x)
    local ok, msg = lunar.autograd.gradcheck(fn, {x})
    assert(ok, msg)
  end
  -- distinct values: no ties, so max/min/norm inf are differentiable
  local function input()
    return lunar.tensor({{{0.3, -1.2, 2.1, 0.7}, {1.5, -0.4, 0.9, -2.2}, {0.6, 1.1, -0.8, 1.9}},
                         {{-1.7, 0.2, 1.3, -0.6}, {2.4, -1.1, 0.45, 1.6}, {-0.35, 0.8, -1.4, 1.2}}},
                        {dtype = "float64", requires_grad = true})
  end
  for _, cfg in ipairs({{nil, false}, {2, false}, {2, true}, {{1, 3}, false}, {{-1, 2}, true}}) do
    local dims, keep = cfg[1], cfg[2]
    local what = ("dims %s keepdim %s"):format(type(dims) == "table" and
      table.concat(dims, ",") or tostring(dims), tostring(keep))
    it("every differentiable reduction, " .. what, function()
      for _, op in ipairs({"sum", "mean", "prod", "amax", "amin", "logsumexp", "norm1",
                           "norm2", "norm3", "norminf", "var", "var_biased", "var_c2", "std",
                           "std_biased"}) do
        local ok, msg = lunar.autograd.gradcheck(function(t) return red(op, t, dims, keep) end,
          {input()})
        assert(ok, op .. " " .. what .. ": " .. tostring(msg))
      end
    end)
  end

  it("max/min along a dim, cumsum, cumprod (with a zero)", function()
    for _, keep in ipairs({false, true}) do
      check(function(t) return (t:max(2, keep)) end, input())
      check(function(t) return (t:min(-1, keep)) end, input())
    end
    for d = 1, 3 do
      check(function(t) return t:cumsum(d) end, input())
      check(function(t) return t:cumprod(d) end, input())
    end
    local z = lunar.tensor({{1.5, 0, 2, 0, 0.5}, {0, 1.2, -0.7, 0.9, 1.1}},
                           {dtype = "float64", requires_grad = true})
    check(function(t) return t:cumprod(2) end, z)
    check(function(t) return t:cumprod(1) end, z)
  end)
end)

describe("large inputs and threads", function()
  it("a full reduction of 10^6 elements matches a double sum, whatever the threads", function()
    local n = 1000000
    local x = (lunar.arange(n):double() * 0.001):sin() + 0.25
    local ref = 0
    for i = 0, n - 1 do ref = ref + (math.sin(i * 0.001) + 0.25) end
    local saved = lunar.get_num_threads()
    local results = {}
    for _, nth in ipairs({1, 2, 4}) do
      lunar.set_num_threads(nth)
      assert.are.equal(nth, lunar.get_num_threads())
      local s = x:sum():item()
      assert(math.abs(s - ref) <= 1e-9 * math.abs(ref), ("sum %.17g vs %.17g"):format(s, ref))
      local xf = x:float()
      results[#results + 1] = {s, x:mean():item(), x:var():item(), x:norm():item(),
                               x:logsumexp():item(), xf:sum():item(), x:view(1000, 1000):sum(1)}
    end
    lunar.set_num_threads(saved)
    for r = 2, #results do
      for k = 1, 6 do
        local a, b = results[1][k], results[r][k]
        assert(math.abs(a - b) <= 1e-12 * math.abs(a),
          ("result %d: %.17g vs %.17g"):format(k, a, b))
      end
      H.close(results[r][7], results[1][7], 1e-12, 0)
    end
    -- float32 input, double accumulation: close to the double reference
    local s32 = x:float():sum():item()
    assert(math.abs(s32 - ref) <= 1e-6 * math.abs(ref))
  end)

  it("max over 10^6 elements finds the first maximum", function()
    local x = lunar.zeros(1000000)
    x[777777] = 5
    x[900000] = 5
    local v, i = x:max(1)
    assert.are.equal(5, v:item())
    assert.are.equal(777777, i:item())
    assert.are.equal(500000500000, lunar.arange(1, 1000001):cumsum(1)[1000000])
  end)

  it("refuses a thread count below 1", function()
    H.raises(function() lunar.set_num_threads(0) end, "set_num_threads", "0")
  end)
end)

describe("bad input", function()
  local x = lunar.zeros(2, 3)
  it("dims out of range and dim 0 name the function", function()
    H.raises(function() x:sum(3) end, "sum", "dim 3", "2-d")
    H.raises(function() x:mean(0) end, "mean", "dim 0", "1-based")
    H.raises(function() x:amax({1, -3}) end, "amax", "dim -3")
    H.raises(function() x:max(3) end, "max", "dim 3")
    H.raises(function() x:argmin(0) end, "argmin", "dim 0")
    H.raises(function() x:cumsum(3) end, "cumsum", "dim 3")
    H.raises(function() x:cumprod() end, "cumprod", "dim must be an integer")
    H.raises(function() x:var({1, "a"}) end, "var", "integers")
    H.raises(function() x:norm(-1) end, "norm", "p must be >= 0")
  end)

  it("max over an empty dim fails, naming it", function()
    local e = lunar.zeros(2, 0)
    H.raises(function() e:max(2) end, "max", "empty dim 2", "[2, 0]")
    H.raises(function() e:argmin(2) end, "min", "empty")
    H.raises(function() e:amax(2) end, "amax", "empty")
    H.raises(function() e:min() end, "min", "empty")
  end)

  it("integer tensors: mean, norm, var, std need floats (as in PyTorch)", function()
    local i = lunar.tensor{{1, 2}, {3, 4}}
    H.raises(function() i:mean() end, "mean", "float", "int64")
    H.raises(function() i:norm() end, "norm", "float")
    H.raises(function() i:var(1) end, "var", "float")
    H.raises(function() i:std() end, "var", "float")
    H.raises(function() x:sum(x) end, "sum", "dim")
  end)
end)
