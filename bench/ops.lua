--- bench/ops.lua - lunar's side of `make bench`: times each workload and prints one
-- "name<TAB>value<TAB>unit" line per figure. bench/ops_torch.py does the same work in
-- PyTorch and prints the same names; bench/run.sh puts the two side by side.
-- Threads come from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (the same for both sides);
-- we also pass the count to lunar.set_num_threads so both runtimes are told the same thing.
local lunar = require("lunar")

local clock = lunar.clock
local threads = tonumber(os.getenv("OMP_NUM_THREADS") or "")
if threads then lunar.set_num_threads(threads) end

local function median(xs)
    table.sort(xs)
    local n = #xs
    if n % 2 == 1 then return xs[(n + 1) // 2] end
    return (xs[n // 2] + xs[n // 2 + 1]) / 2
end

-- Runs fn once per repeat after `warmup` untimed calls; the median and the mean wall time
-- in seconds. The mean keeps the repeats that paid for a garbage collection or for fresh
-- pages, which the median leaves out.
local function time(fn, warmup, repeats)
    for _ = 1, warmup do fn() end
    local ts, sum = {}, 0
    for r = 1, repeats do
        local t0 = clock()
        fn()
        ts[r] = clock() - t0
        sum = sum + ts[r]
    end
    return median(ts), sum / repeats
end

local function report(name, value, unit)
    io.write(string.format("%s\t%.6g\t%s\n", name, value, unit))
    io.flush()
end

report("threads", lunar.get_num_threads(), "threads")

-- Per-op overhead: the cost of one small op is the binding, the checks, the allocation
-- of the result and the kernel call, not arithmetic.
do
    local n = 1000000
    local a, b = lunar.full({4}, 1.5), lunar.full({4}, 2.0)
    local c
    local function loop()
        for _ = 1, n do c = a + b end
    end
    for _ = 1, n // 10 do c = a + b end -- warm-up
    local t = time(loop, 0, 5)
    assert(c:sum():item() == 14, "tiny add gave a wrong result")
    report("add_tiny_us", t / n * 1e6, "us/op")
end

-- Matmul 1024^3: 2 n^3 flops per product.
do
    local n = 1024
    local a, b = lunar.full({n, n}, 0.5), lunar.full({n, n}, 0.25)
    local c
    -- 40 repeats of 4 MB results pass the collector's threshold more than once, so the mean
    -- holds collections and the results that landed on fresh (not yet cached) memory
    local t, mean = time(function() c = a:matmul(b) end, 20, 40)
    assert(c:sum():item() == n ^ 3 * 0.125, "matmul gave a wrong result")
    report("matmul_gflops", 2 * n ^ 3 / t / 1e9, "GFLOP/s")
    report("matmul_mean_gflops", 2 * n ^ 3 / mean / 1e9, "GFLOP/s")
end

-- Memory-bound element-wise work on 10^7 floats: bytes moved per second. a + b reads two
-- arrays and writes one (12 bytes/element); sum reads one (4 bytes/element).
do
    local n = 10000000
    local a, b = lunar.full({n}, 1.0), lunar.full({n}, 2.0)
    local c
    local t, mean = time(function() c = a + b end, 10, 15)
    assert(math.abs(c:sum():item() - 3 * n) <= 1e-3 * 3 * n, "add gave a wrong result")
    report("add_gbps", 12 * n / t / 1e9, "GB/s")
    report("add_mean_gbps", 12 * n / mean / 1e9, "GB/s")

    t = time(function() a:add_(b) end, 2, 10)
    report("add_inplace_gbps", 12 * n / t / 1e9, "GB/s")

    local s
    t = time(function() s = b:sum() end, 2, 10)
    assert(math.abs(s:item() - 2 * n) <= 1e-3 * 2 * n, "sum gave a wrong result")
    report("sum_gbps", 4 * n / t / 1e9, "GB/s")
end
