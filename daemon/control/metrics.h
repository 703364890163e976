/* SPDX-License-Identifier: MIT */
/*
 * metrics.h: the Prometheus endpoint of `metrics = ADDR:PORT` ([daemon]): GET /metrics
 * answers the status in Prometheus text format (status_format_prom), on the main loop.
 */
#ifndef R2P2D_METRICS_H
#define R2P2D_METRICS_H

#include <stddef.h>

struct daemon;

/*
 * metrics_open starts the endpoint of d->cfg (nothing without `metrics =`) and adds
 * it to the main loop. Returns 0, or a negative errno with a message in `err`.
 */
int metrics_open(struct daemon *d, char *err, size_t err_len);

/* metrics_close stops the endpoint; safe when it never started. */
void metrics_close(struct daemon *d);

#endif /* R2P2D_METRICS_H */
