#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_drain_others: what everyone else sees while daemon B drains one call (held 3 s
# by the echo server) after SIGTERM, as docs/OPERATIONS.md ("Stop") promises:
#  - `r2p2ctl status` still answers, and says "(draining)";
#  - a new app's attach is refused at once with ESHUTDOWN;
#  - an app attached before the SIGTERM gets ESHUTDOWN at once for each new call, whichever
#    lane it uses (B has four workers; one has the call in flight, three have nothing to
#    drain);
#  - new requests from the network are answered with DROP ("server dropped the request"):
#    8 calls from A over its four client sockets and 12 raw requests from 12 source ports,
#    so that SO_REUSEPORT hashes some of them to each of B's workers;
#  - the call in flight completes and B exits 0.
# And after B is gone, an app attaching to its socket is told that r2p2d is not there.
# Every expectation is checked and reported, then the test fails if any did not hold.
# shellcheck disable=SC2317 # functions here are run through timed and it_expect
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOLD_US=3000000 # the echo server holds each request this long: the length of the drain
VOID_PORT=8009  # B's [call void.svc] points at A on this port; nothing listens there

# timed LOG CMD...: run CMD with output to LOG, then append "exit RC after MS ms" to it.
timed() {
	local log=$1 t0 rc=0
	shift
	t0=$(it_ms)
	"$@" >"$log" 2>&1 || rc=$?
	echo "exit $rc after $(($(it_ms) - t0)) ms" >>"$log"
}

# drop_probes: 12 single-packet "ping" requests to B, each from a socket of its own (12
# source ports, hashed over B's workers by SO_REUSEPORT), in parallel; one line per
# probe: the reply in hex, or "none" after 1 s.
drop_probes() {
	local i rawsend
	rawsend=$(it_bin r2p2-rawsend)
	for ((i = 0; i < 12; i++)); do
		(
			r=$(it_in "$IT_NS_A" timeout 5 "$rawsend" -r 1 -w 1000 "$IT_B4:$IT_ECHO_PORT" \
				"cc 08 00 c0 12 $(printf %02x "$i") 00 01 70 69 6e 67") || true
			echo "${r:-none}"
		) &
	done
	wait
}

# took LOG: the milliseconds recorded by timed; exit_of LOG: the exit status.
took() { sed -nE 's/^exit [0-9]+ after ([0-9]+) ms$/\1/p' "$1"; }
exit_of() { sed -nE 's/^exit ([0-9]+) after [0-9]+ ms$/\1/p' "$1"; }

# b_app ARGS...: r2p2-echo-client in namespace B through daemon B (bounded by 20 s).
b_app() {
	timeout 20 ip netns exec "$IT_NS_B" "$(it_bin r2p2-echo-client)" -s "$(it_sock b)" "$@"
}

it_init
it_setup_pair
{
	it_conf_daemon b "$IT_B4" 4
	printf 'drain_timeout_ms = 5000\n\n'
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	it_conf_call void.svc 200 0 "$IT_A4:$VOID_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 4 # four client sockets: four flows towards B's workers
	it_conf_call echo.svc 8000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc -d "$HOLD_US"

# The call to drain: held 3 s in the echo server.
it_client -S 4 -c 1 -t 8000 >"$IT_TMP/inflight.txt" 2>&1 &
inflight_pid=$!
IT_PIDS+=("$inflight_pid")
it_wait_executing b 1
# An app on B, attached before the SIGTERM: request 0 times out (200 ms) before it, requests
# 1-3 go out every 300 ms during the drain, each on the least busy lane (lane 0 unless a call
# there never completed).
timed "$IT_TMP/b-app.txt" b_app -n void.svc -S 4 -c 4 -i 300 -t 200 -v &
b_app_pid=$!
IT_PIDS+=("$b_app_pid")
sleep 0.35

it_log "SIGTERM to daemon B with one call in flight (held ${HOLD_US} us)"
t0=$(it_ms)
kill -TERM "${IT_DAEMON_PID[b]}"
sleep 0.2
timed "$IT_TMP/status.txt" it_ctl b status &
p1=$!
timed "$IT_TMP/attach.txt" b_app -S 4 -c 1 -t 1000 &
p2=$!
timed "$IT_TMP/newcalls.txt" it_bench -S 4 -c 8 -N 8 -w 0 -t 1000 --json &
timed "$IT_TMP/probes.txt" drop_probes &
p4=$!
p3=$!
IT_PIDS+=("$p1" "$p2" "$p3" "$p4")
rc=0
it_wait_exit "${IT_DAEMON_PID[b]}" 15 || rc=$?
drain_ms=$(($(it_ms) - t0))
for p in "$p1" "$p2" "$p3" "$p4" "$b_app_pid" "$inflight_pid"; do
	wait "$p" || true
done
for f in inflight status attach newcalls probes b-app; do
	echo "    -- $f:"
	sed 's/^/    /' "$IT_TMP/$f.txt"
done

it_expect "daemon B exited 0 after the drain (exit $rc, $drain_ms ms)" test "$rc" -eq 0
it_expect "the call in flight completed and verified" grep -q ' 1 verified, 0 failed' "$IT_TMP/inflight.txt"
st_ms=$(took "$IT_TMP/status.txt")
it_expect "r2p2ctl status answered during the drain (exit $(exit_of "$IT_TMP/status.txt"), $st_ms ms)" \
	test "$(exit_of "$IT_TMP/status.txt")" = 0 -a "${st_ms:-9999}" -lt 1000
it_expect "r2p2ctl status said '(draining)'" grep -q '(draining)' "$IT_TMP/status.txt"
at_ms=$(took "$IT_TMP/attach.txt")
it_expect "a new app's attach was refused at once ($at_ms ms) with ESHUTDOWN" \
	bash -c "[ ${at_ms:-9999} -lt 1000 ] && grep -qi 'cannot attach.*shut' '$IT_TMP/attach.txt'"
shut=$(grep -Ec 'request [123] .*failed: .*\(-108\)' "$IT_TMP/b-app.txt" || true)
it_expect "the attached app's 3 calls during the drain failed at once with ESHUTDOWN ($shut of 3)" \
	test "$shut" -eq 3
drops=$(it_json_num "$IT_TMP/newcalls.txt" errors)
timeouts=$(it_json_num "$IT_TMP/newcalls.txt" timeouts)
it_expect "8 new calls from A were answered with DROP, none lost (dropped $drops, timed out $timeouts)" \
	test "${drops:-0}" -eq 8 -a "${timeouts:-1}" -eq 0

probe_drops=$(grep -c '^cc 08 4' "$IT_TMP/probes.txt" || true)
it_expect "12 raw requests from 12 source ports were all answered with DROP ($probe_drops of 12)" \
	test "$probe_drops" -eq 12

rc=0
timed "$IT_TMP/gone.txt" b_app -S 4 -c 1 -t 1000
sed 's/^/    /' "$IT_TMP/gone.txt"
it_expect "after B exited, an attach failed at once and said r2p2d is not reachable" \
	bash -c "[ $(took "$IT_TMP/gone.txt") -lt 1000 ] && grep -q 'cannot attach' '$IT_TMP/gone.txt' &&
		grep -Eqi 'no r2p2d|not running|no such file' '$IT_TMP/gone.txt'"
it_expect_done
it_pass "during a drain, others get status, refusals and DROPs, not silence"
