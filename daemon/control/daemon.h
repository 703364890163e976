/* SPDX-License-Identifier: MIT */
/*
 * The main thread's state (the control plane): config, workers, the epoll set
 * that carries signals, the control socket and its connections. Only the main
 * thread touches struct daemon; it reaches the workers through worker.h.
 */
#ifndef R2P2D_DAEMON_H
#define R2P2D_DAEMON_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include <r2p2/r2p2.h>

#include "worker.h"

#define R2P2D_VERSION R2P2_VERSION

struct daemon;
struct conn;

/*
 * One fd watched by the main loop. The epoll_data of its registration points at
 * it, and the loop calls `handle` with the events that fired; whatever owns the
 * fd embeds the struct and finds itself with offsetof.
 */
struct ep_source {
	void (*handle)(struct daemon *d, struct ep_source *src, uint32_t events);
};

struct daemon {
	struct cfg_ref *cfg;
	char cfg_path[4096];
	unsigned num_workers;
	unsigned num_started; /* workers whose thread runs (the first ones) */
	struct worker **workers;
	int ep_fd;  /* the main loop's epoll set */
	int sig_fd; /* signalfd: SIGTERM, SIGINT, SIGHUP */
	struct ep_source sig_src;
	int ctl_fd; /* the control socket (listening) */
	struct ep_source ctl_src;
	struct conn *conns;
	uint64_t next_conn_id;
	bool ready; /* start finished: the loop runs */
	bool draining;
	int drained_efd; /* workers write 1 each when drained */
	struct ep_source drained_src;
	unsigned num_drained;  /* workers drained so far */
	struct xdpath *xdp;    /* the xdp backend, or NULL for udp */
	bool xdp_idle;	       /* backend xdp or auto, but nothing to steer at start: no program */
	char backend[256];     /* what the backend is, for status */
	struct stek_set *stek; /* tls: as loaded at start (workers reload on change) */
	struct replay *replay; /* tls: the strike register shared by every worker */
	struct replay *sealed_replay; /* sealed: (association, nonce) strike register */
	struct metrics *metrics;      /* the Prometheus endpoint, or NULL */
};

/*
 * daemon_reload reads d->cfg_path again and applies it completely, or refuses it and
 * keeps the running configuration (daemon/control/reload.c). `how` names who asked,
 * for the log. Every line it says is logged and written to `out` (`out_len` bytes,
 * lines separated by newlines): what changed, or why not (file:line of a bad key,
 * each setting that needs a restart). Returns 0 or a negative errno: -EINVAL (a bad
 * file or what it points to), -EBUSY (a change that needs a restart), -ESHUTDOWN
 * (draining), or the errno of what failed while applying. Main thread only.
 */
int daemon_reload(struct daemon *d, const char *how, char *out, size_t out_len);

/*
 * daemon_check_keys loads everything `c` (read from `path`) points to, as a start
 * would: STEK files, each tls or sealed service's chain and key (and that the
 * certificate names the service), each [call]'s CA bundle, the socket_group.
 * Returns 0, or a negative errno with "file:line: ..." in `err`.
 */
int daemon_check_keys(const struct cfg *c, const char *path, char *err, size_t err_len);

/*
 * daemon_watch adds `fd` to the main loop's epoll set for `events`; `src->handle`
 * then runs for each of them. Returns 0 or a negative errno. Main thread only.
 */
static inline int daemon_watch(struct daemon *d, int fd, uint32_t events, struct ep_source *src)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	return epoll_ctl(d->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* daemon_unwatch removes `fd` from the main loop's epoll set. Main thread only. */
static inline void daemon_unwatch(struct daemon *d, int fd)
{
	if (d->ep_fd >= 0)
		epoll_ctl(d->ep_fd, EPOLL_CTL_DEL, fd, NULL);
}

#endif /* R2P2D_DAEMON_H */
