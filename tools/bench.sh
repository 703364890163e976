#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT]: one run, on the same two namespaces,
# interleaved so machine drift hits every mode alike:
#   udp    raw UDP ping-pong (udp-pingpong), the floor
#   plain  r2p2-bench against echo.svc (plain R2P2 through two daemons)
#   tls    r2p2-bench against echo-tls.svc (one TLS 1.3 exchange per RPC, 0-RTT)
# COUNT sequential 4-byte echoes each (default 10000), ROUNDS rounds (default 3).
# Also: the daemons' CPU per RPC in each mode (from /proc), bytes on the wire per
# flight in tls mode, and r2p2-tls-bench (BoringSSL's own 0-RTT cost, in-process).
# Prints markdown tables; raw JSON lines go to BUILD_DIR/bench-results.jsonl.
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
tlsbench=$(it_bin r2p2-tls-bench)
it_bin r2p2-bench >/dev/null
RESULTS=$(cd "$BUILD" && pwd)/bench-results.jsonl
: >"$RESULTS"
TLS_PORT=$((IT_ECHO_PORT + 1))

# Certificates and STEK for echo-tls.svc.
bash "$SRC/tools/gen-certs.sh" "$IT_TMP/pki" echo-tls.svc >/dev/null
it_setup_pair
{
	it_conf_daemon b "$IT_B4"
	printf 'stek = %s\n\n' "$IT_TMP/pki/stek.keys"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	printf '[serve echo-tls.svc]\nport = %s\nsecurity = tls\ncert = %s\nkey = %s\n\n' \
		"$TLS_PORT" "$IT_TMP/pki/echo-tls.svc.crt" "$IT_TMP/pki/echo-tls.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 3 "$IT_B4:$IT_ECHO_PORT"
	it_conf_call echo-tls.svc 1000 3 "$IT_B4:$TLS_PORT"
	printf 'security = tls\nca = %s\n\n' "$IT_TMP/pki/ca.crt"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc
it_start_echo -n echo-tls.svc
it_bg "$IT_NS_B" "$IT_TMP/udp-server.log" "$pp" server "$IT_B4:7000" -i 600
it_wait_for 5 "udp-pingpong server" grep -q ready "$IT_TMP/udp-server.log"

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run_mode MODE ROUND: one measurement; prints "p50 p99 mean errors timeouts cpu_us_per_rpc".
run_mode() {
	local mode=$1 r=$2 out=$IT_TMP/$1-$2.txt a0 b0 a1 b1
	a0=$(cpu_ticks "${IT_DAEMON_PID[a]}")
	b0=$(cpu_ticks "${IT_DAEMON_PID[b]}")
	case $mode in
	udp) it_in "$IT_NS_A" timeout 300 "$pp" client "$IT_B4:7000" -S 4 -N "$COUNT" -w 1000 \
		--json >"$out" ;;
	plain) it_bench -n echo.svc -S 4 -c 1 -N "$COUNT" -w 1000 -t 1000 --json >"$out" ;;
	tls) it_bench -n echo-tls.svc -S 4 -c 1 -N "$COUNT" -w 1000 -t 1000 --json >"$out" ;;
	esac
	a1=$(cpu_ticks "${IT_DAEMON_PID[a]}")
	b1=$(cpu_ticks "${IT_DAEMON_PID[b]}")
	grep -h '^{' "$out" | sed "s/^{/{\"mode\":\"$mode\",\"round\":$r,/" >>"$RESULTS"
	awk -v a="$((a1 - a0))" -v b="$((b1 - b0))" -v t="$TICK" -v n="$((COUNT + 1000))" \
		-v p50="$(it_json_num "$out" p50_us)" -v p99="$(it_json_num "$out" p99_us)" \
		-v mean="$(it_json_num "$out" mean_us)" -v e="$(it_json_num "$out" errors)" \
		-v to="$(it_json_num "$out" timeouts)" -v m="$mode" \
		'BEGIN { printf "%s %s %s %s %s %s %.1f %.1f\n", m, p50, p99, mean, e, to,
			 a * 1e6 / t / n, b * 1e6 / t / n }'
}

rows=()
for ((r = 1; r <= ROUNDS; r++)); do
	for mode in udp plain tls; do
		it_log "round $r/$ROUNDS: $mode, $COUNT x 4 B sequential"
		rows+=("$r $(run_mode "$mode" "$r")")
	done
done

it_log "tls counters on the server daemon after the run:"
it_ctl b status | grep -E '^tls|^strike' | sed 's/^/    /'

echo
echo "## Latency, 4-byte echo, sequential, $COUNT requests per mode and round"
echo "($(date -u +%F), $(nproc) CPUs, kernel $(uname -r); medians over $ROUNDS rounds)"
echo
printf '%s\n' "${rows[@]}" | awk '
function median(a, n,    i, j, t) {
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	m = $2; k[m]++; i = k[m]
	p50[m, i] = $3; p99[m, i] = $4; mean[m, i] = $5; err[m] += $6 + $7; ca[m, i] = $8; cb[m, i] = $9
}
END {
	print "| mode | p50 (us) | p99 (us) | mean (us) | p50 / udp | p50 / plain | client daemon CPU (us/RPC) | server daemon CPU (us/RPC) | errors+timeouts |"
	print "|---|---|---|---|---|---|---|---|---|"
	split("udp plain tls", modes, " ")
	for (x = 1; x <= 3; x++) {
		m = modes[x]; n = k[m]
		for (i = 1; i <= n; i++) { a[i] = p50[m, i]; b[i] = p99[m, i]; c[i] = mean[m, i]; d[i] = ca[m, i]; e[i] = cb[m, i] }
		M50[m] = median(a, n); M99 = median(b, n); Mmean = median(c, n); Mca = median(d, n); Mcb = median(e, n)
		printf "| %s | %.1f | %.1f | %.1f | %.2f | %.2f | %s | %s | %d |\n", m, M50[m], M99, Mmean,
			M50[m] / M50["udp"], (m == "udp" ? 0 : M50[m] / M50["plain"]),
			(m == "udp" ? "-" : sprintf("%.1f", Mca)), (m == "udp" ? "-" : sprintf("%.1f", Mcb)), err[m]
	}
	printf "\nTargets: plain p50 within 2x udp.\n"
}'

echo
echo "## BoringSSL's own 0-RTT cost in one process, against tls mode's framing (r2p2-tls-bench)"
echo
"$tlsbench" -N "$COUNT" | tee "$IT_TMP/tls-bench.txt"
"$tlsbench" -N "$COUNT" --json 2>/dev/null | grep '^{' | sed 's/^{/{"mode":"tls-bench",/' >>"$RESULTS" || true
echo
it_log "raw results: $RESULTS"
