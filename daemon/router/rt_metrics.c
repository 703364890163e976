// SPDX-License-Identifier: MIT
/*
 * rt_metrics.c: r2p2-router's Prometheus endpoint (`metrics = ADDR:PORT` in [daemon]).
 * A scrape reads the maps as `r2p2-router --status` does (rt_status_prom), through the
 * descriptors the router holds rather than the pins (which a router that switched to
 * `user` may not reach): the kernel serialises those reads, so libmicrohttpd may answer
 * on a thread of its own and the router's poll loop is never held up by a slow scraper.
 * The port is bound during set-up and the thread started after the privileges are
 * dropped, so that it never holds more than the main thread. Only GET /metrics is
 * answered; connections are bounded in number, per address and in time.
 */
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mhttp.h"

static struct MHD_Daemon *mhd;
static struct rt_maps maps;
static int listen_fd = -1; /* bound by rt_metrics_listen; libmicrohttpd's once started */
static char where[32];	   /* ADDR:PORT, for the log */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **state)
{
	static const char not_found[] = "r2p2-router serves GET /metrics only\n";
	char *text = NULL;
	size_t len = 0;
	enum MHD_Result ret;
	FILE *f;

	(void)cls;
	(void)version;
	(void)upload;
	if (mhttp_reading(state, conn, upload_len))
		return MHD_YES;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 || strcmp(url, "/metrics") != 0)
		return mhttp_reply(conn,
				   strcmp(method, MHD_HTTP_METHOD_GET) ? MHD_HTTP_METHOD_NOT_ALLOWED
								       : MHD_HTTP_NOT_FOUND,
				   not_found, sizeof(not_found) - 1, "text/plain");
	f = open_memstream(&text, &len);
	if (!f)
		return MHD_NO;
	if (rt_status_prom(&maps, f) != 0 || fflush(f) != 0) {
		fclose(f);
		free(text);
		return MHD_NO;
	}
	fclose(f);
	ret = mhttp_reply(conn, MHD_HTTP_OK, text, len, "text/plain; version=0.0.4");
	free(text);
	return ret;
}

int rt_metrics_listen(const struct rt_config *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char addr[INET_ADDRSTRLEN];
	int one = 1;

	if (!c->has_metrics)
		return 0;
	sa.sin_addr.s_addr = c->metrics_addr;
	sa.sin_port = c->metrics_port;
	inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr));
	snprintf(where, sizeof(where), "%s:%u", addr, ntohs(c->metrics_port));
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(listen_fd, 16)) {
		log_err("metrics = %s: cannot listen there: %s", where, strerror(errno));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		return -1;
	}
	return 0;
}

int rt_metrics_start(const struct rt_maps *m)
{
	if (listen_fd < 0)
		return 0;
	maps = *m;
	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
			       on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhttp_log, NULL,
			       MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
			       16u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 4u,
			       MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
	if (!mhd) {
		log_err("metrics = %s: cannot start the endpoint", where);
		return -1;
	}
	listen_fd = -1; /* closed by MHD_stop_daemon */
	log_info("metrics: Prometheus endpoint on http://%s/metrics", where);
	return 0;
}

void rt_metrics_stop(void)
{
	if (mhd)
		MHD_stop_daemon(mhd);
	mhd = NULL;
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
}
