--- Progress output of fit: on a terminal one line per epoch that updates in place (bar,
-- batches, loss, metrics, samples/s, ETA); elsewhere (a pipe, a file, CI) one line per epoch.
--
-- Terminal detection: the output must be io.stdout, TERM must be set and not "dumb", and
-- `test -t 1` (run by os.execute, whose shell inherits our stdout) must succeed. Pure Lua has
-- no isatty; io.stdout:seek fails on pipes as on terminals, so it cannot tell them apart,
-- while `test -t` asks the system. The answer is computed once per process. LUNAR_PROGRESS
-- = "bar" or "line" overrides it.
-- @module lunar.train.progress
local lunar = require("lunar")
local class = require("lunar.class")

local M = {}

local tty_cache

--- Whether stdout is a terminal (see the module's comment); cached.
function M.is_tty()
  if tty_cache == nil then
    local force = os.getenv("LUNAR_PROGRESS")
    if force == "bar" then tty_cache = true
    elseif force == "line" then tty_cache = false
    else
      local term = os.getenv("TERM")
      tty_cache = term ~= nil and term ~= "" and term ~= "dumb" and
        os.execute("test -t 1") == true
    end
  end
  return tty_cache
end

local function fmt_time(s)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, (s % 3600) // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, math.floor(s % 60)) end
  if s >= 10 then return ("%.0fs"):format(s) end
  return ("%.1fs"):format(s)
end
M.format_time = fmt_time

local function fmt_value(v)
  if type(v) ~= "number" then return tostring(v) end
  if v ~= v then return "nan" end
  local a = math.abs(v)
  if a ~= 0 and (a < 1e-3 or a >= 1e5) then return ("%.3e"):format(v) end
  return ("%.4f"):format(v)
end

-- "loss 0.1234  accuracy 0.9800  val_loss ..." in fit's metric order, then val_ ones
local function fmt_logs(logs, names, val)
  local parts = {}
  for _, k in ipairs(names) do
    if logs[k] ~= nil then parts[#parts + 1] = k .. " " .. fmt_value(logs[k]) end
  end
  if val then
    for _, k in ipairs(names) do
      local vk = "val_" .. k
      if logs[vk] ~= nil then parts[#parts + 1] = vk .. " " .. fmt_value(logs[vk]) end
    end
  end
  return table.concat(parts, "  ")
end

--- The progress callback fit adds when verbose > 0. Options: file (io.stdout), tty
-- (detected), mode ("bar" or "line"; default by tty), width (bar width, 24), interval
-- (seconds between updates of the bar, 0.1).
local ProgressBar = class("ProgressBar")
M.ProgressBar = ProgressBar
function ProgressBar:init(opts)
  opts = opts or {}
  self.file = opts.file or io.stdout
  local tty = opts.tty
  if tty == nil then tty = self.file == io.stdout and M.is_tty() end
  self.mode = opts.mode or (tty and "bar" or "line")
  if self.mode ~= "bar" and self.mode ~= "line" then
    error("ProgressBar: mode must be 'bar' or 'line' (got " .. tostring(self.mode) .. ")", 3)
  end
  self.width = opts.width or 24
  self.interval = opts.interval or 0.1
end

function ProgressBar:on_epoch_begin(epoch)
  local p = self.trainer.params
  self.epoch, self.t0, self.last, self.seen = epoch, lunar.clock(), -math.huge, 0
  self.prefix = ("Epoch %d/%d"):format(epoch, p.epochs)
end

function ProgressBar:bar(done, steps)
  local w = self.width
  local fill = steps > 0 and math.floor(w * done / steps) or w
  local s = string.rep("=", fill)
  if fill < w then s = s .. ">" .. string.rep(".", w - fill - 1) end
  return "[" .. s .. "]"
end

function ProgressBar:on_batch_end(b, logs)
  self.seen = self.seen + (logs.size or 0)
  if self.mode ~= "bar" then return end
  local now = lunar.clock()
  local steps = self.trainer.params.steps
  if now - self.last < self.interval and b < steps then return end
  self.last = now
  local el = now - self.t0
  local rate = el > 0 and self.seen / el or 0
  local eta = b > 0 and el / b * (steps - b) or 0
  local line = ("%s %s %d/%d  %s  %.0f samples/s  ETA %s"):format(self.prefix,
    self:bar(b, steps), b, steps, fmt_logs(logs, self.trainer.params.metrics),
    rate, fmt_time(eta))
  self.file:write("\r", line, "\27[K")
  self.file:flush()
end

function ProgressBar:on_epoch_end(_, logs)
  local p = self.trainer.params
  local el = lunar.clock() - self.t0
  local rate = el > 0 and self.seen / el or 0
  local text = fmt_logs(logs, p.metrics, true)
  if self.mode == "bar" then
    self.file:write("\r", ("%s %s %d/%d  %s  %.0f samples/s  %s"):format(self.prefix,
      self:bar(p.steps, p.steps), p.steps, p.steps, text, rate, fmt_time(el)), "\27[K\n")
  else
    self.file:write(("%s  %s  %.0f samples/s  %s\n"):format(self.prefix, text, rate,
      fmt_time(el)))
  end
  self.file:flush()
end

return M
