#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_unit: tools/r2p2d.service is a valid notify unit that matches the daemon.
#  1. It declares Type=notify, ExecReload running `r2p2ctl reload` (which fails when the
#     daemon refuses the new config), ExecStartPre running --check,
#     KillSignal=SIGTERM and a TimeoutStopSec above the default drain_timeout_ms (5 s).
#  2. `systemd-analyze verify` accepts it, and tools/r2p2-router.service (Type=notify, the
#     --check before the start, SIGHUP to reload). Nothing is installed: when the only complaint
#     is the missing /usr/local/bin/r2p2d and r2p2ctl, a copy of the unit pointing at the
#     build's binaries is verified instead. Without systemd-analyze, this part says
#     SKIPPED and why.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALLED=/usr/local/bin/r2p2d # where the unit expects the daemon
INSTALLED_CTL=/usr/local/bin/r2p2ctl

it_init_local
unit=$R2P2_SRC/tools/r2p2d.service
[ -r "$unit" ] || it_fail "$unit is missing"

it_log "--- 1. the unit's contract"
it_check "Type=notify" grep -qx 'Type=notify' "$unit"
it_check "ExecReload asks the daemon and waits for its answer (r2p2ctl reload)" \
	grep -qx "ExecReload=$INSTALLED_CTL reload" "$unit"
it_check "ExecStartPre checks the config (--check)" \
	grep -Eqx "ExecStartPre=$INSTALLED --config [^ ]+ --check" "$unit"
it_check "ExecStart runs $INSTALLED --config" grep -Eqx "ExecStart=$INSTALLED --config [^ ]+" "$unit"
it_check "KillSignal=SIGTERM (the drain)" grep -qx 'KillSignal=SIGTERM' "$unit"
stop_s=$(sed -nE 's/^TimeoutStopSec=([0-9]+)s?$/\1/p' "$unit")
it_check "TimeoutStopSec (${stop_s:-none} s) exceeds the default drain_timeout_ms (5 s)" \
	test "${stop_s:-0}" -gt 5
it_check "RuntimeDirectory=r2p2 (the default control socket lives in /run/r2p2)" \
	grep -qx 'RuntimeDirectory=r2p2' "$unit"

it_log "--- 2. systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null; then
	echo "SKIPPED: systemd-analyze verify: systemd-analyze is not installed (Debian package systemd)"
	it_pass "the unit declares notify, reload, check and drain settings (verify skipped)"
fi
rc=0
systemd-analyze verify "$unit" >"$IT_TMP/verify.txt" 2>&1 || rc=$?
sed 's/^/    verify> /' "$IT_TMP/verify.txt"
if [ "$rc" -ne 0 ]; then
	# Anything other than the missing installed binary is a real complaint.
	others=$(grep -Ev "Command ($INSTALLED|$INSTALLED_CTL) is not executable: No such file or directory" \
		"$IT_TMP/verify.txt" | grep -Ev '^\s*$' || true)
	[ -z "$others" ] || it_fail "systemd-analyze verify complains: $others"
	[ ! -e "$INSTALLED" ] || it_fail "systemd-analyze verify failed (exit $rc) with $INSTALLED present"
	it_log "  only the missing $INSTALLED: verifying a copy that runs $(it_bin r2p2d)"
	mkdir -p "$IT_TMP/unit"
	sed -e "s#$INSTALLED_CTL#$(it_bin r2p2ctl)#g" -e "s#$INSTALLED #$(it_bin r2p2d) #g" \
		"$unit" >"$IT_TMP/unit/r2p2d.service"
	rc=0
	systemd-analyze verify "$IT_TMP/unit/r2p2d.service" >"$IT_TMP/verify.txt" 2>&1 || rc=$?
	sed 's/^/    verify> /' "$IT_TMP/verify.txt"
fi
it_check "systemd-analyze verify passes (exit $rc)" test "$rc" -eq 0

it_log "--- 3. the router's unit"
runit=$R2P2_SRC/tools/r2p2-router.service
RINSTALLED=/usr/local/bin/r2p2-router
it_check "Type=notify (r2p2-router says READY=1 once attached)" grep -qx 'Type=notify' "$runit"
it_check "ExecStartPre checks the config (--check)" \
	grep -Eqx "ExecStartPre=$RINSTALLED -c [^ ]+ --check" "$runit"
it_check "ExecReload sends SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$runit"
mkdir -p "$IT_TMP/unit"
sed -e "s#$RINSTALLED #$(it_bin r2p2-router) #g" "$runit" >"$IT_TMP/unit/r2p2-router.service"
rc=0
systemd-analyze verify "$IT_TMP/unit/r2p2-router.service" >"$IT_TMP/verify-router.txt" 2>&1 || rc=$?
sed 's/^/    verify> /' "$IT_TMP/verify-router.txt"
it_check "systemd-analyze verify passes for the router's unit (exit $rc)" test "$rc" -eq 0
it_pass "the units are valid Type=notify services with reload, check and drain settings"
