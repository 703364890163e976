/* SPDX-License-Identifier: MIT */
/*
 * AF_XDP ports over libxdp's ring helpers (see xsk.h for the frame and locking model).
 * The Ethernet/IP/UDP framing the ports use is xsk_frame.c.
 */
#include "xsk.h"
#include "err.h"

#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <netinet/in.h>

#include <xdp/xsk.h>

#define RX_BATCH 64
#define TX_REFILL 32	  /* tx frames a port takes from the shared stack at once */
#define COPY_MAX_KICKS 64 /* a copy-mode kick sends a bounded batch; bound the retries */

struct xsk_queue {
	pthread_mutex_t lock; /* guards fill, comp, free_tx, fill_backlog */
	struct xsk_umem *umem;
	uint8_t *area;
	size_t area_len;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	uint32_t frame_size;
	uint32_t num_rx_frames; /* frames [0, num_rx_frames) are the rx pool */
	uint32_t num_frames;
	uint64_t *free_tx; /* stack of free tx frame addresses */
	uint32_t num_free_tx;
	/* rx frames waiting for room on the fill ring: the kernel publishes its fill
	 * consumer index lazily, so a recycled frame may briefly find the ring "full" */
	uint64_t *fill_backlog;
	uint32_t num_fill_backlog;
	struct xsk_port_config cfg;
	char ifname[IF_NAMESIZE];
	unsigned queue;
	unsigned ifindex;
	unsigned mtu;
	uint8_t mac[6];
	bool zerocopy;
	unsigned num_ports;
};

struct xsk_port {
	struct xsk_queue *q;
	bool owns_queue;
	struct xsk_socket *xsk;
	int fd;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	uint32_t tx_pending; /* reserved, filled, not yet submitted */
	uint32_t num_cache;
	uint64_t cache[XSK_TX_CACHE];
	uint16_t ip_id;
	struct xsk_port_stats stats;
};

static const char *mode_name(enum xsk_mode m)
{
	switch (m) {
	case XSK_MODE_COPY:
		return "copy";
	case XSK_MODE_ZEROCOPY:
		return "zero-copy";
	default:
		return "auto";
	}
}

void xsk_port_config_default(struct xsk_port_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->num_frames = 4096;
	cfg->frame_size = 2048;
	cfg->ring_size = 2048;
	cfg->mode = XSK_MODE_AUTO;
	cfg->verify_rx_csum = false;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* ---- queue: UMEM, fill and completion rings --------------------------------------- */

static int if_info(const char *ifname, uint8_t mac[6], unsigned *mtu)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int ret = 0;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		ret = -errno;
		goto out;
	}
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) {
		ret = -errno;
		goto out;
	}
	*mtu = (unsigned)ifr.ifr_mtu;
out:
	close(fd);
	return ret;
}

/* umem_setup registers the UMEM and creates its fill and completion rings. */
static int umem_setup(struct xsk_queue *q)
{
	struct xsk_umem_config uc = {
	    .fill_size = q->num_rx_frames,
	    .comp_size = q->num_frames - q->num_rx_frames,
	    .frame_size = q->frame_size,
	    .frame_headroom = 0,
	    .flags = 0,
	};
	return xsk_umem__create(&q->umem, q->area, q->area_len, &q->fill, &q->comp, &uc);
}

struct xsk_queue *xsk_queue_new(const char *ifname, unsigned queue,
				const struct xsk_port_config *cfg, char *err, size_t err_len)
{
	struct xsk_port_config c;
	int e;
	if (cfg)
		c = *cfg;
	else
		xsk_port_config_default(&c);
	if (!c.num_frames)
		c.num_frames = 4096;
	if (!c.frame_size)
		c.frame_size = 2048;
	if (!c.ring_size)
		c.ring_size = c.num_frames / 2;
	if (!ifname || strlen(ifname) >= IF_NAMESIZE || !is_pow2(c.num_frames) ||
	    c.num_frames < 64 || (c.frame_size != 2048 && c.frame_size != 4096) ||
	    !is_pow2(c.ring_size) || c.mode > XSK_MODE_ZEROCOPY) {
		set_err(err, err_len,
			"xsk: %s queue %u: bad config (frames %u, frame size %u, ring %u)",
			ifname ? ifname : "(null)", queue, c.num_frames, c.frame_size, c.ring_size);
		errno = EINVAL;
		return NULL;
	}
	struct xsk_queue *q = calloc(1, sizeof(*q));
	if (!q) {
		set_err(err, err_len, "xsk: %s queue %u: out of memory", ifname, queue);
		errno = ENOMEM;
		return NULL;
	}
	q->area = MAP_FAILED;
	pthread_mutex_init(&q->lock, NULL);
	q->cfg = c;
	snprintf(q->ifname, sizeof(q->ifname), "%s", ifname);
	q->queue = queue;
	q->frame_size = c.frame_size;
	q->num_frames = c.num_frames;
	q->num_rx_frames = c.num_frames / 2;
	q->ifindex = if_nametoindex(ifname);
	if (!q->ifindex) {
		e = errno;
		set_err(err, err_len, "xsk: no interface %s: %s", ifname, strerror(e));
		goto fail;
	}
	e = -if_info(ifname, q->mac, &q->mtu);
	if (e) {
		set_err(err, err_len, "xsk: %s: cannot read MAC/MTU: %s", ifname, strerror(e));
		goto fail;
	}
	uint32_t num_tx = q->num_frames - q->num_rx_frames;
	q->free_tx = calloc(num_tx, sizeof(uint64_t));
	q->fill_backlog = calloc(q->num_rx_frames, sizeof(uint64_t));
	if (!q->free_tx || !q->fill_backlog) {
		e = ENOMEM;
		set_err(err, err_len, "xsk: %s queue %u: out of memory", ifname, queue);
		goto fail;
	}
	q->area_len = (size_t)q->num_frames * q->frame_size;
	q->area = mmap(NULL, q->area_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (q->area == MAP_FAILED) {
		e = errno;
		set_err(err, err_len, "xsk: %s queue %u: mmap of %zu-byte UMEM: %s", ifname, queue,
			q->area_len, strerror(e));
		goto fail;
	}
	e = -umem_setup(q);
	if (e) {
		q->umem = NULL;
		set_err(err, err_len, "xsk: %s queue %u: UMEM registration (%u frames of %u): %s",
			ifname, queue, q->num_frames, q->frame_size, strerror(e));
		goto fail;
	}
	for (uint32_t i = 0; i < num_tx; i++)
		q->free_tx[i] = (uint64_t)(q->num_rx_frames + i) * q->frame_size;
	q->num_free_tx = num_tx;
	return q;
fail:
	xsk_queue_free(q);
	errno = e;
	return NULL;
}

int xsk_queue_free(struct xsk_queue *q)
{
	if (!q)
		return 0;
	if (q->num_ports)
		return -EBUSY;
	if (q->umem)
		xsk_umem__delete(q->umem);
	if (q->area != MAP_FAILED)
		munmap(q->area, q->area_len);
	free(q->free_tx);
	free(q->fill_backlog);
	pthread_mutex_destroy(&q->lock);
	free(q);
	return 0;
}

/* fill_push_locked queues the rx frames `addrs` for the fill ring and moves as many
 * queued frames as fit onto it. Returns true when the ring asks for a wakeup. */
static bool fill_push_locked(struct xsk_queue *q, const uint64_t *addrs, uint32_t n)
{
	for (uint32_t i = 0; i < n && q->num_fill_backlog < q->num_rx_frames; i++)
		q->fill_backlog[q->num_fill_backlog++] = addrs[i];
	uint32_t want = q->num_fill_backlog;
	if (want) {
		uint32_t room = xsk_prod_nb_free(&q->fill, want);
		if (room < want)
			want = room;
	}
	if (want) {
		uint32_t idx;
		if (xsk_ring_prod__reserve(&q->fill, want, &idx) == want) {
			for (uint32_t i = 0; i < want; i++)
				*xsk_ring_prod__fill_addr(&q->fill, idx + i) =
				    q->fill_backlog[--q->num_fill_backlog];
			xsk_ring_prod__submit(&q->fill, want);
		}
	}
	return xsk_ring_prod__needs_wakeup(&q->fill);
}

/* comp_reap_locked moves completed tx frames to the free stack. */
static uint32_t comp_reap_locked(struct xsk_queue *q)
{
	uint32_t idx, n = xsk_ring_cons__peek(&q->comp, UINT32_MAX, &idx);
	uint32_t num_tx = q->num_frames - q->num_rx_frames;
	uint64_t tx_lo = (uint64_t)q->num_rx_frames * q->frame_size;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = *xsk_ring_cons__comp_addr(&q->comp, idx + i);
		a &= ~(uint64_t)(q->frame_size - 1);
		if (a >= tx_lo && a < q->area_len && q->num_free_tx < num_tx)
			q->free_tx[q->num_free_tx++] = a;
	}
	if (n)
		xsk_ring_cons__release(&q->comp, n);
	return n;
}

static int bind_port(struct xsk_port *p, enum xsk_mode mode, bool first)
{
	struct xsk_queue *q = p->q;
	struct xsk_socket_config sc = {
	    .rx_size = q->cfg.ring_size,
	    .tx_size = q->cfg.ring_size,
	    .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
	    .xdp_flags = 0,
	    .bind_flags =
		XDP_USE_NEED_WAKEUP | (mode == XSK_MODE_ZEROCOPY ? XDP_ZEROCOPY : XDP_COPY),
	};
	/* The first socket of the UMEM owns the fill and completion rings (libxdp takes
	 * the ones xsk_umem__create made); later ones bind with XDP_SHARED_UMEM and
	 * libxdp ignores the ring arguments for an already known (ifindex, queue). */
	return xsk_socket__create_shared(&p->xsk, q->ifname, q->queue, q->umem, &p->rx, &p->tx,
					 first ? &q->fill : NULL, first ? &q->comp : NULL, &sc);
}

/*
 * first_bind binds the UMEM's first socket in `mode`. A failed bind leaves libxdp's
 * UMEM half set up (its fill and completion rings already handed to the failed
 * context), so the UMEM is registered afresh after each failure. -EBUSY is retried
 * for up to a second: the kernel releases the queue of a closed socket from a work
 * queue, so a socket closed just before (a restart, a reconfiguration) still holds it.
 */
static int first_bind(struct xsk_port *p, enum xsk_mode mode)
{
	struct xsk_queue *q = p->q;
	int ret = -EBUSY;
	for (int tries = 0; tries < 100; tries++) {
		if (!q->umem) {
			ret = umem_setup(q);
			if (ret) {
				q->umem = NULL;
				return ret;
			}
		}
		ret = bind_port(p, mode, true);
		if (!ret)
			return 0;
		p->xsk = NULL;
		xsk_umem__delete(q->umem);
		q->umem = NULL;
		if (ret != -EBUSY)
			break;
		usleep(10000);
	}
	/* leave a registered UMEM behind for the next attempt or xsk_queue_free */
	int r2 = umem_setup(q);
	if (r2)
		q->umem = NULL;
	return ret;
}

/* fill_rx_frames puts every rx frame of the UMEM on the fill ring. */
static void fill_rx_frames(struct xsk_queue *q)
{
	uint64_t addrs[RX_BATCH];
	for (uint32_t i = 0; i < q->num_rx_frames;) {
		uint32_t n = 0;
		while (n < RX_BATCH && i < q->num_rx_frames)
			addrs[n++] = (uint64_t)i++ * q->frame_size;
		pthread_mutex_lock(&q->lock);
		fill_push_locked(q, addrs, n);
		pthread_mutex_unlock(&q->lock);
	}
}

/* bind_later binds a further socket to the queue's UMEM, in the mode of the first. */
static int bind_later(struct xsk_port *p, char *err, size_t err_len)
{
	struct xsk_queue *q = p->q;
	int ret = bind_port(p, q->zerocopy ? XSK_MODE_ZEROCOPY : XSK_MODE_COPY, false);
	if (ret)
		set_err(err, err_len, "xsk: %s queue %u: shared-UMEM socket %u (%s): %s", q->ifname,
			q->queue, q->num_ports, q->zerocopy ? "zero-copy" : "copy", strerror(-ret));
	return ret;
}

/* bind_first binds the queue's first socket in the configured mode (auto: zero-copy,
 * else copy), then hands the kernel every rx frame. */
static int bind_first(struct xsk_port *p, char *err, size_t err_len)
{
	struct xsk_queue *q = p->q;
	enum xsk_mode m = q->cfg.mode == XSK_MODE_AUTO ? XSK_MODE_ZEROCOPY : q->cfg.mode;
	int zc_ret = 0;
	int ret = first_bind(p, m);
	if (ret && q->cfg.mode == XSK_MODE_AUTO) {
		zc_ret = ret;
		m = XSK_MODE_COPY;
		ret = first_bind(p, m);
	}
	if (ret && zc_ret) {
		set_err(err, err_len,
			"xsk: cannot bind AF_XDP socket to %s queue %u: zero-copy: %s; "
			"copy: %s",
			q->ifname, q->queue, strerror(-zc_ret), strerror(-ret));
		return ret;
	}
	if (ret) {
		set_err(err, err_len, "xsk: cannot bind AF_XDP socket to %s queue %u (%s): %s",
			q->ifname, q->queue, mode_name(q->cfg.mode), strerror(-ret));
		return ret;
	}
	q->zerocopy = m == XSK_MODE_ZEROCOPY;
	/* Every rx frame starts on the fill ring. */
	fill_rx_frames(q);
	return 0;
}

struct xsk_port *xsk_queue_add_port(struct xsk_queue *q, char *err, size_t err_len)
{
	struct xsk_port *p = calloc(1, sizeof(*p));
	if (!p) {
		set_err(err, err_len, "xsk: %s queue %u: out of memory", q->ifname, q->queue);
		errno = ENOMEM;
		return NULL;
	}
	p->q = q;
	p->fd = -1;
	p->ip_id = (uint16_t)(q->num_ports * 8191u + q->queue * 257u);
	int ret = q->num_ports == 0 ? bind_first(p, err, err_len) : bind_later(p, err, err_len);
	if (ret) {
		p->xsk = NULL;
		free(p);
		errno = -ret;
		return NULL;
	}
	p->fd = xsk_socket__fd(p->xsk);
	q->num_ports++;
	return p;
}

struct xsk_port *xsk_port_new(const char *ifname, unsigned queue, const struct xsk_port_config *cfg,
			      char *err, size_t err_len)
{
	struct xsk_queue *q = xsk_queue_new(ifname, queue, cfg, err, err_len);
	if (!q)
		return NULL;
	struct xsk_port *p = xsk_queue_add_port(q, err, err_len);
	if (!p) {
		int e = errno;
		xsk_queue_free(q);
		errno = e;
		return NULL;
	}
	p->owns_queue = true;
	return p;
}

void xsk_port_free(struct xsk_port *p)
{
	if (!p)
		return;
	struct xsk_queue *q = p->q;
	if (p->xsk)
		xsk_socket__delete(p->xsk);
	/* The port's cached tx frames go back to the shared stack. */
	pthread_mutex_lock(&q->lock);
	for (uint32_t i = 0; i < p->num_cache; i++)
		q->free_tx[q->num_free_tx++] = p->cache[i];
	pthread_mutex_unlock(&q->lock);
	q->num_ports--;
	bool owns = p->owns_queue;
	free(p);
	if (owns)
		xsk_queue_free(q);
}

int xsk_port_fd(const struct xsk_port *p)
{
	return p->fd;
}

bool xsk_port_zerocopy(const struct xsk_port *p)
{
	return p->q->zerocopy;
}

void xsk_port_mac(const struct xsk_port *p, uint8_t out_mac[6])
{
	memcpy(out_mac, p->q->mac, 6);
}

unsigned xsk_port_pending(const struct xsk_port *p)
{
	return p->tx_pending;
}

/* ---- data path --------------------------------------------------------------------- */

static void kick_rx(struct xsk_port *p)
{
	p->stats.kicks++;
	(void)recvfrom(p->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

int xsk_port_rx(struct xsk_port *p, xsk_rx_fn fn, void *ctx, unsigned budget)
{
	struct xsk_queue *q = p->q;
	uint64_t addrs[RX_BATCH];
	unsigned done = 0;
	uint64_t mask = ~(uint64_t)(q->frame_size - 1);
	while (done < budget) {
		uint32_t idx, want = budget - done < RX_BATCH ? budget - done : RX_BATCH;
		uint32_t n = xsk_ring_cons__peek(&p->rx, want, &idx);
		if (!n)
			break;
		uint32_t num_addrs = 0;
		for (uint32_t i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&p->rx, idx + i);
			uint64_t addr = d->addr, base = addr & mask;
			uint32_t len = d->len;
			if (base >= (uint64_t)q->num_rx_frames * q->frame_size ||
			    len > q->frame_size - (addr - base)) {
				p->stats.rx_dropped_parse++; /* a descriptor we never handed out */
				continue;
			}
			addrs[num_addrs++] = base;
			struct xsk_pkt pkt;
			if (xsk_parse_udp(q->area + addr, len, &pkt) < 0) {
				p->stats.rx_dropped_parse++;
				continue;
			}
			if (q->cfg.verify_rx_csum && !xsk_udp_csum_ok(&pkt)) {
				p->stats.rx_bad_csum++;
				continue;
			}
			p->stats.rx++;
			fn(ctx, &pkt.src, &pkt.dst, pkt.payload, pkt.len);
		}
		xsk_ring_cons__release(&p->rx, n);
		pthread_mutex_lock(&q->lock);
		bool wake = fill_push_locked(q, addrs, num_addrs);
		pthread_mutex_unlock(&q->lock);
		if (wake)
			kick_rx(p);
		done += n;
	}
	return (int)done;
}

int xsk_port_complete(struct xsk_port *p)
{
	struct xsk_queue *q = p->q;
	pthread_mutex_lock(&q->lock);
	uint32_t n = comp_reap_locked(q);
	pthread_mutex_unlock(&q->lock);
	return (int)n;
}

static uint32_t tx_refill(struct xsk_port *p)
{
	struct xsk_queue *q = p->q;
	pthread_mutex_lock(&q->lock);
	comp_reap_locked(q);
	while (q->num_free_tx && p->num_cache < TX_REFILL)
		p->cache[p->num_cache++] = q->free_tx[--q->num_free_tx];
	pthread_mutex_unlock(&q->lock);
	return p->num_cache;
}

int xsk_port_send(struct xsk_port *p, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		  const uint8_t dst_mac[6], const struct iovec *iov, int iovcnt)
{
	struct xsk_queue *q = p->q;
	if (xsk_prod_nb_free(&p->tx, 1) < 1) {
		p->stats.tx_ring_full++;
		return -EAGAIN;
	}
	if (!p->num_cache && !tx_refill(p)) {
		p->stats.tx_no_frame++;
		return -EAGAIN;
	}
	uint64_t addr = p->cache[p->num_cache - 1];
	size_t cap = q->frame_size;
	if (cap > (size_t)q->mtu + ETH_HLEN)
		cap = (size_t)q->mtu + ETH_HLEN;
	int len =
	    xsk_build_udp(q->area + addr, cap, q->mac, dst_mac, src, dst, iov, iovcnt, p->ip_id);
	if (len < 0)
		return len;
	uint32_t idx;
	if (xsk_ring_prod__reserve(&p->tx, 1, &idx) != 1) {
		p->stats.tx_ring_full++;
		return -EAGAIN;
	}
	p->num_cache--;
	p->ip_id++;
	struct xdp_desc *d = xsk_ring_prod__tx_desc(&p->tx, idx);
	d->addr = addr;
	d->len = (uint32_t)len;
	d->options = 0;
	p->tx_pending++;
	p->stats.tx++;
	return 0;
}

static bool tx_drained(const struct xsk_port *p)
{
	return __atomic_load_n(p->tx.consumer, __ATOMIC_ACQUIRE) ==
	       __atomic_load_n(p->tx.producer, __ATOMIC_RELAXED);
}

int xsk_port_flush(struct xsk_port *p)
{
	if (p->tx_pending) {
		xsk_ring_prod__submit(&p->tx, p->tx_pending);
		p->tx_pending = 0;
	}
	for (int kicks = 0; kicks < COPY_MAX_KICKS; kicks++) {
		if (tx_drained(p) || !xsk_ring_prod__needs_wakeup(&p->tx))
			return 0;
		p->stats.kicks++;
		ssize_t r = sendto(p->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
		int e = r < 0 ? errno : 0;
		if (e && e != EAGAIN && e != EBUSY && e != ENOBUFS)
			return -e;
		if (p->q->zerocopy) /* the driver transmits asynchronously */
			return 0;
		/* Copy mode transmits in the syscall, a bounded batch at a time, and stops
		 * early when the completion ring has no room: reap and go on. */
		if (e)
			xsk_port_complete(p);
	}
	return tx_drained(p) ? 0 : -EAGAIN;
}

void xsk_port_get_stats(const struct xsk_port *p, struct xsk_port_stats *out)
{
	*out = p->stats;
	struct xdp_statistics st;
	socklen_t optlen = sizeof(st);
	memset(&st, 0, sizeof(st));
	if (getsockopt(p->fd, SOL_XDP, XDP_STATISTICS, &st, &optlen) == 0) {
		out->k_rx_dropped = st.rx_dropped;
		out->k_rx_invalid_descs = st.rx_invalid_descs;
		out->k_tx_invalid_descs = st.tx_invalid_descs;
		out->k_rx_ring_full = st.rx_ring_full;
		out->k_rx_fill_ring_empty = st.rx_fill_ring_empty_descs;
		out->k_tx_ring_empty = st.tx_ring_empty_descs;
	}
}
