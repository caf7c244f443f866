-- Rosenblatt's perceptron: one Linear unit with the Step (Heaviside) activation, trained
-- with the perceptron learning rule w <- w + lr (t - y) x, b <- b + lr (t - y), sample by
-- sample, on iris setosa vs versicolor (linearly separable, so the rule converges).
local lunar = require("lunar")
local nn = lunar.nn

lunar.manual_seed(0)
local X, y, info = lunar.data.iris()
local keep = y:le(2):nonzero():view(-1)       -- setosa (1) and versicolor (2)
X, y = X:index_select(1, keep), y:index_select(1, keep)
local t = (y - 1):float()                     -- targets: setosa 0, versicolor 1
local n = X:size(1)
print(("perceptron: %s (0) vs %s (1), %d samples, 4 features"):format(info.classes[1],
  info.classes[2], n))

local linear = nn.Linear(4, 1)
local model = nn.Sequential(linear, nn.Step())
-- the data set is on the CPU; the model on the default device (LUNAR_DEVICE): this loop
-- calls the model itself, so the data goes to the model
X, t = X:to(model:device()), t:to(model:device())
local lr = 0.1
lunar.no_grad(function()
  linear.weight:zero_()
  linear.bias:zero_()
  for epoch = 1, 100 do
    local errors = 0
    for _, i in ipairs(lunar.randperm(n):totable()) do
      local x = X[i]:view(1, 4)
      local err = t[i] - model(x):item()      -- 0 when right, +1 or -1 when wrong
      if err ~= 0 then
        errors = errors + 1
        linear.weight:add_(x * (lr * err))
        linear.bias:add_(lr * err)
      end
    end
    print(("epoch %d: %d mistakes"):format(epoch, errors))
    if errors == 0 then break end
  end
end)
local pred = lunar.no_grad(function() return model(X):view(-1) end)
local acc = pred:eq(t):float():mean():item()
print(("training accuracy %.3f; weights %s, bias %.3f"):format(acc,
  table.concat((function()
    local out = {}
    for i, v in ipairs(linear.weight:view(-1):totable()) do out[i] = ("%.2f"):format(v) end
    return out
  end)(), " "), linear.bias:item()))
assert(acc == 1, "perceptron: the classes are separable, the rule must converge")
