// SPDX-License-Identifier: MIT
/*
 * r2p2-echo-server: serves a service (default "echo.svc") through the local
 * r2p2d and answers every request with its own bytes.
 *
 *   r2p2-echo-server [-s SOCKET] [-n SERVICE] [-d DELAY_US] [-c]
 *
 * -d holds each request DELAY_US microseconds before answering (without
 * blocking other requests), so tests can keep requests outstanding.
 * -c counts the requests the daemon handed over: SIGUSR1 prints "served N" on
 * stdout, and so does the exit (tests use it to prove a request ran once).
 * When the daemon goes away (restart), it re-attaches every 100 ms and
 * registers again. SIGTERM/SIGINT end it cleanly (exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "stats.h"

#define BATCH 64
/* r2p2_poll waits at most this long, so a signal is seen even if poll restarts on EINTR. */
#define POLL_CAP_MS 1000

/* A request waiting for its answer: delayed (-d) or refused with -EAGAIN (ring full). */
struct pending {
	struct r2p2_event ev; /* only id and lane matter to r2p2_respond */
	void *data;
	size_t len;
	uint64_t due_ns;
};

struct queue {
	struct pending *q;
	size_t head, num, cap; /* a ring buffer of `cap` entries */
};

static volatile sig_atomic_t stop, report;
static uint64_t num_served; /* requests received from the daemon (-c) */
static int count_served;

static void on_report(int sig)
{
	(void)sig;
	report = 1;
}

static void print_served(void)
{
	report = 0;
	if (!count_served)
		return;
	printf("served %llu\n", (unsigned long long)num_served);
	fflush(stdout);
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int queue_push(struct queue *q, const struct r2p2_event *ev, uint64_t due_ns)
{
	struct pending *p;

	if (q->num == q->cap) {
		size_t ncap = q->cap ? 2 * q->cap : 256;
		struct pending *n = malloc(ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < q->num; i++)
			n[i] = q->q[(q->head + i) % q->cap];
		free(q->q);
		q->q = n;
		q->cap = ncap;
		q->head = 0;
	}
	p = &q->q[(q->head + q->num) % q->cap];
	p->ev = *ev;
	p->ev.data = NULL;
	p->len = ev->len;
	p->data = malloc(ev->len ? ev->len : 1);
	if (!p->data)
		return -ENOMEM;
	memcpy(p->data, ev->data, ev->len);
	p->due_ns = due_ns;
	q->num++;
	return 0;
}

static struct pending *queue_front(struct queue *q)
{
	return q->num ? &q->q[q->head] : NULL;
}

static void queue_pop(struct queue *q)
{
	free(q->q[q->head].data);
	q->head = (q->head + 1) % q->cap;
	q->num--;
}

static void queue_clear(struct queue *q)
{
	while (q->num)
		queue_pop(q);
}

static int is_disconnect(int err)
{
	return err == -ECONNRESET || err == -ENOTCONN || err == -EPIPE || err == -ESHUTDOWN;
}

/* answer sends one response. Returns 0, -EAGAIN (retry later) or a disconnect error. */
static int answer(struct r2p2_ctx *ctx, const struct r2p2_event *ev, const void *data, size_t len,
		  uint64_t *num_answered)
{
	int r = r2p2_respond(ctx, ev, data, len);

	if (r == 0) {
		(*num_answered)++;
		return 0;
	}
	if (r == -EAGAIN || is_disconnect(r))
		return r;
	/* This request cannot be answered (e.g. -EMSGSIZE); the others can. */
	fprintf(stderr, "r2p2-echo-server: respond to request %llu (%zu B): %s\n",
		(unsigned long long)ev->id, len, r2p2_strerror(r));
	return 0;
}

/* serve runs until a signal (returns 0), a disconnect (returns it), or a fatal error (< 0). */
static int serve(struct r2p2_ctx *ctx, uint64_t delay_ns, uint64_t *num_answered)
{
	struct r2p2_event evs[BATCH];
	struct queue q = {0};
	int r = 0, backoff = 0;

	while (!stop) {
		int timeout = POLL_CAP_MS, n;
		struct pending *p;

		if (report)
			print_served();

		/* Answer whatever is due, in arrival order. */
		while ((p = queue_front(&q)) && p->due_ns <= now_ns()) {
			r = answer(ctx, &p->ev, p->data, p->len, num_answered);
			if (r == -EAGAIN)
				break;
			if (r)
				goto out;
			queue_pop(&q);
		}
		backoff = r == -EAGAIN;
		r = 0;
		if (backoff) {
			timeout = 1;
		} else if ((p = queue_front(&q))) {
			uint64_t now = now_ns();

			timeout =
			    p->due_ns <= now ? 0 : (int)((p->due_ns - now + 999999) / 1000000);
			if (timeout > POLL_CAP_MS)
				timeout = POLL_CAP_MS;
		}

		n = r2p2_poll(ctx, evs, BATCH, timeout);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			r = n;
			goto out;
		}
		for (int i = 0; i < n; i++) {
			const struct r2p2_event *ev = &evs[i];

			if (ev->type == R2P2_EV_ERROR) {
				fprintf(stderr, "r2p2-echo-server: response to %llu failed: %s\n",
					(unsigned long long)ev->id, r2p2_strerror(ev->status));
				continue;
			}
			if (ev->type != R2P2_EV_REQUEST)
				continue;
			num_served++;
			if (!delay_ns && !q.num) {
				r = answer(ctx, ev, ev->data, ev->len, num_answered);
				if (r == 0)
					continue;
				if (r != -EAGAIN)
					goto out;
				r = 0;
			}
			/* Keep a copy: the payload is only valid until the next poll. */
			if (queue_push(&q, ev, now_ns() + delay_ns)) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
out:
	queue_clear(&q);
	free(q.q);
	return r;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: r2p2-echo-server [-s SOCKET] [-n SERVICE] [-d DELAY_US] [-c] | --version\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *service = "echo.svc";
	struct sigaction sa = {.sa_handler = on_signal}, sa_report = {.sa_handler = on_report};
	unsigned long long delay_us = 0;
	uint64_t answered = 0;
	int opt, rc = 0, warned = 0;

	static const struct option longopts[] = {{"version", no_argument, NULL, 'V'}, {0}};

	while ((opt = getopt_long(argc, argv, "s:n:d:ch", longopts, NULL)) != -1) {
		switch (opt) {
		case 'V':
			printf("r2p2-echo-server %s\n", R2P2_VERSION);
			return 0;
		case 's':
			sock = optarg;
			break;
		case 'n':
			service = optarg;
			break;
		case 'd': {
			char *end;

			delay_us = strtoull(optarg, &end, 0);
			if (end == optarg || *end)
				usage();
			break;
		}
		case 'c':
			count_served = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	/* No SA_RESTART: a signal interrupts a blocking r2p2_poll. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa_report, NULL);
	signal(SIGPIPE, SIG_IGN);

	while (!stop) {
		struct r2p2_ctx *ctx = r2p2_attach(sock);
		int id;

		if (!ctx) {
			int e = errno;

			if (e == EPROTO || e == EACCES || e == EINVAL) {
				fprintf(stderr, "r2p2-echo-server: attach: %s\n", strerror(e));
				return 1;
			}
			if (!warned++)
				fprintf(stderr,
					"r2p2-echo-server: attach: %s; retrying every 100 ms\n",
					strerror(e));
			usleep(100000);
			continue;
		}
		warned = 0;
		id = r2p2_register(ctx, service);
		if (id < 0) {
			r2p2_detach(ctx);
			if (is_disconnect(id)) {
				usleep(100000);
				continue;
			}
			fprintf(stderr, "r2p2-echo-server: register %s: %s\n", service,
				r2p2_strerror(id));
			return 1;
		}
		printf("echo server ready: %s\n", service);
		fflush(stdout);

		int r = serve(ctx, delay_us * 1000ull, &answered);

		r2p2_detach(ctx);
		if (r == 0)
			break;
		if (is_disconnect(r)) {
			fprintf(stderr, "r2p2-echo-server: daemon gone (%s); re-attaching\n",
				r2p2_strerror(r));
			continue;
		}
		fprintf(stderr, "r2p2-echo-server: %s\n", r2p2_strerror(r));
		rc = 1;
		break;
	}
	fprintf(stderr, "r2p2-echo-server: exiting, answered %llu requests\n",
		(unsigned long long)answered);
	print_served();
	return rc;
}
