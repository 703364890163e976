#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_privileges: after set-up the daemon keeps only what its run time needs.
#  1. Every thread of daemons A (caller) and B (tls server) runs under the system call
#     filter (/proc/PID/task/TID/status: Seccomp 2, NoNewPrivs 1) without CAP_SYS_ADMIN,
#     CAP_BPF or CAP_PERFMON in its effective, permitted or bounding set; the effective
#     and permitted sets hold at most CAP_NET_BIND_SERVICE and CAP_NET_ADMIN.
#  2. So confined, B serves tls calls, re-reads its rotated STEK file (inotify, openat),
#     and a SIGHUP adding [serve other.svc] on a new port binds it: calls to it work.
#  3. Both daemons still exit 0 on SIGTERM (the drain and the exit path are allowed too).
# Over the xdp backend with R2P2_IT_BACKEND=xdp (B then also keeps CAP_NET_ADMIN).
# shellcheck disable=SC2317 # functions here are run through it_check
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OTHER_PORT=8001
CAP_NET_BIND_SERVICE=10
CAP_NET_ADMIN=12
CAP_SYS_ADMIN=21
CAP_PERFMON=38
CAP_BPF=39

# others HEX: the mask HEX without CAP_NET_BIND_SERVICE and CAP_NET_ADMIN.
others() { printf '%x' $((16#$1 & ~((1 << CAP_NET_BIND_SERVICE) | (1 << CAP_NET_ADMIN)))); }

# thread_confined TID: the checks of part 1 for one thread.
thread_confined() {
	local t=$1 set mask
	[ "$(it_proc_field "$t" Seccomp)" = 2 ] || { echo "thread $t: Seccomp $(it_proc_field "$t" Seccomp)"; return 1; }
	[ "$(it_proc_field "$t" NoNewPrivs)" = 1 ] || { echo "thread $t: NoNewPrivs is not 1"; return 1; }
	for set in CapEff CapPrm CapBnd; do
		mask=$(it_proc_field "$t" "$set")
		for bit in $CAP_SYS_ADMIN $CAP_PERFMON $CAP_BPF; do
			! it_has_cap "$mask" "$bit" || { echo "thread $t: $set $mask has bit $bit"; return 1; }
		done
	done
	mask=$(it_proc_field "$t" CapPrm)
	[ "$(others "$mask")" = 0 ] || { echo "thread $t: CapPrm $mask holds more"; return 1; }
	[ "$(it_proc_field "$t" CapEff)" = "$mask" ] || { echo "thread $t: CapEff != CapPrm"; return 1; }
}

# confined SIDE: every thread of daemon SIDE passes thread_confined.
confined() {
	local pid=${IT_DAEMON_PID[$1]} task n=0
	for task in /proc/"$pid"/task/*; do
		thread_confined "$pid/task/${task##*/}" || return 1
		n=$((n + 1))
	done
	[ "$n" -ge 3 ] || { echo "only $n threads (main + 2 workers expected)"; return 1; }
}

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
STEK=$IT_TLS/stek.keys
CTL=$(it_bin r2p2ctl)
"$CTL" stek rotate "$STEK" >/dev/null
{
	it_conf_daemon_tls b "$IT_B4" "$STEK"
	it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc

it_log "--- 1. the running daemons' threads"
for side in a b; do
	pid=${IT_DAEMON_PID[$side]}
	eff=$(it_proc_field "$pid" CapEff)
	it_log "  $side: Seccomp $(it_proc_field "$pid" Seccomp), NoNewPrivs $(it_proc_field "$pid" NoNewPrivs)," \
		"CapEff $eff ($(capsh --decode="$eff" 2>/dev/null | cut -d= -f2 || echo "no capsh"))," \
		"CapBnd $(it_proc_field "$pid" CapBnd)"
	it_check "every thread of $side: filter on, no CAP_SYS_ADMIN/BPF/PERFMON" confined "$side"
done
it_check "B logged the kept capabilities" grep -q '^privileges: uid 0, capabilities kept' \
	"$IT_TMP/r2p2d-b.log"

it_log "--- 2. serving, a STEK rotation and a reload adding a port, all under the filter"
it_check "10 tls calls" it_client -S 16 -c 10 -t 3000
reloads() { grep -c "STEK reloaded" "$IT_TMP/r2p2d-b.log" || true; }
r0=$(reloads)
it_check "r2p2ctl stek rotate" "$CTL" stek rotate "$STEK"
it_wait_for 5 "B to re-read its STEK file" it_more_than "$r0" reloads
it_check "10 tls calls after the rotation" it_client -S 16 -c 10 -t 3000

it_conf_serve other.svc "$OTHER_PORT" >>"$IT_TMP/b.conf"
it_conf_call other.svc 1000 2 "$IT_B4:$OTHER_PORT" >>"$IT_TMP/a.conf"
kill -HUP "${IT_DAEMON_PID[b]}" "${IT_DAEMON_PID[a]}"
it_wait_for 5 "B's reload" grep -q 'reload done: 2 services served' "$IT_TMP/r2p2d-b.log"
it_wait_for 5 "A's reload" grep -q 'reload done: 0 services served, 2 called' "$IT_TMP/r2p2d-a.log"
it_start_echo -n other.svc
it_check "other.svc on the new port $OTHER_PORT answers (20 x 64 B)" \
	it_client -n other.svc -S 64 -c 20 -t 1000
it_check "B is still confined after the reload" confined b
it_expect "neither daemon logged an error" \
	test "$(cat "$IT_TMP"/r2p2d-[ab].log | grep -c '^error:' || true)" -eq 0

it_expect_done

it_log "--- 3. the exit path"
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "the daemons run filtered, without set-up capabilities, and still serve, rotate and reload"
