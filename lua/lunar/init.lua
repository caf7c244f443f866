--- lunar: deep learning for Lua 5.4.
-- `local lunar = require("lunar")` gives tensors, ops, autograd, RNG and files.
-- @module lunar
local core = require("lunar.core")

local lunar = {}
for k, v in pairs(core) do lunar[k] = v end

lunar.autograd = require("lunar.autograd")
require("lunar.format")

return lunar
