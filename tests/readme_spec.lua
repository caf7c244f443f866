-- The README's tour must run as written: every ```lua block is executed.
describe("README", function()
  it("runs every Lua example", function()
    local f = assert(io.open("README.md", "r"))
    local text = f:read("a")
    f:close()
    local n = 0
    for code in text:gmatch("```lua\n(.-)```") do
      n = n + 1
      -- print is silenced so the test output stays clean
      local env = setmetatable({print = function() end}, {__index = _G})
      local chunk = assert(load(code, "=README block " .. n, "t", env))
      local ok, err = pcall(chunk)
      assert(ok, err)
    end
    assert.is_true(n >= 1)
  end)
end)
