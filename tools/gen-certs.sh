#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gen-certs.sh DIR SERVICE...: demo PKI and STEK for r2p2d's tls mode.
#
# Creates in DIR (mode 0700):
#   ca.key, ca.crt              a demo CA (EC P-256, 10 years)
#   SERVICE.key, SERVICE.crt    per service: EC P-256 key, certificate with
#                               subjectAltName DNS:SERVICE signed by the CA (825 days)
#   stek.keys                   session-ticket encryption keys (one current key)
# Keys are mode 0600. Idempotent: existing files are kept, only missing ones are made
# (a certificate is re-issued only if it is missing). Uses the openssl CLI (a separate
# process; r2p2d itself links BoringSSL only) and `r2p2ctl stek generate` when built.
# For anything beyond a demo, use your real CA and secret store (docs/OPERATIONS.md).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { printf 'gen-certs.sh: %s\n' "$*" >&2; exit 1; }
log() { printf 'gen-certs.sh: %s\n' "$*"; }

if [ $# -lt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
	echo "usage: $0 DIR SERVICE..." >&2
	echo "  e.g. $0 /etc/r2p2/tls echo.svc kv.svc" >&2
	exit 2
fi
command -v openssl >/dev/null || die "the openssl CLI is missing: apt-get install openssl"

DIR=$1
shift
for svc in "$@"; do
	# the service-name rule of r2p2d.conf, which also keeps file names and SANs sane
	if ! [[ $svc =~ ^[A-Za-z0-9._-]{1,47}$ ]] || [[ $svc == .* ]]; then
		die "bad service name '$svc' (1-47 characters of A-Z a-z 0-9 . _ -, not starting with '.')"
	fi
done

umask 077
mkdir -p "$DIR"
chmod 0700 "$DIR"
TMP=$(mktemp -d "$DIR/.gen-certs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# new_key PATH: an EC P-256 private key (PKCS#8 PEM), mode 0600, moved into place.
new_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/key.pem" 2>/dev/null
	chmod 0600 "$TMP/key.pem"
	mv "$TMP/key.pem" "$1"
}

# ---- CA -----------------------------------------------------------------------------
if [ ! -s "$DIR/ca.key" ]; then
	[ ! -e "$DIR/ca.crt" ] || die "$DIR/ca.crt exists without ca.key; remove it or restore the key"
	new_key "$DIR/ca.key"
	log "created $DIR/ca.key"
fi
if [ ! -s "$DIR/ca.crt" ]; then
	openssl req -x509 -new -key "$DIR/ca.key" -sha256 -days 3650 \
		-subj "/CN=r2p2 demo CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$TMP/ca.crt"
	chmod 0644 "$TMP/ca.crt"
	mv "$TMP/ca.crt" "$DIR/ca.crt"
	log "created $DIR/ca.crt"
fi

# ---- services -----------------------------------------------------------------------
for svc in "$@"; do
	key="$DIR/$svc.key"
	crt="$DIR/$svc.crt"
	if [ ! -s "$key" ]; then
		rm -f "$crt" # a certificate for a lost key is useless
		new_key "$key"
		log "created $key"
	fi
	chmod 0600 "$key"
	if [ -s "$crt" ] && openssl verify -CAfile "$DIR/ca.crt" "$crt" >/dev/null 2>&1; then
		log "kept $crt"
		continue
	fi
	cat >"$TMP/ext.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:$svc
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
	openssl req -new -key "$key" -subj "/CN=$svc" -out "$TMP/req.csr"
	openssl x509 -req -in "$TMP/req.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
		-extfile "$TMP/ext.cnf" -out "$TMP/svc.crt" 2>/dev/null
	openssl verify -CAfile "$DIR/ca.crt" "$TMP/svc.crt" >/dev/null
	chmod 0644 "$TMP/svc.crt"
	mv "$TMP/svc.crt" "$crt"
	log "created $crt (subjectAltName DNS:$svc)"
done

# ---- STEK ---------------------------------------------------------------------------
stek="$DIR/stek.keys"
if [ -e "$stek" ]; then
	log "kept $stek"
else
	ctl=""
	for c in "${R2P2CTL:-}" "$SRC/build/r2p2ctl" "$(command -v r2p2ctl || true)"; do
		if [ -n "$c" ] && [ -x "$c" ] && "$c" --help 2>/dev/null | grep -q 'stek generate'; then
			ctl=$c
			break
		fi
	done
	if [ -n "$ctl" ]; then
		"$ctl" stek generate "$stek" >/dev/null
		log "created $stek (with $ctl)"
	else
		# same format as r2p2ctl: id below 2^31 so increments never wrap
		id=$(printf '%08x' $((0x$(openssl rand -hex 4) & 0x7fffffff | 1)))
		{
			echo "# r2p2d session-ticket encryption keys (keep secret; mode 0600)"
			echo "# id       role      key (32 bytes, hex)"
			printf '%s   current   %s\n' "$id" "$(openssl rand -hex 32)"
		} >"$TMP/stek.keys"
		chmod 0600 "$TMP/stek.keys"
		mv -n "$TMP/stek.keys" "$stek"
		log "created $stek (with openssl rand; r2p2ctl not built)"
	fi
fi
chmod 0600 "$DIR"/*.key "$stek"
