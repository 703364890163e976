// SPDX-License-Identifier: MIT
/*
 * test_router_config: r2p2-router's configuration (daemon/router/rt_config.c). A full
 * file parses to what it says (defaults included); every kind of mistake is refused with
 * the file, the line and the key it is on.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "rt_config.h"

static struct rt_config cfg;

#define GOOD_HEAD "[daemon]\ninterface = eth1\n\n"

Test(router_config, full_file)
{
	char err[512] = "";
	const char *text = "; the router\n"
			   "[daemon]\n"
			   "interface = eth1\n"
			   "timeout_ms = 250\n"
			   "down_ms = 5000\n"
			   "sticky_ms = 0\n"
			   "metrics = 127.0.0.1:9465\n"
			   "user = r2p2-router\n"
			   "seccomp = no\n"
			   "\n"
			   "[router echo]\n"
			   "service = 10.0.0.1:8000\n"
			   "servers = 10.0.0.2:8000 10.0.0.3:8001\n"
			   "servers = 10.0.0.4:8000\n"
			   "policy = p2c\n"
			   "\n"
			   "[router kv]\n"
			   "service = 10.0.0.1:9000\n"
			   "servers = 10.0.0.5:9000\n";
	struct in_addr a;

	cr_assert_eq(rt_config_parse("t.conf", text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg.interface, "eth1");
	cr_expect_eq(cfg.timeout_ms, 250);
	cr_expect_eq(cfg.down_ms, 5000);
	cr_expect_eq(cfg.sticky_ms, 0);
	cr_expect(cfg.has_metrics);
	cr_expect_eq(cfg.metrics_port, htons(9465));
	cr_expect_str_eq(cfg.user, "r2p2-router");
	cr_expect(!cfg.seccomp);
	cr_assert_eq(cfg.num_svcs, 2);
	cr_expect_str_eq(cfg.svcs[0].name, "echo");
	inet_pton(AF_INET, "10.0.0.1", &a);
	cr_expect_eq(cfg.svcs[0].addr, a.s_addr);
	cr_expect_eq(cfg.svcs[0].port, htons(8000));
	cr_expect_eq(cfg.svcs[0].num_servers, 3);
	cr_expect_eq(cfg.svcs[0].servers[1].port, htons(8001));
	cr_expect_eq(cfg.svcs[0].servers[2].line, 14);
	cr_expect_eq(cfg.svcs[0].policy, R2P2_RT_P2C);
	cr_expect_eq(cfg.svcs[1].policy, R2P2_RT_JBSQ, "default policy");
	cr_expect_eq(cfg.svcs[1].bound, 2, "default n");
	cr_expect_eq(cfg.svcs[1].queue, 1024, "default queue");
	cr_expect_eq(cfg.svcs[1].line, 17);
}

struct bad {
	const char *text;
	const char *err; /* the whole message */
};

static const struct bad bad[] = {
    {"[daemon]\ninterface = eth1\nmetrics = localhost\n[router a]\nservice = 1.2.3.4:5\n"
     "servers = 1.2.3.5:5\n",
     "t.conf:3: [daemon] metrics: 'localhost': an IPv4 ADDR:PORT"},
    {"[daemon]\ninterface = eth1\n", "t.conf:2: no [router NAME] section: nothing to route"},
    {"[daemon]\ninterface = eth1\nuser = root/x\n",
     "t.conf:3: [daemon] user: 'root/x': a user name of at most 31 characters of A-Z a-z 0-9 _ - "
     "."},
    {"[daemon]\ninterface = eth1\nseccomp = maybe\n",
     "t.conf:3: [daemon] seccomp: 'maybe': expected yes or no"},
    {"[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\n",
     "t.conf:3: [daemon] interface is required"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4\n",
     "t.conf:5: [router a] service: '1.2.3.4': not an IPv4 address:port"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:0\n",
     "t.conf:5: [router a] service: '1.2.3.4:0': not an IPv4 address:port"},
    {GOOD_HEAD "[router a]\nservice = [::1]:5\n",
     "t.conf:5: [router a] service: '[::1]:5': not an IPv4 address:port"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5 nope:1\n",
     "t.conf:6: [router a] servers: 'nope:1': not an IPv4 address:port"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\nservers = 1.2.3.5:5\n",
     "t.conf:7: [router a] servers: '1.2.3.5:5' is listed twice (also on line 6)"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\npolicy = fastest\n",
     "t.conf:7: [router a] policy: 'fastest': expected random, rr, p2c or jbsq"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\nn = 0\n",
     "t.conf:7: [router a] n: '0': a number, 1 to 1000000"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\nqueue = 1e3\n",
     "t.conf:7: [router a] queue: '1e3': a number, 1 to 65536"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\ncolour = red\n",
     "t.conf:7: [router a] colour: unknown key (expected service, servers, policy, n, queue)"},
    {GOOD_HEAD "[router a]\nservers = 1.2.3.5:5\n",
     "t.conf:4: [router a] service: required key missing"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\n",
     "t.conf:4: [router a] servers: required key missing"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\n"
	       "[router b]\nservice = 1.2.3.4:5\nservers = 1.2.3.6:5\n",
     "t.conf:7: [router b] service: also the service of [router a]"},
    {GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers = 1.2.3.5:5\n[router a]\nn = 3\n",
     "t.conf:7: [router a]: duplicate section (first on line 4)"},
    {GOOD_HEAD "[routers]\nn = 3\n",
     "t.conf:4: unknown section [routers] (expected [daemon] or [router NAME])"},
    {"[daemon]\ninterface = a/b\n",
     "t.conf:2: [daemon] interface: an interface name of 1 to 15 characters"},
    {"[daemon]\ntimeout_ms = 5\n",
     "t.conf:2: [daemon] timeout_ms: '5': a number of milliseconds, 10 to 600000"},
    {"interface = eth1\n", "t.conf:1: interface: key outside a section"},
    {"[daemon]\ninterface = eth1\njunk\n",
     "t.conf:3: [daemon]: not a 'key = value' line or [section]"},
};

Test(router_config, errors_name_file_line_and_key)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[512] = "";

		cr_expect_eq(rt_config_parse("t.conf", bad[i].text, &cfg, err, sizeof(err)), -1,
			     "case %zu accepted", i);
		cr_expect_str_eq(err, bad[i].err, "case %zu", i);
	}
}

Test(router_config, too_many_servers)
{
	char text[2048], err[512] = "";
	int n =
	    snprintf(text, sizeof(text), GOOD_HEAD "[router a]\nservice = 1.2.3.4:5\nservers =");

	/* one line holds at most 197 characters: a long list takes several servers= lines */
	for (int i = 0; i <= R2P2_RT_SVC_SERVERS; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, " 10.0.0.%d:5%s", i + 1,
			      i == 8 ? "\nservers =" : "");
	snprintf(text + n, sizeof(text) - (size_t)n, "\n");
	cr_expect_eq(rt_config_parse("t.conf", text, &cfg, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "t.conf:7: [router a] servers: too many servers (at most 16 per "
			      "router)");
	memset(text, 'x', 300);
	snprintf(text, sizeof(text), GOOD_HEAD "[router a]\nservice = %0250d\n", 1);
	cr_expect_eq(rt_config_parse("t.conf", text, &cfg, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "t.conf:5: [router a]: line too long (at most 197 characters)");
}

Test(router_config, blank_lines_after_indented_ones)
{
	/* a blank line once measured the blanks of the line before it (fuzz_router_config) */
	const char *text = "[daemon]\n        ; indented comment\n\n   interface = eth1\n\n"
			   "[router a]\n\t\tservice = 1.2.3.4:5\n\nservers = 1.2.3.5:5\n";
	char err[512] = "";

	cr_expect_eq(rt_config_parse("t.conf", text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg.interface, "eth1");
	cr_expect_str_eq(cfg.user, "", "default: no user switch");
	cr_expect(cfg.seccomp, "default: the filter is on");
}

Test(router_config, missing_file)
{
	char err[512] = "";

	cr_expect_eq(rt_config_load("/nonexistent/router.conf", &cfg, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "/nonexistent/router.conf: No such file or directory");
}
