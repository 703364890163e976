#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""echo_client.py: calls an echo service through the local r2p2d and checks every response
byte for byte, as tools/echo_client.c (r2p2-echo-client) does.

    echo_client.py [-s SOCKET] [-n SERVICE] [-S SIZE] [-c COUNT] [-t TIMEOUT_MS] [-w WINDOW]
                   [-N] [-v]

Each request is SIZE random bytes, different every time. By default the calls are
sequential (call_sync); -w keeps WINDOW calls in flight with call() and poll(). -N marks
them not replay-safe (never 0-RTT early data). A failed call
is reported with libr2p2's text and the client goes on. Exit status 0 only when every
response verified.
"""
import argparse
import os
import sys
import time

import r2p2


def run_sync(ctx, args, check, fail):
    for _ in range(args.count):
        req = os.urandom(args.size)
        try:
            check(req, ctx.call_sync(args.service, req, timeout_ms=args.timeout,
                                     replay_safe=not args.not_replay_safe))
        except r2p2.Error as e:
            fail(e.errno)


def run_window(ctx, args, check, fail):
    """Keep up to args.window calls in flight; match each response to its request by id."""
    inflight = {}  # call id -> the request sent
    sent = 0
    while sent < args.count or inflight:
        while sent < args.count and len(inflight) < args.window:
            req = os.urandom(args.size)
            try:
                inflight[ctx.call(args.service, req, timeout_ms=args.timeout,
                                  replay_safe=not args.not_replay_safe)] = req
            except r2p2.Error as e:
                fail(e.errno)
            sent += 1
        if not inflight:
            continue
        for ev in ctx.poll(64):
            if ev.type != r2p2.EV_RESPONSE or ev.id not in inflight:
                continue
            req = inflight.pop(ev.id)
            if ev.status:
                fail(-ev.status)
            else:
                check(req, ev.data)


def main():
    ap = argparse.ArgumentParser(description="Call an echo service and verify the replies.")
    ap.add_argument("-s", dest="socket", help="r2p2d's control socket")
    ap.add_argument("-n", dest="service", default="echo.svc")
    ap.add_argument("-S", dest="size", type=int, default=64, help="request size in bytes")
    ap.add_argument("-c", dest="count", type=int, default=1, help="number of requests")
    ap.add_argument("-t", dest="timeout", type=int, default=0,
                    help="call timeout in ms (0: the service's)")
    ap.add_argument("-w", dest="window", type=int, default=0,
                    help="calls in flight at once, with call() and poll() (0: call_sync)")
    ap.add_argument("-N", dest="not_replay_safe", action="store_true",
                    help="calls are not replay-safe (no 0-RTT)")
    ap.add_argument("-v", dest="verbose", action="store_true", help="a line per request")
    args = ap.parse_args()
    res = {"ok": 0, "failed": 0, "mismatched": 0, "last": 0}

    def check(req, resp):
        if resp == req:
            res["ok"] += 1
            if args.verbose:
                print(f"request {res['ok'] + res['failed'] + res['mismatched'] - 1}: ok, "
                      f"{len(req)} B verified")
            return
        res["mismatched"] += 1
        off = next((i for i, (a, b) in enumerate(zip(req, resp)) if a != b),
                   min(len(req), len(resp)))
        print(f"echo_client.py: MISMATCH: sent {len(req)} B, got {len(resp)} B, first "
              f"difference at byte {off}", file=sys.stderr)

    def fail(err):
        res["failed"] += 1
        res["last"] = err
        print(f"echo_client.py: request to {args.service} failed: {r2p2.strerror(err)} "
              f"(-{err})", file=sys.stderr)

    try:
        ctx = r2p2.attach(args.socket)
    except r2p2.Error as e:
        print(f"echo_client.py: cannot attach to r2p2d: {e}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    with ctx:
        (run_window if args.window else run_sync)(ctx, args, check, fail)
    last = f"; last error: {r2p2.strerror(res['last'])}" if res["last"] else ""
    print(f"echo {args.service}: {args.size} B x {args.count}: {res['ok']} verified, "
          f"{res['failed']} failed, {res['mismatched']} mismatched in "
          f"{time.monotonic() - t0:.3f} s{last}", flush=True)
    return 0 if res["ok"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
