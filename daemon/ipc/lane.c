// SPDX-License-Identifier: MIT
/*
 * The daemon's side of the shared-memory rings (include/r2p2/shm.h).
 *
 * Nothing in the shared mapping is trusted: geometry comes from the daemon's
 * own header copy, every SQE is copied once and checked on the copy, the
 * app-written indexes (sq_tail, cq_head) are range-checked against the
 * daemon's private counters, and CQ arena space is computed from private
 * per-slot end positions, never from anything the app wrote.
 */
#include "lane.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <unistd.h>

#define SHM_MAX_ENTRIES 65536u
#define SHM_MAX_ARENA (1u << 30)

/* A completion that did not fit the CQ; kept in order until lane_flush. */
struct ovf_entry {
	STAILQ_ENTRY(ovf_entry) link;
	uint64_t user_data;
	int32_t status;
	uint32_t service_id;
	uint32_t aux;
	uint32_t len;
	uint8_t op;
	uint8_t data[];
};

struct lane_overflow {
	STAILQ_HEAD(, ovf_entry) q;
};

static bool entries_ok(uint32_t n)
{
	return n >= 2 && n <= SHM_MAX_ENTRIES && (n & (n - 1)) == 0;
}

int shm_create(const struct shm_params *p, int *out_fd, void **out_map, size_t *out_size)
{
	struct r2p2_shm_hdr h = {0};
	void *map = MAP_FAILED;
	int fd = -1, err;

	if (!p || p->num_lanes < 1 || p->num_lanes > R2P2_MAX_LANES || !entries_ok(p->sq_entries) ||
	    !entries_ok(p->cq_entries) || p->max_msg_len < 1 || p->arena_size < p->max_msg_len ||
	    p->arena_size > SHM_MAX_ARENA)
		return -EINVAL;

	h.magic = R2P2_SHM_MAGIC;
	h.version = R2P2_SHM_VERSION;
	h.num_lanes = p->num_lanes;
	h.sq_entries = p->sq_entries;
	h.cq_entries = p->cq_entries;
	h.arena_size = p->arena_size;
	h.max_msg_len = p->max_msg_len;
	h.lane_offset = r2p2_align64(sizeof(h));
	h.lane_stride = r2p2_lane_size(&h);
	h.total_size = h.lane_offset + h.num_lanes * h.lane_stride;

	fd = memfd_create("r2p2-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)h.total_size) < 0)
		goto fail;
	/* The size is fixed for good: the app cannot shrink the file under our
	 * mapping (SIGBUS in the worker) nor grow it into a memory sink. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	map = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto fail;
	memcpy(map, &h, sizeof(h));

	*out_fd = fd;
	*out_map = map;
	*out_size = h.total_size;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

int lane_init(struct lane *l, void *map, const struct r2p2_shm_hdr *hdr, unsigned idx, int sq_efd,
	      int cq_efd, size_t ovf_max)
{
	uint8_t *base;

	memset(l, 0, sizeof(*l));
	l->sq_efd = -1;
	l->cq_efd = -1;
	if (!map || !hdr || idx >= hdr->num_lanes || !entries_ok(hdr->sq_entries) ||
	    !entries_ok(hdr->cq_entries) || hdr->arena_size < hdr->max_msg_len ||
	    hdr->lane_stride < r2p2_lane_size(hdr))
		return -EINVAL;

	base = (uint8_t *)map + hdr->lane_offset + (uint64_t)idx * hdr->lane_stride;
	l->ctrl = (struct r2p2_lane_ctrl *)base;
	l->sq = (struct r2p2_sqe *)(base + r2p2_lane_sq_off());
	l->cq = (struct r2p2_cqe *)(base + r2p2_lane_cq_off(hdr));
	l->sq_arena = base + r2p2_lane_sq_arena_off(hdr);
	l->cq_arena = base + r2p2_lane_cq_arena_off(hdr);
	l->sq_entries = hdr->sq_entries;
	l->cq_entries = hdr->cq_entries;
	l->arena_size = hdr->arena_size;
	l->max_msg_len = hdr->max_msg_len;
	l->ovf_max = ovf_max;
	l->sq_efd = sq_efd;
	l->cq_efd = cq_efd;

	/* Each resource is usable (the list initialised) as soon as it exists, so
	 * lane_cleanup can unwind from any failure below. */
	l->cq_end = calloc(l->cq_entries, sizeof(*l->cq_end));
	if (!l->cq_end)
		goto out;
	l->ovf = malloc(sizeof(*l->ovf));
	if (!l->ovf)
		goto out;
	STAILQ_INIT(&l->ovf->q);
	return 0;
out:
	lane_cleanup(l);
	return -ENOMEM;
}

void lane_cleanup(struct lane *l)
{
	struct ovf_entry *e;

	if (l->ovf) {
		while ((e = STAILQ_FIRST(&l->ovf->q))) {
			STAILQ_REMOVE_HEAD(&l->ovf->q, link);
			free(e);
		}
		free(l->ovf);
		l->ovf = NULL;
	}
	l->ovf_count = 0;
	free(l->cq_end);
	l->cq_end = NULL;
}

/* lane_fail records an ABI violation: the worker detaches a broken app. */
static int lane_fail(struct lane *l)
{
	l->broken = true;
	l->stat_bad++;
	return -EPROTO;
}

int lane_next_sqe(struct lane *l, struct r2p2_sqe *out, const uint8_t **out_payload)
{
	uint32_t tail, pending;

	*out_payload = NULL;
	if (l->broken)
		return -EPROTO;
	tail = r2p2_load_acquire(&l->ctrl->sq_tail);
	pending = tail - l->sq_head;
	if (pending == 0)
		return 0;
	if (pending > l->sq_entries)
		return lane_fail(l);

	/* One copy; every check below is on the copy, so the app cannot change a
	 * field between its check and its use. */
	memcpy(out, &l->sq[l->sq_head & (l->sq_entries - 1)], sizeof(*out));
	if ((uint64_t)out->off + out->len > l->arena_size)
		return lane_fail(l);
	l->sq_head++;

	switch (out->op) {
	case R2P2_SQ_CALL:
		if ((out->flags & ~R2P2_SQE_NOT_REPLAY_SAFE) || out->service[0] == '\0' ||
		    !memchr(out->service, '\0', sizeof(out->service)))
			goto invalid;
		break;
	case R2P2_SQ_RESPOND:
		if ((out->flags & ~R2P2_SQE_ERROR) || ((out->flags & R2P2_SQE_ERROR) && !out->code))
			goto invalid;
		break;
	case R2P2_SQ_CANCEL:
		if (out->flags || out->len)
			goto invalid;
		break;
	default:
		goto invalid;
	}
	if (out->len > l->max_msg_len)
		goto invalid;
	*out_payload = l->sq_arena + out->off;
	l->stat_sqes++;
	return 1;
invalid:
	/* Well-formed enough to skip: the caller may fail user_data with an error. */
	l->stat_bad++;
	return -EINVAL;
}

void lane_consume(struct lane *l)
{
	if (!l->broken)
		r2p2_store_release(&l->ctrl->sq_head, l->sq_head);
}

/*
 * cq_write places one completion in the CQ and its payload in the CQ arena.
 * Returns 0, -ENOSPC when the CQ or the arena is full, or -EPROTO when the
 * app's cq_head is impossible.
 *
 * Arena positions are free-running u64 byte counts; an entry never wraps, it
 * skips to the arena start instead. The bytes still in use start where the
 * last consumed entry (cq_head - 1) ended; that slot cannot have been reused
 * while the CQ is not full, and a full CQ needs no arena space.
 */
static int cq_write(struct lane *l, uint8_t op, int32_t status, uint64_t user_data,
		    uint32_t service_id, uint32_t aux, const void *payload, uint32_t len)
{
	const uint32_t mask = l->cq_entries - 1;
	uint32_t head = r2p2_load_acquire(&l->ctrl->cq_head);
	uint32_t used = l->cq_tail - head;
	uint64_t begin, start, wpos;
	struct r2p2_cqe c = {0};

	if (used > l->cq_entries)
		return lane_fail(l);
	if (used == l->cq_entries)
		return -ENOSPC;
	if (used == 0) {
		/* Everything consumed: restart at the arena start, so an empty
		 * arena always takes a message of max_msg_len. */
		l->cq_pos += (l->arena_size - l->cq_pos % l->arena_size) % l->arena_size;
		l->cq_end[(l->cq_tail - 1) & mask] = l->cq_pos;
	}
	begin = l->cq_end[(head - 1) & mask];
	if (l->cq_pos - begin > l->arena_size)
		return lane_fail(l); /* cq_head moved backwards */

	start = l->cq_pos;
	wpos = start % l->arena_size;
	if (len && wpos + len > l->arena_size) {
		start += l->arena_size - wpos;
		wpos = 0;
	}
	if (start + len - begin > l->arena_size)
		return -ENOSPC;

	if (len)
		memcpy(l->cq_arena + wpos, payload, len);
	c.op = op;
	c.status = status;
	c.len = len;
	c.off = (uint32_t)wpos;
	c.user_data = user_data;
	c.service_id = service_id;
	c.aux = aux;
	memcpy(&l->cq[l->cq_tail & mask], &c, sizeof(c));
	l->cq_pos = start + len;
	l->cq_end[l->cq_tail & mask] = l->cq_pos;
	r2p2_store_release(&l->ctrl->cq_tail, ++l->cq_tail);
	l->dirty = true;
	l->stat_cqes++;
	return 0;
}

int lane_post(struct lane *l, uint8_t op, int32_t status, uint64_t user_data, uint32_t service_id,
	      const void *payload, size_t len)
{
	return lane_post_aux(l, op, status, user_data, service_id, 0, payload, len);
}

int lane_post_aux(struct lane *l, uint8_t op, int32_t status, uint64_t user_data,
		  uint32_t service_id, uint32_t aux, const void *payload, size_t len)
{
	struct ovf_entry *e;
	int err;

	if (len > l->max_msg_len)
		return -EMSGSIZE;
	if (l->broken)
		return -EPROTO;
	if (l->ovf_count) {
		lane_flush(l);
		if (l->broken)
			return -EPROTO;
	}
	if (!l->ovf_count) {
		/* Completions keep their order: only bypass an empty queue. */
		err = cq_write(l, op, status, user_data, service_id, aux, payload, (uint32_t)len);
		if (err != -ENOSPC)
			return err;
	}
	if (l->ovf_count >= l->ovf_max) {
		l->stat_ovf_drops++;
		return -ENOBUFS;
	}
	e = malloc(sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	e->op = op;
	e->status = status;
	e->user_data = user_data;
	e->service_id = service_id;
	e->aux = aux;
	e->len = (uint32_t)len;
	if (len)
		memcpy(e->data, payload, len);
	STAILQ_INSERT_TAIL(&l->ovf->q, e, link);
	l->ovf_count++;

	/* The app may have freed space after our check but before it could see
	 * cq_overflow (and so it will not ring): re-check after the fence. */
	r2p2_store_release(&l->ctrl->cq_overflow, 1);
	r2p2_smp_mb();
	lane_flush(l);
	return 0;
}

void lane_flush(struct lane *l)
{
	struct ovf_entry *e;

	if (!l->ovf_count || l->broken)
		return;
	while ((e = STAILQ_FIRST(&l->ovf->q))) {
		if (cq_write(l, e->op, e->status, e->user_data, e->service_id, e->aux, e->data,
			     e->len))
			return;
		STAILQ_REMOVE_HEAD(&l->ovf->q, link);
		free(e);
		l->ovf_count--;
	}
	r2p2_store_release(&l->ctrl->cq_overflow, 0);
}

int lane_notify(struct lane *l)
{
	if (!l->dirty)
		return 0;
	l->dirty = false;
	/* Order the cq_tail stores before reading the app's need_wakeup; the app
	 * fences between setting it and re-checking cq_tail. */
	r2p2_smp_mb();
	if (!r2p2_load_acquire(&l->ctrl->cq_need_wakeup))
		return 0;
	/* EAGAIN: the counter is saturated, so the app has a wakeup pending anyway. */
	if (eventfd_write(l->cq_efd, 1) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

bool lane_sq_pending(const struct lane *l)
{
	return r2p2_load_acquire(&l->ctrl->sq_tail) != l->sq_head;
}

bool lane_arm_wakeup(struct lane *l)
{
	r2p2_store_release(&l->ctrl->sq_need_wakeup, 1);
	r2p2_smp_mb();
	return lane_sq_pending(l);
}

void lane_disarm_wakeup(struct lane *l)
{
	r2p2_store_release(&l->ctrl->sq_need_wakeup, 0);
}
