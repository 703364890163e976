#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_attack_reload_window: a reload cannot widen a replay window past its strike register.
#
# A server's strike registers are built at start for its windows: the sealed register holds a
# request for 2 x sealed_window_ms, the tls register a ClientHello random for
# replay_window_ms. If SIGHUP applied a wider window, a request older than the register's
# memory but inside the new window would pass both checks and run again. The daemon refuses
# the reload, names each window that needs a restart and keeps the running configuration
# (daemon/control/reload.c, restart_keys); this test mounts the replay that a reload which did
# apply it would let through.
#
# B serves echo.svc (sealed, port 8000) and tls.svc (tls, port 8001), started with
# sealed_window_ms = 1000 and replay_window_ms = 1000. Daemon A calls both. On A's end of the
# link (tests/integration/sniff.c) the test captures a sealed request and a 0-RTT first flight
# that B executed. B is then reloaded with both windows at 10000: its log names both keys as
# needing a restart (built for 1000) and the reload as refused. 2.5 s after each was made (well inside 10 s, outside 1 s
# and the 2 s of the sealed register), the captures are sent to B again from raw sockets in A
# (r2p2-rawsend):
#  - the sealed request gets REJECT stale (stale +1, nothing opened);
#  - the tls first flight gets no SERVER_FINAL (frame kind 02); its ticket is older than the
#    1000 ms window, so B refuses the early data (early_too_old +1, early_accepted +0);
#  - neither echo server runs anything (r2p2-echo-server -c), and fresh calls still run once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

MARKER="R2P2-WINDOW-$IT_ID-"
SZ=48
TLS_PORT=8001
AGE_MS=2500 # how old a capture is when it is replayed

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc tls.svc
DST=$IT_B4:$IT_ECHO_PORT
DST_TLS=$IT_B4:$TLS_PORT
# b_conf WINDOW_MS: B's configuration with both windows at WINDOW_MS.
b_conf() {
	{
		it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys" 2 "sealed_window_ms = $1" \
			"replay_window_ms = $1"
		it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
		it_conf_serve_tls tls.svc "$TLS_PORT" "$IT_TLS/tls.svc.crt" "$IT_TLS/tls.svc.key"
	} >"$IT_TMP/b.conf"
}
b_conf 1000
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call_sealed echo.svc 2000 1 "$IT_TLS/ca.crt" "$DST"
	it_conf_call_tls tls.svc 2000 1 "$IT_TLS/ca.crt" "$DST_TLS"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n tls.svc -c
ECHO_TLS=$IT_LAST_PID

# frame_kind HEX: the tls frame kind of an R2P2 datagram, e.g. "02" (it_tls_frame_kind)
frame_kind() { it_tls_frame_kind "$1"; }
# count_log PATTERN: how many lines of daemon B's log match PATTERN (extended regex).
count_log() { grep -Ec -- "$1" "$IT_TMP/r2p2d-b.log" || true; }
# wait_until MS: sleep until it_ms reaches MS.
wait_until() {
	local d
	d=$(($1 - $(it_ms)))
	[ "$d" -le 0 ] || sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"
}
delta() { echo $(($(it_tls_counter "$2" server "$3") - $(it_tls_counter "$1" server "$3"))); }

it_check "warm-up: 2 sealed calls (the bootstrap, then sealed)" it_client -n echo.svc -S "$SZ" -c 2 -t 3000
it_check "warm-up: 2 tls calls (a full handshake, then 0-RTT)" it_client -n tls.svc -S "$SZ" -c 2 -t 3000
SERVED=2
SERVED_TLS=2

it_log "--- capture a sealed request and a 0-RTT first flight B executed"
CAP=$IT_TMP/sniff.txt
it_sealed_sniff "$CAP" 20000
sniff=$IT_LAST_PID
s0=$(it_tls_status b)
# two back to back: the second resumes a ticket a few ms old, well inside the 1000 ms window
it_check "2 tls calls" it_client -n tls.svc -P "$MARKER" -S "$SZ" -c 2 -t 3000
t_tls=$(it_ms) # the flight was made before this
it_check "1 sealed call" it_client -n echo.svc -P "$MARKER" -S "$SZ" -c 1 -t 3000
SERVED=$((SERVED + 1))
SERVED_TLS=$((SERVED_TLS + 2))
sleep 0.1
it_sniff_stop "$sniff"
s1=$(it_tls_status b)
REQ=$(it_sealed_requests "$CAP" "$DST" | head -n 1)
FIRST=$(awk -v b="$DST_TLS" '$2 == b && substr($3, 1, 8) == "cc0800e0" &&
	substr($3, 17, 20) ~ /^01(01|81)0000000000000000$/ { f = $3 } END { print f }' "$CAP")
it_check "the capture holds the sealed request and the tls first flight" test -n "$REQ" -a -n "$FIRST"
ANSWER=$(awk -v b="$DST_TLS" -v rid="${FIRST:8:4}" '$1 == b && substr($3, 1, 12) == "cc0811e0" rid { print $3; exit }' "$CAP")
it_check "B ran the last tls one as 0-RTT (SERVER_FINAL; early_accepted +$(delta "$s0" "$s1" early_accepted))" \
	test "$(frame_kind "$ANSWER")" = 02 -a "$(delta "$s0" "$s1" early_accepted)" -ge 1
it_check "B opened the sealed one (opened +$(it_sealed_delta "$s0" "$s1" opened))" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 1
it_check "the echo servers ran them ($SERVED sealed, $SERVED_TLS tls)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED" -a "$(it_echo_served "$ECHO_TLS")" -eq "$SERVED_TLS"
TS=$((16#${REQ:$((2 * IT_SEALED_TS)):16}))
it_log "  sealed request rid 0x${REQ:8:4}, timestamp $TS ($(($(it_ms) - TS)) ms ago)"
it_log "  tls first flight rid 0x${FIRST:8:4}, $((${#FIRST} / 2)) bytes, made before $t_tls"

it_log "--- SIGHUP B with sealed_window_ms = replay_window_ms = 10000"
b_conf 10000
pat_s='^error: reload: sealed_window_ms = 10000 needs a restart .*built for 1000\)$'
pat_t='^error: reload: replay_window_ms = 10000 needs a restart .*built for 1000\)$'
done0=$(count_log '^error: reload failed; keeping the running configuration')
kill -HUP "${IT_DAEMON_PID[b]}"
it_wait_for 30 "daemon B to log the refused reload" \
	it_more_than "$done0" count_log '^error: reload failed; keeping the running configuration'
it_check "B logged that sealed_window_ms needs a restart and kept 1000" test "$(count_log "$pat_s")" -eq 1
it_check "B logged that replay_window_ms needs a restart and kept 1000" test "$(count_log "$pat_t")" -eq 1
it_log "  $(grep -E 'reload: (sealed|replay)_window_ms' "$IT_TMP/r2p2d-b.log" | tr '\n' ' ')"

it_log "--- the captures, sent again to B ${AGE_MS} ms after they were made"
s2=$(it_tls_status b)
wait_until $((t_tls + AGE_MS))
age_tls=$(($(it_ms) - t_tls))
it_rawsend "$IT_NS_A" "$IT_TMP/replay-tls.txt" "$DST_TLS" "$FIRST"
wait_until $((TS + AGE_MS))
age=$(($(it_ms) - TS))
it_rawsend "$IT_NS_A" "$IT_TMP/replay-sealed.txt" "$DST" "$REQ"
k=$(frame_kind "$(cat "$IT_TMP/replay-tls.txt")")
got=$(it_sealed_reply_kind "$(cat "$IT_TMP/replay-sealed.txt")")
s3=$(it_tls_status b)
it_log "  tls first flight, $age_tls ms old: answer kind ${k:-none}"
it_log "  sealed request, $age ms old: $got"
it_log "  B: $(grep '^tls server' <<<"$s3")"
it_log "  B: $(grep '^sealed server' <<<"$s3")"
it_check "both were replayed inside the 10 s the reload asked for" test "$age_tls" -lt 9000 -a "$age" -lt 9000
it_expect "the sealed request was refused as stale ($got)" test "$got" = reject:stale
it_expect "B counted it stale (stale +$(it_sealed_delta "$s2" "$s3" stale)) and opened nothing (opened +$(it_sealed_delta "$s2" "$s3" opened))" \
	test "$(it_sealed_delta "$s2" "$s3" stale)" -eq 1 -a "$(it_sealed_delta "$s2" "$s3" opened)" -eq 0
it_expect "the tls first flight got no SERVER_FINAL (kind ${k:-none})" test "$k" != 02
it_expect "B refused its early data: the ticket is older than the window (early_too_old +$(delta "$s2" "$s3" early_too_old), early_accepted +$(delta "$s2" "$s3" early_accepted))" \
	test "$(delta "$s2" "$s3" early_too_old)" -eq 1 -a "$(delta "$s2" "$s3" early_accepted)" -eq 0
got=$(it_echo_served "$ECHO")
it_expect "the sealed echo server ran nothing more ($got, expected $SERVED)" test "$got" -eq "$SERVED"
got=$(it_echo_served "$ECHO_TLS")
it_expect "the tls echo server ran nothing more ($got, expected $SERVED_TLS)" test "$got" -eq "$SERVED_TLS"

it_log "--- fresh calls after the reload"
it_client -n echo.svc -S "$SZ" -c 2 -t 3000 >"$IT_TMP/after-sealed.out" 2>&1 || true
it_client -n tls.svc -S "$SZ" -c 2 -t 3000 >"$IT_TMP/after-tls.out" 2>&1 || true
it_expect "2 sealed calls, verified" grep -q ': 2 verified, 0 failed' "$IT_TMP/after-sealed.out"
it_expect "2 tls calls, verified" grep -q ': 2 verified, 0 failed' "$IT_TMP/after-tls.out"
SERVED=$((SERVED + 2))
SERVED_TLS=$((SERVED_TLS + 2))
it_expect "each ran once ($SERVED sealed, $SERVED_TLS tls)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED" -a "$(it_echo_served "$ECHO_TLS")" -eq "$SERVED_TLS"
for side in a b; do
	it_expect "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_expect_done
it_pass "a reload kept the windows the strike registers were built for; old captures did not run"
