// SPDX-License-Identifier: MIT
/* An attached application's resources, shared by the control plane and the workers. */
#include "app.h"

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
