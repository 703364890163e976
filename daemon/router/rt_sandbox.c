// SPDX-License-Identifier: MIT
/*
 * rt_sandbox.c: r2p2-router's run-time privileges (docs/OPERATIONS.md, "Router",
 * "Privileges"). Set-up loads and attaches the XDP program, pins its maps, opens the
 * slow path's raw socket and binds the service and metrics ports. What runs afterwards
 * parses packets from the network (the slow path, neighbour messages) and HTTP requests
 * (the metrics), and needs little: serve() calls rt_sandbox_enter once set-up is done
 * and before the metrics thread starts, and every later thread inherits it.
 *
 * The capabilities kept, and why no other is needed:
 *   CAP_NET_ADMIN         detaching the program at SIGTERM (an rtnetlink request), and
 *                         asking the kernel to resolve a new server's next hop
 *                         (RTM_NEWNEIGH; without it neigh.c falls back to a datagram)
 *   CAP_NET_BIND_SERVICE  a reload may add a [router] whose service port is below 1024
 * Map lookups and updates (fleet, slow path, metrics) go through the descriptors the
 * router already holds, which the kernel allows without CAP_BPF; a reload only re-reads
 * the file and updates those maps (what needs a new attach, the interface, needs a
 * restart). The raw socket sends without CAP_NET_RAW once open. Unpinning at exit needs
 * write access to the pin directories only, and no capability: set-up gives them to the
 * uid the router runs as afterwards (router.c, set_pin_owner), and unpin_all reaches
 * them through descriptors opened at set-up. Unpinning before the drop is no option:
 * --status, r2p2ctl router and bpftool read the pins while the router runs.
 *
 * The system calls were measured with `strace -f` of the sanitized router, with
 * `seccomp = no`, through it_router (calls on the fast and the slow path, SIGHUP
 * reloads changing and removing servers, a refused reload, a server killed and put
 * back, --status, GET /metrics, SIGTERM) from the drop on; the reload that adds a
 * service (socket, setsockopt, bind) is it_router_privileges', run under the filter.
 */
#include "router.h"

#include <linux/bpf.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <seccomp.h>

#include "confine.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* What the main loop and the metrics thread call after set-up, without conditions. */
static const int allowed[] = {
    /* the loop (poll, signalfd), the metrics thread (select) and its stop (shutdown) */
    SCMP_SYS(poll), SCMP_SYS(pselect6), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack), SCMP_SYS(futex), SCMP_SYS(sched_yield),
    /* files: the config on SIGHUP, the CPU count and time zone of a scrape, the log */
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(lseek), SCMP_SYS(openat), SCMP_SYS(close),
    SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(fcntl),
    /* exit: the pins, through the directories' descriptors (router.c, unpin_all) */
    SCMP_SYS(unlinkat), SCMP_SYS(rmdir),
    /* sockets: the slow path, services a reload adds, rtnetlink, sd_notify, metrics */
    SCMP_SYS(bind), SCMP_SYS(connect), SCMP_SYS(accept4), SCMP_SYS(getsockname),
    SCMP_SYS(setsockopt), SCMP_SYS(getsockopt), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
    SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(shutdown),
    /* memory, threads, time, identity */
    SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq), SCMP_SYS(sched_getaffinity), SCMP_SYS(getpid), SCMP_SYS(gettid),
    SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(tgkill),
    SCMP_SYS(exit), SCMP_SYS(exit_group)};

/* The values one argument may take; any other value fails with EPERM. */
static const struct confine_arg_rule arg_rules[] = {
    /* services a reload adds and the neighbour fallback (inet), rtnetlink (the detach,
     * neighbours), sd_notify (unix); no raw, packet or XDP socket once set up */
    {SCMP_SYS(socket), 0, {AF_UNIX, AF_INET, AF_NETLINK}, 3},
    /* the maps, through the descriptors held: nothing loads a program, makes a map,
     * opens a pin or gets a descriptor by id */
    {SCMP_SYS(bpf),
     0,
     {BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY,
      BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_AND_DELETE_ELEM},
     6},
    /* pthread_setname_np (libmicrohttpd's thread) */
    {SCMP_SYS(prctl), 0, {PR_SET_NAME, PR_GET_NAME}, 2},
    /* isatty() of stdio on a terminal */
    {SCMP_SYS(ioctl), 1, {TCGETS}, 1},
};

int rt_sandbox_enter(const struct rt_config *c, char *err, size_t err_len)
{
	static const int keep[] = {CAP_NET_ADMIN, CAP_NET_BIND_SERVICE};
	static const struct confine_filter spec = {allowed, ARRAY_SIZE(allowed), arg_rules,
						   ARRAY_SIZE(arg_rules)};
	int rc = confine_drop_privs(c->user, keep, (int)ARRAY_SIZE(keep), err, err_len);

	if (rc < 0)
		return rc;
	if (!c->seccomp) {
		log_warn("seccomp = no: no system call filter");
		return 0;
	}
	return confine_apply(&spec, err, err_len);
}
