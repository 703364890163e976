/* SPDX-License-Identifier: MIT */
/*
 * boringssl.h: include this first in every daemon file that uses BoringSSL.
 *
 * Debian ships OpenSSL 3 in /usr/include/openssl and BoringSSL in
 * /usr/include/android/openssl; a wrong include order, or a header BoringSSL
 * lacks, would silently compile against OpenSSL's. This stops the build instead.
 */
#ifndef R2P2D_BORINGSSL_H
#define R2P2D_BORINGSSL_H

#include <openssl/base.h>

#ifndef OPENSSL_IS_BORINGSSL
#error                                                                                             \
    "<openssl/base.h> is not BoringSSL's: link BoringSSL::SSL (tools/cmake/FindBoringSSL.cmake), never OpenSSL"
#endif

#if BORINGSSL_API_VERSION < 17
#error "BoringSSL API version 17 or later is needed (Debian 12 android-libboringssl-dev)"
#endif

#endif /* R2P2D_BORINGSSL_H */
