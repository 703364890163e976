/* SPDX-License-Identifier: MIT */
/*
 * stek: session-ticket encryption keys (STEK) shared by all servers of a service.
 *
 * A STEK file is text, mode 0600, owned by root or by the daemon's user
 * (docs/OPERATIONS.md, "Keys and TLS"):
 *
 *   # r2p2d session-ticket encryption keys (keep secret; mode 0600)
 *   # id       role      key (32 bytes, hex)
 *   0000000a   current   <64 hex digits>
 *   00000009   previous  <64 hex digits>
 *   0000000b   next      <64 hex digits>
 *
 * Exactly one `current` key (it seals new tickets); at most one `previous` and one
 * `next` (they only open tickets), so a server that rotated early and one that
 * rotated late still resume each other's tickets. Ids are 8 hex digits, unique.
 *
 * A loaded file is a struct stek_set: immutable and reference-counted, so worker
 * threads keep using the set they hold while a new one is loaded; the last
 * stek_set_put wipes the key material.
 */
#ifndef R2P2D_STEK_H
#define R2P2D_STEK_H

#include "boringssl.h"

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define STEK_KEY_LEN 32
#define STEK_MAX_KEYS 3

/* Labels for stek_derive: one STEK, independent keys per use. */
#define STEK_LABEL_TLS_TICKET "r2p2 tls ticket"
#define STEK_LABEL_FINGERPRINT "r2p2 stek fingerprint"

/*
 * Ticket framing: key id (4 bytes, big-endian) | nonce (12) | AES-256-GCM ciphertext | tag
 * (16); the plaintext is the time the ticket was issued (be64, unix ms, the sealing
 * server's clock) followed by BoringSSL's session.
 */
#define STEK_TICKET_ID_LEN 4
#define STEK_TICKET_NONCE_LEN 12
#define STEK_TICKET_TAG_LEN 16
#define STEK_TICKET_TIME_LEN 8
#define STEK_TICKET_OVERHEAD                                                                       \
	(STEK_TICKET_ID_LEN + STEK_TICKET_NONCE_LEN + STEK_TICKET_TIME_LEN + STEK_TICKET_TAG_LEN)

enum stek_role { STEK_CURRENT = 0, STEK_PREVIOUS, STEK_NEXT };

struct stek_key {
	uint32_t id;
	enum stek_role role;
	uint8_t key[STEK_KEY_LEN]; /* secret: never log or print it */
};

struct stek_set;

/* stek_load_ex flags. */
#define STEK_LOAD_ANY_MODE                                                                         \
	0x1u /* do not refuse a group/world-accessible file, nor one of                            \
	      * another owner (r2p2ctl status) */

/*
 * stek_load reads the STEK file at `path` into a new set (reference count 1) in
 * `*out`. It refuses (returns a negative errno and writes one line to `err`, which
 * names the path, and the line for syntax errors): a file that is not a regular
 * file (-EINVAL), one that group or others may read or write (-EPERM), one owned by
 * neither root nor the effective uid of the process (-EPERM), bad syntax
 * (-EINVAL, "path:line: ..."), no current key, two keys of one role, or a duplicate
 * id (-EINVAL). Symbolic links are followed (a Kubernetes Secret volume is links).
 * Returns 0 on success. Any thread; no shared state.
 */
int stek_load(const char *path, struct stek_set **out, char *err, size_t err_len);

/* stek_load_ex is stek_load with `flags` (STEK_LOAD_*). */
int stek_load_ex(const char *path, unsigned flags, struct stek_set **out, char *err,
		 size_t err_len);

/* stek_set_get takes one more reference on `set` and returns it. Thread-safe. */
struct stek_set *stek_set_get(struct stek_set *set);

/* stek_set_put drops a reference; the last one wipes the keys (OPENSSL_cleanse) and
 * frees the set. NULL is ignored. Thread-safe. */
void stek_set_put(struct stek_set *set);

/*
 * stek_set_gen returns a number no other set of this process has had (never 0; 0 for
 * NULL), so a cache of keys derived from a set sees that the set was replaced even if
 * the new one was allocated where the old one was.
 */
uint64_t stek_set_gen(const struct stek_set *set);

/* stek_current returns the key that seals new tickets (never NULL for a loaded set). */
const struct stek_key *stek_current(const struct stek_set *set);

/* stek_find returns the key with `id`, or NULL. */
const struct stek_key *stek_find(const struct stek_set *set, uint32_t id);

/* stek_num_keys returns how many keys `set` has; stek_key_at returns the `i`th in file order. */
size_t stek_num_keys(const struct stek_set *set);
const struct stek_key *stek_key_at(const struct stek_set *set, size_t i);

/*
 * stek_derive writes `out_len` bytes of HKDF-SHA256(ikm = `k`->key, salt = none,
 * info = `label`) to `out`, so each use of a STEK (TLS tickets, sealed tokens) gets
 * its own key. Returns 0, or -EINVAL if `out_len` is over 255 * 32.
 */
int stek_derive(const struct stek_key *k, const char *label, uint8_t *out, size_t out_len);

/* stek_role_name returns "current", "previous" or "next". */
const char *stek_role_name(enum stek_role role);

/*
 * stek_describe writes one line per key to `buf` (`len` bytes, always
 * NUL-terminated if `len` > 0): "0000000a  current   fp 1f2e3d4c5b6a7988". The
 * fingerprint is stek_derive(STEK_LABEL_FINGERPRINT), so two servers can be compared
 * without showing the key; key bytes are never printed. Returns the length the full
 * text needs (as snprintf).
 */
int stek_describe(const struct stek_set *set, char *buf, size_t len);

/*
 * stek_generate_file creates a new STEK file at `path` with one random current key
 * (mode 0600, written to a temporary file in the same directory, fsynced, then
 * linked into place). Refuses to replace an existing file (-EEXIST). Returns 0 or a
 * negative errno with a message in `err`.
 */
int stek_generate_file(const char *path, char *err, size_t err_len);

/*
 * stek_rotate_file rotates the STEK file at `path` in place: previous := current,
 * current := next (or a new random key if there is none), next := a new random key;
 * the old previous key is dropped. Ids of new keys are one more than the highest id.
 * The file is replaced atomically (temporary file + rename) and keeps its mode and
 * owner. Refuses a symbolic link (rotate the secret store's copy instead) and
 * everything stek_load refuses. If `out_set` is not NULL it receives the new set.
 * Returns 0 or a negative errno with a message in `err`.
 */
int stek_rotate_file(const char *path, struct stek_set **out_set, char *err, size_t err_len);

/* ---- TLS session tickets ------------------------------------------------------ */

/*
 * stek_get_set_fn returns the set to seal and open tickets of `ssl` with. The
 * pointer is borrowed: it must stay valid until the callback's caller returns
 * (e.g. a per-worker set the worker replaces only between handshakes). It must not
 * return NULL once a handshake can issue tickets (sealing fails the handshake).
 */
typedef struct stek_set *(*stek_get_set_fn)(SSL *ssl);

struct stek_ticket_stats {
	uint64_t sealed;     /* tickets issued */
	uint64_t opened;     /* tickets decrypted (resumption possible) */
	uint64_t unknown_id; /* ticket under a key id not in the set: full handshake */
	uint64_t bad;	     /* too short or failed authentication: full handshake */
	uint64_t seal_fail;  /* no set or crypto failure while issuing */
};

/*
 * stek_install_ticket_aead makes `ctx` seal and open session tickets with
 * AES-256-GCM under stek_derive(key, STEK_LABEL_TLS_TICKET), framed as
 * id | nonce | ciphertext+tag with the id as associated data. The set comes from
 * `get_set(ssl)`, or if `get_set` is NULL from the set attached with
 * stek_ctx_attach. A ticket under an unknown id, a short or forged one, is ignored
 * (full handshake), never an error. Counters live with `ctx`. Call before `ctx`
 * is shared between threads. Returns 0 or -ENOMEM.
 */
int stek_install_ticket_aead(SSL_CTX *ctx, stek_get_set_fn get_set);

/*
 * stek_ticket_opened_fn is told, on the handshake's thread, when a ticket of `ssl`
 * opened, when it was issued (unix ms) and the session it holds (`session`, `len`
 * bytes, as SSL_SESSION_to_bytes wrote it; valid during the call): before BoringSSL
 * decides on early data, so it may still turn early data off for `ssl`.
 */
typedef void (*stek_ticket_opened_fn)(SSL *ssl, uint64_t issued_ms, const uint8_t *session,
				      size_t len);

/* stek_set_ticket_opened sets the ticket-opened hook of `ctx` (installed first). */
int stek_set_ticket_opened(SSL_CTX *ctx, stek_ticket_opened_fn fn);

/*
 * stek_ctx_attach makes `set` (a new reference is taken; NULL detaches) the one
 * `ctx` uses when installed with get_set == NULL, and drops the previous one. Not
 * safe while other threads handshake on `ctx` (use a per-worker ctx, or get_set).
 * Returns 0, or -EINVAL if stek_install_ticket_aead was not called on `ctx`.
 */
int stek_ctx_attach(SSL_CTX *ctx, struct stek_set *set);

/* stek_ticket_stats copies the ticket counters of `ctx` (zeros if not installed). */
void stek_ticket_stats(const SSL_CTX *ctx, struct stek_ticket_stats *out);

#endif /* R2P2D_STEK_H */
