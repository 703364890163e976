#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_tls_echo: tls mode end to end between namespaces A (client daemon) and B (server
# daemon, echo.svc with security = tls, demo PKI from tools/gen-certs.sh): the first
# call makes a full handshake and every later one goes as 0-RTT (counters on both
# sides), echoes of 4 B, 1464 B, 3000 B, 20 KiB and 64 KiB verify byte for byte, and a
# capture of B's interface (tests/integration/sniff.c) never shows a request's marker
# text while every R2P2 packet of the tls port carries the 0x20 flag; a plain service
# next to it, sent the same marker, shows it (the capture would see a leak). Then the
# same over IPv6.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PLAIN_PORT=8001
MARKER="R2P2-SECRET-MARKER-$IT_ID-"

it_tls_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
IFB=r2b$IT_ID

# check_flags FILE PORT WANT(set|clear): every R2P2 packet from or to PORT in the capture FILE
# has the tls flag 0x20 set (or clear). Prints the number of packets checked.
check_flags() {
	awk -v port="$2" -v want="$3" '
		function hexv(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++)
			v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
		$1 ~ (":" port "$") || $2 ~ (":" port "$") {
			n++
			if (substr($3, 1, 4) != "cc08") { bad++; next }
			f = hexv(substr($3, 7, 2))
			tls = int(f / 32) % 2
			if ((want == "set") != (tls == 1)) bad++
		}
		END { print n + 0; exit bad ? 1 : 0 }' "$1"
}

# run_family FAM LISTEN_A LISTEN_B SERVER_B SERVER_B_PLAIN: one pass over IPv4 or IPv6.
run_family() {
	local fam=$1 la=$2 lb=$3 srv=$4 srv_plain=$5 s full0 e0 ca0 cr0 cap n hex
	{
		it_conf_daemon_tls b "$lb" "$IT_TLS/stek.keys"
		it_conf_serve_tls echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
		it_conf_serve plain.svc "$PLAIN_PORT"
	} >"$IT_TMP/b$fam.conf"
	{
		it_conf_daemon a "$la"
		it_conf_call_tls echo.svc 2000 3 "$IT_TLS/ca.crt" "$srv"
		it_conf_call plain.svc 2000 3 "$srv_plain"
	} >"$IT_TMP/a$fam.conf"
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b$fam.conf"
	it_start_daemon a "$IT_NS_A" "$IT_TMP/a$fam.conf"
	it_start_echo_on b "$IT_NS_B" -n echo.svc -c
	local echo_tls=$IT_LAST_PID
	it_start_echo_on b "$IT_NS_B" -n plain.svc
	local echo_plain=$IT_LAST_PID

	it_log "--- IPv$fam: (b) the first call makes a full handshake, the next ones go as 0-RTT"
	it_check "IPv$fam first tls call (4 B) verified" it_client -S 4 -c 1 -t 5000
	full0=$(it_tls_get b server full_handshakes)
	it_check "B made a full handshake for the first call (full_handshakes $full0 >= 1)" \
		test "$full0" -ge 1
	e0=$(it_tls_get b server early_accepted)
	ca0=$(it_tls_get a client early_accepted)
	cr0=$(it_tls_get a client resumed)
	it_check "IPv$fam 50 sequential tls calls (4 B) verified" it_client -S 4 -c 50 -t 5000
	s=$(it_tls_status b)
	n=$(($(it_tls_counter "$s" server early_accepted) - e0))
	it_check "B accepted early data for ~50 calls (+$n >= 45)" test "$n" -ge 45
	it_check "B made no more full handshakes (still $full0)" \
		test "$(it_tls_counter "$s" server full_handshakes)" -eq "$full0"
	s=$(it_tls_status a)
	n=$(($(it_tls_counter "$s" client early_accepted) - ca0))
	it_check "A's client saw its early data accepted (+$n >= 45)" test "$n" -ge 45
	n=$(($(it_tls_counter "$s" client resumed) - cr0))
	it_check "A's client resumed sessions (+$n >= 45)" test "$n" -ge 45
	it_check "A's client got tickets (tickets_received >= 51)" \
		test "$(it_tls_counter "$s" client tickets_received)" -ge 51
	it_check "A's client had no verify failures" \
		test "$(it_tls_counter "$s" client verify_failures)" -eq 0
	it_check "echo server served 51 requests so far" test "$(it_echo_served "$echo_tls")" -eq 51

	if [ "$fam" = 4 ]; then
		it_log "--- IPv$fam: (a) echo through tls at 4 B, 1464 B, 3000 B, 20 KiB, 64 KiB"
		it_check "tls echo 4 B x 20" it_client -S 4 -c 20 -t 5000
		it_check "tls echo 1464 B x 20" it_client -S 1464 -c 20 -t 5000
		it_check "tls echo 3000 B x 20" it_client -S 3000 -c 20 -t 5000
		it_check "tls echo 20 KiB x 10 (above the 14 KiB early data limit: 1-RTT)" \
			it_client -S 20480 -c 10 -t 5000
		it_check "tls echo 64 KiB x 5" it_client -S 65536 -c 5 -t 5000
	fi

	it_log "--- IPv$fam: (c) no plaintext on the wire: capture on B's interface $IFB"
	cap=$IT_TMP/sniff-$fam.txt
	it_sniff_start "$IT_NS_B" "$cap" 30000 -i "$IFB"
	local sniff_pid=$IT_LAST_PID
	it_check "tls echo of the marker text, 64 B x 5 (0-RTT)" \
		it_client -P "$MARKER" -S 64 -c 5 -t 5000
	it_check "tls echo of the marker text, 3000 B x 3 (multi-packet, 0-RTT)" \
		it_client -P "$MARKER" -S 3000 -c 3 -t 5000
	it_check "tls echo of the marker text, 20 KiB x 2 (1-RTT)" \
		it_client -P "$MARKER" -S 20480 -c 2 -t 5000
	it_check "plain echo of the marker text, 64 B x 2 (control)" \
		it_client -n plain.svc -P "$MARKER" -S 64 -c 2 -t 5000
	sleep 0.2
	it_sniff_stop "$sniff_pid"
	hex=$(it_hex "$MARKER")
	n=$(check_flags "$cap" "$IT_ECHO_PORT" set) ||
		it_fail "an R2P2 packet of the tls port $IT_ECHO_PORT lacks the 0x20 flag (see $cap)"
	it_check "the capture holds tls packets of port $IT_ECHO_PORT ($n)" test "$n" -ge 20
	it_log "  ok: all $n R2P2 packets from or to tls port $IT_ECHO_PORT carry flag 0x20"
	n=$(check_flags "$cap" "$PLAIN_PORT" clear) ||
		it_fail "a packet of the plain port $PLAIN_PORT carries tls flags"
	it_check "the capture sees the marker in the plain control ($n packets of port $PLAIN_PORT)" \
		test "$(grep ":$PLAIN_PORT " "$cap" | grep -c "$hex")" -ge 2
	it_check "the marker never appears in a tls datagram" \
		test "$(grep -v ":$PLAIN_PORT " "$cap" | grep -c "$hex")" -eq 0

	it_kill_pid "$echo_tls"
	it_kill_pid "$echo_plain"
	it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
	it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
}

run_family 4 "$IT_A4" "$IT_B4" "$IT_B4:$IT_ECHO_PORT" "$IT_B4:$PLAIN_PORT"
run_family 6 "$IT_A6" "$IT_B6" "[$IT_B6]:$IT_ECHO_PORT" "[$IT_B6]:$PLAIN_PORT"
it_pass "full handshake then 0-RTT, 4 B..64 KiB verified, no plaintext on the wire (IPv4, IPv6)"
