/*
 * args.c: the typed cursor over a request's params (see args.h).  Part of
 * the protocol layer: with proto.c, the only code that reads msgpack.
 */
#include <string.h>

#include "args.h"

bool
args_more(const struct pr_args *a)
{
	return a->i < a->n;
}

int
args_str(struct pr_args *a, size_t max, const char **s, size_t *len)
{
	const msgpack_object *o;

	if (a->i >= a->n)
		return PR_ERR_BAD_REQUEST;
	o = &a->v[a->i];
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
		return PR_ERR_BAD_REQUEST;
	/* msgpack-c gives an empty str a NULL ptr: never hand that on. */
	*s = o->via.str.size > 0 ? o->via.str.ptr : "";
	*len = o->via.str.size;
	a->i++;
	return 0;
}

int
args_name(struct pr_args *a, const char **s, size_t *len)
{
	const char *p;
	size_t l;

	if (args_str(a, PR_NAME_MAX, &p, &l) != 0)
		return PR_ERR_BAD_REQUEST;
	if (!registry_name_valid(p, l)) {
		a->i--;
		return PR_ERR_BAD_REQUEST;
	}
	*s = p;
	*len = l;
	return 0;
}

int
args_uint(struct pr_args *a, uint64_t *u)
{
	if (a->i >= a->n || !proto_is_uint(&a->v[a->i]))
		return PR_ERR_BAD_REQUEST;
	*u = a->v[a->i++].via.u64;
	return 0;
}

int
args_value(struct pr_args *a, const pr_value **v)
{
	if (a->i >= a->n)
		return PR_ERR_BAD_REQUEST;
	*v = &a->v[a->i++];
	return 0;
}

bool
args_nil(const struct pr_args *a)
{
	return a->i < a->n && a->v[a->i].type == MSGPACK_OBJECT_NIL;
}

int
args_target(struct pr_args *a, struct reg_target *t)
{
	if (a->i < a->n && proto_is_uint(&a->v[a->i])) {
		t->name = NULL;
		t->len = 0;
		t->conn = a->v[a->i++].via.u64;
		return 0;
	}
	t->conn = 0;
	return args_name(a, &t->name, &t->len);
}

int
args_array(struct pr_args *a, struct pr_args *sub)
{
	const msgpack_object *o;

	if (a->i >= a->n || a->v[a->i].type != MSGPACK_OBJECT_ARRAY)
		return PR_ERR_BAD_REQUEST;
	o = &a->v[a->i++];
	sub->v = o->via.array.ptr;
	sub->n = o->via.array.size;
	sub->i = 0;
	return 0;
}

uint32_t
args_left(const struct pr_args *a)
{
	return a->n - a->i;
}

int
args_opts(struct pr_args *a, struct pr_opt *opts, size_t nopts)
{
	const msgpack_object *o;

	if (a->i >= a->n || a->v[a->i].type != MSGPACK_OBJECT_MAP)
		return PR_ERR_BAD_REQUEST;
	o = &a->v[a->i];
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;
		struct pr_opt *op = NULL;

		if (k->type != MSGPACK_OBJECT_STR)
			return PR_ERR_BAD_REQUEST;
		for (size_t j = 0; j < nopts; j++) {
			if (strlen(opts[j].key) == k->via.str.size &&
			    memcmp(opts[j].key, k->via.str.ptr,
			    k->via.str.size) == 0)
				op = &opts[j];
		}
		/* Unknown keys are refused, so that a typo is not a no-op. */
		if (op == NULL || op->set)
			return PR_ERR_BAD_REQUEST;
		if (op->type == PR_OPT_BOOL) {
			if (v->type != MSGPACK_OBJECT_BOOLEAN)
				return PR_ERR_BAD_REQUEST;
			op->b = v->via.boolean;
		} else if (op->type == PR_OPT_STR) {
			if (v->type != MSGPACK_OBJECT_STR)
				return PR_ERR_BAD_REQUEST;
			op->s = v->via.str.ptr;
			op->len = v->via.str.size;
		} else {
			if (!proto_is_uint(v))
				return PR_ERR_BAD_REQUEST;
			op->u = v->via.u64;
		}
		op->set = true;
	}
	a->i++;
	return 0;
}

int
args_error(struct pr_args *a, const char **code, size_t *clen,
    const char **msg, size_t *mlen)
{
	const msgpack_object *o, *e;

	if (a->i >= a->n || a->v[a->i].type != MSGPACK_OBJECT_ARRAY)
		return PR_ERR_BAD_REQUEST;
	o = &a->v[a->i];
	if (o->via.array.size != 2)
		return PR_ERR_BAD_REQUEST;
	e = o->via.array.ptr;
	if (e[0].type != MSGPACK_OBJECT_STR || e[1].type != MSGPACK_OBJECT_STR ||
	    e[0].via.str.size == 0 || e[0].via.str.size > PR_CODE_MAX)
		return PR_ERR_BAD_REQUEST;
	*code = e[0].via.str.ptr;
	*clen = e[0].via.str.size;
	*msg = e[1].via.str.size > 0 ? e[1].via.str.ptr : "";
	*mlen = e[1].via.str.size;
	a->i++;
	return 0;
}
