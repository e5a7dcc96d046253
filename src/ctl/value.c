/*
 * value.c: values between msgpack, JSON and text: JSON operands packed
 * as msgpack, and msgpack values as jansson values or JSON text for
 * printing.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* Replace each byte that is not part of well-formed UTF-8 by '?'. */
void
value_scrub(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char b = (unsigned char)s[i];
		size_t n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 :
		    b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
		bool ok = n > 0 && i + n <= len;

		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (ok && n > 2) {
			unsigned char b1 = (unsigned char)s[i + 1];

			/* Overlong forms, surrogates, above U+10FFFF. */
			ok = !(b == 0xe0 && b1 < 0xa0) &&
			    !(b == 0xed && b1 >= 0xa0) &&
			    !(b == 0xf0 && b1 < 0x90) &&
			    !(b == 0xf4 && b1 >= 0x90);
		}
		if (!ok) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/* msgpack bytes as JSON text (procreg_format_json), in malloc'd memory. */
char *
value_text(const void *mp, size_t len)
{
	char small[256], *buf;
	int n;

	n = procreg_format_json(small, sizeof(small), mp, len);
	if (n < 0)
		return strdup("null");
	if ((buf = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if ((size_t)n < sizeof(small))
		memcpy(buf, small, (size_t)n + 1);
	else
		procreg_format_json(buf, (size_t)n + 1, mp, len);
	value_scrub(buf, (size_t)n);
	return buf;
}

/*
 * msgpack bytes as a jansson value.  What JSON cannot hold (NaN, integers
 * beyond int64) comes out as the string of its text.
 */
json_t *
value_json(const void *mp, size_t len)
{
	char *text = value_text(mp, len);
	json_t *j;

	if (text == NULL)
		return NULL;
	j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (j == NULL)
		j = json_string(text);
	free(text);
	return j;
}

/* ---- msgpack from JSON ---- */

/* Pack a JSON value as msgpack: objects as maps, reals as float64. */
static int
value_pack_json(msgpack_packer *pk, json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;
	int r = 0;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		r = msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach(j, key, v) {
			if (r == 0)
				r = msgpack_pack_str_with_body(pk, key,
				    strlen(key));
			if (r == 0)
				r = value_pack_json(pk, v);
		}
		return r;
	case JSON_ARRAY:
		r = msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, v) {
			if (r == 0)
				r = value_pack_json(pk, v);
		}
		return r;
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(j),
		    json_string_length(j));
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, json_integer_value(j));
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(j));
	case JSON_TRUE:
		return msgpack_pack_true(pk);
	case JSON_FALSE:
		return msgpack_pack_false(pk);
	case JSON_NULL:
		return msgpack_pack_nil(pk);
	}
	return -1;
}

/*
 * Parse JSON text (what names it for errors) into msgpack bytes in sb;
 * false after a usage error was printed.
 */
bool
value_from_json(const struct ctl *c, const char *what, const char *text,
    msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	json_error_t err;
	json_t *j;
	int r;

	j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (j == NULL) {
		args_error(c->cmd, "%s is not JSON: %s (column %d)", what,
		    err.text, err.column);
		return false;
	}
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	r = value_pack_json(&pk, j);
	json_decref(j);
	if (r != 0) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	return true;
}

/* A PAYLOAD operand as msgpack into sb: a str, or JSON with
 * --json-payload.  false after a usage error was printed. */
bool
value_payload(const struct ctl *c, const char *text, msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	if (c->json_payload)
		return value_from_json(c, "PAYLOAD", text, sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (msgpack_pack_str_with_body(&pk, text, strlen(text)) != 0) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	return true;
}
