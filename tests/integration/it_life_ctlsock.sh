#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_ctlsock: the control socket and single-instance guards.
#  1. The socket is srw-rw---- (0660), owned by root: an app running as uid 65534 in
#     group 0 attaches and serves echo.svc; one outside the group is refused (EACCES).
#  2. r2p2d logs each app's pid, uid and gid as SO_PEERCRED gave them.
#  3. A second r2p2d on the same control socket refuses to start, says why and exits
#     non-zero; the first keeps its socket and keeps serving.
#  4. A second r2p2d on the same service port refuses likewise, leaving no socket file.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APP_UID=65534 # nobody

# second_daemon NAME CONFIG: run another r2p2d in namespace B (bounded by 10 s: one that
# wrongly starts is ended); output to NAME.log, exit status printed.
second_daemon() {
	local rc=0
	timeout 10 ip netns exec "$IT_NS_B" "$(it_bin r2p2d)" --config "$2" >"$IT_TMP/$1.log" 2>&1 ||
		rc=$?
	sed 's/^/    /' "$IT_TMP/$1.log" >&2
	echo "$rc"
}

# shellcheck disable=SC2317 # called through it_check
status_answers() { it_ctl b status >/dev/null; }

it_init
it_setup_pair
command -v setpriv >/dev/null || it_skip "setpriv (util-linux) is missing"
# Members of group 0 may enter the directory of the sockets, others may not pass it.
chmod 0750 "$IT_TMP"
{
	it_conf_daemon b "$IT_B4"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
sock=$(it_sock b)

it_log "--- 1. mode and access"
stat -c "    %A %U:%G %n" "$sock"
it_check "the control socket is srw-rw---- (0660)" test "$(stat -c '%A %a' "$sock")" = "srw-rw---- 660"
it_check "it is owned by root:root (no socket_group)" test "$(stat -c '%U:%G' "$sock")" = root:root
# The echo server as uid 65534, gid 0: allowed through the group bits.
it_start_echo -n echo.svc
root_app=$IT_ECHO_PID
it_bg "$IT_NS_B" "$IT_TMP/echo-nobody.log" setpriv --reuid="$APP_UID" --regid=0 --clear-groups \
	env R2P2_SOCKET="$sock" "$(it_bin r2p2-echo-server)" -n echo.svc
nobody_app=$IT_LAST_PID
it_wait_for 5 "the echo server running as uid $APP_UID to be ready" \
	grep -qs '^echo server ready' "$IT_TMP/echo-nobody.log"
it_check "an app as uid $APP_UID in group 0 attached and serves" \
	grep -q "(pid $nobody_app) serves echo.svc" "$IT_TMP/r2p2d-b.log"
it_check "echo.svc answers through the two servers" it_client -S 16 -c 20 -t 1000
rc=0
timeout 10 ip netns exec "$IT_NS_B" setpriv --reuid="$APP_UID" --regid="$APP_UID" --clear-groups \
	"$(it_bin r2p2-echo-client)" -s "$sock" -c 1 >"$IT_TMP/denied.txt" 2>&1 || rc=$?
sed 's/^/    /' "$IT_TMP/denied.txt"
it_check "an app outside the group is refused (exit $rc): Permission denied" \
	bash -c "[ $rc -eq 1 ] && grep -q 'Permission denied' '$IT_TMP/denied.txt'"

it_log "--- 2. SO_PEERCRED in the log"
grep ' attached: ' "$IT_TMP/r2p2d-b.log" | sed 's/^/    log> /'
it_check "the log has the root app's pid $root_app, uid 0, gid 0" \
	grep -Eq "^app [0-9]+ attached: pid $root_app uid 0 gid 0\$" "$IT_TMP/r2p2d-b.log"
it_check "the log has the other app's pid $nobody_app, uid $APP_UID, gid 0" \
	grep -Eq "^app [0-9]+ attached: pid $nobody_app uid $APP_UID gid 0\$" "$IT_TMP/r2p2d-b.log"

it_log "--- 3. a second r2p2d on the same control socket"
{
	it_conf_daemon b "$IT_B4"
	it_conf_serve spare.svc 8002
} >"$IT_TMP/b-same-socket.conf"
rc=$(second_daemon second-socket "$IT_TMP/b-same-socket.conf")
it_check "it exited with status 1 (got $rc)" test "$rc" -eq 1
it_check "it said another r2p2d runs on $sock" \
	grep -qF "another r2p2d is running on $sock" "$IT_TMP/second-socket.log"
it_check "the first daemon still runs" it_alive "${IT_DAEMON_PID[b]}"
it_check "its socket is still there" test -S "$sock"
it_check "it still answers r2p2ctl status" status_answers
it_check "echo.svc still answers" it_client -S 16 -c 10 -t 1000

it_log "--- 4. a second r2p2d on the same service port"
{
	printf '[daemon]\nlisten = %s\nworkers = 2\nsocket = %s\n\n' "$IT_B4" "$IT_TMP/second.sock"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b-same-port.conf"
rc=$(second_daemon second-port "$IT_TMP/b-same-port.conf")
it_check "it exited with status 1 (got $rc)" test "$rc" -eq 1
it_check "it said port $IT_ECHO_PORT is in use" \
	grep -q "UDP port $IT_ECHO_PORT on .*: Address already in use" "$IT_TMP/second-port.log"
it_check "it waited for the port first (a previous instance may be exiting)" \
	grep -q "UDP port $IT_ECHO_PORT is in use; waiting up to 5000 ms" "$IT_TMP/second-port.log"
it_check "it left no control socket behind" test ! -e "$IT_TMP/second.sock"
it_check "the first daemon still runs" it_alive "${IT_DAEMON_PID[b]}"
it_check "echo.svc still answers (20 x 64 B)" it_client -S 64 -c 20 -t 1000
sleep 0.25 # the status snapshot is refreshed every 100 ms
s=$(it_ctl b status)
it_check "and the first daemon, not the second, received those requests" \
	test "$(it_served_requests "$s" echo.svc)" -ge 50
it_pass "the control socket is 0660 and credential-logged, and one r2p2d owns a socket or port"
