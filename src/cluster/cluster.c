/*
 * cluster.c: the node's lease, its cache of the cluster and the writes
 * (see cluster.h).
 *
 * Life of a node: grant a lease, create P nodes/NODE under it (create if
 * absent: a live daemon with the same node name keeps its key alive, and
 * we give up after one TTL of finding it there), read P whole (paged),
 * then watch P from the revision read.  Keepalives go every TTL/3.  If
 * TTL passes, by our own monotonic clock, since the send time of the last
 * keepalive etcd answered, the node has lost: it cannot know whether etcd
 * still counts its lease, and must assume not.  It tells its owners
 * `lost`, forgets its own names, revokes the old lease (when etcd answers
 * again) and joins afresh.  It never takes a name back by itself.
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <event2/event.h>
#include <sodium.h>

#include "cluster.h"
#include "etcd.h"
#include "htab.h"
#include "now.h"

/* Keys read per page when the cache is filled. */
#define CL_PAGE			1000
/* The tick: lease deadline checks, keepalives, retries. */
#define CL_TICK_MS		100
/* Retry a failed join step or a failed batch of deletes after this. */
#define CL_RETRY_MS		500
/* Entry and node value formats (proto/PROTOCOL.md, "Cluster"). */
#define CL_VALUE_V1		1
#define CL_ENTRY_HDR		36
#define CL_NODE_HDR		12
#define CL_KEY_MAX		(128 + 8 + 256)

/* One local connection's part in the cluster. */
struct cl_peer {
	void			*peer;
	LIST_HEAD(, cl_entry)	 names;
	LIST_HEAD(, cl_monitor)	 monitors;
	LIST_HEAD(, cl_op)	 ops;
	uint32_t		 nnames;
	uint32_t		 nmonitors;
};

struct cl_monitor {
	LIST_ENTRY(cl_monitor)	 by_entry;
	LIST_ENTRY(cl_monitor)	 by_holder;
	struct cl_entry		*e;
	struct cl_peer		*holder;
	uint64_t		 ref;
};

enum cl_op_kind {
	OP_REGISTER,
	OP_UNREGISTER,
	OP_UPDATE,
	OP_EVICT,
	OP_READ,
	OP_DELETES	/* a closed connection's names, a batch */
};

/* A write or read waiting for etcd.  peer NULL: its connection went. */
struct cl_op {
	LIST_ENTRY(cl_op)	 by_peer;
	LIST_ENTRY(cl_op)	 all;
	struct cluster		*cl;
	struct cl_peer		*peer;
	enum cl_op_kind		 kind;
	uint32_t		 msgid;
	int64_t			 gen;
	struct cl_owner		 owner;
	/* OP_DELETES: n (name, gen) pairs; the others: one name. */
	size_t			 n;
	char			**names;
	uint8_t			*lens;
	int64_t			*gens;
	uint8_t			 name_len;
	char			 name[256];
	uint32_t		 value_len;
	uint8_t			*value;
};

struct cluster {
	struct event_base	*base;
	struct etcd		*etcd;
	const struct cluster_ops *ops;
	void			*arg;
	char			 node[64];
	size_t			 node_len;
	char			 prefix[128];
	size_t			 prefix_len;
	char			 address[128];
	unsigned		 ttl_s;
	uint8_t			 hkey[crypto_shorthash_KEYBYTES];
	enum cl_state		 state;
	/* The lease. */
	int64_t			 lease;
	int64_t			 old_lease;	/* to revoke after a loss */
	uint64_t		 alive_until_us; /* by our clock, conservative */
	uint64_t		 ka_sent_us;
	bool			 ka_inflight;
	bool			 join_inflight;
	bool			 have_key;	/* our nodes/ key, this lease */
	int64_t			 ka_lease;	/* the keepalive in flight's */
	/* A register timed out: a key of ours may have no owner. */
	bool			 orphans_possible;
	uint64_t		 join_after_us;	/* next attempt */
	uint64_t		 taken_since_us; /* our node key held by another */
	uint64_t		 since_ms;
	/* The cache. */
	struct htab		 names;
	uint64_t		 nnames;
	LIST_HEAD(, cl_node)	 nodes;
	uint64_t		 epoch;		/* of the running sync */
	int64_t			 rev;		/* newest revision applied */
	struct etcd_watch	*watch;
	bool			 watch_up;	/* created and not ended */
	unsigned		 watch_fails;	/* in a row: the backoff */
	bool			 syncing;
	bool			 leaving;	/* cluster_leave: no more writes */
	/* Connections and what waits for etcd. */
	struct htab		 peers;
	LIST_HEAD(, cl_op)	 pending;
	TAILQ_HEAD(, cl_entry)	 doomed;	/* to delete, not yet sent */
	uint64_t		 doom_after_us;
	unsigned		 doom_inflight;
	struct event		*tick;
};

static void	cl_join(struct cluster *);
static void	cl_sync(struct cluster *);
static void	cl_doom_flush(struct cluster *);

static void
cl_log(struct cluster *cl, int prio, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cl->ops->log(cl->arg, prio, buf);
}

/* ------------------------------------------------------------------ */
/* Encodings: little-endian, fixed headers (PROTOCOL.md, "Cluster").    */

static void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Is this a node name procregd would accept (config.c's rule)? */
static bool
node_name_ok(const uint8_t *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-'))
			return false;
	}
	return true;
}

/* The key P kind NAME into buf (CL_KEY_MAX); its length. */
static size_t
cl_key(const struct cluster *cl, const char *kind, const char *name,
    size_t len, char *buf)
{
	size_t kl = strlen(kind), n = 0;

	memcpy(buf, cl->prefix, cl->prefix_len);
	n += cl->prefix_len;
	memcpy(buf + n, kind, kl);
	n += kl;
	memcpy(buf + n, name, len);
	return n + len;
}

/* Does key (under P) begin with kind?  The rest in *rest. */
static bool
key_kind(const struct cluster *cl, const struct etcd_kv *kv,
    const char *kind, const uint8_t **rest, size_t *rlen)
{
	size_t kl = strlen(kind);

	if (kv->key_len < cl->prefix_len + kl ||
	    memcmp(kv->key + cl->prefix_len, kind, kl) != 0)
		return false;
	*rest = kv->key + cl->prefix_len + kl;
	*rlen = kv->key_len - cl->prefix_len - kl;
	return true;
}

/* ------------------------------------------------------------------ */
/* The cache.                                                           */

static uint64_t
cl_hash(const struct cluster *cl, const char *s, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)s, len, cl->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

struct name_key {
	const char	*s;
	size_t		 len;
};

static bool
entry_eq(const void *item, const void *key)
{
	const struct cl_entry *e = item;
	const struct name_key *k = key;

	return e->name_len == k->len && memcmp(e->data, k->s, k->len) == 0;
}

static struct cl_entry *
cache_find(const struct cluster *cl, const char *name, size_t len)
{
	struct name_key k = { name, len };

	return htab_find(&cl->names, cl_hash(cl, name, len), entry_eq, &k);
}

static struct cl_node *
node_find(const struct cluster *cl, const char *name, size_t len)
{
	struct cl_node *n;

	LIST_FOREACH(n, &cl->nodes, link)
		if (n->name_len == len && memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

/* The node record, made when first named (by a name or its key). */
static struct cl_node *
node_get(struct cluster *cl, const char *name, size_t len)
{
	struct cl_node *n = node_find(cl, name, len);

	if (n != NULL || len >= sizeof(n->name))
		return n;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	memcpy(n->name, name, len);
	n->name_len = (uint8_t)len;
	LIST_INSERT_HEAD(&cl->nodes, n, link);
	return n;
}

/* Free a node nobody points at any more. */
static void
node_put(struct cluster *cl, struct cl_node *n)
{
	(void)cl;
	if (n->nnames == 0 && !n->alive) {
		LIST_REMOVE(n, link);
		free(n);
	}
}

static uint64_t
peer_hash(const void *peer)
{
	uint64_t h = (uint64_t)(uintptr_t)peer;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

static bool
peer_eq(const void *item, const void *key)
{
	return ((const struct cl_peer *)item)->peer == key;
}

static struct cl_peer *
peer_find(const struct cluster *cl, const void *peer)
{
	return htab_find(&cl->peers, peer_hash(peer), peer_eq, peer);
}

static struct cl_peer *
peer_get(struct cluster *cl, void *peer)
{
	struct cl_peer *p = peer_find(cl, peer);

	if (p != NULL)
		return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->peer = peer;
	LIST_INIT(&p->names);
	LIST_INIT(&p->monitors);
	LIST_INIT(&p->ops);
	if (htab_insert(&cl->peers, peer_hash(peer), p) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Free a peer record that holds nothing. */
static void
peer_put(struct cluster *cl, struct cl_peer *p)
{
	if (LIST_EMPTY(&p->names) && LIST_EMPTY(&p->monitors) &&
	    LIST_EMPTY(&p->ops)) {
		htab_remove(&cl->peers, peer_hash(p->peer), p);
		free(p);
	}
}

static void
entry_set_owner(struct cluster *cl, struct cl_entry *e, struct cl_peer *p)
{
	if (e->owner == p)
		return;
	if (e->owner != NULL) {
		struct cl_peer *old = e->owner;

		LIST_REMOVE(e, owner_link);
		old->nnames--;
		e->owner = NULL;
		peer_put(cl, old);
	}
	if (p != NULL) {
		LIST_INSERT_HEAD(&p->names, e, owner_link);
		p->nnames++;
		e->owner = p;
	}
}

/*
 * Remove an entry: its monitors fire with why, a local owner that did not
 * ask for it is told `lost` (tell_owner), then it is freed.
 */
static void
entry_remove(struct cluster *cl, struct cl_entry *e, enum pr_down_reason why,
    bool tell_owner)
{
	struct cl_monitor *m;

	while ((m = LIST_FIRST(&e->monitors)) != NULL) {
		struct cl_peer *h = m->holder;

		LIST_REMOVE(m, by_entry);
		LIST_REMOVE(m, by_holder);
		h->nmonitors--;
		cl->ops->down(cl->arg, h->peer, m->ref, e->data, e->name_len,
		    why);
		free(m);
		peer_put(cl, h);
	}
	if (e->owner != NULL && tell_owner && !e->unregistering)
		cl->ops->lost(cl->arg, e->owner->peer, e->data, e->name_len,
		    why);
	entry_set_owner(cl, e, NULL);
	if (e->doomed)
		TAILQ_REMOVE(&cl->doomed, e, doom_link);
	htab_remove(&cl->names, cl_hash(cl, e->data, e->name_len), e);
	cl->nnames--;
	e->node->nnames--;
	node_put(cl, e->node);
	free(e);
}

static bool
entry_is_self(const struct cluster *cl, const struct cl_entry *e)
{
	return e->node->name_len == cl->node_len &&
	    memcmp(e->node->name, cl->node, cl->node_len) == 0;
}

/* Queue the entry's key for deletion (its owner is gone). */
static void
entry_doom(struct cluster *cl, struct cl_entry *e)
{
	if (!e->doomed) {
		e->doomed = true;
		TAILQ_INSERT_TAIL(&cl->doomed, e, doom_link);
	}
}

/* Is a register of this name waiting for etcd?  (Walks the pending
 * writes: only after a register timed out.) */
static bool
register_pending(const struct cluster *cl, const char *name, size_t len)
{
	const struct cl_op *op;

	LIST_FOREACH(op, &cl->pending, all)
		if (op->kind == OP_REGISTER && op->name_len == len &&
		    memcmp(op->name, name, len) == 0)
			return true;
	return false;
}

/*
 * Put what etcd says of a name into the cache: a new entry, or the same
 * one changed.  A new generation replaces the old entry (its monitors
 * fire: the name the monitor watched is gone).  NULL when the value does
 * not parse (not ours: ignored) or out of memory.
 */
static struct cl_entry *
cache_put(struct cluster *cl, const char *name, size_t len,
    const uint8_t *v, size_t vlen, int64_t gen)
{
	struct cl_entry *e, *old;
	struct cl_node *n;
	size_t nl, val_len;

	if (len == 0 || len > PR_NAME_MAX || vlen < CL_ENTRY_HDR ||
	    v[0] != CL_VALUE_V1)
		return NULL;
	nl = v[2];
	if (vlen < CL_ENTRY_HDR + nl || !node_name_ok(v + CL_ENTRY_HDR, nl))
		return NULL;
	val_len = vlen - CL_ENTRY_HDR - nl;
	if (val_len > UINT32_MAX)
		return NULL;
	old = cache_find(cl, name, len);
	if (old != NULL && old->gen == gen && old->value_len == val_len) {
		/* The same registration (our own write seen again, or an
		 * update of the value in place). */
		memcpy(old->data + len, v + CL_ENTRY_HDR + nl, val_len);
		old->epoch = cl->epoch;
		return old;
	}
	if ((n = node_get(cl, (const char *)v + CL_ENTRY_HDR, nl)) == NULL ||
	    (e = calloc(1, sizeof(*e) + len + val_len)) == NULL)
		return NULL;
	LIST_INIT(&e->monitors);
	e->node = n;
	e->uid = get_u32(v + 4);
	e->gid = get_u32(v + 8);
	e->conn = get_u64(v + 12);
	e->pid = (int64_t)get_u64(v + 20);
	e->since_ms = get_u64(v + 28);
	e->gen = gen;
	e->epoch = cl->epoch;
	e->name_len = (uint8_t)len;
	e->value_len = (uint32_t)val_len;
	memcpy(e->data, name, len);
	memcpy(e->data + len, v + CL_ENTRY_HDR + nl, val_len);
	n->nnames++;	/* before old goes: it may hold the same node */
	if (old != NULL) {
		struct cl_peer *owner = old->owner;

		/* Same generation, another size: move what hangs on it. */
		if (old->gen == gen) {
			struct cl_monitor *m;

			while ((m = LIST_FIRST(&old->monitors)) != NULL) {
				LIST_REMOVE(m, by_entry);
				m->e = e;
				LIST_INSERT_HEAD(&e->monitors, m, by_entry);
			}
			/* The new first: the owner's record must not be
			 * freed for a moment of owning nothing. */
			if (owner != NULL && e->node == old->node)
				entry_set_owner(cl, e, owner);
			entry_set_owner(cl, old, NULL);
			e->unregistering = old->unregistering;
			if (old->doomed)
				entry_doom(cl, e);
		}
		entry_remove(cl, old, PR_DOWN_UNREGISTERED, true);
	}
	if (htab_insert(&cl->names, cl_hash(cl, name, len), e) < 0) {
		n->nnames--;
		node_put(cl, n);
		free(e);
		return NULL;
	}
	cl->nnames++;
	if (e->owner == NULL && cl->orphans_possible && entry_is_self(cl, e) &&
	    !register_pending(cl, name, len))
		entry_doom(cl, e);
	cl->ops->registered(cl->arg, e);
	return e;
}

/* The encoded value of an entry: header, node, value bytes. */
static uint8_t *
entry_encode(const struct cluster *cl, const struct cl_owner *o,
    uint64_t since_ms, const void *val, size_t vlen, size_t *len)
{
	uint8_t *p;

	*len = CL_ENTRY_HDR + cl->node_len + vlen;
	if ((p = calloc(1, *len)) == NULL)
		return NULL;
	p[0] = CL_VALUE_V1;
	p[2] = (uint8_t)cl->node_len;
	put_u32(p + 4, o->uid);
	put_u32(p + 8, o->gid);
	put_u64(p + 12, o->conn);
	put_u64(p + 20, (uint64_t)o->pid);
	put_u64(p + 28, since_ms);
	memcpy(p + CL_ENTRY_HDR, cl->node, cl->node_len);
	if (vlen > 0)
		memcpy(p + CL_ENTRY_HDR + cl->node_len, val, vlen);
	return p;
}

/* A node's key changed. */
static void
cache_node(struct cluster *cl, const uint8_t *name, size_t len,
    const struct etcd_kv *kv, bool deleted)
{
	struct cl_node *n;

	if (!node_name_ok(name, len))
		return;
	if (deleted) {
		if ((n = node_find(cl, (const char *)name, len)) != NULL) {
			n->alive = false;
			node_put(cl, n);
		}
		return;
	}
	if ((n = node_get(cl, (const char *)name, len)) == NULL)
		return;
	n->alive = true;
	n->lease = kv->lease;
	if (kv->value_len >= CL_NODE_HDR && kv->value[0] == CL_VALUE_V1) {
		size_t al = kv->value[1];

		n->since_ms = get_u64(kv->value + 4);
		if (al < sizeof(n->address) &&
		    kv->value_len >= CL_NODE_HDR + al) {
			memcpy(n->address, kv->value + CL_NODE_HDR, al);
			n->address[al] = '\0';
		}
	}
}

/* ------------------------------------------------------------------ */
/* Pending operations.                                                  */

static struct cl_op *
op_new(struct cluster *cl, enum cl_op_kind kind, struct cl_peer *p,
    uint32_t msgid, const char *name, size_t len)
{
	struct cl_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->cl = cl;
	op->kind = kind;
	op->msgid = msgid;
	op->peer = p;
	if (name != NULL) {
		memcpy(op->name, name, len);
		op->name_len = (uint8_t)len;
	}
	if (p != NULL)
		LIST_INSERT_HEAD(&p->ops, op, by_peer);
	LIST_INSERT_HEAD(&cl->pending, op, all);
	return op;
}

static void
op_free(struct cl_op *op)
{
	struct cluster *cl = op->cl;
	struct cl_peer *p = op->peer;

	if (p != NULL)
		LIST_REMOVE(op, by_peer);
	LIST_REMOVE(op, all);
	for (size_t i = 0; i < op->n; i++)
		free(op->names[i]);
	free(op->names);
	free(op->lens);
	free(op->gens);
	free(op->value);
	free(op);
	if (p != NULL)
		peer_put(cl, p);
}

/* Answer op's request, if its connection is still there. */
static void
op_reply(struct cl_op *op, int err, const char *why,
    const struct cl_entry *e, bool is_bool)
{
	struct cluster *cl = op->cl;

	if (op->peer != NULL)
		cl->ops->reply(cl->arg, op->peer->peer, op->msgid, err, why, e,
		    is_bool);
}

/* The wire's error for an etcd failure of a write, and why. */
static void
op_fail(struct cl_op *op, const struct etcd_result *r, bool write)
{
	char why[256];

	if (write && r->status == -ETIMEDOUT)
		snprintf(why, sizeof(why), "etcd did not answer in time; "
		    "the outcome is unknown");
	else
		snprintf(why, sizeof(why), "etcd: %s%s%s",
		    etcd_strerror(r->status), *r->errmsg ? ": " : "",
		    r->errmsg);
	op_reply(op, PR_ERR_UNAVAILABLE, why, NULL, false);
}

/* Is the node able to write now?  Else why not, in why. */
static bool
cl_writable(const struct cluster *cl, char *why, size_t whylen)
{
	/* Past the deadline the lease may be gone even before the tick
	 * has noticed: a request served first must not act on it. */
	if (cl->state == CL_UP && cl->lease != 0 &&
	    now_mono_us() < cl->alive_until_us)
		return true;
	if (cl->state == CL_UP) {
		snprintf(why, whylen, "this node's lease in the cluster has "
		    "expired");
		return false;
	}
	snprintf(why, whylen, cl->state == CL_LOST ? "this node lost its "
	    "lease in the cluster and is joining again" : "this node has "
	    "not joined the cluster yet");
	return false;
}

/* ------------------------------------------------------------------ */
/* Register, unregister, read.                                          */

static void
on_register(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_entry *e;
	char why[320];

	if (r->status != 0) {
		op_fail(op, r, true);
		if (r->status == -ETIMEDOUT) {
			/*
			 * It may have been applied: the key would live with
			 * no owner.  The watch brings it if so; from now on
			 * an ownerless key of ours that no register waits
			 * for is deleted (cache_put).
			 */
			cl_log(cl, LOG_WARNING, "cluster: register of %.*s "
			    "timed out; its outcome is unknown",
			    op->name_len, op->name);
			cl->orphans_possible = true;
			if ((e = cache_find(cl, op->name, op->name_len)) !=
			    NULL && e->owner == NULL && entry_is_self(cl, e) &&
			    e->conn == op->owner.conn)
				entry_doom(cl, e);
		}
		op_free(op);
		return;
	}
	if (!r->succeeded) {
		if (r->nkvs > 0 && r->kvs[0].value_len >= CL_ENTRY_HDR &&
		    r->kvs[0].value_len >= CL_ENTRY_HDR +
		    (size_t)r->kvs[0].value[2])
			snprintf(why, sizeof(why), "the name is registered in "
			    "the cluster by node %.*s conn %" PRIu64,
			    (int)r->kvs[0].value[2],
			    (const char *)r->kvs[0].value + CL_ENTRY_HDR,
			    get_u64(r->kvs[0].value + 12));
		else
			snprintf(why, sizeof(why), "the name is registered in "
			    "the cluster");
		op_reply(op, PR_ERR_TAKEN, why, NULL, false);
		op_free(op);
		return;
	}
	/* The transaction's revision is the key's create revision. */
	e = cache_put(cl, op->name, op->name_len, op->value, op->value_len,
	    r->revision);
	if (e != NULL && op->peer != NULL) {
		entry_set_owner(cl, e, op->peer);
		op_reply(op, 0, "", e, false);
	} else {
		/* Its connection went (or no memory to keep it): the name
		 * must not outlive it. */
		if (e == NULL)
			op_reply(op, PR_ERR_UNAVAILABLE, "out of memory", NULL,
			    false);
		if (e != NULL) {
			entry_doom(cl, e);
			cl_doom_flush(cl);
		}
	}
	op_free(op);
}

int
cluster_register(struct cluster *cl, const struct cl_owner *o,
    uint32_t msgid, const char *name, size_t len, const void *value,
    size_t vlen, char *why, size_t whylen)
{
	const struct cl_entry *e;
	struct cl_peer *p;
	struct cl_op *op;
	char key[CL_KEY_MAX];
	size_t klen;

	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	if ((e = cluster_lookup(cl, name, len)) != NULL) {
		/* The cache saw it: no round trip to learn it is taken. */
		snprintf(why, whylen, "the name is registered in the cluster "
		    "by node %s conn %" PRIu64, e->node->name, e->conn);
		return PR_ERR_TAKEN;
	}
	if ((p = peer_get(cl, o->peer)) == NULL ||
	    (op = op_new(cl, OP_REGISTER, p, msgid, name, len)) == NULL)
		goto nomem;
	op->owner = *o;
	if ((op->value = entry_encode(cl, o, now_epoch_ms(), value, vlen,
	    &klen)) == NULL)
		goto nomem_op;
	op->value_len = (uint32_t)klen;
	klen = cl_key(cl, "names/", name, len, key);
	if (etcd_txn_create(cl->etcd, key, klen, op->value, op->value_len,
	    cl->lease, on_register, op) < 0)
		goto nomem_op;
	return 0;
nomem_op:
	op_free(op);
nomem:
	snprintf(why, whylen, "out of memory");
	return PR_ERR_UNAVAILABLE;
}

static void
on_unregister(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_entry *e;

	e = cache_find(cl, op->name, op->name_len);
	if (e != NULL && e->gen != op->gen)
		e = NULL;
	if (r->status != 0) {
		if (e != NULL)
			e->unregistering = false;
		op_fail(op, r, true);
		op_free(op);
		return;
	}
	if (e != NULL && op->kind == OP_EVICT)
		entry_remove(cl, e, PR_DOWN_EVICTED, true);
	else if (e != NULL)
		entry_remove(cl, e, PR_DOWN_UNREGISTERED, false);
	op_reply(op, 0, "", NULL, true);
	op_free(op);
}

/* A transaction that says why, then deletes each (name, gen). */
static struct etcd_txn *
delete_txn(struct cluster *cl, enum pr_down_reason why, char **names,
    const uint8_t *lens, const int64_t *gens, size_t n)
{
	struct etcd_txn *t = etcd_txn_new();
	char key[CL_KEY_MAX];
	uint8_t val[2] = { CL_VALUE_V1, (uint8_t)why };
	size_t klen;

	if (t == NULL)
		return NULL;
	klen = cl_key(cl, "why/", cl->node, cl->node_len, key);
	if (etcd_txn_put(t, true, key, klen, val, sizeof(val), cl->lease) < 0)
		return etcd_txn_free(t);
	for (size_t i = 0; i < n; i++) {
		klen = cl_key(cl, "names/", names[i], lens[i], key);
		if (etcd_txn_del_if_created(t, key, klen, gens[i]) < 0)
			return etcd_txn_free(t);
	}
	return t;
}

int
cluster_unregister(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, int64_t gen, char *why, size_t whylen)
{
	struct cl_entry *e = cache_find(cl, name, len);
	struct cl_peer *p = peer_find(cl, peer);
	struct etcd_txn *t;
	struct cl_op *op;
	char *names[1];
	uint8_t lens[1];

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if (p == NULL || e->owner != p) {
		snprintf(why, whylen, "the name is registered in the cluster "
		    "by node %s conn %" PRIu64, e->node->name, e->conn);
		return PR_ERR_NOT_OWNER;
	}
	if (gen != 0 && gen != e->gen) {
		snprintf(why, whylen, "the name's entry has another "
		    "generation");
		return PR_ERR_STALE;
	}
	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	if ((op = op_new(cl, OP_UNREGISTER, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	names[0] = op->name;
	lens[0] = op->name_len;
	if ((t = delete_txn(cl, PR_DOWN_UNREGISTERED, names, lens, &op->gen,
	    1)) == NULL || etcd_txn(cl->etcd, t, on_unregister, op) < 0) {
		op_free(op);
		goto nomem;
	}
	e->unregistering = true;
	return 0;
nomem:
	snprintf(why, whylen, "out of memory");
	return PR_ERR_UNAVAILABLE;
}

int
cluster_evict(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, char *why, size_t whylen)
{
	struct cl_entry *e = cache_find(cl, name, len);
	struct etcd_txn *t;
	struct cl_peer *p;
	struct cl_op *op;
	char *names[1];
	uint8_t lens[1];

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	if ((p = peer_get(cl, peer)) == NULL ||
	    (op = op_new(cl, OP_EVICT, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	names[0] = op->name;
	lens[0] = op->name_len;
	if ((t = delete_txn(cl, PR_DOWN_EVICTED, names, lens, &op->gen,
	    1)) == NULL || etcd_txn(cl->etcd, t, on_unregister, op) < 0) {
		op_free(op);
		goto nomem;
	}
	return 0;
nomem:
	if (p != NULL)
		peer_put(cl, p);
	snprintf(why, whylen, "out of memory");
	return PR_ERR_UNAVAILABLE;
}

static void
on_update(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_entry *e;

	if (r->status != 0) {
		op_fail(op, r, true);
		op_free(op);
		return;
	}
	if (!r->succeeded) {
		/* The key is not the one the owner holds any more. */
		op_reply(op, PR_ERR_STALE, "the name's entry has another "
		    "generation in the cluster", NULL, false);
		op_free(op);
		return;
	}
	e = cache_put(cl, op->name, op->name_len, op->value, op->value_len,
	    op->gen);
	op_reply(op, e != NULL ? 0 : PR_ERR_UNAVAILABLE, "out of memory", e,
	    false);
	op_free(op);
}

int
cluster_update(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, const void *value, size_t vlen,
    int64_t gen, char *why, size_t whylen)
{
	struct cl_entry *e = cache_find(cl, name, len);
	struct cl_peer *p = peer_find(cl, peer);
	struct etcd_txn *t = NULL;
	struct cl_owner o;
	struct cl_op *op;
	char key[CL_KEY_MAX];
	size_t klen, elen;

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if (p == NULL || e->owner != p) {
		snprintf(why, whylen, "the name is registered in the cluster "
		    "by node %s conn %" PRIu64, e->node->name, e->conn);
		return PR_ERR_NOT_OWNER;
	}
	if (gen != 0 && gen != e->gen) {
		snprintf(why, whylen, "the name's entry has another "
		    "generation");
		return PR_ERR_STALE;
	}
	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	if ((op = op_new(cl, OP_UPDATE, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	o = (struct cl_owner){ peer, e->conn, e->pid, e->uid, e->gid };
	if ((op->value = entry_encode(cl, &o, e->since_ms, value, vlen,
	    &elen)) == NULL)
		goto nomem_op;
	op->value_len = (uint32_t)elen;
	klen = cl_key(cl, "names/", name, len, key);
	/* Fenced by the key's create revision: the same registration. */
	if ((t = etcd_txn_new()) == NULL ||
	    etcd_txn_cmp_create(t, key, klen, e->gen) < 0 ||
	    etcd_txn_put(t, true, key, klen, op->value, op->value_len,
	    cl->lease) < 0) {
		etcd_txn_free(t);
		goto nomem_op;
	}
	if (etcd_txn(cl->etcd, t, on_update, op) < 0)
		goto nomem_op;
	return 0;
nomem_op:
	op_free(op);
nomem:
	snprintf(why, whylen, "out of memory");
	return PR_ERR_UNAVAILABLE;
}

static void
on_read(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_entry *e = NULL;

	if (r->status != 0) {
		op_fail(op, r, false);
		op_free(op);
		return;
	}
	if (r->nkvs > 0) {
		/* What etcd holds now is newer than or as new as the
		 * cache: it goes in (the watch brings the same again). */
		e = cache_put(cl, op->name, op->name_len, r->kvs[0].value,
		    r->kvs[0].value_len, r->kvs[0].create_rev);
	}
	op_reply(op, 0, "", e, false);
	op_free(op);
}

int
cluster_read(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, char *why, size_t whylen)
{
	struct cl_peer *p;
	struct cl_op *op;
	char key[CL_KEY_MAX];
	size_t klen;

	if (cl->etcd == NULL) {
		snprintf(why, whylen, "not in a cluster");
		return PR_ERR_UNAVAILABLE;
	}
	if ((p = peer_get(cl, peer)) == NULL ||
	    (op = op_new(cl, OP_READ, p, msgid, name, len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return PR_ERR_UNAVAILABLE;
	}
	klen = cl_key(cl, "names/", name, len, key);
	if (etcd_range(cl->etcd, key, klen, NULL, on_read, op) < 0) {
		op_free(op);
		snprintf(why, whylen, "out of memory");
		return PR_ERR_UNAVAILABLE;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Deletes of closed connections' names, batched.                       */

static void
on_deletes(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;

	cl->doom_inflight--;
	for (size_t i = 0; i < op->n; i++) {
		struct cl_entry *e = cache_find(cl, op->names[i], op->lens[i]);

		if (e == NULL || e->gen != op->gens[i])
			continue;	/* gone meanwhile */
		if (r->status == 0)
			entry_remove(cl, e, PR_DOWN_DISCONNECTED, false);
		else
			entry_doom(cl, e);
	}
	if (r->status != 0) {
		cl_log(cl, LOG_WARNING, "cluster: deleting %zu names of "
		    "closed connections failed (%s%s%s); retrying", op->n,
		    etcd_strerror(r->status), *r->errmsg ? ": " : "",
		    r->errmsg);
		cl->doom_after_us = now_mono_us() + CL_RETRY_MS * 1000;
	}
	op_free(op);
	cl_doom_flush(cl);
}

/* Send the doomed entries' deletes, at most one transaction's worth per
 * batch, a few batches at once. */
static void
cl_doom_flush(struct cluster *cl)
{
	while (!TAILQ_EMPTY(&cl->doomed) && cl->doom_inflight < 4 &&
	    !cl->leaving &&
	    cl->state == CL_UP && now_mono_us() >= cl->doom_after_us) {
		/* A fenced delete is a nested transaction: etcd counts its
		 * compare and its delete, so one why and 63 of them fill
		 * a transaction of 128 operations. */
		size_t max = (ETCD_TXN_MAX_OPS - 1) / 2, n = 0;
		struct cl_op *op = op_new(cl, OP_DELETES, NULL, 0, NULL, 0);
		struct etcd_txn *t;
		struct cl_entry *e;

		if (op == NULL || (op->names = calloc(max,
		    sizeof(*op->names))) == NULL ||
		    (op->lens = calloc(max, 1)) == NULL ||
		    (op->gens = calloc(max, sizeof(*op->gens))) == NULL)
			goto later;
		while (n < max && (e = TAILQ_FIRST(&cl->doomed)) != NULL) {
			if ((op->names[n] = malloc(e->name_len)) == NULL)
				break;
			memcpy(op->names[n], e->data, e->name_len);
			op->lens[n] = e->name_len;
			op->gens[n] = e->gen;
			n++;
			op->n = n;
			TAILQ_REMOVE(&cl->doomed, e, doom_link);
			e->doomed = false;
		}
		if ((t = delete_txn(cl, PR_DOWN_DISCONNECTED, op->names,
		    op->lens, op->gens, n)) == NULL ||
		    etcd_txn(cl->etcd, t, on_deletes, op) < 0)
			goto later;
		cl->doom_inflight++;
		continue;
later:
		/* Out of memory: put them back, try on a later tick. */
		if (op != NULL) {
			for (size_t i = 0; i < op->n; i++) {
				e = cache_find(cl, op->names[i], op->lens[i]);
				if (e != NULL)
					entry_doom(cl, e);
			}
			op_free(op);
		}
		cl->doom_after_us = now_mono_us() + CL_RETRY_MS * 1000;
		return;
	}
}

void
cluster_peer_gone(struct cluster *cl, void *peer)
{
	struct cl_peer *p = peer_find(cl, peer);
	struct cl_monitor *m;
	struct cl_entry *e;
	struct cl_op *op;

	if (p == NULL)
		return;
	/* The lists are emptied by hand: peer_put would free the record
	 * as soon as they are empty. */
	while ((op = LIST_FIRST(&p->ops)) != NULL) {
		LIST_REMOVE(op, by_peer);
		op->peer = NULL;
	}
	while ((m = LIST_FIRST(&p->monitors)) != NULL) {
		LIST_REMOVE(m, by_entry);
		LIST_REMOVE(m, by_holder);
		free(m);
	}
	p->nmonitors = 0;
	while ((e = LIST_FIRST(&p->names)) != NULL) {
		LIST_REMOVE(e, owner_link);
		e->owner = NULL;
		/* Leaving, the lease takes every name with it. */
		if (!cl->leaving)
			entry_doom(cl, e);
	}
	p->nnames = 0;
	htab_remove(&cl->peers, peer_hash(p->peer), p);
	free(p);
	cl_doom_flush(cl);
}

/* ------------------------------------------------------------------ */
/* Monitors.                                                            */

int
cluster_monitor(struct cluster *cl, void *peer, uint64_t conn, uint64_t ref,
    const char *name, size_t len)
{
	struct cl_entry *e = cache_find(cl, name, len);
	struct cl_monitor *m;
	struct cl_peer *p;

	(void)conn;
	if (e == NULL)
		return -ENOENT;
	if ((p = peer_get(cl, peer)) == NULL)
		return -ENOMEM;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		peer_put(cl, p);
		return -ENOMEM;
	}
	m->e = e;
	m->holder = p;
	m->ref = ref;
	LIST_INSERT_HEAD(&e->monitors, m, by_entry);
	LIST_INSERT_HEAD(&p->monitors, m, by_holder);
	p->nmonitors++;
	return 0;
}

bool
cluster_demonitor(struct cluster *cl, void *peer, uint64_t ref)
{
	struct cl_peer *p = peer_find(cl, peer);
	struct cl_monitor *m;

	if (p == NULL)
		return false;
	LIST_FOREACH(m, &p->monitors, by_holder) {
		if (m->ref == ref) {
			LIST_REMOVE(m, by_entry);
			LIST_REMOVE(m, by_holder);
			p->nmonitors--;
			free(m);
			peer_put(cl, p);
			return true;
		}
	}
	return false;
}

uint32_t
cluster_monitors_of(const struct cluster *cl, const void *peer)
{
	const struct cl_peer *p = peer_find(cl, peer);

	return p != NULL ? p->nmonitors : 0;
}

void *
cluster_entry_peer(const struct cl_entry *e)
{
	return e->owner != NULL ? e->owner->peer : NULL;
}

uint32_t
cluster_names_of(const struct cluster *cl, const void *peer)
{
	const struct cl_peer *p = peer_find(cl, peer);

	return p != NULL ? p->nnames : 0;
}

/* ------------------------------------------------------------------ */
/* The watch: changes in revision order.                                */

/* Why the deletes of one revision happened, per node. */
struct rev_why {
	int64_t		 rev;
	const uint8_t	*node;
	size_t		 len;
	enum pr_down_reason why;
};

static enum pr_down_reason
why_of(const struct rev_why *w, size_t nw, int64_t rev,
    const struct cl_node *n)
{
	enum pr_down_reason r = PR_DOWN_UNREGISTERED;

	/* A revision is one transaction, or one lease expiring: a why key
	 * put in it (by whichever node wrote it) explains its deletes, the
	 * node key's delete those of that node. */
	for (size_t i = 0; i < nw; i++) {
		if (w[i].rev != rev)
			continue;
		if (w[i].why != PR_DOWN_NODEDOWN)
			r = w[i].why;
		else if (w[i].len == n->name_len &&
		    memcmp(w[i].node, n->name, n->name_len) == 0)
			return PR_DOWN_NODEDOWN;
	}
	return r;
}

static void
apply_events(struct cluster *cl, const struct etcd_event *ev, size_t n)
{
	struct rev_why *w = calloc(n ? n : 1, sizeof(*w));
	const uint8_t *rest;
	size_t nw = 0, rlen;

	/* First what each revision says of its deletes: a node's key
	 * deleted with them (its lease expired) or its why key. */
	for (size_t i = 0; w != NULL && i < n; i++) {
		const struct etcd_kv *kv = &ev[i].kv;

		if (key_kind(cl, kv, "nodes/", &rest, &rlen) &&
		    ev[i].type == ETCD_EV_DELETE)
			w[nw++] = (struct rev_why){ kv->mod_rev, rest, rlen,
			    PR_DOWN_NODEDOWN };
		else if (key_kind(cl, kv, "why/", &rest, &rlen) &&
		    ev[i].type != ETCD_EV_DELETE && kv->value_len == 2 &&
		    kv->value[0] == CL_VALUE_V1 &&
		    kv->value[1] < PR_DOWN__COUNT)
			w[nw++] = (struct rev_why){ kv->mod_rev, rest, rlen,
			    (enum pr_down_reason)kv->value[1] };
	}
	for (size_t i = 0; i < n; i++) {
		const struct etcd_kv *kv = &ev[i].kv;
		struct cl_entry *e;

		if (kv->mod_rev > cl->rev)
			cl->rev = kv->mod_rev;
		if (key_kind(cl, kv, "nodes/", &rest, &rlen))
			cache_node(cl, rest, rlen, kv,
			    ev[i].type == ETCD_EV_DELETE);
		else if (!key_kind(cl, kv, "names/", &rest, &rlen))
			continue;
		else if (ev[i].type != ETCD_EV_DELETE)
			cache_put(cl, (const char *)rest, rlen, kv->value,
			    kv->value_len, kv->create_rev);
		else if ((e = cache_find(cl, (const char *)rest, rlen)) !=
		    NULL)
			entry_remove(cl, e, w != NULL ? why_of(w, nw,
			    kv->mod_rev, e->node) : PR_DOWN_UNREGISTERED,
			    true);
	}
	free(w);
}

static void
on_watch(const struct etcd_watch_msg *m, void *arg)
{
	struct cluster *cl = arg;

	switch (m->kind) {
	case ETCD_WATCH_CREATED:
		cl->watch_up = true;
		cl->watch_fails = 0;
		if (cl->state != CL_UP && cl->have_key) {
			cl->state = CL_UP;
			cl_log(cl, LOG_INFO, "cluster: node %s is up (lease "
			    "%" PRIx64 ", %" PRIu64 " names, revision %" PRId64
			    ")", cl->node, (uint64_t)cl->lease, cl->nnames,
			    cl->rev);
			cl_doom_flush(cl);
		}
		break;
	case ETCD_WATCH_EVENTS:
		apply_events(cl, m->events, m->nevents);
		if (m->revision > cl->rev)
			cl->rev = m->revision;
		break;
	case ETCD_WATCH_PROGRESS:
		if (m->revision > cl->rev)
			cl->rev = m->revision;
		break;
	case ETCD_WATCH_END:
		cl->watch = NULL;
		cl->watch_up = false;
		if (m->status == ETCD_COMPACTED) {
			/* What happened in between is gone: read it all
			 * again, and drop what is no longer there. */
			cl_log(cl, LOG_WARNING, "cluster: watch compacted at "
			    "%" PRId64 "; reading the cluster again",
			    m->compact_rev);
			cl_sync(cl);
		} else {
			cl_log(cl, LOG_WARNING, "cluster: watch ended (%s%s%s);"
			    " resuming from revision %" PRId64,
			    etcd_strerror(m->status), *m->errmsg ? ": " : "",
			    m->errmsg, cl->rev + 1);
			/* The tick starts it again, after a pause that
			 * doubles up to 8 s: an etcd (or something posing
			 * as one) that ends every watch must not have us
			 * spin, or fill the log. */
			if (cl->watch_fails < 4)
				cl->watch_fails++;
			cl->join_after_us = now_mono_us() +
			    ((uint64_t)CL_RETRY_MS * 1000 << cl->watch_fails);
		}
		break;
	}
}

static void
cl_watch(struct cluster *cl)
{
	uint8_t end[sizeof(cl->prefix)];
	struct etcd_watch_opts wo = { 0 };

	if (cl->watch != NULL || cl->syncing)
		return;
	wo.range_end = end;
	wo.range_end_len = etcd_prefix_end(cl->prefix, cl->prefix_len, end);
	wo.start_rev = cl->rev + 1;
	wo.progress_notify = true;
	if (etcd_watch(cl->etcd, cl->prefix, cl->prefix_len, &wo, on_watch, cl,
	    &cl->watch) < 0)
		cl->watch = NULL;
}

/* One page of the sync read. */
static void
on_sync_page(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;
	uint8_t end[sizeof(cl->prefix)];
	struct etcd_range_opts ro = { 0 };
	const uint8_t *rest;
	size_t rlen;

	if (r->status != 0) {
		cl_log(cl, LOG_WARNING, "cluster: reading the cluster failed: "
		    "%s; retrying", etcd_strerror(r->status));
		cl->syncing = false;
		cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
		return;
	}
	if (cl->rev == 0 || r->revision < cl->rev)
		cl->rev = r->revision;	/* the first page's: read at it */
	for (size_t i = 0; i < r->nkvs; i++) {
		const struct etcd_kv *kv = &r->kvs[i];

		if (key_kind(cl, kv, "nodes/", &rest, &rlen))
			cache_node(cl, rest, rlen, kv, false);
		else if (key_kind(cl, kv, "names/", &rest, &rlen))
			cache_put(cl, (const char *)rest, rlen, kv->value,
			    kv->value_len, kv->create_rev);
	}
	if (r->more && r->nkvs > 0) {
		const struct etcd_kv *last = &r->kvs[r->nkvs - 1];
		uint8_t from[CL_KEY_MAX + 1];

		if (last->key_len >= CL_KEY_MAX)
			goto done;
		memcpy(from, last->key, last->key_len);
		from[last->key_len] = '\0';	/* the next key after it */
		ro.range_end = end;
		ro.range_end_len = etcd_prefix_end(cl->prefix, cl->prefix_len,
		    end);
		ro.limit = CL_PAGE;
		ro.revision = cl->rev;
		if (etcd_range(cl->etcd, from, last->key_len + 1, &ro,
		    on_sync_page, cl) < 0) {
			cl->syncing = false;
			cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
		}
		return;
	}
done:
	/* What the read did not see is gone. */
	{
		struct cl_entry **gone = NULL;
		size_t ngone = 0;

		for (size_t i = 0; i < cl->names.cap; i++) {
			struct cl_entry *e = cl->names.slots[i].item;

			if (e != NULL && e->epoch != cl->epoch)
				ngone++;
		}
		if (ngone > 0 && (gone = calloc(ngone, sizeof(*gone))) !=
		    NULL) {
			size_t k = 0;

			for (size_t i = 0; i < cl->names.cap; i++) {
				struct cl_entry *e = cl->names.slots[i].item;

				if (e != NULL && e->epoch != cl->epoch)
					gone[k++] = e;
			}
			for (size_t i = 0; i < k; i++)
				entry_remove(cl, gone[i], gone[i]->node->alive ?
				    PR_DOWN_UNREGISTERED : PR_DOWN_NODEDOWN,
				    true);
			free(gone);
		}
	}
	cl->syncing = false;
	cl_watch(cl);
}

/* Read the whole prefix into the cache (a new epoch), then watch. */
static void
cl_sync(struct cluster *cl)
{
	uint8_t end[sizeof(cl->prefix)];
	struct etcd_range_opts ro = { 0 };

	if (cl->syncing)
		return;
	if (cl->watch != NULL) {
		etcd_watch_cancel(cl->watch);
		cl->watch = NULL;
		cl->watch_up = false;
	}
	cl->syncing = true;
	cl->epoch++;
	cl->rev = 0;
	ro.range_end = end;
	ro.range_end_len = etcd_prefix_end(cl->prefix, cl->prefix_len, end);
	ro.limit = CL_PAGE;
	if (etcd_range(cl->etcd, cl->prefix, cl->prefix_len, &ro,
	    on_sync_page, cl) < 0) {
		cl->syncing = false;
		cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
	}
}

/* ------------------------------------------------------------------ */
/* The lease: join, keepalive, loss.                                    */

static void
on_node_key(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;
	uint64_t now = now_mono_us();

	cl->join_inflight = false;
	if (r->status != 0) {
		cl_log(cl, LOG_WARNING, "cluster: creating the node key "
		    "failed: %s; retrying", etcd_strerror(r->status));
		cl->join_after_us = now + CL_RETRY_MS * 1000;
		return;
	}
	if (!r->succeeded) {
		/*
		 * Another lease holds our node's key: a live daemon of the
		 * same name keeps it alive; a dead one's goes within its
		 * TTL.  Wait one TTL (ours) before refusing to run.
		 */
		if (cl->taken_since_us == 0)
			cl->taken_since_us = now;
		if (now - cl->taken_since_us > (uint64_t)(cl->ttl_s + 1) *
		    1000000) {
			char msg[512];

			snprintf(msg, sizeof(msg), "another live daemon is "
			    "node %s of the cluster (its key %snodes/%s was "
			    "kept alive for %u s); give this one another "
			    "--node", cl->node, cl->prefix, cl->node,
			    cl->ttl_s + 1);
			cl->ops->fatal(cl->arg, msg);
			return;
		}
		cl_log(cl, LOG_INFO, "cluster: node key %snodes/%s is held by "
		    "another lease; waiting for it to expire", cl->prefix,
		    cl->node);
		cl->join_after_us = now + CL_RETRY_MS * 1000;
		return;
	}
	cl->taken_since_us = 0;
	cl->have_key = true;
	cl_log(cl, LOG_INFO, "cluster: joined as node %s at revision %"
	    PRId64, cl->node, r->revision);
	cl_sync(cl);
}

/* Create P nodes/NODE under the lease. */
static void
cl_node_key(struct cluster *cl)
{
	uint8_t val[CL_NODE_HDR + sizeof(cl->address)];
	char key[CL_KEY_MAX];
	size_t klen, al = strlen(cl->address);

	cl->join_inflight = true;
	memset(val, 0, sizeof(val));
	val[0] = CL_VALUE_V1;
	val[1] = (uint8_t)al;
	put_u64(val + 4, cl->since_ms);
	memcpy(val + CL_NODE_HDR, cl->address, al);
	klen = cl_key(cl, "nodes/", cl->node, cl->node_len, key);
	if (etcd_txn_create(cl->etcd, key, klen, val, CL_NODE_HDR + al,
	    cl->lease, on_node_key, cl) < 0) {
		cl->join_inflight = false;
		cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
	}
}

static void
on_grant(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;

	cl->join_inflight = false;
	if (r->status != 0) {
		cl_log(cl, LOG_WARNING, "cluster: lease grant failed: %s; "
		    "retrying", etcd_strerror(r->status));
		cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
		return;
	}
	cl->lease = r->lease_id;
	cl->have_key = false;
	cl->alive_until_us = r->sent_us + (uint64_t)r->ttl * 1000000;
	cl->ka_sent_us = r->sent_us;
	cl_node_key(cl);
}

static void
on_revoke(const struct etcd_result *r, void *arg)
{
	(void)r;
	(void)arg;
}

static void
cl_join(struct cluster *cl)
{
	if (cl->join_inflight || now_mono_us() < cl->join_after_us)
		return;
	cl->join_inflight = true;
	if (cl->old_lease != 0) {
		/* Our names under it must go now, not at its TTL: nobody
		 * owns them any more. */
		etcd_lease_revoke(cl->etcd, cl->old_lease, on_revoke, cl);
		cl->old_lease = 0;
	}
	if (etcd_lease_grant(cl->etcd, cl->ttl_s, 0, on_grant, cl) < 0) {
		cl->join_inflight = false;
		cl->join_after_us = now_mono_us() + CL_RETRY_MS * 1000;
	}
}

/* The lease is gone, or may be: stop believing. */
static void
cl_lose(struct cluster *cl, const char *why)
{
	struct cl_entry **mine = NULL;
	struct cl_op *op, *next;
	size_t n = 0, k = 0;

	cl_log(cl, LOG_ERR, "cluster: node %s lost its lease (%s); its "
	    "owners are told lost, and it joins again", cl->node, why);
	cl->state = CL_LOST;
	cl->old_lease = cl->lease;
	cl->lease = 0;
	cl->have_key = false;
	cl->ka_inflight = false;
	/* Writes in flight under the old lease: their outcome no longer
	 * matters to anyone but etcd. */
	for (op = LIST_FIRST(&cl->pending); op != NULL; op = next) {
		next = LIST_NEXT(op, all);
		if (op->kind == OP_REGISTER || op->kind == OP_UNREGISTER) {
			op_reply(op, PR_ERR_UNAVAILABLE, "this node lost its "
			    "lease in the cluster", NULL, false);
			if (op->peer != NULL) {
				LIST_REMOVE(op, by_peer);
				peer_put(cl, op->peer);
				op->peer = NULL;
			}
		}
	}
	/* Every entry of this node goes with the lease, owned or doomed. */
	for (size_t i = 0; i < cl->names.cap; i++) {
		struct cl_entry *e = cl->names.slots[i].item;

		if (e != NULL && e->node->name_len == cl->node_len &&
		    memcmp(e->node->name, cl->node, cl->node_len) == 0)
			n++;
	}
	if (n > 0 && (mine = calloc(n, sizeof(*mine))) != NULL) {
		for (size_t i = 0; i < cl->names.cap; i++) {
			struct cl_entry *e = cl->names.slots[i].item;

			if (e != NULL && e->node->name_len == cl->node_len &&
			    memcmp(e->node->name, cl->node, cl->node_len) == 0)
				mine[k++] = e;
		}
		for (size_t i = 0; i < k; i++)
			entry_remove(cl, mine[i], PR_DOWN_NODEDOWN, true);
		free(mine);
	}
	cl->join_after_us = 0;
	cl->join_inflight = false;
	cl_join(cl);
}

static void
on_keepalive(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;

	cl->ka_inflight = false;
	if (cl->lease == 0 || cl->ka_lease != cl->lease)
		return;		/* an answer about the lease we lost */
	if (r->status == ETCD_NOLEASE || (r->status == 0 && r->ttl <= 0)) {
		cl_lose(cl, "etcd says the lease is gone");
		return;
	}
	if (r->status != 0)
		return;		/* the deadline decides */
	if (r->sent_us + (uint64_t)r->ttl * 1000000 > cl->alive_until_us)
		cl->alive_until_us = r->sent_us + (uint64_t)r->ttl * 1000000;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct cluster *cl = arg;
	uint64_t now = now_mono_us();

	(void)fd;
	(void)what;
	if (cl->leaving)
		return;
	if (cl->lease != 0 && now >= cl->alive_until_us) {
		cl_lose(cl, "no keepalive answered within the TTL");
		return;
	}
	if (cl->lease == 0) {
		cl_join(cl);
		return;
	}
	if (!cl->ka_inflight && now - cl->ka_sent_us >=
	    (uint64_t)cl->ttl_s * 1000000 / 3) {
		cl->ka_sent_us = now;
		cl->ka_lease = cl->lease;
		if (etcd_lease_keepalive(cl->etcd, cl->lease, on_keepalive,
		    cl) == 0)
			cl->ka_inflight = true;
	}
	if (!cl->have_key) {
		if (!cl->join_inflight && now >= cl->join_after_us)
			cl_node_key(cl);
	} else if (cl->watch == NULL && !cl->syncing &&
	    now >= cl->join_after_us) {
		/* A read that failed, or a watch that ended: again. */
		if (cl->state == CL_UP)
			cl_watch(cl);
		else
			cl_sync(cl);
	}
	cl_doom_flush(cl);
}

/* ------------------------------------------------------------------ */
/* Setup, reads for the daemon.                                         */

int
cluster_new(struct cluster **out, struct event_base *base,
    const struct cluster_config *cfg, const struct cluster_ops *ops,
    void *arg, char *err, size_t errlen)
{
	struct etcd_config ec = { 0 };
	struct cluster *cl;
	struct timeval tv = { 0, CL_TICK_MS * 1000 };

	*out = NULL;
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cl->base = base;
	cl->ops = ops;
	cl->arg = arg;
	snprintf(cl->node, sizeof(cl->node), "%s", cfg->node);
	cl->node_len = strlen(cl->node);
	snprintf(cl->prefix, sizeof(cl->prefix), "%s", cfg->prefix);
	cl->prefix_len = strlen(cl->prefix);
	snprintf(cl->address, sizeof(cl->address), "%s",
	    cfg->address ? cfg->address : "");
	cl->ttl_s = cfg->lease_ttl;
	cl->since_ms = now_epoch_ms();
	memcpy(cl->hkey, cfg->hash_key, sizeof(cl->hkey));
	cl->state = CL_JOINING;
	LIST_INIT(&cl->nodes);
	LIST_INIT(&cl->pending);
	TAILQ_INIT(&cl->doomed);
	if (htab_init(&cl->names, 64) < 0 || htab_init(&cl->peers, 16) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ec.endpoints = cfg->etcd;
	ec.timeout_ms = (int)cfg->timeout_ms;
	ec.ca_file = cfg->ca_file;
	ec.cert_file = cfg->cert_file;
	ec.key_file = cfg->key_file;
	if (etcd_new(&cl->etcd, base, &ec, err, errlen) != 0)
		goto fail;
	if ((cl->tick = event_new(base, -1, EV_PERSIST, on_tick, cl)) == NULL ||
	    event_add(cl->tick, &tv) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	cl_join(cl);
	*out = cl;
	return 0;
fail:
	cluster_free(cl);
	return -1;
}

void
cluster_free(struct cluster *cl)
{
	struct cl_op *op;
	struct cl_node *n;

	if (cl == NULL)
		return;
	if (cl->tick != NULL)
		event_free(cl->tick);
	if (cl->etcd != NULL)
		etcd_free(cl->etcd);	/* no callback after this */
	while ((op = LIST_FIRST(&cl->pending)) != NULL) {
		if (op->peer != NULL) {
			LIST_REMOVE(op, by_peer);
			op->peer = NULL;
		}
		op_free(op);
	}
	for (size_t i = 0; i < cl->names.cap; i++) {
		struct cl_entry *e = cl->names.slots[i].item;
		struct cl_monitor *m;

		if (e == NULL)
			continue;
		while ((m = LIST_FIRST(&e->monitors)) != NULL) {
			LIST_REMOVE(m, by_entry);
			LIST_REMOVE(m, by_holder);
			free(m);
		}
		free(e);
	}
	for (size_t i = 0; i < cl->peers.cap; i++)
		free(cl->peers.slots[i].item);
	while ((n = LIST_FIRST(&cl->nodes)) != NULL) {
		LIST_REMOVE(n, link);
		free(n);
	}
	htab_deinit(&cl->names);
	htab_deinit(&cl->peers);
	free(cl);
}

void
cluster_leave(struct cluster *cl)
{
	if (cl->leaving)
		return;
	cl->leaving = true;
	if (cl->lease != 0)
		etcd_lease_revoke(cl->etcd, cl->lease, on_revoke, cl);
	cl_log(cl, LOG_INFO, "cluster: node %s leaves the cluster", cl->node);
}

enum cl_state
cluster_state(const struct cluster *cl)
{
	return cl->state;
}

const char *
cluster_node(const struct cluster *cl)
{
	return cl->node;
}

bool
cluster_stale(const struct cluster *cl)
{
	return !cl->watch_up || cl->state != CL_UP;
}

void
cluster_stats(const struct cluster *cl, struct cluster_stats *st)
{
	const struct cl_node *n;

	memset(st, 0, sizeof(*st));
	st->state = cl->state;
	st->names = cl->nnames;
	LIST_FOREACH(n, &cl->nodes, link)
		st->nodes += n->alive;
	st->revision = cl->rev;
	st->stale = cluster_stale(cl);
	etcd_state_str(cl->etcd, st->etcd, sizeof(st->etcd));
}

const struct cl_entry *
cluster_lookup(const struct cluster *cl, const char *name, size_t len)
{
	const struct cl_entry *e = cache_find(cl, name, len);

	/* A name of a closed connection, being deleted, is still there
	 * for everyone else until etcd says it is gone. */
	return e;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct cl_entry *x = *(const struct cl_entry *const *)a;
	const struct cl_entry *y = *(const struct cl_entry *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->data, y->data, n);

	return c != 0 ? c : (int)x->name_len - (int)y->name_len;
}

static bool
after_ok(const struct cl_entry *e, const char *after, size_t alen)
{
	size_t n = e->name_len < alen ? e->name_len : alen;
	int c;

	if (after == NULL)
		return true;
	c = memcmp(e->data, after, n);
	return c > 0 || (c == 0 && e->name_len > alen);
}

size_t
cluster_list(const struct cluster *cl, const char *prefix, size_t plen,
    const char *after, size_t alen, const struct cl_entry **out, size_t max)
{
	const struct cl_entry **all;
	size_t n = 0;

	if (max == 0 || cl->nnames == 0 ||
	    (all = calloc(cl->nnames, sizeof(*all))) == NULL)
		return 0;
	for (size_t i = 0; i < cl->names.cap; i++) {
		const struct cl_entry *e = cl->names.slots[i].item;

		if (e != NULL && e->name_len >= plen &&
		    memcmp(e->data, prefix, plen) == 0 &&
		    after_ok(e, after, alen))
			all[n++] = e;
	}
	qsort(all, n, sizeof(*all), entry_cmp);
	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof(*out));
	free(all);
	return n;
}

static int
node_cmp(const void *a, const void *b)
{
	const struct cl_node *x = *(const struct cl_node *const *)a;
	const struct cl_node *y = *(const struct cl_node *const *)b;

	return strcmp(x->name, y->name);
}

size_t
cluster_nodes(const struct cluster *cl, const struct cl_node **out,
    size_t max)
{
	const struct cl_node *n;
	size_t k = 0;

	LIST_FOREACH(n, &cl->nodes, link)
		if (n->alive && k < max)
			out[k++] = n;
	qsort(out, k, sizeof(*out), node_cmp);
	return k;
}
