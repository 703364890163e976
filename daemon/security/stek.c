// SPDX-License-Identifier: MIT
/*
 * stek.c: STEK files (load, generate, rotate), key derivation, and TLS session
 * ticket sealing through BoringSSL's SSL_TICKET_AEAD_METHOD.
 *
 * All cryptography is BoringSSL's: HKDF-SHA256, AES-256-GCM (EVP_AEAD), RAND_bytes.
 */
#include "boringssl.h"

#include "err.h"
#include "stek.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
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
#include <openssl/err.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#define STEK_FILE_MAX (64 * 1024) /* a valid file is under 400 bytes */
#define STEK_FP_LEN 8

struct stek_entry {
	struct stek_key k; /* first: stek_find hands out &entry->k */
	EVP_AEAD_CTX tkt;  /* AES-256-GCM under stek_derive(k, STEK_LABEL_TLS_TICKET) */
	bool tkt_ready;
};

struct stek_set {
	atomic_int refs;
	size_t num_keys;
	size_t current; /* index into keys */
	struct stek_entry keys[STEK_MAX_KEYS];
};

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

static void set_free(struct stek_set *set)
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
static int set_finish(struct stek_set *set, const char *where, char *err, size_t err_len)
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

static struct stek_set *set_alloc(void)
{
	struct stek_set *set = calloc(1, sizeof(*set));

	if (set)
		atomic_init(&set->refs, 1);
	return set;
}

/* ---- parsing -------------------------------------------------------------------- */

/* key_id reads a key id from its 4 big-endian bytes (a key file's ID, a ticket's). */
static uint32_t key_id(const uint8_t b[STEK_TICKET_ID_LEN])
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

/* ---- writing -------------------------------------------------------------------- */

/* format_set writes the file text of `set` into `buf` (`len` bytes). Returns its length. */
static size_t format_set(const struct stek_set *set, char *buf, size_t len)
{
	static const enum stek_role order[] = {STEK_CURRENT, STEK_PREVIOUS, STEK_NEXT};
	size_t used;

	used = (size_t)snprintf(buf, len,
				"# r2p2d session-ticket encryption keys (keep secret; mode 0600)\n"
				"# id       role      key (32 bytes, hex)\n");
	for (size_t o = 0; o < 3; o++) {
		for (size_t i = 0; i < set->num_keys; i++) {
			const struct stek_key *k = &set->keys[i].k;

			if (k->role != order[o] || used + 96 > len)
				continue;
			used += (size_t)snprintf(buf + used, len - used, "%08x   %-8s  ", k->id,
						 stek_role_name(k->role));
			for (size_t j = 0; j < STEK_KEY_LEN; j++)
				used += (size_t)snprintf(buf + used, len - used, "%02x", k->key[j]);
			used += (size_t)snprintf(buf + used, len - used, "\n");
		}
	}
	return used;
}

static int fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/*
 * write_temp writes the file text of `set` to a new temporary file next to `path`
 * with `mode`, fsyncs it and stores its name in `tmp` (PATH_MAX bytes).
 */
static int write_temp(const char *path, const struct stek_set *set, mode_t mode, char *tmp,
		      size_t tmp_len, char *err, size_t err_len)
{
	char text[512];
	size_t n, off = 0;
	int fd, rc = 0;

	if ((size_t)snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", path) >= tmp_len) {
		set_err(err, err_len, "stek: %s: path too long", path);
		return -ENAMETOOLONG;
	}
	fd = mkostemp(tmp, O_CLOEXEC); /* created 0600 */
	if (fd < 0) {
		rc = -errno;
		set_err(err, err_len, "stek: cannot create a temporary file next to %s: %s", path,
			strerror(errno));
		return rc;
	}
	if (fchmod(fd, mode) != 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: chmod: %s", tmp, strerror(errno));
		goto out;
	}
	n = format_set(set, text, sizeof(text));
	while (off < n) {
		ssize_t w = write(fd, text + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			set_err(err, err_len, "stek: %s: write: %s", tmp, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: fsync: %s", tmp, strerror(errno));
	}
out:
	OPENSSL_cleanse(text, sizeof(text));
	if (close(fd) != 0 && rc == 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: close: %s", tmp, strerror(errno));
	}
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static int random_key(struct stek_key *k)
{
	return RAND_bytes(k->key, sizeof(k->key)) == 1 ? 0 : -EIO;
}

int stek_generate_file(const char *path, char *err, size_t err_len)
{
	struct stek_set *set;
	char tmp[4096];
	uint8_t idb[4];
	int rc;

	set = set_alloc();
	if (!set) {
		set_err(err, err_len, "stek: out of memory");
		return -ENOMEM;
	}
	/* a random first id (below 2^31, so increments never wrap in practice) keeps
	 * independently generated files of different services from sharing ids */
	set->num_keys = 1;
	set->keys[0].k.role = STEK_CURRENT;
	if (RAND_bytes(idb, sizeof(idb)) != 1 || random_key(&set->keys[0].k) != 0) {
		set_err(err, err_len, "stek: no randomness");
		rc = -EIO;
		goto out;
	}
	set->keys[0].k.id = key_id(idb) & 0x7fffffffu;
	if (set->keys[0].k.id == 0)
		set->keys[0].k.id = 1;
	rc = write_temp(path, set, 0600, tmp, sizeof(tmp), err, err_len);
	if (rc != 0)
		goto out;
	/* link(2), not rename(2): never replace an existing key file */
	if (link(tmp, path) != 0) {
		rc = -errno;
		if (errno == EEXIST)
			set_err(err, err_len,
				"stek: %s already exists (use 'r2p2ctl stek rotate' to add keys)",
				path);
		else
			set_err(err, err_len, "stek: cannot create %s: %s", path, strerror(errno));
	}
	unlink(tmp);
	if (rc == 0)
		fsync_dir_of(path);
out:
	set_free(set);
	return rc;
}

/*
 * rotate_keys fills the empty `set` with `old` rotated: previous := current,
 * current := next (or a fresh key), next := a fresh key. Returns 0 or -errno.
 */
static int rotate_keys(const struct stek_set *old, struct stek_set *set, const char *path,
		       char *err, size_t err_len)
{
	const struct stek_key *cur = NULL;
	struct stek_key *prev = &set->keys[0].k, *now = &set->keys[1].k, *next = &set->keys[2].k;
	uint32_t max_id = 0;

	for (size_t i = 0; i < old->num_keys; i++) {
		if (old->keys[i].k.id > max_id)
			max_id = old->keys[i].k.id;
		if (old->keys[i].k.role == STEK_NEXT)
			cur = &old->keys[i].k;
	}
	*prev = old->keys[old->current].k;
	prev->role = STEK_PREVIOUS;
	set->num_keys = 1;
	if (cur) {
		*now = *cur;
	} else {
		now->id = ++max_id;
		if (random_key(now) != 0)
			goto no_rand;
	}
	now->role = STEK_CURRENT;
	next->id = ++max_id;
	next->role = STEK_NEXT;
	if (random_key(next) != 0)
		goto no_rand;
	set->num_keys = 3;
	if (now->id == prev->id || next->id == prev->id || next->id == now->id) {
		set_err(
		    err, err_len,
		    "stek: %s: key id collision after wrapping past ffffffff; generate a new file",
		    path);
		return -EOVERFLOW;
	}
	return 0;
no_rand:
	set_err(err, err_len, "stek: no randomness");
	return -EIO;
}

/* replace_file writes `set` over `path` atomically, keeping the mode and owner of `st`. */
static int replace_file(const char *path, const struct stek_set *set, const struct stat *st,
			char *err, size_t err_len)
{
	char tmp[4096];
	int rc;

	rc = write_temp(path, set, st->st_mode & 0700, tmp, sizeof(tmp), err, err_len);
	if (rc != 0)
		return rc;
	/* keep the owner (e.g. root:r2p2 0400); only root may change it, so best effort */
	if (chown(tmp, st->st_uid, st->st_gid) != 0 && errno != EPERM) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: chown: %s", tmp, strerror(errno));
		unlink(tmp);
		return rc;
	}
	if (rename(tmp, path) != 0) {
		rc = -errno;
		set_err(err, err_len, "stek: cannot replace %s: %s", path, strerror(errno));
		unlink(tmp);
		return rc;
	}
	fsync_dir_of(path);
	return 0;
}

int stek_rotate_file(const char *path, struct stek_set **out_set, char *err, size_t err_len)
{
	struct stek_set *old = NULL, *set = NULL;
	struct stat st;
	int rc;

	if (out_set)
		*out_set = NULL;
	if (lstat(path, &st) != 0) {
		rc = -errno;
		set_err(err, err_len, "stek: %s: %s", path, strerror(errno));
		return rc;
	}
	if (S_ISLNK(st.st_mode)) {
		set_err(err, err_len,
			"stek: %s is a symbolic link (a secret store's copy?); rotate the source "
			"and let the store distribute it",
			path);
		return -EINVAL;
	}
	rc = stek_load(path, &old, err, err_len);
	if (rc != 0)
		return rc;
	set = set_alloc();
	if (!set) {
		rc = -ENOMEM;
		set_err(err, err_len, "stek: out of memory");
		goto out;
	}
	rc = rotate_keys(old, set, path, err, err_len);
	if (rc == 0)
		rc = set_finish(set, path, err, err_len);
	if (rc == 0)
		rc = replace_file(path, set, &st, err, err_len);
	if (rc == 0 && out_set) {
		*out_set = set;
		set = NULL;
	}
out:
	if (set)
		set_free(set);
	stek_set_put(old);
	return rc;
}

/* ---- TLS session tickets -------------------------------------------------------- */

struct stek_hook {
	stek_get_set_fn get_set;
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
	const struct stek_entry *e;
	struct stek_hook *h;
	struct stek_set *set = hook_set(ssl, &h);
	uint8_t *nonce = out + STEK_TICKET_ID_LEN;
	size_t ct_len;
	CBB cbb;

	if (!set || max_out_len < STEK_TICKET_OVERHEAD ||
	    in_len > max_out_len - STEK_TICKET_OVERHEAD)
		goto fail;
	e = &set->keys[set->current];
	/* `in` may equal `out`: move the plaintext behind the header, then seal in place */
	memmove(out + hdr, in, in_len);
	if (!CBB_init_fixed(&cbb, out, STEK_TICKET_ID_LEN) || !CBB_add_u32(&cbb, e->k.id) ||
	    !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		goto fail;
	}
	if (RAND_bytes(nonce, STEK_TICKET_NONCE_LEN) != 1)
		goto fail;
	/* the key id is associated data: a ticket cannot be moved to another key's id */
	if (!EVP_AEAD_CTX_seal(&e->tkt, out + hdr, &ct_len, max_out_len - hdr, nonce,
			       STEK_TICKET_NONCE_LEN, out + hdr, in_len, out, STEK_TICKET_ID_LEN))
		goto fail;
	*out_len = hdr + ct_len;
	count(&h->sealed);
	return 1;
fail:
	if (h)
		count(&h->seal_fail);
	return 0;
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
	count(&h->opened);
	return ssl_ticket_aead_success;
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
