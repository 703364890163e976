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
 */
#include "config.h"
#include "err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <r2p2/shm.h>
#include <r2p2/wire.h>

_Static_assert(CFG_NAME_MAX == R2P2_SERVICE_NAME_MAX, "service name bound");

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Longest physical line we read; inih's own buffer (ini_max_line) is smaller still. */
#define CFG_LINE_MAX 1024

#define ADDR_PORT_HINT "(expected IPv4:port or [IPv6]:port)"

enum sec_kind { SEC_NONE, SEC_DAEMON, SEC_SERVE, SEC_CALL };

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
	DK_SPIN,
	DK_SEALED_WINDOW,
	DK_BACKEND,
	DK_XDP_MODE,
	DK_INTERFACE,
	DK_COUNT,
};

static const char *const daemon_keys[DK_COUNT] = {
    [DK_LISTEN] = "listen",
    [DK_WORKERS] = "workers",
    [DK_SOCKET] = "socket",
    [DK_SOCKET_GROUP] = "socket_group",
    [DK_MAX_MESSAGE] = "max_message",
    [DK_RING_ENTRIES] = "ring_entries",
    [DK_ARENA_SIZE] = "arena_size",
    [DK_DEDUP_WINDOW] = "dedup_window_ms",
    [DK_REASSEMBLY_TIMEOUT] = "reassembly_timeout_ms",
    [DK_EXEC_TIMEOUT] = "exec_timeout_ms",
    [DK_DRAIN_TIMEOUT] = "drain_timeout_ms",
    [DK_ROUTER] = "router",
    [DK_LOG_LEVEL] = "log_level",
    [DK_STEK] = "stek",
    [DK_REPLAY_WINDOW] = "replay_window_ms",
    [DK_REPLAY_MAX] = "replay_max_entries",
    [DK_SPIN] = "spin_us",
    [DK_SEALED_WINDOW] = "sealed_window_ms",
    [DK_BACKEND] = "backend",
    [DK_XDP_MODE] = "xdp_mode",
    [DK_INTERFACE] = "interface",
};

enum serve_key { SK_PORT, SK_SECURITY, SK_CERT, SK_KEY, SK_EARLY_DATA, SK_COUNT };
static const char *const serve_keys[SK_COUNT] = {
    [SK_PORT] = "port", [SK_SECURITY] = "security",	[SK_CERT] = "cert",
    [SK_KEY] = "key",	[SK_EARLY_DATA] = "early_data",
};

enum call_key {
	CK_SERVER,
	CK_ROUTER,
	CK_POLICY,
	CK_TIMEOUT,
	CK_RETRIES,
	CK_SECURITY,
	CK_CA,
	CK_COUNT
};
_Static_assert(CK_COUNT <= 8 && SK_COUNT <= 8, "key_line bound");
static const char *const call_keys[CK_COUNT] = {
    [CK_SERVER] = "server",   [CK_ROUTER] = "router",
    [CK_POLICY] = "policy",   [CK_TIMEOUT] = "timeout_ms",
    [CK_RETRIES] = "retries", [CK_SECURITY] = "security",
    [CK_CA] = "ca",
};

static const char *const policy_names[] = {
    [R2P2_LB_ROUTE] = "lb_route",
    [R2P2_FIXED_ROUTE] = "fixed_route",
    [R2P2_REPLICATED_ROUTE] = "replicated_route",
    [R2P2_REPLICATED_ROUTE_NO_SE] = "replicated_route_no_se",
};

static const char *const log_levels[] = {"error", "warn", "info", "debug"};

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
	int key_line[8]; /* line of each key of a serve/call section, 0 = not seen */

	/* across the whole file */
	int daemon_line[DK_COUNT];
	int serve_line[CFG_MAX_SERVICES];      /* header line of serves[i] */
	int serve_port_line[CFG_MAX_SERVICES]; /* port line of serves[i] */
	int call_line[CFG_MAX_SERVICES];
};

/* failx records the first error only; later ones are consequences of it. */
static void __attribute__((format(printf, 5, 6)))
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

/* ---- values ---------------------------------------------------------------- */

/* parse_u64 accepts decimal digits only: no sign, blanks, hex or suffix. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* num_value parses `v` into `out` or records "'v' is not a number" / out of range. */
static bool num_value(struct parser *p, const char *key, const char *v, uint64_t min, uint64_t max,
		      uint64_t *out)
{
	int rc = parse_u64(v, min, max, out);

	if (rc == -EINVAL)
		failx(p, p->lineno, p->label, key,
		      "'%s' is not a number (expected a decimal integer)", v);
	else if (rc == -ERANGE)
		failx(p, p->lineno, p->label, key, "%s is out of range (%llu..%llu)", v,
		      (unsigned long long)min, (unsigned long long)max);
	return rc == 0;
}

static bool valid_service_name(const char *s, size_t len)
{
	if (len == 0 || len >= CFG_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
			return false;
	}
	return true;
}

static int lookup(const char *const *names, size_t num_names, const char *s)
{
	for (size_t i = 0; i < num_names; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

static bool path_value(struct parser *p, const char *key, const char *v, char *out, size_t out_len)
{
	if (strlen(v) >= out_len) {
		failx(p, p->lineno, p->label, key, "path longer than %zu bytes", out_len - 1);
		return false;
	}
	memcpy(out, v, strlen(v) + 1);
	return true;
}

static bool bool_value(struct parser *p, const char *key, const char *v, bool *out)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
		*out = false;
		return true;
	}
	failx(p, p->lineno, p->label, key, "bad value '%s' (expected yes|no)", v);
	return false;
}

static bool security_value(struct parser *p, const char *key, const char *v, enum cfg_security *out)
{
	if (strcmp(v, "plain") == 0) {
		*out = CFG_SEC_PLAIN;
		return true;
	}
	if (strcmp(v, "tls") == 0) {
		*out = CFG_SEC_TLS;
		return true;
	}
	if (strcmp(v, "sealed") == 0) {
		*out = CFG_SEC_SEALED;
		return true;
	}
	failx(p, p->lineno, p->label, key, "bad value '%s' (expected plain|tls|sealed)", v);
	return false;
}

/*
 * split_host_port cuts `buf` (a writable copy) into its host and, if any, port text,
 * and says the family the host must be. Returns 0 or -EINVAL.
 */
static int split_host_port(char *buf, char **out_host, char **out_port, int *out_family)
{
	char *colon;

	*out_port = NULL;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close)
			return -EINVAL;
		*close = '\0';
		*out_host = buf + 1;
		*out_family = AF_INET6;
		if (close[1] == ':')
			*out_port = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
		return 0;
	}
	*out_host = buf;
	colon = strchr(buf, ':');
	if (colon && strchr(colon + 1, ':')) {
		*out_family = AF_INET6; /* a bare IPv6 address */
		return 0;
	}
	*out_family = AF_INET;
	if (colon) {
		*colon = '\0';
		*out_port = colon + 1;
	}
	return 0;
}

/*
 * parse_addr parses "1.2.3.4:5" or "[::1]:5", and when `need_port` is false
 * also a bare "1.2.3.4" or "::1". `out_has_port` says which form it was.
 */
static int parse_addr(const char *s, bool need_port, struct r2p2_addr *out, bool *out_has_port)
{
	char buf[64];
	char *host, *port_str;
	int family;
	size_t len;

	memset(out, 0, sizeof(*out));
	if (out_has_port)
		*out_has_port = false;
	if (!s)
		return -EINVAL;
	len = strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len + 1);

	if (split_host_port(buf, &host, &port_str, &family) != 0)
		return -EINVAL;

	if (port_str) {
		uint64_t port;

		if (parse_u64(port_str, 1, 65535, &port) != 0)
			return -EINVAL;
		out->port = htons((uint16_t)port);
		if (out_has_port)
			*out_has_port = true;
	} else if (need_port) {
		return -EINVAL;
	}
	if (inet_pton(family, host, out->addr) != 1) {
		memset(out, 0, sizeof(*out));
		if (out_has_port)
			*out_has_port = false;
		return -EINVAL;
	}
	out->family = (uint16_t)family;
	return 0;
}

int cfg_parse_addr(const char *s, bool need_port, struct r2p2_addr *out)
{
	return parse_addr(s, need_port, out, NULL);
}

const char *cfg_format_addr(const struct r2p2_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	unsigned port;

	if (!buf || len == 0)
		return NULL;
	if (!a || (a->family != AF_INET && a->family != AF_INET6) ||
	    !inet_ntop(a->family, a->addr, host, sizeof(host))) {
		snprintf(buf, len, "?");
		return buf;
	}
	port = ntohs(a->port);
	if (port == 0)
		snprintf(buf, len, "%s", host);
	else if (a->family == AF_INET)
		snprintf(buf, len, "%s:%u", host, port);
	else
		snprintf(buf, len, "[%s]:%u", host, port);
	return buf;
}

/* ---- keys ------------------------------------------------------------------- */

/* A numeric [daemon] key: its bounds and the cfg field (4 or 8 bytes) it sets. */
struct num_key {
	uint64_t min, max;
	size_t off, size;
	bool pow2; /* the value must be a power of two */
};

#define NUM_KEY(field, lo, hi)                                                                     \
	{                                                                                          \
		.min = (lo), .max = (hi), .off = offsetof(struct cfg, field),                      \
		.size = sizeof(((struct cfg *)0)->field)                                           \
	}

static const struct num_key daemon_nums[DK_COUNT] = {
    [DK_WORKERS] = NUM_KEY(workers, 1, 64),
    [DK_MAX_MESSAGE] = NUM_KEY(max_msg_len, 1, R2P2_PROTO_MAX_MSG),
    [DK_RING_ENTRIES] = {.min = 8,
			 .max = 65536,
			 .off = offsetof(struct cfg, ring_entries),
			 .size = sizeof(uint32_t),
			 .pow2 = true},
    [DK_ARENA_SIZE] = NUM_KEY(arena_size, 4096, 1u << 30),
    [DK_DEDUP_WINDOW] = NUM_KEY(dedup_window_ms, 1, 3600000),
    [DK_REASSEMBLY_TIMEOUT] = NUM_KEY(reassembly_timeout_ms, 1, 3600000),
    [DK_EXEC_TIMEOUT] = NUM_KEY(exec_timeout_ms, 1, 86400000),
    [DK_DRAIN_TIMEOUT] = NUM_KEY(drain_timeout_ms, 0, 3600000),
    [DK_REPLAY_WINDOW] = NUM_KEY(replay_window_ms, 1000, 86400000),
    [DK_REPLAY_MAX] = NUM_KEY(replay_max_entries, 1024, 1u << 26),
    [DK_SEALED_WINDOW] = NUM_KEY(sealed_window_ms, 100, 600000),
    [DK_SPIN] = NUM_KEY(spin_us, 0, 1000),
};
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "workers is stored as a uint32_t");

static void num_key_value(struct parser *p, const struct num_key *nk, const char *key,
			  const char *v)
{
	uint8_t *field = (uint8_t *)p->c + nk->off;
	uint64_t n;

	if (!num_value(p, key, v, nk->min, nk->max, &n))
		return;
	if (nk->pow2 && (n & (n - 1))) {
		failx(p, p->lineno, p->label, key, "%s is not a power of two", v);
		return;
	}
	if (nk->size == sizeof(uint64_t)) {
		memcpy(field, &n, sizeof(n));
	} else {
		uint32_t n32 = (uint32_t)n; /* max keeps it in range */

		memcpy(field, &n32, sizeof(n32));
	}
}

static void listen_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;
	bool has_port;

	if (parse_addr(v, false, &c->listen_addr, &has_port) != 0)
		failx(p, p->lineno, p->label, key,
		      "bad address '%s' (expected an IPv4 or IPv6 address, e.g. 0.0.0.0 or ::)", v);
	else if (has_port)
		failx(p, p->lineno, p->label, key,
		      "'%s' has a port; listen takes an address only (ports are per [serve] "
		      "section)",
		      v);
	else
		snprintf(c->listen, sizeof(c->listen), "%s", v);
}

static void socket_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;

	if (v[0] != '/')
		failx(p, p->lineno, p->label, key, "'%s' is not an absolute path", v);
	else if (strlen(v) >= sizeof(c->socket_path))
		failx(p, p->lineno, p->label, key, "path too long (at most %zu bytes)",
		      sizeof(c->socket_path) - 1);
	else
		snprintf(c->socket_path, sizeof(c->socket_path), "%s", v);
}

static void socket_group_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;
	size_t len = strlen(v);
	bool ok = len < sizeof(c->socket_group);

	for (size_t i = 0; ok && i < len; i++) {
		unsigned char ch = (unsigned char)v[i];

		ok = isalnum(ch) || ch == '_' || ch == '-' || ch == '.';
	}
	if (!ok)
		failx(p, p->lineno, p->label, key,
		      "bad group name '%s' (at most %zu characters of A-Z a-z 0-9 _ - .)", v,
		      sizeof(c->socket_group) - 1);
	else
		snprintf(c->socket_group, sizeof(c->socket_group), "%s", v);
}

static void router_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;

	if (v[0] == '\0')
		c->has_router = false;
	else if (cfg_parse_addr(v, true, &c->router) != 0)
		failx(p, p->lineno, p->label, key, "bad address '%s' " ADDR_PORT_HINT, v);
	else
		c->has_router = true;
}

static void backend_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;

	if (strcmp(v, "auto") == 0)
		c->backend = CFG_BACKEND_AUTO;
	else if (strcmp(v, "xdp") == 0)
		c->backend = CFG_BACKEND_XDP;
	else if (strcmp(v, "udp") == 0)
		c->backend = CFG_BACKEND_UDP;
	else
		failx(p, p->lineno, p->label, key, "bad value '%s' (expected auto|xdp|udp)", v);
}

/* text_key sets the [daemon] key `k` that is not a number. */
static void text_key(struct parser *p, enum daemon_key k, const char *key, const char *v)
{
	struct cfg *c = p->c;

	switch (k) {
	case DK_LISTEN:
		listen_value(p, key, v);
		break;
	case DK_SOCKET:
		socket_value(p, key, v);
		break;
	case DK_SOCKET_GROUP:
		socket_group_value(p, key, v);
		break;
	case DK_ROUTER:
		router_value(p, key, v);
		break;
	case DK_LOG_LEVEL:
		if (lookup(log_levels, ARRAY_SIZE(log_levels), v) < 0)
			failx(p, p->lineno, p->label, key,
			      "bad value '%s' (expected error|warn|info|debug)", v);
		else
			snprintf(c->log_level, sizeof(c->log_level), "%s", v);
		break;
	case DK_STEK:
		path_value(p, key, v, c->stek_path, sizeof(c->stek_path));
		break;
	case DK_BACKEND:
		backend_value(p, key, v);
		break;
	case DK_XDP_MODE:
		if (strcmp(v, "native") == 0 || strcmp(v, "skb") == 0)
			c->xdp_skb = strcmp(v, "skb") == 0;
		else
			failx(p, p->lineno, p->label, key, "bad value '%s' (expected native|skb)",
			      v);
		break;
	case DK_INTERFACE:
		if (strlen(v) >= sizeof(c->interface) || strlen(v) >= 16)
			failx(p, p->lineno, p->label, key, "interface name too long: '%s'", v);
		else
			snprintf(c->interface, sizeof(c->interface), "%s", v);
		break;
	default: /* the numeric keys (daemon_nums) */
		break;
	}
}

static void daemon_key(struct parser *p, const char *key, const char *v)
{
	int k = lookup(daemon_keys, ARRAY_SIZE(daemon_keys), key);

	if (k < 0) {
		failx(p, p->lineno, p->label, key, "unknown key");
		return;
	}
	if (p->daemon_line[k]) {
		failx(p, p->lineno, p->label, key, "set twice (first at line %d)",
		      p->daemon_line[k]);
		return;
	}
	p->daemon_line[k] = p->lineno;
	if (daemon_nums[k].max)
		num_key_value(p, &daemon_nums[k], key, v);
	else
		text_key(p, (enum daemon_key)k, key, v);
}

static void serve_key(struct parser *p, const char *key, const char *v)
{
	struct cfg_serve *s = p->serve;
	int k = lookup(serve_keys, ARRAY_SIZE(serve_keys), key);
	uint64_t n;

	if (k < 0) {
		failx(p, p->lineno, p->label, key, "unknown key");
		return;
	}
	if (p->key_line[k]) {
		failx(p, p->lineno, p->label, key, "set twice (first at line %d)", p->key_line[k]);
		return;
	}
	p->key_line[k] = p->lineno;

	switch ((enum serve_key)k) {
	case SK_PORT: {
		size_t self = (size_t)(s - p->c->serves);

		if (!num_value(p, key, v, 1, 65535, &n))
			break;
		for (size_t i = 0; i < p->c->num_serves; i++) {
			if (i != self && p->serve_port_line[i] && p->c->serves[i].port == n) {
				failx(p, p->lineno, p->label, key,
				      "port %s is already used by [serve %s] (line %d)", v,
				      p->c->serves[i].name, p->serve_port_line[i]);
				return;
			}
		}
		s->port = (uint16_t)n;
		p->serve_port_line[self] = p->lineno;
		break;
	}
	case SK_SECURITY:
		security_value(p, key, v, &s->security);
		break;
	case SK_CERT:
		path_value(p, key, v, s->cert, sizeof(s->cert));
		break;
	case SK_KEY:
		path_value(p, key, v, s->key, sizeof(s->key));
		break;
	case SK_EARLY_DATA:
		bool_value(p, key, v, &s->early_data);
		break;
	case SK_COUNT:
		break;
	}
}

static void call_key(struct parser *p, const char *key, const char *v)
{
	struct cfg_call *cl = p->call;
	int k = lookup(call_keys, ARRAY_SIZE(call_keys), key);
	uint64_t n;

	if (k < 0) {
		failx(p, p->lineno, p->label, key, "unknown key");
		return;
	}
	if (k != CK_SERVER && p->key_line[k]) {
		failx(p, p->lineno, p->label, key, "set twice (first at line %d)", p->key_line[k]);
		return;
	}

	switch ((enum call_key)k) {
	case CK_SERVER:
		if (p->key_line[CK_ROUTER]) {
			failx(p, p->lineno, p->label, key,
			      "cannot be combined with router= (line %d): give either server= "
			      "lines or one router=",
			      p->key_line[CK_ROUTER]);
		} else if (cl->num_servers == CFG_MAX_SERVERS) {
			failx(p, p->lineno, p->label, key, "too many servers (at most %d)",
			      CFG_MAX_SERVERS);
		} else if (cfg_parse_addr(v, true, &cl->servers[cl->num_servers]) != 0) {
			failx(p, p->lineno, p->label, key, "bad address '%s' " ADDR_PORT_HINT, v);
		} else {
			cl->num_servers++;
		}
		break;
	case CK_ROUTER:
		if (p->key_line[CK_SERVER]) {
			failx(p, p->lineno, p->label, key,
			      "cannot be combined with server= (line %d): give either server= "
			      "lines or one router=",
			      p->key_line[CK_SERVER]);
		} else if (cfg_parse_addr(v, true, &cl->router) != 0) {
			failx(p, p->lineno, p->label, key, "bad address '%s' " ADDR_PORT_HINT, v);
		} else {
			cl->has_router = true;
		}
		break;
	case CK_POLICY: {
		int pol = lookup(policy_names, ARRAY_SIZE(policy_names), v);

		if (pol < 0)
			failx(p, p->lineno, p->label, key,
			      "bad value '%s' (expected "
			      "lb_route|fixed_route|replicated_route|replicated_route_no_se)",
			      v);
		else
			cl->policy = (unsigned)pol;
		break;
	}
	case CK_TIMEOUT:
		if (num_value(p, key, v, 1, 3600000, &n))
			cl->timeout_ms = (uint32_t)n;
		break;
	case CK_RETRIES:
		if (num_value(p, key, v, 0, 100, &n))
			cl->retries = (uint32_t)n;
		break;
	case CK_SECURITY:
		security_value(p, key, v, &cl->security);
		break;
	case CK_CA:
		path_value(p, key, v, cl->ca, sizeof(cl->ca));
		break;
	case CK_COUNT:
		break;
	}
	if (!p->key_line[k])
		p->key_line[k] = p->lineno;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
	struct parser *p = user;

	(void)section; /* ours, from the reader: inih's copy may be truncated */
	if (p->failed)
		return 0;
	if (!value) /* only with ini_allow_no_value; the reader already rejects such lines */
		value = "";
	if (value[0] == '\0' && !(p->kind == SEC_DAEMON && (strcmp(key, "router") == 0 ||
							    strcmp(key, "socket_group") == 0))) {
		if (p->kind == SEC_NONE)
			failx(p, p->lineno, NULL, NULL, "%s: key outside of any section", key);
		else
			failx(p, p->lineno, p->label, key, "empty value");
		return 0;
	}

	switch (p->kind) {
	case SEC_NONE:
		failx(p, p->lineno, NULL, NULL,
		      "%s: key outside of any section (start with [daemon], [serve NAME] or [call "
		      "NAME])",
		      key);
		break;
	case SEC_DAEMON:
		daemon_key(p, key, value);
		break;
	case SEC_SERVE:
		serve_key(p, key, value);
		break;
	case SEC_CALL:
		call_key(p, key, value);
		break;
	}
	return !p->failed;
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
	c->max_msg_len = 1048576;
	c->ring_entries = 256;
	c->arena_size = 4194304;
	c->dedup_window_ms = 2000;
	c->reassembly_timeout_ms = 1000;
	c->exec_timeout_ms = 30000;
	c->drain_timeout_ms = 5000;
	c->replay_window_ms = 120000;
	c->spin_us = 0;
	/* Datacenter clocks agree within milliseconds (NTP/PTP); the strike register must
	 * hold every (association, nonce) for twice this, so it sets the memory per RPC/s. */
	c->sealed_window_ms = 250;
	c->replay_max_entries = 1u << 18;
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

/* check_whole checks what involves several keys. */
static void check_whole(struct parser *p)
{
	const struct cfg *c = p->c;

	for (size_t i = 0; i < c->num_serves && !p->failed; i++)
		if (c->serves[i].security != CFG_SEC_PLAIN && !c->stek_path[0])
			failx(p, p->serve_port_line[i], "daemon", "stek",
			      "required: [serve %s] uses security = %s (generate one with "
			      "r2p2ctl stek generate PATH)",
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
