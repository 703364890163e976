/* SPDX-License-Identifier: MIT */
/*
 * Packet parsing for the XDP program, after xdp-tools' parsing_helpers.h: a cursor
 * walks the frame; each parse_*() bounds-checks against `data_end`, advances the
 * cursor past its header and returns what comes next (or -1 when the header is cut
 * short), saying the byte order of what it returns.
 *
 * Only UAPI headers and compiler builtins: the same code compiles for BPF
 * (bpf/r2p2.bpf.c) and for the host (tests/test_bpf.c unit-tests it directly).
 * Host code including this header must include <netinet/in.h> (if at all) first.
 */
#ifndef R2P2_BPF_PARSING_H
#define R2P2_BPF_PARSING_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/types.h>
#include <linux/udp.h>

#include <r2p2/bpf_abi.h>
#include <r2p2/wire.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define r2p2_bpf_ntohs(x) ((__u16)(x))
#define r2p2_bpf_htons(x) ((__be16)(x))
#else
#define r2p2_bpf_ntohs(x) ((__u16)__builtin_bswap16((__u16)(x)))
#define r2p2_bpf_htons(x) ((__be16)__builtin_bswap16((__u16)(x)))
#endif

/* IP protocol numbers, spelled out so that no <linux/in.h> vs <netinet/in.h> clash arises. */
#define R2P2_PROTO_HOPOPTS 0
#define R2P2_PROTO_UDP 17
#define R2P2_PROTO_ROUTING 43
#define R2P2_PROTO_FRAGMENT 44
#define R2P2_PROTO_ESP 50
#define R2P2_PROTO_AH 51
#define R2P2_PROTO_DSTOPTS 60
#define R2P2_PROTO_MH 135
#define R2P2_PROTO_HIP 139
#define R2P2_PROTO_SHIM6 140
#define R2P2_PROTO_EXP1 253
#define R2P2_PROTO_EXP2 254

/* IPv4 frag_off bits (host byte order) */
#define R2P2_IP_MF 0x2000
#define R2P2_IP_OFFSET 0x1FFF

/* One 802.1Q / 802.1AD tag; <linux/if_vlan.h> has no UAPI struct for it. */
struct r2p2_vlan_hdr {
	__be16 tci;
	__be16 proto; /* EtherType of what follows */
};

struct hdr_cursor {
	void *pos;
};

/*
 * parse_ethhdr: the Ethernet header and at most one VLAN tag (TPID 0x8100 or 0x88A8).
 * Returns the EtherType of what follows (network byte order; a second tag's TPID is
 * returned as is, so QinQ counts as not R2P2), or -1 when the frame is cut short.
 */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end,
					struct ethhdr **out_eth)
{
	struct ethhdr *eth = nh->pos;
	struct r2p2_vlan_hdr *vlh;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	*out_eth = eth;
	proto = eth->h_proto;
	if (proto == r2p2_bpf_htons(ETH_P_8021Q) || proto == r2p2_bpf_htons(ETH_P_8021AD)) {
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		nh->pos = vlh + 1;
		proto = vlh->proto;
	}
	return proto;
}

/*
 * parse_iphdr: an IPv4 header with its options (IHL). Returns the IP protocol
 * (a byte, no byte order), or -1 when the header is cut short or IHL < 5.
 */
static __always_inline int parse_iphdr(struct hdr_cursor *nh, void *data_end,
				       struct iphdr **out_iph)
{
	struct iphdr *iph = nh->pos;
	__u32 hdrsize;

	if ((void *)(iph + 1) > data_end)
		return -1;
	hdrsize = iph->ihl * 4;
	if (hdrsize < sizeof(*iph))
		return -1;
	if ((void *)iph + hdrsize > data_end)
		return -1;
	nh->pos = (void *)iph + hdrsize;
	*out_iph = iph;
	return iph->protocol;
}

/*
 * parse_ip6hdr: the fixed IPv6 header. Returns its next header (a byte), or -1 when cut
 * short. Extension headers are not walked (the caller passes such packets on).
 */
static __always_inline int parse_ip6hdr(struct hdr_cursor *nh, void *data_end,
					struct ipv6hdr **out_ip6h)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	nh->pos = ip6h + 1;
	*out_ip6h = ip6h;
	return ip6h->nexthdr;
}

/*
 * parse_udphdr: the UDP header. Returns its length field (host byte order, header
 * included), or -1 when cut short.
 */
static __always_inline int parse_udphdr(struct hdr_cursor *nh, void *data_end,
					struct udphdr **out_udph)
{
	struct udphdr *udph = nh->pos;

	if ((void *)(udph + 1) > data_end)
		return -1;
	nh->pos = udph + 1;
	*out_udph = udph;
	return r2p2_bpf_ntohs(udph->len);
}

/* ipv6_is_ext_hdr: whether IPv6 next header `nexthdr` is an extension header. */
static __always_inline int ipv6_is_ext_hdr(int nexthdr)
{
	switch (nexthdr) {
	case R2P2_PROTO_HOPOPTS:
	case R2P2_PROTO_ROUTING:
	case R2P2_PROTO_FRAGMENT:
	case R2P2_PROTO_ESP:
	case R2P2_PROTO_AH:
	case R2P2_PROTO_DSTOPTS:
	case R2P2_PROTO_MH:
	case R2P2_PROTO_HIP:
	case R2P2_PROTO_SHIM6:
	case R2P2_PROTO_EXP1:
	case R2P2_PROTO_EXP2:
		return 1;
	}
	return 0;
}

/* What r2p2_parse found; each value but R2P2_PARSE_UDP maps to one passed_* counter. */
enum r2p2_parse_result {
	R2P2_PARSE_UDP = 0,  /* an unfragmented UDP datagram; the r2p2_pkt is filled */
	R2P2_PARSE_NOT_UDP,  /* not IPv4/IPv6, or not UDP: passed_not_r2p2 */
	R2P2_PARSE_FRAGMENT, /* IPv4 fragment: passed_fragment */
	R2P2_PARSE_IPV6_EXT, /* IPv6 extension header: passed_ipv6_ext */
	R2P2_PARSE_RUNT,     /* a header cut short, IP lengths inconsistent: passed_runt */
};

/* A UDP datagram as r2p2_parse found it. */
struct r2p2_pkt {
	__be32 saddr[4];     /* source address, IPv4 as ::ffff:a.b.c.d (network byte order) */
	__be16 sport;	     /* network byte order */
	__be16 dport;	     /* network byte order */
	__u32 ip_payload;    /* bytes the IP header says follow it (host byte order) */
	__u32 udp_len;	     /* UDP length field (host byte order) */
	struct udphdr *udph; /* the UDP header inside the frame */
};

/*
 * r2p2_parse parses the frame [data, data_end) down to UDP and fills `out` when it
 * returns R2P2_PARSE_UDP. The IP header's length must fit the frame (Ethernet padding
 * after it is allowed); the UDP length is left for r2p2_check to judge.
 */
static __always_inline enum r2p2_parse_result r2p2_parse(void *data, void *data_end,
							 struct r2p2_pkt *out)
{
	struct hdr_cursor nh = {.pos = data};
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	struct udphdr *udph;
	int eth_type, proto, udp_len;
	__u32 tot_len, hdrsize;

	eth_type = parse_ethhdr(&nh, data_end, &eth);
	if (eth_type < 0)
		return R2P2_PARSE_RUNT;
	if (eth_type == r2p2_bpf_htons(ETH_P_IP)) {
		proto = parse_iphdr(&nh, data_end, &iph);
		if (proto < 0)
			return R2P2_PARSE_RUNT;
		hdrsize = iph->ihl * 4;
		tot_len = r2p2_bpf_ntohs(iph->tot_len);
		if (tot_len < hdrsize || (void *)iph + tot_len > data_end)
			return R2P2_PARSE_RUNT;
		if (iph->frag_off & r2p2_bpf_htons(R2P2_IP_MF | R2P2_IP_OFFSET))
			return R2P2_PARSE_FRAGMENT;
		if (proto != R2P2_PROTO_UDP)
			return R2P2_PARSE_NOT_UDP;
		r2p2_v4mapped(out->saddr, iph->saddr);
		out->ip_payload = tot_len - hdrsize;
	} else if (eth_type == r2p2_bpf_htons(ETH_P_IPV6)) {
		proto = parse_ip6hdr(&nh, data_end, &ip6h);
		if (proto < 0)
			return R2P2_PARSE_RUNT;
		tot_len = r2p2_bpf_ntohs(ip6h->payload_len);
		if ((void *)(ip6h + 1) + tot_len > data_end)
			return R2P2_PARSE_RUNT;
		if (proto != R2P2_PROTO_UDP)
			return ipv6_is_ext_hdr(proto) ? R2P2_PARSE_IPV6_EXT : R2P2_PARSE_NOT_UDP;
		__builtin_memcpy(out->saddr, &ip6h->saddr, sizeof(out->saddr));
		out->ip_payload = tot_len;
	} else {
		return R2P2_PARSE_NOT_UDP;
	}
	udp_len = parse_udphdr(&nh, data_end, &udph);
	if (udp_len < 0)
		return R2P2_PARSE_RUNT;
	out->sport = udph->source;
	out->dport = udph->dest;
	out->udp_len = udp_len;
	out->udph = udph;
	return R2P2_PARSE_UDP;
}

/*
 * r2p2_check returns 1 when the UDP datagram `pkt` (inside a frame ending at `data_end`)
 * carries a plausible R2P2 packet: the UDP length equals the IP payload length and leaves
 * room for the 8-byte header, which is in the frame and passes r2p2_hdr_valid. Then
 * `out_rid` is its rid (network byte order). Returns 0 for anything malformed.
 */
static __always_inline int r2p2_check(const struct r2p2_pkt *pkt, void *data_end, __be16 *out_rid)
{
	struct r2p2_hdr *h = (struct r2p2_hdr *)(pkt->udph + 1);

	if (pkt->udp_len != pkt->ip_payload)
		return 0;
	if (pkt->udp_len < sizeof(struct udphdr) + R2P2_HDR_LEN)
		return 0;
	if ((void *)(h + 1) > data_end)
		return 0;
	if (!r2p2_hdr_valid(h, pkt->udp_len - sizeof(struct udphdr)))
		return 0;
	*out_rid = h->rid;
	return 1;
}

#endif /* R2P2_BPF_PARSING_H */
