--- bench/opencl.lua - the OpenCL side of `make bench` (issue #4): the op figures of
-- bench/ops.lua on the first OpenCL device, printed as "name<TAB>value<TAB>unit" lines with
-- names prefixed "ocl_", and the device's name. bench/run.sh puts them beside lunar's CPU
-- figures (there is no OpenCL PyTorch to compare with). Every result is read back and
-- checked, and the read is the sync point that ends each timing: a queue that has not run
-- cannot look fast.
local lunar = require("lunar")

local clock = lunar.clock
local DEV = "opencl:1"

local function median(xs)
    table.sort(xs)
    local n = #xs
    if n % 2 == 1 then return xs[(n + 1) // 2] end
    return (xs[n // 2] + xs[n // 2 + 1]) / 2
end

-- seconds per call of fn (which ends with a host read), median of `repeats`
local function time(fn, warmup, repeats)
    for _ = 1, warmup do fn() end
    local ts = {}
    for r = 1, repeats do
        local t0 = clock()
        fn()
        ts[r] = clock() - t0
    end
    return median(ts)
end

local function report(name, value, unit)
    io.write(string.format("%s\t%.6g\t%s\n", name, value, unit))
    io.flush()
end

if #lunar.devices() == 0 then
    io.stderr:write("bench/opencl.lua: no OpenCL device: nothing to measure\n")
    os.exit(0)
end
io.stderr:write("bench/opencl.lua: device " .. lunar.devices()[1].name .. "\n")

-- per-op overhead: queueing one small kernel, synchronised once per 1000 ops
do
    local a, b = lunar.full({4}, 1.5, {device = DEV}), lunar.full({4}, 2.0, {device = DEV})
    local n, c = 1000, nil
    local t = time(function()
        for _ = 1, n do c = a + b end
        c:sum():item()
    end, 2, 5)
    assert(c:sum():item() == 14, "tiny add gave a wrong result")
    report("ocl_add_tiny_us", t / n * 1e6, "us/op")
end

do
    local n = 1024
    local a = lunar.full({n, n}, 0.5, {device = DEV})
    local b = lunar.full({n, n}, 0.25, {device = DEV})
    local s
    local t = time(function() s = a:matmul(b):sum():item() end, 2, 5)
    assert(s == n ^ 3 * 0.125, "matmul gave a wrong result")
    report("ocl_matmul_gflops", 2 * n ^ 3 / t / 1e9, "GFLOP/s")
end

do
    local n = 10000000
    local a = lunar.full({n}, 1.0, {device = DEV})
    local b = lunar.full({n}, 2.0, {device = DEV})
    local one = lunar.ones(1, {device = DEV})
    -- the read of one element syncs without timing a whole reduction
    local t = time(function() local c = a + b; (c:narrow(1, 1, 1) + one):item() end, 2, 7)
    report("ocl_add_gbps", 12 * n / t / 1e9, "GB/s")
    local s
    t = time(function() s = b:sum():item() end, 2, 7)
    assert(math.abs(s - 2 * n) <= 1e-3 * 2 * n, "sum gave a wrong result")
    report("ocl_sum_gbps", 4 * n / t / 1e9, "GB/s")
end
