// SPDX-License-Identifier: MIT
/*
 * r2p2-bench: load generator for a service behind the local r2p2d.
 *
 *   r2p2-bench [-s SOCKET] [-n SERVICE] [-S SIZE] [-c CONCURRENCY] [-N REQUESTS]
 *              [-d DURATION_S] [-t TIMEOUT_MS] [-w WARMUP] [--rate R [--poisson]]
 *              [--seed N] [--samples FILE] [--json]
 *
 * Closed loop (default): keeps CONCURRENCY calls outstanding (1 = sequential)
 * until REQUESTS measured calls were issued or DURATION_S passed, after WARMUP
 * unmeasured ones. Each call's latency is taken with CLOCK_MONOTONIC from
 * r2p2_call to its completion.
 * Open loop (--rate R): call i is due at start + i/R seconds whatever has
 * completed, with at most CONCURRENCY outstanding (a call due while the bound is
 * reached waits for a slot); its latency runs from its due time, so a late send
 * counts against the system (no coordinated omission). With --poisson the gaps
 * between due times are exponential with mean 1/R instead (a Poisson process, as
 * queueing models and the router experiment assume; --seed picks the sequence,
 * default 1). libr2p2 waits in whole
 * milliseconds, so when the next call is due in under 2.5 ms the generator
 * polls without waiting (yielding the CPU between polls): an open-loop run keeps
 * one CPU busy whenever nobody else wants it.
 * Responses are checked against the request bytes. Prints count, errors,
 * timeouts, latency percentiles in microseconds and throughput (tools/stats.h),
 * with --json one JSON object line as well, and with --samples every measured
 * latency (us, one per line, in completion order) into FILE.
 * Exit status 0 only when every measured call succeeded and verified.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "stats.h"

#define BATCH 128
#define MAX_CONCURRENCY 65536

/* Outstanding calls, by call id: open addressing, linear probing, backward-shift delete. */
struct slot {
	int64_t id; /* 0 = empty */
	uint64_t start_ns;
	int measured;
};

struct table {
	struct slot *s;
	size_t mask;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static size_t hash_id(int64_t id, size_t mask)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static void table_put(struct table *t, int64_t id, uint64_t start_ns, int measured)
{
	size_t i = hash_id(id, t->mask);

	while (t->s[i].id)
		i = (i + 1) & t->mask;
	t->s[i] = (struct slot){.id = id, .start_ns = start_ns, .measured = measured};
}

/* table_take removes `id` and copies its slot to `out`. Returns 0 or -ENOENT. */
static int table_take(struct table *t, int64_t id, struct slot *out)
{
	size_t i = hash_id(id, t->mask), j;

	while (t->s[i].id != id) {
		if (!t->s[i].id)
			return -ENOENT;
		i = (i + 1) & t->mask;
	}
	*out = t->s[i];
	t->s[i].id = 0;
	/* Shift later entries of the probe chain back into the hole. */
	for (j = (i + 1) & t->mask; t->s[j].id; j = (j + 1) & t->mask) {
		size_t home = hash_id(t->s[j].id, t->mask);

		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->s[i] = t->s[j];
			t->s[j].id = 0;
			i = j;
		}
	}
	return 0;
}

/* The open loop's schedule: evenly spaced, or a Poisson process. */
struct schedule {
	uint64_t start;
	unsigned long rate;
	int poisson;
	unsigned short rng[3]; /* erand48 state of the Poisson gaps */
	unsigned long i;       /* Poisson: the call whose due time is `t_ns` after start */
	double t_ns;
};

/* due_ns returns when open-loop call `i` (counting warmup calls) is due; with a Poisson
 * schedule `i` may only grow from one call to the next. */
static uint64_t due_ns(struct schedule *sc, unsigned long i)
{
	if (!sc->poisson)
		return sc->start + (uint64_t)((double)i * 1e9 / (double)sc->rate);
	/* erand48 is in [0, 1): 1 - u is in (0, 1], so the log is finite */
	for (; sc->i < i; sc->i++)
		sc->t_ns += -log(1.0 - erand48(sc->rng)) * 1e9 / (double)sc->rate;
	return sc->start + (uint64_t)sc->t_ns;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: r2p2-bench [-s SOCKET] [-n SERVICE] [-S SIZE] [-c CONCURRENCY] "
		"[-N REQUESTS] [-d DURATION_S]\n"
		"                  [-t TIMEOUT_MS] [-w WARMUP] [--rate R [--poisson]] [--seed N]\n"
		"                  [--samples FILE] [--json] | --version\n");
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what, unsigned long max)
{
	return tool_parse_num("r2p2-bench", s, what, max);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						 {"rate", required_argument, NULL, 'r'},
						 {"poisson", no_argument, NULL, 'P'},
						 {"seed", required_argument, NULL, 'e'},
						 {"samples", required_argument, NULL, 'o'},
						 {"version", no_argument, NULL, 'V'},
						 {0}};
	const char *sock = NULL, *service = "echo.svc", *samples = NULL;
	unsigned long size = 4, conc = 1, count = 10000, duration_s = 60, timeout_ms = 0,
		      warmup = 100, rate = 0, seed = 1;
	uint64_t max_lag_ns = 0;
	unsigned long issued = 0, inflight = 0, lost = 0, shown = 0, immediate_fail = 0;
	struct r2p2_event evs[BATCH];
	struct sigaction sa = {.sa_handler = on_signal};
	struct r2p2_ctx *ctx;
	struct lat_stats st;
	struct table tab;
	struct schedule sched = {0};
	uint8_t *payload;
	uint64_t start, t0 = 0, t_last = 0, issue_end, drain_end = 0;
	int json = 0, opt, ring_full = 0;
	char extra[384];

	while ((opt = getopt_long(argc, argv, "s:n:S:c:N:d:t:w:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'V':
			printf("r2p2-bench %s\n", R2P2_VERSION);
			return 0;
		case 's':
			sock = optarg;
			break;
		case 'n':
			service = optarg;
			break;
		case 'S':
			size = parse_num(optarg, "size", 1ul << 30);
			break;
		case 'c':
			conc = parse_num(optarg, "concurrency", MAX_CONCURRENCY);
			break;
		case 'N':
			count = parse_num(optarg, "request count", 1ul << 34);
			break;
		case 'd':
			duration_s = parse_num(optarg, "duration", 86400);
			break;
		case 't':
			timeout_ms = parse_num(optarg, "timeout", 3600000);
			break;
		case 'w':
			warmup = parse_num(optarg, "warmup", 1ul << 30);
			break;
		case 'j':
			json = 1;
			break;
		case 'r':
			rate = parse_num(optarg, "rate", 100000000);
			break;
		case 'o':
			samples = optarg;
			break;
		case 'P':
			sched.poisson = 1;
			break;
		case 'e':
			seed = parse_num(optarg, "seed", UINT32_MAX);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || conc == 0 || count == 0 || duration_s == 0)
		usage();
	if (sched.poisson && !rate) {
		fprintf(stderr, "r2p2-bench: --poisson needs --rate\n");
		usage();
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	ctx = r2p2_attach(sock);
	if (!ctx) {
		int e = errno;

		fprintf(stderr, "r2p2-bench: cannot attach to r2p2d: %s\n", strerror(e));
		return 1;
	}
	size_t tsize = 16;

	while (tsize < 4 * conc)
		tsize <<= 1;
	tab.s = calloc(tsize, sizeof(*tab.s));
	tab.mask = tsize - 1;
	payload = malloc(size ? size : 1);
	if (!tab.s || !payload || stats_init(&st, count)) {
		fprintf(stderr, "r2p2-bench: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < size; i++)
		payload[i] = (uint8_t)((i * 2654435761u) >> 13);

	start = now_ns();
	sched.start = start;
	sched.rate = rate;
	sched.rng[0] = 0x330e; /* erand48's customary low word, the seed above it */
	sched.rng[1] = (unsigned short)seed;
	sched.rng[2] = (unsigned short)(seed >> 16);
	issue_end = start + duration_s * 1000000000ull;
	const unsigned long total = warmup + count;

	for (;;) {
		uint64_t now = now_ns();
		int issuing = !stop && issued < total && now < issue_end;

		/* Fill the window (open loop: with the calls due by now). */
		ring_full = 0;
		while (issuing && inflight < conc && issued < total) {
			int measured = issued >= warmup;
			uint64_t t = now_ns(), due = rate ? due_ns(&sched, issued) : t;
			int64_t id;

			if (due > t)
				break;
			id = r2p2_call(ctx, service, payload, size, (unsigned)timeout_ms, 0);
			if (id == -EAGAIN) {
				ring_full = 1;
				break;
			}
			if (measured && !t0)
				t0 = due;
			if (measured && t - due > max_lag_ns)
				max_lag_ns = t - due;
			issued++;
			if (id < 0) {
				if (measured) {
					st.requests++;
					st.errors++;
				}
				if (shown++ < 5)
					fprintf(stderr, "r2p2-bench: call: %s\n",
						r2p2_strerror((int)id));
				/* A dead daemon fails every call at once: do not spin through N. */
				if (++immediate_fail >= 1000 && inflight == 0) {
					fprintf(stderr,
						"r2p2-bench: giving up after %lu failed calls\n",
						immediate_fail);
					stop = 1;
				}
				break;
			}
			immediate_fail = 0;
			table_put(&tab, id, due, measured);
			inflight++;
			if (measured && inflight > st.max_inflight)
				st.max_inflight = inflight;
		}

		issuing = !stop && issued < total && now_ns() < issue_end;
		if (!issuing && inflight == 0)
			break;
		if (!issuing && !drain_end) {
			/* Every call ends by its own timeout; allow that plus slack, then give up.
			 */
			uint64_t wait_ms = (timeout_ms ? timeout_ms : 10000) + 5000;

			drain_end = now_ns() + wait_ms * 1000000ull;
		}
		if (drain_end && now_ns() >= drain_end) {
			lost = inflight;
			fprintf(stderr, "r2p2-bench: %lu calls never completed\n", lost);
			break;
		}

		int poll_ms = ring_full ? 1 : inflight ? 100 : 0;

		if (!ring_full && issuing && rate && inflight < conc) {
			/* Wake up in time for the next due call (libr2p2 waits in whole ms, which
			 * can overshoot by one); poll without waiting when it is close. */
			uint64_t due = due_ns(&sched, issued), t = now_ns();

			poll_ms = due > t + 2500000 ? (int)((due - t - 1500000) / 1000000) : 0;
		}
		int n = r2p2_poll(ctx, evs, BATCH, poll_ms);

		/* A polling generator shares the CPUs with the daemons: let them run first. */
		if (n == 0 && rate && poll_ms == 0)
			sched_yield();
		if (n == -EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "r2p2-bench: poll: %s\n", r2p2_strerror(n));
			if (n == -ECONNRESET || n == -ENOTCONN) {
				lost = inflight;
				break;
			}
			continue;
		}
		uint64_t done = now_ns();

		for (int i = 0; i < n; i++) {
			const struct r2p2_event *ev = &evs[i];
			struct slot s;

			if (ev->type != R2P2_EV_RESPONSE)
				continue;
			if (table_take(&tab, (int64_t)ev->id, &s)) {
				fprintf(stderr, "r2p2-bench: response for unknown call %llu\n",
					(unsigned long long)ev->id);
				continue;
			}
			inflight--;
			if (!s.measured)
				continue;
			st.requests++;
			t_last = done;
			if (ev->status == 0) {
				if (ev->len == size && !memcmp(ev->data, payload, size)) {
					stats_add(&st, done - s.start_ns);
					continue;
				}
				st.errors++;
				if (shown++ < 5)
					fprintf(stderr,
						"r2p2-bench: response mismatch (%zu B for %lu B)\n",
						ev->len, size);
			} else if (ev->status == -ETIMEDOUT) {
				st.timeouts++;
			} else {
				st.errors++;
				if (shown++ < 5)
					fprintf(stderr, "r2p2-bench: call failed: %s\n",
						r2p2_strerror(ev->status));
			}
		}
	}
	if (lost) {
		st.requests += lost;
		st.errors += lost;
	}
	st.elapsed_s = t0 && t_last > t0 ? (double)(t_last - t0) / 1e9 : 0;
	snprintf(extra, sizeof(extra),
		 "\"service\":\"%s\",\"warmup\":%lu,\"lost\":%lu,\"rate_rps\":%lu,"
		 "\"max_send_lag_us\":%.1f,\"arrivals\":\"%s\"",
		 service, warmup, lost, rate, (double)max_lag_ns / 1000.0,
		 !rate		 ? "closed"
		 : sched.poisson ? "poisson"
				 : "even");

	int rc = st.num > 0 && st.num == st.requests ? 0 : 1;

	if (samples) {
		int err = stats_write_samples(&st, samples);

		if (err) {
			fprintf(stderr, "r2p2-bench: %s: %s\n", samples, strerror(-err));
			rc = 1;
		}
	}
	stats_report(&st, stdout, "r2p2-bench", size, (unsigned)conc, json, extra);
	if (lost)
		printf("  lost %lu (counted as errors)\n", lost);
	if (rate)
		printf(
		    "  open loop: offered %lu req/s (%s), latest send %.1f us after its due time\n",
		    rate, sched.poisson ? "Poisson" : "evenly spaced", (double)max_lag_ns / 1000.0);

	stats_cleanup(&st);
	free(tab.s);
	free(payload);
	r2p2_detach(ctx);
	return rc;
}
