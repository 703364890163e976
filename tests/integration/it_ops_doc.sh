#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_ops_doc: the commands of docs/OPERATIONS.md run as written.
#
# Every fenced block of the page is read in order. A shell block (```sh, ```bash, ```shell,
# ```console) must carry a marker on the line just before its fence, an HTML comment that
# does not show when the page is rendered:
#   <!-- ops-doc: run -->             the block runs here and must exit 0
#   <!-- ops-doc: run after r2p2d is killed -->
#                                     the same, once the test has killed r2p2d with SIGKILL
#                                     (what the page says of a crash's leftovers)
#   <!-- ops-doc: skip: REASON -->    it cannot run here (a package download, systemd as
#                                     PID 1, r2p2-router in the foreground), and why
# A shell block without one, a block without a language (say what it is: ```text,
# ```ini, ...), an unknown or stray marker fail the test, so that new commands cannot
# escape it. Other blocks (configuration, sample output) are ignored. Of a ```console
# block, the lines after "$ " run; the others are its output.
#
# The blocks run as root would type them, in order, each with `bash -euo pipefail` (30 s at
# most), in network namespace A, whose interface is eth1 as on the page, from a checkout
# whose ./build is the build tree under test, with root's PATH. A block fails as well if a
# line of its output is `null` (what jq prints for a path that is not there). The whole test
# runs in a private mount namespace: /etc and /run are overlays whose changes vanish with
# it, /usr/local is an empty directory, /sys is namespace A's with a bpffs of its own, so
# the doc's `cmake --install build`, ldconfig, /etc/r2p2, /run/r2p2 and the XDP pins never
# touch the host. Once a block has installed r2p2d, the test does what the page says next
# ("then edit it"): it writes /etc/r2p2/r2p2d.conf (the xdp backend on eth1 serving
# echo.svc, no app for it, and calling echo.svc on namespace B; metrics on 127.0.0.1:9464)
# and starts the installed r2p2d with it as the unit would, on the default control socket;
# namespace B runs a daemon serving echo.svc and the echo server. Before that, the empty
# file the page creates passes `r2p2d --check`. After a block run once r2p2d is killed,
# the program is detached from eth1 and the pins are gone; r2p2d starts again for the
# blocks that follow, and at the end it exits 0 on SIGTERM. With a sanitized build tree,
# `cc` (first on the blocks' PATH) is clang with the sanitizers and /usr/bin/python3
# preloads their runtime, as it_install and it_python do: the installed libr2p2 needs them.
#
# It also checks the package list of "Installing": the `apt-get install` line must name
# exactly the packages of BUILD_PKGS in tools/dev.sh, and every package any `apt-get
# install` of the page names must be one that dev.sh installs.
set -euo pipefail

# A private mount namespace around everything; the directory that holds its overlays is
# removed by this outer shell, which the namespace's mounts never reach.
if [ -z "${R2P2_OPS_DOC_ROOT:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root (mount and network namespaces)"; exit 77; }
	command -v unshare >/dev/null || { echo "SKIPPED: unshare (util-linux) is not installed"; exit 77; }
	root=$(mktemp -d /tmp/r2p2-it-ops-doc-root.XXXXXX)
	R2P2_OPS_DOC_ROOT=$root unshare --mount --propagation private bash "$0" "$@" &
	child=$!
	trap 'kill -TERM "$child" 2>/dev/null' TERM INT
	rc=0
	while kill -0 "$child" 2>/dev/null; do
		wait "$child" && rc=0 || rc=$?
	done
	rmdir "$root" 2>/dev/null || true
	exit "$rc"
fi

# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$R2P2_OPS_DOC_ROOT
DOC=$R2P2_SRC/docs/OPERATIONS.md
DEVSH=$R2P2_SRC/tools/dev.sh
CONF=/etc/r2p2/r2p2d.conf
SOCK=/run/r2p2/r2p2d.sock

# The overlays, before it_init: `ip netns add` must make its mounts in the new /run.
if ! mount -t tmpfs -o mode=0755 r2p2-ops-doc "$ROOT" 2>/dev/null; then
	echo "SKIPPED: cannot mount a tmpfs in a private mount namespace"
	exit 77
fi
mkdir -p "$ROOT/etc" "$ROOT/etc.work" "$ROOT/run" "$ROOT/run.work" "$ROOT/usr-local"
for d in etc run; do
	if ! mount -t overlay "r2p2-ops-doc-$d" \
		-o "lowerdir=/$d,upperdir=$ROOT/$d,workdir=$ROOT/$d.work" "/$d" 2>"$ROOT/mount.err"; then
		echo "SKIPPED: cannot mount an overlay on /$d: $(head -n 1 "$ROOT/mount.err")"
		exit 77
	fi
done
mount --bind "$ROOT/usr-local" /usr/local

it_init
for tool in cmake pkg-config cc clang openssl curl jq nsenter bpftool; do
	command -v "$tool" >/dev/null || it_skip "$tool is missing (tools/dev.sh installs it)"
done
[ -x /usr/bin/python3 ] || it_skip "/usr/bin/python3 is missing (Debian's python3)"
/usr/bin/python3 -c 'import cffi' 2>/dev/null || it_skip "python3-cffi is missing"
BUILD=$(cd "$R2P2_BUILD" && pwd)
[ -f "$BUILD/cmake_install.cmake" ] || it_skip "$BUILD is not a cmake build tree"
[ -f "$DOC" ] || it_fail "$DOC is missing"

# ---- the blocks and their markers ------------------------------------------------------
BLOCKS=$IT_TMP/blocks
mkdir -p "$BLOCKS"
# Each block N: N.meta (line, language, marker), N.body; problems of the page in errors.
awk -v dir="$BLOCKS" '
	/^```/ && !inb {
		inb = 1; n++; f = sprintf("%s/%03d", dir, n)
		printf "%d\t%s\t%s\n", NR, substr($0, 4), marker > (f ".meta"); close(f ".meta")
		printf "" > (f ".body"); marker = ""; pending = 0; next
	}
	/^```[ \t]*$/ && inb { inb = 0; close(f ".body"); next }
	inb { print > (f ".body"); next }
	{
		if (pending) print "line " pending ": an ops-doc marker not right before a fence" > (dir "/errors")
		marker = ""; pending = 0
		if ($0 ~ /^<!-- *ops-doc:/) {
			if ($0 !~ /^<!-- ops-doc: .* -->$/) print "line " NR ": malformed marker: " $0 > (dir "/errors")
			else { marker = substr($0, 15, length($0) - 18); pending = NR }
		}
	}
	END { if (inb) print "line " NR ": a block is never closed" > (dir "/errors") }
' "$DOC"

errors=()
[ ! -s "$BLOCKS/errors" ] || mapfile -t errors <"$BLOCKS/errors"
RUN=()
SKIPPED=()
nblocks=0
for meta in "$BLOCKS"/*.meta; do
	IFS=$'\t' read -r line lang marker <"$meta"
	nblocks=$((nblocks + 1))
	case $lang in
	sh | bash | shell | console) shell=1 ;;
	"") errors+=("line $line: a fenced block without a language (\`\`\`sh, console, ini, text, ...)") ;;
	*) shell=0 ;;
	esac
	[ -n "$lang" ] || continue
	case $marker in
	run | "run after r2p2d is killed")
		if [ "$shell" -eq 1 ]; then
			RUN+=("${meta%.meta}")
		else
			errors+=("line $line: 'run' on a \`\`\`$lang block")
		fi
		;;
	"skip: "?*) SKIPPED+=("line $line: ${marker#skip: }") ;;
	"")
		[ "$shell" -eq 0 ] ||
			errors+=("line $line: a \`\`\`$lang block without <!-- ops-doc: run --> or <!-- ops-doc: skip: REASON -->")
		;;
	*) errors+=("line $line: unknown marker '$marker' (run, run after r2p2d is killed, skip: REASON)") ;;
	esac
done
if [ "${#errors[@]}" -gt 0 ]; then
	printf '  %s\n' "${errors[@]}"
	it_fail "docs/OPERATIONS.md: ${#errors[@]} block(s) without a valid ops-doc marker"
fi
it_log "  ok: $nblocks blocks: ${#RUN[@]} run, ${#SKIPPED[@]} skipped, every shell block marked"

# ---- the package list ------------------------------------------------------------------
# pkgs ARRAY: the words of `ARRAY=(...)` in tools/dev.sh, one per line.
pkgs() {
	sed -n "/^$1=(/,/)/p" "$DEVSH" | sed "s/^$1=(//; s/)\$//" | tr -s '[:blank:]' '\n' | sed '/^$/d' | sort -u
}
doc_text=$(tr '\n' ' ' <"$DOC")
# shellcheck disable=SC2016 # the backquotes are the page's
doc_build=$(grep -o 'Without `dev.sh`: `apt-get install [^`]*`' <<<"$doc_text" |
	sed 's/^Without `dev.sh`: `apt-get install //; s/`$//' | tr -s ' ' '\n' | sed '/^$/d' | sort -u)
dev_build=$(pkgs BUILD_PKGS)
it_check "tools/dev.sh has a BUILD_PKGS list" test -n "$dev_build"
it_check "\"Installing\" has the apt-get install line" test -n "$doc_build"
only_doc=$(comm -23 <(echo "$doc_build") <(echo "$dev_build") | paste -sd ' ' -)
only_dev=$(comm -13 <(echo "$doc_build") <(echo "$dev_build") | paste -sd ' ' -)
it_check "the apt-get line of \"Installing\" is BUILD_PKGS of tools/dev.sh${only_doc:+ (only in the doc: $only_doc)}${only_dev:+ (missing from the doc: $only_dev)}" \
	test -z "$only_doc$only_dev"
dev_all=$(for a in BUILD_PKGS TOOL_PKGS TEST_PKGS BENCH_PKGS; do pkgs "$a"; done | sort -u)
doc_all=$(grep -o 'apt-get install [a-z0-9][a-z0-9.+ -]*' <<<"$doc_text" | sed 's/^apt-get install //' |
	tr -s ' ' '\n' | grep -v '^-' | sed '/^$/d' | sort -u)
unknown=$(comm -23 <(echo "$doc_all") <(echo "$dev_all") | paste -sd ' ' -)
it_check "every package an apt-get install of the page names is one dev.sh installs${unknown:+ (not: $unknown)}" \
	test -z "$unknown"

# ---- the operator's host: namespace A, a checkout, root's PATH -------------------------
it_netns "$IT_NS_A"
it_netns "$IT_NS_B"
it_link "$IT_NS_A" eth1 "$IT_A4" "$IT_A6" "$IT_NS_B" "r2b$IT_ID" "$IT_B4" "$IT_B6"
it_log "namespaces $IT_NS_A (eth1: $IT_A4) <-> $IT_NS_B ($IT_B4)"
# A's /sys (r2p2d counts eth1's queues there) and a bpffs of this mount namespace alone.
nsenter --net="/run/netns/$IT_NS_A" mount -t sysfs r2p2-ops-doc-sys /sys
mount -t bpf r2p2-ops-doc-bpf /sys/fs/bpf
WORK=$IT_TMP/checkout
mkdir -p "$WORK" "$IT_TMP/home" "$IT_TMP/wrap"
for f in "$R2P2_SRC"/*; do
	case ${f##*/} in build*) continue ;; esac
	ln -s "$f" "$WORK/"
done
ln -s "$BUILD" "$WORK/build"
if grep -q '^R2P2_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	# The installed libr2p2 is instrumented: programs that link it need the sanitizers,
	# an interpreter that loads it their runtime (as in it_install and it_python).
	clang=$(command -v clang)
	printf '#!/bin/sh\nexec %s -fsanitize=address,undefined "$@"\n' "$clang" >"$IT_TMP/wrap/cc"
	chmod 0755 "$IT_TMP/wrap/cc"
	rt=$("$clang" -print-file-name="libclang_rt.asan-$(uname -m).so")
	[ -f "$rt" ] || it_skip "the sanitized build needs $rt for Python (libclang-rt-14-dev)"
	py=$(readlink -f /usr/bin/python3)
	cp "$py" "$ROOT/python-real"
	printf '#!/bin/sh\nPYTHONHOME=/usr LD_PRELOAD=%s ASAN_OPTIONS=detect_leaks=0 exec %s "$@"\n' \
		"$rt" "$ROOT/python-real" >"$ROOT/python-wrap"
	chmod 0755 "$ROOT/python-wrap"
	mount --bind "$ROOT/python-wrap" "$py"
	it_log "sanitized build tree: cc is clang -fsanitize=address,undefined, $py preloads $rt"
fi
run_env=(env -i "PATH=$IT_TMP/wrap:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	"HOME=$IT_TMP/home" LANG=C.UTF-8 TERM=dumb)

# in_a COMMAND...: in namespace A, this mount namespace (nsenter, not ip netns exec, which
# would mount a /sys of its own), with the blocks' environment.
in_a() { nsenter --net="/run/netns/$IT_NS_A" "${run_env[@]}" "$@"; }

DAEMONS=0
A_PID=
# shellcheck disable=SC2317 # run through it_check
# not_null LOG: no line of LOG is jq's null.
not_null() { ! grep -qx null "$1"; }
# start_daemons: what the page asks between installing and calling: edit the config (the
# empty one must pass --check), start the installed r2p2d with it; B serves echo.svc.
start_daemons() {
	local out
	out=$(in_a r2p2d --config "$CONF" --check 2>&1) || it_fail "the empty $CONF: $out"
	it_log "  ok: r2p2d --check of the empty $CONF: $out"
	{
		it_conf_daemon b "$IT_B4"
		it_conf_serve echo.svc "$IT_ECHO_PORT"
	} >"$IT_TMP/b.conf"
	it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
	it_start_echo -n echo.svc
	cat >"$CONF" <<-EOF
		[daemon]
		listen = $IT_A4
		backend = xdp
		metrics = 127.0.0.1:9464

		[serve echo.svc]
		port = $IT_ECHO_PORT

		[call echo.svc]
		server = $IT_B4:$IT_ECHO_PORT
	EOF
	start_a
	DAEMONS=1
}

# start_a: the installed r2p2d with $CONF in namespace A, as the unit starts it.
start_a() {
	nsenter --net="/run/netns/$IT_NS_A" "${run_env[@]}" r2p2d --config "$CONF" \
		>>"$IT_TMP/r2p2d-a.log" 2>&1 &
	A_PID=$!
	IT_PIDS+=("$A_PID")
	it_wait_for 5 "the installed r2p2d to answer on $SOCK" a_answers
	it_log "installed r2p2d running in $IT_NS_A with $CONF (pid $A_PID, socket $SOCK)"
}

# shellcheck disable=SC2317 # run through it_wait_for
a_answers() {
	it_alive "$A_PID" || it_fail "the installed r2p2d exited during start-up; see r2p2d-a.log"
	in_a r2p2ctl status >/dev/null 2>&1
}

# shellcheck disable=SC2317 # run through it_check
# leftover: whether eth1 has an XDP program or the pins are there.
leftover() {
	ip -n "$IT_NS_A" link show dev eth1 2>/dev/null | grep -q 'prog/xdp' || [ -e /sys/fs/bpf/r2p2/eth1 ]
}
# shellcheck disable=SC2317 # run through it_check
no_leftover() { ! leftover; }

for b in "${RUN[@]}"; do
	IFS=$'\t' read -r line lang marker <"$b.meta"
	if [ "$DAEMONS" -eq 1 ]; then
		if [ "$marker" = "run after r2p2d is killed" ]; then
			{ kill -KILL "$A_PID" && wait "$A_PID"; } 2>/dev/null || true
			it_check "r2p2d killed with SIGKILL leaves its XDP program and pins" leftover
		elif ! it_alive "$A_PID"; then
			start_a
		fi
	elif [ "$marker" != run ]; then
		it_fail "line $line: '$marker' before any block installed r2p2d"
	fi
	if [ "$lang" = console ]; then
		sed -n 's/^\$ //p' "$b.body" >"$b.sh"
	else
		cp "$b.body" "$b.sh"
	fi
	log=$IT_TMP/block-$line.log
	it_log "--- line $line: $(head -n 1 "$b.sh")$([ "$(wc -l <"$b.sh")" -le 1 ] || echo " ...")"
	rc=0
	(cd "$WORK" && timeout 30 nsenter --net="/run/netns/$IT_NS_A" "${run_env[@]}" \
		bash -euo pipefail "$b.sh") >"$log" 2>&1 || rc=$?
	sed 's/^/    /' "$log" | tail -n 8
	it_check "the block at line $line exits 0 (exit $rc)" test "$rc" -eq 0
	it_check "and no line of its output is null" not_null "$log"
	if [ "$marker" = "run after r2p2d is killed" ]; then
		it_check "nothing of the killed r2p2d is left on eth1 or in /sys/fs/bpf" no_leftover
	fi
	if [ "$DAEMONS" -eq 0 ] && [ -x /usr/local/bin/r2p2d ]; then
		start_daemons
	fi
done
it_check "the blocks started the daemons (a block installed r2p2d)" test "$DAEMONS" -eq 1
it_alive "$A_PID" || start_a
kill -TERM "$A_PID"
rc=0
it_wait_exit "$A_PID" 10 || rc=$?
it_check "the installed r2p2d exits 0 on SIGTERM (exit $rc)" test "$rc" -eq 0
it_check "and leaves nothing on eth1 or in /sys/fs/bpf" no_leftover
for s in "${SKIPPED[@]}"; do
	it_log "  not run: $s"
done
it_pass "${#RUN[@]} blocks of docs/OPERATIONS.md ran as written, ${#SKIPPED[@]} are marked skipped"
