-- make demo: trains a small neural network on the embedded iris data with lunar's
-- tensors and autograd, written as the plain loop (forward, loss, backward, step).
-- The full `fit`/nn stack (and LeNet-5 on MNIST) arrives with the nn work.
local lunar = require("lunar")

local function read_csv(path)
  local f = assert(io.open(path, "r"), "demo: cannot open " .. path)
  local header = f:read("l")
  local rows = {}
  for line in f:lines() do
    local row = {}
    for v in line:gmatch("[^,]+") do row[#row + 1] = tonumber(v) end
    rows[#rows + 1] = row
  end
  f:close()
  return rows, header
end

lunar.manual_seed(7)
local rows = read_csv("data/iris.csv")
local n = #rows
local feats, labels = {}, {}
for i, r in ipairs(rows) do
  feats[i] = {r[1], r[2], r[3], r[4]}
  labels[i] = r[5] + 1 -- classes are 1-based in lunar
end
local X = lunar.tensor(feats)
local y = lunar.tensor(labels)

-- a seeded 80/20 split
local perm = lunar.randperm(n)
local n_train = math.floor(n * 0.8)
local train_idx, test_idx = perm:narrow(1, 1, n_train), perm:narrow(1, n_train + 1, n - n_train)
local Xtr, ytr = X:index_select(1, train_idx), y:index_select(1, train_idx)
local Xte, yte = X:index_select(1, test_idx), y:index_select(1, test_idx)

-- standardise with the training statistics
local mu, sd = Xtr:mean(1, true), Xtr:std(1, {keepdim = true})
Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd

-- a 4-16-3 network, weights scaled like PyTorch's default (uniform in +-1/sqrt(fan_in))
local function param(rows_, cols, fan_in)
  local bound = 1 / math.sqrt(fan_in)
  return (lunar.rand(rows_, cols) * (2 * bound) - bound):requires_grad_()
end
local W1, b1 = param(4, 16, 4), param(1, 16, 4)
local W2, b2 = param(16, 3, 16), param(1, 3, 16)
local params = {W1, b1, W2, b2}

local function forward(x)
  return (x:matmul(W1) + b1):tanh():matmul(W2) + b2
end

-- cross-entropy from logits: logsumexp(z) - z[label]
local function cross_entropy(logits, target)
  local onehot = lunar.one_hot(target, 3):float()
  return (logits:logsumexp(2) - (logits * onehot):sum(2)):mean()
end

local function accuracy(x, target)
  return lunar.no_grad(function()
    local pred = forward(x):argmax(2)
    return pred:eq(target):float():mean():item()
  end)
end

local lr, epochs = 0.5, 200
print(("iris: %d training and %d test samples, 4-16-3 tanh network, SGD lr %.2f")
  :format(n_train, n - n_train, lr))
for epoch = 1, epochs do
  local loss = cross_entropy(forward(Xtr), ytr)
  for _, p in ipairs(params) do p.grad = nil end
  loss:backward()
  lunar.no_grad(function()
    for _, p in ipairs(params) do p:sub_(p.grad * lr) end
  end)
  if epoch == 1 or epoch % 50 == 0 then
    print(("epoch %3d  loss %.4f  train accuracy %.3f"):format(epoch, loss:item(),
      accuracy(Xtr, ytr)))
  end
end
local test_acc = accuracy(Xte, yte)
print(("test accuracy: %.3f"):format(test_acc))

-- save the weights and load them back: the reloaded model must predict the same
local path = os.tmpname() .. ".safetensors"
lunar.save(path, {["0.weight"] = W1, ["0.bias"] = b1, ["2.weight"] = W2, ["2.bias"] = b2},
  {format = "lunar demo", epochs = tostring(epochs)})
local loaded = lunar.load(path)
os.remove(path)
W1, b1, W2, b2 = loaded["0.weight"], loaded["0.bias"], loaded["2.weight"], loaded["2.bias"]
assert(accuracy(Xte, yte) == test_acc, "demo: the reloaded weights predict differently")
print("saved and reloaded the weights: same predictions")
