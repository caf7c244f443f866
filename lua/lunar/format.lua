--- Pretty printing of tensors, in PyTorch's layout with a Torch7-style footer:
--   tensor([[1.0000, 2.5000],
--           [3.0000, 4.0000]])
--   [float32 tensor of size 2x2]
-- Large tensors (over 1000 elements) show the first and last 3 entries of each dim.
-- @module lunar.format
local core = require("lunar.core")

local THRESHOLD, EDGE = 1000, 3

-- Indices to show along a dim of size n.
local function shown(n, elide)
  local idx = {}
  if elide and n > 2 * EDGE then
    for i = 1, EDGE do idx[#idx + 1] = i end
    idx[#idx + 1] = false -- the ellipsis
    for i = n - EDGE + 1, n do idx[#idx + 1] = i end
  else
    for i = 1, n do idx[i] = i end
  end
  return idx
end

-- Collects the values that will be printed, to choose one number format for all.
local function collect(t, elide, out)
  if t:dim() == 0 then
    out[#out + 1] = t:item()
    return
  end
  if t:dim() == 1 and not elide then
    for _, v in ipairs(t:totable()) do out[#out + 1] = v end
    return
  end
  for _, i in ipairs(shown(t:size(1), elide)) do
    if i then collect(t:select(1, i), elide, out) end
  end
end

local function formatter(values, dtype)
  if dtype == "bool" then
    return function(v) return v and "True" or "False" end
  end
  if dtype ~= "float32" and dtype ~= "float64" then
    return function(v) return string.format("%d", v) end
  end
  local maxabs, minabs, allint = 0, math.huge, true
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      local a = math.abs(v)
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
      if v ~= math.floor(v) then allint = false end
    end
  end
  local sci = maxabs >= 1e8 or (minabs < 1e-4 and minabs > 0) or
    (minabs < math.huge and maxabs / minabs > 1e3)
  local fmt
  if sci then
    fmt = "%.4e"
  elseif allint then
    fmt = "%.0f."
  else
    fmt = "%.4f"
  end
  return function(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return string.format(fmt, v)
  end
end

local function render(t, elide, fmt, width, indent)
  if t:dim() == 0 then return fmt(t:item()) end
  local parts = {}
  local idx = shown(t:size(1), elide)
  if t:dim() == 1 then
    local vals = elide and {} or t:totable()
    for _, i in ipairs(idx) do
      if not i then
        parts[#parts + 1] = "..."
      else
        local s = fmt(elide and t[i] or vals[i])
        parts[#parts + 1] = string.rep(" ", width - #s) .. s
      end
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local sep = "," .. string.rep("\n", t:dim() - 1) .. string.rep(" ", indent + 1)
  for _, i in ipairs(idx) do
    parts[#parts + 1] = i and render(t:select(1, i), elide, fmt, width, indent + 1) or "..."
  end
  return "[" .. table.concat(parts, sep) .. "]"
end

local function tostring_tensor(t)
  local elide = t:numel() > THRESHOLD
  local values = {}
  collect(t, elide, values)
  local fmt = formatter(values, t:dtype())
  local width = 0
  for _, v in ipairs(values) do width = math.max(width, #fmt(v)) end
  local body
  if t:numel() == 0 then
    body = "[]"
  else
    body = render(t, elide, fmt, width, #"tensor(")
  end
  local size = table.concat(t:size(), "x")
  if t:dim() == 0 then size = "[] (a scalar)" end
  local extra = ""
  if t.grad_fn then extra = ", grad_fn=<" .. t.grad_fn .. ">"
  elseif t.requires_grad then extra = ", requires_grad=true" end
  return ("tensor(%s%s)\n[%s tensor of size %s]"):format(body, extra, t:dtype(), size)
end

core.metatable.__tostring = tostring_tensor
return tostring_tensor
