#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/bench-router.sh BUILD_DIR [options]: the router experiment of issue #16, the
# paper's in shape. Namespaces: a client (r2p2d + r2p2-bench), a router (r2p2-router)
# and three servers (r2p2d with `router =` for FEEDBACK, r2p2-synth-server), all on one
# bridge, as in tests/integration/it_router.sh. Then:
#   1. the latency the router adds at low load: sequential calls (one at a time) to
#      servers that answer at once (fixed:0), directly (the client's [call] lists the
#      three servers: r2p2d's own round-robin) and through the router (round-robin too,
#      so both spread the calls alike), interleaved over ROUNDS rounds; medians of their
#      p50 and p99;
#   2. open-loop load (r2p2-bench --rate --poisson: Poisson arrivals, the same sequence
#      for every mode at a load; latency from each call's due time, so a late send counts
#      against the system) at LOADS percent of capacity, capacity = servers x
#      workers / mean service time, load by load, for the direct baseline and the router
#      with each policy in turn (random, rr, p2c, jbsq with n = 1, 2, 3): p50 and p99;
#   3. beside them r2p2-qsim's simulation of the same servers (Poisson arrivals): the
#      ideal single queue over all workers, random and JBSQ(2);
#   4. the targets at 80% load: JBSQ(2)'s p99 within 1.5x of the ideal's and at most
#      half of random's, met or missed.
# Prints markdown tables; writes JSON lines to OUT/router-results.jsonl, the figure (p99
# against load per policy, the simulation dashed) to OUT/router-p99.svg and, with
# --figure PATH, there too. Without an r2p2-router (BUILD_DIR/r2p2-router, or
# --router-bin PATH; it also needs tests/txcsum_off and tests/xdp_pass.bpf.o next to it
# or in BUILD_DIR) only the direct baseline runs, and the output says so.
# Options:
#   --router-bin PATH   r2p2-router to use (default BUILD_DIR/r2p2-router)
#   --dist SPEC         service time (r2p2-synth-server -d; default exp:1000)
#   --workers N         worker threads per server (default 1)
#   --loads LIST        percent of capacity, comma-separated (default 10,20,...,90)
#   --policies LIST     router policies (default random,rr,p2c,jbsq:1,jbsq:2,jbsq:3)
#   --seconds S         measured seconds per point (default 4: rate x S calls, at least
#                       500, after half a second of warm-up); a point whose generator fell
#                       behind its schedule by more than twice the mean service time
#                       (another process took the CPU) runs again, at most 3 times
#   --seq N             sequential calls per mode and round of step 1 (default 5000)
#   --rounds N          rounds of step 1 (default 3)
#   --out DIR           output directory (default BUILD_DIR/bench-router)
#   --figure PATH       also write the figure there (.svg or .png), when the router ran
#                       (a direct-only run never replaces a figure of the full experiment)
# Every run is bounded (timeout) and the namespaces and processes go away on exit.
set -euo pipefail

USAGE="usage: tools/bench-router.sh BUILD_DIR [--router-bin PATH] [--dist SPEC] [--workers N]
       [--loads PCT,...] [--policies P,...] [--seconds S] [--seq N] [--rounds N] [--out DIR]
       [--figure PATH]"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
	echo "$USAGE" >&2
	exit 2
fi
BUILD=$1
shift
ROUTER_BIN=
DIST=exp:1000
WORKERS=1
LOADS=10,20,30,40,50,60,70,80,90
POLICIES=random,rr,p2c,jbsq:1,jbsq:2,jbsq:3
SECONDS_PER_POINT=4
SEQ=5000
ROUNDS=3
OUT=
FIGURE=
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || { echo "$1: needs a value" >&2; echo "$USAGE" >&2; exit 2; }
	case $1 in
	--router-bin) ROUTER_BIN=$2 ;;
	--dist) DIST=$2 ;;
	--workers) WORKERS=$2 ;;
	--loads) LOADS=$2 ;;
	--policies) POLICIES=$2 ;;
	--seconds) SECONDS_PER_POINT=$2 ;;
	--seq) SEQ=$2 ;;
	--rounds) ROUNDS=$2 ;;
	--out) OUT=$2 ;;
	--figure) FIGURE=$2 ;;
	*) echo "unknown option $1" >&2; echo "$USAGE" >&2; exit 2 ;;
	esac
	shift 2
done
bad() { echo "tools/bench-router.sh: $*" >&2; exit 2; }
# in_range N MIN MAX: N is a decimal number (no leading zero) from MIN to MAX
in_range() { [[ $1 =~ ^(0|[1-9][0-9]{0,6})$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$WORKERS" 1 64 || bad "--workers: 1 to 64"
in_range "$SECONDS_PER_POINT" 1 600 || bad "--seconds: 1 to 600"
in_range "$SEQ" 0 1000000 || bad "--seq: 0 to 1000000"
in_range "$ROUNDS" 1 99 || bad "--rounds: 1 to 99"
[[ $LOADS =~ ^[1-9][0-9]?(,[1-9][0-9]?)*$ ]] || bad "--loads: percentages from 1 to 99, separated by commas"
for p in ${POLICIES//,/ }; do
	[[ $p =~ ^(random|rr|p2c|jbsq:[1-9][0-9]?)$ ]] || bad "--policies: '$p' is none of random, rr, p2c, jbsq:N"
done
case $FIGURE in '' | *.svg | *.png) ;; *) bad "--figure: a .svg or .png path" ;; esac

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$BUILD" ] || bad "$BUILD is not a build directory"
BUILD=$(cd "$BUILD" && pwd)
[ -n "$OUT" ] || OUT=$BUILD/bench-router
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -z "$FIGURE" ] || FIGURE=$(cd "$(dirname "$FIGURE")" && pwd)/$(basename "$FIGURE")
QSIM=$BUILD/r2p2-qsim
[ -x "$QSIM" ] || bad "$QSIM is not built"
DIST_MEAN=$("$QSIM" -d "$DIST" --load 0.5 -N 1 --json 2>&1 | grep -o '"mean_service_us":[0-9.]*' |
	cut -d: -f2) || bad "--dist $DIST: $("$QSIM" -d "$DIST" --load 0.5 -N 1 2>&1 | head -n 1)"

# The router pins its maps under /sys/fs/bpf and may mount bpffs: keep that in a private
# mount namespace, as it_router does.
if [ -z "${R2P2_BENCH_PRIVATE_MNT:-}" ]; then
	[ "$(id -u)" -eq 0 ] || bad "needs root (namespaces, XDP)"
	command -v unshare >/dev/null || bad "unshare (util-linux) is not installed"
	R2P2_BENCH_PRIVATE_MNT=1 exec unshare --mount --propagation private bash "$0" "$BUILD" \
		${ROUTER_BIN:+--router-bin "$ROUTER_BIN"} --dist "$DIST" --workers "$WORKERS" \
		--loads "$LOADS" --policies "$POLICIES" --seconds "$SECONDS_PER_POINT" --seq "$SEQ" \
		--rounds "$ROUNDS" --out "$OUT" ${FIGURE:+--figure "$FIGURE"}
fi

export R2P2_BUILD=$BUILD R2P2_SRC=$SRC
IT_NAME=bench-router
IT_MODE=demo
# shellcheck source=SCRIPTDIR/../tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

SVC=synth.svc
DIRECT=direct.svc # the same servers and port, r2p2d's round-robin instead of the router
PORT=8000
it_router_names "10.82.$IT_NET"
NSERVERS=3
CAPACITY=$(awk -v n=$((NSERVERS * WORKERS)) -v m="$DIST_MEAN" 'BEGIN { printf "%.0f", n / m * 1e6 }')
RESULTS=$OUT/router-results.jsonl
POINTS=$OUT/points.txt
: >"$RESULTS"
: >"$POINTS"
rm -f "$OUT"/p99-*.dat "$OUT"/router-status-*.txt
NOTES=()

it_init
SYNTH=$(it_bin r2p2-synth-server)
BENCH=$(it_bin r2p2-bench)

# ---- can the router run here? ---------------------------------------------------------
ROUTER=
[ -n "$ROUTER_BIN" ] || ROUTER_BIN=$BUILD/r2p2-router
# find_aux NAME: a helper of the router's namespace set-up, from BUILD_DIR/tests or the
# build the router binary comes from
find_aux() {
	local d
	for d in "$BUILD/tests" "$(dirname "$ROUTER_BIN")/tests"; do
		[ -e "$d/$1" ] && { printf '%s\n' "$d/$1"; return 0; }
	done
	return 1
}
if [ ! -x "$ROUTER_BIN" ]; then
	NOTES+=("r2p2-router is not built ($ROUTER_BIN; it comes with the router, branch \`router\`): only the direct baseline ran. Build it and run again, or pass --router-bin PATH.")
elif ! TXCSUM_OFF=$(find_aux txcsum_off) || ! XDP_PASS_OBJ=$(find_aux xdp_pass.bpf.o); then
	NOTES+=("tests/txcsum_off or tests/xdp_pass.bpf.o is not built next to $ROUTER_BIN or in $BUILD: only the direct baseline ran.")
elif ! command -v nsenter >/dev/null; then
	NOTES+=("nsenter (util-linux) is missing: only the direct baseline ran.")
else
	ROUTER=$ROUTER_BIN
fi
for p in ${POLICIES//,/ }; do
	if [[ $p == jbsq:* ]] && [ "${p#jbsq:}" -lt "$WORKERS" ]; then
		NOTES+=("JBSQ(${p#jbsq:}) counts outstanding requests per server: with $WORKERS workers per server it keeps some of them idle.")
	fi
done
for n in "${NOTES[@]}"; do it_log "NOTE: $n"; done

IT_ROUTER_PIN=$PIN
trap it_router_on_exit EXIT

# ---- topology: one bridge, everyone plugged in (tests/integration/it_router.sh) ---------
it_bridge "$NS_W"
it_plug "$NS_W" "$IT_NS_A" "rc$IT_ID" "$C4"
it_plug "$NS_W" "$IT_NS_R" "$IF_R" "$R4"
for k in 1 2 3; do
	it_plug "$NS_W" "${NS_S[$k]}" "rs$k$IT_ID" "${S4[$k]}"
done
if [ -n "$ROUTER" ]; then
	# The router rewrites checksums incrementally: requests must leave the client complete
	# (txcsum_off.c says why); XDP_TX on the router's veth reaches the bridge only while
	# the peer runs NAPI, which a native XDP program there turns on.
	it_in "$IT_NS_A" "$TXCSUM_OFF" "rc$IT_ID"
	if ! ip -n "$NS_W" link set dev "w$IF_R" xdpdrv obj "$XDP_PASS_OBJ" sec xdp 2>"$IT_TMP/xdp.err"; then
		NOTES+=("cannot attach a native XDP program to a veth here ($(head -n 1 "$IT_TMP/xdp.err")): only the direct baseline ran.")
		it_log "NOTE: ${NOTES[-1]}"
		ROUTER=
	fi
fi
it_log "client $C4, router $R4, servers ${S4[1]} ${S4[2]} ${S4[3]} on a bridge in $NS_W"

# ---- daemons and servers ----------------------------------------------------------------
for k in 1 2 3; do
	{
		printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\nrouter = %s:%s\n\n' \
			"${S4[$k]}" "$(it_sock "s$k")" "$R4" "$PORT"
		it_conf_serve "$SVC" "$PORT"
	} >"$IT_TMP/s$k.conf"
	it_start_daemon "s$k" "${NS_S[$k]}" "$IT_TMP/s$k.conf"
done
{
	printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\n\n' "$C4" "$(it_sock a)"
	printf '[call %s]\nrouter = %s:%s\ntimeout_ms = 4000\nretries = 2\nmax_inflight = 4096\n\n' \
		"$SVC" "$R4" "$PORT"
	it_conf_call "$DIRECT" 4000 2 "${S4[1]}:$PORT" "${S4[2]}:$PORT" "${S4[3]}:$PORT"
	printf 'max_inflight = 4096\n\n'
} >"$IT_TMP/a.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

SYNTH_PID=("" "" "" "")
SYNTH_LOG=("" "" "" "")
# start_synths DIST: (re)start the synthetic server on each server with DIST
start_synths() {
	local k
	for k in 1 2 3; do
		[ -z "${SYNTH_PID[$k]}" ] || it_kill_pid "${SYNTH_PID[$k]}"
		SYNTH_LOG[k]=$IT_TMP/synth-s$k-${#IT_PIDS[@]}.log
		it_bg "${NS_S[$k]}" "${SYNTH_LOG[$k]}" "$SYNTH" -s "$(it_sock "s$k")" -n "$SVC" \
			-d "$1" -w "$WORKERS" --seed "$k"
		SYNTH_PID[k]=$IT_LAST_PID
	done
	for k in 1 2 3; do
		it_wait_for 5 "synth server $k" grep -qs '^synth server ready' "${SYNTH_LOG[$k]}"
	done
	it_log "$(grep -h '^synth server ready' "${SYNTH_LOG[1]}") (x3)"
}
# served K: requests synth server K answered so far (asked with SIGUSR1)
served() {
	local k=$1 before i
	before=$(grep -c '^served ' "${SYNTH_LOG[$k]}" || true)
	kill -USR1 "${SYNTH_PID[$k]}"
	for ((i = 0; i < 100; i++)); do
		if [ "$(grep -c '^served ' "${SYNTH_LOG[$k]}" || true)" -gt "$before" ]; then
			grep '^served ' "${SYNTH_LOG[$k]}" | tail -n 1 | cut -d' ' -f2
			return 0
		fi
		sleep 0.05
	done
	echo "[$IT_NAME] synth server $k did not report within 5 s" >&2
	echo 0
}

# ---- the router ---------------------------------------------------------------------------
RPID=
# start_router POLICY: r2p2-router with one service, the three servers, POLICY; waits until
# all three are in rotation
start_router() {
	local policy=${1%%:*} n=2 i
	[[ $1 == jbsq:* ]] && n=${1#jbsq:}
	{
		printf '[daemon]\ninterface = %s\ntimeout_ms = 3000\ndown_ms = 2000\n\n' "$IF_R"
		printf '[router synth]\nservice = %s:%s\nservers = %s:%s %s:%s %s:%s\n' "$R4" "$PORT" \
			"${S4[1]}" "$PORT" "${S4[2]}" "$PORT" "${S4[3]}" "$PORT"
		printf 'policy = %s\nn = %s\nqueue = 65536\n' "$policy" "$n"
	} >"$IT_TMP/router.conf"
	# nsenter, not ip netns exec: the router must see this mount namespace's bpffs
	nsenter --net="/run/netns/$IT_NS_R" "$ROUTER" -c "$IT_TMP/router.conf" \
		>>"$IT_TMP/router.log" 2>&1 &
	RPID=$!
	IT_PIDS+=("$RPID")
	for ((i = 0; i < 100; i++)); do
		[ "$(router_status | awk '$1 == "service" { for (i = 2; i < NF; i++)
			if ($i == "in_rotation") print $(i + 1) }')" = 3 ] && break
		it_alive "$RPID" || it_fail "r2p2-router exited: $(tail -n 3 "$IT_TMP/router.log")"
		sleep 0.05
	done
	((i < 100)) || it_fail "r2p2-router: three servers not in rotation within 5 s"
	it_log "r2p2-router running, policy $1 (pid $RPID)"
}
router_status() { "$ROUTER" --status -i "$IF_R" 2>/dev/null || true; }
stop_router() {
	[ -n "$RPID" ] || return 0
	it_kill_pid "$RPID"
	wait "$RPID" 2>/dev/null || true
	RPID=
}

# bench OUTFILE ARGS...: r2p2-bench in the client namespace, bounded by twice a point's
# length plus two minutes (a point's calls, then their 4-second timeouts at most)
bench() {
	local out=$1
	shift
	it_in "$IT_NS_A" timeout $((SECONDS_PER_POINT * 2 + 120)) "$BENCH" -s "$(it_sock a)" -S 8 \
		--json "$@" >"$out" 2>&1 || true
}
# num FILE KEY: KEY of the JSON line in FILE, or -1
num() {
	local v
	v=$(it_json_num "$1" "$2")
	printf '%s\n' "${v:--1}"
}

# ---- 1. the latency the router adds at low load ------------------------------------------
LOWLAT=$IT_TMP/lowlat.txt
: >"$LOWLAT"
if [ "$SEQ" -gt 0 ]; then
	start_synths fixed:0
	[ -z "$ROUTER" ] || start_router rr
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in direct router; do
			[ "$mode" = router ] && [ -z "$ROUTER" ] && continue
			svc=$SVC
			[ "$mode" = direct ] && svc=$DIRECT
			f=$IT_TMP/seq-$mode-$r.txt
			it_log "low load, round $r/$ROUNDS: $mode, $SEQ sequential calls to fixed:0 servers"
			bench "$f" -n "$svc" -c 1 -N "$SEQ" -w 500 -t 4000
			grep -h '^{' "$f" | sed "s/^{/{\"experiment\":\"router-lowload\",\"mode\":\"$mode\",\"round\":$r,/" \
				>>"$RESULTS" || true
			echo "$mode $(num "$f" p50_us) $(num "$f" p99_us) $(($(num "$f" errors) + $(num "$f" timeouts)))" >>"$LOWLAT"
		done
	done
	stop_router
fi

# ---- 2. open-loop load ------------------------------------------------------------------
start_synths "$DIST"
MODES=(direct)
if [ -n "$ROUTER" ]; then
	for p in ${POLICIES//,/ }; do MODES+=("$p"); done
fi
LAG_MAX_US=$(awk -v m="$DIST_MEAN" 'BEGIN { printf "%.0f", (m * 2 > 1000 ? m * 2 : 1000) }')
# run_point MODE SERVICE LOAD: one point of the open loop. The generator shares the CPUs;
# when it fell behind its schedule by more than LAG_MAX_US the point runs again (at most 3
# times) and the attempt with the least lag is kept.
run_point() {
	local mode=$1 svc=$2 load=$3 rate n warm f a lag best="" best_lag=""
	rate=$(awk -v c="$CAPACITY" -v l="$load" 'BEGIN { r = c * l / 100; printf "%.0f", r < 1 ? 1 : r }')
	n=$((rate * SECONDS_PER_POINT > 500 ? rate * SECONDS_PER_POINT : 500))
	warm=$((rate / 2 + 50))
	for a in 1 2 3; do
		f=$IT_TMP/load-${mode/:/}-$load-$a.txt
		it_log "$mode at $load% of $CAPACITY req/s: $rate req/s (Poisson), $n calls (attempt $a)"
		bench "$f" -n "$svc" --rate "$rate" --poisson --seed "$load" -c 4096 -N "$n" \
			-w "$warm" -t 4000
		lag=$(num "$f" max_send_lag_us)
		if [ -z "$best" ] || awk -v x="$lag" -v y="$best_lag" 'BEGIN { exit !(x < y) }'; then
			best=$f
			best_lag=$lag
		fi
		awk -v x="$lag" -v m="$LAG_MAX_US" 'BEGIN { exit !(x >= 0 && x <= m) }' && break
		it_log "  the generator fell $lag us behind its schedule (limit $LAG_MAX_US us)"
	done
	grep -h '^{' "$best" | sed "s/^{/{\"experiment\":\"router\",\"mode\":\"$mode\",\"load_pct\":$load,\"dist\":\"$DIST\",\"workers\":$WORKERS,\"attempts\":$a,/" \
		>>"$RESULTS" || true
	echo "$mode $load $(num "$best" p50_us) $(num "$best" p99_us) $(($(num "$best" errors) + $(num "$best" timeouts))) $(num "$best" throughput_rps) $best_lag" >>"$POINTS"
}

# Load by load, every mode in turn (the router started anew for each), so that drift of the
# shared machine hits the modes at one load alike.
declare -A SPLIT=()
for load in ${LOADS//,/ }; do
	for mode in "${MODES[@]}"; do
		svc=$SVC
		if [ "$mode" = direct ]; then
			svc=$DIRECT
		else
			start_router "$mode"
		fi
		s0=()
		for k in 1 2 3; do s0[k]=$(served "$k"); done
		run_point "$mode" "$svc" "$load"
		for k in 1 2 3; do
			SPLIT[$mode,$k]=$((${SPLIT[$mode,$k]:-0} + $(served "$k") - s0[k]))
		done
		if [ "$mode" != direct ]; then
			{
				echo "---- $load% ----"
				router_status
			} >>"$OUT/router-status-${mode/:/}.txt"
			stop_router
		fi
	done
done
for mode in "${MODES[@]}"; do
	echo "split $mode ${SPLIT[$mode,1]} ${SPLIT[$mode,2]} ${SPLIT[$mode,3]}" >>"$POINTS"
done

# ---- 3. the simulation ------------------------------------------------------------------
SIMS=(single random jbsq:2)
for p in "${SIMS[@]}"; do
	for load in ${LOADS//,/ }; do
		o=$("$QSIM" -s "$NSERVERS" -w "$WORKERS" -d "$DIST" --load "0.$(printf '%02d' "$load")" -p "$p" \
			-N 200000 --seed 1 --json)
		grep '^{' <<<"$o" | sed "s/^{/{\"experiment\":\"router-qsim\",\"load_pct\":$load,/" >>"$RESULTS"
		echo "qsim-$p $load $(grep -o '"p50_us":[0-9.]*' <<<"$o" | cut -d: -f2) $(grep -o '"p99_us":[0-9.]*' <<<"$o" | cut -d: -f2) 0 - 0" >>"$POINTS"
	done
done

# ---- tables -------------------------------------------------------------------------------
title() { case $1 in jbsq:*) echo "JBSQ(${1#jbsq:})" ;; qsim-single) echo "ideal (sim.)" ;;
	qsim-random) echo "random (sim.)" ;; qsim-jbsq:2) echo "JBSQ(2) (sim.)" ;; *) echo "$1" ;; esac; }
COLS=("${MODES[@]}" qsim-single qsim-random qsim-jbsq:2)
echo
echo "## The router experiment ($(date -u +%F), $(nproc) CPUs, kernel $(uname -r))"
echo
echo "Three servers x $WORKERS worker(s), service time $DIST (mean $DIST_MEAN us, workers sleeping),"
echo "capacity $CAPACITY req/s; Poisson arrivals, $SECONDS_PER_POINT s measured per point (at least 500 calls) after"
echo "0.5 s of warm-up, 8-byte requests."
if [ -s "$LOWLAT" ]; then
	echo
	echo "### Low load: sequential calls to servers that answer at once (medians over $ROUNDS rounds)"
	echo
	awk -v seq="$SEQ" '
	function median(a, n,    i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{ k[$1]++; p50[$1, k[$1]] = $2; p99[$1, k[$1]] = $3; err[$1] += $4 }
	END {
		print "| mode | p50 (us) | p99 (us) | errors+timeouts |"
		print "|---|---|---|---|"
		for (m in k) {
			for (i = 1; i <= k[m]; i++) { a[i] = p50[m, i]; b[i] = p99[m, i] }
			M50[m] = median(a, k[m]); M99[m] = median(b, k[m])
		}
		split("direct router", ms, " ")
		for (x = 1; x <= 2; x++) if (ms[x] in k)
			printf "| %s | %.1f | %.1f | %d |\n", (ms[x] == "router" ? "through the router (rr)" : "direct (r2p2d round-robin)"), M50[ms[x]], M99[ms[x]], err[ms[x]]
		if ("router" in k)
			printf "\nThe router adds %.1f us at p50 (%.2fx the direct call) and %.1f us at p99.\n",
				M50["router"] - M50["direct"], M50["router"] / M50["direct"], M99["router"] - M99["direct"]
	}' "$LOWLAT"
fi
# load_table_head: the header of a table with a row per load and a column per mode.
load_table_head() {
	printf '| load |'
	for c in "${COLS[@]}"; do printf ' %s |' "$(title "$c")"; done
	printf '\n|---|'
	for _ in "${COLS[@]}"; do printf -- '---|'; done
	printf '\n'
}

echo
echo "### p99 (us) against offered load"
echo
P99_TABLE=$({
	load_table_head
	for load in ${LOADS//,/ }; do
		printf '| %s%% |' "$load"
		for c in "${COLS[@]}"; do
			awk -v m="$c" -v l="$load" -v lim="$LAG_MAX_US" '$1 == m && $2 == l {
				e = $5 > 0 ? sprintf(" (%d err)", $5) : ""; if ($7 > lim) e = e " (late)"
				printf " %.0f%s |", $4, e; f = 1 } END { if (!f) printf " - |" }' "$POINTS"
		done
		printf '\n'
	done
})
printf '%s\n' "$P99_TABLE"
if [[ $P99_TABLE == *"(late)"* ]]; then
	echo
	echo "(late): in each of 3 attempts the generator fell more than $LAG_MAX_US us behind its"
	echo "schedule (another process had the CPU); the attempt with the least lag is shown."
fi
echo
echo "### p50 (us) against offered load"
echo
{
	load_table_head
	for load in ${LOADS//,/ }; do
		printf '| %s%% |' "$load"
		for c in "${COLS[@]}"; do
			awk -v m="$c" -v l="$load" '$1 == m && $2 == l { printf " %.0f |", $3; f = 1 }
				END { if (!f) printf " - |" }' "$POINTS"
		done
		printf '\n'
	done
}
echo
echo "Requests served by each server over a mode's run (all its loads):"
echo
awk '$1 == "split" { printf "- %s: %s / %s / %s\n", $2, $3, $4, $5 }' "$POINTS"

# ---- 4. the targets -----------------------------------------------------------------------
echo
echo "### Targets at 80% load ($DIST)"
echo
if [[ ,$LOADS, == *,80,* ]]; then
	awk -v have_router="${ROUTER:+1}" '
	$2 == 80 { p99[$1] = $4; err[$1] = $5 }
	function v(x, lim) { return x < 0 ? "n/a" : sprintf("%.3f (%s)", x, x <= lim ? "met" : "missed") }
	END {
		print "| target | measured |"
		print "|---|---|"
		j = -1; r = -1; i = p99["qsim-single"]
		if ("jbsq:2" in p99) j = p99["jbsq:2"]
		if ("random" in p99) r = p99["random"]
		a = j > 0 && i > 0 ? v(j / i, 1.5) : "n/a"
		b = j > 0 && r > 0 ? v(j / r, 0.5) : "n/a"
		printf "| p99 JBSQ(2) / p99 ideal single queue (sim.) <= 1.5 | %s |\n", a
		printf "| p99 JBSQ(2) / p99 random <= 0.5 | %s |\n", b
		printf "\n(p99 at 80%%: JBSQ(2) %s us, random %s us, ideal %s us; simulated JBSQ(2) %s us, random %s us.)\n",
			(j > 0 ? j : "-"), (r > 0 ? r : "-"), i, p99["qsim-jbsq:2"], p99["qsim-random"]
		if (!have_router) print "\nNo router ran: the targets cannot be measured."
	}' "$POINTS"
else
	echo "80% is not among --loads $LOADS: no targets."
fi
[ "${#NOTES[@]}" -eq 0 ] || printf '\nNote: %s\n' "${NOTES[@]}"

# ---- the figure ---------------------------------------------------------------------------
if ! command -v gnuplot >/dev/null; then
	echo
	echo "gnuplot is missing (apt-get install gnuplot-nox, or ./tools/dev.sh bench-router): no figure."
	exit 0
fi
plot=()
i=0
for c in "${COLS[@]}"; do
	dat=$OUT/p99-${c/:/}.dat
	awk -v m="$c" '$1 == m && $4 > 0 { printf "%s %.4f\n", $2, $4 / 1000 }' "$POINTS" >"$dat"
	[ -s "$dat" ] || continue
	i=$((i + 1))
	case $c in
	qsim-single) style="with lines dashtype 2 lw 3 lc rgb 'black'" ;;
	qsim-*) style="with lines dashtype 3 lw 2" ;;
	direct) style="with linespoints pt 4 lw 2 lc rgb 'gray40'" ;;
	*) style="with linespoints pt 7 ps 0.7 lw 2" ;;
	esac
	plot+=("'$dat' using 1:2 $style title '$(title "$c")'")
done
svg=$OUT/router-p99.svg
{
	echo "set terminal svg size 860,520 dynamic font 'sans,12' background rgb 'white'"
	echo "set output '$svg'"
	echo "set title 'p99 latency against load: 3 servers x $WORKERS worker(s), $DIST'"
	echo "set xlabel 'offered load (% of capacity, $CAPACITY req/s)'"
	echo "set ylabel 'p99 latency (ms)'"
	echo "set logscale y"
	echo "set grid"
	echo "set key top left"
	echo "set xrange [0:100]"
	printf 'plot %s\n' "$(IFS=,; echo "${plot[*]}")"
} >"$OUT/router-p99.gp"
if gnuplot "$OUT/router-p99.gp" 2>"$OUT/gnuplot.log"; then
	echo
	echo "Figure: $svg"
	if [ -n "$FIGURE" ] && [ -z "$ROUTER" ]; then
		echo "No router ran: $FIGURE left as it was."
	elif [ -n "$FIGURE" ]; then
		if [[ $FIGURE == *.png ]]; then
			sed -e "s|^set terminal svg.*|set terminal pngcairo size 860,520 font 'sans,10'|" \
				-e "s|^set output .*|set output '$FIGURE'|" "$OUT/router-p99.gp" >"$OUT/router-p99-png.gp"
			gnuplot "$OUT/router-p99-png.gp" 2>>"$OUT/gnuplot.log" && echo "Figure: $FIGURE"
		else
			cp "$svg" "$FIGURE" && echo "Figure: $FIGURE"
		fi
	fi
else
	echo "figure failed: gnuplot $OUT/router-p99.gp: $(tail -n 2 "$OUT/gnuplot.log")"
fi
