// SPDX-License-Identifier: MIT
/*
 * r2p2-qsim: a discrete-event simulation of the router experiment's queueing systems
 * (tools/bench-router.sh draws its curves beside the measured ones).
 *
 *   r2p2-qsim [-d DIST] [-s SERVERS] [-w WORKERS] (--rate R | --load L)
 *             [-p POLICY] [-N COUNT] [--warmup N] [--seed N] [--json]
 *
 * Requests arrive as a Poisson process of R per second (or --load L: L x capacity,
 * capacity = SERVERS x WORKERS / mean service time), each with a service time drawn
 * from DIST (tools/svcdist.h, as r2p2-synth-server spends it; default exp:1000). Each
 * server runs WORKERS workers that take its requests in arrival order from one queue
 * (r2p2-synth-server's workers each have their own, fed round-robin by r2p2d: the same
 * with one worker, better here with more). POLICY says
 * where a request goes:
 *   single   the ideal: one FIFO feeding all SERVERS x WORKERS workers (M/G/k)
 *   random   a server drawn uniformly
 *   rr       round-robin over the servers
 *   p2c      two distinct servers drawn, the one with fewer outstanding (queued + in
 *            service; ties to the first drawn)
 *   jbsq:N   join-bounded-shortest-queue: the server with the fewest outstanding if it
 *            holds fewer than N, else the request waits in a central FIFO until a
 *            server completes one (as the router's slow path does); N below WORKERS
 *            leaves workers idle
 * Latency is arrival to completion; no network, no cost of the router. The first
 * WARMUP requests (default COUNT / 10) are simulated but not measured; COUNT (default
 * 200000) are. Deterministic for a seed: arrivals and service times come from their
 * own streams, so every policy sees the same requests. Prints p50, p90, p99, p99.9 and
 * the mean in microseconds, with --json one JSON object line as well.
 * Exit 0, or 2 on a bad argument.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "svcdist.h"

#define MAX_SERVERS 1024
#define MAX_WORKERS 1024

enum policy { POL_SINGLE, POL_RANDOM, POL_RR, POL_P2C, POL_JBSQ };

/* A FIFO of request indices, growing as needed. */
struct fifo {
	uint32_t *q;
	size_t head, num, cap;
};

/* A departure: worker of `server` finishes request `req` at `t_us`. */
struct dep {
	double t_us;
	uint32_t server;
	uint32_t req;
};

struct sim {
	enum policy policy;
	unsigned jbsq_n;
	unsigned num_servers, num_workers; /* single: 1 server of servers x workers */
	struct svcdist dist;
	double rate_per_us;
	uint64_t count, warmup;

	double *arrival_us;    /* per request */
	double *service_us;    /* per request */
	unsigned *busy;	       /* per server: workers in service */
	unsigned *outstanding; /* per server: queued + in service */
	struct fifo *queue;    /* per server */
	struct fifo central;   /* jbsq */
	struct dep *heap;      /* departures, a binary min-heap on t_us */
	size_t heap_num;
	unsigned rr_next;
	unsigned short pick_rng[3];
	struct lat_stats st;
};

static int fifo_push(struct fifo *f, uint32_t v)
{
	if (f->num == f->cap) {
		size_t ncap = f->cap ? 2 * f->cap : 64;
		uint32_t *n = malloc(ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < f->num; i++)
			n[i] = f->q[(f->head + i) % f->cap];
		free(f->q);
		f->q = n;
		f->cap = ncap;
		f->head = 0;
	}
	f->q[(f->head + f->num) % f->cap] = v;
	f->num++;
	return 0;
}

static uint32_t fifo_pop(struct fifo *f)
{
	uint32_t v = f->q[f->head];

	f->head = (f->head + 1) % f->cap;
	f->num--;
	return v;
}

static void heap_push(struct sim *s, struct dep d)
{
	size_t i = s->heap_num++;

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (s->heap[parent].t_us <= d.t_us)
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = d;
}

static struct dep heap_pop(struct sim *s)
{
	struct dep top = s->heap[0], last = s->heap[--s->heap_num];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->heap_num)
			break;
		if (c + 1 < s->heap_num && s->heap[c + 1].t_us < s->heap[c].t_us)
			c++;
		if (last.t_us <= s->heap[c].t_us)
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->heap_num)
		s->heap[i] = last;
	return top;
}

/* assign gives request `req` to `server` at time `now`: a free worker starts it, or it queues. */
static int assign(struct sim *s, unsigned server, uint32_t req, double now)
{
	s->outstanding[server]++;
	if (s->busy[server] < s->num_workers) {
		s->busy[server]++;
		heap_push(s, (struct dep){
				 .t_us = now + s->service_us[req], .server = server, .req = req});
		return 0;
	}
	return fifo_push(&s->queue[server], req);
}

static unsigned least_outstanding(const struct sim *s)
{
	unsigned best = 0;

	for (unsigned i = 1; i < s->num_servers; i++)
		if (s->outstanding[i] < s->outstanding[best])
			best = i;
	return best;
}

static unsigned pick_uniform(struct sim *s, unsigned n)
{
	unsigned v = (unsigned)(erand48(s->pick_rng) * n);

	return v < n ? v : n - 1;
}

/* arrive routes request `req` by the policy. */
static int arrive(struct sim *s, uint32_t req, double now)
{
	unsigned a, b;

	switch (s->policy) {
	case POL_SINGLE:
		return assign(s, 0, req, now);
	case POL_RANDOM:
		return assign(s, pick_uniform(s, s->num_servers), req, now);
	case POL_RR:
		a = s->rr_next;
		s->rr_next = (s->rr_next + 1) % s->num_servers;
		return assign(s, a, req, now);
	case POL_P2C:
		a = pick_uniform(s, s->num_servers);
		if (s->num_servers < 2)
			return assign(s, a, req, now);
		b = pick_uniform(s, s->num_servers - 1);
		b += b >= a; /* distinct from a */
		return assign(s, s->outstanding[b] < s->outstanding[a] ? b : a, req, now);
	case POL_JBSQ:
		/* first come, first served: while requests wait, new ones queue behind them */
		a = least_outstanding(s);
		if (s->central.num == 0 && s->outstanding[a] < s->jbsq_n)
			return assign(s, a, req, now);
		return fifo_push(&s->central, req);
	}
	return -EINVAL;
}

/* depart ends request `d.req` at its server and starts what waits for the freed place. */
static int depart(struct sim *s, struct dep d)
{
	int r = 0;

	if (d.req >= s->warmup)
		stats_add(&s->st, (uint64_t)llround((d.t_us - s->arrival_us[d.req]) * 1000.0));
	s->busy[d.server]--;
	s->outstanding[d.server]--;
	if (s->queue[d.server].num) {
		uint32_t next = fifo_pop(&s->queue[d.server]);

		s->busy[d.server]++;
		heap_push(s, (struct dep){.t_us = d.t_us + s->service_us[next],
					  .server = d.server,
					  .req = next});
	}
	if (s->policy == POL_JBSQ && s->central.num) {
		unsigned a = least_outstanding(s);

		if (s->outstanding[a] < s->jbsq_n)
			r = assign(s, a, fifo_pop(&s->central), d.t_us);
	}
	return r;
}

/* sim_run simulates warmup + count requests. Returns 0 or -ENOMEM. */
static int sim_run(struct sim *s, uint64_t seed)
{
	uint64_t total = s->warmup + s->count, next = 0;
	unsigned short arr_rng[3], svc_rng[3];
	double t = 0;
	int r = 0;

	svcdist_seed(arr_rng, seed, 0);
	svcdist_seed(svc_rng, seed, 1);
	svcdist_seed(s->pick_rng, seed, 2);
	s->arrival_us = malloc(total * sizeof(double));
	s->service_us = malloc(total * sizeof(double));
	s->busy = calloc(s->num_servers, sizeof(unsigned));
	s->outstanding = calloc(s->num_servers, sizeof(unsigned));
	s->queue = calloc(s->num_servers, sizeof(struct fifo));
	s->heap = malloc((size_t)s->num_servers * s->num_workers * sizeof(struct dep));
	if (!s->arrival_us || !s->service_us || !s->busy || !s->outstanding || !s->queue ||
	    !s->heap || stats_init(&s->st, s->count))
		return -ENOMEM;
	/* the whole arrival process first: the same requests for every policy */
	for (uint64_t i = 0; i < total; i++) {
		t += -log(1.0 - erand48(arr_rng)) / s->rate_per_us;
		s->arrival_us[i] = t;
		s->service_us[i] = svcdist_draw_us(&s->dist, svc_rng);
	}
	while (!r && (next < total || s->heap_num)) {
		if (s->heap_num && (next == total || s->heap[0].t_us <= s->arrival_us[next])) {
			r = depart(s, heap_pop(s));
		} else {
			r = arrive(s, (uint32_t)next, s->arrival_us[next]);
			next++;
		}
	}
	return r;
}

static void sim_free(struct sim *s)
{
	for (unsigned i = 0; s->queue && i < s->num_servers; i++)
		free(s->queue[i].q);
	free(s->central.q);
	free(s->queue);
	free(s->heap);
	free(s->outstanding);
	free(s->busy);
	free(s->service_us);
	free(s->arrival_us);
	stats_cleanup(&s->st);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: r2p2-qsim [-d DIST] [-s SERVERS] [-w WORKERS] (--rate R | --load L)\n"
		"                 [-p single|random|rr|p2c|jbsq:N] [-N COUNT] [--warmup N] "
		"[--seed N] [--json]\n"
		"  DIST: fixed:US | exp:US | bimodal:SHORT_US:LONG_US:P_LONG (default exp:1000)\n");
	exit(2);
}

static void bad(const char *what, const char *why)
{
	fprintf(stderr, "r2p2-qsim: %s: %s\n", what, why);
	exit(2);
}

/* parse_policy reads POLICY into `s`; exits 2 on anything else. */
static void parse_policy(struct sim *s, const char *arg)
{
	static const char *names[] = {
	    [POL_SINGLE] = "single", [POL_RANDOM] = "random", [POL_RR] = "rr", [POL_P2C] = "p2c"};

	for (int i = POL_SINGLE; i <= POL_P2C; i++)
		if (!strcmp(arg, names[i])) {
			s->policy = (enum policy)i;
			return;
		}
	if (!strncmp(arg, "jbsq:", 5)) {
		s->policy = POL_JBSQ;
		s->jbsq_n = (unsigned)tool_parse_num("r2p2-qsim", arg + 5, "JBSQ bound", 1u << 20);
		if (s->jbsq_n == 0)
			bad("policy", "JBSQ's bound must be at least 1");
		return;
	}
	fprintf(stderr, "r2p2-qsim: policy: '%s' is none of single, random, rr, p2c, jbsq:N\n",
		arg);
	exit(2);
}

/* parse_real reads a positive decimal (no exponent, no sign) into `out`. */
static double parse_real(const char *s, const char *what, double max)
{
	double v;

	if (svcdist_num(s, strlen(s), max, &v) || v <= 0) {
		fprintf(stderr, "r2p2-qsim: bad %s '%s' (a number above 0, at most %g)\n", what, s,
			max);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"rate", required_argument, NULL, 'r'},
						 {"load", required_argument, NULL, 'l'},
						 {"warmup", required_argument, NULL, 'W'},
						 {"seed", required_argument, NULL, 'e'},
						 {"json", no_argument, NULL, 'j'},
						 {"help", no_argument, NULL, 'h'},
						 {0}};
	struct sim s = {.policy = POL_SINGLE, .num_servers = 3, .num_workers = 1, .count = 200000};
	const char *dist = "exp:1000", *policy_arg = "single";
	double rate = 0, load = 0, mean, capacity, p50, p90, p99, p999, avg = 0;
	unsigned long long seed = 1, warmup = ~0ull;
	unsigned servers, workers;
	int opt, json = 0, r;
	char err[160], spec[96];

	while ((opt = getopt_long(argc, argv, "d:s:w:p:N:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			dist = optarg;
			break;
		case 's':
			s.num_servers = (unsigned)tool_parse_num("r2p2-qsim", optarg,
								 "server count", MAX_SERVERS);
			break;
		case 'w':
			s.num_workers = (unsigned)tool_parse_num("r2p2-qsim", optarg,
								 "worker count", MAX_WORKERS);
			break;
		case 'p':
			policy_arg = optarg;
			parse_policy(&s, optarg);
			break;
		case 'N':
			s.count = tool_parse_num("r2p2-qsim", optarg, "count", 100000000);
			break;
		case 'W':
			warmup = tool_parse_num("r2p2-qsim", optarg, "warmup", 100000000);
			break;
		case 'e':
			seed = tool_parse_num("r2p2-qsim", optarg, "seed", UINT32_MAX);
			break;
		case 'r':
			rate = parse_real(optarg, "rate", 1e9);
			break;
		case 'l':
			load = parse_real(optarg, "load", 10);
			break;
		case 'j':
			json = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc) {
		fprintf(stderr, "r2p2-qsim: unexpected argument '%s'\n", argv[optind]);
		usage();
	}
	if (s.num_servers == 0 || s.num_workers == 0)
		bad("servers and workers", "at least 1 each");
	if (s.count == 0)
		bad("count", "at least 1");
	if (svcdist_parse(dist, &s.dist, err, sizeof(err)))
		bad("distribution", err);
	if ((rate > 0) == (load > 0))
		bad("arrivals", "give exactly one of --rate R and --load L");
	mean = svcdist_mean_us(&s.dist);
	if (mean <= 0)
		bad("distribution", "its mean must be above 0");
	servers = s.num_servers;
	workers = s.num_workers;
	capacity = (double)servers * workers / mean * 1e6; /* requests per second */
	if (load > 0)
		rate = load * capacity;
	if (rate >= capacity)
		bad("arrivals",
		    "the offered load must stay below capacity, or queues grow forever");
	s.rate_per_us = rate / 1e6;
	s.warmup = warmup == ~0ull ? s.count / 10 : warmup;
	if (s.policy == POL_SINGLE) {
		s.num_workers = servers * workers;
		s.num_servers = 1;
	}
	svcdist_format(&s.dist, spec, sizeof(spec));
	if (s.policy == POL_JBSQ && s.jbsq_n < workers)
		fprintf(stderr,
			"r2p2-qsim: note: JBSQ(%u) keeps at most %u of each server's %u workers "
			"busy\n",
			s.jbsq_n, s.jbsq_n, workers);

	r = sim_run(&s, seed);
	if (r) {
		fprintf(stderr, "r2p2-qsim: %s\n", strerror(-r));
		sim_free(&s);
		return 1;
	}
	qsort(s.st.ns, s.st.num, sizeof(*s.st.ns), stats_cmp_u64);
	p50 = stats_pct_us(&s.st, 50);
	p90 = stats_pct_us(&s.st, 90);
	p99 = stats_pct_us(&s.st, 99);
	p999 = stats_pct_us(&s.st, 99.9);
	for (size_t i = 0; i < s.st.num; i++)
		avg += (double)s.st.ns[i];
	avg = s.st.num ? avg / (double)s.st.num / 1000.0 : 0;
	printf("r2p2-qsim: %s, %u server(s) x %u worker(s), %s, %.1f req/s (load %.3f), %llu "
	       "requests (seed %llu)\n",
	       policy_arg, servers, workers, spec, rate, rate / capacity,
	       (unsigned long long)s.count, seed);
	printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  (mean %.1f)\n", p50, p90,
	       p99, p999, avg);
	if (json)
		printf("{\"tool\":\"r2p2-qsim\",\"policy\":\"%s\",\"servers\":%u,\"workers\":%u,"
		       "\"dist\":\"%s\",\"mean_service_us\":%.3f,\"rate_rps\":%.3f,\"load\":%.4f,"
		       "\"requests\":%llu,\"seed\":%llu,\"p50_us\":%.2f,\"p90_us\":%.2f,"
		       "\"p99_us\":%.2f,\"p999_us\":%.2f,\"mean_us\":%.3f}\n",
		       policy_arg, servers, workers, spec, mean, rate, rate / capacity,
		       (unsigned long long)s.count, seed, p50, p90, p99, p999, avg);
	sim_free(&s);
	return 0;
}
