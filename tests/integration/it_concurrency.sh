#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_concurrency: 1,000 requests outstanding at once from one app (r2p2-bench
# -c 1000) all complete and verify through daemons A and B.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONC=1000
TOTAL=5000

it_init
it_setup_pair
it_start_pair_services 4 5000 3
for size in 64 3000; do
	out=$IT_TMP/bench-$size.txt
	it_log "checking: $TOTAL requests of $size B, $CONC outstanding at once, all succeed"
	rc=0
	it_bench -S "$size" -c "$CONC" -N "$TOTAL" -w 0 -t 5000 -d 120 --json >"$out" || rc=$?
	sed 's/^/    /' "$out"
	[ "$rc" -ne 124 ] || it_fail "r2p2-bench hung (killed after 300 s)"
	ok=$(it_json_num "$out" ok)
	inflight=$(it_json_num "$out" max_inflight)
	[ -n "$ok" ] || it_fail "r2p2-bench printed no result (exit $rc)"
	it_check "$size B: all $TOTAL requests succeeded (ok=$ok, exit $rc)" \
		test "$rc" -eq 0 -a "$ok" -eq "$TOTAL"
	it_check "$size B: $CONC requests were outstanding at once (max in flight $inflight)" \
		test "$inflight" -eq "$CONC"
done
it_check "daemon A still running" it_alive "${IT_DAEMON_PID[a]}"
it_check "daemon B still running" it_alive "${IT_DAEMON_PID[b]}"
it_pass "$CONC concurrent requests, all verified"
