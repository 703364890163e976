// SPDX-License-Identifier: MIT
/*
 * libr2p2: the application side of the shared-memory rings (include/r2p2/shm.h)
 * and of the control socket. The library trusts its daemon for the meaning of
 * what it sends, but checks every size and index it reads from shared memory
 * so a wrong or crashed daemon turns into an error, never a crash.
 */
#include <r2p2/r2p2.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define R2P2_API __attribute__((visibility("default")))

#define CTL_TIMEOUT_S 5	   /* a daemon that does not answer a control message in time is gone */
#define HUP_CHECK_MS 1	   /* a non-blocking poll looks at the control socket at most this often */
#define RECONNECT_MS 200   /* a serving context retries a lost daemon this often */
#define SYNC_GRACE_MS 1000 /* r2p2_call_sync waits this long past the call's own timeout */
#define MAX_FDS (1 + 2 * R2P2_MAX_LANES)

/* The app's view of one lane. */
struct app_lane {
	struct r2p2_lane_ctrl *ctrl;
	struct r2p2_sqe *sq;
	const struct r2p2_cqe *cq;
	uint8_t *sq_arena;
	const uint8_t *cq_arena;
	uint32_t sq_tail;	 /* private copy of the published sq_tail */
	uint64_t sq_pos;	 /* SQ arena write position (free-running) */
	uint64_t *sq_end;	 /* SQ arena end position of each SQ slot */
	uint32_t cq_head;	 /* last published cq_head */
	uint32_t cq_read;	 /* CQEs handed out; published as cq_head by the next poll */
	uint32_t calls_inflight; /* calls submitted here whose response CQE has not arrived */
	int sq_efd;
	int cq_efd;
};

struct service {
	char name[R2P2_SERVICE_NAME_MAX];
	int id; /* -errno when the last (re-)registration failed */
};

/* Outstanding call ids: open addressing, linear probing, tombstones so that a
 * scan may delete as it goes. Ids start at 1 and never reach ID_TOMB. */
#define ID_EMPTY 0
#define ID_TOMB UINT64_MAX
struct id_set {
	uint64_t *slots;
	size_t cap;   /* power of two, or 0 */
	size_t count; /* live ids */
	size_t used;  /* live ids + tombstones */
};

struct r2p2_ctx {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int sock;
	bool connected;		 /* rings mapped, fds open */
	bool dead;		 /* the daemon failed; disconnect at the next chance */
	bool hup;		 /* the daemon exited: read its rings out, then disconnect */
	uint32_t remote_code;	 /* of the last -EREMOTEIO r2p2_call_sync returned */
	struct r2p2_shm_hdr hdr; /* validated copy */
	void *map;
	size_t map_size;
	void *stale_map; /* a lost daemon's mapping that event payloads may still point into */
	size_t stale_size;
	struct app_lane *lanes;
	struct pollfd *pfds;
	uint32_t num_lanes;
	uint32_t poll_lane;
	uint64_t next_id;
	struct id_set calls;
	uint64_t reset_below; /* outstanding ids below this belong to a lost daemon */
	size_t num_stale;     /* how many of them are still to be reported */
	struct service *services;
	size_t num_services;
	int64_t next_hup_check_ms;
	int64_t next_reconnect_ms;
	unsigned poll_us;	/* r2p2_set_poll_us: poll this long before sleeping */
	uint64_t last_event_ns; /* when an event was last returned */
	int epfd;		/* r2p2_fd: the lanes' doorbells and the socket; -1: none */
};

static const uint8_t no_data[1];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool service_ok(const char *s)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, R2P2_SERVICE_NAME_MAX);
	return n > 0 && n < R2P2_SERVICE_NAME_MAX;
}

/* ---- outstanding call ids ------------------------------------------------- */

static size_t id_slot(const struct id_set *s, uint64_t id)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h ^ (h >> 32)) & (s->cap - 1);
}

/* id_set_rehash moves the live ids into a table of `cap` slots, dropping tombstones. */
static int id_set_rehash(struct id_set *s, size_t cap)
{
	uint64_t *old = s->slots;
	size_t old_cap = s->cap;

	s->slots = calloc(cap, sizeof(*s->slots));
	if (!s->slots) {
		s->slots = old;
		return -ENOMEM;
	}
	s->cap = cap;
	s->used = s->count;
	for (size_t i = 0; i < old_cap; i++) {
		if (old[i] == ID_EMPTY || old[i] == ID_TOMB)
			continue;
		size_t j = id_slot(s, old[i]);
		while (s->slots[j] != ID_EMPTY)
			j = (j + 1) & (cap - 1);
		s->slots[j] = old[i];
	}
	free(old);
	return 0;
}

/* id_set_reserve makes room for one more id, so the add after a published SQE cannot fail. */
static int id_set_reserve(struct id_set *s)
{
	size_t cap = s->cap ? s->cap : 64;

	if ((s->used + 1) * 4 <= s->cap * 3)
		return 0;
	while ((s->count + 1) * 2 > cap)
		cap *= 2;
	return id_set_rehash(s, cap);
}

static void id_set_add(struct id_set *s, uint64_t id)
{
	size_t j = id_slot(s, id);

	while (s->slots[j] != ID_EMPTY && s->slots[j] != ID_TOMB)
		j = (j + 1) & (s->cap - 1);
	if (s->slots[j] == ID_EMPTY)
		s->used++;
	s->slots[j] = id;
	s->count++;
}

static bool id_set_del(struct id_set *s, uint64_t id)
{
	if (!s->cap || id == ID_EMPTY || id == ID_TOMB)
		return false;
	for (size_t j = id_slot(s, id);; j = (j + 1) & (s->cap - 1)) {
		if (s->slots[j] == ID_EMPTY)
			return false;
		if (s->slots[j] == id) {
			s->slots[j] = ID_TOMB;
			s->count--;
			return true;
		}
	}
}

static bool id_set_has(const struct id_set *s, uint64_t id)
{
	if (!s->cap || id == ID_EMPTY || id == ID_TOMB)
		return false;
	for (size_t j = id_slot(s, id);; j = (j + 1) & (s->cap - 1)) {
		if (s->slots[j] == ID_EMPTY)
			return false;
		if (s->slots[j] == id)
			return true;
	}
}

/* call_forget drops an outstanding call so that no event is ever reported for it. */
static bool call_forget(struct r2p2_ctx *ctx, uint64_t id)
{
	if (!id_set_del(&ctx->calls, id))
		return false;
	if (id < ctx->reset_below)
		ctx->num_stale--;
	return true;
}

/* ---- control socket ------------------------------------------------------ */

static int ctl_send(int sock, uint16_t type, const char *name)
{
	struct r2p2_ctl_msg m = {
	    .magic = R2P2_CTL_MAGIC,
	    .version = R2P2_CTL_VERSION,
	    .type = type,
	};
	ssize_t n;

	if (name)
		memcpy(m.name, name, strlen(name) + 1);
	do
		n = send(sock, &m, sizeof(m), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == sizeof(m) ? 0 : -EPROTO;
}

/*
 * ctl_recv receives one control message. Descriptors that came with it are
 * stored in `fds` (up to MAX_FDS) and counted in `*out_nfds`; the caller owns
 * them even on error. The reason text of an ERROR is not kept (the errno is
 * the contract), so only the fixed part is read.
 */
static int ctl_recv(int sock, struct r2p2_ctl_msg *out, int *fds, size_t *out_nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} u;
	struct iovec iov = {.iov_base = out, .iov_len = sizeof(*out)};
	struct msghdr mh = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = u.buf,
	    .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	*out_nfds = 0;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	if (n == 0)
		return -ECONNRESET;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*out_nfds < MAX_FDS)
				fds[(*out_nfds)++] = fd;
			else
				close(fd);
		}
	}
	if ((mh.msg_flags & MSG_CTRUNC) || (size_t)n < sizeof(*out) ||
	    out->magic != R2P2_CTL_MAGIC || out->version != R2P2_CTL_VERSION)
		return -EPROTO;
	return 0;
}

/* ctl_error turns an ERROR reply into a negative errno, never into success. */
static int ctl_error(const struct r2p2_ctl_msg *m)
{
	return m->value > 0 && m->value < 4096 ? -m->value : -EPROTO;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * register_one asks the daemon to route `name` to this context. A transport
 * failure marks the daemon dead (-ENOTCONN); a refusal is the daemon's errno.
 */
static int register_one(struct r2p2_ctx *ctx, const char *name)
{
	struct r2p2_ctl_msg m;
	int fds[MAX_FDS];
	size_t nfds = 0;
	int err;

	err = ctl_send(ctx->sock, R2P2_CTL_REGISTER, name);
	if (!err)
		err = ctl_recv(ctx->sock, &m, fds, &nfds);
	close_fds(fds, nfds);
	if (err) {
		ctx->dead = true;
		return err == -EPROTO ? -EPROTO : -ENOTCONN;
	}
	if (m.type == R2P2_CTL_REGISTER_OK)
		return m.value >= 0 ? m.value : -EPROTO;
	if (m.type == R2P2_CTL_ERROR)
		return ctl_error(&m);
	return -EPROTO;
}

/* ---- mapping the rings ---------------------------------------------------- */

static bool entries_ok(uint32_t n)
{
	return n >= 2 && n <= 65536 && (n & (n - 1)) == 0;
}

/* hdr_ok checks that the daemon's header describes lanes that fit `size` bytes. */
static bool hdr_ok(const struct r2p2_shm_hdr *h, size_t size)
{
	if (h->magic != R2P2_SHM_MAGIC || h->version != R2P2_SHM_VERSION)
		return false;
	if (h->num_lanes < 1 || h->num_lanes > R2P2_MAX_LANES || !entries_ok(h->sq_entries) ||
	    !entries_ok(h->cq_entries) || h->max_msg_len < 1 || h->arena_size < h->max_msg_len)
		return false;
	if (h->lane_offset < sizeof(*h) || h->lane_offset % 64 || h->lane_stride % 64 ||
	    h->lane_stride < r2p2_lane_size(h) || h->total_size > size ||
	    h->lane_offset > h->total_size)
		return false;
	return h->lane_stride <= (h->total_size - h->lane_offset) / h->num_lanes;
}

static void lanes_free(struct r2p2_ctx *ctx)
{
	for (uint32_t i = 0; ctx->lanes && i < ctx->num_lanes; i++) {
		close(ctx->lanes[i].sq_efd);
		close(ctx->lanes[i].cq_efd);
		free(ctx->lanes[i].sq_end);
	}
	free(ctx->lanes);
	free(ctx->pfds);
	ctx->lanes = NULL;
	ctx->pfds = NULL;
	ctx->num_lanes = 0;
}

/* map_rings maps the memfd fds[0] and sets up the lanes; it owns `fds` in every case. */
static int map_rings(struct r2p2_ctx *ctx, int *fds, size_t nfds)
{
	struct r2p2_shm_hdr h;
	struct stat st;
	void *map;
	size_t size;
	int err;

	if (fstat(fds[0], &st) < 0) {
		err = -errno;
		goto fail_fds;
	}
	if (st.st_size < (off_t)sizeof(h)) {
		err = -EPROTO;
		goto fail_fds;
	}
	size = (size_t)st.st_size;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (map == MAP_FAILED) {
		err = -errno;
		goto fail_fds;
	}
	memcpy(&h, map, sizeof(h));
	if (!hdr_ok(&h, size) || nfds != 1 + 2 * (size_t)h.num_lanes) {
		err = -EPROTO;
		goto fail_map;
	}
	ctx->lanes = calloc(h.num_lanes, sizeof(*ctx->lanes));
	ctx->pfds = calloc(h.num_lanes + 1, sizeof(*ctx->pfds));
	if (!ctx->lanes || !ctx->pfds) {
		err = -ENOMEM;
		goto fail_lanes;
	}
	for (uint32_t i = 0; i < h.num_lanes; i++) {
		struct app_lane *l = &ctx->lanes[i];
		uint8_t *base = (uint8_t *)map + h.lane_offset + (uint64_t)i * h.lane_stride;

		l->sq_efd = -1;
		l->cq_efd = -1;
		l->ctrl = (struct r2p2_lane_ctrl *)base;
		l->sq = (struct r2p2_sqe *)(base + r2p2_lane_sq_off());
		l->cq = (const struct r2p2_cqe *)(base + r2p2_lane_cq_off(&h));
		l->sq_arena = base + r2p2_lane_sq_arena_off(&h);
		l->cq_arena = base + r2p2_lane_cq_arena_off(&h);
		l->sq_tail = r2p2_load_acquire(&l->ctrl->sq_tail);
		l->cq_head = l->cq_read = r2p2_load_acquire(&l->ctrl->cq_head);
		l->sq_end = calloc(h.sq_entries, sizeof(*l->sq_end));
		if (!l->sq_end) {
			ctx->num_lanes = i + 1;
			err = -ENOMEM;
			goto fail_lanes;
		}
	}
	ctx->num_lanes = h.num_lanes;
	for (uint32_t i = 0; i < h.num_lanes; i++) {
		ctx->lanes[i].sq_efd = fds[1 + 2 * i];
		ctx->lanes[i].cq_efd = fds[2 + 2 * i];
	}
	close(fds[0]); /* the mapping keeps the memory */
	ctx->hdr = h;
	ctx->map = map;
	ctx->map_size = size;
	return 0;

fail_lanes:
	lanes_free(ctx);
fail_map:
	munmap(map, size);
fail_fds:
	close_fds(fds, nfds);
	return err;
}

/*
 * ctx_disconnect drops the daemon: every outstanding call becomes stale (to be
 * completed with -ECONNRESET by r2p2_poll). With `payloads_held` the mapping
 * stays until the next poll, because events the app got from the last poll
 * point into it.
 */
static void ctx_disconnect(struct r2p2_ctx *ctx, bool payloads_held)
{
	if (!ctx->connected)
		return;
	ctx->reset_below = ctx->next_id + 1;
	ctx->num_stale = ctx->calls.count;
	close(ctx->sock);
	ctx->sock = -1;
	lanes_free(ctx);
	if (payloads_held && !ctx->stale_map) {
		ctx->stale_map = ctx->map;
		ctx->stale_size = ctx->map_size;
	} else {
		munmap(ctx->map, ctx->map_size);
	}
	ctx->map = NULL;
	ctx->connected = false;
	ctx->dead = false;
	ctx->hup = false;
}

/*
 * fd_watch_all puts the lanes' doorbells and the control socket of a fresh connection
 * into r2p2_fd's epoll set (the closed fds of a lost daemon left it by themselves). The
 * doorbells become non-blocking: r2p2_poll drains them without knowing which rang.
 */
static void fd_watch_all(struct r2p2_ctx *ctx)
{
	struct epoll_event ev = {.events = EPOLLIN};

	for (uint32_t i = 0; i < ctx->num_lanes; i++) {
		int fd = ctx->lanes[i].cq_efd;

		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->sock, &ev);
}

/* ctx_connect attaches to the daemon and registers again every service served before. */
static int ctx_connect(struct r2p2_ctx *ctx)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = CTL_TIMEOUT_S};
	struct r2p2_ctl_msg m;
	int fds[MAX_FDS];
	size_t nfds = 0;
	int sock, err;

	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	memcpy(sa.sun_path, ctx->path, sizeof(sa.sun_path));
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		err = -errno;
		goto out;
	}
	err = ctl_send(sock, R2P2_CTL_ATTACH, NULL);
	if (!err)
		err = ctl_recv(sock, &m, fds, &nfds);
	if (err)
		goto out;
	if (m.type == R2P2_CTL_ERROR) {
		err = ctl_error(&m);
		goto out;
	}
	if (m.type != R2P2_CTL_ATTACH_OK || nfds < 1) {
		err = -EPROTO;
		goto out;
	}
	err = map_rings(ctx, fds, nfds);
	nfds = 0;
	if (err)
		goto out;
	ctx->sock = sock;
	sock = -1;
	ctx->connected = true;
	ctx->dead = false;
	ctx->hup = false;
	if (ctx->epfd >= 0)
		fd_watch_all(ctx);
	/* A service the new daemon refuses stays listed (id = -errno), so the
	 * next restart tries again; only a lost daemon fails the attach. */
	for (size_t i = 0; i < ctx->num_services; i++) {
		ctx->services[i].id = register_one(ctx, ctx->services[i].name);
		if (ctx->dead) {
			ctx_disconnect(ctx, false);
			return -ECONNRESET;
		}
	}
out:
	close_fds(fds, nfds);
	if (sock >= 0)
		close(sock);
	return err;
}

/*
 * ctx_ensure_connected reconnects a context whose daemon was lost. Returns 0,
 * -EPROTO or -EACCES as they came, anything else as -ENOTCONN.
 */
static int ctx_ensure_connected(struct r2p2_ctx *ctx, bool payloads_held)
{
	int err;

	if (ctx->connected && !ctx->dead && !ctx->hup)
		return 0;
	ctx_disconnect(ctx, payloads_held);
	err = ctx_connect(ctx);
	if (err == 0 || err == -EPROTO || err == -EACCES || err == -ENOMEM)
		return err;
	return -ENOTCONN;
}

/*
 * ctx_check_daemon looks at the control socket without blocking: EOF or an error means it is
 * gone. A daemon posts its last completions (those a drain waited for) before it exits, so the
 * rings are read once more before the calls still waiting are reset (see r2p2_poll).
 */
static void ctx_check_daemon(struct r2p2_ctx *ctx)
{
	struct r2p2_ctl_msg m;
	ssize_t n;

	/* The daemon sends nothing unasked; a stray message is dropped. */
	n = recv(ctx->sock, &m, sizeof(m), MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		ctx->hup = true;
}

/* ---- rings ---------------------------------------------------------------- */

/*
 * sq_submit copies `payload` into the lane's SQ arena and publishes `sqe`.
 * The arena is the byte ring of lane.c's cq_write mirrored: free-running
 * positions, entries never wrap, space is reclaimed from the private end
 * position of the last SQE the daemon consumed.
 */
static int sq_submit(struct r2p2_ctx *ctx, struct app_lane *l, struct r2p2_sqe *sqe,
		     const void *payload, uint32_t len)
{
	const uint32_t mask = ctx->hdr.sq_entries - 1;
	const uint32_t arena = ctx->hdr.arena_size;
	uint32_t head = r2p2_load_acquire(&l->ctrl->sq_head);
	uint32_t used = l->sq_tail - head;
	uint64_t begin, start, wpos;

	if (used > ctx->hdr.sq_entries)
		goto daemon_failed;
	if (used == ctx->hdr.sq_entries)
		return -EAGAIN;
	if (used == 0) {
		l->sq_pos += (arena - l->sq_pos % arena) % arena;
		l->sq_end[(l->sq_tail - 1) & mask] = l->sq_pos;
	}
	begin = l->sq_end[(head - 1) & mask];
	if (l->sq_pos - begin > arena)
		goto daemon_failed;
	start = l->sq_pos;
	wpos = start % arena;
	if (len && wpos + len > arena) {
		start += arena - wpos;
		wpos = 0;
	}
	if (start + len - begin > arena)
		return -EAGAIN;

	if (len)
		memcpy(l->sq_arena + wpos, payload, len);
	sqe->off = (uint32_t)wpos;
	sqe->len = len;
	memcpy(&l->sq[l->sq_tail & mask], sqe, sizeof(*sqe));
	l->sq_pos = start + len;
	l->sq_end[l->sq_tail & mask] = l->sq_pos;
	r2p2_store_release(&l->ctrl->sq_tail, ++l->sq_tail);
	/* Pairs with the daemon's fence between arming sq_need_wakeup and its re-check. */
	r2p2_smp_mb();
	if (r2p2_load_acquire(&l->ctrl->sq_need_wakeup))
		eventfd_write(l->sq_efd, 1);
	return 0;

daemon_failed:
	ctx->dead = true;
	return -ENOTCONN;
}

/* release_held hands back the CQ entries (and payloads) returned by the previous poll. */
static void release_held(struct r2p2_ctx *ctx)
{
	for (uint32_t i = 0; ctx->connected && i < ctx->num_lanes; i++) {
		struct app_lane *l = &ctx->lanes[i];

		if (l->cq_read == l->cq_head)
			continue;
		l->cq_head = l->cq_read;
		r2p2_store_release(&l->ctrl->cq_head, l->cq_head);
		/* Pairs with the daemon's fence after setting cq_overflow. */
		r2p2_smp_mb();
		if (r2p2_load_acquire(&l->ctrl->cq_overflow))
			eventfd_write(l->sq_efd, 1);
	}
	if (ctx->stale_map) {
		munmap(ctx->stale_map, ctx->stale_size);
		ctx->stale_map = NULL;
	}
}

/* collect_stale reports calls lost with a daemon, each exactly once. */
static int collect_stale(struct r2p2_ctx *ctx, struct r2p2_event *ev, int max)
{
	int n = 0;

	for (size_t i = 0; ctx->num_stale && i < ctx->calls.cap && n < max; i++) {
		uint64_t id = ctx->calls.slots[i];

		if (id == ID_EMPTY || id == ID_TOMB || id >= ctx->reset_below)
			continue;
		ctx->calls.slots[i] = ID_TOMB;
		ctx->calls.count--;
		ctx->num_stale--;
		ev[n++] = (struct r2p2_event){
		    .type = R2P2_EV_RESPONSE,
		    .status = -ECONNRESET,
		    .id = id,
		    .data = no_data,
		};
	}
	return n;
}

/* collect_lane turns CQEs of lane `idx` into events; a malformed CQE marks the daemon dead. */
static int collect_lane(struct r2p2_ctx *ctx, uint32_t idx, struct r2p2_event *ev, int max)
{
	struct app_lane *l = &ctx->lanes[idx];
	uint32_t tail = r2p2_load_acquire(&l->ctrl->cq_tail);
	int n = 0;

	if (tail - l->cq_head > ctx->hdr.cq_entries ||
	    tail - l->cq_head < l->cq_read - l->cq_head) {
		ctx->dead = true;
		return 0;
	}
	while (n < max && l->cq_read != tail) {
		struct r2p2_cqe c;
		struct r2p2_event *e = &ev[n];

		memcpy(&c, &l->cq[l->cq_read & (ctx->hdr.cq_entries - 1)], sizeof(c));
		if ((uint64_t)c.off + c.len > ctx->hdr.arena_size || c.len > ctx->hdr.max_msg_len) {
			ctx->dead = true;
			break;
		}
		l->cq_read++;
		*e = (struct r2p2_event){
		    .status = c.status,
		    .id = c.user_data,
		    .data = l->cq_arena + c.off,
		    .len = c.len,
		    .lane = idx,
		};
		switch (c.op) {
		case R2P2_CQ_RESPONSE:
			if (l->calls_inflight)
				l->calls_inflight--;
			/* An id we do not wait for (abandoned by r2p2_call_sync) is dropped. */
			if (!call_forget(ctx, c.user_data))
				continue;
			e->type = R2P2_EV_RESPONSE;
			e->code = c.status == -EREMOTEIO ? c.aux : 0;
			break;
		case R2P2_CQ_REQUEST:
			e->type = R2P2_EV_REQUEST;
			e->service_id = c.service_id;
			e->deadline_us = c.aux;
			break;
		case R2P2_CQ_ERROR:
			e->type = R2P2_EV_ERROR;
			break;
		default:
			ctx->dead = true;
			return n;
		}
		n++;
	}
	return n;
}

static int collect(struct r2p2_ctx *ctx, struct r2p2_event *ev, int max)
{
	int n = collect_stale(ctx, ev, max);

	if (!ctx->connected || ctx->dead)
		return n;
	for (uint32_t k = 0; k < ctx->num_lanes && n < max && !ctx->dead; k++)
		n += collect_lane(ctx, (ctx->poll_lane + k) % ctx->num_lanes, ev + n, max - n);
	ctx->poll_lane++;
	return n;
}

/* cq_pending says whether any lane has CQEs not yet handed out. */
static bool cq_pending(const struct r2p2_ctx *ctx)
{
	for (uint32_t i = 0; i < ctx->num_lanes; i++)
		if (r2p2_load_acquire(&ctx->lanes[i].ctrl->cq_tail) != ctx->lanes[i].cq_read)
			return true;
	return false;
}

static void set_cq_need_wakeup(struct r2p2_ctx *ctx, uint32_t v)
{
	for (uint32_t i = 0; i < ctx->num_lanes; i++)
		r2p2_store_release(&ctx->lanes[i].ctrl->cq_need_wakeup, v);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * spin_for_cq polls the completion rings for up to poll_us (bounded by
 * `timeout_ms`), while an answer is likely near: a call in flight, or an event in
 * the last millisecond. cq_need_wakeup stays 0, so the daemon rings no doorbell
 * either. Returns true when a completion arrived.
 */
static bool spin_for_cq(struct r2p2_ctx *ctx, int timeout_ms)
{
	uint64_t now = now_ns(), until;

	if (!ctx->poll_us || timeout_ms == 0 ||
	    (!ctx->calls.count && now - ctx->last_event_ns > 1000000u))
		return false;
	until = now + (uint64_t)ctx->poll_us * 1000u;
	if (timeout_ms > 0 && (uint64_t)timeout_ms * 1000000u < until - now)
		until = now + (uint64_t)timeout_ms * 1000000u;
	do {
		if (cq_pending(ctx))
			return true;
		sched_yield(); /* the daemon's worker may share this CPU */
	} while (now_ns() < until);
	return false;
}

/* poll_wait sleeps until a doorbell, the daemon's socket or `timeout_ms` (-1: forever). */
static void poll_wait(struct r2p2_ctx *ctx, int timeout_ms)
{
	uint32_t n = ctx->num_lanes;
	eventfd_t v;

	if (spin_for_cq(ctx, timeout_ms))
		return;
	set_cq_need_wakeup(ctx, 1);
	/* Pairs with lane_notify's fence: either we see its cq_tail, or it sees our flag. */
	r2p2_smp_mb();
	if (cq_pending(ctx))
		goto out;
	for (uint32_t i = 0; i < n; i++)
		ctx->pfds[i] = (struct pollfd){.fd = ctx->lanes[i].cq_efd, .events = POLLIN};
	ctx->pfds[n] = (struct pollfd){.fd = ctx->sock, .events = POLLIN};
	if (poll(ctx->pfds, n + 1, timeout_ms) <= 0)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		if (ctx->pfds[i].revents & POLLIN)
			eventfd_read(ctx->lanes[i].cq_efd, &v);
	if (ctx->pfds[n].revents)
		ctx_check_daemon(ctx);
out:
	set_cq_need_wakeup(ctx, 0);
}

/* ---- public API ----------------------------------------------------------- */

R2P2_API struct r2p2_ctx *r2p2_attach(const char *socket_path)
{
	struct r2p2_ctx *ctx;
	int err;

	if (!socket_path)
		socket_path = getenv("R2P2_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = R2P2_DEFAULT_SOCKET;
	if (strlen(socket_path) >= sizeof(ctx->path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->sock = -1;
	ctx->epfd = -1;
	memcpy(ctx->path, socket_path, strlen(socket_path) + 1);
	if (getenv("R2P2_POLL_US"))
		r2p2_set_poll_us(ctx, (unsigned)strtoul(getenv("R2P2_POLL_US"), NULL, 10));
	err = ctx_connect(ctx);
	if (err) {
		free(ctx);
		errno = -err;
		return NULL;
	}
	return ctx;
}

R2P2_API void r2p2_set_poll_us(struct r2p2_ctx *ctx, unsigned us)
{
	if (ctx)
		ctx->poll_us = us > 10000 ? 10000 : us;
}

R2P2_API void r2p2_detach(struct r2p2_ctx *ctx)
{
	if (!ctx)
		return;
	ctx_disconnect(ctx, false);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	if (ctx->stale_map)
		munmap(ctx->stale_map, ctx->stale_size);
	free(ctx->calls.slots);
	free(ctx->services);
	free(ctx);
}

R2P2_API int64_t r2p2_call(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
			   unsigned timeout_ms, unsigned flags)
{
	struct r2p2_sqe sqe = {.op = R2P2_SQ_CALL};
	uint32_t nl;
	int err;

	if (!ctx || !service_ok(service) || (len && !req) || (flags & ~R2P2_CALL_NOT_REPLAY_SAFE))
		return -EINVAL;
	err = ctx_ensure_connected(ctx, true);
	if (err)
		return err;
	if (len > ctx->hdr.max_msg_len)
		return -EMSGSIZE;
	err = id_set_reserve(&ctx->calls);
	if (err)
		return err;

	sqe.flags = (uint8_t)flags;
	sqe.timeout_ms = timeout_ms;
	sqe.user_data = ctx->next_id + 1;
	memcpy(sqe.service, service, strlen(service) + 1);
	/* The least busy lane, lowest index first: a sequential caller keeps one daemon
	 * worker warm (each idle thread woken costs microseconds), while concurrent calls
	 * spread over every worker. Among the least busy, the lane whose worker is pinned
	 * to the CPU this thread runs on (daemon `cpus`): a hand-off within one CPU. */
	nl = ctx->num_lanes;
	uint32_t first = 0;
	for (uint32_t k = 1; k < nl; k++)
		if (ctx->lanes[k].calls_inflight < ctx->lanes[first].calls_inflight)
			first = k;
	int cpu = sched_getcpu();
	for (uint32_t k = 0; cpu >= 0 && k < nl; k++)
		if (ctx->lanes[k].calls_inflight == ctx->lanes[first].calls_inflight &&
		    r2p2_load_acquire(&ctx->lanes[k].ctrl->worker_cpu) == (uint32_t)cpu + 1) {
			first = k;
			break;
		}
	err = -EAGAIN;
	uint32_t used = first;
	for (uint32_t k = 0; k < nl && err == -EAGAIN; k++) {
		used = (first + k) % nl;
		err = sq_submit(ctx, &ctx->lanes[used], &sqe, req, (uint32_t)len);
	}
	if (err)
		return err;
	ctx->lanes[used].calls_inflight++;
	id_set_add(&ctx->calls, ++ctx->next_id);
	return (int64_t)ctx->next_id;
}

/*
 * fd_arm, for an r2p2_fd user about to sleep in its own loop: empties the doorbells,
 * asks the daemon to ring on the next completion and looks once more (a completion
 * may have come before the flag). True when one did: collect it instead. Notices a
 * lost daemon (its socket readable) too.
 */
static bool fd_arm(struct r2p2_ctx *ctx)
{
	eventfd_t v;

	for (uint32_t i = 0; i < ctx->num_lanes; i++)
		eventfd_read(ctx->lanes[i].cq_efd, &v); /* non-blocking */
	ctx_check_daemon(ctx);
	set_cq_need_wakeup(ctx, 1);
	r2p2_smp_mb(); /* pairs with lane_notify's fence, as in poll_wait */
	if (!cq_pending(ctx))
		return false;
	set_cq_need_wakeup(ctx, 0);
	return true;
}

R2P2_API int r2p2_poll(struct r2p2_ctx *ctx, struct r2p2_event *events, int max, int timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	int n, left;

	if (!ctx || max < 0 || (max && !events))
		return -EINVAL;
	release_held(ctx);
	if (ctx->epfd >= 0 && ctx->connected)
		set_cq_need_wakeup(ctx, 0); /* awake: no doorbells until fd_arm */
	for (;;) {
		if (ctx->dead)
			ctx_disconnect(ctx, false);
		if (!ctx->connected && ctx->num_services && now_ms() >= ctx->next_reconnect_ms) {
			/* A server has nobody else to bring it back after a daemon restart. */
			ctx->next_reconnect_ms = now_ms() + RECONNECT_MS;
			ctx_connect(ctx);
		}
		n = collect(ctx, events, max);
		if (n > 0 && ctx->poll_us)
			ctx->last_event_ns = now_ns();
		if (n > 0 || max == 0)
			return n;
		/* The daemon is gone and its rings are read out: reset what still waits. */
		if (ctx->hup)
			ctx->dead = true;
		if (ctx->dead)
			continue;
		left = timeout_ms < 0 ? -1 : timeout_ms == 0 ? 0 : (int)(deadline - now_ms());
		if (timeout_ms > 0 && left <= 0)
			left = 0;
		if (!ctx->connected) {
			if (!ctx->num_services)
				return -ENOTCONN;
			if (left == 0)
				return 0;
			poll(NULL, 0, left < 0 || left > RECONNECT_MS ? RECONNECT_MS : left);
			continue;
		}
		if (left == 0 && ctx->epfd >= 0) {
			/* r2p2_fd: ring the doorbell for the next completion, then say "none" */
			if (fd_arm(ctx) || ctx->hup)
				continue;
			return 0;
		}
		if (left == 0) {
			/* Busy pollers learn of a lost daemon too, at a bounded cost. */
			if (now_ms() < ctx->next_hup_check_ms)
				return 0;
			ctx->next_hup_check_ms = now_ms() + HUP_CHECK_MS;
			ctx_check_daemon(ctx);
			if (ctx->hup)
				continue;
			return 0;
		}
		poll_wait(ctx, left);
	}
}

R2P2_API int r2p2_fd(struct r2p2_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	if (ctx->epfd >= 0)
		return ctx->epfd;
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->epfd < 0)
		return -errno;
	if (ctx->connected)
		fd_watch_all(ctx);
	return ctx->epfd;
}

R2P2_API int r2p2_cancel(struct r2p2_ctx *ctx, uint64_t id)
{
	struct r2p2_sqe sqe = {.op = R2P2_SQ_CANCEL, .user_data = id};
	int err = 0;

	if (!ctx)
		return -EINVAL;
	if (!id_set_has(&ctx->calls, id) || id < ctx->reset_below)
		return -ENOENT; /* ended (its event is out or on the way), or never made */
	if (!ctx->connected || ctx->dead || ctx->hup)
		return -ENOTCONN;
	/* Every lane: the worker that holds the call finds it, the others nothing. A lane
	 * that takes it twice after an -EAGAIN retry finds it once. */
	for (uint32_t i = 0; i < ctx->num_lanes; i++) {
		int r = sq_submit(ctx, &ctx->lanes[i], &sqe, NULL, 0);

		if (r < 0 && err != -ENOTCONN)
			err = r;
	}
	return err;
}

R2P2_API int r2p2_call_sync(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
			    void *resp, size_t resp_cap, size_t *out_len, unsigned timeout_ms)
{
	return r2p2_call_sync_flags(ctx, service, req, len, resp, resp_cap, out_len, timeout_ms, 0);
}

R2P2_API int r2p2_call_sync_flags(struct r2p2_ctx *ctx, const char *service, const void *req,
				  size_t len, void *resp, size_t resp_cap, size_t *out_len,
				  unsigned timeout_ms, unsigned flags)
{
	int64_t deadline = timeout_ms ? now_ms() + timeout_ms + SYNC_GRACE_MS : INT64_MAX;
	struct r2p2_event ev;
	int64_t id;
	int r;

	if (!ctx || !out_len || (resp_cap && !resp))
		return -EINVAL;
	*out_len = 0;
	if (ctx->calls.count || ctx->num_services)
		return -EBUSY;
	for (;;) {
		id = r2p2_call(ctx, service, req, len, timeout_ms, flags);
		if (id != -EAGAIN)
			break;
		/* The daemon has not taken earlier submissions yet. */
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		r = r2p2_poll(ctx, &ev, 1, 1);
		if (r < 0)
			return r;
	}
	if (id < 0)
		return (int)id;
	for (;;) {
		int64_t left = deadline == INT64_MAX ? -1 : deadline - now_ms();

		if (deadline != INT64_MAX && left <= 0) {
			call_forget(ctx, (uint64_t)id);
			return -ETIMEDOUT;
		}
		r = r2p2_poll(ctx, &ev, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r < 0) {
			call_forget(ctx, (uint64_t)id);
			return r;
		}
		if (r == 1 && ev.type == R2P2_EV_RESPONSE && ev.id == (uint64_t)id)
			break;
	}
	*out_len = ev.len;
	if (ev.status == -EREMOTEIO) {
		/* the server app's error: its message, cut to what fits, and its code */
		ctx->remote_code = ev.code;
		if (ev.len)
			memcpy(resp, ev.data, ev.len < resp_cap ? ev.len : resp_cap);
		return ev.status;
	}
	if (ev.status)
		return ev.status;
	if (ev.len > resp_cap)
		return -ENOBUFS;
	if (ev.len)
		memcpy(resp, ev.data, ev.len);
	return 0;
}

R2P2_API uint32_t r2p2_remote_code(const struct r2p2_ctx *ctx)
{
	return ctx ? ctx->remote_code : 0;
}

R2P2_API int r2p2_register(struct r2p2_ctx *ctx, const char *service)
{
	struct service *s;
	int err, id;

	if (!ctx || !service_ok(service))
		return -EINVAL;
	err = ctx_ensure_connected(ctx, true);
	if (err)
		return err;
	for (size_t i = 0; i < ctx->num_services; i++)
		if (strcmp(ctx->services[i].name, service) == 0 && ctx->services[i].id >= 0)
			return ctx->services[i].id;
	id = register_one(ctx, service);
	if (id < 0)
		return id;
	s = realloc(ctx->services, (ctx->num_services + 1) * sizeof(*s));
	if (!s)
		return -ENOMEM;
	ctx->services = s;
	s = &ctx->services[ctx->num_services++];
	memcpy(s->name, service, strlen(service) + 1);
	s->id = id;
	return id;
}

/* respond submits `sqe` (a RESPOND) for the request `req` with `len` bytes of `data`. */
static int respond(struct r2p2_ctx *ctx, const struct r2p2_event *req, struct r2p2_sqe *sqe,
		   const void *data, size_t len)
{
	if (!ctx || !req || (len && !data))
		return -EINVAL;
	/* A request belongs to the daemon that delivered it: never reconnect here. */
	if (!ctx->connected || ctx->dead || ctx->hup)
		return -ENOTCONN;
	if (req->lane >= ctx->num_lanes)
		return -EINVAL;
	if (len > ctx->hdr.max_msg_len)
		return -EMSGSIZE;
	sqe->user_data = req->id;
	return sq_submit(ctx, &ctx->lanes[req->lane], sqe, data, (uint32_t)len);
}

R2P2_API int r2p2_respond(struct r2p2_ctx *ctx, const struct r2p2_event *req, const void *resp,
			  size_t len)
{
	struct r2p2_sqe sqe = {.op = R2P2_SQ_RESPOND};

	return respond(ctx, req, &sqe, resp, len);
}

R2P2_API int r2p2_respond_error(struct r2p2_ctx *ctx, const struct r2p2_event *req, uint32_t code,
				const char *message)
{
	struct r2p2_sqe sqe = {.op = R2P2_SQ_RESPOND, .flags = R2P2_SQE_ERROR, .code = code};

	if (code == 0)
		return -EINVAL;
	return respond(ctx, req, &sqe, message, message ? strlen(message) : 0);
}

R2P2_API size_t r2p2_max_msg_len(const struct r2p2_ctx *ctx)
{
	return ctx ? ctx->hdr.max_msg_len : 0;
}

R2P2_API const char *r2p2_strerror(int err)
{
	const char *s;

	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case ETIMEDOUT:
		return "call timed out";
	case ECONNREFUSED:
		return "server dropped the request";
	case ENOENT:
		return "unknown service (from r2p2_attach: no r2p2d control socket at that path)";
	case ENOBUFS:
		return "too many calls waiting on r2p2d (or a reply too large for the buffer); "
		       "retry later";
	case ECANCELED:
		return "call cancelled";
	case ECONNRESET:
		return "r2p2d restarted; call lost";
	case EMSGSIZE:
		return "message too large";
	case EHOSTUNREACH:
		return "no route to the service";
	case ENOTCONN:
		return "no r2p2d reachable";
	case EAGAIN:
		return "ring full; poll and retry";
	case EPROTO:
		return "r2p2d speaks another ABI version";
	case EBUSY:
		return "calls in flight or services served";
	case EACCES:
		return "permission denied: r2p2d refused this app the control socket or the "
		       "service ([serve] owner), or (tls) the server's certificate is not trusted "
		       "for this service";
	case EBADMSG:
		return "malformed or unauthentic reply (tls)";
	case ESHUTDOWN:
		return "r2p2d is shutting down";
	case EALREADY:
		return "the server had already run this request (an earlier copy); not run again";
	case EREMOTEIO:
		return "the server's app answered with an error (its code and message are in the "
		       "event)";
	case ENOTRECOVERABLE:
		return "the request may have run once; it was not sent again (a server restart or "
		       "an "
		       "attempt too old to check leaves no way to tell)";
	}
	s = strerrordesc_np(err);
	return s ? s : "unknown error";
}
