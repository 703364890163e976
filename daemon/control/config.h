/* SPDX-License-Identifier: MIT */
/*
 * r2p2d's INI configuration (parsed with libinih). See docs/OPERATIONS.md for
 * every key. A config is immutable once loaded; SIGHUP loads a new one.
 */
#ifndef R2P2D_CONFIG_H
#define R2P2D_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include "engine.h"

#define CFG_MAX_SERVICES 64
#define CFG_MAX_SERVERS 16
#define CFG_NAME_MAX 48		 /* == R2P2_SERVICE_NAME_MAX */
#define CFG_DEFAULT_INFLIGHT 256 /* [call] max_inflight: per worker */
#define CFG_MAX_CPUS 64		 /* [daemon] cpus: entries in the list */
#define CFG_CPU_MAX 1023	 /* [daemon] cpus: the largest CPU number */
#define CFG_MAX_INFLIGHT 16384	 /* its bound: a worker's call slots */

enum cfg_security { CFG_SEC_PLAIN = 0, CFG_SEC_TLS = 1, CFG_SEC_SEALED = 2 };

/* A service this host serves: [serve "name"] */
#define CFG_PATH_MAX 256

/* Who may register a served service: anyone who can connect, one uid, or one group. */
enum cfg_owner { CFG_OWNER_ANY = 0, CFG_OWNER_UID, CFG_OWNER_GID };

struct cfg_serve {
	char name[CFG_NAME_MAX];
	int line;      /* line of the section header, for messages */
	uint16_t port; /* UDP port the service listens on (host order) */
	enum cfg_security security;
	char cert[CFG_PATH_MAX]; /* tls: PEM certificate chain whose SAN is `name` */
	char key[CFG_PATH_MAX];	 /* tls: PEM private key */
	bool early_data;	 /* tls: accept 0-RTT requests (default yes) */
	char stek[CFG_PATH_MAX]; /* tls/sealed: the service's own STEK ("": [daemon] stek) */
	int stek_line;		 /* line of `stek` in the file (0: not set), for messages */
	enum cfg_owner owner;	 /* owner = NAME|uid (a user) or @NAME|@gid (a group) */
	uint32_t owner_id;	 /* the uid or gid of `owner` */
	char owner_text[40];	 /* `owner` as written, for messages */
};

/* A service this host calls: [call "name"] */
struct cfg_call {
	char name[CFG_NAME_MAX];
	struct r2p2_addr servers[CFG_MAX_SERVERS]; /* direct targets, picked round-robin */
	size_t num_servers;
	bool has_router; /* send to `router` with LB_ROUTE instead */
	struct r2p2_addr router;
	unsigned policy;     /* default routing policy */
	uint32_t timeout_ms; /* default whole-call timeout */
	uint32_t retries;    /* retransmissions within the timeout */
	enum cfg_security security;
	char ca[CFG_PATH_MAX]; /* tls: PEM CA bundle servers must chain to */
	uint32_t max_inflight; /* app calls a worker has in flight to it; more wait, in order */
	bool extensions;       /* plain: requests carry an extension block (R2P2_F_EXT) */
};

/* cfg_call_ext says whether calls to `cc` carry an extension block (tls and sealed: always). */
static inline bool cfg_call_ext(const struct cfg_call *cc)
{
	return cc->security != CFG_SEC_PLAIN || cc->extensions;
}

struct cfg {
	/* [daemon] */
	char listen[64];	      /* listen address text, e.g. "0.0.0.0" or "::" */
	struct r2p2_addr listen_addr; /* port 0; family from `listen` */
	unsigned workers;	      /* 1..64 */
	char socket_path[108];	      /* control socket */
	char socket_group[32];	      /* group owning the control socket, "" = keep */
	uint32_t max_conns;	      /* control connections at once, all uids */
	uint32_t max_conns_per_uid;   /* control connections at once of one uid */
	uint32_t max_msg_len;	      /* bytes, 1..R2P2_PROTO_MAX_MSG */
	uint32_t ring_entries;	      /* per lane, power of two */
	uint32_t arena_size;	      /* per lane and direction */
	uint64_t dedup_window_ms;
	uint64_t reassembly_timeout_ms;
	uint64_t exec_timeout_ms;
	uint64_t max_reassembly_bytes;	   /* per worker: held by requests being reassembled */
	uint32_t max_half_open_per_source; /* per worker: requests one address reassembles */
	uint64_t drain_timeout_ms;	   /* SIGTERM waits this long for in-flight RPCs */
	/* How a worker waits: off (sleeps at once), adaptive (with work in flight it polls
	 * its ring and lanes up to poll_us before sleeping), busy (never sleeps). */
	enum cfg_poll { CFG_POLL_OFF = 0, CFG_POLL_ADAPTIVE, CFG_POLL_BUSY } poll;
	uint32_t poll_us;
	uint16_t cpus[CFG_MAX_CPUS]; /* worker i runs on cpus[i % num_cpus]; none: anywhere */
	unsigned num_cpus;
	enum cfg_backend { CFG_BACKEND_AUTO = 0, CFG_BACKEND_XDP, CFG_BACKEND_UDP } backend;
	bool xdp_skb;	    /* xdp_mode = skb (generic XDP) instead of native */
	char interface[32]; /* interface for the xdp backend; "" = the one holding `listen` */
	bool has_router;    /* [daemon] router = addr:port: FEEDBACK target */
	struct r2p2_addr router;
	bool has_metrics;	  /* [daemon] metrics = addr:port: Prometheus over HTTP */
	struct r2p2_addr metrics; /* where the metrics endpoint listens */
	char log_level[16];
	char stek_path[CFG_PATH_MAX]; /* tls: session-ticket encryption keys shared by the fleet */
	int stek_line;		      /* line of `stek` in the file (0: not set), for messages */
	uint64_t replay_window_ms;    /* tls: 0-RTT strike register freshness window */
	uint32_t replay_max_entries;  /* tls and sealed: strike register bound */
	uint32_t sealed_window_ms;    /* sealed: |server clock - request timestamp| allowed */
	bool seccomp;		      /* install the system call filter after set-up (default) */
	char user[32];		      /* switch to this user after set-up; "" = stay */

	struct cfg_serve serves[CFG_MAX_SERVICES];
	size_t num_serves;
	struct cfg_call calls[CFG_MAX_SERVICES];
	size_t num_calls;
};

/* cfg_defaults fills `c` with the documented defaults (no services). */
void cfg_defaults(struct cfg *c);

/*
 * cfg_load parses the file at `path` into `c` (which it first resets to the
 * defaults). Returns 0, or a negative errno with a message in `err`: -EINVAL for a
 * bad config, e.g. "r2p2d.conf:12: [call \"echo.svc\"] server: bad address 'x'",
 * the errno of fopen(3) when the file cannot be opened, -EIO or -ENOMEM.
 */
int cfg_load(struct cfg *c, const char *path, char *err, size_t err_len);

/* cfg_parse_string is cfg_load on text in memory; `name` is used in messages. */
int cfg_parse_string(struct cfg *c, const char *name, const char *text, char *err, size_t err_len);

/* cfg_parse_addr parses "1.2.3.4:5", "[::1]:5" (and, if `need_port` is false, a bare address). */
int cfg_parse_addr(const char *s, bool need_port, struct r2p2_addr *out);

/* cfg_format_addr writes "1.2.3.4:5" or "[::1]:5" into `buf`. */
const char *cfg_format_addr(const struct r2p2_addr *a, char *buf, size_t len);

/*
 * cfg_check_files opens every STEK file `c` names ([daemon] stek and each [serve]
 * stek) for reading, as r2p2d will at start: `name` is the config file for messages.
 * Returns 0, or the first failure as a negative errno with "NAME:LINE: [section]
 * stek: cannot open PATH: reason" in `err`. The contents are stek_load's to judge.
 */
int cfg_check_files(const struct cfg *c, const char *name, char *err, size_t err_len);

const struct cfg_serve *cfg_find_serve(const struct cfg *c, const char *name);
const struct cfg_serve *cfg_find_serve_port(const struct cfg *c, uint16_t port);
const struct cfg_call *cfg_find_call(const struct cfg *c, const char *name);

/*
 * A loaded config, shared read-only by every thread that holds a reference.
 * cfg_ref_load reads `path` (NULL, errno and a message in `err` on failure); the
 * reference it returns is the caller's. cfg_ref_get takes one more, cfg_ref_put
 * drops one (NULL is fine); the last frees the config. Any thread may call them.
 */
struct cfg_ref {
	atomic_int refs;
	struct cfg cfg;
};

struct cfg_ref *cfg_ref_load(const char *path, char *err, size_t err_len);
struct cfg_ref *cfg_ref_get(struct cfg_ref *r);
void cfg_ref_put(struct cfg_ref *r);

#endif /* R2P2D_CONFIG_H */
