// SPDX-License-Identifier: MIT
/*
 * tls.c: tls mode, one RPC = one TLS 1.3 exchange (BoringSSL) over memory BIOs.
 *
 * The byte layout is docs/PROTOCOL.md, "tls mode"; the contract is tls.h. What
 * this file adds is the reasoning:
 *
 * - Exactly once. A request reaches the app either as 0-RTT data the server
 *   accepted after its ClientHello random went into the strike register, or as
 *   1-RTT data after the client's Finished, on a handshake that lives in the
 *   pending table under a single-use id. A replayed first flight finds its random
 *   in the register and gets its early data refused; a replayed second flight
 *   finds no pending handshake.
 * - Nothing leaves unverified. Early data is only offered with a ticket, i.e. to
 *   a server that proved the certificate chain of this very service on an earlier
 *   handshake (tickets are cached per service name); a first contact sends the
 *   request only after BoringSSL verified chain and name.
 * - Messages are framed inside TLS: each direction's application data is one
 *   message, a 4-byte big-endian length then the bytes, so a flight cut at a
 *   record boundary is refused instead of handing a prefix up.
 */
#include "boringssl.h"

#include "err.h"
#include "tls.h"

#include "replay.h"
#include "stek.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

_Static_assert((TLS_PENDING_MAX & (TLS_PENDING_MAX - 1)) == 0, "a power of two");
_Static_assert(TLS_MSG_PREFIX_LEN == 4, "PROTOCOL.md");

/* Tickets cached per service and worker: each is single-use, so concurrent calls
 * each need one; a call without one pays a full handshake. */
#define TLS_TICKETS_PER_SERVICE 64
/* Free slots the strike register keeps for the workers racing to insert (at most a
 * sixteenth of a small register). */
#define TLS_REPLAY_MARGIN 64
#define TLS_ERR_LEN 200

/* ---- buffers and framing -------------------------------------------------------- */

void tls_buf_cleanup(struct tls_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int buf_reserve(struct tls_buf *b, size_t extra)
{
	size_t want, cap;
	uint8_t *p;

	if (extra > SIZE_MAX - b->len)
		return -ENOMEM;
	want = b->len + extra;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

static int buf_append(struct tls_buf *b, const void *p, size_t n)
{
	if (!n)
		return 0;
	if (buf_reserve(b, n) != 0)
		return -ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* frame_start empties `b` and writes the 10-byte frame header. */
static int frame_start(struct tls_buf *b, enum tls_kind kind, uint64_t id)
{
	uint8_t hdr[TLS_FRAME_HDR_LEN];
	size_t n;
	CBB cbb;

	if (!CBB_init_fixed(&cbb, hdr, sizeof(hdr)) || !CBB_add_u8(&cbb, TLS_FRAME_VERSION) ||
	    !CBB_add_u8(&cbb, (uint8_t)kind) || !CBB_add_u64(&cbb, id) ||
	    !CBB_finish(&cbb, NULL, &n)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	b->len = 0;
	return buf_append(b, hdr, n);
}

struct frame {
	enum tls_kind kind;
	uint64_t id;
	const uint8_t *tls; /* the TLS records after the header */
	size_t tls_len;
};

/*
 * frame_parse checks the header of `msg`: version, a known kind, and an id that
 * is non-zero exactly for SERVER_HANDSHAKE and CLIENT_SECOND. Returns 0 or -EBADMSG.
 */
static int frame_parse(const uint8_t *msg, size_t len, struct frame *f)
{
	uint8_t version, kind;
	bool needs_id;
	CBS cbs;

	if (!msg)
		return -EBADMSG;
	CBS_init(&cbs, msg, len);
	if (!CBS_get_u8(&cbs, &version) || !CBS_get_u8(&cbs, &kind) || !CBS_get_u64(&cbs, &f->id))
		return -EBADMSG;
	if (version != TLS_FRAME_VERSION || kind < TLS_KIND_CLIENT_FIRST || kind > TLS_KIND_ERROR)
		return -EBADMSG;
	f->kind = (enum tls_kind)kind;
	needs_id = f->kind == TLS_KIND_SERVER_HANDSHAKE || f->kind == TLS_KIND_CLIENT_SECOND;
	if (needs_id != (f->id != 0))
		return -EBADMSG;
	f->tls = CBS_data(&cbs);
	f->tls_len = CBS_len(&cbs);
	return 0;
}

/* feed hands `n` bytes of TLS records to `rbio`. */
static int feed(BIO *rbio, const uint8_t *p, size_t n)
{
	while (n) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;

		if (BIO_write(rbio, p, chunk) != chunk)
			return -ENOMEM;
		p += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

/* drain appends everything BoringSSL wrote to `wbio` to `b` (NULL: discard it). */
static int drain(BIO *wbio, struct tls_buf *b)
{
	size_t n = BIO_pending(wbio);

	if (!n)
		return 0;
	if (!b)
		return BIO_reset(wbio) == 1 ? 0 : -EIO;
	if (n > INT_MAX || buf_reserve(b, n) != 0)
		return -ENOMEM;
	if (BIO_read(wbio, b->data + b->len, (int)n) != (int)n)
		return -EIO;
	b->len += n;
	return 0;
}

/*
 * message_write writes the in-TLS form of the `len`-byte message `msg` (its length
 * prefix, then the bytes) to `out`, which holds exactly TLS_MSG_PREFIX_LEN + `len`
 * bytes; `len` is at most TLS_MSG_MAX. Returns 0 or -ENOMEM.
 */
static int message_write(uint8_t *out, const uint8_t *msg, size_t len)
{
	CBB cbb;

	if (!CBB_init_fixed(&cbb, out, TLS_MSG_PREFIX_LEN + len) ||
	    !CBB_add_u32(&cbb, (uint32_t)len) || !CBB_add_bytes(&cbb, msg, len) ||
	    !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	return 0;
}

/*
 * read_message reads one length-prefixed message from `ssl` into `out` (emptied
 * first). Everything must already be in the read BIO: running out of records
 * before the message is complete means the flight was cut or forged. Returns 0
 * or -EBADMSG.
 */
static int read_message(SSL *ssl, struct tls_buf *out)
{
	uint8_t pfx[TLS_MSG_PREFIX_LEN];
	size_t got = 0, n;
	uint32_t n32;
	CBS cbs;

	out->len = 0;
	while (got < sizeof(pfx)) {
		int r = SSL_read(ssl, pfx + got, (int)(sizeof(pfx) - got));

		if (r <= 0)
			return -EBADMSG;
		got += (size_t)r;
	}
	CBS_init(&cbs, pfx, sizeof(pfx));
	if (!CBS_get_u32(&cbs, &n32))
		return -EBADMSG;
	n = n32;
	if (n > TLS_MSG_MAX || buf_reserve(out, n) != 0)
		return -EBADMSG;
	while (out->len < n) {
		size_t want = n - out->len;
		int r = SSL_read(ssl, out->data + out->len, want > INT_MAX ? INT_MAX : (int)want);

		if (r <= 0)
			return -EBADMSG;
		out->len += (size_t)r;
	}
	return 0;
}

/* new_ssl makes an SSL from `ctx` with two fresh memory BIOs and `app` as app data. */
static SSL *new_ssl(SSL_CTX *ctx, void *app, BIO **out_rbio, BIO **out_wbio)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		return NULL;
	}
	/* an empty read BIO means "wait for more" (WANT_READ), never EOF: the default
	 * of BIO_s_mem, said again because everything here relies on it */
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_app_data(ssl, app);
	*out_rbio = rbio;
	*out_wbio = wbio;
	return ssl;
}

/* ssl_reason names the first error on BoringSSL's queue (or `fallback`). */
static const char *ssl_reason(const char *fallback)
{
	uint32_t e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : fallback;
}

/* tls13_ctx makes an SSL_CTX that speaks TLS 1.3 only. */
static SSL_CTX *tls13_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (!ctx)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* ---- client --------------------------------------------------------------------- */

/* The tickets of one service, oldest first; the newest is used next. */
struct ticket_slot {
	char *service;
	SSL_SESSION *sess[TLS_TICKETS_PER_SERVICE];
	size_t num;
};

struct tls_client {
	SSL_CTX *ctx;
	struct ticket_slot *slots;
	size_t num_slots, cap_slots;
	struct tls_stats st;
};

enum call_state {
	CALL_FIRST_SENT,  /* CLIENT_FIRST is out */
	CALL_SECOND_SENT, /* CLIENT_SECOND is out */
	CALL_DONE,
	CALL_FAILED,
};

struct tls_call {
	struct tls_client *c;
	SSL *ssl;
	BIO *rbio, *wbio;
	char *service;
	uint8_t *msg; /* the request as it goes into TLS: length prefix + bytes */
	size_t msg_len;
	enum call_state state;
	bool offered_early, early_accepted;
	char err[TLS_ERR_LEN];
};

static struct ticket_slot *slot_find(struct tls_client *c, const char *service, bool create)
{
	struct ticket_slot *s;

	for (size_t i = 0; i < c->num_slots; i++)
		if (strcmp(c->slots[i].service, service) == 0)
			return &c->slots[i];
	if (!create)
		return NULL;
	if (c->num_slots == c->cap_slots) {
		size_t cap = c->cap_slots ? 2 * c->cap_slots : 8;
		struct ticket_slot *p = realloc(c->slots, cap * sizeof(*p));

		if (!p)
			return NULL;
		c->slots = p;
		c->cap_slots = cap;
	}
	s = &c->slots[c->num_slots];
	memset(s, 0, sizeof(*s));
	s->service = strdup(service);
	if (!s->service)
		return NULL;
	c->num_slots++;
	return s;
}

/* ticket_pop takes the newest ticket of `service` (the caller owns it), or NULL. */
static SSL_SESSION *ticket_pop(struct tls_client *c, const char *service)
{
	struct ticket_slot *s = slot_find(c, service, false);

	if (!s || !s->num)
		return NULL;
	return s->sess[--s->num];
}

/* client_new_session stores a ticket the server sent (BoringSSL's new-session callback). */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_call *call = SSL_get_app_data(ssl);
	struct ticket_slot *s;

	if (!call || !SSL_SESSION_is_resumable(sess))
		return 0;
	s = slot_find(call->c, call->service, true);
	if (!s)
		return 0; /* not taken: BoringSSL frees it */
	if (s->num == TLS_TICKETS_PER_SERVICE) {
		SSL_SESSION_free(s->sess[0]);
		memmove(s->sess, s->sess + 1, (s->num - 1) * sizeof(s->sess[0]));
		s->num--;
	}
	s->sess[s->num++] = sess;
	call->c->st.tickets_received++;
	return 1;
}

struct tls_client *tls_client_new(const char *ca_path, char *err, size_t err_len)
{
	struct tls_client *c = calloc(1, sizeof(*c));

	if (!c) {
		set_err(err, err_len, "tls: out of memory");
		return NULL;
	}
	ERR_clear_error();
	c->ctx = tls13_ctx();
	if (!c->ctx) {
		set_err(err, err_len, "tls: cannot make a TLS 1.3 context");
		goto fail;
	}
	if (!ca_path || SSL_CTX_load_verify_locations(c->ctx, ca_path, NULL) != 1) {
		set_err(err, err_len, "tls: cannot load CA certificates from %s: %s",
			ca_path ? ca_path : "(none)", ssl_reason("no certificate found"));
		goto fail;
	}
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	/* the service name must be a DNS SAN; a subject CN never counts */
	X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(c->ctx),
					X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
					    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* tickets live in our per-service cache only */
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(c->ctx, client_new_session);
	SSL_CTX_set_early_data_enabled(c->ctx, 1);
	ERR_clear_error();
	return c;
fail:
	ERR_clear_error();
	tls_client_free(c);
	return NULL;
}

void tls_client_free(struct tls_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->num_slots; i++) {
		for (size_t j = 0; j < c->slots[i].num; j++)
			SSL_SESSION_free(c->slots[i].sess[j]);
		free(c->slots[i].service);
	}
	free(c->slots);
	SSL_CTX_free(c->ctx);
	free(c);
}

void tls_client_stats(const struct tls_client *c, struct tls_stats *out)
{
	*out = c->st;
}

size_t tls_client_tickets(const struct tls_client *c, const char *service)
{
	for (size_t i = 0; i < c->num_slots; i++)
		if (strcmp(c->slots[i].service, service) == 0)
			return c->slots[i].num;
	return 0;
}

void tls_call_free(struct tls_call *call)
{
	if (!call)
		return;
	SSL_free(call->ssl);
	free(call->msg);
	free(call->service);
	free(call);
}

__attribute__((format(printf, 3, 4))) static int call_fail(struct tls_call *call, int rc,
							   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->err, sizeof(call->err), fmt, ap);
	va_end(ap);
	call->state = CALL_FAILED;
	if (rc == -EBADMSG)
		call->c->st.bad_messages++;
	else if (rc == -EACCES)
		call->c->st.verify_failures++;
	/* nothing more will be read or written on this exchange */
	SSL_free(call->ssl);
	call->ssl = NULL;
	ERR_clear_error();
	return rc;
}

int tls_call_begin(struct tls_client *c, const char *service, const uint8_t *req, size_t len,
		   bool replay_safe, struct tls_call **out_call, struct tls_buf *flight)
{
	struct tls_call *call = NULL;
	SSL_SESSION *sess = NULL;
	int rc = -ENOMEM, r;

	if (out_call)
		*out_call = NULL;
	if (!c || !service || !*service || (!req && len) || !out_call || !flight)
		return -EINVAL;
	if (len > TLS_MSG_MAX)
		return -EMSGSIZE;
	ERR_clear_error();
	call = calloc(1, sizeof(*call));
	if (!call)
		goto fail;
	call->c = c;
	call->service = strdup(service);
	call->msg_len = TLS_MSG_PREFIX_LEN + len;
	call->msg = malloc(call->msg_len);
	if (!call->service || !call->msg || message_write(call->msg, req, len) != 0)
		goto fail;
	call->ssl = new_ssl(c->ctx, call, &call->rbio, &call->wbio);
	if (!call->ssl)
		goto fail;
	SSL_set_connect_state(call->ssl);
	rc = -EINVAL; /* a name BoringSSL refuses as SNI or as a host to check */
	if (!SSL_set_tlsext_host_name(call->ssl, service) || !SSL_set1_host(call->ssl, service))
		goto fail;
	/* a ticket is used once: with it gone from the cache, no two calls share it */
	sess = ticket_pop(c, service);
	if (sess && !SSL_set_session(call->ssl, sess))
		goto fail;
	/* early data only with a ticket (so only to a server verified before), only for
	 * replay-safe requests, and only if the whole request fits the server's limit */
	SSL_set_early_data_enabled(call->ssl,
				   sess && replay_safe && call->msg_len <= TLS_EARLY_DATA_MAX);
	SSL_SESSION_free(sess);
	sess = NULL;

	rc = -EIO;
	r = SSL_do_handshake(call->ssl);
	if (r == 1 && SSL_in_early_data(call->ssl)) {
		/* one SSL_write, so one record (or as few as the size needs) */
		if (SSL_write(call->ssl, call->msg, (int)call->msg_len) != (int)call->msg_len)
			goto fail;
		call->offered_early = true;
	} else if (r == 1 || SSL_get_error(call->ssl, r) != SSL_ERROR_WANT_READ) {
		goto fail;
	}
	if (frame_start(flight, TLS_KIND_CLIENT_FIRST, 0) != 0 || drain(call->wbio, flight) != 0) {
		rc = -ENOMEM;
		goto fail;
	}
	call->state = CALL_FIRST_SENT;
	*out_call = call;
	return 0;
fail:
	ERR_clear_error();
	SSL_SESSION_free(sess);
	tls_call_free(call);
	if (flight)
		flight->len = 0;
	return rc;
}

/* alert_text describes the plaintext alert record an ERROR frame may carry. */
static const char *alert_text(const uint8_t *p, size_t n)
{
	/* content type 21, version, length 2, level, description */
	if (n == 7 && p[0] == 21 && p[3] == 0 && p[4] == 2)
		return SSL_alert_desc_string_long(p[6]);
	return "no details (encrypted or absent alert)";
}

/*
 * call_handshake drives the client handshake over the server flight now in the
 * read BIO, through an early-data reject if the server refused the 0-RTT data.
 * Returns 0 when the handshake is complete, or fails the call.
 */
static int call_handshake(struct tls_call *call)
{
	for (;;) {
		int r = SSL_do_handshake(call->ssl), e;
		long v;

		if (r == 1)
			break;
		e = SSL_get_error(call->ssl, r);
		if (e == SSL_ERROR_EARLY_DATA_REJECTED) {
			/* the request was not executed as 0-RTT data: it goes again as
			 * 1-RTT data on this same handshake (CLIENT_SECOND) */
			call->c->st.early_rejected++;
			SSL_reset_early_data_reject(call->ssl);
			continue;
		}
		if (e == SSL_ERROR_WANT_READ)
			return call_fail(call, -EBADMSG, "server flight for %s is incomplete",
					 call->service);
		if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
			v = SSL_get_verify_result(call->ssl);
			if (v == X509_V_ERR_HOSTNAME_MISMATCH)
				return call_fail(call, -EACCES,
						 "certificate for %s: name mismatch (its "
						 "subjectAltName does not name %s)",
						 call->service, call->service);
			return call_fail(call, -EACCES, "certificate for %s not trusted: %s",
					 call->service, X509_verify_cert_error_string(v));
		}
		return call_fail(call, -EBADMSG, "TLS handshake with %s failed: %s", call->service,
				 ssl_reason("unknown error"));
	}
	if (SSL_session_reused(call->ssl))
		call->c->st.resumed++;
	else
		call->c->st.handshakes_full++;
	if (SSL_early_data_accepted(call->ssl)) {
		call->early_accepted = true;
		call->c->st.early_accepted++;
	}
	return 0;
}

/* call_finish reads the response out of a SERVER_FINAL flight. */
static int call_finish(struct tls_call *call, struct tls_buf *resp)
{
	if (read_message(call->ssl, resp) != 0) {
		resp->len = 0;
		return call_fail(call, -EBADMSG, "response from %s is malformed or not authentic",
				 call->service);
	}
	call->state = CALL_DONE;
	SSL_free(call->ssl);
	call->ssl = NULL;
	ERR_clear_error();
	return TLS_CALL_DONE;
}

/* call_early_final takes the answer to a 0-RTT request: the server flight, its
 * half-RTT ticket and the response, all in one SERVER_FINAL frame. */
static int call_early_final(struct tls_call *call, const struct frame *f, struct tls_buf *resp)
{
	int rc;

	if (feed(call->rbio, f->tls, f->tls_len) != 0)
		return call_fail(call, -ENOMEM, "out of memory");
	rc = call_handshake(call);
	if (rc != 0)
		return rc;
	if (!call->early_accepted)
		return call_fail(call, -EBADMSG,
				 "%s sent a final flight but refused the early data",
				 call->service);
	/* our EndOfEarlyData and Finished never go on the wire: the server
	 * answered already and has forgotten the exchange */
	drain(call->wbio, NULL);
	return call_finish(call, resp);
}

/* call_second takes a SERVER_HANDSHAKE frame and writes the CLIENT_SECOND flight: our
 * Finished and the request as 1-RTT data. */
static int call_second(struct tls_call *call, const struct frame *f, struct tls_buf *flight)
{
	int rc;

	if (feed(call->rbio, f->tls, f->tls_len) != 0)
		return call_fail(call, -ENOMEM, "out of memory");
	rc = call_handshake(call);
	if (rc != 0)
		return rc;
	if (call->early_accepted)
		return call_fail(call, -EBADMSG, "%s accepted the early data but did not answer",
				 call->service);
	/* the chain and name are verified (or the session was): now the request */
	if (frame_start(flight, TLS_KIND_CLIENT_SECOND, f->id) != 0 ||
	    drain(call->wbio, flight) != 0)
		return call_fail(call, -ENOMEM, "out of memory");
	if (SSL_write(call->ssl, call->msg, (int)call->msg_len) != (int)call->msg_len ||
	    drain(call->wbio, flight) != 0) {
		flight->len = 0;
		return call_fail(call, -EIO, "cannot encrypt the request to %s: %s", call->service,
				 ssl_reason("unknown error"));
	}
	call->state = CALL_SECOND_SENT;
	ERR_clear_error();
	return TLS_CALL_CONTINUE;
}

/* call_second_final takes the SERVER_FINAL frame that answers CLIENT_SECOND. */
static int call_second_final(struct tls_call *call, const struct frame *f, struct tls_buf *resp)
{
	if (feed(call->rbio, f->tls, f->tls_len) != 0)
		return call_fail(call, -ENOMEM, "out of memory");
	return call_finish(call, resp);
}

int tls_call_input(struct tls_call *call, const uint8_t *msg, size_t len, struct tls_buf *flight,
		   struct tls_buf *resp)
{
	struct frame f;

	if (!call || !flight || !resp)
		return -EINVAL;
	flight->len = 0;
	resp->len = 0;
	if (call->state == CALL_DONE || call->state == CALL_FAILED)
		return -EINVAL;
	ERR_clear_error();
	if (frame_parse(msg, len, &f) != 0)
		return call_fail(call, -EBADMSG, "malformed tls frame from %s", call->service);
	if (f.kind == TLS_KIND_ERROR)
		return call_fail(call, -ECONNREFUSED, "%s refused the TLS exchange: %s",
				 call->service, alert_text(f.tls, f.tls_len));
	if (call->state == CALL_FIRST_SENT && f.kind == TLS_KIND_SERVER_FINAL &&
	    call->offered_early)
		return call_early_final(call, &f, resp);
	if (call->state == CALL_FIRST_SENT && f.kind == TLS_KIND_SERVER_HANDSHAKE)
		return call_second(call, &f, flight);
	if (call->state == CALL_SECOND_SENT && f.kind == TLS_KIND_SERVER_FINAL)
		return call_second_final(call, &f, resp);
	return call_fail(call, -EBADMSG, "unexpected tls frame (kind %d) from %s", (int)f.kind,
			 call->service);
}

const char *tls_call_error(const struct tls_call *call)
{
	return call ? call->err : "";
}

bool tls_call_early_accepted(const struct tls_call *call)
{
	return call && call->early_accepted;
}

/* ---- server --------------------------------------------------------------------- */

struct tls_svc {
	char *name;
	SSL_CTX *ctx;
};

struct tls_server {
	struct tls_svc *svcs;
	size_t num_svcs;
	bool early_data;
	struct replay *replay;
	/* 1-RTT handshakes waiting for CLIENT_SECOND: a ring in arrival order; the
	 * low bits of a handshake id are its slot, the rest random */
	struct tls_conn *pending[TLS_PENDING_MAX];
	size_t pending_next, num_pending;
	struct tls_buf scratch; /* response + prefix, so that one SSL_write seals it */
	struct tls_stats st;
};

struct tls_conn {
	struct tls_server *s;
	const struct tls_svc *svc;
	SSL *ssl;
	BIO *rbio, *wbio;
	uint64_t id, created, now;
	struct r2p2_addr peer;
	bool have_peer;
	bool offered_early;		/* the ClientHello carried early data */
	bool early_refused;		/* ... and the callback turned it off */
	uint8_t random[REPLAY_KEY_LEN]; /* the ClientHello random, for the strike register */
};

void tls_conn_free(struct tls_conn *conn)
{
	if (!conn)
		return;
	SSL_free(conn->ssl);
	free(conn);
}

static bool sni_is(const SSL_CLIENT_HELLO *ch, const char *name)
{
	const uint8_t *p;
	size_t n;
	CBS ext, list, host;
	uint8_t type;

	if (!SSL_early_callback_ctx_extension_get(ch, TLSEXT_TYPE_server_name, &p, &n))
		return false;
	CBS_init(&ext, p, n);
	if (!CBS_get_u16_length_prefixed(&ext, &list) || CBS_len(&ext) != 0)
		return false;
	while (CBS_len(&list)) {
		if (!CBS_get_u8(&list, &type) || !CBS_get_u16_length_prefixed(&list, &host))
			return false;
		if (type == TLSEXT_NAMETYPE_host_name)
			return CBS_len(&host) == strlen(name) &&
			       strncasecmp((const char *)CBS_data(&host), name, CBS_len(&host)) ==
				   0;
	}
	return false;
}

/*
 * srv_select_cert runs before BoringSSL decides on resumption and early data:
 * the place to refuse a wrong SNI and to look the ClientHello random up in the
 * strike register. Turning early data off here makes BoringSSL answer as if 0-RTT
 * was not offered (the request then comes as 1-RTT data, once).
 */
static enum ssl_select_cert_result_t srv_select_cert(const SSL_CLIENT_HELLO *ch)
{
	struct tls_conn *conn = SSL_get_app_data(ch->ssl);
	struct tls_server *s;
	struct replay_stats rs;
	const uint8_t *p;
	size_t n;

	if (!conn)
		return ssl_select_cert_error;
	s = conn->s;
	if (!sni_is(ch, conn->svc->name))
		return ssl_select_cert_error;
	if (!SSL_early_callback_ctx_extension_get(ch, TLSEXT_TYPE_early_data, &p, &n))
		return ssl_select_cert_success;
	conn->offered_early = true;
	if (!s->early_data)
		return ssl_select_cert_success; /* BoringSSL refuses it (ctx setting) */
	if (ch->random_len != REPLAY_KEY_LEN || !s->replay) {
		/* no strike register: no 0-RTT (fail closed) */
		conn->early_refused = true;
	} else if (replay_check(s->replay, ch->random, conn->now) == 1) {
		conn->early_refused = true;
		s->st.replays_refused++;
	} else {
		/* fail closed before BoringSSL commits to 0-RTT: a full register could not
		 * take this random after acceptance. Other workers share the register and
		 * may insert between this check and ours, so keep a margin of slots. */
		replay_stats(s->replay, &rs);
		size_t margin =
		    rs.capacity / 16 < TLS_REPLAY_MARGIN ? rs.capacity / 16 : TLS_REPLAY_MARGIN;
		if (rs.entries + margin >= rs.capacity)
			conn->early_refused = true;
		memcpy(conn->random, ch->random, REPLAY_KEY_LEN);
	}
	if (conn->early_refused)
		SSL_set_early_data_enabled(ch->ssl, 0);
	return ssl_select_cert_success;
}

static int svc_ctx_init(struct tls_svc *svc, const struct tls_service_keys *k, bool early_data,
			char *err, size_t err_len)
{
	uint8_t sid_ctx[32];
	unsigned sid_len = 0;
	EVP_MD_CTX md;
	static const char label[] = "r2p2 tls session context ";

	svc->name = strdup(k->name);
	svc->ctx = tls13_ctx();
	if (!svc->name || !svc->ctx) {
		set_err(err, err_len, "tls: out of memory");
		return -ENOMEM;
	}
	if (SSL_CTX_use_certificate_chain_file(svc->ctx, k->cert_path) != 1) {
		set_err(err, err_len, "tls: %s: cannot load certificate chain %s: %s", k->name,
			k->cert_path, ssl_reason("unknown error"));
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(svc->ctx, k->key_path, SSL_FILETYPE_PEM) != 1) {
		set_err(err, err_len, "tls: %s: cannot load private key %s: %s", k->name,
			k->key_path, ssl_reason("unknown error"));
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(svc->ctx) != 1) {
		set_err(err, err_len, "tls: %s: key %s does not match certificate %s", k->name,
			k->key_path, k->cert_path);
		return -EINVAL;
	}
	/* every server of a service, and only of this service, resumes its tickets:
	 * the session context is a hash of the service name (BoringSSL allows 32 bytes) */
	EVP_MD_CTX_init(&md);
	if (!EVP_DigestInit_ex(&md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(&md, label, sizeof(label) - 1) ||
	    !EVP_DigestUpdate(&md, k->name, strlen(k->name)) ||
	    !EVP_DigestFinal_ex(&md, sid_ctx, &sid_len) ||
	    !SSL_CTX_set_session_id_context(svc->ctx, sid_ctx, sid_len)) {
		EVP_MD_CTX_cleanup(&md);
		set_err(err, err_len, "tls: %s: cannot set the session context", k->name);
		return -EINVAL;
	}
	EVP_MD_CTX_cleanup(&md);
	/* stateless tickets only (sealed under the STEK); no tickets until a STEK is set */
	SSL_CTX_set_session_cache_mode(svc->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(svc->ctx, 0);
	SSL_CTX_set_early_data_enabled(svc->ctx, early_data);
	SSL_CTX_set_select_certificate_cb(svc->ctx, srv_select_cert);
	if (stek_install_ticket_aead(svc->ctx, NULL) != 0) {
		set_err(err, err_len, "tls: %s: cannot install the ticket AEAD", k->name);
		return -ENOMEM;
	}
	return 0;
}

struct tls_server *tls_server_new(const struct tls_service_keys *svcs, size_t num_svcs,
				  bool early_data, char *err, size_t err_len)
{
	struct tls_server *s;

	if (!svcs || !num_svcs) {
		set_err(err, err_len, "tls: no services");
		return NULL;
	}
	for (size_t i = 0; i < num_svcs; i++) {
		if (!svcs[i].name || !*svcs[i].name || !svcs[i].cert_path || !svcs[i].key_path) {
			set_err(err, err_len, "tls: service %zu: name, certificate and key needed",
				i);
			return NULL;
		}
	}
	s = calloc(1, sizeof(*s));
	if (s)
		s->svcs = calloc(num_svcs, sizeof(*s->svcs));
	if (!s || !s->svcs) {
		free(s);
		set_err(err, err_len, "tls: out of memory");
		return NULL;
	}
	s->early_data = early_data;
	ERR_clear_error();
	for (size_t i = 0; i < num_svcs; i++) {
		s->num_svcs++;
		if (svc_ctx_init(&s->svcs[i], &svcs[i], early_data, err, err_len) != 0) {
			ERR_clear_error();
			tls_server_free(s);
			return NULL;
		}
	}
	ERR_clear_error();
	return s;
}

void tls_server_free(struct tls_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < TLS_PENDING_MAX; i++)
		tls_conn_free(s->pending[i]);
	for (size_t i = 0; i < s->num_svcs; i++) {
		SSL_CTX_free(s->svcs[i].ctx); /* drops the attached STEK set */
		free(s->svcs[i].name);
	}
	free(s->svcs);
	tls_buf_cleanup(&s->scratch);
	free(s);
}

void tls_server_set_stek(struct tls_server *s, struct stek_set *stek)
{
	for (size_t i = 0; i < s->num_svcs; i++) {
		stek_ctx_attach(s->svcs[i].ctx, stek);
		/* one ticket per handshake: each RPC spends one and gets one */
		SSL_CTX_set_num_tickets(s->svcs[i].ctx, stek ? 1 : 0);
	}
}

void tls_server_set_replay(struct tls_server *s, struct replay *r)
{
	s->replay = r;
}

void tls_server_stats(const struct tls_server *s, struct tls_stats *out)
{
	*out = s->st;
	out->pending_handshakes = s->num_pending;
}

static const struct tls_svc *svc_find(const struct tls_server *s, const char *name)
{
	for (size_t i = 0; i < s->num_svcs; i++)
		if (strcmp(s->svcs[i].name, name) == 0)
			return &s->svcs[i];
	return NULL;
}

static bool addr_eq(const struct r2p2_addr *a, const struct r2p2_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* pending_add files `conn` under a fresh handshake id, evicting the oldest if full. */
static int pending_add(struct tls_server *s, struct tls_conn *conn)
{
	size_t slot = s->pending_next;
	uint64_t rnd;

	do {
		if (RAND_bytes((uint8_t *)&rnd, sizeof(rnd)) != 1)
			return -EIO;
		conn->id = (rnd & ~(uint64_t)(TLS_PENDING_MAX - 1)) | slot;
	} while (conn->id == 0);
	if (s->pending[slot]) {
		tls_conn_free(s->pending[slot]);
		s->num_pending--;
	}
	s->pending[slot] = conn;
	s->num_pending++;
	s->pending_next = (slot + 1) & (TLS_PENDING_MAX - 1);
	return 0;
}

/* error_flight makes `flight` an ERROR frame with whatever alert BoringSSL wrote. */
static void error_flight(struct tls_buf *flight, struct tls_conn *conn)
{
	if (frame_start(flight, TLS_KIND_ERROR, 0) != 0)
		return;
	if (conn && conn->ssl && drain(conn->wbio, flight) != 0)
		flight->len = TLS_FRAME_HDR_LEN;
}

/* srv_fail ends a server exchange that failed: counters, ERROR flight, cleanup. */
static int srv_fail(struct tls_server *s, struct tls_conn *conn, int rc, struct tls_buf *flight,
		    struct tls_buf *req)
{
	if (rc == -EBADMSG)
		s->st.bad_messages++;
	if (flight)
		error_flight(flight, conn);
	if (req)
		req->len = 0;
	tls_conn_free(conn);
	ERR_clear_error();
	return rc;
}

static int srv_first(struct tls_server *s, const struct tls_svc *svc, const struct r2p2_addr *peer,
		     const struct frame *f, uint64_t now, struct tls_conn **out_conn,
		     struct tls_buf *req, struct tls_buf *flight)
{
	struct tls_conn *conn = calloc(1, sizeof(*conn));
	int r, e;

	if (!conn)
		return srv_fail(s, NULL, -ENOMEM, flight, req);
	conn->s = s;
	conn->svc = svc;
	conn->created = conn->now = now;
	if (peer) {
		conn->peer = *peer;
		conn->have_peer = true;
	}
	conn->ssl = new_ssl(svc->ctx, conn, &conn->rbio, &conn->wbio);
	if (!conn->ssl)
		return srv_fail(s, conn, -ENOMEM, flight, req);
	SSL_set_accept_state(conn->ssl);
	if (feed(conn->rbio, f->tls, f->tls_len) != 0)
		return srv_fail(s, conn, -ENOMEM, flight, req);

	r = SSL_do_handshake(conn->ssl);
	if (r == 1) {
		/* BoringSSL returns early only when it accepted 0-RTT data: the PSK
		 * binder verified, so the random may now go into the strike register */
		if (!SSL_in_early_data(conn->ssl) || !SSL_early_data_accepted(conn->ssl))
			return srv_fail(s, conn, -EBADMSG, flight, req);
		if (!s->replay || replay_insert(s->replay, conn->random, now) != 0) {
			/* cannot happen after the check in srv_select_cert, but if it did:
			 * the request is not executed, the client learns it failed */
			s->st.early_rejected++;
			return srv_fail(s, conn, -ENOSPC, flight, req);
		}
		s->st.early_accepted++;
		s->st.resumed++;
		if (read_message(conn->ssl, req) != 0)
			return srv_fail(s, conn, -EBADMSG, flight, req);
		/* the server flight and the half-RTT ticket wait in the write BIO for
		 * the response (tls_server_respond) */
		*out_conn = conn;
		ERR_clear_error();
		return TLS_SRV_REQUEST;
	}
	e = SSL_get_error(conn->ssl, r);
	if (e != SSL_ERROR_WANT_READ || SSL_in_early_data(conn->ssl) ||
	    BIO_pending(conn->wbio) == 0)
		return srv_fail(s, conn, -EBADMSG, flight, req);
	/* the server flight is written; the handshake waits for the client Finished */
	if (conn->offered_early)
		s->st.early_rejected++;
	if (SSL_session_reused(conn->ssl))
		s->st.resumed++;
	else
		s->st.handshakes_full++;
	if (pending_add(s, conn) != 0)
		return srv_fail(s, conn, -EIO, flight, req);
	if (frame_start(flight, TLS_KIND_SERVER_HANDSHAKE, conn->id) != 0 ||
	    drain(conn->wbio, flight) != 0) {
		flight->len = 0; /* the pending entry expires */
		ERR_clear_error();
		return -ENOMEM;
	}
	ERR_clear_error();
	return TLS_SRV_REPLY;
}

static int srv_second(struct tls_server *s, const struct tls_svc *svc, const struct r2p2_addr *peer,
		      const struct frame *f, struct tls_conn **out_conn, struct tls_buf *req,
		      struct tls_buf *flight)
{
	size_t slot = (size_t)(f->id & (TLS_PENDING_MAX - 1));
	struct tls_conn *conn = s->pending[slot];

	if (!conn || conn->id != f->id || conn->svc != svc ||
	    (peer && conn->have_peer && !addr_eq(peer, &conn->peer)))
		return srv_fail(s, NULL, -EBADMSG, flight, req); /* ERROR: start afresh */
	/* single use, whatever comes of it */
	s->pending[slot] = NULL;
	s->num_pending--;
	if (feed(conn->rbio, f->tls, f->tls_len) != 0)
		return srv_fail(s, conn, -ENOMEM, flight, req);
	if (SSL_do_handshake(conn->ssl) != 1 || read_message(conn->ssl, req) != 0)
		return srv_fail(s, conn, -EBADMSG, flight, req);
	/* the write BIO holds the NewSessionTicket, sent with the response */
	*out_conn = conn;
	ERR_clear_error();
	return TLS_SRV_REQUEST;
}

int tls_server_input(struct tls_server *s, const char *service, const struct r2p2_addr *peer,
		     const uint8_t *msg, size_t len, uint64_t now, struct tls_conn **out_conn,
		     struct tls_buf *req, struct tls_buf *flight)
{
	const struct tls_svc *svc;
	struct frame f;

	if (out_conn)
		*out_conn = NULL;
	if (!s || !service || !out_conn || !req || !flight)
		return -EINVAL;
	req->len = 0;
	flight->len = 0;
	ERR_clear_error();
	if (!msg || len < 2 || msg[0] != TLS_FRAME_VERSION) {
		/* not ours, or from a future version: drop without an answer */
		s->st.bad_messages++;
		return -EBADMSG;
	}
	if (frame_parse(msg, len, &f) != 0 ||
	    (f.kind != TLS_KIND_CLIENT_FIRST && f.kind != TLS_KIND_CLIENT_SECOND))
		return srv_fail(s, NULL, -EBADMSG, flight, req);
	svc = svc_find(s, service);
	if (!svc)
		return srv_fail(s, NULL, -ENOENT, flight, req);
	if (f.kind == TLS_KIND_CLIENT_FIRST)
		return srv_first(s, svc, peer, &f, now, out_conn, req, flight);
	return srv_second(s, svc, peer, &f, out_conn, req, flight);
}

int tls_server_respond(struct tls_server *s, struct tls_conn *conn, const uint8_t *resp, size_t len,
		       struct tls_buf *flight)
{
	size_t n;
	int rc = -EIO;

	if (!s || !conn || (!resp && len) || !flight) {
		tls_conn_free(conn);
		return -EINVAL;
	}
	flight->len = 0;
	if (len > TLS_MSG_MAX) {
		rc = -EMSGSIZE;
		goto out;
	}
	ERR_clear_error();
	n = TLS_MSG_PREFIX_LEN + len;
	s->scratch.len = 0;
	if (buf_reserve(&s->scratch, n) != 0 || message_write(s->scratch.data, resp, len) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	/* after 0-RTT this is half-RTT data: the client's Finished never comes */
	if (SSL_write(conn->ssl, s->scratch.data, (int)n) != (int)n)
		goto out;
	if (frame_start(flight, TLS_KIND_SERVER_FINAL, 0) != 0 || drain(conn->wbio, flight) != 0) {
		flight->len = 0;
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	tls_conn_free(conn);
	return rc;
}

void tls_server_expire(struct tls_server *s, uint64_t now, uint64_t max_age_ns)
{
	/* ring order is arrival order: walk from the oldest, stop at the first young one */
	for (size_t i = 0; i < TLS_PENDING_MAX && s->num_pending; i++) {
		size_t slot = (s->pending_next + i) & (TLS_PENDING_MAX - 1);
		struct tls_conn *conn = s->pending[slot];

		if (!conn)
			continue;
		if (now < conn->created || now - conn->created < max_age_ns)
			break;
		tls_conn_free(conn);
		s->pending[slot] = NULL;
		s->num_pending--;
	}
}
