-- A pure-Lua safetensors reader for the specs: fixtures load without going through
-- lunar.load, so the C loader is checked against an independent reader, not itself.
--   local fx = require("tests.fixtures").load("elementwise")
--   (reads tests/fixtures/elementwise.safetensors)
--   fx.x, fx.exp ...  (lunar tensors)
local lunar = require("lunar")

local fixtures = {}

-- Just enough JSON for a safetensors header: objects, arrays, strings, integers.
local function parse_json(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local i, j = s:find('^"[^"]*"', pos)
    assert(i, "fixtures: bad JSON string at " .. pos)
    pos = j + 1
    return s:sub(i + 1, j - 1)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local obj = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return obj end
      while true do
        ws()
        local k = str()
        ws()
        assert(s:sub(pos, pos) == ":")
        pos = pos + 1
        obj[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return obj end
        assert(d == ",", "fixtures: bad JSON object")
      end
    elseif c == "[" then
      local arr = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return arr end
      while true do
        arr[#arr + 1] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return arr end
        assert(d == ",", "fixtures: bad JSON array")
      end
    elseif c == '"' then
      return str()
    else
      local i, j = s:find("^-?%d+", pos)
      assert(i, "fixtures: bad JSON value at " .. pos)
      pos = j + 1
      return math.tointeger(tonumber(s:sub(i, j)))
    end
  end
  return value()
end

fixtures.parse_json = parse_json

local FORMATS = {
  F32 = {"<f", 4, "float32"}, F64 = {"<d", 8, "float64"}, I32 = {"<i4", 4, "int32"},
  I64 = {"<i8", 8, "int64"}, U8 = {"<B", 1, "uint8"}, BOOL = {"<B", 1, "bool"},
}

local function build(values, shape, d, pos)
  if d > #shape then return values[pos], pos + 1 end
  local t = {}
  for i = 1, shape[d] do t[i], pos = build(values, shape, d + 1, pos) end
  return t, pos
end

--- Loads tests/fixtures/<name>.safetensors as a table of lunar tensors (+ __metadata__).
function fixtures.load(name)
  local path = "tests/fixtures/" .. name .. ".safetensors"
  local f = assert(io.open(path, "rb"))
  local bytes = f:read("a")
  f:close()
  local n = string.unpack("<I8", bytes)
  local header = parse_json(bytes:sub(9, 8 + n))
  local base = 8 + n
  local out = {}
  for key, info in pairs(header) do
    if key == "__metadata__" then
      out[key] = info
    else
      local fmt = assert(FORMATS[info.dtype], "fixtures: dtype " .. tostring(info.dtype))
      local first, last = info.data_offsets[1], info.data_offsets[2]
      local values, p = {}, base + first + 1
      while p <= base + last do
        local v
        v, p = string.unpack(fmt[1], bytes, p)
        if info.dtype == "BOOL" then v = v ~= 0 end
        values[#values + 1] = v
      end
      if #info.shape == 0 then
        out[key] = lunar.tensor(values[1], {dtype = fmt[3]})
      else
        local numel = 1
        for _, s in ipairs(info.shape) do numel = numel * s end
        if numel == 0 then
          out[key] = lunar.zeros(info.shape, {dtype = fmt[3]})
        else
          out[key] = lunar.tensor((build(values, info.shape, 1, 1)), {dtype = fmt[3]})
        end
      end
    end
  end
  return out
end

return fixtures
