#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_impair: R2P2 through a lossy network. Daemon A reaches daemon B only via
# the impair relay (5% loss, 5% duplication, 5% reordering, both directions).
# For 4 B, 3000 B and 64 KiB echoes: every request either completes verified
# or fails by its timeout with a clear error, none hangs, no response is ever
# wrong; most 4 B and 3000 B requests succeed. Then 50 concurrent callers
# through the same relay: every call completes (one way or the other).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RELAY_PORT=9000
LOSS=${IT_IMPAIR_LOSS:-0.05}
SEED=${IT_IMPAIR_SEED:-$IT_ID}
CALL_TIMEOUT_MS=3000
# size:count:minimum success percentage. A 64 KiB message is 45 packets each
# way: at 5% loss it only gets through if lost packets are resent one by one.
CASES=("4:200:90" "3000:100:80" "65536:20:50")

it_init
it_setup_relay
impair_bin=$(it_bin impair)
client_bin=$(it_bin r2p2-echo-client)
it_log "impair relay in $IT_NS_R: $IT_R4_A:$RELAY_PORT -> $IT_B4_R:$IT_ECHO_PORT," \
	"loss/dup/reorder $LOSS, seed $SEED"
it_bg "$IT_NS_R" "$IT_TMP/impair.log" "$impair_bin" "$IT_R4_A:$RELAY_PORT" \
	"$IT_B4_R:$IT_ECHO_PORT" --loss "$LOSS" --dup "$LOSS" --reorder "$LOSS" --seed "$SEED" \
	--idle 120
IMPAIR_PID=$IT_LAST_PID
it_wait_for 5 "the impair relay" grep -qs '^impair ready' "$IT_TMP/impair.log"

{
	it_conf_daemon b "$IT_B4_R"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc "$CALL_TIMEOUT_MS" 5 "$IT_R4_A:$RELAY_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc

for c in "${CASES[@]}"; do
	IFS=: read -r size count min_pct <<<"$c"
	out=$IT_TMP/client-$size.txt
	it_log "checking: $count sequential echoes of $size B through the impaired path"
	rc=0
	timeout 300 ip netns exec "$IT_NS_A" "$client_bin" -s "$(it_sock a)" \
		-S "$size" -c "$count" -t "$CALL_TIMEOUT_MS" >"$out" 2>&1 || rc=$?
	grep -v '^request ' "$out" | sed -E 's/request [0-9]+ /request N /' | sort | uniq -c |
		sort -rn | head -n 5 | sed 's/^/    /'
	[ "$rc" -ne 124 ] || it_fail "$size B: the client hung (killed after 300 s)"
	summary=$(grep '^echo ' "$out" | tail -n 1)
	[ -n "$summary" ] || it_fail "$size B: the client printed no summary (exit $rc)"
	verified=$(sed -E 's/.*: ([0-9]+) verified.*/\1/' <<<"$summary")
	failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")
	mismatched=$(sed -E 's/.* ([0-9]+) mismatched.*/\1/' <<<"$summary")
	it_check "$size B: every request accounted for ($verified ok + $failed failed of $count)" \
		test $((verified + failed + mismatched)) -eq "$count"
	it_check "$size B: no response was ever wrong (mismatched $mismatched)" test "$mismatched" -eq 0
	unclear=$(grep 'failed:' "$out" | grep -vc -e 'timed out' -e 'refused' -e 'Timer' || true)
	it_check "$size B: every failure is a timeout or a refusal ($unclear others)" \
		test "$unclear" -eq 0
	it_check "$size B: at least $min_pct% succeed ($verified/$count)" \
		test $((verified * 100)) -ge $((min_pct * count))
done

out=$IT_TMP/bench.txt
it_log "checking: 1000 calls of 4 B, 50 outstanding at once, through the impaired path"
rc=0
it_bench -S 4 -c 50 -N 1000 -w 0 -d 120 --json >"$out" 2>&1 || rc=$?
sed 's/^/    /' "$out" | head -n 8
[ "$rc" -ne 124 ] || it_fail "r2p2-bench hung (killed after 300 s)"
lost=$(it_json_num "$out" lost)
ok=$(it_json_num "$out" ok)
[ -n "$lost" ] || it_fail "r2p2-bench printed no result (exit $rc)"
it_check "concurrent: every call completed or timed out, none hung (lost $lost)" test "$lost" -eq 0
it_check "concurrent: at least 90% succeed ($ok/1000)" test "$ok" -ge 900

it_check "daemon A still running" it_alive "${IT_DAEMON_PID[a]}"
it_check "daemon B still running" it_alive "${IT_DAEMON_PID[b]}"
it_kill_pid "$IMPAIR_PID"
wait "$IMPAIR_PID" 2>/dev/null || true
sed 's/^/    /' "$IT_TMP/impair.log"
it_check "the relay really lost, duplicated and reordered packets" \
	grep -Eq 'lost [1-9][0-9]* duplicated [1-9][0-9]* reordered [1-9]' "$IT_TMP/impair.log"
it_pass "loss/dup/reorder at $LOSS: no hang, no wrong response"
