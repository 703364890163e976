// SPDX-License-Identifier: MIT
/*
 * burst_client: one app that puts COUNT calls in flight at once through the local r2p2d
 * and tells how every one of them ended (tests/integration/it_burst.sh).
 *
 *   burst_client [-s SOCKET] [-n SERVICE] [-N COUNT] [-S SIZE] [-t TIMEOUT_MS] [-w GRACE_MS]
 *
 * Every call is submitted as fast as the ring accepts it, none waiting for another's
 * answer: -EAGAIN from r2p2_call (ring or arena full) is back-pressure, so the client
 * polls (collecting completions), counts it and tries the same call again. Then it
 * waits for every completion, up to TIMEOUT_MS + GRACE_MS after the last submission.
 * Each request is SIZE bytes (>= 16) that no other call of the run carries (its index
 * and a per-run seed, then bytes derived from both), so an answer that belongs to
 * another call shows up as a mismatch, not as a success.
 *
 * Output: a few human lines on stderr and one line on stdout,
 *   burst calls N made M verified V mismatched X unknown U lost L refused F
 *         eagain_retries R max_inflight I submit_ms T duration_ms T [err_NAME K]...
 * where made counts the calls r2p2_call accepted, err_NAME (err_ETIMEDOUT, err_EBADMSG,
 * ...) counts the calls that ended with -NAME, whether r2p2_call refused them at once
 * (also in `refused`) or their completion carried it; unknown counts completions for no
 * call of this run or a second one for a call that had ended (looked for during 200 ms
 * after the last expected one), lost the calls still without an answer at the end;
 * duration_ms runs from the first submission to the last completion. Exit status 0 when every call
 * was accounted for exactly once (verified or an error) and none mismatched; 1 otherwise; 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "stats.h"

#define BATCH 256
#define MAX_ERRNO 256
#define MAX_COUNT 1000000

/* Outstanding calls, by call id: open addressing, linear probing, backward-shift delete. */
struct slot {
	int64_t id; /* 0 = empty */
	uint32_t idx;
};

struct run {
	struct r2p2_ctx *ctx;
	const char *service;
	unsigned long count, size, timeout_ms;
	uint64_t seed;
	struct slot *tab;
	size_t mask;
	uint8_t *req, *want; /* the request being submitted; a completed call's request */
	unsigned long made, verified, mismatched, unknown, refused, eagain;
	unsigned long inflight, max_inflight, ended, shown;
	unsigned long errs[MAX_ERRNO + 1]; /* [e]: calls that ended with -e; [MAX_ERRNO]: others */
};

static size_t hash_id(int64_t id, size_t mask)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static void table_put(struct run *r, int64_t id, uint32_t idx)
{
	size_t i = hash_id(id, r->mask);

	while (r->tab[i].id)
		i = (i + 1) & r->mask;
	r->tab[i] = (struct slot){.id = id, .idx = idx};
}

/* table_take removes `id` and returns its call index, or -1 when it is not there. */
static long table_take(struct run *r, int64_t id)
{
	size_t i = hash_id(id, r->mask), j;
	long idx;

	while (r->tab[i].id != id) {
		if (!r->tab[i].id)
			return -1;
		i = (i + 1) & r->mask;
	}
	idx = r->tab[i].idx;
	r->tab[i].id = 0;
	for (j = (i + 1) & r->mask; r->tab[j].id; j = (j + 1) & r->mask) {
		size_t home = hash_id(r->tab[j].id, r->mask);

		if (((j - home) & r->mask) >= ((j - i) & r->mask)) {
			r->tab[i] = r->tab[j];
			r->tab[j].id = 0;
			i = j;
		}
	}
	return idx;
}

/* fill writes the request of call `idx`: its index, the run's seed, then derived bytes. */
static void fill(const struct run *r, uint8_t *p, uint32_t idx)
{
	uint64_t x = r->seed ^ ((uint64_t)idx * 0x9E3779B97F4A7C15ull);

	memcpy(p, &idx, sizeof(idx));
	memcpy(p + 4, &r->seed, sizeof(r->seed));
	memcpy(p + 12, &idx, sizeof(idx));
	for (size_t i = 16; i < r->size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

static void count_err(struct run *r, int status)
{
	int e = -status;

	r->errs[e > 0 && e < MAX_ERRNO ? e : MAX_ERRNO]++;
	if (r->shown++ < 5)
		fprintf(stderr, "burst_client: a call failed: %s (%d)\n", r2p2_strerror(status),
			status);
}

/* on_response accounts for one completion. */
static void on_response(struct run *r, const struct r2p2_event *ev)
{
	long idx = table_take(r, (int64_t)ev->id);

	if (idx < 0) {
		r->unknown++;
		return;
	}
	r->ended++;
	r->inflight--;
	if (ev->status) {
		count_err(r, ev->status);
		return;
	}
	fill(r, r->want, (uint32_t)idx);
	if (ev->len == r->size && !memcmp(ev->data, r->want, r->size)) {
		r->verified++;
		return;
	}
	r->mismatched++;
	if (r->shown++ < 5)
		fprintf(stderr, "burst_client: call %ld: response of %zu B does not match\n", idx,
			ev->len);
}

/* collect polls once (waiting up to `wait_ms`) and accounts for what came. */
static int collect(struct run *r, int wait_ms)
{
	struct r2p2_event evs[BATCH];
	int n = r2p2_poll(r->ctx, evs, BATCH, wait_ms);

	if (n == -EINTR)
		return 0;
	if (n < 0) {
		fprintf(stderr, "burst_client: poll: %s\n", r2p2_strerror(n));
		return n;
	}
	for (int i = 0; i < n; i++)
		if (evs[i].type == R2P2_EV_RESPONSE)
			on_response(r, &evs[i]);
	return n;
}

/* submit makes every call, retrying each on -EAGAIN. Returns 0 or a poll error. */
static int submit(struct run *r)
{
	for (uint32_t i = 0; i < r->count; i++) {
		int64_t id;
		int ret;

		fill(r, r->req, i);
		while ((id = r2p2_call(r->ctx, r->service, r->req, r->size, (unsigned)r->timeout_ms,
				       0)) == -EAGAIN) {
			r->eagain++;
			ret = collect(r, 1);
			if (ret < 0)
				return ret;
		}
		if (id < 0) {
			r->refused++;
			r->ended++;
			count_err(r, (int)id);
			continue;
		}
		r->made++;
		table_put(r, id, i);
		if (++r->inflight > r->max_inflight)
			r->max_inflight = r->inflight;
		/* Keep the completion queue short while submitting. */
		if ((i & 63) == 63 && (ret = collect(r, 0)) < 0)
			return ret;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: burst_client [-s SOCKET] [-n SERVICE] [-N COUNT] [-S SIZE] "
			"[-t TIMEOUT_MS] [-w GRACE_MS]\n");
	exit(2);
}

static void report(const struct run *r, uint64_t submit_ns, uint64_t total_ns)
{
	unsigned long lost = r->count - r->ended;

	printf("burst calls %lu made %lu verified %lu mismatched %lu unknown %lu lost %lu "
	       "refused %lu eagain_retries %lu max_inflight %lu submit_ms %llu duration_ms %llu",
	       r->count, r->made, r->verified, r->mismatched, r->unknown, lost, r->refused,
	       r->eagain, r->max_inflight, (unsigned long long)(submit_ns / 1000000),
	       (unsigned long long)(total_ns / 1000000));
	for (int e = 1; e <= MAX_ERRNO; e++) {
		const char *name = e < MAX_ERRNO ? strerrorname_np(e) : NULL;

		if (!r->errs[e])
			continue;
		if (name)
			printf(" err_%s %lu", name, r->errs[e]);
		else
			printf(" err_%d %lu", e, r->errs[e]);
	}
	printf("\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct run r = {.service = "echo.svc", .count = 10000, .size = 64, .timeout_ms = 5000};
	const char *sock = NULL;
	unsigned long grace_ms = 10000;
	uint64_t t0, t_sub, t_end, deadline;
	size_t tsize = 16;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:n:N:S:t:w:h")) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'n':
			r.service = optarg;
			break;
		case 'N':
			r.count = tool_parse_num("burst_client", optarg, "count", MAX_COUNT);
			break;
		case 'S':
			r.size = tool_parse_num("burst_client", optarg, "size", 1ul << 20);
			break;
		case 't':
			r.timeout_ms = tool_parse_num("burst_client", optarg, "timeout", 3600000);
			break;
		case 'w':
			grace_ms = tool_parse_num("burst_client", optarg, "grace", 3600000);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || r.count == 0 || r.size < 16)
		usage();
	r.ctx = r2p2_attach(sock);
	if (!r.ctx) {
		fprintf(stderr, "burst_client: cannot attach to r2p2d: %s\n", strerror(errno));
		return 1;
	}
	while (tsize < 2 * r.count)
		tsize <<= 1;
	r.tab = calloc(tsize, sizeof(*r.tab));
	r.mask = tsize - 1;
	r.req = malloc(r.size);
	r.want = malloc(r.size);
	if (!r.tab || !r.req || !r.want) {
		fprintf(stderr, "burst_client: out of memory\n");
		return 1;
	}
	r.seed = now_ns() ^ (uint64_t)getpid() << 40;

	t0 = now_ns();
	err = submit(&r);
	t_sub = now_ns();
	fprintf(stderr, "burst_client: %lu calls submitted in %.3f s (%lu -EAGAIN retries)\n",
		r.made, (double)(t_sub - t0) / 1e9, r.eagain);
	deadline = t_sub + (r.timeout_ms + grace_ms) * 1000000ull;
	while (!err && r.ended < r.count && now_ns() < deadline)
		err = collect(&r, 100) < 0;
	t_end = now_ns();
	/* A last look for completions that should not come (second answers of a call). */
	for (uint64_t end = t_end + 200000000ull; !err && now_ns() < end;)
		err = collect(&r, 50) < 0;
	report(&r, t_sub - t0, t_end - t0);

	int ok = r.ended == r.count && !r.mismatched && !r.unknown;

	free(r.tab);
	free(r.req);
	free(r.want);
	r2p2_detach(r.ctx);
	return ok ? 0 : 1;
}
