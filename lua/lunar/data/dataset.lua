--- Data sets: the protocol (`#ds`, `ds[i]`, `ds:get(i)`), TensorDataset and Subset.
-- A data set is any object with a length and 1-based samples; a sample is a tensor, a number
-- or a table of them. Plain Lua lists of samples work too.
-- @module lunar.data.dataset
local lunar = require("lunar.core")
local class = require("lunar.class")

local M = {}

-- ds[i] for an integer i calls ds:get(i); other keys are fields and methods as usual
local function install_index(cls)
  cls.__index = function(self, k)
    if math.type(k) == "integer" then return cls.get(self, k) end
    return cls[k]
  end
  cls.__len = function(self) return self:len() end
end

--- The base class: subclasses define `len(self)` and `get(self, i)`.
--   local Squares = lunar.data.Dataset:extend("Squares")
--   function Squares:len() return 10 end
--   function Squares:get(i) return lunar.tensor{i * i} end
local Dataset = class("Dataset")
install_index(Dataset)
local base_extend = Dataset.extend
function Dataset.extend(parent, name)
  local cls = base_extend(parent, name)
  install_index(cls)
  return cls
end
function Dataset.len() error("Dataset: len is not defined", 2) end
function Dataset.get() error("Dataset: get is not defined", 2) end
M.Dataset = Dataset

local function check_index(ds, i, fname)
  local n = ds:len()
  if math.type(i) ~= "integer" or i < 1 or i > n then
    error(("%s: index %s out of range for %d samples (1-based)"):format(fname, tostring(i), n), 3)
  end
end

--- Samples of the first dim of one or more tensors of the same length.
-- `ds[i]` is `X[i]` for one tensor and `{X[i], y[i], ...}` for several (a 1-d tensor gives
-- numbers). The DataLoader batches it with index_select on the whole tensors.
--   local ds = lunar.data.TensorDataset(X, y); local x1, y1 = table.unpack(ds[1])
local TensorDataset = Dataset:extend("TensorDataset")
function TensorDataset:init(...)
  local ts = {...}
  if #ts == 0 then error("TensorDataset: expected at least one tensor", 3) end
  for k, t in ipairs(ts) do
    if not lunar.is_tensor(t) then
      error(("TensorDataset: argument %d is a %s, expected a tensor"):format(k, type(t)), 3)
    end
    if t:dim() == 0 then error(("TensorDataset: tensor %d is 0-d"):format(k), 3) end
    if t:size(1) ~= ts[1]:size(1) then
      error(("TensorDataset: tensor %d has %d samples, tensor 1 has %d"):format(
        k, t:size(1), ts[1]:size(1)), 3)
    end
  end
  rawset(self, "tensors", ts)
end
function TensorDataset:len() return self.tensors[1]:size(1) end
function TensorDataset:get(i)
  check_index(self, i, "TensorDataset")
  local ts = self.tensors
  if #ts == 1 then return ts[1][i] end
  local s = {}
  for k, t in ipairs(ts) do s[k] = t[i] end
  return s
end
M.TensorDataset = TensorDataset

--- The samples of ds at the given 1-based indices (a table or an int64 tensor).
--   local train = lunar.data.Subset(ds, folds[1].train)
local Subset = Dataset:extend("Subset")
function Subset:init(ds, indices)
  if lunar.is_tensor(indices) then indices = indices:totable() end
  if type(indices) ~= "table" then
    error("Subset: indices must be a table or a tensor (got " .. type(indices) .. ")", 3)
  end
  rawset(self, "dataset", ds)
  rawset(self, "indices", indices)
end
function Subset:len() return #self.indices end
function Subset:get(i)
  check_index(self, i, "Subset")
  local ds = self.dataset
  local j = self.indices[i]
  if type(ds.get) == "function" then return ds:get(j) end
  return ds[j]
end
M.Subset = Subset

return M
