# SPDX-License-Identifier: MIT
"""The C side of the binding: libr2p2's declarations and where the library is found.

cffi's ABI mode (ffi.dlopen of libr2p2.so.0) rather than its API mode, because:
- Debian's python3-cffi is all it needs: no compiler, no python3-dev headers and no
  extension module built for one interpreter version; the package is pure Python, so
  CMake installs it as plain files and any Python 3 with cffi imports it.
- the library is found at run time, so the same package works against the build tree,
  an installed prefix or the system's libr2p2 (see _find_library).
ABI mode trusts the declarations below to match include/r2p2/r2p2.h byte for byte (it
cannot check a struct layout itself): tests/python/test_binding.py compares every size,
offset and constant here with what the C compiler says (the test_python ctest).
"""
import os

import cffi

# The subset of include/r2p2/r2p2.h the binding uses, as written there (libr2p2 0.2,
# SOVERSION 0). struct r2p2_event is declared whole: ABI mode needs its exact layout.
CDEF = """
struct r2p2_ctx;

struct r2p2_event {
    int type;
    int status;
    uint64_t id;
    const void *data;
    size_t len;
    uint32_t service_id;
    uint32_t lane;
    uint32_t code;
    uint32_t deadline_us;
};

struct r2p2_ctx *r2p2_attach(const char *socket_path);
void r2p2_detach(struct r2p2_ctx *ctx);
void r2p2_set_poll_us(struct r2p2_ctx *ctx, unsigned us);
int64_t r2p2_call(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
                  unsigned timeout_ms, unsigned flags);
int r2p2_poll(struct r2p2_ctx *ctx, struct r2p2_event *events, int max, int timeout_ms);
int r2p2_call_sync(struct r2p2_ctx *ctx, const char *service, const void *req, size_t len,
                   void *resp, size_t resp_cap, size_t *out_len, unsigned timeout_ms);
int r2p2_call_sync_flags(struct r2p2_ctx *ctx, const char *service, const void *req,
                         size_t len, void *resp, size_t resp_cap, size_t *out_len,
                         unsigned timeout_ms, unsigned flags);
int r2p2_cancel(struct r2p2_ctx *ctx, uint64_t id);
int r2p2_fd(struct r2p2_ctx *ctx);
int r2p2_register(struct r2p2_ctx *ctx, const char *service);
int r2p2_respond(struct r2p2_ctx *ctx, const struct r2p2_event *req, const void *resp,
                 size_t len);
int r2p2_respond_error(struct r2p2_ctx *ctx, const struct r2p2_event *req, uint32_t code,
                       const char *message);
uint32_t r2p2_remote_code(const struct r2p2_ctx *ctx);
size_t r2p2_max_msg_len(const struct r2p2_ctx *ctx);
const char *r2p2_strerror(int err);
"""

# The library's SONAME: the ABI this binding is written for, never the unversioned
# development link libr2p2.so (which may belong to another version).
SONAME = "libr2p2.so.0"

ffi = cffi.FFI()
ffi.cdef(CDEF)


def _candidates():
    """Where to look for libr2p2, in order, as (path, what) pairs."""
    env = os.environ.get("R2P2_LIBRARY")
    if env:
        # An explicit choice is the only one: a wrong path must not fall back silently.
        return [(env, "$R2P2_LIBRARY")]
    found = []
    try:
        # Written by CMake: the build tree's library for the build tree's copy of this
        # package, the prefix's library for an installed copy.
        from . import _libdir  # pylint: disable=import-outside-toplevel

        found.append((os.path.join(_libdir.LIBDIR, SONAME), "CMake's " + _libdir.WHAT))
    except ImportError:
        pass  # running from the source tree: no such file
    # The dynamic linker's own search: LD_LIBRARY_PATH, then ld.so.cache (ldconfig).
    found.append((SONAME, "the system's library path"))
    return found


def _find_library():
    tried = []
    for path, what in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} ({what}): no such file")
            continue
        try:
            return ffi.dlopen(path), path
        except OSError as e:
            tried.append(f"{path} ({what}): {e}")
    raise ImportError("r2p2: cannot load libr2p2 (set R2P2_LIBRARY to its path); tried: " +
                      "; ".join(tried))


lib, LIBRARY_PATH = _find_library()
