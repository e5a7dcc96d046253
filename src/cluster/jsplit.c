/*
 * jsplit.c: splits a byte stream into top-level JSON objects (see
 * jsplit.h).  Each byte is looked at once: the scan position survives
 * between calls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jsplit.h"

void
jsplit_init(struct jsplit *j, size_t max)
{
	memset(j, 0, sizeof(*j));
	j->max = max;
}

void
jsplit_deinit(struct jsplit *j)
{
	free(j->buf);
	memset(j, 0, sizeof(*j));
}

/* Drop the bytes already handed out, so the buffer holds one object. */
static void
jsplit_compact(struct jsplit *j)
{
	if (j->start == 0)
		return;
	memmove(j->buf, j->buf + j->start, j->len - j->start);
	j->len -= j->start;
	j->obj -= j->start;
	j->scan -= j->start;
	j->start = 0;
}

int
jsplit_feed(struct jsplit *j, const void *p, size_t n)
{
	uint8_t *nb;
	size_t cap;

	jsplit_compact(j);
	if (n > j->cap - j->len) {
		cap = j->cap ? j->cap : 4096;
		while (cap - j->len < n) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		if ((nb = realloc(j->buf, cap)) == NULL)
			return -ENOMEM;
		j->buf = nb;
		j->cap = cap;
	}
	if (n > 0)
		memcpy(j->buf + j->len, p, n);
	j->len += n;
	return 0;
}

int
jsplit_next(struct jsplit *j, const uint8_t **obj, size_t *len)
{
	uint8_t c;

	while (j->scan < j->len) {
		c = j->buf[j->scan++];
		if (j->depth == 0) {
			if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				j->start = j->scan;
				continue;
			}
			if (c != '{')
				return -EPROTO;
			j->obj = j->scan - 1;
			j->depth = 1;
			continue;
		}
		if (j->scan - j->obj > j->max)
			return -EMSGSIZE;
		if (j->in_str) {
			if (j->esc)
				j->esc = false;
			else if (c == '\\')
				j->esc = true;
			else if (c == '"')
				j->in_str = false;
			continue;
		}
		if (c == '"')
			j->in_str = true;
		else if (c == '{' || c == '[')
			j->depth++;
		else if ((c == '}' || c == ']') && --j->depth == 0) {
			*obj = j->buf + j->obj;
			*len = j->scan - j->obj;
			j->start = j->scan;
			return 1;
		}
	}
	/* Between objects nothing need be kept. */
	if (j->depth == 0)
		j->start = j->scan;
	return 0;
}
