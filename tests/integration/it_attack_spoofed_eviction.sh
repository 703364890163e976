#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_spoofed_eviction: a spoofed first packet never evicts a request the app holds.
#
# The server's engine keys a request by (client address, port, rid). If a first packet with
# the same key and other bytes replaced a request still in progress, anyone who can send from
# the client's address and port and knows the rid (an off-path spoofer who guesses it, or an
# on-path one who reads it) could hand the app their bytes under the client's call, and the
# client's next retransmission would be taken for a new request and run the request twice.
# docs/PROTOCOL.md ("The engine", daemon/engine/engine_server.c srv_known_first): while the
# request is reassembling or executing, such a packet is dropped and counted (conflict).
#
# B serves echo.svc (plain, port 8000) and sec.svc (sealed, port 8001); each echo server holds
# every request 2 s before answering (r2p2-echo-server -d) and counts what it is handed (-c).
# Daemon A (one worker) calls both. For each mode: A makes one call; a capture on A's end of
# the link (tests/integration/sniff.c) gives its rid and A's client port; once B shows the
# request executing, an attacker in A sends from a raw socket with A's address and that port
# (r2p2-rawsend -S) a first packet with the same header and other payload bytes (plain: another
# text of the same length; sealed: the genuine request with one ciphertext byte flipped), then
# a byte-identical copy of the genuine packet (what the client's retransmission would be).
# Proven: B's drops line counts conflict +1 and duplicate +1; no answer carries the spoofed
# bytes (plain) and the sealed layer never sees them (no rejection counted, opened +1: the
# genuine one); the genuine call completes, verified, once; the app ran the request once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

MARKER="R2P2-GENUINE-$IT_ID-"
SPOOF="R2P2-SPOOFED-$IT_ID-"
SZ=64
SEC_PORT=8001
HOLD_US=2000000

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" sec.svc
DST=$IT_B4:$IT_ECHO_PORT
DST_SEC=$IT_B4:$SEC_PORT
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	it_conf_serve_sealed sec.svc "$SEC_PORT" "$IT_TLS/sec.svc.crt" "$IT_TLS/sec.svc.key"
} >"$IT_TMP/b.conf"
# 8000 ms over 2 attempts: no retransmission while the app holds the request for 2 s
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call echo.svc 8000 1 "$DST"
	it_conf_call_sealed sec.svc 8000 1 "$IT_TLS/ca.crt" "$DST_SEC"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c -d "$HOLD_US"
ECHO=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n sec.svc -c -d "$HOLD_US"
ECHO_SEC=$IT_LAST_PID
CLIENT=$(it_bin r2p2-echo-client)
RAWSEND=$(it_bin r2p2-rawsend)

ddelta() { echo $(($(it_drops "$2" "$3") - $(it_drops "$1" "$3"))); }
# reasons STATUS0 STATUS1: the sealed rejection counters that rose, "reason+N ..."
reasons() {
	local r d out=""
	for r in "${IT_SEALED_REASONS[@]:1}"; do
		d=$(it_sealed_delta "$1" "$2" "$r")
		[ "$d" -eq 0 ] || out="$out $r+$d"
	done
	printf '%s\n' "${out:- none}"
}
# repeat TEXT N: TEXT repeated to N bytes, as hex.
repeat() {
	local s=""
	while [ "${#s}" -lt "$2" ]; do s="$s$1"; done
	it_hex "${s:0:$2}"
}

it_check "warm-up: 1 sealed call (the bootstrap; held 2 s)" it_client -n sec.svc -S 16 -c 1 -t 8000
SERVED=0
SERVED_SEC=1

# attack MODE: one call of MODE (plain or sealed), attacked while B's app holds it.
attack() {
	local mode=$1 svc dst echo cap sniff client req src rid spoof rc=0 s0 s1 got served t0 dt
	if [ "$mode" = plain ]; then
		svc=echo.svc dst=$DST echo=$ECHO served=$SERVED
	else
		svc=sec.svc dst=$DST_SEC echo=$ECHO_SEC served=$SERVED_SEC
	fi
	it_log "--- ($mode) a spoofed first packet under the rid of a request $svc holds"
	cap=$IT_TMP/sniff-$mode.txt
	s0=$(it_tls_status b)
	it_sealed_sniff "$cap" 20000
	sniff=$IT_LAST_PID
	it_bg "$IT_NS_A" "$IT_TMP/client-$mode.out" timeout 30 "$CLIENT" -s "$(it_sock a)" -n "$svc" \
		-P "$MARKER" -S "$SZ" -c 1
	client=$IT_LAST_PID
	t0=$(it_ms)
	it_wait_executing b 1
	# the first single-packet REQUEST (F|L, any free flag bits) from A to the service
	req=$(awk -v d="$dst" '$2 == d && substr($3, 1, 6) == "cc0800" && substr($3, 13, 4) == "0001" {
		print $3; exit }' "$cap")
	[ -n "$req" ] || it_fail "the $mode request is not in the capture"
	src=$(it_sealed_src "$cap" "$req")
	rid=${req:8:4}
	if [ "$mode" = plain ]; then
		it_check "the plain request carries the genuine text" \
			test "${req:16}" = "$(repeat "$MARKER" "$SZ")"
		spoof=${req:0:16}$(repeat "$SPOOF" "$SZ")
	else
		spoof=$(it_hex_flip "$req" $((IT_SEALED_CT + 4)) 01)
	fi
	it_log "  held: rid 0x$rid from $src, header ${req:0:16}, $((${#req} / 2)) bytes"
	it_in "$IT_NS_A" timeout 10 "$RAWSEND" -S "$src" "$dst" "$spoof" ||
		it_fail "r2p2-rawsend could not send the spoofed packet from $src"
	it_log "  spoofed first packet sent from $src: ${spoof:0:16} ${spoof:16:32}.."
	it_in "$IT_NS_A" timeout 10 "$RAWSEND" -S "$src" "$dst" "$req" ||
		it_fail "r2p2-rawsend could not send the genuine copy from $src"
	dt=$(($(it_ms) - t0))
	it_log "  then a byte-identical copy of the genuine packet from $src"
	# the app got the request after t0 and holds it HOLD_US: both came while it was held
	it_check "both were sent within $dt ms of the call, before the app could answer" \
		test "$dt" -lt $((HOLD_US / 1000 - 100))
	s1=$(it_tls_status b)
	it_expect "B still holds the request: executing $(it_worker_sum "$s1" executing)" \
		test "$(it_worker_sum "$s1" executing)" -eq 1
	it_wait_exit "$client" 25 || rc=$?
	sleep 0.1
	it_sniff_stop "$sniff"
	s1=$(it_tls_status b)
	it_log "  client (exit $rc): $(tail -n 1 "$IT_TMP/client-$mode.out")"
	it_log "  B: $(grep 'drops:' <<<"$s1" | tr -s ' ' | tr '\n' ' ')"
	it_expect "B dropped the spoofed packet as a conflict (conflict +$(ddelta "$s0" "$s1" conflict))" \
		test "$(ddelta "$s0" "$s1" conflict)" -eq 1
	it_expect "and the genuine copy as a duplicate of what it holds (duplicate +$(ddelta "$s0" "$s1" duplicate))" \
		test "$(ddelta "$s0" "$s1" duplicate)" -eq 1
	it_expect "the genuine call completed, verified" \
		grep -q ': 1 verified, 0 failed, 0 mismatched' "$IT_TMP/client-$mode.out"
	it_expect "B sent A one answer for rid 0x$rid" test "$(awk -v b="$dst" -v s="$src" -v rid="$rid" \
		'$1 == b && $2 == s && substr($3, 1, 6) == "cc0811" && substr($3, 9, 4) == rid' "$cap" | wc -l)" -eq 1
	if [ "$mode" = plain ]; then
		it_expect "no answer carries the spoofed bytes" \
			test -z "$(awk -v b="$dst" '$1 == b' "$cap" | grep -F "$(it_hex "$SPOOF")" || true)"
	else
		it_log "  B: $(grep '^sealed server' <<<"$s1")"
		it_expect "the sealed layer never saw the spoofed bytes (rejections:$(reasons "$s0" "$s1"))" \
			test "$(reasons "$s0" "$s1")" = " none"
		it_expect "it opened the genuine request once (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
			test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 1
	fi
	served=$((served + 1))
	got=$(it_echo_served "$echo")
	it_expect "B's $svc echo server ran the request exactly once ($got, expected $served)" \
		test "$got" -eq "$served"
	if [ "$mode" = plain ]; then SERVED=$got; else SERVED_SEC=$got; fi
}

attack plain
attack sealed

it_log "--- B keeps serving"
it_client -n echo.svc -S 16 -c 1 -t 8000 >"$IT_TMP/after.out" 2>&1 || true
it_client -n sec.svc -S 16 -c 1 -t 8000 >>"$IT_TMP/after.out" 2>&1 || true
it_expect "a plain and a sealed call after the attacks, verified" \
	test "$(grep -c ': 1 verified, 0 failed' "$IT_TMP/after.out")" -eq 2
it_expect "each ran once" test "$(it_echo_served "$ECHO")" -eq $((SERVED + 1)) -a \
	"$(it_echo_served "$ECHO_SEC")" -eq $((SERVED_SEC + 1))
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "spoofed first packets under a held request's rid were dropped; each request ran once"
