#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_router_privileges: once attached, r2p2-router keeps only what its run time needs
# (daemon/router/rt_sandbox.c), and still routes, reloads, reports and unpins.
# Topology: it_router's, with two servers: namespaces C (client r2p2d), R (the router)
# and S1, S2 (r2p2d + echo server each) on one bridge.
#  1. Started by root without `user`: every thread (the loop and the metrics thread) runs
#     as uid 0 under the system call filter (Seccomp 2, NoNewPrivs 1) with exactly
#     CAP_NET_ADMIN and CAP_NET_BIND_SERVICE effective, permitted and bounding, none
#     inheritable or ambient; calls go through; SIGTERM exits 0, detaches and unpins.
#  2. Started as tools/r2p2-router.service starts it (uid 0, its capability bounding set,
#     without CAP_SETPCAP): the same two capabilities; the bounding set stays the unit's.
#     With those capabilities `user = nobody` stops the start (no CAP_CHOWN), and nothing
#     stays attached or pinned.
#  3. With `user = nobody`: the same capabilities and filter as nobody's uid, gid and
#     groups, the pin directories given to nobody; then calls on the fast path and
#     through the slow path's FIFO, `--status`, GET /metrics, a SIGHUP that changes the
#     policy and adds a service on port 900 (bound as nobody with CAP_NET_BIND_SERVICE),
#     a SIGHUP changing `user` (kept: needs a restart) and the rest (applied), no system
#     call refused in the kernel's log but clone3, and SIGTERM: exit 0, detached,
#     unpinned (the empty /sys/fs/bpf/r2p2-router stays: nobody may not write
#     /sys/fs/bpf).
#  4. With `seccomp = no`: no filter, the same two capabilities; root takes back the
#     directory the run as nobody left.
# Runs in a private mount namespace (the router mounts bpffs there if needed).
# shellcheck disable=SC2317 # functions here are run through it_check
set -euo pipefail

# shellcheck source=SCRIPTDIR/private_mnt.sh
source "$(dirname "${BASH_SOURCE[0]}")/private_mnt.sh"

# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SVC=echo.svc
PORT=8000
LOW_PORT=900
CAP_NET_BIND_SERVICE=10
CAP_NET_ADMIN=12
KEPT=$(printf '%016x' $(((1 << CAP_NET_BIND_SERVICE) | (1 << CAP_NET_ADMIN))))
it_router_names "10.82.$IT_NET"
it_init
command -v nsenter >/dev/null || it_skip "nsenter (util-linux) is not installed"
command -v curl >/dev/null || it_skip "curl is not installed"
id nobody >/dev/null 2>&1 || it_skip "no user nobody"
ROUTER=$(it_bin r2p2-router)
XDP_PASS_OBJ=$R2P2_BUILD/tests/xdp_pass.bpf.o
[ -f "$XDP_PASS_OBJ" ] || it_fail "$XDP_PASS_OBJ is not built"
RT_ROOT=${PIN%/*}
IT_ROUTER_PIN=$PIN
trap it_router_on_exit EXIT

# ---- topology and servers (as in it_router) -------------------------------------------
it_router_topology 2
ip -n "$NS_W" link set dev "w$IF_R" xdpdrv obj "$XDP_PASS_OBJ" sec xdp ||
	it_skip "cannot attach a native XDP program to a veth here"
ECHO=("" "" "")
for k in 1 2; do
	{
		printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\nrouter = %s:%s\n\n' \
			"${S4[$k]}" "$(it_sock "s$k")" "$R4" "$PORT"
		it_conf_serve "$SVC" "$PORT"
	} >"$IT_TMP/s$k.conf"
	it_start_daemon "s$k" "${NS_S[$k]}" "$IT_TMP/s$k.conf"
	it_start_echo_on "s$k" "${NS_S[$k]}" -n "$SVC" -c
	ECHO[k]=$IT_LAST_PID
done
{
	printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\n\n' "$C4" "$(it_sock a)"
	printf '[call %s]\nrouter = %s:%s\ntimeout_ms = 300\nretries = 8\n\n' "$SVC" "$R4" "$PORT"
} >"$IT_TMP/a.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

# The router's file where `user = nobody` can read it again on SIGHUP.
chmod 0711 "$IT_TMP"
RDIR=$IT_TMP/router
mkdir -m 0755 "$RDIR"
CONF=$RDIR/router.conf

# router_conf USER POLICY [EXTRA_SECTION]: the router's configuration (JBSQ n = 1 over S1
# and S2, so that 8 calls in flight wait in the FIFO).
router_conf() {
	local user=$1 policy=$2
	printf '[daemon]\ninterface = %s\ntimeout_ms = 1000\ndown_ms = 4000\nmetrics = 127.0.0.1:9465\n' "$IF_R"
	[ -z "$user" ] || printf 'user = %s\n' "$user"
	printf '\n[router echo]\nservice = %s:%s\nservers = %s:%s %s:%s\npolicy = %s\nn = 1\nqueue = 256\n' \
		"$R4" "$PORT" "${S4[1]}" "$PORT" "${S4[2]}" "$PORT" "$policy"
	[ -z "${3:-}" ] || printf '%s\n' "$3"
}

RPID=
RLOG=
# start_router NAME [WRAPPER...]: r2p2-router on $CONF in namespace R (through WRAPPER),
# its log in $IT_TMP/NAME.log.
start_router() {
	RLOG=$IT_TMP/$1.log
	shift
	chmod 0644 "$CONF"
	nsenter --net="/run/netns/$IT_NS_R" "$@" "$ROUTER" -c "$CONF" >"$RLOG" 2>&1 &
	RPID=$!
	IT_PIDS+=("$RPID")
	it_wait_for 10 "the router to attach" grep -q '^router ready' "$RLOG"
	it_log "$(grep -E '^(privileges|seccomp|router ready)' "$RLOG" | tr '\n' ';')"
}

# confined UID GID [BOUNDING]: every thread of the router runs as UID/GID under the filter
# with exactly CAP_NET_ADMIN and CAP_NET_BIND_SERVICE effective and permitted, and those
# (or the mask BOUNDING) bounding; there are two (the loop, the metrics).
confined() {
	local uid=$1 gid=$2 bnd=${3:-$KEPT} task t n=0 set
	for task in /proc/"$RPID"/task/*; do
		t=$RPID/task/${task##*/}
		n=$((n + 1))
		[ "$(it_proc_field "$t" Seccomp)" = 2 ] || { echo "thread $t: Seccomp $(it_proc_field "$t" Seccomp)"; return 1; }
		[ "$(it_proc_field "$t" NoNewPrivs)" = 1 ] || { echo "thread $t: NoNewPrivs is not 1"; return 1; }
		for set in CapEff CapPrm; do
			[ "$(it_proc_field "$t" "$set")" = "$KEPT" ] ||
				{ echo "thread $t: $set $(it_proc_field "$t" "$set"), not $KEPT"; return 1; }
		done
		[ "$(it_proc_field "$t" CapBnd)" = "$bnd" ] ||
			{ echo "thread $t: CapBnd $(it_proc_field "$t" CapBnd), not $bnd"; return 1; }
		for set in CapInh CapAmb; do
			[ "$(it_proc_field "$t" "$set")" = 0000000000000000 ] ||
				{ echo "thread $t: $set $(it_proc_field "$t" "$set")"; return 1; }
		done
		[ "$(it_proc_field "$t" Uid | tr -s '\t ' ' ')" = "$uid $uid $uid $uid" ] ||
			{ echo "thread $t: Uid $(it_proc_field "$t" Uid)"; return 1; }
		[ "$(it_proc_field "$t" Gid | tr -s '\t ' ' ')" = "$gid $gid $gid $gid" ] ||
			{ echo "thread $t: Gid $(it_proc_field "$t" Gid)"; return 1; }
	done
	[ "$n" -eq 2 ] || { echo "$n threads (the loop and the metrics thread expected)"; return 1; }
}

status() { "$ROUTER" --status -i "$IF_R"; }
served() { it_echo_served "${ECHO[$1]}"; }
fifo() { status | awk -v f="$1" '$1 == "fifo" { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1); exit }'; }
rot2() { status | grep -q "service $R4:$PORT .* in_rotation 2"; }
idle() { ! status | grep -q 'outstanding [1-9]'; }
detached() { ! ip -n "$IT_NS_R" link show "$IF_R" | grep -q 'prog/xdp'; }

# stop_router: SIGTERM; exit 0, detached, unpinned, nothing logged at error.
stop_router() {
	local rc=0
	kill -TERM "$RPID"
	it_wait_exit "$RPID" 10 || rc=$?
	it_check "the router exits 0 on SIGTERM ($rc)" test "$rc" -eq 0
	it_check "the program is detached" detached
	it_check "the pins are gone" test ! -e "$PIN"
	it_check "no error logged" test "$(grep -c '^error:' "$RLOG" || true)" -eq 0
}

it_log "--- 1. started by root, no user"
router_conf "" jbsq >"$CONF"
start_router root
it_check "it logged the capabilities it kept" \
	grep -q '^privileges: uid 0, capabilities kept: cap_net_bind_service,cap_net_admin=ep' "$RLOG"
it_check "both threads: uid 0, filter on, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only ($KEPT)" \
	confined 0 0
it_wait_for 5 "both servers in rotation" rot2
it_check "20 calls through the router" it_client -n "$SVC" -S 32 -c 20 -t 3000
stop_router
it_check "and $RT_ROOT, as root owns /sys/fs/bpf" test ! -e "$RT_ROOT"

it_log "--- 2. with the unit's capabilities (tools/r2p2-router.service), no CAP_SETPCAP"
read -ra ucaps < <(sed -n 's/^CapabilityBoundingSet=//p' "$R2P2_SRC/tools/r2p2-router.service")
bset=-all
for c in "${ucaps[@]}"; do
	c=${c#CAP_}
	bset+=",+${c,,}"
done
UNIT=(setpriv "--bounding-set=$bset")
UBND=$("${UNIT[@]}" sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
start_router unit "${UNIT[@]}"
it_check "both threads: uid 0, filter on, the two capabilities; the unit's bounding set ($UBND)" \
	confined 0 0 "$UBND"
it_wait_for 5 "both servers in rotation" rot2
it_check "20 calls through the router" it_client -n "$SVC" -S 32 -c 20 -t 3000
stop_router
router_conf nobody jbsq >"$CONF"
rc=0
nsenter --net="/run/netns/$IT_NS_R" "${UNIT[@]}" "$ROUTER" -c "$CONF" >"$IT_TMP/unit-user.log" 2>&1 || rc=$?
it_check "user = nobody with the unit's capabilities: exit 1 ($rc), saying why" \
	grep -q "^error: giving $RT_ROOT to user nobody: Operation not permitted" "$IT_TMP/unit-user.log"
it_check "nothing stays attached or pinned" test "$rc" -eq 1 -a ! -e "$PIN"
it_check "... nor attached" detached

it_log "--- 3. user = nobody"
NUID=$(id -u nobody)
NGID=$(id -g nobody)
router_conf nobody jbsq >"$CONF"
it_check "the configuration checks" "$ROUTER" -c "$CONF" --check
start_router nobody
it_check "it logged the switch" \
	grep -q "^privileges: uid $NUID, capabilities kept: cap_net_bind_service,cap_net_admin=ep" "$RLOG"
it_check "both threads: uid $NUID, gid $NGID, filter on, the two capabilities only" \
	confined "$NUID" "$NGID"
it_check "nobody's groups only ($(it_proc_field "$RPID" Groups))" \
	test "$(it_proc_field "$RPID" Groups | xargs)" = "$(id -G nobody)"
it_check "the pin directories are nobody's" \
	test "$(stat -c %u "$PIN")" -eq "$NUID" -a "$(stat -c %u "$RT_ROOT")" -eq "$NUID"
it_wait_for 5 "both servers in rotation" rot2

it_log "--- calls: the fast path and the slow path's FIFO"
it_check "40 sequential calls" it_client -n "$SVC" -S 32 -c 40 -t 3000
it_bench -n "$SVC" -S 32 -w 0 -c 8 -N 200 -t 5000 --json >"$IT_TMP/bench-fifo.out" 2>&1 ||
	it_fail "r2p2-bench failed: $(tail -n 3 "$IT_TMP/bench-fifo.out")"
ok=$(it_json_num "$IT_TMP/bench-fifo.out" ok)
it_check "200 calls, 8 in flight against 2 x n=1, all answered ($ok)" test "$ok" -eq 200
enq=$(fifo enqueued) deq=$(fifo dispatched)
it_check "requests waited in the FIFO ($enq) and all left it ($deq)" test "$enq" -gt 0 -a "$deq" -eq "$enq"
it_wait_for 3 "every count back to 0" idle

it_log "--- --status and GET /metrics"
it_check "--status names the service" grep -q "^service $R4:$PORT policy jbsq n 1 in_rotation 2" <<<"$(status)"
it_in "$IT_NS_R" curl -sS -m 5 -o "$IT_TMP/metrics.txt" -w '%{http_code}' \
	http://127.0.0.1:9465/metrics >"$IT_TMP/metrics.code"
it_check "GET /metrics answers 200 ($(cat "$IT_TMP/metrics.code"))" grep -qx 200 "$IT_TMP/metrics.code"
mfb=$(awk '/^r2p2_router_server_feedback_total/ { s += $2 } END { print s + 0 }' "$IT_TMP/metrics.txt")
it_check "its FEEDBACK count is every call's ($mfb = 240)" test "$mfb" -eq 240
it_check "two servers up" test "$(grep -c '^r2p2_router_server_up{.*} 1$' "$IT_TMP/metrics.txt")" -eq 2

it_log "--- SIGHUP: round-robin, and a service on port $LOW_PORT"
router_conf nobody rr "$(printf '[router low]\nservice = %s:%s\nservers = %s:%s\n' \
	"$R4" "$LOW_PORT" "${S4[1]}" "$PORT")" >"$CONF"
kill -HUP "$RPID"
it_wait_for 5 "the reload" grep -q 'reloaded .*: 2 service(s)' "$RLOG"
it_check "policy rr" grep -q "^service $R4:$PORT policy rr in_rotation 2" <<<"$(status)"
it_check "the new service is routed" grep -q "^service $R4:$LOW_PORT policy jbsq" <<<"$(status)"
it_check "its slow-path socket is bound on $R4:$LOW_PORT" \
	grep -q "$R4:$LOW_PORT" <<<"$(it_in "$IT_NS_R" ss -H -uln "sport = :$LOW_PORT")"
b1=$(served 1) b2=$(served 2)
it_check "20 sequential calls" it_client -n "$SVC" -S 32 -c 20 -t 3000
a1=$(served 1) a2=$(served 2)
it_check "round-robin split them 10/10 ($((a1 - b1))/$((a2 - b2)))" \
	test $((a1 - b1)) -eq 10 -a $((a2 - b2)) -eq 10

it_log "--- SIGHUP asking for another user, and JBSQ again without the second service"
router_conf root jbsq >"$CONF"
kill -HUP "$RPID"
it_wait_for 5 "the warning" grep -q 'reload: user and seccomp need a restart' "$RLOG"
it_wait_for 5 "the reload of the rest" grep -q 'reloaded .*: 1 service(s)' "$RLOG"
it_check "policy jbsq again" grep -q "^service $R4:$PORT policy jbsq n 1 in_rotation 2" <<<"$(status)"
it_check "still nobody, still confined" confined "$NUID" "$NGID"
it_check "10 calls" it_client -n "$SVC" -S 32 -c 10 -t 3000

if dmesg >/dev/null 2>&1; then
	# The kernel's log of refusals (it rate-limits these lines, so this may miss some;
	# clone3 is answered ENOSYS on purpose).
	tids=$(for t in /proc/"$RPID"/task/*; do echo " pid=${t##*/} "; done)
	refused=$(dmesg | grep 'type=1326' | grep -F "$tids" | grep -v ' syscall=435 ' |
		grep -o 'syscall=[0-9]*' | tr '\n' ' ' || true)
	it_check "the kernel logged no refused system call ($refused)" test -z "$refused"
fi

it_log "--- SIGTERM"
stop_router
it_check "$RT_ROOT stays, empty, for the next start (nobody may not write /sys/fs/bpf)" \
	test -d "$RT_ROOT" -a -z "$(ls -A "$RT_ROOT")"
it_log "--- 4. seccomp = no"
router_conf "" jbsq | sed 's/^metrics = .*/&\nseccomp = no/' >"$CONF"
start_router nofilter
it_check "it says so" grep -q '^warn: seccomp = no: no system call filter' "$RLOG"
it_check "root took $RT_ROOT back from nobody" test "$(stat -c %u "$RT_ROOT")" -eq 0
it_check "no filter (Seccomp $(it_proc_field "$RPID" Seccomp)), the two capabilities all the same" \
	test "$(it_proc_field "$RPID" Seccomp)" = 0 -a "$(it_proc_field "$RPID" CapEff)" = "$KEPT" \
	-a "$(it_proc_field "$RPID" NoNewPrivs)" = 1
stop_router
it_pass "the router runs as nobody, filtered, with two capabilities, and routes, reloads and unpins"
