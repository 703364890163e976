// SPDX-License-Identifier: MIT
/* The Prometheus endpoints' shared libmicrohttpd pieces (mhttp.h). */
#include "mhttp.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

bool mhttp_reading(void **state, void *mark, size_t *upload_len)
{
	if (!*state) { /* headers only so far: wait for the end of the request */
		*state = mark;
		return true;
	}
	if (*upload_len) { /* a body: read and dropped; the method is judged at the end */
		*upload_len = 0;
		return true;
	}
	return false;
}

enum MHD_Result mhttp_reply(struct MHD_Connection *conn, unsigned code, const void *body,
			    size_t len, const char *type)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

void mhttp_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("metrics: %s", line);
}
