/* SPDX-License-Identifier: MIT */
/*
 * Big-endian stores for the per-RPC paths. Reads go through BoringSSL's CBS,
 * which allocates nothing; writes of a few fixed fields on every RPC use these,
 * because CBB_init_fixed allocates in this BoringSSL (API 17). Set-up and rare
 * paths keep using CBB.
 */
#ifndef R2P2D_BE_H
#define R2P2D_BE_H

#include <stdint.h>

static inline uint8_t *be_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return p + 4;
}

static inline uint8_t *be_put64(uint8_t *p, uint64_t v)
{
	be_put32(p, (uint32_t)(v >> 32));
	return be_put32(p + 4, (uint32_t)v);
}

#endif /* R2P2D_BE_H */
