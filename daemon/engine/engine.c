// SPDX-License-Identifier: MIT
/*
 * The R2P2 protocol engine. engine.h is the contract; docs/PROTOCOL.md lists
 * every wire rule enforced here.
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
 * reassembly buffer.
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <r2p2/wire.h>

/* p_order of the first packet of an encrypted multi-packet request: count not yet known. */
#define ENC_UNKNOWN 0xFFFF

#define TMR_IDLE UINT32_MAX
#define SLOT_NONE UINT32_MAX

enum tmr_kind { TMR_CALL, TMR_SERVER };

/* A deadline in the engine's heap. Embedded first in its owner. */
struct tmr {
	uint64_t deadline;
	uint32_t heap_idx; /* position in e->heap, TMR_IDLE when not armed */
	uint8_t kind;	   /* enum tmr_kind: which struct this is the head of */
};

struct hnode {
	struct hnode *next;
	uint64_t hash;
};

/* An intrusive chained hash table; buckets double when the load passes 1. */
struct htab {
	struct hnode **buckets;
	size_t mask;
	size_t count;
};

/*
 * Reassembly of one multi-packet message. Packet 0 carries `head_len` bytes
 * (R2P2_MIN_PAYLOAD for requests, R2P2_MAX_PAYLOAD for responses), every other
 * packet but the last R2P2_MAX_PAYLOAD, so each packet's offset follows from
 * its index alone: packets that arrive before the one saying how many there
 * are can be stored right away.
 */
struct rasm {
	uint8_t *buf;
	size_t cap;
	size_t len;	   /* message length, known once the last packet is in */
	uint64_t *bits;	   /* one bit per packet received */
	uint32_t bits_cap; /* packets the bitmap can hold */
	uint32_t num_pkts; /* 0 until the first or the last packet says */
	uint32_t num_recv;
	uint32_t max_idx; /* highest index received (or slot parked in) */
	uint32_t head_len;
	bool enc; /* encrypted request framing: N comes from the last packet */
};

enum rasm_res { RASM_MORE, RASM_DONE, RASM_DUP, RASM_BAD, RASM_TOO_BIG, RASM_NOMEM };

enum sphase {
	SP_REASSEMBLING, /* multi-packet request, ACKed, waiting for the rest */
	SP_EXECUTING,	 /* handed up, waiting for eng_respond/eng_reject */
	SP_CACHED,	 /* answered; the answer is kept for retransmissions */
};

/* Server side of one request, keyed by (src, rid). */
struct sstate {
	struct tmr tmr; /* first */
	struct hnode hnode;
	struct sstate *cache_prev, *cache_next; /* FIFO of SP_CACHED states */
	struct r2p2_addr src;
	uint64_t first_hash; /* FNV-1a of the first packet: retransmission or rid reuse? */
	uint32_t slot;	     /* the handle is (e->slots[slot].gen << 32) | slot */
	unsigned sock;
	uint16_t rid;
	uint8_t policy;
	uint8_t phase;	   /* enum sphase */
	uint8_t resp_type; /* SP_CACHED: R2P2_RESPONSE or R2P2_DROP */
	uint8_t flags;	   /* the request's free flag bits, put on all we send back */
	struct rasm rasm;  /* SP_REASSEMBLING */
	uint8_t *resp;	   /* SP_CACHED, R2P2_RESPONSE */
	size_t resp_len;
};

struct sslot {
	struct sstate *st; /* NULL when free */
	uint32_t gen;
	uint32_t next_free;
};

/* Client side of one call, keyed by (sock, rid). */
struct call {
	struct tmr tmr; /* first */
	struct hnode hnode;
	struct call *prev, *next; /* e->calls_head: for eng_cancel and eng_free */
	uint64_t cookie;
	uint64_t timeout_ns;
	struct r2p2_addr dst;  /* where the first packet goes */
	struct r2p2_addr peer; /* where answers come from, once peer_fixed */
	bool peer_fixed;
	unsigned sock;
	uint16_t rid;
	uint8_t policy;
	uint8_t flags; /* free flag bits of the request; answers must carry the same */
	uint32_t retries_left;
	uint32_t num_pkts; /* of the request */
	uint8_t *req;
	size_t req_len;
	struct rasm rasm; /* multi-packet response, allocated at its first packet */
};

struct eng {
	struct eng_config cfg;
	const struct eng_ops *ops;
	void *ctx;
	struct eng_stats stats;
	uint64_t hkey[2]; /* SipHash key, from cfg.hash_seed */

	struct tmr **heap;
	size_t heap_len, heap_cap;

	struct htab calls;
	struct call *calls_head;
	size_t num_calls;
	uint16_t next_rid;
	uint16_t completing_rid; /* rid of the call in ops.complete */
	bool freeing;

	struct htab servers;
	struct sslot *slots;
	uint32_t num_slots, free_slot;
	size_t num_sstates;
	struct sstate *cache_head, *cache_tail;
};

/* ---- small helpers -------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ull

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
static uint64_t siphash13(const uint64_t key[2], const void *data, size_t len)
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
static void addr_norm(struct r2p2_addr *out, const struct r2p2_addr *in)
{
	memset(out, 0, sizeof(*out));
	out->family = in->family;
	out->port = in->port;
	memcpy(out->addr, in->addr, in->family == AF_INET ? 4 : 16);
}

static bool addr_eq(const struct r2p2_addr *a, const struct r2p2_addr *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* pkt_off returns where packet `idx` starts in a message whose packet 0 carries `head_len`. */
static size_t pkt_off(uint32_t idx, uint32_t head_len)
{
	return idx == 0 ? 0 : head_len + (size_t)(idx - 1) * R2P2_MAX_PAYLOAD;
}

/* msg_num_pkts returns how many packets a `len`-byte message takes. */
static uint32_t msg_num_pkts(size_t len, uint32_t head_len)
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

static void htab_insert(struct htab *t, struct hnode *n, uint64_t hash)
{
	if (t->count > t->mask)
		htab_grow(t);
	n->hash = hash;
	n->next = t->buckets[hash & t->mask];
	t->buckets[hash & t->mask] = n;
	t->count++;
}

static void htab_remove(struct htab *t, struct hnode *n)
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

static struct hnode *htab_bucket(const struct htab *t, uint64_t hash)
{
	return t->buckets[hash & t->mask];
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- timer heap ----------------------------------------------------------------- */

/* heap_reserve makes room for `n` armed timers, so that arming never fails later. */
static int heap_reserve(struct eng *e, size_t n)
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
static void tmr_arm(struct eng *e, struct tmr *t, uint64_t deadline)
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

static void tmr_disarm(struct eng *e, struct tmr *t)
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

static int rasm_init(struct rasm *r, uint32_t head_len, uint32_t max_pkts, bool enc)
{
	memset(r, 0, sizeof(*r));
	r->enc = enc;
	r->bits = calloc((max_pkts + 63) / 64, sizeof(uint64_t));
	if (!r->bits)
		return -ENOMEM;
	r->bits_cap = max_pkts;
	r->head_len = head_len;
	return 0;
}

static void rasm_cleanup(struct rasm *r)
{
	free(r->buf);
	free(r->bits);
	r->buf = NULL;
	r->bits = NULL;
}

/* rasm_max_pkts returns how many packets a message of at most `max_len` bytes may have. */
static uint32_t rasm_max_pkts(size_t max_len, uint32_t head_len)
{
	uint32_t n = msg_num_pkts(max_len, head_len);
	return n < 2 ? 2 : n;
}

static bool rasm_has(const struct rasm *r, uint32_t idx)
{
	return r->bits[idx / 64] & (1ull << (idx % 64));
}

/*
 * rasm_add validates one packet of a multi-packet message against what is
 * known so far and stores it. F|L packets are the caller's business. The
 * buffer grows with what arrives, up to what the message can still be, so a
 * flood of first packets claiming huge counts costs little memory.
 *
 * With `enc` (encrypted request framing) the first packet says 0xFFFF and
 * packet 1 says N-1, which no middle packet (2..N-2) can say and only the last
 * packet (which has L) shares. So until the last packet tells N, a full
 * packet with p_order p is parked at slot p; then the one at slot N-1, if
 * any, is packet 1 and moves to slot 1. The parked packets stay within what
 * max_len allows (one packet past it at most).
 */
static enum rasm_res rasm_add(struct rasm *r, const struct r2p2_hdr *h, const uint8_t *payload,
			      size_t n, size_t max_len)
{
	bool first = h->flags & R2P2_F_FIRST, last = h->flags & R2P2_F_LAST;
	uint32_t p = ntohs(h->p_order), idx;
	size_t end, min_total;

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
		if (r->enc && last && !r->num_pkts && idx >= 2 && rasm_has(r, idx)) {
			memcpy(r->buf + pkt_off(1, r->head_len), r->buf + pkt_off(idx, r->head_len),
			       R2P2_MAX_PAYLOAD);
			r->bits[1 / 64] |= 1ull << (1 % 64);
			r->bits[idx / 64] &= ~(1ull << (idx % 64));
		}
	}
	if (rasm_has(r, idx))
		return RASM_DUP;

	if (end > r->cap) {
		/*
		 * The first allocation fits exactly what arrived (14 bytes for a
		 * request's packet 0, which is all a flood of first packets gets),
		 * later ones at least double.
		 */
		size_t limit = max_len, cap = r->cap ? r->cap * 2 : end;
		if (r->cap && cap < 4 * R2P2_MAX_PAYLOAD)
			cap = 4 * R2P2_MAX_PAYLOAD;
		uint32_t known = r->num_pkts	    ? r->num_pkts
				 : last		    ? idx + 1
				 : first && !r->enc ? p
						    : 0;
		if (known && pkt_off(known - 1, r->head_len) + R2P2_MAX_PAYLOAD < limit)
			limit = pkt_off(known - 1, r->head_len) + R2P2_MAX_PAYLOAD;
		if (last)
			limit = end; /* the exact length is known now */
		else if (r->len && r->len < limit)
			limit = r->len;
		if (cap > limit)
			cap = limit;
		if (cap < end)
			cap = end;
		uint8_t *b = realloc(r->buf, cap);
		if (!b)
			return RASM_NOMEM;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + end - n, payload, n);
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
	return r->num_pkts && r->num_recv == r->num_pkts ? RASM_DONE : RASM_MORE;
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

/* A message to packetise: what send_msg_pkt needs besides the packet index. */
struct msg_out {
	unsigned type, policy;
	uint8_t free_flags; /* R2P2_F_FREE_MASK bits put on every packet */
	bool enc_count;	    /* encrypted request framing: 0xFFFF, then N-1 in packet 1 */
	uint16_t rid;
	const uint8_t *msg;
	size_t len;
	uint32_t head_len, num_pkts;
};

/* send_msg_pkt sends packet `idx` of `m` to `dst`. */
static void send_msg_pkt(struct eng *e, unsigned sock, const struct r2p2_addr *dst,
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

static void send_drop(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
		      uint8_t free_flags)
{
	send_pkt(e, sock, dst, R2P2_DROP, R2P2_FIXED_ROUTE, R2P2_F_FIRST | R2P2_F_LAST | free_flags,
		 rid, 1, "DROP", 4);
}

static void send_ack(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
		     uint8_t free_flags)
{
	send_pkt(e, sock, dst, R2P2_ACK, R2P2_FIXED_ROUTE, R2P2_F_FIRST | R2P2_F_LAST | free_flags,
		 rid, 1, "ACK", 3);
}

/*
 * send_feedback tells the router that the request (`client`, `rid`) is
 * finished, so that its count of outstanding requests for us goes down. Sent
 * once per answered request (response or DROP), never for a resend.
 */
static void send_feedback(struct eng *e, unsigned sock, const struct r2p2_addr *client,
			  uint16_t rid)
{
	struct r2p2_feedback fb = {.rid = htons(rid), .port = client->port};

	if (!e->cfg.has_router)
		return;
	if (client->family == AF_INET)
		memcpy(&fb.ip, client->addr, 4);
	send_pkt(e, sock, &e->cfg.router, R2P2_FEEDBACK, 0, R2P2_F_FIRST | R2P2_F_LAST, rid, 1, &fb,
		 sizeof(fb));
}

/* ---- server role ---------------------------------------------------------------- */

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

static void srv_free(struct eng *e, struct sstate *st)
{
	struct sslot *s = &e->slots[st->slot];

	tmr_disarm(e, &st->tmr);
	htab_remove(&e->servers, &st->hnode);
	if (st->phase == SP_CACHED)
		cache_unlink(e, st);
	s->st = NULL;
	if (++s->gen == 0) /* handles are never 0 */
		s->gen = 1;
	s->next_free = e->free_slot;
	e->free_slot = st->slot;
	rasm_cleanup(&st->rasm);
	free(st->resp);
	free(st);
	e->num_sstates--;
}

/*
 * srv_new creates the state of a new request, or returns NULL when the bound
 * max_server_states is reached and no cached response can be evicted (or
 * memory is short): the caller then answers DROP.
 */
static struct sstate *srv_new(struct eng *e, unsigned sock, const struct r2p2_addr *src,
			      uint16_t rid, uint8_t policy, uint8_t flags, uint64_t first_hash)
{
	struct sstate *st;

	if (e->num_sstates >= e->cfg.max_server_states) {
		if (!e->cache_head)
			return NULL;
		srv_free(e, e->cache_head);
	}
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
	st = calloc(1, sizeof(*st));
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

/* srv_send_answer (re)sends the cached answer of `st`. */
static void srv_send_answer(struct eng *e, struct sstate *st)
{
	if (st->resp_type == R2P2_DROP) {
		send_drop(e, st->sock, &st->src, st->rid, st->flags);
		return;
	}
	/* Responses keep the plain framing (count first) in every mode. */
	struct msg_out m = {
	    .type = R2P2_RESPONSE,
	    .policy = R2P2_FIXED_ROUTE,
	    .free_flags = st->flags,
	    .rid = st->rid,
	    .msg = st->resp,
	    .len = st->resp_len,
	    .head_len = R2P2_MAX_PAYLOAD,
	    .num_pkts = msg_num_pkts(st->resp_len, R2P2_MAX_PAYLOAD),
	};
	for (uint32_t i = 0; i < m.num_pkts; i++)
		send_msg_pkt(e, st->sock, &st->src, &m, i);
}

/* srv_answer moves `st` to SP_CACHED with its answer already stored, and sends it. */
static void srv_answer(struct eng *e, struct sstate *st, uint8_t type, uint64_t now)
{
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
	tmr_arm(e, &st->tmr, now + e->cfg.dedup_window_ns);
	srv_send_answer(e, st);
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

/* srv_dup_first handles a byte-identical copy of the first packet of a request we know. */
static void srv_dup_first(struct eng *e, struct sstate *st)
{
	switch (st->phase) {
	case SP_REASSEMBLING:
		/* The client retransmits because our ACK or some later packet got lost. */
		e->stats.rx_duplicate++;
		send_ack(e, st->sock, &st->src, st->rid, st->flags);
		break;
	case SP_EXECUTING:
		e->stats.rx_duplicate++;
		break;
	case SP_CACHED:
		e->stats.req_retransmit++;
		srv_send_answer(e, st);
		break;
	}
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
	if (st->phase != SP_REASSEMBLING) {
		e->stats.rx_duplicate++;
		return;
	}
	switch (rasm_add(&st->rasm, h, payload, n, e->cfg.max_msg_len)) {
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
	}
}

/*
 * srv_first_ok checks a first packet (`n` payload bytes) on its own, before it may
 * touch any state. Returns false when it was dropped or refused; `*out_enc` says it
 * starts an encrypted multi-packet request.
 */
static bool srv_first_ok(struct eng *e, unsigned sock, const struct r2p2_addr *src,
			 const struct r2p2_hdr *h, size_t n, bool *out_enc)
{
	uint16_t rid = ntohs(h->rid), p = ntohs(h->p_order);
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	uint8_t free_flags = h->flags & R2P2_F_FREE_MASK;
	bool enc = false;

	*out_enc = false;
	if (single) {
		if (p != 1 || n > R2P2_MAX_PAYLOAD) {
			e->stats.rx_bad_order++;
			return false;
		}
		if (n > e->cfg.max_msg_len) {
			e->stats.rx_too_big++;
			srv_refuse(e, sock, src, rid, free_flags);
			return false;
		}
		return true;
	}
	/*
	 * Encrypted (free bits set) multi-packet requests, and only they,
	 * start with p_order 0xFFFF: the count comes later.
	 */
	enc = p == ENC_UNKNOWN;
	if (enc != (free_flags != 0) || p < 2 || n != R2P2_MIN_PAYLOAD) {
		e->stats.rx_bad_order++;
		return false;
	}
	if (pkt_off(enc ? 1 : p - 1, R2P2_MIN_PAYLOAD) + 1 > e->cfg.max_msg_len) {
		e->stats.rx_too_big++;
		srv_refuse(e, sock, src, rid, free_flags);
		return false;
	}
	*out_enc = enc;
	return true;
}

static void srv_input(struct eng *e, unsigned sock, const struct r2p2_addr *src,
		      const struct r2p2_hdr *h, const uint8_t *pkt, size_t len, uint64_t now)
{
	const uint8_t *payload = pkt + R2P2_HDR_LEN;
	size_t n = len - R2P2_HDR_LEN;
	uint16_t rid = ntohs(h->rid), p = ntohs(h->p_order);
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	uint8_t free_flags = h->flags & R2P2_F_FREE_MASK;
	struct sstate *st;
	uint64_t hash;
	bool enc;

	if (!(h->flags & R2P2_F_FIRST)) {
		srv_rest_input(e, src, h, payload, n, now);
		return;
	}
	if (!srv_first_ok(e, sock, src, h, n, &enc))
		return;

	hash = fnv1a(FNV_BASIS ^ e->hkey[0], pkt, len);
	st = srv_lookup(e, src, rid);
	if (st) {
		if (st->first_hash == hash) {
			srv_dup_first(e, st);
			return;
		}
		/* Same (source, rid), other bytes: the client's rids wrapped around. */
		srv_free(e, st);
	}
	st = srv_new(e, sock, src, rid, r2p2_hdr_policy(h), free_flags, hash);
	if (!st) {
		e->stats.rx_no_state++;
		srv_refuse(e, sock, src, rid, free_flags);
		return;
	}
	if (single) {
		srv_deliver(e, st, payload, n, now);
		return;
	}
	st->phase = SP_REASSEMBLING;
	if (rasm_init(&st->rasm, R2P2_MIN_PAYLOAD,
		      enc ? rasm_max_pkts(e->cfg.max_msg_len, R2P2_MIN_PAYLOAD) : p, enc) < 0 ||
	    rasm_add(&st->rasm, h, payload, n, e->cfg.max_msg_len) != RASM_MORE) {
		srv_free(e, st);
		e->stats.rx_no_state++;
		srv_refuse(e, sock, src, rid, free_flags);
		return;
	}
	tmr_arm(e, &st->tmr, now + e->cfg.reassembly_timeout_ns);
	send_ack(e, sock, src, rid, free_flags);
}

static void srv_expire(struct eng *e, struct sstate *st)
{
	if (st->phase != SP_CACHED)
		e->stats.req_gc++;
	srv_free(e, st);
}

/* ---- client role ---------------------------------------------------------------- */

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

/*
 * call_complete reports the end of an unlinked call and frees it. The call
 * is out of every table first, so the callback may start new calls (even one
 * reusing this rid) or cancel others.
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
	e->ops->complete(e->ctx, c->cookie, status, payload, len);
	rasm_cleanup(&c->rasm);
	free(c->req);
	free(c);
}

static void call_finish(struct eng *e, struct call *c, int status, const uint8_t *payload,
			size_t len)
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
	if (!c->rasm.bits &&
	    rasm_init(&c->rasm, R2P2_MAX_PAYLOAD,
		      rasm_max_pkts(e->cfg.max_msg_len, R2P2_MAX_PAYLOAD), false) < 0) {
		call_finish(e, c, -ENOMEM, NULL, 0);
		return;
	}
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
		call_finish(e, c, -ENOMEM, NULL, 0);
		return;
	}
}

static void cli_input(struct eng *e, unsigned sock, const struct r2p2_addr *src,
		      const struct r2p2_hdr *h, const uint8_t *pkt, size_t len)
{
	const uint8_t *payload = pkt + R2P2_HDR_LEN;
	size_t n = len - R2P2_HDR_LEN;
	bool single = (h->flags & (R2P2_F_FIRST | R2P2_F_LAST)) == (R2P2_F_FIRST | R2P2_F_LAST);
	struct call *c = call_lookup(e, sock, ntohs(h->rid));

	if (!c || (c->peer_fixed && !addr_eq(&c->peer, src))) {
		e->stats.rx_unmatched++;
		return;
	}
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
		if (c->num_pkts == 1) {
			e->stats.rx_unmatched++;
			return;
		}
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

static void call_expire(struct eng *e, struct call *c, uint64_t now)
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
	call_send(e, c, &c->dst, 0);
	tmr_arm(e, &c->tmr, now + c->timeout_ns);
}

/* ---- public API ----------------------------------------------------------------- */

void eng_config_default(struct eng_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_msg_len = 1 << 20;
	cfg->reassembly_timeout_ns = 1000000000ull;
	cfg->dedup_window_ns = 2000000000ull;
	cfg->exec_timeout_ns = 30000000000ull;
	cfg->max_server_states = 65536;
	cfg->max_client_calls = 16384;
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
	if (htab_init(&e->calls, 64) < 0 || htab_init(&e->servers, 64) < 0) {
		htab_cleanup(&e->calls);
		free(e);
		errno = ENOMEM;
		return NULL;
	}
	return e;
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
	free(e->slots);
	free(e->heap);
	htab_cleanup(&e->calls);
	htab_cleanup(&e->servers);
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
	/* The free flag bits mark encrypted modes; plain mode knows none of them. */
	if (h.magic != R2P2_MAGIC || h.header_size != R2P2_HDR_LEN ||
	    ((h.flags & R2P2_F_FREE_MASK) && !e->cfg.allow_flags)) {
		e->stats.rx_bad_header++;
		return;
	}
	addr_norm(&src, src_in);
	switch (r2p2_hdr_type(&h)) {
	case R2P2_REQUEST:
		srv_input(e, sock, &src, &h, pkt, len, now);
		return;
	case R2P2_RESPONSE:
	case R2P2_ACK:
	case R2P2_DROP:
		cli_input(e, sock, &src, &h, pkt, len);
		return;
	default: /* FEEDBACK is for routers; 5..15 are RAFT or unknown */
		e->stats.rx_bad_type++;
		return;
	}
}

uint16_t eng_completing_rid(const struct eng *e)
{
	return e->completing_rid;
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
	    (args->flags & ~R2P2_F_FREE_MASK) || (args->flags && !e->cfg.allow_flags))
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

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->req = malloc(args->len ? args->len : 1);
	if (!c->req) {
		free(c);
		return -ENOMEM;
	}
	if (args->len)
		memcpy(c->req, args->payload, args->len);
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

int eng_respond(struct eng *e, uint64_t handle, const void *payload, size_t len, uint64_t now)
{
	struct sstate *st = srv_from_handle(e, handle);

	if (!st || st->phase != SP_EXECUTING)
		return -ENOENT;
	if (len > e->cfg.max_msg_len)
		return -EMSGSIZE;
	if (len && !payload)
		return -EINVAL;
	/* The copy is what gets sent now and resent to retransmitted requests. */
	if (len) {
		st->resp = malloc(len);
		if (!st->resp)
			return -ENOMEM;
		memcpy(st->resp, payload, len);
	}
	st->resp_len = len;
	e->stats.resp_sent++;
	srv_answer(e, st, R2P2_RESPONSE, now);
	return 0;
}

int eng_reject(struct eng *e, uint64_t handle, uint64_t now)
{
	struct sstate *st = srv_from_handle(e, handle);

	if (!st || st->phase != SP_EXECUTING)
		return -ENOENT;
	srv_answer(e, st, R2P2_DROP, now);
	return 0;
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
}

uint64_t eng_next_deadline(const struct eng *e)
{
	return e->heap_len ? e->heap[0]->deadline : UINT64_MAX;
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
