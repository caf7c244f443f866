#!/bin/bash
# bench/gpu.sh - issue #4 on a machine with an NVIDIA GPU: lunar's cross-backend specs and
# the training figures on its OpenCL device, beside PyTorch on CUDA, in one command that
# fits the device tool's 10-minute call. Needs .devkit/ (scripts/gpu_kit.sh: lua5.4, busted,
# core.so and the libraries a bare image lacks) and python3 with torch.
#   bash bench/gpu.sh           everything (about 3-6 minutes on an H100, GPU_BUDGET caps it)
#   bash bench/gpu.sh --quick   a smoke run: environment, devices, tests/opencl_spec.lua,
#                               MLP training on both sides with few steps (about a minute)
#   bash bench/gpu.sh --source-hash   the hash of core/ and kernels/ the kit is checked by
# Writes into $OUT (bench/out/gpu when unset), at most 8 files:
#   log.txt      everything printed, with the phases' progress
#   env.txt      machine, driver, OpenCL ICD files and libraries, what was done about them,
#                lunar.devices(), PyTorch's view of the GPU, the kit's manifest
#   specs.txt    tests/run.sh's output for the OpenCL specs
#   results.tsv  side, figure, value, unit, the raw name (every figure of every run)
#   summary.md   the table for bench/RESULTS.md, what ran and what did not
# Each phase runs under its own `timeout`, and all of them within GPU_BUDGET seconds (570),
# so that one hang cannot eat the call. Knobs: GPU_BUDGET, GPU_STEPS (timed training steps,
# 200; --quick 20), GPU_RESNET_STEPS (20), GPU_CPU_REF (1; 0 skips the CPU reference runs),
# PYTHON (python3: the one with torch).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

source_hash() {
  find core kernels -type f \( -name '*.c' -o -name '*.h' -o -name '*.cl' \) | LC_ALL=C sort |
    xargs cat | sha256sum | cut -c1-16
}
case "${1:-}" in
  --source-hash) source_hash; exit 0 ;;
  --quick) QUICK=1 ;;
  "") QUICK=0 ;;
  *) echo "usage: bash bench/gpu.sh [--quick | --source-hash]" >&2; exit 2 ;;
esac

OUT=${OUT:-$PWD/bench/out/gpu}
mkdir -p "$OUT"
rm -f "$OUT"/{log.txt,env.txt,specs.txt,results.tsv,summary.md}
WORK=$(mktemp -d)
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!
finish() {
  rm -rf "$WORK"
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null
}
trap finish EXIT
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-python3}
export PYTHON

T0=$SECONDS
BUDGET=${GPU_BUDGET:-570}
if [ "$QUICK" = 1 ]; then STEPS=${GPU_STEPS:-20}; else STEPS=${GPU_STEPS:-200}; fi
RESNET_STEPS=${GPU_RESNET_STEPS:-20}
NCPU=$(nproc)
export WORK NCPU
: > "$WORK/phases"
note() { echo "$*" >> "$WORK/phases"; echo "gpu.sh: $*" >&2; }

# run_phase NAME LIMIT CMD...: CMD under timeout LIMIT (less if the budget is short; skipped
# when it is spent); the outcome goes to the phase list. Returns CMD's status.
run_phase() {
  local name=$1 limit=$2 left rc t
  shift 2
  left=$((BUDGET - (SECONDS - T0) - 15))
  if [ "$left" -lt 10 ]; then note "$name: skipped (out of time)"; return 99; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $(date +%T) +$((SECONDS - T0))s $name (limit ${limit}s)" >&2
  t=$SECONDS
  # a shell function runs in a bash of its own, which timeout can stop
  if declare -F "$1" >/dev/null; then export -f "${1?}"; set -- bash -c '"$@"' bash "$@"; fi
  timeout -k 5 "$limit" "$@"
  rc=$?
  case $rc in
    0) note "$name: ok ($((SECONDS - t)) s)" ;;
    124 | 137) note "$name: TIMED OUT after ${limit} s" ;;
    *) note "$name: FAILED (exit $rc, $((SECONDS - t)) s)" ;;
  esac
  return "$rc"
}

# collect SIDE < "name value unit" lines: into results.tsv, the name without its device
# prefix (train.lua's "ocl_", train_torch.py's "cuda_") so that sides line up
collect() {
  awk -v side="$1" -F '\t' 'NF >= 2 && $2 ~ /^[-+0-9.eEinfa]+$/ {
    n = $1; sub(/^(ocl|cuda)_/, "", n); print side "\t" n "\t" $2 "\t" $3 "\t" $1 }' \
    >> "$OUT/results.tsv"
}

MODE=full
[ "$QUICK" = 1 ] && MODE=quick
echo "gpu.sh: $MODE run, budget ${BUDGET}s, $NCPU cores, out $OUT"

# --- the kit
if [ ! -f .devkit/env ]; then
  note "kit: no .devkit/env (run scripts/gpu_kit.sh and carry .devkit)"
  exit 1
fi
# shellcheck source=/dev/null
. .devkit/env
kit_hash=$(awk '$1 == "sources" { print $2 }' .devkit/MANIFEST)
if [ "$kit_hash" != "$(source_hash)" ]; then
  note "kit: WARNING: core/ or kernels/ differ from the sources of the kit's core.so" \
    "(rebuild it: bash scripts/gpu_kit.sh)"
fi

# --- the environment, and NVIDIA's OpenCL ICD
env_phase() {
  echo "# date"; date -u +%FT%TZ
  echo "# uname"; uname -a
  echo "# os"; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")
  echo "# cpu"; echo "$NCPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "# nvidia-smi"; timeout 30 nvidia-smi 2>&1 || echo "(nvidia-smi: exit $?)"
  timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    > "$WORK/gpu" 2>/dev/null || :
  echo "# /etc/OpenCL/vendors"
  ls -la /etc/OpenCL/vendors 2>&1
  for f in /etc/OpenCL/vendors/*.icd; do [ -f "$f" ] && echo "$f: $(cat "$f")"; done
  echo "# ldconfig -p | grep -i -E 'opencl|libcuda'"
  ldconfig -p 2>/dev/null | grep -i -E 'opencl|libcuda' || echo "(none)"
  echo "# OpenCL and CUDA driver libraries on disk"
  timeout 60 find /usr/local/nvidia /usr/lib /usr/lib64 /lib /lib64 /usr/local/cuda* \
    /usr/share/nvidia /opt /etc \( -name 'libnvidia-opencl*' -o -name 'libcuda.so*' \
    -o -name 'libOpenCL.so*' -o -name '*.icd' \) 2>/dev/null | sort -u | tee "$WORK/libs"
  if ! grep -q libnvidia-opencl "$WORK/libs"; then
    echo "# libnvidia-opencl not under those paths: the whole file system"
    timeout 40 find / \( -path /proc -o -path /sys -o -path "$LUNAR_KIT" \) -prune -o \
      -name 'libnvidia-opencl*' -print 2>/dev/null | tee -a "$WORK/libs"
  fi
  echo "# PyTorch"
  LD_LIBRARY_PATH=$LUNAR_KIT_LD_SAVED timeout 60 "$PYTHON" -c '
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), "sms", p.multi_processor_count,
          "mem_gib", round(p.total_memory / 2**30, 1))' 2>&1 | tee "$WORK/torch"
  echo "# kit"
  echo "LUNAR_KIT=$LUNAR_KIT"; command -v lua5.4 busted; lua5.4 -v
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "fallback libraries taken from the kit: $(ls "$LUNAR_KIT/need" | tr '\n' ' ')"
  echo "# ldd core.so"; ldd "$LUNAR_KIT/lunar/core.so"
  sed -n '1,5p;$p' .devkit/MANIFEST
}
run_phase environment 150 env_phase > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

nv_lib=$(grep -m1 'libnvidia-opencl\.so\.1$' "$WORK/libs" 2>/dev/null ||
         grep -m1 'libnvidia-opencl\.so' "$WORK/libs" 2>/dev/null || :)
if grep -qs -i nvidia /etc/OpenCL/vendors/*.icd; then
  ICD="NVIDIA's ICD is registered in /etc/OpenCL/vendors"
elif [ -n "$nv_lib" ]; then
  # the driver is there, its ICD file is not (containers mount the library only):
  # register it in a vendors folder of our own, beside the machine's other ICDs
  mkdir -p "$WORK/vendors"
  cp /etc/OpenCL/vendors/*.icd "$WORK/vendors/" 2>/dev/null
  echo "$nv_lib" > "$WORK/vendors/nvidia.icd"
  export OCL_ICD_VENDORS=$WORK/vendors
  # its own dependencies (libcuda, the PTX JIT) sit beside it
  LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$nv_lib")
  export LD_LIBRARY_PATH
  ICD="no ICD file named NVIDIA's $nv_lib: gpu.sh registered it (OCL_ICD_VENDORS)"
else
  ICD="no libnvidia-opencl on this machine: no NVIDIA OpenCL"
fi
note "OpenCL ICD: $ICD"
echo "# OpenCL ICD: $ICD" >> "$OUT/env.txt"

# --- lunar's devices
devices_lua='
local ds = require("lunar").devices()
print(#ds .. " OpenCL device(s)")
for _, d in ipairs(ds) do
  print(("%s: %s | %s | type %s | driver %s | fp64 %s | %.1f GiB"):format(d.device, d.name,
    d.platform, d.type, d.driver, tostring(d.fp64), d.global_mem / 2^30))
end'
run_phase devices 60 lua5.4 -e "$devices_lua" > "$WORK/devices" 2>&1
{ echo "# lunar.devices()"; cat "$WORK/devices"; } | tee -a "$OUT/env.txt"
dev_re='^opencl:1: \([^|]*\) | \([^|]*\) | type \([^ ]*\) | driver \([^|]*\) |.*'
OCL_DEVICE=$(sed -n "s/$dev_re/\\1 (\\2, \\3, driver \\4)/p" "$WORK/devices")
if [ -z "$OCL_DEVICE" ]; then
  note "devices: lunar sees no OpenCL device: the OpenCL specs skip, no OpenCL figures"
  # ocl-icd's own account of what it tried (when built with debug output)
  { echo "# OCL_ICD_DEBUG=15"
    OCL_ICD_DEBUG=15 timeout 30 lua5.4 -e "$devices_lua" 2>&1 | head -60; } >> "$OUT/env.txt"
else
  note "devices: lunar's opencl:1 is $OCL_DEVICE"
fi

# --- the cross-backend specs
if [ "$QUICK" = 1 ]; then
  specs="tests/opencl_spec.lua tests/device_spec.lua"
else
  specs=$(echo tests/opencl_spec.lua tests/opencl_*_spec.lua tests/device_spec.lua)
fi
spec_limit=240
[ "$QUICK" = 1 ] && spec_limit=120
# shellcheck disable=SC2086 # a list of file names without spaces
run_phase "specs ($(echo "$specs" | wc -w) files)" "$spec_limit" \
  sh tests/run.sh $specs 2>&1 | tee "$OUT/specs.txt"
SPEC_LINE=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$OUT/specs.txt" | tail -n 1)
: "${SPEC_LINE:=no result (see specs.txt)}"

# --- the training figures
TORCH_SIDE=torch_cpu
TORCH_ENV=()
if grep -q BENCH_TORCH_DEVICE bench/train_torch.py && grep -q "available True" "$WORK/torch"; then
  TORCH_SIDE=torch_cuda
  TORCH_ENV=(BENCH_TORCH_DEVICE=cuda)
elif grep -q "available True" "$WORK/torch"; then
  note "torch: bench/train_torch.py has no BENCH_TORCH_DEVICE: PyTorch on the CPU ($NCPU threads)"
  TORCH_ENV=(OMP_NUM_THREADS="$NCPU")
else
  note "torch: no CUDA device for PyTorch: it runs on the CPU ($NCPU threads)"
  TORCH_ENV=(OMP_NUM_THREADS="$NCPU")
fi
# PyTorch gets the library path from before the kit (never the kit's libstdc++ or BLAS)
py=(env LD_LIBRARY_PATH="$LUNAR_KIT_LD_SAVED")

models="mlp lenet"
[ "$QUICK" = 1 ] && models=mlp
if [ "$QUICK" = 0 ] && grep -q resnet bench/train.lua; then models="$models resnet"; fi
init=$WORK/train_init.safetensors
run_phase "prep" 90 "${py[@]}" "$PYTHON" bench/train_torch.py prep "$init"
declare -A INIT=([mlp]=$init [lenet]=$init [resnet]=$init)
if [[ $models == *resnet* ]] && grep -q prep_resnet bench/train_torch.py; then
  INIT[resnet]=$WORK/resnet_init.safetensors
  run_phase "prep resnet" 120 "${py[@]}" "$PYTHON" bench/train_torch.py prep_resnet \
    "${INIT[resnet]}" || models=${models% resnet}
fi

# run_side SIDE LIMIT CMD...: a training run whose figures go to results.tsv
run_side() {
  local side=$1 limit=$2
  shift 2
  run_phase "$side ${*: -2:1}" "$limit" "$@" | tee "$WORK/cur"
  collect "$side" < "$WORK/cur"
}
if [ -f "$init" ]; then
  for m in $models; do
    st=$STEPS lim=120
    [ "$m" = resnet ] && st=$RESNET_STEPS lim=180
    if [ -n "$OCL_DEVICE" ]; then
      run_side lunar_opencl "$lim" env BENCH_DEVICE=opencl BENCH_STEPS="$st" \
        lua5.4 bench/train.lua "$m" "${INIT[$m]}"
    fi
    run_side "$TORCH_SIDE" "$lim" "${py[@]}" "${TORCH_ENV[@]}" BENCH_STEPS="$st" \
      "$PYTHON" bench/train_torch.py "$m" "${INIT[$m]}"
  done
fi

if [ "$QUICK" = 0 ]; then
  # the op figures on the OpenCL device (matmul 1024^3, add, sum, the tiny add's overhead)
  if [ -n "$OCL_DEVICE" ]; then
    run_phase "lunar_opencl ops" 120 lua5.4 bench/opencl.lua | tee "$WORK/cur"
    collect lunar_opencl < "$WORK/cur"
  fi
  # the CPU beside them: lunar and PyTorch on all cores, MLP and LeNet-5
  if [ "${GPU_CPU_REF:-1}" != 0 ] && [ -f "$init" ]; then
    for m in mlp lenet; do
      run_side lunar_cpu 90 env OMP_NUM_THREADS="$NCPU" OPENBLAS_NUM_THREADS="$NCPU" \
        lua5.4 bench/train.lua "$m" "$init"
      run_side torch_cpu_ref 90 "${py[@]}" OMP_NUM_THREADS="$NCPU" \
        "$PYTHON" bench/train_torch.py "$m" "$init"
    done
  fi
fi

# --- the summary
gpu=$(cat "$WORK/gpu" 2>/dev/null)
torch_line=$(grep -m1 '^torch' "$WORK/torch" 2>/dev/null)
torch_dev=$(sed -n 's/^device \(.*\) sms.*/\1/p' "$WORK/torch" 2>/dev/null)
[ "$TORCH_SIDE" = torch_cuda ] && torch_col="PyTorch CUDA" || torch_col="PyTorch CPU"
{
  echo "### GPU run, $(date -u +%F) (bench/gpu.sh$([ "$QUICK" = 1 ] && echo ' --quick'))"
  echo
  echo "- GPU: ${gpu:-none seen by nvidia-smi}; $NCPU CPU cores"
  echo "- lunar's OpenCL device: ${OCL_DEVICE:-none}"
  echo "- OpenCL ICD: $ICD"
  echo "- PyTorch: ${torch_line:-not found}${torch_dev:+ on $torch_dev}; its column: $torch_col"
  echo "- specs ($(echo "$specs" | wc -w) files: $(echo "$specs" | sed 's|tests/||g')): $SPEC_LINE"
  echo "- timed training steps: $STEPS (ResNet $RESNET_STEPS), the median of 3 runs"
  echo
  awk -F '\t' -v tcol="$torch_col" -v ts="$TORCH_SIDE" -v ncpu="$NCPU" '
    { if (!(($2) in seen)) { seen[$2] = 1; order[++n] = $2; unit[$2] = $4 }
      v[$1 "," $2] = $3 }
    function label(k) {
      if (k == "mlp_train_sps") return "MLP train, batch 64"
      if (k == "lenet_train_sps") return "LeNet-5 train, batch 64"
      if (k == "resnet_train_sps") return "ResNet-18 train, batch 32"
      if (k ~ /_check_rel$/) {
        sub(/_check_rel$/, "", k)
        return k " first losses vs PyTorch CPU (max rel)"
      }
      if (k == "matmul_gflops") return "matmul 1024^3"
      if (k == "add_gbps") return "add 1e7 floats"
      if (k == "sum_gbps") return "sum 1e7 floats"
      if (k == "add_tiny_us") return "tiny add (4 floats)"
      return k
    }
    function cell(side, k) { return ((side "," k) in v) ? sprintf("%.4g", v[side "," k]) : "-" }
    END {
      printf "| figure | unit | lunar OpenCL | %s | ratio | lunar CPU (%s th) |", tcol, ncpu
      printf " PyTorch CPU (%s th) |\n", ncpu
      print "|---|---|---|---|---|---|---|"
      for (i = 1; i <= n; i++) {
        k = order[i]
        if (k == "threads" || k ~ /_rss_mb$/) continue
        a = cell("lunar_opencl", k); b = cell(ts, k)
        r = "-"
        if (a != "-" && b != "-" && k !~ /_check_rel$/ && b + 0 != 0) r = sprintf("%.3f", a / b)
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", label(k), unit[k], a, b, r,
          cell("lunar_cpu", k), cell("torch_cpu_ref", k)
      }
    }' "$OUT/results.tsv" 2>/dev/null
  echo
  echo "ratio = lunar OpenCL / $torch_col (for times in us, lower is better)."
  echo
  echo "Phases:"
  sed 's/^/- /' "$WORK/phases"
} > "$OUT/summary.md"
echo
cat "$OUT/summary.md"
echo "gpu.sh: done in $((SECONDS - T0)) s"
