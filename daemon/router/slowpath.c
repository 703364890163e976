// SPDX-License-Identifier: MIT
/*
 * The JBSQ slow path: requests that find every server holding n wait here, first come
 * first served, and leave on the next FEEDBACK.
 *
 * Mechanism: the XDP program passes such a request to the kernel (XDP_PASS), which
 * delivers it to our UDP socket bound on the service address:port, with the client's
 * address as the datagram's source. We dispatch it through a raw IPv4 socket
 * (IPPROTO_RAW, so we write the IP header) with the client's address as the source, so
 * the server answers the client directly, exactly as for the fast path. Why not AF_XDP:
 * the slow path only runs when the fleet is saturated, where one copy through the
 * kernel is noise next to the wait, and a plain socket needs no UMEM, no queue binding
 * and works in the same way over every driver. Ordering: while the FIFO is not empty
 * r2p2_rt_fifo says so and the program sends new requests of the service here too, so
 * none overtakes a waiting one; FEEDBACK is passed up then as well and wakes us.
 */
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/ip.h>
#include <linux/udp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <r2p2/wire.h>

#include "log.h"
#include "router.skel.h"

#define INPUT_BATCH 256

int slow_open(struct router *r, struct rt_service *s)
{
	struct sockaddr_in sin = {
	    .sin_family = AF_INET, .sin_addr.s_addr = s->cfg.addr, .sin_port = s->cfg.port};
	int one = 1, fd;

	(void)r;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* the address may be configured after we start */
	setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		int e = errno;

		log_err("[router %s]: binding the service address: %s", s->cfg.name, strerror(e));
		close(fd);
		return -e;
	}
	s->fd = fd;
	return 0;
}

void slow_publish(struct router *r, struct rt_service *s)
{
	s->stats.queued = s->len;
	s->stats.capacity = s->cap;
	if (bpf_map__update_elem(r->skel->maps.r2p2_rt_fifo, &s->id, sizeof(s->id), &s->stats,
				 sizeof(s->stats), BPF_ANY) != 0)
		log_err("[router %s]: updating r2p2_rt_fifo: %s", s->cfg.name, strerror(errno));
}

static uint16_t rid_of(const struct rt_waiting *w)
{
	const struct r2p2_hdr *h = (const struct r2p2_hdr *)w->pkt;

	return h->rid;
}

/* queued returns whether the request of `w` (client, port, rid) already waits. */
static bool queued(const struct rt_service *s, const struct rt_waiting *w)
{
	for (unsigned i = 0; i < s->len; i++) {
		const struct rt_waiting *q = &s->fifo[(s->head + i) % s->cap];

		if (q->client == w->client && q->port == w->port && rid_of(q) == rid_of(w))
			return true;
	}
	return false;
}

/* take handles one datagram `w` (filled in the FIFO's next free entry). */
static void take(struct rt_service *s, struct rt_waiting *w, uint64_t now)
{
	const struct r2p2_hdr *h = (const struct r2p2_hdr *)w->pkt;

	if (!r2p2_hdr_valid(h, w->len)) {
		s->stats.no_service++;
		return;
	}
	if (r2p2_hdr_type(h) == R2P2_FEEDBACK)
		return; /* accounted by the program; passed up only to wake us */
	if (r2p2_hdr_type(h) != R2P2_REQUEST || !(h->flags & R2P2_F_FIRST)) {
		s->stats.no_service++;
		return;
	}
	if (queued(s, w))
		return; /* a retransmission of a waiting request */
	w->since_ns = now;
	s->len++;
	s->stats.enqueued++;
}

void slow_input(struct router *r, struct rt_service *s, uint64_t now)
{
	static struct rt_waiting spill; /* where a datagram goes when the FIFO is full */
	unsigned before = s->len;
	uint64_t drops = s->stats.dropped_full;

	(void)r;
	for (int k = 0; k < INPUT_BATCH; k++) {
		bool full = s->len == s->cap;
		struct rt_waiting *w = full ? &spill : &s->fifo[(s->head + s->len) % s->cap];
		struct sockaddr_in from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(s->fd, w->pkt, sizeof(w->pkt), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);

		if (n < 0)
			break;
		w->len = (uint16_t)n;
		w->client = from.sin_addr.s_addr;
		w->port = from.sin_port;
		if (full) {
			const struct r2p2_hdr *h = (const struct r2p2_hdr *)w->pkt;

			if (r2p2_hdr_valid(h, w->len) && r2p2_hdr_type(h) == R2P2_REQUEST)
				s->stats.dropped_full++;
			continue;
		}
		take(s, w, now);
	}
	if (s->len != before || s->stats.dropped_full != drops)
		slow_publish(r, s);
}

/* claim takes a place at the least loaded server up of `s` (under JBSQ only below n).
 * Returns the slot, or -1 when there is none. */
static int claim(struct router *r, struct rt_service *s)
{
	struct r2p2_rt_svc_key k = {.addr = s->cfg.addr, .port = s->cfg.port};
	int32_t best_load = INT32_MAX, old;
	struct r2p2_rt_svc v;
	int best = -1;

	if (bpf_map__lookup_elem(r->skel->maps.r2p2_rt_svcs, &k, sizeof(k), &v, sizeof(v), 0))
		return -1;
	for (unsigned j = 0; j < v.num_servers && j < R2P2_RT_SVC_SERVERS; j++) {
		uint32_t i = v.slots[j];
		int32_t l;

		if (i >= R2P2_RT_MAX_SERVERS)
			continue;
		l = __atomic_load_n(&r->load[i].outstanding, __ATOMIC_RELAXED);
		if (l < best_load) {
			best_load = l;
			best = (int)i;
		}
	}
	if (best < 0)
		return -1;
	old = __atomic_fetch_add(&r->load[best].outstanding, 1, __ATOMIC_RELAXED);
	if (s->cfg.policy == R2P2_RT_JBSQ && old >= (int32_t)s->cfg.bound) {
		__atomic_fetch_sub(&r->load[best].outstanding, 1, __ATOMIC_RELAXED);
		return -1;
	}
	return best;
}

static uint16_t csum_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t csum_add(const void *p, size_t len, uint32_t s)
{
	const uint8_t *b = p;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (len & 1)
		s += (uint32_t)(b[len - 1] << 8);
	return s;
}

/* send_raw sends the waiting request `w` to the server in `slot`, from the client's
 * address and port. Returns 0 or a negative errno. */
static int send_raw(struct router *r, uint32_t slot, const struct rt_waiting *w)
{
	struct {
		struct iphdr ip;
		struct udphdr udp;
		uint8_t payload[sizeof(w->pkt)];
	} __attribute__((packed)) pkt;
	const struct rt_slot *sl = &r->slots[slot];
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = sl->addr};
	size_t udp_len = sizeof(pkt.udp) + w->len;
	uint32_t sum;
	uint16_t c;

	memset(&pkt, 0, sizeof(pkt.ip) + sizeof(pkt.udp));
	pkt.ip.version = 4;
	pkt.ip.ihl = 5;
	pkt.ip.tot_len = htons((uint16_t)(sizeof(pkt.ip) + udp_len));
	pkt.ip.frag_off = htons(0x4000); /* DF */
	pkt.ip.ttl = 64;
	pkt.ip.protocol = IPPROTO_UDP;
	pkt.ip.saddr = w->client;
	pkt.ip.daddr = sl->addr; /* the kernel fills id and the header checksum */
	pkt.udp.source = w->port;
	pkt.udp.dest = sl->port;
	pkt.udp.len = htons((uint16_t)udp_len);
	memcpy(pkt.payload, w->pkt, w->len);
	sum = csum_add(&pkt.ip.saddr, 8, IPPROTO_UDP + (uint32_t)udp_len);
	sum = csum_add(&pkt.udp, udp_len, sum);
	c = (uint16_t)~csum_fold(sum);
	pkt.udp.check = htons(c ? c : 0xffff);
	if (sendto(r->raw_fd, &pkt, sizeof(pkt.ip) + udp_len, 0, (struct sockaddr *)&to,
		   sizeof(to)) < 0)
		return -errno;
	return 0;
}

/* dispatch_one sends the FIFO's head to a server with room. Returns false when none has. */
static bool dispatch_one(struct router *r, struct rt_service *s, const struct rt_waiting *w,
			 uint64_t now)
{
	int reqs = bpf_map__fd(r->skel->maps.r2p2_rt_reqs), slot, rc;
	struct r2p2_rt_req_key key = {.client = w->client, .port = w->port, .rid = rid_of(w)};
	struct r2p2_rt_req req = {.sent_ns = now, .svc = s->id};

	slot = claim(r, s);
	if (slot < 0)
		return false;
	req.server = (uint32_t)slot;
	/* recorded before it leaves, so that its FEEDBACK always finds it */
	if (bpf_map_update_elem(reqs, &key, &req, BPF_ANY) != 0) {
		__atomic_fetch_sub(&r->load[slot].outstanding, 1, __ATOMIC_RELAXED);
		return false;
	}
	rc = send_raw(r, (uint32_t)slot, w);
	if (rc < 0) {
		if (bpf_map_delete_elem(reqs, &key) == 0)
			__atomic_fetch_sub(&r->load[slot].outstanding, 1, __ATOMIC_RELAXED);
		log_warn("[router %s]: sending a waiting request: %s (dropped)", s->cfg.name,
			 strerror(-rc));
		s->stats.no_service++;
		return true;
	}
	__atomic_fetch_add(&r->load[slot].dispatched, 1, __ATOMIC_RELAXED);
	s->stats.dispatched++;
	return true;
}

void slow_dispatch(struct router *r, struct rt_service *s, uint64_t now)
{
	uint64_t limit = (uint64_t)r->cfg.timeout_ms * 1000000ull;
	unsigned before = s->len;

	while (s->len > 0) {
		const struct rt_waiting *w = &s->fifo[s->head];

		if (now - w->since_ns > limit) {
			s->stats.expired++; /* its client has given up or retried by now */
		} else if (!dispatch_one(r, s, w, now)) {
			break;
		}
		s->head = (s->head + 1) % s->cap;
		s->len--;
	}
	if (s->len != before)
		slow_publish(r, s);
}
