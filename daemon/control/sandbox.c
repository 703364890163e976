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

#include <errno.h>
#include <grp.h>
#include <linux/bpf.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * AddressSanitizer's leak check at exit clones a tracer (a process sharing our memory,
 * without CLONE_THREAD) that ptraces every thread, reads /proc/self/task and waits for
 * them (with the legacy open(2) and stat(2)). The sanitized builds the tests run allow that too;
 * production builds do not.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif
#ifndef SANDBOX_SANITIZED
#define SANDBOX_SANITIZED 0
#endif

/* ---- capabilities ------------------------------------------------------------------ */

/* switch_user becomes `name` (uid, gid, its groups) and keeps the permitted set. */
static int switch_user(const char *name, char *err, size_t err_len)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (!res) {
		set_err(err, err_len, "user = %s: %s", name, rc ? strerror(rc) : "no such user");
		return rc ? -rc : -ENOENT;
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || initgroups(name, pw.pw_gid) < 0 ||
	    setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) < 0 ||
	    setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) < 0) {
		rc = -errno;
		set_err(err, err_len, "user = %s: cannot switch to uid %u: %s", name,
			(unsigned)pw.pw_uid, strerror(errno));
		return rc;
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* The leak check's tracer must ptrace us; the switch made the process undumpable. */
	if (SANDBOX_SANITIZED)
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	return 0;
}

static bool in(const cap_value_t *vals, int n, cap_value_t v)
{
	for (int i = 0; i < n; i++)
		if (vals[i] == v)
			return true;
	return false;
}

/* drop_bound empties the bounding set but `keep`, if CAP_SETPCAP is ours to do it with.
 * Before the user switch: that clears the effective set. */
static void drop_bound(const cap_value_t *keep, int num_keep)
{
	cap_flag_value_t have = CAP_CLEAR;
	cap_t cur = cap_get_proc();

	if (cur && cap_get_flag(cur, CAP_SETPCAP, CAP_EFFECTIVE, &have) == 0 && have == CAP_SET)
		for (cap_value_t v = 0; v < (cap_value_t)cap_max_bits(); v++)
			if (!in(keep, num_keep, v))
				cap_drop_bound(v);
	/* else e.g. systemd's CapabilityBoundingSet= already limits it */
	cap_free(cur);
}

/* keep_caps sets the permitted and effective sets to `want` ∩ what we have, and
 * clears the inheritable and ambient sets. */
static int keep_caps(const cap_value_t *want, int num_want, char *err, size_t err_len)
{
	cap_t cur = cap_get_proc(), next = cap_init();
	cap_value_t keep[8];
	int n = 0, rc = 0;
	char *text;

	if (!cur || !next)
		goto fail;
	for (int i = 0; i < num_want && n < (int)ARRAY_SIZE(keep); i++) {
		cap_flag_value_t have = CAP_CLEAR;

		if (cap_get_flag(cur, want[i], CAP_PERMITTED, &have) == 0 && have == CAP_SET)
			keep[n++] = want[i];
	}
	if (n && (cap_set_flag(next, CAP_PERMITTED, n, keep, CAP_SET) < 0 ||
		  cap_set_flag(next, CAP_EFFECTIVE, n, keep, CAP_SET) < 0))
		goto fail;
	cap_reset_ambient();
	if (cap_set_proc(next) < 0)
		goto fail;
	text = cap_to_text(next, NULL);
	log_info("privileges: uid %u, capabilities kept: %s", (unsigned)geteuid(),
		 n && text ? text : "none");
	cap_free(text);
	goto out;
fail:
	rc = errno ? -errno : -EPERM;
	set_err(err, err_len, "dropping capabilities: %s", strerror(-rc));
out:
	cap_free(cur);
	cap_free(next);
	return rc;
}

int sandbox_drop_privs(const struct cfg *c, bool xdp, char *err, size_t err_len)
{
	/* CAP_NET_ADMIN: detaching XDP at exit and RTM_NEWNEIGH; with udp it would only
	 * buy SO_RCVBUFFORCE on ports a reload adds, and net.core.rmem_max does that. */
	const cap_value_t want[] = {CAP_NET_BIND_SERVICE, CAP_NET_ADMIN};
	int rc;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		set_err(err, err_len, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return rc;
	}
	drop_bound(want, xdp ? 2 : 1);
	if (c->user[0]) {
		rc = switch_user(c->user, err, err_len);
		if (rc < 0)
			return rc;
	}
	return keep_caps(want, xdp ? 2 : 1, err, err_len);
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

/* What only the leak check of sanitized builds calls (see SANDBOX_SANITIZED). */
static const int allowed_sanitized[] = {
    SCMP_SYS(clone),	  SCMP_SYS(ptrace),	SCMP_SYS(wait4), SCMP_SYS(getppid),
    SCMP_SYS(getdents64), SCMP_SYS(getdents),	SCMP_SYS(kill),	 SCMP_SYS(dup2),
    SCMP_SYS(open),	  SCMP_SYS(stat),	SCMP_SYS(lstat), SCMP_SYS(access),
    SCMP_SYS(readlink),	  SCMP_SYS(readlinkat), SCMP_SYS(prctl)};

/* What only an attacker calls after set-up: the process dies on the spot. */
static const int killed[] = {SCMP_SYS(execve),
			     SCMP_SYS(execveat),
			     SCMP_SYS(process_vm_readv),
			     SCMP_SYS(process_vm_writev),
			     SCMP_SYS(mount),
			     SCMP_SYS(umount2),
			     SCMP_SYS(pivot_root),
			     SCMP_SYS(chroot),
			     SCMP_SYS(kexec_load),
			     SCMP_SYS(kexec_file_load),
			     SCMP_SYS(init_module),
			     SCMP_SYS(finit_module),
			     SCMP_SYS(delete_module),
			     SCMP_SYS(setns),
			     SCMP_SYS(unshare),
			     SCMP_SYS(open_by_handle_at),
			     SCMP_SYS(userfaultfd),
			     SCMP_SYS(keyctl),
			     SCMP_SYS(add_key),
			     SCMP_SYS(request_key),
			     SCMP_SYS(reboot),
			     SCMP_SYS(setuid),
			     SCMP_SYS(setgid),
			     SCMP_SYS(setreuid),
			     SCMP_SYS(setregid),
			     SCMP_SYS(setresuid),
			     SCMP_SYS(setresgid),
			     SCMP_SYS(setgroups),
			     SCMP_SYS(capset)};

/* The values one argument may take; any other value fails with EPERM. */
struct arg_rule {
	int nr;
	unsigned arg;
	uint64_t vals[5];
	unsigned num_vals;
};

static const struct arg_rule arg_rules[] = {
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

static int add_all(scmp_filter_ctx f, uint32_t action, const int *nrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = seccomp_rule_add(f, action, nrs[i], 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int add_arg_rules(scmp_filter_ctx f)
{
	for (size_t i = 0; i < ARRAY_SIZE(arg_rules); i++) {
		const struct arg_rule *r = &arg_rules[i];

		if (SANDBOX_SANITIZED && r->nr == SCMP_SYS(prctl))
			continue; /* allowed whole (allowed_sanitized) */
		for (unsigned v = 0; v < r->num_vals; v++) {
			struct scmp_arg_cmp eq = {
			    .arg = r->arg, .op = SCMP_CMP_EQ, .datum_a = r->vals[v], .datum_b = 0};
			int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, r->nr, 1, eq);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/*
 * add_thread_rules: threads, but no processes (clone without CLONE_THREAD) and no
 * executable memory. glibc tries clone3 first, whose flags a filter cannot read: ENOSYS
 * sends it to clone, whose flags it can.
 */
static int add_thread_rules(scmp_filter_ctx f)
{
	int rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);

	if (rc == 0 && !SANDBOX_SANITIZED)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	return rc;
}

/* build_filter fills `f` with the rules above; returns 0 or libseccomp's negative errno. */
static int build_filter(scmp_filter_ctx f)
{
	int rc;

	/* Every thread, and each refusal in the audit log (dmesg: "audit: type=1326"). */
	rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_LOG, 1);
	if (rc == 0)
		rc = add_all(f, SCMP_ACT_ALLOW, allowed, ARRAY_SIZE(allowed));
	if (rc == 0 && SANDBOX_SANITIZED)
		rc = add_all(f, SCMP_ACT_ALLOW, allowed_sanitized, ARRAY_SIZE(allowed_sanitized));
	if (rc == 0)
		rc = add_all(f, SCMP_ACT_KILL_PROCESS, killed, ARRAY_SIZE(killed));
	if (rc == 0 && !SANDBOX_SANITIZED)
		rc = seccomp_rule_add(f, SCMP_ACT_KILL_PROCESS, SCMP_SYS(ptrace), 0);
	if (rc == 0)
		rc = add_arg_rules(f);
	if (rc == 0)
		rc = add_thread_rules(f);
	return rc;
}

int sandbox_apply(const struct cfg *c, char *err, size_t err_len)
{
	scmp_filter_ctx f;
	int rc;

	if (!c->seccomp) {
		log_warn("seccomp = no: no system call filter");
		return 0;
	}
	/*
	 * Anything not listed fails with EPERM rather than killing the process: a call
	 * missing from the list (a rare error path of glibc, libbpf or BoringSSL) then
	 * costs one failed operation, which every caller handles, instead of every
	 * in-flight RPC of every app. An attacker gains nothing from EPERM; the calls that
	 * serve only an attack (`killed`) end the process.
	 */
	f = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (!f) {
		set_err(err, err_len, "seccomp: cannot create the filter");
		return -ENOMEM;
	}
	rc = build_filter(f);
	if (rc == 0)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc < 0) {
		set_err(err, err_len,
			"seccomp: cannot install the filter: %s (seccomp = no "
			"turns it off)",
			strerror(-rc));
		return rc;
	}
	log_info("seccomp: system call filter installed");
	return 0;
}
