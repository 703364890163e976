#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_sealed_restart: (G2) a sealed request replayed to its server after a restart.
#
# A server's strike register lives in memory: a restarted daemon starts with an empty one, so
# a request it executed before the restart, replayed within the timestamp window, would pass
# the window and the register check and run again. Daemon A calls echo.svc on B (sealed); the
# test captures, on A's end of the link (tests/integration/sniff.c), requests B executed and,
# with an nftables drop rule in B's namespace, requests B never saw. Then B's daemon stops
# and starts again (same configuration, same STEK); the echo server, one process, stays up
# (its library attaches and registers again by itself), so its -c count covers executions
# before and after the restart.
#  - Every captured request, sent to the new B from raw sockets in A (r2p2-rawsend) within the
#    10 s timestamp window, is answered with REJECT restarted: B's restarted counter rises by
#    exactly their number, nothing is opened, the echo server runs none of them. (Unseen ones
#    too: the new process cannot tell them from executed ones, so it fails closed.)
#  - A fresh call from A after the restart succeeds, sealed under the association B minted
#    before the restart (same STEK: no new bootstrap), and runs once.
# shellcheck disable=SC2317 # test_more is run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

MARKER="R2P2-RESTART-$IT_ID-"
SZ=48
NCALLS=3 # calls per half of the capture

it_sealed_init
command -v nft >/dev/null || it_skip "nft (Debian nftables) is missing: it hides requests from B"
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
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

# sniff_calls OUT COUNT: COUNT calls from A captured on A's end of the link into OUT.
sniff_calls() {
	local sniff
	it_sealed_sniff "$1" 20000
	sniff=$IT_LAST_PID
	it_client -P "$MARKER" -S "$SZ" -c "$2" >>"$1.client" 2>&1 || true
	sleep 0.1
	it_sniff_stop "$sniff"
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

# registrations: how many times daemon B logged the echo server registering echo.svc (the
# library re-attaches and registers again by itself when the daemon comes back).
registrations() { grep -c "(pid $ECHO) serves echo.svc" "$IT_TMP/r2p2d-b.log" || true; }
test_more() { [ "$(registrations)" -gt "$reg0" ]; }

it_check "warm-up: 1 sealed call (the bootstrap)" it_client -S 16 -c 1 -t 3000
SERVED=1

it_log "--- capture: $NCALLS calls B executed, then $NCALLS calls B's namespace drops"
CAP=$IT_TMP/sniff-exec.txt
HID=$IT_TMP/sniff-unseen.txt
sniff_calls "$CAP" "$NCALLS"
it_nft_drop "$IT_NS_B" r2p2hide udp dport "$IT_ECHO_PORT"
sniff_calls "$HID" "$NCALLS"
it_nft_undo "$IT_NS_B" r2p2hide
tcap=$(it_ms)
ok=$(grep -o '[0-9]* verified' "$CAP.client" | cut -d' ' -f1)
SERVED=$((SERVED + ok))
mapfile -t EXEC < <(it_sealed_requests "$CAP" "$DST")
mapfile -t UNSEEN < <(it_sealed_requests "$HID" "$DST" | awk '!seen[$0]++')
it_check "the capture holds $NCALLS executed and $NCALLS unseen sealed requests (${#EXEC[@]}, ${#UNSEEN[@]})" \
	test "${#EXEC[@]}" -eq "$NCALLS" -a "$ok" -eq "$NCALLS" -a "${#UNSEEN[@]}" -eq "$NCALLS"
it_check "the echo server ran the warm-up and the executed half ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
sb=$(it_tls_status b)
it_log "  B before the restart: $(grep '^sealed server' <<<"$sb")"

it_log "--- B's daemon stops and starts again (same configuration and STEK)"
reg0=$(registrations)
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_wait_for 30 "the echo server to register again with the new daemon B" test_more
it_check "the same echo server (pid $ECHO) serves through the new daemon" it_alive "$ECHO"
it_check "its count survived the restart ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- the captured requests, replayed to the restarted B from raw sockets in A"
s0=$(it_tls_status b)
it_log "  (the first replay goes $(($(it_ms) - tcap)) ms after the capture ended: within the 10 s window)"
bad=0
n=0
for kind in executed unseen; do
	if [ "$kind" = executed ]; then reqs=("${EXEC[@]}"); else reqs=("${UNSEEN[@]}"); fi
	for r in "${reqs[@]}"; do
		n=$((n + 1))
		it_rawsend "$IT_NS_A" "$IT_TMP/replay-$n.txt" "$DST" "$r"
		got=$(it_sealed_reply_kind "$(cat "$IT_TMP/replay-$n.txt")")
		if [ "$got" = reject:restarted ]; then
			it_log "  ok: $kind request rid 0x${r:8:4} N ${r:162:24}: $got"
		else
			it_log "  FAILED: $kind request rid 0x${r:8:4} N ${r:162:24}: $got, expected reject:restarted"
			bad=$((bad + 1))
		fi
	done
done
dt=$(($(it_ms) - tcap))
it_check "all $n replays refused with REJECT restarted ($bad otherwise), the last ${dt} ms after the capture" \
	test "$bad" -eq 0
s1=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$s1")"
it_check "B's restarted counter rose by exactly $n, nothing else (:$(reasons "$s0" "$s1"))" \
	test "$(reasons "$s0" "$s1")" = " restarted+$n"
it_check "B opened none of them (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0
it_check "the echo server ran none of them (served $(it_echo_served "$ECHO"), was $SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- a fresh call from A after the restart"
sa0=$(it_tls_status a)
it_client -S "$SZ" -c 1 -t 3000 >"$IT_TMP/fresh.out" 2>&1 || true
it_log "  $(cat "$IT_TMP/fresh.out")"
it_check "it succeeds" grep -q ': 1 verified, 0 failed, 0 mismatched' "$IT_TMP/fresh.out"
s2=$(it_tls_status b)
sa=$(it_tls_status a)
it_log "  B: $(grep '^sealed server' <<<"$s2")"
it_check "B opened it sealed, under the association minted before the restart (opened +$(it_sealed_delta "$s1" "$s2" opened), minted +$(it_sealed_delta "$s1" "$s2" minted))" \
	test "$(it_sealed_delta "$s1" "$s2" opened)" -eq 1 -a "$(it_sealed_delta "$s1" "$s2" minted)" -eq 0
it_check "A did not bootstrap again ($(grep '^sealed client' <<<"$sa"))" \
	test "$(it_sealed_counter "$sa" client rebootstraps)" -eq "$(it_sealed_counter "$sa0" client rebootstraps)"
SERVED=$((SERVED + 1))
it_check "the echo server ran it once ($SERVED in all, across both daemons)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "requests captured before a restart never ran after it; fresh calls did"
