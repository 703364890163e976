/* SPDX-License-Identifier: MIT */
/*
 * The app registry (main thread only): an app is created on ATTACH with its
 * shared memory and doorbells, handed to every worker, given services on
 * REGISTER and removed from every worker when its connection closes. The
 * workers hold their own references (app.h); this file only posts commands.
 */
#ifndef R2P2D_APPS_H
#define R2P2D_APPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctl_msg.h"
#include "daemon.h"

/* The most fds an ATTACH_OK carries: the memfd, then two doorbells per lane. */
#define APPS_MAX_FDS (1 + 2 * 64)

/*
 * apps_new returns a new app (one reference, the caller's) for the peer `pid`,
 * `uid`, `gid` on control connection `conn_fd` with id `id`, to get `num_lanes`
 * lanes. It keeps a duplicate of `conn_fd`, so that a worker may shut the
 * connection down to detach a broken app. Returns NULL (errno ENOMEM) on failure.
 */
struct app *apps_new(uint64_t id, int conn_fd, pid_t pid, uid_t uid, gid_t gid, unsigned num_lanes);

/*
 * apps_map creates the shared memory of `a` for `cfg` and one pair of doorbells
 * per lane. On success it returns 0 and fills `out_fds` (room for APPS_MAX_FDS)
 * with what the app receives: the memfd, which the caller closes once sent, then
 * each lane's submission and completion eventfds, which `a` keeps;
 * `*out_num_fds` is their count. Otherwise it returns a negative errno with a
 * message in `err`; `a` is then left for app_put.
 */
int apps_map(struct app *a, const struct cfg *cfg, int *out_fds, size_t *out_num_fds, char *err,
	     size_t err_len);

/* apps_add gives `a` a lane on every worker of `d` (each takes its own reference). */
void apps_add(struct daemon *d, struct app *a);

/*
 * apps_register records that `a`, run by `peer`, serves `name` under `cfg` and sets
 * `*out_port` to the service's port; registering a service twice is fine. Returns
 * 0, or a negative errno with a message in `err` for the app: -ENOENT when `cfg`
 * does not serve `name`, -EACCES when the service's owner rule excludes `peer`
 * (also logged, naming the rule), -ENOSPC when `a` already serves
 * CFG_MAX_SERVICES services.
 */
int apps_register(struct app *a, const struct peer *peer, const struct cfg *cfg, const char *name,
		  uint16_t *out_port, char *err, size_t err_len);

/*
 * apps_remove takes `a` off every worker of `d` (they reject its requests and
 * forget its calls) and drops the caller's reference.
 */
void apps_remove(struct daemon *d, struct app *a);

#endif /* R2P2D_APPS_H */
