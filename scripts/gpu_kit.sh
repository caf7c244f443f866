#!/bin/bash
# scripts/gpu_kit.sh - builds .devkit/, what a bare GPU machine (the device tool's Ubuntu
# image: Python and PyTorch, but no lua5.4, busted, OpenBLAS, CLBlast or OpenCL loader) needs
# to run lunar's specs and benchmarks (issue #4): bench/gpu.sh sources .devkit/env there.
#   .devkit/kit.tar.xz  bin/ (lua5.4, busted), lunar/core.so as built here, lib/ (the shared
#                       libraries core.so and lua5.4 need beyond glibc), lib/fallback/
#                       (libraries such an image normally has, used only where it lacks one),
#                       share/lua/5.4 and lib/lua/5.4 (busted and its Lua and C dependencies)
#   .devkit/env         sourced (bash): unpacks the tarball into /tmp once, sets PATH,
#                       LD_LIBRARY_PATH, LUA_PATH_5_4, LUA_CPATH_5_4
#   .devkit/MANIFEST    what went in: commit, hash of the C and kernel sources, files, sizes
# Debian 12 (x86-64) built it; it works on any x86-64 glibc >= 2.36 (Ubuntu 24.04 has 2.39).
# Rebuild it after any change to core/ or kernels/ (the kernels are compiled into core.so):
# bench/gpu.sh warns when the sources differ from the kit's. Usage: sh scripts/gpu_kit.sh
# (runs `make` first; NO_MAKE=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KIT=$ROOT/.devkit
MA=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)

[ "${NO_MAKE:-0}" = 1 ] || make -j2 >/dev/null
[ -f lunar/core.so ] || { echo "gpu_kit: no lunar/core.so (make failed?)" >&2; exit 1; }
if [ "$(cat lunar/.build 2>/dev/null)" != build/rel ]; then
  echo "gpu_kit: lunar/core.so is not the plain release build ($(cat lunar/.build))" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/fallback" "$stage/lunar" "$stage/share/lua/5.4" \
         "$stage/lib/lua/5.4"
cp -L /usr/bin/lua5.4 "$stage/bin/lua5.4"
cp lunar/core.so "$stage/lunar/core.so"

# busted: its runner script, and the Lua 5.4 files of lua-busted and of every lua-* package
# it depends on, directly or not (dpkg -L; symlinks into the 5.1 tree copied as files)
cp /usr/bin/busted "$stage/bin/busted.lua"
cat > "$stage/bin/busted" <<'EOF'
#!/bin/sh
# busted on the kit's lua5.4 (--ignore-lua: no re-exec through a `lua` on PATH)
d=$(dirname "$0")
exec "$d/lua5.4" "$d/busted.lua" --ignore-lua "$@"
EOF
chmod 755 "$stage/bin/busted"
pkgs="" todo="lua-busted"
while [ -n "$todo" ]; do
  set -- $todo
  p=$1; shift; todo="$*"
  case " $pkgs " in *" $p "*) continue ;; esac
  pkgs="$pkgs $p"
  for d in $(dpkg-query -W -f='${Depends}' "$p" | tr ',|' '\n\n' | sed 's/^ *//;s/[ (:].*//'); do
    case "$d" in lua-*) dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "ok installed" \
                          && todo="$todo $d" ;; esac
  done
done
luafiles=0
for p in $pkgs; do
  while read -r f; do
    case "$f" in
      /usr/share/lua/5.4/*) rel=share/lua/5.4/${f#/usr/share/lua/5.4/} ;;
      /usr/lib/$MA/lua/5.4/*) rel=lib/lua/5.4/${f#/usr/lib/"$MA"/lua/5.4/} ;;
      *) continue ;;
    esac
    [ -d "$f" ] && continue
    mkdir -p "$(dirname "$stage/$rel")"
    cp -L "$f" "$stage/$rel"
    luafiles=$((luafiles + 1))
  done < <(dpkg -L "$p")
done

# Shared libraries: everything ldd resolves for core.so, lua5.4 and the C modules, except
# glibc's own. The OpenCL/BLAS stack and Lua's library always come from the kit; the
# rest (libstdc++, libgomp, zlib, readline ...) only where the machine lacks them (env), so
# that PyTorch and the driver never get this machine's older libstdc++.
always='^lib(openblas|gfortran|quadmath|clblast|OpenCL|lua5\.4)'
glibc='^(linux-vdso|ld-linux|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil)\.so'
objs="$stage/lunar/core.so $stage/bin/lua5.4 $(find "$stage/lib/lua" -name '*.so')"
# shellcheck disable=SC2086
ldd $objs | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
while read -r name path; do
  if [[ $name =~ $glibc ]]; then continue; fi
  if [[ $name =~ $always ]]; then cp -L "$path" "$stage/lib/$name"
  else cp -L "$path" "$stage/lib/fallback/$name"; fi
done
if ldd $objs | grep -q "not found"; then
  echo "gpu_kit: unresolved libraries here:" >&2; ldd $objs | grep "not found" >&2; exit 1
fi
# liblua5.4.so: Debian's lua5.4 has the interpreter built in and the modules take its
# symbols, but a C module built elsewhere may link the library
cp -L "/usr/lib/$MA/liblua5.4.so.0" "$stage/lib/liblua5.4.so.0"
ln -s liblua5.4.so.0 "$stage/lib/liblua5.4.so"
if [ ! -f "$stage/lib/libopenblas.so.0" ]; then
  echo "gpu_kit: no OpenBLAS among core.so's libraries" >&2; exit 1
fi
[ -f "$stage/lib/libOpenCL.so.1" ] || { echo "gpu_kit: core.so built without OpenCL" >&2; exit 1; }

src_hash=$(bash "$ROOT/bench/gpu.sh" --source-hash)
{
  echo "built $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME") $(uname -m)"
  changed=$(git diff --quiet HEAD -- core kernels 2>/dev/null || echo " (core/kernels differ)")
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$changed"
  echo "sources $src_hash"
  echo "glibc $(ldd --version | head -1 | awk '{print $NF}')"
  echo "lua packages:$pkgs ($luafiles files)"
  echo "files:"
  (cd "$stage" && find . -type f -printf '%8k KiB  %P\n' | sort -k3)
} > "$stage/MANIFEST"

rm -rf "$KIT"
mkdir -p "$KIT"
XZ_OPT=-6e tar -C "$stage" -cJf "$KIT/kit.tar.xz" .
cp "$stage/MANIFEST" "$KIT/MANIFEST"
echo "id $(sha256sum "$KIT/kit.tar.xz" | cut -c1-12)" >> "$KIT/MANIFEST"

cat > "$KIT/env" <<'EOF'
# .devkit/env (scripts/gpu_kit.sh made it) - source it with bash from anywhere:
#   . .devkit/env
# Unpacks kit.tar.xz into /tmp/lunar-kit-<id> (once), then sets PATH (lua5.4, busted),
# LD_LIBRARY_PATH, LUA_PATH_5_4 and LUA_CPATH_5_4 for lunar in the checkout around .devkit.
# LUNAR_KIT is the unpacked kit, LUNAR_KIT_REPO the checkout, LUNAR_KIT_LD_SAVED the
# LD_LIBRARY_PATH from before (give it back to other programs, e.g. PyTorch).
_kd=$(cd "$(dirname "${BASH_SOURCE[0]:-.devkit/env}")" && pwd)
LUNAR_KIT_REPO=$(dirname "$_kd")
_kid=$(awk '$1 == "id" { print $2 }' "$_kd/MANIFEST")
LUNAR_KIT=${TMPDIR:-/tmp}/lunar-kit-$_kid
if [ ! -f "$LUNAR_KIT/.unpacked" ]; then
  rm -rf "$LUNAR_KIT" && mkdir -p "$LUNAR_KIT"
  if command -v xz >/dev/null 2>&1; then
    tar -C "$LUNAR_KIT" -xJf "$_kd/kit.tar.xz"
  else # no xz(1): Python's tarfile reads it
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$_kd/kit.tar.xz" "$LUNAR_KIT"
  fi && touch "$LUNAR_KIT/.unpacked"
fi
# the fallback libraries this machine lacks, as links in need/
mkdir -p "$LUNAR_KIT/need"
for _f in "$LUNAR_KIT"/lib/fallback/*; do
  _n=$(basename "$_f") _have=0
  for _d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /usr/lib; do
    [ -f "$_d/$_n" ] && { _have=1; break; }
  done
  if [ "$_have" = 0 ]; then ln -sf "$_f" "$LUNAR_KIT/need/$_n"; else rm -f "$LUNAR_KIT/need/$_n"; fi
done
LUNAR_KIT_LD_SAVED=${LD_LIBRARY_PATH-}
LD_LIBRARY_PATH=$LUNAR_KIT/lib:$LUNAR_KIT/need${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
LUA_PATH_5_4="$LUNAR_KIT_REPO/lua/?.lua;$LUNAR_KIT_REPO/lua/?/init.lua;./?.lua;./?/init.lua"
LUA_PATH_5_4="$LUA_PATH_5_4;$LUNAR_KIT/share/lua/5.4/?.lua;$LUNAR_KIT/share/lua/5.4/?/init.lua"
LUA_CPATH_5_4="$LUNAR_KIT/?.so;$LUNAR_KIT/lib/lua/5.4/?.so;./?.so"
PATH=$LUNAR_KIT/bin:$PATH
export LUNAR_KIT LUNAR_KIT_REPO LUNAR_KIT_LD_SAVED LD_LIBRARY_PATH LUA_PATH_5_4 LUA_CPATH_5_4 PATH
unset _kd _kid _f _n _d _have
EOF

size_k=$(du -sk "$KIT" | cut -f1)
echo "gpu_kit: $KIT: $((size_k / 1024)) MiB ($(du -sk "$stage" | cut -f1) KiB unpacked)"
echo "gpu_kit: lua packages:$pkgs"
echo "gpu_kit: libraries: $(cd "$stage/lib" && find . -maxdepth 1 ! -type d -printf '%P ')"
echo "gpu_kit: fallback libraries: $(cd "$stage/lib/fallback" && find . -type f -printf '%P ')"
