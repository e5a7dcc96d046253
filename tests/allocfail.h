/*
 * allocfail.h: fail the Nth allocation, for sweeping the rollback paths
 * that out-of-memory takes.  The unit suites link a copy of the daemon's
 * internal library whose references to malloc, calloc, realloc and free
 * are renamed to this shim's __wrap_ functions (objcopy --redefine-sym):
 * the daemon's code is what must cope, so only its allocations are
 * failed, not those of libc, libmsgpack, or Check (a static library,
 * which ld --wrap would have caught too, along with the blocks Check
 * gets from strdup and frees).  Disarmed, the shim only counts.
 */
#ifndef ALLOCFAIL_H
#define ALLOCFAIL_H

#include <stdbool.h>
#include <stdint.h>

/* Fail the nth allocation from now (1: the next one), that one alone. */
void	 allocfail_arm(uint64_t n);
/* Let every allocation through again. */
void	 allocfail_disarm(void);
/* Has the armed allocation been failed since allocfail_arm? */
bool	 allocfail_fired(void);
/* Allocations asked for since allocfail_arm (the failed one included). */
uint64_t allocfail_seen(void);
/* Blocks allocated through the shim and not yet freed: a leak check for
 * code whose allocations and frees all go through it. */
int64_t	 allocfail_live(void);

#endif /* ALLOCFAIL_H */
