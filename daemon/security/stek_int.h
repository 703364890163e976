/* SPDX-License-Identifier: MIT */
/*
 * stek_int.h: the STEK code's insides, shared only by the files that make it up
 * (stek.h is the contract):
 *   stek.c         sets, key derivation, reading key files
 *   stek_rotate.c  writing key files: generate, rotate
 *   stek_ticket.c  TLS session-ticket sealing (SSL_TICKET_AEAD_METHOD)
 */
#ifndef R2P2D_STEK_INT_H
#define R2P2D_STEK_INT_H

#include "boringssl.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/aead.h>

#include "stek.h"

struct stek_entry {
	struct stek_key k; /* first: stek_find hands out &entry->k */
	EVP_AEAD_CTX tkt;  /* AES-256-GCM under stek_derive(k, STEK_LABEL_TLS_TICKET) */
	bool tkt_ready;
};

struct stek_set {
	atomic_int refs;
	uint64_t gen; /* stek_set_gen: unique per set in the process */
	size_t num_keys;
	size_t current; /* index into keys */
	struct stek_entry keys[STEK_MAX_KEYS];
};

/* set_alloc returns an empty set holding one reference, or NULL. */
struct stek_set *set_alloc(void);
/* set_finish validates roles and ids of the keys in `set`, then prepares the ticket
 * AEAD of each. `where` names the file for messages. Returns 0 or -EINVAL. */
int set_finish(struct stek_set *set, const char *where, char *err, size_t err_len);
/* set_free wipes and frees `set`, whatever its references. */
void set_free(struct stek_set *set);
/* key_id reads a key id from its 4 big-endian bytes (a key file's ID, a ticket's). */
uint32_t key_id(const uint8_t b[STEK_TICKET_ID_LEN]);

#endif /* R2P2D_STEK_INT_H */
