--- lunar: deep learning for Lua 5.4.
-- `local lunar = require("lunar")` gives tensors, ops, autograd, RNG and files.
-- @module lunar
local core = require("lunar.core")

local lunar = {}
for k, v in pairs(core) do lunar[k] = v end

lunar.autograd = require("lunar.autograd")
require("lunar.format")

-- The libraries above the core load on first use: they require lunar themselves, and a
-- script that only needs tensors should not pay for them.
local lazy = {
  nn = "lunar.nn", optim = "lunar.optim", data = "lunar.data", metrics = "lunar.metrics",
  train = "lunar.train", models = "lunar.models",
}
setmetatable(lunar, {__index = function(t, k)
  local name = lazy[k]
  if name then
    local m = require(name)
    rawset(t, k, m)
    return m
  end
end})

return lunar
