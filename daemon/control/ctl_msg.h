/* SPDX-License-Identifier: MIT */
/*
 * What the control socket decides from a message alone, without sockets: whether
 * a datagram is a control request (r2p2/shm.h, struct r2p2_ctl_msg), and whether a
 * peer may register a service. ctl.c and apps.c act on these; fuzz_ctl drives them.
 */
#ifndef R2P2D_CTL_MSG_H
#define R2P2D_CTL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <r2p2/shm.h>

#include "config.h"

/* The most supplementary groups of a peer that an owner = @GROUP rule looks at. */
#define CTL_MAX_GROUPS 64

/*
 * What the kernel said of a control connection's peer when it connected:
 * SO_PEERCRED (`pid`, `uid`, `gid`) and SO_PEERGROUPS (`groups`). A peer with more
 * than CTL_MAX_GROUPS groups has none here (the kernel answers ERANGE), so a rule
 * may refuse it (never admit it) on a group it does not see.
 */
struct peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[CTL_MAX_GROUPS];
	size_t num_groups;
};

/*
 * ctl_msg_parse reads the `n`-byte datagram `buf` as a control request into `*out`
 * (its name NUL-terminated). Returns the request type (R2P2_CTL_ATTACH,
 * R2P2_CTL_REGISTER, R2P2_CTL_STATUS or R2P2_CTL_RELOAD), or -EPROTO (shorter than
 * a header, not the control protocol's magic or version: the connection is closed)
 * or -EOPNOTSUPP (another type, or a RELOAD with text or a value: refused, the
 * connection stays), with a sentence for the peer in `why`.
 */
int ctl_msg_parse(const void *buf, size_t n, struct r2p2_ctl_msg *out, char *why, size_t why_len);

/*
 * ctl_may_serve says whether `peer` may register `s`: root (uid 0) always, anyone
 * when `s` has no owner, else the owner uid, or a peer whose gid or supplementary
 * groups hold the owner group.
 */
bool ctl_may_serve(const struct cfg_serve *s, const struct peer *peer);

/*
 * ctl_may_operate says whether `peer` may change the running daemon (RELOAD): root
 * (uid 0) and the daemon's own user `daemon_uid` only, whatever socket_group lets
 * connect.
 */
bool ctl_may_operate(const struct peer *peer, uid_t daemon_uid);

#endif /* R2P2D_CTL_MSG_H */
