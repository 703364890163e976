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
#include <time.h>
#include <unistd.h>

#include "lane.h"
#include "log.h"
#include "replay.h"
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

static void status(struct daemon *d, struct conn *c)
{
	const struct cfg *cfg = &d->cfg->cfg;
	static char text[R2P2_CTL_MAX_MSG - sizeof(struct r2p2_ctl_msg)];
	struct worker_snap s;
	size_t n = 0;
	unsigned apps = 0;

#define OUT(...)                                                                                   \
	do {                                                                                       \
		int k_ = snprintf(text + n, sizeof(text) - n, __VA_ARGS__);                        \
		if (k_ > 0)                                                                        \
			n = n + (size_t)k_ < sizeof(text) ? n + (size_t)k_ : sizeof(text) - 1;     \
	} while (0)

	for (struct conn *k = d->conns; k; k = k->next)
		apps += k->app != NULL;
	OUT("r2p2d %s  pid %d  workers %u  apps %u%s\n", R2P2D_VERSION, (int)getpid(),
	    d->num_workers, apps, d->draining ? "  (draining)" : "");
	OUT("backend: %s\n", d->backend);
	if (d->xdp) {
		struct r2p2_stats xs;
		if (xdpath_stats(d->xdp, &xs) == 0)
			OUT("xdp: steered %llu no_socket %llu dropped_malformed %llu passed_not_r2p2 %llu "
			    "passed_fragment %llu passed_ipv6_ext %llu passed_runt %llu\n",
			    (unsigned long long)xs.steered, (unsigned long long)xs.no_socket,
			    (unsigned long long)xs.dropped_malformed,
			    (unsigned long long)xs.passed_not_r2p2,
			    (unsigned long long)xs.passed_fragment,
			    (unsigned long long)xs.passed_ipv6_ext, (unsigned long long)xs.passed_runt);
	}
	OUT("\napps:\n");
	for (struct conn *k = d->conns; k; k = k->next) {
		if (!k->app)
			continue;
		OUT("  app %llu  pid %d  uid %u  serves:", (unsigned long long)k->app->id,
		    (int)k->pid, (unsigned)k->uid);
		for (unsigned i = 0; i < k->app->num_serves; i++) {
			const struct cfg_serve *sv = cfg_find_serve_port(cfg, k->app->serves[i]);
			OUT(" %s", sv ? sv->name : "?");
		}
		OUT("\n");
	}
	OUT("\nworkers:\n");
	uint64_t svc_req[CFG_MAX_SERVICES] = {0}, svc_drop[CFG_MAX_SERVICES] = {0};
	uint64_t svc_wrong[CFG_MAX_SERVICES] = {0};
	for (unsigned i = 0; i < d->num_workers; i++) {
		worker_snapshot(d->workers[i], &s);
		OUT("  worker %u  rx %llu  tx %llu  calls %llu ok %llu timeout %llu dropped %llu  "
		    "requests %llu resent %llu  inflight %llu executing %llu  bad %llu\n",
		    i, (unsigned long long)s.eng.rx_packets, (unsigned long long)s.eng.tx_packets,
		    (unsigned long long)s.eng.calls_started, (unsigned long long)s.eng.calls_ok,
		    (unsigned long long)s.eng.calls_timeout, (unsigned long long)s.eng.calls_dropped,
		    (unsigned long long)s.eng.req_received, (unsigned long long)s.eng.req_retransmit,
		    (unsigned long long)s.calls_inflight, (unsigned long long)s.requests_executing,
		    (unsigned long long)(s.eng.rx_runt + s.eng.rx_bad_header + s.eng.rx_bad_type +
					 s.eng.rx_bad_order));
		OUT("    drops: runt %llu bad_header %llu bad_type %llu bad_order %llu duplicate %llu "
		    "unmatched %llu too_big %llu no_state %llu  app_errors %llu\n",
		    (unsigned long long)s.eng.rx_runt, (unsigned long long)s.eng.rx_bad_header,
		    (unsigned long long)s.eng.rx_bad_type, (unsigned long long)s.eng.rx_bad_order,
		    (unsigned long long)s.eng.rx_duplicate, (unsigned long long)s.eng.rx_unmatched,
		    (unsigned long long)s.eng.rx_too_big, (unsigned long long)s.eng.rx_no_state,
		    (unsigned long long)s.app_errors);
		if (d->xdp)
			OUT("    af_xdp: rx %llu rx_bad %llu tx %llu tx_via_kernel %llu\n",
			    (unsigned long long)s.xsk_rx, (unsigned long long)s.xsk_rx_bad,
			    (unsigned long long)s.xsk_tx, (unsigned long long)s.xsk_tx_fallback);
		for (unsigned k = 0; k < s.num_svc; k++) {
			for (size_t j = 0; j < cfg->num_serves; j++) {
				if (cfg->serves[j].port == s.svc[k].port) {
					svc_req[j] += s.svc[k].requests;
					svc_drop[j] += s.svc[k].dropped_no_app;
				}
			}
		}
	}
	struct tls_stats ts = {0}, tc = {0};
	for (unsigned i = 0; i < d->num_workers; i++) {
		worker_snapshot(d->workers[i], &s);
		tls_stats_add(&ts, &s.tls_server);
		tls_stats_add(&tc, &s.tls_client);
		for (unsigned k = 0; k < s.num_svc; k++)
			for (size_t j = 0; j < cfg->num_serves; j++)
				if (cfg->serves[j].port == s.svc[k].port)
					svc_wrong[j] += s.svc[k].dropped_wrong_mode;
	}
	OUT("\ntls server: full_handshakes %llu resumed %llu early_accepted %llu early_rejected %llu "
	    "replays_refused %llu bad_messages %llu pending_handshakes %llu\n",
	    (unsigned long long)ts.handshakes_full, (unsigned long long)ts.resumed,
	    (unsigned long long)ts.early_accepted, (unsigned long long)ts.early_rejected,
	    (unsigned long long)ts.replays_refused, (unsigned long long)ts.bad_messages,
	    (unsigned long long)ts.pending_handshakes);
	OUT("tls client: full_handshakes %llu resumed %llu early_accepted %llu early_rejected %llu "
	    "verify_failures %llu bad_messages %llu tickets_received %llu\n",
	    (unsigned long long)tc.handshakes_full, (unsigned long long)tc.resumed,
	    (unsigned long long)tc.early_accepted, (unsigned long long)tc.early_rejected,
	    (unsigned long long)tc.verify_failures, (unsigned long long)tc.bad_messages,
	    (unsigned long long)tc.tickets_received);
	struct sealed_stats ss = {0};
	uint64_t assocs = 0, reboots = 0;
	for (unsigned i = 0; i < d->num_workers; i++) {
		worker_snapshot(d->workers[i], &s);
		ss.opened += s.sealed.opened;
		ss.responses += s.sealed.responses;
		ss.minted += s.sealed.minted;
		for (unsigned r = 0; r <= SEALED_REASON_MAX; r++)
			ss.rejected[r] += s.sealed.rejected[r];
		assocs += s.sealed_assocs;
		reboots += s.sealed_rebootstraps;
	}
	OUT("sealed server: opened %llu responses %llu minted %llu  rejected:",
	    (unsigned long long)ss.opened, (unsigned long long)ss.responses,
	    (unsigned long long)ss.minted);
	for (unsigned r = 1; r <= SEALED_REASON_MAX; r++)
		OUT(" %s %llu", sealed_reason_name(r), (unsigned long long)ss.rejected[r]);
	OUT("\nsealed client: associations %llu rebootstraps %llu\n", (unsigned long long)assocs,
	    (unsigned long long)reboots);
	for (unsigned i = 0; i < d->num_workers; i++) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
		worker_snapshot(d->workers[i], &s);
		for (unsigned k = 0; k < s.num_assoc; k++)
			OUT("  worker %u association for %s: token key id %08x, expires in %lld s\n", i,
			    s.assoc[k].service, s.assoc[k].key_id,
			    (long long)((int64_t)(s.assoc[k].expiry_ms - now_ms) / 1000));
	}
	if (d->sealed_replay) {
		struct replay_stats rs;
		replay_stats(d->sealed_replay, &rs);
		OUT("sealed strike register: entries %llu / %llu  inserts %llu hits %llu full_rejects "
		    "%llu\n",
		    (unsigned long long)rs.entries, (unsigned long long)rs.capacity,
		    (unsigned long long)rs.inserts, (unsigned long long)rs.hits,
		    (unsigned long long)rs.full_rejects);
	}
	if (d->replay) {
		struct replay_stats rs;
		replay_stats(d->replay, &rs);
		OUT("strike register: entries %llu / %llu  inserts %llu hits %llu full_rejects %llu\n",
		    (unsigned long long)rs.entries, (unsigned long long)rs.capacity,
		    (unsigned long long)rs.inserts, (unsigned long long)rs.hits,
		    (unsigned long long)rs.full_rejects);
	}
	OUT("\nservices served:\n");
	for (size_t j = 0; j < cfg->num_serves; j++)
		OUT("  %-24s port %-5u %-6s requests %llu  dropped_no_app %llu  wrong_mode %llu\n",
		    cfg->serves[j].name, cfg->serves[j].port,
		    cfg->serves[j].security == CFG_SEC_TLS      ? "tls"
		    : cfg->serves[j].security == CFG_SEC_SEALED ? "sealed"
								: "plain",
		    (unsigned long long)svc_req[j], (unsigned long long)svc_drop[j],
		    (unsigned long long)svc_wrong[j]);
	OUT("\nservices called:\n");
	for (size_t j = 0; j < cfg->num_calls; j++) {
		char buf[64];
		const struct cfg_call *cc = &cfg->calls[j];
		OUT("  %-24s %s %s\n", cc->name, cc->has_router ? "router" : "servers",
		    cfg_format_addr(cc->has_router ? &cc->router : &cc->servers[0], buf, sizeof(buf)));
	}
#undef OUT
	ctl_send(c->fd, R2P2_CTL_STATUS_OK, 0, NULL, text, n, NULL, 0);
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
		status(d, c);
		return 0;
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
