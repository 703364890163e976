// SPDX-License-Identifier: MIT
/*
 * The client call table: an app's call becomes an engine call (through the
 * called service's security mode), and the engine's completion becomes the
 * app's reply. The engine cookie is (generation << 32 | slot), so a completion
 * for a slot that has since been reused is ignored.
 *
 * Admission: a worker has at most `max_inflight` app calls of one called service
 * in flight; the others wait, in order, unprotected (a sealed request is stamped
 * and a tls call takes its ticket when it leaves), and leave as calls end. Their
 * timeout runs from their submission. A bounded queue (QUEUE_MAX) refuses with
 * -ENOBUFS. So a burst from an app never holds a server's queues longer than the
 * service's own pace, where sealed requests would go stale and tls handshakes
 * would pile up, and each call that ends hands a fresh tls ticket to one waiting.
 */
#include "boringssl.h"

#include "worker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

#include "clock.h"
#include "ext.h"
#include "log.h"

int calls_init(struct worker *w)
{
	w->num_calls_cap = MAX_CALLS_PER_LANE * 4;
	w->calls = calloc(w->num_calls_cap, sizeof(*w->calls));
	w->by_user_mask = w->num_calls_cap * 2 - 1; /* a power of two: 4096 * 4 * 2 */
	w->by_user = malloc((w->by_user_mask + 1) * sizeof(*w->by_user));
	if (!w->calls || !w->by_user ||
	    RAND_bytes((uint8_t *)w->by_user_key, sizeof(w->by_user_key)) != 1)
		return -ENOMEM;
	memset(w->by_user, 0xff, (w->by_user_mask + 1) * sizeof(*w->by_user));
	for (uint32_t i = 0; i < w->num_calls_cap; i++) {
		w->calls[i].wapp = UINT32_MAX;
		w->calls[i].next_user = UINT32_MAX;
		w->calls[i].next_free = i + 1 < w->num_calls_cap ? i + 1 : UINT32_MAX;
	}
	w->call_free = 0;
	return 0;
}

void calls_free(struct worker *w)
{
	for (size_t i = 0; i < CALL_SVCS; i++) {
		struct pending *p = w->call_svcs[i].head;
		while (p) {
			struct pending *next = p->next;
			free(p);
			p = next;
		}
		w->call_svcs[i].head = w->call_svcs[i].tail = NULL;
	}
	free(w->calls);
	w->calls = NULL;
	free(w->by_user);
	w->by_user = NULL;
}

/*
 * user_bucket is the by_user chain of the app call `user_data` of lane `slot`. The app
 * chooses user_data, so the bucket is a keyed hash of it: no app can pile its calls
 * into one chain and make every call end walk it.
 */
static uint32_t *user_bucket(struct worker *w, uint32_t slot, uint64_t user_data)
{
	uint64_t in[2] = {user_data, slot};

	return &w->by_user[SIPHASH_24(w->by_user_key, (const uint8_t *)in, sizeof(in)) &
			   w->by_user_mask];
}

/* user_index files the app call `c` under its lane and user_data, for call_cancel. */
static void user_index(struct worker *w, struct call *c)
{
	uint32_t *head = user_bucket(w, c->wapp, c->user_data);

	c->next_user = *head;
	*head = (uint32_t)(c - w->calls);
}

static void user_unindex(struct worker *w, struct call *c)
{
	uint32_t *p = user_bucket(w, c->wapp, c->user_data), idx = (uint32_t)(c - w->calls);

	while (*p != UINT32_MAX && *p != idx)
		p = &w->calls[*p].next_user;
	if (*p == idx)
		*p = c->next_user;
	c->next_user = UINT32_MAX;
}

void call_fail(struct wapp *wa, uint64_t user_data, int err)
{
	lane_post(&wa->lane, R2P2_CQ_RESPONSE, err, user_data, 0, NULL, 0);
}

/* call_fail_counted fails an app call that never reached the engine, and counts it. */
static void call_fail_counted(struct worker *w, struct wapp *wa, uint64_t user_data, int err)
{
	call_fail(wa, user_data, err);
	w->app_failed++;
}

/* debug_allowed says whether a per-call debug line may be written now (and counts it). */
static bool debug_allowed(struct worker *w, uint64_t now)
{
	if (log_threshold < LOG_LVL_DEBUG)
		return false;
	if (now - w->debug_window_ns >= NS_PER_S) {
		w->debug_window_ns = now;
		w->debug_lines = 0;
	}
	return w->debug_lines++ < DEBUG_CALLS_PER_S;
}

/*
 * call_debug writes, with log_level = debug, one line per app call that ends: service,
 * server, mode, outcome and time, at most DEBUG_CALLS_PER_S a second per worker.
 */
static void call_debug(struct worker *w, const struct call *c, const struct sec_reply *r)
{
	uint64_t now;
	char addr[64];

	/* the per-RPC path pays one comparison when debug is off, not a clock read */
	if (log_threshold < LOG_LVL_DEBUG || c->wapp >= MAX_WAPPS || !debug_allowed(w, now_ns()))
		return;
	now = now_ns();
	cfg_format_addr(&c->args.dst, addr, sizeof(addr));
	log_debug("worker %u: call to %s at %s (%s): %s%s%s%s after %llu us", w->id,
		  c->svc != CALL_NO_SVC ? w->call_svcs[c->svc].name : "?", addr,
		  c->sec.ops ? c->sec.ops->name : "?", r->status ? "failed, " : "ok",
		  r->status ? strerror(-r->status) : "", r->why ? ": " : "", r->why ? r->why : "",
		  (unsigned long long)((now - c->start_ns) / 1000));
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
	c->svc = CALL_NO_SVC;
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
	if (c->wapp < MAX_WAPPS) /* an app's call: user_index filed it at its launch */
		user_unindex(w, c);
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

/*
 * svc_find returns the admission entry of called service `cc` (k: its index in
 * the config, tried first), making one if needed; CALL_NO_SVC when all are taken.
 */
static uint16_t svc_find(struct worker *w, const struct cfg_call *cc)
{
	size_t k = (size_t)(cc - w->cfg->cfg.calls);
	uint16_t empty = CALL_NO_SVC, stale = CALL_NO_SVC, spare;

	if (k < CALL_SVCS && strcmp(w->call_svcs[k].name, cc->name) == 0)
		return (uint16_t)k;
	for (uint16_t i = 0; i < CALL_SVCS; i++) {
		struct call_svc *s = &w->call_svcs[i];

		if (s->name[0] && strcmp(s->name, cc->name) == 0)
			return i;
		if (empty == CALL_NO_SVC && !s->name[0])
			empty = i;
		/* an idle entry of a service the config no longer calls (its counters go) */
		if (stale == CALL_NO_SVC && s->name[0] && !s->inflight && !s->head &&
		    !cfg_find_call(&w->cfg->cfg, s->name))
			stale = i;
	}
	spare = empty != CALL_NO_SVC ? empty : stale;
	if (spare != CALL_NO_SVC) {
		snprintf(w->call_svcs[spare].name, sizeof(w->call_svcs[spare].name), "%s",
			 cc->name);
		memset(&w->call_svcs[spare].st, 0, sizeof(w->call_svcs[spare].st));
	}
	return spare;
}

/* lat_bucket is the latency bucket of a call that took `us` microseconds. */
static unsigned lat_bucket(uint64_t us)
{
	unsigned b;

	if (us <= 8)
		return 0;
	b = 64 - (unsigned)__builtin_clzll(us - 1) - 3; /* ceil(log2(us)) - 3 */
	return b < CALL_LAT_BUCKETS ? b : CALL_LAT_BUCKETS - 1;
}

/* count_call counts an app call to service `svc` that ended with `status` now. */
static void count_call(struct worker *w, const struct call *c, uint16_t svc, int status)
{
	struct call_svc_stats *st = &w->call_svcs[svc].st;
	uint64_t us = w->now > c->start_ns ? (w->now - c->start_ns) / 1000 : 0;

	if (status == 0)
		st->ok++;
	else
		st->failed++;
	st->lat[lat_bucket(us)]++;
	st->lat_sum_us += us;
}

/* call_launch starts the app call `sqe` of lane `slot` now; 0 or -errno (the app is not told). */
static int call_launch(struct worker *w, uint32_t slot, const struct cfg_call *cc,
		       const struct r2p2_sqe *sqe, const uint8_t *payload, uint16_t svc,
		       uint64_t now)
{
	struct eng_call_args args = {0};
	const uint8_t *req = payload;
	size_t len = sqe->len;
	struct sec_peer *peer;
	struct call *c;
	int ret;

	if (w->call_free == UINT32_MAX)
		return -ENOBUFS;
	ret = call_peer(w, cc, &peer);
	if (ret < 0)
		return ret;
	call_args(w, cc, sqe, &args);
	c = call_alloc(w, sec_ops_for(cc->security), peer, !(sqe->flags & R2P2_SQE_NOT_REPLAY_SAFE),
		       &args.dst);
	c->sec.ext = cfg_call_ext(cc);
	if (c->sec.ext) {
		/* the server learns how long this caller waits: its whole timeout from now */
		uint64_t left_us =
		    (uint64_t)(sqe->timeout_ms ? sqe->timeout_ms : cc->timeout_ms) * 1000;

		req =
		    ext_wrap(w, left_us < EXT_NO_DEADLINE ? (uint32_t)left_us : EXT_NO_DEADLINE - 1,
			     payload, len);
		if (!req)
			return -ENOMEM;
		len += EXT_LEN;
	}
	ret = call_send(w, c, req, len, false, &args, now);
	if (c->sec.ext)
		ext_wipe(w, sqe->len);
	if (ret < 0)
		return ret;
	call_commit(w, c, slot);
	c->wapp_gen = w->wapps[slot].gen;
	c->user_data = sqe->user_data;
	user_index(w, c);
	c->svc = svc;
	c->start_ns = now;
	if (svc != CALL_NO_SVC)
		w->call_svcs[svc].inflight++;
	return 0;
}

/* call_wait queues the app call `sqe` behind its service's calls in flight. */
static int call_wait(struct worker *w, uint32_t slot, const struct cfg_call *cc,
		     const struct r2p2_sqe *sqe, const uint8_t *payload, uint16_t svc, uint64_t now)
{
	struct call_svc *s = &w->call_svcs[svc];
	uint32_t timeout_ms = sqe->timeout_ms ? sqe->timeout_ms : cc->timeout_ms;
	struct pending *p;

	if (w->calls_queued >= QUEUE_MAX) {
		w->queue_full++;
		return -ENOBUFS;
	}
	p = malloc(sizeof(*p) + sqe->len);
	if (!p)
		return -ENOBUFS;
	p->next = NULL;
	p->wapp = slot;
	p->wapp_gen = w->wapps[slot].gen;
	p->deadline = now + (uint64_t)timeout_ms * NS_PER_MS;
	p->sqe = *sqe;
	if (sqe->len)
		memcpy(p->payload, payload, sqe->len);
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	w->calls_queued++;
	w->calls_waited++;
	return 0;
}

void call_start(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe, const uint8_t *payload,
		uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	const struct cfg_call *cc = cfg_find_call(&w->cfg->cfg, sqe->service);
	uint16_t svc;
	int ret;

	if (w->draining || !cc) {
		call_fail_counted(w, wa, sqe->user_data, w->draining ? -ESHUTDOWN : -ENOENT);
		return;
	}
	svc = svc_find(w, cc);
	if (svc != CALL_NO_SVC &&
	    (w->call_svcs[svc].head || w->call_svcs[svc].inflight >= cc->max_inflight))
		ret = call_wait(w, slot, cc, sqe, payload, svc, now);
	else
		ret = call_launch(w, slot, cc, sqe, payload, svc, now);
	if (ret < 0) {
		/* a full table or queue is the app's to see; anything else is ours to say */
		if (ret != -ENOBUFS && now - w->last_sec_log >= NS_PER_S) {
			w->last_sec_log = now;
			log_warn("worker %u: call to %s (%s) failed before leaving: %s", w->id,
				 cc->name, sec_ops_for(cc->security)->name, strerror(-ret));
		}
		call_fail_counted(w, wa, sqe->user_data, ret);
		return;
	}
	wa->calls_inflight++;
}

/* pending_alive says whether the app that queued `p` is still the one in its lane. */
static bool pending_alive(const struct worker *w, const struct pending *p)
{
	const struct wapp *wa = &w->wapps[p->wapp];

	return wa->app && wa->gen == p->wapp_gen && !wa->removing;
}

/* pending_end fails the waiting call `p` with `err` (its app, if still there, is told). */
static void pending_end(struct worker *w, struct pending *p, int err)
{
	struct wapp *wa = &w->wapps[p->wapp];

	if (pending_alive(w, p)) {
		call_fail_counted(w, wa, p->sqe.user_data, err);
		wa->calls_inflight--;
		if (debug_allowed(w, now_ns()))
			log_debug("worker %u: call to %.48s ended while waiting for max_inflight: "
				  "%s",
				  w->id, p->sqe.service, strerror(-err));
	}
	free(p);
}

/* pending_resume starts the waiting call `p` of service `svc` (config `cc`, NULL: gone). */
static void pending_resume(struct worker *w, struct pending *p, const struct cfg_call *cc,
			   uint16_t svc, uint64_t now)
{
	int ret;

	if (!pending_alive(w, p) || !cc || now >= p->deadline || w->draining) {
		pending_end(w, p, w->draining ? -ESHUTDOWN : !cc ? -ENOENT : -ETIMEDOUT);
		return;
	}
	/* what is left of its timeout, from its submission */
	p->sqe.timeout_ms = (uint32_t)((p->deadline - now + NS_PER_MS - 1) / NS_PER_MS);
	ret = call_launch(w, p->wapp, cc, &p->sqe, p->payload, svc, now);
	if (ret < 0) {
		pending_end(w, p, ret);
		return;
	}
	free(p);
}

/* call_admit starts waiting calls of `svc` while its max_inflight allows. */
static void call_admit(struct worker *w, uint16_t svc, uint64_t now)
{
	struct call_svc *s = &w->call_svcs[svc];
	const struct cfg_call *cc = cfg_find_call(&w->cfg->cfg, s->name);

	while (s->head && (!cc || s->inflight < cc->max_inflight)) {
		struct pending *p = s->head;

		s->head = p->next;
		if (!s->head)
			s->tail = NULL;
		w->calls_queued--;
		pending_resume(w, p, cc, svc, now);
	}
}

void calls_expire_queued(struct worker *w, uint64_t now)
{
	for (uint16_t i = 0; i < CALL_SVCS && w->calls_queued; i++) {
		struct call_svc *s = &w->call_svcs[i];
		struct pending **pp = &s->head, *p, *last = NULL;

		while ((p = *pp)) {
			if (!w->draining && now < p->deadline && pending_alive(w, p)) {
				last = p;
				pp = &p->next;
				continue;
			}
			*pp = p->next;
			w->calls_queued--;
			pending_end(w, p, w->draining ? -ESHUTDOWN : -ETIMEDOUT);
		}
		s->tail = last;
	}
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

	/* through a router, the exchange goes on with the server that answered */
	a.dst = *eng_completing_peer(w->eng);
	c->args.dst = a.dst;
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

/*
 * take_status takes the extension block off the reply of an app call whose request
 * carried one: an error of the server app ends the call with -EREMOTEIO, its code in
 * `*out_code` and its message as the payload.
 */
static void take_status(struct sec_reply *r, uint32_t *out_code)
{
	int n = ext_read(r->out.data, r->out.len, out_code);

	if (n < 0) {
		*out_code = 0;
		r->status = -EBADMSG;
		r->why = "the response has no extension block";
		r->out.data = NULL;
		r->out.len = 0;
		return;
	}
	r->out.data += n;
	r->out.len -= (size_t)n;
	if (*out_code)
		r->status = -EREMOTEIO;
}

void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	uint32_t idx = (uint32_t)cookie, gen = (uint32_t)(cookie >> 32);
	struct sec_reply r = {0};
	uint32_t code = 0;
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
		if (r.status == 0 && c->sec.ext)
			take_status(&r, &code);
		break;
	}
	call_log(w, c, "failed", r.why);
	call_debug(w, c, &r);
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
		if (lane_post_aux(&wa->lane, R2P2_CQ_RESPONSE, r.status, c->user_data, 0, code,
				  r.out.data, r.out.len) < 0)
			w->cq_overflow_drops++;
	}
	uint16_t svc = c->svc;
	if (svc != CALL_NO_SVC && c->wapp < MAX_WAPPS)
		count_call(w, c, svc, r.status);
	call_release(w, c);
	if (svc != CALL_NO_SVC) {
		w->call_svcs[svc].inflight--;
		if (w->call_svcs[svc].head) /* only a call that waits needs the clock and config */
			call_admit(w, svc, now_ns());
	}
}

/*
 * cancel_pending takes the call `user_data` of lane `slot` out of its service's wait
 * queue and ends it with -ECANCELED; false when it is not waiting there.
 */
static bool cancel_pending(struct worker *w, uint32_t slot, uint64_t user_data)
{
	const struct wapp *wa = &w->wapps[slot];

	for (uint16_t i = 0; i < CALL_SVCS && w->calls_queued; i++) {
		struct call_svc *s = &w->call_svcs[i];
		struct pending **pp = &s->head, *p, *last = NULL;

		while ((p = *pp)) {
			if (p->wapp != slot || p->wapp_gen != wa->gen ||
			    p->sqe.user_data != user_data) {
				last = p;
				pp = &p->next;
				continue;
			}
			*pp = p->next;
			if (s->tail == p)
				s->tail = last;
			w->calls_queued--;
			pending_end(w, p, -ECANCELED);
			return true;
		}
	}
	return false;
}

/*
 * call_cancel ends the app's call `user_data` with -ECANCELED: in flight, the engine
 * completes it (on_complete tells the app, as for any end); waiting for max_inflight,
 * it leaves the queue. A call that already ended is left alone: its answer is on the
 * way, and the app gets exactly one completion either way. A request already at the
 * server may still run there (as with gRPC, cancelling stops the wait, not the
 * server).
 */
void call_cancel(struct worker *w, uint32_t slot, uint64_t user_data)
{
	const struct wapp *wa = &w->wapps[slot];

	for (uint32_t i = *user_bucket(w, slot, user_data); i != UINT32_MAX;
	     i = w->calls[i].next_user) {
		struct call *c = &w->calls[i];

		if (c->wapp == slot && c->wapp_gen == wa->gen && c->user_data == user_data) {
			eng_cancel(w->eng, call_cookie(w, c));
			return;
		}
	}
	cancel_pending(w, slot, user_data);
}
