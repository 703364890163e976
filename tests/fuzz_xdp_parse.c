// SPDX-License-Identifier: MIT
/*
 * fuzz_xdp_parse: libFuzzer harness over the XDP program itself, bpf/r2p2.bpf.c with
 * bpf/parsing.h, compiled for the host (they include only UAPI headers), on
 * arbitrary Ethernet frames.
 *
 * The BPF helpers the program calls are host stand-ins: bpf_map_lookup_elem serves
 * the four maps from the input's configuration, bpf_redirect_map reports whether a
 * socket sits in the slot. struct xdp_md becomes a host struct with pointer-wide
 * data/data_end (the kernel's is 32-bit offsets). The frame is an exact heap copy,
 * so AddressSanitizer reports any read before data or at/after data_end: on the
 * host that is what the verifier's bounds checks prove in the kernel. It starts
 * 16-byte aligned, so the IP header is not 4-byte aligned, as on x86 where
 * NET_IP_ALIGN is 0; the harness is built without UBSan's alignment check.
 *
 * Input: byte 0 bits 0-4: the queue's num_socks (0..31, above 16 is invalid),
 * bit 5: ports map lookups fail; byte 1: rx_queue_index; bytes 2-3: the served UDP
 * port (big-endian); byte 4: which slots hold a socket (bit slot % 8); the rest is
 * the frame.
 *
 * Invariants (abort on violation): every frame bumps exactly one counter, and it is
 * the one the verdict calls for (XDP_DROP: dropped_malformed, XDP_REDIRECT: steered,
 * else a passed_* or no_socket); map keys have zero padding; the program redirects
 * only to a slot of its own queue below num_socks; and it agrees with an
 * independent, byte-offset reference classifier written from the header comments
 * of bpf/parsing.h and bpf/r2p2.bpf.c, verdict, counter and slot alike.
 *
 * Seeds: tests/fuzz/fuzz_xdp_parse/, written by `R2P2_FUZZ_WRITE_SEEDS=DIR ./fuzz_xdp_parse`.
 */
#include <stdbool.h>
#include <stddef.h> /* before bpf_helpers.h, whose offsetof UBSan dislikes */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

/* The kernel's struct xdp_md holds 32-bit offsets; on the host they are pointers. */
struct r2p2_host_xdp_md {
	unsigned long data;
	unsigned long data_end;
	__u32 rx_queue_index;
};
#define xdp_md r2p2_host_xdp_md
#include "r2p2.bpf.c"
#undef xdp_md

/* ---- the maps, as the input configures them ------------------------------------- */

static struct {
	struct r2p2_stats stats;
	struct r2p2_port_val port_val;
	struct r2p2_qconf qconf;
	__u16 port;
	bool ports_fail;
	__u8 sockets;
	long redirect_slot;
} H;

static void *host_map_lookup_elem(void *map, const void *key)
{
	if (map == &r2p2_stats) {
		if (*(const __u32 *)key != 0)
			abort();
		return &H.stats;
	}
	if (map == &r2p2_ports) {
		const struct r2p2_port_key *k = key;

		if (k->pad != 0)
			abort(); /* padding must be zero: a hash map compares whole keys */
		return !H.ports_fail && k->port == H.port ? &H.port_val : NULL;
	}
	if (map == &r2p2_qconf)
		return *(const __u32 *)key < R2P2_MAX_QUEUES ? &H.qconf : NULL;
	abort();
}

static long host_redirect_map(void *map, __u64 key, __u64 flags)
{
	if (map != &r2p2_xsks || key >= R2P2_XSK_SLOTS || H.redirect_slot >= 0)
		abort(); /* one redirect at most, to a slot that exists */
	H.redirect_slot = (long)key;
	return H.sockets & (1u << (key % 8)) ? XDP_REDIRECT : (long)(flags & 3);
}

/* ---- the reference classifier ---------------------------------------------------- */

enum ref_counter { STEERED, NO_SOCKET, DROPPED, NOT_R2P2, FRAGMENT, IPV6_EXT, RUNT };

static unsigned be16_at(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/*
 * ref_classify says what the program must do with frame `f` of `len` bytes, by byte
 * offsets: Ethernet (one optional 802.1Q/802.1AD tag), IPv4 with options or fixed
 * IPv6, UDP to the served port, then the R2P2 header; `*out_slot` is the slot to
 * redirect to, or -1.
 */
static enum ref_counter ref_classify(const uint8_t *f, size_t len, __u32 queue, long *out_slot)
{
	size_t l3 = 14, l4;
	unsigned type, proto, ip_payload, udp_len;
	__be32 saddr[4];
	__be16 sport;
	const struct r2p2_hdr *h;
	int slot;

	*out_slot = -1;
	if (len < 14)
		return RUNT;
	type = be16_at(f + 12);
	if (type == 0x8100 || type == 0x88A8) {
		if (len < 18)
			return RUNT;
		type = be16_at(f + 16);
		l3 = 18;
	}
	if (type == 0x0800) {
		unsigned ihl, tot;

		if (len < l3 + 20)
			return RUNT;
		ihl = (f[l3] & 0x0F) * 4u;
		tot = be16_at(f + l3 + 2);
		if (ihl < 20 || len < l3 + ihl || tot < ihl || len < l3 + tot)
			return RUNT;
		if (be16_at(f + l3 + 6) & 0x3FFF)
			return FRAGMENT;
		proto = f[l3 + 9];
		if (proto != 17)
			return NOT_R2P2;
		memcpy(&saddr[3], f + l3 + 12, 4);
		r2p2_v4mapped(saddr, saddr[3]);
		l4 = l3 + ihl;
		ip_payload = tot - ihl;
	} else if (type == 0x86DD) {
		if (len < l3 + 40)
			return RUNT;
		ip_payload = be16_at(f + l3 + 4);
		if (len < l3 + 40 + ip_payload)
			return RUNT;
		proto = f[l3 + 6];
		if (proto != 17) {
			static const uint8_t ext[] = {0,   43,	44,  50,  51, 60,
						      135, 139, 140, 253, 254};
			return memchr(ext, (int)proto, sizeof(ext)) ? IPV6_EXT : NOT_R2P2;
		}
		memcpy(saddr, f + l3 + 8, 16);
		l4 = l3 + 40;
	} else {
		return NOT_R2P2;
	}
	if (len < l4 + 8)
		return RUNT;
	if (H.ports_fail || be16_at(f + l4 + 2) != H.port)
		return NOT_R2P2;
	udp_len = be16_at(f + l4 + 4);
	if (udp_len != ip_payload || udp_len < 8 + R2P2_HDR_LEN || len < l4 + 8 + R2P2_HDR_LEN)
		return DROPPED;
	h = (const struct r2p2_hdr *)(f + l4 + 8);
	if (h->magic != R2P2_MAGIC || h->header_size != R2P2_HDR_LEN || (h->type_policy >> 4) > 4)
		return DROPPED;
	memcpy(&sport, f + l4, 2);
	slot = r2p2_xsk_slot(queue, r2p2_flow_hash(saddr, sport, h->rid),
			     queue < R2P2_MAX_QUEUES ? H.qconf.num_socks : 0);
	if (slot < 0)
		return NO_SOCKET;
	*out_slot = slot;
	return H.sockets & (1u << (slot % 8)) ? STEERED : NO_SOCKET;
}

/* ---- seeds ----------------------------------------------------------------------- */

static size_t build_frame(uint8_t *f, bool v6, bool vlan, unsigned port, size_t payload,
			  uint8_t type)
{
	size_t l3 = vlan ? 18 : 14, l4 = l3 + (v6 ? 40 : 20), udp = 8 + R2P2_HDR_LEN + payload;
	uint8_t *h;

	memset(f, 0, l4 + udp);
	memcpy(f, "\x02\0\0\0\0\x02\x02\0\0\0\0\x01", 12);
	if (vlan) {
		memcpy(f + 12, "\x81\x00\x00\x07", 4);
	}
	if (v6) {
		memcpy(f + l3 - 2, "\x86\xdd", 2);
		f[l3] = 0x60;
		f[l3 + 4] = (uint8_t)(udp >> 8);
		f[l3 + 5] = (uint8_t)udp;
		f[l3 + 6] = 17;
		f[l3 + 7] = 64;
		f[l3 + 8] = 0xfd;
		f[l3 + 23] = 1;
		f[l3 + 24] = 0xfd;
		f[l3 + 39] = 2;
	} else {
		memcpy(f + l3 - 2, "\x08\x00", 2);
		f[l3] = 0x45;
		f[l3 + 2] = (uint8_t)((20 + udp) >> 8);
		f[l3 + 3] = (uint8_t)(20 + udp);
		f[l3 + 6] = 0x40; /* DF */
		f[l3 + 8] = 64;
		f[l3 + 9] = 17;
		memcpy(f + l3 + 12, "\x0a\0\0\x01\x0a\0\0\x02", 8);
	}
	f[l4] = 0x9c;
	f[l4 + 1] = 0x40;
	f[l4 + 2] = (uint8_t)(port >> 8);
	f[l4 + 3] = (uint8_t)port;
	f[l4 + 4] = (uint8_t)(udp >> 8);
	f[l4 + 5] = (uint8_t)udp;
	h = f + l4 + 8;
	h[0] = R2P2_MAGIC;
	h[1] = R2P2_HDR_LEN;
	h[2] = type;
	h[3] = R2P2_F_FIRST | R2P2_F_LAST;
	h[5] = 0x2a;
	h[7] = 1;
	for (size_t i = 0; i < payload; i++)
		h[R2P2_HDR_LEN + i] = (uint8_t)i;
	return l4 + udp;
}

static void write_seeds(const char *dir)
{
	static const struct {
		const char *name;
		uint8_t conf[5];
		bool v6, vlan;
		uint8_t type;
		size_t payload;
	} seeds[] = {
	    {"v4_steered", {4, 0, 0x1f, 0x40, 0xff}, false, false, R2P2_REQUEST << 4, 16},
	    {"v6_vlan_steered", {2, 1, 0x1f, 0x40, 0x0f}, true, true, R2P2_REQUEST << 4, 5},
	    {"v4_no_socket", {0, 0, 0x1f, 0x40, 0}, false, false, R2P2_ACK << 4, 0},
	    {"v4_bad_type", {1, 3, 0x1f, 0x40, 0xff}, false, true, 7 << 4, 3},
	    {"v6_other_port", {1, 0, 0x1f, 0x41, 0xff}, true, false, R2P2_REQUEST << 4, 3},
	};
	uint8_t buf[256];

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char p[512];
		size_t n;
		FILE *f;

		memcpy(buf, seeds[i].conf, 5);
		n = 5 + build_frame(buf + 5, seeds[i].v6, seeds[i].vlan, 0x1f40, seeds[i].payload,
				    seeds[i].type);
		snprintf(p, sizeof(p), "%s/%s", dir, seeds[i].name);
		f = fopen(p, "wb");
		if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
			perror(p);
			exit(2);
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("R2P2_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	bpf_map_lookup_elem = host_map_lookup_elem;
	bpf_redirect_map = host_redirect_map;
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct r2p2_host_xdp_md ctx;
	const __u64 *c = (const __u64 *)&H.stats;
	enum ref_counter want;
	long want_slot;
	uint8_t *frame;
	size_t len, bumped = 0, which = 0;
	int act;

	if (size < 5)
		return 0;
	memset(&H, 0, sizeof(H));
	H.qconf.num_socks = data[0] & 0x1F;
	H.ports_fail = data[0] & 0x20;
	ctx.rx_queue_index = data[1];
	H.port = (__u16)(data[2] << 8 | data[3]);
	H.sockets = data[4];
	H.redirect_slot = -1;
	len = size - 5;
	frame = malloc(len ? len : 1);
	if (!frame)
		abort();
	memcpy(frame, data + 5, len);
	ctx.data = (unsigned long)frame;
	ctx.data_end = (unsigned long)frame + len;

	act = r2p2_xdp(&ctx);

	for (size_t i = 0; i < sizeof(H.stats) / sizeof(*c); i++)
		if (c[i]) {
			bumped += c[i];
			which = i;
		}
	if (bumped != 1 || H.stats.reserved)
		abort();
	if ((act == XDP_DROP) != (which == offsetof(struct r2p2_stats, dropped_malformed) / 8) ||
	    (act == XDP_REDIRECT) != (which == offsetof(struct r2p2_stats, steered) / 8) ||
	    (act != XDP_DROP && act != XDP_REDIRECT && act != XDP_PASS))
		abort();
	if (act == XDP_REDIRECT &&
	    (ctx.rx_queue_index >= R2P2_MAX_QUEUES || H.redirect_slot < 0 ||
	     (__u32)H.redirect_slot / R2P2_XSK_PER_QUEUE != ctx.rx_queue_index ||
	     (__u32)H.redirect_slot % R2P2_XSK_PER_QUEUE >= H.qconf.num_socks))
		abort();

	want = ref_classify(frame, len, ctx.rx_queue_index, &want_slot);
	{
		static const size_t counter_of[] = {
		    [STEERED] = offsetof(struct r2p2_stats, steered) / 8,
		    [NO_SOCKET] = offsetof(struct r2p2_stats, no_socket) / 8,
		    [DROPPED] = offsetof(struct r2p2_stats, dropped_malformed) / 8,
		    [NOT_R2P2] = offsetof(struct r2p2_stats, passed_not_r2p2) / 8,
		    [FRAGMENT] = offsetof(struct r2p2_stats, passed_fragment) / 8,
		    [IPV6_EXT] = offsetof(struct r2p2_stats, passed_ipv6_ext) / 8,
		    [RUNT] = offsetof(struct r2p2_stats, passed_runt) / 8,
		};
		if (counter_of[want] != which || want_slot != H.redirect_slot)
			abort();
	}
	free(frame);
	return 0;
}
