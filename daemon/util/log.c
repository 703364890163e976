// SPDX-License-Identifier: MIT
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum log_level log_threshold = LOG_LVL_INFO;

int log_set_level(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			log_threshold = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	/* sd-daemon(3) priority prefixes: journald maps them to levels. */
	static const char *const prefix[] = {"<3>error: ", "<4>warn: ", "<6>", "<7>debug: "};
	static int journal = -1;
	char line[1024];
	va_list ap;
	int n;

	if (lvl > log_threshold)
		return;
	if (journal < 0)
		journal = getenv("JOURNAL_STREAM") != NULL;
	n = snprintf(line, sizeof(line), "%s", journal ? prefix[lvl] : prefix[lvl] + 3);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
