/* SPDX-License-Identifier: MIT */
/* What sealed.c and sealed_msg.c share; not part of the module's API. */
#ifndef R2P2D_SEALED_INT_H
#define R2P2D_SEALED_INT_H

#include "sealed.h"

/* sealed_buf_size makes `b` hold `n` bytes (contents undefined). Returns 0 or -ENOMEM. */
int sealed_buf_size(struct tls_buf *b, size_t n);

#endif /* R2P2D_SEALED_INT_H */
