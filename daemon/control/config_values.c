// SPDX-License-Identifier: MIT
/*
 * config_values.c: what a configuration value may be. Numbers (decimal digits only),
 * booleans, paths, security modes, service names and addresses; each *_value function
 * records why a value is refused, with the key's line.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
bool num_value(struct parser *p, const char *key, const char *v, uint64_t min, uint64_t max,
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

bool valid_service_name(const char *s, size_t len)
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

bool path_value(struct parser *p, const char *key, const char *v, char *out, size_t out_len)
{
	if (strlen(v) >= out_len) {
		failx(p, p->lineno, p->label, key, "path longer than %zu bytes", out_len - 1);
		return false;
	}
	memcpy(out, v, strlen(v) + 1);
	return true;
}

bool bool_value(struct parser *p, const char *key, const char *v, bool *out)
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

bool security_value(struct parser *p, const char *key, const char *v, enum cfg_security *out)
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
 * owner_id resolves `name` (a user, or a group when `group`) to its id: decimal digits
 * are the id itself, which need not have a name. Returns 0, -EINVAL (bad id) or -ENOENT.
 */
static int owner_id(const char *name, bool group, uint32_t *out)
{
	uint64_t id;

	if (isdigit((unsigned char)name[0])) {
		/* (uid_t)-1 means "no change" to chown(2): never an owner */
		if (parse_u64(name, 0, UINT32_MAX - 1, &id) != 0)
			return -EINVAL;
		*out = (uint32_t)id;
		return 0;
	}
	if (group) {
		const struct group *g = getgrnam(name);

		if (!g)
			return -ENOENT;
		*out = (uint32_t)g->gr_gid;
	} else {
		const struct passwd *pw = getpwnam(name);

		if (!pw)
			return -ENOENT;
		*out = (uint32_t)pw->pw_uid;
	}
	return 0;
}

bool owner_value(struct parser *p, const char *key, const char *v, struct cfg_serve *s)
{
	bool group = v[0] == '@';
	const char *name = v + group;
	int rc;

	if (strlen(v) >= sizeof(s->owner_text) || name[0] == '\0') {
		failx(p, p->lineno, p->label, key,
		      "bad value '%.60s' (expected USER, uid, @GROUP or @gid; at most %zu "
		      "characters)",
		      v, sizeof(s->owner_text) - 1);
		return false;
	}
	rc = owner_id(name, group, &s->owner_id);
	if (rc == -EINVAL) {
		failx(p, p->lineno, p->label, key, "bad %s '%s'", group ? "gid" : "uid", name);
		return false;
	}
	if (rc < 0) {
		failx(p, p->lineno, p->label, key, "no such %s '%s'", group ? "group" : "user",
		      name);
		return false;
	}
	s->owner = group ? CFG_OWNER_GID : CFG_OWNER_UID;
	snprintf(s->owner_text, sizeof(s->owner_text), "%s", v);
	return true;
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
int parse_addr(const char *s, bool need_port, struct r2p2_addr *out, bool *out_has_port)
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
