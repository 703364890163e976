/* SPDX-License-Identifier: MIT */
/* The main thread's state: control socket connections, apps, workers, config. */
#ifndef R2P2D_APPS_H
#define R2P2D_APPS_H

#include "worker.h"

#define R2P2D_VERSION "0.1.0"

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

struct daemon {
	struct cfg_ref *cfg;
	char cfg_path[4096];
	unsigned num_workers;
	struct worker **workers;
	int ctl_fd;
	struct conn *conns;
	uint64_t next_conn_id;
	bool draining;
	int drained_efd;        /* workers write 1 each when drained */
	struct xdpath *xdp;     /* the xdp backend, or NULL for udp */
	char backend[256];      /* what the backend is, for status */
	struct stek_set *stek;  /* tls: as loaded at start (workers reload on change) */
	struct replay *replay;  /* tls: the strike register shared by every worker */
	struct replay *sealed_replay; /* sealed: (association, nonce) strike register */
};

/* ctl_listen creates the control socket (mode 0660, group socket_group). Returns the fd or -1. */
int ctl_listen(const struct cfg *c, char *err, size_t err_len);

/* conn_new records a new connection and its peer credentials (SO_PEERCRED). */
struct conn *conn_new(struct daemon *d, int fd);

/* conn_input handles one control message. Returns 0, or -1 when the connection must close. */
int conn_input(struct daemon *d, struct conn *c);

/* conn_close forgets the connection; an attached app is removed from every worker. */
void conn_close(struct daemon *d, struct conn *c);

#endif /* R2P2D_APPS_H */
