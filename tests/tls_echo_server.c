// SPDX-License-Identifier: MIT
/*
 * tls_echo_server: our tls-mode server (daemon/security/tls.c, BoringSSL) behind two pipes,
 * for tests/interop_openssl.c, which must not load BoringSSL into its own process.
 *
 * Usage: tls_echo_server CERT KEY STEK [SERVICE]   (SERVICE defaults to echo.svc)
 *
 * stdin carries tls-mode R2P2 payloads (docs/PROTOCOL.md, "tls mode"), each as a
 * 4-byte big-endian length + bytes; for each one stdout gets the reply the same
 * way: the flight tls_server_input or tls_server_respond wrote (every request is
 * echoed back as its response), or a zero-length reply when a message is dropped
 * without an answer. The R2P2/UDP layer is not involved. Exits 0 at end of input.
 * One line per message on stderr says what happened.
 */
#include "boringssl.h"

#include "replay.h"
#include "stek.h"
#include "tls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WINDOW_NS (10ull * 1000 * 1000 * 1000)
#define MSG_MAX (TLS_MSG_MAX + 65536u)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* read_msg reads one length-prefixed message into `b`: 1, 0 at a clean EOF, -1 on error. */
static int read_msg(struct tls_buf *b)
{
	uint8_t hdr[4];
	size_t n = fread(hdr, 1, sizeof(hdr), stdin);
	uint32_t len;

	if (n == 0 && feof(stdin))
		return 0;
	if (n != sizeof(hdr))
		return -1;
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > MSG_MAX)
		return -1;
	if (len > b->cap) {
		uint8_t *p = realloc(b->data, len);

		if (!p)
			return -1;
		b->data = p;
		b->cap = len;
	}
	b->len = len;
	return fread(b->data, 1, len, stdin) == len ? 1 : -1;
}

static int write_msg(const uint8_t *p, size_t len)
{
	uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};

	if (fwrite(hdr, 1, sizeof(hdr), stdout) != sizeof(hdr) ||
	    (len && fwrite(p, 1, len, stdout) != len) || fflush(stdout) != 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	const struct r2p2_addr peer = {.family = AF_INET, .addr = {127, 0, 0, 1}};
	struct tls_buf in = {0}, req = {0}, flight = {0};
	struct tls_service_keys keys;
	struct tls_server *s = NULL;
	struct stek_set *stek = NULL;
	struct replay *rp = NULL;
	char err[512] = "";
	int rc, status = 1;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s CERT KEY STEK [SERVICE]\n", argv[0]);
		return 2;
	}
	keys.name = argc == 5 ? argv[4] : "echo.svc";
	keys.cert_path = argv[1];
	keys.key_path = argv[2];
	s = tls_server_new(&keys, 1, true, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "tls_echo_server: %s\n", err);
		goto out;
	}
	if (stek_load(argv[3], &stek, err, sizeof(err)) != 0) {
		fprintf(stderr, "tls_echo_server: %s\n", err);
		goto out;
	}
	tls_server_set_stek(s, stek);
	rp = replay_new(1024, WINDOW_NS);
	if (!rp) {
		perror("tls_echo_server: replay_new");
		goto out;
	}
	tls_server_set_replay(s, rp);

	while ((rc = read_msg(&in)) == 1) {
		struct tls_conn *conn = NULL;

		rc = tls_server_input(s, keys.name, &peer, in.data, in.len, now_ns(), &conn, &req,
				      &flight);
		if (rc == TLS_SRV_REQUEST) {
			rc = tls_server_respond(s, conn, req.data, req.len, &flight);
			fprintf(stderr, "tls_echo_server: request of %zu bytes, echoed: %d\n",
				req.len, rc);
		} else if (rc == TLS_SRV_REPLY) {
			fprintf(stderr, "tls_echo_server: handshake flight\n");
		} else {
			fprintf(stderr, "tls_echo_server: input refused: %s\n", strerror(-rc));
		}
		if (write_msg(flight.data, flight.len) != 0) {
			perror("tls_echo_server: write");
			goto out;
		}
	}
	if (rc != 0) {
		fprintf(stderr, "tls_echo_server: bad or cut input\n");
		goto out;
	}
	status = 0;
out:
	if (s) {
		struct tls_stats st;

		tls_server_stats(s, &st);
		fprintf(stderr,
			"tls_echo_server: full %" PRIu64 " resumed %" PRIu64
			" early_accepted %" PRIu64 " early_rejected %" PRIu64
			" replays_refused %" PRIu64 " bad %" PRIu64 "\n",
			st.handshakes_full, st.resumed, st.early_accepted, st.early_rejected,
			st.replays_refused, st.bad_messages);
	}
	tls_server_free(s);
	stek_set_put(stek);
	replay_free(rp);
	tls_buf_cleanup(&in);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&flight);
	return status;
}
