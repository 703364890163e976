/* SPDX-License-Identifier: MIT */
/*
 * The security modes behind one table of operations (plain, tls, sealed).
 *
 * A worker picks a mode once per served service and once per call
 * (sec_ops_for) and then calls the table at each point of the RPC path without
 * knowing which mode runs:
 *
 *   client:  protect (app request -> first R2P2 request payload and flags)
 *            finish  (R2P2 response -> app reply, or one more message to send)
 *   server:  open    (R2P2 request -> app request, or an answer of its own)
 *            seal    (app response -> R2P2 response payload)
 *
 * The modes own their state: a called service's tls client and sealed
 * association (struct sec_peer: bootstrap, renewal, re-bootstrap), a served
 * service's certificate and token keys (struct sec_service), and the crypto
 * state of each call and request. This file knows no sockets, rings or threads:
 * the worker moves bytes, this decides what the bytes are. Everything here runs
 * on one worker thread; the strike registers in struct sec_env are shared by
 * every worker and locked inside replay.c.
 */
#ifndef R2P2D_SECURE_H
#define R2P2D_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "sealed.h"
#include "tls.h"

struct stek_set;
struct replay;

#define SEC_MAX_SELF TLS_MAX_SELF /* addresses a server may be reached at (sec_env.self) */

/* A worker's shared security context: keys, strike registers, scratch buffers, clock. */
struct sec_env {
	struct stek_set *stek;	      /* the service STEK (NULL: none configured) */
	struct replay *replay;	      /* tls strike register, shared by every worker */
	struct replay *sealed_replay; /* sealed strike register (unix-time clock), shared */
	uint64_t sealed_window_ms;    /* sealed timestamp window (config sealed_window_ms) */
	uint64_t (*wall_ms)(void);    /* unix time in ms; tests fix it */
	uint64_t start_ms;	      /* unix ms when this server started (restart guard) */
	uint64_t sealed_start_ms;     /* unix ms the sealed register started, if later (reload) */
	uint64_t replay_window_ms; /* the tls strike register's window (config replay_window_ms) */
	/* The addresses a sealed request may be bound to: the listen address (or every
	 * local address when listening on all) with port 0, meaning the port of the
	 * service, and the router that fronts this server with its port. */
	struct r2p2_addr self[SEC_MAX_SELF];
	size_t num_self;
	/* Scratch: what an operation returns in a struct sec_msg points into one of
	 * these and stays valid until the next operation on this env. */
	struct tls_buf flight, plain, sealed;
	uint8_t reject[SEALED_REJECT_MAX];
};

/* sec_env_init gives `env` its keys and registers (none owned) and the real clock. */
void sec_env_init(struct sec_env *env, struct stek_set *stek, struct replay *replay,
		  struct replay *sealed_replay, uint64_t sealed_window_ms);

/* sec_env_cleanup wipes and frees the scratch buffers. */
void sec_env_cleanup(struct sec_env *env);

/*
 * sec_env_scrub wipes (OPENSSL_cleanse) what the operations since the last scrub
 * left in the scratch buffers `plain` and `sealed` (decrypted requests and
 * responses, bootstrap payloads with association keys), all of it, not only the
 * last message. Every sec_msg pointing into them is dead afterwards: call it once
 * the worker has handed on (copied) everything the operations returned, e.g. once
 * per loop iteration before it sleeps. Costs the bytes written since the last call.
 */
void sec_env_scrub(struct sec_env *env);

/* Bytes an operation produced: an R2P2 payload with its header flags, or an app message. */
struct sec_msg {
	const uint8_t *data;
	size_t len;
	uint8_t flags; /* R2P2 header flags of the message (0, R2P2_F_TLS or R2P2_F_SEALED) */
};

/* ---- client ------------------------------------------------------------------ */

/*
 * A called service as one worker sees it: its tls client (made on first use from
 * the service's CA) and, for sealed, this worker's association (never shared
 * across threads, so its nonce counter never repeats).
 */
struct sec_peer {
	char name[CFG_NAME_MAX];
	char ca[CFG_PATH_MAX];
	struct tls_client *tls; /* NULL: free slot */
	struct sealed_assoc assoc;
	bool assoc_ready;
	bool bootstrapping; /* a call that asked for an association is in flight */
	uint64_t rebootstraps;
};

/*
 * sec_peer_for returns the peer of `cc` among `peers` (`num` slots), made on first
 * use (and remade when a reload changed its CA). Returns NULL with `err` filled
 * when its CA cannot be loaded or every slot is taken.
 */
struct sec_peer *sec_peer_for(struct sec_peer *peers, size_t num, const struct cfg_call *cc,
			      char *err, size_t err_len);

/* sec_peer_cleanup frees the tls client and wipes the association. */
void sec_peer_cleanup(struct sec_peer *p);

/*
 * sec_peer_wants_renewal says whether `p` holds an association that is in the
 * last fifth of its life at `now_ms` and no bootstrap is under way.
 */
bool sec_peer_wants_renewal(const struct sec_peer *p, uint64_t now_ms);

/* sec_peer_key_id returns the STEK key id `p`'s association token is sealed under. */
uint32_t sec_peer_key_id(const struct sec_peer *p);

/* Where a call is in its mode's exchange. */
enum sec_step {
	SEC_STEP_PLAIN = 0,
	SEC_STEP_TLS,	   /* one tls exchange (tls service) */
	SEC_STEP_TLS_SVC,  /* sealed service: a tls exchange that asks for no association */
	SEC_STEP_TLS_BOOT, /* sealed service: a tls exchange that also fetches an association */
	SEC_STEP_SEALED,   /* sealed service: AEAD under the association */
	SEC_STEP_RENEW,	   /* sealed service: a background renewal, no app involved */
};

/* The crypto state of one call. Zero it, then sec_call_init. */
struct sec_call {
	const struct sec_ops *ops;
	struct sec_peer *peer; /* NULL in plain mode */
	enum sec_step step;
	bool replay_safe;
	bool ext;	/* request and response open with an extension block (plain: R2P2_F_EXT) */
	bool retried;	/* sealed: sent again through tls after a REJECT */
	bool dropped;	/* an R2P2 DROP came (unauthenticated): set aside */
	uint32_t sends; /* times the first flight went out (the worker sets it) */
	struct r2p2_addr dst;	/* where the request goes: sealed requests are bound to it */
	struct tls_call *tls;	/* the tls exchange in progress */
	struct sealed_ctx sctx; /* sealed: the response key of this request */
	uint8_t *req_copy;	/* sealed: the request, to resend through a re-bootstrap */
	uint8_t req_inline[64]; /* req_copy's storage for small requests (no malloc per RPC) */
	size_t req_len;
};

/* What finish decided. */
enum sec_next {
	SEC_DONE = 0, /* the call is over: `status` and, when 0, the reply in `out` */
	SEC_SEND,     /* send `out` on this call; with `same_rid` under the rid just answered */
	SEC_IGNORE,   /* not the server's (it did not authenticate): wait on for the genuine
		       * one until the call's own deadline */
};

/* The outcome of finish. */
struct sec_reply {
	int status; /* 0 or a negative errno for the app */
	struct sec_msg out;
	bool same_rid;	 /* SEC_SEND: a continuation of the exchange the server holds */
	const char *why; /* a failure in words, for the log (NULL: nothing to say) */
};

struct sec_service;
struct sec_exec;

/* What open decided about a request. */
enum sec_verdict {
	SEC_DELIVER = 0, /* hand `out` to an app; answer later through seal(`x`) */
	SEC_ANSWER,	 /* answer with `out` now; no app sees anything */
	SEC_REJECT,	 /* DROP it */
	SEC_WRONG_MODE,	 /* DROP it: a message of another mode (counted apart) */
};

/* An R2P2 request as the engine handed it over. */
struct sec_request {
	const struct r2p2_addr *src;
	unsigned policy;
	uint8_t flags; /* the mode bits of its header flags */
	const uint8_t *payload;
	size_t len;
	uint64_t now; /* monotonic ns */
};

/* One table per mode. Every function may be called for every mode (none is NULL). */
struct sec_ops {
	const char *name;
	enum cfg_security security;
	/*
	 * protect turns the app request `req` (`len` bytes; NULL with `renew`: a
	 * background renewal that carries only an association request) into the
	 * payload of the call's first R2P2 request. Returns 0 or a negative errno.
	 */
	int (*protect)(struct sec_env *env, struct sec_call *c, unsigned policy, const uint8_t *req,
		       size_t len, bool renew, struct sec_msg *out);
	/*
	 * finish takes the call's R2P2 outcome (`status` < 0: timeout or DROP, and no
	 * payload) and says whether the call is over or sends one more message.
	 */
	enum sec_next (*finish)(struct sec_env *env, struct sec_call *c, int status,
				const uint8_t *payload, size_t len, struct sec_reply *out);
	/* open decides what a request for service `svc` is (server side). */
	enum sec_verdict (*open)(struct sec_env *env, struct sec_service *svc,
				 const struct sec_request *rq, struct sec_exec *x,
				 struct sec_msg *out);
	/*
	 * seal turns the app's response to the request `x` was opened for into the
	 * R2P2 response payload (`resp` NULL with `len` 0: no app response, e.g. a
	 * renewal). Consumes `x`'s crypto state. Returns 0 or a negative errno (the
	 * request must then be DROPped).
	 */
	int (*seal)(struct sec_env *env, struct sec_service *svc, struct sec_exec *x,
		    const uint8_t *resp, size_t len, struct sec_msg *out);
};

/* sec_ops_for returns the table of mode `s`. */
const struct sec_ops *sec_ops_for(enum cfg_security s);

/*
 * sec_call_init starts `c` in the mode of `ops` for `peer` (NULL in plain mode),
 * sent to `dst`;
 * sec_call_release frees and wipes what the call holds (idempotent).
 */
void sec_call_init(struct sec_call *c, const struct sec_ops *ops, struct sec_peer *peer,
		   bool replay_safe, const struct r2p2_addr *dst);
void sec_call_release(struct sec_call *c);

/* ---- server ------------------------------------------------------------------ */

/* A served service's security state on one worker. */
struct sec_service {
	const struct sec_ops *ops;
	char name[CFG_NAME_MAX];
	uint16_t port;		      /* network order */
	struct tls_server *tls;	      /* tls and sealed services: certificate and keys */
	bool keys_changed;	      /* a configure put a new chain, key or early_data in `tls` */
	struct sealed_server *sealed; /* sealed services: token contexts and counters */
	/* [serve] stek =: the service's own keys for its tickets and tokens (a reference),
	 * so services of different trust domains share none; NULL: the env's */
	struct stek_set *stek;
	char stek_path[CFG_PATH_MAX];
};

/* The crypto state of one request an app holds. Zeroed: plain. */
struct sec_exec {
	const struct sec_ops *ops; /* the mode that opened it; NULL: plain */
	enum sec_step step;
	struct tls_conn *conn;		 /* a tls exchange the response completes */
	struct sealed_ctx sctx;		 /* sealed: the response key */
	enum sealed_retry_status status; /* sealed retry: NEW (it runs), or what to answer */
};

/*
 * sec_service_configure gives `svc` the mode of `sv` and makes what it needs (a
 * tls server with the service's STEK and the env's register, a sealed server),
 * keeping what it already has. The service's STEK is its own file when `sv` names
 * one (`sv->stek`, loaded here when it is new or changed), else the env's. Returns
 * 0, or a negative errno with `err` filled ("[serve NAME] stek: PATH: ..." for a file
 * stek_load refuses: the service then keeps the keys it had). A service that has its
 * tls server reads its chain and key again: when they (or early_data) changed, new
 * handshakes use the new ones and `svc->keys_changed` is set (the caller clears it).
 */
int sec_service_configure(struct sec_env *env, struct sec_service *svc, const struct cfg_serve *sv,
			  char *err, size_t err_len);

/*
 * sec_service_retire frees the service's tls and sealed state, adding the tls
 * counters to `retired`. Requests still holding a tls exchange of it must have
 * been released first (sec_exec_uses_service).
 */
void sec_service_retire(struct sec_service *svc, struct tls_stats *retired);

/*
 * sec_service_set_stek switches the service's tls server and sealed token keys to
 * the daemon-wide `stek`, unless the service has its own; the token keys of STEK
 * keys no longer in use are wiped at once.
 */
void sec_service_set_stek(struct sec_service *svc, struct stek_set *stek);

/*
 * sec_service_reload_stek re-reads the service's own STEK file (nothing to do
 * without one) and switches to it if its keys changed (`*out_changed`). A file
 * stek_load refuses keeps the keys in use: returns its negative errno with
 * "[serve NAME] stek: PATH: ..." in `err`. Returns 0 otherwise.
 */
int sec_service_reload_stek(struct sec_service *svc, bool *out_changed, char *err, size_t err_len);

/* sec_service_expire forgets 1-RTT handshakes older than `max_age_ns` at `now`. */
void sec_service_expire(struct sec_service *svc, uint64_t now, uint64_t max_age_ns);

/* sec_exec_uses_service says whether answering `x` needs its service's tls state. */
bool sec_exec_uses_service(const struct sec_exec *x);

/* sec_exec_release frees and wipes what `x` holds (idempotent). */
void sec_exec_release(struct sec_exec *x);

/* sec_seal is `x`'s mode's seal (plain when `x` was never opened by a mode). */
int sec_seal(struct sec_env *env, struct sec_service *svc, struct sec_exec *x, const uint8_t *resp,
	     size_t len, struct sec_msg *out);

#endif /* R2P2D_SECURE_H */
