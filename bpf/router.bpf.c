// SPDX-License-Identifier: MIT
/*
 * r2p2_router: R2P2's per-request target selection (Kogias et al., ATC 2019) in XDP, on
 * the router host's interface. For each frame: parse Ethernet (one optional VLAN tag),
 * IPv4, UDP; if the destination address:port is a routed service (r2p2_rt_svcs):
 *   - a REQUEST's first packet gets a server chosen by the service's policy, its
 *     destination MAC, IP and UDP port rewritten (checksums updated incrementally; the
 *     source stays the client's, so the server answers the client directly and the rest
 *     of a multi-packet request follows the server's ACK there), and goes out again:
 *     XDP_TX on the same interface, bpf_redirect to another;
 *   - a FEEDBACK gives its server's outstanding count back (r2p2_rt_reqs names the server);
 *   - when JBSQ finds every server holding `bound`, or requests already wait, or no server
 *     is up, the request is passed to the kernel, where r2p2-router's UDP socket on the
 *     service address queues it (daemon/router/slowpath.c).
 * Everything else is passed to the kernel untouched. Every frame bumps exactly one
 * per-CPU counter in r2p2_rt_stats. Maps and ABI: include/r2p2/router_abi.h.
 */
#include <linux/bpf.h> /* before bpf_helpers.h, which needs its types */

#include <bpf/bpf_helpers.h>

#include <r2p2/router_abi.h>

#include "parsing.h"

/* Routed services: address:port -> policy and rotation. Filled by r2p2-router. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, R2P2_RT_MAX_SERVICES);
	__type(key, struct r2p2_rt_svc_key);
	__type(value, struct r2p2_rt_svc);
} r2p2_rt_svcs SEC(".maps");

/* Server slots: address, port, next-hop MAC and egress interface. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, R2P2_RT_MAX_SERVERS);
	__type(key, __u32);
	__type(value, struct r2p2_rt_server);
} r2p2_rt_srvs SEC(".maps");

/* Outstanding requests and counters per server slot; user space maps it (atomics). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, R2P2_RT_MAX_SERVERS);
	__type(key, __u32);
	__type(value, struct r2p2_rt_load);
} r2p2_rt_load SEC(".maps");

/* Requests waiting in the user-space FIFO, per service id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, R2P2_RT_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct r2p2_rt_fifo);
} r2p2_rt_fifo SEC(".maps");

/* Dispatched requests awaiting FEEDBACK; an LRU, so a flood cannot make it refuse new ones
 * (user space ages entries out long before eviction would reach them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, R2P2_RT_MAX_REQS);
	__type(key, struct r2p2_rt_req_key);
	__type(value, struct r2p2_rt_req);
} r2p2_rt_reqs SEC(".maps");

/* Answered requests (FEEDBACK came) for sticky_ms: a client that lost the response
 * retransmits, and the server that ran the request resends it from its cache where any
 * other would run it again. No count is attached, so LRU eviction costs nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, R2P2_RT_MAX_REQS);
	__type(key, struct r2p2_rt_req_key);
	__type(value, struct r2p2_rt_req);
} r2p2_rt_done SEC(".maps");

/* Counters per policy (index: enum r2p2_rt_policy), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, R2P2_RT_NUM_POLICIES);
	__type(key, __u32);
	__type(value, struct r2p2_rt_pstats);
} r2p2_rt_pstats SEC(".maps");

/* Verdict counters, one struct per CPU in entry 0. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct r2p2_rt_stats);
} r2p2_rt_stats SEC(".maps");

#define PICK_NONE (-1) /* no server in rotation */
#define PICK_FULL (-2) /* JBSQ: every server holds `bound` */

static __always_inline __s32 load_of(__u32 slot)
{
	struct r2p2_rt_load *ld = bpf_map_lookup_elem(&r2p2_rt_load, &slot);

	return ld ? ld->outstanding : 0x7fffffff;
}

/* slot_at returns the server slot at rotation position `i` of `svc`. */
static __always_inline __u32 slot_at(const struct r2p2_rt_svc *svc, __u32 i)
{
	/* The compiler knows i < num <= 16 and would drop the mask the verifier needs. */
	asm volatile("" : "+r"(i));
	return svc->slots[i & (R2P2_RT_SVC_SERVERS - 1)];
}

/*
 * pick_jbsq: the least loaded server, scanning from the round-robin position so that
 * ties rotate. Its count is raised here, atomically and only if still below `bound`:
 * two CPUs that saw the same last free place cannot both take it.
 */
static __always_inline int pick_jbsq(struct r2p2_rt_svc *svc, __u32 num, __u32 bound)
{
	__u32 start = __sync_fetch_and_add(&svc->rr, 1), best = 0, i;
	__s32 best_load = 0x7fffffff, l;
	struct r2p2_rt_load *ld;

	for (i = 0; i < R2P2_RT_SVC_SERVERS; i++) {
		__u32 s;

		if (i >= num)
			break;
		s = slot_at(svc, (start + i) % num);
		l = load_of(s);
		if (l < best_load) {
			best_load = l;
			best = s;
		}
	}
	if (best_load >= (__s32)bound)
		return PICK_FULL;
	ld = bpf_map_lookup_elem(&r2p2_rt_load, &best);
	if (!ld)
		return PICK_NONE;
	if (__sync_fetch_and_add(&ld->outstanding, 1) >= (__s32)bound) {
		__sync_fetch_and_add(&ld->outstanding, -1);
		return PICK_FULL;
	}
	return (int)best;
}

/* pick returns the server slot `svc`'s policy chooses, or PICK_NONE / PICK_FULL. */
static __always_inline int pick(struct r2p2_rt_svc *svc, __u32 policy)
{
	__u32 num = svc->num_servers, a, b;

	if (num == 0 || num > R2P2_RT_SVC_SERVERS)
		return PICK_NONE;
	switch (policy) {
	case R2P2_RT_RR:
		return (int)slot_at(svc, __sync_fetch_and_add(&svc->rr, 1) % num);
	case R2P2_RT_P2C:
		a = bpf_get_prandom_u32() % num;
		if (num == 1)
			return (int)slot_at(svc, a);
		b = (a + 1 + bpf_get_prandom_u32() % (num - 1)) % num; /* another one */
		a = slot_at(svc, a);
		b = slot_at(svc, b);
		return (int)(load_of(b) < load_of(a) ? b : a);
	case R2P2_RT_JBSQ:
		return pick_jbsq(svc, num, svc->bound);
	default:
		return (int)slot_at(svc, bpf_get_prandom_u32() % num);
	}
}

/*
 * send_to rewrites the frame toward server `srv` (MACs, destination address and port,
 * IP and UDP checksums) and returns the verdict that sends it.
 */
static __always_inline int send_to(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				   struct udphdr *udph, const struct r2p2_rt_server *srv,
				   struct r2p2_rt_stats *st)
{
	__be32 old_addr = iph->daddr;
	__be16 old_port = udph->dest;
	__u16 c;

	iph->daddr = srv->addr;
	iph->check = r2p2_csum_replace32(iph->check, old_addr, srv->addr);
	udph->dest = srv->port;
	if (udph->check) { /* 0: the sender computed no checksum (IPv4 allows it) */
		c = r2p2_csum_replace32(udph->check, old_addr, srv->addr);
		c = r2p2_csum_replace16(c, old_port, srv->port);
		udph->check = c ? c : 0xffff;
	}
	__builtin_memcpy(eth->h_dest, srv->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, srv->src_mac, ETH_ALEN);
	if (srv->ifindex == ctx->ingress_ifindex) {
		st->routed_tx++;
		return XDP_TX;
	}
	st->routed_redirect++;
	return (int)bpf_redirect(srv->ifindex, 0);
}

/* usable returns the server in slot `slot` when it can take a request, else NULL. */
static __always_inline struct r2p2_rt_server *usable(__u32 slot)
{
	struct r2p2_rt_server *srv = bpf_map_lookup_elem(&r2p2_rt_srvs, &slot);

	return srv && srv->up && srv->ifindex ? srv : NULL;
}

/* give_back returns one outstanding request of server `slot`; `matched`: by its FEEDBACK,
 * which also says when the server last answered (user space judges silence by it). */
static __always_inline void give_back(__u32 slot, int matched)
{
	struct r2p2_rt_load *ld = bpf_map_lookup_elem(&r2p2_rt_load, &slot);

	if (!ld)
		return;
	__sync_fetch_and_add(&ld->outstanding, -1);
	if (matched) {
		__sync_fetch_and_add(&ld->feedback, 1);
		ld->last_feedback_ns = bpf_ktime_get_ns();
	}
}

/*
 * route handles a REQUEST's first packet to service `svc`. A retransmitted first packet
 * (same client, port and rid in r2p2_rt_reqs, or in r2p2_rt_done once answered) goes to
 * the same server while that server is up, and is not counted again: the server
 * deduplicates it and resends its cached answer, where another server would run the
 * request a second time.
 */
static __always_inline int route(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				 struct udphdr *udph, const struct r2p2_hdr *h,
				 struct r2p2_rt_svc *svc, struct r2p2_rt_stats *st)
{
	struct r2p2_rt_req_key rk = {.client = iph->saddr, .port = udph->source, .rid = h->rid};
	__u32 policy = svc->policy < R2P2_RT_NUM_POLICIES ? svc->policy : R2P2_RT_RANDOM;
	struct r2p2_rt_req req = {}, *old;
	struct r2p2_rt_server *srv;
	struct r2p2_rt_pstats *ps;
	struct r2p2_rt_fifo *q;
	struct r2p2_rt_load *ld;
	__u32 id = svc->id, slot;
	int s;

	ps = bpf_map_lookup_elem(&r2p2_rt_pstats, &policy);
	if (!ps)
		return XDP_PASS; /* cannot happen: policy < max_entries */
	old = bpf_map_lookup_elem(&r2p2_rt_reqs, &rk);
	if (old) {
		slot = old->server;
		srv = usable(slot);
		if (srv) {
			ps->resent++;
			return send_to(ctx, eth, iph, udph, srv, st);
		}
		if (bpf_map_delete_elem(&r2p2_rt_reqs, &rk) == 0)
			give_back(slot, 0);
	} else {
		old = bpf_map_lookup_elem(&r2p2_rt_done, &rk);
		/* the slot may have been given to a server of another service since */
		srv = old && old->svc == id ? usable(old->server) : NULL;
		if (srv) {
			ps->resent++;
			return send_to(ctx, eth, iph, udph, srv, st);
		}
	}
	q = bpf_map_lookup_elem(&r2p2_rt_fifo, &id);
	if (q && q->queued) {
		ps->slow_path++;
		st->to_user++;
		return XDP_PASS;
	}
	s = pick(svc, policy);
	if (s < 0) {
		if (s == PICK_FULL)
			ps->slow_path++;
		else
			ps->no_server++;
		st->to_user++;
		return XDP_PASS;
	}
	slot = (__u32)s;
	srv = usable(slot);
	ld = bpf_map_lookup_elem(&r2p2_rt_load, &slot);
	if (!srv || !ld) {
		/* user space is changing the rotation: let the slow path decide */
		if (policy == R2P2_RT_JBSQ && ld)
			__sync_fetch_and_add(&ld->outstanding, -1);
		ps->no_server++;
		st->to_user++;
		return XDP_PASS;
	}
	if (policy != R2P2_RT_JBSQ) /* pick_jbsq counted it already */
		__sync_fetch_and_add(&ld->outstanding, 1);
	__sync_fetch_and_add(&ld->dispatched, 1);
	req.sent_ns = bpf_ktime_get_ns();
	req.server = slot;
	req.svc = id;
	/* Not tracked (another CPU recorded the same request first, or no memory): no
	 * FEEDBACK or ageing could give this count back, so it goes back now. */
	if (bpf_map_update_elem(&r2p2_rt_reqs, &rk, &req, BPF_NOEXIST) != 0)
		give_back(slot, 0);
	ps->dispatched++;
	return send_to(ctx, eth, iph, udph, srv, st);
}

/*
 * feedback accounts a FEEDBACK from a server. It is consumed (XDP_DROP) unless requests
 * of its service wait in the user-space FIFO: then it goes on to r2p2-router's socket on
 * the service address, as the signal that a place has freed up. The FIFO is thus served
 * at FEEDBACK speed without user space polling the counts, and costs nothing otherwise.
 * Only the server the request was sent to may give its count back.
 */
static __always_inline int feedback(const struct iphdr *iph, const struct r2p2_hdr *h,
				    void *data_end, __u32 payload_len, struct r2p2_rt_stats *st)
{
	const struct r2p2_feedback *fb = (const void *)(h + 1);
	struct r2p2_rt_req_key rk = {};
	struct r2p2_rt_req *req, done = {};
	struct r2p2_rt_server *srv;
	struct r2p2_rt_fifo *q;
	__u32 slot, id;

	if (payload_len < sizeof(*fb) || (void *)(fb + 1) > data_end) {
		st->passed_malformed++;
		return XDP_PASS;
	}
	rk.client = fb->ip;
	rk.port = fb->port;
	rk.rid = fb->rid;
	req = bpf_map_lookup_elem(&r2p2_rt_reqs, &rk);
	if (!req)
		goto unknown;
	slot = req->server;
	id = req->svc;
	srv = bpf_map_lookup_elem(&r2p2_rt_srvs, &slot);
	if (!srv || srv->addr != iph->saddr)
		goto unknown;
	if (bpf_map_delete_elem(&r2p2_rt_reqs, &rk) != 0)
		goto unknown; /* aged out by user space this very moment: it gave the count back */
	give_back(slot, 1);
	done.sent_ns = bpf_ktime_get_ns();
	done.server = slot;
	done.svc = id;
	bpf_map_update_elem(&r2p2_rt_done, &rk, &done, BPF_ANY);
	q = bpf_map_lookup_elem(&r2p2_rt_fifo, &id);
	if (q && q->queued) {
		st->feedback_wake++;
		return XDP_PASS;
	}
	st->feedback++;
	return XDP_DROP;
unknown:
	st->feedback_unknown++;
	return XDP_DROP;
}

SEC("xdp")
int r2p2_router(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor nh = {.pos = data};
	struct r2p2_rt_svc_key key = {};
	struct r2p2_rt_stats *st;
	struct r2p2_rt_svc *svc;
	struct r2p2_hdr *h;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udph;
	__u32 zero = 0, tot_len, hdrsize;
	int eth_type, udp_len;

	st = bpf_map_lookup_elem(&r2p2_rt_stats, &zero);
	if (!st)
		return XDP_PASS; /* cannot happen: entry 0 of a per-CPU array always exists */

	eth_type = parse_ethhdr(&nh, data_end, &eth);
	if (eth_type != r2p2_bpf_htons(ETH_P_IP))
		goto not_routed;
	if (parse_iphdr(&nh, data_end, &iph) != R2P2_PROTO_UDP)
		goto not_routed;
	hdrsize = iph->ihl * 4;
	tot_len = r2p2_bpf_ntohs(iph->tot_len);
	if (tot_len < hdrsize || (void *)iph + tot_len > data_end)
		goto not_routed;
	if (iph->frag_off & r2p2_bpf_htons(R2P2_IP_MF | R2P2_IP_OFFSET))
		goto not_routed;
	udp_len = parse_udphdr(&nh, data_end, &udph);
	if (udp_len < 0)
		goto not_routed;
	key.addr = iph->daddr;
	key.port = udph->dest;
	svc = bpf_map_lookup_elem(&r2p2_rt_svcs, &key);
	if (!svc)
		goto not_routed;

	h = (struct r2p2_hdr *)(udph + 1);
	if ((__u32)udp_len != tot_len - hdrsize ||
	    (__u32)udp_len < sizeof(struct udphdr) + R2P2_HDR_LEN || (void *)(h + 1) > data_end ||
	    !r2p2_hdr_valid(h, (__u32)udp_len - sizeof(struct udphdr))) {
		st->passed_malformed++;
		return XDP_PASS;
	}
	if (r2p2_hdr_type(h) == R2P2_FEEDBACK)
		return feedback(iph, h, data_end,
				(__u32)udp_len - sizeof(struct udphdr) - R2P2_HDR_LEN, st);
	if (r2p2_hdr_type(h) != R2P2_REQUEST || !(h->flags & R2P2_F_FIRST)) {
		st->passed_other++;
		return XDP_PASS;
	}
	return route(ctx, eth, iph, udph, h, svc, st);

not_routed:
	st->passed_not_routed++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
