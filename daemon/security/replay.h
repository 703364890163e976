/* SPDX-License-Identifier: MIT */
/*
 * replay: the 0-RTT anti-replay strike register (RFC 8446 sections 8.1 and 8.2).
 *
 * A memory-bounded set of 32-byte keys (ClientHello randoms in `tls` mode, a hash of
 * association id and nonce in `sealed` mode) remembered over a freshness window.
 * Two generations of hash tables rotate every `window_ns`: a key lives at least
 * `window_ns` and at most 2 * `window_ns` after its insertion, and never more than
 * `max_entries` keys are held in total. All memory is allocated by replay_new.
 *
 * Time comes in as `now` (any monotonic nanosecond clock; a smaller `now` than
 * before is treated as "no time passed"). One register per server, shared by all
 * its worker threads: every function may be called from any thread (an internal
 * mutex, held for one probe sequence).
 */
#ifndef R2P2D_REPLAY_H
#define R2P2D_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_KEY_LEN 32
#define REPLAY_MAX_ENTRIES (1u << 26) /* 64 Mi keys, about 4.5 GiB: a sanity limit */
#define REPLAY_SHARE_DIV 4 /* past 3/4 full, an owner holding 1/4 of max_entries is refused */

/* Who inserts a key, for the per-owner share (a sealed association id). */
struct replay_owner {
	const uint8_t *id;
	size_t len;
};

struct replay;

struct replay_stats {
	uint64_t entries;	/* keys held now (both generations) */
	uint64_t capacity;	/* max_entries */
	uint64_t inserts;	/* successful replay_insert calls */
	uint64_t hits;		/* replay_check == 1 plus replay_insert == -EEXIST */
	uint64_t full_rejects;	/* replay_insert == -ENOSPC: 0-RTT refused, fail closed */
	uint64_t share_rejects; /* replay_insert_owned == -EDQUOT: the owner holds its share */
	uint64_t floor_rejects; /* replay_insert_owned == -ESTALE: at or below the owner's floor */
	uint64_t floor_raises;	/* replay_insert_or_floor raised an owner's floor */
	uint64_t rotations;	/* generation changes (an idle gap of 2 windows counts one) */
};

/*
 * replay_new returns a register holding at most `max_entries` keys (1 ..
 * REPLAY_MAX_ENTRIES) for a freshness window of `window_ns` (> 0), or NULL with
 * errno EINVAL or ENOMEM. Memory: about 2 * 1.34 * 36 bytes per entry.
 */
struct replay *replay_new(size_t max_entries, uint64_t window_ns);

/* replay_free frees `r`; NULL is ignored. */
void replay_free(struct replay *r);

/*
 * replay_check returns 1 if `key` was inserted within the window (up to twice the
 * window ago), else 0. It inserts nothing; it may expire old keys as of `now`.
 */
int replay_check(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint64_t now);

/*
 * replay_insert remembers `key` as of `now`. Returns 0 when inserted, -EEXIST when
 * it is already held (a replay: refuse the early data), or -ENOSPC when the register
 * is full of unexpired keys: the caller must then refuse 0-RTT for this handshake
 * (fail closed) until time frees room.
 */
int replay_insert(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint64_t now);

/*
 * replay_insert_owned is replay_insert for a key whose caller stamped it `stamp`
 * (a sealed request's timestamp) on behalf of `owner`. Besides its results, it
 * returns -EDQUOT when the register is at least 3/4 full and the owner already
 * holds its share (max_entries / REPLAY_SHARE_DIV, rounded up): so one owner never
 * holds more than 3/4 of the register, and the others always keep a quarter;
 * -ESTALE when `stamp` is at or below the owner's floor, raised by
 * replay_insert_or_floor. Nothing is inserted then. A key already held is -EEXIST
 * before anything else: one look-up and one lock tell a replay from a new request.
 */
int replay_insert_owned(struct replay *r, const uint8_t key[REPLAY_KEY_LEN],
			const struct replay_owner *owner, uint64_t stamp, uint64_t now);

/*
 * replay_insert_or_floor makes sure `key`, stamped `stamp` by `owner`, is never
 * accepted by a later replay_insert_owned: it inserts the key as replay_insert_owned
 * would, or, when the register is full or the owner holds its share, raises the
 * owner's floor to `stamp` for two windows at least, so that every key the owner
 * stamped so far is refused. It takes no room from the other owners. Returns 0
 * (held or floored) or -EEXIST (it was already held: it was accepted before).
 */
int replay_insert_or_floor(struct replay *r, const uint8_t key[REPLAY_KEY_LEN],
			   const struct replay_owner *owner, uint64_t stamp, uint64_t now);

/* replay_stats copies the counters of `r` into `out`. */
void replay_stats(const struct replay *r, struct replay_stats *out);

#endif /* R2P2D_REPLAY_H */
