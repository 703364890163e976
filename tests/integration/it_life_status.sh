#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_status: `r2p2ctl status` tells the truth about a running pair.
#  1. After 50 echoes: B lists the echo server with its pid, uid and "serves: echo.svc",
#     counts >= 50 requests for echo.svc and rx/tx > 0 over its workers; A counts >= 50
#     calls, all ok, and lists echo.svc under "services called" with B's address.
#  2. The echo server is killed (SIGKILL): B's status drops it within 5 s ("apps 0").
# shellcheck disable=SC2317 # functions here are run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=50

# b_forgot PID: daemon B's status answers, shows no app and does not mention PID.
b_forgot() {
	local s
	s=$(it_ctl b status) || return 1
	grep -q ' apps 0$' <<<"$s" && ! grep -qw "pid $1" <<<"$s"
}

it_init
it_setup_pair
it_start_pair_services 4 1000 2
echo_pid=$IT_ECHO_PID
it_check "$N echoes of 64 B" it_client -S 64 -c "$N" -t 1000
sleep 0.25 # the workers refresh the status snapshot every 100 ms

it_log "--- 1. status after $N echoes"
sb=$(it_ctl b status)
sa=$(it_ctl a status)
printf '%s\n' "$sb" | sed 's/^/    B> /'
printf '%s\n' "$sa" | sed -n '/^workers:/,$p' | sed 's/^/    A> /'
it_check "B's first line: version, its pid ${IT_DAEMON_PID[b]}, 2 workers, 1 app" \
	grep -Eq "^r2p2d [0-9.]+  pid ${IT_DAEMON_PID[b]}  workers 2  apps 1\$" <<<"$sb"
it_check "B lists the echo server: pid $echo_pid, uid $(id -u), serves: echo.svc" \
	grep -Eq "^  app [0-9]+  pid $echo_pid  uid $(id -u)  serves: echo\.svc\$" <<<"$sb"
req=$(it_served_requests "$sb" echo.svc)
it_check "B counts requests for echo.svc ($req >= $N)" test "${req:-0}" -ge "$N"
rx=$(it_worker_sum "$sb" rx)
tx=$(it_worker_sum "$sb" tx)
it_check "B's workers count packets received and sent (rx $rx, tx $tx)" \
	test "$rx" -ge "$N" -a "$tx" -ge "$N"
it_check "B's workers count the requests too ($(it_worker_sum "$sb" requests))" \
	test "$(it_worker_sum "$sb" requests)" -eq "$req"
calls=$(it_worker_sum "$sa" calls)
ok=$(it_worker_sum "$sa" ok)
it_check "A counts $N calls, all ok (calls $calls, ok $ok)" test "$calls" -ge "$N" -a "$ok" -eq "$calls"
it_check "A lists echo.svc under services called, with B's address" \
	grep -Eq "^  echo\.svc +servers $IT_B4:$IT_ECHO_PORT\$" <<<"$sa"
it_check "nothing is in flight any more on A or B" \
	test $(($(it_worker_sum "$sa" inflight) + $(it_worker_sum "$sb" executing))) -eq 0
sj=$(it_ctl b status --json)
it_log "    B json> ${sj:0:160}..."
it_check "status --json: one object on one line, with B's pid" \
	grep -Eq "^\{\"version\":\"[0-9.]+\",\"pid\":${IT_DAEMON_PID[b]},.*\}\$" <<<"$sj"
req_j=$(grep -o "{\"name\":\"echo.svc\",\"port\":$IT_ECHO_PORT,\"security\":\"plain\",\"requests\":[0-9]*" <<<"$sj" | grep -o '[0-9]*$' || true)
it_check "status --json counts the same echo.svc requests as the text (${req_j:-none} >= $N)" \
	test "${req_j:-0}" -ge "$N"
if command -v python3 >/dev/null; then
	it_check "python3 reads it as JSON" python3 -c 'import json, sys; json.load(sys.stdin)' <<<"$sj"
fi

it_log "--- 2. the echo server is killed"
kill -KILL "$echo_pid"
wait "$echo_pid" 2>/dev/null || true
it_wait_for 5 "daemon B's status to drop the killed echo server (pid $echo_pid)" b_forgot "$echo_pid"
it_log "  ok: the killed app is gone from B's status (apps 0)"
it_check "B logged the detach of pid $echo_pid" \
	grep -Eq "^app [0-9]+ detached \(pid $echo_pid\)\$" "$IT_TMP/r2p2d-b.log"
it_pass "r2p2ctl status shows apps, services and counters, and forgets a killed app"
