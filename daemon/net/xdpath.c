// SPDX-License-Identifier: MIT
/*
 * Setting up the xdp backend (see xdpath.h). Everything that can fail happens
 * here, before the workers start, so `backend = xdp` fails loudly at start-up and
 * `backend = auto` falls back to udp with one log line saying why.
 */
#include "xdpath.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <r2p2/bpf_abi.h>

#include "err.h"
#include "xdp.h"
#include "xsk.h"

struct xdpath {
	char ifname[IF_NAMESIZE];
	bool skb;
	unsigned num_queues, num_workers;
	struct xdp_prog *prog;
	struct xsk_queue *queues[R2P2_MAX_QUEUES];
	struct xsk_port **ports; /* [worker * num_queues + queue] */
};

/* The interface that holds `a` (the listen address), or -ENOENT. */
static int iface_of(const struct r2p2_addr *a, char *out, size_t out_len)
{
	struct ifaddrs *ifs, *i;
	int ret = -ENOENT;

	if (getifaddrs(&ifs) < 0)
		return -errno;
	for (i = ifs; i; i = i->ifa_next) {
		struct r2p2_addr x;
		if (!i->ifa_addr || i->ifa_addr->sa_family != a->family)
			continue;
		memset(&x, 0, sizeof(x));
		if (a->family == AF_INET)
			memcpy(x.addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
		else
			memcpy(x.addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
		if (memcmp(x.addr, a->addr, 16) == 0) {
			snprintf(out, out_len, "%s", i->ifa_name);
			ret = 0;
			break;
		}
	}
	freeifaddrs(ifs);
	return ret;
}

/* Rx queues of the interface, from /sys/class/net/IF/queues/rx-N. */
static unsigned rx_queues(const char *ifname)
{
	char path[128];
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/class/net/%s/queues", ifname);
	d = opendir(path);
	if (!d)
		return 1;
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "rx-", 3) == 0;
	closedir(d);
	return n ? n : 1;
}

static bool is_any(const struct r2p2_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->addr, zero, 16) == 0;
}

void xdpath_free(struct xdpath *x)
{
	if (!x)
		return;
	for (unsigned i = 0; x->ports && i < x->num_workers * x->num_queues; i++)
		xsk_port_free(x->ports[i]);
	for (unsigned q = 0; q < x->num_queues; q++)
		xsk_queue_free(x->queues[q]);
	free(x->ports);
	xdp_close(x->prog);
	free(x);
}

/* pick_iface names the interface the listen address lives on, unless configured. */
static int pick_iface(const struct cfg *c, struct xdpath *x, char *why, size_t why_len)
{
	if (c->interface[0]) {
		snprintf(x->ifname, sizeof(x->ifname), "%.15s", c->interface); /* checked < 16 */
		return 0;
	}
	if (is_any(&c->listen_addr)) {
		set_err(
		    why, why_len,
		    "listen = %s names no interface; set [daemon] interface or a listen address",
		    c->listen);
		return -EINVAL;
	}
	if (iface_of(&c->listen_addr, x->ifname, sizeof(x->ifname)) < 0) {
		set_err(why, why_len, "no interface holds the listen address %s", c->listen);
		return -ENODEV;
	}
	return 0;
}

/* open_queue binds one socket per worker to rx queue `q` and lets the program steer it. */
static int open_queue(struct xdpath *x, unsigned q, char *why, size_t why_len)
{
	struct xsk_port_config pc;
	int ret;

	xsk_port_config_default(&pc);
	x->queues[q] = xsk_queue_new(x->ifname, q, &pc, why, why_len);
	if (!x->queues[q])
		return errno ? -errno : -EIO;
	for (unsigned w = 0; w < x->num_workers; w++) {
		struct xsk_port *p = xsk_queue_add_port(x->queues[q], why, why_len);

		if (!p)
			return errno ? -errno : -EIO;
		x->ports[w * x->num_queues + q] = p;
		ret = xdp_xsk_register(x->prog, q, w, xsk_port_fd(p));
		if (ret < 0) {
			set_err(why, why_len, "%s queue %u: XSKMAP: %s", x->ifname, q,
				strerror(-ret));
			return ret;
		}
	}
	ret = xdp_qconf_set(x->prog, q, x->num_workers);
	if (ret < 0)
		set_err(why, why_len, "%s queue %u: %s", x->ifname, q, strerror(-ret));
	return ret;
}

/* open_all attaches the program to `x`'s interface, then opens every rx queue. */
static int open_all(const struct cfg *c, struct xdpath *x, char *why, size_t why_len)
{
	uint16_t ports[CFG_MAX_SERVICES];
	int ret;

	for (size_t i = 0; i < c->num_serves; i++)
		ports[i] = c->serves[i].port;
	/* Sockets first, program after: steering starts only once every slot has one. */
	ret = xdp_open(x->ifname, x->skb ? XDP_ATTACH_SKB : XDP_ATTACH_NATIVE, ports, c->num_serves,
		       0, &x->prog, why, why_len);
	if (ret < 0)
		return ret;
	x->ports = calloc((size_t)x->num_workers * x->num_queues, sizeof(*x->ports));
	if (!x->ports) {
		set_err(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (unsigned q = 0; q < x->num_queues; q++) {
		ret = open_queue(x, q, why, why_len);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int xdpath_setup(const struct cfg *c, unsigned num_workers, struct xdpath **out, char *why,
		 size_t why_len)
{
	struct xdpath *x = NULL;
	int ret;

	*out = NULL;
	if (c->backend == CFG_BACKEND_UDP)
		return 0;
	if (c->num_serves == 0) {
		/* Not a failure even with backend = xdp: calls go out and come back through
		 * the kernel's UDP sockets; only served ports are steered. */
		set_err(why, why_len, "no service is served here, nothing to steer");
		return 0;
	}
	if (num_workers > R2P2_XSK_PER_QUEUE) {
		set_err(why, why_len, "%u workers, but at most %u AF_XDP sockets per queue",
			num_workers, R2P2_XSK_PER_QUEUE);
		ret = -EINVAL;
		goto no_xdp;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		set_err(why, why_len, "out of memory");
		ret = -ENOMEM;
		goto no_xdp;
	}
	ret = pick_iface(c, x, why, why_len);
	if (ret < 0)
		goto no_xdp;
	x->skb = c->xdp_skb;
	x->num_workers = num_workers;
	x->num_queues = rx_queues(x->ifname);
	if (x->num_queues > R2P2_MAX_QUEUES)
		x->num_queues = R2P2_MAX_QUEUES;
	ret = open_all(c, x, why, why_len);
	if (ret < 0)
		goto no_xdp;
	*out = x;
	return 0;
no_xdp:
	xdpath_free(x);
	return c->backend == CFG_BACKEND_XDP ? ret : 0;
}

struct xsk_port **xdpath_ports(struct xdpath *x, unsigned w, unsigned *out_num)
{
	*out_num = x->num_queues;
	return &x->ports[w * x->num_queues];
}

const char *xdpath_ifname(const struct xdpath *x)
{
	return x->ifname;
}

void xdpath_describe(const struct xdpath *x, char *buf, size_t len)
{
	snprintf(buf, len, "xdp on %s (%s, %s, %u rx queue%s, %u socket%s per queue)", x->ifname,
		 x->skb ? "skb mode" : "native",
		 xsk_port_zerocopy(x->ports[0]) ? "zero-copy" : "copy", x->num_queues,
		 x->num_queues == 1 ? "" : "s", x->num_workers, x->num_workers == 1 ? "" : "s");
}

int xdpath_stats(struct xdpath *x, struct r2p2_stats *out)
{
	return xdp_stats_sum(x->prog, out);
}

int xdpath_set_ports(struct xdpath *x, const uint16_t *ports, size_t n, char *why, size_t why_len)
{
	return xdp_ports_set(x->prog, ports, n, why, why_len);
}
