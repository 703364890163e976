#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_app_killed: the echo server is killed (SIGKILL) while 50 requests wait in
# it. The calling app gets errors (timeouts or refusals) within the call
# timeout, not hangs; daemon B forgets the dead app (r2p2ctl status), fails
# new calls cleanly, and serves again as soon as a new echo server registers.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CALL_TIMEOUT_MS=3000
N=50

# status_lists PID: r2p2ctl status of daemon B answers and mentions PID.
# shellcheck disable=SC2317 # called through it_check / it_wait_for
status_lists() {
	local s
	s=$(it_ctl b status) || return 2
	grep -qw "$1" <<<"$s"
}
# status_forgot PID: r2p2ctl status of daemon B answers and does not mention PID.
# shellcheck disable=SC2317 # called through it_wait_for
status_forgot() {
	local rc=0
	status_lists "$1" || rc=$?
	[ "$rc" -eq 1 ]
}

it_init
it_setup_pair
# The echo server holds every request 5 s, so all of them are outstanding when it dies.
it_start_pair_services 4 "$CALL_TIMEOUT_MS" 2 -d 5000000
dead_pid=$IT_ECHO_PID

status1=$(it_ctl b status)
printf '%s\n' "$status1" | sed 's/^/    status> /'
it_check "r2p2ctl status lists the echo server (pid $dead_pid)" grep -qw "$dead_pid" <<<"$status1"

out=$IT_TMP/bench.txt
it_log "checking: $N calls outstanding in the echo server when it is killed"
t0=$(date +%s%N)
it_bench -S 64 -c "$N" -N "$N" -w 0 -t "$CALL_TIMEOUT_MS" -d 60 --json >"$out" 2>&1 &
bench_pid=$!
IT_PIDS+=("$bench_pid")
sleep 1
kill -KILL "$dead_pid"
it_log "killed the echo server (pid $dead_pid) with SIGKILL"
rc=0
wait "$bench_pid" || rc=$?
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
sed 's/^/    /' "$out" | head -n 10
[ "$rc" -ne 124 ] || it_fail "the calling app hung (killed after 300 s)"
ok=$(it_json_num "$out" ok)
errors=$(it_json_num "$out" errors)
timeouts=$(it_json_num "$out" timeouts)
lost=$(it_json_num "$out" lost)
[ -n "$ok" ] || it_fail "r2p2-bench printed no result (exit $rc)"
it_check "every call ended: ok $ok + errors $errors + timeouts $timeouts = $N, never completed: $lost" \
	test $((ok + errors + timeouts)) -eq "$N" -a "$lost" -eq 0
it_check "the outstanding calls failed (none answered by a dead app)" test "$ok" -eq 0
it_check "they failed within timeout + slack (${elapsed_ms} ms)" \
	test "$elapsed_ms" -lt $((CALL_TIMEOUT_MS + 1000 + 4000))

it_wait_for 5 "daemon B to forget the dead app" status_forgot "$dead_pid"
it_log "  ok: r2p2ctl status no longer lists pid $dead_pid"
it_ctl b status | sed 's/^/    status> /'

it_log "checking: a call with no echo server registered fails with a clear error"
rc=0
it_client -S 4 -c 1 -t 2000 >"$IT_TMP/noserver.txt" 2>&1 || rc=$?
sed 's/^/    /' "$IT_TMP/noserver.txt"
it_check "the call failed (exit $rc) and said why" \
	grep -q 'failed: ' "$IT_TMP/noserver.txt"
[ "$rc" -ne 124 ] || it_fail "the call hung"

it_check "daemon B still running" it_alive "${IT_DAEMON_PID[b]}"
it_start_echo -n echo.svc
it_check "a new echo server registered: 4 B echo x 20" it_client -S 4 -c 20 -t 3000
it_check "a new echo server registered: 3000 B echo x 5" it_client -S 3000 -c 5 -t 3000
it_check "r2p2ctl status lists the new echo server (pid $IT_ECHO_PID)" \
	status_lists "$IT_ECHO_PID"
it_pass "a killed app costs its callers errors, not hangs; daemon B serves the next one"
