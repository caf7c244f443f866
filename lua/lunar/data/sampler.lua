--- Samplers: which samples an epoch visits, in which order. A sampler has `#s` and
-- `s:sample()`, which returns the epoch's 1-based indices as an int64 tensor and moves on to
-- the next epoch. Random samplers draw from the Philox stream: with {seed = s} epoch e uses
-- a generator seeded from (s, e), so a run is reproducible and every epoch differs; with
-- {generator = g} they draw from g; otherwise the seed is drawn from the default generator
-- when the sampler is made (lunar.manual_seed makes that reproducible too).
-- @module lunar.data.sampler
local lunar = require("lunar.core")
local class = require("lunar.class")

local M = {}

-- Indices are host-side bookkeeping: every sampler draws and returns them on the CPU,
-- whatever the default device (the DataLoader moves them to a data set on another device).
local CPU = "cpu"
local I64 = {dtype = "int64", device = CPU}

local function count_of(n, fname)
  if type(n) == "table" or type(n) == "userdata" then n = #n end
  if math.type(n) ~= "integer" or n < 0 then
    error(("%s: expected a sample count or a data set (got %s)"):format(fname, tostring(n)), 3)
  end
  return n
end

--- A generator for epoch `epoch` of a stream with seed `seed` (independent streams: Philox
-- keys that differ give unrelated numbers).
function M.epoch_generator(seed, epoch)
  return lunar.Generator((seed + epoch * 0x9E3779B97F4A7C15) & 0x7fffffffffffffff)
end

-- the random state shared by the random samplers and the DataLoader
local function init_stream(self, opts, fname)
  opts = opts or {}
  if opts.generator ~= nil and opts.seed ~= nil then
    error(fname .. ": give a seed or a generator, not both", 3)
  end
  self.generator = opts.generator
  if opts.seed ~= nil then
    if math.type(opts.seed) ~= "integer" then
      error(fname .. ": seed must be an integer (got " .. tostring(opts.seed) .. ")", 3)
    end
    self.seed = opts.seed
  elseif not self.generator then
    self.seed = lunar.randint(0, 1 << 31, {1}, {device = CPU}):totable()[1]
  end
  self.epoch = 0
end
M.init_stream = init_stream

--- The generator for the next epoch (and advances the epoch counter).
local function next_generator(self)
  self.epoch = self.epoch + 1
  return self.generator or M.epoch_generator(self.seed, self.epoch)
end
M.next_generator = next_generator

local Sampler = class("Sampler")
function Sampler:__len() return self.num_samples end
--- Sets the epoch counter (the next sample() draws epoch e + 1), as after e epochs.
function Sampler:set_epoch(e) self.epoch = e end

--- 1, 2, ..., n every epoch.
local SequentialSampler = Sampler:extend("SequentialSampler")
function SequentialSampler:init(n) self.num_samples = count_of(n, "SequentialSampler") end
function SequentialSampler:sample()
  return lunar.arange(1, self.num_samples + 1, 1, I64)
end
M.SequentialSampler = SequentialSampler

--- A random permutation of 1..n per epoch, or with {replacement = true} num_samples
-- (default n) uniform draws.
--   lunar.data.RandomSampler(ds, {seed = 1})
local RandomSampler = Sampler:extend("RandomSampler")
function RandomSampler:init(n, opts)
  opts = opts or {}
  self.n = count_of(n, "RandomSampler")
  self.replacement = opts.replacement or false
  self.num_samples = opts.num_samples or self.n
  if not self.replacement and self.num_samples > self.n then
    error(("RandomSampler: %d samples from %d without replacement"):format(
      self.num_samples, self.n), 2)
  end
  init_stream(self, opts, "RandomSampler")
end
function RandomSampler:sample()
  local g = next_generator(self)
  if self.replacement then
    if self.n == 0 then return lunar.zeros(0, I64) end
    return lunar.randint(1, self.n + 1, {self.num_samples}, {generator = g, device = CPU})
  end
  local p = lunar.randperm(self.n, {generator = g, device = CPU})
  if self.num_samples < self.n then p = p:narrow(1, 1, self.num_samples) end
  return p
end
M.RandomSampler = RandomSampler

--- The given indices (a table or tensor, 1-based) in a new random order each epoch.
--   local s = lunar.data.SubsetRandomSampler(folds[1].train, {seed = 3})
local SubsetRandomSampler = Sampler:extend("SubsetRandomSampler")
function SubsetRandomSampler:init(indices, opts)
  if type(indices) == "table" then indices = lunar.tensor(indices, I64) end
  if not lunar.is_tensor(indices) or indices:dim() ~= 1 then
    error("SubsetRandomSampler: indices must be a list or a 1-d tensor", 2)
  end
  self.indices = indices:long():to(CPU)
  self.num_samples = indices:size(1)
  init_stream(self, opts, "SubsetRandomSampler")
end
function SubsetRandomSampler:sample()
  local g = next_generator(self)
  if self.num_samples == 0 then return self.indices end
  local p = lunar.randperm(self.num_samples, {generator = g, device = CPU})
  return self.indices:index_select(1, p)
end
M.SubsetRandomSampler = SubsetRandomSampler

--- num_samples indices drawn with probability proportional to weights (a list or 1-d
-- tensor, one non-negative weight per sample), with replacement by default (PyTorch's
-- WeightedRandomSampler). Without replacement it draws like successive weighted draws that
-- remove what they took (Efraimidis and Spirakis 2006: the largest u^(1/w)).
--   -- balanced batches from imbalanced labels y (1-based classes):
--   local counts = lunar.zeros(k):index_add(1, y, lunar.ones(n))
--   local s = lunar.data.WeightedRandomSampler((1 / counts):index_select(1, y), n)
local WeightedRandomSampler = Sampler:extend("WeightedRandomSampler")
function WeightedRandomSampler:init(weights, num_samples, replacement, opts)
  if type(replacement) == "table" then replacement, opts = nil, replacement end
  if type(weights) == "table" then
    weights = lunar.tensor(weights, {dtype = "float64", device = CPU})
  end
  if not lunar.is_tensor(weights) or weights:dim() ~= 1 then
    error("WeightedRandomSampler: weights must be a list or a 1-d tensor", 2)
  end
  weights = weights:double():to(CPU)
  local w = weights:totable()
  local positive = 0
  for i, v in ipairs(w) do
    if v ~= v or v < 0 or v == math.huge then
      error(("WeightedRandomSampler: weight %d is %s (weights must be finite and >= 0)"):format(
        i, tostring(v)), 2)
    end
    if v > 0 then positive = positive + 1 end
  end
  if positive == 0 then error("WeightedRandomSampler: every weight is zero", 2) end
  if math.type(num_samples) ~= "integer" or num_samples < 0 then
    error("WeightedRandomSampler: num_samples must be a non-negative integer (got " ..
      tostring(num_samples) .. ")", 2)
  end
  self.replacement = replacement == nil or replacement
  if not self.replacement and num_samples > positive then
    error(("WeightedRandomSampler: %d samples without replacement, but only %d weights are > 0")
      :format(num_samples, positive), 2)
  end
  self.weights = weights
  self.num_samples = num_samples
  local cum, s = {}, 0
  for i, v in ipairs(w) do
    s = s + v
    cum[i] = s
  end
  self.cum = cum
  init_stream(self, opts, "WeightedRandomSampler")
end
function WeightedRandomSampler:sample()
  local g = next_generator(self)
  local n, k = #self.cum, self.num_samples
  if k == 0 then return lunar.zeros(0, I64) end
  if not self.replacement then
    local u = lunar.rand(n, {dtype = "float64", generator = g, device = CPU})
    local keys = u:log() / self.weights -- log(u^(1/w)); zero weights give -inf
    local _, idx = keys:topk(k)
    return idx
  end
  -- inverse CDF: the first i with cum[i] > u * total (binary search on the cumulative sums)
  local cum = self.cum
  local total = cum[n]
  local u = lunar.rand(k, {dtype = "float64", generator = g, device = CPU}):totable()
  local out = {}
  for j = 1, k do
    local t = u[j] * total
    local lo, hi = 1, n
    while lo < hi do
      local mid = (lo + hi) // 2
      if cum[mid] > t then hi = mid else lo = mid + 1 end
    end
    out[j] = lo
  end
  return lunar.tensor(out, I64)
end
M.WeightedRandomSampler = WeightedRandomSampler

return M
