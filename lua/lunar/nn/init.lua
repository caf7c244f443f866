--- lunar.nn: modules, layers and containers.
--   local nn = require("lunar.nn")
--   local model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
-- Each family lives in its own file and is merged into this table.
-- @module lunar.nn
local Module = require("lunar.nn.module")

local nn = {
  Module = Module,
  Parameter = Module.Parameter,
  Buffer = Module.Buffer,
}

local families = {
  "lunar.nn.containers",
  "lunar.nn.linear",
  "lunar.nn.loss",
}

for _, name in ipairs(families) do
  for k, v in pairs(require(name)) do
    if nn[k] ~= nil then error("lunar.nn: " .. k .. " is defined twice (" .. name .. ")") end
    nn[k] = v
  end
end

return nn
