// SPDX-License-Identifier: MIT
/*
 * notify_listen: stands in for systemd's notification socket (sd_notify(3)), so
 * that tests can see what r2p2d tells its service manager without systemd.
 *
 *   notify_listen PATH TIMEOUT_MS [LAST]
 *
 * Binds an AF_UNIX datagram socket at PATH (replacing a stale file) and prints
 * each datagram as one line, "pid PID: TEXT", PID being the sender's from
 * SCM_CREDENTIALS (0 if it sent none) and the newlines of TEXT turned into
 * spaces. Exits 0 after TIMEOUT_MS, or as soon as a datagram holds the line LAST
 * (e.g. STOPPING=1); removes PATH on exit. Exit status 1 on a set-up error, 2 on
 * a usage error. The socket file exists once the socket is bound: a caller can
 * wait for it before starting the notifier.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* has_line tells whether `text` (`len` bytes, newline-separated) holds the line `line`. */
static int has_line(const char *text, size_t len, const char *line)
{
	size_t line_len = strlen(line), i = 0;

	while (i < len) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - text) : len;

		if (end - i == line_len && memcmp(text + i, line, line_len) == 0)
			return 1;
		i = end + 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path, *last = NULL;
	uint64_t deadline;
	char *end;
	int fd, one = 1, ret = 1;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: notify_listen PATH TIMEOUT_MS [LAST]\n");
		return 2;
	}
	path = argv[1];
	deadline = strtoull(argv[2], &end, 10);
	if (end == argv[2] || *end || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "notify_listen: bad timeout '%s' or path too long\n", argv[2]);
		return 2;
	}
	deadline += now_ms();
	if (argc == 4)
		last = argv[3];
	memcpy(sa.sun_path, path, strlen(path) + 1);

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "notify_listen: socket: %s\n", strerror(errno));
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "notify_listen: bind %s: %s\n", path, strerror(errno));
		goto out;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (;;) {
		uint64_t now = now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char text[4096];
		union {
			char buf[CMSG_SPACE(sizeof(struct ucred))];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = {.iov_base = text, .iov_len = sizeof(text) - 1};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf.buf,
				    .msg_controllen = sizeof(cbuf.buf)};
		pid_t pid = 0;
		ssize_t n;
		int r;

		if (now >= deadline)
			break;
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r < 0 && errno != EINTR) {
			fprintf(stderr, "notify_listen: poll: %s\n", strerror(errno));
			goto out;
		}
		if (r <= 0)
			continue;
		n = recvmsg(fd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fprintf(stderr, "notify_listen: recvmsg: %s\n", strerror(errno));
			goto out;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
				struct ucred cred;

				memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
				pid = cred.pid;
			}
		}
		int stop = last && has_line(text, (size_t)n, last);

		while (n > 0 && text[n - 1] == '\n')
			n--;
		for (ssize_t i = 0; i < n; i++)
			if (text[i] == '\n' || text[i] == '\0')
				text[i] = ' ';
		text[n] = '\0';
		printf("pid %d: %s\n", (int)pid, text);
		if (stop)
			break;
	}
	ret = 0;
out:
	close(fd);
	unlink(path);
	return ret;
}
