#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_bpftool: the XDP program attached by daemon/net/xdp.c (through tests/integration/xdp_attach)
# to the veth in namespace B is visible to bpftool under /sys/fs/bpf/r2p2/<ifname>/ with
# counters by field name; R2P2 packets from A move no_socket (no AF_XDP socket is bound),
# malformed ones move dropped_malformed, other ports passed_not_r2p2; SIGTERM detaches and
# unpins; a kill -9 leftover is replaced cleanly by the next run, in the same mode
# (atomic replace) and in the other mode (detach, then attach); a second loader on the
# interface is refused while the first runs.
#
# Runs in a private mount namespace: xdp_open mounts bpffs on /sys/fs/bpf when it is not
# one, and that mount must not outlive the test. The loader enters only B's network
# namespace (nsenter --net), so its pins and bpftool share this mount namespace.
set -euo pipefail

# shellcheck source=SCRIPTDIR/private_mnt.sh
source "$(dirname "${BASH_SOURCE[0]}")/private_mnt.sh"

# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=8000
OTHER_PORT=9000
PING="cc 08 00 c0 12 34 00 01 70 69 6e 67"

it_init
command -v nsenter >/dev/null || it_skip "nsenter (util-linux) is not installed"
BPFTOOL=$(command -v bpftool || { [ -x /usr/sbin/bpftool ] && echo /usr/sbin/bpftool; } || true)
[ -n "$BPFTOOL" ] || it_skip "bpftool is not installed (apt-get install bpftool)"
it_setup_pair
loader=$(it_bin xdp_attach)
rawsend=$(it_bin r2p2-rawsend)
IFB=r2b$IT_ID
PIN=/sys/fs/bpf/r2p2/$IFB
LOADER_PID=
# If the test dies half-way, its pins go too (they keep program and maps alive on a shared bpffs).
on_exit() {
	local rc=$?
	set +e
	trap - ERR
	rm -rf -- "$PIN"
	rmdir /sys/fs/bpf/r2p2 2>/dev/null
	(exit "$rc")
	it_on_exit
}
trap on_exit EXIT

# start_loader MODE: xdp_attach on B's veth, serving $PORT; waits (5 s) for "attached".
start_loader() {
	local mode=$1 log i
	log="$IT_TMP/xdp_attach-${#IT_PIDS[@]}.log"
	nsenter --net="/run/netns/$IT_NS_B" "$loader" -m "$mode" -s 1 "$IFB" "$PORT" >"$log" 2>&1 &
	LOADER_PID=$!
	LOADER_LOG=$log
	IT_PIDS+=("$LOADER_PID")
	for ((i = 0; i < 100; i++)); do
		grep -qs '^attached ' "$log" && break
		it_alive "$LOADER_PID" || it_fail "xdp_attach ($mode) exited: $(cat "$log")"
		sleep 0.05
	done
	grep -qs '^attached ' "$log" || it_fail "xdp_attach ($mode) not attached within 5 s"
	it_log "xdp_attach ($mode) running for $IFB in $IT_NS_B (pid $LOADER_PID): $(head -n 1 "$log")"
}

# stat FIELD: FIELD of r2p2_stats summed over CPUs, as bpftool reads the pinned map.
stat() {
	local out
	out=$("$BPFTOOL" -j map dump pinned "$PIN/r2p2_stats")
	grep -o "\"$1\":[0-9]*" <<<"$out" | awk -F: '{ s += $2 } END { print s + 0 }'
}

# xdp_prog_id: the id of the XDP program on B's veth ("" when none), from ip link.
xdp_prog_id() {
	local out
	out=$(it_in "$IT_NS_B" ip -d link show dev "$IFB" 2>/dev/null)
	grep -o 'prog/xdp[a-z]* id [0-9]*' <<<"$out" | awk 'NR == 1 { print $3 }' || true
}

# xdp_mode_is WORD: the first line of `ip link show` says "mtu N WORD" (xdp, xdpgeneric, xdpmulti).
xdp_mode_is() {
	local out
	out=$(it_in "$IT_NS_B" ip link show dev "$IFB" 2>/dev/null)
	grep -qE "mtu [0-9]+ $1 " <<<"${out%%$'\n'*}"
}

# kill_loader: kill -9 the loader, as a crash would.
kill_loader() {
	{
		kill -KILL "$LOADER_PID"
		wait "$LOADER_PID"
	} 2>/dev/null || true
}

send() { it_in "$IT_NS_A" timeout 10 "$rawsend" "$@" >/dev/null; }

# wait_stat FIELD N: poll (2 s) until FIELD >= N.
wait_stat() { it_wait_for 2 "$1 to reach $2" eval "[ \"\$(stat $1)\" -ge $2 ]"; }

# ---- run 1: native mode, bpftool sees everything, SIGTERM cleans up -------------------
start_loader native
# (Outputs are captured before grep -q: with pipefail, grep -q closing the pipe early would
# fail the pipeline with the writer's SIGPIPE.)
shown=$("$BPFTOOL" prog show pinned "$PIN/r2p2_xdp")
it_log "    $(head -n 1 <<<"$shown")"
it_check "program pinned and shown by bpftool prog show" grep -q 'xdp  *name r2p2_xdp' <<<"$shown"
dump=$("$BPFTOOL" map dump pinned "$PIN/r2p2_stats")
sed -n '1,16s/^/      /p' <<<"$dump"
for f in steered no_socket dropped_malformed passed_not_r2p2 passed_fragment passed_ipv6_ext \
	passed_runt; do
	it_check "r2p2_stats shows field $f by name" grep -q "\"$f\"" <<<"$dump"
done
ports=$("$BPFTOOL" -j map dump pinned "$PIN/r2p2_ports")
it_check "r2p2_ports holds port $PORT" grep -q "\"port\":$PORT," <<<"$ports"
for m in r2p2_qconf r2p2_xsks; do
	it_check "$m pinned" "$BPFTOOL" map show pinned "$PIN/$m"
done
id1=$(xdp_prog_id)
it_check "ip link shows a native XDP program on $IFB (id $id1)" xdp_mode_is xdp

ns0=$(stat no_socket) mal0=$(stat dropped_malformed) other0=$(stat passed_not_r2p2)
it_log "sending 5 R2P2 requests over IPv4, 3 over IPv6 to port $PORT (no AF_XDP socket bound)"
send -R 5 "$IT_B4:$PORT" "$PING"
send -R 3 "[$IT_B6]:$PORT" "$PING"
wait_stat no_socket $((ns0 + 8))
it_check "no_socket moved by exactly 8 ($(stat no_socket))" test "$(stat no_socket)" -eq $((ns0 + 8))
it_check "steered did not move" test "$(stat steered)" -eq 0

it_log "sending malformed R2P2 to port $PORT: bad magic, runt header, unknown type, bad header_size"
send "$IT_B4:$PORT" "cd 08 00 c0 00 10 00 01 41" "cc 08 00" "cc 08 70 c0 00 12 00 01 41" \
	"cc 09 00 c0 00 11 00 01 41 41"
wait_stat dropped_malformed $((mal0 + 4))
it_check "dropped_malformed moved by exactly 4" test "$(stat dropped_malformed)" -eq $((mal0 + 4))

it_log "sending 4 datagrams to port $OTHER_PORT (not served)"
send -R 4 "$IT_B4:$OTHER_PORT" "$PING"
wait_stat passed_not_r2p2 $((other0 + 4))
it_check "no_socket did not move for port $OTHER_PORT" test "$(stat no_socket)" -eq $((ns0 + 8))

# The loader's own sum (xdp_stats_sum) agrees with bpftool's.
want_ns=$(stat no_socket) want_mal=$(stat dropped_malformed)
kill -TERM "$LOADER_PID"
it_wait_exit "$LOADER_PID" 5 || it_fail "xdp_attach did not exit cleanly on SIGTERM"
it_check "xdp_stats_sum agrees with bpftool" \
	grep -q "no_socket $want_ns dropped_malformed $want_mal " "$LOADER_LOG"
it_check "after SIGTERM no XDP program on $IFB" test -z "$(xdp_prog_id)"
it_check "after SIGTERM the pins are gone" test ! -e "$PIN"
it_check "program $id1 is gone" eval "! \"$BPFTOOL\" prog show id \"$id1\" >/dev/null 2>&1"

# ---- run 2: kill -9 leaves the program and pins; run 3 replaces them (same mode) -------
start_loader native
id2=$(xdp_prog_id)
kill_loader
it_check "after kill -9 the program (id $id2) stays attached" test "$(xdp_prog_id)" = "$id2"
it_check "after kill -9 the pins stay" test -e "$PIN/r2p2_stats"
start_loader native
id3=$(xdp_prog_id)
it_check "the next run replaced the leftover (id $id2 -> $id3)" test -n "$id3" -a "$id3" != "$id2"
it_wait_for 3 "leftover program $id2 to be freed" \
	eval "! \"$BPFTOOL\" prog show id \"$id2\" >/dev/null 2>&1"
pinned=$("$BPFTOOL" prog show pinned "$PIN/r2p2_xdp" 2>&1 || true)
it_log "    pinned: $(head -n 1 <<<"$pinned")"
it_check "the pins are the new program's" grep -q "^$id3:" <<<"$pinned"
send -R 2 "$IT_B4:$PORT" "$PING"
wait_stat no_socket 2
second=$(nsenter --net="/run/netns/$IT_NS_B" "$loader" "$IFB" "$PORT" 2>&1) && \
	it_fail "a second xdp_attach on $IFB started while the first runs"
it_log "    second loader: $second"
it_check "a second live owner is refused" grep -q "in use by another running process" <<<"$second"
it_check "and the first one's program is untouched" test "$(xdp_prog_id)" = "$id3"
it_check "the new program counts (no_socket = 2 in fresh maps)" test "$(stat no_socket)" -eq 2

# ---- run 4: a native leftover replaced by a run in skb (generic) mode -------------------
kill_loader
start_loader skb
it_check "skb mode: ip link shows xdpgeneric only (the native leftover is gone)" \
	xdp_mode_is xdpgeneric
send -R 3 "$IT_B4:$PORT" "$PING"
wait_stat no_socket 3
kill -TERM "$LOADER_PID"
it_wait_exit "$LOADER_PID" 5 || it_fail "xdp_attach (skb) did not exit cleanly on SIGTERM"
it_check "after SIGTERM no XDP program on $IFB" test -z "$(xdp_prog_id)"
it_check "after SIGTERM the pins are gone" test ! -e "$PIN"

it_pass "bpftool sees program and counters; SIGTERM detaches; kill -9 leftovers replaced"
