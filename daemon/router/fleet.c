// SPDX-License-Identifier: MIT
/*
 * The fleet: services and server slots as the maps show them to the XDP program, the
 * next-hop MAC of each server (the kernel's neighbour table, daemon/net/neigh.c), the
 * ageing of requests whose FEEDBACK never came, and servers taken out of rotation when
 * they stop answering and put back after down_ms.
 *
 * A reload never stops traffic: new slots are written before the services that name
 * them, and a service's rotation is one r2p2_rt_svcs update (readers see the old or the
 * new value). A slot removed from the config is retired, not reused, until the requests
 * it still holds come back or age out, so a late FEEDBACK lands on the right count.
 */
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "neigh.h"
#include "router.skel.h"

#define AGE_BATCH 4096 /* expired requests collected per pass before deleting */

static void fmt_ep(uint32_t addr, uint16_t port, char *buf, size_t len)
{
	const uint8_t *a = (const uint8_t *)&addr;

	snprintf(buf, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(port));
}

static bool slot_up(const struct rt_slot *sl)
{
	return sl->used && sl->resolved && !sl->down;
}

/* push_slot writes slot `i` to r2p2_rt_srvs. */
static void push_slot(struct router *r, uint32_t i)
{
	struct rt_slot *sl = &r->slots[i];
	struct r2p2_rt_server v = {0};

	if (sl->used || sl->retired) {
		v.addr = sl->addr; /* kept while retired: a late FEEDBACK must still match */
		v.port = sl->port;
		v.up = slot_up(sl);
		memcpy(v.mac, sl->mac, 6);
		memcpy(v.src_mac, r->ifmac, 6);
		v.ifindex = r->ifindex;
		v.svc = sl->svc;
	}
	if (bpf_map__update_elem(r->skel->maps.r2p2_rt_srvs, &i, sizeof(i), &v, sizeof(v),
				 BPF_ANY) != 0)
		log_err("updating server slot %u: %s", i, strerror(errno));
}

static int slot_find(const struct router *r, uint32_t svc, uint32_t addr, uint16_t port)
{
	for (int i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		const struct rt_slot *sl = &r->slots[i];

		if ((sl->used || sl->retired) && sl->svc == svc && sl->addr == addr &&
		    sl->port == port)
			return i;
	}
	return -1;
}

static int slot_alloc(struct router *r)
{
	for (int i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		if (!r->slots[i].used && !r->slots[i].retired) {
			memset(&r->slots[i], 0, sizeof(r->slots[i]));
			memset(&r->load[i], 0, sizeof(r->load[i]));
			return i;
		}
	}
	return -1;
}

static struct r2p2_rt_svc_key svc_key(const struct rt_service *s)
{
	struct r2p2_rt_svc_key k = {.addr = s->cfg.addr, .port = s->cfg.port};

	return k;
}

void fleet_push_service(struct router *r, uint32_t id)
{
	struct rt_service *s = &r->svcs[id];
	struct r2p2_rt_svc_key k = svc_key(s);
	struct r2p2_rt_svc v = {0}, old;

	if (bpf_map__lookup_elem(r->skel->maps.r2p2_rt_svcs, &k, sizeof(k), &old, sizeof(old), 0) ==
	    0)
		v.rr = old.rr;
	v.id = id;
	v.policy = s->cfg.policy;
	v.bound = s->cfg.bound;
	for (unsigned j = 0; j < s->cfg.num_servers; j++) {
		int i = slot_find(r, id, s->cfg.servers[j].addr, s->cfg.servers[j].port);

		if (i >= 0 && slot_up(&r->slots[i]))
			v.slots[v.num_servers++] = (uint32_t)i;
	}
	if (bpf_map__update_elem(r->skel->maps.r2p2_rt_svcs, &k, sizeof(k), &v, sizeof(v),
				 BPF_ANY) != 0)
		log_err("updating [router %s]: %s", s->cfg.name, strerror(errno));
}

/* service_for finds the running service of `c` (same address:port) or a free id. */
static struct rt_service *service_for(struct router *r, const struct rt_service_cfg *c)
{
	struct rt_service *free_one = NULL;

	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++) {
		struct rt_service *s = &r->svcs[id];

		if (s->used && s->cfg.addr == c->addr && s->cfg.port == c->port)
			return s;
		if (!s->used && !free_one)
			free_one = s;
	}
	if (free_one) {
		uint32_t id = (uint32_t)(free_one - r->svcs);

		memset(free_one, 0, sizeof(*free_one));
		free_one->id = id;
		free_one->fd = -1;
	}
	return free_one;
}

/* set_fifo gives service `s` a FIFO of `cap` entries, keeping what waits (up to `cap`). */
static int set_fifo(struct router *r, struct rt_service *s, unsigned cap)
{
	struct rt_waiting *f;
	unsigned keep;

	if (s->fifo && s->cap == cap)
		return 0;
	f = calloc(cap, sizeof(*f));
	if (!f)
		return -ENOMEM;
	keep = s->len < cap ? s->len : cap;
	for (unsigned i = 0; i < keep; i++)
		f[i] = s->fifo[(s->head + i) % s->cap];
	s->stats.dropped_full += s->len - keep;
	free(s->fifo);
	s->fifo = f;
	s->head = 0;
	s->len = keep;
	s->cap = cap;
	s->stats.capacity = cap;
	slow_publish(r, s);
	return 0;
}

static void close_service(struct router *r, struct rt_service *s)
{
	struct r2p2_rt_svc_key k = svc_key(s);
	struct r2p2_rt_fifo zero = {0};

	bpf_map__delete_elem(r->skel->maps.r2p2_rt_svcs, &k, sizeof(k), 0);
	bpf_map__update_elem(r->skel->maps.r2p2_rt_fifo, &s->id, sizeof(s->id), &zero, sizeof(zero),
			     BPF_ANY);
	if (s->fd >= 0)
		close(s->fd);
	free(s->fifo);
	s->fifo = NULL;
	s->fd = -1;
	s->used = false;
}

/* apply_servers gives every server of `s` a slot; marks them in `seen`. */
static int apply_servers(struct router *r, struct rt_service *s, bool seen[])
{
	for (unsigned j = 0; j < s->cfg.num_servers; j++) {
		const struct rt_server_cfg *c = &s->cfg.servers[j];
		int i = slot_find(r, s->id, c->addr, c->port);
		char ep[32];

		if (i < 0) {
			i = slot_alloc(r);
			if (i < 0) {
				log_err("[router %s]: more than %d servers in all", s->cfg.name,
					R2P2_RT_MAX_SERVERS);
				return -ENOSPC;
			}
			r->slots[i].svc = s->id;
			r->slots[i].addr = c->addr;
			r->slots[i].port = c->port;
			r->slots[i].up_since = now_ns();
			fmt_ep(c->addr, c->port, ep, sizeof(ep));
			log_info("[router %s]: server %s in slot %d", s->cfg.name, ep, i);
		}
		r->slots[i].used = true;
		r->slots[i].retired = false;
		seen[i] = true;
	}
	return 0;
}

int fleet_apply(struct router *r)
{
	bool svc_seen[R2P2_RT_MAX_SERVICES] = {0}, seen[R2P2_RT_MAX_SERVERS] = {0};
	int rc;

	for (unsigned k = 0; k < r->cfg.num_svcs; k++) {
		const struct rt_service_cfg *c = &r->cfg.svcs[k];
		struct rt_service *s = service_for(r, c);

		if (!s)
			return -ENOSPC; /* cannot happen: as many ids as sections */
		s->cfg = *c;
		s->used = true;
		svc_seen[s->id] = true;
		rc = set_fifo(r, s, c->queue);
		if (rc == 0 && s->fd < 0)
			rc = slow_open(r, s);
		if (rc == 0)
			rc = apply_servers(r, s, seen);
		if (rc < 0)
			return rc;
	}
	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		struct rt_slot *sl = &r->slots[i];

		if (sl->used && !seen[i]) {
			sl->used = false;
			sl->retired = true;
		}
	}
	fleet_resolve(r);
	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++)
		if (r->slots[i].used || r->slots[i].retired)
			push_slot(r, i);
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++) {
		if (svc_seen[id])
			fleet_push_service(r, id);
		else if (r->svcs[id].used)
			close_service(r, &r->svcs[id]);
	}
	return 0;
}

void fleet_resolve(struct router *r)
{
	bool changed[R2P2_RT_MAX_SERVICES] = {0};

	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		struct rt_slot *sl = &r->slots[i];
		struct r2p2_addr dst = {.family = AF_INET, .port = sl->port};
		uint8_t mac[6];
		int rc;

		if (!sl->used)
			continue;
		memcpy(dst.addr, &sl->addr, 4);
		rc = neigh_lookup(r->neigh, &dst, mac, NULL);
		if (rc == 0 && (!sl->resolved || memcmp(mac, sl->mac, 6) != 0)) {
			memcpy(sl->mac, mac, 6);
			sl->resolved = true;
		} else if (rc != 0 && rc != -EAGAIN && sl->resolved) {
			char ep[32];

			fmt_ep(sl->addr, sl->port, ep, sizeof(ep));
			log_warn("server %s: next hop unknown (%s): out of rotation", ep,
				 strerror(-rc));
			sl->resolved = false;
		} else {
			continue;
		}
		push_slot(r, i);
		changed[sl->svc] = true;
	}
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++)
		if (changed[id] && r->svcs[id].used)
			fleet_push_service(r, id);
}

#define SCAN_CHUNK 1024 /* entries read per bpf_map_lookup_batch */

/* scan_slow walks the map one key at a time: for kernels without batch lookups. */
static unsigned scan_slow(int fd, uint64_t now, uint64_t limit, struct r2p2_rt_req_key *out,
			  unsigned max)
{
	struct r2p2_rt_req_key key, next;
	struct r2p2_rt_req req;
	void *prev = NULL;
	unsigned n = 0;

	while (n < max && bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &req) == 0 && now > req.sent_ns &&
		    now - req.sent_ns >= limit)
			out[n++] = key;
	}
	return n;
}

/* scan_old collects up to `max` keys of the request map `fd` (r2p2_rt_reqs or
 * r2p2_rt_done) whose sent_ns is at least `limit` ns before `now`. */
static unsigned scan_old(int fd, uint64_t now, uint64_t limit, struct r2p2_rt_req_key *out,
			 unsigned max)
{
	static struct r2p2_rt_req_key keys[SCAN_CHUNK];
	static struct r2p2_rt_req vals[SCAN_CHUNK];
	uint64_t in = 0, next = 0; /* batch positions (a bucket index for hash maps) */
	unsigned n = 0;
	bool first = true;

	for (;;) {
		__u32 count = SCAN_CHUNK;
		int rc =
		    bpf_map_lookup_batch(fd, first ? NULL : &in, &next, keys, vals, &count, NULL);

		if (rc < 0 && rc != -ENOENT)
			return first ? scan_slow(fd, now, limit, out, max) : n;
		for (__u32 i = 0; i < count && i < SCAN_CHUNK && n < max; i++)
			if (now > vals[i].sent_ns && now - vals[i].sent_ns >= limit)
				out[n++] = keys[i];
		if (rc == -ENOENT || n >= max)
			return n;
		in = next;
		first = false;
	}
}

/*
 * age_requests deletes the requests older than timeout_ms and gives their counts back.
 * Whoever deletes an entry gives its count back: the program on FEEDBACK, or we. We take
 * it with one atomic lookup-and-delete, so that the count we give back is the one of the
 * entry we removed, even if the program replaced it in between (then it is fresh: it goes
 * back in, or, if a newer one took its place, its count is given back as well).
 */
static void age_requests(struct router *r, uint64_t now)
{
	static struct r2p2_rt_req_key expired[AGE_BATCH];
	int fd = bpf_map__fd(r->skel->maps.r2p2_rt_reqs);
	uint64_t limit = (uint64_t)r->cfg.timeout_ms * 1000000ull;
	unsigned n = scan_old(fd, now, limit, expired, AGE_BATCH);
	struct r2p2_rt_req req;

	for (unsigned k = 0; k < n; k++) {
		bool old;

		if (bpf_map_lookup_and_delete_elem(fd, &expired[k], &req) != 0 ||
		    req.server >= R2P2_RT_MAX_SERVERS)
			continue; /* FEEDBACK came first */
		old = now > req.sent_ns && now - req.sent_ns >= limit;
		if (!old && bpf_map_update_elem(fd, &expired[k], &req, BPF_NOEXIST) == 0)
			continue;
		__atomic_fetch_sub(&r->load[req.server].outstanding, 1, __ATOMIC_RELAXED);
		if (old) {
			__atomic_fetch_add(&r->load[req.server].aged, 1, __ATOMIC_RELAXED);
			r->slots[req.server].aged_now++;
			if (req.sent_ns > r->slots[req.server].aged_sent)
				r->slots[req.server].aged_sent = req.sent_ns;
		}
	}
}

/* age_done forgets answered requests older than sticky_ms (a batch per pass). */
static void age_done(struct router *r, uint64_t now)
{
	static struct r2p2_rt_req_key old[AGE_BATCH];
	int fd = bpf_map__fd(r->skel->maps.r2p2_rt_done);
	unsigned n = scan_old(fd, now, (uint64_t)r->cfg.sticky_ms * 1000000ull, old, AGE_BATCH);

	for (unsigned k = 0; k < n; k++)
		bpf_map_delete_elem(fd, &old[k]);
}

/*
 * judge takes slot `i` out when requests sent to it aged out in this pass and it has been
 * silent since: no FEEDBACK after the latest of them was sent, or none for timeout_ms. A
 * server that answered something later is slow or lost one FEEDBACK, not gone. The time
 * of the last FEEDBACK is the program's own (r2p2_rt_load.last_feedback_ns). Puts the
 * slot back after down_ms. Returns true when that changed.
 */
static bool judge(struct router *r, uint32_t i, uint64_t now)
{
	struct rt_slot *sl = &r->slots[i];
	uint64_t last = __atomic_load_n(&r->load[i].last_feedback_ns, __ATOMIC_RELAXED);
	uint64_t quiet = (uint64_t)r->cfg.timeout_ms * 1000000ull, sent = sl->aged_sent;
	unsigned aged = sl->aged_now;
	char ep[32];

	sl->aged_now = 0;
	sl->aged_sent = 0;
	if (last < sl->up_since)
		last = sl->up_since;
	fmt_ep(sl->addr, sl->port, ep, sizeof(ep));
	if (!sl->down && aged && (last < sent || (now > last && now - last > quiet))) {
		sl->down = true;
		sl->down_until = now + (uint64_t)r->cfg.down_ms * 1000000ull;
		log_warn("server %s: %u request(s) unanswered and no FEEDBACK since: taken out "
			 "for %u ms",
			 ep, aged, r->cfg.down_ms);
		return true;
	}
	if (sl->down && now >= sl->down_until) {
		sl->down = false;
		sl->up_since = now; /* a fresh chance */
		log_info("server %s: back in rotation", ep);
		return true;
	}
	return false;
}

void fleet_age(struct router *r, uint64_t now)
{
	bool changed[R2P2_RT_MAX_SERVICES] = {0};

	age_requests(r, now);
	age_done(r, now);
	for (uint32_t i = 0; i < R2P2_RT_MAX_SERVERS; i++) {
		struct rt_slot *sl = &r->slots[i];

		if (sl->retired &&
		    __atomic_load_n(&r->load[i].outstanding, __ATOMIC_RELAXED) <= 0) {
			sl->retired = false; /* drained: the slot is free again */
			push_slot(r, i);
			continue;
		}
		if (sl->used && judge(r, i, now)) {
			push_slot(r, i);
			changed[sl->svc] = true;
		}
	}
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++)
		if (changed[id] && r->svcs[id].used)
			fleet_push_service(r, id);
}

void fleet_close(struct router *r)
{
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++)
		if (r->svcs[id].used)
			close_service(r, &r->svcs[id]);
}
