// SPDX-License-Identifier: MIT
/*
 * sniff: prints the UDP datagrams seen on the interfaces of the current network
 * namespace, one line each, for a bounded time. The tls integration tests run it
 * inside a namespace they created, to prove that no plaintext leaves and to capture
 * a first flight to replay.
 *
 *   sniff [-i IFNAME] [-p PORT] [-t MS] [-n COUNT] [-o FILE]
 *
 * Output lines: "SRC:PORT DST:PORT HEX" (IPv6 addresses in brackets, HEX the UDP
 * payload, lowercase, no separators). -i captures on one interface only (default:
 * all; loopback traffic is printed once, not once per direction), -p keeps the
 * datagrams whose source or destination port is PORT, -t stops after MS
 * milliseconds (default 5000), -n after COUNT datagrams (default 100000). -o writes
 * the lines to FILE (flushed per line) instead of stdout. "sniff ready" goes to
 * stderr once the capture socket is open; "sniff: N datagrams" at the end.
 * SIGTERM/SIGINT end it early (exit 0). Needs CAP_NET_RAW.
 *
 * AF_PACKET/SOCK_DGRAM: the kernel strips the link header and says the protocol
 * in sll_protocol, so the same code works on veth, loopback and tunnels. IP
 * fragments other than the first are skipped (their payload has no UDP header);
 * a first fragment prints what it holds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SNAP 65600 /* an IPv6 jumbo-less datagram plus headers */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr, "usage: sniff [-i IFNAME] [-p PORT] [-t MS] [-n COUNT] [-o FILE]\n");
	exit(2);
}

static unsigned long parse_num(const char *s, const char *what, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max) {
		fprintf(stderr, "sniff: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

/*
 * udp_of finds the UDP header in the IP packet `p` of `len` bytes with link protocol
 * `proto` (host order). Returns its offset, or -1 (not UDP, a later fragment, short).
 * Formats the addresses into `src`/`dst` (64 bytes each, without ports).
 */
static long udp_of(const uint8_t *p, size_t len, unsigned proto, char *src, char *dst)
{
	char a[INET6_ADDRSTRLEN];

	if (proto == ETH_P_IP) {
		struct iphdr ip;
		size_t ihl;

		if (len < sizeof(ip))
			return -1;
		memcpy(&ip, p, sizeof(ip));
		ihl = (size_t)ip.ihl * 4;
		if (ip.version != 4 || ihl < sizeof(ip) || ihl > len || ip.protocol != IPPROTO_UDP)
			return -1;
		if (ntohs(ip.frag_off) & 0x1fff) /* a later fragment */
			return -1;
		inet_ntop(AF_INET, &ip.saddr, src, 64);
		inet_ntop(AF_INET, &ip.daddr, dst, 64);
		return (long)ihl;
	}
	if (proto == ETH_P_IPV6) {
		struct ip6_hdr ip6;
		size_t off = sizeof(ip6);
		uint8_t nh;

		if (len < sizeof(ip6))
			return -1;
		memcpy(&ip6, p, sizeof(ip6));
		if ((ip6.ip6_vfc >> 4) != 6)
			return -1;
		nh = ip6.ip6_nxt;
		/* Walk the extension headers an ordinary datagram may carry. */
		for (int hops = 0; hops < 8 && nh != IPPROTO_UDP; hops++) {
			if (off + 8 > len)
				return -1;
			if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
			    nh == IPPROTO_DSTOPTS) {
				uint8_t next = p[off];
				off += ((size_t)p[off + 1] + 1) * 8;
				nh = next;
			} else if (nh == IPPROTO_FRAGMENT) {
				uint16_t fo;
				memcpy(&fo, p + off + 2, 2);
				if (ntohs(fo) & 0xfff8) /* a later fragment */
					return -1;
				nh = p[off];
				off += 8;
			} else {
				return -1;
			}
		}
		if (nh != IPPROTO_UDP || off > len)
			return -1;
		inet_ntop(AF_INET6, &ip6.ip6_src, a, sizeof(a));
		snprintf(src, 64, "[%s]", a);
		inet_ntop(AF_INET6, &ip6.ip6_dst, a, sizeof(a));
		snprintf(dst, 64, "[%s]", a);
		return (long)off;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static uint8_t buf[SNAP];
	static char line[2 * SNAP + 256];
	static const char hex[] = "0123456789abcdef";
	const char *ifname = NULL, *out_path = NULL;
	unsigned long port = 0, ms = 5000, max_count = 100000, count = 0;
	struct sigaction sa = {.sa_handler = on_signal};
	FILE *out = stdout;
	uint64_t deadline;
	int fd, opt;

	while ((opt = getopt(argc, argv, "i:p:t:n:o:h")) != -1) {
		switch (opt) {
		case 'i':
			ifname = optarg;
			break;
		case 'p':
			port = parse_num(optarg, "port", 65535);
			break;
		case 't':
			ms = parse_num(optarg, "time", 3600000);
			break;
		case 'n':
			max_count = parse_num(optarg, "count", 100000000);
			break;
		case 'o':
			out_path = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (out_path) {
		out = fopen(out_path, "w");
		if (!out) {
			fprintf(stderr, "sniff: %s: %s\n", out_path, strerror(errno));
			return 1;
		}
	}
	/* Protocol 0 receives nothing until the bind: no packet of another interface
	 * slips in before the capture is narrowed to -i. */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "sniff: AF_PACKET socket: %s (needs CAP_NET_RAW)\n",
			strerror(errno));
		return 1;
	}
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};

	if (ifname) {
		sll.sll_ifindex = (int)if_nametoindex(ifname);
		if (!sll.sll_ifindex) {
			fprintf(stderr, "sniff: no interface %s\n", ifname);
			return 1;
		}
	}
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		fprintf(stderr, "sniff: bind %s: %s\n", ifname ? ifname : "(all)", strerror(errno));
		return 1;
	}
	fprintf(stderr, "sniff ready\n");
	fflush(stderr);

	deadline = now_ms() + ms;
	while (!stop && count < max_count) {
		struct sockaddr_ll from;
		socklen_t flen = sizeof(from);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char src[64], dst[64];
		struct udphdr uh;
		uint64_t now = now_ms();
		size_t ulen, n;
		ssize_t got;
		long off;
		int r;

		if (now >= deadline)
			break;
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r <= 0)
			continue; /* timeout (loop ends) or EINTR (stop is set) */
		got = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		if (got < 0)
			continue;
		/* Loopback shows each packet leaving and arriving: keep the arrival. */
		if (from.sll_pkttype == PACKET_OUTGOING && from.sll_hatype == ARPHRD_LOOPBACK)
			continue;
		off = udp_of(buf, (size_t)got, ntohs(from.sll_protocol), src, dst);
		if (off < 0 || (size_t)off + sizeof(uh) > (size_t)got)
			continue;
		memcpy(&uh, buf + off, sizeof(uh));
		if (port && ntohs(uh.source) != port && ntohs(uh.dest) != port)
			continue;
		ulen = ntohs(uh.len);
		/* UDP length is the datagram as sent; a first fragment holds less of it. */
		n = (size_t)got - (size_t)off - sizeof(uh);
		if (ulen >= sizeof(uh) && ulen - sizeof(uh) < n)
			n = ulen - sizeof(uh);
		int k = snprintf(line, sizeof(line), "%s:%u %s:%u ", src, ntohs(uh.source), dst,
				 ntohs(uh.dest));
		char *q = line + k;
		for (size_t i = 0; i < n; i++) {
			uint8_t b = buf[(size_t)off + sizeof(uh) + i];
			*q++ = hex[b >> 4];
			*q++ = hex[b & 15];
		}
		*q++ = '\n';
		fwrite(line, 1, (size_t)(q - line), out);
		fflush(out);
		count++;
	}
	fprintf(stderr, "sniff: %lu datagrams\n", count);
	if (out != stdout)
		fclose(out);
	close(fd);
	return 0;
}
