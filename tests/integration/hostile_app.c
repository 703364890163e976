// SPDX-License-Identifier: MIT
/*
 * hostile_app: attaches to r2p2d like libr2p2 does, then breaks the ring ABI in
 * one of several ways, to prove that the daemon detaches it and keeps serving
 * everyone else. It speaks the control protocol by hand (include/r2p2/shm.h) so
 * it can write what libr2p2 never would.
 *
 *   hostile_app SOCKET MODE
 *   MODE: tail    sq_tail far beyond sq_head + sq_entries
 *         offset  an SQE whose payload lies outside the arena
 *         length  an SQE longer than max_msg_len
 *         name    a CALL whose service name has no NUL
 *         op      an unknown opcode, then a RESPOND to a handle it was never given
 *         cqhead  a cq_head that runs ahead of the daemon's cq_tail
 * Exit 0 once the daemon closed the connection (it detached us), 1 if it did not
 * within 5 s (or for errors).
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <r2p2/shm.h>

static int attach(const char *path, int *fds, size_t max_fds, size_t *num_fds)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct r2p2_ctl_msg m = {
	    .magic = R2P2_CTL_MAGIC, .version = R2P2_CTL_VERSION, .type = R2P2_CTL_ATTACH};
	char buf[R2P2_CTL_MAX_MSG];
	union {
		char b[CMSG_SPACE(sizeof(int) * (1 + 2 * R2P2_MAX_LANES))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf.b,
			     .msg_controllen = sizeof(cbuf.b)};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, &m, sizeof(m), 0) != sizeof(m) || recvmsg(fd, &msg, 0) < (ssize_t)sizeof(m)) {
		perror("hostile_app: attach");
		exit(1);
	}
	memcpy(&m, buf, sizeof(m));
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (m.type != R2P2_CTL_ATTACH_OK || !cm || cm->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "hostile_app: attach refused\n");
		exit(1);
	}
	*num_fds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	if (*num_fds > max_fds)
		*num_fds = max_fds;
	memcpy(fds, CMSG_DATA(cm), *num_fds * sizeof(int));
	return fd;
}

int main(int argc, char **argv)
{
	int fds[1 + 2 * R2P2_MAX_LANES];
	size_t num_fds;
	struct stat st;
	uint64_t one = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: hostile_app SOCKET tail|offset|length|name|op|cqhead\n");
		return 2;
	}
	int sock = attach(argv[1], fds, sizeof(fds) / sizeof(fds[0]), &num_fds);
	if (num_fds < 3 || fstat(fds[0], &st) < 0) {
		fprintf(stderr, "hostile_app: bad attach reply\n");
		return 1;
	}
	uint8_t *map =
	    mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (map == MAP_FAILED) {
		perror("hostile_app: mmap");
		return 1;
	}
	struct r2p2_shm_hdr h;
	memcpy(&h, map, sizeof(h));
	struct r2p2_lane_ctrl *ctrl = (struct r2p2_lane_ctrl *)(map + h.lane_offset);
	struct r2p2_sqe *sq = (struct r2p2_sqe *)((uint8_t *)ctrl + r2p2_lane_sq_off());
	const char *mode = argv[2];
	struct r2p2_sqe e = {.op = R2P2_SQ_CALL, .user_data = 1};

	snprintf(e.service, sizeof(e.service), "echo.svc");
	if (strcmp(mode, "tail") == 0) {
		r2p2_store_release(&ctrl->sq_tail, h.sq_entries * 4 + 7);
	} else if (strcmp(mode, "cqhead") == 0) {
		r2p2_store_release(&ctrl->cq_head, 12345);
		/* a valid call, so the daemon has a completion to post and reads cq_head */
		e.len = 4;
		sq[0] = e;
		r2p2_store_release(&ctrl->sq_tail, 1);
	} else {
		if (strcmp(mode, "offset") == 0) {
			e.off = h.arena_size - 2;
			e.len = 64;
		} else if (strcmp(mode, "length") == 0) {
			e.len = h.max_msg_len + 1;
		} else if (strcmp(mode, "name") == 0) {
			memset(e.service, 'x', sizeof(e.service));
		} else if (strcmp(mode, "op") == 0) {
			e.op = 0x7f;
			sq[1] = (struct r2p2_sqe){.op = R2P2_SQ_RESPOND, .user_data = 0xdeadbeef};
		} else {
			fprintf(stderr, "hostile_app: unknown mode %s\n", mode);
			return 2;
		}
		sq[0] = e;
		r2p2_store_release(&ctrl->sq_tail, strcmp(mode, "op") == 0 ? 2 : 1);
	}
	if (write(fds[1], &one, sizeof(one)) != sizeof(one))
		perror("hostile_app: doorbell");

	/* Misbehaviour that is only an error (not an ABI break) must not detach us: the
	 * daemon answers with error completions instead. */
	bool want_detach =
	    strcmp(mode, "tail") == 0 || strcmp(mode, "offset") == 0 || strcmp(mode, "cqhead") == 0;
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int r = poll(&p, 1, 3000);
	char b[256];
	bool detached = r > 0 && recv(sock, b, sizeof(b), MSG_DONTWAIT) <= 0;
	if (!want_detach) {
		uint32_t tail = r2p2_load_acquire(&ctrl->cq_tail);
		struct r2p2_cqe *cq = (struct r2p2_cqe *)((uint8_t *)ctrl + r2p2_lane_cq_off(&h));
		printf("hostile_app %s: %s, %u completion(s), first status %d\n", mode,
		       detached ? "detached" : "still attached", tail, tail ? cq[0].status : 0);
		return !detached && tail >= 1 && cq[0].status < 0 ? 0 : 1;
	}
	printf("hostile_app %s: %s\n", mode, detached ? "detached by the daemon" : "NOT detached");
	return detached ? 0 : 1;
}
