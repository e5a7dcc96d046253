/*
 * decode.c: what the daemon sends, turned into what the caller gets:
 * entries, member entries, string vectors, snapshots, response errors as
 * statuses, and notifications as queued events.  Everything is copied out
 * of the unpacker's zone, which the next read reuses.  A notification of
 * a shape this library does not know is skipped, as a later protocol's
 * kind would be.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

bool
decode_is_str(const msgpack_object *o, const char *s)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	    memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

bool
decode_is_uint(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

int64_t
decode_int(const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (int64_t)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return o->via.i64;
	return -1;
}

/* The msgpack encoding of o, in malloc'd memory. */
void *
decode_encode(const msgpack_object *o, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *o) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return NULL;
	}
	*len = sb.size;
	return msgpack_sbuffer_release(&sb);
}

void
procreg_entry_free(struct procreg_entry *e)
{
	if (e == NULL)
		return;
	free(e->name);
	free(e->value);
	free(e->node);
	free(e);
}

void
procreg_entries_free(struct procreg_entry **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		procreg_entry_free(v[i]);
	free(v);
}

/* The fields shared by an entry and a member entry. */
struct decode_fields_of {
	char		**key;		/* name or group */
	uint64_t	 *conn;
	int64_t		 *pid, *uid, *gid;
	void		**value;	/* made beforehand: value_cap */
	size_t		 *value_len;
	uint64_t	 *since_ms, *gen;
	size_t		  value_cap;
	/* An entry's protocol-3 keys (NULL for a member entry); *node made
	 * beforehand (node_cap bytes) or NULL. */
	enum procreg_scope *scope;
	char		**node;
	bool		 *stale;
	size_t		  node_cap;
};

/* A msgpack writer into a fixed buffer, failing when it is full. */
struct decode_fixed {
	char	*b;
	size_t	 cap, len;
};

static int
decode_fixed_write(void *data, const char *buf, size_t len)
{
	struct decode_fixed *f = data;

	if (len > f->cap - f->len)
		return -1;
	memcpy(f->b + f->len, buf, len);
	f->len += len;
	return 0;
}

/*
 * The encoding of v into *f->value: into the buffer made beforehand when
 * it fits (the daemon echoes the value we sent, whose encoding is never
 * shorter than msgpack-c's), else into new memory.
 */
static bool
decode_value(const msgpack_object *v, const struct decode_fields_of *f)
{
	if (*f->value != NULL) {
		struct decode_fixed fx = { *f->value, f->value_cap, 0 };
		msgpack_packer pk;

		msgpack_packer_init(&pk, &fx, decode_fixed_write);
		if (msgpack_pack_object(&pk, *v) == 0) {
			*f->value_len = fx.len;
			return true;
		}
		free(*f->value);
	}
	return (*f->value = decode_encode(v, f->value_len)) != NULL;
}

/*
 * An entry's node name into *f->node: into the buffer made beforehand
 * when it fits, else into new memory.  false when out of memory.
 */
static bool
decode_node(const msgpack_object *v, const struct decode_fields_of *f)
{
	if (*f->node != NULL && v->via.str.size < f->node_cap) {
		if (v->via.str.size > 0)
			memcpy(*f->node, v->via.str.ptr, v->via.str.size);
		(*f->node)[v->via.str.size] = '\0';
		return true;
	}
	free(*f->node);
	return (*f->node = handle_dup_bytes(v->via.str.ptr,
	    v->via.str.size)) != NULL;
}

/*
 * Read an entry map (keyname: "name" or "group") into f; false when
 * malformed or out of memory (what was read is left for the caller to
 * free).  An entry without "scope" is a local one (protocols 1 and 2,
 * and local names in 3); one with "scope": "cluster" has its node (a
 * scope of a later protocol reads as local, its node kept if given).
 */
static bool
decode_fields(const msgpack_object *m, const char *keyname,
    const struct decode_fields_of *f)
{
	bool got_value = false, got_node = false;

	if (f->scope != NULL)
		*f->scope = PROCREG_SCOPE_LOCAL;
	if (m->type != MSGPACK_OBJECT_MAP)
		return false;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		if (decode_is_str(k, keyname) &&
		    v->type == MSGPACK_OBJECT_STR && *f->key == NULL)
			*f->key = handle_dup_bytes(v->via.str.ptr,
			    v->via.str.size);
		else if (decode_is_str(k, "conn"))
			*f->conn = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "pid"))
			*f->pid = decode_int(v);
		else if (decode_is_str(k, "uid"))
			*f->uid = decode_int(v);
		else if (decode_is_str(k, "gid"))
			*f->gid = decode_int(v);
		else if (decode_is_str(k, "since"))
			*f->since_ms = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "gen"))
			*f->gen = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "value") && !got_value &&
		    !(got_value = decode_value(v, f)))
			return false;
		else if (f->scope == NULL)
			continue;
		else if (decode_is_str(k, "scope") &&
		    decode_is_str(v, "cluster"))
			*f->scope = PROCREG_SCOPE_CLUSTER;
		else if (decode_is_str(k, "node") &&
		    v->type == MSGPACK_OBJECT_STR && !got_node &&
		    !(got_node = decode_node(v, f)))
			return false;
		else if (decode_is_str(k, "stale") &&
		    v->type == MSGPACK_OBJECT_BOOLEAN)
			*f->stale = v->via.boolean;
		/* Keys of later protocol versions are ignored. */
	}
	/* A node buffer made beforehand and not filled: no node. */
	if (f->node != NULL && !got_node) {
		free(*f->node);
		*f->node = NULL;
	}
	return *f->key != NULL && got_value;
}

/*
 * An entry for name whose value is vlen bytes at most, made before the
 * request so that filling it from the response (decode_entry_fill)
 * needs no memory: a caller is never told "out of memory" about a name
 * the daemon registered.  NULL when out of memory.
 */
/*
 * The room for a node name made beforehand: a node name is 1 to 63 bytes
 * (procregd's rule); a longer one gets new memory.
 */
#define DECODE_NODE_CAP	64

struct procreg_entry *
decode_entry_new(const char *name, size_t vlen, bool cluster)
{
	struct procreg_entry *e;

	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->name = strdup(name)) == NULL ||
	    (e->value = malloc(vlen > 0 ? vlen : 1)) == NULL ||
	    (cluster && (e->node = malloc(DECODE_NODE_CAP)) == NULL)) {
		procreg_entry_free(e);
		return NULL;
	}
	e->value_len = vlen > 0 ? vlen : 1;
	e->scope = PROCREG_SCOPE_LOCAL;
	return e;
}

/* Fill e (from decode_entry_new) from an entry map; false when
 * malformed. */
bool
decode_entry_fill(struct procreg_entry *e, const msgpack_object *m)
{
	return decode_fields(m, "name", &(struct decode_fields_of){ &e->name,
	    &e->conn, &e->pid, &e->uid, &e->gid, &e->value, &e->value_len,
	    &e->since_ms, &e->gen, e->value_len, &e->scope, &e->node,
	    &e->stale, e->node != NULL ? DECODE_NODE_CAP : 0 });
}

/* An entry map into a new struct; NULL when malformed or out of memory. */
struct procreg_entry *
decode_entry(const msgpack_object *m)
{
	struct procreg_entry *e;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if (!decode_fields(m, "name", &(struct decode_fields_of){ &e->name,
	    &e->conn, &e->pid, &e->uid, &e->gid, &e->value, &e->value_len,
	    &e->since_ms, &e->gen, 0, &e->scope, &e->node, &e->stale, 0 })) {
		procreg_entry_free(e);
		return NULL;
	}
	return e;
}

void
procreg_member_free(struct procreg_member *m)
{
	if (m == NULL)
		return;
	free(m->group);
	free(m->value);
	free(m);
}

void
procreg_members_free(struct procreg_member **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		procreg_member_free(v[i]);
	free(v);
}

/* A member entry map into a new struct; NULL when malformed or out of
 * memory. */
struct procreg_member *
decode_member(const msgpack_object *o)
{
	struct procreg_member *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if (!decode_fields(o, "group", &(struct decode_fields_of){ &m->group,
	    &m->conn, &m->pid, &m->uid, &m->gid, &m->value, &m->value_len,
	    &m->since_ms, &m->gen, 0, NULL, NULL, NULL, 0 })) {
		procreg_member_free(m);
		return NULL;
	}
	return m;
}

void
procreg_strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * A target (a name, or a connection id) into ev->name or ev->target_conn;
 * false when it is neither or out of memory.
 */
static bool
decode_target(struct procreg_event *ev, const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_STR)
		return (ev->name = handle_dup_bytes(o->via.str.ptr,
		    o->via.str.size)) !=
		    NULL;
	if (decode_is_uint(o)) {
		ev->target_conn = o->via.u64;
		return true;
	}
	return false;
}

static const struct {
	const char		*name;
	enum procreg_change	 change;
} decode_changes[] = {
	{ "registered", PROCREG_CH_REGISTERED },
	{ "unregistered", PROCREG_CH_UNREGISTERED },
	{ "updated", PROCREG_CH_UPDATED },
	{ "handover", PROCREG_CH_HANDOVER },
	{ "joined", PROCREG_CH_JOINED },
	{ "left", PROCREG_CH_LEFT },
};

/*
 * The params of an event push [sub, seq, kind, payload] into ev; false
 * when out of memory or malformed.
 */
static bool
decode_sub_event(procreg_t *p, struct procreg_event *ev,
    const msgpack_object *v)
{
	const msgpack_object *pl = &v[3];

	ev->kind = PROCREG_EV_SUBSCRIPTION;
	ev->seq = v[1].via.u64;
	ev->sub = reconnect_sub_id(p, v[0].via.u64, ev->seq, false);
	if ((ev->change_name = handle_dup_bytes(v[2].via.str.ptr,
	    v[2].via.str.size)) == NULL ||
	    (ev->payload = decode_encode(pl, &ev->payload_len)) == NULL)
		return false;
	for (size_t i =
	    0; i < sizeof(decode_changes) / sizeof(decode_changes[0]); i++) {
		if (decode_is_str(&v[2], decode_changes[i].name))
			ev->change = decode_changes[i].change;
	}
	switch (ev->change) {
	case PROCREG_CH_REGISTERED:
	case PROCREG_CH_UPDATED:
	case PROCREG_CH_HANDOVER:
		return (ev->entry = decode_entry(pl)) != NULL &&
		    (ev->name = strdup(ev->entry->name)) != NULL;
	case PROCREG_CH_JOINED:
	case PROCREG_CH_LEFT:
		return (ev->member = decode_member(pl)) != NULL &&
		    (ev->name = strdup(ev->member->group)) != NULL;
	case PROCREG_CH_UNREGISTERED:
		if (pl->type != MSGPACK_OBJECT_ARRAY ||
		    pl->via.array.size < 2 ||
		    pl->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
		    pl->via.array.ptr[1].type != MSGPACK_OBJECT_STR)
			return false;
		return (ev->name =
		    handle_dup_bytes(pl->via.array.ptr[0].via.str.ptr,
		    pl->via.array.ptr[0].via.str.size)) != NULL &&
		    (ev->reason =
		    handle_dup_bytes(pl->via.array.ptr[1].via.str.ptr,
		    pl->via.array.ptr[1].via.str.size)) != NULL;
	case PROCREG_CH_UNKNOWN:
		break;
	}
	return true;		/* a later protocol's kind: payload only */
}

/* Copy a notification out of the unpacker's zone into the queue. */
int
decode_push(procreg_t *p, const msgpack_object *o)
{
	const msgpack_object *a = o->via.array.ptr, *params = &a[2];
	struct procreg_event *ev;
	const msgpack_object *v;
	uint32_t n;

	if (params->type != MSGPACK_OBJECT_ARRAY)
		return PROCREG_OK;	/* unknown shapes are ignored */
	v = params->via.array.ptr;
	n = params->via.array.size;
	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	/*
	 * A shape this library does not know is skipped, as a later
	 * protocol's kind would be; only out of memory is a failure.  The
	 * parsers say NULL/false for both: errno (ENOMEM from the
	 * allocator) tells them apart.
	 */
	errno = 0;
	if (decode_is_str(&a[1], "message") && n >= 3 &&
	    (v[0].type == MSGPACK_OBJECT_STR || decode_is_uint(&v[0]))) {
		ev->kind = PROCREG_EV_MESSAGE;
		ev->sender = (uint64_t)decode_int(&v[1]);
		if (!decode_target(ev, &v[0]) ||
		    (ev->payload = decode_encode(&v[2],
		    &ev->payload_len)) == NULL)
			goto bad;
	} else if (decode_is_str(&a[1], "call") && n >= 4 &&
	    decode_is_uint(&v[0]) &&
	    (v[1].type == MSGPACK_OBJECT_STR || decode_is_uint(&v[1]))) {
		ev->kind = PROCREG_EV_CALL;
		ev->call_id = v[0].via.u64;
		ev->sender = (uint64_t)decode_int(&v[2]);
		if (!decode_target(ev, &v[1]) ||
		    (ev->payload = decode_encode(&v[3],
		    &ev->payload_len)) == NULL)
			goto bad;
		if (p->auto_reconnect)
			ev->call_id = reconnect_note_call(p, ev->call_id);
	} else if (decode_is_str(&a[1], "publish") && n >= 3 &&
	    v[0].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_PUBLISH;
		ev->sender = (uint64_t)decode_int(&v[1]);
		if (!decode_target(ev, &v[0]) ||
		    (ev->payload = decode_encode(&v[2],
		    &ev->payload_len)) == NULL)
			goto bad;
	} else if (decode_is_str(&a[1], "down") && n >= 3 &&
	    decode_is_uint(&v[0]) &&
	    (v[1].type == MSGPACK_OBJECT_STR || decode_is_uint(&v[1])) &&
	    v[2].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_DOWN;
		ev->ref = p->auto_reconnect ? reconnect_down_ref(p,
		    v[0].via.u64) :
		    v[0].via.u64;
		if (!decode_target(ev, &v[1]) || (ev->reason =
		    handle_dup_bytes(v[2].via.str.ptr,
		    v[2].via.str.size)) == NULL)
			goto bad;
	} else if (decode_is_str(&a[1], "error") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR &&
	    v[1].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_ERROR;
		ev->reason = handle_dup_bytes(v[0].via.str.ptr,
		    v[0].via.str.size);
		ev->message = handle_dup_bytes(v[1].via.str.ptr,
		    v[1].via.str.size);
		if (ev->reason == NULL || ev->message == NULL)
			goto bad;
	} else if (decode_is_str(&a[1], "event") && n >= 4 &&
	    decode_is_uint(&v[0]) &&
	    decode_is_uint(&v[1]) && v[2].type == MSGPACK_OBJECT_STR) {
		if (!decode_sub_event(p, ev, v))
			goto bad;
	} else if (decode_is_str(&a[1], "overflow") && n >= 2 &&
	    decode_is_uint(&v[0]) &&
	    decode_is_uint(&v[1])) {
		ev->kind = PROCREG_EV_OVERFLOW;
		ev->seq = v[1].via.u64;
		ev->sub = reconnect_sub_id(p, v[0].via.u64, ev->seq, true);
	} else if (decode_is_str(&a[1], "acquired") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_ACQUIRED;
		if ((ev->name = handle_dup_bytes(v[0].via.str.ptr,
		    v[0].via.str.size)) == NULL ||
		    (ev->entry = decode_entry(&v[1])) == NULL)
			goto bad;
		reconnect_acquired(p, ev->name);
	} else if (decode_is_str(&a[1], "lost") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR &&
	    v[1].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_LOST;
		if ((ev->name = handle_dup_bytes(v[0].via.str.ptr,
		    v[0].via.str.size)) == NULL || (ev->reason =
		    handle_dup_bytes(v[1].via.str.ptr,
		    v[1].via.str.size)) == NULL)
			goto bad;
		reconnect_lost(p, ev->name, ev->reason);
	} else {
		free(ev);		/* a kind from a later protocol */
		return PROCREG_OK;
	}
	if (event_push(p, ev) != PROCREG_OK)
		goto nomem;
	return PROCREG_OK;
bad:
	if (errno == ENOMEM)
		goto nomem;
	procreg_event_free(ev);	/* malformed: skipped */
	return PROCREG_OK;
nomem:
	procreg_event_free(ev);
	return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
}

/* Map a response's error to a status (0 when none). */
int
decode_status(procreg_t *p, const msgpack_object *err)
{
	const msgpack_object *code, *msg;

	if (err->type == MSGPACK_OBJECT_NIL)
		return PROCREG_OK;
	if (err->type != MSGPACK_OBJECT_ARRAY || err->via.array.size < 2)
		return handle_fail(p, PROCREG_E_PROTOCOL, "malformed error");
	code = &err->via.array.ptr[0];
	msg = &err->via.array.ptr[1];
	snprintf(p->errmsg, sizeof(p->errmsg), "%.*s",
	    msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
	    msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
	for (int e = 1; e < PR_ERR__COUNT; e++) {
		if (decode_is_str(code, pr_err_name((enum pr_err)e)))
			return e;
	}
	/*
	 * A code this library predates, or one a callee chose (call): the
	 * code goes in front of the message, as "code: message".
	 */
	snprintf(p->errmsg, sizeof(p->errmsg), "%.*s: %.*s",
	    code->type == MSGPACK_OBJECT_STR ? (int)code->via.str.size : 1,
	    code->type == MSGPACK_OBJECT_STR ? code->via.str.ptr : "?",
	    msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
	    msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
	return PROCREG_E_OTHER;
}

/* The position in a register result {"queued": n}, or 0 (an entry). */
uint32_t
decode_queued(const msgpack_object *res)
{
	if (res->type != MSGPACK_OBJECT_MAP || res->via.map.size != 1 ||
	    !decode_is_str(&res->via.map.ptr[0].key, "queued") ||
	    !decode_is_uint(&res->via.map.ptr[0].val))
		return 0;
	return (uint32_t)res->via.map.ptr[0].val.via.u64;
}

/* An array of str into a new NULL-free vector; false when malformed or
 * out of memory. */
bool
decode_strv(const msgpack_object *o, char ***out, size_t *n)
{
	char **v;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return false;
	if ((v = calloc(o->via.array.size + 1, sizeof(*v))) == NULL)
		return false;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];

		if (s->type != MSGPACK_OBJECT_STR || (v[i] =
		    handle_dup_bytes(s->via.str.ptr,
		    s->via.str.size)) == NULL) {
			procreg_strv_free(v, i);
			return false;
		}
	}
	*out = v;
	*n = o->via.array.size;
	return true;
}

/* s is the caller's, of size bytes: cleared as far as it goes. */
void
procreg_subscription_free_sized(struct procreg_subscription *s, size_t size)
{
	if (s == NULL || size < PROCREG_SUBSCRIPTION_SIZE_1)
		return;
	procreg_entries_free(s->entries, s->nentries);
	procreg_members_free(s->members, s->nmembers);
	memset(s, 0, size);
}

void
(procreg_subscription_free)(struct procreg_subscription *s)
{
	procreg_subscription_free_sized(s, PROCREG_SUBSCRIPTION_SIZE_1);
}

void
procreg_bytes_free(void *b)
{
	free(b);
}

void
procreg_conns_free(uint64_t *v)
{
	free(v);
}

/* A snapshot (entries, then member entries) into out; false when
 * malformed or out of memory. */
bool
decode_snapshot(const msgpack_object *a, struct procreg_subscription *out)
{
	uint32_t n = a->via.array.size;

	if ((out->entries = calloc(n ? n : 1, sizeof(*out->entries))) ==
	    NULL || (out->members = calloc(n ? n : 1,
	    sizeof(*out->members))) == NULL)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *o = &a->via.array.ptr[i];
		bool member = false;

		if (o->type != MSGPACK_OBJECT_MAP)
			return false;
		for (uint32_t k = 0; k < o->via.map.size; k++)
			member = member || decode_is_str(&o->via.map.ptr[k].key,
			    "group");
		if (member) {
			if ((out->members[out->nmembers] = decode_member(o)) ==
			    NULL)
				return false;
			out->nmembers++;
		} else {
			if ((out->entries[out->nentries] = decode_entry(o)) ==
			    NULL)
				return false;
			out->nentries++;
		}
	}
	return true;
}
