--- Dropout layers: Dropout, Dropout2d, AlphaDropout.
-- All are inverted: in training the kept units are scaled so that the expected output equals
-- the input; in eval mode they return the input unchanged. Masks come from the default
-- generator (lunar.manual_seed makes them reproducible).
-- @module lunar.nn.dropout
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local M = {}

local function check_p(fname, p)
  p = p == nil and 0.5 or p
  if type(p) ~= "number" or p < 0 or p > 1 then
    error(("%s: p must be a probability in [0, 1] (got %s)"):format(fname, tostring(p)), 3)
  end
  return p
end

--- Zeroes each element with probability p and scales the rest by 1 / (1 - p) in training.
-- p = 1 zeroes everything. (Srivastava et al. 2014, in its inverted form.)
-- @usage local drop = nn.Dropout(0.5)
local Dropout = Module:extend("Dropout")
M.Dropout = Dropout
function Dropout:init(p) self.p = check_p("Dropout", p) end
function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  if self.p == 1 then return x * 0 end
  local keep = lunar.bernoulli(x:detach(), 1 - self.p)
  return x * (keep / (1 - self.p))
end
function Dropout:extra_repr() return ("p=%g"):format(self.p) end

--- Zeroes whole channels of x [N, C, ...] with probability p (spatial dropout, Tompson et
-- al. 2015) and scales the kept channels by 1 / (1 - p).
local Dropout2d = Module:extend("Dropout2d")
M.Dropout2d = Dropout2d
function Dropout2d:init(p) self.p = check_p("Dropout2d", p) end
function Dropout2d:forward(x)
  if not self.training or self.p == 0 then return x end
  if x:dim() < 2 then
    error(("Dropout2d: input must be [N, C, ...] (got %d dims)"):format(x:dim()), 2)
  end
  if self.p == 1 then return x * 0 end
  local shape = {}
  for d = 1, x:dim() do shape[d] = d <= 2 and x:size(d) or 1 end
  local keep = lunar.zeros(shape, {dtype = x:dtype(), device = x:device()})
  keep:bernoulli_(1 - self.p)
  return x * (keep / (1 - self.p))
end
function Dropout2d:extra_repr() return ("p=%g"):format(self.p) end

-- SELU's negative saturation value -lambda * alpha (Klambauer et al. 2017).
local ALPHA = 1.7580993408473766

--- Dropout that keeps SELU's self-normalising mean and variance: dropped units are set to
-- -lambda * alpha and the result is transformed affinely, a x + b, with
-- a = ((1 - p)(1 + p alpha^2))^(-1/2) and b = a alpha p for kept units.
local AlphaDropout = Module:extend("AlphaDropout")
M.AlphaDropout = AlphaDropout
function AlphaDropout:init(p) self.p = check_p("AlphaDropout", p) end
function AlphaDropout:forward(x)
  if not self.training or self.p == 0 then return x end
  local p = self.p
  if p == 1 then return x * 0 end
  local a = 1 / math.sqrt((ALPHA * ALPHA * p + 1) * (1 - p))
  local keep = lunar.bernoulli(x:detach(), 1 - p)
  -- kept: a x + a alpha p; dropped: -a alpha + a alpha p
  local b = (keep - 1) * (ALPHA * a) + ALPHA * a * p
  return x * (keep * a) + b
end
function AlphaDropout:extra_repr() return ("p=%g"):format(self.p) end

return M
