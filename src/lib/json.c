/*
 * json.c: procreg_format_json, msgpack bytes as JSON text for people and
 * for procregctl: bytes that are not UTF-8 become U+FFFD, floats are the
 * shortest text that reads back the same, and NaN and the infinities
 * (which JSON lacks) are null.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "procreg.h"
#include "utf8.h"

/* A JSON writer over a fixed buffer, counting what would not fit. */
struct json_buf {
	char	*b;
	size_t	 size;
	size_t	 len;
};

static void
json_put(struct json_buf *j, const char *s, size_t n)
{
	if (j->len < j->size) {
		size_t room = j->size - j->len - 1;

		memcpy(j->b + j->len, s, n < room ? n : room);
	}
	j->len += n;
}

static void
json_printf(struct json_buf *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
json_printf(struct json_buf *j, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		json_put(j, tmp, (size_t)n < sizeof(tmp) ? (size_t)n :
		    sizeof(tmp) - 1);
}

/*
 * The length of the valid UTF-8 sequence at s (n bytes left), or 0: the
 * lead byte says how long it would be, utf8_valid (src/common/utf8.c) whether it is.
 */
static size_t
json_utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;

	if (s[0] < 0x80)
		return 1;
	k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	if (k == 0 || k > n || !utf8_valid((const char *)s, k))
		return 0;
	return k;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void
json_string(struct json_buf *j, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	json_put(j, "\"", 1);
	for (size_t i = 0; i < n;) {
		size_t k = json_utf8_seq(s + i, n - i);

		if (k == 0) {
			json_put(j, "\\ufffd", 6);
			i++;
		} else if (s[i] == '"' || s[i] == '\\') {
			json_put(j, "\\", 1);
			json_put(j, (const char *)s + i, 1);
			i++;
		} else if (s[i] < 0x20) {
			json_printf(j, "\\u%04x", s[i]);
			i++;
		} else {
			json_put(j, (const char *)s + i, k);
			i += k;
		}
	}
	json_put(j, "\"", 1);
}

/* The shortest text that reads back as the same float; NaN and the
 * infinities, which JSON lacks, as null. */
static void
json_float(struct json_buf *j, double v, bool single)
{
	char tmp[40];

	if (v != v || v > 1.7976931348623157e308 ||
	    v < -1.7976931348623157e308) {
		json_put(j, "null", 4);
		return;
	}
	for (int prec = single ? 6 : 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (single ? (float)strtod(tmp, NULL) == (float)v :
		    strtod(tmp, NULL) == v)
			break;
	}
	/* Keep it a float for readers that tell 1 from 1.0. */
	if (strpbrk(tmp, ".e") == NULL)
		strcat(tmp, ".0");
	json_put(j, tmp, strlen(tmp));
}

static void
json_value(struct json_buf *j, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		json_put(j, "null", 4);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		json_put(j, o->via.boolean ? "true" : "false",
		    o->via.boolean ? 4 : 5);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		json_printf(j, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		json_printf(j, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		json_float(j, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32);
		break;
	case MSGPACK_OBJECT_STR:
		json_string(j, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		/* JSON has no bytes: a bin shows as a string of its bytes. */
		json_string(j, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		json_printf(j, "{\"ext\":%d,\"size\":%u}", (int)o->via.ext.type,
		    (unsigned)o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		json_put(j, "[", 1);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				json_put(j, ",", 1);
			json_value(j, &o->via.array.ptr[i]);
		}
		json_put(j, "]", 1);
		break;
	case MSGPACK_OBJECT_MAP:
		json_put(j, "{", 1);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;

			if (i)
				json_put(j, ",", 1);
			/* JSON keys are strings: other keys are written as
			 * their JSON text, quoted. */
			if (k->type == MSGPACK_OBJECT_STR) {
				json_value(j, k);
			} else {
				char tmp[256];
				struct json_buf kj = { tmp, sizeof(tmp), 0 };

				json_value(&kj, k);
				json_string(j, tmp,
				    kj.len < sizeof(tmp) ? kj.len :
				    sizeof(tmp) - 1);
			}
			json_put(j, ":", 1);
			json_value(j, &o->via.map.ptr[i].val);
		}
		json_put(j, "}", 1);
		break;
	}
}

int
procreg_format_json(char *buf, size_t size, const void *mp, size_t len)
{
	struct json_buf j = { buf, size, 0 };
	msgpack_unpacked u;
	size_t off = 0;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, &off) != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&u);
		if (size > 0)
			buf[0] = '\0';
		return -1;
	}
	json_value(&j, &u.data);
	msgpack_unpacked_destroy(&u);
	if (size > 0)
		buf[j.len < size ? j.len : size - 1] = '\0';
	return (int)j.len;
}
