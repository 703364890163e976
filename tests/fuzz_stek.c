// SPDX-License-Identifier: MIT
/*
 * fuzz_stek: libFuzzer harness over the STEK key-file parser (stek_load,
 * daemon/stek.c) with arbitrary file contents.
 *
 * The input becomes the contents of a memfd (mode 0600, as stek_load demands of a
 * key file; an input whose first byte is 0x7f is made mode 0644 instead and must
 * be refused with -EPERM), read through /proc/self/fd/N, so no file system is
 * touched. Proves that no contents make the parser read or write out of bounds or
 * leak, and that a set it accepts is what the file says: one to three keys, exactly
 * one current, no two of a role or an id, each findable by id, each id and key
 * present in the text as hex, and stek_describe printing one line per key. A
 * refusal returns a negative errno, no set, and a message naming the path.
 *
 * Seeds: tests/fuzz/fuzz_stek/ (hand-written key files, valid and not).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stek.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	memfd = memfd_create("fuzz-stek", MFD_CLOEXEC);
	if (memfd < 0 || fchmod(memfd, 0600) != 0) {
		perror("fuzz_stek: memfd");
		exit(2);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

/* hex_in says whether `bytes` written as hex (any case) occur in `text`. */
static int hex_in(const char *text, const uint8_t *bytes, size_t len)
{
	char hex[2 * STEK_KEY_LEN + 1];

	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
	return strcasestr(text, hex) != NULL;
}

static void check_set(const struct stek_set *set, const char *text)
{
	size_t n = stek_num_keys(set), lines = 0;
	const struct stek_key *cur = stek_current(set);
	unsigned roles[3] = {0};
	char desc[512];
	int w;

	if (n < 1 || n > STEK_MAX_KEYS || !cur || cur->role != STEK_CURRENT)
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct stek_key *k = stek_key_at(set, i);
		uint8_t id[4] = {k->id >> 24, k->id >> 16, k->id >> 8, k->id};

		if ((unsigned)k->role > STEK_NEXT || roles[k->role]++)
			abort();
		if (stek_find(set, k->id) != k)
			abort(); /* ids are unique: find returns this very key */
		if (!hex_in(text, id, sizeof(id)) || !hex_in(text, k->key, sizeof(k->key)))
			abort();
	}
	if (roles[STEK_CURRENT] != 1)
		abort();
	w = stek_describe(set, desc, sizeof(desc));
	if (w < 0 || (size_t)w >= sizeof(desc))
		abort();
	for (const char *p = desc; *p; p++)
		lines += *p == '\n';
	if (lines != n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool open_mode = size && data[0] == 0x7f;
	struct stek_set *set = (struct stek_set *)&set; /* must be reset to NULL on failure */
	char err[256], *text;
	int rc;

	if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size ||
	    fchmod(memfd, open_mode ? 0644 : 0600) != 0)
		abort();
	err[0] = '\0';
	rc = stek_load(path, &set, err, sizeof(err));
	if (open_mode) {
		if (rc != -EPERM || set)
			abort();
		return 0;
	}
	if (rc != 0) {
		if (rc > 0 || set || !strstr(err, path))
			abort();
		return 0;
	}
	/* Accepted: the text holds no NUL byte, so it is a C string once terminated. */
	text = malloc(size + 1);
	if (!text || memchr(data, '\0', size))
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	check_set(set, text);
	free(text);
	stek_set_put(set);
	return 0;
}
