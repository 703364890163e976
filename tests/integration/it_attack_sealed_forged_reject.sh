#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_sealed_forged_reject: (G3) forged REJECTs never make a sealed request run twice,
# nor lose one.
#
# A clear REJECT (02 ff REASON in an R2P2 RESPONSE with the sealed flag) is unauthenticated:
# anyone who learns the rid and the client's port can send one from the server's address.
# A server that opened the request's token authenticates its REJECT (02 fe REASON tag), so a
# clear one for such a reason (stale, replay, ...) is forged and the client ignores it. For
# the reasons found before the token opens (wrong_server, unknown_key, bad_token) the client
# cannot tell: it sends the request once more through a tls exchange naming the refused
# attempt (bootstrap prefix 0x03), and the server, inside tls, runs it only if its strike
# register proves the attempt never ran there, else answers "already ran" (-EALREADY at the
# app) or "cannot tell" (-ENOTRECOVERABLE).
#
# Daemon A calls echo.svc on B (sealed, one client worker); executions are counted at B's echo
# server (r2p2-echo-server -c). A sniffer on A's end of the link (tests/integration/sniff.c)
# gives the attacker the rid and A's client port. The forged REJECT comes from B's own address
# and port: r2p2-rawsend -S writes it, UDP header included, to a raw socket in B's namespace,
# so it needs no socket bound to B:8000 and takes nothing from daemon B's sockets.
#  (ran) B runs the request, and its genuine sealed response is dropped on A's side (an
#        nftables rule in A's namespace matching UDP from B:8000 with the exact length of a
#        sealed response to this size, so the later tls answer passes); then the forged REJECT
#        reaches A. The call must fail with -EALREADY ("already run"), the app having run the
#        request exactly once.
#  (hidden) the sealed request is dropped before B (a rule in B's namespace matching its exact
#        length, so the tls retry passes) and the forged REJECT reaches A: the retry runs it
#        exactly once and the call succeeds; the hidden original, sent to B afterwards from a
#        raw socket in A, is refused (REJECT replay) and runs no more.
# Each case once with a forged "wrong_server" and once with "bad_token" (a reason that also
# makes the client drop its association and bootstrap again). And (ran) with a forged clear
# "stale": A ignores it (`unauthentic`), retransmits after its attempt timeout (3 s, past B's
# 2 s dedup window), B refuses that copy as a replay with an authenticated REJECT, and the
# call ends -EALREADY through the tls retry: still run exactly once.
# shellcheck disable=SC2317 # dropped_some is run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

MARKER="R2P2-FORGE-$IT_ID-"
SZ=40
# UDP length of B's sealed response: UDP, R2P2 header, sealed overhead, extension block, echo
RESP_LEN=$((8 + 8 + 41 + 5 + SZ))
REQ_LEN=$((8 + 8 + 127 + 5 + SZ)) # UDP length of A's sealed request
ALREADY="last error: the server had already run this request (an earlier copy); not run again"

it_sealed_init
command -v nft >/dev/null || it_skip "nft (Debian nftables) is missing: it drops chosen datagrams"
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
# 6000 ms over 2 attempts: 3 s each, so the forged REJECT arrives long before any retransmission
{
	it_conf_daemon_sealed a "$IT_A4" - 1
	it_conf_call_sealed echo.svc 6000 1 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
RAWSEND=$(it_bin r2p2-rawsend)
CLIENT=$(it_bin r2p2-echo-client)

# reasons STATUS0 STATUS1: the rejection counters that rose, "reason+N ..."
reasons() {
	local r d out=""
	for r in "${IT_SEALED_REASONS[@]:1}"; do
		d=$(it_sealed_delta "$1" "$2" "$r")
		[ "$d" -eq 0 ] || out="$out $r+$d"
	done
	printf '%s\n' "${out:- none}"
}

# dropped_some NS TABLE: the rule of TABLE dropped a packet.
dropped_some() { [ "$(it_nft_dropped "$1" "$2")" -ge 1 ]; }

it_check "warm-up: 2 calls (the bootstrap, then a sealed call)" it_client -S 16 -c 2 -t 3000
SERVED=2
BAD=()

# expect DESCRIPTION COMMAND...: it_expect, also remembered for the final report.
expect() {
	local what=$1
	shift
	if "$@"; then
		it_log "  ok: $what"
	else
		it_log "  FAILED: $what"
		BAD+=("$CASE: $what")
	fi
}

# forge CASE MODE REASON: one attack; MODE ran or hidden (see the header), REASON the forged one.
forge() {
	local mode=$2 reason=$3 cap=$IT_TMP/sniff-$1.txt out=$IT_TMP/client-$1.out
	local sniff client req src rid forged resp rc=0 da db s0 s1 sa0 sa1 rb got ua
	CASE=$1
	it_log "--- ($1) $mode: a REJECT $reason forged from $DST"
	it_client -S 16 -c 2 -t 3000 >"$IT_TMP/prep-$1.out" 2>&1 ||
		it_fail "prep calls failed: $(cat "$IT_TMP/prep-$1.out")"
	SERVED=$((SERVED + 2))
	it_check "prep: 2 calls, so that A holds an association (served $SERVED)" \
		test "$(it_echo_served "$ECHO")" -eq "$SERVED"
	s0=$(it_tls_status b)
	sa0=$(it_tls_status a)
	it_sealed_sniff "$cap" 20000
	sniff=$IT_LAST_PID
	it_nft_drop "$IT_NS_A" r2p2resp udp sport "$IT_ECHO_PORT" udp length "$RESP_LEN"
	[ "$mode" = ran ] || it_nft_drop "$IT_NS_B" r2p2hide udp dport "$IT_ECHO_PORT" udp length "$REQ_LEN"
	it_bg "$IT_NS_A" "$out" timeout 30 "$CLIENT" -s "$(it_sock a)" -P "$MARKER" -S "$SZ" -c 1
	client=$IT_LAST_PID
	if [ "$mode" = ran ]; then
		it_wait_for 3 "B's sealed response to be dropped at A" dropped_some "$IT_NS_A" r2p2resp
	else
		it_wait_for 3 "the sealed request to be dropped at B" dropped_some "$IT_NS_B" r2p2hide
	fi
	req=$(it_sealed_requests "$cap" "$DST" | head -n 1)
	[ -n "$req" ] || it_fail "no sealed request in the capture (did A bootstrap instead?)"
	src=$(it_sealed_src "$cap" "$req")
	rid=${req:8:4}
	forged=$(it_sealed_reject_hex "$rid" "$reason")
	it_log "  sealed request rid 0x$rid from $src, $((${#req} / 2)) bytes, N ${req:162:24}"
	if [ "$mode" = ran ]; then
		resp=$(awk -v s="$DST" -v d="$src" -v rid="$rid" \
			'$1 == s && $2 == d && substr($3, 1, 12) == "cc0811d0" rid { print $3; exit }' "$cap")
		it_check "B's genuine sealed response ($((${#resp} / 2)) bytes) is in the capture" \
			test "$(it_sealed_reply_kind "$resp")" = sealed
		it_check "the forgery's header is the genuine one's (${forged:0:16})" \
			test "${resp:0:16}" = "${forged:0:16}"
	fi
	it_in "$IT_NS_B" timeout 10 "$RAWSEND" -S "$DST" "$src" "$forged" ||
		it_fail "r2p2-rawsend could not send the forged REJECT from $DST"
	it_log "  forged REJECT $forged sent from $DST to $src"
	it_wait_exit "$client" 25 || rc=$?
	sleep 0.1
	it_sniff_stop "$sniff"
	da=$(it_nft_dropped "$IT_NS_A" r2p2resp)
	it_nft_undo "$IT_NS_A" r2p2resp
	db=0
	if [ "$mode" = hidden ]; then
		db=$(it_nft_dropped "$IT_NS_B" r2p2hide)
		it_nft_undo "$IT_NS_B" r2p2hide
	fi
	it_log "  client (exit $rc): $(tail -n 1 "$out")"
	grep -q 'failed:' "$out" && it_log "  client: $(grep 'failed:' "$out")"
	it_log "  dropped: $da sealed response(s) at A, $db sealed request(s) at B"
	it_log "  after the forgery A sent: $(awk -v s="$src" -v d="$DST" '$1 == s && $2 == d { print substr($3, 1, 16) "..(" length($3) / 2 " B)" }' "$cap" | tail -n +2 | tr '\n' ' ')"
	s1=$(it_tls_status b)
	sa1=$(it_tls_status a)
	it_log "  B: $(grep '^sealed server' <<<"$s1")"
	ua=$(($(it_drops "$sa1" unauthentic) - $(it_drops "$sa0" unauthentic)))
	if [ "$reason" = stale ]; then
		expect "A ignored the clear '$reason' REJECT (unauthentic +$ua)" test "$ua" -ge 1
		expect "B refused A's retransmission as a replay (:$(reasons "$s0" "$s1"))" \
			test "$(reasons "$s0" "$s1")" = " replay+1"
	else
		expect "no rejection at B: the REJECT was not B's (:$(reasons "$s0" "$s1"))" \
			test "$(reasons "$s0" "$s1")" = " none"
	fi
	rb=$(($(it_sealed_counter "$sa1" client rebootstraps) - $(it_sealed_counter "$sa0" client rebootstraps)))
	if [ "$reason" = bad_token ]; then
		expect "A dropped its association on '$reason' (rebootstraps +$rb)" test "$rb" -eq 1
	else
		expect "A kept its association on '$reason' (rebootstraps +$rb)" test "$rb" -eq 0
	fi
	if [ "$mode" = ran ]; then
		expect "only B's sealed response was dropped at A ($da)" test "$da" -eq 1
		expect "B opened the sealed request (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
			test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 1
		expect "the call failed with -EALREADY (exit $rc: '$ALREADY')" \
			grep -q ": 0 verified, 1 failed, 0 mismatched.*; $ALREADY\$" "$out"
		SERVED=$((SERVED + 1))
		got=$(it_echo_served "$ECHO")
		expect "B's echo server ran the request exactly once ($got, expected $SERVED)" \
			test "$got" -eq "$SERVED"
		SERVED=$got
		return 0
	fi
	expect "only the sealed request was dropped at B ($db), no response at A ($da)" \
		test "$db" -eq 1 -a "$da" -eq 0
	expect "B opened no sealed request: the retry ran inside tls (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
		test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0
	expect "the call succeeded (exit $rc)" grep -q ': 1 verified, 0 failed, 0 mismatched' "$out"
	SERVED=$((SERVED + 1))
	got=$(it_echo_served "$ECHO")
	expect "B's echo server ran the request exactly once, through the retry ($got, expected $SERVED)" \
		test "$got" -eq "$SERVED"
	SERVED=$got
	it_log "  -- the hidden original, sent to B from a raw socket in A"
	it_rawsend "$IT_NS_A" "$IT_TMP/orig-$CASE.txt" "$DST" "$req"
	got=$(it_sealed_reply_kind "$(cat "$IT_TMP/orig-$CASE.txt")")
	s0=$s1
	s1=$(it_tls_status b)
	expect "refused: $got" test "$got" = reject:replay
	expect "counted as replay+1 (:$(reasons "$s0" "$s1")), nothing opened" \
		test "$(reasons "$s0" "$s1")" = " replay+1" -a "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0
	got=$(it_echo_served "$ECHO")
	expect "B's echo server ran nothing more ($got, expected $SERVED)" test "$got" -eq "$SERVED"
	SERVED=$got
}

forge ran-wrongserver ran wrong_server
forge ran-badtoken ran bad_token
forge hidden-badtoken hidden bad_token
forge hidden-wrongserver hidden wrong_server
forge ran-stale ran stale

CASE=after
it_log "--- B keeps serving"
it_check "daemon B alive" it_alive "${IT_DAEMON_PID[b]}"
it_client -S 16 -c 5 -t 3000 >"$IT_TMP/after.out" 2>&1 || true
expect "5 calls after the attacks, all verified" grep -q ': 5 verified, 0 failed' "$IT_TMP/after.out"
SERVED=$((SERVED + 5))
expect "the echo server ran those 5 once each ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
if [ "${#BAD[@]}" -gt 0 ]; then
	it_fail "${#BAD[@]} check(s) failed: $(printf '%s; ' "${BAD[@]}")"
fi
it_pass "forged REJECTs cost at most a tls exchange (a clear one the server would have authenticated: nothing), never a second execution nor a lost one"
