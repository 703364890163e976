#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/bench-backends.sh BUILD_DIR [-r ROUNDS] [-N COUNT] [-L RATES]: the server daemon's
# data path, xdp (XDP steering + AF_XDP sockets) against udp (the kernel's UDP sockets),
# on the same two namespaces in one run. Plain R2P2, 4-byte echo:
#   - sequential p50/p99, the two backends alternating for ROUNDS rounds (daemon B is
#     restarted with the other backend between measurements; daemon A stays on udp);
#   - open loop: p99 against offered load (RATES), and the highest rate held with p99
#     under 200 us, per backend.
# Prints markdown tables; raw JSON lines go to BUILD_DIR/bench-backends.jsonl.
set -euo pipefail

BUILD=${1:?usage: tools/bench-backends.sh BUILD_DIR [-r ROUNDS] [-N COUNT] [-L RATES]}
shift
ROUNDS=3
COUNT=10000
RATES=5000,10000,20000,40000
while getopts "r:N:L:" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	N) COUNT=$OPTARG ;;
	L) RATES=$OPTARG ;;
	*) echo "usage: tools/bench-backends.sh BUILD_DIR [-r ROUNDS] [-N COUNT] [-L RATES]" >&2; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export R2P2_BUILD=$BUILD R2P2_SRC=$SRC
IT_NAME=bench-backends
IT_MODE=demo
# shellcheck source=SCRIPTDIR/../tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

it_init
RESULTS=$(cd "$BUILD" && pwd)/bench-backends.jsonl
: >"$RESULTS"
it_setup_pair

# conf_b BACKEND: daemon B's config with that data path.
conf_b() {
	{
		R2P2_IT_BACKEND=$1 it_conf_daemon b "$IT_B4"
		it_conf_serve echo.svc "$IT_ECHO_PORT"
	} >"$IT_TMP/b-$1.conf"
}
conf_b xdp
conf_b udp
{
	R2P2_IT_BACKEND=udp it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 3 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

CURRENT=
# use BACKEND: daemon B (and its echo server) running with BACKEND.
use() {
	[ "$CURRENT" = "$1" ] && return 0
	if [ -n "$CURRENT" ]; then
		it_stop_daemon b || true
		it_kill_pid "$IT_ECHO_PID"
	fi
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b-$1.conf"
	tail -n 5 "$IT_TMP/r2p2d-b.log" | grep -q "backend $1" ||
		it_fail "daemon B did not start with backend $1: $(grep ready "$IT_TMP/r2p2d-b.log" | tail -n 1)"
	it_start_echo -n echo.svc
	CURRENT=$1
}

rows=()
for ((r = 1; r <= ROUNDS; r++)); do
	for be in xdp udp; do
		use "$be"
		it_log "round $r/$ROUNDS: $be, $COUNT x 4 B sequential"
		out=$IT_TMP/seq-$be-$r.txt
		it_bench -S 4 -c 1 -N "$COUNT" -w 1000 -t 1000 --json >"$out" || true
		grep -h '^{' "$out" | sed "s/^{/{\"backend\":\"$be\",\"round\":$r,/" >>"$RESULTS"
		rows+=("$be $(it_json_num "$out" p50_us) $(it_json_num "$out" p99_us) $(it_json_num "$out" errors) $(it_json_num "$out" timeouts)")
	done
done

ol=()
for be in xdp udp; do
	use "$be"
	for rate in ${RATES//,/ }; do
		it_log "open loop: $be at $rate req/s"
		out=$IT_TMP/ol-$be-$rate.txt
		it_bench -S 4 -c 64 --rate "$rate" -N "$COUNT" -w 100 -t 1000 --json >"$out" || true
		grep -h '^{' "$out" | sed "s/^{/{\"backend\":\"$be\",\"rate\":$rate,/" >>"$RESULTS"
		ol+=("$be $rate $(it_json_num "$out" p99_us) $(it_json_num "$out" throughput_rps) $(it_json_num "$out" errors)")
	done
done
it_log "daemon B's XDP counters at the end: $(it_ctl b status | grep -E '^xdp|^backend' | tr '\n' ' ')"

echo
echo "## xdp against udp backend: plain R2P2, 4-byte echo ($(date -u +%F), $(nproc) CPUs, kernel $(uname -r))"
echo
printf '%s\n' "${rows[@]}" | awk '
function median(a, n,    i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ k[$1]++; p50[$1, k[$1]] = $2; p99[$1, k[$1]] = $3; err[$1] += $4 + $5 }
END {
	print "| server backend | p50 (us) | p99 (us) | errors+timeouts |"
	print "|---|---|---|---|"
	split("xdp udp", bs, " ")
	for (x = 1; x <= 2; x++) {
		b = bs[x]; n = k[b]
		for (i = 1; i <= n; i++) { a[i] = p50[b, i]; c[i] = p99[b, i] }
		printf "| %s | %.1f | %.1f | %d |\n", b, median(a, n), median(c, n), err[b]
	}
}'
echo
echo "Open loop (64 outstanding at most, latency from each call's due time):"
echo
printf '%s\n' "${ol[@]}" | awk '
BEGIN { print "| server backend | offered (req/s) | p99 (us) | achieved (req/s) | errors |"; print "|---|---|---|---|---|" }
{ printf "| %s | %s | %.1f | %.1f | %d |\n", $1, $2, $3, $4, $5; if ($3 < 200 && $5 == 0 && $2 > best[$1]) best[$1] = $2 }
END { printf "\nHighest offered rate held with p99 under 200 us: xdp %s req/s; udp %s req/s\n", best["xdp"] ? best["xdp"] : "none", best["udp"] ? best["udp"] : "none" }'
echo
it_log "raw results: $RESULTS"
