// SPDX-License-Identifier: MIT
/*
 * test_seccomp: the system call filters of the daemon (daemon/control/sandbox.c) and of
 * r2p2-router (daemon/router/rt_sandbox.c), installed in child processes: what the run
 * time calls works (threads included), what only an attacker calls kills the process
 * with SIGSYS, anything else fails with EPERM.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "router.h"
#include "sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int failures;

static void check(bool ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAILED", what);
	failures += !ok;
}

static void *thread_main(void *arg)
{
	return arg;
}

static bool router_filter; /* which filter `sandboxed` installs */

/* enter installs the daemon's filter, or the router's (which drops capabilities first). */
static int enter(char *err, size_t err_len)
{
	struct rt_config rc = {.seccomp = true};
	struct cfg c;

	if (router_filter)
		return rt_sandbox_enter(&rc, err, err_len);
	cfg_defaults(&c);
	return sandbox_apply(&c, err, err_len);
}

/* sandboxed runs `fn` in a child under the filter; returns the child's wait status. */
static int sandboxed(int (*fn)(void))
{
	char err[256];
	int status = 0;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (enter(err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			_exit(100);
		}
		_exit(fn());
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return status;
}

/* Each returns 0 when the calls behaved, or the number of the first that did not. */
static int allowed_calls(void)
{
	pthread_t t;
	void *ret = NULL;
	int fd;

	if (getpid() <= 0 || write(STDOUT_FILENO, "", 0) != 0)
		return 1;
	static int token;

	if (pthread_create(&t, NULL, thread_main, &token) != 0 || pthread_join(t, &ret) != 0 ||
	    ret != &token)
		return 2;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 3;
	close(fd);
	return 0;
}

static int refused_calls(void)
{
	void *p;
	char buf[64];

	errno = 0;
	if (syscall(SYS_getcwd, buf, sizeof(buf)) != -1 || errno != EPERM)
		return 1;
	errno = 0;
	if (socket(AF_PACKET, SOCK_RAW, 0) != -1 || errno != EPERM)
		return 2;
	p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED || errno != EPERM)
		return 3;
	/* a new process (clone without CLONE_THREAD); the leak check of sanitized builds
	 * needs one, so they allow it */
	if (!SANITIZED && (syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) != -1 || errno != EPERM))
		return 4;
	return 0;
}

/* What the router refuses and the daemon allows: no program loads, pins or AF_INET6. */
static int router_refused_calls(void)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	errno = 0;
	if (syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr)) != -1 || errno != EPERM)
		return 1;
	errno = 0;
	if (syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof(attr)) != -1 || errno != EPERM)
		return 2;
	errno = 0;
	if (socket(AF_INET6, SOCK_DGRAM, 0) != -1 || errno != EPERM)
		return 3;
	return 0;
}

static int mount_call(void)
{
	syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL);
	return 1; /* not reached */
}

static int exec_call(void)
{
	char *const argv[] = {"/bin/true", NULL};

	execv(argv[0], argv);
	return 1; /* not reached */
}

static bool killed_by_sigsys(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

/* run_all checks the filter `router_filter` names. */
static void run_all(const char *who)
{
	char what[160];
	int st;

	st = sandboxed(allowed_calls);
	snprintf(what, sizeof(what),
		 "%s: getpid, write, a thread and an AF_INET socket work under the filter", who);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, what);
	st = sandboxed(refused_calls);
	snprintf(what, sizeof(what),
		 "%s: getcwd, AF_PACKET, executable memory and fork fail with EPERM", who);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, what);
	if (WIFEXITED(st) && WEXITSTATUS(st))
		printf("  refused_calls: check %d\n", WEXITSTATUS(st));
	snprintf(what, sizeof(what), "%s: mount kills the process with SIGSYS", who);
	check(killed_by_sigsys(sandboxed(mount_call)), what);
	snprintf(what, sizeof(what), "%s: execve kills the process with SIGSYS", who);
	check(killed_by_sigsys(sandboxed(exec_call)), what);
}

int main(void)
{
	int st;

	run_all("r2p2d");
	router_filter = true;
	run_all("r2p2-router");
	st = sandboxed(router_refused_calls);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "r2p2-router: BPF_PROG_LOAD, BPF_OBJ_GET and AF_INET6 fail with EPERM");
	if (WIFEXITED(st) && WEXITSTATUS(st))
		printf("  router_refused_calls: check %d\n", WEXITSTATUS(st));
	printf("%s\n", failures ? "FAIL: test_seccomp" : "PASS: test_seccomp");
	return failures ? 1 : 0;
}
