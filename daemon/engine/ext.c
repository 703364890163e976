// SPDX-License-Identifier: MIT
/* The extension block (ext.h). */
#include "ext.h"

#include <errno.h>

void ext_write(uint8_t out[EXT_LEN], uint32_t value)
{
	out[0] = EXT_LEN - 1;
	out[1] = (uint8_t)(value >> 24);
	out[2] = (uint8_t)(value >> 16);
	out[3] = (uint8_t)(value >> 8);
	out[4] = (uint8_t)value;
}

int ext_read(const uint8_t *msg, size_t len, uint32_t *out_value)
{
	size_t block;

	if (len < EXT_LEN || msg[0] < EXT_LEN - 1)
		return -EBADMSG;
	block = (size_t)msg[0] + 1;
	if (block > len)
		return -EBADMSG;
	*out_value =
	    (uint32_t)msg[1] << 24 | (uint32_t)msg[2] << 16 | (uint32_t)msg[3] << 8 | msg[4];
	return (int)block;
}
