// SPDX-License-Identifier: MIT
/* An attached application's resources, shared by the control plane and the workers. */
#include "app.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void app_put(struct app *a)
{
	if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	if (a->map)
		munmap(a->map, a->map_len);
	for (unsigned i = 0; i < a->num_lanes; i++) {
		if (a->sq_efd && a->sq_efd[i] >= 0)
			close(a->sq_efd[i]);
		if (a->cq_efd && a->cq_efd[i] >= 0)
			close(a->cq_efd[i]);
	}
	if (a->conn_fd >= 0)
		close(a->conn_fd);
	free(a->sq_efd);
	free(a->cq_efd);
	free(a);
}

int app_add_serve(struct app *a, uint16_t port)
{
	unsigned n = __atomic_load_n(&a->num_serves, __ATOMIC_RELAXED); /* only we write it */

	if (n >= CFG_MAX_SERVICES)
		return -ENOSPC;
	a->serves[n] = port;
	__atomic_store_n(&a->num_serves, n + 1, __ATOMIC_RELEASE);
	return 0;
}

bool app_serves_port(const struct app *a, uint16_t port)
{
	unsigned n = __atomic_load_n(&a->num_serves, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; i < n; i++)
		if (a->serves[i] == port)
			return true;
	return false;
}
