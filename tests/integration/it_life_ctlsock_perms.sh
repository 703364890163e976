#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_ctlsock_perms: the control socket's least privilege.
#  1. r2p2d --check warns of a [serve] without owner when socket_group shares the socket.
#  2. With socket_group set and the socket in an existing 1777 directory, that directory
#     keeps its mode and owner; the socket is srw-rw---- root:GROUP.
#  3. A socket path that is a symlink: r2p2d refuses to start, names the path, and creates
#     nothing where the symlink points.
#  4. An app as uid 65534 (in socket_group) cannot register a service with owner = root:
#     it fails with the permission error and the daemon log names the rule; root can, and
#     uid 65534 can still register a service without owner.
#  5. Connections over max_connections_per_uid (1 here) are refused with a control error
#     and a rate-limited log line; other uids are not affected, and a freed slot is reusable.
#  6. uid 65534, in socket_group, may not reload the daemon (`r2p2ctl reload` exits 1, the
#     log names its uid); root may.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APP_UID=65534 # nobody

# as_app COMMAND...: run COMMAND as uid and gid $APP_UID, no supplementary groups, in B.
as_app() {
	timeout 10 ip netns exec "$IT_NS_B" setpriv --reuid="$APP_UID" --regid="$APP_UID" \
		--clear-groups "$@"
}

# shellcheck disable=SC2317 # called through it_check
root_status() { timeout 10 "$ctl" -s "$sock" status >/dev/null; }
# shellcheck disable=SC2317 # called through it_check
app_status() { as_app "$ctl" -s "$sock" status >/dev/null; }

it_init
it_setup_pair
command -v setpriv >/dev/null || it_skip "setpriv (util-linux) is missing"
command -v getent >/dev/null || it_skip "getent is missing"
APP_GROUP=$(getent group "$APP_UID" | cut -d: -f1)
[ -n "$APP_GROUP" ] || it_skip "no group with gid $APP_UID"
# uid 65534 must reach the shared directory below.
chmod 0755 "$IT_TMP"
shared="$IT_TMP/shared"
mkdir "$shared"
chmod 1777 "$shared"
sock="$shared/r2p2d.sock"
ctl=$(it_bin r2p2ctl)
echo_bin=$(it_bin r2p2-echo-server)
{
	printf '[daemon]\nlisten = %s\nworkers = 2\nsocket = %s\n' "$IT_B4" "$sock"
	printf 'socket_group = %s\nmax_connections_per_uid = 1\nbackend = udp\n\n' "$APP_GROUP"
	printf '[serve echo.svc]\nport = %s\nowner = root\n\n' "$IT_ECHO_PORT"
	it_conf_serve open.svc 8001
} >"$IT_TMP/b.conf"

it_log "--- 1. r2p2d --check warns of a service without owner"
ip netns exec "$IT_NS_B" "$(it_bin r2p2d)" --config "$IT_TMP/b.conf" --check \
	>"$IT_TMP/check.txt" 2>&1
sed 's/^/    /' "$IT_TMP/check.txt"
it_check "it warns that [serve open.svc] has no owner" \
	grep -q "b.conf:[0-9]*: \[serve open.svc\]: no owner" "$IT_TMP/check.txt"
it_check "and says nothing of echo.svc, which has one" \
	bash -c "! grep -q 'serve echo.svc' '$IT_TMP/check.txt'"

it_log "--- 2. an existing 1777 directory keeps its mode and owner"
before=$(stat -c '%a %U:%G' "$shared")
it_bg "$IT_NS_B" "$IT_TMP/r2p2d-b.log" "$(it_bin r2p2d)" --config "$IT_TMP/b.conf"
IT_DAEMON_PID[b]=$IT_LAST_PID
it_wait_for 5 "the control socket $sock" test -S "$sock"
stat -c "    %A %U:%G %n" "$shared" "$sock"
it_check "the directory is still $before" test "$(stat -c '%a %U:%G' "$shared")" = "$before"
it_check "the socket is srw-rw---- root:$APP_GROUP" \
	test "$(stat -c '%A %U:%G' "$sock")" = "srw-rw---- root:$APP_GROUP"

it_log "--- 3. a symlink as socket path"
ln -s "$IT_TMP/elsewhere.sock" "$IT_TMP/link.sock"
{
	printf '[daemon]\nlisten = %s\nsocket = %s\nbackend = udp\n\n' "$IT_B4" "$IT_TMP/link.sock"
	it_conf_serve spare.svc 8002
} >"$IT_TMP/link.conf"
rc=0
timeout 10 ip netns exec "$IT_NS_B" "$(it_bin r2p2d)" --config "$IT_TMP/link.conf" \
	>"$IT_TMP/link.log" 2>&1 || rc=$?
sed 's/^/    /' "$IT_TMP/link.log"
it_check "r2p2d exited with status 1 (got $rc)" test "$rc" -eq 1
it_check "it said the path is a symlink it will not follow" \
	grep -qF "control socket path $IT_TMP/link.sock is a symlink; refusing to follow it" \
	"$IT_TMP/link.log"
it_check "nothing was created where the symlink points" test ! -e "$IT_TMP/elsewhere.sock"
it_check "the symlink is still there" test -L "$IT_TMP/link.sock"

it_log "--- 4. owner = root"
rc=0
as_app env R2P2_SOCKET="$sock" "$echo_bin" -n echo.svc >"$IT_TMP/denied.txt" 2>&1 || rc=$?
sed 's/^/    /' "$IT_TMP/denied.txt"
it_check "uid $APP_UID cannot register echo.svc (exit $rc): permission denied" \
	bash -c "[ $rc -eq 1 ] && grep -q 'register echo.svc: permission denied' '$IT_TMP/denied.txt'"
grep 'may not serve' "$IT_TMP/r2p2d-b.log" | sed 's/^/    log> /'
it_check "the daemon log names the rule" \
	grep -Eq "uid $APP_UID gid $APP_UID\) may not serve echo.svc: \[serve echo.svc\] owner = root \(uid 0\)" \
	"$IT_TMP/r2p2d-b.log"
it_bg "$IT_NS_B" "$IT_TMP/echo-root.log" env R2P2_SOCKET="$sock" "$echo_bin" -n echo.svc
it_wait_for 5 "root's echo server to be ready" grep -qs '^echo server ready' "$IT_TMP/echo-root.log"
it_check "root registered echo.svc" grep -q "(pid $IT_LAST_PID) serves echo.svc" "$IT_TMP/r2p2d-b.log"
it_bg "$IT_NS_B" "$IT_TMP/echo-open.log" setpriv --reuid="$APP_UID" --regid="$APP_UID" \
	--clear-groups env R2P2_SOCKET="$sock" "$echo_bin" -n open.svc
app_pid=$IT_LAST_PID
it_wait_for 5 "uid $APP_UID's open.svc server to be ready" \
	grep -qs '^echo server ready' "$IT_TMP/echo-open.log"
it_check "uid $APP_UID registered open.svc, which has no owner" \
	grep -q "(pid $app_pid) serves open.svc" "$IT_TMP/r2p2d-b.log"

it_log "--- 5. max_connections_per_uid = 1"
rc=0
as_app "$ctl" -s "$sock" status >/dev/null 2>"$IT_TMP/capped.txt" || rc=$?
sed 's/^/    /' "$IT_TMP/capped.txt"
it_check "a second connection of uid $APP_UID is refused (exit $rc) with the reason" \
	bash -c "[ $rc -ne 0 ] && grep -qF 'r2p2ctl: r2p2d: too many control connections of uid $APP_UID (max_connections_per_uid = 1)' '$IT_TMP/capped.txt'"
it_check "root's r2p2ctl status still answers (root has no per-uid limit)" root_status
for _ in 1 2 3 4 5 6 7 8 9 10; do
	as_app "$ctl" -s "$sock" status >/dev/null 2>&1 || true
done
sleep 0.2
grep 'refused a connection' "$IT_TMP/r2p2d-b.log" | sed 's/^/    log> /'
n=$(grep -c "refused a connection of pid [0-9]* uid $APP_UID: too many control connections" \
	"$IT_TMP/r2p2d-b.log" || true)
it_check "the refusals are logged, at most once a second ($n lines for 11 refusals)" \
	bash -c "[ $n -ge 1 ] && [ $n -lt 11 ]"
it_kill_pid "$app_pid"
it_wait_for 5 "uid $APP_UID's app to detach" grep -q "detached (pid $app_pid)" "$IT_TMP/r2p2d-b.log"
it_check "with its app gone, uid $APP_UID may connect again" app_status

it_log "--- 6. who may reload"
rc=0
as_app "$ctl" -s "$sock" reload >/dev/null 2>"$IT_TMP/reload.txt" || rc=$?
sed 's/^/    /' "$IT_TMP/reload.txt"
it_check "uid $APP_UID's r2p2ctl reload is refused (exit $rc)" \
	bash -c "[ $rc -eq 1 ] && grep -qF \"only root or the daemon's user (uid 0) may reload\" '$IT_TMP/reload.txt'"
it_check "the daemon log names the refused uid" \
	grep -Eq "refused a reload asked by pid [0-9]+ uid $APP_UID" "$IT_TMP/r2p2d-b.log"
it_check "root's r2p2ctl reload is carried out" \
	timeout 10 "$ctl" -s "$sock" reload
it_check "r2p2d still runs" it_alive "${IT_DAEMON_PID[b]}"
it_pass "existing directories are left alone, symlinks refused, owners enforced, connections capped, reload for root only"
