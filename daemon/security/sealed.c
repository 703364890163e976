// SPDX-License-Identifier: MIT
/*
 * sealed mode: associations, tokens, and the per-RPC AEAD (see sealed.h and
 * docs/PROTOCOL.md, "sealed mode"). Every primitive is BoringSSL's: HKDF-SHA256,
 * EVP_AEAD AES-128-GCM and AES-256-GCM, SHA-256, RAND_bytes.
 */
#include "boringssl.h"

#include "sealed.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/aead.h>
#include <openssl/bytestring.h>
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <r2p2/wire.h>

#include "replay.h"
#include "sealed_int.h"

#include "be.h"
#include "stek.h"

#define REQ_LABEL "r2p2 sealed request"
#define RESP_LABEL "r2p2 sealed response"
#define REJ_LABEL "r2p2 sealed reject"
#define TOKEN_KEY_LEN 32 /* AES-256-GCM */
#define TOKEN_NONCE_OFF 4
#define TOKEN_CT_OFF 16
#define TOKEN_AD_LEN (4 + sizeof(SEALED_TOKEN_AD_LABEL) - 1)
#define REQ_AD_LEN (SEALED_HDR_AD_LEN + SEALED_REQ_HDR_LEN)
#define RESP_AD_LEN (SEALED_HDR_AD_LEN + SEALED_RESP_HDR_LEN)
/* Token key contexts a worker keeps: current, previous, next, and one spare for a rotation. */
#define TOKEN_CACHE 4
/* Tokens a worker keeps opened (with their prk): a busy association pays the token's
 * AEAD and HKDF-Extract once, not per request. */
#define OPENED_CACHE 16

_Static_assert(SEALED_TOKEN_LEN == 72, "token size is part of the wire format");
_Static_assert(SEALED_ASSOC_BLOB_LEN == 104, "blob size is part of the wire format");
_Static_assert(SEALED_REQ_OVERHEAD == 127 && SEALED_RESP_OVERHEAD == 41, "wire format");
_Static_assert(SEALED_PRIOR_LEN == 28, "wire format");
_Static_assert((R2P2_F_SEALED & R2P2_F_FREE_MASK) == R2P2_F_SEALED && R2P2_F_SEALED != R2P2_F_TLS,
	       "a free flag bit of its own");

/* k_req is used for exactly one request (N never repeats), so its GCM nonce is fixed. */
static const uint8_t zero_nonce[12];

struct token_key {
	bool used;
	uint32_t id;
	uint8_t stek[STEK_KEY_LEN]; /* the STEK key bytes the context was derived from */
	EVP_AEAD_CTX aead;
};

/* A token that opened and carried a valid request: its plaintext and the prk from it. */
struct opened_token {
	bool used;
	uint8_t token[SEALED_TOKEN_LEN];
	uint8_t plain[SEALED_TOKEN_PLAIN_LEN]; /* K | id | expiry | service hash: secret */
	uint8_t prk[32];		       /* secret */
};

struct sealed_server {
	struct sealed_stats stats;
	struct token_key keys[TOKEN_CACHE];
	struct opened_token opened[OPENED_CACHE]; /* wiped with every change of the STEK set */
	unsigned next_evict;
	uint64_t stek_gen; /* the set `keys` were last checked against (stek_set_gen) */
	/* the wall clock as seen against the monotonic one: a step of it means timestamps
	 * no longer match what the strike register covers */
	bool clock_seen;
	int64_t clock_offset_ms;  /* unix ms - monotonic ms at the last request */
	uint64_t unsure_until_ns; /* monotonic: refuse until then after a step */
	/* the service hash tokens are checked against, computed once per name */
	char hashed_name[64];
	uint8_t name_hash[SEALED_SVC_HASH_LEN];
};

/* ---- small helpers ------------------------------------------------------------- */

/* The clear part of a sealed request, pointing into the message (PROTOCOL.md). */
struct req_view {
	const uint8_t *token; /* SEALED_TOKEN_LEN bytes: key id | nonce | ciphertext */
	uint32_t key_id;      /* the STEK key that sealed the token */
	const uint8_t *nonce; /* N, SEALED_NONCE_LEN bytes */
	uint64_t ts_ms;	      /* the client's clock when it sealed */
	const uint8_t *bind;  /* the server it was sent to, SEALED_BIND_LEN bytes */
	const uint8_t *ct;    /* the request's ciphertext and tag */
	size_t ct_len;
};

/* An opened token, pointing into its plaintext: K | id | expiry | service hash. */
struct token_view {
	const uint8_t *key; /* K, SEALED_KEY_LEN bytes */
	const uint8_t *id;  /* association id, SEALED_ID_LEN bytes */
	uint64_t expiry_ms;
	const uint8_t *svc_hash; /* SEALED_SVC_HASH_LEN bytes */
	const uint8_t *prk;	 /* the association's prk, when the token was found opened */
};

/* req_parse reads version | token | N | timestamp | binding | ciphertext (at least a tag). */
static bool req_parse(const uint8_t *msg, size_t len, struct req_view *out)
{
	CBS cbs, token, nonce, key_id, bind;
	uint8_t version;

	CBS_init(&cbs, msg, len);
	if (!CBS_get_u8(&cbs, &version) || version != SEALED_VERSION ||
	    !CBS_get_bytes(&cbs, &token, SEALED_TOKEN_LEN) ||
	    !CBS_get_bytes(&cbs, &nonce, SEALED_NONCE_LEN) || !CBS_get_u64(&cbs, &out->ts_ms) ||
	    !CBS_get_bytes(&cbs, &bind, SEALED_BIND_LEN) || CBS_len(&cbs) < SEALED_TAG_LEN)
		return false;
	key_id = token;
	if (!CBS_get_u32(&key_id, &out->key_id))
		return false;
	out->token = CBS_data(&token);
	out->nonce = CBS_data(&nonce);
	out->bind = CBS_data(&bind);
	out->ct = CBS_data(&cbs);
	out->ct_len = CBS_len(&cbs);
	return true;
}

static bool token_plain_parse(const uint8_t plain[SEALED_TOKEN_PLAIN_LEN], struct token_view *out)
{
	CBS cbs, key, id, hash;

	CBS_init(&cbs, plain, SEALED_TOKEN_PLAIN_LEN);
	if (!CBS_get_bytes(&cbs, &key, SEALED_KEY_LEN) ||
	    !CBS_get_bytes(&cbs, &id, SEALED_ID_LEN) || !CBS_get_u64(&cbs, &out->expiry_ms) ||
	    !CBS_get_bytes(&cbs, &hash, SEALED_SVC_HASH_LEN) || CBS_len(&cbs) != 0)
		return false;
	out->key = CBS_data(&key);
	out->id = CBS_data(&id);
	out->svc_hash = CBS_data(&hash);
	return true;
}

/* sealed_buf_size makes `b` hold `n` bytes (contents undefined) and at least one byte of
 * room; tls_buf_reserve wipes a block it moves away from, and counts the bytes for scrubbing. */
int sealed_buf_size(struct tls_buf *b, size_t n)
{
	if (tls_buf_reserve(b, n ? n : 1) != 0)
		return -ENOMEM;
	b->len = n;
	return 0;
}

/* hdr_ad copies the 4 header bytes bound as associated data, F and L cleared. */
static void hdr_ad(uint8_t *ad, const uint8_t hdr[SEALED_HDR_AD_LEN])
{
	ad[0] = hdr[0];
	ad[1] = hdr[1];
	ad[2] = hdr[2];
	ad[3] = hdr[3] & (uint8_t) ~(R2P2_F_FIRST | R2P2_F_LAST);
}

static void svc_hash(const char *service, uint8_t out[SEALED_SVC_HASH_LEN])
{
	uint8_t h[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)service, strlen(service), h);
	memcpy(out, h, SEALED_SVC_HASH_LEN);
}

/* token_plain_write writes a token's plaintext: K | id | expiry | service hash. */
static int token_plain_write(uint8_t plain[SEALED_TOKEN_PLAIN_LEN],
			     const uint8_t key[SEALED_KEY_LEN], const uint8_t id[SEALED_ID_LEN],
			     uint64_t expiry_ms, const char *service)
{
	uint8_t *hash;
	CBB cbb;

	if (!CBB_init_fixed(&cbb, plain, SEALED_TOKEN_PLAIN_LEN) ||
	    !CBB_add_bytes(&cbb, key, SEALED_KEY_LEN) || !CBB_add_bytes(&cbb, id, SEALED_ID_LEN) ||
	    !CBB_add_u64(&cbb, expiry_ms) || !CBB_add_space(&cbb, &hash, SEALED_SVC_HASH_LEN) ||
	    !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	svc_hash(service, hash);
	return 0;
}

/* derive writes HKDF-Expand(prk, label | N) to `out` (16 bytes). */
static int derive(const uint8_t prk[32], const char *label, size_t label_len,
		  const uint8_t n[SEALED_NONCE_LEN], uint8_t out[SEALED_KEY_LEN])
{
	uint8_t info[32];

	memcpy(info, label, label_len);
	memcpy(info + label_len, n, SEALED_NONCE_LEN);
	return HKDF_expand(out, SEALED_KEY_LEN, EVP_sha256(), prk, 32, info,
			   label_len + SEALED_NONCE_LEN)
		   ? 0
		   : -EIO;
}

/*
 * derive_req_resp writes k_req and k_resp of request N: derive() with the request
 * and the response label. HKDF-Expand of one block is HMAC-SHA256(prk, info | 0x01),
 * so both are computed here from SHA-256 states keyed once with prk's inner and outer
 * pads (RFC 2104): six compressions, no allocation (an HMAC_CTX allocates three
 * digest states per use), every secret state wiped. Pinned by test_sealed's
 * known-answer vectors.
 */
static void derive_req_resp(const uint8_t prk[32], const uint8_t n[SEALED_NONCE_LEN],
			    uint8_t k_req[SEALED_KEY_LEN], uint8_t k_resp[SEALED_KEY_LEN])
{
	static const uint8_t one = 1;
	const char *labels[2] = {REQ_LABEL, RESP_LABEL};
	uint8_t *outs[2] = {k_req, k_resp}, pad[SHA256_CBLOCK], mac[SHA256_DIGEST_LENGTH];
	SHA256_CTX ipad, opad, c;

	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < 32; i++)
		pad[i] ^= prk[i];
	SHA256_Init(&ipad);
	SHA256_Update(&ipad, pad, sizeof(pad));
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	SHA256_Init(&opad);
	SHA256_Update(&opad, pad, sizeof(pad));
	for (int i = 0; i < 2; i++) {
		c = ipad;
		SHA256_Update(&c, labels[i], strlen(labels[i]));
		SHA256_Update(&c, n, SEALED_NONCE_LEN);
		SHA256_Update(&c, &one, 1);
		SHA256_Final(mac, &c);
		c = opad;
		SHA256_Update(&c, mac, sizeof(mac));
		SHA256_Final(mac, &c);
		memcpy(outs[i], mac, SEALED_KEY_LEN);
	}
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(&ipad, sizeof(ipad));
	OPENSSL_cleanse(&opad, sizeof(opad));
	OPENSSL_cleanse(&c, sizeof(c));
}

/* extract writes HKDF-Extract(salt = id, ikm = key) to `prk` (32 bytes). */
static int extract(const uint8_t key[SEALED_KEY_LEN], const uint8_t id[SEALED_ID_LEN],
		   uint8_t prk[32])
{
	size_t n = 0;

	if (!HKDF_extract(prk, &n, EVP_sha256(), key, SEALED_KEY_LEN, id, SEALED_ID_LEN) || n != 32)
		return -EIO;
	return 0;
}

/* gcm128 seals or opens with a one-use AES-128-GCM key; returns 1/0 like EVP_AEAD. */
static int gcm128_seal(const uint8_t key[SEALED_KEY_LEN], const uint8_t *nonce, uint8_t *out,
		       size_t *out_len, size_t max_out, const uint8_t *in, size_t in_len,
		       const uint8_t *ad, size_t ad_len)
{
	EVP_AEAD_CTX ctx;
	int ok;

	if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_128_gcm(), key, SEALED_KEY_LEN, SEALED_TAG_LEN,
			       NULL))
		return 0;
	ok = EVP_AEAD_CTX_seal(&ctx, out, out_len, max_out, nonce, SEALED_NONCE_LEN, in, in_len, ad,
			       ad_len);
	EVP_AEAD_CTX_cleanup(&ctx);
	return ok;
}

static int gcm128_open(const uint8_t key[SEALED_KEY_LEN], const uint8_t *nonce, uint8_t *out,
		       size_t *out_len, size_t max_out, const uint8_t *in, size_t in_len,
		       const uint8_t *ad, size_t ad_len)
{
	EVP_AEAD_CTX ctx;
	int ok;

	if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_128_gcm(), key, SEALED_KEY_LEN, SEALED_TAG_LEN,
			       NULL))
		return 0;
	ok = EVP_AEAD_CTX_open(&ctx, out, out_len, max_out, nonce, SEALED_NONCE_LEN, in, in_len, ad,
			       ad_len);
	EVP_AEAD_CTX_cleanup(&ctx);
	return ok;
}

static void token_ad(uint8_t ad[TOKEN_AD_LEN], const uint8_t key_id[4])
{
	memcpy(ad, key_id, 4);
	memcpy(ad + 4, SEALED_TOKEN_AD_LABEL, sizeof(SEALED_TOKEN_AD_LABEL) - 1);
}

/* ---- client ---------------------------------------------------------------------- */

int sealed_assoc_init(struct sealed_assoc *a, const uint8_t blob[SEALED_ASSOC_BLOB_LEN],
		      uint64_t now_ms)
{
	CBS cbs;

	memset(a, 0, sizeof(*a));
	/* K | id | expiry | token: the sizes add up to the blob's, so no read can fail */
	CBS_init(&cbs, blob, SEALED_ASSOC_BLOB_LEN);
	if (!CBS_copy_bytes(&cbs, a->key, SEALED_KEY_LEN) ||
	    !CBS_copy_bytes(&cbs, a->id, SEALED_ID_LEN) || !CBS_get_u64(&cbs, &a->expiry_ms) ||
	    !CBS_copy_bytes(&cbs, a->token, SEALED_TOKEN_LEN)) {
		sealed_assoc_cleanup(a);
		return -EINVAL;
	}
	if (now_ms >= a->expiry_ms || extract(a->key, a->id, a->prk) != 0 ||
	    !RAND_bytes(a->prefix, sizeof(a->prefix))) {
		int rc = now_ms >= a->expiry_ms ? -ESTALE : -EIO;

		sealed_assoc_cleanup(a);
		return rc;
	}
	a->counter = 0;
	return 0;
}

void sealed_assoc_cleanup(struct sealed_assoc *a)
{
	if (a)
		OPENSSL_cleanse(a, sizeof(*a));
}

void sealed_ctx_cleanup(struct sealed_ctx *ctx)
{
	if (ctx)
		OPENSSL_cleanse(ctx, sizeof(*ctx));
}

int sealed_seal_request(struct sealed_assoc *a, const uint8_t hdr[SEALED_HDR_AD_LEN],
			const struct r2p2_addr *dst, const uint8_t *req, size_t len,
			uint64_t now_ms, struct tls_buf *out, struct sealed_ctx *out_ctx)
{
	uint8_t ad[REQ_AD_LEN], k_req[SEALED_KEY_LEN], *p;
	size_t n = 0;
	int rc;

	out_ctx->armed = false;
	if (now_ms >= a->expiry_ms)
		return -ESTALE;
	if (a->counter == UINT64_MAX)
		return -EOVERFLOW;
	if (len > TLS_MSG_MAX)
		return -EMSGSIZE;
	rc = sealed_buf_size(out, SEALED_REQ_OVERHEAD + len);
	if (rc)
		return rc;

	/* version | token | N | timestamp | binding, with N = prefix | counter: the
	 * counter is consumed even if sealing fails below */
	memset(k_req, 0, sizeof(k_req));
	p = out->data;
	*p++ = SEALED_VERSION;
	memcpy(p, a->token, SEALED_TOKEN_LEN);
	p += SEALED_TOKEN_LEN;
	memcpy(p, a->prefix, SEALED_PREFIX_LEN);
	p = be_put64(p + SEALED_PREFIX_LEN, a->counter++);
	p = be_put64(p, now_ms);
	tls_bind_encode(dst, p);
	memcpy(out_ctx->nonce, out->data + 1 + SEALED_TOKEN_LEN, SEALED_NONCE_LEN);
	memcpy(out_ctx->prior.id, a->id, SEALED_ID_LEN);
	memcpy(out_ctx->prior.nonce, out_ctx->nonce, SEALED_NONCE_LEN);
	out_ctx->prior.ts_ms = now_ms;
	memcpy(out_ctx->prk, a->prk, sizeof(out_ctx->prk));

	hdr_ad(ad, hdr);
	memcpy(ad + SEALED_HDR_AD_LEN, out->data, SEALED_REQ_HDR_LEN);
	rc = -EIO;
	derive_req_resp(a->prk, out_ctx->nonce, k_req, out_ctx->k_resp);
	if (!gcm128_seal(k_req, zero_nonce, out->data + SEALED_REQ_HDR_LEN, &n,
			 len + SEALED_TAG_LEN, req, len, ad, sizeof(ad)) ||
	    n != len + SEALED_TAG_LEN)
		goto out;
	out_ctx->armed = true;
	rc = 0;
out:
	OPENSSL_cleanse(k_req, sizeof(k_req));
	if (rc) {
		sealed_ctx_cleanup(out_ctx);
		out->len = 0;
	}
	return rc;
}

int sealed_open_response(struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
			 const uint8_t *msg, size_t len, struct tls_buf *out)
{
	uint8_t ad[RESP_AD_LEN];
	size_t ct_len, n = 0;

	out->len = 0;
	if (!ctx->armed)
		return -EINVAL;
	if (len < SEALED_RESP_OVERHEAD || msg[0] != SEALED_VERSION ||
	    CRYPTO_memcmp(msg + 1, ctx->nonce, SEALED_NONCE_LEN) != 0)
		return -EBADMSG;
	ct_len = len - SEALED_RESP_HDR_LEN;
	if (sealed_buf_size(out, ct_len - SEALED_TAG_LEN) != 0)
		return -ENOMEM;
	hdr_ad(ad, hdr);
	memcpy(ad + SEALED_HDR_AD_LEN, msg, SEALED_RESP_HDR_LEN);
	if (!gcm128_open(ctx->k_resp, msg + 1 + SEALED_NONCE_LEN, out->data, &n, out->cap,
			 msg + SEALED_RESP_HDR_LEN, ct_len, ad, sizeof(ad)) ||
	    n != ct_len - SEALED_TAG_LEN) {
		/* a forgery leaves the call armed: the genuine response may still come */
		out->len = 0;
		return -EBADMSG;
	}
	out->len = n;
	sealed_ctx_cleanup(ctx);
	return 0;
}

/* ---- server ---------------------------------------------------------------------- */

struct sealed_server *sealed_server_new(void)
{
	struct sealed_server *s = calloc(1, sizeof(*s));

	if (!s)
		errno = ENOMEM;
	return s;
}

/* token_key_wipe empties a cache entry: the AES key schedule lives inside the
 * EVP_AEAD_CTX, which EVP_AEAD_CTX_cleanup does not zero, so the entry is cleansed too. */
static void token_key_wipe(struct token_key *e)
{
	if (e->used)
		EVP_AEAD_CTX_cleanup(&e->aead);
	OPENSSL_cleanse(e, sizeof(*e));
}

void sealed_server_free(struct sealed_server *s)
{
	if (!s)
		return;
	for (int i = 0; i < TOKEN_CACHE; i++)
		token_key_wipe(&s->keys[i]);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* key_in_set says whether the STEK key `e` was derived from is in `stek`, id and bytes. */
static bool key_in_set(const struct stek_set *stek, const struct token_key *e)
{
	const struct stek_key *k = stek ? stek_find(stek, e->id) : NULL;

	return k && CRYPTO_memcmp(k->key, e->stek, STEK_KEY_LEN) == 0;
}

void sealed_server_forget_keys(struct sealed_server *s, const struct stek_set *stek)
{
	if (!s)
		return;
	for (int i = 0; i < TOKEN_CACHE; i++)
		if (s->keys[i].used && !key_in_set(stek, &s->keys[i]))
			token_key_wipe(&s->keys[i]);
	/* opened tokens are few and cheap to open again: all go with any change of the set */
	OPENSSL_cleanse(s->opened, sizeof(s->opened));
	s->stek_gen = stek_set_gen(stek);
}

size_t sealed_server_opened_tokens(const struct sealed_server *s)
{
	size_t n = 0;

	for (int i = 0; i < OPENED_CACHE; i++)
		n += s->opened[i].used;
	return n;
}

/* opened_slot is where token `token` may be kept: its nonce is random. */
static struct opened_token *opened_slot(struct sealed_server *s, const uint8_t *token)
{
	uint32_t h;

	memcpy(&h, token + TOKEN_NONCE_OFF, sizeof(h)); /* any byte order: it is random */
	return &s->opened[h % OPENED_CACHE];
}

/* opened_find returns the kept opening of `token`, or NULL. */
static const struct opened_token *opened_find(struct sealed_server *s, const uint8_t *token)
{
	const struct opened_token *e = opened_slot(s, token);

	return e->used && memcmp(e->token, token, SEALED_TOKEN_LEN) == 0 ? e : NULL;
}

/* opened_put keeps `token`, opened to `plain`, and its `prk` (replacing its slot). */
static void opened_put(struct sealed_server *s, const uint8_t *token,
		       const uint8_t plain[SEALED_TOKEN_PLAIN_LEN], const uint8_t prk[32])
{
	struct opened_token *e = opened_slot(s, token);

	e->used = true;
	memcpy(e->token, token, SEALED_TOKEN_LEN);
	memcpy(e->plain, plain, SEALED_TOKEN_PLAIN_LEN);
	memcpy(e->prk, prk, 32);
}

size_t sealed_server_cached_keys(const struct sealed_server *s)
{
	size_t n = 0;

	for (int i = 0; i < TOKEN_CACHE; i++)
		n += s->keys[i].used;
	return n;
}

bool sealed_server_caches_key(const struct sealed_server *s, const struct stek_key *k)
{
	for (int i = 0; i < TOKEN_CACHE; i++)
		if (s->keys[i].used && CRYPTO_memcmp(s->keys[i].stek, k->key, STEK_KEY_LEN) == 0)
			return true;
	return false;
}

void sealed_server_stats(const struct sealed_server *s, struct sealed_stats *out)
{
	*out = s->stats;
}

static int token_key_ctx(const struct stek_key *k, EVP_AEAD_CTX *ctx)
{
	uint8_t key[TOKEN_KEY_LEN];
	int ok;

	if (stek_derive(k, SEALED_TOKEN_LABEL, key, sizeof(key)) != 0)
		return -EIO;
	ok = EVP_AEAD_CTX_init(ctx, EVP_aead_aes_256_gcm(), key, sizeof(key), SEALED_TAG_LEN, NULL);
	OPENSSL_cleanse(key, sizeof(key));
	return ok ? 0 : -EIO;
}

/*
 * token_key returns the cached AEAD context for STEK key `k` of `stek`, deriving it on
 * a miss. Entries are matched on id and key bytes, so a new set that reuses an id with
 * another key never opens tokens with the old one; and the first use under a set the
 * cache has not seen wipes the entries of keys that set no longer has.
 */
static const EVP_AEAD_CTX *token_key(struct sealed_server *s, const struct stek_set *stek,
				     const struct stek_key *k)
{
	struct token_key *e = NULL;

	if (s->stek_gen != stek_set_gen(stek))
		sealed_server_forget_keys(s, stek);
	for (int i = 0; i < TOKEN_CACHE; i++) {
		struct token_key *c = &s->keys[i];
		if (c->used && c->id == k->id && CRYPTO_memcmp(c->stek, k->key, STEK_KEY_LEN) == 0)
			return &c->aead;
		if (!c->used && !e)
			e = c; /* a slot a forgotten key left free */
	}
	if (!e) {
		e = &s->keys[s->next_evict];
		s->next_evict = (s->next_evict + 1) % TOKEN_CACHE;
	}
	token_key_wipe(e);
	if (token_key_ctx(k, &e->aead) != 0)
		return NULL;
	e->used = true;
	e->id = k->id;
	memcpy(e->stek, k->key, STEK_KEY_LEN);
	return &e->aead;
}

int sealed_token_seal(const struct stek_key *k, const uint8_t key[SEALED_KEY_LEN],
		      const uint8_t id[SEALED_ID_LEN], uint64_t expiry_ms, const char *service,
		      const uint8_t *nonce, uint8_t out[SEALED_TOKEN_LEN])
{
	uint8_t plain[SEALED_TOKEN_PLAIN_LEN], ad[TOKEN_AD_LEN], *out_nonce;
	EVP_AEAD_CTX ctx;
	size_t n = 0;
	CBB cbb;
	int rc = -EIO;

	/* key id | nonce, then the ciphertext of the plaintext */
	if (!CBB_init_fixed(&cbb, out, TOKEN_CT_OFF) || !CBB_add_u32(&cbb, k->id) ||
	    !CBB_add_space(&cbb, &out_nonce, 12) || !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	if (nonce)
		memcpy(out_nonce, nonce, 12);
	else if (!RAND_bytes(out_nonce, 12))
		return -EIO;
	memset(plain, 0, sizeof(plain));
	if (token_plain_write(plain, key, id, expiry_ms, service) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	token_ad(ad, out);
	if (token_key_ctx(k, &ctx) != 0)
		goto out;
	if (EVP_AEAD_CTX_seal(&ctx, out + TOKEN_CT_OFF, &n, SEALED_TOKEN_LEN - TOKEN_CT_OFF,
			      out + TOKEN_NONCE_OFF, 12, plain, sizeof(plain), ad, sizeof(ad)) &&
	    n == SEALED_TOKEN_LEN - TOKEN_CT_OFF)
		rc = 0;
	EVP_AEAD_CTX_cleanup(&ctx);
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	return rc;
}

int sealed_assoc_mint(struct sealed_server *s, const struct stek_set *stek, const char *service,
		      uint64_t now_ms, uint64_t lifetime_ms,
		      uint8_t out_blob[SEALED_ASSOC_BLOB_LEN])
{
	uint8_t *key, *token;
	uint64_t expiry;
	CBB cbb;
	int rc;

	if (!stek)
		return -EINVAL;
	if (!lifetime_ms)
		lifetime_ms = SEALED_LIFETIME_DEFAULT_MS;
	expiry = now_ms > UINT64_MAX - lifetime_ms ? UINT64_MAX : now_ms + lifetime_ms;
	/* K | id | expiry | token */
	if (!CBB_init_fixed(&cbb, out_blob, SEALED_ASSOC_BLOB_LEN) ||
	    !CBB_add_space(&cbb, &key, SEALED_KEY_LEN + SEALED_ID_LEN) ||
	    !CBB_add_u64(&cbb, expiry) || !CBB_add_space(&cbb, &token, SEALED_TOKEN_LEN) ||
	    !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	if (!RAND_bytes(key, SEALED_KEY_LEN + SEALED_ID_LEN))
		return -EIO;
	rc = sealed_token_seal(stek_current(stek), key, key + SEALED_KEY_LEN, expiry, service, NULL,
			       token);
	if (rc) {
		OPENSSL_cleanse(out_blob, SEALED_ASSOC_BLOB_LEN);
		return rc;
	}
	s->stats.minted++;
	return 0;
}

static bool hdr_is_sealed_request(const uint8_t hdr[SEALED_HDR_AD_LEN])
{
	return hdr[0] == R2P2_MAGIC && hdr[1] == R2P2_HDR_LEN && (hdr[2] >> 4) == R2P2_REQUEST &&
	       (hdr[3] & R2P2_F_FREE_MASK) == R2P2_F_SEALED;
}

/*
 * open_token opens the token of `v` and checks it was minted for `service` and has
 * not expired at `now_ms`. `plain` receives the plaintext `out` points into.
 * Returns 0, or -EBADMSG / -EIO with the reason in `*why`.
 */
static int open_token(struct sealed_server *s, const struct stek_set *stek, const char *service,
		      uint64_t now_ms, const struct req_view *v,
		      uint8_t plain[SEALED_TOKEN_PLAIN_LEN], struct token_view *out,
		      enum sealed_reason *why)
{
	uint8_t tad[TOKEN_AD_LEN], hash[SEALED_SVC_HASH_LEN];
	const struct stek_key *k;
	const EVP_AEAD_CTX *tctx;
	size_t n = 0;

	*why = SEALED_REJ_UNKNOWN_KEY;
	k = stek_find(stek, v->key_id);
	if (!k)
		return -EBADMSG;
	*why = SEALED_REJ_INTERNAL;
	tctx = token_key(s, stek, k); /* also forgets what an older STEK set opened */
	if (!tctx)
		return -EIO;
	*why = SEALED_REJ_BAD_TOKEN;
	const struct opened_token *kept = opened_find(s, v->token);
	if (kept) {
		memcpy(plain, kept->plain, SEALED_TOKEN_PLAIN_LEN);
	} else {
		token_ad(tad, v->token);
		if (!EVP_AEAD_CTX_open(tctx, plain, &n, SEALED_TOKEN_PLAIN_LEN,
				       v->token + TOKEN_NONCE_OFF, 12, v->token + TOKEN_CT_OFF,
				       SEALED_TOKEN_LEN - TOKEN_CT_OFF, tad, sizeof(tad)) ||
		    n != SEALED_TOKEN_PLAIN_LEN)
			return -EBADMSG;
	}
	if (!token_plain_parse(plain, out))
		return -EBADMSG;
	out->prk = kept ? kept->prk : NULL;
	*why = SEALED_REJ_WRONG_SERVICE;
	if (strcmp(s->hashed_name, service) != 0) {
		svc_hash(service, s->name_hash);
		if (strlen(service) < sizeof(s->hashed_name))
			memcpy(s->hashed_name, service, strlen(service) + 1);
		else
			s->hashed_name[0] = '\0'; /* not cached: hashed again next time */
	}
	memcpy(hash, s->name_hash, sizeof(hash));
	if (CRYPTO_memcmp(hash, out->svc_hash, sizeof(hash)) != 0)
		return -EBADMSG;
	*why = SEALED_REJ_EXPIRED;
	if (now_ms >= out->expiry_ms)
		return -EBADMSG;
	return 0;
}

/* in_window says whether the client's `ts_ms` is within `window_ms` of `now_ms`. */
static bool in_window(uint64_t ts_ms, uint64_t now_ms, uint64_t window_ms)
{
	return !((ts_ms > now_ms && ts_ms - now_ms > window_ms) ||
		 (now_ms > ts_ms && now_ms - ts_ms > window_ms));
}

/*
 * strike_key_of names a request in the strike register: id | N, zero-padded. The
 * register picks slots with SipHash under its own secret, so the key needs no hash
 * of its own: it only has to be distinct for distinct (id, N), which it is.
 */
static void strike_key_of(const uint8_t id[SEALED_ID_LEN], const uint8_t nonce[SEALED_NONCE_LEN],
			  uint8_t out[REPLAY_KEY_LEN])
{
	_Static_assert(SEALED_ID_LEN + SEALED_NONCE_LEN <= REPLAY_KEY_LEN, "id | N fits a key");
	memcpy(out, id, SEALED_ID_LEN);
	memcpy(out + SEALED_ID_LEN, nonce, SEALED_NONCE_LEN);
	memset(out + SEALED_ID_LEN + SEALED_NONCE_LEN, 0,
	       REPLAY_KEY_LEN - SEALED_ID_LEN - SEALED_NONCE_LEN);
}

/*
 * open_body derives the association's `prk` from the token, and from it the
 * request's keys (k_resp into `k_resp`), and opens the request's ciphertext into
 * `out`, with the header `hdr` and the clear part of `msg` as associated data.
 * Returns 0, or -EIO / -ENOMEM / -EBADMSG with the reason in `*why`.
 */
static int open_body(const struct token_view *t, const struct req_view *v,
		     const uint8_t hdr[SEALED_HDR_AD_LEN], const uint8_t *msg, uint8_t prk[32],
		     uint8_t k_resp[SEALED_KEY_LEN], struct tls_buf *out, enum sealed_reason *why)
{
	uint8_t ad[REQ_AD_LEN], k_req[SEALED_KEY_LEN];
	size_t n = 0;
	int rc;

	memset(k_req, 0, sizeof(k_req));
	*why = SEALED_REJ_INTERNAL;
	rc = -EIO;
	if (t->prk)
		memcpy(prk, t->prk, 32);
	else if (extract(t->key, t->id, prk) != 0)
		goto out;
	derive_req_resp(prk, v->nonce, k_req, k_resp);
	rc = -ENOMEM;
	if (sealed_buf_size(out, v->ct_len - SEALED_TAG_LEN) != 0)
		goto out;
	*why = SEALED_REJ_BAD_AEAD;
	rc = -EBADMSG;
	hdr_ad(ad, hdr);
	memcpy(ad + SEALED_HDR_AD_LEN, msg, SEALED_REQ_HDR_LEN);
	if (!gcm128_open(k_req, zero_nonce, out->data, &n, out->cap, v->ct, v->ct_len, ad,
			 sizeof(ad)) ||
	    n != v->ct_len - SEALED_TAG_LEN)
		goto out;
	out->len = n;
	rc = 0;
out:
	OPENSSL_cleanse(k_req, sizeof(k_req));
	return rc;
}

/*
 * strike_insert records the request as seen, on behalf of its association; -EBADMSG
 * when it cannot be (`*why`). A full register, or an association holding its share
 * of it, refuses: the client then sends the request through tls (sealed_retry_check).
 */
static int strike_insert(struct replay *strike, const uint8_t key[REPLAY_KEY_LEN],
			 const struct token_view *t, uint64_t ts_ms, uint64_t now_ns,
			 enum sealed_reason *why)
{
	struct replay_owner owner = {.id = t->id, .len = SEALED_ID_LEN};

	switch (replay_insert_owned(strike, key, &owner, ts_ms, now_ns)) {
	case 0:
		return 0;
	case -EEXIST: /* another worker took the same request meanwhile */
		*why = SEALED_REJ_REPLAY;
		return -EBADMSG;
	case -EDQUOT:
		*why = SEALED_REJ_SHARE;
		return -EBADMSG;
	default: /* -ENOSPC full, or -ESTALE stamped before a retry found it full */
		*why = SEALED_REJ_FULL;
		return -EBADMSG;
	}
}

/*
 * clock_unsure watches the wall clock against the monotonic one: after a step of
 * more than half a window, timestamps no longer say what the strike register
 * covers, so the server vouches for nothing until two windows have passed.
 */
static bool clock_unsure(struct sealed_server *s, const struct sealed_checks *chk,
			 uint64_t window_ms)
{
	int64_t offset = (int64_t)chk->now_ms - (int64_t)(chk->now_ns / 1000000u);
	int64_t drift = offset - s->clock_offset_ms;

	if (s->clock_seen && (drift > (int64_t)window_ms / 2 || -drift > (int64_t)window_ms / 2))
		s->unsure_until_ns = chk->now_ns + 2 * window_ms * 1000000u;
	s->clock_seen = true;
	s->clock_offset_ms = offset;
	return chk->now_ns < s->unsure_until_ns;
}

/*
 * may_predate_start says whether a request stamped `ts_ms` could predate the
 * server's start, when its strike register was empty. The previous process had
 * stopped before this one started (it held the ports), so this holds as long as
 * the fleet's clocks agree to within the time a restart takes.
 */
static bool may_predate_start(uint64_t ts_ms, const struct sealed_checks *chk)
{
	return chk->start_ms && ts_ms < chk->start_ms;
}

/* open_checks runs the checks before the AEAD: binding, token, clocks, window. */
static int open_checks(struct sealed_server *s, const struct stek_set *stek, const char *service,
		       const struct sealed_checks *chk, uint64_t window_ms,
		       const struct req_view *v, uint8_t plain[SEALED_TOKEN_PLAIN_LEN],
		       struct token_view *t, uint8_t strike_key[REPLAY_KEY_LEN],
		       enum sealed_reason *why)
{
	int rc;

	*why = SEALED_REJ_WRONG_SERVER;
	if (!tls_bind_names(v->bind, chk->self, chk->num_self, chk->port))
		return -EBADMSG;
	rc = open_token(s, stek, service, chk->now_ms, v, plain, t, why);
	if (rc)
		return rc;
	*why = SEALED_REJ_STALE;
	if (!in_window(v->ts_ms, chk->now_ms, window_ms))
		return -EBADMSG;
	/* a fresh-looking stamp is what a restart or a clock step makes unsure */
	*why = SEALED_REJ_RESTARTED;
	if (clock_unsure(s, chk, window_ms) || may_predate_start(v->ts_ms, chk))
		return -EBADMSG;
	/* The key goes in only after the AEAD verified (strike_insert): a forgery must not
	 * take the key of the genuine request. A replay is refused there, at the cost of
	 * one AEAD, what any forged body under a genuine token costs too; every genuine
	 * request saves a second look-up and lock. */
	strike_key_of(t->id, v->nonce, strike_key);
	return 0;
}

/* reject_key leaves in `ctx` the key of an authenticated REJECT of request (`t`, `nonce`). */
static void reject_key(const struct token_view *t, const uint8_t nonce[SEALED_NONCE_LEN],
		       struct sealed_ctx *ctx)
{
	uint8_t prk[32];

	if (extract(t->key, t->id, prk) == 0 &&
	    derive(prk, REJ_LABEL, sizeof(REJ_LABEL) - 1, nonce, ctx->k_rej) == 0)
		ctx->rej_auth = true;
	OPENSSL_cleanse(prk, sizeof(prk));
}

/* reject_tag computes the tag of an authenticated REJECT `msg` (its first 3 bytes). */
static void reject_tag(const uint8_t k_rej[SEALED_KEY_LEN], const uint8_t hdr[SEALED_HDR_AD_LEN],
		       const uint8_t msg[SEALED_REJECT_LEN], uint8_t tag[SEALED_REJECT_TAG_LEN])
{
	uint8_t in[SEALED_HDR_AD_LEN + SEALED_REJECT_LEN], mac[32];
	unsigned n = 0;

	hdr_ad(in, hdr);
	memcpy(in + SEALED_HDR_AD_LEN, msg, SEALED_REJECT_LEN);
	if (!HMAC(EVP_sha256(), k_rej, SEALED_KEY_LEN, in, sizeof(in), mac, &n))
		memset(mac, 0, sizeof(mac)); /* verifies nothing: the receiver's tag differs */
	memcpy(tag, mac, SEALED_REJECT_TAG_LEN);
}

size_t sealed_reject_seal(struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
			  enum sealed_reason reason, uint8_t out[SEALED_REJECT_MAX])
{
	sealed_reject_encode(reason, out);
	if (!ctx->rej_auth)
		return SEALED_REJECT_LEN;
	out[1] = SEALED_REJECT_AUTH_MARK;
	reject_tag(ctx->k_rej, hdr, out, out + SEALED_REJECT_LEN);
	OPENSSL_cleanse(ctx->k_rej, sizeof(ctx->k_rej));
	ctx->rej_auth = false;
	return SEALED_REJECT_AUTH_LEN;
}

int sealed_reject_open(const struct sealed_ctx *ctx, const uint8_t hdr[SEALED_HDR_AD_LEN],
		       const uint8_t *msg, size_t len, enum sealed_reason *out_reason,
		       bool *out_authentic)
{
	uint8_t k_rej[SEALED_KEY_LEN], tag[SEALED_REJECT_TAG_LEN], clear[SEALED_REJECT_LEN];
	int rc = -EBADMSG;

	*out_authentic = false;
	if (sealed_reject_decode(msg, len, out_reason) == 0)
		return 0;
	if (len != SEALED_REJECT_AUTH_LEN || msg[1] != SEALED_REJECT_AUTH_MARK)
		return -ENOMSG;
	memcpy(clear, msg, SEALED_REJECT_LEN);
	clear[1] = SEALED_REJECT_MARK;
	if (sealed_reject_decode(clear, SEALED_REJECT_LEN, out_reason) != 0)
		return -ENOMSG;
	if (derive(ctx->prk, REJ_LABEL, sizeof(REJ_LABEL) - 1, ctx->nonce, k_rej) != 0)
		return -EBADMSG;
	reject_tag(k_rej, hdr, msg, tag);
	if (CRYPTO_memcmp(tag, msg + SEALED_REJECT_LEN, SEALED_REJECT_TAG_LEN) == 0) {
		*out_authentic = true;
		rc = 0;
	}
	OPENSSL_cleanse(k_rej, sizeof(k_rej));
	return rc;
}

int sealed_open_request(struct sealed_server *s, const struct stek_set *stek, const char *service,
			struct replay *strike, const struct sealed_checks *chk,
			const uint8_t hdr[SEALED_HDR_AD_LEN], const uint8_t *msg, size_t len,
			struct tls_buf *out, struct sealed_ctx *out_ctx,
			enum sealed_reason *out_reason)
{
	uint8_t plain[SEALED_TOKEN_PLAIN_LEN], strike_key[REPLAY_KEY_LEN], prk[32];
	uint8_t k_resp[SEALED_KEY_LEN];
	enum sealed_reason why = SEALED_REJ_INTERNAL;
	uint64_t window_ms = chk->window_ms ? chk->window_ms : SEALED_WINDOW_DEFAULT_MS;
	struct token_view t;
	struct req_view v;
	bool opened = false; /* the token opened: a refusal can be authenticated */
	int rc = -EINVAL;

	out->len = 0;
	out_ctx->armed = false;
	memset(plain, 0, sizeof(plain));
	memset(prk, 0, sizeof(prk));
	if (!stek || !strike || !service)
		goto out;
	why = SEALED_REJ_MALFORMED;
	rc = -EBADMSG;
	if (!hdr_is_sealed_request(hdr) || !req_parse(msg, len, &v))
		goto out;
	rc = open_checks(s, stek, service, chk, window_ms, &v, plain, &t, strike_key, &why);
	opened = why != SEALED_REJ_MALFORMED && why != SEALED_REJ_WRONG_SERVER &&
		 why != SEALED_REJ_UNKNOWN_KEY && why != SEALED_REJ_BAD_TOKEN &&
		 !(rc && why == SEALED_REJ_INTERNAL);
	if (rc)
		goto out;
	rc = open_body(&t, &v, hdr, msg, prk, k_resp, out, &why);
	if (rc)
		goto out;
	rc = strike_insert(strike, strike_key, &t, v.ts_ms, chk->now_ns, &why);
	if (rc)
		goto out;

	if (!t.prk) /* a token that carried a valid request: keep it opened */
		opened_put(s, v.token, plain, prk);
	memcpy(out_ctx->k_resp, k_resp, SEALED_KEY_LEN);
	memcpy(out_ctx->nonce, v.nonce, SEALED_NONCE_LEN);
	out_ctx->armed = true;
	why = SEALED_OK;
	rc = 0;
out:
	if (rc) {
		sealed_ctx_cleanup(out_ctx);
		if (opened) /* before `plain`, which holds K, is wiped */
			reject_key(&t, v.nonce, out_ctx);
	}
	OPENSSL_cleanse(plain, sizeof(plain));
	OPENSSL_cleanse(prk, sizeof(prk));
	OPENSSL_cleanse(k_resp, sizeof(k_resp));
	*out_reason = why;
	if (rc) {
		if (out->len)
			OPENSSL_cleanse(out->data, out->len);
		out->len = 0;
		s->stats.rejected[why]++;
	} else {
		s->stats.opened++;
	}
	return rc;
}

enum sealed_retry_status sealed_retry_check(struct sealed_server *s, struct replay *strike,
					    const struct sealed_prior *prior,
					    const struct sealed_checks *chk)
{
	uint64_t window_ms = chk->window_ms ? chk->window_ms : SEALED_WINDOW_DEFAULT_MS;
	struct replay_owner owner = {.id = prior->id, .len = SEALED_ID_LEN};
	uint8_t key[REPLAY_KEY_LEN];

	strike_key_of(prior->id, prior->nonce, key);
	if (strike && replay_check(strike, key, chk->now_ns) != 0)
		return SEALED_RETRY_DONE;
	/* The register holds every request accepted in the last two windows: a request
	 * stamped ts could be accepted until ts + window, so its absence proves it never
	 * ran only while now < ts + window (and never before the register existed). */
	if (!strike || clock_unsure(s, chk, window_ms) || may_predate_start(prior->ts_ms, chk) ||
	    !in_window(prior->ts_ms, chk->now_ms, window_ms))
		return SEALED_RETRY_UNKNOWN;
	/* From now on the original can never run here: its key is held or, with the
	 * register full or the association holding its share, every request of the
	 * association stamped up to it is refused (`full`). */
	if (replay_insert_or_floor(strike, key, &owner, prior->ts_ms, chk->now_ns) == -EEXIST)
		return SEALED_RETRY_DONE; /* it ran on another worker meanwhile */
	return SEALED_RETRY_NEW;
}

int sealed_seal_response(struct sealed_server *s, struct sealed_ctx *ctx,
			 const uint8_t hdr[SEALED_HDR_AD_LEN], const uint8_t *resp, size_t len,
			 struct tls_buf *out)
{
	uint8_t ad[RESP_AD_LEN];
	size_t n = 0;
	int rc;

	if (!ctx->armed)
		return -EINVAL;
	if (len > TLS_MSG_MAX)
		return -EMSGSIZE;
	rc = sealed_buf_size(out, SEALED_RESP_OVERHEAD + len);
	if (rc)
		return rc;
	out->data[0] = SEALED_VERSION;
	memcpy(out->data + 1, ctx->nonce, SEALED_NONCE_LEN);
	/*
	 * R is random, not fixed like the request's nonce: a request replayed to another
	 * server (strike registers are per server) makes a second response under the same
	 * k_resp, and GCM must never see one (key, nonce) twice.
	 */
	if (!RAND_bytes(out->data + 1 + SEALED_NONCE_LEN, SEALED_NONCE_LEN)) {
		rc = -EIO;
		goto out;
	}
	hdr_ad(ad, hdr);
	memcpy(ad + SEALED_HDR_AD_LEN, out->data, SEALED_RESP_HDR_LEN);
	rc = -EIO;
	if (!gcm128_seal(ctx->k_resp, out->data + 1 + SEALED_NONCE_LEN,
			 out->data + SEALED_RESP_HDR_LEN, &n, len + SEALED_TAG_LEN, resp, len, ad,
			 sizeof(ad)) ||
	    n != len + SEALED_TAG_LEN)
		goto out;
	s->stats.responses++;
	rc = 0;
out:
	sealed_ctx_cleanup(ctx);
	if (rc)
		out->len = 0;
	return rc;
}
