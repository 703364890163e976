#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_synth_server: r2p2-synth-server (tools/synth_server.c), the router experiment's server
# app, refuses every bad argument with exit 2 and a message naming it, says so when no
# daemon runs, and, behind a daemon pair, answers calls with their own bytes from two
# sleeping workers, then from a spinning one, reporting on SIGUSR1 and SIGTERM how many
# it served and a mean service time no shorter than the fixed one it was given.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SVC=synth.svc
it_init
SYNTH=$(it_bin r2p2-synth-server)

# shellcheck disable=SC2317 # run through it_check
# refuses ARGS... TEXT: the server exits 2 with TEXT on stderr, before touching any daemon
refuses() {
	local text=${*: -1} rc=0
	timeout 10 "$SYNTH" -s "$IT_TMP/none.sock" "${@:1:$#-1}" >/dev/null 2>"$IT_TMP/refused.err" ||
		rc=$?
	[ "$rc" -eq 2 ] && grep -qF -- "$text" "$IT_TMP/refused.err"
}
it_log "checking: bad arguments"
it_check "-w 0" refuses -w 0 "worker count: at least 1"
it_check "-w 257" refuses -w 257 "bad worker count '257'"
it_check "-w x" refuses -w x "bad worker count 'x'"
it_check "-d exp:0" refuses -d exp:0 "an exponential's mean must be above 0"
it_check "-d exp:-5" refuses -d exp:-5 "value 1 ('-5') is not a number of microseconds"
it_check "-d fixed" refuses -d fixed "fixed takes one value"
it_check "-d bimodal:100:1000" refuses -d bimodal:100:1000 "bimodal takes three values"
it_check "-d bimodal:100:1000:2" refuses -d bimodal:100:1000:2 "is not a probability from 0 to 1"
it_check "-d bimodal:1000:100:0.5" refuses -d bimodal:1000:100:0.5 "must not be shorter"
it_check "-d gamma:10" refuses -d gamma:10 "expected fixed:US, exp:US or bimodal"
it_check "-d exp:20000000 (over 10 s)" refuses -d exp:20000000 "from 0 to 10000000"
it_check "--seed -1" refuses --seed -1 "bad seed '-1'"
it_check "-n ''" refuses -n '' "service: empty name"
it_check "an extra argument" refuses extra "unexpected argument 'extra'"
it_check "an unknown option" refuses --fast "usage: r2p2-synth-server"
rc=0
timeout 10 "$SYNTH" -s "$IT_TMP/none.sock" >/dev/null 2>"$IT_TMP/nodaemon.err" || rc=$?
it_check "no daemon: exit 1, says it cannot attach" \
	test "$rc" -eq 1 -a -n "$(grep 'cannot attach to r2p2d' "$IT_TMP/nodaemon.err")"

it_setup_pair
{
	it_conf_daemon b "$IT_B4" 1
	it_conf_serve "$SVC" "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1
	it_conf_call "$SVC" 3000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

# start_synth ARGS...: the server on daemon B; waits (5 s) for its ready line. Pid in SYNTH_PID.
SYNTH_PID=
start_synth() {
	local log=$IT_TMP/synth-${#IT_PIDS[@]}.log
	it_bg "$IT_NS_B" "$log" "$SYNTH" -s "$(it_sock b)" -n "$SVC" "$@"
	SYNTH_PID=$IT_LAST_PID
	SYNTH_LOG=$log
	it_wait_for 5 "the synth server's ready line" grep -qs '^synth server ready' "$log"
	it_log "$(grep '^synth server ready' "$log")"
}
# served_line: "served N mean_us X" asked with SIGUSR1
served_line() {
	local before
	before=$(grep -c '^served ' "$SYNTH_LOG" || true)
	kill -USR1 "$SYNTH_PID"
	it_wait_for 5 "the served line" test "$(grep -c '^served ' "$SYNTH_LOG" || true)" -gt "$before"
	grep '^served ' "$SYNTH_LOG" | tail -n 1
}
# shellcheck disable=SC2317 # run through it_check
# at_least X Y: X >= Y, as decimals
at_least() { awk -v x="$1" -v y="$2" 'BEGIN { exit !(x >= y) }'; }

it_log "checking: two sleeping workers, fixed:2000"
start_synth -w 2 -d fixed:2000 --seed 3
it_check "10 sequential calls echoed" it_client -n "$SVC" -S 16 -c 10 -t 3000
it_check "40 calls, 4 in flight" it_bench -n "$SVC" -S 8 -c 4 -N 40 -w 0 -t 3000
line=$(served_line)
it_check "SIGUSR1: 50 served ($line)" test "$(it_field "$line" served)" -eq 50
it_check "each slept at least 2000 us ($line)" at_least "$(it_field "$line" mean_us)" 2000
rc=0
it_kill_pid "$SYNTH_PID"
wait "$SYNTH_PID" || rc=$?
it_check "SIGTERM: exit 0 ($rc)" test "$rc" -eq 0
it_check "SIGTERM: the served line" grep -q '^served 50 mean_us' "$SYNTH_LOG"

it_log "checking: one spinning worker, bimodal:300:600:0.5"
start_synth -d bimodal:300:600:0.5 --spin
it_check "20 sequential calls echoed" it_client -n "$SVC" -S 4 -c 20 -t 3000
line=$(served_line)
it_check "20 served ($line)" test "$(it_field "$line" served)" -eq 20
it_check "each spun at least 300 us ($line)" at_least "$(it_field "$line" mean_us)" 300
it_pass "arguments checked; calls answered by sleeping and spinning workers"
