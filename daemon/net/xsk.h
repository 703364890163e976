/* SPDX-License-Identifier: MIT */
/*
 * The AF_XDP data path of one (interface, rx queue): a UMEM with its fill and
 * completion rings (struct xsk_queue), and one or more AF_XDP sockets bound to that
 * queue and sharing the UMEM (struct xsk_port), each with its own rx and tx ring.
 * A port receives and sends UDP datagrams; the Ethernet/VLAN/IPv4/IPv6/UDP headers
 * are parsed and built here, so callers see r2p2_addr endpoints and payloads only.
 *
 * This module never loads an XDP program (libxdp's default program is inhibited):
 * the caller puts xsk_port_fd() into the program's XSKMAP (daemon/net/xdp.c,
 * xdp_xsk_register).
 *
 * Frames. The UMEM's frames are split in two fixed pools: rx frames circulate
 * fill ring -> kernel -> rx ring -> callback -> fill ring, and are never held beyond
 * the callback; tx frames circulate free stack -> tx ring -> kernel -> completion
 * ring -> free stack. The fill ring is as large as the rx pool and the completion
 * ring as large as the tx pool, so recycling never finds either ring full.
 * Nothing is allocated per packet.
 *
 * Threads and sharing. A struct xsk_port belongs to one thread (its worker). When
 * several ports share one xsk_queue (one UMEM per queue, several workers per queue,
 * the XDP program choosing by flow hash), the shared fill ring, completion ring and
 * tx free stack are guarded by the queue's mutex, taken once per batch (one rx call,
 * one completion reap, one refill of the port's private cache of up to
 * XSK_TX_CACHE tx frames), never per packet. A lone port takes the same lock,
 * uncontended. Create all ports of a queue before their workers start; free the
 * ports after all of them stopped, then the queue.
 *
 * Errors: functions return 0 (or a count) or a negative errno; constructors return
 * NULL, set errno, and write a message naming interface, queue and mode into `err`
 * (`err_len` bytes; `err` may be NULL when `err_len` is 0).
 */
#ifndef R2P2D_XSK_H
#define R2P2D_XSK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "engine.h" /* struct r2p2_addr */

/* How the socket is bound (xsk_port_config.mode). */
enum xsk_mode {
	XSK_MODE_AUTO = 0,     /* zero-copy if the driver has it, else copy */
	XSK_MODE_COPY = 1,     /* XDP_COPY: works on every driver, veth included */
	XSK_MODE_ZEROCOPY = 2, /* XDP_ZEROCOPY: fails unless the driver supports it */
};

/* The largest number of tx frames a port keeps in its private cache. */
#define XSK_TX_CACHE 64

struct xsk_port_config {
	uint32_t num_frames; /* UMEM frames, a power of two >= 64; 0: 4096 */
	uint32_t frame_size; /* 2048 or 4096; 0: 2048 */
	uint32_t ring_size;  /* rx and tx ring entries of each socket, a power of two; 0: num_frames
				/ 2 */
	enum xsk_mode mode;  /* XDP_USE_NEED_WAKEUP is always set */
	bool verify_rx_csum; /* drop received UDP datagrams whose checksum is wrong (see below) */
};

/*
 * xsk_port_config_default fills `cfg` with 4096 frames of 2048 bytes, rings of 2048,
 * XSK_MODE_AUTO and verify_rx_csum false: a datagram sent by a local socket over a
 * veth pair arrives with only the pseudo-header sum in its checksum field (checksum
 * offload), and a NIC has already verified it; encrypted modes authenticate anyway.
 */
void xsk_port_config_default(struct xsk_port_config *cfg);

/* Counters of one port. Only the port's thread writes them. */
struct xsk_port_stats {
	uint64_t rx;		   /* UDP datagrams handed to the rx callback */
	uint64_t tx;		   /* datagrams put on the tx ring */
	uint64_t rx_dropped_parse; /* rx frames that were not a well-formed UDP datagram */
	uint64_t rx_bad_csum;	   /* dropped for a wrong UDP checksum (verify_rx_csum) */
	uint64_t tx_no_frame;	   /* xsk_port_send found no free tx frame */
	uint64_t tx_ring_full;	   /* xsk_port_send found the tx ring full */
	uint64_t kicks;		   /* sendto/recvfrom wakeups issued */
	/* the kernel's XDP_STATISTICS of the socket, read by xsk_port_get_stats */
	uint64_t k_rx_dropped;	       /* dropped for other reasons */
	uint64_t k_rx_invalid_descs;   /* invalid fill descriptors */
	uint64_t k_tx_invalid_descs;   /* invalid tx descriptors */
	uint64_t k_rx_ring_full;       /* dropped because the rx ring was full */
	uint64_t k_rx_fill_ring_empty; /* the fill ring was empty when a packet came */
	uint64_t k_tx_ring_empty;      /* the kernel found the tx ring empty */
};

struct xsk_queue; /* private: one UMEM, its fill and completion rings, the tx free stack */
struct xsk_port;  /* private: one AF_XDP socket on a queue */

/* The rx callback: one UDP datagram; `payload` is valid only during the call. */
typedef void (*xsk_rx_fn)(void *ctx, const struct r2p2_addr *src, const struct r2p2_addr *dst,
			  const uint8_t *payload, size_t len);

/*
 * xsk_queue_new maps a UMEM of `cfg` (NULL: defaults) for rx queue `queue` of
 * interface `ifname` and learns the interface's index, MAC and MTU. No socket is
 * bound yet: add ports with xsk_queue_add_port. Returns the queue, or NULL with
 * errno set and a message in `err`.
 */
struct xsk_queue *xsk_queue_new(const char *ifname, unsigned queue,
				const struct xsk_port_config *cfg, char *err, size_t err_len);

/*
 * xsk_queue_add_port binds a new AF_XDP socket to `q`'s (interface, queue). The first
 * port registers the UMEM and binds in the configured mode (XSK_MODE_AUTO tries
 * zero-copy, then copy); later ports bind with XDP_SHARED_UMEM and inherit the mode.
 * Each port's rx and tx rings have cfg.ring_size entries. Returns the port, or NULL
 * with errno set and a message in `err`. Not thread-safe: add all ports first.
 */
struct xsk_port *xsk_queue_add_port(struct xsk_queue *q, char *err, size_t err_len);

/*
 * xsk_queue_free unmaps the UMEM of `q`. All its ports must have been freed first
 * (-EBUSY otherwise, and nothing is freed). Accepts NULL (returns 0).
 */
int xsk_queue_free(struct xsk_queue *q);

/*
 * xsk_port_new is the one-socket case: a queue of its own for (`ifname`, `queue`)
 * and one port on it, freed together by xsk_port_free. Returns the port, or NULL
 * with errno set and a message naming interface, queue and mode in `err`.
 */
struct xsk_port *xsk_port_new(const char *ifname, unsigned queue, const struct xsk_port_config *cfg,
			      char *err, size_t err_len);

/*
 * xsk_port_free closes the socket of `p` (which removes it from any XSKMAP) and, for
 * a port made by xsk_port_new, frees its queue. Tx frames still on the tx ring are
 * dropped. Accepts NULL.
 */
void xsk_port_free(struct xsk_port *p);

/* xsk_port_fd returns the AF_XDP socket of `p`: for xdp_xsk_register and for polling
 * (POLLIN: rx descriptors ready). */
int xsk_port_fd(const struct xsk_port *p);

/* xsk_port_zerocopy returns true when `p` is bound in zero-copy mode, false for copy. */
bool xsk_port_zerocopy(const struct xsk_port *p);

/* xsk_port_mac copies the interface's MAC address (the source of every frame sent)
 * to `out_mac`. */
void xsk_port_mac(const struct xsk_port *p, uint8_t out_mac[6]);

/*
 * xsk_port_rx pops up to `budget` rx descriptors of `p`, calls `fn`(`ctx`, ...) for
 * each well-formed UDP datagram (Ethernet, at most one 802.1Q/802.1ad tag, IPv4
 * without fragmentation or IPv6 with UDP as the first next header), counts the rest
 * in rx_dropped_parse, and gives every frame back to the fill ring (kicking the
 * kernel when the fill ring asks for a wakeup). `fn` may call xsk_port_send on `p`.
 * Returns the number of descriptors consumed (0: the rx ring was empty).
 */
int xsk_port_rx(struct xsk_port *p, xsk_rx_fn fn, void *ctx, unsigned budget);

/*
 * xsk_port_send builds one frame, Ethernet (`p`'s MAC -> `dst_mac`) + IPv4 (header
 * checksum, DF, TTL 64) or IPv6 (hop limit 64) + UDP (checksum always computed) from
 * `src` to `dst` (same family) with the concatenation of `iov` (`iovcnt` entries) as
 * payload, into a free tx frame, and reserves a tx descriptor for it. Nothing is
 * transmitted until xsk_port_flush. Returns 0, -EAGAIN when no tx frame or tx ring
 * entry is free (xsk_port_complete and xsk_port_flush free them), -EMSGSIZE when the
 * frame would exceed the frame size or the interface MTU, -EAFNOSUPPORT when the
 * families differ or are neither AF_INET nor AF_INET6, -EINVAL for a bad `iovcnt`.
 */
int xsk_port_send(struct xsk_port *p, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		  const uint8_t dst_mac[6], const struct iovec *iov, int iovcnt);

/*
 * xsk_port_flush publishes the descriptors reserved by xsk_port_send to the kernel
 * and, only when the tx ring asks for a wakeup, kicks it with sendto(MSG_DONTWAIT).
 * In copy mode the kernel transmits a bounded batch per kick, so it kicks again
 * (bounded) until the ring is drained. Returns 0, or -EAGAIN when the kernel could
 * not take everything now (call again later), or another negative errno of sendto.
 */
int xsk_port_flush(struct xsk_port *p);

/*
 * xsk_port_complete moves the tx frames the kernel has finished with from the
 * completion ring back to the free pool. Returns the number reclaimed. xsk_port_send
 * also calls it when it runs out of frames.
 */
int xsk_port_complete(struct xsk_port *p);

/* xsk_port_pending returns the number of tx descriptors reserved but not yet flushed. */
unsigned xsk_port_pending(const struct xsk_port *p);

/*
 * xsk_port_get_stats copies `p`'s counters to `out`, with the kernel's XDP_STATISTICS
 * of the socket in the k_* fields (zero when the kernel does not report them).
 */
void xsk_port_get_stats(const struct xsk_port *p, struct xsk_port_stats *out);

/* ---- pure packet code, exposed for tests ------------------------------------------ */

/* Header bytes xsk_build_udp writes before the payload. */
#define XSK_HDR_LEN_V4 (14 + 20 + 8)
#define XSK_HDR_LEN_V6 (14 + 40 + 8)

/* What xsk_parse_udp found in one frame. */
struct xsk_pkt {
	struct r2p2_addr src, dst;
	const uint8_t *payload; /* points into the frame */
	size_t len;		/* payload bytes (UDP length - 8) */
	uint16_t vlan_tci;	/* host order; 0 when untagged */
	bool has_vlan;
	uint16_t udp_csum; /* the checksum field as received, network order */
	const uint8_t *l4; /* the UDP header, for xsk_udp_csum_ok */
};

/*
 * xsk_parse_udp parses the `len` bytes of `frame` as Ethernet [+ one VLAN tag] +
 * IPv4/IPv6 + UDP with a bounds-checked cursor, trusting no length field: the IPv4
 * total length and IPv6 payload length must fit in the frame (Ethernet padding after
 * them is ignored), the UDP length must be >= 8 and fit in the IP payload. IPv4
 * needs a correct header checksum and no fragmentation; IPv6 jumbograms and extension
 * headers are refused. Returns 0 and fills `out`, or -EBADMSG (malformed, truncated,
 * lying lengths) or -EPROTONOSUPPORT (well-formed but not IPv4/IPv6 UDP).
 */
int xsk_parse_udp(const uint8_t *frame, size_t len, struct xsk_pkt *out);

/*
 * xsk_udp_csum_ok checks the UDP checksum of a datagram parsed by xsk_parse_udp.
 * IPv4 checksum 0 means "none" and is accepted; IPv6 checksum 0 is refused.
 */
bool xsk_udp_csum_ok(const struct xsk_pkt *pkt);

/*
 * xsk_build_udp writes Ethernet (`src_mac` -> `dst_mac`) + IPv4/IPv6 + UDP from `src`
 * to `dst` with the `iov` payload into `frame` (`cap` bytes), IPv4 identification
 * `ip_id`. Returns the frame length, or -EMSGSIZE, -EAFNOSUPPORT or -EINVAL as for
 * xsk_port_send.
 */
int xsk_build_udp(uint8_t *frame, size_t cap, const uint8_t src_mac[6], const uint8_t dst_mac[6],
		  const struct r2p2_addr *src, const struct r2p2_addr *dst, const struct iovec *iov,
		  int iovcnt, uint16_t ip_id);

/*
 * xsk_csum_partial adds the `len` bytes at `p` (starting at an even offset of the
 * checksummed data) to the ones'-complement accumulator `sum`, in memory byte order.
 * xsk_csum_fold folds it to 16 bits and complements it; store the result with memcpy.
 */
uint64_t xsk_csum_partial(const void *p, size_t len, uint64_t sum);
uint16_t xsk_csum_fold(uint64_t sum);

#endif /* R2P2D_XSK_H */
