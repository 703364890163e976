// SPDX-License-Identifier: MIT
#include "addr.h"

#include <netinet/in.h>
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
