#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_replay: the first flight of a 0-RTT call (CLIENT_FIRST: ClientHello + the request
# as early data), captured on B's interface with tests/integration/sniff.c, is sent again
# from raw sockets in namespace A (r2p2-rawsend):
#  (j) replayed to B, the server that executed it, from other ports and from another
#      address: the echo server never sees it again, B's replays_refused rises, and
#      the answers are handshake-only flights (kind 3) or ERROR (kind 5), never
#      SERVER_FINAL (kind 2);
#  (k) copies with one bit flipped at several places of the TLS bytes, sent to B, and to
#      B2 (namespace C, same certificate and STEK; each copy made from another captured
#      flight that B2 never saw, so its strike register cannot be what refuses them):
#      nothing is executed, bad_messages or early_rejected rises, both keep serving.
# (G1) an unmodified captured flight sent to B2 is refused there: its 0-RTT data is bound
# to B's address and port (wrong_server), and B2's echo server never runs it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IT_NS_C=r2p2-c-$IT_ID
C4=10.79.$IT_NET.2
A4_C=10.79.$IT_NET.1
A4_ALT=10.77.$IT_NET.11 # a second address of A, to replay from elsewhere
MARKER="R2P2-REPLAY-$IT_ID-"
NCAP=30 # captured calls: 1 to replay, 1 per flipped copy sent to B2, 1 for the control

it_tls_init
it_setup_pair
it_netns "$IT_NS_C"
it_link "$IT_NS_A" "r2ac$IT_ID" "$A4_C" - "$IT_NS_C" "r2c$IT_ID" "$C4" -
ip -n "$IT_NS_A" addr add "$A4_ALT/24" dev "r2a$IT_ID"
it_log "namespace $IT_NS_C ($C4) <-> $IT_NS_A ($A4_C); A also has $A4_ALT"
it_tls_certs "$IT_TLS" echo.svc

for side in b b2; do
	if [ "$side" = b ]; then listen=$IT_B4; else listen=$C4; fi
	{
		it_conf_daemon_tls "$side" "$listen" "$IT_TLS/stek.keys"
		it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	} >"$IT_TMP/$side.conf"
done
{
	it_conf_daemon a "$IT_A4"
	it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon b2 "$IT_NS_C" "$IT_TMP/b2.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b2 "$IT_NS_C" -n echo.svc -c
ECHO2=$IT_LAST_PID
RAWSEND=$(it_bin r2p2-rawsend)
DST=$IT_B4:$IT_ECHO_PORT
DST2=$C4:$IT_ECHO_PORT

# frame_kind HEX: the tls frame kind of an R2P2 datagram, e.g. "02" (it_tls_frame_kind)
frame_kind() { it_tls_frame_kind "$1"; }

# send_raw OUT DST HEX [RAWSEND_ARGS...]: one datagram from a fresh socket in A; the replies
# (hex, one per line, space-separated bytes removed) go to OUT. Waits up to 1 s.
send_raw() {
	local out=$1 dst=$2 hex=$3
	shift 3
	it_in "$IT_NS_A" timeout 10 "$RAWSEND" -w 1000 -r 1 "$@" "$dst" "$hex" 2>/dev/null |
		tr -d ' ' >"$out" || true
}

it_check "warm-up: 3 tls calls (a full handshake, then 0-RTT)" it_client -S 32 -c 3 -t 3000

it_log "--- capture the first flights of $NCAP 0-RTT calls"
CAP=$IT_TMP/sniff.txt
it_sniff_start "$IT_NS_B" "$CAP" 20000 -i "r2b$IT_ID" -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
e0=$(it_tls_get b server early_accepted)
it_check "$NCAP 0-RTT tls calls with the marker" it_client -P "$MARKER" -S 48 -c "$NCAP" -t 3000
sleep 0.2
it_sniff_stop "$SNIFF"
it_check "B accepted their early data" test "$(it_tls_get b server early_accepted)" -eq $((e0 + NCAP))
# REQUEST, policy 0, F|L|tls; frame version 1, kind 1, handshake id 0
mapfile -t FIRSTS < <(awk -v b="$DST" '$2 == b && substr($3, 1, 8) == "cc0800e0" &&
	substr($3, 17, 20) ~ /^01(01|81)0000000000000000$/ { print $3 }' "$CAP")
it_check "the capture holds $NCAP CLIENT_FIRSTs (${#FIRSTS[@]} of $(wc -l <"$CAP") datagrams)" \
	test "${#FIRSTS[@]}" -eq "$NCAP"
FIRST=${FIRSTS[0]}
RID=${FIRST:8:4}
ANSWER=$(awk -v b="$DST" -v rid="$RID" '$1 == b && substr($3, 1, 12) == "cc0811e0" rid { print $3 }' "$CAP")
it_check "B answered the first one with SERVER_FINAL (kind 2: the request ran as 0-RTT)" \
	test "$(frame_kind "$ANSWER")" = 02
LEN=$((${#FIRST} / 2))
it_log "  CLIENT_FIRST: rid 0x$RID, $LEN bytes: ${FIRST:0:40}..."
it_check "its early data is in there (single packet, longer than a bare ClientHello)" \
	test "$LEN" -gt 400
served0=$(it_echo_served "$ECHO")

it_log "--- (j) replay the captured first flight to B"
s0=$(it_tls_status b)
rr0=$(it_tls_counter "$s0" server replays_refused)
kinds=""
i=0
for from in "" "" "$A4_ALT:0"; do
	i=$((i + 1))
	send_raw "$IT_TMP/replay-$i.txt" "$DST" "$FIRST" ${from:+-b "$from"}
	k=$(frame_kind "$(head -n 1 "$IT_TMP/replay-$i.txt")")
	kinds="$kinds ${k:-none}"
	it_log "  replay $i from ${from:-$IT_A4 (new port)}: answer kind ${k:-none}"
	it_check "replay $i is not answered with SERVER_FINAL" test "$k" != 02
done
it_check "every replay got a handshake-only flight or an ERROR (kinds:$kinds)" \
	test -z "$(tr ' ' '\n' <<<"$kinds" | grep -v -e '^$' -e '^03$' -e '^05$' || true)"
it_check "the same replay datagram 3 times from one port: no SERVER_FINAL" \
	bash -c "! timeout 10 ip netns exec '$IT_NS_A' '$RAWSEND' -w 1000 -R 3 '$DST' '$FIRST' | tr -d ' ' | cut -c19-20 | grep -qx 02"
s=$(it_tls_status b)
rr=$(it_tls_counter "$s" server replays_refused)
it_check "B refused the replayed early data (replays_refused $rr0 -> $rr)" test "$rr" -ge $((rr0 + 3))
it_log "  B: $(grep '^strike register' <<<"$s")"
it_check "B's echo server never saw the replays (served still $served0)" \
	test "$(it_echo_served "$ECHO")" -eq "$served0"

it_log "--- (k) copies with one bit flipped, to B and to B2"
# positions FLIGHT: offsets in the R2P2 payload (the frame) to flip: 10 record type, 13-14
# record length, 15 handshake type, 21.. ClientHello random, the middle and the end (ticket,
# binder) of the ClientHello record, then the early data record (header, ciphertext, tag).
# 12 is left out: the first record's legacy_record_version, which RFC 8446 5.1 ignores.
positions() {
	local p=${1:16} l
	l=$((16#${p:26:4}))
	echo 10 13 15 21 30 $((15 + l / 2)) $((15 + l - 40)) $((15 + l - 3)) $((15 + l)) \
		$((15 + l + 3)) $((15 + l + 9)) $(((${#p} / 2) - 1))
}
# flip FLIGHT POS MASK: FLIGHT with payload byte POS xor MASK
flip() {
	local p=${1:16} pos=$2 byte
	byte=${p:$((2 * pos)):2}
	printf '%s%s%02x%s' "${1:0:16}" "${p:0:$((2 * pos))}" $((16#$byte ^ 16#$3)) "${p:$((2 * pos + 2))}"
}
read -r -a POS <<<"$(positions "$FIRST")"
it_log "  ClientHello record $((16#${FIRST:42:4})) bytes; flipping payload bytes ${POS[*]}"
b2f0=$(it_tls_status b2)
bf0=$(it_tls_status b)
served2_0=$(it_echo_served "$ECHO2")
n=0
fresh=1
for i in "${!POS[@]}"; do
	for mask in 01 80; do
		for target in "$DST" "$DST2"; do
			n=$((n + 1))
			if [ "$target" = "$DST" ]; then
				pos=${POS[$i]}
				dg=$(flip "$FIRST" "$pos" "$mask")
			else
				read -r -a pos2 <<<"$(positions "${FIRSTS[$fresh]}")"
				pos=${pos2[$i]}
				dg=$(flip "${FIRSTS[$fresh]}" "$pos" "$mask")
				fresh=$((fresh + 1))
			fi
			send_raw "$IT_TMP/flip-$n.txt" "$target" "$dg"
			k=$(frame_kind "$(head -n 1 "$IT_TMP/flip-$n.txt")")
			if [ "$k" = 02 ]; then
				it_fail "payload byte $pos ^ 0x$mask to $target was answered with SERVER_FINAL"
			fi
			printf '%s@%s^%s:%s ' "$([ "$target" = "$DST" ] && echo B || echo B2)" "$pos" \
				"$mask" "${k:-none}" >>"$IT_TMP/flip-kinds.txt"
		done
	done
done
it_log "  answers (server@byte^mask:kind): $(cat "$IT_TMP/flip-kinds.txt")"
it_log "  ok: none of the $n flipped copies was answered with SERVER_FINAL"
it_check "B's echo server ran none of them (served still $served0)" \
	test "$(it_echo_served "$ECHO")" -eq "$served0"
it_check "B2's echo server ran none of them (served still $served2_0)" \
	test "$(it_echo_served "$ECHO2")" -eq "$served2_0"
b2f=$(it_tls_status b2)
bf=$(it_tls_status b)
for side in b b2; do
	if [ "$side" = b ]; then st0=$bf0 st=$bf; else st0=$b2f0 st=$b2f; fi
	bm0=$(it_tls_counter "$st0" server bad_messages)
	bm=$(it_tls_counter "$st" server bad_messages)
	er0=$(it_tls_counter "$st0" server early_rejected)
	er=$(it_tls_counter "$st" server early_rejected)
	it_log "  $side: bad_messages $bm0 -> $bm, early_rejected $er0 -> $er, replays_refused $(it_tls_counter "$st" server replays_refused)"
	it_check "$side counted the flipped copies as bad messages or rejected early data" \
		test $((bm - bm0 + er - er0)) -ge 6
done
# A copy whose ClientHello is intact but whose early data record is damaged passes the binder
# (early_accepted, and its random goes into the register), then fails to decrypt (bad_messages).
ea=$(($(it_tls_counter "$b2f" server early_accepted) - $(it_tls_counter "$b2f0" server early_accepted)))
bm=$(($(it_tls_counter "$b2f" server bad_messages) - $(it_tls_counter "$b2f0" server bad_messages)))
it_check "every early data B2 accepted from them ended as a bad message (+$ea <= +$bm)" \
	test "$ea" -le "$bm"

it_log "--- the daemons keep serving"
it_check "daemon B alive" it_alive "${IT_DAEMON_PID[b]}"
it_check "daemon B2 alive" it_alive "${IT_DAEMON_PID[b2]}"
it_check "10 tls calls through B after all that" it_client -S 32 -c 10 -t 3000
it_check "B's echo server ran exactly those 10" test "$(it_echo_served "$ECHO")" -eq $((served0 + 10))

it_log "--- (G1) the unmodified flight to B2: its 0-RTT data is bound to B"
CONTROL=${FIRSTS[$((NCAP - 1))]}
it_check "a captured flight is left for this" test "$fresh" -lt $((NCAP - 1))
ws0=$(it_tls_get b2 server wrong_server)
send_raw "$IT_TMP/b2-first.txt" "$DST2" "$CONTROL"
k=$(frame_kind "$(head -n 1 "$IT_TMP/b2-first.txt")")
it_log "  B2 answered kind ${k:-none}; served $(it_echo_served "$ECHO2")"
it_check "B2 refused the intact flight (kind ${k:-none}, not 02)" test "$k" != 02
it_check "B2 counted it as bound to another server (wrong_server $ws0 -> $(it_tls_get b2 server wrong_server))" \
	test "$(it_tls_get b2 server wrong_server)" -eq $((ws0 + 1))
it_check "B2's echo server did not run it" test "$(it_echo_served "$ECHO2")" -eq "$served2_0"
for side in a b b2; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "replayed and bit-flipped first flights never ran twice nor at all"
