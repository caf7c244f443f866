--- A small class helper: `local Point = class("Point")`, `Point:extend("Point3")`.
-- Instances are made by calling the class: `Point(1, 2)` runs `Point:init(1, 2)`.
-- Methods live on the class table; a subclass looks up missing methods in its parent.
-- @module lunar.class

local function new(cls, ...)
  local obj = setmetatable({}, cls)
  local pre = cls.__preinit
  if pre then pre(obj) end
  obj:init(...)
  return obj
end

local function extend(parent, name)
  if type(name) ~= "string" then error("extend: a class needs a name (got " .. type(name) .. ")", 2) end
  local cls = {}
  -- metamethods are not inherited through __index: copy the parent's
  for k, v in pairs(parent) do
    if type(k) == "string" and k:sub(1, 2) == "__" and k ~= "__index" and k ~= "__name" then
      cls[k] = v
    end
  end
  cls.__index = cls
  cls.__name = name
  cls.super = parent
  return setmetatable(cls, {__index = parent, __call = new, __tostring = function() return name end})
end

--- Makes a new root class.
-- @tparam string name
local function class(name)
  local cls = {__name = name}
  cls.__index = cls
  cls.init = function() end
  cls.extend = extend
  --- Whether obj is an instance of cls or of a subclass.
  cls.is_instance = function(c, obj)
    if type(obj) ~= "table" then return false end
    local m = getmetatable(obj)
    while m do
      if m == c then return true end
      m = m.super
    end
    return false
  end
  return setmetatable(cls, {__call = new, __tostring = function() return name end})
end

return class
