#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_malformed: from a plain UDP socket in namespace A, daemon B's service port
# gets runts, bad magic, bad header sizes, unknown types, FEEDBACK and other
# messages a server never expects, packets whose p_order lies, and random
# garbage. The junk gets no answer, the daemon survives all of it, and an app
# in A still gets verified echoes through daemons A and B afterwards.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEED=${IT_MALFORMED_SEED:-$IT_ID}

# fill LEN: LEN payload bytes as hex
fill() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%s%02x", (i ? " " : ""), (i * 13 + 1) % 256 }'; }

it_init
it_setup_pair
{
	it_conf_daemon b "$IT_B4"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_echo -n echo.svc
rawsend=$(it_bin r2p2-rawsend)
dst=$IT_B4:$IT_ECHO_PORT

# send_expect_silence WHAT HEX...: send the datagrams, fail if anything answers within 300 ms.
send_expect_silence() {
	local what=$1 out
	shift
	out=$(it_in "$IT_NS_A" timeout 10 "$rawsend" -w 300 "$dst" "$@")
	if [ -n "$out" ]; then
		printf '%s\n' "$out" | sed 's/^/      reply: /'
		it_fail "$what: got an answer"
	fi
	it_log "  ok: $what: dropped silently (${#@} datagrams)"
}

# send_any WHAT HEX...: send, show whatever answers (a reply may be legitimate), must not crash B.
send_any() {
	local what=$1 out
	shift
	out=$(it_in "$IT_NS_A" timeout 10 "$rawsend" -w 300 "$dst" "$@")
	it_log "  sent: $what (${#@} datagrams), $(printf '%s' "$out" | grep -c . || true) replies"
	[ -z "$out" ] || printf '%s\n' "$out" | cut -c1-60 | sed 's/^/      reply: /'
	it_check "daemon B survived: $what" it_alive "${IT_DAEMON_PID[b]}"
}

it_log "checking: junk to $dst gets no answer"
send_expect_silence "empty datagram" "-"
send_expect_silence "runts (1, 2, 7 bytes)" "cc" "cc 08" "cc 08 00 c0 12 34 00"
send_expect_silence "bad magic" "cd 08 00 c0 00 10 00 01 41" "00 00 00 00 00 00 00 00" \
	"ff ff ff ff ff ff ff ff ff ff"
send_expect_silence "bad header_size (0, 9, 255)" "cc 00 00 c0 00 11 00 01 41" \
	"cc 09 00 c0 00 11 00 01 41 41" "cc ff 00 c0 00 11 00 01 41"
send_expect_silence "unknown types 5, 6, 7, 8, 15" "cc 08 50 c0 00 12 00 01 41" \
	"cc 08 60 c0 00 12 00 01 41" "cc 08 70 c0 00 12 00 01 41" "cc 08 80 c0 00 12 00 01 41" \
	"cc 08 f0 c0 00 12 00 01 41"
send_expect_silence "FEEDBACK to a service port" "cc 08 20 c0 00 30 00 01 00 30 1f 40 0a 4d 00 01" \
	"cc 08 20 c0 00 31 00 01" "cc 08 20 c0 00 32 00 01 00"
send_expect_silence "RESPONSE, ACK and DROP to a service port" "cc 08 11 c0 00 33 00 01 41" \
	"cc 08 31 c0 00 34 00 01 41 43 4b" "cc 08 41 c0 00 35 00 01 44 52 4f 50"
send_expect_silence "non-first packets of requests never started" \
	"cc 08 00 00 00 36 00 01 $(fill 100)" "cc 08 00 40 00 37 ff ff $(fill 10)" \
	"cc 08 00 40 00 38 00 00 $(fill 10)"

it_log "checking: lying p_order and odd sizes do not hurt daemon B (answers are allowed)"
send_any "F|L with p_order 5 and 0" "cc 08 00 c0 00 20 00 05 41" "cc 08 00 c0 00 21 00 00 41"
send_any "F without L claiming 0 and 1 packets" "cc 08 00 80 00 22 00 00 $(fill 14)" \
	"cc 08 00 80 00 23 00 01 $(fill 14)"
send_any "F claiming 65535 packets, never continued" "cc 08 00 80 00 24 ff ff $(fill 14)"
send_any "continuation index past the count, index 0, duplicate first" \
	"cc 08 00 80 00 25 00 02 $(fill 14)" "cc 08 00 40 00 25 00 07 $(fill 10)" \
	"cc 08 00 40 00 25 00 00 $(fill 10)" "cc 08 00 80 00 25 00 02 $(fill 14)"
send_any "oversized single packet (3000 B payload)" "cc 08 00 c0 00 26 00 01 $(fill 3000)"
send_any "first packet longer than 14 B payload" "cc 08 00 80 00 27 00 02 $(fill 1000)"

mapfile -t garbage < <(awk -v seed="$SEED" 'BEGIN {
	srand(seed)
	for (k = 0; k < 300; k++) {
		n = int(rand() * 80); s = "cc 08"
		for (i = 0; i < n; i++) s = s sprintf(" %02x", int(rand() * 256))
		print s
	}
}')
send_any "300 random datagrams after cc 08 (seed $SEED)" "${garbage[@]}"

it_log "checking: daemon B still serves after all of it"
it_check "r2p2ctl status answers" it_ctl b status
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 2000 3 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_check "4 B echo x 20 through daemons A and B" it_client -S 4 -c 20 -t 3000
it_check "3000 B echo x 10 through daemons A and B" it_client -S 3000 -c 10 -t 3000
got=$(it_in "$IT_NS_A" timeout 10 "$rawsend" -r 1 -w 2000 "$dst" "cc 08 00 c0 12 34 00 01 70 69 6e 67")
it_check "the ping vector still gets its exact answer" test "$got" = "cc 08 11 c0 12 34 00 01 70 69 6e 67"
it_pass "malformed input dropped, daemon B unharmed"
