// SPDX-License-Identifier: MIT
/*
 * r2p2-router's configuration parser. inih splits "key = value" lines; it reads through
 * our line reader so that every error can name its line (the packaged inih is built
 * without handler line numbers): the reader counts physical lines, and inih calls the
 * handler for a line before it asks for the next one.
 */
#include "rt_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rt_parser {
	const char *name; /* file name, for errors */
	FILE *f;	  /* or */
	const char *text;
	size_t pos;
	int lineno;
	int sec_line;	  /* line of the last section header */
	bool sec_pending; /* a header was read; its first key opens the section */
	struct rt_config *cfg;
	struct rt_service_cfg *svc; /* the [router NAME] being read, or NULL */
	char section[RT_NAME_MAX + 16];
	bool in_daemon;
	bool failed;
	char *err;
	size_t err_len;
	int svc_line[R2P2_RT_MAX_SERVICES];
	bool has_service[R2P2_RT_MAX_SERVICES];
};

static const char *const policy_names[R2P2_RT_NUM_POLICIES] = {[R2P2_RT_RANDOM] = "random",
							       [R2P2_RT_RR] = "rr",
							       [R2P2_RT_P2C] = "p2c",
							       [R2P2_RT_JBSQ] = "jbsq"};

const char *rt_policy_name(unsigned policy)
{
	return policy < R2P2_RT_NUM_POLICIES ? policy_names[policy] : "?";
}

static void __attribute__((format(printf, 4, 5)))
fail(struct rt_parser *p, int line, const char *key, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->section[0] && key)
		snprintf(p->err, p->err_len, "%s:%d: [%s] %s: %s", p->name, line, p->section, key,
			 msg);
	else if (p->section[0])
		snprintf(p->err, p->err_len, "%s:%d: [%s]: %s", p->name, line, p->section, msg);
	else
		snprintf(p->err, p->err_len, "%s:%d: %s", p->name, line, msg);
}

/* parse_u32 reads a decimal number in [lo, hi]. Returns 0 or -1. */
static int parse_u32(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long n;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		return -1;
	*out = (unsigned)n;
	return 0;
}

/* parse_ep reads "a.b.c.d:port" (port 1..65535) into network byte order. */
static int parse_ep(const char *v, uint32_t *addr, uint16_t *port)
{
	char buf[32];
	const char *colon = strrchr(v, ':');
	unsigned p;
	size_t n;

	if (!colon || colon == v)
		return -1;
	n = (size_t)(colon - v);
	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) != 1 || parse_u32(colon + 1, 1, 65535, &p) != 0)
		return -1;
	*port = htons((uint16_t)p);
	return 0;
}

static void begin_router(struct rt_parser *p, const char *name)
{
	struct rt_config *c = p->cfg;
	size_t len = strlen(name);

	if (len == 0 || len >= RT_NAME_MAX) {
		fail(p, p->sec_line, NULL, "a router name of 1 to %d characters is required",
		     RT_NAME_MAX - 1);
		return;
	}
	for (unsigned i = 0; i < c->num_svcs; i++) {
		if (strcmp(c->svcs[i].name, name) == 0) {
			fail(p, p->sec_line, NULL, "duplicate section (first on line %d)",
			     c->svcs[i].line);
			return;
		}
	}
	if (c->num_svcs == R2P2_RT_MAX_SERVICES) {
		fail(p, p->sec_line, NULL, "too many [router] sections (at most %d)",
		     R2P2_RT_MAX_SERVICES);
		return;
	}
	p->svc = &c->svcs[c->num_svcs++];
	memset(p->svc, 0, sizeof(*p->svc));
	memcpy(p->svc->name, name, len + 1);
	p->svc->line = p->sec_line;
	p->svc->policy = R2P2_RT_JBSQ;
	p->svc->bound = 2;
	p->svc->queue = 1024;
}

/* new_section switches to the section `s` ("daemon" or "router NAME"). */
static void new_section(struct rt_parser *p, const char *s)
{
	p->svc = NULL;
	p->in_daemon = false;
	snprintf(p->section, sizeof(p->section), "%s", s);
	if (strcmp(s, "daemon") == 0) {
		p->in_daemon = true;
	} else if (strncmp(s, "router", 6) == 0 && (s[6] == ' ' || s[6] == '\t')) {
		begin_router(p, s + 7 + strspn(s + 7, " \t"));
	} else {
		char shown[64];

		snprintf(shown, sizeof(shown), "%s", s);
		p->section[0] = '\0';
		fail(p, p->sec_line, NULL,
		     "unknown section [%s] (expected [daemon] or [router NAME])", shown);
	}
}

/* user_value takes a user name as r2p2d's `user` does: A-Z a-z 0-9 _ - . only; empty
 * (the default) stays root. */
static void user_value(struct rt_parser *p, const char *key, const char *v)
{
	struct rt_config *c = p->cfg;
	size_t len = strlen(v);
	bool ok = len < sizeof(c->user);

	for (size_t i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char)v[i]) || v[i] == '_' || v[i] == '-' || v[i] == '.';
	if (!ok)
		fail(p, p->lineno, key,
		     "'%.40s': a user name of at most %zu characters of A-Z a-z 0-9 _ - .", v,
		     sizeof(c->user) - 1);
	else
		snprintf(c->user, sizeof(c->user), "%s", v);
}

static void daemon_key(struct rt_parser *p, const char *key, const char *v)
{
	struct rt_config *c = p->cfg;

	if (strcmp(key, "interface") == 0) {
		if (v[0] == '\0' || strlen(v) >= IF_NAMESIZE || strchr(v, '/') || strchr(v, ' '))
			fail(p, p->lineno, key, "an interface name of 1 to %d characters",
			     IF_NAMESIZE - 1);
		else
			snprintf(c->interface, sizeof(c->interface), "%s", v);
	} else if (strcmp(key, "timeout_ms") == 0) {
		if (parse_u32(v, 10, 600000, &c->timeout_ms) != 0)
			fail(p, p->lineno, key, "'%.40s': a number of milliseconds, 10 to 600000",
			     v);
	} else if (strcmp(key, "down_ms") == 0) {
		if (parse_u32(v, 10, 3600000, &c->down_ms) != 0)
			fail(p, p->lineno, key, "'%.40s': a number of milliseconds, 10 to 3600000",
			     v);
	} else if (strcmp(key, "sticky_ms") == 0) {
		if (parse_u32(v, 0, 3600000, &c->sticky_ms) != 0)
			fail(p, p->lineno, key, "'%.40s': a number of milliseconds, 0 to 3600000",
			     v);
	} else if (strcmp(key, "metrics") == 0) {
		if (parse_ep(v, &c->metrics_addr, &c->metrics_port) != 0)
			fail(p, p->lineno, key, "'%.40s': an IPv4 ADDR:PORT", v);
		else
			c->has_metrics = true;
	} else if (strcmp(key, "user") == 0) {
		user_value(p, key, v);
	} else if (strcmp(key, "seccomp") == 0) {
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			c->seccomp = true;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			c->seccomp = false;
		else
			fail(p, p->lineno, key, "'%.40s': expected yes or no", v);
	} else {
		fail(p, p->lineno, key,
		     "unknown key (expected interface, timeout_ms, down_ms, sticky_ms, metrics, "
		     "user, seccomp)");
	}
}

/* add_servers appends the space-separated "addr:port" list `v` to the service. */
static void add_servers(struct rt_parser *p, const char *key, const char *v)
{
	struct rt_service_cfg *s = p->svc;
	char word[64];

	while (*v && !p->failed) {
		size_t n = strcspn(v, " \t");
		struct rt_server_cfg *sv;

		if (n >= sizeof(word)) {
			fail(p, p->lineno, key, "'%.40s...': not an IPv4 address:port", v);
			return;
		}
		memcpy(word, v, n);
		word[n] = '\0';
		v += n;
		v += strspn(v, " \t");
		if (s->num_servers == R2P2_RT_SVC_SERVERS) {
			fail(p, p->lineno, key, "too many servers (at most %d per router)",
			     R2P2_RT_SVC_SERVERS);
			return;
		}
		sv = &s->servers[s->num_servers];
		if (parse_ep(word, &sv->addr, &sv->port) != 0) {
			fail(p, p->lineno, key, "'%s': not an IPv4 address:port", word);
			return;
		}
		for (unsigned i = 0; i < s->num_servers; i++) {
			if (s->servers[i].addr == sv->addr && s->servers[i].port == sv->port) {
				fail(p, p->lineno, key, "'%s' is listed twice (also on line %d)",
				     word, s->servers[i].line);
				return;
			}
		}
		sv->line = p->lineno;
		s->num_servers++;
	}
	if (s->num_servers == 0)
		fail(p, p->lineno, key, "at least one address:port is required");
}

static void router_key(struct rt_parser *p, const char *key, const char *v)
{
	struct rt_service_cfg *s = p->svc;
	unsigned idx = (unsigned)(s - p->cfg->svcs);

	if (strcmp(key, "service") == 0) {
		if (parse_ep(v, &s->addr, &s->port) != 0)
			fail(p, p->lineno, key, "'%.40s': not an IPv4 address:port", v);
		p->has_service[idx] = true;
	} else if (strcmp(key, "servers") == 0) {
		add_servers(p, key, v);
	} else if (strcmp(key, "policy") == 0) {
		for (s->policy = 0; s->policy < R2P2_RT_NUM_POLICIES; s->policy++)
			if (strcmp(v, policy_names[s->policy]) == 0)
				return;
		fail(p, p->lineno, key, "'%.40s': expected random, rr, p2c or jbsq", v);
	} else if (strcmp(key, "n") == 0) {
		if (parse_u32(v, 1, 1000000, &s->bound) != 0)
			fail(p, p->lineno, key, "'%.40s': a number, 1 to 1000000", v);
	} else if (strcmp(key, "queue") == 0) {
		if (parse_u32(v, 1, 65536, &s->queue) != 0)
			fail(p, p->lineno, key, "'%.40s': a number, 1 to 65536", v);
	} else {
		fail(p, p->lineno, key,
		     "unknown key (expected service, servers, policy, n, queue)");
	}
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct rt_parser *p = user;

	if (p->failed)
		return 0;
	if (p->sec_pending) {
		p->sec_pending = false;
		new_section(p, section);
	}
	if (p->failed)
		return 0;
	if (!p->in_daemon && !p->svc) {
		fail(p, p->lineno, NULL, "%s: key outside a section", key);
		return 0;
	}
	if (p->in_daemon)
		daemon_key(p, key, value);
	else
		router_key(p, key, value);
	return !p->failed;
}

/* reader hands inih one physical line at a time, counting them. */
static char *reader(char *str, int num, void *stream)
{
	struct rt_parser *p = stream;
	int n = 0, ch;
	bool any = false;

	if (p->failed)
		return NULL;
	for (;;) {
		if (p->f) {
			ch = getc(p->f);
		} else {
			ch = p->text[p->pos] ? (unsigned char)p->text[p->pos++] : EOF;
		}
		if (ch == EOF)
			break;
		any = true;
		if (ch == '\n')
			break;
		if (ch == '\0') {
			fail(p, p->lineno + 1, NULL, "NUL byte in line");
			return NULL;
		}
		if (n >= num - 2) {
			fail(p, p->lineno + 1, NULL, "line too long (at most %d characters)",
			     num - 3);
			return NULL;
		}
		str[n++] = (char)ch;
	}
	if (!any)
		return NULL;
	p->lineno++;
	str[n] = '\0';
	/* leading blanks would make inih treat the line as a continuation */
	{
		int skip = (int)strspn(str, " \t");

		memmove(str, str + skip, (size_t)(n - skip));
		n -= skip;
	}
	if (n > 0 && str[0] == '[') {
		/* errors up to its first key name the new section */
		int len = (int)strcspn(str + 1, "]\n");

		snprintf(p->section, sizeof(p->section), "%.*s", len, str + 1);
		p->sec_pending = true;
		p->sec_line = p->lineno;
	}
	str[n++] = '\n';
	str[n] = '\0';
	return str;
}

/* check_all checks what only the whole file can tell. */
static void check_all(struct rt_parser *p)
{
	struct rt_config *c = p->cfg;

	if (p->failed)
		return;
	p->section[0] = '\0';
	if (c->interface[0] == '\0') {
		fail(p, p->lineno, NULL, "[daemon] interface is required");
		return;
	}
	if (c->num_svcs == 0) {
		fail(p, p->lineno, NULL, "no [router NAME] section: nothing to route");
		return;
	}
	for (unsigned i = 0; i < c->num_svcs && !p->failed; i++) {
		struct rt_service_cfg *s = &c->svcs[i];

		snprintf(p->section, sizeof(p->section), "router %s", s->name);
		if (!p->has_service[i])
			fail(p, s->line, "service", "required key missing");
		else if (s->num_servers == 0)
			fail(p, s->line, "servers", "required key missing");
		for (unsigned j = 0; j < i && !p->failed; j++)
			if (c->svcs[j].addr == s->addr && c->svcs[j].port == s->port)
				fail(p, s->line, "service", "also the service of [router %s]",
				     c->svcs[j].name);
	}
}

static int parse(struct rt_parser *p, struct rt_config *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	out->timeout_ms = 500;
	out->down_ms = 2000;
	out->sticky_ms = 2000; /* r2p2d's dedup window */
	out->seccomp = true;
	p->cfg = out;
	rc = ini_parse_stream(reader, p, handler, p);
	if (!p->failed && rc != 0)
		fail(p, rc > 0 ? rc : p->lineno, NULL, "not a 'key = value' line or [section]");
	check_all(p);
	return p->failed ? -1 : 0;
}

int rt_config_parse(const char *name, const char *text, struct rt_config *out, char *err,
		    size_t err_len)
{
	struct rt_parser p = {.name = name, .text = text, .err = err, .err_len = err_len};

	return parse(&p, out);
}

int rt_config_load(const char *path, struct rt_config *out, char *err, size_t err_len)
{
	struct rt_parser p = {.name = path, .err = err, .err_len = err_len};
	int rc;

	p.f = fopen(path, "re");
	if (!p.f) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = parse(&p, out);
	fclose(p.f);
	return rc;
}
