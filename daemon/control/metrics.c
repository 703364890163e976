// SPDX-License-Identifier: MIT
/*
 * metrics.c: the Prometheus endpoint (`metrics = ADDR:PORT` in [daemon]), served by
 * libmicrohttpd on the main thread.
 *
 * libmicrohttpd runs without threads of its own (MHD_USE_EPOLL): its epoll set joins
 * the main loop, which calls MHD_run when a connection is ready and once a second
 * from a timer (connection timeouts). So a scrape formats the status exactly as
 * `r2p2ctl status` does, on the thread that owns the daemon's state, and takes no
 * lock. Only GET /metrics is answered; a bounded number of connections, each closed
 * after its answer or after a few idle seconds, keeps a slow client from holding it.
 */
#include "metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "mhttp.h"

#define METRICS_BUF (1u << 20) /* every metric of 64 workers and services fits */
#define METRICS_MAX_CONNS 16
#define METRICS_MAX_PER_IP 4
#define METRICS_TIMEOUT_S 5

struct metrics {
	struct daemon *d;
	struct MHD_Daemon *mhd;
	int timer_fd;
	struct ep_source mhd_src, timer_src;
	char *buf;
	uint64_t scrapes;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **state)
{
	static const char not_found[] = "r2p2d serves GET /metrics only\n";
	struct metrics *m = cls;
	size_t n;

	(void)version;
	(void)upload;
	if (mhttp_reading(state, m, upload_len))
		return MHD_YES;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return mhttp_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_found,
				   sizeof(not_found) - 1, "text/plain");
	if (strcmp(url, "/metrics") != 0)
		return mhttp_reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
				   "text/plain");
	n = daemon_status(m->d, STATUS_PROM, m->buf, METRICS_BUF);
	if (n == 0)
		return mhttp_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n", 14,
				   "text/plain");
	m->scrapes++;
	return mhttp_reply(conn, MHD_HTTP_OK, m->buf, n, "text/plain; version=0.0.4");
}

static void on_mhd(struct daemon *d, struct ep_source *src, uint32_t events)
{
	struct metrics *m = d->metrics;

	(void)src;
	(void)events;
	MHD_run(m->mhd);
}

static void on_timer(struct daemon *d, struct ep_source *src, uint32_t events)
{
	struct metrics *m = d->metrics;
	uint64_t ticks;

	(void)src;
	(void)events;
	if (read(m->timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn("metrics: timer: %s", strerror(errno));
	MHD_run(m->mhd); /* closes connections idle for METRICS_TIMEOUT_S */
}

/* start_mhd starts libmicrohttpd on `addr`, without threads of its own. */
static struct MHD_Daemon *start_mhd(struct metrics *m, const struct r2p2_addr *addr)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	memset(&ss, 0, sizeof(ss));
	if (addr->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, addr->addr, 16);
		s6->sin6_port = addr->port;
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, addr->addr, 4);
		s4->sin_port = addr->port;
	}
	/* the logger first, so that every complaint about the rest goes to our log */
	return MHD_start_daemon(flags, ntohs(addr->port), NULL, NULL, on_request, m,
				MHD_OPTION_EXTERNAL_LOGGER, mhttp_log, NULL, MHD_OPTION_SOCK_ADDR,
				(struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)METRICS_MAX_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned)METRICS_MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)METRICS_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				(size_t)(32 * 1024), MHD_OPTION_END);
}

int metrics_open(struct daemon *d, char *err, size_t err_len)
{
	const struct cfg *c = &d->cfg->cfg;
	struct itimerspec second = {.it_interval = {1, 0}, .it_value = {1, 0}};
	const union MHD_DaemonInfo *info;
	struct metrics *m;
	char where[64];
	int ret = -ENOMEM;

	if (!c->has_metrics)
		return 0;
	cfg_format_addr(&c->metrics, where, sizeof(where));
	m = calloc(1, sizeof(*m));
	if (!m || !(m->buf = malloc(METRICS_BUF)))
		goto fail;
	m->d = d;
	m->timer_fd = -1;
	d->metrics = m;
	m->mhd = start_mhd(m, &c->metrics);
	if (!m->mhd) {
		ret = errno ? -errno : -EADDRINUSE;
		snprintf(err, err_len, "metrics = %s: cannot listen there (%s)", where,
			 strerror(-ret));
		goto fail;
	}
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	m->mhd_src.handle = on_mhd;
	m->timer_src.handle = on_timer;
	if (!info || m->timer_fd < 0 || timerfd_settime(m->timer_fd, 0, &second, NULL) < 0 ||
	    (ret = daemon_watch(d, info->epoll_fd, EPOLLIN, &m->mhd_src)) < 0 ||
	    (ret = daemon_watch(d, m->timer_fd, EPOLLIN, &m->timer_src)) < 0) {
		ret = ret < 0 ? ret : -errno;
		snprintf(err, err_len, "metrics = %s: %s", where, strerror(-ret));
		goto fail;
	}
	log_info("metrics: Prometheus endpoint on http://%s/metrics", where);
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, err_len, "metrics: %s", strerror(ENOMEM));
	metrics_close(d);
	return ret;
}

void metrics_close(struct daemon *d)
{
	struct metrics *m = d->metrics;

	if (!m)
		return;
	if (m->timer_fd >= 0) {
		daemon_unwatch(d, m->timer_fd);
		close(m->timer_fd);
	}
	if (m->mhd) {
		const union MHD_DaemonInfo *info =
		    MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);

		if (info)
			daemon_unwatch(d, info->epoll_fd);
		MHD_stop_daemon(m->mhd);
	}
	free(m->buf);
	free(m);
	d->metrics = NULL;
}
