/* SPDX-License-Identifier: MIT */
/*
 * Next-hop MAC addresses for AF_XDP transmit, from the kernel's own route and
 * neighbour tables over rtnetlink (never a hand-kept table).
 *
 * neigh_lookup asks the kernel how it would send to a destination out of our
 * interface (RTM_GETROUTE with RTA_OIF: gateway or on-link, and the preferred source
 * address), then for the next hop's link-layer address (RTM_GETNEIGH). Answers are
 * cached per destination. A next hop the kernel has not resolved yet is made to
 * resolve (RTM_NEWNEIGH with NTF_USE, as the kernel does for its own traffic; a
 * zero-length UDP datagram to the discard port through a normal socket when that is
 * refused) and the lookup says -EAGAIN; the resulting RTM_NEWNEIGH event fills the
 * cache. The queries are synchronous on a blocking socket (1 s timeout): a miss costs
 * the calling worker two rtnetlink round trips, about 25 us here; a hit is a hash
 * probe. A STALE entry is used (the kernel keeps no traffic of its own on it) but
 * re-verified through NTF_USE at most every 5 s, which makes the kernel probe it.
 * (IPv6: the kernel solicits a triggered next hop from the link-local address, so
 * resolution waits for that address's duplicate address detection right after link up.)
 *
 * A second NETLINK_ROUTE socket, neigh_fd(), is subscribed to RTMGRP_NEIGH,
 * RTMGRP_IPV4_ROUTE and RTMGRP_IPV6_ROUTE: neigh events for our interface update
 * the cache, any route change (and lost events, ENOBUFS) empties it.
 *
 * One struct neigh belongs to one thread (each worker opens its own). The cache is
 * fixed-size (NEIGH_CACHE_SETS x NEIGH_CACHE_WAYS, oldest way replaced); nothing is
 * allocated after neigh_new. Errors are negative errnos; constructors return NULL,
 * set errno and write a message into `err`.
 */
#ifndef R2P2D_NEIGH_H
#define R2P2D_NEIGH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/netlink.h>

#include "engine.h" /* struct r2p2_addr */

#define NEIGH_CACHE_SETS 256
#define NEIGH_CACHE_WAYS 4

struct neigh; /* private */

struct neigh_stats {
	uint64_t hits;	   /* answered from the cache */
	uint64_t queries;  /* route + neighbour queries sent to the kernel */
	uint64_t triggers; /* resolutions or re-verifications asked of the kernel */
	uint64_t events;   /* rtnetlink notifications applied */
	uint64_t flushes;  /* cache emptied (route change, lost events) */
};

/*
 * neigh_new opens the two rtnetlink sockets for interface `ifname` and learns its
 * index and MAC (RTM_GETLINK). Needs CAP_NET_ADMIN for the NTF_USE trigger (it falls
 * back to a UDP datagram without it). Returns NULL with errno and `err` on failure.
 */
struct neigh *neigh_new(const char *ifname, char *err, size_t err_len);

/* neigh_free closes the sockets and frees `n`. Accepts NULL. */
void neigh_free(struct neigh *n);

/* neigh_ifindex returns the interface index; neigh_mac copies its MAC to `out_mac`. */
unsigned neigh_ifindex(const struct neigh *n);
void neigh_mac(const struct neigh *n, uint8_t out_mac[6]);

/*
 * neigh_lookup finds the MAC address of the next hop towards `dst` (its port is
 * ignored) out of our interface and copies it to `out_mac`, and the source address
 * the kernel would use to `out_src` (port 0; may be NULL). Returns 0; -EAGAIN when
 * the next hop is being resolved (try again after neigh_process or a short while);
 * -EHOSTUNREACH when the kernel failed to resolve it (retried every second);
 * -ENETUNREACH when there is no unicast route out of our interface (cached for a
 * second); -EAFNOSUPPORT for a family other than AF_INET/AF_INET6; another negative
 * errno when rtnetlink fails.
 */
int neigh_lookup(struct neigh *n, const struct r2p2_addr *dst, uint8_t out_mac[6],
		 struct r2p2_addr *out_src);

/* neigh_fd returns the notification socket (non-blocking) to poll for POLLIN. */
int neigh_fd(const struct neigh *n);

/*
 * neigh_process reads every pending notification of neigh_fd() and applies it to
 * the cache. Returns the number of messages applied, or a negative errno.
 */
int neigh_process(struct neigh *n);

/* neigh_flush empties the cache. */
void neigh_flush(struct neigh *n);

/* neigh_get_stats copies the counters of `n` to `out`. */
void neigh_get_stats(const struct neigh *n, struct neigh_stats *out);

/* ---- pure netlink parsing and cache updates, exposed for tests ---------------------- */

/* One RTM_NEWROUTE message, as answered to RTM_GETROUTE. Addresses in network order. */
struct neigh_route {
	uint16_t family;    /* AF_INET or AF_INET6 */
	uint8_t type;	    /* RTN_UNICAST, RTN_LOCAL, ... */
	unsigned oif;	    /* RTA_OIF, 0 when absent */
	bool has_gw;	    /* RTA_GATEWAY or RTA_VIA present */
	uint16_t gw_family; /* family of the gateway (RTA_VIA may differ from `family`) */
	uint8_t gw[16];
	bool has_src; /* RTA_PREFSRC present */
	uint8_t src[16];
};

/* One RTM_NEWNEIGH or RTM_DELNEIGH message. */
struct neigh_msg {
	bool deleted; /* RTM_DELNEIGH */
	uint16_t family;
	unsigned ifindex;
	uint16_t state;	 /* NUD_* */
	uint8_t flags;	 /* NTF_* */
	uint8_t dst[16]; /* NDA_DST, network order */
	bool has_lladdr;
	uint8_t lladdr[6]; /* NDA_LLADDR (Ethernet) */
};

/*
 * neigh_parse_route parses the route message `nlh` (`len` bytes available at it).
 * Returns 0, or -EBADMSG for a malformed or truncated message, -ENOMSG when it is not
 * an RTM_NEWROUTE/RTM_DELROUTE of AF_INET/AF_INET6.
 */
int neigh_parse_route(const struct nlmsghdr *nlh, size_t len, struct neigh_route *out);

/*
 * neigh_parse_neigh parses the neighbour message `nlh` (`len` bytes available at it).
 * Returns 0, -EBADMSG or -ENOMSG as neigh_parse_route.
 */
int neigh_parse_neigh(const struct nlmsghdr *nlh, size_t len, struct neigh_msg *out);

/*
 * neigh_apply applies one notification (`len` bytes at `nlh`) to the cache of `n`:
 * neighbour messages for our interface update or invalidate the entries whose next
 * hop they name, route messages empty the cache. Returns 1 when applied, 0 when
 * ignored, -EBADMSG when malformed.
 */
int neigh_apply(struct neigh *n, const struct nlmsghdr *nlh, size_t len);

/*
 * neigh_learn stores what the kernel answered for `dst`: its route `rt` and the
 * next hop's neighbour entry `nm` (NULL: the kernel has none). Returns what
 * neigh_lookup returns for it, without triggering anything. `now_ns` is
 * CLOCK_MONOTONIC.
 */
int neigh_learn(struct neigh *n, const struct r2p2_addr *dst, const struct neigh_route *rt,
		const struct neigh_msg *nm, uint64_t now_ns);

/*
 * neigh_new_offline makes a cache for interface index `ifindex` with MAC `mac` and
 * no sockets, for tests: lookups answer from the cache only (a miss is -ENOTCONN)
 * and trigger nothing.
 */
struct neigh *neigh_new_offline(unsigned ifindex, const uint8_t mac[6]);

#endif /* R2P2D_NEIGH_H */
