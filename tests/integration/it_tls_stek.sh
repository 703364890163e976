#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_stek: server B's session-ticket keys change under traffic, without a restart
# (r2p2d watches the STEK file with inotify):
#  - `r2p2ctl stek rotate` twice while r2p2-bench makes 3000 sequential tls calls:
#    no call fails, B logs "STEK reloaded" for each, and 0-RTT goes on;
#  - the file is replaced by a fresh one with no common key id: the client's tickets
#    become useless, so calls go through full handshakes, then 0-RTT resumes with the
#    new tickets;
#  - the file is replaced by one B must refuse (mode 0644, then bad syntax): B logs the
#    refusal and keeps its keys, so calls keep succeeding as 0-RTT.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
STEK=$IT_TLS/stek.keys
CTL=$(it_bin r2p2ctl)
"$CTL" stek rotate "$STEK" >/dev/null # as OPERATIONS.md says: start with a next key

{
	it_conf_daemon_tls b "$IT_B4" "$STEK"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
# -d: each request waits about 1 ms in the app, so the 3000 calls take seconds, not a blink
it_start_echo_on b "$IT_NS_B" -n echo.svc -d 100
BLOG=$IT_TMP/r2p2d-b.log

reloads() { grep -c "STEK reloaded" "$BLOG" || true; }
# snap: "full early" of B's tls server and "rejected" of A's client
snap() {
	local sb sa
	sb=$(it_tls_status b)
	sa=$(it_ctl a status)
	echo "$(it_tls_counter "$sb" server full_handshakes) $(it_tls_counter "$sb" server early_accepted) $(it_tls_counter "$sa" client early_rejected)"
}
# replace_stek SRC: rename SRC over the STEK file (atomic, as secret stores do)
replace_stek() { mv -f "$1" "$STEK"; }

it_check "warm-up: 10 tls calls" it_client -S 16 -c 10 -t 3000

it_log "--- (g) two rotations while r2p2-bench makes 3000 sequential calls"
r0=$(reloads)
read -r f0 e0 _ < <(snap)
it_bg "$IT_NS_A" "$IT_TMP/bench.log" timeout 120 "$(it_bin r2p2-bench)" -s "$(it_sock a)" \
	-S 16 -c 1 -N 3000 -w 0 -t 3000
BENCH=$IT_LAST_PID
for round in 1 2; do
	sleep 0.5
	it_check "r2p2-bench still running at rotation $round" it_alive "$BENCH"
	it_check "r2p2ctl stek rotate ($round)" "$CTL" stek rotate "$STEK"
	it_wait_for 5 "B to log reload $round" test "$(reloads)" -ge $((r0 + round))
	it_log "  ok: B: $(grep -A1 "STEK reloaded" "$BLOG" | tail -n 2 | tr '\n' ' ')"
done
rc=0
it_wait_exit "$BENCH" 60 || rc=$?
sed 's/^/      /' "$IT_TMP/bench.log"
it_check "r2p2-bench exited 0 (all 3000 calls verified)" test "$rc" -eq 0
it_check "r2p2-bench counted no errors" grep -Eq "errors 0\b|\"errors\":0" "$IT_TMP/bench.log"
read -r f1 e1 _ < <(snap)
it_log "  B: full_handshakes $f0 -> $f1, early_accepted $e0 -> $e1"
it_check "almost every call went as 0-RTT (+$((e1 - e0)) >= 2900)" test $((e1 - e0)) -ge 2900
it_check "rotation cost no full handshake (previous/next keys open old tickets)" test "$f1" -eq "$f0"
it_check "B logged 'STEK reloaded' for both rotations" test "$(reloads)" -eq $((r0 + 2))

it_log "--- (h) the file is replaced by a fresh one: no key id in common"
"$CTL" stek generate "$IT_TLS/.fresh.keys" >/dev/null
r0=$(reloads)
read -r f0 e0 rj0 < <(snap)
replace_stek "$IT_TLS/.fresh.keys"
it_wait_for 5 "B to reload the fresh file" test "$(reloads)" -gt "$r0"
it_check "20 tls calls after the switch" it_client -S 16 -c 20 -t 3000
read -r f1 e1 rj1 < <(snap)
it_log "  B: full_handshakes $f0 -> $f1, early_accepted $e0 -> $e1; A: early_rejected $rj0 -> $rj1"
it_check "old tickets fell back to full handshakes (+$((f1 - f0)), 1..2: one per client worker)" \
	test $((f1 - f0)) -ge 1 -a $((f1 - f0)) -le 2
it_check "A saw its early data rejected (+$((rj1 - rj0)))" test "$rj1" -gt "$rj0"
it_check "0-RTT resumed with the new tickets (+$((e1 - e0)) >= 18)" test $((e1 - e0)) -ge 18

it_log "--- (i) files B must refuse: the running keys stay"
"$CTL" stek generate "$IT_TLS/.bad.keys" >/dev/null
chmod 0644 "$IT_TLS/.bad.keys"
read -r f0 e0 _ < <(snap)
nlog=$(wc -l <"$BLOG")
replace_stek "$IT_TLS/.bad.keys"
it_wait_for 10 "B to log the refusal of the mode 0644 file" \
	grep -q "mode 0644.*keeping the keys in use" <(tail -n +"$((nlog + 1))" "$BLOG")
it_log "  ok: B: $(tail -n +"$((nlog + 1))" "$BLOG" | grep -m1 "mode 0644")"
it_check "20 tls calls after the refused file" it_client -S 16 -c 20 -t 3000
read -r f1 e1 _ < <(snap)
it_check "still 0-RTT with the old keys (+$((e1 - e0)) >= 19)" test $((e1 - e0)) -ge 19
it_check "no full handshake ($f0 -> $f1)" test "$f1" -eq "$f0"

printf '# a broken file\n0000000z   current   %064d\n' 0 >"$IT_TLS/.bad.keys"
chmod 0600 "$IT_TLS/.bad.keys"
nlog=$(wc -l <"$BLOG")
replace_stek "$IT_TLS/.bad.keys"
it_wait_for 10 "B to log the refusal of the broken file" \
	grep -q "stek.keys:2:.*keeping the keys in use" <(tail -n +"$((nlog + 1))" "$BLOG")
it_log "  ok: B: $(tail -n +"$((nlog + 1))" "$BLOG" | grep -m1 "keeping the keys")"
it_check "20 tls calls after the broken file" it_client -S 16 -c 20 -t 3000
read -r f2 e2 _ < <(snap)
it_check "still 0-RTT with the old keys (+$((e2 - e1)) >= 19)" test $((e2 - e1)) -ge 19
it_check "no full handshake ($f1 -> $f2)" test "$f2" -eq "$f1"
it_check "B never logged 'STEK reloaded' for a refused file" \
	test "$(grep -c "STEK reloaded" <(tail -n +"$((nlog + 1))" "$BLOG") || true)" -eq 0
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "rotation under load lost no call; unknown keys cost one full handshake; bad files refused"
