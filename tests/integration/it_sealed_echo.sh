#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_sealed_echo: sealed mode end to end between namespaces A (client daemon, 2 workers) and
# B (server daemon: echo.svc with security = sealed, demo PKI and STEK from tools/gen-certs.sh;
# plain.svc next to it):
#  (a) the first call bootstraps through one tls exchange (full handshake, one association
#      minted); echoes of 4 B, 1464 B, 3000 B and 64 KiB verify byte for byte; 200 more
#      sequential calls are each opened by B's sealed server (opened +200) with no further
#      tls exchange nor association (full_handshakes stays 1, at most one per client worker);
#  (b) a capture of the A-B link (tests/integration/sniff.c, A's end) never shows a request's marker
#      text, every packet of the sealed port carries flag 0x10 (0x20 absent: no tls), equal
#      plaintexts give different ciphertexts; the marker does show in the plain control;
#  (h) calls marked not replay-safe (r2p2-echo-client -N, R2P2_CALL_NOT_REPLAY_SAFE) go as tls
#      exchanges (flag 0x20, tls counters rise, no early data), never sealed (opened flat);
#  (i) plaintext to the sealed port is refused (R2P2 DROP, wrong_mode rises), through the
#      client daemon and from a raw socket; a sealed request to the plain port likewise.
# Then a short pass over IPv6 (bootstrap, echoes up to 64 KiB, counters).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

PLAIN_PORT=8001
MARKER="R2P2-SEALED-MARKER-$IT_ID-"
A_WORKERS=2

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" echo.svc
SEALED=$IT_B4:$IT_ECHO_PORT
{
	it_conf_daemon_sealed b "$IT_B4" "$IT_TLS/stek.keys"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
	it_conf_serve plain.svc "$PLAIN_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon_sealed a "$IT_A4" - "$A_WORKERS"
	it_conf_call_sealed echo.svc 3000 3 "$IT_TLS/ca.crt" "$SEALED"
	it_conf_call plain.svc 2000 3 "$IT_B4:$PLAIN_PORT"
	# (i): a plain [call] whose server is the sealed port
	it_conf_call wrongmode.svc 1000 1 "$SEALED"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_start_echo_on b "$IT_NS_B" -n plain.svc
SERVED=0 # requests the sealed echo server ran so far

# bits_of FILE PORT: the distinct free flag bits (flags & 0x3f, decimal) of the R2P2 packets
# from or to PORT in a capture, one per line, each with its count ("16 42").
bits_of() {
	awk -v port="$2" '
		function hexv(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++)
			v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
		$1 ~ (":" port "$") || $2 ~ (":" port "$") {
			if (substr($3, 1, 4) != "cc08") { n["not-r2p2"]++; next }
			n[hexv(substr($3, 7, 2)) % 64]++
		}
		END { for (b in n) print b, n[b] }' "$1"
}

it_log "--- (a) bootstrap: the first call is one tls exchange that mints an association"
it_check "first sealed call (4 B) verified" it_client -S 4 -c 1 -t 5000
SERVED=$((SERVED + 1))
sb=$(it_tls_status b)
sa=$(it_tls_status a)
it_log "  B: $(grep '^sealed server' <<<"$sb")"
it_log "  B: $(grep '^tls server' <<<"$sb")"
it_log "  A: $(grep '^sealed client' <<<"$sa")"
it_check "B made one full handshake" test "$(it_tls_counter "$sb" server full_handshakes)" -eq 1
it_check "B minted one association" test "$(it_sealed_counter "$sb" server minted)" -eq 1
it_check "B opened no sealed request yet" test "$(it_sealed_counter "$sb" server opened)" -eq 0
it_check "A holds an association" test "$(it_sealed_counter "$sa" client associations)" -ge 1

it_log "--- (a) echo through sealed at 4 B, 1464 B, 3000 B, 64 KiB (content verified)"
it_check "sealed echo 4 B x 20" it_client -S 4 -c 20 -t 5000
it_check "sealed echo 1464 B x 20 (1573 B sealed: two packets)" it_client -S 1464 -c 20 -t 5000
it_check "sealed echo 3000 B x 10" it_client -S 3000 -c 10 -t 5000
it_check "sealed echo 64 KiB x 5" it_client -S 65536 -c 5 -t 5000
it_check "sealed echo 0 B x 5" it_client -S 0 -c 5 -t 5000
SERVED=$((SERVED + 60))
s0=$(it_tls_status b)
it_check "all 60 opened as sealed requests (opened $(it_sealed_counter "$s0" server opened))" \
	test "$(it_sealed_counter "$s0" server opened)" -eq 60
it_check "still one full handshake and one association" \
	test "$(it_tls_counter "$s0" server full_handshakes)" -eq 1 -a \
	"$(it_sealed_counter "$s0" server minted)" -eq 1

it_log "--- (a) 200 sequential calls after the warm-up"
it_check "200 sequential sealed calls (32 B) verified" it_client -S 32 -c 200 -t 5000
SERVED=$((SERVED + 200))
s1=$(it_tls_status b)
sa=$(it_tls_status a)
it_log "  B: $(grep '^sealed server' <<<"$s1")"
it_log "  B: $(grep '^tls server' <<<"$s1")"
it_log "  A: $(grep '^sealed client' <<<"$sa")"
n=$(it_sealed_delta "$s0" "$s1" opened)
it_check "sealed server: opened rose by $n (>= 200)" test "$n" -ge 200
n=$(it_sealed_delta "$s0" "$s1" responses)
it_check "sealed server: responses rose by $n (>= 200)" test "$n" -ge 200
f=$(it_tls_counter "$s1" server full_handshakes)
it_check "tls server: full_handshakes stays $f (1, at most one per client worker: $A_WORKERS)" \
	test "$f" -eq "$(it_tls_counter "$s0" server full_handshakes)" -a "$f" -ge 1 -a "$f" -le "$A_WORKERS"
it_check "no tls exchange at all during the 200 (resumed $(it_tls_counter "$s1" server resumed))" \
	test "$(it_tls_counter "$s1" server resumed)" -eq "$(it_tls_counter "$s0" server resumed)"
it_check "no new association minted (minted $(it_sealed_counter "$s1" server minted))" \
	test "$(it_sealed_counter "$s1" server minted)" -eq 1
it_check "no sealed request rejected (rejected:$(it_sealed_rejections "$s1"))" \
	test "$(it_sealed_rejections "$s1")" = " none"
it_check "A never re-bootstrapped" test "$(it_sealed_counter "$sa" client rebootstraps)" -eq 0
it_check "the echo server ran every call once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"
it_log "  B: $(grep -E "^ +echo.svc " <<<"$s1" | tr -s ' ')"

it_log "--- (b) no plaintext on the wire: capture of the A-B link (on A's end, r2a$IT_ID)"
CAP=$IT_TMP/sniff.txt
it_sealed_sniff "$CAP" 30000
SNIFF=$IT_LAST_PID
it_check "sealed echo of the marker text, 64 B x 5" it_client -P "$MARKER" -S 64 -c 5 -t 5000
it_check "sealed echo of the marker text, 3000 B x 3 (multi-packet)" \
	it_client -P "$MARKER" -S 3000 -c 3 -t 5000
it_check "plain echo of the marker text, 64 B x 2 (control)" \
	it_client -n plain.svc -P "$MARKER" -S 64 -c 2 -t 5000
SERVED=$((SERVED + 8))
sleep 0.2
it_sniff_stop "$SNIFF"
HEX=$(it_hex "$MARKER")
bits=$(bits_of "$CAP" "$IT_ECHO_PORT" | sort -n | tr '\n' ' ')
it_log "  packets of the sealed port by free flag bits (bits count): $bits"
it_check "every packet of the sealed port carries exactly flag 0x10 (no tls, no plain)" \
	test "$(bits_of "$CAP" "$IT_ECHO_PORT" | awk '$1 != 16' | wc -l)" -eq 0
it_check "the capture holds sealed packets ($(bits_of "$CAP" "$IT_ECHO_PORT" | awk '$1 == 16 { print $2 }'))" \
	test "$(bits_of "$CAP" "$IT_ECHO_PORT" | awk '$1 == 16 { print $2 }')" -ge 20
it_check "the plain control's packets carry no flag bit" \
	test "$(bits_of "$CAP" "$PLAIN_PORT" | awk '$1 != 0' | wc -l)" -eq 0
it_check "the capture sees the marker in the plain control" \
	test "$(grep ":$PLAIN_PORT " "$CAP" | grep -c "$HEX")" -ge 2
it_check "the marker never appears in a datagram of the sealed port" \
	test "$(grep ":$IT_ECHO_PORT " "$CAP" | grep -c "$HEX" || true)" -eq 0
mapfile -t REQS < <(it_sealed_requests "$CAP" "$SEALED")
it_check "5 single-packet sealed requests (cc 08 00 d0 .. 00 01) of 8 + 127 + 5 + 64 bytes" \
	test "${#REQS[@]}" -eq 5 -a "$(printf '%s\n' "${REQS[@]}" | awk '{ print length($0) / 2 }' | sort -u)" = 204
it_log "  first one: ${REQS[0]:0:16} | ${REQS[0]:16:2} | token ${REQS[0]:18:8}.. | N ${REQS[0]:162:24} | ts ${REQS[0]:186:16} | ..."
it_check "they share one token (one association)" \
	test "$(printf '%s\n' "${REQS[@]}" | cut -c19-162 | sort -u | wc -l)" -eq 1
it_check "equal plaintexts, 5 different nonces and ciphertexts" \
	test "$(printf '%s\n' "${REQS[@]}" | cut -c163-186 | sort -u | wc -l)" -eq 5 -a \
	"$(printf '%s\n' "${REQS[@]}" | cut -c239- | sort -u | wc -l)" -eq 5
it_check "the multi-packet requests start with cc 08 00 90 .. ff ff (F|0x10, count unknown)" \
	test "$(awk -v d="$SEALED" '$2 == d && substr($3, 1, 8) == "cc080090" && substr($3, 13, 4) == "ffff"' "$CAP" | wc -l)" -eq 3
KEEP=${REQS[0]} # a genuine sealed request, for (i)

it_log "--- (h) calls marked not replay-safe go through tls, not sealed"
sb0=$(it_tls_status b)
CAP2=$IT_TMP/sniff-h.txt
it_sealed_sniff "$CAP2" 30000 -p "$IT_ECHO_PORT"
SNIFF=$IT_LAST_PID
it_check "10 not-replay-safe calls (-N) verified" it_client -N -S 32 -c 10 -t 5000
sleep 0.2
it_sniff_stop "$SNIFF"
SERVED=$((SERVED + 10))
sb1=$(it_tls_status b)
it_log "  B: $(grep '^tls server' <<<"$sb1")"
it_log "  B: $(grep '^sealed server' <<<"$sb1")"
bits=$(bits_of "$CAP2" "$IT_ECHO_PORT" | sort -n | tr '\n' ' ')
it_log "  their packets by free flag bits: $bits"
it_check "they carried the tls flag 0x20 only" \
	test "$(bits_of "$CAP2" "$IT_ECHO_PORT" | awk '$1 != 32' | wc -l)" -eq 0 -a \
	"$(bits_of "$CAP2" "$IT_ECHO_PORT" | awk '$1 == 32 { print $2 }')" -ge 20
x=$(($(it_tls_counter "$sb1" server full_handshakes) + $(it_tls_counter "$sb1" server resumed) -
	$(it_tls_counter "$sb0" server full_handshakes) - $(it_tls_counter "$sb0" server resumed)))
it_check "B's tls server made 10 exchanges for them (full + resumed +$x)" test "$x" -eq 10
it_check "none of them as 0-RTT early data (early_accepted unchanged)" \
	test "$(it_tls_counter "$sb1" server early_accepted)" -eq "$(it_tls_counter "$sb0" server early_accepted)"
it_check "sealed server: opened unchanged ($(it_sealed_counter "$sb1" server opened))" \
	test "$(it_sealed_delta "$sb0" "$sb1" opened)" -eq 0
it_log "  note: minted +$(it_sealed_delta "$sb0" "$sb1" minted) for these 10 tls calls"
sb0=$sb1
it_check "10 replay-safe calls after them" it_client -S 32 -c 10 -t 5000
SERVED=$((SERVED + 10))
sb1=$(it_tls_status b)
it_check "... went sealed again (opened +$(it_sealed_delta "$sb0" "$sb1" opened), no tls exchange)" \
	test "$(it_sealed_delta "$sb0" "$sb1" opened)" -eq 10 -a \
	"$(it_tls_counter "$sb1" server resumed)" -eq "$(it_tls_counter "$sb0" server resumed)"
it_check "the echo server ran every call once ($SERVED)" test "$(it_echo_served "$ECHO")" -eq "$SERVED"

it_log "--- (i) plaintext to the sealed service is refused"
s0=$(it_tls_status b)
wm0=$(it_served_field "$s0" echo.svc wrong_mode)
if it_client -n wrongmode.svc -S 16 -c 1 -t 1000 >"$IT_TMP/wrongmode.out" 2>&1; then
	it_fail "a plain call to the sealed port succeeded"
fi
it_log "  $(grep -m1 'failed' "$IT_TMP/wrongmode.out" || tail -n 1 "$IT_TMP/wrongmode.out")"
it_check "the plain call through daemon A was refused (DROP: -ECONNREFUSED, -111)" \
	grep -q "(-111)" "$IT_TMP/wrongmode.out"
it_rawsend "$IT_NS_A" "$IT_TMP/plain-raw.txt" "$SEALED" "cc0800c012340001$(it_hex ping)"
it_check "a raw plain request (rid 0x1234) is answered DROP: $(cat "$IT_TMP/plain-raw.txt")" \
	test "$(cat "$IT_TMP/plain-raw.txt")" = cc0841c01234000144524f50
s1=$(it_tls_status b)
wm1=$(it_served_field "$s1" echo.svc wrong_mode)
it_check "echo.svc wrong_mode rose ($wm0 -> $wm1)" test "$wm1" -eq $((wm0 + 2))
it_check "no sealed counter moved (opened, rejected)" \
	test "$(it_sealed_delta "$s0" "$s1" opened)" -eq 0 -a "$(it_sealed_rejections "$s1")" = " none"
pw0=$(it_served_field "$s1" plain.svc wrong_mode)
it_rawsend "$IT_NS_A" "$IT_TMP/sealed-to-plain.txt" "$IT_B4:$PLAIN_PORT" "$KEEP"
it_check "a sealed request sent to the plain port is answered DROP with flag 0x10: $(cut -c1-16 "$IT_TMP/sealed-to-plain.txt")" \
	test "$(cut -c1-8 "$IT_TMP/sealed-to-plain.txt")" = cc0841d0
s2=$(it_tls_status b)
it_check "plain.svc wrong_mode rose ($pw0 -> $(it_served_field "$s2" plain.svc wrong_mode))" \
	test "$(it_served_field "$s2" plain.svc wrong_mode)" -eq $((pw0 + 1))
it_check "the sealed echo server ran none of them (still $SERVED)" \
	test "$(it_echo_served "$ECHO")" -eq "$SERVED"
it_check "sealed calls still work" it_client -S 32 -c 5 -t 5000
it_kill_pid "$ECHO"
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b

it_log "--- the same over IPv6: bootstrap, then sealed echoes"
{
	it_conf_daemon_sealed b "$IT_B6" "$IT_TLS/stek.keys"
	it_conf_serve_sealed echo.svc "$IT_ECHO_PORT" "$IT_TLS/echo.svc.crt" "$IT_TLS/echo.svc.key"
} >"$IT_TMP/b6.conf"
{
	it_conf_daemon_sealed a "$IT_A6" - "$A_WORKERS"
	it_conf_call_sealed echo.svc 3000 3 "$IT_TLS/ca.crt" "[$IT_B6]:$IT_ECHO_PORT"
} >"$IT_TMP/a6.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b6.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a6.conf"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
ECHO=$IT_LAST_PID
it_check "IPv6 sealed echo 4 B x 50 (the first one bootstraps)" it_client -S 4 -c 50 -t 5000
it_check "IPv6 sealed echo 3000 B x 10" it_client -S 3000 -c 10 -t 5000
it_check "IPv6 sealed echo 64 KiB x 3" it_client -S 65536 -c 3 -t 5000
s=$(it_tls_status b)
it_log "  B: $(grep '^sealed server' <<<"$s")"
it_check "one full handshake, one association, 62 requests opened" \
	test "$(it_tls_counter "$s" server full_handshakes)" -eq 1 -a \
	"$(it_sealed_counter "$s" server minted)" -eq 1 -a "$(it_sealed_counter "$s" server opened)" -eq 62
it_check "the echo server ran 63 requests" test "$(it_echo_served "$ECHO")" -eq 63
it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "one bootstrap then AEAD-only RPCs, 0 B..64 KiB verified, nothing in clear; not replay-safe goes tls; plaintext refused; IPv4 and IPv6"
