--- Non-sequential containers: Residual (skip connections), Concat and Parallel (branches
-- joined by concatenation, as in an Inception block), and Graph (named nodes, several
-- inputs and outputs: multi-task heads, a generator/discriminator pair).
-- @module lunar.nn.graph
local lunar = require("lunar")
local Module = require("lunar.nn.module")

local graph = {}

local function shape_str(t) return "[" .. table.concat(t:size(), "x") .. "]" end

local function same_shape(a, b)
  if a:dim() ~= b:dim() then return false end
  for d = 1, a:dim() do if a:size(d) ~= b:size(d) then return false end end
  return true
end

local function check_module(fname, what, m, level)
  if not Module:is_instance(m) then
    error(("%s: %s must be a module (got %s)"):format(fname, what, type(m)), level + 1)
  end
end

--- y = block(x) + shortcut(x), He et al. 2016 (H(x) = F(x) + x). The shortcut is the
-- identity unless `{projection = module}` is given (e.g. a 1x1 conv or a Linear when the
-- block changes the shape). Shapes must match exactly (no broadcasting).
-- @usage nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)))
local Residual = Module:extend("Residual")
graph.Residual = Residual

function Residual:init(block, opts)
  check_module("Residual", "the block", block, 3)
  opts = opts or {}
  self.block = block
  if opts.projection ~= nil then
    check_module("Residual", "projection", opts.projection, 3)
    self.projection = opts.projection
  end
end

function Residual:forward(x)
  local y = self.block(x)
  local s = self.projection and self.projection(x) or x
  if not (lunar.is_tensor(y) and lunar.is_tensor(s)) then
    error("Residual: the block and the shortcut must return tensors", 2)
  end
  if not same_shape(y, s) then
    error(("Residual: the block's output %s and the shortcut %s differ in shape (input %s);"
      .. " give {projection = ...}"):format(shape_str(y), shape_str(s), shape_str(x)), 2)
  end
  return y + s
end

-- Branch modules from varargs or one list; registered as "1", "2", ...
local function add_branches(self, fname, ...)
  local mods = {...}
  if #mods == 1 and type(mods[1]) == "table" and not Module:is_instance(mods[1]) then
    mods = mods[1]
  end
  if #mods == 0 then error(fname .. ": give at least one branch", 4) end
  for i, m in ipairs(mods) do
    check_module(fname, "branch " .. i, m, 4)
    self:add_module(i, m)
  end
end

local function check_dim(fname, dim)
  if math.type(dim) ~= "integer" then
    error(("%s: the first argument is the dim to concatenate along (got %s)")
      :format(fname, tostring(dim)), 4)
  end
end

-- Concatenates outs along dim after checking that the other dims agree.
local function join(fname, outs, dim)
  local first = outs[1]
  for i, o in ipairs(outs) do
    if not lunar.is_tensor(o) then
      error(("%s: branch %d returned %s, not a tensor"):format(fname, i, type(o)), 3)
    end
  end
  local n = first:dim()
  local d = dim < 0 and n + dim + 1 or dim
  if d < 1 or d > n then
    error(("%s: dim %d is out of range for branch outputs of shape %s")
      :format(fname, dim, shape_str(first)), 3)
  end
  for i = 2, #outs do
    local o = outs[i]
    local ok = o:dim() == n
    for k = 1, n do
      if ok and k ~= d and o:size(k) ~= first:size(k) then ok = false end
    end
    if not ok then
      local shapes = {}
      for j, p in ipairs(outs) do shapes[j] = shape_str(p) end
      error(("%s: branch outputs %s differ outside dim %d"):format(fname,
        table.concat(shapes, ", "), dim), 3)
    end
  end
  return lunar.cat(outs, d)
end

--- Runs every branch on the same input and concatenates the outputs along dim
-- (an Inception block: `nn.Concat(2, conv1x1, conv3x3, conv5x5, pool_proj)`).
local Concat = Module:extend("Concat")
graph.Concat = Concat

function Concat:init(dim, ...)
  check_dim("Concat", dim)
  self.dim = dim
  add_branches(self, "Concat", ...)
end

function Concat:forward(...)
  local outs = {}
  for _, m in self:named_children() do outs[#outs + 1] = m(...) end
  return join("Concat", outs, self.dim)
end

function Concat:extra_repr() return ("dim=%d"):format(self.dim) end

--- Branch i runs on input i; the outputs are concatenated along dim:
-- `nn.Parallel(2, image_net, text_net)(images, tokens)`.
local Parallel = Module:extend("Parallel")
graph.Parallel = Parallel

function Parallel:init(dim, ...)
  check_dim("Parallel", dim)
  self.dim = dim
  add_branches(self, "Parallel", ...)
end

function Parallel:forward(...)
  local xs = table.pack(...)
  local n = #self._names.module
  if xs.n ~= n then
    error(("Parallel: %d branches but %d inputs"):format(n, xs.n), 2)
  end
  local outs = {}
  for i, m in self:named_children() do outs[#outs + 1] = m(xs[tonumber(i)]) end
  return join("Parallel", outs, self.dim)
end

function Parallel:extra_repr() return ("dim=%d"):format(self.dim) end

--- A graph of named nodes run in the order given:
--
--     local net = nn.Graph{
--       inputs = {"x"},
--       nodes = {
--         {"trunk", nn.Sequential(nn.Linear(4, 16), nn.ReLU()), inputs = {"x"}},
--         {"class", nn.Linear(16, 3), inputs = {"trunk"}},
--         {"value", nn.Linear(16, 1), inputs = {"trunk"}},
--       },
--       outputs = {"class", "value"},
--     }
--     local logits, value = net(x)
--
-- A node is {name, fn, inputs = {names...}}: fn is a module (registered as a child under
-- the node's name, so its parameters are "trunk.1.weight") or a plain function
-- (`function(a, b) return a + b end`). A module used by several nodes (a shared
-- discriminator) is registered once, under its first node. A node may name several results
-- with `outputs = {"a", "b"}`. Call the graph with its inputs in order, or with one table
-- keyed by input name; it returns its outputs in order.
local Graph = Module:extend("Graph")
graph.Graph = Graph

local function check_name(what, name, known)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(("Graph: %s name %s must be a non-empty string without dots")
      :format(what, tostring(name)), 5)
  end
  if Graph[name] ~= nil or name:sub(1, 1) == "_" or name == "training" or
      name == "trainable" then
    error(("Graph: %s name '%s' is reserved"):format(what, name), 5)
  end
  if known[name] then error(("Graph: the name '%s' is used twice"):format(name), 5) end
  known[name] = true
end

function Graph:init(spec)
  if type(spec) ~= "table" then
    error("Graph: expected a spec table {inputs, nodes, outputs}", 3)
  end
  local inputs, nodes, outputs = spec.inputs, spec.nodes, spec.outputs
  if type(inputs) ~= "table" or #inputs == 0 then error("Graph: spec.inputs must list names", 3) end
  if type(nodes) ~= "table" or #nodes == 0 then error("Graph: spec.nodes must list nodes", 3) end
  if type(outputs) ~= "table" or #outputs == 0 then
    error("Graph: spec.outputs must list names", 3)
  end
  local known, seen = {}, {}
  for _, name in ipairs(inputs) do check_name("input", name, known) end
  local plan = {}
  for i, node in ipairs(nodes) do
    if type(node) ~= "table" then error(("Graph: node %d must be a table"):format(i), 3) end
    local name, fn = node[1], node[2]
    check_name("node", name, known)
    if not (Module:is_instance(fn) or type(fn) == "function") then
      error(("Graph: node '%s' needs a module or a function (got %s)"):format(name, type(fn)), 3)
    end
    local ins = node.inputs
    if type(ins) ~= "table" or #ins == 0 then
      error(("Graph: node '%s' needs inputs = {names...}"):format(name), 3)
    end
    for _, src in ipairs(ins) do
      if not known[src] then
        error(("Graph: node '%s' takes '%s', which is not an input or an earlier node")
          :format(name, tostring(src)), 3)
      end
    end
    local results = node.outputs or {name}
    if node.outputs then
      for _, r in ipairs(results) do check_name("result", r, known) end
    end
    if Module:is_instance(fn) and not seen[fn] then
      seen[fn] = true
      self:add_module(name, fn)
    end
    plan[i] = {name = name, fn = fn, inputs = ins, results = results}
  end
  for _, name in ipairs(outputs) do
    if not known[name] then
      error(("Graph: output '%s' is not defined"):format(tostring(name)), 3)
    end
  end
  rawset(self, "_graph", {inputs = inputs, plan = plan, outputs = outputs})
end

function Graph:forward(...)
  local g = rawget(self, "_graph")
  local args = table.pack(...)
  local env = {}
  if args.n == 1 and type(args[1]) == "table" and not lunar.is_tensor(args[1]) then
    for _, name in ipairs(g.inputs) do
      if args[1][name] == nil then error(("Graph: input '%s' is missing"):format(name), 2) end
      env[name] = args[1][name]
    end
  else
    if args.n ~= #g.inputs then
      error(("Graph: expected %d inputs (%s), got %d")
        :format(#g.inputs, table.concat(g.inputs, ", "), args.n), 2)
    end
    for i, name in ipairs(g.inputs) do env[name] = args[i] end
  end
  for _, node in ipairs(g.plan) do
    local xs = {}
    for k, src in ipairs(node.inputs) do xs[k] = env[src] end
    local ys = table.pack(node.fn(table.unpack(xs, 1, #node.inputs)))
    for k, r in ipairs(node.results) do
      if ys[k] == nil then
        error(("Graph: node '%s' returned no value for '%s'"):format(node.name, r), 2)
      end
      env[r] = ys[k]
    end
  end
  local out = {}
  for i, name in ipairs(g.outputs) do out[i] = env[name] end
  return table.unpack(out, 1, #g.outputs)
end

function Graph:extra_repr()
  local g = rawget(self, "_graph")
  return ("inputs={%s}, outputs={%s}"):format(table.concat(g.inputs, ", "),
    table.concat(g.outputs, ", "))
end

return graph
