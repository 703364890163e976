#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT] [-s SOAK] [-L RATES] [-C COUNT]: one run, on
# the same two namespaces, interleaved so machine drift hits every mode alike:
#   udp         raw UDP ping-pong (udp-pingpong), the floor
#   udp-busy    the same with both ends polling their sockets: the floor of the poll modes
#   plain       r2p2-bench against echo.svc (plain R2P2 through two daemons)
#   plain-poll  the same through a second pair of daemons with `poll = adaptive`, the apps
#               polling too (R2P2_POLL_US=50)
#   tls         r2p2-bench against echo-tls.svc (one TLS 1.3 exchange per RPC, 0-RTT)
#   sealed      r2p2-bench against echo-sealed.svc (AEAD per RPC under a bootstrapped association)
#   sealed-poll sealed through the polling pair
#   grpc        grpc-echo-client against grpc-echo-server, insecure (the peer)
#   grpc-tls    the same over TLS (grpc::SslCredentials, one persistent channel)
# The latency rounds run twice: unpinned, then pinned (every process of namespace A on CPU 0,
# of namespace B on CPU 1, with taskset). Each row has the CPU per RPC of the four parties:
# client app, client daemon, server daemon, server app (gRPC: client and server processes).
# The gRPC modes need the peers built (-DR2P2_BENCH_PEERS=ON; ./tools/dev.sh bench does it);
# without them they are skipped with a note. COUNT sequential 4-byte echoes each (default
# 10000), ROUNDS rounds (default 3). Then:
#   - the daemons' CPU per RPC (from /proc; for gRPC the server process),
#   - bytes and packets on the wire per RPC of each mode (veth counters in namespace A),
#   - both daemons' VmRSS over a soak of SOAK RPCs on echo.svc, then SOAK on echo-sealed.svc,
#     at concurrency 16 (default 1000000 each; -s 0 skips it),
#   - open-loop load: p99 against offered load for plain, tls and grpc-tls at the
#     comma-separated RATES (requests/s; -L 0 skips it), after one run not reported,
#   - closed-loop throughput at 32 calls outstanding, every mode but udp (COUNT -C, 100000,
#     tls a tenth of it; ROUNDS interleaved rounds, medians),
#   - what one hand-off costs (udp-pingpong handoff: unplaced, on one CPU, across two; through
#     eventfds, pipes and AF_UNIX sockets),
#   - r2p2-tls-bench (BoringSSL's own 0-RTT cost, in-process),
#   - the targets of the per-RPC path, each met or missed, from the medians above.
# Prints markdown tables; figures (gnuplot) go to BUILD_DIR/bench/latency.png and
# openloop.png, raw samples and data next to them, JSON lines to BUILD_DIR/bench-results.jsonl.
set -euo pipefail

USAGE="usage: tools/bench.sh BUILD_DIR [-r ROUNDS] [-N COUNT] [-s SOAK_RPCS] [-L RATE,RATE,...] [-C COUNT]"
BUILD=${1:?$USAGE}
shift
ROUNDS=3
COUNT=10000
SOAK=1000000
RATES=2000,5000,10000,20000,40000
CL_COUNT=100000
while getopts "r:N:s:L:C:" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	N) COUNT=$OPTARG ;;
	s) SOAK=$OPTARG ;;
	L) RATES=$OPTARG ;;
	C) CL_COUNT=$OPTARG ;;
	*) echo "$USAGE" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $COUNT =~ ^[1-9][0-9]*$ && $SOAK =~ ^[0-9]+$ ]] ||
	{ echo "$USAGE" >&2; exit 2; }
[[ $RATES =~ ^[0-9,]+$ && $CL_COUNT =~ ^[0-9]+$ ]] || { echo "$USAGE" >&2; exit 2; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export R2P2_BUILD=$BUILD R2P2_SRC=$SRC
IT_NAME=bench
IT_MODE=demo
# shellcheck source=SCRIPTDIR/../tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

it_init
pp=$(it_bin udp-pingpong)
tlsbench=$(it_bin r2p2-tls-bench)
benchbin=$(it_bin r2p2-bench)
OUT=$(cd "$BUILD" && pwd)/bench
mkdir -p "$OUT"
rm -f "$OUT"/samples-*.txt "$OUT"/*.dat "$OUT"/*.png
RESULTS=$(cd "$BUILD" && pwd)/bench-results.jsonl
: >"$RESULTS"
TLS_PORT=$((IT_ECHO_PORT + 1))
GRPC_PORT=9000
GRPC_TLS_PORT=9001
GRPC_NAME=grpc-echo.svc
NOTES=()

GRPC_SRV=$(it_bin grpc-echo-server 2>/dev/null) || GRPC_SRV=
GRPC_CLI=$(it_bin grpc-echo-client 2>/dev/null) || GRPC_CLI=
MODES="udp udp-busy plain plain-poll tls sealed sealed-poll"
POLL_US=50
if [ -n "$GRPC_SRV" ] && [ -n "$GRPC_CLI" ]; then
	MODES="$MODES grpc grpc-tls"
else
	NOTES+=("gRPC modes skipped: grpc-echo-server/grpc-echo-client are not built in $BUILD (configure with -DR2P2_BENCH_PEERS=ON, or run ./tools/dev.sh bench).")
	it_log "NOTE: ${NOTES[-1]}"
fi
has_mode() { [[ " $MODES " == *" $1 "* ]]; }

# Certificates and STEK for echo-tls.svc; a certificate for the gRPC TLS server (same CA).
SEALED_PORT=$((TLS_PORT + 1))
R2P2CTL=$(it_bin r2p2ctl) bash "$SRC/tools/gen-certs.sh" "$IT_TMP/pki" echo-tls.svc echo-sealed.svc \
	echo-sealed-poll.svc "$GRPC_NAME" >/dev/null
it_setup_pair
IF_A=r2a$IT_ID
{
	it_conf_daemon b "$IT_B4"
	printf 'stek = %s\n\n' "$IT_TMP/pki/stek.keys"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	printf '[serve echo-tls.svc]\nport = %s\nsecurity = tls\ncert = %s\nkey = %s\n\n' \
		"$TLS_PORT" "$IT_TMP/pki/echo-tls.svc.crt" "$IT_TMP/pki/echo-tls.svc.key"
	printf '[serve echo-sealed.svc]\nport = %s\nsecurity = sealed\ncert = %s\nkey = %s\n\n' \
		"$SEALED_PORT" "$IT_TMP/pki/echo-sealed.svc.crt" "$IT_TMP/pki/echo-sealed.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 3 "$IT_B4:$IT_ECHO_PORT"
	it_conf_call echo-tls.svc 1000 3 "$IT_B4:$TLS_PORT"
	printf 'security = tls\nca = %s\n\n' "$IT_TMP/pki/ca.crt"
	it_conf_call echo-sealed.svc 1000 3 "$IT_B4:$SEALED_PORT"
	printf 'security = sealed\nca = %s\n\n' "$IT_TMP/pki/ca.crt"
} >"$IT_TMP/a.conf"
# The polling pair: daemons pb (namespace B) and pa (namespace A) with poll = adaptive.
POLL_PORT=$((IT_ECHO_PORT + 10))
SEALED_POLL_PORT=$((IT_ECHO_PORT + 11))
{
	it_conf_daemon pb "$IT_B4"
	printf 'stek = %s\npoll = adaptive\npoll_us = %s\n\n' "$IT_TMP/pki/stek.keys" "$POLL_US"
	it_conf_serve echo-poll.svc "$POLL_PORT"
	printf '[serve echo-sealed-poll.svc]\nport = %s\nsecurity = sealed\ncert = %s\nkey = %s\n\n' \
		"$SEALED_POLL_PORT" "$IT_TMP/pki/echo-sealed-poll.svc.crt" \
		"$IT_TMP/pki/echo-sealed-poll.svc.key"
} >"$IT_TMP/pb.conf"
{
	it_conf_daemon pa "$IT_A4"
	printf 'poll = adaptive\npoll_us = %s\n\n' "$POLL_US"
	it_conf_call echo-poll.svc 1000 3 "$IT_B4:$POLL_PORT"
	it_conf_call echo-sealed-poll.svc 1000 3 "$IT_B4:$SEALED_POLL_PORT"
	printf 'security = sealed\nca = %s\n\n' "$IT_TMP/pki/ca.crt"
} >"$IT_TMP/pa.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_daemon pb "$IT_NS_B" "$IT_TMP/pb.conf"
it_start_daemon pa "$IT_NS_A" "$IT_TMP/pa.conf"
declare -A APP_PID=()
it_start_echo -n echo.svc
APP_PID[plain]=$IT_ECHO_PID
it_start_echo -n echo-tls.svc
APP_PID[tls]=$IT_ECHO_PID
it_start_echo -n echo-sealed.svc
APP_PID[sealed]=$IT_ECHO_PID
export R2P2_POLL_US=$POLL_US
it_start_echo_on pb "$IT_NS_B" -n echo-poll.svc
APP_PID[plain-poll]=$IT_LAST_PID
it_start_echo_on pb "$IT_NS_B" -n echo-sealed-poll.svc
APP_PID[sealed-poll]=$IT_LAST_PID
unset R2P2_POLL_US
it_bg "$IT_NS_B" "$IT_TMP/udp-server.log" "$pp" server "$IT_B4:7000" -i 600
APP_PID[udp]=$IT_LAST_PID
it_wait_for 5 "udp-pingpong server" grep -qs ready "$IT_TMP/udp-server.log"
it_bg "$IT_NS_B" "$IT_TMP/udp-busy-server.log" "$pp" server "$IT_B4:7001" -i 600 -b
APP_PID[udp-busy]=$IT_LAST_PID
it_wait_for 5 "udp-pingpong server -b" grep -qs ready "$IT_TMP/udp-busy-server.log"
GRPC_PID=
GRPC_TLS_PID=
GRPC_TLS_VERSION=
if has_mode grpc; then
	it_bg "$IT_NS_B" "$IT_TMP/grpc-server.log" "$GRPC_SRV" "$IT_B4:$GRPC_PORT" -i 600
	GRPC_PID=$IT_LAST_PID
	it_bg "$IT_NS_B" "$IT_TMP/grpc-tls-server.log" "$GRPC_SRV" "$IT_B4:$GRPC_TLS_PORT" -i 600 \
		--tls "$IT_TMP/pki/$GRPC_NAME.crt" "$IT_TMP/pki/$GRPC_NAME.key"
	GRPC_TLS_PID=$IT_LAST_PID
	APP_PID[grpc]=$GRPC_PID
	APP_PID[grpc-tls]=$GRPC_TLS_PID
	it_wait_for 10 "grpc-echo-server" grep -q ready "$IT_TMP/grpc-server.log"
	it_wait_for 10 "grpc-echo-server --tls" grep -q ready "$IT_TMP/grpc-tls-server.log"
	it_log "grpc-echo-server running in $IT_NS_B (pids $GRPC_PID, $GRPC_TLS_PID with tls)"
fi

# client MODE ARGS...: the client of MODE in namespace A, bounded by $TMO seconds (300), on
# the CPUs in $PIN_A if set (taskset -c).
client() {
	local mode=$1 pin=()
	shift
	[ -z "${PIN_A:-}" ] || pin=(taskset -c "$PIN_A")
	case $mode in
	udp) it_in "$IT_NS_A" timeout "${TMO:-300}" "${pin[@]}" "$pp" client "$IT_B4:7000" "$@" ;;
	udp-busy)
		it_in "$IT_NS_A" timeout "${TMO:-300}" "${pin[@]}" "$pp" client "$IT_B4:7001" --busy "$@"
		;;
	plain | tls | sealed)
		local svc=echo.svc
		[ "$mode" = tls ] && svc=echo-tls.svc
		[ "$mode" = sealed ] && svc=echo-sealed.svc
		it_in "$IT_NS_A" timeout "${TMO:-300}" "${pin[@]}" "$benchbin" -s "$(it_sock a)" \
			-n "$svc" "$@"
		;;
	plain-poll | sealed-poll)
		local svc=echo-poll.svc
		[ "$mode" = sealed-poll ] && svc=echo-sealed-poll.svc
		it_in "$IT_NS_A" timeout "${TMO:-300}" env R2P2_POLL_US="$POLL_US" "${pin[@]}" \
			"$benchbin" -s "$(it_sock pa)" -n "$svc" "$@"
		;;
	grpc) it_in "$IT_NS_A" timeout "${TMO:-300}" "${pin[@]}" "$GRPC_CLI" "$IT_B4:$GRPC_PORT" "$@" ;;
	grpc-tls)
		it_in "$IT_NS_A" timeout "${TMO:-300}" "${pin[@]}" "$GRPC_CLI" \
			"$IT_B4:$GRPC_TLS_PORT" --tls "$IT_TMP/pki/ca.crt" "$GRPC_NAME" "$@"
		;;
	esac
}

# daemons_of MODE: "CLIENT_DAEMON_PID SERVER_DAEMON_PID" of MODE ("- -" for udp and gRPC).
daemons_of() {
	case $1 in
	plain | tls | sealed) echo "${IT_DAEMON_PID[a]} ${IT_DAEMON_PID[b]}" ;;
	plain-poll | sealed-poll) echo "${IT_DAEMON_PID[pa]} ${IT_DAEMON_PID[pb]}" ;;
	*) echo "- -" ;;
	esac
}

# pin_all PLACEMENT: unpinned (every process may run on every CPU) or pinned (namespace A's
# long-lived processes on CPU 0, namespace B's on CPU 1; clients get PIN_A=0).
ALL_CPUS=0-$(($(nproc) - 1))
pin_all() {
	local a=$ALL_CPUS b=$ALL_CPUS pid
	PIN_A=
	if [ "$1" = pinned ]; then
		a=0
		b=$(($(nproc) > 1 ? 1 : 0))
		PIN_A=0
	fi
	for pid in "${IT_DAEMON_PID[a]}" "${IT_DAEMON_PID[pa]}"; do
		taskset -a -p -c "$a" "$pid" >/dev/null
	done
	for pid in "${IT_DAEMON_PID[b]}" "${IT_DAEMON_PID[pb]}" "${APP_PID[@]}"; do
		taskset -a -p -c "$b" "$pid" >/dev/null
	done
}

# Which TLS version the measured gRPC pair negotiates: grpc 1.51 cannot pin one through its
# API, so look at the client's handshake states in grpc's own tsi trace.
if has_mode grpc-tls; then
	GRPC_TRACE=tsi GRPC_VERBOSITY=DEBUG client grpc-tls -N 1 -w 0 >"$IT_TMP/grpc-tls-probe.log" 2>&1 ||
		true
	if grep -q 'TLSv1.3 read encrypted ext' "$IT_TMP/grpc-tls-probe.log"; then
		GRPC_TLS_VERSION="TLS 1.3"
	elif grep -q 'HANDSHAKE DONE' "$IT_TMP/grpc-tls-probe.log"; then
		GRPC_TLS_VERSION="TLS 1.2 or older (no TLS 1.3 handshake states in the tsi trace)"
	else
		GRPC_TLS_VERSION="unknown (no handshake in the tsi trace; see grpc-tls-probe.log)"
	fi
	NOTES+=("gRPC+TLS negotiates $GRPC_TLS_VERSION (seen in grpc's tsi trace of the client's handshake; grpc 1.51's API cannot pin the version, it allows 1.2-1.3).")
	it_log "grpc-tls: $GRPC_TLS_VERSION"
fi

# cpu_ticks PID: user+system clock ticks of a process so far (0 for "").
cpu_ticks() { if [ -n "$1" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }
TICK=$(getconf CLK_TCK)

# run_mode MODE ROUND PLACEMENT: one measurement; prints "mode p50 p99 mean errors timeouts
# client_app client_daemon server_daemon server_app" (CPU in us per RPC; "-": n/a). The last
# unpinned round also keeps every latency in $OUT/samples-MODE.txt.
run_mode() {
	local mode=$1 r=$2 where=$3 out=$IT_TMP/$1-$2-$3.txt pa pb ps a0 b0 s0 a1 b1 s1 extra=()
	[ "$r" -eq "$ROUNDS" ] && [ "$where" = unpinned ] && extra=(--samples "$OUT/samples-$mode.txt")
	read -r pa pb < <(daemons_of "$mode")
	[ "$pa" = - ] && pa=
	[ "$pb" = - ] && pb=
	ps=${APP_PID[$mode]:-}
	a0=$(cpu_ticks "$pa")
	b0=$(cpu_ticks "$pb")
	s0=$(cpu_ticks "$ps")
	client "$mode" -S 4 -N "$COUNT" -w 1000 -t 1000 --json "${extra[@]}" >"$out" || true
	a1=$(cpu_ticks "$pa")
	b1=$(cpu_ticks "$pb")
	s1=$(cpu_ticks "$ps")
	grep -h '^{' "$out" | sed "s/^{/{\"mode\":\"$mode\",\"round\":$r,\"placement\":\"$where\",/" \
		>>"$RESULTS"
	awk -v a="$((a1 - a0))" -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v t="$TICK" \
		-v n="$((COUNT + 1000))" -v p50="$(it_json_num "$out" p50_us)" \
		-v p99="$(it_json_num "$out" p99_us)" -v mean="$(it_json_num "$out" mean_us)" \
		-v e="$(it_json_num "$out" errors)" -v to="$(it_json_num "$out" timeouts)" \
		-v c="$(it_json_num "$out" cpu_us)" -v m="$mode" -v ha="$pa" -v hb="$pb" -v hs="$ps" \
		'BEGIN { printf "%s %s %s %s %s %s %s %s %s %s\n", m, p50 == "" ? -1 : p50,
			 p99 == "" ? -1 : p99, mean == "" ? -1 : mean, e == "" ? n : e, to + 0,
			 c == "" ? "-" : sprintf("%.1f", c / n),
			 ha == "" ? "-" : sprintf("%.1f", a * 1e6 / t / n),
			 hb == "" ? "-" : sprintf("%.1f", b * 1e6 / t / n),
			 hs == "" ? "-" : sprintf("%.1f", s * 1e6 / t / n) }'
}

# AWK_MEDIAN: median(a, n), the median of a[1..n] (sorts a), for the awk programs below.
AWK_MEDIAN='
	function median(a, n,    i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}'

# latency_table PLACEMENT ROWS...: the medians over the rounds, and their ratios; also
# appends "placement mode p50 p99 cpu_client_daemon cpu_server_daemon" lines to $MEDIANS.
latency_table() {
	local where=$1
	shift
	echo
	echo "## Latency, 4-byte echo, sequential, $COUNT requests per mode and round, $where"
	echo "($(date -u +%F), $(nproc) CPUs, kernel $(uname -r); medians over $ROUNDS rounds)"
	echo
	printf '%s\n' "$@" | awk -v modes="$MODES" -v where="$where" -v med="$MEDIANS" "$AWK_MEDIAN"'
	function ratio(x, y) { return y > 0 && x >= 0 ? sprintf("%.2f", x / y) : "-" }
	function cpu(m, c,    i, n) {
		if (v[m, 1, c] == "-") return "-"
		n = k[m]; for (i = 1; i <= n; i++) w[i] = v[m, i, c]
		return sprintf("%.1f", median(w, n))
	}
	{
		m = $2; k[m]++; i = k[m]
		p50[m, i] = $3; p99[m, i] = $4; mean[m, i] = $5; err[m] += $6 + $7
		for (q = 1; q <= 4; q++) v[m, i, q] = $(7 + q)
	}
	END {
		nm = split(modes, ms, " ")
		for (x = 1; x <= nm; x++) {
			m = ms[x]; n = k[m]
			for (i = 1; i <= n; i++) { a[i] = p50[m, i]; b[i] = p99[m, i]; c[i] = mean[m, i] }
			M50[m] = median(a, n); M99[m] = median(b, n); Mmean[m] = median(c, n)
		}
		g = ("grpc-tls" in M50)
		print "| mode | p50 (us) | p99 (us) | mean (us) | p50 / udp | p50 / plain | p50 / gRPC+TLS | p99 / gRPC+TLS | client app CPU | client daemon CPU | server daemon CPU | server app CPU | errors+timeouts |"
		print "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		for (x = 1; x <= nm; x++) {
			m = ms[x]
			printf "| %s | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", m,
				M50[m], M99[m], Mmean[m], ratio(M50[m], M50["udp"]),
				m ~ /^udp/ ? "-" : ratio(M50[m], M50["plain"]),
				g ? ratio(M50[m], M50["grpc-tls"]) : "-", g ? ratio(M99[m], M99["grpc-tls"]) : "-",
				cpu(m, 1), cpu(m, 2), cpu(m, 3), cpu(m, 4), err[m]
			printf "%s %s %s %s %s %s %s\n", where, m, M50[m], M99[m], cpu(m, 2), cpu(m, 3),
				cpu(m, 4) >> med
		}
		printf "\nCPU in us per RPC, from /proc (clock ticks) over warm-up + measured calls, except the client app "
		printf "(its own getrusage). gRPC modes: the server column is the grpc-echo-server process "
		printf "(transport and echo together); udp: the client and the server process.\n"
	}'
}

MEDIANS=$IT_TMP/medians.txt
: >"$MEDIANS"
for where in unpinned pinned; do
	pin_all "$where"
	rows=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in $MODES; do
			it_log "round $r/$ROUNDS ($where): $mode, $COUNT x 4 B sequential"
			rows+=("$r $(run_mode "$mode" "$r" "$where")")
		done
	done
	latency_table "$where" "${rows[@]}"
done
pin_all unpinned

it_log "tls counters on the server daemon after the run:"
it_ctl b status | grep -E '^tls|^strike|^sealed' | sed 's/^/    /'
[ "${#NOTES[@]}" -eq 0 ] || printf '\nNote: %s\n' "${NOTES[@]}"

# ---- closed loop -------------------------------------------------------------------------
# Interleaved rounds like the latency's (drift hits every mode alike); each column of the
# table is the median of its rounds.
CLOSED=$IT_TMP/closed.txt
CLOSED_ROUNDS=$IT_TMP/closed-rounds.txt
: >"$CLOSED"
: >"$CLOSED_ROUNDS"
if [ "$CL_COUNT" -gt 0 ]; then
	for r in $(seq 1 "$ROUNDS"); do
		for mode in $MODES; do
			[[ $mode == udp* ]] && continue
			# tls: a tenth (it is 30x slower), which also keeps its strike register below
			# capacity for the measurements after this one (a full register refuses 0-RTT)
			cl_n=$CL_COUNT
			[ "$mode" = tls ] && cl_n=$((CL_COUNT / 10))
			it_log "closed loop, round $r/$ROUNDS: $mode, $cl_n x 4 B at 32 outstanding"
			read -r pa pb < <(daemons_of "$mode")
			[ "$pa" = - ] && pa=
			[ "$pb" = - ] && pb=
			a0=$(cpu_ticks "$pa")
			b0=$(cpu_ticks "$pb")
			out=$IT_TMP/closed-$mode.txt
			client "$mode" -S 4 -c 32 -N "$cl_n" -w 2000 -t 1000 --json >"$out" 2>&1 || true
			a1=$(cpu_ticks "$pa")
			b1=$(cpu_ticks "$pb")
			grep -h '^{' "$out" | sed "s/^{/{\"mode\":\"closed-$mode\",\"round\":$r,/" >>"$RESULTS" || true
			echo "$mode $(it_json_num "$out" throughput_rps) $(it_json_num "$out" p50_us) $(it_json_num "$out" p99_us) $(($(it_json_num "$out" errors) + $(it_json_num "$out" timeouts))) $(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v t="$TICK" -v n=$((cl_n + 2000)) -v ha="$pa" \
				'BEGIN { if (ha == "") print "- -"; else printf "%.1f %.1f\n", a * 1e6 / t / n, b * 1e6 / t / n }')" >>"$CLOSED_ROUNDS"
		done
	done
	# per mode, in the order of MODES: the median of each column (errors: the sum)
	awk -v modes="$MODES" "$AWK_MEDIAN"'
		function med(k, c,   i, v) {
			for (i = 1; i <= cnt[k]; i++) v[i] = val[k, i, c]
			return median(v, cnt[k])
		}
		{ k = $1; i = ++cnt[k]; for (c = 2; c <= 7; c++) val[k, i, c] = $c; err[k] += $5; dash[k] = ($6 == "-") }
		END {
			split(modes, m, " ")
			for (x = 1; x in m; x++) {
				k = m[x]
				if (!cnt[k]) continue
				printf "%s %.1f %.1f %.1f %d %s\n", k, med(k, 2), med(k, 3), med(k, 4), err[k],
					dash[k] ? "- -" : sprintf("%.1f %.1f", med(k, 6), med(k, 7))
			}
		}' "$CLOSED_ROUNDS" >"$CLOSED"
	echo
	echo "## Closed loop, 4-byte echo, 32 calls outstanding, $CL_COUNT calls per mode and round"
	echo "(tls: $((CL_COUNT / 10)); medians over $ROUNDS rounds, interleaved; errors+timeouts: the sum)"
	echo
	echo "| mode | throughput (RPC/s) | / plain | / gRPC+TLS | p50 (us) | p99 (us) | client daemon CPU (us/RPC) | server daemon CPU (us/RPC) | errors+timeouts |"
	echo "|---|---|---|---|---|---|---|---|---|"
	awk 'NR == FNR { t[$1] = $2; next }
		{ printf "| %s | %.0f | %s | %s | %.1f | %.1f | %s | %s | %d |\n", $1, $2,
			(t["plain"] > 0) ? sprintf("%.2f", $2 / t["plain"]) : "-",
			(t["grpc-tls"] > 0) ? sprintf("%.2f", $2 / t["grpc-tls"]) : "-", $3, $4, $6, $7, $5 }' \
		"$CLOSED" "$CLOSED"
fi

# ---- what one hand-off costs ----------------------------------------------------------------
# Two processes waking each other, as every hand-off of an RPC does (client app -> daemon ->
# server app and back): the floor of what the four hand-offs beyond a UDP round trip add, on
# one CPU and across two; through eventfds (r2p2d's doorbells), pipes and AF_UNIX sockets.
HANDOFF=$IT_TMP/handoff.txt
: >"$HANDOFF"
for via in eventfd pipe unix; do
	for placement in unplaced "0,0" "0,1"; do
		args=(--via "$via")
		[ "$placement" = unplaced ] || args+=(--cpus "$placement")
		it_log "hand-off: $via, $placement"
		"$pp" handoff -N 20000 "${args[@]}" >"$IT_TMP/handoff-out.txt" 2>&1 || true
		awk -v p="$placement" -v v="$via" '/latency us:/ { for (i = 1; i < NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
			END { if (a != "") printf "%s %s %s %s\n", v, p, a, b }' "$IT_TMP/handoff-out.txt" >>"$HANDOFF"
	done
done
echo
echo "## What one hand-off costs (udp-pingpong handoff: two processes, 20000 round trips)"
echo
echo "| doorbell | placement | round trip p50 (us) | round trip p99 (us) | one hand-off, p50 / 2 (us) |"
echo "|---|---|---|---|---|"
awk '{ name = $2 == "unplaced" ? "as the scheduler places them" : $2 == "0,0" ? "both on CPU 0" : "CPU 0 and CPU 1"
	printf "| %s | %s | %.1f | %.1f | %.2f |\n", $1, name, $3, $4, $3 / 2 }' "$HANDOFF"
awk '{ printf "{\"mode\":\"handoff-%s-%s\",\"p50_us\":%s,\"p99_us\":%s}\n", $1, $2, $3, $4 }' "$HANDOFF" >>"$RESULTS"

# ---- the targets of the per-RPC path -------------------------------------------------------
echo
echo "## Targets of the per-RPC path (medians above; met or missed)"
echo
echo "| target | unpinned | pinned |"
echo "|---|---|---|"
awk -v closed="$CLOSED" '
BEGIN { while ((getline l < closed) > 0) { split(l, f, " "); tp[f[1]] = f[2] } }
{ p50[$1, $2] = $3; cd[$1, $2] = $5; sd[$1, $2] = $6; sa[$1, $2] = $7 }
function verdict(x, lim, le) {
	if (x == "" || x < 0) return "n/a"
	return sprintf("%.2f (%s)", x, (le ? x <= lim : x >= lim) ? "met" : "missed")
}
function r(a, b) { return b > 0 && a != "-" && a != "" ? a / b : -1 }
function row(name, u, p) { printf "| %s | %s | %s |\n", name, u, p }
END {
	for (i = 1; i <= 2; i++) { w = i == 1 ? "unpinned" : "pinned"
		g[w] = sa[w, "grpc-tls"]
		pc[w] = r(cd[w, "plain"], g[w]); ps[w] = r(sd[w, "plain"], g[w])
		sc[w] = r(cd[w, "sealed"], g[w]); ss[w] = r(sd[w, "sealed"], g[w])
	}
	row("plain client daemon CPU / gRPC+TLS server CPU <= 0.15", verdict(pc["unpinned"], 0.15, 1), verdict(pc["pinned"], 0.15, 1))
	row("plain server daemon CPU / gRPC+TLS server CPU <= 0.15", verdict(ps["unpinned"], 0.15, 1), verdict(ps["pinned"], 0.15, 1))
	row("sealed client daemon CPU / gRPC+TLS server CPU <= 0.2", verdict(sc["unpinned"], 0.2, 1), verdict(sc["pinned"], 0.2, 1))
	row("sealed server daemon CPU / gRPC+TLS server CPU <= 0.2", verdict(ss["unpinned"], 0.2, 1), verdict(ss["pinned"], 0.2, 1))
	for (i = 1; i <= 5; i++) {
		split("plain udp 1.5|sealed plain 1.1|sealed grpc-tls 0.5|plain-poll plain 0.5|sealed-poll sealed 0.5", t, "|")
		split(t[i], f, " ")
		row(sprintf("p50 %s / %s <= %s", f[1], f[2], f[3]),
			verdict(r(p50["unpinned", f[1]], p50["unpinned", f[2]]), f[3], 1),
			verdict(r(p50["pinned", f[1]], p50["pinned", f[2]]), f[3], 1))
	}
	row("closed loop sealed / plain >= 0.85", verdict(r(tp["sealed"], tp["plain"]), 0.85, 0), "-")
	row("closed loop sealed / gRPC+TLS >= 8", verdict(r(tp["sealed"], tp["grpc-tls"]), 8, 0), "-")
}' "$MEDIANS"

# ---- bytes on the wire ----------------------------------------------------------------
# link_counters: "tx_bytes rx_bytes tx_packets rx_packets" of namespace A's veth end.
link_counters() {
	it_in "$IT_NS_A" cat "/sys/class/net/$IF_A/statistics/tx_bytes" \
		"/sys/class/net/$IF_A/statistics/rx_bytes" "/sys/class/net/$IF_A/statistics/tx_packets" \
		"/sys/class/net/$IF_A/statistics/rx_packets" | tr '\n' ' '
}

# wire_delta MODE N: counter deltas "tx rx txp rxp errors" over a run of N calls (no warmup).
wire_delta() {
	local before after out=$IT_TMP/wire-$1-$2.txt
	before=$(link_counters)
	client "$1" -S 4 -N "$2" -w 0 -t 1000 --json >"$out" 2>&1 || true
	after=$(link_counters)
	echo "$before $after $(it_json_num "$out" errors) $(it_json_num "$out" timeouts)" |
		awk '{ printf "%d %d %d %d %d\n", $5 - $1, $6 - $2, $7 - $3, $8 - $4, $9 + $10 }'
}

WIRE_SMALL=200
WIRE_BIG=1200
wire_rows=()
for mode in $MODES; do
	it_log "wire: $mode, $WIRE_SMALL and $WIRE_BIG calls"
	s=$(wire_delta "$mode" "$WIRE_SMALL")
	b=$(wire_delta "$mode" "$WIRE_BIG")
	wire_rows+=("$(echo "$s $b" | awk -v m="$mode" -v n=$((WIRE_BIG - WIRE_SMALL)) -v ns="$WIRE_SMALL" \
		-v res="$RESULTS" '{
		tx = ($6 - $1) / n; rx = ($7 - $2) / n; pk = ($8 + $9 - $3 - $4) / n
		once = $1 + $2 - ns * (tx + rx)
		printf "| %s | %.1f | %.1f | %.1f | %.2f | %.0f |%s\n", m, tx, rx, tx + rx, pk, once,
			($5 + $10) ? sprintf(" (%d errors+timeouts)", $5 + $10) : ""
		printf "{\"mode\":\"wire\",\"of\":\"%s\",\"tx_bytes_per_rpc\":%.1f,\"rx_bytes_per_rpc\":%.1f," \
			"\"packets_per_rpc\":%.2f,\"once_bytes\":%.0f}\n", m, tx, rx, pk, once >> res
	}')")
done
echo
echo "## Bytes on the wire per RPC, 4-byte echo"
echo
echo "| mode | bytes A->B per RPC | bytes B->A per RPC | bytes per RPC | packets per RPC | one-time bytes per client run |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${wire_rows[@]}"
echo
echo "Counters of the veth end in namespace A (A->B: tx, B->A: rx): every byte of every frame,"
echo "Ethernet (14 B), IP and UDP/TCP headers included (no preamble/FCS on veth), and TCP ACKs"
echo "for gRPC. Per RPC = (run of $WIRE_BIG calls - run of $WIRE_SMALL calls) / $((WIRE_BIG - WIRE_SMALL)),"
echo "so per-run set-up cancels; the last column is that set-up (gRPC: TCP + TLS handshake,"
echo "HTTP/2 preface and settings, the first call; r2p2: whatever the first calls add)."
echo "Stray traffic on the link (IPv6 neighbour discovery) would show as noise."

# ---- memory over a soak ---------------------------------------------------------------
vm_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
if [ "$SOAK" -gt 0 ]; then
	soak_rows=()
	for mode in plain sealed; do
		declare -A rss=()
		for side in a b; do rss[$side]=$(vm_kb "${IT_DAEMON_PID[$side]}" VmRSS); done
		chunk=$(((SOAK + 3) / 4))
		left=$SOAK
		errs=0
		ok=0
		t0=$(it_ms)
		for q in 1 2 3 4; do
			n=$((left < chunk ? left : chunk))
			left=$((left - n))
			if [ "$n" -gt 0 ]; then
				it_log "soak: $mode, part $q/4, $n RPCs at concurrency 16"
				out=$IT_TMP/soak-$mode-$q.txt
				TMO=7200 client "$mode" -S 4 -c 16 -N "$n" -w 0 -t 1000 -d 7200 --json \
					>"$out" 2>&1 || true
				grep -h '^{' "$out" | sed "s/^{/{\"mode\":\"soak-$mode\",\"part\":$q,/" \
					>>"$RESULTS" || true
				e=$(it_json_num "$out" errors)
				to=$(it_json_num "$out" timeouts)
				o=$(it_json_num "$out" ok)
				errs=$((errs + ${e:-$n} + ${to:-0}))
				ok=$((ok + ${o:-0}))
			fi
			for side in a b; do
				rss[$side]="${rss[$side]} $(vm_kb "${IT_DAEMON_PID[$side]}" VmRSS)"
			done
		done
		ms=$(($(it_ms) - t0))
		for side in a b; do
			hwm=$(vm_kb "${IT_DAEMON_PID[$side]}" VmHWM)
			soak_rows+=("$(echo "${rss[$side]}" | awk -v d="$side" -v m="$mode" -v h="$hwm" \
				-v tp="$((ok * 1000 / (ms > 0 ? ms : 1)))" -v e="$errs" '{ printf "| %s (%s) | %s | %d | %d | %d | %d | %d | %+d | %d | %d | %d |\n",
				d, d == "a" ? "client side" : "server side", m, $1, $2, $3, $4, $5, $5 - $1, h, tp, e }')")
		done
		unset rss
	done
	echo
	echo "## r2p2d memory over a soak: $SOAK RPCs per service, 4 B, concurrency 16"
	echo
	echo "| daemon | service soaked | VmRSS before (kB) | after 1/4 | after 2/4 | after 3/4 | after 4/4 | change (kB) | VmHWM (kB) | soak throughput (RPC/s) | errors+timeouts |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${soak_rows[@]}"
	echo
	echo "VmRSS from /proc/PID/status, sampled before the soak and after each quarter (a fresh"
	echo "r2p2-bench per quarter); the daemons have served the latency rounds already."
fi

# ---- open loop ------------------------------------------------------------------------
OL_MODES="plain tls sealed"
has_mode grpc-tls && OL_MODES="$OL_MODES grpc-tls"
if [ "$RATES" != 0 ] && [ -n "${RATES//,/}" ]; then
	ol_rows=()
	echo "# rate $OL_MODES (p99 us; -1: no successful call)" >"$OUT/openloop.dat"
	# One run that is not reported first: the first open-loop run after the soak (or after
	# the machine idled) is slow at a low rate whichever mode it measures, and a second run
	# right after it is not (tried in both orders: sealed 335 us then plain 44; plain 260
	# then sealed 66). Without it, the table's first point measured that change of regime.
	first_rate=${RATES%%,*}
	if [ "${first_rate:-0}" -gt 0 ]; then
		it_log "open loop: a run not reported, plain at $first_rate req/s"
		client plain -S 4 -c 64 --rate "$first_rate" -N "$COUNT" -w 100 -t 1000 \
			>"$IT_TMP/ol-settle.txt" 2>&1 || true
	fi
	for rate in ${RATES//,/ }; do
		[ "$rate" -gt 0 ] || continue
		line="| $rate |"
		dat="$rate"
		for m in $OL_MODES; do
			it_log "open loop: $m at $rate req/s"
			out=$IT_TMP/ol-$m-$rate.txt
			client "$m" -S 4 -c 64 --rate "$rate" -N "$COUNT" -w 100 -t 1000 --json >"$out" \
				2>&1 || true
			grep -h '^{' "$out" | sed "s/^{/{\"mode\":\"openloop-$m\",/" >>"$RESULTS" || true
			p99=$(it_json_num "$out" p99_us)
			tp=$(it_json_num "$out" throughput_rps)
			e=$(it_json_num "$out" errors)
			to=$(it_json_num "$out" timeouts)
			ok=$(it_json_num "$out" ok)
			[ "${ok:-0}" -gt 0 ] || p99=-1
			line="$line ${p99:--} | ${tp:--} | $((${e:-0} + ${to:-0})) |"
			dat="$dat ${p99:--1}"
		done
		ol_rows+=("$line")
		echo "$dat" >>"$OUT/openloop.dat"
	done
	echo
	echo "## Open loop: p99 against offered load, 4 B, $COUNT requests per point, at most 64 outstanding"
	echo
	hdr="| offered (req/s) |"
	sep="|---|"
	for m in $OL_MODES; do
		hdr="$hdr $m p99 (us) | $m achieved (req/s) | $m errors |"
		sep="$sep---|---|---|"
	done
	echo "$hdr"
	echo "$sep"
	printf '%s\n' "${ol_rows[@]}"
	echo
	awk -v modes="$OL_MODES" 'NR > 1 { for (i = 2; i <= NF; i++) if ($i > 0 && $i < 200 && $1 > best[i]) best[i] = $1 }
		END { n = split(modes, m, " "); printf "Highest offered rate held with p99 under 200 us:"
		      for (i = 1; i <= n; i++) printf " %s %s;", m[i], best[i + 1] ? best[i + 1] " req/s" : "none"
		      print "" }' "$OUT/openloop.dat"
	echo "Latency from each call's due time (no coordinated omission). Both load generators (r2p2-bench"
	echo "and grpc-echo-client --rate, one thread each) poll and yield instead of sleeping when the next"
	echo "call is due in under 2.5 ms, so each takes whatever CPU the daemons and servers leave ($(nproc)"
	echo "CPUs here, shared by all of them)."
fi

# ---- figures --------------------------------------------------------------------------
# One colour per mode in every figure.
declare -A COLOR=([udp]='#777777' [plain]='#1b9e77' [tls]='#d95f02' [sealed]='#66a61e' [grpc]='#7570b3'
	[grpc-tls]='#e7298a' [udp-busy]='#aaaaaa' [plain-poll]='#0b5e47' [sealed-poll]='#36661e')
# hist_dat FILE: log-binned histogram (x = bin centre in us, y = fraction of requests).
hist_dat() {
	awk '$1 > 0 { b = int(log($1) / log(10) / 0.025); h[b]++; n++ }
		END { for (b in h) printf "%.3f %.6f\n", 10 ^ ((b + 0.5) * 0.025), h[b] / n }' "$1" | sort -g
}
# cdf_dat FILE: the empirical CDF, at most ~2000 points.
cdf_dat() {
	sort -g "$1" | awk '{ x[NR] = $1 } END { s = NR > 2000 ? int(NR / 2000) : 1
		for (i = 1; i <= NR; i += s) printf "%s %.6f\n", x[i], i / NR; printf "%s 1\n", x[NR] }'
}
echo
echo "## Figures"
echo
if ! command -v gnuplot >/dev/null; then
	echo "gnuplot is missing (apt-get install gnuplot-nox, or ./tools/dev.sh bench): no figures."
	echo "Their data: $OUT/samples-*.txt (one latency in us per line) and $OUT/openloop.dat."
else
	plots_h=()
	plots_c=()
	for mode in $MODES; do
		f=$OUT/samples-$mode.txt
		[ -s "$f" ] || continue
		hist_dat "$f" >"$OUT/hist-$mode.dat"
		cdf_dat "$f" >"$OUT/cdf-$mode.dat"
		plots_h+=("'$OUT/hist-$mode.dat' using 1:2 with steps lw 2 lc rgb '${COLOR[$mode]}' title '$mode'")
		plots_c+=("'$OUT/cdf-$mode.dat' using 1:2 with lines lw 2 lc rgb '${COLOR[$mode]}' title '$mode'")
	done
	if ((${#plots_h[@]})); then
		{
			echo "set terminal pngcairo size 1400,560 font ',11'"
			echo "set output '$OUT/latency.png'"
			echo "set multiplot layout 1,2 title 'Per-request latency, 4-byte echo, sequential, $COUNT requests per mode (last round; $(nproc) CPUs, veth)'"
			echo "set logscale x; set grid; set key top right"
			echo "set xlabel 'latency (us)'; set ylabel 'fraction of requests per bin (bins 6% wide)'"
			echo "set title 'Histogram'"
			echo "plot $(IFS=,; echo "${plots_h[*]}")"
			echo "set key bottom right; set ylabel 'fraction of requests at or below'; set yrange [0:1]"
			echo "set title 'CDF'"
			echo "plot $(IFS=,; echo "${plots_c[*]}")"
			echo "unset multiplot"
		} >"$OUT/latency.gp"
		if gnuplot "$OUT/latency.gp" 2>"$OUT/gnuplot.log"; then
			echo "- latency histogram and CDF: $OUT/latency.png"
		else
			echo "- latency figure failed: gnuplot $OUT/latency.gp: $(tail -n 2 "$OUT/gnuplot.log")"
		fi
	fi
	if [ -s "$OUT/openloop.dat" ] && [ "$(wc -l <"$OUT/openloop.dat")" -gt 1 ]; then
		plots=()
		i=2
		for m in $OL_MODES; do
			plots+=("'$OUT/openloop.dat' using 1:(\$$i > 0 ? \$$i : 1/0) with linespoints lw 2 pt 7 lc rgb '${COLOR[$m]}' title '$m'")
			i=$((i + 1))
		done
		plots+=("200 with lines dt 2 lc rgb 'gray' title 'p99 target 200 us'")
		{
			echo "set terminal pngcairo size 900,600 font ',11'"
			echo "set output '$OUT/openloop.png'"
			echo "set title 'Open loop: p99 latency against offered load, 4 B echo, $COUNT requests per point, <= 64 outstanding'"
			echo "set logscale xy; set grid; set key top left"
			echo "set xlabel 'offered load (requests/s)'; set ylabel 'p99 latency (us), from due time'"
			echo "plot $(IFS=,; echo "${plots[*]}")"
		} >"$OUT/openloop.gp"
		if gnuplot "$OUT/openloop.gp" 2>"$OUT/gnuplot.log"; then
			echo "- open-loop p99 against offered load: $OUT/openloop.png"
		else
			echo "- open-loop figure failed: gnuplot $OUT/openloop.gp: $(tail -n 2 "$OUT/gnuplot.log")"
		fi
	fi
	echo "- data: $OUT/samples-MODE.txt (one latency in us per line, last round)$([ -s "$OUT/openloop.dat" ] && echo ", $OUT/openloop.dat")"
fi

echo
echo "## BoringSSL's own 0-RTT cost in one process, against tls mode's framing (r2p2-tls-bench)"
echo
"$tlsbench" -N "$COUNT" | tee "$IT_TMP/tls-bench.txt"
"$tlsbench" -N "$COUNT" --json 2>/dev/null | grep '^{' | sed 's/^{/{"mode":"tls-bench",/' >>"$RESULTS" || true
echo
echo "## sealed mode: per-RPC crypto work of each side in one process (r2p2-sealed-bench)"
echo
sealedbench=$(it_bin r2p2-sealed-bench)
"$sealedbench" -N "$((COUNT * 20))" | tee "$IT_TMP/sealed-bench.txt"
"$sealedbench" -N "$((COUNT * 20))" --json 2>/dev/null | grep '^{' |
	sed 's/^{/{"mode":"sealed-bench",/' >>"$RESULTS" || true
echo
it_log "raw results: $RESULTS"
