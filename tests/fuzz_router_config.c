// SPDX-License-Identifier: MIT
/*
 * fuzz_router_config: libFuzzer harness over r2p2-router's configuration parser
 * (rt_config_parse, daemon/router/rt_config.c, on top of libinih) with arbitrary text.
 *
 * Proves that no text (NUL bytes, endless lines, stray brackets, thousands of sections or
 * servers) makes the parser read or write out of bounds or overflow its error buffer
 * (an exact heap allocation), that every error names the file, and that whatever it
 * accepts is within the documented bounds: an interface name, 1 to 64 services of 1 to
 * 16 servers, a known policy, n and queue in range, no service routed twice, and the same
 * result when parsed twice.
 *
 * Seeds: tests/fuzz/fuzz_router_config/ (hand-written configs, valid and not).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_config.h"

#define NAME "f.conf"

static struct rt_config first, second;

static void check_accepted(const struct rt_config *c)
{
	if (!memchr(c->interface, '\0', sizeof(c->interface)) || c->interface[0] == '\0')
		abort();
	if (c->num_svcs == 0 || c->num_svcs > R2P2_RT_MAX_SERVICES)
		abort();
	if (c->timeout_ms < 10 || c->down_ms < 10)
		abort();
	for (unsigned i = 0; i < c->num_svcs; i++) {
		const struct rt_service_cfg *s = &c->svcs[i];

		if (!memchr(s->name, '\0', sizeof(s->name)) || s->name[0] == '\0')
			abort();
		if (s->num_servers == 0 || s->num_servers > R2P2_RT_SVC_SERVERS || !s->port)
			abort();
		if (s->policy >= R2P2_RT_NUM_POLICIES || s->bound < 1 || s->queue < 1 ||
		    s->queue > 65536)
			abort();
		for (unsigned j = 0; j < s->num_servers; j++)
			if (!s->servers[j].port)
				abort();
		for (unsigned j = 0; j < i; j++)
			if (c->svcs[j].addr == s->addr && c->svcs[j].port == s->port)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t err_sizes[] = {1, 40, 512};
	char *text = malloc(size + 1);
	int rc1, rc2;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t k = 0; k < sizeof(err_sizes) / sizeof(err_sizes[0]); k++) {
		char *err = malloc(err_sizes[k]);

		if (!err)
			break;
		err[0] = '\0';
		rc1 = rt_config_parse(NAME, text, &first, err, err_sizes[k]);
		if (rc1 != 0 && err_sizes[k] > sizeof(NAME) && strncmp(err, NAME ":", 7) != 0)
			abort(); /* an error always names the file */
		if (rc1 == 0) {
			check_accepted(&first);
			rc2 = rt_config_parse(NAME, text, &second, err, err_sizes[k]);
			if (rc2 != 0 || memcmp(&first, &second, sizeof(first)) != 0)
				abort();
		}
		free(err);
	}
	free(text);
	return 0;
}
