#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_sealed_fleet: (g) two servers of x.svc, B1 (namespace B) and B2 (namespace C), with the
# same certificate and copies of one STEK file, both sealed; client daemon A (one worker)
# lists both (round-robin). The first call bootstraps at B1 (one tls exchange, one association
# minted); from then on every call is sealed and both servers open them: B2 opens a token it
# never minted, without any tls exchange of its own. Control: once B2's file holds another
# key, B2 cannot open B1's tokens nor B1 B2's: every call still succeeds, through a transparent
# re-bootstrap (unknown_key at both, rebootstraps at A).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

IT_NS_C=r2p2-c-$IT_ID
C4=10.79.$IT_NET.2
A4_C=10.79.$IT_NET.1
SVC=x.svc

it_sealed_init
it_setup_pair
it_netns "$IT_NS_C"
it_link "$IT_NS_A" "r2ac$IT_ID" "$A4_C" - "$IT_NS_C" "r2c$IT_ID" "$C4" -
it_log "namespace $IT_NS_C ($C4) <-> $IT_NS_A ($A4_C)"
it_tls_certs "$IT_TLS" "$SVC"
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b1.keys"
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b2.keys"
for side in b1 b2; do
	if [ "$side" = b1 ]; then listen=$IT_B4; else listen=$C4; fi
	{
		it_conf_daemon_sealed "$side" "$listen" "$IT_TLS/stek-$side.keys"
		it_conf_serve_sealed "$SVC" "$IT_ECHO_PORT" "$IT_TLS/$SVC.crt" "$IT_TLS/$SVC.key"
	} >"$IT_TMP/$side.conf"
done
{
	it_conf_daemon_sealed a 0.0.0.0 - 1
	it_conf_call_sealed "$SVC" 3000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT" "$C4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b1 "$IT_NS_B" "$IT_TMP/b1.conf"
it_start_daemon b2 "$IT_NS_C" "$IT_TMP/b2.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b1 "$IT_NS_B" -n "$SVC" -c
ECHO1=$IT_LAST_PID
it_start_echo_on b2 "$IT_NS_C" -n "$SVC" -c
ECHO2=$IT_LAST_PID

# snap SIDE: "opened minted full resumed" of daemon SIDE
snap() {
	local s
	s=$(it_tls_status "$1")
	echo "$(it_sealed_counter "$s" server opened) $(it_sealed_counter "$s" server minted)" \
		"$(it_tls_counter "$s" server full_handshakes) $(it_tls_counter "$s" server resumed)"
}

it_log "--- (g) one STEK shared by B1 and B2"
it_check "warm-up: 1 sealed call (the bootstrap, to B1)" it_client -n "$SVC" -S 32 -c 1 -t 3000
read -r o1 m1 f1 r1 < <(snap b1)
read -r o2 m2 f2 _ < <(snap b2)
it_log "  after warm-up: B1 opened $o1 minted $m1 full $f1; B2 opened $o2 minted $m2 full $f2"
it_check "B1 bootstrapped the client (one full handshake, one association)" \
	test "$f1" -eq 1 -a "$m1" -eq 1 -a "$f2" -eq 0 -a "$m2" -eq 0
it_check "40 more sealed calls, round-robin over B1 and B2" it_client -n "$SVC" -S 32 -c 40 -t 3000
read -r o1b m1b f1b r1b < <(snap b1)
read -r o2b m2b f2b r2b < <(snap b2)
it_log "  after 40 more: B1 opened $o1b minted $m1b full $f1b resumed $r1b; B2 opened $o2b minted $m2b full $f2b resumed $r2b"
it_check "B1 opened sealed requests (+$((o1b - o1)) = 20)" test $((o1b - o1)) -eq 20
it_check "B2 opened sealed requests under a token it never minted (+$((o2b - o2)) = 20)" \
	test $((o2b - o2)) -eq 20
it_check "one association minted in all (B1 $m1b + B2 $m2b)" test $((m1b + m2b)) -eq 1
it_check "no tls exchange after the warm-up (B1 full $f1b resumed $r1b, B2 full $f2b resumed $r2b)" \
	test "$f1b" -eq "$f1" -a "$r1b" -eq "$r1" -a "$f2b" -eq 0 -a "$r2b" -eq 0
s1=$(it_echo_served "$ECHO1")
s2=$(it_echo_served "$ECHO2")
it_check "both echo servers ran calls (B1 $s1 = 21, B2 $s2 = 20)" test "$s1" -eq 21 -a "$s2" -eq 20
sa=$(it_tls_status a)
it_check "A: one association, no re-bootstrap ($(grep '^sealed client' <<<"$sa"))" \
	test "$(it_sealed_counter "$sa" client associations)" -eq 1 -a \
	"$(it_sealed_counter "$sa" client rebootstraps)" -eq 0

it_log "--- control: B2 switches to a STEK file with another key"
"$(it_bin r2p2ctl)" stek generate "$IT_TMP/fresh.keys" >/dev/null
mv "$IT_TMP/fresh.keys" "$IT_TLS/stek-b2.keys"
it_wait_for 5 "B2 to reload its STEK" grep -q "STEK reloaded" "$IT_TMP/r2p2d-b2.log"
sa0=$(it_tls_status a)
sb1=$(it_tls_status b1)
sb2=$(it_tls_status b2)
it_check "10 sealed calls still succeed" it_client -n "$SVC" -S 32 -c 10 -t 3000
sa=$(it_tls_status a)
tb1=$(it_tls_status b1)
tb2=$(it_tls_status b2)
rb=$(($(it_sealed_counter "$sa" client rebootstraps) - $(it_sealed_counter "$sa0" client rebootstraps)))
it_log "  B1: $(grep '^sealed server' <<<"$tb1")"
it_log "  B2: $(grep '^sealed server' <<<"$tb2")"
it_log "  A: $(grep '^sealed client' <<<"$sa")"
it_check "every call re-bootstrapped: the other server's token is unknown (rebootstraps +$rb)" \
	test "$rb" -eq 10
it_check "unknown_key at both (B1 +$(it_sealed_delta "$sb1" "$tb1" unknown_key), B2 +$(it_sealed_delta "$sb2" "$tb2" unknown_key))" \
	test "$(it_sealed_delta "$sb1" "$tb1" unknown_key)" -eq 5 -a "$(it_sealed_delta "$sb2" "$tb2" unknown_key)" -eq 5
it_check "the echo servers ran each call once (B1 $(it_echo_served "$ECHO1"), B2 $(it_echo_served "$ECHO2"))" \
	test "$(it_echo_served "$ECHO1")" -eq $((s1 + 5)) -a "$(it_echo_served "$ECHO2")" -eq $((s2 + 5))
for side in a b1 b2; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "an association minted by one server is opened by every server sharing the STEK"
