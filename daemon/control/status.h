/* SPDX-License-Identifier: MIT */
/*
 * The text (or JSON) of `r2p2ctl status`, formatted from values the caller gathered:
 * pure (no sockets, no clocks, no locks), so a test can feed it any numbers.
 * Scripts and r2p2ctl read this text: its lines and words are an interface.
 */
#ifndef R2P2D_STATUS_H
#define R2P2D_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "config.h"
#include "replay.h"
#include "worker.h"

#include <r2p2/bpf_abi.h>

/* What the main thread knows besides the config and the workers' snapshots. */
struct status_facts {
	const char *version;
	int pid;
	bool draining;
	const char *backend;		    /* "xdp on ...", "udp: ..." */
	bool xdp;			    /* the xdp backend: workers show af_xdp counters */
	const struct r2p2_stats *xdp_stats; /* the XDP program's verdicts, or NULL */
	const struct app *const *apps;	    /* attached apps, in the order to list them */
	size_t num_apps;
	const struct replay_stats *sealed_replay; /* sealed strike register, or NULL */
	const struct replay_stats *replay;	  /* tls strike register, or NULL */
	uint64_t now_ms;			  /* unix time, for association expiries */
};

/*
 * status_format writes the status text for `cfg`, `facts` and `snaps` (one
 * snapshot per worker, `num_workers` of them, taken once so that every total
 * agrees with the lines it sums) into `buf` of `buf_len` (> 0) bytes, always
 * NUL-terminated. A text that does not fit is cut at `buf_len` - 1 bytes. Returns
 * the length written. Any thread; it reads only its arguments.
 */
size_t status_format(const struct cfg *cfg, const struct status_facts *facts,
		     const struct worker_snap *snaps, unsigned num_workers, char *buf,
		     size_t buf_len);

/*
 * status_format_json is status_format as one JSON object (and a newline): the same
 * counters under the same names, workers, apps, associations and services as arrays
 * (docs/OPERATIONS.md, "r2p2ctl status"). A text that does not fit is cut.
 */
size_t status_format_json(const struct cfg *cfg, const struct status_facts *facts,
			  const struct worker_snap *snaps, unsigned num_workers, char *buf,
			  size_t buf_len);

/*
 * status_format_prom is status_format as Prometheus text exposition (format 0.0.4):
 * the same counters, named r2p2_<section>_<name>[_total], one metric at a time, each
 * with HELP and TYPE; workers, services and associations as labels
 * (docs/OPERATIONS.md, "Metrics"). Returns 0 (an empty text) when out of memory.
 */
size_t status_format_prom(const struct cfg *cfg, const struct status_facts *facts,
			  const struct worker_snap *snaps, unsigned num_workers, char *buf,
			  size_t buf_len);

#endif /* R2P2D_STATUS_H */
