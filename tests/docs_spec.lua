-- Every public function and tensor method is named in docs/api.md (as `name` or `name(`),
-- so the reference cannot fall behind the code.
local lunar = require("lunar")

describe("docs/api.md", function()
  it("names every function and method", function()
    local f = assert(io.open("docs/api.md", "r"))
    local doc = f:read("a")
    f:close()
    local missing = {}
    local function check(name)
      local plain = name:gsub("_$", "") -- in-place forms are documented with their op
      if not (doc:find("`" .. name, 1, true) or doc:find(name .. "(", 1, true) or
          doc:find(", `" .. plain, 1, true) or doc:find("`" .. plain, 1, true) or
          doc:find(name .. "`", 1, true) or doc:find(name .. ",", 1, true)) then
        missing[#missing + 1] = name
      end
    end
    for k, v in pairs(lunar) do
      if type(v) == "function" then check(k) end
    end
    for k in pairs(lunar.Tensor) do check(k) end
    table.sort(missing)
    assert(#missing == 0, "not in docs/api.md: " .. table.concat(missing, ", "))
  end)
end)
