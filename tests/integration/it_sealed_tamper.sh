#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_sealed_tamper: captured sealed requests (tests/integration/sniff.c on the A-B link), sent
# again, modified or not, from raw sockets in namespace A (r2p2-rawsend).
#
# Daemon A calls echo.svc on B:8000. Half of the calls go while an nftables rule in B's
# namespace drops them before B's sockets, so the captures (on A's end) hold sealed requests B
# executed and, just as genuine and bound to B:8000, requests B never saw ("unseen"): only those
# can show every check of the server before its strike register (the register is consulted
# after the AEAD, so an intact copy of an executed request is a replay, a tampered one a forgery).
#  (c) copies of an unseen request with one bit flipped in the header flags (-> wrong_mode,
#      R2P2 DROP), the policy, the version (-> malformed), the token's key id (-> unknown_key),
#      nonce, ciphertext and tag (-> bad_token), N (-> bad_aead), the timestamp (high bits ->
#      stale, lowest bit -> bad_aead), the ciphertext and the tag (-> bad_aead), plus a
#      truncated (-> malformed) and an extended copy (-> bad_aead): each answered with the
#      REJECT of its reason, the counters rise by exactly that, the echo server runs none of
#      them; then the intact request runs once (forged copies burn no nonce) and B keeps
#      serving; a copy of an executed request with a flipped ciphertext bit is refused as
#      bad_aead (the register is consulted after the AEAD: a forgery never reaches it).
#  (d) replays: an executed request from other ports and another address of A -> REJECT
#      replay, not executed; the very datagram from the same address and port as the
#      original (daemon A stopped, its port taken over) within the dedup window -> the
#      engine's cached response, byte for byte, not executed; an unseen request from a fixed
#      port: runs once, the same datagram again from that port gets the cached answer, from
#      another port REJECT replay, and from the first port once the dedup window has passed
#      REJECT replay (the strike register outlives the dedup cache).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

DEDUP_MS=3000 # B's dedup_window_ms (default 2000): margin for stopping daemon A in (d)
A4_ALT=10.77.$IT_NET.11
MARKER="R2P2-TAMPER-$IT_ID-"
SZ=48

it_sealed_init
command -v nft >/dev/null || it_skip "nft (Debian nftables) is missing: it hides requests from B"
it_setup_pair
ip -n "$IT_NS_A" addr add "$A4_ALT/24" dev "r2a$IT_ID"
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys" 2 "dedup_window_ms = $DEDUP_MS"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon_sealed a "$IT_A4" - 1
	it_conf_call_sealed echo.svc 400 1 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
SERVED=0

# sniff_calls OUT COUNT: COUNT calls captured on A's end of the link into OUT.
sniff_calls() {
	local sniff
	it_sealed_sniff "$1" 20000
	sniff=$IT_LAST_PID
	it_client -P "$MARKER" -S "$SZ" -c "$2" >>"$1.client" 2>&1 || true
	sleep 0.1
	it_sniff_stop "$sniff"
}

# capture NAME COUNT: COUNT calls to B, then COUNT calls that B's namespace drops on input
# (after A's capture saw them); sets EXEC (sealed requests B ran), UNSEEN (those it never
# saw, retransmissions folded) and CAP (the capture of the first half).
capture() {
	local cap=$IT_TMP/sniff-$1.txt hid=$IT_TMP/sniff-$1-unseen.txt ok
	sniff_calls "$cap" "$2"
	ip netns exec "$IT_NS_B" nft add table inet r2p2hide
	ip netns exec "$IT_NS_B" nft add chain inet r2p2hide in '{ type filter hook input priority 0; }'
	ip netns exec "$IT_NS_B" nft add rule inet r2p2hide in udp dport "$IT_ECHO_PORT" drop
	sniff_calls "$hid" "$2"
	ip netns exec "$IT_NS_B" nft delete table inet r2p2hide
	ok=$(grep -o '[0-9]* verified' "$cap.client" | cut -d' ' -f1)
	SERVED=$((SERVED + ok))
	mapfile -t EXEC < <(it_sealed_requests "$cap" "$DST")
	mapfile -t UNSEEN < <(it_sealed_requests "$hid" "$DST" | awk '!seen[$0]++')
	it_log "  2 x $2 calls: $ok verified (the others were hidden from B); captured ${#EXEC[@]} executed and ${#UNSEEN[@]} unseen sealed requests"
	CAP=$cap
}

# reasons STATUS0 STATUS1: the rejection counters that rose, "reason+N ..."
reasons() {
	local r d out=""
	for r in "${IT_SEALED_REASONS[@]:1}"; do
		d=$(it_sealed_delta "$1" "$2" "$r")
		[ "$d" -eq 0 ] || out="$out $r+$d"
	done
	printf '%s\n' "${out:- none}"
}

it_check "warm-up: 1 sealed call (the bootstrap, to B:8000)" it_client -S 16 -c 1 -t 3000
SERVED=1

it_log "--- (c) copies of a sealed request with one bit flipped, sent to B"
capture c 6
it_check "the capture holds executed and unseen sealed requests" \
	test "${#EXEC[@]}" -ge 2 -a "${#UNSEEN[@]}" -ge 2
U=${UNSEEN[$((${#UNSEEN[@]} - 1))]} # the freshest: timestamps are good for 10 s
LEN=$((${#U} / 2))
it_log "  unseen request: $LEN bytes, rid 0x${U:8:4}, key id ${U:18:8}, N ${U:162:24}, ts ${U:186:16}"
# name byte mask expected-answer (offsets: lib_sealed.sh)
TK=$IT_SEALED_TOKEN
FLIPS=(
	"flags-0x10 3 10 drop"
	"flags-0x20 3 20 drop"
	"policy 2 01 reject:bad_aead"
	"version $IT_SEALED_HDR 01 reject:malformed"
	"key-id-high $TK 80 reject:unknown_key"
	"key-id-low $((TK + 3)) 01 reject:unknown_key"
	"token-nonce $((TK + 4)) 01 reject:bad_token"
	"token-ciphertext $((TK + 31)) 04 reject:bad_token"
	"token-tag $((TK + 71)) 80 reject:bad_token"
	"N-prefix $IT_SEALED_NONCE 01 reject:bad_aead"
	# not the counter's low bits: a neighbouring N may be a genuine request
	"N-counter $((IT_SEALED_NONCE + 8)) 01 reject:bad_aead"
	"timestamp-top $IT_SEALED_TS 01 reject:stale"
	"timestamp-2^23ms $((IT_SEALED_TS + 5)) 80 reject:stale"
	"timestamp-1ms $((IT_SEALED_TS + 7)) 01 reject:bad_aead"
	"binding-address $((IT_SEALED_BIND + 15)) 01 reject:wrong_server"
	"binding-port $((IT_SEALED_BIND + 17)) 01 reject:wrong_server"
	"ciphertext-first $IT_SEALED_CT 01 reject:bad_aead"
	"ciphertext-last $((LEN - 17)) 40 reject:bad_aead"
	"tag-first $((LEN - 16)) 01 reject:bad_aead"
	"tag-last $((LEN - 1)) 80 reject:bad_aead"
)
s0=$(it_tls_status b)
wm0=$(it_served_field "$s0" echo.svc wrong_mode)
bad=0
t0=$(it_ms)
i=0
for f in "${FLIPS[@]}"; do
	read -r name pos mask want <<<"$f"
	i=$((i + 1))
	it_rawsend "$IT_NS_A" "$IT_TMP/flip-$i.txt" "$DST" "$(it_hex_flip "$U" "$pos" "$mask")"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/flip-$i.txt")")
	if [ "$got" = "$want" ]; then
		it_log "  ok: $name (byte $pos ^ 0x$mask): $got"
	else
		it_log "  FAILED: $name (byte $pos ^ 0x$mask): $got, expected $want"
		bad=$((bad + 1))
	fi
done
it_rawsend "$IT_NS_A" "$IT_TMP/flip-trunc.txt" "$DST" "${U:0:$((2 * (8 + 100)))}"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/flip-trunc.txt")")
it_log "  truncated to 100 payload bytes: $got"
[ "$got" = reject:malformed ] || bad=$((bad + 1))
it_rawsend "$IT_NS_A" "$IT_TMP/flip-ext.txt" "$DST" "${U}00"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/flip-ext.txt")")
it_log "  one byte appended: $got"
[ "$got" = reject:bad_aead ] || bad=$((bad + 1))
it_log "  (the copies took $(($(it_ms) - t0)) ms: well within the 10 s timestamp window)"
it_check "every tampered copy got the answer of its reason ($bad wrong)" test "$bad" -eq 0
s1=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$s1")"
it_check "the rejection counters rose by exactly those (:$(reasons "$s0" "$s1"))" \
	test "$(reasons "$s0" "$s1")" = " malformed+2 unknown_key+2 bad_token+3 stale+2 bad_aead+9 wrong_server+2"
it_check "wrong_mode rose by 2 (the flag flips)" \
	test "$(it_served_field "$s1" echo.svc wrong_mode)" -eq $((wm0 + 2))
it_check "nothing was opened" test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0

it_log "--- (c) the intact request still runs once: forged copies burned nothing"
it_rawsend "$IT_NS_A" "$IT_TMP/intact.txt" "$DST" "$U"
R=$(cat "$IT_TMP/intact.txt")
it_log "  (sent $(($(it_ms) - t0)) ms after the first tampered copy)"
it_check "the intact unseen request is answered with a sealed response ($(it_sealed_reply_kind "$R"))" \
	test "$(it_sealed_reply_kind "$R")" = sealed
it_check "the response header is cc 08 11 d0, rid 0x${U:8:4}, and it echoes N" \
	test "${R:0:12}" = "cc0811d0${U:8:4}" -a "${R:18:24}" = "${U:162:24}"
it_check "its size is 8 + 41 + 5 + $SZ bytes (header, sealed overhead, extension block, echo)" \
	test $((${#R} / 2)) -eq $((8 + 41 + 5 + SZ))
SERVED=$((SERVED + 1))
it_check "the echo server ran the executed requests and this one, none of the copies ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
E=${EXEC[0]}
s0=$(it_tls_status b)
it_rawsend "$IT_NS_A" "$IT_TMP/exec-flip.txt" "$DST" "$(it_hex_flip "$E" "$IT_SEALED_CT" 01)"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/exec-flip.txt")")
it_check "an executed request with a flipped ciphertext bit: $got (AEAD before the register)" \
	test "$got" = reject:bad_aead
it_rawsend "$IT_NS_A" "$IT_TMP/exec-flip2.txt" "$DST" "$(it_hex_flip "$E" $((TK + 4)) 01)"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/exec-flip2.txt")")
it_check "an executed request with a flipped token bit: $got" test "$got" = reject:bad_token
s1=$(it_tls_status b)
it_check "counted as bad_aead+1 bad_token+1 (:$(reasons "$s0" "$s1"))" \
	test "$(reasons "$s0" "$s1")" = " bad_token+1 bad_aead+1"
it_check "daemon B alive" it_alive "${IT_DAEMON_PID[b]}"
it_client -S 16 -c 10 >"$IT_TMP/after-c.out" 2>&1 || true
it_check "10 sealed calls after all that, all verified" \
	grep -q ': 10 verified, 0 failed, 0 mismatched' "$IT_TMP/after-c.out"
SERVED=$((SERVED + 10))
it_check "the echo server ran exactly those 10 ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- (d) replays"
capture d 4
it_check "the capture holds executed and unseen sealed requests" \
	test "${#EXEC[@]}" -ge 1 -a "${#UNSEEN[@]}" -ge 1
E=${EXEC[$((${#EXEC[@]} - 1))]}
U=${UNSEEN[$((${#UNSEEN[@]} - 1))]}
read -r ESRC _ < <(awk -v d="$DST" -v h="$E" '$2 == d && $3 == h { print $1 }' "$CAP" | head -n 1)
ERESP=$(awk -v s="$ESRC" -v d="$DST" -v rid="${E:8:4}" \
	'$1 == d && $2 == s && substr($3, 1, 12) == "cc0811d0" rid { print $3 }' "$CAP" | head -n 1)
it_check "the last executed request ($ESRC, rid 0x${E:8:4}) and its sealed response are captured" \
	test -n "$ESRC" -a -n "$ERESP"
tcap=$(it_ms)
served0=$SERVED
s0=$(it_tls_status b)

it_log "  -- the same datagram from daemon A's own address and port, within the dedup window"
it_check "daemon A exits 0 on SIGTERM (frees its port ${ESRC##*:})" it_stop_daemon a
it_rawsend "$IT_NS_A" "$IT_TMP/same-port.txt" "$DST" "$E" -b "$ESRC"
dt=$(($(it_ms) - tcap))
it_check "answered within the ${DEDUP_MS} ms dedup window (${dt} ms after the capture ended)" \
	test "$dt" -lt "$DEDUP_MS"
it_check "the answer is the captured response, byte for byte (the engine's cache)" \
	test "$(cat "$IT_TMP/same-port.txt")" = "$ERESP"

it_log "  -- an unseen request from a fixed port: once, then the cache, then the register"
P1=$IT_A4:$((40000 + IT_NET))
P2=$IT_A4:$((41000 + IT_NET))
it_rawsend "$IT_NS_A" "$IT_TMP/u1.txt" "$DST" "$U" -b "$P1"
tu=$(it_ms)
R1=$(cat "$IT_TMP/u1.txt")
it_check "from $P1: a sealed response ($(it_sealed_reply_kind "$R1"))" \
	test "$(it_sealed_reply_kind "$R1")" = sealed
SERVED=$((SERVED + 1))
it_rawsend "$IT_NS_A" "$IT_TMP/u2.txt" "$DST" "$U" -b "$P1"
it_check "again from $P1: the same response, byte for byte (the engine's cache)" \
	test "$(cat "$IT_TMP/u2.txt")" = "$R1"
it_rawsend "$IT_NS_A" "$IT_TMP/u3.txt" "$DST" "$U" -b "$P2"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/u3.txt")")
it_check "from $P2: $got" test "$got" = reject:replay

it_log "  -- the executed request from other ports and another address"
for from in "" "" "$A4_ALT:0"; do
	it_rawsend "$IT_NS_A" "$IT_TMP/replay.txt" "$DST" "$E" ${from:+-b "$from"}
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/replay.txt")")
	it_check "replay from ${from:-a new port of $IT_A4}: $got" test "$got" = reject:replay
done

it_log "  -- the unseen request from $P1 again, once the dedup window has passed"
sleep "$(awk -v ms=$((DEDUP_MS + 500 - ($(it_ms) - tu))) 'BEGIN { printf "%.3f", (ms > 0 ? ms : 0) / 1000 }')"
it_rawsend "$IT_NS_A" "$IT_TMP/u4.txt" "$DST" "$U" -b "$P1"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/u4.txt")")
it_check "from $P1, $(($(it_ms) - tu)) ms after its first copy: $got (the strike register outlives the cache)" \
	test "$got" = reject:replay
s1=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$s1")"
it_log "  B: $(grep '^sealed strike register' <<<"$s1")"
it_check "opened +1 (the unseen request's first copy)" test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 1
it_check "replay +5, no other rejection (:$(reasons "$s0" "$s1"))" test "$(reasons "$s0" "$s1")" = " replay+5"
r=$(($(it_worker_sum "$s1" resent) - $(it_worker_sum "$s0" resent)))
it_check "the two cached answers counted as resent (+$r)" test "$r" -eq 2
it_check "the echo server ran one request in (d), none of the replays ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED" -a $((SERVED - served0)) -eq 1
it_check "daemon B alive" it_alive "${IT_DAEMON_PID[b]}"
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "tampered copies refused with the right reason, replays never ran twice"
