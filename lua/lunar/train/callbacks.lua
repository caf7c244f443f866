--- Callbacks for fit. A callback is any table with some of the hooks, called as methods:
--   on_train_begin(logs), on_train_end(logs), on_epoch_begin(epoch, logs),
--   on_epoch_end(epoch, logs), on_batch_begin(batch, logs), on_batch_end(batch, logs)
-- Epochs and batches are 1-based. During fit, `self.trainer` is the fit's state: model,
-- optimizer, history, epoch, params {epochs, steps, batch_size, samples, metrics}, and
-- stop_training, which a callback sets to true to end training after the current batch
-- (in on_batch_end) or epoch. Callbacks run in the order given, after the progress output.
--   local Printer = lunar.train.Callback:extend("Printer")
--   function Printer:on_epoch_end(epoch, logs) print(epoch, logs.loss) end
-- @module lunar.train.callbacks
local lunar = require("lunar")
local class = require("lunar.class")
local checkpoint = require("lunar.train.checkpoint")

local M = {}

--- The base class; subclasses define the hooks they need.
local Callback = class("Callback")
M.Callback = Callback

local function is_max_metric(name)
  local base = name:gsub("^val_", "")
  for _, pat in ipairs({"acc", "auc", "precision", "recall", "f1", "r2"}) do
    if base:find(pat, 1, true) then return true end
  end
  return false
end

-- "min" or "max" for a monitored name under mode "auto" | "min" | "max"
local function resolve_mode(fname, mode, monitor)
  mode = mode or "auto"
  if mode == "auto" then return is_max_metric(monitor) and "max" or "min" end
  if mode ~= "min" and mode ~= "max" then
    error(("%s: mode must be 'auto', 'min' or 'max' (got %s)"):format(fname, tostring(mode)), 4)
  end
  return mode
end
M.resolve_mode = resolve_mode

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 4) end
  for k in pairs(opts) do
    if not known[k] then error(fname .. ": unknown option '" .. tostring(k) .. "'", 4) end
  end
  return opts
end

local function say(self, msg)
  if self.verbose then io.stdout:write(msg, "\n") io.stdout:flush() end
end

local function snapshot(model)
  local sd = {}
  for k, t in pairs(model:state_dict()) do sd[k] = t:clone() end
  return sd
end

--- Stops training when the monitored value has not improved for `patience` epochs.
-- Options: monitor ("val_loss"), mode ("auto": max for accuracy-like names), patience (0),
-- min_delta (0: an improvement must beat the best by more than this), baseline (a value
-- to beat; wait does not reset until it is beaten), restore_best_weights (false: at the
-- stop, and at the end of training, the weights of the best epoch are loaded back),
-- verbose (false). Keras' counting: wait counts the epochs since the last improvement,
-- resets to 0 on one, and training stops when wait >= patience. After fit, stopped_epoch
-- and best_epoch tell what happened (0 when it did not stop).
local EarlyStopping = Callback:extend("EarlyStopping")
M.EarlyStopping = EarlyStopping
function EarlyStopping:init(opts)
  opts = check_opts("EarlyStopping", opts, {monitor = 1, mode = 1, patience = 1, min_delta = 1,
    baseline = 1, restore_best_weights = 1, verbose = 1})
  self.monitor = opts.monitor or "val_loss"
  self.mode = resolve_mode("EarlyStopping", opts.mode, self.monitor)
  self.patience = opts.patience or 0
  if math.type(self.patience) ~= "integer" or self.patience < 0 then
    error("EarlyStopping: patience must be a non-negative integer (got "
      .. tostring(opts.patience) .. ")", 3)
  end
  self.min_delta = math.abs(opts.min_delta or 0)
  self.baseline = opts.baseline
  self.restore_best_weights = opts.restore_best_weights or false
  self.verbose = opts.verbose or false
end

--- Whether value improves on reference by more than min_delta.
function EarlyStopping:is_improvement(value, reference)
  if self.mode == "min" then return value + self.min_delta < reference end
  return value - self.min_delta > reference
end

function EarlyStopping:on_train_begin()
  self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
  self.best = self.mode == "min" and math.huge or -math.huge
  self.best_weights = nil
end

function EarlyStopping:on_epoch_end(epoch, logs)
  local v = logs[self.monitor]
  if v == nil then
    error(("EarlyStopping: '%s' is not in the logs (has: %s)"):format(self.monitor,
      table.concat((function()
        local ks = {}
        for k in pairs(logs) do ks[#ks + 1] = k end
        table.sort(ks)
        return ks
      end)(), ", ")), 0)
  end
  self.wait = self.wait + 1
  if self:is_improvement(v, self.best) then
    self.best, self.best_epoch = v, epoch
    if self.restore_best_weights then self.best_weights = snapshot(self.trainer.model) end
    if self.baseline == nil or self:is_improvement(v, self.baseline) then self.wait = 0 end
    return
  end
  if self.wait >= self.patience then
    self.stopped_epoch = epoch
    self.trainer.stop_training = true
    say(self, ("Epoch %d: early stopping (best %s %.6g at epoch %d)"):format(epoch,
      self.monitor, self.best, self.best_epoch))
  end
end

function EarlyStopping:on_train_end()
  if self.restore_best_weights and self.best_weights then
    say(self, ("Restoring the weights of epoch %d"):format(self.best_epoch))
    self.trainer.model:load_state_dict(self.best_weights)
  end
end

-- path with {epoch} and {name} / {name:fmt} of the logs substituted
local function format_path(path, epoch, logs)
  return (path:gsub("{([%w_]+):?([^}]*)}", function(name, spec)
    local v = name == "epoch" and epoch or logs[name]
    if v == nil then return nil end
    if spec ~= "" then return ("%" .. spec):format(v) end
    return tostring(v)
  end))
end

--- Saves the model after epochs. path may hold {epoch} and {<log name>[:format]}, e.g.
-- "ckpt-{epoch}-{val_loss:.4f}.safetensors". Options: monitor ("val_loss"), mode ("auto"),
-- save_best_only (false: every epoch; true: only when monitor beats its best so far),
-- weights_only (true: the model's state_dict; false: lunar.train.save_checkpoint with the
-- optimizer and the epoch), verbose (false). Files are written to a temporary name and
-- renamed (lunar.save), so a crash never leaves a half-written checkpoint. `self.saved`
-- lists the epochs saved.
local ModelCheckpoint = Callback:extend("ModelCheckpoint")
M.ModelCheckpoint = ModelCheckpoint
function ModelCheckpoint:init(path, opts)
  if type(path) ~= "string" then
    error("ModelCheckpoint: path must be a string (got " .. type(path) .. ")", 3)
  end
  opts = check_opts("ModelCheckpoint", opts, {monitor = 1, mode = 1, save_best_only = 1,
    weights_only = 1, verbose = 1})
  self.path = path
  self.monitor = opts.monitor or "val_loss"
  self.mode = resolve_mode("ModelCheckpoint", opts.mode, self.monitor)
  self.save_best_only = opts.save_best_only or false
  self.weights_only = opts.weights_only ~= false
  self.verbose = opts.verbose or false
  self.best = self.mode == "min" and math.huge or -math.huge
  self.saved = {}
end

function ModelCheckpoint:on_epoch_end(epoch, logs)
  if self.save_best_only then
    local v = logs[self.monitor]
    if v == nil then
      error(("ModelCheckpoint: '%s' is not in the logs"):format(self.monitor), 0)
    end
    local better = (self.mode == "min" and v < self.best) or (self.mode == "max" and v > self.best)
    if not better then return end
    say(self, ("Epoch %d: %s improved from %.6g to %.6g, saving the model"):format(epoch,
      self.monitor, self.best, v))
    self.best = v
  end
  local path = format_path(self.path, epoch, logs)
  local t = self.trainer
  if self.weights_only then
    lunar.save(path, t.model:state_dict(), {epoch = tostring(epoch)})
  else
    checkpoint.save_checkpoint(path, {model = t.model, optimizer = t.optimizer, epoch = epoch})
  end
  self.saved[#self.saved + 1] = epoch
end

--- Steps a lunar.optim.lr_scheduler scheduler once per epoch (at the epoch's end) and
-- records the learning rate of the epoch in the logs as `lr`.
local LRScheduler = Callback:extend("LRScheduler")
M.LRScheduler = LRScheduler
function LRScheduler:init(scheduler)
  if type(scheduler) ~= "table" or type(scheduler.step) ~= "function" then
    error("LRScheduler: expected a lunar.optim.lr_scheduler scheduler", 3)
  end
  self.scheduler = scheduler
end
function LRScheduler:on_epoch_end(_, logs)
  logs.lr = self.scheduler.optimizer.param_groups[1].lr
  self.scheduler:step()
end

--- Reduces the learning rate when the monitored value stops improving: wraps
-- lunar.optim.lr_scheduler.ReduceLROnPlateau, made at the start of training with fit's
-- optimizer. Options: monitor ("val_loss"), mode ("auto"), and the scheduler's factor,
-- patience, threshold, threshold_mode, cooldown, min_lr, eps.
local ReduceLROnPlateau = Callback:extend("ReduceLROnPlateau")
M.ReduceLROnPlateau = ReduceLROnPlateau
function ReduceLROnPlateau:init(opts)
  opts = check_opts("ReduceLROnPlateau", opts, {monitor = 1, mode = 1, factor = 1, patience = 1,
    threshold = 1, threshold_mode = 1, cooldown = 1, min_lr = 1, eps = 1})
  self.monitor = opts.monitor or "val_loss"
  local so = {}
  for k, v in pairs(opts) do if k ~= "monitor" then so[k] = v end end
  so.mode = resolve_mode("ReduceLROnPlateau", opts.mode, self.monitor)
  self.options = so
end
function ReduceLROnPlateau:on_train_begin()
  local sched = require("lunar.optim.lr_scheduler")
  self.scheduler = sched.ReduceLROnPlateau(self.trainer.optimizer, self.options)
end
function ReduceLROnPlateau:on_epoch_end(_, logs)
  local v = logs[self.monitor]
  if v == nil then
    error(("ReduceLROnPlateau: '%s' is not in the logs"):format(self.monitor), 0)
  end
  logs.lr = self.trainer.optimizer.param_groups[1].lr
  self.scheduler:step(v)
end

-- the log keys in a fixed order: epoch's keys sorted
local function sorted_keys(logs)
  local ks = {}
  for k in pairs(logs) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function num_str(v)
  if type(v) ~= "number" then return tostring(v) end
  if math.type(v) == "integer" then return tostring(v) end
  return ("%.17g"):format(v)
end

--- Appends one row per epoch to a CSV file: a header "epoch,<log names sorted>", then the
-- values (%.17g, so they read back exactly). Options: separator (","), append (false).
local CSVLogger = Callback:extend("CSVLogger")
M.CSVLogger = CSVLogger
function CSVLogger:init(path, opts)
  if type(path) ~= "string" then error("CSVLogger: path must be a string", 3) end
  opts = check_opts("CSVLogger", opts, {separator = 1, append = 1})
  self.path, self.sep, self.append = path, opts.separator or ",", opts.append or false
end
function CSVLogger:on_train_begin()
  local f, err = io.open(self.path, self.append and "a" or "w")
  if not f then error("CSVLogger: cannot open " .. self.path .. ": " .. tostring(err), 0) end
  self.fh, self.keys = f, nil
end
function CSVLogger:on_epoch_end(epoch, logs)
  if not self.keys then
    self.keys = sorted_keys(logs)
    if not self.append or self.fh:seek("end") == 0 then
      self.fh:write("epoch", self.sep, table.concat(self.keys, self.sep), "\n")
    end
  end
  local row = {tostring(epoch)}
  for _, k in ipairs(self.keys) do row[#row + 1] = logs[k] ~= nil and num_str(logs[k]) or "" end
  self.fh:write(table.concat(row, self.sep), "\n")
  self.fh:flush()
end
function CSVLogger:on_train_end()
  if self.fh then self.fh:close() self.fh = nil end
end

local function json_value(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return num_str(v)
  end
  if type(v) == "boolean" then return tostring(v) end
  return ('"%s"'):format(tostring(v):gsub('[%c"\\]', function(c)
    return ("\\u%04x"):format(c:byte())
  end))
end

--- Writes one JSON object per epoch and line: {"epoch": 1, "loss": ..., ...} (keys sorted;
-- NaN and infinities as null). Options: append (false).
local JSONLinesLogger = Callback:extend("JSONLinesLogger")
M.JSONLinesLogger = JSONLinesLogger
function JSONLinesLogger:init(path, opts)
  if type(path) ~= "string" then error("JSONLinesLogger: path must be a string", 3) end
  opts = check_opts("JSONLinesLogger", opts, {append = 1})
  self.path, self.append = path, opts.append or false
end
function JSONLinesLogger:on_train_begin()
  local f, err = io.open(self.path, self.append and "a" or "w")
  if not f then error("JSONLinesLogger: cannot open " .. self.path .. ": " .. tostring(err), 0) end
  self.fh = f
end
function JSONLinesLogger:on_epoch_end(epoch, logs)
  local parts = {'"epoch": ' .. epoch}
  for _, k in ipairs(sorted_keys(logs)) do
    parts[#parts + 1] = json_value(k) .. ": " .. json_value(logs[k])
  end
  self.fh:write("{", table.concat(parts, ", "), "}\n")
  self.fh:flush()
end
JSONLinesLogger.on_train_end = CSVLogger.on_train_end

--- Stops training at the first batch whose loss is NaN or infinite (after that batch).
-- `self.stopped_batch` is {epoch, batch} when it did.
local TerminateOnNaN = Callback:extend("TerminateOnNaN")
M.TerminateOnNaN = TerminateOnNaN
function TerminateOnNaN:init(opts)
  opts = check_opts("TerminateOnNaN", opts, {verbose = 1})
  self.verbose = opts.verbose ~= false
end
function TerminateOnNaN:on_batch_end(b, logs)
  local l = logs.batch_loss or logs.loss
  if l ~= l or l == math.huge or l == -math.huge then
    self.stopped_batch = {self.trainer.epoch, b}
    say(self, ("Epoch %d, batch %d: invalid loss %s, terminating training"):format(
      self.trainer.epoch, b, tostring(l)))
    self.trainer.stop_training = true
  end
end

--- A callback from functions: LambdaCallback({on_epoch_end = function(epoch, logs) end}).
-- The functions are called without self.
function M.LambdaCallback(hooks)
  if type(hooks) ~= "table" then error("LambdaCallback: expected a table of functions", 2) end
  local cb = {}
  for k, f in pairs(hooks) do
    if type(f) ~= "function" then error("LambdaCallback: " .. tostring(k) .. " is not a function",
      2) end
    cb[k] = function(_, ...) return f(...) end
  end
  return cb
end

return M
