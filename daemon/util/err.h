/* SPDX-License-Identifier: MIT */
/*
 * Error text for the set-up paths. Run-time paths return 0 or a negative errno
 * (STYLE.md); set-up paths that a person reads (config, keys, sockets, XDP) also
 * fill a caller's `err` buffer of `err_len` bytes with a sentence naming what failed.
 */
#ifndef R2P2D_ERR_H
#define R2P2D_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* set_err formats a message into `err` (truncated to `err_len`); `err` may be NULL. */
__attribute__((format(printf, 3, 4))) static inline void set_err(char *err, size_t err_len,
								 const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

#endif /* R2P2D_ERR_H */
