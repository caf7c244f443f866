"""bench/startup.py - whole-process startup for `make bench`. Runs a command (no shell in
between) `runs` times after one untimed run that warms the page cache and prints the median
wall time as "<name>_ms"; then runs it 3 times under GNU time and prints the median peak
RSS as "<name>_rss_mb". RSS comes from GNU time, not from os.wait4 here: a child forked
from this Python process inherits Python's peak RSS, which exec does not reset.
Usage: startup.py NAME RUNS COMMAND [ARGS...]"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

name, runs, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def run(argv):
    r = subprocess.run(argv, stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"startup: {' '.join(argv)} failed")


def wall():
    t0 = time.perf_counter()
    run(cmd)
    return time.perf_counter() - t0


def rss_mb():
    with tempfile.NamedTemporaryFile("r") as f:
        run(["/usr/bin/time", "-o", f.name, "-f", "%M"] + cmd)
        return int(f.read().split()[-1]) / 1024  # %M is in KB


wall()
print(f"{name}_ms\t{statistics.median(wall() for _ in range(runs)) * 1e3:.6g}\tms")
print(f"{name}_rss_mb\t{statistics.median(rss_mb() for _ in range(3)):.6g}\tMB")
