#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_sealed_service: (f) a token is bound to its service. B serves two sealed services, a.svc
# (port 8000) and b.svc (port 8001), with certificates from one demo CA and the same STEK, so a
# token minted for one opens at the other's port too; only the service hash inside it differs.
# A calls both (one association each). Captured sealed requests of each service, sent to the
# other's port from a raw socket in A: REJECT wrong_server (each is bound to its own port); with
# the binding's port switched, REJECT wrong_service; the counters rise by exactly those,
# neither echo server runs them; both services keep serving. Control: the same datagrams sent
# to their own port are refused as replays (the token is fine there), not as wrong_service.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

PORT_A=8000
PORT_B=8001

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" a.svc b.svc
DST_A=$IT_B4:$PORT_A
DST_B=$IT_B4:$PORT_B
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_sealed a.svc "$PORT_A" "$IT_TLS/a.svc.crt" "$IT_TLS/a.svc.key"
	it_conf_serve_sealed b.svc "$PORT_B" "$IT_TLS/b.svc.crt" "$IT_TLS/b.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon_sealed a "$IT_A4" - 2
	it_conf_call_sealed a.svc 3000 3 "$IT_TLS/ca.crt" "$DST_A"
	it_conf_call_sealed b.svc 3000 3 "$IT_TLS/ca.crt" "$DST_B"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n a.svc -c
ECHO_A=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n b.svc -c
ECHO_B=$IT_LAST_PID

it_check "warm-up: 3 sealed calls to a.svc" it_client -n a.svc -S 16 -c 3 -t 3000
it_check "warm-up: 3 sealed calls to b.svc" it_client -n b.svc -S 16 -c 3 -t 3000
s=$(it_tls_status b)
it_check "B minted one association per service (minted $(it_sealed_counter "$s" server minted))" \
	test "$(it_sealed_counter "$s" server minted)" -eq 2
it_check "A holds both ($(it_ctl a status | grep '^sealed client'))" \
	test "$(it_sealed_get a client associations)" -eq 2

it_log "--- capture sealed requests of both services"
CAP=$IT_TMP/sniff.txt
it_sealed_sniff "$CAP" 20000
SNIFF=$IT_LAST_PID
it_check "5 sealed calls to a.svc" it_client -n a.svc -S 40 -c 5 -t 3000
it_check "5 sealed calls to b.svc" it_client -n b.svc -S 40 -c 5 -t 3000
sleep 0.2
it_sniff_stop "$SNIFF"
mapfile -t REQ_A < <(it_sealed_requests "$CAP" "$DST_A")
mapfile -t REQ_B < <(it_sealed_requests "$CAP" "$DST_B")
it_check "captured 5 sealed requests to each (${#REQ_A[@]}, ${#REQ_B[@]})" \
	test "${#REQ_A[@]}" -eq 5 -a "${#REQ_B[@]}" -eq 5
it_check "their tokens differ (one association per service) but share the STEK key id ${REQ_A[0]:18:8}" \
	test "${REQ_A[0]:18:144}" != "${REQ_B[0]:18:144}" -a "${REQ_A[0]:18:8}" = "${REQ_B[0]:18:8}"
served_a=$(it_echo_served "$ECHO_A")
served_b=$(it_echo_served "$ECHO_B")
it_check "each echo server ran its 8 calls (a $served_a, b $served_b)" \
	test "$served_a" -eq 8 -a "$served_b" -eq 8

it_log "--- (f) a request of a.svc sent to b.svc's port, and the reverse"
# As captured, each is bound to its own service's port (8000 or 8001): wrong_server. With the
# binding's port switched to the other one (bit 0 of its last byte: 1f40 <-> 1f41), the
# token opens there too and its service hash refuses it: wrong_service.
s0=$(it_tls_status b)
PORT_BIT=$((IT_SEALED_BIND + 17))
for i in 0 1; do
	it_rawsend "$IT_NS_A" "$IT_TMP/ab-$i.txt" "$DST_B" "${REQ_A[$i]}"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/ab-$i.txt")")
	it_check "a.svc request $i at b.svc's port: $got" test "$got" = reject:wrong_server
	it_rawsend "$IT_NS_A" "$IT_TMP/abx-$i.txt" "$DST_B" "$(it_hex_flip "${REQ_A[$i]}" "$PORT_BIT" 01)"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/abx-$i.txt")")
	it_check "a.svc request $i bound to b.svc's port: $got" test "$got" = reject:wrong_service
	it_rawsend "$IT_NS_A" "$IT_TMP/ba-$i.txt" "$DST_A" "${REQ_B[$i]}"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/ba-$i.txt")")
	it_check "b.svc request $i at a.svc's port: $got" test "$got" = reject:wrong_server
	it_rawsend "$IT_NS_A" "$IT_TMP/bax-$i.txt" "$DST_A" "$(it_hex_flip "${REQ_B[$i]}" "$PORT_BIT" 01)"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/bax-$i.txt")")
	it_check "b.svc request $i bound to a.svc's port: $got" test "$got" = reject:wrong_service
done
s1=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$s1")"
it_check "wrong_service and wrong_server rose by 4 each ($(it_sealed_delta "$s0" "$s1" wrong_service), $(it_sealed_delta "$s0" "$s1" wrong_server))" \
	test "$(it_sealed_delta "$s0" "$s1" wrong_service)" -eq 4 -a "$(it_sealed_delta "$s0" "$s1" wrong_server)" -eq 4
it_check "no other rejection, nothing opened" \
	test "$(it_sealed_rejections "$s1")" = " wrong_service 4 wrong_server 4" -a "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0
it_check "neither echo server ran them (a $(it_echo_served "$ECHO_A"), b $(it_echo_served "$ECHO_B"))" \
	test "$(it_echo_served "$ECHO_A")" -eq "$served_a" -a "$(it_echo_served "$ECHO_B")" -eq "$served_b"

it_log "--- control: the same datagrams at their own port"
it_rawsend "$IT_NS_A" "$IT_TMP/aa.txt" "$DST_A" "${REQ_A[0]}"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/aa.txt")")
it_check "a.svc request 0 at a.svc's port: $got (its token is good there)" test "$got" = reject:replay
it_rawsend "$IT_NS_A" "$IT_TMP/bb.txt" "$DST_B" "${REQ_B[0]}"
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/bb.txt")")
it_check "b.svc request 0 at b.svc's port: $got" test "$got" = reject:replay

it_log "--- both services keep serving"
s0=$(it_tls_status b)
it_check "10 sealed calls to a.svc" it_client -n a.svc -S 16 -c 10 -t 3000
it_check "10 sealed calls to b.svc" it_client -n b.svc -S 16 -c 10 -t 3000
s1=$(it_tls_status b)
it_check "all 20 opened with the existing associations (opened +$(it_sealed_delta "$s0" "$s1" opened), minted +$(it_sealed_delta "$s0" "$s1" minted))" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 20 -a "$(it_sealed_delta "$s0" "$s1" minted)" -eq 0
it_check "A never re-bootstrapped" test "$(it_sealed_get a client rebootstraps)" -eq 0
it_check "the echo servers ran them (a $(it_echo_served "$ECHO_A"), b $(it_echo_served "$ECHO_B"))" \
	test "$(it_echo_served "$ECHO_A")" -eq $((served_a + 10)) -a "$(it_echo_served "$ECHO_B")" -eq $((served_b + 10))
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "a token minted for one service is refused by another sharing its STEK (wrong_service)"
