#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_life_config: a bad configuration stops r2p2d at start, with file:line and key.
#  1. For each of several broken files, `r2p2d --config F` exits 1 at once (it never
#     starts: no control socket appears) and prints "F:LINE: [section] key: problem";
#     `--check` gives the same message and status.
#  2. `r2p2d --config good.conf --check` exits 0, prints "good.conf: ok (...)" and
#     starts nothing; a usage error exits 2.
# No network namespace is needed: nothing here may get as far as opening a socket, and
# every file listens on 127.0.0.1 with its control socket in the test's directory in case
# it wrongly does.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# daemon_head: a valid [daemon] section (lines 1-4).
daemon_head() { printf '[daemon]\nlisten = 127.0.0.1\nworkers = 1\nsocket = %s\n' "$IT_TMP/ctl.sock"; }

# expect_refused NAME EXPECTED: the file $IT_TMP/NAME.conf is refused at start and by
# --check, both with exit 1 and the message "$IT_TMP/NAME.conf:EXPECTED" on stderr.
expect_refused() {
	local name=$1 want="$IT_TMP/$1.conf:$2" mode rc out
	for mode in start check; do
		rc=0
		if [ "$mode" = start ]; then
			timeout 10 "$R2P2D" --config "$IT_TMP/$name.conf" >"$IT_TMP/$name.out" 2>&1 || rc=$?
		else
			timeout 10 "$R2P2D" --config "$IT_TMP/$name.conf" --check >"$IT_TMP/$name.out" \
				2>&1 || rc=$?
		fi
		out=$(head -n 3 "$IT_TMP/$name.out")
		it_log "    $mode> $out"
		[ "$rc" -ne 124 ] || it_fail "$name: r2p2d --config started with a broken file (killed after 10 s)"
		it_check "$name ($mode): exit 1 (got $rc)" test "$rc" -eq 1
		it_check "$name ($mode): says '$want'" grep -qF -- "$want" "$IT_TMP/$name.out"
		it_check "$name ($mode): no control socket was created" test ! -e "$IT_TMP/ctl.sock"
	done
}

it_init_local
R2P2D=$(it_bin r2p2d)

it_log "--- 1. broken files"
{ daemon_head; printf 'bogus_key = 1\n'; } >"$IT_TMP/unknown-key.conf"
expect_refused unknown-key '5: [daemon] bogus_key: unknown key'

{ daemon_head; printf '\n[serve echo.svc]\nport = 8000\ncolour = blue\n'; } >"$IT_TMP/serve-key.conf"
expect_refused serve-key '8: [serve echo.svc] colour: unknown key'

printf '[daemon]\nlisten = 127.0.0.1\nworkers = 0\n' >"$IT_TMP/workers.conf"
expect_refused workers '3: [daemon] workers: 0 is out of range (1..64)'

{ daemon_head; printf '\n[call echo.svc]\nserver = 10.0.0.300:8000\n'; } >"$IT_TMP/address.conf"
expect_refused address "7: [call echo.svc] server: bad address '10.0.0.300:8000'"

{ daemon_head; printf '\n[serve a.svc]\nport = 8000\n\n[serve b.svc]\nport = 8000\n'; } \
	>"$IT_TMP/same-port.conf"
expect_refused same-port '10: [serve b.svc] port: port 8000 is already used by [serve a.svc] (line 7)'

{ daemon_head; printf '\n[server echo]\n'; } >"$IT_TMP/section.conf"
expect_refused section '6: unknown section [server echo]'

rc=0
"$R2P2D" --config "$IT_TMP/missing.conf" >"$IT_TMP/missing.out" 2>&1 || rc=$?
it_log "    start> $(head -n 1 "$IT_TMP/missing.out")"
it_check "a missing file: exit 1 and '$IT_TMP/missing.conf: cannot open'" \
	bash -c "[ $rc -eq 1 ] && grep -qF '$IT_TMP/missing.conf: cannot open' '$IT_TMP/missing.out'"

it_log "--- 2. a good file and usage"
{
	daemon_head
	printf '\n[serve echo.svc]\nport = 8000\n\n[call echo.svc]\nserver = 127.0.0.1:8000\n'
} >"$IT_TMP/good.conf"
rc=0
out=$(timeout 10 "$R2P2D" --config "$IT_TMP/good.conf" --check 2>&1) || rc=$?
it_log "    check> $out"
it_check "--check of a good file exits 0 (got $rc)" test "$rc" -eq 0
it_check "and says '$IT_TMP/good.conf: ok (1 services served, 1 called)'" \
	test "$out" = "$IT_TMP/good.conf: ok (1 services served, 1 called)"
it_check "--check started nothing (no control socket)" test ! -e "$IT_TMP/ctl.sock"
rc=0
out=$(timeout 10 "$R2P2D" -t -c "$IT_TMP/good.conf" 2>&1) || rc=$?
it_check "-t is --check (exit $rc: $out)" test "$rc" -eq 0 -a "$out" = "$IT_TMP/good.conf: ok (1 services served, 1 called)"
VER=$(sed -n 's/^#define R2P2_VERSION "\(.*\)"$/\1/p' "$R2P2_SRC/include/r2p2/r2p2.h")
out=$("$R2P2D" --version)
it_check "--version prints '$out'" test "$out" = "r2p2d $VER"
out=$("$(it_bin r2p2ctl)" --version)
it_check "r2p2ctl --version prints '$out'" test "$out" = "r2p2ctl $VER"
rc=0
"$R2P2D" --config "$IT_TMP/good.conf" --no-such-option >/dev/null 2>&1 || rc=$?
it_check "an unknown option exits 2 (got $rc)" test "$rc" -eq 2
rc=0
"$R2P2D" >/dev/null 2>&1 || rc=$?
it_check "no --config exits 2 (got $rc)" test "$rc" -eq 2
it_pass "a broken config never starts r2p2d and names file, line, section and key"
