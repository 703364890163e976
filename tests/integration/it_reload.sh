#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_reload: `r2p2ctl reload` applies a config change completely, or refuses it whole, and
# says which (run over the udp backend, and as it_reload_xdp over XDP steering + AF_XDP).
# Daemon B serves echo.svc (plain, its echo server answering after 300 ms); daemon A calls it.
# Neither starts with a tls or sealed [serve] or [call].
#  1. B's config gains [serve plain2.svc] (plain), [serve tls.svc] (tls) and [serve
#     sealed.svc] (sealed); A's the three [call]s, tls and sealed among them. `r2p2ctl
#     reload` of each exits 0 and names every service and call added, while a call to
#     echo.svc is in flight (it completes). Calls from A to each new service run at B's
#     echo servers (counted there, r2p2-echo-server -c); with xdp, bpftool shows the three
#     new ports in the r2p2_ports map of the program attached to B's interface and the
#     requests arrive on B's AF_XDP sockets (no silent fallback to kernel UDP). B counts
#     no bad_header (encrypted packets are accepted after the first tls [serve]).
#  2. [serve plain2.svc] and A's [call plain2.svc] are removed, sealed.svc moves to another
#     port (a [serve] and a [call] changed): the reloads name each change, no socket is left
#     on the old ports, (xdp) r2p2_ports follows, calls to plain2.svc fail, sealed.svc runs
#     on its new port once its app registered again (the reload says it must), tls.svc
#     still runs.
#  3. workers = 3 (a key only a restart applies): `r2p2ctl reload` exits 1 naming "workers"
#     and "needs a restart"; a [serve] added in the same file is not half-applied; B still
#     runs 2 workers and keeps serving all it served.
#     tls.svc's certificate and key files are replaced in place by ones from another CA:
#     B's reload says tls.svc took a new certificate; once A's [call] trusts only the new
#     CA, its calls to tls.svc work (B serves the new certificate), sealed.svc's still do.
#     (xdp) A, a client whose xdp backend had nothing to steer at start, refuses a first
#     [serve]: no XDP program runs there, so serving it needs a restart.
#  4. An unknown key: `r2p2ctl reload` exits 1 with file:line of the key; nothing changes.
#  5. SIGHUP still reloads and logs the same lines.
# shellcheck disable=SC2317 # functions here are run through it_wait_for
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

PLAIN2_PORT=8001
TLS_PORT=8002
SEALED_PORT=8003
SEALED_PORT2=8005
BACKEND=${R2P2_IT_BACKEND:-udp}
IFB=r2b$IT_ID

it_sealed_init
if [ "$BACKEND" = xdp ]; then
	BPFTOOL=$(command -v bpftool || { [ -x /usr/sbin/bpftool ] && echo /usr/sbin/bpftool; } || true)
	[ -n "$BPFTOOL" ] || it_skip "bpftool is not installed (apt-get install bpftool)"
fi
it_setup_pair
it_tls_certs "$IT_TLS" tls.svc sealed.svc

# reload SIDE: `r2p2ctl reload` of daemon SIDE; stdout and stderr in reload.out/err, the exit
# status returned.
reload() {
	local rc=0
	it_ctl "$1" reload >"$IT_TMP/reload.out" 2>"$IT_TMP/reload.err" || rc=$?
	sed 's/^/    reload> /' "$IT_TMP/reload.out" "$IT_TMP/reload.err"
	return "$rc"
}
said() { grep -qF -- "$1" "$IT_TMP/reload.out"; }
said_err() { grep -qF -- "$1" "$IT_TMP/reload.err"; }
fails() { ! "$@" >/dev/null 2>&1; }
count_log() { grep -c -- "$1" "$IT_TMP/r2p2d-b.log" || true; }
logged_more() { [ "$(count_log "$1")" -gt "$2" ]; }

# port_socks PORT: how many UDP sockets are bound to PORT in namespace B.
port_socks() { ip netns exec "$IT_NS_B" ss -Huln "sport = :$1" | wc -l; }

# xsk_rx: packets daemon B's workers took from their AF_XDP sockets (status, summed).
xsk_rx() {
	sleep 0.25 # the snapshot is refreshed every 100 ms
	it_ctl b status | awk '$1 == "af_xdp:" { for (i = 2; i < NF; i++) if ($i == "rx") s += $(i + 1) }
		END { print s + 0 }'
}

# steered_ports: the ports in r2p2_ports of the XDP program attached to B's veth, sorted.
steered_ports() {
	local prog map
	prog=$(ip netns exec "$IT_NS_B" "$BPFTOOL" -j net show dev "$IFB" |
		grep -o '"id": *[0-9]*' | head -n 1 | grep -o '[0-9]*$')
	[ -n "$prog" ] || return 1
	for map in $("$BPFTOOL" -j prog show id "$prog" | grep -o '"map_ids": *\[[0-9, ]*\]' |
		grep -o '[0-9][0-9]*'); do
		if "$BPFTOOL" -j map show id "$map" | grep -q '"name": *"r2p2_ports"'; then
			"$BPFTOOL" -j map dump id "$map" | grep -o '"port": *[0-9]*' |
				grep -o '[0-9]*$' | sort -n | tr '\n' ' '
			return 0
		fi
	done
	return 1
}

{
	it_conf_daemon_tls b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b-start.conf"
cp "$IT_TMP/b-start.conf" "$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 3000 2 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -d 300000
it_check "echo.svc answers before the reloads" it_client -S 16 -c 2 -t 2000
if [ "$BACKEND" = xdp ]; then
	it_check "B runs the xdp backend" grep -q 'backend xdp on' "$IT_TMP/r2p2d-b.log"
	it_log "  r2p2_ports at start: $(steered_ports)"
fi

it_log "--- 1. plain, tls and sealed [serve]s added on B, their [call]s on A, during a call"
{
	it_conf_serve plain2.svc "$PLAIN2_PORT"
	it_conf_serve_tls tls.svc "$TLS_PORT" "$IT_TLS/tls.svc.crt" "$IT_TLS/tls.svc.key"
	it_conf_serve_sealed sealed.svc "$SEALED_PORT" "$IT_TLS/sealed.svc.crt" "$IT_TLS/sealed.svc.key"
} >>"$IT_TMP/b.conf"
{
	it_conf_call plain2.svc 1000 2 "$IT_B4:$PLAIN2_PORT"
	it_conf_call_tls tls.svc 2000 2 "$IT_TLS/ca.crt" "$IT_B4:$TLS_PORT"
	it_conf_call_sealed sealed.svc 2000 2 "$IT_TLS/ca.crt" "$IT_B4:$SEALED_PORT"
} >>"$IT_TMP/a.conf"
cp "$IT_TMP/b.conf" "$IT_TMP/b-full.conf"
# a call in flight across both reloads (the echo server answers after 300 ms each)
it_bg "$IT_NS_A" "$IT_TMP/inflight.log" "$(it_bin r2p2-echo-client)" -s "$(it_sock a)" -S 16 -c 3 -t 3000
inflight=$IT_LAST_PID
sleep 0.1
it_check "r2p2ctl reload of B exits 0" reload b
it_expect "it names [serve plain2.svc] added" said '[serve plain2.svc] added (port 8001, plain)'
it_expect "it names [serve tls.svc] added" said '[serve tls.svc] added (port 8002, tls)'
it_expect "it names [serve sealed.svc] added" said '[serve sealed.svc] added (port 8003, sealed)'
it_expect "it ends with reload done" said 'reload done: 4 services served, 0 called; 3 changes'
it_check "r2p2ctl reload of A exits 0" reload a
it_expect "it names [call tls.svc] added" said '[call tls.svc] added (tls)'
it_expect "it names [call sealed.svc] added" said '[call sealed.svc] added (sealed)'
it_expect "it names [call plain2.svc] added" said '[call plain2.svc] added (plain)'
rc=0
it_wait_exit "$inflight" 10 || rc=$?
it_expect "the echo.svc calls in flight across both reloads completed (exit $rc)" test "$rc" -eq 0
it_start_echo_on b "$IT_NS_B" -n plain2.svc -c
echo_plain2=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n tls.svc -c
echo_tls=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n sealed.svc -c
echo_sealed=$IT_LAST_PID
[ "$BACKEND" != xdp ] || rx0=$(xsk_rx)
it_expect "plain2.svc answers 5 calls from A" it_client -n plain2.svc -S 64 -c 5 -t 2000
if [ "$BACKEND" = xdp ]; then
	rx1=$(xsk_rx)
	it_expect "plain2.svc's requests came through AF_XDP, not kernel UDP (rx $rx0 -> $rx1)" \
		test "$rx1" -ge $((rx0 + 5))
fi
it_expect "tls.svc answers 5 calls from A" it_client -n tls.svc -S 64 -c 5 -t 2000
it_expect "sealed.svc answers 5 calls from A" it_client -n sealed.svc -S 64 -c 5 -t 2000
it_expect "plain2.svc's app ran 5 requests" test "$(it_echo_served "$echo_plain2")" -eq 5
it_expect "tls.svc's app ran 5 requests" test "$(it_echo_served "$echo_tls")" -eq 5
it_expect "sealed.svc's app ran 5 requests" test "$(it_echo_served "$echo_sealed")" -eq 5
s=$(it_tls_status b)
it_expect "B counted no bad_header (encrypted packets accepted after the reload)" \
	test "$(it_drops "$s" bad_header)" -eq 0
if [ "$BACKEND" = xdp ]; then
	ports=$(steered_ports)
	it_log "  r2p2_ports: $ports"
	it_expect "bpftool shows 8000 8001 8002 8003 in r2p2_ports" test "$ports" = "8000 8001 8002 8003 "
fi

it_log "--- 2. [serve plain2.svc] and [call plain2.svc] removed, sealed.svc moved to port $SEALED_PORT2"
{
	cat "$IT_TMP/b-start.conf"
	it_conf_serve_tls tls.svc "$TLS_PORT" "$IT_TLS/tls.svc.crt" "$IT_TLS/tls.svc.key"
	it_conf_serve_sealed sealed.svc "$SEALED_PORT2" "$IT_TLS/sealed.svc.crt" "$IT_TLS/sealed.svc.key"
} >"$IT_TMP/b.conf"
cp "$IT_TMP/b.conf" "$IT_TMP/b-good.conf"
cp "$IT_TMP/a.conf" "$IT_TMP/a-full.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 3000 2 "$IT_B4:$IT_ECHO_PORT"
	it_conf_call_tls tls.svc 2000 2 "$IT_TLS/ca.crt" "$IT_B4:$TLS_PORT"
	it_conf_call_sealed sealed.svc 2000 2 "$IT_TLS/ca.crt" "$IT_B4:$SEALED_PORT2"
} >"$IT_TMP/a.conf"
it_check "r2p2ctl reload of B exits 0" reload b
it_expect "it names [serve plain2.svc] removed" said '[serve plain2.svc] removed (port 8001)'
it_expect "it names [serve sealed.svc] changed" said "[serve sealed.svc] changed (port $SEALED_PORT2, sealed)"
it_check "r2p2ctl reload of A exits 0" reload a
it_expect "it names [call plain2.svc] removed" said '[call plain2.svc] removed'
it_expect "it names [call sealed.svc] changed" said '[call sealed.svc] changed (sealed)'
it_wait_for 3 "port $PLAIN2_PORT to be closed on B" it_equals 0 port_socks "$PLAIN2_PORT"
it_expect "port $SEALED_PORT is closed on B" test "$(port_socks $SEALED_PORT)" -eq 0
it_expect "a call to plain2.svc now fails" fails it_client -n plain2.svc -c 1 -t 300
it_expect "tls.svc still answers" it_client -n tls.svc -c 2 -t 2000
it_expect "the reload said sealed.svc's apps must register again" \
	grep -qF 'apps serving it must register again' "$IT_TMP/r2p2d-b.log"
it_kill_pid "$echo_sealed"
it_start_echo_on b "$IT_NS_B" -n sealed.svc -c
echo_sealed=$IT_LAST_PID
it_expect "sealed.svc answers on port $SEALED_PORT2" it_client -n sealed.svc -c 2 -t 2000
it_expect "sealed.svc's app ran them (2)" test "$(it_echo_served "$echo_sealed")" -eq 2
if [ "$BACKEND" = xdp ]; then
	ports=$(steered_ports)
	it_expect "bpftool shows 8000 8002 $SEALED_PORT2 in r2p2_ports ($ports)" \
		test "$ports" = "8000 8002 $SEALED_PORT2 "
fi

it_log "--- 3. workers = 3: needs a restart, refused whole"
sed -i 's/^workers = 2$/workers = 3/' "$IT_TMP/b.conf"
rc=0
reload b || rc=$?
it_expect "r2p2ctl reload exits 1 ($rc)" test "$rc" -eq 1
it_expect "it names workers and 'needs a restart'" said_err 'reload: workers = 3 needs a restart (running: 2)'
it_expect "it says the running configuration is kept" said_err 'keeping the running configuration'
it_expect "late.svc was not half-applied (no socket on 8004)" test "$(port_socks 8004)" -eq 0
s=$(it_ctl b status)
it_expect "B still runs 2 workers" grep -q ' workers 2 ' <<<"$s"
it_expect "tls.svc still answers" it_client -n tls.svc -c 2 -t 2000
it_expect "sealed.svc still answers" it_client -n sealed.svc -c 2 -t 2000

if [ "$BACKEND" = xdp ]; then
	it_log "--- 3b. a first [serve] on A, whose xdp backend had nothing to steer at start"
	cp "$IT_TMP/a.conf" "$IT_TMP/a-saved.conf"
	it_conf_serve first.svc 8006 >>"$IT_TMP/a.conf"
	rc=0
	reload a || rc=$?
	it_expect "r2p2ctl reload of A exits 1 ($rc)" test "$rc" -eq 1
	it_expect "it says no XDP program runs and serving needs a restart" \
		said_err 'found nothing to steer at start, so no XDP program runs; serving needs a restart'
	it_expect "nothing listens on 8006 in A" \
		test "$(ip netns exec "$IT_NS_A" ss -Huln 'sport = :8006' | wc -l)" -eq 0
	cp "$IT_TMP/a-saved.conf" "$IT_TMP/a.conf"
fi

it_log "--- 3c. tls.svc's certificate and key renewed in place, from another CA"
it_tls_certs "$IT_TMP/tls2" tls.svc
cp "$IT_TMP/b-good.conf" "$IT_TMP/b.conf"
cp "$IT_TMP/tls2/tls.svc.crt" "$IT_TLS/tls.svc.crt"
cp "$IT_TMP/tls2/tls.svc.key" "$IT_TLS/tls.svc.key"
it_check "r2p2ctl reload of B exits 0" reload b
it_expect "it says tls.svc took a new certificate" \
	said "[serve tls.svc] new certificate, key or early_data (port $TLS_PORT)"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 3000 2 "$IT_B4:$IT_ECHO_PORT"
	it_conf_call_tls tls.svc 2000 2 "$IT_TMP/tls2/ca.crt" "$IT_B4:$TLS_PORT"
	it_conf_call_sealed sealed.svc 2000 2 "$IT_TLS/ca.crt" "$IT_B4:$SEALED_PORT2"
} >"$IT_TMP/a.conf"
it_check "r2p2ctl reload of A exits 0" reload a
it_expect "it names [call tls.svc] changed" said '[call tls.svc] changed (tls)'
it_expect "tls.svc answers A, which now trusts only the new CA (B serves the new certificate)" \
	it_client -n tls.svc -c 2 -t 2000
it_expect "sealed.svc still answers" it_client -n sealed.svc -c 2 -t 2000

it_log "--- 4. an unknown key: refused with file:line"
cp "$IT_TMP/b-good.conf" "$IT_TMP/b.conf"
printf 'bogus_key = 1\n' >>"$IT_TMP/b.conf"
bad_line=$(grep -n '^bogus_key' "$IT_TMP/b.conf" | cut -d: -f1)
rc=0
reload b || rc=$?
it_expect "r2p2ctl reload exits 1 ($rc)" test "$rc" -eq 1
it_expect "it names $IT_TMP/b.conf:$bad_line and the key" \
	said_err "$IT_TMP/b.conf:$bad_line: [serve sealed.svc] bogus_key: unknown key"
it_expect "tls.svc still answers" it_client -n tls.svc -c 2 -t 2000

it_log "--- 5. SIGHUP reloads as r2p2ctl does"
cp "$IT_TMP/b-full.conf" "$IT_TMP/b.conf"
cp "$IT_TMP/a-full.conf" "$IT_TMP/a.conf"
kill -HUP "${IT_DAEMON_PID[a]}"
added='reload: \[serve plain2.svc\] added'
n0=$(count_log "$added")
kill -HUP "${IT_DAEMON_PID[b]}"
it_wait_for 5 "B to log the SIGHUP reload" logged_more "$added" "$n0"
it_expect "plain2.svc answers again" it_client -n plain2.svc -c 2 -t 2000
if [ "$BACKEND" = xdp ]; then
	ports=$(steered_ports)
	it_expect "bpftool shows 8001 back in r2p2_ports ($ports)" test "$ports" = "8000 8001 8002 8003 "
fi
it_expect_done
it_pass "reload applies services and calls of every mode live, or refuses and says why"
