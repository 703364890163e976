// SPDX-License-Identifier: MIT
/*
 * r2p2_xdp: steers R2P2 packets to AF_XDP sockets. For each frame: parse Ethernet
 * (one optional VLAN tag), IPv4 or IPv6, UDP; if the UDP destination port is in
 * r2p2_ports, validate the R2P2 header and redirect to the socket the steering rule
 * picks (include/r2p2/bpf_abi.h), dropping malformed ones. Everything else goes on
 * to the kernel. Every frame bumps exactly one per-CPU counter in r2p2_stats.
 */
#include <linux/bpf.h> /* before bpf_helpers.h, which needs its types */

#include <bpf/bpf_helpers.h>

#include "parsing.h"

/* UDP ports served over AF_XDP; user space fills it before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, R2P2_MAX_PORTS);
	__type(key, struct r2p2_port_key);
	__type(value, struct r2p2_port_val);
} r2p2_ports SEC(".maps");

/* Number of AF_XDP sockets per rx queue (index: rx_queue_index). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, R2P2_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct r2p2_qconf);
} r2p2_qconf SEC(".maps");

/* AF_XDP sockets: slot queue * R2P2_XSK_PER_QUEUE + i holds socket i of that queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, R2P2_XSK_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} r2p2_xsks SEC(".maps");

/* Verdict counters, one struct per CPU in entry 0. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct r2p2_stats);
} r2p2_stats SEC(".maps");

SEC("xdp")
int r2p2_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct r2p2_port_key key = {};
	struct r2p2_qconf *qc;
	struct r2p2_stats *st;
	struct r2p2_pkt pkt;
	__u32 zero = 0, queue;
	__be16 rid;
	int slot;
	long act;

	st = bpf_map_lookup_elem(&r2p2_stats, &zero);
	if (!st)
		return XDP_PASS; /* cannot happen: entry 0 of a per-CPU array always exists */

	switch (r2p2_parse(data, data_end, &pkt)) {
	case R2P2_PARSE_UDP:
		break;
	case R2P2_PARSE_FRAGMENT:
		st->passed_fragment++;
		return XDP_PASS;
	case R2P2_PARSE_IPV6_EXT:
		st->passed_ipv6_ext++;
		return XDP_PASS;
	case R2P2_PARSE_RUNT:
		st->passed_runt++;
		return XDP_PASS;
	default:
		st->passed_not_r2p2++;
		return XDP_PASS;
	}

	key.port = r2p2_bpf_ntohs(pkt.dport);
	if (!bpf_map_lookup_elem(&r2p2_ports, &key)) {
		st->passed_not_r2p2++;
		return XDP_PASS;
	}
	if (!r2p2_check(&pkt, data_end, &rid)) {
		st->dropped_malformed++;
		return XDP_DROP;
	}

	queue = ctx->rx_queue_index;
	qc = bpf_map_lookup_elem(&r2p2_qconf, &queue);
	slot =
	    r2p2_xsk_slot(queue, r2p2_flow_hash(pkt.saddr, pkt.sport, rid), qc ? qc->num_socks : 0);
	if (slot < 0) {
		st->no_socket++;
		return XDP_PASS;
	}
	/* Returns XDP_PASS (the flags' low bits) when the slot holds no socket. */
	act = bpf_redirect_map(&r2p2_xsks, slot, XDP_PASS);
	if (act == XDP_REDIRECT)
		st->steered++;
	else
		st->no_socket++;
	return act;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
