// SPDX-License-Identifier: MIT
/*
 * xdp_attach: attaches the XDP program to one interface through daemon/net/xdp.c, prints
 * "attached IFNAME MODE PIN_DIR", waits for SIGTERM or SIGINT, prints the summed
 * counters and detaches (unpinning everything). Used by it_bpftool.sh.
 *
 *   xdp_attach [-m native|skb] [-s SOCKETS_PER_QUEUE] IFNAME PORT [PORT...]
 *
 * Exit status: 0, 1 when attaching failed (the reason on stderr), 2 on usage errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xdp.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xdp_attach [-m native|skb] [-s SOCKETS_PER_QUEUE] IFNAME PORT...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint16_t ports[R2P2_MAX_PORTS];
	struct sigaction sa;
	struct r2p2_stats st;
	struct xdp_prog *prog;
	int mode = XDP_ATTACH_NATIVE, opt, rc, i, n = 0;
	unsigned socks = 1;
	char err[256];
	sigset_t mask, old;

	while ((opt = getopt(argc, argv, "m:s:")) != -1) {
		switch (opt) {
		case 'm':
			if (!strcmp(optarg, "native"))
				mode = XDP_ATTACH_NATIVE;
			else if (!strcmp(optarg, "skb"))
				mode = XDP_ATTACH_SKB;
			else
				usage();
			break;
		case 's':
			socks = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2 || argc - optind - 1 > R2P2_MAX_PORTS)
		usage();
	for (i = optind + 1; i < argc; i++) {
		char *end;
		unsigned long p = strtoul(argv[i], &end, 10);

		if (*end || p == 0 || p > 65535)
			usage();
		ports[n++] = (uint16_t)p;
	}

	/* Block the signals until sigsuspend, so one arriving early is not lost. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, &old);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	rc = xdp_open(argv[optind], mode, ports, (size_t)n, socks, &prog, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "xdp_attach: %s\n", err);
		return 1;
	}
	printf("attached %s %s %s\n", argv[optind], mode == XDP_ATTACH_SKB ? "skb" : "native",
	       xdp_pin_dir(prog));
	fflush(stdout);
	while (!stop)
		sigsuspend(&old);

	if (xdp_stats_sum(prog, &st) == 0)
		printf("steered %llu no_socket %llu dropped_malformed %llu passed_not_r2p2 %llu "
		       "passed_fragment %llu passed_ipv6_ext %llu passed_runt %llu\n",
		       (unsigned long long)st.steered, (unsigned long long)st.no_socket,
		       (unsigned long long)st.dropped_malformed,
		       (unsigned long long)st.passed_not_r2p2,
		       (unsigned long long)st.passed_fragment,
		       (unsigned long long)st.passed_ipv6_ext, (unsigned long long)st.passed_runt);
	xdp_close(prog);
	printf("detached %s\n", argv[optind]);
	return 0;
}
