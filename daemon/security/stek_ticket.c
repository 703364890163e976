// SPDX-License-Identifier: MIT
/*
 * stek_ticket.c: TLS session tickets sealed under the current STEK key (AES-256-GCM,
 * the key id as associated data) and opened under whichever key of the set their id
 * names, through BoringSSL's SSL_TICKET_AEAD_METHOD; the set and the counters hang
 * off each SSL_CTX's ex data.
 */
#include "boringssl.h"

#include "stek_int.h"

#include "be.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/aead.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

struct stek_hook {
	stek_get_set_fn get_set;
	stek_ticket_opened_fn opened_fn;
	struct stek_set *attached;
	_Atomic uint64_t sealed, opened, unknown_id, bad, seal_fail;
};

static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
static int hook_index = -1;

static void hook_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl, void *argp)
{
	struct stek_hook *h = ptr;

	(void)parent;
	(void)ad;
	(void)index;
	(void)argl;
	(void)argp;
	if (!h)
		return;
	stek_set_put(h->attached);
	free(h);
}

static void hook_index_init(void)
{
	hook_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, hook_free);
}

static struct stek_hook *hook_of_ctx(const SSL_CTX *ctx)
{
	pthread_once(&hook_once, hook_index_init);
	if (hook_index < 0)
		return NULL;
	return SSL_CTX_get_ex_data(ctx, hook_index);
}

/*
 * BoringSSL calls the method of the SSL's session context; the SSL's current
 * context is the same unless the caller switched it with SSL_set_SSL_CTX, in which
 * case the new context must be installed too.
 */
static struct stek_set *hook_set(SSL *ssl, struct stek_hook **out_h)
{
	struct stek_hook *h = hook_of_ctx(SSL_get_SSL_CTX(ssl));

	*out_h = h;
	if (!h)
		return NULL;
	return h->get_set ? h->get_set(ssl) : h->attached;
}

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static size_t tkt_max_overhead(SSL *ssl)
{
	(void)ssl;
	return STEK_TICKET_OVERHEAD;
}

static int tkt_seal(SSL *ssl, uint8_t *out, size_t *out_len, size_t max_out_len, const uint8_t *in,
		    size_t in_len)
{
	const size_t hdr = STEK_TICKET_ID_LEN + STEK_TICKET_NONCE_LEN;
	const size_t body = hdr + STEK_TICKET_TIME_LEN; /* where the session goes */
	const struct stek_entry *e;
	struct stek_hook *h;
	struct stek_set *set = hook_set(ssl, &h);
	uint8_t *nonce = out + STEK_TICKET_ID_LEN;
	size_t ct_len;

	if (!set || max_out_len < STEK_TICKET_OVERHEAD ||
	    in_len > max_out_len - STEK_TICKET_OVERHEAD)
		goto fail;
	e = &set->keys[set->current];
	/* `in` may equal `out`: move the session behind the header and the issue time, then
	 * seal the two in place */
	memmove(out + body, in, in_len);
	be_put32(out, e->k.id);
	be_put64(out + hdr, unix_ms());
	if (RAND_bytes(nonce, STEK_TICKET_NONCE_LEN) != 1)
		goto fail;
	/* the key id is associated data: a ticket cannot be moved to another key's id */
	if (!EVP_AEAD_CTX_seal(&e->tkt, out + hdr, &ct_len, max_out_len - hdr, nonce,
			       STEK_TICKET_NONCE_LEN, out + hdr, STEK_TICKET_TIME_LEN + in_len, out,
			       STEK_TICKET_ID_LEN))
		goto fail;
	*out_len = hdr + ct_len;
	count(&h->sealed);
	return 1;
fail:
	if (h)
		count(&h->seal_fail);
	return 0;
}

/* tkt_opened takes the issue time off an opened ticket's plaintext and tells the hook. */
static enum ssl_ticket_aead_result_t tkt_opened(struct stek_hook *h, SSL *ssl, uint8_t *out,
						size_t *out_len)
{
	uint64_t issued;
	CBS cbs;

	CBS_init(&cbs, out, *out_len);
	if (!CBS_get_u64(&cbs, &issued)) {
		count(&h->bad);
		return ssl_ticket_aead_ignore_ticket;
	}
	*out_len -= STEK_TICKET_TIME_LEN;
	memmove(out, out + STEK_TICKET_TIME_LEN, *out_len);
	count(&h->opened);
	if (h->opened_fn)
		h->opened_fn(ssl, issued, out, *out_len);
	return ssl_ticket_aead_success;
}

static enum ssl_ticket_aead_result_t tkt_open(SSL *ssl, uint8_t *out, size_t *out_len,
					      size_t max_out_len, const uint8_t *in, size_t in_len)
{
	const size_t hdr = STEK_TICKET_ID_LEN + STEK_TICKET_NONCE_LEN;
	uint8_t id_be[STEK_TICKET_ID_LEN], nonce[STEK_TICKET_NONCE_LEN];
	const struct stek_key *k;
	struct stek_hook *h;
	struct stek_set *set = hook_set(ssl, &h);
	uint32_t id;

	if (!set)
		return ssl_ticket_aead_ignore_ticket;
	if (in_len < STEK_TICKET_OVERHEAD || in_len - hdr > max_out_len) {
		count(&h->bad);
		return ssl_ticket_aead_ignore_ticket;
	}
	memcpy(id_be, in, sizeof(id_be));
	memcpy(nonce, in + STEK_TICKET_ID_LEN, sizeof(nonce));
	id = key_id(id_be);
	k = stek_find(set, id);
	if (!k) {
		count(&h->unknown_id);
		return ssl_ticket_aead_ignore_ticket;
	}
	/* `in` may equal `out`: move the ciphertext to the front, then open in place */
	memmove(out, in + hdr, in_len - hdr);
	ERR_set_mark();
	if (!EVP_AEAD_CTX_open(&((const struct stek_entry *)k)->tkt, out, out_len, max_out_len,
			       nonce, sizeof(nonce), out, in_len - hdr, id_be, sizeof(id_be))) {
		/* handled here: a stale BAD_DECRYPT left on the queue would make
		 * SSL_get_error report SSL_ERROR_SSL during the full handshake */
		ERR_pop_to_mark();
		count(&h->bad);
		return ssl_ticket_aead_ignore_ticket;
	}
	return tkt_opened(h, ssl, out, out_len);
}

static const SSL_TICKET_AEAD_METHOD ticket_method = {
    .max_overhead = tkt_max_overhead,
    .seal = tkt_seal,
    .open = tkt_open,
};

int stek_install_ticket_aead(SSL_CTX *ctx, stek_get_set_fn get_set)
{
	struct stek_hook *h = hook_of_ctx(ctx);

	if (hook_index < 0)
		return -ENOMEM;
	if (!h) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return -ENOMEM;
		if (!SSL_CTX_set_ex_data(ctx, hook_index, h)) {
			free(h);
			return -ENOMEM;
		}
	}
	h->get_set = get_set;
	SSL_CTX_set_ticket_aead_method(ctx, &ticket_method);
	return 0;
}

int stek_set_ticket_opened(SSL_CTX *ctx, stek_ticket_opened_fn fn)
{
	struct stek_hook *h = hook_of_ctx(ctx);

	if (!h)
		return -EINVAL;
	h->opened_fn = fn;
	return 0;
}

int stek_ctx_attach(SSL_CTX *ctx, struct stek_set *set)
{
	struct stek_hook *h = hook_of_ctx(ctx);
	struct stek_set *old;

	if (!h)
		return -EINVAL;
	old = h->attached;
	h->attached = set ? stek_set_get(set) : NULL;
	stek_set_put(old);
	return 0;
}

void stek_ticket_stats(const SSL_CTX *ctx, struct stek_ticket_stats *out)
{
	struct stek_hook *h = hook_of_ctx(ctx);

	memset(out, 0, sizeof(*out));
	if (!h)
		return;
	out->sealed = atomic_load_explicit(&h->sealed, memory_order_relaxed);
	out->opened = atomic_load_explicit(&h->opened, memory_order_relaxed);
	out->unknown_id = atomic_load_explicit(&h->unknown_id, memory_order_relaxed);
	out->bad = atomic_load_explicit(&h->bad, memory_order_relaxed);
	out->seal_fail = atomic_load_explicit(&h->seal_fail, memory_order_relaxed);
}
