// SPDX-License-Identifier: MIT
/*
 * The server exec table: a request the engine reassembled is opened by its
 * service's security mode, handed to an app serving the service (round-robin),
 * and remembered by its engine handle until the app answers, leaves, or holds
 * it past exec_timeout_ms. Open addressing with tombstones, power-of-two size.
 */
#include "worker_int.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"
#include "ext.h"

int execs_init(struct worker *w)
{
	w->exec_cap = 1024;
	w->exec = calloc(w->exec_cap, sizeof(*w->exec));
	return w->exec ? 0 : -ENOMEM;
}

static bool exec_live(const struct exec_req *e)
{
	return e->handle && e->handle != EXEC_TOMB;
}

void execs_free(struct worker *w)
{
	for (uint32_t i = 0; w->exec && i < w->exec_cap; i++)
		if (exec_live(&w->exec[i]))
			sec_exec_release(&w->exec[i].sec);
	free(w->exec);
	w->exec = NULL;
}

static struct exec_req *exec_find(struct worker *w, uint64_t handle, bool insert)
{
	uint32_t mask = w->exec_cap - 1;
	uint64_t h = handle * 0x9E3779B97F4A7C15ull;
	uint32_t i = (uint32_t)(h >> 32) & mask;
	struct exec_req *tomb = NULL;

	for (uint32_t n = 0; n < w->exec_cap; n++, i = (i + 1) & mask) {
		struct exec_req *e = &w->exec[i];
		if (e->handle == handle)
			return e;
		if (e->handle == EXEC_TOMB) {
			if (!tomb)
				tomb = e;
			continue;
		}
		if (e->handle == 0)
			return insert ? (tomb ? tomb : e) : NULL;
	}
	return insert ? tomb : NULL;
}

static void exec_remove(struct worker *w, struct exec_req *e)
{
	e->handle = EXEC_TOMB;
	w->exec_count--;
	w->exec_tombs++;
}

/* Rehash into a table twice as big when live entries fill half, or in place when
 * tombstones do, so lookups of absent handles always meet an empty slot soon. */
static bool exec_rehash(struct worker *w)
{
	uint32_t old_cap = w->exec_cap;
	uint32_t new_cap = (w->exec_count + 1) * 2 > old_cap ? old_cap * 2 : old_cap;
	struct exec_req *old = w->exec;
	struct exec_req *n = calloc(new_cap, sizeof(*n));
	if (!n)
		return false;
	w->exec = n;
	w->exec_cap = new_cap;
	w->exec_count = 0;
	w->exec_tombs = 0;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (exec_live(&old[i])) {
			*exec_find(w, old[i].handle, true) = old[i];
			w->exec_count++;
		}
	}
	free(old);
	return true;
}

/* exec_insert records that the app in `slot` holds the request `handle`. */
static void exec_insert(struct worker *w, uint64_t handle, uint32_t slot, unsigned sock,
			const struct sec_exec *x, bool ext)
{
	struct exec_req *e = exec_find(w, handle, true);

	if (e->handle == EXEC_TOMB)
		w->exec_tombs--;
	e->sec = *x;
	e->since = now_ns();
	e->handle = handle;
	e->wapp = slot;
	e->wapp_gen = w->wapps[slot].gen;
	e->sock = sock;
	e->ext = ext;
	w->exec_count++;
}

void exec_drop_where(struct worker *w, bool (*match)(const struct exec_req *e, const void *arg),
		     const void *arg, bool reject, uint64_t now)
{
	for (uint32_t i = 0; i < w->exec_cap && w->exec_count; i++) {
		struct exec_req *e = &w->exec[i];
		if (!exec_live(e) || !match(e, arg))
			continue;
		sec_exec_release(&e->sec);
		if (reject)
			eng_reject(w->eng, e->handle, now);
		exec_remove(w, e);
	}
}

/*
 * deliver hands a request to the next app serving the socket's port, round-robin,
 * with the caller's time left (`left_us`) when it sent an extension block (`ext`).
 */
static bool deliver(struct worker *w, unsigned sock, uint64_t handle, const struct sec_msg *req,
		    const struct sec_exec *x, bool ext, uint32_t left_us)
{
	struct wsock *s = &w->socks[sock];

	for (uint32_t n = 0; n < w->wapp_hi; n++) {
		uint32_t i = (w->rr_app + n) % w->wapp_hi;
		struct wapp *wa = &w->wapps[i];
		if (!wa->app || wa->removing || wa->lane.broken ||
		    !app_serves_port(wa->app, s->port))
			continue;
		if ((w->exec_count + w->exec_tombs + 1) * 2 > w->exec_cap && !exec_rehash(w))
			break;
		if (lane_post_aux(&wa->lane, R2P2_CQ_REQUEST, 0, handle, s->port, left_us,
				  req->data, req->len) < 0) {
			w->cq_overflow_drops++;
			continue; /* this app is saturated; another may take it */
		}
		exec_insert(w, handle, i, sock, x, ext);
		w->rr_app = i + 1;
		return true;
	}
	s->dropped_no_app++;
	return false;
}

/*
 * take_ext takes the extension block off the app request `m` when it has one (tls
 * and sealed always, inside their encryption; plain when the header says
 * R2P2_F_EXT): `*out_left_us` is the caller's time left, EXT_NO_DEADLINE without a
 * block. False for a request not to run: its block is malformed, or its caller's
 * time had run out when it sent it (nobody waits for the answer).
 */
static bool take_ext(struct wsock *s, uint8_t flags, struct sec_msg *m, bool *out_ext,
		     uint32_t *out_left_us)
{
	int n;

	*out_left_us = EXT_NO_DEADLINE;
	*out_ext = s->sec.ops->security != CFG_SEC_PLAIN || (flags & R2P2_F_EXT);
	if (!*out_ext)
		return true;
	n = ext_read(m->data, m->len, out_left_us);
	if (n < 0) {
		s->dropped_bad_ext++;
		return false;
	}
	if (*out_left_us == 0) {
		s->dropped_expired++;
		return false;
	}
	m->data += n;
	m->len -= (size_t)n;
	return true;
}

void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		unsigned policy, uint8_t flags, const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	struct wsock *s = sock < MAX_SOCKS ? &w->socks[sock] : NULL;
	struct sec_request rq = {.src = src,
				 .policy = policy,
				 .flags = flags,
				 .payload = payload,
				 .len = len,
				 .now = now_ns()};
	struct sec_exec x;
	struct sec_msg m;
	uint32_t left_us;
	bool ext;

	if (!s || s->fd < 0 || sock == 0 || w->draining || !s->sec.ops) {
		eng_reject(w->eng, handle, rq.now);
		return;
	}
	s->requests++;
	switch (s->sec.ops->open(&w->sec, &s->sec, &rq, &x, &m)) {
	case SEC_DELIVER:
		if (!take_ext(s, flags, &m, &ext, &left_us) ||
		    !deliver(w, sock, handle, &m, &x, ext, left_us)) {
			sec_exec_release(&x);
			eng_reject(w->eng, handle, rq.now);
		}
		break;
	case SEC_ANSWER:
		/* the security mode's own answer (a handshake flight, a refusal): limited */
		eng_answer(w->eng, handle, m.data, m.len, rq.now);
		break;
	case SEC_WRONG_MODE:
		/* A tls or sealed service never takes plaintext, and a plain one never takes
		 * encrypted frames. */
		s->dropped_wrong_mode++;
		eng_reject(w->eng, handle, rq.now);
		break;
	case SEC_REJECT:
		eng_reject(w->eng, handle, rq.now);
		break;
	}
}

void exec_respond(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe,
		  const uint8_t *payload, uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	struct exec_req *e = sqe->user_data ? exec_find(w, sqe->user_data, false) : NULL;
	struct sec_msg m;
	int ret;

	/* An app may only answer requests handed to it. */
	if (!e || e->wapp != slot || e->wapp_gen != wa->gen) {
		lane_post(&wa->lane, R2P2_CQ_ERROR, -ENOENT, sqe->user_data, 0, NULL, 0);
		return;
	}
	struct exec_req x = *e;
	uint32_t code = (sqe->flags & R2P2_SQE_ERROR) ? sqe->code : 0;
	const uint8_t *resp = payload;
	size_t len = sqe->len;

	exec_remove(w, e);
	if (!x.ext && code) {
		/* a caller without extensions (upstream R2P2) knows no status: the nearest
		 * thing it understands is a refusal, a DROP */
		sec_exec_release(&x.sec);
		eng_reject(w->eng, sqe->user_data, now);
		return;
	}
	if (x.ext) {
		/* the caller reads the status first: 0, or the app's error code */
		resp = ext_wrap(w, code, payload, len);
		len += EXT_LEN;
	}
	/* The response leaves in the mode its request came in. */
	ret = resp ? sec_seal(&w->sec, &w->socks[x.sock].sec, &x.sec, resp, len, &m) : -ENOMEM;
	sec_exec_release(&x.sec);
	if (ret == 0)
		ret = eng_respond(w->eng, sqe->user_data, m.data, m.len, now);
	else
		eng_reject(w->eng, sqe->user_data, now);
	if (x.ext)
		ext_wipe(w, sqe->len);
	if (ret < 0)
		lane_post(&wa->lane, R2P2_CQ_ERROR, ret, sqe->user_data, 0, NULL, 0);
}

static bool held_too_long(const struct exec_req *e, const void *arg)
{
	const uint64_t *cutoff = arg;
	return e->since < *cutoff;
}

/*
 * execs_expire forgets requests an app has held past exec_timeout_ms: the engine
 * has freed their state by then, so an answer could not be sent anyway, and a tls
 * exchange waiting on one would hold its SSL forever.
 */
void execs_expire(struct worker *w, uint64_t now)
{
	uint64_t limit = w->cfg->cfg.exec_timeout_ms * NS_PER_MS;
	uint64_t cutoff = now > limit ? now - limit : 0;

	if (w->exec_count)
		exec_drop_where(w, held_too_long, &cutoff, false, now);
}
