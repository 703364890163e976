# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Helpers for the two-namespace integration tests (tests/integration/it_*.sh),
# also used by tools/demo.sh and tools/bench.sh. Source it after `set -euo pipefail`.
#
# Topology (it_setup_pair):   netns A  10.77.N.1 / fd77:N::1  <--veth-->  10.77.N.2 / fd77:N::2  netns B
# With a relay (it_setup_relay):  A 10.77.N.1 <--> 10.77.N.3  R  10.78.N.3 <--> 10.78.N.2 B
# N is derived from $$, namespace and interface names carry $$, so runs never collide.
#
# Everything started through these helpers is recorded and ended by the EXIT
# trap (also on Ctrl-C, SIGTERM and failure), which then deletes the namespaces.
# Daemon, app and tool logs go to $IT_TMP; on failure their tails are printed.

R2P2_BUILD=${R2P2_BUILD:-./build}
R2P2_SRC=${R2P2_SRC:-.}
R2P2_BUILD=$(cd "$R2P2_BUILD" 2>/dev/null && pwd || printf '%s' "$R2P2_BUILD")
R2P2_SRC=$(cd "$R2P2_SRC" 2>/dev/null && pwd || printf '%s' "$R2P2_SRC")

IT_NAME=${IT_NAME:-$(basename "$0" .sh)}
IT_MODE=${IT_MODE:-test} # test: print PASS/FAIL lines; demo: only what happened
IT_ID=$$
IT_NET=$((IT_ID % 250))
IT_NS_A=r2p2-a-$IT_ID
IT_NS_B=r2p2-b-$IT_ID
IT_NS_R=r2p2-r-$IT_ID
IT_A4=10.77.$IT_NET.1
IT_B4=10.77.$IT_NET.2
IT_A6=fd77:$IT_NET::1
IT_B6=fd77:$IT_NET::2
IT_R4_A=10.77.$IT_NET.3 # relay, facing A
IT_R4_B=10.78.$IT_NET.3 # relay, facing B
IT_B4_R=10.78.$IT_NET.2 # B, behind the relay
IT_ECHO_PORT=8000
IT_TMP=
IT_RESULT=
IT_LAST_PID=
IT_ECHO_PID=
IT_PIDS=()
IT_NAMESPACES=()
declare -A IT_DAEMON_PID=()

it_log() { printf '[%s] %s\n' "$IT_NAME" "$*"; }

it_skip() {
	IT_RESULT=skip
	echo "SKIPPED: $*"
	exit 77
}

it_pass() {
	IT_RESULT=pass
	echo "PASS: $IT_NAME${1:+: $1}"
	exit 0
}

it_fail() {
	IT_RESULT=fail
	if [ "$IT_MODE" = test ]; then
		echo "FAIL: $IT_NAME: $*"
	else
		echo "[$IT_NAME] error: $*" >&2
	fi
	exit 1
}

# it_check DESCRIPTION COMMAND...: run a check, print "ok: ..." or fail the test.
it_check() {
	local what=$1
	shift
	if "$@"; then
		it_log "  ok: $what"
	else
		it_fail "$what"
	fi
}

# it_bin NAME: the path of a built binary (top of the build dir, or tests/).
it_bin() {
	local p
	for p in "$R2P2_BUILD/$1" "$R2P2_BUILD/tests/$1"; do
		if [ -x "$p" ]; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	echo "[$IT_NAME] error: $1 is not built in $R2P2_BUILD (build first: ./tools/dev.sh build)" >&2
	return 1
}

it_dump_logs() {
	local f
	[ -n "$IT_TMP" ] && [ -d "$IT_TMP" ] || return 0
	for f in "$IT_TMP"/*.log; do
		[ -s "$f" ] || continue
		echo "---- $(basename "$f") (last 40 lines) ----"
		tail -n 40 "$f"
	done
}

# it_kill_pid PID: SIGTERM, up to 3 s, then SIGKILL. Only for processes we started.
it_kill_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

it_cleanup() {
	local pid ns
	disown -a 2>/dev/null || true # no "Killed" job notices for what we end here
	for pid in "${IT_PIDS[@]}"; do
		it_kill_pid "$pid"
	done
	for ns in "${IT_NAMESPACES[@]}"; do
		# Whatever still runs inside a namespace we created was started by us.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ -n "$IT_TMP" ] && [ -z "${R2P2_KEEP_TMP:-}" ]; then
		rm -rf "$IT_TMP"
	fi
}

it_on_exit() {
	local rc=$?
	set +e
	trap - EXIT
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		if [ -z "$IT_RESULT" ] && [ "$IT_MODE" = test ]; then
			echo "FAIL: $IT_NAME: aborted (exit $rc)"
		fi
		it_dump_logs
	fi
	it_cleanup
	exit "$rc"
}

it_on_err() {
	# Only the test's own shell: background subshells report through their exit status.
	[ "$BASHPID" = "$$" ] || return 0
	echo "[$IT_NAME] command failed (line ${BASH_LINENO[0]}): $BASH_COMMAND" >&2
}

# it_init: preflight (root, ip netns, veth) and traps. Skips (exit 77) when this machine cannot run it.
it_init() {
	[ "$(id -u)" -eq 0 ] || it_skip "needs root (network namespaces)"
	command -v ip >/dev/null || it_skip "iproute2 (ip) is not installed"
	command -v timeout >/dev/null || it_skip "coreutils timeout is missing"
	IT_TMP=$(mktemp -d "/tmp/r2p2-it-$IT_NAME.XXXXXX")
	trap it_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	set -E
	trap it_on_err ERR
	if ! ip netns add "$IT_NS_A" 2>"$IT_TMP/netns.err"; then
		it_skip "cannot create network namespaces: $(head -n1 "$IT_TMP/netns.err")"
	fi
	IT_NAMESPACES+=("$IT_NS_A")
	if ! ip link add "r2probe$IT_ID" type veth peer name "r2probp$IT_ID" 2>"$IT_TMP/veth.err"; then
		it_skip "no veth support: $(head -n1 "$IT_TMP/veth.err")"
	fi
	ip link del "r2probe$IT_ID" 2>/dev/null || true
}

# it_netns NAME: create a namespace (recorded for cleanup) with lo up.
it_netns() {
	local ns=$1 have
	for have in "${IT_NAMESPACES[@]}"; do
		[ "$have" = "$ns" ] && { ip -n "$ns" link set lo up; return 0; }
	done
	ip netns add "$ns"
	IT_NAMESPACES+=("$ns")
	ip -n "$ns" link set lo up
}

# it_link NS1 IF1 ADDR4_1 ADDR6_1 NS2 IF2 ADDR4_2 ADDR6_2: a veth pair between two namespaces,
# two queues each side (AF_XDP binds per queue); "-" skips an address.
it_link() {
	local ns1=$1 if1=$2 a41=$3 a61=$4 ns2=$5 if2=$6 a42=$7 a62=$8
	if ! ip link add "$if1" numtxqueues 2 numrxqueues 2 netns "$ns1" type veth \
		peer name "$if2" numtxqueues 2 numrxqueues 2 netns "$ns2" 2>/dev/null; then
		ip link add "$if1" netns "$ns1" type veth peer name "$if2" netns "$ns2"
	fi
	[ "$a41" = - ] || ip -n "$ns1" addr add "$a41/24" dev "$if1"
	[ "$a42" = - ] || ip -n "$ns2" addr add "$a42/24" dev "$if2"
	[ "$a61" = - ] || ip -n "$ns1" addr add "$a61/64" dev "$if1" nodad
	[ "$a62" = - ] || ip -n "$ns2" addr add "$a62/64" dev "$if2" nodad
	ip -n "$ns1" link set "$if1" up
	ip -n "$ns2" link set "$if2" up
}

# it_setup_pair: namespaces A and B joined by one veth pair (IPv4 and IPv6).
it_setup_pair() {
	it_netns "$IT_NS_A"
	it_netns "$IT_NS_B"
	it_link "$IT_NS_A" "r2a$IT_ID" "$IT_A4" "$IT_A6" "$IT_NS_B" "r2b$IT_ID" "$IT_B4" "$IT_B6"
	it_log "namespaces $IT_NS_A ($IT_A4, $IT_A6) <-> $IT_NS_B ($IT_B4, $IT_B6)"
}

# it_setup_relay: A <-> R <-> B, IPv4 only, no routing: A reaches only R, R reaches B.
# The relay runs in R so that neither daemon's XDP program ever sees relay traffic.
it_setup_relay() {
	it_netns "$IT_NS_A"
	it_netns "$IT_NS_B"
	it_netns "$IT_NS_R"
	it_link "$IT_NS_A" "r2a$IT_ID" "$IT_A4" - "$IT_NS_R" "r2ra$IT_ID" "$IT_R4_A" -
	it_link "$IT_NS_R" "r2rb$IT_ID" "$IT_R4_B" - "$IT_NS_B" "r2b$IT_ID" "$IT_B4_R" -
	it_log "namespaces $IT_NS_A ($IT_A4) <-> $IT_NS_R ($IT_R4_A | $IT_R4_B) <-> $IT_NS_B ($IT_B4_R)"
}

# it_in NS COMMAND...: run in a namespace (foreground).
it_in() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# it_bg NS LOG COMMAND...: start in the background, output to LOG; pid in IT_LAST_PID.
# Must not be called from a subshell ($(...)), or the pid would be lost.
it_bg() {
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	IT_LAST_PID=$!
	IT_PIDS+=("$IT_LAST_PID")
}

# it_wait_for SECS DESCRIPTION COMMAND...: poll every 50 ms until COMMAND succeeds.
it_wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 20; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	it_fail "timed out after ${secs}s waiting for $what"
}

it_alive() { kill -0 "$1" 2>/dev/null; }

# it_more_than N COMMAND...: whether COMMAND prints a number above N; it_equals N COMMAND...:
# equal to N. For it_wait_for, which runs its COMMAND anew each time (a "$(...)" among its
# arguments would be expanded once, before the first try).
it_more_than() {
	local n=$1
	shift
	[ "$("$@")" -gt "$n" ]
}
it_equals() {
	local n=$1
	shift
	[ "$("$@")" -eq "$n" ]
}

# it_sock SIDE: the control socket path of daemon SIDE (a, b).
it_sock() { printf '%s/r2p2d-%s.sock\n' "$IT_TMP" "$1"; }

# Config writers: print INI sections; callers concatenate them into a file.
# it_conf_daemon SIDE LISTEN [WORKERS]
it_conf_daemon() {
	printf '[daemon]\nlisten = %s\nworkers = %s\nsocket = %s\n' "$2" "${3:-2}" "$(it_sock "$1")"
	# The udp data path unless R2P2_IT_BACKEND says otherwise (xdp: the same test over
	# XDP steering and AF_XDP); captures on the server's interface need udp.
	printf 'backend = %s\n' "${R2P2_IT_BACKEND:-udp}"
	printf '\n'
}
# it_conf_serve SERVICE PORT
it_conf_serve() { printf '[serve %s]\nport = %s\n\n' "$1" "$2"; }
# it_conf_call SERVICE TIMEOUT_MS RETRIES SERVER...
it_conf_call() {
	local svc=$1 tmo=$2 retries=$3 s
	shift 3
	printf '[call %s]\n' "$svc"
	for s in "$@"; do
		printf 'server = %s\n' "$s"
	done
	printf 'timeout_ms = %s\nretries = %s\n\n' "$tmo" "$retries"
}

# it_start_daemon SIDE NS CONFIG [stale]: start r2p2d and wait (5 s) for its control socket.
# Logs append to r2p2d-SIDE.log. With "stale", a socket file left by a killed daemon is kept
# (the new daemon must replace it) and readiness is "r2p2ctl status answers".
it_start_daemon() {
	local side=$1 ns=$2 conf=$3 stale=${4:-} sock pid bin ctl="" i
	sock=$(it_sock "$side")
	bin=$(it_bin r2p2d)
	if [ "$stale" = stale ]; then
		ctl=$(it_bin r2p2ctl)
	else
		rm -f "$sock"
	fi
	echo "==== r2p2d --config $conf ($(date +%T.%N)) ====" >>"$IT_TMP/r2p2d-$side.log"
	ip netns exec "$ns" "$bin" --config "$conf" >>"$IT_TMP/r2p2d-$side.log" 2>&1 &
	pid=$!
	IT_PIDS+=("$pid")
	IT_DAEMON_PID[$side]=$pid
	for ((i = 0; i < 100; i++)); do
		if [ -n "$ctl" ]; then
			timeout 2 "$ctl" -s "$sock" status >/dev/null 2>&1 && break
		else
			[ -S "$sock" ] && break
		fi
		if ! it_alive "$pid"; then
			it_fail "r2p2d ($side) exited during start-up; see r2p2d-$side.log"
		fi
		sleep 0.05
	done
	((i < 100)) || it_fail "r2p2d ($side) not ready at $sock within 5 s"
	it_log "r2p2d $side running in $ns (pid $pid, socket $sock)"
}

# it_stop_daemon SIDE: SIGTERM and wait up to 15 s; returns the daemon's exit status.
it_stop_daemon() {
	local side=$1 pid i rc=0
	pid=${IT_DAEMON_PID[$side]}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		it_alive "$pid" || break
		sleep 0.1
	done
	if it_alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		it_log "r2p2d $side did not exit within 15 s of SIGTERM (killed)"
		return 124
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

# it_start_echo [ARGS...]: the echo server on side B; waits (5 s) for its ready line.
it_start_echo() {
	local log bin
	bin=$(it_bin r2p2-echo-server)
	log="$IT_TMP/echo-server-${#IT_PIDS[@]}.log"
	it_bg "$IT_NS_B" "$log" env R2P2_SOCKET="$(it_sock b)" "$bin" "$@"
	IT_ECHO_PID=$IT_LAST_PID
	local i
	for ((i = 0; i < 100; i++)); do
		grep -qs '^echo server ready' "$log" && break
		it_alive "$IT_ECHO_PID" || it_fail "echo server exited: $(tail -n 3 "$log")"
		sleep 0.05
	done
	grep -qs '^echo server ready' "$log" || it_fail "echo server not ready within 5 s"
	it_log "echo server running in $IT_NS_B (pid $IT_ECHO_PID)"
}

# it_start_pair_services FAMILY [TIMEOUT_MS RETRIES [ECHO_SERVER_ARGS...]]: daemon B serving
# echo.svc, daemon A calling it directly over FAMILY (4 or 6), and the echo server on B.
# Needs it_setup_pair.
it_start_pair_services() {
	local fam=$1 tmo=${2:-1000} retries=${3:-3} la lb srv
	shift $(($# < 3 ? $# : 3))
	if [ "$fam" = 6 ]; then
		la=$IT_A6 lb=$IT_B6 srv="[$IT_B6]:$IT_ECHO_PORT"
	else
		la=$IT_A4 lb=$IT_B4 srv="$IT_B4:$IT_ECHO_PORT"
	fi
	{
		it_conf_daemon b "$lb"
		it_conf_serve echo.svc "$IT_ECHO_PORT"
	} >"$IT_TMP/b.conf"
	{
		it_conf_daemon a "$la"
		it_conf_call echo.svc "$tmo" "$retries" "$srv"
	} >"$IT_TMP/a.conf"
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
	it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
	it_start_echo -n echo.svc "$@"
}

# it_client ARGS...: r2p2-echo-client in namespace A through daemon A (bounded by 120 s).
it_client() {
	local bin
	bin=$(it_bin r2p2-echo-client)
	timeout 120 ip netns exec "$IT_NS_A" "$bin" -s "$(it_sock a)" "$@"
}

# it_bench ARGS...: r2p2-bench in namespace A through daemon A (bounded by 300 s).
it_bench() {
	local bin
	bin=$(it_bin r2p2-bench)
	timeout 300 ip netns exec "$IT_NS_A" "$bin" -s "$(it_sock a)" "$@"
}

# it_ctl SIDE ARGS...: r2p2ctl against daemon SIDE.
it_ctl() {
	local side=$1 bin
	shift
	bin=$(it_bin r2p2ctl)
	timeout 10 "$bin" -s "$(it_sock "$side")" "$@"
}

# it_json_num FILE KEY: the number KEY in the last JSON line of FILE.
it_json_num() {
	grep '^{' "$1" | tail -n 1 | grep -o "\"$2\":[-0-9.e+]*" | head -n 1 | cut -d: -f2
}

# ---- helpers of the lifecycle tests (it_life_*.sh) ----

# it_init_local: it_init for a test that needs no network namespace (config files, the unit
# file): a temporary directory and the traps; no root needed.
it_init_local() {
	command -v timeout >/dev/null || it_skip "coreutils timeout is missing"
	IT_TMP=$(mktemp -d "/tmp/r2p2-it-$IT_NAME.XXXXXX")
	trap it_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	set -E
	trap it_on_err ERR
}

# it_ms: the wall clock in milliseconds (date +%s%N), for measuring durations.
it_ms() { echo $(($(date +%s%N) / 1000000)); }

# it_wait_exit PID SECS: wait (polling every 20 ms) up to SECS for PID, a child of this shell,
# to exit; returns its exit status, or 124 if it still runs (it is left running).
it_wait_exit() {
	local pid=$1 secs=$2 i rc=0
	for ((i = 0; i < secs * 50; i++)); do
		it_alive "$pid" || break
		sleep 0.02
	done
	it_alive "$pid" && return 124
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

# it_drops STATUS FIELD: FIELD of the "drops:" lines of an `r2p2ctl status` text, summed over
# workers (0 if absent).
it_drops() {
	awk -v f="$2" '$1 == "drops:" { for (i = 2; i < NF; i++) if ($i == f) s += $(i + 1) }
		END { print s + 0 }' <<<"$1"
}

# it_field LINE NAME: the number after the word NAME in LINE (0 if absent), e.g. in the
# result line of burst_client.
it_field() {
	awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) { print $(i + 1); exit } }' <<<"$1" |
		grep . || echo 0
}

# it_proc_field PID FIELD: FIELD of /proc/PID/status (e.g. "Seccomp", "CapEff"); PID may be
# PID/task/TID for one thread.
it_proc_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }

# it_has_cap HEX BIT: whether capability BIT is in the mask HEX (a Cap*: field).
it_has_cap() { (((16#$1 >> $2) & 1)); }

# it_worker_sum STATUS FIELD: FIELD (rx, tx, calls, requests, inflight, executing, ...) summed
# over the worker lines of an `r2p2ctl status` text.
it_worker_sum() {
	awk -v f="$2" '$1 == "worker" { for (i = 3; i < NF; i++) if ($i == f) s += $(i + 1) }
		END { print s + 0 }' <<<"$1"
}

# it_served_requests STATUS SERVICE: the requests counter of SERVICE under "services served"
# in an `r2p2ctl status` text (empty if the service is not listed).
it_served_requests() {
	awk -v s="$2" '$1 == s && $2 == "port" { for (i = 3; i < NF; i++) if ($i == "requests") print $(i + 1) }' \
		<<<"$1"
}

# it_wait_executing SIDE N: poll daemon SIDE's status until its workers hold at least N
# requests in apps (the snapshot is refreshed every 100 ms); fails the test after 2 s.
it_wait_executing() {
	local side=$1 want=$2 i s got=0
	for ((i = 0; i < 100; i++)); do
		s=$(it_ctl "$side" status) || it_fail "r2p2ctl status of daemon $side failed"
		got=$(it_worker_sum "$s" executing)
		[ "$got" -ge "$want" ] && return 0
		sleep 0.02
	done
	it_fail "daemon $side never showed $want requests executing (last: $got)"
}

# it_expect DESCRIPTION COMMAND...: like it_check, but a failure is recorded ("FAILED: ...")
# and the test goes on, so that one run reports every broken behaviour; it_expect_done
# then fails the test if any expectation failed.
IT_EXPECT_FAILED=()
it_expect() {
	local what=$1
	shift
	if "$@"; then
		it_log "  ok: $what"
	else
		it_log "  FAILED: $what"
		IT_EXPECT_FAILED+=("$what")
	fi
}

it_expect_done() {
	local n=${#IT_EXPECT_FAILED[@]}
	[ "$n" -eq 0 ] && return 0
	it_fail "$n check(s) failed: $(printf '%s; ' "${IT_EXPECT_FAILED[@]}")"
}

# ---- helpers of the tls tests (it_tls_*.sh) ----

# it_tls_init: it_init, then skip (exit 77) unless the openssl CLI (tools/gen-certs.sh) and an
# r2p2d built with the BoringSSL tls backend are there. Sets IT_TLS (the PKI directory).
IT_TLS=
it_tls_init() {
	it_init
	command -v openssl >/dev/null ||
		it_skip "the openssl CLI is missing (apt-get install openssl); tools/gen-certs.sh needs it"
	it_bin r2p2d >/dev/null 2>&1 || it_skip "r2p2d is not built in $R2P2_BUILD (it needs BoringSSL)"
	it_bin r2p2ctl >/dev/null 2>&1 || it_skip "r2p2ctl is not built in $R2P2_BUILD"
	"$(it_bin r2p2ctl)" --help 2>&1 | grep -q 'stek generate' ||
		it_skip "this r2p2ctl has no stek commands (built without BoringSSL)"
	# shellcheck disable=SC2034 # used by the it_tls_*.sh scripts
	IT_TLS=$IT_TMP/tls
}

# it_tls_certs DIR SERVICE...: the demo PKI of tools/gen-certs.sh (CA, per-service certificate
# with SAN DNS:SERVICE, stek.keys), made with this build's r2p2ctl.
it_tls_certs() {
	local dir=$1
	shift
	R2P2CTL=$(it_bin r2p2ctl) bash "$R2P2_SRC/tools/gen-certs.sh" "$dir" "$@" \
		>>"$IT_TMP/gen-certs.log" 2>&1 || it_fail "tools/gen-certs.sh $dir $* failed: $(tail -n 3 "$IT_TMP/gen-certs.log")"
}

# it_conf_daemon_tls SIDE LISTEN STEK [WORKERS [EXTRA_LINE...]]: a [daemon] section with the
# STEK file (and e.g. "replay_window_ms = 5000" lines).
it_conf_daemon_tls() {
	local side=$1 listen=$2 stek=$3 workers=${4:-2}
	shift $(($# < 4 ? $# : 4))
	printf '[daemon]\nlisten = %s\nworkers = %s\nsocket = %s\nstek = %s\nbackend = %s\n' "$listen" \
		"$workers" "$(it_sock "$side")" "$stek" "${R2P2_IT_BACKEND:-udp}"
	[ $# -eq 0 ] || printf '%s\n' "$@"
	printf '\n'
}
# it_conf_serve_tls SERVICE PORT CERT KEY [EARLY_DATA(yes|no)]
it_conf_serve_tls() {
	printf '[serve %s]\nport = %s\nsecurity = tls\ncert = %s\nkey = %s\n' "$1" "$2" "$3" "$4"
	[ -z "${5:-}" ] || printf 'early_data = %s\n' "$5"
	printf '\n'
}
# it_conf_call_tls SERVICE TIMEOUT_MS RETRIES CA SERVER...
it_conf_call_tls() {
	local svc=$1 tmo=$2 retries=$3 ca=$4 s
	shift 4
	printf '[call %s]\nsecurity = tls\nca = %s\n' "$svc" "$ca"
	for s in "$@"; do
		printf 'server = %s\n' "$s"
	done
	printf 'timeout_ms = %s\nretries = %s\n\n' "$tmo" "$retries"
}

# it_tls_counter STATUS server|client FIELD: a counter of the "tls server:" or "tls client:" line
# of an `r2p2ctl status` text (empty if absent).
it_tls_counter() {
	awk -v side="$2" -v f="$3" '$1 == "tls" && $2 == side ":" {
		for (i = 3; i < NF; i++) if ($i == f) print $(i + 1) }' <<<"$1"
}

# it_tls_frame_kind HEX: the tls frame kind of an R2P2 datagram (hex digits 19-20) without
# the proof flag 0x80 (docs/PROTOCOL.md, "Answer proofs"), e.g. "02"; empty for a shorter one.
it_tls_frame_kind() {
	if [ "${#1}" -ge 20 ]; then
		printf '%02x' $((16#${1:18:2} & 0x7f))
	fi
}

# it_tls_status SIDE: `r2p2ctl status` of daemon SIDE once its counters caught up: workers
# publish a snapshot every 100 ms, so this waits 250 ms first.
it_tls_status() {
	sleep 0.25
	it_ctl "$1" status
}

# it_tls_get SIDE server|client FIELD: it_tls_counter on it_tls_status SIDE.
# (Helpers used inside $(...) report failures on stderr: the caller's set -e ends the test.)
it_tls_get() {
	local s v
	s=$(it_tls_status "$1") || it_fail "r2p2ctl status of daemon $1 failed" >&2
	v=$(it_tls_counter "$s" "$2" "$3")
	[ -n "$v" ] || it_fail "daemon $1 status has no 'tls $2: ... $3 N' counter" >&2
	printf '%s\n' "$v"
}

# it_served_field STATUS SERVICE FIELD: FIELD (requests, dropped_no_app, wrong_mode) of SERVICE
# under "services served" in an `r2p2ctl status` text.
it_served_field() {
	awk -v s="$2" -v f="$3" '$1 == s && $2 == "port" { for (i = 3; i < NF; i++) if ($i == f) print $(i + 1) }' \
		<<<"$1"
}

# it_start_echo_on SIDE NS [ARGS...]: an echo server attached to daemon SIDE in namespace NS;
# waits (5 s) for its ready line. Pid in IT_LAST_PID, output in echo-SIDE-PID.log.
declare -A IT_ECHO_LOG=()
it_start_echo_on() {
	local side=$1 ns=$2 log i pid
	shift 2
	log="$IT_TMP/echo-$side-${#IT_PIDS[@]}.log"
	it_bg "$ns" "$log" env R2P2_SOCKET="$(it_sock "$side")" "$(it_bin r2p2-echo-server)" "$@"
	pid=$IT_LAST_PID
	IT_ECHO_LOG[$pid]=$log
	for ((i = 0; i < 100; i++)); do
		grep -qs '^echo server ready' "$log" && break
		it_alive "$pid" || it_fail "echo server ($side) exited: $(tail -n 3 "$log")"
		sleep 0.05
	done
	grep -qs '^echo server ready' "$log" || it_fail "echo server ($side) not ready within 5 s"
	IT_LAST_PID=$pid
	it_log "echo server $* on daemon $side running in $ns (pid $pid)"
}

# it_echo_served PID: the number of requests the echo server PID (started with -c by
# it_start_echo_on) was handed, asked with SIGUSR1 (it answers within about 1 s).
it_echo_served() {
	local pid=$1 log before i
	log=${IT_ECHO_LOG[$pid]:-}
	[ -n "$log" ] || it_fail "it_echo_served: $pid is not an echo server started by it_start_echo_on" >&2
	before=$(grep -c '^served ' "$log" || true)
	kill -USR1 "$pid" 2>/dev/null || it_fail "echo server (pid $pid) is gone" >&2
	for ((i = 0; i < 100; i++)); do
		if [ "$(grep -c '^served ' "$log" || true)" -gt "$before" ]; then
			grep '^served ' "$log" | tail -n 1 | cut -d' ' -f2
			return 0
		fi
		sleep 0.05
	done
	it_fail "echo server (pid $pid) did not report its served count within 5 s" >&2
}

# it_sniff_start NS OUT MS [SNIFF_ARGS...]: capture the UDP datagrams of namespace NS for MS
# milliseconds into OUT (tests/integration/sniff.c); waits until the capture is open.
# Pid in IT_LAST_PID.
it_sniff_start() {
	local ns=$1 out=$2 ms=$3 i pid
	shift 3
	it_bg "$ns" "$out.err" "$(it_bin sniff)" -t "$ms" -o "$out" "$@"
	pid=$IT_LAST_PID
	for ((i = 0; i < 100; i++)); do
		grep -qs '^sniff ready' "$out.err" && break
		it_alive "$pid" || it_fail "sniff exited: $(tail -n 3 "$out.err")"
		sleep 0.05
	done
	grep -qs '^sniff ready' "$out.err" || it_fail "sniff not ready within 5 s"
	IT_LAST_PID=$pid
}

# it_sniff_stop PID: end a capture (SIGTERM) and wait for it to flush and exit.
it_sniff_stop() {
	kill -TERM "$1" 2>/dev/null || true
	it_wait_exit "$1" 5 >/dev/null || true
}

# it_hex TEXT: TEXT as lowercase hex without separators (as sniff prints payloads).
it_hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

# ---- helpers of the router's topology (it_router.sh, tools/bench-router.sh) ----

# it_router_names SUBNET: the names of a client, a router and three servers on one bridge in
# SUBNET (e.g. 10.81.N): addresses C4, R4 and S4[1..3], namespaces NS_W (the bridge) and
# NS_S[1..3] (the client and the router are IT_NS_A and IT_NS_R), the router's interface
# IF_R and the directory PIN where r2p2-router pins its maps.
# shellcheck disable=SC2034 # the callers use them
it_router_names() {
	C4=$1.1
	R4=$1.100
	S4=("" "$1.11" "$1.12" "$1.13")
	NS_W=r2p2-w-$IT_ID
	NS_S=("" "r2p2-s1-$IT_ID" "r2p2-s2-$IT_ID" "r2p2-s3-$IT_ID")
	IF_R=rr$IT_ID
	PIN=/sys/fs/bpf/r2p2-router/$IF_R
}

# it_router_topology N: the router tests' topology of it_router_names: the bridge, the
# client (its transmit checksum offload off: the router rewrites only complete UDP
# checksums, txcsum_off.c says why), the router and servers 1..N, each on the bridge.
it_router_topology() {
	local k
	it_bridge "$NS_W"
	it_plug "$NS_W" "$IT_NS_A" "rc$IT_ID" "$C4"
	it_in "$IT_NS_A" "$(it_bin txcsum_off)" "rc$IT_ID"
	it_plug "$NS_W" "$IT_NS_R" "$IF_R" "$R4"
	for ((k = 1; k <= $1; k++)); do
		it_plug "$NS_W" "${NS_S[$k]}" "rs$k$IT_ID" "${S4[$k]}"
	done
}

# it_bridge NS: namespace NS (recorded for cleanup) with an up bridge br0.
it_bridge() {
	it_netns "$1"
	ip -n "$1" link add br0 type bridge
	ip -n "$1" link set br0 up
}

# it_plug BRIDGE_NS NS IF ADDR: a veth from namespace NS (IF, ADDR/24) to the bridge br0 of
# namespace BRIDGE_NS (port wIF).
it_plug() {
	local bns=$1 ns=$2 ifn=$3 addr=$4
	it_netns "$ns"
	ip link add "$ifn" netns "$ns" type veth peer name "w$ifn" netns "$bns"
	ip -n "$ns" addr add "$addr/24" dev "$ifn"
	ip -n "$ns" link set "$ifn" up
	ip -n "$bns" link set "w$ifn" master br0
	ip -n "$bns" link set "w$ifn" up
}

# it_router_on_exit: the EXIT trap of a script that runs r2p2-router: its pins
# ($IT_ROUTER_PIN) go, then everything it_on_exit ends.
it_router_on_exit() {
	local rc=$?
	set +e
	trap - ERR
	[ -z "${IT_ROUTER_PIN:-}" ] || rm -rf -- "$IT_ROUTER_PIN"
	rmdir /sys/fs/bpf/r2p2-router 2>/dev/null
	(exit "$rc")
	it_on_exit
}
