// SPDX-License-Identifier: MIT
/*
 * Test-only XDP program for tests/test_xsk.c (not the r2p2 program): UDP datagrams to
 * port XSK_TEST_PORT go to the AF_XDP socket in xsks_map[source port & 1] (so two
 * sockets sharing one UMEM on one queue both get traffic), everything else (ARP,
 * neighbour discovery, other ports) passes to the kernel.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h> /* after linux/bpf.h: it needs __u32 and friends */
#include <bpf/bpf_helpers.h>

#define XSK_TEST_PORT 7777

/* slot (source port & 1) -> AF_XDP socket */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
			return XDP_PASS;
		udp = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(XSK_TEST_PORT))
		return XDP_PASS;
	__u32 slot = bpf_ntohs(udp->source) & 1;
	return bpf_redirect_map(&xsks_map, slot, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
