// SPDX-License-Identifier: MIT
/*
 * test_lane: the shared-memory transport end to end in one process: the daemon
 * side (daemon/ipc/lane.c) driven by the test, libr2p2 talking to a fake daemon
 * thread on a real SEQPACKET socket in a temporary directory.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/r2p2.h>

#include "lane.h"

#define FAKE_MAX_LANES 4

/* ---- a fake r2p2d: answers ATTACH and REGISTER, optionally echoes calls ---- */

struct fake_opts {
	struct shm_params params;
	size_t ovf_max;
	bool echo;	      /* the fake's thread answers every CALL with its payload */
	uint32_t bad_version; /* nonzero: put this version in the shm header */
	int attach_errno;     /* nonzero: refuse ATTACH with this errno */
};

struct fake {
	struct fake_opts o;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, conn, stop_efd;
	pthread_t thread;
	uint8_t *buf;
	/* The attached app. The test thread uses the lanes only when !o.echo. */
	bool attached;
	void *map;
	size_t map_size;
	struct lane lanes[FAKE_MAX_LANES];
	int sq_efd[FAKE_MAX_LANES], cq_efd[FAKE_MAX_LANES];
	int num_attach, num_register; /* atomics */
	char last_service[R2P2_SERVICE_NAME_MAX];
};

static int send_ctl(int sock, uint16_t type, int32_t value, const int *fds, size_t nfds)
{
	struct r2p2_ctl_msg m = {
	    .magic = R2P2_CTL_MAGIC, .version = R2P2_CTL_VERSION, .type = type, .value = value};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * (1 + 2 * FAKE_MAX_LANES))];
	} u;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds) {
		struct cmsghdr *c;

		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void fake_release(struct fake *f)
{
	if (!f->attached)
		return;
	for (uint32_t i = 0; i < f->o.params.num_lanes; i++) {
		lane_cleanup(&f->lanes[i]);
		close(f->sq_efd[i]);
		close(f->cq_efd[i]);
	}
	munmap(f->map, f->map_size);
	f->attached = false;
}

static void fake_attach(struct fake *f)
{
	int fds[1 + 2 * FAKE_MAX_LANES];
	struct r2p2_shm_hdr hdr;
	uint32_t nl = f->o.params.num_lanes;
	int memfd;

	__atomic_add_fetch(&f->num_attach, 1, __ATOMIC_SEQ_CST);
	if (f->o.attach_errno) {
		send_ctl(f->conn, R2P2_CTL_ERROR, f->o.attach_errno, NULL, 0);
		return;
	}
	fake_release(f);
	cr_assert_eq(shm_create(&f->o.params, &memfd, &f->map, &f->map_size), 0);
	memcpy(&hdr, f->map, sizeof(hdr));
	if (f->o.bad_version)
		((struct r2p2_shm_hdr *)f->map)->version = f->o.bad_version;
	fds[0] = memfd;
	for (uint32_t i = 0; i < nl; i++) {
		f->sq_efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		f->cq_efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		cr_assert(f->sq_efd[i] >= 0 && f->cq_efd[i] >= 0);
		cr_assert_eq(lane_init(&f->lanes[i], f->map, &hdr, i, f->sq_efd[i], f->cq_efd[i],
				       f->o.ovf_max),
			     0);
		if (f->o.echo)
			lane_arm_wakeup(&f->lanes[i]);
		fds[1 + 2 * i] = f->sq_efd[i];
		fds[2 + 2 * i] = f->cq_efd[i];
	}
	f->attached = true;
	send_ctl(f->conn, R2P2_CTL_ATTACH_OK, 0, fds, 1 + 2 * nl);
	close(memfd);
}

/* fake_ctl serves one control message; -1 when the app hung up. */
static int fake_ctl(struct fake *f)
{
	struct r2p2_ctl_msg m;
	ssize_t n = recv(f->conn, &m, sizeof(m), 0);

	if (n <= 0)
		return -1;
	if (m.type == R2P2_CTL_ATTACH) {
		fake_attach(f);
	} else if (m.type == R2P2_CTL_REGISTER) {
		int k = __atomic_add_fetch(&f->num_register, 1, __ATOMIC_SEQ_CST);

		memcpy(f->last_service, m.name, sizeof(m.name));
		if (strcmp(m.name, "nosuch.svc") == 0)
			send_ctl(f->conn, R2P2_CTL_ERROR, ENOENT, NULL, 0);
		else
			send_ctl(f->conn, R2P2_CTL_REGISTER_OK, 6 + k, NULL, 0);
	}
	return 0;
}

/* fake_echo is a miniature worker: drain, answer, notify, re-arm. */
static void fake_echo(struct fake *f, unsigned i)
{
	struct lane *l = &f->lanes[i];
	const uint8_t *p;
	struct r2p2_sqe sqe;
	eventfd_t v;
	int r;

	eventfd_read(f->sq_efd[i], &v);
	do {
		lane_disarm_wakeup(l);
		lane_flush(l);
		while ((r = lane_next_sqe(l, &sqe, &p)) != 0) {
			if (r == -EPROTO)
				return;
			if (r == 1)
				memcpy(f->buf, p, sqe.len);
			lane_consume(l);
			if (r == 1 && sqe.op == R2P2_SQ_CALL)
				lane_post(l, R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, f->buf,
					  sqe.len);
		}
		lane_notify(l);
	} while (lane_arm_wakeup(l));
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		struct pollfd p[2 + FAKE_MAX_LANES];
		bool echoing = f->o.echo && f->attached;
		nfds_t n = 0;

		p[n++] = (struct pollfd){.fd = f->stop_efd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = f->conn >= 0 ? f->conn : f->lfd, .events = POLLIN};
		for (uint32_t i = 0; echoing && i < f->o.params.num_lanes; i++)
			p[n++] = (struct pollfd){.fd = f->sq_efd[i], .events = POLLIN};
		if (poll(p, n, -1) < 0)
			continue;
		if (p[0].revents)
			break;
		if (p[1].revents) {
			if (f->conn < 0) {
				f->conn = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
			} else if (fake_ctl(f) < 0) {
				fake_release(f);
				close(f->conn);
				f->conn = -1;
			}
		}
		for (uint32_t i = 0; echoing && f->attached && i < f->o.params.num_lanes; i++)
			if (p[2 + i].revents)
				fake_echo(f, i);
	}
	return NULL;
}

static struct fake *fake_start(const char *path, const struct fake_opts *o)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct fake *f = calloc(1, sizeof(*f));

	cr_assert_not_null(f);
	f->o = *o;
	f->conn = -1;
	f->buf = malloc(o->params.max_msg_len);
	strcpy(f->path, path);
	strcpy(sa.sun_path, path);
	f->stop_efd = eventfd(0, EFD_CLOEXEC);
	f->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert(f->lfd >= 0 && f->stop_efd >= 0);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s",
		     strerror(errno));
	cr_assert_eq(listen(f->lfd, 8), 0);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

/* fake_stop is the daemon going away: its sockets close, the app sees POLLHUP. */
static void fake_stop(struct fake *f)
{
	if (!f)
		return;
	eventfd_write(f->stop_efd, 1);
	pthread_join(f->thread, NULL);
	if (f->conn >= 0)
		close(f->conn);
	close(f->lfd);
	close(f->stop_efd);
	unlink(f->path);
	fake_release(f);
	free(f->buf);
	free(f);
}

/* ---- fixture -------------------------------------------------------------- */

static char tmpdir[64];
static char sock_path[128];
static struct fake *F;

static void setup(void)
{
	strcpy(tmpdir, "/tmp/r2p2-lane-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/r2p2d.sock", tmpdir);
	F = NULL;
}

static void teardown(void)
{
	fake_stop(F);
	F = NULL;
	rmdir(tmpdir);
}

static struct fake_opts opts(uint32_t lanes, uint32_t sq, uint32_t cq, uint32_t arena, uint32_t max,
			     size_t ovf_max)
{
	return (struct fake_opts){
	    .params = {.num_lanes = lanes,
		       .sq_entries = sq,
		       .cq_entries = cq,
		       .arena_size = arena,
		       .max_msg_len = max},
	    .ovf_max = ovf_max,
	};
}

static struct r2p2_ctx *start(struct fake_opts o)
{
	struct r2p2_ctx *ctx;

	F = fake_start(sock_path, &o);
	ctx = r2p2_attach(sock_path);
	cr_assert_not_null(ctx, "attach: %s", strerror(errno));
	return ctx;
}

/* take_sqe plays the daemon: takes the next SQE of any lane and copies its payload. */
static int take_sqe(struct r2p2_sqe *sqe, uint8_t *buf)
{
	const uint8_t *p;

	for (uint32_t i = 0; i < F->o.params.num_lanes; i++) {
		int r = lane_next_sqe(&F->lanes[i], sqe, &p);

		if (r == 0)
			continue;
		cr_assert_eq(r, 1, "lane_next_sqe: %d", r);
		memcpy(buf, p, sqe->len);
		lane_consume(&F->lanes[i]);
		return (int)i;
	}
	return -1;
}

static uint8_t req_byte(uint64_t id, size_t j)
{
	return (uint8_t)(id * 131 + j * 7 + 1);
}

static uint8_t resp_byte(uint64_t id, size_t j)
{
	return (uint8_t)(id * 17 + j * 3 + 5);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TestSuite(lane, .init = setup, .fini = teardown, .timeout = 60);

/* ---- tests ---------------------------------------------------------------- */

Test(lane, roundtrip_sizes)
{
	static uint8_t req[65536], resp[65536], got[65536];
	const size_t sizes[] = {0, 1, 65536};
	struct r2p2_ctx *ctx = start(opts(2, 8, 8, 1 << 18, 65536, 16));
	struct r2p2_event ev[4];
	struct r2p2_sqe sqe;

	cr_assert_eq(r2p2_max_msg_len(ctx), 65536);
	for (size_t s = 0; s < 3; s++) {
		size_t len = sizes[s];
		int64_t id;
		int li;

		for (size_t j = 0; j < len; j++)
			req[j] = req_byte(s, j);
		id = r2p2_call(ctx, "echo.svc", req, len, 250, R2P2_CALL_NOT_REPLAY_SAFE);
		cr_assert_gt(id, 0);
		li = take_sqe(&sqe, got);
		cr_assert_geq(li, 0);
		cr_assert_eq(sqe.op, R2P2_SQ_CALL);
		cr_assert_eq(sqe.flags, R2P2_SQE_NOT_REPLAY_SAFE);
		cr_assert_eq(sqe.timeout_ms, 250);
		cr_assert_eq(sqe.user_data, (uint64_t)id);
		cr_assert_str_eq(sqe.service, "echo.svc");
		cr_assert_eq(sqe.len, len);
		cr_assert_eq(memcmp(got, req, len), 0);

		for (size_t j = 0; j < len; j++)
			resp[j] = resp_byte(s, j);
		cr_assert_eq(
		    lane_post(&F->lanes[li], R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, resp, len), 0);
		cr_assert_eq(lane_notify(&F->lanes[li]), 0);
		cr_assert_eq(r2p2_poll(ctx, ev, 4, 1000), 1);
		cr_assert_eq(ev[0].type, R2P2_EV_RESPONSE);
		cr_assert_eq(ev[0].status, 0);
		cr_assert_eq(ev[0].id, (uint64_t)id);
		cr_assert_eq(ev[0].len, len);
		cr_assert_not_null(ev[0].data);
		cr_assert_eq(memcmp(ev[0].data, resp, len), 0);
	}
	cr_assert_eq(r2p2_poll(ctx, ev, 4, 0), 0);
	r2p2_detach(ctx);
}

Test(lane, call_argument_errors)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 4096, 16));
	static uint8_t big[4097];
	char longname[R2P2_SERVICE_NAME_MAX + 1];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_eq(r2p2_call(ctx, "echo.svc", big, sizeof(big), 0, 0), -EMSGSIZE);
	cr_assert_eq(r2p2_call(ctx, "", big, 1, 0, 0), -EINVAL);
	cr_assert_eq(r2p2_call(ctx, longname, big, 1, 0, 0), -EINVAL);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", big, 1, 0, 0x80), -EINVAL);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", NULL, 1, 0, 0), -EINVAL);
	cr_assert_str_eq(r2p2_strerror(-ECONNRESET), "r2p2d restarted; call lost");
	cr_assert_not_null(r2p2_strerror(-EIO));
	cr_assert_not_null(r2p2_strerror(-99999));
	r2p2_detach(ctx);
}

Test(lane, socket_from_environment)
{
	struct fake_opts o = opts(1, 8, 8, 8192, 4096, 16);
	struct r2p2_ctx *ctx;

	F = fake_start(sock_path, &o);
	setenv("R2P2_SOCKET", sock_path, 1);
	ctx = r2p2_attach(NULL);
	unsetenv("R2P2_SOCKET");
	cr_assert_not_null(ctx);
	cr_assert_eq(__atomic_load_n(&F->num_attach, __ATOMIC_SEQ_CST), 1);
	r2p2_detach(ctx);
}

Test(lane, ring_full_then_eagain_clears)
{
	struct r2p2_ctx *ctx = start(opts(1, 4, 8, 8192, 4096, 16));
	uint8_t buf[4096] = {0};
	struct r2p2_sqe sqe;

	for (int i = 0; i < 4; i++)
		cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 16, 0, 0), i + 1);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 16, 0, 0), -EAGAIN);
	cr_assert_eq(take_sqe(&sqe, buf), 0);
	cr_assert_eq(sqe.user_data, 1);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 16, 0, 0), 5);
	r2p2_detach(ctx);
}

Test(lane, arena_full_then_eagain_clears)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 4096, 16));
	static uint8_t buf[4096];
	struct r2p2_sqe sqe;

	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 4096, 0, 0), 1);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 4096, 0, 0), 2);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 1, 0, 0), -EAGAIN);
	cr_assert_eq(take_sqe(&sqe, buf), 0);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 4096, 0, 0), 3);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 0, 0, 0),
		     4); /* empty payloads need no space */
	r2p2_detach(ctx);
}

/* Many messages of varying sizes through small arenas whose size is prime, so
 * entries end at every offset and skip to the start in both directions. */
Test(lane, arena_wraparound_integrity)
{
	const uint32_t arena = 10007, max = 4000;
	const uint64_t total = 3000;
	struct r2p2_ctx *ctx = start(opts(1, 16, 16, arena, max, total));
	struct lane *l = &F->lanes[0];
	static uint8_t req[4000], resp[4000];
	struct r2p2_event ev[16];
	uint64_t sent = 0, done = 0, bytes = 0;
	uint32_t rnd = 12345;

#define RND() (rnd = rnd * 1103515245u + 12345u, (rnd >> 16) & 0x7fff)
#define REQ_LEN(id) ((uint32_t)(((id)*2654435761u) % (max + 1)))
#define RESP_LEN(id) ((uint32_t)(((id)*40503u + 7) % (max + 1)))
	while (done < total) {
		for (int k = RND() % 16 + 1; k > 0 && sent < total; k--) {
			uint64_t id = sent + 1;
			int64_t r;

			for (uint32_t j = 0; j < REQ_LEN(id); j++)
				req[j] = req_byte(id, j);
			r = r2p2_call(ctx, "echo.svc", req, REQ_LEN(id), 0, 0);
			if (r == -EAGAIN)
				break;
			cr_assert_eq(r, (int64_t)id);
			sent++;
		}
		for (int k = RND() % 16 + 1; k > 0; k--) {
			struct r2p2_sqe sqe;
			const uint8_t *p;
			int r = lane_next_sqe(l, &sqe, &p);

			if (r == 0)
				break;
			cr_assert_eq(r, 1);
			cr_assert_eq(sqe.len, REQ_LEN(sqe.user_data));
			for (uint32_t j = 0; j < sqe.len; j++)
				cr_assert_eq(p[j], req_byte(sqe.user_data, j), "req %lu byte %u",
					     (unsigned long)sqe.user_data, j);
			lane_consume(l);
			for (uint32_t j = 0; j < RESP_LEN(sqe.user_data); j++)
				resp[j] = resp_byte(sqe.user_data, j);
			cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, resp,
					       RESP_LEN(sqe.user_data)),
				     0);
			bytes += sqe.len + RESP_LEN(sqe.user_data);
		}
		lane_flush(l);
		int n = r2p2_poll(ctx, ev, (int)(RND() % 16 + 1), 0);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++) {
			uint64_t id = ++done;

			cr_assert_eq(ev[i].type, R2P2_EV_RESPONSE);
			cr_assert_eq(ev[i].id, id, "order: got %lu want %lu",
				     (unsigned long)ev[i].id, (unsigned long)id);
			cr_assert_eq(ev[i].len, RESP_LEN(id));
			for (size_t j = 0; j < ev[i].len; j++)
				cr_assert_eq(((const uint8_t *)ev[i].data)[j], resp_byte(id, j));
		}
	}
	cr_assert_gt(bytes, 100 * (uint64_t)arena);
	cr_assert_eq(l->stat_bad, 0);
	r2p2_detach(ctx);
}

/* drain_in_order polls `ctx` until ids first..last arrived in order, flushing
 * the daemon's overflow queue whenever the app rang the SQ doorbell. */
static void drain_in_order(struct r2p2_ctx *ctx, struct lane *l, uint64_t first, uint64_t last,
			   uint32_t len)
{
	struct r2p2_event ev[16];
	uint64_t want = first;

	for (int rounds = 0; want <= last; rounds++) {
		int n = r2p2_poll(ctx, ev, 16, 0);

		cr_assert_lt(rounds, 50);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++, want++) {
			cr_assert_eq(ev[i].id, want);
			cr_assert_eq(ev[i].len, len);
			cr_assert_eq(((const uint8_t *)ev[i].data)[0], (uint8_t)want);
		}
		if (n == 0) {
			eventfd_t v = 0;

			/* The app freed CQ space while cq_overflow was set: it must ring. */
			cr_assert_eq(eventfd_read(l->sq_efd, &v), 0);
			cr_assert_geq(v, 1);
			lane_flush(l);
		}
	}
}

Test(lane, cq_overflow_keeps_order)
{
	struct r2p2_ctx *ctx = start(opts(1, 16, 4, 1 << 16, 4096, 6));
	struct lane *l = &F->lanes[0];
	uint8_t buf[4096] = {0}, resp[100];
	struct r2p2_sqe sqe;

	for (int i = 1; i <= 10; i++)
		cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 1, 0, 0), i);
	for (int i = 1; i <= 10; i++) {
		cr_assert_eq(take_sqe(&sqe, buf), 0);
		memset(resp, (uint8_t)sqe.user_data, sizeof(resp));
		cr_assert_eq(
		    lane_post(l, R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, resp, sizeof(resp)), 0);
	}
	cr_assert_eq(l->ovf_count, 6);
	cr_assert_eq(r2p2_load_acquire(&l->ctrl->cq_overflow), 1);
	cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, 999, 0, resp, sizeof(resp)), -ENOBUFS);
	cr_assert_eq(l->stat_ovf_drops, 1);
	cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, 999, 0, resp, 4097), -EMSGSIZE);

	drain_in_order(ctx, l, 1, 10, sizeof(resp));
	cr_assert_eq(l->ovf_count, 0);
	cr_assert_eq(r2p2_load_acquire(&l->ctrl->cq_overflow), 0);
	r2p2_detach(ctx);
}

Test(lane, arena_overflow_keeps_order)
{
	struct r2p2_ctx *ctx = start(opts(1, 16, 8, 8192, 4096, 8));
	struct lane *l = &F->lanes[0];
	static uint8_t buf[4096], resp[4096];
	struct r2p2_sqe sqe;

	for (int i = 1; i <= 3; i++)
		cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 1, 0, 0), i);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(take_sqe(&sqe, buf), 0);
		memset(resp, (uint8_t)sqe.user_data, sizeof(resp));
		cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, resp, 4096), 0);
	}
	/* Two 4 KiB payloads fill the 8 KiB arena; the third waits though the CQ has room. */
	cr_assert_eq(l->ovf_count, 1);
	drain_in_order(ctx, l, 1, 3, 4096);
	cr_assert_eq(l->ovf_count, 0);
	r2p2_detach(ctx);
}

/* ---- a hostile app: lanes over an ASan-checked heap buffer ---------------- */

struct raw_lane {
	struct r2p2_shm_hdr hdr;
	uint8_t *mem;
	struct lane l;
	int sq_efd, cq_efd;
};

/* raw_lane_map lays out one lane over heap memory; lane_init is the caller's. */
static void raw_lane_map(struct raw_lane *r, uint32_t sq, uint32_t cq, uint32_t arena, uint32_t max)
{
	struct shm_params p = {.num_lanes = 1,
			       .sq_entries = sq,
			       .cq_entries = cq,
			       .arena_size = arena,
			       .max_msg_len = max};
	void *map;
	size_t size;
	int fd;

	/* shm_create gives the real layout; the lane then runs over heap memory of
	 * exactly that size, so any access outside it is an ASan report. */
	cr_assert_eq(shm_create(&p, &fd, &map, &size), 0);
	memcpy(&r->hdr, map, sizeof(r->hdr));
	cr_assert_eq(r->hdr.total_size, size);
	munmap(map, size);
	close(fd);
	r->mem = aligned_alloc(64, size);
	cr_assert_not_null(r->mem);
	memset(r->mem, 0, size);
	r->sq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->cq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static void raw_lane_init(struct raw_lane *r, uint32_t sq, uint32_t cq, uint32_t arena,
			  uint32_t max)
{
	raw_lane_map(r, sq, cq, arena, max);
	cr_assert_eq(lane_init(&r->l, r->mem, &r->hdr, 0, r->sq_efd, r->cq_efd, 4), 0);
}

static void raw_lane_cleanup(struct raw_lane *r)
{
	lane_cleanup(&r->l);
	free(r->mem);
	close(r->sq_efd);
	close(r->cq_efd);
}

/* raw_submit writes an SQE the way a hostile app might, then publishes it. */
static void raw_submit(struct raw_lane *r, const struct r2p2_sqe *sqe)
{
	uint32_t tail = r2p2_load_acquire(&r->l.ctrl->sq_tail);

	r->l.sq[tail & (r->hdr.sq_entries - 1)] = *sqe;
	r2p2_store_release(&r->l.ctrl->sq_tail, tail + 1);
}

static int raw_next(struct raw_lane *r, struct r2p2_sqe *out)
{
	const uint8_t *p = (const uint8_t *)1;
	int ret = lane_next_sqe(&r->l, out, &p);

	if (ret != 1)
		cr_assert_null(p);
	return ret;
}

Test(lane, hostile_sq_tail)
{
	struct raw_lane r;
	struct r2p2_sqe out;

	raw_lane_init(&r, 8, 8, 4096, 1024);
	cr_assert_eq(raw_next(&r, &out), 0);
	r2p2_store_release(&r.l.ctrl->sq_tail, 9); /* 9 entries in an 8-entry ring */
	cr_assert_eq(raw_next(&r, &out), -EPROTO);
	cr_assert(r.l.broken);
	r2p2_store_release(&r.l.ctrl->sq_tail, 1);
	cr_assert_eq(raw_next(&r, &out), -EPROTO, "a broken lane stays broken");
	raw_lane_cleanup(&r);
}

Test(lane, hostile_sqe_outside_arena)
{
	const uint32_t offs[] = {4096 - 10, UINT32_MAX, 4096};
	const uint32_t lens[] = {11, 2, 1};

	for (int i = 0; i < 3; i++) {
		struct r2p2_sqe sqe = {.op = R2P2_SQ_CALL, .service = "x.svc"}, out;
		struct raw_lane r;

		raw_lane_init(&r, 8, 8, 4096, 4096);
		sqe.off = offs[i];
		sqe.len = lens[i];
		raw_submit(&r, &sqe);
		cr_assert_eq(raw_next(&r, &out), -EPROTO, "off %u len %u", offs[i], lens[i]);
		cr_assert(r.l.broken);
		raw_lane_cleanup(&r);
	}
}

Test(lane, hostile_sqe_bad_fields)
{
	struct raw_lane r;
	struct r2p2_sqe sqe, out;
	const uint8_t *p;

	raw_lane_init(&r, 8, 8, 8192, 4096);

	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CALL, .len = 5000, .user_data = 1, .service = "x"};
	raw_submit(&r, &sqe); /* inside the arena, over max_msg_len */
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CALL, .len = 4, .user_data = 2};
	memset(sqe.service, 'a', sizeof(sqe.service)); /* no NUL */
	raw_submit(&r, &sqe);
	sqe = (struct r2p2_sqe){.op = 9, .len = 4, .user_data = 3};
	raw_submit(&r, &sqe);
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CALL, .len = 4, .user_data = 4};
	raw_submit(&r, &sqe); /* empty service name */
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CALL, .flags = 0x40, .user_data = 5, .service = "x"};
	raw_submit(&r, &sqe);

	for (uint64_t id = 1; id <= 5; id++) {
		cr_assert_eq(raw_next(&r, &out), -EINVAL, "sqe %lu", (unsigned long)id);
		cr_assert_eq(out.user_data, id, "the caller can fail the right call");
	}
	cr_assert_not(r.l.broken);
	lane_consume(&r.l);
	cr_assert_eq(r2p2_load_acquire(&r.l.ctrl->sq_head), 5);

	memcpy(r.l.sq_arena + 100, "ping", 4);
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_RESPOND, .off = 100, .len = 4, .user_data = 6};
	raw_submit(&r, &sqe);
	cr_assert_eq(lane_next_sqe(&r.l, &out, &p), 1);
	cr_assert_eq(memcmp(p, "ping", 4), 0);
	/* a cancel carries no payload and no flags */
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CANCEL, .len = 4, .user_data = 7};
	raw_submit(&r, &sqe);
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CANCEL, .flags = 1, .user_data = 8};
	raw_submit(&r, &sqe);
	cr_assert_eq(raw_next(&r, &out), -EINVAL);
	cr_assert_eq(out.user_data, 7);
	cr_assert_eq(raw_next(&r, &out), -EINVAL);
	cr_assert_eq(out.user_data, 8);
	lane_consume(&r.l);
	sqe = (struct r2p2_sqe){.op = R2P2_SQ_CANCEL, .user_data = 9};
	raw_submit(&r, &sqe);
	cr_assert_eq(lane_next_sqe(&r.l, &out, &p), 1);
	cr_assert_eq(out.op, R2P2_SQ_CANCEL);
	cr_assert_eq(out.user_data, 9);
	cr_assert_eq(r.l.stat_bad, 7);
	cr_assert_eq(r.l.stat_sqes, 2);
	raw_lane_cleanup(&r);
}

Test(lane, hostile_cq_head)
{
	struct raw_lane r;

	raw_lane_init(&r, 8, 8, 4096, 1024);
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 1, 0, "abc", 3), 0);
	r2p2_store_release(&r.l.ctrl->cq_head, 5); /* ahead of cq_tail 1 */
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 2, 0, "abc", 3), -EPROTO);
	cr_assert(r.l.broken);
	raw_lane_cleanup(&r);
}

Test(lane, hostile_cq_head_while_overflowing)
{
	struct raw_lane r;

	raw_lane_init(&r, 8, 2, 4096, 1024);
	for (uint64_t id = 1; id <= 3; id++)
		cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, id, 0, "abc", 3), 0);
	cr_assert_eq(r.l.ovf_count, 1);
	r2p2_store_release(&r.l.ctrl->cq_head, UINT32_MAX - 3);
	lane_flush(&r.l);
	cr_assert(r.l.broken);
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 4, 0, "abc", 3), -EPROTO);
	raw_lane_cleanup(&r); /* frees the queued completion (LeakSanitizer checks) */
}

/* ---- allocation failures -------------------------------------------------- */

/*
 * test_lane is linked with -Wl,--wrap=malloc,--wrap=calloc (tests/CMakeLists.txt):
 * every malloc and calloc of its own objects, daemon/ipc/lane.c included, comes here,
 * and while `alloc_countdown` is armed the call that brings it to zero fails.
 */
void *__real_malloc(size_t size);
void *__real_calloc(size_t num, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t num, size_t size);

static unsigned alloc_countdown; /* 0: off */

static bool alloc_fails(void)
{
	return alloc_countdown && --alloc_countdown == 0;
}

void *__wrap_malloc(size_t size)
{
	return alloc_fails() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t num, size_t size)
{
	return alloc_fails() ? NULL : __real_calloc(num, size);
}

/* Whichever allocation of lane_init fails, it returns -ENOMEM with nothing held. */
Test(lane, init_unwinds_failed_allocations)
{
	struct raw_lane r;
	unsigned n;
	int rc;

	raw_lane_map(&r, 8, 8, 4096, 1024);
	for (n = 1;; n++) {
		alloc_countdown = n;
		rc = lane_init(&r.l, r.mem, &r.hdr, 0, r.sq_efd, r.cq_efd, 4);
		alloc_countdown = 0;
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOMEM, "allocation %u failed: %d", n, rc);
		cr_assert_null(r.l.cq_end);
		cr_assert_null(r.l.ovf);
		lane_cleanup(&r.l); /* still safe after the failed init */
	}
	cr_assert_gt(n, 2, "both allocations were made to fail");
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 1, 0, "abc", 3), 0);
	raw_lane_cleanup(&r);
}

/* ---- doorbells ------------------------------------------------------------ */

static uint64_t efd_count(int efd)
{
	eventfd_t v = 0;

	return eventfd_read(efd, &v) == 0 ? v : 0;
}

Test(lane, cq_doorbell_only_when_asked)
{
	struct raw_lane r;

	raw_lane_init(&r, 8, 8, 4096, 1024);
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 1, 0, "a", 1), 0);
	cr_assert_eq(lane_notify(&r.l), 0);
	cr_assert_eq(efd_count(r.cq_efd), 0, "the app did not ask");

	r2p2_store_release(&r.l.ctrl->cq_need_wakeup, 1);
	cr_assert_eq(lane_notify(&r.l), 0);
	cr_assert_eq(efd_count(r.cq_efd), 0, "nothing new since the last notify");
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 2, 0, "a", 1), 0);
	cr_assert_eq(lane_post(&r.l, R2P2_CQ_RESPONSE, 0, 3, 0, "a", 1), 0);
	cr_assert_eq(lane_notify(&r.l), 0);
	cr_assert_eq(efd_count(r.cq_efd), 1, "one write per notify");
	raw_lane_cleanup(&r);
}

Test(lane, sq_arm_wakeup_rechecks)
{
	struct raw_lane r;
	struct r2p2_sqe sqe = {.op = R2P2_SQ_RESPOND, .user_data = 1};

	raw_lane_init(&r, 8, 8, 4096, 1024);
	cr_assert_not(lane_sq_pending(&r.l));
	cr_assert_not(lane_arm_wakeup(&r.l));
	cr_assert_eq(r2p2_load_acquire(&r.l.ctrl->sq_need_wakeup), 1);
	raw_submit(&r, &sqe);
	cr_assert(lane_sq_pending(&r.l));
	cr_assert(lane_arm_wakeup(&r.l), "a submission slipped in: do not sleep");
	lane_disarm_wakeup(&r.l);
	cr_assert_eq(r2p2_load_acquire(&r.l.ctrl->sq_need_wakeup), 0);
	raw_lane_cleanup(&r);
}

Test(lane, sq_doorbell_only_when_asked)
{
	struct r2p2_ctx *ctx = start(opts(2, 8, 8, 8192, 4096, 16));
	struct r2p2_event ev;
	uint64_t rung = 0;
	int64_t t0;

	cr_assert_gt(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	cr_assert_gt(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(efd_count(F->sq_efd[i]), 0, "the daemon is polling: no syscall");
	for (int i = 0; i < 2; i++)
		lane_arm_wakeup(&F->lanes[i]);
	cr_assert_gt(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	for (int i = 0; i < 2; i++)
		rung += efd_count(F->sq_efd[i]);
	cr_assert_eq(rung, 1);

	/* A blocking poll asks for the CQ doorbell and withdraws the request after. */
	t0 = now_ms();
	cr_assert_eq(r2p2_poll(ctx, &ev, 1, 50), 0);
	cr_assert_geq(now_ms() - t0, 45);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(r2p2_load_acquire(&F->lanes[i].ctrl->cq_need_wakeup), 0);
	r2p2_detach(ctx);
}

Test(lane, blocking_poll_wakes_on_doorbell)
{
	struct fake_opts o = opts(2, 8, 8, 8192, 4096, 16);
	struct r2p2_ctx *ctx;
	struct r2p2_event ev;
	int64_t id;

	o.echo = true;
	ctx = start(o);
	for (int round = 0; round < 100; round++) {
		id = r2p2_call(ctx, "echo.svc", "hello", 5, 0, 0);
		cr_assert_gt(id, 0);
		cr_assert_eq(r2p2_poll(ctx, &ev, 1, -1), 1);
		cr_assert_eq(ev.id, (uint64_t)id);
		cr_assert_eq(ev.len, 5);
		cr_assert_eq(memcmp(ev.data, "hello", 5), 0);
	}
	r2p2_detach(ctx);
}

Test(lane, call_sync)
{
	struct fake_opts o = opts(2, 8, 8, 8192, 4096, 16);
	struct r2p2_ctx *ctx;
	char resp[16];
	size_t len = 0;

	o.echo = true;
	ctx = start(o);
	cr_assert_eq(r2p2_call_sync(ctx, "echo.svc", "ping", 4, resp, sizeof(resp), &len, 0), 0);
	cr_assert_eq(len, 4);
	cr_assert_eq(memcmp(resp, "ping", 4), 0);
	cr_assert_eq(r2p2_call_sync(ctx, "echo.svc", "ping!", 5, resp, 2, &len, 1000), -ENOBUFS);
	cr_assert_eq(len, 5);
	cr_assert_gt(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	cr_assert_eq(r2p2_call_sync(ctx, "echo.svc", "ping", 4, resp, sizeof(resp), &len, 0),
		     -EBUSY);
	r2p2_detach(ctx);
}

/* ---- serving -------------------------------------------------------------- */

Test(lane, serve_request_and_respond)
{
	struct r2p2_ctx *ctx = start(opts(2, 8, 8, 8192, 4096, 16));
	struct r2p2_event ev[2], copy;
	struct r2p2_sqe sqe;
	uint8_t buf[4096];
	int sid;

	cr_assert_eq(r2p2_register(ctx, "nosuch.svc"), -ENOENT);
	sid = r2p2_register(ctx, "echo.svc");
	cr_assert_geq(sid, 0);
	cr_assert_eq(r2p2_register(ctx, "echo.svc"), sid, "registering twice is idempotent");
	cr_assert_str_eq(F->last_service, "echo.svc");

	cr_assert_eq(lane_post(&F->lanes[1], R2P2_CQ_REQUEST, 0, 0xabc, (uint32_t)sid, "ping", 4),
		     0);
	cr_assert_eq(r2p2_poll(ctx, ev, 2, 1000), 1);
	cr_assert_eq(ev[0].type, R2P2_EV_REQUEST);
	cr_assert_eq(ev[0].id, 0xabc);
	cr_assert_eq(ev[0].service_id, (uint32_t)sid);
	cr_assert_eq(ev[0].lane, 1);
	cr_assert_eq(memcmp(ev[0].data, "ping", 4), 0);
	copy = ev[0];
	cr_assert_eq(r2p2_poll(ctx, ev, 2, 0), 0);

	cr_assert_eq(r2p2_respond(ctx, &copy, "pong", 4), 0);
	cr_assert_eq(take_sqe(&sqe, buf), 1);
	cr_assert_eq(sqe.op, R2P2_SQ_RESPOND);
	cr_assert_eq(sqe.user_data, 0xabc);
	cr_assert_eq(sqe.len, 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);

	cr_assert_eq(lane_post(&F->lanes[1], R2P2_CQ_ERROR, -ETIMEDOUT, 0xabc, 0, NULL, 0), 0);
	cr_assert_eq(r2p2_poll(ctx, ev, 2, 1000), 1);
	cr_assert_eq(ev[0].type, R2P2_EV_ERROR);
	cr_assert_eq(ev[0].status, -ETIMEDOUT);
	cr_assert_eq(ev[0].id, 0xabc);

	copy.lane = 7;
	cr_assert_eq(r2p2_respond(ctx, &copy, "pong", 4), -EINVAL);
	r2p2_detach(ctx);
}

/* ---- attach failures ------------------------------------------------------ */

Test(lane, attach_no_daemon)
{
	cr_assert_null(r2p2_attach(sock_path));
	cr_assert_eq(errno, ENOENT);
}

Test(lane, attach_wrong_shm_version)
{
	struct fake_opts o = opts(1, 8, 8, 8192, 4096, 16);

	o.bad_version = R2P2_SHM_VERSION + 1;
	F = fake_start(sock_path, &o);
	cr_assert_null(r2p2_attach(sock_path));
	cr_assert_eq(errno, EPROTO);
}

Test(lane, attach_refused)
{
	struct fake_opts o = opts(1, 8, 8, 8192, 4096, 16);

	o.attach_errno = EACCES;
	F = fake_start(sock_path, &o);
	cr_assert_null(r2p2_attach(sock_path));
	cr_assert_eq(errno, EACCES);
}

/* ---- the daemon going away ------------------------------------------------ */

static void expect_resets(struct r2p2_ctx *ctx, const int64_t *ids, int n)
{
	struct r2p2_event ev[8];
	bool seen[8] = {0};
	int got = 0;

	while (got < n) {
		int k = r2p2_poll(ctx, ev, 8, 2000);

		cr_assert_gt(k, 0, "poll: %d", k);
		for (int i = 0; i < k; i++, got++) {
			int j;

			cr_assert_eq(ev[i].type, R2P2_EV_RESPONSE);
			cr_assert_eq(ev[i].status, -ECONNRESET);
			for (j = 0; j < n && (uint64_t)ids[j] != ev[i].id; j++)
				;
			cr_assert_lt(j, n, "unknown id %lu", (unsigned long)ev[i].id);
			cr_assert_not(seen[j], "id %lu twice", (unsigned long)ev[i].id);
			seen[j] = true;
		}
	}
}

Test(lane, daemon_restart_resets_and_reconnects)
{
	struct fake_opts o = opts(2, 8, 8, 8192, 4096, 16);
	struct r2p2_ctx *ctx = start(o);
	struct r2p2_event ev[8];
	struct r2p2_sqe sqe;
	uint8_t buf[4096];
	int64_t ids[3], id;
	int li;

	cr_assert_geq(r2p2_register(ctx, "echo.svc"), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_gt(ids[i] = r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);

	fake_stop(F);
	F = NULL;
	expect_resets(ctx, ids, 3);
	cr_assert_eq(r2p2_poll(ctx, ev, 8, 0), 0, "each call completes exactly once");
	cr_assert_eq(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), -ENOTCONN);

	F = fake_start(sock_path, &o);
	id = r2p2_call(ctx, "echo.svc", "y", 1, 0, 0);
	cr_assert_gt(id, ids[2], "ids stay unique across daemons");
	cr_assert_eq(__atomic_load_n(&F->num_attach, __ATOMIC_SEQ_CST), 1);
	cr_assert_eq(__atomic_load_n(&F->num_register, __ATOMIC_SEQ_CST), 1);
	cr_assert_str_eq(F->last_service, "echo.svc");

	li = take_sqe(&sqe, buf);
	cr_assert_geq(li, 0);
	cr_assert_eq(sqe.user_data, (uint64_t)id);
	cr_assert_eq(lane_post(&F->lanes[li], R2P2_CQ_RESPONSE, 0, sqe.user_data, 0, "z", 1), 0);
	cr_assert_eq(r2p2_poll(ctx, ev, 8, 1000), 1);
	cr_assert_eq(ev[0].id, (uint64_t)id);
	cr_assert_eq(ev[0].status, 0);
	r2p2_detach(ctx);
}

Test(lane, daemon_gone_client_only)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 4096, 16));
	struct r2p2_event ev[8];
	int64_t ids[2];

	for (int i = 0; i < 2; i++)
		cr_assert_gt(ids[i] = r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	fake_stop(F);
	F = NULL;
	expect_resets(ctx, ids, 2);
	cr_assert_eq(r2p2_poll(ctx, ev, 8, 0), -ENOTCONN);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), -ENOTCONN);
	r2p2_detach(ctx);
}

/* last_words plays a daemon that drains: once the app sleeps in r2p2_poll, it posts the
 * response to the call it took (the doorbell lost, so that only the hang-up wakes the app),
 * then exits. */
struct last_words {
	struct r2p2_sqe sqe;
};

static void *last_words_run(void *arg)
{
	struct last_words *lw = arg;
	struct lane *l = &F->lanes[0];
	int i;

	for (i = 0; i < 2000 && !r2p2_load_acquire(&l->ctrl->cq_need_wakeup); i++)
		usleep(1000);
	usleep(50 * 1000); /* the app is in poll(2) by now */
	r2p2_store_release(&l->ctrl->cq_need_wakeup, 0);
	if (lane_post(l, R2P2_CQ_RESPONSE, 0, lw->sqe.user_data, 0, "z", 1) != 0)
		return "lane_post failed";
	fake_stop(F);
	F = NULL;
	return NULL;
}

/* A daemon that drains answers its last calls, then exits: the app gets those answers,
 * and only the calls still waiting are reset. */
Test(lane, daemon_exits_after_last_responses)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 4096, 16));
	struct last_words lw;
	struct r2p2_event ev[8];
	uint8_t buf[4096];
	int64_t done, lost;
	pthread_t t;
	void *err;
	int k;

	cr_assert_gt(done = r2p2_call(ctx, "echo.svc", "x", 1, 0, 0), 0);
	cr_assert_gt(lost = r2p2_call(ctx, "echo.svc", "y", 1, 0, 0), 0);
	cr_assert_eq(take_sqe(&lw.sqe, buf), 0);
	cr_assert_eq(lw.sqe.user_data, (uint64_t)done);
	cr_assert_eq(pthread_create(&t, NULL, last_words_run, &lw), 0);
	k = r2p2_poll(ctx, ev, 8, 5000);
	cr_assert_eq(pthread_join(t, &err), 0);
	cr_assert_null(err, "%s", (const char *)err);
	cr_assert_eq(k, 1, "poll: %d", k);
	cr_assert_eq(ev[0].id, (uint64_t)done);
	cr_assert_eq(ev[0].status, 0, "the answered call: %d", ev[0].status);
	cr_assert_eq(ev[0].len, 1);
	expect_resets(ctx, &lost, 1);
	cr_assert_eq(r2p2_poll(ctx, ev, 8, 0), -ENOTCONN);
	r2p2_detach(ctx);
}

Test(lane, daemon_writes_bad_cqe)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 4096, 16));
	struct lane *l = &F->lanes[0];
	int64_t ids[1];

	ids[0] = r2p2_call(ctx, "echo.svc", "x", 1, 0, 0);
	cr_assert_gt(ids[0], 0);
	cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, (uint64_t)ids[0], 0, "abc", 3), 0);
	l->cq[0].off = 8190; /* 8190 + 3 is past the arena */
	expect_resets(ctx, ids, 1);
	r2p2_detach(ctx);
}

/* An emptied arena takes a message of max_msg_len wherever the last one ended. */
Test(lane, empty_arena_takes_max_message)
{
	struct r2p2_ctx *ctx = start(opts(1, 8, 8, 8192, 8192, 4));
	struct lane *l = &F->lanes[0];
	static uint8_t buf[8192];
	struct r2p2_event ev;
	struct r2p2_sqe sqe;

	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 100, 0, 0), 1);
	cr_assert_eq(take_sqe(&sqe, buf), 0);
	cr_assert_eq(r2p2_call(ctx, "echo.svc", buf, 8192, 0, 0), 2);
	cr_assert_eq(take_sqe(&sqe, buf), 0);

	cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, 1, 0, buf, 100), 0);
	cr_assert_eq(r2p2_poll(ctx, &ev, 1, 0), 1);
	cr_assert_eq(r2p2_poll(ctx, &ev, 1, 0), 0); /* hands the first one back */
	cr_assert_eq(lane_post(l, R2P2_CQ_RESPONSE, 0, 2, 0, buf, 8192), 0);
	cr_assert_eq(l->ovf_count, 0);
	cr_assert_eq(r2p2_poll(ctx, &ev, 1, 0), 1);
	cr_assert_eq(ev.id, 2);
	cr_assert_eq(ev.len, 8192);
	r2p2_detach(ctx);
}
