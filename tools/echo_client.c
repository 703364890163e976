// SPDX-License-Identifier: MIT
/*
 * r2p2-echo-client: calls an echo service through the local r2p2d and checks
 * every response byte for byte.
 *
 *   r2p2-echo-client [-s SOCKET] [-n SERVICE] [-S SIZE] [-c COUNT] [-t TIMEOUT_MS]
 *                    [-i INTERVAL_MS] [-P TEXT] [-N] [-v]
 *
 * Requests are sequential (r2p2_call_sync), SIZE bytes of pseudo-random
 * content, different for each request; with -P, TEXT repeated to SIZE bytes
 * (the same for every request: a known pattern to look for on the wire). A
 * failed call is reported with r2p2_strerror and the client goes on with the
 * next one (after a daemon restart the next call reconnects). -i sleeps
 * between requests, -v prints a line for every request. Exit status 0 only
 * when every response verified.
 *
 * -N marks every call not replay-safe (R2P2_CALL_NOT_REPLAY_SAFE: never 0-RTT early
 * data in tls mode, a tls exchange rather than AEAD-only in sealed mode); the calls
 * are then made with r2p2_call + r2p2_poll, since r2p2_call_sync takes no flags.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "stats.h"

static void usage(void)
{
	fprintf(stderr, "usage: r2p2-echo-client [-s SOCKET] [-n SERVICE] [-S SIZE] [-c COUNT] "
			"[-t TIMEOUT_MS] [-i INTERVAL_MS] [-P TEXT] [-N] [-v] | --version\n");
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what)
{
	return tool_parse_num("r2p2-echo-client", s, what, 0xFFFFFFFFul);
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

/* ---- -N: calls with flags (r2p2_call_sync has none) ---- */

/*
 * call_flags is r2p2_call_sync with `flags` for r2p2_call: submit, then poll until
 * this call's response (other events are dropped: the client makes one call at a
 * time). Returns as r2p2_call_sync does.
 */
static int call_flags(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
		      void *resp, size_t resp_cap, size_t *out_len, unsigned timeout_ms,
		      unsigned flags)
{
	/* like r2p2_call_sync: the call's own timeout (0: the service's) plus a grace second */
	uint64_t deadline =
	    now_ns() + ((uint64_t)(timeout_ms ? timeout_ms : 60000) + 1000) * 1000000ull;
	struct r2p2_event ev;
	int64_t id;
	int r;

	*out_len = 0;
	for (;;) {
		id = r2p2_call(ctx, service, req, len, timeout_ms, flags);
		if (id != -EAGAIN)
			break;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		r = r2p2_poll(ctx, &ev, 1, 1);
		if (r < 0)
			return r;
	}
	if (id < 0)
		return (int)id;
	for (;;) {
		uint64_t now = now_ns();

		if (now >= deadline)
			return -ETIMEDOUT;
		r = r2p2_poll(ctx, &ev, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (r < 0)
			return r;
		if (r == 1 && ev.type == R2P2_EV_RESPONSE && ev.id == (uint64_t)id)
			break;
	}
	*out_len = ev.len;
	if (ev.status)
		return ev.status;
	if (ev.len > resp_cap)
		return -ENOBUFS;
	if (ev.len)
		memcpy(resp, ev.data, ev.len);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *service = "echo.svc", *pattern = NULL;
	size_t pattern_len = 0;
	unsigned long size = 64, count = 1, timeout_ms = 0, interval_ms = 0;
	unsigned long ok = 0, failed = 0, mismatched = 0;
	struct r2p2_ctx *ctx = NULL;
	uint8_t *req = NULL, *resp = NULL;
	uint64_t t0, seed;
	int opt, verbose = 0, last_err = 0;
	unsigned call_fl = 0; /* -N */

	static const struct option longopts[] = {{"version", no_argument, NULL, 'V'}, {0}};

	while ((opt = getopt_long(argc, argv, "s:n:S:c:t:i:P:Nvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'V':
			printf("r2p2-echo-client %s\n", R2P2_VERSION);
			return 0;
		case 's':
			sock = optarg;
			break;
		case 'n':
			service = optarg;
			break;
		case 'S':
			size = parse_num(optarg, "size");
			break;
		case 'c':
			count = parse_num(optarg, "count");
			break;
		case 't':
			timeout_ms = parse_num(optarg, "timeout");
			break;
		case 'i':
			interval_ms = parse_num(optarg, "interval");
			break;
		case 'P':
			pattern = optarg;
			pattern_len = strlen(optarg);
			if (!pattern_len)
				usage();
			break;
		case 'v':
			verbose = 1;
			break;
		case 'N':
			call_fl = R2P2_CALL_NOT_REPLAY_SAFE;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0); /* per-request lines interleave with stderr in order */

	ctx = r2p2_attach(sock);
	if (!ctx) {
		int e = errno;

		fprintf(stderr, "r2p2-echo-client: cannot attach to r2p2d at %s: %s\n",
			sock			? sock
			: getenv("R2P2_SOCKET") ? getenv("R2P2_SOCKET")
						: R2P2_DEFAULT_SOCKET,
			strerror(e));
		return 1;
	}
	/* One spare byte so that an over-long echo shows up as a mismatch, not a truncation. */
	req = malloc(size ? size : 1);
	resp = malloc(size + 1);
	if (!req || !resp) {
		fprintf(stderr, "r2p2-echo-client: out of memory\n");
		return 1;
	}
	seed = now_ns() ^ (uint64_t)getpid() << 32;

	t0 = now_ns();
	for (unsigned long i = 0; i < count; i++) {
		size_t got = 0;
		uint64_t t1;
		int r;

		if (i && interval_ms)
			usleep((useconds_t)(interval_ms * 1000));
		if (pattern)
			for (size_t k = 0; k < size; k++)
				req[k] = (uint8_t)pattern[k % pattern_len];
		else
			fill(req, size, seed + i);
		t1 = now_ns();
		if (call_fl)
			r = call_flags(ctx, service, req, size, resp, size + 1, &got,
				       (unsigned)timeout_ms, call_fl);
		else
			r = r2p2_call_sync(ctx, service, req, size, resp, size + 1, &got,
					   (unsigned)timeout_ms);
		if (r == -ENOBUFS) {
			mismatched++;
			fprintf(
			    stderr,
			    "r2p2-echo-client: request %lu: response too long (%zu B for %lu B)\n",
			    i, got, size);
			continue;
		}
		if (r < 0) {
			failed++;
			last_err = r;
			fprintf(stderr,
				"r2p2-echo-client: request %lu (%lu B) to %s failed: %s (%d)\n", i,
				size, service, r2p2_strerror(r), r);
			continue;
		}
		if (got != size || memcmp(req, resp, size)) {
			size_t off = 0;

			while (off < got && off < size && req[off] == resp[off])
				off++;
			mismatched++;
			fprintf(stderr,
				"r2p2-echo-client: request %lu: MISMATCH: sent %lu B, got %zu B, "
				"first difference at byte %zu\n",
				i, size, got, off);
			continue;
		}
		ok++;
		if (verbose)
			printf("request %lu: ok, %lu B verified in %.1f us\n", i, size,
			       (double)(now_ns() - t1) / 1000.0);
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	printf("echo %s: %lu B x %lu: %lu verified, %lu failed, %lu mismatched in %.3f s%s%s\n",
	       service, size, count, ok, failed, mismatched, secs, last_err ? "; last error: " : "",
	       last_err ? r2p2_strerror(last_err) : "");
	fflush(stdout);
	free(req);
	free(resp);
	r2p2_detach(ctx);
	return ok == count ? 0 : 1;
}
