// SPDX-License-Identifier: MIT
/*
 * fuzz_sealed: libFuzzer harness over everything sealed mode parses from the
 * network (daemon/sealed.c): sealed_open_request at the server, and at the client
 * sealed_open_response (with a fixed request context), sealed_reject_decode and
 * sealed_reject_open (an authentic REJECT of the fixed request cannot be forged), and the
 * bootstrap decoders sealed_boot_req_decode and sealed_boot_resp_decode.
 *
 * Input: byte 0 picks the target (mod 5); for 0 (open_request) byte 1 holds flags
 * (bit 0: service kv.svc instead of echo.svc, the token's; bit 1: take the R2P2
 * header bytes from the input instead of a valid sealed request's; bit 2: a strike
 * register that is full) and byte 2 the server clock's skew in units of 100 ms
 * (signed); for 4 (open_response) byte 1 bit 1 likewise; the rest is the message.
 * The server has a fixed STEK (ids a current, 9 previous, b next), a fixed clock
 * and a fresh strike register per input, so the committed seeds, valid sealed
 * requests made with sealed_seal_request, get past the token and the AEAD.
 *
 * Proves: no message makes any of them read or write out of bounds, leak or
 * misbehave; a refusal leaves the output empty, the context disarmed and names one
 * reason; an accepted request is exactly ciphertext-minus-tag long, opens at most
 * once (the same bytes again are a REPLAY), and its response seals; a decoded
 * bootstrap or response points inside the message it came from.
 *
 * Seeds: tests/fuzz/fuzz_sealed/, written by `R2P2_FUZZ_WRITE_SEEDS=DIR ./fuzz_sealed`.
 */
#include "boringssl.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <r2p2/wire.h>

#include "replay.h"
#include "sealed.h"
#include "stek.h"

#define SVC "echo.svc"
#define OTHER_SVC "kv.svc"
#define NOW 1700000000000ull /* unix ms: the server's clock */
#define STRIKE_WINDOW_NS (2 * SEALED_WINDOW_DEFAULT_MS * 1000000ull)

#define K_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K_B "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define K_C "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"

enum { T_OPEN_REQUEST, T_BOOT_REQ, T_BOOT_RESP, T_REJECT, T_OPEN_RESPONSE, T_NUM };

static const uint8_t req_hdr[SEALED_HDR_AD_LEN] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_REQUEST << 4,
						   R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};
static const uint8_t resp_hdr[SEALED_HDR_AD_LEN] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_RESPONSE << 4,
						    R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};

static struct stek_set *stek;
static struct sealed_server *server;
static struct replay *full_strike;  /* one entry, filled: every insert is -ENOSPC */
static struct sealed_ctx fixed_ctx; /* the client's context of one request */

static void die(const char *what)
{
	fprintf(stderr, "fuzz_sealed: %s\n", what);
	exit(2);
}

static void load_stek(void)
{
	static const char text[] = "0000000a current " K_A "\n"
				   "00000009 previous " K_B "\n"
				   "0000000b next " K_C "\n";
	char path[64], err[256];
	int fd = memfd_create("fuzz-sealed-stek", MFD_CLOEXEC);

	if (fd < 0 || fchmod(fd, 0600) != 0 ||
	    write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1))
		die("memfd");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (stek_load(path, &stek, err, sizeof(err)) != 0)
		die(err);
	close(fd);
}

/* ---- seeds ------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const uint8_t *pre, size_t pre_len,
		       const uint8_t *msg, size_t len)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "wb");
	if (!f || fwrite(pre, 1, pre_len, f) != pre_len || fwrite(msg, 1, len, f) != len ||
	    fclose(f) != 0)
		die(p);
}

/* The server the requests are sent to and bound to: 10.0.0.2:8000. */
static const struct r2p2_addr self_addr = {
    .family = AF_INET, .port = 0x401f, .addr = {10, 0, 0, 2}};

/* assoc_for makes the client side of an association sealed under STEK key `key_id`. */
static void assoc_for(uint32_t key_id, struct sealed_assoc *a)
{
	static const uint8_t k[SEALED_KEY_LEN] = "0123456789abcdef";
	static const uint8_t id[SEALED_ID_LEN] = "assoc-01";
	static const uint8_t nonce[12] = "token-nonce!";
	uint8_t blob[SEALED_ASSOC_BLOB_LEN], *p = blob;
	uint64_t expiry = NOW + SEALED_LIFETIME_DEFAULT_MS;

	memcpy(p, k, sizeof(k));
	p += sizeof(k);
	memcpy(p, id, sizeof(id));
	p += sizeof(id);
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(expiry >> (8 * i));
	if (sealed_token_seal(stek_find(stek, key_id), k, id, expiry, SVC, nonce, p) != 0 ||
	    sealed_assoc_init(a, blob, NOW) != 0)
		die("association");
}

static void write_seeds(const char *dir)
{
	struct tls_buf b = {0};
	struct sealed_assoc a;
	struct sealed_ctx ctx;
	uint8_t blob[SEALED_ASSOC_BLOB_LEN] = {0}, rej[SEALED_REJECT_LEN];
	/* target, flags, clock skew (and for the second, the R2P2 header bytes) */
	static const uint8_t open0[] = {T_OPEN_REQUEST, 0, 0};
	static const uint8_t policy_hdr[] = {
	    T_OPEN_REQUEST, 2, 0, R2P2_MAGIC, R2P2_HDR_LEN, R2P2_REQUEST << 4 | 3, R2P2_F_SEALED};
	uint8_t pre[1];

	assoc_for(0xa, &a);
	if (sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"hello", 5, NOW, &b,
				&ctx) != 0)
		die("seal");
	write_seed(dir, "request_hello", open0, sizeof(open0), b.data, b.len);
	if (sealed_seal_request(&a, req_hdr, &self_addr, NULL, 0, NOW, &b, &ctx) != 0)
		die("seal");
	write_seed(dir, "request_empty", open0, sizeof(open0), b.data, b.len);
	if (sealed_seal_request(&a, policy_hdr + 3, &self_addr, (const uint8_t *)"policy 3", 8, NOW,
				&b, &ctx) != 0)
		die("seal");
	write_seed(dir, "request_policy3_hdr", policy_hdr, sizeof(policy_hdr), b.data, b.len);
	assoc_for(0x9, &a);
	if (sealed_seal_request(&a, req_hdr, &self_addr, (const uint8_t *)"previous key", 12, NOW,
				&b, &ctx) != 0)
		die("seal");
	write_seed(dir, "request_previous_key", open0, sizeof(open0), b.data, b.len);

	pre[0] = T_BOOT_REQ;
	write_seed(dir, "boot_req", pre, 1, (const uint8_t *)"\x01request", 8);
	pre[0] = T_BOOT_RESP;
	if (sealed_boot_resp_encode(blob, (const uint8_t *)"resp", 4, &b) != 0)
		die("boot");
	write_seed(dir, "boot_resp", pre, 1, b.data, b.len);
	pre[0] = T_REJECT;
	sealed_reject_encode(SEALED_REJ_EXPIRED, rej);
	write_seed(dir, "reject", pre, 1, rej, sizeof(rej));

	ctx = fixed_ctx;
	if (sealed_seal_response(server, &ctx, resp_hdr, (const uint8_t *)"world", 5, &b) != 0)
		die("seal response");
	write_seed(dir, "response_world", (const uint8_t[]){T_OPEN_RESPONSE, 0}, 2, b.data, b.len);
	sealed_assoc_cleanup(&a);
	tls_buf_cleanup(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const uint8_t full_key[REPLAY_KEY_LEN] = {1};
	const char *seeds = getenv("R2P2_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	load_stek();
	server = sealed_server_new();
	full_strike = replay_new(1, STRIKE_WINDOW_NS);
	if (!server || !full_strike || replay_insert(full_strike, full_key, NOW * 1000000) != 0)
		die("setup");
	memcpy(fixed_ctx.nonce, "fixed-nonce!", SEALED_NONCE_LEN);
	memcpy(fixed_ctx.k_resp, "fixed-resp-key!!", SEALED_KEY_LEN);
	fixed_ctx.armed = true;
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}

/* ---- targets ----------------------------------------------------------------- */

static bool inside(const uint8_t *p, size_t len, const uint8_t *msg, size_t msg_len)
{
	return p >= msg && len <= msg_len && (size_t)(p - msg) <= msg_len - len;
}

static void open_request(const uint8_t *in, size_t in_len)
{
	uint8_t flags = in_len > 0 ? in[0] : 0;
	int8_t skew = in_len > 1 ? (int8_t)in[1] : 0;
	const uint8_t *hdr = req_hdr, *msg = in + (in_len > 2 ? 2 : in_len);
	size_t len = in_len > 2 ? in_len - 2 : 0;
	const char *svc = flags & 1 ? OTHER_SVC : SVC;
	uint64_t now = NOW + (int64_t)skew * 100;
	struct replay *strike = flags & 4 ? full_strike : replay_new(64, STRIKE_WINDOW_NS);
	struct tls_buf out = {0}, resp = {0};
	struct sealed_ctx ctx;
	enum sealed_reason why = SEALED_REASON_MAX + 1;
	uint8_t *copy;
	int rc;

	if (!strike)
		abort();
	if (flags & 2) {
		if (len < SEALED_HDR_AD_LEN)
			goto out;
		hdr = msg;
		msg += SEALED_HDR_AD_LEN;
		len -= SEALED_HDR_AD_LEN;
	}
	/* an exact heap copy: ASan sees any read past the message */
	copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, msg, len);
	memset(&ctx, 0xA5, sizeof(ctx));
	struct sealed_checks chk = {
	    .now_ms = now, .now_ns = now * 1000000ull, .self = &self_addr, .num_self = 1};
	rc = sealed_open_request(server, stek, svc, strike, &chk, hdr, copy, len, &out, &ctx, &why);
	if (rc != 0) {
		if (rc > 0 || why == SEALED_OK || why > SEALED_REASON_MAX || out.len || ctx.armed)
			abort();
		goto free_copy;
	}
	if (why != SEALED_OK || !ctx.armed || len < SEALED_REQ_OVERHEAD ||
	    out.len != len - SEALED_REQ_OVERHEAD || (flags & 4))
		abort();
	/* The very same bytes never open twice. */
	if (sealed_open_request(server, stek, svc, strike, &chk, hdr, copy, len, &resp,
				&(struct sealed_ctx){0}, &why) != -EBADMSG ||
	    why != SEALED_REJ_REPLAY || resp.len)
		abort();
	if (sealed_seal_response(server, &ctx, resp_hdr, out.data, out.len, &resp) != 0 ||
	    resp.len != SEALED_RESP_OVERHEAD + out.len || ctx.armed ||
	    memcmp(resp.data + 1, copy + 1 + SEALED_TOKEN_LEN, SEALED_NONCE_LEN) != 0)
		abort();
free_copy:
	free(copy);
out:
	tls_buf_cleanup(&out);
	tls_buf_cleanup(&resp);
	if (strike != full_strike)
		replay_free(strike);
}

static void open_response(const uint8_t *in, size_t in_len)
{
	uint8_t flags = in_len > 0 ? in[0] : 0;
	const uint8_t *hdr = resp_hdr, *msg = in + (in_len ? 1 : 0);
	size_t len = in_len ? in_len - 1 : 0;
	struct sealed_ctx ctx = fixed_ctx;
	struct tls_buf out = {0};
	uint8_t *copy;
	int rc;

	if (flags & 2) {
		if (len < SEALED_HDR_AD_LEN)
			return;
		hdr = msg;
		msg += SEALED_HDR_AD_LEN;
		len -= SEALED_HDR_AD_LEN;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, msg, len);
	rc = sealed_open_response(&ctx, hdr, copy, len, &out);
	if (rc == 0) {
		if (len < SEALED_RESP_OVERHEAD || out.len != len - SEALED_RESP_OVERHEAD ||
		    ctx.armed)
			abort();
		/* at most one response per request */
		if (sealed_open_response(&ctx, hdr, copy, len, &out) != -EINVAL || out.len)
			abort();
	} else if (rc != -EBADMSG || out.len || !ctx.armed) {
		abort(); /* a forgery leaves the call armed for the genuine response */
	}
	free(copy);
	tls_buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *msg, *req, *blob, *resp;
	size_t len, req_len, resp_len;
	enum sealed_reason why;
	uint8_t *copy;
	bool want;

	if (size < 1)
		return 0;
	switch (data[0] % T_NUM) {
	case T_OPEN_REQUEST:
		open_request(data + 1, size - 1);
		return 0;
	case T_OPEN_RESPONSE:
		open_response(data + 1, size - 1);
		return 0;
	}
	len = size - 1;
	copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, data + 1, len);
	msg = copy;
	switch (data[0] % T_NUM) {
	case T_BOOT_REQ:
		if (sealed_boot_req_decode(msg, len, &want, &req, &req_len) == 0 && req &&
		    (!inside(req, req_len, msg, len) || req_len != len - 1))
			abort();
		break;
	case T_BOOT_RESP:
		if (sealed_boot_resp_decode(msg, len, &blob, &resp, &resp_len) == 0) {
			if (blob && !inside(blob, SEALED_ASSOC_BLOB_LEN, msg, len))
				abort();
			if (!inside(resp, resp_len, msg, len) || resp + resp_len != msg + len)
				abort();
		}
		break;
	case T_REJECT: {
		uint8_t rhdr[SEALED_HDR_AD_LEN];
		bool authentic = true;
		int rc;

		if (sealed_reject_decode(msg, len, &why) == 0 &&
		    (why == SEALED_OK || why > SEALED_REASON_MAX || len != SEALED_REJECT_LEN))
			abort();
		/* a REJECT of the fixed request: nobody but its server can make an authentic one */
		sealed_hdr_ad(rhdr, R2P2_RESPONSE, R2P2_FIXED_ROUTE);
		rc = sealed_reject_open(&fixed_ctx, rhdr, msg, len, &why, &authentic);
		if (rc == 0 && (authentic || len != SEALED_REJECT_LEN || why == SEALED_OK ||
				why > SEALED_REASON_MAX))
			abort();
		if (rc != 0 && rc != -EBADMSG && rc != -ENOMSG)
			abort();
		break;
	}
	}
	free(copy);
	return 0;
}
