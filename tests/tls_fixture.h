/* SPDX-License-Identifier: MIT */
/*
 * What the BoringSSL tests (minitest.h) need on disk: a private directory with
 * demo certificates from tools/gen-certs.sh, and STEK files. Header-only: each
 * test is one translation unit. Any failure here ends the test run (exit 2); a
 * machine without the openssl CLI skips every test.
 */
#ifndef R2P2_TESTS_TLS_FIXTURE_H
#define R2P2_TESTS_TLS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "minitest.h"

/* fixture_write_stek writes a STEK file of `lines` at `path`, mode 0600. */
static inline void fixture_write_stek(const char *path, const char *lines)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(lines, f) < 0 || fclose(f) != 0 || chmod(path, 0600) != 0) {
		perror(path);
		exit(2);
	}
}

/* fixture_mkdtemp makes `dir` ($TMPDIR or /tmp, then "/NAME.XXXXXX"). */
static inline void fixture_mkdtemp(char *dir, size_t dir_len, const char *name)
{
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		mt_skip_all("the openssl CLI is missing (tools/gen-certs.sh needs it)");
	snprintf(dir, dir_len, "%s/%s.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(2);
	}
}

/* fixture_certs runs tools/gen-certs.sh into `dir` for the services `svcs` (one string). */
static inline void fixture_certs(const char *dir, const char *svcs)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "bash '%s/tools/gen-certs.sh' '%s' %s >/dev/null",
		 R2P2_SOURCE_DIR, dir, svcs);
	if (system(cmd) != 0) {
		fprintf(stderr, "gen-certs.sh failed: %s\n", cmd);
		exit(2);
	}
}

/* fixture_remove removes `dir` and everything in it (nothing when `dir` is empty). */
static inline void fixture_remove(const char *dir)
{
	char cmd[400];

	if (!dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

#endif /* R2P2_TESTS_TLS_FIXTURE_H */
