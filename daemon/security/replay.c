// SPDX-License-Identifier: MIT
/*
 * replay.c: the strike register. Two generations ("cur" and "old") of open-addressed
 * hash tables with linear probing. A slot is in use when its stamp equals its
 * table's epoch, so emptying a table on rotation is one increment, not a memset.
 *
 * Each table has room for all `max_entries` (the whole budget may land in one
 * window) at a load factor of at most 3/4. Keys are chosen by the client (its
 * ClientHello random, its nonce), so slots are picked with SipHash under a secret
 * drawn at replay_new: nobody can aim keys at one probe chain.
 *
 * Keys inserted with an owner (a sealed association) are also counted per owner, in
 * a count-min sketch per generation: OWNER_ROWS rows of OWNER_COLS counters, each
 * row under its own SipHash key. The estimate (the smallest of the owner's counters)
 * is never below the true count, so an owner is never let past its share; a
 * collision can only refuse early, and a refusal sends that request down the tls
 * path, not to an error. The share binds once the register is three quarters
 * full, so one busy client alone may use three quarters of it and never more, and
 * the others always keep a quarter.
 *
 * A refused request retried by other means (replay_insert_or_floor) must never be
 * accepted later. Its key goes in when the owner may still insert; otherwise the
 * owner's floor rises to the request's stamp, in a second sketch of the same shape
 * that keeps the largest stamp per counter: the owner's requests stamped up to it
 * are refused from then on. The floor is the owner's, so a client past its share
 * that retries costs the others neither room nor 0-RTT; the estimate (the smallest
 * counter) is never below the owner's true floor, and a collision can only refuse
 * early, down the tls path again.
 */
#include "boringssl.h"

#include "replay.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

#define OWNER_ROWS 2
#define OWNER_COLS 512

struct gen {
	uint8_t (*keys)[REPLAY_KEY_LEN];
	uint32_t *stamp; /* slot i is in use iff stamp[i] == epoch */
	uint32_t epoch;
	size_t num_entries;
	uint32_t owned[OWNER_ROWS][OWNER_COLS]; /* keys held per owner, as a sketch */
	uint64_t floor[OWNER_ROWS][OWNER_COLS]; /* largest floor stamp per counter */
};

struct replay {
	size_t max_entries;
	size_t num_slots; /* per generation */
	uint64_t window_ns;
	uint64_t cur_start; /* when `cur` began collecting */
	bool started;	    /* cur_start is set (by the first call) */
	uint64_t sip_key[2];
	uint64_t owner_key[2];
	size_t share; /* keys one owner may hold in both generations */
	struct gen gen[2];
	unsigned cur; /* index of the current generation; the other is the old one */
	struct replay_stats st;
	/* One register per server, shared by its workers: a replay may arrive from another
	 * address and land on another worker. Held for a lookup of a few cache lines. */
	pthread_mutex_t lock;
};

static void gen_clear(struct gen *g, size_t num_slots)
{
	if (++g->epoch == 0) {
		/* after 2^32 rotations a stale stamp could match again: really clear */
		memset(g->stamp, 0, num_slots * sizeof(*g->stamp));
		g->epoch = 1;
	}
	g->num_entries = 0;
	memset(g->owned, 0, sizeof(g->owned));
	memset(g->floor, 0, sizeof(g->floor));
}

struct replay *replay_new(size_t max_entries, uint64_t window_ns)
{
	struct replay *r;

	if (max_entries == 0 || max_entries > REPLAY_MAX_ENTRIES || window_ns == 0) {
		errno = EINVAL;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto nomem;
	r->max_entries = max_entries;
	r->num_slots = max_entries + max_entries / 3 + 1; /* load <= 3/4 */
	r->window_ns = window_ns;
	for (int i = 0; i < 2; i++) {
		r->gen[i].keys = calloc(r->num_slots, REPLAY_KEY_LEN);
		r->gen[i].stamp = calloc(r->num_slots, sizeof(uint32_t));
		r->gen[i].epoch = 1;
		if (!r->gen[i].keys || !r->gen[i].stamp)
			goto nomem;
	}
	if (RAND_bytes((uint8_t *)r->sip_key, sizeof(r->sip_key)) != 1 ||
	    RAND_bytes((uint8_t *)r->owner_key, sizeof(r->owner_key)) != 1)
		goto nomem;
	r->share = (max_entries + REPLAY_SHARE_DIV - 1) / REPLAY_SHARE_DIV;
	r->st.capacity = max_entries;
	/* adaptive: the holder is out within a few cache misses, so the other worker
	 * spins for it rather than sleeping in the kernel */
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&r->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return r;
nomem:
	replay_free(r);
	errno = ENOMEM;
	return NULL;
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	for (int i = 0; i < 2; i++) {
		free(r->gen[i].keys);
		free(r->gen[i].stamp);
	}
	if (r->st.capacity)
		pthread_mutex_destroy(&r->lock);
	free(r);
}

/* advance rotates the generations so that `cur` covers `now`. */
static void advance(struct replay *r, uint64_t now)
{
	if (!r->started) {
		r->started = true;
		r->cur_start = now;
		return;
	}
	if (now < r->cur_start || now - r->cur_start < r->window_ns)
		return;
	r->st.rotations++;
	if (now - r->cur_start >= 2 * r->window_ns) {
		/* idle for two windows: everything held has expired */
		gen_clear(&r->gen[0], r->num_slots);
		gen_clear(&r->gen[1], r->num_slots);
		r->cur_start = now;
		return;
	}
	/* cur becomes old; the old one (all keys over one window old) is dropped */
	r->cur ^= 1;
	gen_clear(&r->gen[r->cur], r->num_slots);
	r->cur_start += r->window_ns;
}

static size_t slot_of(const struct replay *r, const uint8_t *key)
{
	uint64_t h = SIPHASH_24(r->sip_key, key, REPLAY_KEY_LEN);

	/* multiply-shift maps h onto [0, num_slots) without a power-of-two table */
	return (size_t)(((unsigned __int128)h * r->num_slots) >> 64);
}

/*
 * gen_find returns true if `key` is in `g`; otherwise false with the empty slot
 * that ends its probe chain in `*out_slot` (where it would go).
 */
static bool gen_find(const struct replay *r, const struct gen *g, const uint8_t *key, size_t start,
		     size_t *out_slot)
{
	size_t i = start;

	/* terminates: the load factor stays under 3/4, so an empty slot exists */
	while (g->stamp[i] == g->epoch) {
		if (memcmp(g->keys[i], key, REPLAY_KEY_LEN) == 0)
			return true;
		if (++i == r->num_slots)
			i = 0;
	}
	if (out_slot)
		*out_slot = i;
	return false;
}

int replay_check(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint64_t now)
{
	size_t start;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	advance(r, now);
	start = slot_of(r, key);
	if (gen_find(r, &r->gen[0], key, start, NULL) ||
	    gen_find(r, &r->gen[1], key, start, NULL)) {
		r->st.hits++;
		ret = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/*
 * owner_cols computes the counters of `owner`, one per sketch row, from one SipHash
 * (its two halves index the two rows, so they are independent).
 */
static void owner_cols(const struct replay *r, const struct replay_owner *owner,
		       size_t cols[OWNER_ROWS])
{
	uint64_t h = SIPHASH_24(r->owner_key, owner->id, owner->len);

	_Static_assert(OWNER_ROWS == 2 && OWNER_COLS <= (1u << 16), "two 16-bit columns");
	cols[0] = (size_t)(h & 0xFFFF) % OWNER_COLS;
	cols[1] = (size_t)(h >> 32 & 0xFFFF) % OWNER_COLS;
}

/* owner_over_share says whether the owner at `cols` already holds its share of both generations. */
static bool owner_over_share(const struct replay *r, const size_t cols[OWNER_ROWS])
{
	uint64_t least = UINT64_MAX;

	for (int row = 0; row < OWNER_ROWS; row++) {
		size_t col = cols[row];
		uint64_t held = (uint64_t)r->gen[0].owned[row][col] + r->gen[1].owned[row][col];

		if (held < least)
			least = held;
	}
	return least >= r->share;
}

/* owner_floor is the owner's floor at `cols`, over both generations (0: none). */
static uint64_t owner_floor(const struct replay *r, const size_t cols[OWNER_ROWS])
{
	uint64_t least = UINT64_MAX;

	for (int row = 0; row < OWNER_ROWS; row++) {
		size_t col = cols[row];
		uint64_t f0 = r->gen[0].floor[row][col], f1 = r->gen[1].floor[row][col];
		uint64_t f = f0 > f1 ? f0 : f1;

		if (f < least)
			least = f;
	}
	return least;
}

/* raise_owner_floor refuses the owner's stamps up to `stamp` for two windows at least. */
static void raise_owner_floor(struct replay *r, const size_t cols[OWNER_ROWS], uint64_t stamp)
{
	struct gen *cur = &r->gen[r->cur];

	for (int row = 0; row < OWNER_ROWS; row++)
		if (cur->floor[row][cols[row]] < stamp)
			cur->floor[row][cols[row]] = stamp;
	r->st.floor_raises++;
}

/*
 * insert_locked inserts `key`, on behalf of `owner` (whose counters `cols` are)
 * if not NULL; advance() must have run. A key already held is a replay (-EEXIST)
 * whatever else holds; then, given a `stamp`, one at or below the owner's floor
 * is refused (-ESTALE). 0, -EEXIST, -ESTALE, -ENOSPC or -EDQUOT.
 */
static int insert_locked(struct replay *r, const uint8_t key[REPLAY_KEY_LEN],
			 const struct replay_owner *owner, const size_t cols[OWNER_ROWS],
			 const uint64_t *stamp)
{
	struct gen *cur = &r->gen[r->cur], *old = &r->gen[r->cur ^ 1];
	size_t start, slot;

	start = slot_of(r, key);
	if (gen_find(r, old, key, start, NULL) || gen_find(r, cur, key, start, &slot)) {
		r->st.hits++;
		return -EEXIST;
	}
	if (stamp && *stamp <= owner_floor(r, cols)) {
		r->st.floor_rejects++;
		return -ESTALE;
	}
	if (cur->num_entries + old->num_entries >= r->max_entries) {
		r->st.full_rejects++;
		return -ENOSPC;
	}
	/* the share binds once the register is 3/4 full: alone, an owner may use 3/4 */
	if (owner && cur->num_entries + old->num_entries >= r->max_entries - r->max_entries / 4 &&
	    owner_over_share(r, cols)) {
		r->st.share_rejects++;
		return -EDQUOT;
	}
	memcpy(cur->keys[slot], key, REPLAY_KEY_LEN);
	cur->stamp[slot] = cur->epoch;
	cur->num_entries++;
	for (int row = 0; owner && row < OWNER_ROWS; row++)
		cur->owned[row][cols[row]]++;
	r->st.inserts++;
	return 0;
}

int replay_insert(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint64_t now)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	advance(r, now);
	ret = insert_locked(r, key, NULL, NULL, NULL);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int replay_insert_owned(struct replay *r, const uint8_t key[REPLAY_KEY_LEN],
			const struct replay_owner *owner, uint64_t stamp, uint64_t now)
{
	size_t cols[OWNER_ROWS];
	int ret;

	owner_cols(r, owner, cols);
	pthread_mutex_lock(&r->lock);
	advance(r, now);
	ret = insert_locked(r, key, owner, cols, &stamp);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int replay_insert_or_floor(struct replay *r, const uint8_t key[REPLAY_KEY_LEN],
			   const struct replay_owner *owner, uint64_t stamp, uint64_t now)
{
	size_t cols[OWNER_ROWS];
	int ret;

	owner_cols(r, owner, cols);
	pthread_mutex_lock(&r->lock);
	advance(r, now);
	ret = insert_locked(r, key, owner, cols, NULL);
	if (ret == -ENOSPC || ret == -EDQUOT) {
		raise_owner_floor(r, cols, stamp);
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void replay_stats(const struct replay *r, struct replay_stats *out)
{
	struct replay *m = (struct replay *)r; /* the lock is not part of the value */

	pthread_mutex_lock(&m->lock);
	*out = r->st;
	out->entries = r->gen[0].num_entries + r->gen[1].num_entries;
	pthread_mutex_unlock(&m->lock);
}
