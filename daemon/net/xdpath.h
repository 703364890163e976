/* SPDX-License-Identifier: MIT */
/*
 * The xdp backend, as the main thread sets it up: pick the interface, load and
 * attach the steering program (daemon/net/xdp.c), and bind one AF_XDP socket per
 * (worker, rx queue) over one shared UMEM per queue (daemon/net/xsk.c). The workers
 * then drive their sockets from their own io_uring.
 */
#ifndef R2P2D_XDPATH_H
#define R2P2D_XDPATH_H

#include <stddef.h>

#include "config.h"

struct xdpath;
struct xsk_port;
struct r2p2_stats;

/*
 * xdpath_setup decides the backend for `c` with `num_workers` workers. Returns 0
 * with `*out` set (xdp in use), 0 with `*out` NULL (the udp backend; `why` says why
 * when backend = auto), or a negative errno when backend = xdp cannot work (`why`
 * says why).
 */
int xdpath_setup(const struct cfg *c, unsigned num_workers, struct xdpath **out, char *why,
		 size_t why_len);

/* xdpath_ports returns worker `w`'s sockets (one per rx queue) and their count. */
struct xsk_port **xdpath_ports(struct xdpath *x, unsigned w, unsigned *out_num);

/* xdpath_describe writes "xdp on IF (native|skb, copy|zero-copy, N queues)". */
void xdpath_describe(const struct xdpath *x, char *buf, size_t len);
const char *xdpath_ifname(const struct xdpath *x);

/* xdpath_stats sums the program's per-CPU verdict counters. */
int xdpath_stats(struct xdpath *x, struct r2p2_stats *out);

/*
 * xdpath_set_ports makes the program steer exactly the `n` UDP ports `ports` (a
 * reload: ports of removed services go, those of added services come). Returns 0 or
 * a negative errno with `why` filled.
 */
int xdpath_set_ports(struct xdpath *x, const uint16_t *ports, size_t n, char *why, size_t why_len);

/* xdpath_free closes the sockets, frees the UMEMs and detaches the program. Call after
 * every worker stopped. NULL is ok. */
void xdpath_free(struct xdpath *x);

#endif /* R2P2D_XDPATH_H */
