--- Softmax and LogSoftmax layers, and the classification losses on them.
-- @module lunar.nn.softmax
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local M = {}

local function check_dim(fname, dim)
  if dim ~= nil and (math.type(dim) ~= "integer" or dim == 0) then
    error(("%s: dim must be a non-zero integer (got %s)"):format(fname, tostring(dim)), 3)
  end
  return dim or -1
end

--- exp(x) / sum(exp(x)) along dim (1-based, negative from the end; default the last).
-- @usage local probs = nn.Softmax(2)(logits)
local Softmax = Module:extend("Softmax")
M.Softmax = Softmax
function Softmax:init(dim) self.dim = check_dim("Softmax", dim) end
function Softmax:forward(x) return lunar.softmax(x, self.dim) end
function Softmax:extra_repr() return "dim=" .. self.dim end

--- log(softmax(x)) along dim, computed stably (x - max - log(sum(exp(x - max)))).
local LogSoftmax = Module:extend("LogSoftmax")
M.LogSoftmax = LogSoftmax
function LogSoftmax:init(dim) self.dim = check_dim("LogSoftmax", dim) end
function LogSoftmax:forward(x) return lunar.log_softmax(x, self.dim) end
function LogSoftmax:extra_repr() return "dim=" .. self.dim end

local function loss_opts(fname, opts, smoothing)
  opts = opts or {}
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 3) end
  local o = {ignore_index = opts.ignore_index, reduction = opts.reduction or "mean"}
  if smoothing then o.label_smoothing = opts.label_smoothing or 0 end
  return o
end

--- Cross-entropy of raw logits [N, C, d...] against class targets [N, d...] (int64, 1-based)
-- or class probabilities (float, the logits' shape), as PyTorch's CrossEntropyLoss.
-- Options: weight ([C]), ignore_index (default -100), reduction ("mean", "sum", "none"),
-- label_smoothing (0).
-- @usage local loss = nn.CrossEntropyLoss({label_smoothing = 0.1})(logits, labels)
local CrossEntropyLoss = Module:extend("CrossEntropyLoss")
M.CrossEntropyLoss = CrossEntropyLoss
function CrossEntropyLoss:init(opts)
  self.opts = loss_opts("CrossEntropyLoss", opts, true)
  if opts and opts.weight then self.weight = Module.Buffer(opts.weight) end
end
function CrossEntropyLoss:forward(input, target)
  self.opts.weight = self.weight
  return lunar.cross_entropy(input, target, self.opts)
end
function CrossEntropyLoss:extra_repr()
  return ("reduction=%s, label_smoothing=%g"):format(self.opts.reduction, self.opts.label_smoothing)
end

--- Negative log-likelihood of log-probabilities [N, C, d...] against class targets
-- (int64, 1-based). Options as CrossEntropyLoss, without label_smoothing.
local NLLLoss = Module:extend("NLLLoss")
M.NLLLoss = NLLLoss
function NLLLoss:init(opts)
  self.opts = loss_opts("NLLLoss", opts, false)
  if opts and opts.weight then self.weight = Module.Buffer(opts.weight) end
end
function NLLLoss:forward(input, target)
  self.opts.weight = self.weight
  return lunar.nll_loss(input, target, self.opts)
end
function NLLLoss:extra_repr() return "reduction=" .. self.opts.reduction end

return M
