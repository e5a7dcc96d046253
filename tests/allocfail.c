/*
 * allocfail.c: the shim of allocfail.h.  The daemon's objects call the
 * __wrap_ functions (the Makefile renames their references); the shim
 * calls the real ones.  Single-threaded, like the daemon.
 */
#include <stddef.h>
#include <stdlib.h>

#include "allocfail.h"

void	*__wrap_malloc(size_t);
void	*__wrap_calloc(size_t, size_t);
void	*__wrap_realloc(void *, size_t);
void	 __wrap_free(void *);

static uint64_t	 fail_at;	/* 0: disarmed */
static uint64_t	 seen;
static bool	 fired;
static int64_t	 live;

void
allocfail_arm(uint64_t n)
{
	fail_at = n;
	seen = 0;
	fired = false;
}

void
allocfail_disarm(void)
{
	fail_at = 0;
}

bool
allocfail_fired(void)
{
	return fired;
}

uint64_t
allocfail_seen(void)
{
	return seen;
}

int64_t
allocfail_live(void)
{
	return live;
}

/* Is this the allocation to fail? */
static bool
fail_now(void)
{
	if (fail_at == 0)
		return false;
	if (++seen != fail_at)
		return false;
	fired = true;
	return true;
}

void *
__wrap_malloc(size_t n)
{
	void *p;

	if (fail_now())
		return NULL;
	if ((p = malloc(n)) != NULL)
		live++;
	return p;
}

void *
__wrap_calloc(size_t n, size_t size)
{
	void *p;

	if (fail_now())
		return NULL;
	if ((p = calloc(n, size)) != NULL)
		live++;
	return p;
}

/* A failed realloc leaves the block as it was, as the real one does. */
void *
__wrap_realloc(void *old, size_t n)
{
	void *p;

	if (fail_now())
		return NULL;
	p = realloc(old, n);
	if (old == NULL && p != NULL)
		live++;
	else if (old != NULL && p == NULL && n == 0)
		live--;		/* glibc frees on realloc(p, 0) */
	return p;
}

void
__wrap_free(void *p)
{
	if (p != NULL)
		live--;
	free(p);
}
