// SPDX-License-Identifier: MIT
/*
 * tls.c: tls mode, one RPC = one TLS 1.3 exchange (BoringSSL) over memory BIOs.
 *
 * The byte layout is docs/PROTOCOL.md, "tls mode"; the contract is tls.h. What
 * this file adds is the reasoning:
 *
 * - Exactly once. A request reaches the app either as 0-RTT data the server
 *   accepted after its ClientHello random went into the strike register, or as
 *   1-RTT data after the client's Finished, on a handshake that lives in the
 *   pending table under a single-use id. A replayed first flight finds its random
 *   in the register and gets its early data refused; a replayed second flight
 *   finds no pending handshake.
 * - Nothing leaves unverified. Early data is only offered with a ticket, i.e. to
 *   a server that proved the certificate chain of this very service on an earlier
 *   handshake (tickets are cached per service name); a first contact sends the
 *   request only after BoringSSL verified chain and name.
 * - Messages are framed inside TLS: each direction's application data is one
 *   message, a 4-byte big-endian length then the bytes, so a flight cut at a
 *   record boundary is refused instead of handing a prefix up.
 *
 * This file holds the buffers, the framing and the BoringSSL set-up both sides use;
 * tls_client.c is the client side (ticket cache, calls), tls_server.c the server
 * side (service contexts, 0-RTT admission, pending handshakes); tls_int.h is what
 * they share.
 */
#include "boringssl.h"

#include "tls_int.h"

#include "be.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/ssl.h>

_Static_assert((TLS_PENDING_MAX & (TLS_PENDING_MAX - 1)) == 0, "a power of two");
_Static_assert(TLS_MSG_PREFIX_LEN == 4, "PROTOCOL.md");

void tls_buf_cleanup(struct tls_buf *b)
{
	if (!b)
		return;
	if (b->data)
		OPENSSL_cleanse(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = b->dirty = 0;
}

int tls_buf_reserve(struct tls_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (n > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < n)
			cap = cap > SIZE_MAX / 2 ? n : cap * 2;
		/* not realloc(3): it would hand the old block back to the heap unwiped */
		p = malloc(cap);
		if (!p)
			return -ENOMEM;
		if (b->data) {
			memcpy(p, b->data, b->len < b->cap ? b->len : b->cap);
			OPENSSL_cleanse(b->data, b->cap);
			free(b->data);
		}
		b->data = p;
		b->cap = cap;
	}
	if (n > b->dirty)
		b->dirty = n;
	return 0;
}

void tls_buf_scrub(struct tls_buf *b)
{
	if (b->dirty)
		OPENSSL_cleanse(b->data, b->dirty < b->cap ? b->dirty : b->cap);
	b->dirty = 0;
	b->len = 0;
}

int buf_reserve(struct tls_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len)
		return -ENOMEM;
	return tls_buf_reserve(b, b->len + extra);
}

static int buf_append(struct tls_buf *b, const void *p, size_t n)
{
	if (!n)
		return 0;
	if (buf_reserve(b, n) != 0)
		return -ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* frame_start empties `b` and writes the 10-byte frame header. */
int frame_start(struct tls_buf *b, enum tls_kind kind, uint64_t id)
{
	uint8_t hdr[TLS_FRAME_HDR_LEN];

	hdr[0] = TLS_FRAME_VERSION;
	hdr[1] = (uint8_t)kind;
	be_put64(hdr + 2, id);
	b->len = 0;
	return buf_append(b, hdr, sizeof(hdr));
}

/*
 * frame_parse checks the header of `msg`: version, a known kind, and an id that
 * is non-zero exactly for SERVER_HANDSHAKE and CLIENT_SECOND. Returns 0 or -EBADMSG.
 */
int frame_parse(const uint8_t *msg, size_t len, struct frame *f)
{
	uint8_t version, kind;
	bool needs_id;
	CBS cbs;

	if (!msg)
		return -EBADMSG;
	CBS_init(&cbs, msg, len);
	if (!CBS_get_u8(&cbs, &version) || !CBS_get_u8(&cbs, &kind) || !CBS_get_u64(&cbs, &f->id))
		return -EBADMSG;
	f->auth = (kind & TLS_KIND_AUTH) != 0;
	kind &= (uint8_t)~TLS_KIND_AUTH;
	if (version != TLS_FRAME_VERSION || kind < TLS_KIND_CLIENT_FIRST || kind > TLS_KIND_ERROR ||
	    (f->auth && kind == TLS_KIND_CLIENT_SECOND))
		return -EBADMSG;
	f->kind = (enum tls_kind)kind;
	needs_id = f->kind == TLS_KIND_SERVER_HANDSHAKE || f->kind == TLS_KIND_CLIENT_SECOND;
	if (needs_id != (f->id != 0))
		return -EBADMSG;
	f->tls = CBS_data(&cbs);
	f->tls_len = CBS_len(&cbs);
	return 0;
}

/* feed hands `n` bytes of TLS records to `rbio`. */
int feed(BIO *rbio, const uint8_t *p, size_t n)
{
	while (n) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;

		if (BIO_write(rbio, p, chunk) != chunk)
			return -ENOMEM;
		p += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

/* drain appends everything BoringSSL wrote to `wbio` to `b` (NULL: discard it). */
int drain(BIO *wbio, struct tls_buf *b)
{
	size_t n = BIO_pending(wbio);

	if (!n)
		return 0;
	if (!b)
		return BIO_reset(wbio) == 1 ? 0 : -EIO;
	if (n > INT_MAX || buf_reserve(b, n) != 0)
		return -ENOMEM;
	if (BIO_read(wbio, b->data + b->len, (int)n) != (int)n)
		return -EIO;
	b->len += n;
	return 0;
}

bool tls_bind_names(const uint8_t b[TLS_BIND_LEN], const struct r2p2_addr *self, size_t num,
		    uint16_t port)
{
	uint8_t mine[TLS_BIND_LEN];

	for (size_t i = 0; i < num; i++) {
		struct r2p2_addr a = self[i];
		if (!a.port)
			a.port = port;
		tls_bind_encode(&a, mine);
		if (memcmp(mine, b, TLS_BIND_LEN) == 0)
			return true;
	}
	return false;
}

/*
 * message_prefix writes the 4-byte length prefix of a `len`-byte message (or a
 * TLS_MSG_STATUS code) to `out`, big-endian (util/be.h: this runs for every RPC).
 */
void message_prefix(uint8_t out[TLS_MSG_PREFIX_LEN], size_t len)
{
	be_put32(out, (uint32_t)len);
}

/*
 * message_write writes the in-TLS form of the `len`-byte message `msg` (its length
 * prefix, then the bytes) to `out`, which holds exactly TLS_MSG_PREFIX_LEN + `len`
 * bytes; `len` is at most TLS_MSG_MAX.
 */
void message_write(uint8_t *out, const uint8_t *msg, size_t len)
{
	message_prefix(out, len);
	if (len)
		memcpy(out + TLS_MSG_PREFIX_LEN, msg, len);
}

/*
 * read_message reads one length-prefixed message from `ssl` into `out` (emptied
 * first). Everything must already be in the read BIO: running out of records
 * before the message is complete means the flight was cut or forged. Returns 0
 * or -EBADMSG.
 */
int read_message(SSL *ssl, struct tls_buf *out)
{
	uint8_t pfx[TLS_MSG_PREFIX_LEN];
	size_t got = 0, n;
	uint32_t n32;
	CBS cbs;

	out->len = 0;
	while (got < sizeof(pfx)) {
		int r = SSL_read(ssl, pfx + got, (int)(sizeof(pfx) - got));

		if (r <= 0)
			return -EBADMSG;
		got += (size_t)r;
	}
	CBS_init(&cbs, pfx, sizeof(pfx));
	if (!CBS_get_u32(&cbs, &n32))
		return -EBADMSG;
	if (n32 == (TLS_MSG_STATUS | TLS_STATUS_ALREADY))
		return -EALREADY; /* the server's word, authenticated like a response */
	n = n32;
	if (n > TLS_MSG_MAX || buf_reserve(out, n) != 0)
		return -EBADMSG;
	while (out->len < n) {
		size_t want = n - out->len;
		int r = SSL_read(ssl, out->data + out->len, want > INT_MAX ? INT_MAX : (int)want);

		if (r <= 0)
			return -EBADMSG;
		out->len += (size_t)r;
	}
	return 0;
}

/* new_ssl makes an SSL from `ctx` with two fresh memory BIOs and `app` as app data. */
SSL *new_ssl(SSL_CTX *ctx, void *app, BIO **out_rbio, BIO **out_wbio)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		return NULL;
	}
	/* an empty read BIO means "wait for more" (WANT_READ), never EOF: the default
	 * of BIO_s_mem, said again because everything here relies on it */
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_app_data(ssl, app);
	*out_rbio = rbio;
	*out_wbio = wbio;
	return ssl;
}

/* ssl_reason names the first error on BoringSSL's queue (or `fallback`). */
const char *ssl_reason(const char *fallback)
{
	uint32_t e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : fallback;
}

/* tls13_ctx makes an SSL_CTX that speaks TLS 1.3 only. */
SSL_CTX *tls13_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (!ctx)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
