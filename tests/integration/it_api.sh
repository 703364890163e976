#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_api: libr2p2 for an app coming from gRPC: cancellation, a file descriptor for the
# app's own event loop, and flags on the synchronous call (tests/integration/api_client.c).
#
# Daemon A calls a slow service (its echo server on B takes 1 s a request; max_inflight 1
# on A) and a fast one, in plain mode (slow.svc, fast.svc) and sealed mode (sslow.svc,
# sfast.svc). The echo servers count what they run.
#  - A call in flight, cancelled, ends -ECANCELED at once; its request had left, so the
#    slow server still runs it (cancelling ends the wait, not the server's work).
#  - A call waiting for max_inflight, cancelled, ends -ECANCELED at once and never leaves
#    A: the slow server runs exactly the 2 calls of 3 that left.
#  - 50 calls collected only through r2p2_fd in an epoll loop all come back.
#  - r2p2_call_sync_flags with R2P2_CALL_NOT_REPLAY_SAFE answers.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" sslow.svc sfast.svc
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve slow.svc 8000
	it_conf_serve fast.svc 8001
	it_conf_serve_sealed sslow.svc 8002 "$IT_TLS/sslow.svc.crt" "$IT_TLS/sslow.svc.key"
	it_conf_serve_sealed sfast.svc 8003 "$IT_TLS/sfast.svc.crt" "$IT_TLS/sfast.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" 1 # one worker: max_inflight is per worker
	it_conf_call slow.svc 5000 0 "$IT_B4:8000"
	printf 'max_inflight = 1\n\n'
	it_conf_call fast.svc 3000 2 "$IT_B4:8001"
	it_conf_call_sealed sslow.svc 5000 0 "$IT_TLS/ca.crt" "$IT_B4:8002"
	printf 'max_inflight = 1\n\n'
	it_conf_call_sealed sfast.svc 3000 2 "$IT_TLS/ca.crt" "$IT_B4:8003"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
declare -A ECHO=()
for s in slow.svc sslow.svc; do
	it_start_echo_on b "$IT_NS_B" -n "$s" -c -d 1000000
	ECHO[$s]=$IT_LAST_PID
done
for s in fast.svc sfast.svc; do
	it_start_echo_on b "$IT_NS_B" -n "$s" -c
	ECHO[$s]=$IT_LAST_PID
done

# api ARGS...: api_client through daemon A, its lines logged; fails the test on a failure.
api() {
	local out rc=0
	out=$(timeout 60 ip netns exec "$IT_NS_A" "$(it_bin api_client)" -s "$(it_sock a)" "$@" 2>&1) ||
		rc=$?
	sed 's/^/    /' <<<"$out"
	it_check "api_client $* (exit $rc)" test "$rc" -eq 0
}

for mode in plain sealed; do
	if [ "$mode" = plain ]; then slow=slow.svc fast=fast.svc; else slow=sslow.svc fast=sfast.svc; fi
	it_log "--- $mode: cancel ($slow)"
	api cancel "$slow"
	sleep 1.2 # the slow server finishes what it took
	served=$(it_echo_served "${ECHO[$slow]}")
	it_check "$mode: the slow server ran the 2 calls that left, not the one cancelled while waiting ($served)" \
		test "$served" -eq 2
	it_log "--- $mode: r2p2_fd ($fast)"
	api fd "$fast" 50
	it_check "$mode: the fast server ran 50 + 1" test "$(it_echo_served "${ECHO[$fast]}")" -eq 51
done
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "cancel, r2p2_fd and r2p2_call_sync_flags work as documented, plain and sealed"
