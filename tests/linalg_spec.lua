local lunar = require("lunar")
local H = require("tests.helper")
local fx = require("tests.fixtures").load("linalg")

local F64 = {dtype = "float64", requires_grad = true}

local function against_torch(name, keys, fn, prep)
  H.against_torch(fx, name, keys, fn, prep, 1e-5)
end
local gradcheck, leaf = H.gradcheck, H.leaf

-- the same values in a transposed layout (the storage holds x^T), kept in the graph
local function transposed(x)
  return x:t():contiguous():t()
end

describe("linalg values and gradients against PyTorch", function()
  it("mm, also with transposed and strided operands", function()
    against_torch("mm", {"a", "b"}, lunar.mm)
    against_torch("mm", {"a", "b"}, function(a, b) return a:mm(b) end,
      transposed)
    -- a column slice: row stride 8, not a transposed layout
    against_torch("mm", {"a", "b"}, lunar.mm, function(x, i)
      if i == 1 then return lunar.cat({x, x}, 2):narrow(2, 1, 4) end
      return x
    end)
  end)

  it("bmm, mv, dot, outer", function()
    against_torch("bmm", {"a", "b"}, lunar.bmm)
    against_torch("bmm", {"a", "b"}, lunar.bmm,
      function(x) return x:transpose(2, 3):contiguous():transpose(2, 3) end)
    against_torch("mv", {"a", "v"}, lunar.mv)
    against_torch("mv", {"a", "v"}, function(a, v) return a:mv(v) end,
      function(x, i) return i == 1 and transposed(x) or x end)
    against_torch("dot", {"a", "b"}, lunar.dot)
    assert.are.equal(0, lunar.dot(fx.dot_a, fx.dot_b):dim())
    against_torch("outer", {"a", "b"}, lunar.outer)
  end)

  it("addmm with a broadcast input, beta and alpha", function()
    against_torch("addmm", {"i", "a", "b"}, function(i, a, b)
      return lunar.addmm(i, a, b, {beta = 0.5, alpha = 2})
    end)
    against_torch("addmmf", {"i", "a", "b"}, function(i, a, b) return i:addmm(a, b) end)
    against_torch("addmmf", {"i", "a", "b"}, lunar.addmm, function(x, i)
      return i > 1 and transposed(x) or x
    end)
  end)

  it("addmm with beta = 0 ignores the input, NaNs included", function()
    local i = lunar.full({2, 2}, 0 / 0)
    local a, b = lunar.eye(2), lunar.tensor{{1, 2}, {3, 4}}:float()
    H.close(lunar.addmm(i, a, b, {beta = 0}), {{1, 2}, {3, 4}})
  end)

  it("linear: x @ w^T + b with PyTorch's weight layout", function()
    against_torch("linear", {"x", "w", "b"}, lunar.linear)
    against_torch("linear", {"x", "w", "b"}, function(x, w, b) return x:linear(w, b) end,
      function(t, i) return i == 2 and transposed(t) or t end)
    -- a non-contiguous input whose rows cannot be flattened into one stride
    against_torch("linear", {"x", "w", "b"}, lunar.linear, function(t, i)
      return i == 1 and t:transpose(1, 2):contiguous():transpose(1, 2) or t
    end)
    against_torch("linear1", {"x", "w"}, lunar.linear)
    assert.are.same({5}, lunar.linear(fx.linear1_x, fx.linear1_w):size())
  end)

  it("linear and addmm equal matmul + add", function()
    local x, w, b = leaf(4, 3), leaf(2, 3), leaf(2)
    H.close(lunar.linear(x, w, b), x:matmul(w:t()) + b, 1e-12, 1e-12)
    H.close(lunar.addmm(b, x, w:t(), {beta = 3, alpha = -1}), b * 3 - x:matmul(w:t()), 1e-12,
      1e-12)
  end)

  it("matmul takes broadcast (stride 0) operands", function()
    local row = lunar.tensor{1, 2, 3}:float():expand(4, 3)
    local w = lunar.ones(3, 2)
    H.close(row:matmul(w), {{6, 6}, {6, 6}, {6, 6}, {6, 6}})
    H.close(lunar.linear(row, w:t()), {{6, 6}, {6, 6}, {6, 6}, {6, 6}})
  end)

  it("an empty inner dim gives zeros, and empty gradients", function()
    local a = lunar.zeros(3, 0, {requires_grad = true})
    local b = lunar.zeros(0, 4, {requires_grad = true})
    local c = a:mm(b)
    assert.are.same(lunar.zeros(3, 4):totable(), c:totable())
    c:sum():backward()
    assert.are.same({3, 0}, a.grad:size())
    assert.are.same({0, 4}, b.grad:size())
    assert.are.same({0, 2}, lunar.zeros(0, 3):mm(lunar.ones(3, 2)):size())
  end)
end)

describe("linalg gradcheck (float64)", function()
  it("mm, bmm, mv, dot, outer", function()
    gradcheck(lunar.mm, {leaf(3, 4), leaf(4, 2)})
    gradcheck(function(a, b) return lunar.mm(a:t(), b) end, {leaf(4, 3), leaf(4, 2)})
    gradcheck(lunar.bmm, {leaf(2, 3, 4), leaf(2, 4, 2)})
    gradcheck(lunar.mv, {leaf(3, 4), leaf(4)})
    gradcheck(lunar.dot, {leaf(5), leaf(5)})
    gradcheck(lunar.outer, {leaf(3), leaf(4)})
  end)

  it("addmm and linear", function()
    gradcheck(function(i, a, b) return lunar.addmm(i, a, b, {beta = 0.5, alpha = -2}) end,
      {leaf(1, 2), leaf(3, 4), leaf(4, 2)})
    gradcheck(function(i, a, b) return lunar.addmm(i, a:t(), b) end,
      {leaf(3, 2), leaf(4, 3), leaf(4, 2)})
    gradcheck(lunar.linear, {leaf(2, 3, 4), leaf(5, 4), leaf(5)})
    gradcheck(function(x, w) return lunar.linear(x, w) end, {leaf(4), leaf(3, 4)})
    gradcheck(function(x, w, b) return lunar.linear(x:transpose(1, 2), w, b) end,
      {leaf(3, 2, 4), leaf(5, 4), leaf(5)})
    local x = lunar.tensor({{1, 2}, {3, 4}}, F64)
    gradcheck(function(w) return lunar.linear(x, w) end, {leaf(3, 2)})
  end)
end)

describe("linalg bad input", function()
  it("names the op and the shapes", function()
    H.raises(function() lunar.mm(lunar.ones(64, 784), lunar.ones(256, 10)) end,
      "mm: [64, 784] x [256, 10]: inner sizes differ (784 vs 256)")
    H.raises(function() lunar.matmul(lunar.ones(64, 784), lunar.ones(256, 10)) end,
      "matmul: [64, 784] x [256, 10]: inner sizes differ (784 vs 256)")
    H.raises(function() lunar.mm(lunar.ones(2, 3, 4), lunar.ones(2, 4, 5)) end,
      "mm", "2-d", "[2, 3, 4]", "[2, 4, 5]")
    H.raises(function() lunar.bmm(lunar.ones(2, 3, 4), lunar.ones(3, 4, 5)) end,
      "bmm", "batch sizes differ (2 vs 3)")
    H.raises(function() lunar.bmm(lunar.ones(3, 4), lunar.ones(4, 5)) end, "bmm", "3-d")
    H.raises(function() lunar.mv(lunar.ones(3, 4), lunar.ones(5)) end, "mv", "(4 vs 5)")
    H.raises(function() lunar.dot(lunar.ones(3), lunar.ones(4)) end, "dot", "[3] x [4]")
    H.raises(function() lunar.dot(lunar.ones(3, 1), lunar.ones(3)) end, "dot", "1-d")
    H.raises(function() lunar.outer(lunar.ones(3, 1), lunar.ones(3)) end, "outer", "1-d")
    H.raises(function() lunar.addmm(lunar.ones(4), lunar.ones(2, 3), lunar.ones(3, 5)) end,
      "addmm", "input [4]", "[2, 5]")
    H.raises(function() lunar.linear(lunar.ones(64, 784), lunar.ones(10, 256)) end,
      "linear", "[64, 784]", "[10, 256]", "(784 vs 256)")
    H.raises(function() lunar.linear(lunar.ones(2, 3), lunar.ones(4, 3), lunar.ones(5)) end,
      "linear", "bias [5]", "4")
    H.raises(function() lunar.linear(lunar.ones(2, 3), lunar.ones(3)) end, "linear", "weight")
  end)

  it("refuses mixed and integer dtypes", function()
    H.raises(function() lunar.mm(lunar.ones(2, 2), lunar.ones(2, 2, {dtype = "float64"})) end,
      "mm", "float32", "float64")
    local i64 = lunar.ones(2, 2, {dtype = "int64"})
    H.raises(function() lunar.mm(i64, i64) end, "mm", "int64")
    H.raises(function()
      lunar.addmm(lunar.ones(2, {dtype = "float64"}), lunar.ones(2, 2), lunar.ones(2, 2))
    end, "addmm", "float64", "float32")
    H.raises(function()
      lunar.linear(lunar.ones(2, 2), lunar.ones(2, 2), lunar.ones(2, {dtype = "float64"}))
    end, "linear", "bias float64")
  end)
end)

describe("mid-sized products split between threads", function()
  it("match one thread and a float64 reference in every operand layout", function()
    -- from 2^20 to 2^26 multiply-adds, two threads take a block of rows each (columns when
    -- there are fewer than 32 rows, or when B is stored transposed, a weight, and has more
    -- columns than A has rows), each block one single-threaded OpenBLAS call
    lunar.manual_seed(8)
    local saved = lunar.get_num_threads()
    for _, dtype in ipairs({"float32", "float64"}) do
      local opts = {dtype = dtype}
      for _, mnk in ipairs({{64, 256, 784}, {20, 300, 200}, {129, 70, 130}, {33, 1000, 40}}) do
        local m, n, k = mnk[1], mnk[2], mnk[3]
        local a, b = lunar.randn(m, k, opts), lunar.randn(k, n, opts)
        local at, bt = a:t():contiguous():t(), b:t():contiguous():t() -- transposed storage
        local ref = a:to("float64"):matmul(b:to("float64"))
        local tol = dtype == "float32" and 1e-4 or 1e-10
        for _, pair in ipairs({{a, b}, {at, b}, {a, bt}, {at, bt}}) do
          lunar.set_num_threads(1)
          local one = pair[1]:matmul(pair[2])
          lunar.set_num_threads(2)
          local two = pair[1]:matmul(pair[2])
          lunar.set_num_threads(saved)
          H.close(two, one, tol, tol)
          H.close(two:to("float64"), ref, tol, tol)
        end
        -- a linear layer's product (the weight stored [n, k], a bias written first and the
        -- product added on top) and addmm's beta, on both threads
        local w, bias, c = b:t():contiguous(), lunar.randn(n, opts), lunar.randn(m, n, opts)
        local r64 = {ref + bias:to("float64"), c:to("float64") * 0.5 + ref * 2}
        for th = 1, 2 do
          lunar.set_num_threads(th)
          local got = {lunar.linear(a, w, bias),
            lunar.addmm(c, a, w:t(), {beta = 0.5, alpha = 2})}
          lunar.set_num_threads(saved)
          for i = 1, 2 do H.close(got[i]:to("float64"), r64[i], tol, tol) end
        end
      end
    end
  end)
end)

describe("the BLAS", function()
  it("names OpenBLAS's kernel set, the one OPENBLAS_CORETYPE asks for", function()
    local name = lunar.blas_core()
    assert.is_true(name == nil or (type(name) == "string" and #name > 0))
    if name == nil then return end -- built against another BLAS
    local lua = 'LUA_PATH_5_4="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="./?.so;;" lua5.4'
    local p = io.popen("OPENBLAS_CORETYPE=Sandybridge " .. lua ..
      " -e 'print(require(\"lunar\").blas_core())' 2>&1")
    local out = p:read("a")
    p:close()
    assert.are.equal("Sandybridge\n", out)
  end)
end)

describe("matmul with one row (the gemv path)", function()
  it("matches an element-wise reference for every operand layout", function()
    lunar.manual_seed(5)
    for _, dtype in ipairs({"float32", "float64"}) do
      local opts = {dtype = dtype}
      local a = lunar.randn(1, 7, opts)
      local b = lunar.randn(7, 5, opts)
      local ref = (a:t() * b):sum(1, true) -- [1, 5]
      local a_strided = lunar.randn(7, 3, opts)[{ {}, {2} }]:t() -- a [1, 7] view with stride 3
      local ref2 = (a_strided:t() * b):sum(1, true)
      local bt = b:t():contiguous():t() -- the same values stored as [5, 7]
      H.close(a:matmul(b), ref, 1e-5, 1e-5)
      H.close(a:matmul(bt), ref, 1e-5, 1e-5)
      H.close(a_strided:matmul(b), ref2, 1e-5, 1e-5)
      H.close(a_strided:matmul(bt), ref2, 1e-5, 1e-5)
      H.close(lunar.tensor(a:totable()[1], opts):matmul(b), ref:view(5), 1e-5, 1e-5) -- 1-d
      local ba, bb = lunar.randn(3, 1, 7, opts), lunar.randn(3, 7, 5, opts)
      H.close(ba:bmm(bb), (ba:transpose(2, 3) * bb):sum(2, true), 1e-5, 1e-5)
      local lin = lunar.linear(a, bt:t():contiguous(), lunar.ones(5, opts)) -- weight [5, 7]
      H.close(lin, ref + 1, 1e-5, 1e-5)
    end
  end)

  it("sums rows longer than its vectors, with a tail, for any row count; alpha and beta", function()
    lunar.manual_seed(6)
    for _, dtype in ipairs({"float32", "float64"}) do
      local opts = {dtype = dtype}
      for _, k in ipairs({16, 37, 64, 785}) do
        for _, n in ipairs({1, 3, 4, 6, 9}) do
          local x, w, b = lunar.randn(1, k, opts), lunar.randn(n, k, opts), lunar.randn(n, opts)
          local ref = (x * w):sum(2):view(1, n) -- [1, n]
          local tol = dtype == "float32" and 1e-4 or 1e-10
          H.close(lunar.linear(x, w, b), ref + b, tol, tol)
          H.close(lunar.linear(x, w), ref, tol, tol)
          H.close(x:matmul(w:t()), ref, tol, tol)
          local c = lunar.randn(1, n, opts)
          H.close(lunar.addmm(c, x, w:t(), {beta = 0.5, alpha = 2}), c * 0.5 + ref * 2, tol, tol)
          local nan = lunar.full({1, n}, 0 / 0, opts)
          H.close(lunar.addmm(nan, x, w:t(), {beta = 0}), ref, tol, tol)
        end
      end
    end
  end)

  it("gives the same bits on two threads as on one for products split between them", function()
    -- from 64K weights the one-row product runs in two row blocks, one on the assist thread
    lunar.manual_seed(7)
    local saved = lunar.get_num_threads()
    for _, dtype in ipairs({"float32", "float64"}) do
      local opts = {dtype = dtype}
      for _, nk in ipairs({{256, 784}, {257, 300}, {18, 4000}, {1000, 70}}) do
        local n, k = nk[1], nk[2]
        local x, w, b = lunar.randn(1, k, opts), lunar.randn(n, k, opts), lunar.randn(n, opts)
        local c = lunar.randn(1, n, opts)
        local function run()
          return {lunar.linear(x, w, b), lunar.linear(x, w), x:matmul(w:t()),
            lunar.addmm(c, x, w:t(), {beta = 0.5, alpha = 2})}
        end
        lunar.set_num_threads(1)
        local one = run()
        lunar.set_num_threads(2)
        local two = {}
        for _ = 1, 50 do two = run() end -- many jobs: the helper wakes, spins, takes parts
        lunar.set_num_threads(saved)
        for i = 1, #one do
          H.close(two[i], one[i], 0, 0) -- bit for bit
        end
        local ref = (x:to("float64") * w:to("float64")):sum(2):view(1, n)
        local tol = dtype == "float32" and 1e-4 or 1e-10
        H.close(one[2]:to("float64"), ref, tol, tol)
        H.close(one[1]:to("float64"), ref + b:to("float64"), tol, tol)
        H.close(one[4]:to("float64"), c:to("float64") * 0.5 + ref * 2, tol, tol)
      end
    end
  end)

  it("keeps gradients right", function()
    gradcheck(function(x, w) return x:matmul(w) end, {leaf(1, 4), leaf(4, 3)})
    gradcheck(function(x, w) return lunar.linear(x, w) end, {leaf(1, 4), leaf(3, 4)})
  end)
end)
