// SPDX-License-Identifier: MIT
/* test_sealed: sealed-mode packets match pinned vectors, round-trip at every size,
 * and every forged, replayed, stale, expired, misdirected or unknown-key request is
 * refused with its reason and counted, without ever handing up a plaintext.
 * BoringSSL only: minitest.h, not Criterion (see there why). */
#include "boringssl.h"

#include "minitest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <r2p2/wire.h>

#include "replay.h"
#include "sealed.h"
#include "stek.h"

#define SVC "echo.svc"
#define NOW 1700000000000ull /* unix ms */
#define W 10000ull	     /* ms: the default window */
#define REG_WINDOW_NS (2 * W * 1000000ull)

#define K_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K_B "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define K_C "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"

/* F|L|SEALED on a one-packet request and response, policy 0 */
static const uint8_t req_hdr[4] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_REQUEST << 4,
				   R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};
static const uint8_t resp_hdr[4] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_RESPONSE << 4,
				    R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};

/* The server every request of these tests is sent to (and bound to): 10.0.0.2:8000. */
static const struct r2p2_addr self_addr = {
    .family = AF_INET, .port = 0x401f /* 8000, be */, .addr = {10, 0, 0, 2}};

/* checks_at returns the server checks at unix ms `now` (the register on the same clock). */
static struct sealed_checks checks_at(uint64_t now)
{
	return (struct sealed_checks){.now_ms = now,
				      .now_ns = now * 1000000ull,
				      .window_ms = W,
				      .self = &self_addr,
				      .num_self = 1};
}

/* ---- fixtures ------------------------------------------------------------------ */

static char dir[64];

static void rm_dir(void)
{
	DIR *d;
	struct dirent *de;
	char p[512];

	if (!dir[0])
		return;
	d = opendir(dir);
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
	dir[0] = '\0';
}

/* path_of returns dir/name (static buffer), making the directory on first use. */
static const char *path_of(const char *name)
{
	static char p[512];

	if (!dir[0]) {
		strcpy(dir, "/tmp/test_sealed.XXXXXX");
		CHECK(mkdtemp(dir) != NULL);
		atexit(rm_dir);
	}
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* load_set writes `text` as STEK file `name` (mode 0600) and loads it. */
static struct stek_set *load_set(const char *name, const char *text)
{
	const char *p = path_of(name);
	struct stek_set *set = NULL;
	char err[256];
	FILE *f;

	unlink(p);
	f = fopen(p, "w");
	CHECK(f != NULL);
	fputs(text, f);
	CHECK_EQ(fclose(f), 0);
	CHECK_EQ(chmod(p, 0600), 0);
	CHECK_MSG(stek_load(p, &set, err, sizeof(err)) == 0, "%s", err);
	return set;
}

/* The usual set: 0xa current (K_A), 0x9 previous, 0xb next. */
static struct stek_set *std_set(void)
{
	return load_set("std", "0000000a current " K_A "\n"
			       "00000009 previous " K_B "\n"
			       "0000000b next " K_C "\n");
}

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	CHECK_EQ(strlen(hex), 2 * len);
	for (size_t i = 0; i < len; i++) {
		unsigned v;

		CHECK(sscanf(hex + 2 * i, "%2x", &v) == 1);
		out[i] = (uint8_t)v;
	}
}

/* A server: one worker's state and its own strike register. */
struct server {
	struct sealed_server *s;
	struct replay *strike;
};

static struct server server_new(size_t max_entries)
{
	struct server sv = {sealed_server_new(), replay_new(max_entries, REG_WINDOW_NS)};

	CHECK(sv.s && sv.strike);
	return sv;
}

static void server_free(struct server *sv)
{
	sealed_server_free(sv->s);
	replay_free(sv->strike);
}

/* bootstrap mints an association for `service` on `sv` and gives it to client `a`. */
static void bootstrap(struct server *sv, const struct stek_set *set, const char *service,
		      uint64_t now, uint64_t lifetime, struct sealed_assoc *a)
{
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];

	CHECK_EQ(sealed_assoc_mint(sv->s, set, service, now, lifetime, blob), 0);
	CHECK_EQ(sealed_assoc_init(a, blob, now), 0);
}

/* open_req runs sealed_open_request with the usual arguments; returns the reason. */
static enum sealed_reason open_req(struct server *sv, const struct stek_set *set,
				   const char *service, uint64_t now, const uint8_t hdr[4],
				   const uint8_t *msg, size_t len, struct tls_buf *out,
				   struct sealed_ctx *ctx)
{
	enum sealed_reason why = (enum sealed_reason)99;
	struct sealed_checks chk = checks_at(now);
	int rc = sealed_open_request(sv->s, set, service, sv->strike, &chk, hdr, msg, len, out, ctx,
				     &why);

	CHECK_EQ(rc, why == SEALED_OK ? 0 : -EBADMSG);
	if (why != SEALED_OK) {
		CHECK_EQ(out->len, 0);
		CHECK(!ctx->armed);
	}
	return why;
}

static uint64_t rejected(struct server *sv, enum sealed_reason why)
{
	struct sealed_stats st;

	sealed_server_stats(sv->s, &st);
	return st.rejected[why];
}

/* ---- known-answer vectors -------------------------------------------------------- */

/*
 * Vectors. Inputs: STEK key 0x0000000a = K_A (bytes 00..1f); K = 0f 0e .. 00;
 * association id 11 22 33 44 55 66 77 88; expiry 1700000600000; service "echo.svc";
 * token nonce 20 21 .. 2b; N = de ad be ef | counter 5; timestamp 1700000000000;
 * request header cc 08 00 d0 (F|L|SEALED: ad bytes cc 08 00 10); request "ping";
 * response header cc 08 10 d0; response nonce R = 30 31 .. 3b; response "pong".
 * The expected bytes were computed once by an independent implementation, Python
 * `cryptography` 48 (AESGCM, hmac/hashlib HKDF), from docs/PROTOCOL.md "sealed mode":
 *   tk    = HKDF-Expand(HKDF-Extract(zeros, K_A), "r2p2 sealed token", 32)
 *   token = id | tn | AESGCM(tk).encrypt(tn, K|aid|be64(expiry)|sha256(svc)[:8],
 *                                        id | "r2p2 sealed token v1")
 *   prk   = HMAC-SHA256(aid, K); k_req = HKDF-Expand(prk, "r2p2 sealed request"|N, 16)
 *   bind  = ::ffff:10.0.0.2 (16) | be16(8000), the server the request is sent to
 *   head  = 02 | token | N | be64(ts) | bind; request = head | AESGCM(k_req).encrypt(
 *           0^12, "ping", cc 08 00 10 | head)
 *   rhead = 02 | N | R; response = rhead | AESGCM(k_resp).encrypt(R, "pong",
 *           cc 08 10 10 | rhead)
 * and pasted here; BoringSSL must reproduce them byte for byte.
 */
#define V_TOKEN_KEY "01c8d37be522047ab117cc98694ea6a6c2078057709b8f3c6fef5e3d2696a199"
#define V_SVC_HASH "b41c363f68f15f38"
#define V_PRK "50812ed87b115d8d75109de02f167369b4062ae8950860e47450265beedd638e"
#define V_K_REQ "f050b010fff7f102728972f8c6ef3b27"
#define V_K_RESP "5b65937e9b44a659b807388426ffcb70"
#define V_TOKEN                                                                                    \
	"0000000a202122232425262728292a2bb1e07010818e91810c04e6f0c59c6670"                         \
	"1e48647961b10accff4fa9b786acb7bc256bd525f4e7319d64f1cdfcc3ea82b0"                         \
	"605e7a93b179609f"
#define V_REQUEST                                                                                  \
	"020000000a202122232425262728292a2bb1e07010818e91810c04e6f0c59c66"                         \
	"701e48647961b10accff4fa9b786acb7bc256bd525f4e7319d64f1cdfcc3ea82"                         \
	"b0605e7a93b179609fdeadbeef00000000000000050000018bcfe56800000000"                         \
	"00000000000000ffff0a0000021f40075dec63579356db8471c0ed5f81249364"                         \
	"40863f"
#define V_RESPONSE                                                                                 \
	"02deadbeef0000000000000005303132333435363738393a3bfc5ee051f274e5"                         \
	"7e3f321260e9c05d8e08cf1c91"
#define V_EXPIRY 1700000600000ull

static const uint8_t v_id[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
static const uint8_t v_prefix[4] = {0xde, 0xad, 0xbe, 0xef};

static void v_key(uint8_t k[16])
{
	for (int i = 0; i < 16; i++)
		k[i] = (uint8_t)(15 - i);
}

/* v_assoc builds the vector association: blob with the pinned token, fixed N prefix. */
static void v_assoc(const struct stek_set *set, struct sealed_assoc *a)
{
	uint8_t blob[SEALED_ASSOC_BLOB_LEN], tn[12];

	for (int i = 0; i < 12; i++)
		tn[i] = (uint8_t)(0x20 + i);
	v_key(blob);
	memcpy(blob + 16, v_id, 8);
	for (int i = 0; i < 8; i++)
		blob[24 + i] = (uint8_t)(V_EXPIRY >> (56 - 8 * i));
	CHECK_EQ(sealed_token_seal(stek_find(set, 0xa), blob, v_id, V_EXPIRY, SVC, tn, blob + 32),
		 0);
	CHECK_EQ(sealed_assoc_init(a, blob, NOW), 0);
	memcpy(a->prefix, v_prefix, 4);
	a->counter = 5;
}

TEST(vector_derived_keys)
{
	struct stek_set *set = std_set();
	uint8_t want[32], got[32], info[64], n[12];
	struct sealed_assoc a;

	unhex(V_TOKEN_KEY, want, 32);
	CHECK_EQ(stek_derive(stek_find(set, 0xa), SEALED_TOKEN_LABEL, got, 32), 0);
	CHECK_MEM(got, want, 32);

	unhex(V_SVC_HASH, want, 8);
	SHA256((const uint8_t *)SVC, strlen(SVC), got);
	CHECK_MEM(got, want, 8);

	v_assoc(set, &a);
	unhex(V_PRK, want, 32);
	CHECK_MEM(a.prk, want, 32);

	/* k_req is internal; the construction from PROTOCOL.md with BoringSSL's one-shot HKDF */
	memcpy(n, v_prefix, 4);
	memset(n + 4, 0, 8);
	n[11] = 5;
	memcpy(info, "r2p2 sealed request", 19);
	memcpy(info + 19, n, 12);
	CHECK(HKDF(got, 16, EVP_sha256(), a.key, 16, v_id, 8, info, 31));
	unhex(V_K_REQ, want, 16);
	CHECK_MEM(got, want, 16);
	sealed_assoc_cleanup(&a);
	stek_set_put(set);
}

TEST(vector_token_request_response)
{
	struct stek_set *set = std_set();
	uint8_t want[200];
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct server sv = server_new(64);

	v_assoc(set, &a);
	unhex(V_TOKEN, want, SEALED_TOKEN_LEN);
	CHECK_MEM(a.token, want, SEALED_TOKEN_LEN);

	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"ping", 4, NOW,
				     &wire, &cctx),
		 0);
	CHECK_EQ(wire.len, 131);
	unhex(V_REQUEST, want, 131);
	CHECK_MEM(wire.data, want, 131);
	CHECK_EQ(a.counter, 6);
	unhex(V_K_RESP, want, 16);
	CHECK_MEM(cctx.k_resp, want, 16);

	/* the server opens the pinned packet and derives the same response key */
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	CHECK_EQ(plain.len, 4);
	CHECK_MEM(plain.data, "ping", 4);
	CHECK_MEM(sctx.k_resp, want, 16);

	/* the pinned response (R fixed) opens at the client */
	unhex(V_RESPONSE, want, 45);
	CHECK_EQ(sealed_open_response(&cctx, resp_hdr, want, 45, &plain), 0);
	CHECK_EQ(plain.len, 4);
	CHECK_MEM(plain.data, "pong", 4);

	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* ---- round trips --------------------------------------------------------------- */

TEST(round_trip_sizes)
{
	static const size_t sizes[] = {0, 1, 4, 1464, 65536};
	struct stek_set *set = std_set();
	struct server sv = server_new(1024);
	struct sealed_assoc a;
	struct tls_buf wire = {0}, plain = {0}, rwire = {0}, rplain = {0};
	uint8_t *req = malloc(65536), *resp = malloc(65536);
	struct sealed_stats st;

	CHECK(req && resp);
	RAND_bytes(req, 65536);
	RAND_bytes(resp, 65536);
	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(a.expiry_ms, NOW + SEALED_LIFETIME_DEFAULT_MS);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		struct sealed_ctx cctx, sctx;

		CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, req, len, NOW, &wire, &cctx),
			 0);
		CHECK_EQ(wire.len, SEALED_REQ_OVERHEAD + len);
		CHECK_EQ(
		    open_req(&sv, set, SVC, NOW + 3, req_hdr, wire.data, wire.len, &plain, &sctx),
		    SEALED_OK);
		CHECK_EQ(plain.len, len);
		CHECK_MEM(plain.data, req, len);
		CHECK_EQ(sealed_seal_response(sv.s, &sctx, resp_hdr, resp, len, &rwire), 0);
		CHECK_EQ(rwire.len, SEALED_RESP_OVERHEAD + len);
		CHECK(!sctx.armed);
		CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len, &rplain), 0);
		CHECK_EQ(rplain.len, len);
		CHECK_MEM(rplain.data, resp, len);
		CHECK(!cctx.armed);
		/* one response per request, on both sides */
		CHECK_EQ(sealed_seal_response(sv.s, &sctx, resp_hdr, resp, len, &rwire), -EINVAL);
		CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len, &rplain),
			 -EINVAL);
	}
	sealed_server_stats(sv.s, &st);
	CHECK_EQ(st.opened, 5);
	CHECK_EQ(st.responses, 5);
	CHECK_EQ(st.minted, 1);
	free(req);
	free(resp);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	tls_buf_cleanup(&rwire);
	tls_buf_cleanup(&rplain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

/* Every N of an association is new, and two copies made from one blob differ in prefix. */
TEST(nonces_never_repeat)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	uint8_t blob[SEALED_ASSOC_BLOB_LEN], seen[1000][12];
	struct sealed_assoc a, b;
	struct sealed_ctx ctx;
	struct tls_buf wire = {0};

	CHECK_EQ(sealed_assoc_mint(sv.s, set, SVC, NOW, 0, blob), 0);
	CHECK_EQ(sealed_assoc_init(&a, blob, NOW), 0);
	CHECK_EQ(sealed_assoc_init(&b, blob, NOW), 0);
	CHECK(memcmp(a.prefix, b.prefix, 4) != 0); /* 2^-32 to fail by chance */
	for (int i = 0; i < 1000; i++) {
		CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &wire, &ctx),
			 0);
		memcpy(seen[i], wire.data + 1 + SEALED_TOKEN_LEN, 12);
		CHECK_MEM(seen[i], a.prefix, 4);
		CHECK_EQ(seen[i][11] | seen[i][10] << 8, i);
		for (int j = 0; j < i; j++)
			CHECK(memcmp(seen[i], seen[j], 12) != 0);
	}
	a.counter = UINT64_MAX;
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &wire, &ctx),
		 -EOVERFLOW);
	sealed_ctx_cleanup(&ctx);
	sealed_assoc_cleanup(&a);
	sealed_assoc_cleanup(&b);
	tls_buf_cleanup(&wire);
	server_free(&sv);
	stek_set_put(set);
}

/* ---- every field authenticated ---------------------------------------------------- */

/* Offsets in a request with a 4-byte body. */
enum {
	OFF_VERSION = 0,
	OFF_KEY_ID = 1,
	OFF_TOKEN_REST = 5,
	OFF_N = 1 + SEALED_TOKEN_LEN,
	OFF_TS = OFF_N + 12,
	OFF_BIND = OFF_TS + 8,
	OFF_CT = OFF_BIND + SEALED_BIND_LEN,
	OFF_TAG = OFF_CT + 4,
	REQ_LEN = OFF_TAG + 16,
};

static enum sealed_reason expect_for_flip(const struct stek_set *set, const uint8_t *orig,
					  size_t byte, int bit)
{
	uint8_t m[REQ_LEN];

	memcpy(m, orig, REQ_LEN);
	m[byte] ^= (uint8_t)(1u << bit);
	if (byte == OFF_VERSION)
		return SEALED_REJ_MALFORMED;
	if (byte < OFF_TOKEN_REST) {
		uint32_t id = (uint32_t)m[1] << 24 | m[2] << 16 | m[3] << 8 | m[4];

		/* a flipped id may name another key of the set: then the token fails */
		return stek_find(set, id) ? SEALED_REJ_BAD_TOKEN : SEALED_REJ_UNKNOWN_KEY;
	}
	if (byte < OFF_N)
		return SEALED_REJ_BAD_TOKEN;
	if (byte >= OFF_BIND && byte < OFF_CT)
		return SEALED_REJ_WRONG_SERVER; /* checked first: another server's address */
	if (byte >= OFF_TS && byte < OFF_BIND) {
		uint64_t ts = 0;

		for (int i = 0; i < 8; i++)
			ts = ts << 8 | m[OFF_TS + i];
		if ((ts > NOW ? ts - NOW : NOW - ts) > W)
			return SEALED_REJ_STALE;
	}
	return SEALED_REJ_BAD_AEAD; /* N, small timestamp changes, ciphertext, tag */
}

TEST(flipped_bits_rejected_with_reason)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(4096);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0}, rwire = {0}, rplain = {0};
	uint64_t tally[SEALED_REASON_MAX + 1] = {0};
	uint8_t m[REQ_LEN], h[4];
	const char *field;

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"ping", 4, NOW,
				     &wire, &cctx),
		 0);
	CHECK_EQ(wire.len, REQ_LEN);

	/* payload: every bit of every field */
	for (size_t byte = 0; byte < REQ_LEN; byte++) {
		field = byte == 0	  ? "version"
			: byte < OFF_N	  ? "token"
			: byte < OFF_TS	  ? "nonce"
			: byte < OFF_BIND ? "timestamp"
			: byte < OFF_CT	  ? "binding"
			: byte < OFF_TAG  ? "ciphertext"
					  : "tag";
		for (int bit = 0; bit < 8; bit++) {
			enum sealed_reason want = expect_for_flip(set, wire.data, byte, bit), got;

			memcpy(m, wire.data, REQ_LEN);
			m[byte] ^= (uint8_t)(1u << bit);
			got = open_req(&sv, set, SVC, NOW, req_hdr, m, REQ_LEN, &plain, &sctx);
			CHECK_MSG(got == want, "%s byte %zu bit %d: %s, want %s", field, byte, bit,
				  sealed_reason_name(got), sealed_reason_name(want));
			tally[want]++;
		}
	}
	/* header: policy bits are only in the AD; the rest fails the header check; F/L ignored */
	for (int byte = 0; byte < 4; byte++)
		for (int bit = 0; bit < 8; bit++) {
			enum sealed_reason want, got;

			memcpy(h, req_hdr, 4);
			h[byte] ^= (uint8_t)(1u << bit);
			if (byte == 3 && (1u << bit) & (R2P2_F_FIRST | R2P2_F_LAST))
				continue;
			want = byte == 2 && bit < 4 ? SEALED_REJ_BAD_AEAD : SEALED_REJ_MALFORMED;
			got = open_req(&sv, set, SVC, NOW, h, wire.data, REQ_LEN, &plain, &sctx);
			CHECK_MSG(got == want, "header byte %d bit %d: %s, want %s", byte, bit,
				  sealed_reason_name(got), sealed_reason_name(want));
			tally[want]++;
		}
	/* truncated or overlong */
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, SEALED_REQ_OVERHEAD - 1, &plain,
			  &sctx),
		 SEALED_REJ_MALFORMED);
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, 0, &plain, &sctx),
		 SEALED_REJ_MALFORMED);
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, REQ_LEN - 1, &plain, &sctx),
		 SEALED_REJ_BAD_AEAD);
	tally[SEALED_REJ_MALFORMED] += 2;
	tally[SEALED_REJ_BAD_AEAD]++;

	for (unsigned r = 1; r <= SEALED_REASON_MAX; r++)
		CHECK_MSG(rejected(&sv, r) == tally[r], "%s: counted %ju, want %ju",
			  sealed_reason_name(r), (uintmax_t)rejected(&sv, r), (uintmax_t)tally[r]);
	CHECK(tally[SEALED_REJ_UNKNOWN_KEY] && tally[SEALED_REJ_BAD_TOKEN] &&
	      tally[SEALED_REJ_WRONG_SERVER] && tally[SEALED_REJ_STALE] &&
	      tally[SEALED_REJ_BAD_AEAD] && tally[SEALED_REJ_MALFORMED]);

	/* nothing forged reached the register: the genuine request still opens, with F/L flipped */
	memcpy(h, req_hdr, 4);
	h[3] &= (uint8_t)~R2P2_F_LAST;
	CHECK_EQ(open_req(&sv, set, SVC, NOW, h, wire.data, REQ_LEN, &plain, &sctx), SEALED_OK);
	CHECK_MEM(plain.data, "ping", 4);

	/* response: every bit of every byte, and its header */
	CHECK_EQ(sealed_seal_response(sv.s, &sctx, resp_hdr, (const uint8_t *)"pong", 4, &rwire),
		 0);
	for (size_t byte = 0; byte < rwire.len; byte++)
		for (int bit = 0; bit < 8; bit++) {
			rwire.data[byte] ^= (uint8_t)(1u << bit);
			CHECK_MSG(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len,
						       &rplain) == -EBADMSG,
				  "response byte %zu bit %d accepted", byte, bit);
			CHECK_EQ(rplain.len, 0);
			rwire.data[byte] ^= (uint8_t)(1u << bit);
		}
	for (int byte = 0; byte < 4; byte++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(h, resp_hdr, 4);
			h[byte] ^= (uint8_t)(1u << bit);
			if (byte == 3 && (1u << bit) & (R2P2_F_FIRST | R2P2_F_LAST))
				continue;
			CHECK_EQ(sealed_open_response(&cctx, h, rwire.data, rwire.len, &rplain),
				 -EBADMSG);
		}
	CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len - 1, &rplain),
		 -EBADMSG);
	CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len, &rplain), 0);
	CHECK_MEM(rplain.data, "pong", 4);

	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	tls_buf_cleanup(&rwire);
	tls_buf_cleanup(&rplain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

/* ---- replay, keys, services, time --------------------------------------------------- */

TEST(replay_refused_never_second_plaintext)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"once", 4, NOW,
				     &wire, &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(open_req(&sv, set, SVC, NOW + 1000 * i, req_hdr, wire.data, wire.len,
				  &plain, &sctx),
			 SEALED_REJ_REPLAY);
		CHECK_EQ(plain.len, 0);
	}
	CHECK_EQ(rejected(&sv, SEALED_REJ_REPLAY), 3);
	/* after the window it is stale, before the register could have forgotten it */
	CHECK_EQ(open_req(&sv, set, SVC, NOW + W + 1, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_STALE);
	sealed_ctx_cleanup(&cctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

/* A token under a key that two rotations retired is UNKNOWN_KEY; after one it still opens. */
TEST(retired_key_unknown)
{
	const char *p = path_of("rot");
	struct stek_set *s0 = NULL, *s1 = NULL, *s2 = NULL;
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	char err[256];
	uint8_t rej[SEALED_REJECT_LEN];
	enum sealed_reason why;

	unlink(p);
	CHECK_MSG(stek_generate_file(p, err, sizeof(err)) == 0, "%s", err);
	CHECK_MSG(stek_load(p, &s0, err, sizeof(err)) == 0, "%s", err);
	bootstrap(&sv, s0, SVC, NOW, 0, &a);

	CHECK_MSG(stek_rotate_file(p, &s1, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"x", 1, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, s1, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK); /* the minting key is `previous` now */

	CHECK_MSG(stek_rotate_file(p, &s2, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"x", 1, NOW, &wire,
				     &cctx),
		 0);
	why = open_req(&sv, s2, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx);
	CHECK_EQ(why, SEALED_REJ_UNKNOWN_KEY);
	CHECK_EQ(rejected(&sv, SEALED_REJ_UNKNOWN_KEY), 1);
	/* what the client gets back, and what it makes of it */
	sealed_reject_encode(why, rej);
	CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rej, sizeof(rej), &plain), -EBADMSG);
	CHECK_EQ(sealed_reject_decode(rej, sizeof(rej), &why), 0);
	CHECK_EQ(why, SEALED_REJ_UNKNOWN_KEY);
	CHECK(sealed_reason_rebootstrap(why));

	sealed_ctx_cleanup(&cctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(s0);
	stek_set_put(s1);
	stek_set_put(s2);
}

/* A new set that reuses a key id with other key bytes never opens with the cached key. */
TEST(reused_key_id_not_cached)
{
	struct stek_set *s1 = load_set("c1", "0000000a current " K_A "\n");
	struct stek_set *s2 = load_set("c2", "0000000a current " K_B "\n");
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};

	bootstrap(&sv, s1, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &wire, &cctx), 0);
	CHECK_EQ(open_req(&sv, s1, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &wire, &cctx), 0);
	CHECK_EQ(open_req(&sv, s2, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_BAD_TOKEN);
	CHECK_EQ(open_req(&sv, s1, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(s1);
	stek_set_put(s2);
}

TEST(token_for_other_service)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};

	bootstrap(&sv, set, "a.svc", NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"hi", 2, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, "b.svc", NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_WRONG_SERVICE);
	CHECK_EQ(rejected(&sv, SEALED_REJ_WRONG_SERVICE), 1);
	CHECK(sealed_reason_rebootstrap(SEALED_REJ_WRONG_SERVICE));
	/* not consumed by the refusal: the right service still takes it */
	CHECK_EQ(open_req(&sv, set, "a.svc", NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

TEST(expired_association)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];
	struct sealed_assoc a, b;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};

	bootstrap(&sv, set, SVC, NOW, 1000, &a);
	CHECK_EQ(a.expiry_ms, NOW + 1000);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW + 999, &wire, &cctx), 0);
	CHECK_EQ(open_req(&sv, set, SVC, NOW + 999, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	/* the client's clock is behind: it still sends; the server refuses at expiry */
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW + 500, &wire, &cctx), 0);
	CHECK_EQ(open_req(&sv, set, SVC, NOW + 1000, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_EXPIRED);
	CHECK_EQ(rejected(&sv, SEALED_REJ_EXPIRED), 1);
	CHECK(sealed_reason_rebootstrap(SEALED_REJ_EXPIRED));
	/* the client refuses to use an association it knows has expired */
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW + 1000, &wire, &cctx),
		 -ESTALE);
	CHECK(!cctx.armed);
	CHECK_EQ(sealed_assoc_mint(sv.s, set, SVC, NOW, 1000, blob), 0);
	CHECK_EQ(sealed_assoc_init(&b, blob, NOW + 1000), -ESTALE);
	sealed_ctx_cleanup(&sctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

TEST(stale_timestamp)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	static const struct {
		int64_t skew; /* client clock - server clock, ms */
		enum sealed_reason want;
	} cases[] = {
	    {-(int64_t)W - 1, SEALED_REJ_STALE},
	    {-(int64_t)W, SEALED_OK},
	    {0, SEALED_OK},
	    {(int64_t)W, SEALED_OK},
	    {(int64_t)W + 1, SEALED_REJ_STALE},
	};

	bootstrap(&sv, set, SVC, NOW - 2 * W, 0, &a);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW + cases[i].skew,
					     &wire, &cctx),
			 0);
		CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
			 cases[i].want);
		sealed_ctx_cleanup(&sctx);
	}
	CHECK_EQ(rejected(&sv, SEALED_REJ_STALE), 2);
	CHECK(!sealed_reason_rebootstrap(SEALED_REJ_STALE));
	sealed_ctx_cleanup(&cctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

/* Two servers of the service (separate state, separate registers, one STEK file) both open. */
TEST(two_servers_one_association)
{
	struct stek_set *set1 = std_set(), *set2 = std_set();
	struct server sv1 = server_new(64), sv2 = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0}, rwire = {0};

	bootstrap(&sv1, set1, SVC, NOW, 0, &a); /* minted by server 1 */
	for (int i = 0; i < 4; i++) {
		struct server *sv = i % 2 ? &sv2 : &sv1;
		struct stek_set *set = i % 2 ? set2 : set1;

		CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"abcd", 4,
					     NOW, &wire, &cctx),
			 0);
		CHECK_EQ(open_req(sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
			 SEALED_OK);
		CHECK_EQ(sealed_seal_response(sv->s, &sctx, resp_hdr, (const uint8_t *)"efgh", 4,
					      &rwire),
			 0);
		CHECK_EQ(sealed_open_response(&cctx, resp_hdr, rwire.data, rwire.len, &plain), 0);
		CHECK_MEM(plain.data, "efgh", 4);
	}
	/*
	 * The strike register is per server: the same request opens once at each. The two
	 * responses use the same k_resp but different random nonces R.
	 */
	struct tls_buf r1 = {0}, r2 = {0};
	struct sealed_ctx c1, c2;
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"dup", 3, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv1, set1, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &c1),
		 SEALED_OK);
	CHECK_EQ(open_req(&sv2, set2, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &c2),
		 SEALED_OK);
	CHECK_EQ(sealed_seal_response(sv1.s, &c1, resp_hdr, (const uint8_t *)"r", 1, &r1), 0);
	CHECK_EQ(sealed_seal_response(sv2.s, &c2, resp_hdr, (const uint8_t *)"r", 1, &r2), 0);
	CHECK(memcmp(r1.data + 13, r2.data + 13, 12) != 0);
	CHECK_EQ(open_req(&sv1, set1, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &c1),
		 SEALED_REJ_REPLAY);

	sealed_ctx_cleanup(&cctx);
	tls_buf_cleanup(&r1);
	tls_buf_cleanup(&r2);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&rwire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv1);
	server_free(&sv2);
	stek_set_put(set1);
	stek_set_put(set2);
}

/* A flood of fresh nonces from 8 associations fills the register to its bound, then
 * every request is refused. */
TEST(strike_register_bounded_fails_closed)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a[8];
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct replay_stats rs;
	int ok = 0, full = 0;

	for (int k = 0; k < 8; k++)
		bootstrap(&sv, set, SVC, NOW, 0, &a[k]);
	for (int i = 0; i < 300; i++) {
		enum sealed_reason why;

		CHECK_EQ(sealed_seal_request(&a[i % 8], req_hdr, &self_addr, (const uint8_t *)"f",
					     1, NOW, &wire, &cctx),
			 0);
		why = open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx);
		CHECK_MSG(why == SEALED_OK || why == SEALED_REJ_FULL, "%s",
			  sealed_reason_name(why));
		if (why == SEALED_OK)
			ok++;
		else
			full++;
		CHECK_EQ(ok, i < 64 ? i + 1 : 64); /* never a plaintext once full */
		replay_stats(sv.strike, &rs);
		CHECK(rs.entries <= 64);
		sealed_ctx_cleanup(&sctx);
	}
	CHECK_EQ(full, 236);
	CHECK_EQ(rejected(&sv, SEALED_REJ_FULL), 236);
	CHECK(!sealed_reason_rebootstrap(SEALED_REJ_FULL));
	/* time frees room: two windows later a fresh request is accepted again */
	uint64_t later = NOW + 2 * 2 * W + 1;
	CHECK_EQ(sealed_seal_request(&a[0], req_hdr, &self_addr, (const uint8_t *)"f", 1, later,
				     &wire, &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, SVC, later, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	for (int k = 0; k < 8; k++)
		sealed_assoc_cleanup(&a[k]);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* One association floods fresh nonces: it gets 3/4 of the register (its quarter, but
 * the share binds only once the register is 3/4 full), and another association is
 * still served in the quarter left. */
TEST(strike_register_share_per_association)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc hog, other;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct replay_stats rs;
	enum sealed_reason why;
	int ok = 0, share = 0;

	bootstrap(&sv, set, SVC, NOW, 0, &hog);
	bootstrap(&sv, set, SVC, NOW, 0, &other);
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(sealed_seal_request(&hog, req_hdr, &self_addr, (const uint8_t *)"h", 1,
					     NOW, &wire, &cctx),
			 0);
		why = open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx);
		CHECK_MSG(why == SEALED_OK || why == SEALED_REJ_SHARE, "%s",
			  sealed_reason_name(why));
		ok += why == SEALED_OK;
		share += why == SEALED_REJ_SHARE;
		sealed_ctx_cleanup(&sctx);
	}
	CHECK_EQ(ok, 64 * 3 / 4);
	CHECK_EQ(share, 100 - 64 * 3 / 4);
	CHECK_EQ(rejected(&sv, SEALED_REJ_SHARE), share);
	CHECK(!sealed_reason_rebootstrap(SEALED_REJ_SHARE));
	replay_stats(sv.strike, &rs);
	CHECK_EQ(rs.share_rejects, share);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(sealed_seal_request(&other, req_hdr, &self_addr, (const uint8_t *)"o", 1,
					     NOW, &wire, &cctx),
			 0);
		why = open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx);
		CHECK_MSG(why == SEALED_OK, "%s", sealed_reason_name(why));
		sealed_ctx_cleanup(&sctx);
	}
	sealed_ctx_cleanup(&cctx);
	sealed_assoc_cleanup(&hog);
	sealed_assoc_cleanup(&other);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* An association past its share retries through tls: the retry takes no room from the
 * others (its floor rises instead), the original is refused from then on, and another
 * association still gets the whole quarter left. */
TEST(retry_past_share_takes_no_room)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc hog, other;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0}, refused = {0};
	struct sealed_checks chk = checks_at(NOW);
	struct sealed_prior prior;
	struct replay_stats rs;
	enum sealed_reason why;

	bootstrap(&sv, set, SVC, NOW, 0, &hog);
	bootstrap(&sv, set, SVC, NOW, 0, &other);
	for (int i = 0; i < 64 * 3 / 4; i++) {
		CHECK_EQ(sealed_seal_request(&hog, req_hdr, &self_addr, (const uint8_t *)"h", 1,
					     NOW, &wire, &cctx),
			 0);
		CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
			 SEALED_OK);
		sealed_ctx_cleanup(&sctx);
	}
	for (int i = 0; i < 20; i++) { /* each refused, each retried */
		CHECK_EQ(sealed_seal_request(&hog, req_hdr, &self_addr, (const uint8_t *)"x", 1,
					     NOW, &refused, &cctx),
			 0);
		prior = cctx.prior;
		/* the first retry raised the hog's floor to NOW: the rest are under it */
		CHECK_EQ(
		    open_req(&sv, set, SVC, NOW, req_hdr, refused.data, refused.len, &plain, &sctx),
		    i == 0 ? SEALED_REJ_SHARE : SEALED_REJ_FULL);
		CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &prior, &chk), SEALED_RETRY_NEW);
	}
	replay_stats(sv.strike, &rs);
	CHECK_EQ(rs.entries, 64 * 3 / 4);
	CHECK_EQ(rs.floor_raises, 20);
	/* the last original, replayed with room again: refused */
	chk = checks_at(NOW + W);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, refused.data,
				     refused.len, &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_FULL);
	for (int i = 0; i < 64 / 4; i++) {
		CHECK_EQ(sealed_seal_request(&other, req_hdr, &self_addr, (const uint8_t *)"o", 1,
					     NOW, &wire, &cctx),
			 0);
		why = open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx);
		CHECK_MSG(why == SEALED_OK, "%d: %s", i, sealed_reason_name(why));
		sealed_ctx_cleanup(&sctx);
	}
	sealed_ctx_cleanup(&cctx);
	sealed_assoc_cleanup(&hog);
	sealed_assoc_cleanup(&other);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	tls_buf_cleanup(&refused);
	server_free(&sv);
	stek_set_put(set);
}

/* With the register full, a request refused as `full` still runs once through the
 * retry, and its original (and anything stamped before it) is refused from then on. */
TEST(retry_with_full_register_runs_once)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a[4];
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0}, refused = {0};
	struct sealed_checks chk = checks_at(NOW);
	struct sealed_prior prior;
	struct replay_stats rs;
	enum sealed_reason why;

	for (int k = 0; k < 4; k++)
		bootstrap(&sv, set, SVC, NOW, 0, &a[k]);
	for (int i = 0; i < 64; i++) {
		CHECK_EQ(sealed_seal_request(&a[i % 4], req_hdr, &self_addr, (const uint8_t *)"f",
					     1, NOW, &wire, &cctx),
			 0);
		CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
			 SEALED_OK);
		sealed_ctx_cleanup(&sctx);
	}
	CHECK_EQ(sealed_seal_request(&a[1], req_hdr, &self_addr, (const uint8_t *)"x", 1, NOW,
				     &refused, &cctx),
		 0);
	prior = cctx.prior;
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, refused.data, refused.len, &plain, &sctx),
		 SEALED_REJ_FULL);
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &prior, &chk), SEALED_RETRY_NEW);
	replay_stats(sv.strike, &rs);
	CHECK_EQ(rs.floor_raises, 1);
	/* later, with room again (one window on), the original is still refused */
	chk = checks_at(NOW + W);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, refused.data,
				     refused.len, &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_FULL);
	replay_stats(sv.strike, &rs);
	CHECK_EQ(rs.floor_rejects, 1);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	for (int k = 0; k < 4; k++)
		sealed_assoc_cleanup(&a[k]);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	tls_buf_cleanup(&refused);
	server_free(&sv);
	stek_set_put(set);
}

/* ---- bootstrap payloads and REJECT ---------------------------------------------------- */

TEST(bootstrap_encode_decode_strict)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct tls_buf b = {0}, wire = {0}, plain = {0};
	uint8_t blob[SEALED_ASSOC_BLOB_LEN], m[SEALED_ASSOC_BLOB_LEN + 8];
	const uint8_t *app, *gblob;
	size_t app_len;
	bool want;
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;

	/* request */
	CHECK_EQ(sealed_boot_req_encode(true, (const uint8_t *)"req", 3, &b), 0);
	CHECK_EQ(b.len, 4);
	CHECK_MEM(b.data, "\x01req", 4);
	CHECK_EQ(sealed_boot_req_decode(b.data, b.len, &want, &app, &app_len), 0);
	CHECK(want);
	CHECK_EQ(app_len, 3);
	CHECK_MEM(app, "req", 3);
	CHECK_EQ(sealed_boot_req_encode(false, NULL, 0, &b), 0);
	CHECK_EQ(b.len, 1);
	CHECK_EQ(b.data[0], 0);
	CHECK_EQ(sealed_boot_req_decode(b.data, b.len, &want, &app, &app_len), 0);
	CHECK(!want);
	CHECK_EQ(app_len, 0);
	CHECK_EQ(sealed_boot_req_decode(b.data, 0, &want, &app, &app_len), -EBADMSG);
	for (unsigned p = 2; p < 256; p++) {
		m[0] = (uint8_t)p;
		CHECK_EQ(sealed_boot_req_decode(m, 5, &want, &app, &app_len), -EBADMSG);
	}

	/* response */
	CHECK_EQ(sealed_assoc_mint(sv.s, set, SVC, NOW, 0, blob), 0);
	CHECK_EQ(sealed_boot_resp_encode(blob, (const uint8_t *)"resp", 4, &b), 0);
	CHECK_EQ(b.len, 1 + SEALED_ASSOC_BLOB_LEN + 4);
	CHECK_EQ(b.data[0], SEALED_BOOT_ASSOC);
	CHECK_EQ(sealed_boot_resp_decode(b.data, b.len, &gblob, &app, &app_len), 0);
	CHECK(gblob == b.data + 1);
	CHECK_MEM(gblob, blob, SEALED_ASSOC_BLOB_LEN);
	CHECK_EQ(app_len, 4);
	CHECK_MEM(app, "resp", 4);
	/* the blob exactly, no app bytes: fine; one byte short: refused */
	CHECK_EQ(sealed_boot_resp_decode(b.data, 1 + SEALED_ASSOC_BLOB_LEN, &gblob, &app, &app_len),
		 0);
	CHECK_EQ(app_len, 0);
	for (size_t len = 0; len < 1 + SEALED_ASSOC_BLOB_LEN; len++)
		CHECK_EQ(sealed_boot_resp_decode(b.data, len, &gblob, &app, &app_len), -EBADMSG);
	memcpy(m, b.data, sizeof(m));
	for (unsigned p = 2; p < 256; p++) {
		m[0] = (uint8_t)p;
		CHECK_EQ(sealed_boot_resp_decode(m, sizeof(m), &gblob, &app, &app_len), -EBADMSG);
	}
	CHECK_EQ(sealed_boot_resp_encode(NULL, (const uint8_t *)"r", 1, &b), 0);
	CHECK_EQ(b.len, 2);
	CHECK_EQ(sealed_boot_resp_decode(b.data, b.len, &gblob, &app, &app_len), 0);
	CHECK(gblob == NULL);
	CHECK_EQ(app_len, 1);

	/* the decoded blob is a working association */
	CHECK_EQ(sealed_boot_resp_encode(blob, NULL, 0, &b), 0);
	CHECK_EQ(sealed_boot_resp_decode(b.data, b.len, &gblob, &app, &app_len), 0);
	CHECK_EQ(sealed_assoc_init(&a, gblob, NOW), 0);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"go", 2, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	CHECK_MEM(plain.data, "go", 2);

	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&b);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

TEST(reject_encode_decode)
{
	uint8_t m[4];
	enum sealed_reason why;

	for (unsigned r = 1; r <= SEALED_REASON_MAX; r++) {
		sealed_reject_encode((enum sealed_reason)r, m);
		CHECK_EQ(m[0], SEALED_VERSION);
		CHECK_EQ(m[1], 0xFF);
		CHECK_EQ(m[2], r);
		CHECK_EQ(sealed_reject_decode(m, 3, &why), 0);
		CHECK_EQ(why, r);
		CHECK(strcmp(sealed_reason_name(r), "?") != 0);
		CHECK_EQ(sealed_reason_rebootstrap(r),
			 r == SEALED_REJ_UNKNOWN_KEY || r == SEALED_REJ_BAD_TOKEN ||
			     r == SEALED_REJ_WRONG_SERVICE || r == SEALED_REJ_EXPIRED);
	}
	sealed_reject_encode(SEALED_REJ_STALE, m);
	m[3] = 0;
	CHECK_EQ(sealed_reject_decode(m, 2, &why), -EBADMSG);
	CHECK_EQ(sealed_reject_decode(m, 4, &why), -EBADMSG);
	m[0] = 1; /* the version before requests were bound */
	CHECK_EQ(sealed_reject_decode(m, 3, &why), -EBADMSG);
	m[0] = SEALED_VERSION, m[1] = 0xFE;
	CHECK_EQ(sealed_reject_decode(m, 3, &why), -EBADMSG);
	m[1] = 0xFF, m[2] = 0;
	CHECK_EQ(sealed_reject_decode(m, 3, &why), -EBADMSG);
	m[2] = SEALED_REASON_MAX + 1;
	CHECK_EQ(sealed_reject_decode(m, 3, &why), -EBADMSG);
	CHECK_STR(sealed_reason_name(200), "?");
}

/* ---- the guarantees around the crypto: binding, restart, clock, retry -------------- */

/* A request bound to one server is refused by another server of the fleet (same STEK). */
TEST(copy_to_another_server_refused)
{
	static const struct r2p2_addr other = {
	    .family = AF_INET, .port = 0x401f, .addr = {10, 0, 0, 3}};
	static const struct r2p2_addr other_port = {
	    .family = AF_INET, .port = 0x411f, .addr = {10, 0, 0, 2}};
	struct stek_set *set = std_set();
	struct server a_sv = server_new(64), b_sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct sealed_checks chk_b = checks_at(NOW);
	enum sealed_reason why;

	bootstrap(&a_sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"pay", 3, NOW, &wire,
				     &cctx),
		 0);
	chk_b.self = &other; /* server B: 10.0.0.3:8000 */
	CHECK_EQ(sealed_open_request(b_sv.s, set, SVC, b_sv.strike, &chk_b, req_hdr, wire.data,
				     wire.len, &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_WRONG_SERVER);
	chk_b.self = &other_port; /* the right address, another port */
	CHECK_EQ(sealed_open_request(b_sv.s, set, SVC, b_sv.strike, &chk_b, req_hdr, wire.data,
				     wire.len, &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_WRONG_SERVER);
	/* port 0 in a self entry stands for the service's port */
	struct r2p2_addr any_port = self_addr;
	any_port.port = 0;
	chk_b.self = &any_port;
	chk_b.port = self_addr.port;
	CHECK_EQ(sealed_open_request(a_sv.s, set, SVC, a_sv.strike, &chk_b, req_hdr, wire.data,
				     wire.len, &plain, &sctx, &why),
		 0);
	CHECK_MEM(plain.data, "pay", 3);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&a_sv);
	server_free(&b_sv);
	stek_set_put(set);
}

/* After a start, a request stamped before it is refused: it could have run before. */
TEST(restart_refuses_what_could_predate_it)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct sealed_checks chk = checks_at(NOW);
	enum sealed_reason why;

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"x", 1, NOW, &wire,
				     &cctx),
		 0);
	chk.start_ms = NOW + 1; /* the server started after the request was stamped */
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_RESTARTED);
	chk.start_ms = NOW; /* stamped at or after the start: the register covers it */
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 0);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* A step of the wall clock against the monotonic one refuses requests for two windows. */
TEST(clock_step_refuses_instead_of_reopening_the_window)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct sealed_checks chk = checks_at(NOW);
	uint64_t mono = 5000000000ull;
	enum sealed_reason why;

	bootstrap(&sv, set, SVC, NOW - 2 * W, 0, &a);
	/* the server sees its clocks in step: now_ms - mono/1e6 constant */
	chk.now_ms = NOW - W;
	chk.now_ns = mono;
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"a", 1, NOW - W,
				     &wire, &cctx),
		 0);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 0);
	sealed_ctx_cleanup(&sctx);
	/* one window of real time later, the wall clock jumped back by a whole window */
	chk.now_ns = mono + W * 1000000ull;
	chk.now_ms = NOW - W;
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_RESTARTED);
	/* two windows of real time after the step, the register covers the window again */
	chk.now_ns = mono + 3 * W * 1000000ull + 1;
	chk.now_ms = NOW + W + 1;
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"b", 1, chk.now_ms,
				     &wire, &cctx),
		 0);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 0);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* What a server says about a request sent again after a REJECT. */
TEST(retry_check_verdicts)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct sealed_checks chk = checks_at(NOW);
	struct sealed_prior ran, never, old;
	enum sealed_reason why;

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"r", 1, NOW, &wire,
				     &cctx),
		 0);
	ran = cctx.prior;
	CHECK_MEM(ran.id, a.id, SEALED_ID_LEN);
	CHECK_EQ(ran.ts_ms, NOW);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 0);
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &ran, &chk), SEALED_RETRY_DONE);

	/* a request that never arrived: runs once; its original is refused from then on */
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"n", 1, NOW, &wire,
				     &cctx),
		 0);
	never = cctx.prior;
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &never, &chk), SEALED_RETRY_NEW);
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &never, &chk), SEALED_RETRY_DONE);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_REPLAY);

	/* too old for the register to vouch, or predating the start: unknown */
	old = never;
	old.nonce[11] ^= 0x80; /* a counter value never used */
	old.ts_ms = NOW - W - 1;
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &old, &chk), SEALED_RETRY_UNKNOWN);
	old.ts_ms = NOW;
	chk.start_ms = NOW + 1;
	CHECK_EQ(sealed_retry_check(sv.s, sv.strike, &old, &chk), SEALED_RETRY_UNKNOWN);
	CHECK_EQ(sealed_retry_check(sv.s, NULL, &old, &chk), SEALED_RETRY_UNKNOWN);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* A token kept opened after a valid request is still checked per request: expiry and
 * service, and a bit flipped in it is not found in the cache. */
TEST(opened_token_still_checked_per_request)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	uint64_t later = NOW + SEALED_LIFETIME_DEFAULT_MS + 1;

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"1", 1, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_OK);
	CHECK_EQ(sealed_server_opened_tokens(sv.s), 1);
	sealed_ctx_cleanup(&sctx);
	/* the same token for another service, and past its expiry */
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"2", 1, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, "other.svc", NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_WRONG_SERVICE);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"3", 1, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(open_req(&sv, set, SVC, later, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_EXPIRED);
	/* a flipped bit in the token's ciphertext: not the kept one, and it does not open */
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"4", 1, NOW, &wire,
				     &cctx),
		 0);
	wire.data[1 + 40] ^= 0x01;
	CHECK_EQ(open_req(&sv, set, SVC, NOW, req_hdr, wire.data, wire.len, &plain, &sctx),
		 SEALED_REJ_BAD_TOKEN);
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

/* A server that opened the token authenticates its REJECT; the client checks it. */
TEST(reject_authenticated_when_the_token_opened)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a, b;
	struct sealed_ctx cctx, other, sctx;
	struct tls_buf wire = {0}, plain = {0};
	struct sealed_checks chk = checks_at(NOW + 2 * W); /* the request is stale by then */
	uint8_t rhdr[SEALED_HDR_AD_LEN], rej[SEALED_REJECT_MAX], bad[SEALED_REJECT_MAX];
	enum sealed_reason why;
	bool authentic;
	size_t n;

	sealed_hdr_ad(rhdr, R2P2_RESPONSE, R2P2_FIXED_ROUTE);
	bootstrap(&sv, set, SVC, NOW, 0, &a);
	bootstrap(&sv, set, SVC, NOW, 0, &b);
	CHECK_EQ(sealed_seal_request(&b, req_hdr, &self_addr, (const uint8_t *)"o", 1, NOW, &wire,
				     &other),
		 0);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"s", 1, NOW, &wire,
				     &cctx),
		 0);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EBADMSG);
	CHECK_EQ(why, SEALED_REJ_STALE);
	CHECK(sctx.rej_auth);
	n = sealed_reject_seal(&sctx, rhdr, why, rej);
	CHECK_EQ(n, SEALED_REJECT_AUTH_LEN);
	CHECK(!sctx.rej_auth);
	CHECK_EQ(sealed_reject_open(&cctx, rhdr, rej, n, &why, &authentic), 0);
	CHECK(authentic && why == SEALED_REJ_STALE);
	/* every flipped bit, the reason included, and another request's key: refused */
	for (size_t i = 0; i < n * 8; i++) {
		memcpy(bad, rej, n);
		bad[i / 8] ^= (uint8_t)(1u << (i % 8));
		int rc = sealed_reject_open(&cctx, rhdr, bad, n, &why, &authentic);
		CHECK_MSG(rc != 0 || !authentic, "bit %zu", i);
	}
	CHECK_EQ(sealed_reject_open(&other, rhdr, rej, n, &why, &authentic), -EBADMSG);
	/* the clear form is read, never authentic; anything else is no REJECT */
	sealed_reject_encode(SEALED_REJ_BAD_TOKEN, bad);
	CHECK_EQ(sealed_reject_open(&cctx, rhdr, bad, SEALED_REJECT_LEN, &why, &authentic), 0);
	CHECK(!authentic && why == SEALED_REJ_BAD_TOKEN);
	CHECK_EQ(sealed_reject_open(&cctx, rhdr, wire.data, wire.len, &why, &authentic), -ENOMSG);
	/* a token that does not open gives the clear form: nothing to authenticate with */
	wire.data[1 + 8] ^= 1; /* inside the token */
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EBADMSG);
	CHECK(!sctx.rej_auth);
	CHECK_EQ(sealed_reject_seal(&sctx, rhdr, why, rej), SEALED_REJECT_LEN);
	CHECK(sealed_reason_authenticated(SEALED_REJ_STALE) &&
	      !sealed_reason_authenticated(SEALED_REJ_BAD_TOKEN) &&
	      !sealed_reason_authenticated(SEALED_REJ_UNKNOWN_KEY) &&
	      !sealed_reason_authenticated(SEALED_REJ_WRONG_SERVER));
	sealed_ctx_cleanup(&cctx);
	sealed_ctx_cleanup(&other);
	sealed_ctx_cleanup(&sctx);
	sealed_assoc_cleanup(&a);
	sealed_assoc_cleanup(&b);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	server_free(&sv);
	stek_set_put(set);
}

TEST(retry_and_status_encode_decode)
{
	struct sealed_prior p = {.id = {1, 2, 3, 4, 5, 6, 7, 8}, .ts_ms = NOW};
	struct tls_buf b = {0};
	struct sealed_boot_req r;

	p.nonce[0] = 0xde, p.nonce[11] = 5;
	CHECK_EQ(sealed_boot_retry_encode(true, &p, (const uint8_t *)"again", 5, &b), 0);
	CHECK_EQ(b.len, 2 + SEALED_PRIOR_LEN + 5);
	CHECK_EQ(b.data[0], SEALED_BOOT_RETRY);
	CHECK_EQ(sealed_boot_req_parse(b.data, b.len, &r), 0);
	CHECK(r.retry && r.want && r.req_len == 5 && memcmp(r.req, "again", 5) == 0);
	CHECK_MEM(&r.prior.id, p.id, SEALED_ID_LEN);
	CHECK_MEM(&r.prior.nonce, p.nonce, SEALED_NONCE_LEN);
	CHECK_EQ(r.prior.ts_ms, NOW);
	for (size_t n = 0; n < 2 + SEALED_PRIOR_LEN; n++)
		CHECK_EQ(sealed_boot_req_parse(b.data, n, &r), -EBADMSG);
	b.data[1] = 2; /* want is 0 or 1 */
	CHECK_EQ(sealed_boot_req_parse(b.data, b.len, &r), -EBADMSG);
	/* the older decoder takes no retry */
	bool want;
	const uint8_t *req;
	size_t len;
	CHECK_EQ(sealed_boot_req_decode(b.data, b.len, &want, &req, &len), -EBADMSG);

	CHECK_EQ(sealed_boot_status_encode(SEALED_RETRY_DONE, &b), 0);
	CHECK_EQ(sealed_boot_resp_status(b.data, b.len), SEALED_RETRY_DONE);
	CHECK_EQ(sealed_boot_status_encode(SEALED_RETRY_UNKNOWN, &b), 0);
	CHECK_EQ(sealed_boot_resp_status(b.data, b.len), SEALED_RETRY_UNKNOWN);
	CHECK_EQ(sealed_boot_resp_status(b.data, 1), -EBADMSG);
	b.data[1] = 0;
	CHECK_EQ(sealed_boot_resp_status(b.data, 2), -EBADMSG);
	CHECK_EQ(sealed_boot_resp_status((const uint8_t *)"\x00pong", 5), 0);
	tls_buf_cleanup(&b);
}

/* Misuse by the caller: no set or register is an internal error, not a client fault. */
TEST(server_misuse)
{
	struct stek_set *set = std_set();
	struct server sv = server_new(64);
	struct sealed_assoc a;
	struct sealed_ctx cctx, sctx;
	struct tls_buf wire = {0}, plain = {0};
	enum sealed_reason why;
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];

	bootstrap(&sv, set, SVC, NOW, 0, &a);
	CHECK_EQ(sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &wire, &cctx), 0);
	struct sealed_checks chk = checks_at(NOW);
	CHECK_EQ(sealed_open_request(sv.s, NULL, SVC, sv.strike, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EINVAL);
	CHECK_EQ(why, SEALED_REJ_INTERNAL);
	CHECK_EQ(sealed_open_request(sv.s, set, SVC, NULL, &chk, req_hdr, wire.data, wire.len,
				     &plain, &sctx, &why),
		 -EINVAL);
	CHECK_EQ(sealed_assoc_mint(sv.s, NULL, SVC, NOW, 0, blob), -EINVAL);
	CHECK_EQ(rejected(&sv, SEALED_REJ_INTERNAL), 2);
	sealed_ctx_cleanup(&cctx);
	tls_buf_cleanup(&wire);
	tls_buf_cleanup(&plain);
	sealed_assoc_cleanup(&a);
	server_free(&sv);
	stek_set_put(set);
}

MINITEST_MAIN()
