/* SPDX-License-Identifier: MIT */
/*
 * The daemon's run-time privileges (docs/OPERATIONS.md, "Privileges and the system call
 * filter"). Set-up needs root's network and BPF capabilities; what runs after it (the
 * workers, which parse network input with BoringSSL, and the main loop) does not. main
 * calls sandbox_drop_privs, then sandbox_apply, after the last set-up step (the control
 * socket) and before the workers start: every thread started afterwards inherits both.
 */
#ifndef R2P2D_SANDBOX_H
#define R2P2D_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * sandbox_drop_privs sets PR_SET_NO_NEW_PRIVS, switches to `c->user` if set (keeping the
 * capabilities across the switch), then keeps only the capabilities the run time needs:
 * CAP_NET_BIND_SERVICE (a reload may bind a port below 1024) and, when `xdp` says the
 * xdp backend is attached, CAP_NET_ADMIN (detaching the program at exit, neighbour
 * resolution through rtnetlink). Everything else leaves the effective, permitted,
 * inheritable and ambient sets, and the bounding set when CAP_SETPCAP allows. Only the
 * calling thread changes: call it before any other thread exists. Returns 0, or a
 * negative errno with a message in `err`.
 */
int sandbox_drop_privs(const struct cfg *c, bool xdp, char *err, size_t err_len);

/*
 * sandbox_apply installs the system call filter on every thread of the process unless
 * `c->seccomp` is false (then it only logs that it did not). The filter allows what the
 * workers and the main loop call after set-up, kills the process on calls only an
 * attacker makes (exec, ptrace, mount, module and kexec loading, namespaces) and fails
 * anything else with EPERM, recorded in the kernel's audit log. Irreversible. Returns 0,
 * or a negative errno with a message in `err`.
 */
int sandbox_apply(const struct cfg *c, char *err, size_t err_len);

#endif
