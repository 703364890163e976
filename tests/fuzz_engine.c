// SPDX-License-Identifier: MIT
/*
 * fuzz_engine: libFuzzer harness over the R2P2 parser and engine, both roles.
 *
 * Two engines, A (10.0.0.1:5555, which also has a router configured) and B
 * (10.0.0.2:8000), are joined by a simulated network: what they send is queued
 * and the input decides what happens to it. The input is a sequence of
 * operations, one opcode byte followed by its arguments (missing bytes read as 0):
 *
 *   0  raw      target, src, len_hi, len_lo, bytes...   any datagram into A or B
 *   1  packet   target, src, type_policy, flags, rid, p_order, size  a well-formed header
 *              (flags keeps F, L and the free bits 0x21; p_order >= 0xF0 becomes 0xFFFF)
 *   2  deliver  the oldest queued datagram
 *   3  drop     the oldest queued datagram
 *   4  dup      deliver the oldest queued datagram and keep it queued
 *   5  swap     the two oldest queued datagrams
 *   6  time     advance the clock by 2^(b % 36) ns and run both engines' timers
 *   7  call     who, size, retries, via: eng_call to the other engine (via bit 0:
 *              via_router, 1: socket 1, 2: flag 0x20, 3: flag 0x01, 4-7: policy)
 *   8  respond  who, handle index, size
 *   9  reject   who, handle index
 *  10  tick     both engines at the current time
 *  11  cancel   cookie
 *  12  rid      who, hi, lo: eng_set_next_rid
 *  13  flush    deliver everything queued (bounded)
 *  14  mode     bit 0: answer requests inside the callback; bit 1: call from completions
 *
 * The last input byte also configures the engines (it is read as an operation
 * too): bit 0: A allows free flag bits, bit 1: B does, bit 2: a hash seed,
 * bit 3: B uses the old ops.request instead of request_ex.
 *
 * Invariants checked (abort on violation): every accepted call completes
 * exactly once (at the latest in eng_free), never a completion for an unknown
 * cookie, delivered messages within max_msg_len, handles never 0, free flag
 * bits never sent, reported or accepted in a call by an engine that does not
 * allow them.
 *
 * Long run: see docs/PROTOCOL.md ("Fuzzing").
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <r2p2/wire.h>

#include "engine.h"

#define MAX_MSG 8000
#define QCAP 128
#define MAX_DGRAM (R2P2_HDR_LEN + R2P2_MAX_PAYLOAD + 64)
#define MAX_COOKIES 8192
#define NUM_HANDLES 8

struct dgram {
	uint8_t from, to; /* index in addrs[] */
	uint8_t sock;
	uint16_t len;
	uint8_t data[MAX_DGRAM];
};

struct peer {
	struct eng *e;
	uint64_t handles[NUM_HANDLES];
	unsigned next_handle;
};

static struct {
	const uint8_t *in;
	size_t len, pos;
	uint64_t now;
	struct peer p[2];
	struct dgram q[QCAP];
	unsigned qhead, qlen;
	uint8_t cookie_state[MAX_COOKIES]; /* 0 unused, 1 pending, 2 completed */
	uint64_t next_cookie;
	bool answer_inline, call_on_complete;
	unsigned reentered;
	bool allow_flags[2];
} F;

/* 0: A, 1: B, 2: the router, 3: an IPv6 stranger. */
static struct r2p2_addr addrs[4];

static const uint8_t payload_src[MAX_MSG + 1];

static uint8_t next(void)
{
	return F.pos < F.len ? F.in[F.pos++] : 0;
}

static int addr_index(const struct r2p2_addr *a)
{
	for (int i = 0; i < 4; i++)
		if (memcmp(&addrs[i], a, sizeof(*a)) == 0)
			return i;
	return 3;
}

static void on_send(void *ctx, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
		    int iovcnt)
{
	struct dgram *d;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (iovcnt < 1 || iov[0].iov_len != R2P2_HDR_LEN || len > R2P2_HDR_LEN + R2P2_MAX_PAYLOAD)
		abort();
	/* free bits only with allow_flags, except R2P2_F_EXT (plain mode's own) */
	if ((((const uint8_t *)iov[0].iov_base)[3] & R2P2_F_FREE_MASK & ~R2P2_F_EXT) &&
	    !F.allow_flags[(uintptr_t)ctx])
		abort();
	if (F.qlen == QCAP)
		return; /* the network is congested */
	d = &F.q[(F.qhead + F.qlen++) % QCAP];
	d->from = (uint8_t)(uintptr_t)ctx;
	d->to = (uint8_t)addr_index(dst);
	d->sock = (uint8_t)sock;
	d->len = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(d->data + d->len, iov[i].iov_base, iov[i].iov_len);
		d->len = (uint16_t)(d->len + iov[i].iov_len);
	}
}

static size_t pick_size(uint8_t b)
{
	/* clang-format off */
	static const size_t sizes[] = {
		0, 1, 4, 14, 15, 1463, 1464, 1465,
		2942, 2943, 3000, 4392, 4393, MAX_MSG - 1, MAX_MSG, MAX_MSG + 1,
	};
	/* clang-format on */
	return sizes[b % (sizeof(sizes) / sizeof(sizes[0]))];
}

static void start_call(unsigned who, uint8_t size, uint8_t retries, uint8_t via);

static void on_request_ex(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
			  unsigned policy, uint8_t flags, const uint8_t *payload, size_t len)
{
	struct peer *p = &F.p[(uintptr_t)ctx];
	(void)sock;
	(void)src;
	(void)policy;

	if (handle == 0 || len > MAX_MSG || (len && !payload))
		abort();
	if ((flags & ~R2P2_F_FREE_MASK) ||
	    ((flags & ~R2P2_F_EXT) && !F.allow_flags[(uintptr_t)ctx]))
		abort();
	p->handles[p->next_handle++ % NUM_HANDLES] = handle;
	if (F.answer_inline) {
		if (eng_respond(p->e, handle, payload, len, F.now) != 0)
			abort();
		/* A second answer to the same handle is refused. */
		if (eng_reject(p->e, handle, F.now) != -ENOENT)
			abort();
	}
}

static void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		       unsigned policy, const uint8_t *payload, size_t len)
{
	on_request_ex(ctx, sock, handle, src, policy, 0, payload, len);
}

static void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len)
{
	if (cookie >= MAX_COOKIES || F.cookie_state[cookie] != 1)
		abort();
	F.cookie_state[cookie] = 2;
	if (status == 0 && (len > MAX_MSG || (len && !payload)))
		abort();
	if (status != 0 && len != 0)
		abort();
	if (F.call_on_complete && F.reentered < 64) {
		F.reentered++;
		start_call((unsigned)(uintptr_t)ctx, (uint8_t)cookie, 0, 0);
	}
}

static const struct eng_ops ops = {
    .send = on_send, .request_ex = on_request_ex, .complete = on_complete};
static const struct eng_ops legacy_ops = {
    .send = on_send, .request = on_request, .complete = on_complete};

static void start_call(unsigned who, uint8_t size, uint8_t retries, uint8_t via)
{
	struct eng_call_args a = {0};
	uint64_t cookie = F.next_cookie;

	if (cookie >= MAX_COOKIES)
		return;
	a.sock = via & 2 ? 1 : 0;
	a.via_router = via & 1;
	a.dst = a.via_router ? addrs[2] : addrs[!who];
	a.policy = via >> 4;
	a.flags = (uint8_t)((via & 4 ? 0x20 : 0) | (via & 8 ? 0x01 : 0));
	a.len = pick_size(size);
	a.payload = payload_src;
	a.cookie = cookie;
	a.timeout_ns = 1000000ull << (retries >> 4 & 7);
	a.max_retries = retries & 3;
	F.cookie_state[cookie] = 1;
	int ret = eng_call(F.p[who].e, &a, F.now);
	if ((a.flags & ~R2P2_F_EXT) && !F.allow_flags[who] && ret != -EINVAL)
		abort();
	if (ret == 0) {
		F.next_cookie++;
		return;
	}
	F.cookie_state[cookie] = 0;
}

static void deliver(const struct dgram *d)
{
	/* What goes to the router reaches B, as if the router forwarded it. */
	int to = d->to == 2 ? 1 : d->to;
	if (to > 1)
		return;
	eng_input(F.p[to].e, d->sock, &addrs[d->from], d->data, d->len, F.now);
}

static void pop_deliver(bool keep)
{
	struct dgram d;
	if (!F.qlen)
		return;
	d = F.q[F.qhead]; /* copy: delivering may queue more */
	if (!keep) {
		F.qhead = (F.qhead + 1) % QCAP;
		F.qlen--;
	}
	deliver(&d);
}

static void inject(bool structured)
{
	uint8_t buf[MAX_DGRAM];
	uint8_t target = next(), src = next();
	size_t len;

	if (structured) {
		struct r2p2_hdr h = {.magic = R2P2_MAGIC, .header_size = R2P2_HDR_LEN};
		h.type_policy = next();
		h.flags = next() & 0xE1;
		h.rid = htons(next() % 4);
		uint8_t po = next();
		h.p_order = htons(po >= 0xF0 ? 0xFFFF : po % 8);
		len = pick_size(next());
		if (len > R2P2_MAX_PAYLOAD)
			len = R2P2_MAX_PAYLOAD;
		memcpy(buf, &h, sizeof(h));
		memset(buf + sizeof(h), 0x5A, len);
		len += sizeof(h);
	} else {
		len = ((size_t)next() << 8 | next()) % sizeof(buf);
		if (len > F.len - F.pos)
			len = F.len - F.pos;
		memcpy(buf, F.in + F.pos, len);
		F.pos += len;
	}
	eng_input(F.p[target & 1].e, (target >> 1) & 1, &addrs[src % 4], buf, len, F.now);
}

static void tick_both(void)
{
	eng_tick(F.p[0].e, F.now);
	eng_tick(F.p[1].e, F.now);
}

static void setup_addrs(void)
{
	memset(addrs, 0, sizeof(addrs));
	for (int i = 0; i < 3; i++) {
		addrs[i].family = AF_INET;
		addrs[i].addr[0] = 10;
		addrs[i].addr[3] = (uint8_t)(i + 1);
		addrs[i].port = htons((uint16_t)(5555 + i));
	}
	addrs[3].family = AF_INET6;
	addrs[3].addr[0] = 0xfd;
	addrs[3].addr[15] = 9;
	addrs[3].port = htons(7);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eng_config cfg;
	uint8_t conf = size ? data[size - 1] : 0;

	memset(&F, 0, sizeof(F));
	F.in = data;
	F.len = size;
	F.allow_flags[0] = conf & 1;
	F.allow_flags[1] = conf & 2;
	setup_addrs();

	eng_config_default(&cfg);
	cfg.max_msg_len = MAX_MSG;
	cfg.max_server_states = 6;
	cfg.max_client_calls = 6;
	cfg.reassembly_timeout_ns = 5000000;
	cfg.dedup_window_ns = 20000000;
	cfg.exec_timeout_ns = 50000000;
	cfg.has_router = true;
	cfg.router = addrs[2];
	cfg.hash_seed = conf & 4 ? 0x243f6a8885a308d3ull : 0;
	cfg.allow_flags = F.allow_flags[0];
	F.p[0].e = eng_new(&cfg, &ops, (void *)0);
	cfg.has_router = false;
	cfg.allow_flags = F.allow_flags[1];
	F.p[1].e = eng_new(&cfg, conf & 8 ? &legacy_ops : &ops, (void *)1);
	if (!F.p[0].e || !F.p[1].e)
		abort();

	while (F.pos < F.len) {
		uint8_t op = next() % 15, a, b, c;
		struct peer *p;
		switch (op) {
		case 0:
		case 1:
			inject(op == 1);
			break;
		case 2:
			pop_deliver(false);
			break;
		case 3:
			if (F.qlen) {
				F.qhead = (F.qhead + 1) % QCAP;
				F.qlen--;
			}
			break;
		case 4:
			pop_deliver(true);
			break;
		case 5:
			if (F.qlen >= 2) {
				struct dgram t = F.q[F.qhead];
				F.q[F.qhead] = F.q[(F.qhead + 1) % QCAP];
				F.q[(F.qhead + 1) % QCAP] = t;
			}
			break;
		case 6:
			F.now += 1ull << (next() % 36);
			tick_both();
			break;
		case 7:
			a = next();
			b = next();
			c = next();
			start_call(a & 1, b, c, next());
			break;
		case 8:
			p = &F.p[next() & 1];
			a = next();
			b = next();
			eng_respond(p->e, p->handles[a % NUM_HANDLES], payload_src, pick_size(b),
				    F.now);
			break;
		case 9:
			p = &F.p[next() & 1];
			eng_reject(p->e, p->handles[next() % NUM_HANDLES], F.now);
			break;
		case 10:
			tick_both();
			break;
		case 11:
			eng_cancel(F.p[0].e, next());
			eng_cancel(F.p[1].e, next());
			break;
		case 12:
			a = next();
			b = next();
			eng_set_next_rid(F.p[a & 1].e, (uint16_t)(b << 8 | next()));
			break;
		case 13:
			for (int i = 0; i < 512 && F.qlen; i++)
				pop_deliver(false);
			break;
		case 14:
			a = next();
			F.answer_inline = a & 1;
			F.call_on_complete = a & 2;
			break;
		}
		/* The deadline is never in the past after a tick. */
		for (int i = 0; i < 2; i++) {
			uint64_t d = eng_next_deadline(F.p[i].e);
			if (op == 6 || op == 10)
				if (d <= F.now)
					abort();
		}
	}

	F.call_on_complete = false;
	eng_free(F.p[0].e);
	eng_free(F.p[1].e);
	for (uint64_t c = 0; c < F.next_cookie; c++)
		if (F.cookie_state[c] != 2)
			abort(); /* a call never completed */
	return 0;
}
