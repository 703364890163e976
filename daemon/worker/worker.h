/* SPDX-License-Identifier: MIT */
/*
 * The workers' API for the control plane (main thread). A worker is one thread,
 * one io_uring, one protocol engine; it owns everything it reaches from struct
 * worker. The control plane talks to it only through its inbox (a locked list
 * plus an eventfd the worker's ring reads) and reads its published snapshot, so
 * no lock is ever taken on a per-packet or per-RPC path. Workers never call the
 * control plane.
 */
#ifndef R2P2D_WORKER_H
#define R2P2D_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "config.h"
#include "engine.h"
#include "sealed.h"
#include "tls.h"

struct replay;

enum cmd_type {
	CMD_ADD_APP,	/* app: give it a lane on this worker */
	CMD_REGISTER,	/* app, port: the app serves this service */
	CMD_REMOVE_APP, /* app: drop its lane, reject its requests, forget its calls */
	CMD_NEW_CFG,	/* cfg: switch to it (open/close service sockets), report to done */
	CMD_DRAIN,	/* stop taking new work; report when idle or at the deadline */
	CMD_STOP,	/* every worker has drained: leave the loop */
	CMD_PACKET,	/* a datagram another worker received for this one (xdp backend) */
};

/*
 * A reload's rendezvous: every worker reports here once it has applied (or failed
 * to apply) its CMD_NEW_CFG, and the main thread waits for all of them. Shared by
 * the main thread and the workers; everything in it is under `lock`.
 */
struct cmd_done {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending; /* workers yet to report */
	unsigned refs;	  /* holders: the main thread and each command not yet freed */
	int err;	  /* the first failure reported, a negative errno; 0: none */
	char why[256];	  /* what failed, for the reply and the log */
	char notes[1024]; /* what worker 0 changed beyond the config, one line each */
};

/* cmd_done_new returns a rendezvous for `num` workers, held once by the caller, or NULL. */
struct cmd_done *cmd_done_new(unsigned num);
/* cmd_done_get takes one more reference (for a command), cmd_done_put drops one (NULL ok). */
struct cmd_done *cmd_done_get(struct cmd_done *d);
void cmd_done_put(struct cmd_done *d);
/* cmd_done_note adds the line `note` to what the reload says (truncated when full);
 * cmd_done_notes copies the lines noted so far to `out`. */
void cmd_done_note(struct cmd_done *d, const char *note);
void cmd_done_notes(struct cmd_done *d, char *out, size_t out_len);
/* cmd_done_report is a worker's report: 0, or a negative errno with `why`. */
void cmd_done_report(struct cmd_done *d, int err, const char *why);
/*
 * cmd_done_wait waits up to `timeout_ms` for every report. Returns 0, the first
 * failure (with `why` copied into `out_why`), or -ETIMEDOUT.
 */
int cmd_done_wait(struct cmd_done *d, unsigned timeout_ms, char *out_why, size_t why_len);

struct cmd {
	enum cmd_type type;
	struct app *app;     /* holds a reference for the worker */
	struct cfg_ref *cfg; /* holds a reference for the worker */
	/* CMD_NEW_CFG: the strike registers (owned by the main thread; NULL: none yet)
	 * and, when `since_ms` is set, the unix ms a register that is new here started
	 * at (what predates it cannot be vouched for); `done` holds a reference */
	struct replay *replay, *sealed_replay;
	uint64_t since_ms;
	struct cmd_done *done;
	uint16_t port;
	struct r2p2_addr src; /* CMD_PACKET */
	size_t len;	      /* CMD_PACKET: bytes in `data` */
	struct cmd *next;
	uint8_t data[]; /* CMD_PACKET */
};

/* Per-worker counters published for `r2p2ctl status` (copied under snap_lock). */
/*
 * Latency of the app calls to one service: bucket i counts calls that took at most
 * 2^(i+3) us (8 us, 16 us, ... 2.1 s), the last one every call over that.
 */
#define CALL_LAT_BUCKETS 20

struct call_svc_stats {
	uint64_t ok, failed; /* app calls as the app saw them end */
	uint64_t lat[CALL_LAT_BUCKETS];
	uint64_t lat_sum_us;
};

struct worker_snap {
	struct eng_stats eng;
	uint64_t apps;
	uint64_t calls_inflight;
	uint64_t requests_executing;
	uint64_t tx_fallback; /* sends done with a direct syscall (tx pool empty) */
	uint64_t xsk_rx, xsk_rx_bad, xsk_tx, xsk_tx_fallback; /* xdp backend */
	uint64_t app_errors;				      /* ABI violations seen from apps */
	uint64_t app_ok, app_failed; /* app calls as their apps saw them end (after the mode) */
	uint64_t calls_queued;	     /* app calls waiting for their service's max_inflight */
	uint64_t calls_waited;	     /* app calls that had to wait, since the start */
	uint64_t queue_full;	     /* app calls refused (-ENOBUFS): the wait queue was full */
	uint64_t cq_overflow_drops;
	struct tls_stats tls_server;  /* summed over the worker's tls services */
	struct tls_stats tls_client;  /* summed over the worker's tls clients */
	struct sealed_stats sealed;   /* summed over the worker's sealed services */
	uint64_t sealed_assocs;	      /* client: associations held */
	uint64_t sealed_rebootstraps; /* client: re-bootstraps after a server's refusal */
	struct {
		char service[CFG_NAME_MAX];
		uint32_t key_id;    /* STEK key id the token is sealed under */
		uint64_t expiry_ms; /* unix ms */
	} assoc[8];		    /* client: the associations held (first 8) */
	unsigned num_assoc;
	struct {
		uint16_t port;
		uint64_t requests;
		uint64_t dropped_no_app;
		uint64_t dropped_wrong_mode; /* plaintext to a tls service or the reverse */
		uint64_t dropped_expired;    /* the caller's time had run out (extension block) */
		uint64_t dropped_bad_ext;    /* a malformed extension block */
	} svc[CFG_MAX_SERVICES];
	unsigned num_svc;
	struct {
		char name[CFG_NAME_MAX];
		struct call_svc_stats st;
	} called[CFG_MAX_SERVICES]; /* the services this worker called since the start */
	unsigned num_called;
};

struct worker;

struct stek_set;
struct replay;

/*
 * worker_new creates worker `id` bound to `cfg` (sockets opened now, so errors
 * surface early). `stek` (a reference is taken) and `replay` (shared by all
 * workers, owned by the caller) serve tls services; both may be NULL.
 */
struct worker *worker_new(unsigned id, struct cfg_ref *cfg, struct stek_set *stek,
			  struct replay *replay, struct replay *sealed_replay, int drained_efd,
			  char *err, size_t err_len);

/*
 * port_probe binds `port` on the listen address once without SO_REUSEPORT, so
 * that a port held by another process is an error instead of shared traffic.
 * Returns 0 or -errno with a message in `err`.
 */
int port_probe(const struct cfg *c, uint16_t port, char *err, size_t err_len);
int worker_start(struct worker *w);
void worker_post(struct worker *w, struct cmd *c); /* takes ownership of `c` */
void worker_join(struct worker *w);

struct xsk_port;
/*
 * worker_use_xdp gives the worker its AF_XDP sockets (one per rx queue of
 * `ifname`) before it starts; service sockets then receive and send through them
 * (the kernel's UDP sockets stay as the fallback). Returns 0 or -1 with `err`.
 */
int worker_use_xdp(struct worker *w, struct xsk_port **ports, unsigned n, const char *ifname,
		   struct worker **all, unsigned num_workers, char *err, size_t err_len);
void worker_free(struct worker *w);
void worker_snapshot(struct worker *w, struct worker_snap *out);

#endif /* R2P2D_WORKER_H */
