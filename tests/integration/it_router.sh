#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_router: r2p2-router (bpf/router.bpf.c + daemon/router/) between a client and three
# servers. Topology: namespaces C (client: r2p2d + echo client), R (router) and S1..S3
# (r2p2d + echo server each) on one bridge in namespace W, all in 10.81.N.0/24. The
# client calls the service address R:8000; the router rewrites each request's first
# packet to a server (XDP_TX back to the bridge); the server answers the client directly
# and sends FEEDBACK to R:8000. Proves, counting executions at the three echo servers:
#   - every call is answered, each executed exactly once, and every server gets some
#     (JBSQ(2)); FEEDBACK gives every count back (outstanding 0, none aged out);
#   - a multi-packet request works (only its first packet goes through the router);
#   - 16 calls in flight against 6 places: requests wait in the FIFO and none is lost;
#   - a bad file stops the start with its line; SIGHUP to round-robin over two servers
#     while calls run: none fails, the third gets nothing more, round-robin splits
#     exactly; a SIGHUP with a broken file keeps the running configuration;
#   - a server killed (kill -9) mid-run: every call still succeeds (the client retries,
#     the router takes the server out), later calls never go to it, and it is put back
#     after down_ms and serves again once restarted;
#   - bpftool shows the per-server counts by field name; SIGTERM detaches and unpins.
# Mode: plain, or R2P2_IT_ROUTER_MODE=tls or sealed: all servers share one STEK, so any
# server resumes any client's ticket (tls) or opens its association (sealed) through the
# router; checked at each server.
# R2P2_IT_BACKEND=xdp runs the servers' r2p2d on the xdp backend (routed packets then
# arrive through their XDP program and AF_XDP sockets).
# Runs in a private mount namespace (the router mounts bpffs there if needed).
set -euo pipefail

# shellcheck source=SCRIPTDIR/private_mnt.sh
source "$(dirname "${BASH_SOURCE[0]}")/private_mnt.sh"

# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE=${R2P2_IT_ROUTER_MODE:-plain}
SVC=echo.svc
PORT=8000
it_router_names "10.81.$IT_NET"

case "$MODE" in
sealed)
	# shellcheck source=SCRIPTDIR/lib_sealed.sh
	source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"
	it_sealed_init
	;;
tls) it_tls_init ;;
plain) it_init ;;
*) echo "FAIL: it_router: unknown R2P2_IT_ROUTER_MODE '$MODE'"; exit 1 ;;
esac
command -v nsenter >/dev/null || it_skip "nsenter (util-linux) is not installed"
BPFTOOL=$(command -v bpftool || { [ -x /usr/sbin/bpftool ] && echo /usr/sbin/bpftool; } || true)
[ -n "$BPFTOOL" ] || it_skip "bpftool is not installed (apt-get install bpftool)"
ROUTER=$(it_bin r2p2-router)
XDP_PASS_OBJ=$R2P2_BUILD/tests/xdp_pass.bpf.o
[ -f "$XDP_PASS_OBJ" ] || it_fail "$XDP_PASS_OBJ is not built"

IT_ROUTER_PIN=$PIN
trap it_router_on_exit EXIT

# ---- topology ------------------------------------------------------------------------
it_router_topology 3
# XDP_TX on the router's veth reaches the bridge only if the peer runs NAPI
ip -n "$NS_W" link set dev "w$IF_R" xdpdrv obj "$XDP_PASS_OBJ" sec xdp ||
	it_skip "cannot attach a native XDP program to a veth here"
it_log "client $C4, router $R4, servers ${S4[1]} ${S4[2]} ${S4[3]} on bridge br0 in $NS_W ($MODE)"

# ---- daemons -------------------------------------------------------------------------
[ "$MODE" = plain ] || it_tls_certs "$IT_TLS" "$SVC"
# server_conf K: r2p2d of server K, sending FEEDBACK to the router
server_conf() {
	local k=$1
	if [ "$MODE" = sealed ]; then
		cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-s$k.keys"
		it_conf_daemon_sealed "s$k" "${S4[$k]}" "$IT_TLS/stek-s$k.keys" 1 "router = $R4:$PORT"
		it_conf_serve_sealed "$SVC" "$PORT" "$IT_TLS/$SVC.crt" "$IT_TLS/$SVC.key"
	elif [ "$MODE" = tls ]; then
		cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-s$k.keys"
		it_conf_daemon_tls "s$k" "${S4[$k]}" "$IT_TLS/stek-s$k.keys" 1 "router = $R4:$PORT"
		it_conf_serve_tls "$SVC" "$PORT" "$IT_TLS/$SVC.crt" "$IT_TLS/$SVC.key"
	else
		printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = %s\nrouter = %s:%s\n\n' \
			"${S4[$k]}" "$(it_sock "s$k")" "${R2P2_IT_BACKEND:-udp}" "$R4" "$PORT"
		it_conf_serve "$SVC" "$PORT"
	fi
}
ECHO=("" "" "" "")
start_server() {
	local k=$1
	server_conf "$k" >"$IT_TMP/s$k.conf"
	it_start_daemon "s$k" "${NS_S[$k]}" "$IT_TMP/s$k.conf"
	it_start_echo_on "s$k" "${NS_S[$k]}" -n "$SVC" -c
	ECHO[$k]=$IT_LAST_PID
}
for k in 1 2 3; do
	start_server "$k"
done
if [ "$MODE" != plain ]; then
	{
		if [ "$MODE" = sealed ]; then
			it_conf_daemon_sealed a "$C4" - 1
		else
			printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\n\n' "$C4" "$(it_sock a)"
		fi
		printf '[call %s]\nsecurity = %s\nca = %s\nrouter = %s:%s\ntimeout_ms = 300\nretries = 8\n\n' \
			"$SVC" "$MODE" "$IT_TLS/ca.crt" "$R4" "$PORT"
	} >"$IT_TMP/a.conf"
else
	{
		printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\n\n' "$C4" "$(it_sock a)"
		printf '[call %s]\nrouter = %s:%s\ntimeout_ms = 300\nretries = 8\n\n' "$SVC" "$R4" "$PORT"
		# the same service straight to S1, for the latency the router adds (plain
		# mode names no service on the wire)
		printf '[call direct.svc]\nserver = %s:%s\ntimeout_ms = 300\nretries = 8\n\n' "${S4[1]}" "$PORT"
	} >"$IT_TMP/a.conf"
fi
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

# router_conf POLICY SERVER_INDEX...: the router's configuration
router_conf() {
	local policy=$1 k list=""
	shift
	for k in "$@"; do
		list+=" ${S4[$k]}:$PORT"
	done
	printf '[daemon]\ninterface = %s\ntimeout_ms = 1000\ndown_ms = 4000\nmetrics = 127.0.0.1:9465\n\n' \
		"$IF_R"
	printf '[router echo]\nservice = %s:%s\nservers =%s\npolicy = %s\nn = 2\nqueue = 256\n' \
		"$R4" "$PORT" "$list" "$policy"
}
router_conf jbsq 1 2 3 >"$IT_TMP/router.conf"
it_check "the configuration checks" "$ROUTER" -c "$IT_TMP/router.conf" --check
sed 's/^policy = jbsq$/policy = fastest/' "$IT_TMP/router.conf" >"$IT_TMP/bad.conf"
rc=0
nsenter --net="/run/netns/$IT_NS_R" "$ROUTER" -c "$IT_TMP/bad.conf" >"$IT_TMP/bad.out" 2>&1 || rc=$?
it_check "a bad file stops the start, naming its line ($(cat "$IT_TMP/bad.out"))" \
	grep -q "bad.conf:10: \[router echo\] policy: 'fastest'" "$IT_TMP/bad.out"
it_check "exit status 1 ($rc), nothing attached" test "$rc" -eq 1 -a ! -e "$PIN"
nsenter --net="/run/netns/$IT_NS_R" "$ROUTER" -c "$IT_TMP/router.conf" >"$IT_TMP/router.log" 2>&1 &
RPID=$!
IT_PIDS+=("$RPID")
it_wait_for 5 "the router to attach" grep -q '^router ready' "$IT_TMP/router.log"
it_log "$(grep '^router ready' "$IT_TMP/router.log")"

status() { "$ROUTER" --status -i "$IF_R"; }
# srv FIELD K: FIELD of server K's status line
srv() { status | awk -v a="${S4[$2]}:$PORT" -v f="$1" '$1 == "server" && $2 == a {
	for (i = 3; i < NF; i++) if ($i == f) print $(i + 1) }'; }
fifo() { status | awk -v f="$1" '$1 == "fifo" { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }'; }
rotation() { status | awk '$1 == "service" { for (i = 2; i < NF; i++) if ($i == "in_rotation") print $(i + 1) }'; }
served() { it_echo_served "${ECHO[$1]}"; }
all_idle() { [ "$(srv outstanding 1)" = 0 ] && [ "$(srv outstanding 2)" = 0 ] && [ "$(srv outstanding 3)" = 0 ]; }
rot3() { [ "$(rotation)" = 3 ]; }
it_wait_for 5 "all three servers resolved and in rotation" rot3

# ---- JBSQ(2): every call answered once, every server used, FEEDBACK gives back ----------
it_log "--- JBSQ(2), sequential"
it_check "60 calls through the router" it_client -n "$SVC" -S 32 -c 60 -t 3000
n1=$(served 1) n2=$(served 2) n3=$(served 3)
it_check "each call executed exactly once ($n1 + $n2 + $n3 = 60)" test $((n1 + n2 + n3)) -eq 60
it_check "every server got some (S1 $n1, S2 $n2, S3 $n3)" test "$n1" -gt 0 -a "$n2" -gt 0 -a "$n3" -gt 0
it_wait_for 3 "FEEDBACK to bring every outstanding count back to 0" all_idle
fb=$(($(srv feedback 1) + $(srv feedback 2) + $(srv feedback 3)))
aged=$(($(srv aged 1) + $(srv aged 2) + $(srv aged 3)))
it_check "a FEEDBACK per call ($fb), none aged out ($aged)" test "$fb" -eq 60 -a "$aged" -eq 0
status >"$IT_TMP/status-1.txt"
"$(it_bin r2p2ctl)" router "$IF_R" >"$IT_TMP/ctl-router-1.txt"
it_check "r2p2ctl router says the same as r2p2-router --status" \
	cmp -s "$IT_TMP/status-1.txt" "$IT_TMP/ctl-router-1.txt"
dump=$("$BPFTOOL" map dump pinned "$PIN/r2p2_rt_load")
printf '%s\n' "$dump" >"$IT_TMP/rt_load-1.txt"
# modes: the client's session or association from one server is taken up by all of them
if [ "$MODE" = sealed ]; then
	minted=0
	for k in 1 2 3; do
		st=$(it_tls_status "s$k")
		o=$(it_sealed_counter "$st" server opened)
		minted=$((minted + $(it_sealed_counter "$st" server minted)))
		it_check "S$k opened sealed requests under the shared STEK ($o)" test "$o" -gt 0
	done
	it_check "one association minted for all three servers ($minted)" test "$minted" -eq 1
elif [ "$MODE" = tls ]; then
	full=0
	for k in 1 2 3; do
		st=$(it_tls_status "s$k")
		res=$(it_tls_counter "$st" server resumed)
		full=$((full + $(it_tls_counter "$st" server full_handshakes)))
		it_check "S$k resumed tickets it may not have issued ($res)" test "$res" -gt 0
	done
	it_check "one full handshake in all ($full), every other call a resumption" test "$full" -eq 1
fi
it_check "bpftool shows the counts by field name" grep -q '"outstanding": 0' <<<"$dump"
it_check "bpftool shows the per-policy counters" grep -q '"dispatched"' \
	<<<"$("$BPFTOOL" map dump pinned "$PIN/r2p2_rt_pstats")"
if command -v curl >/dev/null; then
	# the same counts at the router's Prometheus endpoint (metrics = 127.0.0.1:9465)
	it_in "$IT_NS_R" curl -sS -m 5 http://127.0.0.1:9465/metrics >"$IT_TMP/router-metrics.txt"
	mfb=$(awk '/^r2p2_router_server_feedback_total/ { s += $2 } END { print s + 0 }' \
		"$IT_TMP/router-metrics.txt")
	it_check "GET /metrics: the servers' FEEDBACK counts sum to 60 ($mfb)" test "$mfb" -eq 60
	it_check "GET /metrics: three servers up" \
		test "$(grep -c '^r2p2_router_server_up{.*} 1$' "$IT_TMP/router-metrics.txt")" -eq 3
	PROMTOOL=$(command -v promtool || true)
	[ -n "$PROMTOOL" ] || PROMTOOL=$R2P2_BUILD/.tools/usr/bin/promtool
	if [ -x "$PROMTOOL" ]; then
		it_check "promtool check metrics accepts the router's" \
			"$PROMTOOL" check metrics <"$IT_TMP/router-metrics.txt"
	fi
fi

if [ "$MODE" = plain ]; then
	# what the router adds at low load, measured (not asserted: the machine is shared)
	it_bench -n "$SVC" -S 32 -w 100 -c 1 -N 1000 -t 3000 --json >"$IT_TMP/lat-router.out" 2>&1 ||
		it_fail "r2p2-bench through the router failed"
	it_bench -n direct.svc -S 32 -w 100 -c 1 -N 1000 -t 3000 --json >"$IT_TMP/lat-direct.out" 2>&1 ||
		it_fail "r2p2-bench straight to S1 failed"
	it_log "  sequential 32-byte calls, p50: through the router" \
		"$(it_json_num "$IT_TMP/lat-router.out" p50_us) us, straight to a server" \
		"$(it_json_num "$IT_TMP/lat-direct.out" p50_us) us"
	t_lat=$(($(served 1) + $(served 2) + $(served 3)))
	it_check "2200 more executions ($((t_lat - 60)))" test $((t_lat - 60)) -eq 2200
	it_wait_for 3 "every count back to 0" all_idle
else
	t_lat=60
fi

it_log "--- a multi-packet request"
it_check "10 calls of 5000 bytes (4 packets each)" it_client -n "$SVC" -S 5000 -c 10 -t 3000
t=$(($(served 1) + $(served 2) + $(served 3)))
it_check "executed once each ($((t - t_lat)))" test $((t - t_lat)) -eq 10

it_log "--- 16 in flight against 3 x n=2: the FIFO"
it_bench -n "$SVC" -S 32 -w 0 -c 16 -N 400 -t 5000 --json >"$IT_TMP/bench-fifo.out" 2>&1 ||
	it_fail "r2p2-bench failed: $(tail -n 3 "$IT_TMP/bench-fifo.out")"
ok=$(it_json_num "$IT_TMP/bench-fifo.out" ok)
it_check "400 calls answered ($ok)" test "$ok" -eq 400
enq=$(fifo enqueued) deq=$(fifo dispatched)
it_log "  fifo: $(status | grep fifo)"
it_check "requests waited in the FIFO ($enq) and all left it ($deq)" test "$enq" -gt 0 -a "$deq" -eq "$enq"
it_wait_for 3 "every count back to 0" all_idle
t2=$(($(served 1) + $(served 2) + $(served 3)))
it_check "executed exactly once each ($((t2 - t)))" test $((t2 - t)) -eq 400

it_log "--- SIGHUP: round-robin over S1 and S2, while calls run"
router_conf rr 1 2 >"$IT_TMP/router.conf"
it_bench -n "$SVC" -S 32 -w 0 -c 4 -N 600 -t 5000 --json >"$IT_TMP/bench-reload.out" 2>&1 &
BPID=$!
sleep 0.2
kill -HUP "$RPID"
it_wait_for 5 "the reload" grep -q 'reloaded .*: 1 service' "$IT_TMP/router.log"
wait "$BPID" || it_fail "r2p2-bench failed during the reload: $(tail -n 3 "$IT_TMP/bench-reload.out")"
ok=$(it_json_num "$IT_TMP/bench-reload.out" ok)
it_check "600 calls across the reload, none lost ($ok)" test "$ok" -eq 600
it_check "two servers in rotation" test "$(rotation)" -eq 2
it_check "policy rr" grep -q 'policy rr' <<<"$(status)"
b1=$(served 1) b2=$(served 2) b3=$(served 3)
it_check "30 sequential calls" it_client -n "$SVC" -S 32 -c 30 -t 3000
a1=$(served 1) a2=$(served 2) a3=$(served 3)
it_check "round-robin split them 15/15 ($((a1 - b1))/$((a2 - b2))), S3 got none ($((a3 - b3)))" \
	test $((a1 - b1)) -eq 15 -a $((a2 - b2)) -eq 15 -a $((a3 - b3)) -eq 0

it_log "--- SIGHUP with a broken file: the running configuration stays"
cp "$IT_TMP/router.conf" "$IT_TMP/router.good"
echo "colour = red" >>"$IT_TMP/router.conf"
kill -HUP "$RPID"
it_wait_for 5 "the refusal" grep -q "reload: .*colour: unknown key.*keeping the running" "$IT_TMP/router.log"
it_check "still round-robin over two" test "$(rotation)" -eq 2
it_check "10 calls" it_client -n "$SVC" -S 32 -c 10 -t 3000

it_log "--- back to JBSQ(2) over three; S2 killed mid-run"
router_conf jbsq 1 2 3 >"$IT_TMP/router.conf"
kill -HUP "$RPID"
it_wait_for 5 "three servers in rotation again" rot3
it_bench -n "$SVC" -S 32 -w 0 -c 16 --rate 300 -N 300 -t 5000 --json >"$IT_TMP/bench-kill.out" 2>&1 &
BPID=$!
sleep 0.4 # a third of the way through the 300 calls (1 s at 300/s)
kill -KILL "${IT_DAEMON_PID[s2]}"
wait "${IT_DAEMON_PID[s2]}" 2>/dev/null || true
it_log "  killed r2p2d of S2 (pid ${IT_DAEMON_PID[s2]})"
wait "$BPID" || it_fail "r2p2-bench failed: $(tail -n 3 "$IT_TMP/bench-kill.out")"
ok=$(it_json_num "$IT_TMP/bench-kill.out" ok)
it_check "all 300 calls answered despite the kill ($ok)" test "$ok" -eq 300
it_wait_for 5 "the router to take S2 out" grep -q "${S4[2]}:$PORT: .*taken out" "$IT_TMP/router.log"
status >"$IT_TMP/status-kill.txt"
d2=$(srv dispatched 2)
it_check "S2 down in the status" grep -q "server ${S4[2]}:$PORT slot [0-9]* down " <<<"$(status)"
s2_idle() { [ "$(srv outstanding 2)" = 0 ]; }
it_wait_for 3 "S2's unanswered requests to be given back" s2_idle
it_check "given back by ageing, not by FEEDBACK (aged $(srv aged 2))" test "$(srv aged 2)" -ge 1
s0=$(it_ms)
it_check "30 later calls all succeed" it_client -n "$SVC" -S 32 -c 30 -t 3000
it_log "  30 calls in $(($(it_ms) - s0)) ms"
it_check "none of them went to S2 ($(srv dispatched 2) = $d2)" test "$(srv dispatched 2)" -eq "$d2"
it_log "--- S2 restarted; put back after down_ms"
start_server 2
it_wait_for 10 "S2 back in rotation" grep -q "${S4[2]}:$PORT: back in rotation" "$IT_TMP/router.log"
it_check "60 calls" it_client -n "$SVC" -S 32 -c 60 -t 3000
n2=$(served 2)
it_check "S2 serves again ($n2)" test "$n2" -gt 0

it_log "--- SIGTERM"
kill -TERM "$RPID"
rc=0
it_wait_exit "$RPID" 10 || rc=$?
it_check "the router exits 0 on SIGTERM ($rc)" test "$rc" -eq 0
it_check "the pins are gone" test ! -e "$PIN"
it_check "the program is detached" test -z "$(ip -n "$IT_NS_R" link show "$IF_R" | grep -o 'prog/xdp.*')"
it_pass "calls routed per request in XDP, $MODE mode"
