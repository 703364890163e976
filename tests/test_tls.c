// SPDX-License-Identifier: MIT
/*
 * test_tls: tls mode end to end in one process (daemon/security/tls.c): client and server
 * objects exchange flights directly. Proves full handshake then 0-RTT, exactly-once
 * execution on every path (1-RTT fallback, replay, large messages), tickets across
 * servers and STEK rotation, certificate and name checks, and that corrupted or
 * garbage flights fail cleanly. Certificates come from tools/gen-certs.sh at run time.
 *
 * BoringSSL only: minitest.h, not Criterion (see there why).
 */
#include "boringssl.h"

#include "minitest.h"
#include "tls_fixture.h"

#include "replay.h"
#include "stek.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef R2P2_SOURCE_DIR
#error "R2P2_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

#define SVC "echo.svc"
#define WINDOW_NS (10ull * 1000 * 1000 * 1000)

static char dir[256];	    /* certificates and STEK files of this run */
static char other_dir[300]; /* a second, unrelated CA */
static char ca[320], other_ca[340], echo_crt[320], echo_key[320];
static char stek1[320], stek2[320], stek3[320];

static const struct r2p2_addr peer = {.family = AF_INET, .addr = {10, 0, 0, 1}};
static uint64_t clock_ns = 1000000000ull;

static uint64_t tick(void)
{
	return clock_ns += 1000;
}

/* ---- fixtures -------------------------------------------------------------------- */

static void setup(void)
{
	fixture_mkdtemp(dir, sizeof(dir), "r2p2-test-tls");
	snprintf(other_dir, sizeof(other_dir), "%s/other", dir);
	fixture_certs(dir, SVC " kv.svc");
	fixture_certs(other_dir, SVC);
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(other_ca, sizeof(other_ca), "%s/ca.crt", other_dir);
	snprintf(echo_crt, sizeof(echo_crt), "%s/" SVC ".crt", dir);
	snprintf(echo_key, sizeof(echo_key), "%s/" SVC ".key", dir);
	snprintf(stek1, sizeof(stek1), "%s/stek1.keys", dir);
	snprintf(stek2, sizeof(stek2), "%s/stek2.keys", dir);
	snprintf(stek3, sizeof(stek3), "%s/stek3.keys", dir);
#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define K3 "3333333333333333333333333333333333333333333333333333333333333333"
	/* stek2 is stek1 rotated once; stek3 shares no key with either */
	fixture_write_stek(stek1, "00000001   current   " K1 "\n");
	fixture_write_stek(stek2, "00000002   current   " K2 "\n00000001   previous  " K1 "\n");
	fixture_write_stek(stek3, "00000003   current   " K3 "\n");
}

static void teardown(void)
{
	fixture_remove(dir);
}

/* A server of the test fleet: its own tls_server, STEK set and strike register. */
struct srv {
	struct tls_server *s;
	struct stek_set *stek;
	struct replay *rp;
};

static void srv_open_as(struct srv *v, const char *name, bool early, const char *stek_path,
			size_t replay_entries)
{
	const struct tls_service_keys keys[] = {
	    {.name = name, .cert_path = echo_crt, .key_path = echo_key},
	};
	char err[256] = "";

	memset(v, 0, sizeof(*v));
	v->s = tls_server_new(keys, 1, early, err, sizeof(err));
	CHECK_MSG(v->s, "tls_server_new: %s", err);
	if (stek_path) {
		CHECK_MSG(stek_load(stek_path, &v->stek, err, sizeof(err)) == 0, "%s", err);
		tls_server_set_stek(v->s, v->stek);
	}
	v->rp = replay_new(replay_entries, WINDOW_NS);
	CHECK(v->rp);
	tls_server_set_replay(v->s, v->rp);
}

static void srv_open(struct srv *v, bool early, const char *stek_path)
{
	srv_open_as(v, SVC, early, stek_path, 1024);
}

static void srv_close(struct srv *v)
{
	tls_server_free(v->s);
	stek_set_put(v->stek);
	replay_free(v->rp);
}

static struct tls_client *client_open(const char *ca_path)
{
	char err[256] = "";
	struct tls_client *c = tls_client_new(ca_path, err, sizeof(err));

	CHECK_MSG(c, "tls_client_new: %s", err);
	return c;
}

static struct tls_stats cstats(const struct tls_client *c)
{
	struct tls_stats st;

	tls_client_stats(c, &st);
	return st;
}

static struct tls_stats sstats(const struct srv *v)
{
	struct tls_stats st;

	tls_server_stats(v->s, &st);
	return st;
}

/* ---- one RPC --------------------------------------------------------------------- */

struct rpc {
	int rc;	       /* 0 (done) or the first error */
	char where;    /* b: tls_call_begin, s: server input, r: respond, c: client input */
	int client_rc; /* after a server error: what the client made of the ERROR flight */
	int requests;  /* TLS_SRV_REQUEST returned */
	int continues; /* TLS_CALL_CONTINUE returned */
	bool req_ok, resp_ok, early;
	size_t first_len, handshake_len, second_len, final_len;
	char err[256];
};

static void rpc_run(struct tls_client *c, struct tls_server *s, const char *svc, const uint8_t *req,
		    size_t len, bool safe, const uint8_t *resp, size_t resp_len, struct rpc *out)
{
	struct tls_buf to_srv = {0}, to_cli = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	out->req_ok = true;
	rc = tls_call_begin(c, svc, req, len, safe, &call, &to_srv);
	if (rc != 0) {
		out->rc = rc;
		out->where = 'b';
		goto out;
	}
	out->first_len = to_srv.len;
	for (int round = 0; round < 4; round++) {
		struct tls_conn *conn = NULL;

		rc = tls_server_input(s, svc, &peer, to_srv.data, to_srv.len, tick(), &conn,
				      &got_req, &to_cli);
		if (rc < 0) {
			out->rc = rc;
			out->where = 's';
			if (to_cli.len)
				out->client_rc = tls_call_input(call, to_cli.data, to_cli.len,
								&to_srv, &got_resp);
			snprintf(out->err, sizeof(out->err), "%s", tls_call_error(call));
			goto out;
		}
		if (rc == TLS_SRV_REQUEST) {
			out->requests++;
			if (got_req.len != len || (len && memcmp(got_req.data, req, len) != 0))
				out->req_ok = false;
			rc = tls_server_respond(s, conn, resp, resp_len, &to_cli);
			if (rc != 0) {
				out->rc = rc;
				out->where = 'r';
				goto out;
			}
			out->final_len = to_cli.len;
		}
		rc = tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp);
		if (rc == TLS_CALL_DONE) {
			out->resp_ok = got_resp.len == resp_len &&
				       (!resp_len || memcmp(got_resp.data, resp, resp_len) == 0);
			out->early = tls_call_early_accepted(call);
			goto out;
		}
		if (rc != TLS_CALL_CONTINUE) {
			out->rc = rc;
			out->where = 'c';
			snprintf(out->err, sizeof(out->err), "%s", tls_call_error(call));
			goto out;
		}
		out->continues++;
		out->handshake_len = to_cli.len;
		out->second_len = to_srv.len;
	}
	out->rc = -ELOOP;
out:
	tls_call_free(call);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
}

static const uint8_t ping[] = "ping";
static const uint8_t pong[] = "pong";

/* rpc_ok runs one 4-byte echo and checks it completed exactly once. */
static struct rpc rpc_ok(struct tls_client *c, struct tls_server *s, bool safe)
{
	struct rpc r;

	rpc_run(c, s, SVC, ping, 4, safe, pong, 4, &r);
	CHECK_MSG(r.rc == 0, "rpc failed at '%c': %d (%s)", r.where, r.rc, r.err);
	CHECK_EQ(r.requests, 1);
	CHECK(r.req_ok);
	CHECK(r.resp_ok);
	return r;
}

/* ---- tests ----------------------------------------------------------------------- */

TEST(full_handshake_then_0rtt)
{
	struct tls_client *c = client_open(ca);
	struct srv a;
	struct tls_stats st;
	struct rpc r;

	srv_open(&a, true, stek1);
	/* first contact: no ticket, so ClientHello only; the request goes 1-RTT */
	r = rpc_ok(c, a.s, true);
	CHECK_EQ(r.continues, 1);
	CHECK(!r.early);
	mt_note("first contact: CLIENT_FIRST %zu, SERVER_HANDSHAKE %zu, CLIENT_SECOND %zu, "
		"SERVER_FINAL %zu bytes",
		r.first_len, r.handshake_len, r.second_len, r.final_len);
	st = cstats(c);
	CHECK_EQ(st.handshakes_full, 1);
	CHECK_EQ(st.resumed, 0);
	CHECK_EQ(st.early_accepted, 0);
	CHECK_EQ(st.tickets_received, 1);
	CHECK_EQ(tls_client_tickets(c, SVC), 1);
	CHECK_EQ(sstats(&a).pending_handshakes, 0);

	/* second: ticket + request as 0-RTT data, one round trip */
	r = rpc_ok(c, a.s, true);
	CHECK_EQ(r.continues, 0);
	CHECK(r.early);
	st = cstats(c);
	CHECK_EQ(st.resumed, 1);
	CHECK_EQ(st.early_accepted, 1);
	CHECK_EQ(st.early_rejected, 0);
	/* the half-RTT ticket replaced the one spent */
	CHECK_EQ(st.tickets_received, 2);
	CHECK_EQ(tls_client_tickets(c, SVC), 1);
	CHECK_EQ(sstats(&a).early_accepted, 1);
	mt_note("0-RTT flights: CLIENT_FIRST %zu bytes, SERVER_FINAL %zu bytes", r.first_len,
		r.final_len);

	/* and again, on the renewed ticket */
	for (int i = 0; i < 3; i++) {
		r = rpc_ok(c, a.s, true);
		CHECK_EQ(r.continues, 0);
		CHECK(r.early);
	}
	CHECK_EQ(cstats(c).early_accepted, 4);
	tls_client_free(c);
	srv_close(&a);
}

TEST(large_messages)
{
	struct tls_client *c = client_open(ca);
	size_t big = 64 * 1024 + 123;
	uint8_t *req = malloc(big), *resp = malloc(big);
	struct srv a;
	struct rpc r;

	CHECK(req && resp);
	for (size_t i = 0; i < big; i++) {
		req[i] = (uint8_t)(i * 7 + 1);
		resp[i] = (uint8_t)(i * 13 + 5);
	}
	srv_open(&a, true, stek1);
	rpc_ok(c, a.s, true); /* a ticket */

	/* over the early data limit: resumption, but the request goes 1-RTT, once */
	rpc_run(c, a.s, SVC, req, big, true, resp, big, &r);
	CHECK_MSG(r.rc == 0, "%d at %c: %s", r.rc, r.where, r.err);
	CHECK_EQ(r.requests, 1);
	CHECK_EQ(r.continues, 1);
	CHECK(r.req_ok && r.resp_ok && !r.early);
	CHECK(r.final_len > big);

	/* exactly at the limit (prefix and binding included): still 0-RTT; one byte more: 1-RTT */
	rpc_run(c, a.s, SVC, req, TLS_EARLY_DATA_MAX - TLS_MSG_PREFIX_LEN - TLS_BIND_LEN, true,
		resp, 10, &r);
	CHECK_MSG(r.rc == 0, "%d at %c: %s", r.rc, r.where, r.err);
	CHECK(r.early && r.req_ok && r.resp_ok);
	CHECK_EQ(r.continues, 0);
	CHECK_EQ(r.requests, 1);
	rpc_run(c, a.s, SVC, req, TLS_EARLY_DATA_MAX - TLS_MSG_PREFIX_LEN - TLS_BIND_LEN + 1, true,
		resp, 10, &r);
	CHECK_MSG(r.rc == 0, "%d at %c: %s", r.rc, r.where, r.err);
	CHECK(!r.early && r.req_ok && r.resp_ok);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(r.requests, 1);

	/* 0-RTT request, 64 KiB response (several half-RTT records) */
	rpc_run(c, a.s, SVC, req, 100, true, resp, big, &r);
	CHECK_MSG(r.rc == 0, "%d at %c: %s", r.rc, r.where, r.err);
	CHECK(r.early && r.req_ok && r.resp_ok);
	CHECK_EQ(r.requests, 1);

	/* empty request and response */
	rpc_run(c, a.s, SVC, NULL, 0, true, NULL, 0, &r);
	CHECK_MSG(r.rc == 0, "%d at %c: %s", r.rc, r.where, r.err);
	CHECK(r.early && r.req_ok && r.resp_ok);
	free(req);
	free(resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(not_replay_safe_sends_no_early_data)
{
	struct tls_client *c = client_open(ca);
	struct tls_stats before;
	struct srv a;
	struct rpc r;

	srv_open(&a, true, stek1);
	rpc_ok(c, a.s, true);
	before = cstats(c);
	r = rpc_ok(c, a.s, false);
	CHECK_EQ(r.continues, 1);
	CHECK(!r.early);
	/* resumed with the ticket, but nothing was offered as early data */
	CHECK_EQ(cstats(c).resumed, before.resumed + 1);
	CHECK_EQ(cstats(c).early_accepted, before.early_accepted);
	CHECK_EQ(cstats(c).early_rejected, before.early_rejected);
	CHECK_EQ(sstats(&a).early_accepted, 0);
	CHECK_EQ(sstats(&a).early_rejected, 0);
	tls_client_free(c);
	srv_close(&a);
}

TEST(server_with_early_data_off)
{
	struct tls_client *c = client_open(ca);
	struct srv a, off;
	struct rpc r;

	srv_open(&a, true, stek1);
	srv_open(&off, false, stek1);
	rpc_ok(c, a.s, true); /* a 0-RTT-capable ticket from a */

	/* offered to a server that does not take early data: refused, 1-RTT, once */
	r = rpc_ok(c, off.s, true);
	CHECK_EQ(r.continues, 1);
	CHECK(!r.early);
	CHECK_EQ(cstats(c).early_rejected, 1);
	CHECK_EQ(cstats(c).resumed, 1);
	CHECK_EQ(sstats(&off).early_accepted, 0);
	CHECK_EQ(sstats(&off).early_rejected, 1);
	CHECK_EQ(sstats(&off).resumed, 1);

	/* its tickets allow no early data: not even offered next time */
	r = rpc_ok(c, off.s, true);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(cstats(c).early_rejected, 1);
	CHECK_EQ(cstats(c).resumed, 2);
	tls_client_free(c);
	srv_close(&a);
	srv_close(&off);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A ticket issued before the server started carries no early data: the previous
 * process may have run a first flight made with it. The call goes 1-RTT, once. */
TEST(ticket_from_before_the_start_gets_no_early_data)
{
	struct tls_client *c = client_open(ca);
	struct srv a, restarted;
	struct rpc r;

	srv_open(&a, true, stek1);
	rpc_ok(c, a.s, true); /* a ticket, issued now */
	srv_open(&restarted, true, stek1);
	tls_server_set_early_limits(restarted.s, wall_ms() + 1, 0);
	usleep(5 * 1000); /* every ticket from now on is issued after the start */
	r = rpc_ok(c, restarted.s, true);
	CHECK(!r.early);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(sstats(&restarted).early_too_old, 1);
	CHECK_EQ(sstats(&restarted).resumed, 1);
	/* the ticket of an exchange whose early data was refused allows none (BoringSSL);
	 * the one after is issued after the start and allows it: 0-RTT again */
	r = rpc_ok(c, restarted.s, true);
	CHECK(!r.early);
	r = rpc_ok(c, restarted.s, true);
	CHECK(r.early);
	CHECK_EQ(sstats(&restarted).early_too_old, 1);
	tls_client_free(c);
	srv_close(&a);
	srv_close(&restarted);
}

/* A ticket older than the strike register's window carries no early data, so a
 * first flight replayed after the register forgot it cannot run. */
TEST(ticket_older_than_the_window_gets_no_early_data)
{
	struct tls_client *c = client_open(ca);
	struct srv a;
	struct rpc r;

	srv_open(&a, true, stek1);
	tls_server_set_early_limits(a.s, 0, 20);
	rpc_ok(c, a.s, true); /* a ticket */
	usleep(50 * 1000);
	r = rpc_ok(c, a.s, true);
	CHECK(!r.early);
	CHECK_EQ(sstats(&a).early_too_old, 1);
	rpc_ok(c, a.s, true);	  /* its ticket allows no early data (BoringSSL) */
	r = rpc_ok(c, a.s, true); /* a fresh ticket that does */
	CHECK(r.early);
	tls_client_free(c);
	srv_close(&a);
}

TEST(ticket_resumes_on_another_server)
{
	struct tls_client *c = client_open(ca);
	const struct tls_service_keys keys[] = {
	    {.name = SVC, .cert_path = echo_crt, .key_path = echo_key},
	};
	struct tls_server *a, *b;
	struct stek_set *set = NULL;
	struct replay *ra = replay_new(64, WINDOW_NS), *rb = replay_new(64, WINDOW_NS);
	char err[256];
	struct rpc r;

	/* two servers of the fleet: separate SSL_CTXs and registers, one STEK set */
	CHECK_MSG(stek_load(stek1, &set, err, sizeof(err)) == 0, "%s", err);
	a = tls_server_new(keys, 1, true, err, sizeof(err));
	b = tls_server_new(keys, 1, true, err, sizeof(err));
	CHECK(a && b && ra && rb);
	tls_server_set_stek(a, set);
	tls_server_set_stek(b, set);
	tls_server_set_replay(a, ra);
	tls_server_set_replay(b, rb);

	rpc_ok(c, a, true);
	r = rpc_ok(c, b, true); /* a's ticket, 0-RTT on b */
	CHECK(r.early);
	CHECK_EQ(r.continues, 0);
	r = rpc_ok(c, a, true); /* b's ticket, 0-RTT on a */
	CHECK(r.early);
	CHECK_EQ(cstats(c).handshakes_full, 1);
	tls_server_free(a);
	tls_server_free(b);
	stek_set_put(set);
	replay_free(ra);
	replay_free(rb);
	tls_client_free(c);
}

TEST(stek_rotation)
{
	struct tls_client *c = client_open(ca);
	struct srv a, b, cc;
	struct rpc r;

	srv_open(&a, true, stek1);  /* current 1 */
	srv_open(&b, true, stek2);  /* current 2, previous 1 */
	srv_open(&cc, true, stek3); /* current 3 only */

	rpc_ok(c, a.s, true); /* ticket under key 1 */
	r = rpc_ok(c, b.s, true);
	CHECK(r.early); /* b opens key 1 as previous */
	r = rpc_ok(c, a.s, true);
	CHECK(!r.early); /* b sealed under key 2, which a (late rotator) lacks */
	CHECK_EQ(r.continues, 1);
	r = rpc_ok(c, b.s, true); /* a issued under key 1 again */
	CHECK(r.early);

	/* unknown key id: full handshake with certificate check, then it works */
	r = rpc_ok(c, cc.s, true);
	CHECK(!r.early);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(cstats(c).handshakes_full, 3);
	r = rpc_ok(c, cc.s, true);
	CHECK(r.early);
	tls_client_free(c);
	srv_close(&a);
	srv_close(&b);
	srv_close(&cc);
}

/* The frame header is version, kind, then the handshake id in big-endian order. */
TEST(frame_header_bytes)
{
	/* our client asks for answer proofs; the answers carry them */
	static const uint8_t first_hdr[TLS_FRAME_HDR_LEN] = {1,
							     TLS_KIND_CLIENT_FIRST | TLS_KIND_AUTH};
	static const uint8_t final_hdr[TLS_FRAME_HDR_LEN] = {1,
							     TLS_KIND_SERVER_FINAL | TLS_KIND_AUTH};
	struct tls_client *c = client_open(ca);
	struct tls_buf to_cli = {0}, to_srv = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &to_srv), 0);
	CHECK(to_srv.len > TLS_FRAME_HDR_LEN);
	CHECK(memcmp(to_srv.data, first_hdr, TLS_FRAME_HDR_LEN) == 0);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
				  &to_cli),
		 TLS_SRV_REPLY);
	CHECK_EQ(to_cli.data[0], TLS_FRAME_VERSION);
	CHECK_EQ(to_cli.data[1], TLS_KIND_SERVER_HANDSHAKE | TLS_KIND_AUTH);
	/* a full handshake: the certificate and a signature, type 2 */
	CHECK_EQ(to_cli.data[to_cli.len - 3], TLS_PROOF_SIG);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp),
		 TLS_CALL_CONTINUE);
	CHECK_EQ(to_srv.data[0], TLS_FRAME_VERSION);
	CHECK_EQ(to_srv.data[1], TLS_KIND_CLIENT_SECOND);
	CHECK(memcmp(to_srv.data + 2, to_cli.data + 2, 8) == 0); /* the id comes back as sent */
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
				  &to_cli),
		 TLS_SRV_REQUEST);
	CHECK_EQ(tls_server_respond(a.s, conn, pong, 4, &to_cli), 0);
	CHECK(memcmp(to_cli.data, final_hdr, TLS_FRAME_HDR_LEN) == 0);
	/* the handshake is complete: a 16-byte tag under an exporter key, type 1 */
	CHECK_EQ(to_cli.data[to_cli.len - 3], TLS_PROOF_TAG);
	CHECK_EQ(to_cli.data[to_cli.len - 1], TLS_PROOF_TAG_LEN);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp), TLS_CALL_DONE);
	CHECK(got_resp.len == 4 && memcmp(got_resp.data, pong, 4) == 0);
	tls_call_free(call);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(replayed_first_flight_is_not_executed_twice)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf first = {0}, to_cli = {0}, to_srv = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;
	int rc;

	srv_open(&a, true, stek1);
	rpc_ok(c, a.s, true);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &first), 0);
	rc = tls_server_input(a.s, SVC, &peer, first.data, first.len, tick(), &conn, &got_req,
			      &to_cli);
	CHECK_EQ(rc, TLS_SRV_REQUEST);
	CHECK_EQ(tls_server_respond(a.s, conn, pong, 4, &to_cli), 0);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp), TLS_CALL_DONE);
	CHECK(tls_call_early_accepted(call));

	/* the attacker (or the network) sends the same bytes again */
	for (int i = 0; i < 2; i++) {
		conn = NULL;
		rc = tls_server_input(a.s, SVC, &peer, first.data, first.len, tick(), &conn,
				      &got_req, &to_cli);
		CHECK_EQ(rc, TLS_SRV_REPLY);
		CHECK(conn == NULL);
		CHECK_EQ(got_req.len, 0);
		CHECK_EQ(to_cli.data[1], TLS_KIND_SERVER_HANDSHAKE | TLS_KIND_AUTH);
		CHECK_EQ(sstats(&a).replays_refused, (uint64_t)i + 1);
	}
	CHECK_EQ(sstats(&a).early_accepted, 1);
	CHECK_EQ(sstats(&a).early_rejected, 2);
	/* nobody can finish those handshakes; they expire */
	CHECK_EQ(sstats(&a).pending_handshakes, 2);
	tls_server_expire(a.s, tick() + WINDOW_NS, WINDOW_NS);
	CHECK_EQ(sstats(&a).pending_handshakes, 0);
	tls_call_free(call);
	tls_buf_cleanup(&first);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(full_strike_register_fails_closed)
{
	struct tls_client *c = client_open(ca);
	struct srv a;
	struct rpc r;

	srv_open_as(&a, SVC, true, stek1, 1); /* room for one ClientHello random */
	rpc_ok(c, a.s, true);
	r = rpc_ok(c, a.s, true);
	CHECK(r.early);
	/* the register is full: 0-RTT refused, the request still runs once, 1-RTT */
	r = rpc_ok(c, a.s, true);
	CHECK(!r.early);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(sstats(&a).early_rejected, 1);
	CHECK_EQ(sstats(&a).replays_refused, 0);
	tls_client_free(c);
	srv_close(&a);
}

TEST(wrong_service_name_is_refused)
{
	struct tls_client *c = client_open(ca);
	struct srv b;
	struct rpc r;

	/* a server that calls itself b.svc but holds echo.svc's certificate */
	srv_open_as(&b, "b.svc", true, stek1, 64);
	rpc_run(c, b.s, "b.svc", ping, 4, true, pong, 4, &r);
	/* its answer is set aside before BoringSSL sees it (anyone can sign with a key of
	 * their own): the call would time out, saying why */
	CHECK_EQ(r.rc, TLS_CALL_IGNORE);
	CHECK_EQ(r.where, 'c');
	CHECK_EQ(r.requests, 0);
	CHECK_MSG(strstr(r.err, "name mismatch") && strstr(r.err, "b.svc"), "error: %s", r.err);
	CHECK_EQ(cstats(c).verify_failures, 1);
	CHECK_EQ(tls_client_tickets(c, "b.svc"), 0);
	tls_client_free(c);
	srv_close(&b);
}

TEST(untrusted_ca_is_refused)
{
	struct tls_client *c = client_open(other_ca);
	struct srv a;
	struct rpc r;

	srv_open(&a, true, stek1);
	rpc_run(c, a.s, SVC, ping, 4, true, pong, 4, &r);
	CHECK_EQ(r.rc, TLS_CALL_IGNORE);
	CHECK_EQ(r.requests, 0);
	CHECK_MSG(strstr(r.err, "certificate for " SVC " not trusted: "), "error: %s", r.err);
	mt_note("%s", r.err);
	CHECK_EQ(cstats(c).verify_failures, 1);
	tls_client_free(c);
	srv_close(&a);
}

/* A reload that changes a called service's CA frees the worker's tls client while calls
 * begun on it are in flight: each call holds the client until it is freed. */
TEST(call_outlives_its_client)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf to_srv = {0}, to_cli = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &to_srv), 0);
	tls_client_free(c); /* the reload's: the call still holds it */
	CHECK(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
			       &to_cli) >= 0);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp),
		 TLS_CALL_CONTINUE);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
				  &to_cli),
		 TLS_SRV_REQUEST);
	CHECK_EQ(tls_server_respond(a.s, conn, pong, 4, &to_cli), 0);
	/* the ticket of this handshake goes into the client the call holds */
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp), TLS_CALL_DONE);
	CHECK(got_resp.len == 4 && memcmp(got_resp.data, pong, 4) == 0);
	tls_call_free(call); /* the last reference: the client goes now */
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
	srv_close(&a);
}

/* A reload renews a service's certificate: new handshakes get the new chain at once, the
 * handshake in progress finishes with the old one, the same files change nothing, and a
 * file that cannot be loaded leaves the server as it was. */
TEST(replace_keys_on_reload)
{
	const struct tls_service_keys same = {
	    .name = SVC, .cert_path = echo_crt, .key_path = echo_key};
	char other_crt[360], other_key[360], err[256] = "";
	struct tls_client *old_trust = client_open(ca), *new_trust = client_open(other_ca);
	struct tls_buf to_srv = {0}, to_cli = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;
	struct rpc r;
	bool changed = true;

	snprintf(other_crt, sizeof(other_crt), "%s/" SVC ".crt", other_dir);
	snprintf(other_key, sizeof(other_key), "%s/" SVC ".key", other_dir);
	const struct tls_service_keys renewed = {
	    .name = SVC, .cert_path = other_crt, .key_path = other_key};
	const struct tls_service_keys broken = {
	    .name = SVC, .cert_path = other_crt, .key_path = echo_key};

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_server_replace_keys(a.s, &same, true, a.stek, &changed, err, sizeof(err)), 0);
	CHECK(!changed);
	CHECK_EQ(tls_server_replace_keys(a.s, &broken, true, a.stek, &changed, err, sizeof(err)),
		 -EINVAL);
	CHECK(!changed);
	mt_note("a key that does not match: %s", err);
	rpc_ok(old_trust, a.s, true);

	/* a 1-RTT handshake under way when the keys change */
	struct tls_client *fresh = client_open(ca);
	CHECK_EQ(tls_call_begin(fresh, SVC, ping, 4, true, &call, &to_srv), 0);
	CHECK(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
			       &to_cli) >= 0);
	CHECK_EQ(tls_server_replace_keys(a.s, &renewed, true, a.stek, &changed, err, sizeof(err)),
		 0);
	CHECK(changed);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp),
		 TLS_CALL_CONTINUE);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn, &got_req,
				  &to_cli),
		 TLS_SRV_REQUEST);
	CHECK_EQ(tls_server_respond(a.s, conn, pong, 4, &to_cli), 0);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp), TLS_CALL_DONE);
	CHECK(got_resp.len == 4 && memcmp(got_resp.data, pong, 4) == 0);

	/* new full handshakes get the renewed certificate, from the other CA (a client that
	 * resumes a ticket keeps the authentication of its first handshake, as in TLS) */
	struct tls_client *no_ticket = client_open(ca);
	rpc_run(no_ticket, a.s, SVC, ping, 4, false, pong, 4, &r);
	/* its signed answer is set aside (the call would end at its timeout, -EACCES) */
	CHECK_EQ(r.rc, TLS_CALL_IGNORE);
	CHECK_MSG(strstr(r.err, "not trusted"), "%s", r.err);
	rpc_ok(new_trust, a.s, true);
	tls_client_free(no_ticket);

	tls_call_free(call);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
	tls_client_free(fresh);
	tls_client_free(old_trust);
	tls_client_free(new_trust);
	srv_close(&a);
}

TEST(unknown_service_and_sni_mismatch)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf fl = {0}, req = {0}, out = {0}, resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
	CHECK_EQ(tls_server_input(a.s, "kv.svc", &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		 -ENOENT);
	tls_call_free(call);
	call = NULL;
	/* SNI kv.svc sent to the echo.svc service: refused with an ERROR frame */
	CHECK_EQ(tls_call_begin(c, "kv.svc", ping, 4, true, &call, &fl), 0);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		 -EBADMSG);
	CHECK(conn == NULL);
	CHECK(out.len >= TLS_FRAME_HDR_LEN);
	CHECK_EQ(out.data[1], TLS_KIND_ERROR | TLS_KIND_AUTH);
	/* signed with echo.svc's certificate, which does not name kv.svc: set aside */
	CHECK_EQ(tls_call_input(call, out.data, out.len, &fl, &resp), TLS_CALL_IGNORE);
	CHECK_MSG(strstr(tls_call_error(call), "name mismatch"), "%s", tls_call_error(call));
	mt_note("%s", tls_call_error(call));
	tls_call_free(call);
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_buf_cleanup(&resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(server_without_stek_issues_no_tickets)
{
	struct tls_client *c = client_open(ca);
	struct srv a;
	struct rpc r;

	srv_open(&a, true, NULL);
	rpc_ok(c, a.s, true);
	r = rpc_ok(c, a.s, true);
	CHECK_EQ(r.continues, 1);
	CHECK_EQ(cstats(c).tickets_received, 0);
	CHECK_EQ(cstats(c).handshakes_full, 2);
	tls_client_free(c);
	srv_close(&a);
}

/*
 * flip_final runs one RPC in which the client gets SERVER_FINAL with bit `bit` of
 * byte `pos` flipped (pos past the end: the last byte). Returns what tls_call_input
 * said; fails the test if it said DONE with other bytes than the server sent.
 */
static int flip_final(struct tls_client *c, struct tls_server *s, bool safe, size_t pos, int bit,
		      size_t *out_len)
{
	struct tls_buf to_srv = {0}, to_cli = {0}, got_req = {0}, got_resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	int rc;

	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, safe, &call, &to_srv), 0);
	for (;;) {
		rc = tls_server_input(s, SVC, &peer, to_srv.data, to_srv.len, tick(), &conn,
				      &got_req, &to_cli);
		CHECK(rc >= 0);
		if (rc == TLS_SRV_REQUEST)
			break;
		CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp),
			 TLS_CALL_CONTINUE);
	}
	CHECK_EQ(tls_server_respond(s, conn, pong, 4, &to_cli), 0);
	*out_len = to_cli.len;
	if (pos >= to_cli.len)
		pos = to_cli.len - 1;
	to_cli.data[pos] ^= (uint8_t)(1u << bit);
	rc = tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp);
	/* every flip fails the proof and is set aside, never read by BoringSSL ... */
	CHECK_MSG(rc == TLS_CALL_IGNORE, "byte %zu: %d", pos, rc);
	/* ... so the genuine answer, arriving after it, still completes the call */
	to_cli.data[pos] ^= (uint8_t)(1u << bit);
	CHECK_EQ(tls_call_input(call, to_cli.data, to_cli.len, &to_srv, &got_resp), TLS_CALL_DONE);
	CHECK(got_resp.len == 4 && memcmp(got_resp.data, pong, 4) == 0);
	tls_call_free(call);
	tls_buf_cleanup(&to_srv);
	tls_buf_cleanup(&to_cli);
	tls_buf_cleanup(&got_req);
	tls_buf_cleanup(&got_resp);
	return rc;
}

TEST(flipped_bit_in_server_final)
{
	struct tls_client *c = client_open(ca);
	size_t len = 1, pos, n_err = 0, n_done = 0;
	struct srv a;

	srv_open(&a, true, stek1);
	/* 0-RTT flights: get a fresh ticket before each corrupted exchange */
	for (pos = 0; pos < len; pos++) {
		rpc_ok(c, a.s, true);
		if (flip_final(c, a.s, true, pos, (int)(pos % 8), &len) == TLS_CALL_IGNORE)
			n_err++;
		else
			n_done++;
	}
	mt_note("0-RTT SERVER_FINAL: %zu bytes, %zu flips set aside, %zu taken", len, n_err,
		n_done);
	CHECK_EQ(n_done, 0);
	/* 1-RTT final flights (NewSessionTicket + response, after CLIENT_SECOND) */
	n_err = n_done = 0;
	len = 1;
	for (pos = 0; pos < len; pos++) {
		rpc_ok(c, a.s, true);
		if (flip_final(c, a.s, false, pos, (int)(pos % 8), &len) == TLS_CALL_IGNORE)
			n_err++;
		else
			n_done++;
	}
	mt_note("1-RTT SERVER_FINAL: %zu bytes, %zu flips set aside, %zu taken", len, n_err,
		n_done);
	CHECK_EQ(n_done, 0);
	tls_client_free(c);
	srv_close(&a);
}

TEST(flipped_bit_in_server_handshake)
{
	struct tls_buf fl = {0}, req = {0}, out = {0}, resp = {0};
	size_t len = 1, n_err = 0;
	struct srv a;

	/* the full handshake flight (certificate, signature): every 3rd byte. Each flip
	 * fails the proof and is set aside; the genuine flight, after it, completes the
	 * call, which then holds a ticket. */
	srv_open(&a, true, stek1);
	for (size_t pos = 0; pos < len; pos += 3) {
		struct tls_client *c = client_open(ca); /* no ticket: a full handshake */
		struct tls_call *call = NULL;
		struct tls_conn *conn = NULL;
		int rc;

		CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
		CHECK_EQ(
		    tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		    TLS_SRV_REPLY);
		len = out.len; /* varies by a byte or two: the signature's DER */
		if (pos >= len) {
			tls_call_free(call);
			tls_client_free(c);
			break;
		}
		out.data[pos] ^= (uint8_t)(1u << (pos % 8));
		rc = tls_call_input(call, out.data, out.len, &fl, &resp);
		CHECK_MSG(rc == TLS_CALL_IGNORE, "byte %zu: %d", pos, rc);
		n_err += rc == TLS_CALL_IGNORE;
		out.data[pos] ^= (uint8_t)(1u << (pos % 8));
		CHECK_EQ(tls_call_input(call, out.data, out.len, &fl, &resp), TLS_CALL_CONTINUE);
		CHECK_EQ(
		    tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		    TLS_SRV_REQUEST);
		CHECK(req.len == 4 && memcmp(req.data, ping, 4) == 0);
		CHECK_EQ(tls_server_respond(a.s, conn, pong, 4, &out), 0);
		CHECK_EQ(tls_call_input(call, out.data, out.len, &fl, &resp), TLS_CALL_DONE);
		CHECK(resp.len == 4 && memcmp(resp.data, pong, 4) == 0);
		CHECK_EQ(tls_client_tickets(c, SVC), 1);
		tls_call_free(call);
		tls_client_free(c);
	}
	mt_note("SERVER_HANDSHAKE: %zu bytes, %zu flips set aside", len, n_err);
	CHECK(n_err >= len / 3);
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_buf_cleanup(&resp);
	srv_close(&a);
}

TEST(flipped_bit_in_client_first)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf fl = {0}, req = {0}, out = {0};
	size_t len = 1, n_req = 0;
	struct srv a;

	srv_open(&a, true, stek1);
	for (size_t pos = 0; pos < len; pos++) {
		struct tls_call *call = NULL;
		struct tls_conn *conn = NULL;
		int rc;

		rpc_ok(c, a.s, true);
		CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
		len = fl.len;
		fl.data[pos] ^= (uint8_t)(1u << (pos % 8));
		rc = tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out);
		if (rc == TLS_SRV_REQUEST) {
			/* only where the flip did not matter (e.g. a record version byte) */
			CHECK_MSG(req.len == 4 && memcmp(req.data, ping, 4) == 0,
				  "request altered by a flip at byte %zu", pos);
			n_req++;
			mt_note("CLIENT_FIRST: a flip at byte %zu changed nothing", pos);
			tls_conn_free(conn);
		} else {
			CHECK(conn == NULL);
			CHECK_EQ(req.len, 0);
		}
		tls_call_free(call);
	}
	mt_note("CLIENT_FIRST: %zu bytes, %zu flips still gave the request", len, n_req);
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_client_free(c);
	srv_close(&a);
}

TEST(garbage_frames)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf fl = {0}, req = {0}, out = {0}, resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	uint8_t junk[600];
	struct srv a;
	static const uint8_t frames[][12] = {
	    {0},			/* version 0 */
	    {2, 1},			/* version 2 */
	    {1, 0},			/* kind 0 */
	    {1, 9},			/* kind 9 */
	    {1, TLS_KIND_SERVER_FINAL}, /* a server kind sent to the server */
	    {1, TLS_KIND_CLIENT_FIRST, 0, 0, 0, 0, 0, 0, 0, 1}, /* id on CLIENT_FIRST */
	    {1, TLS_KIND_CLIENT_SECOND},			/* CLIENT_SECOND without id */
	    {1, TLS_KIND_CLIENT_FIRST},				/* no ClientHello */
	    {1, TLS_KIND_CLIENT_FIRST, 0, 0, 0, 0, 0, 0, 0, 0, 0x16, 3},
	};
	int rc;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, NULL, 0, tick(), &conn, &req, &out), -EBADMSG);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, frames[0], 1, tick(), &conn, &req, &out),
		 -EBADMSG);
	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		for (size_t n = 0; n <= sizeof(frames[i]); n++) {
			rc = tls_server_input(a.s, SVC, &peer, frames[i], n, tick(), &conn, &req,
					      &out);
			CHECK_MSG(rc == -EBADMSG, "frame %zu, %zu bytes: %d", i, n, rc);
			CHECK(conn == NULL);
		}
	}
	/* random bytes after a valid header */
	for (int k = 0; k < 50; k++) {
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)rand();
		junk[0] = 1;
		junk[1] = TLS_KIND_CLIENT_FIRST;
		memset(junk + 2, 0, 8);
		rc = tls_server_input(a.s, SVC, &peer, junk, sizeof(junk), tick(), &conn, &req,
				      &out);
		CHECK_EQ(rc, -EBADMSG);
		CHECK_EQ(out.data[1], TLS_KIND_ERROR);
	}
	/* a real first flight, truncated anywhere: never a request. Once the ClientHello
	 * is whole, BoringSSL accepts the 0-RTT offer and its random is struck; later
	 * (longer) copies are then replays and get a handshake-only reply */
	rpc_ok(c, a.s, true);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
	for (size_t n = TLS_FRAME_HDR_LEN; n < fl.len; n += 7) {
		rc = tls_server_input(a.s, SVC, &peer, fl.data, n, tick(), &conn, &req, &out);
		CHECK_MSG(rc == -EBADMSG || rc == TLS_SRV_REPLY, "truncated to %zu of %zu: %d", n,
			  fl.len, rc);
		CHECK(conn == NULL);
		CHECK_EQ(req.len, 0);
	}
	tls_call_free(call);
	call = NULL;
	/* CLIENT_SECOND naming no pending handshake: ERROR, so the client starts over */
	{
		uint8_t sec[40] = {1, TLS_KIND_CLIENT_SECOND, 1, 2, 3, 4, 5, 6, 7, 8};

		CHECK_EQ(
		    tls_server_input(a.s, SVC, &peer, sec, sizeof(sec), tick(), &conn, &req, &out),
		    -EBADMSG);
		CHECK_EQ(out.len, TLS_FRAME_HDR_LEN);
		CHECK_EQ(out.data[0], TLS_FRAME_VERSION);
		CHECK_EQ(out.data[1], TLS_KIND_ERROR);
	}
	CHECK(sstats(&a).bad_messages > 100);

	/* the client side: garbage, truncation, wrong kinds */
	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
		rc = tls_call_input(call, frames[i], sizeof(frames[i]), &fl, &resp);
		CHECK_MSG(rc == -EBADMSG || rc == TLS_CALL_IGNORE, "frame %zu: %d", i, rc);
		/* a failed call takes nothing more; an ignored frame changed nothing */
		CHECK_EQ(tls_call_input(call, frames[i], sizeof(frames[i]), &fl, &resp),
			 rc == TLS_CALL_IGNORE ? TLS_CALL_IGNORE : -EINVAL);
		tls_call_free(call);
		call = NULL;
	}
	{
		/* a truncated SERVER_HANDSHAKE (first contact: no ticket for kv.svc) */
		struct srv kv;
		size_t full;

		srv_open_as(&kv, "kv.svc", true, stek1, 64);
		CHECK_EQ(tls_call_begin(c, "kv.svc", ping, 4, true, &call, &fl), 0);
		CHECK_EQ(tls_server_input(kv.s, "kv.svc", &peer, fl.data, fl.len, tick(), &conn,
					  &req, &out),
			 TLS_SRV_REPLY);
		full = out.len;
		CHECK_EQ(tls_call_input(call, out.data, full / 2, &fl, &resp), TLS_CALL_IGNORE);
		tls_call_free(call);
		call = NULL;
		srv_close(&kv);
	}
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_buf_cleanup(&resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(expired_handshake_restarts_from_scratch)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf fl = {0}, req = {0}, out = {0}, resp = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;
	struct rpc r;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		 TLS_SRV_REPLY);
	CHECK_EQ(sstats(&a).pending_handshakes, 1);
	tls_server_expire(a.s, tick(), WINDOW_NS); /* young: kept */
	CHECK_EQ(sstats(&a).pending_handshakes, 1);
	CHECK_EQ(tls_call_input(call, out.data, out.len, &fl, &resp), TLS_CALL_CONTINUE);
	tls_server_expire(a.s, tick() + WINDOW_NS, WINDOW_NS);
	CHECK_EQ(sstats(&a).pending_handshakes, 0);
	CHECK_EQ(tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		 -EBADMSG);
	CHECK_EQ(out.data[1], TLS_KIND_ERROR);
	/* the server no longer knows the exchange, so nothing proves its ERROR: the
	 * call sets it aside (and would time out) */
	CHECK_EQ(tls_call_input(call, out.data, out.len, &fl, &resp), TLS_CALL_IGNORE);
	tls_call_free(call);
	/* a fresh call works */
	r = rpc_ok(c, a.s, true);
	CHECK_EQ(r.continues, 1);
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_buf_cleanup(&resp);
	tls_client_free(c);
	srv_close(&a);
}

TEST(pending_table_is_bounded)
{
	struct tls_client *c = client_open(ca);
	struct tls_buf fl = {0}, req = {0}, out = {0};
	struct tls_call *call = NULL;
	struct tls_conn *conn = NULL;
	struct srv a;

	srv_open(&a, true, stek1);
	CHECK_EQ(tls_call_begin(c, SVC, ping, 4, true, &call, &fl), 0);
	/* the same ClientHello over and over: each a new pending handshake */
	for (int i = 0; i < TLS_PENDING_MAX + 10; i++)
		CHECK_EQ(
		    tls_server_input(a.s, SVC, &peer, fl.data, fl.len, tick(), &conn, &req, &out),
		    TLS_SRV_REPLY);
	CHECK_EQ(sstats(&a).pending_handshakes, TLS_PENDING_MAX);
	tls_call_free(call);
	tls_buf_cleanup(&fl);
	tls_buf_cleanup(&req);
	tls_buf_cleanup(&out);
	tls_client_free(c);
	srv_close(&a);
}

int main(int argc, char **argv)
{
	int rc;

	setup();
	rc = mt_run(argc, argv);
	teardown();
	return rc;
}
