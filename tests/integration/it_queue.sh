#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_queue: `[call] max_inflight` holds an app's calls on the client daemon, in order, and a
# call that waits past its timeout ends with -ETIMEDOUT without ever being sent.
#
# B serves slow.svc with an echo server that takes DELAY_MS per request. A (one worker) calls
# it with max_inflight = 1 and 1000 ms timeouts. burst_client puts CALLS calls in flight at
# once. They leave A one at a time: about 1000 / DELAY_MS of them are answered within their
# timeout, the one in flight at the deadline times out at B's pace, and the others time out
# while waiting on A. Checked: every call ended once, verified or -ETIMEDOUT and nothing
# else; at least 2 verified; A counted CALLS - 1 calls that waited, app_ok = verified and
# app_failed = the timeouts; B's app was handed at most one request more than were verified
# (the ones that waited past their deadline never left A); A's `queued` is back to 0.
# Then A is stopped while calls wait: every call still ends once (the waiting ones with
# -ESHUTDOWN, or -ECONNRESET when the app saw the daemon go), and A exits 0.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CALLS=6
DELAY_MS=300

it_init
it_setup_pair
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon b "$IT_B4" 1
	it_conf_serve slow.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call slow.svc 1000 3 "$DST"
	printf 'max_inflight = 1\n' # still in the [call] section it_conf_call wrote
} >"$IT_TMP/a.conf"
sed -i 's/^backend = /log_level = debug\nbackend = /' "$IT_TMP/a.conf" # in [daemon]
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n slow.svc -c -d $((DELAY_MS * 1000))
ECHO=$IT_LAST_PID


S0=$(it_tls_status a)
rc=0
timeout 60 ip netns exec "$IT_NS_A" "$(it_bin burst_client)" -s "$(it_sock a)" -n slow.svc \
	-N "$CALLS" -S 64 -t 1000 -w 3000 >"$IT_TMP/burst.txt" 2>"$IT_TMP/burst.log" || rc=$?
LINE=$(grep '^burst ' "$IT_TMP/burst.txt" || true)
[ -n "$LINE" ] || it_fail "burst_client printed no result (exit $rc): $(tail -n 3 "$IT_TMP/burst.log")"
it_log "  $LINE"
sleep 0.3
S1=$(it_tls_status a)
VERIFIED=$(it_field "$LINE" verified)
TMO=$(it_field "$LINE" err_ETIMEDOUT)
WAITED=$(($(it_worker_sum "$S1" waited) - $(it_worker_sum "$S0" waited)))
APP_OK=$(($(it_worker_sum "$S1" app_ok) - $(it_worker_sum "$S0" app_ok)))
APP_FAILED=$(($(it_worker_sum "$S1" app_failed) - $(it_worker_sum "$S0" app_failed)))
RAN=$(it_echo_served "$ECHO")
it_log "  A: waited +$WAITED app_ok +$APP_OK app_failed +$APP_FAILED queued $(it_worker_sum "$S1" queued); B's app ran $RAN"

it_expect "every call ended once (exit $rc, lost $(it_field "$LINE" lost))" \
	test "$rc" -eq 0 -a "$(it_field "$LINE" lost)" -eq 0
it_expect "each call verified or -ETIMEDOUT ($VERIFIED + $TMO = $CALLS)" \
	test $((VERIFIED + TMO)) -eq "$CALLS"
it_expect "at least 2 verified, one at a time at $DELAY_MS ms each ($VERIFIED)" \
	test "$VERIFIED" -ge 2 -a "$VERIFIED" -le $((1000 / DELAY_MS))
it_expect "all but the first call waited on A (+$WAITED)" test "$WAITED" -eq $((CALLS - 1))
it_expect "A's app_ok is the verified calls (+$APP_OK)" test "$APP_OK" -eq "$VERIFIED"
it_expect "A's app_failed is the timeouts (+$APP_FAILED)" test "$APP_FAILED" -eq "$TMO"
it_expect "calls that waited past their deadline never reached B (ran $RAN <= $VERIFIED + 1)" \
	test "$RAN" -le $((VERIFIED + 1))
it_expect "nothing waits on A any more" test "$(it_worker_sum "$S1" queued)" -eq 0
it_log "  A's debug lines: $(grep -c 'call to slow.svc' "$IT_TMP/r2p2d-a.log") (e.g. $(grep -m1 'call to slow.svc' "$IT_TMP/r2p2d-a.log"))"
SENT=$(grep -Ec "call to slow\.svc at $IT_B4:$IT_ECHO_PORT \(plain\): (ok|failed, [A-Za-z ]+) after [0-9]+ us" "$IT_TMP/r2p2d-a.log" || true)
WAITED_OUT=$(grep -c "call to slow\.svc ended while waiting for max_inflight: Connection timed out" "$IT_TMP/r2p2d-a.log" || true)
it_expect "A's debug log has a line per call: sent ($SENT: service, server, mode, outcome, time) or timed out waiting ($WAITED_OUT)" \
	test $((SENT + WAITED_OUT)) -eq "$CALLS"

it_log "--- A stops (SIGTERM) while calls wait: each ends, none is lost"
timeout 60 ip netns exec "$IT_NS_A" "$(it_bin burst_client)" -s "$(it_sock a)" -n slow.svc \
	-N "$CALLS" -S 64 -t 5000 -w 3000 >"$IT_TMP/burst2.txt" 2>"$IT_TMP/burst2.log" &
BURST=$!
# shellcheck disable=SC2317 # run through it_wait_for
has_queued() { [ "$(it_worker_sum "$(it_ctl a status)" queued)" -gt 0 ]; }
it_wait_for 5 "calls waiting on A" has_queued
it_expect "daemon a exits 0 on SIGTERM with calls waiting" it_stop_daemon a
rc=0
wait "$BURST" || rc=$?
LINE=$(grep '^burst ' "$IT_TMP/burst2.txt" || true)
it_log "  $LINE"
it_expect "every call ended once, none lost (lost $(it_field "$LINE" lost), unknown $(it_field "$LINE" unknown))" \
	test -n "$LINE" -a "$(it_field "$LINE" lost)" -eq 0 -a "$(it_field "$LINE" unknown)" -eq 0
it_expect "the waiting ones ended with -ESHUTDOWN or -ECONNRESET ($(grep -o 'err_[A-Z]* [0-9]*' <<<"$LINE" | tr '\n' ' '))" \
	test $(($(it_field "$LINE" err_ESHUTDOWN) + $(it_field "$LINE" err_ECONNRESET))) -ge 1
it_expect "daemon b exits 0 on SIGTERM" it_stop_daemon b
it_expect_done
it_pass "max_inflight 1: $VERIFIED of $CALLS verified one at a time, $TMO timed out ($((CALLS - 1)) waited on A)"
