/* SPDX-License-Identifier: MIT */
/*
 * libr2p2: the application side of r2p2d. An application attaches to the local
 * daemon, then calls services by name and/or serves services. It never touches
 * the network or any key: requests and responses travel over shared-memory
 * rings (include/r2p2/shm.h) to the daemon.
 *
 * Threads: a struct r2p2_ctx is used by one thread at a time. Threads that
 * need parallelism attach one context each.
 * Errors: functions return 0 (or a non-negative value) on success and a
 * negative errno on failure; r2p2_attach returns NULL and sets errno.
 */
#ifndef R2P2_H
#define R2P2_H

/* The version of libr2p2 and its headers (CMakeLists.txt checks it against the project's). */
#define R2P2_VERSION_MAJOR 0
#define R2P2_VERSION_MINOR 2
#define R2P2_VERSION_PATCH 0
#define R2P2_VERSION "0.2.0"

#include <stddef.h>
#include <stdint.h>

#include <r2p2/shm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct r2p2_ctx;

/* Event kinds returned by r2p2_poll. */
enum r2p2_event_type {
	R2P2_EV_RESPONSE = 1, /* a call finished: `status` 0 and the response, or -errno */
	R2P2_EV_REQUEST = 2,  /* a request for a service this context serves */
	R2P2_EV_ERROR = 3,    /* r2p2_respond to request `id` failed with `status` */
};

struct r2p2_event {
	int type;	  /* enum r2p2_event_type */
	int status;	  /* 0 or -errno: -ETIMEDOUT, -ECONNREFUSED (server dropped it;
			   * tls and sealed: told at the call's timeout, since nothing
			   * authenticates a DROP), -ENOENT (unknown service),
			   * -ECONNRESET (daemon restarted), -EMSGSIZE, -EHOSTUNREACH,
			   * -ESHUTDOWN (daemon draining); tls services: -EACCES
			   * (certificate not trusted for the service name), -EBADMSG
			   * (the exchange failed); sealed
			   * services: -EALREADY (the server had already run this
			   * request: not run twice); tls and sealed: -ENOTRECOVERABLE
			   * (it may have run once and was not sent again: nobody can
			   * tell after a server restart); -EREMOTEIO: the server's app
			   * answered r2p2_respond_error: `code` is its code and
			   * data/len its message (not NUL-terminated) */
	uint64_t id;	  /* R2P2_EV_RESPONSE: the call id r2p2_call returned;
			   * R2P2_EV_REQUEST: the request handle for r2p2_respond */
	const void *data; /* payload; valid until the next r2p2_poll on this context */
	size_t len;
	uint32_t service_id;  /* R2P2_EV_REQUEST: as returned by r2p2_register */
	uint32_t lane;	      /* internal: which daemon worker carries the request */
	uint32_t code;	      /* R2P2_EV_RESPONSE with status -EREMOTEIO: the server app's
			       * code (non-zero); otherwise 0 */
	uint32_t deadline_us; /* R2P2_EV_REQUEST: how long the caller still waited, in
			       * microseconds, when its daemon sent the request (its
			       * timeout; network time not taken off); R2P2_NO_DEADLINE
			       * when the caller did not say (a plain caller without
			       * `extensions`, e.g. upstream R2P2) */
};

#define R2P2_NO_DEADLINE UINT32_MAX

/*
 * r2p2_attach connects to the daemon's control socket at `socket_path` (NULL:
 * $R2P2_SOCKET, else R2P2_DEFAULT_SOCKET) and maps the shared rings. Returns a
 * context or NULL with errno set (ENOENT/ECONNREFUSED: no daemon; EPROTO: the
 * daemon speaks another ABI version; EACCES: not allowed on the socket).
 */
struct r2p2_ctx *r2p2_attach(const char *socket_path);

/* r2p2_detach releases the context; pending calls are abandoned. NULL is ok. */
void r2p2_detach(struct r2p2_ctx *ctx);

/*
 * r2p2_set_poll_us sets how long r2p2_poll (and r2p2_call_sync) polls the rings
 * before it sleeps, while this context has calls in flight or had an event within
 * the last millisecond: 0 (the default, unless $R2P2_POLL_US says otherwise at
 * attach) sleeps at once. Polling spends CPU to save the wakeups of an answer that
 * comes back within microseconds; use it on hosts with spare cores, with the
 * daemon's `poll = adaptive` (docs/OPERATIONS.md). At most 10000.
 */
void r2p2_set_poll_us(struct r2p2_ctx *ctx, unsigned us);

/* Flags for r2p2_call. */
#define R2P2_CALL_NOT_REPLAY_SAFE R2P2_SQE_NOT_REPLAY_SAFE /* never sent as 0-RTT early data */

/*
 * r2p2_call sends `len` bytes from `req` to `service` and returns a call id
 * (> 0), or a negative errno: -EAGAIN when the ring or its payload arena is
 * full (poll, then retry), -EMSGSIZE when `len` is over the daemon's maximum
 * message size, -EINVAL for a bad service name, -ENOTCONN when no daemon can
 * be reached. `timeout_ms` bounds the whole call (0: the service's default).
 * `req` may be reused on return. The outcome arrives as one R2P2_EV_RESPONSE.
 * After a daemon restart the first call reconnects.
 */
int64_t r2p2_call(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
		  unsigned timeout_ms, unsigned flags);

/*
 * r2p2_poll fills up to `max` events and returns how many, or a negative errno.
 * It waits up to `timeout_ms` for the first event (0: do not wait; -1: wait
 * forever). Payloads of the events returned stay valid until the next call of
 * r2p2_poll or r2p2_call_sync on `ctx`. When the daemon exits (after a drain,
 * or a crash), the responses it posted first still arrive; each call still
 * waiting then completes once with -ECONNRESET.
 */
int r2p2_poll(struct r2p2_ctx *ctx, struct r2p2_event *events, int max, int timeout_ms);

/*
 * r2p2_call_sync calls `service` and waits for its response, which it copies
 * into `resp` (capacity `resp_cap`) and whose length it stores in `*out_len`.
 * Returns 0 or a negative errno (as in struct r2p2_event.status); -ENOBUFS
 * when `resp_cap` is too small (`*out_len` says how much was needed); -EBUSY
 * when other calls are in flight or the context serves services.
 */
int r2p2_call_sync(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
		   void *resp, size_t resp_cap, size_t *out_len, unsigned timeout_ms);

/*
 * r2p2_remote_code returns the code of the server app's error when the last
 * r2p2_call_sync on `ctx` returned -EREMOTEIO (its message is then in `resp`, cut
 * to `resp_cap`, with its whole length in `*out_len`); 0 before any.
 */
uint32_t r2p2_remote_code(const struct r2p2_ctx *ctx);

/* r2p2_call_sync with r2p2_call's `flags` (R2P2_CALL_NOT_REPLAY_SAFE). */
int r2p2_call_sync_flags(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
			 void *resp, size_t resp_cap, size_t *out_len, unsigned timeout_ms,
			 unsigned flags);

/*
 * r2p2_cancel cancels the call `id` (as r2p2_call returned it): unless its answer came
 * first, it ends with -ECANCELED, reported as usual by an R2P2_EV_RESPONSE (exactly one
 * either way), and no retransmission goes out for it any more. A request that already
 * reached the server may still run there: cancelling ends the wait, not the server's
 * work. Returns 0, -ENOENT (no such call outstanding: it ended, or its event is
 * waiting in r2p2_poll), -EAGAIN (a ring is full: poll, then retry), -ENOTCONN.
 */
int r2p2_cancel(struct r2p2_ctx *ctx, uint64_t id);

/*
 * r2p2_fd returns a file descriptor for the app's own event loop (epoll, poll,
 * libuv, ...): it is readable when r2p2_poll may have events. Use it as an
 * edge: when readable, call r2p2_poll(ctx, events, max, 0) until it returns 0;
 * only that return asks the daemon to make the descriptor readable again, so wait
 * on it only after a 0. It also wakes when the daemon goes away; while it is away
 * (r2p2_poll returns -ENOTCONN, or keeps reconnecting for a server), wait with a
 * timeout (100 ms) to let r2p2_poll reconnect. The descriptor belongs to `ctx`
 * (closed by r2p2_detach). Returns it, or a negative errno.
 */
int r2p2_fd(struct r2p2_ctx *ctx);

/*
 * r2p2_register makes this context a server of `service`: its requests arrive
 * as R2P2_EV_REQUEST events. Returns the service id (>= 0) or a negative errno:
 * -ENOENT when the daemon's configuration does not serve `service`; -EACCES when
 * the service has an `owner` that is not this app's user or one of its groups.
 */
int r2p2_register(struct r2p2_ctx *ctx, const char *service);

/*
 * r2p2_respond answers the request `req` (an R2P2_EV_REQUEST event; only its
 * id and lane are used, so the event may be a copy kept after the next poll)
 * with `len` bytes from `resp`. Returns 0 or -EAGAIN (ring full: poll, retry),
 * -EMSGSIZE, -ENOTCONN.
 */
int r2p2_respond(struct r2p2_ctx *ctx, const struct r2p2_event *req, const void *resp, size_t len);

/*
 * r2p2_respond_error answers the request `req` with an error instead of a response:
 * the caller's call ends with -EREMOTEIO, `code` (non-zero, the app's own scheme,
 * e.g. gRPC's status codes) in its event's `code` and `message` (NUL-terminated,
 * NULL for none; its bytes without the NUL) as its data. In tls and sealed mode the
 * code and message are encrypted and authenticated like a response. A plain caller
 * without `extensions` (upstream R2P2) knows no status: it receives a DROP
 * (-ECONNREFUSED). Returns as r2p2_respond; -EINVAL for code 0.
 */
int r2p2_respond_error(struct r2p2_ctx *ctx, const struct r2p2_event *req, uint32_t code,
		       const char *message);

/* r2p2_max_msg_len returns the largest payload the daemon accepts. */
size_t r2p2_max_msg_len(const struct r2p2_ctx *ctx);

/* r2p2_strerror returns a short description of a status or return value. */
const char *r2p2_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* R2P2_H */
