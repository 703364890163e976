#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_tls_forged_answer: (G3) forged answers to a tls call change nothing.
#
# BoringSSL cannot take back a record it read, so a forged record handed to it would end
# the exchange. Every tls answer therefore carries a proof (docs/PROTOCOL.md, "Answer
# proofs") that the client checks first; an R2P2 DROP, which nothing authenticates, is set
# aside as well. Daemon A calls echo.svc on B in tls mode; the echo server on B takes 700 ms
# per request (-d), so the call is still waiting when the test, having read A's port and
# the call's rid off a capture on A's end of the link, sends forged answers "from B:8000"
# through a raw socket in B's namespace (r2p2-rawsend -S):
#   - a SERVER_FINAL claiming a proof (kind 0x82) with a wrong tag;
#   - a SERVER_FINAL without a proof (kind 2), and an ERROR without a proof (kind 5);
#   - an R2P2 DROP for the call.
# Twice: on a first contact (a full handshake: the forgeries come while A waits for the
# answer to CLIENT_SECOND) and on a 0-RTT call. Each time the call succeeds with the genuine
# answer, A's engine counts the forgeries as unauthentic, and the echo server ran the request
# exactly once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DST=$IT_B4:$IT_ECHO_PORT
SZ=24

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call_tls echo.svc 5000 0 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c -d 700000
ECHO=$IT_LAST_PID
SERVED=0

# unauthentic: the sum of the unauthentic counters of daemon A's workers.
unauthentic() {
	it_ctl a status | grep -o 'unauthentic [0-9]*' | awk '{ s += $2 } END { print s + 0 }'
}

# forge KIND: one call from A while forged answers reach it; KIND names it in the log.
forge() {
	local kind=$1 cap=$IT_TMP/sniff-$1.txt sniff pid line src port rid u0 u1 hdr
	u0=$(unauthentic)
	it_sniff_start "$IT_NS_A" "$cap" 20000 -i "r2a$IT_ID"
	sniff=$IT_LAST_PID
	it_bg "$IT_NS_A" "$IT_TMP/client-$kind.out" "$(it_bin r2p2-echo-client)" -s "$(it_sock a)" \
		-S "$SZ" -c 1 -t 5000
	pid=$IT_LAST_PID
	it_wait_executing b 1 # the request is at the app: A waits for the final answer
	line=$(awk -v d="$DST" '$2 == d { l = $0 } END { print l }' "$cap")
	[ -n "$line" ] || it_fail "$kind: no datagram from A to B in the capture"
	src=${line%% *}
	port=${src##*:}
	rid=$(awk '{ print substr($3, 9, 4) }' <<<"$line")
	it_log "  $kind: A's call goes from port $port, rid 0x$rid; forging its answers"
	hdr="cc0811e0${rid}0001" # RESPONSE, FIXED_ROUTE, F|L|tls, p_order 1
	it_in "$IT_NS_B" "$(it_bin r2p2-rawsend)" -S "$DST" "$IT_A4:$port" \
		"${hdr}0182000000000000000017030300101111111111111111111111111111111122222222222222222222222222222222010010" \
		"${hdr}0102000000000000000017030300103333333333333333333333333333333333" \
		"${hdr}01050000000000000000" \
		"cc0841e0${rid}000144524f50" >/dev/null
	it_wait_exit "$pid" 10 >/dev/null || true
	it_sniff_stop "$sniff"
	u1=$(unauthentic)
	it_log "  $kind: $(tail -n 1 "$IT_TMP/client-$kind.out")"
	it_check "$kind: the call succeeded with the genuine answer" \
		grep -q ": 1 verified, 0 failed, 0 mismatched" "$IT_TMP/client-$kind.out"
	it_check "$kind: A set the 4 forgeries aside (unauthentic +$((u1 - u0)))" test $((u1 - u0)) -ge 4
	SERVED=$((SERVED + 1))
	it_check "$kind: the echo server ran the request once ($SERVED in all)" \
		test "$(it_echo_served "$ECHO")" -eq "$SERVED"
}

it_log "--- first contact (full handshake, answers proven by B's signature, then an exporter)"
forge first
it_check "A holds a ticket now" test "$(it_tls_get a client tickets_received)" -ge 1
it_log "--- 0-RTT (the answer proven under the ticket's key)"
forge 0rtt
it_check "the second call went as 0-RTT (B: early_accepted $(it_tls_get b server early_accepted))" \
	test "$(it_tls_get b server early_accepted)" -ge 1
grep -m 3 "set aside" "$IT_TMP/r2p2d-a.log" | sed 's/^/    A: /' || true
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "forged tls answers and DROPs were set aside; the genuine answers completed the calls"
