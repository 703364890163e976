/* SPDX-License-Identifier: MIT */
/*
 * Next-hop resolution over rtnetlink with libmnl (see neigh.h).
 */
#include "neigh.h"
#include "clock.h"
#include "err.h"

#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>

#define NS_PER_MS 1000000ull
#define PENDING_REQUERY_NS (200 * NS_PER_MS) /* a PENDING entry asks the kernel again */
#define NEGATIVE_TTL_NS (1000 * NS_PER_MS)   /* no route / FAILED are believed this long */
#define STALE_RECHECK_NS (5000 * NS_PER_MS)  /* a STALE entry is re-verified this often */
#define QUERY_TIMEOUT_MS 1000

enum entry_state { E_EMPTY = 0, E_OK, E_PENDING, E_FAILED, E_NOROUTE };

struct entry {
	uint8_t state;	 /* enum entry_state */
	bool stale;	 /* E_OK from a NUD_STALE neighbour */
	uint16_t family; /* of `dst` */
	uint16_t nh_family;
	uint8_t dst[16];
	uint8_t nh[16];	 /* next hop: gateway or dst */
	uint8_t src[16]; /* preferred source, family `family` */
	uint8_t mac[6];
	uint64_t stamp_ns;   /* when stored or last changed */
	uint64_t trigger_ns; /* last trigger */
	uint64_t age;	     /* insertion order, for replacement */
};

struct neigh {
	struct mnl_socket *q;  /* queries, blocking with a timeout */
	struct mnl_socket *ev; /* notifications, non-blocking */
	unsigned q_portid;
	unsigned seq;
	bool offline;
	unsigned ifindex;
	char ifname[IF_NAMESIZE];
	uint8_t mac[6];
	uint64_t age;
	struct neigh_stats stats;
	struct entry cache[NEIGH_CACHE_SETS][NEIGH_CACHE_WAYS];
	uint8_t buf[32768];
};

static size_t alen(uint16_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* ---- pure parsing ------------------------------------------------------------------ */

/* check_msg validates the header of `nlh` against the `len` bytes available and the
 * family header size `hdr_len`. */
static int check_msg(const struct nlmsghdr *nlh, size_t len, size_t hdr_len)
{
	if (!nlh || len < sizeof(*nlh) || len > INT32_MAX || !mnl_nlmsg_ok(nlh, (int)len))
		return -EBADMSG;
	/* attributes are walked up to the aligned end: it must be inside `len` too */
	if (nlh->nlmsg_len < mnl_nlmsg_size(hdr_len) || MNL_ALIGN(nlh->nlmsg_len) > len)
		return -EBADMSG;
	return 0;
}

/* copy_addr copies attribute `a` into `out` when it holds exactly an address of `family`. */
static int copy_addr(const struct nlattr *a, uint16_t family, uint8_t out[16])
{
	if (mnl_attr_get_payload_len(a) != alen(family))
		return -EBADMSG;
	memset(out, 0, 16);
	memcpy(out, mnl_attr_get_payload(a), alen(family));
	return 0;
}

int neigh_parse_route(const struct nlmsghdr *nlh, size_t len, struct neigh_route *out)
{
	memset(out, 0, sizeof(*out));
	int ret = check_msg(nlh, len, sizeof(struct rtmsg));
	if (ret)
		return ret;
	if (nlh->nlmsg_type != RTM_NEWROUTE && nlh->nlmsg_type != RTM_DELROUTE)
		return -ENOMSG;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6)
		return -ENOMSG;
	out->family = rtm->rtm_family;
	out->type = rtm->rtm_type;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*rtm))
	{
		switch (mnl_attr_get_type(a)) {
		case RTA_OIF:
			if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
				return -EBADMSG;
			out->oif = mnl_attr_get_u32(a);
			break;
		case RTA_GATEWAY:
			if (copy_addr(a, out->family, out->gw))
				return -EBADMSG;
			out->has_gw = true;
			out->gw_family = out->family;
			break;
		case RTA_VIA: { /* an IPv4 route through an IPv6 next hop (RFC 5549) */
			size_t plen = mnl_attr_get_payload_len(a);
			const struct rtvia *via = mnl_attr_get_payload(a);
			if (plen < sizeof(*via) ||
			    (via->rtvia_family != AF_INET && via->rtvia_family != AF_INET6) ||
			    plen - sizeof(*via) != alen(via->rtvia_family))
				return -EBADMSG;
			memset(out->gw, 0, 16);
			memcpy(out->gw, via->rtvia_addr, alen(via->rtvia_family));
			out->has_gw = true;
			out->gw_family = via->rtvia_family;
			break;
		}
		case RTA_PREFSRC:
			if (copy_addr(a, out->family, out->src))
				return -EBADMSG;
			out->has_src = true;
			break;
		default:
			break;
		}
	}
	/* mnl_attr_for_each stops at the first attribute that does not fit: make sure
	 * it consumed the whole message, so a truncated one is refused. */
	if ((const char *)a < (const char *)mnl_nlmsg_get_payload_tail(nlh))
		return -EBADMSG;
	return 0;
}

int neigh_parse_neigh(const struct nlmsghdr *nlh, size_t len, struct neigh_msg *out)
{
	memset(out, 0, sizeof(*out));
	int ret = check_msg(nlh, len, sizeof(struct ndmsg));
	if (ret)
		return ret;
	if (nlh->nlmsg_type != RTM_NEWNEIGH && nlh->nlmsg_type != RTM_DELNEIGH)
		return -ENOMSG;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6)
		return -ENOMSG;
	out->deleted = nlh->nlmsg_type == RTM_DELNEIGH;
	out->family = ndm->ndm_family;
	out->ifindex = ndm->ndm_ifindex > 0 ? (unsigned)ndm->ndm_ifindex : 0;
	out->state = ndm->ndm_state;
	out->flags = ndm->ndm_flags;
	bool has_dst = false;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ndm))
	{
		switch (mnl_attr_get_type(a)) {
		case NDA_DST:
			if (copy_addr(a, out->family, out->dst))
				return -EBADMSG;
			has_dst = true;
			break;
		case NDA_LLADDR:
			/* Ethernet only; other link types are not ours to transmit on */
			if (mnl_attr_get_payload_len(a) == 6) {
				memcpy(out->lladdr, mnl_attr_get_payload(a), 6);
				out->has_lladdr = true;
			}
			break;
		default:
			break;
		}
	}
	if ((const char *)a < (const char *)mnl_nlmsg_get_payload_tail(nlh))
		return -EBADMSG;
	return has_dst ? 0 : -EBADMSG;
}

/* ---- the cache --------------------------------------------------------------------- */

static unsigned hash_addr(uint16_t family, const uint8_t *addr)
{
	uint32_t h = 2166136261u ^ family;
	for (size_t i = 0; i < alen(family); i++)
		h = (h ^ addr[i]) * 16777619u;
	return (h ^ (h >> 16)) % NEIGH_CACHE_SETS;
}

static struct entry *find(struct neigh *n, const struct r2p2_addr *dst)
{
	struct entry *set = n->cache[hash_addr(dst->family, dst->addr)];
	for (int w = 0; w < NEIGH_CACHE_WAYS; w++)
		if (set[w].state != E_EMPTY && set[w].family == dst->family &&
		    !memcmp(set[w].dst, dst->addr, alen(dst->family)))
			return &set[w];
	return NULL;
}

/* slot returns the entry for `dst`, replacing an empty or the oldest way. */
static struct entry *slot(struct neigh *n, const struct r2p2_addr *dst)
{
	struct entry *e = find(n, dst);
	if (e)
		return e;
	struct entry *set = n->cache[hash_addr(dst->family, dst->addr)];
	e = &set[0];
	for (int w = 0; w < NEIGH_CACHE_WAYS; w++) {
		if (set[w].state == E_EMPTY) {
			e = &set[w];
			break;
		}
		if (set[w].age < e->age)
			e = &set[w];
	}
	memset(e, 0, sizeof(*e));
	e->family = dst->family;
	memcpy(e->dst, dst->addr, alen(dst->family));
	e->age = ++n->age;
	return e;
}

void neigh_flush(struct neigh *n)
{
	memset(n->cache, 0, sizeof(n->cache));
	n->stats.flushes++;
}

#define NUD_USABLE (NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY)

/* entry_from_neigh sets `e`'s resolution state from the kernel's neighbour entry. */
static int entry_from_neigh(struct entry *e, const struct neigh_msg *nm, uint64_t now)
{
	e->stamp_ns = now;
	if (nm && !nm->deleted && nm->has_lladdr && (nm->state & NUD_USABLE)) {
		e->state = E_OK;
		e->stale = (nm->state & NUD_STALE) != 0;
		memcpy(e->mac, nm->lladdr, 6);
		return 0;
	}
	if (nm && !nm->deleted && (nm->state & NUD_FAILED)) {
		e->state = E_FAILED;
		return -EHOSTUNREACH;
	}
	e->state = E_PENDING;
	return -EAGAIN;
}

int neigh_learn(struct neigh *n, const struct r2p2_addr *dst, const struct neigh_route *rt,
		const struct neigh_msg *nm, uint64_t now_ns)
{
	if (dst->family != AF_INET && dst->family != AF_INET6)
		return -EAFNOSUPPORT;
	struct entry *e = slot(n, dst);
	e->stamp_ns = now_ns;
	if (!rt || rt->family != dst->family || rt->type != RTN_UNICAST || rt->oif != n->ifindex) {
		e->state = E_NOROUTE;
		return -ENETUNREACH;
	}
	if (rt->has_gw) {
		e->nh_family = rt->gw_family;
		memcpy(e->nh, rt->gw, 16);
	} else {
		e->nh_family = dst->family;
		memset(e->nh, 0, 16);
		memcpy(e->nh, dst->addr, alen(dst->family));
	}
	if (rt->has_src)
		memcpy(e->src, rt->src, 16);
	/* a neighbour entry of another next hop or interface says nothing about ours */
	if (nm && (nm->family != e->nh_family || nm->ifindex != n->ifindex ||
		   memcmp(nm->dst, e->nh, alen(e->nh_family))))
		nm = NULL;
	return entry_from_neigh(e, nm, now_ns);
}

int neigh_apply(struct neigh *n, const struct nlmsghdr *nlh, size_t len)
{
	if (len >= sizeof(*nlh) &&
	    (nlh->nlmsg_type == RTM_NEWROUTE || nlh->nlmsg_type == RTM_DELROUTE)) {
		struct neigh_route rt;
		int ret = neigh_parse_route(nlh, len, &rt);
		if (ret == -ENOMSG)
			return 0;
		if (ret)
			return ret;
		neigh_flush(n);
		n->stats.events++;
		return 1;
	}
	struct neigh_msg nm;
	int ret = neigh_parse_neigh(nlh, len, &nm);
	if (ret == -ENOMSG)
		return 0;
	if (ret)
		return ret;
	if (nm.ifindex != n->ifindex)
		return 0;
	uint64_t now = now_ns();
	int hit = 0;
	for (int s = 0; s < NEIGH_CACHE_SETS; s++) {
		for (int w = 0; w < NEIGH_CACHE_WAYS; w++) {
			struct entry *e = &n->cache[s][w];
			if (e->state == E_EMPTY || e->state == E_NOROUTE ||
			    e->nh_family != nm.family || memcmp(e->nh, nm.dst, alen(nm.family)))
				continue;
			if (nm.deleted)
				e->state = E_EMPTY; /* ask the kernel again next time */
			else
				entry_from_neigh(e, &nm, now);
			hit = 1;
		}
	}
	n->stats.events++;
	return hit;
}

/* ---- rtnetlink ---------------------------------------------------------------------- */

struct query {
	uint16_t want_type;
	bool got;
	int (*parse)(const struct nlmsghdr *nlh, size_t len, void *out);
	void *out;
};

static int query_cb(const struct nlmsghdr *nlh, void *data)
{
	struct query *q = data;
	if (nlh->nlmsg_type != q->want_type)
		return MNL_CB_OK;
	if (q->parse(nlh, nlh->nlmsg_len, q->out) == 0)
		q->got = true;
	return MNL_CB_STOP;
}

static int parse_route_cb(const struct nlmsghdr *nlh, size_t len, void *out)
{
	return neigh_parse_route(nlh, len, out);
}

static int parse_neigh_cb(const struct nlmsghdr *nlh, size_t len, void *out)
{
	return neigh_parse_neigh(nlh, len, out);
}

/* transact sends `req` on the query socket and waits for its answer: the message
 * parsed by `q` (returns 0), an ACK (0), or an error (its negative errno). */
static int transact(struct neigh *n, struct nlmsghdr *req, struct query *q)
{
	req->nlmsg_seq = ++n->seq;
	if (mnl_socket_sendto(n->q, req, req->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t r = mnl_socket_recvfrom(n->q, n->buf, sizeof(n->buf));
		if (r < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		int ret =
		    mnl_cb_run(n->buf, (size_t)r, n->seq, n->q_portid, q ? query_cb : NULL, q);
		if (ret < 0) {
			if (errno == EPROTO) /* the late answer to a query that timed out */
				continue;
			return -errno;
		}
		if (!q || q->got || ret == MNL_CB_STOP)
			return q && !q->got ? -EBADMSG : 0;
	}
}

static int query_route(struct neigh *n, const struct r2p2_addr *dst, struct neigh_route *out)
{
	uint8_t buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)dst->family;
	rtm->rtm_dst_len = (uint8_t)(alen(dst->family) * 8);
	mnl_attr_put(nlh, RTA_DST, alen(dst->family), dst->addr);
	/* how the kernel would send it out of *our* interface: AF_XDP can use no other */
	mnl_attr_put_u32(nlh, RTA_OIF, n->ifindex);
	struct query q = {RTM_NEWROUTE, false, parse_route_cb, out};
	n->stats.queries++;
	return transact(n, nlh, &q);
}

static int query_neigh(struct neigh *n, uint16_t family, const uint8_t *addr, struct neigh_msg *out)
{
	uint8_t buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = (uint8_t)family;
	ndm->ndm_ifindex = (int)n->ifindex;
	mnl_attr_put(nlh, NDA_DST, alen(family), addr);
	struct query q = {RTM_NEWNEIGH, false, parse_neigh_cb, out};
	n->stats.queries++;
	return transact(n, nlh, &q);
}

/* trigger makes the kernel resolve (or re-verify) next hop `addr` on our interface. */
static void trigger(struct neigh *n, uint16_t family, const uint8_t *addr)
{
	n->stats.triggers++;
	uint8_t buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = (uint8_t)family;
	ndm->ndm_ifindex = (int)n->ifindex;
	ndm->ndm_flags = NTF_USE; /* neigh_event_send(), as for the kernel's own packets */
	mnl_attr_put(nlh, NDA_DST, alen(family), addr);
	if (transact(n, nlh, NULL) == 0)
		return;

	/* Without CAP_NET_ADMIN: a zero-length datagram to the discard port makes the
	 * kernel resolve the next hop to send it. */
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, n->ifname, (socklen_t)strlen(n->ifname));
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(9);
		memcpy(&s4->sin_addr, addr, 4);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(9);
		memcpy(&s6->sin6_addr, addr, 16);
		if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
			s6->sin6_scope_id = n->ifindex;
		sl = sizeof(*s6);
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
		(void)send(fd, "", 0, MSG_DONTWAIT);
	close(fd);
}

/* link_mac_attr copies the 6-byte IFLA_ADDRESS of RTM_NEWLINK message `m` to n->mac.
 * Returns 0, or -EPFNOSUPPORT when the link has no such address. */
static int link_mac_attr(struct neigh *n, const struct nlmsghdr *m)
{
	const struct nlattr *a;
	mnl_attr_for_each(a, m, sizeof(struct ifinfomsg))
	{
		if (mnl_attr_get_type(a) == IFLA_ADDRESS && mnl_attr_get_payload_len(a) == 6) {
			memcpy(n->mac, mnl_attr_get_payload(a), 6);
			return 0;
		}
	}
	return -EPFNOSUPPORT; /* not an Ethernet-like interface */
}

/* link_reply says whether `m` answers our RTM_GETLINK query; if so, *out_ret is the
 * answer: 0 with n->mac set, or a negative errno. */
static bool link_reply(struct neigh *n, const struct nlmsghdr *m, int *out_ret)
{
	if (m->nlmsg_seq != n->seq)
		return false;
	if (m->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
		if (m->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
			*out_ret = -EBADMSG;
		else
			*out_ret = e->error ? e->error : -ENOENT;
		return true;
	}
	if (m->nlmsg_type != RTM_NEWLINK || m->nlmsg_len < mnl_nlmsg_size(sizeof(struct ifinfomsg)))
		return false;
	*out_ret = link_mac_attr(n, m);
	return true;
}

/* query_link reads our interface's link-layer address into n->mac: 0 or a negative errno. */
static int query_link(struct neigh *n)
{
	uint8_t buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)n->ifindex;
	nlh->nlmsg_seq = ++n->seq;
	if (mnl_socket_sendto(n->q, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t r = mnl_socket_recvfrom(n->q, n->buf, sizeof(n->buf));
		if (r < 0)
			return -errno;
		const struct nlmsghdr *m = (const struct nlmsghdr *)n->buf;
		int left = (int)r;
		for (; mnl_nlmsg_ok(m, left); m = mnl_nlmsg_next(m, &left)) {
			int ret;
			if (link_reply(n, m, &ret))
				return ret;
		}
	}
}

struct neigh *neigh_new_offline(unsigned ifindex, const uint8_t mac[6])
{
	struct neigh *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->offline = true;
	n->ifindex = ifindex;
	if (mac)
		memcpy(n->mac, mac, 6);
	return n;
}

struct neigh *neigh_new(const char *ifname, char *err, size_t err_len)
{
	int e;
	if (!ifname || strlen(ifname) >= IF_NAMESIZE) {
		set_err(err, err_len, "neigh: bad interface name");
		errno = EINVAL;
		return NULL;
	}
	struct neigh *n = calloc(1, sizeof(*n));
	if (!n) {
		set_err(err, err_len, "neigh: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifname);
	n->ifindex = if_nametoindex(ifname);
	if (!n->ifindex) {
		e = errno;
		set_err(err, err_len, "neigh: no interface %s: %s", ifname, strerror(e));
		goto fail;
	}
	n->q = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	n->ev = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!n->q || !n->ev) {
		e = errno;
		set_err(err, err_len, "neigh: %s: rtnetlink socket: %s", ifname, strerror(e));
		goto fail;
	}
	struct timeval tv = {.tv_sec = QUERY_TIMEOUT_MS / 1000,
			     .tv_usec = (QUERY_TIMEOUT_MS % 1000) * 1000};
	(void)setsockopt(mnl_socket_get_fd(n->q), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (mnl_socket_bind(n->q, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_bind(n->ev, RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
			    MNL_SOCKET_AUTOPID) < 0) {
		e = errno;
		set_err(err, err_len, "neigh: %s: rtnetlink bind: %s", ifname, strerror(e));
		goto fail;
	}
	n->q_portid = mnl_socket_get_portid(n->q);
	e = -query_link(n);
	if (e) {
		set_err(err, err_len, "neigh: %s: cannot read its link-layer address: %s", ifname,
			strerror(e));
		goto fail;
	}
	return n;
fail:
	neigh_free(n);
	errno = e;
	return NULL;
}

void neigh_free(struct neigh *n)
{
	if (!n)
		return;
	if (n->q)
		mnl_socket_close(n->q);
	if (n->ev)
		mnl_socket_close(n->ev);
	free(n);
}

unsigned neigh_ifindex(const struct neigh *n)
{
	return n->ifindex;
}

void neigh_mac(const struct neigh *n, uint8_t out_mac[6])
{
	memcpy(out_mac, n->mac, 6);
}

int neigh_fd(const struct neigh *n)
{
	return n->ev ? mnl_socket_get_fd(n->ev) : -1;
}

void neigh_get_stats(const struct neigh *n, struct neigh_stats *out)
{
	*out = n->stats;
}

static void out_src_set(struct r2p2_addr *out_src, const struct entry *e)
{
	if (!out_src)
		return;
	memset(out_src, 0, sizeof(*out_src));
	out_src->family = e->family;
	memcpy(out_src->addr, e->src, alen(e->family));
}

/* lookup_hit answers from resolved entry `e`; a stale one is re-verified with the
 * kernel at most every STALE_RECHECK_NS, and used meanwhile. */
static int lookup_hit(struct neigh *n, struct entry *e, uint8_t out_mac[6],
		      struct r2p2_addr *out_src)
{
	if (e->stale && !n->offline) {
		uint64_t now = now_ns();
		if (now - e->trigger_ns >= STALE_RECHECK_NS) {
			e->trigger_ns = now;
			trigger(n, e->nh_family, e->nh);
		}
	}
	memcpy(out_mac, e->mac, 6);
	out_src_set(out_src, e);
	n->stats.hits++;
	return 0;
}

/* lookup_unresolved returns the answer of pending or negative entry `e` while it holds
 * (always when offline: nothing would refresh it), or 0 to ask the kernel again. */
static int lookup_unresolved(const struct neigh *n, const struct entry *e, uint64_t now)
{
	uint64_t age = now - e->stamp_ns;
	if (e->state == E_PENDING && (age < PENDING_REQUERY_NS || n->offline))
		return -EAGAIN;
	if (e->state == E_FAILED && (age < NEGATIVE_TTL_NS || n->offline))
		return -EHOSTUNREACH;
	if (e->state == E_NOROUTE && (age < NEGATIVE_TTL_NS || n->offline))
		return -ENETUNREACH;
	return 0;
}

/* query_next_hop reads the neighbour entry of route `rt`'s next hop when the route
 * leaves through our interface. Returns 0, with *out_have saying whether the kernel has
 * an entry, or a negative errno. */
static int query_next_hop(struct neigh *n, const struct r2p2_addr *dst,
			  const struct neigh_route *rt, struct neigh_msg *out_nm, bool *out_have)
{
	*out_have = false;
	if (rt->type != RTN_UNICAST || rt->oif != n->ifindex)
		return 0;
	uint16_t nh_family = rt->has_gw ? rt->gw_family : dst->family;
	const uint8_t *nh = rt->has_gw ? rt->gw : dst->addr;
	int ret = query_neigh(n, nh_family, nh, out_nm);
	if (ret && ret != -ENOENT)
		return ret;
	*out_have = ret == 0;
	return 0;
}

/* lookup_learnt answers from entry `e` that neigh_learn just filed with result `ret`,
 * and makes the kernel resolve a next hop that is stale, pending or failed. */
static int lookup_learnt(struct neigh *n, struct entry *e, int ret, uint64_t now,
			 uint8_t out_mac[6], struct r2p2_addr *out_src)
{
	if (ret == 0) {
		memcpy(out_mac, e->mac, 6);
		out_src_set(out_src, e);
		if (!e->stale)
			return 0;
	} else if (ret != -EAGAIN && ret != -EHOSTUNREACH) {
		return ret;
	}
	e->trigger_ns = now;
	trigger(n, e->nh_family, e->nh);
	return ret;
}

/* lookup_query asks the kernel for the route to `dst` and its next hop's MAC, and
 * files the answer. */
static int lookup_query(struct neigh *n, const struct r2p2_addr *dst, uint64_t now,
			uint8_t out_mac[6], struct r2p2_addr *out_src)
{
	struct neigh_route rt;
	int ret = query_route(n, dst, &rt);
	if (ret == -ENETUNREACH || ret == -EHOSTUNREACH || ret == -EINVAL)
		return neigh_learn(n, dst, NULL, NULL, now);
	if (ret)
		return ret;
	struct neigh_msg nm;
	bool have_nm;
	ret = query_next_hop(n, dst, &rt, &nm, &have_nm);
	if (ret)
		return ret;
	ret = neigh_learn(n, dst, &rt, have_nm ? &nm : NULL, now);
	struct entry *e = find(n, dst);
	if (!e)
		return ret;
	return lookup_learnt(n, e, ret, now, out_mac, out_src);
}

int neigh_lookup(struct neigh *n, const struct r2p2_addr *dst, uint8_t out_mac[6],
		 struct r2p2_addr *out_src)
{
	if (dst->family != AF_INET && dst->family != AF_INET6)
		return -EAFNOSUPPORT;
	struct entry *e = find(n, dst);
	if (e && e->state == E_OK)
		return lookup_hit(n, e, out_mac, out_src);
	uint64_t now = 0;
	if (e) {
		now = now_ns();
		int ret = lookup_unresolved(n, e, now);
		if (ret)
			return ret;
	}
	if (n->offline)
		return -ENOTCONN;
	if (!now)
		now = now_ns();
	return lookup_query(n, dst, now, out_mac, out_src);
}

int neigh_process(struct neigh *n)
{
	if (!n->ev)
		return -ENOTCONN;
	int applied = 0;
	for (;;) {
		ssize_t r = recv(mnl_socket_get_fd(n->ev), n->buf, sizeof(n->buf), MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return applied;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) { /* notifications were lost: trust nothing cached */
				neigh_flush(n);
				continue;
			}
			return -errno;
		}
		const struct nlmsghdr *m = (const struct nlmsghdr *)n->buf;
		int left = (int)r;
		for (; mnl_nlmsg_ok(m, left); m = mnl_nlmsg_next(m, &left)) {
			if (neigh_apply(n, m, (size_t)left) > 0)
				applied++;
		}
	}
}
