// SPDX-License-Identifier: MIT
/*
 * The status, as text, as JSON or as Prometheus metrics, written by one set of section
 * functions through an emitter: each counter is named once, and every form says the
 * same numbers. Totals are summed from the one set of snapshots the caller took, so a
 * total always equals the sum of the lines above it.
 *
 * The Prometheus form names a metric by the path of objects to it ("r2p2_" then the
 * JSON keys, then the counter's name; "_total" for a counter), takes the numbers that
 * identify an element of an array (a worker's id, a service's port) and every string
 * as labels, and groups the samples by metric as the exposition format requires.
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealed.h"
#include "tls.h"

typedef unsigned long long ull;

#define EM_DEPTH 8

#define PROM_NAME_MAX 96
#define PROM_LABELS_MAX 160
#define PROM_MAX_SAMPLES 4096

/* One Prometheus sample, kept until every sample is known (they are grouped by name). */
struct prom_sample {
	char family[PROM_NAME_MAX]; /* the metric: HELP and TYPE are written once per family */
	char name[PROM_NAME_MAX];   /* the sample's own name (a histogram's _bucket, _sum ...) */
	char labels[PROM_LABELS_MAX];
	double v;
	const char *type; /* "counter", "gauge", "histogram" */
	unsigned seq;	  /* emission order, to keep it within a metric */
};

/*
 * An emitter: `n` bytes of `len` used in `buf`, `buf[n]` always NUL. In text form
 * em_num writes " name value" and em_gap one more space; the JSON form writes members
 * and arrays, a comma before every member but the first of its level; the Prometheus
 * form collects samples (emitted by prom_finish).
 */
struct em {
	char *buf;
	size_t len;
	size_t n;
	bool json;
	bool prom;
	int depth;
	bool later[EM_DEPTH]; /* a member was written at this level: the next needs a comma */
	/* Prometheus: per level, its key (NULL in an array), whether it is an array, and
	 * the labels it adds; strings of the top level go to r2p2_info */
	const char *path[EM_DEPTH];
	bool array[EM_DEPTH];
	char labels[EM_DEPTH][PROM_LABELS_MAX];
	struct prom_sample *samples;
	size_t num_samples;
	bool info; /* the r2p2_info sample: takes the top level's labels */
};

/* put appends to `e`; what does not fit is cut, and `e` stays full from then on. */
__attribute__((format(printf, 2, 3))) static void put(struct em *e, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(e->buf + e->n, e->len - e->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		e->n = e->n + (size_t)k < e->len ? e->n + (size_t)k : e->len - 1;
}

/* text writes only in the text form. */
#define text(e, ...)                                                                               \
	do {                                                                                       \
		if (!(e)->json && !(e)->prom)                                                      \
			put((e), __VA_ARGS__);                                                     \
	} while (0)

/* ---- the Prometheus form ---- */

/* prom_label appends name="value" (escaped) to the labels of the current level. */
static void prom_label(struct em *e, const char *name, const char *value)
{
	char *l = e->labels[e->depth];
	size_t n = strlen(l);

	n += (size_t)snprintf(l + n, n < PROM_LABELS_MAX ? PROM_LABELS_MAX - n : 0, "%s%s=\"",
			      n ? "," : "", name);
	for (; *value && n + 3 < PROM_LABELS_MAX; value++) {
		if (*value == '"' || *value == '\\')
			l[n++] = '\\';
		l[n++] = *value == '\n' ? 'n' : *value;
	}
	if (n + 1 < PROM_LABELS_MAX)
		l[n++] = '"';
	l[n < PROM_LABELS_MAX ? n : PROM_LABELS_MAX - 1] = '\0';
}

/*
 * prom_add records a sample of metric `name` (under the current path; `suffix`
 * appended to the sample's own name, and `le` as one more label, for a histogram's)
 * with the labels in force.
 */
static void prom_add(struct em *e, const char *name, const char *suffix, const char *le, double v,
		     const char *type)
{
	struct prom_sample *ps;
	size_t n;

	if (!e->samples || e->num_samples == PROM_MAX_SAMPLES)
		return;
	ps = &e->samples[e->num_samples];
	n = (size_t)snprintf(ps->family, sizeof(ps->family), "r2p2");
	for (int d = 1; d <= e->depth; d++)
		if (e->path[d] && n < sizeof(ps->family))
			n += (size_t)snprintf(ps->family + n, sizeof(ps->family) - n, "_%s",
					      e->path[d]);
	if (n < sizeof(ps->family))
		snprintf(ps->family + n, sizeof(ps->family) - n, "_%s%s", name,
			 strcmp(type, "counter") == 0 ? "_total" : "");
	snprintf(ps->name, sizeof(ps->name), "%s%s", ps->family, suffix);
	ps->labels[0] = '\0';
	n = 0;
	/* the top level's labels (version, backend) go to r2p2_info only */
	for (int d = e->info ? 1 : 2; d <= e->depth; d++)
		if (e->labels[d][0] && n < sizeof(ps->labels))
			n += (size_t)snprintf(ps->labels + n, sizeof(ps->labels) - n, "%s%s",
					      n ? "," : "", e->labels[d]);
	if (le && n < sizeof(ps->labels))
		snprintf(ps->labels + n, sizeof(ps->labels) - n, "%sle=\"%s\"", n ? "," : "", le);
	ps->v = v;
	ps->type = type;
	ps->seq = (unsigned)e->num_samples++;
}

static void prom_sample(struct em *e, const char *name, uint64_t v, bool counter)
{
	prom_add(e, name, "", NULL, (double)v, counter ? "counter" : "gauge");
}

/* Counters that say how many there are now, not how many there were. */
static bool prom_is_gauge(const char *name)
{
	static const char *const gauges[] = {"inflight",	   "executing",	   "queued",
					     "pending_handshakes", "associations", NULL};

	for (int i = 0; gauges[i]; i++)
		if (strcmp(name, gauges[i]) == 0)
			return true;
	return false;
}

static int prom_cmp(const void *a, const void *b)
{
	const struct prom_sample *x = a, *y = b;
	int c = strcmp(x->family, y->family);

	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* prom_finish writes the samples, grouped by metric, each metric with HELP and TYPE. */
static void prom_finish(struct em *e)
{
	qsort(e->samples, e->num_samples, sizeof(*e->samples), prom_cmp);
	for (size_t i = 0; i < e->num_samples; i++) {
		const struct prom_sample *ps = &e->samples[i];

		if (i == 0 || strcmp(ps->family, e->samples[i - 1].family) != 0)
			put(e,
			    "# HELP %s r2p2d status counter (docs/OPERATIONS.md, \"Metrics\").\n"
			    "# TYPE %s %s\n",
			    ps->family, ps->family, ps->type);
		put(e, "%s%s%s%s %.15g\n", ps->name, ps->labels[0] ? "{" : "", ps->labels,
		    ps->labels[0] ? "}" : "", ps->v);
	}
}

/* member starts a JSON member `key` (NULL: an array element) at the current level. */
static void member(struct em *e, const char *key)
{
	if (e->later[e->depth])
		put(e, ",");
	e->later[e->depth] = true;
	if (key)
		put(e, "\"%s\":", key);
}

/* em_open opens a JSON object ('{') or array ('[') named `key` (NULL in an array). */
static void em_open(struct em *e, const char *key, char bracket)
{
	if (e->prom && e->depth + 1 < EM_DEPTH) {
		e->depth++;
		e->path[e->depth] = key;
		e->array[e->depth] = bracket == '[';
		e->labels[e->depth][0] = '\0';
		return;
	}
	if (!e->json)
		return;
	member(e, key);
	put(e, "%c", bracket);
	if (e->depth + 1 < EM_DEPTH)
		e->later[++e->depth] = false;
}

static void em_close(struct em *e, char bracket)
{
	if (e->prom) {
		if (e->depth > 0)
			e->depth--;
		return;
	}
	if (!e->json)
		return;
	put(e, "%c", bracket);
	if (e->depth > 0)
		e->depth--;
}

/* em_num writes a counter: " name value" in text, "name":value in JSON. */
static void em_num(struct em *e, const char *name, uint64_t v)
{
	if (e->prom) {
		prom_sample(e, name, v, !prom_is_gauge(name));
		return;
	}
	if (!e->json) {
		put(e, " %s %llu", name, (ull)v);
		return;
	}
	member(e, name);
	put(e, "%llu", (ull)v);
}

/* em_jnum writes a number in JSON only (the text form says it in its own words). */
static void em_jnum(struct em *e, const char *name, uint64_t v)
{
	char digits[24];

	static const char *const ids[] = {"id", "port", "worker", "key_id", "pid", "uid", NULL};
	bool id = false;

	for (int i = 0; ids[i] && e->prom; i++)
		id |= strcmp(name, ids[i]) == 0;
	if (e->prom && id && e->depth > 1 && e->array[e->depth - 1]) {
		/* it identifies an element of an array: a label */
		snprintf(digits, sizeof(digits), "%llu", (ull)v);
		prom_label(e, name, digits);
	} else if (e->prom) {
		prom_sample(e, name, v, false);
	} else if (e->json) {
		em_num(e, name, v);
	}
}

/* em_gap separates groups of counters in text (two spaces instead of one). */
static void em_gap(struct em *e)
{
	text(e, " ");
}

/* em_str writes a JSON string member (text forms write their strings themselves). */
static void em_str(struct em *e, const char *name, const char *s)
{
	if (e->prom) {
		/* a label of its level (of r2p2_info at the top); strings in arrays: none */
		if (name)
			prom_label(e, name, s);
		return;
	}
	if (!e->json)
		return;
	member(e, name);
	put(e, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(e, "\\%c", c);
		else if (c < 0x20)
			put(e, "\\u%04x", c);
		else
			put(e, "%c", c);
	}
	put(e, "\"");
}

static void em_bool(struct em *e, const char *name, bool v)
{
	if (e->prom) {
		prom_sample(e, name, v, false);
		return;
	}
	if (!e->json)
		return;
	member(e, name);
	put(e, "%s", v ? "true" : "false");
}

/* lat_le_us is the upper bound of call latency bucket `i` (worker.h), in microseconds. */
static uint64_t lat_le_us(unsigned i)
{
	return 8ull << i;
}

/*
 * em_hist writes the latency histogram `lat` (CALL_LAT_BUCKETS counts, `sum_us` in
 * all): in JSON "name_us": {"sum", "le", "counts"} (one count more than bounds: the
 * last is every call over the last bound), in Prometheus a histogram in seconds.
 */
static void em_hist(struct em *e, const char *name, const uint64_t *lat, uint64_t sum_us)
{
	char metric[48], le[32];
	uint64_t cum = 0;

	if (e->prom) {
		snprintf(metric, sizeof(metric), "%s_seconds", name);
		for (unsigned i = 0; i < CALL_LAT_BUCKETS; i++) {
			cum += lat[i];
			if (i + 1 < CALL_LAT_BUCKETS)
				snprintf(le, sizeof(le), "%.6g", (double)lat_le_us(i) / 1e6);
			else
				snprintf(le, sizeof(le), "+Inf");
			prom_add(e, metric, "_bucket", le, (double)cum, "histogram");
		}
		prom_add(e, metric, "_sum", NULL, (double)sum_us / 1e6, "histogram");
		prom_add(e, metric, "_count", NULL, (double)cum, "histogram");
		return;
	}
	if (!e->json)
		return;
	snprintf(metric, sizeof(metric), "%s_us", name);
	member(e, metric);
	put(e, "{\"sum\":%llu,\"le\":[", (ull)sum_us);
	for (unsigned i = 0; i + 1 < CALL_LAT_BUCKETS; i++)
		put(e, "%s%llu", i ? "," : "", (ull)lat_le_us(i));
	put(e, "],\"counts\":[");
	for (unsigned i = 0; i < CALL_LAT_BUCKETS; i++)
		put(e, "%s%llu", i ? "," : "", (ull)lat[i]);
	put(e, "]}");
}

/* lat_quantile is the upper bound (us) of the bucket holding quantile `q`; 0: no call,
 * UINT64_MAX: the last bucket (over its lower bound). */
static uint64_t lat_quantile(const uint64_t *lat, double q)
{
	uint64_t total = 0, cum = 0;

	for (unsigned i = 0; i < CALL_LAT_BUCKETS; i++)
		total += lat[i];
	for (unsigned i = 0; i < CALL_LAT_BUCKETS && total; i++) {
		cum += lat[i];
		if ((double)cum >= q * (double)total)
			return i + 1 < CALL_LAT_BUCKETS ? lat_le_us(i) : UINT64_MAX;
	}
	return 0;
}

/* Per-service totals over every worker, indexed like cfg->serves. */
struct svc_totals {
	uint64_t requests[CFG_MAX_SERVICES];
	uint64_t dropped_no_app[CFG_MAX_SERVICES];
	uint64_t wrong_mode[CFG_MAX_SERVICES];
	uint64_t expired[CFG_MAX_SERVICES];
	uint64_t bad_ext[CFG_MAX_SERVICES];
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
			tot->expired[j] += s->svc[k].dropped_expired;
			tot->bad_ext[j] += s->svc[k].dropped_bad_ext;
		}
	}
}

static void out_xdp(struct em *e, const struct r2p2_stats *xs)
{
	text(e, "xdp:");
	em_open(e, "xdp", '{');
	em_num(e, "steered", xs->steered);
	em_num(e, "no_socket", xs->no_socket);
	em_num(e, "dropped_malformed", xs->dropped_malformed);
	em_num(e, "passed_not_r2p2", xs->passed_not_r2p2);
	em_num(e, "passed_fragment", xs->passed_fragment);
	em_num(e, "passed_ipv6_ext", xs->passed_ipv6_ext);
	em_num(e, "passed_runt", xs->passed_runt);
	em_close(e, '}');
	text(e, "\n");
}

static void out_header(struct em *e, const struct status_facts *f, unsigned num_workers)
{
	text(e, "r2p2d %s  pid %d  workers %u  apps %zu%s\n", f->version, f->pid, num_workers,
	     f->num_apps, f->draining ? "  (draining)" : "");
	text(e, "backend: %s\n", f->backend);
	em_str(e, "version", f->version);
	em_jnum(e, "pid", (uint64_t)f->pid);
	em_jnum(e, "num_workers", num_workers);
	em_jnum(e, "num_apps", f->num_apps);
	em_bool(e, "draining", f->draining);
	em_str(e, "backend", f->backend);
	if (f->xdp && f->xdp_stats)
		out_xdp(e, f->xdp_stats);
}

static void out_app(struct em *e, const struct cfg *cfg, const struct app *a)
{
	text(e, "  app %llu  pid %d  uid %u  serves:", (ull)a->id, (int)a->pid, (unsigned)a->uid);
	em_open(e, NULL, '{');
	em_jnum(e, "id", a->id);
	em_jnum(e, "pid", (uint64_t)a->pid);
	em_jnum(e, "uid", a->uid);
	em_open(e, "serves", '[');
	for (unsigned k = 0; k < a->num_serves; k++) {
		const struct cfg_serve *sv = cfg_find_serve_port(cfg, a->serves[k]);
		text(e, " %s", sv ? sv->name : "?");
		em_str(e, NULL, sv ? sv->name : "?");
	}
	em_close(e, ']');
	em_close(e, '}');
	text(e, "\n");
}

static void out_apps(struct em *e, const struct cfg *cfg, const struct status_facts *f)
{
	text(e, "\napps:\n");
	em_open(e, "apps", '[');
	for (size_t i = 0; i < f->num_apps; i++)
		out_app(e, cfg, f->apps[i]);
	em_close(e, ']');
}

static void out_drops(struct em *e, const struct worker_snap *s)
{
	const struct eng_stats *x = &s->eng;

	text(e, "    drops:");
	em_open(e, "drops", '{');
	em_num(e, "runt", x->rx_runt);
	em_num(e, "bad_header", x->rx_bad_header);
	em_num(e, "bad_type", x->rx_bad_type);
	em_num(e, "bad_order", x->rx_bad_order);
	em_num(e, "duplicate", x->rx_duplicate);
	em_num(e, "unmatched", x->rx_unmatched);
	em_num(e, "too_big", x->rx_too_big);
	em_num(e, "no_state", x->rx_no_state);
	em_gap(e);
	em_num(e, "app_errors", s->app_errors);
	em_gap(e);
	em_num(e, "conflict", x->rx_conflict);
	em_num(e, "unauthentic", x->rx_unauthentic);
	em_gap(e);
	em_num(e, "no_memory", x->rx_no_memory);
	em_num(e, "evict_source", x->evict_source);
	em_num(e, "evict_full", x->evict_full);
	em_num(e, "evict_memory", x->evict_memory);
	em_num(e, "amp_limited", x->amp_limited);
	em_num(e, "amp_validated", x->amp_validated);
	em_close(e, '}');
	text(e, "\n");
}

static void out_worker(struct em *e, unsigned i, const struct worker_snap *s, bool xdp)
{
	const struct eng_stats *x = &s->eng;

	text(e, "  worker %u ", i);
	em_open(e, NULL, '{');
	em_jnum(e, "id", i);
	em_num(e, "rx", x->rx_packets);
	em_gap(e);
	em_num(e, "tx", x->tx_packets);
	em_gap(e);
	em_num(e, "calls", x->calls_started);
	em_num(e, "ok", x->calls_ok);
	em_num(e, "timeout", x->calls_timeout);
	em_num(e, "dropped", x->calls_dropped);
	em_gap(e);
	em_num(e, "requests", x->req_received);
	em_num(e, "resent", x->req_retransmit);
	em_gap(e);
	em_num(e, "inflight", s->calls_inflight);
	em_num(e, "executing", s->requests_executing);
	em_gap(e);
	em_num(e, "bad", x->rx_runt + x->rx_bad_header + x->rx_bad_type + x->rx_bad_order);
	em_gap(e);
	em_num(e, "app_ok", s->app_ok);
	em_num(e, "app_failed", s->app_failed);
	em_gap(e);
	em_num(e, "queued", s->calls_queued);
	em_num(e, "waited", s->calls_waited);
	em_num(e, "queue_full", s->queue_full);
	text(e, "\n");
	out_drops(e, s);
	if (xdp) {
		text(e, "    af_xdp:");
		em_open(e, "af_xdp", '{');
		em_num(e, "rx", s->xsk_rx);
		em_num(e, "rx_bad", s->xsk_rx_bad);
		em_num(e, "tx", s->xsk_tx);
		em_num(e, "tx_via_kernel", s->xsk_tx_fallback);
		em_close(e, '}');
		text(e, "\n");
	}
	em_close(e, '}');
}

static void out_tls(struct em *e, const struct worker_snap *snaps, unsigned num_workers)
{
	struct tls_stats ts = {0}, tc = {0};

	for (unsigned i = 0; i < num_workers; i++) {
		tls_stats_add(&ts, &snaps[i].tls_server);
		tls_stats_add(&tc, &snaps[i].tls_client);
	}
	text(e, "\ntls server:");
	em_open(e, "tls_server", '{');
	em_num(e, "full_handshakes", ts.handshakes_full);
	em_num(e, "resumed", ts.resumed);
	em_num(e, "early_accepted", ts.early_accepted);
	em_num(e, "early_rejected", ts.early_rejected);
	em_num(e, "replays_refused", ts.replays_refused);
	em_num(e, "bad_messages", ts.bad_messages);
	em_num(e, "pending_handshakes", ts.pending_handshakes);
	em_num(e, "already_answered", ts.already_answered);
	em_num(e, "wrong_server", ts.wrong_server);
	em_num(e, "early_too_old", ts.early_too_old);
	em_close(e, '}');
	text(e, "\ntls client:");
	em_open(e, "tls_client", '{');
	em_num(e, "full_handshakes", tc.handshakes_full);
	em_num(e, "resumed", tc.resumed);
	em_num(e, "early_accepted", tc.early_accepted);
	em_num(e, "early_rejected", tc.early_rejected);
	em_num(e, "verify_failures", tc.verify_failures);
	em_num(e, "bad_messages", tc.bad_messages);
	em_num(e, "tickets_received", tc.tickets_received);
	em_close(e, '}');
	text(e, "\n");
}

static void out_sealed(struct em *e, const struct worker_snap *snaps, unsigned num_workers)
{
	struct sealed_stats ss = {0};
	uint64_t assocs = 0, reboots = 0;

	for (unsigned i = 0; i < num_workers; i++) {
		sealed_stats_add(&ss, &snaps[i].sealed);
		assocs += snaps[i].sealed_assocs;
		reboots += snaps[i].sealed_rebootstraps;
	}
	text(e, "sealed server:");
	em_open(e, "sealed_server", '{');
	em_num(e, "opened", ss.opened);
	em_num(e, "responses", ss.responses);
	em_num(e, "minted", ss.minted);
	text(e, "  rejected:");
	em_open(e, "rejected", '{');
	for (unsigned r = 1; r <= SEALED_REASON_MAX; r++)
		em_num(e, sealed_reason_name(r), ss.rejected[r]);
	em_close(e, '}');
	em_close(e, '}');
	text(e, "\nsealed client:");
	em_open(e, "sealed_client", '{');
	em_num(e, "associations", assocs);
	em_num(e, "rebootstraps", reboots);
	em_close(e, '}');
	text(e, "\n");
}

static void out_assocs(struct em *e, const struct worker_snap *snaps, unsigned num_workers,
		       uint64_t now_ms)
{
	em_open(e, "associations", '[');
	for (unsigned i = 0; i < num_workers; i++) {
		const struct worker_snap *s = &snaps[i];
		for (unsigned k = 0; k < s->num_assoc; k++) {
			long long left =
			    (long long)((int64_t)(s->assoc[k].expiry_ms - now_ms) / 1000);

			text(e,
			     "  worker %u association for %s: token key id %08x, expires in %lld "
			     "s\n",
			     i, s->assoc[k].service, s->assoc[k].key_id, left);
			em_open(e, NULL, '{');
			em_jnum(e, "worker", i);
			em_str(e, "service", s->assoc[k].service);
			em_jnum(e, "key_id", s->assoc[k].key_id);
			if (e->json) {
				member(e, "expires_in_s");
				put(e, "%lld", left);
			}
			em_close(e, '}');
		}
	}
	em_close(e, ']');
}

/* out_register writes one strike register: "NAME: entries N / CAP  inserts ..." in text. */
static void out_register(struct em *e, const char *name, const char *key,
			 const struct replay_stats *rs, bool sealed)
{
	text(e, "%s: entries %llu / %llu ", name, (ull)rs->entries, (ull)rs->capacity);
	em_open(e, key, '{');
	em_jnum(e, "entries", rs->entries);
	em_jnum(e, "capacity", rs->capacity);
	em_num(e, "inserts", rs->inserts);
	em_num(e, "hits", rs->hits);
	em_num(e, "full_rejects", rs->full_rejects);
	if (sealed) {
		em_num(e, "share_rejects", rs->share_rejects);
		em_num(e, "floor_raises", rs->floor_raises);
		em_num(e, "floor_rejects", rs->floor_rejects);
		em_num(e, "rotations", rs->rotations);
	}
	em_close(e, '}');
	text(e, "\n");
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

static void out_served(struct em *e, const struct cfg *cfg, const struct svc_totals *tot)
{
	text(e, "\nservices served:\n");
	em_open(e, "served", '[');
	for (size_t j = 0; j < cfg->num_serves; j++) {
		const struct cfg_serve *sv = &cfg->serves[j];

		text(e, "  %-24s port %-5u %-6s", sv->name, sv->port, security_name(sv->security));
		em_open(e, NULL, '{');
		em_str(e, "name", sv->name);
		em_jnum(e, "port", sv->port);
		em_str(e, "security", security_name(sv->security));
		em_num(e, "requests", tot->requests[j]);
		em_gap(e);
		em_num(e, "dropped_no_app", tot->dropped_no_app[j]);
		em_gap(e);
		em_num(e, "wrong_mode", tot->wrong_mode[j]);
		em_gap(e);
		em_num(e, "expired", tot->expired[j]);
		em_gap(e);
		em_num(e, "bad_ext", tot->bad_ext[j]);
		em_close(e, '}');
		text(e, "\n");
	}
	em_close(e, ']');
}

/* text_quantile writes a bucket bound of lat_quantile: "<=32 us", ">2097152 us" or "-". */
static void text_quantile(struct em *e, uint64_t us)
{
	if (us == 0)
		text(e, "-");
	else if (us == UINT64_MAX)
		text(e, ">%llu us", (ull)lat_le_us(CALL_LAT_BUCKETS - 2));
	else
		text(e, "<=%llu us", (ull)us);
}

/* called_totals sums the call counters of service `name` over every worker. */
static void called_totals(const struct worker_snap *snaps, unsigned num_workers, const char *name,
			  struct call_svc_stats *tot)
{
	memset(tot, 0, sizeof(*tot));
	for (unsigned w = 0; w < num_workers; w++) {
		for (unsigned k = 0; k < snaps[w].num_called; k++) {
			const struct call_svc_stats *st = &snaps[w].called[k].st;

			if (strcmp(snaps[w].called[k].name, name) != 0)
				continue;
			tot->ok += st->ok;
			tot->failed += st->failed;
			tot->lat_sum_us += st->lat_sum_us;
			for (unsigned b = 0; b < CALL_LAT_BUCKETS; b++)
				tot->lat[b] += st->lat[b];
		}
	}
}

static void out_called(struct em *e, const struct cfg *cfg, const struct worker_snap *snaps,
		       unsigned num_workers)
{
	text(e, "\nservices called:\n");
	em_open(e, "called", '[');
	for (size_t j = 0; j < cfg->num_calls; j++) {
		const struct cfg_call *cc = &cfg->calls[j];
		const char *kind = cc->has_router ? "router" : "servers";
		struct call_svc_stats tot;
		char addr[64];

		called_totals(snaps, num_workers, cc->name, &tot);
		cfg_format_addr(cc->has_router ? &cc->router : &cc->servers[0], addr, sizeof(addr));
		text(e, "  %-24s %s %s\n", cc->name, kind, addr);
		text(e, "    calls: ok %llu failed %llu  latency p50 ", (ull)tot.ok,
		     (ull)tot.failed);
		text_quantile(e, lat_quantile(tot.lat, 0.5));
		text(e, " p99 ");
		text_quantile(e, lat_quantile(tot.lat, 0.99));
		text(e, "\n");
		em_open(e, NULL, '{');
		em_str(e, "name", cc->name);
		em_str(e, "security", security_name(cc->security));
		if (!e->prom) {
			em_open(e, kind, '[');
			for (size_t k = 0; k < (cc->has_router ? 1 : cc->num_servers); k++) {
				cfg_format_addr(cc->has_router ? &cc->router : &cc->servers[k],
						addr, sizeof(addr));
				em_str(e, NULL, addr);
			}
			em_close(e, ']');
		}
		em_jnum(e, "max_inflight", cc->max_inflight);
		if (!e->json && !e->prom) {
			em_close(e, '}');
			continue;
		}
		em_num(e, "ok", tot.ok);
		em_num(e, "failed", tot.failed);
		em_hist(e, "latency", tot.lat, tot.lat_sum_us);
		em_close(e, '}');
	}
	em_close(e, ']');
}

enum form { FORM_TEXT, FORM_JSON, FORM_PROM };

static size_t format(const struct cfg *cfg, const struct status_facts *facts,
		     const struct worker_snap *snaps, unsigned num_workers, char *buf,
		     size_t buf_len, enum form form)
{
	struct em e = {.buf = buf, .len = buf_len, .json = form == FORM_JSON};
	struct svc_totals tot;

	if (form == FORM_PROM) {
		e.prom = true;
		e.samples = calloc(PROM_MAX_SAMPLES, sizeof(*e.samples));
		if (!e.samples) {
			buf[0] = '\0';
			return 0;
		}
	}

	memset(&tot, 0, sizeof(tot));
	buf[0] = '\0';
	em_open(&e, NULL, '{');
	out_header(&e, facts, num_workers);
	out_apps(&e, cfg, facts);
	text(&e, "\nworkers:\n");
	em_open(&e, "workers", '[');
	for (unsigned i = 0; i < num_workers; i++) {
		out_worker(&e, i, &snaps[i], facts->xdp);
		add_services(cfg, &snaps[i], &tot);
	}
	em_close(&e, ']');
	out_tls(&e, snaps, num_workers);
	out_sealed(&e, snaps, num_workers);
	out_assocs(&e, snaps, num_workers, facts->now_ms);
	if (facts->sealed_replay)
		out_register(&e, "sealed strike register", "sealed_strike_register",
			     facts->sealed_replay, true);
	if (facts->replay)
		out_register(&e, "strike register", "strike_register", facts->replay, false);
	out_served(&e, cfg, &tot);
	out_called(&e, cfg, snaps, num_workers);
	if (e.prom && e.depth == 1) {
		/* the top level's strings (version, backend) label one constant metric */
		e.info = true;
		prom_sample(&e, "info", 1, false);
		prom_finish(&e);
		free(e.samples);
		return e.n;
	}
	em_close(&e, '}');
	if (e.json)
		put(&e, "\n");
	free(e.samples);
	return e.n;
}

size_t status_format(const struct cfg *cfg, const struct status_facts *facts,
		     const struct worker_snap *snaps, unsigned num_workers, char *buf,
		     size_t buf_len)
{
	return format(cfg, facts, snaps, num_workers, buf, buf_len, FORM_TEXT);
}

size_t status_format_json(const struct cfg *cfg, const struct status_facts *facts,
			  const struct worker_snap *snaps, unsigned num_workers, char *buf,
			  size_t buf_len)
{
	return format(cfg, facts, snaps, num_workers, buf, buf_len, FORM_JSON);
}

size_t status_format_prom(const struct cfg *cfg, const struct status_facts *facts,
			  const struct worker_snap *snaps, unsigned num_workers, char *buf,
			  size_t buf_len)
{
	return format(cfg, facts, snaps, num_workers, buf, buf_len, FORM_PROM);
}
