// SPDX-License-Identifier: MIT
/*
 * stek_rotate.c: writing STEK files. stek_generate_file creates a new file with one
 * current key and never replaces one; stek_rotate_file moves next to current and
 * current to previous, with a fresh next key. Both write a temporary file, fsync it,
 * then link or rename it into place, so a reader sees the old file or the new one.
 */
#include "boringssl.h"

#include "err.h"
#include "stek_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/rand.h>

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
