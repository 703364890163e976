// SPDX-License-Identifier: MIT
/*
 * r2p2-tls-bench: the cost of one tls-mode RPC, in one process, no network.
 *
 * Loop A (r2p2 tls): tls_call_begin -> tls_server_input -> tls_server_respond ->
 * tls_call_input with a 4-byte request and response, every RPC resuming the
 * ticket of the previous one with the request as 0-RTT data (daemon/security/tls.c: our
 * framing, STEK ticket AEAD, strike register, SNI check, per-service ticket cache).
 * Loop B (bare BoringSSL): the same exchange with plain SSL objects and memory BIOs:
 * resumption + 0-RTT + half-RTT response and ticket, BoringSSL's own ticket keys,
 * nothing of ours. A/B is our overhead over BoringSSL's own 0-RTT cost (target
 * 1.15x, docs/BENCHMARKS.md). The two loops run interleaved in blocks so that
 * frequency changes and noise hit both alike.
 *
 * Usage: r2p2-tls-bench [-N count] [--json] [--certs DIR]
 *   DIR holds ca.crt, echo.svc.crt, echo.svc.key (tools/gen-certs.sh DIR echo.svc);
 *   without it a throwaway set is made in a temporary directory.
 * Links BoringSSL only (never OpenSSL 3 in the same process).
 */
#include "boringssl.h"

#include "replay.h"
#include "stek.h"
#include "tls.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#ifndef R2P2_SOURCE_DIR
#define R2P2_SOURCE_DIR "."
#endif

#define SVC "echo.svc"
#define BLOCKS 10

static const uint8_t ping[4] = "ping", pong[4] = "pong";

static void die(const char *what)
{
	fprintf(stderr, "r2p2-tls-bench: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Per-loop results: per-RPC client and server time, flight sizes. */
struct loop {
	const char *name;
	size_t n;
	uint64_t *cli_ns, *srv_ns; /* per RPC */
	uint64_t wall_ns, cpu_ns;  /* sums over all blocks */
	size_t first_len, final_len;
	uint64_t early; /* RPCs whose request went as 0-RTT data */
};

/* ---- loop A: r2p2 tls mode --------------------------------------------------------- */

struct ours {
	struct tls_client *c;
	struct tls_server *s;
	struct stek_set *stek;
	struct replay *rp;
	struct tls_buf to_srv, to_cli, req, resp;
	uint64_t now;
};

static const struct r2p2_addr peer = {.family = AF_INET, .addr = {10, 0, 0, 1}};

/* ours_rpc runs one RPC; adds the time spent in client and server calls. */
static void ours_rpc(struct ours *o, uint64_t *cli, uint64_t *srv, struct loop *l)
{
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	uint64_t t0, t1;
	int rc;

	*cli = *srv = 0;
	t0 = mono_ns();
	rc = tls_call_begin(o->c, SVC, ping, sizeof(ping), true, &call, &o->to_srv);
	t1 = mono_ns();
	*cli += t1 - t0;
	if (rc != 0)
		die("tls_call_begin failed");
	l->first_len = o->to_srv.len;
	for (;;) {
		o->now += 1000;
		t0 = mono_ns();
		rc = tls_server_input(o->s, SVC, &peer, o->to_srv.data, o->to_srv.len, o->now,
				      &conn, &o->req, &o->to_cli);
		if (rc == TLS_SRV_REQUEST)
			rc = tls_server_respond(o->s, conn, pong, sizeof(pong), &o->to_cli) == 0
				 ? TLS_SRV_REQUEST
				 : -EIO;
		t1 = mono_ns();
		*srv += t1 - t0;
		if (rc < 0)
			die("tls_server_input/respond failed");
		t0 = mono_ns();
		rc = tls_call_input(call, o->to_cli.data, o->to_cli.len, &o->to_srv, &o->resp);
		t1 = mono_ns();
		*cli += t1 - t0;
		if (rc == TLS_CALL_DONE)
			break;
		if (rc != TLS_CALL_CONTINUE) {
			fprintf(stderr, "r2p2-tls-bench: %s\n", tls_call_error(call));
			die("tls_call_input failed");
		}
	}
	if (o->resp.len != sizeof(pong) || memcmp(o->resp.data, pong, sizeof(pong)) != 0 ||
	    o->req.len != sizeof(ping) || memcmp(o->req.data, ping, sizeof(ping)) != 0)
		die("wrong bytes");
	if (tls_call_early_accepted(call)) {
		l->early++;
		l->final_len = o->to_cli.len;
	}
	t0 = mono_ns();
	tls_call_free(call);
	*cli += mono_ns() - t0;
}

static void ours_init(struct ours *o, const char *dir)
{
	char ca[512], crt[512], key[512], stek[512], err[256];
	struct tls_service_keys k = {.name = SVC, .cert_path = crt, .key_path = key};

	memset(o, 0, sizeof(*o));
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/" SVC ".crt", dir);
	snprintf(key, sizeof(key), "%s/" SVC ".key", dir);
	snprintf(stek, sizeof(stek), "%s/stek.keys", dir);
	o->c = tls_client_new(ca, err, sizeof(err));
	if (!o->c)
		die(err);
	o->s = tls_server_new(&k, 1, true, err, sizeof(err));
	if (!o->s)
		die(err);
	if (stek_load(stek, &o->stek, err, sizeof(err)) != 0)
		die(err);
	tls_server_set_stek(o->s, o->stek);
	/* room for every random of the run: a full register would turn 0-RTT off */
	o->rp = replay_new(1u << 22, 10ull * 1000 * 1000 * 1000);
	if (!o->rp)
		die("replay_new");
	tls_server_set_replay(o->s, o->rp);
	o->now = 1000000000ull;
}

static void ours_free(struct ours *o)
{
	tls_client_free(o->c);
	tls_server_free(o->s);
	stek_set_put(o->stek);
	replay_free(o->rp);
	tls_buf_cleanup(&o->to_srv);
	tls_buf_cleanup(&o->to_cli);
	tls_buf_cleanup(&o->req);
	tls_buf_cleanup(&o->resp);
}

/* ---- loop B: bare BoringSSL -------------------------------------------------------- */

struct bare {
	SSL_CTX *cctx, *sctx;
	SSL_SESSION *ticket; /* the newest, used once */
	uint8_t *buf;
	size_t cap;
};

static int bare_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct bare *b = SSL_get_app_data(ssl);

	SSL_SESSION_free(b->ticket);
	b->ticket = sess;
	return 1;
}

/* move passes everything `from` wrote to `to`; returns the byte count. */
static size_t move(struct bare *b, BIO *from, BIO *to)
{
	size_t n = BIO_pending(from);

	if (n > b->cap) {
		b->buf = realloc(b->buf, n);
		if (!b->buf)
			die("out of memory");
		b->cap = n;
	}
	if (n && (BIO_read(from, b->buf, (int)n) != (int)n ||
		  (to && BIO_write(to, b->buf, (int)n) != (int)n)))
		die("BIO");
	return n;
}

static SSL *bare_ssl(SSL_CTX *ctx, void *app, BIO **rbio, BIO **wbio)
{
	SSL *ssl = SSL_new(ctx);

	*rbio = BIO_new(BIO_s_mem());
	*wbio = BIO_new(BIO_s_mem());
	if (!ssl || !*rbio || !*wbio)
		die("SSL_new");
	SSL_set_bio(ssl, *rbio, *wbio);
	SSL_set_app_data(ssl, app);
	return ssl;
}

static void bare_rpc(struct bare *b, uint64_t *cli, uint64_t *srv, struct loop *l)
{
	BIO *crb, *cwb, *srb, *swb;
	uint8_t got[4];
	uint64_t t0, t1;
	SSL *c, *s;
	size_t n;
	int r;

	*cli = *srv = 0;
	/* client: ClientHello + ticket + request as early data */
	t0 = mono_ns();
	c = bare_ssl(b->cctx, b, &crb, &cwb);
	SSL_set_connect_state(c);
	SSL_set_tlsext_host_name(c, SVC);
	SSL_set1_host(c, SVC);
	if (b->ticket) {
		SSL_set_session(c, b->ticket);
		SSL_SESSION_free(b->ticket);
		b->ticket = NULL;
	}
	r = SSL_do_handshake(c);
	if (r == 1 && SSL_in_early_data(c)) {
		if (SSL_write(c, ping, sizeof(ping)) != sizeof(ping))
			die("bare: early write");
	} else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ) {
		die("bare: client hello");
	}
	t1 = mono_ns();
	*cli += t1 - t0;

	/* server: flight + half-RTT ticket + response */
	t0 = mono_ns();
	s = bare_ssl(b->sctx, b, &srb, &swb);
	SSL_set_accept_state(s);
	t1 = mono_ns();
	*srv += t1 - t0;
	t0 = mono_ns();
	n = move(b, cwb, srb);
	t1 = mono_ns();
	*cli += t1 - t0;
	l->first_len = n;
	t0 = mono_ns();
	r = SSL_do_handshake(s);
	if (r != 1) {
		/* first contact: full handshake, the request follows 1-RTT */
		if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
			die("bare: server handshake");
		move(b, swb, crb);
		if (SSL_do_handshake(c) != 1 || SSL_write(c, ping, sizeof(ping)) != sizeof(ping))
			die("bare: client 1-RTT");
		move(b, cwb, srb);
		if (SSL_do_handshake(s) != 1)
			die("bare: server 1-RTT");
	}
	if (SSL_read(s, got, sizeof(got)) != sizeof(got) || memcmp(got, ping, 4) != 0)
		die("bare: server read");
	if (SSL_write(s, pong, sizeof(pong)) != sizeof(pong))
		die("bare: server write");
	n = move(b, swb, crb);
	SSL_free(s);
	t1 = mono_ns();
	*srv += t1 - t0;

	/* client: finish (its EndOfEarlyData and Finished are dropped), read */
	t0 = mono_ns();
	if (SSL_do_handshake(c) != 1)
		die("bare: client finish");
	move(b, cwb, NULL);
	if (SSL_read(c, got, sizeof(got)) != sizeof(got) || memcmp(got, pong, 4) != 0)
		die("bare: client read");
	if (SSL_early_data_accepted(c)) {
		l->early++;
		l->final_len = n;
	}
	SSL_free(c);
	t1 = mono_ns();
	*cli += t1 - t0;
}

static void bare_init(struct bare *b, const char *dir)
{
	char ca[512], crt[512], key[512];

	memset(b, 0, sizeof(*b));
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/" SVC ".crt", dir);
	snprintf(key, sizeof(key), "%s/" SVC ".key", dir);
	b->cctx = SSL_CTX_new(TLS_method());
	b->sctx = SSL_CTX_new(TLS_method());
	if (!b->cctx || !b->sctx)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(b->cctx, TLS1_3_VERSION);
	SSL_CTX_set_min_proto_version(b->sctx, TLS1_3_VERSION);
	if (SSL_CTX_load_verify_locations(b->cctx, ca, NULL) != 1)
		die("bare: CA");
	SSL_CTX_set_verify(b->cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(b->cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(b->cctx, bare_new_session);
	SSL_CTX_set_early_data_enabled(b->cctx, 1);
	if (SSL_CTX_use_certificate_chain_file(b->sctx, crt) != 1 ||
	    SSL_CTX_use_PrivateKey_file(b->sctx, key, SSL_FILETYPE_PEM) != 1)
		die("bare: certificate");
	SSL_CTX_set_session_cache_mode(b->sctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(b->sctx, 1); /* as ours: one ticket per RPC */
	SSL_CTX_set_early_data_enabled(b->sctx, 1);
}

static void bare_free(struct bare *b)
{
	SSL_SESSION_free(b->ticket);
	SSL_CTX_free(b->cctx);
	SSL_CTX_free(b->sctx);
	free(b->buf);
}

/* ---- report ---------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct summary {
	double wall_us, cpu_us, cli_us, srv_us, p50_us, p99_us;
};

static struct summary summarize(const struct loop *l)
{
	struct summary s = {0};
	uint64_t *tot = malloc(l->n * sizeof(*tot));
	double cli = 0, srv = 0;

	if (!tot)
		die("out of memory");
	for (size_t i = 0; i < l->n; i++) {
		tot[i] = l->cli_ns[i] + l->srv_ns[i];
		cli += (double)l->cli_ns[i];
		srv += (double)l->srv_ns[i];
	}
	qsort(tot, l->n, sizeof(*tot), cmp_u64);
	s.wall_us = (double)l->wall_ns / (double)l->n / 1e3;
	s.cpu_us = (double)l->cpu_ns / (double)l->n / 1e3;
	s.cli_us = cli / (double)l->n / 1e3;
	s.srv_us = srv / (double)l->n / 1e3;
	s.p50_us = (double)tot[l->n / 2] / 1e3;
	s.p99_us = (double)tot[l->n * 99 / 100] / 1e3;
	free(tot);
	return s;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: r2p2-tls-bench [-N count] [--json] [--certs DIR]\n"
		   "  one 4-byte tls-mode RPC (0-RTT resumption) per iteration, in process;\n"
		   "  compared with bare BoringSSL doing the same exchange\n");
}

static char tmpdir[256];

static const char *make_certs(void)
{
	char cmd[1024];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/r2p2-tls-bench.XXXXXX");
	if (!mkdtemp(tmpdir))
		die("mkdtemp");
	snprintf(cmd, sizeof(cmd), "bash '%s/tools/gen-certs.sh' '%s' " SVC " >/dev/null",
		 R2P2_SOURCE_DIR, tmpdir);
	if (system(cmd) != 0)
		die("tools/gen-certs.sh failed (is the openssl CLI installed?); or pass --certs "
		    "DIR");
	return tmpdir;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"certs", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	size_t n = 20000;
	bool json = false;
	struct loop la = {.name = "r2p2-tls"}, lb = {.name = "boringssl"};
	struct summary sa, sb;
	struct ours o;
	struct bare b;
	int ch;

	while ((ch = getopt_long(argc, argv, "N:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'N':
			n = strtoul(optarg, NULL, 10);
			break;
		case 'j':
			json = true;
			break;
		case 'c':
			dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (n < BLOCKS)
		n = BLOCKS;
	n -= n % BLOCKS;
	if (!dir)
		dir = make_certs();
	ours_init(&o, dir);
	bare_init(&b, dir);
	la.n = lb.n = n;
	la.cli_ns = calloc(n, sizeof(uint64_t));
	la.srv_ns = calloc(n, sizeof(uint64_t));
	lb.cli_ns = calloc(n, sizeof(uint64_t));
	lb.srv_ns = calloc(n, sizeof(uint64_t));
	if (!la.cli_ns || !la.srv_ns || !lb.cli_ns || !lb.srv_ns)
		die("out of memory");

	/* warm up: tickets, caches, page faults */
	for (int i = 0; i < 50; i++) {
		uint64_t x, y;

		ours_rpc(&o, &x, &y, &la);
		bare_rpc(&b, &x, &y, &lb);
	}
	la.early = lb.early = 0;
	for (size_t blk = 0; blk < BLOCKS; blk++) {
		size_t lo = blk * (n / BLOCKS), hi = lo + n / BLOCKS;
		uint64_t w0, c0;

		w0 = mono_ns();
		c0 = cpu_ns();
		for (size_t i = lo; i < hi; i++)
			ours_rpc(&o, &la.cli_ns[i], &la.srv_ns[i], &la);
		la.cpu_ns += cpu_ns() - c0;
		la.wall_ns += mono_ns() - w0;
		w0 = mono_ns();
		c0 = cpu_ns();
		for (size_t i = lo; i < hi; i++)
			bare_rpc(&b, &lb.cli_ns[i], &lb.srv_ns[i], &lb);
		lb.cpu_ns += cpu_ns() - c0;
		lb.wall_ns += mono_ns() - w0;
	}
	if (la.early != n || lb.early != n)
		fprintf(stderr,
			"r2p2-tls-bench: warning: not every RPC was 0-RTT (%lu, %lu of %zu)\n",
			(unsigned long)la.early, (unsigned long)lb.early, n);
	sa = summarize(&la);
	sb = summarize(&lb);
	if (json) {
		printf("{\"rpcs\": %zu, \"payload_bytes\": 4", n);
		for (int i = 0; i < 2; i++) {
			const struct loop *l = i ? &lb : &la;
			const struct summary *s = i ? &sb : &sa;

			printf(
			    ", \"%s\": {\"wall_us\": %.2f, \"cpu_us\": %.2f, \"client_us\": %.2f, "
			    "\"server_us\": %.2f, \"p50_us\": %.2f, \"p99_us\": %.2f, "
			    "\"first_flight_bytes\": %zu, \"final_flight_bytes\": %zu, "
			    "\"early_rpcs\": %lu}",
			    l->name, s->wall_us, s->cpu_us, s->cli_us, s->srv_us, s->p50_us,
			    s->p99_us, l->first_len, l->final_len, (unsigned long)l->early);
		}
		printf(", \"overhead_cpu\": %.3f, \"overhead_client\": %.3f, "
		       "\"overhead_server\": %.3f}\n",
		       sa.cpu_us / sb.cpu_us, sa.cli_us / sb.cli_us, sa.srv_us / sb.srv_us);
	} else {
		printf(
		    "%zu RPCs each, 4-byte request and response, 0-RTT resumption, one process\n",
		    n);
		printf("%-10s %9s %9s %10s %10s %8s %8s %12s %12s\n", "loop", "wall us", "cpu us",
		       "client us", "server us", "p50 us", "p99 us", "first B", "final B");
		for (int i = 0; i < 2; i++) {
			const struct loop *l = i ? &lb : &la;
			const struct summary *s = i ? &sb : &sa;

			printf("%-10s %9.2f %9.2f %10.2f %10.2f %8.2f %8.2f %12zu %12zu\n", l->name,
			       s->wall_us, s->cpu_us, s->cli_us, s->srv_us, s->p50_us, s->p99_us,
			       l->first_len, l->final_len);
		}
		printf("overhead (r2p2-tls / boringssl): cpu %.3fx, client %.3fx, server %.3fx "
		       "(target 1.15x)\n",
		       sa.cpu_us / sb.cpu_us, sa.cli_us / sb.cli_us, sa.srv_us / sb.srv_us);
		printf("first B includes our 10-byte frame header; final B too\n");
	}
	ours_free(&o);
	bare_free(&b);
	free(la.cli_ns);
	free(la.srv_ns);
	free(lb.cli_ns);
	free(lb.srv_ns);
	if (tmpdir[0]) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "r2p2-tls-bench: could not remove %s\n", tmpdir);
	}
	return 0;
}
