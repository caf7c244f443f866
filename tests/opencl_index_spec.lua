-- The OpenCL index family against the CPU (tag: opencl): arg-max/min, scans, gather and
-- scatter, index_select / index_add, masks, nonzero, sort / topk / unique, one_hot and the
-- indexing syntax, forward and backward, strided inputs and every dtype the CPU takes.
-- Indices and integers must match exactly; floats by normalised MSE (<= 1e-7). Skipped
-- when no OpenCL device exists.
local lunar = require("lunar")

if #lunar.devices() == 0 then
  describe("opencl index #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the OpenCL index spec is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local check, same = ocl.check, ocl.same

-- c:sort(...) on the CPU and g:sort(...) on the device give the same values and indices
local function sorts_alike(c, g, ...)
  local cv, ci = c:sort(...)
  local gv, gi = g:sort(...)
  same(gv, cv)
  same(gi, ci)
end

local FP64 = lunar.devices()[1].fp64

-- every dtype the device holds, floats first
local DTYPES = {"float32", "int32", "int64", "uint8", "bool"}
if FP64 then table.insert(DTYPES, 2, "float64") end

-- small integers with many ties, as dtype dt, on the CPU
local function ties(shape, dt, hi)
  return lunar.randint(0, hi or 4, table.unpack(shape)):to(dt)
end

describe("opencl index kernels against the CPU #opencl", function()
  before_each(function() lunar.manual_seed(4321) end)

  it("max/min along a dim with indices, argmax/argmin: ties, NaN, strided, every dtype", function()
    for _, dt in ipairs(DTYPES) do
      local base = ties({5, 6, 7}, dt)
      local c, g = base:transpose(1, 3), base:to(DEV):transpose(1, 3) -- [7, 6, 5], strided
      assert.is_false(g:is_contiguous())
      for dim = 1, 3 do
        for _, op in ipairs({"max", "min"}) do
          local cv, ci = c[op](c, dim)
          local gv, gi = g[op](g, dim)
          same(gv, cv)
          same(gi, ci)
          cv, ci = c[op](c, dim, true)
          gv, gi = g[op](g, dim, true)
          same(gv, cv)
          same(gi, ci)
        end
        same(g:argmax(dim), c:argmax(dim))
        same(g:argmin(dim), c:argmin(dim))
      end
      same(g:argmax(), c:argmax())
    end
    local c = lunar.tensor{{1, 0 / 0, 3, 0 / 0}, {2, 5, 5, -1}, {-math.huge, 0 / 0, 7, 7}}
    local g = c:to(DEV)
    for dim = 1, 2 do
      for _, op in ipairs({"max", "min"}) do
        local cv, ci = c[op](c, dim)
        local gv, gi = g[op](g, dim)
        same(gv, cv)
        same(gi, ci)
      end
    end
    local cv, ci = lunar.tensor(2.5):max(1)
    local gv, gi = lunar.tensor(2.5):to(DEV):max(1) -- a 0-d tensor is its own max
    same(gv, cv)
    same(gi, ci)
  end)

  it("cumsum and cumprod along each dim, strided, floats and integers", function()
    for _, dt in ipairs(DTYPES) do
      local c = (lunar.randn(4, 5, 6) * (dt:find("float") and 1 or 3)):to(dt)
      if dt == "uint8" then c = ties({4, 5, 6}, dt, 9) end
      local cs, gs = c:permute(3, 1, 2), c:to(DEV):permute(3, 1, 2)
      for dim = 1, 3 do
        local f = dt:find("float") and check or same
        f(gs:cumsum(dim), cs:cumsum(dim))
        f(gs:cumprod(dim), cs:cumprod(dim))
      end
    end
    same(lunar.tensor(3):to(DEV):cumsum(1), lunar.tensor(3):cumsum(1))
  end)

  it("gather and index_select, strided x and index, int32 and int64 indices", function()
    for _, dt in ipairs(DTYPES) do
      local base = (lunar.randn(6, 5, 4) * 5):to(dt)
      local c, g = base:transpose(1, 2), base:to(DEV):transpose(1, 2) -- [5, 6, 4]
      for _, idt in ipairs({"int64", "int32"}) do
        local idx = lunar.randint(1, 7, 3, 4, 2):to(idt) -- along dim 2 (size 6)
        same(g:gather(2, idx:to(DEV)), c:gather(2, idx))
        local ib = lunar.randint(1, 6, 4, 3, 3):to(idt)
        same(g:gather(1, ib:to(DEV):transpose(1, 2)), c:gather(1, ib:transpose(1, 2)))
        local sel = lunar.tensor({4, 1, 1, 6, 2, 3, 6}, {dtype = idt})
        same(g:index_select(2, sel:to(DEV)), c:index_select(2, sel))
        local sel4 = lunar.tensor({4, 1, 1, 3, 2, 3, 4}, {dtype = idt})
        same(g:index_select(3, sel4:to(DEV):narrow(1, 2, 5)), c:index_select(3,
             sel4:narrow(1, 2, 5)))
        local every = lunar.tensor({6, 5, 4, 3, 2, 1, 1, 2}, {dtype = idt})
        local sv = every:to(DEV):view(4, 2):t():reshape(8) -- a copy of a strided index
        same(g:index_select(2, every:to(DEV)):index_select(2, sv), c:index_select(2, every)
             :index_select(2, every:view(4, 2):t():reshape(8)))
      end
    end
  end)

  it("scatter and scatter_add: duplicates in order, short and long lanes, every dtype", function()
    for _, dt in ipairs(DTYPES) do
      local x = (lunar.randn(4, 6, 3) * 4):to(dt)
      local gx = x:to(DEV)
      -- short lanes (walked) with duplicates: the last write wins, adds happen in order
      local idx = lunar.randint(1, 7, 4, 5, 3)
      local src = (lunar.randn(4, 5, 3) * 4):to(dt)
      same(gx:scatter(2, idx:to(DEV), src:to(DEV)), x:scatter(2, idx, src))
      local f = dt:find("float") and check or same
      f(gx:scatter_add(2, idx:to(DEV), src:to(DEV)), x:scatter_add(2, idx, src))
      -- long lanes (through the sorted index): 40 sources for 6 places
      local li = lunar.randint(1, 7, 3, 40, 2)
      local ls = (lunar.randn(3, 40, 2) * 4):to(dt)
      same(gx:scatter(2, li:to(DEV), ls:to(DEV)), x:scatter(2, li, ls))
      f(gx:scatter_add(2, li:to(DEV), ls:to(DEV)), x:scatter_add(2, li, ls))
      -- a smaller index than src, strided operands, dim 1 and 3
      local big = (lunar.randn(5, 7, 4) * 4):to(dt)
      local si = lunar.randint(1, 5, 3, 2, 3)
      same(gx:scatter(1, si:to(DEV), big:to(DEV)), x:scatter(1, si, big))
      local tib = lunar.randint(1, 4, 2, 4, 3)
      local tsb = (lunar.randn(2, 4, 3) * 4):to(dt)
      local ti, tsrc = tib:transpose(1, 3), tsb:transpose(1, 3) -- [3, 4, 2] strided
      local gti, gts = tib:to(DEV):transpose(1, 3), tsb:to(DEV):transpose(1, 3)
      same(gx:scatter(3, gti, gts), x:scatter(3, ti, tsrc))
      f(gx:scatter_add(3, gti, gts), x:scatter_add(3, ti, tsrc))
      -- a number as src, and the in-place forms into a strided destination
      same(gx:scatter(2, idx:to(DEV), 1), x:scatter(2, idx, 1))
      local cd, gd = x:clone():transpose(1, 3), gx:clone():transpose(1, 3) -- [3, 6, 4]
      local i2 = lunar.randint(1, 7, 3, 30, 4)
      local s2 = (lunar.randn(3, 30, 4) * 4):to(dt)
      cd:scatter_add_(2, i2, s2)
      gd:scatter_add_(2, i2:to(DEV), s2:to(DEV))
      f(gd, cd)
      cd:scatter_(2, i2, s2)
      gd:scatter_(2, i2:to(DEV), s2:to(DEV))
      same(gd, cd)
    end
  end)

  it("index_add with alpha and duplicates, index_copy_ and index_fill_, every dtype", function()
    for _, dt in ipairs(DTYPES) do
      local f = dt:find("float") and check or same
      local x = (lunar.randn(5, 4, 3) * 4):to(dt)
      local gx = x:to(DEV)
      for _, n in ipairs({7, 50}) do -- walked, and through the sorted index
        local idx = lunar.randint(1, 5, n)
        local src = (lunar.randn(n, 4, 3) * 4):to(dt)
        f(gx:index_add(1, idx:to(DEV), src:to(DEV)), x:index_add(1, idx, src))
        if dt ~= "bool" then
          f(gx:index_add(1, idx:to(DEV), src:to(DEV), {alpha = 2}),
            x:index_add(1, idx, src, {alpha = 2}))
        end
        local i3 = lunar.randint(1, 4, n)
        local s3b = (lunar.randn(3, 5, n) * 4):to(dt)
        local s3, gs3 = s3b:permute(2, 3, 1), s3b:to(DEV):permute(2, 3, 1) -- [5, n, 3]
        f(gx:index_add(2, i3:to(DEV), gs3), x:index_add(2, i3, s3))
        local cc, gc = x:clone(), gx:clone()
        local ri, rs = lunar.randint(1, 4, n), (lunar.randn(5, 4, n) * 4):to(dt)
        cc:index_add_(3, ri, rs)
        gc:index_add_(3, ri:to(DEV), rs:to(DEV))
        f(gc, cc)
      end
      local perm = lunar.tensor{3, 1, 4}
      local vals = (lunar.randn(5, 3, 3) * 4):to(dt)
      local cc, gc = x:clone(), gx:clone()
      cc:index_copy_(2, perm, vals)
      gc:index_copy_(2, perm:to(DEV), vals:to(DEV))
      same(gc, cc)
      cc:index_fill_(3, lunar.tensor{2, 2}, 1)
      gc:index_fill_(3, lunar.tensor{2, 2}:to(DEV), 1)
      same(gc, cc)
    end
  end)

  it("masked_select, masked_fill, masked_scatter_, nonzero and count_nonzero", function()
    for _, dt in ipairs(DTYPES) do
      local x = (lunar.randn(6, 7, 5) * 2):to(dt)
      local cx, gx = x:transpose(1, 3), x:to(DEV):transpose(1, 3)
      local mask = lunar.randn(5, 7, 6):gt(0.3)
      local gm = mask:to(DEV)
      same(gx:masked_select(gm), cx:masked_select(mask))
      same(gx:masked_select(gm:narrow(1, 1, 1)), cx:masked_select(mask:narrow(1, 1, 1)))
      same(gx:masked_fill(gm, 1), cx:masked_fill(mask, 1))
      same(gx:nonzero(), cx:nonzero())
      assert.are.equal(cx:count_nonzero(), gx:count_nonzero())
      local cc, gc = cx:clone(), gx:clone()
      local src = (lunar.randn(mask:count_nonzero()) * 3):to(dt)
      cc:masked_scatter_(mask, src)
      gc:masked_scatter_(gm, src:to(DEV))
      same(gc, cc)
    end
    -- past one chunk of the kernels (4096 elements), strided, with NaN and -0
    local big = lunar.randn(70, 150):gt(1.2):to("float32"):t()
    big[{1, 1}] = 0 / 0
    big[{2, 1}] = -0.0
    local gbig = big:t():contiguous():to(DEV):t()
    assert.is_false(gbig:is_contiguous())
    same(gbig:nonzero(), big:nonzero())
    assert.are.equal(big:count_nonzero(), gbig:count_nonzero())
    same(lunar.zeros(3, 4):to(DEV):nonzero(), lunar.zeros(3, 4):nonzero())
    same(lunar.tensor(5):to(DEV):nonzero(), lunar.tensor(5):nonzero())
    same(lunar.zeros(0, 3):to(DEV):nonzero(), lunar.zeros(0, 3):nonzero())
    assert.are.equal(0, lunar.zeros(0):to(DEV):count_nonzero())
  end)

  it("sort is stable with ties, both directions, NaN last, strided, every dtype", function()
    for _, dt in ipairs(DTYPES) do
      local base = ties({6, 5, 37}, dt, 5)
      local c, g = base:transpose(1, 3), base:to(DEV):transpose(1, 3) -- [37, 5, 6], ties
      for dim = 1, 3 do
        for _, desc in ipairs({false, true}) do
          sorts_alike(c, g, dim, desc)
        end
      end
      sorts_alike(c, g) -- the last dim by default
    end
    -- one long line (several merge passes, not a power of two) with NaN, -0 and +-inf
    local c = lunar.randn(1001):mul(3):round()
    c[5], c[600], c[1000], c[7], c[8] = 0 / 0, 0 / 0, -0.0, math.huge, -math.huge
    local g = c:to(DEV)
    for _, desc in ipairs({false, true}) do
      sorts_alike(c, g, 1, {descending = desc})
    end
    sorts_alike(lunar.tensor(1.5), lunar.tensor(1.5):to(DEV))
  end)

  it("topk, unique and one_hot", function()
    for _, dt in ipairs(DTYPES) do
      local base = ties({7, 9}, dt, 6)
      local c, g = base:t(), base:to(DEV):t() -- [9, 7]
      for _, largest in ipairs({true, false}) do
        for dim = 1, 2 do
          local cv, ci = c:topk(3, dim, {largest = largest})
          local gv, gi = g:topk(3, dim, {largest = largest})
          same(gv, cv)
          same(gi, ci)
        end
      end
      local cu, cinv, ccnt = c:unique({return_inverse = true, return_counts = true})
      local gu, ginv, gcnt = g:unique({return_inverse = true, return_counts = true})
      same(gu, cu)
      same(ginv, cinv)
      same(gcnt, ccnt)
    end
    local labels = lunar.randint(1, 6, 4, 3):t()
    same(labels:to(DEV):one_hot(5), labels:one_hot(5))
    same(labels:to(DEV):one_hot(), labels:one_hot())
    same(lunar.one_hot(labels:to(DEV):to("int32"), 7), lunar.one_hot(labels:to("int32"), 7))
  end)

  it("the indexing syntax: t[idx], t[mask], t[{ {}, idx }] and their assignment", function()
    local c = lunar.randn(5, 4)
    local g = c:to(DEV)
    local idx, mask = lunar.tensor{5, 1, 1, 3}, c:gt(0)
    same(g[idx:to(DEV)], c[idx])
    same(g[mask:to(DEV)], c[mask])
    local cols = lunar.tensor{4, 2, 4}
    same(g[{ {}, cols:to(DEV) }], c[{ {}, cols }])
    local cc, gc = c:clone(), g:clone()
    cc[mask] = 0
    gc[mask:to(DEV)] = 0
    same(gc, cc)
    cc[mask] = lunar.arange(1, mask:count_nonzero() + 1):to("float32")
    gc[mask:to(DEV)] = lunar.arange(1, mask:count_nonzero() + 1):to("float32"):to(DEV)
    same(gc, cc)
    cc[lunar.tensor{2, 4}] = -1
    gc[lunar.tensor{2, 4}:to(DEV)] = -1
    same(gc, cc)
  end)

  it("fails on an index out of range, as the CPU does", function()
    local g = lunar.randn(3, 4):to(DEV)
    local function raises(fn, frag)
      local ok, msg = pcall(fn)
      assert.is_false(ok)
      assert.truthy(tostring(msg):find(frag, 1, true), tostring(msg))
    end
    local bad = lunar.tensor{{1, 5}, {2, 1}, {1, 1}}:to(DEV)
    raises(function() return g:gather(2, bad) end, "gather: index 5 out of range")
    raises(function() return g:gather(2, bad - 1) end, "gather: index 0 out of range")
    raises(function() return g:scatter(2, bad, 1) end, "scatter: index 5 out of range")
    raises(function() return g:scatter_add(2, bad, g:narrow(2, 1, 2)) end,
           "scatter_add: index 5 out of range")
    local b1 = lunar.tensor{1, 4}:to(DEV)
    raises(function() return g:index_select(1, b1) end, "index_select: index 4 out of range")
    raises(function() return g:index_add(1, b1, lunar.ones(2, 4):to(DEV)) end,
           "index_add: index 4 out of range")
    raises(function() return g[b1] end, "index 4 out of range")
    raises(function() g[b1] = 0 end, "index 4 out of range")
    raises(function() return lunar.tensor{1, 9}:to(DEV):one_hot(4) end,
           "one_hot: class 9 out of range")
    same(g, g) -- unchanged by the failures above
  end)
end)

describe("opencl index autograd #opencl", function()
  before_each(function() lunar.manual_seed(77) end)

  -- gradients of f (given the leaves and their device) on the CPU and through OpenCL
  local function grads(f, shapes)
    local leaves, dev = {}, {}
    for i, s in ipairs(shapes) do
      leaves[i] = lunar.randn(s, {dtype = FP64 and "float64" or "float32"})
      leaves[i]:requires_grad_(true)
    end
    local loss = f("cpu", table.unpack(leaves))
    loss:backward()
    local expected = {}
    for i, l in ipairs(leaves) do expected[i] = l.grad:clone() end
    for i, l in ipairs(leaves) do
      dev[i] = l:detach():to(DEV)
      dev[i]:requires_grad_(true)
    end
    f(DEV, table.unpack(dev)):backward()
    for i = 1, #dev do check(dev[i].grad, expected[i]) end
  end

  -- fixed weights so that each output element's gradient differs
  local function wsum(t)
    return (t * lunar.arange(1, t:numel() + 1):to(t:dtype()):to(t:device()):view_as(t)):sum()
  end

  it("max/min along a dim, cumsum and cumprod", function()
    grads(function(_, a) return wsum(a:max(2)) + wsum(a:t():min(1, true)) end, {{4, 6}})
    grads(function(_, a) return wsum(a:transpose(1, 2):cumsum(3)) end, {{3, 4, 5}})
    grads(function(_, a) return wsum(a:cumprod(1)) end, {{6, 3}})
    grads(function(dev, a) -- cumprod through zeros
      local z = lunar.tensor{{1, 1, 0}, {0, 1, 1}, {1, 0, 0}, {1, 1, 1}}:to(a:dtype()):to(dev)
      return wsum((a * z):cumprod(1))
    end, {{4, 3}})
  end)

  it("gather, scatter, scatter_add, index_select, index_add", function()
    local idx = lunar.randint(1, 6, 4, 9)
    grads(function(dev, a) return wsum(a:gather(2, idx:to(dev))) end, {{4, 5}})
    local long = lunar.randint(1, 6, 2, 40)
    grads(function(dev, a) return wsum(a:gather(2, long:to(dev))) end, {{2, 5}})
    local si = lunar.randint(1, 5, 3, 5)
    grads(function(dev, a, s) return wsum(a:scatter(1, si:to(dev), s)) end, {{4, 5}, {3, 5}})
    grads(function(dev, a, s) return wsum(a:scatter_add(1, si:to(dev), s)) end,
          {{4, 5}, {3, 5}})
    local sel = lunar.tensor{3, 1, 3, 2, 3}
    grads(function(dev, a) return wsum(a:index_select(2, sel:to(dev))) end, {{2, 3}})
    local many = lunar.randint(1, 4, 60)
    grads(function(dev, a) return wsum(a:t():index_select(2, many:to(dev))) end, {{3, 2}})
    grads(function(dev, a, s) return wsum(a:index_add(1, sel:to(dev), s, {alpha = 0.5})) end,
          {{3, 4}, {5, 4}})
  end)

  it("masked_select, the indexing syntax, sort and topk", function()
    local mask = lunar.randn(4, 5):gt(0)
    grads(function(dev, a) return wsum(a:masked_select(mask:to(dev))) end, {{4, 5}})
    grads(function(dev, a) return wsum(a[mask:to(dev)]) end, {{4, 5}})
    local idx = lunar.tensor{4, 1, 4}
    grads(function(dev, a) return wsum(a[idx:to(dev)]) end, {{4, 3}})
    grads(function(_, a) return wsum(a:sort(2, true)) end, {{3, 50}})
    grads(function(_, a) return wsum(a:t():sort(2)) end, {{7, 4}})
    grads(function(_, a) return wsum(a:topk(3, 1)) end, {{8, 3}})
  end)
end)

describe("opencl sort, merge path #opencl", function()
  -- sort_init sorts runs of 16, each merge pass one work-item per 16 outputs (index.cl):
  -- line lengths around those sizes and not powers of two, several lines at once, heavy
  -- ties (stability: the indices must equal the CPU's), NaN and infinities
  before_each(function() lunar.manual_seed(99) end)

  it("lengths 1..16, 17, 31..33, 100, 1000, 4099, many lines, every dtype", function()
    for _, dt in ipairs(DTYPES) do
      for _, len in ipairs({1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 4099}) do
        local lines = len > 1000 and 2 or 5
        local c = ties({lines, len}, dt, len > 100 and 50 or 4)
        local g = c:to(DEV)
        for _, desc in ipairs({false, true}) do
          sorts_alike(c, g, 2, desc)
        end
      end
    end
  end)

  it("NaN, infinities and equal keys in long lines, along a strided dim", function()
    local dts = FP64 and {"float32", "float64"} or {"float32"}
    for _, dt in ipairs(dts) do
      local c = lunar.randn({3, 2500}, {dtype = dt}):mul(2):round()
      local v = c:view(-1)
      for _, i in ipairs({1, 17, 18, 600, 2500, 2501, 4000, 7500}) do
        v:narrow(1, i, 1):fill_(0 / 0)
      end
      v:narrow(1, 40, 1):fill_(math.huge)
      v:narrow(1, 41, 1):fill_(-math.huge)
      v:narrow(1, 3000, 1):fill_(-0.0)
      local g = c:to(DEV)
      for _, desc in ipairs({false, true}) do
        sorts_alike(c, g, 2, desc)
        sorts_alike(c:t(), g:t(), 1, desc) -- the same lines, strided
      end
    end
  end)

  it("scatter_add and index_add through the sorted index (long lanes)", function()
    local dst = lunar.zeros(4, 7)
    local idx = lunar.randint(1, 8, {4, 300})
    local src = lunar.randn(4, 300)
    check(dst:to(DEV):scatter_add(2, idx:to(DEV), src:to(DEV)), dst:scatter_add(2, idx, src))
    local i1 = lunar.randint(1, 8, {500})
    local s1 = lunar.randn(3, 500)
    local d1 = lunar.zeros(3, 7)
    check(d1:to(DEV):index_add(2, i1:to(DEV), s1:to(DEV)), d1:index_add(2, i1, s1))
  end)
end)
