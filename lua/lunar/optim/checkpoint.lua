--- Flattening an optimizer's state_dict into name -> tensor pairs for lunar.save, and back.
--   state.<i>.<name>        state tensors; step and mu_product as 0-d float64
--   param_groups.<g>.<key>  numbers as 0-d float64, booleans as 0-d bool, lists of numbers
--                           (betas) as 1-d float64, params as 1-d int64 (1-based indices)
-- @module lunar.optim.checkpoint
local lunar = require("lunar")

local M = {}

-- Numbers and lists become tensors on the CPU (they are bookkeeping, saved to a file);
-- state tensors stay where they are and load_state_dict moves them to their parameter.
local F64 = {dtype = "float64", device = "cpu"}

local function encode(v, key)
  if lunar.is_tensor(v) then return v end
  if type(v) == "number" then return lunar.tensor(v, F64) end
  if type(v) == "boolean" then
    return lunar.tensor(v and 1 or 0, {dtype = "bool", device = "cpu"})
  end
  if type(v) == "table" and #v > 0 then return lunar.tensor(v, F64) end
  error("flatten_state_dict: cannot store " .. key .. " (a " .. type(v) .. ")", 3)
end

--- sd (from opt:state_dict()) as a flat table of tensors; prefix (optional) goes in front.
function M.flatten_state_dict(sd, prefix)
  prefix = prefix or ""
  local out = {}
  for i, st in pairs(sd.state or {}) do
    for k, v in pairs(st) do
      local key = string.format("%sstate.%d.%s", prefix, i, k)
      out[key] = encode(v, key)
    end
  end
  for gi, g in ipairs(sd.param_groups) do
    for k, v in pairs(g) do
      local key = string.format("%sparam_groups.%d.%s", prefix, gi, k)
      if k == "params" then out[key] = lunar.tensor(v, {dtype = "int64", device = "cpu"})
      elseif type(v) ~= "function" and type(v) ~= "string" then out[key] = encode(v, key) end
    end
  end
  return out
end

--- The inverse of flatten_state_dict: only keys under prefix are read.
function M.unflatten_state_dict(flat, prefix)
  if type(prefix) ~= "string" then prefix = "" end -- lunar.load's metadata table may come along
  local sd = {state = {}, param_groups = {}}
  for key, t in pairs(flat) do
    if key:sub(1, #prefix) == prefix then
      local rest = key:sub(#prefix + 1)
      local i, name = rest:match("^state%.(%d+)%.(.+)$")
      if i then
        i = tonumber(i)
        sd.state[i] = sd.state[i] or {}
        if name == "step" or name == "mu_product" then t = t:item() end
        sd.state[i][name] = t
      else
        local g, k = rest:match("^param_groups%.(%d+)%.(.+)$")
        if g then
          g = tonumber(g)
          sd.param_groups[g] = sd.param_groups[g] or {}
          local v
          if k == "params" then
            v = {}
            for j, x in ipairs(t:totable()) do v[j] = math.tointeger(x) or x end
          elseif t:dtype() == "bool" then v = t:item()
          elseif t:dim() == 0 then v = t:item()
          else v = t:totable() end
          sd.param_groups[g][k] = v
        end
      end
    end
  end
  return sd
end

return M
