--- lunar.optim: optimizers, learning-rate schedulers, gradient clipping and penalties.
--   local opt = lunar.optim.Adam(model:parameters(), {lr = 1e-3})
--   opt:zero_grad(); loss:backward(); opt:step()
-- Checkpoints: `lunar.save(path, lunar.optim.flatten_state_dict(opt:state_dict()))` and
-- `opt:load_state_dict(lunar.optim.unflatten_state_dict(lunar.load(path)))`.
-- @module lunar.optim
local optim = {
  Optimizer = require("lunar.optim.optimizer"),
  lr_scheduler = require("lunar.optim.lr_scheduler"),
}

local families = {
  "lunar.optim.fused",
  "lunar.optim.lbfgs",
  "lunar.optim.clip",
  "lunar.optim.checkpoint",
}

for _, name in ipairs(families) do
  for k, v in pairs(require(name)) do
    if optim[k] ~= nil then error("lunar.optim: " .. k .. " is defined twice (" .. name .. ")") end
    optim[k] = v
  end
end

return optim
