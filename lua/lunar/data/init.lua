--- lunar.data: data sets, loaders, samplers, splits and the embedded data sets.
--   local data = require("lunar.data")
--   local X, y = data.iris()
--   local train, test = data.holdout(X:size(1), {test_size = 0.2, seed = 1, stratify = y})
--   local loader = data.DataLoader(data.TensorDataset(X:index_select(1, train),
--                                                     y:index_select(1, train)),
--                                  {batch_size = 16, shuffle = true, seed = 1})
--   for xb, yb in loader:iter() do ... end
-- Each part lives in its own file and is merged into this table.
-- @module lunar.data
local data = {}

local parts = {
  "lunar.data.dataset",
  "lunar.data.sampler",
  "lunar.data.loader",
  "lunar.data.split",
  "lunar.data.datasets",
}

for _, name in ipairs(parts) do
  for k, v in pairs(require(name)) do
    if data[k] ~= nil then error("lunar.data: " .. k .. " is defined twice (" .. name .. ")") end
    data[k] = v
  end
end

return data
