// SPDX-License-Identifier: MIT
/*
 * tls_server.c: tls mode's server side. A TLS 1.3 context per service (certificate,
 * session context, STEK-sealed tickets), 0-RTT admission through the strike register,
 * the 1-RTT handshakes waiting for the client's second flight, and the responses.
 */
#include "boringssl.h"

#include "err.h"
#include "tls_int.h"

#include "clock.h"

#include "replay.h"
#include "stek.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Free slots the strike register keeps for the workers racing to insert (at most a
 * sixteenth of a small register). */
#define TLS_REPLAY_MARGIN 64

struct tls_svc {
	char *name;
	SSL_CTX *ctx;
};

struct tls_server {
	struct tls_svc *svcs;
	size_t num_svcs;
	bool early_data;
	struct replay *replay;
	struct r2p2_addr self[TLS_MAX_SELF]; /* what 0-RTT data may be bound to */
	size_t num_self;
	uint16_t port; /* network order: a self entry's port 0 stands for it */
	uint64_t start_ms, early_max_age_ms; /* tls_server_set_early_limits */
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
	bool replayed;			/* ... because its random was accepted before */
	uint8_t random[REPLAY_KEY_LEN]; /* the ClientHello random, for the strike register */
	bool auth;			/* the client asked for answer proofs (TLS_KIND_AUTH) */
	bool have_random;		/* the ClientHello parsed: `crandom` is set */
	uint8_t crandom[TLS_RANDOM_LEN];
	uint8_t psk[SSL_MAX_MASTER_KEY_LENGTH]; /* the PSK of the ticket it offered */
	size_t psk_len;
};

void tls_conn_free(struct tls_conn *conn)
{
	if (!conn)
		return;
	SSL_free(conn->ssl);
	OPENSSL_cleanse(conn->psk, sizeof(conn->psk));
	free(conn);
}

/*
 * srv_prove appends the proof a client asked for to the answer frame in `flight`
 * (tls_proof.c): an HMAC under an exporter key once the handshake is complete,
 * under the ticket's PSK on a resumed one, else the certificate's signature. A
 * frame for a ClientHello that never parsed goes without: nothing binds it.
 */
static int srv_prove(struct tls_conn *conn, struct tls_buf *flight)
{
	uint8_t key[TLS_PROOF_KEY_LEN];
	int rc;

	if (!conn || !conn->auth || !conn->have_random || !conn->ssl ||
	    flight->len < TLS_FRAME_HDR_LEN)
		return 0;
	if (SSL_is_init_finished(conn->ssl))
		rc = proof_key_from_exporter(conn->ssl, key);
	else if (SSL_session_reused(conn->ssl) && conn->psk_len)
		rc = proof_key_from_psk(conn->psk, conn->psk_len, conn->crandom, key);
	else
		return proof_append_sig(flight, conn->ssl, conn->crandom);
	if (rc == 0)
		rc = proof_append_tag(flight, key, conn->crandom);
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
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
	if (ch->random_len == TLS_RANDOM_LEN) {
		memcpy(conn->crandom, ch->random, TLS_RANDOM_LEN);
		conn->have_random = true;
	}
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
		conn->replayed = true;
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

/*
 * srv_ticket_opened runs when BoringSSL opened the ticket of a ClientHello, before
 * it decides on early data: a ticket issued before this server started, or older
 * than its strike register remembers, carries no early data.
 */
static void srv_ticket_opened(SSL *ssl, uint64_t issued_ms, const uint8_t *session, size_t len)
{
	struct tls_conn *conn = SSL_get_app_data(ssl);
	struct tls_server *s;
	SSL_SESSION *sess;
	uint64_t now_ms;

	if (conn && conn->auth) {
		/* the PSK keys the proofs of a resumed exchange; used only if BoringSSL
		 * resumes this very ticket (SSL_session_reused) */
		sess = SSL_SESSION_from_bytes(session, len, SSL_get_SSL_CTX(ssl));
		conn->psk_len =
		    sess ? SSL_SESSION_get_master_key(sess, conn->psk, sizeof(conn->psk)) : 0;
		SSL_SESSION_free(sess);
		ERR_clear_error();
	}
	if (!conn || !conn->offered_early || conn->early_refused)
		return;
	s = conn->s;
	now_ms = unix_ms();
	if ((s->start_ms && issued_ms < s->start_ms) ||
	    (s->early_max_age_ms &&
	     (issued_ms > now_ms ? 0 : now_ms - issued_ms) > s->early_max_age_ms)) {
		conn->early_refused = true;
		s->st.early_too_old++;
		SSL_set_early_data_enabled(ssl, 0);
	}
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
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			set_err(err, err_len, "tls: %s: key %s does not match certificate %s",
				k->name, k->key_path, k->cert_path);
		else
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
	if (stek_install_ticket_aead(svc->ctx, NULL) != 0 ||
	    stek_set_ticket_opened(svc->ctx, srv_ticket_opened) != 0) {
		set_err(err, err_len, "tls: %s: cannot install the ticket AEAD", k->name);
		return -ENOMEM;
	}
	return 0;
}

int tls_check_service_keys(const struct tls_service_keys *k, char *err, size_t err_len)
{
	struct tls_server *s = tls_server_new(k, 1, false, err, err_len);
	const X509 *leaf;
	int rc = 0;

	if (!s)
		return -EINVAL;
	leaf = SSL_CTX_get0_certificate(s->svcs[0].ctx);
	if (!leaf || X509_check_host((X509 *)leaf, k->name, strlen(k->name),
				     X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
		set_err(err, err_len,
			"tls: %s: certificate %s does not name %s (no subjectAltName DNS:%s): "
			"clients would refuse it",
			k->name, k->cert_path, k->name, k->name);
		rc = -EINVAL;
	}
	tls_server_free(s);
	return rc;
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

/* same_chain says whether the contexts `a` and `b` hold the same leaf, chain and key. */
static bool same_chain(const SSL_CTX *a, const SSL_CTX *b)
{
	STACK_OF(X509) *ca = NULL, *cb = NULL;
	const X509 *la = SSL_CTX_get0_certificate(a), *lb = SSL_CTX_get0_certificate(b);
	const EVP_PKEY *ka = SSL_CTX_get0_privatekey(a), *kb = SSL_CTX_get0_privatekey(b);

	if (!la || !lb || X509_cmp(la, lb) != 0 || !ka || !kb || EVP_PKEY_cmp(ka, kb) != 1)
		return false;
	SSL_CTX_get0_chain_certs(a, &ca);
	SSL_CTX_get0_chain_certs(b, &cb);
	if (sk_X509_num(ca) != sk_X509_num(cb))
		return false;
	for (size_t i = 0; i < sk_X509_num(ca); i++)
		if (X509_cmp(sk_X509_value(ca, i), sk_X509_value(cb, i)) != 0)
			return false;
	return true;
}

int tls_server_replace_keys(struct tls_server *s, const struct tls_service_keys *k, bool early_data,
			    struct stek_set *stek, bool *out_changed, char *err, size_t err_len)
{
	struct tls_svc next = {0}, *cur = &s->svcs[0];
	SSL_CTX *old;

	*out_changed = false;
	if (s->num_svcs != 1 || !k->name || !k->cert_path || !k->key_path) {
		set_err(err, err_len, "tls: only a single-service server takes new keys");
		return -EINVAL;
	}
	ERR_clear_error();
	if (svc_ctx_init(&next, k, early_data, err, err_len) != 0) {
		ERR_clear_error();
		SSL_CTX_free(next.ctx);
		free(next.name);
		return -EINVAL;
	}
	if (s->early_data == early_data && strcmp(cur->name, next.name) == 0 &&
	    same_chain(cur->ctx, next.ctx)) {
		SSL_CTX_free(next.ctx);
		free(next.name);
		return 0;
	}
	stek_ctx_attach(next.ctx, stek);
	SSL_CTX_set_num_tickets(next.ctx, stek ? 1 : 0);
	/* exchanges in progress hold their SSL, and through it the old context; the name
	 * is only read when a ClientHello arrives, so it can go now */
	old = cur->ctx;
	free(cur->name);
	cur->ctx = next.ctx;
	cur->name = next.name;
	SSL_CTX_free(old);
	s->early_data = early_data;
	*out_changed = true;
	return 0;
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

void tls_server_set_early_limits(struct tls_server *s, uint64_t start_ms, uint64_t max_age_ms)
{
	s->start_ms = start_ms;
	s->early_max_age_ms = max_age_ms;
}

void tls_server_set_self(struct tls_server *s, const struct r2p2_addr *self, size_t num,
			 uint16_t port)
{
	s->num_self = num < TLS_MAX_SELF ? num : TLS_MAX_SELF;
	memcpy(s->self, self, s->num_self * sizeof(*self));
	s->port = port;
}

/* bound_here says whether 0-RTT data bound to `b` may run on `s`. */
static bool bound_here(const struct tls_server *s, const uint8_t b[TLS_BIND_LEN])
{
	/* a server that does not know its addresses takes any binding */
	return !s->num_self || tls_bind_names(b, s->self, s->num_self, s->port);
}

/*
 * read_early reads the 0-RTT message into `req`, checks its binding and removes
 * it. Returns 0, -EBADMSG (malformed) or -EXDEV (bound to another server).
 */
static int read_early(struct tls_server *s, struct tls_conn *conn, struct tls_buf *req)
{
	if (read_message(conn->ssl, req) != 0 || req->len < TLS_BIND_LEN)
		return -EBADMSG;
	if (!bound_here(s, req->data)) {
		s->st.wrong_server++;
		return -EXDEV;
	}
	memmove(req->data, req->data + TLS_BIND_LEN, req->len - TLS_BIND_LEN);
	req->len -= TLS_BIND_LEN;
	return 0;
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
	if (srv_prove(conn, flight) != 0) /* the client sets it aside, then times out */
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
	conn->auth = f->auth;
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
		r = read_early(s, conn, req);
		if (r != 0)
			return srv_fail(s, conn, r == -EXDEV ? -EXDEV : -EBADMSG, flight, req);
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
	    drain(conn->wbio, flight) != 0 || srv_prove(conn, flight) != 0) {
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
	if (buf_reserve(&s->scratch, n) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	message_write(s->scratch.data, resp, len);
	/* after 0-RTT this is half-RTT data: the client's Finished never comes */
	if (SSL_write(conn->ssl, s->scratch.data, (int)n) != (int)n)
		goto out;
	if (frame_start(flight, TLS_KIND_SERVER_FINAL, 0) != 0 || drain(conn->wbio, flight) != 0 ||
	    srv_prove(conn, flight) != 0) {
		flight->len = 0;
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	tls_buf_scrub(&s->scratch); /* the response, in clear: sealed into `flight` now */
	ERR_clear_error();
	tls_conn_free(conn);
	return rc;
}

bool tls_conn_replayed(const struct tls_conn *conn)
{
	return conn && conn->replayed;
}

int tls_server_respond_status(struct tls_server *s, struct tls_conn *conn, unsigned status,
			      struct tls_buf *flight)
{
	uint8_t pfx[TLS_MSG_PREFIX_LEN];
	uint32_t v = TLS_MSG_STATUS | (status & 0xFF);
	int rc = -EIO;

	if (!s || !conn || !flight) {
		tls_conn_free(conn);
		return -EINVAL;
	}
	flight->len = 0;
	message_prefix(pfx, v);
	ERR_clear_error();
	if (SSL_write(conn->ssl, pfx, sizeof(pfx)) != (int)sizeof(pfx))
		goto out;
	if (frame_start(flight, TLS_KIND_SERVER_FINAL, 0) != 0 || drain(conn->wbio, flight) != 0 ||
	    srv_prove(conn, flight) != 0) {
		flight->len = 0;
		rc = -ENOMEM;
		goto out;
	}
	s->st.already_answered++;
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
