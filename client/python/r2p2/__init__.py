# SPDX-License-Identifier: MIT
"""r2p2: call and serve R2P2 services from Python, through the local r2p2d.

A binding of libr2p2 (include/r2p2/r2p2.h) with cffi. Calling a service::

    import r2p2

    with r2p2.attach() as ctx:                    # $R2P2_SOCKET, else /run/r2p2/r2p2d.sock
        reply = ctx.call_sync("echo.svc", b"ping", timeout_ms=1000)

Serving one (the daemon's configuration must have a [serve echo.svc] section)::

    with r2p2.attach() as ctx:
        ctx.register("echo.svc")
        while True:
            for ev in ctx.poll():
                if ev.type == r2p2.EV_REQUEST:
                    ctx.respond(ev, ev.data)

Errors: every negative errno of libr2p2 is raised as r2p2.Error, an OSError whose
`errno` is the positive code and whose `strerror` is r2p2_strerror's text; the
statuses an event carries stay in `Event.status` (0 or -errno), as in C.

Threads: as in C, a context is used by one thread at a time; a second thread that
enters a context already in use gets RuntimeError instead of corrupting it. Threads
that need parallelism attach one context each.
"""
import dataclasses
import enum
import errno as _errno
import os
import threading
import time
from collections import deque

from ._ffi import LIBRARY_PATH, ffi as _cffi, lib as _lib

__all__ = [
    "attach", "Context", "Event", "EventType", "Error", "RemoteError", "strerror", "EV_RESPONSE",
    "EV_REQUEST", "EV_ERROR", "VERSION", "VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH",
    "DEFAULT_SOCKET", "SERVICE_NAME_MAX", "RING_FULL_WAIT_MS", "LIBRARY_PATH", "NO_DEADLINE",
]

# The libr2p2 version this binding is written for (R2P2_VERSION_* of r2p2.h; the
# test_python ctest checks they agree).
VERSION_MAJOR = 0
VERSION_MINOR = 2
VERSION_PATCH = 0
VERSION = "0.2.0"
__version__ = VERSION

DEFAULT_SOCKET = "/run/r2p2/r2p2d.sock"  # R2P2_DEFAULT_SOCKET
SERVICE_NAME_MAX = 48  # R2P2_SERVICE_NAME_MAX: a name has at most 47 bytes
_CALL_NOT_REPLAY_SAFE = 0x1  # R2P2_CALL_NOT_REPLAY_SAFE
NO_DEADLINE = 0xFFFFFFFF  # R2P2_NO_DEADLINE: Event.deadline_us when the caller did not say

# How long call(), respond() and cancel() keep retrying while libr2p2 says -EAGAIN (a
# ring or its payload arena is full: r2p2.h says "poll, then retry") before they raise
# Error(EAGAIN).
RING_FULL_WAIT_MS = 1000
# A wait in poll() is cut into slices this long, so that a signal handler (Ctrl-C's
# KeyboardInterrupt, a SIGTERM handler) runs within this time: libr2p2 itself waits
# through signals.
_POLL_SLICE_MS = 100


class EventType(enum.IntEnum):
    """The kinds of Event (enum r2p2_event_type)."""

    RESPONSE = 1  # a call finished: status 0 and the response, or -errno
    REQUEST = 2  # a request for a service this context serves
    ERROR = 3  # respond() to request `id` failed with `status`


EV_RESPONSE = EventType.RESPONSE
EV_REQUEST = EventType.REQUEST
EV_ERROR = EventType.ERROR


class Error(OSError):
    """A libr2p2 call failed: `errno` (positive, e.g. errno.ETIMEDOUT) and `strerror`
    (r2p2_strerror's text); `filename` names the service or socket concerned."""


class RemoteError(Error):
    """The server's app answered with respond_error(): `errno` is EREMOTEIO, `code` its
    code and `message` its message (bytes)."""

    def __init__(self, code, message, service=None):
        super().__init__(_errno.EREMOTEIO, strerror(_errno.EREMOTEIO), service)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{super().__str__()}: code {self.code}: {self.message!r}"


def strerror(err):
    """strerror returns libr2p2's description of a status or errno (either sign)."""
    return _cffi.string(_lib.r2p2_strerror(int(err))).decode("utf-8", "replace")


def _error(ret, name=None):
    code = -int(ret) if ret < 0 else int(ret)
    if name is None:
        return Error(code, strerror(code))
    return Error(code, strerror(code), name)


@dataclasses.dataclass(frozen=True)
class Event:
    """One event from Context.poll(). `data` is a copy: it stays valid after the next
    poll, unlike the C event's payload."""

    type: EventType  # EV_RESPONSE, EV_REQUEST or EV_ERROR
    status: int  # 0 or -errno (see struct r2p2_event in r2p2.h)
    id: int  # EV_RESPONSE: the call id call() returned; EV_REQUEST: the request's handle
    data: bytes  # the response or request payload
    service_id: int  # EV_REQUEST: the id register() returned
    lane: int = dataclasses.field(default=0, repr=False, compare=False)  # internal: respond()
    code: int = 0  # EV_RESPONSE with status -EREMOTEIO: the server app's code, data its message
    # EV_REQUEST: the caller's time left in microseconds when it sent the request
    # (NO_DEADLINE: not told)
    deadline_us: int = NO_DEADLINE


def _event_type(value):
    """An EventType, or the bare int for a kind a newer libr2p2 may add."""
    try:
        return EventType(value)
    except ValueError:
        return value


def _service_name(service):
    if isinstance(service, str):
        service = service.encode("utf-8")
    elif not isinstance(service, bytes):
        raise TypeError(f"service name must be str or bytes, not {type(service).__name__}")
    if b"\0" in service:
        raise ValueError("service name contains a NUL byte")
    return service


def _payload(data):
    """A read-only view of `data` (bytes, bytearray, memoryview...) for C: no copy."""
    if isinstance(data, str):
        raise TypeError("payload must be bytes-like, not str (encode it)")
    return _cffi.from_buffer(data)


class Context:
    """A connection to the local r2p2d (struct r2p2_ctx). Use attach() to make one."""

    def __init__(self, socket=None):
        path = _cffi.NULL if socket is None else os.fsencode(socket)
        ptr = _lib.r2p2_attach(path)
        if ptr == _cffi.NULL:
            err = _cffi.errno or _errno.EIO
            where = os.fsdecode(socket) if socket is not None else (
                os.environ.get("R2P2_SOCKET") or DEFAULT_SOCKET)
            raise Error(err, strerror(err), where)
        self._ctx = _cffi.gc(ptr, _lib.r2p2_detach)
        self._busy = threading.Lock()
        self._events = _cffi.new("struct r2p2_event[]", 64)
        self._backlog = deque()  # events polled while call(), respond() or cancel() waited
        self._fd_in_use = False  # fileno() was asked for: an event loop waits on it
        self._req = _cffi.new("struct r2p2_event *")
        self._resp = None  # call_sync's response buffer, grown to max_msg_len
        self._out_len = _cffi.new("size_t *")

    # ---- one thread at a time --------------------------------------------------

    def _claim(self):
        if self._ctx is None:
            raise ValueError("r2p2 context is closed")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("r2p2 context used by two threads at once; attach one per thread")
        return self._ctx

    def _release(self):
        self._busy.release()

    # ---- life cycle ------------------------------------------------------------

    def close(self):
        """close detaches from the daemon (r2p2_detach); calls in flight are abandoned.
        Closing twice is fine."""
        if self._ctx is None:
            return
        ctx = self._claim()
        try:
            self._ctx = None
            _cffi.release(ctx)  # runs r2p2_detach now rather than at garbage collection
        finally:
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        ctx = self._ctx
        state = "closed" if ctx is None else f"max_msg_len={_lib.r2p2_max_msg_len(ctx)}"
        return f"<r2p2.Context {state}>"

    # ---- calls -----------------------------------------------------------------

    def call(self, service, data, timeout_ms=0, replay_safe=True):
        """call sends `data` to `service` and returns the call id (> 0); the outcome
        arrives as one EV_RESPONSE event from poll() with that id. `timeout_ms` bounds
        the whole call (0: the service's default). replay_safe=False never sends the
        request as 0-RTT early data (tls), nor AEAD-only (sealed).

        While the ring is full (-EAGAIN) it retries for up to RING_FULL_WAIT_MS,
        polling in between (the events are kept for the next poll()) unless fileno()
        is in use (then it only waits: see _retry_full).
        Raises Error: EAGAIN (still full), EMSGSIZE (over max_msg_len), EINVAL (a bad
        service name), ENOTCONN (no daemon).
        """
        name = _service_name(service)
        buf = _payload(data)
        flags = 0 if replay_safe else _CALL_NOT_REPLAY_SAFE
        ctx = self._claim()
        try:
            ret = self._retry_full(lambda: _lib.r2p2_call(ctx, name, buf, len(buf),
                                                          timeout_ms, flags))
        finally:
            self._release()
        if ret < 0:
            raise _error(ret, service)
        return ret

    def call_sync(self, service, data, timeout_ms=0, replay_safe=True):
        """call_sync calls `service` with `data`, waits for its response and returns it
        (bytes). `timeout_ms` and `replay_safe` are call()'s. Raises Error with the
        call's outcome: ETIMEDOUT, ENOENT (unknown service), ECONNREFUSED, ... (as
        Event.status), or EBUSY when this context has calls in flight or serves services
        (use call() and poll() there). It waits in libr2p2 (the call's timeout plus a
        second; timeout_ms=0: the service's default), during which Python signal
        handlers wait too.
        """
        name = _service_name(service)
        buf = _payload(data)
        flags = 0 if replay_safe else _CALL_NOT_REPLAY_SAFE
        ctx = self._claim()
        try:
            cap = max(_lib.r2p2_max_msg_len(ctx), 1)
            if self._resp is None or len(self._resp) < cap:
                self._resp = _cffi.new("char[]", cap)
            ret = _lib.r2p2_call_sync_flags(ctx, name, buf, len(buf), self._resp, cap,
                                            self._out_len, timeout_ms, flags)
            if ret == -_errno.EREMOTEIO:
                size = min(self._out_len[0], cap)
                raise RemoteError(_lib.r2p2_remote_code(ctx),
                                  _cffi.buffer(self._resp, size)[:], service)
            if ret < 0:
                raise _error(ret, service)
            return _cffi.buffer(self._resp, self._out_len[0])[:]
        finally:
            self._release()

    def cancel(self, call_id):
        """cancel cancels the call `call_id` (as call() returned it): unless its answer
        came first, it ends with status -ECANCELED, reported as usual by one EV_RESPONSE
        event. A request that already reached the server may still run there:
        cancelling ends the wait, not the server's work. While the ring is full it
        retries as call() does. Raises Error: ENOENT (no such call
        outstanding: it ended, or its event waits for poll()), EAGAIN, ENOTCONN.
        """
        ctx = self._claim()
        try:
            ret = self._retry_full(lambda: _lib.r2p2_cancel(ctx, call_id))
        finally:
            self._release()
        if ret < 0:
            raise _error(ret)

    # ---- events ----------------------------------------------------------------

    def fileno(self):
        """fileno returns a descriptor for the app's own event loop (selectors,
        asyncio's add_reader): readable when poll() may have events (r2p2_fd). Use it
        as an edge: when readable, call poll(timeout_ms=0) until it returns []; only
        that empty return asks the daemon to make it readable again. It also wakes
        when the daemon goes away; while it is away, wait with a timeout (100 ms) so
        that poll() can reconnect. The descriptor belongs to the context: do not close
        it. Raises Error.
        """
        ctx = self._claim()
        try:
            ret = _lib.r2p2_fd(ctx)
            if ret >= 0:
                self._fd_in_use = True
        finally:
            self._release()
        if ret < 0:
            raise _error(ret)
        return ret

    def poll(self, max=64, timeout_ms=-1):  # pylint: disable=redefined-builtin
        """poll returns a list of up to `max` events, waiting up to `timeout_ms` for the
        first (0: do not wait; -1: wait forever). An empty list means the time ran out.
        Payloads are copied, so an Event stays valid as long as it is kept.
        Raises Error (ENOTCONN: the daemon is gone and this context serves nothing).
        """
        if max < 1:
            raise ValueError("max must be at least 1")
        ctx = self._claim()
        try:
            if self._backlog:
                return [self._backlog.popleft() for _ in range(min(max, len(self._backlog)))]
            if len(self._events) < max:
                self._events = _cffi.new("struct r2p2_event[]", max)
            deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
            while True:
                wait = _POLL_SLICE_MS
                if deadline is not None:
                    wait = min(wait, _ms_left(deadline))
                got = self._poll_once(ctx, max, wait)
                if got or (deadline is not None and time.monotonic() >= deadline):
                    return got
        finally:
            self._release()

    def _poll_once(self, ctx, num, timeout_ms):
        n = _lib.r2p2_poll(ctx, self._events, num, timeout_ms)
        if n < 0:
            raise _error(n)
        out = []
        for i in range(n):
            e = self._events[i]
            data = _cffi.buffer(e.data, e.len)[:] if e.len else b""
            out.append(Event(_event_type(e.type), e.status, e.id, data, e.service_id, e.lane,
                             e.code, e.deadline_us))
        return out

    def _retry_full(self, submit):
        """_retry_full runs `submit` until it returns anything but -EAGAIN, for at most
        RING_FULL_WAIT_MS. In between it polls, as r2p2.h asks, keeping the events for
        the next poll(); but once fileno() is in use it only sleeps, since a poll here
        would take events the app's loop will not be woken for (and re-arm nothing).
        The daemon takes submissions whether or not the app reads completions (those
        that do not fit wait in its queue), so waiting is enough for room to come."""
        ret = submit()
        if ret != -_errno.EAGAIN:
            return ret
        ctx = self._ctx
        deadline = time.monotonic() + RING_FULL_WAIT_MS / 1000
        while ret == -_errno.EAGAIN and time.monotonic() < deadline:
            if self._fd_in_use:
                time.sleep(0.001)
            else:
                self._backlog.extend(self._poll_once(ctx, len(self._events), 1))
            ret = submit()
        return ret
        ctx = self._ctx
        deadline = time.monotonic() + RING_FULL_WAIT_MS / 1000
        while ret == -_errno.EAGAIN and time.monotonic() < deadline:
            self._backlog.extend(self._poll_once(ctx, len(self._events), 1))
            ret = submit()
        return ret

    # ---- serving ---------------------------------------------------------------

    def register(self, service):
        """register makes this context a server of `service`: its requests arrive as
        EV_REQUEST events from poll(). Returns the service id (>= 0). Raises Error:
        ENOENT (the daemon's configuration does not serve it), EACCES (the service's
        `owner` is not this app's user or group)."""
        name = _service_name(service)
        ctx = self._claim()
        try:
            ret = _lib.r2p2_register(ctx, name)
        finally:
            self._release()
        if ret < 0:
            raise _error(ret, service)
        return ret

    def respond(self, event, data):
        """respond answers the request `event` (an EV_REQUEST event from poll(), kept as
        long as needed) with `data`. While the ring is full it retries as call()
        does. Raises Error: EAGAIN, EMSGSIZE, ENOTCONN (the daemon that delivered
        the request is gone). A failure after the hand-over comes back as an EV_ERROR
        event with the request's id."""
        if event.type != EV_REQUEST:
            raise ValueError(f"respond() needs an EV_REQUEST event, not {event.type!r}")
        buf = _payload(data)
        ctx = self._claim()
        try:
            req = self._req
            req.id = event.id
            req.lane = event.lane
            ret = self._retry_full(lambda: _lib.r2p2_respond(ctx, req, buf, len(buf)))
        finally:
            self._release()
        if ret < 0:
            raise _error(ret)

    def respond_error(self, event, code, message=""):
        """respond_error answers the request `event` with an error rather than a
        response: the caller's call ends with EREMOTEIO, `code` (a non-zero int below
        2**32) and `message` (str or bytes without NUL). A plain caller without
        `extensions` receives a DROP. Retries and raises as respond()."""
        if event.type != EV_REQUEST:
            raise ValueError(f"respond_error() needs an EV_REQUEST event, not {event.type!r}")
        if not 0 < code < 2**32:
            raise ValueError(f"code must be in 1..2**32-1, not {code}")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if b"\0" in message:
            raise ValueError("message contains a NUL byte")
        ctx = self._claim()
        try:
            req = self._req
            req.id = event.id
            req.lane = event.lane
            ret = self._retry_full(lambda: _lib.r2p2_respond_error(ctx, req, code, message))
        finally:
            self._release()
        if ret < 0:
            raise _error(ret)

    # ---- settings ----------------------------------------------------------------

    def set_poll_us(self, us):
        """set_poll_us makes poll() and call_sync() poll the rings for up to `us`
        microseconds (at most 10000) before sleeping, while calls are in flight: CPU
        spent for latency (r2p2_set_poll_us; 0, the default, sleeps at once)."""
        if us < 0:
            raise ValueError("poll time must not be negative")
        ctx = self._claim()
        try:
            _lib.r2p2_set_poll_us(ctx, us)
        finally:
            self._release()

    @property
    def max_msg_len(self):
        """The largest payload the daemon accepts, in bytes."""
        ctx = self._claim()
        try:
            return _lib.r2p2_max_msg_len(ctx)
        finally:
            self._release()


def _ms_left(deadline):
    """The milliseconds left until `deadline` (time.monotonic()), rounded up, at least 0."""
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def attach(socket=None):
    """attach connects to the daemon's control socket `socket` (None: $R2P2_SOCKET,
    else DEFAULT_SOCKET) and returns a Context, also usable as a context manager.
    Raises Error: ENOENT or ECONNREFUSED (no daemon there), EACCES (not allowed on the
    socket), EPROTO (the daemon speaks another ABI version)."""
    return Context(socket)
