/*
 * etcd_json.c: the gateway's JSON conventions, both ways.  Bytes travel
 * as standard base64, 64-bit numbers as decimal strings (numbers are
 * accepted too), and proto3 leaves out every field at its zero value: a
 * missing field is zero, a field of the wrong type is an error.  Nothing
 * here trusts what etcd sent: every type is checked, base64 is decoded
 * with its length bounded and its end verified.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "etcd_impl.h"

json_t *
etcd_json_b64(const void *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n,
	    sodium_base64_VARIANT_ORIGINAL);
	char *s;
	json_t *v;

	if ((s = malloc(cap)) == NULL)
		return NULL;
	sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	v = json_string(s);
	free(s);
	return v;
}

json_t *
etcd_json_int(int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_string(s);
}

int
etcd_json_set(json_t *o, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(o, key, v) != 0)
		return -ENOMEM;
	return 0;
}

int
etcd_json_i64(const json_t *o, const char *key, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	char *end;
	long long n;

	*out = 0;
	if (v == NULL)
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EPROTO;
	s = json_string_value(v);
	if (*s == '\0' || strlen(s) != json_string_length(v))
		return -EPROTO;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EPROTO;
	*out = n;
	return 0;
}

int
etcd_json_bool(const json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	*out = false;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return -EPROTO;
	*out = json_is_true(v);
	return 0;
}

int
etcd_json_obj(const json_t *o, const char *key, json_t **out)
{
	*out = json_object_get(o, key);
	return json_is_object(*out) ? 0 : -EPROTO;
}

/* The base64 string at key (absent: empty); its decoded size bound. */
static int
etcd_json_b64_field(const json_t *o, const char *key, const char **s,
    size_t *n)
{
	json_t *v = json_object_get(o, key);

	*s = "";
	*n = 0;
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return -EPROTO;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

size_t
etcd_json_kv_size(const json_t *o)
{
	const char *s;
	size_t k = 0, v = 0;

	if (etcd_json_b64_field(o, "key", &s, &k) != 0 ||
	    etcd_json_b64_field(o, "value", &s, &v) != 0)
		return 0;
	return k / 4 * 3 + 3 + v / 4 * 3 + 3;
}

/* Decode base64 s (n chars) into *mem, advancing it. */
static int
etcd_json_unb64(const char *s, size_t n, const uint8_t **out, size_t *len,
    uint8_t **mem)
{
	const char *end;

	*out = *mem;
	*len = 0;
	if (n == 0)
		return 0;
	if (sodium_base642bin(*mem, n / 4 * 3 + 3, s, n, NULL, len, &end,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + n)
		return -EPROTO;
	*mem += *len;
	return 0;
}

int
etcd_json_kv(const json_t *o, struct etcd_kv *kv, uint8_t **mem)
{
	const char *s;
	size_t n;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(o))
		return -EPROTO;
	if (etcd_json_b64_field(o, "key", &s, &n) != 0 ||
	    etcd_json_unb64(s, n, &kv->key, &kv->key_len, mem) != 0 ||
	    etcd_json_b64_field(o, "value", &s, &n) != 0 ||
	    etcd_json_unb64(s, n, &kv->value, &kv->value_len, mem) != 0 ||
	    etcd_json_i64(o, "create_revision", &kv->create_rev) != 0 ||
	    etcd_json_i64(o, "mod_revision", &kv->mod_rev) != 0 ||
	    etcd_json_i64(o, "version", &kv->version) != 0 ||
	    etcd_json_i64(o, "lease", &kv->lease) != 0)
		return -EPROTO;
	return 0;
}

int
etcd_json_kvs(const json_t *a, struct etcd_kv **kvs, size_t *n,
    uint8_t **mem)
{
	size_t i, size = 1;
	uint8_t *p;

	*kvs = NULL;
	*mem = NULL;
	*n = 0;
	if (a == NULL)
		return 0;
	if (!json_is_array(a))
		return -EPROTO;
	if (json_array_size(a) == 0)
		return 0;
	for (i = 0; i < json_array_size(a); i++)
		size += etcd_json_kv_size(json_array_get(a, i));
	*kvs = calloc(json_array_size(a), sizeof(**kvs));
	*mem = malloc(size);
	if (*kvs == NULL || *mem == NULL)
		return -ENOMEM;
	p = *mem;
	for (i = 0; i < json_array_size(a); i++)
		if (etcd_json_kv(json_array_get(a, i), &(*kvs)[i], &p) != 0)
			return -EPROTO;
	*n = i;
	return 0;
}
