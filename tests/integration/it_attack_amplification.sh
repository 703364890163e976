#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_amplification: replayed first packets with a victim's source address draw at
# most 3x their bytes from the server, not the whole cached answer.
#
# Before the limit (docs/PROTOCOL.md, "Amplification limit"), each copy of the 22-byte
# first packet of a finished multi-packet call, sent with the client's address and port as
# source, made the server resend the whole cached answer to that address: 10 copies drew
# 603,280 B (2,742x). Now what a cached answer's resends send toward a source that has not
# echoed a challenge cookie stays within 3 times the request bytes that source sent since
# the answer, at most once per 100 ms; what does not fit is held back (amp_limited) and a
# challenge ACK asks for the cookie, which the victim, having no such call, never echoes.
#
# A calls B's echo.svc (plain, backend udp) with CALL_SIZE bytes: a multi-packet request
# (its first packet is 22 bytes) and a multi-packet answer, cached by B for 2 s. The call is
# captured on A's end of the link (sniff); then, within the dedup window, r2p2-rawsend -S
# sends COPIES copies of the captured first packet from A's address and A's client port
# (a raw socket: the source is forged, A's daemon never made these calls) to B, 10 ms apart,
# and the test sums the UDP payload bytes B sent to that address and port meanwhile.
# Checked: bytes out <= 3 x bytes in (challenges included); B's amp_limited rose and its
# amp_validated did not; B's app ran the request once; a normal call afterwards is
# verified; both daemons exit 0 on SIGTERM.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CALL_SIZE=61440
COPIES=10

it_init
it_setup_pair
DST=$IT_B4:$IT_ECHO_PORT
{
	printf '[daemon]\nlisten = %s\nworkers = 1\nsocket = %s\nbackend = udp\n\n' "$IT_B4" "$(it_sock b)"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 3 "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
RAWSEND=$(it_bin r2p2-rawsend)

# status: B's status once the workers' snapshots caught up (refreshed every 100 ms)
status() {
	sleep 0.25
	it_ctl b status
}
# bytes_to CAPTURE SRC DST: UDP payload bytes of the datagrams from SRC to DST in CAPTURE.
bytes_to() {
	awk -v s="$2" -v d="$3" '$1 == s && $2 == d { n += length($3) / 2 } END { print n + 0 }' "$1"
}

it_log "--- the call, captured on A's end"
CAP=$IT_TMP/call.txt
it_sniff_start "$IT_NS_A" "$CAP" 10000 -i "r2a$IT_ID" -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
it_check "one call of $CALL_SIZE B, verified" it_client -n echo.svc -S "$CALL_SIZE" -c 1 -t 1000
T_CALL=$(it_ms)
sleep 0.1
it_sniff_stop "$SNIFF"
# the first packet: REQUEST (type 0), F set, 22 bytes, from A to B
FIRST=$(awk -v d="$DST" '$2 == d && length($3) == 44 && substr($3, 1, 4) == "cc08" &&
	substr($3, 5, 1) == "0" { print; exit }' "$CAP")
[ -n "$FIRST" ] || it_fail "no 22-byte first packet from A to B captured: $(head -n 3 "$CAP")"
SRC=${FIRST%% *}
HEX=${FIRST##* }
ANSWER=$(bytes_to "$CAP" "$DST" "$SRC")
it_log "  first packet $SRC -> $DST: $HEX; the answer was $ANSWER B of UDP payload"
S0=$(status)

it_log "--- $COPIES forged copies from $SRC (raw socket), within the dedup window"
CAP2=$IT_TMP/attack.txt
it_sniff_start "$IT_NS_A" "$CAP2" 10000 -i "r2a$IT_ID" -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
it_check "r2p2-rawsend sent $COPIES copies" \
	it_in "$IT_NS_A" timeout 10 "$RAWSEND" -S "$SRC" -g 10000 -R "$COPIES" "$DST" "$HEX"
T_SENT=$(it_ms)
sleep 0.3
it_sniff_stop "$SNIFF"
S1=$(status)
IN=$(bytes_to "$CAP2" "$SRC" "$DST")
OUT=$(bytes_to "$CAP2" "$DST" "$SRC")
LIMITED=$(($(it_drops "$S1" amp_limited) - $(it_drops "$S0" amp_limited)))
VALIDATED=$(($(it_drops "$S1" amp_validated) - $(it_drops "$S0" amp_validated)))
it_log "  sent $((T_SENT - T_CALL)) ms after the call; in $IN B, out $OUT B (factor $((OUT / (IN ? IN : 1)))), without the limit $((COPIES * ANSWER)) B; amp_limited +$LIMITED"
it_expect "the copies were seen on the wire ($IN B = $COPIES x 22)" test "$IN" -eq $((COPIES * 22))
it_expect "the copies went out within 1.5 s of the call (B caches the answer 2 s)" \
	test $((T_SENT - T_CALL)) -lt 1500
it_expect "B sent $OUT B <= 3 x $IN toward $SRC" test "$OUT" -le $((3 * IN))
it_expect "B's amp_limited rose (+$LIMITED)" test "$LIMITED" -gt 0
it_expect "no address was validated (amp_validated +$VALIDATED)" test "$VALIDATED" -eq 0
it_expect "B answered with challenges, so the copies matched its cache (out $OUT > 0)" test "$OUT" -gt 0

it_log "--- B ran the request once and keeps serving"
SERVED=$(it_echo_served "$ECHO")
it_expect "the app ran the request once ($SERVED)" test "$SERVED" -eq 1
it_expect "a normal call afterwards, verified" it_client -n echo.svc -S "$CALL_SIZE" -c 1 -t 1000
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "$COPIES forged copies ($IN B) drew $OUT B (was $((COPIES * ANSWER)) B without the limit); amp_limited +$LIMITED"
