// SPDX-License-Identifier: MIT
/*
 * The app registry and the control protocol (main thread only): attach (shared
 * memory + doorbells over SCM_RIGHTS), service registration, status. The
 * workers learn about apps through their inboxes and hold their own references.
 */
#include "apps.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "lane.h"
#include "log.h"
#include "replay.h"
#include "status.h"
#include "xdpath.h"

#include <r2p2/bpf_abi.h>

int ctl_listen(const struct cfg *c, char *err, size_t err_len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd;

	if (strlen(c->socket_path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "control socket path too long: %s", c->socket_path);
		return -1;
	}
	strcpy(sa.sun_path, c->socket_path);
	strcpy(dir, c->socket_path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
			snprintf(err, err_len, "cannot create %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, err_len, "control socket: %s", strerror(errno));
		return -1;
	}
	/* A socket file that still answers belongs to a running daemon: never steal it. A
	 * stale one from a crashed daemon would make bind fail; it is ours to replace. */
	int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(probe);
		close(fd);
		snprintf(err, err_len, "another r2p2d is running on %s", sa.sun_path);
		return -1;
	}
	if (probe >= 0)
		close(probe);
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		snprintf(err, err_len, "control socket %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (c->socket_group[0]) {
		struct group *g = getgrnam(c->socket_group);
		/* Members of the group must be able to enter the directory and connect. */
		if (slash && slash != dir && g && chown(dir, (uid_t)-1, g->gr_gid) == 0)
			chmod(dir, 0750);
		if (!g || chown(sa.sun_path, (uid_t)-1, g->gr_gid) < 0) {
			snprintf(err, err_len, "control socket group '%s': %s", c->socket_group,
				 g ? strerror(errno) : "no such group");
			close(fd);
			return -1;
		}
	}
	if (chmod(sa.sun_path, 0660) < 0) {
		snprintf(err, err_len, "chmod %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int ctl_send(int fd, uint16_t type, int32_t value, const char *name, const char *text,
		    size_t text_len, const int *fds, size_t num_fds)
{
	char buf[R2P2_CTL_MAX_MSG];
	struct r2p2_ctl_msg *m = (struct r2p2_ctl_msg *)buf;
	struct iovec iov;
	struct msghdr msg = {0};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2 * 65)];
		struct cmsghdr align;
	} cbuf;

	if (text_len > sizeof(buf) - sizeof(*m))
		text_len = sizeof(buf) - sizeof(*m);
	memset(m, 0, sizeof(*m));
	m->magic = R2P2_CTL_MAGIC;
	m->version = R2P2_CTL_VERSION;
	m->type = type;
	m->value = value;
	m->text_len = (uint32_t)text_len;
	if (name)
		snprintf(m->name, sizeof(m->name), "%s", name);
	if (text_len)
		memcpy(buf + sizeof(*m), text, text_len);
	iov.iov_base = buf;
	iov.iov_len = sizeof(*m) + text_len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (num_fds) {
		if (num_fds > 2 * 65)
			return -EINVAL;
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * num_fds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * num_fds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * num_fds);
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void ctl_error(int fd, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ctl_error(int fd, int err, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ctl_send(fd, R2P2_CTL_ERROR, err, NULL, text, n < 0 ? 0 : (size_t)n, NULL, 0);
}

struct conn *conn_new(struct daemon *d, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (!c)
		return NULL;
	c->fd = fd;
	c->id = ++d->next_conn_id;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
	}
	c->next = d->conns;
	d->conns = c;
	return c;
}

static int attach(struct daemon *d, struct conn *c)
{
	const struct cfg *cfg = &d->cfg->cfg;
	struct shm_params p = {.num_lanes = d->num_workers,
			       .sq_entries = cfg->ring_entries,
			       .cq_entries = cfg->ring_entries * 2,
			       .arena_size = cfg->arena_size,
			       .max_msg_len = cfg->max_msg_len};
	int fds[1 + 2 * 64];
	struct app *a;
	int memfd = -1, ret;

	if (c->app) {
		ctl_error(c->fd, EALREADY, "already attached");
		return 0;
	}
	if (d->draining) {
		ctl_error(c->fd, ESHUTDOWN, "r2p2d is shutting down");
		return 0;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	atomic_init(&a->refs, 1);
	a->id = c->id;
	/* A private duplicate: a worker may shut the connection down to detach a broken app. */
	a->conn_fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
	a->pid = c->pid;
	a->uid = c->uid;
	a->gid = c->gid;
	a->num_lanes = d->num_workers;
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
	fds[0] = memfd;
	for (unsigned i = 0; i < a->num_lanes; i++) {
		a->sq_efd[i] = eventfd(0, EFD_CLOEXEC);
		a->cq_efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (a->sq_efd[i] < 0 || a->cq_efd[i] < 0) {
			ret = -errno;
			goto fail;
		}
		fds[1 + 2 * i] = a->sq_efd[i];
		fds[2 + 2 * i] = a->cq_efd[i];
	}
	ret = ctl_send(c->fd, R2P2_CTL_ATTACH_OK, 0, NULL, NULL, 0, fds, 1 + 2 * a->num_lanes);
	close(memfd);
	memfd = -1;
	if (ret < 0)
		goto fail;
	c->app = a;
	for (unsigned i = 0; i < d->num_workers; i++) {
		struct cmd *cmd = calloc(1, sizeof(*cmd));
		if (!cmd)
			continue; /* that worker will not carry this app; calls there fail */
		cmd->type = CMD_ADD_APP;
		atomic_fetch_add(&a->refs, 1);
		cmd->app = a;
		worker_post(d->workers[i], cmd);
	}
	log_info("app %llu attached: pid %d uid %u gid %u", (unsigned long long)a->id, (int)a->pid,
		 (unsigned)a->uid, (unsigned)a->gid);
	return 0;
fail:
	if (memfd >= 0)
		close(memfd);
	app_put(a);
	ctl_error(c->fd, -ret, "attach failed: %s", strerror(-ret));
	return 0;
}

static void register_service(struct daemon *d, struct conn *c, const char *name)
{
	const struct cfg_serve *s = cfg_find_serve(&d->cfg->cfg, name);
	struct app *a = c->app;

	if (!a) {
		ctl_error(c->fd, ENOTCONN, "attach before registering");
		return;
	}
	if (!s) {
		ctl_error(c->fd, ENOENT, "service '%s' is not served by this r2p2d (no [serve %s])",
			  name, name);
		return;
	}
	if (app_serves_port(a, s->port)) {
		ctl_send(c->fd, R2P2_CTL_REGISTER_OK, s->port, name, NULL, 0, NULL, 0);
		return;
	}
	if (app_add_serve(a, s->port) < 0) {
		ctl_error(c->fd, ENOSPC, "too many services");
		return;
	}
	log_info("app %llu (pid %d) serves %s on port %u", (unsigned long long)a->id, (int)a->pid,
		 name, s->port);
	ctl_send(c->fd, R2P2_CTL_REGISTER_OK, s->port, name, NULL, 0, NULL, 0);
}

/* attached_apps returns the apps of `d`'s connections (newest first), or NULL. */
static const struct app **attached_apps(const struct daemon *d, size_t *out_num)
{
	const struct app **apps;
	size_t n = 0;

	for (const struct conn *k = d->conns; k; k = k->next)
		n += k->app != NULL;
	apps = malloc((n ? n : 1) * sizeof(*apps));
	if (!apps)
		return NULL;
	n = 0;
	for (const struct conn *k = d->conns; k; k = k->next)
		if (k->app)
			apps[n++] = k->app;
	*out_num = n;
	return apps;
}

/*
 * status answers STATUS: one snapshot of every worker, the daemon's own
 * counters, formatted by status_format. Negative errno (out of memory) closes.
 */
static int status(struct daemon *d, struct conn *c)
{
	static char text[R2P2_CTL_MAX_MSG - sizeof(struct r2p2_ctl_msg)];
	struct status_facts f = {.version = R2P2D_VERSION,
				 .pid = (int)getpid(),
				 .draining = d->draining,
				 .backend = d->backend,
				 .xdp = d->xdp != NULL};
	struct worker_snap *snaps = calloc(d->num_workers, sizeof(*snaps));
	const struct app **apps = attached_apps(d, &f.num_apps);
	struct replay_stats rs, srs;
	struct r2p2_stats xs;
	size_t n;

	if (!snaps || !apps) {
		free(snaps);
		free(apps);
		return -ENOMEM;
	}
	f.apps = apps;
	if (d->xdp && xdpath_stats(d->xdp, &xs) == 0)
		f.xdp_stats = &xs;
	for (unsigned i = 0; i < d->num_workers; i++)
		worker_snapshot(d->workers[i], &snaps[i]);
	f.now_ms = unix_ms();
	if (d->sealed_replay) {
		replay_stats(d->sealed_replay, &srs);
		f.sealed_replay = &srs;
	}
	if (d->replay) {
		replay_stats(d->replay, &rs);
		f.replay = &rs;
	}
	n = status_format(&d->cfg->cfg, &f, snaps, d->num_workers, text, sizeof(text));
	ctl_send(c->fd, R2P2_CTL_STATUS_OK, 0, NULL, text, n, NULL, 0);
	free(snaps);
	free(apps);
	return 0;
}

int conn_input(struct daemon *d, struct conn *c)
{
	char buf[sizeof(struct r2p2_ctl_msg) + 256];
	struct r2p2_ctl_msg m;
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n == 0)
		return -1;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if ((size_t)n < sizeof(m)) {
		ctl_error(c->fd, EPROTO, "short control message (%zd bytes)", n);
		return -1;
	}
	memcpy(&m, buf, sizeof(m));
	if (m.magic != R2P2_CTL_MAGIC || m.version != R2P2_CTL_VERSION) {
		ctl_error(c->fd, EPROTO, "control protocol mismatch: r2p2d speaks version %u",
			  R2P2_CTL_VERSION);
		return -1;
	}
	m.name[sizeof(m.name) - 1] = '\0';
	switch (m.type) {
	case R2P2_CTL_ATTACH:
		return attach(d, c);
	case R2P2_CTL_REGISTER:
		register_service(d, c, m.name);
		return 0;
	case R2P2_CTL_STATUS:
		return status(d, c);
	default:
		ctl_error(c->fd, EOPNOTSUPP, "unknown control message type %u", m.type);
		return 0;
	}
}

void conn_close(struct daemon *d, struct conn *c)
{
	struct conn **pp = &d->conns;

	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	if (c->app) {
		log_info("app %llu detached (pid %d)", (unsigned long long)c->app->id, (int)c->pid);
		for (unsigned i = 0; i < d->num_workers; i++) {
			struct cmd *cmd = calloc(1, sizeof(*cmd));
			if (!cmd)
				continue;
			cmd->type = CMD_REMOVE_APP;
			atomic_fetch_add(&c->app->refs, 1);
			cmd->app = c->app;
			worker_post(d->workers[i], cmd);
		}
		app_put(c->app);
	}
	close(c->fd);
	free(c);
}
