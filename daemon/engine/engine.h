/* SPDX-License-Identifier: MIT */
/*
 * The R2P2 protocol engine: a pure state machine. Packets and time go in,
 * packets (through eng_ops.send) and events (eng_ops.request, eng_ops.complete)
 * come out. No sockets, no clocks, no threads: one engine belongs to one worker
 * and is only ever touched by that worker's thread.
 *
 * Roles. One engine plays both roles of its worker:
 *  - server: REQUEST packets arriving on a service socket are reassembled,
 *    ACKed when multi-packet, deduplicated, and handed up once; the response
 *    given to eng_respond() is packetised, sent, and kept for the dedup window
 *    so that a retransmitted request gets the same answer resent instead of
 *    being executed twice. While a request is in progress (reassembling, or
 *    handed up and not answered), a first packet with its (source, rid) but
 *    other bytes is dropped (rx_conflict): it never evicts the request. Once
 *    answered, other bytes under the same (source, rid) start a new request.
 *  - client: eng_call() packetises a request, sends it (first packet only when
 *    multi-packet, the rest after the ACK), retransmits on timeout within a
 *    budget, reassembles the RESPONSE and completes the call exactly once.
 *
 * Encrypted modes. The six free flag bits of the header (R2P2_F_FREE_MASK) mark
 * a message as encrypted; the engine never looks into payloads. With
 * eng_config.allow_flags a call may set free bits (eng_call_args.flags): every
 * packet of the request carries them, the server reports them
 * (eng_ops.request_ex), and everything it sends back for that request
 * (RESPONSE, ACK, DROP) carries the same bits. A multi-packet request with free
 * bits uses the encrypted framing: the first packet's p_order is 0xFFFF (count
 * not yet known) and packet 1 carries N-1 (docs/PROTOCOL.md, "Encrypted message
 * framing in the R2P2 header"). Without allow_flags any packet with a free bit
 * other than R2P2_F_EXT is dropped (rx_bad_header), as upstream-only plain mode
 * requires; R2P2_F_EXT, plain mode's mark of an extension block, is always taken
 * and sent like the others (so its multi-packet requests use the same framing). The switch
 * is per engine, not per socket: a worker that serves or calls any encrypted
 * service turns it on, and the layer above checks that a service gets the
 * flags it expects.
 *
 * Time is a monotonic nanosecond count chosen by the caller.
 * Nothing that arrives from the network is trusted: bad packets are dropped and
 * counted in eng_stats; nothing asserts on input.
 */
#ifndef R2P2D_ENGINE_H
#define R2P2D_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/types.h>

/* An IPv4 or IPv6 UDP endpoint, compact and comparable with memcmp. */
struct r2p2_addr {
	uint16_t family;  /* AF_INET or AF_INET6 */
	__be16 port;	  /* network byte order */
	uint8_t addr[16]; /* IPv4: first 4 bytes, the rest zero */
};
_Static_assert(sizeof(struct r2p2_addr) == 20, "compact");

struct eng_config {
	uint32_t max_msg_len;		/* largest request/response accepted or sent */
	uint64_t reassembly_timeout_ns; /* half-received messages are freed after this */
	uint64_t dedup_window_ns;	/* completed responses are kept this long */
	uint64_t exec_timeout_ns;	/* a request the app never answers is freed after this */
	uint32_t max_server_states; /* bound on concurrent server-side requests (incl. cached) */
	uint32_t max_client_calls;  /* bound on concurrent calls (<= 32768) */
	bool has_router;	    /* send FEEDBACK to `router` after each response */
	struct r2p2_addr router;
	bool allow_flags;   /* accept and send free flag bits (encrypted modes) */
	uint64_t hash_seed; /* keys the engine's hash tables; 0: a fixed key */
	/* bytes all requests still being reassembled may hold (0: no limit) */
	uint64_t max_reassembly_bytes;
	/* requests one source address (any port) may have reassembling (0: no limit) */
	uint32_t max_half_open_per_source;
};

/*
 * eng_config_default fills `cfg` with the defaults documented in docs/PROTOCOL.md
 * (allow_flags false, hash_seed 0). A daemon sets hash_seed to a random value so
 * that a peer cannot choose addresses, ports and rids that collide in a bucket.
 */
void eng_config_default(struct eng_config *cfg);

struct eng_ops {
	/*
	 * send transmits one UDP datagram (the concatenation of `iov`) from socket
	 * `sock` to `dst`. It may not call back into the engine.
	 */
	void (*send)(void *ctx, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
		     int iovcnt);
	/*
	 * request hands up one complete request received on socket `sock`. `handle`
	 * names it for eng_respond()/eng_reject(). `payload` is valid only during
	 * the callback. It may call eng_respond() or eng_reject() on `handle`.
	 */
	void (*request)(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
			unsigned policy, const uint8_t *payload, size_t len);
	/*
	 * request_ex is `request` plus the request's free flag bits `flags` (0 in
	 * plain mode; within R2P2_F_FREE_MASK). Used instead of `request` when
	 * non-NULL; at least one of the two must be set.
	 */
	void (*request_ex)(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
			   unsigned policy, uint8_t flags, const uint8_t *payload, size_t len);
	/*
	 * complete ends the call `cookie`: `status` is 0 and the response is in
	 * `payload` (valid only during the callback), or `status` is a negative
	 * errno: -ETIMEDOUT (retransmission budget spent), -ECONNREFUSED (the server
	 * answered DROP), -EMSGSIZE (response larger than max_msg_len), -ECANCELED
	 * (eng_cancel). Called exactly once per accepted call. It may call eng_call().
	 */
	void (*complete)(void *ctx, uint64_t cookie, int status, const uint8_t *payload,
			 size_t len);
};

struct eng_call_args {
	unsigned sock;	      /* socket the request leaves from and the response comes to */
	struct r2p2_addr dst; /* server, or router when `via_router` */
	bool via_router;      /* accept the response/ACK from any source */
	unsigned policy;      /* enum r2p2_policy, put in the request header */
	const void *payload;
	size_t len;
	uint64_t cookie;      /* opaque, given back in eng_ops.complete */
	uint64_t timeout_ns;  /* per attempt */
	uint32_t max_retries; /* retransmissions after the first attempt */
	uint8_t flags;	      /* free flag bits for every request packet (allow_flags) */
	bool use_rid;	      /* send with `rid` (must be free on `sock`: else -EBUSY) */
	uint16_t rid;	      /* e.g. the rid of the exchange this call continues */
};

/* Counters; every dropped packet lands in exactly one rx_* counter. */
struct eng_stats {
	uint64_t rx_packets;
	uint64_t rx_runt;	/* shorter than the header */
	uint64_t rx_bad_header; /* bad magic or header_size */
	uint64_t rx_bad_type; /* unknown type, RAFT, FEEDBACK, or a type on the wrong socket role */
	uint64_t rx_bad_order;	 /* p_order/flags/length inconsistent with the message */
	uint64_t rx_duplicate;	 /* a packet already received */
	uint64_t rx_unmatched;	 /* response/ACK/DROP for no pending call */
	uint64_t rx_too_big;	 /* message over max_msg_len */
	uint64_t rx_no_state;	 /* server full (max_server_states): answered DROP */
	uint64_t rx_conflict;	 /* other bytes as first packet of a request in progress */
	uint64_t rx_unauthentic; /* responses the layer above refused (eng_keep_waiting) */
	uint64_t tx_packets;
	uint64_t req_received;	 /* complete requests handed up */
	uint64_t req_retransmit; /* retransmitted requests answered from the cache */
	uint64_t req_gc;	 /* half-received or never-answered requests freed */
	uint64_t resp_sent;
	uint64_t calls_started;
	uint64_t calls_ok;
	uint64_t calls_timeout;
	uint64_t calls_dropped; /* DROP received */
	uint64_t calls_failed;	/* other failures */
	uint64_t retransmits;	/* client retransmissions */
	uint64_t partial_gc;	/* half-received responses freed */
	uint64_t rx_no_memory;	/* request over max_reassembly_bytes even after evictions: DROP */
	uint64_t evict_source;	/* half-open requests evicted for their source's quota */
	uint64_t evict_full;	/* states evicted for a new one (max_server_states) */
	uint64_t evict_memory;	/* half-open requests evicted for max_reassembly_bytes */
	uint64_t amp_limited;	/* packets a duplicate request packet did not get (3x limit) */
	uint64_t amp_validated; /* states whose client echoed their cookie (address validated) */
	uint64_t amp_echoed;	/* challenge cookies this client echoed */
	uint64_t allocs;	/* states and message copies allocated: a steady flow reuses them */
};

struct eng;

/* eng_new returns an engine or NULL (errno set). `ops` and `ctx` must outlive it. */
struct eng *eng_new(const struct eng_config *cfg, const struct eng_ops *ops, void *ctx);

/* eng_free fails every pending call with -ECANCELED (through ops.complete) and frees. NULL ok. */
void eng_free(struct eng *e);

/*
 * eng_input processes one datagram of `len` bytes from `src` received on
 * socket `sock` at time `now`. Requests are served on any socket; responses,
 * ACKs and DROPs are matched against calls made on the same socket.
 */
void eng_input(struct eng *e, unsigned sock, const struct r2p2_addr *src, const uint8_t *pkt,
	       size_t len, uint64_t now);

/*
 * eng_call starts a call and sends its first packet. Returns 0, or -EMSGSIZE
 * (over max_msg_len, or a request of more than 0xFFFE packets: 0xFFFF is not a
 * count), -ENOBUFS (max_client_calls in flight), -EINVAL (also: `flags` outside
 * R2P2_F_FREE_MASK, or other than R2P2_F_EXT without allow_flags),
 * -ENOMEM, or -ECANCELED (called from a completion run by eng_free).
 * On error nothing was sent and ops.complete will not be called.
 */
int eng_call(struct eng *e, const struct eng_call_args *args, uint64_t now);

/*
 * eng_reconfigure applies to a running engine what may change under requests and
 * calls in flight: the timeouts (each timer already armed keeps its deadline), the
 * router, allow_flags and the reassembly bounds (max_reassembly_bytes,
 * max_half_open_per_source: a lower bound evicts as new packets arrive). The
 * sizes fixed at eng_new (max_msg_len, max_client_calls, max_server_states) and
 * hash_seed stay. Returns 0, or -EINVAL (`cfg` refused, as by eng_new) and nothing
 * changed.
 */
int eng_reconfigure(struct eng *e, const struct eng_config *cfg);

/*
 * eng_set_next_rid sets the rid the next eng_call tries first (rids are then
 * used sequentially, skipping those in flight on the call's socket). A new
 * engine starts at 0. For tests, and for a worker that wants to start at a
 * random rid after a restart.
 */
void eng_set_next_rid(struct eng *e, uint16_t rid);

/*
 * eng_completing_rid returns the rid of the call whose ops.complete is running (for
 * a continuation that must keep its exchange's identity, see eng_call_args.use_rid).
 */
uint16_t eng_completing_rid(const struct eng *e);

/*
 * eng_completing_peer returns the address that answered the call whose ops.complete is
 * running (its destination when nothing answered). Through a router that is the server
 * the router chose, where the rest of the exchange must go.
 */
const struct r2p2_addr *eng_completing_peer(const struct eng *e);

/*
 * eng_completing_sends returns how many times the first packet of the call whose
 * ops.complete is running went out (1, plus one per retransmission): whether an
 * earlier copy of the request may have reached the server.
 */
uint32_t eng_completing_sends(const struct eng *e);

/*
 * eng_keep_waiting, called from ops.complete for a call completing with status 0
 * or -ECONNREFUSED (a DROP), says that the response or the DROP was not the
 * server's (it did not authenticate): the call
 * is not completed but waits on, as if the response had not come, until its
 * attempt's deadline (then it retransmits or times out as usual; nothing extends
 * it). Counted in rx_unauthentic. The callback must then start no call of its own
 * under this rid and return at once.
 */
void eng_keep_waiting(struct eng *e);

/* eng_cancel completes every call whose cookie is `cookie` with -ECANCELED now. Returns how many.
 */
int eng_cancel(struct eng *e, uint64_t cookie);

/*
 * eng_respond sends `len` bytes as the response to the request `handle` and
 * keeps it for the dedup window. Its packets carry the request's free flag bits. Returns 0, -ENOENT
 * (unknown or expired handle, or already answered), -EMSGSIZE.
 */
int eng_respond(struct eng *e, uint64_t handle, const void *payload, size_t len, uint64_t now);

/*
 * eng_answer is eng_respond for an answer of the transport's own, not the app's (a
 * tls handshake flight, a refusal): toward an address not yet validated, even its
 * first sending stays within 3 times the request's bytes; the rest goes out once the
 * client echoes the challenge cookie (docs/PROTOCOL.md, "Amplification limit").
 */
int eng_answer(struct eng *e, uint64_t handle, const void *payload, size_t len, uint64_t now);

/*
 * eng_reject answers the request `handle` with DROP (no server app), with the
 * request's free flag bits. Returns 0 or -ENOENT.
 */
int eng_reject(struct eng *e, uint64_t handle, uint64_t now);

/* eng_tick runs every timer due at `now`: retransmissions, timeouts, garbage collection. */
void eng_tick(struct eng *e, uint64_t now);

/* eng_next_deadline returns when eng_tick next has work, or UINT64_MAX. */
uint64_t eng_next_deadline(const struct eng *e);

/* eng_get_stats copies the counters. */
void eng_get_stats(const struct eng *e, struct eng_stats *out);

/* eng_num_pending returns the number of calls in flight and server states held. */
void eng_num_pending(const struct eng *e, size_t *out_calls, size_t *out_server_states);

/*
 * eng_reassembly_bytes returns the bytes held for requests still being reassembled
 * (buffers, packets kept aside, bitmaps; not the allocator's overhead).
 */
size_t eng_reassembly_bytes(const struct eng *e);

#endif /* R2P2D_ENGINE_H */
