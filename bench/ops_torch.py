"""bench/ops_torch.py - PyTorch's side of `make bench`: the same work as bench/ops.lua,
printed as the same "name<TAB>value<TAB>unit" lines. Threads come from OMP_NUM_THREADS
(bench/run.sh sets it for both sides); we also pass it to torch.set_num_threads because
PyTorch may otherwise pick its own count."""
import os
import statistics
import time

import torch

clock = time.perf_counter
threads = os.environ.get("OMP_NUM_THREADS")
if threads:
    torch.set_num_threads(int(threads))


def timeit(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts), statistics.fmean(ts)


def report(name, value, unit):
    print(f"{name}\t{value:.6g}\t{unit}", flush=True)


report("threads", torch.get_num_threads(), "threads")

# per-op overhead of a 4-element add
n = 1_000_000
a, b = torch.full((4,), 1.5), torch.full((4,), 2.0)


def tiny(k):
    def loop():
        for _ in range(k):
            c = a + b
        return c
    return loop


tiny(n // 10)()  # warm-up
t, _ = timeit(tiny(n), 0, 5)
assert (a + b).sum().item() == 14
report("add_tiny_us", t / n * 1e6, "us/op")

# matmul 1024^3
n = 1024
a, b = torch.full((n, n), 0.5), torch.full((n, n), 0.25)
t, mean = timeit(lambda: torch.matmul(a, b), 20, 40)
assert torch.matmul(a, b)[0, 0].item() == n * 0.125
report("matmul_gflops", 2 * n**3 / t / 1e9, "GFLOP/s")
report("matmul_mean_gflops", 2 * n**3 / mean / 1e9, "GFLOP/s")

# memory-bound work on 10^7 floats
n = 10_000_000
a, b = torch.full((n,), 1.0), torch.full((n,), 2.0)
t, mean = timeit(lambda: a + b, 10, 15)
assert (a + b)[n - 1].item() == 3
report("add_gbps", 12 * n / t / 1e9, "GB/s")
report("add_mean_gbps", 12 * n / mean / 1e9, "GB/s")
t, _ = timeit(lambda: a.add_(b), 2, 10)
report("add_inplace_gbps", 12 * n / t / 1e9, "GB/s")
t, _ = timeit(lambda: b.sum(), 2, 10)
assert abs(b.sum().item() - 2 * n) <= 1e-3 * 2 * n
report("sum_gbps", 4 * n / t / 1e9, "GB/s")
