#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_check_keys: `r2p2d --check` loads what the config points to, as a start would, and
# names the file, the line and the key of what is wrong: a missing certificate, a key that
# does not match its certificate, a certificate that does not name the service (clients
# would refuse it at call time), a STEK file others may read, a missing CA bundle, a
# socket_group that does not exist. A good config passes.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

it_tls_init
it_tls_certs "$IT_TLS" echo.svc other.svc
R2P2D=$(it_bin r2p2d)

# conf NAME CERT KEY STEK CA [DAEMON_LINE]: a config serving echo.svc (tls) and calling it.
conf() {
	{
		printf '[daemon]\nstek = %s\n%s\n\n' "$4" "${6:-}"
		printf '[serve echo.svc]\nport = 8000\nsecurity = tls\ncert = %s\nkey = %s\n\n' "$2" "$3"
		printf '[call echo.svc]\nsecurity = tls\nca = %s\nserver = 127.0.0.1:8000\n' "$5"
	} >"$IT_TMP/$1.conf"
}
# refused NAME EXPECTED: --check of NAME.conf exits 1 and says EXPECTED (a grep -E pattern).
refused() {
	local rc=0 out
	out=$(timeout 10 "$R2P2D" --config "$IT_TMP/$1.conf" --check 2>&1) || rc=$?
	it_log "    $1> $out"
	it_check "$1: --check exits 1 (got $rc)" test "$rc" -eq 1
	it_check "$1: it says /$2/" grep -Eq -- "$2" <<<"$out"
}

T=$IT_TLS
conf good "$T/echo.svc.crt" "$T/echo.svc.key" "$T/stek.keys" "$T/ca.crt"
it_check "a good tls config passes --check" "$R2P2D" --config "$IT_TMP/good.conf" --check

conf nocert "$T/missing.crt" "$T/echo.svc.key" "$T/stek.keys" "$T/ca.crt"
refused nocert "nocert.conf:5: \[serve echo.svc\] tls: echo.svc: cannot load certificate chain .*missing.crt"
conf mismatch "$T/echo.svc.crt" "$T/other.svc.key" "$T/stek.keys" "$T/ca.crt"
refused mismatch "mismatch.conf:5: \[serve echo.svc\] .*key .*other.svc.key does not match certificate"
conf wrongsan "$T/other.svc.crt" "$T/other.svc.key" "$T/stek.keys" "$T/ca.crt"
refused wrongsan "wrongsan.conf:5: \[serve echo.svc\] .*does not name echo.svc"
cp "$T/stek.keys" "$IT_TMP/open.keys"
chmod 0644 "$IT_TMP/open.keys"
conf openstek "$T/echo.svc.crt" "$T/echo.svc.key" "$IT_TMP/open.keys" "$T/ca.crt"
refused openstek "openstek.conf:2: \[daemon\] stek: .*open.keys.*(0644|mode)"
conf noca "$T/echo.svc.crt" "$T/echo.svc.key" "$T/stek.keys" "$T/missing-ca.crt"
refused noca "noca.conf: \[call echo.svc\] ca: .*missing-ca.crt"
conf nogroup "$T/echo.svc.crt" "$T/echo.svc.key" "$T/stek.keys" "$T/ca.crt" \
	"socket_group = r2p2-no-such-group-$IT_ID"
refused nogroup "\[daemon\] socket_group: no such group 'r2p2-no-such-group-$IT_ID'"
it_pass "--check loads certificates, keys, STEK files and CA bundles, and names what is wrong"
