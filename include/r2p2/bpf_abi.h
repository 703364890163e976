/* SPDX-License-Identifier: MIT */
/*
 * The ABI between the XDP program (bpf/r2p2.bpf.c) and user space (daemon/net/xdp.c,
 * the tests, bpftool): map keys and values, per-CPU counters, limits, and the
 * steering hash. Defined once here; both sides include this header.
 *
 * Byte order: fields typed __be* are in network byte order (as on the wire),
 * __u* fields in host byte order. Padding is written out and must be zero.
 * This header must stay free of libc so that BPF programs can include it.
 *
 * Maps (all pinned under /sys/fs/bpf/r2p2/<ifname>/ by daemon/net/xdp.c):
 *   r2p2_ports  HASH           r2p2_port_key -> r2p2_port_val   UDP ports served by R2P2
 *   r2p2_qconf  ARRAY          u32 queue     -> r2p2_qconf      sockets bound to each rx queue
 *   r2p2_xsks   XSKMAP         u32 slot      -> AF_XDP socket   slot = queue * R2P2_XSK_PER_QUEUE +
 * i r2p2_stats  PERCPU_ARRAY   u32 0         -> r2p2_stats      verdict counters, one set per CPU
 *
 * Steering rule: a valid R2P2 packet that arrived on rx queue q goes to slot
 *   q * R2P2_XSK_PER_QUEUE + r2p2_flow_hash(saddr, sport, rid) % r2p2_qconf[q].num_socks
 * so every packet of one request (same source address, port and rid) reaches the same
 * socket, whichever packet of the message it is.
 */
#ifndef R2P2_BPF_ABI_H
#define R2P2_BPF_ABI_H

#include <r2p2/compat.h>

#include <linux/types.h>

/* AF_XDP sockets one rx queue can be spread over (slots per queue in r2p2_xsks). */
#define R2P2_XSK_PER_QUEUE 16
/* rx queues the program steers (entries of r2p2_qconf) and the daemon opens AF_XDP
 * sockets on; packets on higher queues count as no_socket. */
#define R2P2_MAX_QUEUES 64
/* entries of r2p2_xsks */
#define R2P2_XSK_SLOTS (R2P2_XSK_PER_QUEUE * R2P2_MAX_QUEUES)
/* entries of r2p2_ports */
#define R2P2_MAX_PORTS 256

/* Name of the program and its maps as the kernel and bpftool show them (<= 15 chars). */
#define R2P2_XDP_PROG_NAME "r2p2_xdp"

/* Key of r2p2_ports: a UDP destination port. */
struct r2p2_port_key {
	__u16 port; /* host byte order (the program converts), so bpftool prints 8000 */
	__u16 pad;  /* zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_port_key) == 4, "ABI");

/* Value of r2p2_ports. */
struct r2p2_port_val {
	__u32 service; /* the daemon's index of the service on this port (opaque to BPF) */
	__u32 flags;   /* reserved, zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_port_val) == 8, "ABI");

/* Value of r2p2_qconf, indexed by rx queue. */
struct r2p2_qconf {
	__u32 num_socks; /* sockets in slots [0, num_socks) of this queue; 0: none */
	__u32 pad;	 /* zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_qconf) == 8, "ABI");

/*
 * Value of r2p2_stats (one per CPU): every packet the program sees bumps exactly one
 * counter. Sum over CPUs for totals (xdp_stats_sum in daemon/net/xdp.c).
 */
struct r2p2_stats {
	__u64 steered;		 /* valid R2P2, redirected to an AF_XDP socket */
	__u64 no_socket;	 /* valid R2P2, but no socket in its slot: XDP_PASS */
	__u64 dropped_malformed; /* to an R2P2 port, bad R2P2 header or UDP length: XDP_DROP */
	__u64 passed_not_r2p2;	 /* not IP/UDP, or UDP to a port not in r2p2_ports: XDP_PASS */
	__u64 passed_fragment;	 /* IPv4 fragment (MF set or offset != 0): XDP_PASS */
	__u64 passed_ipv6_ext;	 /* IPv6 with extension headers (incl. fragments): XDP_PASS */
	__u64 passed_runt;	 /* Ethernet/VLAN/IP/UDP header cut short or IP lengths
				    inconsistent; the kernel drops these itself: XDP_PASS */
	__u64 reserved;		 /* zero; keeps the struct a multiple of 16 bytes */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_stats) == 64, "ABI");

/*
 * r2p2_flow_hash mixes the source address `saddr` (16 bytes, network byte order; an
 * IPv4 source is given in IPv4-mapped form ::ffff:a.b.c.d, see r2p2_v4mapped), the
 * source port `sport` and the request id `rid` (both network byte order, as on the wire).
 * The words are hashed as loaded from memory, so the result depends on the host's byte
 * order; the XDP program and user space run on the same host and agree. Pure function,
 * any thread.
 */
static inline __u32 r2p2_hash_mix(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51u;
	w = (w << 15) | (w >> 17);
	w *= 0x1b873593u;
	h ^= w;
	h = (h << 13) | (h >> 19);
	return h * 5 + 0xe6546b64u;
}

static inline __u32 r2p2_flow_hash(const __be32 saddr[4], __be16 sport, __be16 rid)
{
	__u32 h = 0x52325032u; /* "R2P2" */

	h = r2p2_hash_mix(h, (__u32)saddr[0]);
	h = r2p2_hash_mix(h, (__u32)saddr[1]);
	h = r2p2_hash_mix(h, (__u32)saddr[2]);
	h = r2p2_hash_mix(h, (__u32)saddr[3]);
	h = r2p2_hash_mix(h, ((__u32)(__u16)sport << 16) | (__u16)rid);
	/* murmur3 finalizer: every input bit reaches the low bits the modulo uses */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* The third word of an IPv4-mapped IPv6 address (bytes 00 00 ff ff), as loaded from memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define R2P2_V4MAPPED_WORD 0x0000ffffu
#else
#define R2P2_V4MAPPED_WORD 0xffff0000u
#endif

/* r2p2_v4mapped writes the IPv4 address `v4` (network byte order) as ::ffff:v4 to `out`. */
static inline void r2p2_v4mapped(__be32 out[4], __be32 v4)
{
	out[0] = 0;
	out[1] = 0;
	out[2] = (__be32)R2P2_V4MAPPED_WORD;
	out[3] = v4;
}

/*
 * r2p2_xsk_slot returns the r2p2_xsks index for a packet with hash `hash` on rx queue
 * `queue` whose queue has `num_socks` sockets, or -1 when there is none to steer to
 * (queue out of range, num_socks 0 or above R2P2_XSK_PER_QUEUE).
 */
static inline int r2p2_xsk_slot(__u32 queue, __u32 hash, __u32 num_socks)
{
	if (queue >= R2P2_MAX_QUEUES || num_socks == 0 || num_socks > R2P2_XSK_PER_QUEUE)
		return -1;
	return (int)(queue * R2P2_XSK_PER_QUEUE + hash % num_socks);
}

#endif /* R2P2_BPF_ABI_H */
