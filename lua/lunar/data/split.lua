--- Splits for validation: hold-out (optionally stratified), k-fold, stratified k-fold,
-- leave-one-out, bootstrap. Every split is made of 1-based int64 index tensors, ready for
-- `X:index_select(1, idx)` or lunar.data.Subset. Shuffled splits take {seed = s} (or
-- {generator = g}); without either they draw from the default generator.
-- @module lunar.data.split
local lunar = require("lunar.core")

local M = {}

local function generator(opts)
  if opts.generator then return opts.generator end
  if opts.seed ~= nil then
    if math.type(opts.seed) ~= "integer" then
      error("seed must be an integer (got " .. tostring(opts.seed) .. ")", 3)
    end
    return lunar.Generator(opts.seed)
  end
  return nil -- the default generator
end

local function perm(n, g) -- a random order of 1..n as a Lua list
  if n == 0 then return {} end
  return lunar.randperm(n, {generator = g, device = "cpu"}):totable()
end

-- splits are index lists for data sets on the CPU, whatever the default device
local function idx(list) return lunar.tensor(list, {dtype = "int64", device = "cpu"}) end

local function count_of(x, fname)
  if math.type(x) == "integer" and x >= 0 then return x end
  if lunar.is_tensor(x) and x:dim() >= 1 then return x:size(1) end
  if type(x) == "table" then return #x end
  error(("%s: expected a sample count, a tensor or a list (got %s)"):format(fname, tostring(x)), 3)
end

-- labels (tensor or list) as a Lua list and the classes in order of first appearance:
-- codes[i] is the class number of sample i, 1..#classes
local function encode(y, fname)
  if lunar.is_tensor(y) then
    if y:dim() ~= 1 then error(fname .. ": labels must be 1-d", 3) end
    y = y:totable()
  end
  if type(y) ~= "table" then error(fname .. ": labels must be a tensor or a list", 3) end
  local code, codes, counts = {}, {}, {}
  for i, v in ipairs(y) do
    if v ~= v then error(("%s: label %d is NaN"):format(fname, i), 3) end
    local c = code[v]
    if not c then
      c = #counts + 1
      code[v] = c
      counts[c] = 0
    end
    codes[i] = c
    counts[c] = counts[c] + 1
  end
  return codes, counts
end

local function test_count(n, test_size, fname)
  test_size = test_size == nil and 0.25 or test_size
  local n_test
  if math.type(test_size) == "integer" then
    n_test = test_size
  elseif type(test_size) == "number" and test_size > 0 and test_size < 1 then
    n_test = math.ceil(test_size * n - 1e-9) -- scikit-learn: ceil(test_size * n)
  else
    error(("%s: test_size must be a fraction in (0, 1) or a count (got %s)"):format(
      fname, tostring(test_size)), 3)
  end
  if n_test < 1 or n_test >= n then
    error(("%s: test_size %s leaves %d of %d samples for testing (need 1 to %d)"):format(
      fname, tostring(test_size), n_test, n, n - 1), 3)
  end
  return n_test
end

-- per class, how many of its samples go to the test set: proportional, the rounding
-- remainders given to the classes with the largest fractional parts (scikit-learn's
-- _approximate_mode, with ties broken by class order rather than at random)
local function allocate(counts, n, n_test)
  local alloc, rem, given = {}, {}, 0
  for c, cnt in ipairs(counts) do
    local exact = n_test * cnt / n
    alloc[c] = math.floor(exact)
    rem[#rem + 1] = {c = c, r = exact - alloc[c]}
    given = given + alloc[c]
  end
  table.sort(rem, function(a, b) if a.r ~= b.r then return a.r > b.r end return a.c < b.c end)
  for k = 1, n_test - given do alloc[rem[k].c] = alloc[rem[k].c] + 1 end
  return alloc
end

--- Hold-out split of n samples: train, test (1-based int64 index tensors).
-- Options: test_size (fraction, default 0.25 as scikit-learn, or a count), shuffle (true),
-- seed / generator, stratify (labels: every class keeps its proportion in both parts).
--   local train, test = lunar.data.holdout(150, {test_size = 0.2, seed = 1, stratify = y})
function M.holdout(n, opts)
  opts = opts or {}
  n = count_of(n, "holdout")
  local n_test = test_count(n, opts.test_size, "holdout")
  local shuffle = opts.shuffle ~= false
  local g = generator(opts)
  local train, test = {}, {}
  if opts.stratify ~= nil then
    if not shuffle then error("holdout: stratify needs shuffle", 2) end
    local codes, counts = encode(opts.stratify, "holdout")
    if #codes ~= n then
      error(("holdout: %d labels to stratify %d samples"):format(#codes, n), 2)
    end
    local alloc = allocate(counts, n, n_test)
    local taken = {}
    for c = 1, #counts do taken[c] = 0 end
    for _, i in ipairs(perm(n, g)) do
      local c = codes[i]
      taken[c] = taken[c] + 1
      if taken[c] <= alloc[c] then test[#test + 1] = i else train[#train + 1] = i end
    end
  else
    local order = shuffle and perm(n, g) or nil
    for k = 1, n do
      local i = order and order[k] or k
      if k <= n - n_test then train[#train + 1] = i else test[#test + 1] = i end
    end
  end
  return idx(train), idx(test)
end

--- scikit-learn's train_test_split: with a tensor X (and labels y) gives X_train, X_test,
-- y_train, y_test; with a count n gives the train and test index tensors (as holdout).
-- Options as holdout; {stratify = true} stratifies on y.
--   local Xtr, Xte, ytr, yte = lunar.data.train_test_split(X, y, {test_size = 0.2, seed = 0})
function M.train_test_split(X, y, opts)
  if opts == nil and type(y) == "table" and not lunar.is_tensor(y) and y[1] == nil then
    y, opts = nil, y
  end
  opts = opts or {}
  if opts.stratify == true then
    opts = setmetatable({stratify = y}, {__index = opts})
  end
  if math.type(X) == "integer" then return M.holdout(X, opts) end
  if not lunar.is_tensor(X) then
    error("train_test_split: expected a tensor or a sample count (got " .. type(X) .. ")", 2)
  end
  local n = X:size(1)
  if y ~= nil and (not lunar.is_tensor(y) or y:size(1) ~= n) then
    error(("train_test_split: y must be a tensor of %d samples"):format(n), 2)
  end
  local train, test = M.holdout(n, opts)
  if y == nil then return X:index_select(1, train), X:index_select(1, test) end
  return X:index_select(1, train), X:index_select(1, test),
    y:index_select(1, train), y:index_select(1, test)
end

-- folds from a list fold_of[i] (1..k) of each sample's test fold
local function folds_from(fold_of, k, order)
  local folds = {}
  for f = 1, k do
    local train, test = {}, {}
    for i = 1, #fold_of do
      if fold_of[i] ~= f then train[#train + 1] = i end
    end
    for _, i in ipairs(order) do
      if fold_of[i] == f then test[#test + 1] = i end
    end
    folds[f] = {train = idx(train), test = idx(test)}
  end
  return folds
end

local function check_k(k, n, fname)
  if math.type(k) ~= "integer" or k < 2 then
    error(("%s: k must be an integer >= 2 (got %s)"):format(fname, tostring(k)), 3)
  end
  if k > n then error(("%s: k = %d folds for %d samples"):format(fname, k, n), 3) end
end

--- k-fold cross-validation (scikit-learn's KFold): a list of k {train = idx, test = idx}.
-- Test folds are consecutive runs of 1..n (of a random order with {shuffle = true}); the
-- first n % k folds have one sample more. Train indices are in ascending order.
--   for _, f in ipairs(lunar.data.kfold(1000, 5, {shuffle = true, seed = 0})) do ... end
function M.kfold(n, k, opts)
  opts = opts or {}
  n = count_of(n, "kfold")
  check_k(k, n, "kfold")
  local order = opts.shuffle and perm(n, generator(opts)) or nil
  local fold_of, test_order, pos = {}, {}, 0
  for f = 1, k do
    local size = n // k + (f <= n % k and 1 or 0)
    for _ = 1, size do
      pos = pos + 1
      local i = order and order[pos] or pos
      fold_of[i] = f
      test_order[pos] = i
    end
  end
  return folds_from(fold_of, k, test_order)
end

--- Stratified k-fold (scikit-learn's StratifiedKFold): every fold keeps the class
-- proportions of y. Classes are taken in order of first appearance; the sorted labels are
-- dealt to folds 1, 2, ..., k, 1, 2, ... and each class's samples fill its share of every
-- fold in index order (in a random order with {shuffle = true}). Without shuffle the folds
-- are scikit-learn's, index for index.
--   local folds = lunar.data.stratified_kfold(y, 5)
function M.stratified_kfold(y, k, opts)
  opts = opts or {}
  local codes, counts = encode(y, "stratified_kfold")
  local n = #codes
  check_k(k, n, "stratified_kfold")
  local largest = 0
  for _, c in ipairs(counts) do largest = math.max(largest, c) end
  if k > largest then
    error(("stratified_kfold: k = %d, but no class has more than %d samples"):format(k, largest),
      2)
  end
  local g = opts.shuffle and generator(opts) or nil
  -- alloc[c][f]: how many samples of class c fold f tests (position p of the sorted labels,
  -- 0-based, goes to fold p % k + 1)
  local fold_of, start = {}, 0
  local members = {}
  for c = 1, #counts do members[c] = {} end
  for i, c in ipairs(codes) do table.insert(members[c], i) end
  for c, cnt in ipairs(counts) do
    local list = {}
    for f = 1, k do
      -- positions start .. start + cnt - 1 congruent to f - 1 modulo k
      local first = start + ((f - 1 - start) % k)
      local m = first <= start + cnt - 1 and (start + cnt - 1 - first) // k + 1 or 0
      for _ = 1, m do list[#list + 1] = f end
    end
    if g then
      local p = perm(#list, g)
      local shuffled = {}
      for j, q in ipairs(p) do shuffled[j] = list[q] end
      list = shuffled
    end
    for j, i in ipairs(members[c]) do fold_of[i] = list[j] end
    start = start + cnt
  end
  local order = {}
  for i = 1, n do order[i] = i end
  return folds_from(fold_of, k, order)
end

--- Leave-one-out: n folds, fold i tests sample i alone (k-fold with k = n).
function M.leave_one_out(n)
  n = count_of(n, "leave_one_out")
  if n < 2 then error("leave_one_out: needs at least 2 samples", 2) end
  return M.kfold(n, n)
end

--- A bootstrap sample: train has n indices drawn with replacement (or {size = m}), test
-- the out-of-bag samples (those never drawn), in ascending order.
--   local b = lunar.data.bootstrap(100, {seed = 7}) -- about 36.8% out of bag
function M.bootstrap(n, opts)
  opts = opts or {}
  n = count_of(n, "bootstrap")
  if n < 1 then error("bootstrap: needs at least 1 sample", 2) end
  local m = opts.size or n
  local train = lunar.randint(1, n + 1, {m}, {generator = generator(opts), device = "cpu"})
  local drawn = {}
  for _, i in ipairs(train:totable()) do drawn[i] = true end
  local oob = {}
  for i = 1, n do if not drawn[i] then oob[#oob + 1] = i end end
  return {train = train, test = idx(oob)}
end

return M
