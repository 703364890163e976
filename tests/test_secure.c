// SPDX-License-Identifier: MIT
/* test_secure: every decision the worker leaves to the security modes (daemon/
 * secure.c), driven without io_uring or sockets: what each mode puts on the wire,
 * what a served service accepts, tls full handshake then 0-RTT, sealed bootstrap,
 * association use, refusal, re-bootstrap and renewal, and that a request is
 * handed to the app exactly once. A client env and a server env stand for two
 * workers on two hosts; the test carries the bytes between them.
 * BoringSSL only: minitest.h, not Criterion (see there why). */
#include "boringssl.h"

#include "minitest.h"
#include "tls_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <r2p2/wire.h>

#include "replay.h"
#include "secure.h"
#include "stek.h"

#define SVC "echo.svc"
#define WINDOW_MS 10000ull
#define WINDOW_NS (WINDOW_MS * 1000000ull)
#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K3 "3333333333333333333333333333333333333333333333333333333333333333"

static char dir[256], ca[320], crt[320], key[320], stek1[320], stek3[320];
static uint64_t wall = 1700000000000ull; /* unix ms, both hosts */
static uint64_t mono = 1000000000ull;
static const struct r2p2_addr client_addr = {.family = AF_INET, .addr = {10, 0, 0, 1}};
/* the server every call goes to, 10.0.0.2:8000, and another of the fleet, 10.0.0.3 */
static const struct r2p2_addr server_addr = {
    .family = AF_INET, .port = 0x401f /* 8000 */, .addr = {10, 0, 0, 2}};
static const struct r2p2_addr other_addr = {.family = AF_INET, .addr = {10, 0, 0, 3}};

static uint64_t test_wall_ms(void)
{
	return wall;
}

static uint64_t tick(void)
{
	return mono += 1000;
}

static void setup(void)
{
	fixture_mkdtemp(dir, sizeof(dir), "r2p2-test-secure");
	fixture_certs(dir, SVC);
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/" SVC ".crt", dir);
	snprintf(key, sizeof(key), "%s/" SVC ".key", dir);
	snprintf(stek1, sizeof(stek1), "%s/stek1.keys", dir);
	snprintf(stek3, sizeof(stek3), "%s/stek3.keys", dir);
	fixture_write_stek(stek1, "00000001   current   " K1 "\n");
	fixture_write_stek(stek3, "00000003   current   " K3 "\n"); /* shares no key with stek1 */
}

static void teardown(void)
{
	fixture_remove(dir);
}

/* ---- two hosts ------------------------------------------------------------------ */

struct host_srv {
	struct sec_env env;
	struct sec_service svc;
	struct stek_set *stek;
	struct replay *replay, *sealed_replay;
	unsigned executions; /* requests handed to the app */
};

struct host_cli {
	struct sec_env env;
	struct sec_peer peers[4];
	struct cfg_call cc;
};

static void srv_open(struct host_srv *h, enum cfg_security sec, const char *stek_path)
{
	struct cfg_serve sv = {.port = 8000, .security = sec, .early_data = true};
	char err[256] = "";

	memset(h, 0, sizeof(*h));
	snprintf(sv.name, sizeof(sv.name), SVC);
	snprintf(sv.cert, sizeof(sv.cert), "%.200s", crt);
	snprintf(sv.key, sizeof(sv.key), "%.200s", key);
	CHECK_MSG(stek_load(stek_path, &h->stek, err, sizeof(err)) == 0, "%s", err);
	h->replay = replay_new(1024, WINDOW_NS);
	h->sealed_replay = replay_new(1024, 2 * WINDOW_NS);
	CHECK(h->replay && h->sealed_replay);
	sec_env_init(&h->env, h->stek, h->replay, h->sealed_replay, WINDOW_MS);
	h->env.wall_ms = test_wall_ms;
	h->env.self[0] = server_addr;
	h->env.self[0].port = 0; /* the service's port */
	h->env.num_self = 1;
	CHECK_MSG(sec_service_configure(&h->env, &h->svc, &sv, err, sizeof(err)) == 0, "%s", err);
}

static void srv_switch_stek(struct host_srv *h, const char *stek_path)
{
	struct stek_set *set;
	char err[256] = "";

	CHECK_MSG(stek_load(stek_path, &set, err, sizeof(err)) == 0, "%s", err);
	sec_service_set_stek(&h->svc, set);
	stek_set_put(h->stek);
	h->stek = set;
	h->env.stek = set;
}

static void srv_close(struct host_srv *h)
{
	sec_service_retire(&h->svc, NULL);
	sec_env_cleanup(&h->env);
	stek_set_put(h->stek);
	replay_free(h->replay);
	replay_free(h->sealed_replay);
}

static void cli_open(struct host_cli *h, enum cfg_security sec)
{
	memset(h, 0, sizeof(*h));
	sec_env_init(&h->env, NULL, NULL, NULL, 0);
	h->env.wall_ms = test_wall_ms;
	snprintf(h->cc.name, sizeof(h->cc.name), SVC);
	snprintf(h->cc.ca, sizeof(h->cc.ca), "%.200s", ca);
	h->cc.security = sec;
}

static void cli_close(struct host_cli *h)
{
	for (size_t i = 0; i < 4; i++)
		sec_peer_cleanup(&h->peers[i]);
	sec_env_cleanup(&h->env);
}

static struct sec_peer *cli_peer(struct host_cli *h)
{
	char err[256] = "";
	struct sec_peer *p;

	if (h->cc.security == CFG_SEC_PLAIN)
		return NULL;
	p = sec_peer_for(h->peers, 4, &h->cc, err, sizeof(err));
	CHECK_MSG(p, "sec_peer_for: %s", err);
	return p;
}

/* What one RPC did. */
struct rpc {
	int status;
	uint8_t reply[256];
	size_t reply_len;
	unsigned rounds;     /* R2P2 request/response exchanges */
	uint8_t first_flags; /* mode flags of the first request */
	enum sec_step first_step;
	unsigned executions; /* requests the server handed to its app */
	uint8_t wire[2048];  /* the first request's payload, for replays */
	size_t wire_len;
};

/*
 * serve runs the server side on one request payload: open, then (as an echo
 * app that prepends "re:") seal. Returns the verdict; `out` is what goes back.
 */
static enum sec_verdict serve(struct host_srv *s, uint8_t flags, const uint8_t *p, size_t len,
			      uint8_t *out, size_t *out_len)
{
	struct sec_request rq = {.src = &client_addr,
				 .policy = 0,
				 .flags = flags,
				 .payload = p,
				 .len = len,
				 .now = tick()};
	struct sec_exec x;
	struct sec_msg m;
	enum sec_verdict v = s->svc.ops->open(&s->env, &s->svc, &rq, &x, &m);

	*out_len = 0;
	if (v == SEC_ANSWER) {
		memcpy(out, m.data, m.len);
		*out_len = m.len;
	} else if (v == SEC_DELIVER) {
		uint8_t resp[300] = "re:";
		s->executions++;
		CHECK(m.len + 3 <= sizeof(resp));
		memcpy(resp + 3, m.data, m.len);
		CHECK(sec_seal(&s->env, &s->svc, &x, resp, m.len + 3, &m) == 0);
		sec_exec_release(&x);
		memcpy(out, m.data, m.len);
		*out_len = m.len;
	}
	return v;
}

/* rpc_run calls through `c` to `s` until the call is over. */
static struct rpc rpc_run(struct host_cli *c, struct host_srv *s, const char *req, bool safe,
			  bool renew)
{
	struct rpc r = {0};
	struct sec_call call = {0};
	struct sec_msg m;
	struct sec_reply rep = {0};
	uint8_t wire[4096], back[4096];
	size_t wire_len, back_len;
	unsigned before = s->executions;
	uint8_t flags;
	int ret;

	sec_call_init(&call, sec_ops_for(c->cc.security), cli_peer(c), safe, &server_addr);
	ret = call.ops->protect(&c->env, &call, 0, (const uint8_t *)req, req ? strlen(req) : 0,
				renew, &m);
	CHECK_MSG(ret == 0, "protect: %d", ret);
	r.first_flags = m.flags;
	r.first_step = call.step;
	memcpy(wire, m.data, m.len);
	wire_len = m.len;
	flags = m.flags;
	memcpy(r.wire, wire, wire_len < sizeof(r.wire) ? wire_len : sizeof(r.wire));
	r.wire_len = wire_len;
	for (;;) {
		enum sec_verdict v = serve(s, flags, wire, wire_len, back, &back_len);
		r.rounds++;
		CHECK(r.rounds < 5);
		enum sec_next next =
		    v == SEC_REJECT || v == SEC_WRONG_MODE
			? call.ops->finish(&c->env, &call, -ECONNRESET, NULL, 0, &rep)
			: call.ops->finish(&c->env, &call, 0, back, back_len, &rep);
		if (next == SEC_DONE)
			break;
		memcpy(wire, rep.out.data, rep.out.len);
		wire_len = rep.out.len;
		flags = rep.out.flags;
	}
	r.status = rep.status;
	if (rep.status == 0 && rep.out.len) {
		CHECK(rep.out.len <= sizeof(r.reply));
		memcpy(r.reply, rep.out.data, rep.out.len);
		r.reply_len = rep.out.len;
	}
	sec_call_release(&call);
	r.executions = s->executions - before;
	return r;
}

static bool reply_is(const struct rpc *r, const char *s)
{
	return r->status == 0 && r->reply_len == strlen(s) &&
	       memcmp(r->reply, s, r->reply_len) == 0;
}

/* ---- plain -------------------------------------------------------------------------- */

TEST(plain_passes_bytes_through)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_PLAIN);
	srv_open(&s, CFG_SEC_PLAIN, stek1);
	struct rpc r = rpc_run(&c, &s, "ping", true, false);
	CHECK(reply_is(&r, "re:ping"));
	CHECK(r.rounds == 1 && r.first_flags == 0 && r.executions == 1);
	CHECK(r.wire_len == 4 && memcmp(r.wire, "ping", 4) == 0);
	srv_close(&s);
	cli_close(&c);
}

TEST(each_service_takes_only_its_own_mode)
{
	static const uint8_t p[] = "ping";
	struct host_srv plain, tls, sealed;
	uint8_t out[64];
	size_t n;

	srv_open(&plain, CFG_SEC_PLAIN, stek1);
	srv_open(&tls, CFG_SEC_TLS, stek1);
	srv_open(&sealed, CFG_SEC_SEALED, stek1);
	CHECK(serve(&plain, R2P2_F_TLS, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(serve(&plain, R2P2_F_SEALED, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(serve(&tls, 0, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(serve(&tls, R2P2_F_SEALED, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(serve(&sealed, 0, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(serve(&sealed, R2P2_F_TLS | R2P2_F_SEALED, p, 4, out, &n) == SEC_WRONG_MODE);
	CHECK(plain.executions + tls.executions + sealed.executions == 0);
	srv_close(&plain);
	srv_close(&tls);
	srv_close(&sealed);
}

/* ---- tls -------------------------------------------------------------------------- */

TEST(tls_full_handshake_then_0rtt)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	struct rpc r = rpc_run(&c, &s, "one", true, false);
	CHECK(reply_is(&r, "re:one"));
	CHECK(r.first_flags == R2P2_F_TLS && r.first_step == SEC_STEP_TLS);
	CHECK_MSG(r.rounds == 2, "no ticket yet: a full handshake, %u rounds", r.rounds);
	CHECK(r.executions == 1);
	r = rpc_run(&c, &s, "two", true, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK_MSG(r.rounds == 1, "a ticket: 0-RTT, %u rounds", r.rounds);
	CHECK(r.executions == 1);
	srv_close(&s);
	cli_close(&c);
}

TEST(tls_not_replay_safe_waits_for_the_handshake)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	CHECK(rpc_run(&c, &s, "one", true, false).executions == 1); /* gets a ticket */
	struct rpc r = rpc_run(&c, &s, "two", false, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK_MSG(r.rounds == 2, "no early data: %u rounds", r.rounds);
	srv_close(&s);
	cli_close(&c);
}

TEST(tls_replayed_first_flight_is_not_executed_again)
{
	struct host_cli c;
	struct host_srv s;
	uint8_t out[4096];
	size_t n;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	rpc_run(&c, &s, "one", true, false);
	struct rpc r = rpc_run(&c, &s, "pay 100", true, false);
	CHECK(r.rounds == 1 && r.executions == 1);
	unsigned before = s.executions;
	CHECK(serve(&s, R2P2_F_TLS, r.wire, r.wire_len, out, &n) != SEC_DELIVER);
	CHECK(s.executions == before);
	srv_close(&s);
	cli_close(&c);
}

/* A reply that is not a tls frame for this step is set aside, not taken as the end. */
TEST(tls_garbage_reply_is_ignored)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_reply rep;
	static const uint8_t junk[] = "not a tls frame";

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	struct sec_msg m;
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"x", 1, false, &m) == 0);
	CHECK(call.ops->finish(&c.env, &call, 0, junk, sizeof(junk), &rep) == SEC_IGNORE);
	CHECK(rep.why != NULL);
	sec_call_release(&call);
	CHECK(call.ops->protect(&c.env, &call, 0, NULL, 0, true, &m) == -EINVAL); /* no renewal */
	srv_close(&s);
	cli_close(&c);
}

/*
 * A duplicated CLIENT_FIRST makes the server resend its cached SERVER_HANDSHAKE; one
 * that arrives while the client waits for the answer to its CLIENT_SECOND is set
 * aside, and the genuine answer completes the call.
 */
TEST(tls_stale_handshake_flight_is_ignored)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_reply rep;
	struct sec_msg m;
	uint8_t first[4096], hs[4096], second[4096], back[4096];
	size_t first_len, hs_len, second_len, n;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"one", 3, false, &m) == 0);
	memcpy(first, m.data, m.len);
	first_len = m.len;
	CHECK(serve(&s, R2P2_F_TLS, first, first_len, hs, &hs_len) == SEC_ANSWER);
	CHECK(call.ops->finish(&c.env, &call, 0, hs, hs_len, &rep) == SEC_SEND);
	CHECK(rep.same_rid);
	memcpy(second, rep.out.data, rep.out.len);
	second_len = rep.out.len;
	CHECK(call.ops->finish(&c.env, &call, 0, hs, hs_len, &rep) == SEC_IGNORE); /* stale */
	CHECK(serve(&s, R2P2_F_TLS, second, second_len, back, &n) == SEC_DELIVER);
	CHECK(call.ops->finish(&c.env, &call, 0, back, n, &rep) == SEC_DONE);
	CHECK(rep.status == 0 && rep.out.len == 6 && memcmp(rep.out.data, "re:one", 6) == 0);
	CHECK(s.executions == 1);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

TEST(tls_answer_after_the_service_lost_its_keys)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_exec x;
	struct sec_msg m, out;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	rpc_run(&c, &s, "one", true, false);
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"two", 3, false, &m) == 0);
	struct sec_request rq = {
	    .src = &client_addr, .flags = m.flags, .payload = m.data, .len = m.len, .now = tick()};
	CHECK(s.svc.ops->open(&s.env, &s.svc, &rq, &x, &out) == SEC_DELIVER);
	CHECK(sec_exec_uses_service(&x));
	sec_service_retire(&s.svc, NULL); /* a reload made it plain */
	CHECK(sec_seal(&s.env, &s.svc, &x, (const uint8_t *)"r", 1, &out) == -ENOENT);
	CHECK(!sec_exec_uses_service(&x));
	sec_exec_release(&x);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

/* ---- sealed ------------------------------------------------------------------------ */

TEST(sealed_bootstraps_then_seals)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	struct rpc r = rpc_run(&c, &s, "one", true, false);
	CHECK(reply_is(&r, "re:one"));
	CHECK(r.first_flags == R2P2_F_TLS && r.first_step == SEC_STEP_TLS_BOOT);
	struct sec_peer *p = cli_peer(&c);
	CHECK(p->assoc_ready && !p->bootstrapping);
	CHECK(r.executions == 1);

	r = rpc_run(&c, &s, "two", true, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK(r.first_flags == R2P2_F_SEALED && r.first_step == SEC_STEP_SEALED);
	CHECK(r.rounds == 1 && r.executions == 1);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_not_replay_safe_goes_through_tls)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	CHECK(cli_peer(&c)->assoc_ready);
	struct rpc r = rpc_run(&c, &s, "two", false, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK(r.first_flags == R2P2_F_TLS && r.first_step == SEC_STEP_TLS_SVC);
	CHECK(r.executions == 1);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_one_bootstrap_at_a_time)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call a = {0}, b = {0};
	struct sec_msg m;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	struct sec_peer *p = cli_peer(&c);
	sec_call_init(&a, sec_ops_for(CFG_SEC_SEALED), p, true, &server_addr);
	sec_call_init(&b, sec_ops_for(CFG_SEC_SEALED), p, true, &server_addr);
	CHECK(a.ops->protect(&c.env, &a, 0, (const uint8_t *)"a", 1, false, &m) == 0);
	CHECK(a.step == SEC_STEP_TLS_BOOT && p->bootstrapping);
	CHECK(b.ops->protect(&c.env, &b, 0, (const uint8_t *)"b", 1, false, &m) == 0);
	CHECK_MSG(b.step == SEC_STEP_TLS_SVC, "a second call asks for no association");
	sec_call_release(&b);
	CHECK(p->bootstrapping);
	sec_call_release(&a); /* e.g. the engine refused the call, or it timed out */
	CHECK(!p->bootstrapping);
	srv_close(&s);
	cli_close(&c);
}

/* authed_reason reads the reason of an authenticated REJECT (its tag unchecked here). */
static bool authed_reason(const uint8_t *m, size_t n, enum sealed_reason want)
{
	uint8_t clear[SEALED_REJECT_LEN];
	enum sealed_reason why;

	if (n != SEALED_REJECT_AUTH_LEN || m[1] != SEALED_REJECT_AUTH_MARK)
		return false;
	memcpy(clear, m, sizeof(clear));
	clear[1] = SEALED_REJECT_MARK;
	return sealed_reject_decode(clear, sizeof(clear), &why) == 0 && why == want;
}

TEST(sealed_replay_is_refused_with_a_reason)
{
	struct host_cli c;
	struct host_srv s;
	uint8_t out[64];
	size_t n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	struct rpc r = rpc_run(&c, &s, "pay 100", true, false);
	CHECK(r.first_flags == R2P2_F_SEALED && r.executions == 1);
	CHECK(serve(&s, R2P2_F_SEALED, r.wire, r.wire_len, out, &n) == SEC_ANSWER);
	CHECK_MSG(authed_reason(out, n, SEALED_REJ_REPLAY), "an authenticated REJECT replay");
	CHECK(s.executions == 2);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_reject_is_retried_once_through_tls)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_reply rep;
	struct sec_msg m;
	uint8_t rej[SEALED_REJECT_LEN];

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	sec_call_init(&call, sec_ops_for(CFG_SEC_SEALED), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"x", 1, false, &m) == 0);
	CHECK(call.step == SEC_STEP_SEALED);
	/* a clear REJECT for a reason the server authenticates is forged: ignored */
	sealed_reject_encode(SEALED_REJ_STALE, rej);
	CHECK(call.ops->finish(&c.env, &call, 0, rej, sizeof(rej), &rep) == SEC_IGNORE);
	CHECK(!call.retried && call.step == SEC_STEP_SEALED);
	/* one the server cannot authenticate (it never opened the token) is retried */
	sealed_reject_encode(SEALED_REJ_WRONG_SERVER, rej);
	CHECK(call.ops->finish(&c.env, &call, 0, rej, sizeof(rej), &rep) == SEC_SEND);
	CHECK(rep.out.flags == R2P2_F_TLS && !rep.same_rid && call.retried);
	CHECK_MSG(call.step == SEC_STEP_TLS_SVC, "the association is kept: no new one asked");
	CHECK(cli_peer(&c)->assoc_ready && cli_peer(&c)->rebootstraps == 0);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

/* A forged sealed response is ignored; the genuine one, arriving later, completes the call. */
TEST(sealed_forged_response_is_ignored)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_reply rep;
	struct sec_msg m;
	uint8_t forged[64] = {2}, wire[512], back[512];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	sec_call_init(&call, sec_ops_for(CFG_SEC_SEALED), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"x", 1, false, &m) == 0);
	memcpy(wire, m.data, m.len);
	wire_len = m.len;
	CHECK(call.ops->finish(&c.env, &call, 0, forged, sizeof(forged), &rep) == SEC_IGNORE);
	CHECK(rep.why != NULL);
	CHECK(serve(&s, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_DELIVER);
	CHECK(call.ops->finish(&c.env, &call, 0, back, n, &rep) == SEC_DONE);
	CHECK(rep.status == 0 && rep.out.len == 4 && memcmp(rep.out.data, "re:x", 4) == 0);
	CHECK(s.executions == 2);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

/* An R2P2 DROP (the engine's -ECONNREFUSED) authenticates nothing: an encrypted call
 * sets it aside and the server's answer still completes it; a call that gets nothing
 * else ends at its timeout with -ECONNREFUSED rather than -ETIMEDOUT. Plain mode takes it. */
TEST(drop_is_set_aside_by_encrypted_calls)
{
	static const enum cfg_security modes[] = {CFG_SEC_SEALED, CFG_SEC_TLS};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct host_cli c;
		struct host_srv s;
		struct sec_call call = {0};
		struct sec_reply rep;
		struct sec_msg m;
		uint8_t wire[4096], back[4096];
		size_t wire_len, n;
		uint8_t flags = modes[i] == CFG_SEC_SEALED ? R2P2_F_SEALED : R2P2_F_TLS;

		cli_open(&c, modes[i]);
		srv_open(&s, modes[i], stek1);
		rpc_run(&c, &s, "one", true, false); /* a ticket, or an association */
		sec_call_init(&call, sec_ops_for(modes[i]), cli_peer(&c), true, &server_addr);
		CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"x", 1, false, &m) == 0);
		CHECK(m.len <= sizeof(wire));
		memcpy(wire, m.data, m.len);
		wire_len = m.len;
		CHECK(call.ops->finish(&c.env, &call, -ECONNREFUSED, NULL, 0, &rep) == SEC_IGNORE);
		CHECK(serve(&s, flags, wire, wire_len, back, &n) == SEC_DELIVER);
		CHECK(call.ops->finish(&c.env, &call, 0, back, n, &rep) == SEC_DONE);
		CHECK(rep.status == 0 && rep.out.len == 4 && memcmp(rep.out.data, "re:x", 4) == 0);
		sec_call_release(&call);

		/* a DROP, then nothing: -ECONNREFUSED at the timeout */
		memset(&call, 0, sizeof(call));
		sec_call_init(&call, sec_ops_for(modes[i]), cli_peer(&c), true, &server_addr);
		CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"y", 1, false, &m) == 0);
		CHECK(call.ops->finish(&c.env, &call, -ECONNREFUSED, NULL, 0, &rep) == SEC_IGNORE);
		CHECK(call.ops->finish(&c.env, &call, -ETIMEDOUT, NULL, 0, &rep) == SEC_DONE);
		CHECK_EQ(rep.status, -ECONNREFUSED);
		sec_call_release(&call);
		srv_close(&s);
		cli_close(&c);
	}
	{
		struct host_cli c;
		struct sec_call call = {0};
		struct sec_reply rep;
		struct sec_msg m;

		cli_open(&c, CFG_SEC_PLAIN);
		sec_call_init(&call, sec_ops_for(CFG_SEC_PLAIN), NULL, true, &server_addr);
		CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"z", 1, false, &m) == 0);
		CHECK(call.ops->finish(&c.env, &call, -ECONNREFUSED, NULL, 0, &rep) == SEC_DONE);
		CHECK_EQ(rep.status, -ECONNREFUSED);
		sec_call_release(&call);
		cli_close(&c);
	}
}

TEST(sealed_unknown_key_rebootstraps_once)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	CHECK(cli_peer(&c)->assoc_ready);
	srv_switch_stek(&s, stek3); /* the fleet moved to keys the token is not under */
	struct rpc r = rpc_run(&c, &s, "two", true, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK(r.first_flags == R2P2_F_SEALED);
	CHECK_MSG(r.rounds >= 2, "refused, then bootstrapped: %u rounds", r.rounds);
	CHECK(r.executions == 1);
	struct sec_peer *p = cli_peer(&c);
	CHECK(p->rebootstraps == 1 && p->assoc_ready && !p->bootstrapping);
	CHECK(sec_peer_key_id(p) == 3);
	r = rpc_run(&c, &s, "three", true, false);
	CHECK(reply_is(&r, "re:three") && r.first_flags == R2P2_F_SEALED && r.rounds == 1);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_renewal_involves_no_app)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	struct sec_peer *p = cli_peer(&c);
	uint64_t expiry = p->assoc.expiry_ms;
	CHECK(!sec_peer_wants_renewal(p, wall));
	wall = expiry - SEALED_LIFETIME_DEFAULT_MS / 10; /* in the last fifth of its life */
	CHECK(sec_peer_wants_renewal(p, wall));
	struct rpc r = rpc_run(&c, &s, NULL, true, true);
	CHECK(r.status == 0 && r.reply_len == 0);
	CHECK(r.first_step == SEC_STEP_RENEW && r.executions == 0);
	CHECK(p->assoc_ready && !p->bootstrapping && p->assoc.expiry_ms > expiry);
	CHECK(!sec_peer_wants_renewal(p, wall));
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_expired_association_bootstraps_again)
{
	struct host_cli c;
	struct host_srv s;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	wall = cli_peer(&c)->assoc.expiry_ms + 1;
	struct rpc r = rpc_run(&c, &s, "two", true, false);
	CHECK(reply_is(&r, "re:two"));
	CHECK(r.first_flags == R2P2_F_TLS && r.first_step == SEC_STEP_TLS_BOOT);
	CHECK(cli_peer(&c)->assoc.expiry_ms > wall);
	srv_close(&s);
	cli_close(&c);
}

/* protect_sealed makes an AEAD request of `c` (an association must be held). */
static void protect_sealed(struct host_cli *c, struct sec_call *call, const char *req,
			   uint8_t *wire, size_t *wire_len)
{
	struct sec_msg m;

	sec_call_init(call, sec_ops_for(CFG_SEC_SEALED), cli_peer(c), true, &server_addr);
	CHECK(call->ops->protect(&c->env, call, 0, (const uint8_t *)req, strlen(req), false, &m) ==
	      0);
	CHECK(call->step == SEC_STEP_SEALED);
	memcpy(wire, m.data, m.len);
	*wire_len = m.len;
}

/*
 * finish_and_serve hands `reply` to the call and, while it sends more, carries
 * each message to `s` and its answer back. Returns the call's final status.
 */
static int finish_and_serve(struct host_cli *c, struct host_srv *s, struct sec_call *call,
			    const uint8_t *reply, size_t len)
{
	uint8_t wire[4096], back[4096];
	size_t n = len;
	struct sec_reply rep = {0};

	memcpy(back, reply, len);
	while (call->ops->finish(&c->env, call, 0, back, n, &rep) == SEC_SEND) {
		size_t wire_len = rep.out.len;
		memcpy(wire, rep.out.data, wire_len);
		CHECK(serve(s, rep.out.flags, wire, wire_len, back, &n) == SEC_ANSWER || n > 0);
	}
	return rep.status;
}

TEST(sealed_forged_reject_after_execution_is_not_run_twice)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	uint8_t wire[512], back[512], rej[SEALED_REJECT_LEN];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	protect_sealed(&c, &call, "pay 100", wire, &wire_len);
	CHECK(serve(&s, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_DELIVER);
	CHECK(s.executions == 2);
	/* an attacker drops the response and answers with a REJECT of its own: a clear
	 * "stale" is ignored (the server would have authenticated it) */
	struct sec_reply rep = {0};
	sealed_reject_encode(SEALED_REJ_STALE, rej);
	CHECK(call.ops->finish(&c.env, &call, 0, rej, sizeof(rej), &rep) == SEC_IGNORE);
	/* an authenticated-looking one with a wrong tag is ignored too */
	uint8_t fake[SEALED_REJECT_AUTH_LEN] = {SEALED_VERSION, SEALED_REJECT_AUTH_MARK,
						SEALED_REJ_STALE};
	CHECK(call.ops->finish(&c.env, &call, 0, fake, sizeof(fake), &rep) == SEC_IGNORE);
	CHECK(!call.retried);
	/* one the server cannot authenticate makes the client ask through tls: it ran */
	sealed_reject_encode(SEALED_REJ_WRONG_SERVER, rej);
	CHECK(finish_and_serve(&c, &s, &call, rej, sizeof(rej)) == -EALREADY);
	CHECK_MSG(s.executions == 2, "run again: %u", s.executions);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_forged_reject_before_arrival_runs_once)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	uint8_t wire[512], back[512], rej[SEALED_REJECT_LEN];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	protect_sealed(&c, &call, "pay 100", wire, &wire_len);
	/* the request is held back; a forged REJECT reaches the client first */
	sealed_reject_encode(SEALED_REJ_BAD_TOKEN, rej);
	CHECK(finish_and_serve(&c, &s, &call, rej, sizeof(rej)) == 0);
	CHECK(s.executions == 2);
	CHECK(cli_peer(&c)->rebootstraps == 1);
	/* the original, released late, is refused as a replay */
	CHECK(serve(&s, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_ANSWER);
	CHECK(authed_reason(back, n, SEALED_REJ_REPLAY));
	CHECK(s.executions == 2);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_after_a_restart_fails_distinctly_rather_than_twice)
{
	struct host_cli c;
	struct host_srv s, restarted;
	struct sec_call call = {0};
	uint8_t wire[512], back[512];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	protect_sealed(&c, &call, "pay 100", wire, &wire_len);
	CHECK(serve(&s, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_DELIVER);
	/* the server dies before answering; a new one starts with an empty register */
	srv_open(&restarted, CFG_SEC_SEALED, stek1);
	restarted.env.start_ms = ++wall; /* it started after the request was stamped */
	CHECK(serve(&restarted, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_ANSWER);
	CHECK(authed_reason(back, n, SEALED_REJ_RESTARTED));
	/* authentic: the client asks through tls, and the server cannot tell */
	CHECK(finish_and_serve(&c, &restarted, &call, back, n) == -ENOTRECOVERABLE);
	CHECK(restarted.executions == 0);
	sec_call_release(&call);
	srv_close(&restarted);
	srv_close(&s);
	cli_close(&c);
}

TEST(sealed_copy_to_another_server_is_refused)
{
	struct host_cli c;
	struct host_srv s, other;
	struct sec_call call = {0};
	uint8_t wire[512], back[512];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	srv_open(&other, CFG_SEC_SEALED, stek1); /* same STEK: it opens the token */
	other.env.self[0] = other_addr;
	rpc_run(&c, &s, "one", true, false);
	protect_sealed(&c, &call, "pay 100", wire, &wire_len);
	CHECK(serve(&other, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_ANSWER);
	enum sealed_reason why;
	CHECK(sealed_reject_decode(back, n, &why) == 0 && why == SEALED_REJ_WRONG_SERVER);
	CHECK(other.executions == 0);
	CHECK(serve(&s, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_DELIVER);
	sec_call_release(&call);
	srv_close(&other);
	srv_close(&s);
	cli_close(&c);
}

/*
 * RFC 8446 appendix E.5: an attacker drops the client's 0-RTT first flight and
 * forwards a copy, which runs. The client's own flight is then refused early data
 * (strike register) and the handshake goes on at 1-RTT: the server answers its
 * request with "already ran", authenticated, instead of running it again.
 */
TEST(tls_drop_and_forward_runs_once)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call call = {0};
	struct sec_msg m;
	uint8_t wire[4096], back[4096];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	rpc_run(&c, &s, "one", true, false); /* a ticket */
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"pay 100", 7, false, &m) == 0);
	memcpy(wire, m.data, m.len);
	wire_len = m.len;
	CHECK(serve(&s, R2P2_F_TLS, wire, wire_len, back, &n) == SEC_DELIVER); /* the copy */
	CHECK(s.executions == 2);
	CHECK(serve(&s, R2P2_F_TLS, wire, wire_len, back, &n) == SEC_ANSWER); /* the client's */
	CHECK(finish_and_serve(&c, &s, &call, back, n) == -EALREADY);
	CHECK_MSG(s.executions == 2, "ran again: %u", s.executions);
	struct tls_stats st;
	tls_server_stats(s.svc.tls, &st);
	CHECK(st.replays_refused == 1 && st.already_answered == 1);
	sec_call_release(&call);
	srv_close(&s);
	cli_close(&c);
}

/* A tls 0-RTT first flight copied to another server of the fleet (same STEK, so it
 * resumes the ticket) is refused there: its early data is bound to the first. */
TEST(tls_0rtt_copy_to_another_server_is_refused)
{
	struct host_cli c;
	struct host_srv s, other;
	struct sec_call call = {0};
	struct sec_msg m;
	uint8_t wire[4096], back[4096];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	srv_open(&other, CFG_SEC_TLS, stek1);
	other.env.self[0] = other_addr;
	tls_server_set_self(other.svc.tls, other.env.self, 1, other.svc.port);
	rpc_run(&c, &s, "one", true, false); /* a ticket */
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"pay 100", 7, false, &m) == 0);
	memcpy(wire, m.data, m.len);
	wire_len = m.len;
	CHECK(serve(&other, R2P2_F_TLS, wire, wire_len, back, &n) != SEC_DELIVER);
	CHECK(other.executions == 0);
	struct tls_stats st;
	tls_server_stats(other.svc.tls, &st);
	CHECK_MSG(st.wrong_server == 1 && st.early_accepted == 1, "wrong_server %llu",
		  (unsigned long long)st.wrong_server);
	CHECK(serve(&s, R2P2_F_TLS, wire, wire_len, back, &n) == SEC_DELIVER); /* its own */
	CHECK(s.executions == 2);
	sec_call_release(&call);
	srv_close(&other);
	srv_close(&s);
	cli_close(&c);
}

/*
 * A first flight that went out twice and whose early data the server then refused
 * may have run at a process the server's register does not know of (it restarted
 * between the two): the call fails with -ENOTRECOVERABLE rather than send the
 * request again at 1-RTT.
 */
TEST(tls_early_refused_after_a_retransmission_fails_distinctly)
{
	struct host_cli c;
	struct host_srv s, restarted;
	struct sec_call call = {0};
	struct sec_reply rep;
	struct sec_msg m;
	uint8_t wire[4096], back[4096];
	size_t wire_len, n;

	cli_open(&c, CFG_SEC_TLS);
	srv_open(&s, CFG_SEC_TLS, stek1);
	rpc_run(&c, &s, "one", true, false); /* a ticket */
	sec_call_init(&call, sec_ops_for(CFG_SEC_TLS), cli_peer(&c), true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"pay 100", 7, false, &m) == 0);
	memcpy(wire, m.data, m.len);
	wire_len = m.len;
	CHECK(serve(&s, R2P2_F_TLS, wire, wire_len, back, &n) == SEC_DELIVER); /* ran; lost */
	srv_open(&restarted, CFG_SEC_TLS, stek1);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	tls_server_set_early_limits(
	    restarted.svc.tls, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1000,
	    0); /* it started after the ticket was issued */
	CHECK(serve(&restarted, R2P2_F_TLS, wire, wire_len, back, &n) == SEC_ANSWER);
	call.sends = 2; /* the engine retransmitted the first flight */
	CHECK(call.ops->finish(&c.env, &call, 0, back, n, &rep) == SEC_DONE);
	CHECK(rep.status == -ENOTRECOVERABLE);
	CHECK(restarted.executions == 0 && s.executions == 2);
	sec_call_release(&call);
	srv_close(&restarted);
	srv_close(&s);
	cli_close(&c);
}

TEST(timeout_releases_a_bootstrap)
{
	struct host_cli c;
	struct sec_call call = {0};
	struct sec_reply rep;
	struct sec_msg m;

	cli_open(&c, CFG_SEC_SEALED);
	struct sec_peer *p = cli_peer(&c);
	sec_call_init(&call, sec_ops_for(CFG_SEC_SEALED), p, true, &server_addr);
	CHECK(call.ops->protect(&c.env, &call, 0, (const uint8_t *)"x", 1, false, &m) == 0);
	CHECK(p->bootstrapping);
	CHECK(call.ops->finish(&c.env, &call, -ETIMEDOUT, NULL, 0, &rep) == SEC_DONE);
	CHECK(rep.status == -ETIMEDOUT);
	sec_call_release(&call);
	CHECK(!p->bootstrapping && !p->assoc_ready);
	cli_close(&c);
}

TEST(peers_are_made_once_and_a_missing_ca_is_refused)
{
	struct host_cli c;
	char err[256];

	cli_open(&c, CFG_SEC_TLS);
	struct sec_peer *a = cli_peer(&c), *b = cli_peer(&c);
	CHECK(a == b && a->tls);
	snprintf(c.cc.ca, sizeof(c.cc.ca), "%.200s/missing.crt", dir);
	CHECK(sec_peer_for(c.peers, 4, &c.cc, err, sizeof(err)) == NULL);
	CHECK(strlen(err) > 0);
	cli_close(&c);
}

/* ---- keys are wiped when they leave -------------------------------------------- */

/* load_set loads the STEK file `path` (the caller puts the set). */
static struct stek_set *load_set(const char *path)
{
	struct stek_set *set = NULL;
	char err[256] = "";

	CHECK_MSG(stek_load(path, &set, err, sizeof(err)) == 0, "%s", err);
	return set;
}

TEST(sealed_retired_keys_leave_the_token_cache)
{
	struct host_cli c;
	struct host_srv s;
	char both[320];

	snprintf(both, sizeof(both), "%s/stek31.keys", dir);
	fixture_write_stek(both, "00000003   current   " K3 "\n00000001   previous  " K1 "\n");
	struct stek_set *set1 = load_set(stek1);
	const struct stek_key *k1 = stek_find(set1, 1);

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	CHECK(rpc_run(&c, &s, "two", true, false).first_flags == R2P2_F_SEALED);
	CHECK(sealed_server_cached_keys(s.svc.sealed) == 1);
	CHECK(sealed_server_caches_key(s.svc.sealed, k1));
	CHECK_MSG(sealed_server_opened_tokens(s.svc.sealed) == 1, "the token is kept opened");

	/* a rotation that keeps key 1 as previous keeps its token key */
	srv_switch_stek(&s, both);
	CHECK(sealed_server_caches_key(s.svc.sealed, k1));
	struct rpc r = rpc_run(&c, &s, "three", true, false);
	CHECK(reply_is(&r, "re:three") && r.rounds == 1);

	/* the next set drops key 1: its token key is wiped as the set changes */
	srv_switch_stek(&s, stek3);
	CHECK_MSG(!sealed_server_caches_key(s.svc.sealed, k1), "key 1 outlived its set");
	CHECK(sealed_server_cached_keys(s.svc.sealed) == 0);
	CHECK_MSG(sealed_server_opened_tokens(s.svc.sealed) == 0,
		  "a token of key 1 outlived its set");
	r = rpc_run(&c, &s, "four", true, false); /* refused, bootstraps under key 3 */
	CHECK(reply_is(&r, "re:four"));
	CHECK(rpc_run(&c, &s, "five", true, false).rounds == 1);
	CHECK(sealed_server_cached_keys(s.svc.sealed) == 1);
	CHECK(!sealed_server_caches_key(s.svc.sealed, k1));
	srv_close(&s);
	cli_close(&c);
	stek_set_put(set1);
}

TEST(sealed_token_cache_checks_the_set_on_its_next_use)
{
	struct host_cli c;
	struct host_srv s;
	char both[320];

	snprintf(both, sizeof(both), "%s/stek13.keys", dir);
	fixture_write_stek(both, "00000001   current   " K1 "\n00000003   next      " K3 "\n");
	struct stek_set *set1 = load_set(stek1), *set3 = load_set(stek3);
	const struct stek_key *k1 = stek_find(set1, 1), *k3 = stek_find(set3, 3);

	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, both);
	rpc_run(&c, &s, "one", true, false);
	rpc_run(&c, &s, "two", true, false);
	CHECK(sealed_server_caches_key(s.svc.sealed, k1));
	/* the service's set is replaced without telling the sealed server (as a caller
	 * that only swaps the pointer would): the first token opened under the new set
	 * wipes what it no longer has */
	struct stek_set *next = load_set(stek3);
	stek_set_put(s.stek);
	s.stek = s.env.stek = next;
	rpc_run(&c, &s, "three", true, false); /* refused (unknown key), bootstraps */
	CHECK(rpc_run(&c, &s, "four", true, false).rounds == 1);
	CHECK(sealed_server_caches_key(s.svc.sealed, k3));
	CHECK_MSG(!sealed_server_caches_key(s.svc.sealed, k1), "key 1 outlived its set");
	srv_close(&s);
	cli_close(&c);
	stek_set_put(set1);
	stek_set_put(set3);
}

/* ---- plaintext does not outlive its use ------------------------------------------ */

/* holds says whether `pat` is anywhere in the memory `b` owns, past `len` included. */
static bool holds(const struct tls_buf *b, const char *pat)
{
	return b->data && memmem(b->data, b->cap, pat, strlen(pat)) != NULL;
}

/* open_only opens one request at `s` and drops it unanswered (the app still has it). */
static void open_only(struct host_srv *s, const uint8_t *wire, size_t len)
{
	struct sec_request rq = {.src = &client_addr,
				 .flags = R2P2_F_SEALED,
				 .payload = wire,
				 .len = len,
				 .now = tick()};
	struct sec_exec x;
	struct sec_msg m;

	CHECK(s->svc.ops->open(&s->env, &s->svc, &rq, &x, &m) == SEC_DELIVER);
	sec_exec_release(&x);
}

TEST(scrub_wipes_every_plaintext_the_scratch_buffers_held)
{
	struct host_cli c;
	struct host_srv s;
	struct sec_call a = {0}, b = {0};
	uint8_t wire[512];
	size_t wire_len;
	char big[201];

	memset(big, 'L', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = '<';
	cli_open(&c, CFG_SEC_SEALED);
	srv_open(&s, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &s, "one", true, false);
	CHECK(holds(&c.env.plain, "re:one")); /* the tls response, decrypted */
	sec_env_scrub(&c.env);
	CHECK(!holds(&c.env.plain, "re:one") && c.env.plain.len == 0);

	/* a long request, then a short one: the short one's `len` does not cover the
	 * long one's tail, which still sits in the buffer */
	protect_sealed(&c, &a, big, wire, &wire_len);
	open_only(&s, wire, wire_len);
	protect_sealed(&c, &b, "<S>", wire, &wire_len);
	open_only(&s, wire, wire_len);
	CHECK(s.env.sealed.len == 3 && holds(&s.env.sealed, "<S>"));
	CHECK(holds(&s.env.sealed, "LLLLLLLLLLLLLLLL"));
	sec_env_scrub(&s.env);
	CHECK_MSG(!holds(&s.env.sealed, "LLLLLLLLLLLLLLLL"), "the long request outlived the scrub");
	CHECK(!holds(&s.env.sealed, "<S>") && s.env.sealed.len == 0);
	sec_env_scrub(&s.env); /* nothing written since: nothing to do */
	sec_call_release(&a);
	sec_call_release(&b);
	srv_close(&s);
	cli_close(&c);
}

TEST(tls_buf_keeps_its_bytes_when_it_grows_and_counts_them)
{
	struct tls_buf b = {0};

	CHECK(tls_buf_reserve(&b, 8) == 0 && b.cap >= 8 && b.dirty == 8);
	memcpy(b.data, "secret!", 8);
	b.len = 8;
	CHECK(tls_buf_reserve(&b, 4096) == 0 && b.cap >= 4096 && b.dirty == 4096);
	CHECK(memcmp(b.data, "secret!", 8) == 0);
	tls_buf_scrub(&b);
	CHECK(b.len == 0 && b.dirty == 0 && !holds(&b, "secret!"));
	tls_buf_cleanup(&b);
	CHECK(!b.data && !b.cap && !b.dirty);
}

/* ---- one STEK per service ----------------------------------------------------------- */

/* srv_open_own is srv_open with the service's own STEK file `own` ([serve] stek =). */
static void srv_open_own(struct host_srv *h, enum cfg_security sec, const char *daemon_stek,
			 const char *own)
{
	struct cfg_serve sv = {.port = 8000, .security = sec, .early_data = true};
	char err[256] = "";

	srv_open(h, CFG_SEC_PLAIN, daemon_stek);
	snprintf(sv.name, sizeof(sv.name), SVC);
	snprintf(sv.cert, sizeof(sv.cert), "%.200s", crt);
	snprintf(sv.key, sizeof(sv.key), "%.200s", key);
	snprintf(sv.stek, sizeof(sv.stek), "%s", own);
	CHECK_MSG(sec_service_configure(&h->env, &h->svc, &sv, err, sizeof(err)) == 0, "%s", err);
}

/*
 * Servers A and A2 serve the service with its own STEK (key 3); B, same name and
 * certificate, takes the daemon's (key 1), as another trust domain would. A ticket
 * or a token A minted resumes at A2, never at B, and the other way round.
 */
TEST(service_stek_tickets_stay_in_their_trust_domain)
{
	struct host_cli c;
	struct host_srv a, a2, b;

	cli_open(&c, CFG_SEC_TLS);
	srv_open_own(&a, CFG_SEC_TLS, stek1, stek3);
	srv_open_own(&a2, CFG_SEC_TLS, stek1, stek3);
	srv_open(&b, CFG_SEC_TLS, stek1);
	CHECK(rpc_run(&c, &a, "one", true, false).rounds == 2); /* first contact */
	struct rpc r = rpc_run(&c, &b, "two", true, false);	/* with A's ticket */
	CHECK(reply_is(&r, "re:two"));
	CHECK_MSG(r.rounds == 2, "B resumed a ticket of A's STEK: %u rounds", r.rounds);
	r = rpc_run(&c, &a2, "three", true, false); /* with B's ticket */
	CHECK_MSG(r.rounds == 2, "A2 resumed a ticket of the daemon's STEK: %u rounds", r.rounds);
	r = rpc_run(&c, &a, "four", true, false); /* with A2's ticket: same STEK */
	CHECK_MSG(r.rounds == 1, "A did not resume A2's ticket: %u rounds", r.rounds);
	srv_close(&a);
	srv_close(&a2);
	srv_close(&b);
	cli_close(&c);
}

TEST(service_stek_tokens_stay_in_their_trust_domain)
{
	struct host_cli c;
	struct host_srv a, a2, b;
	struct sec_call call = {0};
	uint8_t wire[512], back[512];
	size_t wire_len, n;
	enum sealed_reason why;

	cli_open(&c, CFG_SEC_SEALED);
	srv_open_own(&a, CFG_SEC_SEALED, stek1, stek3);
	srv_open_own(&a2, CFG_SEC_SEALED, stek1, stek3);
	srv_open(&b, CFG_SEC_SEALED, stek1);
	rpc_run(&c, &a, "one", true, false);
	CHECK_MSG(sec_peer_key_id(cli_peer(&c)) == 3, "token under %08x, not the service's key",
		  sec_peer_key_id(cli_peer(&c)));
	protect_sealed(&c, &call, "pay 100", wire, &wire_len);
	CHECK(serve(&b, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_ANSWER);
	CHECK(sealed_reject_decode(back, n, &why) == 0 && why == SEALED_REJ_UNKNOWN_KEY);
	CHECK(b.executions == 0);
	CHECK(serve(&a2, R2P2_F_SEALED, wire, wire_len, back, &n) == SEC_DELIVER);
	sec_call_release(&call);

	/* the daemon's keys changing is none of the service's business */
	struct stek_set *fleet = load_set(stek1);
	sec_service_set_stek(&a.svc, fleet);
	stek_set_put(fleet);
	struct rpc r = rpc_run(&c, &a, "two", true, false);
	CHECK(reply_is(&r, "re:two") && r.first_flags == R2P2_F_SEALED && r.rounds == 1);
	srv_close(&a);
	srv_close(&a2);
	srv_close(&b);
	cli_close(&c);
}

/* A service's own file is reloaded like the daemon's; a refused one keeps the keys. */
TEST(service_stek_reloads_and_keeps_its_keys_on_a_bad_file)
{
	struct host_cli c;
	struct host_srv a;
	char own[320], err[512] = "";
	bool changed = true;

	snprintf(own, sizeof(own), "%s/own.keys", dir);
	fixture_write_stek(own, "00000003   current   " K3 "\n");
	cli_open(&c, CFG_SEC_SEALED);
	srv_open_own(&a, CFG_SEC_SEALED, stek1, own);
	rpc_run(&c, &a, "one", true, false);
	CHECK(sec_service_reload_stek(&a.svc, &changed, err, sizeof(err)) == 0 && !changed);

	if (geteuid() == 0) { /* a file of another owner is refused: the keys stay */
		CHECK(chown(own, 65534, 65534) == 0);
		CHECK(sec_service_reload_stek(&a.svc, &changed, err, sizeof(err)) == -EPERM);
		CHECK_MSG(strstr(err, "[serve " SVC "] stek: ") == err && strstr(err, own), "%s",
			  err);
		CHECK(!changed);
		CHECK(rpc_run(&c, &a, "two", true, false).rounds == 1);
		CHECK(chown(own, 0, 0) == 0);
	}
	fixture_write_stek(own, "00000001   current   " K1 "\n"); /* the service moved to key 1 */
	CHECK_MSG(sec_service_reload_stek(&a.svc, &changed, err, sizeof(err)) == 0, "%s", err);
	CHECK(changed);
	struct rpc r = rpc_run(&c, &a, "three", true, false); /* refused, bootstraps again */
	CHECK(reply_is(&r, "re:three") && sec_peer_key_id(cli_peer(&c)) == 1);
	srv_close(&a);
	cli_close(&c);
}

TEST(service_stek_that_cannot_be_loaded_fails_the_configuration)
{
	struct host_srv a;
	struct cfg_serve sv = {.port = 8000, .security = CFG_SEC_TLS, .early_data = true};
	char err[512] = "";

	srv_open(&a, CFG_SEC_PLAIN, stek1);
	snprintf(sv.name, sizeof(sv.name), SVC);
	snprintf(sv.cert, sizeof(sv.cert), "%.200s", crt);
	snprintf(sv.key, sizeof(sv.key), "%.200s", key);
	snprintf(sv.stek, sizeof(sv.stek), "%.200s/missing.keys", dir);
	CHECK(sec_service_configure(&a.env, &a.svc, &sv, err, sizeof(err)) == -ENOENT);
	CHECK_MSG(strstr(err, "[serve " SVC "] stek: ") == err && strstr(err, "missing.keys"), "%s",
		  err);
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
