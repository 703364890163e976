#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_notify: what r2p2d tells systemd (sd_notify), seen through notify_listen, a
# stand-in for the service manager's NOTIFY_SOCKET, without systemd:
#  1. READY=1 once it is up;
#  2. SIGHUP: RELOADING=1 then READY=1, for a valid file and for a broken one;
#  3. SIGTERM with a call in flight: STOPPING=1 at once, while the drain still runs;
#  and every message comes from the daemon's main pid (systemd's NotifyAccess=main).
# shellcheck disable=SC2317 # functions here are run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOLD_US=1000000 # the echo server holds the call in flight during the drain this long

# msgs: the notifications received so far, one per line, without the "pid N: " prefix.
msgs() { sed -E 's/^pid [0-9]+: //' "$IT_TMP/notify.log"; }
# have_msgs N: at least N notifications arrived.
have_msgs() { [ "$(wc -l <"$IT_TMP/notify.log")" -ge "$1" ]; }
# expect_seq WHAT LINE...: the notifications so far are exactly LINE..., in this order.
expect_seq() {
	local what=$1 want got
	shift
	want=$(printf '%s\n' "$@")
	got=$(msgs)
	if [ "$got" != "$want" ]; then
		it_log "    received: $(tr '\n' '|' <<<"$got")"
		it_fail "$what: expected $(tr '\n' '|' <<<"$want")"
	fi
	it_log "  ok: $what: $(tr '\n' ' ' <<<"$got")"
}

it_init
it_setup_pair
listen=$(it_bin notify_listen) || it_fail "tests/notify_listen is not built (cmake --build)"
it_bg "$IT_NS_B" "$IT_TMP/notify.log" "$listen" "$IT_TMP/notify.sock" 30000 STOPPING=1
listen_pid=$IT_LAST_PID
it_wait_for 5 "notify_listen to bind $IT_TMP/notify.sock" test -S "$IT_TMP/notify.sock"
{
	it_conf_daemon b "$IT_B4"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 5000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"

it_log "--- 1. start"
NOTIFY_SOCKET=$IT_TMP/notify.sock it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
b_pid=${IT_DAEMON_PID[b]}
it_wait_for 5 "READY=1 from daemon B" have_msgs 1
expect_seq "after start" READY=1
it_check "daemon B logged its ready line too" \
	grep -q ' ready: 2 workers' "$IT_TMP/r2p2d-b.log"

it_log "--- 2. reloads"
kill -HUP "$b_pid"
it_wait_for 5 "RELOADING=1 and READY=1 after SIGHUP" have_msgs 3
expect_seq "SIGHUP, valid file" READY=1 RELOADING=1 READY=1
cp "$IT_TMP/b.conf" "$IT_TMP/b-good.conf"
printf 'bogus_key = 1\n' >>"$IT_TMP/b.conf"
kill -HUP "$b_pid"
it_wait_for 5 "RELOADING=1 and READY=1 after SIGHUP with a broken file" have_msgs 5
expect_seq "SIGHUP, broken file" READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1
it_check "the broken reload was refused and B runs on" \
	bash -c "grep -q 'reload failed; keeping the running configuration' '$IT_TMP/r2p2d-b.log' && kill -0 $b_pid"
cp "$IT_TMP/b-good.conf" "$IT_TMP/b.conf"

it_log "--- 3. SIGTERM with a call in flight"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc -d "$HOLD_US"
it_client -S 4 -c 1 -t 5000 >"$IT_TMP/inflight.txt" 2>&1 &
call_pid=$!
IT_PIDS+=("$call_pid")
it_wait_executing b 1
kill -TERM "$b_pid"
it_wait_for 1 "STOPPING=1 within 1 s of SIGTERM" have_msgs 6
alive=0
it_alive "$b_pid" && alive=1
expect_seq "SIGTERM" READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 STOPPING=1
it_check "STOPPING=1 came while the drain still ran (daemon B alive)" test "$alive" -eq 1
rc=0
it_wait_exit "$b_pid" 10 || rc=$?
it_check "daemon B exited 0 after the drain (exit $rc)" test "$rc" -eq 0
rc=0
wait "$call_pid" || rc=$?
it_check "the call in flight completed (exit $rc)" test "$rc" -eq 0
rc=0
it_wait_exit "$listen_pid" 5 || rc=$?
it_check "notify_listen ended on STOPPING=1 (exit $rc)" test "$rc" -eq 0
it_check "every notification came from daemon B's main pid $b_pid" \
	test "$(grep -cv "^pid $b_pid: " "$IT_TMP/notify.log")" -eq 0
it_pass "r2p2d notifies READY, RELOADING/READY and STOPPING at the right moments"
