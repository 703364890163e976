// SPDX-License-Identifier: MIT
/*
 * The security modes (secure.h): plain passes bytes through; tls runs one TLS
 * 1.3 exchange per RPC (tls.c); sealed bootstraps an association through a tls
 * exchange and then seals each RPC with AEAD only (sealed.c).
 */
#include "boringssl.h"

#include "secure.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <r2p2/wire.h>

#include "clock.h"
#include "err.h"
#include "stek.h"

#define SEALED_RENEW_FRACTION 5 /* renew when a fifth of the association's life is left */

static uint64_t real_wall_ms(void)
{
	return unix_ms();
}

void sec_env_init(struct sec_env *env, struct stek_set *stek, struct replay *replay,
		  struct replay *sealed_replay, uint64_t sealed_window_ms)
{
	memset(env, 0, sizeof(*env));
	env->stek = stek;
	env->replay = replay;
	env->sealed_replay = sealed_replay;
	env->sealed_window_ms = sealed_window_ms;
	env->wall_ms = real_wall_ms;
}

void sec_env_cleanup(struct sec_env *env)
{
	tls_buf_cleanup(&env->flight);
	tls_buf_cleanup(&env->plain);
	tls_buf_cleanup(&env->sealed);
}

void sec_env_scrub(struct sec_env *env)
{
	/* `flight` holds TLS records only (ciphertext, or a clear alert): nothing to wipe */
	tls_buf_scrub(&env->plain);
	tls_buf_scrub(&env->sealed);
}

/* svc_stek returns the set `svc` seals and opens tickets and tokens with. */
static struct stek_set *svc_stek(const struct sec_env *env, const struct sec_service *svc)
{
	return svc->stek ? svc->stek : env->stek;
}

static void msg_set(struct sec_msg *m, const uint8_t *data, size_t len, uint8_t flags)
{
	m->data = data;
	m->len = len;
	m->flags = flags;
}

/* ---- peers (client side) -------------------------------------------------------- */

void sec_peer_cleanup(struct sec_peer *p)
{
	tls_client_free(p->tls);
	p->tls = NULL;
	sealed_assoc_cleanup(&p->assoc);
	p->assoc_ready = false;
	p->bootstrapping = false;
}

struct sec_peer *sec_peer_for(struct sec_peer *peers, size_t num, const struct cfg_call *cc,
			      char *err, size_t err_len)
{
	struct sec_peer *slot = NULL;

	for (size_t i = 0; i < num; i++) {
		struct sec_peer *p = &peers[i];
		if (!p->tls) {
			if (!slot)
				slot = p;
			continue;
		}
		if (strcmp(p->name, cc->name) != 0)
			continue;
		if (strcmp(p->ca, cc->ca) == 0)
			return p;
		sec_peer_cleanup(p); /* the CA changed with a reload */
		slot = p;
		break;
	}
	if (!slot) {
		set_err(err, err_len, "no room for another called service");
		return NULL;
	}
	slot->tls = tls_client_new(cc->ca, err, err_len);
	if (!slot->tls)
		return NULL;
	snprintf(slot->name, sizeof(slot->name), "%s", cc->name);
	snprintf(slot->ca, sizeof(slot->ca), "%s", cc->ca);
	slot->assoc_ready = false;
	slot->bootstrapping = false;
	return slot;
}

bool sec_peer_wants_renewal(const struct sec_peer *p, uint64_t now_ms)
{
	return p->tls && p->assoc_ready && !p->bootstrapping &&
	       now_ms + SEALED_LIFETIME_DEFAULT_MS / SEALED_RENEW_FRACTION >= p->assoc.expiry_ms;
}

uint32_t sec_peer_key_id(const struct sec_peer *p)
{
	const uint8_t *t = p->assoc.token; /* starts with the key id, big-endian */
	return (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
}

/* ---- calls (client side) ---------------------------------------------------------- */

void sec_call_init(struct sec_call *c, const struct sec_ops *ops, struct sec_peer *peer,
		   bool replay_safe, const struct r2p2_addr *dst)
{
	c->ops = ops;
	c->peer = peer;
	c->step = SEC_STEP_PLAIN;
	c->replay_safe = replay_safe;
	c->ext = false;
	c->retried = false;
	c->sends = 1;
	c->dst = *dst;
	c->tls = NULL;
	c->req_copy = NULL;
	c->req_len = 0;
	memset(&c->sctx, 0, sizeof(c->sctx));
}

/* call_drop_copy wipes and forgets a sealed call's copy of its request. */
static void call_drop_copy(struct sec_call *c)
{
	if (!c->req_copy)
		return;
	OPENSSL_cleanse(c->req_copy, c->req_len);
	if (c->req_copy != c->req_inline)
		free(c->req_copy);
	c->req_copy = NULL;
}

void sec_call_release(struct sec_call *c)
{
	tls_call_free(c->tls);
	c->tls = NULL;
	sealed_ctx_cleanup(&c->sctx);
	call_drop_copy(c);
	/* A call that fetches an association is the only one doing so (see tls_begin). */
	if (c->peer && (c->step == SEC_STEP_TLS_BOOT || c->step == SEC_STEP_RENEW))
		c->peer->bootstrapping = false;
	c->step = SEC_STEP_PLAIN;
}

/* tls_send starts the call's tls exchange carrying `msg` (`len` bytes). */
static int tls_send(struct sec_env *env, struct sec_call *c, const uint8_t *msg, size_t len,
		    struct sec_msg *out)
{
	struct sec_peer *p = c->peer;
	int ret = tls_call_begin_to(p->tls, p->name, &c->dst, msg, len, c->replay_safe, &c->tls,
				    &env->flight);

	if (ret < 0) {
		if (c->step == SEC_STEP_TLS_BOOT || c->step == SEC_STEP_RENEW)
			p->bootstrapping = false;
		c->step = SEC_STEP_PLAIN;
		return ret;
	}
	msg_set(out, env->flight.data, env->flight.len, R2P2_F_TLS);
	return 0;
}

/*
 * boot_want decides whether a sealed call's tls exchange fetches an association:
 * unless one is held or another call is fetching one (`renew` always does).
 */
static bool boot_want(struct sec_call *c, bool renew)
{
	struct sec_peer *p = c->peer;
	bool want = renew || (!p->bootstrapping && !p->assoc_ready);

	c->step = renew ? SEC_STEP_RENEW : want ? SEC_STEP_TLS_BOOT : SEC_STEP_TLS_SVC;
	if (want)
		p->bootstrapping = true;
	return want;
}

/*
 * tls_begin starts the tls exchange of a call: the request as is (tls service) or
 * with the bootstrap prefix (sealed service; `renew` fetches only an association).
 */
static int tls_begin(struct sec_env *env, struct sec_call *c, const uint8_t *req, size_t len,
		     bool renew, struct sec_msg *out)
{
	int ret;

	c->step = SEC_STEP_TLS;
	if (c->ops->security != CFG_SEC_SEALED)
		return tls_send(env, c, req, len, out);
	bool want = boot_want(c, renew);
	ret = renew ? sealed_boot_renew_encode(&env->sealed)
		    : sealed_boot_req_encode(want, req, len, &env->sealed);
	if (ret < 0) {
		if (want)
			c->peer->bootstrapping = false;
		return ret;
	}
	return tls_send(env, c, env->sealed.data, env->sealed.len, out);
}

/* reply_fail ends a call with `status`; `why` goes to the log. */
static enum sec_next reply_fail(struct sec_reply *out, int status, const char *why)
{
	out->status = status;
	out->why = why;
	msg_set(&out->out, NULL, 0, 0);
	return SEC_DONE;
}

static enum sec_next reply_done(struct sec_reply *out, const uint8_t *data, size_t len)
{
	out->status = 0;
	out->why = NULL;
	msg_set(&out->out, data, len, 0);
	return SEC_DONE;
}

/*
 * tls_finish runs a call's tls exchange on its R2P2 response: the final flight
 * (DONE, the plaintext in env->plain) or the server's handshake flight (SEND the
 * second flight under the same rid).
 */
static enum sec_next tls_finish(struct sec_env *env, struct sec_call *c, const uint8_t *payload,
				size_t len, struct sec_reply *out)
{
	int r = tls_call_input(c->tls, payload, len, &env->flight, &env->plain);

	if (r == TLS_CALL_CONTINUE && tls_call_early_offered(c->tls) && c->sends > 1)
		/* early data refused after a retransmission: an earlier copy may have run at
		 * a process the server's register does not know of (it restarted) */
		return reply_fail(out, -ENOTRECOVERABLE,
				  "early data refused after a retransmission: the request may "
				  "have run");
	if (r == TLS_CALL_CONTINUE) {
		/* The second flight goes to the server that answered the first, under the
		 * same rid: XDP steering (source, port, rid) then brings it to the worker
		 * that holds the handshake. The server's dedup entry for the first flight
		 * gives way, as for any rid reused with different bytes once its request
		 * was answered (an unanswered one never does: docs/PROTOCOL.md). */
		out->status = 0;
		out->why = NULL;
		out->same_rid = true;
		msg_set(&out->out, env->flight.data, env->flight.len, R2P2_F_TLS);
		return SEC_SEND;
	}
	if (r == TLS_CALL_IGNORE) {
		reply_fail(out, -EBADMSG, tls_call_error(c->tls));
		return SEC_IGNORE;
	}
	if (r != TLS_CALL_DONE)
		return reply_fail(out, r, tls_call_error(c->tls));
	return reply_done(out, env->plain.data, env->plain.len);
}

/* ---- plain ------------------------------------------------------------------------- */

static int plain_protect(struct sec_env *env, struct sec_call *c, unsigned policy,
			 const uint8_t *req, size_t len, bool renew, struct sec_msg *out)
{
	(void)env, (void)policy;
	if (renew)
		return -EINVAL;
	c->step = SEC_STEP_PLAIN;
	msg_set(out, req, len, c->ext ? R2P2_F_EXT : 0);
	return 0;
}

static enum sec_next plain_finish(struct sec_env *env, struct sec_call *c, int status,
				  const uint8_t *payload, size_t len, struct sec_reply *out)
{
	(void)env, (void)c;
	if (status < 0)
		return reply_fail(out, status, NULL);
	return reply_done(out, payload, len);
}

static enum sec_verdict plain_open(struct sec_env *env, struct sec_service *svc,
				   const struct sec_request *rq, struct sec_exec *x,
				   struct sec_msg *out)
{
	(void)env, (void)svc;
	if (rq->flags & ~R2P2_F_EXT) /* R2P2_F_EXT: the worker takes the block off */
		return SEC_WRONG_MODE;
	memset(x, 0, sizeof(*x));
	msg_set(out, rq->payload, rq->len, 0);
	return SEC_DELIVER;
}

static int plain_seal(struct sec_env *env, struct sec_service *svc, struct sec_exec *x,
		      const uint8_t *resp, size_t len, struct sec_msg *out)
{
	(void)env, (void)svc, (void)x;
	msg_set(out, resp, len, 0);
	return 0;
}

static const struct sec_ops plain_ops = {
    .name = "plain",
    .security = CFG_SEC_PLAIN,
    .protect = plain_protect,
    .finish = plain_finish,
    .open = plain_open,
    .seal = plain_seal,
};

/* ---- tls ----------------------------------------------------------------------------- */

static int tls_protect(struct sec_env *env, struct sec_call *c, unsigned policy, const uint8_t *req,
		       size_t len, bool renew, struct sec_msg *out)
{
	(void)policy;
	if (renew || !c->peer)
		return -EINVAL;
	return tls_begin(env, c, req, len, false, out);
}

/*
 * call_failed ends an encrypted call the engine ended with `status`, or goes on.
 * Refusals nobody authenticated end nothing (G3): a DROP is set aside, and so is a
 * tls answer signed by a certificate the call does not trust (a forger can sign
 * with a key of its own). When the call then times out, the likelier cause is
 * reported rather than -ETIMEDOUT: the untrusted certificate (-EACCES), else the
 * DROP (-ECONNREFUSED).
 */
static enum sec_next call_failed(struct sec_call *c, int status, struct sec_reply *out)
{
	if (status == -ECONNREFUSED) {
		/* an R2P2 DROP: nothing authenticates it, so it ends nothing; the engine
		 * keeps the call until its deadline, for the server's own answer */
		c->dropped = true;
		reply_fail(out, status, "an unauthenticated DROP, set aside");
		return SEC_IGNORE;
	}
	if (status == -ETIMEDOUT && c->tls && tls_call_refusal(c->tls) < 0)
		return reply_fail(out, tls_call_refusal(c->tls), tls_call_error(c->tls));
	if (status == -ETIMEDOUT && c->dropped)
		return reply_fail(out, -ECONNREFUSED,
				  "the server dropped the request (DROP, and no answer until the "
				  "call's timeout)");
	return reply_fail(out, status, NULL);
}

static enum sec_next tls_mode_finish(struct sec_env *env, struct sec_call *c, int status,
				     const uint8_t *payload, size_t len, struct sec_reply *out)
{
	if (status < 0)
		return call_failed(c, status, out);
	return tls_finish(env, c, payload, len, out);
}

/*
 * tls_answer seals `resp` (or none, for a renewal) into the tls exchange of `x`;
 * for a sealed service with a bootstrap prefix, with a fresh association when the
 * client asked for one.
 */
static int tls_answer(struct sec_env *env, struct sec_service *svc, struct sec_exec *x,
		      const uint8_t *resp, size_t len, struct sec_msg *out)
{
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];
	struct tls_conn *conn = x->conn;
	int ret = 0;

	x->conn = NULL;
	if (!svc->tls) {
		/* the service stopped being tls (reload): the exchange cannot be answered */
		tls_conn_free(conn);
		return -ENOENT;
	}
	if (svc->ops->security == CFG_SEC_SEALED && x->status != SEALED_RETRY_NEW) {
		ret = sealed_boot_status_encode(x->status, &env->sealed);
		resp = env->sealed.data;
		len = env->sealed.len;
	} else if (svc->ops->security == CFG_SEC_SEALED) {
		bool want = x->step == SEC_STEP_TLS_BOOT;
		if (want && sealed_assoc_mint(svc->sealed, svc_stek(env, svc), svc->name,
					      env->wall_ms(), SEALED_LIFETIME_DEFAULT_MS, blob) < 0)
			want = false; /* no STEK: answer without an association */
		ret = sealed_boot_resp_encode(want ? blob : NULL, resp, len, &env->sealed);
		OPENSSL_cleanse(blob, sizeof(blob));
		resp = env->sealed.data;
		len = env->sealed.len;
	}
	if (ret < 0) {
		tls_conn_free(conn);
		return ret;
	}
	ret = tls_server_respond(svc->tls, conn, resp, len, &env->flight);
	if (ret < 0)
		return ret;
	msg_set(out, env->flight.data, env->flight.len, R2P2_F_TLS);
	return 0;
}

/* sealed_checks_of fills what sealed.c checks besides cryptography, for a request at `now`. */
static void sealed_checks_of(const struct sec_env *env, const struct sec_service *svc, uint64_t now,
			     struct sealed_checks *chk)
{
	chk->port = svc->port;
	chk->now_ms = env->wall_ms();
	chk->now_ns = now;
	chk->window_ms = env->sealed_window_ms;
	chk->start_ms = env->start_ms > env->sealed_start_ms ? env->start_ms : env->sealed_start_ms;
	chk->self = env->self;
	chk->num_self = env->num_self;
}

/*
 * boot_open reads a sealed service's bootstrap prefix: whether the client wants an
 * association, and for a request sent again after a REJECT, whether it may run
 * (sealed_retry_check). A renewal or a retry that must not run is answered at once.
 */
static enum sec_verdict boot_open(struct sec_env *env, struct sec_service *svc,
				  const struct sec_request *rq, struct sec_exec *x,
				  struct sec_msg *out)
{
	struct sealed_boot_req b;
	struct sealed_checks chk;

	if (sealed_boot_req_parse(env->plain.data, env->plain.len, &b) < 0) {
		sec_exec_release(x);
		return SEC_REJECT;
	}
	x->step = b.want ? SEC_STEP_TLS_BOOT : SEC_STEP_TLS;
	if (b.retry) {
		sealed_checks_of(env, svc, rq->now, &chk);
		x->status = sealed_retry_check(svc->sealed, env->sealed_replay, &b.prior, &chk);
	}
	msg_set(out, b.req, b.req_len, 0);
	if (b.req && x->status == SEALED_RETRY_NEW)
		return SEC_DELIVER;
	x->step = b.req ? x->step : SEC_STEP_TLS_BOOT; /* a renewal always gets one */
	return tls_answer(env, svc, x, NULL, 0, out) < 0 ? SEC_REJECT : SEC_ANSWER;
}

/*
 * tls_open runs one step of a tls exchange: a request for an app, a
 * handshake-only flight or an ERROR frame to answer with, or nothing.
 */
static enum sec_verdict tls_open(struct sec_env *env, struct sec_service *svc,
				 const struct sec_request *rq, struct sec_exec *x,
				 struct sec_msg *out)
{
	struct tls_conn *conn = NULL;
	int r;

	memset(x, 0, sizeof(*x));
	r = tls_server_input(svc->tls, svc->name, rq->src, rq->payload, rq->len, rq->now, &conn,
			     &env->plain, &env->flight);
	if (r != TLS_SRV_REQUEST) {
		if (r != TLS_SRV_REPLY && !env->flight.len)
			return SEC_REJECT;
		/* handshake-only flight, or an ERROR frame for the client */
		msg_set(out, env->flight.data, env->flight.len, R2P2_F_TLS);
		return SEC_ANSWER;
	}
	x->ops = svc->ops;
	x->conn = conn;
	x->step = SEC_STEP_TLS;
	if (tls_conn_replayed(conn)) {
		/* its 0-RTT copy already ran here (dropped and forwarded, or replayed by the
		 * client itself): say so, authenticated, rather than run it again */
		x->conn = NULL;
		if (tls_server_respond_status(svc->tls, conn, TLS_STATUS_ALREADY, &env->flight) < 0)
			return SEC_REJECT;
		msg_set(out, env->flight.data, env->flight.len, R2P2_F_TLS);
		return SEC_ANSWER;
	}
	msg_set(out, env->plain.data, env->plain.len, 0);
	if (svc->ops->security != CFG_SEC_SEALED)
		return SEC_DELIVER;
	return boot_open(env, svc, rq, x, out);
}

static enum sec_verdict tls_mode_open(struct sec_env *env, struct sec_service *svc,
				      const struct sec_request *rq, struct sec_exec *x,
				      struct sec_msg *out)
{
	if (rq->flags != R2P2_F_TLS || !svc->tls)
		return SEC_WRONG_MODE;
	return tls_open(env, svc, rq, x, out);
}

static int tls_seal(struct sec_env *env, struct sec_service *svc, struct sec_exec *x,
		    const uint8_t *resp, size_t len, struct sec_msg *out)
{
	return tls_answer(env, svc, x, resp, len, out);
}

static const struct sec_ops tls_ops = {
    .name = "tls",
    .security = CFG_SEC_TLS,
    .protect = tls_protect,
    .finish = tls_mode_finish,
    .open = tls_mode_open,
    .seal = tls_seal,
};

/* ---- sealed ---------------------------------------------------------------------------- */

/*
 * sealed_protect turns an app request into one AEAD message under the peer's
 * association when it holds a live one and the request is replay-safe, and into
 * a tls exchange (bootstrap) otherwise. A sealed request keeps a copy of the
 * plaintext so that a server's "re-bootstrap" answer can be handled transparently.
 */
static int sealed_protect(struct sec_env *env, struct sec_call *c, unsigned policy,
			  const uint8_t *req, size_t len, bool renew, struct sec_msg *out)
{
	struct sec_peer *p = c->peer;
	uint64_t now_ms = env->wall_ms();
	uint8_t hdr[SEALED_HDR_AD_LEN];

	if (!p)
		return -EINVAL;
	if (p->assoc_ready && now_ms >= p->assoc.expiry_ms)
		p->assoc_ready = false; /* expired: the server would refuse it */
	if (renew || !p->assoc_ready || !c->replay_safe)
		return tls_begin(env, c, req, len, renew, out);
	sealed_hdr_ad(hdr, R2P2_REQUEST, policy);
	if (sealed_seal_request(&p->assoc, hdr, &c->dst, req, len, now_ms, &env->sealed, &c->sctx) <
	    0) {
		p->assoc_ready = false; /* expired or exhausted: bootstrap again */
		return tls_begin(env, c, req, len, false, out);
	}
	c->req_copy = len <= sizeof(c->req_inline) ? c->req_inline : malloc(len);
	if (!c->req_copy) {
		sealed_ctx_cleanup(&c->sctx);
		return -ENOMEM;
	}
	memcpy(c->req_copy, req, len);
	c->req_len = len;
	c->step = SEC_STEP_SEALED;
	msg_set(out, env->sealed.data, env->sealed.len, R2P2_F_SEALED);
	return 0;
}

/*
 * sealed_retry: the server refused the request with a REJECT that is authentic, or
 * one it could not have authenticated: either way the request may have run (an
 * authentic "replay" means a copy did; a clear one may be forged). So the request
 * goes again once, through a tls exchange with the same server, naming the refused
 * attempt (SEALED_BOOT_RETRY): the server runs it only if it can tell the attempt
 * never ran, and says so inside tls otherwise. On the reasons that say the
 * association is no good (unknown key, bad token, wrong service, expired), a new
 * one is fetched on the way.
 */
static enum sec_next sealed_retry(struct sec_env *env, struct sec_call *c,
				  enum sealed_reason reason, struct sec_reply *out)
{
	struct sec_peer *p = c->peer;
	struct sealed_prior prior = c->sctx.prior;
	bool want;
	int ret;

	if (!c->req_copy || c->retried)
		return reply_fail(out, -ECONNREFUSED, sealed_reason_name(reason));
	if (sealed_reason_rebootstrap(reason)) {
		p->assoc_ready = false;
		p->rebootstraps++;
	}
	sealed_ctx_cleanup(&c->sctx);
	c->retried = true;
	want = boot_want(c, false);
	ret = sealed_boot_retry_encode(want, &prior, c->req_copy, c->req_len, &env->sealed);
	if (ret == 0)
		ret = tls_send(env, c, env->sealed.data, env->sealed.len, &out->out);
	else if (want)
		p->bootstrapping = false;
	if (ret < 0)
		return reply_fail(out, -ECONNREFUSED, sealed_reason_name(reason));
	call_drop_copy(c);
	out->status = 0;
	out->why = NULL;
	out->same_rid = false;
	return SEC_SEND;
}

/*
 * sealed_finish_aead opens the response to an AEAD request, or handles a REJECT: one
 * that does not authenticate, or a clear one for a reason the server authenticates
 * (it opened the token), is forged and ignored like a forged response.
 */
static enum sec_next sealed_finish_aead(struct sec_env *env, struct sec_call *c,
					const uint8_t *payload, size_t len, struct sec_reply *out)
{
	uint8_t hdr[SEALED_HDR_AD_LEN];
	enum sealed_reason reason;
	bool authentic;

	sealed_hdr_ad(hdr, R2P2_RESPONSE, R2P2_FIXED_ROUTE);
	switch (sealed_reject_open(&c->sctx, hdr, payload, len, &reason, &authentic)) {
	case -ENOMSG:
		break;
	case 0:
		if (authentic || !sealed_reason_authenticated(reason))
			return sealed_retry(env, c, reason, out);
		reply_fail(out, -EBADMSG,
			   "a clear sealed REJECT the server would have authenticated");
		return SEC_IGNORE;
	default:
		reply_fail(out, -EBADMSG, "sealed REJECT does not authenticate");
		return SEC_IGNORE;
	}
	if (sealed_open_response(&c->sctx, hdr, payload, len, &env->sealed) < 0) {
		/* anyone can send a packet with this rid: a forgery must not end the call */
		reply_fail(out, -EBADMSG, "sealed response does not authenticate");
		return SEC_IGNORE;
	}
	return reply_done(out, env->sealed.data, env->sealed.len);
}

/* sealed_finish_boot takes the association out of a bootstrap response, if any. */
static enum sec_next sealed_finish_boot(struct sec_env *env, struct sec_call *c,
					struct sec_reply *out)
{
	struct sec_peer *p = c->peer;
	const uint8_t *blob;

	switch (sealed_boot_resp_status(out->out.data, out->out.len)) {
	case 0:
		break;
	case SEALED_RETRY_DONE:
		return reply_fail(out, -EALREADY, "the server had already run the request");
	case SEALED_RETRY_UNKNOWN:
		return reply_fail(out, -ENOTRECOVERABLE,
				  "the server cannot tell whether the request ran");
	default:
		return reply_fail(out, -EBADMSG, "bad sealed bootstrap response");
	}
	if (sealed_boot_resp_decode(out->out.data, out->out.len, &blob, &out->out.data,
				    &out->out.len) < 0)
		return reply_fail(out, -EBADMSG, "bad sealed bootstrap response");
	if (blob && sealed_assoc_init(&p->assoc, blob, env->wall_ms()) == 0)
		p->assoc_ready = true;
	if (c->step != SEC_STEP_TLS_SVC)
		p->bootstrapping = false;
	return SEC_DONE;
}

static enum sec_next sealed_finish(struct sec_env *env, struct sec_call *c, int status,
				   const uint8_t *payload, size_t len, struct sec_reply *out)
{
	enum sec_next next;

	if (status < 0)
		return call_failed(c, status, out);
	if (c->step == SEC_STEP_SEALED)
		return sealed_finish_aead(env, c, payload, len, out);
	next = tls_finish(env, c, payload, len, out);
	if (next != SEC_DONE || out->status < 0)
		return next;
	return sealed_finish_boot(env, c, out);
}

/* sealed_open_aead opens a sealed request (token, window, strike register, AEAD)
 * before any app sees it; a refusal is answered with a REJECT, authenticated when
 * the token opened. */
static enum sec_verdict sealed_open_aead(struct sec_env *env, struct sec_service *svc,
					 const struct sec_request *rq, struct sec_exec *x,
					 struct sec_msg *out)
{
	uint8_t hdr[SEALED_HDR_AD_LEN];
	enum sealed_reason why;

	memset(x, 0, sizeof(*x));
	struct sealed_checks chk;

	sealed_hdr_ad(hdr, R2P2_REQUEST, rq->policy);
	sealed_checks_of(env, svc, rq->now, &chk);
	if (sealed_open_request(svc->sealed, svc_stek(env, svc), svc->name, env->sealed_replay,
				&chk, hdr, rq->payload, rq->len, &env->sealed, &x->sctx,
				&why) < 0) {
		uint8_t rhdr[SEALED_HDR_AD_LEN];

		sealed_hdr_ad(rhdr, R2P2_RESPONSE, R2P2_FIXED_ROUTE);
		msg_set(out, env->reject, sealed_reject_seal(&x->sctx, rhdr, why, env->reject),
			R2P2_F_SEALED);
		sealed_ctx_cleanup(&x->sctx);
		return SEC_ANSWER;
	}
	x->ops = svc->ops;
	x->step = SEC_STEP_SEALED;
	msg_set(out, env->sealed.data, env->sealed.len, 0);
	return SEC_DELIVER;
}

static enum sec_verdict sealed_open(struct sec_env *env, struct sec_service *svc,
				    const struct sec_request *rq, struct sec_exec *x,
				    struct sec_msg *out)
{
	/* A sealed service takes tls exchanges (the bootstrap) and sealed requests. */
	if (!svc->tls || !svc->sealed)
		return SEC_WRONG_MODE;
	if (rq->flags == R2P2_F_TLS)
		return tls_open(env, svc, rq, x, out);
	if (rq->flags == R2P2_F_SEALED)
		return sealed_open_aead(env, svc, rq, x, out);
	return SEC_WRONG_MODE;
}

static int sealed_seal(struct sec_env *env, struct sec_service *svc, struct sec_exec *x,
		       const uint8_t *resp, size_t len, struct sec_msg *out)
{
	uint8_t hdr[SEALED_HDR_AD_LEN];
	int ret;

	if (x->step != SEC_STEP_SEALED)
		return tls_answer(env, svc, x, resp, len, out);
	if (!svc->sealed) {
		sealed_ctx_cleanup(&x->sctx);
		return -ENOENT;
	}
	sealed_hdr_ad(hdr, R2P2_RESPONSE, R2P2_FIXED_ROUTE);
	ret = sealed_seal_response(svc->sealed, &x->sctx, hdr, resp, len, &env->sealed);
	sealed_ctx_cleanup(&x->sctx);
	if (ret < 0)
		return ret;
	msg_set(out, env->sealed.data, env->sealed.len, R2P2_F_SEALED);
	return 0;
}

static const struct sec_ops sealed_ops = {
    .name = "sealed",
    .security = CFG_SEC_SEALED,
    .protect = sealed_protect,
    .finish = sealed_finish,
    .open = sealed_open,
    .seal = sealed_seal,
};

const struct sec_ops *sec_ops_for(enum cfg_security s)
{
	switch (s) {
	case CFG_SEC_TLS:
		return &tls_ops;
	case CFG_SEC_SEALED:
		return &sealed_ops;
	case CFG_SEC_PLAIN:
	default:
		return &plain_ops;
	}
}

/* ---- services (server side) ------------------------------------------------------------ */

/*
 * svc_use_stek makes `set`, loaded from `path` (NULL: the same file as before), the
 * keys of `svc`, taking over the reference; NULL `set` goes back to the env's keys
 * (`env` is only needed then).
 */
static void svc_use_stek(const struct sec_env *env, struct sec_service *svc, struct stek_set *set,
			 const char *path)
{
	struct stek_set *old = svc->stek;

	svc->stek = set;
	if (!set)
		svc->stek_path[0] = '\0';
	else if (path)
		snprintf(svc->stek_path, sizeof(svc->stek_path), "%s", path);
	if (svc->tls)
		tls_server_set_stek(svc->tls, svc_stek(env, svc));
	/* token keys of the keys given up go now */
	sealed_server_forget_keys(svc->sealed, svc_stek(env, svc));
	stek_set_put(old);
}

/* svc_load_stek loads the STEK file `path` of `svc` into `*out`, naming the service. */
static int svc_load_stek(const struct sec_service *svc, const char *path, struct stek_set **out,
			 char *err, size_t err_len)
{
	char why[512];
	int rc = stek_load(path, out, why, sizeof(why));

	if (rc < 0)
		set_err(err, err_len, "[serve %s] %s", svc->name, why); /* why: "stek: ..." */
	return rc;
}

/* svc_configure_stek gives `svc` the STEK `sv` names: its own file, or the env's. */
static int svc_configure_stek(struct sec_env *env, struct sec_service *svc,
			      const struct cfg_serve *sv, char *err, size_t err_len)
{
	struct stek_set *set;
	int rc;

	if (!sv->stek[0]) {
		if (svc->stek)
			svc_use_stek(env, svc, NULL, NULL);
		return 0;
	}
	/* the same file: sec_service_reload_stek follows its changes */
	if (svc->stek && strcmp(svc->stek_path, sv->stek) == 0)
		return 0;
	rc = svc_load_stek(svc, sv->stek, &set, err, err_len);
	if (rc < 0)
		return rc;
	svc_use_stek(env, svc, set, sv->stek);
	return 0;
}

int sec_service_configure(struct sec_env *env, struct sec_service *svc, const struct cfg_serve *sv,
			  char *err, size_t err_len)
{
	int rc;

	snprintf(svc->name, sizeof(svc->name), "%s", sv->name);
	svc->port = htons(sv->port);
	svc->ops = sec_ops_for(sv->security);
	if (sv->security == CFG_SEC_SEALED && !svc->sealed) {
		svc->sealed = sealed_server_new();
		if (!svc->sealed) {
			set_err(err, err_len, "[serve %s]: out of memory", sv->name);
			return -ENOMEM;
		}
	}
	rc = svc_configure_stek(env, svc, sv, err, err_len);
	if (rc < 0)
		return rc;
	if (sv->security == CFG_SEC_PLAIN)
		return 0;
	if (svc->tls) {
		/* a reload reads the chain and key again: a renewed certificate, a new
		 * path, early_data; handshakes in progress finish with what they had */
		struct tls_service_keys keys = {
		    .name = sv->name, .cert_path = sv->cert, .key_path = sv->key};
		bool changed;

		if (tls_server_replace_keys(svc->tls, &keys, sv->early_data, svc_stek(env, svc),
					    &changed, err, err_len) < 0)
			return -EINVAL;
		svc->keys_changed = svc->keys_changed || changed;
	} else {
		struct tls_service_keys keys = {
		    .name = sv->name, .cert_path = sv->cert, .key_path = sv->key};
		svc->tls = tls_server_new(&keys, 1, sv->early_data, err, err_len);
		if (!svc->tls)
			return -EINVAL;
		tls_server_set_stek(svc->tls, svc_stek(env, svc));
	}
	/* a register a reload made for the first tls or sealed service arrives later */
	tls_server_set_replay(svc->tls, env->replay);
	/* 0-RTT data is bound to the server it was sent to, as sealed requests are */
	tls_server_set_self(svc->tls, env->self, env->num_self, svc->port);
	/* early data only with tickets this server's strike register can vouch for */
	tls_server_set_early_limits(svc->tls, env->start_ms, env->replay_window_ms);
	return 0;
}

void sec_service_retire(struct sec_service *svc, struct tls_stats *retired)
{
	if (svc->tls && retired) {
		struct tls_stats st;
		tls_server_stats(svc->tls, &st);
		st.pending_handshakes = 0; /* freed with it */
		tls_stats_add(retired, &st);
	}
	tls_server_free(svc->tls);
	svc->tls = NULL;
	sealed_server_free(svc->sealed);
	svc->sealed = NULL;
	stek_set_put(svc->stek);
	svc->stek = NULL;
	svc->stek_path[0] = '\0';
}

void sec_service_set_stek(struct sec_service *svc, struct stek_set *stek)
{
	if (svc->stek)
		return; /* its own keys: the daemon's are none of its business */
	if (svc->tls)
		tls_server_set_stek(svc->tls, stek);
	/* token keys of retired STEK keys go now, not when the cache needs the slot */
	sealed_server_forget_keys(svc->sealed, stek);
}

int sec_service_reload_stek(struct sec_service *svc, bool *out_changed, char *err, size_t err_len)
{
	char before[512], after[512];
	struct stek_set *set;
	int rc;

	*out_changed = false;
	if (!svc->stek)
		return 0;
	rc = svc_load_stek(svc, svc->stek_path, &set, err, err_len);
	if (rc < 0)
		return rc;
	/* ids, roles and fingerprints: the same text is the same keys */
	stek_describe(svc->stek, before, sizeof(before));
	stek_describe(set, after, sizeof(after));
	if (strcmp(before, after) == 0) {
		stek_set_put(set);
		return 0;
	}
	svc_use_stek(NULL, svc, set, NULL); /* its own keys: no env needed */
	*out_changed = true;
	return 0;
}

void sec_service_expire(struct sec_service *svc, uint64_t now, uint64_t max_age_ns)
{
	if (svc->tls)
		tls_server_expire(svc->tls, now, max_age_ns);
}

bool sec_exec_uses_service(const struct sec_exec *x)
{
	return x->conn != NULL;
}

void sec_exec_release(struct sec_exec *x)
{
	tls_conn_free(x->conn);
	x->conn = NULL;
	sealed_ctx_cleanup(&x->sctx);
}

int sec_seal(struct sec_env *env, struct sec_service *svc, struct sec_exec *x, const uint8_t *resp,
	     size_t len, struct sec_msg *out)
{
	const struct sec_ops *ops = x->ops ? x->ops : &plain_ops;
	return ops->seal(env, svc, x, resp, len, out);
}
