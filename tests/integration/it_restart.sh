#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_restart: daemons restart under running apps.
#  1. daemon A restarts (SIGTERM, exit 0, start again) while an app calls echo.svc
#     in a loop: the app sees clear errors while A is down, then its next call
#     reconnects and every later call succeeds.
#  2. daemon A is killed with SIGKILL and restarted over its stale socket: same.
#  3. daemon B restarts: the echo server re-attaches and registers again by
#     itself (libr2p2 or the server's own retry), and echo works again.
#  4. daemon B is stopped and started at once, three times: the new one is started
#     right after SIGTERM, while the old one may still hold its ports; it waits for
#     them (up to 5 s) instead of failing with "Address already in use".
# shellcheck disable=SC2317 # functions here are run through run_loop_while and it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CALLS=300
INTERVAL_MS=10

# check_client_log LOG WHAT: the app's per-request log shows a block of failures, then only successes.
check_client_log() {
	local log=$1 what=$2 fails oks first_fail last_fail last_ok unclear
	fails=$(grep -c 'failed: ' "$log" || true)
	oks=$(grep -c '^request [0-9]*: ok' "$log" || true)
	it_log "    $what: $oks ok, $fails failed; distinct errors:"
	grep 'failed: ' "$log" | sed -E 's/.*failed: //' | sort | uniq -c | sed 's/^/      /' || true
	it_check "$what: the app saw errors while the daemon was away" test "$fails" -gt 0
	unclear=$(grep 'failed: ' "$log" | grep -Evc 'failed: [A-Za-z].{3,}' || true)
	it_check "$what: every error says what happened" test "$unclear" -eq 0
	first_fail=$(grep -oE 'request [0-9]+ \(' "$log" | head -n 1 | grep -oE '[0-9]+')
	last_fail=$(grep -oE 'request [0-9]+ \(' "$log" | tail -n 1 | grep -oE '[0-9]+')
	last_ok=$(grep -oE '^request [0-9]+: ok' "$log" | tail -n 1 | grep -oE '[0-9]+')
	it_check "$what: the failures are one block (requests $first_fail..$last_fail)" \
		test $((last_fail - first_fail + 1)) -eq "$fails"
	it_check "$what: the call after the last failure reconnected and succeeded" \
		grep -q "^request $((last_fail + 1)): ok" "$log"
	it_check "$what: the last call succeeded (request $last_ok of $CALLS)" \
		test "$last_ok" -eq $((CALLS - 1))
}

# run_loop_while CMD...: start the app's call loop, run CMD in the middle of it, wait for the app.
run_loop_while() {
	local log=$IT_TMP/loop-$1.txt rc=0 pid
	shift
	it_client -S 64 -c "$CALLS" -i "$INTERVAL_MS" -t 1000 -v >"$log" 2>&1 &
	pid=$!
	IT_PIDS+=("$pid")
	sleep 1
	"$@"
	wait "$pid" || rc=$?
	[ "$rc" -ne 124 ] || it_fail "the app hung (killed after 120 s)"
	tail -n 1 "$log" | sed 's/^/    /'
}

restart_a_gracefully() {
	local rc=0
	it_stop_daemon a || rc=$?
	it_check "daemon A exited 0 on SIGTERM (exit $rc)" test "$rc" -eq 0
	if [ -e "$(it_sock a)" ]; then
		it_log "  note: daemon A left its socket file behind on a clean exit"
	fi
	sleep 0.3
	it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
}

crash_restart_a() {
	kill -KILL "${IT_DAEMON_PID[a]}"
	wait "${IT_DAEMON_PID[a]}" 2>/dev/null || true
	it_log "killed daemon A with SIGKILL"
	sleep 0.3
	it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf" stale
}

it_init
it_setup_pair
it_start_pair_services 4 1000 2

it_log "--- 1. daemon A restarts (SIGTERM) under an app calling in a loop"
run_loop_while graceful restart_a_gracefully
check_client_log "$IT_TMP/loop-graceful.txt" "graceful restart"

it_log "--- 2. daemon A is killed (SIGKILL) and restarted over its stale socket"
run_loop_while crash crash_restart_a
check_client_log "$IT_TMP/loop-crash.txt" "crash restart"

it_log "--- 3. daemon B restarts under the echo server"
rc=0
it_stop_daemon b || rc=$?
it_check "daemon B exited 0 on SIGTERM (exit $rc)" test "$rc" -eq 0
it_check "the echo server survives its daemon going away" it_alive "$IT_ECHO_PID"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
echo_works() { it_client -S 4 -c 1 -t 500 >/dev/null 2>&1; }
it_wait_for 10 "the echo server to serve again through the new daemon B" echo_works
it_check "the same echo server (pid $IT_ECHO_PID) came back by itself" it_alive "$IT_ECHO_PID"
it_check "4 B echo x 20 after daemon B restarted" it_client -S 4 -c 20 -t 3000

it_log "--- 4. daemon B stopped and started at once, three times"
for round in 1 2 3; do
	old=${IT_DAEMON_PID[b]}
	kill -TERM "$old"
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf" stale
	rc=0
	wait "$old" 2>/dev/null || rc=$?
	it_check "round $round: the old daemon B exited 0 (exit $rc)" test "$rc" -eq 0
	it_wait_for 10 "round $round: echo through the new daemon B" echo_works
done
it_check "4 B echo x 20 after the quick restarts" it_client -S 4 -c 20 -t 3000
it_pass "apps ride through daemon restarts"
