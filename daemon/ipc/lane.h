/* SPDX-License-Identifier: MIT */
/*
 * The daemon's side of the shared-memory rings (include/r2p2/shm.h): creating
 * an app's memfd, reading submissions without trusting them, and posting
 * completions with a bounded overflow queue so a slow app never blocks the
 * worker. A struct lane is owned by one worker thread.
 */
#ifndef R2P2D_LANE_H
#define R2P2D_LANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <r2p2/shm.h>

struct shm_params {
	uint32_t num_lanes;
	uint32_t sq_entries; /* power of two, 2..65536 */
	uint32_t cq_entries; /* power of two, 2..65536 */
	uint32_t arena_size; /* bytes per arena, >= max_msg_len */
	uint32_t max_msg_len;
};

/*
 * shm_create makes a sealed-size memfd laid out for `p`, maps it and writes the
 * header. Returns 0 and sets `*out_fd`, `*out_map`, `*out_size`, or -errno.
 */
int shm_create(const struct shm_params *p, int *out_fd, void **out_map, size_t *out_size);

struct lane_overflow; /* private */

struct lane {
	struct r2p2_lane_ctrl *ctrl;
	struct r2p2_sqe *sq;
	struct r2p2_cqe *cq;
	uint8_t *sq_arena;
	uint8_t *cq_arena;
	uint32_t sq_entries, cq_entries, arena_size, max_msg_len;
	uint32_t sq_head; /* daemon's private copy of what it consumed */
	uint32_t cq_tail; /* daemon's private copy of what it produced */
	uint64_t cq_pos;  /* arena write position (free-running) */
	uint64_t *cq_end; /* arena end position of each CQ slot (private) */
	struct lane_overflow *ovf;
	size_t ovf_count; /* completions waiting for CQ space */
	size_t ovf_max;
	bool dirty;  /* CQEs posted since the last lane_notify */
	bool broken; /* the app violated the ABI; detach it */
	int sq_efd;  /* app -> daemon doorbell */
	int cq_efd;  /* daemon -> app doorbell */
	uint64_t stat_sqes, stat_cqes, stat_bad, stat_ovf_drops;
};

/*
 * lane_init binds `l` to lane `idx` of the mapping `map` whose header is
 * `hdr` (the daemon's own copy, never re-read from shared memory). `ovf_max`
 * bounds the completions kept while the app's CQ is full. Returns 0 or -errno.
 */
int lane_init(struct lane *l, void *map, const struct r2p2_shm_hdr *hdr, unsigned idx, int sq_efd,
	      int cq_efd, size_t ovf_max);

/* lane_cleanup frees the overflow queue; it does not close the fds. */
void lane_cleanup(struct lane *l);

/*
 * lane_next_sqe copies the next submission into `*out` and checks it: a known
 * op, payload inside the SQ arena and not over max_msg_len, a NUL-terminated
 * service name for CALL. Returns 1 and sets `*out_payload` to the payload in
 * the arena (copy it before lane_consume), 0 when the ring is empty, or
 * -EPROTO when the app broke the ABI (then `l->broken` is set); an SQE that is
 * well-formed but has bad fields is returned with -EINVAL after being consumed.
 */
int lane_next_sqe(struct lane *l, struct r2p2_sqe *out, const uint8_t **out_payload);

/* lane_consume publishes that every SQE returned so far is consumed. */
void lane_consume(struct lane *l);

/*
 * lane_post queues one completion. The payload is copied into the CQ arena,
 * or into the overflow queue when the CQ or arena is full. Returns 0, or
 * -ENOBUFS when the overflow queue is full too (nothing queued), -EMSGSIZE.
 */
int lane_post(struct lane *l, uint8_t op, int32_t status, uint64_t user_data, uint32_t service_id,
	      const void *payload, size_t len);

/* lane_post_aux is lane_post with the completion's `aux` (struct r2p2_cqe; lane_post: 0). */
int lane_post_aux(struct lane *l, uint8_t op, int32_t status, uint64_t user_data,
		  uint32_t service_id, uint32_t aux, const void *payload, size_t len);

/* lane_flush moves overflowed completions into the CQ as space allows. */
void lane_flush(struct lane *l);

/*
 * lane_notify rings the app's doorbell if completions were posted since the
 * last call and the app asked for a wakeup. Returns 0 or -errno from write.
 */
int lane_notify(struct lane *l);

/*
 * lane_sq_pending returns true when the app has submitted entries the daemon
 * has not consumed (an acquire load of sq_tail). Owner thread only.
 */
bool lane_sq_pending(const struct lane *l);

/*
 * lane_arm_wakeup asks the app to ring the SQ doorbell on its next submission,
 * then re-checks the ring. Returns true when submissions are already waiting
 * (the caller must process them instead of sleeping).
 */
bool lane_arm_wakeup(struct lane *l);

/* lane_disarm_wakeup tells the app the daemon is polling (no doorbell needed). */
void lane_disarm_wakeup(struct lane *l);

#endif /* R2P2D_LANE_H */
