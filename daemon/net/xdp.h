/* SPDX-License-Identifier: MIT */
/*
 * Loading, attaching and pinning the XDP program (bpf/r2p2.bpf.c) on one interface,
 * and the calls the AF_XDP backend needs afterwards: registering sockets in
 * r2p2_xsks and summing the per-CPU counters. The map ABI is include/r2p2/bpf_abi.h.
 *
 * Pins live under /sys/fs/bpf/r2p2/<ifname>/ (r2p2_xdp, r2p2_ports, r2p2_qconf,
 * r2p2_xsks, r2p2_stats) for bpftool; the pins are for inspection only, the daemon
 * reaches the maps through the skeleton. Needs CAP_SYS_ADMIN/CAP_BPF and CAP_NET_ADMIN.
 * A struct xdp_prog is not thread-safe, except xdp_stats_sum, which any thread may call.
 */
#ifndef R2P2D_XDP_H
#define R2P2D_XDP_H

#include <stddef.h>
#include <stdint.h>

#include <r2p2/bpf_abi.h>

/* Attach modes of xdp_open. */
enum xdp_attach {
	XDP_ATTACH_NATIVE = 0, /* driver mode (XDP_FLAGS_DRV_MODE); veth supports it */
	XDP_ATTACH_SKB = 1,    /* generic mode (XDP_FLAGS_SKB_MODE), any interface */
};

/* The directory all pins go under; <ifname>/ is appended per interface. */
#define XDP_PIN_ROOT "/sys/fs/bpf/r2p2"

struct xdp_prog; /* private */
struct r2p2_bpf; /* the generated skeleton (r2p2.skel.h in the build tree) */

/*
 * xdp_open loads the program, puts the `n` UDP ports `ports` (host byte order) in
 * r2p2_ports (service index = position in `ports`), sets every queue's socket count
 * to `socks_per_queue` (0..R2P2_XSK_PER_QUEUE) in r2p2_qconf, pins program and maps
 * under XDP_PIN_ROOT/<ifname>/ (mounting bpffs on /sys/fs/bpf if needed, removing
 * stale pins of a crashed run first) and attaches the program to `ifname` in `mode`
 * (enum xdp_attach). A leftover r2p2_xdp program on the interface (a crashed run) is
 * replaced; any other XDP program makes it fail with -EBUSY.
 * Returns 0 and sets `*out`, or a negative errno with a message naming the interface
 * and mode in `err` (`err_len` bytes, may be 0).
 */
int xdp_open(const char *ifname, int mode, const uint16_t *ports, size_t n,
	     unsigned socks_per_queue, struct xdp_prog **out, char *err, size_t err_len);

/*
 * xdp_ports_set makes r2p2_ports hold exactly the `n` ports `ports` (host byte order;
 * service index = position in `ports`): ports not in `ports` are deleted first, then
 * the others added or updated, so a port that stays is steered throughout. Returns 0
 * or a negative errno with a message naming the interface and port in `err`.
 */
int xdp_ports_set(struct xdp_prog *prog, const uint16_t *ports, size_t n, char *err,
		  size_t err_len);

/*
 * xdp_close detaches the program (if it is still the one attached), removes the pins
 * and frees `prog`. Accepts NULL.
 */
void xdp_close(struct xdp_prog *prog);

/*
 * xdp_xsk_register puts the AF_XDP socket `xsk_fd` (bound to rx queue `queue` of the
 * interface) in slot `slot` (< the queue's socket count) of that queue. The map holds
 * its own reference; closing the socket removes it. Returns 0 or a negative errno.
 */
int xdp_xsk_register(struct xdp_prog *prog, unsigned queue, unsigned slot, int xsk_fd);

/* xdp_xsk_unregister empties slot `slot` of rx queue `queue`. Returns 0 or a negative errno. */
int xdp_xsk_unregister(struct xdp_prog *prog, unsigned queue, unsigned slot);

/*
 * xdp_qconf_set sets the socket count of rx queue `queue` to `num_socks`
 * (0..R2P2_XSK_PER_QUEUE). Returns 0 or a negative errno.
 */
int xdp_qconf_set(struct xdp_prog *prog, unsigned queue, unsigned num_socks);

/* xdp_stats_sum writes the counters summed over all CPUs to `out`. Returns 0 or a negative errno.
 */
int xdp_stats_sum(struct xdp_prog *prog, struct r2p2_stats *out);

/* xdp_skel returns the loaded skeleton (maps by name: skel->maps.r2p2_xsks). Owned by `prog`. */
struct r2p2_bpf *xdp_skel(struct xdp_prog *prog);

/* xdp_ifindex returns the index of the interface `prog` is attached to. */
int xdp_ifindex(const struct xdp_prog *prog);

/* xdp_pin_dir returns XDP_PIN_ROOT/<ifname>, where `prog` pinned its program and maps. */
const char *xdp_pin_dir(const struct xdp_prog *prog);

#endif /* R2P2D_XDP_H */
