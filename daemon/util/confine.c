// SPDX-License-Identifier: MIT
/*
 * confine.c: dropping capabilities and installing a system call filter (see confine.h).
 * The lists of what each program keeps are its own (sandbox.c, rt_sandbox.c); what is
 * here is common to both: the user switch, the capability sets, the calls that kill,
 * the thread and memory rules and what the sanitizers need.
 */
#include "confine.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
#define CONFINE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONFINE_SANITIZED 1
#endif
#endif
#ifndef CONFINE_SANITIZED
#define CONFINE_SANITIZED 0
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
	if (CONFINE_SANITIZED)
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	return 0;
}

static bool in(const int *vals, int n, int v)
{
	for (int i = 0; i < n; i++)
		if (vals[i] == v)
			return true;
	return false;
}

/* drop_bound empties the bounding set but `keep`, if CAP_SETPCAP is ours to do it with.
 * Before the user switch: that clears the effective set. */
static void drop_bound(const int *keep, int num_keep)
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
static int keep_caps(const int *want, int num_want, char *err, size_t err_len)
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

int confine_drop_privs(const char *user, const int *keep, int num_keep, char *err, size_t err_len)
{
	int rc;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		set_err(err, err_len, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return rc;
	}
	drop_bound(keep, num_keep);
	if (user && user[0]) {
		rc = switch_user(user, err, err_len);
		if (rc < 0)
			return rc;
	}
	return keep_caps(keep, num_keep, err, err_len);
}

/* ---- the system call filter ----------------------------------------------------------- */

/* What only the leak check of sanitized builds calls (see CONFINE_SANITIZED). */
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

static int add_all(scmp_filter_ctx f, uint32_t action, const int *nrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = seccomp_rule_add(f, action, nrs[i], 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int add_arg_rules(scmp_filter_ctx f, const struct confine_filter *spec)
{
	for (size_t i = 0; i < spec->num_arg_rules; i++) {
		const struct confine_arg_rule *r = &spec->arg_rules[i];

		if (CONFINE_SANITIZED && r->nr == SCMP_SYS(prctl))
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

	if (rc == 0 && !CONFINE_SANITIZED)
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
static int build_filter(scmp_filter_ctx f, const struct confine_filter *spec)
{
	int rc;

	/* Every thread, and each refusal in the audit log (dmesg: "audit: type=1326"). */
	rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_LOG, 1);
	if (rc == 0)
		rc = add_all(f, SCMP_ACT_ALLOW, spec->allowed, spec->num_allowed);
	if (rc == 0 && CONFINE_SANITIZED)
		rc = add_all(f, SCMP_ACT_ALLOW, allowed_sanitized, ARRAY_SIZE(allowed_sanitized));
	if (rc == 0)
		rc = add_all(f, SCMP_ACT_KILL_PROCESS, killed, ARRAY_SIZE(killed));
	if (rc == 0 && !CONFINE_SANITIZED)
		rc = seccomp_rule_add(f, SCMP_ACT_KILL_PROCESS, SCMP_SYS(ptrace), 0);
	if (rc == 0)
		rc = add_arg_rules(f, spec);
	if (rc == 0)
		rc = add_thread_rules(f);
	return rc;
}

int confine_apply(const struct confine_filter *spec, char *err, size_t err_len)
{
	scmp_filter_ctx f;
	int rc;

	/*
	 * Anything not listed fails with EPERM rather than killing the process: a call
	 * missing from the list (a rare error path of glibc, libbpf or BoringSSL) then
	 * costs one failed operation, which every caller handles, instead of the whole
	 * service. An attacker gains nothing from EPERM; the calls that serve only an
	 * attack (`killed`) end the process.
	 */
	f = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (!f) {
		set_err(err, err_len, "seccomp: cannot create the filter");
		return -ENOMEM;
	}
	rc = build_filter(f, spec);
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
