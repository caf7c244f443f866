-- Every op on OpenCL against the CPU (tag: opencl), as ggml's test-backend-ops does: one
-- table entry per public op of lunar, per Tensor method that computes something and per
-- loss and activation of nn.functional. Each entry says how to make its inputs (shapes,
-- dtypes, domains); the sweep makes them once on the CPU, copies them to the device, runs
-- the op on both from the same values, contiguous and again from strided views with an
-- offset, and compares every output by normalised mean squared error (<= 1e-7, 5e-4 for
-- GEMM and convolution; a NaN fails, infinities must match). For differentiable entries it
-- then compares the gradient of every float input of sum(out * r) with a fixed random r.
-- A meta-test fails when a public function is neither swept nor in the commented skip list.
local lunar = require("lunar")
local nn = require("lunar.nn")
local F = nn.functional

if #lunar.devices() == 0 then
  describe("opencl op sweep #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): the op sweep is skipped")
  end)
  return
end

local ocl = require("tests.ocl")
local DEV = ocl.DEV
local compare = ocl.compare
local GEMM = 5e-4 -- GEMM and convolution: CLBlast and our im2col sum in other orders

-- Inputs ------------------------------------------------------------------------------------
-- I(shape, kind, k): kind "f" (normal; integers for integer dtypes), "pos" (>= 0.5, e.g. for
-- log or a divisor), "unit" (in (0.05, 0.95)), "sign" (-1 or 1), "buf" (normal, no gradient),
-- "bufpos", "idx" (int64 in 1..k), "perm" (int64, distinct values of 1..k along the last
-- dim), "mask" (bool), "int" (int64 in -5..5), "f64" (float64 whatever the dtype). Float
-- kinds take the entry's dtype; "f", "pos" and "unit" inputs get gradients.
local function I(shape, kind, k) return {shape = shape, kind = kind or "f", k = k} end
local GRAD_KINDS = {f = true, pos = true, unit = true, tie = true}
-- kind "special": edge values (the sweep of these allows NaN where the CPU gives NaN too)
local SPECIAL = {0, -0.0, 1, -1, 0.5, math.huge, -math.huge, 1e30, -1e30, 100, -100, 1e-30}

local function make(spec, dt)
  local shape, kind = spec.shape, spec.kind
  local float = dt:find("float") ~= nil
  if kind == "f" or kind == "buf" then
    if float then return lunar.randn(shape, {dtype = dt}) end
    if dt == "bool" then return lunar.randn(shape):gt(0) end
    if dt == "uint8" then return (lunar.rand(shape) * 10):to(dt) end
    return (lunar.randn(shape) * 5):to(dt)
  elseif kind == "pos" or kind == "bufpos" then
    if float then return lunar.randn(shape, {dtype = dt}):abs() + 0.5 end
    return (lunar.rand(shape) * 6):to(dt) + 1
  elseif kind == "unit" then
    return lunar.rand(shape, {dtype = dt}) * 0.9 + 0.05
  elseif kind == "sign" then
    return lunar.where(lunar.randn(shape):gt(0), 1, -1):to(dt)
  elseif kind == "idx" then
    return lunar.randint(1, spec.k + 1, shape)
  elseif kind == "perm" then
    local rows, n = {}, shape[#shape]
    local outer = 1
    for i = 1, #shape - 1 do outer = outer * shape[i] end
    for r = 1, outer do rows[r] = lunar.randperm(spec.k):narrow(1, 1, n) end
    return lunar.stack(rows, 1):reshape(shape)
  elseif kind == "mask" then
    return lunar.randn(shape):gt(0)
  elseif kind == "int" then
    return lunar.randint(-5, 6, shape)
  elseif kind == "f64" then
    return lunar.randn(shape, {dtype = "float64"})
  elseif kind == "tie" then -- small integers as floats: ties, zeros, clamp bounds
    return lunar.randint(-1, 3, shape):to(dt)
  elseif kind == "special" then
    local pick = lunar.randint(1, #SPECIAL + 1, shape)
    return lunar.tensor(SPECIAL, {dtype = dt}):index_select(1, pick:reshape(-1)):reshape(shape)
  end
  error("unknown input kind " .. kind)
end

-- A tensor holding t's values in another layout: stored (contiguous, what becomes the leaf)
-- and view(stored) giving t's logical shape back with transposed strides and an offset.
local function strided(t)
  local nd = t:dim()
  if nd == 0 or t:numel() == 0 then return t:clone(), function(s) return s end end
  local n1 = t:size(1)
  local padded = lunar.cat({t:narrow(1, 1, 1), t}, 1)
  if nd == 1 then
    return padded, function(s) return s:narrow(1, 2, n1) end
  end
  return padded:transpose(1, nd):contiguous(),
    function(s) return s:transpose(1, nd):narrow(1, 2, n1) end
end

-- Entries ------------------------------------------------------------------------------------
-- {name, inputs, id = a label for variants, args = extra arguments after the inputs,
-- f = the call (default lunar[name] or the method), dt = dtypes (default float32 and
-- float64), nograd = true when not differentiable, tol, flat = no strided run (the op wants
-- contiguous input), seed = the op draws random numbers (reseeded the same before each
-- device's run), inplace = also sweep the `name_` form, error = bad input (a Lua error on
-- both), nan_ok = NaN allowed where the CPU has NaN too}
local FLOATS = {"float32", "float64"}
local NUMERIC = {"float32", "float64", "int32", "int64"}
local ALL = {"float32", "float64", "int32", "int64", "uint8", "bool"}
local Tensor = lunar.Tensor
local E = {}
local function op(name, inputs, o)
  o = o or {}
  o[1], o.inputs = name, inputs
  if o.args then -- args may hold nils (clamp(nil, hi)): count up to the last key
    local n = 0
    for k in pairs(o.args) do if math.type(k) == "integer" and k > n then n = k end end
    o.args.n = n
  end
  E[#E + 1] = o
end

-- element-wise, unary
for _, name in ipairs({"neg", "negative", "abs", "sign", "square", "relu"}) do
  op(name, {I({3, 5})}, {dt = NUMERIC, inplace = Tensor[name .. "_"] ~= nil})
end
for _, name in ipairs({"exp", "expm1", "sin", "cos", "tanh", "sigmoid", "erf"}) do
  op(name, {I({3, 5})}, {inplace = true})
end
for _, name in ipairs({"log", "log1p", "sqrt", "rsqrt", "reciprocal"}) do
  op(name, {I({3, 5}, "pos")}, {inplace = true})
end
for _, name in ipairs({"floor", "ceil", "round", "trunc"}) do
  op(name, {I({3, 5})}, {f = function(x) return x[name](x * 3) end, inplace = false})
  op(name, {I({3, 5})}, {dt = {"int32", "int64"}, nograd = true, inplace = true})
end
op("logical_not", {I({3, 5})}, {dt = ALL, nograd = true})
op("logical_not_", {I({3, 5})}, {dt = {"bool"}, nograd = true})
op("clamp", {I({3, 5})}, {args = {-0.5, 0.7}, dt = NUMERIC, inplace = true})
op("clamp", {I({3, 5})}, {args = {nil, 0.2}})
op("clip", {I({3, 5})}, {args = {-0.3}})

-- element-wise, binary with broadcasting
for _, name in ipairs({"add", "sub", "mul", "maximum", "minimum"}) do
  op(name, {I({3, 1, 5}), I({4, 1})}, {dt = NUMERIC, inplace = false})
  op(name, {I({4, 5}), I({4, 5})}, {dt = NUMERIC, inplace = true})
end
op("add", {I({3, 4}), I({4})}, {f = function(a, b) return a + b * 2.5 end})
op("div", {I({3, 1, 5}), I({4, 1}, "pos")}, {dt = NUMERIC})
op("div", {I({4, 5}), I({4, 5}, "pos")}, {inplace = true})
op("pow", {I({3, 1, 5}, "pos"), I({4, 1})}, {inplace = false})
op("pow", {I({4, 5}, "pos"), I({4, 5})}, {inplace = true})
op("pow", {I({4, 5})}, {args = {3}})
op("atan2", {I({3, 1, 5}), I({4, 1})}, {inplace = false})
op("atan2", {I({4, 5}), I({4, 5})}, {inplace = true})
for _, name in ipairs({"fmod", "remainder"}) do
  op(name, {I({3, 1, 5}), I({4, 1}, "pos")}, {dt = NUMERIC})
  op(name, {I({4, 5}), I({4, 5}, "pos")}, {dt = NUMERIC, inplace = true})
  op(name, {I({4, 5})}, {args = {-1.5}, nograd = true})
end
for _, name in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
  op(name, {I({3, 1, 5}), I({4, 1})}, {dt = ALL, nograd = true})
  op(name, {I({4, 5}), I({4, 5})}, {nograd = true, inplace = true})
  op(name, {I({4, 5})}, {args = {0.1}, nograd = true})
end
for _, name in ipairs({"logical_and", "logical_or", "logical_xor"}) do
  op(name, {I({3, 1, 5}), I({4, 1})}, {dt = ALL, nograd = true})
  op(name, {I({4, 5}), I({4, 5})}, {nograd = true, inplace = true})
end
op("where", {I({3, 4}, "mask"), I({3, 4}), I({4})}, {dt = NUMERIC})
op("where", {I({3, 4}, "mask"), I({3, 4})}, {args = {0.5}})
op("fill_", {I({3, 4})}, {args = {2.5}, dt = ALL, nograd = true})
op("zero_", {I({3, 4})}, {dt = ALL, nograd = true})
op("copy_", {I({3, 4}), I({4}, "f64")}, {dt = ALL, nograd = true})

-- reductions
for _, name in ipairs({"sum", "mean", "prod", "amax", "amin", "logsumexp"}) do
  op(name, {I({3, 4, 5})})
  op(name, {I({3, 4, 5})}, {args = {2}})
  op(name, {I({3, 4, 5})}, {args = {{1, 3}, true}})
end
op("sum", {I({3, 4, 5})}, {args = {2}, dt = {"int32", "int64", "uint8", "bool"}, nograd = true})
op("prod", {I({3, 4})}, {args = {1}, dt = {"int32", "int64"}, nograd = true})
op("amax", {I({3, 4})}, {args = {2}, dt = {"int32", "int64", "uint8"}, nograd = true})
op("amin", {I({3, 4})}, {args = {1}, dt = {"int32", "int64", "uint8"}, nograd = true})
for _, name in ipairs({"all", "any"}) do
  op(name, {I({3, 4})}, {dt = ALL, nograd = true})
  op(name, {I({3, 4})}, {args = {2}, dt = ALL, nograd = true})
end
op("norm", {I({3, 4})})
op("norm", {I({3, 4})}, {args = {1, 2}})
op("norm", {I({3, 4})}, {args = {3, {1, 2}}})
op("norm", {I({3, 4})}, {args = {"inf", 1}})
op("norm", {I({3, 4})}, {args = {0, 2}, nograd = true})
op("var", {I({3, 4, 5})}, {args = {2}})
op("var", {I({3, 4, 5})}, {args = {{1, 3}, {unbiased = false, keepdim = true}}})
op("std", {I({3, 4, 5})})
op("std", {I({3, 4, 5})}, {args = {3, {correction = 0}}})
for _, name in ipairs({"max", "min"}) do
  op(name, {I({3, 4, 5})}, {dt = NUMERIC})
  op(name, {I({3, 4, 5})}, {args = {2}, dt = NUMERIC})
  op(name, {I({3, 4})}, {args = {1, true}})
end
for _, name in ipairs({"argmax", "argmin"}) do
  op(name, {I({3, 4, 5})}, {dt = NUMERIC, nograd = true})
  op(name, {I({3, 4, 5})}, {args = {3}, dt = NUMERIC, nograd = true})
end
for _, name in ipairs({"cumsum", "cumprod"}) do
  op(name, {I({3, 5})}, {args = {2}})
  op(name, {I({4, 3})}, {args = {1}, dt = {"int32", "int64"}, nograd = true})
end
op("count_nonzero", {I({3, 4}, "int")}, {nograd = true, dt = {"int64"}})

-- linear algebra
op("mm", {I({7, 5}), I({5, 6})}, {tol = GEMM})
op("bmm", {I({3, 4, 5}), I({3, 5, 2})}, {tol = GEMM})
op("mv", {I({4, 5}), I({5})}, {tol = GEMM})
op("dot", {I({6}), I({6})}, {tol = GEMM})
op("outer", {I({4}), I({5})}, {tol = GEMM})
op("matmul", {I({4, 5}), I({5, 3})}, {tol = GEMM})
op("matmul", {I({2, 3, 4, 5}), I({5, 3})}, {tol = GEMM})
op("matmul", {I({3, 1, 4, 5}), I({2, 5, 3})}, {tol = GEMM})
op("matmul", {I({5}), I({2, 5, 3})}, {tol = GEMM})
op("matmul", {I({2, 4, 5}), I({5})}, {tol = GEMM})
op("addmm", {I({6}), I({4, 5}), I({5, 6})}, {args = {{beta = 0.5, alpha = 2}}, tol = GEMM})
op("addmm", {I({4, 6}), I({4, 5}), I({5, 6})}, {tol = GEMM})
op("linear", {I({3, 5}), I({4, 5}), I({4})}, {tol = GEMM})
op("linear", {I({2, 3, 5}), I({4, 5})}, {tol = GEMM})

-- views and copies
op("view", {I({3, 4})}, {args = {2, 6}, flat = true, dt = ALL})
op("view_as", {I({3, 4}), I({6, 2}, "buf")}, {flat = true})
op("reshape", {I({3, 4})}, {args = {2, -1}, dt = ALL})
op("transpose", {I({3, 4, 2})}, {args = {1, 3}, dt = ALL})
op("t", {I({3, 4})}, {dt = ALL})
op("permute", {I({3, 4, 2})}, {args = {3, 1, 2}, dt = ALL})
op("narrow", {I({5, 4})}, {args = {2, 2, 2}, dt = ALL})
op("select", {I({5, 4})}, {args = {1, 3}, dt = ALL})
op("expand", {I({3, 1})}, {args = {2, 3, 4}, dt = ALL})
op("expand_as", {I({1, 4}), I({3, 4}, "buf")})
op("squeeze", {I({3, 1, 4})}, {dt = ALL})
op("squeeze", {I({3, 1, 4})}, {args = {2}})
op("unsqueeze", {I({3, 4})}, {args = {2}, dt = ALL})
op("unfold", {I({3, 7})}, {args = {2, 3, 2}})
op("flatten", {I({2, 3, 4})}, {dt = ALL})
op("flatten", {I({2, 3, 4})}, {args = {2, 3}})
op("contiguous", {I({3, 4})}, {dt = ALL})
op("clone", {I({3, 4})}, {dt = ALL})
op("detach", {I({3, 4})}, {nograd = true})
op("split", {I({5, 4})}, {args = {2, 1}, dt = ALL})
op("split", {I({5, 4})}, {args = {{1, 3}, 2}})
op("chunk", {I({5, 4})}, {args = {3, 1}})
op("tensor", {I({3, 4})}, {dt = ALL, nograd = true})
for _, name in ipairs({"float", "double", "int", "long", "byte", "bool"}) do
  op(name, {I({3, 4})}, {dt = ALL, nograd = name ~= "float" and name ~= "double"})
end
op("type", {I({3, 4})}, {args = {"float64"}})
op("type", {I({3, 4})}, {args = {"int32"}, nograd = true})
op("to", {I({3, 4})}, {args = {"float32"}, dt = ALL, nograd = true})
op("item", {I({}, "f")}, {dt = NUMERIC, nograd = true})

-- shape ops
op("cat", {I({3, 2}), I({3, 4})}, {f = function(a, b) return lunar.cat({a, b}, 2) end,
                                   dt = ALL})
op("cat", {I({2, 3}), I({1, 3})}, {f = function(a, b) return lunar.cat({a, b, a}) end})
op("stack", {I({3, 2}), I({3, 2})}, {f = function(a, b) return lunar.stack({a, b}, 2) end,
                                     dt = ALL})
op("flip", {I({3, 4, 2})}, {args = {1, 3}, dt = ALL})
op("roll", {I({3, 4})}, {args = {{1, -3}, {1, 2}}, dt = ALL})
op("roll", {I({3, 4})}, {args = {2}})
op("tile", {I({2, 3})}, {args = {2, 1, 2}, dt = ALL})
op("repeat_tensor", {I({2, 3})}, {args = {2, 2}, dt = ALL})
op("tril", {I({4, 5})}, {dt = ALL})
op("triu", {I({4, 5})}, {args = {1}, dt = ALL})
op("tril", {I({2, 4, 5})}, {args = {-1}})
op("pad", {I({2, 3, 4})}, {args = {{1, 2, 0, 1}, {value = 1.5}}, dt = NUMERIC})
op("pad", {I({2, 3, 4})}, {args = {{2, 1, 1, 2}, {mode = "reflect"}}})
op("pad", {I({2, 3, 4})}, {args = {{2, 3, 0, 1}, {mode = "replicate"}}})

-- indexing
op("gather", {I({4, 5}), I({4, 3}, "idx", 5)}, {args = {}, dt = NUMERIC,
  f = function(x, i) return x:gather(2, i) end})
op("gather", {I({4, 5}), I({2, 5}, "idx", 4)},
   {f = function(x, i) return x:gather(1, i) end})
op("scatter", {I({4, 5}), I({4, 3}, "perm", 5), I({4, 3})}, {dt = NUMERIC,
  f = function(x, i, s) return x:scatter(2, i, s) end})
op("scatter_add", {I({4, 5}), I({4, 6}, "idx", 5), I({4, 6})}, {dt = NUMERIC,
  f = function(x, i, s) return x:scatter_add(2, i, s) end})
op("scatter_add", {I({4, 5}), I({7, 5}, "idx", 4), I({7, 5})},
   {f = function(x, i, s) return x:scatter_add(1, i, s) end})
op("scatter_", {I({4, 5}), I({4, 3}, "perm", 5), I({4, 3})}, {nograd = true,
  f = function(x, i, s) return x:scatter_(2, i, s) end})
op("scatter_add_", {I({4, 5}), I({4, 6}, "idx", 5), I({4, 6})}, {nograd = true,
  f = function(x, i, s) return x:scatter_add_(2, i, s) end})
op("index_select", {I({5, 4}), I({7}, "idx", 5)}, {dt = ALL,
  f = function(x, i) return x:index_select(1, i) end})
op("index_select", {I({5, 4}), I({3}, "idx", 4)},
   {f = function(x, i) return x:index_select(2, i) end})
op("index_add", {I({5, 4}), I({6}, "idx", 5), I({6, 4})}, {dt = NUMERIC,
  f = function(x, i, s) return x:index_add(1, i, s, {alpha = 2}) end})
op("index_add_", {I({5, 4}), I({6}, "idx", 4), I({5, 6})}, {nograd = true,
  f = function(x, i, s) return x:index_add_(2, i, s) end})
op("index_copy_", {I({5, 4}), I({3}, "perm", 5), I({3, 4})}, {nograd = true, dt = ALL,
  f = function(x, i, s) return x:index_copy_(1, i, s) end})
op("index_fill_", {I({5, 4}), I({2}, "perm", 4)}, {nograd = true, dt = NUMERIC,
  f = function(x, i) return x:index_fill_(2, i, -2) end})
op("masked_fill", {I({3, 4}), I({3, 4}, "mask")}, {args = {0.25}, dt = ALL})
op("masked_fill", {I({3, 4}), I({4}, "mask")}, {args = {-1}})
op("masked_fill_", {I({3, 4}), I({3, 4}, "mask")}, {args = {0.25}, nograd = true})
op("masked_select", {I({3, 4}), I({3, 4}, "mask")}, {dt = ALL})
op("masked_scatter_", {I({3, 4}), I({3, 4}, "mask"), I({12})}, {nograd = true, dt = NUMERIC,
  f = function(x, m, s) return x:masked_scatter_(m, s:narrow(1, 1, m:sum():item())) end})
op("nonzero", {I({3, 4}, "int")}, {nograd = true, dt = {"int64"}})
op("one_hot", {I({6}, "idx", 4)}, {args = {5}, nograd = true, dt = {"int64"}})
op("sort", {I({4, 6})}, {args = {2}, dt = NUMERIC})
op("sort", {I({4, 6}, "int")}, {args = {1, {descending = true}}, nograd = true,
                                dt = {"int64"}})
op("topk", {I({4, 6})}, {args = {3, 2}, dt = NUMERIC})
op("topk", {I({4, 6})}, {args = {2, 1, {largest = false}}})
op("unique", {I({12}, "int")}, {args = {{return_inverse = true, return_counts = true}},
                                nograd = true, dt = {"int64"}})
op("unique", {I({3, 4})}, {nograd = true, dt = {"float32"}})

-- neural-network ops (NCHW)
op("conv2d", {I({2, 3, 6, 5}), I({4, 3, 3, 3}), I({4})}, {args = {{padding = 1}}, tol = GEMM})
op("conv2d", {I({1, 4, 7, 6}), I({4, 2, 2, 3})},
   {args = {nil, {stride = 2, dilation = {1, 2}, groups = 2}}, tol = GEMM})
op("conv1d", {I({2, 3, 9}), I({4, 3, 3}), I({4})}, {args = {{stride = 2}}, tol = GEMM})
op("conv_transpose2d", {I({2, 3, 4, 5}), I({3, 2, 3, 3}), I({2})},
   {args = {{stride = 2, padding = 1, output_padding = 1}}, tol = GEMM})
op("max_pool2d", {I({2, 3, 6, 7})}, {args = {2}})
op("max_pool2d", {I({2, 3, 7, 6})},
   {args = {3, {stride = 2, padding = 1, ceil_mode = true, return_indices = true}}})
op("max_pool1d", {I({2, 3, 9})}, {args = {3, {stride = 2}}})
op("avg_pool2d", {I({2, 3, 6, 7})}, {args = {2}})
op("avg_pool2d", {I({2, 3, 7, 6})},
   {args = {3, {stride = 2, padding = 1, ceil_mode = true, count_include_pad = false}}})
op("avg_pool1d", {I({2, 3, 9})}, {args = {3, {stride = 2, padding = 1}}})
op("lp_pool2d", {I({2, 3, 6, 6}, "pos")}, {args = {2, 2}})
op("adaptive_avg_pool2d", {I({2, 3, 7, 5})}, {args = {{3, 2}}})
op("softmax", {I({3, 5})})
op("softmax", {I({3, 4, 5})}, {args = {2}})
op("log_softmax", {I({3, 5})})
op("log_softmax", {I({3, 4, 5})}, {args = {1}})
op("cross_entropy", {I({5, 4}), I({5}, "idx", 4)})
op("cross_entropy", {I({5, 4}), I({5}, "idx", 4), I({4}, "bufpos")},
   {f = function(x, t, w)
      return lunar.cross_entropy(x, t, {weight = w, label_smoothing = 0.1, reduction = "sum"})
    end})
op("cross_entropy", {I({3, 4, 2, 2}), I({3, 2, 2}, "idx", 4)},
   {args = {{reduction = "none"}}})
op("cross_entropy", {I({5, 4}), I({5, 4}, "unit")})
op("nll_loss", {I({5, 4}), I({5}, "idx", 4)})
op("nll_loss", {I({5, 4}), I({5}, "idx", 4), I({4}, "bufpos")},
   {f = function(x, t, w) return lunar.nll_loss(x, t, {weight = w, reduction = "none"}) end})
op("batch_norm", {I({4, 3, 2, 2}), I({3}, "buf"), I({3}, "bufpos"), I({3}), I({3})},
   {f = function(x, rm, rv, w, b)
      local y = lunar.batch_norm(x, rm, rv, w, b, {training = true, momentum = 0.2})
      return y, rm, rv
    end})
op("batch_norm", {I({5, 3}), I({3}, "buf"), I({3}, "bufpos"), I({3}), I({3})})
op("layer_norm", {I({3, 4, 5}), I({4, 5}), I({4, 5})},
   {f = function(x, w, b) return lunar.layer_norm(x, {4, 5}, w, b) end})
op("layer_norm", {I({3, 5})}, {args = {{5}}})
op("group_norm", {I({2, 4, 3, 2}), I({4}), I({4})},
   {f = function(x, w, b) return lunar.group_norm(x, 2, w, b) end})

-- edge values: infinities, signed zeros, huge and tiny numbers (forward only)
local EDGE = {nograd = true, nan_ok = true}
local function edge(o)
  local r = {}
  for k, v in pairs(EDGE) do r[k] = v end
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end
for _, name in ipairs({"neg", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt",
                       "square", "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil",
                       "round", "trunc", "reciprocal", "erf", "logical_not"}) do
  op(name, {I({4, 6}, "special")}, edge({id = "edge"}))
end
op("clamp", {I({4, 6}, "special")}, edge({id = "edge", args = {-1, 1}}))
for _, name in ipairs({"add", "sub", "mul", "div", "pow", "atan2", "maximum", "minimum", "fmod",
                       "remainder", "eq", "lt", "ge", "logical_and"}) do
  op(name, {I({4, 6}, "special"), I({4, 6}, "special")}, edge({id = "edge"}))
end
for _, name in ipairs({"sum", "prod", "amax", "amin", "logsumexp", "softmax", "log_softmax",
                       "cumsum", "argmax", "argmin", "all", "any"}) do
  op(name, {I({4, 6}, "special")}, edge({id = "edge", args = {2}}))
end
op("max", {I({4, 6}, "special")}, edge({id = "edge", args = {2}}))
op("sort", {I({4, 6}, "special")}, edge({id = "edge", args = {2}}))
op("topk", {I({4, 6}, "special")}, edge({id = "edge", args = {3, 2}}))
op("norm", {I({4, 6}, "special")}, edge({id = "edge", args = {2, 2}}))
op("softmax", {I({3, 4})}, {id = "masked rows", f = function(x)
  return x:masked_fill(lunar.tensor({{true, true, true, true}, {false, true, false, true},
                                     {false, false, false, false}}):to(x:device()),
                       -math.huge):softmax(2)
end, nan_ok = true})
op("logsumexp", {I({3, 4})}, {id = "-inf rows", f = function(x)
  return x:masked_fill(lunar.tensor({{true, true, true, true}, {false, true, false, true},
                                     {false, false, false, false}}):to(x:device()),
                       -math.huge):logsumexp(2)
end})

-- ties and zeros, where backward rules split or special-case (differentiable)
op("sqrt", {I({4, 6}, "tie")}, {id = "ties", nan_ok = true, -- 0 * inf at 0, as on the CPU
  f = function(x) return x:square():sqrt() end})
for _, name in ipairs({"abs", "relu", "sign", "amax", "amin", "max", "min", "prod",
                       "norm", "logsumexp", "std"}) do
  op(name, {I({4, 6}, "tie")}, {id = "ties"})
end
for _, name in ipairs({"amax", "amin", "max", "min", "prod", "cumprod", "cumsum", "sort",
                       "argmax", "softmax"}) do
  op(name, {I({4, 6}, "tie")}, {id = "ties", args = {2}, nograd = name == "argmax"})
end
op("norm", {I({4, 6}, "tie")}, {id = "ties", args = {"inf", 2}})
op("norm", {I({4, 6}, "tie")}, {id = "ties", args = {1, 1}})
op("topk", {I({4, 6}, "tie")}, {id = "ties", args = {3, 2}})
op("clamp", {I({4, 6}, "tie")}, {id = "ties", args = {0, 1}})
op("maximum", {I({4, 6}, "tie"), I({4, 6}, "tie")}, {id = "ties"})
op("minimum", {I({4, 6}, "tie"), I({4, 6}, "tie")}, {id = "ties"})
op("pow", {I({4, 6}, "tie"), I({4, 6}, "tie")}, {id = "ties", nan_ok = true,
  f = function(a, b) return a:abs():pow(b:abs()) end})
op("max_pool2d", {I({2, 2, 6, 6}, "tie")}, {id = "ties", args = {2}})
op("max_pool2d", {I({2, 2, 7, 7}, "tie")}, {id = "ties", args = {3, {stride = 2, padding = 1}}})
op("max_pool1d", {I({2, 2, 9}, "tie")}, {id = "ties", args = {3, {stride = 2, dilation = 2}}})
op("F.l1_loss", {I({4, 6}, "tie"), I({4, 6}, "tie")}, {id = "ties"})
op("F.smooth_l1_loss", {I({4, 6}, "tie"), I({4, 6}, "tie")}, {id = "ties",
                                                              args = {{beta = 0}}})
op("F.hardtanh", {I({4, 6}, "tie")}, {id = "ties"})
op("F.relu6", {I({4, 6}, "tie")}, {id = "ties"})
op("F.hinge_loss", {I({4, 6}, "tie"), I({4, 6}, "sign")}, {id = "ties"})

-- options that take other backward paths
op("cross_entropy", {I({6, 4}), I({6}, "idx", 4)},
   {id = "ignore_index", args = {{ignore_index = 2}}})
op("cross_entropy", {I({6, 4}), I({6, 4}, "unit"), I({4}, "bufpos")}, {id = "soft weighted",
  f = function(x, t, w)
    return lunar.cross_entropy(x, t, {weight = w, label_smoothing = 0.2, reduction = "none"})
  end})
op("nll_loss", {I({6, 4}), I({6}, "idx", 4)}, {id = "ignore_index", args = {{ignore_index = 3}}})
op("batch_norm", {I({4, 3, 2}), I({3}, "buf"), I({3}, "bufpos")}, {id = "eval, no affine"})
op("batch_norm", {I({4, 3, 5}), I({3}, "buf"), I({3}, "bufpos")}, {id = "training, no affine",
  f = function(x, rm, rv) return lunar.batch_norm(x, rm, rv, nil, nil, {training = true}) end})
op("layer_norm", {I({3, 4, 5})}, {id = "no affine", args = {{4, 5}, nil, nil, 1e-3}})
op("group_norm", {I({2, 6, 5})}, {id = "no affine", args = {3}})
op("conv_transpose2d", {I({2, 4, 5, 4}), I({4, 1, 2, 3})}, {id = "groups, dilation", tol = GEMM,
  args = {nil, {stride = {2, 1}, groups = 2, dilation = 2}}})
op("conv2d", {I({2, 3, 7, 6}), I({4, 3, 3, 3})}, {id = "same", tol = GEMM,
  args = {nil, {padding = "same", dilation = 2}}})
op("conv2d", {I({2, 4, 6, 6}), I({4, 1, 3, 3}), I({4})}, {id = "depthwise", tol = GEMM,
  args = {{groups = 4, stride = 2}}})
op("max_pool1d", {I({2, 3, 9})}, {id = "indices", args = {2, {return_indices = true}}})
op("avg_pool2d", {I({2, 3, 7, 6})}, {id = "pad counted", args = {{3, 2}, {padding = 1}}})
op("lp_pool2d", {I({2, 3, 6, 7}, "pos")}, {id = "p=3", args = {3, {2, 3}, {stride = 2}}})
op("adaptive_avg_pool2d", {I({2, 3, 5, 7})}, {id = "grow", args = {{6, 8}}})
op("index_add", {I({5, 4}), I({6}, "idx", 4), I({5, 6})}, {id = "dim 2",
  f = function(x, i, s) return x:index_add(2, i, s) end})
op("masked_fill", {I({3, 4}), I({3, 1}, "mask")}, {id = "broadcast mask", args = {2}})
op("where", {I({3, 1}, "mask"), I({4}), I({3, 4})}, {id = "broadcast cond"})
op("std", {I({4, 5})}, {id = "keepdim", args = {1, {unbiased = false, keepdim = true}}})
op("var", {I({6})}, {id = "1-d"})
op("dot", {I({6}), I({6})}, {id = "one strided", tol = GEMM,
  f = function(a, b) return a:dot(b:flip(1)) end})

-- sizes past one work-group (multi-stage reductions, scans and sorts) and empty tensors
op("sum", {I({3, 2500})}, {id = "long", args = {2}})
op("sum", {I({2500, 3})}, {id = "long", args = {1}})
op("mean", {I({70, 80})}, {id = "long"})
op("amax", {I({3, 2000})}, {id = "long", args = {2}})
op("argmax", {I({2000, 2})}, {id = "long", args = {1}, nograd = true})
op("logsumexp", {I({2, 1500})}, {id = "long", args = {2}})
op("var", {I({2, 1500})}, {id = "long", args = {2}})
op("softmax", {I({2, 1500})}, {id = "long"})
op("log_softmax", {I({1500, 2})}, {id = "long", args = {1}})
op("cumsum", {I({2, 1500})}, {id = "long", args = {2}})
op("cumprod", {I({1500, 2}, "unit")}, {id = "long", args = {1}, nograd = true})
op("sort", {I({2, 1200})}, {id = "long", args = {2}})
op("sort", {I({1200, 2}, "int")}, {id = "long", args = {1}, dt = {"int64"}, nograd = true})
op("topk", {I({2, 1200})}, {id = "long", args = {5, 2}})
op("cross_entropy", {I({40, 700}), I({40}, "idx", 700)}, {id = "long"})
op("mm", {I({70, 130}), I({130, 90})}, {id = "long", tol = GEMM})
op("max_pool2d", {I({2, 3, 32, 32})}, {id = "long", args = {2}})
op("conv2d", {I({2, 8, 16, 16}), I({6, 8, 5, 5}), I({6})}, {id = "long", tol = GEMM})
op("unique", {I({3000}, "int")}, {id = "long", nograd = true, dt = {"int64"},
                                  args = {{return_counts = true}}})
op("nonzero", {I({40, 60}, "int")}, {id = "long", nograd = true, dt = {"int64"}})
op("masked_select", {I({50, 60}), I({50, 60}, "mask")}, {id = "long"})
for _, name in ipairs({"sum", "mean", "amax", "prod", "softmax", "cumsum", "exp"}) do
  -- (the mean of nothing is NaN on both)
  op(name, {I({0, 4})}, {id = "empty", args = (name == "amax" or name == "cumsum") and {2} or nil,
                         nan_ok = name == "mean"})
end
for _, name in ipairs({"sum", "prod", "logsumexp", "softmax", "log_softmax", "cumsum",
                       "cumprod", "sort", "norm", "var"}) do
  op(name, {I({4, 0})}, {id = "empty", args = {2}, nan_ok = name == "var"})
end
op("amax", {I({4, 0})}, {id = "empty", args = {2}, error = true})
op("argmax", {I({4, 0})}, {id = "empty", args = {2}, error = true, nograd = true})
op("topk", {I({0, 5})}, {id = "empty", args = {2, 2}})
op("gather", {I({4, 5}), I({4, 0}, "idx", 5)}, {id = "empty",
  f = function(x, i) return x:gather(2, i) end})
op("index_select", {I({4, 5}), I({0}, "idx", 4)}, {id = "empty",
  f = function(x, i) return x:index_select(1, i) end})
op("scatter_add", {I({4, 5}), I({4, 0}, "idx", 5), I({4, 0})}, {id = "empty",
  f = function(x, i, s) return x:scatter_add(2, i, s) end})
op("index_add", {I({5, 4}), I({0}, "idx", 5), I({0, 4})}, {id = "empty",
  f = function(x, i, s) return x:index_add(1, i, s) end})
op("nonzero", {I({0, 3}, "int")}, {id = "empty", nograd = true, dt = {"int64"}})
op("unique", {I({0}, "int")}, {id = "empty", nograd = true, dt = {"int64"}})
op("masked_select", {I({0, 3}), I({0, 3}, "mask")}, {id = "empty"})
op("where", {I({0, 3}, "mask"), I({0, 3}), I({3})}, {id = "empty"})
op("clamp", {I({0, 3})}, {id = "empty", args = {-1, 1}})
op("pad", {I({0, 3})}, {id = "empty", args = {{1, 1}}})
op("one_hot", {I({0}, "idx", 3)}, {id = "empty", args = {3}, nograd = true, dt = {"int64"}})
op("conv2d", {I({0, 3, 5, 5}), I({2, 3, 3, 3}), I({2})}, {id = "empty batch"})
op("max_pool2d", {I({0, 3, 4, 4})}, {id = "empty batch", args = {2}})
op("avg_pool2d", {I({0, 3, 4, 4})}, {id = "empty batch", args = {2}})
op("cross_entropy", {I({0, 4}), I({0}, "idx", 4)}, {id = "empty", args = {{reduction = "sum"}}})
op("layer_norm", {I({0, 5})}, {id = "empty", args = {{5}}})
op("matmul", {I({2, 0, 3}), I({3, 4})}, {id = "empty batch rows"})
op("add", {I({0, 4}), I({4})}, {id = "empty"})
op("mm", {I({3, 0}), I({0, 4})}, {id = "empty"})
op("mm", {I({0, 5}), I({5, 4})}, {id = "empty"})
op("cat", {I({0, 3}), I({2, 3})}, {id = "empty", f = function(a, b) return lunar.cat({a, b}) end})
op("masked_select", {I({3, 4}), I({3, 4}, "mask")}, {id = "none selected",
  f = function(x, m) return x:masked_select(m:logical_and(m:logical_not())) end})
op("nonzero", {I({3, 4})}, {id = "none", nograd = true,
                            f = function(x) return (x * 0):nonzero() end})

-- 0-d tensors, mixed dtypes and broadcast (stride 0) views
op("add", {I({}), I({3, 4})}, {id = "0-d"})
op("sum", {I({})}, {id = "0-d"})
op("mul", {I({3, 4}), I({3, 4}, "int")}, {id = "float * int64"})
op("add", {I({3, 4}, "int"), I({3, 4}, "mask")}, {id = "int64 + bool", dt = {"int64"},
                                                   nograd = true})
op("div", {I({3, 4}, "int"), I({3, 4}, "int")}, {id = "int / int", dt = {"int64"}, nograd = true,
  f = function(a, b) return a / (b:abs() + 1) end})
op("mul", {I({4, 1}), I({3, 4})}, {id = "expanded", f = function(a, b)
  return a:expand(4, 3):t() * b
end})
op("sum", {I({3, 1})}, {id = "expanded", args = {2}, f = function(a, d)
  return a:expand(3, 5):sum(d)
end})
op("matmul", {I({1, 5}), I({5, 3})}, {id = "expanded", tol = GEMM, f = function(a, b)
  return a:expand(4, 5):matmul(b)
end})
op("clone", {I({4, 1})}, {id = "expanded", f = function(a) return a:expand(4, 3):clone() end})
op("contiguous", {I({2, 3, 4})}, {id = "permuted", dt = ALL,
  f = function(a) return a:permute(3, 1, 2):contiguous() end})

-- indexing syntax and operators (the metatable)
op("__index", {I({4, 5})}, {id = "t[i]", f = function(x) return x[2] end})
op("__index", {I({4, 5})}, {id = "t[{i, j}]", f = function(x) return x[{{2, 4}, 3}] end})
op("__index", {I({4, 5}), I({4, 5}, "mask")}, {id = "t[mask]", f = function(x, m) return x[m] end})
op("__index", {I({4, 5}), I({6}, "idx", 4)}, {id = "t[idx]", f = function(x, i) return x[i] end})
op("__newindex", {I({4, 5}), I({4})}, {id = "t[{{}, j}] = v", nograd = true,
  f = function(x, v) x[{{}, 2}] = v return x end})
op("__newindex", {I({4, 5}), I({4, 5}, "mask")}, {id = "t[mask] = 0", nograd = true,
  f = function(x, m) x[m] = 0 return x end})
op("__newindex", {I({4, 5}), I({2}, "perm", 4), I({2, 5})}, {id = "t[idx] = v", nograd = true,
  f = function(x, i, v) x[i] = v return x end})
op("operators", {I({3, 4}), I({3, 4}, "pos")}, {id = "+ - * / ^ % unm", f = function(a, b)
  return -a + b * 2 - a / b, b ^ 1.5, a % b, 1 - a, 2 / b
end})

-- random: the same seed draws the same numbers on both devices
op("bernoulli", {I({4, 5}, "unit")}, {seed = true, nograd = true})
op("bernoulli", {I({4, 5})}, {args = {0.3}, seed = true, nograd = true})
op("bernoulli_", {I({4, 5})}, {args = {0.3}, seed = true, nograd = true})
op("uniform_", {I({4, 5})}, {args = {-2, 3}, seed = true, nograd = true})
op("normal_", {I({4, 5})}, {args = {1, 2}, seed = true, nograd = true})
op("random_", {I({4, 5})}, {args = {0, 7}, seed = true, nograd = true,
                            dt = {"int32", "int64", "uint8"}})

-- the fused optimizer step: param, grad and the kind's state slots
for _, kind in ipairs({"sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam"}) do
  op("optim_step", {I({3, 4}, "buf"), I({3, 4}, "buf"), I({3, 4}, "bufpos"),
                    I({3, 4}, "bufpos"), I({3, 4}, "bufpos")},
     {id = kind, nograd = true, flat = true, f = function(p, g, s1, s2, s3)
        s1:add_(s3:square()) -- centered RMSprop's domain: mean square >= squared mean
        local mu = lunar.optim_step(kind, p, g, {s1, s2, s3},
          {lr = 0.1, weight_decay = 0.01, eps = 1e-8, momentum = 0.9, beta1 = 0.9,
           beta2 = 0.99, lr_decay = 0.01, momentum_decay = 0.004, step = 3, nesterov = true,
           amsgrad = true, centered = true})
        return p, s1, s2, s3, mu
      end})
end

-- nn.functional: activations and losses written in Lua over the ops above
for _, name in ipairs({"relu", "sigmoid", "tanh", "relu6", "selu", "silu", "swish", "mish",
                       "softsign", "hardsigmoid",
                       "step"}) do
  op("F." .. name, {I({3, 5})})
end
op("F.hardtanh", {I({3, 5})}, {args = {-0.5, 0.8}})
op("F.leaky_relu", {I({3, 5})}, {args = {0.2}})
op("F.prelu", {I({3, 4, 2}), I({4})})
op("F.elu", {I({3, 5})}, {args = {0.7}})
op("F.gelu", {I({3, 5})})
op("F.gelu", {I({3, 5})}, {args = {"tanh"}})
op("F.softplus", {I({3, 5})}, {args = {2, 1}})
op("F.mse_loss", {I({3, 4}), I({3, 4})})
op("F.l1_loss", {I({3, 4}), I({3, 4})}, {args = {{reduction = "sum"}}})
op("F.huber_loss", {I({3, 4}), I({3, 4})}, {args = {{delta = 0.5}}})
op("F.smooth_l1_loss", {I({3, 4}), I({3, 4})}, {args = {{beta = 0.5, reduction = "none"}}})
op("F.binary_cross_entropy", {I({3, 4}, "unit"), I({3, 4}, "unit"), I({4}, "bufpos")},
   {f = function(p, y, w) return F.binary_cross_entropy(p, y, {weight = w}) end})
op("F.binary_cross_entropy_with_logits", {I({3, 4}), I({3, 4}, "unit"), I({4}, "bufpos")},
   {f = function(x, y, pw) return F.binary_cross_entropy_with_logits(x, y, {pos_weight = pw}) end})
op("F.sigmoid_focal_loss", {I({3, 4}), I({3, 4}, "unit")})
op("F.dice_loss", {I({3, 4, 2}, "unit"), I({3, 4, 2}, "unit")})
op("F.hinge_loss", {I({3, 4}), I({3, 4}, "sign")})
op("F.kl_div", {I({3, 4}), I({3, 4}, "unit")}, {args = {{reduction = "batchmean"}}})
op("F.kl_div", {I({3, 4}), I({3, 4})}, {args = {{log_target = true}}})
op("F.multi_margin_loss", {I({5, 4}), I({5}, "idx", 4), I({4}, "bufpos")},
   {f = function(x, t, w) return F.multi_margin_loss(x, t, {p = 2, weight = w}) end})
op("F.margin_ranking_loss", {I({6}), I({6}), I({6}, "sign")}, {args = {{margin = 0.2}}})
op("F.cosine_embedding_loss", {I({4, 5}), I({4, 5}), I({4}, "sign")},
   {args = {{margin = 0.1}}})
op("F.triplet_margin_loss", {I({4, 5}), I({4, 5}), I({4, 5})},
   {args = {{swap = true, p = 1}}})

-- Not swept, with why: none of these computes on a device. (In-place forms are swept: the
-- entries with inplace = true generate them.)
local SKIP = {
  -- constructors: drawn and filled on the device, compared in CONSTRUCTORS below
  -- (tensor(t) is an entry above)
  -- devices, dtypes, threads, memory and the clock: no tensor computation
  device = true, devices = true, set_default_device = true, get_default_device = true,
  set_default_dtype = true, get_default_dtype = true, set_num_threads = true,
  get_num_threads = true, blas_core = true, memory_stats = true, empty_cache = true, clock = true,
  backend_kernels = true, is_tensor = true,
  -- metadata: read from the tensor header, no kernel
  size = true, dim = true, numel = true, dtype = true, stride = true, storage_offset = true,
  is_contiguous = true, is_same_storage = true,
  -- totable is what the comparison reads every result through
  totable = true,
  -- autograd machinery: every differentiable entry runs backward through it
  backward = true, requires_grad_ = true, register_hook = true, no_grad = true,
  enable_grad = true, set_grad_enabled = true, is_grad_enabled = true, autograd_grad = true,
  -- the host-side generator state (tests/random_spec.lua, opencl_random_spec.lua)
  Generator = true, manual_seed = true, initial_seed = true, get_rng_state = true,
  set_rng_state = true, philox = true,
  -- files: host I/O (tests/io_spec.lua)
  save = true, load = true, read_idx = true, read_csv = true,
  -- uninitialised contents: nothing to compare
  empty = true, empty_like = true,
}

-- constructors, called with {device = d}; the random ones reseeded the same on each device
local CONSTRUCTORS = {
  zeros = function(d) return lunar.zeros(3, 4, {device = d}) end,
  ones = function(d) return lunar.ones({2, 3}, {dtype = "int32", device = d}) end,
  full = function(d) return lunar.full({2, 3}, 1.5, {device = d}) end,
  arange = function(d) return lunar.arange(1, 4, 0.25, {dtype = "float64", device = d}) end,
  linspace = function(d) return lunar.linspace(-1, 2, 7, {device = d}) end,
  eye = function(d) return lunar.eye(3, 4, {dtype = "int64", device = d}) end,
  rand = function(d) return lunar.rand(3, 5, {device = d}) end,
  randn = function(d) return lunar.randn(4, 3, {dtype = "float64", device = d}) end,
  randint = function(d) return lunar.randint(-4, 9, {3, 4}, {device = d}) end,
  randperm = function(d) return lunar.randperm(9, {device = d}) end,
}
for _, name in ipairs({"zeros_like", "ones_like", "rand_like", "randn_like"}) do
  CONSTRUCTORS[name] = function(d)
    return lunar[name](lunar.empty(2, 3, {dtype = "float64", device = d}))
  end
end
CONSTRUCTORS.full_like = function(d) return lunar.full_like(lunar.empty(2, 3, {device = d}), 7) end
CONSTRUCTORS.randint_like = function(d)
  return lunar.randint_like(lunar.empty(2, 3, {device = d}), 0, 5)
end

-- The sweep ---------------------------------------------------------------------------------

local function callee(name)
  if name:sub(1, 2) == "F." then return assert(F[name:sub(3)], name) end
  return lunar[name] or Tensor[name] or error("no function " .. name)
end

-- the in-place entries generated from `inplace = true`: x:name_(rest...) without gradients,
-- writing into the (strided) first input
do
  local n = #E
  for i = 1, n do
    local e = E[i]
    if e.inplace then
      local name = e[1] .. "_"
      assert(Tensor[name], name)
      E[#E + 1] = {name, inputs = e.inputs, args = e.args, dt = e.dt, nograd = true,
                   tol = e.tol}
    end
  end
end

local function pack(...) return {n = select("#", ...), ...} end

-- flattens results (tables of tensors from split/chunk included) into one list
local function outputs(res)
  local out = {}
  for i = 1, res.n do
    local v = res[i]
    if type(v) == "table" and not lunar.is_tensor(v) then
      for _, t in ipairs(v) do out[#out + 1] = t end
    else
      out[#out + 1] = v
    end
  end
  return out
end

local function is_float(t) return lunar.is_tensor(t) and t:dtype():find("float") ~= nil end

-- runs entry e on device dev from the stored inputs; returns outputs and input gradients
local function run(e, _, stored, views, rs, dev)
  local leaves, args = {}, {}
  for i, s in ipairs(stored) do
    local l = dev == "cpu" and s:clone() or s:to(dev)
    if not e.nograd and GRAD_KINDS[e.inputs[i].kind] and is_float(l) then
      l:requires_grad_(true)
    end
    leaves[i] = l
    args[i] = views[i](l)
  end
  for i = 1, e.args and e.args.n or 0 do args[#stored + i] = e.args[i] end
  if e.seed then lunar.manual_seed(4321) end
  local fn = e.f or callee(e[1])
  local call_n = #stored + (e.args and e.args.n or 0)
  local out
  if e.nograd then
    out = outputs(pack(lunar.no_grad(function() return fn(table.unpack(args, 1, call_n)) end)))
  else
    out = outputs(pack(fn(table.unpack(args, 1, call_n))))
  end
  local grads = {}
  if not e.nograd then
    local loss
    for i, o in ipairs(out) do
      if is_float(o) and o.requires_grad then
        local r = rs[i] or lunar.randn(o:size(), {dtype = o:dtype()})
        rs[i] = r
        local term = (o * (dev == "cpu" and r or r:to(dev))):sum()
        loss = loss and loss + term or term
      end
    end
    if loss then
      loss:backward()
      for i, l in ipairs(leaves) do grads[i] = l.requires_grad and (l.grad or false) or nil end
    end
  end
  return out, grads
end

local function label(e, dt, layout)
  local shapes = {}
  for _, s in ipairs(e.inputs) do shapes[#shapes + 1] = "[" .. table.concat(s.shape, "x") .. "]" end
  local extra = {}
  for i = 1, e.args and e.args.n or 0 do
    local a = e.args[i]
    if type(a) == "table" then
      local parts = {}
      for k, v in pairs(a) do
        parts[#parts + 1] = type(k) == "number" and tostring(v) or (k .. "=" .. tostring(v))
      end
      table.sort(parts)
      a = "{" .. table.concat(parts, ",") .. "}"
    end
    extra[#extra + 1] = tostring(a)
  end
  return ("%s%s(%s%s) %s %s"):format(e[1], e.id and " " .. e.id or "", table.concat(shapes, ", "),
    #extra > 0 and "; " .. table.concat(extra, ", ") or "", dt, layout)
end

local function sweep(e, dt, layout, failures)
  lunar.manual_seed(1234)
  local logical, stored, views = {}, {}, {}
  for i, spec in ipairs(e.inputs) do
    logical[i] = make(spec, dt)
    if layout == "strided" then
      stored[i], views[i] = strided(logical[i])
    else
      stored[i], views[i] = logical[i], function(s) return s end
    end
  end
  local where = label(e, dt, layout)
  local rs = {}
  local ok, cout, cgrad = pcall(run, e, dt, stored, views, rs, "cpu")
  if e.error then -- bad input: a Lua error on both
    local gok, gerr = pcall(run, e, dt, stored, views, rs, DEV)
    if ok or gok then
      failures[#failures + 1] = ("%s: should fail on both, CPU %s, OpenCL %s"):format(where,
        ok and "did not" or "did", gok and "did not" or "did (" .. tostring(gerr) .. ")")
    end
    return
  end
  if not ok then
    failures[#failures + 1] = where .. ": the CPU run failed: " .. tostring(cout)
    return
  end
  local gout, ggrad
  ok, gout, ggrad = pcall(run, e, dt, stored, views, rs, DEV)
  if not ok then
    failures[#failures + 1] = where .. ": " .. tostring(gout)
    return
  end
  local tol = e.tol or 1e-7
  if #gout ~= #cout then
    failures[#failures + 1] = ("%s: %d outputs vs %d"):format(where, #gout, #cout)
    return
  end
  for i = 1, #cout do
    local err = compare(gout[i], cout[i], tol, e.nan_ok)
    if err then failures[#failures + 1] = ("%s: output %d: %s"):format(where, i, err) end
  end
  for i = 1, #e.inputs do
    local c, g = cgrad[i], ggrad[i]
    if c ~= nil or g ~= nil then
      local err
      if not c or not g then
        err = ("gradient %s on the CPU, %s on OpenCL"):format(c and "present" or "missing",
                                                              g and "present" or "missing")
      else
        err = compare(g, c, tol, e.nan_ok)
      end
      if err then failures[#failures + 1] = ("%s: grad of input %d: %s"):format(where, i, err) end
    end
  end
end

describe("opencl op sweep #opencl", function()
  it("every swept op matches the CPU, forward and backward, contiguous and strided", function()
    local failures, runs = {}, 0
    for _, e in ipairs(E) do
      for _, dt in ipairs(e.dt or FLOATS) do
        sweep(e, dt, "contiguous", failures)
        runs = runs + 1
        if not e.flat then
          sweep(e, dt, "strided", failures)
          runs = runs + 1
        end
      end
    end
    if #failures > 0 then io.stderr:write(table.concat(failures, "\n"), "\n") end
    assert(#failures == 0, ("%d of %d runs differ:\n  %s"):format(#failures, runs,
                                                               table.concat(failures, "\n  ")))
  end)

  it("constructors make the same tensors on the device", function()
    local failures = {}
    for name, make_on in pairs(CONSTRUCTORS) do
      lunar.manual_seed(77)
      local c = make_on("cpu")
      lunar.manual_seed(77)
      local ok, g = pcall(make_on, DEV)
      local err
      if ok then err = compare(g, c, 0) else err = tostring(g) end
      if err then failures[#failures + 1] = name .. ": " .. err end
    end
    table.sort(failures)
    assert(#failures == 0, table.concat(failures, "\n"))
  end)

  it("covers every public function and method, or skips it with a reason", function()
    local swept = {}
    for _, e in ipairs(E) do swept[e[1]] = true end
    for name in pairs(CONSTRUCTORS) do swept[name] = true end
    local missing, stale = {}, {}
    local function need(name)
      if not (swept[name] or SKIP[name]) then missing[#missing + 1] = name end
    end
    for k, v in pairs(lunar) do
      if type(v) == "function" then need(k) end
    end
    for k in pairs(Tensor) do need(k) end
    for k, v in pairs(F) do
      -- functional forms of C ops are the same functions as lunar's, swept above
      if lunar[k] ~= v then need("F." .. k) end
    end
    -- and every name written as `name` or `name(` in the op sections of docs/api.md
    local f = assert(io.open("docs/api.md", "r"))
    local doc = f:read("a")
    f:close()
    local sections = {"Creation", "Views", "Indexing", "Element%-wise", "Reductions",
                      "Linear algebra", "Neural%-network ops", "Randomness"}
    for _, sec in ipairs(sections) do
      local body = doc:match("\n## " .. sec .. "[^\n]*\n(.-)\n## ")
      assert(body, "docs/api.md has no section " .. sec)
      for name in body:gmatch("`([%a_][%w_]*)[`(]") do
        if lunar[name] or Tensor[name] then need(name) end
      end
    end
    for name in pairs(SKIP) do
      if swept[name] then stale[#stale + 1] = name .. " (swept)" end
      if not (lunar[name] or Tensor[name]) then
        stale[#stale + 1] = name .. " (no such function)"
      end
    end
    local seen, uniq = {}, {}
    for _, m in ipairs(missing) do
      if not seen[m] then seen[m], uniq[#uniq + 1] = true, m end
    end
    table.sort(uniq)
    table.sort(stale)
    assert(#uniq == 0, "neither swept nor skipped: " .. table.concat(uniq, ", "))
    assert(#stale == 0, "stale skip entries: " .. table.concat(stale, ", "))
  end)
end)
