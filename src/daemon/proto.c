/*
 * proto.c: msgpack-RPC decoding and encoding (see proto.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "proto.h"

const char proto_nil_value[1] = { (char)0xc0 };

/* A zone that decoded more than this is replaced, not kept warm. */
#define ZONE_KEEP	(256u * 1024u)

int
proto_decoder_init(struct pr_decoder *d)
{
	d->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	d->zone_big = 0;
	return d->zone == NULL ? -ENOMEM : 0;
}

void
proto_decoder_deinit(struct pr_decoder *d)
{
	if (d->zone != NULL)
		msgpack_zone_free(d->zone);
	d->zone = NULL;
}

/* Length of a uint or str header at p (type byte included), or 0 when
 * the byte is neither; *n gets a str's length. */
static size_t
peek_hdr(const uint8_t *p, const uint8_t *end, bool str, size_t *n)
{
	if (p >= end)
		return 0;
	if (!str) {
		if (*p < 0x80)
			return 1;
		switch (*p) {
		case 0xcc: return 2;
		case 0xcd: return 3;
		case 0xce: return 5;
		case 0xcf: return 9;
		}
		return 0;
	}
	if ((*p & 0xe0) == 0xa0) {
		*n = *p & 0x1f;
		return 1;
	}
	if (*p == 0xd9 && end - p >= 2) {
		*n = p[1];
		return 2;
	}
	return 0;
}

bool
proto_peek(const uint8_t *p, size_t len, struct pr_peek *pk)
{
	const uint8_t *end = p + len, *method;
	size_t h, mlen = 0;

	pk->method_at = NULL;
	pk->method = -1;
	/* [0, msgid, method, [name, ...]]: fixarray 4, type 0. */
	if (len < 6 || p[0] != 0x94 || p[1] != 0x00)
		return false;
	p += 2;
	if ((h = peek_hdr(p, end, false, NULL)) == 0 || (size_t)(end - p) <= h)
		return false;
	p += h;
	if ((h = peek_hdr(p, end, true, &mlen)) == 0 ||
	    (size_t)(end - p) <= h + mlen)
		return false;
	method = p + h;
	pk->method_at = (const char *)method;
	pk->method = pr_method_lookup((const char *)method, mlen);
	if (pk->method < 0 ||
	    !(pr_method_flags((enum pr_method)pk->method) & PR_MF_NAME))
		return false;
	p = method + mlen;
	/* A fixarray of params with at least one element. */
	if ((*p & 0xf0) != 0x90 || *p == 0x90)
		return false;
	p++;
	if ((h = peek_hdr(p, end, true, &pk->nlen)) == 0 || pk->nlen == 0 ||
	    (size_t)(end - p) < h + pk->nlen)
		return false;
	pk->name = (const char *)p + h;
	return true;
}

int
proto_decode(struct pr_decoder *d, const char *p, size_t len,
    const pr_value **out)
{
	msgpack_unpack_return r;
	size_t off = 0;

	if (d->zone == NULL && proto_decoder_init(d) < 0)
		return -ENOMEM;
	/*
	 * msgpack_unpack decodes into our zone, which is reused from request
	 * to request; strings point into p (no copy).
	 */
	r = msgpack_unpack(p, len, &off, d->zone, &d->obj);
	d->zone_big += len;
	if (r == MSGPACK_UNPACK_NOMEM_ERROR)
		return -ENOMEM;
	if (r != MSGPACK_UNPACK_SUCCESS || off != len)
		return -EINVAL;
	*out = &d->obj;
	return 0;
}

void
proto_decoded(struct pr_decoder *d)
{
	if (d->zone_big > ZONE_KEEP) {
		/* msgpack_zone_clear keeps the newest chunk, which after a
		 * large request is a large one: start afresh instead. */
		msgpack_zone_free(d->zone);
		d->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
		d->zone_big = 0;
		return;
	}
	msgpack_zone_clear(d->zone);
}

void
proto_parse(const pr_value *o, const struct pr_peek *hint,
    struct pr_request *rq)
{
	const msgpack_object *a;
	unsigned min, max;
	uint32_t n;
	int m;

	memset(rq, 0, sizeof(*rq));
	rq->kind = PR_KIND_BAD_OBJECT;
	rq->err = PR_ERR_BAD_REQUEST;
	rq->why = "expected a request [0, msgid, method, params] or a "
	    "notification [2, method, params]";
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 2)
		return;
	a = o->via.array.ptr;
	n = o->via.array.size;
	if (!proto_is_uint(&a[0]))
		return;
	if (a[0].via.u64 == PR_MSG_NOTIFY) {
		if (n == 3 && a[1].type == MSGPACK_OBJECT_STR &&
		    a[2].type == MSGPACK_OBJECT_ARRAY)
			rq->kind = PR_KIND_NOTIFY;
		return;
	}
	if (a[0].via.u64 != PR_MSG_REQUEST)
		return;
	if (!proto_is_uint(&a[1]) || a[1].via.u64 > UINT32_MAX) {
		rq->why = "a request's msgid must be a uint32";
		return;
	}
	rq->msgid = (uint32_t)a[1].via.u64;
	rq->kind = PR_KIND_BAD_REQUEST;
	if (n != 4) {
		rq->why = "a request is an array of 4 elements";
		return;
	}
	if (a[2].type != MSGPACK_OBJECT_STR) {
		rq->why = "the method must be a str";
		return;
	}
	if (a[3].type != MSGPACK_OBJECT_ARRAY) {
		rq->why = "the params must be an array";
		return;
	}
	/* Decoded strs point into the bytes the peek read: the same bytes
	 * name the same method. */
	if (hint != NULL && hint->method_at == a[2].via.str.ptr)
		m = hint->method;
	else
		m = pr_method_lookup(a[2].via.str.ptr, a[2].via.str.size);
	if (m < 0) {
		rq->err = PR_ERR_UNKNOWN_METHOD;
		rq->why = "unknown method";
		return;
	}
	pr_method_arity((enum pr_method)m, &min, &max);
	if (a[3].via.array.size < min || a[3].via.array.size > max) {
		rq->why = "wrong number of params";
		return;
	}
	rq->kind = PR_KIND_REQUEST;
	rq->err = PR_OK;
	rq->why = NULL;
	rq->method = (enum pr_method)m;
	rq->args.v = a[3].via.array.ptr;
	rq->args.n = a[3].via.array.size;
	rq->args.i = 0;
}


void
proto_out_init(struct pr_out *o)
{
	msgpack_sbuffer_init(&o->buf);
	msgpack_packer_init(&o->pk, &o->buf, msgpack_sbuffer_write);
}

void
proto_out_deinit(struct pr_out *o)
{
	msgpack_sbuffer_destroy(&o->buf);
}

void
proto_out_reset(struct pr_out *o)
{
	o->buf.size = 0;
}

/*
 * Direct encoding for the hot replies.  msgpack-c's packer calls its
 * write callback once per token (an entry is ~25 calls); these write a
 * whole reply's fixed parts into the buffer in place.  Generic values
 * (payloads, stored values) still go through msgpack-c.
 */

/* Room for n more bytes at the end of the buffer, or NULL. */
static char *
out_reserve(struct pr_out *o, size_t n)
{
	msgpack_sbuffer *b = &o->buf;

	if (b->alloc - b->size < n) {
		/* Small first: the history keeps thousands of these. */
		size_t na = b->alloc ? b->alloc : 256;
		char *d;

		while (na - b->size < n)
			na *= 2;
		if ((d = realloc(b->data, na)) == NULL)
			return NULL;
		b->data = d;
		b->alloc = na;
	}
	return b->data + b->size;
}

/* Mark bytes written up to p as used. */
static void
out_commit(struct pr_out *o, const char *p)
{
	o->buf.size = (size_t)(p - o->buf.data);
}

static char *
be(char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*p++ = (char)(v >> (8 * i));
	return p;
}

/* Bytes an unsigned value needs: 1, 2, 4 or 8. */
static int
ubytes(uint64_t v)
{
	return v < 256 ? 1 : v < 65536 ? 2 : v <= UINT32_MAX ? 4 : 8;
}

/*
 * msgpack's sized forms come in families of tags for 1-, 2-, 4- and
 * 8-byte payloads: write the family's tag for n bytes, then v.
 */
static char *
tagged(char *p, const char tags[4], uint64_t v, int n)
{
	*p++ = tags[n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3];
	return be(p, v, n);
}

static char *
enc_uint(char *p, uint64_t v)
{
	if (v < 128) {
		*p++ = (char)v;
		return p;
	}
	return tagged(p, "\xcc\xcd\xce\xcf", v, ubytes(v));
}

static char *
enc_int(char *p, int64_t v)
{
	if (v >= 0)
		return enc_uint(p, (uint64_t)v);
	if (v >= -32) {
		*p++ = (char)(0xe0 | (v & 0x1f));
		return p;
	}
	return tagged(p, "\xd0\xd1\xd2\xd3", (uint64_t)v, v >= INT8_MIN ? 1 :
	    v >= INT16_MIN ? 2 : v >= INT32_MIN ? 4 : 8);
}

/* A str header and body (callers reserve len + 5; len < 2^32). */
static char *
enc_str(char *p, const char *s, size_t len)
{
	if (len < 32)
		*p++ = (char)(0xa0 | len);
	else
		p = tagged(p, "\xd9\xda\xdb\xdb", len, ubytes(len));
	memcpy(p, s, len);
	return p + len;
}

/* A constant str (a map key) from a literal. */
#define ENC_KEY(p, lit)	enc_str((p), (lit), sizeof(lit) - 1)

static char *
enc_array(char *p, uint32_t n)
{
	if (n < 16) {
		*p++ = (char)(0x90 | n);
		return p;
	}
	return tagged(p, "\xdc\xdc\xdd\xdd", n, n < 65536 ? 2 : 4);
}

/* Append raw, already encoded bytes. */
static int
out_raw(struct pr_out *o, const char *s, size_t len)
{
	char *p = out_reserve(o, len);

	if (p == NULL)
		return -ENOMEM;
	memcpy(p, s, len);
	out_commit(o, p + len);
	return 0;
}

/* Pack a str from bytes. */
static int
put_str(struct pr_out *o, const char *s, size_t len)
{
	if (msgpack_pack_str(&o->pk, len) < 0 ||
	    msgpack_pack_str_body(&o->pk, s, len) < 0)
		return -ENOMEM;
	return 0;
}

static int
put_cstr(struct pr_out *o, const char *s)
{
	return put_str(o, s, strlen(s));
}

int
proto_reply_begin(struct pr_out *o, uint32_t msgid)
{
	char *p = out_reserve(o, 8);

	if (p == NULL)
		return -ENOMEM;
	*p++ = (char)0x94;
	*p++ = PR_MSG_RESPONSE;
	p = enc_uint(p, msgid);
	*p++ = (char)0xc0;
	out_commit(o, p);
	return 0;
}

/* [code, message] */
static int
put_error(struct pr_out *o, enum pr_err e, const char *msg)
{
	if (msgpack_pack_array(&o->pk, 2) < 0 ||
	    put_cstr(o, pr_err_name(e)) < 0 || put_cstr(o, msg) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_reply_error_raw(struct pr_out *o, uint32_t msgid, const char *code,
    size_t clen, const char *msg, size_t mlen)
{
	if (msgpack_pack_array(&o->pk, 4) < 0 ||
	    msgpack_pack_uint8(&o->pk, PR_MSG_RESPONSE) < 0 ||
	    msgpack_pack_uint32(&o->pk, msgid) < 0 ||
	    msgpack_pack_array(&o->pk, 2) < 0 ||
	    put_str(o, code, clen) < 0 || put_str(o, msg, mlen) < 0 ||
	    msgpack_pack_nil(&o->pk) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_reply_error(struct pr_out *o, uint32_t msgid, enum pr_err e,
    const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (msgpack_pack_array(&o->pk, 4) < 0 ||
	    msgpack_pack_uint8(&o->pk, PR_MSG_RESPONSE) < 0 ||
	    msgpack_pack_uint32(&o->pk, msgid) < 0 ||
	    put_error(o, e, msg) < 0 || msgpack_pack_nil(&o->pk) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_put_nil(struct pr_out *o)
{
	return out_raw(o, "\xc0", 1);
}

int
proto_put_bool(struct pr_out *o, bool b)
{
	return out_raw(o, b ? "\xc3" : "\xc2", 1);
}

int
proto_put_uint(struct pr_out *o, uint64_t u)
{
	char *p = out_reserve(o, 9);

	if (p == NULL)
		return -ENOMEM;
	out_commit(o, enc_uint(p, u));
	return 0;
}

int
proto_put_str(struct pr_out *o, const char *s, size_t len)
{
	char *p = out_reserve(o, len + 5);

	if (p == NULL)
		return -ENOMEM;
	out_commit(o, enc_str(p, s, len));
	return 0;
}

int
proto_put_map(struct pr_out *o, uint32_t n)
{
	return msgpack_pack_map(&o->pk, n) < 0 ? -ENOMEM : 0;
}

int
proto_put_value(struct pr_out *o, const pr_value *v)
{
	return msgpack_pack_object(&o->pk, *v) < 0 ? -ENOMEM : 0;
}

int
proto_put_array(struct pr_out *o, uint32_t n)
{
	char *p = out_reserve(o, 5);

	if (p == NULL)
		return -ENOMEM;
	out_commit(o, enc_array(p, n));
	return 0;
}

/* A map key then an unsigned value (msgpack-c's packer, cold paths). */
static int
kv_uint(struct pr_out *o, const char *k, uint64_t v)
{
	if (put_cstr(o, k) < 0 || msgpack_pack_uint64(&o->pk, v) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * An entry or a member entry, in place: key ("name" or "group") and its
 * str, the holder's connection and credentials, the stored value's bytes
 * (copied, not re-encoded; none: nil), since and gen.
 */
static int
put_entry(struct pr_out *o, const char *key, size_t klen, const char *name,
    size_t len, const struct reg_client *c, const char *value,
    uint32_t value_len, uint64_t since, uint64_t gen)
{
	size_t vlen = value_len ? value_len : 1;
	char *p;

	/* A cheap upper bound (keys 40, integers at most 9 bytes each, str
	 * header 2): the exact size is for budgets, not for this. */
	if ((p = out_reserve(o, 112 + len + vlen)) == NULL)
		return -ENOMEM;
	*p++ = (char)0x88;
	p = enc_str(p, key, klen);
	p = enc_str(p, name, len);
	p = ENC_KEY(p, "conn");
	p = enc_uint(p, c->id);
	p = ENC_KEY(p, "pid");
	p = enc_int(p, c->pid);
	p = ENC_KEY(p, "uid");
	p = enc_uint(p, c->uid);
	p = ENC_KEY(p, "gid");
	p = enc_uint(p, c->gid);
	p = ENC_KEY(p, "value");
	memcpy(p, value_len ? value : proto_nil_value, vlen);
	p += vlen;
	p = ENC_KEY(p, "since");
	p = enc_uint(p, since);
	p = ENC_KEY(p, "gen");
	p = enc_uint(p, gen);
	out_commit(o, p);
	return 0;
}

int
proto_put_entry(struct pr_out *o, const struct reg_name *n)
{
	return put_entry(o, "name", 4, n->data, n->name_len, n->owner,
	    reg_name_value(n), n->value_len, n->since_ms, n->gen);
}

/* Encoded sizes, exactly as enc_uint, enc_int and enc_str write them. */
static size_t
uint_size(uint64_t v)
{
	return v < 128 ? 1 : 1 + (size_t)ubytes(v);
}

static size_t
int_size(int64_t v)
{
	if (v >= 0)
		return uint_size((uint64_t)v);
	return v >= -32 ? 1 : v >= INT8_MIN ? 2 : v >= INT16_MIN ? 3 :
	    v >= INT32_MIN ? 5 : 9;
}

static size_t
str_size(size_t len)
{
	return (len < 32 ? 1 : 1 + (size_t)ubytes(len)) + len;
}

/* An entry or a member entry: the map header and the eight keys (name
 * and group differ by one byte), then the values. */
static size_t
entry_size(const struct reg_client *c, size_t keylen, size_t len,
    uint32_t vlen, uint64_t since, uint64_t gen)
{
	return 1 + 33 + keylen + str_size(len) + uint_size(c->id) +
	    int_size(c->pid) + uint_size(c->uid) + uint_size(c->gid) +
	    (vlen ? vlen : 1) + uint_size(since) + uint_size(gen);
}

size_t
proto_reply_size(uint32_t msgid)
{
	return 3 + uint_size(msgid);	/* [1, msgid, nil, */
}

size_t
proto_array_size(uint32_t n)
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;	/* maps alike */
}

size_t
proto_str_size(size_t len)
{
	return str_size(len);
}

size_t
proto_entry_size(const struct reg_name *n)
{
	return entry_size(n->owner, 5, n->name_len, n->value_len, n->since_ms,
	    n->gen);
}

int
proto_put_member(struct pr_out *o, const struct reg_member *mb)
{
	return put_entry(o, "group", 5, mb->group->name, mb->group->name_len,
	    mb->client, mb->value, mb->value_len, mb->since_ms, mb->gen);
}

size_t
proto_member_size(const struct reg_member *mb)
{
	return entry_size(mb->client, 6, mb->group->name_len, mb->value_len,
	    mb->since_ms, mb->gen);
}

int
proto_put_stats(struct pr_out *o, const struct pr_stats *st)
{
	char *p = out_reserve(o, 400);

	if (p == NULL)
		return -ENOMEM;
	*p++ = (char)0xde;
	*p++ = 0;
	*p++ = st->cluster != NULL ? 18 : 17;
	p = ENC_KEY(p, "connections");
	p = enc_uint(p, st->connections);
	p = ENC_KEY(p, "names");
	p = enc_uint(p, st->names);
	p = ENC_KEY(p, "monitors");
	p = enc_uint(p, st->monitors);
	p = ENC_KEY(p, "requests");
	p = enc_uint(p, st->requests);
	p = ENC_KEY(p, "messages");
	p = enc_uint(p, st->messages);
	p = ENC_KEY(p, "downs");
	p = enc_uint(p, st->downs);
	p = ENC_KEY(p, "notifications_ignored");
	p = enc_uint(p, st->notifications_ignored);
	p = ENC_KEY(p, "connections_total");
	p = enc_uint(p, st->connections_total);
	p = ENC_KEY(p, "uptime_ms");
	p = enc_uint(p, st->uptime_ms);
	p = ENC_KEY(p, "groups");
	p = enc_uint(p, st->groups);
	p = ENC_KEY(p, "members");
	p = enc_uint(p, st->members);
	p = ENC_KEY(p, "calls");
	p = enc_uint(p, st->calls);
	p = ENC_KEY(p, "awaits");
	p = enc_uint(p, st->awaits);
	p = ENC_KEY(p, "subscriptions");
	p = enc_uint(p, st->subscriptions);
	p = ENC_KEY(p, "seq");
	p = enc_uint(p, st->seq);
	p = ENC_KEY(p, "replies_late");
	p = enc_uint(p, st->replies_late);
	p = ENC_KEY(p, "draining");
	p = enc_uint(p, st->draining);
	out_commit(o, p);
	if (st->cluster == NULL)
		return 0;
	if (put_cstr(o, "cluster") < 0 || msgpack_pack_map(&o->pk, 7) < 0 ||
	    put_cstr(o, "node") < 0 || put_cstr(o, st->node) < 0 ||
	    put_cstr(o, "state") < 0 ||
	    put_cstr(o, st->cluster->state == CL_UP ? "up" :
	    st->cluster->state == CL_LOST ? "lost" : "joining") < 0 ||
	    put_cstr(o, "etcd") < 0 || put_cstr(o, st->cluster->etcd) < 0 ||
	    kv_uint(o, "lease_ttl", st->lease_ttl) < 0 ||
	    kv_uint(o, "names", st->cluster->names) < 0 ||
	    kv_uint(o, "nodes", st->cluster->nodes) < 0 ||
	    kv_uint(o, "revision", (uint64_t)st->cluster->revision) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_put_cluster_entry(struct pr_out *o, const struct cl_entry *e,
    bool stale)
{
	struct cl_view v;

	cluster_entry_view(e, &v);
	return proto_put_cluster_view(o, &v, stale);
}

int
proto_put_cluster_view(struct pr_out *o, const struct cl_view *e,
    bool stale)
{
	size_t vlen = e->value_len ? e->value_len : 1;
	char *p;

	/* As put_entry, in place: the keys (80 bytes with stale), five
	 * integers of at most 9 bytes, three str headers of at most 2. */
	if ((p = out_reserve(o, 140 + e->name_len + e->node_len + vlen)) ==
	    NULL)
		return -ENOMEM;
	*p++ = (char)(stale ? 0x8b : 0x8a);
	p = ENC_KEY(p, "name");
	p = enc_str(p, e->name, e->name_len);
	p = ENC_KEY(p, "conn");
	p = enc_uint(p, e->conn);
	p = ENC_KEY(p, "pid");
	p = enc_int(p, e->pid);
	p = ENC_KEY(p, "uid");
	p = enc_uint(p, e->uid);
	p = ENC_KEY(p, "gid");
	p = enc_uint(p, e->gid);
	p = ENC_KEY(p, "value");
	memcpy(p, e->value_len ? e->value : proto_nil_value, vlen);
	p += vlen;
	p = ENC_KEY(p, "since");
	p = enc_uint(p, e->since_ms);
	p = ENC_KEY(p, "gen");
	p = enc_uint(p, (uint64_t)e->gen);
	p = ENC_KEY(p, "scope");
	p = ENC_KEY(p, "cluster");
	p = ENC_KEY(p, "node");
	p = enc_str(p, e->node, e->node_len);
	if (stale) {
		p = ENC_KEY(p, "stale");
		*p++ = (char)0xc3;
	}
	out_commit(o, p);
	return 0;
}

size_t
proto_cluster_entry_size(const struct cl_entry *e)
{
	/* Keys and headers, at most 9 bytes per integer, the stale key. */
	return 1 + 64 + 5 * 9 + str_size(e->name_len) +
	    (e->value_len ? e->value_len : 1) + 32 + 64 + 8;
}

int
proto_put_node(struct pr_out *o, const struct cl_node *n, bool self)
{
	if (msgpack_pack_map(&o->pk, 4) < 0 ||
	    put_cstr(o, "name") < 0 || put_cstr(o, n->name) < 0 ||
	    kv_uint(o, "since", n->since_ms) < 0 ||
	    put_cstr(o, "address") < 0 || put_cstr(o, n->address) < 0 ||
	    put_cstr(o, "self") < 0 ||
	    (self ? msgpack_pack_true(&o->pk) : msgpack_pack_false(&o->pk)) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_put_hello(struct pr_out *o, const struct pr_hello *h)
{
	if (msgpack_pack_map(&o->pk, h->node != NULL ? 7 : 6) < 0 ||
	    put_cstr(o, "server") < 0 || put_cstr(o, PR_SERVER_NAME) < 0 ||
	    put_cstr(o, "version") < 0 || put_cstr(o, PR_VERSION) < 0 ||
	    kv_uint(o, "protocol", PR_PROTOCOL_VERSION) < 0 ||
	    kv_uint(o, "conn", h->conn) < 0 ||
	    put_cstr(o, "boot") < 0 || put_cstr(o, h->boot) < 0 ||
	    kv_uint(o, "max_message", h->max_message) < 0)
		return -ENOMEM;
	if (h->node != NULL && (put_cstr(o, "node") < 0 ||
	    put_cstr(o, h->node) < 0))
		return -ENOMEM;
	return 0;
}

/* [2, method, [ with n params to follow */
static int
push_begin(struct pr_out *o, const char *method, uint32_t n)
{
	if (msgpack_pack_array(&o->pk, 3) < 0 ||
	    msgpack_pack_uint8(&o->pk, PR_MSG_NOTIFY) < 0 ||
	    put_cstr(o, method) < 0 || msgpack_pack_array(&o->pk, n) < 0)
		return -ENOMEM;
	return 0;
}

/* A target as its sender gave it: the name, or the conn id. */
static char *
enc_target(char *p, const struct reg_target *t)
{
	return t->name != NULL ? enc_str(p, t->name, t->len) :
	    enc_uint(p, t->conn);
}

/* [2, method, [ with n (< 16) params to follow, in place. */
static char *
enc_push(char *p, const char *method, size_t mlen, unsigned n)
{
	*p++ = (char)0x93;
	*p++ = PR_MSG_NOTIFY;
	p = enc_str(p, method, mlen);
	*p++ = (char)(0x90 | n);
	return p;
}

#define ENC_PUSH(p, lit, n)	enc_push((p), (lit), sizeof(lit) - 1, (n))

/* [2, method, [target, sender, payload]]: message and publish. */
static int
push_addressed(struct pr_out *o, const char *method, size_t mlen,
    const struct reg_target *t, uint64_t sender, const pr_value *payload)
{
	char *p = out_reserve(o, 24 + mlen + t->len);

	if (p == NULL)
		return -ENOMEM;
	p = enc_push(p, method, mlen, 3);
	p = enc_target(p, t);
	p = enc_uint(p, sender);
	out_commit(o, p);
	return msgpack_pack_object(&o->pk, *payload) < 0 ? -ENOMEM : 0;
}

int
proto_push_message(struct pr_out *o, const struct reg_target *t,
    uint64_t sender, const pr_value *payload)
{
	return push_addressed(o, PR_PUSH_MESSAGE, sizeof(PR_PUSH_MESSAGE) - 1,
	    t, sender, payload);
}

int
proto_push_publish(struct pr_out *o, const char *group, size_t len,
    uint64_t sender, const pr_value *payload)
{
	struct reg_target t = { group, len, 0 };

	return push_addressed(o, PR_PUSH_PUBLISH, sizeof(PR_PUSH_PUBLISH) - 1,
	    &t, sender, payload);
}

int
proto_push_call(struct pr_out *o, uint64_t call_id, const struct reg_target *t,
    uint64_t caller, const pr_value *payload)
{
	char *p = out_reserve(o, 40 + t->len);

	if (p == NULL)
		return -ENOMEM;
	/* [2, "call", [call_id, target, caller, payload]] */
	p = ENC_PUSH(p, PR_PUSH_CALL, 4);
	p = enc_uint(p, call_id);
	p = enc_target(p, t);
	p = enc_uint(p, caller);
	out_commit(o, p);
	return msgpack_pack_object(&o->pk, *payload) < 0 ? -ENOMEM : 0;
}

int
proto_push_down(struct pr_out *o, uint64_t ref, const struct reg_target *t,
    enum pr_down_reason why)
{
	const char *r = pr_down_reason_name(why);
	char *p = out_reserve(o, 48 + t->len);

	if (p == NULL)
		return -ENOMEM;
	/* [2, "down", [ref, target, reason]] */
	p = ENC_PUSH(p, PR_PUSH_DOWN, 3);
	p = enc_uint(p, ref);
	p = enc_target(p, t);
	p = enc_str(p, r, strlen(r));
	out_commit(o, p);
	return 0;
}

int
proto_put_raw(struct pr_out *o, const void *p, size_t len)
{
	return out_raw(o, p, len);
}

int
proto_push_event(struct pr_out *o, uint64_t sub, uint64_t seq,
    const char *kind, const void *payload, size_t len)
{
	char *p = out_reserve(o, 48 + strlen(kind));

	if (p == NULL)
		return -ENOMEM;
	/* [2, "event", [sub, seq, kind, payload]] */
	p = ENC_PUSH(p, PR_PUSH_EVENT, 4);
	p = enc_uint(p, sub);
	p = enc_uint(p, seq);
	p = enc_str(p, kind, strlen(kind));
	out_commit(o, p);
	return len > 0 ? out_raw(o, payload, len) : 0;
}

int
proto_push_overflow(struct pr_out *o, uint64_t sub, uint64_t seq)
{
	if (push_begin(o, PR_PUSH_OVERFLOW, 2) < 0 ||
	    proto_put_uint(o, sub) < 0 || proto_put_uint(o, seq) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_push_acquired(struct pr_out *o, const struct reg_name *n)
{
	if (push_begin(o, PR_PUSH_ACQUIRED, 2) < 0 ||
	    proto_put_str(o, n->data, n->name_len) < 0 ||
	    proto_put_entry(o, n) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_push_acquired_cluster(struct pr_out *o, const struct cl_entry *e)
{
	if (push_begin(o, PR_PUSH_ACQUIRED, 2) < 0 ||
	    proto_put_str(o, e->data, e->name_len) < 0 ||
	    proto_put_cluster_entry(o, e, false) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_push_lost(struct pr_out *o, const char *name, size_t len,
    enum pr_down_reason why)
{
	if (push_begin(o, PR_PUSH_LOST, 2) < 0 ||
	    proto_put_str(o, name, len) < 0 ||
	    put_cstr(o, pr_down_reason_name(why)) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_put_name_reason(struct pr_out *o, const char *name, size_t len,
    enum pr_down_reason why)
{
	const char *r = pr_down_reason_name(why);
	char *p = out_reserve(o, 16 + len + strlen(r));

	if (p == NULL)
		return -ENOMEM;
	*p++ = (char)0x92;
	p = enc_str(p, name, len);
	p = enc_str(p, r, strlen(r));
	out_commit(o, p);
	return 0;
}

int
proto_push_shutdown(struct pr_out *o, const char *reason)
{
	if (push_begin(o, PR_PUSH_SHUTDOWN, 1) < 0 || put_cstr(o, reason) < 0)
		return -ENOMEM;
	return 0;
}

size_t
proto_oom_notice(char *buf, size_t size)
{
	static const char msg[] = "the daemon is out of memory; closing";
	char *p = buf;

	if (size < 64)
		return 0;
	p = ENC_PUSH(p, PR_PUSH_ERROR, 2);
	p = ENC_KEY(p, "limit");
	p = ENC_KEY(p, msg);
	return (size_t)(p - buf);
}

int
proto_push_error(struct pr_out *o, enum pr_err e, const char *msg)
{
	if (push_begin(o, PR_PUSH_ERROR, 2) < 0 ||
	    put_cstr(o, pr_err_name(e)) < 0 || put_cstr(o, msg) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_encode_value(struct pr_out *o, const pr_value *v)
{
	return msgpack_pack_object(&o->pk, *v) < 0 ? -ENOMEM : 0;
}
