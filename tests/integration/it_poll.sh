#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_poll: the low-latency modes serve correctly: `poll = adaptive` on both daemons with
# polling apps (R2P2_POLL_US), then `poll = busy` on the server, in plain and sealed mode;
# and `cpus` pins B's workers (worker 0 on the last CPU, worker 1 on CPU 0).
#
# A calls echo.svc (plain) and sealed.svc on B. Each phase makes CALLS verified calls of
# mixed sizes (one packet and several) per service, sequential and concurrent, and checks
# that B's app ran each once. With `poll = busy` B's worker never sleeps: the test also
# checks that B still exits 0 on SIGTERM (the drain and stop paths run while polling).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

CALLS=200
PORT_SEALED=8001
LAST_CPU=$(($(nproc) - 1))

# worker_cpus PID: "NAME:CPUS" of each worker thread of r2p2d PID (its allowed CPUs).
worker_cpus() {
	local t
	for t in /proc/"$1"/task/*; do
		[[ $(cat "$t/comm") == r2p2d-w* ]] || continue
		printf '%s:%s ' "$(cat "$t/comm")" "$(awk '$1 == "Cpus_allowed_list:" { print $2 }' "$t/status")"
	done
}

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" sealed.svc

# burst SERVICE SIZE: CALLS calls in flight at once (burst_client), every one verified.
burst() {
	local line
	line=$(timeout 60 ip netns exec "$IT_NS_A" env R2P2_POLL_US=200 "$(it_bin burst_client)" \
		-s "$(it_sock a)" -n "$1" -N "$CALLS" -S "$2" -t 2000 2>/dev/null | grep '^burst ') ||
		return 1
	it_log "  $line"
	grep -q " verified $CALLS " <<<"$line"
}

# phase MODE_B: B with poll = MODE_B, A with poll = adaptive; calls verified in both modes.
phase() {
	local mode=$1 served0 served1
	{
		it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
		printf 'poll = %s\npoll_us = 200\ncpus = %s,0\n\n' "$mode" "$LAST_CPU" # still in [daemon]
		it_conf_serve echo.svc "$IT_ECHO_PORT"
		it_conf_serve_sealed sealed.svc "$PORT_SEALED" "$IT_TLS/sealed.svc.crt" \
			"$IT_TLS/sealed.svc.key"
	} >"$IT_TMP/b.conf"
	{
		it_conf_daemon a "$IT_A4"
		it_conf_call echo.svc 2000 3 "$IT_B4:$IT_ECHO_PORT"
		it_conf_call_sealed sealed.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$PORT_SEALED"
	} >"$IT_TMP/a.conf"
	# poll = adaptive on A: put it into A's [daemon] section (the first one)
	sed -i '0,/^backend = /s//poll = adaptive\npoll_us = 200\nbackend = /' "$IT_TMP/a.conf"
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
	it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
	it_log "--- B poll = $mode, A poll = adaptive, apps R2P2_POLL_US=200"
	local pinned
	pinned=$(worker_cpus "${IT_DAEMON_PID[b]}")
	it_expect "$mode: B's workers are pinned by cpus = $LAST_CPU,0 ($pinned)" \
		test "$pinned" = "r2p2d-w0:$LAST_CPU r2p2d-w1:0 "
	it_start_echo_on b "$IT_NS_B" -n echo.svc -c
	local echo_plain=$IT_LAST_PID
	it_start_echo_on b "$IT_NS_B" -n sealed.svc -c
	local echo_sealed=$IT_LAST_PID
	export R2P2_POLL_US=200
	it_check "$mode: $CALLS plain calls of 64 B, sequential" it_client -n echo.svc -S 64 -c "$CALLS"
	it_check "$mode: $CALLS plain calls of 5000 B, all at once" burst echo.svc 5000
	it_check "$mode: $CALLS sealed calls of 64 B, sequential" it_client -n sealed.svc -S 64 -c "$CALLS"
	it_check "$mode: $CALLS sealed calls of 3000 B, all at once" burst sealed.svc 3000
	unset R2P2_POLL_US
	served0=$(it_echo_served "$echo_plain")
	served1=$(it_echo_served "$echo_sealed")
	it_expect "$mode: B's plain app ran each call once ($served0 = $((2 * CALLS)))" \
		test "$served0" -eq $((2 * CALLS))
	it_expect "$mode: B's sealed app ran each call once ($served1 = $((2 * CALLS)))" \
		test "$served1" -eq $((2 * CALLS))
	it_kill_pid "$echo_plain"
	it_kill_pid "$echo_sealed"
	for side in a b; do
		it_expect "$mode: daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
	done
}

phase adaptive
phase busy
it_expect_done
it_pass "poll = adaptive and busy: plain and sealed calls verified, each run once"
