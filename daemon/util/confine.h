/* SPDX-License-Identifier: MIT */
/*
 * confine: giving up, after set-up, what only set-up needed. Shared by r2p2d
 * (daemon/control/sandbox.c) and r2p2-router (daemon/router/rt_sandbox.c): each says
 * which capabilities and system calls its run time keeps, this does the dropping and
 * builds the filter (docs/OPERATIONS.md, "Privileges and the system call filter").
 */
#ifndef R2P2D_CONFINE_H
#define R2P2D_CONFINE_H

#include <stddef.h>
#include <stdint.h>

/*
 * confine_drop_privs sets PR_SET_NO_NEW_PRIVS, switches to `user` unless it is "" (uid,
 * gid and the user's groups, keeping the capabilities across the switch), then keeps
 * only the capabilities in `keep` (CAP_* values) that the process holds. Everything else
 * leaves the effective, permitted, inheritable and ambient sets, and the bounding set
 * when CAP_SETPCAP allows. Logs "privileges: uid N, capabilities kept: ...". Only the
 * calling thread's capabilities change: call it before any other thread exists.
 * Returns 0, or a negative errno with a message in `err`.
 */
int confine_drop_privs(const char *user, const int *keep, int num_keep, char *err, size_t err_len);

/* One argument rule: system call `nr` is allowed when argument `arg` is one of `vals`. */
struct confine_arg_rule {
	int nr;
	unsigned arg;
	uint64_t vals[6];
	unsigned num_vals;
};

/* A program's run-time system calls: allowed whole, or with one argument narrowed. */
struct confine_filter {
	const int *allowed;
	size_t num_allowed;
	const struct confine_arg_rule *arg_rules;
	size_t num_arg_rules;
};

/*
 * confine_apply installs on every thread of the process a filter that allows what `f`
 * lists, threads (clone with CLONE_THREAD; clone3 fails with ENOSYS so that glibc falls
 * back to clone) and memory without PROT_EXEC; kills the process on calls only an
 * attacker makes (exec, ptrace, mount, module and kexec loading, namespaces, uid and
 * capability changes) and fails anything else with EPERM, recorded in the kernel's
 * audit log. Sanitized builds also allow what AddressSanitizer's leak check calls at
 * exit. Irreversible. Returns 0, or a negative errno with a message in `err`.
 */
int confine_apply(const struct confine_filter *f, char *err, size_t err_len);

#endif
