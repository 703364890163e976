// SPDX-License-Identifier: MIT
/*
 * The AF_XDP data path: the XDP program steers R2P2 packets of the service
 * ports by (source, port, rid) into one AF_XDP socket per rx queue and worker;
 * responses leave through the same sockets with the next hop's MAC from the
 * kernel's tables (neigh.c). Whatever cannot go that way (next hop not resolved
 * yet, tx ring full, the client socket) goes through the kernel's UDP sockets
 * (net_udp.c), so nothing is lost.
 */
#include "worker_int.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "neigh.h"
#include "xsk.h"

int worker_use_xdp(struct worker *w, struct xsk_port **ports, unsigned n, const char *ifname,
		   struct worker **all, unsigned num_workers, char *err, size_t err_len)
{
	w->peers_all = all;
	w->num_peers_all = num_workers;
	if (n > MAX_XPORTS)
		n = MAX_XPORTS;
	w->neigh = neigh_new(ifname, err, err_len);
	if (!w->neigh)
		return -ENODEV;
	memcpy(w->xports, ports, n * sizeof(*ports));
	w->num_xports = n;
	w->net = &net_xsk_ops;
	return 0;
}

/* UD_NET indexes: the AF_XDP sockets first, then the neighbour watch. */
#define NEIGH_IDX MAX_XPORTS

static void xsk_arm(struct worker *w)
{
	udp_arm_all(w);
	for (unsigned i = 0; i < w->num_xports; i++)
		arm_poll(w, xsk_port_fd(w->xports[i]), UD_NET, i);
	if (w->neigh)
		arm_poll(w, neigh_fd(w->neigh), UD_NET, NEIGH_IDX);
}

/*
 * try_send sends a service socket's datagram over AF_XDP, with the next hop's MAC
 * from the kernel's tables. Returns false when it cannot (next hop not resolved
 * yet, tx ring full).
 */
static bool try_send(struct worker *w, const struct wsock *s, const struct r2p2_addr *dst,
		     const struct iovec *iov, int iovcnt)
{
	struct r2p2_addr src = w->cfg->cfg.listen_addr, via;
	uint8_t mac[6];
	static const uint8_t any[16];

	if (neigh_lookup(w->neigh, dst, mac, &via) < 0)
		return false;
	if (memcmp(src.addr, any, 16) == 0 || src.family != dst->family)
		src = via;
	src.port = htons(s->port);
	if (xsk_port_send(w->xports[0], &src, dst, mac, iov, iovcnt) < 0)
		return false;
	w->xsk_dirty = true;
	return true;
}

static void xsk_send(struct worker *w, unsigned sock, const struct r2p2_addr *dst,
		     const struct iovec *iov, int iovcnt)
{
	if (sock != 0) {
		if (try_send(w, &w->socks[sock], dst, iov, iovcnt)) {
			w->xsk_tx++;
			return;
		}
		w->xsk_tx_fallback++;
	}
	udp_send(w, sock, dst, iov, iovcnt);
}

/*
 * steer_elsewhere: every packet of a request must reach the worker the XDP
 * program picks by (source, port, rid). Packets it passes to the kernel instead
 * (IPv6 fragments of a full-size packet, an extension header, no socket in the
 * slot) arrive on some worker's UDP socket by reuseport's own hash; hand them to
 * the worker the program would have chosen. Returns true when forwarded.
 */
static bool steer_elsewhere(struct worker *w, uint32_t slot, const struct r2p2_addr *src,
			    const uint8_t *pkt, size_t len)
{
	__be32 saddr[4];
	const struct r2p2_hdr *h = (const struct r2p2_hdr *)pkt;
	unsigned target;
	struct cmd *c;

	if (w->num_peers_all < 2 || slot == 0 || !r2p2_hdr_valid(h, len))
		return false;
	if (src->family == AF_INET) {
		__be32 v4;
		memcpy(&v4, src->addr, 4);
		r2p2_v4mapped(saddr, v4);
	} else {
		memcpy(saddr, src->addr, 16);
	}
	target = r2p2_flow_hash(saddr, src->port, h->rid) % w->num_peers_all;
	if (target == w->id)
		return false;
	c = malloc(sizeof(*c) + len);
	if (!c)
		return false;
	memset(c, 0, sizeof(*c));
	c->type = CMD_PACKET;
	c->port = w->socks[slot].port;
	c->src = *src;
	c->len = len;
	memcpy(c->data, pkt, len);
	w->xsk_forwarded++;
	worker_post(w->peers_all[target], c);
	return true;
}

static void xsk_input(struct worker *w, unsigned sock, const struct r2p2_addr *src,
		      const uint8_t *pkt, size_t len, uint64_t now)
{
	if (!steer_elsewhere(w, sock, src, pkt, len))
		eng_input(w->eng, sock, src, pkt, len, now);
}

static void xsk_rx(void *ctx, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		   const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	/* The program steers only service ports; find the socket slot of this one. */
	int slot = udp_slot_by_port(w, ntohs(dst->port));

	if (slot > 0)
		eng_input(w->eng, (unsigned)slot, src, payload, len, w->rx_now);
}

/* AF_XDP: hand this iteration's frames to the kernel (kicking only when it asks)
 * and take back the frames it finished sending. */
static void xsk_flush(struct worker *w)
{
	udp_rearm(w);
	for (unsigned i = 0; i < w->num_xports; i++) {
		if (w->xsk_dirty)
			xsk_port_flush(w->xports[i]);
		if (xsk_port_pending(w->xports[i]))
			xsk_port_complete(w->xports[i]);
	}
	w->xsk_dirty = false;
}

static void xsk_complete(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	uint32_t i = ud_idx(cqe->user_data);
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (i == NEIGH_IDX) {
		neigh_process(w->neigh);
		if (!more)
			arm_poll(w, neigh_fd(w->neigh), UD_NET, NEIGH_IDX);
		return;
	}
	if (i >= w->num_xports)
		return;
	w->rx_now = now;
	/* Drain the rx ring; the poll is level-triggered and fires again if we stop early. */
	for (int n = 0; n < 16 && xsk_port_rx(w->xports[i], xsk_rx, w, 256) == 256; n++)
		;
	if (!more)
		arm_poll(w, xsk_port_fd(w->xports[i]), UD_NET, i);
}

static void xsk_stats(struct worker *w, struct worker_snap *s)
{
	s->tx_fallback = w->tx_fallback;
	s->xsk_tx = w->xsk_tx;
	s->xsk_tx_fallback = w->xsk_tx_fallback;
	for (unsigned i = 0; i < w->num_xports; i++) {
		struct xsk_port_stats xs;
		xsk_port_get_stats(w->xports[i], &xs);
		s->xsk_rx += xs.rx;
		s->xsk_rx_bad += xs.rx_dropped_parse;
	}
}

const struct net_ops net_xsk_ops = {
    .name = "xdp",
    .arm = xsk_arm,
    .send = xsk_send,
    .input = xsk_input,
    .flush = xsk_flush,
    .complete = xsk_complete,
    .stats = xsk_stats,
};
