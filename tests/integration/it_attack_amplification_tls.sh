#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_amplification_tls: a ticketless ClientHello sent with a victim's source address
# draws at most 3x its bytes from a tls server, not the certificate flight.
#
# A full tls handshake answers a ClientHello (one datagram of about 500 bytes) with
# ServerHello .. Finished and the certificate chain: 3.5x with the demo P-256 chain, more
# with RSA, toward whatever source the ClientHello claimed. The server now treats that
# flight as its own answer, not the app's (eng_answer): toward an address that has not
# echoed a challenge cookie it sends at most 3 times the bytes received, a challenge ACK
# first; a genuine client echoes the cookie and gets the rest one round trip later
# (docs/PROTOCOL.md, "Amplification limit").
#
# A calls B's echo.svc in tls mode with no ticket yet (a full handshake), captured on A's
# end of the link: the call succeeds, and B counts one validated address. Then its
# CLIENT_FIRST (kind 1) is sent again by r2p2-rawsend -S from A's address but PORTS other
# ports of A (a raw socket: forged sources, no socket listens there), each a new full
# handshake at B. Checked on the wire: what B sent toward those ports <= 3 x what they
# "sent"; B's amp_limited rose and amp_validated did not; no app request ran for them; a
# normal call afterwards is verified; both daemons exit 0 on SIGTERM.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORTS=10

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys" 1
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call_tls echo.svc 2000 2 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
RAWSEND=$(it_bin r2p2-rawsend)

# bytes_between CAPTURE SRC_RE DST_RE: UDP payload bytes of the datagrams whose source and
# destination match the awk regular expressions.
bytes_between() {
	awk -v s="$2" -v d="$3" '$1 ~ s && $2 ~ d { n += length($3) / 2 } END { print n + 0 }' "$1"
}

it_log "--- the first call: a full handshake, captured on A's end"
CAP=$IT_TMP/call.txt
it_sniff_start "$IT_NS_A" "$CAP" 10000 -i "r2a$IT_ID" -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
S0=$(it_tls_status b)
it_check "a tls call with no ticket, verified" it_client -n echo.svc -S 64 -c 1 -t 2000
sleep 0.1
it_sniff_stop "$SNIFF"
S1=$(it_tls_status b)
# CLIENT_FIRST: REQUEST with F|L|tls (cc 08 00 e0), frame version 1 kind 1, handshake id 0
FIRST=$(awk -v d="$DST" '$2 == d && substr($3, 1, 8) == "cc0800e0" &&
	substr($3, 17, 20) ~ /^01(01|81)0000000000000000$/ { print; exit }' "$CAP")
[ -n "$FIRST" ] || it_fail "no CLIENT_FIRST from A to B captured: $(head -n 3 "$CAP")"
SRC=${FIRST%% *}
HEX=${FIRST##* }
IN1=$((${#HEX} / 2))
FULL=$(($(it_tls_counter "$S1" server full_handshakes) - $(it_tls_counter "$S0" server full_handshakes)))
VAL=$(($(it_drops "$S1" amp_validated) - $(it_drops "$S0" amp_validated)))
it_log "  CLIENT_FIRST $SRC -> $DST: $IN1 B; B answered A with $(bytes_between "$CAP" "^$DST\$" "^$SRC\$") B in all"
it_expect "B made a full handshake (+$FULL)" test "$FULL" -eq 1
it_expect "A's address was validated by its echo, one round trip (amp_validated +$VAL)" test "$VAL" -eq 1

it_log "--- $PORTS forged ClientHellos from other ports of A (raw socket)"
BASE=$((${SRC##*:} + 1000))
CAP2=$IT_TMP/attack.txt
it_sniff_start "$IT_NS_A" "$CAP2" 10000 -i "r2a$IT_ID" -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
for ((i = 0; i < PORTS; i++)); do
	it_in "$IT_NS_A" timeout 10 "$RAWSEND" -S "$IT_A4:$((BASE + i))" "$DST" "$HEX" ||
		it_fail "r2p2-rawsend from port $((BASE + i)) failed"
done
sleep 0.5
it_sniff_stop "$SNIFF"
S2=$(it_tls_status b)
FORGED="^$IT_A4:($(seq -s '|' "$BASE" $((BASE + PORTS - 1))))\$"
IN=$(bytes_between "$CAP2" "$FORGED" "^$DST\$")
OUT=$(bytes_between "$CAP2" "^$DST\$" "$FORGED")
FULL=$(($(it_tls_counter "$S2" server full_handshakes) - $(it_tls_counter "$S1" server full_handshakes)))
LIMITED=$(($(it_drops "$S2" amp_limited) - $(it_drops "$S1" amp_limited)))
VAL=$(($(it_drops "$S2" amp_validated) - $(it_drops "$S1" amp_validated)))
it_log "  in $IN B, out $OUT B (x$(awk -v o="$OUT" -v i="$IN" 'BEGIN { printf "%.2f", o / (i ? i : 1) }')); full_handshakes +$FULL, amp_limited +$LIMITED, amp_validated +$VAL"
it_expect "the forged ClientHellos were seen on the wire ($IN B = $PORTS x $IN1)" \
	test "$IN" -eq $((PORTS * IN1))
it_expect "B handled them as full handshakes (+$FULL)" test "$FULL" -eq "$PORTS"
it_expect "B sent $OUT B <= 3 x $IN toward the forged sources" test "$OUT" -le $((3 * IN))
it_expect "B answered something (out $OUT > 0: the challenges)" test "$OUT" -gt 0
it_expect "B's amp_limited rose (+$LIMITED)" test "$LIMITED" -gt 0
it_expect "no forged address was validated (amp_validated +$VAL)" test "$VAL" -eq 0

it_log "--- B keeps serving"
it_expect "the app ran only the genuine call ($(it_echo_served "$ECHO"))" \
	test "$(it_echo_served "$ECHO")" -eq 1
it_expect "a normal call afterwards, verified" it_client -n echo.svc -S 64 -c 1 -t 2000
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "$PORTS forged ClientHellos ($IN B) drew $OUT B from the tls server; the genuine first call paid one round trip"
