/*
 * etcd_txn.c: transactions: a builder of compares and ops in the
 * gateway's JSON, and the recipes the cluster code runs (create if
 * absent under a lease, delete or put fenced by a revision, batches of
 * fenced deletes).  Each list is held to etcd's default --max-txn-ops, so
 * an over-long batch fails here rather than at etcd.
 */
#include <errno.h>
#include <stdlib.h>

#include "etcd_impl.h"

struct etcd_txn *
etcd_txn_new(void)
{
	struct etcd_txn *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->cmp = json_array();
	t->ops[0] = json_array();
	t->ops[1] = json_array();
	if (t->cmp == NULL || t->ops[0] == NULL || t->ops[1] == NULL)
		return etcd_txn_free(t);
	return t;
}

struct etcd_txn *
etcd_txn_free(struct etcd_txn *t)
{
	if (t == NULL)
		return NULL;
	json_decref(t->cmp);
	json_decref(t->ops[0]);
	json_decref(t->ops[1]);
	free(t);
	return NULL;
}

/* Append v (taken) to list a, within the bound. */
static int
etcd_txn_append(json_t *a, json_t *v)
{
	if (v == NULL)
		return -ENOMEM;
	if (json_array_size(a) >= ETCD_TXN_MAX_OPS) {
		json_decref(v);
		return -E2BIG;
	}
	return json_array_append_new(a, v) == 0 ? 0 : -ENOMEM;
}

/* {"key": b64} and, when field is set, field: num. */
static json_t *
etcd_txn_keyobj(const void *key, size_t key_len, const char *field,
    int64_t num)
{
	json_t *o;

	if ((o = json_object()) == NULL)
		return NULL;
	if (etcd_json_set(o, "key", etcd_json_b64(key, key_len)) != 0 ||
	    (field != NULL && etcd_json_set(o, field, etcd_json_int(num)) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* {name: inner}, inner taken. */
static json_t *
etcd_txn_wrap(const char *name, json_t *inner)
{
	json_t *o;

	if (inner == NULL || (o = json_object()) == NULL) {
		json_decref(inner);
		return NULL;
	}
	if (json_object_set_new(o, name, inner) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
etcd_txn_cmp(const void *key, size_t key_len, const char *target,
    const char *field, int64_t rev)
{
	json_t *o;

	if ((o = etcd_txn_keyobj(key, key_len, field, rev)) == NULL)
		return NULL;
	if (json_object_set_new(o, "target", json_string(target)) != 0 ||
	    json_object_set_new(o, "result", json_string("EQUAL")) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int
etcd_txn_cmp_create(struct etcd_txn *t, const void *key, size_t key_len,
    int64_t create_rev)
{
	return etcd_txn_append(t->cmp, etcd_txn_cmp(key, key_len, "CREATE",
	    "create_revision", create_rev));
}

int
etcd_txn_cmp_mod(struct etcd_txn *t, const void *key, size_t key_len,
    int64_t mod_rev)
{
	return etcd_txn_append(t->cmp, etcd_txn_cmp(key, key_len, "MOD",
	    "mod_revision", mod_rev));
}

int
etcd_txn_put(struct etcd_txn *t, bool on_success, const void *key,
    size_t key_len, const void *value, size_t value_len, int64_t lease)
{
	json_t *o;

	if ((o = etcd_txn_keyobj(key, key_len, lease ? "lease" : NULL,
	    lease)) == NULL)
		return -ENOMEM;
	if (etcd_json_set(o, "value", etcd_json_b64(value, value_len)) != 0) {
		json_decref(o);
		return -ENOMEM;
	}
	return etcd_txn_append(t->ops[on_success],
	    etcd_txn_wrap("request_put", o));
}

int
etcd_txn_get(struct etcd_txn *t, bool on_success, const void *key,
    size_t key_len)
{
	return etcd_txn_append(t->ops[on_success],
	    etcd_txn_wrap("request_range", etcd_txn_keyobj(key, key_len,
	    NULL, 0)));
}

int
etcd_txn_keys(struct etcd_txn *t, bool on_success, const void *key,
    size_t key_len, const void *range_end, size_t range_end_len)
{
	json_t *o = etcd_txn_keyobj(key, key_len, NULL, 0);

	if (o == NULL || etcd_json_set(o, "range_end", etcd_json_b64(range_end,
	    range_end_len)) != 0 || etcd_json_set(o, "keys_only",
	    json_true()) != 0) {
		json_decref(o);
		return -ENOMEM;
	}
	return etcd_txn_append(t->ops[on_success], etcd_txn_wrap(
	    "request_range", o));
}

int
etcd_txn_del(struct etcd_txn *t, bool on_success, const void *key,
    size_t key_len)
{
	return etcd_txn_append(t->ops[on_success],
	    etcd_txn_wrap("request_delete_range", etcd_txn_keyobj(key,
	    key_len, NULL, 0)));
}

int
etcd_txn_del_if_created(struct etcd_txn *t, const void *key,
    size_t key_len, int64_t create_rev)
{
	json_t *in, *cmp, *ops;

	if (json_array_size(t->ops[1]) >= ETCD_TXN_MAX_OPS)
		return -E2BIG;
	cmp = json_array();
	ops = json_array();
	in = json_object();
	if (cmp == NULL || ops == NULL || in == NULL ||
	    json_array_append_new(cmp, etcd_txn_cmp(key, key_len, "CREATE",
	    "create_revision", create_rev)) != 0 ||
	    json_array_append_new(ops, etcd_txn_wrap("request_delete_range",
	    etcd_txn_keyobj(key, key_len, NULL, 0))) != 0 ||
	    json_object_set(in, "compare", cmp) != 0 ||
	    json_object_set(in, "success", ops) != 0) {
		json_decref(cmp);
		json_decref(ops);
		json_decref(in);
		return -ENOMEM;
	}
	json_decref(cmp);
	json_decref(ops);
	return etcd_txn_append(t->ops[1], etcd_txn_wrap("request_txn", in));
}

int
etcd_txn(struct etcd *e, struct etcd_txn *t, etcd_cb *cb, void *arg)
{
	json_t *body;

	if (t == NULL)
		return -ENOMEM;
	if ((body = json_object()) == NULL ||
	    json_object_set(body, "compare", t->cmp) != 0 ||
	    json_object_set(body, "success", t->ops[1]) != 0 ||
	    json_object_set(body, "failure", t->ops[0]) != 0) {
		json_decref(body);
		etcd_txn_free(t);
		return -ENOMEM;
	}
	etcd_txn_free(t);
	return etcd_op_start(e, ETCD_OP_TXN, body, cb, arg);
}

int
etcd_txn_create(struct etcd *e, const void *key, size_t key_len,
    const void *value, size_t value_len, int64_t lease, etcd_cb *cb,
    void *arg)
{
	struct etcd_txn *t;
	int rc;

	if ((t = etcd_txn_new()) == NULL)
		return -ENOMEM;
	if ((rc = etcd_txn_cmp_create(t, key, key_len, 0)) != 0 ||
	    (rc = etcd_txn_put(t, true, key, key_len, value, value_len,
	    lease)) != 0 ||
	    (rc = etcd_txn_get(t, false, key, key_len)) != 0) {
		etcd_txn_free(t);
		return rc;
	}
	return etcd_txn(e, t, cb, arg);
}

int
etcd_txn_delete_created(struct etcd *e, const void *key, size_t key_len,
    int64_t create_rev, etcd_cb *cb, void *arg)
{
	struct etcd_txn *t;
	int rc;

	if ((t = etcd_txn_new()) == NULL)
		return -ENOMEM;
	if ((rc = etcd_txn_cmp_create(t, key, key_len, create_rev)) != 0 ||
	    (rc = etcd_txn_del(t, true, key, key_len)) != 0) {
		etcd_txn_free(t);
		return rc;
	}
	return etcd_txn(e, t, cb, arg);
}

int
etcd_txn_put_if_mod(struct etcd *e, const void *key, size_t key_len,
    const void *value, size_t value_len, int64_t lease, int64_t mod_rev,
    etcd_cb *cb, void *arg)
{
	struct etcd_txn *t;
	int rc;

	if ((t = etcd_txn_new()) == NULL)
		return -ENOMEM;
	if ((rc = etcd_txn_cmp_mod(t, key, key_len, mod_rev)) != 0 ||
	    (rc = etcd_txn_put(t, true, key, key_len, value, value_len,
	    lease)) != 0) {
		etcd_txn_free(t);
		return rc;
	}
	return etcd_txn(e, t, cb, arg);
}
