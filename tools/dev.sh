#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# r2p2d development entry point, for a fresh Debian 12 machine (run as root).
#   ./tools/dev.sh build   install missing Debian packages, configure and build
#   ./tools/dev.sh demo    build, then run two daemons in two namespaces + an echo service
#   ./tools/dev.sh test    check the formatting, build (sanitized), run the whole suite
#   ./tools/dev.sh lint    check the formatting and the daemon's function size and complexity
#   ./tools/dev.sh bench   build (optimised, with the gRPC peers), then run the benchmarks
#                          (tools/bench.sh; arguments are passed on, e.g. -s 0 skips the soak;
#                          then tools/bench-backends.sh: the xdp and udp data paths compared)
#   ./tools/dev.sh bench-router  build (optimised), then run the router experiment
#                          (tools/bench-router.sh: p99 against load per policy, the simulated
#                          ideal beside it; the figure goes to docs/img/router-p99.svg;
#                          arguments are passed on, e.g. --router-bin PATH, --seconds 1)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=$(nproc 2>/dev/null || echo 2)

# What `cmake -S . -B build && cmake --build build` needs, with clang (the libFuzzer
# harnesses, the XDP programs) or Debian's gcc and g++ (cc and c++): docs/OPERATIONS.md,
# "Installing", lists the same packages, and it_ops_doc fails when the two differ.
BUILD_PKGS=(cmake pkg-config make clang llvm libclang-rt-14-dev g++ liburing-dev libcriterion-dev
	libinih-dev libsystemd-dev android-libboringssl-dev libbpf-dev bpftool libelf-dev zlib1g-dev
	libxdp-dev libmnl-dev libseccomp-dev libcap-dev libmicrohttpd-dev)
# What the suite, the lint, the demo and the Python binding run besides.
TOOL_PKGS=(openssl libssl-dev iproute2 kmod procps util-linux nftables clang-format clang-tidy
	libcap2-bin curl jq python3-cffi)
PKGS=("${BUILD_PKGS[@]}" "${TOOL_PKGS[@]}")
# Only for `test`: it_systemd_boot builds a Debian 12 root and boots the unit in it.
TEST_PKGS=(debootstrap systemd-container)
# Only for `bench`: the gRPC peers (tools/grpc, -DR2P2_BENCH_PEERS=ON) and the figures.
BENCH_PKGS=(libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev g++ gnuplot-nox)

log() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*"; }
die() { printf '[dev.sh] error: %s\n' "$*" >&2; exit 1; }

install_deps() {
	local missing=() p
	for p in "${PKGS[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	if ((${#missing[@]})); then
		[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root"
		log "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q --no-install-recommends "${missing[@]}" ||
			{ apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
	fi
}

# fetch_promtool DIR: Debian's promtool (package prometheus), unpacked into DIR/.tools for
# it_metrics to check the exposition format; the package itself is not installed (it would
# start a Prometheus server). Nothing when promtool is on the PATH or already there.
fetch_promtool() {
	local dir=$1 tmp
	command -v promtool >/dev/null && return 0
	[ -x "$dir/.tools/usr/bin/promtool" ] && return 0
	tmp=$(mktemp -d)
	if (cd "$tmp" && { apt-get download -q prometheus >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get download -q prometheus >/dev/null 2>&1; }; }) &&
		mkdir -p "$dir/.tools" && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" &&
		install -D -m 0755 "$tmp/x/usr/bin/promtool" "$dir/.tools/usr/bin/promtool"; then
		log "promtool unpacked from Debian's prometheus package into $dir/.tools"
	else
		log "promtool unavailable (apt-get download prometheus failed): it_metrics skips its format check"
	fi
	rm -rf "$tmp"
}

# build DIR [cmake args...]
build() {
	local dir=$1; shift
	cmake -S "$SRC" -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
		-DR2P2_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j "$JOBS"
}

cmd=${1:-}
case "$cmd" in
build)
	install_deps
	build "$SRC/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
	log "built into $SRC/build"
	;;
demo)
	install_deps
	build "$SRC/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
	exec bash "$SRC/tools/demo.sh" "$SRC/build"
	;;
test)
	install_deps "${TEST_PKGS[@]}"
	bash "$SRC/tools/lint.sh"
	# Debian's default compiler too, warnings as errors; its unit tests run
	log "building with gcc (warnings as errors) and running its unit tests"
	cmake -S "$SRC" -B "$SRC/build-gcc" -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ \
		-DR2P2_WERROR=ON -DR2P2_FUZZ=OFF >/dev/null
	cmake --build "$SRC/build-gcc" -j "$JOBS"
	(cd "$SRC/build-gcc" && ctest --output-on-failure --timeout 300 -R '^test_')
	build "$SRC/build-test" -DCMAKE_BUILD_TYPE=Debug -DR2P2_SANITIZE=ON
	fetch_promtool "$SRC/build-test"
	log "running the suite (sanitized build)"
	cd "$SRC/build-test"
	ctest --output-on-failure --timeout 600 "${@:2}"
	;;
lint)
	install_deps
	bash "$SRC/tools/lint.sh"
	build "$SRC/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
	exec bash "$SRC/tools/lint.sh" --complexity "$SRC/build"
	;;
bench)
	install_deps "${BENCH_PKGS[@]}"
	build "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DR2P2_BENCH_PEERS=ON
	bash "$SRC/tools/bench.sh" "$SRC/build" "${@:2}"
	exec bash "$SRC/tools/bench-backends.sh" "$SRC/build"
	;;
bench-router)
	install_deps gnuplot-nox
	build "$SRC/build" -DCMAKE_BUILD_TYPE=Release
	exec bash "$SRC/tools/bench-router.sh" "$SRC/build" --figure "$SRC/docs/img/router-p99.svg" \
		"${@:2}"
	;;
*)
	echo "usage: $0 build|demo|test|lint|bench|bench-router" >&2
	exit 2
	;;
esac
