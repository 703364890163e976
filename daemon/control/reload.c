// SPDX-License-Identifier: MIT
/*
 * Reloading the configuration (SIGHUP and `r2p2ctl reload`, main thread only).
 *
 * A reload applies the new file completely or not at all. Everything that can be
 * refused is checked before anything changes: the file itself (file:line), what it
 * points to (certificates, keys, CA bundles, STEK files, as --check does), the
 * settings only a restart applies (each named), the ports of new services (free).
 * Then every worker switches and reports back; if one fails, all switch back to
 * the running config. The XDP program's port map follows the served ports: a
 * removed port leaves it before the workers close their sockets, an added one
 * joins it once every worker has its socket. Each line a reload says goes to the
 * log and to the reply of `r2p2ctl reload`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "daemon.h"
#include "err.h"
#include "log.h"
#include "replay.h"
#include "xdpath.h"

#define RELOAD_WAIT_MS 5000 /* a worker applies a config in microseconds; this is a wedge */

/* The lines a reload says: each is logged at its level and kept for the reply. */
struct say {
	char *buf;
	size_t len, used;
};

__attribute__((format(printf, 3, 4))) static void say(struct say *s, enum log_level level,
						      const char *fmt, ...)
{
	char line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	log_msg(level, "%s", line);
	if (s->used < s->len) {
		n = snprintf(s->buf + s->used, s->len - s->used, "%s%s", s->used ? "\n" : "", line);
		if (n > 0)
			s->used += (size_t)n < s->len - s->used ? (size_t)n : s->len - s->used - 1;
	}
}

static const char *mode_name(enum cfg_security m)
{
	return m == CFG_SEC_SEALED ? "sealed" : m == CFG_SEC_TLS ? "tls" : "plain";
}

/* ---- what only a restart applies -------------------------------------------------- */

/* A [daemon] key only a restart applies: where it lives in struct cfg, and its kind. */
struct restart_key {
	const char *name;
	size_t off, size;
	bool text;		  /* a NUL-terminated string; else a number of `size` bytes */
	const char *const *words; /* the words of the number's values (NULL: a number) */
};

static const char *const backend_words[] = {"auto", "xdp", "udp"};
static const char *const xdp_mode_words[] = {"native", "skb"};
static const char *const yes_no[] = {"no", "yes"};

#define RK_FIELD(field) offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field)
#define RK_NUM(name, field)                                                                        \
	{                                                                                          \
		name, RK_FIELD(field), false, NULL                                                 \
	}
#define RK_WORD(name, field, words)                                                                \
	{                                                                                          \
		name, RK_FIELD(field), false, words                                                \
	}
#define RK_TEXT(name, field)                                                                       \
	{                                                                                          \
		name, RK_FIELD(field), true, NULL                                                  \
	}

static const struct restart_key restart_only[] = {
    RK_TEXT("listen", listen),
    RK_NUM("workers", workers),
    RK_TEXT("socket", socket_path),
    RK_TEXT("socket_group", socket_group),
    RK_NUM("max_message", max_msg_len),
    RK_NUM("ring_entries", ring_entries),
    RK_NUM("arena_size", arena_size),
    RK_WORD("seccomp", seccomp, yes_no),
    RK_TEXT("user", user),
    RK_WORD("backend", backend, backend_words),
    RK_WORD("xdp_mode", xdp_skb, xdp_mode_words),
    RK_TEXT("interface", interface),
};

/* key_value reads the number of `size` bytes at `p` (fields of 1, 4 or 8 bytes). */
static unsigned long long key_value(const void *p, size_t size)
{
	uint64_t v64;
	uint32_t v32;
	uint8_t v8;

	if (size == sizeof(v64))
		return memcpy(&v64, p, size), v64;
	if (size == sizeof(v32))
		return memcpy(&v32, p, size), v32;
	return memcpy(&v8, p, 1), v8;
}

/* restart_key_changed says (and returns whether) key `k` differs between `o` and `n`. */
static bool restart_key_changed(const struct restart_key *k, const struct cfg *o,
				const struct cfg *n, struct say *s)
{
	const char *ov = (const char *)o + k->off, *nv = (const char *)n + k->off;

	if (k->text) {
		if (strcmp(ov, nv) == 0)
			return false;
		say(s, LOG_LVL_ERR, "reload: %s = '%s' needs a restart (running: '%s')", k->name,
		    nv, ov);
		return true;
	}
	if (memcmp(ov, nv, k->size) == 0)
		return false;
	if (k->words)
		say(s, LOG_LVL_ERR, "reload: %s = %s needs a restart (running: %s)", k->name,
		    k->words[key_value(nv, k->size)], k->words[key_value(ov, k->size)]);
	else
		say(s, LOG_LVL_ERR, "reload: %s = %llu needs a restart (running: %llu)", k->name,
		    key_value(nv, k->size), key_value(ov, k->size));
	return true;
}

/*
 * restart_windows names each strike register setting that changed while its register
 * runs: a window the register was not built for would let a replay through. Before
 * the first tls or sealed [serve] there is no register, and the new values apply.
 */
static unsigned restart_windows(const struct daemon *d, const struct cfg *o, const struct cfg *n,
				struct say *s)
{
	unsigned bad = 0;

	if (d->replay && n->replay_window_ms != o->replay_window_ms) {
		say(s, LOG_LVL_ERR,
		    "reload: replay_window_ms = %llu needs a restart (the strike registers were "
		    "built for %llu)",
		    (unsigned long long)n->replay_window_ms,
		    (unsigned long long)o->replay_window_ms);
		bad++;
	}
	if (d->sealed_replay && n->sealed_window_ms != o->sealed_window_ms) {
		say(s, LOG_LVL_ERR,
		    "reload: sealed_window_ms = %u needs a restart (the strike registers were "
		    "built "
		    "for %u)",
		    n->sealed_window_ms, o->sealed_window_ms);
		bad++;
	}
	if ((d->replay || d->sealed_replay) && n->replay_max_entries != o->replay_max_entries) {
		say(s, LOG_LVL_ERR,
		    "reload: replay_max_entries = %u needs a restart (the strike registers were "
		    "built for %u)",
		    n->replay_max_entries, o->replay_max_entries);
		bad++;
	}
	return bad;
}

/* restart_keys names each [daemon] key whose change only a restart applies. */
static unsigned restart_keys(const struct daemon *d, const struct cfg *o, const struct cfg *n,
			     struct say *s)
{
	unsigned bad = restart_windows(d, o, n, s);

	for (size_t i = 0; i < sizeof(restart_only) / sizeof(restart_only[0]); i++)
		bad += restart_key_changed(&restart_only[i], o, n, s);
	if (n->num_cpus != o->num_cpus ||
	    memcmp(n->cpus, o->cpus, sizeof(o->cpus[0]) * o->num_cpus) != 0) {
		say(s, LOG_LVL_ERR, "reload: cpus needs a restart (the workers are pinned)");
		bad++;
	}
	if (n->has_metrics != o->has_metrics ||
	    (n->has_metrics && memcmp(&n->metrics, &o->metrics, sizeof(n->metrics)) != 0)) {
		say(s, LOG_LVL_ERR,
		    "reload: metrics needs a restart (the endpoint stays where it started)");
		bad++;
	}
	return bad;
}

/*
 * restart_xdp_idle refuses a first [serve] in a daemon whose xdp backend found nothing
 * to steer at start: no XDP program runs there to steer its port.
 */
static unsigned restart_xdp_idle(const struct daemon *d, const struct cfg *n, const char *path,
				 struct say *s)
{
	if (!d->xdp_idle || !n->num_serves)
		return 0;
	say(s, LOG_LVL_ERR,
	    "%s:%d: [serve %s]: backend = %s found nothing to steer at start, so no XDP "
	    "program runs; serving needs a restart",
	    path, n->serves[0].line, n->serves[0].name,
	    n->backend == CFG_BACKEND_XDP ? "xdp" : "auto");
	return 1;
}

/* probe_new_ports checks that the ports `n` serves and `o` does not are free. */
static int probe_new_ports(const struct cfg *o, const struct cfg *n, const char *path,
			   struct say *s)
{
	char err[256];
	int ret;

	for (size_t i = 0; i < n->num_serves; i++) {
		if (cfg_find_serve_port(o, n->serves[i].port))
			continue;
		ret = port_probe(o, n->serves[i].port, err, sizeof(err));
		if (ret < 0) {
			say(s, LOG_LVL_ERR, "%s:%d: [serve %s] %s", path, n->serves[i].line,
			    n->serves[i].name, err);
			return ret;
		}
	}
	return 0;
}

/* ---- what changes ------------------------------------------------------------------ */

static bool serve_differs(const struct cfg_serve *a, const struct cfg_serve *b)
{
	return a->port != b->port || a->security != b->security || strcmp(a->cert, b->cert) ||
	       strcmp(a->key, b->key) || a->early_data != b->early_data ||
	       strcmp(a->stek, b->stek) || a->owner != b->owner || a->owner_id != b->owner_id;
}

static bool call_differs(const struct cfg_call *a, const struct cfg_call *b)
{
	return a->num_servers != b->num_servers ||
	       memcmp(a->servers, b->servers, sizeof(a->servers[0]) * a->num_servers) != 0 ||
	       a->has_router != b->has_router ||
	       memcmp(&a->router, &b->router, sizeof(a->router)) || a->policy != b->policy ||
	       a->timeout_ms != b->timeout_ms || a->retries != b->retries ||
	       a->security != b->security || strcmp(a->ca, b->ca) ||
	       a->max_inflight != b->max_inflight || a->extensions != b->extensions;
}

/* say_changes says, one line each, which services and calls `n` adds, removes or changes. */
static unsigned say_changes(const struct cfg *o, const struct cfg *n, struct say *s)
{
	unsigned num = 0;

	for (size_t i = 0; i < n->num_serves; i++) {
		const struct cfg_serve *ns = &n->serves[i], *os = cfg_find_serve(o, ns->name);

		if (!os)
			say(s, LOG_LVL_INFO, "reload: [serve %s] added (port %u, %s)", ns->name,
			    ns->port, mode_name(ns->security));
		else if (os->port != ns->port)
			/* the port is the service id an app got at registration */
			say(s, LOG_LVL_INFO,
			    "reload: [serve %s] changed (port %u, %s): moved from port %u, so apps "
			    "serving it must register again",
			    ns->name, ns->port, mode_name(ns->security), os->port);
		else if (serve_differs(os, ns))
			say(s, LOG_LVL_INFO, "reload: [serve %s] changed (port %u, %s)", ns->name,
			    ns->port, mode_name(ns->security));
		num += !os || serve_differs(os, ns);
	}
	for (size_t i = 0; i < o->num_serves; i++)
		if (!cfg_find_serve(n, o->serves[i].name) && ++num)
			say(s, LOG_LVL_INFO, "reload: [serve %s] removed (port %u)",
			    o->serves[i].name, o->serves[i].port);
	for (size_t i = 0; i < n->num_calls; i++) {
		const struct cfg_call *nc = &n->calls[i], *oc = cfg_find_call(o, nc->name);

		if (!oc)
			say(s, LOG_LVL_INFO, "reload: [call %s] added (%s)", nc->name,
			    mode_name(nc->security));
		else if (call_differs(oc, nc))
			say(s, LOG_LVL_INFO, "reload: [call %s] changed (%s)", nc->name,
			    mode_name(nc->security));
		num += !oc || call_differs(oc, nc);
	}
	for (size_t i = 0; i < o->num_calls; i++)
		if (!cfg_find_call(n, o->calls[i].name) && ++num)
			say(s, LOG_LVL_INFO, "reload: [call %s] removed", o->calls[i].name);
	return num;
}

/* say_notes says each line of `notes` (what the workers noted); returns how many. */
static unsigned say_notes(char *notes, struct say *s)
{
	unsigned num = 0;
	char *save = NULL;

	for (char *line = strtok_r(notes, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		say(s, LOG_LVL_INFO, "%s", line);
		num++;
	}
	return num;
}

/* ---- applying -------------------------------------------------------------------------- */

/*
 * ensure_registers makes the strike registers a config with its first tls or sealed
 * service needs (sized and timed as at start: those settings cannot change here).
 */
static int ensure_registers(struct daemon *d, const struct cfg *n, struct say *s)
{
	bool sealed = false, tls = false;

	for (size_t i = 0; i < n->num_serves; i++) {
		sealed = sealed || n->serves[i].security == CFG_SEC_SEALED;
		tls = tls || n->serves[i].security != CFG_SEC_PLAIN;
	}
	if (sealed && !d->sealed_replay) {
		d->sealed_replay =
		    replay_new(n->replay_max_entries, 2ull * n->sealed_window_ms * 1000000ull);
		if (!d->sealed_replay)
			goto fail;
	}
	if (tls && !d->replay) {
		d->replay = replay_new(n->replay_max_entries, n->replay_window_ms * 1000000ull);
		if (!d->replay)
			goto fail;
	}
	return 0;
fail:
	say(s, LOG_LVL_ERR, "reload: strike register: %s", strerror(errno));
	return -ENOMEM;
}

/* steer_ports makes the XDP program steer the ports `c` serves (and, if `keep` is not
 * NULL, only those that `keep` serves too). Nothing to do on the udp backend. */
static int steer_ports(struct daemon *d, const struct cfg *c, const struct cfg *keep, char *why,
		       size_t why_len)
{
	uint16_t ports[CFG_MAX_SERVICES];
	size_t num = 0;

	if (!d->xdp)
		return 0;
	for (size_t i = 0; i < c->num_serves; i++)
		if (!keep || cfg_find_serve_port(keep, c->serves[i].port))
			ports[num++] = c->serves[i].port;
	return xdpath_set_ports(d->xdp, ports, num, why, why_len);
}

/*
 * switch_workers posts `cfg` to every worker and waits for all of them. Returns 0,
 * or the first failure with `why` filled; what the workers noted goes to `notes`
 * (NULL: nowhere).
 */
static int switch_workers(struct daemon *d, struct cfg_ref *cfg, char *why, size_t why_len,
			  char *notes, size_t notes_len)
{
	struct cmd_done *done = cmd_done_new(d->num_workers);
	uint64_t since = unix_ms();
	int ret;

	if (!done) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < d->num_workers; i++) {
		struct cmd *c = calloc(1, sizeof(*c));
		if (!c) {
			cmd_done_report(done, -ENOMEM, "out of memory posting to a worker");
			continue;
		}
		c->type = CMD_NEW_CFG;
		c->cfg = cfg_ref_get(cfg);
		c->replay = d->replay;
		c->sealed_replay = d->sealed_replay;
		c->since_ms = since;
		c->done = cmd_done_get(done);
		worker_post(d->workers[i], c);
	}
	ret = cmd_done_wait(done, RELOAD_WAIT_MS, why, why_len);
	if (notes && ret == 0)
		cmd_done_notes(done, notes, notes_len);
	cmd_done_put(done);
	return ret;
}

/*
 * apply switches the data path to `n`: ports leave the XDP map, the workers switch,
 * new ports join the map. On a failure everything goes back to the running config.
 * What the workers changed beyond the config (new certificates) goes to `notes`.
 */
static int apply(struct daemon *d, struct cfg_ref *n, struct say *s, char *notes, size_t notes_len)
{
	const struct cfg *o = &d->cfg->cfg;
	char why[512], undo[512];
	int ret;

	ret = steer_ports(d, o, &n->cfg, why, sizeof(why));
	if (ret == 0) {
		ret = switch_workers(d, n, why, sizeof(why), notes, notes_len);
		if (ret == 0)
			ret = steer_ports(d, &n->cfg, NULL, why, sizeof(why));
		if (ret < 0 && switch_workers(d, d->cfg, undo, sizeof(undo), NULL, 0) < 0)
			say(s, LOG_LVL_ERR, "reload: switching back: %s", undo);
	}
	if (ret < 0) {
		say(s, LOG_LVL_ERR, "reload: %s", why);
		if (steer_ports(d, o, NULL, undo, sizeof(undo)) < 0)
			say(s, LOG_LVL_ERR, "reload: restoring the XDP port map: %s", undo);
	}
	return ret;
}

/* check_new refuses `n` for whatever a reload cannot apply, each reason said. */
static int check_new(struct daemon *d, const struct cfg *n, struct say *s)
{
	const struct cfg *o = &d->cfg->cfg;
	char err[1024];
	int ret;

	if (cfg_check_files(n, d->cfg_path, err, sizeof(err)) < 0 ||
	    daemon_check_keys(n, d->cfg_path, err, sizeof(err)) < 0) {
		say(s, LOG_LVL_ERR, "%s", err);
		return -EINVAL;
	}
	if (restart_keys(d, o, n, s) + restart_xdp_idle(d, n, d->cfg_path, s) > 0)
		return -EBUSY;
	ret = probe_new_ports(o, n, d->cfg_path, s);
	return ret < 0 ? ret : ensure_registers(d, n, s);
}

int daemon_reload(struct daemon *d, const char *how, char *out, size_t out_len)
{
	struct say s = {.buf = out, .len = out_len};
	char err[1024], notes[1024] = "";
	struct cfg_ref *n;
	unsigned changes;
	int ret;

	if (out_len)
		out[0] = '\0';
	if (d->draining) {
		say(&s, LOG_LVL_WARN, "reload refused: r2p2d is shutting down");
		return -ESHUTDOWN;
	}
	sd_notify(0, "RELOADING=1");
	log_info("%s: reloading %s", how, d->cfg_path);
	n = cfg_ref_load(d->cfg_path, err, sizeof(err));
	ret = n ? check_new(d, &n->cfg, &s) : -errno;
	if (!n)
		say(&s, LOG_LVL_ERR, "%s", err);
	if (ret == 0)
		ret = apply(d, n, &s, notes, sizeof(notes));
	if (ret < 0) {
		say(&s, LOG_LVL_ERR, "reload failed; keeping the running configuration");
		cfg_ref_put(n);
		sd_notify(0, "READY=1");
		return ret;
	}
	changes = say_changes(&d->cfg->cfg, &n->cfg, &s) + say_notes(notes, &s);
	log_set_level(n->cfg.log_level);
	cfg_ref_put(d->cfg);
	d->cfg = n;
	say(&s, LOG_LVL_INFO, "reload done: %zu services served, %zu called; %u change%s",
	    n->cfg.num_serves, n->cfg.num_calls, changes, changes == 1 ? "" : "s");
	sd_notify(0, "READY=1");
	return 0;
}
