#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_sealed_flood: (G5) an authenticated client floods a sealed server's strike register.
#
# Every sealed request a server opens takes a slot of its strike register (replay_max_entries,
# 1024 here, the smallest allowed) for two timestamp windows. A tenant holding a genuine
# association can send distinct requests as fast as it likes: the register must neither let
# that tenant starve the others of 0-RTT nor, once full, fail calls or run one twice.
#
# Daemon A (the flooding tenant, 10.77.N.1) and daemon V (another tenant, a second address on
# the same link, its own association) call echo.svc on B (sealed). The echo server on B counts
# every request it is handed (-c), so executions are counted at the server app.
#  1. A puts 2000 distinct calls in flight at once (burst_client). B opens them sealed until
#     the register is 3/4 full; past that, A holds more than its share (1/4) and B refuses
#     with REJECT share; the client sends each of those through tls instead. Every call
#     succeeds and the app runs 2000 requests: none twice, none lost.
#  2. V makes 200 calls: B opens every one sealed, no refusal (share, full) at all: the
#     quarter kept for the others is there although A asked for far more.
#  3. V makes 200 more: the register fills (V's own share and then the capacity), the calls
#     B refuses (full or share) go through tls, every call succeeds and runs once.
#  4. Every sealed request V sent in step 3, captured on the link and replayed to B from a
#     fresh UDP socket in A (r2p2-rawsend): each is refused (replay for the ones B opened;
#     full for the ones refused while full, whose tls retry raised V's floor (the association's,
#     not the register's) over their timestamp, and the app runs none of them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

CAPACITY=1024
FLOOD=2000
VCALLS=200
IT_V4=10.77.$IT_NET.5

it_sealed_init
it_setup_pair
ip -n "$IT_NS_A" addr add "$IT_V4/24" dev "r2a$IT_ID"
it_tls_certs "$IT_TLS" echo.svc
DST=$IT_B4:$IT_ECHO_PORT
# A 30 s timestamp window: the register holds a key for 60 to 90 s, so nothing A or V sent
# leaves it before the test ends, and the counts below are exact.
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys" 2 "replay_max_entries = $CAPACITY"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} | sed 's/^sealed_window_ms = .*/sealed_window_ms = 30000/' >"$IT_TMP/b.conf"
for side in a v; do
	if [ "$side" = a ]; then addr=$IT_A4; else addr=$IT_V4; fi
	{
		it_conf_daemon_sealed "$side" "$addr" - 1
		it_conf_call_sealed echo.svc 3000 2 "$IT_TLS/ca.crt" "$DST"
	} >"$IT_TMP/$side.conf"
done
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_daemon v "$IT_NS_A" "$IT_TMP/v.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID

# client SIDE ARGS...: r2p2-echo-client through daemon SIDE in namespace A.
client() {
	local side=$1
	shift
	timeout 120 ip netns exec "$IT_NS_A" "$(it_bin r2p2-echo-client)" -s "$(it_sock "$side")" "$@"
}
# sealed_line STATUS: B's "sealed server:" line, for the log.
sealed_line() { grep '^sealed server' <<<"$1"; }
# refusals S0 S1: how many requests B refused for the register (share, full) between S0 and S1.
refusals() {
	echo $(($(it_sealed_delta "$1" "$2" share) + $(it_sealed_delta "$1" "$2" full)))
}

for side in a v; do
	it_check "warm-up: daemon $side bootstraps its association (1 call)" \
		client "$side" -S 16 -c 1 -t 3000
done
SERVED=2
it_check "the echo server ran both warm-up calls" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- 1. A floods: $FLOOD distinct calls in flight at once"
s0=$(it_tls_status b)
rc=0
timeout 120 ip netns exec "$IT_NS_A" "$(it_bin burst_client)" -s "$(it_sock a)" -n echo.svc \
	-N "$FLOOD" -S 64 -t 3000 -w 10000 >"$IT_TMP/flood.txt" 2>"$IT_TMP/flood.log" || rc=$?
line=$(grep '^burst ' "$IT_TMP/flood.txt" || true)
it_log "  $line"
s1=$(it_tls_status b)
it_log "  B: $(sealed_line "$s1")"
it_check "every one of A's calls succeeded (exit $rc, verified $(it_field "$line" verified))" \
	test "$rc" -eq 0 -a "$(it_field "$line" verified)" -eq "$FLOOD"
SERVED=$((SERVED + FLOOD))
it_check "the echo server ran each exactly once ($(it_echo_served "$ECHO"), expected $SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
opened=$(it_sealed_delta "$s0" "$s1" opened)
share=$(it_sealed_delta "$s0" "$s1" share)
full=$(it_sealed_delta "$s0" "$s1" full)
it_check "B opened at most 3/4 of the register for A (opened +$opened of $CAPACITY)" \
	test "$opened" -le $((CAPACITY * 3 / 4))
it_check "B refused the rest of A's flood (share +$share, full +$full): over its share, then under its floor" \
	test "$share" -gt 0 -a "$((opened + share + full))" -ge "$FLOOD"

it_log "--- 2. V, another tenant, calls while A's keys fill 3/4 of the register"
client v -S 32 -c "$VCALLS" -t 3000 >"$IT_TMP/v1.out" 2>&1 || true
it_log "  $(tail -n 1 "$IT_TMP/v1.out")"
s2=$(it_tls_status b)
it_log "  B: $(sealed_line "$s2")"
it_check "all $VCALLS of V's calls succeeded" grep -q ": $VCALLS verified, 0 failed, 0 mismatched" "$IT_TMP/v1.out"
it_check "B opened every one sealed (opened +$(it_sealed_delta "$s1" "$s2" opened)), refused none ($(refusals "$s1" "$s2"))" \
	test "$(it_sealed_delta "$s1" "$s2" opened)" -eq "$VCALLS" -a "$(refusals "$s1" "$s2")" -eq 0
SERVED=$((SERVED + VCALLS))
it_check "the echo server ran each once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- 3. V makes $VCALLS more: the register fills, captured on A's end of the link"
CAP=$IT_TMP/sniff-v.txt
it_sealed_sniff "$CAP" 60000
sniff=$IT_LAST_PID
client v -S 32 -c "$VCALLS" -t 3000 >"$IT_TMP/v2.out" 2>&1 || true
sleep 0.1
it_sniff_stop "$sniff"
it_log "  $(tail -n 1 "$IT_TMP/v2.out")"
s3=$(it_tls_status b)
it_log "  B: $(sealed_line "$s3")"
it_check "all $VCALLS succeeded" grep -q ": $VCALLS verified, 0 failed, 0 mismatched" "$IT_TMP/v2.out"
it_check "B refused some for the register (share/full +$(refusals "$s2" "$s3")): it is full" \
	test "$(refusals "$s2" "$s3")" -gt 0
SERVED=$((SERVED + VCALLS))
it_check "the echo server ran each once, also those retried through tls ($SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- 4. V's sealed requests of step 3, replayed to B from a raw UDP socket in A"
awk -v s="$IT_V4:" 'index($1, s) == 1' "$CAP" >"$CAP.v"
mapfile -t REQS < <(it_sealed_requests "$CAP.v" "$DST" | awk '!seen[$0]++')
it_check "the capture holds V's $VCALLS sealed requests (${#REQS[@]})" test "${#REQS[@]}" -ge "$VCALLS"
declare -A KINDS=()
n=0
for r in "${REQS[@]}"; do
	n=$((n + 1))
	it_rawsend "$IT_NS_A" "$IT_TMP/replay.txt" "$DST" "$r"
	k=$(it_sealed_reply_kind "$(cat "$IT_TMP/replay.txt")")
	KINDS[$k]=$((${KINDS[$k]:-0} + 1))
done
summary=$(for k in "${!KINDS[@]}"; do printf '%s %s, ' "$k" "${KINDS[$k]}"; done)
it_log "  replies to $n replays: ${summary%, }"
refused=$((${KINDS[reject:replay]:-0} + ${KINDS[reject:full]:-0} + ${KINDS[reject:share]:-0}))
it_check "each was refused (replay, full or share: $refused of $n)" test "$refused" -eq "$n"
it_check "some were refused as full: the tls retry raised V's floor over them (${KINDS[reject:full]:-0})" \
	test "${KINDS[reject:full]:-0}" -gt 0
it_check "the echo server ran none of them ($(it_echo_served "$ECHO"), was $SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
for side in a v b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "one tenant's flood took at most 3/4 of the register; everyone's calls ran exactly once"
