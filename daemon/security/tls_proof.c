// SPDX-License-Identifier: MIT
/*
 * tls_proof.c: the proof a server puts after the records of an answer frame when
 * the client asked for one (TLS_KIND_AUTH on CLIENT_FIRST), so that the client can
 * tell the server's answers from forged ones *before* BoringSSL reads them.
 *
 * Why: BoringSSL cannot take back a record it has read. A forged ServerHello or a
 * record that fails to decrypt puts the SSL in an error state for good, so a client
 * that hands every frame to BoringSSL lets anyone who can guess (address, port, rid)
 * end its call. With a proof checked first, a frame that fails it is set aside like
 * any frame that does not fit (TLS_CALL_IGNORE) and the genuine answer, arriving
 * later, still completes the call.
 *
 * A proof is bound to the exchange (the ClientHello random) and to every byte of
 * the frame before it (header and records). Three keys, by what both sides share
 * when the answer is written (docs/PROTOCOL.md, "Answer proofs"):
 *   - the exchange resumed a ticket and the handshake is not complete (a 0-RTT
 *     SERVER_FINAL, a SERVER_HANDSHAKE, an ERROR): an HMAC under a key derived from
 *     the ticket's PSK and the ClientHello random;
 *   - the handshake is complete (the SERVER_FINAL after CLIENT_SECOND): an HMAC
 *     under a TLS exporter key;
 *   - neither (a full handshake: first contact, or a ticket the server could not
 *     resume): the server's certificate and a signature under its key, which the
 *     client checks against its CA file and the service name as BoringSSL would.
 *
 * Layout: header | records | body | type (1) | body length (2, big-endian).
 */
#include "boringssl.h"

#include "tls_int.h"

#include <errno.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hkdf.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#define PROOF_TRAILER_LEN 3 /* type, body length */
#define PROOF_CERT_MAX 8192
#define PROOF_SIG_MAX 1024

static const char label[] = "r2p2 tls answer";
static const char key_info[] = "r2p2 tls answer key";
static const char exporter_label[] = "EXPORTER-r2p2 answer";

int proof_key_from_psk(const uint8_t *psk, size_t psk_len, const uint8_t random[TLS_RANDOM_LEN],
		       uint8_t out[TLS_PROOF_KEY_LEN])
{
	if (!psk_len)
		return -EINVAL;
	return HKDF(out, TLS_PROOF_KEY_LEN, EVP_sha256(), psk, psk_len, random, TLS_RANDOM_LEN,
		    (const uint8_t *)key_info, sizeof(key_info) - 1)
		   ? 0
		   : -EIO;
}

int proof_key_from_exporter(SSL *ssl, uint8_t out[TLS_PROOF_KEY_LEN])
{
	return SSL_export_keying_material(ssl, out, TLS_PROOF_KEY_LEN, exporter_label,
					  sizeof(exporter_label) - 1, NULL, 0, 0)
		   ? 0
		   : -EIO;
}

/* mac computes the tag of `data` (header and records) for the exchange `random`. */
static int mac(const uint8_t key[TLS_PROOF_KEY_LEN], const uint8_t random[TLS_RANDOM_LEN],
	       const uint8_t *data, size_t len, uint8_t out[TLS_PROOF_TAG_LEN])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	HMAC_CTX h;
	int ok;

	HMAC_CTX_init(&h);
	ok = HMAC_Init_ex(&h, key, TLS_PROOF_KEY_LEN, EVP_sha256(), NULL) &&
	     HMAC_Update(&h, (const uint8_t *)label, sizeof(label)) &&
	     HMAC_Update(&h, random, TLS_RANDOM_LEN) && HMAC_Update(&h, data, len) &&
	     HMAC_Final(&h, full, &n) && n >= TLS_PROOF_TAG_LEN;
	HMAC_CTX_cleanup(&h);
	if (ok)
		memcpy(out, full, TLS_PROOF_TAG_LEN);
	OPENSSL_cleanse(full, sizeof(full));
	return ok ? 0 : -EIO;
}

/* trailer appends the type and the body length. */
static int trailer(struct tls_buf *b, enum tls_proof_type type, size_t body_len)
{
	uint8_t t[PROOF_TRAILER_LEN] = {(uint8_t)type, (uint8_t)(body_len >> 8), (uint8_t)body_len};

	if (buf_reserve(b, sizeof(t)) != 0)
		return -ENOMEM;
	memcpy(b->data + b->len, t, sizeof(t));
	b->len += sizeof(t);
	return 0;
}

int proof_append_tag(struct tls_buf *b, const uint8_t key[TLS_PROOF_KEY_LEN],
		     const uint8_t random[TLS_RANDOM_LEN])
{
	uint8_t tag[TLS_PROOF_TAG_LEN];

	if (b->len < TLS_FRAME_HDR_LEN)
		return -EINVAL;
	b->data[1] |= TLS_KIND_AUTH;
	if (mac(key, random, b->data, b->len, tag) != 0)
		return -EIO;
	if (buf_reserve(b, sizeof(tag)) != 0)
		return -ENOMEM;
	memcpy(b->data + b->len, tag, sizeof(tag));
	b->len += sizeof(tag);
	return trailer(b, TLS_PROOF_TAG, sizeof(tag));
}

/* sign_update feeds what a signature covers: the label, the random, the frame. */
static int sign_update(EVP_MD_CTX *md, bool verify, const uint8_t random[TLS_RANDOM_LEN],
		       const uint8_t *data, size_t len)
{
	int (*update)(EVP_MD_CTX *, const void *, size_t) =
	    verify ? EVP_DigestVerifyUpdate : EVP_DigestSignUpdate;

	return update(md, label, sizeof(label)) && update(md, random, TLS_RANDOM_LEN) &&
	       update(md, data, len);
}

int proof_append_sig(struct tls_buf *b, SSL *ssl, const uint8_t random[TLS_RANDOM_LEN])
{
	EVP_PKEY *key = SSL_get_privatekey(ssl);
	X509 *cert = SSL_get_certificate(ssl);
	EVP_MD_CTX md;
	size_t head, sig_len = 0;
	int cert_len, rc = -EIO;
	uint8_t *p;

	if (b->len < TLS_FRAME_HDR_LEN || !key || !cert)
		return -EINVAL;
	b->data[1] |= TLS_KIND_AUTH;
	head = b->len;
	cert_len = i2d_X509(cert, NULL);
	if (cert_len <= 0 || cert_len > PROOF_CERT_MAX)
		return -EIO;
	if (buf_reserve(b, 2 + (size_t)cert_len + PROOF_SIG_MAX) != 0)
		return -ENOMEM;
	EVP_MD_CTX_init(&md);
	if (!EVP_DigestSignInit(&md, NULL, EVP_sha256(), NULL, key) ||
	    !sign_update(&md, false, random, b->data, head) ||
	    !EVP_DigestSignFinal(&md, NULL, &sig_len) || sig_len > PROOF_SIG_MAX)
		goto out;
	b->data[head] = (uint8_t)(cert_len >> 8);
	b->data[head + 1] = (uint8_t)cert_len;
	p = b->data + head + 2;
	if (i2d_X509(cert, &p) != cert_len ||
	    !EVP_DigestSignFinal(&md, b->data + head + 2 + cert_len, &sig_len))
		goto out;
	b->len = head + 2 + (size_t)cert_len + sig_len;
	rc = trailer(b, TLS_PROOF_SIG, b->len - head);
out:
	EVP_MD_CTX_cleanup(&md);
	if (rc)
		b->len = head;
	return rc;
}

/*
 * cert_check says whether `cert` chains to `store` and names `service`, as the
 * client's own handshake would check it: X509_V_OK or the verification error.
 */
static long cert_check(X509_STORE *store, X509 *cert, const char *service)
{
	X509_STORE_CTX *sctx = X509_STORE_CTX_new();
	long err = X509_V_ERR_UNSPECIFIED;

	if (sctx && X509_STORE_CTX_init(sctx, store, cert, NULL) &&
	    X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(sctx), service,
					strlen(service))) {
		if (X509_verify_cert(sctx) == 1)
			err = X509_V_OK;
		else if (X509_STORE_CTX_get_error(sctx) != X509_V_OK)
			err = X509_STORE_CTX_get_error(sctx);
	}
	X509_STORE_CTX_free(sctx);
	return err;
}

/* sig_check checks a TLS_PROOF_SIG body over `data` (`len` bytes): 0, -EACCES or -EBADMSG. */
static int sig_check(const uint8_t *body, size_t body_len, const uint8_t *data, size_t len,
		     struct tls_proof_check *chk)
{
	const uint8_t *der;
	X509 *cert = NULL;
	EVP_PKEY *pub = NULL;
	EVP_MD_CTX md;
	uint16_t cert_len;
	int rc = -EBADMSG;
	CBS cbs, c;

	if (!chk->store || !chk->service)
		return -EBADMSG;
	CBS_init(&cbs, body, body_len);
	if (!CBS_get_u16(&cbs, &cert_len) || !CBS_get_bytes(&cbs, &c, cert_len) ||
	    CBS_len(&cbs) == 0)
		return -EBADMSG;
	der = CBS_data(&c);
	cert = d2i_X509(NULL, &der, cert_len);
	if (!cert || der != CBS_data(&c) + cert_len)
		goto out;
	chk->cert_err = cert_check(chk->store, cert, chk->service);
	if (chk->cert_err != X509_V_OK) {
		rc = -EACCES;
		goto out;
	}
	pub = X509_get_pubkey(cert);
	EVP_MD_CTX_init(&md);
	if (pub && EVP_DigestVerifyInit(&md, NULL, EVP_sha256(), NULL, pub) &&
	    sign_update(&md, true, chk->random, data, len) &&
	    EVP_DigestVerifyFinal(&md, CBS_data(&cbs), CBS_len(&cbs)))
		rc = 0;
	EVP_MD_CTX_cleanup(&md);
out:
	EVP_PKEY_free(pub);
	X509_free(cert);
	return rc;
}

int proof_check(const uint8_t *msg, size_t len, struct tls_proof_check *chk, size_t *out_len)
{
	uint8_t tag[TLS_PROOF_TAG_LEN];
	size_t body_len, data_len;
	const uint8_t *body;
	bool ok = false;
	int rc;

	if (len < TLS_FRAME_HDR_LEN + PROOF_TRAILER_LEN || !(msg[1] & TLS_KIND_AUTH))
		return -EBADMSG;
	body_len = (size_t)msg[len - 2] << 8 | msg[len - 1];
	if (body_len > len - TLS_FRAME_HDR_LEN - PROOF_TRAILER_LEN)
		return -EBADMSG;
	data_len = len - PROOF_TRAILER_LEN - body_len;
	body = msg + data_len;
	switch (msg[len - PROOF_TRAILER_LEN]) {
	case TLS_PROOF_TAG:
		for (unsigned i = 0; !ok && i < chk->num_keys && i < 2; i++)
			ok = body_len == TLS_PROOF_TAG_LEN &&
			     mac(chk->keys[i], chk->random, msg, data_len, tag) == 0 &&
			     CRYPTO_memcmp(tag, body, TLS_PROOF_TAG_LEN) == 0;
		break;
	case TLS_PROOF_SIG:
		rc = sig_check(body, body_len, msg, data_len, chk);
		if (rc)
			return rc;
		ok = true;
		break;
	default:
		break;
	}
	if (!ok)
		return -EBADMSG;
	*out_len = data_len;
	return 0;
}
