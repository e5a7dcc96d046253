/*
 * guard.c: header-only msgpack scanner enforcing size and depth bounds
 * (see guard.h).
 */
#include <string.h>

#include "guard.h"

void
guard_init(struct guard *g, uint64_t max)
{
	memset(g, 0, sizeof(*g));
	g->max = max;
}

/* Can extra more bytes still fit in the object's budget? */
static int
fits(const struct guard *g, uint64_t extra)
{
	return g->size + g->pending + extra <= g->max;
}

/* A value ended: close finished containers; GUARD_OBJECT at the top. */
static enum guard_status
value_done(struct guard *g)
{
	while (g->depth > 0) {
		if (--g->remain[g->depth - 1] > 0)
			return GUARD_MORE;
		g->depth--;
	}
	return GUARD_OBJECT;
}

static enum guard_status
open_container(struct guard *g, uint64_t elems)
{
	/* An empty container is a level too, though it closes at once. */
	if (g->depth >= PR_NESTING_MAX)
		return GUARD_TOO_DEEP;
	if (elems == 0)
		return value_done(g);
	if (!fits(g, elems))
		return GUARD_TOO_LARGE;
	g->remain[g->depth++] = elems;
	g->pending += elems;
	return GUARD_MORE;
}

static enum guard_status
set_skip(struct guard *g, uint64_t len)
{
	if (len == 0)
		return value_done(g);
	if (!fits(g, len))
		return GUARD_TOO_LARGE;
	g->skip = len;
	return GUARD_MORE;
}

static void
need_header(struct guard *g, uint8_t type, uint8_t n)
{
	g->type = type;
	g->hdr_need = n;
	g->hdr_have = 0;
}

/* Big-endian integer of the first n header bytes. */
static uint64_t
hdr_uint(const struct guard *g, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | g->hdr[i];
	return v;
}

static enum guard_status
header_done(struct guard *g)
{
	switch (g->type) {
	case 0xc4: case 0xd9: case 0xc7:	/* bin8, str8, ext8 */
		return set_skip(g, hdr_uint(g, 1));
	case 0xc5: case 0xda: case 0xc8:	/* bin16, str16, ext16 */
		return set_skip(g, hdr_uint(g, 2));
	case 0xc6: case 0xdb: case 0xc9:	/* bin32, str32, ext32 */
		return set_skip(g, hdr_uint(g, 4));
	case 0xdc:
		return open_container(g, hdr_uint(g, 2));
	case 0xdd:
		return open_container(g, hdr_uint(g, 4));
	case 0xde:
		return open_container(g, 2 * hdr_uint(g, 2));
	default:				/* 0xdf */
		return open_container(g, 2 * hdr_uint(g, 4));
	}
}

static enum guard_status
type_byte(struct guard *g, uint8_t b)
{
	if (g->depth > 0)
		g->pending--;
	if (b <= 0x7f || b >= 0xe0)
		return value_done(g);		/* fixint */
	if (b <= 0x8f)
		return open_container(g, 2u * (b & 0x0f));
	if (b <= 0x9f)
		return open_container(g, b & 0x0f);
	if (b <= 0xbf)
		return set_skip(g, b & 0x1f);	/* fixstr */
	switch (b) {
	case 0xc0: case 0xc2: case 0xc3:
		return value_done(g);
	case 0xc1:
		return GUARD_BAD;
	case 0xc4: case 0xd9: case 0xdc: case 0xde: case 0xc5: case 0xda:
	case 0xdd: case 0xdf: case 0xc6: case 0xdb:
		need_header(g, b, (b == 0xc4 || b == 0xd9) ? 1 :
		    (b == 0xc5 || b == 0xda || b == 0xdc || b == 0xde) ? 2 : 4);
		return GUARD_MORE;
	case 0xc7:
		need_header(g, b, 2);		/* length, ext type */
		return GUARD_MORE;
	case 0xc8:
		need_header(g, b, 3);
		return GUARD_MORE;
	case 0xc9:
		need_header(g, b, 5);
		return GUARD_MORE;
	case 0xca: case 0xce: case 0xd2:
		return set_skip(g, 4);
	case 0xcb: case 0xcf: case 0xd3:
		return set_skip(g, 8);
	case 0xcc: case 0xd0:
		return set_skip(g, 1);
	case 0xcd: case 0xd1:
		return set_skip(g, 2);
	case 0xd4:
		return set_skip(g, 2);		/* fixext: type + data */
	case 0xd5:
		return set_skip(g, 3);
	case 0xd6:
		return set_skip(g, 5);
	case 0xd7:
		return set_skip(g, 9);
	default:				/* 0xd8 fixext16 */
		return set_skip(g, 17);
	}
}

enum guard_status
guard_scan(struct guard *g, const uint8_t *p, size_t n, size_t *used)
{
	enum guard_status st = GUARD_MORE;
	size_t i = 0;

	while (i < n) {
		if (g->skip > 0) {
			uint64_t k = n - i < g->skip ? n - i : g->skip;

			i += k;
			g->size += k;
			g->skip -= k;
			if (g->skip > 0)
				break;
			if ((st = value_done(g)) != GUARD_MORE)
				break;
			continue;
		}
		if (g->size >= g->max) {
			st = GUARD_TOO_LARGE;
			break;
		}
		g->size++;
		if (g->hdr_need > 0) {
			g->hdr[g->hdr_have++] = p[i++];
			if (--g->hdr_need > 0)
				continue;
			if ((st = header_done(g)) != GUARD_MORE)
				break;
			continue;
		}
		if ((st = type_byte(g, p[i++])) != GUARD_MORE)
			break;
	}
	*used = i;
	if (st == GUARD_OBJECT)
		guard_init(g, g->max);
	return st;
}
