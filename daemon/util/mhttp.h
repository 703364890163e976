/* SPDX-License-Identifier: MIT */
/*
 * What r2p2d's and r2p2-router's Prometheus endpoints (libmicrohttpd) do alike: wait
 * for the end of a request and drop its body, answer with a copy of a body, and send
 * libmicrohttpd's complaints to the log.
 */
#ifndef R2P2D_MHTTP_H
#define R2P2D_MHTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

/*
 * mhttp_reading says, in a request handler, whether the request is still arriving
 * (return MHD_YES then): the first call has only its headers (`*state` is NULL; it
 * is set to `mark`), later ones its body, which is read and dropped. False once the
 * request is complete: answer it.
 */
bool mhttp_reading(void **state, void *mark, size_t *upload_len);

/* mhttp_reply queues a copy of the `len` bytes of `body`, of content `type`, with `code`. */
enum MHD_Result mhttp_reply(struct MHD_Connection *conn, unsigned code, const void *body,
			    size_t len, const char *type);

/* mhttp_log is an MHD_OPTION_EXTERNAL_LOGGER: one warning line "metrics: ..." each. */
void mhttp_log(void *cls, const char *fmt, va_list ap);

#endif /* R2P2D_MHTTP_H */
