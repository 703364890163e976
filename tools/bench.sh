#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT]: latency of plain R2P2 against
# the raw UDP floor, in one run on the same two namespaces (see docs/BENCHMARKS.md).
# Alternates udp-pingpong and r2p2-bench (COUNT sequential 4-byte echoes, default
# 10000) for ROUNDS rounds (default 3) and prints a markdown table of p50/p99 and
# the r2p2/udp ratios. Raw JSON results go to BUILD_DIR/bench-results.jsonl.
set -euo pipefail

BUILD=${1:?usage: tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT]}
shift
ROUNDS=3
COUNT=10000
while getopts "r:N:" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	N) COUNT=$OPTARG ;;
	*) echo "usage: tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT]" >&2; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export R2P2_BUILD=$BUILD R2P2_SRC=$SRC
IT_NAME=bench
IT_MODE=demo
# shellcheck source=SCRIPTDIR/../tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

it_init
pp=$(it_bin udp-pingpong)
it_bin r2p2-bench >/dev/null
RESULTS=$(cd "$BUILD" && pwd)/bench-results.jsonl
: >"$RESULTS"

it_setup_pair
it_start_pair_services 4 1000 3
it_bg "$IT_NS_B" "$IT_TMP/udp-server.log" "$pp" server "$IT_B4:7000" -i 600
it_wait_for 5 "udp-pingpong server" grep -q ready "$IT_TMP/udp-server.log"

rows=()
for ((r = 1; r <= ROUNDS; r++)); do
	it_log "round $r/$ROUNDS: udp-pingpong, $COUNT x 4 B"
	it_in "$IT_NS_A" timeout 300 "$pp" client "$IT_B4:7000" -S 4 -N "$COUNT" -w 1000 --json \
		>"$IT_TMP/udp-$r.txt"
	it_log "round $r/$ROUNDS: r2p2-bench, $COUNT x 4 B sequential"
	it_bench -S 4 -c 1 -N "$COUNT" -w 1000 -t 1000 --json >"$IT_TMP/r2p2-$r.txt"
	grep -h '^{' "$IT_TMP/udp-$r.txt" "$IT_TMP/r2p2-$r.txt" >>"$RESULTS"
	u=$IT_TMP/udp-$r.txt
	q=$IT_TMP/r2p2-$r.txt
	udp_cols="$(it_json_num "$u" p50_us) $(it_json_num "$u" p99_us)"
	r2p2_cols="$(it_json_num "$q" p50_us) $(it_json_num "$q" p99_us)"
	fail_cols="$(it_json_num "$q" errors) $(it_json_num "$q" timeouts)"
	rows+=("$r $udp_cols $r2p2_cols $fail_cols")
done

echo
echo "Plain R2P2 vs raw UDP, 4-byte echo, sequential, $COUNT requests per round ($(date -u +%F), $(nproc) CPUs, kernel $(uname -r))"
echo
printf '%s\n' "${rows[@]}" | awk '
function median(a, n,    i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
BEGIN {
	print "| round | UDP p50 (us) | UDP p99 (us) | R2P2 p50 (us) | R2P2 p99 (us) | p50 ratio | p99 ratio | R2P2 errors/timeouts |"
	print "|---|---|---|---|---|---|---|---|"
}
{
	n++; u50[n] = $2; u99[n] = $3; r50[n] = $4; r99[n] = $5
	printf "| %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %d/%d |\n", $1, $2, $3, $4, $5, \
		($2 > 0 ? $4 / $2 : 0), ($3 > 0 ? $5 / $3 : 0), $6, $7
}
END {
	m_u50 = median(u50, n); m_u99 = median(u99, n); m_r50 = median(r50, n); m_r99 = median(r99, n)
	printf "| median | %.1f | %.1f | %.1f | %.1f | **%.2f** | %.2f | |\n", m_u50, m_u99, m_r50, m_r99, \
		(m_u50 > 0 ? m_r50 / m_u50 : 0), (m_u99 > 0 ? m_r99 / m_u99 : 0)
	printf "\nTarget: R2P2 p50 within 2x the raw UDP round trip.\n"
}'
echo
it_log "raw results: $RESULTS"
