/* SPDX-License-Identifier: MIT */
/*
 * config_int.h: the configuration parser's insides, shared only by the files that
 * make it up (config.h is the contract):
 *   config.c         the line reader inih pulls from, sections, whole-file checks,
 *                    entry points, lookups and shared references
 *   config_keys.c    inih's key handler: every key of [daemon], [serve] and [call]
 *   config_values.c  values: numbers, booleans, paths, security modes, service
 *                    names and addresses
 */
#ifndef R2P2D_CONFIG_INT_H
#define R2P2D_CONFIG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Longest physical line we read; inih's own buffer (ini_max_line) is smaller still. */
#define CFG_LINE_MAX 1024

enum sec_kind { SEC_NONE, SEC_DAEMON, SEC_SERVE, SEC_CALL };

/* The keys of each section (their names are in config_keys.c). */
enum daemon_key {
	DK_LISTEN,
	DK_WORKERS,
	DK_SOCKET,
	DK_SOCKET_GROUP,
	DK_MAX_MESSAGE,
	DK_RING_ENTRIES,
	DK_ARENA_SIZE,
	DK_DEDUP_WINDOW,
	DK_REASSEMBLY_TIMEOUT,
	DK_EXEC_TIMEOUT,
	DK_DRAIN_TIMEOUT,
	DK_ROUTER,
	DK_LOG_LEVEL,
	DK_STEK,
	DK_REPLAY_WINDOW,
	DK_REPLAY_MAX,
	DK_POLL,
	DK_POLL_US,
	DK_CPUS,
	DK_SEALED_WINDOW,
	DK_BACKEND,
	DK_XDP_MODE,
	DK_INTERFACE,
	DK_MAX_CONNS,
	DK_MAX_CONNS_PER_UID,
	DK_MAX_REASSEMBLY,
	DK_MAX_HALF_OPEN,
	DK_SECCOMP,
	DK_USER,
	DK_METRICS,
	DK_COUNT,
};

enum serve_key {
	SK_PORT,
	SK_SECURITY,
	SK_CERT,
	SK_KEY,
	SK_EARLY_DATA,
	SK_STEK,
	SK_OWNER,
	SK_COUNT
};

enum call_key {
	CK_SERVER,
	CK_ROUTER,
	CK_POLICY,
	CK_TIMEOUT,
	CK_RETRIES,
	CK_SECURITY,
	CK_MAX_INFLIGHT,
	CK_CA,
	CK_EXTENSIONS,
	CK_COUNT
};
_Static_assert(CK_COUNT <= 12 && SK_COUNT <= 12, "key_line bound");

/* One parse of one config: its input, where the reader is, and what was seen so far. */
struct parser {
	struct cfg *c;
	const char *name; /* file name used in messages */
	char *err;
	size_t err_len;
	bool failed;

	/* input: a FILE or a string */
	FILE *f;
	const char *text;
	size_t pos;
	int lineno; /* physical line last handed to inih */
	char line[CFG_LINE_MAX];

	/* the current section */
	enum sec_kind kind;
	char label[64]; /* "daemon", "serve echo.svc", "call echo.svc" */
	int sec_line;
	struct cfg_serve *serve;
	struct cfg_call *call;
	int key_line[12]; /* line of each key of a serve/call section, 0 = not seen */

	/* across the whole file */
	int daemon_line[DK_COUNT];
	int serve_line[CFG_MAX_SERVICES];      /* header line of serves[i] */
	int serve_port_line[CFG_MAX_SERVICES]; /* port line of serves[i] */
	int call_line[CFG_MAX_SERVICES];
};

/* ---- config.c ------------------------------------------------------------------- */

/* failx records the first error only (at `line`, in section `label`, for `key`; either
 * may be NULL); later ones are consequences of it. */
void __attribute__((format(printf, 5, 6)))
failx(struct parser *p, int line, const char *label, const char *key, const char *fmt, ...);

/* ---- config_keys.c -------------------------------------------------------------- */

/* on_key is inih's handler: it sets `key` of the current section to `value`. Returns
 * 0 once the config failed. */
int on_key(void *user, const char *section, const char *key, const char *value);

/* ---- config_values.c: each parses `v`, the value of `key`, or records why not ---- */

bool num_value(struct parser *p, const char *key, const char *v, uint64_t min, uint64_t max,
	       uint64_t *out);
bool path_value(struct parser *p, const char *key, const char *v, char *out, size_t out_len);
bool bool_value(struct parser *p, const char *key, const char *v, bool *out);
bool security_value(struct parser *p, const char *key, const char *v, enum cfg_security *out);
/* owner_value parses NAME or uid (a user), @NAME or @gid (a group) into `s`'s owner; names
 * are resolved now (getpwnam, getgrnam), so an unknown one is an error of this line. */
bool owner_value(struct parser *p, const char *key, const char *v, struct cfg_serve *s);
/* valid_service_name checks `len` bytes of `s`: 1..CFG_NAME_MAX-1 of A-Z a-z 0-9 . _ - */
bool valid_service_name(const char *s, size_t len);
/* parse_addr is cfg_parse_addr that also says, in `out_has_port`, which form it was. */
int parse_addr(const char *s, bool need_port, struct r2p2_addr *out, bool *out_has_port);

#endif /* R2P2D_CONFIG_INT_H */
