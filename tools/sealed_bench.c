// SPDX-License-Identifier: MIT
/*
 * r2p2-sealed-bench: the per-RPC crypto cost of sealed mode on each side, in one
 * process, no network, 4-byte request and response.
 *
 *   client: sealed_seal_request + sealed_open_response
 *   server: sealed_open_request (token open, service and time checks, strike
 *           register check + insert, request AEAD) + sealed_seal_response
 *
 * The bootstrap (one tls exchange per association) is not counted: it is
 * r2p2-tls-bench's number, paid once per client worker and service. The register
 * holds every nonce of the run (no rotation), as a busy server's would. Each side
 * is timed separately (CLOCK_MONOTONIC around its calls; the clock reads are
 * included, so the numbers are slightly pessimistic); the run is split in blocks
 * and the best block is reported next to the mean. Target: under 3 us per side.
 *
 * Usage: r2p2-sealed-bench [-N count] [--json]
 * Links BoringSSL only (never OpenSSL 3 in the same process).
 */
#include "boringssl.h"

#include "replay.h"
#include "sealed.h"
#include "stek.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/wire.h>

#define SVC "echo.svc"
#define BLOCKS 10

static const uint8_t ping[4] = "ping", pong[4] = "pong";
static const uint8_t req_hdr[4] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_REQUEST << 4,
				   R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};
static const uint8_t resp_hdr[4] = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_RESPONSE << 4,
				    R2P2_F_FIRST | R2P2_F_LAST | R2P2_F_SEALED};

static void die(const char *what, int rc)
{
	fprintf(stderr, "r2p2-sealed-bench: %s: %s\n", what, rc ? strerror(-rc) : "failed");
	exit(1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	char dir[] = "/tmp/r2p2-sealed-bench.XXXXXX", path[64], err[256];
	size_t n = 200000, per_block;
	bool json = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "N:", opts, NULL)) != -1) {
		if (c == 'N')
			n = strtoul(optarg, NULL, 10);
		else if (c == 'j')
			json = true;
		else {
			fprintf(stderr, "usage: %s [-N count] [--json]\n", argv[0]);
			return 2;
		}
	}
	if (n < BLOCKS)
		n = BLOCKS;
	per_block = n / BLOCKS;
	n = per_block * BLOCKS;

	/* a throwaway STEK file, as r2p2ctl would write it */
	struct stek_set *stek = NULL;
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	snprintf(path, sizeof(path), "%s/stek", dir);
	rc = stek_generate_file(path, err, sizeof(err));
	if (rc == 0)
		rc = stek_load(path, &stek, err, sizeof(err));
	unlink(path);
	rmdir(dir);
	if (rc)
		die(err, rc);

	/* one association: room for its share (a quarter of the register) to hold all n */
	struct replay *strike =
	    replay_new(REPLAY_SHARE_DIV * (n + 1024), 60ull * 1000 * 1000 * 1000);
	struct sealed_server *srv = sealed_server_new();
	if (!strike || !srv)
		die("setup", -ENOMEM);

	/* bootstrap once: what the tls exchange would carry */
	uint8_t blob[SEALED_ASSOC_BLOB_LEN];
	struct sealed_assoc assoc;
	uint64_t now = unix_ms();
	rc = sealed_assoc_mint(srv, stek, SVC, now, 0, blob);
	if (rc == 0)
		rc = sealed_assoc_init(&assoc, blob, now);
	if (rc)
		die("association", rc);

	struct tls_buf wire_req = {0}, wire_resp = {0}, plain_req = {0}, plain_resp = {0};
	struct sealed_ctx cctx, sctx;
	enum sealed_reason why;
	/* the server 10.0.0.2:8000, as the client binds its requests to it */
	const struct r2p2_addr server = {
	    .family = AF_INET, .port = htons(8000), .addr = {10, 0, 0, 2}};
	struct sealed_checks chk = {.now_ms = now, .self = &server, .num_self = 1};
	uint64_t cli_total = 0, srv_total = 0, cli_best = UINT64_MAX, srv_best = UINT64_MAX;

	for (int b = 0; b < BLOCKS; b++) {
		uint64_t cli = 0, svr = 0;

		for (size_t i = 0; i < per_block; i++) {
			uint64_t t0, t1, t2, t3, t4;

			t0 = mono_ns();
			rc = sealed_seal_request(&assoc, req_hdr, &server, ping, sizeof(ping), now,
						 &wire_req, &cctx);
			t1 = mono_ns();
			if (rc)
				die("sealed_seal_request", rc);
			chk.now_ns = mono_ns();
			rc = sealed_open_request(srv, stek, SVC, strike, &chk, req_hdr,
						 wire_req.data, wire_req.len, &plain_req, &sctx,
						 &why);
			if (rc == 0)
				rc = sealed_seal_response(srv, &sctx, resp_hdr, pong, sizeof(pong),
							  &wire_resp);
			t2 = mono_ns();
			if (rc) {
				fprintf(stderr, "server: %s\n", sealed_reason_name(why));
				die("server", rc);
			}
			t3 = mono_ns();
			rc = sealed_open_response(&cctx, resp_hdr, wire_resp.data, wire_resp.len,
						  &plain_resp);
			t4 = mono_ns();
			if (rc || plain_resp.len != 4 || memcmp(plain_resp.data, pong, 4) != 0)
				die("sealed_open_response", rc);
			cli += (t1 - t0) + (t4 - t3);
			svr += t2 - t1;
		}
		cli_total += cli;
		srv_total += svr;
		if (cli < cli_best)
			cli_best = cli;
		if (svr < srv_best)
			srv_best = svr;
	}

	double cli_us = (double)cli_total / 1e3 / (double)n;
	double srv_us = (double)srv_total / 1e3 / (double)n;
	double cli_best_us = (double)cli_best / 1e3 / (double)per_block;
	double srv_best_us = (double)srv_best / 1e3 / (double)per_block;
	struct sealed_stats st;
	sealed_server_stats(srv, &st);

	printf("sealed mode, %zu RPCs, 4-byte request and response\n", n);
	printf("  request %zu bytes, response %zu bytes on the wire (payload)\n", wire_req.len,
	       wire_resp.len);
	printf("  client (seal request + open response): %.3f us/RPC mean, %.3f best block\n",
	       cli_us, cli_best_us);
	printf("  server (open request + seal response): %.3f us/RPC mean, %.3f best block\n",
	       srv_us, srv_best_us);
	printf("  target 3 us per side: %s\n", cli_us < 3.0 && srv_us < 3.0 ? "met" : "MISSED");
	if (json)
		printf("{\"bench\":\"sealed\",\"rpcs\":%zu,\"req_bytes\":%zu,\"resp_bytes\":%zu,"
		       "\"client_us\":%.3f,\"server_us\":%.3f,\"client_best_us\":%.3f,"
		       "\"server_best_us\":%.3f,\"opened\":%llu}\n",
		       n, wire_req.len, wire_resp.len, cli_us, srv_us, cli_best_us, srv_best_us,
		       (unsigned long long)st.opened);

	tls_buf_cleanup(&wire_req);
	tls_buf_cleanup(&wire_resp);
	tls_buf_cleanup(&plain_req);
	tls_buf_cleanup(&plain_resp);
	sealed_assoc_cleanup(&assoc);
	sealed_server_free(srv);
	replay_free(strike);
	stek_set_put(stek);
	return 0;
}
