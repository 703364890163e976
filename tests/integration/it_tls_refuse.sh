#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_refuse: calls that tls mode must refuse end with a clear error by their own timeout,
# never hang, and never put the request on the wire or in front of the server app. An
# encrypted call takes no unauthenticated refusal at its word (a forger could send it), so
# it waits for its timeout (300 ms x 2 attempts here) and then says what it got:
#  - a call named b.svc sent to B's echo.svc port (SNI b.svc, certificate for echo.svc):
#    B answers an ERROR frame signed with echo.svc's certificate, which does not name
#    b.svc: the app gets -EACCES;
#  - a client whose CA did not sign B's certificate (another gen-certs.sh CA): -EACCES,
#    verify_failures rises on the client daemon, the marker never leaves namespace A;
#  - a plain call to the tls port: DROP, the app gets -ECONNREFUSED at once (plain mode
#    authenticates nothing); a tls call to a plain port: DROP, set aside, -ECONNREFUSED at
#    the timeout; B's wrong_mode rises and its apps are never handed the request.
# Three client daemons in namespace A (right CA, wrong CA, plain), one server daemon in B.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PLAIN_PORT=8001
MARKER="R2P2-REFUSED-MARKER-$IT_ID-"
HEX=$(it_hex "$MARKER")

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
it_tls_certs "$IT_TMP/other" echo.svc # another CA (and another key) for the same name
IFA=r2a$IT_ID

{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	it_conf_serve plain.svc "$PLAIN_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call_tls echo.svc 3000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
	it_conf_call_tls b.svc 300 1 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
	it_conf_call_tls plain.svc 300 1 "$IT_TLS/ca.crt" "$IT_B4:$PLAIN_PORT"
} >"$IT_TMP/a.conf"
{
	it_conf_daemon untrusted "$IT_A4" 1
	it_conf_call_tls echo.svc 300 1 "$IT_TMP/other/ca.crt" "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/untrusted.conf"
{
	it_conf_daemon plain "$IT_A4" 1
	it_conf_call echo.svc 3000 3 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/plain.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_daemon untrusted "$IT_NS_A" "$IT_TMP/untrusted.conf"
it_start_daemon plain "$IT_NS_A" "$IT_TMP/plain.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n plain.svc -c
ECHO_PLAIN=$IT_LAST_PID

# refused SIDE SERVICE WANT WHAT: one call with the marker through daemon SIDE must fail within
# 1.5 s (by its own timeout, 2 x 300 ms) with the error WANT ("r2p2_strerror text (-errno)").
refused() {
	local side=$1 svc=$2 want=$3 what=$4 t0 ms out rc=0
	t0=$(it_ms)
	out=$(timeout 20 ip netns exec "$IT_NS_A" "$(it_bin r2p2-echo-client)" -s "$(it_sock "$side")" \
		-n "$svc" -P "$MARKER" -S 64 -c 1 -t 300 2>&1) || rc=$?
	ms=$(($(it_ms) - t0))
	printf '%s\n' "$out" | sed 's/^/      /'
	it_check "$what: the call fails" test "$rc" -ne 0
	it_check "$what: with '$want'" grep -qF -- "$want" <<<"$out"
	it_check "$what: by the call's timeout ($ms ms), not later" test "$ms" -lt 1500
}

it_log "--- control: the right name and CA work"
it_check "tls echo.svc x 3 through daemon A" it_client -S 64 -c 3 -t 3000
served0=$(it_echo_served "$ECHO")
it_check "echo server served the 3 requests" test "$served0" -eq 3

it_log "--- (d) a call named b.svc to B's echo.svc port, with a capture on A's interface"
it_sniff_start "$IT_NS_A" "$IT_TMP/sniff-d.txt" 30000 -i "$IFA"
SNIFF=$IT_LAST_PID
srv0=$(it_tls_status b)
refused a b.svc "certificate is not trusted for this service" "b.svc on echo.svc's port"
refused a b.svc "certificate is not trusted for this service" "b.svc on echo.svc's port, again"
s=$(it_tls_status b)
it_log "  B: bad_messages $(it_tls_counter "$srv0" server bad_messages) -> $(it_tls_counter "$s" server bad_messages)"
it_check "B counted the refused handshakes (bad_messages rose)" \
	test "$(it_tls_counter "$s" server bad_messages)" -gt "$(it_tls_counter "$srv0" server bad_messages)"
it_check "B made no full handshake for b.svc" \
	test "$(it_tls_counter "$s" server full_handshakes)" -eq "$(it_tls_counter "$srv0" server full_handshakes)"

it_log "--- (d) a client whose CA did not sign echo.svc's certificate"
vf0=$(it_tls_get untrusted client verify_failures)
refused untrusted echo.svc "certificate is not trusted for this service" "untrusted CA"
refused untrusted echo.svc "certificate is not trusted for this service" "untrusted CA, again (no ticket was stored)"
vf=$(it_tls_get untrusted client verify_failures)
it_check "daemon 'untrusted' counted verify failures ($vf0 -> $vf)" test "$vf" -ge $((vf0 + 2))
it_check "daemon 'untrusted' got no ticket" \
	test "$(it_tls_get untrusted client tickets_received)" -eq 0
grep -q "not trusted" "$IT_TMP/r2p2d-untrusted.log" &&
	it_log "  ok: daemon 'untrusted' logs why: $(grep -m1 "not trusted" "$IT_TMP/r2p2d-untrusted.log")"
it_sniff_stop "$SNIFF"
n=$(grep -c "^$IT_B4:$IT_ECHO_PORT $IT_A4:[0-9]* cc0811e0[0-9a-f]\{8\}0185" "$IT_TMP/sniff-d.txt" || true)
it_check "B answered b.svc's first flights with proven ERROR frames (kind 0x85: $n)" test "$n" -ge 2
grep -q "tls call failed" "$IT_TMP/r2p2d-a.log" &&
	it_log "  ok: daemon A logs why: $(grep -m1 "tls call failed" "$IT_TMP/r2p2d-a.log")"
n=$(grep -c ":$IT_ECHO_PORT" "$IT_TMP/sniff-d.txt" || true)
it_check "the capture on A saw the refused exchanges ($n datagrams)" test "$n" -ge 8
it_check "the marker never left namespace A" test "$(grep -c "$HEX" "$IT_TMP/sniff-d.txt" || true)" -eq 0
it_check "B's echo server was handed nothing (still $served0)" test "$(it_echo_served "$ECHO")" -eq "$served0"

it_log "--- (e) a plain call to the tls port, a tls call to the plain port"
s0=$(it_tls_status b)
wm0=$(it_served_field "$s0" echo.svc wrong_mode)
wp0=$(it_served_field "$s0" plain.svc wrong_mode)
pserved0=$(it_echo_served "$ECHO_PLAIN")
refused plain echo.svc "server dropped the request (-111)" "plain call to tls echo.svc"
refused plain echo.svc "server dropped the request (-111)" "plain call to tls echo.svc, again"
refused a plain.svc "server dropped the request (-111)" "tls call to plain plain.svc"
s=$(it_tls_status b)
wm=$(it_served_field "$s" echo.svc wrong_mode)
wp=$(it_served_field "$s" plain.svc wrong_mode)
it_check "B's echo.svc wrong_mode rose by 2 ($wm0 -> $wm)" test "$wm" -eq $((wm0 + 2))
it_check "B's plain.svc wrong_mode rose by 1 ($wp0 -> $wp)" test "$wp" -eq $((wp0 + 1))
it_check "B's tls echo server was handed nothing (still $served0)" \
	test "$(it_echo_served "$ECHO")" -eq "$served0"
it_check "B's plain echo server was handed nothing (still $pserved0)" \
	test "$(it_echo_served "$ECHO_PLAIN")" -eq "$pserved0"

it_log "--- afterwards the right client still works"
it_check "tls echo.svc x 3 through daemon A" it_client -S 64 -c 3 -t 3000
it_check "echo server served 3 more" test "$(it_echo_served "$ECHO")" -eq $((served0 + 3))
for side in a untrusted plain b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "wrong name, untrusted CA and wrong mode refused at once; nothing leaked or ran"
