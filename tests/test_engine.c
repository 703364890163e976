// SPDX-License-Identifier: MIT
/*
 * test_engine: the R2P2 engine speaks upstream's wire format, recovers from loss,
 * duplication and reordering of every packet with exactly one execution and one
 * completion, refuses malformed input into the right counter, and keeps its bounds.
 *
 * Engines are wired by a simulated network (a FIFO of sent datagrams with an
 * optional fault on one packet) and a virtual clock that jumps to the next deadline.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <r2p2/wire.h>

#include "engine.h"

#define MS 1000000ull
#define SEC 1000000000ull

/* ---- harness -------------------------------------------------------------------- */

struct pkt {
	unsigned sock;
	struct r2p2_addr dst;
	size_t seq; /* global transmission order */
	size_t len;
	uint8_t *data;
};

struct req_ev {
	uint64_t handle;
	unsigned sock;
	struct r2p2_addr src;
	unsigned policy;
	uint8_t flags; /* free flag bits reported by request_ex */
	uint8_t *payload;
	size_t len;
};

struct done_ev {
	uint64_t cookie;
	int status;
	uint8_t *payload;
	size_t len;
	uint64_t at;
};

enum auto_mode {
	AUTO_NONE,   /* record requests; the test answers */
	AUTO_ECHO,   /* eng_respond(payload) from inside the callback */
	AUTO_SIZED,  /* eng_respond(resp_len pattern bytes) from inside the callback */
	AUTO_REJECT, /* eng_reject from inside the callback */
};

struct node {
	struct eng *e;
	struct r2p2_addr addr;
	struct pkt *sent;
	size_t num_sent, cap_sent;
	struct req_ev *reqs;
	size_t num_reqs, cap_reqs;
	struct done_ev *dones;
	size_t num_dones, cap_dones;
	enum auto_mode mode;
	size_t resp_len;
	/* Called after each completion is recorded (re-entrancy tests). */
	void (*on_done)(struct node *n, const struct done_ev *d);
	bool keep_payloads;	/* copy payloads of requests/completions (off for bulk tests) */
	size_t legacy_requests; /* requests that came through ops.request, not request_ex */
};

enum fault { F_NONE, F_DROP, F_DUP, F_DELAY };

struct wire_ent {
	struct node *from;
	size_t idx;
};

static struct {
	struct wire_ent *q;
	size_t head, len, cap;
	struct node *nodes[4];
	size_t num_nodes;
	size_t seq;
	enum fault fault;
	size_t fault_seq;
	bool has_held;
	struct wire_ent held;
	uint64_t now;
	uint8_t call_flags; /* eng_call_args.flags of do_call */
} net;

static uint8_t pattern_byte(size_t i)
{
	return (uint8_t)(i * 31 + (i >> 8) * 7 + 1);
}

static uint8_t *pattern(size_t len, unsigned salt)
{
	uint8_t *p = malloc(len ? len : 1);
	cr_assert(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(pattern_byte(i) + salt);
	return p;
}

static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return arr;
	size_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	arr = realloc(arr, n * elem);
	cr_assert(arr);
	*cap = n;
	return arr;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);
	cr_assert(d);
	if (len)
		memcpy(d, p, len);
	return d;
}

static void on_send(void *ctx, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
		    int iovcnt)
{
	struct node *n = ctx;
	size_t len = 0, off = 0;

	cr_assert(iovcnt >= 1 && iovcnt <= 2);
	cr_assert_eq(iov[0].iov_len, R2P2_HDR_LEN, "header iov");
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	uint8_t *data = malloc(len);
	cr_assert(data);
	for (int i = 0; i < iovcnt; i++) {
		memcpy(data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	n->sent = grow(n->sent, &n->cap_sent, n->num_sent + 1, sizeof(*n->sent));
	n->sent[n->num_sent] =
	    (struct pkt){.sock = sock, .dst = *dst, .seq = net.seq++, .len = len, .data = data};
	net.q = grow(net.q, &net.cap, net.head + net.len + 1, sizeof(*net.q));
	net.q[net.head + net.len++] = (struct wire_ent){.from = n, .idx = n->num_sent};
	n->num_sent++;
}

static void on_request_ex(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
			  unsigned policy, uint8_t flags, const uint8_t *payload, size_t len)
{
	struct node *n = ctx;
	uint8_t *resp;

	n->reqs = grow(n->reqs, &n->cap_reqs, n->num_reqs + 1, sizeof(*n->reqs));
	n->reqs[n->num_reqs++] =
	    (struct req_ev){.handle = handle,
			    .sock = sock,
			    .src = *src,
			    .policy = policy,
			    .flags = flags,
			    .payload = n->keep_payloads ? dup_bytes(payload, len) : NULL,
			    .len = len};
	switch (n->mode) {
	case AUTO_NONE:
		break;
	case AUTO_ECHO:
		cr_assert_eq(eng_respond(n->e, handle, payload, len, net.now), 0);
		break;
	case AUTO_SIZED:
		resp = pattern(n->resp_len, 3);
		cr_assert_eq(eng_respond(n->e, handle, resp, n->resp_len, net.now), 0);
		free(resp);
		break;
	case AUTO_REJECT:
		cr_assert_eq(eng_reject(n->e, handle, net.now), 0);
		break;
	}
}

static void on_request(void *ctx, unsigned sock, uint64_t handle, const struct r2p2_addr *src,
		       unsigned policy, const uint8_t *payload, size_t len)
{
	struct node *n = ctx;

	n->legacy_requests++;
	on_request_ex(ctx, sock, handle, src, policy, 0, payload, len);
}

static void on_complete(void *ctx, uint64_t cookie, int status, const uint8_t *payload, size_t len)
{
	struct node *n = ctx;

	n->dones = grow(n->dones, &n->cap_dones, n->num_dones + 1, sizeof(*n->dones));
	n->dones[n->num_dones] =
	    (struct done_ev){.cookie = cookie,
			     .status = status,
			     .payload = n->keep_payloads ? dup_bytes(payload, len) : NULL,
			     .len = len,
			     .at = net.now};
	n->num_dones++;
	if (n->on_done)
		n->on_done(n, &n->dones[n->num_dones - 1]);
}

static const struct eng_ops test_ops = {
    .send = on_send,
    .request = on_request,
    .request_ex = on_request_ex,
    .complete = on_complete,
};

/* Ops of an app that predates request_ex. */
static const struct eng_ops legacy_ops = {
    .send = on_send,
    .request = on_request,
    .complete = on_complete,
};

static struct r2p2_addr mkaddr(const char *ip, uint16_t port)
{
	struct r2p2_addr a;

	memset(&a, 0, sizeof(a));
	if (strchr(ip, ':')) {
		a.family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, a.addr), 1);
	} else {
		a.family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, a.addr), 1);
	}
	a.port = htons(port);
	return a;
}

static void node_init(struct node *n, const char *ip, uint16_t port, const struct eng_config *cfg)
{
	struct eng_config def;

	memset(n, 0, sizeof(*n));
	if (!cfg) {
		eng_config_default(&def);
		cfg = &def;
	}
	n->addr = mkaddr(ip, port);
	n->keep_payloads = true;
	n->e = eng_new(cfg, &test_ops, n);
	cr_assert(n->e);
	net.nodes[net.num_nodes++] = n;
}

/* node_free_engine frees the engine (cancelling its calls) but keeps the records. */
static void node_free_engine(struct node *n)
{
	eng_free(n->e);
	n->e = NULL;
}

static void node_cleanup(struct node *n)
{
	node_free_engine(n);
	for (size_t i = 0; i < n->num_sent; i++)
		free(n->sent[i].data);
	for (size_t i = 0; i < n->num_reqs; i++)
		free(n->reqs[i].payload);
	for (size_t i = 0; i < n->num_dones; i++)
		free(n->dones[i].payload);
	free(n->sent);
	free(n->reqs);
	free(n->dones);
}

static void net_reset(void)
{
	free(net.q);
	memset(&net, 0, sizeof(net));
}

static struct node *node_at(const struct r2p2_addr *a)
{
	for (size_t i = 0; i < net.num_nodes; i++)
		if (memcmp(&net.nodes[i]->addr, a, sizeof(*a)) == 0)
			return net.nodes[i];
	return NULL;
}

static void deliver(struct wire_ent w)
{
	const struct pkt *p = &w.from->sent[w.idx];
	struct node *to = node_at(&p->dst);

	if (to) /* no node there: a black hole */
		eng_input(to->e, p->sock, &w.from->addr, p->data, p->len, net.now);
}

/* net_pump delivers one datagram, applying the fault to the one with seq == fault_seq. */
static bool net_pump(void)
{
	struct wire_ent w;

	if (!net.len) {
		if (!net.has_held)
			return false;
		net.has_held = false;
		deliver(net.held);
		return true;
	}
	w = net.q[net.head++];
	if (--net.len == 0)
		net.head = 0;
	if (w.from->sent[w.idx].seq == net.fault_seq) {
		switch (net.fault) {
		case F_NONE:
			break;
		case F_DROP:
			return true;
		case F_DUP:
			deliver(w);
			break;
		case F_DELAY:
			net.held = w;
			net.has_held = true;
			return true;
		}
	}
	deliver(w);
	if (net.has_held) {
		net.has_held = false;
		deliver(net.held);
	}
	return true;
}

/* net_run delivers everything and runs timers until `done` holds (or, when NULL, nothing is left).
 */
static void net_run(bool (*done)(void *), void *arg)
{
	for (int iter = 0; iter < 1000000; iter++) {
		uint64_t d = UINT64_MAX;
		while (net_pump())
			;
		if (done && done(arg))
			return;
		for (size_t i = 0; i < net.num_nodes; i++) {
			uint64_t nd = eng_next_deadline(net.nodes[i]->e);
			if (nd < d)
				d = nd;
		}
		if (d == UINT64_MAX) {
			cr_assert_null(done, "net settled before the condition held");
			return;
		}
		if (d > net.now)
			net.now = d;
		for (size_t i = 0; i < net.num_nodes; i++)
			eng_tick(net.nodes[i]->e, net.now);
	}
	cr_assert_fail("net did not settle");
}

static bool has_dones(void *arg)
{
	struct node *n = arg;
	return n->num_dones > 0;
}

static int do_call(struct node *n, const struct r2p2_addr *dst, const void *p, size_t len,
		   uint64_t cookie, uint64_t timeout, uint32_t retries)
{
	struct eng_call_args a = {
	    .sock = 0,
	    .dst = *dst,
	    .policy = R2P2_LB_ROUTE,
	    .payload = p,
	    .len = len,
	    .cookie = cookie,
	    .timeout_ns = timeout,
	    .max_retries = retries,
	    .flags = net.call_flags,
	};
	return eng_call(n->e, &a, net.now);
}

static size_t hex(const char *s, uint8_t *out)
{
	size_t n = 0;
	while (*s) {
		unsigned v;
		if (*s == ' ') {
			s++;
			continue;
		}
		cr_assert_eq(sscanf(s, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static void expect_pkt(const struct pkt *p, const char *want_hex)
{
	uint8_t want[256];
	size_t n = hex(want_hex, want);
	cr_assert_eq(p->len, n, "length %zu, want %zu", p->len, n);
	cr_assert_arr_eq(p->data, want, n);
}

static void feed(struct node *n, unsigned sock, const struct r2p2_addr *src, const uint8_t *b,
		 size_t len)
{
	eng_input(n->e, sock, src, b, len, net.now);
}

static void feed_hex(struct node *n, const struct r2p2_addr *src, const char *h)
{
	uint8_t b[256];
	size_t len = hex(h, b);
	feed(n, 0, src, b, len);
}

/* mkpkt builds a packet with a `len`-byte pattern payload into `out` (room for 8 + len). */
static size_t mkpkt(uint8_t *out, unsigned type, unsigned policy, uint8_t flags, uint16_t rid,
		    uint16_t p_order, size_t len, unsigned salt)
{
	struct r2p2_hdr h = {R2P2_MAGIC, R2P2_HDR_LEN, (uint8_t)(type << 4 | policy),
			     flags,	 htons(rid),   htons(p_order)};
	memcpy(out, &h, sizeof(h));
	for (size_t i = 0; i < len; i++)
		out[8 + i] = (uint8_t)(pattern_byte(i) + salt);
	return 8 + len;
}

static struct eng_stats stats(const struct node *n)
{
	struct eng_stats s;
	eng_get_stats(n->e, &s);
	return s;
}

static size_t pending_calls(const struct node *n)
{
	size_t c, s;
	eng_num_pending(n->e, &c, &s);
	return c;
}

static size_t pending_states(const struct node *n)
{
	size_t c, s;
	eng_num_pending(n->e, &c, &s);
	return s;
}

static unsigned pkt_type(const struct pkt *p)
{
	return p->data[2] >> 4;
}

static uint16_t pkt_rid(const struct pkt *p)
{
	return (uint16_t)(p->data[4] << 8 | p->data[5]);
}

static uint16_t pkt_order(const struct pkt *p)
{
	return (uint16_t)(p->data[6] << 8 | p->data[7]);
}

static uint32_t num_pkts(size_t len, size_t head)
{
	if (len <= R2P2_MAX_PAYLOAD)
		return 1;
	return 1 + (uint32_t)((len - head + R2P2_MAX_PAYLOAD - 1) / R2P2_MAX_PAYLOAD);
}

/*
 * check_geometry checks that pkts[0..] (the first packets of `type` in a log)
 * split a `len`-byte message exactly as upstream does and carry `msg`.
 */
static void check_geometry_flags(const struct node *n, unsigned type, const uint8_t *msg,
				 size_t len, size_t head, uint8_t fl)
{
	uint32_t want = num_pkts(len, head), got = 0;
	size_t off = 0;

	for (size_t i = 0; i < n->num_sent && got < want; i++) {
		const struct pkt *p = &n->sent[i];
		size_t plen = p->len - 8;
		if (pkt_type(p) != type)
			continue;
		cr_assert_eq(p->data[0], 0xCC);
		cr_assert_eq(p->data[1], 8);
		if (want == 1) {
			cr_assert_eq(p->data[3], 0xC0 | fl);
			cr_assert_eq(pkt_order(p), 1);
			cr_assert_eq(plen, len);
		} else if (got == 0) {
			cr_assert_eq(p->data[3], 0x80 | fl);
			cr_assert_eq(pkt_order(p), want);
			cr_assert_eq(plen, head);
		} else {
			cr_assert_eq(p->data[3], (got == want - 1 ? 0x40 : 0x00) | fl,
				     "flags of %u", got);
			cr_assert_eq(pkt_order(p), got);
			if (got < want - 1)
				cr_assert_eq(plen, R2P2_MAX_PAYLOAD);
			else
				cr_assert(plen >= 1 && plen <= R2P2_MAX_PAYLOAD);
		}
		cr_assert_arr_eq(p->data + 8, msg + off, plen);
		off += plen;
		got++;
	}
	cr_assert_eq(got, want, "%u packets of type %u, want %u", got, type, want);
	cr_assert_eq(off, len);
}

static void check_geometry(const struct node *n, unsigned type, const uint8_t *msg, size_t len,
			   size_t head)
{
	check_geometry_flags(n, type, msg, len, head, 0);
}

static size_t count_type(const struct node *n, unsigned type)
{
	size_t c = 0;
	for (size_t i = 0; i < n->num_sent; i++)
		c += pkt_type(&n->sent[i]) == type;
	return c;
}

struct pair {
	struct node cli, srv;
};

static void pair_init(struct pair *p, const struct eng_config *ccfg, const struct eng_config *scfg)
{
	net_reset();
	node_init(&p->cli, "10.0.0.1", 5555, ccfg);
	node_init(&p->srv, "10.0.0.2", 8000, scfg);
	p->srv.mode = AUTO_ECHO;
}

static void pair_cleanup(struct pair *p)
{
	node_cleanup(&p->cli);
	node_cleanup(&p->srv);
	net_reset();
}

/* ---- upstream test vectors ------------------------------------------------------ */

Test(vectors, ping_echo)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	srv.mode = AUTO_ECHO;
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.reqs[0].policy, R2P2_LB_ROUTE);
	cr_assert_eq(srv.reqs[0].len, 4);
	cr_assert_arr_eq(srv.reqs[0].payload, "ping", 4);
	cr_assert_eq(memcmp(&srv.reqs[0].src, &cli, sizeof(cli)), 0);
	cr_assert_eq(srv.num_sent, 1);
	expect_pkt(&srv.sent[0], "cc 08 11 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(memcmp(&srv.sent[0].dst, &cli, sizeof(cli)), 0);
	cr_assert_eq(stats(&srv).resp_sent, 1);
	cr_assert_eq(stats(&srv).req_received, 1);
	node_cleanup(&srv);
}

Test(vectors, client_ping_bytes)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	eng_set_next_rid(cli.e, 0x1234);
	cr_assert_eq(do_call(&cli, &srv, "ping", 4, 1, SEC, 0), 0);
	cr_assert_eq(cli.num_sent, 1);
	expect_pkt(&cli.sent[0], "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	feed_hex(&cli, &srv, "cc 08 11 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	cr_assert_eq(cli.dones[0].len, 4);
	cr_assert_arr_eq(cli.dones[0].payload, "ping", 4);
	node_cleanup(&cli);
}

Test(vectors, request_3000_first_packet_and_ack)
{
	struct pair p;
	uint8_t *msg = pattern(3000, 0);
	char want[128];
	int n;

	pair_init(&p, NULL, NULL);
	eng_set_next_rid(p.cli.e, 0x0042);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 3000, 1, SEC, 0), 0);
	cr_assert_eq(p.cli.num_sent, 1, "only the first packet before the ACK");
	n = snprintf(want, sizeof(want), "cc 08 00 80 00 42 00 04");
	for (int i = 0; i < 14; i++)
		n += snprintf(want + n, sizeof(want) - (size_t)n, " %02x", msg[i]);
	expect_pkt(&p.cli.sent[0], want);

	cr_assert(net_pump());
	cr_assert_eq(p.srv.num_sent, 1);
	expect_pkt(&p.srv.sent[0], "cc 08 31 c0 00 42 00 01 41 43 4b");
	cr_assert_eq(memcmp(&p.srv.sent[0].dst, &p.cli.addr, sizeof(p.cli.addr)), 0);

	net_run(has_dones, &p.cli);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, 3000);
	cr_assert_arr_eq(p.cli.dones[0].payload, msg, 3000);
	check_geometry(&p.cli, R2P2_REQUEST, msg, 3000, R2P2_MIN_PAYLOAD);
	cr_assert_eq(p.cli.num_sent, 4, "14+1464+1464+58");
	cr_assert_eq(p.cli.sent[3].len, 8 + 58);
	free(msg);
	pair_cleanup(&p);
}

/* ---- sizes, both directions ----------------------------------------------------- */

static void echo_size(size_t len)
{
	struct pair p;
	uint8_t *msg = pattern(len, 5);

	pair_init(&p, NULL, NULL);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, len, 77, 100 * MS, 2), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(p.cli.dones[0].cookie, 77);
	cr_assert_eq(p.cli.dones[0].status, 0, "len %zu status %d", len, p.cli.dones[0].status);
	cr_assert_eq(p.cli.dones[0].len, len);
	cr_assert_arr_eq(p.cli.dones[0].payload, msg, len);
	cr_assert_eq(p.srv.num_reqs, 1);
	cr_assert_eq(p.srv.reqs[0].len, len);
	cr_assert_arr_eq(p.srv.reqs[0].payload, msg, len);
	check_geometry(&p.cli, R2P2_REQUEST, msg, len, R2P2_MIN_PAYLOAD);
	check_geometry(&p.srv, R2P2_RESPONSE, msg, len, R2P2_MAX_PAYLOAD);
	cr_assert_eq(count_type(&p.srv, R2P2_ACK), len > R2P2_MAX_PAYLOAD ? 1 : 0);
	cr_assert_eq(count_type(&p.srv, R2P2_RESPONSE), num_pkts(len, R2P2_MAX_PAYLOAD));
	cr_assert_eq(count_type(&p.cli, R2P2_REQUEST), num_pkts(len, R2P2_MIN_PAYLOAD));
	cr_assert_eq(stats(&p.cli).retransmits, 0);
	cr_assert_eq(stats(&p.srv).rx_duplicate, 0);
	/* Every state is freed once the dedup window is over. */
	cr_assert_eq(pending_calls(&p.cli), 0);
	cr_assert_eq(pending_states(&p.srv), 0);
	free(msg);
	pair_cleanup(&p);
}

/*
 * A steady flow allocates nothing: once the first calls and answered requests are
 * freed, later ones reuse their states, and small messages are copied into them
 * (requests up to 192 bytes, answers up to 64). A larger one takes one allocation.
 */
Test(sizes, steady_flow_allocates_nothing)
{
	struct pair p;
	uint8_t *big = pattern(200, 1);
	uint64_t cli_allocs, srv_allocs;

	pair_init(&p, NULL, NULL);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 50; i++) {
			cr_assert_eq(do_call(&p.cli, &p.srv.addr, "ping", 4, (uint64_t)i, SEC, 0),
				     0);
			net_run(NULL, NULL);
		}
		cr_assert_eq(p.cli.num_dones, (size_t)(round + 1) * 50);
		cr_assert_eq(pending_states(&p.srv), 0, "net_run ran the dedup windows out");
		if (round == 0) {
			cli_allocs = stats(&p.cli).allocs;
			srv_allocs = stats(&p.srv).allocs;
			cr_assert(srv_allocs > 0 && cli_allocs > 0,
				  "the first states are allocated");
		}
	}
	cr_assert_eq(stats(&p.cli).allocs, cli_allocs, "calls reused");
	cr_assert_eq(stats(&p.srv).allocs, srv_allocs, "server states reused");
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, big, 200, 9, SEC, 0), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.dones[p.cli.num_dones - 1].len, 200);
	cr_assert_arr_eq(p.cli.dones[p.cli.num_dones - 1].payload, big, 200);
	cr_assert_eq(stats(&p.cli).allocs, cli_allocs + 1, "the request's copy");
	cr_assert_eq(stats(&p.srv).allocs, srv_allocs + 1, "the response's copy");
	free(big);
	pair_cleanup(&p);
}

Test(sizes, echo_0)
{
	echo_size(0);
}
Test(sizes, echo_1)
{
	echo_size(1);
}
Test(sizes, echo_14)
{
	echo_size(14);
}
Test(sizes, echo_15)
{
	echo_size(15);
}
Test(sizes, echo_1464)
{
	echo_size(1464);
}
Test(sizes, echo_1465)
{
	echo_size(1465);
}
Test(sizes, echo_3000)
{
	echo_size(3000);
}
Test(sizes, echo_65536)
{
	echo_size(65536);
}
Test(sizes, echo_max_msg_len)
{
	echo_size(1 << 20);
}

/* Small request, large response and the other way around. */
static void asym(size_t req_len, size_t resp_len)
{
	struct pair p;
	uint8_t *msg = pattern(req_len, 1), *resp = pattern(resp_len, 3);

	pair_init(&p, NULL, NULL);
	p.srv.mode = AUTO_SIZED;
	p.srv.resp_len = resp_len;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, req_len, 1, 100 * MS, 0), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, resp_len);
	cr_assert_arr_eq(p.cli.dones[0].payload, resp, resp_len);
	check_geometry(&p.srv, R2P2_RESPONSE, resp, resp_len, R2P2_MAX_PAYLOAD);
	free(msg);
	free(resp);
	pair_cleanup(&p);
}

Test(sizes, small_request_big_response)
{
	asym(4, 1 << 20);
}
Test(sizes, big_request_small_response)
{
	asym(1 << 20, 0);
}
Test(sizes, response_exact_packets)
{
	asym(1, 2 * R2P2_MAX_PAYLOAD);
}

/* ---- loss, duplication, reordering of each packet ---------------------------------- */

static void check_enc_geometry(const struct node *n, const uint8_t *msg, size_t len, uint8_t flags);
static void check_all_flags(const struct node *n, uint8_t flags);

/* faulty_exchange runs one call with `flags` (0: plain) and one fault; returns packets sent. */
static size_t faulty_exchange_flags(size_t req_len, size_t resp_len, enum fault f, size_t at,
				    uint8_t flags)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(req_len, 9), *resp = pattern(resp_len, 3);
	size_t total;

	eng_config_default(&cfg);
	cfg.allow_flags = (flags & ~R2P2_F_EXT) != 0; /* R2P2_F_EXT needs no allow_flags */
	cfg.hash_seed = flags ? 0x0123456789abcdefull : 0;
	pair_init(&p, &cfg, &cfg);
	p.srv.mode = AUTO_SIZED;
	p.srv.resp_len = resp_len;
	net.fault = f;
	net.fault_seq = at;
	net.call_flags = flags;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, req_len, 5, 10 * MS, 4), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, 1, "fault %d at %zu: %zu completions", f, at,
		     p.cli.num_dones);
	cr_assert_eq(p.cli.dones[0].status, 0, "fault %d at %zu: status %d", f, at,
		     p.cli.dones[0].status);
	cr_assert_eq(p.cli.dones[0].len, resp_len);
	cr_assert_arr_eq(p.cli.dones[0].payload, resp, resp_len);
	cr_assert_eq(p.srv.num_reqs, 1, "fault %d at %zu: %zu executions", f, at, p.srv.num_reqs);
	cr_assert_eq(p.srv.reqs[0].len, req_len);
	cr_assert_arr_eq(p.srv.reqs[0].payload, msg, req_len);
	cr_assert_eq(p.srv.reqs[0].flags, flags);
	check_all_flags(&p.cli, flags);
	check_all_flags(&p.srv, flags);
	if (flags && f == F_NONE)
		check_enc_geometry(&p.cli, msg, req_len, flags);
	else if (f == F_NONE)
		check_geometry(&p.cli, R2P2_REQUEST, msg, req_len, R2P2_MIN_PAYLOAD);
	cr_assert_eq(pending_calls(&p.cli), 0);
	cr_assert_eq(pending_states(&p.srv), 0);
	if (f == F_DROP && at < net.seq)
		cr_assert_geq(stats(&p.cli).retransmits, 1,
			      "a loss is recovered by retransmission");
	if (f == F_DUP && at < net.seq) {
		struct eng_stats c = stats(&p.cli), s = stats(&p.srv);
		cr_assert_geq(c.rx_duplicate + c.rx_unmatched + s.rx_duplicate + s.req_retransmit,
			      1, "the duplicate was noticed");
	}
	total = net.seq;
	free(msg);
	free(resp);
	pair_cleanup(&p);
	return total;
}

static void each_packet_flags(size_t req_len, size_t resp_len, uint8_t flags)
{
	/* The fault-free run tells how many packets the exchange takes. */
	size_t total = faulty_exchange_flags(req_len, resp_len, F_NONE, SIZE_MAX, flags);
	cr_assert_eq(total, num_pkts(req_len, 14) + (req_len > 1464) + num_pkts(resp_len, 1464));
	for (size_t at = 0; at < total; at++) {
		faulty_exchange_flags(req_len, resp_len, F_DROP, at, flags);
		faulty_exchange_flags(req_len, resp_len, F_DUP, at, flags);
		faulty_exchange_flags(req_len, resp_len, F_DELAY, at, flags);
	}
}

static void each_packet(size_t req_len, size_t resp_len)
{
	each_packet_flags(req_len, resp_len, 0);
}

Test(faults, each_packet_3000_3000)
{
	each_packet(3000, 3000);
}
Test(faults, each_packet_1465_4400)
{
	each_packet(1465, 4400);
}
Test(faults, each_packet_20_5000)
{
	each_packet(20, 5000);
}
Test(faults, each_packet_65536_65536)
{
	each_packet(65536, 65536);
}
Test(faults, each_packet_single)
{
	each_packet(100, 100);
}

Test(faults, response_in_reverse_order)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	uint8_t b[4][8 + R2P2_MAX_PAYLOAD];
	size_t l[4];

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), 0);
	l[0] = mkpkt(b[0], R2P2_RESPONSE, 1, R2P2_F_FIRST, 0, 4, R2P2_MAX_PAYLOAD, 0);
	l[1] = mkpkt(b[1], R2P2_RESPONSE, 1, 0, 0, 1, R2P2_MAX_PAYLOAD, 1);
	l[2] = mkpkt(b[2], R2P2_RESPONSE, 1, 0, 0, 2, R2P2_MAX_PAYLOAD, 2);
	l[3] = mkpkt(b[3], R2P2_RESPONSE, 1, R2P2_F_LAST, 0, 3, 10, 3);
	for (int i = 3; i >= 0; i--)
		feed(&cli, 0, &srv, b[i], l[i]);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	cr_assert_eq(cli.dones[0].len, 3 * R2P2_MAX_PAYLOAD + 10);
	for (int i = 0; i < 4; i++)
		cr_assert_arr_eq(cli.dones[0].payload + i * R2P2_MAX_PAYLOAD, b[i] + 8, l[i] - 8);
	/* Late copies after completion match nothing. */
	feed(&cli, 0, &srv, b[2], l[2]);
	cr_assert_eq(stats(&cli).rx_unmatched, 1);
	cr_assert_eq(cli.num_dones, 1);
	node_cleanup(&cli);
}

/* ---- client: DROP, timeouts, matching --------------------------------------------- */

Test(client, drop_is_econnrefused)
{
	struct pair p;

	pair_init(&p, NULL, NULL);
	p.srv.mode = AUTO_REJECT;
	eng_set_next_rid(p.cli.e, 0x0102);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "hi", 2, 9, SEC, 3), 0);
	net_run(has_dones, &p.cli);
	cr_assert_eq(p.cli.dones[0].status, -ECONNREFUSED);
	cr_assert_eq(p.cli.dones[0].cookie, 9);
	expect_pkt(&p.srv.sent[0], "cc 08 41 c0 01 02 00 01 44 52 4f 50");
	cr_assert_eq(stats(&p.cli).calls_dropped, 1);
	cr_assert_eq(stats(&p.cli).calls_ok, 0);
	pair_cleanup(&p);
}

static void timeout_case(size_t len, uint32_t retries)
{
	struct node cli;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	uint8_t *msg = pattern(len, 0);

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &hole, msg, len, 3, 7 * MS, retries), 0);
	net_run(has_dones, &cli);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, -ETIMEDOUT);
	cr_assert_eq(cli.dones[0].at, (retries + 1) * 7 * MS);
	cr_assert_eq(cli.num_sent, retries + 1, "exactly 1+max_retries sends");
	for (size_t i = 0; i < cli.num_sent; i++) {
		cr_assert_eq(cli.sent[i].len, cli.sent[0].len);
		cr_assert_arr_eq(cli.sent[i].data, cli.sent[0].data, cli.sent[0].len);
		cr_assert_eq(cli.sent[i].data[3] & R2P2_F_FIRST, R2P2_F_FIRST);
	}
	cr_assert_eq(stats(&cli).retransmits, retries);
	cr_assert_eq(stats(&cli).calls_timeout, 1);
	cr_assert_eq(pending_calls(&cli), 0);
	cr_assert_eq(eng_next_deadline(cli.e), UINT64_MAX);
	free(msg);
	node_cleanup(&cli);
}

Test(client, timeout_single)
{
	timeout_case(10, 3);
}
Test(client, timeout_no_retries)
{
	timeout_case(10, 0);
}
Test(client, timeout_multi)
{
	timeout_case(5000, 2);
}

Test(client, partial_response_freed_on_timeout)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, MS, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0, 0, 1, R2P2_MAX_PAYLOAD, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 0);
	net_run(has_dones, &cli);
	cr_assert_eq(cli.dones[0].status, -ETIMEDOUT);
	cr_assert_eq(stats(&cli).partial_gc, 1);
	node_cleanup(&cli);
}

Test(client, match_on_address_port_rid_sock)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000), other = mkaddr("10.0.0.3", 8000),
			 other_port = mkaddr("10.0.0.2", 8001);
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
	feed(&cli, 0, &other, b, l);
	feed(&cli, 0, &other_port, b, l);
	feed(&cli, 1, &srv, b, l);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 1, 1, 3, 0); /* wrong rid */
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(stats(&cli).rx_unmatched, 4);
	cr_assert_eq(cli.num_dones, 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(stats(&cli).rx_unmatched, 5, "a duplicate after completion");
	cr_assert_eq(cli.num_dones, 1);
	node_cleanup(&cli);
}

Test(client, via_router_ack_fixes_peer)
{
	struct node cli;
	struct r2p2_addr router = mkaddr("10.0.0.100", 9000), srv = mkaddr("10.0.0.2", 8000),
			 intruder = mkaddr("10.0.0.3", 8000);
	struct eng_call_args a = {0};
	uint8_t *msg = pattern(3000, 0), b[64];
	size_t l;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	a.dst = router;
	a.via_router = true;
	a.payload = msg;
	a.len = 3000;
	a.cookie = 1;
	a.timeout_ns = SEC;
	cr_assert_eq(eng_call(cli.e, &a, 0), 0);
	cr_assert_eq(memcmp(&cli.sent[0].dst, &router, sizeof(router)), 0);
	feed_hex(&cli, &srv, "cc 08 31 c0 00 00 00 01 41 43 4b");
	cr_assert_eq(cli.num_sent, 4);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(memcmp(&cli.sent[i].dst, &srv, sizeof(srv)), 0,
			     "rest goes to the ACKer");
	/* The peer is now fixed: a response from elsewhere is not ours. */
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
	feed(&cli, 0, &intruder, b, l);
	cr_assert_eq(stats(&cli).rx_unmatched, 1);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	free(msg);
	node_cleanup(&cli);
}

Test(client, via_router_single_from_any_source)
{
	struct node cli;
	struct r2p2_addr router = mkaddr("10.0.0.100", 9000), srv = mkaddr("fd00::2", 8000);
	struct eng_call_args a = {0};
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	a.dst = router;
	a.via_router = true;
	a.payload = "q";
	a.len = 1;
	a.timeout_ns = SEC;
	cr_assert_eq(eng_call(cli.e, &a, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 2, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	node_cleanup(&cli);
}

Test(client, answers_from_other_sources_dropped)
{
	/* Not via a router: only the call's destination (address and port) may answer. */
	struct node cli;
	const struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	const struct r2p2_addr spoof[] = {mkaddr("10.0.0.3", 8000), mkaddr("10.0.0.2", 8001),
					  mkaddr("fd00::2", 8000)};
	uint8_t *msg = pattern(3000, 0), b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, msg, 3000, 1, SEC, 0), 0);
	for (size_t i = 0; i < sizeof(spoof) / sizeof(spoof[0]); i++) {
		l = mkpkt(b, R2P2_ACK, 1, 0xC0, 0, 1, 3, 0);
		feed(&cli, 0, &spoof[i], b, l);
		l = mkpkt(b, R2P2_DROP, 1, 0xC0, 0, 1, 4, 0);
		feed(&cli, 0, &spoof[i], b, l);
		l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
		feed(&cli, 0, &spoof[i], b, l);
		l = mkpkt(b, R2P2_RESPONSE, 1, 0x80, 0, 2, R2P2_MAX_PAYLOAD, 0);
		feed(&cli, 0, &spoof[i], b, l);
	}
	cr_assert_eq(stats(&cli).rx_unmatched, 12);
	cr_assert_eq(cli.num_sent, 1, "nothing sent to a spoofer");
	cr_assert_eq(cli.num_dones, 0);
	cr_assert_eq(pending_calls(&cli), 1);
	/* The destination's own ACK and response still count. */
	l = mkpkt(b, R2P2_ACK, 1, 0xC0, 0, 1, 3, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_sent, 4);
	for (size_t i = 1; i < 4; i++)
		cr_assert_eq(memcmp(&cli.sent[i].dst, &srv, sizeof(srv)), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	free(msg);
	node_cleanup(&cli);
}

Test(client, duplicate_ack_resends_rest)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	uint8_t *msg = pattern(3000, 0);

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, msg, 3000, 1, SEC, 0), 0);
	feed_hex(&cli, &srv, "cc 08 31 c0 00 00 00 01 41 43 4b");
	cr_assert_eq(cli.num_sent, 4);
	feed_hex(&cli, &srv, "cc 08 31 c0 00 00 00 01 41 43 4b");
	cr_assert_eq(cli.num_sent, 7);
	for (int i = 1; i < 4; i++) {
		cr_assert_eq(cli.sent[i].len, cli.sent[i + 3].len);
		cr_assert_arr_eq(cli.sent[i].data, cli.sent[i + 3].data, cli.sent[i].len);
	}
	free(msg);
	node_cleanup(&cli);
}

Test(client, response_too_big)
{
	struct node cli;
	struct eng_config cfg;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	eng_config_default(&cfg);
	cfg.max_msg_len = 4000;
	node_init(&cli, "10.0.0.1", 5555, &cfg);
	/* First packet says 4 packets: at least 3*1464+1 = 4393 bytes. */
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, R2P2_F_FIRST, 0, 4, R2P2_MAX_PAYLOAD, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, -EMSGSIZE);
	/* A middle packet at index 3 arriving first says the same. */
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 2, SEC, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0, 1, 3, R2P2_MAX_PAYLOAD, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 2);
	cr_assert_eq(cli.dones[1].status, -EMSGSIZE);
	/* The last packet makes it 2*1464+1100 = 4028 > 4000. */
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 3, SEC, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, R2P2_F_LAST, 2, 2, 1100, 0);
	feed(&cli, 0, &srv, b, l);
	cr_assert_eq(cli.num_dones, 3);
	cr_assert_eq(cli.dones[2].status, -EMSGSIZE);
	cr_assert_eq(stats(&cli).rx_too_big, 3);
	cr_assert_eq(stats(&cli).calls_failed, 3);
	cr_assert_eq(pending_calls(&cli), 0);
	node_cleanup(&cli);
}

Test(client, call_errors_send_nothing)
{
	struct node cli;
	struct eng_config cfg;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000), bad = srv;
	uint8_t *big = pattern(4001, 0);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_msg_len = 4000;
	cfg.max_client_calls = 2;
	node_init(&cli, "10.0.0.1", 5555, &cfg);
	cr_assert_eq(do_call(&cli, &srv, big, 4001, 1, SEC, 0), -EMSGSIZE);
	cr_assert_eq(do_call(&cli, &srv, NULL, 5, 1, SEC, 0), -EINVAL);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, 0, 0), -EINVAL);
	bad.family = 12345;
	cr_assert_eq(do_call(&cli, &bad, "x", 1, 1, SEC, 0), -EINVAL);
	cr_assert_eq(cli.num_sent, 0);
	cr_assert_eq(do_call(&cli, &srv, big, 4000, 1, SEC, 0), 0);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), 0);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), -ENOBUFS);
	cr_assert_eq(cli.num_sent, 2);
	cr_assert_eq(stats(&cli).calls_started, 2);
	free(big);
	node_free_engine(&cli);
	cr_assert_eq(cli.num_dones, 2, "eng_free cancels what is pending");
	cr_assert_eq(cli.dones[0].status, -ECANCELED);
	cr_assert_eq(cli.dones[1].status, -ECANCELED);
	node_cleanup(&cli);
}

Test(client, cancel)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, "a", 1, 7, SEC, 0), 0);
	cr_assert_eq(do_call(&cli, &srv, "b", 1, 8, SEC, 0), 0);
	cr_assert_eq(do_call(&cli, &srv, "c", 1, 7, SEC, 0), 0);
	cr_assert_eq(eng_cancel(cli.e, 7), 2);
	cr_assert_eq(cli.num_dones, 2);
	cr_assert_eq(cli.dones[0].status, -ECANCELED);
	cr_assert_eq(cli.dones[0].cookie, 7);
	cr_assert_eq(cli.dones[1].cookie, 7);
	cr_assert_eq(pending_calls(&cli), 1);
	cr_assert_eq(eng_cancel(cli.e, 7), 0);
	/* The response of a cancelled call (rid 0) is not matched. */
	feed_hex(&cli, &srv, "cc 08 11 c0 00 00 00 01 61");
	cr_assert_eq(stats(&cli).rx_unmatched, 1);
	feed_hex(&cli, &srv, "cc 08 11 c0 00 01 00 01 62");
	cr_assert_eq(cli.num_dones, 3);
	cr_assert_eq(cli.dones[2].cookie, 8);
	cr_assert_eq(cli.dones[2].status, 0);
	node_free_engine(&cli);
	cr_assert_eq(cli.num_dones, 3, "nothing left to cancel");
	node_cleanup(&cli);
}

/* A completion starts the next call: the chain must run to its end. */
static void chain_next(struct node *n, const struct done_ev *d)
{
	if (d->cookie < 5)
		cr_assert_eq(do_call(n, &net.nodes[1]->addr, "next", 4, d->cookie + 1, SEC, 0), 0);
}

Test(client, complete_reenters_call)
{
	struct pair p;

	pair_init(&p, NULL, NULL);
	p.cli.on_done = chain_next;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "first", 5, 1, SEC, 0), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, 5);
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(p.cli.dones[i].cookie, i + 1);
		cr_assert_eq(p.cli.dones[i].status, 0);
	}
	cr_assert_eq(p.srv.num_reqs, 5);
	pair_cleanup(&p);
}

static bool has_reqs(void *arg)
{
	struct node *n = arg;
	return n->num_reqs > 0;
}

/* The layer above refuses the first response it is given (it did not authenticate). */
static void refuse_first(struct node *n, const struct done_ev *d)
{
	if (d->status == 0 && n->num_dones == 1)
		eng_keep_waiting(n->e);
}

/*
 * answer_set_aside: a call of "hi" under rid 0x0102 reaches the server, then `pkt` (an
 * answer to it "from the server") is given to the client, whose layer above (`on_done`)
 * sets it aside. Returns the call's deadline before `pkt` came.
 */
static uint64_t answer_set_aside(struct pair *p,
				 void (*on_done)(struct node *, const struct done_ev *),
				 const uint8_t *pkt, size_t len)
{
	uint64_t deadline;

	pair_init(p, NULL, NULL);
	p->srv.mode = AUTO_NONE;
	p->cli.keep_payloads = true;
	p->cli.on_done = on_done;
	eng_set_next_rid(p->cli.e, 0x0102);
	cr_assert_eq(do_call(&p->cli, &p->srv.addr, "hi", 2, 9, SEC, 3), 0);
	net_run(has_reqs, &p->srv);
	cr_assert_eq(p->srv.num_reqs, 1);
	deadline = eng_next_deadline(p->cli.e);
	eng_input(p->cli.e, 0, &p->srv.addr, pkt, len, net.now);
	return deadline;
}

/* genuine_answer_completes: the server's own answer "ok" then completes the call. */
static void genuine_answer_completes(struct pair *p)
{
	cr_assert_eq(eng_respond(p->srv.e, p->srv.reqs[0].handle, "ok", 2, net.now), 0);
	net_run(has_dones, &p->cli);
	cr_assert_eq(p->cli.num_dones, 2);
	cr_assert_eq(p->cli.dones[1].status, 0);
	cr_assert_eq(p->cli.dones[1].len, 2);
	cr_assert_arr_eq(p->cli.dones[1].payload, "ok", 2);
}

/* A refused response leaves the call in place, deadline unchanged; the genuine one completes it. */
Test(client, refused_response_keeps_waiting)
{
	struct pair p;
	static const uint8_t forged[] = {0xcc, 0x08, 0x11, 0xc0, 0x01, 0x02,
					 0x00, 0x01, 'f',  'a',	 'k',  'e'};
	uint64_t deadline = answer_set_aside(&p, refuse_first, forged, sizeof(forged));

	cr_assert_eq(p.cli.num_dones, 1, "the refused one reached the layer above");
	cr_assert_eq(stats(&p.cli).rx_unauthentic, 1);
	cr_assert_eq(stats(&p.cli).calls_ok, 0);
	cr_assert_eq(pending_calls(&p.cli), 1);
	cr_assert_eq(eng_next_deadline(p.cli.e), deadline, "no extension");
	genuine_answer_completes(&p);
	cr_assert_eq(stats(&p.cli).calls_ok, 1);
	cr_assert_eq(pending_calls(&p.cli), 0);
	pair_cleanup(&p);
}

static void refuse_first_drop(struct node *n, const struct done_ev *d)
{
	if (d->status == -ECONNREFUSED && n->num_dones == 1)
		eng_keep_waiting(n->e);
}

/* A DROP the layer above sets aside (eng_keep_waiting) leaves the call in place too. */
Test(client, refused_drop_keeps_waiting)
{
	struct pair p;
	static const uint8_t drop[] = {0xcc, 0x08, 0x41, 0xc0, 0x01, 0x02,
				       0x00, 0x01, 'D',	 'R',  'O',  'P'};
	uint64_t deadline = answer_set_aside(&p, refuse_first_drop, drop, sizeof(drop));

	cr_assert_eq(p.cli.num_dones, 1, "the DROP reached the layer above");
	cr_assert_eq(p.cli.dones[0].status, -ECONNREFUSED);
	cr_assert_eq(stats(&p.cli).rx_unauthentic, 1);
	cr_assert_eq(stats(&p.cli).calls_dropped, 0);
	cr_assert_eq(pending_calls(&p.cli), 1);
	cr_assert_eq(eng_next_deadline(p.cli.e), deadline, "no extension");
	genuine_answer_completes(&p);
	pair_cleanup(&p);
}

/* A completion during eng_free may try to call again: refused, no completion lost. */
static void call_on_cancel(struct node *n, const struct done_ev *d)
{
	(void)d;
	cr_assert_eq(do_call(n, &n->addr, "again", 5, 99, SEC, 0), -ECANCELED);
}

Test(client, free_refuses_new_calls)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cli.on_done = call_on_cancel;
	cr_assert_eq(do_call(&cli, &srv, "a", 1, 1, SEC, 0), 0);
	node_free_engine(&cli);
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, -ECANCELED);
	node_cleanup(&cli);
}

Test(client, rid_wraparound)
{
	struct pair p;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	const size_t total = 70000;
	char buf[32];

	pair_init(&p, NULL, NULL);
	p.cli.keep_payloads = p.srv.keep_payloads = false;
	/* rid 0 stays in flight for the whole test: it must be skipped when the counter wraps. */
	cr_assert_eq(do_call(&p.cli, &hole, "stuck", 5, 0, 1000 * SEC, 0), 0);
	cr_assert_eq(pkt_rid(&p.cli.sent[0]), 0);
	for (size_t k = 1; k <= total; k++) {
		size_t before = p.cli.num_sent, len;
		/* Distinct bytes per call: same rid and bytes would be a retransmission. */
		len = (size_t)snprintf(buf, sizeof(buf), "call %zu", k);
		cr_assert_eq(do_call(&p.cli, &p.srv.addr, buf, len, k, SEC, 0), 0);
		cr_assert_eq(pkt_rid(&p.cli.sent[before]), (k - 1) % 65535 + 1, "call %zu", k);
		while (net_pump())
			;
		cr_assert_eq(p.cli.num_dones, k, "call %zu", k);
		cr_assert_eq(p.cli.dones[k - 1].status, 0);
		cr_assert_eq(p.cli.dones[k - 1].cookie, k);
	}
	cr_assert_eq(p.srv.num_reqs, total);
	cr_assert_eq(stats(&p.srv).req_retransmit, 0);
	cr_assert_eq(stats(&p.cli).calls_ok, total);
	cr_assert_eq(pending_calls(&p.cli), 1);
	pair_cleanup(&p);
}

/* A call may keep the rid of an exchange it continues (tls mode's second flight); a
 * rid still in flight is refused. */
Test(client, chosen_rid)
{
	struct pair p;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	struct eng_call_args a = {.policy = R2P2_LB_ROUTE,
				  .payload = "x",
				  .len = 1,
				  .cookie = 7,
				  .timeout_ns = SEC,
				  .use_rid = true,
				  .rid = 0x4242};

	pair_init(&p, NULL, NULL);
	a.dst = p.srv.addr;
	cr_assert_eq(eng_call(p.cli.e, &a, net.now), 0);
	cr_assert_eq(pkt_rid(&p.cli.sent[0]), 0x4242);
	while (net_pump())
		;
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(p.cli.dones[0].status, 0);
	/* in flight: the same rid is refused, nothing is sent */
	a.dst = hole;
	cr_assert_eq(eng_call(p.cli.e, &a, net.now), 0);
	size_t sent = p.cli.num_sent;
	cr_assert_eq(eng_call(p.cli.e, &a, net.now), -EBUSY);
	cr_assert_eq(p.cli.num_sent, sent);
	pair_cleanup(&p);
}

Test(client, many_concurrent_calls)
{
	struct pair p;
	struct eng_config cfg;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	const size_t n = 20000;

	eng_config_default(&cfg);
	cfg.max_client_calls = 32768;
	pair_init(&p, &cfg, NULL);
	p.cli.keep_payloads = p.srv.keep_payloads = false;
	p.srv.mode = AUTO_NONE;
	/* Half of them time out at staggered deadlines, half get answered. */
	for (size_t i = 0; i < n; i++) {
		const struct r2p2_addr *dst = i % 2 ? &hole : &p.srv.addr;
		cr_assert_eq(do_call(&p.cli, dst, &i, sizeof(i), i, (1 + i % 97) * MS, 1), 0);
	}
	while (net_pump())
		;
	cr_assert_eq(p.srv.num_reqs, n / 2);
	for (size_t i = 0; i < p.srv.num_reqs; i++)
		cr_assert_eq(eng_respond(p.srv.e, p.srv.reqs[i].handle, "ok", 2, net.now), 0);
	while (net_pump())
		;
	cr_assert_eq(p.cli.num_dones, n / 2);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, n);
	for (size_t i = 0; i < n; i++) {
		const struct done_ev *d = &p.cli.dones[i];
		cr_assert_eq(d->status, d->cookie % 2 ? -ETIMEDOUT : 0);
		if (d->cookie % 2)
			cr_assert_eq(d->at, 2 * (1 + d->cookie % 97) * MS);
	}
	cr_assert_eq(stats(&p.cli).retransmits, n / 2);
	pair_cleanup(&p);
}

/* ---- server: dedup, rid reuse, GC, bounds ------------------------------------------ */

Test(server, retransmitted_request_answered_from_cache)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);

	net_reset();
	eng_config_default(&cfg);
	cfg.has_router = true;
	cfg.router = mkaddr("10.0.0.100", 9000);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.num_sent, 0);
	/* Not answered yet: a retransmission is ignored, not executed. */
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.num_sent, 0);
	cr_assert_eq(stats(&srv).rx_duplicate, 1);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, "pong", 4, net.now), 0);
	cr_assert_eq(srv.num_sent, 2, "response and feedback");
	expect_pkt(&srv.sent[0], "cc 08 11 c0 12 34 00 01 70 6f 6e 67");
	/* Answered: the retransmission gets the cached response, no second execution, no feedback.
	 */
	net.now += SEC;
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.num_sent, 3);
	expect_pkt(&srv.sent[2], "cc 08 11 c0 12 34 00 01 70 6f 6e 67");
	cr_assert_eq(memcmp(&srv.sent[2].dst, &cli, sizeof(cli)), 0);
	cr_assert_eq(stats(&srv).req_retransmit, 1);
	cr_assert_eq(stats(&srv).resp_sent, 1);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, "x", 1, net.now), -ENOENT);
	/* After the dedup window the same bytes are a new request. */
	net.now = 2 * SEC + 1;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_reqs, 2);
	node_cleanup(&srv);
}

/*
 * Answers are kept for one dedup window each, oldest first, and the engine's next
 * deadline is the oldest's end; a reload that changes the window moves every kept
 * answer's end with it (eng_reconfigure), shorter or longer.
 */
Test(server, answers_kept_one_window_oldest_first)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	char req[] = "cc 08 00 c0 00 0X 00 01 61";

	net_reset();
	eng_config_default(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	for (int i = 0; i < 3; i++) {
		req[16] = (char)('1' + i);
		net.now = (uint64_t)i * 100 * MS;
		feed_hex(&srv, &cli, req);
		cr_assert_eq(eng_respond(srv.e, srv.reqs[i].handle, "x", 1, net.now), 0);
	}
	cr_assert_eq(pending_states(&srv), 3);
	cr_assert_eq(eng_next_deadline(srv.e), 2 * SEC, "the first answer's window ends first");
	net.now = 2 * SEC + 100 * MS - 1;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 2, "the first answer is gone, the second not yet");
	cr_assert_eq(eng_next_deadline(srv.e), 2 * SEC + 100 * MS);

	/* a shorter window ends the kept answers sooner: answered at 100 and 200 ms */
	cfg.dedup_window_ns = SEC;
	cr_assert_eq(eng_reconfigure(srv.e, &cfg), 0);
	cr_assert_eq(eng_next_deadline(srv.e), 1100 * MS);
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0, "both windows ended under the new one");

	/* a longer one keeps them longer; a retransmission is still answered from the cache */
	req[16] = '4';
	feed_hex(&srv, &cli, req);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[3].handle, "x", 1, net.now), 0);
	cfg.dedup_window_ns = 5 * SEC;
	cr_assert_eq(eng_reconfigure(srv.e, &cfg), 0);
	cr_assert_eq(eng_next_deadline(srv.e), net.now + 5 * SEC);
	net.now += 4 * SEC;
	eng_tick(srv.e, net.now);
	feed_hex(&srv, &cli, req);
	cr_assert_eq(srv.num_reqs, 4, "not run again");
	cr_assert_eq(stats(&srv).req_retransmit, 1);
	net.now += SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(eng_next_deadline(srv.e), UINT64_MAX);
	node_cleanup(&srv);
}

/*
 * replay_first_packet replays the client's first packet (of a 4-packet request answered in
 * 3 packets) to the server of `p` and then, as the client does on an ACK, the rest: a
 * challenge ACK comes back for the duplicate (3 x 22 B pay for nothing more), then the
 * same 3 packets, paid for by the request's other packets; no second execution.
 */
static void replay_first_packet(struct pair *p)
{
	size_t sent = p->srv.num_sent;

	cr_assert_eq(p->cli.num_sent, 4);
	feed(&p->srv, 0, &p->cli.addr, p->cli.sent[0].data, p->cli.sent[0].len);
	cr_assert_eq(p->srv.num_sent, sent + 1);
	cr_assert_eq(pkt_type(&p->srv.sent[sent]), R2P2_ACK);
	cr_assert_eq(p->srv.sent[sent].len, R2P2_HDR_LEN + R2P2_COOKIE_PAYLOAD_LEN);
	for (size_t i = 1; i < 4; i++)
		feed(&p->srv, 0, &p->cli.addr, p->cli.sent[i].data, p->cli.sent[i].len);
	cr_assert_eq(p->srv.num_sent, sent + 4);
	for (size_t i = 0; i < 3; i++) {
		const struct pkt *a = &p->srv.sent[sent - 3 + i];
		const struct pkt *b = &p->srv.sent[sent + 1 + i];
		cr_assert_eq(a->len, b->len);
		cr_assert_arr_eq(a->data, b->data, a->len);
	}
	cr_assert_eq(p->srv.num_reqs, 1);
	cr_assert_eq(stats(&p->srv).req_retransmit, 1);
	cr_assert_eq(stats(&p->srv).amp_limited, 3);
}

Test(server, multi_packet_retransmission_from_cache)
{
	struct pair p;
	uint8_t *msg = pattern(3000, 0);

	pair_init(&p, NULL, NULL);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 3000, 1, SEC, 0), 0);
	net_run(has_dones, &p.cli);
	replay_first_packet(&p);
	free(msg);
	pair_cleanup(&p);
}

Test(server, rid_reuse_with_other_bytes_is_new)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	srv.mode = AUTO_ECHO;
	feed_hex(&srv, &cli, "cc 08 00 c0 00 07 00 01 61 61 61");
	feed_hex(&srv, &cli, "cc 08 00 c0 00 07 00 01 62 62 62");
	cr_assert_eq(srv.num_reqs, 2);
	cr_assert_arr_eq(srv.reqs[1].payload, "bbb", 3);
	expect_pkt(&srv.sent[1], "cc 08 11 c0 00 07 00 01 62 62 62");
	/* The old entry was evicted: its bytes are new again too. */
	feed_hex(&srv, &cli, "cc 08 00 c0 00 07 00 01 61 61 61");
	cr_assert_eq(srv.num_reqs, 3);
	cr_assert_eq(stats(&srv).req_retransmit, 0);
	cr_assert_eq(pending_states(&srv), 1);
	/* Same rid from another port is another request. */
	struct r2p2_addr cli2 = mkaddr("10.0.0.1", 5556);
	feed_hex(&srv, &cli2, "cc 08 00 c0 00 07 00 01 61 61 61");
	cr_assert_eq(srv.num_reqs, 4);
	cr_assert_eq(pending_states(&srv), 2);
	node_cleanup(&srv);
}

Test(server, duplicate_first_while_reassembling_resends_ack)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 0x42, 4, 14, 0);
	feed(&srv, 0, &cli, b, l);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_sent, 2);
	expect_pkt(&srv.sent[0], "cc 08 31 c0 00 42 00 01 41 43 4b");
	expect_pkt(&srv.sent[1], "cc 08 31 c0 00 42 00 01 41 43 4b");
	cr_assert_eq(stats(&srv).rx_duplicate, 1);
	cr_assert_eq(srv.num_reqs, 0);
	node_cleanup(&srv);
}

Test(server, half_received_request_gc)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 9, 3, 14, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(pending_states(&srv), 1);
	cr_assert_eq(eng_next_deadline(srv.e), SEC);
	/* Progress pushes the deadline. */
	net.now = 500 * MS;
	l = mkpkt(b, R2P2_REQUEST, 0, 0, 9, 1, R2P2_MAX_PAYLOAD, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(eng_next_deadline(srv.e), 1500 * MS);
	net.now = 1500 * MS - 1;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 1);
	net.now = 1500 * MS;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(stats(&srv).req_gc, 1);
	cr_assert_eq(eng_next_deadline(srv.e), UINT64_MAX);
	/* The last packet now matches nothing. */
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_LAST, 9, 2, 10, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(stats(&srv).rx_unmatched, 1);
	cr_assert_eq(srv.num_reqs, 0);
	node_cleanup(&srv);
}

Test(server, unanswered_request_gc_and_stale_handle)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint64_t old;

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	feed_hex(&srv, &cli, "cc 08 00 c0 00 01 00 01 61");
	old = srv.reqs[0].handle;
	cr_assert_neq(old, 0);
	net.now = 30 * SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(stats(&srv).req_gc, 1);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(eng_respond(srv.e, old, "x", 1, net.now), -ENOENT);
	cr_assert_eq(eng_reject(srv.e, old, net.now), -ENOENT);
	/* The slot is reused by the next request; the old handle still misses. */
	feed_hex(&srv, &cli, "cc 08 00 c0 00 02 00 01 62");
	cr_assert_neq(srv.reqs[1].handle, old);
	cr_assert_eq((uint32_t)srv.reqs[1].handle, (uint32_t)old, "same slot");
	cr_assert_eq(eng_respond(srv.e, old, "x", 1, net.now), -ENOENT);
	cr_assert_eq(srv.num_sent, 0);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[1].handle, "y", 1, net.now), 0);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[1].handle, "y", 1, net.now), -ENOENT);
	cr_assert_eq(eng_reject(srv.e, srv.reqs[1].handle, net.now), -ENOENT);
	cr_assert_eq(eng_respond(srv.e, 0, "y", 1, net.now), -ENOENT);
	cr_assert_eq(eng_respond(srv.e, UINT64_MAX, "y", 1, net.now), -ENOENT);
	cr_assert_eq(srv.num_sent, 1);
	node_cleanup(&srv);
}

Test(server, respond_too_big_keeps_request)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t *big = pattern(2001, 0);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_msg_len = 2000;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	feed_hex(&srv, &cli, "cc 08 00 c0 00 01 00 01 61");
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, big, 2001, net.now), -EMSGSIZE);
	cr_assert_eq(srv.num_sent, 0);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, big, 2000, net.now), 0);
	cr_assert_eq(srv.num_sent, 2);
	free(big);
	node_cleanup(&srv);
}

Test(server, state_bound)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_server_states = 2;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	feed_hex(&srv, &cli, "cc 08 00 c0 00 01 00 01 61");
	feed_hex(&srv, &cli, "cc 08 00 c0 00 02 00 01 62");
	cr_assert_eq(srv.num_reqs, 2);
	/* Both executing: nothing to evict, the third is refused. */
	feed_hex(&srv, &cli, "cc 08 00 c0 00 03 00 01 63");
	cr_assert_eq(srv.num_reqs, 2);
	cr_assert_eq(srv.num_sent, 1);
	expect_pkt(&srv.sent[0], "cc 08 41 c0 00 03 00 01 44 52 4f 50");
	cr_assert_eq(stats(&srv).rx_no_state, 1);
	/* A multi-packet first packet is refused the same way (no ACK). */
	uint8_t b[64];
	size_t l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 4, 2, 14, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[1], "cc 08 41 c0 00 04 00 01 44 52 4f 50");
	cr_assert_eq(stats(&srv).rx_no_state, 2);
	/* Once one is answered, its cached response is evicted for a new request. */
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, "A", 1, net.now), 0);
	feed_hex(&srv, &cli, "cc 08 00 c0 00 03 00 01 63");
	cr_assert_eq(srv.num_reqs, 3);
	cr_assert_eq(pending_states(&srv), 2);
	/* rid 1 was evicted: its retransmission is executed again (and refused now). */
	feed_hex(&srv, &cli, "cc 08 00 c0 00 01 00 01 61");
	cr_assert_eq(stats(&srv).req_retransmit, 0);
	cr_assert_eq(stats(&srv).rx_no_state, 3);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[1].handle, "B", 1, net.now), 0);
	cr_assert_eq(eng_respond(srv.e, srv.reqs[2].handle, "C", 1, net.now), 0);
	cr_assert_eq(pending_states(&srv), 2);
	node_cleanup(&srv);
}

Test(server, feedback_bytes)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555), cli6 = mkaddr("fd00::1", 5555);
	struct r2p2_addr router = mkaddr("10.0.0.100", 9000);

	net_reset();
	eng_config_default(&cfg);
	cfg.has_router = true;
	cfg.router = router;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.mode = AUTO_ECHO;
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_sent, 2);
	expect_pkt(&srv.sent[0], "cc 08 11 c0 12 34 00 01 70 69 6e 67");
	/* rid 0x1234, port 5555 = 0x15b3, ip 10.0.0.1 */
	expect_pkt(&srv.sent[1], "cc 08 20 c0 12 34 00 01 12 34 15 b3 0a 00 00 01");
	cr_assert_eq(memcmp(&srv.sent[1].dst, &router, sizeof(router)), 0);
	/* IPv6 clients have no IPv4 to report: 0. */
	feed_hex(&srv, &cli6, "cc 08 00 c0 00 05 00 01 70");
	expect_pkt(&srv.sent[3], "cc 08 20 c0 00 05 00 01 00 05 15 b3 00 00 00 00");
	/* A reject is a finished request too. */
	srv.mode = AUTO_REJECT;
	feed_hex(&srv, &cli, "cc 08 00 c0 00 06 00 01 70");
	expect_pkt(&srv.sent[4], "cc 08 41 c0 00 06 00 01 44 52 4f 50");
	expect_pkt(&srv.sent[5], "cc 08 20 c0 00 06 00 01 00 06 15 b3 0a 00 00 01");
	/* Without has_router, no feedback. */
	node_cleanup(&srv);
	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	srv.mode = AUTO_ECHO;
	feed_hex(&srv, &cli, "cc 08 00 c0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.num_sent, 1);
	node_cleanup(&srv);
}

Test(server, request_too_big)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	eng_config_default(&cfg);
	cfg.max_msg_len = 3000;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.mode = AUTO_ECHO;
	/* N=4: at least 14+2*1464+1 = 2943 bytes, fine; N=5: 4407 > 3000. */
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 1, 5, 14, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(stats(&srv).rx_too_big, 1);
	expect_pkt(&srv.sent[0], "cc 08 41 c0 00 01 00 01 44 52 4f 50");
	cr_assert_eq(pending_states(&srv), 0);
	/* N=4 accepted, but the last packet makes it 2942+100 = 3042 > 3000. */
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 2, 4, 14, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[1], "cc 08 31 c0 00 02 00 01 41 43 4b");
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_LAST, 2, 3, 100, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(stats(&srv).rx_too_big, 2);
	expect_pkt(&srv.sent[2], "cc 08 41 c0 00 02 00 01 44 52 4f 50");
	cr_assert_eq(srv.num_reqs, 0);
	/* And a retransmitted first packet gets that DROP again. */
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 2, 4, 14, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[3], "cc 08 41 c0 00 02 00 01 44 52 4f 50");
	node_cleanup(&srv);

	/* A single packet over max_msg_len. */
	net_reset();
	cfg.max_msg_len = 100;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 3, 1, 101, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(stats(&srv).rx_too_big, 1);
	expect_pkt(&srv.sent[0], "cc 08 41 c0 00 03 00 01 44 52 4f 50");
	node_cleanup(&srv);
}

Test(server, requests_on_any_sock)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[64];
	size_t l = mkpkt(b, R2P2_REQUEST, 2, 0xC0, 1, 1, 3, 0);

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	srv.mode = AUTO_ECHO;
	feed(&srv, 3, &cli, b, l);
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.reqs[0].sock, 3);
	cr_assert_eq(srv.reqs[0].policy, 2);
	cr_assert_eq(srv.sent[0].sock, 3, "answered on the socket it came in");
	node_cleanup(&srv);
}

/* ---- malformed input ---------------------------------------------------------------- */

/* expect_only checks that exactly the counter at `off` (besides rx_packets) moved by one. */
static void expect_only(const struct eng_stats *before, const struct eng_stats *after, size_t off,
			const char *what)
{
	const uint64_t *a = (const uint64_t *)before, *b = (const uint64_t *)after;
	for (size_t i = 0; i < sizeof(*before) / sizeof(uint64_t); i++) {
		uint64_t want = a[i];
		if (i * sizeof(uint64_t) == off ||
		    i * sizeof(uint64_t) == offsetof(struct eng_stats, rx_packets))
			want++;
		cr_assert_eq(b[i], want, "%s: counter #%zu is %lu, want %lu", what, i,
			     (unsigned long)b[i], (unsigned long)want);
	}
}

static void expect_drop(struct node *n, const uint8_t *b, size_t len, size_t off, const char *what)
{
	struct eng_stats s0 = stats(n), s1;
	size_t sent = n->num_sent, reqs = n->num_reqs, dones = n->num_dones;
	eng_input(n->e, 0, &net.nodes[1]->addr, b, len, net.now);
	s1 = stats(n);
	expect_only(&s0, &s1, off, what);
	cr_assert_eq(n->num_sent, sent, "%s: nothing sent", what);
	cr_assert_eq(n->num_reqs, reqs, "%s", what);
	cr_assert_eq(n->num_dones, dones, "%s", what);
}

#define OFF(f) offsetof(struct eng_stats, f)

Test(input, runts_bad_header_bad_type)
{
	struct node a, peer;
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&a, "10.0.0.2", 8000, NULL);
	node_init(&peer, "10.0.0.1", 5555, NULL);
	a.mode = AUTO_ECHO;
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 1, 1, 4, 0);
	for (size_t len = 0; len < 8; len++)
		expect_drop(&a, b, len, OFF(rx_runt), "runt");
	b[0] = 0xCD;
	expect_drop(&a, b, l, OFF(rx_bad_header), "magic");
	b[0] = 0xCC;
	b[1] = 9;
	expect_drop(&a, b, l, OFF(rx_bad_header), "header_size 9");
	b[1] = 0;
	expect_drop(&a, b, l, OFF(rx_bad_header), "header_size 0");
	b[1] = 8;
	for (unsigned bit = 1; bit < 6; bit++) { /* bit 0 is R2P2_F_EXT, plain mode's own */
		b[3] = (uint8_t)(0xC0 | 1u << bit);
		expect_drop(&a, b, l, OFF(rx_bad_header), "free flag bit");
	}
	b[3] = 0xC0;
	for (unsigned t = 5; t < 16; t++) {
		b[2] = (uint8_t)(t << 4);
		expect_drop(&a, b, l, OFF(rx_bad_type), "type 5..15");
	}
	b[2] = R2P2_FEEDBACK << 4;
	expect_drop(&a, b, l, OFF(rx_bad_type), "feedback");
	/* And the engine still works. */
	b[2] = 0;
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_reqs, 1);
	node_cleanup(&a);
	node_cleanup(&peer);
}

Test(input, request_order_and_sizes)
{
	struct node a, peer;
	uint8_t b[8 + R2P2_MAX_PAYLOAD + 8];
	size_t l;

	net_reset();
	node_init(&a, "10.0.0.2", 8000, NULL);
	node_init(&peer, "10.0.0.1", 5555, NULL);
	a.mode = AUTO_ECHO;
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 1, 0, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F|L p_order 0");
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 1, 2, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F|L p_order 2");
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 1, 1, R2P2_MAX_PAYLOAD + 1, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F|L oversized");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 0, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F p_order 0");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 1, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F p_order 1");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 3, 13, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F 13 bytes");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 3, 15, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F 15 bytes");
	cr_assert_eq(pending_states(&a), 0);

	/* A good 3-packet request in progress: rid 1, 14 + 1464 + last. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 3, 14, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_sent, 1, "ACK");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 0, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "index 0");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 3, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "index N");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40, 1, 3, 10, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "L at index N");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40, 1, 1, 10, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "L on a middle index");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 2, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "no L on the last index");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 1, R2P2_MAX_PAYLOAD - 1, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "short middle");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40, 1, 2, 0, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "empty last");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40, 1, 2, R2P2_MAX_PAYLOAD + 1, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "oversized last");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 4, 14, 1);
	expect_drop(&a, b, l, OFF(rx_conflict), "other first packet while reassembling");
	cr_assert_eq(stats(&a).rx_packets, 17);
	/* The request in progress (N=3) was not restarted: finish it. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 1, R2P2_MAX_PAYLOAD, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	expect_drop(&a, b, l, OFF(rx_duplicate), "duplicate middle");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40, 1, 2, 5, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_reqs, 1);
	cr_assert_eq(a.reqs[0].len, 14 + R2P2_MAX_PAYLOAD + 5);
	expect_drop(&a, b, l, OFF(rx_duplicate), "after completion");
	/* A non-first packet for nothing. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 77, 1, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_unmatched), "no such request");
	node_cleanup(&a);
	node_cleanup(&peer);
}

Test(input, response_order_and_sizes)
{
	struct node a, peer;
	uint8_t b[8 + R2P2_MAX_PAYLOAD + 8];
	size_t l;

	net_reset();
	node_init(&a, "10.0.0.1", 5555, NULL);
	node_init(&peer, "10.0.0.2", 8000, NULL);
	cr_assert_eq(do_call(&a, &peer.addr, "x", 1, 1, SEC, 0), 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 2, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F|L p_order 2");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x80, 0, 1, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F p_order 1");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x80, 0, 3, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "short first response packet");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00, 0, 0, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "index 0");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00, 0, 1, 100, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "short middle");
	/* Last packet at index 2 arrives first: N=3 is known from it. */
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x40, 0, 2, 9, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	expect_drop(&a, b, l, OFF(rx_duplicate), "duplicate last");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x80, 0, 4, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "first disagrees with last");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00, 0, 3, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "index past the last");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "single after a partial");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x80, 0, 3, R2P2_MAX_PAYLOAD, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_dones, 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00, 0, 1, R2P2_MAX_PAYLOAD, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_dones, 1);
	cr_assert_eq(a.dones[0].len, 2 * R2P2_MAX_PAYLOAD + 9);

	/* ACK and DROP must be F|L, p_order 1; an ACK for a single-packet call matches nothing. */
	cr_assert_eq(do_call(&a, &peer.addr, "x", 1, 2, SEC, 0), 0);
	l = mkpkt(b, R2P2_ACK, 1, 0x80, 1, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "ACK without L");
	l = mkpkt(b, R2P2_ACK, 1, 0xC0, 1, 0, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "ACK p_order 0");
	l = mkpkt(b, R2P2_DROP, 1, 0xC0, 1, 2, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "DROP p_order 2");
	l = mkpkt(b, R2P2_ACK, 1, 0xC0, 1, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_unmatched), "ACK for a single-packet call");
	cr_assert_eq(pending_calls(&a), 1);
	node_cleanup(&a);
	node_cleanup(&peer);
}

Test(input, unaligned_and_ipv4_padding)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555), dirty = cli;
	uint8_t raw[64];
	size_t l;

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	l = mkpkt(raw + 1, R2P2_REQUEST, 0, 0xC0, 1, 1, 3, 0);
	eng_input(srv.e, 0, &cli, raw + 1, l, 0);
	cr_assert_eq(srv.num_reqs, 1);
	/* Garbage in the unused bytes of an IPv4 address does not make it another peer. */
	dirty.addr[10] = 0xEE;
	eng_input(srv.e, 0, &dirty, raw + 1, l, 0);
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(stats(&srv).rx_duplicate, 1);
	node_cleanup(&srv);
}

Test(engine, config_defaults)
{
	struct eng_config c;

	memset(&c, 0xAB, sizeof(c));
	eng_config_default(&c);
	cr_assert_eq(c.max_msg_len, 1u << 20);
	cr_assert_eq(c.reassembly_timeout_ns, SEC);
	cr_assert_eq(c.dedup_window_ns, 2 * SEC);
	cr_assert_eq(c.exec_timeout_ns, 30 * SEC);
	cr_assert_eq(c.max_server_states, 65536);
	cr_assert_eq(c.max_client_calls, 16384);
	cr_assert_eq(c.has_router, false);
	cr_assert_eq(c.allow_flags, false);
	cr_assert_eq(c.hash_seed, 0);
}

Test(engine, new_rejects_bad_config)
{
	struct eng_config c;
	int x;

	eng_config_default(&c);
	c.max_client_calls = 32769;
	errno = 0;
	cr_assert_null(eng_new(&c, &test_ops, &x));
	cr_assert_eq(errno, EINVAL);
	eng_config_default(&c);
	c.dedup_window_ns = 0;
	cr_assert_null(eng_new(&c, &test_ops, &x));
	eng_config_default(&c);
	c.has_router = true; /* router left unset */
	cr_assert_null(eng_new(&c, &test_ops, &x));
	eng_free(NULL);
}

/* ---- encrypted modes: free flag bits and the 0xFFFF framing ------------------------- */

#define TLS_BIT 0x20 /* R2P2_F_TLS (daemon/security/tls.h); any free bit behaves the same */

/* check_all_flags checks that every R2P2 packet `n` sent carries exactly the free bits `flags`. */
static void check_all_flags(const struct node *n, uint8_t flags)
{
	for (size_t i = 0; i < n->num_sent; i++) {
		if (pkt_type(&n->sent[i]) == R2P2_FEEDBACK)
			continue;
		cr_assert_eq(n->sent[i].data[3] & R2P2_F_FREE_MASK, flags, "packet %zu flags %02x",
			     i, n->sent[i].data[3]);
	}
}

/* enc_order returns the p_order of packet `i` of an N-packet encrypted request. */
static uint16_t enc_order(uint32_t i, uint32_t n)
{
	if (n == 1)
		return 1;
	if (i == 0)
		return 0xFFFF;
	if (i == 1)
		return (uint16_t)(n - 1);
	return (uint16_t)i;
}

/*
 * check_enc_geometry checks that the first REQUEST packets `n` sent are the
 * encrypted framing of `msg`: same split as plain, p_order 0xFFFF, N-1, 2, 3, ...
 */
static void check_enc_geometry(const struct node *n, const uint8_t *msg, size_t len, uint8_t flags)
{
	uint32_t want = num_pkts(len, R2P2_MIN_PAYLOAD), got = 0;
	size_t off = 0;

	for (size_t i = 0; i < n->num_sent && got < want; i++) {
		const struct pkt *p = &n->sent[i];
		size_t plen = p->len - 8;
		uint8_t fl = flags;
		if (pkt_type(p) != R2P2_REQUEST)
			continue;
		if (got == 0)
			fl |= R2P2_F_FIRST;
		if (got == want - 1)
			fl |= R2P2_F_LAST;
		cr_assert_eq(p->data[3], fl, "flags of %u: %02x", got, p->data[3]);
		cr_assert_eq(pkt_order(p), enc_order(got, want), "p_order of %u: %u", got,
			     pkt_order(p));
		if (want > 1 && got == 0)
			cr_assert_eq(plen, R2P2_MIN_PAYLOAD);
		else if (got < want - 1)
			cr_assert_eq(plen, R2P2_MAX_PAYLOAD);
		cr_assert_arr_eq(p->data + 8, msg + off, plen);
		off += plen;
		got++;
	}
	cr_assert_eq(got, want);
	cr_assert_eq(off, len);
}

static void flags_cfg(struct eng_config *cfg)
{
	eng_config_default(cfg);
	cfg->allow_flags = true;
}

Test(flags, round_trip_single)
{
	struct pair p;
	struct eng_config cfg;

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	eng_set_next_rid(p.cli.e, 0x1234);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "ping", 4, 1, SEC, 0), 0);
	expect_pkt(&p.cli.sent[0], "cc 08 00 e0 12 34 00 01 70 69 6e 67");
	net_run(has_dones, &p.cli);
	cr_assert_eq(p.srv.num_reqs, 1);
	cr_assert_eq(p.srv.reqs[0].flags, TLS_BIT);
	cr_assert_eq(p.srv.legacy_requests, 0);
	expect_pkt(&p.srv.sent[0], "cc 08 11 e0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_arr_eq(p.cli.dones[0].payload, "ping", 4);

	/* A plain call between engines that allow flags stays plain, byte for byte. */
	net.call_flags = 0;
	eng_set_next_rid(p.cli.e, 0x1234);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "pong", 4, 2, SEC, 0), 0);
	expect_pkt(&p.cli.sent[1], "cc 08 00 c0 12 34 00 01 70 6f 6e 67");
	net_run(NULL, NULL);
	cr_assert_eq(p.srv.reqs[1].flags, 0);
	expect_pkt(&p.srv.sent[1], "cc 08 11 c0 12 34 00 01 70 6f 6e 67");
	cr_assert_eq(p.cli.num_dones, 2);
	cr_assert_eq(p.cli.dones[1].status, 0);
	pair_cleanup(&p);
}

Test(flags, round_trip_multi_response_ack_drop)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(3000, 0);

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	p.srv.mode = AUTO_SIZED;
	p.srv.resp_len = 5000;
	net.call_flags = 0x01;
	eng_set_next_rid(p.cli.e, 0x0042);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 3000, 1, SEC, 0), 0);
	cr_assert(net_pump());
	expect_pkt(&p.srv.sent[0], "cc 08 31 c1 00 42 00 01 41 43 4b");
	net_run(has_dones, &p.cli);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, 5000);
	cr_assert_eq(p.srv.reqs[0].flags, 0x01);
	/* The response keeps the plain framing: count first. */
	cr_assert_eq(p.srv.sent[1].data[3], 0x81);
	cr_assert_eq(pkt_order(&p.srv.sent[1]), 4);
	cr_assert_eq(p.srv.sent[4].data[3], 0x41);
	check_all_flags(&p.srv, 0x01);
	check_all_flags(&p.cli, 0x01);

	/* DROP (app reject) carries the request's bits too. */
	p.srv.mode = AUTO_REJECT;
	net.call_flags = 0x3F;
	eng_set_next_rid(p.cli.e, 0x0102);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "hi", 2, 2, SEC, 0), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.dones[1].status, -ECONNREFUSED);
	expect_pkt(&p.srv.sent[p.srv.num_sent - 1], "cc 08 41 ff 01 02 00 01 44 52 4f 50");
	free(msg);
	pair_cleanup(&p);
}

Test(flags, refusals_carry_flags)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[8 + 200];
	size_t l;

	net_reset();
	flags_cfg(&cfg);
	cfg.max_msg_len = 100;
	cfg.max_server_states = 1;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	/* Too big. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 3, 1, 101, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[0], "cc 08 41 e0 00 03 00 01 44 52 4f 50");
	/* No room: one executing request fills the server. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 4, 1, 10, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_reqs, 1);
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | 0x02, 5, 1, 10, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[1], "cc 08 41 c2 00 05 00 01 44 52 4f 50");
	cr_assert_eq(stats(&srv).rx_no_state, 1);
	/* An answered request resends its answer with its bits. */
	cr_assert_eq(eng_respond(srv.e, srv.reqs[0].handle, "ok", 2, net.now), 0);
	expect_pkt(&srv.sent[2], "cc 08 11 e0 00 04 00 01 6f 6b");
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 4, 1, 10, 0);
	feed(&srv, 0, &cli, b, l);
	expect_pkt(&srv.sent[3], "cc 08 11 e0 00 04 00 01 6f 6b");
	cr_assert_eq(stats(&srv).req_retransmit, 1);
	/* Same rid and payload with other bits is another request (rid reuse), not a resend. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, 4, 1, 10, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_reqs, 2);
	cr_assert_eq(srv.reqs[1].flags, 0);
	node_cleanup(&srv);
}

Test(flags, mismatched_answers_dropped)
{
	struct node a, peer;
	struct eng_config cfg;
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	flags_cfg(&cfg);
	node_init(&a, "10.0.0.1", 5555, &cfg);
	node_init(&peer, "10.0.0.2", 8000, NULL);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&a, &peer.addr, "x", 1, 1, SEC, 0), 0); /* rid 0 */
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 0, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "plain response to an encrypted call");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0 | TLS_BIT | 1, 0, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "extra bit");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0 | 0x10, 0, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "other bit");
	l = mkpkt(b, R2P2_DROP, 1, 0xC0, 0, 1, 4, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "plain DROP");
	l = mkpkt(b, R2P2_ACK, 1, 0xC0, 0, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "plain ACK");
	/* A multi-packet response whose middle packet lost the bit. */
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x80 | TLS_BIT, 0, 3, R2P2_MAX_PAYLOAD, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00, 0, 1, R2P2_MAX_PAYLOAD, 1);
	expect_drop(&a, b, l, OFF(rx_bad_header), "plain middle");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x00 | TLS_BIT, 0, 1, R2P2_MAX_PAYLOAD, 1);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	l = mkpkt(b, R2P2_RESPONSE, 1, 0x40 | TLS_BIT, 0, 2, 7, 2);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_dones, 1);
	cr_assert_eq(a.dones[0].status, 0);
	cr_assert_eq(a.dones[0].len, 2 * R2P2_MAX_PAYLOAD + 7);
	/* A plain call does not take an encrypted answer. */
	net.call_flags = 0;
	cr_assert_eq(do_call(&a, &peer.addr, "x", 1, 2, SEC, 0), 0); /* rid 1 */
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0 | TLS_BIT, 1, 1, 3, 0);
	expect_drop(&a, b, l, OFF(rx_bad_header), "encrypted response to a plain call");
	l = mkpkt(b, R2P2_RESPONSE, 1, 0xC0, 1, 1, 3, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_dones, 2);
	cr_assert_eq(a.dones[1].status, 0);
	node_cleanup(&a);
	node_cleanup(&peer);
}

Test(flags, rejected_when_not_allowed)
{
	struct node a;
	struct eng_config cfg;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000), cli = mkaddr("10.0.0.9", 1);
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&a, "10.0.0.1", 5555, NULL);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), -EINVAL, "allow_flags is off");
	cr_assert_eq(a.num_sent, 0);
	/* Every free bit but R2P2_F_EXT is refused on input, requests and answers alike. */
	for (unsigned bit = 1; bit < 6; bit++) {
		l = mkpkt(b, R2P2_REQUEST, 0, (uint8_t)(0xC0 | 1u << bit), 1, 1, 3, 0);
		feed(&a, 0, &cli, b, l);
		l = mkpkt(b, R2P2_REQUEST, 0, (uint8_t)(0x80 | 1u << bit), 1, 0xFFFF, 14, 0);
		feed(&a, 0, &cli, b, l);
	}
	cr_assert_eq(stats(&a).rx_bad_header, 10);
	cr_assert_eq(a.num_reqs, 0);
	cr_assert_eq(a.num_sent, 0);
	net.call_flags = TLS_BIT | R2P2_F_EXT;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), -EINVAL,
		     "R2P2_F_EXT allows no other bit");
	net.call_flags = R2P2_F_EXT;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), 0, "R2P2_F_EXT needs no allow_flags");
	cr_assert_eq(a.sent[0].data[3], 0xC0 | R2P2_F_EXT);
	node_cleanup(&a);

	/* Allowed: only free bits. */
	net_reset();
	flags_cfg(&cfg);
	node_init(&a, "10.0.0.1", 5555, &cfg);
	net.call_flags = R2P2_F_FIRST;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), -EINVAL);
	net.call_flags = R2P2_F_LAST | TLS_BIT;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), -EINVAL);
	cr_assert_eq(a.num_sent, 0);
	cr_assert_eq(stats(&a).calls_started, 0);
	net.call_flags = R2P2_F_FREE_MASK;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), 0);
	cr_assert_eq(a.sent[0].data[3], 0xFF);
	node_cleanup(&a);
}

/* A reload that adds the first encrypted service turns allow_flags on in a running engine
 * (eng_reconfigure): requests and calls with free bits work from then on. */
Test(flags, allowed_by_reconfigure)
{
	struct node a;
	struct eng_config cfg;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000), cli = mkaddr("10.0.0.9", 1);
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&a, "10.0.0.1", 5555, NULL);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), -EINVAL, "allow_flags is off");
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 1, 1, 3, 0);
	feed(&a, 0, &cli, b, l);
	cr_assert_eq(stats(&a).rx_bad_header, 1);
	cr_assert_eq(a.num_reqs, 0);

	eng_config_default(&cfg);
	cfg.allow_flags = true;
	cr_assert_eq(eng_reconfigure(a.e, &cfg), 0);
	cr_assert_eq(do_call(&a, &srv, "x", 1, 1, SEC, 0), 0, "a call with the bit leaves");
	cr_assert_eq(a.sent[a.num_sent - 1].data[3] & R2P2_F_FREE_MASK, TLS_BIT);
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 2, 1, 3, 0);
	feed(&a, 0, &cli, b, l);
	cr_assert_eq(a.num_reqs, 1, "a request with the bit is handed up");
	cr_assert_eq(a.reqs[0].flags, TLS_BIT);
	cr_assert_eq(stats(&a).rx_bad_header, 1);

	/* a zero timeout is refused and nothing changes */
	cfg.allow_flags = false;
	cfg.exec_timeout_ns = 0;
	cr_assert_eq(eng_reconfigure(a.e, &cfg), -EINVAL);
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 3, 1, 3, 0);
	feed(&a, 0, &cli, b, l);
	cr_assert_eq(a.num_reqs, 2, "allow_flags stayed on");
	node_cleanup(&a);
}

Test(flags, legacy_request_callback)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	struct eng_ops none = {.send = on_send, .complete = on_complete};
	int x;

	net_reset();
	flags_cfg(&cfg);
	memset(&srv, 0, sizeof(srv));
	srv.addr = mkaddr("10.0.0.2", 8000);
	srv.keep_payloads = true;
	srv.mode = AUTO_ECHO;
	srv.e = eng_new(&cfg, &legacy_ops, &srv);
	cr_assert(srv.e);
	net.nodes[net.num_nodes++] = &srv;
	feed_hex(&srv, &cli, "cc 08 00 e0 12 34 00 01 70 69 6e 67");
	cr_assert_eq(srv.legacy_requests, 1);
	expect_pkt(&srv.sent[0], "cc 08 11 e0 12 34 00 01 70 69 6e 67");
	node_cleanup(&srv);
	errno = 0;
	cr_assert_null(eng_new(&cfg, &none, &x), "neither request nor request_ex");
	cr_assert_eq(errno, EINVAL);
}

/* One encrypted request of `len` bytes: exact p_order of every packet on the wire. */
static void enc_wire(size_t len, const uint16_t *want_orders, size_t num_want)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(len, 7);
	uint32_t n = num_pkts(len, R2P2_MIN_PAYLOAD);
	char want[128];
	int k;

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	net.call_flags = TLS_BIT;
	eng_set_next_rid(p.cli.e, 0x0042);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, len, 1, SEC, 0), 0);
	cr_assert_eq(p.cli.num_sent, 1, "only the first packet before the ACK");
	k = snprintf(want, sizeof(want), "cc 08 00 a0 00 42 ff ff");
	for (int i = 0; i < 14; i++)
		k += snprintf(want + k, sizeof(want) - (size_t)k, " %02x", msg[i]);
	expect_pkt(&p.cli.sent[0], want);
	cr_assert(net_pump());
	expect_pkt(&p.srv.sent[0], "cc 08 31 e0 00 42 00 01 41 43 4b");
	net_run(has_dones, &p.cli);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, len);
	cr_assert_arr_eq(p.cli.dones[0].payload, msg, len);
	cr_assert_eq(p.srv.reqs[0].flags, TLS_BIT);
	cr_assert_eq(p.cli.num_sent, n);
	for (size_t i = 0; i < num_want; i++)
		cr_assert_eq(pkt_order(&p.cli.sent[i]), want_orders[i], "packet %zu: %u, want %u",
			     i, pkt_order(&p.cli.sent[i]), want_orders[i]);
	check_enc_geometry(&p.cli, msg, len, TLS_BIT);
	check_geometry_flags(&p.srv, R2P2_RESPONSE, msg, len, R2P2_MAX_PAYLOAD, TLS_BIT);
	cr_assert_eq(p.cli.sent[n - 1].data[3], 0x40 | TLS_BIT);
	free(msg);
	pair_cleanup(&p);
}

Test(enc, wire_1465)
{
	static const uint16_t o[] = {0xFFFF, 1};
	enc_wire(1465, o, 2);
}
Test(enc, wire_3000)
{
	static const uint16_t o[] = {0xFFFF, 3, 2, 3};
	enc_wire(3000, o, 4);
}
Test(enc, wire_65536)
{
	/* 14 + 44 * 1464 + 1106: 46 packets. */
	uint16_t o[46] = {0xFFFF, 45};
	for (uint16_t i = 2; i < 46; i++)
		o[i] = i;
	enc_wire(65536, o, 46);
}
Test(enc, wire_single_packet_unchanged)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(1464, 0);

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, NULL, 0, 1, SEC, 0), 0);
	expect_pkt(&p.cli.sent[0], "cc 08 00 e0 00 00 00 01");
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 1464, 2, SEC, 0), 0);
	cr_assert_eq(p.cli.num_sent, 2);
	cr_assert_eq(p.cli.sent[1].data[3], 0xE0);
	cr_assert_eq(pkt_order(&p.cli.sent[1]), 1);
	cr_assert_eq(p.cli.sent[1].len, 8 + 1464);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.num_dones, 2);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[1].status, 0);
	cr_assert_eq(p.srv.reqs[1].flags, TLS_BIT);
	free(msg);
	pair_cleanup(&p);
}

Test(enc, each_packet_1465)
{
	each_packet_flags(1465, 100, TLS_BIT);
}
Test(enc, each_packet_3000)
{
	each_packet_flags(3000, 3000, TLS_BIT);
}
Test(enc, each_packet_65536)
{
	each_packet_flags(65536, 65536, TLS_BIT);
}
Test(enc, each_packet_other_bits)
{
	each_packet_flags(4400, 1465, 0x15);
}
/* Plain mode's extension mark rides through every fault like the encrypted bits, with
 * allow_flags off: its requests and responses carry it on every packet. */
Test(enc, each_packet_ext_without_allow_flags)
{
	each_packet_flags(1, 1, R2P2_F_EXT);
	each_packet_flags(3000, 3000, R2P2_F_EXT);
}
Test(enc, echo_max_msg_len)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(1 << 20, 2);

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 1 << 20, 1, SEC, 0), 0);
	net_run(NULL, NULL);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_arr_eq(p.srv.reqs[0].payload, msg, 1 << 20);
	check_enc_geometry(&p.cli, msg, 1 << 20, TLS_BIT);
	cr_assert_eq(pending_states(&p.srv), 0);
	free(msg);
	pair_cleanup(&p);
}

Test(enc, timeout_resends_first_packet)
{
	struct node cli;
	struct eng_config cfg;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	uint8_t *msg = pattern(5000, 0);

	net_reset();
	flags_cfg(&cfg);
	node_init(&cli, "10.0.0.1", 5555, &cfg);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&cli, &hole, msg, 5000, 3, 7 * MS, 2), 0);
	net_run(has_dones, &cli);
	cr_assert_eq(cli.dones[0].status, -ETIMEDOUT);
	cr_assert_eq(cli.num_sent, 3);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(cli.sent[i].data[3], 0x80 | TLS_BIT);
		cr_assert_eq(pkt_order(&cli.sent[i]), 0xFFFF);
		cr_assert_eq(cli.sent[i].len, 8 + 14);
	}
	free(msg);
	node_cleanup(&cli);
}

/* enc_build writes the packets of an encrypted request by hand, from the spec. Returns N. */
static uint32_t enc_build(uint8_t (*out)[8 + R2P2_MAX_PAYLOAD], size_t *lens, const uint8_t *msg,
			  size_t len, uint8_t flags, uint16_t rid)
{
	uint32_t n = num_pkts(len, R2P2_MIN_PAYLOAD);
	size_t off = 0;

	cr_assert(n >= 2);
	for (uint32_t i = 0; i < n; i++) {
		size_t plen = i == 0 ? R2P2_MIN_PAYLOAD : len - off;
		uint16_t o = enc_order(i, n);
		if (plen > R2P2_MAX_PAYLOAD)
			plen = R2P2_MAX_PAYLOAD;
		out[i][0] = 0xCC;
		out[i][1] = 8;
		out[i][2] = 0;
		out[i][3] = (uint8_t)(flags | (i == 0 ? 0x80 : 0) | (i == n - 1 ? 0x40 : 0));
		out[i][4] = (uint8_t)(rid >> 8);
		out[i][5] = (uint8_t)rid;
		out[i][6] = (uint8_t)(o >> 8);
		out[i][7] = (uint8_t)o;
		memcpy(out[i] + 8, msg + off, plen);
		lens[i] = 8 + plen;
		off += plen;
	}
	return n;
}

Test(enc, every_order_of_the_rest)
{
	/* N = 5: 14 + 1464 + 1464 + 1464 + 100. Packets 1..4 in all 24 orders, with duplicates. */
	const size_t len = 14 + 3 * R2P2_MAX_PAYLOAD + 100;
	static uint8_t b[5][8 + R2P2_MAX_PAYLOAD];
	size_t l[5];
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t *msg = pattern(len, 4);

	net_reset();
	flags_cfg(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.mode = AUTO_ECHO;
	for (unsigned k = 0; k < 24; k++) {
		unsigned perm[4], avail[4] = {1, 2, 3, 4}, code = k;
		for (unsigned i = 0; i < 4; i++) {
			unsigned f = 1;
			for (unsigned j = 1; j < 4 - i; j++)
				f *= j;
			unsigned pick = code / f;
			code %= f;
			perm[i] = avail[pick];
			for (unsigned j = pick; j + 1 < 4 - i; j++)
				avail[j] = avail[j + 1];
		}
		cr_assert_eq(enc_build(b, l, msg, len, TLS_BIT, (uint16_t)k), 5);
		feed(&srv, 0, &cli, b[0], l[0]);
		for (unsigned i = 0; i < 4; i++) {
			feed(&srv, 0, &cli, b[perm[i]], l[perm[i]]);
			if (k % 2 && i < 3)
				feed(&srv, 0, &cli, b[perm[i]], l[perm[i]]);
		}
		cr_assert_eq(srv.num_reqs, k + 1, "order %u %u %u %u", perm[0], perm[1], perm[2],
			     perm[3]);
		cr_assert_eq(srv.reqs[k].len, len);
		cr_assert_arr_eq(srv.reqs[k].payload, msg, len, "order %u %u %u %u", perm[0],
				 perm[1], perm[2], perm[3]);
		cr_assert_eq(srv.reqs[k].flags, TLS_BIT);
	}
	cr_assert_eq(stats(&srv).rx_duplicate, 12 * 3);
	cr_assert_eq(stats(&srv).rx_bad_order, 0);
	cr_assert_eq(stats(&srv).req_received, 24);
	free(msg);
	node_cleanup(&srv);
}

Test(enc, two_packets_and_three)
{
	/* N = 2 (packet 1 is the last, says 1) and N = 3 (packet 1 says 2, the last says 2). */
	static uint8_t b[3][8 + R2P2_MAX_PAYLOAD];
	size_t l[3];
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t *msg = pattern(3000, 4);

	net_reset();
	flags_cfg(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.mode = AUTO_ECHO;
	cr_assert_eq(enc_build(b, l, msg, 1465, TLS_BIT, 1), 2);
	cr_assert_eq(b[1][7], 1);
	feed(&srv, 0, &cli, b[0], l[0]);
	feed(&srv, 0, &cli, b[1], l[1]);
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_arr_eq(srv.reqs[0].payload, msg, 1465);
	cr_assert_eq(enc_build(b, l, msg, 1578, TLS_BIT, 2), 3);
	cr_assert_eq(b[1][7], 2);
	cr_assert_eq(b[2][7], 2);
	feed(&srv, 0, &cli, b[0], l[0]);
	feed(&srv, 0, &cli, b[2], l[2]);
	feed(&srv, 0, &cli, b[1], l[1]);
	cr_assert_eq(srv.num_reqs, 2);
	cr_assert_eq(srv.reqs[1].len, 1578);
	cr_assert_arr_eq(srv.reqs[1].payload, msg, 1578);
	free(msg);
	node_cleanup(&srv);
}

Test(enc, framing_errors)
{
	struct node a, peer;
	struct eng_config cfg;
	uint8_t b[8 + R2P2_MAX_PAYLOAD + 8];
	size_t l;

	/* Without allow_flags a plain 0xFFFF first packet is still bad order, not a count. */
	net_reset();
	node_init(&a, "10.0.0.2", 8000, NULL);
	node_init(&peer, "10.0.0.1", 5555, NULL);
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 0xFFFF, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "plain 0xFFFF");
	node_cleanup(&a);
	node_cleanup(&peer);

	net_reset();
	flags_cfg(&cfg);
	node_init(&a, "10.0.0.2", 8000, &cfg);
	node_init(&peer, "10.0.0.1", 5555, NULL);
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80, 1, 0xFFFF, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "0xFFFF without free bits");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80 | TLS_BIT, 1, 4, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "encrypted first packet with a count");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80 | TLS_BIT, 1, 0xFFFF, 15, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "encrypted first packet, 15 bytes");
	l = mkpkt(b, R2P2_REQUEST, 0, 0xC0 | TLS_BIT, 1, 0xFFFF, 14, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "F|L 0xFFFF");
	cr_assert_eq(pending_states(&a), 0);

	/* An encrypted request in progress (rid 1). */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80 | TLS_BIT, 1, 0xFFFF, 14, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_sent, 1);
	expect_pkt(&a.sent[0], "cc 08 31 e0 00 01 00 01 41 43 4b");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 1, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "non-last p_order 1");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 0, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "p_order 0");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00, 1, 2, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "free bits dropped mid-message");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT | 1, 1, 2, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "other free bits mid-message");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 2, 100, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "short middle");
	/* Packets 4 and 2 parked (N unknown): a last packet saying N=4 (index 3) can't be. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 4, R2P2_MAX_PAYLOAD, 0);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	expect_drop(&a, b, l, OFF(rx_duplicate), "parked duplicate");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40 | TLS_BIT, 1, 3, 10, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "last before a parked index");
	/* N=5 from the last: what is parked at 4 is packet 1. */
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40 | TLS_BIT, 1, 4, 10, 3);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	expect_drop(&a, b, l, OFF(rx_duplicate), "duplicate last");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40 | TLS_BIT, 1, 5, 10, 3);
	expect_drop(&a, b, l, OFF(rx_bad_order), "another last");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 4, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_duplicate), "packet 1 again, now resolved");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 5, R2P2_MAX_PAYLOAD, 0);
	expect_drop(&a, b, l, OFF(rx_bad_order), "past N-1");
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 2, R2P2_MAX_PAYLOAD, 1);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	l = mkpkt(b, R2P2_REQUEST, 0, 0x00 | TLS_BIT, 1, 3, R2P2_MAX_PAYLOAD, 2);
	eng_input(a.e, 0, &peer.addr, b, l, 0);
	cr_assert_eq(a.num_reqs, 1);
	cr_assert_eq(a.reqs[0].len, 14 + 3 * R2P2_MAX_PAYLOAD + 10);
	cr_assert_eq(a.reqs[0].flags, TLS_BIT);
	/* Layout: packet 1 (salt 0) at 14, index 2 (salt 1), index 3 (salt 2), last (salt 3). */
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(a.reqs[0].payload[14 + i * R2P2_MAX_PAYLOAD], (uint8_t)(1 + i));
	cr_assert_eq(a.reqs[0].payload[14 + 3 * R2P2_MAX_PAYLOAD], (uint8_t)(1 + 3));
	node_cleanup(&a);
	node_cleanup(&peer);
}

Test(enc, lying_count)
{
	static uint8_t b[6][8 + R2P2_MAX_PAYLOAD];
	size_t l[6];
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t *msg = pattern(6000, 4);
	uint8_t x[8 + R2P2_MAX_PAYLOAD];
	size_t xl;
	uint32_t n;

	net_reset();
	flags_cfg(&cfg);
	cfg.max_msg_len = 10000;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.mode = AUTO_ECHO;

	/* Bigger: N=5 but packet 1 says 6. The last packet (index 4) can't be: GC. */
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 1);
	cr_assert_eq(n, 5);
	b[1][7] = 6;
	for (uint32_t i = 0; i < n; i++)
		feed(&srv, 0, &cli, b[i], l[i]);
	cr_assert_eq(srv.num_reqs, 0);
	cr_assert_eq(stats(&srv).rx_bad_order, 1);
	cr_assert_eq(pending_states(&srv), 1);

	/* Smaller: packet 1 says 3, which is where packet 3 goes: a duplicate, then GC. */
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 2);
	b[1][7] = 3;
	for (uint32_t i = 0; i < n; i++)
		feed(&srv, 0, &cli, b[i], l[i]);
	cr_assert_eq(srv.num_reqs, 0);
	cr_assert_eq(stats(&srv).rx_duplicate, 1);
	cr_assert_eq(pending_states(&srv), 2);

	/* Smaller with nothing there: packet 1 says 2 for N=3, then the last says 3 (N=4). */
	n = enc_build(b, l, msg, 14 + 2 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 3);
	cr_assert_eq(n, 4);
	b[1][7] = 2;
	for (uint32_t i = 0; i < n; i++)
		feed(&srv, 0, &cli, b[i], l[i]);
	cr_assert_eq(srv.num_reqs, 0);

	net.now = SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(stats(&srv).req_gc, 3);

	/* Over max_msg_len (10000: at most 8 packets, N-1 = 7): packet 1 says 8. */
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 4);
	b[1][7] = 8;
	feed(&srv, 0, &cli, b[0], l[0]);
	feed(&srv, 0, &cli, b[1], l[1]);
	cr_assert_eq(stats(&srv).rx_too_big, 1);
	expect_pkt(&srv.sent[srv.num_sent - 1], "cc 08 41 e0 00 04 00 01 44 52 4f 50");
	/* And 7 (an 8-packet message of at least 14 + 6 * 1464 + 1 = 8799 bytes) is fine. */
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 5);
	b[1][7] = 7;
	feed(&srv, 0, &cli, b[0], l[0]);
	feed(&srv, 0, &cli, b[1], l[1]);
	cr_assert_eq(stats(&srv).rx_too_big, 1);
	/* A count of 0xFFFF or 0xFFFE in packet 1. */
	xl = mkpkt(x, R2P2_REQUEST, 0, TLS_BIT, 5, 0xFFFF, R2P2_MAX_PAYLOAD, 0);
	feed(&srv, 0, &cli, x, xl);
	cr_assert_eq(stats(&srv).rx_too_big, 2);
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 6);
	feed(&srv, 0, &cli, b[0], l[0]);
	xl = mkpkt(x, R2P2_REQUEST, 0, TLS_BIT, 6, 0xFFFE, R2P2_MAX_PAYLOAD, 0);
	feed(&srv, 0, &cli, x, xl);
	cr_assert_eq(stats(&srv).rx_too_big, 3);
	/* A last packet past max_msg_len. */
	n = enc_build(b, l, msg, 14 + 3 * R2P2_MAX_PAYLOAD + 100, TLS_BIT, 7);
	feed(&srv, 0, &cli, b[0], l[0]);
	xl = mkpkt(x, R2P2_REQUEST, 0, 0x40 | TLS_BIT, 7, 7, 1300, 0);
	feed(&srv, 0, &cli, x, xl);
	cr_assert_eq(stats(&srv).rx_too_big, 4);
	cr_assert_eq(srv.num_reqs, 0);
	net.now = 3 * SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	free(msg);
	node_cleanup(&srv);
}

Test(enc, through_the_client_with_a_liar_in_the_middle)
{
	/* The real client and server; the network rewrites packet 1's count on its way. */
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(5000, 1);

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 5000, 1, 10 * MS, 2), 0);
	cr_assert(net_pump()); /* first packet -> ACK */
	cr_assert(net_pump()); /* ACK -> the rest */
	cr_assert_eq(p.cli.num_sent, 5);
	p.cli.sent[1].data[7] = 9;
	net_run(NULL, NULL);
	cr_assert_eq(p.srv.num_reqs, 0);
	cr_assert_eq(p.cli.dones[0].status, -ETIMEDOUT);
	cr_assert_eq(pending_states(&p.srv), 0);
	cr_assert_geq(stats(&p.srv).req_gc, 1);
	free(msg);
	pair_cleanup(&p);
}

Test(enc, half_received_gc)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	net_reset();
	flags_cfg(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	l = mkpkt(b, R2P2_REQUEST, 0, 0x80 | TLS_BIT, 9, 0xFFFF, 14, 0);
	feed(&srv, 0, &cli, b, l);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_sent, 2, "a duplicate first packet is ACKed again");
	expect_pkt(&srv.sent[1], "cc 08 31 e0 00 09 00 01 41 43 4b");
	l = mkpkt(b, R2P2_REQUEST, 0, TLS_BIT, 9, 3, R2P2_MAX_PAYLOAD, 0);
	feed(&srv, 0, &cli, b, l);
	net.now = 2 * SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(stats(&srv).req_gc, 1);
	l = mkpkt(b, R2P2_REQUEST, 0, 0x40 | TLS_BIT, 9, 3, 10, 0);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(stats(&srv).rx_unmatched, 1);
	node_cleanup(&srv);
}

Test(enc, retransmitted_request_answered_from_cache)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(3000, 0);

	flags_cfg(&cfg);
	pair_init(&p, &cfg, &cfg);
	net.call_flags = TLS_BIT;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 3000, 1, SEC, 0), 0);
	net_run(has_dones, &p.cli);
	replay_first_packet(&p);
	check_all_flags(&p.srv, TLS_BIT);
	free(msg);
	pair_cleanup(&p);
}

Test(enc, request_packet_limit)
{
	struct node cli;
	struct eng_config cfg;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	size_t len = R2P2_PROTO_MAX_MSG; /* 65535 packets: 0xFFFF would be its count */
	uint8_t *big = malloc(len);

	cr_assert(big);
	memset(big, 1, len);
	net_reset();
	eng_config_default(&cfg);
	cfg.max_msg_len = R2P2_PROTO_MAX_MSG;
	node_init(&cli, "10.0.0.1", 5555, &cfg);
	cli.keep_payloads = false;
	cr_assert_eq(do_call(&cli, &srv, big, len, 1, SEC, 0), -EMSGSIZE);
	cr_assert_eq(do_call(&cli, &srv, big, len - R2P2_MAX_PAYLOAD, 1, SEC, 0), 0);
	cr_assert_eq(pkt_order(&cli.sent[0]), 0xFFFE);
	free(big);
	node_cleanup(&cli);
}

/* ---- hash seed ------------------------------------------------------------------------ */

static uint64_t fnv(uint64_t h, const void *d, size_t n)
{
	const uint8_t *p = d;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* seeded_run runs a fixed mix of calls under `seed` and returns a digest of all that happened. */
static uint64_t seeded_run(uint64_t seed)
{
	struct pair p;
	struct eng_config cfg;
	struct r2p2_addr hole = mkaddr("10.9.9.9", 9);
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t *msg = pattern(5000, 0);

	flags_cfg(&cfg);
	cfg.hash_seed = seed;
	cfg.max_server_states = 64;
	pair_init(&p, &cfg, &cfg);
	p.cli.keep_payloads = p.srv.keep_payloads = false;
	for (size_t k = 0; k < 300; k++) {
		net.call_flags = k % 3 ? 0 : TLS_BIT;
		if (k % 50 == 7)
			eng_set_next_rid(p.cli.e, (uint16_t)(k * 977));
		cr_assert_eq(do_call(&p.cli, k % 11 ? &p.srv.addr : &hole, msg, (k * 37) % 5000, k,
				     (1 + k % 5) * MS, k % 3),
			     0);
		if (k % 4 == 0) {
			net.fault = (enum fault)(1 + k % 3);
			net.fault_seq = net.seq + k % 5;
		}
		while (net_pump())
			;
		if (k % 10 == 9)
			net_run(NULL, NULL);
	}
	net_run(NULL, NULL);
	for (size_t i = 0; i < p.cli.num_sent; i++)
		h = fnv(h, p.cli.sent[i].data, p.cli.sent[i].len);
	for (size_t i = 0; i < p.srv.num_sent; i++)
		h = fnv(h, p.srv.sent[i].data, p.srv.sent[i].len);
	for (size_t i = 0; i < p.cli.num_dones; i++) {
		h = fnv(h, &p.cli.dones[i].cookie, sizeof(uint64_t));
		h = fnv(h, &p.cli.dones[i].status, sizeof(int));
		h = fnv(h, &p.cli.dones[i].at, sizeof(uint64_t));
	}
	cr_assert_eq(p.cli.num_dones, 300);
	free(msg);
	pair_cleanup(&p);
	return h;
}

Test(engine, hash_seed_does_not_change_behaviour)
{
	uint64_t h0 = seeded_run(0);
	cr_assert_eq(seeded_run(1), h0);
	cr_assert_eq(seeded_run(0x9f3a5c7e11d2b4a8ull), h0);
	cr_assert_eq(seeded_run(UINT64_MAX), h0);
}

Test(engine, hash_seed_many_states)
{
	/* Thousands of states from one address under a seed: all found again. */
	struct node srv;
	struct eng_config cfg;
	uint8_t b[64];
	size_t l;

	net_reset();
	eng_config_default(&cfg);
	cfg.hash_seed = 0x5eed;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	srv.keep_payloads = false;
	for (unsigned port = 1; port <= 40; port++) {
		struct r2p2_addr cli = mkaddr("10.0.0.1", (uint16_t)port);
		for (unsigned rid = 0; rid < 100; rid++) {
			l = mkpkt(b, R2P2_REQUEST, 0, 0xC0, (uint16_t)rid, 1, 3, 0);
			feed(&srv, 0, &cli, b, l);
			feed(&srv, 0, &cli, b, l);
		}
	}
	cr_assert_eq(srv.num_reqs, 4000);
	cr_assert_eq(stats(&srv).rx_duplicate, 4000);
	cr_assert_eq(pending_states(&srv), 4000);
	node_cleanup(&srv);
}

/* ---- conflicting first packets: a request in progress is never evicted --------------- */

/*
 * expect_conflict feeds `srv` a first packet from `src` that must be dropped as a conflict
 * with the request in progress: only rx_conflict moves, nothing is sent or handed up, and
 * no state or timer changes.
 */
static void expect_conflict(struct node *srv, const struct r2p2_addr *src, const uint8_t *b,
			    size_t len, const char *what)
{
	struct eng_stats s0 = stats(srv), s1;
	size_t sent = srv->num_sent, reqs = srv->num_reqs, states = pending_states(srv);
	uint64_t deadline = eng_next_deadline(srv->e);

	eng_input(srv->e, 0, src, b, len, net.now);
	s1 = stats(srv);
	expect_only(&s0, &s1, OFF(rx_conflict), what);
	cr_assert_eq(srv->num_sent, sent, "%s: no answer", what);
	cr_assert_eq(srv->num_reqs, reqs, "%s: nothing handed up", what);
	cr_assert_eq(pending_states(srv), states, "%s", what);
	cr_assert_eq(eng_next_deadline(srv->e), deadline, "%s: timer untouched", what);
}

static void pump_all(void)
{
	while (net_pump())
		;
}

Test(conflict, executing_request_is_not_evicted)
{
	struct pair p;
	struct eng_config scfg;
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	const struct pkt *last;
	size_t l;

	eng_config_default(&scfg);
	scfg.max_msg_len = 64;
	pair_init(&p, NULL, &scfg);
	p.srv.mode = AUTO_NONE;
	eng_set_next_rid(p.cli.e, 0x1234);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, "ping", 4, 1, 100 * MS, 3), 0);
	pump_all();
	cr_assert_eq(p.srv.num_reqs, 1, "handed up, not answered");

	/* The client's (address, port, rid) with other bytes, as an off-path spoofer sends. */
	l = mkpkt(b, R2P2_REQUEST, R2P2_LB_ROUTE, 0xC0, 0x1234, 1, 4, 9);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "other payload");
	l = p.cli.sent[0].len;
	memcpy(b, p.cli.sent[0].data, l);
	b[2] |= R2P2_FIXED_ROUTE; /* the same payload, another policy */
	expect_conflict(&p.srv, &p.cli.addr, b, l, "other header");
	l = mkpkt(b, R2P2_REQUEST, R2P2_LB_ROUTE, 0xC0, 0x1234, 1, 65, 0);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "too big: not even a DROP");
	l = mkpkt(b, R2P2_REQUEST, R2P2_LB_ROUTE, 0x80, 0x1234, 2, 14, 0);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "a multi-packet first packet");
	cr_assert_eq(p.cli.num_dones, 0);

	/* The client's retransmission is still a duplicate of what runs: no second execution. */
	net.now = eng_next_deadline(p.cli.e);
	eng_tick(p.cli.e, net.now);
	cr_assert_eq(stats(&p.cli).retransmits, 1);
	pump_all();
	cr_assert_eq(p.srv.num_reqs, 1);
	cr_assert_eq(stats(&p.srv).rx_duplicate, 1);

	/* The answer reaches the client. */
	cr_assert_eq(eng_respond(p.srv.e, p.srv.reqs[0].handle, "pong", 4, net.now), 0);
	pump_all();
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, 4);
	cr_assert_arr_eq(p.cli.dones[0].payload, "pong", 4);
	cr_assert_eq(stats(&p.srv).rx_conflict, 4);
	cr_assert_eq(stats(&p.srv).req_received, 1);

	/* Answered: a byte-identical retransmission gets the cached response, as before. */
	feed(&p.srv, 0, &p.cli.addr, p.cli.sent[0].data, p.cli.sent[0].len);
	cr_assert_eq(p.srv.num_reqs, 1);
	cr_assert_eq(stats(&p.srv).req_retransmit, 1);
	last = &p.srv.sent[p.srv.num_sent - 1];
	expect_pkt(last, "cc 08 11 c0 12 34 00 01 70 6f 6e 67");
	cr_assert_eq(memcmp(&last->dst, &p.cli.addr, sizeof(p.cli.addr)), 0);
	pair_cleanup(&p);
}

/*
 * conflict_while_reassembling: other first packets for a 3000-byte request (free bits
 * `flags`) whose server has packet 0 and 1 neither restart nor disturb its reassembly.
 */
static void conflict_while_reassembling(uint8_t flags)
{
	struct pair p;
	struct eng_config cfg;
	uint8_t *msg = pattern(3000, 0), b[8 + R2P2_MAX_PAYLOAD];
	uint16_t first_order = flags ? 0xFFFF : 4;
	uint64_t rx_conflict = 0;
	size_t l;

	eng_config_default(&cfg);
	cfg.allow_flags = true;
	pair_init(&p, &cfg, &cfg);
	p.srv.mode = AUTO_NONE;
	net.call_flags = flags;
	eng_set_next_rid(p.cli.e, 0x42);
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, msg, 3000, 1, 100 * MS, 3), 0);
	cr_assert(net_pump()); /* packet 0 to the server, which ACKs */
	cr_assert(net_pump()); /* the ACK to the client, which sends packets 1..3 */
	cr_assert(net_pump()); /* packet 1 to the server */
	cr_assert_eq(p.cli.num_sent, 4);
	cr_assert_eq(p.srv.num_sent, 1);

	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST | flags, 0x42, first_order, 14, 7);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "other first 14 bytes");
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST | R2P2_F_LAST | flags, 0x42, 1, 20, 0);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "a single-packet request");
	rx_conflict += 2;
	if (flags) {
		l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST | (flags ^ 0x01), 0x42, 0xFFFF, 14, 0);
		expect_conflict(&p.srv, &p.cli.addr, b, l, "other free bits");
		l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 0x42, 4, 14, 0);
		expect_conflict(&p.srv, &p.cli.addr, b, l, "a plain first packet");
		rx_conflict += 2;
	} else {
		l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 0x42, 5, 14, 0);
		expect_conflict(&p.srv, &p.cli.addr, b, l, "another count");
		rx_conflict++;
	}

	/* The genuine packet 0 again is a retransmission: re-ACKed, reassembly goes on. */
	feed(&p.srv, 0, &p.cli.addr, p.cli.sent[0].data, p.cli.sent[0].len);
	cr_assert_eq(stats(&p.srv).rx_duplicate, 1);
	cr_assert_eq(p.srv.num_sent, 2);
	cr_assert_eq(pkt_type(&p.srv.sent[1]), R2P2_ACK);
	pump_all();
	cr_assert_eq(p.srv.num_reqs, 1, "handed up once");
	cr_assert_eq(p.srv.reqs[0].flags, flags);
	cr_assert_eq(p.srv.reqs[0].len, 3000);
	cr_assert_arr_eq(p.srv.reqs[0].payload, msg, 3000);

	/* Handed up and not answered yet: still in progress. */
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST | flags, 0x42, first_order, 14, 8);
	expect_conflict(&p.srv, &p.cli.addr, b, l, "other first while executing");
	rx_conflict++;
	cr_assert_eq(eng_respond(p.srv.e, p.srv.reqs[0].handle, msg, 3000, net.now), 0);
	pump_all();
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, 3000);
	cr_assert_arr_eq(p.cli.dones[0].payload, msg, 3000);
	cr_assert_eq(stats(&p.srv).rx_conflict, rx_conflict);
	cr_assert_eq(stats(&p.srv).req_received, 1);
	cr_assert_eq(stats(&p.srv).req_gc, 0);
	free(msg);
	pair_cleanup(&p);
}

Test(conflict, reassembling_request_is_not_reset)
{
	conflict_while_reassembling(0);
}

Test(conflict, reassembling_encrypted_request_is_not_reset)
{
	conflict_while_reassembling(TLS_BIT);
}

/* call_with_rid calls `dst` from `n` with rid `rid` and free bits `flags`. */
static int call_with_rid(struct node *n, const struct r2p2_addr *dst, const char *s,
			 uint64_t cookie, uint8_t flags, uint16_t rid)
{
	struct eng_call_args a = {
	    .dst = *dst,
	    .payload = s,
	    .len = strlen(s),
	    .cookie = cookie,
	    .timeout_ns = SEC,
	    .flags = flags,
	    .use_rid = true,
	    .rid = rid,
	};
	return eng_call(n->e, &a, net.now);
}

/*
 * answered_state_gives_way: once a request is answered, a first packet with its
 * (address, port, rid) and other bytes is a new request (rid reuse; tls sends its second
 * flight under the rid of the first), while its retransmission still gets the cache.
 */
static void answered_state_gives_way(uint8_t flags)
{
	struct pair p;
	struct eng_config cfg;
	const struct pkt *last;

	eng_config_default(&cfg);
	cfg.allow_flags = true;
	pair_init(&p, &cfg, &cfg);
	cr_assert_eq(call_with_rid(&p.cli, &p.srv.addr, "first", 1, flags, 7), 0);
	pump_all();
	cr_assert_eq(p.cli.num_dones, 1);
	cr_assert_eq(pending_states(&p.srv), 1, "the answer is cached");
	cr_assert_eq(call_with_rid(&p.cli, &p.srv.addr, "second", 2, flags, 7), 0);
	pump_all();
	cr_assert_eq(p.srv.num_reqs, 2);
	cr_assert_arr_eq(p.srv.reqs[1].payload, "second", 6);
	cr_assert_eq(p.cli.num_dones, 2);
	cr_assert_eq(p.cli.dones[1].status, 0);
	cr_assert_arr_eq(p.cli.dones[1].payload, "second", 6);
	cr_assert_eq(pending_states(&p.srv), 1, "replaced, not added");
	cr_assert_eq(stats(&p.srv).rx_conflict, 0);
	/* The second request's retransmission: its cached answer, no execution. */
	feed(&p.srv, 0, &p.cli.addr, p.cli.sent[1].data, p.cli.sent[1].len);
	cr_assert_eq(p.srv.num_reqs, 2);
	cr_assert_eq(stats(&p.srv).req_retransmit, 1);
	last = &p.srv.sent[p.srv.num_sent - 1];
	cr_assert_eq(pkt_type(last), R2P2_RESPONSE);
	cr_assert_eq(last->data[3] & R2P2_F_FREE_MASK, flags);
	cr_assert_arr_eq(last->data + 8, "second", 6);
	pair_cleanup(&p);
}

Test(conflict, answered_state_gives_way_to_other_bytes)
{
	answered_state_gives_way(0);
}

Test(conflict, answered_encrypted_state_gives_way_to_other_bytes)
{
	answered_state_gives_way(TLS_BIT);
}

/* ---- memory follows the bytes that arrived ------------------------------------------ */

/*
 * req_pkt builds packet `idx` of a `num`-packet request carrying `msg` (rid `rid`), in
 * the plain framing or, with `flags`, the encrypted one (0xFFFF, then N-1 in packet 1).
 */
static size_t req_pkt(uint8_t *out, const uint8_t *msg, size_t len, uint32_t idx, uint32_t num,
		      uint8_t flags, uint16_t rid)
{
	size_t off = idx ? 14 + (size_t)(idx - 1) * R2P2_MAX_PAYLOAD : 0;
	size_t n = idx ? len - off : 14;
	uint8_t f = flags;
	uint16_t order = (uint16_t)idx;

	if (n > R2P2_MAX_PAYLOAD)
		n = R2P2_MAX_PAYLOAD;
	if (idx == 0) {
		f |= R2P2_F_FIRST;
		order = flags ? 0xFFFF : (uint16_t)num;
	} else if (idx == 1 && flags) {
		order = (uint16_t)(num - 1);
	}
	if (idx == num - 1)
		f |= R2P2_F_LAST;
	struct r2p2_hdr h = {R2P2_MAGIC, R2P2_HDR_LEN, R2P2_REQUEST << 4,
			     f,		 htons(rid),   htons(order)};
	memcpy(out, &h, sizeof(h));
	memcpy(out + 8, msg + off, n);
	return 8 + n;
}

/*
 * feed_request_in_order feeds a `len`-byte request to `srv`: packet 0, then the rest in
 * the order `order` (a permutation of 1..num-1), and checks it is handed up intact.
 */
static void feed_request_in_order(struct node *srv, const struct r2p2_addr *cli, size_t len,
				  const uint32_t *order, uint8_t flags, uint16_t rid)
{
	uint32_t num = 1 + (uint32_t)((len - 14 + R2P2_MAX_PAYLOAD - 1) / R2P2_MAX_PAYLOAD);
	uint8_t *msg = pattern(len, rid), b[8 + R2P2_MAX_PAYLOAD];
	size_t reqs = srv->num_reqs;

	feed(srv, 0, cli, b, req_pkt(b, msg, len, 0, num, flags, rid));
	for (uint32_t i = 0; i + 1 < num; i++) {
		cr_assert_eq(srv->num_reqs, reqs, "handed up before packet %u", i);
		feed(srv, 0, cli, b, req_pkt(b, msg, len, order[i], num, flags, rid));
	}
	cr_assert_eq(srv->num_reqs, reqs + 1);
	cr_assert_eq(srv->reqs[reqs].len, len);
	cr_assert_arr_eq(srv->reqs[reqs].payload, msg, len);
	cr_assert_eq(eng_reassembly_bytes(srv->e), 0);
	free(msg);
}

Test(memory, every_order_of_a_large_request)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	size_t len = 14 + 40 * R2P2_MAX_PAYLOAD + 77; /* 42 packets */
	uint32_t num = 42, order[41];
	uint16_t rid = 1;

	net_reset();
	flags_cfg(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	for (uint8_t flags = 0; flags <= TLS_BIT; flags += TLS_BIT) {
		for (uint32_t i = 0; i < num - 1; i++)
			order[i] = num - 1 - i; /* reverse: the last first */
		feed_request_in_order(&srv, &cli, len, order, flags, rid++);
		for (uint32_t i = 0; i < num - 1; i++)
			order[i] = i % 2 ? num - 1 - i / 2 : 1 + i / 2; /* both ends inwards */
		feed_request_in_order(&srv, &cli, len, order, flags, rid++);
		for (uint64_t seed = 1; seed <= 20; seed++) {
			for (uint32_t i = 0; i < num - 1; i++)
				order[i] = i + 1;
			for (uint32_t i = num - 2; i > 0; i--) { /* Fisher-Yates */
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				uint32_t j = (uint32_t)((seed >> 33) % (i + 1)), t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
			feed_request_in_order(&srv, &cli, len, order, flags, rid++);
		}
	}
	cr_assert_eq(stats(&srv).rx_bad_order, 0);
	node_cleanup(&srv);
}

/* first_and_last sends packet 0 and a 1-byte last packet of a `num`-packet request. */
static void first_and_last(struct node *srv, const struct r2p2_addr *cli, uint16_t rid,
			   uint32_t num, uint8_t flags)
{
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l;

	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST | flags, rid, flags ? 0xFFFF : (uint16_t)num, 14,
		  0);
	feed(srv, 0, cli, b, l);
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_LAST | flags, rid, (uint16_t)(num - 1), 1, 0);
	feed(srv, 0, cli, b, l);
}

Test(memory, first_and_last_packet_of_a_huge_message_cost_little)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint32_t num = 1 + ((1u << 20) - 14) / R2P2_MAX_PAYLOAD; /* the largest 1 MiB allows */

	net_reset();
	flags_cfg(&cfg);
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	first_and_last(&srv, &cli, 1, num, 0);
	cr_assert_eq(pending_states(&srv), 1);
	cr_assert_lt(eng_reassembly_bytes(srv.e), 16384, "%zu bytes", eng_reassembly_bytes(srv.e));
	first_and_last(&srv, &cli, 2, num, TLS_BIT);
	cr_assert_eq(pending_states(&srv), 2);
	cr_assert_lt(eng_reassembly_bytes(srv.e), 2 * 16384, "%zu bytes",
		     eng_reassembly_bytes(srv.e));
	cr_assert_eq(stats(&srv).rx_bad_order + stats(&srv).rx_too_big, 0);
	/* Timed out, they give everything back. */
	net.now += 2 * SEC;
	eng_tick(srv.e, net.now);
	cr_assert_eq(pending_states(&srv), 0);
	cr_assert_eq(eng_reassembly_bytes(srv.e), 0);
	node_cleanup(&srv);
}

Test(memory, large_response_in_reverse_order)
{
	struct node cli;
	struct r2p2_addr srv = mkaddr("10.0.0.2", 8000);
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	const uint32_t num = 30;

	net_reset();
	node_init(&cli, "10.0.0.1", 5555, NULL);
	cr_assert_eq(do_call(&cli, &srv, "x", 1, 1, SEC, 0), 0);
	for (uint32_t i = num; i-- > 0;) {
		uint8_t f = i == 0 ? R2P2_F_FIRST : i == num - 1 ? R2P2_F_LAST : 0;
		size_t l = mkpkt(b, R2P2_RESPONSE, 1, f, 0, (uint16_t)(i ? i : num),
				 i == num - 1 ? 10 : R2P2_MAX_PAYLOAD, i);
		feed(&cli, 0, &srv, b, l);
	}
	cr_assert_eq(cli.num_dones, 1);
	cr_assert_eq(cli.dones[0].status, 0);
	cr_assert_eq(cli.dones[0].len, (num - 1) * R2P2_MAX_PAYLOAD + 10);
	for (uint32_t i = 0; i < num; i++) {
		size_t l =
		    mkpkt(b, R2P2_RESPONSE, 1, 0, 0, 0, i == num - 1 ? 10 : R2P2_MAX_PAYLOAD, i);
		cr_assert_arr_eq(cli.dones[0].payload + i * R2P2_MAX_PAYLOAD, b + 8, l - 8);
	}
	node_cleanup(&cli);
}

/* ---- bounds on half-open requests: budget, quota, eviction ------------------------- */

/* first_pkt sends packet 0 of a `num`-packet plain request from `src`. */
static void first_pkt(struct node *srv, const struct r2p2_addr *src, uint16_t rid, uint32_t num)
{
	uint8_t b[8 + 14];
	size_t l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, rid, (uint16_t)num, 14, 0);

	feed(srv, 0, src, b, l);
}

/* mid_pkt sends packet `idx` (full, or a 10-byte last one) of a plain request from `src`. */
static void mid_pkt(struct node *srv, const struct r2p2_addr *src, uint16_t rid, uint32_t idx,
		    bool last)
{
	uint8_t b[8 + R2P2_MAX_PAYLOAD];
	size_t l = mkpkt(b, R2P2_REQUEST, 0, last ? R2P2_F_LAST : 0, rid, (uint16_t)idx,
			 last ? 10 : R2P2_MAX_PAYLOAD, 0);

	feed(srv, 0, src, b, l);
}

Test(bounds, budget_evicts_the_idle_then_refuses)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr a = mkaddr("10.0.0.1", 5555), c = mkaddr("10.0.0.3", 5555);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_reassembly_bytes = 6000;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	/* a's request holds 14 + 4 packets' worth of buffer: under the budget. */
	first_pkt(&srv, &a, 1, 10);
	mid_pkt(&srv, &a, 1, 1, false);
	cr_assert_gt(eng_reassembly_bytes(srv.e), 5000);
	cr_assert_leq(eng_reassembly_bytes(srv.e), 6000);
	/* c's request needs room: a's, the least recently active, is evicted. */
	first_pkt(&srv, &c, 2, 3);
	mid_pkt(&srv, &c, 2, 1, false);
	cr_assert_eq(stats(&srv).evict_memory, 1);
	mid_pkt(&srv, &c, 2, 2, true);
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(srv.reqs[0].len, 14 + R2P2_MAX_PAYLOAD + 10);
	mid_pkt(&srv, &a, 1, 2, false);
	cr_assert_eq(stats(&srv).rx_unmatched, 1, "a's request is gone");
	cr_assert_eq(eng_reassembly_bytes(srv.e), 0);
	/* A request that alone outgrows the budget is refused with DROP. */
	first_pkt(&srv, &a, 3, 10);
	for (uint32_t i = 1; i <= 3; i++)
		mid_pkt(&srv, &a, 3, i, false);
	cr_assert_eq(stats(&srv).rx_no_memory, 0);
	size_t sent = srv.num_sent;
	mid_pkt(&srv, &a, 3, 4, false); /* past 4 packets: the buffer would double */
	cr_assert_eq(stats(&srv).rx_no_memory, 1);
	cr_assert_eq(srv.num_sent, sent + 1);
	cr_assert_eq(pkt_type(&srv.sent[sent]), R2P2_DROP);
	cr_assert_eq(eng_reassembly_bytes(srv.e), 0);
	cr_assert_eq(srv.num_reqs, 1);
	node_cleanup(&srv);
}

/* Under the byte budget, a flooding source pays for its flood: a client with one
 * request in reassembly keeps it even when it is the least recently active. */
Test(bounds, budget_evicts_the_flooding_source_first)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr legit = mkaddr("10.0.0.1", 5555);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_reassembly_bytes = 12000;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	first_pkt(&srv, &legit, 1, 3); /* the oldest half-open request */
	for (uint16_t rid = 100; rid < 160; rid++) {
		struct r2p2_addr flood = mkaddr("10.0.0.9", (uint16_t)(6000 + rid));
		first_pkt(&srv, &flood, rid, 10);
		mid_pkt(&srv, &flood, rid, 1, false);
	}
	cr_assert_gt(stats(&srv).evict_memory, 0, "the budget was reached");
	mid_pkt(&srv, &legit, 1, 1, false);
	mid_pkt(&srv, &legit, 1, 2, true);
	cr_assert_eq(srv.num_reqs, 1, "the legitimate request survived and completed");
	cr_assert_eq(srv.reqs[0].src.addr[3], 1);
	node_cleanup(&srv);
}

Test(bounds, one_source_over_its_quota_evicts_its_own_oldest)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr other = mkaddr("10.0.0.3", 7000);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_half_open_per_source = 4;
	cfg.max_server_states = 8;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	/* One address, many ports: the quota is per address. */
	for (uint16_t i = 0; i < 20; i++) {
		struct r2p2_addr a = mkaddr("10.0.0.1", (uint16_t)(5000 + i));
		first_pkt(&srv, &a, i, 700);
	}
	cr_assert_eq(pending_states(&srv), 4);
	cr_assert_eq(stats(&srv).evict_source, 16);
	cr_assert_eq(stats(&srv).rx_no_state, 0);
	/* The newest survive: rid 19 goes on, rid 0 is gone. */
	struct r2p2_addr a19 = mkaddr("10.0.0.1", 5019), a0 = mkaddr("10.0.0.1", 5000);
	mid_pkt(&srv, &a0, 0, 1, false);
	cr_assert_eq(stats(&srv).rx_unmatched, 1);
	mid_pkt(&srv, &a19, 19, 1, false);
	cr_assert_eq(stats(&srv).rx_unmatched, 1);
	/* Another source still gets a state, and its request completes. */
	first_pkt(&srv, &other, 1, 3);
	mid_pkt(&srv, &other, 1, 1, false);
	mid_pkt(&srv, &other, 1, 2, true);
	cr_assert_eq(srv.num_reqs, 1);
	cr_assert_eq(stats(&srv).evict_source, 16);
	cr_assert_eq(stats(&srv).evict_full, 0);
	node_cleanup(&srv);
}

Test(bounds, full_table_evicts_half_open_never_executing)
{
	struct node srv;
	struct eng_config cfg;
	struct r2p2_addr a = mkaddr("10.0.0.1", 5555), c = mkaddr("10.0.0.3", 5555);

	net_reset();
	eng_config_default(&cfg);
	cfg.max_server_states = 3;
	node_init(&srv, "10.0.0.2", 8000, &cfg);
	feed_hex(&srv, &c, "cc 08 00 c0 00 01 00 01 61"); /* executing */
	first_pkt(&srv, &a, 2, 3);
	first_pkt(&srv, &a, 3, 3);
	cr_assert_eq(pending_states(&srv), 3);
	feed_hex(&srv, &c, "cc 08 00 c0 00 04 00 01 62"); /* evicts rid 2 */
	cr_assert_eq(srv.num_reqs, 2);
	cr_assert_eq(stats(&srv).evict_full, 1);
	mid_pkt(&srv, &a, 2, 1, false);
	cr_assert_eq(stats(&srv).rx_unmatched, 1, "rid 2 was evicted");
	feed_hex(&srv, &c, "cc 08 00 c0 00 05 00 01 63"); /* evicts rid 3 */
	cr_assert_eq(srv.num_reqs, 3);
	cr_assert_eq(stats(&srv).evict_full, 2);
	/* Three executing: nothing may be evicted, the next is refused. */
	feed_hex(&srv, &c, "cc 08 00 c0 00 06 00 01 64");
	cr_assert_eq(srv.num_reqs, 3);
	cr_assert_eq(stats(&srv).rx_no_state, 1);
	cr_assert_eq(stats(&srv).evict_full, 2);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(eng_respond(srv.e, srv.reqs[i].handle, "ok", 2, net.now), 0);
	cr_assert_eq(eng_reassembly_bytes(srv.e), 0);
	node_cleanup(&srv);
}

/* ---- amplification limit: what duplicates of a first packet draw ------------------ */

#define TEN_PKTS (10 * R2P2_MAX_PAYLOAD) /* a response of 10 full packets */

/* bytes_sent_from returns the bytes `n` sent from its datagram `from` on. */
static size_t bytes_sent_from(const struct node *n, size_t from)
{
	size_t b = 0;

	for (size_t i = from; i < n->num_sent; i++)
		b += n->sent[i].len;
	return b;
}

/* finished_call runs a call of `req_len` bytes answered with `resp_len` pattern bytes. */
static void finished_call(struct pair *p, uint8_t *msg, size_t req_len, size_t resp_len)
{
	pair_init(p, NULL, NULL);
	p->srv.mode = AUTO_SIZED;
	p->srv.resp_len = resp_len;
	cr_assert_eq(do_call(&p->cli, &p->srv.addr, msg, req_len, 1, SEC, 0), 0);
	net_run(has_dones, &p->cli);
	cr_assert_eq(p->cli.dones[0].status, 0);
}

Test(amp, ten_duplicates_draw_at_most_three_times_their_bytes)
{
	struct pair p;
	uint8_t *msg = pattern(3000, 0);
	const struct pkt *first;
	size_t sent, in = 0;

	finished_call(&p, msg, 3000, TEN_PKTS);
	first = &p.cli.sent[0];
	cr_assert_eq(first->len, 22);
	sent = p.srv.num_sent;
	/* A spoofer replays the first packet from the client's address, 100 ms apart (the
	 * resend rate), within the dedup window; the client never sees what comes back. */
	for (int i = 0; i < 10; i++) {
		feed(&p.srv, 0, &p.cli.addr, first->data, first->len);
		in += first->len;
		net.now += 100 * MS;
	}
	size_t out = bytes_sent_from(&p.srv, sent);
	cr_log_info("10 x %zu B in, %zu B out (was %d B)", first->len, out, 10 * (TEN_PKTS + 80));
	cr_assert_leq(out, 3 * in, "%zu B out for %zu B in", out, in);
	cr_assert_eq(p.srv.num_reqs, 1);
	cr_assert_eq(stats(&p.srv).req_retransmit, 10);
	/* each copy draws a challenge (19 B) and holds back all 10 packets */
	cr_assert_eq(stats(&p.srv).amp_limited, 10 * 10);
	cr_assert_eq(count_type(&p.srv, R2P2_ACK) - 1, 10, "the call's ACK, then 10 challenges");
	free(msg);
	pair_cleanup(&p);
}

Test(amp, duplicates_at_once_draw_one_resend)
{
	struct pair p;
	uint8_t *msg = pattern(3000, 0);
	size_t sent;

	finished_call(&p, msg, 3000, TEN_PKTS);
	sent = p.srv.num_sent;
	for (int i = 0; i < 10; i++)
		feed(&p.srv, 0, &p.cli.addr, p.cli.sent[0].data, p.cli.sent[0].len);
	/* a challenge, once: 3 x 22 B pay for no packet of the answer */
	cr_assert_eq(p.srv.num_sent, sent + 1);
	cr_assert_eq(pkt_type(&p.srv.sent[sent]), R2P2_ACK);
	cr_assert_leq(bytes_sent_from(&p.srv, sent), 3 * 22);
	cr_assert_eq(stats(&p.srv).amp_limited, 10 * 10);
	free(msg);
	pair_cleanup(&p);
}

/*
 * lose_whole_answer runs a call of `req_len` bytes with the worker's default attempts
 * (a 1 s call timeout, 3 retries: 250 ms each) whose whole first answer, `resp_len`
 * bytes, is lost, and returns the call's status.
 */
static int lose_whole_answer(struct pair *p, uint8_t *msg, size_t req_len, size_t resp_len)
{
	uint8_t *resp = pattern(resp_len, 3);

	pair_init(p, NULL, NULL);
	p->srv.mode = AUTO_NONE;
	cr_assert_eq(do_call(&p->cli, &p->srv.addr, msg, req_len, 1, 250 * MS, 3), 0);
	while (p->srv.num_reqs == 0 && net_pump())
		;
	cr_assert_eq(p->srv.num_reqs, 1);
	cr_assert_eq(eng_respond(p->srv.e, p->srv.reqs[0].handle, resp, resp_len, net.now), 0);
	net.head = net.len = 0; /* every packet of the answer is lost */
	net_run(has_dones, &p->cli);
	cr_assert_eq(p->srv.num_reqs, 1, "never run twice");
	cr_assert_eq(stats(&p->srv).req_retransmit, stats(&p->cli).retransmits);
	if (p->cli.dones[0].status == 0) {
		cr_assert_eq(p->cli.dones[0].len, resp_len);
		cr_assert_arr_eq(p->cli.dones[0].payload, resp, resp_len);
	}
	free(resp);
	return p->cli.dones[0].status;
}

Test(amp, lost_answer_to_a_multi_packet_request_completes_within_default_retries)
{
	struct pair p;
	uint8_t *msg = pattern(3000, 0);

	/* 3000 B request: its first packet draws a challenge; the echo (and the request's
	 * other packets, resent on that ACK) bring the rest */
	cr_assert_eq(lose_whole_answer(&p, msg, 3000, TEN_PKTS), 0);
	cr_assert_leq(stats(&p.cli).retransmits, 2);
	cr_assert_gt(stats(&p.srv).amp_limited, 0);
	pair_cleanup(&p);
	/* 65536 B request (45 packets): one round brings a 64 KiB answer */
	free(msg);
	msg = pattern(65536, 0);
	cr_assert_eq(lose_whole_answer(&p, msg, 65536, 65536), 0);
	cr_assert_eq(stats(&p.cli).retransmits, 1);
	pair_cleanup(&p);
	free(msg);
}

Test(amp, lost_answer_to_a_single_packet_request_follows_the_echo)
{
	struct pair p;
	uint8_t *msg = pattern(20, 0);

	/* an answer of one full packet: challenged, echoed, resent at the first retransmission */
	cr_assert_eq(lose_whole_answer(&p, msg, 20, R2P2_MAX_PAYLOAD), 0);
	cr_assert_eq(stats(&p.cli).retransmits, 1);
	cr_assert_eq(stats(&p.srv).amp_limited, 1);
	cr_assert_eq(stats(&p.srv).amp_validated, 1);
	pair_cleanup(&p);
	/* 3 x 28 B never pays for a second packet: the server challenges, the client
	 * echoes the cookie, and the rest follows at once (one more round trip) */
	cr_assert_eq(lose_whole_answer(&p, msg, 20, 5000), 0);
	cr_assert_eq(stats(&p.cli).retransmits, 1);
	cr_assert_eq(stats(&p.cli).amp_echoed, 1);
	cr_assert_eq(stats(&p.srv).amp_validated, 1);
	cr_assert_eq(count_type(&p.srv, R2P2_RESPONSE), 4 + 4, "the answer twice");
	cr_assert_eq(stats(&p.srv).amp_limited, 4);
	pair_cleanup(&p);
	free(msg);
}

/* A spoofed echo (a wrong cookie, or for a state never challenged) validates nothing. */
Test(amp, wrong_cookie_validates_nothing)
{
	struct pair p;
	uint8_t *msg = pattern(20, 0);
	uint8_t echo[R2P2_HDR_LEN + R2P2_COOKIE_PAYLOAD_LEN];
	const struct pkt *first, *challenge = NULL;
	size_t sent;

	finished_call(&p, msg, 20, TEN_PKTS);
	first = &p.cli.sent[0];
	sent = p.srv.num_sent;
	feed(&p.srv, 0, &p.cli.addr, first->data, first->len);
	for (size_t i = sent; i < p.srv.num_sent; i++)
		if (pkt_type(&p.srv.sent[i]) == R2P2_ACK)
			challenge = &p.srv.sent[i];
	cr_assert_not_null(challenge, "a held-back resend is challenged");
	cr_assert_eq(challenge->len, sizeof(echo));
	cr_assert_arr_eq(challenge->data + R2P2_HDR_LEN, R2P2_CHALLENGE_TAG, R2P2_COOKIE_TAG_LEN);
	/* an off-path spoofer guesses the cookie: wrong by one bit */
	memcpy(echo, challenge->data, sizeof(echo));
	memcpy(echo + R2P2_HDR_LEN, R2P2_ECHO_TAG, R2P2_COOKIE_TAG_LEN);
	echo[sizeof(echo) - 1] ^= 1;
	sent = p.srv.num_sent;
	feed(&p.srv, 0, &p.cli.addr, echo, sizeof(echo));
	cr_assert_eq(p.srv.num_sent, sent, "nothing more is sent");
	cr_assert_eq(stats(&p.srv).amp_validated, 0);
	/* the right cookie from another port is another state: nothing either */
	echo[sizeof(echo) - 1] ^= 1;
	struct r2p2_addr other = p.cli.addr;
	other.port ^= 1;
	feed(&p.srv, 0, &other, echo, sizeof(echo));
	cr_assert_eq(p.srv.num_sent, sent);
	/* the right cookie from the client's address: the held-back packets, once */
	feed(&p.srv, 0, &p.cli.addr, echo, sizeof(echo));
	cr_assert_eq(p.srv.num_sent, sent + 10);
	feed(&p.srv, 0, &p.cli.addr, echo, sizeof(echo));
	cr_assert_eq(p.srv.num_sent, sent + 10, "a second echo sends nothing more");
	cr_assert_eq(stats(&p.srv).amp_validated, 1);
	cr_assert_eq(p.srv.num_reqs, 1);
	free(msg);
	pair_cleanup(&p);
}

Test(amp, reack_of_a_request_in_reassembly_is_limited)
{
	struct node srv;
	struct r2p2_addr cli = mkaddr("10.0.0.1", 5555);
	uint8_t b[64];
	size_t l;

	net_reset();
	node_init(&srv, "10.0.0.2", 8000, NULL);
	l = mkpkt(b, R2P2_REQUEST, 0, R2P2_F_FIRST, 0x42, 4, 14, 0);
	cr_assert_eq(l, 22);
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_sent, 1, "the first ACK is not limited");
	/* 10 duplicates at once: one re-ACK */
	for (int i = 0; i < 10; i++)
		feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_sent, 2);
	cr_assert_eq(stats(&srv).rx_duplicate, 10);
	cr_assert_eq(stats(&srv).amp_limited, 9);
	/* a retransmission 100 ms later is re-ACKed again */
	net.now += 100 * MS;
	feed(&srv, 0, &cli, b, l);
	cr_assert_eq(srv.num_sent, 3);
	cr_assert_leq(bytes_sent_from(&srv, 1), 3 * 11 * l);
	for (size_t i = 0; i < srv.num_sent; i++)
		cr_assert_eq(pkt_type(&srv.sent[i]), R2P2_ACK);
	node_cleanup(&srv);
}

/*
 * An answer of the transport's own (eng_answer: a tls handshake flight) to a request
 * from an address never validated: even its first sending stays within 3 times the
 * request's bytes, a challenge first; a genuine client echoes and gets the rest at once.
 */
Test(amp, transport_answer_is_limited_from_its_first_sending)
{
	struct pair p;
	uint8_t *req = pattern(300, 0), *resp = pattern(4000, 1);
	size_t sent;

	pair_init(&p, NULL, NULL);
	p.srv.mode = AUTO_NONE;
	cr_assert_eq(do_call(&p.cli, &p.srv.addr, req, 300, 1, SEC, 0), 0);
	while (p.srv.num_reqs == 0 && net_pump())
		;
	cr_assert_eq(p.srv.num_reqs, 1);
	sent = p.srv.num_sent;
	cr_assert_eq(eng_answer(p.srv.e, p.srv.reqs[0].handle, resp, 4000, net.now), 0);
	/* the challenge and nothing the 3 x 308 B do not pay for (a packet is 1472 B) */
	cr_assert_eq(p.srv.num_sent, sent + 1, "the challenge alone");
	cr_assert_eq(pkt_type(&p.srv.sent[sent]), R2P2_ACK);
	cr_assert_leq(bytes_sent_from(&p.srv, sent), 3 * 308);
	cr_assert_eq(stats(&p.srv).amp_limited, 3);
	/* the client echoes; the whole answer follows, and the call completes */
	net_run(has_dones, &p.cli);
	cr_assert_eq(p.cli.dones[0].status, 0);
	cr_assert_eq(p.cli.dones[0].len, 4000);
	cr_assert_arr_eq(p.cli.dones[0].payload, resp, 4000);
	cr_assert_eq(stats(&p.cli).amp_echoed, 1);
	cr_assert_eq(stats(&p.srv).amp_validated, 1);
	cr_assert_eq(stats(&p.cli).retransmits, 0, "one round trip more, no retransmission");
	/* a spoofed copy of the request from another port: a new state, limited the same way */
	struct r2p2_addr victim = p.cli.addr;
	victim.port ^= 0x0101;
	sent = p.srv.num_sent;
	feed(&p.srv, 0, &victim, p.cli.sent[0].data, p.cli.sent[0].len);
	cr_assert_eq(p.srv.num_reqs, 2);
	cr_assert_eq(eng_answer(p.srv.e, p.srv.reqs[1].handle, resp, 4000, net.now), 0);
	size_t out = 0;
	for (size_t i = sent; i < p.srv.num_sent; i++)
		if (memcmp(&p.srv.sent[i].dst, &victim, sizeof(victim)) == 0)
			out += p.srv.sent[i].len;
	cr_assert_leq(out, 3 * p.cli.sent[0].len, "%zu B toward the victim", out);
	free(req);
	free(resp);
	pair_cleanup(&p);
}
