--- lunar.nn: modules, layers, containers, and nn.functional.
--   local nn = require("lunar.nn")
--   local model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
-- Each family lives in its own file and returns a table of classes; a family may also return
-- `functional`, whose functions are merged into nn.functional beside the C ops.
-- @module lunar.nn
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local nn = {
  Module = Module,
  Parameter = Module.Parameter,
  Buffer = Module.Buffer,
}

--- nn.functional: the stateless forms (F.relu(x), F.conv2d(x, w, b, opts), ...).
local functional = {}
nn.functional = functional

-- the fused C ops are functional forms already
for _, name in ipairs({
  "conv1d", "conv2d", "conv_transpose2d", "max_pool1d", "max_pool2d", "avg_pool1d",
  "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "softmax", "log_softmax",
  "cross_entropy", "nll_loss", "batch_norm", "layer_norm", "group_norm", "linear", "pad",
  "one_hot",
}) do
  functional[name] = lunar[name]
end

local families = {
  "lunar.nn.containers",
  "lunar.nn.linear",
  "lunar.nn.conv",
  "lunar.nn.pooling",
  "lunar.nn.softmax",
  "lunar.nn.normalization",
  "lunar.nn.dropout",
  "lunar.nn.embedding",
  "lunar.nn.activation",
  "lunar.nn.shape",
  "lunar.nn.graph",
  "lunar.nn.summary",
  "lunar.nn.loss",
}

for _, name in ipairs(families) do
  for k, v in pairs(require(name)) do
    if k == "functional" then
      for fk, fv in pairs(v) do
        if functional[fk] ~= nil then
          error("lunar.nn: functional." .. fk .. " is defined twice (" .. name .. ")")
        end
        functional[fk] = fv
      end
    else
      if nn[k] ~= nil then error("lunar.nn: " .. k .. " is defined twice (" .. name .. ")") end
      nn[k] = v
    end
  end
end

nn.init = require("lunar.nn.inits")

return nn
