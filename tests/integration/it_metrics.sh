#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_metrics: the Prometheus endpoint (`metrics = ADDR:PORT` in [daemon]).
#
# Daemon B serves echo.svc and exposes its metrics on B's address; daemon A calls it. After
# 25 calls, GET /metrics (curl from namespace A) answers 200 with the text format, which
# promtool (Debian's, unpacked by tools/dev.sh) accepts, and says what `r2p2ctl status` says:
# the service's request counter is 25, the workers' counters sum to the status text's, and
# the info metric carries the version; on the calling side (daemon A's endpoint) the calls to
# echo.svc are counted ok and their latency histogram holds each of them. Other paths get
# 404, other methods 405. More
# connections than the endpoint takes are refused while earlier ones are served, and the
# daemon keeps serving calls throughout. A port already in use fails the start with a
# message naming the key.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MPORT=9464
CALLS=25

it_init
command -v curl >/dev/null || it_skip "curl is missing (tools/dev.sh installs it)"
it_setup_pair
URL=http://$IT_B4:$MPORT/metrics
{
	it_conf_daemon b "$IT_B4" | sed "s/^backend = .*/&\nmetrics = $IT_B4:$MPORT/"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4" | sed "s/^backend = .*/&\nmetrics = $IT_A4:$MPORT/"
	it_conf_call echo.svc 1000 3 "$IT_B4:$IT_ECHO_PORT"
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
it_start_echo -n echo.svc
it_check "B logs where the endpoint listens" grep -q "metrics: Prometheus endpoint on http://$IT_B4:$MPORT/metrics" \
	"$IT_TMP/r2p2d-b.log"

# get ARGS...: curl in namespace A; the body on stdout, "HTTP CODE" on the last line.
get() { it_in "$IT_NS_A" curl -sS -m 5 -w '\nHTTP %{http_code}\n' "$@"; }

it_check "$CALLS calls from A" it_client -S 16 -c "$CALLS" -t 2000
sleep 0.25 # the status snapshot is refreshed every 100 ms
get "$URL" >"$IT_TMP/metrics.txt"
s=$(it_ctl b status)
it_check "GET /metrics: 200" test "$(tail -n 1 "$IT_TMP/metrics.txt")" = "HTTP 200"
sed -i '$d' "$IT_TMP/metrics.txt"
sed -i '${/^$/d}' "$IT_TMP/metrics.txt"
it_log "  $(wc -l <"$IT_TMP/metrics.txt") lines, e.g.:"
grep -E '^r2p2_(served_requests_total|workers_rx_total|info)' "$IT_TMP/metrics.txt" | sed 's/^/    /'
it_check "the echo.svc request counter says $CALLS" \
	grep -qx "r2p2_served_requests_total{name=\"echo.svc\",port=\"$IT_ECHO_PORT\",security=\"plain\"} $CALLS" \
	"$IT_TMP/metrics.txt"
rx_prom=$(awk '/^r2p2_workers_rx_total/ { s += $2 } END { print s + 0 }' "$IT_TMP/metrics.txt")
it_check "the workers' rx counters sum to what the status text said ($rx_prom)" \
	test "$rx_prom" -ge $((CALLS)) -a "$rx_prom" -le "$(it_worker_sum "$s" rx)"
it_check "r2p2_info carries the version" grep -q '^r2p2_info{version="' "$IT_TMP/metrics.txt"
get "http://$IT_A4:$MPORT/metrics" >"$IT_TMP/metrics-a.txt"
sa=$(it_ctl a status)
it_log "  A: $(grep -A1 '^  echo.svc' <<<"$sa" | tail -n 1)"
it_check "A counts its $CALLS calls to echo.svc as ok" \
	grep -qx "r2p2_called_ok_total{name=\"echo.svc\",security=\"plain\"} $CALLS" "$IT_TMP/metrics-a.txt"
it_check "A's latency histogram holds them all" \
	grep -qx "r2p2_called_latency_seconds_count{name=\"echo.svc\",security=\"plain\"} $CALLS" \
	"$IT_TMP/metrics-a.txt"
it_check "A's +Inf bucket equals the count" \
	grep -qx "r2p2_called_latency_seconds_bucket{name=\"echo.svc\",security=\"plain\",le=\"+Inf\"} $CALLS" \
	"$IT_TMP/metrics-a.txt"
it_check "r2p2ctl status on A says the same" grep -q "calls: ok $CALLS failed 0  latency p50 <=" <<<"$sa"
it_check "every metric has HELP and TYPE" \
	test "$(grep -c '^# TYPE ' "$IT_TMP/metrics.txt")" -eq "$(grep -c '^# HELP ' "$IT_TMP/metrics.txt")"
PROMTOOL=$(command -v promtool || true)
[ -n "$PROMTOOL" ] || PROMTOOL=$R2P2_BUILD/.tools/usr/bin/promtool
if [ -x "$PROMTOOL" ]; then
	it_check "promtool check metrics accepts B's" "$PROMTOOL" check metrics <"$IT_TMP/metrics.txt"
	sed -i '/^HTTP /d' "$IT_TMP/metrics-a.txt"
	it_check "promtool check metrics accepts A's (with a histogram)" \
		"$PROMTOOL" check metrics <"$IT_TMP/metrics-a.txt"
else
	it_log "  skipped: promtool is not here (tools/dev.sh test unpacks it): format check not run"
fi
get -o /dev/null "http://$IT_B4:$MPORT/other" >"$IT_TMP/404.txt" || true
it_check "GET /other: 404" grep -qx "HTTP 404" "$IT_TMP/404.txt"
get -o /dev/null -X POST -d x "$URL" >"$IT_TMP/405.txt" || true
it_check "POST /metrics: 405" grep -qx "HTTP 405" "$IT_TMP/405.txt"

it_log "--- 20 idle connections (the endpoint takes 4 per address), then a scrape"
it_in "$IT_NS_A" python3 - "$IT_B4" "$MPORT" <<'EOF' &
import socket, sys, time
held = []
for _ in range(20):
    try:
        held.append(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2))
    except OSError:
        pass
time.sleep(3)
EOF
HOLD=$!
sleep 0.5
it_check "calls go on meanwhile" it_client -S 16 -c 5 -t 2000
wait "$HOLD" || true
sleep 0.5
get "$URL" >"$IT_TMP/after.txt" || true
it_check "a scrape after the idle connections went: 200" grep -qx "HTTP 200" "$IT_TMP/after.txt"
it_check "daemon B still alive" it_alive "${IT_DAEMON_PID[b]}"

it_log "--- a second daemon asking for the same metrics port fails to start, naming the key"
{
	it_conf_daemon c "$IT_B4" 1 | sed "s/^backend = .*/&\nmetrics = $IT_B4:$MPORT/"
} >"$IT_TMP/c.conf"
rc=0
timeout 10 ip netns exec "$IT_NS_B" "$(it_bin r2p2d)" --config "$IT_TMP/c.conf" >"$IT_TMP/c.log" 2>&1 || rc=$?
it_log "  $(grep -m1 metrics "$IT_TMP/c.log" || true)"
it_check "it exits non-zero ($rc) saying metrics = $IT_B4:$MPORT" \
	grep -q "metrics = $IT_B4:$MPORT" "$IT_TMP/c.log"
for side in a b; do
	it_check "daemon $side exits 0 on SIGTERM" it_stop_daemon "$side"
done
it_pass "GET /metrics says what the status says, in a format promtool accepts"
