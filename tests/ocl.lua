--- tests/ocl.lua - what the CPU-vs-OpenCL specs share: the device they use, flattened
-- values, and issue #4's comparison rule: normalised mean squared error <= tol (1e-7; 5e-4
-- for GEMM and convolution), a NaN fails (unless nan_ok: then NaN only where the CPU has
-- NaN), infinities must match, and the result must be on the OpenCL device.
local lunar = require("lunar")

local M = {}

M.available = #lunar.devices() > 0
M.DEV = "opencl:1"
M.FP64 = M.available and lunar.devices()[1].fp64 or false

--- The flattened values of a tensor on any device, as Lua numbers (booleans as 0/1).
function M.values(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then for _, e in ipairs(v) do walk(e) end
    else out[#out + 1] = v == true and 1 or (v == false and 0 or v) end
  end
  walk(t:to("cpu"):totable())
  return out
end

--- nil when actual (OpenCL) matches expected (CPU) by the rule above, else what differs.
-- Plain numbers and other values compare too (a relative square error for numbers).
function M.compare(actual, expected, tol, nan_ok)
  tol = tol or 1e-7
  if not lunar.is_tensor(expected) then
    if type(expected) == "number" and type(actual) == "number" then
      local d = (actual - expected) ^ 2 / math.max(expected ^ 2, 1e-300)
      if d <= tol or actual == expected then return nil end
    elseif actual == expected then
      return nil
    end
    return ("%s vs %s"):format(tostring(actual), tostring(expected))
  end
  if not lunar.is_tensor(actual) then return "not a tensor: " .. tostring(actual) end
  local sa, se = table.concat(actual:size(), "x"), table.concat(expected:size(), "x")
  if sa ~= se then return ("shape [%s] vs [%s]"):format(sa, se) end
  if actual:dtype() ~= expected:dtype() then
    return ("dtype %s vs %s"):format(actual:dtype(), expected:dtype())
  end
  if actual:device() ~= M.DEV then return "result on " .. actual:device() end
  local a, e = M.values(actual), M.values(expected)
  local num, den = 0, 0
  for i = 1, #e do
    local x, y = a[i], e[i]
    if nan_ok and (x ~= x or y ~= y) then
      if (x ~= x) ~= (y ~= y) then return ("element %d: %s vs %s"):format(i, x, y) end
    elseif y ~= y then return "NaN from the CPU at element " .. i
    elseif x ~= x then return "NaN from OpenCL at element " .. i
    elseif math.abs(y) == math.huge or math.abs(x) == math.huge then
      if x ~= y then return ("element %d: %s vs %s"):format(i, x, y) end
    else
      num, den = num + (x - y) ^ 2, den + y ^ 2
    end
  end
  local err = den > 0 and num / den or num
  if err > tol then return ("nmse %g > %g"):format(err, tol) end
  return nil
end

--- Asserts compare(actual, expected, tol, nan_ok) finds nothing.
function M.check(actual, expected, tol, nan_ok)
  local why = M.compare(actual, expected, tol, nan_ok)
  if why ~= nil then error(why, 2) end
end

--- Asserts element-for-element equality (NaN equals NaN): indices, integers, moved values.
function M.same(actual, expected)
  local why = M.compare(actual, expected, 0, true)
  if why and not why:find("^nmse") and not why:find("^element") then error(why, 2) end
  local a, e = M.values(actual), M.values(expected)
  for i = 1, #e do
    local x, y = a[i], e[i]
    if not (x == y or (x ~= x and y ~= y)) then
      error(("element %d: %.17g vs %.17g"):format(i, x, y), 2)
    end
  end
end

--- Random input of a shape on both devices (the same numbers).
function M.pair(shape, opts)
  local t = lunar.randn(shape, opts)
  return t, t:to(M.DEV)
end

return M
