// SPDX-License-Identifier: MIT
/*
 * r2p2d: the main thread. It loads the config, starts the workers, serves the
 * control socket (app attach, registration, status) and handles signals:
 * SIGTERM/SIGINT drain in-flight RPCs then exit, SIGHUP reloads the config.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "ctl.h"
#include "log.h"
#include "replay.h"
#include "sealed.h"
#include "stek.h"
#include "xdpath.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: r2p2d --config PATH [--check]\n"
		   "  -c, --config PATH  configuration file (see docs/OPERATIONS.md)\n"
		   "  -k, --check        parse the configuration, report errors, and exit\n"
		   "  -h, --help         this text\n");
}

static struct cfg_ref *load_cfg(const char *path)
{
	char err[512];
	struct cfg_ref *r = cfg_ref_load(path, err, sizeof(err));

	if (!r)
		log_err("%s", err);
	return r;
}

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

/* stop_workers stops and joins the first `n` workers (those started). */
static void stop_workers(struct daemon *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct cmd *c = calloc(1, sizeof(*c));
		if (!c)
			abort(); /* a worker that never stops would hang the exit */
		c->type = CMD_STOP;
		worker_post(d->workers[i], c);
	}
	for (unsigned i = 0; i < n; i++)
		worker_join(d->workers[i]);
}

static void reload(struct daemon *d)
{
	struct cfg_ref *n;
	const struct cfg *o = &d->cfg->cfg;

	sd_notify(0, "RELOADING=1");
	log_info("SIGHUP: reloading %s", d->cfg_path);
	n = load_cfg(d->cfg_path);
	if (!n) {
		log_err("reload failed; keeping the running configuration");
		sd_notify(0, "READY=1");
		return;
	}
	if (n->cfg.workers != o->workers || memcmp(&n->cfg.listen_addr, &o->listen_addr,
						   sizeof(o->listen_addr)) != 0 ||
	    strcmp(n->cfg.socket_path, o->socket_path) != 0 || n->cfg.max_msg_len != o->max_msg_len ||
	    n->cfg.ring_entries != o->ring_entries || n->cfg.arena_size != o->arena_size ||
	    strcmp(n->cfg.socket_group, o->socket_group) != 0)
		log_warn("reload: workers, listen, socket, socket_group, max_message, ring_entries "
			 "and arena_size take effect at the next restart; the rest applies now");
	/* New service ports must be free before any worker binds them. */
	for (size_t i = 0; i < n->cfg.num_serves; i++) {
		char err[256];
		if (cfg_find_serve_port(o, n->cfg.serves[i].port))
			continue;
		if (port_probe(o, n->cfg.serves[i].port, err, sizeof(err)) < 0) {
			log_err("reload: [serve %s] %s; keeping the running configuration",
				n->cfg.serves[i].name, err);
			cfg_ref_put(n);
			sd_notify(0, "READY=1");
			return;
		}
	}
	/* Keep what the running workers and apps were built for. */
	n->cfg.workers = o->workers;
	n->cfg.listen_addr = o->listen_addr;
	memcpy(n->cfg.listen, o->listen, sizeof(o->listen));
	memcpy(n->cfg.socket_path, o->socket_path, sizeof(o->socket_path));
	memcpy(n->cfg.socket_group, o->socket_group, sizeof(o->socket_group));
	n->cfg.max_msg_len = o->max_msg_len;
	n->cfg.ring_entries = o->ring_entries;
	n->cfg.arena_size = o->arena_size;
	log_set_level(n->cfg.log_level);
	post_all(d, CMD_NEW_CFG, n);
	cfg_ref_put(d->cfg);
	d->cfg = n;
	log_info("reload done: %zu services served, %zu called", n->cfg.num_serves,
		 n->cfg.num_calls);
	sd_notify(0, "READY=1");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check", no_argument, NULL, 'k'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct daemon d = {.ctl_fd = -1, .drained_efd = -1};
	const char *path = NULL;
	bool check = false;
	char err[512];
	int opt, ep = -1, sfd = -1, ret = 1;
	sigset_t mask;

	while ((opt = getopt_long(argc, argv, "c:kh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	snprintf(d.cfg_path, sizeof(d.cfg_path), "%s", path);
	d.cfg = load_cfg(path);
	if (!d.cfg)
		return 1;
	if (check) {
		printf("%s: ok (%zu services served, %zu called)\n", path, d.cfg->cfg.num_serves,
		       d.cfg->cfg.num_calls);
		cfg_ref_put(d.cfg);
		return 0;
	}
	log_set_level(d.cfg->cfg.log_level);

	/* Signals arrive on a signalfd in the main loop; workers never see them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	d.num_workers = d.cfg->cfg.workers;
	d.workers = calloc(d.num_workers, sizeof(*d.workers));
	if (sfd < 0 || !d.workers) {
		log_err("startup: %s", strerror(errno));
		goto out;
	}
	/* tls: the fleet's ticket keys, and one strike register for all workers. */
	if (d.cfg->cfg.stek_path[0]) {
		if (stek_load(d.cfg->cfg.stek_path, &d.stek, err, sizeof(err)) < 0) {
			log_err("%s", err);
			goto out;
		}
		stek_describe(d.stek, err, sizeof(err));
		log_info("STEK %s:\n%s", d.cfg->cfg.stek_path, err);
	}
	for (size_t i = 0; i < d.cfg->cfg.num_serves; i++) {
		if (d.cfg->cfg.serves[i].security == CFG_SEC_SEALED && !d.sealed_replay) {
			/* fed unix time; entries must outlive twice the timestamp window */
			d.sealed_replay = replay_new(d.cfg->cfg.replay_max_entries,
						     2ull * d.cfg->cfg.sealed_window_ms * 1000000ull);
			if (!d.sealed_replay) {
				log_err("strike register: %s", strerror(errno));
				goto out;
			}
		}
		if (d.cfg->cfg.serves[i].security != CFG_SEC_PLAIN && !d.replay) {
			d.replay = replay_new(d.cfg->cfg.replay_max_entries,
					      d.cfg->cfg.replay_window_ms * 1000000ull);
			if (!d.replay) {
				log_err("strike register: %s", strerror(errno));
				goto out;
			}
		}
	}
	for (size_t i = 0; i < d.cfg->cfg.num_serves; i++) {
		if (port_probe(&d.cfg->cfg, d.cfg->cfg.serves[i].port, err, sizeof(err)) < 0) {
			log_err("[serve %s] %s", d.cfg->cfg.serves[i].name, err);
			goto out;
		}
	}
	d.drained_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.drained_efd < 0) {
		log_err("eventfd: %s", strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < d.num_workers; i++) {
		d.workers[i] = worker_new(i, d.cfg, d.stek, d.replay, d.sealed_replay,
					  d.drained_efd, err, sizeof(err));
		if (!d.workers[i]) {
			log_err("%s", err);
			goto out;
		}
	}
	/* The backend: AF_XDP sockets steered by the XDP program, or the kernel's UDP. */
	char backend[256];
	if (xdpath_setup(&d.cfg->cfg, d.num_workers, &d.xdp, err, sizeof(err)) < 0) {
		log_err("backend = xdp: %s", err);
		goto out;
	}
	if (d.xdp) {
		xdpath_describe(d.xdp, backend, sizeof(backend));
		for (unsigned i = 0; i < d.num_workers; i++) {
			unsigned n;
			struct xsk_port **p = xdpath_ports(d.xdp, i, &n);
			if (worker_use_xdp(d.workers[i], p, n, xdpath_ifname(d.xdp), d.workers,
					   d.num_workers, err, sizeof(err)) < 0) {
				log_err("backend = xdp: %s", err);
				goto out;
			}
		}
	} else if (d.cfg->cfg.backend == CFG_BACKEND_XDP) {
		snprintf(backend, sizeof(backend), "udp: %s", err);
		log_warn("backend = xdp: %s; using the udp backend", err);
	} else if (d.cfg->cfg.backend == CFG_BACKEND_UDP) {
		snprintf(backend, sizeof(backend), "udp (backend = udp)");
	} else {
		snprintf(backend, sizeof(backend), "udp: xdp not used because %s", err);
		log_warn("backend = auto picked the udp backend: xdp not used because %s", err);
	}
	d.ctl_fd = ctl_listen(&d.cfg->cfg, err, sizeof(err));
	if (d.ctl_fd < 0) {
		log_err("%s", err);
		goto out;
	}
	for (unsigned i = 0; i < d.num_workers; i++) {
		int r = worker_start(d.workers[i]);
		if (r < 0) {
			log_err("worker %u: %s", i, strerror(-r));
			stop_workers(&d, i);
			goto out;
		}
	}

	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	ev.data.u64 = 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.u64 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, d.ctl_fd, &ev);
	ev.data.u64 = 3;
	epoll_ctl(ep, EPOLL_CTL_ADD, d.drained_efd, &ev);

	snprintf(d.backend, sizeof(d.backend), "%s", backend);
	log_info("r2p2d %s ready: %u workers, listen %s, %zu services served, %zu called, control "
		 "socket %s, backend %s",
		 R2P2D_VERSION, d.num_workers, d.cfg->cfg.listen, d.cfg->cfg.num_serves,
		 d.cfg->cfg.num_calls, d.cfg->cfg.socket_path, backend);
	sd_notify(0, "READY=1");

	/* The loop goes on while draining: status keeps answering, new attaches get a
	 * clear ESHUTDOWN, and apps that leave are forgotten. */
	unsigned drained = 0;
	while (drained < d.num_workers) {
		struct epoll_event evs[32];
		int n = epoll_wait(ep, evs, 32, -1);
		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == 1) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						reload(&d);
					} else if (!d.draining) {
						log_info("signal %u: draining in-flight RPCs (up to %llu ms)",
							 si.ssi_signo,
							 (unsigned long long)d.cfg->cfg.drain_timeout_ms);
						d.draining = true;
						sd_notify(0, "STOPPING=1");
						post_all(&d, CMD_DRAIN, NULL);
					}
				}
			} else if (evs[i].data.u64 == 3) {
				uint64_t v;
				if (read(d.drained_efd, &v, sizeof(v)) == sizeof(v))
					drained += (unsigned)v;
			} else if (evs[i].data.u64 == 2) {
				int fd;
				while ((fd = accept4(d.ctl_fd, NULL, NULL,
						     SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
					struct conn *c = conn_new(&d, fd);
					if (!c) {
						close(fd);
						continue;
					}
					struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP,
								  .data.ptr = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
			} else {
				struct conn *c = evs[i].data.ptr;
				int r = 0;
				if (evs[i].events & EPOLLIN)
					r = conn_input(&d, c);
				if (r < 0 || (evs[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
					conn_close(&d, c);
				}
			}
		}
	}

	stop_workers(&d, d.num_workers);
	ret = 0;
	log_info("r2p2d stopped");
out:
	while (d.conns)
		conn_close(&d, d.conns);
	if (d.workers) {
		for (unsigned i = 0; i < d.num_workers; i++)
			worker_free(d.workers[i]);
		free(d.workers);
	}
	xdpath_free(d.xdp); /* after the workers: detaches the program */
	if (d.ctl_fd >= 0) {
		close(d.ctl_fd);
		unlink(d.cfg->cfg.socket_path);
	}
	if (ep >= 0)
		close(ep);
	if (sfd >= 0)
		close(sfd);
	if (d.drained_efd >= 0)
		close(d.drained_efd);
	stek_set_put(d.stek);
	replay_free(d.replay);
	replay_free(d.sealed_replay);
	cfg_ref_put(d.cfg);
	return ret;
}
