/*
 * cluster_cache.c: the node's cache of the cluster (cluster_impl.h): every
 * cluster name and node as etcd last said, the local connections' records
 * and their monitors.  Plain data: etcd's answers come in through
 * cl_cache_put and cl_cache_node, and nothing here talks to etcd.
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cluster_impl.h"
#include "utf8.h"

/* ------------------------------------------------------------------ */
/* Encodings: little-endian, fixed headers (PROTOCOL.md, "Cluster").    */

static void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void
cl_put_u64(uint8_t *p, uint64_t v)
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

uint64_t
cl_get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Is this a node name procregd would accept (config.c's rule)? */
bool
cl_node_name_ok(const uint8_t *s, size_t len)
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
size_t
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
bool
cl_key_kind(const struct cluster *cl, const struct etcd_kv *kv,
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

	if (cl->hash != NULL)
		return cl->hash(cl->hash_arg, s, len);
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

struct cl_entry *
cl_cache_find(const struct cluster *cl, const char *name, size_t len)
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
struct cl_node *
cl_node_get(struct cluster *cl, const char *name, size_t len)
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
void
cl_node_put(struct cluster *cl, struct cl_node *n)
{
	(void)cl;
	if (n->nnames == 0 && !n->alive) {
		LIST_REMOVE(n, link);
		free(n);
	}
}

uint64_t
cl_peer_hash(const void *peer)
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

struct cl_peer *
cl_peer_find(const struct cluster *cl, const void *peer)
{
	return htab_find(&cl->peers, cl_peer_hash(peer), peer_eq, peer);
}

struct cl_peer *
cl_peer_get(struct cluster *cl, void *peer)
{
	struct cl_peer *p = cl_peer_find(cl, peer);

	if (p != NULL)
		return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->peer = peer;
	LIST_INIT(&p->names);
	LIST_INIT(&p->monitors);
	LIST_INIT(&p->ops);
	LIST_INIT(&p->waits);
	if (htab_insert(&cl->peers, cl_peer_hash(peer), p) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Free a peer record that holds nothing. */
void
cl_peer_put(struct cluster *cl, struct cl_peer *p)
{
	if (LIST_EMPTY(&p->names) && LIST_EMPTY(&p->monitors) &&
	    LIST_EMPTY(&p->ops) && LIST_EMPTY(&p->waits)) {
		htab_remove(&cl->peers, cl_peer_hash(p->peer), p);
		free(p);
	}
}

void
cl_entry_set_owner(struct cluster *cl, struct cl_entry *e, struct cl_peer *p)
{
	if (e->owner == p)
		return;
	if (e->owner != NULL) {
		struct cl_peer *old = e->owner;

		LIST_REMOVE(e, owner_link);
		old->nnames--;
		e->owner = NULL;
		cl_peer_put(cl, old);
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
void
cl_entry_remove(struct cluster *cl, struct cl_entry *e, enum pr_down_reason why,
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
		cl_peer_put(cl, h);
	}
	if (e->owner != NULL && tell_owner && !e->unregistering)
		cl->ops->lost(cl->arg, e->owner->peer, e->data, e->name_len,
		    why);
	cl_entry_set_owner(cl, e, NULL);
	if (e->doomed)
		TAILQ_REMOVE(&cl->doomed, e, doom_link);
	htab_remove(&cl->names, cl_hash(cl, e->data, e->name_len), e);
	cl->nnames--;
	e->node->nnames--;
	cl_node_put(cl, e->node);
	free(e);
}

bool
cl_node_is_self(const struct cluster *cl, const struct cl_node *n)
{
	return n->name_len == cl->node_len &&
	    memcmp(n->name, cl->node, cl->node_len) == 0;
}

bool
cl_entry_is_self(const struct cluster *cl, const struct cl_entry *e)
{
	return e->node->name_len == cl->node_len &&
	    memcmp(e->node->name, cl->node, cl->node_len) == 0;
}

/* Queue the entry's key for deletion (its owner is gone). */
void
cl_entry_doom(struct cluster *cl, struct cl_entry *e)
{
	if (!e->doomed) {
		e->doomed = true;
		TAILQ_INSERT_TAIL(&cl->doomed, e, doom_link);
	}
}

/* Is a register of this name waiting for etcd?  (Walks the pending
 * writes: only after a register timed out.) */
bool
cl_register_pending(const struct cluster *cl, const char *name, size_t len)
{
	const struct cl_op *op;

	LIST_FOREACH(op, &cl->pending, all)
		if (op->kind == OP_REGISTER && op->name_len == len &&
		    memcmp(op->name, name, len) == 0)
			return true;
	return false;
}

bool
cl_name_ok(const char *name, size_t len)
{
	return len > 0 && len <= PR_NAME_MAX &&
	    memchr(name, '\0', len) == NULL && utf8_valid(name, len);
}

int
cl_view_parse(const struct cluster *cl, const char *name, size_t len,
    const uint8_t *v, size_t vlen, int64_t gen, struct cl_view *out)
{
	size_t nl;

	/* A key not written by procreg may hold any bytes: its name must
	 * be one a client could have registered (§3). */
	if (!cl_name_ok(name, len) || vlen < CL_ENTRY_HDR ||
	    v[0] != CL_VALUE_V1)
		return -1;
	nl = v[2];
	if (vlen < CL_ENTRY_HDR + nl || !cl_node_name_ok(v + CL_ENTRY_HDR, nl) ||
	    vlen - CL_ENTRY_HDR - nl > UINT32_MAX)
		return -1;
	out->name = name;
	out->name_len = len;
	out->node = (const char *)v + CL_ENTRY_HDR;
	out->node_len = nl;
	out->uid = get_u32(v + 4);
	out->gid = get_u32(v + 8);
	out->conn = cl_get_u64(v + 12);
	out->pid = (int64_t)cl_get_u64(v + 20);
	out->since_ms = cl_get_u64(v + 28);
	out->gen = gen;
	out->value = (const char *)v + CL_ENTRY_HDR + nl;
	out->value_len = (uint32_t)(vlen - CL_ENTRY_HDR - nl);
	/* The bytes go to clients as they are: one msgpack object, or
	 * none (nil), and nothing a client could choke on. */
	if (out->value_len > 0 && cl->value_ok != NULL &&
	    !cl->value_ok(out->value, out->value_len))
		return -1;
	return 0;
}

void
cluster_entry_view(const struct cl_entry *e, struct cl_view *v)
{
	v->name = e->data;
	v->name_len = e->name_len;
	v->node = e->node->name;
	v->node_len = e->node->name_len;
	v->conn = e->conn;
	v->pid = e->pid;
	v->uid = e->uid;
	v->gid = e->gid;
	v->since_ms = e->since_ms;
	v->gen = e->gen;
	v->value = cl_entry_value(e);
	v->value_len = e->value_len;
}

/*
 * Put what etcd says of a name into the cache: a new entry, or the same
 * one changed.  A new generation replaces the old entry (its monitors
 * fire: the name the monitor watched is gone).  NULL when the value does
 * not parse (not ours: ignored) or out of memory.
 */
struct cl_entry *
cl_cache_put(struct cluster *cl, const char *name, size_t len,
    const uint8_t *v, size_t vlen, int64_t gen)
{
	struct cl_entry *e, *old;
	struct cl_view view;
	struct cl_node *n;
	size_t nl, val_len;

	if (cl_view_parse(cl, name, len, v, vlen, gen, &view) != 0)
		return NULL;
	nl = view.node_len;
	val_len = view.value_len;
	old = cl_cache_find(cl, name, len);
	if (old != NULL && old->gen == gen && old->value_len == val_len) {
		/* The same registration (our own write seen again, or an
		 * update of the value in place). */
		memcpy(old->data + len, v + CL_ENTRY_HDR + nl, val_len);
		old->epoch = cl->epoch;
		return old;
	}
	if ((n = cl_node_get(cl, (const char *)v + CL_ENTRY_HDR, nl)) == NULL)
		return NULL;
	if ((e = calloc(1, sizeof(*e) + len + val_len)) == NULL) {
		cl_node_put(cl, n);
		return NULL;
	}
	LIST_INIT(&e->monitors);
	e->node = n;
	e->uid = get_u32(v + 4);
	e->gid = get_u32(v + 8);
	e->conn = cl_get_u64(v + 12);
	e->pid = (int64_t)cl_get_u64(v + 20);
	e->since_ms = cl_get_u64(v + 28);
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
				cl_entry_set_owner(cl, e, owner);
			cl_entry_set_owner(cl, old, NULL);
			e->unregistering = old->unregistering;
			if (old->doomed)
				cl_entry_doom(cl, e);
		}
		cl_entry_remove(cl, old, PR_DOWN_UNREGISTERED, true);
	}
	if (htab_insert(&cl->names, cl_hash(cl, name, len), e) < 0) {
		n->nnames--;
		cl_node_put(cl, n);
		free(e);
		return NULL;
	}
	cl->nnames++;
	if (e->owner == NULL && cl->orphans_possible && cl_entry_is_self(cl, e) &&
	    !cl_register_pending(cl, name, len))
		cl_entry_doom(cl, e);
	cl->ops->registered(cl->arg, e);
	return e;
}

/* The encoded value of an entry: header, node, value bytes. */
uint8_t *
cl_entry_encode(const struct cluster *cl, const struct cl_owner *o,
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
	cl_put_u64(p + 12, o->conn);
	cl_put_u64(p + 20, (uint64_t)o->pid);
	cl_put_u64(p + 28, since_ms);
	memcpy(p + CL_ENTRY_HDR, cl->node, cl->node_len);
	if (vlen > 0)
		memcpy(p + CL_ENTRY_HDR + cl->node_len, val, vlen);
	return p;
}

/* A node's key changed. */
void
cl_cache_node(struct cluster *cl, const uint8_t *name, size_t len,
    const struct etcd_kv *kv, bool deleted)
{
	struct cl_node *n;

	if (!cl_node_name_ok(name, len))
		return;
	if (deleted) {
		if ((n = node_find(cl, (const char *)name, len)) != NULL) {
			n->alive = false;
			cl_node_put(cl, n);
		}
		return;
	}
	/* A value this node would not have written: not a node. */
	if (kv->value_len < CL_NODE_HDR || kv->value[0] != CL_VALUE_V1 ||
	    kv->value[1] >= sizeof(n->address) ||
	    kv->value_len != CL_NODE_HDR + (size_t)kv->value[1])
		return;
	for (size_t i = 0; i < kv->value[1]; i++)
		if (kv->value[CL_NODE_HDR + i] <= ' ' ||
		    kv->value[CL_NODE_HDR + i] > '~')
			return;		/* an address is printable ASCII */
	if ((n = cl_node_get(cl, (const char *)name, len)) == NULL)
		return;
	n->alive = true;
	n->lease = kv->lease;
	n->since_ms = cl_get_u64(kv->value + 4);
	memcpy(n->address, kv->value + CL_NODE_HDR, kv->value[1]);
	n->address[kv->value[1]] = '\0';
}

/* ------------------------------------------------------------------ */
/* Pending operations.                                                  */

/* ------------------------------------------------------------------ */
/* Monitors.                                                            */

int
cluster_monitor(struct cluster *cl, void *peer, uint64_t conn, uint64_t ref,
    const char *name, size_t len)
{
	struct cl_entry *e = cl_cache_find(cl, name, len);
	struct cl_monitor *m;
	struct cl_peer *p;

	(void)conn;
	if (e == NULL)
		return -ENOENT;
	if ((p = cl_peer_get(cl, peer)) == NULL)
		return -ENOMEM;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		cl_peer_put(cl, p);
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
	struct cl_peer *p = cl_peer_find(cl, peer);
	struct cl_monitor *m;

	if (p == NULL)
		return false;
	LIST_FOREACH(m, &p->monitors, by_holder) {
		if (m->ref == ref) {
			LIST_REMOVE(m, by_entry);
			LIST_REMOVE(m, by_holder);
			p->nmonitors--;
			free(m);
			cl_peer_put(cl, p);
			return true;
		}
	}
	return false;
}

uint32_t
cluster_monitors_of(const struct cluster *cl, const void *peer)
{
	const struct cl_peer *p = cl_peer_find(cl, peer);

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
	const struct cl_peer *p = cl_peer_find(cl, peer);

	return p != NULL ? p->nnames : 0;
}

const struct cl_entry *
cluster_lookup(const struct cluster *cl, const char *name, size_t len)
{
	const struct cl_entry *e = cl_cache_find(cl, name, len);

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
