// SPDX-License-Identifier: MIT
/*
 * fuzz_ctl: libFuzzer harness over what the control socket decides from a message
 * (daemon/control/ctl_msg.c): ctl_msg_parse on arbitrary datagrams, and for every
 * REGISTER it accepts, whether the peer may serve the named service (ctl_may_serve)
 * under a config with an open service, one owned by a uid, one by a group and one
 * by root.
 *
 * Input: 4 bytes choose the peer (uid, gid and up to 3 supplementary groups from a
 * small set, or a group list longer than any rule reads), then datagrams, each a
 * 2-byte little-endian length and that many bytes (the rest, if shorter).
 *
 * Proves that no datagram makes the parser read out of bounds (ASan sees exactly
 * the bytes given) or return anything but a request type or -EPROTO / -EOPNOTSUPP
 * with a NUL-terminated sentence; that an accepted request had at least a header,
 * the magic and version, a known type, and a name NUL-terminated in its field; and
 * that the ownership decision agrees with a table written from docs/OPERATIONS.md
 * ("owner"): root always, anyone for an open service, the uid for a uid-owned one,
 * the group (primary or supplementary, as far as they are seen) for a group-owned one;
 * that a RELOAD is accepted only as a bare header (no text, value 0), and that only
 * root or the daemon's own user may have it carried out (ctl_may_operate).
 *
 * Seeds: tests/fuzz/fuzz_ctl/ (written with R2P2_FUZZ_WRITE_SEEDS=DIR).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <r2p2/shm.h>

#include "config.h"
#include "ctl_msg.h"

#define ALICE 1000u
#define TEAM 2000u
#define DAEMON_UID 3000u /* the daemon's user, as ctl.c passes geteuid() */

static const char conf_text[] = "[serve open.svc]\nport = 8000\n\n"
				"[serve alice.svc]\nport = 8001\nowner = 1000\n\n"
				"[serve team.svc]\nport = 8002\nowner = @2000\n\n"
				"[serve root.svc]\nport = 8003\nowner = 0\n";
static struct cfg conf;

/* expected answers the ownership question from the table, not from the code. */
static bool expected(const char *name, const struct peer *p)
{
	bool in_team = p->gid == TEAM;

	for (size_t i = 0; i < p->num_groups; i++)
		in_team |= p->groups[i] == TEAM;
	if (strcmp(name, "open.svc") == 0)
		return true;
	if (strcmp(name, "alice.svc") == 0)
		return p->uid == 0 || p->uid == ALICE;
	if (strcmp(name, "team.svc") == 0)
		return p->uid == 0 || in_team;
	if (strcmp(name, "root.svc") == 0)
		return p->uid == 0;
	abort(); /* only called for a service of the config */
}

static void make_peer(const uint8_t b[4], struct peer *p)
{
	static const uint32_t ids[4] = {0, ALICE, TEAM, 3000};

	memset(p, 0, sizeof(*p));
	p->uid = ids[b[0] & 3];
	p->gid = ids[(b[0] >> 2) & 3];
	p->num_groups = b[1] % 4;
	for (size_t i = 0; i < p->num_groups; i++)
		p->groups[i] = ids[(b[2] >> (2 * i)) & 3];
	if (b[3] == 0xff) /* more groups than a rule reads: the kernel gave none */
		p->num_groups = 0;
}

static void check_one(const uint8_t *d, size_t n, const struct peer *peer)
{
	struct r2p2_ctl_msg m;
	char why[160];
	int t;

	memset(why, 0x5a, sizeof(why));
	/* an exact heap copy, so ASan sees any read past the datagram */
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	memcpy(copy, d, n);
	t = ctl_msg_parse(copy, n, &m, why, sizeof(why));
	free(copy);
	if (t < 0) {
		if ((t != -EPROTO && t != -EOPNOTSUPP) || !memchr(why, '\0', sizeof(why)))
			abort();
		if (t == -EPROTO && n >= sizeof(m)) {
			struct r2p2_ctl_msg h;
			memcpy(&h, d, sizeof(h));
			if (h.magic == R2P2_CTL_MAGIC && h.version == R2P2_CTL_VERSION)
				abort();
		}
		return;
	}
	if (n < sizeof(m) || m.magic != R2P2_CTL_MAGIC || m.version != R2P2_CTL_VERSION ||
	    t != m.type ||
	    (t != R2P2_CTL_ATTACH && t != R2P2_CTL_REGISTER && t != R2P2_CTL_STATUS &&
	     t != R2P2_CTL_RELOAD) ||
	    !memchr(m.name, '\0', sizeof(m.name)))
		abort();
	if (t == R2P2_CTL_RELOAD) {
		if (n != sizeof(m) || m.text_len || m.value)
			abort();
		if (ctl_may_operate(peer, DAEMON_UID) !=
		    (peer->uid == 0 || peer->uid == DAEMON_UID))
			abort();
		return;
	}
	if (t != R2P2_CTL_REGISTER)
		return;
	const struct cfg_serve *s = cfg_find_serve(&conf, m.name);
	if (s && ctl_may_serve(s, peer) != expected(m.name, peer))
		abort();
}

static void write_seed(const char *dir, const char *name, const uint8_t *d, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f) {
		fwrite(d, 1, n, f);
		fclose(f);
	}
}

/* seeds writes one input per request kind, from the peers that matter. */
static void seeds(const char *dir)
{
	static const char *const names[] = {"open.svc", "alice.svc", "team.svc", "root.svc",
					    "none.svc"};
	static const uint8_t peers[][4] = {{0x00, 0, 0, 0}, {0x01, 0, 0, 0}, {0x0e, 1, 2, 0}};
	uint8_t in[4 + 2 + sizeof(struct r2p2_ctl_msg)];
	struct r2p2_ctl_msg m;
	char file[64];

	for (size_t p = 0; p < 3; p++) {
		for (size_t k = 0; k < 5; k++) {
			memset(&m, 0, sizeof(m));
			m.magic = R2P2_CTL_MAGIC;
			m.version = R2P2_CTL_VERSION;
			m.type = k == 4 ? R2P2_CTL_STATUS : R2P2_CTL_REGISTER;
			snprintf(m.name, sizeof(m.name), "%s", names[k]);
			memcpy(in, peers[p], 4);
			in[4] = sizeof(m);
			in[5] = 0;
			memcpy(in + 6, &m, sizeof(m));
			snprintf(file, sizeof(file), "seed-%zu-%zu", p, k);
			write_seed(dir, file, in, sizeof(in));
		}
		/* a RELOAD from each peer, and one carrying a value it must not have */
		memset(&m, 0, sizeof(m));
		m.magic = R2P2_CTL_MAGIC;
		m.version = R2P2_CTL_VERSION;
		m.type = R2P2_CTL_RELOAD;
		m.value = p == 2;
		memcpy(in, peers[p], 4);
		memcpy(in + 6, &m, sizeof(m));
		snprintf(file, sizeof(file), "seed-%zu-reload", p);
		write_seed(dir, file, in, sizeof(in));
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	const char *dir = getenv("R2P2_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	if (cfg_parse_string(&conf, "ctl.conf", conf_text, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_ctl: %s\n", err);
		abort();
	}
	if (dir)
		seeds(dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peer peer;

	if (size < 4)
		return 0;
	make_peer(data, &peer);
	data += 4;
	size -= 4;
	while (size >= 2) {
		size_t n = (size_t)data[0] | (size_t)data[1] << 8;

		data += 2;
		size -= 2;
		if (n > size)
			n = size;
		check_one(data, n, &peer);
		data += n;
		size -= n;
	}
	return 0;
}
