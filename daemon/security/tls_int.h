/* SPDX-License-Identifier: MIT */
/*
 * tls_int.h: tls mode's insides, shared only by the files that make it up (tls.h is
 * the contract):
 *   tls.c         buffers, the frame header, messages inside TLS, memory BIOs and
 *                 TLS 1.3 contexts
 *   tls_client.c  the client side: per-service ticket cache and calls
 *   tls_server.c  the server side: service contexts, 0-RTT admission through the
 *                 strike register, pending 1-RTT handshakes, responses
 * Like everything BoringSSL returns 1/0 for, these return 0 or a negative errno.
 */
#ifndef R2P2D_TLS_INT_H
#define R2P2D_TLS_INT_H

#include "boringssl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

/* A frame's header, checked by frame_parse. */
struct frame {
	enum tls_kind kind; /* without TLS_KIND_AUTH */
	bool auth;	    /* TLS_KIND_AUTH was set: asks for proofs, or carries one */
	uint64_t id;
	const uint8_t *tls; /* the TLS records after the header */
	size_t tls_len;
};

/* ---- answer proofs (tls_proof.c) ---- */

#define TLS_RANDOM_LEN 32    /* the ClientHello random */
#define TLS_PROOF_KEY_LEN 32 /* HMAC-SHA256 key */

/* What a client checks an answer's proof with. */
struct tls_proof_check {
	uint8_t random[TLS_RANDOM_LEN];
	uint8_t keys[2][TLS_PROOF_KEY_LEN]; /* for TLS_PROOF_TAG: any of the first num_keys */
	unsigned num_keys;
	X509_STORE *store;   /* for TLS_PROOF_SIG: the client's CA */
	const char *service; /* ... and the name the certificate must carry */
	long cert_err;	     /* out: why a certificate was refused (X509_V_ERR_*) */
};

/* proof_key_from_psk derives the tag key of a resumed exchange from the ticket's PSK. */
int proof_key_from_psk(const uint8_t *psk, size_t psk_len, const uint8_t random[TLS_RANDOM_LEN],
		       uint8_t out[TLS_PROOF_KEY_LEN]);
/* proof_key_from_exporter derives the tag key of a completed handshake (an exporter). */
int proof_key_from_exporter(SSL *ssl, uint8_t out[TLS_PROOF_KEY_LEN]);
/* proof_append_tag sets TLS_KIND_AUTH on the frame in `b` and appends its tag. */
int proof_append_tag(struct tls_buf *b, const uint8_t key[TLS_PROOF_KEY_LEN],
		     const uint8_t random[TLS_RANDOM_LEN]);
/* proof_append_sig sets TLS_KIND_AUTH and appends the certificate and signature of `ssl`. */
int proof_append_sig(struct tls_buf *b, SSL *ssl, const uint8_t random[TLS_RANDOM_LEN]);
/*
 * proof_check checks the proof at the end of `msg` (a frame with TLS_KIND_AUTH):
 * 0 with the length of the frame without it in `*out_len`; -EACCES when it carries
 * a certificate that does not chain to the CA or name the service (chk->cert_err
 * says why); -EBADMSG for any other proof that does not hold.
 */
int proof_check(const uint8_t *msg, size_t len, struct tls_proof_check *chk, size_t *out_len);

/* buf_reserve makes room for `extra` more bytes in `b`: 0 or -ENOMEM. */
int buf_reserve(struct tls_buf *b, size_t extra);
/* frame_start empties `b` and writes the 10-byte frame header. */
int frame_start(struct tls_buf *b, enum tls_kind kind, uint64_t id);
/* frame_parse checks the header of `msg` into `f`: 0 or -EBADMSG. */
int frame_parse(const uint8_t *msg, size_t len, struct frame *f);
/* feed hands `n` bytes of TLS records to `rbio`. */
int feed(BIO *rbio, const uint8_t *p, size_t n);
/* drain appends everything BoringSSL wrote to `wbio` to `b` (NULL: discard it). */
int drain(BIO *wbio, struct tls_buf *b);
/* message_write writes the length prefix and the `len` bytes of `msg` to `out`. */
void message_write(uint8_t *out, const uint8_t *msg, size_t len);
/* message_prefix writes the 4-byte big-endian length prefix of a `len`-byte message. */
void message_prefix(uint8_t out[TLS_MSG_PREFIX_LEN], size_t len);
/* read_message reads one length-prefixed message from `ssl` into `out`: 0, -EALREADY (the
 * server's TLS_STATUS_ALREADY) or -EBADMSG. */
int read_message(SSL *ssl, struct tls_buf *out);
/* new_ssl makes an SSL from `ctx` with two fresh memory BIOs and `app` as app data. */
SSL *new_ssl(SSL_CTX *ctx, void *app, BIO **out_rbio, BIO **out_wbio);
/* ssl_reason names the first error on BoringSSL's queue (or `fallback`). */
const char *ssl_reason(const char *fallback);
/* tls13_ctx makes an SSL_CTX that speaks TLS 1.3 only (NULL on failure). */
SSL_CTX *tls13_ctx(void);

#endif /* R2P2D_TLS_INT_H */
