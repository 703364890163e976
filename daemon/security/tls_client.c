// SPDX-License-Identifier: MIT
/*
 * tls_client.c: tls mode's client side. Session tickets cached per service (each used
 * once), and calls: the first flight with the request as 0-RTT data when a ticket
 * allows it, then either the server's final flight or its handshake, answered with
 * the request as 1-RTT data.
 */
#include "boringssl.h"

#include <openssl/mem.h>

#include "err.h"
#include "tls_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Tickets cached per service and worker: each is single-use, so concurrent calls
 * each need one; a call without one pays a full handshake. */
#define TLS_TICKETS_PER_SERVICE 64
#define TLS_ERR_LEN 200

/* The tickets of one service, oldest first; the newest is used next. */
struct ticket_slot {
	char *service;
	SSL_SESSION *sess[TLS_TICKETS_PER_SERVICE];
	size_t num;
};

struct tls_client {
	unsigned refs; /* the owner's and each call's (one thread: no atomics) */
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
	/* buf: TLS_BIND_LEN bytes of room, then msg, the request as it goes into TLS as
	 * 1-RTT data (length prefix + bytes); 0-RTT data is written in place in front */
	uint8_t *buf;
	uint8_t *msg;
	size_t msg_len;
	uint8_t bind[TLS_BIND_LEN]; /* the server it goes to, in front of 0-RTT data */
	enum call_state state;
	bool offered_early, early_accepted;
	uint8_t psk[SSL_MAX_MASTER_KEY_LENGTH]; /* of the ticket offered, if any */
	size_t psk_len;
	struct tls_proof_check chk; /* what the server's answers must prove */
	int refusal;		    /* -EACCES: an answer's certificate was not trusted */
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
	c->refs = 1;
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
	if (!c || --c->refs > 0)
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
	SSL_free(call->ssl); /* BoringSSL wipes what it frees (OPENSSL_free) */
	if (call->buf)
		OPENSSL_cleanse(call->buf,
				TLS_BIND_LEN + call->msg_len); /* the request, in clear */
	free(call->buf);
	free(call->service);
	OPENSSL_cleanse(call->psk, sizeof(call->psk));
	OPENSSL_cleanse(&call->chk, sizeof(call->chk)); /* before the client its store is of */
	tls_client_free(call->c);			/* the call's reference */
	free(call);
}

/* call_ignore records why a frame was not taken and leaves the call as it was. */
__attribute__((format(printf, 2, 3))) static int call_ignore(struct tls_call *call, const char *fmt,
							     ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->err, sizeof(call->err), fmt, ap);
	va_end(ap);
	call->c->st.bad_messages++;
	return TLS_CALL_IGNORE;
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

/*
 * write_early writes the request as 0-RTT data: length prefix, binding, request,
 * built in the room in front of the 1-RTT form, which is then restored (it is what
 * goes again if the server refuses the early data). No copy of the request.
 */
static int write_early(struct tls_call *call)
{
	size_t len = call->msg_len - TLS_MSG_PREFIX_LEN;
	size_t n = TLS_MSG_PREFIX_LEN + TLS_BIND_LEN + len;
	uint8_t saved[TLS_MSG_PREFIX_LEN];
	int ok;

	memcpy(saved, call->msg, sizeof(saved));
	message_prefix(call->buf, TLS_BIND_LEN + len);
	memcpy(call->buf + TLS_MSG_PREFIX_LEN, call->bind, TLS_BIND_LEN);
	ok = SSL_write(call->ssl, call->buf, (int)n) == (int)n;
	memcpy(call->msg, saved, sizeof(saved));
	return ok ? 0 : -EIO;
}

int tls_call_begin(struct tls_client *c, const char *service, const uint8_t *req, size_t len,
		   bool replay_safe, struct tls_call **out_call, struct tls_buf *flight)
{
	return tls_call_begin_to(c, service, NULL, req, len, replay_safe, out_call, flight);
}

/* call_new makes a call carrying `req` (its binding for `dst` and its message); NULL: no memory. */
static struct tls_call *call_new(struct tls_client *c, const char *service,
				 const struct r2p2_addr *dst, const uint8_t *req, size_t len)
{
	struct tls_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->c = c;
	c->refs++;
	tls_bind_encode(dst, call->bind);
	call->service = strdup(service);
	call->msg_len = TLS_MSG_PREFIX_LEN + len;
	call->buf = malloc(TLS_BIND_LEN + call->msg_len);
	if (!call->service || !call->buf) {
		tls_call_free(call);
		return NULL;
	}
	call->msg = call->buf + TLS_BIND_LEN;
	message_prefix(call->msg, len);
	if (len)
		memcpy(call->msg + TLS_MSG_PREFIX_LEN, req, len);
	return call;
}

/*
 * call_ssl gives `call` its client SSL for `service`, resuming the service's next
 * ticket if there is one. Returns 0, -ENOMEM or -EINVAL (a name BoringSSL refuses).
 */
static int call_ssl(struct tls_client *c, struct tls_call *call, const char *service,
		    bool replay_safe)
{
	SSL_SESSION *sess;
	bool ok;

	call->ssl = new_ssl(c->ctx, call, &call->rbio, &call->wbio);
	if (!call->ssl)
		return -ENOMEM;
	SSL_set_connect_state(call->ssl);
	if (!SSL_set_tlsext_host_name(call->ssl, service) || !SSL_set1_host(call->ssl, service))
		return -EINVAL;
	/* a ticket is used once: with it gone from the cache, no two calls share it */
	sess = ticket_pop(c, service);
	ok = !sess || SSL_set_session(call->ssl, sess);
	if (sess) /* its PSK keys the proofs of the answers if the server resumes it */
		call->psk_len = SSL_SESSION_get_master_key(sess, call->psk, sizeof(call->psk));
	/* early data only with a ticket (so only to a server verified before), only for
	 * replay-safe requests, and only if the whole request fits the server's limit */
	SSL_set_early_data_enabled(
	    call->ssl, sess && replay_safe && call->msg_len + TLS_BIND_LEN <= TLS_EARLY_DATA_MAX);
	SSL_SESSION_free(sess);
	return ok ? 0 : -EINVAL;
}

int tls_call_begin_to(struct tls_client *c, const char *service, const struct r2p2_addr *dst,
		      const uint8_t *req, size_t len, bool replay_safe, struct tls_call **out_call,
		      struct tls_buf *flight)
{
	struct tls_call *call = NULL;
	int rc = -ENOMEM, r;

	if (out_call)
		*out_call = NULL;
	if (!c || !service || !*service || (!req && len) || !out_call || !flight)
		return -EINVAL;
	if (len > TLS_MSG_MAX)
		return -EMSGSIZE;
	ERR_clear_error();
	call = call_new(c, service, dst, req, len);
	if (!call)
		goto fail;
	rc = call_ssl(c, call, service, replay_safe);
	if (rc)
		goto fail;

	rc = -EIO;
	r = SSL_do_handshake(call->ssl);
	if (r == 1 && SSL_in_early_data(call->ssl)) {
		/* one SSL_write, so one record (or as few as the size needs) */
		if (write_early(call) != 0)
			goto fail;
		call->offered_early = true;
	} else if (r == 1 || SSL_get_error(call->ssl, r) != SSL_ERROR_WANT_READ) {
		goto fail;
	}
	/* every answer must come with a proof (tls_proof.c), checked before BoringSSL
	 * reads a byte of it: keys from the ticket, else the CA and the service name */
	call->chk.store = SSL_CTX_get_cert_store(c->ctx);
	call->chk.service = call->service;
	if (SSL_get_client_random(call->ssl, call->chk.random, TLS_RANDOM_LEN) != TLS_RANDOM_LEN)
		goto fail;
	if (call->psk_len && proof_key_from_psk(call->psk, call->psk_len, call->chk.random,
						call->chk.keys[call->chk.num_keys++]) != 0)
		goto fail;
	if (frame_start(flight, TLS_KIND_CLIENT_FIRST | TLS_KIND_AUTH, 0) != 0 ||
	    drain(call->wbio, flight) != 0) {
		rc = -ENOMEM;
		goto fail;
	}
	call->state = CALL_FIRST_SENT;
	*out_call = call;
	return 0;
fail:
	ERR_clear_error();
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
	int rc = read_message(call->ssl, resp);

	if (rc == -EALREADY) {
		resp->len = 0;
		return call_fail(call, -EALREADY, "%s had already run this request (a copy of it)",
				 call->service);
	}
	if (rc != 0) {
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
	/* the handshake is complete: the final answer proves itself under an exporter */
	if (proof_key_from_exporter(call->ssl, call->chk.keys[call->chk.num_keys]) != 0)
		return call_fail(call, -EIO, "cannot derive a key from the exchange with %s",
				 call->service);
	call->chk.num_keys++;
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

/*
 * call_ignore_cert sets aside a frame whose proof carries a certificate the call
 * does not trust, saying why as a handshake would (a forger can sign with a key of
 * its own, so this ends nothing: the call times out unless a genuine answer comes).
 */
static int call_ignore_cert(struct tls_call *call, enum tls_kind kind)
{
	long e = call->chk.cert_err;

	if (e == X509_V_ERR_HOSTNAME_MISMATCH)
		snprintf(call->err, sizeof(call->err),
			 "tls frame (kind %d) set aside: certificate for %s: name mismatch (its "
			 "subjectAltName does not name %s)",
			 (int)kind, call->service, call->service);
	else
		snprintf(call->err, sizeof(call->err),
			 "tls frame (kind %d) set aside: certificate for %s not trusted: %s",
			 (int)kind, call->service, X509_verify_cert_error_string(e));
	call->c->st.verify_failures++;
	call->refusal = -EACCES;
	return TLS_CALL_IGNORE;
}

/* frame_fits says whether `f` is an answer the call waits for at its step. */
static bool frame_fits(const struct tls_call *call, const struct frame *f)
{
	if (f->kind == TLS_KIND_ERROR)
		return true;
	if (call->state == CALL_FIRST_SENT)
		return f->kind == TLS_KIND_SERVER_HANDSHAKE ||
		       (f->kind == TLS_KIND_SERVER_FINAL && call->offered_early);
	return call->state == CALL_SECOND_SENT && f->kind == TLS_KIND_SERVER_FINAL;
}

int tls_call_input(struct tls_call *call, const uint8_t *msg, size_t len, struct tls_buf *flight,
		   struct tls_buf *resp)
{
	struct frame f;
	size_t n;
	int rc;

	if (!call || !flight || !resp)
		return -EINVAL;
	flight->len = 0;
	resp->len = 0;
	if (call->state == CALL_DONE || call->state == CALL_FAILED)
		return -EINVAL;
	ERR_clear_error();
	if (frame_parse(msg, len, &f) != 0)
		return call_ignore(call, "malformed tls frame from %s", call->service);
	/* Frames that do not fit the call's step, and frames without a valid proof, are
	 * judged without touching the TLS state: stale or forged, they change nothing,
	 * and the answer may still come. */
	if (!frame_fits(call, &f))
		return call_ignore(call, "unexpected tls frame (kind %d) from %s", (int)f.kind,
				   call->service);
	if (!f.auth)
		return call_ignore(call, "tls frame (kind %d) from %s without a proof", (int)f.kind,
				   call->service);
	rc = proof_check(msg, len, &call->chk, &n);
	if (rc == -EACCES)
		return call_ignore_cert(call, f.kind);
	if (rc != 0)
		return call_ignore(call, "tls frame (kind %d) from %s fails its proof", (int)f.kind,
				   call->service);
	f.tls_len = n - TLS_FRAME_HDR_LEN;
	if (f.kind == TLS_KIND_ERROR)
		return call_fail(call, -ECONNREFUSED, "%s refused the TLS exchange: %s",
				 call->service, alert_text(f.tls, f.tls_len));
	if (call->state == CALL_FIRST_SENT && f.kind == TLS_KIND_SERVER_FINAL)
		return call_early_final(call, &f, resp);
	if (call->state == CALL_FIRST_SENT)
		return call_second(call, &f, flight);
	return call_second_final(call, &f, resp);
}

const char *tls_call_error(const struct tls_call *call)
{
	return call ? call->err : "";
}

int tls_call_refusal(const struct tls_call *call)
{
	return call ? call->refusal : 0;
}

bool tls_call_early_accepted(const struct tls_call *call)
{
	return call && call->early_accepted;
}

bool tls_call_early_offered(const struct tls_call *call)
{
	return call && call->offered_early;
}
