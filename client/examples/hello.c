// SPDX-License-Identifier: MIT
/*
 * hello: the smallest app of libr2p2, built only from what `cmake --install` puts in a
 * prefix (the headers, libr2p2.so and r2p2.pc), as an application outside this tree is:
 *
 *   cc hello.c $(pkg-config --cflags --libs r2p2) -o hello
 *   ./hello echo.svc "hi"          # $R2P2_SOCKET, else /run/r2p2/r2p2d.sock
 *
 * It calls SERVICE once with MESSAGE and prints the reply. Exit status: 0 on a reply,
 * 1 when the call failed (the reason on stderr), 2 on usage.
 */
#include <stdio.h>
#include <string.h>

#include <r2p2/r2p2.h>

int main(int argc, char **argv)
{
	char reply[4096];
	size_t len = 0;
	struct r2p2_ctx *ctx;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: hello SERVICE MESSAGE (libr2p2 %s)\n", R2P2_VERSION);
		return 2;
	}
	ctx = r2p2_attach(NULL);
	if (!ctx) {
		perror("hello: r2p2_attach");
		return 1;
	}
	rc = r2p2_call_sync(ctx, argv[1], argv[2], strlen(argv[2]), reply, sizeof(reply), &len,
			    1000);
	if (rc < 0) {
		fprintf(stderr, "hello: %s: %s\n", argv[1], r2p2_strerror(rc));
		r2p2_detach(ctx);
		return 1;
	}
	printf("%.*s\n", (int)len, reply);
	r2p2_detach(ctx);
	return 0;
}
