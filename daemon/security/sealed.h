/* SPDX-License-Identifier: MIT */
/*
 * sealed mode: after one tls-mode exchange per client worker and service (the
 * bootstrap), every RPC is one AEAD-sealed R2P2 request and response. Pure: bytes
 * in, bytes out; no sockets, no clocks (times come in as unix milliseconds).
 * docs/PROTOCOL.md, "sealed mode", gives every byte; this header the contracts.
 *
 *   bootstrap (inside a tls exchange, so confidential and server-authenticated):
 *     request payload  = 0x01 (association wanted) | app request
 *     response payload = 0x01 (association follows) | K | id | expiry | token | app response
 *   every later RPC (R2P2 flags carry R2P2_F_SEALED):
 *     request  = version | token | N | timestamp | AES-128-GCM(k_req) ciphertext | tag
 *     response = version | N | R | AES-128-GCM(k_resp, nonce R) ciphertext | tag
 *     reject   = version | 0xFF | reason      (clear, unauthenticated: a hint only)
 *
 * The token carries the association key K to any server of the service, sealed
 * under the service STEK (AES-256-GCM, key stek_derive(SEALED_TOKEN_LABEL)).
 * k_req and k_resp are HKDF-SHA256 of K, salted with the association id, for the
 * request nonce N: one key per request and one per response.
 *
 * Threads: a struct sealed_assoc and the sealed_ctx made from it belong to one
 * client worker; a struct sealed_server to one server worker. The strike register
 * (daemon/security/replay.h) is shared by the workers of a server and is thread-safe.
 */
#ifndef R2P2D_SEALED_H
#define R2P2D_SEALED_H

#include "boringssl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h" /* struct tls_buf, tls_buf_cleanup */

struct stek_set;
struct stek_key;
struct replay;

#define SEALED_VERSION 2	     /* 2: requests bound to the server they were sent to */
#define SEALED_KEY_LEN 16	     /* association key K, k_req, k_resp (AES-128) */
#define SEALED_ID_LEN 8		     /* association id */
#define SEALED_NONCE_LEN 12	     /* request nonce N = prefix (4) | counter (8, big-endian) */
#define SEALED_PREFIX_LEN 4	     /* random per association copy (client worker) */
#define SEALED_TAG_LEN 16	     /* AES-GCM tag */
#define SEALED_HDR_AD_LEN 4	     /* R2P2 header bytes bound as associated data */
#define SEALED_SVC_HASH_LEN 8	     /* SHA-256(service name)[0..8] inside the token */
#define SEALED_BIND_LEN TLS_BIND_LEN /* the server's address and port, as tls 0-RTT's */

/* Token: key_id (4, be) | nonce (12) | AES-256-GCM(K | id | expiry | svc hash) | tag (16). */
#define SEALED_TOKEN_PLAIN_LEN (SEALED_KEY_LEN + SEALED_ID_LEN + 8 + SEALED_SVC_HASH_LEN) /* 40 */
#define SEALED_TOKEN_LEN (4 + 12 + SEALED_TOKEN_PLAIN_LEN + SEALED_TAG_LEN)		  /* 72 */
#define SEALED_TOKEN_LABEL "r2p2 sealed token" /* stek_derive label of the token key */
#define SEALED_TOKEN_AD_LABEL "r2p2 sealed token v1"

/* Association blob in the bootstrap response: K | id | expiry (be64 unix ms) | token. */
#define SEALED_ASSOC_BLOB_LEN (SEALED_KEY_LEN + SEALED_ID_LEN + 8 + SEALED_TOKEN_LEN) /* 104 */

/* Bootstrap prefixes (first byte of the tls-mode request and response payloads). */
#define SEALED_BOOT_NONE 0x00  /* request: no association wanted; response: none follows */
#define SEALED_BOOT_ASSOC 0x01 /* request: association wanted; response: blob follows */
#define SEALED_BOOT_RENEW 0x02 /* request: only a new association, no app request (renewal) */
#define SEALED_BOOT_RETRY                                                                          \
	0x03			/* request: want (1) | prior (28) | app request: a sealed          \
				 * request the server refused, sent again through tls */
#define SEALED_BOOT_STATUS 0x02 /* response: status (1) instead of an app response */
#define SEALED_PRIOR_LEN (SEALED_ID_LEN + SEALED_NONCE_LEN + 8) /* id | N | timestamp */

/*
 * Fixed sizes of the sealed messages (payload = overhead + app bytes): a request
 * header of 111 bytes and overhead of 127, a response header of 25 and overhead of 41.
 */
#define SEALED_REQ_HDR_LEN (1 + SEALED_TOKEN_LEN + SEALED_NONCE_LEN + 8 + SEALED_BIND_LEN)
#define SEALED_REQ_OVERHEAD (SEALED_REQ_HDR_LEN + SEALED_TAG_LEN)
#define SEALED_RESP_HDR_LEN (1 + SEALED_NONCE_LEN + SEALED_NONCE_LEN)
#define SEALED_RESP_OVERHEAD (SEALED_RESP_HDR_LEN + SEALED_TAG_LEN)
#define SEALED_REJECT_LEN 3
#define SEALED_REJECT_MARK 0xFF
/* An authenticated REJECT: version | 0xFE | reason | tag (16), for a request whose
 * token the server opened: HMAC-SHA256(k_rej, hdr4 | version | 0xFE | reason). */
#define SEALED_REJECT_AUTH_MARK 0xFE
#define SEALED_REJECT_TAG_LEN 16
#define SEALED_REJECT_AUTH_LEN (SEALED_REJECT_LEN + SEALED_REJECT_TAG_LEN)
#define SEALED_REJECT_MAX SEALED_REJECT_AUTH_LEN

#define SEALED_LIFETIME_DEFAULT_MS (10u * 60 * 1000) /* association lifetime: 10 min */
#define SEALED_WINDOW_DEFAULT_MS 10000u		     /* |now - timestamp| allowed: 10 s */

/* Why a sealed request was refused; also the reason byte of a REJECT message. */
enum sealed_reason {
	SEALED_OK = 0,
	SEALED_REJ_MALFORMED = 1,     /* too short, wrong version, header not a sealed request */
	SEALED_REJ_UNKNOWN_KEY = 2,   /* token key id not in the STEK set: re-bootstrap */
	SEALED_REJ_BAD_TOKEN = 3,     /* token does not authenticate: re-bootstrap */
	SEALED_REJ_WRONG_SERVICE = 4, /* token minted for another service: re-bootstrap */
	SEALED_REJ_EXPIRED = 5,	      /* association expired: re-bootstrap */
	SEALED_REJ_STALE = 6,	      /* timestamp outside the window (clock skew or old replay) */
	SEALED_REJ_REPLAY = 7,	      /* (association id, N) seen before */
	SEALED_REJ_FULL = 8,	      /* strike register full: refused, retried through tls */
	SEALED_REJ_BAD_AEAD = 9,      /* request ciphertext, tag or associated data forged */
	SEALED_REJ_INTERNAL = 10,     /* out of memory or crypto failure at the server */
	SEALED_REJ_WRONG_SERVER = 11, /* bound to another server's address (a forwarded copy) */
	SEALED_REJ_RESTARTED = 12,    /* could predate the server's start or a step of its clock */
	SEALED_REJ_SHARE = 13,	      /* the association holds its share of the strike register */
	SEALED_REASON_MAX = SEALED_REJ_SHARE,
};

/*
 * The outcome a server reports, authenticated inside tls, for a request sent again
 * after a REJECT (SEALED_BOOT_RETRY) when it does not execute it.
 */
enum sealed_retry_status {
	SEALED_RETRY_NEW = 0,	  /* the first attempt never ran here: the request runs now */
	SEALED_RETRY_DONE = 1,	  /* the first attempt ran here: not run again */
	SEALED_RETRY_UNKNOWN = 2, /* the server cannot tell (it restarted, or the attempt is too
				   * old for its strike register): not run */
};

/* A sealed request as its retry names it: association id, N and timestamp. */
struct sealed_prior {
	uint8_t id[SEALED_ID_LEN];
	uint8_t nonce[SEALED_NONCE_LEN];
	uint64_t ts_ms;
};

/* sealed_reason_name returns a short lowercase name ("unknown_key"), "?" if out of range. */
const char *sealed_reason_name(unsigned reason);

/*
 * sealed_reason_rebootstrap says whether a client that got a REJECT with `reason`
 * should drop its association and bootstrap again (UNKNOWN_KEY, BAD_TOKEN,
 * WRONG_SERVICE, EXPIRED). The REJECT is unauthenticated: it is never a response.
 */
bool sealed_reason_rebootstrap(unsigned reason);

/* ---- bootstrap payloads (inside the tls exchange) ---------------------------- */

/*
 * sealed_boot_req_encode writes SEALED_BOOT_ASSOC (if `want_assoc`, else
 * SEALED_BOOT_NONE) followed by the `len` bytes of `req` into `out` (replacing its
 * contents). Returns 0 or -ENOMEM.
 */
int sealed_boot_req_encode(bool want_assoc, const uint8_t *req, size_t len, struct tls_buf *out);

/*
 * sealed_boot_req_decode parses a bootstrap request payload: `*out_want` is the
 * prefix, `*out_req`/`*out_req_len` the app request (pointing into `msg`).
 * Returns 0, or -EBADMSG if `len` is 0 or the prefix is not 0x00 or 0x01.
 */
/*
 * sealed_boot_renew_encode writes the one-byte renewal request (SEALED_BOOT_RENEW):
 * the client worker renews its association in the background, and the server answers
 * it without involving an app. sealed_boot_req_decode reports it as `*out_want` true
 * with `*out_req` NULL. Returns 0 or -ENOMEM.
 */
int sealed_boot_renew_encode(struct tls_buf *out);

int sealed_boot_req_decode(const uint8_t *msg, size_t len, bool *out_want, const uint8_t **out_req,
			   size_t *out_req_len);

/*
 * sealed_boot_retry_encode writes SEALED_BOOT_RETRY | `want_assoc` | `prior` | `req`
 * into `out` (replacing its contents). Returns 0 or -ENOMEM.
 */
int sealed_boot_retry_encode(bool want_assoc, const struct sealed_prior *prior, const uint8_t *req,
			     size_t len, struct tls_buf *out);

/* A parsed bootstrap request. */
struct sealed_boot_req {
	bool want;  /* an association is wanted */
	bool retry; /* SEALED_BOOT_RETRY: `prior` names the refused request */
	struct sealed_prior prior;
	const uint8_t *req; /* the app request (into the message); NULL for a renewal */
	size_t req_len;
};

/* sealed_boot_req_parse parses any bootstrap request. Returns 0 or -EBADMSG. */
int sealed_boot_req_parse(const uint8_t *msg, size_t len, struct sealed_boot_req *out);

/* sealed_boot_status_encode writes SEALED_BOOT_STATUS | `status` into `out`. */
int sealed_boot_status_encode(enum sealed_retry_status status, struct tls_buf *out);

/*
 * sealed_boot_resp_status returns the status of a SEALED_BOOT_STATUS response (1 or
 * 2), 0 for any other response, or -EBADMSG for a malformed status.
 */
int sealed_boot_resp_status(const uint8_t *msg, size_t len);

/*
 * sealed_boot_resp_encode writes SEALED_BOOT_ASSOC | `blob` (SEALED_ASSOC_BLOB_LEN
 * bytes) | `resp`, or SEALED_BOOT_NONE | `resp` if `blob` is NULL, into `out`
 * (replacing its contents). Returns 0 or -ENOMEM.
 */
int sealed_boot_resp_encode(const uint8_t *blob, const uint8_t *resp, size_t len,
			    struct tls_buf *out);

/*
 * sealed_boot_resp_decode parses a bootstrap response payload: `*out_blob` is the
 * association blob (into `msg`) or NULL for prefix 0x00; `*out_resp`/`*out_resp_len`
 * the app response. Returns 0, or -EBADMSG for an empty payload, an unknown prefix,
 * or prefix 0x01 with fewer than SEALED_ASSOC_BLOB_LEN bytes after it.
 */
int sealed_boot_resp_decode(const uint8_t *msg, size_t len, const uint8_t **out_blob,
			    const uint8_t **out_resp, size_t *out_resp_len);

/* ---- client ---------------------------------------------------------------- */

/*
 * One association as a client worker holds it. Fill it with sealed_assoc_init;
 * wipe it with sealed_assoc_cleanup. Never copy it to another thread or process:
 * (prefix, counter) must never repeat, and only this copy advances `counter`.
 */
struct sealed_assoc {
	uint8_t key[SEALED_KEY_LEN]; /* K: secret */
	uint8_t id[SEALED_ID_LEN];
	uint64_t expiry_ms; /* unix ms, the server's clock */
	uint8_t token[SEALED_TOKEN_LEN];
	uint8_t prk[32];		   /* HKDF-Extract(salt = id, ikm = K), cached: secret */
	uint8_t prefix[SEALED_PREFIX_LEN]; /* random, drawn by sealed_assoc_init */
	uint64_t counter;		   /* next request's counter; starts at 0 */
};

/*
 * sealed_assoc_init fills `a` from an association blob received in a bootstrap
 * response (sealed_boot_resp_decode) and draws a fresh random N prefix. Returns 0,
 * or -ESTALE if the blob has already expired at `now_ms`.
 */
int sealed_assoc_init(struct sealed_assoc *a, const uint8_t blob[SEALED_ASSOC_BLOB_LEN],
		      uint64_t now_ms);

/* sealed_assoc_cleanup wipes `a` (OPENSSL_cleanse). NULL is ignored. */
void sealed_assoc_cleanup(struct sealed_assoc *a);

/*
 * What one side keeps between a request and its response: the nonce N, and the
 * response key (secret). Wipe with sealed_ctx_cleanup.
 */
struct sealed_ctx {
	uint8_t nonce[SEALED_NONCE_LEN];
	uint8_t k_resp[SEALED_KEY_LEN];
	bool armed; /* set by seal_request/open_request; cleared once a response is sealed/opened */
	/* server, after a refusal of a request whose token opened: the REJECT's key */
	uint8_t k_rej[SEALED_KEY_LEN];
	bool rej_auth;
	/* client: the prk of the association that sealed the request, to check a REJECT */
	uint8_t prk[32];
	struct sealed_prior prior; /* client: the request's identity, for a retry */
};

/* sealed_ctx_cleanup wipes `ctx`. NULL is ignored. */
void sealed_ctx_cleanup(struct sealed_ctx *ctx);

/*
 * sealed_hdr_ad fills `out` with the first 4 bytes of the R2P2 header of a sealed
 * message of `type` (R2P2_REQUEST or R2P2_RESPONSE) and `policy`: the bytes bound
 * as associated data. A response is always FIXED_ROUTE.
 */
static inline void sealed_hdr_ad(uint8_t out[SEALED_HDR_AD_LEN], unsigned type, unsigned policy)
{
	out[0] = R2P2_MAGIC;
	out[1] = R2P2_HDR_LEN;
	out[2] = (uint8_t)((type << 4) | (policy & 0x0F));
	out[3] = R2P2_F_SEALED;
}

/*
 * sealed_seal_request seals `len` bytes of `req` as a sealed request under `a`
 * into `out` (replacing its contents; SEALED_REQ_OVERHEAD + `len` bytes) and fills
 * `out_ctx` for the response. `hdr` is the first 4 bytes of the request's R2P2
 * header (magic, header_size, type_policy, flags); the F and L bits of flags are
 * ignored (they differ between packets), all other bits are authenticated.
 * `dst` is the address and port the request is sent to: it is bound to it, so a
 * copy delivered to another server is refused there (SEALED_REJ_WRONG_SERVER).
 * `now_ms` is the client's unix time in ms. Consumes one counter value of `a`.
 * Returns 0, -ESTALE if `a` expired at `now_ms` (bootstrap again), -EOVERFLOW if
 * the counter is exhausted, -EMSGSIZE for `len` > TLS_MSG_MAX, -ENOMEM.
 */
int sealed_seal_request(struct sealed_assoc *a, const uint8_t hdr[SEALED_HDR_AD_LEN],
			const struct r2p2_addr *dst, const uint8_t *req, size_t len,
			uint64_t now_ms, struct tls_buf *out, struct sealed_ctx *out_ctx);

/*
 * sealed_open_response authenticates and decrypts a sealed response of the
 * request `ctx` was made for into `out` (replacing its contents); `hdr` as for the
 * request, of the response. At most one response is opened per ctx. Returns 0,
 * -EBADMSG if it is malformed, for another N, or forged (`out` is then empty), or
 * -EINVAL if `ctx` is not armed. A REJECT message is -EBADMSG here: look at it
 * with sealed_reject_decode.
 */
int sealed_open_response(struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
			 const uint8_t *msg, size_t len, struct tls_buf *out);

/* ---- server ---------------------------------------------------------------- */

struct sealed_stats {
	uint64_t opened;			  /* requests accepted */
	uint64_t responses;			  /* responses sealed */
	uint64_t minted;			  /* associations minted */
	uint64_t rejected[SEALED_REASON_MAX + 1]; /* by enum sealed_reason; [0] unused */
};

/* sealed_stats_add adds every counter of `src` to `dst`. */
static inline void sealed_stats_add(struct sealed_stats *dst, const struct sealed_stats *src)
{
	dst->opened += src->opened;
	dst->responses += src->responses;
	dst->minted += src->minted;
	for (unsigned r = 0; r <= SEALED_REASON_MAX; r++)
		dst->rejected[r] += src->rejected[r];
}

/* One server worker's sealed state: counters and a cache of token keys. */
struct sealed_server;

/* sealed_server_new returns a new server state, or NULL (errno ENOMEM). */
struct sealed_server *sealed_server_new(void);

/* sealed_server_free wipes the cached token keys and frees `s`. NULL is ignored. */
void sealed_server_free(struct sealed_server *s);

/* sealed_server_stats copies the counters of `s` into `out` (same thread as `s`). */
void sealed_server_stats(const struct sealed_server *s, struct sealed_stats *out);

/*
 * sealed_server_forget_keys wipes (OPENSSL_cleanse) every token key `s` caches that
 * was derived from a STEK key not in `stek` (same id and bytes; NULL: none is), so a
 * key retired by a reload or a rotation leaves no copy behind. Call it when the
 * service's set changes; sealed_open_request also does on its first use of a set
 * `s` has not seen. NULL `s` is ignored. Same thread as `s`.
 */
void sealed_server_forget_keys(struct sealed_server *s, const struct stek_set *stek);

/* sealed_server_opened_tokens returns how many opened tokens `s` keeps (at most 16). */
size_t sealed_server_opened_tokens(const struct sealed_server *s);

/* sealed_server_cached_keys returns how many token keys `s` caches (at most 4). */
size_t sealed_server_cached_keys(const struct sealed_server *s);

/* sealed_server_caches_key says whether a token key `s` caches was derived from the
 * bytes of STEK key `k` (whatever its id). For tests: secrets stay inside. */
bool sealed_server_caches_key(const struct sealed_server *s, const struct stek_key *k);

/*
 * sealed_token_seal writes the token for association (`key`, `id`, `expiry_ms`)
 * of `service` sealed under STEK key `k` to `out`. `nonce` is the token nonce: pass
 * NULL (a random one is drawn); a fixed one is for test vectors only. Returns 0 or
 * -EIO (crypto failure).
 */
int sealed_token_seal(const struct stek_key *k, const uint8_t key[SEALED_KEY_LEN],
		      const uint8_t id[SEALED_ID_LEN], uint64_t expiry_ms, const char *service,
		      const uint8_t *nonce, uint8_t out[SEALED_TOKEN_LEN]);

/*
 * sealed_assoc_mint makes a new association for `service` during a bootstrap: a
 * random K and id, expiry `now_ms` + `lifetime_ms` (0: SEALED_LIFETIME_DEFAULT_MS),
 * the token sealed under the current key of `stek`, and writes the blob for
 * sealed_boot_resp_encode to `out_blob`. Returns 0, -EINVAL (no set), -EIO.
 */
int sealed_assoc_mint(struct sealed_server *s, const struct stek_set *stek, const char *service,
		      uint64_t now_ms, uint64_t lifetime_ms,
		      uint8_t out_blob[SEALED_ASSOC_BLOB_LEN]);

/*
 * What a server checks of a request besides its cryptography: its clocks, its
 * timestamp window, when it started and where it may be reached.
 */
struct sealed_checks {
	uint64_t now_ms;    /* unix ms: tokens and timestamps */
	uint64_t now_ns;    /* monotonic ns: the strike register's clock */
	uint64_t window_ms; /* |now - timestamp| allowed (0: SEALED_WINDOW_DEFAULT_MS) */
	uint64_t start_ms;  /* unix ms when this server started (0: no restart guard) */
	/* The addresses a request may be bound to, with their ports (network order; 0:
	 * `port`, the port of the service the request came to). */
	const struct r2p2_addr *self;
	size_t num_self;
	uint16_t port;
};

/*
 * sealed_open_request checks and decrypts one sealed request payload for
 * `service` into `out` (replacing its contents) and fills `out_ctx` for the
 * response. `hdr` is the first 4 bytes of the request's R2P2 header (F and L bits
 * ignored); it must be a REQUEST carrying R2P2_F_SEALED. A timestamp more than
 * `chk->window_ms` from `chk->now_ms` is STALE; one that could predate the
 * server's start (stamped before `start_ms`) is RESTARTED, as is every request
 * for two windows after `s` saw the wall clock step against the monotonic one;
 * a request bound to an address not in `chk->self` is WRONG_SERVER. `strike` is
 * this server's sealed strike register, on the monotonic clock (`chk->now_ns`);
 * its window must be at least 2 * the timestamp window.
 * Order: parse, binding, key id, token, service, expiry, timestamp, clock step,
 * start, AEAD, strike register (a replay is refused there, after the AEAD that
 * any forged body under a genuine token costs too); the plaintext is handed up
 * only after all passed.
 * Returns 0 (`*out_reason` = SEALED_OK), or -EBADMSG with `*out_reason` saying
 * why (counted; answer with sealed_reject_encode), or -ENOMEM/-EIO with
 * SEALED_REJ_INTERNAL. On failure `out` is empty and `out_ctx` disarmed.
 */
int sealed_open_request(struct sealed_server *s, const struct stek_set *stek, const char *service,
			struct replay *strike, const struct sealed_checks *chk,
			const uint8_t hdr[SEALED_HDR_AD_LEN], const uint8_t *msg, size_t len,
			struct tls_buf *out, struct sealed_ctx *out_ctx,
			enum sealed_reason *out_reason);

/*
 * sealed_retry_check decides what to do with a request sent again through tls
 * after a REJECT: DONE when the strike register holds `prior` (it ran here),
 * UNKNOWN when the register cannot vouch for it (it could predate the server's
 * start or a clock step, or is older than what the register covers), else NEW:
 * `prior` is then inserted, so the refused original can never run later.
 * A full register gives UNKNOWN (fail closed).
 */
enum sealed_retry_status sealed_retry_check(struct sealed_server *s, struct replay *strike,
					    const struct sealed_prior *prior,
					    const struct sealed_checks *chk);

/*
 * sealed_seal_response seals `len` bytes of `resp` as the response to the request
 * `ctx` was opened for, into `out` (replacing its contents; SEALED_RESP_OVERHEAD +
 * `len` bytes), with a fresh random AEAD nonce R. `hdr`: the response's R2P2 header
 * bytes. Disarms and wipes `ctx`: one response per request. Returns 0, -EINVAL if
 * `ctx` is not armed, -EMSGSIZE, -ENOMEM, -EIO.
 */
int sealed_seal_response(struct sealed_server *s, struct sealed_ctx *ctx,
			 const uint8_t hdr[SEALED_HDR_AD_LEN], const uint8_t *resp, size_t len,
			 struct tls_buf *out);

/* ---- REJECT ---------------------------------------------------------------- */

/* sealed_reject_encode writes version | 0xFF | `reason` (SEALED_REJECT_LEN bytes) to `out`. */
void sealed_reject_encode(enum sealed_reason reason, uint8_t out[SEALED_REJECT_LEN]);

/*
 * sealed_reject_decode returns 0 and the reason in `*out_reason` if `msg` is a
 * REJECT (exactly SEALED_REJECT_LEN bytes, version 1, mark 0xFF, reason 1..
 * SEALED_REASON_MAX), else -EBADMSG. Unauthenticated: a hint, never a response.
 */
int sealed_reject_decode(const uint8_t *msg, size_t len, enum sealed_reason *out_reason);

/*
 * sealed_reject_seal writes the REJECT for `reason` to `out` and returns its length:
 * authenticated (SEALED_REJECT_AUTH_LEN bytes) when sealed_open_request left a
 * REJECT key in `ctx` (the request's token opened), else the clear 3-byte form.
 * `hdr`: the REJECT's R2P2 header bytes (a RESPONSE). Wipes the key.
 */
size_t sealed_reject_seal(struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
			  enum sealed_reason reason, uint8_t out[SEALED_REJECT_MAX]);

/*
 * sealed_reject_open reads `msg` as a REJECT of the request `ctx` was sealed for.
 * Returns 0 with the reason and whether it is authentic (the authenticated form, its
 * tag verified under the request's association); -EBADMSG when it is the
 * authenticated form and its tag does not verify (forged: ignore it); -ENOMSG when it
 * is no REJECT at all.
 */
int sealed_reject_open(const struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
		       const uint8_t *msg, size_t len, enum sealed_reason *out_reason,
		       bool *out_authentic);

/*
 * sealed_reason_authenticated says whether a server always authenticates a REJECT
 * for `reason` (it is found after the token opened): a clear one is forged.
 */
bool sealed_reason_authenticated(unsigned reason);

#endif /* R2P2D_SEALED_H */
