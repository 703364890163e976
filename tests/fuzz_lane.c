// SPDX-License-Identifier: MIT
/*
 * fuzz_lane: libFuzzer harness over the daemon's side of the shared-memory rings
 * (daemon/lane.c: lane_next_sqe, lane_consume, lane_post, lane_flush, lane_notify,
 * lane_arm_wakeup, lane_disarm_wakeup) against a hostile app that the input plays.
 *
 * The region is an exact heap allocation laid out as shm_create lays out a memfd;
 * every byte outside the lane under test (the header, the other lanes) is poisoned,
 * so AddressSanitizer reports any daemon access outside its own lane or outside the
 * region. Byte 0 and 1 of the input choose the geometry (2..16 SQ and CQ entries,
 * arenas of 64..512 bytes, max_msg_len up to the arena, 1 or 2 lanes, overflow
 * queue of 0..3); then each operation is an opcode byte and its arguments
 * (missing bytes read as 0):
 *
 *   app:    0 submit  op/flags, len, off, service bytes: an SQE at the app's tail
 *           1 sq_tail = any 32-bit value        2 sq_tail += a signed byte
 *           3 consume every CQE up to cq_tail, honestly
 *           4 cq_head = any 32-bit value        5 scribble bytes anywhere in the lane
 *           6 cq_need_wakeup = bit 0
 *   daemon: 7 up to 8 lane_next_sqe, then lane_consume   8 lane_post of len bytes
 *           9 lane_flush   10 lane_notify   11 lane_arm_wakeup or lane_disarm_wakeup
 *
 * Invariants (abort on violation): the daemon never writes the app's indexes
 * (sq_tail, cq_head); an SQE it accepts has a known op, a payload inside the SQ
 * arena of at most max_msg_len bytes and, for CALL, a NUL-terminated service name;
 * a broken lane stays broken; lane_post says -EMSGSIZE exactly for oversize
 * payloads. While the app stays honest (no index set by hand, no scribble outside
 * the SQ side), every completion lane_post accepted arrives exactly once, in order,
 * inside the CQ arena and with its bytes intact when the app reads it.
 *
 * Seeds: tests/fuzz/fuzz_lane/, written by `R2P2_FUZZ_WRITE_SEEDS=DIR ./fuzz_lane`.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sanitizer/asan_interface.h>

#include <r2p2/shm.h>

#include "lane.h"

#define MODEL_MAX 64

enum {
	OP_SUBMIT,
	OP_SQ_TAIL_SET,
	OP_SQ_TAIL_ADD,
	OP_CQ_CONSUME,
	OP_CQ_HEAD_SET,
	OP_SCRIBBLE,
	OP_CQ_WAKEUP,
	OP_NEXT_SQE,
	OP_POST,
	OP_FLUSH,
	OP_NOTIFY,
	OP_ARM,
	OP_NUM
};

static struct {
	const uint8_t *in;
	size_t len, pos;
	struct r2p2_shm_hdr hdr;
	uint8_t *region, *lane_base;
	struct lane l;
	uint32_t app_sq_tail, app_cq_head;
	bool honest;	 /* the app has not touched the CQ side: the model holds */
	bool sq_hostile; /* the app broke the SQ side of the ABI */
	uint64_t next_seq;
	struct {
		uint64_t seq;
		uint32_t len;
	} model[MODEL_MAX]; /* completions posted, not yet read by the app */
	unsigned model_head, model_len;
	bool model_lost; /* more than MODEL_MAX outstanding: stop checking */
} F;

static int cq_efd = -1;

static uint8_t next(void)
{
	return F.pos < F.len ? F.in[F.pos++] : 0;
}

static uint32_t next32(void)
{
	uint32_t v = next();

	v = v << 8 | next();
	v = v << 8 | next();
	return v << 8 | next();
}

static uint8_t pattern(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 31 + i);
}

static struct r2p2_lane_ctrl *ctrl(void)
{
	return (struct r2p2_lane_ctrl *)F.lane_base;
}

/* A length or offset: mostly small and in range, sometimes any 32-bit value. */
static uint32_t pick_u32(uint8_t b)
{
	if (b >= 0xF8)
		return next32();
	return (uint32_t)b * F.hdr.arena_size / 0xF0;
}

static void app_submit(void)
{
	struct r2p2_sqe e = {0};
	uint8_t k = next();
	uint32_t slot = F.app_sq_tail & (F.hdr.sq_entries - 1);
	uint8_t *arena = F.lane_base + r2p2_lane_sq_arena_off(&F.hdr);
	size_t n;

	e.op = k & 3;
	e.flags = (k >> 2) & 3;
	e.policy = k >> 4;
	e.len = pick_u32(next());
	e.off = pick_u32(next());
	e.user_data = F.app_sq_tail;
	/* an honest app never overruns the ring nor points outside the arena */
	if (F.app_sq_tail - r2p2_load_acquire(&ctrl()->sq_head) >= F.hdr.sq_entries ||
	    (uint64_t)e.off + e.len > F.hdr.arena_size)
		F.sq_hostile = true;
	n = next() % (sizeof(e.service) + 1); /* a full field has no NUL */
	memset(e.service, 'a', n);
	if (n < sizeof(e.service))
		e.service[n] = '\0';
	for (uint64_t i = e.off; i < (uint64_t)e.off + e.len && i < F.hdr.arena_size; i++)
		arena[i] = pattern(e.user_data, i - e.off);
	memcpy((uint8_t *)F.lane_base + r2p2_lane_sq_off() + slot * sizeof(e), &e, sizeof(e));
	r2p2_store_release(&ctrl()->sq_tail, ++F.app_sq_tail);
}

static void app_consume(void)
{
	uint32_t tail = r2p2_load_acquire(&ctrl()->cq_tail);
	uint32_t mask = F.hdr.cq_entries - 1;
	const uint8_t *arena = F.lane_base + r2p2_lane_cq_arena_off(&F.hdr);
	const struct r2p2_cqe *cq = (const void *)(F.lane_base + r2p2_lane_cq_off(&F.hdr));

	if (!F.honest)
		return;
	if (tail - F.app_cq_head > F.hdr.cq_entries)
		abort(); /* more completions published than the ring holds */
	for (; F.app_cq_head != tail; F.app_cq_head++) {
		struct r2p2_cqe c = cq[F.app_cq_head & mask];

		if ((uint64_t)c.off + c.len > F.hdr.arena_size || c.len > F.hdr.max_msg_len)
			abort();
		if (F.model_lost)
			continue;
		if (!F.model_len)
			abort(); /* a completion nobody posted */
		if (c.user_data != F.model[F.model_head].seq || c.len != F.model[F.model_head].len)
			abort(); /* lost, duplicated or reordered */
		for (uint32_t i = 0; i < c.len; i++)
			if (arena[c.off + i] != pattern(c.user_data, i))
				abort(); /* overwritten before the app read it */
		F.model_head = (F.model_head + 1) % MODEL_MAX;
		F.model_len--;
	}
	r2p2_store_release(&ctrl()->cq_head, F.app_cq_head);
}

static void app_scribble(void)
{
	uint64_t sq_side_end = r2p2_lane_cq_off(&F.hdr);
	uint64_t sq_arena = r2p2_lane_sq_arena_off(&F.hdr);
	uint64_t off = ((uint32_t)next() << 8 | next()) % F.hdr.lane_stride;
	size_t n = next() % 16 + 1;

	if (off + n > F.hdr.lane_stride)
		n = F.hdr.lane_stride - off;
	/* Payload bytes are the app's own business; SQEs rewritten by hand may break
	 * the SQ side, and anything else (indexes, the CQ side) leaves the model behind. */
	if (!(off >= sq_arena && off + n <= sq_arena + F.hdr.arena_size)) {
		F.sq_hostile = true;
		if (!(off >= r2p2_lane_sq_off() && off + n <= sq_side_end))
			F.honest = false;
	}
	for (size_t i = 0; i < n; i++)
		F.lane_base[off + i] = next();
	F.app_sq_tail = r2p2_load_acquire(&ctrl()->sq_tail);
}

static void daemon_next_sqe(void)
{
	int rounds = next() % 8 + 1, got = 0;
	uint8_t copy[512];

	while (rounds--) {
		bool was_broken = F.l.broken;
		uint32_t head = F.l.sq_head;
		const uint8_t *payload = (const uint8_t *)1;
		struct r2p2_sqe e;
		int ret = lane_next_sqe(&F.l, &e, &payload);

		if (was_broken && ret != -EPROTO)
			abort(); /* a broken lane stays broken */
		if (ret == 0) {
			if (payload || F.l.sq_head != head)
				abort();
			break;
		}
		got++;
		if (ret == -EPROTO) {
			if (!F.l.broken || payload)
				abort();
			break;
		}
		if (ret == -EINVAL) {
			if (payload || F.l.sq_head != head + 1)
				abort(); /* a bad SQE is consumed, its payload not handed out */
			continue;
		}
		if (ret != 1 || F.l.sq_head != head + 1)
			abort();
		if (e.op != R2P2_SQ_CALL && e.op != R2P2_SQ_RESPOND && e.op != R2P2_SQ_CANCEL)
			abort();
		if (e.op == R2P2_SQ_CANCEL && (e.flags || e.len))
			abort(); /* a cancel carries nothing */
		if (e.len > F.hdr.max_msg_len || (uint64_t)e.off + e.len > F.hdr.arena_size ||
		    payload != F.l.sq_arena + e.off)
			abort();
		if (e.op == R2P2_SQ_CALL &&
		    ((e.flags & ~R2P2_SQE_NOT_REPLAY_SAFE) || !e.service[0] ||
		     !memchr(e.service, '\0', sizeof(e.service))))
			abort();
		if (e.op == R2P2_SQ_RESPOND && e.flags)
			abort();
		memcpy(copy, payload, e.len); /* what the worker does: ASan checks the range */
	}
	if (got)
		lane_consume(&F.l);
}

static void daemon_post(void)
{
	uint8_t k = next();
	uint32_t len =
	    k >= 0xF0 ? F.hdr.max_msg_len + (k & 0xF) : (uint32_t)k * F.hdr.max_msg_len / 0xEF;
	uint8_t *payload = malloc(len ? len : 1);
	uint64_t seq = F.next_seq++;
	bool was_broken = F.l.broken;
	int ret;

	if (!payload)
		abort();
	for (uint32_t i = 0; i < len; i++)
		payload[i] = pattern(seq, i);
	ret = lane_post(&F.l, (uint8_t)(k % 3 + 1), 0, seq, 7, payload, len);
	free(payload);
	if ((len > F.hdr.max_msg_len) != (ret == -EMSGSIZE))
		abort();
	if (ret == -EMSGSIZE)
		return;
	if (was_broken && ret != -EPROTO)
		abort();
	if (ret == 0) {
		if (F.model_len == MODEL_MAX) {
			F.model_lost = true;
			return;
		}
		F.model[(F.model_head + F.model_len) % MODEL_MAX].seq = seq;
		F.model[(F.model_head + F.model_len) % MODEL_MAX].len = len;
		F.model_len++;
	} else if (ret == -EPROTO) {
		if (!F.l.broken)
			abort();
	} else if (ret != -ENOBUFS) {
		abort();
	}
}

static bool setup(uint8_t g0, uint8_t g1)
{
	struct r2p2_shm_hdr *h = &F.hdr;
	unsigned idx;
	uint64_t lane_off;

	h->magic = R2P2_SHM_MAGIC;
	h->version = R2P2_SHM_VERSION;
	h->sq_entries = 2u << (g0 & 3);
	h->cq_entries = 2u << ((g0 >> 2) & 3);
	h->num_lanes = 1 + ((g0 >> 4) & 1);
	h->arena_size = 64u * (1 + (g1 & 7));
	h->max_msg_len = h->arena_size >> ((g1 >> 3) & 3);
	h->lane_offset = r2p2_align64(sizeof(*h));
	h->lane_stride = r2p2_lane_size(h);
	h->total_size = h->lane_offset + h->num_lanes * h->lane_stride;
	idx = (g0 >> 5) & 1 ? h->num_lanes - 1 : 0;

	F.region = aligned_alloc(64, h->total_size);
	if (!F.region)
		abort();
	memset(F.region, 0, h->total_size);
	memcpy(F.region, h, sizeof(*h));
	if (lane_init(&F.l, F.region, h, idx, -1, cq_efd, (g0 >> 6) & 3) != 0)
		abort();
	lane_off = h->lane_offset + idx * h->lane_stride;
	F.lane_base = F.region + lane_off;
	ASAN_POISON_MEMORY_REGION(F.region, lane_off);
	ASAN_POISON_MEMORY_REGION(F.lane_base + h->lane_stride,
				  h->total_size - lane_off - h->lane_stride);
	return true;
}

static void teardown(void)
{
	uint64_t v;

	lane_cleanup(&F.l);
	ASAN_UNPOISON_MEMORY_REGION(F.region, F.hdr.total_size);
	free(F.region);
	while (read(cq_efd, &v, sizeof(v)) == sizeof(v))
		;
}

/* ---- seeds ------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const uint8_t *b, size_t n)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "wb");
	if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
		perror(p);
		exit(2);
	}
}

static void write_seeds(const char *dir)
{
	/* clang-format off */
	/* 4 SQ, 4 CQ entries, one lane; arena 256, max 128: a CALL and a RESPOND */
	static const uint8_t call_respond[] = {
	    0x05, 0x0B,
	    OP_SUBMIT, R2P2_SQ_CALL, 40, 0, 8,
	    OP_SUBMIT, R2P2_SQ_RESPOND, 20, 120, 0,
	    OP_NEXT_SQE, 3,
	    OP_POST, 60, OP_POST, 0,
	    OP_CQ_WAKEUP, 1, OP_NOTIFY, OP_CQ_CONSUME,
	    OP_ARM, 1,
	    OP_SUBMIT, R2P2_SQ_CALL | 4, 10, 200, 48,
	    OP_NEXT_SQE, 1};
	/* 2 CQ entries, overflow queue of 3: posts overflow, then drain */
	static const uint8_t overflow[] = {
	    0xC0, 0x03,
	    OP_POST, 200, OP_POST, 200, OP_POST, 100, OP_POST, 10, OP_POST, 10, OP_POST, 0xF3,
	    OP_CQ_CONSUME, OP_FLUSH, OP_CQ_CONSUME, OP_FLUSH, OP_CQ_CONSUME};
	/* the app jumps its tail, writes bad SQEs and moves cq_head backwards */
	static const uint8_t hostile[] = {
	    0x31, 0x1F,
	    OP_SUBMIT, 3, 10, 0, 5,
	    OP_SUBMIT, R2P2_SQ_CALL, 0xF8, 0, 0, 1, 0, 0, 48,
	    OP_NEXT_SQE, 4,
	    OP_POST, 5,
	    OP_CQ_HEAD_SET, 0xFF, 0xFF, 0xFF, 0xF0,
	    OP_POST, 5,
	    OP_SQ_TAIL_ADD, 0x40,
	    OP_NEXT_SQE, 1};
	/* an SQE the app rewrites by hand (scribble) */
	static const uint8_t scribble[] = {
	    0x00, 0x00,
	    OP_SUBMIT, R2P2_SQ_RESPOND, 8, 8, 0,
	    OP_SCRIBBLE, 1, 0, 4, 2, 0xff, 0xff, 0xff,
	    OP_NEXT_SQE, 1,
	    OP_POST, 16,
	    OP_CQ_CONSUME};
	/* clang-format on */

	write_seed(dir, "call_respond", call_respond, sizeof(call_respond));
	write_seed(dir, "overflow", overflow, sizeof(overflow));
	write_seed(dir, "hostile", hostile, sizeof(hostile));
	write_seed(dir, "scribble", scribble, sizeof(scribble));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("R2P2_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	cq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (cq_efd < 0) {
		perror("eventfd");
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t g0, g1;

	memset(&F, 0, sizeof(F));
	F.in = data;
	F.len = size;
	F.honest = true;
	g0 = next();
	g1 = next();
	setup(g0, g1);

	while (F.pos < F.len) {
		uint8_t op = next() % OP_NUM;
		uint32_t sq_tail = ctrl()->sq_tail, cq_head = ctrl()->cq_head;
		int ret;

		switch (op) {
		case OP_SUBMIT:
			app_submit();
			break;
		case OP_SQ_TAIL_SET:
			F.sq_hostile = true;
			F.app_sq_tail = next32();
			r2p2_store_release(&ctrl()->sq_tail, F.app_sq_tail);
			break;
		case OP_SQ_TAIL_ADD:
			F.sq_hostile = true;
			F.app_sq_tail += (uint32_t)(int32_t)(int8_t)next();
			r2p2_store_release(&ctrl()->sq_tail, F.app_sq_tail);
			break;
		case OP_CQ_CONSUME:
			app_consume();
			break;
		case OP_CQ_HEAD_SET:
			F.app_cq_head = next32();
			F.honest = false;
			r2p2_store_release(&ctrl()->cq_head, F.app_cq_head);
			break;
		case OP_SCRIBBLE:
			app_scribble();
			break;
		case OP_CQ_WAKEUP:
			r2p2_store_release(&ctrl()->cq_need_wakeup, next() & 1);
			break;
		case OP_NEXT_SQE:
			daemon_next_sqe();
			break;
		case OP_POST:
			daemon_post();
			break;
		case OP_FLUSH:
			lane_flush(&F.l);
			break;
		case OP_NOTIFY:
			ret = lane_notify(&F.l);
			if (ret != 0)
				abort();
			break;
		case OP_ARM:
			if (next() & 1)
				lane_arm_wakeup(&F.l);
			else
				lane_disarm_wakeup(&F.l);
			break;
		}
		/* The daemon never writes what the app owns. */
		if (op >= OP_NEXT_SQE && (ctrl()->sq_tail != sq_tail || ctrl()->cq_head != cq_head))
			abort();
		/* An app that kept to the ABI is never detached. */
		if (F.l.broken && F.honest && !F.sq_hostile)
			abort();
	}
	teardown();
	return 0;
}
