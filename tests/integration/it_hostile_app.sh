#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_hostile_app: apps that break the ring ABI (impossible indexes, payloads
# outside the arena) are detached; apps that only send bad requests get error
# completions; meanwhile an honest app on the same daemon keeps its echoes
# flowing and the daemon never crashes.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

it_init
it_setup_pair
it_start_pair_services 2 2000 2
hostile=$(it_bin hostile_app)

# A steady honest load on daemon A while the hostile apps attack it.
it_bench -S 64 -c 4 -N 200000 -w 0 -t 2000 -d 8 --json >"$IT_TMP/honest.txt" 2>&1 &
honest_pid=$!
IT_PIDS+=("$honest_pid")

for mode in tail offset cqhead length name op; do
	it_check "hostile app ($mode) handled" it_in "$IT_NS_A" "$hostile" "$(it_sock a)" "$mode"
done

rc=0
wait "$honest_pid" || rc=$?
sed 's/^/    /' "$IT_TMP/honest.txt" | head -n 6
ok=$(it_json_num "$IT_TMP/honest.txt" ok)
errors=$(it_json_num "$IT_TMP/honest.txt" errors)
timeouts=$(it_json_num "$IT_TMP/honest.txt" timeouts)
it_check "the honest app's echoes all succeeded meanwhile (ok=$ok errors=$errors timeouts=$timeouts)" \
	test "${ok:-0}" -gt 1000 -a "${errors:-1}" -eq 0 -a "${timeouts:-1}" -eq 0
it_check "daemon A is alive" it_alive "${IT_DAEMON_PID[a]}"
it_check "daemon A logged the detaches" grep -q "broke the ring ABI" "$IT_TMP/r2p2d-a.log"
it_check "daemon A still serves a new client: 1465 B echo x 10" it_client -S 1465 -c 10 -t 2000
it_pass
