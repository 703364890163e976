// SPDX-License-Identifier: MIT
/*
 * engine_client.c: the engine's client role. Calls keyed by (sock, rid): rid choice,
 * the request's packets (the rest after the server's ACK), retransmission of the first
 * packet on timeout, and the response, reassembled and reported exactly once.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

static uint64_t call_hash(const struct eng *e, unsigned sock, uint16_t rid)
{
	uint64_t key = ((uint64_t)sock << 16) | rid;
	return siphash13(e->hkey, &key, sizeof(key));
}

static struct call *call_lookup(struct eng *e, unsigned sock, uint16_t rid)
{
	uint64_t hash = call_hash(e, sock, rid);
	for (struct hnode *n = htab_bucket(&e->calls, hash); n; n = n->next) {
		struct call *c = container_of(n, struct call, hnode);
		if (n->hash == hash && c->rid == rid && c->sock == sock)
			return c;
	}
	return NULL;
}

/* call_unlink takes `c` out of every engine structure; it stays allocated. */
static void call_unlink(struct eng *e, struct call *c)
{
	tmr_disarm(e, &c->tmr);
	htab_remove(&e->calls, &c->hnode);
	if (c->prev)
		c->prev->next = c->next;
	else
		e->calls_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	e->num_calls--;
}

/* call_relink puts an unlinked call back, its response forgotten, its deadline kept. */
static void call_relink(struct eng *e, struct call *c)
{
	rasm_cleanup(&c->rasm);
	memset(&c->rasm, 0, sizeof(c->rasm));
	htab_insert(&e->calls, &c->hnode, call_hash(e, c->sock, c->rid));
	c->next = e->calls_head;
	if (c->next)
		c->next->prev = c;
	e->calls_head = c;
	e->num_calls++;
	tmr_arm(e, &c->tmr, c->tmr.deadline);
}

void eng_keep_waiting(struct eng *e)
{
	e->keep_call = true;
}

/*
 * call_complete reports the end of an unlinked call and frees it. The call
 * is out of every table first, so the callback may start new calls (even one
 * reusing this rid) or cancel others. A callback that refuses a response or a
 * DROP (eng_keep_waiting) gets the call back in place instead.
 */
static void call_complete(struct eng *e, struct call *c, int status, const uint8_t *payload,
			  size_t len)
{
	switch (status) {
	case 0:
		e->stats.calls_ok++;
		break;
	case -ETIMEDOUT:
		e->stats.calls_timeout++;
		break;
	case -ECONNREFUSED:
		e->stats.calls_dropped++;
		break;
	default:
		e->stats.calls_failed++;
		break;
	}
	if (status != 0 && c->rasm.num_recv)
		e->stats.partial_gc++;
	e->completing_rid = c->rid;
	e->completing_sends = c->sends;
	e->completing_peer = c->has_from ? c->from : c->peer_fixed ? c->peer : c->dst;
	e->keep_call = false;
	e->ops->complete(e->ctx, c->cookie, status, payload, len);
	if (e->keep_call && (status == 0 || status == -ECONNREFUSED) && !e->freeing) {
		e->keep_call = false;
		if (status == 0)
			e->stats.calls_ok--;
		else
			e->stats.calls_dropped--;
		e->stats.rx_unauthentic++;
		call_relink(e, c);
		return;
	}
	e->keep_call = false;
	rasm_cleanup(&c->rasm);
	msg_free(c->req, c->req_inline);
	pool_put(&e->call_pool, c);
}

void call_finish(struct eng *e, struct call *c, int status, const uint8_t *payload, size_t len)
{
	call_unlink(e, c);
	call_complete(e, c, status, payload, len);
}

static void call_send(struct eng *e, struct call *c, const struct r2p2_addr *dst, uint32_t idx)
{
	struct msg_out m = {
	    .type = R2P2_REQUEST,
	    .policy = c->policy,
	    .free_flags = c->flags,
	    .enc_count = c->flags != 0,
	    .rid = c->rid,
	    .msg = c->req,
	    .len = c->req_len,
	    .head_len = R2P2_MIN_PAYLOAD,
	    .num_pkts = c->num_pkts,
	};
	send_msg_pkt(e, c->sock, dst, &m, idx);
}

static void call_fix_peer(struct call *c, const struct r2p2_addr *src)
{
	if (!c->peer_fixed) {
		c->peer = *src;
		c->peer_fixed = true;
	}
}

static void call_response(struct eng *e, struct call *c, const struct r2p2_addr *src,
			  const struct r2p2_hdr *h, const uint8_t *payload, size_t n)
{
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);

	if (single) {
		if (ntohs(h->p_order) != 1 || n > R2P2_MAX_PAYLOAD || c->rasm.num_recv) {
			e->stats.rx_bad_order++;
			return;
		}
		if (n > e->cfg.max_msg_len) {
			e->stats.rx_too_big++;
			call_finish(e, c, -EMSGSIZE, NULL, 0);
			return;
		}
		call_finish(e, c, 0, payload, n);
		return;
	}
	/* Responses are not charged to max_reassembly_bytes: they answer our own calls. */
	if (!c->rasm.bits_cap)
		rasm_init(&c->rasm, R2P2_MAX_PAYLOAD,
			  rasm_max_pkts(e->cfg.max_msg_len, R2P2_MAX_PAYLOAD), false, NULL);
	switch (rasm_add(&c->rasm, h, payload, n, e->cfg.max_msg_len)) {
	case RASM_MORE:
		call_fix_peer(c, src);
		return;
	case RASM_DONE:
		call_finish(e, c, 0, c->rasm.buf, c->rasm.len);
		return;
	case RASM_DUP:
		e->stats.rx_duplicate++;
		return;
	case RASM_BAD:
		e->stats.rx_bad_order++;
		return;
	case RASM_TOO_BIG:
		e->stats.rx_too_big++;
		call_finish(e, c, -EMSGSIZE, NULL, 0);
		return;
	case RASM_NOMEM:
	case RASM_OVER:
		call_finish(e, c, -ENOMEM, NULL, 0);
		return;
	}
}

void cli_input(struct eng *e, unsigned sock, const struct r2p2_addr *src, const struct r2p2_hdr *h,
	       const uint8_t *pkt, size_t len)
{
	const uint8_t *payload = pkt + R2P2_HDR_LEN;
	size_t n = len - R2P2_HDR_LEN;
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	struct call *c = call_lookup(e, sock, ntohs(h->rid));

	if (!c || (c->peer_fixed && !addr_eq(&c->peer, src))) {
		e->stats.rx_unmatched++;
		return;
	}
	c->from = *src;
	c->has_from = true;
	if ((h->flags & R2P2_F_FREE_MASK) != c->flags) {
		/* Not in the call's mode (a plain answer to an encrypted call, or the reverse). */
		e->stats.rx_bad_header++;
		return;
	}
	switch (r2p2_hdr_type(h)) {
	case R2P2_RESPONSE:
		call_response(e, c, src, h, payload, n);
		return;
	case R2P2_ACK:
		if (!single || ntohs(h->p_order) != 1) {
			e->stats.rx_bad_order++;
			return;
		}
		if (n == R2P2_COOKIE_PAYLOAD_LEN &&
		    memcmp(payload, R2P2_CHALLENGE_TAG, R2P2_COOKIE_TAG_LEN) == 0) {
			/* the server holds back a resend until we prove we hear it: echo */
			send_cookie(e, sock, c->peer_fixed ? &c->peer : src, c->rid, c->flags,
				    R2P2_ECHO_TAG, payload + R2P2_COOKIE_TAG_LEN);
			e->stats.amp_echoed++;
		} else if (c->num_pkts == 1) {
			e->stats.rx_unmatched++;
			return;
		}
		if (c->num_pkts == 1)
			return;
		/*
		 * The rest goes to whoever ACKed (with a router, the server it
		 * picked). A duplicate ACK means the server is still missing
		 * packets after our retransmitted first one: send them all again.
		 */
		call_fix_peer(c, src);
		for (uint32_t i = 1; i < c->num_pkts; i++)
			call_send(e, c, &c->peer, i);
		return;
	case R2P2_DROP:
		if (!single || ntohs(h->p_order) != 1) {
			e->stats.rx_bad_order++;
			return;
		}
		call_finish(e, c, -ECONNREFUSED, NULL, 0);
		return;
	}
}

void call_expire(struct eng *e, struct call *c, uint64_t now)
{
	if (c->retries_left == 0) {
		call_finish(e, c, -ETIMEDOUT, NULL, 0);
		return;
	}
	/*
	 * Resend the first packet only: a server still reassembling re-ACKs (and
	 * we resend the rest), one that already answered resends its cached
	 * response, one that never saw it starts over.
	 */
	c->retries_left--;
	e->stats.retransmits++;
	c->sends++;
	call_send(e, c, &c->dst, 0);
	tmr_arm(e, &c->tmr, now + c->timeout_ns);
}

uint16_t eng_completing_rid(const struct eng *e)
{
	return e->completing_rid;
}

const struct r2p2_addr *eng_completing_peer(const struct eng *e)
{
	return &e->completing_peer;
}

uint32_t eng_completing_sends(const struct eng *e)
{
	return e->completing_sends;
}

void eng_set_next_rid(struct eng *e, uint16_t rid)
{
	e->next_rid = rid;
}

int eng_call(struct eng *e, const struct eng_call_args *args, uint64_t now)
{
	struct call *c;
	uint16_t rid = 0;

	if (!args || (args->len && !args->payload) || !args->timeout_ns || args->policy > 0x0F ||
	    (args->dst.family != AF_INET && args->dst.family != AF_INET6) ||
	    (args->flags & ~R2P2_F_FREE_MASK) ||
	    ((args->flags & ~R2P2_F_EXT) && !e->cfg.allow_flags))
		return -EINVAL;
	if (e->freeing)
		return -ECANCELED;
	/* A request's first packet never says 0xFFFF as a count: that value means "unknown". */
	if (args->len > e->cfg.max_msg_len ||
	    msg_num_pkts(args->len, R2P2_MIN_PAYLOAD) >= R2P2_MAX_PACKETS)
		return -EMSGSIZE;
	if (e->num_calls >= e->cfg.max_client_calls)
		return -ENOBUFS;
	if (heap_reserve(e, e->heap_len + 1) < 0)
		return -ENOMEM;

	/*
	 * Sequential rids, skipping the ones in flight on this socket: a rid is
	 * reused as late as possible, so late packets of an old call are not
	 * taken for a new one. max_client_calls <= 32768 leaves a free rid.
	 */
	if (args->use_rid) {
		rid = args->rid;
		if (call_lookup(e, args->sock, rid))
			return -EBUSY;
	} else {
		for (uint32_t i = 0; i <= 0xFFFF; i++) {
			rid = e->next_rid++;
			if (!call_lookup(e, args->sock, rid))
				break;
		}
	}

	c = pool_get(&e->call_pool, &e->stats.allocs);
	if (!c)
		return -ENOMEM;
	c->req = msg_copy(e, c->req_inline, CALL_INLINE, args->payload, args->len);
	if (!c->req) {
		pool_put(&e->call_pool, c);
		return -ENOMEM;
	}
	c->req_len = args->len;
	c->num_pkts = msg_num_pkts(args->len, R2P2_MIN_PAYLOAD);
	c->tmr.kind = TMR_CALL;
	c->tmr.heap_idx = TMR_IDLE;
	c->cookie = args->cookie;
	c->timeout_ns = args->timeout_ns;
	addr_norm(&c->dst, &args->dst);
	if (!args->via_router) {
		c->peer = c->dst;
		c->peer_fixed = true;
	}
	c->sock = args->sock;
	c->rid = rid;
	c->policy = (uint8_t)args->policy;
	c->flags = args->flags;
	c->retries_left = args->max_retries;

	htab_insert(&e->calls, &c->hnode, call_hash(e, c->sock, rid));
	c->next = e->calls_head;
	if (c->next)
		c->next->prev = c;
	e->calls_head = c;
	e->num_calls++;
	e->stats.calls_started++;

	c->sends = 1;
	call_send(e, c, &c->dst, 0);
	tmr_arm(e, &c->tmr, now + c->timeout_ns);
	return 0;
}

int eng_cancel(struct eng *e, uint64_t cookie)
{
	struct call *todo = NULL, *c, *next;
	int n = 0;

	/* Unlink all first: the callbacks may start or cancel calls while we report. */
	for (c = e->calls_head; c; c = next) {
		next = c->next;
		if (c->cookie != cookie)
			continue;
		call_unlink(e, c);
		c->next = todo;
		todo = c;
	}
	while (todo) {
		c = todo;
		todo = c->next;
		call_complete(e, c, -ECANCELED, NULL, 0);
		n++;
	}
	return n;
}
