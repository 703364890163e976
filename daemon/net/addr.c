// SPDX-License-Identifier: MIT
#include "addr.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

socklen_t addr_to_sockaddr(const struct r2p2_addr *a, int family, void *out_sa)
{
	if (family == AF_INET) {
		struct sockaddr_in *s = out_sa;
		memset(s, 0, sizeof(*s));
		s->sin_family = AF_INET;
		s->sin_port = a->port;
		memcpy(&s->sin_addr, a->addr, 4);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s6 = out_sa;
	memset(s6, 0, sizeof(*s6));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = a->port;
	if (a->family == AF_INET) {
		/* An IPv6 socket reaches IPv4 peers through v4-mapped addresses. */
		s6->sin6_addr.s6_addr[10] = 0xff;
		s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&s6->sin6_addr.s6_addr[12], a->addr, 4);
	} else {
		memcpy(&s6->sin6_addr, a->addr, 16);
	}
	return sizeof(*s6);
}

void addr_from_sockaddr(const void *sa, struct r2p2_addr *out)
{
	const struct sockaddr *s = sa;
	memset(out, 0, sizeof(*out));
	if (s->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = sa;
		out->family = AF_INET;
		out->port = s4->sin_port;
		memcpy(out->addr, &s4->sin_addr, 4);
	} else if (s->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = sa;
		out->port = s6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			out->family = AF_INET;
			memcpy(out->addr, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			out->family = AF_INET6;
			memcpy(out->addr, &s6->sin6_addr, 16);
		}
	}
}

static bool addr_is_any(const struct r2p2_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->addr, zero, a->family == AF_INET ? 4 : 16) == 0;
}

size_t addr_local_list(const struct r2p2_addr *listen, struct r2p2_addr *out, size_t max)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0;

	if (!max)
		return 0;
	if (!addr_is_any(listen)) {
		out[0] = *listen;
		out[0].port = 0;
		return 1;
	}
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i && n < max; i = i->ifa_next) {
		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		/* an IPv4 listen address takes IPv4 only; an IPv6 one both (v4-mapped) */
		if (listen->family == AF_INET && i->ifa_addr->sa_family != AF_INET)
			continue;
		addr_from_sockaddr(i->ifa_addr, &out[n]);
		out[n++].port = 0;
	}
	freeifaddrs(ifa);
	return n;
}
