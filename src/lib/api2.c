/*
 * api2.c: the protocol-2 calls of libprocreg: call and reply, groups and
 * publish, connection targets, update, keys, register_many, queued
 * ownership, fencing, await, subscriptions; and protocol 3's nodes.  They
 * are used without asking hello's protocol first: an older daemon answers
 * unknown_method (or bad_request for a connection target), and
 * api_need_status then says which protocol the daemon speaks.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

int
procreg_send_conn(procreg_t *p, uint64_t conn, const void *payload,
    size_t len)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (payload == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = conn_check_value(p, payload, len, PARAM_LEVELS,
	    "payload")) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "send", 2);
	msgpack_pack_uint64(&p->pk, conn);
	(void)conn_req_write(p, payload, len);
	return api_p2_status(p, conn_call(p, id, &res));
}

/*
 * call name, or connection conn when name is NULL.  The daemon answers
 * timeout itself when timeout_ms passes: our own wait is that plus the
 * handle's timeout, for the daemon to answer in.
 */
static int
api2_call(procreg_t *p, const char *name, uint64_t conn,
    const void *payload, size_t len, int timeout_ms, void **result,
    size_t *result_len)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (result != NULL)
		*result = NULL;
	if (result_len != NULL)
		*result_len = 0;
	if (payload == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if (timeout_ms < 0)
		return handle_fail(p, PROCREG_E_INVAL,
		    "a negative call timeout");
	if ((r = conn_check_value(p, payload, len, PARAM_LEVELS,
	    "payload")) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "call", timeout_ms > 0 ? 3 : 2);
	if (name != NULL)
		conn_pack_str(p, name);
	else
		msgpack_pack_uint64(&p->pk, conn);
	(void)conn_req_write(p, payload, len);
	if (timeout_ms > 0)
		msgpack_pack_uint32(&p->pk, (uint32_t)timeout_ms);
	r = conn_call_wait(p, id, &res, (timeout_ms > 0 ? (int64_t)timeout_ms :
	    (int64_t)PR_CALL_TIMEOUT_DEFAULT) + p->timeout_ms);
	if (r != PROCREG_OK)
		return api_p2_status(p, r);
	if (result != NULL) {
		size_t n;

		if ((*result = decode_encode(res, &n)) == NULL)
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		if (result_len != NULL)
			*result_len = n;
	}
	return PROCREG_OK;
}

int
procreg_call(procreg_t *p, const char *name, const void *payload,
    size_t len, int timeout_ms, void **result, size_t *result_len)
{
	int r;

	if (result != NULL)
		*result = NULL;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	return api2_call(p, name, 0, payload, len, timeout_ms, result,
	    result_len);
}

int
procreg_call_conn(procreg_t *p, uint64_t conn, const void *payload,
    size_t len, int timeout_ms, void **result, size_t *result_len)
{
	return api2_call(p, NULL, conn, payload, len, timeout_ms, result,
	    result_len);
}

/* A call id this connection did not receive (it came before a
 * reconnect, or was answered): not sent to a daemon that never made it. */
static int
api2_not_this_call(procreg_t *p, uint64_t call_id)
{
	return handle_fail(p, PROCREG_E_NOT_FOUND,
	    "no call %" PRIu64 " pending on "
	    "this connection (reconnected since?)", call_id);
}

/* Send a packed reply to (the caller's) call_id; never to a new
 * connection. */
static int
api2_reply_call(procreg_t *p, uint32_t id, uint64_t call_id)
{
	const msgpack_object *res;
	bool reconnected;
	int r;

	r = conn_call_bound(p, id, &res, &reconnected);
	if (reconnected)
		return api2_not_this_call(p, call_id);
	if (p->auto_reconnect && r != PROCREG_E_TIMEOUT &&
	    r != PROCREG_E_CLOSED)
		(void)reconnect_call_known(p, &call_id, true);
	return api_p2_status(p, r);
}

int
procreg_reply(procreg_t *p, uint64_t call_id, const void *result,
    size_t len)
{
	uint64_t user_id = call_id;
	uint32_t id;
	int r;

	if ((r = conn_check_value(p, result, len, PARAM_LEVELS,
	    "result")) != PROCREG_OK)
		return r;
	if (p->auto_reconnect && !reconnect_call_known(p, &call_id, false))
		return api2_not_this_call(p, user_id);
	id = conn_req_begin(p, "reply", 2);
	msgpack_pack_uint64(&p->pk, call_id);
	if (result != NULL)
		(void)conn_req_write(p, result, len);
	else
		msgpack_pack_nil(&p->pk);
	return api2_reply_call(p, id, user_id);
}

int
procreg_reply_error(procreg_t *p, uint64_t call_id, const char *code,
    const char *message)
{
	uint64_t user_id = call_id;
	uint32_t id;

	if (code == NULL)
		return handle_fail(p, PROCREG_E_INVAL,
		    "the error code is NULL");
	if (p->auto_reconnect && !reconnect_call_known(p, &call_id, false))
		return api2_not_this_call(p, user_id);
	id = conn_req_begin(p, "reply", 3);
	msgpack_pack_uint64(&p->pk, call_id);
	msgpack_pack_nil(&p->pk);
	msgpack_pack_array(&p->pk, 2);
	conn_pack_str(p, code);
	conn_pack_str(p, message != NULL ? message : "");
	return api2_reply_call(p, id, user_id);
}

int
procreg_join(procreg_t *p, const char *group, const void *value,
    size_t vlen, struct procreg_member **out)
{
	const msgpack_object *res;
	struct held_name *h = NULL;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = api_check_name(p, group)) != PROCREG_OK)
		return r;
	if ((r = conn_check_value(p, value, vlen, PARAM_LEVELS,
	    "value")) != PROCREG_OK)
		return r;
	/* Held before the request: a joined group is never forgotten for
	 * want of memory. */
	if (p->auto_reconnect && ((h = reconnect_name_new(p, group, value,
	    vlen, 0)) == NULL || reconnect_set_reserve(p, &p->groups, 1) !=
	    PROCREG_OK)) {
		reconnect_name_free(h);
		return PROCREG_E_NOMEM;
	}
	id = conn_req_begin(p, "join", value ? 2 : 1);
	conn_pack_str(p, group);
	if (value != NULL)
		(void)conn_req_write(p, value, vlen);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		reconnect_name_free(h);
		return api_p2_status(p, r);
	}
	if (h != NULL)
		reconnect_set_add(&p->groups, h);
	if (out != NULL && (*out = decode_member(res)) == NULL)
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed member entry");
	return PROCREG_OK;
}

int
procreg_leave(procreg_t *p, const char *group)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = api_check_name(p, group)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "leave", 1);
	conn_pack_str(p, group);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	reconnect_set_forget(&p->groups, group);
	return PROCREG_OK;
}

int
procreg_members(procreg_t *p, const char *group,
    struct procreg_member ***out, size_t *count)
{
	const msgpack_object *res;
	struct procreg_member **v;
	uint32_t id, n;
	int r;

	*out = NULL;
	*count = 0;
	if ((r = api_check_name(p, group)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "members", 1);
	conn_pack_str(p, group);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed members");
	n = res->via.array.size;
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if ((v[i] = decode_member(&res->via.array.ptr[i])) == NULL) {
			procreg_members_free(v, i);
			return handle_fail(p, PROCREG_E_NOMEM,
			    "out of memory or "
			    "malformed member entry");
		}
	}
	*out = v;
	*count = n;
	return PROCREG_OK;
}

int
procreg_publish(procreg_t *p, const char *group, const void *payload,
    size_t len, bool echo, uint64_t *delivered, uint64_t **busy,
    size_t *nbusy)
{
	const msgpack_object *res;
	uint64_t *b = NULL;
	size_t nb = 0;
	uint32_t id;
	int r;

	if (delivered != NULL)
		*delivered = 0;
	if (busy != NULL)
		*busy = NULL;
	if (nbusy != NULL)
		*nbusy = 0;
	if ((r = api_check_name(p, group)) != PROCREG_OK)
		return r;
	if (payload == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = conn_check_value(p, payload, len, PARAM_LEVELS,
	    "payload")) != PROCREG_OK)
		return r;
	/* Options only when they differ from the defaults. */
	id = conn_req_begin(p, "publish", echo ? 2 : 3);
	conn_pack_str(p, group);
	(void)conn_req_write(p, payload, len);
	if (!echo) {
		msgpack_pack_map(&p->pk, 1);
		conn_pack_str(p, "echo");
		msgpack_pack_false(&p->pk);
	}
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_MAP)
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed publish result");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (decode_is_str(k, "delivered") && delivered != NULL)
			*delivered = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "busy") &&
		    v->type == MSGPACK_OBJECT_ARRAY &&
		    busy != NULL && b == NULL) {
			nb = v->via.array.size;
			if ((b = calloc(nb ? nb : 1, sizeof(*b))) == NULL)
				return handle_fail(p, PROCREG_E_NOMEM,
				    "out of memory");
			for (size_t j = 0; j < nb; j++)
				b[j] =
				    (uint64_t)decode_int(&v->via.array.ptr[j]);
		}
	}
	if (busy != NULL)
		*busy = b;
	if (nbusy != NULL)
		*nbusy = nb;
	return PROCREG_OK;
}

/* update [name, value] or, gen not NULL, [name, value, gen]. */
static int
api2_update(procreg_t *p, const char *name, const void *value,
    size_t vlen, const uint64_t *gen, struct procreg_entry **out)
{
	const msgpack_object *res;
	struct held_name *h;
	void *nv = NULL;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if ((r = conn_check_value(p, value, vlen, PARAM_LEVELS,
	    "value")) != PROCREG_OK)
		return r;
	/* The held copy is made first: the daemon's change cannot be
	 * missed by a reconnect for want of memory. */
	if ((h = reconnect_set_find(&p->names, name)) != NULL &&
	    value != NULL && (nv = handle_dup_mem(value, vlen)) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	id = conn_req_begin(p, "update", gen != NULL ? 3 : 2);
	conn_pack_str(p, name);
	if (value != NULL)
		(void)conn_req_write(p, value, vlen);
	else
		msgpack_pack_nil(&p->pk);
	if (gen != NULL)
		msgpack_pack_uint64(&p->pk, *gen);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		free(nv);
		return api_p2_status(p, r);
	}
	/*
	 * A reconnect registers the name with its new value.  Looked up
	 * again: the call may have read a lost that forgot it.
	 */
	if ((h = reconnect_set_find(&p->names, name)) != NULL) {
		free(h->value);
		h->value = nv;
		h->value_len = nv != NULL ? vlen : 0;
	} else
		free(nv);
	if (out != NULL && (*out = decode_entry(res)) == NULL)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

int
procreg_update(procreg_t *p, const char *name, const void *value,
    size_t vlen, struct procreg_entry **out)
{
	return api2_update(p, name, value, vlen, NULL, out);
}

int
procreg_keys(procreg_t *p, uint64_t conn, char ***names, size_t *nnames,
    char ***groups, size_t *ngroups)
{
	const msgpack_object *res, *on = NULL, *og = NULL;
	char **vn = NULL, **vg = NULL;
	size_t nn = 0, ng = 0;
	uint32_t id;
	int r;

	if (names != NULL)
		*names = NULL;
	if (nnames != NULL)
		*nnames = 0;
	if (groups != NULL)
		*groups = NULL;
	if (ngroups != NULL)
		*ngroups = 0;
	id = conn_req_begin(p, "keys", 1);
	msgpack_pack_uint64(&p->pk, conn);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (res->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < res->via.map.size; i++) {
			if (decode_is_str(&res->via.map.ptr[i].key, "names"))
				on = &res->via.map.ptr[i].val;
			else if (decode_is_str(&res->via.map.ptr[i].key,
			    "groups"))
				og = &res->via.map.ptr[i].val;
		}
	}
	if (on == NULL || og == NULL)
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed keys result");
	if ((names != NULL && !decode_strv(on, &vn, &nn)) ||
	    (groups != NULL && !decode_strv(og, &vg, &ng))) {
		procreg_strv_free(vn, nn);
		return handle_fail(p, PROCREG_E_NOMEM,
		    "out of memory or malformed "
		    "keys result");
	}
	if (names != NULL)
		*names = vn;
	if (nnames != NULL)
		*nnames = nn;
	if (groups != NULL)
		*groups = vg;
	if (ngroups != NULL)
		*ngroups = ng;
	return PROCREG_OK;
}

int
procreg_register_many(procreg_t *p, size_t n, const char *const *names,
    const void *const *values, const size_t *value_lens,
    struct procreg_entry ***out)
{
	const msgpack_object *res;
	struct held_name **held = NULL;
	struct procreg_entry **v;
	uint32_t id;
	size_t i;
	int r;

	if (out != NULL)
		*out = NULL;
	if (n > 0 && names == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the names are NULL");
	if (n > UINT32_MAX)
		return handle_fail(p, PROCREG_E_INVAL, "too many names");
	for (i = 0; i < n; i++) {
		if (names[i] == NULL)
			return handle_fail(p, PROCREG_E_INVAL,
			    "name %zu is NULL",
			    i + 1);
		if (values != NULL && values[i] != NULL && value_lens == NULL)
			return handle_fail(p, PROCREG_E_INVAL, "values without "
			    "value_lens");
		/* [names: [[name, value], ...]]: two levels more. */
		if (values != NULL && values[i] != NULL &&
		    (r = conn_check_value(p, values[i],
		    value_lens[i], PARAM_LEVELS + 2, "value")) != PROCREG_OK)
			return r;
	}
	/* Held before the request: see api_register. */
	if (p->auto_reconnect && n > 0) {
		if ((held = calloc(n, sizeof(*held))) == NULL ||
		    reconnect_set_reserve(p, &p->names, n) != PROCREG_OK) {
			r = handle_fail(p, PROCREG_E_NOMEM, "out of memory");
			goto fail;
		}
		for (i = 0; i < n; i++) {
			bool has = values != NULL && values[i] != NULL;

			if ((held[i] = reconnect_name_new(p, names[i],
			    has ? values[i] : NULL, has ? value_lens[i] : 0,
			    0)) == NULL) {
				r = PROCREG_E_NOMEM;
				goto fail;
			}
		}
	}
	id = conn_req_begin(p, "register_many", 1);
	msgpack_pack_array(&p->pk, (uint32_t)n);
	for (i = 0; i < n; i++) {
		bool has = values != NULL && values[i] != NULL;

		msgpack_pack_array(&p->pk, has ? 2 : 1);
		conn_pack_str(p, names[i]);
		if (has)
			(void)conn_req_write(p, values[i],
			    value_lens[i]);
	}
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		r = api_p2_status(p, r);
		goto fail;
	}
	for (i = 0; held != NULL && i < n; i++)
		reconnect_set_add(&p->names, held[i]);
	free(held);
	held = NULL;
	if (out == NULL)
		return PROCREG_OK;
	if (res->type != MSGPACK_OBJECT_ARRAY || res->via.array.size != n)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed entries");
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if ((v[i] = decode_entry(&res->via.array.ptr[i])) == NULL) {
			procreg_entries_free(v, i);
			return handle_fail(p, PROCREG_E_NOMEM,
			    "out of memory or "
			    "malformed entry");
		}
	}
	*out = v;
	return PROCREG_OK;
fail:
	for (i = 0; held != NULL && i < n; i++)
		reconnect_name_free(held[i]);
	free(held);
	return r;
}

int
procreg_register_opts(procreg_t *p, const char *name, const void *value,
    size_t vlen, unsigned flags, struct procreg_entry **out,
    uint32_t *queued)
{
	if (out != NULL)
		*out = NULL;
	if (queued != NULL)
		*queued = 0;
	if (flags & ~(PROCREG_QUEUE | PROCREG_ALLOW_REPLACEMENT |
	    PROCREG_REPLACE | PROCREG_CLUSTER))
		return handle_fail(p, PROCREG_E_INVAL, "unknown register flags "
		    "%#x", flags);
	return api_register(p, name, value, vlen, flags, out, queued);
}

int
procreg_unregister_gen(procreg_t *p, const char *name, uint64_t gen)
{
	return api_unregister(p, name, &gen);
}

int
procreg_update_gen(procreg_t *p, const char *name, const void *value,
    size_t vlen, uint64_t gen, struct procreg_entry **out)
{
	return api2_update(p, name, value, vlen, &gen, out);
}

int
procreg_send_gen(procreg_t *p, const char *name, const void *payload,
    size_t len, uint64_t gen)
{
	return api_send(p, name, payload, len, &gen);
}

int
procreg_await(procreg_t *p, const char *name, int timeout_ms,
    struct procreg_entry **out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if (timeout_ms < 0 || (unsigned)timeout_ms > PR_CALL_TIMEOUT_MAX)
		return handle_fail(p, PROCREG_E_INVAL,
		    "an await timeout is from 0 "
		    "to %u ms", PR_CALL_TIMEOUT_MAX);
	id = conn_req_begin(p, "await", 2);
	conn_pack_str(p, name);
	msgpack_pack_uint32(&p->pk, (uint32_t)timeout_ms);
	/* The daemon answers timeout itself: wait for it that long, plus
	 * the handle's timeout for the answer. */
	if ((r = conn_call_wait(p, id, &res, (int64_t)timeout_ms +
	    p->timeout_ms)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (out != NULL && (*out = decode_entry(res)) == NULL)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

void
procreg_places_free(struct procreg_place **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i] != NULL)
			free(v[i]->node);
		free(v[i]);
	}
	free(v);
}

/* One element of queue's result: a conn id, or (a cluster name's line)
 * {"node": str, "conn": uint}; NULL when malformed or out of memory. */
static struct procreg_place *
api2_place(const msgpack_object *o)
{
	struct procreg_place *pl;
	bool got_conn = false;

	if ((pl = calloc(1, sizeof(*pl))) == NULL)
		return NULL;
	if (decode_is_uint(o)) {
		pl->conn = o->via.u64;
		return pl;
	}
	if (o->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			const msgpack_object *v = &o->via.map.ptr[i].val;

			if (decode_is_str(k, "conn") && decode_is_uint(v)) {
				pl->conn = v->via.u64;
				got_conn = true;
			} else if (decode_is_str(k, "node") &&
			    v->type == MSGPACK_OBJECT_STR && pl->node == NULL &&
			    (pl->node = handle_dup_bytes(v->via.str.ptr,
			    v->via.str.size)) == NULL)
				break;
		}
		if (got_conn && pl->node != NULL)
			return pl;
	}
	free(pl->node);
	free(pl);
	return NULL;
}

int
procreg_queue_places(procreg_t *p, const char *name,
    struct procreg_place ***out, size_t *count)
{
	const msgpack_object *res;
	struct procreg_place **v;
	uint32_t id, n;
	int r;

	*out = NULL;
	*count = 0;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "queue", 1);
	conn_pack_str(p, name);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed queue");
	if ((n = res->via.array.size) == 0)
		return PROCREG_OK;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if ((v[i] = api2_place(&res->via.array.ptr[i])) == NULL) {
			procreg_places_free(v, i);
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory or "
			    "malformed queue");
		}
	}
	*out = v;
	*count = n;
	return PROCREG_OK;
}

int
procreg_queue(procreg_t *p, const char *name, uint64_t **conns, size_t *n)
{
	const msgpack_object *res;
	uint64_t *v;
	uint32_t id;
	int r;

	*conns = NULL;
	*n = 0;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "queue", 1);
	conn_pack_str(p, name);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed queue");
	if (res->via.array.size == 0)
		return PROCREG_OK;
	if ((v = calloc(res->via.array.size, sizeof(*v))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < res->via.array.size; i++) {
		if (!decode_is_uint(&res->via.array.ptr[i])) {
			free(v);
			/* A cluster name's places: {node, conn} each. */
			if (res->via.array.ptr[i].type == MSGPACK_OBJECT_MAP)
				return handle_fail(p, PROCREG_E_INVAL, "%s is a "
				    "cluster name, whose line is of "
				    "connections on several nodes: "
				    "procreg_queue_places tells them", name);
			return handle_fail(p, PROCREG_E_PROTOCOL,
			    "malformed queue");
		}
		v[i] = res->via.array.ptr[i].via.u64;
	}
	*conns = v;
	*n = res->via.array.size;
	return PROCREG_OK;
}

/* subscribe, with the caller's structs as this library knows them. */
static int
api2_subscribe(procreg_t *p, const char *prefix,
    const struct procreg_subscribe_opts *opts,
    struct procreg_subscription *out)
{
	struct procreg_subscribe_opts def = { 0 };
	const msgpack_object *res, *entries = NULL;
	struct held_sub h = { 0 };
	bool got_sub = false, got_seq = false;
	uint32_t id, nopts;
	int r;

	memset(out, 0, sizeof(*out));
	if (opts == NULL)
		opts = &def;
	if (prefix == NULL)
		prefix = "";
	if (opts->scope != PROCREG_SCOPE_DEFAULT &&
	    opts->scope != PROCREG_SCOPE_LOCAL &&
	    opts->scope != PROCREG_SCOPE_CLUSTER)
		return handle_fail(p, PROCREG_E_INVAL, "a subscription's scope "
		    "is local or cluster, not %d", (int)opts->scope);
	h.cluster = opts->scope == PROCREG_SCOPE_CLUSTER;
	nopts = (opts->groups ? 1 : 0) + (opts->has_since ? 1 : 0) +
	    (h.cluster ? 1 : 0);
	id = conn_req_begin(p, "subscribe", nopts > 0 ? 2 : 1);
	conn_pack_str(p, prefix);
	if (nopts > 0) {
		msgpack_pack_map(&p->pk, nopts);
		if (opts->groups) {
			conn_pack_str(p, "groups");
			msgpack_pack_true(&p->pk);
		}
		if (opts->has_since) {
			conn_pack_str(p, "since");
			msgpack_pack_uint64(&p->pk, opts->since);
		}
		if (h.cluster) {
			conn_pack_str(p, "scope");
			conn_pack_str(p, "cluster");
		}
	}
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_need_status(p, r, h.cluster ? 3 : 2);
	if (res->type != MSGPACK_OBJECT_MAP)
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed subscribe result");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (decode_is_str(k, "sub") && decode_is_uint(v)) {
			out->sub = v->via.u64;
			got_sub = true;
		} else if (decode_is_str(k, "seq") && decode_is_uint(v)) {
			out->seq = v->via.u64;
			got_seq = true;
		} else if (decode_is_str(k, "gap") &&
		    v->type == MSGPACK_OBJECT_BOOLEAN)
			out->gap = v->via.boolean;
		else if (decode_is_str(k, "entries") &&
		    v->type == MSGPACK_OBJECT_ARRAY)
			entries = v;
	}
	if (!got_sub || !got_seq || (entries == NULL &&
	    (!opts->has_since || out->gap)))
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed subscribe result");
	/* Ours from now on, whatever follows: the daemon holds it. */
	h.server_sub = out->sub;
	h.last_seq = opts->has_since && !out->gap ? opts->since : out->seq;
	if (p->auto_reconnect) {
		if (!handle_grow((void **)&p->subs, &p->subs_cap, p->nsubs,
		    sizeof(*p->subs)))
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		h.user_sub = ++p->next_user_sub;
		p->subs[p->nsubs++] = h;
		out->sub = h.user_sub;
	}
	if (entries != NULL) {
		out->has_snapshot = true;
		if (!decode_snapshot(entries, out)) {
			procreg_subscription_free(out);
			return handle_fail(p, PROCREG_E_NOMEM,
			    "out of memory or "
			    "malformed snapshot");
		}
	}
	return PROCREG_OK;
}

int
procreg_subscribe_sized(procreg_t *p, const char *prefix,
    const struct procreg_subscribe_opts *in, size_t in_size,
    struct procreg_subscription *out, size_t out_size)
{
	struct procreg_subscribe_opts opts;
	struct procreg_subscription s;
	int r;

	if (out_size < PROCREG_SUBSCRIPTION_SIZE_1)
		return handle_fail(p, PROCREG_E_INVAL, "a subscription struct "
		    "smaller than any this library knows");
	memset(out, 0, out_size);
	if (!handle_copy_in(&opts, sizeof(opts), in, in_size))
		return handle_fail(p, PROCREG_E_INVAL, "subscribe options this "
		    "library does not know (it is older than the caller's "
		    "header)");
	r = api2_subscribe(p, prefix, &opts, &s);
	handle_copy_out(out, out_size, &s, sizeof(s));
	return r;
}

int
(procreg_subscribe)(procreg_t *p, const char *prefix,
    const struct procreg_subscribe_opts *opts,
    struct procreg_subscription *out)
{
	return procreg_subscribe_sized(p, prefix, opts,
	    PROCREG_SUBSCRIBE_OPTS_SIZE_1, out, PROCREG_SUBSCRIPTION_SIZE_1);
}

int
procreg_unsubscribe(procreg_t *p, uint64_t sub, bool *was_active)
{
	const msgpack_object *res;
	uint64_t server_sub = sub;
	size_t i = 0;
	uint32_t id;
	int r;

	if (was_active != NULL)
		*was_active = false;
	if (p->auto_reconnect) {
		for (i = 0; i < p->nsubs && p->subs[i].user_sub != sub; i++)
			;
		if (i == p->nsubs) {
			/* Ended (overflow, reconnect) or never ours. */
			event_drop_sub(p, sub);
			return PROCREG_OK;
		}
		server_sub = p->subs[i].server_sub;
	}
	id = conn_req_begin(p, "unsubscribe", 1);
	msgpack_pack_uint64(&p->pk, server_sub);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_p2_status(p, r);
	if (was_active != NULL)
		*was_active = res->type == MSGPACK_OBJECT_BOOLEAN &&
		    res->via.boolean;
	if (p->auto_reconnect) {
		/* The call may have read its overflow: look it up again. */
		for (i = 0; i < p->nsubs && p->subs[i].user_sub != sub; i++)
			;
		if (i < p->nsubs)
			reconnect_forget_sub(p, i);
	}
	/* Those read up to the response (its overflow too); none follows. */
	event_drop_sub(p, sub);
	return PROCREG_OK;
}

void
procreg_nodes_free(struct procreg_node **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == NULL)
			continue;
		free(v[i]->name);
		free(v[i]->address);
		free(v[i]);
	}
	free(v);
}

/* A node map into a new struct; NULL when malformed or out of memory. */
static struct procreg_node *
api2_node(const msgpack_object *m)
{
	struct procreg_node *nd;

	if (m->type != MSGPACK_OBJECT_MAP ||
	    (nd = calloc(1, sizeof(*nd))) == NULL)
		return NULL;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		if (decode_is_str(k, "name") && v->type == MSGPACK_OBJECT_STR &&
		    nd->name == NULL) {
			if ((nd->name = handle_dup_bytes(v->via.str.ptr,
			    v->via.str.size)) == NULL)
				goto fail;
		} else if (decode_is_str(k, "address") &&
		    v->type == MSGPACK_OBJECT_STR && nd->address == NULL) {
			if ((nd->address = handle_dup_bytes(v->via.str.ptr,
			    v->via.str.size)) == NULL)
				goto fail;
		} else if (decode_is_str(k, "since") && decode_is_uint(v))
			nd->since_ms = v->via.u64;
		else if (decode_is_str(k, "self") &&
		    v->type == MSGPACK_OBJECT_BOOLEAN)
			nd->self = v->via.boolean;
		/* Keys of later protocol versions are ignored. */
	}
	if (nd->name != NULL && (nd->address != NULL ||
	    (nd->address = strdup("")) != NULL))
		return nd;
fail:
	free(nd->name);
	free(nd->address);
	free(nd);
	return NULL;
}

int
procreg_nodes(procreg_t *p, struct procreg_node ***out, size_t *count)
{
	const msgpack_object *res;
	struct procreg_node **v;
	uint32_t id, n;
	int r;

	*out = NULL;
	*count = 0;
	id = conn_req_begin(p, "nodes", 0);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return api_need_status(p, r, 3);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed nodes");
	if ((n = res->via.array.size) == 0)
		return PROCREG_OK;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if ((v[i] = api2_node(&res->via.array.ptr[i])) == NULL) {
			procreg_nodes_free(v, i);
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory or "
			    "malformed node");
		}
	}
	*out = v;
	*count = n;
	return PROCREG_OK;
}
