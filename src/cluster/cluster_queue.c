/*
 * cluster_queue.c: queued ownership of cluster names (PROTOCOL.md §12).
 *
 * A place in line is a key P queue/NAME NUL NODE/CONN under the waiter's
 * node's lease, holding the value names/NAME will hold; its create
 * revision is its place, as in etcd's election recipe.  When the name is
 * free, the node of the first waiter hands it over in one transaction:
 * create names/NAME if absent and if the place still exists, and delete
 * the place.  The new key's create revision is the new gen, larger than
 * any before it.  Every node keeps every queue in its cache (the watch
 * brings the places with the names), so a node knows when the head is
 * one of its own without asking.
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cluster_impl.h"
#include "now.h"

size_t
cl_waiter_key(const struct cluster *cl, const char *name, size_t len,
    const char *node, size_t nlen, uint64_t conn, char *buf)
{
	size_t n = cl_key(cl, "queue/", name, len, buf);

	/* A name has no NUL: it ends the name, and the queue of a name is
	 * the range of keys that begin with P queue/NAME NUL. */
	buf[n++] = '\0';
	memcpy(buf + n, node, nlen);
	n += nlen;
	n += (size_t)snprintf(buf + n, CL_KEY_MAX - n, "/%" PRIu64, conn);
	return n;
}

int
cl_waiter_parse(const uint8_t *rest, size_t rlen, const char **name,
    size_t *len, const char **node, size_t *nlen, uint64_t *conn)
{
	const uint8_t *nul = memchr(rest, '\0', rlen), *slash;
	uint64_t c = 0;

	if (nul == NULL || nul == rest || nul - rest > PR_NAME_MAX)
		return -1;
	*name = (const char *)rest;
	*len = (size_t)(nul - rest);
	rest = nul + 1;
	rlen -= *len + 1;
	for (slash = rest + rlen; slash > rest && slash[-1] != '/'; slash--)
		;
	if (slash == rest || slash == rest + rlen ||
	    slash - 1 - rest > 63)
		return -1;
	for (const uint8_t *p = slash; p < rest + rlen; p++) {
		if (*p < '0' || *p > '9' || c > UINT64_MAX / 10 - 1)
			return -1;
		c = c * 10 + (uint64_t)(*p - '0');
	}
	*node = (const char *)rest;
	*nlen = (size_t)(slash - 1 - rest);
	*conn = c;
	return 0;
}

struct qkey {
	const char	*s;
	size_t		 len;
};

static bool
queue_eq(const void *item, const void *key)
{
	const struct cl_queue *q = item;
	const struct qkey *k = key;

	return q->name_len == k->len && memcmp(q->name, k->s, k->len) == 0;
}

static uint64_t
queue_hash(const struct cluster *cl, const char *name, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)name, len, cl->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

struct cl_queue *
cl_queue_find(const struct cluster *cl, const char *name, size_t len)
{
	struct qkey k = { name, len };

	return htab_find(&cl->queues, queue_hash(cl, name, len), queue_eq, &k);
}

struct cl_waiter *
cl_waiter_find(const struct cluster *cl, const char *name, size_t len,
    const char *node, size_t nlen, uint64_t conn)
{
	struct cl_queue *q = cl_queue_find(cl, name, len);
	struct cl_waiter *w;

	if (q == NULL)
		return NULL;
	TAILQ_FOREACH(w, &q->waiters, by_queue)
		if (w->conn == conn && w->node->name_len == nlen &&
		    memcmp(w->node->name, node, nlen) == 0)
			return w;
	return NULL;
}

struct cl_waiter *
cl_waiter_put(struct cluster *cl, const uint8_t *rest, size_t rlen,
    const uint8_t *v, size_t vlen, int64_t rev)
{
	const char *name, *node;
	size_t len, nlen;
	uint64_t conn;
	struct cl_waiter *w, *after;
	struct cl_queue *q;
	struct cl_node *n;

	if (cl_waiter_parse(rest, rlen, &name, &len, &node, &nlen,
	    &conn) != 0 || vlen > UINT32_MAX || !cl_name_ok(name, len) ||
	    !cl_node_name_ok((const uint8_t *)node, nlen))
		return NULL;
	if ((w = cl_waiter_find(cl, name, len, node, nlen, conn)) != NULL) {
		w->epoch = cl->epoch;
		return w;	/* seen before (our own write, a re-read) */
	}
	if ((q = cl_queue_find(cl, name, len)) == NULL) {
		if ((q = calloc(1, sizeof(*q) + len)) == NULL)
			return NULL;
		TAILQ_INIT(&q->waiters);
		memcpy(q->name, name, len);
		q->name_len = (uint8_t)len;
		if (htab_insert(&cl->queues, queue_hash(cl, name, len), q) <
		    0) {
			free(q);
			return NULL;
		}
	}
	if ((n = cl_node_get(cl, node, nlen)) == NULL)
		goto fail;
	if ((w = calloc(1, sizeof(*w) + vlen)) == NULL) {
		cl_node_put(cl, n);
		goto fail;
	}
	n->nnames++;
	w->q = q;
	w->node = n;
	w->conn = conn;
	w->rev = rev;
	w->epoch = cl->epoch;
	w->value_len = (uint32_t)vlen;
	memcpy(w->value, v, vlen);
	/* Places arrive in revision order but for re-reads: keep the line
	 * sorted by walking back from its end. */
	for (after = TAILQ_LAST(&q->waiters, cl_waiters);
	    after != NULL && after->rev > rev;
	    after = TAILQ_PREV(after, cl_waiters, by_queue))
		;
	if (after == NULL)
		TAILQ_INSERT_HEAD(&q->waiters, w, by_queue);
	else
		TAILQ_INSERT_AFTER(&q->waiters, after, w, by_queue);
	q->n++;
	return w;
fail:
	if (q->n == 0) {
		htab_remove(&cl->queues, queue_hash(cl, q->name, q->name_len),
		    q);
		free(q);
	}
	return NULL;
}

void
cl_waiter_set_peer(struct cluster *cl, struct cl_waiter *w,
    struct cl_peer *p)
{
	if (w->peer == p)
		return;
	if (w->peer != NULL) {
		struct cl_peer *old = w->peer;

		LIST_REMOVE(w, by_peer);
		old->nwaits--;
		w->peer = NULL;
		cl_peer_put(cl, old);
	}
	if (p != NULL) {
		LIST_INSERT_HEAD(&p->waits, w, by_peer);
		p->nwaits++;
		w->peer = p;
	}
}

void
cl_waiter_doom(struct cluster *cl, struct cl_waiter *w)
{
	if (!w->doomed) {
		w->doomed = true;
		TAILQ_INSERT_TAIL(&cl->doomed_w, w, doom_link);
	}
}

void
cl_waiter_remove(struct cluster *cl, struct cl_waiter *w)
{
	struct cl_queue *q = w->q;

	cl_waiter_set_peer(cl, w, NULL);
	if (w->doomed)
		TAILQ_REMOVE(&cl->doomed_w, w, doom_link);
	TAILQ_REMOVE(&q->waiters, w, by_queue);
	q->n--;
	w->node->nnames--;
	cl_node_put(cl, w->node);
	free(w);
	if (q->n == 0 && !q->acquiring) {
		htab_remove(&cl->queues, queue_hash(cl, q->name, q->name_len),
		    q);
		free(q);
	}
}

/* The hand-over's answer. */
static void
on_acquire(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_queue *q = cl_queue_find(cl, op->name, op->name_len);
	struct cl_waiter *w = NULL;
	struct cl_entry *e;

	if (q != NULL) {
		q->acquiring = false;
		TAILQ_FOREACH(w, &q->waiters, by_queue)
			if (w->rev == op->gen)
				break;
	}
	if (w != NULL)
		w->acquiring = false;
	if (r->status != 0 || !r->succeeded) {
		/* Taken by someone else meanwhile, or our place is gone:
		 * a later change tries again.  An etcd failure: the tick. */
		if (r->status != 0)
			cl->queues_dirty = true;
		if (q != NULL && q->n == 0) {
			htab_remove(&cl->queues, queue_hash(cl, q->name,
			    q->name_len), q);
			free(q);
		}
		cl_op_free(op);
		return;
	}
	e = cl_cache_put(cl, op->name, op->name_len, op->value, op->value_len,
	    r->revision);
	if (w != NULL)
		cl_waiter_remove(cl, w);
	else if (q != NULL && q->n == 0) {
		htab_remove(&cl->queues, queue_hash(cl, q->name, q->name_len),
		    q);
		free(q);
	}
	if (e != NULL && op->peer != NULL) {
		cl_entry_set_owner(cl, e, op->peer);
		cl->ops->acquired(cl->arg, op->peer->peer, e);
	} else if (e != NULL)
		cl_entry_doom(cl, e);	/* its connection went meanwhile */
	cl_op_free(op);
	cl_doom_flush(cl);
}

/* Hand q's name to its head, one of ours. */
static void
queue_acquire(struct cluster *cl, struct cl_queue *q, struct cl_waiter *w)
{
	char key[CL_KEY_MAX], wkey[CL_KEY_MAX];
	size_t klen, wlen;
	struct etcd_txn *t;
	struct cl_op *op;

	if ((op = cl_op_new(cl, OP_ACQUIRE, w->peer, 0, q->name,
	    q->name_len)) == NULL || (op->value = malloc(w->value_len ?
	    w->value_len : 1)) == NULL)
		goto fail;
	memcpy(op->value, w->value, w->value_len);
	op->value_len = w->value_len;
	op->gen = w->rev;
	klen = cl_key(cl, "names/", q->name, q->name_len, key);
	wlen = cl_waiter_key(cl, q->name, q->name_len, cl->node, cl->node_len,
	    w->conn, wkey);
	if ((t = etcd_txn_new()) == NULL)
		goto fail;
	if (etcd_txn_cmp_create(t, key, klen, 0) < 0 ||
	    etcd_txn_cmp_create(t, wkey, wlen, w->rev) < 0 ||
	    etcd_txn_put(t, true, key, klen, op->value, op->value_len,
	    cl->lease) < 0 ||
	    etcd_txn_del(t, true, wkey, wlen) < 0) {
		etcd_txn_free(t);
		goto fail;
	}
	if (etcd_txn(cl->etcd, t, on_acquire, op) < 0)
		goto fail;
	q->acquiring = true;
	w->acquiring = true;
	return;
fail:
	if (op != NULL)
		cl_op_free(op);
	cl->queues_dirty = true;
}

void
cl_queues_kick(struct cluster *cl)
{
	if (cl->state != CL_UP || cl->leaving || cl->queues.count == 0)
		return;
	cl->queues_dirty = false;
	for (size_t i = 0; i < cl->queues.cap; i++) {
		struct cl_queue *q = cl->queues.slots[i].item;
		struct cl_waiter *w;

		if (q == NULL || q->acquiring ||
		    cl_cache_find(cl, q->name, q->name_len) != NULL)
			continue;
		/*
		 * The head, passing over places being deleted, places of
		 * nodes that are not live (their lease, if any, takes them)
		 * and places of this node that no connection holds and no
		 * register waits for (put by someone else: deleted).
		 */
		TAILQ_FOREACH(w, &q->waiters, by_queue) {
			if (w->doomed)
				continue;
			if (!cl_node_is_self(cl, w->node)) {
				if (w->node->alive)
					break;
				continue;
			}
			if (w->peer != NULL || cl_register_pending(cl, q->name,
			    q->name_len))
				break;
			cl_waiter_doom(cl, w);
		}
		if (w != NULL && w->peer != NULL && !w->doomed &&
		    cl_node_is_self(cl, w->node))
			queue_acquire(cl, q, w);
	}
	if (!TAILQ_EMPTY(&cl->doomed_w))
		cl_doom_flush(cl);
}

void
cl_queues_gc(struct cluster *cl)
{
	for (size_t i = 0; i < cl->queues.cap; i++) {
		struct cl_queue *q = cl->queues.slots[i].item;

		if (q != NULL && q->n == 0 && !q->acquiring) {
			htab_remove(&cl->queues, queue_hash(cl, q->name,
			    q->name_len), q);
			free(q);
			i--;	/* backward shift: look at this slot again */
		}
	}
}

void
cl_queues_sync_done(struct cluster *cl)
{
	for (size_t i = 0; i < cl->queues.cap; i++) {
		struct cl_queue *q = cl->queues.slots[i].item;
		struct cl_waiter *w, *next;

		if (q == NULL)
			continue;
		q->acquiring = true;	/* hold q while its places go */
		for (w = TAILQ_FIRST(&q->waiters); w != NULL; w = next) {
			next = TAILQ_NEXT(w, by_queue);
			if (w->epoch != cl->epoch)
				cl_waiter_remove(cl, w);
		}
		q->acquiring = false;
	}
	cl_queues_gc(cl);
}

void
cl_queues_free(struct cluster *cl)
{
	for (size_t i = 0; i < cl->queues.cap; i++) {
		struct cl_queue *q = cl->queues.slots[i].item;
		struct cl_waiter *w;

		if (q == NULL)
			continue;
		while ((w = TAILQ_FIRST(&q->waiters)) != NULL) {
			TAILQ_REMOVE(&q->waiters, w, by_queue);
			free(w);
		}
		free(q);
	}
	htab_deinit(&cl->queues);
}

size_t
cluster_queue(const struct cluster *cl, const char *name, size_t len,
    const struct cl_waiter **out, size_t max)
{
	const struct cl_queue *q = cl_queue_find(cl, name, len);
	const struct cl_waiter *w;
	size_t n = 0;

	if (q == NULL)
		return 0;
	TAILQ_FOREACH(w, &q->waiters, by_queue)
		if (n < max)
			out[n++] = w;
	return n;
}

const char *
cluster_waiter_node(const struct cl_waiter *w, uint64_t *conn)
{
	*conn = w->conn;
	return w->node->name;
}
