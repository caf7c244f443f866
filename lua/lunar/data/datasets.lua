--- The embedded data sets (the project's data/ folder, see data/README.md) and the file
-- readers lunar.data.read_idx and lunar.data.read_csv.
-- The folder is found, in order: the LUNAR_DATA environment variable; data/ beside the
-- source tree this file lies in (lua/lunar/data/ -> ../../../data); the installed share
-- paths /usr/local/share/lunar/data and /usr/share/lunar/data.
-- @module lunar.data.datasets
local lunar = require("lunar.core")

local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The folder of the embedded data sets (see the module's description), or an error that
-- lists where it looked.
function M.data_dir()
  local tried = {}
  local function try(dir)
    if dir and dir ~= "" then
      tried[#tried + 1] = dir
      if exists(dir .. "/iris.csv") then return dir end
    end
  end
  local env = os.getenv("LUNAR_DATA")
  if env and env ~= "" then
    if try(env) then return env end
    error("lunar.data: LUNAR_DATA=" .. env .. " has no iris.csv (is it the data folder?)", 3)
  end
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    local dir = src:sub(2):match("^(.*)[/\\][^/\\]*$") or "."
    -- a checkout (lua/lunar/data -> data/), or an install (make install or luarocks),
    -- which puts the files in lunar/data/files beside this module
    local found = try(dir .. "/../../../data") or try(dir .. "/files")
    if found then return found end
  end
  for _, d in ipairs({"/usr/local/share/lunar/data", "/usr/share/lunar/data"}) do
    if try(d) then return d end
  end
  error("lunar.data: cannot find the data folder (tried " .. table.concat(tried, ", ") ..
    "); set LUNAR_DATA to it", 3)
end

local function column_index(names, label, fname)
  if label == nil then return #names end
  if math.type(label) == "integer" then
    local j = label < 0 and #names + 1 + label or label
    if j < 1 or j > #names then
      error(("%s: label column %d out of range for %d columns"):format(fname, label, #names), 3)
    end
    return j
  end
  for j, name in ipairs(names) do if name == label then return j end end
  error(("%s: no column named '%s' (columns: %s)"):format(fname, tostring(label),
    table.concat(names, ", ")), 3)
end

--- Reads an IDX file (MNIST's format; gzipped or not) into a tensor: uint8 data gives a
-- uint8 tensor, integers int32, floats float32/float64, in the header's shape.
M.read_idx = lunar.read_idx

--- Reads a CSV file with a header row into features X (float32 [rows, features]), a label
-- y and the names: X, y, names.
-- Options: label (the column name or 1-based index of the label, default the last column;
-- false for none: y is nil), text (other columns of text labels), dtype ("float32").
-- A label column of numbers gives y as float32 values as they are in the file; a label
-- column with text gives y as int64 classes 1, 2, ... in order of first appearance.
-- names lists the feature columns; names.label is the label's name and names.classes the
-- label texts in class order (text labels only); names.levels[col] the texts of every
-- text column. Missing fields (empty, NA, nan) are NaN; text in a numeric column is an
-- error naming the file, line and column.
--   local X, y, names = lunar.data.read_csv("data/iris.csv")
function M.read_csv(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("read_csv: path must be a string", 2) end
  local spec = {dtype = opts.dtype, text = opts.text}
  local label = opts.label
  if label ~= false then
    if label ~= nil and type(label) ~= "string" and math.type(label) ~= "integer" then
      error("read_csv: label must be a column name, a 1-based index or false (got " ..
        tostring(label) .. ")", 2)
    end
    spec.auto = {label == nil and -1 or label}
  end
  local data, header, levels = lunar.read_csv(path, spec)
  local names = {levels = levels}
  if label == false then
    for j, name in ipairs(header) do names[j] = name end
    return data, nil, names
  end
  local lj = column_index(header, label, "read_csv")
  local keep = {}
  for j, name in ipairs(header) do
    if j ~= lj then
      keep[#keep + 1] = j
      names[#names + 1] = name
    end
  end
  names.label = header[lj]
  local y = data:select(2, lj)
  if levels[header[lj]] then
    names.classes = levels[header[lj]]
    y = y:long()
  else
    y = y:contiguous()
  end
  local X
  local dev = data:device()
  if #keep == 0 then X = lunar.zeros(data:size(1), 0, {dtype = data:dtype(), device = dev})
  else X = data:index_select(2, lunar.tensor(keep, {dtype = "int64", device = dev})) end
  return X, y, names
end

-- an embedded classification CSV: 0-based labels in the last column -> classes c + 1
local function classification(file, classes)
  local X, y, names = M.read_csv(M.data_dir() .. "/" .. file)
  return X, y:long() + 1, {feature_names = {table.unpack(names)}, classes = classes,
                           target_name = names.label}
end

local function count_classes(k)
  local c = {}
  for d = 0, k - 1 do c[#c + 1] = tostring(d) end
  return c
end

--- Fisher's iris: X float32 [150, 4], y int64 classes 1..3, info (feature_names, classes).
--   local X, y, info = lunar.data.iris(); print(info.classes[y[1]]) --> setosa
function M.iris() return classification("iris.csv", {"setosa", "versicolor", "virginica"}) end

--- Wisconsin diagnostic breast cancer: X [569, 30], y 1 = malignant, 2 = benign.
function M.breast_cancer() return classification("breast_cancer.csv", {"malignant", "benign"}) end

--- Wine recognition: X [178, 13], y 1..3 (three cultivars).
function M.wine() return classification("wine.csv", {"class_0", "class_1", "class_2"}) end

--- UCI optical digits, 8x8: X [1797, 64] with pixel values 0..16, y 1..10 (digit d is class
-- d + 1), classes "0".."9".
function M.digits() return classification("digits8x8.csv", count_classes(10)) end

--- Diabetes progression (regression): X [442, 10] raw (unscaled) features, y float32
-- [442] the target, info.feature_names.
function M.diabetes()
  local X, y, names = M.read_csv(M.data_dir() .. "/diabetes.csv")
  return X, y, {feature_names = {table.unpack(names)}, target_name = names.label}
end

--- The embedded MNIST subset (8000 train / 2000 test digits, data/README.md).
-- Returns images uint8 [N, 1, 28, 28] (float32 in [0, 1] with {float = true}), labels int64
-- [N] (digit d is class d + 1) and info with classes = {"0", ..., "9"}.
--   local X, y, info = lunar.data.mnist({split = "test", float = true})
function M.mnist(opts)
  opts = opts or {}
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then
    error("mnist: split must be 'train' or 'test' (got " .. tostring(split) .. ")", 2)
  end
  local dir = M.data_dir()
  local images = lunar.read_idx(("%s/mnist10k-%s-images-idx3-ubyte.gz"):format(dir, split))
  local labels = lunar.read_idx(("%s/mnist10k-%s-labels-idx1-ubyte.gz"):format(dir, split))
  local n = images:size(1)
  images = images:view(n, 1, images:size(2), images:size(3))
  if opts.float then images = images:float() / 255 end
  return images, labels:long() + 1, {classes = count_classes(10), split = split}
end

return M
