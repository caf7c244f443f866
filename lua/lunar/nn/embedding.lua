--- Embedding: a lookup table of vectors indexed by (1-based) integers.
-- @module lunar.nn.embedding
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local M = {}

--- A [num_embeddings, embedding_dim] table, initialised N(0, 1). Options: padding_idx (a
-- 1-based row, negative from the end, whose vector starts at zero and gets no gradient),
-- dtype.
-- @usage local emb = nn.Embedding(1000, 64, {padding_idx = 1}); local v = emb(ids)
local Embedding = Module:extend("Embedding")
M.Embedding = Embedding

function Embedding:init(num_embeddings, embedding_dim, opts)
  for _, v in ipairs({num_embeddings, embedding_dim}) do
    if math.type(v) ~= "integer" or v < 1 then
      error(("Embedding: sizes must be positive integers (got %s, %s)")
        :format(tostring(num_embeddings), tostring(embedding_dim)), 3)
    end
  end
  opts = opts or {}
  self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
  local pad = opts.padding_idx
  if pad ~= nil then
    if math.type(pad) ~= "integer" or pad == 0 or pad > num_embeddings or pad < -num_embeddings then
      error(("Embedding: padding_idx %s is out of range for %d embeddings")
        :format(tostring(pad), num_embeddings), 3)
    end
    if pad < 0 then pad = pad + num_embeddings + 1 end
    self.padding_idx = pad
  end
  local w = lunar.randn(num_embeddings, embedding_dim, {dtype = opts.dtype})
  if pad then w[pad]:zero_() end
  self.weight = Module.Parameter(w)
end

function Embedding:forward(idx)
  if not lunar.is_tensor(idx) then
    error("Embedding: indices must be an int64 tensor (got " .. type(idx) .. ")", 2)
  end
  local flat = idx:reshape(idx:numel())
  local out = lunar.index_select(self.weight, 1, flat)
  if self.padding_idx then
    -- the padding rows read the table as usual but pass no gradient back to it
    local keep = flat:ne(self.padding_idx):unsqueeze(2)
    out = lunar.where(keep, out, out:detach())
  end
  local shape = {}
  for d = 1, idx:dim() do shape[d] = idx:size(d) end
  shape[#shape + 1] = self.embedding_dim
  return out:reshape(shape)
end

function Embedding:extra_repr()
  local s = ("%d, %d"):format(self.num_embeddings, self.embedding_dim)
  if self.padding_idx then s = s .. ", padding_idx=" .. self.padding_idx end
  return s
end

return M
