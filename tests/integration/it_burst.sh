#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_burst: one app puts thousands of calls in flight at once (tests/integration/burst_client.c)
# to a plain, a tls and a sealed echo service, and every call ends as it should.
#
# An audit saw 2,000-3,000 calls outstanding from one app with 1 s timeouts end in errors by
# the thousand, mostly -EBADMSG ("malformed or unauthentic reply") in tls mode, and in sealed
# mode errors that were not timeouts, while the client daemon counted those calls ok.
#
# B serves plain.svc, tls.svc and sealed.svc (backend udp, 2 workers), each answered by an
# echo server that counts the requests it is handed (-c). A calls them (2 workers, timeout
# TIMEOUT_MS, 3 retries). After one warm-up call per service (a tls ticket, a sealed
# association), burst_client submits N calls of 64 B to one service as fast as the ring takes
# them (-EAGAIN: poll, retry, counted), each call timing out after TIMEOUT_MS, and waits for
# every completion; one mode after the other. Checked per mode:
#   - every call ended exactly once: verified byte for byte, or -ETIMEDOUT, or back-pressure
#     (-ENOBUFS, -EAGAIN); never -EBADMSG or any other error, no mismatch, none lost;
#   - at least MIN_PCT% verified;
#   - daemon A's counters agree with the app: `app_ok` rose by the calls the app saw succeed,
#     `app_failed` by those it saw fail;
#   - B's app ran each request at most once: verified <= ran <= made.
# A holds at most max_inflight (256) calls per worker and service in flight; the rest wait on
# A, unprotected, and leave as calls end (`waited` counts them): sealed requests are stamped
# when they leave, so none waits in B's queues long enough to go stale, and each tls call
# that ends hands its fresh ticket to one that waits, so few calls need a full handshake.
# N is 10,000 in every mode; R2P2_BURST_N, R2P2_BURST_TLS_N and R2P2_BURST_TIMEOUT_MS change
# the numbers.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/lib_sealed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_sealed.sh"

N=${R2P2_BURST_N:-10000}
TLS_N=${R2P2_BURST_TLS_N:-10000}
TIMEOUT_MS=${R2P2_BURST_TIMEOUT_MS:-5000}
MIN_PCT=90
PORT_PLAIN=8000
PORT_TLS=8001
PORT_SEALED=8002

it_sealed_init
it_setup_pair
it_tls_certs "$IT_TLS" tls.svc sealed.svc
{
	printf '[daemon]\nlisten = %s\nworkers = 2\nsocket = %s\nstek = %s\nbackend = udp\n\n' \
		"$IT_B4" "$(it_sock b)" "$IT_TLS/stek.keys"
	it_conf_serve plain.svc "$PORT_PLAIN"
	it_conf_serve_tls tls.svc "$PORT_TLS" "$IT_TLS/tls.svc.crt" "$IT_TLS/tls.svc.key"
	it_conf_serve_sealed sealed.svc "$PORT_SEALED" "$IT_TLS/sealed.svc.crt" "$IT_TLS/sealed.svc.key"
} >"$IT_TMP/b.conf"
{
	printf '[daemon]\nlisten = %s\nworkers = 2\nsocket = %s\nbackend = udp\n\n' "$IT_A4" "$(it_sock a)"
	it_conf_call plain.svc "$TIMEOUT_MS" 3 "$IT_B4:$PORT_PLAIN"
	it_conf_call_tls tls.svc "$TIMEOUT_MS" 3 "$IT_TLS/ca.crt" "$IT_B4:$PORT_TLS"
	it_conf_call_sealed sealed.svc "$TIMEOUT_MS" 3 "$IT_TLS/ca.crt" "$IT_B4:$PORT_SEALED"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
declare -A ECHO=()
for svc in plain.svc tls.svc sealed.svc; do
	it_start_echo_on b "$IT_NS_B" -n "$svc" -c
	ECHO[$svc]=$IT_LAST_PID
	it_check "warm-up: one call to $svc" it_client -n "$svc" -S 64 -c 1 -t "$TIMEOUT_MS"
done


# other_errors LINE: "err_NAME K" pairs other than -ETIMEDOUT and back-pressure.
other_errors() {
	awk '{ for (i = 1; i < NF; i++) if ($i ~ /^err_/ && $i != "err_ETIMEDOUT" &&
		$i != "err_ENOBUFS" && $i != "err_EAGAIN") printf "%s %s ", substr($i, 5), $(i + 1) }' <<<"$1"
}

# burst MODE SERVICE COUNT: one burst and its checks (failures recorded by it_expect).
burst() {
	local mode=$1 svc=$2 n=$3 s0 s1 ran0 ran1 out err line rc=0 verified made tmo nobufs refused
	local d_calls d_app_ok d_app_failed d_waited extra ran bad lost unknown mismatched
	s0=$(it_tls_status a)
	ran0=$(it_echo_served "${ECHO[$svc]}")
	out=$IT_TMP/burst-$mode.txt
	err=$IT_TMP/burst-$mode.log
	it_log "--- $mode: $n calls to $svc in flight at once (timeout $TIMEOUT_MS ms)"
	timeout 120 ip netns exec "$IT_NS_A" "$(it_bin burst_client)" -s "$(it_sock a)" -n "$svc" \
		-N "$n" -S 64 -t "$TIMEOUT_MS" -w 10000 >"$out" 2>"$err" || rc=$?
	sed 's/^/    /' "$err"
	line=$(grep '^burst ' "$out" || true)
	[ -n "$line" ] || it_fail "$mode: burst_client printed no result (exit $rc)"
	it_log "  $line"
	s1=$(it_tls_status a)
	ran1=$(it_echo_served "${ECHO[$svc]}")
	verified=$(it_field "$line" verified)
	made=$(it_field "$line" made)
	tmo=$(it_field "$line" err_ETIMEDOUT)
	nobufs=$(it_field "$line" err_ENOBUFS)
	refused=$(it_field "$line" refused)
	bad=$(other_errors "$line")
	d_calls=$(($(it_worker_sum "$s1" calls) - $(it_worker_sum "$s0" calls)))
	d_app_ok=$(($(it_worker_sum "$s1" app_ok) - $(it_worker_sum "$s0" app_ok)))
	d_app_failed=$(($(it_worker_sum "$s1" app_failed) - $(it_worker_sum "$s0" app_failed)))
	d_waited=$(($(it_worker_sum "$s1" waited) - $(it_worker_sum "$s0" waited)))
	# Calls that reached A's engine: made, less those A refused before (-ENOBUFS).
	extra=$((d_calls - (made - nobufs)))
	ran=$((ran1 - ran0))
	mismatched=$(it_field "$line" mismatched)
	it_log "  daemon A: calls +$d_calls app_ok +$d_app_ok app_failed +$d_app_failed" \
		"waited +$d_waited (extra engine calls $extra); B's app ran $ran"
	if [ "$mode" = tls ]; then
		it_log "  A $(grep '^tls client' <<<"$s1")"
		it_log "  B $(it_ctl b status | grep '^tls server')"
	elif [ "$mode" = sealed ]; then
		it_log "  A $(grep '^sealed client' <<<"$s1")"
		it_log "  B $(it_ctl b status | grep '^sealed server')"
	fi
	lost=$(it_field "$line" lost)
	unknown=$(it_field "$line" unknown)
	it_expect "$mode: every call ended once (lost $lost, unknown completions $unknown, exit $rc)" \
		test "$lost" -eq 0 -a "$unknown" -eq 0 -a "$rc" -eq 0
	it_expect "$mode: no response mismatched ($mismatched)" test "$mismatched" -eq 0
	it_expect "$mode: no error but -ETIMEDOUT ($tmo) and back-pressure (-ENOBUFS $nobufs); others: ${bad:-none}" \
		test -z "$bad"
	it_expect "$mode: at least $MIN_PCT% verified ($verified of $n)" \
		test $((verified * 100)) -ge $((n * MIN_PCT))
	it_expect "$mode: A's app_ok rose by the calls the app saw succeed (+$d_app_ok, $verified verified + $mismatched mismatched)" \
		test "$d_app_ok" -eq $((verified + mismatched))
	it_expect "$mode: A's app_failed rose by the calls the app saw fail (+$d_app_failed, $((made - verified - mismatched)))" \
		test "$d_app_failed" -eq $((made - verified - mismatched))
	if [ "$mode" = plain ]; then
		it_expect "plain: one engine call per app call (extra $extra)" test "$extra" -eq 0
	fi
	it_expect "$mode: B's app ran each request at most once ($verified <= ran $ran <= made $made)" \
		test "$ran" -le "$made" -a "$ran" -ge "$verified"
	# Logged at most once a second per worker, also for replies set aside (not errors).
	it_log "  daemon A's log on calls to $svc (last 10 lines):"
	grep -E "call to $svc failed" "$IT_TMP/r2p2d-a.log" | tail -n 10 | sed 's/^/    /' || true
	printf '%s %s calls %s verified %s refused %s eagain_retries %s duration_ms %s errors: %s\n' \
		"$mode" "$svc" "$n" "$verified" "$refused" "$(it_field "$line" eagain_retries)" \
		"$(it_field "$line" duration_ms)" "$(grep -o 'err_[A-Z0-9]* [0-9]*' <<<"$line" | tr '\n' ' ')" \
		>>"$IT_TMP/summary.txt"
}

T0=$(it_ms)
burst plain plain.svc "$N"
burst tls tls.svc "$TLS_N"
burst sealed sealed.svc "$N"
it_log "summary ($(($(it_ms) - T0)) ms for the three bursts):"
sed 's/^/    /' "$IT_TMP/summary.txt"
it_check "daemon A still running" it_alive "${IT_DAEMON_PID[a]}"
it_check "daemon B still running" it_alive "${IT_DAEMON_PID[b]}"
it_expect_done
it_pass "bursts of $N (plain, sealed) and $TLS_N (tls) calls: none mis-answered, counters agree"
