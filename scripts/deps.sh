#!/bin/sh
# Checks for the Debian packages a make target needs; as root, installs the missing ones,
# otherwise prints the command that would. Usage: deps.sh build|opencl|lint|bench
# (opencl: the OpenCL backend's packages, checked by make unless OPENCL=0)
set -e
case "$1" in
  build) pkgs="gcc make lua5.4 liblua5.4-dev libopenblas-dev libopenblas0-openmp lua-busted zlib1g-dev" ;;
  opencl) pkgs="ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd" ;;
  lint)  pkgs="lua-check cppcheck clang-format" ;;
  bench) pkgs="python3-torch python3-numpy" ;;
  *) echo "deps.sh: unknown target '$1'" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q $missing >/dev/null
else
  echo "lunar needs these Debian packages: sudo apt-get install -y$missing" >&2
  exit 1
fi
