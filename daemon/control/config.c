// SPDX-License-Identifier: MIT
/*
 * r2p2d's configuration parser (docs/OPERATIONS.md lists every key).
 *
 * libinih splits "key = value" lines, but on its own it cannot say on which
 * line a key was (the packaged library is built without handler line numbers),
 * truncates section names longer than 49 bytes and says nothing about a
 * section without keys. So inih reads through our own line reader: it counts
 * physical lines, strips a BOM and leading blanks (which also turns off inih's
 * multi-line continuation without touching its global switches), handles
 * section headers itself and hands inih a canonical "[s]", and checks that
 * every other line has the "key = value" shape. The first error stops parsing
 * and is reported as "file:line: [section] key: what is wrong".
 *
 * This file holds that line reader, the sections, the checks that need a whole
 * section or the whole file, the entry points and the lookups; config_keys.c sets
 * each key, config_values.c reads each kind of value (config_int.h: what they share).
 */
#include "config_int.h"
#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <r2p2/shm.h>
#include <r2p2/wire.h>

_Static_assert(CFG_NAME_MAX == R2P2_SERVICE_NAME_MAX, "service name bound");

/* failx records the first error only; later ones are consequences of it. */
void __attribute__((format(printf, 5, 6)))
failx(struct parser *p, int line, const char *label, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	if (!p->err || p->err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (label && key)
		set_err(p->err, p->err_len, "%s:%d: [%s] %s: %s", p->name, line, label, key, msg);
	else if (label)
		set_err(p->err, p->err_len, "%s:%d: [%s]: %s", p->name, line, label, msg);
	else
		set_err(p->err, p->err_len, "%s:%d: %s", p->name, line, msg);
}

/* ---- sections --------------------------------------------------------------- */

/* end_section checks what only a whole section can tell: required keys. */
static void end_section(struct parser *p)
{
	if (p->failed)
		return;
	if (p->kind == SEC_SERVE && !p->key_line[SK_PORT])
		failx(p, p->sec_line, p->label, "port", "required key missing");
	else if (p->kind == SEC_SERVE && p->serve->security != CFG_SEC_PLAIN &&
		 (!p->key_line[SK_CERT] || !p->key_line[SK_KEY]))
		failx(p, p->sec_line, p->label, p->key_line[SK_CERT] ? "key" : "cert",
		      "required with security = %s",
		      p->serve->security == CFG_SEC_TLS ? "tls" : "sealed");
	else if (p->kind == SEC_CALL && p->call->security != CFG_SEC_PLAIN && !p->key_line[CK_CA])
		failx(p, p->sec_line, p->label, "ca", "required with security = %s",
		      p->call->security == CFG_SEC_TLS ? "tls" : "sealed");
	else if (p->kind == SEC_CALL && p->call->security != CFG_SEC_PLAIN &&
		 p->key_line[CK_EXTENSIONS] && !p->call->extensions)
		failx(p, p->key_line[CK_EXTENSIONS], p->label, "extensions",
		      "cannot be 'no' with security = %s: its messages always carry the block",
		      p->call->security == CFG_SEC_TLS ? "tls" : "sealed");
	else if (p->kind == SEC_CALL && !p->key_line[CK_SERVER] && !p->key_line[CK_ROUTER])
		failx(p, p->sec_line, p->label, "server",
		      "required: give at least one server= (or one router=)");
}

/* open_serve starts [serve NAME] (`name_len` bytes of `name`). */
static void open_serve(struct parser *p, const char *name, size_t name_len)
{
	struct cfg *c = p->c;

	for (size_t i = 0; i < c->num_serves; i++) {
		if (strlen(c->serves[i].name) == name_len &&
		    memcmp(c->serves[i].name, name, name_len) == 0) {
			failx(p, p->lineno, p->label, NULL,
			      "service served twice (first at line %d)", p->serve_line[i]);
			return;
		}
	}
	if (c->num_serves == CFG_MAX_SERVICES) {
		failx(p, p->lineno, p->label, NULL, "too many [serve] sections (at most %d)",
		      CFG_MAX_SERVICES);
		return;
	}
	p->serve = &c->serves[c->num_serves];
	memset(p->serve, 0, sizeof(*p->serve));
	memcpy(p->serve->name, name, name_len);
	p->serve->security = CFG_SEC_PLAIN;
	p->serve->early_data = true;
	p->serve->line = p->lineno;
	p->serve_line[c->num_serves] = p->lineno;
	c->num_serves++;
	p->kind = SEC_SERVE;
}

/* open_call starts [call NAME] (`name_len` bytes of `name`). */
static void open_call(struct parser *p, const char *name, size_t name_len)
{
	struct cfg *c = p->c;

	for (size_t i = 0; i < c->num_calls; i++) {
		if (strlen(c->calls[i].name) == name_len &&
		    memcmp(c->calls[i].name, name, name_len) == 0) {
			failx(p, p->lineno, p->label, NULL,
			      "service called twice (first at line %d)", p->call_line[i]);
			return;
		}
	}
	if (c->num_calls == CFG_MAX_SERVICES) {
		failx(p, p->lineno, p->label, NULL, "too many [call] sections (at most %d)",
		      CFG_MAX_SERVICES);
		return;
	}
	p->call = &c->calls[c->num_calls];
	memset(p->call, 0, sizeof(*p->call));
	memcpy(p->call->name, name, name_len);
	p->call->policy = R2P2_LB_ROUTE;
	p->call->timeout_ms = 1000;
	p->call->retries = 3;
	p->call->max_inflight = CFG_DEFAULT_INFLIGHT;
	p->call->security = CFG_SEC_PLAIN;
	p->call_line[c->num_calls] = p->lineno;
	c->num_calls++;
	p->kind = SEC_CALL;
}

/*
 * section_name finds the service name after the first `word_len` bytes of the header
 * `s` (quotes allowed) and checks it. Returns it with `*out_len`, or NULL (recorded).
 */
static const char *section_name(struct parser *p, const char *s, size_t word_len, size_t *out_len)
{
	const char *name = s + word_len;
	size_t name_len;

	name += strspn(name, " \t");
	name_len = strlen(name);
	if (name_len >= 2 && name[0] == '"' && name[name_len - 1] == '"') {
		name++;
		name_len -= 2;
	}
	if (name_len == 0) {
		failx(p, p->lineno, NULL, NULL,
		      "[%.*s]: missing service name (e.g. [%.*s echo.svc])", (int)word_len, s,
		      (int)word_len, s);
		return NULL;
	}
	if (!valid_service_name(name, name_len)) {
		failx(p, p->lineno, NULL, NULL,
		      "[%.60s]: bad service name '%.*s' (1..%d characters of A-Z a-z 0-9 . _ -)", s,
		      (int)(name_len > 60 ? 60 : name_len), name, CFG_NAME_MAX - 1);
		return NULL;
	}
	*out_len = name_len;
	return name;
}

/* begin_section opens the section whose header text, without brackets, is `s`. */
static void begin_section(struct parser *p, const char *s)
{
	const char *name;
	size_t word_len, name_len;
	enum sec_kind kind;

	end_section(p);
	if (p->failed)
		return;
	p->kind = SEC_NONE;
	p->label[0] = '\0';
	p->serve = NULL;
	p->call = NULL;
	p->sec_line = p->lineno;
	memset(p->key_line, 0, sizeof(p->key_line));

	word_len = strcspn(s, " \t");
	if (word_len == 6 && strncmp(s, "daemon", 6) == 0 && s[6] == '\0') {
		p->kind = SEC_DAEMON;
		snprintf(p->label, sizeof(p->label), "daemon");
		return;
	}
	if (word_len == 5 && strncmp(s, "serve", 5) == 0) {
		kind = SEC_SERVE;
	} else if (word_len == 4 && strncmp(s, "call", 4) == 0) {
		kind = SEC_CALL;
	} else {
		failx(p, p->lineno, NULL, NULL,
		      "unknown section [%.60s] (expected [daemon], [serve NAME] or [call NAME])",
		      s);
		return;
	}
	name = section_name(p, s, word_len, &name_len);
	if (!name)
		return;
	snprintf(p->label, sizeof(p->label), "%.*s %.*s", (int)word_len, s, (int)name_len, name);
	if (kind == SEC_SERVE)
		open_serve(p, name, name_len);
	else
		open_call(p, name, name_len);
}

/* ---- the line reader inih pulls from ------------------------------------------ */

/* next_line reads one physical line into p->line. Returns its length, or -1 at EOF. */
static long next_line(struct parser *p, bool *out_too_long, bool *out_nul)
{
	size_t n = 0;
	bool any = false;
	int ch;

	*out_too_long = false;
	*out_nul = false;
	for (;;) {
		if (p->f) {
			ch = getc(p->f);
			if (ch == EOF)
				break;
		} else {
			/* a string ends at its NUL: an embedded one cannot be seen */
			if (p->text[p->pos] == '\0')
				break;
			ch = (unsigned char)p->text[p->pos++];
		}
		any = true;
		if (ch == '\n')
			break;
		if (ch == '\0')
			*out_nul = true;
		if (n < sizeof(p->line) - 1)
			p->line[n++] = (char)ch;
		else
			*out_too_long = true;
	}
	if (!any)
		return -1;
	p->line[n] = '\0';
	return (long)n;
}

/* section_line handles the header line `t`: inih gets "[s]" in `str`, we the name. */
static char *section_line(struct parser *p, char *t, char *str, int num)
{
	char *close = strchr(t, ']');
	char *rest, *in, *end;

	if (!close) {
		failx(p, p->lineno, NULL, NULL, "malformed section header '%.60s' (missing ']')",
		      t);
		return NULL;
	}
	rest = close + 1 + strspn(close + 1, " \t");
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		failx(p, p->lineno, NULL, NULL, "unexpected text after section header: '%.60s'",
		      rest);
		return NULL;
	}
	*close = '\0';
	in = t + 1 + strspn(t + 1, " \t");
	end = close;
	while (end > in && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	begin_section(p, in);
	if (p->failed)
		return NULL;
	snprintf(str, (size_t)num, "[s]");
	return str;
}

/*
 * is_key_line checks the "name = value" shape: inih would also split at ':' and
 * accept odd names, so insist on the one shape we document.
 */
static bool is_key_line(const char *t)
{
	size_t key_len = strspn(t, "abcdefghijklmnopqrstuvwxyz"
				   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	size_t after = key_len + strspn(t + key_len, " \t");

	return key_len != 0 && t[after] == '=';
}

static char *reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	bool too_long, has_nul;
	char *t, *end;
	long n;
	size_t len;

	if (p->failed || num < 4)
		return NULL;
	n = next_line(p, &too_long, &has_nul);
	if (n < 0)
		return NULL;
	p->lineno++;
	if (has_nul) {
		failx(p, p->lineno, NULL, NULL, "line contains a NUL byte");
		return NULL;
	}

	t = p->line;
	if (p->lineno == 1 && strncmp(t, "\xEF\xBB\xBF", 3) == 0)
		t += 3; /* UTF-8 BOM */
	t += strspn(t, " \t\r\f\v");
	end = t + strlen(t);
	while (end > t && isspace((unsigned char)end[-1]))
		*--end = '\0';
	len = (size_t)(end - t);

	if (len == 0 || t[0] == ';' || t[0] == '#') {
		str[0] = '\0'; /* a comment may be of any length */
		return str;
	}
	if (too_long || len > (size_t)num - 3) {
		failx(p, p->lineno, NULL, NULL, "line too long (at most %d characters)", num - 3);
		return NULL;
	}

	if (t[0] == '[')
		return section_line(p, t, str, num);
	if (!is_key_line(t)) {
		failx(p, p->lineno, NULL, NULL,
		      "expected 'key = value', '[section]' or a comment, got '%.60s'", t);
		return NULL;
	}
	memcpy(str, t, len + 1);
	return str;
}

/* ---- entry points ------------------------------------------------------------- */

void cfg_defaults(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "0.0.0.0");
	cfg_parse_addr(c->listen, false, &c->listen_addr);
	c->workers = 2;
	snprintf(c->socket_path, sizeof(c->socket_path), "%s", R2P2_DEFAULT_SOCKET);
	c->max_conns = 1024;
	c->max_conns_per_uid = 64;
	c->max_msg_len = 1048576;
	c->ring_entries = 256;
	c->arena_size = 4194304;
	c->dedup_window_ms = 2000;
	c->reassembly_timeout_ms = 1000;
	c->exec_timeout_ms = 30000;
	c->max_reassembly_bytes = 64ull << 20;
	c->max_half_open_per_source = 1024;
	c->drain_timeout_ms = 5000;
	c->replay_window_ms = 120000;
	c->poll = CFG_POLL_OFF;
	c->poll_us = 50;
	/* Datacenter clocks agree within milliseconds (NTP/PTP); the strike register must
	 * hold every (association, nonce) for twice this, so it sets the memory per RPC/s. */
	c->sealed_window_ms = 250;
	c->replay_max_entries = 1u << 18;
	snprintf(c->log_level, sizeof(c->log_level), "info");
	c->seccomp = true;
}

/* check_whole checks what involves several keys. */
static void check_whole(struct parser *p)
{
	const struct cfg *c = p->c;

	/* a service's own stek = replaces the daemon's for it */
	for (size_t i = 0; i < c->num_serves && !p->failed; i++)
		if (c->serves[i].security != CFG_SEC_PLAIN && !c->stek_path[0] &&
		    !c->serves[i].stek[0])
			failx(p, p->serve_port_line[i], "daemon", "stek",
			      "required: [serve %s] uses security = %s and has no stek of its own "
			      "(generate one with r2p2ctl stek generate PATH)",
			      c->serves[i].name,
			      c->serves[i].security == CFG_SEC_TLS ? "tls" : "sealed");
	if (p->failed)
		return;

	if (c->arena_size < c->max_msg_len) {
		if (p->daemon_line[DK_ARENA_SIZE])
			failx(p, p->daemon_line[DK_ARENA_SIZE], "daemon", "arena_size",
			      "%u is smaller than max_message (%u); an arena must hold the largest "
			      "message",
			      c->arena_size, c->max_msg_len);
		else
			failx(
			    p, p->daemon_line[DK_MAX_MESSAGE], "daemon", "max_message",
			    "%u is larger than arena_size (%u, the default); raise arena_size too",
			    c->max_msg_len, c->arena_size);
	}
}

/* parse runs inih over `p`'s input. Returns 0, -EINVAL (a bad config), -EIO or -ENOMEM. */
static int parse(struct parser *p)
{
	int rc;

	cfg_defaults(p->c);
	rc = ini_parse_stream(reader, p, on_key, p);
	if (p->failed)
		return -EINVAL;
	if (p->f && ferror(p->f)) {
		set_err(p->err, p->err_len, "%s: read error after line %d", p->name, p->lineno);
		return -EIO;
	}
	if (rc < 0) {
		failx(p, p->lineno, NULL, NULL, "out of memory");
		return -ENOMEM;
	}
	if (rc > 0)
		failx(p, rc, NULL, NULL, "syntax error");
	if (!p->failed)
		end_section(p);
	if (!p->failed)
		check_whole(p);
	return p->failed ? -EINVAL : 0;
}

int cfg_parse_string(struct cfg *c, const char *name, const char *text, char *err, size_t err_len)
{
	struct parser *p;
	int rc;

	if (err && err_len)
		err[0] = '\0';
	/* the parser holds a line buffer and per-service lines: keep it off the stack */
	p = calloc(1, sizeof(*p));
	if (!p) {
		set_err(err, err_len, "%s: out of memory", name ? name : "config");
		return -ENOMEM;
	}
	p->c = c;
	p->name = name ? name : "config";
	p->err = err;
	p->err_len = err_len;
	p->text = text ? text : "";
	rc = parse(p);
	free(p);
	return rc;
}

int cfg_load(struct cfg *c, const char *path, char *err, size_t err_len)
{
	struct parser *p;
	FILE *f;
	int rc;

	if (err && err_len)
		err[0] = '\0';
	f = fopen(path, "re");
	if (!f) {
		int e = errno;

		cfg_defaults(c);
		set_err(err, err_len, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		fclose(f);
		set_err(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	p->c = c;
	p->name = path;
	p->err = err;
	p->err_len = err_len;
	p->f = f;
	rc = parse(p);
	free(p);
	fclose(f);
	return rc;
}

/* check_readable opens `path` (the value of `stek` at `line` of [`label`]) and closes it. */
static int check_readable(const char *path, const char *name, int line, const char *label,
			  char *err, size_t err_len)
{
	/* O_NONBLOCK: a FIFO planted at `path` must not hang the check */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc;

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	rc = -errno;
	set_err(err, err_len, "%s:%d: [%s] stek: cannot open %s: %s", name, line, label, path,
		strerror(errno));
	return rc;
}

int cfg_check_files(const struct cfg *c, const char *name, char *err, size_t err_len)
{
	char label[64];
	int rc = 0;

	if (c->stek_path[0])
		rc = check_readable(c->stek_path, name, c->stek_line, "daemon", err, err_len);
	for (size_t i = 0; i < c->num_serves && rc == 0; i++) {
		if (!c->serves[i].stek[0])
			continue;
		snprintf(label, sizeof(label), "serve %s", c->serves[i].name);
		rc = check_readable(c->serves[i].stek, name, c->serves[i].stek_line, label, err,
				    err_len);
	}
	return rc;
}

const struct cfg_serve *cfg_find_serve(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->num_serves; i++)
		if (strcmp(c->serves[i].name, name) == 0)
			return &c->serves[i];
	return NULL;
}

const struct cfg_serve *cfg_find_serve_port(const struct cfg *c, uint16_t port)
{
	for (size_t i = 0; i < c->num_serves; i++)
		if (c->serves[i].port == port)
			return &c->serves[i];
	return NULL;
}

const struct cfg_call *cfg_find_call(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->num_calls; i++)
		if (strcmp(c->calls[i].name, name) == 0)
			return &c->calls[i];
	return NULL;
}

struct cfg_ref *cfg_ref_load(const char *path, char *err, size_t err_len)
{
	struct cfg_ref *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		set_err(err, err_len, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	atomic_init(&r->refs, 1);
	rc = cfg_load(&r->cfg, path, err, err_len);
	if (rc < 0) {
		free(r);
		errno = -rc;
		return NULL;
	}
	return r;
}

struct cfg_ref *cfg_ref_get(struct cfg_ref *r)
{
	atomic_fetch_add(&r->refs, 1);
	return r;
}

void cfg_ref_put(struct cfg_ref *r)
{
	if (r && atomic_fetch_sub(&r->refs, 1) == 1)
		free(r);
}
