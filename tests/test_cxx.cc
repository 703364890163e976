// SPDX-License-Identifier: MIT
/*
 * test_cxx: an application written in C++ (as a gRPC user's would be) includes every public
 * header and links libr2p2: the headers compile under -pedantic -Werror, the ABI sizes agree
 * with C's, the version macros are there, and the library answers: attaching to a socket
 * where no daemon listens fails with ENOENT, and the calls refuse a null context.
 */
#include <r2p2/bpf_abi.h>
#include <r2p2/r2p2.h>
#include <r2p2/shm.h>
#include <r2p2/wire.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

static_assert(sizeof(r2p2_sqe) == 72, "the SQE ABI");
static_assert(sizeof(r2p2_cqe) == 32, "the CQE ABI");
static_assert(R2P2_VERSION_MAJOR == 0 && R2P2_VERSION_MINOR >= 1, "version macros");

static int failures;

static void check(bool ok, const char *what)
{
	std::printf("%s %s\n", ok ? "ok" : "not ok", what);
	failures += !ok;
}

int main()
{
	errno = 0;
	r2p2_ctx *ctx = r2p2_attach("/nonexistent/r2p2-test-cxx.sock");
	check(ctx == nullptr && errno == ENOENT, "attach without a daemon fails with ENOENT");
	r2p2_event ev;
	check(r2p2_poll(nullptr, &ev, 1, 0) == -EINVAL, "poll refuses a null context");
	check(r2p2_call(nullptr, "echo.svc", "x", 1, 0, 0) == -EINVAL,
	      "call refuses a null context");
	check(std::strcmp(R2P2_VERSION, "0.1.0") >= 0, "R2P2_VERSION is a version string");
	r2p2_set_poll_us(nullptr, 10);
	r2p2_detach(nullptr);
	return failures ? 1 : 0;
}
