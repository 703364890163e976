// SPDX-License-Identifier: MIT
/*
 * test_xsk: the AF_XDP framing of daemon/net/xsk.c (build/parse round trips for IPv4,
 * IPv6 and VLAN, checksums against a byte-wise RFC 1071 reference, runts and lying
 * lengths refused) and the rtnetlink parsing and cache of daemon/net/neigh.c from canned
 * messages.
 *
 * test_xsk --veth: the real thing, as root. Two namespaces joined by a veth pair,
 * tests/xsk_redirect.bpf.c attached natively to B's end, an xsk_port (then two
 * sharing one UMEM) on it; A sends UDP datagrams with normal sockets, B receives them
 * with xsk_port_rx, answers with xsk_port_send to the MAC neigh_lookup resolved, and A
 * must receive every answer. Exit 77 ("SKIPPED: why") when it cannot run here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "neigh.h"
#include "xsk.h"

/* ---- references ------------------------------------------------------------------ */

/* RFC 1071, byte by byte, big-endian words: the reference the fast code must match. */
static uint16_t ref_csum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint16_t be16at(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The UDP checksum an independent computation gives for the UDP header + payload at
 * `udp` (`ulen` bytes, its checksum field taken as zero). */
static uint16_t ref_udp_csum(int family, const uint8_t *saddr, const uint8_t *daddr,
			     const uint8_t *udp, size_t ulen)
{
	uint8_t buf[70000];
	size_t n = 0;
	size_t al = family == AF_INET ? 4 : 16;
	memcpy(buf + n, saddr, al), n += al;
	memcpy(buf + n, daddr, al), n += al;
	if (family == AF_INET) {
		buf[n++] = 0;
		buf[n++] = IPPROTO_UDP;
		buf[n++] = (uint8_t)(ulen >> 8);
		buf[n++] = (uint8_t)ulen;
	} else {
		buf[n++] = 0;
		buf[n++] = 0;
		buf[n++] = (uint8_t)(ulen >> 8);
		buf[n++] = (uint8_t)ulen;
		buf[n++] = 0;
		buf[n++] = 0;
		buf[n++] = 0;
		buf[n++] = IPPROTO_UDP;
	}
	memcpy(buf + n, udp, ulen);
	buf[n + 6] = buf[n + 7] = 0;
	n += ulen;
	uint16_t c = ref_csum(buf, n, 0);
	return c ? c : 0xffff;
}

static const uint8_t MAC_A[6] = {0x02, 0, 0, 0, 0, 0xa};
static const uint8_t MAC_B[6] = {0x02, 0, 0, 0, 0, 0xb};

static struct r2p2_addr a4(const char *s, uint16_t port)
{
	struct r2p2_addr a;
	memset(&a, 0, sizeof(a));
	a.family = AF_INET;
	a.port = htons(port);
	inet_pton(AF_INET, s, a.addr);
	return a;
}

static struct r2p2_addr a6(const char *s, uint16_t port)
{
	struct r2p2_addr a;
	memset(&a, 0, sizeof(a));
	a.family = AF_INET6;
	a.port = htons(port);
	inet_pton(AF_INET6, s, a.addr);
	return a;
}

/* build one frame of `plen` payload bytes (pattern) into `f`; returns its length */
static int build(uint8_t *f, size_t cap, const struct r2p2_addr *s, const struct r2p2_addr *d,
		 size_t plen)
{
	static uint8_t pay[4096];
	for (size_t i = 0; i < sizeof(pay); i++)
		pay[i] = (uint8_t)(i * 7 + 3);
	size_t half = plen / 3;
	struct iovec iov[2] = {{pay, half}, {pay + half, plen - half}};
	return xsk_build_udp(f, cap, MAC_A, MAC_B, s, d, iov, 2, 0x1234);
}

/* parse a copy of exactly `len` bytes, so ASan sees any read past the end */
static int parse_exact(const uint8_t *f, size_t len, struct xsk_pkt *pkt, uint8_t **keep)
{
	static uint8_t *last; /* kept until the next call: `pkt` points into it */
	uint8_t *c = malloc(len ? len : 1);
	memcpy(c, f, len);
	int ret = xsk_parse_udp(c, len, pkt);
	if (keep) {
		*keep = c;
	} else {
		free(last);
		last = c;
	}
	return ret;
}

/* ---- checksums ------------------------------------------------------------------- */

Test(csum, matches_rfc1071_reference)
{
	uint8_t buf[1600];
	srand(1);
	for (size_t len = 0; len < 300; len++) {
		for (int round = 0; round < 8; round++) {
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(round == 0 ? 0xff : rand());
			uint16_t c = xsk_csum_fold(xsk_csum_partial(buf, len, 0));
			uint8_t be[2];
			memcpy(be, &c, 2);
			cr_assert_eq(be16at(be), ref_csum(buf, len, 0), "len %zu round %d", len,
				     round);
		}
	}
}

/* ---- build / parse ---------------------------------------------------------------- */

static void check_round_trip(const struct r2p2_addr *s, const struct r2p2_addr *d, size_t plen)
{
	uint8_t f[2048];
	int n = build(f, sizeof(f), s, d, plen);
	size_t hdr = s->family == AF_INET ? XSK_HDR_LEN_V4 : XSK_HDR_LEN_V6;
	cr_assert_eq(n, (int)(hdr + plen));
	cr_assert(!memcmp(f, MAC_B, 6) && !memcmp(f + 6, MAC_A, 6));
	const uint8_t *ip = f + 14;
	const uint8_t *udp;
	if (s->family == AF_INET) {
		cr_assert_eq(be16at(f + 12), 0x0800);
		cr_assert_eq(ip[0], 0x45);
		cr_assert_eq(be16at(ip + 2), 28 + plen);
		cr_assert_eq(be16at(ip + 6), 0x4000, "DF, no fragment");
		cr_assert_eq(ip[8], 64);
		uint8_t h[20];
		memcpy(h, ip, 20);
		h[10] = h[11] = 0;
		cr_assert_eq(be16at(ip + 10), ref_csum(h, 20, 0), "IPv4 header checksum");
		udp = ip + 20;
	} else {
		cr_assert_eq(be16at(f + 12), 0x86dd);
		cr_assert_eq(ip[0] >> 4, 6);
		cr_assert_eq(be16at(ip + 4), 8 + plen);
		cr_assert_eq(ip[6], IPPROTO_UDP);
		udp = ip + 40;
	}
	cr_assert_eq(be16at(udp + 4), 8 + plen);
	cr_assert_eq(be16at(udp + 6), ref_udp_csum(s->family, s->addr, d->addr, udp, 8 + plen),
		     "UDP checksum");

	struct xsk_pkt pkt;
	uint8_t *copy;
	cr_assert_eq(parse_exact(f, (size_t)n, &pkt, &copy), 0);
	cr_assert(!memcmp(&pkt.src, s, sizeof(*s)), "src");
	cr_assert(!memcmp(&pkt.dst, d, sizeof(*d)), "dst");
	cr_assert_eq(pkt.len, plen);
	for (size_t i = 0; i < plen; i++)
		cr_assert_eq(pkt.payload[i], (uint8_t)(i * 7 + 3));
	cr_assert(!pkt.has_vlan);
	cr_assert(xsk_udp_csum_ok(&pkt));
	if (plen) { /* one flipped payload bit must be caught */
		copy[n - 1] ^= 0x10;
		cr_assert_eq(xsk_parse_udp(copy, (size_t)n, &pkt), 0);
		cr_assert(!xsk_udp_csum_ok(&pkt));
	}
	free(copy);
}

Test(frame, ipv4_round_trip)
{
	struct r2p2_addr s = a4("10.1.2.3", 40000), d = a4("192.168.77.200", 7777);
	for (size_t plen = 0; plen <= 1472; plen += (plen < 20 ? 1 : 61))
		check_round_trip(&s, &d, plen);
	check_round_trip(&s, &d, 1472);
}

Test(frame, ipv6_round_trip)
{
	struct r2p2_addr s = a6("fd00::1:2:3", 1), d = a6("2001:db8:ffff::fffe", 65535);
	for (size_t plen = 0; plen <= 1452; plen += (plen < 20 ? 1 : 59))
		check_round_trip(&s, &d, plen);
	check_round_trip(&s, &d, 1452);
}

Test(frame, vlan_tag_parsed)
{
	uint8_t f[2048], t[2048];
	struct r2p2_addr s = a6("fd00::1", 5), d = a6("fd00::2", 6);
	int n = build(f, sizeof(f), &s, &d, 100);
	/* insert 802.1Q tag, TCI 0x2123 (priority 1, VID 0x123) */
	memcpy(t, f, 12);
	t[12] = 0x81, t[13] = 0x00, t[14] = 0x21, t[15] = 0x23;
	memcpy(t + 16, f + 12, (size_t)n - 12);
	struct xsk_pkt pkt;
	cr_assert_eq(parse_exact(t, (size_t)n + 4, &pkt, NULL), 0);
	cr_assert(pkt.has_vlan);
	cr_assert_eq(pkt.vlan_tci, 0x2123);
	cr_assert_eq(pkt.len, 100);
	cr_assert(!memcmp(&pkt.src, &s, sizeof(s)));
	cr_assert(xsk_udp_csum_ok(&pkt));
	/* 802.1ad outer tag too */
	t[12] = 0x88, t[13] = 0xa8;
	cr_assert_eq(parse_exact(t, (size_t)n + 4, &pkt, NULL), 0);
	/* two tags (QinQ) are refused */
	uint8_t q[2048];
	memcpy(q, f, 12);
	memcpy(q + 12, "\x88\xa8\x00\x01\x81\x00\x00\x05", 8);
	memcpy(q + 20, f + 12, (size_t)n - 12);
	cr_assert_eq(parse_exact(q, (size_t)n + 8, &pkt, NULL), -EPROTONOSUPPORT);
}

Test(frame, runts_refused)
{
	uint8_t f[2048];
	struct r2p2_addr s4 = a4("10.0.0.1", 1), d4 = a4("10.0.0.2", 2);
	struct r2p2_addr s6 = a6("fd::1", 1), d6 = a6("fd::2", 2);
	struct xsk_pkt pkt;
	for (int v = 0; v < 2; v++) {
		int n = v ? build(f, sizeof(f), &s6, &d6, 30) : build(f, sizeof(f), &s4, &d4, 30);
		for (int len = 0; len < n; len++)
			cr_assert_lt(parse_exact(f, (size_t)len, &pkt, NULL), 0, "v%d len %d",
				     v ? 6 : 4, len);
		cr_assert_eq(parse_exact(f, (size_t)n, &pkt, NULL), 0);
	}
	cr_assert_eq(xsk_parse_udp(NULL, 0, &pkt), -EBADMSG);
}

static int fix_ipcsum(uint8_t *ip)
{
	ip[10] = ip[11] = 0;
	uint16_t c = ref_csum(ip, (size_t)(ip[0] & 0xf) * 4, 0);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	return 0;
}

Test(frame, lying_lengths_refused)
{
	uint8_t f[2048], t[2048];
	struct r2p2_addr s = a4("10.0.0.1", 1), d = a4("10.0.0.2", 2);
	struct xsk_pkt pkt;
	int n = build(f, sizeof(f), &s, &d, 40); /* ip at 14, udp at 34 */
	uint8_t *ip = t + 14, *udp = t + 34;
#define RESET() memcpy(t, f, (size_t)n)
#define FIX_IPCSUM() fix_ipcsum(ip)

	/* IPv4 total length beyond the frame */
	RESET(), ip[2] = 0, ip[3] = 28 + 41, FIX_IPCSUM();
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	/* total length too short for the UDP header */
	RESET(), ip[3] = 20 + 7, ip[2] = 0, FIX_IPCSUM();
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	/* IHL below 5 and IHL beyond the total length */
	RESET(), ip[0] = 0x44, FIX_IPCSUM();
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[0] = 0x4f, ip[2] = 0, ip[3] = 40;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	/* wrong version, bad header checksum */
	RESET(), ip[0] = 0x55, FIX_IPCSUM();
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[10] ^= 1;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	/* UDP length below 8 and beyond the IP payload */
	RESET(), udp[4] = 0, udp[5] = 7;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), udp[4] = 0, udp[5] = 49;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), udp[4] = 0xff, udp[5] = 0xff;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	/* a shorter UDP length is believed (within the IP payload) */
	RESET(), udp[4] = 0, udp[5] = 8 + 10;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), 0);
	cr_assert_eq(pkt.len, 10);
	/* Ethernet padding after the IP total length is ignored */
	RESET(), memset(t + n, 0xee, 20);
	cr_assert_eq(parse_exact(t, (size_t)n + 20, &pkt, NULL), 0);
	cr_assert_eq(pkt.len, 40);
	cr_assert(xsk_udp_csum_ok(&pkt));
	/* fragments, other protocols, other ethertypes: not ours */
	RESET(), ip[6] = 0x20, FIX_IPCSUM(); /* MF */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EPROTONOSUPPORT);
	RESET(), ip[7] = 0x01, FIX_IPCSUM(); /* offset 8 */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EPROTONOSUPPORT);
	RESET(), ip[9] = IPPROTO_TCP, FIX_IPCSUM();
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EPROTONOSUPPORT);
	RESET(), t[12] = 0x08, t[13] = 0x06; /* ARP */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EPROTONOSUPPORT);
	/* IPv4 options are skipped */
	{
		uint8_t o[2048];
		memcpy(o, f, 34);
		memcpy(o + 38, f + 34, (size_t)n - 34);
		uint8_t *oip = o + 14;
		oip[0] = 0x46, oip[3] = (uint8_t)(oip[3] + 4);
		memset(oip + 20, 1, 4); /* four NOPs */
		oip[10] = oip[11] = 0;
		uint16_t c = ref_csum(oip, 24, 0);
		oip[10] = (uint8_t)(c >> 8), oip[11] = (uint8_t)c;
		cr_assert_eq(parse_exact(o, (size_t)n + 4, &pkt, NULL), 0);
		cr_assert_eq(pkt.len, 40);
		cr_assert(xsk_udp_csum_ok(&pkt));
	}
	/* IPv4 without checksum (0) is accepted by xsk_udp_csum_ok, IPv6 is not */
	RESET(), udp[6] = udp[7] = 0;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), 0);
	cr_assert(xsk_udp_csum_ok(&pkt));

	struct r2p2_addr s6 = a6("fd::1", 1), d6 = a6("fd::2", 2);
	n = build(f, sizeof(f), &s6, &d6, 40); /* ip at 14, udp at 54 */
	udp = t + 54;
	RESET(), ip[4] = 0, ip[5] = 49; /* payload length beyond the frame */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[4] = 0, ip[5] = 0; /* jumbogram */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[4] = 0, ip[5] = 7; /* shorter than a UDP header */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), udp[4] = 0, udp[5] = 49;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[0] = 0x40;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EBADMSG);
	RESET(), ip[6] = 0; /* hop-by-hop options header */
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), -EPROTONOSUPPORT);
	RESET(), udp[6] = udp[7] = 0;
	cr_assert_eq(parse_exact(t, (size_t)n, &pkt, NULL), 0);
	cr_assert(!xsk_udp_csum_ok(&pkt), "IPv6 needs a UDP checksum");
#undef RESET
#undef FIX_IPCSUM
}

Test(frame, random_mutations_never_overread)
{
	uint8_t f[2048];
	struct r2p2_addr s = a4("10.0.0.1", 1), d = a4("10.0.0.2", 2);
	struct r2p2_addr s6 = a6("fd::1", 1), d6 = a6("fd::2", 2);
	srand(7);
	for (int i = 0; i < 20000; i++) {
		int n = (i & 1) ? build(f, sizeof(f), &s6, &d6, (size_t)(rand() % 200))
				: build(f, sizeof(f), &s, &d, (size_t)(rand() % 200));
		for (int k = rand() % 4; k >= 0; k--)
			f[rand() % n] = (uint8_t)rand();
		size_t len = (size_t)(rand() % (n + 1));
		struct xsk_pkt pkt;
		uint8_t *c;
		if (parse_exact(f, len, &pkt, &c) == 0) {
			cr_assert_leq((size_t)(pkt.payload - c) + pkt.len, len);
			(void)xsk_udp_csum_ok(&pkt);
		}
		free(c);
	}
}

Test(frame, build_errors)
{
	uint8_t f[2048];
	struct r2p2_addr s = a4("10.0.0.1", 1), d6 = a6("fd::2", 2), d = a4("10.0.0.2", 2);
	struct iovec iov = {f, 10};
	cr_assert_eq(xsk_build_udp(f, sizeof(f), MAC_A, MAC_B, &s, &d6, &iov, 1, 0), -EAFNOSUPPORT);
	struct r2p2_addr bad = s;
	bad.family = AF_UNIX;
	cr_assert_eq(xsk_build_udp(f, sizeof(f), MAC_A, MAC_B, &bad, &bad, &iov, 1, 0),
		     -EAFNOSUPPORT);
	cr_assert_eq(xsk_build_udp(f, sizeof(f), MAC_A, MAC_B, &s, &d, &iov, -1, 0), -EINVAL);
	cr_assert_eq(xsk_build_udp(f, XSK_HDR_LEN_V4 + 9, MAC_A, MAC_B, &s, &d, &iov, 1, 0),
		     -EMSGSIZE);
	cr_assert_eq(xsk_build_udp(f, XSK_HDR_LEN_V4 + 10, MAC_A, MAC_B, &s, &d, &iov, 1, 0),
		     XSK_HDR_LEN_V4 + 10);
	static uint8_t big[70000];
	struct iovec bigv = {big, sizeof(big)};
	static uint8_t out[80000];
	cr_assert_eq(xsk_build_udp(out, sizeof(out), MAC_A, MAC_B, &s, &d, &bigv, 1, 0), -EMSGSIZE);
	cr_assert_eq(xsk_build_udp(f, sizeof(f), MAC_A, MAC_B, &s, &d, NULL, 0, 0), XSK_HDR_LEN_V4);
}

Test(config, bad_config_named)
{
	struct xsk_port_config cfg;
	char err[256] = "";
	xsk_port_config_default(&cfg);
	cfg.num_frames = 1000;
	cr_assert_null(xsk_port_new("lo", 0, &cfg, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert(strstr(err, "lo queue 0"), "%s", err);
	xsk_port_config_default(&cfg);
	cr_assert_null(xsk_port_new("no-such-if0", 3, &cfg, err, sizeof(err)));
	cr_assert(strstr(err, "no-such-if0"), "%s", err);
}

/* ---- netlink ---------------------------------------------------------------------- */

/* RTM_NEWNEIGH for 10.0.0.1 on ifindex 3, REACHABLE, lladdr 02:00:00:00:00:0a, as the
 * kernel lays it out on x86-64 (host order header fields). */
static const uint8_t canned_neigh[] = {
    0x38, 0x00, 0x00, 0x00,			    /* nlmsg_len 56 */
    0x1c, 0x00, 0x00, 0x00,			    /* RTM_NEWNEIGH, flags 0 */
    0x00, 0x00, 0x00, 0x00,			    /* seq */
    0x00, 0x00, 0x00, 0x00,			    /* pid */
    0x02, 0x00, 0x00, 0x00,			    /* ndm_family AF_INET, pads */
    0x03, 0x00, 0x00, 0x00,			    /* ndm_ifindex 3 */
    0x02, 0x00, 0x00, 0x00,			    /* ndm_state NUD_REACHABLE, flags 0, type 0 */
    0x08, 0x00, 0x01, 0x00,			    /* NDA_DST, len 8 */
    0x0a, 0x00, 0x00, 0x01,			    /* 10.0.0.1 */
    0x0a, 0x00, 0x02, 0x00,			    /* NDA_LLADDR, len 10 */
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, /* MAC + padding */
    0x08, 0x00, 0x04, 0x00,			    /* NDA_PROBES */
    0x00, 0x00, 0x00, 0x00,
};

Test(netlink, canned_neigh_parsed)
{
	_Static_assert(sizeof(canned_neigh) == 56, "");
	uint8_t buf[64];
	memcpy(buf, canned_neigh, sizeof(canned_neigh));
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct neigh_msg nm;
	cr_assert_eq(neigh_parse_neigh(nlh, sizeof(canned_neigh), &nm), 0);
	cr_assert_eq(nm.family, AF_INET);
	cr_assert_eq(nm.ifindex, 3);
	cr_assert_eq(nm.state, NUD_REACHABLE);
	cr_assert(!nm.deleted);
	cr_assert(nm.has_lladdr);
	cr_assert(!memcmp(nm.lladdr, MAC_A, 6));
	cr_assert(!memcmp(nm.dst, "\x0a\x00\x00\x01", 4));
	/* truncations: every shorter buffer is refused */
	for (size_t len = 0; len < sizeof(canned_neigh); len++)
		cr_assert_lt(neigh_parse_neigh(nlh, len, &nm), 0, "len %zu", len);
	/* an attribute claiming more than the message holds */
	buf[48] = 0x40;
	cr_assert_eq(neigh_parse_neigh(nlh, sizeof(canned_neigh), &nm), -EBADMSG);
	buf[48] = 0x08;
	/* NDA_DST of the wrong size */
	buf[28] = 0x06;
	cr_assert_eq(neigh_parse_neigh(nlh, sizeof(canned_neigh), &nm), -EBADMSG);
	buf[28] = 0x08;
	/* a route message is not a neighbour message */
	nlh->nlmsg_type = RTM_NEWROUTE;
	cr_assert_eq(neigh_parse_neigh(nlh, sizeof(canned_neigh), &nm), -ENOMSG);
	nlh->nlmsg_type = RTM_DELNEIGH;
	cr_assert_eq(neigh_parse_neigh(nlh, sizeof(canned_neigh), &nm), 0);
	cr_assert(nm.deleted);
}

static struct nlmsghdr *mk_route(uint8_t *buf, uint16_t type, int family, uint8_t rtype,
				 uint32_t oif, const char *gw, const char *src)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_type = rtype;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_dst_len = family == AF_INET ? 32 : 128;
	uint8_t a[16];
	size_t al = family == AF_INET ? 4 : 16;
	mnl_attr_put_u32(nlh, RTA_TABLE, RT_TABLE_MAIN);
	inet_pton(family, family == AF_INET ? "10.9.9.9" : "fd::9", a);
	mnl_attr_put(nlh, RTA_DST, al, a);
	if (oif)
		mnl_attr_put_u32(nlh, RTA_OIF, oif);
	if (gw) {
		inet_pton(family, gw, a);
		mnl_attr_put(nlh, RTA_GATEWAY, al, a);
	}
	if (src) {
		inet_pton(family, src, a);
		mnl_attr_put(nlh, RTA_PREFSRC, al, a);
	}
	return nlh;
}

static struct nlmsghdr *mk_neigh(uint8_t *buf, uint16_t type, int family, int ifindex,
				 uint16_t state, const char *dst, const uint8_t *mac)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = (uint8_t)family;
	ndm->ndm_ifindex = ifindex;
	ndm->ndm_state = state;
	uint8_t a[16];
	inet_pton(family, dst, a);
	mnl_attr_put(nlh, NDA_DST, family == AF_INET ? 4 : 16, a);
	if (mac)
		mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
	return nlh;
}

Test(netlink, route_parsed)
{
	uint8_t buf[512];
	struct neigh_route rt;
	struct nlmsghdr *nlh =
	    mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, 7, "10.0.0.254", "10.0.0.2");
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert_eq(rt.family, AF_INET);
	cr_assert_eq(rt.type, RTN_UNICAST);
	cr_assert_eq(rt.oif, 7);
	cr_assert(rt.has_gw && rt.gw_family == AF_INET);
	cr_assert(!memcmp(rt.gw, "\x0a\x00\x00\xfe", 4));
	cr_assert(rt.has_src && !memcmp(rt.src, "\x0a\x00\x00\x02", 4));
	for (size_t len = 0; len < nlh->nlmsg_len; len++)
		cr_assert_lt(neigh_parse_route(nlh, len, &rt), 0, "len %zu", len);

	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET6, RTN_UNICAST, 7, NULL, "fd::2");
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert(!rt.has_gw && rt.has_src && rt.family == AF_INET6);

	/* RTA_VIA: an IPv4 route through an IPv6 next hop */
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, 7, NULL, NULL);
	uint8_t via[2 + 16] = {AF_INET6 & 0xff, AF_INET6 >> 8};
	inet_pton(AF_INET6, "fe80::1", via + 2);
	mnl_attr_put(nlh, RTA_VIA, sizeof(via), via);
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert(rt.has_gw && rt.gw_family == AF_INET6 && rt.gw[0] == 0xfe);

	/* a gateway of the wrong size */
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, 7, NULL, NULL);
	mnl_attr_put(nlh, RTA_GATEWAY, 16, via);
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), -EBADMSG);
	/* other families and message types are not routes for us */
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, 7, NULL, NULL);
	((struct rtmsg *)mnl_nlmsg_get_payload(nlh))->rtm_family = 128; /* RTNL_FAMILY_IPMR */
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), -ENOMSG);
	nlh->nlmsg_type = RTM_NEWLINK;
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), -ENOMSG);
}

Test(neigh, cache_follows_events)
{
	const unsigned ifx = 4;
	struct neigh *n = neigh_new_offline(ifx, MAC_B);
	cr_assert_not_null(n);
	uint8_t buf[512], mac[6];
	struct r2p2_addr src, dst = a4("10.0.0.1", 1234);
	struct neigh_route rt;
	struct neigh_msg nm;

	/* a miss with nothing learned */
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), -ENOTCONN);

	/* on-link, neighbour unknown: pending until the kernel says REACHABLE */
	struct nlmsghdr *nlh =
	    mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, ifx, NULL, "10.0.0.2");
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert_eq(neigh_learn(n, &dst, &rt, NULL, 1), -EAGAIN);
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), -EAGAIN);
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx, NUD_INCOMPLETE, "10.0.0.1", NULL);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), -EAGAIN);
	/* the same address on another interface changes nothing */
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx + 1, NUD_REACHABLE, "10.0.0.1", MAC_A);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 0);
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), -EAGAIN);
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx, NUD_REACHABLE, "10.0.0.1", MAC_A);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	memset(mac, 0, 6);
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), 0);
	cr_assert(!memcmp(mac, MAC_A, 6));
	cr_assert_eq(src.family, AF_INET);
	cr_assert(!memcmp(src.addr, "\x0a\x00\x00\x02", 4));
	/* a new MAC (STALE is still usable) */
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx, NUD_STALE, "10.0.0.1", MAC_B);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &dst, mac, NULL), 0);
	cr_assert(!memcmp(mac, MAC_B, 6));
	/* FAILED */
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx, NUD_FAILED, "10.0.0.1", NULL);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &dst, mac, NULL), -EHOSTUNREACH);
	/* deleted: forgotten, asked again next time */
	nlh = mk_neigh(buf, RTM_DELNEIGH, AF_INET, ifx, 0, "10.0.0.1", NULL);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &dst, mac, NULL), -ENOTCONN);

	/* through a gateway: the gateway's entry resolves every destination behind it */
	struct r2p2_addr far1 = a6("2001:db8::1", 1), far2 = a6("2001:db8::2", 1);
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET6, RTN_UNICAST, ifx, "fe80::1", "fd::2");
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert_eq(neigh_learn(n, &far1, &rt, NULL, 1), -EAGAIN);
	cr_assert_eq(neigh_learn(n, &far2, &rt, NULL, 1), -EAGAIN);
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET6, ifx, NUD_REACHABLE, "fe80::1", MAC_A);
	cr_assert_eq(neigh_parse_neigh(nlh, nlh->nlmsg_len, &nm), 0);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &far1, mac, &src), 0);
	cr_assert_eq(neigh_lookup(n, &far2, mac, &src), 0);
	cr_assert(!memcmp(mac, MAC_A, 6));
	cr_assert_eq(src.family, AF_INET6);
	/* learned directly with the neighbour answer */
	struct r2p2_addr far3 = a6("2001:db8::3", 1);
	cr_assert_eq(neigh_learn(n, &far3, &rt, &nm, 1), 0);
	/* a neighbour answer for a different next hop is not believed */
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET6, ifx, NUD_REACHABLE, "fe80::99", MAC_A);
	cr_assert_eq(neigh_parse_neigh(nlh, nlh->nlmsg_len, &nm), 0);
	struct r2p2_addr far4 = a6("2001:db8::4", 1);
	cr_assert_eq(neigh_learn(n, &far4, &rt, &nm, 1), -EAGAIN);

	/* any route change empties the cache */
	nlh = mk_route(buf, RTM_DELROUTE, AF_INET6, RTN_UNICAST, ifx, "fe80::1", NULL);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len), 1);
	cr_assert_eq(neigh_lookup(n, &far1, mac, &src), -ENOTCONN);

	/* routes out of another interface, or local ones, are unreachable for AF_XDP */
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, ifx + 1, NULL, NULL);
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert_eq(neigh_learn(n, &dst, &rt, NULL, 1), -ENETUNREACH);
	cr_assert_eq(neigh_lookup(n, &dst, mac, &src), -ENETUNREACH);
	nlh = mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_LOCAL, ifx, NULL, NULL);
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	cr_assert_eq(neigh_learn(n, &dst, &rt, NULL, 1), -ENETUNREACH);
	/* garbage is refused, not applied */
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, ifx, NUD_REACHABLE, "10.0.0.1", MAC_A);
	cr_assert_eq(neigh_apply(n, nlh, nlh->nlmsg_len - 4), -EBADMSG);
	struct r2p2_addr bad = dst;
	bad.family = AF_UNIX;
	cr_assert_eq(neigh_lookup(n, &bad, mac, &src), -EAFNOSUPPORT);
	neigh_free(n);
}

Test(neigh, cache_bounded)
{
	struct neigh *n = neigh_new_offline(1, MAC_B);
	uint8_t buf[512], mac[6];
	struct neigh_route rt;
	struct neigh_msg nm;
	struct nlmsghdr *nlh =
	    mk_route(buf, RTM_NEWROUTE, AF_INET, RTN_UNICAST, 1, "10.0.0.1", NULL);
	cr_assert_eq(neigh_parse_route(nlh, nlh->nlmsg_len, &rt), 0);
	nlh = mk_neigh(buf, RTM_NEWNEIGH, AF_INET, 1, NUD_REACHABLE, "10.0.0.1", MAC_A);
	cr_assert_eq(neigh_parse_neigh(nlh, nlh->nlmsg_len, &nm), 0);
	unsigned ok = 0;
	for (uint32_t i = 0; i < 20000; i++) {
		struct r2p2_addr d = a4("10.0.0.0", 1);
		uint32_t v = htonl(0x0b000000u + i);
		memcpy(d.addr, &v, 4);
		cr_assert_eq(neigh_learn(n, &d, &rt, &nm, 1), 0);
		/* the latest one is always there */
		cr_assert_eq(neigh_lookup(n, &d, mac, NULL), 0);
	}
	for (uint32_t i = 0; i < 20000; i++) {
		struct r2p2_addr d = a4("10.0.0.0", 1);
		uint32_t v = htonl(0x0b000000u + i);
		memcpy(d.addr, &v, 4);
		ok += neigh_lookup(n, &d, mac, NULL) == 0;
	}
	cr_assert_leq(ok, NEIGH_CACHE_SETS * NEIGH_CACHE_WAYS);
	cr_assert_gt(ok, NEIGH_CACHE_SETS * NEIGH_CACHE_WAYS / 2);
	neigh_free(n);
}

/* ---- the veth run ------------------------------------------------------------------ */

#define SKIP 77
#define PORT 7777
#define KPORT 7778 /* plain kernel UDP echo on B, for the baseline */

static char ns_a[32], ns_b[32], if_a[16], if_b[16];
static int net_id;
static int orig_ns = -1;
static bool made_ns;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "[veth] failed (%d): %s\n", r, cmd);
	return r;
}

static void cleanup(void)
{
	if (orig_ns >= 0)
		(void)setns(orig_ns, CLONE_NEWNET);
	if (made_ns) {
		/* deleting the namespaces deletes the veth pair and its XDP program */
		if (system("true") == 0) {
			char cmd[128];
			snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns_a);
			(void)!system(cmd);
			snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns_b);
			(void)!system(cmd);
		}
		made_ns = false;
	}
}

static int enter(const char *ns)
{
	char path[128];
	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r < 0 ? -errno : 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct pend {
	unsigned port; /* which xsk_port received it */
	struct r2p2_addr src, dst;
	size_t len;
	uint8_t data[1500];
};

struct srv {
	struct xsk_port *ports[2];
	unsigned num_ports;
	unsigned cur;
	struct neigh *nb;
	struct pend pend[2048];
	unsigned num_pend;
	unsigned rx[2];
	unsigned replied;
	unsigned neigh_eagain;
	unsigned tx_eagain;
	int last_err;
};

static void on_rx(void *ctx, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		  const uint8_t *payload, size_t len)
{
	struct srv *s = ctx;
	s->rx[s->cur]++;
	if (s->num_pend == sizeof(s->pend) / sizeof(s->pend[0]) || len > sizeof(s->pend[0].data))
		return;
	struct pend *p = &s->pend[s->num_pend++];
	p->port = s->cur;
	p->src = *src;
	p->dst = *dst;
	p->len = len;
	memcpy(p->data, payload, len);
}

/* serve runs one round: neighbour events, rx on every port, the answers. */
static void serve(struct srv *s, int timeout_ms)
{
	struct pollfd pf[3];
	unsigned n = 0;
	for (unsigned i = 0; i < s->num_ports; i++)
		pf[n++] = (struct pollfd){xsk_port_fd(s->ports[i]), POLLIN, 0};
	pf[n++] = (struct pollfd){neigh_fd(s->nb), POLLIN, 0};
	if (poll(pf, n, timeout_ms) > 0 && pf[n - 1].revents)
		neigh_process(s->nb);
	for (unsigned i = 0; i < s->num_ports; i++) {
		s->cur = i;
		xsk_port_rx(s->ports[i], on_rx, s, 256);
	}
	unsigned kept = 0;
	for (unsigned i = 0; i < s->num_pend; i++) {
		struct pend *p = &s->pend[i];
		uint8_t mac[6];
		int r = neigh_lookup(s->nb, &p->src, mac, NULL);
		if (r == -EAGAIN) {
			s->neigh_eagain++;
			s->pend[kept++] = *p;
			continue;
		}
		if (r == 0) {
			struct iovec iov[2] = {{(void *)"re:", 3}, {p->data, p->len}};
			r = xsk_port_send(s->ports[p->port], &p->dst, &p->src, mac, iov, 2);
			if (r == -EAGAIN) {
				s->tx_eagain++;
				xsk_port_flush(s->ports[p->port]);
				xsk_port_complete(s->ports[p->port]);
				s->pend[kept++] = *p;
				continue;
			}
		}
		if (r == 0)
			s->replied++;
		else
			s->last_err = r;
	}
	s->num_pend = kept;
	for (unsigned i = 0; i < s->num_ports; i++) {
		xsk_port_flush(s->ports[i]);
		xsk_port_complete(s->ports[i]);
	}
}

static socklen_t sa_of(int family, const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		inet_pton(AF_INET, ip, &s->sin_addr);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
	return sizeof(*s);
}

/* ping sends `msg` from `fd` to `to` and waits (serving B meanwhile) for "re:" + msg
 * from that address. Returns the round trip in ns, or 0 on timeout/mismatch. */
static uint64_t ping(struct srv *s, int fd, const struct sockaddr_storage *to, socklen_t tolen,
		     const char *msg, int kfd)
{
	uint8_t buf[2048];
	size_t mlen = strlen(msg);
	uint64_t t0 = mono_ns(), deadline = t0 + 3000000000ull;
	if (sendto(fd, msg, mlen, 0, (const struct sockaddr *)to, tolen) != (ssize_t)mlen)
		return 0;
	while (mono_ns() < deadline) {
		if (kfd >= 0) { /* the kernel-UDP baseline: B echoes with recvfrom/sendto */
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t r = recvfrom(kfd, buf + 3, sizeof(buf) - 3, MSG_DONTWAIT,
					     (struct sockaddr *)&from, &fl);
			if (r > 0) {
				memcpy(buf, "re:", 3);
				(void)sendto(kfd, buf, (size_t)r + 3, 0, (struct sockaddr *)&from,
					     fl);
			}
		} else {
			serve(s, s->num_pend ? 5 : 0);
		}
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t r =
		    recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (r < 0)
			continue;
		uint64_t rtt = mono_ns() - t0;
		if ((size_t)r != mlen + 3 || memcmp(buf, "re:", 3) || memcmp(buf + 3, msg, mlen)) {
			fprintf(stderr, "[veth] wrong answer to %s (%zd bytes)\n", msg, r);
			return 0;
		}
		/* the answer comes from the address the request went to */
		if (from.ss_family != to->ss_family ||
		    (from.ss_family == AF_INET
			 ? memcmp(&((struct sockaddr_in *)&from)->sin_addr,
				  &((const struct sockaddr_in *)to)->sin_addr, 4) ||
			       ((struct sockaddr_in *)&from)->sin_port !=
				   ((const struct sockaddr_in *)to)->sin_port
			 : memcmp(&((struct sockaddr_in6 *)&from)->sin6_addr,
				  &((const struct sockaddr_in6 *)to)->sin6_addr, 16) ||
			       ((struct sockaddr_in6 *)&from)->sin6_port !=
				   ((const struct sockaddr_in6 *)to)->sin6_port)) {
			fprintf(stderr, "[veth] answer to %s from the wrong address\n", msg);
			return 0;
		}
		return rtt ? rtt : 1;
	}
	fprintf(stderr, "[veth] no answer to %s\n", msg);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, unsigned n, unsigned p)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(size_t)n * p / 100 < n ? (size_t)n * p / 100 : n - 1];
}

static int udp_socket(int family, uint16_t port)
{
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (port) {
		struct sockaddr_storage ss;
		socklen_t sl = sa_of(family, family == AF_INET ? "0.0.0.0" : "::", port, &ss);
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "[veth] FAIL: " __VA_ARGS__);                              \
			fprintf(stderr, "\n");                                                     \
			ret = 1;                                                                   \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static int veth_test(void)
{
	int ret = 1;
	if (geteuid() != 0) {
		printf("SKIPPED: test_xsk --veth needs root (namespaces, XDP, AF_XDP)\n");
		return SKIP;
	}
	int probe = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (probe < 0) {
		printf("SKIPPED: no AF_XDP sockets here: %s\n", strerror(errno));
		return SKIP;
	}
	close(probe);
	if (system("ip netns list >/dev/null 2>&1") != 0) {
		printf("SKIPPED: iproute2 (ip netns) is not usable\n");
		return SKIP;
	}
	net_id = getpid() % 250;
	snprintf(ns_a, sizeof(ns_a), "xsk-a-%d", getpid());
	snprintf(ns_b, sizeof(ns_b), "xsk-b-%d", getpid());
	snprintf(if_a, sizeof(if_a), "xa%d", getpid());
	snprintf(if_b, sizeof(if_b), "xb%d", getpid());
	orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	atexit(cleanup);

	struct bpf_object *obj = NULL;
	struct xsk_port *port = NULL;
	struct xsk_queue *q = NULL;
	struct srv *s = calloc(1, sizeof(*s));
	int fa4 = -1, fa6 = -1, fb4 = -1, fodd = -1, feven = -1, ifindex = 0;
	char err[256] = "";
	uint64_t *rtt = calloc(4000, sizeof(uint64_t));
	char a4s[32], b4s[32], a6s[64], b6s[64];
	snprintf(a4s, sizeof(a4s), "10.99.%d.1", net_id);
	snprintf(b4s, sizeof(b4s), "10.99.%d.2", net_id);
	snprintf(a6s, sizeof(a6s), "fd99:%x::1", net_id);
	snprintf(b6s, sizeof(b6s), "fd99:%x::2", net_id);

	made_ns = true;
	if (run("ip netns add %s", ns_a) || run("ip netns add %s", ns_b) ||
	    run("ip link add %s netns %s type veth peer name %s netns %s", if_a, ns_a, if_b,
		ns_b) ||
	    run("ip -n %s addr add %s/24 dev %s", ns_a, a4s, if_a) ||
	    run("ip -n %s addr add %s/24 dev %s", ns_b, b4s, if_b) ||
	    run("ip -n %s addr add %s/64 dev %s nodad", ns_a, a6s, if_a) ||
	    run("ip -n %s addr add %s/64 dev %s nodad", ns_b, b6s, if_b) ||
	    run("ip -n %s link set lo up && ip -n %s link set %s up", ns_a, ns_a, if_a) ||
	    run("ip -n %s link set lo up && ip -n %s link set %s up", ns_b, ns_b, if_b)) {
		printf("SKIPPED: cannot create namespaces and a veth pair here\n");
		ret = SKIP;
		goto out;
	}

	/* A's sockets */
	CHECK(enter(ns_a) == 0, "enter %s", ns_a);
	fa4 = udp_socket(AF_INET, 0);
	fa6 = udp_socket(AF_INET6, 0);
	feven = udp_socket(AF_INET, 40000);
	fodd = udp_socket(AF_INET, 40001);
	CHECK(fa4 >= 0 && fa6 >= 0 && feven >= 0 && fodd >= 0, "A's sockets");

	/* B: the redirect program, the AF_XDP port, the neighbour cache, a kernel socket */
	CHECK(enter(ns_b) == 0, "enter %s", ns_b);
	fb4 = udp_socket(AF_INET, KPORT);
	CHECK(fb4 >= 0, "B's kernel socket");
	ifindex = (int)if_nametoindex(if_b);
	obj = bpf_object__open_file(XSK_TEST_BPF_OBJ, NULL);
	CHECK(obj && bpf_object__load(obj) == 0, "load %s", XSK_TEST_BPF_OBJ);
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "xsk_redirect");
	struct bpf_map *map = bpf_object__find_map_by_name(obj, "xsks_map");
	CHECK(prog && map, "program and map in %s", XSK_TEST_BPF_OBJ);
	int r = bpf_xdp_attach(ifindex, bpf_program__fd(prog), XDP_FLAGS_DRV_MODE, NULL);
	if (r) {
		printf("SKIPPED: native XDP on veth unavailable: %s\n", strerror(-r));
		ret = SKIP;
		goto out;
	}

	struct xsk_port_config cfg;
	xsk_port_config_default(&cfg);
	/* verify_rx_csum stays off: A's datagrams cross the veth with checksum offload,
	 * i.e. only the pseudo-header sum in the field (verified: they would all drop) */
	port = xsk_port_new(if_b, 0, &cfg, err, sizeof(err));
	if (!port) {
		printf("SKIPPED: %s\n", err);
		ret = SKIP;
		goto out;
	}
	fprintf(stderr, "[veth] AF_XDP port on %s queue 0 in %s mode (auto)\n", if_b,
		xsk_port_zerocopy(port) ? "zero-copy" : "copy");
	int xfd = xsk_port_fd(port);
	for (uint32_t k = 0; k < 2; k++)
		CHECK(bpf_map_update_elem(bpf_map__fd(map), &k, &xfd, 0) == 0, "xsks_map[%u]", k);
	s->nb = neigh_new(if_b, err, sizeof(err));
	CHECK(s->nb, "neigh_new: %s", err);
	uint8_t mac[6], nmac[6];
	xsk_port_mac(port, mac);
	neigh_mac(s->nb, nmac);
	CHECK(!memcmp(mac, nmac, 6), "SIOCGIFHWADDR and RTM_GETLINK agree on the MAC");
	s->ports[0] = port;
	s->num_ports = 1;

	struct sockaddr_storage to4, to6, tok;
	socklen_t l4 = sa_of(AF_INET, b4s, PORT, &to4), l6 = sa_of(AF_INET6, b6s, PORT, &to6);
	socklen_t lk = sa_of(AF_INET, b4s, KPORT, &tok);
	char msg[64];

	/* 1. ping-pong over IPv4 and IPv6 */
	const unsigned N = 1000;
	for (unsigned i = 0; i < N; i++) {
		snprintf(msg, sizeof(msg), "ping4-%u", i);
		rtt[i] = ping(s, fa4, &to4, l4, msg, -1);
		CHECK(rtt[i], "IPv4 ping %u (err %d)", i, s->last_err);
	}
	uint64_t x4_p50 = pct(rtt, N, 50), x4_p99 = pct(rtt, N, 99);
	for (unsigned i = 0; i < N; i++) {
		snprintf(msg, sizeof(msg), "ping6-%u", i);
		rtt[i] = ping(s, fa6, &to6, l6, msg, -1);
		CHECK(rtt[i], "IPv6 ping %u (err %d)", i, s->last_err);
	}
	uint64_t x6_p50 = pct(rtt, N, 50), x6_p99 = pct(rtt, N, 99);
	for (unsigned i = 0; i < N; i++) {
		snprintf(msg, sizeof(msg), "kping-%u", i);
		rtt[i] = ping(s, fa4, &tok, lk, msg, fb4);
		CHECK(rtt[i], "kernel UDP ping %u", i);
	}
	uint64_t k_p50 = pct(rtt, N, 50), k_p99 = pct(rtt, N, 99);
	fprintf(stderr,
		"[veth] round trips, one thread, busy polling, %u each: AF_XDP IPv4 p50 %.1f us "
		"p99 %.1f us; IPv6 p50 %.1f us p99 %.1f us; kernel UDP IPv4 p50 %.1f us p99 "
		"%.1f us\n",
		N, x4_p50 / 1e3, x4_p99 / 1e3, x6_p50 / 1e3, x6_p99 / 1e3, k_p50 / 1e3,
		k_p99 / 1e3);

	/* what a cache miss costs the worker: two rtnetlink round trips */
	{
		struct r2p2_addr a = {.family = AF_INET};
		inet_pton(AF_INET, a4s, a.addr);
		uint8_t m[6];
		uint64_t t0 = mono_ns();
		for (int i = 0; i < 100; i++) {
			neigh_flush(s->nb);
			CHECK(neigh_lookup(s->nb, &a, m, NULL) == 0, "neigh_lookup after a flush");
		}
		uint64_t miss = (mono_ns() - t0) / 100;
		t0 = mono_ns();
		for (int i = 0; i < 100000; i++)
			(void)neigh_lookup(s->nb, &a, m, NULL);
		fprintf(
		    stderr,
		    "[veth] neigh_lookup: miss (route + neighbour query) %.1f us, hit %.0f ns\n",
		    miss / 1e3, (mono_ns() - t0) / 1e5);
	}

	/* 2. the next hop unknown to B's kernel: lookup says -EAGAIN, then resolves.
	 * The kernel sends a triggered neighbour solicitation from the link-local
	 * address, so wait for its duplicate address detection to end first. */
	for (int i = 0; i < 100; i++) {
		char cmd[160];
		snprintf(cmd, sizeof(cmd), "ip -n %s -6 addr show dev %s tentative | grep -q inet6",
			 ns_b, if_b);
		if (system(cmd) != 0)
			break;
		usleep(50000);
	}
	for (int fam = 0; fam < 2; fam++) {
		CHECK(run("ip -n %s neigh flush dev %s", ns_b, if_b) == 0, "neigh flush");
		/* let the flush's RTM_DELNEIGH reach the cache */
		for (int i = 0; i < 5; i++)
			serve(s, 2);
		unsigned before = s->neigh_eagain;
		snprintf(msg, sizeof(msg), "resolve-%d", fam);
		uint64_t t =
		    fam ? ping(s, fa6, &to6, l6, msg, -1) : ping(s, fa4, &to4, l4, msg, -1);
		CHECK(t, "answer after resolution (%s)", fam ? "IPv6" : "IPv4");
		CHECK(s->neigh_eagain > before, "neigh_lookup said -EAGAIN first (%s)",
		      fam ? "IPv6" : "IPv4");
		fprintf(stderr, "[veth] %s next hop resolved through the kernel in %.1f us\n",
			fam ? "IPv6" : "IPv4", t / 1e3);
	}

	/* 3. a burst: every datagram answered */
	{
		const unsigned B = 1000;
		uint64_t t0 = mono_ns();
		unsigned got = 0;
		uint8_t buf[2048];
		unsigned sent = 0;
		for (unsigned i = 0; i < B; i++) {
			snprintf(msg, sizeof(msg), "burst-%u", i);
			if (sendto(fa4, msg, strlen(msg), 0, (struct sockaddr *)&to4, l4) > 0)
				sent++;
			if (i % 64 == 63)
				serve(s, 0);
			/* A's receive buffer holds a few hundred datagrams: drain as we go */
			while (recv(fa4, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				got++;
		}
		while (got < sent && mono_ns() - t0 < 5000000000ull) {
			serve(s, 1);
			while (recv(fa4, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				got++;
		}
		double us = (mono_ns() - t0) / 1e3;
		struct xsk_port_stats st;
		xsk_port_get_stats(port, &st);
		fprintf(stderr,
			"[veth] burst: %u sent, %u answered in %.0f us (%.0f kpps each way); "
			"rx %llu tx %llu kicks %llu rx_dropped_parse %llu tx_no_frame %llu "
			"k_rx_ring_full %llu k_rx_fill_empty %llu k_rx_dropped %llu\n",
			sent, got, us, got / us * 1e3, (unsigned long long)st.rx,
			(unsigned long long)st.tx, (unsigned long long)st.kicks,
			(unsigned long long)st.rx_dropped_parse, (unsigned long long)st.tx_no_frame,
			(unsigned long long)st.k_rx_ring_full,
			(unsigned long long)st.k_rx_fill_ring_empty,
			(unsigned long long)st.k_rx_dropped);
		CHECK(got == sent && sent == B, "burst: %u of %u answered", got, sent);
		CHECK(st.rx_dropped_parse == 0, "no parse drops");
	}

	/* 4. two sockets on queue 0 sharing one UMEM, the program choosing by port parity */
	xsk_port_free(port);
	port = NULL;
	s->num_ports = 0;
	q = xsk_queue_new(if_b, 0, &cfg, err, sizeof(err));
	CHECK(q, "xsk_queue_new: %s", err);
	for (unsigned i = 0; i < 2; i++) {
		s->ports[i] = xsk_queue_add_port(q, err, sizeof(err));
		CHECK(s->ports[i], "xsk_queue_add_port %u: %s", i, err);
		s->num_ports++;
		int fd = xsk_port_fd(s->ports[i]);
		uint32_t k = i;
		CHECK(bpf_map_update_elem(bpf_map__fd(map), &k, &fd, 0) == 0, "xsks_map[%u]", k);
	}
	s->rx[0] = s->rx[1] = 0;
	for (unsigned i = 0; i < 400; i++) {
		snprintf(msg, sizeof(msg), "shared-%u", i);
		CHECK(ping(s, (i & 1) ? fodd : feven, &to4, l4, msg, -1), "shared-UMEM ping %u", i);
	}
	CHECK(s->rx[0] == 200 && s->rx[1] == 200, "each socket got its half (%u, %u)", s->rx[0],
	      s->rx[1]);
	/* interleaved bursts from both sources: the shared fill ring recycles both ways */
	{
		unsigned got = 0, sent = 0;
		uint8_t buf[2048];
		uint64_t t0 = mono_ns();
		for (unsigned i = 0; i < 3000; i++) {
			snprintf(msg, sizeof(msg), "sb-%u", i);
			if (sendto((i & 1) ? fodd : feven, msg, strlen(msg), 0,
				   (struct sockaddr *)&to4, l4) > 0)
				sent++;
			if (i % 32 == 31)
				serve(s, 0);
			while (recv(feven, buf, sizeof(buf), MSG_DONTWAIT) > 0 ||
			       recv(fodd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				got++;
		}
		while (got < sent && mono_ns() - t0 < 5000000000ull) {
			serve(s, 1);
			while (recv(feven, buf, sizeof(buf), MSG_DONTWAIT) > 0 ||
			       recv(fodd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				got++;
		}
		fprintf(stderr,
			"[veth] shared UMEM, 2 sockets on queue 0: %u sent, %u answered (%u/%u "
			"per socket in all)\n",
			sent, got, s->rx[0], s->rx[1]);
		CHECK(got == sent, "shared-UMEM burst: %u of %u answered", got, sent);
	}
	struct neigh_stats ns;
	neigh_get_stats(s->nb, &ns);
	fprintf(stderr,
		"[veth] neigh: hits %llu queries %llu triggers %llu events %llu flushes %llu\n",
		(unsigned long long)ns.hits, (unsigned long long)ns.queries,
		(unsigned long long)ns.triggers, (unsigned long long)ns.events,
		(unsigned long long)ns.flushes);
	printf("PASS: test_xsk --veth\n");
	ret = 0;
out:
	for (unsigned i = 0; s && i < 2; i++)
		if (q && s->ports[i])
			xsk_port_free(s->ports[i]);
	if (q && xsk_queue_free(q))
		fprintf(stderr, "[veth] xsk_queue_free: still busy\n");
	xsk_port_free(port);
	if (s)
		neigh_free(s->nb);
	if (ifindex)
		bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	bpf_object__close(obj);
	int fds[] = {fa4, fa6, fb4, fodd, feven};
	for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(s);
	free(rtt);
	cleanup();
	return ret;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--veth"))
		return veth_test();
	struct criterion_test_set *tests = criterion_initialize();
	int result = 0;
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
