// SPDX-License-Identifier: MIT
/* test_wire: the R2P2 header layout is upstream's, byte for byte, and r2p2_hdr_valid checks it. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <stddef.h>
#include <string.h>

#include <r2p2/wire.h>

/* Upstream test vector: "ping" request, rid 0x1234, LB_ROUTE, F|L, p_order 1. */
static const unsigned char ping[] = {0xcc, 0x08, 0x00, 0xc0, 0x12, 0x34,
				     0x00, 0x01, 0x70, 0x69, 0x6e, 0x67};

Test(wire, header_layout)
{
	cr_assert_eq(sizeof(struct r2p2_hdr), 8);
	cr_assert_eq(offsetof(struct r2p2_hdr, magic), 0);
	cr_assert_eq(offsetof(struct r2p2_hdr, header_size), 1);
	cr_assert_eq(offsetof(struct r2p2_hdr, type_policy), 2);
	cr_assert_eq(offsetof(struct r2p2_hdr, flags), 3);
	cr_assert_eq(offsetof(struct r2p2_hdr, rid), 4);
	cr_assert_eq(offsetof(struct r2p2_hdr, p_order), 6);
}

Test(wire, feedback_layout)
{
	cr_assert_eq(sizeof(struct r2p2_feedback), 8);
	cr_assert_eq(offsetof(struct r2p2_feedback, rid), 0);
	cr_assert_eq(offsetof(struct r2p2_feedback, port), 2);
	cr_assert_eq(offsetof(struct r2p2_feedback, ip), 4);
}

Test(wire, constants)
{
	cr_assert_eq(R2P2_MAGIC, 0xCC);
	cr_assert_eq(R2P2_HDR_LEN, 8);
	cr_assert_eq(R2P2_MAX_PAYLOAD, 1464);
	cr_assert_eq(R2P2_MIN_PAYLOAD, 14);
	cr_assert_eq(R2P2_F_FIRST, 0x80);
	cr_assert_eq(R2P2_F_LAST, 0x40);
	cr_assert_eq(R2P2_F_FREE_MASK & (R2P2_F_FIRST | R2P2_F_LAST), 0);
	cr_assert_eq(R2P2_F_FREE_MASK | R2P2_F_FIRST | R2P2_F_LAST, 0xFF);
	cr_assert_eq(R2P2_REQUEST, 0);
	cr_assert_eq(R2P2_RESPONSE, 1);
	cr_assert_eq(R2P2_FEEDBACK, 2);
	cr_assert_eq(R2P2_ACK, 3);
	cr_assert_eq(R2P2_DROP, 4);
	cr_assert_eq(R2P2_LB_ROUTE, 0);
	cr_assert_eq(R2P2_FIXED_ROUTE, 1);
	cr_assert_eq(R2P2_PROTO_MAX_MSG, 14 + 65534ul * 1464);
}

Test(wire, parse_vector)
{
	struct r2p2_hdr h;

	memcpy(&h, ping, sizeof(h));
	cr_assert_eq(h.magic, 0xCC);
	cr_assert_eq(h.header_size, 8);
	cr_assert_eq(r2p2_hdr_type(&h), R2P2_REQUEST);
	cr_assert_eq(r2p2_hdr_policy(&h), R2P2_LB_ROUTE);
	cr_assert_eq(h.flags, R2P2_F_FIRST | R2P2_F_LAST);
	cr_assert_eq(ntohs(h.rid), 0x1234);
	cr_assert_eq(ntohs(h.p_order), 1);
	cr_assert(r2p2_hdr_valid(&h, sizeof(ping)));

	/* An ACK: type 3, policy FIXED_ROUTE in one byte. */
	h.type_policy = 0x31;
	cr_assert_eq(r2p2_hdr_type(&h), R2P2_ACK);
	cr_assert_eq(r2p2_hdr_policy(&h), R2P2_FIXED_ROUTE);
}

Test(wire, build_vector)
{
	struct r2p2_hdr h = {
	    .magic = R2P2_MAGIC,
	    .header_size = R2P2_HDR_LEN,
	    .type_policy = (R2P2_RESPONSE << 4) | R2P2_FIXED_ROUTE,
	    .flags = R2P2_F_FIRST | R2P2_F_LAST,
	    .rid = htons(0x1234),
	    .p_order = htons(1),
	};
	static const unsigned char want[] = {0xcc, 0x08, 0x11, 0xc0, 0x12, 0x34, 0x00, 0x01};
	cr_assert_arr_eq(&h, want, sizeof(want));
}

Test(wire, valid_rejects_runts)
{
	for (unsigned long len = 0; len < R2P2_HDR_LEN; len++)
		cr_assert_not(r2p2_hdr_valid((const struct r2p2_hdr *)ping, len), "len %lu", len);
	cr_assert(r2p2_hdr_valid((const struct r2p2_hdr *)ping, R2P2_HDR_LEN));
}

Test(wire, valid_rejects_bad_magic_and_size)
{
	unsigned char b[sizeof(ping)];

	memcpy(b, ping, sizeof(b));
	b[0] = 0xCD;
	cr_assert_not(r2p2_hdr_valid((const struct r2p2_hdr *)b, sizeof(b)));
	b[0] = 0xCC;
	for (unsigned hs = 0; hs < 256; hs++) {
		b[1] = (unsigned char)hs;
		cr_assert_eq(r2p2_hdr_valid((const struct r2p2_hdr *)b, sizeof(b)), hs == 8,
			     "hs %u", hs);
	}
}

Test(wire, valid_types)
{
	unsigned char b[sizeof(ping)];

	memcpy(b, ping, sizeof(b));
	for (unsigned t = 0; t < 16; t++) {
		for (unsigned p = 0; p < 16; p += 5) {
			b[2] = (unsigned char)(t << 4 | p);
			cr_assert_eq(r2p2_hdr_valid((const struct r2p2_hdr *)b, sizeof(b)), t <= 4,
				     "type %u", t);
		}
	}
}

/* ---- the extension block (daemon/engine/ext.c) ------------------------------------ */

#include "ext.h"

#include <errno.h>

Test(ext, writes_four_value_bytes_after_their_length)
{
	uint8_t b[EXT_LEN];
	static const uint8_t want[] = {0x04, 0x00, 0x2d, 0xc6, 0xc0}; /* 3 s in us */

	ext_write(b, 3000000);
	cr_assert_arr_eq(b, want, sizeof(want));
}

Test(ext, reads_what_it_wrote_and_skips_longer_blocks)
{
	uint8_t msg[16] = {0};
	uint32_t v = 0;

	ext_write(msg, 0xdeadbeef);
	cr_assert_eq(ext_read(msg, EXT_LEN, &v), EXT_LEN);
	cr_assert_eq(v, 0xdeadbeef);
	/* a later sender's longer block: its extra bytes are skipped, not handed to the app */
	msg[0] = 10;
	cr_assert_eq(ext_read(msg, sizeof(msg), &v), 11);
	cr_assert_eq(v, 0xdeadbeef);
}

Test(ext, refuses_what_is_not_a_whole_block)
{
	uint8_t msg[8] = {0x04, 0, 0, 0, 1, 'a', 'b', 'c'};
	uint32_t v = 7;

	cr_assert_eq(ext_read(msg, 4, &v), -EBADMSG); /* cut before the value ends */
	cr_assert_eq(ext_read(msg, 0, &v), -EBADMSG);
	msg[0] = 3; /* shorter than a value */
	cr_assert_eq(ext_read(msg, sizeof(msg), &v), -EBADMSG);
	msg[0] = 8; /* longer than the message */
	cr_assert_eq(ext_read(msg, sizeof(msg), &v), -EBADMSG);
	cr_assert_eq(v, 7, "nothing stored on a refusal");
}
