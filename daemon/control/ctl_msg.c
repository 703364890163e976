// SPDX-License-Identifier: MIT
/* ctl_msg.c: control requests and service ownership, decided without sockets (ctl_msg.h). */
#include "ctl_msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int ctl_msg_parse(const void *buf, size_t n, struct r2p2_ctl_msg *out, char *why, size_t why_len)
{
	if (n < sizeof(*out)) {
		snprintf(why, why_len, "short control message (%zu bytes)", n);
		return -EPROTO;
	}
	memcpy(out, buf, sizeof(*out));
	if (out->magic != R2P2_CTL_MAGIC || out->version != R2P2_CTL_VERSION) {
		snprintf(why, why_len, "control protocol mismatch: r2p2d speaks version %u",
			 R2P2_CTL_VERSION);
		return -EPROTO;
	}
	out->name[sizeof(out->name) - 1] = '\0';
	switch (out->type) {
	case R2P2_CTL_ATTACH:
	case R2P2_CTL_REGISTER:
	case R2P2_CTL_STATUS:
		return out->type;
	case R2P2_CTL_RELOAD:
		/* it reads the file the daemon was started with: nothing to carry */
		if (n != sizeof(*out) || out->text_len || out->value) {
			snprintf(why, why_len, "a reload request carries no text and value 0");
			return -EOPNOTSUPP;
		}
		return out->type;
	default:
		snprintf(why, why_len, "unknown control message type %u", out->type);
		return -EOPNOTSUPP;
	}
}

bool ctl_may_serve(const struct cfg_serve *s, const struct peer *peer)
{
	if (peer->uid == 0 || s->owner == CFG_OWNER_ANY)
		return true;
	if (s->owner == CFG_OWNER_UID)
		return peer->uid == (uid_t)s->owner_id;
	if (peer->gid == (gid_t)s->owner_id)
		return true;
	for (size_t i = 0; i < peer->num_groups && i < CTL_MAX_GROUPS; i++)
		if (peer->groups[i] == (gid_t)s->owner_id)
			return true;
	return false;
}

bool ctl_may_operate(const struct peer *peer, uid_t daemon_uid)
{
	return peer->uid == 0 || peer->uid == daemon_uid;
}
