// SPDX-License-Identifier: MIT
/*
 * sandbox.c: dropping what set-up needed and the run time does not (see sandbox.h).
 *
 * The run time's system calls were measured with `strace -f` of the sanitized daemon
 * through the integration suite (calls, tls and sealed services, apps attaching and
 * dying, SIGHUP adding and removing ports, STEK rotation, status, drain, both backends)
 * from the control socket's listen() on. The filter allows those, with the arguments
 * narrowed where the set-up calls differ from the run time's (socket families, bpf
 * commands, clone flags, executable mappings).
 */
#include "sandbox.h"

#include <linux/bpf.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <seccomp.h>

#include "confine.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

int sandbox_drop_privs(const struct cfg *c, bool xdp, char *err, size_t err_len)
{
	/* CAP_NET_ADMIN: detaching XDP at exit and RTM_NEWNEIGH; with udp it would only
	 * buy SO_RCVBUFFORCE on ports a reload adds, and net.core.rmem_max does that. */
	static const int want[] = {CAP_NET_BIND_SERVICE, CAP_NET_ADMIN};

	return confine_drop_privs(c->user, want, xdp ? 2 : 1, err, err_len);
}

/* ---- the system call filter ----------------------------------------------------------- */

/* What the workers and the main loop call after set-up, without conditions. */
static const int allowed[] = {
    /* the workers' rings, the main loop, signals and wake-ups */
    SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(eventfd2), SCMP_SYS(poll), SCMP_SYS(ppoll),
    SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack),
    SCMP_SYS(futex), SCMP_SYS(sched_yield),
    /* files: config, STEK, certificates (reload), inotify on the STEK directories */
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
    SCMP_SYS(pwrite64), SCMP_SYS(lseek), SCMP_SYS(openat), SCMP_SYS(close), SCMP_SYS(fstat),
    SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fcntl), SCMP_SYS(inotify_init1),
    SCMP_SYS(inotify_add_watch), SCMP_SYS(inotify_rm_watch),
    /* exit: the control socket, the XDP pins */
    SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rmdir),
    /* sockets: services, apps on the control socket, sd_notify, rtnetlink */
    SCMP_SYS(bind), SCMP_SYS(connect), SCMP_SYS(accept4), SCMP_SYS(getsockname),
    SCMP_SYS(getpeername), SCMP_SYS(setsockopt), SCMP_SYS(getsockopt), SCMP_SYS(sendto),
    SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(sendmmsg),
    SCMP_SYS(recvmmsg), SCMP_SYS(shutdown),
    /* memory: allocators, app lanes (memfd), thread stacks */
    SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(memfd_create),
    SCMP_SYS(ftruncate),
    /* threads, time, identity, randomness */
    SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(sched_getaffinity),
    SCMP_SYS(sched_setaffinity), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid),
    SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
    SCMP_SYS(getrandom), SCMP_SYS(tgkill), SCMP_SYS(exit), SCMP_SYS(exit_group)};

/* The values one argument may take; any other value fails with EPERM. */
static const struct confine_arg_rule arg_rules[] = {
    /* sd_notify and apps (unix), services (inet), the XDP detach at exit (netlink);
     * no AF_PACKET nor AF_XDP once set up */
    {SCMP_SYS(socket), 0, {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}, 4},
    /* `r2p2ctl status` sums the XDP counters; nothing loads a program or makes a map */
    {SCMP_SYS(bpf),
     0,
     {BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY,
      BPF_OBJ_GET_INFO_BY_FD},
     5},
    /* pthread_setname_np */
    {SCMP_SYS(prctl), 0, {PR_SET_NAME, PR_GET_NAME}, 2},
};

int sandbox_apply(const struct cfg *c, char *err, size_t err_len)
{
	static const struct confine_filter spec = {allowed, ARRAY_SIZE(allowed), arg_rules,
						   ARRAY_SIZE(arg_rules)};

	if (!c->seccomp) {
		log_warn("seccomp = no: no system call filter");
		return 0;
	}
	return confine_apply(&spec, err, err_len);
}
