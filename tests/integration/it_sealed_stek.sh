#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_sealed_stek: server B's STEK file changes under sealed traffic, without a restart (r2p2d
# reloads it by inotify). The association token of client A is sealed under B's current key
# (key id in clear in every sealed request):
#  - after one `r2p2ctl stek rotate` the token's key is `previous`: still opened, no
#    re-bootstrap;
#  - after the second rotation the key is gone: B refuses the token (REJECT unknown_key), A
#    re-bootstraps transparently (a new tls exchange with the same request) and no call fails;
#    later requests carry a token under the new current key;
#  - both rotations happen while r2p2-bench makes sequential calls: none fails;
#  - a fresh file with no key in common: the same transparent recovery.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
STEK=$IT_TLS/stek.keys
CTL=$(it_bin r2p2ctl)
DST=$IT_B4:$IT_ECHO_PORT
A_WORKERS=2
{
	it_conf_daemon_sealed b "$IT_B4" "$STEK"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon_sealed a "$IT_A4" - "$A_WORKERS"
	it_conf_call_sealed echo.svc 3000 3 "$IT_TLS/ca.crt" "$DST"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
# -d: each request waits about 1 ms in the app, so the bench lasts seconds, not a blink
it_start_echo_on b "$IT_NS_B" -n echo.svc -c -d 1000
ECHO=$IT_LAST_PID
BLOG=$IT_TMP/r2p2d-b.log
SERVED=0

reloads() { grep -c "STEK reloaded" "$BLOG" || true; }
current_id() { awk '$2 == "current" { print $1 }' "$STEK"; }
# key_ids CAPTURE: the distinct token key ids of the sealed requests to B in a capture
key_ids() { it_sealed_requests "$1" "$DST" | cut -c19-26 | sort -u | tr '\n' ' '; }

it_check "warm-up: 10 sealed calls" it_client -S 16 -c 10 -t 3000
SERVED=10
K1=$(current_id)
sa=$(it_tls_status a)
sb=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$sb")"
it_check "one association (minted 1), opened 9" \
	test "$(it_sealed_counter "$sb" server minted)" -eq 1 -a "$(it_sealed_counter "$sb" server opened)" -eq 9
it_check "A has not re-bootstrapped" test "$(it_sealed_counter "$sa" client rebootstraps)" -eq 0

it_log "--- (e) two rotations while r2p2-bench makes sequential sealed calls"
CAP=$IT_TMP/sniff.txt
it_sealed_sniff "$CAP" 40000 -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
r0=$(reloads)
it_bg "$IT_NS_A" "$IT_TMP/bench.log" timeout 60 "$(it_bin r2p2-bench)" -s "$(it_sock a)" \
	-S 16 -c 1 -N 3000 -w 0 -t 3000
BENCH=$IT_LAST_PID
sleep 0.5
it_check "r2p2-bench running at rotation 1" it_alive "$BENCH"
it_check "r2p2ctl stek rotate (1): $K1 becomes previous" "$CTL" stek rotate "$STEK"
it_wait_for 5 "B to log reload 1" it_more_than "$r0" reloads
it_log "  B: $(grep -A3 "STEK reloaded" "$BLOG" | tail -n 3 | tr -s ' \n' ' ')"
sleep 0.5
s=$(it_tls_status b)
sa=$(it_tls_status a)
it_log "  B: $(grep '^sealed server' <<<"$s")"
it_check "after rotation 1 the token still opens: no unknown_key at B" \
	test "$(it_sealed_counter "$s" server unknown_key)" -eq 0
it_check "... no re-bootstrap at A" test "$(it_sealed_counter "$sa" client rebootstraps)" -eq 0
it_check "r2p2-bench running at rotation 2" it_alive "$BENCH"
it_check "r2p2ctl stek rotate (2): $K1 is dropped" "$CTL" stek rotate "$STEK"
it_wait_for 5 "B to log reload 2" test "$(reloads)" -ge $((r0 + 2))
it_log "  B: $(grep -A3 "STEK reloaded" "$BLOG" | tail -n 3 | tr -s ' \n' ' ')"
it_check "the file no longer holds $K1" bash -c "! grep -q '^$K1' '$STEK'"
K3=$(current_id)
rc=0
it_wait_exit "$BENCH" 50 || rc=$?
it_sniff_stop "$SNIFF"
sed 's/^/      /' "$IT_TMP/bench.log"
it_check "r2p2-bench exited 0 (all 3000 calls verified)" test "$rc" -eq 0
it_check "r2p2-bench counted no errors nor timeouts" \
	grep -Eq 'errors 0  timeouts 0' "$IT_TMP/bench.log"
SERVED=$((SERVED + 3000))
sb=$(it_tls_status b)
sa=$(it_tls_status a)
it_log "  B: $(grep '^sealed server' <<<"$sb")"
it_log "  B: $(grep '^tls server' <<<"$sb")"
it_log "  A: $(grep '^sealed client' <<<"$sa")"
rb=$(it_sealed_counter "$sa" client rebootstraps)
it_check "A re-bootstrapped ($rb: at least 1, at most one per client worker: $A_WORKERS)" \
	test "$rb" -ge 1 -a "$rb" -le "$A_WORKERS"
uk=$(it_sealed_counter "$sb" server unknown_key)
it_check "B refused the retired token as unknown_key ($uk, as many as re-bootstraps)" test "$uk" -eq "$rb"
it_check "B minted a new association for it (minted $(it_sealed_counter "$sb" server minted))" \
	test "$(it_sealed_counter "$sb" server minted)" -eq $((1 + rb))
it_check "no other rejection (rejected:$(it_sealed_rejections "$sb"))" \
	test "$(it_sealed_rejections "$sb")" = " unknown_key $uk"
ids=$(key_ids "$CAP")
it_log "  token key ids in the captured sealed requests: $ids(first $K1, current now $K3)"
it_check "the requests carried a token under $K1, then under the current key $K3" \
	test "$ids" = "$(printf '%s\n' "$K1" "$K3" | sort -u | tr '\n' ' ')"
last=$(it_sealed_requests "$CAP" "$DST" | tail -n 1 | cut -c19-26)
it_check "the last captured request is under $K3 ($last)" test "$last" = "$K3"
it_check "the echo server ran every call once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- (e) subsequent calls"
s0=$(it_tls_status b)
it_check "20 sealed calls after the rotations" it_client -S 16 -c 20 -t 3000
SERVED=$((SERVED + 20))
s1=$(it_tls_status b)
it_check "all opened, no tls exchange, no new rejection (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 20 -a "$(it_sealed_delta "$s0" "$s1" minted)" -eq 0 -a \
	"$(it_sealed_rejections "$s1")" = "$(it_sealed_rejections "$s0")"

it_log "--- a fresh STEK file with no key in common"
"$CTL" stek generate "$IT_TLS/.fresh.keys" >/dev/null
r0=$(reloads)
sa0=$(it_tls_status a)
mv -f "$IT_TLS/.fresh.keys" "$STEK"
it_wait_for 5 "B to reload the fresh file" test "$(reloads)" -gt "$r0"
it_check "20 sealed calls after the switch" it_client -S 16 -c 20 -t 3000
SERVED=$((SERVED + 20))
s2=$(it_tls_status b)
sa=$(it_tls_status a)
d=$(($(it_sealed_counter "$sa" client rebootstraps) - $(it_sealed_counter "$sa0" client rebootstraps)))
it_check "one transparent re-bootstrap (+$d), unknown_key +$(it_sealed_delta "$s1" "$s2" unknown_key)" \
	test "$d" -eq 1 -a "$(it_sealed_delta "$s1" "$s2" unknown_key)" -eq 1
it_check "the other 19 went sealed (opened +$(it_sealed_delta "$s1" "$s2" opened))" \
	test "$(it_sealed_delta "$s1" "$s2" opened)" -eq 19
it_check "the echo server ran every call once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "a retired STEK key costs one transparent re-bootstrap per client worker, no failed call"
