// SPDX-License-Identifier: MIT
/*
 * txcsum_off IFNAME: turns transmit checksum offload off on IFNAME (what `ethtool -K
 * IFNAME tx off` does, for machines without ethtool). it_router.sh needs it on the veths
 * that send requests to the router: with offload on, a veth hands over a UDP checksum
 * that covers only the pseudo-header (CHECKSUM_PARTIAL), which XDP cannot see; a frame
 * the router rewrites and sends back with XDP_TX then arrives with a bad checksum. Frames
 * from a real wire carry complete checksums.
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct ethtool_value ev = {.cmd = ETHTOOL_STXCSUM, .data = 0};
	struct ifreq ifr = {0};
	int fd;

	if (argc != 2 || strlen(argv[1]) >= IFNAMSIZ) {
		fprintf(stderr, "usage: txcsum_off IFNAME\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("txcsum_off: socket");
		return 1;
	}
	memcpy(ifr.ifr_name, argv[1], strlen(argv[1]) + 1);
	ifr.ifr_data = (void *)&ev;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
		fprintf(stderr, "txcsum_off: %s: %s\n", argv[1], strerror(errno));
		close(fd);
		return 1;
	}
	close(fd);
	return 0;
}
