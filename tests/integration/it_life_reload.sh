#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_reload: SIGHUP reloads the configuration in place.
#  1. B serves only echo.svc; its config gains [serve other.svc] and A's [call other.svc];
#     SIGHUP to both: a second echo server registers other.svc and answers calls from A,
#     echo.svc keeps working, and neither daemon logs a warning or an error.
#  2. other.svc is removed and added again a few times: each time every worker closes,
#     then reopens its socket on the port (one per worker, as at start-up), without errors.
#  3. A key that needs a restart (workers) changes: the reload is refused whole, naming
#     workers and "needs a restart", and B keeps 2 workers.
#  4. A broken config (unknown key): SIGHUP logs file:line: [section] key and "reload
#     failed; keeping the running configuration"; both services keep answering and
#     `r2p2ctl status` still works and still lists other.svc.
# shellcheck disable=SC2317 # functions here are run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OTHER_PORT=8001
CYCLES=10

# count_log SIDE PATTERN: how many lines of daemon SIDE's log match PATTERN.
count_log() { grep -Ec -- "$2" "$IT_TMP/r2p2d-$1.log" || true; }

# sighup SIDE PATTERN: SIGHUP daemon SIDE and wait (5 s) for one more log line matching PATTERN.
sighup() {
	local side=$1 pat=$2 before
	before=$(count_log "$side" "$pat")
	kill -HUP "${IT_DAEMON_PID[$side]}"
	it_wait_for 5 "daemon $side to log /$pat/ after SIGHUP" \
		test_more "$side" "$pat" "$before"
}
test_more() { [ "$(count_log "$1" "$2")" -gt "$3" ]; }

# port_socks: how many UDP sockets are bound to OTHER_PORT in namespace B.
port_socks() { ip netns exec "$IT_NS_B" ss -Huln "sport = :$OTHER_PORT" | wc -l; }
port_socks_are() { [ "$(port_socks)" -eq "$1" ]; }
# wait_port_socks N: wait up to 1 s for N sockets on OTHER_PORT.
wait_port_socks() {
	local i
	for ((i = 0; i < 20; i++)); do
		port_socks_are "$1" && return 0
		sleep 0.05
	done
	return 1
}

it_init
it_setup_pair
it_start_pair_services 4 1000 2
it_check "echo.svc answers before the reload" it_client -S 16 -c 10 -t 1000

it_log "--- 1. add [serve other.svc] on B and [call other.svc] on A, SIGHUP both"
it_conf_serve other.svc "$OTHER_PORT" >>"$IT_TMP/b.conf"
it_conf_call other.svc 1000 2 "$IT_B4:$OTHER_PORT" >>"$IT_TMP/a.conf"
warn_b=$(count_log b '^(warn|error):')
warn_a=$(count_log a '^(warn|error):')
sighup b 'reload done: 2 services served, 0 called'
sighup a 'reload done: 0 services served, 2 called'
it_log "  ok: both daemons reloaded"
it_start_echo -n other.svc
other_pid=$IT_ECHO_PID
it_check "other.svc answers calls from A (20 x 64 B)" it_client -n other.svc -S 64 -c 20 -t 1000
it_check "echo.svc still answers (20 x 64 B)" it_client -S 64 -c 20 -t 1000
it_check "daemon B logged the registration of other.svc on port $OTHER_PORT" \
	grep -q "(pid $other_pid) serves other.svc on port $OTHER_PORT" "$IT_TMP/r2p2d-b.log"
sleep 0.25 # the status snapshot is refreshed every 100 ms
status=$(it_ctl b status)
printf '%s\n' "$status" | sed -n '/services served/,$p' | sed 's/^/    status> /'
n=$(it_served_requests "$status" other.svc)
it_check "r2p2ctl status of B counts requests for other.svc ($n)" test "${n:-0}" -ge 20
it_expect "daemon B logged no warning or error for a valid reload" \
	test "$(count_log b '^(warn|error):')" -eq "$warn_b"
it_expect "daemon A logged no warning or error for a valid reload" \
	test "$(count_log a '^(warn|error):')" -eq "$warn_a"

it_log "--- 2. other.svc removed and added again, $CYCLES times: each worker opens and closes its socket"
cp "$IT_TMP/b.conf" "$IT_TMP/b-good.conf"
warn_b=$(count_log b '^(warn|error):')
{
	it_conf_daemon b "$IT_B4"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b-without.conf"
for ((cycle = 1; cycle <= CYCLES; cycle++)); do
	cp "$IT_TMP/b-without.conf" "$IT_TMP/b.conf"
	sighup b 'reload done: 1 services served'
	it_wait_for 3 "port $OTHER_PORT to be closed on B (cycle $cycle)" port_socks_are 0
	cp "$IT_TMP/b-good.conf" "$IT_TMP/b.conf"
	sighup b 'reload done: 2 services served'
	# One SO_REUSEPORT socket per worker, as at start-up.
	wait_port_socks 2 || true
	it_expect "cycle $cycle: one socket per worker on port $OTHER_PORT ($(port_socks) of 2)" port_socks_are 2
done
it_expect "daemon B logged no warning or error in these reloads" \
	test "$(count_log b '^(warn|error):')" -eq "$warn_b"
it_check "other.svc answers after the cycles (20 x 64 B)" it_client -n other.svc -S 64 -c 20 -t 1000

it_log "--- 3. a key that needs a restart: workers = 3"
sed -i 's/^workers = 2$/workers = 3/' "$IT_TMP/b.conf"
sighup b 'reload failed; keeping the running configuration'
it_check "the reload was refused naming workers and that it needs a restart" \
	grep -q '^error: reload: workers = 3 needs a restart (running: 2)$' "$IT_TMP/r2p2d-b.log"
status=$(it_ctl b status)
it_check "daemon B still runs 2 workers" grep -q ' workers 2 ' <<<"$status"
it_check "echo.svc still answers" it_client -S 16 -c 10 -t 1000
cp "$IT_TMP/b-good.conf" "$IT_TMP/b.conf"

it_log "--- 4. a broken config: an unknown key in [serve other.svc]"
printf 'bogus_key = 1\n' >>"$IT_TMP/b.conf"
bad_line=$(grep -n '^bogus_key' "$IT_TMP/b.conf" | cut -d: -f1)
sighup b 'reload failed; keeping the running configuration'
grep -E '^error: ' "$IT_TMP/r2p2d-b.log" | tail -n 2 | sed 's/^/    log> /'
it_check "daemon B logged file:line: [section] key of the error ($IT_TMP/b.conf:$bad_line)" \
	grep -qF "error: $IT_TMP/b.conf:$bad_line: [serve other.svc] bogus_key: unknown key" \
	"$IT_TMP/r2p2d-b.log"
it_check "daemon B still runs" it_alive "${IT_DAEMON_PID[b]}"
it_check "echo.svc still answers (20 x 64 B)" it_client -S 64 -c 20 -t 1000
it_check "other.svc still answers (20 x 64 B)" it_client -n other.svc -S 64 -c 20 -t 1000
status=$(it_ctl b status) || it_fail "r2p2ctl status of B failed after the failed reload"
it_check "r2p2ctl status still works and lists other.svc (the running config)" \
	grep -Eq '^  other\.svc +port 8001 ' <<<"$status"
it_expect_done
it_pass "SIGHUP applies a valid config at once and keeps the running one on a broken file"
