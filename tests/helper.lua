-- Shared by the specs: approximate comparison of tensors and tables.
local lunar = require("lunar")

local helper = {}

local function flatten(v, out)
  out = out or {}
  if type(v) == "table" then
    for _, x in ipairs(v) do flatten(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

--- Asserts that actual (tensor or table) equals expected within rtol/atol, element-wise.
function helper.close(actual, expected, rtol, atol)
  rtol, atol = rtol or 1e-5, atol or 1e-6
  local a = flatten(lunar.is_tensor(actual) and actual:totable() or actual)
  local e = flatten(lunar.is_tensor(expected) and expected:totable() or expected)
  assert(#a == #e, ("close: %d elements vs %d expected"):format(#a, #e))
  for i = 1, #a do
    local x, y = a[i], e[i]
    if type(x) == "boolean" or type(y) == "boolean" then
      assert(x == y, ("close: element %d is %s, expected %s"):format(i, tostring(x), tostring(y)))
    elseif y ~= y then
      assert(x ~= x, ("close: element %d is %s, expected nan"):format(i, tostring(x)))
    elseif y == math.huge or y == -math.huge then
      assert(x == y, ("close: element %d is %s, expected %s"):format(i, tostring(x), tostring(y)))
    else
      assert(math.abs(x - y) <= atol + rtol * math.abs(y),
        ("close: element %d is %.9g, expected %.9g"):format(i, x, y))
    end
  end
  return true
end

--- Asserts that fn raises an error whose message contains every given fragment.
function helper.raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, but the call succeeded")
  err = tostring(err)
  for _, frag in ipairs({...}) do
    assert(err:find(frag, 1, true), ("error %q does not mention %q"):format(err, frag))
  end
  return err
end

--- Runs fn on fresh leaf copies of the fixture inputs fx[name .. "_" .. k], compares the
-- output with fx[name .. "_out"], backpropagates fx[name .. "_g"] and compares each input's
-- gradient with fx[name .. "_g" .. k]. prep (optional) turns each leaf into the operand fn
-- sees (a transposed view, ...).
function helper.against_torch(fx, name, keys, fn, prep, tol)
  tol = tol or 1e-5
  local leaves, args = {}, {}
  for i, k in ipairs(keys) do
    leaves[i] = fx[name .. "_" .. k]:clone():requires_grad_()
    args[i] = prep and prep(leaves[i], i) or leaves[i]
  end
  local y = fn(table.unpack(args))
  helper.close(y, fx[name .. "_out"], tol, tol)
  y:backward(fx[name .. "_g"])
  for i, k in ipairs(keys) do helper.close(leaves[i].grad, fx[name .. "_g" .. k], tol, tol) end
end

--- Asserts that autograd's gradients of fn match finite differences (float64 inputs).
function helper.gradcheck(fn, inputs, opts)
  local ok, msg = lunar.autograd.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

--- A float64 leaf of the given shape with distinct, non-symmetric values.
function helper.leaf(...)
  local shape = {...}
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return (lunar.arange(n, {dtype = "float64"}):sin() * 2 + 0.1):reshape(shape):requires_grad_()
end

return helper
