/* SPDX-License-Identifier: MIT */
/*
 * The main thread's state (the control plane): config, workers, the control
 * socket and its connections. Only the main thread touches struct daemon; it
 * reaches the workers through worker.h.
 */
#ifndef R2P2D_DAEMON_H
#define R2P2D_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

#define R2P2D_VERSION "0.1.0"

struct conn;

struct daemon {
	struct cfg_ref *cfg;
	char cfg_path[4096];
	unsigned num_workers;
	struct worker **workers;
	int ctl_fd; /* the control socket (listening) */
	struct conn *conns;
	uint64_t next_conn_id;
	bool draining;
	int drained_efd;	      /* workers write 1 each when drained */
	struct xdpath *xdp;	      /* the xdp backend, or NULL for udp */
	char backend[256];	      /* what the backend is, for status */
	struct stek_set *stek;	      /* tls: as loaded at start (workers reload on change) */
	struct replay *replay;	      /* tls: the strike register shared by every worker */
	struct replay *sealed_replay; /* sealed: (association, nonce) strike register */
};

#endif /* R2P2D_DAEMON_H */
