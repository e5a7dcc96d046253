/*
 * pr.c: the protocol tables behind include/procreg-protocol.h (pr_*):
 * error, method and down-reason names, method arities and flags.
 */
#include <string.h>

#include "procreg-protocol.h"

static const char *const err_names[PR_ERR__COUNT] = {
	[PR_OK] = "ok",
	[PR_ERR_BAD_REQUEST] = "bad_request",
	[PR_ERR_UNKNOWN_METHOD] = "unknown_method",
	[PR_ERR_TAKEN] = "taken",
	[PR_ERR_NOT_FOUND] = "not_found",
	[PR_ERR_NOT_OWNER] = "not_owner",
	[PR_ERR_BUSY] = "busy",
	[PR_ERR_LIMIT] = "limit",
	[PR_ERR_TOO_LARGE] = "too_large",
	[PR_ERR_FORBIDDEN] = "forbidden",
	[PR_ERR_TIMEOUT] = "timeout",
	[PR_ERR_DOWN] = "down",
	[PR_ERR_STALE] = "stale",
	[PR_ERR_UNAVAILABLE] = "unavailable",
};

static const struct {
	const char	*name;
	size_t		 len;
	unsigned	 min, max, flags;
} methods[PR_M__COUNT] = {
#define M(id, n, lo, hi, fl)	\
	[PR_M_##id] = { #n, sizeof(#n) - 1, lo, hi, fl },
	PR_METHODS(M)
#undef M
};

static const char *const down_names[PR_DOWN__COUNT] = {
	[PR_DOWN_UNREGISTERED] = "unregistered",
	[PR_DOWN_DISCONNECTED] = "disconnected",
	[PR_DOWN_NOPROC] = "noproc",
	[PR_DOWN_EVICTED] = "evicted",
	[PR_DOWN_REPLACED] = "replaced",
	[PR_DOWN_NODEDOWN] = "nodedown",
};

const char *
pr_err_name(enum pr_err e)
{
	if ((unsigned)e >= PR_ERR__COUNT)
		return NULL;
	return err_names[e];
}

const char *
pr_method_name(enum pr_method m)
{
	if ((unsigned)m >= PR_M__COUNT)
		return NULL;
	return methods[m].name;
}

int
pr_method_lookup(const char *s, size_t len)
{
	for (int i = 0; i < PR_M__COUNT; i++) {
		if (methods[i].len == len && memcmp(methods[i].name, s, len) == 0)
			return i;
	}
	return -1;
}

void
pr_method_arity(enum pr_method m, unsigned *min, unsigned *max)
{
	*min = methods[m].min;
	*max = methods[m].max;
}

unsigned
pr_method_flags(enum pr_method m)
{
	return methods[m].flags;
}

const char *
pr_down_reason_name(enum pr_down_reason r)
{
	if ((unsigned)r >= PR_DOWN__COUNT)
		return NULL;
	return down_names[r];
}
