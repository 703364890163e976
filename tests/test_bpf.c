// SPDX-License-Identifier: MIT
/*
 * test_bpf: the XDP program (bpf/r2p2.bpf.c) under BPF_PROG_TEST_RUN, loaded through
 * its skeleton. A table of frames (valid R2P2 over IPv4/IPv6, VLAN tags, runts, IPv4
 * options and fragments, IPv6 extension headers, malformed R2P2 headers, lying UDP
 * lengths) must each give the expected verdict and bump exactly the expected counter;
 * the same table through bpf/parsing.h on the host gives the same classification.
 * Steering: the host's hash picks the same slot the program does (real AF_XDP sockets
 * on the loopback of a private network namespace, redirected through test_run's live
 * frame mode), every packet of one (address, port, rid) lands on one socket, and
 * 10,000 rids spread evenly over 4 sockets. Needs root and BPF; exit 77 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_xdp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include "parsing.h"
#include "r2p2.skel.h"

/* Frames start 2 bytes past an 8-byte boundary (NET_IP_ALIGN), so the IP header is
 * 4-byte aligned on the host as it is in the kernel. */
struct frame {
	__u8 pad[2];
	__u8 b[2048];
} __attribute__((aligned(8)));

/* frame_dup copies `len` bytes into an exactly sized, IP-aligned heap frame (ASan sees
 * any read past its end); frame_free releases it. */
static __u8 *frame_dup(const __u8 *src, size_t len)
{
	__u8 *p = malloc(len + 2);

	if (!p)
		return NULL;
	memcpy(p + 2, src, len);
	return p + 2;
}

static void frame_free(__u8 *p)
{
	free(p - 2);
}

#define PORT 8000
#define OTHER_PORT 9000

/* ---- frames ----------------------------------------------------------------------- */

struct spec {
	int family;	     /* 4 or 6 */
	__u16 tpid;	     /* 0, or a VLAN tag with this TPID */
	__u16 tpid2;	     /* a second tag (QinQ) */
	__u16 ethertype;     /* override (0: from family) */
	int ip_opts;	     /* IPv4 option bytes, multiple of 4 */
	int ihl;	     /* override (0: computed) */
	__u16 frag_off;	     /* IPv4 frag_off, host byte order */
	int proto;	     /* IPv4 protocol / IPv6 next header (0: UDP; HOPOPTS: 0) */
	__u16 dport;	     /* 0: PORT */
	__u16 sport;	     /* 0: 40000 */
	int udp_len_delta;   /* added to the true UDP length */
	int ip_len_delta;    /* added to the true IPv4 tot_len / IPv6 payload_len */
	size_t pad_to;	     /* Ethernet padding up to this frame length */
	size_t cut_to;	     /* frame cut to this length (0: whole) */
	__u8 src_last;	     /* last byte of the source address (0: 1) */
	const char *payload; /* UDP payload as hex */
	size_t fill;	     /* then this many filler bytes */
};

static size_t hex_to(const char *hex, __u8 *out)
{
	size_t n = 0;
	unsigned v;

	while (hex && *hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		if (sscanf(hex, "%2x", &v) != 1)
			break;
		out[n++] = (__u8)v;
		hex += 2;
	}
	return n;
}

static void put16(__u8 *p, __u16 v)
{
	p[0] = (__u8)(v >> 8);
	p[1] = (__u8)v;
}

/* build writes the frame `s` describes to `buf` and returns its length. */
static size_t build(const struct spec *s, __u8 *buf, size_t cap)
{
	__u8 payload[2048];
	size_t plen = hex_to(s->payload, payload), off = 0, l3, i;
	struct ethhdr *eth = (struct ethhdr *)buf;
	struct udphdr *udp;
	size_t udp_len;

	for (i = 0; i < s->fill; i++)
		payload[plen++] = (__u8)(i * 7 + 3);
	udp_len = sizeof(*udp) + plen;
	memset(buf, 0, cap);
	memcpy(eth->h_dest, "\x02\x00\x00\x00\x00\x02", ETH_ALEN);
	memcpy(eth->h_source, "\x02\x00\x00\x00\x00\x01", ETH_ALEN);
	off = sizeof(*eth);
	__u8 *type = buf + offsetof(struct ethhdr, h_proto);
	if (s->tpid) {
		put16(type, s->tpid);
		buf[off] = 0x00, buf[off + 1] = 0x2a; /* VLAN 42 */
		type = buf + off + 2;
		off += 4;
	}
	if (s->tpid2) {
		put16(type, s->tpid2);
		buf[off + 1] = 0x07;
		type = buf + off + 2;
		off += 4;
	}
	put16(type, s->ethertype ? s->ethertype : s->family == 6 ? ETH_P_IPV6 : ETH_P_IP);
	l3 = off;
	if (s->family == 6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)(buf + off);

		ip6->version = 6;
		ip6->payload_len = htons((__u16)(udp_len + s->ip_len_delta));
		ip6->nexthdr = (__u8)(s->proto ? s->proto : R2P2_PROTO_UDP);
		ip6->hop_limit = 64;
		inet_pton(AF_INET6, "fd00::1", &ip6->saddr);
		inet_pton(AF_INET6, "fd00::2", &ip6->daddr);
		ip6->saddr.s6_addr[15] = s->src_last ? s->src_last : 1;
		off += sizeof(*ip6);
	} else {
		struct iphdr *ip = (struct iphdr *)(buf + off);
		size_t hl = sizeof(*ip) + (size_t)s->ip_opts;

		ip->version = 4;
		ip->ihl = s->ihl ? (unsigned)s->ihl : (unsigned)(hl / 4);
		ip->tot_len = htons((__u16)(hl + udp_len + s->ip_len_delta));
		ip->frag_off = htons(s->frag_off);
		ip->ttl = 64;
		ip->protocol = (__u8)(s->proto ? s->proto : R2P2_PROTO_UDP);
		ip->saddr = htonl(0x0a000000 | (s->src_last ? s->src_last : 1));
		ip->daddr = htonl(0x0a000002);
		for (i = 0; i < (size_t)s->ip_opts; i++)
			buf[off + sizeof(*ip) + i] = 1; /* NOP options */
		off += hl;
	}
	(void)l3;
	udp = (struct udphdr *)(buf + off);
	udp->source = htons(s->sport ? s->sport : 40000);
	udp->dest = htons(s->dport ? s->dport : PORT);
	udp->len = htons((__u16)(udp_len + s->udp_len_delta));
	off += sizeof(*udp);
	memcpy(buf + off, payload, plen);
	off += plen;
	if (s->pad_to > off)
		off = s->pad_to;
	if (s->cut_to)
		off = s->cut_to;
	return off;
}

/* ---- the table -------------------------------------------------------------------- */

#define C(f) offsetof(struct r2p2_stats, f)

struct tcase {
	const char *name;
	struct spec s;
	__u32 verdict;
	size_t counter; /* offsetof the one counter that must move */
};

#define PING "cc 08 00 c0 12 34 00 01 70 69 6e 67"
#define HOPOPTS 0x100 /* spec.proto for next header 0 */

static const struct tcase table[] = {
    {"v4 single-packet request", {.family = 4, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v4 padded to 60 bytes", {.family = 4, .payload = PING, .pad_to = 60}, XDP_PASS, C(no_socket)},
    {"v4 DF set", {.family = 4, .frag_off = 0x4000, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v4 multi-packet first",
     {.family = 4, .payload = "cc 08 00 80 00 42 00 04", .fill = 14},
     XDP_PASS,
     C(no_socket)},
    {"v4 multi-packet middle",
     {.family = 4, .payload = "cc 08 00 00 00 42 00 02", .fill = 1464},
     XDP_PASS,
     C(no_socket)},
    {"v4 multi-packet last",
     {.family = 4, .payload = "cc 08 00 40 00 42 00 03", .fill = 100},
     XDP_PASS,
     C(no_socket)},
    {"v4 response",
     {.family = 4, .payload = "cc 08 11 c0 12 34 00 01 70 69 6e 67"},
     XDP_PASS,
     C(no_socket)},
    {"v4 ACK",
     {.family = 4, .payload = "cc 08 31 c0 00 42 00 01 41 43 4b"},
     XDP_PASS,
     C(no_socket)},
    {"v4 DROP, header only",
     {.family = 4, .payload = "cc 08 40 c0 00 42 00 01"},
     XDP_PASS,
     C(no_socket)},
    {"v4 encrypted-mode flag bits",
     {.family = 4, .payload = "cc 08 00 c5 12 34 ff ff 00"},
     XDP_PASS,
     C(no_socket)},
    {"v6 single-packet request", {.family = 6, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v6 multi-packet middle",
     {.family = 6, .payload = "cc 08 00 00 00 42 00 02", .fill = 1464},
     XDP_PASS,
     C(no_socket)},
    {"v4 in 802.1Q", {.family = 4, .tpid = ETH_P_8021Q, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v4 in 802.1AD", {.family = 4, .tpid = ETH_P_8021AD, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v6 in 802.1Q", {.family = 6, .tpid = ETH_P_8021Q, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v6 in 802.1AD", {.family = 6, .tpid = ETH_P_8021AD, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v4 IHL 6 (options)", {.family = 4, .ip_opts = 4, .payload = PING}, XDP_PASS, C(no_socket)},
    {"v4 IHL 15 (40 option bytes)",
     {.family = 4, .ip_opts = 40, .payload = PING},
     XDP_PASS,
     C(no_socket)},
    {"v4 options + 802.1Q",
     {.family = 4, .tpid = ETH_P_8021Q, .ip_opts = 8, .payload = PING},
     XDP_PASS,
     C(no_socket)},

    {"QinQ (two tags)",
     {.family = 4, .tpid = ETH_P_8021AD, .tpid2 = ETH_P_8021Q, .payload = PING},
     XDP_PASS,
     C(passed_not_r2p2)},
    {"v4 wrong port",
     {.family = 4, .dport = OTHER_PORT, .payload = PING},
     XDP_PASS,
     C(passed_not_r2p2)},
    {"v6 wrong port",
     {.family = 6, .dport = OTHER_PORT, .payload = PING},
     XDP_PASS,
     C(passed_not_r2p2)},
    {"wrong port, malformed payload",
     {.family = 4, .dport = OTHER_PORT, .payload = "00"},
     XDP_PASS,
     C(passed_not_r2p2)},
    {"v4 TCP", {.family = 4, .proto = 6, .payload = PING}, XDP_PASS, C(passed_not_r2p2)},
    {"v6 TCP", {.family = 6, .proto = 6, .payload = PING}, XDP_PASS, C(passed_not_r2p2)},
    {"v6 no next header",
     {.family = 6, .proto = 59, .payload = PING},
     XDP_PASS,
     C(passed_not_r2p2)},
    {"ARP", {.family = 4, .ethertype = ETH_P_ARP, .payload = PING}, XDP_PASS, C(passed_not_r2p2)},

    {"runt: Ethernet only", {.family = 4, .payload = PING, .cut_to = 14}, XDP_PASS, C(passed_runt)},
    {"runt: VLAN tag cut",
     {.family = 4, .tpid = ETH_P_8021Q, .payload = PING, .cut_to = 16},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv4 header cut",
     {.family = 4, .payload = PING, .cut_to = 14 + 19},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv4 options cut",
     {.family = 4, .ip_opts = 8, .payload = PING, .cut_to = 14 + 24},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv4 IHL 4", {.family = 4, .ihl = 4, .payload = PING}, XDP_PASS, C(passed_runt)},
    {"runt: IPv6 header cut",
     {.family = 6, .payload = PING, .cut_to = 14 + 39},
     XDP_PASS,
     C(passed_runt)},
    {"runt: UDP header cut (v4)",
     {.family = 4, .payload = "", .cut_to = 14 + 20 + 7, .ip_len_delta = -1},
     XDP_PASS,
     C(passed_runt)},
    {"runt: UDP header cut (v6)",
     {.family = 6, .payload = "", .cut_to = 14 + 40 + 4, .ip_len_delta = -4},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv4 tot_len beyond frame",
     {.family = 4, .payload = PING, .ip_len_delta = 1},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv4 tot_len < IHL",
     {.family = 4, .payload = PING, .ip_len_delta = -21},
     XDP_PASS,
     C(passed_runt)},
    {"runt: IPv6 payload_len beyond frame",
     {.family = 6, .payload = PING, .ip_len_delta = 1},
     XDP_PASS,
     C(passed_runt)},
    {"runt: frame cut inside R2P2 header",
     {.family = 4, .payload = PING, .cut_to = 14 + 28 + 4},
     XDP_PASS,
     C(passed_runt)},

    {"v4 first fragment (MF)",
     {.family = 4, .frag_off = 0x2000, .payload = PING},
     XDP_PASS,
     C(passed_fragment)},
    {"v4 middle fragment",
     {.family = 4, .frag_off = 0x2000 | 100, .payload = PING},
     XDP_PASS,
     C(passed_fragment)},
    {"v4 last fragment",
     {.family = 4, .frag_off = 100, .payload = PING},
     XDP_PASS,
     C(passed_fragment)},
    {"v4 fragment to another port",
     {.family = 4, .frag_off = 0x2000, .dport = OTHER_PORT, .payload = PING},
     XDP_PASS,
     C(passed_fragment)},

    {"v6 fragment header",
     {.family = 6, .proto = 44, .payload = PING},
     XDP_PASS,
     C(passed_ipv6_ext)},
    {"v6 hop-by-hop",
     {.family = 6, .proto = HOPOPTS, .payload = PING},
     XDP_PASS,
     C(passed_ipv6_ext)},
    {"v6 routing header",
     {.family = 6, .proto = 43, .payload = PING},
     XDP_PASS,
     C(passed_ipv6_ext)},
    {"v6 destination options",
     {.family = 6, .proto = 60, .payload = PING},
     XDP_PASS,
     C(passed_ipv6_ext)},

    {"empty UDP payload", {.family = 4, .payload = ""}, XDP_DROP, C(dropped_malformed)},
    {"truncated R2P2 header (7 bytes)",
     {.family = 4, .payload = "cc 08 00 c0 12 34 00"},
     XDP_DROP,
     C(dropped_malformed)},
    {"truncated R2P2 header (1 byte, v6)",
     {.family = 6, .payload = "cc"},
     XDP_DROP,
     C(dropped_malformed)},
    {"bad magic",
     {.family = 4, .payload = "cd 08 00 c0 12 34 00 01 41"},
     XDP_DROP,
     C(dropped_malformed)},
    {"zero header",
     {.family = 6, .payload = "00 00 00 00 00 00 00 00"},
     XDP_DROP,
     C(dropped_malformed)},
    {"bad header_size 0",
     {.family = 4, .payload = "cc 00 00 c0 12 34 00 01 41"},
     XDP_DROP,
     C(dropped_malformed)},
    {"bad header_size 9",
     {.family = 4, .payload = "cc 09 00 c0 12 34 00 01 41 41"},
     XDP_DROP,
     C(dropped_malformed)},
    {"unknown type 5",
     {.family = 4, .payload = "cc 08 50 c0 12 34 00 01 41"},
     XDP_DROP,
     C(dropped_malformed)},
    {"unknown type 15 (v6, VLAN)",
     {.family = 6, .tpid = ETH_P_8021Q, .payload = "cc 08 f0 c0 12 34 00 01 41"},
     XDP_DROP,
     C(dropped_malformed)},
    {"UDP length longer than IP payload",
     {.family = 4, .payload = PING, .udp_len_delta = 4, .pad_to = 80},
     XDP_DROP,
     C(dropped_malformed)},
    {"UDP length shorter than IP payload",
     {.family = 4, .payload = PING, .udp_len_delta = -4},
     XDP_DROP,
     C(dropped_malformed)},
    {"UDP length 8 with a payload",
     {.family = 6, .payload = PING, .udp_len_delta = -12},
     XDP_DROP,
     C(dropped_malformed)},
    {"UDP length 0",
     {.family = 4, .payload = PING, .udp_len_delta = -20},
     XDP_DROP,
     C(dropped_malformed)},
    {"UDP length lies (v6, bigger)",
     {.family = 6, .payload = PING, .udp_len_delta = 100},
     XDP_DROP,
     C(dropped_malformed)},
};
#define NUM_CASES (sizeof(table) / sizeof(table[0]))

/* host_classify runs bpf/parsing.h on the host the way the program does (port PORT only). */
static size_t host_classify(__u8 *buf, size_t len, __u32 *verdict)
{
	struct r2p2_pkt pkt;
	__be16 rid;

	*verdict = XDP_PASS;
	switch (r2p2_parse(buf, buf + len, &pkt)) {
	case R2P2_PARSE_UDP:
		break;
	case R2P2_PARSE_FRAGMENT:
		return C(passed_fragment);
	case R2P2_PARSE_IPV6_EXT:
		return C(passed_ipv6_ext);
	case R2P2_PARSE_RUNT:
		return C(passed_runt);
	default:
		return C(passed_not_r2p2);
	}
	if (pkt.dport != htons(PORT))
		return C(passed_not_r2p2);
	if (!r2p2_check(&pkt, buf + len, &rid)) {
		*verdict = XDP_DROP;
		return C(dropped_malformed);
	}
	return C(no_socket);
}

/* ---- the program ------------------------------------------------------------------ */

static struct r2p2_bpf *skel;

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static void add_port(__u16 port)
{
	struct r2p2_port_key key = {.port = port};
	struct r2p2_port_val val = {.service = 1};

	cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_ports, &key, sizeof(key), &val,
					  sizeof(val), BPF_ANY),
		     0);
}

static void set_socks(__u32 queue, __u32 num)
{
	struct r2p2_qconf qc = {.num_socks = num};

	cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_qconf, &queue, sizeof(queue), &qc,
					  sizeof(qc), BPF_ANY),
		     0);
}

static void setup(void)
{
	libbpf_set_print(quiet_print);
	skel = r2p2_bpf__open_and_load();
	cr_assert(skel, "loading the skeleton: %s", strerror(errno));
	add_port(PORT);
	set_socks(0, 4);
}

static void teardown(void)
{
	r2p2_bpf__destroy(skel);
	skel = NULL;
}

static void stats_sum(struct r2p2_stats *out)
{
	int ncpu = libbpf_num_possible_cpus(), c;
	struct r2p2_stats *v = calloc((size_t)ncpu, sizeof(*v));
	__u32 zero = 0;

	cr_assert(v);
	cr_assert_eq(bpf_map__lookup_elem(skel->maps.r2p2_stats, &zero, sizeof(zero), v,
					  (size_t)ncpu * sizeof(*v), 0),
		     0);
	memset(out, 0, sizeof(*out));
	for (c = 0; c < ncpu; c++) {
		out->steered += v[c].steered;
		out->no_socket += v[c].no_socket;
		out->dropped_malformed += v[c].dropped_malformed;
		out->passed_not_r2p2 += v[c].passed_not_r2p2;
		out->passed_fragment += v[c].passed_fragment;
		out->passed_ipv6_ext += v[c].passed_ipv6_ext;
		out->passed_runt += v[c].passed_runt;
		out->reserved += v[c].reserved;
	}
	free(v);
}

static __u64 field(const struct r2p2_stats *s, size_t off)
{
	__u64 v;

	memcpy(&v, (const char *)s + off, sizeof(v));
	return v;
}

static const char *field_name(size_t off)
{
	static const char *names[] = {"steered",	 "no_socket",	    "dropped_malformed",
				      "passed_not_r2p2", "passed_fragment", "passed_ipv6_ext",
				      "passed_runt",	 "reserved"};
	return names[off / sizeof(__u64)];
}

/* run feeds one frame to the program (not live); returns its verdict. */
static __u32 run(const __u8 *buf, size_t len, __u32 flags)
{
	struct xdp_md ctx = {.data_end = (__u32)len, .rx_queue_index = 0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .data_size_in = (__u32)len,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1, .flags = flags);
	int rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_xdp), &opts);

	cr_assert_eq(rc, 0, "bpf_prog_test_run_opts: %s", strerror(-rc));
	return opts.retval;
}

/* expect_one runs a frame and checks the verdict and that exactly counter `off` moved. */
static void expect_one(const char *name, const __u8 *buf, size_t len, __u32 verdict, size_t off)
{
	struct r2p2_stats before, after;
	size_t f;
	__u32 got;

	stats_sum(&before);
	got = run(buf, len, 0);
	stats_sum(&after);
	cr_expect_eq(got, verdict, "%s: verdict %u, expected %u", name, got, verdict);
	for (f = 0; f < sizeof(before); f += sizeof(__u64)) {
		__u64 d = field(&after, f) - field(&before, f);

		cr_expect_eq(d, f == off ? 1u : 0u, "%s: %s moved by %llu, expected %d", name,
			     field_name(f), (unsigned long long)d, f == off);
	}
}

Test(bpf, table, .init = setup, .fini = teardown)
{
	struct frame fr;
	__u8 *buf = fr.b;
	size_t i;

	for (i = 0; i < NUM_CASES; i++) {
		size_t len = build(&table[i].s, buf, sizeof(fr.b));

		expect_one(table[i].name, buf, len, table[i].verdict, table[i].counter);
	}
}

Test(bpf, more_ports_and_queue_without_sockets, .init = setup, .fini = teardown)
{
	struct spec s = {.family = 4, .dport = OTHER_PORT, .payload = PING};
	struct frame fr;
	__u8 *buf = fr.b;
	size_t len = build(&s, buf, sizeof(fr.b));

	expect_one("port not yet served", buf, len, XDP_PASS, C(passed_not_r2p2));
	add_port(OTHER_PORT);
	expect_one("port served", buf, len, XDP_PASS, C(no_socket));
	set_socks(0, 0);
	expect_one("queue with 0 sockets", buf, len, XDP_PASS, C(no_socket));
	set_socks(0, R2P2_XSK_PER_QUEUE + 1);
	expect_one("queue with too many sockets", buf, len, XDP_PASS, C(no_socket));
}

/* ---- the same table on the host (bpf/parsing.h compiled natively) ---------------- */

Test(parsing, host_agrees_with_table)
{
	struct frame fr;
	__u8 *buf = fr.b;
	size_t i;

	for (i = 0; i < NUM_CASES; i++) {
		size_t len = build(&table[i].s, buf, sizeof(fr.b)), off;
		__u32 verdict;
		__u8 *copy = frame_dup(buf, len);

		cr_assert(copy);
		off = host_classify(copy, len, &verdict);
		cr_expect_eq(off, table[i].counter, "%s: host says %s, table says %s",
			     table[i].name, field_name(off), field_name(table[i].counter));
		cr_expect_eq(verdict, table[i].verdict, "%s: host verdict %u", table[i].name,
			     verdict);
		frame_free(copy);
	}
}

Test(parsing, runt_ethernet_below_14_bytes)
{
	static const __u8 frame[] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08};
	size_t len;
	__u32 verdict;

	for (len = 0; len <= sizeof(frame); len++) {
		__u8 *copy = frame_dup(frame, len);

		cr_assert(copy);
		cr_expect_eq(host_classify(copy, len, &verdict), C(passed_runt), "%zu bytes", len);
		frame_free(copy);
	}
}

Test(parsing, every_cut_of_a_valid_frame_is_safe)
{
	static const struct spec specs[] = {
	    {.family = 4, .tpid = ETH_P_8021Q, .ip_opts = 8, .payload = PING},
	    {.family = 6, .tpid = ETH_P_8021AD, .payload = PING},
	};
	struct frame fr;
	__u8 *buf = fr.b;
	size_t i, cut;

	for (i = 0; i < 2; i++) {
		size_t len = build(&specs[i], buf, sizeof(fr.b));

		for (cut = 0; cut <= len; cut++) {
			__u8 *copy = frame_dup(buf, cut);
			__u32 verdict;
			size_t off;

			cr_assert(copy);
			off = host_classify(copy, cut, &verdict);
			cr_expect_eq(off, cut == len ? C(no_socket) : C(passed_runt),
				     "spec %zu cut at %zu of %zu: %s", i, cut, len,
				     field_name(off));
			frame_free(copy);
		}
	}
}

/* ---- steering: the hash and slot rule --------------------------------------------- */

static void v4(__be32 out[4], const char *a)
{
	struct in_addr in;

	cr_assert_eq(inet_pton(AF_INET, a, &in), 1);
	r2p2_v4mapped(out, in.s_addr);
}

Test(steering, slot_rule)
{
	cr_expect_eq(r2p2_xsk_slot(0, 7, 4), 3);
	cr_expect_eq(r2p2_xsk_slot(2, 7, 4), 2 * R2P2_XSK_PER_QUEUE + 3);
	cr_expect_eq(r2p2_xsk_slot(R2P2_MAX_QUEUES - 1, 5, R2P2_XSK_PER_QUEUE),
		     R2P2_XSK_SLOTS - R2P2_XSK_PER_QUEUE + 5);
	cr_expect_eq(r2p2_xsk_slot(R2P2_MAX_QUEUES, 7, 4), -1);
	cr_expect_eq(r2p2_xsk_slot(0, 7, 0), -1);
	cr_expect_eq(r2p2_xsk_slot(0, 7, R2P2_XSK_PER_QUEUE + 1), -1);
}

Test(steering, v4_is_hashed_as_v4_mapped_v6)
{
	__be32 a[4], b[4];

	v4(a, "192.0.2.7");
	cr_assert_eq(inet_pton(AF_INET6, "::ffff:192.0.2.7", b), 1);
	cr_expect_eq(r2p2_flow_hash(a, htons(1234), htons(5)),
		     r2p2_flow_hash(b, htons(1234), htons(5)));
}

Test(steering, hash_depends_on_every_input)
{
	__be32 a[4], b[4];
	__u32 h;

	v4(a, "10.0.0.1");
	v4(b, "10.0.0.2");
	h = r2p2_flow_hash(a, htons(40000), htons(1));
	cr_expect_neq(h, r2p2_flow_hash(b, htons(40000), htons(1)));
	cr_expect_neq(h, r2p2_flow_hash(a, htons(40001), htons(1)));
	cr_expect_neq(h, r2p2_flow_hash(a, htons(40000), htons(2)));
}

Test(steering, ten_thousand_rids_spread_over_4_sockets)
{
	unsigned count[4] = {0}, rid, i;
	__be32 a[4];

	v4(a, "10.77.1.1");
	for (rid = 0; rid < 10000; rid++)
		count[r2p2_xsk_slot(0, r2p2_flow_hash(a, htons(40000), htons((__u16)rid)), 4)]++;
	for (i = 0; i < 4; i++)
		cr_expect(count[i] >= 2250 && count[i] <= 2750, "socket %u got %u of 10000", i,
			  count[i]);
}

Test(steering, ten_thousand_ports_spread_over_4_sockets)
{
	unsigned count[4] = {0}, port, i;
	__be32 a[4];

	cr_assert_eq(inet_pton(AF_INET6, "fd77:1::1", a), 1);
	for (port = 30000; port < 40000; port++)
		count[r2p2_xsk_slot(3, r2p2_flow_hash(a, htons((__u16)port), htons(1)), 4) -
		      3 * R2P2_XSK_PER_QUEUE]++;
	for (i = 0; i < 4; i++)
		cr_expect(count[i] >= 2250 && count[i] <= 2750, "socket %u got %u of 10000", i,
			  count[i]);
}

/* ---- real AF_XDP sockets on the loopback of a private network namespace ----------- */

#define NUM_XSK 4
#define FRAME_SIZE 2048
#define NUM_FRAMES 256
#define RING_SIZE 256

struct ring {
	__u32 *producer, *consumer;
	void *descs;
	void *map;
	size_t map_len;
};

struct xsk {
	int fd;
	struct ring rx;
};

static void *umem;
static struct ring fill;
static struct xsk xsks[NUM_XSK];

static void ring_map(int fd, const struct xdp_ring_offset *off, size_t desc_size, off_t pgoff,
		     struct ring *r)
{
	r->map_len = off->desc + RING_SIZE * desc_size;
	r->map =
	    mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	cr_assert_neq(r->map, MAP_FAILED, "mmap ring: %s", strerror(errno));
	r->producer = (__u32 *)((char *)r->map + off->producer);
	r->consumer = (__u32 *)((char *)r->map + off->consumer);
	r->descs = (char *)r->map + off->desc;
}

static void fill_put(__u64 addr)
{
	__u32 prod = *fill.producer;

	((__u64 *)fill.descs)[prod & (RING_SIZE - 1)] = addr;
	__atomic_store_n(fill.producer, prod + 1, __ATOMIC_RELEASE);
}

/* xsk_create binds socket `i` to queue 0 of `ifindex`; socket 0 owns the UMEM. */
static void xsk_create(int i, int ifindex)
{
	struct sockaddr_xdp sxdp = {.sxdp_family = AF_XDP, .sxdp_ifindex = (__u32)ifindex};
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	int fd, size = RING_SIZE, f;

	fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0, "socket(AF_XDP): %s", strerror(errno));
	if (i == 0) {
		struct xdp_umem_reg mr = {.addr = (__u64)(unsigned long)umem,
					  .len = NUM_FRAMES * FRAME_SIZE,
					  .chunk_size = FRAME_SIZE};

		cr_assert_eq(setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)), 0,
			     "XDP_UMEM_REG: %s", strerror(errno));
		cr_assert_eq(setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &size, sizeof(size)), 0);
		cr_assert_eq(setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &size, sizeof(size)),
			     0);
	}
	cr_assert_eq(setsockopt(fd, SOL_XDP, XDP_RX_RING, &size, sizeof(size)), 0);
	cr_assert_eq(getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen), 0);
	if (i == 0) {
		ring_map(fd, &off.fr, sizeof(__u64), XDP_UMEM_PGOFF_FILL_RING, &fill);
		for (f = 0; f < NUM_FRAMES && f < RING_SIZE; f++)
			fill_put((__u64)f * FRAME_SIZE);
		sxdp.sxdp_flags = XDP_COPY;
	} else {
		sxdp.sxdp_flags = XDP_SHARED_UMEM;
		sxdp.sxdp_shared_umem_fd = (__u32)xsks[0].fd;
	}
	ring_map(fd, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING, &xsks[i].rx);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sxdp, sizeof(sxdp)), 0, "bind xsk %d: %s", i,
		     strerror(errno));
	xsks[i].fd = fd;
}

/* xsk_take returns the length of the frame socket `i` received next (its frame goes back to
 * the fill ring, its bytes to `out`), or -1 when its RX ring is empty. */
static int xsk_take(int i, __u8 *out, size_t cap)
{
	struct ring *r = &xsks[i].rx;
	__u32 cons = *r->consumer, prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	struct xdp_desc d;

	if (cons == prod)
		return -1;
	d = ((struct xdp_desc *)r->descs)[cons & (RING_SIZE - 1)];
	if (d.len <= cap)
		memcpy(out, (char *)umem + d.addr, d.len);
	__atomic_store_n(r->consumer, cons + 1, __ATOMIC_RELEASE);
	fill_put(d.addr - d.addr % FRAME_SIZE);
	return (int)d.len;
}

/* xsk_setup: a private network namespace, NUM_XSK sockets on its loopback's queue 0. */
static void xsk_setup(void)
{
	int i, lo;

	setup();
	cr_assert_eq(unshare(CLONE_NEWNET), 0, "unshare(CLONE_NEWNET): %s", strerror(errno));
	lo = (int)if_nametoindex("lo");
	cr_assert_gt(lo, 0);
	umem = mmap(NULL, NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	cr_assert_neq(umem, MAP_FAILED);
	for (i = 0; i < NUM_XSK; i++)
		xsk_create(i, lo);
}

static void xsk_put(int slot, int i)
{
	__u32 key = (__u32)slot, fd = (__u32)xsks[i].fd;

	cr_assert_eq(
	    bpf_map__update_elem(skel->maps.r2p2_xsks, &key, sizeof(key), &fd, sizeof(fd), BPF_ANY),
	    0, "r2p2_xsks[%d]: %s", slot, strerror(errno));
}

/* host_slot: the slot the host computes for a frame from `src_last`, `sport`, `rid` (v4). */
static int host_slot(__u8 src_last, __u16 sport, __u16 rid, __u32 num_socks)
{
	__be32 a[4];

	r2p2_v4mapped(a, htonl(0x0a000000 | src_last));
	return r2p2_xsk_slot(0, r2p2_flow_hash(a, htons(sport), htons(rid)), num_socks);
}

static size_t build_req(__u8 *buf, size_t cap, int family, __u8 src_last, __u16 sport, __u16 rid,
			__u8 flags, __u16 p_order, size_t fill_len)
{
	char hdr[64];
	struct spec s = {.family = family,
			 .src_last = src_last,
			 .sport = sport,
			 .payload = hdr,
			 .fill = fill_len};

	snprintf(hdr, sizeof(hdr), "cc 08 00 %02x %02x %02x %02x %02x", flags, rid >> 8, rid & 0xff,
		 p_order >> 8, p_order & 0xff);
	return build(&s, buf, cap);
}

Test(steering, verdict_follows_host_slot, .init = xsk_setup, .fini = teardown)
{
	struct frame fr;
	__u8 *buf = fr.b;
	unsigned rid, redirected = 0;

	/* Only slot 0 of queue 0 holds a socket: the program redirects exactly the
	 * packets the host's hash sends to slot 0, and counts the rest as no_socket. */
	xsk_put(0, 0);
	for (rid = 0; rid < 200; rid++) {
		size_t len = build_req(buf, sizeof(fr.b), 4, 1, 40000, (__u16)rid, 0xc0, 1, 4);
		int slot = host_slot(1, 40000, (__u16)rid, 4);
		char name[64];

		snprintf(name, sizeof(name), "rid %u (host slot %d)", rid, slot);
		expect_one(name, buf, len, slot == 0 ? XDP_REDIRECT : XDP_PASS,
			   slot == 0 ? C(steered) : C(no_socket));
		redirected += slot == 0;
	}
	cr_expect(redirected > 20 && redirected < 80, "%u of 200 went to slot 0", redirected);
}

Test(steering, live_redirect_reaches_the_predicted_socket, .init = xsk_setup, .fini = teardown)
{
	struct frame fr;
	__u8 *buf = fr.b, got[2048];
	struct r2p2_stats before, after;
	int i, k, n, who;
	unsigned rid, seen[NUM_XSK] = {0};

	for (i = 0; i < NUM_XSK; i++)
		xsk_put(i, i);
	for (rid = 0; rid < 64; rid++) {
		/* one three-packet message: first, middle, last */
		static const __u8 flags[3] = {0x80, 0x00, 0x40};
		static const __u16 order[3] = {3, 1, 2};
		int want = host_slot(5, 41000, (__u16)rid, NUM_XSK);

		for (k = 0; k < 3; k++) {
			size_t len = build_req(buf, sizeof(fr.b), 4, 5, 41000, (__u16)rid, flags[k],
					       order[k], k ? 1000 : 14);
			LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf,
				    .data_size_in = (__u32)len, .repeat = 1,
				    .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
			int rc;

			stats_sum(&before);
			rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_xdp), &opts);
			if (rc == -EINVAL && rid == 0 && k == 0)
				cr_skip_test("this kernel has no live-frame test_run for XDP");
			cr_assert_eq(rc, 0, "live test_run: %s", strerror(-rc));
			stats_sum(&after);
			cr_expect_eq(after.steered - before.steered, 1,
				     "rid %u packet %d not steered", rid, k);
			who = -1;
			for (i = 0; i < NUM_XSK; i++) {
				n = xsk_take(i, got, sizeof(got));
				if (n < 0)
					continue;
				cr_expect_eq(who, -1, "rid %u packet %d reached two sockets", rid,
					     k);
				who = i;
				cr_expect_eq((size_t)n, len, "rid %u packet %d: %d bytes", rid, k,
					     n);
				cr_expect(!memcmp(got, buf, len), "rid %u packet %d: bytes differ",
					  rid, k);
			}
			cr_expect_eq(who, want, "rid %u packet %d reached socket %d, host says %d",
				     rid, k, who, want);
			if (who >= 0)
				seen[who]++;
		}
	}
	for (i = 0; i < NUM_XSK; i++)
		cr_expect_gt(seen[i], 0, "socket %d never chosen in 64 messages", i);
}

/* ---- main: skip honestly without root/BPF ----------------------------------------- */

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	struct r2p2_bpf *probe;
	int result = 0;

	libbpf_set_print(quiet_print);
	probe = r2p2_bpf__open_and_load();
	if (!probe) {
		int e = errno;

		if (e == EPERM || e == EACCES || e == ENOSYS || e == EOPNOTSUPP) {
			printf(
			    "SKIPPED: cannot load BPF programs here (%s); needs root and a kernel "
			    "with BPF\n",
			    strerror(e));
			return 77;
		}
		fprintf(stderr, "test_bpf: loading the XDP program failed: %s\n", strerror(e));
		return 1;
	}
	r2p2_bpf__destroy(probe);

	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
