#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_fleet: two servers of echo.svc, B1 (namespace B) and B2 (namespace C), with the
# same certificate and copies of one STEK file; the client daemon in A lists both
# (round-robin, one worker). Any server resumes any ticket of the service: after the
# first call only one of them ever made a full handshake, yet both accept early data,
# so the other one resumed tickets it never issued. Control: once B2's file holds a
# different key, B1's tickets stop working there (and B2's at B1): every call still
# succeeds, by full handshakes, and early data stops being accepted.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IT_NS_C=r2p2-c-$IT_ID
C4=10.79.$IT_NET.2
A4_C=10.79.$IT_NET.1

it_tls_init
it_setup_pair
it_netns "$IT_NS_C"
it_link "$IT_NS_A" "r2ac$IT_ID" "$A4_C" - "$IT_NS_C" "r2c$IT_ID" "$C4" -
it_log "namespace $IT_NS_C ($C4) <-> $IT_NS_A ($A4_C)"
it_tls_certs "$IT_TLS" echo.svc
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b1.keys"
cp -p "$IT_TLS/stek.keys" "$IT_TLS/stek-b2.keys"

for side in b1 b2; do
	if [ "$side" = b1 ]; then listen=$IT_B4; else listen=$C4; fi
	{
		it_conf_daemon_tls "$side" "$listen" "$IT_TLS/stek-$side.keys"
		it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	} >"$IT_TMP/$side.conf"
done
{
	it_conf_daemon a 0.0.0.0 1
	it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT" "$C4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b1 "$IT_NS_B" "$IT_TMP/b1.conf"
it_start_daemon b2 "$IT_NS_C" "$IT_TMP/b2.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b1 "$IT_NS_B" -n echo.svc -c
ECHO1=$IT_LAST_PID
it_start_echo_on b2 "$IT_NS_C" -n echo.svc -c
ECHO2=$IT_LAST_PID

# counters SIDE: "full early" of daemon SIDE's tls server
counters() {
	local s
	s=$(it_tls_status "$1")
	echo "$(it_tls_counter "$s" server full_handshakes) $(it_tls_counter "$s" server early_accepted)"
}

it_log "--- (f) one STEK shared by B1 and B2"
it_check "warm-up: 10 tls calls, round-robin over B1 and B2" it_client -S 32 -c 10 -t 3000
read -r f1 e1 < <(counters b1)
read -r f2 e2 < <(counters b2)
it_log "  after warm-up: B1 full $f1 early $e1, B2 full $f2 early $e2"
it_check "40 more tls calls" it_client -S 32 -c 40 -t 3000
read -r f1b e1b < <(counters b1)
read -r f2b e2b < <(counters b2)
it_log "  after 40 more: B1 full $f1b early $e1b, B2 full $f2b early $e2b"
s1=$(it_echo_served "$ECHO1")
s2=$(it_echo_served "$ECHO2")
it_check "both servers executed requests (B1 $s1, B2 $s2 of 50)" \
	test "$s1" -ge 20 -a "$s2" -ge 20 -a $((s1 + s2)) -eq 50
it_check "early_accepted rose on B1 ($e1 -> $e1b)" test "$e1b" -ge $((e1 + 15))
it_check "early_accepted rose on B2 ($e2 -> $e2b)" test "$e2b" -ge $((e2 + 15))
it_check "one full handshake in all (B1 $f1b + B2 $f2b): the other server resumed foreign tickets" \
	test $((f1b + f2b)) -eq 1
it_check "no full handshake after the warm-up" test "$f1b" -eq "$f1" -a "$f2b" -eq "$f2"

it_log "--- control: B2 switches to a STEK file with another key"
"$(it_bin r2p2ctl)" stek generate "$IT_TMP/fresh.keys" >/dev/null
mv "$IT_TMP/fresh.keys" "$IT_TLS/stek-b2.keys"
it_wait_for 5 "B2 to reload its STEK" grep -q "STEK reloaded" "$IT_TMP/r2p2d-b2.log"
it_check "20 tls calls still succeed" it_client -S 32 -c 20 -t 3000
read -r f1c e1c < <(counters b1)
read -r f2c e2c < <(counters b2)
it_log "  after 20 more: B1 full $f1c early $e1c, B2 full $f2c early $e2c"
it_check "full handshakes on both servers now (B1 +$((f1c - f1b)), B2 +$((f2c - f2b)))" \
	test $((f1c - f1b)) -ge 8 -a $((f2c - f2b)) -ge 8
it_check "early data no longer accepted (B1 +$((e1c - e1b)), B2 +$((e2c - e2b)))" \
	test $((e1c - e1b + e2c - e2b)) -le 1
for side in a b1 b2; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "tickets resume across servers sharing a STEK, and only then"
