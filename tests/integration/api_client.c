// SPDX-License-Identifier: MIT
/*
 * api_client: the parts of libr2p2 an app coming from gRPC needs besides calls
 * (tests/integration/it_api.sh):
 *
 *   api_client -s SOCKET cancel SLOW_SERVICE
 *     (1) a call in flight to SLOW_SERVICE (its server takes about a second) is
 *         cancelled after 50 ms: its one event says -ECANCELED, well before the
 *         server could have answered; cancelling it again says -ENOENT;
 *     (2) with the service's max_inflight at 1, a second call waits behind a third;
 *         the waiting one, cancelled, ends -ECANCELED at once, the other answers.
 *   api_client -s SOCKET fd FAST_SERVICE COUNT
 *     COUNT calls in flight, collected only through r2p2_fd in an epoll loop
 *     (r2p2_poll with timeout 0 when it is readable), every answer checked; then
 *     r2p2_call_sync_flags with R2P2_CALL_NOT_REPLAY_SAFE.
 *
 * Prints "ok: ..." per check and "FAILED: ..." for a failure; exit 0 when all held.
 */
#include <r2p2/r2p2.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			printf("ok: ");                                                            \
		} else {                                                                           \
			printf("FAILED: ");                                                        \
			failures++;                                                                \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_event polls `ctx` up to `ms` for the response of call `id`; its status, or 1. */
static int wait_event(struct r2p2_ctx *ctx, int64_t id, int ms, int64_t *took)
{
	int64_t t0 = now_ms(), end = t0 + ms;
	struct r2p2_event ev[8];

	while (now_ms() < end) {
		int n = r2p2_poll(ctx, ev, 8, (int)(end - now_ms()));

		for (int i = 0; i < n; i++)
			if (ev[i].type == R2P2_EV_RESPONSE && ev[i].id == (uint64_t)id) {
				*took = now_ms() - t0;
				return ev[i].status;
			}
	}
	*took = now_ms() - t0;
	return 1;
}

static void test_cancel(struct r2p2_ctx *ctx, const char *svc)
{
	struct timespec pause = {.tv_nsec = 50 * 1000000};
	int64_t a, b, took;
	int st;

	a = r2p2_call(ctx, svc, "slow", 4, 5000, 0);
	CHECK(a > 0, "a call to %s (id %" PRId64 ")", svc, a);
	nanosleep(&pause, NULL);
	CHECK(r2p2_cancel(ctx, (uint64_t)a) == 0, "r2p2_cancel of the call in flight: 0");
	st = wait_event(ctx, a, 3000, &took);
	CHECK(st == -ECANCELED, "its event: %s (%d), %" PRId64 " ms after the cancel",
	      r2p2_strerror(st), st, took);
	CHECK(took < 500, "before the server could answer (%" PRId64 " ms < 500)", took);
	CHECK(r2p2_cancel(ctx, (uint64_t)a) == -ENOENT, "cancelling it again: -ENOENT");

	/* max_inflight = 1: b waits behind a while a is served */
	a = r2p2_call(ctx, svc, "first", 5, 5000, 0);
	b = r2p2_call(ctx, svc, "second", 6, 5000, 0);
	CHECK(a > 0 && b > 0, "two calls, the second waits for max_inflight");
	nanosleep(&pause, NULL);
	CHECK(r2p2_cancel(ctx, (uint64_t)b) == 0, "r2p2_cancel of the waiting call: 0");
	st = wait_event(ctx, b, 3000, &took);
	CHECK(st == -ECANCELED && took < 500, "the waiting call ends %s at once (%" PRId64 " ms)",
	      r2p2_strerror(st), took);
	st = wait_event(ctx, a, 5000, &took);
	CHECK(st == 0, "the first answers: %s", st ? r2p2_strerror(st) : "ok");
}

static void test_fd(struct r2p2_ctx *ctx, const char *svc, int count)
{
	struct epoll_event e = {.events = EPOLLIN}, out;
	struct r2p2_event ev[16];
	int fd = r2p2_fd(ctx), ep = epoll_create1(0), got = 0, bad = 0, wakeups = 0, n;
	int64_t end = now_ms() + 10000;
	char req[32], resp[64];
	size_t len;

	CHECK(fd >= 0 && ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0,
	      "r2p2_fd %d in an epoll set", fd);
	/* drain once: only a 0 from r2p2_poll arms the descriptor */
	while ((n = r2p2_poll(ctx, ev, 16, 0)) > 0)
		;
	for (int i = 0; i < count; i++) {
		snprintf(req, sizeof(req), "call-%d", i);
		if (r2p2_call(ctx, svc, req, strlen(req), 3000, 0) <= 0)
			bad++;
	}
	while (got + bad < count && now_ms() < end) {
		if (epoll_wait(ep, &out, 1, 1000) <= 0)
			continue;
		wakeups++;
		while ((n = r2p2_poll(ctx, ev, 16, 0)) > 0)
			for (int i = 0; i < n; i++) {
				if (ev[i].type == R2P2_EV_RESPONSE && ev[i].status == 0 &&
				    ev[i].len >= 5 && memcmp(ev[i].data, "call-", 5) == 0)
					got++;
				else
					bad++;
			}
	}
	CHECK(got == count && bad == 0, "%d answers of %d through r2p2_fd (%d bad), %d wakeups",
	      got, count, bad, wakeups);
	CHECK(r2p2_call_sync_flags(ctx, svc, "sync", 4, resp, sizeof(resp), &len, 3000,
				   R2P2_CALL_NOT_REPLAY_SAFE) == 0 &&
		  len == 4 && memcmp(resp, "sync", 4) == 0,
	      "r2p2_call_sync_flags(R2P2_CALL_NOT_REPLAY_SAFE) answers");
}

int main(int argc, char **argv)
{
	struct r2p2_ctx *ctx;

	if (argc < 5 || strcmp(argv[1], "-s") != 0) {
		fprintf(stderr, "usage: api_client -s SOCKET cancel SERVICE | fd SERVICE COUNT\n");
		return 2;
	}
	ctx = r2p2_attach(argv[2]);
	if (!ctx) {
		perror("r2p2_attach");
		return 1;
	}
	if (strcmp(argv[3], "cancel") == 0)
		test_cancel(ctx, argv[4]);
	else if (strcmp(argv[3], "fd") == 0 && argc > 5)
		test_fd(ctx, argv[4], atoi(argv[5]));
	else
		return 2;
	r2p2_detach(ctx);
	return failures ? 1 : 0;
}
