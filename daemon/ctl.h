/* SPDX-License-Identifier: MIT */
/*
 * The control socket (main thread only): a SOCK_SEQPACKET unix socket on which
 * apps attach and register services (r2p2/shm.h, struct r2p2_ctl_msg) and tools
 * such as r2p2ctl ask for the status. An app lives as long as its connection.
 */
#ifndef R2P2D_CTL_H
#define R2P2D_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon.h"

/* One control connection: an app (after ATTACH) or a tool such as r2p2ctl. */
struct conn {
	int fd;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	struct app *app; /* NULL until ATTACH */
	struct conn *next;
};

/*
 * ctl_listen creates the control socket of `c` (mode 0660, group socket_group,
 * its directory created if missing). It refuses a socket file that still answers
 * (another r2p2d) and replaces a stale one. Returns the fd, or a negative errno
 * with a message in `err`.
 */
int ctl_listen(const struct cfg *c, char *err, size_t err_len);

/* conn_new records a new connection and its peer's credentials (SO_PEERCRED). */
struct conn *conn_new(struct daemon *d, int fd);

/* conn_input reads and answers one request. A negative errno closes the connection. */
int conn_input(struct daemon *d, struct conn *c);

/* conn_close forgets `c`; an attached app is taken off every worker. */
void conn_close(struct daemon *d, struct conn *c);

#endif /* R2P2D_CTL_H */
