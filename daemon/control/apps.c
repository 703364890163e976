// SPDX-License-Identifier: MIT
/*
 * The app registry (main thread only): an app's shared memory and doorbells,
 * its services, and the commands that give it to the workers or take it back.
 */
#include "apps.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "err.h"
#include "lane.h"
#include "log.h"

struct app *apps_new(uint64_t id, int conn_fd, pid_t pid, uid_t uid, gid_t gid, unsigned num_lanes)
{
	struct app *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	atomic_init(&a->refs, 1);
	a->id = id;
	a->conn_fd = fcntl(conn_fd, F_DUPFD_CLOEXEC, 0);
	a->pid = pid;
	a->uid = uid;
	a->gid = gid;
	a->num_lanes = num_lanes;
	return a;
}

int apps_map(struct app *a, const struct cfg *cfg, int *out_fds, size_t *out_num_fds, char *err,
	     size_t err_len)
{
	struct shm_params p = {.num_lanes = a->num_lanes,
			       .sq_entries = cfg->ring_entries,
			       .cq_entries = cfg->ring_entries * 2,
			       .arena_size = cfg->arena_size,
			       .max_msg_len = cfg->max_msg_len};
	int memfd = -1, ret;

	if (1 + 2 * (size_t)a->num_lanes > APPS_MAX_FDS) {
		ret = -EINVAL;
		goto fail;
	}
	a->sq_efd = malloc(sizeof(int) * a->num_lanes);
	a->cq_efd = malloc(sizeof(int) * a->num_lanes);
	if (!a->sq_efd || !a->cq_efd) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < a->num_lanes; i++)
		a->sq_efd[i] = a->cq_efd[i] = -1;
	ret = shm_create(&p, &memfd, &a->map, &a->map_len);
	if (ret < 0)
		goto fail;
	memcpy(&a->hdr, a->map, sizeof(a->hdr));
	for (unsigned i = 0; i < a->num_lanes; i++) {
		a->sq_efd[i] = eventfd(0, EFD_CLOEXEC);
		a->cq_efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (a->sq_efd[i] < 0 || a->cq_efd[i] < 0) {
			ret = -errno;
			goto fail;
		}
		out_fds[1 + 2 * i] = a->sq_efd[i];
		out_fds[2 + 2 * i] = a->cq_efd[i];
	}
	out_fds[0] = memfd;
	*out_num_fds = 1 + 2 * (size_t)a->num_lanes;
	return 0;
fail:
	if (memfd >= 0)
		close(memfd);
	set_err(err, err_len, "attach failed: %s", strerror(-ret));
	return ret;
}

/* post_app posts `type` for `a` to every worker; each command holds a reference. */
static void post_app(struct daemon *d, enum cmd_type type, struct app *a)
{
	for (unsigned i = 0; i < d->num_workers; i++) {
		struct cmd *cmd = calloc(1, sizeof(*cmd));
		if (!cmd)
			continue; /* that worker will not carry this app; calls there fail */
		cmd->type = type;
		atomic_fetch_add(&a->refs, 1);
		cmd->app = a;
		worker_post(d->workers[i], cmd);
	}
}

void apps_add(struct daemon *d, struct app *a)
{
	post_app(d, CMD_ADD_APP, a);
	log_info("app %llu attached: pid %d uid %u gid %u", (unsigned long long)a->id, (int)a->pid,
		 (unsigned)a->uid, (unsigned)a->gid);
}

/* refuse_owner explains, to the app in `err` and in the log, why `peer` may not serve `s`. */
static int refuse_owner(const struct app *a, const struct peer *peer, const struct cfg_serve *s,
			char *err, size_t err_len)
{
	const char *what = s->owner == CFG_OWNER_UID ? "uid" : "gid";

	set_err(err, err_len,
		"service '%s' is owned by %s (%s %u, [serve %s] owner): uid %u gid %u may not "
		"register it",
		s->name, s->owner_text, what, (unsigned)s->owner_id, s->name, (unsigned)peer->uid,
		(unsigned)peer->gid);
	log_warn("app %llu (pid %d uid %u gid %u) may not serve %s: [serve %s] owner = %s (%s %u)",
		 (unsigned long long)a->id, (int)peer->pid, (unsigned)peer->uid,
		 (unsigned)peer->gid, s->name, s->name, s->owner_text, what, (unsigned)s->owner_id);
	return -EACCES;
}

int apps_register(struct app *a, const struct peer *peer, const struct cfg *cfg, const char *name,
		  uint16_t *out_port, char *err, size_t err_len)
{
	const struct cfg_serve *s = cfg_find_serve(cfg, name);

	if (!s) {
		set_err(err, err_len, "service '%s' is not served by this r2p2d (no [serve %s])",
			name, name);
		return -ENOENT;
	}
	if (!ctl_may_serve(s, peer))
		return refuse_owner(a, peer, s, err, err_len);
	*out_port = s->port;
	if (app_serves_port(a, s->port))
		return 0;
	if (app_add_serve(a, s->port) < 0) {
		set_err(err, err_len, "too many services");
		return -ENOSPC;
	}
	log_info("app %llu (pid %d) serves %s on port %u", (unsigned long long)a->id, (int)a->pid,
		 name, s->port);
	return 0;
}

void apps_remove(struct daemon *d, struct app *a)
{
	log_info("app %llu detached (pid %d)", (unsigned long long)a->id, (int)a->pid);
	post_app(d, CMD_REMOVE_APP, a);
	app_put(a);
}
