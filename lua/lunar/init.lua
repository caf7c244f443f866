--- lunar: deep learning for Lua 5.4.
-- `local lunar = require("lunar")` gives tensors, ops, autograd, RNG and files.
-- @module lunar
local core = require("lunar.core")

local lunar = {}
for k, v in pairs(core) do lunar[k] = v end

lunar.autograd = require("lunar.autograd")
require("lunar.format")

-- lunar.optim loads on first use (it requires lunar itself)
setmetatable(lunar, {__index = function(t, k)
  if k == "optim" then
    local m = require("lunar.optim")
    rawset(t, k, m)
    return m
  end
end})

return lunar
