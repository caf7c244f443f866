#!/bin/bash
# scripts/gpu_kit_check.sh - tries .devkit/ (scripts/gpu_kit.sh) here as a bare GPU machine
# would see it. In a private mount namespace (unshare) it hides this machine's lua5.4,
# busted, Lua modules, OpenMP OpenBLAS, CLBlast, readline and libyaml, empties
# /etc/OpenCL/vendors and puts PoCL where NVIDIA's driver library would be
# (/opt/nvidia-pose/lib64/libnvidia-opencl.so.1), so that bench/gpu.sh has to register the
# ICD itself. Then, with an emptied environment: every library of core.so, lua5.4 and
# busted's C modules must come from the kit, glibc or the base set an Ubuntu image has
# (libgcc_s, libstdc++, libgomp, zlib, libtinfo), and busted, lunar and OpenCL must work;
# last it runs the command given (default: bash bench/gpu.sh --quick, with OUT=/tmp/gpu_out).
# Needs root or unprivileged user namespaces. Usage: bash scripts/gpu_kit_check.sh [CMD...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .devkit/env ] || { echo "gpu_kit_check: no .devkit (run scripts/gpu_kit.sh)" >&2; exit 1; }
if [ "${1:-}" != --inside ]; then
  ns=(unshare -m)
  [ "$(id -u)" = 0 ] || ns=(unshare -r -m)
  exec "${ns[@]}" bash "$0" --inside "$@"
fi
shift
MA=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
L=/usr/lib/$MA

# hide: folders under an empty tmpfs, files (each real file once) under /dev/null. The
# OpenMP OpenBLAS that core.so links goes; the pthread one stays (Debian's numpy and torch
# need it and its libgfortran, and that torch links the OpenCL loader; the GPU image's pip
# wheels carry their own): the kit's copies come first for core.so (the report below).
for d in /usr/share/lua /usr/local/share/lua /usr/lib/"$MA"/lua /usr/local/lib/lua \
         "$L/openblas-openmp" /etc/OpenCL/vendors; do
  if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
done
for f in /usr/bin/lua5.4 /usr/bin/lua5.1 /usr/bin/busted "$L"/liblua5.* \
         "$L"/libclblast* \
         "$L"/libreadline* "$L"/libyaml*; do
  if [ -e "$f" ]; then readlink -f "$f"; fi
done | sort -u | while read -r real; do mount --bind /dev/null "$real"; done
# PoCL poses as NVIDIA's OpenCL library, known to no ICD file
mount -t tmpfs none /opt
mkdir -p /opt/nvidia-pose/lib64
ln -s "$(readlink -f "$L/libpocl.so.2")" /opt/nvidia-pose/lib64/libnvidia-opencl.so.1
# PoCL finds its drivers and headers relative to itself
ln -s "$L/pocl" /opt/nvidia-pose/lib64/pocl
mkdir -p /opt/share && ln -s /usr/share/pocl /opt/share/pocl

inner='
set -uo pipefail
. .devkit/env
echo "== kit $LUNAR_KIT; fallback libraries taken from it: $(ls "$LUNAR_KIT/need" | tr "\n" " ")"
echo "== where each library of core.so, lua5.4 and the Lua C modules comes from"
base="^(linux-vdso|ld-linux-x86-64|libc|libm|libmvec|libpthread|libdl|librt|libgcc_s"
base="$base|libstdc\+\+|libgomp|libz|libtinfo)\.so"
bad=0
objs="$LUNAR_KIT/lunar/core.so $LUNAR_KIT/bin/lua5.4 $(find "$LUNAR_KIT"/lib/lua -name "*.so")"
report=$(for o in $objs; do
  while read -r name arrow path rest; do
    [ "$arrow" = "=>" ] || { path=$name; name=$(basename "$name"); }
    case "$path" in
      "$LUNAR_KIT"/*) where=kit ;;
      not) where=MISSING ;;
      *) if [[ $name =~ $base ]]; then where=base; else where="SYSTEM (not in the kit)"; fi ;;
    esac
    printf "  %-28s %-26s %s\n" "${o#"$LUNAR_KIT"/}" "$name" "$where"
  done < <(ldd "$o" | sed "s/(0x[0-9a-f]*)//")
done)
echo "$report" | sort -u
if grep -q -E "MISSING|SYSTEM" <<< "$report"; then bad=1; fi
echo "== busted --version: $(busted --version)"
echo "== lunar on OpenCL (no ICD file: expect no device before gpu.sh registers one)"
lua5.4 -e "local l = require(\"lunar\"); print(#l.devices() .. \" device(s)\")
  print((l.ones({2, 2}) * 3):sum():item())"
OCL_ICD_VENDORS=$(mktemp -d)
echo /opt/nvidia-pose/lib64/libnvidia-opencl.so.1 > "$OCL_ICD_VENDORS/nvidia.icd"
export OCL_ICD_VENDORS
lua5.4 -e "local l = require(\"lunar\"); local d = l.devices()[1]; print(d.name, d.platform)
  print((l.ones({2, 2}, {device = \"opencl\"}) * 3):sum():item())" || bad=1
unset OCL_ICD_VENDORS
exit $bad
'
env -i PATH=/usr/bin:/bin HOME="$HOME" TERM=dumb bash -c "$inner" && echo "== the kit alone: ok" ||
  { echo "== the kit alone: FAILED"; exit 1; }
if [ $# -eq 0 ]; then set -- bash bench/gpu.sh --quick; fi
echo "== $*"
env -i PATH=/usr/bin:/bin HOME="$HOME" TERM=dumb OUT=/tmp/gpu_out "$@"
