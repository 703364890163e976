#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_tls_restart: a tls 0-RTT first flight replayed to its server after a restart.
#
# A server's strike register lives in memory: a restarted daemon starts with an empty one, so
# a first flight (CLIENT_FIRST: ClientHello + the request as early data) it executed before
# the restart, replayed afterwards, would pass the register and run again. docs/PROTOCOL.md
# ("TLS profile", tickets) says the server refuses early data for a ticket issued before it
# started (early_too_old): the request then needs a 1-RTT handshake only the client can finish.
#
# Daemon A (one worker) calls echo.svc on B in tls mode and holds tickets after warm-up calls.
# On A's end of the link (tests/integration/sniff.c) the test captures 0-RTT first flights B
# executed. Then B's daemon stops and starts again (same configuration, same STEK); the echo
# server, one process, stays up and registers again by itself, so its -c count covers
# executions before and after the restart.
#  - The captured flights, sent to the new B from raw sockets in A (r2p2-rawsend), get no
#    SERVER_FINAL (frame kind 02): B refuses their early data (early_too_old +1 each,
#    early_accepted +0) and the echo server runs none of them.
#  - A fresh call from A succeeds: its ticket predates the start too, so it goes 1-RTT
#    (early_too_old +1, early_accepted +0), and runs once; two more calls run once each, the
#    second of them 0-RTT again (a ticket issued by the new process).
# shellcheck disable=SC2317 # test_more is run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh" # it_rawsend

MARKER="R2P2-TLSRESTART-$IT_ID-"
SZ=48
NCAP=2

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call_tls echo.svc 2000 1 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID

# frame_kind HEX: the tls frame kind of an R2P2 datagram, e.g. "02" (it_tls_frame_kind)
frame_kind() { it_tls_frame_kind "$1"; }
# registrations: how many times daemon B logged the echo server registering echo.svc.
registrations() { grep -c "(pid $ECHO) serves echo.svc" "$IT_TMP/r2p2d-b.log" || true; }
test_more() { [ "$(registrations)" -gt "$reg0" ]; }
delta() { echo $(($(it_tls_counter "$2" "$3" "$4") - $(it_tls_counter "$1" "$3" "$4"))); }

it_check "warm-up: 3 tls calls (a full handshake, then 0-RTT)" it_client -S "$SZ" -c 3 -t 3000
SERVED=3

it_log "--- capture $NCAP 0-RTT first flights B executed"
CAP=$IT_TMP/sniff.txt
s0=$(it_tls_status b)
it_sniff_start "$IT_NS_A" "$CAP" 20000 -i "r2a$IT_ID"
sniff=$IT_LAST_PID
it_check "$NCAP tls calls" it_client -P "$MARKER" -S "$SZ" -c "$NCAP" -t 3000
SERVED=$((SERVED + NCAP))
sleep 0.1
it_sniff_stop "$sniff"
s1=$(it_tls_status b)
it_check "B accepted their early data (early_accepted +$(delta "$s0" "$s1" server early_accepted))" \
	test "$(delta "$s0" "$s1" server early_accepted)" -eq "$NCAP"
mapfile -t FIRSTS < <(awk -v b="$DST" '$2 == b && substr($3, 1, 8) == "cc0800e0" &&
	substr($3, 17, 20) ~ /^01(01|81)0000000000000000$/ { print $3 }' "$CAP")
it_check "the capture holds $NCAP CLIENT_FIRSTs (${#FIRSTS[@]})" test "${#FIRSTS[@]}" -eq "$NCAP"
for f in "${FIRSTS[@]}"; do
	a=$(awk -v b="$DST" -v rid="${f:8:4}" '$1 == b && substr($3, 1, 12) == "cc0811e0" rid { print $3; exit }' "$CAP")
	it_check "B answered rid 0x${f:8:4} ($((${#f} / 2)) bytes) with SERVER_FINAL (kind $(frame_kind "$a"))" \
		test "$(frame_kind "$a")" = 02
done
it_check "the echo server ran the $SERVED calls so far" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- B's daemon stops and starts again (same configuration and STEK)"
reg0=$(registrations)
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_wait_for 30 "the echo server to register again with the new daemon B" test_more
it_check "the same echo server (pid $ECHO) serves through the new daemon" it_alive "$ECHO"

it_log "--- the captured first flights, replayed to the restarted B from raw sockets in A"
s0=$(it_tls_status b)
n=0
for f in "${FIRSTS[@]}"; do
	n=$((n + 1))
	it_rawsend "$IT_NS_A" "$IT_TMP/replay-$n.txt" "$DST" "$f"
	k=$(frame_kind "$(cat "$IT_TMP/replay-$n.txt")")
	it_expect "replay of rid 0x${f:8:4}: no SERVER_FINAL (answer kind ${k:-none})" test "$k" != 02
done
s1=$(it_tls_status b)
it_log "  B: $(grep '^tls server' <<<"$s1")"
it_expect "B refused their early data: tickets issued before its start (early_too_old +$(delta "$s0" "$s1" server early_too_old), early_accepted +$(delta "$s0" "$s1" server early_accepted))" \
	test "$(delta "$s0" "$s1" server early_too_old)" -eq "$NCAP" -a \
	"$(delta "$s0" "$s1" server early_accepted)" -eq 0
got=$(it_echo_served "$ECHO")
it_expect "the echo server ran none of them ($got, expected $SERVED)" test "$got" -eq "$SERVED"
SERVED=$got

it_log "--- fresh calls from A after the restart"
sa0=$(it_tls_status a)
it_client -S "$SZ" -c 1 -t 3000 >"$IT_TMP/fresh.out" 2>&1 || true
it_log "  $(cat "$IT_TMP/fresh.out")"
s2=$(it_tls_status b)
sa1=$(it_tls_status a)
it_expect "the first succeeds" grep -q ': 1 verified, 0 failed, 0 mismatched' "$IT_TMP/fresh.out"
it_expect "it went 1-RTT: its ticket predates the start (early_too_old +$(delta "$s1" "$s2" server early_too_old), early_accepted +$(delta "$s1" "$s2" server early_accepted), A's early_rejected +$(delta "$sa0" "$sa1" client early_rejected))" \
	test "$(delta "$s1" "$s2" server early_too_old)" -eq 1 -a \
	"$(delta "$s1" "$s2" server early_accepted)" -eq 0 -a "$(delta "$sa0" "$sa1" client early_rejected)" -eq 1
SERVED=$((SERVED + 1))
got=$(it_echo_served "$ECHO")
it_expect "the echo server ran it once ($got, expected $SERVED)" test "$got" -eq "$SERVED"
SERVED=$got
# The ticket of a handshake whose early data was refused allows none (BoringSSL), so the call
# after the 1-RTT one resumes without early data, and the one after that is 0-RTT again.
for n in 2 3; do
	s2=$(it_tls_status b)
	it_client -S "$SZ" -c 1 -t 3000 >"$IT_TMP/fresh$n.out" 2>&1 || true
	s3=$(it_tls_status b)
	it_expect "call $n after the restart succeeds (early_accepted +$(delta "$s2" "$s3" server early_accepted), early_too_old +$(delta "$s2" "$s3" server early_too_old))" \
		grep -q ': 1 verified, 0 failed, 0 mismatched' "$IT_TMP/fresh$n.out"
	SERVED=$((SERVED + 1))
done
it_expect "call 3 is 0-RTT again, with a ticket of the new process (early_accepted +$(delta "$s2" "$s3" server early_accepted))" \
	test "$(delta "$s2" "$s3" server early_accepted)" -eq 1
got=$(it_echo_served "$ECHO")
it_expect "the echo server ran each once ($got, expected $SERVED)" test "$got" -eq "$SERVED"
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "0-RTT flights captured before a restart never ran after it; fresh calls did, once"
