/*
 * guard.h: a header-only msgpack scanner that runs ahead of decoding.
 *
 * msgpack-c's C unpacker has no size or depth limits and allocates for a
 * declared element count before the elements arrive: five bytes claiming a
 * 2^32-element array make it ask for 96 GiB.  The guard walks only type
 * bytes and length headers, finds where each top-level object ends, and
 * refuses an object as soon as its declared lengths show it cannot fit in
 * max bytes (each pending element costs at least one byte) or it nests
 * deeper than PR_NESTING_MAX.  Complete objects are then decoded by
 * msgpack-c.  Bytes may arrive in any split; the state carries over.
 */
#ifndef GUARD_H
#define GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "procreg-protocol.h"

enum guard_status {
	GUARD_MORE = 0,		/* every byte consumed, object incomplete */
	GUARD_OBJECT,		/* a top-level object ends at *used */
	GUARD_BAD,		/* not msgpack (the byte 0xc1) */
	GUARD_TOO_DEEP,		/* nesting over PR_NESTING_MAX */
	GUARD_TOO_LARGE		/* the object cannot fit in max bytes */
};

struct guard {
	uint64_t	max;		/* largest object accepted, bytes */
	uint64_t	size;		/* bytes of the current object so far */
	uint64_t	pending;	/* elements declared, not yet begun */
	uint64_t	skip;		/* payload bytes still to pass */
	uint64_t	remain[PR_NESTING_MAX]; /* elements left per level */
	unsigned	depth;
	uint8_t		type;		/* type byte whose header is read */
	uint8_t		hdr_need;	/* header bytes still missing */
	uint8_t		hdr_have;
	uint8_t		hdr[8];
};

/* Start scanning a fresh stream with a size bound. */
void			guard_init(struct guard *, uint64_t max);
/*
 * Scan n bytes.  *used is how many were consumed: all of them for
 * GUARD_MORE, up to and including the object's last byte for GUARD_OBJECT
 * (scan the rest with another call), up to the offending byte for errors.
 * After an error the guard must not be fed again.
 */
enum guard_status	guard_scan(struct guard *, const uint8_t *p, size_t n,
			    size_t *used);

#endif /* GUARD_H */
