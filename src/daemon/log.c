/*
 * log.c: leveled logging to stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

void
log_init(struct logger *lg, const char *ident, enum log_level level)
{
	lg->ident = ident;
	lg->level = level;
	/* Under systemd, stderr goes to the journal: let it see levels. */
	lg->prefix = getenv("JOURNAL_STREAM") != NULL;
}

bool
log_enabled(const struct logger *lg, enum log_level level)
{
	return level <= lg->level;
}

void
log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
{
	static const char *const names[8] = {
		"emerg", "alert", "crit", "error", "warning", "notice",
		"info", "debug"
	};
	char line[1024];
	va_list ap;

	if (!log_enabled(lg, level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lg->prefix)
		fprintf(stderr, "<%d>%s\n", (int)level, line);
	else
		fprintf(stderr, "%s: %s: %s\n", lg->ident, names[level & 7],
		    line);
}
