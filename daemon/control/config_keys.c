// SPDX-License-Identifier: MIT
/*
 * config_keys.c: inih's key handler (on_key), which sets each key of [daemon],
 * [serve NAME] and [call NAME] in struct cfg, refusing unknown keys, keys set twice
 * and keys that contradict each other (docs/OPERATIONS.md lists every key).
 */
#include "config_int.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <r2p2/wire.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define ADDR_PORT_HINT "(expected IPv4:port or [IPv6]:port)"

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
    [DK_POLL] = "poll",
    [DK_POLL_US] = "poll_us",
    [DK_CPUS] = "cpus",
    [DK_SEALED_WINDOW] = "sealed_window_ms",
    [DK_BACKEND] = "backend",
    [DK_XDP_MODE] = "xdp_mode",
    [DK_INTERFACE] = "interface",
    [DK_MAX_CONNS] = "max_connections",
    [DK_MAX_CONNS_PER_UID] = "max_connections_per_uid",
    [DK_MAX_REASSEMBLY] = "max_reassembly_bytes",
    [DK_MAX_HALF_OPEN] = "max_half_open_per_source",
    [DK_SECCOMP] = "seccomp",
    [DK_USER] = "user",
    [DK_METRICS] = "metrics",
};

static const char *const serve_keys[SK_COUNT] = {
    [SK_PORT] = "port",	  [SK_SECURITY] = "security",	  [SK_CERT] = "cert",
    [SK_KEY] = "key",	  [SK_EARLY_DATA] = "early_data", [SK_STEK] = "stek",
    [SK_OWNER] = "owner",
};

static const char *const call_keys[CK_COUNT] = {
    [CK_SERVER] = "server",
    [CK_ROUTER] = "router",
    [CK_POLICY] = "policy",
    [CK_TIMEOUT] = "timeout_ms",
    [CK_RETRIES] = "retries",
    [CK_SECURITY] = "security",
    [CK_CA] = "ca",
    [CK_MAX_INFLIGHT] = "max_inflight",
    [CK_EXTENSIONS] = "extensions",
};

static const char *const policy_names[] = {
    [R2P2_LB_ROUTE] = "lb_route",
    [R2P2_FIXED_ROUTE] = "fixed_route",
    [R2P2_REPLICATED_ROUTE] = "replicated_route",
    [R2P2_REPLICATED_ROUTE_NO_SE] = "replicated_route_no_se",
};

static const char *const log_levels[] = {"error", "warn", "info", "debug"};

static int lookup(const char *const *names, size_t num_names, const char *s)
{
	for (size_t i = 0; i < num_names; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

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
    [DK_POLL_US] = NUM_KEY(poll_us, 1, 10000),
    [DK_MAX_CONNS] = NUM_KEY(max_conns, 1, 65536),
    [DK_MAX_CONNS_PER_UID] = NUM_KEY(max_conns_per_uid, 1, 65536),
    [DK_MAX_REASSEMBLY] = NUM_KEY(max_reassembly_bytes, 65536, 1ull << 40),
    [DK_MAX_HALF_OPEN] = NUM_KEY(max_half_open_per_source, 1, 1u << 24),
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

/* name_value copies the `what` (user, group) name `v` (A-Z a-z 0-9 _ - .) to `out`. */
static void name_value(struct parser *p, const char *key, const char *what, const char *v,
		       char *out, size_t out_len)
{
	size_t len = strlen(v);
	bool ok = len < out_len;

	for (size_t i = 0; ok && i < len; i++) {
		unsigned char ch = (unsigned char)v[i];

		ok = isalnum(ch) || ch == '_' || ch == '-' || ch == '.';
	}
	if (!ok)
		failx(p, p->lineno, p->label, key,
		      "bad %s name '%s' (at most %zu characters of A-Z a-z 0-9 _ - .)", what, v,
		      out_len - 1);
	else
		snprintf(out, out_len, "%s", v);
}

/* addr_port_value reads an optional ADDR:PORT (empty: none) into `*has` and `*out`. */
static void addr_port_value(struct parser *p, const char *key, const char *v, bool *has,
			    struct r2p2_addr *out)
{
	if (v[0] == '\0')
		*has = false;
	else if (cfg_parse_addr(v, true, out) != 0)
		failx(p, p->lineno, p->label, key, "bad address '%s' " ADDR_PORT_HINT, v);
	else
		*has = true;
}

/*
 * cpus_value reads a CPU list ("0,2", "0-3", "1,4-5"; at most CFG_MAX_CPUS CPUs, each
 * 0..CFG_CPU_MAX) into the daemon's `cpus`.
 */
static void cpus_value(struct parser *p, const char *key, const char *v)
{
	struct cfg *c = p->c;
	const char *s = v;

	c->num_cpus = 0;
	while (*s) {
		char *end;
		unsigned long lo = strtoul(s, &end, 10), hi = lo;

		if (end == s || lo > CFG_CPU_MAX)
			goto bad;
		if (*end == '-') {
			s = end + 1;
			hi = strtoul(s, &end, 10);
			if (end == s || hi > CFG_CPU_MAX || hi < lo)
				goto bad;
		}
		for (unsigned long cpu = lo; cpu <= hi; cpu++) {
			if (c->num_cpus == CFG_MAX_CPUS)
				goto bad;
			c->cpus[c->num_cpus++] = (uint16_t)cpu;
		}
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			goto bad;
		s = end;
	}
	if (c->num_cpus)
		return;
bad:
	c->num_cpus = 0;
	failx(p, p->lineno, p->label, key,
	      "bad value '%.60s' (expected a CPU list such as 0,1 or 0-3: at most %d CPUs, "
	      "each 0..%d)",
	      v, CFG_MAX_CPUS, CFG_CPU_MAX);
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
		name_value(p, key, "group", v, c->socket_group, sizeof(c->socket_group));
		break;
	case DK_USER:
		name_value(p, key, "user", v, c->user, sizeof(c->user));
		break;
	case DK_SECCOMP:
		bool_value(p, key, v, &c->seccomp);
		break;
	case DK_ROUTER:
		addr_port_value(p, key, v, &c->has_router, &c->router);
		break;
	case DK_METRICS:
		addr_port_value(p, key, v, &c->has_metrics, &c->metrics);
		break;
	case DK_LOG_LEVEL:
		if (lookup(log_levels, ARRAY_SIZE(log_levels), v) < 0)
			failx(p, p->lineno, p->label, key,
			      "bad value '%s' (expected error|warn|info|debug)", v);
		else
			snprintf(c->log_level, sizeof(c->log_level), "%s", v);
		break;
	case DK_STEK:
		if (path_value(p, key, v, c->stek_path, sizeof(c->stek_path)))
			c->stek_line = p->lineno;
		break;
	case DK_BACKEND:
		backend_value(p, key, v);
		break;
	case DK_CPUS:
		cpus_value(p, key, v);
		break;
	case DK_POLL: {
		static const char *const polls[] = {"off", "adaptive", "busy"};
		int m = lookup(polls, ARRAY_SIZE(polls), v);

		if (m < 0)
			failx(p, p->lineno, p->label, key,
			      "bad value '%s' (expected off|adaptive|busy)", v);
		else
			c->poll = (enum cfg_poll)m;
		break;
	}
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
	case SK_STEK:
		if (path_value(p, key, v, s->stek, sizeof(s->stek)))
			s->stek_line = p->lineno;
		break;
	case SK_OWNER:
		owner_value(p, key, v, s);
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
	case CK_MAX_INFLIGHT:
		if (num_value(p, key, v, 1, CFG_MAX_INFLIGHT, &n))
			cl->max_inflight = (uint32_t)n;
		break;
	case CK_EXTENSIONS:
		bool_value(p, key, v, &cl->extensions);
		break;
	case CK_COUNT:
		break;
	}
	if (!p->key_line[k])
		p->key_line[k] = p->lineno;
}

int on_key(void *user, const char *section, const char *key, const char *value)
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
