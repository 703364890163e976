// SPDX-License-Identifier: MIT
/*
 * r2p2d: the main thread. It loads the config, starts the workers, serves the
 * control socket (app attach, registration, status) and handles signals:
 * SIGTERM/SIGINT drain in-flight RPCs then exit, SIGHUP reloads the config.
 *
 * main is start, run, stop. start takes the steps in the order their failures
 * are cheapest to undo; run is an epoll loop whose every source carries its own
 * handler; stop undoes whatever start got to, in reverse.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "ctl.h"
#include "daemon.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "replay.h"
#include "sandbox.h"
#include "stek.h"
#include "tls.h"
#include "xdpath.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: r2p2d --config PATH [--check]\n"
		   "  -c, --config PATH  configuration file (see docs/OPERATIONS.md)\n"
		   "  -k, -t, --check    parse the configuration, report errors, and exit\n"
		   "  -V, --version      print the version and exit\n"
		   "  -h, --help         this text\n");
}

/*
 * parse_args sets `*out_path` and `*out_check` from the command line. Returns -1
 * when the daemon should go on, or the exit status: 0 after --help, 2 on misuse.
 */
static int parse_args(int argc, char **argv, const char **out_path, bool *out_check)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check", no_argument, NULL, 'k'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:ktVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			*out_path = optarg;
			break;
		case 'k':
		case 't': /* as nginx -t */
			*out_check = true;
			break;
		case 'V':
			printf("r2p2d %s\n", R2P2D_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!*out_path || optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

static struct cfg_ref *load_cfg(const char *path)
{
	char err[512];
	struct cfg_ref *r = cfg_ref_load(path, err, sizeof(err));

	if (!r)
		log_err("%s", err);
	return r;
}

/* post_all posts `type` to every worker, each with its own reference to `cfg` (may be NULL). */
static void post_all(struct daemon *d, enum cmd_type type, struct cfg_ref *cfg)
{
	for (unsigned i = 0; i < d->num_workers; i++) {
		struct cmd *c = calloc(1, sizeof(*c));
		if (!c) {
			log_err("out of memory posting to worker %u", i);
			continue;
		}
		c->type = type;
		if (cfg)
			c->cfg = cfg_ref_get(cfg);
		worker_post(d->workers[i], c);
	}
}

/* stop_workers stops and joins the workers that were started. */
static void stop_workers(struct daemon *d)
{
	for (unsigned i = 0; i < d->num_started; i++) {
		struct cmd *c = calloc(1, sizeof(*c));
		if (!c)
			abort(); /* a worker that never stops would hang the exit */
		c->type = CMD_STOP;
		worker_post(d->workers[i], c);
	}
	for (unsigned i = 0; i < d->num_started; i++)
		worker_join(d->workers[i]);
	d->num_started = 0;
}

/* ---- --check: what the config points to ------------------------------------------ */

/* check_stek loads the STEK file `stek` (mode, owner and format, as at start). */
static int check_stek(const char *path, int line, const char *what, const char *stek, char *err,
		      size_t err_len)
{
	struct stek_set *set = NULL;
	char why[400];
	int rc = stek_load(stek, &set, why, sizeof(why));

	stek_set_put(set);
	if (rc < 0)
		set_err(err, err_len, "%s:%d: %s: %s", path, line, what, why);
	return rc;
}

/* check_serve loads the keys of a tls or sealed service as at start, and checks its SAN. */
static int check_serve(const struct cfg *c, const struct cfg_serve *s, const char *path, char *err,
		       size_t err_len)
{
	struct tls_service_keys k = {.name = s->name, .cert_path = s->cert, .key_path = s->key};
	char why[400], what[80];
	int rc;

	if (s->security == CFG_SEC_PLAIN)
		return 0;
	rc = tls_check_service_keys(&k, why, sizeof(why));
	if (rc < 0) {
		set_err(err, err_len, "%s:%d: [serve %s] %s", path, s->line, s->name, why);
		return rc;
	}
	snprintf(what, sizeof(what), "[serve %s] stek", s->name);
	if (s->stek[0])
		return check_stek(path, s->stek_line, what, s->stek, err, err_len);
	if (!c->stek_path[0]) {
		set_err(err, err_len,
			"%s:%d: [serve %s] needs a STEK: set stek in [daemon] or here", path,
			s->line, s->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * daemon_check_keys loads, for --check and a reload, everything the config points to as a start
 * would: the STEK files (mode, owner, format), each tls or sealed service's chain and key (and that
 * the certificate names the service), each [call]'s CA bundle, and the socket_group. Returns 0, or
 * a negative errno with "file:line: ..." in `err`.
 */
int daemon_check_keys(const struct cfg *c, const char *path, char *err, size_t err_len)
{
	char why[400];
	int rc;

	if (c->stek_path[0] &&
	    (rc = check_stek(path, c->stek_line, "[daemon] stek", c->stek_path, err, err_len)) < 0)
		return rc;
	for (size_t i = 0; i < c->num_serves; i++)
		if ((rc = check_serve(c, &c->serves[i], path, err, err_len)) < 0)
			return rc;
	for (size_t i = 0; i < c->num_calls; i++) {
		const struct cfg_call *cc = &c->calls[i];
		struct tls_client *tc;

		if (cc->security == CFG_SEC_PLAIN)
			continue;
		tc = tls_client_new(cc->ca, why, sizeof(why));
		if (!tc) {
			set_err(err, err_len, "%s: [call %s] ca: %s", path, cc->name, why);
			return -EINVAL;
		}
		tls_client_free(tc);
	}
	if (c->socket_group[0] && !getgrnam(c->socket_group)) {
		set_err(err, err_len, "%s: [daemon] socket_group: no such group '%s'", path,
			c->socket_group);
		return -ENOENT;
	}
	return 0;
}

/* ---- the main loop's own sources ------------------------------------------------- */

/* on_signal handles the signalfd: SIGHUP reloads, SIGTERM and SIGINT start the drain. */
static void on_signal(struct daemon *d, struct ep_source *src, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)src;
	(void)events;
	while (read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			char text[4096];

			daemon_reload(d, "SIGHUP", text, sizeof(text)); /* it logs what it says */
		} else if (!d->draining) {
			log_info("signal %u: draining in-flight RPCs (up to %llu ms)", si.ssi_signo,
				 (unsigned long long)d->cfg->cfg.drain_timeout_ms);
			d->draining = true;
			sd_notify(0, "STOPPING=1");
			post_all(d, CMD_DRAIN, NULL);
		}
	}
}

/* on_drained counts the workers that reported their drain done. */
static void on_drained(struct daemon *d, struct ep_source *src, uint32_t events)
{
	uint64_t v;

	(void)src;
	(void)events;
	if (read(d->drained_efd, &v, sizeof(v)) == sizeof(v))
		d->num_drained += (unsigned)v;
}

/* ---- start ------------------------------------------------------------------------ */

/*
 * open_loop creates the epoll set and watches the signals on it. Signals arrive on
 * a signalfd in the main loop; workers (which inherit the mask) never see them.
 */
static int open_loop(struct daemon *d, char *err, size_t err_len)
{
	sigset_t mask;
	int ret;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	d->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->sig_fd < 0)
		goto fail;
	d->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (d->ep_fd < 0)
		goto fail;
	d->sig_src.handle = on_signal;
	ret = daemon_watch(d, d->sig_fd, EPOLLIN, &d->sig_src);
	if (ret < 0) {
		errno = -ret;
		goto fail;
	}
	return 0;
fail:
	ret = -errno;
	set_err(err, err_len, "startup: %s", strerror(errno));
	return ret;
}

/* open_tls_state loads the fleet's ticket keys and one strike register per mode. */
static int open_tls_state(struct daemon *d, char *err, size_t err_len)
{
	const struct cfg *c = &d->cfg->cfg;
	bool sealed = false, tls = false;
	char text[512];
	int ret;

	if (c->stek_path[0]) {
		ret = stek_load(c->stek_path, &d->stek, err, err_len);
		if (ret < 0)
			return ret;
		stek_describe(d->stek, text, sizeof(text));
		log_info("STEK %s:\n%s", c->stek_path, text);
	}
	for (size_t i = 0; i < c->num_serves; i++) {
		sealed = sealed || c->serves[i].security == CFG_SEC_SEALED;
		tls = tls || c->serves[i].security != CFG_SEC_PLAIN;
	}
	/* fed unix time; entries must outlive twice the timestamp window */
	if (sealed) {
		d->sealed_replay =
		    replay_new(c->replay_max_entries, 2ull * c->sealed_window_ms * 1000000ull);
		if (!d->sealed_replay)
			goto fail;
	}
	if (tls) {
		d->replay = replay_new(c->replay_max_entries, c->replay_window_ms * 1000000ull);
		if (!d->replay)
			goto fail;
	}
	return 0;
fail:
	ret = -errno;
	set_err(err, err_len, "strike register: %s", strerror(errno));
	return ret;
}

#define PORT_WAIT_MS 5000 /* a previous instance may still be closing its sockets */

/*
 * probe_ports checks that no other process holds a port to serve. A port in use is
 * tried again for up to PORT_WAIT_MS: a restart (stop, then start at once) finds the
 * previous instance's sockets still open while it drains and exits.
 */
static int probe_ports(struct daemon *d, char *err, size_t err_len)
{
	const struct cfg *c = &d->cfg->cfg;
	uint64_t give_up = now_ns() + PORT_WAIT_MS * NS_PER_MS;
	bool said = false;
	char why[512];
	int ret;

	for (size_t i = 0; i < c->num_serves; i++) {
		while ((ret = port_probe(c, c->serves[i].port, why, sizeof(why))) == -EADDRINUSE &&
		       now_ns() < give_up) {
			if (!said)
				log_info(
				    "[serve %s] UDP port %u is in use; waiting up to %u ms for it "
				    "(a previous r2p2d exiting?)",
				    c->serves[i].name, c->serves[i].port, PORT_WAIT_MS);
			said = true;
			usleep(50000);
		}
		if (ret < 0) {
			set_err(err, err_len, "[serve %s] %s", c->serves[i].name, why);
			return ret;
		}
	}
	return 0;
}

/* new_workers creates the workers (not started yet) and the eventfd they report drains on. */
static int new_workers(struct daemon *d, char *err, size_t err_len)
{
	int ret;

	d->drained_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->drained_efd < 0) {
		ret = -errno;
		set_err(err, err_len, "eventfd: %s", strerror(errno));
		return ret;
	}
	d->drained_src.handle = on_drained;
	ret = daemon_watch(d, d->drained_efd, EPOLLIN, &d->drained_src);
	if (ret < 0) {
		set_err(err, err_len, "eventfd: %s", strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < d->num_workers; i++) {
		d->workers[i] = worker_new(i, d->cfg, d->stek, d->replay, d->sealed_replay,
					   d->drained_efd, err, err_len);
		if (!d->workers[i])
			return -EIO;
	}
	return 0;
}

/*
 * setup_backend picks the backend: AF_XDP sockets steered by the XDP program, or
 * the kernel's UDP. `d->backend` says which, and why not xdp.
 */
static int setup_backend(struct daemon *d, char *err, size_t err_len)
{
	const struct cfg *c = &d->cfg->cfg;
	char why[512] = "";

	if (xdpath_setup(c, d->num_workers, &d->xdp, why, sizeof(why)) < 0) {
		set_err(err, err_len, "backend = xdp: %s", why);
		return -EOPNOTSUPP;
	}
	if (d->xdp) {
		xdpath_describe(d->xdp, d->backend, sizeof(d->backend));
		for (unsigned i = 0; i < d->num_workers; i++) {
			unsigned n;
			struct xsk_port **p = xdpath_ports(d->xdp, i, &n);
			if (worker_use_xdp(d->workers[i], p, n, xdpath_ifname(d->xdp), d->workers,
					   d->num_workers, why, sizeof(why)) < 0) {
				set_err(err, err_len, "backend = xdp: %s", why);
				return -EIO;
			}
		}
	} else if (c->backend != CFG_BACKEND_UDP && c->num_serves == 0) {
		/* nothing to steer: a reload that adds a [serve] is refused (reload.c) */
		d->xdp_idle = true;
		snprintf(d->backend, sizeof(d->backend), "udp: %.200s", why);
		log_info("backend = %s: %s; a [serve] added later needs a restart",
			 c->backend == CFG_BACKEND_XDP ? "xdp" : "auto", why);
	} else if (c->backend == CFG_BACKEND_XDP) {
		snprintf(d->backend, sizeof(d->backend), "udp: %.200s", why);
		log_warn("backend = xdp: %s; using the udp backend", why);
	} else if (c->backend == CFG_BACKEND_UDP) {
		snprintf(d->backend, sizeof(d->backend), "udp (backend = udp)");
	} else {
		snprintf(d->backend, sizeof(d->backend), "udp: xdp not used because %.200s", why);
		log_warn("backend = auto picked the udp backend: xdp not used because %s", why);
	}
	return 0;
}

/* start_workers starts every worker's thread; `d->num_started` counts those running. */
static int start_workers(struct daemon *d, char *err, size_t err_len)
{
	for (unsigned i = 0; i < d->num_workers; i++) {
		int ret = worker_start(d->workers[i]);
		if (ret < 0) {
			set_err(err, err_len, "worker %u: %s", i, strerror(-ret));
			return ret;
		}
		d->num_started++;
	}
	return 0;
}

/*
 * enter_sandbox gives up what only set-up needed, before the workers (and their TLS
 * parsers) start: they inherit the reduced capabilities and the system call filter.
 */
static int enter_sandbox(struct daemon *d, char *err, size_t err_len)
{
	const struct cfg *c = &d->cfg->cfg;
	int ret = sandbox_drop_privs(c, d->xdp != NULL, err, err_len);

	return ret < 0 ? ret : sandbox_apply(c, err, err_len);
}

/* alloc_workers makes room for the workers of d->cfg. */
static int alloc_workers(struct daemon *d, char *err, size_t err_len)
{
	d->num_workers = d->cfg->cfg.workers;
	d->workers = calloc(d->num_workers, sizeof(*d->workers));
	if (!d->workers) {
		set_err(err, err_len, "startup: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	return 0;
}

/*
 * daemon_start brings `d`, loaded from d->cfg, up to serving, one step after the
 * other. Returns 0, or a negative errno with a message in `err`; daemon_stop then
 * undoes what was done.
 */
static int daemon_start(struct daemon *d, char *err, size_t err_len)
{
	static int (*const steps[])(struct daemon * d, char *err, size_t err_len) = {
	    open_loop,	   alloc_workers, open_tls_state, probe_ports,	 new_workers,
	    setup_backend, ctl_open,	  metrics_open,	  enter_sandbox, start_workers,
	};
	const struct cfg *c = &d->cfg->cfg;

	log_set_level(c->log_level);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int ret = steps[i](d, err, err_len);
		if (ret < 0)
			return ret;
	}
	d->ready = true;
	log_info("r2p2d %s ready: %u workers, listen %s, %zu services served, %zu called, control "
		 "socket %s, backend %s",
		 R2P2D_VERSION, d->num_workers, c->listen, c->num_serves, c->num_calls,
		 c->socket_path, d->backend);
	sd_notify(0, "READY=1");
	return 0;
}

/* ---- run and stop ---------------------------------------------------------------- */

/*
 * daemon_run serves until every worker has drained. The loop goes on while
 * draining: status keeps answering, new attaches get a clear ESHUTDOWN, and apps
 * that leave are forgotten.
 */
static void daemon_run(struct daemon *d)
{
	while (d->num_drained < d->num_workers) {
		struct epoll_event evs[32];
		int n = epoll_wait(d->ep_fd, evs, 32, -1);
		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct ep_source *src = evs[i].data.ptr;
			src->handle(d, src, evs[i].events);
		}
	}
}

/* daemon_stop stops the workers, then frees whatever daemon_start set up. */
static void daemon_stop(struct daemon *d)
{
	stop_workers(d);
	if (d->ready)
		log_info("r2p2d stopped");
	metrics_close(d);
	ctl_close(d);
	if (d->workers) {
		for (unsigned i = 0; i < d->num_workers; i++)
			worker_free(d->workers[i]);
		free(d->workers);
	}
	xdpath_free(d->xdp); /* after the workers: detaches the program */
	if (d->ep_fd >= 0)
		close(d->ep_fd);
	if (d->sig_fd >= 0)
		close(d->sig_fd);
	if (d->drained_efd >= 0)
		close(d->drained_efd);
	stek_set_put(d->stek);
	replay_free(d->replay);
	replay_free(d->sealed_replay);
	cfg_ref_put(d->cfg);
}

/*
 * warn_unowned warns of each [serve] section of `c` (read from `path`) without an
 * owner when socket_group lets other users connect: any of their apps may then
 * register the service and receive its requests. r2p2d --check and the start say it.
 */
static void warn_unowned(const struct cfg *c, const char *path)
{
	if (!c->socket_group[0])
		return;
	for (size_t i = 0; i < c->num_serves; i++)
		if (c->serves[i].owner == CFG_OWNER_ANY)
			log_warn("%s:%d: [serve %s]: no owner: any app that can connect to the "
				 "control socket (socket_group = %s) may register it and receive "
				 "its requests; set owner = USER or @GROUP",
				 path, c->serves[i].line, c->serves[i].name, c->socket_group);
}

int main(int argc, char **argv)
{
	struct daemon d = {.ep_fd = -1, .sig_fd = -1, .ctl_fd = -1, .drained_efd = -1};
	const char *path = NULL;
	bool check = false;
	char err[1024];
	int ret;

	ret = parse_args(argc, argv, &path, &check);
	if (ret >= 0)
		return ret;
	snprintf(d.cfg_path, sizeof(d.cfg_path), "%s", path);
	d.cfg = load_cfg(path);
	if (!d.cfg)
		return 1;
	/* a missing or unreadable STEK file fails --check as it would fail the start */
	if (cfg_check_files(&d.cfg->cfg, path, err, sizeof(err)) < 0) {
		log_err("%s", err);
		cfg_ref_put(d.cfg);
		return 1;
	}
	warn_unowned(&d.cfg->cfg, path);
	if (check && daemon_check_keys(&d.cfg->cfg, path, err, sizeof(err)) < 0) {
		log_err("%s", err);
		cfg_ref_put(d.cfg);
		return 1;
	}
	if (check) {
		printf("%s: ok (%zu services served, %zu called)\n", path, d.cfg->cfg.num_serves,
		       d.cfg->cfg.num_calls);
		cfg_ref_put(d.cfg);
		return 0;
	}
	ret = daemon_start(&d, err, sizeof(err));
	if (ret < 0)
		log_err("%s", err);
	else
		daemon_run(&d);
	daemon_stop(&d);
	return ret < 0 ? 1 : 0;
}
