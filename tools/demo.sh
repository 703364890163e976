#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/demo.sh BUILD_DIR: two hosts in two network namespaces joined by a veth
# pair, one r2p2d on each, an echo service on B in each security mode (plain, tls,
# sealed), and an app on A calling them by name; then the latency of 1000 sequential 4-byte calls next to the raw UDP
# round trip between the same namespaces. Everything is removed on exit,
# Ctrl-C or failure. Needs root.
set -euo pipefail

BUILD=${1:?usage: tools/demo.sh BUILD_DIR}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export R2P2_BUILD=$BUILD R2P2_SRC=$SRC
IT_NAME=demo
IT_MODE=demo
# shellcheck source=SCRIPTDIR/../tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
indent() { sed 's/^/    /'; }

it_init
for b in r2p2d r2p2ctl r2p2-echo-server r2p2-echo-client r2p2-bench udp-pingpong; do
	it_bin "$b" >/dev/null
done

step "1. two hosts: network namespaces joined by a veth pair"
it_setup_pair

step "2. keys: a demo CA, one certificate per encrypted service, a session-ticket key (STEK)"
R2P2CTL=$(it_bin r2p2ctl) bash "$SRC/tools/gen-certs.sh" "$IT_TMP/pki" echo-tls.svc \
	echo-sealed.svc 2>&1 | indent

step "3. an r2p2d in each namespace: B serves echo.svc (plain), echo-tls.svc (tls) and
   echo-sealed.svc (sealed); A calls all three"
export R2P2_IT_BACKEND=auto # the default data path: xdp where it can, else udp
declare -A PORT=([tls]=$((IT_ECHO_PORT + 1)) [sealed]=$((IT_ECHO_PORT + 2)))
{
	it_conf_daemon b "$IT_B4"
	printf 'stek = %s\n\n' "$IT_TMP/pki/stek.keys"
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	for m in tls sealed; do
		port=${PORT[$m]}
		printf '[serve echo-%s.svc]\nport = %s\nsecurity = %s\ncert = %s\nkey = %s\n\n' "$m" \
			"$port" "$m" "$IT_TMP/pki/echo-$m.svc.crt" "$IT_TMP/pki/echo-$m.svc.key"
	done
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	it_conf_call echo.svc 1000 3 "$IT_B4:$IT_ECHO_PORT"
	for m in tls sealed; do
		it_conf_call "echo-$m.svc" 1000 3 "$IT_B4:${PORT[$m]}"
		printf 'security = %s\nca = %s\n\n' "$m" "$IT_TMP/pki/ca.crt"
	done
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"
for svc in echo.svc echo-tls.svc echo-sealed.svc; do
	it_start_echo -n "$svc"
done
echo "  host A config ($IT_TMP/a.conf):"
indent <"$IT_TMP/a.conf"
echo "  host B config ($IT_TMP/b.conf):"
indent <"$IT_TMP/b.conf"

step "4. r2p2ctl status on both daemons"
for side in a b; do
	echo "  daemon $side:"
	it_ctl "$side" status | indent
done

step "5. an app on A calls each service by name; every echo verified byte for byte"
for svc in echo.svc echo-tls.svc echo-sealed.svc; do
	for size in 4 1465 65536; do
		it_client -n "$svc" -S "$size" -c 10 -t 2000 | indent
	done
done
echo "  what the encrypted modes did (daemon B):"
it_ctl b status | grep -E '^(backend|xdp|tls server|sealed server)' | indent

step "6. r2p2-bench: 1000 sequential 4-byte calls A -> B, plain then sealed"
it_bench -S 4 -c 1 -N 1000 -w 100 -t 1000 --json >"$IT_TMP/r2p2.txt"
grep -v '^{' "$IT_TMP/r2p2.txt" | indent
it_bench -n echo-sealed.svc -S 4 -c 1 -N 1000 -w 100 -t 1000 --json >"$IT_TMP/sealed.txt"
grep -v '^{' "$IT_TMP/sealed.txt" | indent

step "7. for comparison: raw UDP ping-pong between the same namespaces"
pp=$(it_bin udp-pingpong)
it_bg "$IT_NS_B" "$IT_TMP/udp-server.log" "$pp" server "$IT_B4:7000" -i 30
it_wait_for 5 "udp-pingpong server" grep -q ready "$IT_TMP/udp-server.log"
it_in "$IT_NS_A" timeout 60 "$pp" client "$IT_B4:7000" -S 4 -N 1000 -w 100 --json \
	>"$IT_TMP/udp.txt"
grep -v '^{' "$IT_TMP/udp.txt" | indent

step "summary (microseconds)"
r50=$(it_json_num "$IT_TMP/r2p2.txt" p50_us)
r99=$(it_json_num "$IT_TMP/r2p2.txt" p99_us)
u50=$(it_json_num "$IT_TMP/udp.txt" p50_us)
u99=$(it_json_num "$IT_TMP/udp.txt" p99_us)
printf '    %-22s %8s %8s\n' "" p50 p99
printf '    %-22s %8s %8s\n' "raw UDP round trip" "$u50" "$u99"
printf '    %-22s %8s %8s\n' "R2P2 via two daemons" "$r50" "$r99"
printf '    %-22s %8s %8s\n' "sealed R2P2" "$(it_json_num "$IT_TMP/sealed.txt" p50_us)" \
	"$(it_json_num "$IT_TMP/sealed.txt" p99_us)"
awk -v a="$r50" -v b="$u50" 'BEGIN { if (b > 0) printf "    p50 ratio r2p2/udp: %.2f (target: at most 2)\n", a / b }'

step "done; stopping everything and removing the namespaces"
