#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""asyncio_client.py: r2p2 calls as awaitables in an asyncio loop, through ctx.fileno().

    asyncio_client.py [-s SOCKET] [-n SERVICE] [-c COUNT] [-t TIMEOUT_MS] [MESSAGE]

Makes COUNT concurrent calls of MESSAGE (default "hello") to SERVICE (default echo.svc),
awaits them all and prints each reply. The loop watches the context's descriptor; when
it is readable, every event is taken with poll(timeout_ms=0) until it returns [], which
also re-arms the descriptor. Exit status 0 when every call succeeded.
"""
import argparse
import asyncio
import sys

import r2p2


class AsyncCaller:
    """Calls on one context, each an awaitable of its reply (or of its r2p2.Error)."""

    def __init__(self, ctx, loop):
        self.ctx = ctx
        self.waiting = {}  # call id -> future of its reply
        loop.add_reader(ctx.fileno(), self.on_readable)
        self.on_readable()  # take what is there and arm the descriptor

    def on_readable(self):
        while events := self.ctx.poll(timeout_ms=0):
            for ev in events:
                fut = self.waiting.pop(ev.id, None)
                if fut is None or ev.type != r2p2.EV_RESPONSE or fut.cancelled():
                    continue
                if ev.status:
                    fut.set_exception(r2p2.Error(-ev.status, r2p2.strerror(ev.status)))
                else:
                    fut.set_result(ev.data)

    async def call(self, service, data, timeout_ms=0):
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.ctx.call(service, data, timeout_ms=timeout_ms)] = fut
        return await fut


async def run(args):
    with r2p2.attach(args.socket) as ctx:
        loop = asyncio.get_running_loop()
        caller = AsyncCaller(ctx, loop)
        try:
            results = await asyncio.gather(
                *(caller.call(args.service, f"{args.message} {i}".encode(), args.timeout)
                  for i in range(args.count)), return_exceptions=True)
        finally:
            loop.remove_reader(ctx.fileno())
    failed = 0
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            failed += 1
            print(f"call {i}: {r}", file=sys.stderr)
        else:
            print(f"call {i}: {r.decode(errors='replace')}")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description="Concurrent r2p2 calls with asyncio.")
    ap.add_argument("-s", dest="socket", help="r2p2d's control socket")
    ap.add_argument("-n", dest="service", default="echo.svc")
    ap.add_argument("-c", dest="count", type=int, default=3, help="concurrent calls")
    ap.add_argument("-t", dest="timeout", type=int, default=1000, help="call timeout in ms")
    ap.add_argument("message", nargs="?", default="hello")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
