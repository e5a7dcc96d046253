/*
 * value.c: values between msgpack, JSON and text: JSON operands packed
 * as msgpack, and msgpack values as jansson values or JSON text for
 * printing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "utf8.h"

/* ---- JSON and text from msgpack ---- */

/*
 * The length of the well-formed UTF-8 character at s (n > 0 bytes left),
 * or 0: its first byte says how long it must be, utf8_valid whether it is.
 */
static size_t
value_utf8_char(const char *s, size_t n)
{
	unsigned char b = (unsigned char)s[0];
	size_t k = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 :
	    b >= 0xc0 ? 2 : 0;

	return k > 0 && k <= n && utf8_valid(s, k) ? k : 0;
}

/* Replace each byte that is not part of well-formed UTF-8 by '?'. */
void
value_scrub(char *s, size_t len)
{
	size_t k;

	if (utf8_valid(s, len))
		return;
	for (size_t i = 0; i < len; i += k) {
		if ((k = value_utf8_char(s + i, len - i)) == 0) {
			s[i] = '?';
			k = 1;
		}
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

/* A value for a table on a terminal: a bin as its size, <bin N bytes>
 * (its bytes as a string's escapes say nothing to a reader), anything
 * else as value_text. */
char *
value_cell(const void *mp, size_t len)
{
	msgpack_unpacked u;
	char *buf = NULL;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_BIN) {
		if (asprintf(&buf, "<bin %" PRIu32 " byte%s>",
		    u.data.via.bin.size, u.data.via.bin.size == 1 ? "" :
		    "s") < 0)
			buf = NULL;
	} else
		buf = value_text(mp, len);
	msgpack_unpacked_destroy(&u);
	return buf;
}

/*
 * procregctl printed a value with --json by reading procreg_format_json's
 * text back with jansson; value_json builds the same jansson value
 * straight from the msgpack object.  Where that text decides the result
 * (a float's digits, a key that is no str) the object is packed again
 * and formatted alone; where jansson refused the text (an integer beyond
 * int64, a str key holding a NUL) the whole value is the str of its text,
 * as it was.
 */

/*
 * The JSON text procreg_format_json writes for o, into buf (size bytes:
 * cut there, as the library cuts a key's text); its length, or -1.
 */
static int
value_format(const msgpack_object *o, char *buf, size_t size)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int n = -1;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *o) == 0)
		n = procreg_format_json(buf, size, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return n;
}

/* A str or bin as a JSON string: each byte that is not part of
 * well-formed UTF-8 as U+FFFD, as procreg_format_json writes it. */
static json_t *
value_string(const char *s, size_t n)
{
	char *buf, *q;
	json_t *j;
	size_t k;

	/* An empty str's ptr may be NULL, which jansson refuses. */
	if (n == 0)
		return json_string("");
	if (utf8_valid(s, n))
		return json_stringn_nocheck(s, n);
	if ((buf = malloc(3 * n)) == NULL)
		return NULL;
	q = buf;
	for (size_t i = 0; i < n; i += k) {
		if ((k = value_utf8_char(s + i, n - i)) == 0) {
			memcpy(q, "\xef\xbf\xbd", 3);
			q += 3;
			k = 1;
		} else {
			memcpy(q, s + i, k);
			q += k;
		}
	}
	j = json_stringn_nocheck(buf, (size_t)(q - buf));
	free(buf);
	return j;
}

/* A float as the library's shortest text reads back (NaN, infinities:
 * null). */
static json_t *
value_real(const msgpack_object *o)
{
	char text[64];

	if (value_format(o, text, sizeof(text)) < 0)
		return NULL;
	if (strcmp(text, "null") == 0)
		return json_null();
	return json_real(strtod(text, NULL));
}

/* A map key: a str as it is, anything else its JSON text, cut at 255
 * bytes. */
static json_t *
value_key(const msgpack_object *k)
{
	char text[256];
	int n;

	if (k->type == MSGPACK_OBJECT_STR)
		return value_string(k->via.str.ptr, k->via.str.size);
	if ((n = value_format(k, text, sizeof(text))) < 0)
		return NULL;
	return value_string(text, (size_t)n < sizeof(text) ? (size_t)n :
	    sizeof(text) - 1);
}

/*
 * o as a jansson value; NULL when out of memory, or with *fits false when
 * the text would not have read back (see above).
 */
static json_t *
value_object(const msgpack_object *o, bool *fits)
{
	json_t *j, *v, *key;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX) {
			*fits = false;
			return NULL;
		}
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return value_real(o);
	case MSGPACK_OBJECT_STR:
		return value_string(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return value_string(o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_EXT:
		return json_pack("{s:i, s:I}", "ext", (int)o->via.ext.type,
		    "size", (json_int_t)o->via.ext.size);
	case MSGPACK_OBJECT_ARRAY:
		if ((j = json_array()) == NULL)
			return NULL;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			v = value_object(&o->via.array.ptr[i], fits);
			if (json_array_append_new(j, v) < 0)
				goto fail;
		}
		return j;
	case MSGPACK_OBJECT_MAP:
		if ((j = json_object()) == NULL)
			return NULL;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			int r = -1;

			if (kv->key.type == MSGPACK_OBJECT_STR &&
			    kv->key.via.str.size > 0 &&
			    memchr(kv->key.via.str.ptr, '\0',
			    kv->key.via.str.size) != NULL) {
				*fits = false;
				goto fail;
			}
			if ((key = value_key(&kv->key)) == NULL)
				goto fail;
			/* A repeated key: the last value, in the first one's
			 * place, as jansson's parser keeps it. */
			if ((v = value_object(&kv->val, fits)) != NULL)
				r = json_object_setn_new_nocheck(j,
				    json_string_value(key),
				    json_string_length(key), v);
			json_decref(key);
			if (r < 0)
				goto fail;
		}
		return j;
	}
	return NULL;
fail:
	json_decref(j);
	return NULL;
}

/* msgpack bytes as a jansson value (not msgpack: null, as its text). */
json_t *
value_json(const void *mp, size_t len)
{
	msgpack_unpacked u;
	json_t *j = NULL;
	bool fits = true;
	char *text;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, NULL) != MSGPACK_UNPACK_SUCCESS)
		j = json_null();
	else if ((j = value_object(&u.data, &fits)) == NULL && !fits &&
	    (text = value_text(mp, len)) != NULL) {
		j = json_string(text);
		free(text);
	}
	msgpack_unpacked_destroy(&u);
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
 * Parse JSON text of len bytes (what names it for errors) into msgpack
 * bytes in sb; false after a usage error was printed.
 */
static bool
value_from_json(const struct ctl *c, const char *what, const char *text,
    size_t len, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	json_error_t err;
	json_t *j;
	int r;

	j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (j == NULL) {
		args_error(c, "%s is not JSON: %s (column %d)", what,
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

/* How much of standard input a PAYLOAD of "-" may take, bytes. */
#define VALUE_STDIN_MAX		(64u * 1024 * 1024)

static bool	value_bytes(const struct ctl *, const char *, const char *,
		    size_t, bool, msgpack_sbuffer *);

/*
 * An operand (what names it for errors) as msgpack into sb: a str, or
 * with json the JSON value.  false after an error was printed.
 */
bool
value_operand(const struct ctl *c, const char *what, const char *text,
    bool json, msgpack_sbuffer *sb)
{
	return value_bytes(c, what, text, strlen(text), json, sb);
}

/* value_operand of len bytes, which may hold NULs. */
static bool
value_bytes(const struct ctl *c, const char *what, const char *text,
    size_t len, bool json, msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	if (json)
		return value_from_json(c, what, text, len, sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (msgpack_pack_str_with_body(&pk, text, len) != 0) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	return true;
}

/*
 * All of standard input into *buf (malloc'd), up to VALUE_STDIN_MAX
 * bytes: more than any daemon takes in one message, less than would
 * exhaust memory.  false after an error was printed.
 */
static bool
value_read_stdin(const struct ctl *c, char **buf, size_t *len)
{
	size_t cap = 0, n;
	char *b = NULL, *nb;

	*len = 0;
	for (;;) {
		if (*len == cap) {
			if (cap >= VALUE_STDIN_MAX) {
				free(b);
				return out_error(c, EXIT_USAGE, "too_large",
				    NULL, "PAYLOAD on standard input is larger "
				    "than %u bytes", VALUE_STDIN_MAX), false;
			}
			cap = cap ? 2 * cap : 65536;
			if ((nb = realloc(b, cap)) == NULL) {
				free(b);
				fprintf(stderr, "procregctl: out of memory\n");
				return false;
			}
			b = nb;
		}
		n = fread(b + *len, 1, cap - *len, stdin);
		*len += n;
		if (n == 0)
			break;
	}
	if (ferror(stdin)) {
		free(b);
		return out_error(c, EXIT_ERROR, "error", NULL, "cannot read "
		    "PAYLOAD from standard input"), false;
	}
	*buf = b;
	return true;
}

/* A PAYLOAD operand: JSON with --json-payload; "-": read from standard
 * input, as it is (a str holds every byte, a final newline too). */
bool
value_payload(const struct ctl *c, const char *text, msgpack_sbuffer *sb)
{
	char *buf;
	size_t len;
	bool ok;

	if (strcmp(text, "-") != 0)
		return value_operand(c, "PAYLOAD", text, c->json_payload, sb);
	if (!value_read_stdin(c, &buf, &len))
		return false;
	ok = value_bytes(c, "PAYLOAD on standard input", buf, len,
	    c->json_payload, sb);
	free(buf);
	return ok;
}
