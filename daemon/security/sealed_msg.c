// SPDX-License-Identifier: MIT
/*
 * The clear messages of sealed mode (docs/PROTOCOL.md, "sealed mode"): the
 * refusal reasons and their REJECT, and the bootstrap payloads carried inside a
 * tls exchange (association request and blob, renewal, retry of a refused
 * request, and the server's status for it).
 */
#include "boringssl.h"

#include "sealed_int.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/bytestring.h>

/* ---- reasons and REJECT ----------------------------------------------------------- */

static const char *const reason_names[SEALED_REASON_MAX + 1] = {
    [SEALED_OK] = "ok",
    [SEALED_REJ_MALFORMED] = "malformed",
    [SEALED_REJ_UNKNOWN_KEY] = "unknown_key",
    [SEALED_REJ_BAD_TOKEN] = "bad_token",
    [SEALED_REJ_WRONG_SERVICE] = "wrong_service",
    [SEALED_REJ_EXPIRED] = "expired",
    [SEALED_REJ_STALE] = "stale",
    [SEALED_REJ_REPLAY] = "replay",
    [SEALED_REJ_FULL] = "full",
    [SEALED_REJ_SHARE] = "share",
    [SEALED_REJ_BAD_AEAD] = "bad_aead",
    [SEALED_REJ_INTERNAL] = "internal",
    [SEALED_REJ_WRONG_SERVER] = "wrong_server",
    [SEALED_REJ_RESTARTED] = "restarted",
};

const char *sealed_reason_name(unsigned reason)
{
	return reason <= SEALED_REASON_MAX ? reason_names[reason] : "?";
}

bool sealed_reason_authenticated(unsigned reason)
{
	switch (reason) {
	case SEALED_REJ_WRONG_SERVICE:
	case SEALED_REJ_EXPIRED:
	case SEALED_REJ_STALE:
	case SEALED_REJ_RESTARTED:
	case SEALED_REJ_REPLAY:
	case SEALED_REJ_BAD_AEAD:
	case SEALED_REJ_FULL:
	case SEALED_REJ_SHARE:
		return true;
	default:
		return false;
	}
}

bool sealed_reason_rebootstrap(unsigned reason)
{
	return reason == SEALED_REJ_UNKNOWN_KEY || reason == SEALED_REJ_BAD_TOKEN ||
	       reason == SEALED_REJ_WRONG_SERVICE || reason == SEALED_REJ_EXPIRED;
}

void sealed_reject_encode(enum sealed_reason reason, uint8_t out[SEALED_REJECT_LEN])
{
	out[0] = SEALED_VERSION;
	out[1] = SEALED_REJECT_MARK;
	out[2] = (uint8_t)reason;
}

int sealed_reject_decode(const uint8_t *msg, size_t len, enum sealed_reason *out_reason)
{
	if (len != SEALED_REJECT_LEN || msg[0] != SEALED_VERSION || msg[1] != SEALED_REJECT_MARK ||
	    msg[2] == SEALED_OK || msg[2] > SEALED_REASON_MAX)
		return -EBADMSG;
	*out_reason = (enum sealed_reason)msg[2];
	return 0;
}

/* ---- bootstrap payloads ------------------------------------------------------------ */

int sealed_boot_req_encode(bool want_assoc, const uint8_t *req, size_t len, struct tls_buf *out)
{
	if (len > SIZE_MAX - 1 || sealed_buf_size(out, 1 + len) != 0)
		return -ENOMEM;
	out->data[0] = want_assoc ? SEALED_BOOT_ASSOC : SEALED_BOOT_NONE;
	if (len)
		memcpy(out->data + 1, req, len);
	return 0;
}

int sealed_boot_renew_encode(struct tls_buf *out)
{
	if (sealed_buf_size(out, 1) != 0)
		return -ENOMEM;
	out->data[0] = SEALED_BOOT_RENEW;
	return 0;
}

int sealed_boot_req_decode(const uint8_t *msg, size_t len, bool *out_want, const uint8_t **out_req,
			   size_t *out_req_len)
{
	if (len < 1 || (msg[0] != SEALED_BOOT_NONE && msg[0] != SEALED_BOOT_ASSOC &&
			msg[0] != SEALED_BOOT_RENEW))
		return -EBADMSG;
	if (msg[0] == SEALED_BOOT_RENEW) {
		/* a renewal carries no app request at all */
		if (len != 1)
			return -EBADMSG;
		*out_want = true;
		*out_req = NULL;
		*out_req_len = 0;
		return 0;
	}
	*out_want = msg[0] == SEALED_BOOT_ASSOC;
	*out_req = msg + 1;
	*out_req_len = len - 1;
	return 0;
}

int sealed_boot_retry_encode(bool want_assoc, const struct sealed_prior *prior, const uint8_t *req,
			     size_t len, struct tls_buf *out)
{
	size_t head = 2 + SEALED_PRIOR_LEN;
	CBB cbb;

	if (len > SIZE_MAX - head || sealed_buf_size(out, head + len) != 0)
		return -ENOMEM;
	if (!CBB_init_fixed(&cbb, out->data, head) || !CBB_add_u8(&cbb, SEALED_BOOT_RETRY) ||
	    !CBB_add_u8(&cbb, want_assoc ? 1 : 0) ||
	    !CBB_add_bytes(&cbb, prior->id, SEALED_ID_LEN) ||
	    !CBB_add_bytes(&cbb, prior->nonce, SEALED_NONCE_LEN) ||
	    !CBB_add_u64(&cbb, prior->ts_ms) || !CBB_finish(&cbb, NULL, NULL)) {
		CBB_cleanup(&cbb);
		return -ENOMEM;
	}
	if (len)
		memcpy(out->data + head, req, len);
	return 0;
}

int sealed_boot_req_parse(const uint8_t *msg, size_t len, struct sealed_boot_req *out)
{
	CBS cbs, id, nonce;
	uint8_t want;

	memset(out, 0, sizeof(*out));
	if (len >= 1 && msg[0] != SEALED_BOOT_RETRY)
		return sealed_boot_req_decode(msg, len, &out->want, &out->req, &out->req_len);
	CBS_init(&cbs, msg, len);
	if (!CBS_skip(&cbs, 1) || !CBS_get_u8(&cbs, &want) || want > 1 ||
	    !CBS_get_bytes(&cbs, &id, SEALED_ID_LEN) ||
	    !CBS_get_bytes(&cbs, &nonce, SEALED_NONCE_LEN) || !CBS_get_u64(&cbs, &out->prior.ts_ms))
		return -EBADMSG;
	out->want = want;
	out->retry = true;
	memcpy(out->prior.id, CBS_data(&id), SEALED_ID_LEN);
	memcpy(out->prior.nonce, CBS_data(&nonce), SEALED_NONCE_LEN);
	out->req = CBS_data(&cbs);
	out->req_len = CBS_len(&cbs);
	return 0;
}

int sealed_boot_status_encode(enum sealed_retry_status status, struct tls_buf *out)
{
	if (sealed_buf_size(out, 2) != 0)
		return -ENOMEM;
	out->data[0] = SEALED_BOOT_STATUS;
	out->data[1] = (uint8_t)status;
	return 0;
}

int sealed_boot_resp_status(const uint8_t *msg, size_t len)
{
	if (len < 1 || msg[0] != SEALED_BOOT_STATUS)
		return 0;
	if (len != 2 || (msg[1] != SEALED_RETRY_DONE && msg[1] != SEALED_RETRY_UNKNOWN))
		return -EBADMSG;
	return msg[1];
}

int sealed_boot_resp_encode(const uint8_t *blob, const uint8_t *resp, size_t len,
			    struct tls_buf *out)
{
	size_t head = 1 + (blob ? SEALED_ASSOC_BLOB_LEN : 0);

	if (len > SIZE_MAX - head || sealed_buf_size(out, head + len) != 0)
		return -ENOMEM;
	out->data[0] = blob ? SEALED_BOOT_ASSOC : SEALED_BOOT_NONE;
	if (blob)
		memcpy(out->data + 1, blob, SEALED_ASSOC_BLOB_LEN);
	if (len)
		memcpy(out->data + head, resp, len);
	return 0;
}

int sealed_boot_resp_decode(const uint8_t *msg, size_t len, const uint8_t **out_blob,
			    const uint8_t **out_resp, size_t *out_resp_len)
{
	size_t head;

	if (len < 1)
		return -EBADMSG;
	if (msg[0] == SEALED_BOOT_NONE)
		head = 1;
	else if (msg[0] == SEALED_BOOT_ASSOC)
		head = 1 + SEALED_ASSOC_BLOB_LEN;
	else
		return -EBADMSG;
	if (len < head)
		return -EBADMSG;
	*out_blob = msg[0] == SEALED_BOOT_ASSOC ? msg + 1 : NULL;
	*out_resp = msg + head;
	*out_resp_len = len - head;
	return 0;
}
