#!/bin/sh
# bench/run.sh - `make bench`: lunar and PyTorch (and raw OpenBLAS sgemm) on the same work,
# at 1 thread and at all cores, then `require "lunar"` against `import torch` as whole
# processes. Prints one table row per figure: lunar, the reference, their ratio, the goal
# (issue #2) and whether it is met. Raw outputs are kept in bench/out/.
# Then the training figures of issue #3 (bench/train.lua against bench/train_torch.py, the
# same start written by `train_torch.py prep`) at the same thread counts.
# Knobs: LUA (lua5.4), PYTHON (/usr/bin/python3), BENCH_THREADS ("1 <nproc>"),
# BENCH_STARTUP_RUNS (7), BENCH_TRAIN (1; 0 skips the training figures), BENCH_OPS (1; 0
# skips the op and startup figures, leaving the training ones).
# BENCH_THREADS=none skips the op and training figures (startup only). BENCH_OPENCL (1; 0
# skips the OpenCL figures), BENCH_OCL_STEPS (20) timed training steps on OpenCL,
# BENCH_TORCH_OMP (1; 0 skips PyTorch's training runs on Debian's OpenMP OpenBLAS),
# BENCH_RESNET (0; 1 adds ResNet-18 training on CIFAR-size batches: about 2 minutes per
# thread count on 2 cores, and 4 more on PoCL; needs python3-torchvision),
# BENCH_OCL_RESNET_STEPS (1) its timed steps on OpenCL, BENCH_INFER_RUNS (3) runs of each
# side's batch-1 figure (the medians count). OPENBLAS_CORETYPE, when set, forces
# OpenBLAS's kernel set on both sides (the last line names the set that ran).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
PYTHON=${PYTHON:-/usr/bin/python3}
: "${LUA_PATH_5_4:=$PWD/lua/?.lua;$PWD/lua/?/init.lua;;}"
: "${LUA_CPATH_5_4:=$PWD/?.so;;}"
export LUA_PATH_5_4 LUA_CPATH_5_4
OUT=bench/out
mkdir -p "$OUT"

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  sh scripts/deps.sh bench
fi
[ -f lunar/core.so ] || { echo "bench: build lunar first (make)" >&2; exit 1; }
# raw sgemm against the OpenBLAS build lunar links (the Makefile's choice: the OpenMP build
# when installed), so that the matmul figure measures lunar's overhead alone
omp_dir=/usr/lib/$(gcc -print-multiarch 2>/dev/null)/openblas-openmp
if [ -f "$omp_dir/libopenblas.so.0" ]; then
  SGEMM_BLAS="-L$omp_dir -l:libopenblas.so.0 -Wl,-rpath,$omp_dir"
else
  SGEMM_BLAS=-lopenblas
fi
if [ ! -x "$OUT/sgemm" ] || [ bench/sgemm.c -nt "$OUT/sgemm" ] || \
   [ "$(cat "$OUT/sgemm.blas" 2>/dev/null)" != "$SGEMM_BLAS" ]; then
  # shellcheck disable=SC2086
  gcc -O2 -fopenmp -o "$OUT/sgemm" bench/sgemm.c $SGEMM_BLAS
  echo "$SGEMM_BLAS" > "$OUT/sgemm.blas"
fi

ncpu=$(nproc)
# other work on the machine skews every figure: say how much there was
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
THREADS=${BENCH_THREADS:-"1 $ncpu"}
RUNS=${BENCH_STARTUP_RUNS:-7}
TRAIN=${BENCH_TRAIN:-1}
OPS=${BENCH_OPS:-1}
RESNET=${BENCH_RESNET:-0}
if [ "$RESNET" != 0 ] && ! "$PYTHON" -c 'import torchvision' 2>/dev/null; then
  echo "bench: BENCH_RESNET=1 needs torchvision (apt-get install python3-torchvision)" >&2
  exit 1
fi

# one "side threads name value" line per figure, in $OUT/results.tsv
: > "$OUT/results.tsv"
collect() { # side threads < "name value unit" lines
  awk -v side="$1" -v th="$2" -F '\t' '{ print side "\t" th "\t" $1 "\t" $2 }' >> "$OUT/results.tsv"
}
# each side writes its file first, so that a failing run stops the bench (set -e)
for t in $THREADS; do
  [ "$t" = none ] || [ "$OPS" = 0 ] && continue
  export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
  echo "bench: $t thread(s): lunar ..." >&2
  "$LUA" bench/ops.lua > "$OUT/lunar_$t.txt"
  echo "bench: $t thread(s): torch ..." >&2
  "$PYTHON" bench/ops_torch.py > "$OUT/torch_$t.txt"
  echo "bench: $t thread(s): sgemm ..." >&2
  "$OUT/sgemm" > "$OUT/sgemm_$t.txt"
  collect lunar "$t" < "$OUT/lunar_$t.txt"
  collect torch "$t" < "$OUT/torch_$t.txt"
  collect blas "$t" < "$OUT/sgemm_$t.txt"
done
# Training (issue #3): each figure in a process of its own, so that the MLP process's peak
# RSS is that of MLP training alone. lunar's runs first check that its first losses match
# PyTorch's from the same weights and data.
TORCH_OMP_BLAS=""
if [ "${BENCH_TORCH_OMP:-1}" != 0 ] && [ -f "$omp_dir/libopenblas.so.0" ]; then
  TORCH_OMP_BLAS=$omp_dir
fi
INFER_RUNS=${BENCH_INFER_RUNS:-3}
# median_runs PREFIX N: PREFIX.txt gets each figure's median over PREFIX.1.txt .. PREFIX.N.txt
# ("name value unit" lines; the runs are removed)
median_runs() {
  _files=""
  for _r in $(seq "$2"); do _files="$_files $1.$_r.txt"; done
  # shellcheck disable=SC2086
  awk -F '\t' '
    { if (!($1 in n)) order[++k] = $1; v[$1, ++n[$1]] = $2; unit[$1] = $3 }
    END {
      for (i = 1; i <= k; i++) {
        name = order[i]; c = n[name]
        for (a = 1; a <= c; a++) s[a] = v[name, a] + 0
        for (a = 2; a <= c; a++) for (b = a; b > 1 && s[b - 1] > s[b]; b--) {
          x = s[b]; s[b] = s[b - 1]; s[b - 1] = x
        }
        m = (c % 2) ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
        printf "%s\t%.6g\t%s\n", name, m, unit[name]
      }
    }' $_files > "$1.txt"
  # shellcheck disable=SC2086
  rm -f $_files
}
if [ "$TRAIN" != 0 ] && [ "$THREADS" != none ]; then
  "$PYTHON" bench/train_torch.py prep "$OUT/train_init.safetensors"
  for t in $THREADS; do
    [ "$t" = none ] && continue
    export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
    for m in mlp lenet infer; do
      # batch-1 latency swings with the VM's state from one process to the next: its figure
      # is each side's median over BENCH_INFER_RUNS runs, the sides taking turns
      runs=1
      [ "$m" = infer ] && runs=$INFER_RUNS
      for r in $(seq "$runs"); do
        echo "bench: $t thread(s): training, $m: lunar (run $r of $runs) ..." >&2
        "$LUA" bench/train.lua $m "$OUT/train_init.safetensors" > "$OUT/train_lunar_${m}_$t.$r.txt"
        echo "bench: $t thread(s): training, $m: torch (run $r of $runs) ..." >&2
        "$PYTHON" bench/train_torch.py $m "$OUT/train_init.safetensors" \
          > "$OUT/train_torch_${m}_$t.$r.txt"
        # lunar links Debian's OpenMP OpenBLAS (Makefile); PyTorch takes the system
        # alternative (the pthread build). PyTorch's best setting includes running it on the
        # OpenMP build too: those runs count as thread setting "<t>o".
        if [ -n "$TORCH_OMP_BLAS" ]; then
          echo "bench: $t thread(s): training, $m: torch on the OpenMP OpenBLAS (run $r) ..." >&2
          LD_LIBRARY_PATH="$TORCH_OMP_BLAS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            "$PYTHON" bench/train_torch.py $m "$OUT/train_init.safetensors" \
            > "$OUT/train_torchomp_${m}_$t.$r.txt"
        fi
      done
      for side in lunar torch torchomp; do
        [ "$side" = torchomp ] && [ -z "$TORCH_OMP_BLAS" ] && continue
        median_runs "$OUT/train_${side}_${m}_$t" "$runs"
      done
      # the op runs report "threads" already
      grep -v '^threads' "$OUT/train_lunar_${m}_$t.txt" | collect lunar "$t"
      grep -v '^threads' "$OUT/train_torch_${m}_$t.txt" | collect torch "$t"
      if [ -n "$TORCH_OMP_BLAS" ]; then
        grep -v '^threads' "$OUT/train_torchomp_${m}_$t.txt" | collect torch "${t}o"
      fi
    done
  done
  unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS
fi
# ResNet-18 (issue #4's GPU goal names it; here it is the CPU figure beside PyTorch's), with
# a start of its own: torchvision's initial weights are 45 MB
if [ "$TRAIN" != 0 ] && [ "$THREADS" != none ] && [ "$RESNET" != 0 ]; then
  "$PYTHON" bench/train_torch.py prep_resnet "$OUT/resnet_init.safetensors"
  for t in $THREADS; do
    [ "$t" = none ] && continue
    export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
    echo "bench: $t thread(s): training, resnet: lunar ..." >&2
    "$LUA" bench/train.lua resnet "$OUT/resnet_init.safetensors" > "$OUT/train_lunar_resnet_$t.txt"
    echo "bench: $t thread(s): training, resnet: torch ..." >&2
    "$PYTHON" bench/train_torch.py resnet "$OUT/resnet_init.safetensors" \
      > "$OUT/train_torch_resnet_$t.txt"
    collect lunar "$t" < "$OUT/train_lunar_resnet_$t.txt"
    collect torch "$t" < "$OUT/train_torch_resnet_$t.txt"
  done
  unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS
fi
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS

# Whole-process startup, all cores: `require "lunar"` against `import torch`, and the bare
# interpreters for scale (process creation alone is several ms on a loaded machine).
if [ "$OPS" != 0 ]; then
  echo "bench: startup ($RUNS runs each) ..." >&2
  "$PYTHON" bench/startup.py startup "$RUNS" "$LUA" -e 'require "lunar"' > "$OUT/startup_lunar.txt"
  "$PYTHON" bench/startup.py startup "$RUNS" "$PYTHON" -c 'import torch' > "$OUT/startup_torch.txt"
  "$PYTHON" bench/startup.py bare "$RUNS" "$LUA" -e '' >> "$OUT/startup_lunar.txt"
  "$PYTHON" bench/startup.py bare "$RUNS" "$PYTHON" -c '' >> "$OUT/startup_torch.txt"
  collect lunar "$ncpu" < "$OUT/startup_lunar.txt"
  collect torch "$ncpu" < "$OUT/startup_torch.txt"
fi

# OpenCL (issue #4): the op figures and the training figures on the first OpenCL device
# (PoCL here: a CPU device, so these prove the path, not speed), beside lunar's CPU figures
# at all cores. Training on the device runs BENCH_OCL_STEPS timed steps (PoCL is slow).
OCL=${BENCH_OPENCL:-1}
if [ "$OCL" != 0 ] && "$LUA" -e 'os.exit(#require("lunar").devices() > 0 and 0 or 1)'; then
  echo "bench: OpenCL ops ..." >&2
  "$LUA" bench/opencl.lua > "$OUT/opencl.txt"
  collect lunar "$ncpu" < "$OUT/opencl.txt"
  if [ "$TRAIN" != 0 ] && [ -f "$OUT/train_init.safetensors" ]; then
    for m in mlp lenet; do
      echo "bench: OpenCL training, $m ..." >&2
      BENCH_DEVICE=opencl BENCH_STEPS=${BENCH_OCL_STEPS:-20} \
        "$LUA" bench/train.lua $m "$OUT/train_init.safetensors" > "$OUT/train_opencl_$m.txt"
      collect lunar "$ncpu" < "$OUT/train_opencl_$m.txt"
    done
  fi
  if [ "$TRAIN" != 0 ] && [ "$RESNET" != 0 ] && [ -f "$OUT/resnet_init.safetensors" ]; then
    echo "bench: OpenCL training, resnet ..." >&2
    BENCH_DEVICE=opencl BENCH_STEPS=${BENCH_OCL_RESNET_STEPS:-1} \
      "$LUA" bench/train.lua resnet "$OUT/resnet_init.safetensors" > "$OUT/train_opencl_resnet.txt"
    collect lunar "$ncpu" < "$OUT/train_opencl_resnet.txt"
  fi
  ocl_device=$("$LUA" -e 'print(require("lunar").devices()[1].name)')
fi

# The table: figure, threads, lunar, reference, lunar/reference, goal, met.
echo
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d ' ' -f 1-3 /proc/loadavg); $ncpu cores"
echo
awk -F '\t' '
  { v[$1 "," $2 "," $3] = $4; if (!($2 in seen)) { seen[$2] = 1; ths[++nt] = $2 } }
  function row(label, th, a, b, unit, goalop, goal,    ratio, met, gs) {
    if (a == "" || b == "") return
    ratio = a / b
    if (goalop == "") { gs = "-"; met = "-" }
    else {
      gs = goalop " " goal "x"
      met = ((goalop == "<=" && ratio <= goal) || (goalop == ">=" && ratio >= goal)) ? "yes" : "no"
    }
    printf "| %-34s | %2s | %10.5g | %10.5g | %-7s | %6.3f | %-8s | %-3s |\n", label, th, a, b, unit, ratio, gs, met
  }
  # the thread count with the best value of key for side (dir 1: highest, -1: lowest)
  function best(side, key, dir,    i, t, b, bt) {
    bt = ""
    for (i = 1; i <= nt; i++) {
      t = ths[i]
      if (!((side "," t "," key) in v)) continue
      if (bt == "" || dir * v[side "," t "," key] > dir * b) { b = v[side "," t "," key]; bt = t }
    }
    return bt
  }
  function bestrow(label, key, dir, unit, goalop, goal,    bl, bt) {
    bl = best("lunar", key, dir); bt = best("torch", key, dir)
    if (bl == "" || bt == "") return
    row(label, "b", v["lunar," bl "," key], v["torch," bt "," key], unit, goalop, goal)
    bests = bests " " key " " bl "/" bt ";"; nbest++
  }
  END {
    printf "| %-34s | %2s | %10s | %10s | %-7s | %6s | %-8s | %-3s |\n", "figure", "th", "lunar", "reference", "unit", "ratio", "goal", "met"
    printf "|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", "----", "------------", "------------", "---------", "--------", "----------", "-----"
    for (i = 1; i <= nt; i++) {
      t = ths[i]
      L = "lunar," t ","; T = "torch," t ","; B = "blas," t ","
      if (!((L "add_tiny_us") in v)) continue
      row("tiny add (4 floats) vs torch", t, v[L "add_tiny_us"], v[T "add_tiny_us"], "us/op", "<=", 0.25)
      row("matmul 1024^3 vs raw cblas_sgemm", t, v[L "matmul_gflops"], v[B "sgemm_gflops"], "GFLOP/s", ">=", 0.97)
      row("matmul 1024^3 vs torch.matmul", t, v[L "matmul_gflops"], v[T "matmul_gflops"], "GFLOP/s", "", "")
      row("  the same, mean instead of median", t, v[L "matmul_mean_gflops"], v[T "matmul_mean_gflops"], "GFLOP/s", "", "")
      row("add 1e7 floats, a + b vs torch", t, v[L "add_gbps"], v[T "add_gbps"], "GB/s", "", "")
      row("  the same, mean instead of median", t, v[L "add_mean_gbps"], v[T "add_mean_gbps"], "GB/s", "", "")
      row("add_ 1e7 floats in place vs torch", t, v[L "add_inplace_gbps"], v[T "add_inplace_gbps"], "GB/s", "", "")
      row("sum 1e7 floats vs torch", t, v[L "sum_gbps"], v[T "sum_gbps"], "GB/s", "", "")
    }
    t = "'"$ncpu"'"; L = "lunar," t ","; T = "torch," t ","
    row("require \"lunar\" vs import torch", t, v[L "startup_ms"], v[T "startup_ms"], "ms", "<=", 0.02)
    row("  peak RSS of that process", t, v[L "startup_rss_mb"], v[T "startup_rss_mb"], "MB", "", "")
    row("  bare lua5.4 vs bare python3", t, v[L "bare_ms"], v[T "bare_ms"], "ms", "", "")
    row("  peak RSS of that process", t, v[L "bare_rss_mb"], v[T "bare_rss_mb"], "MB", "", "")
    # training (issue #3): each thread count side by side, then the goal on the
    # best thread count of each side ("b"; which ones: below the table)
    for (i = 1; i <= nt; i++) {
      t = ths[i]
      L = "lunar," t ","; T = "torch," t ","
      if (!((L "mlp_train_sps") in v)) continue
      row("MLP train, batch 64 vs torch", t, v[L "mlp_train_sps"], v[T "mlp_train_sps"], "smp/s", "", "")
      row("LeNet-5 train, batch 64 vs torch", t, v[L "lenet_train_sps"], v[T "lenet_train_sps"], "smp/s", "", "")
      row("ResNet-18 train, batch 32 vs torch", t, v[L "resnet_train_sps"], v[T "resnet_train_sps"], "img/s", "", "")
      row("MLP forward, batch 1 vs torch", t, v[L "mlp_infer_us"], v[T "mlp_infer_us"], "us", "", "")
      row("MLP train peak RSS vs torch", t, v[L "mlp_train_rss_mb"], v[T "mlp_train_rss_mb"], "MB", "", "")
      T = "torch," t "o,"
      row("MLP train vs torch, OpenMP BLAS", t, v[L "mlp_train_sps"], v[T "mlp_train_sps"], "smp/s", "", "")
      row("LeNet-5 train vs torch, OpenMP BLAS", t, v[L "lenet_train_sps"], v[T "lenet_train_sps"], "smp/s", "", "")
      row("MLP fwd b1 vs torch, OpenMP BLAS", t, v[L "mlp_infer_us"], v[T "mlp_infer_us"], "us", "", "")
    }
    if (best("lunar", "mlp_train_sps", 1) != "") {
      bestrow("MLP train, best vs torch best", "mlp_train_sps", 1, "smp/s", ">=", 2.0)
      bestrow("LeNet-5 train, best vs torch best", "lenet_train_sps", 1, "smp/s", ">=", 1.5)
      bestrow("ResNet-18 train, best vs torch", "resnet_train_sps", 1, "img/s", "", "")
      bestrow("MLP forward b1, best vs torch best", "mlp_infer_us", -1, "us", "<=", 0.1)
      bestrow("MLP train RSS, best vs torch best", "mlp_train_rss_mb", -1, "MB", "<=", 0.15)
    }
    print ""
    if (nbest > 0) printf "best thread counts (lunar/torch):%s\n", bests
    for (i = 1; i <= nt; i++) {
      t = ths[i]
      for (j = 1; j <= 3; j++) {
        k = (j == 1) ? "mlp" : (j == 2) ? "lenet" : "resnet"
        if (!(("lunar," t "," k "_check_rel") in v)) continue
        printf "check, %s thread(s): %s, first %d losses from the same weights and data: lunar vs torch max rel diff %s (<= 1e-4)\n", t, k, (k == "resnet") ? 3 : 5, v["lunar," t "," k "_check_rel"]
      }
    }
    # OpenCL beside the CPU (all cores): reference = lunar on the CPU
    t = "'"$ncpu"'"; L = "lunar," t ","
    if ((L "ocl_matmul_gflops") in v) {
      print ""
      print "OpenCL device: '"${ocl_device:-none}"'; reference = lunar on the CPU, " t " threads"
      print ""
      printf "| %-34s | %2s | %10s | %10s | %-7s | %6s | %-8s | %-3s |\n", "figure", "th", "opencl", "cpu", "unit", "ratio", "goal", "met"
      printf "|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", "----", "------------", "------------", "---------", "--------", "----------", "-----"
      row("OpenCL tiny add (4 floats)", t, v[L "ocl_add_tiny_us"], v[L "add_tiny_us"], "us/op", "", "")
      row("OpenCL matmul 1024^3", t, v[L "ocl_matmul_gflops"], v[L "matmul_gflops"], "GFLOP/s", "", "")
      row("OpenCL add 1e7 floats", t, v[L "ocl_add_gbps"], v[L "add_gbps"], "GB/s", "", "")
      row("OpenCL sum 1e7 floats", t, v[L "ocl_sum_gbps"], v[L "sum_gbps"], "GB/s", "", "")
      row("OpenCL MLP train, batch 64", t, v[L "ocl_mlp_train_sps"], v[L "mlp_train_sps"], "smp/s", "", "")
      row("OpenCL LeNet-5 train, batch 64", t, v[L "ocl_lenet_train_sps"], v[L "lenet_train_sps"], "smp/s", "", "")
      row("OpenCL ResNet-18 train, batch 32", t, v[L "ocl_resnet_train_sps"], v[L "resnet_train_sps"], "img/s", "", "")
      for (j = 1; j <= 3; j++) {
        k = (j == 1) ? "mlp" : (j == 2) ? "lenet" : "resnet"
        if ((L "ocl_" k "_check_rel") in v)
          printf "check, OpenCL: %s, first %d losses from the same weights and data: lunar on OpenCL vs torch max rel diff %s (<= 1e-4)\n", k, (k == "resnet") ? 3 : 5, v[L "ocl_" k "_check_rel"]
      }
      print ""
    }
    for (i = 1; i <= nt; i++) {
      t = ths[i]
      if (!(("lunar," t ",threads") in v)) continue
      printf "threads asked %s: lunar.get_num_threads() = %s, torch.get_num_threads() = %s, openblas_get_num_threads() = %s\n", t, v["lunar," t ",threads"], v["torch," t ",threads"], v["blas," t ",threads"]
    }
  }' "$OUT/results.tsv"
# OpenBLAS picks its kernels by CPU model unless OPENBLAS_CORETYPE names a set; lunar and
# PyTorch's OpenBLAS read the same variable, so both sides run the same set.
echo "OpenBLAS kernel set: $("$LUA" -e 'print(require("lunar").blas_core())') (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, the same for both sides)"
