/* SPDX-License-Identifier: MIT */
/*
 * The control socket (main thread only): a SOCK_SEQPACKET unix socket on which
 * apps attach and register services (r2p2/shm.h, struct r2p2_ctl_msg) and tools
 * such as r2p2ctl ask for the status. Each connection is one source of the main
 * loop; an app lives as long as its connection.
 */
#ifndef R2P2D_CTL_H
#define R2P2D_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "apps.h"
#include "daemon.h"

/*
 * One control connection: an app (after ATTACH) or a tool such as r2p2ctl. A
 * connection over max_connections or max_connections_per_uid is `refused`: it was
 * sent an ERROR at once and is closed when it speaks or hangs up (or when newer
 * refused ones need its place); it counts toward neither limit.
 */
struct conn {
	struct ep_source src; /* readable, hung up or failed */
	int fd;
	uint64_t id;
	struct peer peer;
	bool refused;
	struct app *app; /* NULL until ATTACH */
	struct conn *next;
};

/*
 * ctl_open creates the control socket of `d->cfg` in `d->ctl_fd` and adds it to the
 * main loop, which then accepts connections (at most max_connections, and
 * max_connections_per_uid of one uid). The socket file is born mode 0660 and is
 * then given to socket_group; no symlink is followed and no directory r2p2d did
 * not create is changed. A missing directory of the socket is created (0750,
 * socket_group). It refuses a socket path that is a symlink or not a socket, a
 * directory others could replace the socket in, and a socket file that still
 * answers (another r2p2d); a stale one is replaced. Returns 0, or a negative errno
 * with a message in `err`.
 */
int ctl_open(struct daemon *d, char *err, size_t err_len);

/*
 * ctl_close closes every connection (their apps are taken off the workers), then
 * the control socket, and removes its file. Safe when ctl_open failed or never ran.
 */
void ctl_close(struct daemon *d);

enum daemon_status_form { STATUS_TEXT, STATUS_JSON, STATUS_PROM };

/*
 * daemon_status writes `d`'s status (one snapshot of every worker, the daemon's own
 * counters) in `form` into `buf` of `len` bytes (status.h). Returns its length, 0 when
 * out of memory. Main thread only.
 */
size_t daemon_status(struct daemon *d, enum daemon_status_form form, char *buf, size_t len);

#endif /* R2P2D_CTL_H */
