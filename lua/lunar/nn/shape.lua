--- Shape layers: Flatten, Unflatten, Reshape. Dims are 1-based; negative counts from the end.
-- @module lunar.nn.shape
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local shape = {}

local function shape_str(t) return "[" .. table.concat(t, "x") .. "]" end

local function check_int(fname, what, v)
  if math.type(v) ~= "integer" then
    error(("%s: %s must be an integer (got %s)"):format(fname, what, tostring(v)), 4)
  end
end

-- The 1-based positive form of dim d for a tensor of n dims, or an error naming fname.
local function norm_dim(fname, d, n, x)
  local p = d < 0 and n + d + 1 or d
  if p < 1 or p > n then
    error(("%s: dim %d is out of range for an input of shape %s")
      :format(fname, d, shape_str(x:size())), 4)
  end
  return p
end

--- Flattens dims start_dim..end_dim into one: `nn.Flatten()` turns [N, C, H, W] into
-- [N, C*H*W] (start_dim = 2 keeps the batch dim; end_dim = -1).
local Flatten = Module:extend("Flatten")
shape.Flatten = Flatten

function Flatten:init(start_dim, end_dim)
  start_dim, end_dim = start_dim or 2, end_dim or -1
  check_int("Flatten", "start_dim", start_dim)
  check_int("Flatten", "end_dim", end_dim)
  self.start_dim, self.end_dim = start_dim, end_dim
end

function Flatten:forward(x)
  if not lunar.is_tensor(x) then error("Flatten: expected a tensor, got " .. type(x), 2) end
  local n = x:dim()
  local s = norm_dim("Flatten", self.start_dim, n, x)
  local e = norm_dim("Flatten", self.end_dim, n, x)
  if s > e then
    error(("Flatten: start_dim %d comes after end_dim %d for an input of shape %s")
      :format(self.start_dim, self.end_dim, shape_str(x:size())), 2)
  end
  return x:flatten(s, e)
end

function Flatten:extra_repr()
  return ("start_dim=%d, end_dim=%d"):format(self.start_dim, self.end_dim)
end

--- Splits dim into sizes: `nn.Unflatten(2, {16, 7, 7})` turns [N, 784] into [N, 16, 7, 7].
-- One size may be -1 (inferred).
local Unflatten = Module:extend("Unflatten")
shape.Unflatten = Unflatten

function Unflatten:init(dim, sizes)
  check_int("Unflatten", "dim", dim)
  if type(sizes) ~= "table" or #sizes == 0 then
    error("Unflatten: sizes must be a non-empty list of integers", 3)
  end
  for i, v in ipairs(sizes) do check_int("Unflatten", "sizes[" .. i .. "]", v) end
  self.dim, self.sizes = dim, sizes
end

function Unflatten:forward(x)
  if not lunar.is_tensor(x) then error("Unflatten: expected a tensor, got " .. type(x), 2) end
  local size = x:size()
  local d = norm_dim("Unflatten", self.dim, #size, x)
  local known, infer = 1, nil
  for i, v in ipairs(self.sizes) do
    if v == -1 and infer == nil then infer = i else known = known * v end
  end
  local sizes = {table.unpack(self.sizes)}
  if infer and known > 0 and size[d] % known == 0 then sizes[infer] = size[d] // known end
  local prod = 1
  for _, v in ipairs(sizes) do prod = prod * v end
  if prod ~= size[d] then
    error(("Unflatten: dim %d of the input %s has size %d, which cannot be split into {%s}")
      :format(self.dim, shape_str(size), size[d], table.concat(self.sizes, ", ")), 2)
  end
  local out = {}
  for i = 1, d - 1 do out[#out + 1] = size[i] end
  for _, v in ipairs(sizes) do out[#out + 1] = v end
  for i = d + 1, #size do out[#out + 1] = size[i] end
  return x:reshape(out)
end

function Unflatten:extra_repr()
  return ("dim=%d, sizes={%s}"):format(self.dim, table.concat(self.sizes, ", "))
end

--- Reshapes every sample, keeping the batch dim: `nn.Reshape(7, 7, 16)` turns [N, 784]
-- into [N, 7, 7, 16] (Keras' Reshape). One size may be -1. Also takes one table.
local Reshape = Module:extend("Reshape")
shape.Reshape = Reshape

function Reshape:init(...)
  local sizes = {...}
  if type(sizes[1]) == "table" then sizes = sizes[1] end
  if #sizes == 0 then error("Reshape: give the target shape of one sample", 3) end
  for i, v in ipairs(sizes) do check_int("Reshape", "size " .. i, v) end
  self.shape = sizes
end

function Reshape:forward(x)
  if not lunar.is_tensor(x) then error("Reshape: expected a tensor, got " .. type(x), 2) end
  if x:dim() < 1 then error("Reshape: the input needs a batch dim, got a scalar", 2) end
  local size = x:size()
  local per, known, infer = 1, 1, false
  for i = 2, #size do per = per * size[i] end
  for _, v in ipairs(self.shape) do
    if v == -1 then infer = true else known = known * v end
  end
  if (infer and (known == 0 or per % known ~= 0)) or (not infer and known ~= per) then
    error(("Reshape: an input of shape %s (%d elements per sample) cannot be reshaped to %s")
      :format(shape_str(size), per, "[N, " .. table.concat(self.shape, ", ") .. "]"), 2)
  end
  return x:reshape(size[1], table.unpack(self.shape))
end

function Reshape:extra_repr() return table.concat(self.shape, ", ") end

return shape
