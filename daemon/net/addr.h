/* SPDX-License-Identifier: MIT */
/* struct r2p2_addr (engine.h) to and from the kernel's socket addresses. */
#ifndef R2P2D_ADDR_H
#define R2P2D_ADDR_H

#include <sys/socket.h>

#include "engine.h"

/*
 * addr_to_sockaddr fills `out_sa` (room for a struct sockaddr_in6) for a socket of
 * `family`: an AF_INET6 socket reaches IPv4 peers through v4-mapped addresses.
 * Returns the length to pass to the kernel.
 */
socklen_t addr_to_sockaddr(const struct r2p2_addr *a, int family, void *out_sa);

/* addr_from_sockaddr is the reverse; a v4-mapped address becomes AF_INET. */
void addr_from_sockaddr(const void *sa, struct r2p2_addr *out);

/*
 * addr_local_list writes the addresses a socket bound to `listen` receives on
 * (port 0): `listen` itself, or, for the any address, every address of the host's
 * interfaces (getifaddrs), at most `max`. Returns how many it wrote.
 */
size_t addr_local_list(const struct r2p2_addr *listen, struct r2p2_addr *out, size_t max);

#endif /* R2P2D_ADDR_H */
