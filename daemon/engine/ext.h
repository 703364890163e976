/* SPDX-License-Identifier: MIT */
/*
 * The extension block: what r2p2d peers say to each other about one RPC besides
 * its bytes. A request's block carries the caller's time left; a response's the
 * server app's status (0, or the code of r2p2_respond_error, the message then
 * taking the response's place). The block opens the message, before the app's
 * bytes: in tls and sealed mode always, inside the encryption, so it is as secret
 * and authenticated as the message; in plain mode only when the request's header
 * carries R2P2_F_EXT (and then its response does too), since an upstream R2P2 peer
 * knows no block. docs/PROTOCOL.md, "Extension block".
 *
 *   len (1, >= 4; senders write 4) | value (be32) | len - 4 bytes senders leave out
 *
 * Pure: no sockets, no allocation; the worker (daemon/worker) calls it.
 */
#ifndef R2P2D_EXT_H
#define R2P2D_EXT_H

#include <stddef.h>
#include <stdint.h>

#define EXT_LEN 5		   /* bytes of the block a sender writes */
#define EXT_NO_DEADLINE UINT32_MAX /* a request's block: the caller said no time left */

/*
 * ext_write writes a block with `value` (a request: the caller's time left in
 * microseconds; a response: the status code) into `out` (EXT_LEN bytes).
 */
void ext_write(uint8_t out[EXT_LEN], uint32_t value);

/*
 * ext_read parses the block at the start of the `len` bytes of `msg`: stores its
 * value in `*out_value` and returns how many bytes it takes (the app's bytes
 * follow), or -EBADMSG when `msg` does not start with a whole block.
 */
int ext_read(const uint8_t *msg, size_t len, uint32_t *out_value);

#endif /* R2P2D_EXT_H */
