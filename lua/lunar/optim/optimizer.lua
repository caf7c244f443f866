--- The Optimizer base class: parameter groups, per-parameter state, zero_grad, state_dict.
-- A subclass sets `defaults`, a `check(group)` for its options and `update(p, g, group,
-- state)` for one parameter; `step` calls it for every parameter whose grad is not nil.
-- @module lunar.optim.optimizer
local lunar = require("lunar")
local class = require("lunar.class")

local Optimizer = class("Optimizer")

local function is_tensor(t) return lunar.is_tensor(t) end

local function copy_value(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = x end
  return c
end

--- Makes an optimizer over params (a list of tensors, or a list of groups
-- `{params = {...}, lr = ...}`) with defaults for every group option.
function Optimizer:init(params, defaults)
  local name = self.__name
  self.defaults = defaults
  self.param_groups = {}
  self.state = {}
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    error(name .. ": params must be a list of tensors or of parameter groups (got "
      .. type(params) .. ")", 4)
  end
  if #params == 0 then error(name .. ": got an empty parameter list", 4) end
  if type(params[1]) == "table" and not is_tensor(params[1]) then
    for _, g in ipairs(params) do self:add_param_group(g, 5) end
  else
    self:add_param_group({params = params}, 5)
  end
end

--- Adds a group `{params = {...}, <option> = value}`; options it leaves out take the
-- optimizer's defaults.
function Optimizer:add_param_group(group, level)
  level = level or 2
  local name = self.__name
  if type(group) ~= "table" then error(name .. ": a parameter group must be a table", level) end
  local params = group.params
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    error(name .. ": a parameter group needs params (a list of tensors)", level)
  end
  local seen = {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do seen[p] = true end
  end
  local g = {params = {}}
  for i, p in ipairs(params) do
    if not is_tensor(p) then
      error(string.format("%s: parameter %d is a %s, not a tensor", name, i, type(p)), level)
    end
    if not p.is_leaf then error(name .. ": cannot optimize a non-leaf tensor", level) end
    if seen[p] then error(name .. ": a parameter appears in more than one group", level) end
    seen[p] = true
    g.params[i] = p
  end
  for k, v in pairs(group) do
    if k ~= "params" then
      if self.defaults[k] == nil then
        error(string.format("%s: unknown option '%s'", name, tostring(k)), level)
      end
      g[k] = copy_value(v)
    end
  end
  for k, v in pairs(self.defaults) do
    if g[k] == nil then g[k] = copy_value(v) end
  end
  local ok, msg = pcall(self.check, self, g)
  if not ok then error(name .. ": " .. tostring(msg):gsub("^.-:%d+: ", ""), level) end
  self.param_groups[#self.param_groups + 1] = g
end

--- Checks a group's options (subclasses extend); raise with a message naming the value.
function Optimizer.check(_, g)
  if g.lr ~= nil and (type(g.lr) ~= "number" or g.lr < 0) then
    error("invalid learning rate: " .. tostring(g.lr), 0)
  end
  if g.weight_decay ~= nil and g.weight_decay < 0 then
    error("invalid weight_decay value: " .. tostring(g.weight_decay), 0)
  end
  if g.eps ~= nil and g.eps < 0 then error("invalid epsilon value: " .. tostring(g.eps), 0) end
  if g.betas ~= nil then
    for i = 1, 2 do
      local b = g.betas[i]
      if type(b) ~= "number" or b < 0 or b >= 1 then
        error(string.format("invalid beta parameter at index %d: %s", i, tostring(b)), 0)
      end
    end
  end
end

--- Sets every parameter's gradient to zero (or to nil with set_to_none = true).
function Optimizer:zero_grad(set_to_none)
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if set_to_none then
        p.grad = nil
      else
        local gr = p.grad
        if gr then gr:zero_() end
      end
    end
  end
end

--- One optimization step. closure (optional) re-evaluates the model and returns the loss,
-- which step returns.
function Optimizer:step(closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= "function" then
      error(self.__name .. ":step: closure must be a function", 2)
    end
    loss = lunar.enable_grad(closure)
  end
  lunar.no_grad(function()
    for _, g in ipairs(self.param_groups) do
      self:check_step(g)
      for _, p in ipairs(g.params) do
        local gr = p.grad
        if gr ~= nil then
          local st = self.state[p]
          if st == nil then st = {}; self.state[p] = st end
          self:update(p, gr, g, st)
        end
      end
    end
  end)
  return loss
end

--- Checks a group before each step (options may have been changed by hand).
function Optimizer:check_step(g)
  local ok, msg = pcall(self.check, self, g)
  if not ok then error(self.__name .. ":step: " .. tostring(msg), 3) end
end

--- The optimizer's state as plain data: `{state = {[i] = {name = tensor or number}},
-- param_groups = {{lr = ..., params = {i, ...}}}}`, with parameters numbered 1.. across the
-- groups in order. Tensors are the live state (clone them to keep a snapshot). Use
-- lunar.optim.flatten_state_dict to save it with lunar.save.
function Optimizer:state_dict()
  local state, groups, idx = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local out = {params = {}}
    for k, v in pairs(g) do
      if k ~= "params" then out[k] = copy_value(v) end
    end
    for _, p in ipairs(g.params) do
      idx = idx + 1
      out.params[#out.params + 1] = idx
      local st = self.state[p]
      if st ~= nil and next(st) ~= nil then
        local c = {}
        for k, v in pairs(st) do c[k] = v end
        state[idx] = c
      end
    end
    groups[gi] = out
  end
  return {state = state, param_groups = groups}
end

--- Loads what state_dict returned (groups must match in number and size). State tensors
-- are copied, cast to each parameter's dtype.
function Optimizer:load_state_dict(sd)
  local name = self.__name
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" then
    error(name .. ":load_state_dict: expected a table with param_groups and state", 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(string.format("%s:load_state_dict: %d parameter groups, but the optimizer has %d",
      name, #sd.param_groups, #self.param_groups), 2)
  end
  local by_index = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    if #sg.params ~= #g.params then
      error(string.format("%s:load_state_dict: group %d has %d parameters, the optimizer's %d",
        name, gi, #sg.params, #g.params), 2)
    end
    for k, p in ipairs(g.params) do by_index[sg.params[k]] = p end
  end
  local state = {}
  for i, st in pairs(sd.state or {}) do
    local p = by_index[tonumber(i)]
    if p == nil then error(name .. ":load_state_dict: state for unknown parameter " .. i, 2) end
    local c = {}
    for k, v in pairs(st) do
      -- on the parameter's device and dtype, as the kernels need (a saved state is on the CPU)
      if is_tensor(v) then c[k] = v:to(p:dtype()):to(p:device()):clone():contiguous()
      else c[k] = v end
    end
    state[p] = c
  end
  for gi, g in ipairs(self.param_groups) do
    for k, v in pairs(sd.param_groups[gi]) do
      if k ~= "params" then g[k] = copy_value(v) end
    end
  end
  self.state = state
end

return Optimizer
