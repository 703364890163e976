#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_install: what `cmake --install` puts in a prefix is enough to build and run an app.
#
# The build tree is installed into a fresh prefix (cmake --install --prefix). Checked: the
# unit's ExecStart names that prefix's r2p2d, its ExecReload that prefix's r2p2ctl; r2p2.pc gives the prefix's include and lib
# directories; client/examples/hello.c, as installed under share/doc, compiles with nothing
# but `pkg-config --cflags --libs r2p2` (and the sanitizers when the build tree has them),
# and with CMake's find_package(r2p2) through the installed CMakeLists.txt beside it; through
# a pair of daemons its call to echo.svc comes back; every installed binary of the prefix answers `--version`.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

it_init
command -v cmake >/dev/null || it_skip "cmake is missing"
command -v pkg-config >/dev/null || it_skip "pkg-config is missing"
CC=$(command -v clang || command -v cc) || it_skip "no C compiler (clang or cc)"
PREFIX=$IT_TMP/prefix
BUILD=$(cd "$R2P2_BUILD" && pwd)
[ -f "$BUILD/cmake_install.cmake" ] || it_skip "$BUILD is not a cmake build tree"

it_check "cmake --install $BUILD --prefix $PREFIX" \
	cmake --install "$BUILD" --prefix "$PREFIX" >"$IT_TMP/install.log"
unit=$PREFIX/lib/systemd/system/r2p2d.service
it_check "the unit is installed" test -f "$unit"
it_check "its ExecStart names the prefix's r2p2d" \
	grep -qx "ExecStart=$PREFIX/bin/r2p2d --config /etc/r2p2/r2p2d.conf" "$unit"
it_check "its ExecReload runs the prefix's r2p2ctl reload" \
	grep -qx "ExecReload=$PREFIX/bin/r2p2ctl reload" "$unit"
version=$(sed -n 's/^#define R2P2_VERSION "\(.*\)"$/\1/p' "$R2P2_SRC/include/r2p2/r2p2.h")
for b in r2p2d r2p2-router r2p2ctl r2p2-bench r2p2-echo-server r2p2-echo-client; do
	# libr2p2 of the prefix, which is not on the loader's path
	out=$(LD_LIBRARY_PATH=$PREFIX/lib "$PREFIX/bin/$b" --version 2>&1 | head -n 1 || true)
	it_check "its $b answers --version: '$out'" test "$out" = "$b $version"
done
pc=$(find "$PREFIX" -name r2p2.pc | head -n 1)
it_check "r2p2.pc is installed ($pc)" test -n "$pc"
export PKG_CONFIG_PATH=${pc%/*}
flags=$(pkg-config --cflags --libs r2p2)
it_log "  pkg-config --cflags --libs r2p2: $flags"
it_check "r2p2.pc points into the prefix" grep -q -- "-I$PREFIX/include" <<<"$flags"
libdir=$(pkg-config --variable=libdir r2p2)
san=()
if grep -q '^R2P2_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	san=(-fsanitize=address,undefined) # libr2p2 of this tree is built with them
fi
hello=$PREFIX/share/doc/r2p2d/examples/hello.c
it_check "the example is installed ($hello)" test -f "$hello"
# shellcheck disable=SC2086 # pkg-config's flags are words
it_check "hello.c builds from the prefix alone" \
	"$CC" "${san[@]}" -Wall -Werror "$hello" $flags -o "$IT_TMP/hello"

for page in man8/r2p2d.8 man8/r2p2ctl.8 man5/r2p2d.conf.5 man3/libr2p2.3; do
	it_check "man page $page is installed" test -f "$PREFIX/share/man/$page"
	if command -v man >/dev/null; then
		warn=$(man --warnings -l "$PREFIX/share/man/$page" 2>&1 >/dev/null || true)
		it_check "man renders $page without a warning${warn:+ ($warn)}" test -z "$warn"
	fi
done
examples=$PREFIX/share/doc/r2p2d/examples
it_check "its CMakeLists.txt is installed beside it" test -f "$examples/CMakeLists.txt"
cm_flags=()
[ "${#san[@]}" -eq 0 ] || cm_flags=(-DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="${san[*]}"
	-DCMAKE_EXE_LINKER_FLAGS="${san[*]}")
# shellcheck disable=SC2317 # run through it_check
build_with_cmake() {
	cmake -S "$examples" -B "$IT_TMP/cmake-app" -DCMAKE_PREFIX_PATH="$PREFIX" "${cm_flags[@]}" \
		>"$IT_TMP/cmake-app.log" 2>&1 && cmake --build "$IT_TMP/cmake-app" >>"$IT_TMP/cmake-app.log" 2>&1
}
it_check "and builds it with find_package(r2p2) from the prefix" build_with_cmake

it_setup_pair
it_start_pair_services 4
out=$(ip netns exec "$IT_NS_A" env R2P2_SOCKET="$(it_sock a)" LD_LIBRARY_PATH="$libdir" \
	"$IT_TMP/hello" echo.svc "hello from the prefix" 2>&1) || it_fail "hello failed: $out"
it_check "hello's call to echo.svc came back ('$out')" test "$out" = "hello from the prefix"
out=$(ip netns exec "$IT_NS_A" env R2P2_SOCKET="$(it_sock a)" LD_LIBRARY_PATH="$libdir" \
	"$IT_TMP/cmake-app/hello" echo.svc "built with cmake" 2>&1) || it_fail "hello (cmake) failed: $out"
it_check "the CMake-built hello's call came back too ('$out')" test "$out" = "built with cmake"
it_pass "an app built from an installed prefix calls a service"
