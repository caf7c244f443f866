--- Model summaries in the Keras style: `model:summary({1, 784})` (or `nn.summary(model, ...)`).
--
-- Runs one forward on zeros of the given shape (batch dim included) under no_grad and in
-- eval mode (restored afterwards), records for every leaf module (and every module with
-- parameters of its own) its output shape and parameter count, in call order, and prints:
--
--     Layer (type)              Output Shape           Param #
--     ============================================================
--     1 (Linear)                [1, 128]               100480
--     ...
--     Total params: 109386
--
-- A module called twice (a shared layer) has a row per call; its parameters count once.
-- @module lunar.nn.summary
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local summary = {}

local function direct_params(m)
  local n, trainable = 0, 0
  for _, name in ipairs(m._names.param) do
    local t = rawget(m, name)
    if t ~= nil then
      n = n + t:numel()
      if t.requires_grad then trainable = trainable + t:numel() end
    end
  end
  return n, trainable
end

local function shape_of(v)
  if lunar.is_tensor(v) then return "[" .. table.concat(v:size(), ", ") .. "]" end
  return type(v)
end

local function make_input(shape, dtype, device)
  for i, s in ipairs(shape) do
    if math.type(s) ~= "integer" or s < 0 then
      error(("summary: input shape entry %d must be a non-negative integer (got %s)")
        :format(i, tostring(s)), 4)
    end
  end
  return lunar.zeros(shape, {dtype = dtype, device = device})
end

local function pad(s, w) return s .. string.rep(" ", math.max(1, w - #s)) end

--- Summarises model for an input of input_shape (a list such as {1, 784}, or a list of
-- such lists for a model with several inputs).
-- @param opts `{dtype = default dtype, print = true}`; print = false only returns
-- @return {rows = {{name, type, output_shape, params}, ...}, total, trainable,
--   non_trainable, text}
function summary.summary(model, input_shape, opts)
  if not Module:is_instance(model) then error("summary: expected a module", 2) end
  if type(input_shape) ~= "table" or #input_shape == 0 then
    error("summary: input_shape must be a list such as {1, 784}", 2)
  end
  opts = opts or {}
  local dtype = opts.dtype or lunar.get_default_dtype()
  local inputs = {}
  local device = model:device() -- the probe input goes where the parameters are
  if type(input_shape[1]) == "table" then
    for i, s in ipairs(input_shape) do inputs[i] = make_input(s, dtype, device) end
  else
    inputs[1] = make_input(input_shape, dtype, device)
  end

  local names, modes = {}, {}
  for _, nm in ipairs(model:named_modules()) do
    if names[nm[2]] == nil then names[nm[2]] = nm[1] end
    modes[nm[2]] = nm[2].training
  end

  local rows, counted = {}, {}
  local function hook(m, out)
    local name = names[m]
    if name == nil then return end -- a module created inside forward
    local n = direct_params(m)
    if m:children()[1] ~= nil and n == 0 then return end
    local shapes = {}
    for i = 1, out.n do shapes[i] = shape_of(out[i]) end
    local count = counted[m] and 0 or n
    counted[m] = true
    rows[#rows + 1] = {name = name == "" and "(model)" or name,
      type = getmetatable(m).__name, output_shape = table.concat(shapes, ", "), params = count}
  end

  model:eval()
  local hooks = Module.forward_hooks
  hooks[#hooks + 1] = hook
  local ok, err = pcall(lunar.no_grad, function() return model(table.unpack(inputs)) end)
  for i = #hooks, 1, -1 do if hooks[i] == hook then table.remove(hooks, i) end end
  for m, mode in pairs(modes) do rawset(m, "training", mode) end
  if not ok then error("summary: the forward failed: " .. tostring(err), 2) end

  local total = model:num_parameters()
  local trainable = model:num_parameters({trainable = true})
  local res = {rows = rows, total = total, trainable = trainable,
    non_trainable = total - trainable}

  local w1, w2 = #"Layer (type)", #"Output Shape"
  for _, r in ipairs(rows) do
    w1 = math.max(w1, #r.name + #r.type + 3)
    w2 = math.max(w2, #r.output_shape)
  end
  w1, w2 = w1 + 2, w2 + 2
  local width = w1 + w2 + 12
  local lines = {
    "Model: " .. getmetatable(model).__name,
    string.rep("_", width),
    pad("Layer (type)", w1) .. pad("Output Shape", w2) .. "Param #",
    string.rep("=", width),
  }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = pad(("%s (%s)"):format(r.name, r.type), w1) .. pad(r.output_shape, w2)
      .. tostring(r.params)
  end
  lines[#lines + 1] = string.rep("=", width)
  lines[#lines + 1] = "Total params: " .. total
  lines[#lines + 1] = "Trainable params: " .. trainable
  lines[#lines + 1] = "Non-trainable params: " .. (total - trainable)
  lines[#lines + 1] = string.rep("_", width)
  res.text = table.concat(lines, "\n")
  if opts.print ~= false then print(res.text) end
  return res
end

--- `model:summary(input_shape [, opts])`: see summary.summary.
function Module:summary(input_shape, opts)
  return summary.summary(self, input_shape, opts)
end

return summary
