/* SPDX-License-Identifier: MIT */
/* What the public headers need to compile as C (C11) and as C++ alike. */
#ifndef R2P2_COMPAT_H
#define R2P2_COMPAT_H

#ifdef __cplusplus
#define R2P2_STATIC_ASSERT static_assert
#else
#define R2P2_STATIC_ASSERT _Static_assert
#endif

#endif /* R2P2_COMPAT_H */
