/*
 * jsplit.h: splits a byte stream into top-level JSON objects.
 *
 * etcd's gateway streams a watch as JSON objects, one after another, in
 * HTTP chunks that need not follow the objects' bounds: one chunk may
 * hold several objects and one object may span several chunks.  The
 * splitter buffers what it is fed and finds where each object ends by
 * counting brackets outside strings (a quote inside a string is escaped,
 * so only the escape and quote states matter), without relying on the
 * newline etcd happens to put between objects.  An object longer than
 * max bytes, or anything but whitespace between objects, is refused.
 */
#ifndef JSPLIT_H
#define JSPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsplit {
	uint8_t	*buf;
	size_t	 len;		/* bytes held */
	size_t	 cap;
	size_t	 start;		/* first byte not yet handed out */
	size_t	 obj;		/* where the current object began */
	size_t	 scan;		/* next byte to look at */
	size_t	 max;		/* longest object accepted, bytes */
	size_t	 depth;		/* 0: between objects */
	bool	 in_str;
	bool	 esc;
};

/* Start an empty splitter that accepts objects of up to max bytes. */
void	 jsplit_init(struct jsplit *, size_t max);
void	 jsplit_deinit(struct jsplit *);
/* Append n bytes; 0, or -ENOMEM. */
int	 jsplit_feed(struct jsplit *, const void *p, size_t n);
/*
 * The next complete object: 1 and *obj, *len (valid until the next call),
 * 0 when more bytes are needed, -EPROTO when something other than an
 * object starts, -EMSGSIZE when an object runs past max.  After an error
 * the stream is unusable.
 */
int	 jsplit_next(struct jsplit *, const uint8_t **obj, size_t *len);

#endif /* JSPLIT_H */
