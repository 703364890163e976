/* SPDX-License-Identifier: MIT */
/*
 * engine_int.h: the engine's insides, shared only by the files that make up the engine
 * (engine.h is the contract):
 *   engine.c         hashing, hash tables, the timer heap, reassembly and packetisation
 *                    (what both roles use), and the engine's life cycle, input and timers
 *   engine_client.c  the client role: calls, their retransmission and their responses
 *   engine_server.c  the server role: request states, their handles and the response cache
 */
#ifndef R2P2D_ENGINE_INT_H
#define R2P2D_ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <r2p2/wire.h>

#include "engine.h"

/* p_order of the first packet of an encrypted multi-packet request: count not yet known. */
#define ENC_UNKNOWN 0xFFFF

#define TMR_IDLE UINT32_MAX
#define SLOT_NONE UINT32_MAX

enum tmr_kind { TMR_CALL, TMR_SERVER };

/*
 * A free list of one kind of state (a call, a server state), so that a steady flow
 * of RPCs allocates nothing: freed states wait here, up to POOL_MAX of them, for the
 * next one. Under AddressSanitizer a state in the list is poisoned, so a use after
 * its free is still caught.
 */
#define POOL_MAX 256
struct pool {
	void *head;
	uint32_t num;
	size_t size;
};

/* pool_get returns a zeroed state (calloc when the list is empty, counted in `*allocs`),
 * NULL when memory is short; pool_put takes it back (free when the list is full);
 * pool_drain frees all. */
void *pool_get(struct pool *p, uint64_t *allocs);
void pool_put(struct pool *p, void *obj);
void pool_drain(struct pool *p);

/* Messages up to these sizes are copied into their state, not into an allocation: a
 * call's request (a sealed 4-byte request is 131 bytes), and an answer kept for the
 * dedup window (held by the ten thousand, so smaller; a sealed 4-byte answer is 45). */
#define CALL_INLINE 192
#define ANSWER_INLINE 64

/* msg_copy copies `len` bytes of `src` into `inl` (`cap` bytes) when they fit, else
 * into an allocation (counted in e->stats.allocs); NULL when memory is short.
 * msg_free frees such a copy (`inl`: nothing to free). */
uint8_t *msg_copy(struct eng *e, uint8_t *inl, size_t cap, const void *src, size_t len);
void msg_free(uint8_t *copy, const uint8_t *inl);

/* A deadline in the engine's heap. Embedded first in its owner. An answered server
 * state (SP_CACHED) is out of the heap: `deadline` is its place in the answer FIFO. */
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

/* A packet kept aside: it arrived beyond what the buffer may cover yet. */
struct rchunk {
	struct rchunk *next;
	uint32_t idx;
	uint32_t len;
	uint8_t data[];
};

/* Bytes held by the reassemblies that share it, and the most they may hold (0: no limit). */
struct rbudget {
	size_t used;
	size_t max;
};

/*
 * Reassembly of one multi-packet message. Packet 0 carries `head_len` bytes
 * (R2P2_MIN_PAYLOAD for requests, R2P2_MAX_PAYLOAD for responses), every other
 * packet but the last R2P2_MAX_PAYLOAD, so each packet's offset follows from
 * its index alone: packets that arrive before the one saying how many there
 * are can be stored right away.
 *
 * Memory follows the bytes that arrived, never a count a packet claims: `buf`
 * holds the message from offset 0 and grows geometrically, but never past
 * twice the bytes received (plus a few packets); a packet beyond that is kept
 * in a chunk of its own until the message is complete, when the chunks are
 * copied into `buf`. The bitmap grows the same way, up to `bits_cap` packets.
 */
struct rasm {
	uint8_t *buf;
	size_t cap;
	size_t len;	       /* message length, known once the last packet is in */
	struct rchunk *chunks; /* packets stored aside, in no order */
	size_t mem;	       /* bytes held: buf, chunks and bitmap */
	size_t recv_bytes;     /* payload bytes received */
	struct rbudget *bud;   /* charged with `mem`; NULL: no limit */
	uint64_t *bits;	       /* one bit per packet received */
	uint32_t bits_words;   /* words allocated in `bits` */
	uint32_t bits_cap;     /* packets the bitmap may hold; 0 until rasm_init */
	uint32_t num_pkts;     /* 0 until the first or the last packet says */
	uint32_t num_recv;
	uint32_t max_idx; /* highest index received (or slot parked in) */
	uint32_t head_len;
	bool enc; /* encrypted request framing: N comes from the last packet */
};

/* RASM_OVER: storing the packet would take `bud` past its max; nothing was changed. */
enum rasm_res { RASM_MORE, RASM_DONE, RASM_DUP, RASM_BAD, RASM_TOO_BIG, RASM_NOMEM, RASM_OVER };

enum sphase {
	SP_REASSEMBLING, /* multi-packet request, ACKed, waiting for the rest */
	SP_EXECUTING,	 /* handed up, waiting for eng_respond/eng_reject */
	SP_CACHED,	 /* answered; the answer is kept for retransmissions */
};

/* A source address (any port) with requests being reassembled, keyed by the address. */
struct srcq {
	struct hnode hnode;
	struct r2p2_addr addr;	    /* port 0 */
	uint32_t num;		    /* its SP_REASSEMBLING states */
	struct sstate *head, *tail; /* them, least recently active first */
};

/* Server side of one request, keyed by (src, rid). */
struct sstate {
	struct tmr tmr; /* first */
	struct hnode hnode;
	struct sstate *cache_prev, *cache_next; /* FIFO of SP_CACHED states */
	/* SP_REASSEMBLING: e->ho_head's list and srcq's, least recently active first */
	struct sstate *ho_prev, *ho_next, *src_prev, *src_next;
	struct srcq *srcq; /* non-NULL while on those lists */
	struct r2p2_addr src;
	uint64_t first_hash; /* keyed hash of the first packet: retransmission or conflict? */
	uint32_t slot;	     /* the handle is (e->slots[slot].gen << 32) | slot */
	unsigned sock;
	uint16_t rid;
	uint8_t policy;
	uint8_t phase;	   /* enum sphase */
	uint8_t resp_type; /* SP_CACHED: R2P2_RESPONSE or R2P2_DROP */
	uint8_t flags;	   /* the request's free flag bits, put on all we send back */
	struct rasm rasm;  /* SP_REASSEMBLING */
	uint8_t *resp;	   /* SP_CACHED, R2P2_RESPONSE: resp_inline or an allocation */
	size_t resp_len;
	uint8_t resp_inline[ANSWER_INLINE];
	bool req_multi; /* the request had more than one packet: its client answers an ACK */
	/*
	 * Amplification limit (engine_server.c, srv_resend): request bytes received
	 * and bytes sent in answer to duplicates, both since the state was created
	 * or answered; no resend before `amp_next`. SP_CACHED: the resend goes on
	 * from packet `amp_cursor`, `amp_left` packets of it still held back.
	 */
	uint64_t amp_in, amp_out, amp_next;
	uint32_t amp_cursor, amp_left;
	/* Address validation: the cookie sent in a challenge ACK; once the client echoed
	 * it (amp_valid), what the state sends is no longer limited, only rate-limited. */
	uint8_t amp_cookie[R2P2_COOKIE_LEN];
	bool amp_has_cookie, amp_valid;
	bool amp_strict; /* the answer is the transport's own (eng_answer): limited at once */
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
	bool has_from;	       /* a packet for this call came from `from` */
	struct r2p2_addr from; /* source of the last packet that matched the call */
	unsigned sock;
	uint16_t rid;
	uint8_t policy;
	uint8_t flags; /* free flag bits of the request; answers must carry the same */
	uint32_t retries_left;
	uint32_t sends;	   /* times the first packet went out */
	uint32_t num_pkts; /* of the request */
	uint8_t *req;	   /* req_inline, or an allocation for a larger one */
	size_t req_len;
	struct rasm rasm; /* multi-packet response, allocated at its first packet */
	uint8_t req_inline[CALL_INLINE];
};

struct eng {
	bool keep_call;		   /* set by eng_keep_waiting during ops.complete */
	uint32_t completing_sends; /* sends of the call whose ops.complete runs */
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
	uint16_t completing_rid;	  /* rid of the call in ops.complete */
	struct r2p2_addr completing_peer; /* who answered it (or its destination) */
	bool freeing;

	struct htab servers;
	struct pool call_pool, sstate_pool;
	struct sslot *slots;
	uint32_t num_slots, free_slot;
	size_t num_sstates;
	struct sstate *cache_head, *cache_tail;
	struct rbudget rbud;		  /* bytes held by requests being reassembled */
	struct sstate *ho_head, *ho_tail; /* SP_REASSEMBLING states, least recently active first */
	struct htab sources;		  /* struct srcq by source address */
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- engine.c: helpers both roles use ------------------------------------------- */

/* siphash13 is SipHash-1-3 of `len` bytes under `key`. */
uint64_t siphash13(const uint64_t key[2], const void *data, size_t len);
/* addr_norm copies `in` with the unused address bytes zeroed (for addr_eq). */
void addr_norm(struct r2p2_addr *out, const struct r2p2_addr *in);
/* addr_eq compares two addresses normalised by addr_norm. */
bool addr_eq(const struct r2p2_addr *a, const struct r2p2_addr *b);
/* pkt_off returns where packet `idx` starts in a message whose packet 0 carries `head_len`. */
size_t pkt_off(uint32_t idx, uint32_t head_len);
/* msg_num_pkts returns how many packets a `len`-byte message takes. */
uint32_t msg_num_pkts(size_t len, uint32_t head_len);

/* htab_insert files `n` under `hash`; htab_remove takes it out again. */
void htab_insert(struct htab *t, struct hnode *n, uint64_t hash);
void htab_remove(struct htab *t, struct hnode *n);
/* htab_bucket returns the chain that holds the nodes of `hash` (among others). */
struct hnode *htab_bucket(const struct htab *t, uint64_t hash);

/* heap_reserve makes room for `n` armed timers, so that arming never fails later. */
int heap_reserve(struct eng *e, size_t n);
/* tmr_arm sets or moves `t` to `deadline`; tmr_disarm stops it (idle is fine). */
void tmr_arm(struct eng *e, struct tmr *t, uint64_t deadline);
void tmr_disarm(struct eng *e, struct tmr *t);

/*
 * rasm_init prepares `r` for at most `max_pkts` packets (allocating nothing), its
 * memory charged to `bud` (NULL: not counted).
 */
void rasm_init(struct rasm *r, uint32_t head_len, uint32_t max_pkts, bool enc, struct rbudget *bud);
/* rasm_cleanup frees what `r` holds (a detached `buf` set to NULL aside) and uncharges it; it
 * may be called again. */
void rasm_cleanup(struct rasm *r);
/* rasm_max_pkts returns how many packets a message of at most `max_len` bytes may have. */
uint32_t rasm_max_pkts(size_t max_len, uint32_t head_len);
/* rasm_add validates one packet (not F|L) of a multi-packet message and stores it. */
enum rasm_res rasm_add(struct rasm *r, const struct r2p2_hdr *h, const uint8_t *payload, size_t n,
		       size_t max_len);

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
void send_msg_pkt(struct eng *e, unsigned sock, const struct r2p2_addr *dst,
		  const struct msg_out *m, uint32_t idx);
/* send_drop and send_ack send a single-packet DROP or ACK for `rid`. */
void send_drop(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
	       uint8_t free_flags);
void send_ack(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
	      uint8_t free_flags);
/*
 * send_cookie sends a single-packet ACK for `rid` whose payload is `tag` (3 bytes:
 * R2P2_CHALLENGE_TAG or R2P2_ECHO_TAG) and `cookie`: a server's address-validation
 * challenge, or a client's echo of one.
 */
void send_cookie(struct eng *e, unsigned sock, const struct r2p2_addr *dst, uint16_t rid,
		 uint8_t free_flags, const char *tag, const uint8_t cookie[R2P2_COOKIE_LEN]);
/* send_feedback tells the router (if any) that request (`client`, `rid`) is finished. */
void send_feedback(struct eng *e, unsigned sock, const struct r2p2_addr *client, uint16_t rid);

/* ---- engine_server.c ------------------------------------------------------------ */

/* srv_input takes a REQUEST packet of `len` bytes (header included). */
void srv_input(struct eng *e, unsigned sock, const struct r2p2_addr *src, const struct r2p2_hdr *h,
	       const uint8_t *pkt, size_t len, uint64_t now);
/*
 * srv_validate takes a client's echo of a challenge cookie for request (`src`, rid):
 * a match validates the address of that state and sends what its resend held back.
 */
void srv_validate(struct eng *e, const struct r2p2_addr *src, const struct r2p2_hdr *h,
		  const uint8_t cookie[R2P2_COOKIE_LEN]);
/* srv_expire ends `st`, whose timer ran out; srv_free frees it in any phase. */
void srv_expire(struct eng *e, struct sstate *st);
void srv_free(struct eng *e, struct sstate *st);
/* cache_expire frees the answered states whose dedup window ended by `now` (the FIFO's
 * head); cache_rewindow moves their expiries from a window of `old_ns` to `new_ns`. */
void cache_expire(struct eng *e, uint64_t now);
void cache_rewindow(struct eng *e, uint64_t old_ns, uint64_t new_ns);

/* ---- engine_client.c ------------------------------------------------------------ */

/* cli_input takes a RESPONSE, ACK or DROP packet of `len` bytes (header included). */
void cli_input(struct eng *e, unsigned sock, const struct r2p2_addr *src, const struct r2p2_hdr *h,
	       const uint8_t *pkt, size_t len);
/* call_expire retransmits `c`, whose timer ran out, or fails it when out of retries. */
void call_expire(struct eng *e, struct call *c, uint64_t now);
/* call_finish unlinks `c`, reports `status` (and the response) and frees it. */
void call_finish(struct eng *e, struct call *c, int status, const uint8_t *payload, size_t len);

#endif
