/* SPDX-License-Identifier: MIT */
/*
 * xsk_frame.c: the Ethernet/VLAN/IPv4/IPv6/UDP framing of AF_XDP ports (see xsk.h):
 * checksums, parsing a received frame with a bounds-checked cursor, and building a
 * frame to send. Pure code: no sockets, no state.
 */
#include "xsk.h"

#include <errno.h>
#include <string.h>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/socket.h>

uint64_t xsk_csum_partial(const void *p, size_t len, uint64_t sum)
{
	/* Ones'-complement sums do not depend on byte order as long as the words are
	 * read and the result stored in the same order: sum native 32-bit words and
	 * let the caller memcpy the folded result back. */
	const uint8_t *b = p;
	while (len >= 4) {
		uint32_t w;
		memcpy(&w, b, 4);
		sum += w;
		b += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t w;
		memcpy(&w, b, 2);
		sum += w;
		b += 2;
		len -= 2;
	}
	if (len) {
		uint8_t t[2] = {b[0], 0};
		uint16_t w;
		memcpy(&w, t, 2);
		sum += w;
	}
	return sum;
}

uint16_t xsk_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint64_t pseudo_sum(uint16_t family, const uint8_t *saddr, const uint8_t *daddr,
			   uint32_t udp_len)
{
	uint8_t ph[40];
	if (family == AF_INET) {
		memcpy(ph, saddr, 4);
		memcpy(ph + 4, daddr, 4);
		ph[8] = 0;
		ph[9] = IPPROTO_UDP;
		ph[10] = (uint8_t)(udp_len >> 8);
		ph[11] = (uint8_t)udp_len;
		return xsk_csum_partial(ph, 12, 0);
	}
	memcpy(ph, saddr, 16);
	memcpy(ph + 16, daddr, 16);
	ph[32] = (uint8_t)(udp_len >> 24);
	ph[33] = (uint8_t)(udp_len >> 16);
	ph[34] = (uint8_t)(udp_len >> 8);
	ph[35] = (uint8_t)udp_len;
	ph[36] = ph[37] = ph[38] = 0;
	ph[39] = IPPROTO_UDP;
	return xsk_csum_partial(ph, 40, 0);
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A bounds-checked cursor over one frame. */
struct cursor {
	const uint8_t *pos;
	const uint8_t *end;
};

/* cur_take returns `n` bytes at the cursor and advances it, or NULL when fewer remain. */
static const uint8_t *cur_take(struct cursor *c, size_t n)
{
	if ((size_t)(c->end - c->pos) < n)
		return NULL;
	const uint8_t *p = c->pos;
	c->pos += n;
	return p;
}

/* parse_eth returns the ethertype after at most one VLAN tag (host order), or -1. */
static int parse_eth(struct cursor *c, struct xsk_pkt *out)
{
	const uint8_t *eth = cur_take(c, ETH_HLEN);
	if (!eth)
		return -1;
	uint16_t type = rd16(eth + 12);
	if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
		const uint8_t *tag = cur_take(c, 4);
		if (!tag)
			return -1;
		out->has_vlan = true;
		out->vlan_tci = rd16(tag);
		type = rd16(tag + 2);
	}
	return type;
}

/* parse_udp_hdr reads the UDP header of an IP payload of `l4_len` bytes at the cursor. */
static int parse_udp_hdr(struct cursor *c, size_t l4_len, struct xsk_pkt *out)
{
	const uint8_t *udp = cur_take(c, 8);
	if (!udp || l4_len < 8)
		return -EBADMSG;
	uint16_t ulen = rd16(udp + 4);
	if (ulen < 8 || ulen > l4_len)
		return -EBADMSG;
	out->src.port = htons(rd16(udp));
	out->dst.port = htons(rd16(udp + 2));
	memcpy(&out->udp_csum, udp + 6, 2);
	out->l4 = udp;
	out->payload = udp + 8;
	out->len = (size_t)ulen - 8;
	return 0;
}

/* parse_ipv4 reads an IPv4 header (options allowed, never a fragment) and the UDP
 * header after it; the cursor ends at the IP payload's end, before any padding. */
static int parse_ipv4(struct cursor *c, struct xsk_pkt *out)
{
	const uint8_t *ip = c->pos;
	if (!cur_take(c, 20))
		return -EBADMSG;
	if (ip[0] >> 4 != 4)
		return -EBADMSG;
	size_t ihl = (size_t)(ip[0] & 0xf) * 4;
	size_t tot = rd16(ip + 2);
	size_t avail = (size_t)(c->end - ip);
	if (ihl < 20 || tot < ihl || tot > avail)
		return -EBADMSG;
	if (xsk_csum_fold(xsk_csum_partial(ip, ihl, 0)) != 0)
		return -EBADMSG;
	if (rd16(ip + 6) & 0x3fff) /* MF or a fragment offset */
		return -EPROTONOSUPPORT;
	if (ip[9] != IPPROTO_UDP)
		return -EPROTONOSUPPORT;
	c->pos = ip + ihl;
	c->end = ip + tot; /* drop Ethernet padding */
	out->src.family = out->dst.family = AF_INET;
	memcpy(out->src.addr, ip + 12, 4);
	memcpy(out->dst.addr, ip + 16, 4);
	return parse_udp_hdr(c, tot - ihl, out);
}

/* parse_ipv6 reads an IPv6 header without extension headers and the UDP header
 * after it; the cursor ends at the IP payload's end, before any padding. */
static int parse_ipv6(struct cursor *c, struct xsk_pkt *out)
{
	const uint8_t *ip6 = cur_take(c, 40);
	if (!ip6)
		return -EBADMSG;
	if (ip6[0] >> 4 != 6)
		return -EBADMSG;
	size_t plen = rd16(ip6 + 4);
	if (plen == 0 || plen > (size_t)(c->end - c->pos)) /* jumbogram or truncated */
		return -EBADMSG;
	if (ip6[6] != IPPROTO_UDP)
		return -EPROTONOSUPPORT;
	c->end = c->pos + plen;
	out->src.family = out->dst.family = AF_INET6;
	memcpy(out->src.addr, ip6 + 8, 16);
	memcpy(out->dst.addr, ip6 + 24, 16);
	return parse_udp_hdr(c, plen, out);
}

int xsk_parse_udp(const uint8_t *frame, size_t len, struct xsk_pkt *out)
{
	memset(out, 0, sizeof(*out));
	if (!frame)
		return -EBADMSG;
	struct cursor c = {frame, frame + len};
	int type = parse_eth(&c, out);
	if (type < 0)
		return -EBADMSG;
	if (type == ETH_P_8021Q || type == ETH_P_8021AD)
		return -EPROTONOSUPPORT; /* a second tag */
	if (type == ETH_P_IP)
		return parse_ipv4(&c, out);
	if (type == ETH_P_IPV6)
		return parse_ipv6(&c, out);
	return -EPROTONOSUPPORT;
}

bool xsk_udp_csum_ok(const struct xsk_pkt *pkt)
{
	if (!pkt->l4)
		return false;
	if (pkt->udp_csum == 0)
		return pkt->src.family == AF_INET;
	uint32_t ulen = (uint32_t)pkt->len + 8;
	uint64_t sum = pseudo_sum(pkt->src.family, pkt->src.addr, pkt->dst.addr, ulen);
	sum = xsk_csum_partial(pkt->l4, ulen, sum);
	return xsk_csum_fold(sum) == 0;
}

/* iov_total sums the lengths of `iov` into *out_len: 0, -EINVAL for a bad vector, or
 * -EMSGSIZE when one part or the sum exceeds 65535 bytes. */
static int iov_total(const struct iovec *iov, int iovcnt, size_t *out_len)
{
	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	size_t plen = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > 65535 || (iov[i].iov_len && !iov[i].iov_base))
			return iov[i].iov_len > 65535 ? -EMSGSIZE : -EINVAL;
		plen += iov[i].iov_len;
		if (plen > 65535)
			return -EMSGSIZE;
	}
	*out_len = plen;
	return 0;
}

/* build_eth writes the Ethernet header for an IPv4 (`v4`) or IPv6 packet. */
static void build_eth(uint8_t *eth, const uint8_t src_mac[6], const uint8_t dst_mac[6], bool v4)
{
	memcpy(eth, dst_mac, 6);
	memcpy(eth + 6, src_mac, 6);
	wr16(eth + 12, v4 ? ETH_P_IP : ETH_P_IPV6);
}

/* build_ipv4 writes a 20-byte IPv4 header (DF, TTL 64, checksummed) for a UDP datagram
 * of `ulen` bytes. */
static void build_ipv4(uint8_t *ip, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		       size_t ulen, uint16_t ip_id)
{
	ip[0] = 0x45;
	ip[1] = 0;
	wr16(ip + 2, (uint16_t)(20 + ulen));
	wr16(ip + 4, ip_id);
	wr16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	ip[10] = ip[11] = 0;
	memcpy(ip + 12, src->addr, 4);
	memcpy(ip + 16, dst->addr, 4);
	uint16_t c = xsk_csum_fold(xsk_csum_partial(ip, 20, 0));
	memcpy(ip + 10, &c, 2);
}

/* build_ipv6 writes a 40-byte IPv6 header (hop limit 64) for a UDP datagram of `ulen`
 * bytes. */
static void build_ipv6(uint8_t *ip, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		       size_t ulen)
{
	ip[0] = 0x60;
	ip[1] = ip[2] = ip[3] = 0;
	wr16(ip + 4, (uint16_t)ulen);
	ip[6] = IPPROTO_UDP;
	ip[7] = 64;
	memcpy(ip + 8, src->addr, 16);
	memcpy(ip + 24, dst->addr, 16);
}

/* build_udp writes the UDP header and the payload gathered from `iov` (`ulen` bytes in
 * all), then the checksum over both and the pseudo-header. */
static void build_udp(uint8_t *udp, const struct r2p2_addr *src, const struct r2p2_addr *dst,
		      const struct iovec *iov, int iovcnt, size_t ulen)
{
	memcpy(udp, &src->port, 2);
	memcpy(udp + 2, &dst->port, 2);
	wr16(udp + 4, (uint16_t)ulen);
	udp[6] = udp[7] = 0;
	uint8_t *pay = udp + 8;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(pay, iov[i].iov_base, iov[i].iov_len);
		pay += iov[i].iov_len;
	}
	uint64_t sum = pseudo_sum(src->family, src->addr, dst->addr, (uint32_t)ulen);
	uint16_t c = xsk_csum_fold(xsk_csum_partial(udp, ulen, sum));
	if (c == 0)
		c = 0xffff; /* 0 means "no checksum" in IPv4 and is invalid in IPv6 */
	memcpy(udp + 6, &c, 2);
}

int xsk_build_udp(uint8_t *frame, size_t cap, const uint8_t src_mac[6], const uint8_t dst_mac[6],
		  const struct r2p2_addr *src, const struct r2p2_addr *dst, const struct iovec *iov,
		  int iovcnt, uint16_t ip_id)
{
	if (src->family != dst->family || (src->family != AF_INET && src->family != AF_INET6))
		return -EAFNOSUPPORT;
	size_t plen;
	int ret = iov_total(iov, iovcnt, &plen);
	if (ret)
		return ret;
	bool v4 = src->family == AF_INET;
	size_t ip_hlen = v4 ? 20 : 40;
	size_t hdr = ETH_HLEN + ip_hlen + 8;
	size_t ulen = 8 + plen;
	/* IPv4 total length and the UDP length are 16-bit; IPv6 payload length too */
	if (ulen + (v4 ? ip_hlen : 0) > 65535 || hdr + plen > cap)
		return -EMSGSIZE;

	build_eth(frame, src_mac, dst_mac, v4);
	uint8_t *ip = frame + ETH_HLEN;
	if (v4)
		build_ipv4(ip, src, dst, ulen, ip_id);
	else
		build_ipv6(ip, src, dst, ulen);
	build_udp(ip + ip_hlen, src, dst, iov, iovcnt, ulen);
	return (int)(hdr + plen);
}
