/* SPDX-License-Identifier: MIT */
/* r2p2d logging: one line per event to stderr (journald keeps it under systemd). */
#ifndef R2P2D_LOG_H
#define R2P2D_LOG_H

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* log_set_level sets the threshold from "error", "warn", "info" or "debug". Returns 0 or -EINVAL.
 */
int log_set_level(const char *name);

/* log_msg prints "<level> message" (with a systemd priority prefix when under journald). */
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

extern enum log_level log_threshold;

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_threshold >= LOG_LVL_DEBUG)                                                \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif /* R2P2D_LOG_H */
