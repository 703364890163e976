#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_sealed_fleet: (G1) a sealed request copied to another server of the fleet.
#
# B (namespace B) and B2 (namespace C) serve echo.svc with the same certificate and copies of
# one STEK file, so B2 opens every token B minted (it_sealed_fleet.sh). Daemon A calls B only.
# On A's end of the A-B link (tests/integration/sniff.c) the test captures sealed requests B
# executed and, with an nftables drop rule in B's namespace (as it_sealed_tamper.sh does),
# genuine requests B never saw: fresh, never executed anywhere, exactly what an attacker on
# the path would forward to another server to get them run there.
#  - Every one of them, sent to B2 from raw sockets in A (r2p2-rawsend), is answered with
#    REJECT wrong_server; B2's wrong_server counter rises by exactly their number, no other
#    rejection counter moves, nothing is opened, and B2's echo server runs none of them
#    (counted at the app: r2p2-echo-server -c).
#  - Positive control: the freshest of the unseen requests, sent afterwards to B (the server
#    it is bound to), runs there once: the copies B2 refused were valid requests.
#  - Control: daemon A is reconfigured (SIGHUP) to call B2 directly: its calls are bound to
#    B2's address, B2 opens them and runs each once, and wrong_server does not move.
# shellcheck disable=SC2317 # reloaded is run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

IT_NS_C=r2p2-c-$IT_ID
C4=10.79.$IT_NET.2
A4_C=10.79.$IT_NET.1
MARKER="R2P2-FLEET-$IT_ID-"
SZ=48
NCALLS=4 # calls per half of the capture

it_sealed_init
command -v nft >/dev/null || it_skip "nft (Debian nftables) is missing: it hides requests from B"
it_setup_pair
it_netns "$IT_NS_C"
it_link "$IT_NS_A" "r2ac$IT_ID" "$A4_C" - "$IT_NS_C" "r2c$IT_ID" "$C4" -
it_log "namespace $IT_NS_C ($C4, server B2) <-> $IT_NS_A ($A4_C)"
it_tls_certs "$IT_TLS" echo.svc
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b.keys"
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b2.keys"
DST=$IT_B4:$IT_ECHO_PORT
DST2=$C4:$IT_ECHO_PORT
for side in b b2; do
	if [ "$side" = b ]; then listen=$IT_B4; else listen=$C4; fi
	{
		it_conf_daemon_sealed "$side" "$listen" "$IT_TLS/stek-$side.keys"
		it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	} >"$IT_TMP/$side.conf"
done
# a.conf SERVER: daemon A (one worker, so one association) calling echo.svc at SERVER only.
a_conf() {
	{
		it_conf_daemon_sealed a 0.0.0.0 - 1
		it_conf_call_sealed echo.svc 400 1 "$IT_TLS/ca.crt" "$1"
	} >"$IT_TMP/a.conf"
}
a_conf "$DST"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon b2 "$IT_NS_C" "$IT_TMP/b2.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b2 "$IT_NS_C" -n echo.svc -c
ECHO2=$IT_LAST_PID

# sniff_calls OUT COUNT: COUNT calls from A captured on A's end of the A-B link into OUT.
sniff_calls() {
	local sniff
	it_sealed_sniff "$1" 20000
	sniff=$IT_LAST_PID
	it_client -P "$MARKER" -S "$SZ" -c "$2" >>"$1.client" 2>&1 || true
	sleep 0.1
	it_sniff_stop "$sniff"
}

# reloads: how many reloads daemon A has logged; reloaded: one more than reloads0.
reloads() { grep -c 'reload done' "$IT_TMP/r2p2d-a.log" || true; }
reloaded() { [ "$(reloads)" -gt "$reloads0" ]; }

# reasons STATUS0 STATUS1: the rejection counters that rose, "reason+N ..."
reasons() {
	local r d out=""
	for r in "${IT_SEALED_REASONS[@]:1}"; do
		d=$(it_sealed_delta "$1" "$2" "$r")
		[ "$d" -eq 0 ] || out="$out $r+$d"
	done
	printf '%s\n' "${out:- none}"
}

it_check "warm-up: 1 sealed call (the bootstrap, at B)" it_client -S 16 -c 1 -t 3000
SERVED=1

it_log "--- capture: $NCALLS calls B executed, then $NCALLS calls B's namespace drops"
CAP=$IT_TMP/sniff-exec.txt
HID=$IT_TMP/sniff-unseen.txt
sniff_calls "$CAP" "$NCALLS"
it_nft_drop "$IT_NS_B" r2p2hide udp dport "$IT_ECHO_PORT"
sniff_calls "$HID" "$NCALLS"
hidden=$(it_nft_dropped "$IT_NS_B" r2p2hide)
it_nft_undo "$IT_NS_B" r2p2hide
ok=$(grep -o '[0-9]* verified' "$CAP.client" | cut -d' ' -f1)
SERVED=$((SERVED + ok))
mapfile -t EXEC < <(it_sealed_requests "$CAP" "$DST")
mapfile -t UNSEEN < <(it_sealed_requests "$HID" "$DST" | awk '!seen[$0]++')
it_log "  $ok of $NCALLS verified; B's namespace dropped $hidden datagrams of the second half"
it_check "the capture holds $NCALLS executed and $NCALLS unseen sealed requests (${#EXEC[@]}, ${#UNSEEN[@]})" \
	test "${#EXEC[@]}" -eq "$NCALLS" -a "$ok" -eq "$NCALLS" -a "${#UNSEEN[@]}" -eq "$NCALLS"
it_check "B's echo server ran the warm-up and the executed half ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
it_log "  binding of a captured request: ${EXEC[0]:$((2 * IT_SEALED_BIND)):36} (::ffff:$IT_B4 port $IT_ECHO_PORT)"

it_log "--- the captured requests, sent to B2 from raw sockets in A"
s0=$(it_tls_status b2)
served2_0=$(it_echo_served "$ECHO2")
bad=0
n=0
t0=$(it_ms)
for kind in executed unseen; do
	if [ "$kind" = executed ]; then reqs=("${EXEC[@]}"); else reqs=("${UNSEEN[@]}"); fi
	for r in "${reqs[@]}"; do
		n=$((n + 1))
		it_rawsend "$IT_NS_A" "$IT_TMP/b2-$n.txt" "$DST2" "$r"
		got=$(it_sealed_reply_kind "$(cat "$IT_TMP/b2-$n.txt")")
		if [ "$got" = reject:wrong_server ]; then
			it_log "  ok: $kind request rid 0x${r:8:4} N ${r:162:24}: $got"
		else
			it_log "  FAILED: $kind request rid 0x${r:8:4} N ${r:162:24}: $got, expected reject:wrong_server"
			bad=$((bad + 1))
		fi
	done
done
it_log "  (sent within $(($(it_ms) - t0)) ms; the timestamp window is 10 s, so none is merely stale)"
it_check "all $n copies refused with REJECT wrong_server ($bad otherwise)" test "$bad" -eq 0
s1=$(it_tls_status b2)
it_log "  B2: $(grep '^sealed server' <<<"$s1")"
it_check "B2's wrong_server counter rose by exactly $n, nothing else (:$(reasons "$s0" "$s1"))" \
	test "$(reasons "$s0" "$s1")" = " wrong_server+$n"
it_check "B2 opened none of them (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0
it_check "B2's echo server ran none of them (served $(it_echo_served "$ECHO2"), was $served2_0)" \
	test "$(it_echo_served "$ECHO2")" -eq "$served2_0"

it_log "--- positive control: the freshest unseen request, sent to B (the server it is bound to)"
U=${UNSEEN[$((${#UNSEEN[@]} - 1))]}
it_rawsend "$IT_NS_A" "$IT_TMP/b-unseen.txt" "$DST" "$U"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/b-unseen.txt")")
it_check "B answers it with a sealed response ($got): B2 refused a valid request" test "$got" = sealed
SERVED=$((SERVED + 1))
it_check "B's echo server ran it once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- control: daemon A calls B2 directly (SIGHUP with server = $DST2)"
a_conf "$DST2"
reloads0=$(reloads)
kill -HUP "${IT_DAEMON_PID[a]}"
it_wait_for 30 "daemon A to reload" reloaded
s0=$(it_tls_status b2)
it_client -S "$SZ" -c 5 -t 3000 >"$IT_TMP/direct.out" 2>&1 || true
it_log "  $(cat "$IT_TMP/direct.out")"
it_check "5 calls from A to B2, all verified" grep -q ': 5 verified, 0 failed, 0 mismatched' "$IT_TMP/direct.out"
s1=$(it_tls_status b2)
it_log "  B2: $(grep '^sealed server' <<<"$s1"); tls full handshakes $(it_tls_counter "$s1" server full_handshakes)"
op=$(it_sealed_delta "$s0" "$s1" opened)
mi=$(it_sealed_delta "$s0" "$s1" minted)
it_check "B2 opened the sealed ones, bound to its own address (opened +$op, minted +$mi: opened + bootstraps = 5)" \
	test "$op" -ge 4 -a $((op + mi)) -eq 5
it_check "no rejection at B2 (:$(reasons "$s0" "$s1"))" test "$(reasons "$s0" "$s1")" = " none"
it_check "B2's echo server ran each of them once ($(it_echo_served "$ECHO2"))" \
	test "$(it_echo_served "$ECHO2")" -eq $((served2_0 + 5))
it_check "B's echo server ran nothing more ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"
for side in a b b2; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "sealed requests bound to B, executed or never seen, never ran at B2"
