// SPDX-License-Identifier: MIT
/* test_replay: the strike register remembers keys for one to two windows, never
 * holds more than its capacity, and fails closed (-ENOSPC) when full. */
#include "minitest.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

#define W 1000000000ull /* 1 s window */

/* key_of makes a distinct key from `n` (as a ClientHello random would be) */
static void key_of(uint64_t n, uint8_t key[REPLAY_KEY_LEN])
{
	memset(key, 0x5a, REPLAY_KEY_LEN);
	memcpy(key, &n, sizeof(n));
}

TEST(new_rejects_bad_arguments)
{
	errno = 0;
	CHECK(replay_new(0, W) == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK(replay_new(16, 0) == NULL);
	CHECK(replay_new((size_t)REPLAY_MAX_ENTRIES + 1, W) == NULL);
	replay_free(NULL);
}

TEST(insert_then_check)
{
	struct replay *r = replay_new(64, W);
	struct replay_stats st;
	uint8_t a[32], b[32], zero[32] = {0};

	key_of(1, a);
	key_of(2, b);
	CHECK_EQ(replay_check(r, a, 100), 0);
	CHECK_EQ(replay_insert(r, a, 100), 0);
	CHECK_EQ(replay_check(r, a, 101), 1);
	CHECK_EQ(replay_check(r, b, 101), 0);
	CHECK_EQ(replay_insert(r, a, 102), -EEXIST);
	CHECK_EQ(replay_insert(r, b, 103), 0);
	/* an all-zero key is a key like any other (slots are not marked by content) */
	CHECK_EQ(replay_check(r, zero, 104), 0);
	CHECK_EQ(replay_insert(r, zero, 104), 0);
	CHECK_EQ(replay_insert(r, zero, 105), -EEXIST);
	replay_stats(r, &st);
	CHECK_EQ(st.entries, 3);
	CHECK_EQ(st.capacity, 64);
	CHECK_EQ(st.inserts, 3);
	CHECK_EQ(st.hits, 3);
	CHECK_EQ(st.full_rejects, 0);
	replay_free(r);
}

TEST(lives_one_to_two_windows)
{
	struct replay *r = replay_new(64, W);
	uint8_t a[32], b[32];
	uint64_t t0 = 5 * W;

	key_of(1, a);
	key_of(2, b);
	CHECK_EQ(replay_insert(r, a, t0), 0); /* first call: the window starts here */
	CHECK_EQ(replay_insert(r, b, t0 + W / 2), 0);
	CHECK_EQ(replay_check(r, a, t0 + W - 1), 1);
	CHECK_EQ(replay_check(r, a, t0 + W), 1);	    /* rotated into the old generation */
	CHECK_EQ(replay_insert(r, a, t0 + W + 1), -EEXIST); /* found there, not re-added */
	CHECK_EQ(replay_check(r, b, t0 + W + W / 2), 1);    /* b is exactly one window old */
	CHECK_EQ(replay_check(r, a, t0 + 2 * W - 1), 1);
	CHECK_EQ(replay_check(r, a, t0 + 2 * W), 0); /* expired after two windows */
	CHECK_EQ(replay_check(r, b, t0 + 2 * W), 0); /* b lived 1.5 windows */
	CHECK_EQ(replay_insert(r, a, t0 + 2 * W), 0);
	/* a long idle gap empties both generations at once */
	CHECK_EQ(replay_check(r, a, t0 + 10 * W), 0);
	/* time going back is "no time passed" */
	CHECK_EQ(replay_insert(r, b, t0), 0);
	CHECK_EQ(replay_check(r, b, t0 + 10 * W), 1);
	replay_free(r);
}

TEST(flood_is_bounded_and_fails_closed)
{
	const size_t cap = 1000;
	struct replay *r = replay_new(cap, W);
	struct replay_stats st;
	uint8_t k[32];
	uint64_t n = 0, t = 0;

	for (; n < cap; n++) {
		key_of(n, k);
		CHECK_MSG(replay_insert(r, k, t + n) == 0, "insert %lu", (unsigned long)n);
	}
	for (int i = 0; i < 100; i++) {
		key_of(n++, k);
		CHECK_EQ(replay_insert(r, k, t + cap), -ENOSPC);
	}
	replay_stats(r, &st);
	CHECK_EQ(st.entries, cap);
	CHECK_EQ(st.full_rejects, 100);
	/* one window later the keys are still unexpired: still full */
	key_of(n++, k);
	CHECK_EQ(replay_insert(r, k, W + 5), -ENOSPC);
	/* the old keys are still remembered */
	key_of(0, k);
	CHECK_EQ(replay_check(r, k, W + 6), 1);
	/* two windows after the start they are gone and there is room again */
	key_of(n++, k);
	CHECK_EQ(replay_insert(r, k, 2 * W), 0);
	replay_stats(r, &st);
	CHECK_EQ(st.entries, 1);
	replay_free(r);
}

/* A key already held is a replay (-EEXIST) whatever its owner's floor says; a new key
 * at or below the floor is refused (-ESTALE), and nothing is inserted then. */
TEST(replay_is_told_before_the_floor)
{
	struct replay *r = replay_new(8, W);
	struct replay_owner owner = {.id = (const uint8_t *)"assoc-A", .len = 7};
	struct replay_stats st;
	uint8_t k[32];

	for (uint64_t n = 0; n < 8; n++) {
		key_of(n, k);
		CHECK_EQ(replay_insert_owned(r, k, &owner, 100 + n, 10), n < 6 ? 0 : -EDQUOT);
	}
	for (uint64_t n = 6; n < 8; n++) {
		key_of(100 + n, k);
		CHECK_EQ(replay_insert(r, k, 10), 0);
	}
	/* full: the retry of a refused request raises the owner's floor to its stamp */
	key_of(50, k);
	CHECK_EQ(replay_insert_or_floor(r, k, &owner, 200, 11), 0);
	key_of(3, k);
	CHECK_EQ(replay_insert_owned(r, k, &owner, 103, 12), -EEXIST);
	key_of(60, k);
	CHECK_EQ(replay_insert_owned(r, k, &owner, 150, 12), -ESTALE);
	replay_stats(r, &st);
	CHECK_EQ(st.entries, 8);
	CHECK_EQ(st.hits, 1);
	CHECK_EQ(st.floor_rejects, 1);
	CHECK_EQ(st.floor_raises, 1);
	replay_free(r);
}

TEST(random_model)
{
	/* random times and keys against the contract: a key inserted at t is found at
	 * u when u - t < window, and not found when u - t >= 2 * window; never more
	 * entries than the capacity */
	enum { NKEYS = 4000 };
	const size_t cap = 256;
	struct replay *r = replay_new(cap, W);
	static uint64_t inserted_at[NKEYS];
	struct replay_stats st;
	uint64_t now = 0;
	uint8_t k[32];

	srand(7);
	memset(inserted_at, 0xff, sizeof(inserted_at));
	for (int op = 0; op < 200000; op++) {
		uint64_t id = (uint64_t)rand() % NKEYS;
		uint64_t t0 = inserted_at[id];

		now += (uint64_t)rand() % (W / 200);
		key_of(id, k);
		if (rand() & 1) {
			int seen = replay_check(r, k, now);

			if (t0 != UINT64_MAX && now - t0 < W)
				CHECK_MSG(seen == 1, "key %lu forgotten too early",
					  (unsigned long)id);
			if (t0 == UINT64_MAX || now - t0 >= 2 * W)
				CHECK_MSG(seen == 0, "key %lu kept too long", (unsigned long)id);
		} else {
			int rc = replay_insert(r, k, now);

			CHECK(rc == 0 || rc == -EEXIST || rc == -ENOSPC);
			if (rc == 0)
				inserted_at[id] = now;
			if (rc == -EEXIST)
				CHECK(t0 != UINT64_MAX && now - t0 < 2 * W);
			if (t0 != UINT64_MAX && now - t0 < W)
				CHECK_EQ(rc, -EEXIST);
		}
		replay_stats(r, &st);
		CHECK(st.entries <= cap);
	}
	replay_stats(r, &st);
	CHECK_MSG(st.full_rejects > 0, "the test never filled the register");
	CHECK(st.rotations > 100);
	replay_free(r);
}
MINITEST_MAIN()
