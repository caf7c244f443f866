-- lunar.data: IDX/CSV readers, data sets, DataLoader, samplers, splits, embedded data.
local lunar = require("lunar")
local data = require("lunar.data")
local H = require("tests.helper")

local DATA = data.data_dir()

local function tmpfile(bytes)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

local function be32(n) return string.pack(">I4", n) end

local function sorted(list)
  local t = {table.unpack(list)}
  table.sort(t)
  return t
end

-- asserts that the folds' test sets partition 1..n and train is the complement of test
local function check_partition(folds, n)
  local seen = {}
  for _, f in ipairs(folds) do
    local test, train = f.test:totable(), f.train:totable()
    assert.are.equal(n, #test + #train)
    local in_test = {}
    for _, i in ipairs(test) do
      assert.is_nil(seen[i], "sample tested twice")
      seen[i] = true
      in_test[i] = true
    end
    for _, i in ipairs(train) do assert.is_nil(in_test[i], "sample in train and test") end
  end
  for i = 1, n do assert.is_true(seen[i], "sample never tested") end
end

-- asserts that train and test are disjoint and together hold 1..n once each
local function check_holdout(train, test, n)
  local all = {}
  for _, t in ipairs({train:totable(), test:totable()}) do
    for _, i in ipairs(t) do
      assert.is_nil(all[i], "sample " .. i .. " twice")
      all[i] = true
    end
  end
  for i = 1, n do assert.is_true(all[i], "sample " .. i .. " missing") end
end

describe("read_idx", function()
  -- numbers from tests/fixtures/gen_mnist_counts.py (Python's gzip module)
  it("reads the MNIST train images: header, pixel sums, a pixel", function()
    local x = data.read_idx(DATA .. "/mnist10k-train-images-idx3-ubyte.gz")
    assert.are.equal("uint8", x:dtype())
    assert.are.same({8000, 28, 28}, x:size())
    assert.are.equal(209417657, x:double():sum():item())
    assert.are.equal(10459, x[1]:double():sum():item())
    assert.are.equal(22955, x[2]:double():sum():item())
    assert.are.equal(22766, x[8000]:double():sum():item())
    assert.are.equal(244, x[1][15][15])
    assert.are.equal(96, x[8000][15][15])
  end)

  it("reads the label files: values and histograms", function()
    local y = data.read_idx(DATA .. "/mnist10k-train-labels-idx1-ubyte.gz")
    assert.are.same({8000}, y:size())
    assert.are.equal(1, y[1])
    assert.are.equal(9, y[2])
    assert.are.equal(6, y[8000])
    local counts = lunar.zeros(10, {dtype = "int64"}):index_add(1, y:long() + 1,
      lunar.ones(8000, {dtype = "int64"}))
    assert.are.same({790, 916, 800, 817, 779, 685, 794, 879, 757, 783}, counts:totable())
    local yt = data.read_idx(DATA .. "/mnist10k-test-labels-idx1-ubyte.gz")
    counts = lunar.zeros(10, {dtype = "int64"}):index_add(1, yt:long() + 1,
      lunar.ones(2000, {dtype = "int64"}))
    assert.are.same({211, 211, 191, 215, 201, 178, 220, 191, 187, 195}, counts:totable())
  end)

  it("reads plain files of every element type, big-endian", function()
    local p = tmpfile("\0\0\8\2" .. be32(2) .. be32(3) .. "\1\2\3\4\5\255")
    H.close(data.read_idx(p), {{1, 2, 3}, {4, 5, 255}})
    os.remove(p)
    p = tmpfile("\0\0\9\1" .. be32(3) .. string.pack("i1i1i1", -1, 5, -128))
    local t = data.read_idx(p)
    assert.are.equal("int32", t:dtype())
    assert.are.same({-1, 5, -128}, t:totable())
    os.remove(p)
    p = tmpfile("\0\0\11\1" .. be32(2) .. string.pack(">i2>i2", -300, 7))
    assert.are.same({-300, 7}, data.read_idx(p):totable())
    os.remove(p)
    p = tmpfile("\0\0\12\1" .. be32(2) .. string.pack(">i4>i4", -70000, 123456))
    assert.are.same({-70000, 123456}, data.read_idx(p):totable())
    os.remove(p)
    p = tmpfile("\0\0\13\1" .. be32(2) .. string.pack(">f>f", 1.5, -0.25))
    t = data.read_idx(p)
    assert.are.equal("float32", t:dtype())
    assert.are.same({1.5, -0.25}, t:totable())
    os.remove(p)
    p = tmpfile("\0\0\14\1" .. be32(1) .. string.pack(">d", math.pi))
    assert.are.same({math.pi}, data.read_idx(p):totable())
    os.remove(p)
  end)

  it("rejects corrupt and truncated files, naming the file", function()
    local p = tmpfile("\0\0\8\2" .. be32(2) .. be32(3) .. "\1\2\3\4\5")
    H.raises(function() data.read_idx(p) end, "read_idx", p, "[2, 3]")
    os.remove(p)
    p = tmpfile("\0\0\8\1" .. be32(2) .. "\1\2\3")
    H.raises(function() data.read_idx(p) end, "read_idx", p)
    os.remove(p)
    p = tmpfile("\1\0\8\1" .. be32(1) .. "\1")
    H.raises(function() data.read_idx(p) end, "read_idx", p, "not an IDX file")
    os.remove(p)
    p = tmpfile("\0\0\7\1" .. be32(1) .. "\1")
    H.raises(function() data.read_idx(p) end, p, "not an IDX file")
    os.remove(p)
    p = tmpfile("\0\0\8\3" .. be32(2))
    H.raises(function() data.read_idx(p) end, p, "truncated")
    os.remove(p)
    p = tmpfile("\0\0")
    H.raises(function() data.read_idx(p) end, p, "truncated")
    os.remove(p)
    -- a header that claims far more than the file holds must not allocate it
    p = tmpfile("\0\0\8\3" .. be32(60000) .. be32(60000) .. be32(60000))
    H.raises(function() data.read_idx(p) end, p, "[60000, 60000, 60000]")
    os.remove(p)
    H.raises(function() data.read_idx("/nonexistent/x.idx") end, "/nonexistent/x.idx")
  end)

  it("rejects a truncated gzip file", function()
    local f = assert(io.open(DATA .. "/mnist10k-test-labels-idx1-ubyte.gz", "rb"))
    local bytes = f:read("a")
    f:close()
    local p = tmpfile(bytes:sub(1, 600))
    H.raises(function() data.read_idx(p) end, "read_idx", p)
    os.remove(p)
  end)
end)

describe("read_csv", function()
  it("splits features and the last column as label, with names", function()
    local X, y, names = data.read_csv(DATA .. "/iris.csv")
    assert.are.same({150, 4}, X:size())
    assert.are.equal("float32", X:dtype())
    assert.are.same({"sepal_length", "sepal_width", "petal_length", "petal_width"},
      {table.unpack(names)})
    assert.are.equal("species", names.label)
    H.close(X[1], {5.1, 3.5, 1.4, 0.2})
    assert.are.equal(0, y[1])
    assert.are.equal(2, y[150])
  end)

  it("reads missing values as NaN and text labels as classes in order of appearance", function()
    local p = tmpfile("a, b ,kind\n1,,cat\n\"2.5\",NA,dog\r\nnan,4,cat\n\n" ..
                      "5e-1,null,\"bird, big\"\n")
    local X, y, names = data.read_csv(p, {label = "kind"})
    assert.are.same({"a", "b"}, {names[1], names[2]})
    H.close(X, {{1, 0 / 0}, {2.5, 0 / 0}, {0 / 0, 4}, {0.5, 0 / 0}})
    assert.are.equal("int64", y:dtype())
    assert.are.same({1, 2, 1, 3}, y:totable())
    assert.are.same({"cat", "dog", "bird, big"}, names.classes)
    -- a label column in the middle, by index
    X, y = data.read_csv(p, {label = 2, text = {"kind"}})
    H.close(y, {0 / 0, 0 / 0, 4, 0 / 0})
    H.close(X, {{1, 1}, {2.5, 2}, {0 / 0, 1}, {0.5, 3}})
    os.remove(p)
  end)

  it("names the file, line and column of text in a numeric column", function()
    local p = tmpfile("x,y,label\n1,2,0\n3,oops,1\n")
    H.raises(function() data.read_csv(p) end, "read_csv", p .. ":3", "column 2", "'y'", "oops")
    os.remove(p)
    p = tmpfile("x,y\n1,2\n3\n")
    H.raises(function() data.read_csv(p) end, p .. ":3", "1 fields, the header has 2")
    os.remove(p)
    p = tmpfile("x,y\n1,\"2\n")
    H.raises(function() data.read_csv(p) end, p .. ":2", "quote")
    os.remove(p)
    p = tmpfile("")
    H.raises(function() data.read_csv(p) end, p, "empty")
    os.remove(p)
    H.raises(function() data.read_csv(DATA .. "/iris.csv", {label = "colour"}) end,
      "no column named 'colour'")
  end)

  it("returns the whole table with label = false", function()
    local X, y, names = data.read_csv(DATA .. "/wine.csv", {label = false, dtype = "float64"})
    assert.is_nil(y)
    assert.are.same({178, 14}, X:size())
    assert.are.equal("float64", X:dtype())
    assert.are.equal("cultivar", names[14])
    H.close(X[1], {14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065, 0})
  end)
end)

describe("data sets", function()
  it("TensorDataset indexes the first dim; Subset picks samples", function()
    local X = lunar.arange(12):view(6, 2)
    local y = lunar.tensor({10, 20, 30, 40, 50, 60})
    local ds = data.TensorDataset(X, y)
    assert.are.equal(6, #ds)
    local s = ds[3]
    assert.are.same({4, 5}, s[1]:totable())
    assert.are.equal(30, s[2])
    assert.are.same(ds:get(3)[1]:totable(), s[1]:totable())
    H.raises(function() return ds[7] end, "TensorDataset", "7")
    H.raises(function() data.TensorDataset(X, lunar.zeros(5)) end, "5 samples", "6")
    local sub = data.Subset(ds, lunar.tensor({6, 1}))
    assert.are.equal(2, #sub)
    assert.are.equal(60, sub[1][2])
  end)

  it("a user data set needs only len and get", function()
    local Squares = data.Dataset:extend("Squares")
    function Squares.len() return 5 end
    function Squares.get(_, i) return {x = lunar.tensor({i, -i}), y = i * i} end
    local loader = data.DataLoader(Squares(), {batch_size = 2})
    local seen = {}
    for i, batch in loader:enumerate() do
      seen[i] = batch
    end
    assert.are.equal(3, #seen)
    assert.are.same({{1, -1}, {2, -2}}, seen[1].x:totable())
    assert.are.same({1, 4}, seen[1].y:totable())
    assert.are.equal("int64", seen[1].y:dtype())
    assert.are.same({25}, seen[3].y:totable())
  end)
end)

describe("DataLoader", function()
  local n = 10
  local X = lunar.arange(n * 3, {dtype = "float32"}):view(n, 3)
  local y = lunar.arange(1, n + 1, 1, {dtype = "int64"})

  it("batches in order; #loader and drop_last", function()
    local ds = data.TensorDataset(X, y)
    local loader = data.DataLoader(ds, {batch_size = 4})
    assert.are.equal(3, #loader)
    local sizes, labels = {}, {}
    for xb, yb in loader:iter() do
      sizes[#sizes + 1] = xb:size(1)
      for _, v in ipairs(yb:totable()) do labels[#labels + 1] = v end
      H.close(xb, X:index_select(1, yb))
    end
    assert.are.same({4, 4, 2}, sizes)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, labels)
    loader = data.DataLoader(ds, {batch_size = 4, drop_last = true})
    assert.are.equal(2, #loader)
    local count = 0
    for xb in loader:iter() do
      count = count + 1
      assert.are.equal(4, xb:size(1))
    end
    assert.are.equal(2, count)
  end)

  it("the per-sample path (a collate function) gives the same batches as the fast path", function()
    local ds = data.TensorDataset(X, y)
    local fast = data.DataLoader(ds, {batch_size = 3, shuffle = true, seed = 5})
    local slow = data.DataLoader(ds, {batch_size = 3, shuffle = true, seed = 5,
                                      collate = data.default_collate})
    assert.is_true(fast.fast)
    assert.is_false(slow.fast)
    local a, b = {}, {}
    for xb, yb in fast:iter() do a[#a + 1] = {xb:totable(), yb:totable()} end
    for xb, yb in slow:iter() do b[#b + 1] = {xb:totable(), yb:totable()} end
    assert.are.same(a, b)
  end)

  it("shuffles reproducibly, differently per epoch, every sample once", function()
    local ds = data.TensorDataset(X, y)
    local function epochs(loader, k)
      local out = {}
      for e = 1, k do
        local order = {}
        for _, yb in loader:iter() do
          for _, v in ipairs(yb:totable()) do order[#order + 1] = v end
        end
        out[e] = order
      end
      return out
    end
    local a = epochs(data.DataLoader(ds, {batch_size = 3, shuffle = true, seed = 42}), 3)
    local b = epochs(data.DataLoader(ds, {batch_size = 3, shuffle = true, seed = 42}), 3)
    assert.are.same(a, b)
    assert.are_not.same(a[1], a[2])
    assert.are_not.same(a[2], a[3])
    for e = 1, 3 do assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, sorted(a[e])) end
    local c = epochs(data.DataLoader(ds, {batch_size = 3, shuffle = true, seed = 43}), 1)
    assert.are_not.same(a[1], c[1])
    -- without a seed the order follows lunar.manual_seed
    lunar.manual_seed(7)
    local d1 = epochs(data.DataLoader(ds, {shuffle = true}), 2)
    lunar.manual_seed(7)
    local d2 = epochs(data.DataLoader(ds, {shuffle = true}), 2)
    assert.are.same(d1, d2)
  end)

  it("takes a sampler, and rejects bad options", function()
    local ds = data.TensorDataset(X, y)
    local s = data.SubsetRandomSampler({2, 4, 6}, {seed = 1})
    local loader = data.DataLoader(ds, {batch_size = 2, sampler = s})
    assert.are.equal(2, #loader)
    local got = {}
    for _, yb in loader:iter() do
      for _, v in ipairs(yb:totable()) do got[#got + 1] = v end
    end
    assert.are.same({2, 4, 6}, sorted(got))
    H.raises(function() data.DataLoader(ds, {batch_size = 0}) end, "DataLoader", "batch_size")
    H.raises(function() data.DataLoader(ds, {sampler = s, shuffle = true}) end, "DataLoader")
  end)
end)

describe("samplers", function()
  it("SequentialSampler and RandomSampler", function()
    assert.are.same({1, 2, 3, 4}, data.SequentialSampler(4):sample():totable())
    local r = data.RandomSampler(6, {seed = 3})
    assert.are.equal(6, #r)
    assert.are.same({1, 2, 3, 4, 5, 6}, sorted(r:sample():totable()))
    local w = data.RandomSampler(6, {replacement = true, num_samples = 50, seed = 3}):sample()
    assert.are.equal(50, w:size(1))
    assert.is_true(w:min():item() >= 1 and w:max():item() <= 6)
  end)

  it("WeightedRandomSampler draws in proportion to the weights", function()
    local s = data.WeightedRandomSampler({1, 0, 3, 6}, 20000, {seed = 11})
    local idx = s:sample()
    local counts = lunar.zeros(4, {dtype = "int64"}):index_add(1, idx,
      lunar.ones(20000, {dtype = "int64"})):totable()
    assert.are.equal(0, counts[2])
    -- expected 2000, 6000, 12000; 4 standard deviations is under 300
    assert.is_true(math.abs(counts[1] - 2000) < 300, "class 1: " .. counts[1])
    assert.is_true(math.abs(counts[3] - 6000) < 300, "class 3: " .. counts[3])
    assert.is_true(math.abs(counts[4] - 12000) < 300, "class 4: " .. counts[4])
    -- without replacement: distinct, never a zero weight
    local nr = data.WeightedRandomSampler({5, 0, 1, 1, 2}, 4, false, {seed = 2}):sample()
    assert.are.same({1, 3, 4, 5}, sorted(nr:totable()))
    H.raises(function() data.WeightedRandomSampler({1, 0}, 2, false) end, "only 1")
    H.raises(function() data.WeightedRandomSampler({1, -1}, 2) end, "weight 2")
  end)
end)

describe("splits", function()
  it("holdout: sizes, disjoint, covering; stratified proportions", function()
    local train, test = data.holdout(100, {test_size = 0.2, seed = 1})
    assert.are.equal(80, train:size(1))
    assert.are.equal(20, test:size(1))
    check_holdout(train, test, 100)
    local y = {}
    for i = 1, 100 do y[i] = i <= 70 and 1 or 2 end
    train, test = data.holdout(100, {test_size = 0.2, seed = 3, stratify = y})
    local c = {0, 0}
    for _, i in ipairs(test:totable()) do c[y[i]] = c[y[i]] + 1 end
    assert.are.same({14, 6}, c)
    check_holdout(train, test, 100)
    local t2 = select(2, data.holdout(100, {test_size = 0.2, seed = 3, stratify = y}))
    assert.are.same(test:totable(), t2:totable())
  end)

  it("train_test_split splits tensors", function()
    local X, y = data.iris()
    local Xtr, Xte, ytr, yte = data.train_test_split(X, y, {test_size = 0.2, seed = 0,
                                                          stratify = true})
    assert.are.same({120, 4}, Xtr:size())
    assert.are.same({30, 4}, Xte:size())
    assert.are.equal(120, ytr:size(1))
    local c = {0, 0, 0}
    for _, v in ipairs(yte:totable()) do c[v] = c[v] + 1 end
    assert.are.same({10, 10, 10}, c)
  end)

  it("kfold: 1000 samples, 5 folds of 200; uneven sizes; shuffle", function()
    local folds = data.kfold(1000, 5)
    assert.are.equal(5, #folds)
    for _, f in ipairs(folds) do assert.are.equal(200, f.test:size(1)) end
    check_partition(folds, 1000)
    folds = data.kfold(10, 3)
    assert.are.same({1, 2, 3, 4}, folds[1].test:totable())
    assert.are.same({5, 6, 7}, folds[2].test:totable())
    assert.are.same({1, 2, 3, 4, 8, 9, 10}, folds[2].train:totable())
    folds = data.kfold(23, 4, {shuffle = true, seed = 9})
    check_partition(folds, 23)
    assert.are.same({6, 6, 6, 5}, {folds[1].test:size(1), folds[2].test:size(1),
                                   folds[3].test:size(1), folds[4].test:size(1)})
  end)

  it("stratified_kfold: scikit-learn's folds and proportions", function()
    -- worked by hand from scikit-learn's StratifiedKFold algorithm
    local folds = data.stratified_kfold({1, 1, 1, 2, 2, 2, 2, 2, 2, 1}, 3)
    assert.are.same({1, 2, 4, 5}, folds[1].test:totable())
    assert.are.same({3, 6, 7}, folds[2].test:totable())
    assert.are.same({8, 9, 10}, folds[3].test:totable())
    check_partition(folds, 10)
    local _, y = data.breast_cancer() -- 212 malignant, 357 benign
    for _, shuffle in ipairs({false, true}) do
      folds = data.stratified_kfold(y, 5, {shuffle = shuffle, seed = 4})
      check_partition(folds, 569)
      for _, f in ipairs(folds) do
        local m = y:index_select(1, f.test):eq(1):sum():item()
        assert.is_true(m == 42 or m == 43, "malignant per fold: " .. m)
      end
    end
    H.raises(function() data.stratified_kfold({1, 1, 2, 2}, 3) end, "stratified_kfold", "k = 3")
  end)

  it("leave_one_out and bootstrap", function()
    local folds = data.leave_one_out(5)
    assert.are.equal(5, #folds)
    assert.are.same({3}, folds[3].test:totable())
    assert.are.same({1, 2, 4, 5}, folds[3].train:totable())
    check_partition(folds, 5)
    local b = data.bootstrap(1000, {seed = 7})
    assert.are.equal(1000, b.train:size(1))
    local drawn = {}
    for _, i in ipairs(b.train:totable()) do
      assert.is_true(i >= 1 and i <= 1000)
      drawn[i] = true
    end
    local oob = b.test:totable()
    for _, i in ipairs(oob) do assert.is_nil(drawn[i], "out-of-bag sample was drawn") end
    local distinct = 0
    for _ in pairs(drawn) do distinct = distinct + 1 end
    assert.are.equal(1000, distinct + #oob)
    -- about 1/e of the samples stay out of bag
    assert.is_true(math.abs(#oob - 368) < 60, "out of bag: " .. #oob)
    assert.are.same(b.train:totable(), data.bootstrap(1000, {seed = 7}).train:totable())
  end)
end)

describe("embedded data sets", function()
  local function check(X, y, n, d, k)
    assert.are.same({n, d}, X:size())
    assert.are.equal("float32", X:dtype())
    assert.are.equal("int64", y:dtype())
    assert.are.equal(1, y:min():item())
    assert.are.equal(k, y:max():item())
  end

  it("iris, breast_cancer, wine, digits: shapes and 1-based classes", function()
    local X, y, info = data.iris()
    check(X, y, 150, 4, 3)
    assert.are.equal("virginica", info.classes[y[150]])
    assert.are.equal(4, #info.feature_names)
    X, y, info = data.breast_cancer()
    check(X, y, 569, 30, 2)
    assert.are.equal(212, y:eq(1):sum():item())
    assert.are.equal("malignant", info.classes[1])
    X, y = data.wine()
    check(X, y, 178, 13, 3)
    X, y, info = data.digits()
    check(X, y, 1797, 64, 10)
    assert.are.equal(16, X:max():item())
    assert.are.equal("0", info.classes[y[1]])
  end)

  it("diabetes is a regression target", function()
    local X, y, info = data.diabetes()
    assert.are.same({442, 10}, X:size())
    assert.are.equal("float32", y:dtype())
    assert.are.equal(151, y[1])
    assert.are.equal("bmi", info.feature_names[3])
  end)

  it("mnist: [N, 1, 28, 28] uint8 or float in [0, 1], classes 1..10", function()
    local X, y, info = data.mnist({split = "test"})
    assert.are.same({2000, 1, 28, 28}, X:size())
    assert.are.equal("uint8", X:dtype())
    assert.are.equal(5, y[1]) -- digit 4
    assert.are.equal("4", info.classes[y[1]])
    assert.are.equal(1, y:min():item())
    assert.are.equal(10, y:max():item())
    local Xf = data.mnist({split = "test", float = true})
    assert.are.equal("float32", Xf:dtype())
    H.close(Xf:double():sum():item(), 52728943 / 255, 1e-6)
    assert.is_true(Xf:max():item() <= 1)
    H.raises(function() data.mnist({split = "val"}) end, "mnist", "val")
  end)

  it("LUNAR_DATA overrides the folder", function()
    local run = [[LUNAR_DATA=%s lua5.4 -e 'local ok, e = pcall(require("lunar.data").data_dir)
      print(ok, e)' 2>&1]]
    local p = io.popen(run:format("/nonexistent"))
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("false", 1, true) and out:find("LUNAR_DATA=/nonexistent", 1, true),
      out)
    p = io.popen(run:format(DATA))
    out = p:read("a")
    p:close()
    assert.truthy(out:find("true\t" .. DATA, 1, true), out)
  end)
end)
