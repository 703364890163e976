// SPDX-License-Identifier: MIT
/*
 * abi_dump: prints what the C compiler knows of include/r2p2/r2p2.h that the Python
 * binding restates (client/python/r2p2/_ffi.py declares struct r2p2_event for cffi's ABI
 * mode; __init__.py the constants), one "name value" line each, and r2p2_strerror's text
 * for a few codes. tests/python/test_binding.py compares them with the binding's.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include <r2p2/r2p2.h>

#define FIELD(f)                                                                                   \
	printf("offsetof.%s %zu\nsizeof.%s %zu\n", #f, offsetof(struct r2p2_event, f), #f,         \
	       sizeof(((struct r2p2_event *)0)->f))

int main(void)
{
	static const int codes[] = {0,	   ENOENT,	 ETIMEDOUT, EAGAIN,
				    EBUSY, ECONNREFUSED, EPERM,	    EREMOTEIO};

	printf("sizeof.event %zu\n", sizeof(struct r2p2_event));
	FIELD(type);
	FIELD(status);
	FIELD(id);
	FIELD(data);
	FIELD(len);
	FIELD(service_id);
	FIELD(lane);
	FIELD(code);
	FIELD(deadline_us);
	printf("EV_RESPONSE %d\nEV_REQUEST %d\nEV_ERROR %d\n", R2P2_EV_RESPONSE, R2P2_EV_REQUEST,
	       R2P2_EV_ERROR);
	printf("CALL_NOT_REPLAY_SAFE %d\n", R2P2_CALL_NOT_REPLAY_SAFE);
	printf("SERVICE_NAME_MAX %d\n", R2P2_SERVICE_NAME_MAX);
	printf("DEFAULT_SOCKET %s\n", R2P2_DEFAULT_SOCKET);
	printf("NO_DEADLINE %u\n", R2P2_NO_DEADLINE);
	printf("VERSION_MAJOR %d\nVERSION_MINOR %d\nVERSION_PATCH %d\nVERSION %s\n",
	       R2P2_VERSION_MAJOR, R2P2_VERSION_MINOR, R2P2_VERSION_PATCH, R2P2_VERSION);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		printf("strerror.%d %s\n", codes[i], r2p2_strerror(-codes[i]));
	return 0;
}
