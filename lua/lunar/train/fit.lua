--- fit, evaluate and predict: the Keras-like loop over a model, a loss and an optimizer.
-- Every epoch runs the hand-written loop (model:train(); opt:zero_grad(true); loss:backward();
-- opt:step()), then validates under model:eval() and no_grad, and calls the callbacks.
-- @module lunar.train.fit
local lunar = require("lunar")
local data = require("lunar.data")
local Module = require("lunar.nn.module")
local progress = require("lunar.train.progress")

local M = {}

local function is_tensor(v) return lunar.is_tensor(v) end

local function shape_str(t) return "[" .. table.concat(t:size(), ", ") .. "]" end

-- Data ---------------------------------------------------------------------------------------

local function is_loader(v) return data.DataLoader:is_instance(v) end

local function is_pair(v)
  return type(v) == "table" and not is_loader(v) and is_tensor(v[1])
end

-- {X, y} tensors: checked for matching lengths
local function check_pair(fname, v, what)
  local X, y = v[1], v[2]
  if y ~= nil and not is_tensor(y) then
    error(("%s: %s: y must be a tensor (got %s)"):format(fname, what, type(y)), 4)
  end
  if X:dim() == 0 then error(("%s: %s: X is 0-d"):format(fname, what), 4) end
  if y ~= nil and (y:dim() == 0 or y:size(1) ~= X:size(1)) then
    error(("%s: %s: X %s and y %s differ in the number of samples"):format(fname, what,
      shape_str(X), shape_str(y)), 4)
  end
  return X, y
end

-- a DataLoader over data ({X, y} tensors, a data set or a loader)
local function loader_of(fname, d, what, opts)
  if is_loader(d) then return d end
  if is_pair(d) then
    local X, y = check_pair(fname, d, what)
    d = y and data.TensorDataset(X, y) or data.TensorDataset(X)
  elseif type(d) ~= "table" and type(d) ~= "userdata" then
    error(("%s: %s must be {X, y} tensors, a Dataset or a DataLoader (got %s)"):format(
      fname, what, type(d)), 3)
  end
  return data.DataLoader(d, {batch_size = opts.batch_size or 32, shuffle = opts.shuffle,
    seed = opts.shuffle and opts.seed or nil})
end

-- where batches go: the model's device, or nil (they stay where they are) for a model
-- without parameters or buffers
local function batch_device(model)
  if next(model:state_dict()) == nil then return nil end
  return model:device()
end

-- a batch from a loader as (inputs, targets), moved to dev (data sets stay on the CPU; only
-- the batch in use travels)
local function unbatch(batch, dev)
  local x, y = batch, nil
  if type(batch) == "table" and not is_tensor(batch) then x, y = batch[1], batch[2] end
  if dev then
    if is_tensor(x) and x:device() ~= dev then x = x:to(dev) end
    if is_tensor(y) and y:device() ~= dev then y = y:to(dev) end
  end
  return x, y
end

-- Losses -------------------------------------------------------------------------------------

-- named losses: fn(out, y, reduction, class weight tensor or nil)
local named = {}
local function ce(out, y, reduction, w)
  return lunar.cross_entropy(out, y, {reduction = reduction, weight = w})
end
named.cross_entropy = ce
named.sparse_categorical_crossentropy = ce
named.categorical_crossentropy = ce
local function like(out, y)
  if y:dtype() ~= out:dtype() then y = y:to(out:dtype()) end
  if out:dim() == 2 and out:size(2) == 1 and y:dim() == 1 then y = y:view(-1, 1) end
  return y
end
named.mse = function(out, y, r) return lunar.nn.functional.mse_loss(out, like(out, y),
  {reduction = r}) end
named.mean_squared_error = named.mse
named.mae = function(out, y, r) return lunar.nn.functional.l1_loss(out, like(out, y),
  {reduction = r}) end
named.mean_absolute_error = named.mae
named.binary_cross_entropy = function(out, y, r)
  return lunar.nn.functional.binary_cross_entropy(out, like(out, y), {reduction = r})
end
named.binary_crossentropy = named.binary_cross_entropy
named.bce_with_logits = function(out, y, r)
  return lunar.nn.functional.binary_cross_entropy_with_logits(out, like(out, y),
    {reduction = r})
end
M.losses = named

local function names_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return table.concat(out, ", ")
end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return mt ~= nil and type(mt) == "table" and mt.__call ~= nil
end

-- A loss as {fn = fn(out, y, class_weight_tensor), name, ce = bool}
local function resolve_loss(fname, loss)
  if loss == nil then error(fname .. ": options.loss is missing (a name, a module or a function)",
    3) end
  if type(loss) == "string" then
    local f = named[loss]
    if f == nil then
      error(("%s: unknown loss '%s' (known: %s)"):format(fname, loss, names_of(named)), 3)
    end
    return {name = loss, ce = f == ce, logits = loss == "bce_with_logits",
      fn = function(out, y, w) return f(out, y, "mean", w) end, per_sample = function(out, y)
        return f(out, y, "none")
      end}
  end
  if not is_callable(loss) then
    error(fname .. ": options.loss must be a name, a module or a function (got "
      .. type(loss) .. ")", 3)
  end
  local mt = Module:is_instance(loss) and getmetatable(loss)
  local cls = mt and mt.__name
  if cls == "CrossEntropyLoss" or cls == "NLLLoss" then
    local op = cls == "CrossEntropyLoss" and lunar.cross_entropy or lunar.nll_loss
    return {name = cls, ce = true, fn = function(out, y, w)
      if w == nil then return loss(out, y) end
      local o = {}
      for k, v in pairs(loss.opts) do o[k] = v end
      o.weight = w
      return op(out, y, o)
    end}
  end
  return {name = cls or "loss", fn = function(out, y) return loss(out, y) end,
    logits = cls == "BCEWithLogitsLoss"}
end

-- the class-weight tensor [C] (classes 1-based) for cross-entropy
local function weight_vector(fname, cw, C, dtype, device)
  local w = {}
  for c = 1, C do w[c] = 1 end
  for c, v in pairs(cw) do
    if math.type(c) ~= "integer" or c < 1 or c > C then
      error(("%s: class_weight has class %s, the model gives %d classes (1-based)"):format(
        fname, tostring(c), C), 4)
    end
    w[c] = v
  end
  return lunar.tensor(w, {dtype = dtype, device = device})
end

-- the batch's loss with class weights: cross-entropy takes them as its weight option,
-- other named losses weight each sample's loss by its class (its target value) and divide
-- by the sum of the weights, as weighted cross-entropy does.
local function weighted_loss(fname, L, out, y, cw)
  if cw == nil then return L.fn(out, y) end
  if L.ce then
    return L.fn(out, y, weight_vector(fname, cw, out:size(2), out:dtype(), out:device()))
  end
  if L.per_sample == nil then
    error(fname .. ": class_weight needs a named loss or CrossEntropyLoss/NLLLoss (got "
      .. L.name .. ")", 4)
  end
  local per = L.per_sample(out, y)
  if per:dim() > 1 then per = per:view(per:size(1), -1):mean(2) end
  local ws = {}
  for i, c in ipairs(y:view(-1):totable()) do
    local key = math.tointeger(c) or c
    ws[i] = cw[key] or 1
  end
  local w = lunar.tensor(ws, {dtype = per:dtype(), device = per:device()})
  return (per * w):sum() / w:sum()
end

-- Metrics ------------------------------------------------------------------------------------

-- the number of correct predictions in a batch
local function correct(out, y, logits)
  if out:dim() >= 2 and out:size(2) > 1 then
    local pred = out:argmax(2)
    if y:dtype() ~= "int64" and y:dim() == out:dim() then y = y:argmax(2) end
    return pred:eq(y:view(pred:size())):sum():item()
  end
  local pred = out:view(-1):ge(logits and 0 or 0.5)
  return pred:eq(y:view(-1):ne(0)):sum():item()
end

local builtin = {
  accuracy = function(out, y, L) return correct(out, y, L.logits) / out:size(1) end,
  mse = function(out, y) return (out - like(out, y)):square():mean():item() end,
  mae = function(out, y) return (out - like(out, y)):abs():mean():item() end,
}
builtin.acc = builtin.accuracy
M.metrics = builtin

-- metrics as a list of {name, fn(out, y, L) -> batch mean}
local function resolve_metrics(fname, ms)
  local out = {}
  if ms == nil then return out end
  if type(ms) ~= "table" then error(fname .. ": metrics must be a list", 3) end
  for i, m in ipairs(ms) do
    if type(m) == "string" then
      local f = builtin[m]
      if f == nil then
        error(("%s: unknown metric '%s' (known: %s)"):format(fname, m, names_of(builtin)), 3)
      end
      out[#out + 1] = {m == "acc" and "accuracy" or m, f}
    elseif is_callable(m) then
      out[#out + 1] = {"metric_" .. i, m}
    else
      error(("%s: metric %d is a %s (a name or a function)"):format(fname, i, type(m)), 3)
    end
  end
  local keys = {}
  for k, m in pairs(ms) do
    if type(k) == "string" then
      if not is_callable(m) then error(fname .. ": metric '" .. k .. "' is not a function", 3) end
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = {k, ms[k]} end
  return out
end

-- metric value of a batch (a number)
local function metric_value(m, out, y, L)
  local v = m[2](out, y, L)
  if is_tensor(v) then v = v:item() end
  return v
end

-- Averages over the samples seen (Keras' running means of per-batch values).
local function running(names)
  local r = {n = 0, sums = {}}
  for _, k in ipairs(names) do r.sums[k] = 0 end
  return r
end

local function mean_logs(r, prefix)
  local logs = {}
  for k, s in pairs(r.sums) do logs[(prefix or "") .. k] = s / math.max(r.n, 1) end
  return logs
end

-- Evaluation ---------------------------------------------------------------------------------

-- loss and metrics over a loader, in eval mode without recording
local function run_eval(fname, model, loader, L, ms, cw)
  local names = {"loss"}
  for _, m in ipairs(ms) do names[#names + 1] = m[1] end
  local r = running(names)
  local was = model.training
  local dev = batch_device(model)
  model:eval()
  lunar.no_grad(function()
    for _, batch in loader:enumerate() do
      local xb, yb = unbatch(batch, dev)
      if yb == nil then error(fname .. ": the data has no targets", 5) end
      local out = model(xb)
      local n = out:size(1)
      r.n = r.n + n
      r.sums.loss = r.sums.loss + weighted_loss(fname, L, out, yb, cw):item() * n
      for _, m in ipairs(ms) do
        r.sums[m[1]] = r.sums[m[1]] + metric_value(m, out, yb, L) * n
      end
    end
  end)
  model:train(was)
  return mean_logs(r)
end

local function check_model(fname, model)
  if not Module:is_instance(model) then
    error(fname .. ": expected an nn.Module as the model (got " .. type(model) .. ")", 3)
  end
end

--- Loss and metrics of model on data ({X, y}, a Dataset or a DataLoader), in eval mode
-- under no_grad. Options: loss (required), metrics, batch_size (32), class_weight.
-- @return a table {loss = ..., accuracy = ...}
function M.evaluate(model, d, opts)
  check_model("evaluate", model)
  opts = opts or {}
  local L = resolve_loss("evaluate", opts.loss)
  local ms = resolve_metrics("evaluate", opts.metrics)
  local loader = loader_of("evaluate", d, "data", {batch_size = opts.batch_size})
  return run_eval("evaluate", model, loader, L, ms, opts.class_weight)
end

--- The model's outputs on X (a tensor, or a loader/data set whose batches are inputs or
-- {inputs, ...}), batch by batch in eval mode under no_grad, concatenated along dim 1.
-- Options: batch_size (32).
function M.predict(model, X, opts)
  check_model("predict", model)
  opts = opts or {}
  local loader
  if is_tensor(X) then
    loader = data.DataLoader(data.TensorDataset(X), {batch_size = opts.batch_size or 32})
  else
    loader = loader_of("predict", X, "X", {batch_size = opts.batch_size})
  end
  local outs = {}
  local was = model.training
  local dev = batch_device(model)
  model:eval()
  lunar.no_grad(function()
    for _, batch in loader:enumerate() do
      local xb = unbatch(batch, dev)
      outs[#outs + 1] = model(xb)
    end
  end)
  model:train(was)
  if #outs == 0 then error("predict: no samples", 2) end
  return #outs == 1 and outs[1] or lunar.cat(outs, 1)
end

-- Callbacks ----------------------------------------------------------------------------------

local HOOKS = {"on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
  "on_batch_begin", "on_batch_end"}

local function check_callbacks(fname, cbs)
  if cbs == nil then return {} end
  if type(cbs) ~= "table" then error(fname .. ": callbacks must be a list", 3) end
  for i, cb in ipairs(cbs) do
    if type(cb) ~= "table" then
      error(("%s: callback %d is a %s (a table of hooks or a Callback)"):format(fname, i,
        type(cb)), 3)
    end
    local any = false
    for _, h in ipairs(HOOKS) do
      if cb[h] ~= nil then
        if not is_callable(cb[h]) then
          error(("%s: callback %d: %s is not a function"):format(fname, i, h), 3)
        end
        any = true
      end
    end
    if not any then error(("%s: callback %d has none of the hooks (%s)"):format(fname, i,
      table.concat(HOOKS, ", ")), 3) end
  end
  local out = {}
  for i, cb in ipairs(cbs) do out[i] = cb end
  return out
end

local function call(cbs, hook, ...)
  for _, cb in ipairs(cbs) do
    local f = cb[hook]
    if f then f(cb, ...) end
  end
end

-- Validation split ---------------------------------------------------------------------------

-- the last fraction of {X, y} (before any shuffling, as Keras) for validation
local function split_last(fname, d, frac)
  if type(frac) ~= "number" or frac <= 0 or frac >= 1 then
    error(fname .. ": validation_split must be in (0, 1) (got " .. tostring(frac) .. ")", 3)
  end
  if is_loader(d) then error(fname .. ": validation_split needs {X, y} or a Dataset, not a "
    .. "DataLoader (give validation = ...)", 3) end
  if is_pair(d) then
    local X, y = check_pair(fname, d, "data")
    local n = X:size(1)
    local nv = math.floor(n * frac)
    if nv < 1 or nv >= n then
      error(("%s: validation_split %g of %d samples leaves an empty part"):format(fname, frac, n),
        3)
    end
    local nt = n - nv
    return {X:narrow(1, 1, nt), y and y:narrow(1, 1, nt)},
      {X:narrow(1, nt + 1, nv), y and y:narrow(1, nt + 1, nv)}
  end
  local n = #d
  local nv = math.floor(n * frac)
  if nv < 1 or nv >= n then
    error(("%s: validation_split %g of %d samples leaves an empty part"):format(fname, frac, n), 3)
  end
  local tr, va = {}, {}
  for i = 1, n - nv do tr[i] = i end
  for i = n - nv + 1, n do va[#va + 1] = i end
  return data.Subset(d, tr), data.Subset(d, va)
end

-- fit ----------------------------------------------------------------------------------------

local function check_opts(fname, opts)
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 3) end
  local known = {loss = 1, optimizer = 1, epochs = 1, batch_size = 1, validation_split = 1,
    validation = 1, metrics = 1, callbacks = 1, class_weight = 1, shuffle = 1, seed = 1,
    verbose = 1, initial_epoch = 1, progress = 1}
  for k in pairs(opts) do
    if not known[k] then error(fname .. ": unknown option '" .. tostring(k) .. "'", 3) end
  end
  if opts.optimizer == nil or type(opts.optimizer) ~= "table" or
      type(opts.optimizer.step) ~= "function" then
    error(fname .. ": options.optimizer is missing (a lunar.optim optimizer)", 3)
  end
  local e = opts.epochs or 1
  if math.type(e) ~= "integer" or e < 1 then
    error(fname .. ": epochs must be a positive integer (got " .. tostring(opts.epochs) .. ")", 3)
  end
  local ie = opts.initial_epoch or 0
  if math.type(ie) ~= "integer" or ie < 0 or ie >= e then
    error(("%s: initial_epoch must be an integer in [0, epochs) (got %s)"):format(fname,
      tostring(opts.initial_epoch)), 3)
  end
  if opts.class_weight ~= nil and type(opts.class_weight) ~= "table" then
    error(fname .. ": class_weight must be a table {[class] = weight}", 3)
  end
  if opts.validation and opts.validation_split then
    error(fname .. ": give validation or validation_split, not both", 3)
  end
end

--- Trains model on data for a number of epochs and returns the history.
--   local history = lunar.train.fit(model, {X, y}, {loss = "cross_entropy",
--     optimizer = lunar.optim.Adam(model:parameters(), {lr = 1e-3}), epochs = 5,
--     batch_size = 32, validation_split = 0.2, metrics = {"accuracy"}})
-- data: {X, y} tensors, a Dataset (samples {x, y}) or a DataLoader (used as it is).
-- Options: loss (a name from lunar.train.losses, a loss module or fn(out, y)), optimizer,
-- epochs (1), initial_epoch (0: epochs already done, for resuming), batch_size (32),
-- shuffle (true), seed (the shuffle's seed; default drawn from lunar's generator),
-- validation_split (the last fraction of the data, taken before shuffling) or validation
-- ({X, y}, a Dataset or a DataLoader), metrics (names from lunar.train.metrics, functions
-- fn(out, y) -> number, or name = fn), callbacks (a list), class_weight ({[class] = w}),
-- verbose (1: progress bar on a terminal, a line per epoch otherwise; 2: a line per epoch;
-- 0: quiet), progress (options for the ProgressBar: {file, tty}).
-- @return history: {loss = {...}, accuracy = {...}, val_loss = {...}, ..., epoch = {...}}
function M.fit(model, d, opts)
  check_model("fit", model)
  opts = opts or {}
  check_opts("fit", opts)
  local L = resolve_loss("fit", opts.loss)
  local ms = resolve_metrics("fit", opts.metrics)
  local cbs = check_callbacks("fit", opts.callbacks)
  local opt, cw = opts.optimizer, opts.class_weight
  local epochs, first = opts.epochs or 1, (opts.initial_epoch or 0) + 1
  local shuffle = opts.shuffle ~= false

  local train_d, val_d = d, opts.validation
  if opts.validation_split then train_d, val_d = split_last("fit", d, opts.validation_split) end
  local bs = opts.batch_size or 32
  if math.type(bs) ~= "integer" or bs < 1 then
    error("fit: batch_size must be a positive integer (got " .. tostring(bs) .. ")", 2)
  end
  local loader = loader_of("fit", train_d, "data", {batch_size = bs, shuffle = shuffle,
    seed = opts.seed})
  -- a resumed run visits the shuffles the full run would have
  if first > 1 and loader.sampler.set_epoch then loader.sampler:set_epoch(first - 1) end
  local val_loader = val_d and loader_of("fit", val_d, "validation", {batch_size = bs})

  local verbose = opts.verbose == nil and 1 or opts.verbose
  if verbose > 0 then
    local popts = {mode = verbose == 2 and "line" or nil}
    for k, v in pairs(opts.progress or {}) do popts[k] = v end
    table.insert(cbs, 1, progress.ProgressBar(popts))
  end

  local history = {epoch = {}}
  local names = {"loss"}
  for _, m in ipairs(ms) do names[#names + 1] = m[1] end
  local ctx = {model = model, optimizer = opt, history = history, stop_training = false,
    params = {epochs = epochs, steps = #loader, batch_size = bs, samples = #loader.sampler,
      metrics = names, initial_epoch = first - 1}}
  for _, cb in ipairs(cbs) do cb.trainer = ctx end

  local was_training = model.training
  local dev = batch_device(model)
  call(cbs, "on_train_begin", {})
  local last_logs = {}
  for epoch = first, epochs do
    ctx.epoch = epoch
    call(cbs, "on_epoch_begin", epoch, {})
    model:train()
    local r = running(names)
    for b, batch in loader:enumerate() do
      call(cbs, "on_batch_begin", b, {})
      local xb, yb = unbatch(batch, dev)
      if yb == nil then error("fit: the data has no targets (give {X, y})", 2) end
      opt:zero_grad(true) -- drop the grads: backward then hands each its fresh tensor
      local out = model(xb)
      local loss = weighted_loss("fit", L, out, yb, cw)
      loss:backward()
      opt:step()
      local n, lv = out:size(1), loss:item()
      r.n = r.n + n
      r.sums.loss = r.sums.loss + lv * n
      if ms[1] then
        lunar.no_grad(function()
          local o = out:detach()
          for _, m in ipairs(ms) do
            r.sums[m[1]] = r.sums[m[1]] + metric_value(m, o, yb, L) * n
          end
        end)
      end
      local blogs = mean_logs(r)
      blogs.batch, blogs.size, blogs.batch_loss = b, n, lv
      call(cbs, "on_batch_end", b, blogs)
      if ctx.stop_training then break end
    end
    local logs = mean_logs(r)
    if val_loader then
      for k, v in pairs(run_eval("fit", model, val_loader, L, ms, cw)) do logs["val_" .. k] = v end
    end
    history.epoch[#history.epoch + 1] = epoch
    for k, v in pairs(logs) do
      history[k] = history[k] or {}
      table.insert(history[k], v)
    end
    call(cbs, "on_epoch_end", epoch, logs)
    last_logs = logs
    if ctx.stop_training then break end
  end
  call(cbs, "on_train_end", last_logs)
  for _, cb in ipairs(cbs) do cb.trainer = nil end
  model:train(was_training)
  return history
end

return M
