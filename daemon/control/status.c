// SPDX-License-Identifier: MIT
/*
 * The status text. Each section has its own function; totals are summed from
 * the one set of snapshots the caller took, so a total always equals the sum of
 * the lines above it.
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sealed.h"
#include "tls.h"

typedef unsigned long long ull;

/* A text being written: `n` bytes of `len` used; `buf[n]` is always NUL. */
struct text {
	char *buf;
	size_t len;
	size_t n;
};

/* out appends to `t`; what does not fit is cut, and `t` stays full from then on. */
__attribute__((format(printf, 2, 3))) static void out(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(t->buf + t->n, t->len - t->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		t->n = t->n + (size_t)k < t->len ? t->n + (size_t)k : t->len - 1;
}

/* Per-service totals over every worker, indexed like cfg->serves. */
struct svc_totals {
	uint64_t requests[CFG_MAX_SERVICES];
	uint64_t dropped_no_app[CFG_MAX_SERVICES];
	uint64_t wrong_mode[CFG_MAX_SERVICES];
};

static void add_services(const struct cfg *cfg, const struct worker_snap *s, struct svc_totals *tot)
{
	for (unsigned k = 0; k < s->num_svc; k++) {
		for (size_t j = 0; j < cfg->num_serves; j++) {
			if (cfg->serves[j].port != s->svc[k].port)
				continue;
			tot->requests[j] += s->svc[k].requests;
			tot->dropped_no_app[j] += s->svc[k].dropped_no_app;
			tot->wrong_mode[j] += s->svc[k].dropped_wrong_mode;
		}
	}
}

static void out_header(struct text *t, const struct status_facts *f, unsigned num_workers)
{
	const struct r2p2_stats *xs = f->xdp_stats;

	out(t, "r2p2d %s  pid %d  workers %u  apps %zu%s\n", f->version, f->pid, num_workers,
	    f->num_apps, f->draining ? "  (draining)" : "");
	out(t, "backend: %s\n", f->backend);
	if (f->xdp && xs)
		out(t,
		    "xdp: steered %llu no_socket %llu dropped_malformed %llu passed_not_r2p2 %llu "
		    "passed_fragment %llu passed_ipv6_ext %llu passed_runt %llu\n",
		    (ull)xs->steered, (ull)xs->no_socket, (ull)xs->dropped_malformed,
		    (ull)xs->passed_not_r2p2, (ull)xs->passed_fragment, (ull)xs->passed_ipv6_ext,
		    (ull)xs->passed_runt);
}

static void out_apps(struct text *t, const struct cfg *cfg, const struct status_facts *f)
{
	out(t, "\napps:\n");
	for (size_t i = 0; i < f->num_apps; i++) {
		const struct app *a = f->apps[i];
		out(t, "  app %llu  pid %d  uid %u  serves:", (ull)a->id, (int)a->pid,
		    (unsigned)a->uid);
		for (unsigned k = 0; k < a->num_serves; k++) {
			const struct cfg_serve *sv = cfg_find_serve_port(cfg, a->serves[k]);
			out(t, " %s", sv ? sv->name : "?");
		}
		out(t, "\n");
	}
}

static void out_worker(struct text *t, unsigned i, const struct worker_snap *s, bool xdp)
{
	const struct eng_stats *e = &s->eng;

	out(t,
	    "  worker %u  rx %llu  tx %llu  calls %llu ok %llu timeout %llu dropped %llu  "
	    "requests %llu resent %llu  inflight %llu executing %llu  bad %llu  "
	    "app_ok %llu app_failed %llu  queued %llu waited %llu queue_full %llu\n",
	    i, (ull)e->rx_packets, (ull)e->tx_packets, (ull)e->calls_started, (ull)e->calls_ok,
	    (ull)e->calls_timeout, (ull)e->calls_dropped, (ull)e->req_received,
	    (ull)e->req_retransmit, (ull)s->calls_inflight, (ull)s->requests_executing,
	    (ull)(e->rx_runt + e->rx_bad_header + e->rx_bad_type + e->rx_bad_order), (ull)s->app_ok,
	    (ull)s->app_failed, (ull)s->calls_queued, (ull)s->calls_waited, (ull)s->queue_full);
	out(t,
	    "    drops: runt %llu bad_header %llu bad_type %llu bad_order %llu duplicate %llu "
	    "unmatched %llu too_big %llu no_state %llu  app_errors %llu  conflict %llu "
	    "unauthentic %llu  no_memory %llu evict_source %llu evict_full %llu "
	    "evict_memory %llu amp_limited %llu amp_validated %llu\n",
	    (ull)e->rx_runt, (ull)e->rx_bad_header, (ull)e->rx_bad_type, (ull)e->rx_bad_order,
	    (ull)e->rx_duplicate, (ull)e->rx_unmatched, (ull)e->rx_too_big, (ull)e->rx_no_state,
	    (ull)s->app_errors, (ull)e->rx_conflict, (ull)e->rx_unauthentic, (ull)e->rx_no_memory,
	    (ull)e->evict_source, (ull)e->evict_full, (ull)e->evict_memory, (ull)e->amp_limited,
	    (ull)e->amp_validated);
	if (xdp)
		out(t, "    af_xdp: rx %llu rx_bad %llu tx %llu tx_via_kernel %llu\n",
		    (ull)s->xsk_rx, (ull)s->xsk_rx_bad, (ull)s->xsk_tx, (ull)s->xsk_tx_fallback);
}

static void out_tls(struct text *t, const struct worker_snap *snaps, unsigned num_workers)
{
	struct tls_stats ts = {0}, tc = {0};

	for (unsigned i = 0; i < num_workers; i++) {
		tls_stats_add(&ts, &snaps[i].tls_server);
		tls_stats_add(&tc, &snaps[i].tls_client);
	}
	out(t,
	    "\ntls server: full_handshakes %llu resumed %llu early_accepted %llu early_rejected "
	    "%llu replays_refused %llu bad_messages %llu pending_handshakes %llu "
	    "already_answered %llu wrong_server %llu early_too_old %llu\n",
	    (ull)ts.handshakes_full, (ull)ts.resumed, (ull)ts.early_accepted,
	    (ull)ts.early_rejected, (ull)ts.replays_refused, (ull)ts.bad_messages,
	    (ull)ts.pending_handshakes, (ull)ts.already_answered, (ull)ts.wrong_server,
	    (ull)ts.early_too_old);
	out(t,
	    "tls client: full_handshakes %llu resumed %llu early_accepted %llu early_rejected "
	    "%llu verify_failures %llu bad_messages %llu tickets_received %llu\n",
	    (ull)tc.handshakes_full, (ull)tc.resumed, (ull)tc.early_accepted,
	    (ull)tc.early_rejected, (ull)tc.verify_failures, (ull)tc.bad_messages,
	    (ull)tc.tickets_received);
}

static void out_sealed(struct text *t, const struct worker_snap *snaps, unsigned num_workers)
{
	struct sealed_stats ss = {0};
	uint64_t assocs = 0, reboots = 0;

	for (unsigned i = 0; i < num_workers; i++) {
		const struct worker_snap *s = &snaps[i];
		ss.opened += s->sealed.opened;
		ss.responses += s->sealed.responses;
		ss.minted += s->sealed.minted;
		for (unsigned r = 0; r <= SEALED_REASON_MAX; r++)
			ss.rejected[r] += s->sealed.rejected[r];
		assocs += s->sealed_assocs;
		reboots += s->sealed_rebootstraps;
	}
	out(t, "sealed server: opened %llu responses %llu minted %llu  rejected:", (ull)ss.opened,
	    (ull)ss.responses, (ull)ss.minted);
	for (unsigned r = 1; r <= SEALED_REASON_MAX; r++)
		out(t, " %s %llu", sealed_reason_name(r), (ull)ss.rejected[r]);
	out(t, "\nsealed client: associations %llu rebootstraps %llu\n", (ull)assocs, (ull)reboots);
}

static void out_assocs(struct text *t, const struct worker_snap *snaps, unsigned num_workers,
		       uint64_t now_ms)
{
	for (unsigned i = 0; i < num_workers; i++) {
		const struct worker_snap *s = &snaps[i];
		for (unsigned k = 0; k < s->num_assoc; k++)
			out(t,
			    "  worker %u association for %s: token key id %08x, expires in %lld "
			    "s\n",
			    i, s->assoc[k].service, s->assoc[k].key_id,
			    (long long)((int64_t)(s->assoc[k].expiry_ms - now_ms) / 1000));
	}
}

static void out_replay(struct text *t, const struct status_facts *f)
{
	const struct replay_stats *rs;

	rs = f->sealed_replay;
	if (rs)
		out(t,
		    "sealed strike register: entries %llu / %llu  inserts %llu hits %llu "
		    "full_rejects %llu share_rejects %llu floor_raises %llu floor_rejects %llu "
		    "rotations %llu\n",
		    (ull)rs->entries, (ull)rs->capacity, (ull)rs->inserts, (ull)rs->hits,
		    (ull)rs->full_rejects, (ull)rs->share_rejects, (ull)rs->floor_raises,
		    (ull)rs->floor_rejects, (ull)rs->rotations);
	rs = f->replay;
	if (rs)
		out(t,
		    "strike register: entries %llu / %llu  inserts %llu hits %llu full_rejects "
		    "%llu\n",
		    (ull)rs->entries, (ull)rs->capacity, (ull)rs->inserts, (ull)rs->hits,
		    (ull)rs->full_rejects);
}

static const char *security_name(enum cfg_security s)
{
	switch (s) {
	case CFG_SEC_TLS:
		return "tls";
	case CFG_SEC_SEALED:
		return "sealed";
	default:
		return "plain";
	}
}

static void out_services(struct text *t, const struct cfg *cfg, const struct svc_totals *tot)
{
	out(t, "\nservices served:\n");
	for (size_t j = 0; j < cfg->num_serves; j++)
		out(t,
		    "  %-24s port %-5u %-6s requests %llu  dropped_no_app %llu  wrong_mode %llu\n",
		    cfg->serves[j].name, cfg->serves[j].port,
		    security_name(cfg->serves[j].security), (ull)tot->requests[j],
		    (ull)tot->dropped_no_app[j], (ull)tot->wrong_mode[j]);
	out(t, "\nservices called:\n");
	for (size_t j = 0; j < cfg->num_calls; j++) {
		char addr[64];
		const struct cfg_call *cc = &cfg->calls[j];
		out(t, "  %-24s %s %s\n", cc->name, cc->has_router ? "router" : "servers",
		    cfg_format_addr(cc->has_router ? &cc->router : &cc->servers[0], addr,
				    sizeof(addr)));
	}
}

size_t status_format(const struct cfg *cfg, const struct status_facts *facts,
		     const struct worker_snap *snaps, unsigned num_workers, char *buf,
		     size_t buf_len)
{
	struct text t = {.buf = buf, .len = buf_len, .n = 0};
	struct svc_totals tot;

	memset(&tot, 0, sizeof(tot));
	buf[0] = '\0';
	out_header(&t, facts, num_workers);
	out_apps(&t, cfg, facts);
	out(&t, "\nworkers:\n");
	for (unsigned i = 0; i < num_workers; i++) {
		out_worker(&t, i, &snaps[i], facts->xdp);
		add_services(cfg, &snaps[i], &tot);
	}
	out_tls(&t, snaps, num_workers);
	out_sealed(&t, snaps, num_workers);
	out_assocs(&t, snaps, num_workers, facts->now_ms);
	out_replay(&t, facts);
	out_services(&t, cfg, &tot);
	return t.n;
}
