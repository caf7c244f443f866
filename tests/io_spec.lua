-- lunar.save / lunar.load (safetensors): values against PyTorch-written fixtures and the
-- pure-Lua reader, byte equality with the PyTorch-side writer, round trips, atomic saves,
-- and clear errors for corrupt files.
local lunar = require("lunar")
local H = require("tests.helper")
local fixtures = require("tests.fixtures")

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir '" .. d .. "'"))
  return d
end

local function listdir(d)
  local p = assert(io.popen("ls -A '" .. d .. "'"))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

local function rmtree(d) os.execute("rm -rf '" .. d .. "'") end

-- The values gen_io.py wrote (keep in step with it).
local NAN = string.unpack("<d", "\0\0\0\0\0\0\xf8\x7f") -- Python's nan; Lua's 0/0 is -nan
local F32 = {{-1.25, 0.0, 0.5, 3.0}, {1e-3, -2.5e4, 7.125, 1 / 3},
             {1e30, -1e-30, 2.0 ^ -20, 65504.0}}
local F64 = {math.pi, -1e300, 5e-324, math.huge, -math.huge, NAN, -0.0}
local I64 = {(1 << 62) + 1, math.mininteger, math.maxinteger, -5}
local I32 = {{-2 ^ 31, 2 ^ 31 - 1, 0}, {-7, 42, 1000000}}
local U8 = {{{0, 1}, {127, 128}}, {{200, 254}, {255, 3}}}
local BOOL = {{true, false, true}, {false, false, true}}

local function io_tensors()
  return {
    f32 = lunar.tensor(F32, {dtype = "float32"}),
    f64 = lunar.tensor(F64, {dtype = "float64"}),
    i64 = lunar.tensor(I64, {dtype = "int64"}),
    i32 = lunar.tensor(I32, {dtype = "int32"}),
    u8 = lunar.tensor(U8, {dtype = "uint8"}),
    mask = lunar.tensor(BOOL),
    scalar = lunar.tensor(3.25),
    empty = lunar.zeros(0, 3),
    transposed = lunar.arange(6):reshape(2, 3):t(),
  }
end
local IO_META = {epoch = 7, format = "pt", name = "lunar-io"} -- 7 becomes "7"

-- A safetensors file from a header string and data bytes; hlen overrides the length field.
local function st_file(header, data, hlen)
  return write_bytes(os.tmpname(), string.pack("<I8", hlen or #header) .. header .. (data or ""))
end

describe("lunar.load", function()
  local t, meta = lunar.load("tests/fixtures/io.safetensors")
  local ref = fixtures.load("io")

  it("reads every dtype with the values PyTorch wrote", function()
    assert.are.same({"float32", {3, 4}}, {t.f32:dtype(), t.f32:size()})
    H.close(t.f32, F32, 1e-7, 0)
    local row = t.f32:totable()[2] -- exactly the float32 roundings of 1e-3 and 1/3
    assert.are.equal(string.unpack("<f", string.pack("<f", 1e-3)), row[1])
    assert.are.equal(string.unpack("<f", string.pack("<f", 1 / 3)), row[4])
    assert.are.equal("float64", t.f64:dtype())
    H.close(t.f64, F64, 0, 0)
    local f64 = t.f64:totable()
    assert.are.equal(-math.huge, 1 / f64[7]) -- -0.0 kept its sign
    assert.are.equal(5e-324, f64[3])
    assert.are.same({"int64", I64}, {t.i64:dtype(), t.i64:totable()})
    assert.are.same({"int32", I32}, {t.i32:dtype(), t.i32:totable()})
    assert.are.same({"uint8", U8}, {t.u8:dtype(), t.u8:totable()})
    assert.are.same({"bool", BOOL}, {t.mask:dtype(), t.mask:totable()})
    assert.are.same({}, t.scalar:size())
    assert.are.equal(3.25, t.scalar:item())
    assert.are.same({"float32", {0, 3}}, {t.empty:dtype(), t.empty:size()})
    assert.are.same({{0, 3}, {1, 4}, {2, 5}}, t.transposed:totable())
  end)

  it("agrees with the pure-Lua reader on every tensor and the metadata", function()
    local n = 0
    for name, x in pairs(ref) do
      if name ~= "__metadata__" then
        n = n + 1
        assert.are.same({x:dtype(), x:size()}, {t[name]:dtype(), t[name]:size()}, name)
        H.close(t[name], x, 0, 0)
      end
    end
    assert.are.equal(9, n)
    assert.are.same({epoch = "7", format = "pt", name = "lunar-io"}, meta)
    assert.are.same(ref.__metadata__, meta)
  end)

  it("decodes escaped and non-ASCII names and metadata", function()
    local s, m = lunar.load("tests/fixtures/io_names.safetensors")
    assert.are.same({{1, -2}, {0.25, 4}}, s["layer1.weight"]:totable())
    assert.are.same({0.5, -0.5}, s["layer1.bias"]:totable())
    assert.are.same({"float64", {{1.5, 2.5}}}, {s["layer2.0.weight"]:dtype(),
      s["layer2.0.weight"]:totable()})
    assert.are.same({9, 8, 7}, s["é.ü"]:totable())
    assert.are.same({lr = "0.001",
      note = "tab\tquote\"back\\slash/ nl\n é ✓ 😀 \x7f \x01 end"}, m)
  end)

  it("returns an empty metadata table when the file has none", function()
    local p = os.tmpname()
    lunar.save(p, lunar.ones(2))
    local s, m = lunar.load(p)
    assert.are.same({}, m)
    assert.are.same({1, 1}, s.tensor:totable())
    os.remove(p)
  end)
end)

describe("lunar.save", function()
  it("writes the same bytes as the PyTorch-side writer", function()
    local p = os.tmpname()
    lunar.save(p, io_tensors(), IO_META)
    assert.is_true(read_bytes(p) == read_bytes("tests/fixtures/io.safetensors"))
    os.remove(p)
  end)

  it("flattens nested tables with dotted names and escapes like json.dumps", function()
    local p = os.tmpname()
    lunar.save(p, {
      layer1 = {weight = lunar.tensor{{1.0, -2.0}, {0.25, 4.0}}, bias = lunar.tensor{0.5, -0.5}},
      layer2 = {[0] = {weight = lunar.tensor({{1.5, 2.5}}, {dtype = "float64"})}},
      ["é.ü"] = lunar.tensor({9, 8, 7}, {dtype = "uint8"}),
    }, {lr = "0.001", note = "tab\tquote\"back\\slash/ nl\n é ✓ 😀 \x7f \x01 end"})
    assert.is_true(read_bytes(p) == read_bytes("tests/fixtures/io_names.safetensors"))
    os.remove(p)
  end)

  it("round-trips every dtype, views, 0-d and empty tensors exactly", function()
    local p = os.tmpname()
    local src = io_tensors()
    src.narrowed = lunar.arange(20):reshape(4, 5):narrow(2, 2, 3):t() -- strided view
    src.expanded = lunar.tensor({1.5, -2}, {dtype = "float64"}):expand(3, 2)
    lunar.save(p, src, {a = "b"})
    local back, m = lunar.load(p)
    assert.are.same({a = "b"}, m)
    for name, x in pairs(src) do
      assert.are.same({x:dtype(), x:size()}, {back[name]:dtype(), back[name]:size()}, name)
      assert.is_true(back[name]:is_contiguous())
      H.close(back[name], x, 0, 0)
    end
    assert.are.same({{1, 6, 11, 16}, {2, 7, 12, 17}, {3, 8, 13, 18}}, back.narrowed:totable())
    assert.are.same(I64, back.i64:totable())
    os.remove(p)
  end)

  it("stores a single tensor under the name 'tensor' and converts number metadata", function()
    local p = os.tmpname()
    lunar.save(p, lunar.tensor{{1, 2}, {3, 4}}, {step = 12, lr = 0.5})
    local s, m = lunar.load(p)
    local names = {}
    for k in pairs(s) do names[#names + 1] = k end
    assert.are.same({"tensor"}, names)
    assert.are.same({{1, 2}, {3, 4}}, s.tensor:totable())
    assert.are.same({step = "12", lr = "0.5"}, m)
    os.remove(p)
  end)

  it("saves an empty table as a valid file with no tensors", function()
    local p = os.tmpname()
    lunar.save(p, {})
    assert.are.equal(string.pack("<I8", 8) .. "{}      ", read_bytes(p))
    local s, m = lunar.load(p)
    assert.are.same({}, s)
    assert.are.same({}, m)
    os.remove(p)
  end)

  it("refuses bad values, names and metadata", function()
    local p = os.tmpname()
    local x = lunar.ones(2)
    H.raises(function() lunar.save(p, 42) end, "save", p, "expected a tensor or a table")
    H.raises(function() lunar.save(p, {a = {b = "w"}}) end, "save", p, "'a.b' is a string")
    H.raises(function() lunar.save(p, {[true] = x}) end, "save", "key of type boolean")
    H.raises(function() lunar.save(p, {__metadata__ = x}) end, "save", "reserved")
    H.raises(function() lunar.save(p, {["a\0b"] = x}) end, "save", "NUL")
    H.raises(function() lunar.save(p, {["\xff"] = x}) end, "save", "not valid UTF-8")
    H.raises(function() lunar.save(p, {a = {b = x}, ["a.b"] = x}) end, "save", "named 'a.b'")
    H.raises(function() lunar.save(p, x, {ok = true}) end, "save", "metadata 'ok'", "boolean")
    H.raises(function() lunar.save(p, x, {[1] = "v"}) end, "save", "metadata keys")
    H.raises(function() lunar.save(p, x, {k = "\xc3("}) end, "save", "metadata 'k'", "UTF-8")
    H.raises(function() lunar.save(p, x, "meta") end, "save", "metadata must be a table")
    local cyclic = {}
    cyclic.self = cyclic
    H.raises(function() lunar.save(p, cyclic) end, "save", "nested more than")
    os.remove(p)
  end)
end)

describe("lunar.save is atomic", function()
  it("leaves no file behind after a failed save", function()
    local d = tmpdir()
    local p = d .. "/model.safetensors"
    H.raises(function() lunar.save(p, {w = lunar.ones(2), b = "not a tensor"}) end, "save")
    assert.is_false(exists(p))
    assert.are.same({}, listdir(d))
    rmtree(d)
  end)

  it("does not clobber an existing file when a save fails", function()
    local d = tmpdir()
    local p = d .. "/model.safetensors"
    lunar.save(p, {w = lunar.ones(3)})
    local before = read_bytes(p)
    H.raises(function() lunar.save(p, {w = lunar.zeros(3), meta = 1}) end, "save", "'meta'")
    H.raises(function() lunar.save(p, {w = lunar.zeros(3)}, {bad = {}}) end, "save", "'bad'")
    assert.are.equal(before, read_bytes(p))
    assert.are.same({"model.safetensors"}, listdir(d))
    assert.are.same({1, 1, 1}, lunar.load(p).w:totable())
    rmtree(d)
  end)

  it("removes its temp file when the final rename fails", function()
    local d = tmpdir()
    local target = d .. "/occupied"
    assert(os.execute("mkdir '" .. target .. "' && touch '" .. target .. "/keep'"))
    H.raises(function() lunar.save(target, lunar.ones(4)) end, "save", target, "rename")
    assert.are.same({"occupied"}, listdir(d))
    assert.are.same({"keep"}, listdir(target))
    rmtree(d)
  end)

  it("names the path when the directory cannot be written", function()
    local d = tmpdir()
    local p = d .. "/missing/dir/x.safetensors"
    H.raises(function() lunar.save(p, lunar.ones(1)) end, "save", p, "temp file",
      "No such file or directory")
    assert.are.same({}, listdir(d))
    rmtree(d)
  end)

  it("replaces an existing file with the new contents", function()
    local p = os.tmpname()
    lunar.save(p, {w = lunar.ones(3)})
    lunar.save(p, {w = lunar.full({2}, 5)}, {v = "2"})
    local s, m = lunar.load(p)
    assert.are.same({5, 5}, s.w:totable())
    assert.are.same({v = "2"}, m)
    os.remove(p)
  end)
end)

describe("lunar.load rejects corrupt files", function()
  local F4 = string.pack("<f", 1.5)

  -- each case: a file and fragments its error must contain (besides "load" and the path)
  local cases = {
    {"empty file", function() return write_bytes(os.tmpname(), "") end, "fewer than the 8"},
    {"7 bytes", function() return write_bytes(os.tmpname(), "\8\0\0\0\0\0\0") end,
      "7 bytes, fewer than the 8"},
    {"header longer than the file", function() return st_file("{}      ", "", 4096) end,
      "header length 4096 is larger than the 8 bytes"},
    {"absurd header length", function() return st_file("{}", "", 1 << 40) end, "absurd"},
    {"truncated JSON", function() return st_file('{"a":', "") end, "bad header JSON",
      "unexpected end"},
    {"missing colon", function() return st_file('{"a" 1}', "") end, "expected ':'"},
    {"missing comma", function() return st_file('{"a":{} "b":{}}', "") end,
      "expected ',' or '}'"},
    {"bad escape", function() return st_file('{"a\\q":{}}', "") end, "unknown escape"},
    {"bad \\u escape", function() return st_file('{"a\\u12g4":{}}', "") end, "bad hex digit"},
    {"lone surrogate", function() return st_file('{"\\ud800":{}}', "") end, "unpaired surrogate"},
    {"NUL escape", function() return st_file('{"a\\u0000":{}}', "") end, "NUL"},
    {"raw control character", function() return st_file('{"a\nb":{}}', "") end,
      "control character"},
    {"invalid UTF-8", function() return st_file('{"\xff":{}}', "") end, "invalid UTF-8"},
    {"unterminated string", function() return st_file('{"abc', "") end, "unterminated string"},
    {"float", function() return st_file('{"a":1.5}', "") end, "numbers must be integers"},
    {"huge integer", function() return st_file('{"a":99999999999999999999}', "") end,
      "integer out of range"},
    {"garbage after the object", function() return st_file('{} x', "") end, "trailing"},
    {"deep nesting", function() return st_file(string.rep("[", 200), "") end,
      "nested too deeply"},
    {"not an object", function() return st_file('[1,2]   ', "") end, "an array, not a JSON object"},
    {"duplicate tensor", function()
      return st_file('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},' ..
                     '"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', "") end,
      "names 'a' twice"},
    {"unknown dtype", function()
      return st_file('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', F4) end,
      "tensor 'h'", "unsupported dtype 'F16'"},
    {"dtype not a string", function()
      return st_file('{"h":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', F4) end,
      "dtype is an integer"},
    {"missing data_offsets", function() return st_file('{"h":{"dtype":"F32","shape":[1]}}', F4) end,
      "has no 'data_offsets'"},
    {"tensor not an object", function() return st_file('{"h":"F32"}', "") end,
      "tensor 'h' is described by a string"},
    {"negative size", function()
      return st_file('{"h":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', F4) end,
      "size 1 of its shape is not a non-negative integer"},
    {"too many dims", function()
      return st_file('{"h":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}',
        "\1") end, "9 dims"},
    {"shape and offsets disagree", function()
      return st_file('{"h":{"dtype":"F32","shape":[2,3],"data_offsets":[0,4]}}', F4) end,
      "shape [2, 3] of float32 needs 24 bytes but data_offsets [0, 4] hold 4"},
    {"overflowing shape", function()
      return st_file('{"h":{"dtype":"F64","shape":[4611686018427387904,4],' ..
                     '"data_offsets":[0,4]}}', F4) end, "needs more than"},
    {"offsets beyond the data", function()
      return st_file('{"h":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', F4) end,
      "data_offsets [0, 8] lie outside the data region (4 bytes)"},
    {"reversed offsets", function()
      return st_file('{"h":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', F4) end,
      "bad data_offsets [4, 0]"},
    {"offsets not two integers", function()
      return st_file('{"h":{"dtype":"F32","shape":[1],"data_offsets":[0]}}', F4) end,
      "data_offsets is not an array of two integers"},
    {"overlapping tensors", function()
      return st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
                     '"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', F4) end,
      "overlapping data"},
    {"a gap between tensors", function()
      return st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
                     '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', F4:rep(3)) end,
      "tensor 'b' starts at byte 8", "a gap in the data"},
    {"bytes after the last tensor", function()
      return st_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', F4:rep(2)) end,
      "cover 4 bytes of data but the file holds 8"},
    {"metadata not strings", function()
      return st_file('{"__metadata__":{"epoch":3}}', "") end,
      "__metadata__ value 'epoch' is an integer, not a string"},
    {"metadata not an object", function() return st_file('{"__metadata__":[]}', "") end,
      "__metadata__ is an array"},
    {"a bool byte that is not 0 or 1", function()
      return st_file('{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', "\1\7") end,
      "holds the byte 7 at element 1"},
  }

  for _, case in ipairs(cases) do
    it(case[1], function()
      local p = case[2]()
      H.raises(function() lunar.load(p) end, "load: " .. p .. ": ", table.unpack(case, 3))
      os.remove(p)
    end)
  end

  it("a valid file cut short anywhere", function()
    local whole = read_bytes("tests/fixtures/io.safetensors")
    local p = os.tmpname()
    for _, n in ipairs({0, 5, 8, 9, 100, #whole - 230, #whole - 1}) do
      write_bytes(p, whole:sub(1, n))
      H.raises(function() lunar.load(p) end, "load: " .. p .. ": ")
    end
    write_bytes(p, whole:sub(1, #whole - 1))
    H.raises(function() lunar.load(p) end, "'u8'", "outside the data region")
    os.remove(p)
  end)

  it("a missing file and a directory", function()
    H.raises(function() lunar.load("/nonexistent/x.safetensors") end,
      "load: /nonexistent/x.safetensors: cannot open", "No such file")
    local d = tmpdir()
    H.raises(function() lunar.load(d) end, "load: " .. d .. ": not a regular file")
    rmtree(d)
  end)
end)
