/* SPDX-License-Identifier: MIT */
/*
 * r2p2-router's configuration (docs/OPERATIONS.md, "Router"): the INI style of
 * r2p2d.conf, read with inih.
 *
 *   [daemon]
 *   interface = eth0        ; required: where the XDP program is attached
 *   timeout_ms = 500        ; a request without FEEDBACK is given back after this
 *   down_ms = 2000          ; a server that stopped answering stays out this long
 *   sticky_ms = 2000        ; an answered request's retransmissions still go to its server
 *   metrics = 127.0.0.1:9465 ; optional: Prometheus metrics at http://ADDR:PORT/metrics
 *   user = r2p2             ; optional: switch to this user once attached (default: stay root)
 *   seccomp = yes           ; install the system call filter once attached (default)
 *
 *   [router echo]
 *   service = 10.0.0.1:8000 ; the address:port clients call (an address of this host)
 *   servers = 10.0.0.2:8000 10.0.0.3:8000
 *   policy = jbsq           ; random | rr | p2c | jbsq
 *   n = 2                   ; JBSQ's bound
 *   queue = 1024            ; FIFO capacity of the slow path
 *
 * Errors say "file:line: [section] key: what is wrong". Only IPv4 (the data path's).
 */
#ifndef R2P2_ROUTER_RT_CONFIG_H
#define R2P2_ROUTER_RT_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <r2p2/router_abi.h>

#define RT_NAME_MAX 64

struct rt_server_cfg {
	uint32_t addr; /* network byte order */
	uint16_t port; /* network byte order */
	int line;
};

struct rt_service_cfg {
	char name[RT_NAME_MAX];
	int line;
	uint32_t addr; /* network byte order */
	uint16_t port; /* network byte order */
	struct rt_server_cfg servers[R2P2_RT_SVC_SERVERS];
	unsigned num_servers;
	unsigned policy; /* enum r2p2_rt_policy */
	unsigned bound;	 /* n */
	unsigned queue;	 /* FIFO capacity */
};

struct rt_config {
	char interface[IF_NAMESIZE];
	unsigned timeout_ms;
	unsigned down_ms;
	unsigned sticky_ms;
	bool has_metrics;      /* metrics = ADDR:PORT (IPv4): Prometheus over HTTP */
	uint32_t metrics_addr; /* network byte order */
	uint16_t metrics_port; /* network byte order */
	char user[32];	       /* switch to this user after set-up; "" = stay (r2p2d's key) */
	bool seccomp;	       /* install the system call filter after set-up (default) */
	struct rt_service_cfg svcs[R2P2_RT_MAX_SERVICES];
	unsigned num_svcs;
};

/* rt_policy_name returns "random", "rr", "p2c" or "jbsq" (or "?"). */
const char *rt_policy_name(unsigned policy);

/*
 * rt_config_load reads `path` into `out`. Returns 0, or -1 with the first error, naming
 * the file and line, in `err`.
 */
int rt_config_load(const char *path, struct rt_config *out, char *err, size_t err_len);

/* rt_config_parse is rt_config_load on the text `text`, called `name` in errors. */
int rt_config_parse(const char *name, const char *text, struct rt_config *out, char *err,
		    size_t err_len);

#endif /* R2P2_ROUTER_RT_CONFIG_H */
