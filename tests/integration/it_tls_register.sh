#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_register: server-side limits on 0-RTT, end to end.
#  - [daemon] replay_max_entries = 1024, replay_window_ms = 2000: 1200 sequential calls
#    fill B's strike register; from then on B refuses early data (fails closed) and the
#    calls go as 1-RTT, none fails; once the window has passed, 0-RTT comes back.
#  - [serve] early_data = no: calls resume sessions but never carry early data.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NOEARLY_PORT=8001

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc noearly.svc
{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys" 2 "replay_max_entries = 1024" \
		"replay_window_ms = 2000"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	it_conf_serve_tls noearly.svc "$NOEARLY_PORT" "$IT_TLS/noearly.svc.crt" \
		"$IT_TLS/noearly.svc.key" no
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
	it_conf_call_tls noearly.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$NOEARLY_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n noearly.svc

# snap: B's "full resumed early_accepted early_rejected" and its strike register's entries
snap() {
	local s
	s=$(it_tls_status b)
	echo "$(it_tls_counter "$s" server full_handshakes) $(it_tls_counter "$s" server resumed)" \
		"$(it_tls_counter "$s" server early_accepted) $(it_tls_counter "$s" server early_rejected)" \
		"$(awk '$1 == "strike" { print $4 }' <<<"$s")"
}

it_log "--- a strike register of 1024 entries, 2 s window"
it_check "warm-up: 2 tls calls" it_client -S 16 -c 2 -t 3000
read -r f0 r0 e0 j0 n0 < <(snap)
it_log "  B: full $f0 resumed $r0 early_accepted $e0 early_rejected $j0, register entries $n0"
it_check "r2p2-bench: 1200 sequential tls calls, all verified" \
	it_bench -S 16 -c 1 -N 1200 -w 0 -t 3000
read -r f1 r1 e1 j1 n1 < <(snap)
it_log "  B: full $f1 resumed $r1 early_accepted $e1 early_rejected $j1, register entries $n1"
# The server refuses early data once fewer than 64 slots are free (workers race to insert).
it_check "the register filled up (entries $n1 >= 1024 - 64)" test "$n1" -ge 960 -a "$n1" -le 1024
it_check "B accepted early data until it was full (early_accepted $e1 = entries $n1)" \
	test "$e1" -eq "$n1"
# The other calls went as 1-RTT resumptions. Some offered early data and were refused; a
# ticket issued on such a connection carries no early-data permission (BoringSSL: early
# data was off for that SSL), so the call after it does not even offer 0-RTT.
it_check "then refused it, failing closed (early_rejected +$((j1 - j0)))" \
	test $((j1 - j0)) -ge 1 -a $((j1 - j0)) -le $((1200 + e0 - e1))
it_check "every call resumed its session (resumed +$((r1 - r0)) = 1200, no full handshake)" \
	test $((r1 - r0)) -eq 1200 -a "$f1" -eq "$f0"
it_log "  A: $(it_ctl a status | grep '^tls client')"
it_check "the echo server ran each call once (1202)" test "$(it_echo_served "$ECHO")" -eq 1202
ok=0
for ((i = 0; i < 30; i++)); do
	sleep 0.5
	it_client -S 16 -c 2 -t 3000 >/dev/null || it_fail "tls calls failed while waiting"
	read -r _ _ e2 _ n2 < <(snap)
	if [ "$e2" -gt "$e1" ]; then
		ok=1
		break
	fi
done
it_check "0-RTT came back once the window passed (after $(((i + 1) * 5 / 10)) s, entries $n2)" \
	test "$ok" -eq 1

it_log "--- [serve noearly.svc] early_data = no"
read -r f0 r0 e0 j0 _ < <(snap)
it_check "20 tls calls to noearly.svc" it_client -n noearly.svc -S 16 -c 20 -t 3000
read -r f1 r1 e1 j1 _ < <(snap)
it_log "  B: full $f0 -> $f1, resumed $r0 -> $r1, early_accepted $e0 -> $e1, early_rejected $j0 -> $j1"
it_check "one full handshake, then resumptions (+$((r1 - r0)) >= 19)" \
	test $((f1 - f0)) -eq 1 -a $((r1 - r0)) -ge 19
it_check "no early data accepted for noearly.svc" test "$e1" -eq "$e0"
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "a full strike register fails closed and recovers; early_data = no is honoured"
