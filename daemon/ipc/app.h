/* SPDX-License-Identifier: MIT */
/*
 * One attached application: its shared memory, doorbells and registered
 * services. The control plane (apps.c) creates it on ATTACH; each worker that
 * gives it a lane holds a reference, so the last one to let go unmaps it.
 */
#ifndef R2P2D_APP_H
#define R2P2D_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <r2p2/shm.h>

#include "config.h"

/* One attached application, as the main thread sees it. */
struct app {
	atomic_int refs; /* main thread + each worker holding a lane */
	uint64_t id;
	int conn_fd; /* control connection; EOF means the app is gone */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	void *map; /* the shared memory */
	size_t map_len;
	struct r2p2_shm_hdr hdr; /* the daemon's private copy of the layout */
	int *sq_efd;		 /* per lane */
	int *cq_efd;		 /* per lane */
	unsigned num_lanes;
	uint16_t serves[CFG_MAX_SERVICES]; /* ports of registered services */
	unsigned num_serves;
	struct app *next; /* main thread's list */
};

/*
 * app_add_serve records that the app serves `port` (main thread only). Returns
 * 0, or -ENOSPC when it already serves CFG_MAX_SERVICES services. Workers may
 * read concurrently: the port is written before the count is published.
 */
int app_add_serve(struct app *a, uint16_t port);

/* app_serves_port says whether the app serves `port` (any thread). */
bool app_serves_port(const struct app *a, uint16_t port);

/* app_put drops a reference; the last one unmaps and closes everything. */
void app_put(struct app *a);

#endif /* R2P2D_APP_H */
