// SPDX-License-Identifier: MIT
/*
 * engine_server.c: the engine's server role. Request states keyed by (source, rid) and
 * named by handles, from the first packet through reassembly (ACKed), execution by the app
 * and the cached answer resent to retransmitted requests until the dedup window ends.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/socket.h>

static uint64_t srv_hash(const struct eng *e, const struct r2p2_addr *src, uint16_t rid)
{
	uint8_t key[sizeof(*src) + sizeof(rid)];

	memcpy(key, src, sizeof(*src));
	memcpy(key + sizeof(*src), &rid, sizeof(rid));
	return siphash13(e->hkey, key, sizeof(key));
}

static struct sstate *srv_lookup(struct eng *e, const struct r2p2_addr *src, uint16_t rid)
{
	uint64_t hash = srv_hash(e, src, rid);
	for (struct hnode *n = htab_bucket(&e->servers, hash); n; n = n->next) {
		struct sstate *st = container_of(n, struct sstate, hnode);
		if (n->hash == hash && st->rid == rid && addr_eq(&st->src, src))
			return st;
	}
	return NULL;
}

static uint64_t srv_handle(const struct eng *e, const struct sstate *st)
{
	return ((uint64_t)e->slots[st->slot].gen << 32) | st->slot;
}

static struct sstate *srv_from_handle(struct eng *e, uint64_t handle)
{
	uint32_t slot = (uint32_t)handle, gen = (uint32_t)(handle >> 32);
	if (slot >= e->num_slots || e->slots[slot].gen != gen)
		return NULL;
	return e->slots[slot].st;
}

static void cache_unlink(struct eng *e, struct sstate *st)
{
	if (st->cache_prev)
		st->cache_prev->cache_next = st->cache_next;
	else
		e->cache_head = st->cache_next;
	if (st->cache_next)
		st->cache_next->cache_prev = st->cache_prev;
	else
		e->cache_tail = st->cache_prev;
	st->cache_prev = st->cache_next = NULL;
}

/* src_key returns `src` without its port: quotas are per address. */
static struct r2p2_addr src_key(const struct r2p2_addr *src)
{
	struct r2p2_addr k = *src;

	k.port = 0;
	return k;
}

/* srcq_lookup returns the half-open queue of `src`'s address, or NULL. */
static struct srcq *srcq_lookup(struct eng *e, const struct r2p2_addr *src)
{
	struct r2p2_addr k = src_key(src);
	uint64_t hash = siphash13(e->hkey, &k, sizeof(k));

	for (struct hnode *n = htab_bucket(&e->sources, hash); n; n = n->next) {
		struct srcq *q = container_of(n, struct srcq, hnode);
		if (n->hash == hash && addr_eq(&q->addr, &k))
			return q;
	}
	return NULL;
}

/* ho_append puts `st` last (most recently active) on both half-open lists. */
static void ho_append(struct eng *e, struct sstate *st)
{
	struct srcq *q = st->srcq;

	st->ho_prev = e->ho_tail;
	st->ho_next = NULL;
	if (e->ho_tail)
		e->ho_tail->ho_next = st;
	else
		e->ho_head = st;
	e->ho_tail = st;
	st->src_prev = q->tail;
	st->src_next = NULL;
	if (q->tail)
		q->tail->src_next = st;
	else
		q->head = st;
	q->tail = st;
}

/* ho_remove takes `st` off both half-open lists. */
static void ho_remove(struct eng *e, struct sstate *st)
{
	struct srcq *q = st->srcq;

	if (st->ho_prev)
		st->ho_prev->ho_next = st->ho_next;
	else
		e->ho_head = st->ho_next;
	if (st->ho_next)
		st->ho_next->ho_prev = st->ho_prev;
	else
		e->ho_tail = st->ho_prev;
	if (st->src_prev)
		st->src_prev->src_next = st->src_next;
	else
		q->head = st->src_next;
	if (st->src_next)
		st->src_next->src_prev = st->src_prev;
	else
		q->tail = st->src_prev;
}

/* ho_link counts `st` as half-open for its source: 0 or -ENOMEM. */
static int ho_link(struct eng *e, struct sstate *st)
{
	struct srcq *q = srcq_lookup(e, &st->src);

	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q)
			return -ENOMEM;
		q->addr = src_key(&st->src);
		htab_insert(&e->sources, &q->hnode, siphash13(e->hkey, &q->addr, sizeof(q->addr)));
	}
	q->num++;
	st->srcq = q;
	ho_append(e, st);
	return 0;
}

/* ho_unlink ends `st`'s half-open life (if it has one); its source's queue goes at 0. */
static void ho_unlink(struct eng *e, struct sstate *st)
{
	struct srcq *q = st->srcq;

	if (!q)
		return;
	ho_remove(e, st);
	st->srcq = NULL;
	if (--q->num == 0) {
		htab_remove(&e->sources, &q->hnode);
		free(q);
	}
}

/* ho_touch makes `st` the most recently active half-open request. */
static void ho_touch(struct eng *e, struct sstate *st)
{
	ho_remove(e, st);
	ho_append(e, st);
}

void srv_free(struct eng *e, struct sstate *st)
{
	struct sslot *s = &e->slots[st->slot];

	tmr_disarm(e, &st->tmr);
	htab_remove(&e->servers, &st->hnode);
	ho_unlink(e, st);
	if (st->phase == SP_CACHED)
		cache_unlink(e, st);
	s->st = NULL;
	if (++s->gen == 0) /* handles are never 0 */
		s->gen = 1;
	s->next_free = e->free_slot;
	e->free_slot = st->slot;
	rasm_cleanup(&st->rasm);
	msg_free(st->resp, st->resp_inline);
	pool_put(&e->sstate_pool, st);
	e->num_sstates--;
}

#define EVICT_SCAN 32 /* half-open requests looked at to pick one to evict */

/*
 * memory_victim picks the half-open request to evict for memory: among the
 * EVICT_SCAN least recently active ones other than `st`, the one whose source holds
 * the most half-open requests (the oldest of those), so a source that floods pays
 * for its own flood while a client with one request in reassembly keeps it.
 */
static struct sstate *memory_victim(struct eng *e, const struct sstate *st)
{
	struct sstate *best = NULL;
	unsigned n = 0;

	for (struct sstate *v = e->ho_head; v && n < EVICT_SCAN; v = v->ho_next) {
		if (v == st)
			continue;
		n++;
		if (!best || (v->srcq && best->srcq && v->srcq->num > best->srcq->num))
			best = v;
	}
	return best;
}

/*
 * srv_make_room frees a state for a new one when max_server_states are held:
 * a half-open request (memory_victim: of the source holding the most; its client
 * retransmits its first packet and starts over), else the oldest cached answer (a retransmission of
 * that request would run it again), never an executing request. Returns false
 * when every state is executing.
 */
static bool srv_make_room(struct eng *e)
{
	struct sstate *victim = e->ho_head ? memory_victim(e, NULL) : e->cache_head;

	if (!victim)
		return false;
	e->stats.evict_full++;
	srv_free(e, victim);
	return true;
}

/*
 * srv_new creates the state of a new request, or returns NULL when the bound
 * max_server_states is reached and nothing can be evicted (srv_make_room) or
 * memory is short: the caller then answers DROP.
 */
static struct sstate *srv_new(struct eng *e, unsigned sock, const struct r2p2_addr *src,
			      uint16_t rid, uint8_t policy, uint8_t flags, uint64_t first_hash)
{
	struct sstate *st;

	if (e->num_sstates >= e->cfg.max_server_states && !srv_make_room(e))
		return NULL;
	if (heap_reserve(e, e->heap_len + 1) < 0)
		return NULL;
	if (e->free_slot == SLOT_NONE) {
		uint32_t n = e->num_slots ? e->num_slots * 2 : 64;
		if (n > e->cfg.max_server_states)
			n = e->cfg.max_server_states;
		struct sslot *s = realloc(e->slots, n * sizeof(*s));
		if (!s)
			return NULL;
		for (uint32_t i = e->num_slots; i < n; i++)
			s[i] = (struct sslot){
			    .st = NULL, .gen = 1, .next_free = i + 1 < n ? i + 1 : SLOT_NONE};
		e->slots = s;
		e->free_slot = e->num_slots;
		e->num_slots = n;
	}
	st = pool_get(&e->sstate_pool, &e->stats.allocs);
	if (!st)
		return NULL;
	st->tmr.kind = TMR_SERVER;
	st->tmr.heap_idx = TMR_IDLE;
	st->src = *src;
	st->first_hash = first_hash;
	st->sock = sock;
	st->rid = rid;
	st->policy = policy;
	st->flags = flags;
	st->slot = e->free_slot;
	e->free_slot = e->slots[st->slot].next_free;
	e->slots[st->slot].st = st;
	htab_insert(&e->servers, &st->hnode, srv_hash(e, src, rid));
	e->num_sstates++;
	return st;
}

/* answer_msg describes the cached RESPONSE of `st` for send_msg_pkt. */
static struct msg_out answer_msg(const struct sstate *st)
{
	/* Responses keep the plain framing (count first) in every mode. */
	return (struct msg_out){
	    .type = R2P2_RESPONSE,
	    .policy = R2P2_FIXED_ROUTE,
	    .free_flags = st->flags,
	    .rid = st->rid,
	    .msg = st->resp,
	    .len = st->resp_len,
	    .head_len = R2P2_MAX_PAYLOAD,
	    .num_pkts = msg_num_pkts(st->resp_len, R2P2_MAX_PAYLOAD),
	};
}

/* answer_num_pkts returns how many packets the cached answer of `st` takes (DROP: 1). */
static uint32_t answer_num_pkts(const struct sstate *st)
{
	return st->resp_type == R2P2_DROP ? 1 : msg_num_pkts(st->resp_len, R2P2_MAX_PAYLOAD);
}

#define DROP_PKT_LEN (R2P2_HDR_LEN + 4) /* send_drop's datagram: the header and "DROP" */

/* answer_pkt_len returns the datagram size of packet `idx` of the cached answer of `st`. */
static size_t answer_pkt_len(const struct sstate *st, uint32_t idx)
{
	size_t left;

	if (st->resp_type == R2P2_DROP)
		return DROP_PKT_LEN;
	left = st->resp_len - pkt_off(idx, R2P2_MAX_PAYLOAD);
	return R2P2_HDR_LEN + (left < R2P2_MAX_PAYLOAD ? left : R2P2_MAX_PAYLOAD);
}

/* srv_send_answer_pkt sends packet `idx` of the cached answer of `st`. */
static void srv_send_answer_pkt(struct eng *e, struct sstate *st, uint32_t idx)
{
	struct msg_out m;

	if (st->resp_type == R2P2_DROP) {
		send_drop(e, st->sock, &st->src, st->rid, st->flags);
		return;
	}
	m = answer_msg(st);
	send_msg_pkt(e, st->sock, &st->src, &m, idx);
}

/* srv_send_answer sends the whole cached answer of `st` (its first sending: not limited). */
static void srv_send_answer(struct eng *e, struct sstate *st)
{
	uint32_t num = answer_num_pkts(st);

	for (uint32_t i = 0; i < num; i++)
		srv_send_answer_pkt(e, st, i);
}

/*
 * The amplification limit (docs/PROTOCOL.md, "Amplification limit"), after QUIC's
 * (RFC 9000, section 8): a duplicate first packet costs its sender a few bytes but
 * used to draw the whole cached answer, toward whatever source address it claimed.
 * Toward an address that has not echoed the state's cookie (srv_validate), what a
 * state sends besides the app's answer (resends, re-ACKs, challenges, and answers of
 * the transport's own) stays within AMP_FACTOR times the request bytes it received
 * since it was created or answered; and a duplicate first packet draws a resend at
 * most once per dedup_window / AMP_RATE_DIV. An R2P2 retransmission cannot be padded
 * as a QUIC Initial is: a genuine client that lost an answer larger than that proves
 * its address by echoing a challenge cookie instead, one round trip.
 */
#define AMP_FACTOR 3
#define AMP_RATE_DIV 20
#define ACK_PKT_LEN (R2P2_HDR_LEN + 3) /* send_ack's datagram: the header and "ACK" */

#define CHALLENGE_PKT_LEN (R2P2_HDR_LEN + R2P2_COOKIE_PAYLOAD_LEN)

/* amp_credit returns how many more bytes `st` may send in answer to duplicates. */
static uint64_t amp_credit(const struct sstate *st)
{
	if (st->amp_valid)
		return UINT64_MAX;
	uint64_t cap = AMP_FACTOR * st->amp_in;

	return cap > st->amp_out ? cap - st->amp_out : 0;
}

/* amp_rate_ok says whether a duplicate first packet at `now` may draw a resend (and takes it). */
static bool amp_rate_ok(const struct eng *e, struct sstate *st, uint64_t now)
{
	if (now < st->amp_next)
		return false;
	st->amp_next = now + e->cfg.dedup_window_ns / AMP_RATE_DIV;
	return true;
}

/* amp_reset starts the limit's count over: `st` was just answered (a validation stays). */
static void amp_reset(struct sstate *st)
{
	st->amp_in = st->amp_out = st->amp_next = 0;
	st->amp_cursor = st->amp_left = 0;
}

/*
 * amp_challenge asks the client of `st` to prove it receives at its address: an ACK
 * carrying a random cookie, which a genuine client echoes (engine_client.c). A spoofed
 * victim has no call with this rid and echoes nothing. Sent ahead of the packets the
 * credit pays for, so that it always goes out; false when even it does not fit.
 */
static bool amp_challenge(struct eng *e, struct sstate *st)
{
	if (amp_credit(st) < CHALLENGE_PKT_LEN)
		return false;
	if (!st->amp_has_cookie) {
		if (getrandom(st->amp_cookie, sizeof(st->amp_cookie), 0) !=
		    (ssize_t)sizeof(st->amp_cookie))
			return false;
		st->amp_has_cookie = true;
	}
	send_cookie(e, st->sock, &st->src, st->rid, st->flags, R2P2_CHALLENGE_TAG, st->amp_cookie);
	st->amp_out += CHALLENGE_PKT_LEN;
	return true;
}

/* srv_resend_some sends the held-back packets of the resend of `st` that the credit pays for. */
static void srv_resend_some(struct eng *e, struct sstate *st)
{
	uint32_t num = answer_num_pkts(st);

	while (st->amp_left) {
		size_t n = answer_pkt_len(st, st->amp_cursor);
		if (n > amp_credit(st))
			break;
		srv_send_answer_pkt(e, st, st->amp_cursor);
		st->amp_out += n;
		st->amp_cursor = (st->amp_cursor + 1) % num;
		st->amp_left--;
	}
}

/* amp_fits says whether the credit of `st` pays for its whole pending resend. */
static bool amp_fits(const struct sstate *st)
{
	uint64_t need = 0, credit = amp_credit(st);
	uint32_t num = answer_num_pkts(st);

	for (uint32_t i = 0; i < st->amp_left && need <= credit; i++)
		need += answer_pkt_len(st, (st->amp_cursor + i) % num);
	return need <= credit;
}

/*
 * srv_resend answers a duplicate first packet of the answered `st`: its whole answer
 * again, from where the last resend stopped. Toward an address not validated, when
 * the credit does not pay for all of it, a challenge goes first (amp_challenge), then
 * what the credit pays for; the rest is held back (amp_limited) until the client
 * echoes the cookie (srv_validate) or sends more request bytes (a client whose request
 * had several packets resends them all when ACKed).
 */
static void srv_resend(struct eng *e, struct sstate *st, uint64_t now)
{
	uint32_t num = answer_num_pkts(st);

	if (!amp_rate_ok(e, st, now)) {
		e->stats.amp_limited += num;
		return;
	}
	st->amp_left = num;
	if (!amp_fits(st))
		amp_challenge(e, st);
	srv_resend_some(e, st);
	e->stats.amp_limited += st->amp_left;
}

/* cookie_eq compares two cookies in constant time. */
static bool cookie_eq(const uint8_t a[R2P2_COOKIE_LEN], const uint8_t b[R2P2_COOKIE_LEN])
{
	uint8_t d = 0;

	for (size_t i = 0; i < R2P2_COOKIE_LEN; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

void srv_validate(struct eng *e, const struct r2p2_addr *src, const struct r2p2_hdr *h,
		  const uint8_t cookie[R2P2_COOKIE_LEN])
{
	struct sstate *st = srv_lookup(e, src, ntohs(h->rid));

	if (!st || !st->amp_has_cookie || (h->flags & R2P2_F_FREE_MASK) != st->flags ||
	    !cookie_eq(st->amp_cookie, cookie)) {
		e->stats.rx_unmatched++;
		return;
	}
	if (!st->amp_valid) {
		st->amp_valid = true;
		e->stats.amp_validated++;
	}
	/* one echo sends what was held back once; later duplicates are rate-limited */
	if (st->phase == SP_CACHED)
		srv_resend_some(e, st);
}

/* srv_reack answers a duplicate first packet of `st`, still reassembling, with an ACK. */
static void srv_reack(struct eng *e, struct sstate *st, uint64_t now)
{
	if (amp_credit(st) < ACK_PKT_LEN || !amp_rate_ok(e, st, now)) {
		e->stats.amp_limited++;
		return;
	}
	send_ack(e, st->sock, &st->src, st->rid, st->flags);
	st->amp_out += ACK_PKT_LEN;
}

/*
 * srv_send_first sends the answer of `st` the first time: whole, or, for an answer of
 * the transport's own (amp_strict), within the limit like a resend, the request's bytes
 * paying for it.
 */
static void srv_send_first(struct eng *e, struct sstate *st)
{
	if (!st->amp_strict) {
		amp_reset(st);
		srv_send_answer(e, st);
		return;
	}
	st->amp_out = st->amp_next = 0;
	st->amp_cursor = 0;
	st->amp_left = answer_num_pkts(st);
	if (!amp_fits(st))
		amp_challenge(e, st);
	srv_resend_some(e, st);
	e->stats.amp_limited += st->amp_left;
}

/* srv_answer moves `st` to SP_CACHED with its answer already stored, and sends it. */
static void srv_answer(struct eng *e, struct sstate *st, uint8_t type, uint64_t now)
{
	ho_unlink(e, st);
	rasm_cleanup(&st->rasm);
	st->phase = SP_CACHED;
	st->resp_type = type;
	st->cache_prev = e->cache_tail;
	st->cache_next = NULL;
	if (e->cache_tail)
		e->cache_tail->cache_next = st;
	else
		e->cache_head = st;
	e->cache_tail = st;
	/* An answer is kept for one dedup window. Answers join the FIFO in time order with
	 * one window each, so it is ordered by expiry too: eng_tick expires from its head
	 * and the state leaves the heap, which keeps only what is in progress. */
	tmr_disarm(e, &st->tmr);
	st->tmr.deadline = now + e->cfg.dedup_window_ns;
	srv_send_first(e, st);
	send_feedback(e, st->sock, &st->src, st->rid);
}

/* srv_refuse answers DROP to a request we keep no state for. */
static void srv_refuse(struct eng *e, unsigned sock, const struct r2p2_addr *src, uint16_t rid,
		       uint8_t free_flags)
{
	send_drop(e, sock, src, rid, free_flags);
	send_feedback(e, sock, src, rid);
}

/*
 * srv_deliver hands a complete request up. `payload` points into the packet
 * (single-packet) or into st->rasm.buf, which is detached first: the callback
 * may answer synchronously, and that must not free what it is reading.
 */
static void srv_deliver(struct eng *e, struct sstate *st, const uint8_t *payload, size_t len,
			uint64_t now)
{
	struct r2p2_addr src = st->src;
	uint8_t *buf = st->rasm.buf;

	st->rasm.buf = NULL;
	ho_unlink(e, st);
	rasm_cleanup(&st->rasm);
	st->phase = SP_EXECUTING;
	tmr_arm(e, &st->tmr, now + e->cfg.exec_timeout_ns);
	e->stats.req_received++;
	if (e->ops->request_ex)
		e->ops->request_ex(e->ctx, st->sock, srv_handle(e, st), &src, st->policy, st->flags,
				   payload, len);
	else
		e->ops->request(e->ctx, st->sock, srv_handle(e, st), &src, st->policy, payload,
				len);
	free(buf);
}

/*
 * srv_dup_first handles a byte-identical copy, `len` bytes, of the first packet of a
 * request we know; what it draws is limited (srv_resend, srv_reack).
 */
static void srv_dup_first(struct eng *e, struct sstate *st, size_t len, uint64_t now)
{
	st->amp_in += len;
	switch (st->phase) {
	case SP_REASSEMBLING:
		/* The client retransmits because our ACK or some later packet got lost. */
		e->stats.rx_duplicate++;
		srv_reack(e, st, now);
		break;
	case SP_EXECUTING:
		e->stats.rx_duplicate++;
		break;
	case SP_CACHED:
		e->stats.req_retransmit++;
		srv_resend(e, st, now);
		break;
	}
}

/*
 * srv_rasm_add adds a packet to the reassembly of `st` (the most recently active
 * half-open request): while that would pass max_reassembly_bytes, another half-open
 * request is evicted first (memory_victim).
 */
static enum rasm_res srv_rasm_add(struct eng *e, struct sstate *st, const struct r2p2_hdr *h,
				  const uint8_t *payload, size_t n)
{
	enum rasm_res res;

	while ((res = rasm_add(&st->rasm, h, payload, n, e->cfg.max_msg_len)) == RASM_OVER) {
		struct sstate *victim = memory_victim(e, st);
		if (!victim)
			break;
		e->stats.evict_memory++;
		srv_free(e, victim);
	}
	return res;
}

/* srv_rest_input takes a packet after the first of a multi-packet request (sent after our ACK). */
static void srv_rest_input(struct eng *e, const struct r2p2_addr *src, const struct r2p2_hdr *h,
			   const uint8_t *payload, size_t n, uint64_t now)
{
	struct sstate *st = srv_lookup(e, src, ntohs(h->rid));

	if (!st) {
		e->stats.rx_unmatched++;
		return;
	}
	if ((h->flags & R2P2_F_FREE_MASK) != st->flags) {
		/* All packets of a message carry the same free bits. */
		e->stats.rx_bad_order++;
		return;
	}
	st->amp_in += R2P2_HDR_LEN + n;
	if (st->phase != SP_REASSEMBLING) {
		e->stats.rx_duplicate++;
		/* Resent after our ACK of a duplicate (srv_resend): it pays for what was held back.
		 */
		if (st->phase == SP_CACHED)
			srv_resend_some(e, st);
		return;
	}
	ho_touch(e, st);
	switch (srv_rasm_add(e, st, h, payload, n)) {
	case RASM_MORE:
		tmr_arm(e, &st->tmr, now + e->cfg.reassembly_timeout_ns);
		return;
	case RASM_DONE:
		srv_deliver(e, st, st->rasm.buf, st->rasm.len, now);
		return;
	case RASM_DUP:
		e->stats.rx_duplicate++;
		return;
	case RASM_BAD:
		e->stats.rx_bad_order++;
		return;
	case RASM_TOO_BIG:
		e->stats.rx_too_big++;
		srv_answer(e, st, R2P2_DROP, now);
		return;
	case RASM_NOMEM:
		e->stats.rx_no_state++;
		srv_answer(e, st, R2P2_DROP, now);
		return;
	case RASM_OVER:
		e->stats.rx_no_memory++;
		srv_answer(e, st, R2P2_DROP, now);
		return;
	}
}

/* What srv_first_check makes of a first packet on its own. */
enum first_verdict {
	FIRST_OK,      /* well formed and within max_msg_len */
	FIRST_BAD,     /* malformed: dropped and counted */
	FIRST_TOO_BIG, /* well formed but over max_msg_len: to be refused */
};

/*
 * srv_first_check checks a first packet (`n` payload bytes) on its own, before it
 * may touch any state; `*out_enc` says it starts an encrypted multi-packet request.
 * A FIRST_TOO_BIG packet is neither counted nor refused yet: it may conflict with
 * a request in progress, which it must not draw an answer for.
 */
static enum first_verdict srv_first_check(struct eng *e, const struct r2p2_hdr *h, size_t n,
					  bool *out_enc)
{
	uint16_t p = ntohs(h->p_order);
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	bool enc;

	*out_enc = false;
	if (single) {
		if (p != 1 || n > R2P2_MAX_PAYLOAD) {
			e->stats.rx_bad_order++;
			return FIRST_BAD;
		}
		return n > e->cfg.max_msg_len ? FIRST_TOO_BIG : FIRST_OK;
	}
	/*
	 * Encrypted (free bits set) multi-packet requests, and only they,
	 * start with p_order 0xFFFF: the count comes later.
	 */
	enc = p == ENC_UNKNOWN;
	if (enc != ((h->flags & R2P2_F_FREE_MASK) != 0) || p < 2 || n != R2P2_MIN_PAYLOAD) {
		e->stats.rx_bad_order++;
		return FIRST_BAD;
	}
	if (pkt_off(enc ? 1 : p - 1, R2P2_MIN_PAYLOAD) + 1 > e->cfg.max_msg_len)
		return FIRST_TOO_BIG;
	*out_enc = enc;
	return FIRST_OK;
}

/* srv_first_hash names a first packet, header included, by a keyed hash of its bytes. */
static uint64_t srv_first_hash(const struct eng *e, const uint8_t *pkt, size_t len)
{
	/*
	 * Keyed (SipHash, a PRF) rather than a plain checksum: a peer that does not
	 * know the key (hash_seed) cannot make other bytes pass for a retransmission
	 * but by a 2^-64 guess, and such a match would only get them treated as one.
	 */
	return siphash13(e->hkey, pkt, len);
}

/*
 * srv_known_first takes a first packet from (`src`, rid) whose state `st` exists.
 * Returns true when it was handled (a retransmission, or a conflict dropped), false
 * when it starts a new request in place of `st` (the caller frees `st`).
 *
 * While `st` is in progress (reassembling, or handed up and not answered yet) a
 * first packet with other bytes is dropped (rx_conflict): no eviction, nothing
 * handed up, no answer. Otherwise anyone who can send from the client's address
 * and port and guess the rid (an off-path spoofer) could evict the state, and the
 * client's next retransmission would be taken for a new request and run twice.
 *
 * Once `st` is answered (SP_CACHED), other bytes replace it: a client reuses a rid
 * after its 65536 rids wrapped, and tls sends its second flight under the rid of
 * the first. Residual risk: a spoofer who guesses the rid can still evict an
 * *answered* state; a retransmission of the genuine request that is still on its
 * way (its answer lost) then runs again. Plain mode has no defence against that
 * (as against any spoofed request); the encrypted modes refuse such reruns by
 * their strike registers.
 */
static bool srv_known_first(struct eng *e, struct sstate *st, uint64_t hash, size_t len,
			    uint64_t now)
{
	if (st->first_hash == hash) {
		srv_dup_first(e, st, len, now);
		return true;
	}
	if (st->phase != SP_CACHED) {
		e->stats.rx_conflict++;
		return true;
	}
	return false;
}

/*
 * srv_quota evicts the least recently active half-open request of `src`'s address
 * when it has max_half_open_per_source of them, to make room for a new one.
 */
static void srv_quota(struct eng *e, const struct r2p2_addr *src)
{
	struct srcq *q;

	if (!e->cfg.max_half_open_per_source)
		return;
	q = srcq_lookup(e, src);
	if (q && q->num >= e->cfg.max_half_open_per_source) {
		e->stats.evict_source++;
		srv_free(e, q->head);
	}
}

/*
 * srv_start_rasm starts reassembling the request of `st` with its first packet:
 * true when it is under way, false when refused (`st` is freed and counted).
 */
static bool srv_start_rasm(struct eng *e, struct sstate *st, const struct r2p2_hdr *h,
			   const uint8_t *payload, size_t n, bool enc)
{
	uint32_t max_pkts =
	    enc ? rasm_max_pkts(e->cfg.max_msg_len, R2P2_MIN_PAYLOAD) : ntohs(h->p_order);
	enum rasm_res res = RASM_NOMEM;

	st->phase = SP_REASSEMBLING;
	rasm_init(&st->rasm, R2P2_MIN_PAYLOAD, max_pkts, enc, &e->rbud);
	if (ho_link(e, st) == 0)
		res = srv_rasm_add(e, st, h, payload, n);
	if (res == RASM_MORE)
		return true;
	if (res == RASM_OVER)
		e->stats.rx_no_memory++;
	else
		e->stats.rx_no_state++;
	srv_free(e, st);
	return false;
}

/* srv_start creates the state of a new request from its first packet and hands it up or ACKs it. */
static void srv_start(struct eng *e, unsigned sock, const struct r2p2_addr *src,
		      const struct r2p2_hdr *h, const uint8_t *payload, size_t n, uint64_t hash,
		      bool enc, uint64_t now)
{
	uint16_t rid = ntohs(h->rid);
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	uint8_t free_flags = h->flags & R2P2_F_FREE_MASK;
	struct sstate *st;

	if (!single)
		srv_quota(e, src);
	st = srv_new(e, sock, src, rid, r2p2_hdr_policy(h), free_flags, hash);
	if (!st) {
		e->stats.rx_no_state++;
		srv_refuse(e, sock, src, rid, free_flags);
		return;
	}
	st->amp_in = R2P2_HDR_LEN + n;
	if (single) {
		srv_deliver(e, st, payload, n, now);
		return;
	}
	st->req_multi = true;
	if (!srv_start_rasm(e, st, h, payload, n, enc)) {
		srv_refuse(e, sock, src, rid, free_flags);
		return;
	}
	tmr_arm(e, &st->tmr, now + e->cfg.reassembly_timeout_ns);
	send_ack(e, sock, src, rid, free_flags);
}

void srv_input(struct eng *e, unsigned sock, const struct r2p2_addr *src, const struct r2p2_hdr *h,
	       const uint8_t *pkt, size_t len, uint64_t now)
{
	const uint8_t *payload = pkt + R2P2_HDR_LEN;
	size_t n = len - R2P2_HDR_LEN;
	uint16_t rid = ntohs(h->rid);
	enum first_verdict v;
	struct sstate *st;
	uint64_t hash;
	bool enc;

	if (!(h->flags & R2P2_F_FIRST)) {
		srv_rest_input(e, src, h, payload, n, now);
		return;
	}
	v = srv_first_check(e, h, n, &enc);
	if (v == FIRST_BAD)
		return;
	hash = srv_first_hash(e, pkt, len);
	st = srv_lookup(e, src, rid);
	if (st && srv_known_first(e, st, hash, len, now))
		return;
	if (v == FIRST_TOO_BIG) {
		/* Refused before anything is freed: an answered state stays. */
		e->stats.rx_too_big++;
		srv_refuse(e, sock, src, rid, h->flags & R2P2_F_FREE_MASK);
		return;
	}
	if (st)
		srv_free(e, st); /* answered; the same (source, rid) with other bytes is new */
	srv_start(e, sock, src, h, payload, n, hash, enc, now);
}

void srv_expire(struct eng *e, struct sstate *st)
{
	if (st->phase != SP_CACHED)
		e->stats.req_gc++;
	srv_free(e, st);
}

void cache_expire(struct eng *e, uint64_t now)
{
	while (e->cache_head && e->cache_head->tmr.deadline <= now)
		srv_free(e, e->cache_head);
}

void cache_rewindow(struct eng *e, uint64_t old_ns, uint64_t new_ns)
{
	for (struct sstate *st = e->cache_head; st; st = st->cache_next) {
		uint64_t since = st->tmr.deadline > old_ns ? st->tmr.deadline - old_ns : 0;
		st->tmr.deadline = since + new_ns;
	}
}

/* respond stores and sends the answer of `handle`; `strict`: the transport's own answer. */
static int respond(struct eng *e, uint64_t handle, const void *payload, size_t len, bool strict,
		   uint64_t now)
{
	struct sstate *st = srv_from_handle(e, handle);

	if (!st || st->phase != SP_EXECUTING)
		return -ENOENT;
	if (len > e->cfg.max_msg_len)
		return -EMSGSIZE;
	if (len && !payload)
		return -EINVAL;
	/* The copy is what gets sent now and resent to retransmitted requests. */
	st->resp = msg_copy(e, st->resp_inline, ANSWER_INLINE, payload, len);
	if (!st->resp)
		return -ENOMEM;
	st->resp_len = len;
	st->amp_strict = strict;
	e->stats.resp_sent++;
	srv_answer(e, st, R2P2_RESPONSE, now);
	return 0;
}

int eng_respond(struct eng *e, uint64_t handle, const void *payload, size_t len, uint64_t now)
{
	return respond(e, handle, payload, len, false, now);
}

int eng_answer(struct eng *e, uint64_t handle, const void *payload, size_t len, uint64_t now)
{
	return respond(e, handle, payload, len, true, now);
}

int eng_reject(struct eng *e, uint64_t handle, uint64_t now)
{
	struct sstate *st = srv_from_handle(e, handle);

	if (!st || st->phase != SP_EXECUTING)
		return -ENOENT;
	srv_answer(e, st, R2P2_DROP, now);
	return 0;
}
