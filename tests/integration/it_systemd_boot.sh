#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_systemd_boot: the installed unit runs r2p2d under a real systemd (a Debian 12 container).
#
# A minimal Debian 12 root (debootstrap --variant=minbase, systemd, dbus and the Debian
# packages of the libraries r2p2d links) is built once from the mirror this machine's apt
# uses and cached in BUILD/systemd-boot/; each run boots a copy with `systemd-nspawn -b`
# (private network: lo only) after `cmake --install` with DESTDIR into it (prefix
# /usr/local) and a plain udp config in /etc/r2p2/r2p2d.conf. Driven from the host through
# nsenter with systemctl, systemd-run and journalctl only; each step bounded in time:
#  1. `systemctl start r2p2d` returns 0 (Type=notify: READY=1 reached), the unit is
#     active/running, and the daemon holds exactly the unit's capability bounding set,
#     CAP_NET_BIND_SERVICE alone effective (udp backend), with its seccomp filter and
#     NoNewPrivs; an echo call through it (server and client apps inside) comes back.
#  2. `systemctl reload r2p2d` (ExecReload = r2p2ctl reload) with a valid new config
#     exits 0 and the added service answers; with an invalid one (a line error, then a key
#     that needs a restart) it exits non-zero while the daemon (same pid) keeps serving.
#  3. The journal has the daemon's priorities (reload failures at err, the rest at info,
#     no raw "<N>" prefixes); `systemd-analyze security r2p2d` is printed.
#  4. `systemctl restart` gets a new daemon that serves; `systemctl stop` with two calls in
#     flight, one from a second daemon and one from an app of this one, drains them (both
#     complete) and the unit ends with Result=success, exit 0.
#  5. No capability, namespace, seccomp or other set-up failure of the unit in the journal.
# The container is powered off and its copy removed at exit. Skipped, with the reason, when
# this machine cannot do it: not root, no systemd-nspawn or debootstrap, no cgroup
# hierarchy to put the container in, the mirror unreachable, the container not booting.
# R2P2_DEBIAN_MIRROR overrides the mirror; removing BUILD/systemd-boot forces a new root.
# shellcheck disable=SC2317 # functions here are run through it_check and the traps
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
PREFIX=/usr/local
BOOT_SECS=90 # from systemd-nspawn to `systemctl is-system-running` = running or degraded
# The unit's CapabilityBoundingSet= names, with their numbers (linux/capability.h).
declare -A CAP_BIT=([CAP_CHOWN]=0 [CAP_NET_BIND_SERVICE]=10 [CAP_NET_ADMIN]=12
	[CAP_NET_RAW]=13 [CAP_PERFMON]=38 [CAP_BPF]=39)

NSPAWN_PID= # `timeout ... systemd-nspawn`, a child of this shell
LEADER=     # the container's systemd (PID 1 inside), as a host pid
RUN_ROOT=   # this run's copy of the cached root
CGROUPS=()  # cgroups made for the container, removed at exit
T_START=$(it_ms)

# ---- the container's life --------------------------------------------------------------

# in_ct SECS COMMAND...: run COMMAND inside the container (all its namespaces, its root),
# as root with a clean environment, bounded by SECS.
in_ct() {
	local secs=$1
	shift
	timeout -k 5 "$secs" nsenter -t "$LEADER" -a env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat "$@"
}

# ct_teardown: power the container off (SIGTERM to systemd-nspawn: an orderly shutdown,
# 30 s), kill what is left, remove its cgroups and this run's root.
ct_teardown() {
	local i cg
	if [ -n "$NSPAWN_PID" ] && it_alive "$NSPAWN_PID"; then
		kill -TERM "$NSPAWN_PID" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			it_alive "$NSPAWN_PID" || break
			sleep 0.1
		done
		if it_alive "$NSPAWN_PID"; then
			it_log "the container did not power off within 30 s: killed"
			[ -z "$LEADER" ] || kill -KILL "$LEADER" 2>/dev/null || true
			pkill -KILL -P "$NSPAWN_PID" 2>/dev/null || true
			kill -KILL "$NSPAWN_PID" 2>/dev/null || true
		fi
		wait "$NSPAWN_PID" 2>/dev/null || true
	fi
	# Deepest first: systemd-nspawn and the container's systemd made cgroups below ours.
	for cg in "${CGROUPS[@]}"; do
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[ ! -d "$cg" ] || it_log "cgroup $cg is still there (processes left in it?)"
	done
	if [ -n "$RUN_ROOT" ] && [ -d "$RUN_ROOT" ]; then
		rm -rf --one-file-system "$RUN_ROOT"
	fi
}

boot_on_exit() {
	local rc=$?
	set +e
	trap - ERR
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "$LEADER" ] && it_alive "$LEADER"; then
		in_ct 20 journalctl -b --no-pager -o short-monotonic -n 60 >"$IT_TMP/journal.log" 2>&1
		# the unit's messages with their priorities (3 err, 4 warning, 6 info)
		in_ct 20 journalctl -b -u r2p2d --no-pager -o verbose --output-fields=PRIORITY,MESSAGE |
			awk '$1 ~ /^PRIORITY=/ { p = substr($1, 10) } $1 ~ /^MESSAGE=/ { print p ": " substr($0, index($0, "=") + 1) }' \
			>"$IT_TMP/journal-priorities.log" 2>&1
	fi
	ct_teardown
	(exit "$rc")
	it_on_exit
}

# ---- preflight --------------------------------------------------------------------------

it_init_local
trap boot_on_exit EXIT
[ "$(id -u)" -eq 0 ] || it_skip "needs root (debootstrap, systemd-nspawn)"
command -v systemd-nspawn >/dev/null ||
	it_skip "systemd-nspawn is not installed (Debian package systemd-container)"
command -v debootstrap >/dev/null || it_skip "debootstrap is not installed (Debian package debootstrap)"
for c in nsenter wget flock cmake ldd dpkg-query ldconfig; do
	command -v "$c" >/dev/null || it_skip "$c is not installed"
done
BUILD=$(cd "$R2P2_BUILD" && pwd)
[ -f "$BUILD/cmake_install.cmake" ] || it_skip "$BUILD is not a cmake build tree"
for b in r2p2d r2p2ctl r2p2-echo-server r2p2-echo-client; do
	it_bin "$b" >/dev/null || it_fail "$b is not built in $BUILD"
done
CACHE=$BUILD/systemd-boot
mkdir -p "$CACHE"

# debian_mirror: the Debian archive this machine's apt uses: the first URI of a deb source
# for the host's own suite (deb822 .sources files, then one-line .list files).
debian_mirror() {
	local codename f
	if [ -n "${R2P2_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "$R2P2_DEBIAN_MIRROR"
		return 0
	fi
	codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-$SUITE}")
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$codename" -v RS= '
			/(^|\n)Types:[^\n]*deb([ \n]|$)/ && $0 ~ "(^|\n)Suites:[^\n]*[ ]" s "([ \n]|$)" {
				if (match($0, /(^|\n)URIs:[ ]*[^ \n]+/)) {
					u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ ]*/, "", u); print u; exit
				}
			}' "$f"
	done
	{ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
		sed -E 's/\[[^]]*\]//' | awk -v s="$codename" '$1 == "deb" && $3 == s { print $2 }'
}

# runtime_packages: the Debian packages of the shared libraries the installed programs need
# (ldd of the built ones, minus what the build tree itself provides: libr2p2).
runtime_packages() {
	local b lib
	for b in r2p2d r2p2ctl r2p2-echo-server r2p2-echo-client; do
		ldd "$(it_bin "$b")"
	done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
		case $lib in "$BUILD"/*) continue ;; esac
		dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null ||
			echo "unowned: $lib"
	done | sed -E 's/:[a-z0-9_]+:? .*$//; s/: .*$//' | sort -u
}

PKGS=$(runtime_packages)
if grep -q '^unowned' <<<"$PKGS"; then
	it_fail "libraries that no Debian package provides: $(grep '^unowned' <<<"$PKGS" | tr '\n' ' ')"
fi
PKGS=$(printf 'systemd\ndbus\n%s\n' "$PKGS" | sort -u | tr '\n' ' ')
it_log "packages in the root: $PKGS"

# ---- the cached root ----------------------------------------------------------------------

CACHED=$CACHE/$SUITE-root
# root_fits: the cached root exists and has every package now needed.
root_fits() {
	local p
	[ -f "$CACHED/.r2p2-root" ] || return 1
	for p in $PKGS; do
		dpkg-query --admindir="$CACHED/var/lib/dpkg" -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q 'install ok installed' || return 1
	done
}

exec 9>"$CACHE/.lock"
flock -w 300 9 || it_fail "another run holds $CACHE/.lock for over 5 minutes"
COLD=cached
if ! root_fits; then
	COLD=cold
	MIRROR=$(debian_mirror | head -n 1 || true)
	[ -n "$MIRROR" ] || it_skip "no Debian mirror in /etc/apt/sources.list{,.d} (set R2P2_DEBIAN_MIRROR)"
	if ! wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/Release" 2>"$IT_TMP/wget.log"; then
		it_skip "debootstrap cannot reach the mirror: $MIRROR/dists/$SUITE/Release does not download"
	fi
	it_log "building a $SUITE root from $MIRROR into $CACHED (once; later runs reuse it)"
	rm -rf --one-file-system "$CACHED" "$CACHED.new"
	t0=$(it_ms)
	rc=0
	timeout -k 10 300 debootstrap --variant=minbase --include="${PKGS// /,}" "$SUITE" \
		"$CACHED.new" "$MIRROR" >"$IT_TMP/debootstrap.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		tail -n 15 "$IT_TMP/debootstrap.log" | sed 's/^/    debootstrap> /'
		rm -rf --one-file-system "$CACHED.new"
		[ "$rc" -ne 124 ] || it_skip "debootstrap did not finish within 300 s (slow mirror $MIRROR)"
		if grep -Eq "Couldn't download|Failed getting release|Couldn't retrieve|Unable to connect" \
			"$IT_TMP/debootstrap.log"; then
			it_skip "debootstrap could not download from $MIRROR"
		fi
		it_fail "debootstrap failed (exit $rc)"
	fi
	rm -f "$CACHED.new"/var/cache/apt/archives/*.deb
	printf '%s %s\n' "$SUITE" "$PKGS" >"$CACHED.new/.r2p2-root"
	mv "$CACHED.new" "$CACHED"
	it_log "  root built in $(($(it_ms) - t0)) ms"
fi

RUN_ROOT=$CACHE/run-$IT_ID
t0=$(it_ms)
cp -a --reflink=auto "$CACHED" "$RUN_ROOT"
flock -u 9
DESTDIR=$RUN_ROOT cmake --install "$BUILD" --prefix "$PREFIX" >"$IT_TMP/install.log" 2>&1 ||
	it_fail "cmake --install with DESTDIR=$RUN_ROOT failed: $(tail -n 3 "$IT_TMP/install.log")"
ldconfig -r "$RUN_ROOT"
UNIT=$PREFIX/lib/systemd/system/r2p2d.service
it_check "cmake --install put the unit at $UNIT" test -f "$RUN_ROOT$UNIT"
# A sanitized build tree (R2P2_SANITIZE, as ./tools/dev.sh test builds): AddressSanitizer's
# leak check at exit ptraces the process from a clone, and the unit's SystemCallFilter= denies
# @debug. A drop-in takes ptrace alone out of the deny-list; nothing else changes.
if grep -q '^R2P2_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	install -d "$RUN_ROOT/etc/systemd/system/r2p2d.service.d"
	printf '[Service]\nSystemCallFilter=ptrace\n' \
		>"$RUN_ROOT/etc/systemd/system/r2p2d.service.d/sanitizer.conf"
	it_log "sanitized build: a drop-in allows ptrace (the leak check's tracer) in the unit"
fi
# no login prompt on the (read-only) console
ln -sf /dev/null "$RUN_ROOT/etc/systemd/system/console-getty.service"
install -d -m 0755 "$RUN_ROOT/etc/r2p2"

CONF=$RUN_ROOT/etc/r2p2/r2p2d.conf
conf_base() {
	printf '[daemon]\nlisten = 127.0.0.1\nworkers = 2\nbackend = udp\n%s\n' "${1:-}"
	printf '[serve echo.svc]\nport = 8000\n\n[call echo.svc]\nserver = 127.0.0.1:8000\n\n'
}
conf_slow() {
	printf '[serve slow.svc]\nport = 8001\n\n'
	printf '[call slow.svc]\nserver = 127.0.0.1:8001\ntimeout_ms = 10000\nretries = 1\n\n'
}
conf_base >"$CONF"
it_log "root ready in $(($(it_ms) - t0)) ms ($COLD): $RUN_ROOT"

# ---- boot ---------------------------------------------------------------------------------

# A cgroup of its own for the container when no systemd runs this host (nothing would make
# one): systemd-nspawn --keep-unit then splits it into payload and supervisor. Under a
# systemd host, systemd-nspawn asks it for a scope instead.
# shellcheck disable=SC2054 # the comma separates capabilities, not array elements
NSPAWN_ARGS=(-q -b -D "$RUN_ROOT" -M "r2p2boot$IT_ID" --register=no --private-network
	--capability=CAP_BPF,CAP_PERFMON --console=read-only)
if [ ! -d /run/systemd/system ]; then
	NSPAWN_ARGS+=(--keep-unit)
	for h in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
		case $(stat -f -c %T "$h" 2>/dev/null) in
		cgroup2fs) ;;
		tmpfs | '') continue ;;
		*) [ "$h" = /sys/fs/cgroup/systemd ] || continue ;; # the name=systemd v1 hierarchy
		esac
		mkdir "$h/r2p2-boot-$IT_ID" 2>"$IT_TMP/cgroup.err" ||
			it_skip "cannot create a cgroup for the container in $h: $(cat "$IT_TMP/cgroup.err")"
		CGROUPS+=("$h/r2p2-boot-$IT_ID")
	done
	((${#CGROUPS[@]})) || it_skip "no cgroup2 or name=systemd hierarchy under /sys/fs/cgroup"
fi
where=${CGROUPS[*]:-a scope from the host systemd}
it_log "host: PID 1 is $(cat /proc/1/comm); the container goes into $where"

t0=$(it_ms)
(
	for cg in "${CGROUPS[@]}"; do
		echo "$BASHPID" >"$cg/cgroup.procs"
	done
	exec timeout -k 10 540 systemd-nspawn "${NSPAWN_ARGS[@]}"
) </dev/null >"$IT_TMP/boot.log" 2>&1 &
NSPAWN_PID=$!

# find_leader: the container's systemd, a child of systemd-nspawn (itself a child of timeout).
find_leader() {
	local n p
	for n in $(pgrep -P "$NSPAWN_PID" -x systemd-nspawn); do
		for p in $(pgrep -P "$n"); do
			[ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && LEADER=$p && return 0
		done
	done
	return 1
}
boot_skip() {
	tail -n 15 "$IT_TMP/boot.log" | sed 's/^/    boot> /'
	it_skip "$*"
}
for ((i = 0; i < 300; i++)); do
	find_leader && break
	it_alive "$NSPAWN_PID" || boot_skip "systemd-nspawn exited before the container's systemd ran"
	sleep 0.1
done
[ -n "$LEADER" ] || boot_skip "the container's systemd did not start within 30 s"
# Until the container's systemd has its private socket, systemctl cannot even ask.
state=
for ((i = 0; i < BOOT_SECS * 5; i++)); do
	state=$(in_ct 10 systemctl is-system-running 2>&1) || true
	case $state in running | degraded) break ;; esac
	it_alive "$NSPAWN_PID" || boot_skip "systemd-nspawn exited during the boot"
	sleep 0.2
done
case $state in
running) ;;
degraded) it_log "  degraded: $(in_ct 10 systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
*) boot_skip "the container did not boot within $BOOT_SECS s (is-system-running: ${state:-no answer})" ;;
esac
BOOT_MS=$(($(it_ms) - t0))
it_log "container booted in $BOOT_MS ms: systemd $(in_ct 10 systemctl --version | head -n 1 |
	cut -d' ' -f2), $state, leader pid $LEADER"

# ---- helpers inside ------------------------------------------------------------------------

show() { in_ct 10 systemctl show -P "$2" "$1"; }
main_pid() { show r2p2d MainPID; }
ctl_status() { in_ct 10 r2p2ctl status; }
status_ok() { in_ct 10 systemctl status r2p2d --no-pager -n 0 >/dev/null; }
# echo_call SERVICE TEXT [TIMEOUT_MS]: one call through the daemon; prints the client's lines.
echo_call() {
	in_ct 30 r2p2-echo-client -n "$1" -c 1 -P "$2" -t "${3:-2000}"
}
echo_ok() { echo_call "$@" >"$IT_TMP/echo-call.log" 2>&1 && grep -q ' 1 verified, 0 failed' "$IT_TMP/echo-call.log"; }
# start_app UNIT ARGS...: an echo server as a transient unit; waits (10 s) for its ready line.
start_app() {
	local unit=$1 i
	shift
	in_ct 20 systemd-run --quiet --collect --unit="$unit" /usr/local/bin/r2p2-echo-server "$@" ||
		it_fail "systemd-run $unit failed"
	for ((i = 0; i < 100; i++)); do
		in_ct 10 journalctl -q -u "$unit" -o cat | grep -q '^echo server ready' && return 0
		sleep 0.1
	done
	in_ct 10 journalctl -q -u "$unit" -o cat | tail -n 5
	it_fail "echo server $unit not ready within 10 s"
}
# journal_r2p2d ARGS...: the unit's journal of this boot, message text only.
journal_r2p2d() { in_ct 20 journalctl -q -b -u r2p2d --no-pager -o cat "$@"; }
# timed NAME COMMAND...: run COMMAND, record its duration in ms in MS[NAME].
declare -A MS=()
timed() {
	local name=$1 t rc=0
	shift
	t=$(it_ms)
	"$@" || rc=$?
	MS[$name]=$(($(it_ms) - t))
	return "$rc"
}

# ---- 1. start ------------------------------------------------------------------------------

it_log "--- 1. systemctl start r2p2d"
it_check "systemd sees the installed unit ($UNIT)" \
	test "$(show r2p2d FragmentPath)" = "$UNIT"
rc=0
timed start in_ct 60 systemctl start r2p2d >"$IT_TMP/start.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || journal_r2p2d | tail -n 20
it_check "systemctl start r2p2d exits 0 (${MS[start]} ms; Type=notify: READY=1 reached)" test "$rc" -eq 0
it_check "active/running" test "$(show r2p2d ActiveState)/$(show r2p2d SubState)" = active/running
in_ct 10 systemctl status r2p2d --no-pager -n 0 | sed 's/^/    status> /'
it_check "systemctl status r2p2d exits 0" status_ok
PID1=$(main_pid)
st=$(in_ct 10 cat "/proc/$PID1/status")
want=0
read -ra caps < <(sed -n 's/^CapabilityBoundingSet=//p' "$RUN_ROOT$UNIT")
for c in "${caps[@]}"; do
	[ -n "${CAP_BIT[$c]:-}" ] || it_fail "no number for $c in this test's CAP_BIT table"
	want=$((want | 1 << CAP_BIT[$c]))
done
capfield() { printf '%d' "0x$(awk -v f="$1:" '$1 == f { print $2 }' <<<"$st")"; }
it_check "its bounding set is the unit's CapabilityBoundingSet ($(printf '%016x' "$want"))" \
	test "$(capfield CapBnd)" -eq "$want"
it_check "effective and permitted: CAP_NET_BIND_SERVICE only (udp backend)" \
	test "$(capfield CapEff)" -eq $((1 << 10)) -a "$(capfield CapPrm)" -eq $((1 << 10))
it_check "no ambient capabilities left" test "$(capfield CapAmb)" -eq 0
it_check "its own seccomp filter (Seccomp: 2) and NoNewPrivs" \
	grep -Eq '^Seccomp:[[:space:]]+2$' <<<"$st"
grep -Eq '^NoNewPrivs:[[:space:]]+1$' <<<"$st" || it_fail "NoNewPrivs is not 1"
start_app r2p2-echo -n echo.svc
it_check "an echo call through it comes back" echo_ok echo.svc "hello from systemd"
sed 's/^/    /' "$IT_TMP/echo-call.log"

# ---- 2. reload -----------------------------------------------------------------------------

it_log "--- 2. systemctl reload r2p2d"
{
	conf_base
	conf_slow
} >"$CONF"
rc=0
timed reload_ok in_ct 30 systemctl reload r2p2d >"$IT_TMP/reload.log" 2>&1 || rc=$?
it_check "a valid config (slow.svc added): systemctl reload exits 0 (${MS[reload_ok]} ms)" \
	test "$rc" -eq 0
it_check "same daemon (pid $PID1), active" test "$(main_pid)" = "$PID1" -a \
	"$(show r2p2d ActiveState)" = active
it_check "the journal says reload done" grep -q '^reload done' <(journal_r2p2d)
it_check "r2p2ctl status serves slow.svc" grep -Eq '^ +slow\.svc +port 8001 ' <(ctl_status)
start_app r2p2-slow -n slow.svc -d 1000000
it_check "a call to the added slow.svc comes back" echo_ok slow.svc "added by reload" 5000

# bad_reload WHAT: the config now on disk is refused: systemctl reload fails, the daemon
# keeps its pid and serves.
bad_reload() {
	local rc=0
	timed reload_bad in_ct 30 systemctl reload r2p2d >"$IT_TMP/reload-bad.log" 2>&1 || rc=$?
	sed 's/^/    reload> /' "$IT_TMP/reload-bad.log"
	it_check "$1: systemctl reload exits non-zero ($rc, ${MS[reload_bad]} ms)" test "$rc" -ne 0
	it_check "  the daemon keeps running (pid $PID1, active)" test "$(main_pid)" = "$PID1" -a \
		"$(show r2p2d ActiveState)" = active
	it_check "  and serving: an echo call comes back" echo_ok echo.svc "still here"
}
{
	conf_base
	conf_slow
	printf '[serve bad.svc]\nport = 99999\n'
} >"$CONF"
bad_reload "a line error (port = 99999)"
it_check "  the journal names the line (r2p2d.conf:$(wc -l <"$CONF"))" \
	grep -q "r2p2d.conf:$(wc -l <"$CONF"):" <(journal_r2p2d)
{
	conf_base 'drain_timeout_ms = 8000'
	conf_slow
} | sed 's/^workers = 2$/workers = 3/' >"$CONF"
bad_reload "a key that needs a restart (workers = 3)"
it_check "  the journal says workers needs a restart" grep -q 'workers = 3 needs a restart' \
	<(journal_r2p2d)
{
	conf_base
	conf_slow
} >"$CONF"

# ---- 3. journal and security ----------------------------------------------------------------

it_log "--- 3. the journal's priorities; systemd-analyze security"
it_check "reload failures are logged at err" grep -Eq '^(error: )?reload failed' <(journal_r2p2d -p err)
it_check "reload done is logged at info, not err" \
	test "$(journal_r2p2d -p info..info | grep -c '^reload done')" -ge 1 -a \
	"$(journal_r2p2d -p err | grep -c '^reload done' || true)" -eq 0
it_check "no raw sd-daemon prefixes (<N>) in the messages" \
	test "$(journal_r2p2d | grep -c '^<[0-7]>' || true)" -eq 0
in_ct 60 systemd-analyze security r2p2d --no-pager >"$IT_TMP/security.log" 2>&1 || true
SCORE=$(sed -n 's/^.*Overall exposure level for r2p2d.service: //p' "$IT_TMP/security.log")
[ ! -d "$RUN_ROOT/etc/systemd/system/r2p2d.service.d" ] || SCORE+=" (with the sanitizer drop-in)"
it_check "systemd-analyze security r2p2d: ${SCORE:-no score}" test -n "$SCORE"

# ---- 4. restart and stop --------------------------------------------------------------------

it_log "--- 4. systemctl restart, then stop with calls in flight"
rc=0
timed restart in_ct 60 systemctl restart r2p2d >"$IT_TMP/restart.log" 2>&1 || rc=$?
it_check "systemctl restart exits 0 (${MS[restart]} ms)" test "$rc" -eq 0
PID2=$(main_pid)
it_check "a new daemon (pid $PID1 -> $PID2), active/running" test "$PID2" != "$PID1" -a \
	"$(show r2p2d ActiveState)/$(show r2p2d SubState)" = active/running
# The apps lost their daemon with the old one: new ones attach to the new daemon.
in_ct 20 systemctl stop r2p2-echo r2p2-slow 2>/dev/null || true
start_app r2p2-echo2 -n echo.svc
start_app r2p2-slow2 -n slow.svc -d 1000000
it_check "an echo call through the new daemon comes back" echo_ok echo.svc "after restart"

# Two calls in flight: one from another host's daemon, as a drain promises to remote callers
# (a second r2p2d, a transient unit with its own control socket, that only calls), and one
# from an app of this daemon, which must get its answer before the daemon exits.
CALLER_SOCK=/run/r2p2-caller/r2p2d.sock
{
	printf '[daemon]\nlisten = 127.0.0.1\nworkers = 1\nbackend = udp\nsocket = %s\n\n' "$CALLER_SOCK"
	printf '[call slow.svc]\nserver = 127.0.0.1:8001\ntimeout_ms = 10000\nretries = 1\n'
} >"$RUN_ROOT/etc/r2p2/caller.conf"
in_ct 20 systemd-run --quiet --collect --unit=r2p2-caller -p RuntimeDirectory=r2p2-caller \
	/usr/local/bin/r2p2d --config /etc/r2p2/caller.conf || it_fail "systemd-run r2p2-caller failed"
for ((i = 0; i < 100; i++)); do
	in_ct 10 test -S "$CALLER_SOCK" && break
	sleep 0.1
done
((i < 100)) || it_fail "the calling daemon has no control socket after 10 s"
declare -A INFLIGHT=()
for who in remote local; do
	sock=$CALLER_SOCK
	[ "$who" = remote ] || sock=/run/r2p2/r2p2d.sock
	in_ct 30 r2p2-echo-client -s "$sock" -n slow.svc -c 1 -P "in flight, $who" -t 10000 \
		>"$IT_TMP/inflight-$who.log" 2>&1 &
	INFLIGHT[$who]=$!
	IT_PIDS+=("$!")
done
for ((i = 0; i < 100; i++)); do
	[ "$(it_worker_sum "$(ctl_status 2>/dev/null || true)" executing)" -ge 2 ] && break
	sleep 0.05
done
((i < 100)) || it_fail "the two slow calls never showed as executing"
rc=0
timed stop in_ct 60 systemctl stop r2p2d >"$IT_TMP/stop.log" 2>&1 || rc=$?
it_check "systemctl stop exits 0 (${MS[stop]} ms, the echo server holds the calls 1 s)" \
	test "$rc" -eq 0
for who in remote local; do
	crc=0
	it_wait_exit "${INFLIGHT[$who]}" 20 || crc=$?
	sed 's/^/    /' "$IT_TMP/inflight-$who.log"
	it_check "the $who call in flight completed during the drain" test "$crc" -eq 0 -a \
		"$(grep -c ' 1 verified, 0 failed' "$IT_TMP/inflight-$who.log")" -eq 1
done
it_check "the journal says the daemon drained" grep -q 'draining in-flight RPCs' <(journal_r2p2d)
it_check "inactive, Result=success, exit status 0" test \
	"$(show r2p2d ActiveState)/$(show r2p2d Result)/$(show r2p2d ExecMainStatus)" = inactive/success/0
it_check "no automatic restarts (NRestarts=0)" test "$(show r2p2d NRestarts)" = 0

# ---- 5. hardening ---------------------------------------------------------------------------

it_log "--- 5. the hardening did not get in the way"
# systemd's set-up failures (exit codes 200-243: 218/CAPABILITIES, 226/NAMESPACE,
# 228/SECCOMP...), a daemon killed by a filter (31/SYS), or the daemon's own complaints.
pat='status=2[0-4][0-9]/|status=31/SYS|Bad system call|Failed to (set up|apply|execute)'
pat+='|Operation not permitted|Permission denied|capabilit[a-z]* (failed|denied)'
journal_r2p2d -o short-monotonic >"$IT_TMP/r2p2d-journal.log"
bad=$(grep -Ei "$pat" "$IT_TMP/r2p2d-journal.log" || true)
[ -z "$bad" ] || printf '%s\n' "$bad" | sed 's/^/    journal> /'
it_check "no capability, namespace or system call errors in the unit's journal" test -z "$bad"
others=$(journal_r2p2d -p warning | grep -Evi 'reload|r2p2d.conf:|needs a restart' || true)
[ -z "$others" ] || printf '%s\n' "$others" | sed 's/^/    journal> /'
it_check "nothing at warning or worse in the unit's journal but the refused reloads" \
	test -z "$others"

it_log "timings: root $COLD, boot $BOOT_MS ms, start ${MS[start]} ms, reload ${MS[reload_ok]} ms," \
	"restart ${MS[restart]} ms, stop (1 s drain) ${MS[stop]} ms; total $(($(it_ms) - T_START)) ms"
it_log "systemd-analyze security r2p2d: $SCORE"
it_pass "the installed unit starts, reloads (and refuses), restarts, drains and stops under systemd"
