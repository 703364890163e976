// SPDX-License-Identifier: MIT
/*
 * test_router: the router's XDP program (bpf/router.bpf.c) under BPF_PROG_TEST_RUN, loaded
 * through its skeleton. A REQUEST's first packet to a routed service comes out rewritten
 * (destination MAC, IP and port; source untouched) with IP and UDP checksums that verify
 * when recomputed from scratch; each policy chooses as it should (round-robin order,
 * random covers all, power of two never takes the most loaded, JBSQ takes the least loaded
 * and hands the request to user space when all hold n); FEEDBACK gives the count back only
 * from the right server; retransmissions stick to their server while it is up, in flight
 * or answered (uncounted, so the server resends from its cache); everything
 * else (other services, non-first packets, malformed, truncated, IPv6, fragments) is passed
 * to the kernel, each bumping exactly one counter. Needs root and BPF; exit 77 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include <r2p2/router_abi.h>

#include "parsing.h"
#include "router.skel.h"

#define SVC_ADDR "10.9.0.100"
#define SVC_PORT 8000
#define CLIENT_ADDR "10.9.0.1"
#define CLIENT_PORT 40000
#define NUM_SRV 3
#define IFINDEX 1 /* lo: test_run needs an existing device for ingress_ifindex */

static const __u8 router_mac[6] = {0x02, 0, 0, 0, 0, 0x64};
static const __u8 client_mac[6] = {0x02, 0, 0, 0, 0, 0x01};

static struct router_bpf *skel;

/* ---- frames ----------------------------------------------------------------------- */

/* Frames start 2 bytes past an 8-byte boundary (NET_IP_ALIGN), so the IP header is
 * 4-byte aligned on the host as it is in the kernel. */
struct frame {
	__u8 pad[2];
	__u8 b[2048];
} __attribute__((aligned(8)));
#define FRAME_LEN sizeof(((struct frame *)0)->b)

struct fspec {
	__u8 type;  /* R2P2 type */
	__u8 flags; /* R2P2 flags (0: F|L) */
	__u16 rid;
	const char *src;  /* 0: CLIENT_ADDR */
	const char *dst;  /* 0: SVC_ADDR */
	__u16 sport;	  /* 0: CLIENT_PORT */
	__u16 dport;	  /* 0: SVC_PORT */
	int vlan;	  /* one 802.1Q tag */
	int no_udp_csum;  /* leave the UDP checksum 0 */
	const __u8 *body; /* after the R2P2 header (0: "ping") */
	size_t body_len;
	int raw_payload; /* body is the whole UDP payload (no R2P2 header) */
	size_t cut_to;	 /* frame cut to this length */
	__u16 frag_off;	 /* host byte order */
	int ihl;	 /* override */
};

static __u32 sum16(const void *p, size_t len, __u32 s)
{
	const __u8 *b = p;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (__u32)(b[i] << 8 | b[i + 1]);
	if (len & 1)
		s += (__u32)(b[len - 1] << 8);
	return s;
}

static __u16 fold(__u32 s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* udp_csum computes the UDP checksum (host byte order) of the datagram at `udp`. */
static __u16 udp_csum(const struct iphdr *ip, const struct udphdr *udp, size_t udp_len)
{
	__u32 s = sum16(&ip->saddr, 8, 0) + R2P2_PROTO_UDP + (__u32)udp_len;
	struct udphdr copy = *udp;
	__u16 c;

	copy.check = 0;
	s = sum16(&copy, sizeof(copy), s);
	s = sum16(udp + 1, udp_len - sizeof(copy), s);
	c = (__u16)~fold(s);
	return c ? c : 0xffff;
}

/* build writes the frame `f` describes to `buf` (IP-aligned) and returns its length. */
static size_t build(const struct fspec *f, __u8 *buf, size_t cap)
{
	struct ethhdr *eth = (struct ethhdr *)buf;
	size_t off = sizeof(*eth), plen = 0, udp_len;
	__u8 payload[1600];
	struct iphdr *ip;
	struct udphdr *udp;

	memset(buf, 0, cap);
	memcpy(eth->h_dest, router_mac, 6);
	memcpy(eth->h_source, client_mac, 6);
	eth->h_proto = htons(ETH_P_IP);
	if (f->vlan) {
		eth->h_proto = htons(ETH_P_8021Q);
		buf[off + 1] = 42;
		buf[off + 2] = 0x08;
		off += 4;
	}
	if (!f->raw_payload) {
		struct r2p2_hdr h = {.magic = R2P2_MAGIC,
				     .header_size = R2P2_HDR_LEN,
				     .type_policy = (__u8)(f->type << 4),
				     .flags = f->flags ? f->flags : R2P2_F_FIRST | R2P2_F_LAST,
				     .rid = htons(f->rid),
				     .p_order = htons(1)};
		memcpy(payload, &h, sizeof(h));
		plen = sizeof(h);
	}
	if (f->body) {
		memcpy(payload + plen, f->body, f->body_len);
		plen += f->body_len;
	} else if (!f->raw_payload) {
		memcpy(payload + plen, "ping", 4);
		plen += 4;
	}
	udp_len = sizeof(*udp) + plen;
	ip = (struct iphdr *)(buf + off);
	ip->version = 4;
	ip->ihl = f->ihl ? (unsigned)f->ihl : 5;
	ip->tot_len = htons((__u16)(20 + udp_len));
	ip->ttl = 64;
	ip->frag_off = htons(f->frag_off);
	ip->protocol = R2P2_PROTO_UDP;
	inet_pton(AF_INET, f->src ? f->src : CLIENT_ADDR, &ip->saddr);
	inet_pton(AF_INET, f->dst ? f->dst : SVC_ADDR, &ip->daddr);
	ip->check = htons((__u16)~fold(sum16(ip, 20, 0)));
	off += 20;
	udp = (struct udphdr *)(buf + off);
	udp->source = htons(f->sport ? f->sport : CLIENT_PORT);
	udp->dest = htons(f->dport ? f->dport : SVC_PORT);
	udp->len = htons((__u16)udp_len);
	memcpy(udp + 1, payload, plen);
	if (!f->no_udp_csum)
		udp->check = htons(udp_csum(ip, udp, udp_len));
	off += udp_len;
	if (off < 60)
		off = 60; /* Ethernet minimum */
	if (f->cut_to)
		off = f->cut_to;
	return off;
}

/* ---- the program and its maps ----------------------------------------------------- */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static void srv_addr(int i, __be32 *out)
{
	char a[32];

	snprintf(a, sizeof(a), "10.9.1.%d", i + 1);
	inet_pton(AF_INET, a, out);
}

static void set_server(__u32 slot, int up, __u32 ifindex)
{
	struct r2p2_rt_server s = {.port = htons((__u16)(9000 + slot)),
				   .up = (__u8)up,
				   .mac = {0x02, 0, 0, 0, 1, (__u8)slot},
				   .ifindex = ifindex};

	memcpy(s.src_mac, router_mac, 6);
	srv_addr((int)slot, &s.addr);
	cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_rt_srvs, &slot, sizeof(slot), &s,
					  sizeof(s), BPF_ANY),
		     0);
}

static void set_service(__u32 policy, __u32 bound, __u32 num)
{
	struct r2p2_rt_svc_key k = {.port = htons(SVC_PORT)};
	struct r2p2_rt_svc v = {.id = 3, .policy = policy, .bound = bound, .num_servers = num};

	inet_pton(AF_INET, SVC_ADDR, &k.addr);
	for (__u32 i = 0; i < num; i++)
		v.slots[i] = i;
	cr_assert_eq(
	    bpf_map__update_elem(skel->maps.r2p2_rt_svcs, &k, sizeof(k), &v, sizeof(v), BPF_ANY),
	    0);
}

static void set_load(__u32 slot, __s32 n)
{
	struct r2p2_rt_load l = {.outstanding = n};

	cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_rt_load, &slot, sizeof(slot), &l,
					  sizeof(l), BPF_ANY),
		     0);
}

static struct r2p2_rt_load get_load(__u32 slot)
{
	struct r2p2_rt_load l;

	cr_assert_eq(
	    bpf_map__lookup_elem(skel->maps.r2p2_rt_load, &slot, sizeof(slot), &l, sizeof(l), 0),
	    0);
	return l;
}

static void set_queued(__u32 id, __u32 n)
{
	struct r2p2_rt_fifo q = {.queued = n};

	cr_assert_eq(
	    bpf_map__update_elem(skel->maps.r2p2_rt_fifo, &id, sizeof(id), &q, sizeof(q), BPF_ANY),
	    0);
}

static void setup_policy(__u32 policy, __u32 bound)
{
	libbpf_set_print(quiet_print);
	skel = router_bpf__open_and_load();
	cr_assert(skel, "loading the skeleton: %s", strerror(errno));
	for (__u32 i = 0; i < NUM_SRV; i++)
		set_server(i, 1, IFINDEX);
	set_service(policy, bound, NUM_SRV);
}

static void setup_rr(void)
{
	setup_policy(R2P2_RT_RR, 0);
}
static void setup_random(void)
{
	setup_policy(R2P2_RT_RANDOM, 0);
}
static void setup_p2c(void)
{
	setup_policy(R2P2_RT_P2C, 0);
}
static void setup_jbsq(void)
{
	setup_policy(R2P2_RT_JBSQ, 2);
}

static void teardown(void)
{
	router_bpf__destroy(skel);
	skel = NULL;
}

#define NUM_STATS (sizeof(struct r2p2_rt_stats) / sizeof(__u64))
static const char *stat_names[NUM_STATS] = {
    "routed_tx",	"routed_redirect", "to_user",	       "feedback",	    "feedback_wake",
    "feedback_unknown", "passed_other",	   "passed_malformed", "passed_not_routed", "reserved"};
#define S(f) (offsetof(struct r2p2_rt_stats, f) / sizeof(__u64))

/* percpu_sum adds up the per-CPU values of entry `key` of `map` (`n` u64 counters). */
static void percpu_sum(const struct bpf_map *map, __u32 key, __u64 *out, size_t n)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *v = calloc((size_t)ncpu * n, sizeof(*v));

	cr_assert(v);
	cr_assert_eq(bpf_map__lookup_elem(map, &key, sizeof(key), v, (size_t)ncpu * n * 8, 0), 0);
	memset(out, 0, n * sizeof(*out));
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < n; i++)
			out[i] += v[(size_t)c * n + i];
	free(v);
}

struct pstats {
	__u64 dispatched, resent, slow_path, no_server;
};

static struct pstats pstats(__u32 policy)
{
	struct pstats p;

	percpu_sum(skel->maps.r2p2_rt_pstats, policy, (__u64 *)&p, 4);
	return p;
}

struct out {
	__u32 verdict;
	size_t len;
	__u8 pad[2]; /* b is IP-aligned, as a frame */
	__u8 b[2048];
} __attribute__((aligned(8)));

/* run feeds `len` bytes at `buf` to the program, arriving on IFINDEX; the frame as the
 * program left it goes to `o`. Checks that exactly the counter `want` moved. */
static void run_expect(const char *name, const __u8 *buf, size_t len, int want, struct out *o)
{
	struct xdp_md ctx = {.data_end = (__u32)len, .ingress_ifindex = IFINDEX};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .data_size_in = (__u32)len,
		    .data_out = o->b, .data_size_out = sizeof(o->b), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = 1);
	__u64 before[NUM_STATS], after[NUM_STATS];
	int rc;

	percpu_sum(skel->maps.r2p2_rt_stats, 0, before, NUM_STATS);
	rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_router), &opts);
	cr_assert_eq(rc, 0, "%s: bpf_prog_test_run_opts: %s", name, strerror(-rc));
	percpu_sum(skel->maps.r2p2_rt_stats, 0, after, NUM_STATS);
	o->verdict = opts.retval;
	o->len = opts.data_size_out;
	for (size_t i = 0; i < NUM_STATS; i++)
		cr_expect_eq(after[i] - before[i], (size_t)want == i ? 1u : 0u,
			     "%s: %s moved by %llu", name, stat_names[i],
			     (unsigned long long)(after[i] - before[i]));
}

/* request sends a first packet with `rid`; returns the verdict, and the server index the
 * rewritten frame went to in `out_srv` (-1: not rewritten). Verifies the rewrite. */
static __u32 request(__u16 rid, int *out_srv)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = rid};
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build(&f, in, FRAME_LEN);
	struct out o;

	{
		struct xdp_md ctx = {.data_end = (__u32)len, .ingress_ifindex = IFINDEX};
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = (__u32)len,
			    .data_out = o.b, .data_size_out = sizeof(o.b), .ctx_in = &ctx,
			    .ctx_size_in = sizeof(ctx), .repeat = 1);
		cr_assert_eq(
		    bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_router), &opts), 0);
		o.verdict = opts.retval;
		o.len = opts.data_size_out;
	}
	*out_srv = -1;
	if (o.verdict == XDP_TX) {
		struct iphdr *ip = (struct iphdr *)(o.b + 14);
		__be32 a;

		for (int i = 0; i < NUM_SRV; i++) {
			srv_addr(i, &a);
			if (ip->daddr == a)
				*out_srv = i;
		}
		cr_assert_geq(*out_srv, 0, "rewritten to an unknown address");
	} else {
		cr_expect(!memcmp(in, o.b, len), "a passed frame was changed");
	}
	return o.verdict;
}

/* build_feedback writes a FEEDBACK for (client, CLIENT_PORT, rid) from server `from` to
 * `buf` and returns its length. */
static size_t build_feedback(__u16 rid, int from, __u8 *buf)
{
	struct r2p2_feedback fb = {.rid = htons(rid), .port = htons(CLIENT_PORT)};
	char src[32];
	struct fspec f = {.type = R2P2_FEEDBACK,
			  .rid = rid,
			  .src = src,
			  .sport = 8000,
			  .body = (const __u8 *)&fb,
			  .body_len = sizeof(fb)};

	inet_pton(AF_INET, CLIENT_ADDR, &fb.ip);
	snprintf(src, sizeof(src), "10.9.1.%d", from + 1);
	return build(&f, buf, FRAME_LEN);
}

/* feedback sends a FEEDBACK for (client, CLIENT_PORT, rid) from server `from`. */
static __u32 feedback(__u16 rid, int from, int want_stat)
{
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build_feedback(rid, from, in);
	struct out o;

	run_expect("feedback", in, len, want_stat, &o);
	return o.verdict;
}

/* ---- rewrite and checksums ---------------------------------------------------------- */

static void check_rewrite(const struct fspec *f, int vlan)
{
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build(f, in, FRAME_LEN), l3 = 14 + (vlan ? 4 : 0);
	struct out o;
	struct iphdr *ip = (struct iphdr *)(o.b + l3), *ip0 = (struct iphdr *)(in + l3);
	struct udphdr *udp = (struct udphdr *)(o.b + l3 + 20),
		      *udp0 = (struct udphdr *)(in + l3 + 20);
	__be32 a;

	run_expect("rewrite", in, len, S(routed_tx), &o);
	cr_assert_eq(o.verdict, XDP_TX);
	cr_assert_eq(o.len, len);
	srv_addr(0, &a);
	cr_expect(!memcmp(o.b, "\x02\x00\x00\x00\x01\x00", 6), "destination MAC");
	cr_expect(!memcmp(o.b + 6, router_mac, 6), "source MAC is the router's");
	cr_expect_eq(ip->daddr, a, "destination address");
	cr_expect_eq(ip->saddr, ip0->saddr, "source address stays the client's");
	cr_expect_eq(udp->dest, htons(9000), "destination port");
	cr_expect_eq(udp->source, udp0->source, "source port stays the client's");
	cr_expect_eq(fold(sum16(ip, 20, 0)), 0xffff, "IP header checksum verifies");
	if (f->no_udp_csum) {
		cr_expect_eq(udp->check, 0, "no UDP checksum stays none");
	} else {
		__u16 want = udp_csum(ip, udp, ntohs(udp->len));

		cr_expect_eq(ntohs(udp->check), want, "UDP checksum %04x, recomputed %04x",
			     ntohs(udp->check), want);
	}
	cr_expect(!memcmp(o.b + l3 + 28, in + l3 + 28, len - l3 - 28), "payload untouched");
	cr_expect_eq(get_load(0).outstanding, 1, "outstanding counted");
	cr_expect_eq(get_load(0).dispatched, 1, "dispatched counted");
}

Test(rewrite, mac_ip_port_and_checksums, .init = setup_rr, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 0x1234};

	check_rewrite(&f, 0);
}

Test(rewrite, in_a_vlan, .init = setup_rr, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 7, .vlan = 1};

	check_rewrite(&f, 1);
}

Test(rewrite, without_udp_checksum, .init = setup_rr, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 8, .no_udp_csum = 1};

	check_rewrite(&f, 0);
}

Test(rewrite, checksums_over_many_addresses_and_payloads, .init = setup_rr, .fini = teardown)
{
	/* every rid, source and body changes the sums; each must still verify */
	for (int i = 0; i < 300; i++) {
		__u8 body[64];
		char src[32];
		struct fspec f = {.type = R2P2_REQUEST,
				  .rid = (__u16)(i * 977),
				  .src = src,
				  .sport = (__u16)(1024 + i * 131),
				  .body = body,
				  .body_len = (size_t)(i % 60)};
		struct frame in_fr;
		__u8 *in = in_fr.b;
		size_t len;
		struct out o;
		struct iphdr *ip = (struct iphdr *)(o.b + 14);
		struct udphdr *udp = (struct udphdr *)(o.b + 34);

		for (size_t k = 0; k < sizeof(body); k++)
			body[k] = (__u8)(i * 31 + k * 7);
		snprintf(src, sizeof(src), "10.%d.%d.%d", i % 200, (i * 7) % 256, 1 + i % 250);
		len = build(&f, in, FRAME_LEN);
		run_expect("many", in, len, S(routed_tx), &o);
		cr_assert_eq(fold(sum16(ip, 20, 0)), 0xffff, "case %d: IP checksum", i);
		cr_assert_eq(ntohs(udp->check), udp_csum(ip, udp, ntohs(udp->len)),
			     "case %d: UDP checksum", i);
	}
}

Test(rewrite, redirect_to_another_interface, .init = setup_rr, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 9};
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build(&f, in, FRAME_LEN);
	struct out o;

	for (__u32 i = 0; i < NUM_SRV; i++)
		set_server(i, 1, 4242);
	run_expect("redirect", in, len, S(routed_redirect), &o);
	cr_expect_eq(o.verdict, XDP_REDIRECT);
}

/* ---- policies --------------------------------------------------------------------- */

Test(policy, round_robin_order, .init = setup_rr, .fini = teardown)
{
	int srv;

	for (int i = 0; i < 9; i++) {
		cr_assert_eq(request((__u16)(100 + i), &srv), XDP_TX);
		cr_expect_eq(srv, i % NUM_SRV, "request %d went to %d", i, srv);
	}
	cr_expect_eq(pstats(R2P2_RT_RR).dispatched, 9);
	for (int i = 0; i < NUM_SRV; i++)
		cr_expect_eq(get_load((__u32)i).outstanding, 3);
}

Test(policy, random_covers_every_server, .init = setup_random, .fini = teardown)
{
	int srv, seen[NUM_SRV] = {0};

	for (int i = 0; i < 300; i++) {
		cr_assert_eq(request((__u16)i, &srv), XDP_TX);
		seen[srv]++;
	}
	for (int i = 0; i < NUM_SRV; i++)
		cr_expect(seen[i] > 50, "server %d got %d of 300", i, seen[i]);
	cr_expect_eq(pstats(R2P2_RT_RANDOM).dispatched, 300);
}

Test(policy, p2c_never_takes_the_most_loaded, .init = setup_p2c, .fini = teardown)
{
	int srv, seen[NUM_SRV] = {0};

	set_load(0, 0);
	set_load(1, 1000);
	set_load(2, 2000);
	for (int i = 0; i < 150; i++) {
		cr_assert_eq(request((__u16)i, &srv), XDP_TX);
		seen[srv]++;
	}
	cr_expect_eq(seen[2], 0, "the most loaded server was chosen %d times", seen[2]);
	cr_expect(seen[0] > seen[1], "least loaded %d, middle %d", seen[0], seen[1]);
	cr_expect_eq(get_load(0).outstanding, seen[0]);
}

Test(policy, jbsq_least_loaded_then_slow_path, .init = setup_jbsq, .fini = teardown)
{
	int srv;

	set_load(0, 1);
	set_load(1, 0);
	set_load(2, 1);
	cr_assert_eq(request(1, &srv), XDP_TX);
	cr_expect_eq(srv, 1, "least loaded is 1, got %d", srv);
	/* now 1,1,1: three more fill every server to n = 2 */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(request((__u16)(2 + i), &srv), XDP_TX);
	for (int i = 0; i < NUM_SRV; i++)
		cr_expect_eq(get_load((__u32)i).outstanding, 2, "server %d", i);
	/* all hold n: to user space, not dropped, counts unchanged */
	{
		struct fspec f = {.type = R2P2_REQUEST, .rid = 50};
		struct frame in_fr;
		__u8 *in = in_fr.b;
		size_t len = build(&f, in, FRAME_LEN);
		struct out o;

		run_expect("jbsq full", in, len, S(to_user), &o);
		cr_expect_eq(o.verdict, XDP_PASS);
		cr_expect(!memcmp(in, o.b, len), "passed unchanged");
	}
	cr_expect_eq(pstats(R2P2_RT_JBSQ).slow_path, 1);
	for (int i = 0; i < NUM_SRV; i++)
		cr_expect_eq(get_load((__u32)i).outstanding, 2, "server %d after full", i);
	/* FEEDBACK for rid 1 (at server 1) frees a place there, and the next goes to it */
	cr_expect_eq(feedback(1, 1, S(feedback)), XDP_DROP);
	cr_expect_eq(get_load(1).outstanding, 1);
	cr_expect_eq(get_load(1).feedback, 1);
	cr_assert_eq(request(51, &srv), XDP_TX);
	cr_expect_eq(srv, 1);
	cr_expect_eq(pstats(R2P2_RT_JBSQ).dispatched, 5);
}

Test(policy, queued_requests_keep_their_turn, .init = setup_jbsq, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 60};
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build(&f, in, FRAME_LEN);
	struct out o;

	set_queued(3, 1); /* service id 3 has a request waiting in user space */
	run_expect("behind the FIFO", in, len, S(to_user), &o);
	cr_expect_eq(o.verdict, XDP_PASS);
	cr_expect_eq(get_load(0).outstanding + get_load(1).outstanding + get_load(2).outstanding,
		     0);
	set_queued(3, 0);
	run_expect("FIFO empty again", in, len, S(routed_tx), &o);
}

Test(policy, no_server_up_goes_to_user_space, .init = setup_rr, .fini = teardown)
{
	struct fspec f = {.type = R2P2_REQUEST, .rid = 61};
	struct frame in_fr;
	__u8 *in = in_fr.b;
	size_t len = build(&f, in, FRAME_LEN);
	struct out o;

	set_service(R2P2_RT_RR, 0, 0);
	run_expect("no server", in, len, S(to_user), &o);
	cr_expect_eq(o.verdict, XDP_PASS);
	cr_expect_eq(pstats(R2P2_RT_RR).no_server, 1);
}

/* ---- FEEDBACK and retransmissions ----------------------------------------------------- */

Test(feedback, only_the_server_sent_to_gives_back, .init = setup_rr, .fini = teardown)
{
	int srv;
	struct frame in_fr;
	__u8 *in = in_fr.b;
	struct out o;

	cr_assert_eq(request(77, &srv), XDP_TX);
	cr_assert_eq(srv, 0);
	cr_expect_eq(feedback(77, 2, S(feedback_unknown)), XDP_DROP, "from another server");
	cr_expect_eq(get_load(0).outstanding, 1);
	cr_expect_eq(feedback(78, 0, S(feedback_unknown)), XDP_DROP, "unknown rid");
	set_queued(3, 2);
	cr_expect_eq(get_load(0).last_feedback_ns, 0, "no FEEDBACK matched yet");
	cr_expect_eq(feedback(77, 0, S(feedback_wake)), XDP_PASS, "wakes the FIFO");
	cr_expect_eq(get_load(0).outstanding, 0);
	cr_expect_gt(get_load(0).last_feedback_ns, 0, "when the server last answered");
	cr_expect_eq(feedback(77, 0, S(feedback_unknown)), XDP_DROP, "a second one is refused");
	cr_expect_eq(get_load(0).outstanding, 0, "given back once");
	/* a FEEDBACK too short to name a request */
	{
		struct fspec f = {.type = R2P2_FEEDBACK,
				  .rid = 1,
				  .body = (const __u8 *)"abc",
				  .body_len = 3,
				  .src = "10.9.1.1"};
		size_t len = build(&f, in, FRAME_LEN);

		run_expect("short feedback", in, len, S(passed_malformed), &o);
		cr_expect_eq(o.verdict, XDP_PASS);
	}
}

Test(feedback, retransmission_sticks_while_the_server_is_up, .init = setup_rr, .fini = teardown)
{
	int srv, again;

	cr_assert_eq(request(90, &srv), XDP_TX);
	cr_assert_eq(request(90, &again), XDP_TX);
	cr_expect_eq(again, srv, "retransmission went to %d, first to %d", again, srv);
	cr_expect_eq(get_load((__u32)srv).outstanding, 1, "counted once");
	cr_expect_eq(pstats(R2P2_RT_RR).resent, 1);
	/* the server is taken out: the next retransmission is routed anew, the count moves */
	set_server((__u32)srv, 0, IFINDEX);
	set_service(R2P2_RT_RR, 0, NUM_SRV - 1); /* rotation as user space leaves it */
	{
		struct r2p2_rt_svc_key k = {.port = htons(SVC_PORT)};
		struct r2p2_rt_svc v;

		inet_pton(AF_INET, SVC_ADDR, &k.addr);
		cr_assert_eq(
		    bpf_map__lookup_elem(skel->maps.r2p2_rt_svcs, &k, sizeof(k), &v, sizeof(v), 0),
		    0);
		for (__u32 i = 0, j = 0; i < NUM_SRV; i++)
			if ((int)i != srv)
				v.slots[j++] = i;
		cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_rt_svcs, &k, sizeof(k), &v,
						  sizeof(v), BPF_ANY),
			     0);
	}
	cr_assert_eq(request(90, &again), XDP_TX);
	cr_expect_neq(again, srv, "routed to the server taken out");
	cr_expect_eq(get_load((__u32)srv).outstanding, 0, "old server given back");
	cr_expect_eq(get_load((__u32)again).outstanding, 1, "new server counted");
}

Test(feedback, answered_request_retransmission_sticks_uncounted, .init = setup_rr, .fini = teardown)
{
	int srv, again;

	cr_assert_eq(request(91, &srv), XDP_TX);
	cr_assert_eq(feedback(91, srv, S(feedback)), XDP_DROP);
	cr_expect_eq(get_load((__u32)srv).outstanding, 0);
	/* the response was lost: the client sends the first packet again */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(request(91, &again), XDP_TX);
		cr_expect_eq(again, srv, "went to %d, answered by %d", again, srv);
	}
	cr_expect_eq(get_load((__u32)srv).outstanding, 0, "a resend from the cache is not counted");
	cr_expect_eq(get_load((__u32)srv).dispatched, 1);
	cr_expect_eq(pstats(R2P2_RT_RR).resent, 3);
	/* a new rid is routed by the policy as usual */
	cr_assert_eq(request(92, &again), XDP_TX);
	cr_expect_eq(again, (srv + 1) % NUM_SRV);
	/* once that server is out, the answered request is routed anew and counted */
	set_server((__u32)srv, 0, IFINDEX);
	cr_assert_eq(request(91, &again), XDP_TX);
	cr_expect_neq(again, srv);
	cr_expect_eq(get_load(0).outstanding + get_load(1).outstanding + get_load(2).outstanding, 2,
		     "rid 92, and rid 91 counted anew");
}

/* ---- everything else is passed -------------------------------------------------------- */

struct pcase {
	const char *name;
	struct fspec f;
	int stat;
};

static const __u8 bad_magic[] = {0xcd, 0x08, 0x00, 0xc0, 0x12, 0x34, 0x00, 0x01, 0x41};
static const __u8 short_hdr[] = {0xcc, 0x08, 0x00, 0xc0, 0x12, 0x34, 0x00};
static const __u8 type5[] = {0xcc, 0x08, 0x50, 0xc0, 0x12, 0x34, 0x00, 0x01};

static const struct pcase passed[] = {
    {"another port", {.type = R2P2_REQUEST, .dport = 9999}, S(passed_not_routed)},
    {"another address", {.type = R2P2_REQUEST, .dst = "10.9.0.101"}, S(passed_not_routed)},
    {"non-first packet", {.type = R2P2_REQUEST, .flags = R2P2_F_LAST}, S(passed_other)},
    {"middle packet", {.type = R2P2_REQUEST, .flags = 0x01}, S(passed_other)},
    {"response", {.type = R2P2_RESPONSE}, S(passed_other)},
    {"ACK", {.type = R2P2_ACK}, S(passed_other)},
    {"DROP", {.type = R2P2_DROP}, S(passed_other)},
    {"bad magic", {.raw_payload = 1, .body = bad_magic, .body_len = 9}, S(passed_malformed)},
    {"7-byte header", {.raw_payload = 1, .body = short_hdr, .body_len = 7}, S(passed_malformed)},
    {"empty UDP payload", {.raw_payload = 1}, S(passed_malformed)},
    {"unknown type", {.raw_payload = 1, .body = type5, .body_len = 8}, S(passed_malformed)},
    {"frame cut in the R2P2 header",
     {.type = R2P2_REQUEST, .cut_to = 14 + 28 + 4},
     S(passed_not_routed)},
    {"frame cut in the UDP header",
     {.type = R2P2_REQUEST, .cut_to = 14 + 20 + 4},
     S(passed_not_routed)},
    {"frame cut in the IP header", {.type = R2P2_REQUEST, .cut_to = 14 + 10}, S(passed_not_routed)},
    {"Ethernet only", {.type = R2P2_REQUEST, .cut_to = 14}, S(passed_not_routed)},
    {"IHL 4", {.type = R2P2_REQUEST, .ihl = 4}, S(passed_not_routed)},
    {"first fragment", {.type = R2P2_REQUEST, .frag_off = 0x2000}, S(passed_not_routed)},
    {"later fragment", {.type = R2P2_REQUEST, .frag_off = 100}, S(passed_not_routed)},
};

Test(passed, non_requests_and_malformed, .init = setup_rr, .fini = teardown)
{
	for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
		struct frame in_fr;
		__u8 *in = in_fr.b;
		size_t len = build(&passed[i].f, in, FRAME_LEN);
		struct out o;

		run_expect(passed[i].name, in, len, passed[i].stat, &o);
		cr_expect_eq(o.verdict, XDP_PASS, "%s: verdict %u", passed[i].name, o.verdict);
		cr_expect(!memcmp(in, o.b, len), "%s: changed", passed[i].name);
	}
	for (int i = 0; i < NUM_SRV; i++)
		cr_expect_eq(get_load((__u32)i).outstanding, 0);
}

Test(passed, ipv6_and_arp, .init = setup_rr, .fini = teardown)
{
	struct frame in_fr = {0};
	__u8 *in = in_fr.b;
	struct out o;

	memcpy(in, router_mac, 6);
	in[12] = 0x86, in[13] = 0xdd; /* IPv6, header zeroed */
	run_expect("IPv6", in, 128, S(passed_not_routed), &o);
	in[12] = 0x08, in[13] = 0x06;
	run_expect("ARP", in, 42, S(passed_not_routed), &o);
}

/* ---- cost (printed, not asserted: this machine is shared) --------------------------- */

/* cost_ns runs `len` bytes at `buf` `repeat` times and returns the mean ns per run. */
static double cost_ns(const __u8 *buf, size_t len, __u32 repeat)
{
	struct xdp_md ctx = {.data_end = (__u32)len, .ingress_ifindex = IFINDEX};
	__u8 out[2048];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = buf, .data_size_in = (__u32)len,
		    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat);

	cr_assert_eq(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_router), &opts), 0);
	return (double)opts.duration;
}

Test(cost, per_packet_in_repeat_mode, .init = setup_jbsq, .fini = teardown)
{
	struct fspec req = {.type = R2P2_REQUEST, .rid = 5},
		     other = {.type = R2P2_REQUEST, .dport = 9999};
	struct frame fa, fb;
	__u8 *a = fa.b, *b = fb.b;
	size_t la = build(&req, a, FRAME_LEN), lb = build(&other, b, FRAME_LEN);
	double again, passed;

	/* Repeat mode runs the program on the frame as the previous run left it: servers at
	 * the service's own address keep the rewritten frame routed, so every run after the
	 * first takes the retransmission path (lookups and the whole rewrite). */
	for (__u32 i = 0; i < NUM_SRV; i++) {
		struct r2p2_rt_server sv = {.port = htons(SVC_PORT), .up = 1, .ifindex = IFINDEX};

		inet_pton(AF_INET, SVC_ADDR, &sv.addr);
		cr_assert_eq(bpf_map__update_elem(skel->maps.r2p2_rt_srvs, &i, sizeof(i), &sv,
						  sizeof(sv), BPF_ANY),
			     0);
	}
	cost_ns(a, la, 1); /* the request's first run: in flight from now on */
	again = cost_ns(a, la, 100000);
	passed = cost_ns(b, lb, 100000);
	printf("router cost per packet in repeat mode: retransmission (lookups + rewrite + "
	       "XDP_TX) %.0f ns, not routed %.0f ns\n",
	       again, passed);
	cr_expect_eq(pstats(R2P2_RT_JBSQ).resent, 100000, "every repetition was routed");
	cr_expect_eq(get_load(0).outstanding + get_load(1).outstanding + get_load(2).outstanding, 1,
		     "100000 retransmissions counted once");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * A new request cannot repeat (its first run leaves it in flight), so each of 2,000
 * distinct requests runs once, then the FEEDBACK that ends it, and the kernel's time for
 * each single run (test_run's `duration`, which leaves the system call out) is kept:
 * the medians are the JBSQ path's own cost per request (choice, map inserts, rewrite)
 * and per FEEDBACK (lookup, delete, count).
 */
Test(cost, new_request_and_feedback, .init = setup_jbsq, .fini = teardown)
{
	enum { RUNS = 2000 };
	static double req_ns[RUNS], fb_ns[RUNS];
	struct frame fr;

	for (int i = 0; i < RUNS; i++) {
		struct fspec f = {.type = R2P2_REQUEST, .rid = (__u16)(i + 1)};
		struct xdp_md ctx = {.ingress_ifindex = IFINDEX};
		struct out o;
		struct iphdr *ip = (struct iphdr *)(o.b + 14);
		size_t len = build(&f, fr.b, FRAME_LEN);
		int srv = -1;
		__be32 a;
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = fr.b, .data_size_in = (__u32)len,
			    .data_out = o.b, .data_size_out = sizeof(o.b), .ctx_in = &ctx,
			    .ctx_size_in = sizeof(ctx), .repeat = 1);

		ctx.data_end = (__u32)len;
		cr_assert_eq(
		    bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_router), &opts), 0);
		cr_assert_eq(opts.retval, XDP_TX, "request %d was routed", i + 1);
		req_ns[i] = (double)opts.duration;
		for (int k = 0; k < NUM_SRV; k++) {
			srv_addr(k, &a);
			if (ip->daddr == a)
				srv = k;
		}
		cr_assert_geq(srv, 0);
		len = build_feedback((__u16)(i + 1), srv, fr.b);
		opts.data_size_in = (__u32)len;
		opts.data_size_out = sizeof(o.b);
		ctx.data_end = (__u32)len;
		cr_assert_eq(
		    bpf_prog_test_run_opts(bpf_program__fd(skel->progs.r2p2_router), &opts), 0);
		fb_ns[i] = (double)opts.duration;
	}
	cr_expect_eq(get_load(0).outstanding + get_load(1).outstanding + get_load(2).outstanding, 0,
		     "every FEEDBACK ended its request");
	qsort(req_ns, RUNS, sizeof(req_ns[0]), cmp_double);
	qsort(fb_ns, RUNS, sizeof(fb_ns[0]), cmp_double);
	printf("router cost per packet, JBSQ(2), %d runs: new request median %.0f ns (p90 %.0f), "
	       "FEEDBACK median %.0f ns (p90 %.0f)\n",
	       RUNS, req_ns[RUNS / 2], req_ns[RUNS * 9 / 10], fb_ns[RUNS / 2],
	       fb_ns[RUNS * 9 / 10]);
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	struct router_bpf *probe;
	int result = 0;

	libbpf_set_print(quiet_print);
	probe = router_bpf__open_and_load();
	if (!probe) {
		int e = errno;

		if (e == EPERM || e == EACCES || e == ENOSYS || e == EOPNOTSUPP) {
			printf("SKIPPED: cannot load BPF programs here (%s); needs root and a "
			       "kernel with BPF\n",
			       strerror(e));
			return 77;
		}
		fprintf(stderr, "test_router: loading the XDP program failed: %s\n", strerror(e));
		return 1;
	}
	router_bpf__destroy(probe);
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
