-- The README's tour must run as written: every ```lua block is executed.
describe("README", function()
  it("runs every Lua example", function()
    local f = assert(io.open("README.md", "r"))
    local text = f:read("a")
    f:close()
    local n = 0
    for code in text:gmatch("```lua\n(.-)```") do
      n = n + 1
      local chunk = assert(load(code, "=README block " .. n))
      local out = {}
      local saved = print
      print = function(...) out[#out + 1] = select("#", ...) end -- keep the test output clean
      local ok, err = pcall(chunk)
      print = saved
      assert(ok, err)
    end
    assert.is_true(n >= 1)
  end)
end)
