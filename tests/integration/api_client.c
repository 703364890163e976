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
 *   api_client -s SOCKET serve SERVICE...
 *     serves the SERVICEs until SIGTERM, printing "ran SERVICE" per request it runs:
 *     "fail:CODE:MESSAGE" is answered r2p2_respond_error(CODE, MESSAGE), "deadline"
 *     with the event's deadline_us in decimal, anything else echoed.
 *   api_client -s SOCKET status SERVICE yes|no
 *     against a serve of SERVICE whose calls carry extension blocks (yes: tls, sealed,
 *     plain with `extensions = yes`) or not (no): an error of the server app is
 *     -EREMOTEIO with its code and message (no: a DROP, -ECONNREFUSED), through
 *     r2p2_poll and r2p2_call_sync; the server sees the call's timeout as its
 *     deadline_us (no: R2P2_NO_DEADLINE); echoes of 4 and 5000 bytes come back whole.
 *
 * Prints "ok: ..." per check and "FAILED: ..." for a failure; exit 0 when all held.
 */
#include <r2p2/r2p2.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

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

/* call_ev makes one call and waits for its event, whose data it copies into `buf`. */
static struct r2p2_event call_ev(struct r2p2_ctx *ctx, const char *svc, const void *req, size_t len,
				 unsigned timeout_ms, char *buf, size_t cap)
{
	struct r2p2_event ev[8], none = {.status = 1};
	int64_t id = r2p2_call(ctx, svc, req, len, timeout_ms, 0), end = now_ms() + 10000;

	while (id > 0 && now_ms() < end) {
		int n = r2p2_poll(ctx, ev, 8, 100);

		for (int i = 0; i < n; i++) {
			if (ev[i].type != R2P2_EV_RESPONSE || ev[i].id != (uint64_t)id)
				continue;
			memset(buf, 0, cap);
			memcpy(buf, ev[i].data, ev[i].len < cap - 1 ? ev[i].len : cap - 1);
			return ev[i];
		}
	}
	none.status = id > 0 ? -ETIME : (int)id;
	return none;
}

static void test_status(struct r2p2_ctx *ctx, const char *svc, bool ext)
{
	static char big[5000], buf[6000];
	struct r2p2_event ev;
	size_t len = 0;
	int st;

	ev = call_ev(ctx, svc, "fail:7:boom", 11, 3000, buf, sizeof(buf));
	if (ext)
		CHECK(ev.status == -EREMOTEIO && ev.code == 7 && ev.len == 4 &&
			  strcmp(buf, "boom") == 0,
		      "an error of the server app: %s (%d), code %u, message '%s'",
		      r2p2_strerror(ev.status), ev.status, ev.code, buf);
	else
		CHECK(ev.status == -ECONNREFUSED && ev.code == 0,
		      "an error of the server app, to a caller without extensions: %s (%d)",
		      r2p2_strerror(ev.status), ev.status);
	st = r2p2_call_sync(ctx, svc, "fail:4000000000:sync", 20, buf, sizeof(buf), &len, 3000);
	if (ext)
		CHECK(st == -EREMOTEIO && r2p2_remote_code(ctx) == 4000000000u && len == 4 &&
			  memcmp(buf, "sync", 4) == 0,
		      "r2p2_call_sync: %d, code %u, %zu bytes", st, r2p2_remote_code(ctx), len);
	else
		CHECK(st == -ECONNREFUSED, "r2p2_call_sync: %s", r2p2_strerror(st));

	ev = call_ev(ctx, svc, "deadline", 8, 2500, buf, sizeof(buf));
	unsigned long left = strtoul(buf, NULL, 10);
	if (ext)
		CHECK(ev.status == 0 && left > 2000000 && left <= 2500000,
		      "the server saw the caller's 2500 ms as deadline_us %lu", left);
	else
		CHECK(ev.status == 0 && left == R2P2_NO_DEADLINE,
		      "the server saw no deadline: deadline_us %lu", left);

	ev = call_ev(ctx, svc, "ping", 4, 3000, buf, sizeof(buf));
	CHECK(ev.status == 0 && ev.len == 4 && memcmp(buf, "ping", 4) == 0 && ev.code == 0,
	      "an echo of 4 bytes: %s, %zu bytes", r2p2_strerror(ev.status), ev.len);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	ev = call_ev(ctx, svc, big, sizeof(big), 3000, buf, sizeof(buf));
	CHECK(ev.status == 0 && ev.len == sizeof(big) && memcmp(buf, big, sizeof(big)) == 0,
	      "an echo of %zu bytes (several packets each way): %s, %zu bytes", sizeof(big),
	      r2p2_strerror(ev.status), ev.len);
	memcpy(big, "fail:9:", 7);
	ev = call_ev(ctx, svc, big, sizeof(big), 3000, buf, sizeof(buf));
	if (ext)
		CHECK(ev.status == -EREMOTEIO && ev.code == 9 && ev.len == sizeof(big) - 7,
		      "an error with a %zu-byte message: %s, code %u, %zu bytes", sizeof(big) - 7,
		      r2p2_strerror(ev.status), ev.code, ev.len);
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* serve answers the requests of `n` services as the usage says, until SIGTERM. */
static int serve(struct r2p2_ctx *ctx, char **svcs, int n)
{
	static char buf[6000];
	struct r2p2_event ev[16];
	int ids[16];

	signal(SIGTERM, on_term);
	for (int i = 0; i < n && i < 16; i++) {
		ids[i] = r2p2_register(ctx, svcs[i]);
		if (ids[i] < 0) {
			fprintf(stderr, "register %s: %s\n", svcs[i], r2p2_strerror(ids[i]));
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		int got = r2p2_poll(ctx, ev, 16, 100);

		for (int i = 0; i < got; i++) {
			const struct r2p2_event *e = &ev[i];
			size_t len = e->len < sizeof(buf) - 1 ? e->len : sizeof(buf) - 1;
			const char *name = "?";
			char *colon;

			if (e->type != R2P2_EV_REQUEST)
				continue;
			for (int k = 0; k < n && k < 16; k++)
				if ((uint32_t)ids[k] == e->service_id)
					name = svcs[k];
			memcpy(buf, e->data, len);
			buf[len] = '\0';
			printf("ran %s\n", name);
			fflush(stdout);
			if (strncmp(buf, "fail:", 5) == 0 && (colon = strchr(buf + 5, ':'))) {
				r2p2_respond_error(ctx, e, (uint32_t)strtoul(buf + 5, NULL, 10),
						   colon + 1);
			} else if (strcmp(buf, "deadline") == 0) {
				int l = snprintf(buf, sizeof(buf), "%u", e->deadline_us);
				r2p2_respond(ctx, e, buf, (size_t)l);
			} else {
				r2p2_respond(ctx, e, e->data, e->len);
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct r2p2_ctx *ctx;

	if (argc < 5 || strcmp(argv[1], "-s") != 0) {
		fprintf(stderr, "usage: api_client -s SOCKET cancel SERVICE | fd SERVICE COUNT | "
				"status SERVICE yes|no | serve SERVICE...\n");
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
	else if (strcmp(argv[3], "status") == 0 && argc > 5)
		test_status(ctx, argv[4], strcmp(argv[5], "yes") == 0);
	else if (strcmp(argv[3], "serve") == 0)
		failures = serve(ctx, argv + 4, argc - 4);
	else
		return 2;
	r2p2_detach(ctx);
	return failures ? 1 : 0;
}
