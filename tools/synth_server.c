// SPDX-License-Identifier: MIT
/*
 * r2p2-synth-server: serves a service (default "synth.svc") through the local r2p2d
 * with a synthetic service time, for the router experiment (tools/bench-router.sh).
 *
 *   r2p2-synth-server [-s SOCKET] [-n SERVICE] [-d DIST] [-w WORKERS] [--spin]
 *                     [--seed N]
 *
 * DIST is fixed:US, exp:US or bimodal:SHORT_US:LONG_US:P_LONG (tools/svcdist.h;
 * default exp:1000). Each of the WORKERS threads (default 1) attaches its own
 * context and registers the service, so the daemon hands requests to the workers
 * round-robin and each worker serves its own in arrival order: a server of k workers
 * is k queues, as in the paper's servers with one queue per core. A worker spends
 * each request's service time, drawn when it starts the request, sleeping
 * (clock_nanosleep to an absolute deadline, timer slack 1 ns: many sleeping workers
 * fit on few CPUs) or, with --spin, spinning on the clock; then it answers with the
 * request's bytes (keep requests small: r2p2-bench checks the echo).
 * Prints "synth server ready: ..." once every worker registered. SIGUSR1 prints
 * "served N mean_us X" (requests answered, mean service time actually spent) and so
 * does SIGTERM/SIGINT, which end it (exit 0). Exit 1 when the daemon goes away or
 * refuses the service, 2 on a bad argument.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "stats.h"
#include "svcdist.h"

#define BATCH 32
#define MAX_WORKERS 256
/* A worker's poll wakes this often to see the end of the run. */
#define POLL_CAP_MS 100

struct server;

struct worker {
	struct server *s;
	pthread_t thread;
	unsigned idx;
	struct r2p2_ctx *ctx;
	unsigned short rng[3];
	_Atomic uint64_t served;   /* requests answered */
	_Atomic uint64_t spent_ns; /* service time actually spent on them */
	int err;		   /* why the worker stopped early (negative errno), or 0 */
};

struct server {
	const char *sock, *service;
	struct svcdist dist;
	int spin;
	struct worker *workers;
	unsigned num_workers;
};

static atomic_int stop;

/* spend holds the calling thread for `us` microseconds from `start_ns`. */
static void spend(uint64_t start_ns, double us, int spin)
{
	uint64_t until = start_ns + (uint64_t)(us * 1000.0);
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ull),
			      .tv_nsec = (long)(until % 1000000000ull)};

	if (us <= 0)
		return;
	if (spin) {
		while (now_ns() < until)
			;
		return;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* serve_one spends one request's service time and answers it. Returns 0 or a negative errno
 * (the daemon is gone). */
static int serve_one(struct server *s, struct worker *w, const struct r2p2_event *ev)
{
	uint64_t start = now_ns(), end;
	int r;

	spend(start, svcdist_draw_us(&s->dist, w->rng), s->spin);
	end = now_ns();
	/* -EAGAIN: the response ring is full; the daemon drains it, try again shortly */
	while ((r = r2p2_respond(w->ctx, ev, ev->data, ev->len)) == -EAGAIN && !stop)
		usleep(50);
	if (r == -ENOTCONN || r == -ECONNRESET || r == -EPIPE || r == -ESHUTDOWN)
		return r;
	if (r)
		fprintf(stderr, "r2p2-synth-server: worker %u: respond: %s\n", w->idx,
			r2p2_strerror(r));
	atomic_fetch_add(&w->served, 1);
	atomic_fetch_add(&w->spent_ns, end - start);
	return 0;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct server *s = w->s;
	struct r2p2_event evs[BATCH];

	/* Sleeping workers wake on time: the default 50 us of timer slack would be added to
	 * every service time. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	while (!stop) {
		int n = r2p2_poll(w->ctx, evs, BATCH, POLL_CAP_MS);

		if (n == -EINTR)
			continue;
		if (n < 0) {
			w->err = n;
			break;
		}
		for (int i = 0; i < n && !w->err; i++) {
			if (evs[i].type == R2P2_EV_ERROR) {
				fprintf(stderr, "r2p2-synth-server: response to %llu failed: %s\n",
					(unsigned long long)evs[i].id,
					r2p2_strerror(evs[i].status));
				continue;
			}
			if (evs[i].type == R2P2_EV_REQUEST)
				w->err = serve_one(s, w, &evs[i]);
		}
		if (w->err)
			break;
	}
	if (w->err && !stop) {
		fprintf(stderr, "r2p2-synth-server: worker %u: %s; stopping\n", w->idx,
			r2p2_strerror(w->err));
		stop = 1;
		kill(getpid(), SIGTERM); /* wake the main thread's sigwait */
	}
	return NULL;
}

static void report(const struct server *s)
{
	uint64_t served = 0, spent = 0;

	for (unsigned i = 0; i < s->num_workers; i++) {
		served += atomic_load(&s->workers[i].served);
		spent += atomic_load(&s->workers[i].spent_ns);
	}
	printf("served %llu mean_us %.1f\n", (unsigned long long)served,
	       served ? (double)spent / (double)served / 1000.0 : 0.0);
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: r2p2-synth-server [-s SOCKET] [-n SERVICE] [-d DIST] [-w WORKERS] "
			"[--spin] [--seed N]\n"
			"  DIST: fixed:US | exp:US | bimodal:SHORT_US:LONG_US:P_LONG "
			"(default exp:1000)\n");
	exit(2);
}

static void bad(const char *what, const char *why)
{
	fprintf(stderr, "r2p2-synth-server: %s: %s\n", what, why);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"spin", no_argument, NULL, 'S'},
						 {"seed", required_argument, NULL, 'r'},
						 {"help", no_argument, NULL, 'h'},
						 {0}};
	struct server s = {.service = "synth.svc"};
	const char *dist = "exp:1000";
	unsigned long long seed = 1;
	unsigned started = 0;
	char err[160], spec[96];
	sigset_t sigs;
	int opt, rc = 0;

	s.num_workers = 1;
	while ((opt = getopt_long(argc, argv, "s:n:d:w:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			s.sock = optarg;
			break;
		case 'n':
			if (!*optarg)
				bad("service", "empty name");
			s.service = optarg;
			break;
		case 'd':
			dist = optarg;
			break;
		case 'w':
			s.num_workers = (unsigned)tool_parse_num("r2p2-synth-server", optarg,
								 "worker count", MAX_WORKERS);
			if (s.num_workers == 0)
				bad("worker count", "at least 1");
			break;
		case 'S':
			s.spin = 1;
			break;
		case 'r':
			seed = tool_parse_num("r2p2-synth-server", optarg, "seed", UINT32_MAX);
			break;
		default:
			usage();
		}
	}
	if (optind != argc) {
		fprintf(stderr, "r2p2-synth-server: unexpected argument '%s'\n", argv[optind]);
		usage();
	}
	if (svcdist_parse(dist, &s.dist, err, sizeof(err)))
		bad("distribution", err);
	svcdist_format(&s.dist, spec, sizeof(spec));

	/* Signals go to the main thread's sigwait only; workers inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	s.workers = calloc(s.num_workers, sizeof(*s.workers));
	if (!s.workers) {
		fprintf(stderr, "r2p2-synth-server: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < s.num_workers; i++) {
		struct worker *w = &s.workers[i];
		int id;

		w->s = &s;
		w->idx = i;
		svcdist_seed(w->rng, seed, i);
		w->ctx = r2p2_attach(s.sock);
		if (!w->ctx) {
			int e = errno;

			fprintf(stderr, "r2p2-synth-server: cannot attach to r2p2d: %s\n",
				strerror(e));
			rc = 1;
			goto out;
		}
		id = r2p2_register(w->ctx, s.service);
		if (id < 0) {
			fprintf(stderr, "r2p2-synth-server: register %s: %s\n", s.service,
				r2p2_strerror(id));
			rc = 1;
			goto out;
		}
	}
	for (; started < s.num_workers; started++) {
		if (pthread_create(&s.workers[started].thread, NULL, worker_run,
				   &s.workers[started])) {
			fprintf(stderr, "r2p2-synth-server: cannot start worker %u\n", started);
			stop = 1;
			rc = 1;
			goto out;
		}
	}
	printf("synth server ready: %s, %u worker(s), %s (mean %.1f us), %s\n", s.service,
	       s.num_workers, spec, svcdist_mean_us(&s.dist), s.spin ? "spinning" : "sleeping");
	fflush(stdout);

	while (!stop) {
		int sig;

		if (sigwait(&sigs, &sig))
			continue;
		if (sig == SIGUSR1)
			report(&s);
		else
			stop = 1;
	}
out:
	for (unsigned i = 0; i < started; i++) {
		pthread_join(s.workers[i].thread, NULL);
		if (s.workers[i].err)
			rc = 1;
	}
	if (started)
		report(&s);
	for (unsigned i = 0; i < s.num_workers; i++)
		r2p2_detach(s.workers[i].ctx);
	free(s.workers);
	return rc;
}
