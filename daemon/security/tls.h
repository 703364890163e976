/* SPDX-License-Identifier: MIT */
/*
 * tls mode: one RPC = one TLS 1.3 exchange (BoringSSL), carried in R2P2
 * messages. Pure: byte flights in, byte flights and plaintext out; no sockets.
 * See docs/PROTOCOL.md, "tls mode", for every byte.
 *
 * Client, per RPC: a ClientHello carrying the ticket cached for the service,
 * with the request as 0-RTT early data (TLS_KIND_CLIENT_FIRST). The server
 * answers ServerHello..Finished, a half-RTT NewSessionTicket and the response
 * as half-RTT data (TLS_KIND_SERVER_FINAL). The client stores the ticket and
 * never sends its Finished.
 * Without a usable ticket, or when early data is rejected or not allowed, the
 * server answers with its handshake flight only (TLS_KIND_SERVER_HANDSHAKE,
 * naming a handshake id); the client continues with its Finished and the
 * request as 1-RTT data (TLS_KIND_CLIENT_SECOND), and the server answers
 * TLS_KIND_SERVER_FINAL. Either way the request is executed exactly once.
 *
 * Threads: a tls_client/tls_server and everything made from it belong to one
 * worker thread.
 */
#ifndef R2P2D_TLS_H
#define R2P2D_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <r2p2/wire.h>

#include "engine.h"

/* Framing version and kinds: the first two bytes of every tls-mode R2P2 payload. */
#define TLS_FRAME_VERSION 1
#define TLS_FRAME_HDR_LEN 10 /* version, kind, 8-byte handshake id */
enum tls_kind {
	TLS_KIND_CLIENT_FIRST = 1,     /* ClientHello [+ early data (the request)] */
	TLS_KIND_SERVER_FINAL = 2,     /* server flight + tickets + response */
	TLS_KIND_SERVER_HANDSHAKE = 3, /* server flight only: the client must continue */
	TLS_KIND_CLIENT_SECOND = 4,    /* client Finished + request as 1-RTT data */
	TLS_KIND_ERROR = 5,	       /* a TLS alert; the exchange failed */
};
/* Set on the kind of a CLIENT_FIRST: "prove your answers"; on an answer: a proof follows
 * the records (docs/PROTOCOL.md, "Answer proofs"). */
#define TLS_KIND_AUTH 0x80

/* The proof after an answer's records: body, type (1), body length (2, big-endian). */
enum tls_proof_type {
	TLS_PROOF_TAG = 1, /* HMAC-SHA256 under a key both sides hold, TLS_PROOF_TAG_LEN bytes */
	TLS_PROOF_SIG = 2, /* certificate length (2), certificate (DER), signature */
};
#define TLS_PROOF_TAG_LEN 16

/*
 * Inside TLS, each direction carries one message: a 4-byte big-endian length,
 * then that many bytes (so a cut flight is detected, never handed up).
 */
#define TLS_MSG_PREFIX_LEN 4
#define TLS_MSG_MAX (16u << 20) /* largest request or response */
/*
 * A length prefix of TLS_MSG_STATUS | code (never a length: above TLS_MSG_MAX)
 * carries a status instead of a response, authenticated like one:
 * TLS_STATUS_ALREADY says the request had already run (its 0-RTT copy), so it
 * was not run again (the client's call fails with -EALREADY).
 */
#define TLS_MSG_STATUS 0xFFFFFF00u
/*
 * 0-RTT data is bound to the server it was sent to: its message starts with the
 * server's address (16; IPv4 as ::ffff:a.b.c.d) and UDP port (2), so a server that
 * receives a copy meant for another one refuses it. 1-RTT data carries no binding
 * (its handshake is fresh and cannot be replayed).
 */
#define TLS_BIND_LEN 18
#define TLS_MAX_SELF 16 /* addresses a server may be reached at (tls_server_set_self) */

/*
 * tls_bind_names says whether the binding `b` names one of the `num` addresses of
 * `self` (a self entry's port 0 stands for `port`, network order). Sealed requests
 * use the same binding.
 */
bool tls_bind_names(const uint8_t b[TLS_BIND_LEN], const struct r2p2_addr *self, size_t num,
		    uint16_t port);

/* tls_bind_encode writes the TLS_BIND_LEN binding bytes of `a` (port in network order). */
static inline void tls_bind_encode(const struct r2p2_addr *a, uint8_t out[TLS_BIND_LEN])
{
	for (int i = 0; i < 16; i++)
		out[i] = 0;
	if (a && a->family == AF_INET) {
		out[10] = 0xff;
		out[11] = 0xff;
		for (int i = 0; i < 4; i++)
			out[12 + i] = a->addr[i];
	} else if (a) {
		for (int i = 0; i < 16; i++)
			out[i] = a->addr[i];
	}
	out[16] = a ? ((const uint8_t *)&a->port)[0] : 0;
	out[17] = a ? ((const uint8_t *)&a->port)[1] : 0;
}
#define TLS_STATUS_ALREADY 1

/*
 * A request goes as 0-RTT data only if prefix + request fit the server's early
 * data limit: BoringSSL's kMaxEarlyDataAccepted, which it writes into every
 * ticket and which this BoringSSL neither lets us set nor read back. Larger
 * requests go as 1-RTT data (one more round trip).
 */
#define TLS_EARLY_DATA_MAX 14336
/* Server: 1-RTT handshakes held for their CLIENT_SECOND (the oldest is evicted). */
#define TLS_PENDING_MAX 4096

/*
 * A growable byte buffer owned by the caller; free with tls_buf_cleanup. It may hold
 * plaintext: its bytes are wiped (OPENSSL_cleanse) whenever they are given back
 * (growth, tls_buf_scrub, tls_buf_cleanup), never left to the heap.
 */
struct tls_buf {
	uint8_t *data;
	size_t len, cap;
	size_t dirty; /* [0, dirty) may hold bytes written since the last wipe */
};

/* tls_buf_cleanup wipes all `cap` bytes of `b`, frees them and empties `b`. NULL is ignored. */
void tls_buf_cleanup(struct tls_buf *b);

/*
 * tls_buf_reserve makes `b` hold room for at least `n` bytes (its first `len` kept)
 * and counts [0, `n`) as written. A buffer that moves is wiped before it is freed.
 * Returns 0 or -ENOMEM.
 */
int tls_buf_reserve(struct tls_buf *b, size_t n);

/*
 * tls_buf_scrub wipes every byte written to `b` since its last wipe (not only the
 * first `len`: a shorter message leaves the tail of a longer one) and empties it,
 * keeping the memory. Costs what was written, nothing when nothing was.
 */
void tls_buf_scrub(struct tls_buf *b);

struct tls_stats {
	uint64_t handshakes_full;    /* client/server: no ticket or ticket refused */
	uint64_t resumed;	     /* client/server: ticket accepted */
	uint64_t early_accepted;     /* client/server: 0-RTT data accepted */
	uint64_t early_rejected;     /* client/server: 0-RTT offered, refused */
	uint64_t replays_refused;    /* server: ClientHello random seen before */
	uint64_t bad_messages;	     /* server/client: undecodable, bad MAC, bad framing */
	uint64_t verify_failures;    /* client: certificate chain or name refused */
	uint64_t tickets_received;   /* client */
	uint64_t pending_handshakes; /* server: 1-RTT handshakes waiting for CLIENT_SECOND */
	uint64_t already_answered;   /* server: 1-RTT request of a replayed ClientHello,
				      * answered TLS_STATUS_ALREADY instead of run */
	uint64_t wrong_server;	     /* server: 0-RTT data bound to another server */
	uint64_t early_too_old;	     /* server: 0-RTT refused, its ticket predates the start
				      * or is older than the strike register's window */
};

/* tls_stats_add adds every counter of `src` to `dst`. */
static inline void tls_stats_add(struct tls_stats *dst, const struct tls_stats *src)
{
	dst->handshakes_full += src->handshakes_full;
	dst->resumed += src->resumed;
	dst->early_accepted += src->early_accepted;
	dst->early_rejected += src->early_rejected;
	dst->replays_refused += src->replays_refused;
	dst->bad_messages += src->bad_messages;
	dst->verify_failures += src->verify_failures;
	dst->tickets_received += src->tickets_received;
	dst->pending_handshakes += src->pending_handshakes;
	dst->already_answered += src->already_answered;
	dst->wrong_server += src->wrong_server;
	dst->early_too_old += src->early_too_old;
}

/* ---- client ---------------------------------------------------------------- */

struct tls_client;
struct tls_call;

/*
 * tls_client_new loads the CA bundle (PEM) at `ca_path` that server
 * certificates must chain to. Returns NULL and writes a reason into `err`.
 * tls_client_free drops the caller's reference: each call begun on `c` holds one
 * until tls_call_free, so a client a reload replaces (a new CA) outlives its calls
 * in flight. One thread only, as every tls_client and tls_call.
 */
struct tls_client *tls_client_new(const char *ca_path, char *err, size_t err_len);
void tls_client_free(struct tls_client *c);
void tls_client_stats(const struct tls_client *c, struct tls_stats *out);
/* tls_client_tickets returns how many unused tickets `c` holds for `service`. */
size_t tls_client_tickets(const struct tls_client *c, const char *service);

/*
 * tls_call_begin starts one RPC to `service` (also the name the certificate
 * must carry). With a cached ticket and `replay_safe`, `req` goes as early
 * data. On success (0) `*out_call` is the call and `flight` holds the framed
 * first message to send as the R2P2 request. Returns -errno otherwise.
 */
int tls_call_begin(struct tls_client *c, const char *service, const uint8_t *req, size_t len,
		   bool replay_safe, struct tls_call **out_call, struct tls_buf *flight);

/*
 * tls_call_begin_to is tls_call_begin for a request sent to `dst`: 0-RTT data is
 * bound to it (TLS_BIND_LEN). tls_call_begin binds to no address (all zeros).
 */
int tls_call_begin_to(struct tls_client *c, const char *service, const struct r2p2_addr *dst,
		      const uint8_t *req, size_t len, bool replay_safe, struct tls_call **out_call,
		      struct tls_buf *flight);

enum tls_call_result {
	TLS_CALL_DONE = 0,     /* the response is in `resp` */
	TLS_CALL_CONTINUE = 1, /* send `flight` as a new R2P2 request, then call again */
	TLS_CALL_IGNORE = 2,   /* not an answer to this exchange (malformed, without a valid
				* proof, or a frame of another step, such as a stale
				* SERVER_HANDSHAKE resent for a duplicated CLIENT_FIRST): nothing
				* changed, wait for the answer */
};

/*
 * tls_call_input processes one R2P2 response payload of the call. Every answer
 * must carry a valid proof (docs/PROTOCOL.md, "Answer proofs"), checked before
 * BoringSSL reads any of it: a forged or altered frame is TLS_CALL_IGNORE and
 * changes nothing. Returns TLS_CALL_DONE or TLS_CALL_CONTINUE, or a negative errno
 * for a proven answer: -EACCES when BoringSSL did not verify the chain or the name,
 * -EBADMSG when the exchange itself failed, -ECONNREFUSED for the server's ERROR,
 * -EALREADY when the server had run the request already. tls_call_error() then
 * says why, in words.
 */
int tls_call_input(struct tls_call *call, const uint8_t *msg, size_t len, struct tls_buf *flight,
		   struct tls_buf *resp);
const char *tls_call_error(const struct tls_call *call);
/*
 * tls_call_refusal returns -EACCES when `call` set aside an answer whose proof was
 * signed by a certificate it does not trust (not chaining to its CA, or not naming
 * the service; tls_call_error says which), else 0. Such an answer never ends the
 * call (anyone can sign with a key of their own); when the call then times out,
 * this is the likelier reason to report.
 */
int tls_call_refusal(const struct tls_call *call);

/* tls_call_early_accepted says whether the server took the request as 0-RTT data. */
bool tls_call_early_accepted(const struct tls_call *call);
/* tls_call_early_offered says whether the call's first flight carried early data. */
bool tls_call_early_offered(const struct tls_call *call);
void tls_call_free(struct tls_call *call);

/* ---- server ---------------------------------------------------------------- */

struct tls_server;
struct tls_conn; /* one server-side exchange waiting for the app's response */
struct stek_set;
struct replay;

struct tls_service_keys {
	const char *name;      /* service name = certificate SAN = SNI */
	const char *cert_path; /* PEM chain */
	const char *key_path;  /* PEM private key */
};

/*
 * tls_server_new loads the certificate and key of every service in `svcs`
 * and takes references to `stek` and `replay` (not owned; they must outlive
 * the server). `early_data` turns 0-RTT acceptance on. Returns NULL and a
 * reason in `err` on failure.
 */
struct tls_server *tls_server_new(const struct tls_service_keys *svcs, size_t num_svcs,
				  bool early_data, char *err, size_t err_len);
void tls_server_free(struct tls_server *s);

/*
 * tls_server_replace_keys reads the certificate chain and key of `k` again (a
 * reload) for the first service of the single-service server `s`, with
 * `early_data` and the ticket keys `stek`. When the chain, the key, the name or
 * early_data differ from what `s` runs with, new handshakes use the new ones
 * (`*out_changed`); exchanges in progress finish with the ones they started with.
 * Returns 0, or -EINVAL with a reason in `err` (and `s` unchanged).
 */
int tls_server_replace_keys(struct tls_server *s, const struct tls_service_keys *k, bool early_data,
			    struct stek_set *stek, bool *out_changed, char *err, size_t err_len);

/*
 * tls_check_service_keys loads what a served service `k` names as tls_server_new
 * would (the chain, the key, that they match) and checks that the certificate names
 * the service (a subjectAltName DNS entry, as clients require). Returns 0, or -EINVAL
 * with a reason in `err`. For `r2p2d --check`.
 */
int tls_check_service_keys(const struct tls_service_keys *k, char *err, size_t err_len);
/* tls_server_set_stek switches to the keys in `stek` (a reference is taken; the old one dropped).
 */
void tls_server_set_stek(struct tls_server *s, struct stek_set *stek);
void tls_server_set_replay(struct tls_server *s, struct replay *r);
/*
 * tls_server_set_self gives `s` the addresses 0-RTT data may be bound to (`num`
 * entries, copied; a port of 0 stands for `port`, the service's, network order).
 * With none set, any binding is taken (a server that does not know its address).
 */
void tls_server_set_self(struct tls_server *s, const struct r2p2_addr *self, size_t num,
			 uint16_t port);

/*
 * tls_server_set_early_limits bounds which tickets may carry early data: none
 * issued before `start_ms` (unix ms; when this server's strike register started
 * empty, so a first flight the previous process ran is not run again), and none
 * older than `max_age_ms` (0: no limit), so that a replay is refused by the ticket's
 * age once the register has forgotten its first flight: give it the register's
 * window. The request then comes as 1-RTT data (counted as early_too_old).
 */
void tls_server_set_early_limits(struct tls_server *s, uint64_t start_ms, uint64_t max_age_ms);

void tls_server_stats(const struct tls_server *s, struct tls_stats *out);

enum tls_srv_result {
	TLS_SRV_REQUEST = 0, /* a request: `req`; answer through tls_server_respond(`*out_conn`) */
	TLS_SRV_REPLY = 1,   /* send `flight` as the R2P2 response now; no request yet */
};

/*
 * tls_server_input processes one R2P2 request payload for `service` from `peer`
 * at `now`. Returns TLS_SRV_REQUEST (the request is in `req`, `*out_conn` must
 * be answered or freed), TLS_SRV_REPLY (send `flight`), or a negative errno
 * when the message must be dropped (-EBADMSG) — `flight` may then hold an
 * ERROR message to send back.
 */
int tls_server_input(struct tls_server *s, const char *service, const struct r2p2_addr *peer,
		     const uint8_t *msg, size_t len, uint64_t now, struct tls_conn **out_conn,
		     struct tls_buf *req, struct tls_buf *flight);

/* tls_server_respond seals `resp` as the final flight of `conn` and frees `conn`. */
int tls_server_respond(struct tls_server *s, struct tls_conn *conn, const uint8_t *resp, size_t len,
		       struct tls_buf *flight);
void tls_conn_free(struct tls_conn *conn);

/*
 * tls_conn_replayed says whether the exchange's ClientHello had already been
 * accepted with early data (its random was in the strike register): a client that
 * completes such a handshake sent that early data itself, so its request already
 * ran (a copy forwarded by an attacker, RFC 8446 appendix E.5).
 */
bool tls_conn_replayed(const struct tls_conn *conn);

/*
 * tls_server_respond_status answers `conn` with an authenticated status
 * (TLS_STATUS_ALREADY) instead of a response, like tls_server_respond.
 */
int tls_server_respond_status(struct tls_server *s, struct tls_conn *conn, unsigned status,
			      struct tls_buf *flight);

/* tls_server_expire frees pending 1-RTT handshakes older than `max_age_ns`. */
void tls_server_expire(struct tls_server *s, uint64_t now, uint64_t max_age_ns);

#endif /* R2P2D_TLS_H */
