// SPDX-License-Identifier: MIT
/* test_config: r2p2d's INI config: defaults, a full config, addresses, and every error class. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <r2p2/shm.h>
#include <r2p2/wire.h>

#include "config.h"

static struct cfg cfg;
static char err[512];

static int parse(const char *text)
{
	return cfg_parse_string(&cfg, "t.conf", text, err, sizeof(err));
}

/* expect_error: parsing `text` fails with "t.conf:<line>: ..." containing `key` and `what`. */
static void expect_error(const char *text, int line, const char *key, const char *what)
{
	char prefix[32];

	cr_assert_eq(parse(text), -EINVAL, "accepted:\n%s", text);
	snprintf(prefix, sizeof(prefix), "t.conf:%d: ", line);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "want prefix '%s', got '%s'", prefix,
		  err);
	if (key)
		cr_assert(strstr(err, key), "want key '%s' in '%s'", key, err);
	if (what)
		cr_assert(strstr(err, what), "want '%s' in '%s'", what, err);
}

static void expect_addr(const struct r2p2_addr *a, int family, const char *ip, uint16_t port)
{
	struct r2p2_addr want;

	memset(&want, 0, sizeof(want));
	want.family = (uint16_t)family;
	want.port = htons(port);
	cr_assert_eq(inet_pton(family, ip, want.addr), 1);
	cr_assert(memcmp(a, &want, sizeof(want)) == 0, "address is not %s port %u", ip, port);
}

Test(config, defaults)
{
	struct cfg d;

	cfg_defaults(&d);
	cr_assert_eq(parse(""), 0, "%s", err);
	cr_assert(memcmp(&d, &cfg, sizeof(d)) == 0, "empty config != defaults");
	cr_assert_str_eq(cfg.listen, "0.0.0.0");
	expect_addr(&cfg.listen_addr, AF_INET, "0.0.0.0", 0);
	cr_assert_eq(cfg.workers, 2);
	cr_assert_str_eq(cfg.socket_path, R2P2_DEFAULT_SOCKET);
	cr_assert_str_eq(cfg.socket_group, "");
	cr_assert_eq(cfg.max_conns, 1024);
	cr_assert_eq(cfg.max_conns_per_uid, 64);
	cr_assert_eq(cfg.max_msg_len, 1048576);
	cr_assert_eq(cfg.ring_entries, 256);
	cr_assert_eq(cfg.arena_size, 4194304);
	cr_assert_eq(cfg.dedup_window_ms, 2000);
	cr_assert_eq(cfg.reassembly_timeout_ms, 1000);
	cr_assert_eq(cfg.exec_timeout_ms, 30000);
	cr_assert_eq(cfg.drain_timeout_ms, 5000);
	cr_assert_eq(cfg.max_reassembly_bytes, 64ull << 20);
	cr_assert_eq(cfg.max_half_open_per_source, 1024);
	cr_assert(!cfg.has_router);
	cr_assert_str_eq(cfg.log_level, "info");
	cr_assert_eq(cfg.num_serves, 0);
	cr_assert_eq(cfg.num_calls, 0);
}

Test(config, comments_blank_lines_and_sections_without_services)
{
	cr_assert_eq(parse("; comment\n# another\n\n   \n[daemon]\n\r\n"), 0, "%s", err);
	cr_assert_eq(cfg.workers, 2);
	cr_assert_eq(parse("\xEF\xBB\xBF[daemon]\nworkers = 3\n"), 0, "BOM: %s", err);
	cr_assert_eq(cfg.workers, 3);
	cr_assert_eq(parse("[daemon]\r\nworkers = 4\r\n"), 0, "CRLF: %s", err);
	cr_assert_eq(cfg.workers, 4);
}

static const char full[] = "; r2p2d test config\n"
			   "[daemon]\n"
			   "listen = 10.0.0.1          ; inline comment\n"
			   "workers = 4\n"
			   "socket = /tmp/r2p2/ctl.sock\n"
			   "socket_group = r2p2\n"
			   "max_message = 65536\n"
			   "ring_entries = 1024\n"
			   "arena_size = 65536\n"
			   "dedup_window_ms = 3000\n"
			   "reassembly_timeout_ms = 500\n"
			   "exec_timeout_ms = 10000\n"
			   "drain_timeout_ms = 0\n"
			   "max_reassembly_bytes = 1048576\n"
			   "max_half_open_per_source = 16\n"
			   "router = 10.0.0.9:9000\n"
			   "log_level = debug\n"
			   "\n"
			   "[serve echo.svc]\n"
			   "port = 8000\n"
			   "security = plain\n"
			   "\n"
			   "[serve \"kv-store_2\"]\n"
			   "port = 8001\n"
			   "\n"
			   "[call echo.svc]\n"
			   "server = 10.0.0.2:8000\n"
			   "server = 10.0.0.3:8000\n"
			   "policy = fixed_route\n"
			   "timeout_ms = 250\n"
			   "retries = 0\n"
			   "max_inflight = 32\n"
			   "security = plain\n"
			   "\n"
			   "[call kv]\n"
			   "router = 10.0.0.9:9000\n";

Test(config, full)
{
	const struct cfg_serve *s;
	const struct cfg_call *cl;

	cr_assert_eq(parse(full), 0, "%s", err);
	cr_assert_str_eq(err, "");
	cr_assert_str_eq(cfg.listen, "10.0.0.1");
	expect_addr(&cfg.listen_addr, AF_INET, "10.0.0.1", 0);
	cr_assert_eq(cfg.workers, 4);
	cr_assert_str_eq(cfg.socket_path, "/tmp/r2p2/ctl.sock");
	cr_assert_str_eq(cfg.socket_group, "r2p2");
	cr_assert_eq(cfg.max_msg_len, 65536);
	cr_assert_eq(cfg.ring_entries, 1024);
	cr_assert_eq(cfg.arena_size, 65536);
	cr_assert_eq(cfg.dedup_window_ms, 3000);
	cr_assert_eq(cfg.reassembly_timeout_ms, 500);
	cr_assert_eq(cfg.exec_timeout_ms, 10000);
	cr_assert_eq(cfg.max_reassembly_bytes, 1048576);
	cr_assert_eq(cfg.max_half_open_per_source, 16);
	cr_assert_eq(cfg.drain_timeout_ms, 0);
	cr_assert(cfg.has_router);
	expect_addr(&cfg.router, AF_INET, "10.0.0.9", 9000);
	cr_assert_str_eq(cfg.log_level, "debug");

	cr_assert_eq(cfg.num_serves, 2);
	s = cfg_find_serve(&cfg, "echo.svc");
	cr_assert_not_null(s);
	cr_assert_eq(s->port, 8000);
	cr_assert_eq(s->security, CFG_SEC_PLAIN);
	s = cfg_find_serve(&cfg, "kv-store_2");
	cr_assert_not_null(s, "quoted name");
	cr_assert_eq(s->port, 8001);
	cr_assert_eq(cfg_find_serve_port(&cfg, 8001), s);
	cr_assert_null(cfg_find_serve_port(&cfg, 8002));
	cr_assert_null(cfg_find_serve(&cfg, "nope"));

	cr_assert_eq(cfg.num_calls, 2);
	cl = cfg_find_call(&cfg, "echo.svc");
	cr_assert_not_null(cl);
	cr_assert_eq(cl->num_servers, 2);
	expect_addr(&cl->servers[0], AF_INET, "10.0.0.2", 8000);
	expect_addr(&cl->servers[1], AF_INET, "10.0.0.3", 8000);
	cr_assert(!cl->has_router);
	cr_assert_eq(cl->policy, R2P2_FIXED_ROUTE);
	cr_assert_eq(cl->timeout_ms, 250);
	cr_assert_eq(cl->retries, 0);
	cr_assert_eq(cl->max_inflight, 32);
	cl = cfg_find_call(&cfg, "kv");
	cr_assert_not_null(cl);
	cr_assert_eq(cl->num_servers, 0);
	cr_assert(cl->has_router);
	expect_addr(&cl->router, AF_INET, "10.0.0.9", 9000);
	cr_assert_eq(cl->policy, R2P2_LB_ROUTE, "default policy");
	cr_assert_eq(cl->timeout_ms, 1000, "default timeout");
	cr_assert_eq(cl->retries, 3, "default retries");
	cr_assert_eq(cl->max_inflight, CFG_DEFAULT_INFLIGHT, "default max_inflight");
	cr_assert_null(cfg_find_call(&cfg, "nope"));
}

Test(config, ipv6)
{
	const struct cfg_call *cl;

	cr_assert_eq(parse("[daemon]\nlisten = ::\nrouter = [fd00::9]:9000\n"
			   "[call echo.svc]\nserver = [::1]:8000\nserver = 127.0.0.1:8001\n"
			   "policy = replicated_route_no_se\n"),
		     0, "%s", err);
	cr_assert_str_eq(cfg.listen, "::");
	expect_addr(&cfg.listen_addr, AF_INET6, "::", 0);
	expect_addr(&cfg.router, AF_INET6, "fd00::9", 9000);
	cr_assert(!cfg.has_metrics);
	cr_assert_eq(parse("[daemon]\nmetrics = [::1]:9464\n"), 0, "%s", err);
	cr_assert(cfg.has_metrics);
	expect_addr(&cfg.metrics, AF_INET6, "::1", 9464);
	cr_assert_eq(parse("[daemon]\nlisten = ::\nrouter = [fd00::9]:9000\n"
			   "[call echo.svc]\nserver = [::1]:8000\nserver = 127.0.0.1:8001\n"
			   "policy = replicated_route_no_se\n"),
		     0, "%s", err);
	cl = cfg_find_call(&cfg, "echo.svc");
	cr_assert_not_null(cl);
	cr_assert_eq(cl->num_servers, 2);
	expect_addr(&cl->servers[0], AF_INET6, "::1", 8000);
	expect_addr(&cl->servers[1], AF_INET, "127.0.0.1", 8001);
	cr_assert_eq(cl->policy, R2P2_REPLICATED_ROUTE_NO_SE);
}

Test(config, parse_and_format_addr)
{
	static const char *const good[] = {"1.2.3.4:5", "[::1]:8000", "[fd00::1:2]:65535",
					   "255.255.255.255:1", "[::ffff:10.0.0.1]:80"};
	static const char *const bad[] = {
	    "",
	    "1.2.3.4",
	    "1.2.3.4:",
	    "1.2.3.4:0",
	    "1.2.3.4:65536",
	    "1.2.3.4:-1",
	    "1.2.3.4:+5",
	    "1.2.3.4: 5",
	    "10.0.0.300:8000",
	    "::1:8000",
	    "[::1]",
	    "[::1]8000",
	    "[1.2.3.4]:80",
	    "host:80",
	    "[::1:80",
	    "1.2.3:80",
	    "1.2.3.4:80x",
	    "[::1]:0x50",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1"};
	struct r2p2_addr a, zero;
	char buf[64];

	memset(&zero, 0, sizeof(zero));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_eq(cfg_parse_addr(good[i], true, &a), 0, "%s", good[i]);
		cr_assert_str_eq(cfg_format_addr(&a, buf, sizeof(buf)), good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&a, 0xAA, sizeof(a));
		cr_assert_neq(cfg_parse_addr(bad[i], true, &a), 0, "accepted '%s'", bad[i]);
		cr_assert(memcmp(&a, &zero, sizeof(a)) == 0, "'%s' left garbage", bad[i]);
	}

	/* without a required port: bare addresses too, and the port form still works */
	cr_assert_eq(cfg_parse_addr("1.2.3.4", false, &a), 0);
	expect_addr(&a, AF_INET, "1.2.3.4", 0);
	cr_assert_str_eq(cfg_format_addr(&a, buf, sizeof(buf)), "1.2.3.4");
	cr_assert_eq(cfg_parse_addr("::", false, &a), 0);
	cr_assert_str_eq(cfg_format_addr(&a, buf, sizeof(buf)), "::");
	cr_assert_eq(cfg_parse_addr("[::1]", false, &a), 0);
	expect_addr(&a, AF_INET6, "::1", 0);
	cr_assert_eq(cfg_parse_addr("10.0.0.1:7", false, &a), 0);
	expect_addr(&a, AF_INET, "10.0.0.1", 7);
	cr_assert_neq(cfg_parse_addr(NULL, false, &a), 0);

	/* small buffers truncate, never overflow */
	cr_assert_eq(cfg_parse_addr("[fd00::1:2]:65535", true, &a), 0);
	cr_assert_str_eq(cfg_format_addr(&a, buf, 5), "[fd0");
	cr_assert_null(cfg_format_addr(&a, buf, 0));
	memset(&a, 0, sizeof(a));
	cr_assert_str_eq(cfg_format_addr(&a, buf, sizeof(buf)), "?");
}

/* The example error message of docs/OPERATIONS.md, word for word. */
Test(config, error_message_shape)
{
	expect_error("[daemon]\nworkers = 2\n\n[call echo.svc]\nserver = 10.0.0.300:8000\n", 5,
		     NULL, NULL);
	cr_assert_str_eq(err, "t.conf:5: [call echo.svc] server: bad address '10.0.0.300:8000' "
			      "(expected IPv4:port or [IPv6]:port)");
}

Test(config, syntax_errors)
{
	expect_error("[daemon]\nworkers 4\n", 2, NULL, "expected 'key = value'");
	expect_error("[daemon]\nworkers: 4\n", 2, NULL, "expected 'key = value'");
	expect_error("[daemon]\n= 4\n", 2, NULL, "expected 'key = value'");
	expect_error("[daemon\nworkers = 4\n", 1, NULL, "missing ']'");
	expect_error("[daemon] junk\n", 1, NULL, "after section header");
	expect_error("workers = 4\n", 1, "workers", "outside of any section");
	expect_error("\n\n[daemon]\nworkers = \\\n", 4, "workers", "not a number");
	/* an indented line is a key of its own, not a continuation of the previous value */
	expect_error("[daemon]\nlisten = 10.0.0.1\n    bogus = 1\n", 3, "bogus", "unknown key");
}

Test(config, long_lines_and_nul)
{
	char text[2048];

	snprintf(text, sizeof(text), "[daemon]\nsocket = /%0300d\n", 0);
	expect_error(text, 2, NULL, "line too long");
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	memcpy(text, "[daemon]\n;", 10);
	cr_assert_eq(parse(text), 0, "a long comment is fine: %s", err);
	memcpy(text, "[daemon]\nsocket_group = ", 24);
	expect_error(text, 2, NULL, "line too long");
}

Test(config, unknown_sections_and_keys)
{
	expect_error("[daemon]\n[server echo]\nport = 1\n", 2, "[server echo]", "unknown section");
	expect_error("[Daemon]\n", 1, NULL, "unknown section");
	expect_error("[daemon extra]\n", 1, NULL, "unknown section");
	expect_error("[daemon]\nworker = 2\n", 2, "[daemon] worker", "unknown key");
	expect_error("[serve a]\nport = 1\nserver = 1.2.3.4:5\n", 3, "[serve a] server",
		     "unknown key");
	expect_error("[call a]\nserver = 1.2.3.4:5\nport = 1\n", 3, "[call a] port", "unknown key");
}

Test(config, service_names)
{
	char text[256];

	expect_error("[serve]\n", 1, "[serve]", "missing service name");
	expect_error("[call \"\"]\n", 1, "[call", "missing service name");
	expect_error("[serve echo svc]\nport = 1\n", 1, "echo svc", "bad service name");
	expect_error("[serve echo/svc]\nport = 1\n", 1, "echo/svc", "bad service name");
	/* 47 characters is the longest name, 48 is too long */
	snprintf(text, sizeof(text), "[serve %047d]\nport = 1\n", 7);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(strlen(cfg.serves[0].name), 47);
	snprintf(text, sizeof(text), "[serve %048d]\nport = 1\n", 7);
	expect_error(text, 1, NULL, "bad service name");
}

Test(config, numbers)
{
	expect_error("[daemon]\nworkers = 0\n", 2, "[daemon] workers", "out of range (1..64)");
	expect_error("[daemon]\nworkers = 65\n", 2, "workers", "out of range");
	expect_error("[daemon]\nworkers = -1\n", 2, "workers", "not a number");
	expect_error("[daemon]\nworkers = +2\n", 2, "workers", "not a number");
	expect_error("[daemon]\nworkers = 0x2\n", 2, "workers", "not a number");
	expect_error("[daemon]\nworkers = 2k\n", 2, "workers", "not a number");
	expect_error("[daemon]\nworkers = 99999999999999999999999\n", 2, "workers", "out of range");
	expect_error("[daemon]\nring_entries = 100\n", 2, "ring_entries", "power of two");
	expect_error("[daemon]\nring_entries = 4\n", 2, "ring_entries", "out of range");
	expect_error("[daemon]\nring_entries = 131072\n", 2, "ring_entries", "out of range");
	expect_error("[daemon]\nmax_message = 0\n", 2, "max_message", "out of range");
	expect_error("[daemon]\nmax_message = 200000000\n", 2, "max_message", "out of range");
	expect_error("[daemon]\narena_size = 2147483648\n", 2, "arena_size", "out of range");
	expect_error("[daemon]\ndedup_window_ms = 0\n", 2, "dedup_window_ms", "out of range");
	expect_error("[daemon]\nreassembly_timeout_ms = x\n", 2, "reassembly_timeout_ms",
		     "not a number");
	expect_error("[daemon]\nexec_timeout_ms = 0\n", 2, "exec_timeout_ms", "out of range");
	expect_error("[daemon]\nmax_reassembly_bytes = 1000\n", 2, "max_reassembly_bytes",
		     "out of range");
	expect_error("[daemon]\nmax_half_open_per_source = 0\n", 2, "max_half_open_per_source",
		     "out of range");
	expect_error("[daemon]\ndrain_timeout_ms = 3600001\n", 2, "drain_timeout_ms",
		     "out of range");
	expect_error("[serve a]\nport = 0\n", 2, "[serve a] port", "out of range (1..65535)");
	expect_error("[serve a]\nport = 65536\n", 2, "port", "out of range");
	expect_error("[call a]\nserver = 1.2.3.4:5\nretries = 101\n", 3, "retries", "out of range");
	expect_error("[call a]\nserver = 1.2.3.4:5\nmax_inflight = 0\n", 3, "max_inflight",
		     "out of range");
	expect_error("[call a]\nserver = 1.2.3.4:5\ntimeout_ms = 0\n", 3, "timeout_ms",
		     "out of range");

	cr_assert_eq(parse("[daemon]\nmax_message = 4096\narena_size = 4096\nring_entries = 8\n"
			   "workers = 64\n"),
		     0, "%s", err);
	cr_assert_eq(cfg.ring_entries, 8);
	cr_assert_eq(cfg.workers, 64);
}

Test(config, arena_must_hold_max_message)
{
	expect_error("[daemon]\nmax_message = 65536\narena_size = 8192\n", 3, "[daemon] arena_size",
		     "smaller than max_message");
	expect_error("[daemon]\n\nmax_message = 8388608\n", 3, "[daemon] max_message",
		     "larger than arena_size");
}

Test(config, daemon_values)
{
	expect_error("[daemon]\nlisten = 10.0.0.1:80\n", 2, "[daemon] listen", "has a port");
	expect_error("[daemon]\nlisten = 10.0.0.256\n", 2, "listen", "bad address");
	expect_error("[daemon]\nlisten =\n", 2, "listen", "empty value");
	expect_error("[daemon]\nsocket = relative.sock\n", 2, "socket", "absolute path");
	expect_error("[daemon]\nsocket_group = bad group\n", 2, "socket_group", "bad group name");
	expect_error("[daemon]\nrouter = 10.0.0.9\n", 2, "[daemon] router", "bad address");
	expect_error("[daemon]\nworkers = 1\nmetrics = localhost\n", 3, "[daemon] metrics",
		     "bad address");
	expect_error("[daemon]\nlog_level = verbose\n", 2, "log_level", "error|warn|info|debug");
	expect_error("[daemon]\nworkers = 2\n[serve a]\nport = 1\n[daemon]\nworkers = 3\n", 6,
		     "workers", "set twice (first at line 2)");

	/* empty router / socket_group mean "none" */
	cr_assert_eq(parse("[daemon]\nrouter =\nsocket_group =   ; none\n"), 0, "%s", err);
	cr_assert(!cfg.has_router);
	cr_assert_str_eq(cfg.socket_group, "");
}

Test(config, poll_and_cpus)
{
	cr_assert_eq(parse("[daemon]\n"), 0, "%s", err);
	cr_assert_eq(cfg.poll, CFG_POLL_OFF);
	cr_assert_eq(cfg.poll_us, 50);
	cr_assert_eq(cfg.num_cpus, 0);
	cr_assert_eq(parse("[daemon]\npoll = busy\npoll_us = 7\ncpus = 3,0-1,5\n"), 0, "%s", err);
	cr_assert_eq(cfg.poll, CFG_POLL_BUSY);
	cr_assert_eq(cfg.poll_us, 7);
	cr_assert_eq(cfg.num_cpus, 4);
	cr_assert(cfg.cpus[0] == 3 && cfg.cpus[1] == 0 && cfg.cpus[2] == 1 && cfg.cpus[3] == 5);
	cr_assert_eq(parse("[daemon]\npoll = adaptive\n"), 0, "%s", err);
	cr_assert_eq(cfg.poll, CFG_POLL_ADAPTIVE);
	expect_error("[daemon]\npoll = sometimes\n", 2, "poll", "off|adaptive|busy");
	expect_error("[daemon]\npoll_us = 0\n", 2, "poll_us", "out of range");
	expect_error("[daemon]\ncpus = 1-\n", 2, "cpus", "CPU list");
	expect_error("[daemon]\ncpus = 3-1\n", 2, "cpus", "CPU list");
	expect_error("[daemon]\ncpus = 0,,1\n", 2, "cpus", "CPU list");
	expect_error("[daemon]\ncpus = 1024\n", 2, "cpus", "CPU list");
	expect_error("[daemon]\ncpus = 0-64\n", 2, "cpus", "CPU list");
	expect_error("[daemon]\ncpus = x\n", 2, "cpus", "CPU list");
}

Test(config, connection_limits)
{
	cr_assert_eq(parse("[daemon]\nmax_connections = 8\nmax_connections_per_uid = 2\n"), 0, "%s",
		     err);
	cr_assert_eq(cfg.max_conns, 8);
	cr_assert_eq(cfg.max_conns_per_uid, 2);
	expect_error("[daemon]\nmax_connections_per_uid = 0\n", 2,
		     "[daemon] max_connections_per_uid", "out of range (1..65536)");
	expect_error("[daemon]\nmax_connections = 65537\n", 2, "[daemon] max_connections",
		     "out of range");
	expect_error("[daemon]\nmax_connections = many\n", 2, "max_connections", "not a number");
	expect_error("[daemon]\nmax_connections = 4\nmax_connections = 5\n", 3, "max_connections",
		     "set twice (first at line 2)");
}

/* owner = USER|uid|@GROUP|@gid: names are resolved at load (root exists everywhere). */
Test(config, serve_owner)
{
	const struct cfg_serve *s;

	cr_assert_eq(parse("[serve a]\nport = 1\n[serve b]\nport = 2\nowner = root\n"
			   "[serve c]\nport = 3\nowner = @root\n[serve d]\nport = 4\nowner = 1234\n"
			   "[serve e]\nport = 5\nowner = @4321\n"),
		     0, "%s", err);
	s = cfg_find_serve(&cfg, "a");
	cr_assert_eq(s->owner, CFG_OWNER_ANY, "no owner: anyone who can connect");
	cr_assert_eq(s->line, 1);
	s = cfg_find_serve(&cfg, "b");
	cr_assert_eq(s->owner, CFG_OWNER_UID);
	cr_assert_eq(s->owner_id, 0);
	cr_assert_str_eq(s->owner_text, "root");
	cr_assert_eq(s->line, 3);
	s = cfg_find_serve(&cfg, "c");
	cr_assert_eq(s->owner, CFG_OWNER_GID);
	cr_assert_eq(s->owner_id, 0);
	cr_assert_str_eq(s->owner_text, "@root");
	s = cfg_find_serve(&cfg, "d");
	cr_assert_eq(s->owner, CFG_OWNER_UID, "a uid need not have a name");
	cr_assert_eq(s->owner_id, 1234);
	s = cfg_find_serve(&cfg, "e");
	cr_assert_eq(s->owner, CFG_OWNER_GID);
	cr_assert_eq(s->owner_id, 4321);

	expect_error("[serve a]\nport = 1\nowner = no-such-user-r2p2\n", 3, "[serve a] owner",
		     "no such user 'no-such-user-r2p2'");
	expect_error("[serve a]\nport = 1\nowner = @no-such-group-r2p2\n", 3, "[serve a] owner",
		     "no such group 'no-such-group-r2p2'");
	expect_error("[serve a]\nport = 1\nowner = @\n", 3, "[serve a] owner", "expected USER");
	expect_error("[serve a]\nport = 1\nowner = 4294967295\n", 3, "owner", "bad uid");
	expect_error("[serve a]\nport = 1\nowner = @12x\n", 3, "owner", "bad gid");
	expect_error("[serve a]\nport = 1\nowner = root\nowner = root\n", 4, "owner",
		     "set twice (first at line 3)");
	expect_error("[serve a]\nport = 1\nowner =\n", 3, "owner", "empty value");
	expect_error("[call a]\nserver = 1.2.3.4:5\nowner = root\n", 3, "[call a] owner",
		     "unknown key");
}

Test(config, socket_path_bound)
{
	char text[256];

	/* sun_path holds 107 bytes plus the NUL */
	snprintf(text, sizeof(text), "[daemon]\nsocket = /%0106d\n", 0);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(strlen(cfg.socket_path), 107);
	snprintf(text, sizeof(text), "[daemon]\nsocket = /%0107d\n", 0);
	expect_error(text, 2, "socket", "too long");
}

Test(config, security)
{
	expect_error("[serve a]\nport = 1\nsecurity = tls\n", 1, "[serve a] cert",
		     "required with security = tls");
	expect_error("[serve a]\nport = 1\nsecurity = tls\ncert = /c.pem\n", 1, "[serve a] key",
		     "required with security = tls");
	expect_error("[serve a]\nport = 1\nsecurity = tls\ncert = /c\nkey = /k\n", 2,
		     "[daemon] stek", "required");
	expect_error("[call a]\nserver = 1.2.3.4:5\nsecurity = tls\n", 1, "[call a] ca",
		     "required with security = tls");
	expect_error("[serve a]\nport = 1\nearly_data = maybe\n", 3, "[serve a] early_data",
		     "yes|no");
	expect_error("[call a]\nserver = 1.2.3.4:5\nsecurity = sealed\n", 1, "[call a] ca",
		     "required with security = sealed");
	expect_error("[serve a]\nport = 1\nsecurity = rot13\n", 3, "security", "plain|tls|sealed");
}

/* [call] extensions: plain chooses; tls and sealed always carry the block */
Test(config, call_extensions)
{
	cr_assert_eq(parse("[call a]\nserver = 1.2.3.4:5\n"), 0, "%s", err);
	cr_assert_not(cfg.calls[0].extensions, "plain calls carry no block by default");
	cr_assert_not(cfg_call_ext(&cfg.calls[0]));
	cr_assert_eq(parse("[call a]\nserver = 1.2.3.4:5\nextensions = yes\n"), 0, "%s", err);
	cr_assert(cfg_call_ext(&cfg.calls[0]));
	cr_assert_eq(parse("[call a]\nserver = 1.2.3.4:5\nsecurity = tls\nca = /ca\n"), 0, "%s",
		     err);
	cr_assert(cfg_call_ext(&cfg.calls[0]), "tls calls always carry the block");
	cr_assert_eq(parse("[call a]\nserver = 1.2.3.4:5\nsecurity = sealed\nca = /ca\n"
			   "extensions = yes\n"),
		     0, "%s", err);
	expect_error("[call a]\nserver = 1.2.3.4:5\nsecurity = sealed\nca = /ca\nextensions = no\n",
		     5, "[call a] extensions", "always carry");
	expect_error("[call a]\nserver = 1.2.3.4:5\nextensions = maybe\n", 3, "extensions",
		     "yes|no");
}

Test(config, tls_keys)
{
	struct cfg c;
	char err[256];
	const char *text =
	    "[daemon]\nstek = /etc/r2p2/stek.keys\nreplay_window_ms = 60000\n"
	    "replay_max_entries = 4096\n"
	    "[serve echo.svc]\nport = 8000\nsecurity = tls\ncert = /c.pem\n"
	    "key = /k.pem\nearly_data = no\n"
	    "[call echo.svc]\nserver = 10.0.0.2:8000\nsecurity = tls\nca = /ca.pem\n";

	cr_assert_eq(cfg_parse_string(&c, "t.conf", text, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.stek_path, "/etc/r2p2/stek.keys");
	cr_assert_eq(c.replay_window_ms, 60000);
	cr_assert_eq(c.replay_max_entries, 4096);
	cr_assert_eq(c.serves[0].security, CFG_SEC_TLS);
	cr_assert_str_eq(c.serves[0].cert, "/c.pem");
	cr_assert_str_eq(c.serves[0].key, "/k.pem");
	cr_assert_not(c.serves[0].early_data);
	cr_assert_eq(c.calls[0].security, CFG_SEC_TLS);
	cr_assert_str_eq(c.calls[0].ca, "/ca.pem");
	cr_assert_eq(cfg_parse_string(&c, "t.conf", "[serve a]\nport = 1\n", err, sizeof(err)), 0);
	cr_assert(c.serves[0].early_data, "early data defaults to on");
}

Test(config, serve_rules)
{
	expect_error("[serve a]\nsecurity = plain\n[serve b]\nport = 1\n", 1, "[serve a] port",
		     "required");
	expect_error("[daemon]\n[serve a]\n", 2, "[serve a] port", "required");
	expect_error("[serve a]\nport = 1\nport = 2\n", 3, "port", "set twice");
}

Test(config, call_rules)
{
	char text[4096];
	size_t n;

	expect_error("[call a]\npolicy = lb_route\n", 1, "[call a] server", "required");
	expect_error("[call a]\nserver = 1.2.3.4:5\nrouter = 1.2.3.4:6\n", 3, "[call a] router",
		     "cannot be combined with server= (line 2)");
	expect_error("[call a]\nrouter = 1.2.3.4:6\nserver = 1.2.3.4:5\n", 3, "[call a] server",
		     "cannot be combined with router= (line 2)");
	expect_error("[call a]\nrouter = 1.2.3.4:6\nrouter = 1.2.3.4:7\n", 3, "router",
		     "set twice");
	expect_error("[call a]\nserver = 1.2.3.4:5\npolicy = round_robin\n", 3, "policy",
		     "lb_route|fixed_route");
	expect_error("[call a]\nserver = [::1]\n", 2, "server", "bad address '[::1]'");

	/* CFG_MAX_SERVERS servers fit, one more does not */
	n = (size_t)snprintf(text, sizeof(text), "[call a]\n");
	for (int i = 0; i < CFG_MAX_SERVERS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "server = 10.0.0.%d:80\n", i + 1);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.calls[0].num_servers, CFG_MAX_SERVERS);
	snprintf(text + n, sizeof(text) - n, "server = 10.0.1.1:80\n");
	expect_error(text, CFG_MAX_SERVERS + 2, "server", "too many servers");
}

Test(config, duplicate_services)
{
	expect_error("[serve a]\nport = 1\n\n[serve a]\nport = 2\n", 4, "[serve a]",
		     "served twice (first at line 1)");
	expect_error("[serve a]\nport = 1\n[serve \"a\"]\nport = 2\n", 3, "[serve a]",
		     "served twice");
	expect_error("[call a]\nserver = 1.2.3.4:5\n[call a]\nserver = 1.2.3.4:5\n", 3, "[call a]",
		     "called twice");
	expect_error("[serve a]\nport = 8000\n[serve b]\nport = 8000\n", 4, "[serve b] port",
		     "already used by [serve a] (line 2)");
	/* the same name may be both served and called */
	cr_assert_eq(parse("[serve a]\nport = 1\n[call a]\nserver = 127.0.0.1:1\n"), 0, "%s", err);
}

Test(config, too_many_services)
{
	char *text = malloc(64 * 1024);
	size_t n = 0;

	cr_assert_not_null(text);
	for (int i = 0; i < CFG_MAX_SERVICES; i++)
		n += (size_t)snprintf(text + n, 64 * 1024 - n, "[serve s%d]\nport = %d\n", i,
				      1000 + i);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.num_serves, CFG_MAX_SERVICES);
	snprintf(text + n, 64 * 1024 - n, "[serve one_more]\nport = 1\n");
	expect_error(text, 2 * CFG_MAX_SERVICES + 1, "[serve one_more]", "too many [serve]");
	free(text);
}

Test(config, small_error_buffer_and_null_name)
{
	char small[16];

	cr_assert_eq(cfg_parse_string(&cfg, NULL, "[x]\n", small, sizeof(small)), -EINVAL);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert_eq(cfg_parse_string(&cfg, "t.conf", "[x]\n", NULL, 0), -EINVAL);
}

Test(config, load_file)
{
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	FILE *f;

	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(full, f);
	fclose(f);
	cr_assert_eq(cfg_load(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.num_serves, 2);
	cr_assert_eq(cfg.num_calls, 2);
	cr_assert_eq(cfg.workers, 4);

	/* an error names the real path */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(
	    "[daemon]\nworkers = 2\n\n\n\n\n\n\n\n\n\n[call echo.svc]\nserver = 10.0.0.300:8000\n",
	    f);
	fclose(f);
	cr_assert_eq(cfg_load(&cfg, path, err, sizeof(err)), -EINVAL);
	cr_assert(strncmp(err, path, strlen(path)) == 0, "%s", err);
	cr_assert(strstr(err, ":13: [call echo.svc] server: bad address '10.0.0.300:8000'"), "%s",
		  err);

	/* an empty file is the defaults */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(cfg_load(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.workers, 2);
	unlink(path);

	cr_assert_eq(cfg_load(&cfg, path, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, path), "%s", err);
	cr_assert(strstr(err, "No such file or directory"), "%s", err);
}

Test(config, load_file_with_nul)
{
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	static const char text[] = "[daemon]\nworkers = 2\0\n";

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	cr_assert_eq(cfg_load(&cfg, path, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":2: line contains a NUL byte"), "%s", err);
	unlink(path);
}

/* [serve] stek: a service's own STEK, instead of (or without) the daemon's. */
Test(config, serve_stek)
{
	const char *own = "[serve a]\nport = 1\nsecurity = sealed\ncert = /c\nkey = /k\n"
			  "stek = /etc/r2p2/a.keys\n";
	char text[512];

	cr_assert_eq(parse(own), 0, "%s", err);
	cr_assert_str_eq(cfg.serves[0].stek, "/etc/r2p2/a.keys");
	cr_assert_eq(cfg.serves[0].stek_line, 6);
	cr_assert_eq(cfg.stek_path[0], '\0');

	/* with a [daemon] stek too: each service keeps its own, the others take the daemon's */
	snprintf(text, sizeof(text),
		 "[daemon]\nstek = /etc/r2p2/fleet.keys\n%s"
		 "[serve b]\nport = 2\nsecurity = tls\ncert = /c\nkey = /k\n",
		 own);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.stek_line, 2);
	cr_assert_str_eq(cfg.serves[0].stek, "/etc/r2p2/a.keys");
	cr_assert_eq(cfg.serves[1].stek[0], '\0');

	/* a service without one still needs the daemon's */
	snprintf(text, sizeof(text), "%s[serve b]\nport = 2\nsecurity = tls\ncert = /c\nkey = /k\n",
		 own);
	expect_error(text, 8, "[daemon] stek", "[serve b] uses security = tls and has no stek");
	snprintf(text, sizeof(text), "%sstek = /other.keys\n", own);
	expect_error(text, 7, "[serve a] stek", "set twice (first at line 6)");
	expect_error("[serve a]\nport = 1\nstek =\n", 3, "[serve a] stek", "empty value");
}

/* cfg_check_files: --check and the start report a STEK file that cannot be read with
 * the config's file and line. */
Test(config, check_files)
{
	char dir[] = "/tmp/test_config_XXXXXX", good[64], text[512];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/a.keys", dir);
	f = fopen(good, "w");
	cr_assert_not_null(f);
	fclose(f);

	snprintf(text, sizeof(text),
		 "[daemon]\nstek = %s\n[serve a]\nport = 1\nsecurity = tls\ncert = /c\nkey = /k\n"
		 "stek = %s\n",
		 good, good);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg_check_files(&cfg, "t.conf", err, sizeof(err)), 0, "%s", err);

	snprintf(text, sizeof(text),
		 "[daemon]\nstek = %s\n[serve a]\nport = 1\nsecurity = tls\ncert = /c\nkey = /k\n"
		 "stek = %s/missing.keys\n",
		 good, dir);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg_check_files(&cfg, "t.conf", err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "t.conf:8: [serve a] stek: cannot open ") == err, "%s", err);
	cr_assert(strstr(err, "/missing.keys: No such file or directory"), "%s", err);

	snprintf(text, sizeof(text), "[daemon]\nworkers = 1\nstek = %s/gone.keys\n", dir);
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg_check_files(&cfg, "t.conf", err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "t.conf:3: [daemon] stek: cannot open ") == err, "%s", err);

	unlink(good);
	rmdir(dir);
}
