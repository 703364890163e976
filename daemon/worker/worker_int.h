/* SPDX-License-Identifier: MIT */
/*
 * A worker's insides, shared only by the files that make up a worker:
 *   worker.c   the thread, its io_uring loop (named phases) and the inbox
 *   calls.c    the client call table: app calls -> engine calls -> app replies
 *   execs.c    the server exec table: engine requests -> apps -> responses
 *   lanes.c    the apps' shared-memory lanes on this worker
 *   net_udp.c  the kernel UDP sockets (both backends receive through them)
 *   net_xsk.c  the AF_XDP backend
 *   snapshot.c the counters published for status
 * Everything here runs on the worker's own thread, except worker_post and
 * worker_snapshot (worker.h).
 */
#ifndef R2P2D_WORKER_INT_H
#define R2P2D_WORKER_INT_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <r2p2/bpf_abi.h>

#include "lane.h"
#include "secure.h"
#include "worker.h"

#define RING_ENTRIES 1024
#define RX_BUFS 4096 /* power of two */
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
#define MAX_XPORTS R2P2_MAX_QUEUES

/* The kind of an io_uring operation, in the top byte of its user_data. */
enum ud_kind {
	UD_RECV = 1, /* multishot recvmsg on a UDP socket (net_udp.c) */
	UD_SEND,     /* one sendmsg from the tx pool (net_udp.c) */
	UD_DOORBELL, /* an app rang its submission doorbell (lanes.c) */
	UD_TIMER,    /* the engine's next deadline or housekeeping */
	UD_TIMER_UPD,
	UD_INBOX, /* the main thread posted commands */
	UD_CANCEL,
	UD_STEK, /* the STEK file's directory changed (inotify) */
	UD_NET,	 /* the backend's own: AF_XDP rx, route/neighbour changes (net_xsk.c) */
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

/* A UDP socket: slot 0 is the client socket, the others one served service each. */
struct wsock {
	int fd;	       /* -1: free slot */
	uint16_t port; /* service port (host order); 0 for the client socket */
	bool recv_armed;
	bool closing; /* cancel issued; free the slot on the final recv CQE */
	uint64_t requests, dropped_no_app, dropped_wrong_mode, dropped_expired, dropped_bad_ext;
	struct sec_service sec; /* the served service's mode and keys */
};

/* An app's lane on this worker. */
struct wapp {
	struct app *app; /* NULL: free slot */
	uint32_t gen;
	struct lane lane;
	uint64_t efd_val; /* doorbell read target */
	bool read_armed;
	bool removing; /* waiting for the doorbell read to end before freeing */
	uint32_t calls_inflight;
};

#define CALL_INTERNAL MAX_WAPPS		 /* call->wapp of a call no app waits for (a renewal) */
#define CALL_SVCS (2 * CFG_MAX_SERVICES) /* called services a worker tracks (reloads rename) */
#define CALL_NO_SVC UINT16_MAX
#define QUEUE_MAX 16384	      /* app calls a worker holds waiting for max_inflight, all services */
#define DEBUG_CALLS_PER_S 100 /* log_level = debug: per-call lines a worker writes a second */

/* An app call waiting for its service's max_inflight (calls.c). */
struct pending {
	struct pending *next;
	uint32_t wapp, wapp_gen;
	uint64_t deadline; /* the call's whole timeout, from its submission */
	struct r2p2_sqe sqe;
	uint8_t payload[];
};

/* A called service's admission: app calls in flight, and those waiting in order. */
struct call_svc {
	char name[CFG_NAME_MAX]; /* "": free */
	uint32_t inflight;
	struct pending *head, *tail;
	struct call_svc_stats st;
};

/* A call in flight: engine cookie -> app and the app's call id. */
struct call {
	uint32_t wapp; /* slot; UINT32_MAX: free; CALL_INTERNAL: no app */
	uint32_t wapp_gen;
	uint32_t gen;
	uint64_t user_data;
	uint32_t next_free;
	uint16_t svc;		   /* index in worker.call_svcs; CALL_NO_SVC: not counted */
	uint32_t next_user;	   /* next call in its by_user chain; UINT32_MAX: none */
	uint64_t start_ns;	   /* when it left the worker (for debug logs) */
	struct eng_call_args args; /* kept to send a continuation to the same server */
	struct sec_call sec;
};

/* A request handed to an app and not answered yet (engine handle -> app). */
struct exec_req {
	uint64_t handle; /* 0: empty; EXEC_TOMB: removed */
	uint32_t wapp;
	uint32_t wapp_gen;
	uint32_t sock;
	uint64_t since; /* when it was handed to the app */
	bool ext;	/* the caller reads an extension block: the response gets one */
	struct sec_exec sec;
};
#define EXEC_TOMB UINT64_MAX

struct tx_slot {
	struct msghdr msg;
	struct iovec iov;
	struct sockaddr_in6 sa;
	uint8_t buf[TX_BUF_SIZE];
};

struct xsk_port;
struct neigh;

/* A network backend: how datagrams leave and arrive. */
struct net_ops {
	const char *name;
	/* arm starts every receive when the loop starts. */
	void (*arm)(struct worker *w);
	/* send sends one datagram of socket slot `sock` to `dst`. */
	void (*send)(struct worker *w, unsigned sock, const struct r2p2_addr *dst,
		     const struct iovec *iov, int iovcnt);
	/* input takes a datagram a kernel UDP socket received. */
	void (*input)(struct worker *w, unsigned sock, const struct r2p2_addr *src,
		      const uint8_t *pkt, size_t len, uint64_t now);
	/* flush ends a loop iteration: re-arm receives, push queued frames. */
	void (*flush)(struct worker *w);
	/* complete handles a UD_NET completion. */
	void (*complete)(struct worker *w, struct io_uring_cqe *cqe, uint64_t now);
	/* stats adds the backend's counters to `s`. */
	void (*stats)(struct worker *w, struct worker_snap *s);
};

extern const struct net_ops net_udp_ops;
extern const struct net_ops net_xsk_ops;

struct worker {
	unsigned id;
	int cpu; /* the CPU this worker is pinned to (config `cpus`), -1: none */
	pthread_t thread;
	struct io_uring ring;
	bool ring_disabled; /* made disabled, to be enabled by the worker thread (ring_init) */
	struct eng *eng;
	struct cfg_ref *cfg;
	int family; /* AF_INET or AF_INET6 of every socket */
	const struct net_ops *net;

	pthread_mutex_t inbox_lock;
	struct cmd *inbox_head, *inbox_tail;
	int inbox_efd;
	uint64_t inbox_val;

	struct wsock socks[MAX_SOCKS];

	struct io_uring_buf_ring *br;
	uint8_t *rx_bufs;
	uint8_t *ext_buf; /* an app message behind its extension block (ext_wrap) */
	size_t ext_cap;
	size_t br_len;

	struct tx_slot *tx;
	uint32_t tx_free[TX_SLOTS];
	uint32_t num_tx_free;

	struct wapp wapps[MAX_WAPPS];
	uint32_t wapp_hi; /* slots in use (or being removed) are all below: the hot loops' bound */
	bool udp_unarmed; /* a UDP socket may have no receive armed (udp_rearm looks) */
	uint32_t rr_app;  /* round-robin cursor for request delivery */

	struct call *calls;
	uint32_t num_calls_cap, call_free, calls_inflight;
	uint32_t *by_user; /* app calls by (lane slot, user_data): chains of call indexes */
	uint32_t by_user_mask;
	uint64_t by_user_key[2]; /* SipHash key: an app picks its user_data, not its bucket */
	struct call_svc call_svcs[CALL_SVCS];
	uint32_t calls_queued;		   /* waiting in call_svcs, all services */
	uint64_t calls_waited, queue_full; /* calls that waited; refused with the queue full */

	struct exec_req *exec; /* open addressing, power of two */
	uint32_t exec_cap, exec_count, exec_tombs;

	uint32_t call_rr[CFG_MAX_SERVICES]; /* round-robin over a call's servers */

	uint64_t timer_deadline; /* armed absolute deadline, 0 = none */
	struct __kernel_timespec timer_ts;
	uint64_t next_housekeeping;

	/* security modes */
	struct sec_env sec;			 /* sec.stek holds a reference */
	struct sec_peer peers[CFG_MAX_SERVICES]; /* called tls and sealed services */
	struct tls_stats tls_retired;		 /* counters of tls servers already freed */
	uint64_t last_sec_log;
	uint64_t now;		  /* the loop's clock, read once a phase (call latencies) */
	uint64_t debug_window_ns; /* per-call debug lines: at most DEBUG_CALLS_PER_S a second */
	unsigned debug_lines;
	int stek_ifd; /* inotify on the STEK file's directory */
	uint8_t stek_ev[4096] __attribute__((aligned(8)));

	/* xdp backend: one AF_XDP socket per rx queue, steered to us by the XDP program */
	struct xsk_port *xports[MAX_XPORTS];
	unsigned num_xports;
	struct neigh *neigh;
	bool xsk_dirty;	 /* frames queued since the last flush */
	uint64_t rx_now; /* `now` for the AF_XDP rx callback */
	uint64_t xsk_tx, xsk_tx_fallback, xsk_forwarded;
	struct worker **peers_all; /* every worker, to hand over datagrams steered to another */
	unsigned num_peers_all;

	int drained_efd; /* the main thread's: written once when this worker has drained */
	bool draining, stop;
	bool drained_reported;
	uint64_t drain_deadline;
	uint64_t tx_fallback, app_errors, cq_overflow_drops;
	uint64_t app_ok, app_failed; /* app calls ended, as their apps saw them */

	pthread_mutex_t snap_lock;
	struct worker_snap snap;
	char name[16];
};

/* worker.c: io_uring helpers */
struct io_uring_sqe *get_sqe(struct worker *w);
void cancel_op(struct worker *w, uint64_t ud);
void arm_poll(struct worker *w, int fd, enum ud_kind kind, uint32_t idx);

/* net_udp.c */
int udp_open(struct worker *w, uint16_t port, char *err, size_t err_len);
int udp_sync_services(struct worker *w, char *err, size_t err_len);
int udp_slot_by_port(const struct worker *w, uint16_t port);
void udp_arm_all(struct worker *w);
void udp_rearm(struct worker *w);
void udp_send(struct worker *w, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
	      int iovcnt);
void udp_handle_recv(struct worker *w, struct io_uring_cqe *cqe, uint64_t now);
void udp_handle_send(struct worker *w, struct io_uring_cqe *cqe);
void udp_close_all(struct worker *w);

/* calls.c */
int calls_init(struct worker *w);
void calls_free(struct worker *w);
void call_start(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe, const uint8_t *payload,
		uint64_t now);
void call_fail(struct wapp *wa, uint64_t user_data, int err);
/* call_cancel cancels the call `user_data` of the app in lane `slot` (R2P2_SQ_CANCEL). */
void call_cancel(struct worker *w, uint32_t slot, uint64_t user_data);
void calls_renew(struct worker *w, uint64_t now);
/* calls_expire_queued ends waiting calls past their deadline (-ETIMEDOUT), all when draining. */
void calls_expire_queued(struct worker *w, uint64_t now);
void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len);

/*
 * ext_wrap returns `len` bytes of `data` behind an extension block with `value`
 * (ext.h), in the worker's scratch buffer, or NULL when it cannot grow. The caller
 * hands it on (the engine and the modes copy it) and then calls ext_wipe.
 */
const uint8_t *ext_wrap(struct worker *w, uint32_t value, const uint8_t *data, size_t len);
/* ext_wipe wipes what ext_wrap put in the scratch buffer (app bytes, maybe decrypted). */
void ext_wipe(struct worker *w, size_t len);

/* execs.c */
int execs_init(struct worker *w);
void execs_free(struct worker *w);
void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		unsigned policy, uint8_t flags, const uint8_t *payload, size_t len);
void exec_respond(struct worker *w, uint32_t slot, const struct r2p2_sqe *sqe,
		  const uint8_t *payload, uint64_t now);
/* exec_drop_where forgets every request `match` selects, DROPping it when `reject`. */
void exec_drop_where(struct worker *w, bool (*match)(const struct exec_req *e, const void *arg),
		     const void *arg, bool reject, uint64_t now);
void execs_expire(struct worker *w, uint64_t now);

/* lanes.c */
void lanes_add(struct worker *w, struct app *a);
void lanes_remove_app(struct worker *w, const struct app *a);
bool lanes_process_all(struct worker *w, uint64_t now);
void lanes_handle_doorbell(struct worker *w, struct io_uring_cqe *cqe, uint64_t now);
bool lanes_spin(struct worker *w, uint64_t until);
void lanes_disarm_all(struct worker *w);
unsigned lanes_count(const struct worker *w);
void lanes_free(struct worker *w);

/* snapshot.c */
void snapshot_publish(struct worker *w);

#endif /* R2P2D_WORKER_INT_H */
