// SPDX-License-Identifier: MIT
/* test_status: the `r2p2ctl status` text, from given snapshots: exact lines, totals that
 * are the sum of the workers' lines, optional sections, and a cut that stays a prefix. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

/* The real table lives in sealed.c, which links BoringSSL; a Criterion test must not. */
const char *sealed_reason_name(unsigned reason)
{
	static const char *const names[] = {
	    "ok",	"malformed",	"unknown_key", "bad_token", "wrong_service",
	    "expired",	"stale",	"replay",      "full",	    "bad_aead",
	    "internal", "wrong_server", "restarted",   "share"};
	_Static_assert(sizeof(names) / sizeof(names[0]) == SEALED_REASON_MAX + 1, "every reason");
	return reason <= SEALED_REASON_MAX ? names[reason] : "?";
}

static struct cfg cfg;
static struct worker_snap snaps[2];
static struct app app;
static const struct app *apps[] = {&app};
static char text[8192];

static void setup(void)
{
	char err[256];

	cr_assert_eq(cfg_parse_string(&cfg, "t.conf",
				      "[daemon]\nworkers = 2\n"
				      "[serve \"echo.svc\"]\nport = 8000\n"
				      "[serve \"kv.svc\"]\nport = 8001\n"
				      "[call \"up.svc\"]\nserver = 10.0.0.9:9000\n",
				      err, sizeof(err)),
		     0, "%s", err);
	cfg.serves[1].security = CFG_SEC_SEALED; /* sealed needs keys on disk to parse */
	memset(snaps, 0, sizeof(snaps));
	for (unsigned i = 0; i < 2; i++) {
		snaps[i].eng.rx_packets = 10 + i;
		snaps[i].eng.tx_packets = 20 + i;
		snaps[i].eng.rx_runt = 1;
		snaps[i].eng.rx_bad_order = 2;
		snaps[i].tls_server.resumed = 3;
		snaps[i].sealed.opened = 4;
		snaps[i].sealed.rejected[SEALED_REJ_STALE] = 5;
		snaps[i].num_svc = 2;
		snaps[i].svc[0].port = 8001;
		snaps[i].svc[0].requests = 100 * (i + 1);
		snaps[i].svc[0].dropped_wrong_mode = 1;
		snaps[i].svc[0].dropped_expired = 1;
		snaps[i].svc[1].port = 8000;
		snaps[i].svc[1].requests = 7;
		snaps[i].svc[1].dropped_no_app = i;
	}
	snprintf(snaps[0].called[0].name, sizeof(snaps[0].called[0].name), "up.svc");
	snaps[0].called[0].st.ok = 5;
	snaps[0].called[0].st.failed = 1;
	snaps[0].called[0].st.lat[2] = 5; /* <= 32 us */
	snaps[0].called[0].st.lat[CALL_LAT_BUCKETS - 1] = 1;
	snaps[0].called[0].st.lat_sum_us = 5 * 30 + 3000000;
	snaps[0].num_called = 1;
	snaps[1].called[0] = snaps[0].called[0];
	snaps[1].num_called = 1;
	snaps[1].num_assoc = 1;
	snprintf(snaps[1].assoc[0].service, sizeof(snaps[1].assoc[0].service), "up.svc");
	snaps[1].assoc[0].key_id = 0xab;
	snaps[1].assoc[0].expiry_ms = 1000000 + 90500;
	memset(&app, 0, sizeof(app));
	app.id = 3;
	app.pid = 4242;
	app.uid = 1000;
	app.serves[0] = 8001;
	app.serves[1] = 8000;
	app.num_serves = 2;
}

static size_t format(const struct status_facts *f, char *buf, size_t len)
{
	return status_format(&cfg, f, snaps, 2, buf, len);
}

static struct status_facts facts(void)
{
	return (struct status_facts){.version = "9.9",
				     .pid = 77,
				     .backend = "udp (backend = udp)",
				     .apps = apps,
				     .num_apps = 1,
				     .now_ms = 1000000};
}

static void expect_line(const char *line)
{
	char needle[512];

	snprintf(needle, sizeof(needle), "\n%s\n", line);
	cr_expect(strstr(text, needle) || strncmp(text, needle + 1, strlen(needle + 1)) == 0,
		  "missing line \"%s\" in:\n%s", line, text);
}

TestSuite(status, .init = setup);

Test(status, lines_and_totals)
{
	struct status_facts f = facts();
	size_t n = format(&f, text, sizeof(text));

	cr_assert_eq(n, strlen(text));
	expect_line("r2p2d 9.9  pid 77  workers 2  apps 1");
	expect_line("backend: udp (backend = udp)");
	expect_line("  app 3  pid 4242  uid 1000  serves: kv.svc echo.svc");
	expect_line(
	    "  worker 1  rx 11  tx 21  calls 0 ok 0 timeout 0 dropped 0  requests 0 resent 0"
	    "  inflight 0 executing 0  bad 3  app_ok 0 app_failed 0  queued 0 waited 0 queue_full "
	    "0");
	expect_line("tls server: full_handshakes 0 resumed 6 early_accepted 0 early_rejected 0 "
		    "replays_refused 0 bad_messages 0 pending_handshakes 0 already_answered 0 "
		    "wrong_server 0 early_too_old 0");
	expect_line(
	    "sealed server: opened 8 responses 0 minted 0  rejected: malformed 0 unknown_key 0 "
	    "bad_token 0 wrong_service 0 expired 0 stale 10 replay 0 full 0 bad_aead 0 "
	    "internal 0 wrong_server 0 restarted 0 share 0");
	expect_line("  worker 1 association for up.svc: token key id 000000ab, expires in 90 s");
	expect_line("  echo.svc                 port 8000  plain  requests 14  dropped_no_app 1  "
		    "wrong_mode 0  expired 0  bad_ext 0");
	expect_line("  kv.svc                   port 8001  sealed requests 300  dropped_no_app 0  "
		    "wrong_mode 2  expired 2  bad_ext 0");
	expect_line("  up.svc                   servers 10.0.0.9:9000");
	expect_line("    calls: ok 10 failed 2  latency p50 <=32 us p99 >2097152 us");
	cr_expect_null(strstr(text, "xdp"), "no xdp counters on the udp backend:\n%s", text);
	cr_expect_null(strstr(text, "strike register"), "no strike register given:\n%s", text);
}

Test(status, optional_sections)
{
	struct r2p2_stats xs = {.steered = 5, .passed_runt = 6};
	struct replay_stats rs = {.entries = 1, .capacity = 2, .inserts = 3, .hits = 4};
	struct status_facts f = facts();

	f.draining = true;
	f.xdp = true;
	f.xdp_stats = &xs;
	f.replay = &rs;
	f.num_apps = 0;
	format(&f, text, sizeof(text));
	expect_line("r2p2d 9.9  pid 77  workers 2  apps 0  (draining)");
	expect_line("xdp: steered 5 no_socket 0 dropped_malformed 0 passed_not_r2p2 0 "
		    "passed_fragment 0 passed_ipv6_ext 0 passed_runt 6");
	expect_line("    af_xdp: rx 0 rx_bad 0 tx 0 tx_via_kernel 0");
	expect_line("strike register: entries 1 / 2  inserts 3 hits 4 full_rejects 0");
	cr_expect_null(strstr(text, "sealed strike register"), "%s", text);
	cr_expect_null(strstr(text, "  app "), "%s", text);
}

Test(status, cut_is_a_prefix)
{
	static char small[100];
	struct status_facts f = facts();
	size_t full = format(&f, text, sizeof(text));
	size_t n = format(&f, small, sizeof(small));

	cr_assert_gt(full, sizeof(small));
	cr_assert_eq(n, sizeof(small) - 1);
	cr_assert_eq(small[n], '\0');
	cr_assert_eq(memcmp(small, text, n), 0);
}

/* ---- JSON: a small validator, so that the test needs no JSON library ------------ */

static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p && *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\' && !*++p)
			return NULL;
	}
	return *p == '"' ? p + 1 : NULL;
}

/* json_seq reads the members of an object (`obj`) or the elements of an array up to `end`. */
static const char *json_seq(const char *p, char end, bool obj)
{
	p = json_ws(p);
	if (*p == end)
		return p + 1;
	for (;;) {
		if (obj) {
			p = json_string(json_ws(p));
			if (!p || *(p = json_ws(p)) != ':')
				return NULL;
			p++;
		}
		p = json_value(p);
		if (!p)
			return NULL;
		p = json_ws(p);
		if (*p == end)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p)
{
	p = json_ws(p);
	if (*p == '{')
		return json_seq(p + 1, '}', true);
	if (*p == '[')
		return json_seq(p + 1, ']', false);
	if (*p == '"')
		return json_string(p);
	if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	if (*p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return NULL;
	while (*p >= '0' && *p <= '9')
		p++;
	return p;
}

Test(status, json_says_the_same_numbers)
{
	struct r2p2_stats xs = {.steered = 5, .passed_runt = 6};
	struct replay_stats rs = {.entries = 1, .capacity = 2, .inserts = 3, .hits = 4};
	struct status_facts f = facts();
	const char *end;

	f.xdp = true;
	f.xdp_stats = &xs;
	f.sealed_replay = &rs;
	f.backend = "xdp on \"veth0\" (auto)";
	size_t n = status_format_json(&cfg, &f, snaps, 2, text, sizeof(text));
	cr_assert_eq(n, strlen(text));
	end = json_value(text);
	cr_assert_not_null(end, "not JSON:\n%s", text);
	cr_assert_str_eq(json_ws(end), "", "trailing bytes after the object:\n%s", text);
	cr_expect_not_null(strstr(text, "\"version\":\"9.9\",\"pid\":77,\"num_workers\":2"), "%s",
			   text);
	cr_expect_not_null(strstr(text, "\"backend\":\"xdp on \\\"veth0\\\" (auto)\""), "%s", text);
	cr_expect_not_null(strstr(text, "\"xdp\":{\"steered\":5,"), "%s", text);
	cr_expect_not_null(strstr(text, "{\"id\":1,\"rx\":11,\"tx\":21,"), "%s", text);
	cr_expect_not_null(strstr(text, "\"drops\":{\"runt\":1,"), "%s", text);
	cr_expect_not_null(strstr(text, "\"stale\":10"), "%s", text);
	cr_expect_not_null(strstr(text, "\"tls_server\":{\"full_handshakes\":0,\"resumed\":6"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "{\"id\":3,\"pid\":4242,\"uid\":1000,\"serves\":"
					"[\"kv.svc\",\"echo.svc\"]}"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "\"sealed_strike_register\":{\"entries\":1,\"capacity\":2,"
					"\"inserts\":3"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "{\"name\":\"kv.svc\",\"port\":8001,\"security\":"
					"\"sealed\",\"requests\":300,"),
			   "%s", text);
	cr_expect_not_null(strstr(text,
				  "{\"name\":\"up.svc\",\"security\":\"plain\",\"servers\":"
				  "[\"10.0.0.9:9000\"],\"max_inflight\":256,\"ok\":10,\"failed\":2,"
				  "\"latency_us\":{\"sum\":6000300,\"le\":[8,16,32,"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "\"counts\":[0,0,10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2]}}"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "{\"worker\":1,\"service\":\"up.svc\",\"key_id\":171,"
					"\"expires_in_s\":90}"),
			   "%s", text);
	/* a cut JSON text is not JSON, but stays a prefix and NUL-terminated */
	static char small[64];
	size_t k = status_format_json(&cfg, &f, snaps, 2, small, sizeof(small));
	cr_assert_eq(k, sizeof(small) - 1);
	cr_assert_eq(memcmp(small, text, k), 0);
}

/* prom_check: every line is a comment (HELP, TYPE) or "name{labels} value"; every sample's
 * metric had its TYPE line before it, and no metric's samples are split. */
static void prom_check(const char *t)
{
	char seen[512][96];
	size_t num_seen = 0;
	char current[96] = "";

	for (const char *line = t; *line;) {
		const char *nl = strchr(line, '\n');
		char name[96];
		size_t len;

		cr_assert_not_null(nl, "unterminated line: %s", line);
		len = (size_t)(nl - line);
		if (strncmp(line, "# TYPE ", 7) == 0) {
			cr_assert_eq(sscanf(line + 7, "%95s", name), 1);
			for (size_t i = 0; i < num_seen; i++)
				cr_assert_str_neq(seen[i], name, "metric %s split in two", name);
			cr_assert_lt(num_seen, 512);
			snprintf(seen[num_seen++], sizeof(seen[0]), "%s", name);
			snprintf(current, sizeof(current), "%s", name);
		} else if (line[0] != '#') {
			size_t k = strcspn(line, "{ "), f = strlen(current), r = k - f;
			const char *rest = line + f;

			cr_assert_lt(k, len);
			/* the metric's own name, or a histogram's _bucket, _sum and _count */
			cr_assert(k >= f && strncmp(line, current, f) == 0 &&
				      (r == 0 || (r == 7 && !strncmp(rest, "_bucket", 7)) ||
				       (r == 4 && !strncmp(rest, "_sum", 4)) ||
				       (r == 6 && !strncmp(rest, "_count", 6))),
				  "sample without its TYPE: %.*s", (int)len, line);
			cr_assert(nl[-1] >= '0' && nl[-1] <= '9', "no value: %.*s", (int)len, line);
		}
		line = nl + 1;
	}
}

Test(status, prometheus_says_the_same_numbers)
{
	struct replay_stats rs = {.entries = 1, .capacity = 2, .inserts = 3, .hits = 4};
	struct status_facts f = facts();
	static char prom[65536];

	f.sealed_replay = &rs;
	f.backend = "udp \"quoted\"";
	size_t n = status_format_prom(&cfg, &f, snaps, 2, prom, sizeof(prom));
	cr_assert_eq(n, strlen(prom));
	cr_assert_lt(n, sizeof(prom) - 1, "cut");
	prom_check(prom);
	cr_expect_not_null(strstr(prom, "# TYPE r2p2_workers_rx_total counter\n"
					"r2p2_workers_rx_total{id=\"0\"} 10\n"
					"r2p2_workers_rx_total{id=\"1\"} 11\n"),
			   "%s", prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_workers_drops_runt_total{id=\"1\"} 1\n"), "%s",
			   prom);
	cr_expect_not_null(strstr(prom, "# TYPE r2p2_workers_inflight gauge\n"), "%s", prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_sealed_server_rejected_stale_total 10\n"), "%s",
			   prom);
	cr_expect_not_null(strstr(prom,
				  "\nr2p2_served_requests_total{name=\"kv.svc\",port=\"8001\","
				  "security=\"sealed\"} 300\n"),
			   "%s", prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_sealed_strike_register_entries 1\n"), "%s", prom);
	cr_expect_not_null(
	    strstr(prom, "\nr2p2_info{version=\"9.9\",backend=\"udp \\\"quoted\\\"\"} 1\n"), "%s",
	    prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_num_workers 2\n"), "%s", prom);
	cr_expect_not_null(
	    strstr(prom, "\nr2p2_called_ok_total{name=\"up.svc\",security=\"plain\"} 10\n"), "%s",
	    prom);
	cr_expect_not_null(strstr(prom, "# TYPE r2p2_called_latency_seconds histogram\n"), "%s",
			   prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_called_latency_seconds_bucket{name=\"up.svc\","
					"security=\"plain\",le=\"3.2e-05\"} 10\n"),
			   "%s", prom);
	cr_expect_not_null(strstr(prom, "le=\"+Inf\"} 12\n"), "%s", prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_called_latency_seconds_sum{name=\"up.svc\","
					"security=\"plain\"} 6.0003\n"),
			   "%s", prom);
	cr_expect_not_null(strstr(prom, "\nr2p2_called_latency_seconds_count{name=\"up.svc\","
					"security=\"plain\"} 12\n"),
			   "%s", prom);
	cr_expect_null(strstr(prom, "version=\"9.9\",backend=\"udp \\\"quoted\\\"\"} 10"), "%s",
		       prom);
}
