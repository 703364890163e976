#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_drain: SIGTERM drains.
#  1. 20 calls wait 300 ms each in the echo server on B when B gets SIGTERM: every one
#     completes and verifies, B exits 0 well within drain_timeout_ms, and logs the drain.
#  2. With B gone, a call from A fails with a clear error within its timeout, and an app
#     attaching to B's control socket fails at once: errors, not hangs.
#  3. SIGTERM with nothing in flight (an app attached) exits 0 in under a second.
#  4. Requests held 3 s outlive drain_timeout_ms = 200: B exits 0 on time, logs what
#     it abandoned, and the callers get errors within their timeout.
# What the daemon does for others *during* a drain is it_life_drain_others.sh.
# shellcheck disable=SC2317 # functions here are run through it_check and it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DELAY_US=300000 # how long the echo server holds each request
DRAIN_MS=3000   # drain_timeout_ms of daemon B in parts 1-3
N=20

# write_b_conf DRAIN_MS: daemon B serving echo.svc, with that drain timeout.
write_b_conf() {
	{
		it_conf_daemon b "$IT_B4"
		printf 'drain_timeout_ms = %s\n\n' "$1"
		it_conf_serve echo.svc "$IT_ECHO_PORT"
	} >"$IT_TMP/b.conf"
}

echo_works() { it_client -S 4 -c 1 -t 500 >/dev/null 2>&1; }

it_init
it_setup_pair
write_b_conf "$DRAIN_MS"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 10000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc -d "$DELAY_US"
it_check "echo works before the test (held ${DELAY_US} us)" it_client -S 4 -c 1 -t 3000

it_log "--- 1. SIGTERM to daemon B while $N calls wait in its echo server"
out=$IT_TMP/bench-drain.txt
it_bench -S 64 -c "$N" -N "$N" -w 0 -t 10000 --json >"$out" 2>&1 &
bench_pid=$!
IT_PIDS+=("$bench_pid")
it_wait_executing b "$N"
t0=$(it_ms)
kill -TERM "${IT_DAEMON_PID[b]}"
rc=0
it_wait_exit "${IT_DAEMON_PID[b]}" 15 || rc=$?
drain_ms=$(($(it_ms) - t0))
brc=0
wait "$bench_pid" || brc=$?
sed 's/^/    /' "$out" | head -n 4
it_check "daemon B exited 0 on SIGTERM (exit $rc)" test "$rc" -eq 0
it_check "daemon B exited within drain_timeout_ms ($drain_ms ms < $DRAIN_MS ms)" \
	test "$drain_ms" -lt "$DRAIN_MS"
ok=$(it_json_num "$out" ok)
it_check "all $N calls in flight completed and verified (ok $ok, bench exit $brc)" \
	test "$brc" -eq 0 -a "${ok:-0}" -eq "$N"
it_check "daemon B logged the drain and its end" \
	grep -q 'draining in-flight RPCs' "$IT_TMP/r2p2d-b.log"
it_check "daemon B logged 'r2p2d stopped' without a drain timeout" \
	bash -c "grep -q 'r2p2d stopped' '$IT_TMP/r2p2d-b.log' && ! grep -q 'drain timeout' '$IT_TMP/r2p2d-b.log'"
it_check "daemon B removed its control socket" test ! -e "$(it_sock b)"

it_log "--- 2. with daemon B gone, calls fail cleanly"
t0=$(it_ms)
rc=0
it_client -S 4 -c 1 -t 1000 >"$IT_TMP/after.txt" 2>&1 || rc=$?
el=$(($(it_ms) - t0))
sed 's/^/    /' "$IT_TMP/after.txt"
it_check "a call from A to echo.svc failed (exit $rc) and said why" \
	bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'failed: call timed out' '$IT_TMP/after.txt'"
it_check "it failed within its timeout + slack ($el ms < 3000 ms)" test "$el" -lt 3000
t0=$(it_ms)
rc=0
timeout 10 ip netns exec "$IT_NS_B" "$(it_bin r2p2-echo-client)" -s "$(it_sock b)" -c 1 \
	>"$IT_TMP/attach-gone.txt" 2>&1 || rc=$?
el=$(($(it_ms) - t0))
sed 's/^/    /' "$IT_TMP/attach-gone.txt"
it_check "an app attaching to stopped daemon B failed at once (exit $rc, $el ms)" \
	bash -c "[ $rc -eq 1 ] && [ $el -lt 2000 ] && grep -q 'cannot attach to r2p2d' '$IT_TMP/attach-gone.txt'"

it_log "--- 3. SIGTERM with nothing in flight"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_wait_for 10 "the echo server to re-attach to the new daemon B" echo_works
t0=$(it_ms)
kill -TERM "${IT_DAEMON_PID[b]}"
rc=0
it_wait_exit "${IT_DAEMON_PID[b]}" 15 || rc=$?
el=$(($(it_ms) - t0))
it_check "idle daemon B (one app attached) exited 0 in under 1 s (exit $rc, $el ms)" \
	test "$rc" -eq 0 -a "$el" -lt 1000

it_log "--- 4. requests that outlive drain_timeout_ms = 200 are abandoned"
# A new echo server holding requests 3 s, far beyond the drain timeout.
it_kill_pid "$IT_ECHO_PID"
write_b_conf 200
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_echo -n echo.svc -d 3000000
out=$IT_TMP/bench-abandon.txt
tb=$(it_ms)
it_bench -S 64 -c 5 -N 5 -w 0 -t 2000 --json >"$out" 2>&1 &
bench_pid=$!
IT_PIDS+=("$bench_pid")
it_wait_executing b 5
t0=$(it_ms)
kill -TERM "${IT_DAEMON_PID[b]}"
rc=0
it_wait_exit "${IT_DAEMON_PID[b]}" 15 || rc=$?
el=$(($(it_ms) - t0))
it_check "daemon B exited 0 at its drain timeout (exit $rc, $el ms, timeout 200 ms)" \
	test "$rc" -eq 0 -a "$el" -lt 1000
it_check "daemon B logged the requests it abandoned" \
	grep -Eq 'drain timeout with [0-9]+ calls and [1-9][0-9]* requests in flight' \
	"$IT_TMP/r2p2d-b.log"
brc=0
wait "$bench_pid" || brc=$?
el=$(($(it_ms) - tb))
sed 's/^/    /' "$out" | head -n 2
ok=$(it_json_num "$out" ok)
lost=$(it_json_num "$out" lost)
it_check "the abandoned calls ended in errors, none lost (ok $ok, lost $lost, bench exit $brc)" \
	test "$brc" -ne 124 -a "${ok:-1}" -eq 0 -a "${lost:-1}" -eq 0
it_check "within their 2 s timeout + slack ($el ms < 4000 ms)" test "$el" -lt 4000

it_pass "SIGTERM drains in-flight RPCs, exits 0 on time, and later calls fail cleanly"
