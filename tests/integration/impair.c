// SPDX-License-Identifier: MIT
/*
 * impair: a UDP relay that loses, duplicates and reorders datagrams, because
 * this kernel has no tc netem. It stands between an R2P2 client and a server:
 *
 *   impair LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT [--loss P] [--dup P] [--reorder P]
 *          [--seed N] [--idle S] [--hold-ms MS]
 *
 * Address mapping (a full-cone NAT in both directions):
 *  - every client C gets its own upstream-side socket U_C, so the upstream sees
 *    one distinct source per client and its replies map back to C;
 *  - every upstream source X gets one listen-side socket L_X that stands for X
 *    towards the clients: L_UPSTREAM is LISTEN_ADDR:PORT itself, and if the
 *    server ever answers from another address (say its ACK comes from another
 *    port), a new L_X is bound on LISTEN_ADDR and that reply is sent from it.
 *  - a datagram from C arriving on L_X goes out of U_C to X; a datagram from X
 *    arriving on U_C goes out of L_X to C.
 * So replies come back from the very address the client sent to, and an R2P2
 * client that sends the rest of a multi-packet request to the ACK's source
 * reaches the server socket that sent the ACK.
 *
 * Impairments apply to every datagram in both directions, independently:
 * lost with probability --loss, else sent twice with --dup, else (with
 * --reorder) held back and released right after the next datagram of the same
 * direction, or after --hold-ms (default 2) if none comes. What it did is
 * printed on stderr at exit: SIGTERM/SIGINT or --idle seconds (default 60)
 * without traffic.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netaddr.h"
#include "stats.h"

#define MAX_DGRAM 65535
#define MAX_CLIENTS 256
#define MAX_UPSTREAMS 16

enum dir { DIR_UP = 0, DIR_DOWN = 1 }; /* client -> upstream, upstream -> client */

struct client {
	struct sockaddr_storage addr; /* the client, as seen on the listen side */
	int fd;			      /* its upstream-side socket U_C */
};

struct upstream {
	struct sockaddr_storage addr; /* a server address X */
	int fd;			      /* L_X: the listen-side socket standing for it */
};

struct held {
	int active;
	int fd;
	struct sockaddr_storage to;
	uint64_t since_ns;
	size_t len;
	uint8_t data[MAX_DGRAM];
};

struct counters {
	uint64_t rx, sent, lost, duped, reordered, released_by_timer;
};

static struct client clients[MAX_CLIENTS];
static size_t num_clients;
static struct upstream ups[MAX_UPSTREAMS];
static size_t num_ups;
static struct held held[2];
static struct counters cnt[2];
static struct sockaddr_storage listen_addr;
static double p_loss, p_dup, p_reorder;
static uint64_t rng_state;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* xorshift64*: a tiny reproducible generator; the same --seed gives the same decisions. */
static double rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 53);
}

static int udp_socket(const struct sockaddr_storage *bind_to)
{
	int fd = socket(bind_to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int sz = 4 << 20;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (bind(fd, (const struct sockaddr *)bind_to, netaddr_len(bind_to))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void xmit(int fd, const struct sockaddr_storage *to, const uint8_t *p, size_t len,
		 enum dir d)
{
	if (sendto(fd, p, len, 0, (const struct sockaddr *)to, netaddr_len(to)) == (ssize_t)len)
		cnt[d].sent++;
}

static void release(enum dir d, int by_timer)
{
	struct held *h = &held[d];

	if (!h->active)
		return;
	h->active = 0;
	xmit(h->fd, &h->to, h->data, h->len, d);
	if (by_timer)
		cnt[d].released_by_timer++;
}

/* forward applies the impairments to one datagram going out of `fd` to `to`. */
static void forward(int fd, const struct sockaddr_storage *to, const uint8_t *p, size_t len,
		    enum dir d)
{
	cnt[d].rx++;
	if (rnd() < p_loss) {
		cnt[d].lost++;
		return;
	}
	if (rnd() < p_dup) {
		cnt[d].duped++;
		xmit(fd, to, p, len, d);
		xmit(fd, to, p, len, d);
		release(d, 0);
		return;
	}
	if (!held[d].active && rnd() < p_reorder) {
		struct held *h = &held[d];

		cnt[d].reordered++;
		h->active = 1;
		h->fd = fd;
		h->to = *to;
		h->len = len;
		h->since_ns = now_ns();
		memcpy(h->data, p, len);
		return;
	}
	xmit(fd, to, p, len, d);
	release(d, 0); /* the held datagram now arrives after this one */
}

static struct client *client_get(const struct sockaddr_storage *a)
{
	struct sockaddr_storage any = {.ss_family = a->ss_family};

	for (size_t i = 0; i < num_clients; i++)
		if (netaddr_equal(&clients[i].addr, a))
			return &clients[i];
	if (num_clients == MAX_CLIENTS)
		return NULL;
	int fd = udp_socket(&any);

	if (fd < 0) {
		perror("impair: client socket");
		return NULL;
	}
	clients[num_clients] = (struct client){.addr = *a, .fd = fd};
	return &clients[num_clients++];
}

static struct upstream *upstream_get(const struct sockaddr_storage *a)
{
	struct sockaddr_storage b = listen_addr;
	char s1[64], s2[64];

	for (size_t i = 0; i < num_ups; i++)
		if (netaddr_equal(&ups[i].addr, a))
			return &ups[i];
	if (num_ups == MAX_UPSTREAMS)
		return NULL;
	/* A new server source: stand for it with a new port on the listen address. */
	if (b.ss_family == AF_INET)
		((struct sockaddr_in *)&b)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&b)->sin6_port = 0;
	int fd = udp_socket(&b);

	if (fd < 0) {
		perror("impair: listen-side socket");
		return NULL;
	}
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);

	getsockname(fd, (struct sockaddr *)&got, &glen);
	fprintf(stderr, "impair: upstream %s answers from a new address; clients see it as %s\n",
		netaddr_format(a, s1, sizeof(s1)), netaddr_format(&got, s2, sizeof(s2)));
	ups[num_ups] = (struct upstream){.addr = *a, .fd = fd};
	return &ups[num_ups++];
}

static void usage(void)
{
	fprintf(stderr, "usage: impair LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT [--loss P] [--dup P] "
			"[--reorder P] [--seed N] [--idle S] [--hold-ms MS]\n");
	exit(2);
}

static double parse_prob(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0 || v > 1) {
		fprintf(stderr, "impair: bad probability '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"loss", required_argument, NULL, 'l'},
						 {"dup", required_argument, NULL, 'd'},
						 {"reorder", required_argument, NULL, 'r'},
						 {"seed", required_argument, NULL, 's'},
						 {"idle", required_argument, NULL, 'i'},
						 {"hold-ms", required_argument, NULL, 'h'},
						 {0}};
	static uint8_t buf[MAX_DGRAM];
	struct sockaddr_storage up_addr;
	struct sigaction sa = {.sa_handler = on_signal};
	unsigned long seed = 1, idle_s = 60, hold_ms = 2;
	socklen_t len;
	uint64_t last_rx;
	int opt;
	char s1[64], s2[64];

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			p_loss = parse_prob(optarg);
			break;
		case 'd':
			p_dup = parse_prob(optarg);
			break;
		case 'r':
			p_reorder = parse_prob(optarg);
			break;
		case 's':
			seed = strtoul(optarg, NULL, 0);
			break;
		case 'i':
			idle_s = strtoul(optarg, NULL, 0);
			break;
		case 'h':
			hold_ms = strtoul(optarg, NULL, 0);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || idle_s == 0)
		usage();
	if (netaddr_parse(argv[optind], &listen_addr, &len) ||
	    netaddr_parse(argv[optind + 1], &up_addr, &len) ||
	    listen_addr.ss_family != up_addr.ss_family) {
		fprintf(stderr, "impair: bad addresses (both ADDR:PORT, same family)\n");
		return 2;
	}
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	ups[0].addr = up_addr;
	ups[0].fd = udp_socket(&listen_addr);
	if (ups[0].fd < 0) {
		fprintf(stderr, "impair: bind %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	num_ups = 1;
	printf("impair ready: %s -> %s loss %.3f dup %.3f reorder %.3f seed %lu\n",
	       netaddr_format(&listen_addr, s1, sizeof(s1)),
	       netaddr_format(&up_addr, s2, sizeof(s2)), p_loss, p_dup, p_reorder, seed);
	fflush(stdout);

	last_rx = now_ns();
	while (!stop) {
		struct pollfd pfds[MAX_UPSTREAMS + MAX_CLIENTS];
		size_t n = 0;
		int timeout = 1000, r;
		uint64_t now = now_ns();

		for (int d = 0; d < 2; d++) {
			if (held[d].active) {
				uint64_t due = held[d].since_ns + hold_ms * 1000000ull;

				if (now >= due)
					release((enum dir)d, 1);
				else if ((int)((due - now) / 1000000 + 1) < timeout)
					timeout = (int)((due - now) / 1000000 + 1);
			}
		}
		if (now - last_rx > idle_s * 1000000000ull) {
			fprintf(stderr, "impair: idle for %lu s, exiting\n", idle_s);
			break;
		}
		for (size_t i = 0; i < num_ups; i++)
			pfds[n++] = (struct pollfd){.fd = ups[i].fd, .events = POLLIN};
		for (size_t i = 0; i < num_clients; i++)
			pfds[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		r = poll(pfds, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR) {
			perror("impair: poll");
			return 1;
		}
		if (r <= 0)
			continue;
		/* Upstream sockets and client sockets may grow below; pfds indexes stay valid. */
		size_t nu = num_ups;

		for (size_t i = 0; i < n; i++) {
			if (!(pfds[i].revents & POLLIN))
				continue;
			for (;;) {
				struct sockaddr_storage src;
				socklen_t slen = sizeof(src);
				ssize_t got = recvfrom(pfds[i].fd, buf, sizeof(buf), 0,
						       (struct sockaddr *)&src, &slen);

				if (got < 0)
					break; /* EAGAIN, or an ICMP error: nothing to relay */
				last_rx = now_ns();
				if (i < nu) {
					/* From client `src`, meant for upstream ups[i]. */
					struct client *c = client_get(&src);

					if (c)
						forward(c->fd, &ups[i].addr, buf, (size_t)got,
							DIR_UP);
				} else {
					/* From upstream `src`, for the client owning this socket.
					 */
					struct client *c = &clients[i - nu];
					struct upstream *u = upstream_get(&src);

					if (u)
						forward(u->fd, &c->addr, buf, (size_t)got,
							DIR_DOWN);
				}
			}
		}
	}
	release(DIR_UP, 0);
	release(DIR_DOWN, 0);
	for (int d = 0; d < 2; d++)
		fprintf(stderr,
			"impair: %s: received %llu sent %llu lost %llu duplicated %llu reordered "
			"%llu (released by timer %llu)\n",
			d == DIR_UP ? "client->server" : "server->client",
			(unsigned long long)cnt[d].rx, (unsigned long long)cnt[d].sent,
			(unsigned long long)cnt[d].lost, (unsigned long long)cnt[d].duped,
			(unsigned long long)cnt[d].reordered,
			(unsigned long long)cnt[d].released_by_timer);
	fprintf(stderr, "impair: %zu clients, %zu upstream addresses\n", num_clients, num_ups);
	return 0;
}
