// SPDX-License-Identifier: MIT
/*
 * udp-pingpong: the raw UDP round trip, the floor every R2P2 latency is
 * measured against. Same percentile output as r2p2-bench (tools/stats.h).
 *
 *   udp-pingpong server BIND_ADDR:PORT [-i IDLE_S] [-b]
 *   udp-pingpong client ADDR:PORT [-S SIZE] [-N COUNT] [-w WARMUP] [-t TIMEOUT_MS]
 *                [-d DURATION_S] [--samples FILE] [--json] [--busy]
 *   udp-pingpong handoff [-N COUNT] [--cpus A,B] [--via eventfd|pipe|unix]
 *
 * The server echoes every datagram until SIGTERM/SIGINT or IDLE_S seconds
 * without traffic (default 60). The client sends one datagram at a time and
 * waits for its echo; the first 4 bytes carry a sequence number so that a late
 * echo of a timed-out request is recognised and skipped. --samples writes every
 * measured latency (us, one per line, in order) into FILE. With -b (server) and
 * --busy (client) each side polls its socket without sleeping: the floor of a
 * low-latency mode where nobody sleeps while a round trip is in flight. The server
 * spins only within 20 ms of its last datagram, and sleeps in poll() otherwise.
 *
 * `handoff` measures what one r2p2d hand-off costs on this machine: two processes
 * (a fork) wake each other in turn through a pair of eventfds, each sleeping in
 * poll() and then reading its eventfd, as libr2p2's apps do on their rings; a round
 * trip is two hand-offs. --cpus A,B puts the parent on CPU A and the child on B
 * (A,A: both on one CPU), otherwise the scheduler places them. --via pipe or unix
 * (an AF_UNIX datagram socketpair) measures those doorbells instead of eventfds. With no datagram
 * and no daemon in the way, it is the floor of each of the four hand-offs an R2P2
 * RPC makes beyond a UDP round trip (client app -> daemon, daemon -> server app and
 * back).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netaddr.h"
#include "stats.h"

#define MAX_DGRAM 65507

static volatile sig_atomic_t stop;
static int busy;		   /* poll the socket without sleeping */
#define BUSY_LINGER_NS 20000000ull /* -b: how long after the last datagram it keeps spinning */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: udp-pingpong server BIND_ADDR:PORT [-i IDLE_S] [-b]\n"
		"       udp-pingpong client ADDR:PORT [-S SIZE] [-N COUNT] [-w WARMUP]\n"
		"                    [-t TIMEOUT_MS] [-d DURATION_S] [--samples FILE] [--json]\n"
		"                    [--busy]\n"
		"       udp-pingpong handoff [-N COUNT] [--cpus A,B] [--via eventfd|pipe|unix]\n");
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what, unsigned long max)
{
	return tool_parse_num("udp-pingpong", s, what, max);
}

static int run_server(const char *bind_s, unsigned idle_s)
{
	struct sockaddr_storage addr, peer;
	socklen_t alen, plen;
	static uint8_t buf[MAX_DGRAM];
	uint64_t echoed = 0;
	int fd;

	if (netaddr_parse(bind_s, &addr, &alen)) {
		fprintf(stderr, "udp-pingpong: bad address '%s'\n", bind_s);
		return 2;
	}
	fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, alen)) {
		fprintf(stderr, "udp-pingpong: bind %s: %s\n", bind_s, strerror(errno));
		return 1;
	}
	printf("udp-pingpong server ready on %s\n", bind_s);
	fflush(stdout);

	uint64_t last = now_ns();

	while (!stop) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint64_t quiet = now_ns() - last;
		ssize_t n;
		int r;

		/* -b spins only while traffic is recent: an idle spinner would take its CPU
		 * from everything measured beside it (the pinned rounds of tools/bench.sh) */
		if (busy && quiet < BUSY_LINGER_NS)
			r = 1;
		else
			r = poll(&pfd, 1, busy ? 100 : (int)idle_s * 1000);
		if (busy && r == 0 && quiet < (uint64_t)idle_s * 1000000000ull)
			continue;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("udp-pingpong: poll");
			return 1;
		}
		if (r == 0) {
			fprintf(stderr, "udp-pingpong: idle for %u s, exiting\n", idle_s);
			break;
		}
		/* Drain everything queued before polling again. */
		for (;;) {
			plen = sizeof(peer);
			n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer,
				     &plen);
			if (n < 0)
				break;
			last = now_ns();
			if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen) == n)
				echoed++;
		}
	}
	fprintf(stderr, "udp-pingpong server: echoed %llu datagrams\n", (unsigned long long)echoed);
	close(fd);
	return 0;
}

/* One exchange: returns 0 (latency in *out_ns), -ETIMEDOUT, or another -errno. */
static int ping(int fd, uint8_t *req, uint8_t *resp, size_t size, uint32_t seq, int timeout_ms,
		uint64_t *out_ns)
{
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)timeout_ms * 1000000ull;

	if (size >= 4)
		memcpy(req, &seq, 4);
	if (send(fd, req, size, 0) != (ssize_t)size)
		return -errno;
	for (;;) {
		uint64_t now = now_ns();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;
		int r;

		if (now >= deadline)
			return -ETIMEDOUT;
		r = busy ? 1 : poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
		if (r < 0 && errno == EINTR) {
			if (stop)
				return -EINTR;
			continue;
		}
		if (r <= 0)
			continue;
		n = recv(fd, resp, MAX_DGRAM, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno; /* e.g. ECONNREFUSED: nobody listens */
		}
		if ((size_t)n == size && !memcmp(req, resp, size)) {
			*out_ns = now_ns() - t0;
			return 0;
		}
		/* A late echo of an earlier request: ignore it. */
	}
}

static int run_client(int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						 {"samples", required_argument, NULL, 'o'},
						 {"busy", no_argument, NULL, 'b'},
						 {0}};
	const char *samples = NULL;
	unsigned long size = 4, count = 10000, warmup = 100, timeout_ms = 1000, duration_s = 60;
	struct sockaddr_storage addr;
	socklen_t alen;
	struct lat_stats st;
	uint8_t *req, *resp;
	int json = 0, fd, opt;
	uint32_t seq = 0;
	uint64_t t0, end;

	while ((opt = getopt_long(argc, argv, "S:N:w:t:d:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S':
			size = parse_num(optarg, "size", MAX_DGRAM);
			break;
		case 'N':
			count = parse_num(optarg, "count", 1ul << 32);
			break;
		case 'w':
			warmup = parse_num(optarg, "warmup", 1ul << 32);
			break;
		case 't':
			timeout_ms = parse_num(optarg, "timeout", 3600000);
			break;
		case 'd':
			duration_s = parse_num(optarg, "duration", 86400);
			break;
		case 'j':
			json = 1;
			break;
		case 'o':
			samples = optarg;
			break;
		case 'b':
			busy = 1;
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || timeout_ms == 0)
		usage();
	if (netaddr_parse(argv[optind], &addr, &alen)) {
		fprintf(stderr, "udp-pingpong: bad address '%s'\n", argv[optind]);
		return 2;
	}
	fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, alen)) {
		fprintf(stderr, "udp-pingpong: connect %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	req = malloc(size ? size : 1);
	resp = malloc(MAX_DGRAM);
	if (!req || !resp || stats_init(&st, count)) {
		fprintf(stderr, "udp-pingpong: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < size; i++)
		req[i] = (uint8_t)(i * 131 + 7);

	for (unsigned long i = 0; i < warmup && !stop; i++) {
		uint64_t ns;

		ping(fd, req, resp, size, ++seq, (int)timeout_ms, &ns);
	}

	t0 = now_ns();
	end = t0 + duration_s * 1000000000ull;
	for (unsigned long i = 0; i < count && !stop && now_ns() < end; i++) {
		uint64_t ns;
		int r = ping(fd, req, resp, size, ++seq, (int)timeout_ms, &ns);

		st.requests++;
		if (r == 0)
			stats_add(&st, ns);
		else if (r == -ETIMEDOUT)
			st.timeouts++;
		else if (r != -EINTR) {
			st.errors++;
			if (st.errors <= 5)
				fprintf(stderr, "udp-pingpong: request %lu: %s\n", i, strerror(-r));
		}
	}
	st.elapsed_s = (double)(now_ns() - t0) / 1e9;
	st.max_inflight = 1;
	int rc = (st.num == st.requests && st.num > 0) ? 0 : 1;

	if (samples) {
		int err = stats_write_samples(&st, samples);

		if (err) {
			fprintf(stderr, "udp-pingpong: %s: %s\n", samples, strerror(-err));
			rc = 1;
		}
	}
	stats_report(&st, stdout, "udp-pingpong", size, 1, json, "");

	stats_cleanup(&st);
	free(req);
	free(resp);
	close(fd);
	return rc;
}

/* One direction of a hand-off: the waiter reads `rd`, the waker writes `wr`. */
struct doorbell {
	int rd, wr;
};

/* doorbell_open makes one of `via`: an eventfd (both ends), a pipe, or an AF_UNIX
 * datagram socketpair. */
static int doorbell_open(const char *via, struct doorbell *d)
{
	int fds[2];

	if (!strcmp(via, "eventfd")) {
		d->rd = d->wr = eventfd(0, EFD_CLOEXEC);
		return d->rd < 0 ? -errno : 0;
	}
	if (!strcmp(via, "pipe") ? pipe2(fds, O_CLOEXEC)
				 : socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds))
		return -errno;
	d->rd = fds[0];
	d->wr = fds[1];
	return 0;
}

/* handoff_wait sleeps until `d` is rung, then takes the ring (8 bytes: an eventfd's
 * counter, or a byte of a pipe or socket). */
static int handoff_wait(const struct doorbell *d)
{
	struct pollfd pfd = {.fd = d->rd, .events = POLLIN};
	uint64_t v;

	while (poll(&pfd, 1, 5000) < 0)
		if (errno != EINTR)
			return -errno;
	if (!(pfd.revents & POLLIN))
		return -ETIMEDOUT;
	return read(d->rd, &v, sizeof(v)) > 0 ? 0 : -errno;
}

static int handoff_signal(const struct doorbell *d)
{
	uint64_t one = 1;

	return write(d->wr, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static void pin_to(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		fprintf(stderr, "udp-pingpong: cannot run on CPU %d: %s\n", cpu, strerror(errno));
}

static int run_handoff(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"cpus", required_argument, NULL, 'c'}, {"via", required_argument, NULL, 'v'}, {0}};
	unsigned long count = 10000, warmup = 1000;
	int cpu[2] = {-1, -1}, opt, status, rc = 0;
	const char *via = "eventfd";
	struct doorbell to_child, to_parent;
	char title[96];
	struct lat_stats st;
	pid_t child;

	while ((opt = getopt_long(argc, argv, "N:", opts, NULL)) != -1) {
		if (opt == 'N')
			count = parse_num(optarg, "count", 1ul << 32);
		else if (opt == 'c' && sscanf(optarg, "%d,%d", &cpu[0], &cpu[1]) == 2 &&
			 cpu[0] >= 0 && cpu[1] >= 0)
			continue;
		else if (opt == 'v' && (!strcmp(optarg, "eventfd") || !strcmp(optarg, "pipe") ||
					!strcmp(optarg, "unix")))
			via = optarg;
		else
			usage();
	}
	if (optind != argc || count == 0)
		usage();
	if (doorbell_open(via, &to_child) || doorbell_open(via, &to_parent) ||
	    stats_init(&st, count)) {
		fprintf(stderr, "udp-pingpong: handoff: %s\n", strerror(errno));
		return 1;
	}
	child = fork();
	if (child < 0) {
		perror("udp-pingpong: fork");
		return 1;
	}
	if (child == 0) {
		pin_to(cpu[1]);
		for (unsigned long i = 0; i < warmup + count; i++)
			if (handoff_wait(&to_child) || handoff_signal(&to_parent))
				_exit(1);
		_exit(0);
	}
	pin_to(cpu[0]);
	uint64_t t0 = now_ns();

	for (unsigned long i = 0; i < warmup + count; i++) {
		uint64_t t = now_ns();

		if (handoff_signal(&to_child) || handoff_wait(&to_parent)) {
			st.errors++;
			rc = 1;
			break;
		}
		if (i >= warmup) {
			st.requests++;
			stats_add(&st, now_ns() - t);
		}
	}
	st.elapsed_s = (double)(now_ns() - t0) / 1e9;
	st.max_inflight = 1;
	if (rc)
		kill(child, SIGKILL);
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		rc = 1;
	snprintf(title, sizeof(title), "udp-pingpong handoff via %s (round trip = 2 hand-offs)",
		 via);
	stats_report(&st, stdout, title, 8, 1, 0, "");
	stats_cleanup(&st);
	return rc;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (argc >= 2 && !strcmp(argv[1], "handoff"))
		return run_handoff(argc - 1, argv + 1);
	if (argc < 3)
		usage();
	if (!strcmp(argv[1], "server")) {
		unsigned long idle = 60;
		int opt;

		optind = 3;
		while ((opt = getopt(argc, argv, "i:b")) != -1) {
			if (opt == 'b')
				busy = 1;
			else if (opt == 'i')
				idle = parse_num(optarg, "idle time", 86400);
			else
				usage();
		}
		if (optind != argc || idle == 0)
			usage();
		return run_server(argv[2], (unsigned)idle);
	}
	if (!strcmp(argv[1], "client"))
		return run_client(argc - 1, argv + 1);
	usage();
	return 2;
}
