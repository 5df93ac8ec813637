#!/usr/bin/env bash
# scripts/install-deps.sh [--native] [--win64]   (default: both)
#
# Idempotent, and quiet when everything is already there.
#  --native: apt-get installs the Debian packages the native build, the tests
#            and later tooling need (only the missing ones).
#  --win64:  cross-builds LevelDB, msgpack-c, cmocka, PCRE2, zlib, ISA-L,
#            zstd, libarchive, nettle, nghttp2 and protobuf-c for Windows x64 from
#            Debian's own source packages (`apt-get source`, adding a deb-src
#            entry when the machine has none) with the mingw-w64 *posix*
#            compilers, into build/deps/win64 (static libs + headers).
#            Each library has a stamp file; only missing ones are rebuilt.
#
# Thread model: LevelDB's port layer uses std::mutex/std::condition_variable,
# which the win32-thread-model libstdc++ of mingw-w64 (Debian's default
# x86_64-w64-mingw32-g++) does not provide; so every dependency, and later the
# project itself, is built with x86_64-w64-mingw32-{gcc,g++}-posix
# (cmake/toolchain-mingw64.cmake), which pulls winpthread in statically.
#
# Environment: LCOW_DEPS_PREFIX overrides the install prefix, LCOW_JOBS the
# build parallelism (default 2). Logs of each build: build/deps/logs/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${LCOW_DEPS_PREFIX:-$root/build/deps/win64}
deps_dir=$root/build/deps
src_dir=$deps_dir/src
work_dir=$deps_dir/work
log_dir=$deps_dir/logs
jobs=${LCOW_JOBS:-2}
toolchain=$root/cmake/toolchain-mingw64.cmake

want_native=0
want_win64=0
for arg in "$@"; do
  case $arg in
    --native) want_native=1 ;;
    --win64) want_win64=1 ;;
    -h | --help)
      sed -n '2,21p' "$0"
      exit 0
      ;;
    *)
      echo "install-deps: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done
if [ $want_native = 0 ] && [ $want_win64 = 0 ]; then
  want_native=1
  want_win64=1
fi

say() { echo "install-deps: $*"; }
die() {
  echo "install-deps: error: $*" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*"
  fi
}

apt_quiet() {
  # apt prints progress and a harmless "unsandboxed as root" warning; keep the
  # log and show it only when the command fails.
  local log
  log=$(mktemp)
  if ! as_root env DEBIAN_FRONTEND=noninteractive "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# ---------------------------------------------------------------- apt packages
# Build: compilers, cmake, ninja, mingw (posix thread model), clang for fuzzing.
# Deps: native -dev packages, protoc-c (protobuf-c-compiler, run at build time
# in both builds), dpkg-dev for `apt-get source`, m4 for nettle's assembly,
# yasm for ISA-L's (its mingw build assembles with yasm, not nasm).
# Tests/tools: wine, qemu-img and e2fsprogs (external checkers of the VHDX and
# ext4 writers), python3-msgpack (independent client), zstd and gzip (layer
# blobs), veritysetup (cryptsetup-bin), stress-ng, msitools + wixl (MSI),
# containerd (ctr and the daemon: the gRPC endpoint as its proxy snapshotter;
# tests/containerd starts its own instance, never the system's),
# docker-registry, golang-go and golang-github-containerd-containerd-dev
# (tests/containerd/pull_unpack.sh: its own local registry and a small
# containerd client built offline from Debian's Go sources).
packages=(
  make git ca-certificates xz-utils
  gcc g++ cmake ninja-build clang libclang-rt-14-dev clang-format
  mingw-w64 gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64
  wine wine64
  libleveldb-dev libmsgpack-dev libcmocka-dev libpcre2-dev
  zlib1g-dev libisal-dev libzstd-dev libarchive-dev nettle-dev libnghttp2-dev
  libprotobuf-c-dev protobuf-c-compiler
  dpkg-dev m4 yasm
  qemu-utils e2fsprogs python3 python3-msgpack
  zstd gzip cryptsetup-bin stress-ng
  msitools wixl zip
  containerd docker-registry golang-go golang-github-containerd-containerd-dev
)

install_packages() {
  local missing=() p status
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case $status in
      *" installed") ;;
      *) missing+=("$p") ;;
    esac
  done
  [ ${#missing[@]} = 0 ] && return 0
  say "installing ${missing[*]}"
  apt_quiet apt-get update -q
  apt_quiet apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ------------------------------------------------------------- source packages
have_deb_src() {
  apt-cache showsrc leveldb 2>/dev/null | grep -q '^Package:'
}

add_deb_src() {
  have_deb_src && return 0
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    local out=/etc/apt/sources.list.d/lcowsnap-deb-src.sources
    say "adding deb-src entries ($out)"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      # Same URIs, suites and keys as the binary entries, Types: deb-src.
      sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
        as_root tee "$out" >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
      sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list |
        as_root tee /etc/apt/sources.list.d/lcowsnap-deb-src.list >/dev/null
    else
      die "no apt sources found to derive deb-src entries from"
    fi
  fi
  apt_quiet apt-get update -q
  have_deb_src || die "apt-cache showsrc leveldb still finds nothing after adding deb-src"
}

# fetch_source PKG: unpacks Debian's source package PKG (patches applied) under
# build/deps/src and prints the directory. Tries the candidate version first,
# then every other version apt knows (a mirror may lack the newest .dsc).
fetch_source() {
  local pkg=$1 dir v
  dir=$(find "$src_dir" -mindepth 1 -maxdepth 1 -type d -name "$pkg-[0-9]*" 2>/dev/null | sort | tail -1)
  if [ -n "$dir" ]; then
    echo "$dir"
    return 0
  fi
  mkdir -p "$src_dir"
  local log=$log_dir/$pkg-source.log
  mkdir -p "$log_dir"
  : >"$log"
  for v in "" $(apt-cache showsrc "$pkg" | sed -n 's/^Version: //p' | sort -rV); do
    if (cd "$src_dir" && as_root apt-get source -q "$pkg${v:+=$v}") >>"$log" 2>&1; then
      break
    fi
  done
  dir=$(find "$src_dir" -mindepth 1 -maxdepth 1 -type d -name "$pkg-[0-9]*" | sort | tail -1)
  if [ -z "$dir" ]; then
    cat "$log" >&2
    die "apt-get source $pkg failed (log: $log)"
  fi
  echo "$dir"
}

# run_build NAME SRC-PACKAGE[/SUBDIR] STEP ARGS...: the part every library
# build shares. Skips a stamped library; unpacks the source package; runs
# `STEP SRCDIR ARGS...` in a fresh work directory with its output in
# build/deps/logs/NAME.log (the last 40 lines are shown when it fails); then
# stamps it and says how long it took: wall clock, and the CPU seconds of the
# build (the figure that does not depend on what else runs on the machine).
run_build() {
  local name=$1 pkg=${2%%/*} sub=${2#"${2%%/*}"} step=$3
  shift 3
  local stamp=$prefix/.stamp-$name
  [ -f "$stamp" ] && return 0
  local src bdir log start
  start=$(date +%s)
  src=$(fetch_source "$pkg")$sub
  bdir=$work_dir/$name
  log=$log_dir/$name.log
  mkdir -p "$log_dir"
  rm -rf "$bdir"
  mkdir -p "$bdir"
  say "building $name for win64 from $(basename "${src%"$sub"}") (log: ${log#"$root"/})"
  if ! (cd "$bdir" && TIMEFORMAT='lcow-cpu: %3U %3S' && time "$step" "$src" "$@") >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "building $name failed; full log in $log"
  fi
  rm -rf "$bdir"
  touch "$stamp"
  say "built $name in $(($(date +%s) - start)) s ($(awk '/^lcow-cpu:/ { printf "%.0f", $2 + $3 }' "$log") s CPU)"
}

cmake_step() {
  local src=$1
  shift
  cmake -S "$src" -B . -G Ninja \
    -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
    -DLCOW_DEPS_PREFIX="$prefix" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DBUILD_SHARED_LIBS=OFF \
    "$@" &&
    cmake --build . -j "$jobs" &&
    cmake --install .
}

# Debian's patches can leave an autotools input newer than the output shipped
# in the tarball (nettle's fPIC.patch edits aclocal.m4, libarchive's edit
# Makefile.am), and make would then rerun autoheader/automake, which are not
# installed. The shipped configure and Makefile.in are the right ones.
no_regen=(AUTOCONF=: AUTOHEADER=: AUTOMAKE=: ACLOCAL=: AUTOM4TE=:)

autotools_step() {
  local src=$1
  shift
  "$src/configure" --host=x86_64-w64-mingw32 --prefix="$prefix" \
    --disable-shared --enable-static \
    CC=x86_64-w64-mingw32-gcc-posix CXX=x86_64-w64-mingw32-g++-posix CFLAGS=-O2 \
    "$@" &&
    make -j "$jobs" "${no_regen[@]}" &&
    make install "${no_regen[@]}"
}

# zlib's configure is its own script (CHOST, not --host); Debian's source
# drops win32/ (the DLL's resource file), so zlib's CMake cannot build at all.
# Only the static library is built.
zlib_step() {
  local src=$1
  CHOST=x86_64-w64-mingw32 CC=x86_64-w64-mingw32-gcc-posix CFLAGS=-O2 \
    "$src/configure" --static --prefix="$prefix" &&
    make -j "$jobs" libz.a &&
    make install
}

# ISA-L (Debian's libisal) ships no configure, only configure.ac, and autotools
# are not installed; its own Makefile.unx builds for mingw (arch=mingw: yasm,
# win64 objects) in the source tree, so the tree is copied here first. Only
# the gzip code (igzip) and the CRCs it needs: bin/isa-l.a, -O2, no -g (the
# Makefile drops -g for the library). yasm 1.3 knows no AVX-512, so those
# kernels are stubs; the SSE/AVX2 ones are in. have_threads=n skips a pthread
# probe that only its programs (not built) use. Installed as Debian lays it
# out: lib/libisal.a, include/isa-l/*.h, include/isa-l.h.
isal_step() {
  local src=$1 h
  cp -a "$src/." . &&
    make -f Makefile.unx -j "$jobs" arch=mingw units="igzip crc" have_threads=n \
      CC=x86_64-w64-mingw32-gcc-posix AR=x86_64-w64-mingw32-ar lib isa-l.h &&
    mkdir -p "$prefix/lib" "$prefix/include/isa-l" &&
    install -m 644 bin/isa-l.a "$prefix/lib/libisal.a" &&
    for h in igzip_lib.h crc.h crc64.h types.h; do
      install -m 644 "include/$h" "$prefix/include/isa-l/$h" || return 1
    done &&
    install -m 644 isa-l.h "$prefix/include/isa-l.h"
}

# build_lib NAME SRC-PACKAGE[/SUBDIR] CMAKE-ARGS...: configure, build and
# install one CMake library with the mingw toolchain; Release, static, no
# tests/examples. SUBDIR: where the CMakeLists.txt is, when not at the top.
build_lib() {
  local name=$1 pkg=$2
  shift 2
  run_build "$name" "$pkg" cmake_step "$@"
}

# build_autotools_lib NAME SRC-PACKAGE CONFIGURE-ARGS...: the same for an
# autotools library: configure --host=x86_64-w64-mingw32 with the posix
# compilers, --disable-shared --enable-static, -O2 without -g; make; make install.
build_autotools_lib() {
  local name=$1 pkg=$2
  shift 2
  run_build "$name" "$pkg" autotools_step "$@"
}

win64_libs=(leveldb msgpack-c cmocka pcre2 libarchive zlib isal zstd nettle nghttp2 protobuf-c)

build_win64() {
  local missing=0 l
  for l in "${win64_libs[@]}"; do
    [ -f "$prefix/.stamp-$l" ] || missing=1
  done
  [ $missing = 0 ] && return 0
  command -v x86_64-w64-mingw32-g++-posix >/dev/null ||
    die "x86_64-w64-mingw32-g++-posix missing (run with --native first)"
  command -v m4 >/dev/null || die "m4 missing (nettle's assembly needs it; run with --native first)"
  command -v yasm >/dev/null || die "yasm missing (ISA-L's assembly needs it; run with --native first)"
  add_deb_src
  mkdir -p "$prefix"
  # Two lanes. libarchive, the longest build by far (about 170 CPU seconds,
  # 130 files), alone in one, its make using every core: the other lane, one
  # core, is LevelDB and the rest, much of it single-threaded configure
  # checks, so libarchive soaks up the idle core. The libraries' headers and
  # archives do not overlap in the prefix, so the installs cannot collide.
  local lane_jobs=$(((jobs + 1) / 2))
  (
    # Tar reading is all lcowsnap needs: no compression filters (zlib and
    # zstd are used directly), no crypto/XML/iconv/ACL/xattr/regex, no
    # programs. Autotools rather than CMake: libarchive's CMake always builds
    # the DLL and the static library, compiling every source twice.
    build_autotools_lib libarchive libarchive \
      --disable-maintainer-mode --disable-bsdtar --disable-bsdcat --disable-bsdcpio \
      --disable-acl --disable-xattr --disable-posix-regex-lib \
      --without-zlib --without-bz2lib --without-libb2 --without-iconv --without-lz4 \
      --without-zstd --without-lzma --without-cng --without-openssl --without-xml2 \
      --without-expat --without-mbedtls --without-nettle
  ) &
  local archive_lane=$!
  (
    jobs=$lane_jobs
    build_lib leveldb leveldb \
      -DLEVELDB_BUILD_TESTS=OFF -DLEVELDB_BUILD_BENCHMARKS=OFF -DLEVELDB_INSTALL=ON
    build_lib msgpack-c msgpack-c \
      -DMSGPACK_ENABLE_SHARED=OFF -DMSGPACK_ENABLE_STATIC=ON \
      -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF
    # cmocka 1.1.5 always builds its DLL too; the project links libcmocka-static.a.
    build_lib cmocka cmocka \
      -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
    build_lib pcre2 pcre2 \
      -DBUILD_STATIC_LIBS=ON -DPCRE2_BUILD_PCRE2_8=ON -DPCRE2_BUILD_PCRE2_16=OFF \
      -DPCRE2_BUILD_PCRE2_32=OFF -DPCRE2_BUILD_PCRE2GREP=OFF -DPCRE2_BUILD_TESTS=OFF \
      -DPCRE2_SUPPORT_JIT=OFF -DPCRE2_SHOW_REPORT=OFF
    run_build zlib zlib zlib_step
    run_build isal libisal isal_step
    # No legacy (pre-v0.8, 2016) frame formats: a third less to compile.
    # Multithreaded compression stays on (zstd uses Win32 threads itself).
    build_lib zstd libzstd/build/cmake \
      -DZSTD_BUILD_PROGRAMS=OFF -DZSTD_BUILD_SHARED=OFF -DZSTD_BUILD_STATIC=ON \
      -DZSTD_BUILD_TESTS=OFF -DZSTD_BUILD_CONTRIB=OFF -DZSTD_LEGACY_SUPPORT=OFF
    # SHA-256 is what lcowsnap uses: no hogweed (public key, GMP), no manual.
    build_autotools_lib nettle nettle --disable-public-key --disable-documentation
    # HAVE_CLOCK_GETTIME=OFF: mingw has clock_gettime (winpthread) and
    # GetTickCount64, and with both nghttp2 1.52's nghttp2_time.c calls a
    # time_now_sec() it did not define (an undefined reference at link time).
    # GetTickCount64 is the Windows monotonic clock anyway.
    build_lib nghttp2 nghttp2 \
      -DENABLE_LIB_ONLY=ON -DENABLE_STATIC_LIB=ON -DENABLE_SHARED_LIB=OFF \
      -DENABLE_APP=OFF -DENABLE_HPACK_TOOLS=OFF -DENABLE_EXAMPLES=OFF -DENABLE_DOC=OFF \
      -DENABLE_FAILMALLOC=OFF -DWITH_LIBXML2=OFF -DWITH_JEMALLOC=OFF \
      -DHAVE_CLOCK_GETTIME=OFF
    # The runtime library only; protoc-c is Debian's protobuf-c-compiler.
    build_lib protobuf-c protobuf-c/build-cmake -DBUILD_PROTOC=OFF -DBUILD_TESTS=OFF
    # On a Unix host its install also makes a protoc-c -> protoc-gen-c link,
    # dangling without the compiler: remove it.
    if [ -L "$prefix/bin/protoc-c" ] && [ ! -e "$prefix/bin/protoc-c" ]; then
      rm -f "$prefix/bin/protoc-c"
    fi
  ) &
  local other_lane=$!
  local rc=0
  wait $archive_lane || rc=1
  wait $other_lane || rc=1
  [ $rc = 0 ] || die "the win64 dependency build failed (logs in $log_dir)"
  say "win64 libraries ready in ${prefix#"$root"/}"
}

# Several engineers (and CI steps) may run this at once: one at a time.
mkdir -p "$deps_dir"
exec 9>"$deps_dir/.lock"
flock 9

[ $want_native = 1 ] && install_packages
[ $want_win64 = 1 ] && build_win64
exit 0
