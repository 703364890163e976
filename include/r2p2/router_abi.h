/* SPDX-License-Identifier: MIT */
/*
 * The ABI between the R2P2 router's XDP program (bpf/router.bpf.c) and user space
 * (daemon/router/, tests/test_router.c, bpftool). Defined once here; both sides include it.
 *
 * Byte order: __be* fields are in network byte order (as on the wire), __u* and __s* fields in
 * host byte order. Padding is written out and must be zero. Free of libc (BPF includes it).
 *
 * Maps (pinned under /sys/fs/bpf/r2p2-router/<ifname>/ by r2p2-router):
 *   r2p2_rt_svcs    HASH          r2p2_rt_svc_key -> r2p2_rt_svc     routed services, their
 *                                                                     policy and rotation
 *   r2p2_rt_srvs    ARRAY         u32 slot  -> r2p2_rt_server        where each server is
 *   r2p2_rt_load    ARRAY (mmap)  u32 slot  -> r2p2_rt_load          outstanding count and
 *                                                                     counters of each server
 *   r2p2_rt_fifo    ARRAY         u32 svc id -> r2p2_rt_fifo         the user-space FIFO:
 *                                                                     length and counters
 *   r2p2_rt_reqs    LRU_HASH      r2p2_rt_req_key -> r2p2_rt_req     dispatched requests
 *                                                                     awaiting FEEDBACK
 *   r2p2_rt_done    LRU_HASH      r2p2_rt_req_key -> r2p2_rt_req     answered requests, so
 *                                                                     that a retransmission
 *                                                                     goes to the same server
 *   r2p2_rt_pstats  PERCPU_ARRAY  u32 policy -> r2p2_rt_pstats       counters per policy
 *   r2p2_rt_stats   PERCPU_ARRAY  u32 0      -> r2p2_rt_stats        one counter per verdict
 *
 * Accounting: the program adds 1 to a server's `outstanding` when it dispatches a request
 * and records (client address, client port, rid) in r2p2_rt_reqs; whoever deletes that
 * entry (the program on FEEDBACK, or user space when it ages out) takes the 1 back. A
 * delete succeeds once, so the count is given back exactly once. User space maps
 * r2p2_rt_load (BPF_F_MMAPABLE) and updates it with the same atomic operations.
 */
#ifndef R2P2_ROUTER_ABI_H
#define R2P2_ROUTER_ABI_H

#include <r2p2/compat.h>

#include <linux/types.h>

/* entries of r2p2_rt_svcs and r2p2_rt_qlen */
#define R2P2_RT_MAX_SERVICES 64
/* entries of r2p2_rt_srvs and r2p2_rt_load (server slots over all services) */
#define R2P2_RT_MAX_SERVERS 256
/* servers one service rotates over */
#define R2P2_RT_SVC_SERVERS 16
/* entries of r2p2_rt_reqs: requests in flight over all services */
#define R2P2_RT_MAX_REQS 65536

#define R2P2_RT_PROG_NAME "r2p2_router"

/* What a service's choice is made by (r2p2_rt_svc.policy; index of r2p2_rt_pstats). */
enum r2p2_rt_policy {
	R2P2_RT_RANDOM = 0, /* uniformly at random */
	R2P2_RT_RR = 1,	    /* round-robin over the rotation */
	R2P2_RT_P2C = 2,    /* two at random, the one with fewer outstanding */
	R2P2_RT_JBSQ = 3,   /* least outstanding, at most `bound` each; else the FIFO */
	R2P2_RT_NUM_POLICIES = 4,
};

/* Key of r2p2_rt_svcs: the address and UDP port clients send a service's requests to. */
struct r2p2_rt_svc_key {
	__be32 addr;
	__be16 port;
	__u16 pad; /* zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_svc_key) == 8, "ABI");

/*
 * Value of r2p2_rt_svcs. User space replaces it whole (one map update, atomic for
 * readers) to change the rotation; `rr` is advanced by the program.
 */
struct r2p2_rt_svc {
	__u32 id;	   /* index in r2p2_rt_fifo, < R2P2_RT_MAX_SERVICES */
	__u32 policy;	   /* enum r2p2_rt_policy */
	__u32 bound;	   /* JBSQ(n): at most this many outstanding per server */
	__u32 num_servers; /* servers in rotation: slots[0, num_servers); 0: none is up */
	__u32 rr;	   /* next round-robin position (also JBSQ's tie breaker) */
	__u32 pad;	   /* zero */
	__u32 slots[R2P2_RT_SVC_SERVERS]; /* indices into r2p2_rt_srvs / r2p2_rt_load */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_svc) == 24 + 4 * R2P2_RT_SVC_SERVERS, "ABI");

/* Value of r2p2_rt_srvs: where the request goes. Written by user space only. */
struct r2p2_rt_server {
	__be32 addr;	 /* server IPv4 address */
	__be16 port;	 /* server UDP port */
	__u8 up;	 /* 1: answering; 0: taken out (a retransmission is not sent to it) */
	__u8 pad;	 /* zero */
	__u8 mac[6];	 /* next hop's MAC */
	__u8 src_mac[6]; /* the egress interface's MAC */
	__u32 ifindex;	 /* egress interface; the ingress one means XDP_TX; 0: slot unused */
	__u32 svc;	 /* id of its service */
	__u32 pad2[3];	 /* zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_server) == 40, "ABI");

/* Value of r2p2_rt_load, shared by the program and user space (atomic updates only). */
struct r2p2_rt_load {
	__s32 outstanding;	/* dispatched and neither FEEDBACK nor aged out yet */
	__u32 pad;		/* zero */
	__u64 dispatched;	/* requests sent to it (fast and slow path) */
	__u64 feedback;		/* FEEDBACK messages that matched a request sent to it */
	__u64 aged;		/* requests given back by user space for lack of FEEDBACK */
	__u64 last_feedback_ns; /* bpf_ktime_get_ns of its last matched FEEDBACK (0: none) */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_load) == 40, "ABI");

/*
 * Value of r2p2_rt_fifo, written by user space only. `queued` is non-zero while requests
 * of the service wait in its FIFO, so that the program queues new ones behind them (first
 * come, first served) and passes FEEDBACK up as the signal to dispatch the next one.
 */
struct r2p2_rt_fifo {
	__u32 queued;	    /* requests waiting now */
	__u32 capacity;	    /* the FIFO's bound */
	__u64 enqueued;	    /* requests that entered the FIFO */
	__u64 dispatched;   /* sent to a server from the FIFO */
	__u64 dropped_full; /* arrived while the FIFO was full: dropped */
	__u64 expired;	    /* waited longer than the request timeout: dropped */
	__u64 no_service;   /* reached user space for no reason it handles: dropped */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_fifo) == 48, "ABI");

/* Key of r2p2_rt_reqs: what a FEEDBACK message names (struct r2p2_feedback). */
struct r2p2_rt_req_key {
	__be32 client; /* client IPv4 address */
	__be16 port;   /* client UDP port */
	__be16 rid;    /* request id */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_req_key) == 8, "ABI");

/* Value of r2p2_rt_reqs and r2p2_rt_done. */
struct r2p2_rt_req {
	__u64 sent_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) at dispatch (done: at FEEDBACK) */
	__u32 server;  /* slot it went to */
	__u32 svc;     /* id of its service */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_req) == 16, "ABI");

/* Value of r2p2_rt_pstats, per policy and per CPU. */
struct r2p2_rt_pstats {
	__u64 dispatched; /* first packets sent to a server by the program */
	__u64 resent;	  /* retransmitted first packets sent to the same server again
			     (in flight, or answered within sticky_ms): not counted again */
	__u64 slow_path;  /* passed to the user-space FIFO (JBSQ all full, or queue not empty) */
	__u64 no_server;  /* no server in rotation: passed to user space */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_pstats) == 32, "ABI");

/* Value of r2p2_rt_stats (per CPU): every frame bumps exactly one counter. */
struct r2p2_rt_stats {
	__u64 routed_tx;	 /* a first packet rewritten and sent back out (XDP_TX) */
	__u64 routed_redirect;	 /* rewritten and redirected to another interface */
	__u64 to_user;		 /* to a routed service, for user space (FIFO, no server) */
	__u64 feedback;		 /* FEEDBACK matched and accounted, dropped */
	__u64 feedback_wake;	 /* FEEDBACK matched and accounted, passed to wake the FIFO */
	__u64 feedback_unknown;	 /* FEEDBACK naming no request we sent there: dropped */
	__u64 passed_other;	 /* R2P2 to a routed service, not a request's first packet */
	__u64 passed_malformed;	 /* to a routed service, not valid R2P2: passed to the kernel */
	__u64 passed_not_routed; /* not IPv4/UDP to a routed service (incl. runts, fragments) */
	__u64 reserved;		 /* zero */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_rt_stats) == 80, "ABI");

/*
 * r2p2_csum_replace16 returns the Internet checksum `csum` (as stored, either byte
 * order as long as all three agree) after a 16-bit word changed from `from` to `to`
 * (RFC 1624, eqn. 3).
 */
static inline __u16 r2p2_csum_replace16(__u16 csum, __u16 from, __u16 to)
{
	__u32 s = (__u16)~csum;

	s += (__u16)~from;
	s += to;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* r2p2_csum_replace32: the same for a 32-bit field, as two 16-bit words in memory order. */
static inline __u16 r2p2_csum_replace32(__u16 csum, __u32 from, __u32 to)
{
	csum = r2p2_csum_replace16(csum, (__u16)from, (__u16)to);
	return r2p2_csum_replace16(csum, (__u16)(from >> 16), (__u16)(to >> 16));
}

#endif /* R2P2_ROUTER_ABI_H */
