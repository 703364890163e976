// SPDX-License-Identifier: MIT
/*
 * A worker: one thread, one io_uring, one protocol engine. Everything the
 * worker does arrives as a completion on its ring:
 *   - UD_RECV:     multishot recvmsg on each UDP socket, into provided buffers
 *   - UD_SEND:     batched sendmsg, one SQE per datagram, submitted per loop
 *   - UD_DOORBELL: an app rang its submission doorbell (eventfd read)
 *   - UD_TIMER:    the engine's next deadline or housekeeping, absolute time
 *   - UD_INBOX:    the main thread posted commands (eventfd read)
 * The kind of each operation is encoded in user_data, and each kind has one
 * handle_* function.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/bpf_abi.h>
#include <r2p2/shm.h>
#include <r2p2/wire.h>

#include "addr.h"
#include "clock.h"
#include "lane.h"
#include "log.h"
#include "neigh.h"
#include "xsk.h"
#include "replay.h"
#include "sealed.h"
#include "stek.h"
#include "tls.h"

#define RING_ENTRIES 1024
#define RX_BUFS 4096 /* power of two */
#define SOCK_BUF_BYTES (8 << 20)
#define RX_BUF_SIZE 2048
#define RX_BGID 7
#define TX_SLOTS 1024
#define TX_BUF_SIZE (R2P2_HDR_LEN + R2P2_MAX_PAYLOAD + 64)
#define MAX_SOCKS (1 + 2 * CFG_MAX_SERVICES)
#define MAX_WAPPS 256
#define HOUSEKEEPING_NS 100000000ull /* 100 ms: stats snapshot, overflow flush */
#define CQ_OVF_MAX 4096
#define MAX_CALLS_PER_LANE 4096
#define TLS_PENDING_AGE_NS 10000000000ull /* 1-RTT handshakes waiting for CLIENT_SECOND */

enum ud_kind {
	UD_RECV = 1,
	UD_SEND,
	UD_DOORBELL,
	UD_TIMER,
	UD_TIMER_UPD,
	UD_INBOX,
	UD_CANCEL,
	UD_STEK, /* the STEK file's directory changed (inotify) */
	UD_XSK,  /* an AF_XDP socket has rx descriptors (multishot poll) */
	UD_NEIGH, /* the kernel's route or neighbour tables changed (multishot poll) */
};

static inline uint64_t ud_make(enum ud_kind k, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)k << 56) | ((uint64_t)(gen & 0xFFFFFF) << 32) | idx;
}
static inline enum ud_kind ud_kind(uint64_t ud)
{
	return (enum ud_kind)(ud >> 56);
}
static inline uint32_t ud_idx(uint64_t ud)
{
	return (uint32_t)ud;
}
static inline uint32_t ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xFFFFFF;
}

struct wsock {
	int fd;           /* -1: free slot */
	uint16_t port;    /* service port (host order); 0 for the client socket */
	bool recv_armed;
	bool closing;     /* cancel issued; free the slot on the final recv CQE */
	uint64_t requests, dropped_no_app, dropped_wrong_mode;
	enum cfg_security security;
	char name[CFG_NAME_MAX];
	struct tls_server *tls; /* tls and sealed services: certificate and keys */
	struct sealed_server *sealed; /* sealed services: token contexts and counters */
};

/* A tls client per called service (its CA), made on first use. */
struct wtls_client {
	char name[CFG_NAME_MAX];
	char ca[CFG_PATH_MAX];
	struct tls_client *c;
	/* sealed services: this worker's association (never shared across threads, so
	 * its nonce counter never repeats) */
	struct sealed_assoc assoc;
	bool assoc_ready;
	bool bootstrapping; /* a call that asked for an association is in flight */
	uint64_t rebootstraps;
};

/* How a call or request travels. */
enum rpc_mode {
	MODE_PLAIN = 0,
	MODE_TLS,        /* one tls exchange */
	MODE_TLS_SEALED_SVC, /* sealed service: a tls exchange that does not ask for an association */
	MODE_TLS_BOOT,   /* sealed service: a tls exchange that also carries an association */
	MODE_SEALED,     /* sealed service: AEAD under the association */
	MODE_RENEW,      /* sealed service: background renewal, no app involved */
};

/* An app's lane on this worker. */
struct wapp {
	struct app *app; /* NULL: free slot */
	uint32_t gen;
	struct lane lane;
	uint64_t efd_val;    /* doorbell read target */
	bool read_armed;
	bool removing;       /* waiting for the doorbell read to end before freeing */
	uint32_t calls_inflight;
};

/* A call in flight: engine cookie -> app and the app's call id. */
struct call {
	uint32_t wapp;     /* slot; UINT32_MAX: free */
	uint32_t wapp_gen;
	uint32_t gen;
	uint64_t user_data;
	uint32_t next_free;
	struct tls_call *tls; /* tls mode: the exchange in progress */
	struct eng_call_args args; /* kept to send a tls continuation to the same server */
	enum rpc_mode mode;
	struct wtls_client *svc;   /* tls/sealed: the called service's state */
	struct sealed_ctx sctx;    /* sealed: response key of this request */
	uint8_t *req_copy;         /* sealed: the request, to resend through a re-bootstrap */
	uint8_t req_inline[64];    /* req_copy's storage for small requests (no malloc per RPC) */
	size_t req_len;
	bool internal;             /* a renewal: no app waits for it */
	bool replay_safe;
};

/* A request handed to an app and not answered yet (engine handle -> app). */
struct exec_req {
	uint64_t handle; /* 0: empty */
	uint32_t wapp;
	uint32_t wapp_gen;
	uint32_t sock;
	struct tls_conn *conn; /* tls mode: the exchange the response completes */
	enum rpc_mode mode;
	struct sealed_ctx sctx; /* sealed: response key */
	uint64_t since;         /* when it was handed to the app */
};

struct tx_slot {
	struct msghdr msg;
	struct iovec iov;
	struct sockaddr_in6 sa;
	uint8_t buf[TX_BUF_SIZE];
};

struct worker {
	unsigned id;
	pthread_t thread;
	struct io_uring ring;
	struct eng *eng;
	struct cfg_ref *cfg;
	int family; /* AF_INET or AF_INET6 of every socket */

	pthread_mutex_t inbox_lock;
	struct cmd *inbox_head, *inbox_tail;
	int inbox_efd;
	uint64_t inbox_val;

	struct wsock socks[MAX_SOCKS];

	struct io_uring_buf_ring *br;
	uint8_t *rx_bufs;
	size_t br_len;

	struct tx_slot *tx;
	uint32_t tx_free[TX_SLOTS];
	uint32_t num_tx_free;

	struct wapp wapps[MAX_WAPPS];
	uint32_t rr_app; /* round-robin cursor for request delivery */

	struct call *calls;
	uint32_t num_calls_cap, call_free, calls_inflight;

	struct exec_req *exec; /* open addressing, power of two */
	uint32_t exec_cap, exec_count, exec_tombs;

	uint32_t call_rr[CFG_MAX_SERVICES]; /* round-robin over a call's servers */

	uint64_t timer_deadline; /* armed absolute deadline, 0 = none */
	struct __kernel_timespec timer_ts;
	uint64_t next_housekeeping;

	/* tls mode */
	struct stek_set *stek;
	struct replay *replay; /* shared by every worker of this server */
	struct replay *sealed_replay; /* sealed requests (unix-time clock), shared likewise */
	struct tls_buf sealed_buf;
	struct wtls_client tls_clients[CFG_MAX_SERVICES];
	struct tls_buf tls_flight, tls_plain;
	int stek_ifd; /* inotify on the STEK file's directory */
	int drained_efd; /* the main thread's: written once when this worker has drained */
	uint8_t stek_ev[4096] __attribute__((aligned(8)));
	struct tls_stats tls_retired; /* counters of tls servers already freed */
	uint64_t last_tls_log;

	/* xdp backend: one AF_XDP socket per rx queue, steered to us by the XDP program */
	struct xsk_port *xports[64];
	unsigned num_xports;
	struct neigh *neigh;
	bool xsk_dirty;       /* frames queued since the last flush */
	uint64_t rx_now;      /* `now` for the AF_XDP rx callback */
	uint64_t xsk_tx, xsk_tx_fallback, xsk_forwarded;
	struct worker **peers; /* every worker, to hand over datagrams steered to another */
	unsigned num_peers;

	bool draining, stop;
	bool drained_reported;
	uint64_t drain_deadline;
	uint64_t tx_fallback, app_errors, cq_overflow_drops;

	pthread_mutex_t snap_lock;
	struct worker_snap snap;
	char name[16];
};

static void reload_stek(struct worker *w);

static void arm_stek_watch(struct worker *w);

int port_probe(const struct cfg *c, uint16_t port, char *err, size_t err_len)
{
	int family = c->listen_addr.family == AF_INET6 ? AF_INET6 : AF_INET;
	struct r2p2_addr a = c->listen_addr;
	struct sockaddr_in6 sa;
	int zero = 0, fd, ret = 0;

	fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ret = -errno;
	if (fd >= 0 && family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	a.port = htons(port);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, addr_to_sockaddr(&a, family, &sa)) < 0)
		ret = -errno;
	if (ret)
		snprintf(err, err_len, "UDP port %u on %s: %s%s", port, c->listen, strerror(-ret),
			 ret == -EADDRINUSE ? " (another process, or another r2p2d, has it)" : "");
	if (fd >= 0)
		close(fd);
	return ret;
}

/* ---- io_uring helpers ---------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		/* The SQ is full: hand what we have to the kernel and try again. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static void arm_recv(struct worker *w, uint32_t slot)
{
	static struct msghdr recv_msg = {.msg_namelen = sizeof(struct sockaddr_in6)};
	struct wsock *s = &w->socks[slot];
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return; /* retried on the next loop iteration (recv_armed stays false) */
	io_uring_prep_recvmsg_multishot(sqe, s->fd, &recv_msg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RX_BGID;
	io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, slot, 0));
	s->recv_armed = true;
}

static void arm_inbox(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, w->inbox_efd, &w->inbox_val, sizeof(w->inbox_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_INBOX, 0, 0));
}

static void arm_doorbell(struct worker *w, uint32_t slot)
{
	struct wapp *wa = &w->wapps[slot];
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, wa->lane.sq_efd, &wa->efd_val, sizeof(wa->efd_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_DOORBELL, slot, wa->gen));
	wa->read_armed = true;
}

static void cancel_op(struct worker *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_CANCEL, 0, 0));
}

static void arm_timer(struct worker *w, uint64_t deadline)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	w->timer_ts.tv_sec = (long long)(deadline / 1000000000ull);
	w->timer_ts.tv_nsec = (long long)(deadline % 1000000000ull);
	if (w->timer_deadline) {
		io_uring_prep_timeout_update(sqe, &w->timer_ts, ud_make(UD_TIMER, 0, 0),
					     IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, ud_make(UD_TIMER_UPD, 0, 0));
	} else {
		io_uring_prep_timeout(sqe, &w->timer_ts, 0, IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, ud_make(UD_TIMER, 0, 0));
	}
	w->timer_deadline = deadline;
}

/* ---- sockets --------------------------------------------------------------- */

static int open_udp(struct worker *w, uint16_t port, char *err, size_t err_len)
{
	const struct cfg *c = &w->cfg->cfg;
	struct sockaddr_in6 sa;
	int one = 1, zero = 0;
	struct r2p2_addr a = c->listen_addr;
	socklen_t len;
	int fd;

	fd = socket(w->family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	/* Every worker binds the same service port; the kernel spreads clients by 4-tuple,
	 * so all packets of one client flow reach the same worker. (port_probe, run by the
	 * main thread first, makes a port taken by another process an error.) */
	if (port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* Bursts (a thousand calls answered at once) must queue, not drop: ask for large
	 * buffers, beyond rmem_max when we have CAP_NET_ADMIN. */
	int bufsz = SOCK_BUF_BYTES;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
	if (w->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	a.port = htons(port);
	len = addr_to_sockaddr(&a, w->family, &sa);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, err_len, "worker %u: UDP socket on %s port %u: %s", w->id, c->listen, port,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static int sock_slot_by_port(const struct worker *w, uint16_t port)
{
	for (int i = 1; i < MAX_SOCKS; i++)
		if (w->socks[i].fd >= 0 && !w->socks[i].closing && w->socks[i].port == port)
			return i;
	return -1;
}

static void exec_remove(struct worker *w, struct exec_req *e);

/* Retire a service socket's tls server; the exchanges still waiting on it end with DROP. */
static void free_sock_tls(struct worker *w, uint32_t slot)
{
	struct wsock *s = &w->socks[slot];
	struct tls_stats st;

	if (!s->tls)
		return;
	for (uint32_t i = 0; i < w->exec_cap; i++) {
		struct exec_req *e = &w->exec[i];
		if (e->handle && e->handle != UINT64_MAX && e->sock == slot && e->conn) {
			tls_conn_free(e->conn);
			eng_reject(w->eng, e->handle, now_ns());
			exec_remove(w, e);
		}
	}
	tls_server_stats(s->tls, &st);
	st.pending_handshakes = 0; /* freed with it */
	tls_stats_add(&w->tls_retired, &st);
	tls_server_free(s->tls);
	s->tls = NULL;
	sealed_server_free(s->sealed);
	s->sealed = NULL;
}

/* Give a served service's socket its mode, and for tls its certificate and keys. */
static int sock_set_service(struct worker *w, struct wsock *s, const struct cfg_serve *sv, char *err,
			    size_t err_len)
{
	snprintf(s->name, sizeof(s->name), "%s", sv->name);
	s->security = sv->security;
	if (sv->security == CFG_SEC_SEALED && !s->sealed) {
		s->sealed = sealed_server_new();
		if (!s->sealed) {
			snprintf(err, err_len, "[serve %s]: out of memory", sv->name);
			return -1;
		}
	}
	if (sv->security == CFG_SEC_PLAIN || s->tls)
		return 0;
	struct tls_service_keys keys = {.name = sv->name, .cert_path = sv->cert,
					.key_path = sv->key};
	s->tls = tls_server_new(&keys, 1, sv->early_data, err, err_len);
	if (!s->tls)
		return -1;
	tls_server_set_stek(s->tls, w->stek);
	tls_server_set_replay(s->tls, w->replay);
	return 0;
}

static void close_sock(struct worker *w, uint32_t slot)
{
	struct wsock *s = &w->socks[slot];
	if (s->recv_armed) {
		cancel_op(w, ud_make(UD_RECV, slot, 0));
		s->closing = true;
	} else {
		free_sock_tls(w, slot);
		close(s->fd);
		s->fd = -1;
	}
}

/* Open the sockets of every served service the worker does not have yet and close the others. */
static int sync_service_socks(struct worker *w, char *err, size_t err_len)
{
	const struct cfg *c = &w->cfg->cfg;

	for (int i = 1; i < MAX_SOCKS; i++) {
		struct wsock *s = &w->socks[i];
		const struct cfg_serve *sv;
		if (s->fd < 0 || s->closing)
			continue;
		sv = cfg_find_serve_port(c, s->port);
		if (!sv)
			close_sock(w, (uint32_t)i);
		else if (sock_set_service(w, s, sv, err, err_len) < 0)
			return -1;
	}
	for (size_t i = 0; i < c->num_serves; i++) {
		uint16_t port = c->serves[i].port;
		int slot = -1;
		if (sock_slot_by_port(w, port) >= 0)
			continue;
		for (int j = 1; j < MAX_SOCKS; j++) {
			if (w->socks[j].fd < 0) {
				slot = j;
				break;
			}
		}
		if (slot < 0) {
			snprintf(err, err_len, "worker %u: too many service sockets", w->id);
			return -1;
		}
		int fd = open_udp(w, port, err, err_len);
		if (fd < 0)
			return -1;
		w->socks[slot] = (struct wsock){.fd = fd, .port = port};
		if (sock_set_service(w, &w->socks[slot], &c->serves[i], err, err_len) < 0)
			return -1;
		if (w->ring.ring_fd > 0 && w->thread)
			arm_recv(w, (uint32_t)slot);
	}
	return 0;
}

/* ---- engine callbacks -------------------------------------------------------- */

/*
 * xsk_try_send sends a service socket's datagram over AF_XDP, with the next hop's
 * MAC from the kernel's tables. Returns false when it cannot (next hop not resolved
 * yet, tx ring full): the caller sends through the kernel instead, so nothing is lost.
 */
static bool xsk_try_send(struct worker *w, const struct wsock *s, const struct r2p2_addr *dst,
			 const struct iovec *iov, int iovcnt)
{
	struct r2p2_addr src = w->cfg->cfg.listen_addr, via;
	uint8_t mac[6];
	static const uint8_t any[16];

	if (neigh_lookup(w->neigh, dst, mac, &via) < 0)
		goto fallback;
	if (memcmp(src.addr, any, 16) == 0 || src.family != dst->family)
		src = via;
	src.port = htons(s->port);
	if (xsk_port_send(w->xports[0], &src, dst, mac, iov, iovcnt) < 0)
		goto fallback;
	w->xsk_dirty = true;
	w->xsk_tx++;
	return true;
fallback:
	w->xsk_tx_fallback++;
	return false;
}

static void tx_direct(struct worker *w, int fd, struct msghdr *m)
{
	w->tx_fallback++;
	if (sendmsg(fd, m, MSG_DONTWAIT) < 0)
		log_debug("worker %u: sendmsg: %s", w->id, strerror(errno));
}

static void on_send(void *ctx, unsigned sock, const struct r2p2_addr *dst,
		    const struct iovec *iov, int iovcnt)
{
	struct worker *w = ctx;
	struct wsock *s;
	struct tx_slot *t;
	size_t len = 0;
	uint32_t slot;

	if (sock >= MAX_SOCKS || w->socks[sock].fd < 0)
		return;
	s = &w->socks[sock];
	if (sock != 0 && w->num_xports && xsk_try_send(w, s, dst, iov, iovcnt))
		return;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > TX_BUF_SIZE)
		return;

	if (w->num_tx_free == 0) {
		/* Pool exhausted (a burst larger than TX_SLOTS): send synchronously. */
		struct sockaddr_in6 sa;
		struct msghdr m = {.msg_name = &sa,
				   .msg_namelen = addr_to_sockaddr(dst, w->family, &sa),
				   .msg_iov = (struct iovec *)iov,
				   .msg_iovlen = (size_t)iovcnt};
		tx_direct(w, s->fd, &m);
		return;
	}
	slot = w->tx_free[--w->num_tx_free];
	t = &w->tx[slot];
	len = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(t->buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	t->iov = (struct iovec){.iov_base = t->buf, .iov_len = len};
	t->msg = (struct msghdr){.msg_name = &t->sa,
				 .msg_namelen = addr_to_sockaddr(dst, w->family, &t->sa),
				 .msg_iov = &t->iov,
				 .msg_iovlen = 1};
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe) {
		tx_direct(w, s->fd, &t->msg);
		w->tx_free[w->num_tx_free++] = slot;
		return;
	}
	io_uring_prep_sendmsg(sqe, s->fd, &t->msg, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, slot, 0));
}

static struct exec_req *exec_find(struct worker *w, uint64_t handle, bool insert)
{
	uint32_t mask = w->exec_cap - 1;
	uint64_t h = handle * 0x9E3779B97F4A7C15ull;
	uint32_t i = (uint32_t)(h >> 32) & mask;
	struct exec_req *tomb = NULL;

	for (uint32_t n = 0; n < w->exec_cap; n++, i = (i + 1) & mask) {
		struct exec_req *e = &w->exec[i];
		if (e->handle == handle)
			return e;
		if (e->handle == UINT64_MAX) { /* tombstone */
			if (!tomb)
				tomb = e;
			continue;
		}
		if (e->handle == 0)
			return insert ? (tomb ? tomb : e) : NULL;
	}
	return insert ? tomb : NULL;
}

static void exec_remove(struct worker *w, struct exec_req *e)
{
	e->handle = UINT64_MAX;
	w->exec_count--;
	w->exec_tombs++;
}

/* Rehash into a table twice as big when live entries fill half, or in place when
 * tombstones do, so lookups of absent handles always meet an empty slot soon. */
static bool exec_rehash(struct worker *w)
{
	uint32_t old_cap = w->exec_cap;
	uint32_t new_cap = (w->exec_count + 1) * 2 > old_cap ? old_cap * 2 : old_cap;
	struct exec_req *old = w->exec;
	struct exec_req *n = calloc(new_cap, sizeof(*n));
	if (!n)
		return false;
	w->exec = n;
	w->exec_cap = new_cap;
	w->exec_count = 0;
	w->exec_tombs = 0;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (old[i].handle && old[i].handle != UINT64_MAX) {
			*exec_find(w, old[i].handle, true) = old[i];
			w->exec_count++;
		}
	}
	free(old);
	return true;
}

/* deliver hands a request to the next app serving the socket's port, round-robin. */
static bool deliver(struct worker *w, unsigned sock, uint64_t handle, const uint8_t *payload,
		    size_t len, const struct exec_req *tmpl)
{
	struct wsock *s = &w->socks[sock];

	for (uint32_t n = 0; n < MAX_WAPPS; n++) {
		uint32_t i = (w->rr_app + n) % MAX_WAPPS;
		struct wapp *wa = &w->wapps[i];
		if (!wa->app || wa->removing || wa->lane.broken || !app_serves_port(wa->app, s->port))
			continue;
		if ((w->exec_count + w->exec_tombs + 1) * 2 > w->exec_cap && !exec_rehash(w))
			break;
		if (lane_post(&wa->lane, R2P2_CQ_REQUEST, 0, handle, s->port, payload, len) < 0) {
			w->cq_overflow_drops++;
			continue; /* this app is saturated; another may take it */
		}
		struct exec_req *e = exec_find(w, handle, true);
		if (e->handle == UINT64_MAX)
			w->exec_tombs--;
		*e = *tmpl;
		e->since = now_ns();
		e->handle = handle;
		e->wapp = i;
		e->wapp_gen = wa->gen;
		e->sock = sock;
		w->exec_count++;
		w->rr_app = i + 1;
		return true;
	}
	s->dropped_no_app++;
	return false;
}

/*
 * answer_tls seals the app's response (or none, for a renewal) into the tls
 * exchange `conn` and sends it; `boot` prefixes it for a sealed service, with a
 * fresh association when `want`.
 */
static int answer_tls(struct worker *w, struct wsock *s, uint64_t handle, struct tls_conn *conn,
		      bool want, const uint8_t *resp, size_t len, uint64_t now)
{
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];
	int ret = 0;

	if (s->security == CFG_SEC_SEALED) {
		if (want && sealed_assoc_mint(s->sealed, w->stek, s->name, unix_ms(),
					      SEALED_LIFETIME_DEFAULT_MS, blob) < 0)
			want = false; /* no STEK: answer without an association */
		ret = sealed_boot_resp_encode(want ? blob : NULL, resp, len, &w->sealed_buf);
		OPENSSL_cleanse(blob, sizeof(blob));
		resp = w->sealed_buf.data;
		len = w->sealed_buf.len;
	}
	if (ret == 0)
		ret = tls_server_respond(s->tls, conn, resp, len, &w->tls_flight);
	else
		tls_conn_free(conn);
	if (ret < 0) {
		eng_reject(w->eng, handle, now);
		return ret;
	}
	return eng_respond(w->eng, handle, w->tls_flight.data, w->tls_flight.len, now);
}

/* A sealed request: opened (token, window, strike register, AEAD) before any app sees it. */
static void sealed_request(struct worker *w, unsigned sock, uint64_t handle, unsigned policy,
			   const uint8_t *payload, size_t len, uint64_t now)
{
	struct wsock *s = &w->socks[sock];
	const uint8_t hdr[SEALED_HDR_AD_LEN] = {R2P2_MAGIC, R2P2_HDR_LEN,
						(uint8_t)((R2P2_REQUEST << 4) | (policy & 0x0F)),
						R2P2_F_SEALED};
	struct exec_req t = {.mode = MODE_SEALED};
	enum sealed_reason why;

	if (sealed_open_request(s->sealed, w->stek, s->name, w->sealed_replay, unix_ms(),
				w->cfg->cfg.sealed_window_ms, hdr, payload, len, &w->sealed_buf, &t.sctx,
				&why) < 0) {
		/* An unauthenticated hint: the client re-bootstraps on the reasons that call for it. */
		uint8_t rej[SEALED_REJECT_LEN];
		sealed_reject_encode(why, rej);
		eng_respond(w->eng, handle, rej, sizeof(rej), now);
		return;
	}
	if (!deliver(w, sock, handle, w->sealed_buf.data, w->sealed_buf.len, &t)) {
		sealed_ctx_cleanup(&t.sctx);
		eng_reject(w->eng, handle, now);
	}
}

/* A tls-mode request: one TLS exchange decides whether the app sees a request yet. */
static void tls_request(struct worker *w, unsigned sock, uint64_t handle,
			const struct r2p2_addr *src, const uint8_t *payload, size_t len, uint64_t now)
{
	struct wsock *s = &w->socks[sock];
	struct tls_conn *conn = NULL;
	int r;

	r = tls_server_input(s->tls, s->name, src, payload, len, now, &conn, &w->tls_plain,
			     &w->tls_flight);
	if (r == TLS_SRV_REQUEST) {
		struct exec_req t = {.conn = conn, .mode = MODE_TLS};
		const uint8_t *req = w->tls_plain.data;
		size_t req_len = w->tls_plain.len;
		bool want = false;

		if (s->security == CFG_SEC_SEALED) {
			/* A sealed service's tls exchange: the bootstrap prefix says whether the
			 * client wants an association; a renewal involves no app. */
			if (sealed_boot_req_decode(req, req_len, &want, &req, &req_len) < 0) {
				tls_conn_free(conn);
				eng_reject(w->eng, handle, now);
				return;
			}
			t.mode = want ? MODE_TLS_BOOT : MODE_TLS;
			if (!req) {
				answer_tls(w, s, handle, conn, true, NULL, 0, now);
				return;
			}
		}
		if (!deliver(w, sock, handle, req, req_len, &t)) {
			tls_conn_free(conn);
			eng_reject(w->eng, handle, now);
		}
	} else if (r == TLS_SRV_REPLY || w->tls_flight.len) {
		/* handshake-only flight, or an ERROR frame for the client */
		eng_respond(w->eng, handle, w->tls_flight.data, w->tls_flight.len, now);
	} else {
		eng_reject(w->eng, handle, now);
	}
}

static void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		       unsigned policy, uint8_t flags, const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	struct wsock *s = sock < MAX_SOCKS ? &w->socks[sock] : NULL;
	uint64_t now = now_ns();

	if (!s || s->fd < 0 || sock == 0 || w->draining) {
		eng_reject(w->eng, handle, now);
		return;
	}
	s->requests++;
	/* A tls or sealed service never takes plaintext, and a plain one never takes
	 * encrypted frames. A sealed service takes tls exchanges (the bootstrap). */
	bool ok = s->security == CFG_SEC_PLAIN ? flags == 0
		  : s->security == CFG_SEC_TLS ? flags == R2P2_F_TLS && s->tls
		  : (flags == R2P2_F_TLS || flags == R2P2_F_SEALED) && s->tls && s->sealed;
	if (!ok) {
		s->dropped_wrong_mode++;
		eng_reject(w->eng, handle, now);
		return;
	}
	if (flags == R2P2_F_TLS) {
		tls_request(w, sock, handle, src, payload, len, now);
		return;
	}
	if (flags == R2P2_F_SEALED) {
		sealed_request(w, sock, handle, policy, payload, len, now);
		return;
	}
	struct exec_req t = {.mode = MODE_PLAIN};
	if (!deliver(w, sock, handle, payload, len, &t))
		eng_reject(w->eng, handle, now);
}

static struct wtls_client *tls_client_for(struct worker *w, const struct cfg_call *cc);

#define SEALED_RENEW_FRACTION 5 /* renew when a fifth of the association's life is left */

/* call_drop_copy wipes and forgets a sealed call's copy of its request. */
static void call_drop_copy(struct call *c)
{
	if (!c->req_copy)
		return;
	OPENSSL_cleanse(c->req_copy, c->req_len);
	if (c->req_copy != c->req_inline)
		free(c->req_copy);
	c->req_copy = NULL;
}

static void call_release_crypto(struct call *c)
{
	tls_call_free(c->tls);
	c->tls = NULL;
	sealed_ctx_cleanup(&c->sctx);
	call_drop_copy(c);
}

/*
 * begin_tls starts the tls exchange of a call: the request as is (tls service) or
 * with the bootstrap prefix (sealed service: an association is wanted unless
 * another call is already fetching one; `renew` fetches only an association).
 */
static int begin_tls(struct worker *w, struct call *call, const struct cfg_call *cc,
		     const uint8_t *req, size_t len, bool renew, struct eng_call_args *args)
{
	struct wtls_client *svc = call->svc;
	int ret;

	call->mode = MODE_TLS;
	if (cc->security == CFG_SEC_SEALED) {
		/* Ask for an association unless one is held or being fetched. */
		bool want = renew || (!svc->bootstrapping && !svc->assoc_ready);
		ret = renew ? sealed_boot_renew_encode(&w->sealed_buf)
			    : sealed_boot_req_encode(want, req, len, &w->sealed_buf);
		if (ret < 0)
			return ret;
		req = w->sealed_buf.data;
		len = w->sealed_buf.len;
		call->mode = renew ? MODE_RENEW : want ? MODE_TLS_BOOT : MODE_TLS_SEALED_SVC;
		if (want)
			svc->bootstrapping = true;
	}
	ret = tls_call_begin(svc->c, cc->name, req, len, call->replay_safe, &call->tls,
			     &w->tls_flight);
	if (ret < 0) {
		if (call->mode == MODE_TLS_BOOT || call->mode == MODE_RENEW)
			svc->bootstrapping = false;
		return ret;
	}
	args->payload = w->tls_flight.data;
	args->len = w->tls_flight.len;
	args->flags = R2P2_F_TLS;
	return 0;
}

/*
 * protect_request turns an app request into the payload of the call's first R2P2
 * request: a tls exchange, or for a sealed service with a live association (and a
 * replay-safe request) one AEAD message. Sealed requests keep a copy of the
 * plaintext so that a server's "re-bootstrap" answer can be handled transparently.
 */
static int protect_request(struct worker *w, struct call *call, const struct cfg_call *cc,
			   const uint8_t *req, size_t len, struct eng_call_args *args)
{
	struct wtls_client *svc = call->svc;
	uint64_t now_ms = unix_ms();

	if (cc->security == CFG_SEC_SEALED && svc->assoc_ready && call->replay_safe &&
	    now_ms < svc->assoc.expiry_ms) {
		const uint8_t hdr[SEALED_HDR_AD_LEN] = {
			R2P2_MAGIC, R2P2_HDR_LEN, (uint8_t)((R2P2_REQUEST << 4) | args->policy),
			R2P2_F_SEALED};
		int ret = sealed_seal_request(&svc->assoc, hdr, req, len, now_ms, &w->sealed_buf,
					      &call->sctx);
		if (ret == 0) {
			call->req_copy = len <= sizeof(call->req_inline) ? call->req_inline
									 : malloc(len);
			if (!call->req_copy) {
				sealed_ctx_cleanup(&call->sctx);
				return -ENOMEM;
			}
			memcpy(call->req_copy, req, len);
			call->req_len = len;
			call->mode = MODE_SEALED;
			args->payload = w->sealed_buf.data;
			args->len = w->sealed_buf.len;
			args->flags = R2P2_F_SEALED;
			return 0;
		}
		svc->assoc_ready = false; /* expired or exhausted: bootstrap again */
	}
	return begin_tls(w, call, cc, req, len, false, args);
}

/* renew_associations starts a background renewal for associations near their expiry. */
static void renew_associations(struct worker *w, uint64_t now)
{
	const struct cfg *c = &w->cfg->cfg;
	uint64_t now_ms = unix_ms();

	for (size_t k = 0; k < c->num_calls; k++) {
		const struct cfg_call *cc = &c->calls[k];
		struct wtls_client *svc;
		struct eng_call_args args = {0};

		if (cc->security != CFG_SEC_SEALED || w->call_free == UINT32_MAX || w->draining)
			continue;
		svc = tls_client_for(w, cc);
		if (!svc || !svc->assoc_ready || svc->bootstrapping ||
		    now_ms + SEALED_LIFETIME_DEFAULT_MS / SEALED_RENEW_FRACTION < svc->assoc.expiry_ms)
			continue;
		uint32_t idx = w->call_free;
		struct call *call = &w->calls[idx];
		call->gen++;
		call->tls = NULL;
		call->req_copy = NULL;
		call->svc = svc;
		call->internal = true;
		call->replay_safe = true;
		args.dst = cc->has_router ? cc->router : cc->servers[w->call_rr[k]++ % cc->num_servers];
		args.policy = cc->policy;
		args.max_retries = cc->retries;
		args.timeout_ns = (uint64_t)cc->timeout_ms * 1000000ull / (cc->retries + 1);
		args.cookie = ((uint64_t)call->gen << 32) | idx;
		if (begin_tls(w, call, cc, NULL, 0, true, &args) < 0)
			continue;
		call->args = args;
		call->args.payload = NULL;
		if (eng_call(w->eng, &args, now) < 0) {
			svc->bootstrapping = false;
			call_release_crypto(call);
			call->mode = MODE_PLAIN;
			call->internal = false;
			continue;
		}
		w->call_free = call->next_free;
		call->wapp = MAX_WAPPS; /* in use, but no app waits */
		w->calls_inflight++;
	}
}

/*
 * call_complete runs the client side of a protected call on its R2P2 response.
 * Returns true when the call goes on (a tls continuation, or a re-bootstrap after
 * the server refused a sealed request); otherwise sets the outcome for the app.
 */
static bool call_complete(struct worker *w, struct call *c, int *status,
			  const uint8_t **payload, size_t *len)
{
	struct wtls_client *svc = c->svc;
	const char *why = NULL;
	int r;

	if (*status < 0)
		goto fail;
	if (c->mode == MODE_SEALED) {
		const uint8_t hdr[SEALED_HDR_AD_LEN] = {R2P2_MAGIC, R2P2_HDR_LEN,
							(R2P2_RESPONSE << 4) | R2P2_FIXED_ROUTE,
							R2P2_F_SEALED};
		enum sealed_reason reason;

		if (sealed_reject_decode(*payload, *len, &reason) == 0) {
			if (sealed_reason_rebootstrap(reason) && c->req_copy) {
				/* e.g. a token under a retired STEK key: fetch a new association
				 * and send the same request through it, once. */
				const struct cfg_call *cc = cfg_find_call(&w->cfg->cfg, svc->name);
				struct eng_call_args a = c->args;
				svc->assoc_ready = false;
				svc->rebootstraps++;
				sealed_ctx_cleanup(&c->sctx);
				if (cc && begin_tls(w, c, cc, c->req_copy, c->req_len, false, &a) == 0) {
					c->args.flags = a.flags; /* a CLIENT_SECOND goes as tls too */
					call_drop_copy(c);
					if (eng_call(w->eng, &a, now_ns()) == 0)
						return true;
				}
			}
			why = sealed_reason_name(reason);
			r = -ECONNREFUSED;
			goto fail_r;
		}
		r = sealed_open_response(&c->sctx, hdr, *payload, *len, &w->sealed_buf);
		if (r < 0) {
			why = "sealed response does not authenticate";
			r = -EBADMSG;
			goto fail_r;
		}
		*payload = w->sealed_buf.data;
		*len = w->sealed_buf.len;
		return false;
	}

	r = tls_call_input(c->tls, *payload, *len, &w->tls_flight, &w->tls_plain);
	if (r == TLS_CALL_CONTINUE) {
		/* The second flight goes to the server that answered the first, under the
		 * same rid: XDP steering (source, port, rid) then brings it to the worker
		 * that holds the handshake. The server's dedup entry for the first flight
		 * gives way, as for any rid reused with different bytes. */
		struct eng_call_args a = c->args;
		a.payload = w->tls_flight.data;
		a.len = w->tls_flight.len;
		a.use_rid = true;
		a.rid = eng_completing_rid(w->eng);
		r = eng_call(w->eng, &a, now_ns());
		if (r == 0)
			return true;
		goto fail_r;
	}
	if (r != TLS_CALL_DONE) {
		why = tls_call_error(c->tls);
		goto fail_r;
	}
	*payload = w->tls_plain.data;
	*len = w->tls_plain.len;
	if (c->mode == MODE_TLS_BOOT || c->mode == MODE_RENEW || c->mode == MODE_TLS_SEALED_SVC) {
		const uint8_t *blob;
		if (sealed_boot_resp_decode(*payload, *len, &blob, payload, len) < 0) {
			r = -EBADMSG;
			why = "bad sealed bootstrap response";
			goto fail_r;
		}
		if (blob && sealed_assoc_init(&svc->assoc, blob, unix_ms()) == 0)
			svc->assoc_ready = true;
		if (c->mode != MODE_TLS_SEALED_SVC)
			svc->bootstrapping = false;
	}
	return false;

fail_r:
	*status = r;
fail:
	*payload = NULL;
	*len = 0;
	if (svc && (c->mode == MODE_TLS_BOOT || c->mode == MODE_RENEW))
		svc->bootstrapping = false;
	if (why) {
		uint64_t now = now_ns();
		if (now - w->last_tls_log >= 1000000000ull) {
			w->last_tls_log = now;
			log_warn("worker %u: call to %s failed: %s", w->id, svc ? svc->name : "?",
				 why);
		}
	}
	return false;
}

static void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload,
			size_t len)
{
	struct worker *w = ctx;
	uint32_t idx = (uint32_t)cookie, gen = (uint32_t)(cookie >> 32);
	struct call *c;
	struct wapp *wa;

	if (idx >= w->num_calls_cap)
		return;
	c = &w->calls[idx];
	if (c->wapp == UINT32_MAX || c->gen != gen)
		return;
	if (c->mode != MODE_PLAIN) {
		if (call_complete(w, c, &status, &payload, &len))
			return; /* the exchange goes on */
		call_release_crypto(c);
	}
	wa = c->internal ? NULL : &w->wapps[c->wapp];
	if (wa && wa->app && wa->gen == c->wapp_gen && !wa->removing) {
		wa->calls_inflight--;
		if (lane_post(&wa->lane, R2P2_CQ_RESPONSE, status, c->user_data, 0, payload, len) < 0)
			w->cq_overflow_drops++;
	}
	c->wapp = UINT32_MAX;
	c->mode = MODE_PLAIN;
	c->internal = false;
	c->next_free = w->call_free;
	w->call_free = idx;
	w->calls_inflight--;
}

static const struct eng_ops worker_eng_ops = {
	.send = on_send,
	.request_ex = on_request,
	.complete = on_complete,
};

/* ---- app submissions ----------------------------------------------------------- */

static void fail_call(struct wapp *wa, uint64_t user_data, int err)
{
	lane_post(&wa->lane, R2P2_CQ_RESPONSE, err, user_data, 0, NULL, 0);
}

/* tls_client_for returns the worker's tls client for a called service, made on first use. */
static struct wtls_client *tls_client_for(struct worker *w, const struct cfg_call *cc)
{
	struct wtls_client *free_slot = NULL;
	char err[256];

	for (size_t i = 0; i < CFG_MAX_SERVICES; i++) {
		struct wtls_client *t = &w->tls_clients[i];
		if (!t->c) {
			if (!free_slot)
				free_slot = t;
			continue;
		}
		if (strcmp(t->name, cc->name) != 0)
			continue;
		if (strcmp(t->ca, cc->ca) == 0)
			return t;
		tls_client_free(t->c); /* the CA changed with a reload */
		t->c = NULL;
		sealed_assoc_cleanup(&t->assoc);
		t->assoc_ready = false;
		free_slot = t;
		break;
	}
	if (!free_slot)
		return NULL;
	free_slot->c = tls_client_new(cc->ca, err, sizeof(err));
	if (!free_slot->c) {
		log_err("worker %u: [call %s] ca %s: %s", w->id, cc->name, cc->ca, err);
		return NULL;
	}
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", cc->name);
	snprintf(free_slot->ca, sizeof(free_slot->ca), "%s", cc->ca);
	free_slot->assoc_ready = false;
	free_slot->bootstrapping = false;
	return free_slot;
}

static void start_call(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe,
		       const uint8_t *payload, uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	const struct cfg *c = &w->cfg->cfg;
	const struct cfg_call *cc = cfg_find_call(c, sqe->service);
	struct eng_call_args args = {0};
	uint32_t timeout_ms, idx;
	int ret;

	if (w->draining) {
		fail_call(wa, sqe->user_data, -ESHUTDOWN);
		return;
	}
	if (!cc) {
		fail_call(wa, sqe->user_data, -ENOENT);
		return;
	}
	if (w->call_free == UINT32_MAX) {
		fail_call(wa, sqe->user_data, -ENOBUFS);
		return;
	}
	if (cc->has_router) {
		args.dst = cc->router;
		args.via_router = true;
	} else {
		size_t k = (size_t)(cc - c->calls);
		args.dst = cc->servers[w->call_rr[k]++ % cc->num_servers];
	}
	timeout_ms = sqe->timeout_ms ? sqe->timeout_ms : cc->timeout_ms;
	args.sock = 0;
	args.policy = sqe->policy ? (sqe->policy & 0x0F) : cc->policy;
	args.payload = payload;
	args.len = sqe->len;
	args.max_retries = cc->retries;
	args.timeout_ns = (uint64_t)timeout_ms * 1000000ull / (cc->retries + 1);
	if (args.timeout_ns == 0)
		args.timeout_ns = 1000000;

	idx = w->call_free;
	struct call *call = &w->calls[idx];
	call->gen++;
	args.cookie = ((uint64_t)call->gen << 32) | idx;
	call->tls = NULL;
	call->req_copy = NULL;
	call->internal = false;
	call->mode = MODE_PLAIN;
	call->svc = NULL;
	call->replay_safe = !(sqe->flags & R2P2_SQE_NOT_REPLAY_SAFE);
	if (cc->security != CFG_SEC_PLAIN) {
		call->svc = tls_client_for(w, cc);
		if (!call->svc) {
			fail_call(wa, sqe->user_data, -EACCES);
			return;
		}
		ret = protect_request(w, call, cc, payload, sqe->len, &args);
		if (ret < 0) {
			fail_call(wa, sqe->user_data, ret);
			return;
		}
	}
	call->args = args;
	call->args.payload = NULL;
	call->args.via_router = false;
	ret = eng_call(w->eng, &args, now);
	if (ret < 0) {
		call_release_crypto(call);
		call->mode = MODE_PLAIN;
		fail_call(wa, sqe->user_data, ret);
		return;
	}
	w->call_free = call->next_free;
	call->wapp = slot;
	call->wapp_gen = wa->gen;
	call->user_data = sqe->user_data;
	wa->calls_inflight++;
	w->calls_inflight++;
}

static void respond(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe,
		    const uint8_t *payload, uint64_t now)
{
	size_t len = sqe->len;
	struct wapp *wa = &w->wapps[slot];
	struct exec_req *e = sqe->user_data ? exec_find(w, sqe->user_data, false) : NULL;
	int ret;

	/* An app may only answer requests handed to it. */
	if (!e || e->wapp != slot || e->wapp_gen != wa->gen) {
		lane_post(&wa->lane, R2P2_CQ_ERROR, -ENOENT, sqe->user_data, 0, NULL, 0);
		return;
	}
	struct exec_req x = *e;
	struct wsock *s = &w->socks[x.sock];
	exec_remove(w, e);
	if (x.conn) {
		/* The response leaves sealed in the exchange that carried its request. */
		if (!s->tls) {
			/* the service stopped being tls (reload): the exchange cannot be answered */
			tls_conn_free(x.conn);
			eng_reject(w->eng, sqe->user_data, now);
			ret = -ENOENT;
		} else {
			ret = answer_tls(w, s, sqe->user_data, x.conn, x.mode == MODE_TLS_BOOT,
					 payload, len, now);
		}
	} else if (x.mode == MODE_SEALED) {
		const uint8_t hdr[SEALED_HDR_AD_LEN] = {
			R2P2_MAGIC, R2P2_HDR_LEN, (R2P2_RESPONSE << 4) | R2P2_FIXED_ROUTE,
			R2P2_F_SEALED};
		ret = s->sealed ? sealed_seal_response(s->sealed, &x.sctx, hdr, payload, len,
						       &w->sealed_buf)
				: -ENOENT;
		sealed_ctx_cleanup(&x.sctx);
		if (ret == 0)
			ret = eng_respond(w->eng, sqe->user_data, w->sealed_buf.data,
					  w->sealed_buf.len, now);
		else
			eng_reject(w->eng, sqe->user_data, now);
	} else {
		ret = eng_respond(w->eng, sqe->user_data, payload, len, now);
	}
	if (ret < 0)
		lane_post(&wa->lane, R2P2_CQ_ERROR, ret, sqe->user_data, 0, NULL, 0);
}

static void drop_wapp(struct worker *w, uint32_t slot);

static void process_lane(struct worker *w, uint32_t slot, uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	struct r2p2_sqe sqe;
	const uint8_t *payload;
	int n = 0, ret;

	if (!wa->app || wa->removing)
		return;
	lane_flush(&wa->lane);
	while (n < 256) {
		/* Back-pressure: calls in flight are bounded per lane so their completions always fit. */
		if (wa->calls_inflight >= MAX_CALLS_PER_LANE)
			break;
		ret = lane_next_sqe(&wa->lane, &sqe, &payload);
		if (ret == 0)
			break;
		n++;
		if (ret == -EINVAL) {
			w->app_errors++;
			if (sqe.op == R2P2_SQ_CALL)
				fail_call(wa, sqe.user_data, -EINVAL);
			continue;
		}
		if (ret < 0)
			break;
		if (sqe.op == R2P2_SQ_CALL)
			start_call(w, slot, &sqe, payload, now);
		else if (sqe.op == R2P2_SQ_RESPOND)
			respond(w, slot, &sqe, payload, now);
	}
	if (n)
		lane_consume(&wa->lane);
	if (wa->lane.broken) {
		w->app_errors++;
		log_warn("worker %u: app %llu (pid %d) broke the ring ABI; detaching it", w->id,
			 (unsigned long long)wa->app->id, (int)wa->app->pid);
		/* Close the control connection so the main thread sees the app gone. */
		shutdown(wa->app->conn_fd, SHUT_RDWR);
		drop_wapp(w, slot);
	}
}

/* ---- app lifecycle ----------------------------------------------------------------- */

static void add_wapp(struct worker *w, struct app *a)
{
	for (uint32_t i = 0; i < MAX_WAPPS; i++) {
		struct wapp *wa = &w->wapps[i];
		if (wa->app || wa->removing)
			continue;
		if (lane_init(&wa->lane, a->map, &a->hdr, w->id, a->sq_efd[w->id], a->cq_efd[w->id],
			      CQ_OVF_MAX) < 0)
			break;
		wa->app = a;
		wa->gen++;
		wa->calls_inflight = 0;
		arm_doorbell(w, i);
		return;
	}
	log_warn("worker %u: no room for app %llu", w->id, (unsigned long long)a->id);
	app_put(a);
}

static void release_wapp_slot(struct worker *w, struct wapp *wa)
{
	(void)w;
	lane_cleanup(&wa->lane);
	app_put(wa->app);
	wa->app = NULL;
	wa->removing = false;
}

/* Forget an app on this worker: its unanswered requests are DROPped, its calls orphaned. */
static void drop_wapp(struct worker *w, uint32_t slot)
{
	struct wapp *wa = &w->wapps[slot];
	uint64_t now = now_ns();

	if (!wa->app || wa->removing)
		return;
	for (uint32_t i = 0; i < w->exec_cap; i++) {
		struct exec_req *e = &w->exec[i];
		if (e->handle && e->handle != UINT64_MAX && e->wapp == slot &&
		    e->wapp_gen == wa->gen) {
			tls_conn_free(e->conn);
			eng_reject(w->eng, e->handle, now);
			exec_remove(w, e);
		}
	}
	wa->removing = true;
	wa->gen++; /* completions for its calls now find a stale generation */
	if (wa->read_armed)
		cancel_op(w, ud_make(UD_DOORBELL, slot, wa->gen - 1));
	else
		release_wapp_slot(w, wa);
}

static void handle_cmd(struct worker *w, struct cmd *c)
{
	char err[256];

	switch (c->type) {
	case CMD_ADD_APP:
		add_wapp(w, c->app);
		c->app = NULL;
		break;
	case CMD_REGISTER:
		break; /* the app's serves[] is read on delivery; nothing to cache */
	case CMD_REMOVE_APP:
		for (uint32_t i = 0; i < MAX_WAPPS; i++)
			if (w->wapps[i].app == c->app)
				drop_wapp(w, i);
		break;
	case CMD_NEW_CFG: {
		struct cfg_ref *old = w->cfg;
		w->cfg = c->cfg;
		c->cfg = NULL;
		if (sync_service_socks(w, err, sizeof(err)) < 0)
			log_err("%s", err);
		cfg_ref_put(old);
		reload_stek(w); /* SIGHUP re-reads the STEK too */
		break;
	}
	case CMD_STOP:
		w->stop = true;
		break;
	case CMD_PACKET: {
		int slot = sock_slot_by_port(w, c->port);
		if (slot >= 0)
			eng_input(w->eng, (unsigned)slot, &c->src, c->data, c->len, now_ns());
		break;
	}
	case CMD_DRAIN:
		w->draining = true;
		w->drain_deadline = now_ns() + w->cfg->cfg.drain_timeout_ms * 1000000ull;
		break;
	}
	if (c->app)
		app_put(c->app);
	if (c->cfg)
		cfg_ref_put(c->cfg);
	free(c);
}

static void handle_inbox(struct worker *w)
{
	struct cmd *c;

	pthread_mutex_lock(&w->inbox_lock);
	c = w->inbox_head;
	w->inbox_head = w->inbox_tail = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	while (c) {
		struct cmd *next = c->next;
		handle_cmd(w, c);
		c = next;
	}
	arm_inbox(w);
}

void worker_post(struct worker *w, struct cmd *c)
{
	uint64_t one = 1;

	c->next = NULL;
	pthread_mutex_lock(&w->inbox_lock);
	if (w->inbox_tail)
		w->inbox_tail->next = c;
	else
		w->inbox_head = c;
	w->inbox_tail = c;
	pthread_mutex_unlock(&w->inbox_lock);
	if (write(w->inbox_efd, &one, sizeof(one)) < 0)
		log_err("worker %u: inbox doorbell: %s", w->id, strerror(errno));
}

/* ---- completions ---------------------------------------------------------------------- */

static void xsk_rx(void *ctx, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		   const uint8_t *payload, size_t len)
{
	struct worker *w = ctx;
	uint16_t port = ntohs(dst->port);

	/* The program steers only service ports; find the socket slot of this one. */
	for (unsigned i = 1; i < MAX_SOCKS; i++) {
		if (w->socks[i].fd >= 0 && !w->socks[i].closing && w->socks[i].port == port) {
			eng_input(w->eng, i, src, payload, len, w->rx_now);
			return;
		}
	}
}

static void arm_poll(struct worker *w, int fd, enum ud_kind kind, uint32_t idx)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_make(kind, idx, 0));
}

static void handle_xsk(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	uint32_t i = ud_idx(cqe->user_data);

	if (i >= w->num_xports)
		return;
	w->rx_now = now;
	/* Drain the rx ring; the poll is level-triggered and fires again if we stop early. */
	for (int n = 0; n < 16 && xsk_port_rx(w->xports[i], xsk_rx, w, 256) == 256; n++)
		;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_poll(w, xsk_port_fd(w->xports[i]), UD_XSK, i);
}

int worker_use_xdp(struct worker *w, struct xsk_port **ports, unsigned n, const char *ifname,
		   struct worker **all, unsigned num_workers, char *err, size_t err_len)
{
	w->peers = all;
	w->num_peers = num_workers;
	if (n > sizeof(w->xports) / sizeof(w->xports[0]))
		n = sizeof(w->xports) / sizeof(w->xports[0]);
	w->neigh = neigh_new(ifname, err, err_len);
	if (!w->neigh)
		return -1;
	memcpy(w->xports, ports, n * sizeof(*ports));
	w->num_xports = n;
	return 0;
}

/*
 * steer_elsewhere: with the xdp backend, every packet of a request must reach the
 * worker the XDP program picks by (source, port, rid). Packets it passes to the
 * kernel instead (IPv6 fragments of a full-size packet, an extension header, no
 * socket in the slot) arrive on some worker's UDP socket by reuseport's own hash;
 * hand them to the worker the program would have chosen. Returns true when forwarded.
 */
static bool steer_elsewhere(struct worker *w, uint32_t slot, const struct r2p2_addr *src,
			    const uint8_t *pkt, size_t len)
{
	__be32 saddr[4];
	const struct r2p2_hdr *h = (const struct r2p2_hdr *)pkt;
	unsigned target;
	struct cmd *c;

	if (!w->num_xports || w->num_peers < 2 || slot == 0 || !r2p2_hdr_valid(h, len))
		return false;
	if (src->family == AF_INET) {
		__be32 v4;
		memcpy(&v4, src->addr, 4);
		r2p2_v4mapped(saddr, v4);
	} else {
		memcpy(saddr, src->addr, 16);
	}
	target = r2p2_flow_hash(saddr, src->port, h->rid) % w->num_peers;
	if (target == w->id)
		return false;
	c = malloc(sizeof(*c) + len);
	if (!c)
		return false;
	memset(c, 0, sizeof(*c));
	c->type = CMD_PACKET;
	c->port = w->socks[slot].port;
	c->src = *src;
	c->len = len;
	memcpy(c->data, pkt, len);
	w->xsk_forwarded++;
	worker_post(w->peers[target], c);
	return true;
}

static void handle_recv(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	static const struct msghdr recv_msg = {.msg_namelen = sizeof(struct sockaddr_in6)};
	uint32_t slot = ud_idx(cqe->user_data);
	struct wsock *s = &w->socks[slot];

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		uint8_t *buf = w->rx_bufs + (size_t)bid * RX_BUF_SIZE;

		if (cqe->res > 0 && !s->closing) {
			struct io_uring_recvmsg_out *o =
				io_uring_recvmsg_validate(buf, cqe->res, (struct msghdr *)&recv_msg);
			if (o && !(o->flags & MSG_TRUNC) && o->namelen > 0) {
				struct r2p2_addr src;
				const uint8_t *pl = io_uring_recvmsg_payload(o, (struct msghdr *)&recv_msg);
				size_t pl_len = io_uring_recvmsg_payload_length(
					o, cqe->res, (struct msghdr *)&recv_msg);
				addr_from_sockaddr(io_uring_recvmsg_name(o), &src);
				if (!steer_elsewhere(w, slot, &src, pl, pl_len))
					eng_input(w->eng, slot, &src, pl, pl_len, now);
			}
		}
		io_uring_buf_ring_add(w->br, buf, RX_BUF_SIZE, bid, io_uring_buf_ring_mask(RX_BUFS), 0);
		io_uring_buf_ring_advance(w->br, 1);
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		s->recv_armed = false;
		if (s->closing) {
			free_sock_tls(w, slot);
			close(s->fd);
			s->fd = -1;
			s->closing = false;
		} else if (cqe->res < 0 && cqe->res != -ENOBUFS) {
			log_warn("worker %u: recv on port %u: %s", w->id, s->port, strerror(-cqe->res));
		}
		/* re-armed at the end of the loop iteration */
	}
}

static void handle_doorbell(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	uint32_t slot = ud_idx(cqe->user_data);
	struct wapp *wa;

	if (slot >= MAX_WAPPS)
		return;
	wa = &w->wapps[slot];
	wa->read_armed = false;
	if (wa->removing) {
		release_wapp_slot(w, wa);
		return;
	}
	if (!wa->app || ud_gen(cqe->user_data) != (wa->gen & 0xFFFFFF))
		return;
	if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN) {
		log_warn("worker %u: doorbell of app %llu: %s", w->id,
			 (unsigned long long)wa->app->id, strerror(-cqe->res));
		drop_wapp(w, slot);
		return;
	}
	process_lane(w, slot, now);
	if (wa->app && !wa->removing)
		arm_doorbell(w, slot);
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	switch (ud_kind(cqe->user_data)) {
	case UD_RECV:
		handle_recv(w, cqe, now);
		break;
	case UD_SEND: {
		uint32_t slot = ud_idx(cqe->user_data);
		if (cqe->res < 0)
			log_debug("worker %u: send: %s", w->id, strerror(-cqe->res));
		if (slot < TX_SLOTS)
			w->tx_free[w->num_tx_free++] = slot;
		break;
	}
	case UD_DOORBELL:
		handle_doorbell(w, cqe, now);
		break;
	case UD_TIMER:
		w->timer_deadline = 0;
		break;
	case UD_INBOX:
		handle_inbox(w);
		break;
	case UD_XSK:
		handle_xsk(w, cqe, now);
		break;
	case UD_NEIGH:
		neigh_process(w->neigh);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(w, neigh_fd(w->neigh), UD_NEIGH, 0);
		break;
	case UD_STEK:
		if (cqe->res > 0) {
			reload_stek(w);
			arm_stek_watch(w);
		}
		break;
	case UD_TIMER_UPD:
		/* The timer fired before the update reached it: arm a new one. */
		if (cqe->res == -ENOENT)
			w->timer_deadline = 0;
		break;
	case UD_CANCEL:
		break;
	}
}

static void publish_snapshot(struct worker *w)
{
	struct worker_snap s = {0};
	unsigned n = 0;

	eng_get_stats(w->eng, &s.eng);
	for (uint32_t i = 0; i < MAX_WAPPS; i++)
		s.apps += w->wapps[i].app && !w->wapps[i].removing;
	s.calls_inflight = w->calls_inflight;
	s.requests_executing = w->exec_count;
	s.tx_fallback = w->tx_fallback;
	s.xsk_tx = w->xsk_tx;
	s.xsk_tx_fallback = w->xsk_tx_fallback;
	for (unsigned i = 0; i < w->num_xports; i++) {
		struct xsk_port_stats xs;
		xsk_port_get_stats(w->xports[i], &xs);
		s.xsk_rx += xs.rx;
		s.xsk_rx_bad += xs.rx_dropped_parse;
	}
	s.app_errors = w->app_errors;
	s.cq_overflow_drops = w->cq_overflow_drops;
	s.tls_server = w->tls_retired;
	for (int i = 1; i < MAX_SOCKS; i++) {
		struct tls_stats t;
		if (!w->socks[i].tls)
			continue;
		tls_server_stats(w->socks[i].tls, &t);
		tls_stats_add(&s.tls_server, &t);
	}
	for (int i = 1; i < MAX_SOCKS; i++) {
		struct sealed_stats ss;
		if (!w->socks[i].sealed)
			continue;
		sealed_server_stats(w->socks[i].sealed, &ss);
		s.sealed.opened += ss.opened;
		s.sealed.responses += ss.responses;
		s.sealed.minted += ss.minted;
		for (unsigned r = 0; r <= SEALED_REASON_MAX; r++)
			s.sealed.rejected[r] += ss.rejected[r];
	}
	for (size_t i = 0; i < CFG_MAX_SERVICES; i++) {
		struct tls_stats t;
		if (!w->tls_clients[i].c)
			continue;
		s.sealed_assocs += w->tls_clients[i].assoc_ready;
		if (w->tls_clients[i].assoc_ready && s.num_assoc < 8) {
			const uint8_t *t = w->tls_clients[i].assoc.token; /* key id, big-endian */
			snprintf(s.assoc[s.num_assoc].service, CFG_NAME_MAX, "%s",
				 w->tls_clients[i].name);
			s.assoc[s.num_assoc].key_id = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 |
						      (uint32_t)t[2] << 8 | t[3];
			s.assoc[s.num_assoc].expiry_ms = w->tls_clients[i].assoc.expiry_ms;
			s.num_assoc++;
		}
		s.sealed_rebootstraps += w->tls_clients[i].rebootstraps;
		tls_client_stats(w->tls_clients[i].c, &t);
		tls_stats_add(&s.tls_client, &t);
	}
	for (int i = 1; i < MAX_SOCKS && n < CFG_MAX_SERVICES; i++) {
		if (w->socks[i].fd < 0 || w->socks[i].closing)
			continue;
		s.svc[n].port = w->socks[i].port;
		s.svc[n].requests = w->socks[i].requests;
		s.svc[n].dropped_no_app = w->socks[i].dropped_no_app;
		s.svc[n].dropped_wrong_mode = w->socks[i].dropped_wrong_mode;
		n++;
	}
	s.num_svc = n;
	pthread_mutex_lock(&w->snap_lock);
	w->snap = s;
	pthread_mutex_unlock(&w->snap_lock);
}

void worker_snapshot(struct worker *w, struct worker_snap *out)
{
	pthread_mutex_lock(&w->snap_lock);
	*out = w->snap;
	pthread_mutex_unlock(&w->snap_lock);
}

/*
 * expire_requests forgets requests an app has held past exec_timeout_ms: the engine
 * has freed their state by then, so an answer could not be sent anyway, and a tls
 * exchange waiting on one would hold its SSL forever.
 */
static void expire_requests(struct worker *w, uint64_t now)
{
	uint64_t limit = w->cfg->cfg.exec_timeout_ms * 1000000ull;

	for (uint32_t i = 0; i < w->exec_cap && w->exec_count; i++) {
		struct exec_req *e = &w->exec[i];
		if (!e->handle || e->handle == UINT64_MAX || now - e->since < limit)
			continue;
		tls_conn_free(e->conn);
		sealed_ctx_cleanup(&e->sctx);
		exec_remove(w, e);
	}
}

/* ---- the loop ------------------------------------------------------------------------------ */

/*
 * spin_for_apps: an app holds a request of ours, and an answer often comes back
 * within microseconds. Rather than sleep and pay a wakeup, watch the lanes for a
 * while (with the doorbells off, so the app makes no syscall either). Returns true
 * when there is work. Only the server side spins: the thread it waits for runs on
 * the other core, so the two do not compete.
 */
static bool spin_for_apps(struct worker *w, uint64_t until)
{
	bool work = false;

	io_uring_submit(&w->ring); /* what this iteration queued leaves now */
	for (uint32_t i = 0; i < MAX_WAPPS; i++)
		if (w->wapps[i].app && !w->wapps[i].removing)
			lane_disarm_wakeup(&w->wapps[i].lane);
	do {
		for (uint32_t i = 0; i < MAX_WAPPS && !work; i++) {
			struct wapp *wa = &w->wapps[i];
			work = wa->app && !wa->removing &&
			       r2p2_load_acquire(&wa->lane.ctrl->sq_tail) != wa->lane.sq_head;
		}
		work = work || io_uring_cq_ready(&w->ring);
		if (!work)
			__builtin_ia32_pause();
	} while (!work && now_ns() < until);
	/* Doorbells back on before sleeping; anything that slipped in is seen here. */
	for (uint32_t i = 0; i < MAX_WAPPS; i++) {
		struct wapp *wa = &w->wapps[i];
		if (wa->app && !wa->removing && lane_arm_wakeup(&wa->lane))
			work = true;
	}
	return work;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct io_uring_cqe *cqe;

	pthread_setname_np(pthread_self(), w->name);
	arm_inbox(w);
	arm_stek_watch(w);
	for (unsigned i = 0; i < w->num_xports; i++)
		arm_poll(w, xsk_port_fd(w->xports[i]), UD_XSK, i);
	if (w->neigh)
		arm_poll(w, neigh_fd(w->neigh), UD_NEIGH, 0);
	for (int i = 0; i < MAX_SOCKS; i++)
		if (w->socks[i].fd >= 0)
			arm_recv(w, (uint32_t)i);

	while (!w->stop) {
		uint64_t now = now_ns(), deadline;
		unsigned head, n = 0;
		bool busy = false;

		io_uring_for_each_cqe(&w->ring, head, cqe) {
			handle_cqe(w, cqe, now);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);

		now = now_ns();
		eng_tick(w->eng, now);
		if (now >= w->next_housekeeping) {
			w->next_housekeeping = now + HOUSEKEEPING_NS;
			for (int i = 1; i < MAX_SOCKS; i++)
				if (w->socks[i].tls)
					tls_server_expire(w->socks[i].tls, now, TLS_PENDING_AGE_NS);
			renew_associations(w, now);
			expire_requests(w, now);
			publish_snapshot(w);
		}

		/* Apps: take what they submitted, ring their doorbells, ask for ours. */
		for (uint32_t i = 0; i < MAX_WAPPS; i++) {
			struct wapp *wa = &w->wapps[i];
			if (!wa->app || wa->removing)
				continue;
			process_lane(w, i, now);
			if (!wa->app || wa->removing)
				continue;
			lane_flush(&wa->lane);
			lane_notify(&wa->lane);
			if (lane_arm_wakeup(&wa->lane)) {
				lane_disarm_wakeup(&wa->lane);
				busy = true;
			}
		}
		for (int i = 0; i < MAX_SOCKS; i++)
			if (w->socks[i].fd >= 0 && !w->socks[i].recv_armed && !w->socks[i].closing)
				arm_recv(w, (uint32_t)i);

		/* AF_XDP: hand this iteration's frames to the kernel (kicking only when it
		 * asks) and take back the frames it finished sending. */
		for (unsigned i = 0; i < w->num_xports; i++) {
			if (w->xsk_dirty)
				xsk_port_flush(w->xports[i]);
			if (xsk_port_pending(w->xports[i]))
				xsk_port_complete(w->xports[i]);
		}
		w->xsk_dirty = false;

		/* Drained: tell the main thread, then keep answering (DROP, ESHUTDOWN) until
		 * every worker is drained and the main thread says stop. */
		if (w->draining && !w->drained_reported &&
		    ((w->calls_inflight == 0 && w->exec_count == 0) || now >= w->drain_deadline)) {
			if (w->calls_inflight || w->exec_count)
				log_warn("worker %u: drain timeout with %u calls and %u requests in flight",
					 w->id, w->calls_inflight, w->exec_count);
			w->drained_reported = true;
			uint64_t one = 1;
			if (write(w->drained_efd, &one, sizeof(one)) < 0)
				log_err("worker %u: drained notice: %s", w->id, strerror(errno));
		}
		if (w->stop) {
			io_uring_submit(&w->ring);
			break;
		}

		deadline = eng_next_deadline(w->eng);
		if (deadline > w->next_housekeeping)
			deadline = w->next_housekeeping;
		if (w->draining && !w->drained_reported && deadline > w->drain_deadline)
			deadline = w->drain_deadline;
		if (!w->timer_deadline || deadline < w->timer_deadline)
			arm_timer(w, deadline);

		if (!busy && w->exec_count > 0 && w->cfg->cfg.spin_us)
			busy = spin_for_apps(w, now + w->cfg->cfg.spin_us * 1000ull);
		int r = busy ? io_uring_submit(&w->ring) : io_uring_submit_and_wait(&w->ring, 1);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			log_err("worker %u: io_uring_submit: %s", w->id, strerror(-r));
			break;
		}
		for (uint32_t i = 0; i < MAX_WAPPS; i++)
			if (w->wapps[i].app && !w->wapps[i].removing)
				lane_disarm_wakeup(&w->wapps[i].lane);
	}
	publish_snapshot(w);
	return NULL;
}

/* uses_tls says whether the config serves or calls any tls service. */
static bool uses_tls(const struct cfg *c)
{
	for (size_t i = 0; i < c->num_serves; i++)
		if (c->serves[i].security != CFG_SEC_PLAIN)
			return true;
	for (size_t i = 0; i < c->num_calls; i++)
		if (c->calls[i].security != CFG_SEC_PLAIN)
			return true;
	return false;
}

/* Watch the STEK file's directory: editors and secret stores replace the file by rename. */
static void watch_stek(struct worker *w)
{
	char dir[CFG_PATH_MAX];
	const char *path = w->cfg->cfg.stek_path;

	if (!path[0] || w->stek_ifd >= 0)
		return;
	snprintf(dir, sizeof(dir), "%s", path);
	w->stek_ifd = inotify_init1(IN_CLOEXEC);
	if (w->stek_ifd < 0 ||
	    inotify_add_watch(w->stek_ifd, dirname(dir),
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB) < 0) {
		log_warn("worker %u: cannot watch %s for changes (%s); SIGHUP reloads it", w->id,
			 path, strerror(errno));
		if (w->stek_ifd >= 0)
			close(w->stek_ifd);
		w->stek_ifd = -1;
	}
}

static void arm_stek_watch(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->stek_ifd < 0 || !(sqe = get_sqe(w)))
		return;
	io_uring_prep_read(sqe, w->stek_ifd, w->stek_ev, sizeof(w->stek_ev), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_STEK, 0, 0));
}

/* set_stek switches every tls server of this worker to `set` (a reference is taken). */
static void set_stek(struct worker *w, struct stek_set *set)
{
	struct stek_set *old = w->stek;

	w->stek = set ? stek_set_get(set) : NULL;
	for (int i = 1; i < MAX_SOCKS; i++)
		if (w->socks[i].tls)
			tls_server_set_stek(w->socks[i].tls, w->stek);
	stek_set_put(old);
}

/*
 * reload_stek re-reads the STEK file. A bad file keeps the keys in use; only
 * worker 0 speaks, so one change gives one log line.
 */
static void reload_stek(struct worker *w)
{
	struct stek_set *set;
	char err[512], before[512], after[512];

	if (!w->cfg->cfg.stek_path[0])
		return;
	if (stek_load(w->cfg->cfg.stek_path, &set, err, sizeof(err)) < 0) {
		if (w->id == 0)
			log_err("%s; keeping the keys in use", err);
		return;
	}
	before[0] = '\0';
	if (w->stek)
		stek_describe(w->stek, before, sizeof(before));
	stek_describe(set, after, sizeof(after));
	if (strcmp(before, after) != 0) {
		if (w->id == 0)
			log_info("STEK reloaded from %s:\n%s", w->cfg->cfg.stek_path, after);
		set_stek(w, set);
	}
	stek_set_put(set);
}

struct worker *worker_new(unsigned id, struct cfg_ref *cfg, struct stek_set *stek,
			  struct replay *replay, struct replay *sealed_replay, int drained_efd,
			  char *err, size_t err_len)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct io_uring_params p = {0};
	struct eng_config ec;
	int ret;

	if (!w) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	w->id = id;
	w->cfg = cfg_ref_get(cfg);
	w->family = cfg->cfg.listen_addr.family == AF_INET6 ? AF_INET6 : AF_INET;
	w->inbox_efd = -1;
	w->stek_ifd = -1;
	w->drained_efd = drained_efd;
	w->stek = stek ? stek_set_get(stek) : NULL;
	w->replay = replay;
	w->sealed_replay = sealed_replay;
	snprintf(w->name, sizeof(w->name), "r2p2d-w%u", id);
	pthread_mutex_init(&w->inbox_lock, NULL);
	pthread_mutex_init(&w->snap_lock, NULL);
	for (int i = 0; i < MAX_SOCKS; i++)
		w->socks[i].fd = -1;

	/* Not SINGLE_ISSUER: the ring is set up here, on the main thread, and driven by the worker. */
	p.flags = IORING_SETUP_COOP_TASKRUN;
	ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (ret < 0) {
		p.flags = 0; /* older kernels */
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (ret < 0) {
		snprintf(err, err_len, "worker %u: io_uring_queue_init: %s", id, strerror(-ret));
		goto fail_noring;
	}

	/* Provided receive buffers: a buffer ring the kernel picks from for every datagram. */
	w->br_len = RX_BUFS * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, w->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->rx_bufs = malloc((size_t)RX_BUFS * RX_BUF_SIZE);
	if (w->br == MAP_FAILED || !w->rx_bufs) {
		w->br = NULL;
		snprintf(err, err_len, "worker %u: out of memory for receive buffers", id);
		goto fail;
	}
	io_uring_buf_ring_init(w->br);
	struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)w->br,
				       .ring_entries = RX_BUFS,
				       .bgid = RX_BGID};
	ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (ret < 0) {
		snprintf(err, err_len, "worker %u: io_uring_register_buf_ring: %s (kernel too old?)",
			 id, strerror(-ret));
		goto fail;
	}
	for (uint16_t i = 0; i < RX_BUFS; i++)
		io_uring_buf_ring_add(w->br, w->rx_bufs + (size_t)i * RX_BUF_SIZE, RX_BUF_SIZE, i,
				      io_uring_buf_ring_mask(RX_BUFS), i);
	io_uring_buf_ring_advance(w->br, RX_BUFS);

	w->tx = calloc(TX_SLOTS, sizeof(*w->tx));
	w->num_calls_cap = MAX_CALLS_PER_LANE * 4;
	w->calls = calloc(w->num_calls_cap, sizeof(*w->calls));
	w->exec_cap = 1024;
	w->exec = calloc(w->exec_cap, sizeof(*w->exec));
	if (!w->tx || !w->calls || !w->exec) {
		snprintf(err, err_len, "worker %u: out of memory", id);
		goto fail;
	}
	for (uint32_t i = 0; i < TX_SLOTS; i++)
		w->tx_free[w->num_tx_free++] = TX_SLOTS - 1 - i;
	for (uint32_t i = 0; i < w->num_calls_cap; i++) {
		w->calls[i].wapp = UINT32_MAX;
		w->calls[i].next_free = i + 1 < w->num_calls_cap ? i + 1 : UINT32_MAX;
	}
	w->call_free = 0;

	eng_config_default(&ec);
	ec.max_msg_len = cfg->cfg.max_msg_len;
	ec.dedup_window_ns = cfg->cfg.dedup_window_ms * 1000000ull;
	ec.reassembly_timeout_ns = cfg->cfg.reassembly_timeout_ms * 1000000ull;
	ec.exec_timeout_ns = cfg->cfg.exec_timeout_ms * 1000000ull;
	ec.max_client_calls = w->num_calls_cap;
	ec.has_router = cfg->cfg.has_router;
	ec.router = cfg->cfg.router;
	ec.allow_flags = uses_tls(&cfg->cfg);
	if (getrandom(&ec.hash_seed, sizeof(ec.hash_seed), 0) != sizeof(ec.hash_seed))
		ec.hash_seed = now_ns() ^ ((uint64_t)getpid() << 32);
	w->eng = eng_new(&ec, &worker_eng_ops, w);
	if (!w->eng) {
		snprintf(err, err_len, "worker %u: engine: %s", id, strerror(errno));
		goto fail;
	}

	w->inbox_efd = eventfd(0, EFD_CLOEXEC);
	if (w->inbox_efd < 0) {
		snprintf(err, err_len, "worker %u: eventfd: %s", id, strerror(errno));
		goto fail;
	}
	/* The client socket: ephemeral port, private to this worker, so responses come back here. */
	w->socks[0].fd = open_udp(w, 0, err, err_len);
	if (w->socks[0].fd < 0)
		goto fail;
	if (sync_service_socks(w, err, err_len) < 0)
		goto fail;
	watch_stek(w);
	return w;
fail:
	io_uring_queue_exit(&w->ring);
fail_noring:
	w->ring.ring_fd = -1;
	worker_free(w);
	return NULL;
}

int worker_start(struct worker *w)
{
	int ret = pthread_create(&w->thread, NULL, worker_main, w);
	return -ret;
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	/* eng_free completes pending calls with -ECANCELED; apps are gone by now. */
	for (uint32_t i = 0; i < MAX_WAPPS; i++)
		if (w->wapps[i].app)
			release_wapp_slot(w, &w->wapps[i]);
	eng_free(w->eng); /* before the tls state: pending calls complete and free theirs */
	for (uint32_t i = 0; w->exec && i < w->exec_cap; i++)
		if (w->exec[i].handle && w->exec[i].handle != UINT64_MAX)
			tls_conn_free(w->exec[i].conn);
	for (int i = 0; i < MAX_SOCKS; i++) {
		if (w->socks[i].tls)
			tls_server_free(w->socks[i].tls);
		sealed_server_free(w->socks[i].sealed);
		if (w->socks[i].fd >= 0)
			close(w->socks[i].fd);
	}
	for (size_t i = 0; i < CFG_MAX_SERVICES; i++) {
		tls_client_free(w->tls_clients[i].c);
		sealed_assoc_cleanup(&w->tls_clients[i].assoc);
	}
	tls_buf_cleanup(&w->sealed_buf);
	neigh_free(w->neigh);
	tls_buf_cleanup(&w->tls_flight);
	tls_buf_cleanup(&w->tls_plain);
	stek_set_put(w->stek);
	if (w->stek_ifd >= 0)
		close(w->stek_ifd);
	if (w->ring.ring_fd > 0)
		io_uring_queue_exit(&w->ring);
	if (w->br)
		munmap(w->br, w->br_len);
	if (w->inbox_efd >= 0)
		close(w->inbox_efd);
	while (w->inbox_head) {
		struct cmd *c = w->inbox_head;
		w->inbox_head = c->next;
		if (c->app)
			app_put(c->app);
		if (c->cfg)
			cfg_ref_put(c->cfg);
		free(c);
	}
	free(w->rx_bufs);
	free(w->tx);
	free(w->calls);
	free(w->exec);
	if (w->cfg)
		cfg_ref_put(w->cfg);
	pthread_mutex_destroy(&w->inbox_lock);
	pthread_mutex_destroy(&w->snap_lock);
	free(w);
}
