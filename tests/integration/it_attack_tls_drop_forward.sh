#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_tls_drop_forward: drop and forward (RFC 8446 appendix E.5) against a tls 0-RTT call.
#
# An attacker on the path drops a client's 0-RTT first flight (CLIENT_FIRST: ClientHello +
# the request as early data) and forwards a copy of it to the server from elsewhere. The copy
# runs there; the client, hearing nothing, retransmits its flight, whose ClientHello random the
# server's strike register has seen: the early data is refused and the handshake goes 1-RTT.
# If the client then sent its request again as 1-RTT data and the server ran it, the request
# would run twice. It does not: a client whose first flight went out more than once and whose
# early data was refused cannot know whether an earlier copy ran, so its call fails with
# -ENOTRECOVERABLE without sending the request again (docs/PROTOCOL.md, "Exactly once, and
# anti-replay"; the server would have answered a 1-RTT request "already ran", test_secure
# tls_drop_and_forward_runs_once).
#
# Daemon A (one worker, so one client port) calls echo.svc on B in tls mode and holds tickets
# after warm-up calls. A capture on A's end of the link (tests/integration/sniff.c) of a 0-RTT
# call of the same request size gives the exact UDP length of such a CLIENT_FIRST and A's
# client port. For the attacked call an nftables rule in B's namespace drops UDP from that
# port to B:8000 with that length; the flight, captured on A's end, is forwarded to B from
# another port of A (r2p2-rawsend, a fresh socket). Then the rule goes and A's retransmission
# reaches B. Proven, counted at B's echo server (r2p2-echo-server -c): the request ran exactly
# once; the forwarded copy got SERVER_FINAL (it is the one that ran); the client's call failed
# with -ENOTRECOVERABLE; B's replays_refused rose by exactly 1.
# shellcheck disable=SC2317 # dropped_some is run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

MARKER="R2P2-DROPFWD-$IT_ID-"
SZ=48
UNKNOWN="last error: the request may have run once; it was not sent again (a server restart or an attempt too old to check leaves no way to tell)"

it_tls_init
command -v nft >/dev/null || it_skip "nft (Debian nftables) is missing: it drops the first flight"
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
# 6000 ms over 3 attempts: A retransmits its first flight 2 s after sending it, long after the
# attacker has forwarded the copy.
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call_tls echo.svc 6000 2 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
CLIENT=$(it_bin r2p2-echo-client)

# frame_kind HEX: the tls frame kind of an R2P2 datagram, e.g. "02" (it_tls_frame_kind)
frame_kind() { it_tls_frame_kind "$1"; }
# firsts CAPTURE: "SRC HEX" of every CLIENT_FIRST to B in a capture (REQUEST, F|L|tls,
# frame version 1, kind 1, handshake id 0), in order.
firsts() {
	awk -v b="$DST" '$2 == b && substr($3, 1, 8) == "cc0800e0" &&
		substr($3, 17, 20) ~ /^01(01|81)0000000000000000$/ { print $1, $3 }' "$1"
}
# answer CAPTURE DST RID: the first RESPONSE from B to DST with request id RID.
answer() {
	awk -v b="$DST" -v d="$2" -v rid="$3" '$1 == b && $2 == d &&
		substr($3, 1, 6) == "cc0811" && substr($3, 9, 4) == rid { print $3; exit }' "$1"
}
dropped_some() { [ "$(it_nft_dropped "$IT_NS_B" r2p2drop)" -ge 1 ]; }

it_check "warm-up: 3 tls calls of $SZ bytes (a full handshake, then 0-RTT)" \
	it_client -S "$SZ" -c 3 -t 3000
SERVED=3

it_log "--- learn a 0-RTT CLIENT_FIRST of this size: A's port and its UDP length"
CAP0=$IT_TMP/sniff-learn.txt
it_sealed_sniff "$CAP0" 20000
sniff=$IT_LAST_PID
e0=$(it_tls_get b server early_accepted)
it_check "2 more 0-RTT calls of $SZ bytes" it_client -P "$MARKER" -S "$SZ" -c 2 -t 3000
SERVED=$((SERVED + 2))
sleep 0.1
it_sniff_stop "$sniff"
it_check "B accepted their early data (early_accepted +$(($(it_tls_get b server early_accepted) - e0)))" \
	test "$(it_tls_get b server early_accepted)" -eq $((e0 + 2))
mapfile -t LEARN < <(firsts "$CAP0")
it_check "the capture holds 2 CLIENT_FIRSTs (${#LEARN[@]})" test "${#LEARN[@]}" -eq 2
SRC=${LEARN[1]%% *}
HEX=${LEARN[1]#* }
PORT=${SRC##*:}
ULEN=$((8 + ${#HEX} / 2))
it_check "both came from one port of A ($SRC) with one length (UDP length $ULEN)" \
	test "${LEARN[0]%% *}" = "$SRC" -a "${#LEARN[0]}" -eq "${#LEARN[1]}"
it_check "B answered the last one with SERVER_FINAL (kind 2: 0-RTT)" \
	test "$(frame_kind "$(answer "$CAP0" "$SRC" "${HEX:8:4}")")" = 02
it_check "the echo server ran the $SERVED calls so far" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- the attack: B's namespace drops A's flight; a copy goes to B from another port of A"
s0=$(it_tls_status b)
CAP=$IT_TMP/sniff-attack.txt
it_sealed_sniff "$CAP" 20000
sniff=$IT_LAST_PID
it_nft_drop "$IT_NS_B" r2p2drop ip saddr "$IT_A4" udp sport "$PORT" udp dport "$IT_ECHO_PORT" \
	udp length "$ULEN"
t0=$(it_ms)
it_bg "$IT_NS_A" "$IT_TMP/client.out" timeout 30 "$CLIENT" -s "$(it_sock a)" -P "$MARKER" \
	-S "$SZ" -c 1
client=$IT_LAST_PID
it_wait_for 3 "A's first flight to be dropped at B" dropped_some
first=$(firsts "$CAP" | awk -v s="$SRC" '$1 == s { print $2 }' | tail -n 1)
[ -n "$first" ] || it_fail "A's dropped first flight is not in the capture"
rid=${first:8:4}
it_log "  dropped CLIENT_FIRST: rid 0x$rid from $SRC, $((${#first} / 2)) bytes, $(($(it_ms) - t0)) ms after the call"
it_rawsend "$IT_NS_A" "$IT_TMP/forward.txt" "$DST" "$first"
fwd=$(cat "$IT_TMP/forward.txt")
it_log "  forwarded from a fresh port of A; B answered kind $(frame_kind "$fwd") ($((${#fwd} / 2)) bytes)"
it_nft_undo "$IT_NS_B" r2p2drop
tu=$(($(it_ms) - t0))
it_log "  drop rule removed $tu ms after the call: A's retransmission now reaches B"
it_check "the rule was gone before A's first retransmission (2 s)" test "$tu" -lt 1900
rc=0
it_wait_exit "$client" 25 || rc=$?
sleep 0.1
it_sniff_stop "$sniff"
it_log "  client (exit $rc, $(($(it_ms) - t0)) ms): $(tail -n 1 "$IT_TMP/client.out")"
it_log "  A sent: $(awk -v s="$SRC" -v d="$DST" '$1 == s && $2 == d { print substr($3, 1, 20) "..(" length($3) / 2 " B)" }' "$CAP" | tr '\n' ' ')"
it_log "  B answered A: $(awk -v s="$SRC" -v b="$DST" '$1 == b && $2 == s { print substr($3, 1, 20) "..(" length($3) / 2 " B)" }' "$CAP" | tr '\n' ' ')"
s1=$(it_tls_status b)
it_log "  B: $(grep '^tls server' <<<"$s1")"

delta() { echo $(($(it_tls_counter "$s1" server "$1") - $(it_tls_counter "$s0" server "$1"))); }
it_expect "the forwarded copy ran at B: SERVER_FINAL (kind $(frame_kind "$fwd"))" \
	test "$(frame_kind "$fwd")" = 02
it_expect "B accepted early data once: the copy (early_accepted +$(delta early_accepted))" \
	test "$(delta early_accepted)" -eq 1
it_expect "B refused the retransmission's early data (replays_refused +$(delta replays_refused))" \
	test "$(delta replays_refused)" -eq 1
it_expect "the client sent no 1-RTT request (already_answered +$(delta already_answered))" \
	test "$(delta already_answered)" -eq 0
it_expect "A's retransmission got a handshake-only answer (kind 3)" \
	test "$(frame_kind "$(answer "$CAP" "$SRC" "$rid")")" = 03
it_expect "the client's call failed with -ENOTRECOVERABLE ('$UNKNOWN')" \
	grep -qF "$UNKNOWN" "$IT_TMP/client.out"
SERVED=$((SERVED + 1))
got=$(it_echo_served "$ECHO")
it_expect "B's echo server ran the request exactly once ($got, expected $SERVED)" \
	test "$got" -eq "$SERVED"
SERVED=$got

it_log "--- B and A keep serving"
it_client -S "$SZ" -c 3 -t 3000 >"$IT_TMP/after.out" 2>&1 || true
it_expect "3 calls after the attack, all verified" grep -q ': 3 verified, 0 failed' "$IT_TMP/after.out"
SERVED=$((SERVED + 3))
it_expect "the echo server ran those 3 once each ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "a dropped and forwarded 0-RTT flight ran once; the client did not send it again"
