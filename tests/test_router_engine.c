// SPDX-License-Identifier: MIT
/*
 * test_router_engine: what the client engine (daemon/engine/) tells the worker about a
 * call made through a router. eng_completing_peer names the server that answered, not
 * the router the request went to, so that a continuation of the exchange (tls mode's
 * second flight, a sealed re-bootstrap) goes to that server; without an answer (a
 * timeout) it names the destination. A plain engine, no sockets.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <r2p2/wire.h>

#include "engine.h"

static struct r2p2_addr router_addr, server_addr, last_peer;
static struct r2p2_hdr last_sent;
static int completions, last_status;
static struct eng *eng;

static struct r2p2_addr v4(const char *s, uint16_t port)
{
	struct r2p2_addr a = {.family = AF_INET, .port = htons(port)};

	inet_pton(AF_INET, s, a.addr);
	return a;
}

static void on_send(void *ctx, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
		    int iovcnt)
{
	(void)ctx;
	(void)sock;
	(void)dst;
	if (iovcnt > 0 && iov[0].iov_len >= sizeof(last_sent))
		memcpy(&last_sent, iov[0].iov_base, sizeof(last_sent));
}

static void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		       unsigned policy, const uint8_t *payload, size_t len)
{
	(void)ctx, (void)sock, (void)handle, (void)src, (void)policy, (void)payload, (void)len;
}

static void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len)
{
	(void)ctx, (void)cookie, (void)payload, (void)len;
	completions++;
	last_status = status;
	last_peer = *eng_completing_peer(eng);
}

static const struct eng_ops ops = {.send = on_send, .request = on_request, .complete = on_complete};

static void setup(void)
{
	struct eng_config cfg;

	eng_config_default(&cfg);
	eng = eng_new(&cfg, &ops, NULL);
	cr_assert(eng);
	router_addr = v4("10.0.0.1", 8000);
	server_addr = v4("10.0.0.12", 8000);
	completions = 0;
}

static void teardown(void)
{
	eng_free(eng);
}

static void call_via_router(void)
{
	struct eng_call_args a = {.dst = router_addr,
				  .via_router = true,
				  .payload = "ping",
				  .len = 4,
				  .timeout_ns = 1000000,
				  .max_retries = 0};

	cr_assert_eq(eng_call(eng, &a, 0), 0);
}

Test(router_engine, completing_peer_is_the_server_that_answered, .init = setup, .fini = teardown)
{
	uint8_t resp[12];
	struct r2p2_hdr h = {.magic = R2P2_MAGIC,
			     .header_size = R2P2_HDR_LEN,
			     .type_policy = (R2P2_RESPONSE << 4) | R2P2_FIXED_ROUTE,
			     .flags = R2P2_F_FIRST | R2P2_F_LAST,
			     .p_order = htons(1)};

	call_via_router();
	h.rid = last_sent.rid;
	memcpy(resp, &h, sizeof(h));
	memcpy(resp + sizeof(h), "pong", 4);
	eng_input(eng, 0, &server_addr, resp, sizeof(resp), 1000);
	cr_assert_eq(completions, 1);
	cr_expect_eq(last_status, 0);
	cr_expect(!memcmp(&last_peer, &server_addr, sizeof(last_peer)),
		  "the continuation would go to the router, not the server");
}

Test(router_engine, completing_peer_without_answer_is_the_destination, .init = setup,
     .fini = teardown)
{
	call_via_router();
	eng_tick(eng, 10000000);
	cr_assert_eq(completions, 1);
	cr_expect_eq(last_status, -ETIMEDOUT);
	cr_expect(!memcmp(&last_peer, &router_addr, sizeof(last_peer)));
}
