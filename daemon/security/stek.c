// SPDX-License-Identifier: MIT
/*
 * stek.c: STEK sets, key derivation, and reading key files (parse, check, load).
 * stek_rotate.c writes them (generate, rotate); stek_ticket.c seals TLS session
 * tickets through BoringSSL's SSL_TICKET_AEAD_METHOD; stek_int.h is what they share.
 *
 * All cryptography is BoringSSL's: HKDF-SHA256, AES-256-GCM (EVP_AEAD), RAND_bytes.
 */
#include "boringssl.h"

#include "err.h"
#include "stek_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/aead.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>

#define STEK_FILE_MAX (64 * 1024) /* a valid file is under 400 bytes */
#define STEK_FP_LEN 8

static const char *const role_names[] = {
    [STEK_CURRENT] = "current",
    [STEK_PREVIOUS] = "previous",
    [STEK_NEXT] = "next",
};

const char *stek_role_name(enum stek_role role)
{
	if ((unsigned)role < sizeof(role_names) / sizeof(role_names[0]))
		return role_names[role];
	return "?";
}

/* ---- sets ----------------------------------------------------------------------- */

void set_free(struct stek_set *set)
{
	for (size_t i = 0; i < set->num_keys; i++)
		if (set->keys[i].tkt_ready)
			EVP_AEAD_CTX_cleanup(&set->keys[i].tkt);
	/* the AES key schedule lives inside the EVP_AEAD_CTX: wipe it with the keys */
	OPENSSL_cleanse(set, sizeof(*set));
	free(set);
}

struct stek_set *stek_set_get(struct stek_set *set)
{
	atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
	return set;
}

void stek_set_put(struct stek_set *set)
{
	if (!set)
		return;
	if (atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
		set_free(set);
}

const struct stek_key *stek_current(const struct stek_set *set)
{
	return &set->keys[set->current].k;
}

const struct stek_key *stek_find(const struct stek_set *set, uint32_t id)
{
	for (size_t i = 0; i < set->num_keys; i++)
		if (set->keys[i].k.id == id)
			return &set->keys[i].k;
	return NULL;
}

size_t stek_num_keys(const struct stek_set *set)
{
	return set->num_keys;
}

const struct stek_key *stek_key_at(const struct stek_set *set, size_t i)
{
	return i < set->num_keys ? &set->keys[i].k : NULL;
}

int stek_derive(const struct stek_key *k, const char *label, uint8_t *out, size_t out_len)
{
	if (!HKDF(out, out_len, EVP_sha256(), k->key, sizeof(k->key), NULL, 0,
		  (const uint8_t *)label, strlen(label)))
		return -EINVAL;
	return 0;
}

/*
 * set_check validates roles and ids of the `num_keys` keys already in `set`, then
 * prepares the ticket AEAD of each. `where` names the file for messages.
 */
int set_finish(struct stek_set *set, const char *where, char *err, size_t err_len)
{
	int seen[3] = {0, 0, 0};
	uint8_t tk[32];

	for (size_t i = 0; i < set->num_keys; i++) {
		const struct stek_key *k = &set->keys[i].k;

		if (seen[k->role]) {
			set_err(err, err_len, "stek: %s: more than one %s key", where,
				stek_role_name(k->role));
			return -EINVAL;
		}
		seen[k->role] = 1;
		if (k->role == STEK_CURRENT)
			set->current = i;
	}
	if (!seen[STEK_CURRENT]) {
		set_err(err, err_len, "stek: %s: no current key", where);
		return -EINVAL;
	}
	for (size_t i = 0; i < set->num_keys; i++) {
		struct stek_entry *e = &set->keys[i];
		int ok;

		if (stek_derive(&e->k, STEK_LABEL_TLS_TICKET, tk, sizeof(tk)) != 0)
			return -EINVAL;
		ok = EVP_AEAD_CTX_init(&e->tkt, EVP_aead_aes_256_gcm(), tk, sizeof(tk),
				       EVP_AEAD_DEFAULT_TAG_LENGTH, NULL);
		OPENSSL_cleanse(tk, sizeof(tk));
		if (!ok) {
			set_err(err, err_len, "stek: %s: cannot set up AES-256-GCM", where);
			return -EINVAL;
		}
		e->tkt_ready = true;
	}
	return 0;
}

struct stek_set *set_alloc(void)
{
	static _Atomic uint64_t last_gen;
	struct stek_set *set = calloc(1, sizeof(*set));

	if (set) {
		atomic_init(&set->refs, 1);
		set->gen = atomic_fetch_add_explicit(&last_gen, 1, memory_order_relaxed) + 1;
	}
	return set;
}

uint64_t stek_set_gen(const struct stek_set *set)
{
	return set ? set->gen : 0;
}

/* ---- parsing -------------------------------------------------------------------- */

/* key_id reads a key id from its 4 big-endian bytes (a key file's ID, a ticket's). */
uint32_t key_id(const uint8_t b[STEK_TICKET_ID_LEN])
{
	uint32_t id = 0;
	CBS cbs;

	CBS_init(&cbs, b, STEK_TICKET_ID_LEN);
	if (!CBS_get_u32(&cbs, &id))
		return 0; /* not reached: the 4 bytes are there */
	return id;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* parse_hex decodes exactly 2 * `len` hex digits of `s` (length `s_len`) into `out`. */
static bool parse_hex(const char *s, size_t s_len, uint8_t *out, size_t len)
{
	if (s_len != 2 * len)
		return false;
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* split_line cuts `p`..`eol` into blank-separated fields before any '#'; keeps the first 4. */
static size_t split_line(const char *p, const char *eol, const char *tok[4], size_t tok_len[4])
{
	size_t ntok = 0;

	for (const char *q = p; q < eol;) {
		const char *s;

		while (q < eol && is_blank(*q))
			q++;
		if (q == eol || *q == '#')
			break;
		s = q;
		while (q < eol && !is_blank(*q))
			q++;
		if (ntok < 4) {
			tok[ntok] = s;
			tok_len[ntok] = (size_t)(q - s);
		}
		ntok++;
	}
	return ntok;
}

/* role_of returns the role named by `len` bytes of `s`, or -1. */
static int role_of(const char *s, size_t len)
{
	for (int r = 0; r < 3; r++)
		if (len == strlen(role_names[r]) && memcmp(s, role_names[r], len) == 0)
			return r;
	return -1;
}

/* add_key parses line `line` of `path`, the fields ID ROLE KEY, into the next key of `set`. */
static int add_key(const char *path, int line, const char *const tok[3], const size_t tok_len[3],
		   struct stek_set *set, char *err, size_t err_len)
{
	uint8_t idb[STEK_TICKET_ID_LEN];
	struct stek_key *k;
	int r;

	if (!parse_hex(tok[0], tok_len[0], idb, sizeof(idb))) {
		set_err(err, err_len, "stek: %s:%d: key id must be 8 hex digits", path, line);
		return -EINVAL;
	}
	if (set->num_keys == STEK_MAX_KEYS) {
		set_err(err, err_len,
			"stek: %s:%d: too many keys (at most %d: current, previous, next)", path,
			line, STEK_MAX_KEYS);
		return -EINVAL;
	}
	k = &set->keys[set->num_keys].k;
	k->id = key_id(idb);
	r = role_of(tok[1], tok_len[1]);
	if (r < 0) {
		set_err(err, err_len,
			"stek: %s:%d: unknown role '%.*s' (expected current, previous or next)",
			path, line, (int)(tok_len[1] > 16 ? 16 : tok_len[1]), tok[1]);
		return -EINVAL;
	}
	k->role = (enum stek_role)r;
	if (!parse_hex(tok[2], tok_len[2], k->key, sizeof(k->key))) {
		set_err(err, err_len, "stek: %s:%d: key must be %d hex digits (%d bytes)", path,
			line, 2 * STEK_KEY_LEN, STEK_KEY_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < set->num_keys; i++) {
		if (set->keys[i].k.id == k->id) {
			set_err(err, err_len, "stek: %s:%d: duplicate key id %08x", path, line,
				k->id);
			return -EINVAL;
		}
		if (set->keys[i].k.role == k->role) {
			set_err(err, err_len, "stek: %s:%d: second %s key", path, line,
				role_names[r]);
			return -EINVAL;
		}
	}
	set->num_keys++;
	return 0;
}

/* parse_text parses the NUL-free text `buf` (`n` bytes) into `set`. */
static int parse_text(const char *path, const char *buf, size_t n, struct stek_set *set, char *err,
		      size_t err_len)
{
	const char *p = buf, *end = buf + n;
	int line = 0, rc;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *tok[4];
		size_t tok_len[4], ntok;

		if (!eol)
			eol = end;
		line++;
		ntok = split_line(p, eol, tok, tok_len);
		p = eol + 1;
		if (ntok == 0)
			continue;
		if (ntok != 3) {
			set_err(err, err_len,
				"stek: %s:%d: expected 'ID ROLE KEY' (3 fields), found %zu", path,
				line, ntok);
			return -EINVAL;
		}
		rc = add_key(path, line, tok, tok_len, set, err, err_len);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- loading -------------------------------------------------------------------- */

/* check_file refuses what `fd` (opened from `path`) must not be: see stek_load_ex. */
static int check_file(int fd, const char *path, unsigned flags, char *err, size_t err_len)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) != 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: %s", path, strerror(errno));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, err_len, "stek: %s is not a regular file", path);
		return -EINVAL;
	}
	if ((st.st_mode & 077) && !(flags & STEK_LOAD_ANY_MODE)) {
		set_err(err, err_len,
			"stek: %s is mode %04o; it must not be readable or writable by group or "
			"others (chmod 600)",
			path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	/* whoever owns the file can change it, and with it every ticket and token key */
	if (st.st_uid != 0 && st.st_uid != geteuid() && !(flags & STEK_LOAD_ANY_MODE)) {
		set_err(err, err_len,
			"stek: %s is owned by uid %u; it must be owned by root or by the daemon's "
			"user (uid %u) (chown)",
			path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_size > STEK_FILE_MAX) {
		set_err(err, err_len, "stek: %s is %lld bytes; a STEK file is under %d", path,
			(long long)st.st_size, STEK_FILE_MAX);
		return -EFBIG;
	}
	return 0;
}

/* read_text reads all of `fd` into `buf` (STEK_FILE_MAX + 1 bytes); NUL-free text only. */
static int read_text(int fd, const char *path, char *buf, size_t *out_n, char *err, size_t err_len)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, STEK_FILE_MAX + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rc = -errno;

			set_err(err, err_len, "stek: %s: read: %s", path, strerror(errno));
			return rc;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > STEK_FILE_MAX) {
			set_err(err, err_len, "stek: %s: larger than %d bytes", path,
				STEK_FILE_MAX);
			return -EFBIG;
		}
	}
	if (memchr(buf, '\0', n)) {
		set_err(err, err_len, "stek: %s: binary data (NUL byte) in a text file", path);
		return -EINVAL;
	}
	*out_n = n;
	return 0;
}

int stek_load_ex(const char *path, unsigned flags, struct stek_set **out, char *err, size_t err_len)
{
	struct stek_set *set = NULL;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc;

	*out = NULL;
	/* O_NONBLOCK: a FIFO planted at `path` must not hang the daemon */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	rc = check_file(fd, path, flags, err, err_len);
	if (rc)
		goto out;
	/* read(2) into our own buffer (not stdio's) so every copy of the keys is wiped */
	buf = malloc(STEK_FILE_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		set_err(err, err_len, "stek: %s: out of memory", path);
		goto out;
	}
	rc = read_text(fd, path, buf, &n, err, err_len);
	if (rc)
		goto out;
	set = set_alloc();
	if (!set) {
		rc = -ENOMEM;
		set_err(err, err_len, "stek: %s: out of memory", path);
		goto out;
	}
	rc = parse_text(path, buf, n, set, err, err_len);
	if (rc == 0)
		rc = set_finish(set, path, err, err_len);
	if (rc == 0) {
		*out = set;
		set = NULL;
	}
out:
	if (buf) {
		OPENSSL_cleanse(buf, STEK_FILE_MAX + 1);
		free(buf);
	}
	if (set)
		set_free(set);
	close(fd);
	return rc;
}

int stek_load(const char *path, struct stek_set **out, char *err, size_t err_len)
{
	return stek_load_ex(path, 0, out, err, err_len);
}

int stek_describe(const struct stek_set *set, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < set->num_keys; i++) {
		const struct stek_key *k = &set->keys[i].k;
		uint8_t fp[STEK_FP_LEN];
		char hex[2 * STEK_FP_LEN + 1];
		int w;

		stek_derive(k, STEK_LABEL_FINGERPRINT, fp, sizeof(fp));
		for (size_t j = 0; j < sizeof(fp); j++)
			snprintf(hex + 2 * j, 3, "%02x", fp[j]);
		w = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0,
			     "%08x  %-8s  fp %s\n", k->id, stek_role_name(k->role), hex);
		if (w < 0)
			return -EINVAL;
		used += (size_t)w;
	}
	return (int)used;
}
