--- nn.Module: the base of every layer and model, with PyTorch's vocabulary.
--
-- A layer subclasses Module and sets its parameters, buffers and children as fields in
-- `init`; they are registered in the order they are set:
--
--     local Scale = nn.Module:extend("Scale")
--     function Scale:init(n)
--       self.weight = nn.Parameter(lunar.ones(n))      -- a parameter
--       self.running = nn.Buffer(lunar.zeros(n))        -- state that is saved, not trained
--     end
--     function Scale:forward(x) return x * self.weight end
--
-- Calling a module runs `forward`. Children are modules set as fields (or added with
-- `add_module`); names of nested parameters are dotted: `encoder.1.weight`.
-- @module lunar.nn.module
local lunar = require("lunar")
local class = require("lunar.class")

local Module = class("Module")

-- Tensors marked as parameters or buffers (weak: the mark dies with the tensor).
local params = setmetatable({}, {__mode = "k"})
local buffers = setmetatable({}, {__mode = "k"})

--- Marks t as a trainable parameter (sets requires_grad) and returns it.
function Module.Parameter(t, requires_grad)
  if not lunar.is_tensor(t) then error("Parameter: expected a tensor, got " .. type(t), 2) end
  if requires_grad ~= false then t:requires_grad_() end
  params[t] = true
  return t
end

--- Marks t as a buffer (saved in state_dict, never trained) and returns it.
function Module.Buffer(t)
  if not lunar.is_tensor(t) then error("Buffer: expected a tensor, got " .. type(t), 2) end
  buffers[t] = true
  return t
end

-- Registration happens on first assignment of a field (Lua calls __newindex only for
-- absent keys), which is where PyTorch's __setattr__ registers too.
function Module.__preinit(obj)
  rawset(obj, "_names", {param = {}, buffer = {}, module = {}})
  rawset(obj, "training", true)
  rawset(obj, "trainable", true)
end

function Module.__newindex(self, key, value)
  local names = rawget(self, "_names")
  if names and type(key) == "string" then
    if lunar.is_tensor(value) and params[value] then
      table.insert(names.param, key)
    elseif lunar.is_tensor(value) and buffers[value] then
      table.insert(names.buffer, key)
    elseif Module:is_instance(value) then
      table.insert(names.module, key)
    end
  end
  rawset(self, key, value)
end

-- Functions fn(module, outputs) called after every module call (outputs packed with
-- table.pack); Module:summary installs one for the length of a forward.
Module.forward_hooks = {}

function Module.__call(self, ...)
  local hooks = Module.forward_hooks
  if hooks[1] == nil then return self:forward(...) end
  local out = table.pack(self:forward(...))
  for _, h in ipairs(hooks) do h(self, out) end
  return table.unpack(out, 1, out.n)
end

--- The computation; every layer overrides it.
function Module:forward()
  error(tostring(getmetatable(self).__name) .. ": forward is not implemented", 2)
end

--- Adds a child under name (a string; numbers are turned into strings).
function Module:add_module(name, m)
  if not Module:is_instance(m) then
    error("add_module: expected a module for '" .. tostring(name) .. "'", 2)
  end
  name = tostring(name)
  if rawget(self, name) == nil then table.insert(self._names.module, name) end
  rawset(self, name, m)
  return m
end

--- Iterates (name, child) over the direct children, in registration order.
function Module:named_children()
  local names, i = self._names.module, 0
  return function()
    while true do
      i = i + 1
      local n = names[i]
      if n == nil then return nil end
      local m = rawget(self, n)
      if m ~= nil then return n, m end
    end
  end
end

--- The direct children as a list.
function Module:children()
  local out = {}
  for _, m in self:named_children() do out[#out + 1] = m end
  return out
end

local function join(prefix, name) return prefix == "" and name or prefix .. "." .. name end

--- All modules, this one first, depth first, as a list of {name, module}.
function Module:named_modules(prefix, out)
  prefix, out = prefix or "", out or {}
  out[#out + 1] = {prefix, self}
  for n, m in self:named_children() do m:named_modules(join(prefix, n), out) end
  return out
end

--- All modules as a list (this one first).
function Module:modules()
  local out = {}
  for _, nm in ipairs(self:named_modules()) do out[#out + 1] = nm[2] end
  return out
end

local function collect(self, kind, prefix, out)
  for _, n in ipairs(self._names[kind]) do
    local t = rawget(self, n)
    if t ~= nil then out[#out + 1] = {join(prefix, n), t} end
  end
  for n, m in self:named_children() do collect(m, kind, join(prefix, n), out) end
  return out
end

--- Parameters with dotted names, as a list of {name, tensor}, in registration order.
function Module:named_parameters()
  return collect(self, "param", "", {})
end

--- Buffers with dotted names, as a list of {name, tensor}.
function Module:named_buffers()
  return collect(self, "buffer", "", {})
end

--- The parameters as a list; `{trainable = true}` leaves out frozen ones.
function Module:parameters(opts)
  local only = opts and opts.trainable
  local out = {}
  for _, np in ipairs(self:named_parameters()) do
    if not only or np[2].requires_grad then out[#out + 1] = np[2] end
  end
  return out
end

--- Number of parameter elements (all, or `{trainable = true}`).
function Module:num_parameters(opts)
  local n = 0
  for _, p in ipairs(self:parameters(opts)) do n = n + p:numel() end
  return n
end

--- Sets training mode (affects Dropout, BatchNorm) on this module and its children.
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode) end
  return self
end

--- Evaluation mode: `train(false)`.
function Module:eval() return self:train(false) end

--- Stops training this module's parameters (Keras' `trainable = false`).
function Module:freeze()
  for _, m in ipairs(self:modules()) do rawset(m, "trainable", false) end
  for _, p in ipairs(self:parameters()) do p.requires_grad = false end
  return self
end

--- Trains this module's parameters again.
function Module:unfreeze()
  for _, m in ipairs(self:modules()) do rawset(m, "trainable", true) end
  for _, p in ipairs(self:parameters()) do p.requires_grad = true end
  return self
end

--- Clears the gradients of every parameter.
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

--- Calls fn(module) on every child (depth first) and then on this module.
function Module:apply(fn)
  for _, m in self:named_children() do m:apply(fn) end
  fn(self)
  return self
end

--- Parameters and buffers by dotted name: {["1.weight"] = tensor, ...}, detached.
function Module:state_dict()
  local sd = {}
  for _, np in ipairs(self:named_parameters()) do sd[np[1]] = np[2]:detach() end
  for _, nb in ipairs(self:named_buffers()) do sd[nb[1]] = nb[2]:detach() end
  return sd
end

--- Copies tensors from sd into the parameters and buffers (shapes must match).
-- With `{strict = true}` (the default) missing and unexpected keys are errors.
-- @return a table {missing = {...}, unexpected = {...}}
function Module:load_state_dict(sd, opts)
  local strict = not (opts and opts.strict == false)
  local own = {}
  for _, np in ipairs(self:named_parameters()) do own[np[1]] = np[2] end
  for _, nb in ipairs(self:named_buffers()) do own[nb[1]] = nb[2] end
  local missing, unexpected = {}, {}
  for name in pairs(own) do if sd[name] == nil then missing[#missing + 1] = name end end
  for name in pairs(sd) do if own[name] == nil then unexpected[#unexpected + 1] = name end end
  table.sort(missing)
  table.sort(unexpected)
  if strict and (#missing > 0 or #unexpected > 0) then
    error(("load_state_dict: missing keys {%s}, unexpected keys {%s}")
      :format(table.concat(missing, ", "), table.concat(unexpected, ", ")), 2)
  end
  lunar.no_grad(function()
    for name, t in pairs(own) do
      local src = sd[name]
      if src ~= nil then
        if not lunar.is_tensor(src) then
          error("load_state_dict: '" .. name .. "' is not a tensor", 4)
        end
        local a, b = table.concat(t:size(), "x"), table.concat(src:size(), "x")
        if a ~= b then
          error(("load_state_dict: '%s' has shape [%s] here and [%s] in the state dict")
            :format(name, a, b), 4)
        end
        if src:device() ~= t:device() then src = src:to(t:device()) end -- a CPU checkpoint
        t:copy_(src)
      end
    end
  end)
  return {missing = missing, unexpected = unexpected}
end

--- Moves every parameter and buffer to a device ("cpu", "opencl", "opencl:2" or a
-- lunar.device handle), gradients included, or casts the floating ones to a float dtype
-- ("float32", "float64"). In place; returns self. Make optimizers after moving: they hold
-- the parameter tensors they were given.
function Module:to(what)
  local name = tostring(what)
  local device = name == "cpu" or name:match("^opencl") ~= nil
  if device then
    name = tostring(lunar.device(name)) -- canonical, and an error for a bad one
  elseif name ~= "float32" and name ~= "float64" then
    error(("Module:to: expected a device or a float dtype, got '%s'"):format(name), 2)
  end
  for _, m in ipairs(self:modules()) do
    for _, kind in ipairs({"param", "buffer"}) do
      for _, n in ipairs(m._names[kind]) do
        local t = rawget(m, n)
        if t ~= nil and lunar.is_tensor(t) then
          local moved
          if device then
            moved = t:device() ~= name
          else
            moved = t:dtype() ~= name and (t:dtype() == "float32" or t:dtype() == "float64")
          end
          if moved then
            local c = t:detach():to(name)
            if kind == "param" then
              c = Module.Parameter(c, t.requires_grad)
              if t.grad ~= nil then c.grad = t.grad:to(name) end
            else
              c = Module.Buffer(c)
            end
            rawset(m, n, c)
          end
        end
      end
    end
  end
  return self
end

--- The device of the first parameter (or buffer): "cpu" or "opencl:N"; "cpu" when the
-- module has neither.
function Module:device()
  for _, m in ipairs(self:modules()) do
    for _, kind in ipairs({"param", "buffer"}) do
      for _, n in ipairs(m._names[kind]) do
        local t = rawget(m, n)
        if t ~= nil and lunar.is_tensor(t) then return t:device() end
      end
    end
  end
  return "cpu"
end

--- Extra text inside this module's printed form (layers override it).
function Module:extra_repr() return "" end

function Module.__tostring(self)
  local name = getmetatable(self).__name
  local lines = {}
  for n, m in self:named_children() do
    local child = tostring(m):gsub("\n", "\n  ")
    lines[#lines + 1] = "  (" .. n .. "): " .. child
  end
  if #lines == 0 then return name .. "(" .. self:extra_repr() .. ")" end
  local extra = self:extra_repr()
  local head = name .. "(" .. (extra ~= "" and extra .. "\n" or "\n")
  return head .. table.concat(lines, "\n") .. "\n)"
end

return Module
