--- DataLoader: mini-batches of a data set, in order or shuffled, with a sampler, a collate
-- function and reproducible epochs.
-- @module lunar.data.loader
local lunar = require("lunar.core")
local class = require("lunar.class")
local dataset = require("lunar.data.dataset")
local sampler = require("lunar.data.sampler")

local M = {}

local function collate_list(samples, fname)
  local first = samples[1]
  if lunar.is_tensor(first) then return lunar.stack(samples) end
  local t = type(first)
  if t == "number" then
    local ints = true
    for _, v in ipairs(samples) do
      if math.type(v) ~= "integer" then ints = false break end
    end
    return lunar.tensor(samples, {dtype = ints and "int64" or nil, device = "cpu"})
  elseif t == "boolean" then
    return lunar.tensor(samples, {dtype = "bool", device = "cpu"})
  elseif t == "string" then
    return samples
  elseif t == "table" then
    local out = {}
    for k in pairs(first) do
      local column = {}
      for i, s in ipairs(samples) do
        if type(s) ~= "table" or s[k] == nil then
          error(("%s: sample %d has no field %s (sample 1 has it)"):format(fname, i, tostring(k)),
            3)
        end
        column[i] = s[k]
      end
      out[k] = collate_list(column, fname)
    end
    return out
  end
  error(("%s: cannot batch samples of type %s"):format(fname, t), 3)
end

--- The default collate: a list of samples -> a batch. Tensors are stacked along a new first
-- dim, numbers become a 1-d tensor (int64 when all are integers), booleans a bool tensor,
-- strings stay a list, tables are collated field by field.
function M.default_collate(samples)
  if #samples == 0 then error("default_collate: no samples", 2) end
  return collate_list(samples, "default_collate")
end

--- Batches of ds.
--   local loader = lunar.data.DataLoader(lunar.data.TensorDataset(X, y),
--                                        {batch_size = 64, shuffle = true, seed = 1})
--   for epoch = 1, 10 do
--     for xb, yb in loader:iter() do ... end
--   end
-- Options: batch_size (32), shuffle (false), drop_last (false: a short last batch is kept),
-- sampler (any object with # and :sample() -> int64 indices; excludes shuffle), seed or
-- generator (for shuffle), collate (a function of the list of samples; default
-- lunar.data.default_collate). `#loader` is the number of batches per epoch. Every call of
-- iter() is one epoch: with shuffle each epoch has its own order, the same in every run with
-- the same seed. A TensorDataset with the default collate is batched with one index_select
-- per tensor instead of per-sample stacking.
local DataLoader = class("DataLoader")
function DataLoader:init(ds, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("DataLoader: options must be a table", 3) end
  if ds == nil or (type(ds) ~= "table" and type(ds) ~= "userdata") then
    error("DataLoader: expected a data set (got " .. type(ds) .. ")", 3)
  end
  self.dataset = ds
  self.batch_size = opts.batch_size or 32
  if math.type(self.batch_size) ~= "integer" or self.batch_size < 1 then
    error("DataLoader: batch_size must be a positive integer (got " ..
      tostring(opts.batch_size) .. ")", 3)
  end
  self.drop_last = opts.drop_last or false
  self.collate = opts.collate
  if opts.sampler then
    if opts.shuffle then error("DataLoader: give shuffle or a sampler, not both", 3) end
    self.sampler = opts.sampler
  elseif opts.shuffle then
    self.sampler = sampler.RandomSampler(#ds, {seed = opts.seed, generator = opts.generator})
  else
    self.sampler = sampler.SequentialSampler(#ds)
  end
  self.fast = dataset.TensorDataset:is_instance(ds) and self.collate == nil
end

function DataLoader:__len()
  local n = #self.sampler
  if self.drop_last then return n // self.batch_size end
  return (n + self.batch_size - 1) // self.batch_size
end

-- the sampler's indices (on the CPU) where the data set's tensor t lives
local function on(indices, t)
  local dev = t:device()
  if indices:device() == dev then return indices end
  return indices:to(dev)
end

function DataLoader:_batch(indices)
  local ds = self.dataset
  if self.fast then
    local ts = ds.tensors
    if #ts == 1 then return ts[1]:index_select(1, on(indices, ts[1])) end
    local out = {}
    for k, t in ipairs(ts) do out[k] = t:index_select(1, on(indices, t)) end
    return out
  end
  local samples = {}
  local get = type(ds.get) == "function" and ds.get
  for k, i in ipairs(indices:totable()) do
    if get then samples[k] = get(ds, i) else samples[k] = ds[i] end
    if samples[k] == nil then
      error(("DataLoader: the data set has no sample %d"):format(i), 3)
    end
  end
  return (self.collate or M.default_collate)(samples)
end

--- The batches of one epoch as a list-like iterator: `for i, batch in loader:enumerate()`.
function DataLoader:enumerate()
  local indices = self.sampler:sample()
  local n, bs = indices:size(1), self.batch_size
  local count = self.drop_last and n // bs or (n + bs - 1) // bs
  local b = 0
  return function()
    if b >= count then return nil end
    b = b + 1
    local start = (b - 1) * bs + 1
    local len = math.min(bs, n - start + 1)
    return b, self:_batch(indices:narrow(1, start, len))
  end
end

--- The batches of one epoch, a table batch unpacked: `for xb, yb in loader:iter()`.
function DataLoader:iter()
  local nxt = self:enumerate()
  return function()
    local b, batch = nxt()
    if b == nil then return nil end
    if type(batch) == "table" and batch[1] ~= nil then return table.unpack(batch) end
    return batch
  end
end

DataLoader.__pairs = DataLoader.enumerate

M.DataLoader = DataLoader

return M
