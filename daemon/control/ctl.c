// SPDX-License-Identifier: MIT
/*
 * The control socket and its connections (main thread only): the listening
 * socket, the protocol of struct r2p2_ctl_msg, and one handler per request. The
 * app registry (apps.c) and the status text (status.c) do the work; this file
 * reads requests and sends replies.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "apps.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "replay.h"
#include "status.h"
#include "xdpath.h"

#include <r2p2/shm.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13; older libc headers lack it */
#endif

/* ---- the listening socket ------------------------------------------------------ */

/* Where the control socket goes: its path, its directory (`dir_fd` once open), its name. */
struct ctl_where {
	struct sockaddr_un sa;
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *base; /* the file name, in sa.sun_path */
	int dir_fd;
	const char *group; /* socket_group, "" for none */
	gid_t gid;
};

/* ctl_where_init fills `w` for `c`: the path split in two, the group resolved. */
static int ctl_where_init(struct ctl_where *w, const struct cfg *c, char *err, size_t err_len)
{
	const struct group *g;
	char *slash;

	if (strlen(c->socket_path) >= sizeof(w->sa.sun_path)) {
		set_err(err, err_len, "control socket path too long: %s", c->socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(w->sa.sun_path, c->socket_path);
	strcpy(w->dir, c->socket_path);
	slash = strrchr(w->dir, '/');
	if (!slash || slash[1] == '\0') {
		set_err(err, err_len, "control socket path %s has no file name", c->socket_path);
		return -EINVAL;
	}
	w->base = w->sa.sun_path + (slash - w->dir) + 1;
	if (slash == w->dir)
		slash++; /* a socket in "/" */
	*slash = '\0';
	if (w->group[0]) {
		g = getgrnam(w->group);
		if (!g) {
			set_err(err, err_len, "control socket group '%s': %s", w->group,
				"no such group");
			return -ENOENT;
		}
		w->gid = g->gr_gid;
	}
	return 0;
}

/*
 * ctl_own_dir opens the directory r2p2d has just created (mode 0700) and only then
 * gives it to the group (0750), through the fd: O_NOFOLLOW refuses a symlink put in
 * its place, the owner check a directory someone else made there.
 */
static int ctl_own_dir(struct ctl_where *w, char *err, size_t err_len)
{
	struct stat st;
	int ret;

	w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (w->dir_fd < 0) {
		ret = -errno;
		set_err(err, err_len, "control socket directory %s: %s%s", w->dir, strerror(-ret),
			ret == -ELOOP || ret == -ENOTDIR
			    ? " (replaced after r2p2d created it; refusing to follow a symlink)"
			    : "");
		return ret;
	}
	if (fstat(w->dir_fd, &st) < 0 || st.st_uid != geteuid()) {
		set_err(err, err_len, "control socket directory %s is not the one r2p2d created",
			w->dir);
		return -EPERM;
	}
	if ((w->group[0] && fchown(w->dir_fd, (uid_t)-1, w->gid) < 0) ||
	    fchmod(w->dir_fd, 0750) < 0) {
		ret = -errno;
		set_err(err, err_len, "control socket directory %s: %s", w->dir, strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * ctl_dir_safe says whether only root and r2p2d's user can replace a file in the
 * directory `st`: owned by one of them and writable by no one else, or sticky (there
 * only a file's owner may remove or rename it).
 */
static bool ctl_dir_safe(const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return false;
	return !(st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_mode & S_ISVTX);
}

/*
 * ctl_open_dir opens the socket's directory, creating it if missing. A directory that
 * already exists is the administrator's: it is never changed (its mode, owner and
 * group stay), only checked to be one where nobody else could replace the socket.
 */
static int ctl_open_dir(struct ctl_where *w, char *err, size_t err_len)
{
	struct stat st;
	int ret;

	if (mkdir(w->dir, 0700) == 0)
		return ctl_own_dir(w, err, err_len);
	if (errno != EEXIST) {
		ret = -errno;
		set_err(err, err_len, "cannot create %s: %s", w->dir, strerror(-ret));
		return ret;
	}
	w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dir_fd < 0 || fstat(w->dir_fd, &st) < 0) {
		ret = -errno;
		set_err(err, err_len, "control socket directory %s: %s", w->dir, strerror(-ret));
		return ret;
	}
	if (!ctl_dir_safe(&st)) {
		set_err(err, err_len,
			"control socket directory %s (mode %04o, uid %u) lets others replace the "
			"socket: use one owned by root that only root may write, or a sticky one",
			w->dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
		return -EPERM;
	}
	return 0;
}

/*
 * ctl_claim_path makes the socket's name free to bind. It never follows a symlink and
 * removes nothing but a socket. A socket file that still answers belongs to a running
 * daemon: never steal it. A stale one from a crashed daemon would make bind fail; it
 * is ours to replace.
 */
static int ctl_claim_path(const struct ctl_where *w, char *err, size_t err_len)
{
	const char *path = w->sa.sun_path;
	struct stat st;
	int probe;

	if (fstatat(w->dir_fd, w->base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		set_err(err, err_len, "control socket %s: %s", path, strerror(errno));
		return -EIO;
	}
	if (S_ISLNK(st.st_mode)) {
		set_err(err, err_len, "control socket path %s is a symlink; refusing to follow it",
			path);
		return -ELOOP;
	}
	if (!S_ISSOCK(st.st_mode)) {
		set_err(err, err_len, "control socket path %s exists and is not a socket", path);
		return -EEXIST;
	}
	probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (const struct sockaddr *)&w->sa, sizeof(w->sa)) == 0) {
		close(probe);
		set_err(err, err_len, "another r2p2d is running on %s", path);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	unlinkat(w->dir_fd, w->base, 0);
	return 0;
}

/*
 * ctl_bind binds and listens on `w`. bind(2) creates the socket file with mode
 * 0777 & ~umask: under umask 0117 it is born 0660, never wider even for an instant,
 * and nothing has to chmod it by path afterwards, where a file swapped in could take
 * the change (fchmod on the socket fd would set the mode of the socket's own inode,
 * which bind also masks with the umask). The umask is the process's: ctl_open runs
 * before the workers start, so no other thread creates files meanwhile.
 */
static int ctl_bind(int fd, const struct ctl_where *w, char *err, size_t err_len)
{
	mode_t old = umask(0117);
	int ret = bind(fd, (const struct sockaddr *)&w->sa, sizeof(w->sa));

	umask(old);
	if (ret < 0 || listen(fd, 64) < 0) {
		ret = -errno;
		set_err(err, err_len, "control socket %s: %s", w->sa.sun_path, strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * ctl_set_group gives the bound socket file to `w->gid`. Until then it is 0660 in
 * r2p2d's own group, so the moment between bind and here admits nobody new. The
 * change goes through the directory fd, never follows a symlink, and is made only
 * while the name still holds a socket of r2p2d's user; the directory is r2p2d's,
 * root's or sticky (ctl_open_dir), so nobody else can swap it in between.
 */
static int ctl_set_group(const struct ctl_where *w, char *err, size_t err_len)
{
	struct stat st;
	int ret;

	if (fstatat(w->dir_fd, w->base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
	    st.st_uid != geteuid()) {
		set_err(err, err_len, "control socket %s was replaced after bind", w->sa.sun_path);
		return -EPERM;
	}
	if (fchownat(w->dir_fd, w->base, (uid_t)-1, w->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		set_err(err, err_len, "control socket group '%s': %s", w->group, strerror(-ret));
		return ret;
	}
	return 0;
}

/* ctl_listen returns the listening control socket of `c`, or a negative errno. */
static int ctl_listen(const struct cfg *c, char *err, size_t err_len)
{
	struct ctl_where w = {
	    .sa = {.sun_family = AF_UNIX}, .dir_fd = -1, .group = c->socket_group};
	bool bound = false;
	int fd = -1, ret;

	ret = ctl_where_init(&w, c, err, err_len);
	if (ret == 0)
		ret = ctl_open_dir(&w, err, err_len);
	if (ret == 0)
		ret = ctl_claim_path(&w, err, err_len);
	if (ret == 0) {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			ret = -errno;
			set_err(err, err_len, "control socket: %s", strerror(-ret));
		}
	}
	if (ret == 0)
		ret = ctl_bind(fd, &w, err, err_len);
	bound = ret == 0;
	if (ret == 0 && w.group[0])
		ret = ctl_set_group(&w, err, err_len);
	if (ret < 0 && bound && ret != -EPERM) /* -EPERM: the name is not ours any more */
		unlinkat(w.dir_fd, w.base, 0);
	if (w.dir_fd >= 0)
		close(w.dir_fd);
	if (ret < 0 && fd >= 0)
		close(fd);
	return ret < 0 ? ret : fd;
}

/* ---- replies ------------------------------------------------------------------- */

/* ctl_send sends one reply, with `num_fds` fds from `fds` attached (SCM_RIGHTS). */
static int ctl_send(int fd, uint16_t type, int32_t value, const char *name, const char *text,
		    size_t text_len, const int *fds, size_t num_fds)
{
	char buf[R2P2_CTL_MAX_MSG];
	struct r2p2_ctl_msg *m = (struct r2p2_ctl_msg *)buf;
	struct iovec iov;
	struct msghdr msg = {0};
	union {
		char buf[CMSG_SPACE(sizeof(int) * APPS_MAX_FDS)];
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
		if (num_fds > APPS_MAX_FDS)
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

/* ctl_error sends an ERROR reply: `err` (a positive errno) and a sentence. */
__attribute__((format(printf, 3, 4))) static void ctl_error(int fd, int err, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ctl_send(fd, R2P2_CTL_ERROR, err, NULL, text, n < 0 ? 0 : (size_t)n, NULL, 0);
}

/* ---- requests ------------------------------------------------------------------ */

/*
 * conn_attach answers ATTACH: a new app, its shared memory and doorbells sent to
 * the peer, then a lane on every worker. Refusals are replies; only running out of
 * memory before anything can be said closes the connection (negative errno).
 */
static int conn_attach(struct daemon *d, struct conn *c)
{
	char err[256];
	int fds[APPS_MAX_FDS];
	size_t num_fds;
	struct app *a;
	int ret;

	if (c->app) {
		ctl_error(c->fd, EALREADY, "already attached");
		return 0;
	}
	if (d->draining) {
		ctl_error(c->fd, ESHUTDOWN, "r2p2d is shutting down");
		return 0;
	}
	a = apps_new(c->id, c->fd, c->peer.pid, c->peer.uid, c->peer.gid, d->num_workers);
	if (!a)
		return -ENOMEM;
	ret = apps_map(a, &d->cfg->cfg, fds, &num_fds, err, sizeof(err));
	if (ret == 0) {
		ret = ctl_send(c->fd, R2P2_CTL_ATTACH_OK, 0, NULL, NULL, 0, fds, num_fds);
		close(fds[0]); /* the memfd: the app has its copy, `a` its mapping */
		if (ret < 0)
			set_err(err, sizeof(err), "attach failed: %s", strerror(-ret));
	}
	if (ret < 0) {
		app_put(a);
		ctl_error(c->fd, -ret, "%s", err);
		return 0;
	}
	c->app = a;
	apps_add(d, a);
	return 0;
}

/* conn_register answers REGISTER `name`: the attached app serves that service. */
static void conn_register(struct daemon *d, struct conn *c, const char *name)
{
	char err[256];
	uint16_t port;
	int ret;

	if (!c->app) {
		ctl_error(c->fd, ENOTCONN, "attach before registering");
		return;
	}
	ret = apps_register(c->app, &c->peer, &d->cfg->cfg, name, &port, err, sizeof(err));
	if (ret < 0) {
		ctl_error(c->fd, -ret, "%s", err);
		return;
	}
	ctl_send(c->fd, R2P2_CTL_REGISTER_OK, port, name, NULL, 0, NULL, 0);
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

size_t daemon_status(struct daemon *d, enum daemon_status_form form, char *buf, size_t len)
{
	static size_t (*const fmt[])(const struct cfg *, const struct status_facts *,
				     const struct worker_snap *, unsigned, char *, size_t) = {
	    [STATUS_TEXT] = status_format,
	    [STATUS_JSON] = status_format_json,
	    [STATUS_PROM] = status_format_prom,
	};
	struct status_facts f = {.version = R2P2D_VERSION,
				 .pid = (int)getpid(),
				 .draining = d->draining,
				 .backend = d->backend,
				 .xdp = d->xdp != NULL};
	struct worker_snap *snaps = calloc(d->num_workers, sizeof(*snaps));
	const struct app **apps = attached_apps(d, &f.num_apps);
	struct replay_stats rs, srs;
	struct r2p2_stats xs;
	size_t n = 0;

	if (!snaps || !apps)
		goto out;
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
	n = fmt[form](&d->cfg->cfg, &f, snaps, d->num_workers, buf, len);
out:
	free(snaps);
	free(apps);
	return n;
}

/*
 * conn_status answers STATUS: one snapshot of every worker, the daemon's own
 * counters, formatted by status_format. Negative errno (out of memory) closes.
 */
static int conn_status(struct daemon *d, struct conn *c, bool json)
{
	static char text[R2P2_CTL_MAX_MSG - sizeof(struct r2p2_ctl_msg)];
	size_t n = daemon_status(d, json ? STATUS_JSON : STATUS_TEXT, text, sizeof(text));

	if (n == 0)
		return -ENOMEM;
	ctl_send(c->fd, R2P2_CTL_STATUS_OK, 0, NULL, text, n, NULL, 0);
	return 0;
}

/*
 * conn_reload answers RELOAD: the daemon reloads its config file and says what
 * changed (RELOAD_OK) or why not (ERROR with the errno). Only root and the daemon's
 * own user may ask: socket_group lets apps connect, not reconfigure the host.
 */
static void conn_reload(struct daemon *d, struct conn *c)
{
	static char text[R2P2_CTL_MAX_MSG - sizeof(struct r2p2_ctl_msg)];
	char how[96];
	int ret;

	if (!ctl_may_operate(&c->peer, geteuid())) {
		log_warn("control socket: refused a reload asked by pid %d uid %u (only root or "
			 "uid %u may reload)",
			 (int)c->peer.pid, (unsigned)c->peer.uid, (unsigned)geteuid());
		ctl_error(c->fd, EPERM, "only root or the daemon's user (uid %u) may reload",
			  (unsigned)geteuid());
		return;
	}
	snprintf(how, sizeof(how), "r2p2ctl reload (pid %d uid %u)", (int)c->peer.pid,
		 (unsigned)c->peer.uid);
	ret = daemon_reload(d, how, text, sizeof(text));
	if (ret < 0)
		ctl_send(c->fd, R2P2_CTL_ERROR, -ret, NULL, text, strlen(text), NULL, 0);
	else
		ctl_send(c->fd, R2P2_CTL_RELOAD_OK, 0, NULL, text, strlen(text), NULL, 0);
}

/* conn_input reads and answers one request. A negative errno closes the connection. */
static int conn_input(struct daemon *d, struct conn *c)
{
	char buf[sizeof(struct r2p2_ctl_msg) + 256], why[160];
	struct r2p2_ctl_msg m;
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	switch (ctl_msg_parse(buf, (size_t)n, &m, why, sizeof(why))) {
	case R2P2_CTL_ATTACH:
		return conn_attach(d, c);
	case R2P2_CTL_REGISTER:
		conn_register(d, c, m.name);
		return 0;
	case R2P2_CTL_STATUS:
		return conn_status(d, c, m.value == R2P2_CTL_STATUS_JSON);
	case R2P2_CTL_RELOAD:
		conn_reload(d, c);
		return 0;
	case -EOPNOTSUPP:
		ctl_error(c->fd, EOPNOTSUPP, "%s", why);
		return 0;
	default:
		ctl_error(c->fd, EPROTO, "%s", why);
		return -EPROTO;
	}
}

/* ---- connections --------------------------------------------------------------- */

/* conn_close forgets `c`; an attached app is taken off every worker. */
static void conn_close(struct daemon *d, struct conn *c)
{
	struct conn **pp = &d->conns;

	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	/* The app holds a duplicate of the fd: closing ours would not end the watch. */
	daemon_unwatch(d, c->fd);
	if (c->app)
		apps_remove(d, c->app);
	close(c->fd);
	free(c);
}

/*
 * conn_drop_refused closes a refused connection once it spoke or hung up: its ERROR
 * already waits in its queue. What it sent is read first, because closing with unread
 * data makes the peer's next read fail (ECONNRESET) before it sees the ERROR.
 */
static void conn_drop_refused(struct daemon *d, struct conn *c)
{
	char buf[sizeof(struct r2p2_ctl_msg)];

	while (recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	conn_close(d, c);
}

/* conn_handle is a connection's handler in the main loop. */
static void conn_handle(struct daemon *d, struct ep_source *src, uint32_t events)
{
	struct conn *c = (struct conn *)((char *)src - offsetof(struct conn, src));
	int ret = 0;

	if (c->refused) {
		conn_drop_refused(d, c);
		return;
	}
	if (events & EPOLLIN)
		ret = conn_input(d, c);
	if (ret < 0 || (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
		conn_close(d, c);
}

/*
 * conn_peer reads what the kernel says of `fd`'s peer: SO_PEERCRED and SO_PEERGROUPS
 * (as of connect, so a process cannot change them afterwards). Unknown credentials are
 * uid and gid -1, which no owner rule names. A peer with more than CTL_MAX_GROUPS
 * groups gets ERANGE and no groups: an owner = @GROUP rule then looks at its gid only.
 */
static void conn_peer(int fd, struct peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	peer->uid = (uid_t)-1;
	peer->gid = (gid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		peer->pid = cred.pid;
		peer->uid = cred.uid;
		peer->gid = cred.gid;
	}
	len = sizeof(peer->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer->groups, &len) == 0)
		peer->num_groups = len / sizeof(gid_t);
}

/* conn_new records a new connection of `d` and its peer. */
static struct conn *conn_new(struct daemon *d, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->src.handle = conn_handle;
	c->fd = fd;
	c->id = ++d->next_conn_id;
	conn_peer(fd, &c->peer);
	c->next = d->conns;
	d->conns = c;
	return c;
}

/*
 * conn_over_limit says whether `c` is one connection too many: of its uid
 * (max_connections_per_uid; root, which is no tenant, has no such limit) or in all
 * (max_connections). Refused connections count toward neither. Returns 0, or -EUSERS
 * with the reason in `why`.
 */
static int conn_over_limit(const struct daemon *d, const struct conn *c, char *why, size_t why_len)
{
	const struct cfg *cfg = &d->cfg->cfg;
	uint32_t total = 0, of_uid = 0;

	for (const struct conn *k = d->conns; k; k = k->next) {
		if (k == c || k->refused)
			continue;
		total++;
		of_uid += k->peer.uid == c->peer.uid;
	}
	if (c->peer.uid != 0 && of_uid >= cfg->max_conns_per_uid) {
		set_err(why, why_len,
			"too many control connections of uid %u (max_connections_per_uid = %u)",
			(unsigned)c->peer.uid, cfg->max_conns_per_uid);
		return -EUSERS;
	}
	if (total >= cfg->max_conns) {
		set_err(why, why_len, "too many control connections (max_connections = %u)",
			cfg->max_conns);
		return -EUSERS;
	}
	return 0;
}

/* conn_log_refusal logs a refused connection, at most once a second: a flood of them
 * must not flood the log; the next line says how many went unlogged. */
static void conn_log_refusal(const struct conn *c, const char *why)
{
	static uint64_t last_ms;
	static unsigned long num_quiet;
	uint64_t now_ms = now_ns() / 1000000;

	if (last_ms && now_ms - last_ms < 1000) {
		num_quiet++;
		return;
	}
	log_warn("control socket: refused a connection of pid %d uid %u: %s (%lu more refused "
		 "since the last such line)",
		 (int)c->peer.pid, (unsigned)c->peer.uid, why, num_quiet);
	last_ms = now_ms;
	num_quiet = 0;
}

/*
 * conn_refuse sends `c` an ERROR (`err`, `why`) at once and keeps it, refused, until
 * it speaks or hangs up: closed at once, the peer's request could fail to send
 * (EPIPE) before it reads the reply. Of more than CTL_MAX_REFUSED such connections,
 * the oldest is closed, so refusals never hold more than that many fds.
 */
#define CTL_MAX_REFUSED 16

static void conn_refuse(struct daemon *d, struct conn *c, int err, const char *why)
{
	struct conn *oldest = NULL;
	unsigned num_refused = 0;

	conn_log_refusal(c, why);
	ctl_error(c->fd, -err, "%s", why);
	c->refused = true;
	for (struct conn *k = d->conns; k; k = k->next) {
		if (k->refused) {
			num_refused++;
			oldest = k;
		}
	}
	if (num_refused > CTL_MAX_REFUSED)
		conn_close(d, oldest);
}

/* ctl_accept is the listening socket's handler: it takes every pending connection. */
static void ctl_accept(struct daemon *d, struct ep_source *src, uint32_t events)
{
	char why[128];
	int fd, ret;

	(void)src;
	(void)events;
	while ((fd = accept4(d->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		struct conn *c = conn_new(d, fd);
		if (!c) {
			close(fd);
			continue;
		}
		if (daemon_watch(d, fd, EPOLLIN | EPOLLRDHUP, &c->src) < 0) {
			conn_close(d, c);
			continue;
		}
		ret = conn_over_limit(d, c, why, sizeof(why));
		if (ret < 0)
			conn_refuse(d, c, ret, why);
	}
}

int ctl_open(struct daemon *d, char *err, size_t err_len)
{
	int ret = ctl_listen(&d->cfg->cfg, err, err_len);

	if (ret < 0)
		return ret;
	d->ctl_fd = ret;
	d->ctl_src.handle = ctl_accept;
	ret = daemon_watch(d, d->ctl_fd, EPOLLIN, &d->ctl_src);
	if (ret < 0)
		set_err(err, err_len, "epoll: %s", strerror(-ret));
	return ret;
}

void ctl_close(struct daemon *d)
{
	while (d->conns)
		conn_close(d, d->conns);
	if (d->ctl_fd >= 0) {
		close(d->ctl_fd);
		unlink(d->cfg->cfg.socket_path);
		d->ctl_fd = -1;
	}
}
