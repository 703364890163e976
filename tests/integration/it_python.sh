#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# it_python: the Python binding, as installed by `cmake --install`, interoperates with the C
# tools through a pair of daemons, and its errors are libr2p2's.
#
# The build tree is installed into a fresh prefix; the installed package (with no
# LD_LIBRARY_PATH: it loads the prefix's libr2p2) and the installed examples run in namespace
# A or B. Checked:
# - the Python echo server (B) answers the C echo client (A) for 4 B, 1465 B (two packets)
#   and 64 KiB, every byte verified, runs each request once, and serves again after daemon
#   B restarts;
# - the Python echo client (A) calls the C echo server (B) with call_sync, with 16 calls in
#   flight (call + poll), and not replay-safe both ways, and asyncio_client.py awaits 5
#   concurrent calls through fileno(); the C server runs each call once;
# - a full ring: with daemon A stopped, call() polls and retries for RING_FULL_WAIT_MS, then
#   raises EAGAIN, and a call made as A resumes goes through, with and without fileno() in
#   use (then a selector wakes for every response); likewise respond() in a Python
#   server holding 20 requests while daemon B is stopped; every response verified;
# - errors are r2p2.Error with libr2p2's errno and text: call_sync ENOENT (a service daemon
#   A does not call), ETIMEDOUT (a server slower than the timeout), EBUSY (a call in
#   flight); register ENOENT (a service A does not serve); attach ENOENT (no socket);
# - cancel ends a call with -ECANCELED, then raises ENOENT; fileno() wakes a selector;
#   a second thread entering a context in use gets RuntimeError, a closed one ValueError.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian's interpreter: the python3 first on a PATH may be another one, without python3-cffi.
PY=${R2P2_PYTHON:-/usr/bin/python3}
COUNT=20

it_init
[ -x "$PY" ] || it_skip "$PY is missing (Debian's python3)"
"$PY" -c 'import cffi' 2>/dev/null || it_skip "$PY has no cffi module (apt-get install python3-cffi)"
command -v cmake >/dev/null || it_skip "cmake is missing"
BUILD=$(cd "$R2P2_BUILD" && pwd)
[ -f "$BUILD/cmake_install.cmake" ] || it_skip "$BUILD is not a cmake build tree"

PREFIX=$IT_TMP/prefix
it_check "cmake --install $BUILD --prefix $PREFIX" \
	cmake --install "$BUILD" --prefix "$PREFIX" >"$IT_TMP/install.log"
pkg=$(find "$PREFIX" -path '*-packages/r2p2/__init__.py' | head -n 1)
it_check "the r2p2 package is installed (${pkg:-none})" test -n "$pkg"
SITE=${pkg%/r2p2/__init__.py}
EXAMPLES=$PREFIX/share/doc/r2p2d/examples/python
it_check "the Python examples are installed, executable" \
	test -x "$EXAMPLES/echo_server.py" -a -x "$EXAMPLES/echo_client.py"

py_env=(env PYTHONPATH="$SITE" PYTHONDONTWRITEBYTECODE=1)
if grep -q '^R2P2_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	# libr2p2 of this tree is instrumented, the interpreter is not (as in tests/CMakeLists.txt)
	cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
	rt=$("$cc" -print-file-name="libclang_rt.asan-$(uname -m).so")
	[ -f "$rt" ] || rt="$("$cc" -print-file-name=libasan.so):$("$cc" -print-file-name=libubsan.so)"
	py_env+=(LD_PRELOAD="$rt" ASAN_OPTIONS=detect_leaks=0)
fi
lib=$("${py_env[@]}" "$PY" -c 'import r2p2; print(r2p2.LIBRARY_PATH)')
it_check "the installed package loads the prefix's libr2p2 ($lib)" test "$lib" = "$PREFIX/lib/libr2p2.so.0"

# shellcheck disable=SC2317 # run through it_check
# py SIDE NS [NAME=VALUE...] ARGS...: the prefix's Python, attached to daemon SIDE, in
# namespace NS, with those variables in its environment.
py() {
	local side=$1 ns=$2 vars=()
	shift 2
	while [[ $# -gt 0 && $1 =~ ^[A-Z_]+= ]]; do
		vars+=("$1")
		shift
	done
	timeout 120 ip netns exec "$ns" "${py_env[@]}" R2P2_SOCKET="$(it_sock "$side")" "${vars[@]}" \
		"$PY" "$@"
}

it_setup_pair
{
	it_conf_daemon b "$IT_B4"
	printf 'ring_entries = 8\n\n' # so that a stopped daemon B fills them too
	it_conf_serve echo.svc "$IT_ECHO_PORT"
	it_conf_serve slow.svc 8001
	it_conf_serve held.svc 8002
	it_conf_serve status.svc 8003
} >"$IT_TMP/b.conf"
{
	it_conf_daemon a "$IT_A4"
	# small rings on A, so that a stopped daemon A fills them (the ring-full check below)
	printf 'ring_entries = 8\n\n'
	it_conf_call echo.svc 2000 3 "$IT_B4:$IT_ECHO_PORT"
	it_conf_call slow.svc 2000 0 "$IT_B4:8001"
	it_conf_call held.svc 5000 3 "$IT_B4:8002"
	it_conf_call status.svc 3000 2 "$IT_B4:8003"
	printf 'extensions = yes\n\n' # the caller's deadline and the server app's errors
} >"$IT_TMP/a.conf"
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
it_start_daemon a "$IT_NS_A" "$IT_TMP/a.conf"

it_log "--- the Python echo server on B, called by the C echo client on A"
log=$IT_TMP/py-echo-server.log
it_bg "$IT_NS_B" "$log" "${py_env[@]}" R2P2_SOCKET="$(it_sock b)" "$PY" \
	"$EXAMPLES/echo_server.py" -n echo.svc -c
pyserver=$IT_LAST_PID
IT_ECHO_LOG[$pyserver]=$log # it_echo_served asks it with SIGUSR1, as the C server
it_wait_for 10 "the Python echo server's ready line" grep -qs '^echo server ready: echo.svc' "$log"
total=0
for size in 4 1465 65536; do
	it_check "C client -> Python server: $COUNT x $size B verified" \
		it_client -n echo.svc -S "$size" -c "$COUNT" -t 5000
	total=$((total + COUNT))
done
served=$(it_echo_served "$pyserver")
it_check "the Python server ran each of the $total requests once (served $served)" \
	test "$served" -eq "$total"
it_log "restarting daemon B under the Python server"
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_start_daemon b "$IT_NS_B" "$IT_TMP/b.conf"
# shellcheck disable=SC2317 # run through it_wait_for
served_again() { it_client -n echo.svc -c 1 -t 500 >/dev/null 2>&1; }
it_wait_for 10 "the Python server to serve again through the new daemon B" served_again
it_check "C client -> Python server after the restart: $COUNT x 1465 B verified" \
	it_client -n echo.svc -S 1465 -c "$COUNT" -t 5000
it_kill_pid "$pyserver"
wait "$pyserver" 2>/dev/null && rc=0 || rc=$?
it_check "the Python server exits 0 on SIGTERM (exit $rc)" test "$rc" -eq 0
last=$(grep '^served ' "$log" | tail -n 1 | cut -d' ' -f2)
it_check "and prints its count on the way out (served $last)" test "$last" -ge $((total + COUNT))

it_log "--- the C echo server on B, called by the Python echo client on A"
it_start_echo_on b "$IT_NS_B" -n echo.svc -c
cserver=$IT_LAST_PID
it_check "Python client (call_sync) -> C server: $COUNT x 1465 B verified" \
	py a "$IT_NS_A" "$EXAMPLES/echo_client.py" -n echo.svc -S 1465 -c "$COUNT" -t 5000
it_check "Python client (16 in flight) -> C server: 200 x 4000 B verified" \
	py a "$IT_NS_A" "$EXAMPLES/echo_client.py" -n echo.svc -S 4000 -c 200 -w 16 -t 5000
it_check "Python client (call_sync, not replay-safe) -> C server: $COUNT x 64 B verified" \
	py a "$IT_NS_A" "$EXAMPLES/echo_client.py" -n echo.svc -c "$COUNT" -N -t 5000
it_check "Python client (not replay-safe, 4 in flight) -> C server: $COUNT x 64 B verified" \
	py a "$IT_NS_A" "$EXAMPLES/echo_client.py" -n echo.svc -c "$COUNT" -N -w 4 -t 5000
out=$(py a "$IT_NS_A" "$EXAMPLES/asyncio_client.py" -n echo.svc -c 5 -t 2000 hi) ||
	it_fail "asyncio_client.py failed: $out"
it_check "asyncio_client.py: 5 concurrent calls awaited through fileno(), each reply its own" \
	test "$out" = "$(printf 'call %d: hi %d\n' 0 0 1 1 2 2 3 3 4 4)"
served=$(it_echo_served "$cserver")
want=$((COUNT + 200 + COUNT + COUNT + 5))
it_check "the C server ran each of the $want Python calls once (served $served)" \
	test "$served" -eq "$want"

it_log "--- a full ring: call() polls and retries, then raises EAGAIN"
# stop(PID) for the ring-full scripts below
cat >"$IT_TMP/stopper.py" <<'PYEOF'
import os
import signal
import sys
import time


def stop(pid):
    """SIGSTOP, then wait until every thread of pid has stopped: a worker that is
    polling its rings could otherwise still take a few entries."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
            except FileNotFoundError:
                pass
        if states and all(st in "tT" for st in states):
            return
        time.sleep(0.001)
    sys.exit(f"daemon {pid} did not stop within 5 s")
PYEOF
cat >"$IT_TMP/ring.py" <<'PYEOF'
import errno
import os
import selectors
import signal
import sys
import threading
import time

import r2p2
from stopper import stop

pid = int(os.environ["DAEMON_PID"])


def collect(ctx, sel, num):
    """Every event of `num` calls: from poll(), or (sel) when the selector wakes."""
    got = {}
    while len(got) < num:
        if sel and not sel.select(timeout=5):
            sys.exit(f"fileno(): {num - len(got)} responses never woke the selector")
        evs = ctx.poll(timeout_ms=0 if sel else 5000)
        if not evs and not sel:
            sys.exit(f"{num - len(got)} responses missing")
        got.update((ev.id, ev) for ev in evs)
        while sel and (evs := ctx.poll(timeout_ms=0)):  # until [], which re-arms fileno()
            got.update((ev.id, ev) for ev in evs)
    return got


def fill_and_resume(ctx, what, sel=None):
    sent = {}
    stop(pid)  # the daemon takes no submission: the rings fill up
    try:
        t0 = time.monotonic()
        try:
            while len(sent) < 1000:
                data = os.urandom(100)
                sent[ctx.call("echo.svc", data, timeout_ms=5000)] = data
            sys.exit("the rings never filled")
        except r2p2.Error as e:
            waited = time.monotonic() - t0
            if e.errno != errno.EAGAIN or waited < r2p2.RING_FULL_WAIT_MS / 1000:
                sys.exit(f"want EAGAIN after {r2p2.RING_FULL_WAIT_MS} ms: {e!r} after {waited:.3f} s")
            print(f"ok: {what}: full after {len(sent)} calls: {e} (after {waited:.1f} s)")
        # the daemon resumes while call() waits: the call goes through
        threading.Timer(0.3, os.kill, (pid, signal.SIGCONT)).start()
        t0 = time.monotonic()
        sent[ctx.call("echo.svc", b"after the wait", timeout_ms=5000)] = b"after the wait"
        print(f"ok: {what}: a call while full went through after {time.monotonic() - t0:.1f} s")
    finally:
        os.kill(pid, signal.SIGCONT)
    got = collect(ctx, sel, len(sent))
    bad = [i for i, d in sent.items() if got[i].status or got[i].data != d]
    if bad or set(got) != set(sent):
        sys.exit(f"{what}: wrong responses: {bad}")
    print(f"ok: {what}: {len(sent)} responses verified")
    return len(sent)


total = 0
with r2p2.attach() as ctx:
    total += fill_and_resume(ctx, "polling")
with r2p2.attach() as ctx, selectors.DefaultSelector() as sel:
    sel.register(ctx, selectors.EVENT_READ)
    while ctx.poll(timeout_ms=0):  # arm fileno()
        pass
    total += fill_and_resume(ctx, "fileno()", sel)
with open(os.environ["COUNT_FILE"], "w", encoding="ascii") as f:
    f.write(f"{total}\n")
PYEOF
it_check "call() raises EAGAIN after waiting for room, then gets through once A resumes (polling, and with fileno())" \
	py a "$IT_NS_A" DAEMON_PID="${IT_DAEMON_PID[a]}" COUNT_FILE="$IT_TMP/ring.count" "$IT_TMP/ring.py"
before=$served
served=$(it_echo_served "$cserver")
want=$(cat "$IT_TMP/ring.count")
it_check "the C server ran each of those $want calls once (served $((served - before)))" \
	test $((served - before)) -eq "$want"

it_log "--- a full ring on the server's side: respond() polls and retries, then raises EAGAIN"
cat >"$IT_TMP/held.py" <<'PYEOF'
import errno
import os
import signal
import sys
import threading
import time

import r2p2
from stopper import stop

pid = int(os.environ["DAEMON_PID"])
with r2p2.attach() as ctx:
    ctx.register("held.svc")
    print("echo server ready: held.svc", flush=True)
    reqs = []
    while len(reqs) < 20:  # the client keeps 20 in flight
        evs = ctx.poll(timeout_ms=10000)
        if not evs:
            sys.exit(f"only {len(reqs)} requests arrived")
        reqs += [ev for ev in evs if ev.type == r2p2.EV_REQUEST]
    stop(pid)  # daemon B takes no response: a lane's ring fills up
    try:
        answered = 0
        t0 = time.monotonic()
        try:
            for ev in reqs:
                ctx.respond(ev, ev.data)
                answered += 1
            sys.exit("the rings never filled")
        except r2p2.Error as e:
            waited = time.monotonic() - t0
            if e.errno != errno.EAGAIN or waited < r2p2.RING_FULL_WAIT_MS / 1000:
                sys.exit(f"want EAGAIN after {r2p2.RING_FULL_WAIT_MS} ms: {e!r} after {waited:.3f} s")
            print(f"ok: full after {answered} responses: {e} (after {waited:.1f} s)")
        threading.Timer(0.3, os.kill, (pid, signal.SIGCONT)).start()
        for ev in reqs[answered:]:  # the request events outlive many polls: they are copies
            ctx.respond(ev, ev.data)
        print(f"ok: the other {len(reqs) - answered} responses went through as B resumed")
    finally:
        os.kill(pid, signal.SIGCONT)
    errors = [ev for ev in ctx.poll(timeout_ms=500) if ev.type == r2p2.EV_ERROR]
    if errors:
        sys.exit(f"responses failed: {errors}")
PYEOF
held_log=$IT_TMP/held-server.log
it_bg "$IT_NS_B" "$held_log" "${py_env[@]}" R2P2_SOCKET="$(it_sock b)" DAEMON_PID="${IT_DAEMON_PID[b]}" \
	"$PY" "$IT_TMP/held.py"
held=$IT_LAST_PID
it_wait_for 10 "the held.svc server's ready line" grep -qs '^echo server ready: held.svc' "$held_log"
it_check "Python client (20 in flight) -> Python server that answers with B stopped: all verified" \
	py a "$IT_NS_A" "$EXAMPLES/echo_client.py" -n held.svc -S 100 -c 20 -w 20 -t 10000
it_wait_exit "$held" 10 && rc=0 || rc=$?
cat "$held_log"
it_check "respond() raised EAGAIN after waiting, then answered the rest (exit $rc)" test "$rc" -eq 0

it_log "--- errors: r2p2.Error with libr2p2's errno and text"
it_start_echo_on b "$IT_NS_B" -n slow.svc -d 3000000 # answers after 3 s
cat >"$IT_TMP/errors.py" <<'PYEOF'
import errno
import os
import selectors
import sys
import threading
import time

import r2p2


def expect(what, code, fn):
    try:
        fn()
    except r2p2.Error as e:
        if e.errno != code or e.strerror != r2p2.strerror(code):
            sys.exit(f"{what}: got {e!r}, want errno {errno.errorcode[code]}")
        print(f"ok: {what}: {e}")
        return
    sys.exit(f"{what}: no error, want {errno.errorcode[code]}")


expect("attach to a missing socket", errno.ENOENT,
       lambda: r2p2.attach(os.environ["R2P2_SOCKET"] + ".missing"))
with r2p2.attach() as ctx:
    expect("call_sync of a service daemon A does not call", errno.ENOENT,
           lambda: ctx.call_sync("nope.svc", b"x", timeout_ms=500))
    expect("call_sync slower than its timeout", errno.ETIMEDOUT,
           lambda: ctx.call_sync("slow.svc", b"x", timeout_ms=300))
    assert ctx.call_sync("echo.svc", b"still fine", timeout_ms=2000) == b"still fine"
    # the asynchronous form reports the same outcome as an event status
    cid = ctx.call("nope.svc", b"x", timeout_ms=500)
    evs = ctx.poll(timeout_ms=2000)
    assert [(e.type, e.id, e.status) for e in evs] == [(r2p2.EV_RESPONSE, cid, -errno.ENOENT)], evs
    print("ok: call + poll of an unknown service: status -ENOENT")
    expect("register of a service daemon A does not serve", errno.ENOENT,
           lambda: ctx.register("nope.svc"))
    ctx.call("slow.svc", b"x", timeout_ms=300)  # in flight during the next call_sync
    expect("call_sync with a call in flight", errno.EBUSY,
           lambda: ctx.call_sync("echo.svc", b"x", timeout_ms=300))
with r2p2.attach() as ctx3:
    # cancel: a call to the slow server ends at once with -ECANCELED, reported once
    cid = ctx3.call("slow.svc", b"x", timeout_ms=5000)
    ctx3.cancel(cid)
    evs = ctx3.poll(timeout_ms=2000)
    assert [(e.type, e.id, e.status) for e in evs] == [
        (r2p2.EV_RESPONSE, cid, -errno.ECANCELED)], evs
    print(f"ok: cancel: status -ECANCELED ({r2p2.strerror(evs[0].status)})")
    expect("cancel of a call that ended", errno.ENOENT, lambda: ctx3.cancel(cid))
    # fileno: a selector wakes for the response; poll(timeout_ms=0) until [] re-arms it
    sel = selectors.DefaultSelector()
    sel.register(ctx3, selectors.EVENT_READ)
    while ctx3.poll(timeout_ms=0):
        pass
    cid = ctx3.call("echo.svc", b"via fileno", timeout_ms=2000)
    got = []
    t0 = time.monotonic()
    while not got and time.monotonic() - t0 < 5:
        if sel.select(timeout=5):
            while evs := ctx3.poll(timeout_ms=0):
                got += evs
    assert [(e.id, e.status, e.data) for e in got] == [(cid, 0, b"via fileno")], got
    print(f"ok: fileno {ctx3.fileno()} woke a selector for the response")
    sel.close()
# a second thread in a context in use is refused, not let in to corrupt it
with r2p2.attach() as ctx2:
    waiter = threading.Thread(target=ctx2.poll, kwargs={"timeout_ms": 3000})
    waiter.start()
    t0 = time.monotonic()
    while not ctx2._busy.locked() and time.monotonic() - t0 < 2:  # the waiter is in poll()
        time.sleep(0.01)
    try:
        ctx2.call("echo.svc", b"x")
        sys.exit("a second thread entered a context in use")
    except RuntimeError as e:
        print(f"ok: a second thread: {e}")
    waiter.join()
ctx.close()  # closing twice is fine
try:
    ctx.call_sync("echo.svc", b"x")
    sys.exit("a closed context still calls")
except ValueError as e:
    print(f"ok: a closed context: {e}")
print("errors ok")
PYEOF
it_check "call_sync: ENOENT and ETIMEDOUT; register: ENOENT; attach: ENOENT" \
	py a "$IT_NS_A" "$IT_TMP/errors.py"

it_log "--- respond_error and deadlines: a Python server, a Python caller"
cat >"$IT_TMP/status_server.py" <<'PYEOF'
import r2p2

with r2p2.attach() as ctx:
    ctx.register("status.svc")
    print("status server ready", flush=True)
    served = 0
    while served < 3:
        for ev in ctx.poll(timeout_ms=10000):
            if ev.type != r2p2.EV_REQUEST:
                continue
            served += 1
            print(f"ran {ev.data!r} deadline_us {ev.deadline_us}", flush=True)
            if ev.data == b"deadline":
                ctx.respond(ev, str(ev.deadline_us).encode())
            else:
                ctx.respond_error(ev, 5, "not found: " + ev.data.decode())
PYEOF
cat >"$IT_TMP/status_client.py" <<'PYEOF'
import errno
import sys

import r2p2

with r2p2.attach() as ctx:
    left = int(ctx.call_sync("status.svc", b"deadline", timeout_ms=1500))
    if not 1000000 < left <= 1500000:
        sys.exit(f"the server saw deadline_us {left}, want the call's 1.5 s")
    print(f"ok: the server app saw the caller's 1500 ms as deadline_us {left}")
    try:
        ctx.call_sync("status.svc", b"k1")
        sys.exit("call_sync of an erring server returned")
    except r2p2.RemoteError as e:
        if (e.errno, e.code, e.message) != (errno.EREMOTEIO, 5, b"not found: k1"):
            sys.exit(f"got {e!r}")
        print(f"ok: call_sync raised RemoteError: {e}")
    cid = ctx.call("status.svc", b"k2")
    evs = ctx.poll(timeout_ms=3000)
    got = [(e.id, e.status, e.code, e.data) for e in evs]
    if got != [(cid, -errno.EREMOTEIO, 5, b"not found: k2")]:
        sys.exit(f"poll: {got}")
    print("ok: call + poll: status -EREMOTEIO, code 5, the message as data")
PYEOF
status_log=$IT_TMP/status-server.log
it_bg "$IT_NS_B" "$status_log" "${py_env[@]}" R2P2_SOCKET="$(it_sock b)" "$PY" "$IT_TMP/status_server.py"
status_srv=$IT_LAST_PID
it_wait_for 10 "the status server's ready line" grep -qs '^status server ready' "$status_log"
it_check "respond_error reaches call_sync as RemoteError and poll as -EREMOTEIO; deadline_us" \
	py a "$IT_NS_A" "$IT_TMP/status_client.py"
it_wait_exit "$status_srv" 10 && rc=0 || rc=$?
cat "$status_log"
it_check "the Python server ran each of the 3 requests once, and exits 0 (exit $rc)" \
	test "$rc" -eq 0 -a "$(grep -c '^ran ' "$status_log")" -eq 3

it_check "daemon A exits 0 on SIGTERM" it_stop_daemon a
it_check "daemon B exits 0 on SIGTERM" it_stop_daemon b
it_pass "the installed binding serves the C client and calls the C server, errors as documented"
