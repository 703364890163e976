# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Helpers of the sealed-mode integration tests (tests/integration/it_sealed_*.sh), on top of
# lib.sh and its tls helpers. Source it after lib.sh.
#
# Wire facts they rely on (docs/PROTOCOL.md, "sealed mode"): a sealed REQUEST has flag 0x10
# (single packet: header cc 08 0P d0 RR RR 00 01), payload = version 2 (1) | token (72: key id
# 4 | nonce 12 | ciphertext 40 | tag 16) | N (12) | timestamp (8, be64 unix ms) | binding
# (18: the server's address, IPv4 as ::ffff:a.b.c.d, and port) | ciphertext | tag (16); a response is version | N (copied) | R | ciphertext | tag; a refusal is the 3-byte
# REJECT 02 ff REASON (1 malformed, 2 unknown_key, 3 bad_token, 4 wrong_service, 5 expired,
# 6 stale, 7 replay, 8 full, 9 bad_aead, 10 internal, 11 wrong_server, 12 restarted) in a
# RESPONSE with flag 0x10.

# Offsets, in bytes from the start of the UDP payload (8-byte R2P2 header first).
# shellcheck disable=SC2034 # used by the it_sealed_*.sh scripts
IT_SEALED_HDR=8
IT_SEALED_TOKEN=$((IT_SEALED_HDR + 1))      # 9: key id (4), then the token nonce (12) ...
IT_SEALED_NONCE=$((IT_SEALED_TOKEN + 72))   # 81: N (12)
IT_SEALED_TS=$((IT_SEALED_NONCE + 12))      # 93: timestamp (8)
IT_SEALED_BIND=$((IT_SEALED_TS + 8))        # 101: the server's address (16) and port (2)
IT_SEALED_CT=$((IT_SEALED_BIND + 18))       # 119: ciphertext of the app request, then the tag
IT_SEALED_REASONS=(ok malformed unknown_key bad_token wrong_service expired stale replay full
	bad_aead internal wrong_server restarted share)

# it_sealed_init: it_tls_init, and the tools the sealed tests use.
it_sealed_init() {
	it_tls_init
	command -v od >/dev/null || it_skip "od (coreutils) is missing"
}

# it_conf_daemon_sealed SIDE LISTEN STEK|- [WORKERS [EXTRA_LINE...]]: it_conf_daemon_tls (no stek
# line with "-") with an explicit backend: $R2P2_IT_BACKEND, else udp. The default (auto) picks
# xdp on these veth pairs, and captures on B see nothing of what XDP redirects.
it_conf_daemon_sealed() {
	local side=$1 listen=$2 stek=$3 workers=${4:-2}
	shift $(($# < 4 ? $# : 4))
	if [ "$stek" = - ]; then
		printf '[daemon]\nlisten = %s\nworkers = %s\nsocket = %s\n' "$listen" "$workers" \
			"$(it_sock "$side")"
	else
		printf '[daemon]\nlisten = %s\nworkers = %s\nsocket = %s\nstek = %s\n' "$listen" "$workers" \
			"$(it_sock "$side")" "$stek"
	fi
	printf 'backend = %s\n' "${R2P2_IT_BACKEND:-udp}"
	# Requests are captured and replayed seconds later: a 10 s timestamp window keeps
	# them fresh, so each tampered field meets the check that names it, not "stale".
	printf 'sealed_window_ms = 10000\n'
	[ $# -eq 0 ] || printf '%s\n' "$@"
	printf '\n'
}

# it_conf_serve_sealed SERVICE PORT CERT KEY
it_conf_serve_sealed() {
	printf '[serve %s]\nport = %s\nsecurity = sealed\ncert = %s\nkey = %s\n\n' "$1" "$2" "$3" "$4"
}
# it_conf_call_sealed SERVICE TIMEOUT_MS RETRIES CA SERVER...
it_conf_call_sealed() {
	local svc=$1 tmo=$2 retries=$3 ca=$4 s
	shift 4
	printf '[call %s]\nsecurity = sealed\nca = %s\n' "$svc" "$ca"
	for s in "$@"; do
		printf 'server = %s\n' "$s"
	done
	printf 'timeout_ms = %s\nretries = %s\n\n' "$tmo" "$retries"
}

# it_sealed_counter STATUS server|client FIELD: a counter of the "sealed server:" line (opened,
# responses, minted, and the rejection reasons malformed .. internal) or of the "sealed client:"
# line (associations, rebootstraps) of an `r2p2ctl status` text (empty if absent).
it_sealed_counter() {
	awk -v side="$2" -v f="$3" '$1 == "sealed" && $2 == side ":" {
		for (i = 3; i < NF; i++) if ($i == f) print $(i + 1) }' <<<"$1"
}

# it_sealed_get SIDE server|client FIELD: it_sealed_counter on a fresh status (it_tls_status
# waits 250 ms for the 100 ms snapshot).
it_sealed_get() {
	local s v
	s=$(it_tls_status "$1") || it_fail "r2p2ctl status of daemon $1 failed" >&2
	v=$(it_sealed_counter "$s" "$2" "$3")
	[ -n "$v" ] || it_fail "daemon $1 status has no 'sealed $2: ... $3 N' counter" >&2
	printf '%s\n' "$v"
}

# it_sealed_rejections STATUS: "reason N ..." of every non-zero rejection counter (for logs).
it_sealed_rejections() {
	local r v out=""
	for r in "${IT_SEALED_REASONS[@]:1}"; do
		v=$(it_sealed_counter "$1" server "$r")
		[ "${v:-0}" = 0 ] || out="$out $r $v"
	done
	printf '%s\n' "${out:- none}"
}

# it_sealed_delta STATUS0 STATUS1 FIELD: how much a "sealed server:" counter rose.
it_sealed_delta() {
	echo $(($(it_sealed_counter "$2" server "$3") - $(it_sealed_counter "$1" server "$3")))
}

# it_sealed_requests CAPTURE DST: the sealed single-packet REQUEST datagrams (flags F|L|0x10)
# sent to DST (ADDR:PORT) in a sniff capture, one hex string per line, in order.
it_sealed_requests() {
	awk -v d="$2" '$2 == d && substr($3, 1, 6) == "cc0800" && substr($3, 7, 2) == "d0" &&
		substr($3, 13, 4) == "0001" { print $3 }' "$1"
}

# it_hex_flip HEX BYTE MASK: HEX (a datagram) with byte BYTE (from 0) xor MASK (2 hex digits).
it_hex_flip() {
	local h=$1 pos=$2 b
	b=${h:$((2 * pos)):2}
	printf '%s%02x%s\n' "${h:0:$((2 * pos))}" $((16#$b ^ 16#$3)) "${h:$((2 * pos + 2))}"
}

# it_rawsend NS OUT DST HEX [RAWSEND_ARGS...]: one datagram from a fresh UDP socket in namespace
# NS (r2p2-rawsend); the first reply (hex, no spaces) goes to OUT, empty if none came within 1 s.
it_rawsend() {
	local ns=$1 out=$2 dst=$3 hex=$4
	shift 4
	it_in "$ns" timeout 10 "$(it_bin r2p2-rawsend)" -w 1000 -r 1 "$@" "$dst" "$hex" 2>/dev/null |
		head -n 1 | tr -d ' ' >"$out" || true
}

# it_sealed_reply_kind HEX: what a reply to a sealed request is: "reject:REASON" (REJECT),
# "sealed" (a sealed RESPONSE, version 2), "drop" (R2P2 DROP), "none" (no reply) or "other:HEX".
it_sealed_reply_kind() {
	local h=$1 f
	if [ -z "$h" ]; then
		echo none
		return
	fi
	f=${h:6:2}
	if [ "${h:0:6}" = cc0841 ]; then
		echo drop
	elif [ "${h:0:6}" = cc0811 ] && [ "$((16#$f & 16#3f))" -eq 16 ]; then
		if [ "${#h}" -eq 22 ] && [ "${h:16:4}" = 02ff ]; then
			echo "reject:${IT_SEALED_REASONS[$((16#${h:20:2}))]:-?}"
		elif [ "${#h}" -eq 54 ] && [ "${h:16:4}" = 02fe ]; then
			# an authenticated REJECT (tag not checked here)
			echo "reject:${IT_SEALED_REASONS[$((16#${h:20:2}))]:-?}"
		elif [ "${h:16:2}" = 02 ]; then
			echo sealed
		else
			echo "other:${h:0:40}"
		fi
	else
		echo "other:${h:0:40}"
	fi
}

# it_sealed_sniff OUT MS [SNIFF_ARGS...]: capture the A-B link for MS ms into OUT, on A's end
# (interface r2a$IT_ID in namespace A). Not on B's end: with the xdp backend (backend = auto
# picks it on a veth) B's XDP program steers R2P2 packets to AF_XDP sockets before AF_PACKET
# taps see them, and B's AF_XDP transmissions bypass the taps too. A serves nothing, so it
# runs no XDP program and its end of the wire sees every datagram both ways. Pid in IT_LAST_PID.
it_sealed_sniff() {
	local out=$1 ms=$2
	shift 2
	it_sniff_start "$IT_NS_A" "$out" "$ms" -i "r2a$IT_ID" "$@"
}

# ---- helpers of the attack tests (it_attack_*.sh) ----

# it_nft_drop NS TABLE MATCH...: an nftables table TABLE (inet) in namespace NS whose input
# chain counts and drops the packets MATCH (nft words, e.g. udp sport 8000 udp length 97)
# selects. AF_PACKET taps (sniff) still see them: they run before the IP input hook.
it_nft_drop() {
	local ns=$1 t=$2
	shift 2
	ip netns exec "$ns" nft add table inet "$t"
	ip netns exec "$ns" nft add chain inet "$t" in '{ type filter hook input priority 0; }'
	ip netns exec "$ns" nft add rule inet "$t" in "$@" counter drop
}

# it_nft_dropped NS TABLE: how many packets the rule of it_nft_drop NS TABLE dropped so far.
it_nft_dropped() {
	local n
	n=$(ip netns exec "$1" nft list table inet "$2" | grep -o 'counter packets [0-9]*' | head -n 1)
	printf '%s\n' "${n##* }"
}

# it_nft_undo NS TABLE: delete the table of it_nft_drop.
it_nft_undo() { ip netns exec "$1" nft delete table inet "$2"; }

# it_sealed_reason_code NAME: the reason byte of a REJECT reason name (stale -> 6).
it_sealed_reason_code() {
	local i
	for i in "${!IT_SEALED_REASONS[@]}"; do
		[ "${IT_SEALED_REASONS[$i]}" = "$1" ] && { echo "$i"; return 0; }
	done
	return 1
}

# it_sealed_reject_hex RID REASON: a REJECT datagram (hex) as a server sends it: an R2P2
# RESPONSE (fixed route, F|L|sealed, p_order 1) with request id RID (4 hex digits) and payload
# 02 ff REASON (REASON a name of IT_SEALED_REASONS). Nothing authenticates it: anyone who
# knows RID and the client's address and port can send it.
it_sealed_reject_hex() {
	printf 'cc0811d0%s000102ff%02x\n' "$1" "$(it_sealed_reason_code "$2")"
}

# it_sealed_src CAPTURE HEX: the source ADDR:PORT of the first datagram HEX in a sniff capture.
it_sealed_src() {
	awk -v h="$2" '$3 == h { print $1; exit }' "$1"
}
