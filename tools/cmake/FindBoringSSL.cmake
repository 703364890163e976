# SPDX-License-Identifier: MIT
#[=======================================================================[.rst:
FindBoringSSL
-------------

Finds Debian's BoringSSL (package ``android-libboringssl-dev``): headers in
``/usr/include/android/openssl``, libraries in
``/usr/lib/<multiarch>/android`` (SONAME ``libssl.so.0``/``libcrypto.so.0``,
no pkg-config file).

Debian also ships OpenSSL 3 in ``/usr/include/openssl`` and
``/usr/lib/<multiarch>/libssl.so``: every search here is restricted to the
android directories so that OpenSSL can never be picked up instead, and the
result is verified (``OPENSSL_IS_BORINGSSL`` defined, a BoringSSL-only symbol
links).

Imported targets:

``BoringSSL::Crypto``, ``BoringSSL::SSL``
  ``-I/usr/include/android`` (a plain ``-I``: searched before every system
  directory, so ``<openssl/ssl.h>`` is BoringSSL's) and
  ``-Wl,-rpath,<android lib dir>`` (the libraries are not in the loader's
  default path).

Result variables: ``BoringSSL_FOUND``, ``BoringSSL_INCLUDE_DIR``,
``BoringSSL_SSL_LIBRARY``, ``BoringSSL_CRYPTO_LIBRARY``, ``BoringSSL_LIBRARY_DIR``,
``BoringSSL_API_VERSION``.
#]=======================================================================]

include(FindPackageHandleStandardArgs)
include(CheckCSourceCompiles)
include(CMakePushCheckState)

set(_bssl_hint "android-libboringssl-dev is missing: run ./tools/dev.sh build")

if(CMAKE_LIBRARY_ARCHITECTURE)
  set(_bssl_libdirs /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android)
else()
  set(_bssl_libdirs /usr/lib/x86_64-linux-gnu/android /usr/lib/aarch64-linux-gnu/android)
endif()

# NO_DEFAULT_PATH: /usr/include/openssl (OpenSSL 3) must never satisfy this.
find_path(BoringSSL_INCLUDE_DIR NAMES openssl/is_boringssl.h openssl/base.h
  PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BoringSSL_SSL_LIBRARY NAMES ssl
  PATHS ${_bssl_libdirs} NO_DEFAULT_PATH)
find_library(BoringSSL_CRYPTO_LIBRARY NAMES crypto
  PATHS ${_bssl_libdirs} NO_DEFAULT_PATH)

if(BoringSSL_INCLUDE_DIR AND EXISTS ${BoringSSL_INCLUDE_DIR}/openssl/base.h)
  file(STRINGS ${BoringSSL_INCLUDE_DIR}/openssl/base.h _bssl_api
    REGEX "^#define[ \t]+BORINGSSL_API_VERSION[ \t]+[0-9]+")
  string(REGEX REPLACE ".*[ \t]([0-9]+)$" "\\1" BoringSSL_API_VERSION "${_bssl_api}")
endif()

if(BoringSSL_SSL_LIBRARY)
  get_filename_component(BoringSSL_LIBRARY_DIR ${BoringSSL_SSL_LIBRARY} DIRECTORY)
endif()

# Prove these are BoringSSL's: the header defines OPENSSL_IS_BORINGSSL and the
# library exports SSL_CTX_set_ticket_aead_method, which OpenSSL 3 does not have.
# The verdict is cached per (headers, libraries), so a changed path is checked again.
string(MD5 _bssl_key "${BoringSSL_INCLUDE_DIR};${BoringSSL_SSL_LIBRARY};${BoringSSL_CRYPTO_LIBRARY}")
if(BoringSSL_INCLUDE_DIR AND BoringSSL_SSL_LIBRARY AND BoringSSL_CRYPTO_LIBRARY
   AND NOT DEFINED _BoringSSL_VERIFIED_${_bssl_key})
  cmake_push_check_state(RESET)
  set(CMAKE_REQUIRED_QUIET ON)
  set(CMAKE_REQUIRED_INCLUDES ${BoringSSL_INCLUDE_DIR})
  set(CMAKE_REQUIRED_LIBRARIES ${BoringSSL_SSL_LIBRARY} ${BoringSSL_CRYPTO_LIBRARY})
  set(CMAKE_REQUIRED_LINK_OPTIONS "-Wl,-rpath,${BoringSSL_LIBRARY_DIR}")
  check_c_source_compiles([=[
#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "openssl/base.h is not BoringSSL's"
#endif
#include <openssl/ssl.h>
int main(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	SSL_CTX_set_ticket_aead_method(ctx, 0);
	SSL_CTX_free(ctx);
	return 0;
}
]=] _bssl_ok)
  cmake_pop_check_state()
  set(_BoringSSL_VERIFIED_${_bssl_key} "${_bssl_ok}" CACHE INTERNAL "")
  unset(_bssl_ok CACHE)
endif()
set(BoringSSL_IS_BORINGSSL "${_BoringSSL_VERIFIED_${_bssl_key}}")

find_package_handle_standard_args(BoringSSL
  REQUIRED_VARS BoringSSL_INCLUDE_DIR BoringSSL_SSL_LIBRARY BoringSSL_CRYPTO_LIBRARY
    BoringSSL_IS_BORINGSSL
  VERSION_VAR BoringSSL_API_VERSION
  REASON_FAILURE_MESSAGE "${_bssl_hint} (looked for /usr/include/android/openssl/base.h and libssl/libcrypto in ${_bssl_libdirs}, and checked OPENSSL_IS_BORINGSSL)")

if(NOT BoringSSL_FOUND)
  if(BoringSSL_FIND_REQUIRED)
    message(FATAL_ERROR "${_bssl_hint}")
  endif()
  return()
endif()

if(NOT TARGET BoringSSL::Crypto)
  add_library(BoringSSL::Crypto SHARED IMPORTED)
  set_target_properties(BoringSSL::Crypto PROPERTIES
    IMPORTED_LOCATION ${BoringSSL_CRYPTO_LIBRARY}
    IMPORTED_SONAME libcrypto.so.0
    # a plain -I (not -isystem): searched before /usr/include, where OpenSSL 3 lives
    INTERFACE_INCLUDE_DIRECTORIES ${BoringSSL_INCLUDE_DIR}
    INTERFACE_LINK_OPTIONS "-Wl,-rpath,${BoringSSL_LIBRARY_DIR}")
endif()
if(NOT TARGET BoringSSL::SSL)
  add_library(BoringSSL::SSL SHARED IMPORTED)
  set_target_properties(BoringSSL::SSL PROPERTIES
    IMPORTED_LOCATION ${BoringSSL_SSL_LIBRARY}
    IMPORTED_SONAME libssl.so.0
    INTERFACE_INCLUDE_DIRECTORIES ${BoringSSL_INCLUDE_DIR}
    INTERFACE_LINK_LIBRARIES BoringSSL::Crypto
    INTERFACE_LINK_OPTIONS "-Wl,-rpath,${BoringSSL_LIBRARY_DIR}")
endif()

mark_as_advanced(BoringSSL_INCLUDE_DIR BoringSSL_SSL_LIBRARY BoringSSL_CRYPTO_LIBRARY)
