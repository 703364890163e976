// SPDX-License-Identifier: MIT
/*
 * The client call table: an app's call becomes an engine call (through the
 * called service's security mode), and the engine's completion becomes the
 * app's reply. The engine cookie is (generation << 32 | slot), so a completion
 * for a slot that has since been reused is ignored.
 */
#include "worker_int.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"

int calls_init(struct worker *w)
{
	w->num_calls_cap = MAX_CALLS_PER_LANE * 4;
	w->calls = calloc(w->num_calls_cap, sizeof(*w->calls));
	if (!w->calls)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->num_calls_cap; i++) {
		w->calls[i].wapp = UINT32_MAX;
		w->calls[i].next_free = i + 1 < w->num_calls_cap ? i + 1 : UINT32_MAX;
	}
	w->call_free = 0;
	return 0;
}

void calls_free(struct worker *w)
{
	free(w->calls);
	w->calls = NULL;
}

void call_fail(struct wapp *wa, uint64_t user_data, int err)
{
	lane_post(&wa->lane, R2P2_CQ_RESPONSE, err, user_data, 0, NULL, 0);
}

/* call_alloc takes a free slot for a call of `ops` to `peer`; NULL when none is left. */
static struct call *call_alloc(struct worker *w, const struct sec_ops *ops, struct sec_peer *peer,
			       bool replay_safe, const struct r2p2_addr *dst)
{
	struct call *c;

	if (w->call_free == UINT32_MAX)
		return NULL;
	c = &w->calls[w->call_free];
	c->gen++;
	sec_call_init(&c->sec, ops, peer, replay_safe, dst);
	return c;
}

static uint64_t call_cookie(const struct worker *w, const struct call *c)
{
	return ((uint64_t)c->gen << 32) | (uint32_t)(c - w->calls);
}

/* call_commit takes the slot of `c` (its engine call is under way) for `wapp`. */
static void call_commit(struct worker *w, struct call *c, uint32_t wapp)
{
	w->call_free = c->next_free;
	c->wapp = wapp;
	w->calls_inflight++;
}

/* call_release returns the slot of `c`. */
static void call_release(struct worker *w, struct call *c)
{
	sec_call_release(&c->sec);
	c->wapp = UINT32_MAX;
	c->next_free = w->call_free;
	w->call_free = (uint32_t)(c - w->calls);
	w->calls_inflight--;
}

/* call_target picks the call's destination: its router, or its servers round-robin. */
static void call_target(struct worker *w, const struct cfg_call *cc, struct eng_call_args *args)
{
	const struct cfg *c = &w->cfg->cfg;

	if (cc->has_router) {
		args->dst = cc->router;
		args->via_router = true;
	} else {
		size_t k = (size_t)(cc - c->calls);
		args->dst = cc->servers[w->call_rr[k]++ % cc->num_servers];
	}
}

/* call_peer returns the worker's state of a protected called service (NULL: plain). */
static int call_peer(struct worker *w, const struct cfg_call *cc, struct sec_peer **out)
{
	char err[256];

	*out = NULL;
	if (cc->security == CFG_SEC_PLAIN)
		return 0;
	*out = sec_peer_for(w->peers, CFG_MAX_SERVICES, cc, err, sizeof(err));
	if (*out)
		return 0;
	log_err("worker %u: [call %s] ca %s: %s", w->id, cc->name, cc->ca, err);
	return -EACCES;
}

/* call_args fills the engine arguments of an app call. */
static void call_args(struct worker *w, const struct cfg_call *cc, const struct r2p2_sqe *sqe,
		      struct eng_call_args *args)
{
	uint32_t timeout_ms = sqe->timeout_ms ? sqe->timeout_ms : cc->timeout_ms;

	call_target(w, cc, args);
	args->sock = 0;
	args->policy = sqe->policy ? (sqe->policy & 0x0F) : cc->policy;
	args->max_retries = cc->retries;
	args->timeout_ns = (uint64_t)timeout_ms * NS_PER_MS / (cc->retries + 1);
	if (args->timeout_ns == 0)
		args->timeout_ns = NS_PER_MS;
}

/* call_send protects `req` in the call's mode and starts its engine call. */
static int call_send(struct worker *w, struct call *c, const uint8_t *req, size_t len, bool renew,
		     struct eng_call_args *args, uint64_t now)
{
	struct sec_msg m;
	int ret;

	ret = c->sec.ops->protect(&w->sec, &c->sec, args->policy, req, len, renew, &m);
	if (ret < 0)
		return ret;
	args->payload = m.data;
	args->len = m.len;
	args->flags = m.flags;
	args->cookie = call_cookie(w, c);
	c->args = *args;
	c->args.payload = NULL;
	c->args.via_router = false; /* a continuation goes to the server that answered */
	ret = eng_call(w->eng, args, now);
	if (ret < 0)
		sec_call_release(&c->sec);
	return ret;
}

void call_start(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe, const uint8_t *payload,
		uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	const struct cfg_call *cc = cfg_find_call(&w->cfg->cfg, sqe->service);
	struct eng_call_args args = {0};
	struct sec_peer *peer;
	struct call *c;
	int ret;

	if (w->draining || !cc || w->call_free == UINT32_MAX) {
		call_fail(wa, sqe->user_data, w->draining ? -ESHUTDOWN : !cc ? -ENOENT : -ENOBUFS);
		return;
	}
	ret = call_peer(w, cc, &peer);
	if (ret < 0) {
		call_fail(wa, sqe->user_data, ret);
		return;
	}
	call_args(w, cc, sqe, &args);
	c = call_alloc(w, sec_ops_for(cc->security), peer, !(sqe->flags & R2P2_SQE_NOT_REPLAY_SAFE),
		       &args.dst);
	ret = call_send(w, c, payload, sqe->len, false, &args, now);
	if (ret < 0) {
		call_fail(wa, sqe->user_data, ret);
		return;
	}
	call_commit(w, c, slot);
	c->wapp_gen = wa->gen;
	c->user_data = sqe->user_data;
	wa->calls_inflight++;
}

/* calls_renew starts a background renewal for associations near their expiry. */
void calls_renew(struct worker *w, uint64_t now)
{
	const struct cfg *cfg = &w->cfg->cfg;
	uint64_t now_ms = w->sec.wall_ms();

	for (size_t k = 0; k < cfg->num_calls && !w->draining; k++) {
		const struct cfg_call *cc = &cfg->calls[k];
		struct eng_call_args args = {0};
		struct sec_peer *peer;
		struct call *c;

		if (cc->security != CFG_SEC_SEALED || call_peer(w, cc, &peer) < 0 ||
		    !sec_peer_wants_renewal(peer, now_ms))
			continue;
		args.dst =
		    cc->has_router ? cc->router : cc->servers[w->call_rr[k]++ % cc->num_servers];
		c = call_alloc(w, sec_ops_for(cc->security), peer, true, &args.dst);
		if (!c)
			return;
		args.policy = cc->policy;
		args.max_retries = cc->retries;
		args.timeout_ns = (uint64_t)cc->timeout_ms * NS_PER_MS / (cc->retries + 1);
		if (call_send(w, c, NULL, 0, true, &args, now) == 0)
			call_commit(w, c, CALL_INTERNAL);
	}
}

/* call_log says once a second at most what became of a protected call (`what`) and why. */
static void call_log(struct worker *w, const struct call *c, const char *what, const char *why)
{
	uint64_t now = now_ns();

	if (!why || now - w->last_sec_log < NS_PER_S)
		return;
	w->last_sec_log = now;
	log_warn("worker %u: call to %s %s: %s", w->id, c->sec.peer ? c->sec.peer->name : "?", what,
		 why);
}

/*
 * call_continue sends the next message of a call's exchange (a tls continuation
 * under the rid just answered, or the request again through a re-bootstrap).
 * Returns 0, or the engine's error.
 */
static int call_continue(struct worker *w, struct call *c, const struct sec_reply *r)
{
	struct eng_call_args a = c->args;

	a.payload = r->out.data;
	a.len = r->out.len;
	a.flags = r->out.flags;
	c->args.flags = r->out.flags; /* a CLIENT_SECOND goes in the same mode */
	if (r->same_rid) {
		a.use_rid = true;
		a.rid = eng_completing_rid(w->eng);
	}
	return eng_call(w->eng, &a, now_ns());
}

void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	uint32_t idx = (uint32_t)cookie, gen = (uint32_t)(cookie >> 32);
	struct sec_reply r = {0};
	struct call *c;
	struct wapp *wa;

	if (idx >= w->num_calls_cap)
		return;
	c = &w->calls[idx];
	if (c->wapp == UINT32_MAX || c->gen != gen)
		return;
	c->sec.sends = eng_completing_sends(w->eng);
	switch (c->sec.ops->finish(&w->sec, &c->sec, status, payload, len, &r)) {
	case SEC_IGNORE:
		call_log(w, c, "goes on, a reply was set aside", r.why);
		eng_keep_waiting(w->eng); /* until the attempt's deadline, for the genuine one */
		return;
	case SEC_SEND: {
		int ret = call_continue(w, c, &r);
		if (ret == 0)
			return; /* the exchange goes on */
		r.status = ret;
		r.out.data = NULL;
		r.out.len = 0;
		break;
	}
	case SEC_DONE:
		break;
	}
	call_log(w, c, "failed", r.why);
	wa = c->wapp < MAX_WAPPS ? &w->wapps[c->wapp] : NULL;
	if (c->wapp < MAX_WAPPS) {
		/* what the app sees: the engine's ok counts exchanges, not calls */
		if (r.status == 0)
			w->app_ok++;
		else
			w->app_failed++;
	}
	if (wa && wa->app && wa->gen == c->wapp_gen && !wa->removing) {
		wa->calls_inflight--;
		if (lane_post(&wa->lane, R2P2_CQ_RESPONSE, r.status, c->user_data, 0, r.out.data,
			      r.out.len) < 0)
			w->cq_overflow_drops++;
	}
	call_release(w, c);
}
