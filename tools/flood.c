// SPDX-License-Identifier: MIT
/*
 * r2p2-flood: floods an R2P2 server with the first packets of multi-packet
 * requests that never complete, from one UDP socket, as fast as one thread can
 * (sendmmsg batches). A test tool for the bounds on half-received requests
 * (docs/PROTOCOL.md, "Server: one request"); never installed.
 *
 *   r2p2-flood -c COUNT -t MS [-m first|firstlast] [-N PACKETS] [-b BIND_ADDR:PORT]
 *              [-r FIRST_RID] DST_ADDR:PORT
 *
 * -c (packets) and -t (milliseconds) are both required: the flood stops at
 * whichever comes first. Every request has a new rid (wrapping after 65535).
 * -m first (default): one 22-byte REQUEST packet per request, F flag only,
 *    p_order = PACKETS (default 700: a request of about 1 MiB), 14-byte payload.
 * -m firstlast: the same first packet, then a 1-byte last packet of that rid
 *    (L flag, p_order = PACKETS-1): the two ends of a "1 MiB" request.
 * -b binds the socket first (the flood's source address; port 0: any).
 * Datagrams go only to DST_ADDR:PORT; replies (ACKs, DROPs) are never read.
 * Prints the packets sent, the elapsed time and the rate, and how many batches
 * the kernel refused (ENOBUFS, EAGAIN, ECONNREFUSED: they are built again).
 * Exit status: 0, 1 on a send error other than a full queue, 2 on usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netaddr.h"
#include "stats.h"

#define BATCH 64
#define FIRST_PAYLOAD 14
#define HDR 8

static void usage(void)
{
	fprintf(stderr, "usage: r2p2-flood -c COUNT -t MS [-m first|firstlast] [-N PACKETS] "
			"[-b BIND_ADDR:PORT] [-r FIRST_RID] DST_ADDR:PORT\n");
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what, unsigned long max)
{
	return tool_parse_num("r2p2-flood", s, what, max);
}

/* put_hdr writes an R2P2 REQUEST header (LB_ROUTE policy). */
static void put_hdr(uint8_t *p, uint8_t flags, uint16_t rid, uint16_t p_order)
{
	p[0] = 0xCC;
	p[1] = HDR;
	p[2] = 0x00; /* REQUEST << 4 | LB_ROUTE */
	p[3] = flags;
	p[4] = (uint8_t)(rid >> 8);
	p[5] = (uint8_t)rid;
	p[6] = (uint8_t)(p_order >> 8);
	p[7] = (uint8_t)p_order;
}

int main(int argc, char **argv)
{
	static uint8_t pkt[BATCH][HDR + FIRST_PAYLOAD];
	struct mmsghdr msg[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage dst, bind_addr;
	socklen_t dlen, blen;
	unsigned long count = 0, dur_ms = 0, npkts = 700, rid0 = 1;
	uint64_t sent = 0, refused = 0, t0, deadline, now;
	const char *bind_s = NULL;
	int firstlast = 0, have_c = 0, have_t = 0, fd, opt, rc = 0;
	char abuf[INET6_ADDRSTRLEN + 8];
	double el;

	while ((opt = getopt(argc, argv, "c:t:m:N:b:r:")) != -1) {
		switch (opt) {
		case 'c':
			count = parse_num(optarg, "count", 1000000000ul);
			have_c = 1;
			break;
		case 't':
			dur_ms = parse_num(optarg, "duration", 3600000ul);
			have_t = 1;
			break;
		case 'm':
			if (!strcmp(optarg, "first"))
				firstlast = 0;
			else if (!strcmp(optarg, "firstlast"))
				firstlast = 1;
			else
				usage();
			break;
		case 'N':
			npkts = parse_num(optarg, "packet count", 65535ul);
			break;
		case 'b':
			bind_s = optarg;
			break;
		case 'r':
			rid0 = parse_num(optarg, "rid", 65535ul);
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	if (!have_c || !have_t || !count || !dur_ms) {
		fprintf(stderr, "r2p2-flood: both -c COUNT and -t MS (non-zero) are required\n");
		usage();
	}
	if (firstlast && count < 2) {
		fprintf(stderr, "r2p2-flood: firstlast sends pairs: -c at least 2\n");
		return 2;
	}
	if (firstlast)
		count &= ~1ul; /* whole pairs */
	if (npkts < 2) {
		fprintf(stderr, "r2p2-flood: -N must be at least 2 (a multi-packet request)\n");
		return 2;
	}
	if (netaddr_parse(argv[optind], &dst, &dlen)) {
		fprintf(stderr, "r2p2-flood: bad destination '%s'\n", argv[optind]);
		return 2;
	}
	fd = socket(dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("r2p2-flood: socket");
		return 1;
	}
	if (bind_s) {
		if (netaddr_parse(bind_s, &bind_addr, &blen) ||
		    bind_addr.ss_family != dst.ss_family) {
			fprintf(stderr, "r2p2-flood: bad bind address '%s'\n", bind_s);
			return 2;
		}
		if (bind(fd, (struct sockaddr *)&bind_addr, blen)) {
			fprintf(stderr, "r2p2-flood: bind %s: %s\n", bind_s, strerror(errno));
			return 1;
		}
	}
	if (connect(fd, (struct sockaddr *)&dst, dlen)) {
		fprintf(stderr, "r2p2-flood: connect %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}

	memset(msg, 0, sizeof(msg));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = pkt[i];
		msg[i].msg_hdr.msg_iov = &iov[i];
		msg[i].msg_hdr.msg_iovlen = 1;
	}

	t0 = now_ns();
	deadline = t0 + (uint64_t)dur_ms * 1000000ull;
	now = t0;
	while (sent < count && now < deadline) {
		unsigned n = 0;
		int r;

		/* packet k of the flood: request k (first) or k / 2 (firstlast, last when odd) */
		while (n < BATCH && sent + n < count) {
			uint64_t k = sent + n, req = firstlast ? k / 2 : k;
			uint16_t rid = (uint16_t)(rid0 + req);

			if (firstlast && (k & 1)) {
				put_hdr(pkt[n], 0x40, rid, (uint16_t)(npkts - 1));
				pkt[n][HDR] = 'L';
				iov[n].iov_len = HDR + 1;
			} else {
				put_hdr(pkt[n], 0x80, rid, (uint16_t)npkts);
				memset(pkt[n] + HDR, 'F', FIRST_PAYLOAD);
				/* every request its own bytes */
				memcpy(pkt[n] + HDR, &req, sizeof(req));
				iov[n].iov_len = HDR + FIRST_PAYLOAD;
			}
			n++;
		}
		r = sendmmsg(fd, msg, n, 0);
		if (r < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
				refused++;
				sched_yield();
			} else if (errno == ECONNREFUSED) {
				/* an ICMP port unreachable came back: nobody listens */
				refused++;
			} else {
				fprintf(stderr, "r2p2-flood: sendmmsg: %s\n", strerror(errno));
				rc = 1;
				break;
			}
		} else {
			sent += (unsigned)r;
		}
		now = now_ns();
	}
	el = (double)(now - t0) / 1e9;
	printf("flood %s: %llu packets (%llu requests, %u packets claimed each) to %s in %.3f s: "
	       "%.0f packets/s, %llu batches refused by a full queue\n",
	       firstlast ? "firstlast" : "first", (unsigned long long)sent,
	       (unsigned long long)(firstlast ? sent / 2 : sent), (unsigned)npkts,
	       netaddr_format(&dst, abuf, sizeof(abuf)), el, el > 0 ? (double)sent / el : 0.0,
	       (unsigned long long)refused);
	close(fd);
	return rc;
}
