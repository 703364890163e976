/* SPDX-License-Identifier: MIT */
/*
 * r2p2-router's state and the pieces that share it: router.c (main loop, attaching and
 * pinning), fleet.c (services and server slots in the maps, neighbours, ageing, servers
 * taken out and put back), slowpath.c (the JBSQ FIFO), status.c (--status).
 * One thread owns all of it.
 */
#ifndef R2P2_ROUTER_ROUTER_H
#define R2P2_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <r2p2/router_abi.h>

#include "rt_config.h"

#define RT_PIN_ROOT "/sys/fs/bpf/r2p2-router"

struct neigh;
struct router_bpf;

/* One request waiting in a service's FIFO: its first packet as the client sent it. */
struct rt_waiting {
	uint32_t client; /* network byte order */
	uint16_t port;	 /* network byte order */
	uint16_t len;
	uint64_t since_ns;
	uint8_t pkt[1500];
};

/* A routed service at run time. */
struct rt_service {
	bool used;
	uint32_t id; /* index in r2p2_rt_fifo, this struct's index in router.svcs */
	struct rt_service_cfg cfg;
	int fd; /* UDP socket on the service address:port: the slow path's input */
	/* FIFO: a ring of cfg.queue entries */
	struct rt_waiting *fifo;
	unsigned head, len, cap;
	struct r2p2_rt_fifo stats; /* mirrored into r2p2_rt_fifo */
};

/* A server slot (index in r2p2_rt_srvs and r2p2_rt_load). */
struct rt_slot {
	bool used;	/* listed by a service's config */
	bool retired;	/* removed from the config; kept until its count drains */
	bool resolved;	/* next-hop MAC known */
	bool down;	/* stopped answering: out of rotation until down_until */
	uint32_t svc;	/* service id */
	uint32_t addr;	/* network byte order */
	uint16_t port;	/* network byte order */
	uint8_t mac[6]; /* next hop */
	uint64_t down_until;
	uint64_t up_since;  /* put (back) in rotation: silence before it does not count */
	unsigned aged_now;  /* requests aged out in the current pass */
	uint64_t aged_sent; /* the latest dispatch time among them */
};

/* The descriptors of the maps that --status and the metrics read. */
struct rt_maps {
	int svcs, srvs, load, fifo, pstats, stats;
};

struct router {
	struct rt_config cfg;
	const char *cfg_path;
	struct router_bpf *skel;
	struct r2p2_rt_load *load; /* r2p2_rt_load, mapped */
	size_t load_len;
	struct neigh *neigh;
	unsigned ifindex;
	uint8_t ifmac[6];
	int raw_fd;	 /* IPPROTO_RAW: the slow path sends with the client's source address */
	int pin_root_fd; /* RT_PIN_ROOT and */
	int pin_dir_fd;	 /* RT_PIN_ROOT/<ifname>, opened at set-up: unpinning at exit */
	struct rt_service svcs[R2P2_RT_MAX_SERVICES];
	struct rt_slot slots[R2P2_RT_MAX_SERVERS];
	uint64_t next_age_ns;
};

/* now_ns returns CLOCK_MONOTONIC in ns (what bpf_ktime_get_ns returns). */
uint64_t now_ns(void);

/* fleet.c */
/* fleet_apply makes the maps and sockets say what `r->cfg` says (start and reload): new
 * server slots first, then each service's rotation, then what went away. Returns 0 or a
 * negative errno with a message logged. */
int fleet_apply(struct router *r);
/* fleet_resolve looks up next-hop MACs of unresolved slots; pushes changes. */
void fleet_resolve(struct router *r);
/* fleet_age gives back requests older than timeout_ms, takes servers that stopped
 * answering out, and puts them back after down_ms. */
void fleet_age(struct router *r, uint64_t now);
/* fleet_push_service rewrites service `id`'s r2p2_rt_svcs entry from the slots. */
void fleet_push_service(struct router *r, uint32_t id);
/* fleet_close closes every service's socket and frees the FIFOs. */
void fleet_close(struct router *r);

/* slowpath.c */
/* slow_open binds the UDP socket of service `s`. Returns 0 or a negative errno. */
int slow_open(struct router *r, struct rt_service *s);
/* slow_input reads every pending datagram of service `s`'s socket. */
void slow_input(struct router *r, struct rt_service *s, uint64_t now);
/* slow_dispatch sends waiting requests while servers have room, drops expired ones. */
void slow_dispatch(struct router *r, struct rt_service *s, uint64_t now);
/* slow_publish writes the FIFO's length and counters into r2p2_rt_fifo. */
void slow_publish(struct router *r, struct rt_service *s);

/* status.c */
/* rt_status prints the state of the router on `ifname` from its pinned maps. Returns 0,
 * or 1 with a message on stderr. */
int rt_status(const char *ifname);
/* rt_status_prom writes the same as Prometheus text into `f` (`metrics =`), read from the
 * maps the router holds. 0 or -1. */
int rt_status_prom(const struct rt_maps *m, FILE *f);

/* rt_metrics.c: GET /metrics of `metrics = ADDR:PORT`, on a thread of libmicrohttpd's.
 * rt_metrics_listen binds the port (set-up: it may be below 1024); rt_metrics_start, after
 * the privileges are dropped, starts the thread answering on it from `m`'s maps. Both
 * return 0 (also without the key) or -1 with a message logged. */
int rt_metrics_listen(const struct rt_config *c);
int rt_metrics_start(const struct rt_maps *m);
void rt_metrics_stop(void);

/* rt_sandbox.c */
/* rt_sandbox_enter gives up what only set-up needed (`user`, `seccomp`; see the file).
 * Call it with no other thread running. Returns 0, or a negative errno with a message
 * in `err`. */
int rt_sandbox_enter(const struct rt_config *c, char *err, size_t err_len);

#endif /* R2P2_ROUTER_ROUTER_H */
