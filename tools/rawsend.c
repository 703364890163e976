// SPDX-License-Identifier: MIT
/*
 * r2p2-rawsend: sends raw UDP datagrams written as hex and prints the replies
 * in hex, one line per datagram. Used by the integration tests to replay the
 * upstream test vectors and malformed packets and to check exact answer bytes.
 *
 *   r2p2-rawsend [-b BIND_ADDR:PORT] [-r N] [-w MS] [-g GAP_US] [-R REPEAT] [-A] [-v]
 *                DST_ADDR:PORT HEX [HEX...]
 *   r2p2-rawsend -S SRC_ADDR:PORT [-g GAP_US] [-R REPEAT] DST_ADDR:PORT HEX [HEX...]
 *
 * Each HEX argument is one datagram; whitespace, ':' and '-' between digits are
 * ignored, an empty argument (or "-") is an empty datagram. All datagrams go
 * from one socket, in order, REPEAT times. Then replies are read for up to MS
 * milliseconds (default 500 when -r is given, else 0) or until N have arrived.
 * -A: send the first datagram, wait (up to MS) for one reply, print it, and
 * send the remaining datagrams to that reply's source (how a multi-packet
 * R2P2 request continues after the server's ACK); -r then counts the replies
 * that follow. -v prints each reply's source on stderr.
 * -S sends from SRC_ADDR:PORT through a raw socket (SOCK_RAW, IPPROTO_UDP: the
 * UDP header is written here), so the port may be one another socket holds, e.g.
 * a server's service port: a forged answer "from the server". SRC_ADDR must be an
 * address of this host; the raw socket takes no port, and the kernel still hands
 * every UDP datagram to the sockets bound to it. No replies are read. Needs
 * CAP_NET_RAW.
 * Exit status: 0, or 1 when fewer than N replies arrived, 2 on usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netaddr.h"
#include "stats.h"

#define MAX_DGRAM 65535

struct dgram {
	uint8_t *data;
	size_t len;
};

static void usage(void)
{
	fprintf(stderr, "usage: r2p2-rawsend [-b BIND_ADDR:PORT] [-r N] [-w MS] [-g GAP_US] "
			"[-R REPEAT] [-A] [-v] DST_ADDR:PORT HEX [HEX...]\n"
			"       r2p2-rawsend -S SRC_ADDR:PORT [-g GAP_US] [-R REPEAT] "
			"DST_ADDR:PORT HEX [HEX...]\n");
	exit(2);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* parse_hex decodes `s` into a new buffer. Returns 0 or -EINVAL. */
static int parse_hex(const char *s, struct dgram *out)
{
	size_t cap = strlen(s) / 2 + 1, n = 0;
	int hi = -1;

	out->data = malloc(cap);
	if (!out->data)
		return -ENOMEM;
	if (!strcmp(s, "-"))
		s = "";
	for (; *s; s++) {
		int v;

		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == ':' || *s == '-') {
			if (hi >= 0)
				return -EINVAL; /* odd digit count inside a byte */
			continue;
		}
		v = hexval((unsigned char)*s);
		if (v < 0)
			return -EINVAL;
		if (hi < 0) {
			hi = v;
		} else {
			out->data[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0 || n > MAX_DGRAM)
		return -EINVAL;
	out->len = n;
	return 0;
}

static unsigned long parse_num(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > 100000000ul) {
		fprintf(stderr, "r2p2-rawsend: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static void print_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf(i ? " %02x" : "%02x", p[i]);
	printf("\n");
	fflush(stdout);
}

/*
 * recv_replies prints replies until `want` arrived (0: no limit) or `deadline`
 * (CLOCK_MONOTONIC ns) passed. Stores the last reply's source in `*from`.
 * Returns how many arrived.
 */
static unsigned long recv_replies(int fd, unsigned long want, uint64_t deadline, int verbose,
				  struct sockaddr_storage *from)
{
	static uint8_t buf[MAX_DGRAM];
	static unsigned long seen; /* replies printed so far, for -v */
	unsigned long got = 0;

	while (!want || got < want) {
		uint64_t now = now_ns();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		struct sockaddr_storage src;
		socklen_t slen = sizeof(src);
		ssize_t n;
		int r;

		if (now >= deadline)
			break;
		r = poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&src, &slen);
		if (n < 0)
			continue;
		got++;
		seen++;
		if (verbose) {
			char a[INET6_ADDRSTRLEN + 8];

			fprintf(stderr, "r2p2-rawsend: reply %lu from %s, %zd bytes\n", seen,
				netaddr_format(&src, a, sizeof(a)), n);
		}
		print_hex(buf, (size_t)n);
		if (from)
			*from = src;
	}
	return got;
}

/* csum_add adds `n` bytes at `p` to a ones' complement sum (RFC 1071). */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

/*
 * send_raw sends the datagrams from `src` (address and port) to `dst` through a raw
 * UDP socket, REPEAT times with GAP_US between them. IPv4: the UDP checksum is
 * computed here; IPv6: by the kernel (IPV6_CHECKSUM). Returns the exit status.
 */
static int send_raw(const struct sockaddr_storage *src, socklen_t slen,
		    const struct sockaddr_storage *dst, const struct dgram *dg, int ndg,
		    unsigned long repeat, unsigned long gap_us)
{
	static uint8_t pkt[8 + MAX_DGRAM];
	struct sockaddr_storage to = *dst;
	uint16_t sport, dport;
	char abuf[INET6_ADDRSTRLEN + 8];
	int fd, rc = 0;

	if (src->ss_family == AF_INET) {
		sport = ((const struct sockaddr_in *)src)->sin_port;
		dport = ((const struct sockaddr_in *)dst)->sin_port;
		((struct sockaddr_in *)&to)->sin_port = 0; /* raw: the port field is the protocol */
	} else {
		sport = ((const struct sockaddr_in6 *)src)->sin6_port;
		dport = ((const struct sockaddr_in6 *)dst)->sin6_port;
		((struct sockaddr_in6 *)&to)->sin6_port = 0;
	}
	fd = socket(src->ss_family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0) {
		perror("r2p2-rawsend: raw socket (-S needs CAP_NET_RAW)");
		return 1;
	}
	if (src->ss_family == AF_INET6) {
		int off = 6; /* the UDP checksum field */

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off))) {
			perror("r2p2-rawsend: IPV6_CHECKSUM");
			close(fd);
			return 1;
		}
	}
	if (bind(fd, (const struct sockaddr *)src, slen)) {
		fprintf(stderr, "r2p2-rawsend: bind raw socket to %s: %s\n",
			netaddr_format(src, abuf, sizeof(abuf)), strerror(errno));
		close(fd);
		return 1;
	}
	for (unsigned long r = 0; r < repeat; r++) {
		for (int i = 0; i < ndg; i++) {
			size_t n = 8 + dg[i].len;
			uint32_t sum = 0;

			if (n > sizeof(pkt) || n > 0xFFFF) {
				fprintf(stderr, "r2p2-rawsend: datagram %d too long for -S\n",
					i + 1);
				rc = 1;
				continue;
			}
			memcpy(pkt, &sport, 2);
			memcpy(pkt + 2, &dport, 2);
			pkt[4] = (uint8_t)(n >> 8);
			pkt[5] = (uint8_t)n;
			pkt[6] = pkt[7] = 0;
			memcpy(pkt + 8, dg[i].data, dg[i].len);
			if (src->ss_family == AF_INET) {
				/* pseudo-header: source, destination, zero, protocol, UDP length */
				sum = csum_add(
				    sum,
				    (const uint8_t *)&((const struct sockaddr_in *)src)->sin_addr,
				    4);
				sum = csum_add(
				    sum,
				    (const uint8_t *)&((const struct sockaddr_in *)dst)->sin_addr,
				    4);
				sum += IPPROTO_UDP + (uint32_t)n;
				sum = csum_add(sum, pkt, n);
				while (sum >> 16)
					sum = (sum & 0xFFFF) + (sum >> 16);
				sum = ~sum & 0xFFFF;
				if (!sum)
					sum = 0xFFFF; /* 0 would mean "no checksum" */
				pkt[6] = (uint8_t)(sum >> 8);
				pkt[7] = (uint8_t)sum;
			}
			if (sendto(fd, pkt, n, 0, (const struct sockaddr *)&to, netaddr_len(&to)) !=
			    (ssize_t)n) {
				fprintf(stderr, "r2p2-rawsend: send datagram %d to %s: %s\n", i + 1,
					netaddr_format(dst, abuf, sizeof(abuf)), strerror(errno));
				rc = 1;
			}
			if (gap_us)
				usleep((useconds_t)gap_us);
		}
	}
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage dst, bind_addr, ack_src;
	socklen_t dlen, blen;
	const char *bind_s = NULL, *spoof_s = NULL;
	unsigned long want = 0, wait_ms = 0, gap_us = 0, repeat = 1, got = 0;
	int ack_mode = 0, verbose = 0, have_wait = 0, fd, opt, ndg;
	struct dgram *dg;
	char abuf[INET6_ADDRSTRLEN + 8];

	while ((opt = getopt(argc, argv, "+b:r:w:g:R:AS:v")) != -1) {
		switch (opt) {
		case 'b':
			bind_s = optarg;
			break;
		case 'r':
			want = parse_num(optarg, "reply count");
			break;
		case 'w':
			wait_ms = parse_num(optarg, "wait");
			have_wait = 1;
			break;
		case 'g':
			gap_us = parse_num(optarg, "gap");
			break;
		case 'R':
			repeat = parse_num(optarg, "repeat");
			break;
		case 'A':
			ack_mode = 1;
			break;
		case 'S':
			spoof_s = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2)
		usage();
	if (!have_wait && (want || ack_mode))
		wait_ms = 500;
	if (netaddr_parse(argv[optind], &dst, &dlen)) {
		fprintf(stderr, "r2p2-rawsend: bad destination '%s'\n", argv[optind]);
		return 2;
	}
	ndg = argc - optind - 1;
	dg = calloc((size_t)ndg, sizeof(*dg));
	if (!dg)
		return 1;
	for (int i = 0; i < ndg; i++) {
		if (parse_hex(argv[optind + 1 + i], &dg[i])) {
			fprintf(stderr, "r2p2-rawsend: datagram %d: bad hex '%s'\n", i + 1,
				argv[optind + 1 + i]);
			return 2;
		}
	}

	if (spoof_s) {
		int rc;

		if (bind_s || ack_mode || want || have_wait || verbose) {
			fprintf(stderr,
				"r2p2-rawsend: -S reads no replies: no -b, -A, -r, -w, -v\n");
			return 2;
		}
		if (netaddr_parse(spoof_s, &bind_addr, &blen) ||
		    bind_addr.ss_family != dst.ss_family) {
			fprintf(stderr, "r2p2-rawsend: bad source address '%s'\n", spoof_s);
			return 2;
		}
		rc = send_raw(&bind_addr, blen, &dst, dg, ndg, repeat, gap_us);
		for (int i = 0; i < ndg; i++)
			free(dg[i].data);
		free(dg);
		return rc;
	}

	fd = socket(dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("r2p2-rawsend: socket");
		return 1;
	}
	if (bind_s) {
		if (netaddr_parse(bind_s, &bind_addr, &blen) ||
		    bind_addr.ss_family != dst.ss_family) {
			fprintf(stderr, "r2p2-rawsend: bad bind address '%s'\n", bind_s);
			return 2;
		}
		if (bind(fd, (struct sockaddr *)&bind_addr, blen)) {
			fprintf(stderr, "r2p2-rawsend: bind %s: %s\n", bind_s, strerror(errno));
			return 1;
		}
	}

	const struct sockaddr_storage *to = &dst;

	for (unsigned long r = 0; r < repeat; r++) {
		for (int i = 0; i < ndg; i++) {
			if (sendto(fd, dg[i].data, dg[i].len, 0, (const struct sockaddr *)to,
				   netaddr_len(to)) != (ssize_t)dg[i].len)
				fprintf(stderr, "r2p2-rawsend: send datagram %d to %s: %s\n", i + 1,
					netaddr_format(to, abuf, sizeof(abuf)), strerror(errno));
			if (ack_mode && r == 0 && i == 0) {
				uint64_t dl = now_ns() + wait_ms * 1000000ull;

				if (recv_replies(fd, 1, dl, verbose, &ack_src) != 1) {
					fprintf(stderr,
						"r2p2-rawsend: no reply to the first datagram "
						"within %lu ms\n",
						wait_ms);
					return 1;
				}
				to = &ack_src;
			}
			if (gap_us)
				usleep((useconds_t)gap_us);
		}
	}

	if (wait_ms)
		got = recv_replies(fd, want, now_ns() + wait_ms * 1000000ull, verbose, NULL);
	if (want && got < want) {
		fprintf(stderr, "r2p2-rawsend: got %lu of %lu replies within %lu ms\n", got, want,
			wait_ms);
		return 1;
	}
	for (int i = 0; i < ndg; i++)
		free(dg[i].data);
	free(dg);
	close(fd);
	return 0;
}
