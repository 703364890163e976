#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_vectors: daemon B answers upstream R2P2's test vectors byte for byte.
#  - "ping" request (rid 0x1234)  -> exactly the upstream response bytes;
#  - first packet of a 3000-byte request -> exactly the upstream ACK; the rest
#    sent to the ACK's source -> a 3-packet response with upstream headers whose
#    payload is the request.
# Only daemon B runs: the raw socket in namespace A plays upstream's client.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# pattern FROM LEN: bytes FROM..FROM+LEN-1 of the test payload (byte i = 7i+3 mod 256), as hex.
pattern() {
	awk -v from="$1" -v len="$2" \
		'BEGIN { for (i = from; i < from + len; i++) printf "%s%02x", (i > from ? " " : ""), (i * 7 + 3) % 256 }'
}

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

it_log "checking: single-packet \"ping\" request, rid 0x1234"
req="cc 08 00 c0 12 34 00 01 70 69 6e 67"
want="cc 08 11 c0 12 34 00 01 70 69 6e 67"
got=$(it_in "$IT_NS_A" timeout 10 "$rawsend" -r 1 -w 2000 "$dst" "$req") || true
it_log "    sent: $req"
it_log "    want: $want"
it_log "    got:  $got"
it_check "the response is upstream's, byte for byte" test "$got" = "$want"

it_log "checking: 3000-byte request, rid 0x0042 (14 + 1464 + 1464 + 58 payload bytes)"
p0="cc 08 00 80 00 42 00 04 $(pattern 0 14)"
p1="cc 08 00 00 00 42 00 01 $(pattern 14 1464)"
p2="cc 08 00 00 00 42 00 02 $(pattern 1478 1464)"
p3="cc 08 00 40 00 42 00 03 $(pattern 2942 58)"
out=$IT_TMP/multi.txt
rc=0
it_in "$IT_NS_A" timeout 10 "$rawsend" -v -A -r 3 -w 2000 "$dst" "$p0" "$p1" "$p2" "$p3" \
	>"$out" 2>"$IT_TMP/rawsend.log" || rc=$?
sed 's/^/    /' "$IT_TMP/rawsend.log"
mapfile -t lines <"$out"
ack_want="cc 08 31 c0 00 42 00 01 41 43 4b"
it_log "    first packet: ${p0:0:71}"
it_log "    want ACK: $ack_want"
it_log "    got:      ${lines[0]:-<nothing>}"
it_check "the ACK is upstream's, byte for byte" test "${lines[0]:-}" = "$ack_want"
it_check "three response packets arrived (rawsend exit $rc, ${#lines[@]} lines)" \
	test "$rc" -eq 0 -a "${#lines[@]}" -eq 4
hdr_want=("cc 08 11 80 00 42 00 03" "cc 08 11 00 00 42 00 01" "cc 08 11 40 00 42 00 02")
body=""
for i in 0 1 2; do
	line=${lines[$((i + 1))]}
	it_log "    response packet $i header: ${line:0:23} ($(((${#line} + 1) / 3)) bytes)"
	it_check "response packet $i header is ${hdr_want[$i]}" test "${line:0:23}" = "${hdr_want[$i]}"
	body+="${body:+ }${line:24}"
done
it_check "the response payload is the 3000-byte request" test "$body" = "$(pattern 0 3000)"
it_check "daemon B still running" it_alive "${IT_DAEMON_PID[b]}"
it_pass "upstream test vectors answered byte for byte"
