--- lunar.train: Keras-like training over the pieces a hand-written loop uses.
--   local train = require("lunar.train")
--   local history = train.fit(model, {X, y}, {loss = "cross_entropy",
--     optimizer = lunar.optim.Adam(model:parameters(), {lr = 1e-3}), epochs = 10,
--     validation_split = 0.2, metrics = {"accuracy"},
--     callbacks = {train.EarlyStopping({patience = 3, restore_best_weights = true})}})
--   print(train.evaluate(model, {Xte, yte}, {loss = "cross_entropy", metrics = {"accuracy"}}))
-- fit, evaluate and predict live in fit.lua, the callbacks in callbacks.lua, the progress
-- output in progress.lua, checkpoints in checkpoint.lua; all are merged into this table.
-- @module lunar.train
local train = {}

local parts = {
  "lunar.train.fit",
  "lunar.train.callbacks",
  "lunar.train.progress",
  "lunar.train.checkpoint",
}

for _, name in ipairs(parts) do
  for k, v in pairs(require(name)) do
    if train[k] ~= nil then error("lunar.train: " .. k .. " is defined twice (" .. name .. ")") end
    train[k] = v
  end
end

return train
