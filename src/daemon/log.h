/*
 * log.h: leveled logging to stderr in key=value style.  The level lives in
 * the caller's struct logger (part of the daemon's context), not in a
 * global.
 */
#ifndef LOG_H
#define LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7
};

struct logger {
	enum log_level	 level;
	bool		 prefix;	/* sd-daemon "<N>" priority prefixes */
	const char	*ident;
};

void	log_init(struct logger *, const char *ident, enum log_level);
/* True when a message at this level would be written. */
bool	log_enabled(const struct logger *, enum log_level);
void	log_msg(const struct logger *, enum log_level, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

#define log_err(lg, ...)	log_msg((lg), LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(lg, ...)	log_msg((lg), LOG_LVL_WARN, __VA_ARGS__)
#define log_info(lg, ...)	log_msg((lg), LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(lg, ...)	log_msg((lg), LOG_LVL_DEBUG, __VA_ARGS__)

#endif /* LOG_H */
