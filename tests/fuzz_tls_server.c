// SPDX-License-Identifier: MIT
/*
 * fuzz_tls_server: libFuzzer harness over the tls-mode server (tls_server_input,
 * daemon/tls.c, on BoringSSL): every byte a client sends in a tls-mode request.
 *
 * Setup, once: certificates from tools/gen-certs.sh (as test_tls) in a private
 * temporary directory, a fixed STEK, and two servers of echo.svc and kv.svc (0-RTT
 * allowed, and not). A real client (tls_call_begin) then makes the template
 * flights: a first ClientHello, one with a ticket and the request as 0-RTT data,
 * one with a ticket and no early data, and a first ClientHello to kv.svc. Each
 * input gets a fresh strike register, and every pending handshake and every conn
 * handed out is freed before the next input.
 *
 * Input: byte 0 bit 0 picks the server without 0-RTT; then operations, an opcode
 * byte and its arguments (missing bytes read as 0):
 *   0 raw       len (2 bytes, big-endian), bytes: any request payload
 *   1 template  index, mutations: a template flight, mutated
 *   2 live      mutations: a live client's full handshake; its CLIENT_SECOND (the
 *               Finished and the 1-RTT request) is mutated
 *   3 second    len, bytes: TLS records sent as CLIENT_SECOND of the latest
 *               SERVER_HANDSHAKE's id (the fuzzer cannot guess a random id)
 *   4 answer    bit 0: answer requests with tls_server_respond (else tls_conn_free),
 *               bits 1-7: response length
 *   5 time      the clock moves on 0.1 s times a byte, then tls_server_expire
 *   6 route     service (echo.svc, kv.svc, unknown), peer (none, A, B)
 * mutations = a count byte (mod 8), then per mutation: offset (2 bytes), a byte to
 * XOR in; XOR 0 cuts the flight at the offset instead.
 *
 * Invariants (abort on violation): only the documented results, with a conn exactly
 * for TLS_SRV_REQUEST; a reply is a SERVER_HANDSHAKE frame with a non-zero id; a
 * refusal answers nothing or an ERROR frame; the live client's request arrives
 * byte for byte or not at all, whatever was mutated; no ClientHello random has its
 * 0-RTT data accepted twice within the strike register's window (120 s, the
 * default replay_window_ms); no pending handshake survives
 * tls_server_expire. AddressSanitizer watches every message as an exact heap copy.
 *
 * Seeds: tests/fuzz/fuzz_tls_server/, written by `R2P2_FUZZ_WRITE_SEEDS=DIR
 * ./fuzz_tls_server` (raw ones carry a real 0-RTT ClientHello; its ticket expires
 * after BoringSSL's ticket lifetime, the in-process templates never do).
 */
#include "boringssl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replay.h"
#include "stek.h"
#include "tls.h"

#ifndef R2P2_SOURCE_DIR
#error "R2P2_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

#define SVC "echo.svc"
#define SVC2 "kv.svc"
#define WINDOW_NS (120ull * 1000 * 1000 * 1000) /* replay_window_ms' default */
#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define MAX_ACCEPTED 16

enum { OP_RAW, OP_TEMPLATE, OP_LIVE, OP_SECOND, OP_ANSWER, OP_TIME, OP_ROUTE, OP_NUM };
enum { T_FIRST, T_EARLY, T_PSK, T_FIRST_KV, T_NUM };

static const uint8_t live_req[] = "live request over 1-RTT";

static char dir[256];
static struct stek_set *stek;
static struct tls_server *servers[2]; /* 0-RTT on, off */
static struct tls_client *client;     /* never holds a ticket */
static struct tls_buf templates[T_NUM];
static const struct r2p2_addr peers[2] = {
    {.family = AF_INET, .addr = {10, 0, 0, 1}, .port = 0x3930},
    {.family = AF_INET, .addr = {10, 0, 0, 2}, .port = 0x3930},
};

static struct {
	const uint8_t *in;
	size_t len, pos;
	struct tls_server *s;
	struct replay *strike;
	uint64_t now;
	const char *svc;
	const struct r2p2_addr *peer;
	bool respond;
	size_t resp_len;
	uint64_t last_id;
	struct {
		uint8_t random[32]; /* a ClientHello random whose 0-RTT data went up */
		uint64_t when;
	} accepted[MAX_ACCEPTED];
	unsigned num_accepted;
	struct tls_buf req, flight, out;
} F;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_tls_server: %s\n", what);
	exit(2);
}

static uint8_t next(void)
{
	return F.pos < F.len ? F.in[F.pos++] : 0;
}

static size_t next16(void)
{
	size_t v = next();

	return v << 8 | next();
}

/* ---- setup ----------------------------------------------------------------------- */

static void remove_dir(void)
{
	char cmd[400];

	if (!dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_tls_server: could not remove %s\n", dir);
}

static void make_keys(char *crt, char *key, char *crt2, char *key2, char *ca, size_t n)
{
	char cmd[1024], stek_path[320];
	FILE *f;

	if (system("command -v openssl >/dev/null 2>&1") != 0)
		die("the openssl CLI is missing (tools/gen-certs.sh needs it)");
	snprintf(dir, sizeof(dir), "%s/r2p2-fuzz-tls.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp");
	atexit(remove_dir);
	snprintf(cmd, sizeof(cmd), "bash '%s/tools/gen-certs.sh' '%s' " SVC " " SVC2 " >/dev/null",
		 R2P2_SOURCE_DIR, dir);
	if (system(cmd) != 0)
		die("tools/gen-certs.sh failed");
	snprintf(crt, n, "%s/" SVC ".crt", dir);
	snprintf(key, n, "%s/" SVC ".key", dir);
	snprintf(crt2, n, "%s/" SVC2 ".crt", dir);
	snprintf(key2, n, "%s/" SVC2 ".key", dir);
	snprintf(ca, n, "%s/ca.crt", dir);
	snprintf(stek_path, sizeof(stek_path), "%s/fuzz.keys", dir);
	f = fopen(stek_path, "w");
	if (!f || fputs("00000001   current   " K1 "\n", f) < 0 || fclose(f) != 0 ||
	    chmod(stek_path, 0600) != 0)
		die("writing the STEK file");
	if (stek_load(stek_path, &stek, cmd, sizeof(cmd)) != 0)
		die(cmd);
}

/* full_rpc runs one RPC of `c` against `s` to the end, so `c` stores a ticket. */
static void full_rpc(struct tls_client *c, struct tls_server *s, const char *svc)
{
	struct tls_buf to_srv = {0}, to_cli = {0}, req = {0}, resp = {0};
	struct tls_call *call = NULL;
	int rc;

	if (tls_call_begin(c, svc, (const uint8_t *)"ping", 4, true, &call, &to_srv) != 0)
		die("tls_call_begin");
	for (int round = 0; round < 4; round++) {
		struct tls_conn *conn = NULL;

		rc = tls_server_input(s, svc, &peers[0], to_srv.data, to_srv.len, 1, &conn, &req,
				      &to_cli);
		if (rc == TLS_SRV_REQUEST &&
		    tls_server_respond(s, conn, (const uint8_t *)"pong", 4, &to_cli) != 0)
			die("tls_server_respond");
		if (rc < 0)
			die("tls_server_input");
		rc = tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &resp);
		if (rc == TLS_CALL_DONE)
			break;
		if (rc != TLS_CALL_CONTINUE)
			die(tls_call_error(call));
	}
	tls_call_free(call);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&resp);
}

/* first_flight stores `c`'s CLIENT_FIRST of one call to `svc` in `out`. */
static void first_flight(struct tls_client *c, const char *svc, bool safe, struct tls_buf *out)
{
	static const uint8_t req[] = "template request";
	struct tls_call *call = NULL;

	if (tls_call_begin(c, svc, req, sizeof(req) - 1, safe, &call, out) != 0)
		die("tls_call_begin");
	tls_call_free(call);
}

static void setup(void)
{
	char crt[320], key[320], crt2[320], key2[320], ca[320], err[256] = "";
	struct tls_service_keys keys[2] = {{.name = SVC}, {.name = SVC2}};
	struct tls_client *ticketed;
	struct replay *r = replay_new(64, WINDOW_NS);

	make_keys(crt, key, crt2, key2, ca, sizeof(crt));
	keys[0].cert_path = crt;
	keys[0].key_path = key;
	keys[1].cert_path = crt2;
	keys[1].key_path = key2;
	for (int i = 0; i < 2; i++) {
		servers[i] = tls_server_new(keys, 2, i == 0, err, sizeof(err));
		if (!servers[i])
			die(err);
		tls_server_set_stek(servers[i], stek);
	}
	client = tls_client_new(ca, err, sizeof(err));
	ticketed = tls_client_new(ca, err, sizeof(err));
	if (!client || !ticketed || !r)
		die(err);
	tls_server_set_replay(servers[0], r);
	first_flight(client, SVC, true, &templates[T_FIRST]);
	first_flight(client, SVC2, true, &templates[T_FIRST_KV]);
	full_rpc(ticketed, servers[0], SVC);
	first_flight(ticketed, SVC, true, &templates[T_EARLY]);
	full_rpc(ticketed, servers[0], SVC);
	first_flight(ticketed, SVC, false, &templates[T_PSK]);
	tls_client_free(ticketed);
	tls_server_set_replay(servers[0], NULL);
	tls_server_expire(servers[0], UINT64_MAX, 0);
	replay_free(r);
	if (tls_client_tickets(client, SVC) || tls_client_tickets(client, SVC2))
		die("the live client holds a ticket");
}

/* ---- one exchange ---------------------------------------------------------------- */

/* client_random finds the ClientHello random in the handshake records of `msg`. */
static bool client_random(const uint8_t *msg, size_t len, uint8_t out[32])
{
	uint8_t hs[64];
	size_t n = 0;

	for (size_t p = TLS_FRAME_HDR_LEN; p + 5 <= len && n < sizeof(hs);) {
		size_t rec = (size_t)msg[p + 3] << 8 | msg[p + 4];

		if (p + 5 + rec > len)
			rec = len - p - 5;
		for (size_t i = 0; msg[p] == 22 && i < rec && n < sizeof(hs); i++)
			hs[n++] = msg[p + 5 + i];
		p += 5 + rec;
	}
	if (n < 6 + 32 || hs[0] != 1)
		return false;
	memcpy(out, hs + 6, 32);
	return true;
}

/*
 * exchange hands `len` bytes at `msg` to the server and checks the result. If
 * `want` is not NULL, a request handed up must be exactly `want_len` bytes of it.
 */
static int exchange(const uint8_t *msg, size_t len, const uint8_t *want, size_t want_len)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct tls_conn *conn = (struct tls_conn *)&conn;
	int rc;

	if (!copy)
		abort();
	memcpy(copy, msg, len);
	rc = tls_server_input(F.s, F.svc, F.peer, copy, len, F.now, &conn, &F.req, &F.flight);
	if (rc == TLS_SRV_REQUEST) {
		if (!conn || F.req.len > TLS_MSG_MAX)
			abort();
		if (want && (F.req.len != want_len || memcmp(F.req.data, want, want_len) != 0))
			abort(); /* a tampered flight handed up a different request */
		if (len >= 2 && (copy[1] & ~TLS_KIND_AUTH) == TLS_KIND_CLIENT_FIRST) {
			uint8_t random[32];

			/* 0-RTT data: the strike register lets each random through once per
			 * window (after that, BoringSSL's 60 s ticket-age check on the wall
			 * clock refuses it, which this fake clock cannot show) */
			if (!client_random(copy, len, random))
				abort();
			for (unsigned i = 0; i < F.num_accepted; i++)
				if (memcmp(F.accepted[i].random, random, 32) == 0 &&
				    F.now - F.accepted[i].when < WINDOW_NS)
					abort();
			if (F.num_accepted < MAX_ACCEPTED) {
				memcpy(F.accepted[F.num_accepted].random, random, 32);
				F.accepted[F.num_accepted++].when = F.now;
			}
		}
		if (F.respond) {
			uint8_t *resp = calloc(1, F.resp_len + 1);

			if (!resp)
				abort();
			if (tls_server_respond(F.s, conn, resp, F.resp_len, &F.out) != 0 ||
			    F.out.len <= TLS_FRAME_HDR_LEN || F.out.data[0] != TLS_FRAME_VERSION ||
			    (F.out.data[1] & ~TLS_KIND_AUTH) != TLS_KIND_SERVER_FINAL)
				abort();
			free(resp);
		} else {
			tls_conn_free(conn);
		}
	} else if (rc == TLS_SRV_REPLY) {
		if (conn || F.flight.len < TLS_FRAME_HDR_LEN ||
		    F.flight.data[0] != TLS_FRAME_VERSION ||
		    (F.flight.data[1] & ~TLS_KIND_AUTH) != TLS_KIND_SERVER_HANDSHAKE)
			abort();
		F.last_id = 0;
		for (int i = 0; i < 8; i++)
			F.last_id = F.last_id << 8 | F.flight.data[2 + i];
		if (!F.last_id)
			abort();
	} else if (rc < 0) {
		if (conn)
			abort();
		if (F.flight.len &&
		    (F.flight.len < TLS_FRAME_HDR_LEN || F.flight.data[0] != TLS_FRAME_VERSION ||
		     (F.flight.data[1] & ~TLS_KIND_AUTH) != TLS_KIND_ERROR))
			abort();
	} else {
		abort();
	}
	free(copy);
	return rc;
}

/* mutate copies `src` into `dst` and applies the input's mutations. */
static void mutate(const struct tls_buf *src, struct tls_buf *dst)
{
	unsigned n = next() % 8;

	dst->len = 0;
	if (src->len > dst->cap) {
		uint8_t *d = realloc(dst->data, src->len);

		if (!d)
			abort();
		dst->data = d;
		dst->cap = src->len;
	}
	memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
	while (n--) {
		size_t off = next16();
		uint8_t x = next();

		if (!dst->len)
			break;
		off %= dst->len;
		if (x)
			dst->data[off] ^= x;
		else
			dst->len = off;
	}
}

static void op_live(void)
{
	struct tls_buf to_srv = {0}, to_cli = {0}, resp = {0}, second = {0};
	const char *svc = F.svc;
	struct tls_call *call = NULL;
	int rc;

	if (strcmp(svc, SVC) != 0 && strcmp(svc, SVC2) != 0)
		svc = SVC;
	if (tls_client_tickets(client, svc))
		abort();
	if (tls_call_begin(client, svc, live_req, sizeof(live_req), false, &call, &to_srv) != 0)
		abort();
	rc = tls_server_input(F.s, svc, F.peer, to_srv.data, to_srv.len, F.now,
			      &(struct tls_conn *){NULL}, &F.req, &to_cli);
	if (rc != TLS_SRV_REPLY)
		abort(); /* an untouched first flight always gets its handshake */
	if (tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &resp) != TLS_CALL_CONTINUE)
		abort();
	mutate(&to_srv, &second);
	{
		const char *saved = F.svc;

		F.svc = svc;
		rc = exchange(second.data, second.len, live_req, sizeof(live_req));
		F.svc = saved;
	}
	if (second.len == to_srv.len && memcmp(second.data, to_srv.data, to_srv.len) == 0 &&
	    rc != TLS_SRV_REQUEST)
		abort(); /* untouched, the request goes through */
	tls_call_free(call);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&resp);
	tls_buf_cleanup(&second);
}

/* ---- seeds ----------------------------------------------------------------------- */

static void write_seed(const char *name, const uint8_t *b, size_t n)
{
	const char *d = getenv("R2P2_FUZZ_WRITE_SEEDS");
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", d, name);
	f = fopen(p, "wb");
	if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0)
		die(p);
}

/* raw_seed writes [cfg, OP_RAW, len, bytes] for template `t` (then `tail`). */
static void raw_seed(const char *name, uint8_t cfg, int t, const uint8_t *tail, size_t tail_len)
{
	const struct tls_buf *b = &templates[t];
	uint8_t *s = malloc(4 + b->len + tail_len);

	if (!s)
		die("malloc");
	s[0] = cfg;
	s[1] = OP_RAW;
	s[2] = (uint8_t)(b->len >> 8);
	s[3] = (uint8_t)b->len;
	memcpy(s + 4, b->data, b->len);
	if (tail_len)
		memcpy(s + 4 + b->len, tail, tail_len);
	write_seed(name, s, 4 + b->len + tail_len);
	free(s);
}

static void write_seeds(void)
{
	/* clang-format off */
	static const uint8_t early_twice[] = {
	    OP_ANSWER, 0x21,
	    OP_TEMPLATE, T_EARLY, 0,
	    OP_TEMPLATE, T_EARLY, 0};
	static const uint8_t live[] = {
	    0,
	    OP_ANSWER, 0x11,
	    OP_LIVE, 0,
	    OP_LIVE, 1, 0, 40, 0x01};
	static const uint8_t live_kv_cut[] = {
	    1,
	    OP_ROUTE, 1, 1,
	    OP_LIVE, 1, 0, 60, 0};
	static const uint8_t templates_mut[] = {
	    0,
	    OP_TEMPLATE, T_PSK, 1, 0, 0x30, 0x80,
	    OP_TEMPLATE, T_FIRST_KV, 0,
	    OP_ROUTE, 1, 2,
	    OP_TEMPLATE, T_FIRST_KV, 0};
	static const uint8_t second_junk[] = {
	    0,
	    OP_TEMPLATE, T_FIRST, 0,
	    OP_SECOND, 0, 6, 0x17, 0x03, 0x03, 0x00, 0x01, 0x00,
	    OP_TIME, 200,
	    OP_SECOND, 0, 0};
	/* clang-format on */

	raw_seed("raw_first", 0, T_FIRST, NULL, 0);
	raw_seed("raw_early_then_answer", 0, T_EARLY, early_twice, sizeof(early_twice));
	raw_seed("raw_early_no_0rtt_server", 1, T_EARLY, NULL, 0);
	raw_seed("raw_psk", 0, T_PSK, NULL, 0);
	write_seed("live", live, sizeof(live));
	write_seed("live_kv_cut", live_kv_cut, sizeof(live_kv_cut));
	write_seed("templates_mutated", templates_mut, sizeof(templates_mut));
	write_seed("second_junk", second_junk, sizeof(second_junk));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setup();
	if (getenv("R2P2_FUZZ_WRITE_SEEDS")) {
		write_seeds();
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const svcs[] = {SVC, SVC2, "unknown.svc"};
	struct tls_buf mut = {0};
	struct tls_stats st;
	uint8_t hdr[TLS_FRAME_HDR_LEN + 0xFFFF + 1];

	F.in = data;
	F.len = size;
	F.pos = 0;
	F.s = servers[next() & 1];
	F.strike = replay_new(64, WINDOW_NS);
	if (!F.strike)
		abort();
	tls_server_set_replay(F.s, F.strike);
	F.now = 1000000000ull;
	F.svc = SVC;
	F.peer = &peers[0];
	F.respond = true;
	F.resp_len = 4;
	F.last_id = 0;
	F.num_accepted = 0;

	while (F.pos < F.len) {
		size_t n;
		uint8_t b;

		switch (next() % OP_NUM) {
		case OP_RAW:
			n = next16();
			if (n > F.len - F.pos)
				n = F.len - F.pos;
			exchange(F.in + F.pos, n, NULL, 0);
			F.pos += n;
			break;
		case OP_TEMPLATE:
			mutate(&templates[next() % T_NUM], &mut);
			exchange(mut.data, mut.len, NULL, 0);
			break;
		case OP_LIVE:
			op_live();
			break;
		case OP_SECOND:
			n = next16();
			if (n > F.len - F.pos)
				n = F.len - F.pos;
			hdr[0] = TLS_FRAME_VERSION;
			hdr[1] = TLS_KIND_CLIENT_SECOND;
			for (int i = 0; i < 8; i++)
				hdr[2 + i] = (uint8_t)(F.last_id >> (56 - 8 * i));
			memcpy(hdr + TLS_FRAME_HDR_LEN, F.in + F.pos, n);
			F.pos += n;
			exchange(hdr, TLS_FRAME_HDR_LEN + n, NULL, 0);
			break;
		case OP_ANSWER:
			b = next();
			F.respond = b & 1;
			F.resp_len = (size_t)(b >> 1) * 97;
			break;
		case OP_TIME:
			F.now += next() * 100000000ull;
			tls_server_expire(F.s, F.now, WINDOW_NS);
			break;
		case OP_ROUTE:
			F.svc = svcs[next() % 3];
			b = next() % 3;
			F.peer = b ? &peers[b - 1] : NULL;
			break;
		}
	}

	/* Nothing survives the input: pending handshakes go, the register is dropped. */
	tls_server_expire(F.s, UINT64_MAX, 0);
	tls_server_stats(F.s, &st);
	if (st.pending_handshakes)
		abort();
	tls_server_set_replay(F.s, NULL);
	replay_free(F.strike);
	tls_buf_cleanup(&mut);
	return 0;
}
