// SPDX-License-Identifier: MIT
/*
 * r2p2-router --status: what the pinned maps of a running router say, one service per
 * block, its servers under it, then the per-policy and verdict counters summed over CPUs.
 * Reads only; works while the router runs (and after a kill -9 left the pins).
 */
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int open_pin(const char *dir, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		fprintf(stderr, "%s: %s (is r2p2-router running on this interface?)\n", path,
			strerror(errno));
	return fd;
}

/* pins_open opens the maps r2p2-router pinned for `ifname` (their directory in `dir`). */
static int pins_open(struct rt_maps *p, const char *ifname, char *dir, size_t dir_len)
{
	snprintf(dir, dir_len, "%s/%s", RT_PIN_ROOT, ifname);
	if ((p->svcs = open_pin(dir, "r2p2_rt_svcs")) < 0 ||
	    (p->srvs = open_pin(dir, "r2p2_rt_srvs")) < 0 ||
	    (p->load = open_pin(dir, "r2p2_rt_load")) < 0 ||
	    (p->fifo = open_pin(dir, "r2p2_rt_fifo")) < 0 ||
	    (p->pstats = open_pin(dir, "r2p2_rt_pstats")) < 0 ||
	    (p->stats = open_pin(dir, "r2p2_rt_stats")) < 0)
		return -1;
	return 0;
}

static void pins_close(struct rt_maps *p)
{
	for (int *fd = &p->svcs; fd <= &p->stats; fd++)
		if (*fd >= 0)
			close(*fd);
}

static void fmt_ep(uint32_t addr, uint16_t port, char *buf, size_t len)
{
	const uint8_t *a = (const uint8_t *)&addr;

	snprintf(buf, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(port));
}

/* percpu_sum sums entry `key` of the per-CPU map `fd` (`n` u64 counters) into `out`. */
static int percpu_sum(int fd, uint32_t key, uint64_t *out, size_t n)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v;

	if (ncpu <= 0)
		return -1;
	v = calloc((size_t)ncpu * n, sizeof(*v));
	if (!v || bpf_map_lookup_elem(fd, &key, v) != 0) {
		free(v);
		return -1;
	}
	memset(out, 0, n * sizeof(*out));
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < n; i++)
			out[i] += v[(size_t)c * n + i];
	free(v);
	return 0;
}

static void print_service(const struct rt_maps *p, const struct r2p2_rt_svc_key *k,
			  const struct r2p2_rt_svc *v)
{
	struct r2p2_rt_fifo f = {0};
	char ep[32];

	fmt_ep(k->addr, k->port, ep, sizeof(ep));
	bpf_map_lookup_elem(p->fifo, &v->id, &f);
	printf("service %s policy %s", ep, rt_policy_name(v->policy));
	if (v->policy == R2P2_RT_JBSQ)
		printf(" n %u", v->bound);
	printf(" in_rotation %u\n", v->num_servers);
	printf("  fifo queued %u capacity %u enqueued %llu dispatched %llu dropped_full %llu "
	       "expired %llu no_service %llu\n",
	       f.queued, f.capacity, (unsigned long long)f.enqueued,
	       (unsigned long long)f.dispatched, (unsigned long long)f.dropped_full,
	       (unsigned long long)f.expired, (unsigned long long)f.no_service);
	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		struct r2p2_rt_server s;
		struct r2p2_rt_load l;

		if (bpf_map_lookup_elem(p->srvs, &i, &s) != 0 || !s.ifindex || s.svc != v->id ||
		    bpf_map_lookup_elem(p->load, &i, &l) != 0)
			continue;
		fmt_ep(s.addr, s.port, ep, sizeof(ep));
		printf("  server %s slot %u %s outstanding %d dispatched %llu feedback %llu aged "
		       "%llu\n",
		       ep, i, s.up ? "up" : "down", l.outstanding, (unsigned long long)l.dispatched,
		       (unsigned long long)l.feedback, (unsigned long long)l.aged);
	}
}

static void print_counters(const struct rt_maps *p)
{
	static const char *const names[] = {
	    "routed_tx",    "routed_redirect",	"to_user",
	    "feedback",	    "feedback_wake",	"feedback_unknown",
	    "passed_other", "passed_malformed", "passed_not_routed"};
	uint64_t st[sizeof(struct r2p2_rt_stats) / 8];
	struct r2p2_rt_pstats ps;

	for (uint32_t pol = 0; pol < R2P2_RT_NUM_POLICIES; pol++) {
		if (percpu_sum(p->pstats, pol, (uint64_t *)&ps, 4) != 0)
			continue;
		printf("policy %s dispatched %llu resent %llu slow_path %llu no_server %llu\n",
		       rt_policy_name(pol), (unsigned long long)ps.dispatched,
		       (unsigned long long)ps.resent, (unsigned long long)ps.slow_path,
		       (unsigned long long)ps.no_server);
	}
	if (percpu_sum(p->stats, 0, st, sizeof(st) / 8) != 0)
		return;
	printf("verdicts");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		printf(" %s %llu", names[i], (unsigned long long)st[i]);
	printf("\n");
}

int rt_status(const char *ifname)
{
	struct rt_maps p = {-1, -1, -1, -1, -1, -1};
	struct r2p2_rt_svc_key key, next;
	struct r2p2_rt_svc v;
	char dir[128];
	void *prev = NULL;
	int rc = 1;

	if (pins_open(&p, ifname, dir, sizeof(dir)) != 0)
		goto out;
	printf("router on %s (maps pinned under %s)\n", ifname, dir);
	while (bpf_map_get_next_key(p.svcs, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(p.svcs, &key, &v) == 0)
			print_service(&p, &key, &v);
	}
	print_counters(&p);
	rc = 0;
out:
	pins_close(&p);
	return rc;
}

/* ---- Prometheus (`metrics =`) ---- */

/* prom_head writes a metric's HELP and TYPE lines. */
static void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The per-server values, one metric each; `off`: the field of struct r2p2_rt_load. */
struct srv_metric {
	const char *name, *type, *help;
	int kind; /* 0 outstanding, 1 dispatched, 2 feedback, 3 aged, 4 up */
};

static void prom_servers(FILE *f, const struct rt_maps *p, const struct srv_metric *m)
{
	char ep[32], svc[32];

	prom_head(f, m->name, m->type, m->help);
	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		struct r2p2_rt_server s;
		struct r2p2_rt_load l;
		struct r2p2_rt_svc_key key, next;
		struct r2p2_rt_svc v;
		void *prev = NULL;
		long long val;

		if (bpf_map_lookup_elem(p->srvs, &i, &s) != 0 || !s.ifindex ||
		    bpf_map_lookup_elem(p->load, &i, &l) != 0)
			continue;
		snprintf(svc, sizeof(svc), "?");
		while (bpf_map_get_next_key(p->svcs, prev, &next) == 0) {
			key = next;
			prev = &key;
			if (bpf_map_lookup_elem(p->svcs, &key, &v) == 0 && v.id == s.svc)
				fmt_ep(key.addr, key.port, svc, sizeof(svc));
		}
		fmt_ep(s.addr, s.port, ep, sizeof(ep));
		val = m->kind == 0   ? (long long)l.outstanding
		      : m->kind == 1 ? (long long)l.dispatched
		      : m->kind == 2 ? (long long)l.feedback
		      : m->kind == 3 ? (long long)l.aged
				     : (long long)s.up;
		fprintf(f, "%s{service=\"%s\",server=\"%s\",slot=\"%u\"} %lld\n", m->name, svc, ep,
			i, val);
	}
}

static void prom_fifos(FILE *f, const struct rt_maps *p)
{
	static const char *const names[] = {"queued",	    "enqueued", "dispatched",
					    "dropped_full", "expired",	"no_service"};

	for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
		struct r2p2_rt_svc_key key, next;
		void *prev = NULL;
		char metric[64], ep[32];

		snprintf(metric, sizeof(metric), "r2p2_router_fifo_%s%s", names[n],
			 n ? "_total" : "");
		prom_head(f, metric, n ? "counter" : "gauge",
			  n ? "requests of the service's JBSQ wait queue (docs/OPERATIONS.md, "
			      "\"Router\")"
			    : "requests waiting in the service's queue now");
		while (bpf_map_get_next_key(p->svcs, prev, &next) == 0) {
			struct r2p2_rt_svc v;
			struct r2p2_rt_fifo q = {0};
			uint64_t vals[6];

			key = next;
			prev = &key;
			if (bpf_map_lookup_elem(p->svcs, &key, &v) != 0)
				continue;
			bpf_map_lookup_elem(p->fifo, &v.id, &q);
			vals[0] = q.queued;
			vals[1] = q.enqueued;
			vals[2] = q.dispatched;
			vals[3] = q.dropped_full;
			vals[4] = q.expired;
			vals[5] = q.no_service;
			fmt_ep(key.addr, key.port, ep, sizeof(ep));
			fprintf(f, "%s{service=\"%s\",policy=\"%s\"} %llu\n", metric, ep,
				rt_policy_name(v.policy), (unsigned long long)vals[n]);
		}
	}
}

static void prom_counters(FILE *f, const struct rt_maps *p)
{
	static const char *const pnames[] = {"dispatched", "resent", "slow_path", "no_server"};
	static const char *const vnames[] = {
	    "routed_tx",    "routed_redirect",	"to_user",
	    "feedback",	    "feedback_wake",	"feedback_unknown",
	    "passed_other", "passed_malformed", "passed_not_routed"};
	uint64_t st[sizeof(struct r2p2_rt_stats) / 8];
	char metric[64];

	for (size_t n = 0; n < sizeof(pnames) / sizeof(pnames[0]); n++) {
		snprintf(metric, sizeof(metric), "r2p2_router_policy_%s_total", pnames[n]);
		prom_head(f, metric, "counter", "first packets by the policy that took them");
		for (uint32_t pol = 0; pol < R2P2_RT_NUM_POLICIES; pol++) {
			struct r2p2_rt_pstats ps;

			if (percpu_sum(p->pstats, pol, (uint64_t *)&ps, 4) != 0)
				continue;
			fprintf(f, "%s{policy=\"%s\"} %llu\n", metric, rt_policy_name(pol),
				(unsigned long long)((uint64_t *)&ps)[n]);
		}
	}
	if (percpu_sum(p->stats, 0, st, sizeof(st) / 8) != 0)
		return;
	prom_head(f, "r2p2_router_verdicts_total", "counter",
		  "packets the XDP program saw, by what it did with them");
	for (size_t i = 0; i < sizeof(vnames) / sizeof(vnames[0]); i++)
		fprintf(f, "r2p2_router_verdicts_total{verdict=\"%s\"} %llu\n", vnames[i],
			(unsigned long long)st[i]);
}

int rt_status_prom(const struct rt_maps *m, FILE *f)
{
	static const struct srv_metric srv[] = {
	    {"r2p2_router_server_outstanding", "gauge", "requests dispatched and not answered", 0},
	    {"r2p2_router_server_dispatched_total", "counter", "requests sent to the server", 1},
	    {"r2p2_router_server_feedback_total", "counter", "FEEDBACK messages from the server",
	     2},
	    {"r2p2_router_server_aged_total", "counter", "requests given back without FEEDBACK", 3},
	    {"r2p2_router_server_up", "gauge", "1 in rotation, 0 taken out as not answering", 4},
	};

	for (size_t i = 0; i < sizeof(srv) / sizeof(srv[0]); i++)
		prom_servers(f, m, &srv[i]);
	prom_fifos(f, m);
	prom_counters(f, m);
	return ferror(f) ? -1 : 0;
}
