/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory ABI between r2p2d and libr2p2.
 *
 * At attach the daemon creates one memfd per app and passes it, with two
 * eventfds per lane, over the control socket (SCM_RIGHTS). The memfd holds a
 * header and one *lane* per daemon worker. A lane has:
 *   - a submission ring (SQ, app -> daemon) of struct r2p2_sqe,
 *   - a completion ring (CQ, daemon -> app) of struct r2p2_cqe,
 *   - two payload arenas: the app writes request/response bytes into the SQ
 *     arena, the daemon writes into the CQ arena. Entries point into their own
 *     direction's arena with (off, len).
 * Each ring index is written by exactly one side (see struct r2p2_lane_ctrl)
 * and always read/written with the acquire/release helpers below.
 *
 * Ownership of arena bytes: a producer reclaims the arena bytes of an entry once
 * the consumer's head has moved past it. The daemon copies every SQE and its
 * payload out before it advances sq_head; the app may keep a CQE's payload until
 * it advances cq_head.
 *
 * Doorbells: after publishing, a producer writes 1 to the consumer's eventfd
 * only when the consumer asked for it with its need_wakeup flag, so neither
 * side makes a syscall while the other is busy.
 *
 * The daemon trusts nothing in this memory: it copies each SQE once, checks it,
 * and treats an impossible index as a broken app that it detaches.
 */
#ifndef R2P2_SHM_H
#define R2P2_SHM_H

#include <r2p2/compat.h>

#include <stdint.h>

#define R2P2_SHM_MAGIC 0x50325252u /* "RR2P" little-endian */
#define R2P2_SHM_VERSION 2
#define R2P2_SERVICE_NAME_MAX 48 /* including the terminating NUL */
/* 1 + 2 * lanes fds must fit one SCM_RIGHTS message (SCM_MAX_FD 253). */
#define R2P2_MAX_LANES 126

/* Submission opcodes (app -> daemon). */
enum r2p2_sq_op {
	R2P2_SQ_CALL = 1,    /* call `service` with the payload; user_data = app's call id */
	R2P2_SQ_RESPOND = 2, /* answer the request user_data (a handle from R2P2_CQ_REQUEST) */
	R2P2_SQ_CANCEL = 3,  /* cancel the call user_data: it ends with -ECANCELED, unless
			      * its answer came first (one R2P2_CQ_RESPONSE either way) */
};

/* Completion opcodes (daemon -> app). */
enum r2p2_cq_op {
	R2P2_CQ_RESPONSE = 1, /* call user_data finished: status 0 + payload, or -errno;
			       * -EREMOTEIO: the server app's error, `aux` its code and the
			       * payload its message */
	R2P2_CQ_REQUEST = 2,  /* a request for a service this app registered; user_data = handle,
			       * `aux` the caller's time left in us (UINT32_MAX: not told) */
	R2P2_CQ_ERROR = 3,    /* a RESPOND for user_data failed with status (-errno) */
};

/* R2P2_SQ_CALL flags */
#define R2P2_SQE_NOT_REPLAY_SAFE 0x1 /* never send this request as 0-RTT early data */
/* R2P2_SQ_RESPOND flags */
#define R2P2_SQE_ERROR 0x2 /* an error, not a response: `code` (non-zero), payload the message */

struct r2p2_sqe {
	uint8_t op; /* enum r2p2_sq_op */
	uint8_t flags;
	uint16_t policy; /* R2P2_SQ_CALL: routing policy, 0 = the service's default */
	uint32_t len;	 /* payload bytes */
	uint32_t off;	 /* payload offset in the lane's SQ arena */
	union {
		uint32_t timeout_ms; /* R2P2_SQ_CALL: 0 = the service's default */
		uint32_t code;	     /* R2P2_SQ_RESPOND with R2P2_SQE_ERROR: the status code */
	};
	uint64_t user_data;
	char service[R2P2_SERVICE_NAME_MAX]; /* R2P2_SQ_CALL: NUL-terminated service name */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_sqe) == 72, "ABI");

struct r2p2_cqe {
	uint8_t op; /* enum r2p2_cq_op */
	uint8_t pad[3];
	int32_t status; /* 0 or -errno */
	uint32_t len;	/* payload bytes */
	uint32_t off;	/* payload offset in the lane's CQ arena */
	uint64_t user_data;
	uint32_t service_id; /* R2P2_CQ_REQUEST: id returned by registration */
	uint32_t aux;	     /* see enum r2p2_cq_op */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_cqe) == 32, "ABI");

/*
 * Ring indexes are free-running u32 counters; slot = index & (entries - 1).
 * Each field is on its own cache line to avoid false sharing.
 */
struct r2p2_lane_ctrl {
	uint32_t sq_tail; /* written by the app */
	uint8_t pad0[60];
	uint32_t sq_head;	 /* written by the daemon */
	uint32_t sq_need_wakeup; /* written by the daemon: 1 = ring sq doorbell after producing */
	uint32_t cq_overflow;	 /* written by the daemon: 1 = completions wait for CQ space;
				  * ring the sq doorbell after advancing cq_head */
	uint32_t worker_cpu;	 /* written by the daemon: 1 + the CPU the lane's worker is
				  * pinned to (config `cpus`), 0: not pinned */
	uint8_t pad1[48];
	uint32_t cq_tail; /* written by the daemon */
	uint8_t pad2[60];
	uint32_t cq_head;	 /* written by the app */
	uint32_t cq_need_wakeup; /* written by the app: 1 = ring cq doorbell after producing */
	uint8_t pad3[56];
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_lane_ctrl) == 256, "ABI");

/*
 * The first bytes of the memfd. Written once by the daemon before it passes the
 * fd; the app checks magic and version and every size. Lane i starts at
 * lane_offset + i * lane_stride and is laid out as:
 *   ctrl (256 bytes) | sq[sq_entries] | cq[cq_entries] | sq arena | cq arena
 * with every part aligned to 64 bytes.
 */
struct r2p2_shm_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t num_lanes;
	uint32_t sq_entries;  /* power of two */
	uint32_t cq_entries;  /* power of two */
	uint32_t arena_size;  /* bytes of each arena (both directions) */
	uint32_t max_msg_len; /* largest payload either side may post */
	uint32_t pad;
	uint64_t lane_offset;
	uint64_t lane_stride;
	uint64_t total_size;
};

static inline uint64_t r2p2_lane_sq_off(void)
{
	return sizeof(struct r2p2_lane_ctrl);
}
static inline uint64_t r2p2_align64(uint64_t x)
{
	return (x + 63) & ~(uint64_t)63;
}
static inline uint64_t r2p2_lane_cq_off(const struct r2p2_shm_hdr *h)
{
	return r2p2_align64(r2p2_lane_sq_off() + (uint64_t)h->sq_entries * sizeof(struct r2p2_sqe));
}
static inline uint64_t r2p2_lane_sq_arena_off(const struct r2p2_shm_hdr *h)
{
	return r2p2_align64(r2p2_lane_cq_off(h) +
			    (uint64_t)h->cq_entries * sizeof(struct r2p2_cqe));
}
static inline uint64_t r2p2_lane_cq_arena_off(const struct r2p2_shm_hdr *h)
{
	return r2p2_align64(r2p2_lane_sq_arena_off(h) + h->arena_size);
}
static inline uint64_t r2p2_lane_size(const struct r2p2_shm_hdr *h)
{
	return r2p2_align64(r2p2_lane_cq_arena_off(h) + h->arena_size);
}

/*
 * Acquire/release accessors for every shared index. A consumer loads the
 * producer's tail with acquire before reading entries; a producer stores its
 * tail with release after writing them. The full fence orders a need_wakeup
 * store before the re-check of the ring (the classic lost-wakeup race).
 */
static inline uint32_t r2p2_load_acquire(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void r2p2_store_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void r2p2_smp_mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- control socket messages (SOCK_SEQPACKET, one message per datagram) ---- */

#define R2P2_CTL_MAGIC 0x4C544352u /* "RCTL" */
#define R2P2_CTL_VERSION 1
#define R2P2_DEFAULT_SOCKET "/run/r2p2/r2p2d.sock"

enum r2p2_ctl_type {
	R2P2_CTL_ATTACH = 1,	/* app -> daemon; reply ATTACH_OK + fds or ERROR */
	R2P2_CTL_ATTACH_OK = 2, /* fds: memfd, then sq eventfd and cq eventfd of each lane */
	R2P2_CTL_REGISTER =
	    3, /* app -> daemon: name = service to serve; reply REGISTER_OK or ERROR */
	R2P2_CTL_REGISTER_OK = 4, /* value = service id used in R2P2_CQ_REQUEST */
	R2P2_CTL_STATUS = 5,	  /* r2p2ctl -> daemon; reply STATUS_OK with text (value
				   * R2P2_CTL_STATUS_JSON: the text is one JSON object) */
	R2P2_CTL_STATUS_OK = 6,
	R2P2_CTL_ERROR = 7,  /* value = errno, text = human-readable reason */
	R2P2_CTL_RELOAD = 8, /* r2p2ctl -> daemon, no text, value 0 (root or the daemon's
			      * user only): reload the config; reply RELOAD_OK with what
			      * changed, or ERROR with why not (the running config stays) */
	R2P2_CTL_RELOAD_OK = 9,
};

struct r2p2_ctl_msg {
	uint32_t magic;
	uint16_t version;
	uint16_t type; /* enum r2p2_ctl_type */
	int32_t value;
	uint32_t text_len; /* bytes of text following this struct (no NUL) */
	char name[R2P2_SERVICE_NAME_MAX];
	/* followed by text_len bytes */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_ctl_msg) == 64, "ABI");

#define R2P2_CTL_MAX_MSG 65536 /* largest control datagram, header + text */
#define R2P2_CTL_STATUS_JSON 1 /* R2P2_CTL_STATUS value: answer in JSON */

#endif /* R2P2_SHM_H */
