#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_api_status: a server app's error reaches the caller as a status, and the caller's
# deadline reaches the server app, in every mode (tests/integration/api_client.c).
#
# B serves four services through one app (api_client serve): plain called with
# `extensions = yes`, plain called without (as an upstream R2P2 client would), tls and
# sealed. For each, A's api_client checks that r2p2_respond_error ends the call with
# -EREMOTEIO, the code and the message (without extensions: a DROP), through r2p2_poll
# and r2p2_call_sync, with a message of several packets too; that the server app sees
# the call's timeout as deadline_us; and that echoes of 4 and 5000 bytes come back whole.
# Then, from a raw socket, plain requests with an extension block whose time has run
# out, or that is malformed, are answered DROP and never run: the server app's own
# count, and the service's `expired` and `bad_ext` counters, say so.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" tls.svc sealed.svc
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve xplain.svc 8000
	it_conf_serve oplain.svc 8001
	it_conf_serve_tls tls.svc 8002 "$IT_TLS/tls.svc.crt" "$IT_TLS/tls.svc.key"
	it_conf_serve_sealed sealed.svc 8003 "$IT_TLS/sealed.svc.crt" "$IT_TLS/sealed.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call xplain.svc 3000 2 "$IT_B4:8000"
	printf 'extensions = yes\n\n'
	it_conf_call oplain.svc 3000 2 "$IT_B4:8001"
	it_conf_call_tls tls.svc 3000 2 "$IT_TLS/ca.crt" "$IT_B4:8002"
	it_conf_call_sealed sealed.svc 3000 2 "$IT_TLS/ca.crt" "$IT_B4:8003"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

API=$(it_bin api_client)
app_log=$IT_TMP/server-app.log
it_bg "$IT_NS_B" "$app_log" "$API" -s "$(it_sock b)" serve xplain.svc oplain.svc tls.svc sealed.svc
app=$IT_LAST_PID
it_wait_for 10 "the server app's ready line" grep -qs '^ready' "$app_log"

# ran SERVICE: how many requests of SERVICE the server app ran
ran() { grep -c "^ran $1\$" "$app_log" || true; }

# api ARGS...: api_client through daemon A, its lines logged; fails the test on a failure.
api() {
	local out rc=0
	out=$(timeout 60 ip netns exec "$IT_NS_A" "$API" -s "$(it_sock a)" "$@" 2>&1) || rc=$?
	sed 's/^/    /' <<<"$out"
	it_check "api_client $* (exit $rc)" test "$rc" -eq 0
}

for svc in xplain.svc tls.svc sealed.svc oplain.svc; do
	ext=yes
	[ "$svc" != oplain.svc ] || ext=no
	it_log "--- $svc (extension block: $ext)"
	api status "$svc" "$ext"
	it_check "$svc: the server app ran each of the 6 calls once ($(ran "$svc"))" \
		test "$(ran "$svc")" -eq 6
done

it_log "--- raw extension blocks to xplain.svc: the time run out, then a malformed block"
before=$(ran xplain.svc)
st=$(it_ctl b status)
exp0=$(it_served_field "$st" xplain.svc expired)
bad0=$(it_served_field "$st" xplain.svc bad_ext)
# header with R2P2_F_EXT (flags c1), rid 0x4201; block 04 + 0 us left; "ping"
it_rawsend "$IT_NS_A" "$IT_TMP/expired.hex" "$IT_B4:8000" "cc0800c1420100010400000000$(it_hex ping)"
it_check "a request whose caller's time had run out is answered DROP ($(cat "$IT_TMP/expired.hex"))" \
	test "$(cat "$IT_TMP/expired.hex")" = cc0841c14201000144524f50
# block length 2: shorter than its value
it_rawsend "$IT_NS_A" "$IT_TMP/bad.hex" "$IT_B4:8000" "cc0800c1420200010200$(it_hex ping)"
it_check "a request with a malformed block is answered DROP ($(cat "$IT_TMP/bad.hex"))" \
	test "$(cat "$IT_TMP/bad.hex")" = cc0841c14202000144524f50
# the same request with time left runs: the two above were refused for their blocks
it_rawsend "$IT_NS_A" "$IT_TMP/ok.hex" "$IT_B4:8000" "cc0800c1420300010400989680$(it_hex ping)"
it_check "the same request with 10 s left runs and is answered with status 0 ($(cat "$IT_TMP/ok.hex"))" \
	test "$(cat "$IT_TMP/ok.hex")" = "cc0811c1420300010400000000$(it_hex ping)"
it_check "the server app ran only that one ($(($(ran xplain.svc) - before)))" \
	test "$(($(ran xplain.svc) - before))" -eq 1
# counter FIELD: xplain.svc's FIELD in B's status (the snapshot behind it lags up to 1 s)
# shellcheck disable=SC2317 # run through it_equals
counter() { it_served_field "$(it_ctl b status)" xplain.svc "$1"; }
it_wait_for 5 "xplain.svc to count 1 expired (from $exp0)" it_equals $((exp0 + 1)) counter expired
it_log "  ok: xplain.svc counts 1 expired"
it_wait_for 5 "xplain.svc to count 1 bad_ext (from $bad0)" it_equals $((bad0 + 1)) counter bad_ext
it_log "  ok: xplain.svc counts 1 bad_ext"

it_kill_pid "$app"
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "server app errors reach the caller, and deadlines the server app, in plain, tls and sealed"
