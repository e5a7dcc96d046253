/*
 * api.c: the protocol-1 calls of libprocreg (include/procreg.h):
 * register, unregister, whereis, send, monitor, list, stats, evict, and
 * the msgpack packing helpers.  Each builds its request (conn.c), waits
 * for the response and copies what the caller gets out of it (decode.c);
 * what a reconnect must put back is noted with reconnect.c.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/*
 * The status of a request that needs protocol need: when an older daemon
 * did not know the method (or refused a param or option it predates), the
 * message says so.
 */
int
api_need_status(procreg_t *p, int r, uint64_t need)
{
	size_t len = strlen(p->errmsg);

	if ((r == PROCREG_E_UNKNOWN_METHOD || r == PROCREG_E_BAD_REQUEST) &&
	    p->protocol > 0 && p->protocol < need)
		snprintf(p->errmsg + len, sizeof(p->errmsg) - len, " (the "
		    "daemon speaks protocol %" PRIu64 ", this needs %" PRIu64
		    ")", p->protocol, need);
	return r;
}

/* A protocol-2 request's status (see api_need_status). */
int
api_p2_status(procreg_t *p, int r)
{
	return api_need_status(p, r, 2);
}

/* Reject a NULL name; the daemon judges the rest (bad_request). */
int
api_check_name(procreg_t *p, const char *name)
{
	if (name == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the name is NULL");
	return PROCREG_OK;
}

/*
 * register name with flags: *out (may be NULL) the entry, *queued (may be
 * NULL) our place when queued.  What the handle keeps of it (the entry
 * for the caller, the held name for reconnects) is made before the
 * request: once the daemon has registered the name, nothing can fail for
 * want of memory.
 */
int
api_register(procreg_t *p, const char *name, const void *value, size_t vlen,
    unsigned flags, struct procreg_entry **out, uint32_t *queued)
{
	struct procreg_entry *e = NULL;
	struct held_name *h = NULL;
	const msgpack_object *res;
	uint32_t id, pos;
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if ((r = conn_check_value(p, value, vlen, PARAM_LEVELS,
	    "value")) != PROCREG_OK)
		return r;
	if (out != NULL && (e = decode_entry_new(name, value != NULL ? vlen :
	    1, (flags & PROCREG_CLUSTER) != 0)) == NULL) {
		r = handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		goto fail;
	}
	if (p->auto_reconnect && ((h = reconnect_name_new(p, name, value,
	    vlen, flags)) == NULL || reconnect_set_reserve(p, &p->names, 1) !=
	    PROCREG_OK)) {
		r = PROCREG_E_NOMEM;
		goto fail;
	}
	id = conn_req_register(p, name, value, vlen, flags);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		if (flags)
			r = api_need_status(p, r, flags & PROCREG_CLUSTER ? 3 :
			    2);
		goto fail;
	}
	pos = decode_queued(res);
	if (h != NULL) {
		h->waiting = pos > 0;
		reconnect_set_add(&p->names, h);
		h = NULL;
	}
	if (pos > 0) {
		if (queued != NULL)
			*queued = pos;
		procreg_entry_free(e);
		return PROCREG_OK;
	}
	if (e != NULL && !decode_entry_fill(e, res)) {
		r = handle_fail(p, PROCREG_E_PROTOCOL, "malformed entry");
		goto fail;
	}
	if (out != NULL)
		*out = e;
	return PROCREG_OK;
fail:
	procreg_entry_free(e);
	reconnect_name_free(h);
	return r;
}

int
procreg_register(procreg_t *p, const char *name, const void *value,
    size_t vlen, struct procreg_entry **out)
{
	if (out != NULL)
		*out = NULL;
	return api_register(p, name, value, vlen, 0, out, NULL);
}

size_t
procreg_pack_str(void *buf, size_t size, const char *s)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_str(&pk, strlen(s)) == 0 &&
	    msgpack_pack_str_body(&pk, s, strlen(s)) == 0 && sb.size <= size) {
		memcpy(buf, sb.data, sb.size);
		n = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	return n;
}

size_t
procreg_pack_int(void *buf, size_t size, int64_t v)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_int64(&pk, v) == 0 && sb.size <= size) {
		memcpy(buf, sb.data, sb.size);
		n = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	return n;
}

int
procreg_register_str(procreg_t *p, const char *name, const char *value,
    struct procreg_entry **out)
{
	size_t len = value ? strlen(value) + 5 : 0;
	char *buf;
	int r;

	if (value == NULL)
		return procreg_register(p, name, NULL, 0, out);
	if ((buf = malloc(len)) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	len = procreg_pack_str(buf, len, value);
	r = procreg_register(p, name, buf, len, out);
	free(buf);
	return r;
}

int
procreg_register_int(procreg_t *p, const char *name, int64_t value,
    struct procreg_entry **out)
{
	char buf[9];

	return procreg_register(p, name, buf, procreg_pack_int(buf,
	    sizeof(buf), value), out);
}

/* unregister [name] or, gen not NULL, [name, gen]. */
int
api_unregister(procreg_t *p, const char *name, const uint64_t *gen)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "unregister", gen != NULL ? 2 : 1);
	conn_pack_str(p, name);
	if (gen != NULL)
		msgpack_pack_uint64(&p->pk, *gen);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return gen != NULL ? api_p2_status(p, r) : r;
	/* Ours no more, or (a waiter) our place in its queue is given up. */
	reconnect_set_forget(&p->names, name);
	return PROCREG_OK;
}

int
procreg_unregister(procreg_t *p, const char *name)
{
	return api_unregister(p, name, NULL);
}

int
procreg_evict(procreg_t *p, const char *name)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "evict", 1);
	conn_pack_str(p, name);
	return conn_call(p, id, &res);
}

/* The wire word of a scope for whereis ("any") or list ("all"). */
static const char *
api_scope_word(enum procreg_scope scope, bool list)
{
	switch (scope) {
	case PROCREG_SCOPE_LOCAL:
		return "local";
	case PROCREG_SCOPE_CLUSTER:
		return "cluster";
	case PROCREG_SCOPE_ALL:
		return list ? "all" : "any";
	case PROCREG_SCOPE_DEFAULT:
		break;
	}
	return NULL;
}

/*
 * whereis [name], or with options [name, {"scope": S, "consistent":
 * true}] (only the keys that differ from the default).  LOCAL to a
 * protocol-2 daemon is the plain request: all its names are local.
 */
static int
api_whereis(procreg_t *p, const char *name,
    const struct procreg_whereis_opts *o, struct procreg_entry **out)
{
	const msgpack_object *res;
	const char *scope = NULL;
	uint32_t id, n;
	int r;

	*out = NULL;
	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if (o != NULL) {
		if (o->scope != PROCREG_SCOPE_DEFAULT &&
		    (scope = api_scope_word(o->scope, false)) == NULL)
			return handle_fail(p, PROCREG_E_INVAL, "unknown scope "
			    "%d", (int)o->scope);
		if (o->scope == PROCREG_SCOPE_LOCAL && !o->consistent &&
		    p->protocol > 0 && p->protocol < 3)
			scope = NULL;
	}
	n = (scope != NULL) + (o != NULL && o->consistent);
	id = conn_req_begin(p, "whereis", n > 0 ? 2 : 1);
	conn_pack_str(p, name);
	if (n > 0) {
		msgpack_pack_map(&p->pk, n);
		if (scope != NULL) {
			conn_pack_str(p, "scope");
			conn_pack_str(p, scope);
		}
		if (o->consistent) {
			conn_pack_str(p, "consistent");
			msgpack_pack_true(&p->pk);
		}
	}
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return n > 0 ? api_need_status(p, r, 3) : r;
	if (res->type == MSGPACK_OBJECT_NIL)
		return PROCREG_OK;
	if ((*out = decode_entry(res)) == NULL)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

int
procreg_whereis(procreg_t *p, const char *name, struct procreg_entry **out)
{
	return api_whereis(p, name, NULL, out);
}

int
procreg_whereis_opts_sized(procreg_t *p, const char *name,
    const struct procreg_whereis_opts *in, size_t in_size,
    struct procreg_entry **out)
{
	struct procreg_whereis_opts o;

	*out = NULL;
	if (!handle_copy_in(&o, sizeof(o), in, in_size))
		return handle_fail(p, PROCREG_E_INVAL, "whereis options this "
		    "library does not know (it is older than the caller's "
		    "header)");
	return api_whereis(p, name, &o, out);
}

int
(procreg_whereis_opts)(procreg_t *p, const char *name,
    const struct procreg_whereis_opts *opts, struct procreg_entry **out)
{
	return procreg_whereis_opts_sized(p, name, opts,
	    PROCREG_WHEREIS_OPTS_SIZE_1, out);
}

/* send [name, payload] or, gen not NULL, [name, payload, {"gen": g}]. */
int
api_send(procreg_t *p, const char *name, const void *payload, size_t len,
    const uint64_t *gen)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if (payload == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = conn_check_value(p, payload, len, PARAM_LEVELS,
	    "payload")) != PROCREG_OK)
		return r;
	id = conn_req_begin(p, "send", gen != NULL ? 3 : 2);
	conn_pack_str(p, name);
	(void)conn_req_write(p, payload, len);
	if (gen == NULL)
		return conn_call(p, id, &res);
	msgpack_pack_map(&p->pk, 1);
	conn_pack_str(p, "gen");
	msgpack_pack_uint64(&p->pk, *gen);
	return api_p2_status(p, conn_call(p, id, &res));
}

int
procreg_send(procreg_t *p, const char *name, const void *payload, size_t len)
{
	return api_send(p, name, payload, len, NULL);
}

int
procreg_send_str(procreg_t *p, const char *name, const char *text)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	if (text == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "the text is NULL");
	id = conn_req_begin(p, "send", 2);
	conn_pack_str(p, name);
	conn_pack_str(p, text);
	return conn_call(p, id, &res);
}

/* Monitor name, or connection conn when name is NULL. */
static int
api_monitor(procreg_t *p, const char *name, uint64_t conn, uint64_t *ref)
{
	const msgpack_object *res;
	struct held_mon *m = NULL;
	uint32_t id;
	int r;

	/* Held before the request: a monitor set is never "no memory". */
	if (p->auto_reconnect && (m = reconnect_mon_new(p, name, conn)) ==
	    NULL)
		return PROCREG_E_NOMEM;
	id = conn_req_begin(p, "monitor", 1);
	if (name != NULL)
		conn_pack_str(p, name);
	else
		msgpack_pack_uint64(&p->pk, conn);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		r = name != NULL ? r : api_p2_status(p, r);
		goto fail;
	}
	if (!decode_is_uint(res)) {
		r = handle_fail(p, PROCREG_E_PROTOCOL, "malformed ref");
		goto fail;
	}
	*ref = res->via.u64;
	if (m == NULL)
		return PROCREG_OK;
	/*
	 * Refs handed out are ours from now on: after a reconnect the daemon
	 * numbers monitors afresh, and we translate.  A noproc down comes
	 * after the response, so it is not parsed yet: it will find this
	 * monitor and translate.
	 */
	reconnect_mon_add(p, m, *ref);
	*ref = m->user_ref;
	return PROCREG_OK;
fail:
	if (m != NULL) {
		free(m->name);
		free(m);
	}
	return r;
}

int
procreg_monitor(procreg_t *p, const char *name, uint64_t *ref)
{
	int r;

	if ((r = api_check_name(p, name)) != PROCREG_OK)
		return r;
	return api_monitor(p, name, 0, ref);
}

int
procreg_monitor_conn(procreg_t *p, uint64_t conn, uint64_t *ref)
{
	return api_monitor(p, NULL, conn, ref);
}

int
procreg_demonitor(procreg_t *p, uint64_t ref, bool *was_active)
{
	const msgpack_object *res;
	uint64_t server_ref = ref;
	struct held_mon *m;
	uint32_t id;
	int r, tries = 0;
	bool reconnected;

again:
	if (p->auto_reconnect) {
		/* Looked up on the connection the request goes to: a
		 * reconnect renumbers the daemon's refs. */
		if ((m = reconnect_mon_by_user(p, ref)) == NULL) {
			if (was_active != NULL)
				*was_active = false;
			return PROCREG_OK;
		}
		server_ref = m->server_ref;
	}
	id = conn_req_begin(p, "demonitor", 1);
	msgpack_pack_uint64(&p->pk, server_ref);
	r = conn_call_bound(p, id, &res, &reconnected);
	/* Its ref was the old connection's: look it up again. */
	if (reconnected && ++tries < 3)
		goto again;
	if (r != PROCREG_OK)
		return r;
	if (was_active != NULL)
		*was_active = res->type == MSGPACK_OBJECT_BOOLEAN &&
		    res->via.boolean;
	if (p->auto_reconnect)
		(void)reconnect_down_ref(p, server_ref);
	return PROCREG_OK;
}

/*
 * Every entry under prefix, paging: [prefix, limit] and [prefix, limit,
 * after]; with a scope other than local [prefix, limit, after or nil,
 * {"scope": S}].
 */
static int
api_list(procreg_t *p, const char *prefix, enum procreg_scope scope,
    struct procreg_entry ***out, size_t *count)
{
	struct procreg_entry **v = NULL, *e;
	const char *word = NULL;
	size_t n = 0, cap = 0;
	char *after = NULL;
	int r = PROCREG_OK;

	*out = NULL;
	*count = 0;
	if (prefix == NULL)
		prefix = "";
	if (scope != PROCREG_SCOPE_DEFAULT && scope != PROCREG_SCOPE_LOCAL &&
	    (word = api_scope_word(scope, true)) == NULL)
		return handle_fail(p, PROCREG_E_INVAL, "unknown scope %d",
		    (int)scope);
	for (;;) {
		const msgpack_object *res;
		uint32_t id = conn_req_begin(p, "list", word ? 4 : after ? 3 :
		    2);

		conn_pack_str(p, prefix);
		msgpack_pack_uint32(&p->pk, PR_LIST_MAX);
		if (after)
			conn_pack_str(p, after);
		else if (word)
			msgpack_pack_nil(&p->pk);
		if (word) {
			msgpack_pack_map(&p->pk, 1);
			conn_pack_str(p, "scope");
			conn_pack_str(p, word);
		}
		if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
			if (word)
				r = api_need_status(p, r, 3);
			goto handle_fail;
		}
		if (res->type != MSGPACK_OBJECT_ARRAY) {
			r = handle_fail(p, PROCREG_E_PROTOCOL,
			    "malformed list");
			goto handle_fail;
		}
		/* Pages may be cut short by size: the end is an empty page. */
		if (res->via.array.size == 0)
			break;
		for (uint32_t i = 0; i < res->via.array.size; i++) {
			if (!handle_grow((void **)&v, &cap, n, sizeof(*v)) ||
			    (e =
			    decode_entry(&res->via.array.ptr[i])) == NULL) {
				r = handle_fail(p, PROCREG_E_NOMEM,
				    "out of memory or "
				    "malformed entry");
				goto handle_fail;
			}
			v[n++] = e;
		}
		free(after);
		if ((after = strdup(v[n - 1]->name)) == NULL) {
			r = handle_fail(p, PROCREG_E_NOMEM, "out of memory");
			goto handle_fail;
		}
	}
	free(after);
	*out = v;
	*count = n;
	return PROCREG_OK;
handle_fail:
	free(after);
	procreg_entries_free(v, n);
	return r;
}

int
procreg_list(procreg_t *p, const char *prefix, struct procreg_entry ***out,
    size_t *count)
{
	return api_list(p, prefix, PROCREG_SCOPE_DEFAULT, out, count);
}

int
procreg_list_opts_sized(procreg_t *p, const char *prefix,
    const struct procreg_list_opts *in, size_t in_size,
    struct procreg_entry ***out, size_t *count)
{
	struct procreg_list_opts o;

	*out = NULL;
	*count = 0;
	if (!handle_copy_in(&o, sizeof(o), in, in_size))
		return handle_fail(p, PROCREG_E_INVAL, "list options this "
		    "library does not know (it is older than the caller's "
		    "header)");
	return api_list(p, prefix, o.scope, out, count);
}

int
(procreg_list_opts)(procreg_t *p, const char *prefix,
    const struct procreg_list_opts *opts, struct procreg_entry ***out,
    size_t *count)
{
	return procreg_list_opts_sized(p, prefix, opts,
	    PROCREG_LIST_OPTS_SIZE_1, out, count);
}

/* stats' "cluster" map (protocol 3, --etcd) into out's cluster_ fields. */
static void
api_stats_cluster(struct procreg_stats *out, const msgpack_object *m)
{
	static const struct {
		const char	*key;
		size_t		 off, size;	/* size 0: a uint */
	} keys[] = {
#define S(k, f) { k, offsetof(struct procreg_stats, f),			\
	    sizeof(((struct procreg_stats *)0)->f) }
#define U(k, f) { k, offsetof(struct procreg_stats, f), 0 }
		S("node", cluster_node), S("state", cluster_state),
		S("etcd", cluster_etcd), U("lease_ttl", cluster_lease_ttl),
		U("names", cluster_names), U("nodes", cluster_nodes),
		U("revision", cluster_revision),
#undef S
#undef U
	};

	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++) {
			char *f = (char *)out + keys[j].off;

			if (!decode_is_str(k, keys[j].key))
				continue;
			if (keys[j].size > 0 && v->type == MSGPACK_OBJECT_STR)
				snprintf(f, keys[j].size, "%.*s",
				    (int)v->via.str.size, v->via.str.ptr);
			else if (keys[j].size == 0 && decode_is_uint(v))
				*(uint64_t *)(void *)f = v->via.u64;
		}
	}
}

int
(procreg_stats)(procreg_t *p, struct procreg_stats *out)
{
	return procreg_stats_sized(p, out, PROCREG_STATS_SIZE_1);
}

int
procreg_stats_sized(procreg_t *p, struct procreg_stats *caller, size_t size)
{
	struct procreg_stats st, *out = &st;
	static const struct {
		const char	*key;
		size_t		 off;
	} keys[] = {
#define K(f) { #f, offsetof(struct procreg_stats, f) }
		K(connections), K(names), K(monitors), K(requests),
		K(messages), K(downs), K(notifications_ignored),
		K(connections_total), K(uptime_ms), K(groups), K(members),
		K(calls), K(replies_late), K(awaits), K(subscriptions), K(seq),
		K(draining),
#undef K
	};
	const msgpack_object *res;
	uint32_t id;
	int r;

	memset(out, 0, sizeof(*out));
	id = conn_req_begin(p, "stats", 0);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK) {
		handle_copy_out(caller, size, &st, sizeof(st));
		return r;
	}
	if (res->type != MSGPACK_OBJECT_MAP)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed stats");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object_kv *kv = &res->via.map.ptr[i];

		if (decode_is_str(&kv->key, "cluster") &&
		    kv->val.type == MSGPACK_OBJECT_MAP)
			api_stats_cluster(out, &kv->val);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			if (decode_is_str(&kv->key, keys[k].key))
				*(uint64_t *)((char *)out + keys[k].off) =
				    (uint64_t)decode_int(&kv->val);
		}
	}
	handle_copy_out(caller, size, &st, sizeof(st));
	return PROCREG_OK;
}
