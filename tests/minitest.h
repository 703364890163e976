/* SPDX-License-Identifier: MIT */
/*
 * minitest.h: a tiny TAP-like test harness for tests that link BoringSSL.
 *
 * Why not Criterion: libcriterion links libgit2, which links OpenSSL 3's
 * libcrypto.so.3. BoringSSL exports the same symbol names (SSL_new, EVP_*, ...),
 * and a process that loads both gets whichever the dynamic linker binds first:
 * crashes or, worse, silently mixed crypto. So a BoringSSL test is its own
 * executable with no dependency beyond libc and BoringSSL; check it with
 * `ldd build/tests/test_tls | grep libcrypto.so.3` (must print nothing).
 *
 * Use (one test file per executable; include this once):
 *
 *   #include "minitest.h"
 *   TEST(adds) { CHECK_EQ(1 + 1, 2); }
 *   MINITEST_MAIN()          // or write main() yourself and call mt_run(argc, argv)
 *
 * CHECK(cond), CHECK_EQ(a, b) (integers), CHECK_STR(a, b), CHECK_MEM(a, b, len):
 * on failure they print "file:line: ..." with the values and end the current test
 * (a longjmp back to the runner: resources of a failed test may leak). Tests run
 * in registration order; the output is "1..N", then "ok N name" or "not ok N name"
 * per test. `./test_x NAME...` runs only the named tests. mt_skip_all(reason)
 * prints "SKIPPED: reason" and exits 77 (ctest's SKIP_RETURN_CODE). The exit code
 * is 0 if every test passed, 1 otherwise.
 */
#ifndef R2P2_MINITEST_H
#define R2P2_MINITEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MT_MAX_TESTS 256

struct mt_test {
	const char *name;
	void (*fn)(void);
};

static struct mt_test mt_tests[MT_MAX_TESTS];
static int mt_num_tests;
static jmp_buf mt_jmp;
static int mt_failed_current;

static void mt_register(const char *name, void (*fn)(void))
{
	if (mt_num_tests == MT_MAX_TESTS) {
		fprintf(stderr, "minitest: more than %d tests\n", MT_MAX_TESTS);
		exit(2);
	}
	mt_tests[mt_num_tests].name = name;
	mt_tests[mt_num_tests].fn = fn;
	mt_num_tests++;
}

/* TEST(name) { body } defines and registers a test (before main runs). */
#define TEST(name)                                                                                 \
	static void mt_test_##name(void);                                                          \
	__attribute__((constructor)) static void mt_reg_##name(void)                               \
	{                                                                                          \
		mt_register(#name, mt_test_##name);                                                \
	}                                                                                          \
	static void mt_test_##name(void)

__attribute__((format(printf, 3, 4), noreturn, unused)) static void
mt_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stdout, "# %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	mt_failed_current = 1;
	longjmp(mt_jmp, 1);
}

/* mt_note prints a diagnostic line ("# ...") that TAP readers show but ignore. */
__attribute__((format(printf, 1, 2), unused)) static void mt_note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			mt_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                    \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			mt_fail(__FILE__, __LINE__, __VA_ARGS__);                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		intmax_t mt_a = (intmax_t)(a), mt_b = (intmax_t)(b);                               \
		if (mt_a != mt_b)                                                                  \
			mt_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %jd != %jd", #a, #b, mt_a,  \
				mt_b);                                                             \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *mt_a = (a), *mt_b = (b);                                               \
		if (!mt_a || !mt_b || strcmp(mt_a, mt_b) != 0)                                     \
			mt_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", #a, #b, \
				mt_a ? mt_a : "(null)", mt_b ? mt_b : "(null)");                   \
	} while (0)

/* CHECK_MEM compares `len` bytes and names the first differing offset. */
#define CHECK_MEM(a, b, len)                                                                       \
	do {                                                                                       \
		const uint8_t *mt_a = (const uint8_t *)(a), *mt_b = (const uint8_t *)(b);          \
		size_t mt_len = (len);                                                             \
		for (size_t mt_i = 0; mt_i < mt_len; mt_i++)                                       \
			if (mt_a[mt_i] != mt_b[mt_i])                                              \
				mt_fail(__FILE__, __LINE__,                                        \
					"CHECK_MEM(%s, %s, %zu): byte %zu: 0x%02x != 0x%02x", #a,  \
					#b, mt_len, mt_i, mt_a[mt_i], mt_b[mt_i]);                 \
	} while (0)

__attribute__((noreturn, unused)) static void mt_skip_all(const char *reason)
{
	printf("SKIPPED: %s\n", reason);
	fflush(stdout);
	exit(77);
}

static int mt_selected(int argc, char **argv, const char *name)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

/* mt_run runs the registered (or the named) tests; returns the process exit code. */
__attribute__((unused)) static int mt_run(int argc, char **argv)
{
	int n = 0, failed = 0;

	for (int i = 0; i < mt_num_tests; i++)
		n += mt_selected(argc, argv, mt_tests[i].name);
	printf("1..%d\n", n);
	fflush(stdout);
	n = 0;
	for (int i = 0; i < mt_num_tests; i++) {
		if (!mt_selected(argc, argv, mt_tests[i].name))
			continue;
		n++;
		mt_failed_current = 0;
		if (setjmp(mt_jmp) == 0)
			mt_tests[i].fn();
		printf("%s %d %s\n", mt_failed_current ? "not ok" : "ok", n, mt_tests[i].name);
		fflush(stdout);
		failed += mt_failed_current;
	}
	if (failed)
		printf("# %d of %d failed\n", failed, n);
	return failed ? 1 : 0;
}

#define MINITEST_MAIN()                                                                            \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		return mt_run(argc, argv);                                                         \
	}

#endif /* R2P2_MINITEST_H */
