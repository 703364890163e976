// SPDX-License-Identifier: MIT
/*
 * The kernel-UDP data path: one client socket per worker (an ephemeral port,
 * so responses come back to the worker that called) and one socket per served
 * service, bound by every worker with SO_REUSEPORT. Receives are multishot
 * recvmsg into provided buffers; sends are sendmsg SQEs from a pool of slots,
 * submitted once per loop iteration. The AF_XDP backend (net_xsk.c) receives
 * through these sockets too: the XDP program passes some packets to the kernel.
 */
#include "worker_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "err.h"
#include "log.h"

#define SOCK_BUF_BYTES (8 << 20)

int port_probe(const struct cfg *c, uint16_t port, char *err, size_t err_len)
{
	int family = c->listen_addr.family == AF_INET6 ? AF_INET6 : AF_INET;
	struct r2p2_addr a = c->listen_addr;
	struct sockaddr_in6 sa;
	int zero = 0, fd, ret = 0;

	fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ret = -errno;
	if (fd >= 0 && family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	a.port = htons(port);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, addr_to_sockaddr(&a, family, &sa)) < 0)
		ret = -errno;
	if (ret)
		set_err(err, err_len, "UDP port %u on %s: %s%s", port, c->listen, strerror(-ret),
			ret == -EADDRINUSE ? " (another process, or another r2p2d, has it)" : "");
	if (fd >= 0)
		close(fd);
	return ret;
}

/* set_buffers asks for large socket buffers, beyond rmem_max when we have CAP_NET_ADMIN:
 * bursts (a thousand calls answered at once) must queue, not drop. */
static void set_buffers(int fd)
{
	int bufsz = SOCK_BUF_BYTES;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
}

int udp_open(struct worker *w, uint16_t port, char *err, size_t err_len)
{
	const struct cfg *c = &w->cfg->cfg;
	struct sockaddr_in6 sa;
	int one = 1, zero = 0, ret;
	struct r2p2_addr a = c->listen_addr;
	int fd;

	fd = socket(w->family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	/* Every worker binds the same service port; the kernel spreads clients by 4-tuple,
	 * so all packets of one client flow reach the same worker. (port_probe, run by the
	 * main thread first, makes a port taken by another process an error.) */
	if (port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	set_buffers(fd);
	if (w->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	a.port = htons(port);
	if (bind(fd, (struct sockaddr *)&sa, addr_to_sockaddr(&a, w->family, &sa)) < 0)
		goto fail;
	return fd;
fail:
	ret = -errno;
	set_err(err, err_len, "worker %u: UDP socket on %s port %u: %s", w->id, c->listen, port,
		strerror(errno));
	if (fd >= 0)
		close(fd);
	return ret;
}

int udp_slot_by_port(const struct worker *w, uint16_t port)
{
	for (int i = 1; i < MAX_SOCKS; i++)
		if (w->socks[i].fd >= 0 && !w->socks[i].closing && w->socks[i].port == port)
			return i;
	return -1;
}

static void arm_recv(struct worker *w, uint32_t slot)
{
	static struct msghdr recv_msg = {.msg_namelen = sizeof(struct sockaddr_in6)};
	struct wsock *s = &w->socks[slot];
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe) {
		w->udp_unarmed = true; /* retried on the next loop iteration */
		return;
	}
	io_uring_prep_recvmsg_multishot(sqe, s->fd, &recv_msg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RX_BGID;
	io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, slot, 0));
	s->recv_armed = true;
}

static bool on_sock(const struct exec_req *e, const void *arg)
{
	return e->sock == *(const uint32_t *)arg && sec_exec_uses_service(&e->sec);
}

/* retire_service frees a service socket's security state; the exchanges still
 * waiting on it end with DROP. */
static void retire_service(struct worker *w, uint32_t slot)
{
	exec_drop_where(w, on_sock, &slot, true, now_ns());
	sec_service_retire(&w->socks[slot].sec, &w->tls_retired);
}

static void free_sock(struct worker *w, uint32_t slot)
{
	struct wsock *s = &w->socks[slot];

	retire_service(w, slot);
	close(s->fd);
	s->fd = -1;
	s->closing = false;
}

static void close_sock(struct worker *w, uint32_t slot)
{
	struct wsock *s = &w->socks[slot];

	if (s->recv_armed) {
		cancel_op(w, ud_make(UD_RECV, slot, 0));
		s->closing = true;
	} else {
		free_sock(w, slot);
	}
}

static int free_slot(const struct worker *w)
{
	for (int j = 1; j < MAX_SOCKS; j++)
		if (w->socks[j].fd < 0)
			return j;
	return -1;
}

/* open_service opens the socket of served service `sv` in a free slot. */
static int open_service(struct worker *w, const struct cfg_serve *sv, char *err, size_t err_len)
{
	int slot = free_slot(w), fd;

	if (slot < 0) {
		set_err(err, err_len, "worker %u: too many service sockets", w->id);
		return -ENOSPC;
	}
	fd = udp_open(w, sv->port, err, err_len);
	if (fd < 0)
		return fd;
	w->socks[slot] = (struct wsock){.fd = fd, .port = sv->port};
	w->udp_unarmed = true;
	int ret = sec_service_configure(&w->sec, &w->socks[slot].sec, sv, err, err_len);
	if (ret < 0)
		return ret;
	if (w->ring.ring_fd > 0 && w->thread)
		arm_recv(w, (uint32_t)slot);
	return 0;
}

int udp_sync_services(struct worker *w, char *err, size_t err_len)
{
	const struct cfg *c = &w->cfg->cfg;
	int ret;

	for (int i = 1; i < MAX_SOCKS; i++) {
		struct wsock *s = &w->socks[i];
		const struct cfg_serve *sv;
		if (s->fd < 0 || s->closing)
			continue;
		sv = cfg_find_serve_port(c, s->port);
		if (!sv)
			close_sock(w, (uint32_t)i);
		else if ((ret = sec_service_configure(&w->sec, &s->sec, sv, err, err_len)) < 0)
			return ret;
	}
	for (size_t i = 0; i < c->num_serves; i++) {
		if (udp_slot_by_port(w, c->serves[i].port) >= 0)
			continue;
		ret = open_service(w, &c->serves[i], err, err_len);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void udp_arm_all(struct worker *w)
{
	for (int i = 0; i < MAX_SOCKS; i++)
		if (w->socks[i].fd >= 0)
			arm_recv(w, (uint32_t)i);
}

/* udp_rearm, at the end of a loop iteration: a receive for every socket without one
 * (a multishot receive ended, or the socket is new); nothing to look at otherwise. */
void udp_rearm(struct worker *w)
{
	bool unarmed = false;

	if (!w->udp_unarmed)
		return;
	for (int i = 0; i < MAX_SOCKS; i++) {
		if (w->socks[i].fd >= 0 && !w->socks[i].recv_armed && !w->socks[i].closing)
			arm_recv(w, (uint32_t)i);
		unarmed |= w->socks[i].fd >= 0 && !w->socks[i].recv_armed && !w->socks[i].closing;
	}
	w->udp_unarmed = unarmed; /* no SQE for one: the next iteration tries again */
}

static void tx_direct(struct worker *w, int fd, struct msghdr *m)
{
	w->tx_fallback++;
	if (sendmsg(fd, m, MSG_DONTWAIT) < 0)
		log_debug("worker %u: sendmsg: %s", w->id, strerror(errno));
}

void udp_send(struct worker *w, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
	      int iovcnt)
{
	struct wsock *s = &w->socks[sock];
	struct io_uring_sqe *sqe;
	struct tx_slot *t;
	size_t len = 0;
	uint32_t slot;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > TX_BUF_SIZE)
		return;
	if (w->num_tx_free == 0) {
		/* Pool exhausted (a burst larger than TX_SLOTS): send synchronously. */
		struct sockaddr_in6 sa;
		struct msghdr m = {.msg_name = &sa,
				   .msg_namelen = addr_to_sockaddr(dst, w->family, &sa),
				   .msg_iov = (struct iovec *)iov,
				   .msg_iovlen = (size_t)iovcnt};
		tx_direct(w, s->fd, &m);
		return;
	}
	slot = w->tx_free[--w->num_tx_free];
	t = &w->tx[slot];
	len = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(t->buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	t->iov = (struct iovec){.iov_base = t->buf, .iov_len = len};
	t->msg = (struct msghdr){.msg_name = &t->sa,
				 .msg_namelen = addr_to_sockaddr(dst, w->family, &t->sa),
				 .msg_iov = &t->iov,
				 .msg_iovlen = 1};
	sqe = get_sqe(w);
	if (!sqe) {
		tx_direct(w, s->fd, &t->msg);
		w->tx_free[w->num_tx_free++] = slot;
		return;
	}
	io_uring_prep_sendmsg(sqe, s->fd, &t->msg, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, slot, 0));
}

void udp_handle_send(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t slot = ud_idx(cqe->user_data);

	if (cqe->res < 0)
		log_debug("worker %u: send: %s", w->id, strerror(-cqe->res));
	if (slot < TX_SLOTS)
		w->tx_free[w->num_tx_free++] = slot;
}

/* recv_input hands one received datagram in buffer `buf` to the backend. */
static void recv_input(struct worker *w, uint32_t slot, uint8_t *buf, int res, uint64_t now)
{
	static const struct msghdr recv_msg = {.msg_namelen = sizeof(struct sockaddr_in6)};
	struct msghdr *m = (struct msghdr *)&recv_msg;
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, res, m);
	struct r2p2_addr src;

	if (!o || (o->flags & MSG_TRUNC) || o->namelen == 0)
		return;
	addr_from_sockaddr(io_uring_recvmsg_name(o), &src);
	w->net->input(w, slot, &src, io_uring_recvmsg_payload(o, m),
		      io_uring_recvmsg_payload_length(o, res, m), now);
}

void udp_handle_recv(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	uint32_t slot = ud_idx(cqe->user_data);
	struct wsock *s = &w->socks[slot];

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		uint8_t *buf = w->rx_bufs + (size_t)bid * RX_BUF_SIZE;

		if (cqe->res > 0 && !s->closing)
			recv_input(w, slot, buf, cqe->res, now);
		io_uring_buf_ring_add(w->br, buf, RX_BUF_SIZE, bid, io_uring_buf_ring_mask(RX_BUFS),
				      0);
		io_uring_buf_ring_advance(w->br, 1);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	s->recv_armed = false;
	w->udp_unarmed = true;
	if (s->closing)
		free_sock(w, slot);
	else if (cqe->res < 0 && cqe->res != -ENOBUFS)
		log_warn("worker %u: recv on port %u: %s", w->id, s->port, strerror(-cqe->res));
	/* re-armed at the end of the loop iteration */
}

/* udp_close_all frees every socket and its service state (at exit). */
void udp_close_all(struct worker *w)
{
	for (int i = 0; i < MAX_SOCKS; i++) {
		sec_service_retire(&w->socks[i].sec, NULL);
		if (w->socks[i].fd >= 0)
			close(w->socks[i].fd);
		w->socks[i].fd = -1;
	}
}

static void udp_input(struct worker *w, unsigned sock, const struct r2p2_addr *src,
		      const uint8_t *pkt, size_t len, uint64_t now)
{
	eng_input(w->eng, sock, src, pkt, len, now);
}

static void udp_stats(struct worker *w, struct worker_snap *s)
{
	s->tx_fallback = w->tx_fallback;
}

static void udp_complete(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	(void)w, (void)cqe, (void)now; /* the kernel-UDP backend has no completions of its own */
}

static void udp_send_op(struct worker *w, unsigned sock, const struct r2p2_addr *dst,
			const struct iovec *iov, int iovcnt)
{
	udp_send(w, sock, dst, iov, iovcnt);
}

const struct net_ops net_udp_ops = {
    .name = "udp",
    .arm = udp_arm_all,
    .send = udp_send_op,
    .input = udp_input,
    .flush = udp_rearm,
    .complete = udp_complete,
    .stats = udp_stats,
};
