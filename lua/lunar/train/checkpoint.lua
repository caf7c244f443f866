--- Training checkpoints in one safetensors file: the model's state under "model.", the
-- optimizer's (lunar.optim.flatten_state_dict) under "optimizer.", and in the metadata the
-- epoch, the default generator's state (rng.seed, rng.offset) and the scheduler's state
-- (scheduler.<field>, each value tagged with its type so integers, floats, infinities,
-- booleans, strings and lists of numbers read back exactly).
-- @module lunar.train.checkpoint
local lunar = require("lunar")
local optim_ckpt = require("lunar.optim.checkpoint")

local M = {}

local function num(v)
  if v ~= v then return "f:nan" end
  if v == math.huge then return "f:inf" end
  if v == -math.huge then return "f:-inf" end
  if math.type(v) == "integer" then return "i:" .. v end
  return "f:" .. ("%.17g"):format(v)
end

local function unnum(s)
  local tag, body = s:match("^(%a):(.*)$")
  if tag == "i" then return math.tointeger(tonumber(body)) end
  if body == "nan" then return 0 / 0 end
  if body == "inf" then return math.huge end
  if body == "-inf" then return -math.huge end
  return tonumber(body) + 0.0
end

local function encode(key, v)
  local t = type(v)
  if t == "number" then return num(v) end
  if t == "boolean" then return "b:" .. tostring(v) end
  if t == "string" then return "s:" .. v end
  if t == "table" then
    local parts = {}
    for i, x in ipairs(v) do
      if type(x) ~= "number" then
        error(("save_checkpoint: scheduler field %s[%d] is a %s (numbers only)"):format(key, i,
          type(x)), 4)
      end
      parts[i] = num(x)
    end
    return "l:" .. table.concat(parts, ";")
  end
  error(("save_checkpoint: cannot store scheduler field %s (a %s)"):format(key, t), 4)
end

local function decode(s)
  local tag, body = s:match("^(%a):(.*)$")
  if tag == "b" then return body == "true" end
  if tag == "s" then return body end
  if tag == "l" then
    local out = {}
    for part in body:gmatch("[^;]+") do out[#out + 1] = unnum(part) end
    return out
  end
  return unnum(s)
end

--- Writes a checkpoint. what: {model = m, optimizer = opt, scheduler = sched, epoch = e,
-- metadata = {k = "v"}}; every part is optional except model. The file is written to a
-- temporary name and renamed (lunar.save), so an interrupted save leaves the old file.
function M.save_checkpoint(path, what)
  if type(path) ~= "string" then error("save_checkpoint: path must be a string", 2) end
  if type(what) ~= "table" or what.model == nil then
    error("save_checkpoint: expected {model = ..., optimizer = ..., scheduler = ..., epoch = ...}",
      2)
  end
  local tensors = {}
  for k, t in pairs(what.model:state_dict()) do tensors["model." .. k] = t end
  if what.optimizer then
    for k, t in pairs(optim_ckpt.flatten_state_dict(what.optimizer:state_dict(), "optimizer.")) do
      tensors[k] = t
    end
  end
  local meta = {format = "lunar.train checkpoint"}
  for k, v in pairs(what.metadata or {}) do meta[k] = tostring(v) end
  if what.epoch ~= nil then meta.epoch = tostring(what.epoch) end
  local rng = lunar.get_rng_state()
  meta["rng.seed"], meta["rng.offset"] = tostring(rng.seed), tostring(rng.offset)
  if what.scheduler then
    for k, v in pairs(what.scheduler:state_dict()) do
      meta["scheduler." .. k] = encode(k, v)
    end
  end
  lunar.save(path, tensors, meta)
end

--- Reads a checkpoint into the given objects: {model = m, optimizer = opt, scheduler =
-- sched} (each optional), and restores the default generator's state (unless
-- {rng = false}). Returns the epoch (nil when none was saved) and the metadata.
function M.load_checkpoint(path, into)
  if type(path) ~= "string" then error("load_checkpoint: path must be a string", 2) end
  into = into or {}
  local tensors, meta = lunar.load(path)
  meta = meta or {}
  if meta.format ~= "lunar.train checkpoint" then
    error("load_checkpoint: " .. path .. " is not a lunar.train checkpoint", 2)
  end
  if into.model then
    local sd = {}
    for k, t in pairs(tensors) do
      local name = type(k) == "string" and k:match("^model%.(.+)$")
      if name then sd[name] = t end
    end
    into.model:load_state_dict(sd)
  end
  if into.optimizer then
    into.optimizer:load_state_dict(optim_ckpt.unflatten_state_dict(tensors, "optimizer."))
  end
  if into.scheduler then
    local sd = {}
    for k, v in pairs(meta) do
      local name = k:match("^scheduler%.(.+)$")
      if name then sd[name] = decode(v) end
    end
    if next(sd) == nil then error("load_checkpoint: " .. path .. " has no scheduler state", 2) end
    into.scheduler:load_state_dict(sd)
  end
  if into.rng ~= false and meta["rng.seed"] then
    lunar.set_rng_state({seed = math.tointeger(tonumber(meta["rng.seed"])),
      offset = math.tointeger(tonumber(meta["rng.offset"]))})
  end
  return meta.epoch and math.tointeger(tonumber(meta.epoch)), meta
end

return M
