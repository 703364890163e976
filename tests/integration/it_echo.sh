#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_echo: echo requests of 4 B, 1464 B (one full packet), 1465 B (the first
# multi-packet size) and 64 KiB go from an app in namespace A through daemon A,
# over R2P2/UDP, to daemon B and its echo server and back, content verified,
# over IPv4 and then over IPv6.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZES=(4 1464 1465 65536)
COUNT=20

it_init
it_setup_pair
for fam in 4 6; do
	it_log "--- IPv$fam: daemons on both sides, echo.svc served on B"
	it_start_pair_services "$fam" 2000 3
	for size in "${SIZES[@]}"; do
		it_log "checking: $COUNT echo requests of $size B over IPv$fam, verified byte for byte"
		it_check "IPv$fam echo $size B x $COUNT" it_client -S "$size" -c "$COUNT" -t 5000
	done
	it_check "daemon B status answers" it_ctl b status
	it_kill_pid "$IT_ECHO_PID"
	it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
	it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
done
it_pass "4 B, 1464 B, 1465 B, 64 KiB echoed and verified over IPv4 and IPv6"
