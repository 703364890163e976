#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""echo_server.py: serves a service (default echo.svc) through the local r2p2d and answers
every request with its own bytes, as tools/echo_server.c (r2p2-echo-server) does.

    echo_server.py [-s SOCKET] [-n SERVICE] [-c]

-c counts the requests the daemon handed over: SIGUSR1 prints "served N", and so does the
exit (tests use it to prove a request ran once). SIGTERM and SIGINT end it (exit 0). After
a daemon restart, libr2p2 attaches again and registers the service again by itself.
Exit status 1 when the service cannot be registered (e.g. ENOENT: the daemon's
configuration has no [serve SERVICE]).
"""
import argparse
import signal
import sys

import r2p2


def main():
    ap = argparse.ArgumentParser(description="Answer every request of SERVICE with its bytes.")
    ap.add_argument("-s", dest="socket", help="r2p2d's control socket (default: $R2P2_SOCKET, "
                    f"else {r2p2.DEFAULT_SOCKET})")
    ap.add_argument("-n", dest="service", default="echo.svc", help="service (echo.svc)")
    ap.add_argument("-c", dest="count", action="store_true",
                    help='count requests; SIGUSR1 and the exit print "served N"')
    args = ap.parse_args()

    served = 0

    def report(*_):
        if args.count:
            print(f"served {served}", flush=True)

    # r2p2's poll() wakes up at least every 100 ms to let these handlers run.
    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        with r2p2.attach(args.socket) as ctx:
            ctx.register(args.service)
            print(f"echo server ready: {args.service}", flush=True)
            while True:
                # A poll may return requests, and EV_ERROR events for answers that failed.
                for ev in ctx.poll(64):
                    if ev.type == r2p2.EV_ERROR:
                        print(f"echo_server.py: response to {ev.id} failed: "
                              f"{r2p2.strerror(ev.status)}", file=sys.stderr)
                    elif ev.type == r2p2.EV_REQUEST:
                        served += 1
                        try:
                            ctx.respond(ev, ev.data)
                        except r2p2.Error as e:
                            # This request cannot be answered (ENOTCONN: its daemon is gone;
                            # poll() attaches again to the next one and registers again).
                            print(f"echo_server.py: respond to {ev.id}: {e}", file=sys.stderr)
    except r2p2.Error as e:
        print(f"echo_server.py: {e}", file=sys.stderr)
        return 1
    finally:
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
