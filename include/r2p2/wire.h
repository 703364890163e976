/* SPDX-License-Identifier: MIT */
/*
 * R2P2 wire format: the 8-byte header shared by the XDP program, the daemon,
 * the tools and the tests. Plain mode is byte-compatible with upstream R2P2
 * (epfl-dcsl/r2p2). Every multi-byte field is big-endian on the wire.
 *
 * This header must stay free of libc so that BPF programs can include it.
 */
#ifndef R2P2_WIRE_H
#define R2P2_WIRE_H

#include <r2p2/compat.h>

#include <linux/types.h>

#define R2P2_MAGIC 0xCC
#define R2P2_HDR_LEN 8

/* Largest payload of one packet: 1500 (MTU) - 20 (IPv4) - 8 (UDP) - 8 (R2P2). */
#define R2P2_MAX_PAYLOAD 1464
/* Payload of the first packet of a multi-packet request: 64 - 14 - 20 - 8 - 8. */
#define R2P2_MIN_PAYLOAD 14
/* p_order is a u16, so a message has at most this many packets. */
#define R2P2_MAX_PACKETS 0xFFFF
/* The largest request the protocol can express (first packet + 65534 full ones). */
#define R2P2_PROTO_MAX_MSG (R2P2_MIN_PAYLOAD + (R2P2_MAX_PACKETS - 1) * R2P2_MAX_PAYLOAD)

/*
 * Address validation (docs/PROTOCOL.md, "Amplification limit"): a server holding back
 * a resend sends an ACK whose payload is "ACK" and a cookie; the client echoes the
 * cookie in an ACK whose payload is "VAL" and the cookie.
 */
#define R2P2_COOKIE_LEN 8
#define R2P2_COOKIE_TAG_LEN 3
#define R2P2_COOKIE_PAYLOAD_LEN (R2P2_COOKIE_TAG_LEN + R2P2_COOKIE_LEN)
#define R2P2_CHALLENGE_TAG "ACK"
#define R2P2_ECHO_TAG "VAL"

/* flags */
#define R2P2_F_FIRST 0x80
#define R2P2_F_LAST 0x40
/* Bits of `flags` upstream never sets; encrypted modes claim them. */
#define R2P2_F_FREE_MASK 0x3F
/* A tls-mode message: the payload is a TLS 1.3 exchange (docs/PROTOCOL.md). */
#define R2P2_F_TLS 0x20
/* A sealed-mode message: the payload is AEAD under an association (docs/PROTOCOL.md). */
#define R2P2_F_SEALED 0x10
/* A plain-mode message whose payload opens with an extension block (a request's
 * deadline, a response's status); its response carries it too (docs/PROTOCOL.md). */
#define R2P2_F_EXT 0x01
R2P2_STATIC_ASSERT((R2P2_F_TLS & ~R2P2_F_FREE_MASK) == 0, "R2P2_F_TLS must be a free bit");
R2P2_STATIC_ASSERT((R2P2_F_SEALED & ~R2P2_F_FREE_MASK) == 0, "R2P2_F_SEALED must be a free bit");
R2P2_STATIC_ASSERT((R2P2_F_TLS & R2P2_F_SEALED) == 0, "mode flags must differ");
R2P2_STATIC_ASSERT((R2P2_F_EXT & ~R2P2_F_FREE_MASK) == 0 &&
		       (R2P2_F_EXT & (R2P2_F_TLS | R2P2_F_SEALED)) == 0,
		   "R2P2_F_EXT must be a free bit of its own");

enum r2p2_type {
	R2P2_REQUEST = 0,
	R2P2_RESPONSE = 1,
	R2P2_FEEDBACK = 2,
	R2P2_ACK = 3,
	R2P2_DROP = 4,
	/* 5..7 are upstream's RAFT messages; we never send them and drop them. */
	R2P2_TYPE_MAX = 4,
};

enum r2p2_policy {
	R2P2_LB_ROUTE = 0,
	R2P2_FIXED_ROUTE = 1,
	R2P2_REPLICATED_ROUTE = 2,
	R2P2_REPLICATED_ROUTE_NO_SE = 3,
};

struct r2p2_hdr {
	__u8 magic;	  /* R2P2_MAGIC */
	__u8 header_size; /* R2P2_HDR_LEN */
	__u8 type_policy; /* (type << 4) | policy */
	__u8 flags;	  /* R2P2_F_FIRST, R2P2_F_LAST */
	__be16 rid;	  /* request id chosen by the client */
	__be16 p_order;	  /* first packet: packet count; others: index 1..N-1 */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_hdr) == R2P2_HDR_LEN, "ABI");

/* Payload of a FEEDBACK message sent by a server to its router. */
struct r2p2_feedback {
	__be16 rid;  /* rid of the finished request */
	__be16 port; /* the client's UDP port */
	__be32 ip;   /* the client's IPv4 address */
};
R2P2_STATIC_ASSERT(sizeof(struct r2p2_feedback) == 8, "ABI");

static inline unsigned r2p2_hdr_type(const struct r2p2_hdr *h)
{
	return h->type_policy >> 4;
}

static inline unsigned r2p2_hdr_policy(const struct r2p2_hdr *h)
{
	return h->type_policy & 0x0F;
}

/*
 * r2p2_hdr_valid returns 1 when the `len` bytes at `h` start with a header that
 * may be an R2P2 packet: long enough, right magic and header_size, a known type.
 * It does not check p_order against flags (that needs message state).
 */
static inline int r2p2_hdr_valid(const struct r2p2_hdr *h, unsigned long len)
{
	if (len < R2P2_HDR_LEN)
		return 0;
	if (h->magic != R2P2_MAGIC || h->header_size != R2P2_HDR_LEN)
		return 0;
	if (r2p2_hdr_type(h) > R2P2_TYPE_MAX)
		return 0;
	return 1;
}

#endif /* R2P2_WIRE_H */
