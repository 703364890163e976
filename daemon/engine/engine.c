// SPDX-License-Identifier: MIT
/*
 * The R2P2 protocol engine. engine.h is the contract; docs/PROTOCOL.md lists
 * every wire rule enforced here.
 *
 * This file holds what both roles use: hashing, the hash tables, the timer heap,
 * reassembly and packetisation, and the engine's life cycle, input and timers. The
 * client role is engine_client.c, the server role engine_server.c; engine_int.h
 * holds the structures they share.
 *
 * Data structures, and why:
 *  - Every call and every server state owns exactly one timer, kept in one
 *    binary min-heap of deadlines: arming, moving and cancelling are
 *    O(log n), eng_next_deadline is O(1), eng_tick only touches what is due.
 *  - Calls are found by (sock, rid), server states by (source, rid), both in
 *    intrusive chained hash tables: the per-packet path never scans a list.
 *  - Server states are also named by 64-bit handles (generation << 32 | slot)
 *    so that a handle kept by the app after its state was freed and its slot
 *    reused is refused instead of answering someone else's request.
 *  - Cached responses sit in a FIFO (oldest first); the dedup window is the
 *    same for all of them, so the head is both the oldest and the one to evict
 *    when the server state bound is reached.
 *  - The hash tables are keyed (SipHash-1-3 under eng_config.hash_seed): the
 *    source address, port and rid of a request are chosen by the peer, and an
 *    unkeyed hash would let it pile every state into one bucket.
 *  - Encrypted multi-packet requests do not say their packet count up front
 *    (p_order 0xFFFF, then packet 1 says N-1): until the last packet (the only
 *    one whose index is unambiguous) arrives, a full packet with p_order p is
 *    parked at slot p, and the one parked at N-1 turns out to be packet 1.
 * Memory is allocated per message (states, reassembly buffers, copies kept for
 * retransmission), never per packet except the amortised growth of a
 * reassembly buffer and the packets that arrive far ahead of it. A reassembly
 * holds memory in proportion to the bytes that arrived, never to the count or
 * the offset a packet claims: a first packet and a 1-byte last packet of a
 * "1 MiB" message cost a few hundred bytes, not a megabyte.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sanitizer/asan_interface.h> /* no-ops unless built with AddressSanitizer */
#include <sys/socket.h>

/* ---- small helpers -------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

/* One SipRound on the locals v0..v3 (locals, not an array: no pointer checks under ASan). */
#define SIPROUND()                                                                                 \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL64(v1, 13) ^ v0;                                                          \
		v0 = ROTL64(v0, 32);                                                               \
		v2 += v3;                                                                          \
		v3 = ROTL64(v3, 16) ^ v2;                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL64(v3, 21) ^ v0;                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL64(v1, 17) ^ v2;                                                          \
		v2 = ROTL64(v2, 32);                                                               \
	} while (0)

/*
 * siphash13 is SipHash-1-3 of `len` bytes under `key` (words read in host byte
 * order: only this engine compares the results).
 */
uint64_t siphash13(const uint64_t key[2], const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
	uint64_t m, b = (uint64_t)len << 56;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&m, p + i, 8);
		v3 ^= m;
		SIPROUND();
		v0 ^= m;
	}
	for (size_t j = 0; i + j < len; j++)
		b |= (uint64_t)p[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND();
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND();
	SIPROUND();
	SIPROUND();
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * addr_norm copies `in` with the unused address bytes zeroed, so that
 * addresses compare with memcmp whatever the caller left in the padding.
 */
void addr_norm(struct r2p2_addr *out, const struct r2p2_addr *in)
{
	memset(out, 0, sizeof(*out));
	out->family = in->family;
	out->port = in->port;
	memcpy(out->addr, in->addr, in->family == AF_INET ? 4 : 16);
}

bool addr_eq(const struct r2p2_addr *a, const struct r2p2_addr *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* pkt_off returns where packet `idx` starts in a message whose packet 0 carries `head_len`. */
size_t pkt_off(uint32_t idx, uint32_t head_len)
{
	return idx == 0 ? 0 : head_len + (size_t)(idx - 1) * R2P2_MAX_PAYLOAD;
}

/* msg_num_pkts returns how many packets a `len`-byte message takes. */
uint32_t msg_num_pkts(size_t len, uint32_t head_len)
{
	if (len <= R2P2_MAX_PAYLOAD)
		return 1;
	return 1 + (uint32_t)((len - head_len + R2P2_MAX_PAYLOAD - 1) / R2P2_MAX_PAYLOAD);
}

/* ---- hash tables ---------------------------------------------------------------- */

static int htab_init(struct htab *t, size_t num_buckets)
{
	t->buckets = calloc(num_buckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->mask = num_buckets - 1;
	t->count = 0;
	return 0;
}

static void htab_cleanup(struct htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
}

/* htab_grow doubles the buckets. Best effort: a failed grow only lengthens chains. */
static void htab_grow(struct htab *t)
{
	size_t n = (t->mask + 1) * 2;
	struct hnode **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		struct hnode *node = t->buckets[i], *next;
		for (; node; node = next) {
			next = node->next;
			node->next = b[node->hash & (n - 1)];
			b[node->hash & (n - 1)] = node;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->mask = n - 1;
}

void htab_insert(struct htab *t, struct hnode *n, uint64_t hash)
{
	if (t->count > t->mask)
		htab_grow(t);
	n->hash = hash;
	n->next = t->buckets[hash & t->mask];
	t->buckets[hash & t->mask] = n;
	t->count++;
}

void htab_remove(struct htab *t, struct hnode *n)
{
	struct hnode **pp = &t->buckets[n->hash & t->mask];
	for (; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			t->count--;
			return;
		}
	}
}

struct hnode *htab_bucket(const struct htab *t, uint64_t hash)
{
	return t->buckets[hash & t->mask];
}

/* ---- pools ----------------------------------------------------------------------- */

void *pool_get(struct pool *p, uint64_t *allocs)
{
	void *obj = p->head;

	if (!obj) {
		(*allocs)++;
		return calloc(1, p->size);
	}
	ASAN_UNPOISON_MEMORY_REGION(obj, p->size);
	p->head = *(void **)obj;
	p->num--;
	memset(obj, 0, p->size);
	return obj;
}

void pool_put(struct pool *p, void *obj)
{
	if (p->num >= POOL_MAX) {
		free(obj);
		return;
	}
	*(void **)obj = p->head;
	p->head = obj;
	p->num++;
	ASAN_POISON_MEMORY_REGION(obj, p->size);
}

uint8_t *msg_copy(struct eng *e, uint8_t *inl, size_t cap, const void *src, size_t len)
{
	uint8_t *copy = inl;

	if (len > cap) {
		e->stats.allocs++;
		copy = malloc(len);
		if (!copy)
			return NULL;
	}
	if (len)
		memcpy(copy, src, len);
	return copy;
}

void msg_free(uint8_t *copy, const uint8_t *inl)
{
	if (copy != inl)
		free(copy);
}

void pool_drain(struct pool *p)
{
	while (p->head) {
		void *obj = p->head;

		ASAN_UNPOISON_MEMORY_REGION(obj, p->size);
		p->head = *(void **)obj;
		free(obj);
	}
	p->num = 0;
}

/* ---- timer heap ----------------------------------------------------------------- */

/* heap_reserve makes room for `n` armed timers, so that arming never fails later. */
int heap_reserve(struct eng *e, size_t n)
{
	if (n <= e->heap_cap)
		return 0;
	size_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
	if (cap < n)
		cap = n;
	struct tmr **h = realloc(e->heap, cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	e->heap = h;
	e->heap_cap = cap;
	return 0;
}

static void heap_place(struct eng *e, size_t i, struct tmr *t)
{
	e->heap[i] = t;
	t->heap_idx = (uint32_t)i;
}

static void heap_sift_up(struct eng *e, size_t i)
{
	struct tmr *t = e->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (e->heap[parent]->deadline <= t->deadline)
			break;
		heap_place(e, i, e->heap[parent]);
		i = parent;
	}
	heap_place(e, i, t);
}

static void heap_sift_down(struct eng *e, size_t i)
{
	struct tmr *t = e->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= e->heap_len)
			break;
		if (child + 1 < e->heap_len &&
		    e->heap[child + 1]->deadline < e->heap[child]->deadline)
			child++;
		if (t->deadline <= e->heap[child]->deadline)
			break;
		heap_place(e, i, e->heap[child]);
		i = child;
	}
	heap_place(e, i, t);
}

/* tmr_arm sets or moves `t` to `deadline`. Room was reserved when the owner was created. */
void tmr_arm(struct eng *e, struct tmr *t, uint64_t deadline)
{
	if (t->heap_idx == TMR_IDLE) {
		t->deadline = deadline;
		heap_place(e, e->heap_len++, t);
		heap_sift_up(e, t->heap_idx);
		return;
	}
	uint64_t old = t->deadline;
	t->deadline = deadline;
	if (deadline < old)
		heap_sift_up(e, t->heap_idx);
	else
		heap_sift_down(e, t->heap_idx);
}

void tmr_disarm(struct eng *e, struct tmr *t)
{
	if (t->heap_idx == TMR_IDLE)
		return;
	size_t i = t->heap_idx;
	struct tmr *last = e->heap[--e->heap_len];
	if (i != e->heap_len) {
		heap_place(e, i, last);
		heap_sift_up(e, i);
		heap_sift_down(e, last->heap_idx);
	}
	t->heap_idx = TMR_IDLE;
}

/* ---- reassembly ----------------------------------------------------------------- */

void rasm_init(struct rasm *r, uint32_t head_len, uint32_t max_pkts, bool enc, struct rbudget *bud)
{
	memset(r, 0, sizeof(*r));
	r->enc = enc;
	r->bits_cap = max_pkts;
	r->head_len = head_len;
	r->bud = bud;
}

/* rasm_charge adds `delta` bytes (possibly negative) to what `r` holds. */
static void rasm_charge(struct rasm *r, ptrdiff_t delta)
{
	r->mem += (size_t)delta;
	if (r->bud)
		r->bud->used += (size_t)delta;
}

void rasm_cleanup(struct rasm *r)
{
	while (r->chunks) {
		struct rchunk *c = r->chunks;
		r->chunks = c->next;
		free(c);
	}
	rasm_charge(r, -(ptrdiff_t)r->mem);
	free(r->buf);
	free(r->bits);
	r->buf = NULL;
	r->bits = NULL;
	r->cap = 0;
	r->bits_words = 0;
}

/* rasm_max_pkts returns how many packets a message of at most `max_len` bytes may have. */
uint32_t rasm_max_pkts(size_t max_len, uint32_t head_len)
{
	uint32_t n = msg_num_pkts(max_len, head_len);
	return n < 2 ? 2 : n;
}

static bool rasm_has(const struct rasm *r, uint32_t idx)
{
	return idx / 64 < r->bits_words && (r->bits[idx / 64] & (1ull << (idx % 64)));
}

static struct rchunk **rasm_chunk(struct rasm *r, uint32_t idx)
{
	struct rchunk **pp = &r->chunks;
	while (*pp && (*pp)->idx != idx)
		pp = &(*pp)->next;
	return pp;
}

/*
 * rasm_park_to_1 moves the packet parked at slot `idx` (encrypted framing) to slot 1:
 * a chunk is renamed, bytes in `buf` (which then also covers slot 1) are copied.
 */
static void rasm_park_to_1(struct rasm *r, uint32_t idx)
{
	struct rchunk *c = *rasm_chunk(r, idx);

	if (c)
		c->idx = 1;
	else
		memcpy(r->buf + pkt_off(1, r->head_len), r->buf + pkt_off(idx, r->head_len),
		       R2P2_MAX_PAYLOAD);
	r->bits[1 / 64] |= 1ull << (1 % 64);
	r->bits[idx / 64] &= ~(1ull << (idx % 64));
}

/* rasm_bits_words returns how many bitmap words `r` needs to hold packet `idx`. */
static uint32_t rasm_bits_words(const struct rasm *r, uint32_t idx)
{
	uint32_t need = idx / 64 + 1, max = (r->bits_cap + 63) / 64, n;

	if (need <= r->bits_words)
		return r->bits_words;
	n = r->bits_words * 2 > need ? r->bits_words * 2 : need;
	return n > max ? max : n;
}

/*
 * rasm_store stores packet `idx` (`n` bytes ending at offset `end`) into `buf` if
 * it covers it or may grow to `want` (bounded by what arrived) to cover it, else
 * into a chunk; `park` first moves what is parked at `idx` to slot 1. Returns
 * RASM_MORE, or RASM_OVER (budget; nothing changed) or RASM_NOMEM.
 */
static enum rasm_res rasm_store(struct rasm *r, uint32_t idx, size_t end, const uint8_t *payload,
				size_t n, size_t want, bool park)
{
	uint32_t words = rasm_bits_words(r, idx);
	size_t backed = 2 * (r->recv_bytes + n) + 4 * R2P2_MAX_PAYLOAD;
	bool in_buf = end <= r->cap || want <= backed;
	size_t grow = end <= r->cap ? 0 : in_buf ? want - r->cap : sizeof(struct rchunk) + n;
	size_t delta = grow + (size_t)(words - r->bits_words) * sizeof(uint64_t);
	uint8_t *dst;

	if (r->bud && r->bud->max && r->bud->used + delta > r->bud->max)
		return RASM_OVER;
	if (words > r->bits_words) {
		uint64_t *bits = realloc(r->bits, words * sizeof(uint64_t));
		if (!bits)
			return RASM_NOMEM;
		memset(bits + r->bits_words, 0, (words - r->bits_words) * sizeof(uint64_t));
		rasm_charge(r, (ptrdiff_t)((words - r->bits_words) * sizeof(uint64_t)));
		r->bits = bits;
		r->bits_words = words;
	}
	if (in_buf && end > r->cap) {
		uint8_t *b = realloc(r->buf, want);
		if (!b)
			return RASM_NOMEM;
		rasm_charge(r, (ptrdiff_t)grow);
		r->buf = b;
		r->cap = want;
	}
	if (in_buf) {
		if (park)
			rasm_park_to_1(r, idx);
		dst = r->buf + end - n;
	} else {
		struct rchunk *c = malloc(sizeof(*c) + n);
		if (!c)
			return RASM_NOMEM;
		/* Before `c` is linked: the chunk parked at `idx` must be the one renamed. */
		if (park)
			rasm_park_to_1(r, idx);
		rasm_charge(r, (ptrdiff_t)grow);
		c->idx = idx;
		c->len = (uint32_t)n;
		c->next = r->chunks;
		r->chunks = c;
		dst = c->data;
	}
	memcpy(dst, payload, n);
	r->recv_bytes += n;
	return RASM_MORE;
}

/*
 * rasm_gather copies the chunks into `buf`, grown to the message length: the
 * message is complete. Charged even past the budget: every byte is in, and the
 * caller hands the message on (and uncharges it) at once.
 */
static enum rasm_res rasm_gather(struct rasm *r)
{
	if (r->cap < r->len) {
		uint8_t *b = realloc(r->buf, r->len);
		if (!b)
			return RASM_NOMEM;
		rasm_charge(r, (ptrdiff_t)(r->len - r->cap));
		r->buf = b;
		r->cap = r->len;
	}
	while (r->chunks) {
		struct rchunk *c = r->chunks;
		r->chunks = c->next;
		memcpy(r->buf + pkt_off(c->idx, r->head_len), c->data, c->len);
		rasm_charge(r, -(ptrdiff_t)(sizeof(*c) + c->len));
		free(c);
	}
	return RASM_DONE;
}

/*
 * rasm_add validates one packet of a multi-packet message against what is
 * known so far and stores it. F|L packets are the caller's business. The
 * buffer grows with what arrives, up to what the message can still be and
 * never past twice the bytes received (rasm_store: a packet beyond waits in a
 * chunk of its own), so a flood of first packets claiming huge counts, or
 * followed by their last packet, costs little memory.
 *
 * With `enc` (encrypted request framing) the first packet says 0xFFFF and
 * packet 1 says N-1, which no middle packet (2..N-2) can say and only the last
 * packet (which has L) shares. So until the last packet tells N, a full
 * packet with p_order p is parked at slot p; then the one at slot N-1, if
 * any, is packet 1 and moves to slot 1. The parked packets stay within what
 * max_len allows (one packet past it at most).
 */
enum rasm_res rasm_add(struct rasm *r, const struct r2p2_hdr *h, const uint8_t *payload, size_t n,
		       size_t max_len)
{
	bool first = h->flags & R2P2_F_FIRST, last = h->flags & R2P2_F_LAST;
	uint32_t p = ntohs(h->p_order), idx;
	size_t end, min_total, want = 0;
	bool park = false;
	enum rasm_res res;

	if (first && r->enc) {
		if (p != ENC_UNKNOWN || n != r->head_len)
			return RASM_BAD;
		if (pkt_off(1, r->head_len) + 1 > max_len)
			return RASM_TOO_BIG;
		idx = 0;
		end = n;
	} else if (first) {
		if (p < 2 || n != r->head_len)
			return RASM_BAD;
		if (pkt_off(p - 1, r->head_len) + 1 > max_len || p > r->bits_cap)
			return RASM_TOO_BIG;
		if (r->num_pkts && r->num_pkts != p)
			return RASM_BAD;
		if (r->num_recv && r->max_idx >= p)
			return RASM_BAD;
		idx = 0;
		end = n;
	} else {
		bool parked = false;
		idx = p;
		if (idx == 0)
			return RASM_BAD;
		if (r->enc && !last) {
			if (p < 2)
				return RASM_BAD;
			if (r->num_pkts) {
				if (p >= r->num_pkts)
					return RASM_BAD;
				if (p == r->num_pkts - 1)
					idx = 1;
			} else {
				parked = true;
			}
		} else if (r->num_pkts) {
			if (idx >= r->num_pkts || last != (idx == r->num_pkts - 1))
				return RASM_BAD;
		} else if (last && r->num_recv &&
			   (r->max_idx > idx || (r->max_idx == idx && !r->enc))) {
			/* (enc: what is parked at the last slot is packet 1) */
			return RASM_BAD;
		}
		if (last ? (n < 1 || n > R2P2_MAX_PAYLOAD) : n != R2P2_MAX_PAYLOAD)
			return RASM_BAD;
		end = pkt_off(idx, r->head_len) + n;
		/* A parked packet may be packet 1 of an (idx+1)-packet message. */
		min_total = last ? end : parked ? end - n + 1 : end + 1;
		if (min_total > max_len || idx >= r->bits_cap)
			return RASM_TOO_BIG;
		/* The packet parked at the last slot is packet 1: moved when this one is stored. */
		park = r->enc && last && !r->num_pkts && idx >= 2 && rasm_has(r, idx);
	}
	if (!park && rasm_has(r, idx))
		return RASM_DUP;

	if (end > r->cap) {
		/*
		 * The first allocation fits exactly what arrived (14 bytes for a
		 * request's packet 0, which is all a flood of first packets gets),
		 * later ones at least double (rasm_store keeps them within what
		 * arrived).
		 */
		size_t limit = max_len;
		uint32_t known = r->num_pkts	    ? r->num_pkts
				 : last		    ? idx + 1
				 : first && !r->enc ? p
						    : 0;
		want = r->cap ? r->cap * 2 : end;
		if (r->cap && want < 4 * R2P2_MAX_PAYLOAD)
			want = 4 * R2P2_MAX_PAYLOAD;
		if (known && pkt_off(known - 1, r->head_len) + R2P2_MAX_PAYLOAD < limit)
			limit = pkt_off(known - 1, r->head_len) + R2P2_MAX_PAYLOAD;
		if (last)
			limit = end; /* the exact length is known now */
		else if (r->len && r->len < limit)
			limit = r->len;
		if (want > limit)
			want = limit;
		if (want < end)
			want = end;
	}
	res = rasm_store(r, idx, end, payload, n, want, park);
	if (res != RASM_MORE)
		return res;
	r->bits[idx / 64] |= 1ull << (idx % 64);
	r->num_recv++;
	if (idx > r->max_idx)
		r->max_idx = idx;
	if (first && !r->enc)
		r->num_pkts = p;
	if (last) {
		r->num_pkts = idx + 1;
		r->len = end;
	}
	return r->num_pkts && r->num_recv == r->num_pkts ? rasm_gather(r) : RASM_MORE;
}

/* ---- output --------------------------------------------------------------------- */

static void send_pkt(struct eng *e, unsigned sock, const struct r2p2_addr *dst, unsigned type,
		     unsigned policy, uint8_t flags, uint16_t rid, uint16_t p_order,
		     const void *payload, size_t len)
{
	struct r2p2_hdr h = {
	    .magic = R2P2_MAGIC,
	    .header_size = R2P2_HDR_LEN,
	    .type_policy = (uint8_t)((type << 4) | (policy & 0x0F)),
	    .flags = flags,
	    .rid = htons(rid),
	    .p_order = htons(p_order),
	};
	struct iovec iov[2] = {
	    {.iov_base = &h, .iov_len = sizeof(h)},
	    {.iov_base = (void *)payload, .iov_len = len},
	};
	e->ops->send(e->ctx, sock, dst, iov, len ? 2 : 1);
	e->stats.tx_packets++;
}

/* send_msg_pkt sends packet `idx` of `m` to `dst`. */
void send_msg_pkt(struct eng *e, unsigned sock, const struct r2p2_addr *dst,
		  const struct msg_out *m, uint32_t idx)
{
	if (m->num_pkts == 1) {
		send_pkt(e, sock, dst, m->type, m->policy,
			 R2P2_F_FIRST | R2P2_F_LAST | m->free_flags, m->rid, 1, m->msg, m->len);
		return;
	}
	size_t off = pkt_off(idx, m->head_len);
	size_t plen = idx == 0 ? m->head_len : m->len - off;
	uint8_t flags = m->free_flags;
	uint32_t order = idx;
	if (plen > R2P2_MAX_PAYLOAD)
		plen = R2P2_MAX_PAYLOAD;
	if (idx == 0)
		flags |= R2P2_F_FIRST;
	if (idx == m->num_pkts - 1)
		flags |= R2P2_F_LAST;
	if (idx == 0)
		order = m->enc_count ? ENC_UNKNOWN : m->num_pkts;
	else if (idx == 1 && m->enc_count)
		order = m->num_pkts - 1;
	send_pkt(e, sock, dst, m->type, m->policy, flags, m->rid, (uint16_t)order, m->msg + off,
		 plen);
}

void send_drop(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
	       uint8_t free_flags)
{
	send_pkt(e, sock, dst, R2P2_DROP, R2P2_FIXED_ROUTE, R2P2_F_FIRST | R2P2_F_LAST | free_flags,
		 rid, 1, "DROP", 4);
}

void send_ack(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
	      uint8_t free_flags)
{
	send_pkt(e, sock, dst, R2P2_ACK, R2P2_FIXED_ROUTE, R2P2_F_FIRST | R2P2_F_LAST | free_flags,
		 rid, 1, "ACK", 3);
}

void send_cookie(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
		 uint8_t free_flags, const char *tag, const uint8_t cookie[R2P2_COOKIE_LEN])
{
	uint8_t payload[R2P2_COOKIE_PAYLOAD_LEN];

	memcpy(payload, tag, R2P2_COOKIE_TAG_LEN);
	memcpy(payload + R2P2_COOKIE_TAG_LEN, cookie, R2P2_COOKIE_LEN);
	send_pkt(e, sock, dst, R2P2_ACK, R2P2_FIXED_ROUTE, R2P2_F_FIRST | R2P2_F_LAST | free_flags,
		 rid, 1, payload, sizeof(payload));
}

/*
 * send_feedback tells the router that the request (`client`, `rid`) is
 * finished, so that its count of outstanding requests for us goes down. Sent
 * once per answered request (response or DROP), never for a resend.
 */
void send_feedback(struct eng *e, unsigned sock, const struct r2p2_addr *client, uint16_t rid)
{
	struct r2p2_feedback fb = {.rid = htons(rid), .port = client->port};

	if (!e->cfg.has_router)
		return;
	if (client->family == AF_INET)
		memcpy(&fb.ip, client->addr, 4);
	send_pkt(e, sock, &e->cfg.router, R2P2_FEEDBACK, 0, R2P2_F_FIRST | R2P2_F_LAST, rid, 1, &fb,
		 sizeof(fb));
}

/* ---- life cycle, input and timers ---------------------------------------------- */

void eng_config_default(struct eng_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_msg_len = 1 << 20;
	cfg->reassembly_timeout_ns = 1000000000ull;
	cfg->dedup_window_ns = 2000000000ull;
	cfg->exec_timeout_ns = 30000000000ull;
	cfg->max_server_states = 65536;
	cfg->max_client_calls = 16384;
	cfg->max_reassembly_bytes = 64ull << 20;
	cfg->max_half_open_per_source = 1024;
}

struct eng *eng_new(const struct eng_config *cfg, const struct eng_ops *ops, void *ctx)
{
	struct eng *e;

	/* Zero timeouts would let eng_tick re-arm a timer at `now` forever. */
	if (!cfg || !ops || !ops->send || (!ops->request && !ops->request_ex) || !ops->complete ||
	    !cfg->reassembly_timeout_ns || !cfg->dedup_window_ns || !cfg->exec_timeout_ns ||
	    cfg->max_client_calls > 32768 || cfg->max_server_states >= SLOT_NONE ||
	    (cfg->has_router && cfg->router.family != AF_INET && cfg->router.family != AF_INET6)) {
		errno = EINVAL;
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		errno = ENOMEM;
		return NULL;
	}
	e->call_pool.size = sizeof(struct call);
	e->sstate_pool.size = sizeof(struct sstate);
	e->cfg = *cfg;
	if (e->cfg.max_msg_len > R2P2_PROTO_MAX_MSG)
		e->cfg.max_msg_len = R2P2_PROTO_MAX_MSG;
	if (cfg->has_router)
		addr_norm(&e->cfg.router, &cfg->router);
	e->hkey[0] = cfg->hash_seed;
	e->hkey[1] = mix64(cfg->hash_seed ^ 0x9e3779b97f4a7c15ull);
	e->ops = ops;
	e->ctx = ctx;
	e->free_slot = SLOT_NONE;
	e->rbud.max =
	    cfg->max_reassembly_bytes > SIZE_MAX ? SIZE_MAX : (size_t)cfg->max_reassembly_bytes;
	if (htab_init(&e->calls, 64) < 0 || htab_init(&e->servers, 64) < 0 ||
	    htab_init(&e->sources, 64) < 0) {
		htab_cleanup(&e->calls);
		htab_cleanup(&e->servers);
		free(e);
		errno = ENOMEM;
		return NULL;
	}
	return e;
}

int eng_reconfigure(struct eng *e, const struct eng_config *cfg)
{
	if (!cfg->reassembly_timeout_ns || !cfg->dedup_window_ns || !cfg->exec_timeout_ns ||
	    (cfg->has_router && cfg->router.family != AF_INET && cfg->router.family != AF_INET6))
		return -EINVAL;
	e->cfg.reassembly_timeout_ns = cfg->reassembly_timeout_ns;
	if (cfg->dedup_window_ns != e->cfg.dedup_window_ns)
		cache_rewindow(e, e->cfg.dedup_window_ns, cfg->dedup_window_ns);
	e->cfg.dedup_window_ns = cfg->dedup_window_ns;
	e->cfg.exec_timeout_ns = cfg->exec_timeout_ns;
	e->cfg.has_router = cfg->has_router;
	memset(&e->cfg.router, 0, sizeof(e->cfg.router));
	if (cfg->has_router)
		addr_norm(&e->cfg.router, &cfg->router);
	e->cfg.allow_flags = cfg->allow_flags;
	e->cfg.max_reassembly_bytes = cfg->max_reassembly_bytes;
	e->cfg.max_half_open_per_source = cfg->max_half_open_per_source;
	e->rbud.max =
	    cfg->max_reassembly_bytes > SIZE_MAX ? SIZE_MAX : (size_t)cfg->max_reassembly_bytes;
	return 0;
}

void eng_free(struct eng *e)
{
	if (!e)
		return;
	/* Callbacks may try eng_call while we drain: it refuses once freeing is set. */
	e->freeing = true;
	while (e->calls_head)
		call_finish(e, e->calls_head, -ECANCELED, NULL, 0);
	for (uint32_t i = 0; i < e->num_slots; i++) {
		if (e->slots[i].st)
			srv_free(e, e->slots[i].st);
	}
	pool_drain(&e->call_pool);
	pool_drain(&e->sstate_pool);
	free(e->slots);
	free(e->heap);
	htab_cleanup(&e->calls);
	htab_cleanup(&e->servers);
	htab_cleanup(&e->sources);
	free(e);
}

void eng_input(struct eng *e, unsigned sock, const struct r2p2_addr *src_in, const uint8_t *pkt,
	       size_t len, uint64_t now)
{
	struct r2p2_addr src;
	struct r2p2_hdr h;

	e->stats.rx_packets++;
	if (len < R2P2_HDR_LEN) {
		e->stats.rx_runt++;
		return;
	}
	memcpy(&h, pkt, sizeof(h)); /* `pkt` need not be aligned */
	/* The free flag bits mark encrypted modes; plain mode knows only R2P2_F_EXT. */
	if (h.magic != R2P2_MAGIC || h.header_size != R2P2_HDR_LEN ||
	    ((h.flags & R2P2_F_FREE_MASK & ~R2P2_F_EXT) && !e->cfg.allow_flags)) {
		e->stats.rx_bad_header++;
		return;
	}
	addr_norm(&src, src_in);
	switch (r2p2_hdr_type(&h)) {
	case R2P2_REQUEST:
		srv_input(e, sock, &src, &h, pkt, len, now);
		return;
	case R2P2_ACK:
		/* an echo of our challenge goes to the server side; every other ACK answers a call
		 */
		if (len == R2P2_HDR_LEN + R2P2_COOKIE_PAYLOAD_LEN &&
		    memcmp(pkt + R2P2_HDR_LEN, R2P2_ECHO_TAG, R2P2_COOKIE_TAG_LEN) == 0) {
			srv_validate(e, &src, &h, pkt + R2P2_HDR_LEN + R2P2_COOKIE_TAG_LEN);
			return;
		}
		cli_input(e, sock, &src, &h, pkt, len);
		return;
	case R2P2_RESPONSE:
	case R2P2_DROP:
		cli_input(e, sock, &src, &h, pkt, len);
		return;
	default: /* FEEDBACK is for routers; 5..15 are RAFT or unknown */
		e->stats.rx_bad_type++;
		return;
	}
}

void eng_tick(struct eng *e, uint64_t now)
{
	/* Re-read the top each time: call completions may arm new (later) timers. */
	while (e->heap_len && e->heap[0]->deadline <= now) {
		struct tmr *t = e->heap[0];
		tmr_disarm(e, t);
		if (t->kind == TMR_CALL)
			call_expire(e, (struct call *)t, now);
		else
			srv_expire(e, (struct sstate *)t);
	}
	cache_expire(e, now);
}

uint64_t eng_next_deadline(const struct eng *e)
{
	uint64_t next = e->heap_len ? e->heap[0]->deadline : UINT64_MAX;

	if (e->cache_head && e->cache_head->tmr.deadline < next)
		next = e->cache_head->tmr.deadline;
	return next;
}

void eng_get_stats(const struct eng *e, struct eng_stats *out)
{
	*out = e->stats;
}

void eng_num_pending(const struct eng *e, size_t *out_calls, size_t *out_server_states)
{
	if (out_calls)
		*out_calls = e->num_calls;
	if (out_server_states)
		*out_server_states = e->num_sstates;
}

size_t eng_reassembly_bytes(const struct eng *e)
{
	return e->rbud.used;
}
