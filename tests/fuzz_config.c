// SPDX-License-Identifier: MIT
/*
 * fuzz_config: libFuzzer harness over r2p2d's configuration parser (cfg_parse_string,
 * daemon/config.c, on top of libinih) with arbitrary text.
 *
 * Proves that no text, however malformed (NUL bytes, endless lines, stray brackets,
 * thousands of sections), makes the parser read or write out of bounds, leak or
 * overflow its error buffer (three sizes, each an exact heap allocation), and that
 * whatever it accepts is a config the daemon can trust: every string NUL-terminated
 * inside its field, every count and number within its documented range, every
 * service findable by name, a STEK for every tls or sealed service, and the same
 * result when the text is parsed twice. Failures always name the file.
 *
 * Seeds: tests/fuzz/fuzz_config/ (hand-written configs, valid and not).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <r2p2/shm.h>
#include <r2p2/wire.h>

#include "config.h"

#define NAME "f.conf"

static struct cfg first, second;

static void check_str(const char *s, size_t cap)
{
	if (!memchr(s, '\0', cap))
		abort();
}

static void check_accepted(const struct cfg *c)
{
	check_str(c->listen, sizeof(c->listen));
	check_str(c->socket_path, sizeof(c->socket_path));
	check_str(c->socket_group, sizeof(c->socket_group));
	check_str(c->interface, sizeof(c->interface));
	check_str(c->log_level, sizeof(c->log_level));
	check_str(c->stek_path, sizeof(c->stek_path));
	if (c->workers < 1 || c->workers > 64)
		abort();
	if (c->max_msg_len < 1 || c->max_msg_len > R2P2_PROTO_MAX_MSG)
		abort();
	if (c->ring_entries < 8 || c->ring_entries > 65536 ||
	    (c->ring_entries & (c->ring_entries - 1)))
		abort();
	if (c->arena_size < c->max_msg_len)
		abort();
	if (c->num_serves > CFG_MAX_SERVICES || c->num_calls > CFG_MAX_SERVICES)
		abort();
	for (size_t i = 0; i < c->num_serves; i++) {
		const struct cfg_serve *s = &c->serves[i];

		check_str(s->name, sizeof(s->name));
		check_str(s->cert, sizeof(s->cert));
		check_str(s->key, sizeof(s->key));
		if (!s->name[0] || s->security > CFG_SEC_SEALED)
			abort();
		check_str(s->stek, sizeof(s->stek));
		if (s->security != CFG_SEC_PLAIN && !c->stek_path[0] && !s->stek[0])
			abort();
		if (!cfg_find_serve(c, s->name))
			abort();
	}
	for (size_t i = 0; i < c->num_calls; i++) {
		const struct cfg_call *k = &c->calls[i];

		check_str(k->name, sizeof(k->name));
		check_str(k->ca, sizeof(k->ca));
		if (!k->name[0] || k->security > CFG_SEC_SEALED || k->num_servers > CFG_MAX_SERVERS)
			abort();
		if (!cfg_find_call(c, k->name))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t err_lens[] = {1, 24, 512};
	size_t err_len = err_lens[size % 3];
	char *text = malloc(size + 1), *err = malloc(err_len);
	int rc, rc2;

	if (!text || !err)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';

	memset(&first, 0, sizeof(first));
	memset(err, 0x7f, err_len);
	rc = cfg_parse_string(&first, NAME, text, err, err_len);
	if (rc > 0 || (rc < 0 && rc != -EINVAL && rc != -ENOMEM))
		abort(); /* 0 or a negative errno */
	if (!memchr(err, '\0', err_len))
		abort(); /* the message is always terminated inside the buffer */
	if (rc == 0) {
		if (err[0])
			abort(); /* success leaves no message */
		check_accepted(&first);
	} else if (err_len > strlen(NAME) + 1 && strncmp(err, NAME ":", strlen(NAME) + 1) != 0) {
		abort(); /* every message starts with the file name */
	}

	/* The same text gives the same config (no state outside `c` and the text). */
	memset(&second, 0, sizeof(second));
	rc2 = cfg_parse_string(&second, NAME, text, NULL, 0);
	if (rc2 != rc || (rc == 0 && memcmp(&first, &second, sizeof(first)) != 0))
		abort();

	free(err);
	free(text);
	return 0;
}
