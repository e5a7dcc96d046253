/*
 * cluster_write.c: the requests a node sends to etcd for its clients
 * (cluster_impl.h): register (create if absent), unregister, update and
 * evict (fenced by the key's create revision), consistent reads, and the
 * batched deletes of closed connections' names.  Each waits as a cl_op;
 * the cache changes when etcd has said yes.
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
#include "now.h"

struct cl_op *
cl_op_new(struct cluster *cl, enum cl_op_kind kind, struct cl_peer *p,
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

void
cl_op_free(struct cl_op *op)
{
	struct cluster *cl = op->cl;
	struct cl_peer *p = op->peer;

	if (p != NULL)
		LIST_REMOVE(op, by_peer);
	LIST_REMOVE(op, all);
	for (size_t i = 0; i < op->n; i++)
		free(op->keys[i]);
	free(op->keys);
	free(op->klens);
	free(op->gens);
	free(op->value);
	free(op);
	if (p != NULL)
		cl_peer_put(cl, p);
}

/* Answer op's request, if its connection is still there. */
void
cl_op_reply(struct cl_op *op, int err, const char *why,
    const struct cl_entry *e, bool is_bool)
{
	struct cluster *cl = op->cl;

	/* A hand-over answers no request. */
	if (op->peer != NULL && op->kind != OP_ACQUIRE)
		cl->ops->reply(cl->arg, op->peer->peer, op->msgid, err, why, e,
		    is_bool, 0);
}

/* The places in line a queued register's answer lists (its own one
 * the last): those of procreg's form, not keys others put there. */
static uint64_t
places(const struct cluster *cl, const struct etcd_result *r)
{
	uint64_t n = 0;

	for (size_t i = 0; i < r->nkvs; i++) {
		const char *name, *node;
		const uint8_t *rest;
		size_t rlen, len, nlen;
		uint64_t conn;

		if (cl_key_kind(cl, &r->kvs[i], "queue/", &rest, &rlen) &&
		    cl_waiter_parse(rest, rlen, &name, &len, &node, &nlen,
		    &conn) == 0 && cl_name_ok(name, len) &&
		    cl_node_name_ok((const uint8_t *)node, nlen))
			n++;
	}
	return n;
}

/* Answer {"queued": position}. */
static void
op_reply_queued(struct cl_op *op, uint64_t position)
{
	struct cluster *cl = op->cl;

	if (op->peer != NULL)
		cl->ops->reply(cl->arg, op->peer->peer, op->msgid, 0, "", NULL,
		    false, position ? position : 1);
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
	cl_op_reply(op, PR_ERR_UNAVAILABLE, why, NULL, false);
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
			 * for is deleted (cl_cache_put).
			 */
			cl_log(cl, LOG_WARNING, "cluster: register of %.*s "
			    "timed out; its outcome is unknown",
			    op->name_len, op->name);
			cl->orphans_possible = true;
			if ((e = cl_cache_find(cl, op->name, op->name_len)) !=
			    NULL && e->owner == NULL && cl_entry_is_self(cl, e) &&
			    e->conn == op->owner.conn)
				cl_entry_doom(cl, e);
		}
		cl_op_free(op);
		return;
	}
	if (!r->succeeded && op->queue) {
		/* In line: the place was created in this revision. */
		char key[CL_KEY_MAX];
		size_t klen = cl_waiter_key(cl, op->name, op->name_len,
		    cl->node, cl->node_len, op->owner.conn, key);
		struct cl_waiter *w = cl_waiter_put(cl, (const uint8_t *)key +
		    cl->prefix_len + 6, klen - cl->prefix_len - 6, op->value,
		    op->value_len, r->revision);

		if (w != NULL && op->peer != NULL) {
			cl_waiter_set_peer(cl, w, op->peer);
			op_reply_queued(op, places(cl, r));
		} else if (w != NULL) {
			cl_waiter_doom(cl, w);
			cl_doom_flush(cl);
		} else
			cl_op_reply(op, PR_ERR_UNAVAILABLE, "out of memory",
			    NULL, false);
		cl_op_free(op);
		cl_queues_kick(cl);
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
			    cl_get_u64(r->kvs[0].value + 12));
		else
			snprintf(why, sizeof(why), "the name is registered in "
			    "the cluster");
		cl_op_reply(op, PR_ERR_TAKEN, why, NULL, false);
		cl_op_free(op);
		return;
	}
	/* The transaction's revision is the key's create revision. */
	e = cl_cache_put(cl, op->name, op->name_len, op->value, op->value_len,
	    r->revision);
	if (e != NULL && op->peer != NULL) {
		cl_entry_set_owner(cl, e, op->peer);
		cl_op_reply(op, 0, "", e, false);
	} else {
		/* Its connection went (or no memory to keep it): the name
		 * must not outlive it. */
		if (e == NULL)
			cl_op_reply(op, PR_ERR_UNAVAILABLE, "out of memory", NULL,
			    false);
		if (e != NULL) {
			cl_entry_doom(cl, e);
			cl_doom_flush(cl);
		}
	}
	cl_op_free(op);
}

int
cluster_register(struct cluster *cl, const struct cl_owner *o,
    uint32_t msgid, const char *name, size_t len, const void *value,
    size_t vlen, bool queue, char *why, size_t whylen)
{
	const struct cl_entry *e;
	struct cl_peer *p;
	struct cl_op *op;
	char key[CL_KEY_MAX];
	size_t klen;

	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	e = cluster_lookup(cl, name, len);
	if (queue && e != NULL && (p = cl_peer_find(cl, o->peer)) != NULL &&
	    e->owner == p) {
		snprintf(why, whylen, "this connection owns the name");
		return PR_ERR_TAKEN;
	}
	if (queue && cl_waiter_find(cl, name, len, cl->node, cl->node_len,
	    o->conn) != NULL) {
		snprintf(why, whylen, "this connection is waiting for the "
		    "name");
		return PR_ERR_TAKEN;
	}
	if (!queue && e != NULL) {
		/* The cache saw it: no round trip to learn it is taken. */
		snprintf(why, whylen, "the name is registered in the cluster "
		    "by node %s conn %" PRIu64, e->node->name, e->conn);
		return PR_ERR_TAKEN;
	}
	if ((p = cl_peer_get(cl, o->peer)) == NULL ||
	    (op = cl_op_new(cl, OP_REGISTER, p, msgid, name, len)) == NULL)
		goto nomem;
	op->owner = *o;
	op->queue = queue;
	if ((op->value = cl_entry_encode(cl, o, now_epoch_ms(), value, vlen,
	    &klen)) == NULL)
		goto nomem_op;
	op->value_len = (uint32_t)klen;
	klen = cl_key(cl, "names/", name, len, key);
	if (!queue) {
		if (etcd_txn_create(cl->etcd, key, klen, op->value,
		    op->value_len, cl->lease, on_register, op) < 0)
			goto nomem_op;
		return 0;
	}
	{
		/* Create the name if free, else take a place in line and
		 * count the line, in one transaction. */
		char wkey[CL_KEY_MAX], end[CL_KEY_MAX];
		size_t wlen = cl_waiter_key(cl, name, len, cl->node,
		    cl->node_len, o->conn, wkey);
		size_t qlen = cl->prefix_len + 6 + len + 1, elen;
		struct etcd_txn *t = etcd_txn_new();

		elen = etcd_prefix_end(wkey, qlen, (uint8_t *)end);
		if (t == NULL || etcd_txn_cmp_create(t, key, klen, 0) < 0 ||
		    etcd_txn_put(t, true, key, klen, op->value,
		    op->value_len, cl->lease) < 0 ||
		    etcd_txn_put(t, false, wkey, wlen, op->value,
		    op->value_len, cl->lease) < 0 ||
		    etcd_txn_keys(t, false, wkey, qlen, end, elen) < 0) {
			etcd_txn_free(t);
			goto nomem_op;
		}
		if (etcd_txn(cl->etcd, t, on_register, op) < 0)
			goto nomem_op;
	}
	return 0;
nomem_op:
	cl_op_free(op);
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

	e = cl_cache_find(cl, op->name, op->name_len);
	if (e != NULL && e->gen != op->gen)
		e = NULL;
	if (r->status != 0) {
		if (e != NULL)
			e->unregistering = false;
		op_fail(op, r, true);
		cl_op_free(op);
		return;
	}
	if (e != NULL && op->kind == OP_EVICT)
		cl_entry_remove(cl, e, PR_DOWN_EVICTED, true);
	else if (e != NULL)
		cl_entry_remove(cl, e, PR_DOWN_UNREGISTERED, false);
	cl_op_reply(op, 0, "", NULL, true);
	cl_op_free(op);
}

/* A transaction that says why, then deletes each key still created at
 * its gen. */
static struct etcd_txn *
delete_txn(struct cluster *cl, enum pr_down_reason why, char *const *keys,
    const size_t *klens, const int64_t *gens, size_t n)
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
	for (size_t i = 0; i < n; i++)
		if (etcd_txn_del_if_created(t, keys[i], klens[i], gens[i]) < 0)
			return etcd_txn_free(t);
	return t;
}

/* Delete one key of op's (its name's, or a place's) with why. */
static int
delete_one(struct cluster *cl, struct cl_op *op, enum pr_down_reason why,
    const char *key, size_t klen, etcd_cb *cb)
{
	char *k = (char *)key;
	struct etcd_txn *t;

	if ((t = delete_txn(cl, why, &k, &klen, &op->gen, 1)) == NULL)
		return -ENOMEM;
	return etcd_txn(cl->etcd, t, cb, op);
}

/*
 * May p write to e now: its owner (unless owner is false: a waiter),
 * with gen (0: any) still e's, and this node holding its lease?  0, or
 * a pr_err with why.
 */
static int
may_write(const struct cluster *cl, const struct cl_entry *e,
    const struct cl_peer *p, bool owner, int64_t gen, char *why,
    size_t whylen)
{
	if (owner && (p == NULL || e->owner != p)) {
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
	return 0;
}

static void
on_leave_queue(const struct etcd_result *r, void *arg)
{
	struct cl_op *op = arg;
	struct cluster *cl = op->cl;
	struct cl_queue *q;
	struct cl_waiter *w = NULL;

	if ((q = cl_queue_find(cl, op->name, op->name_len)) != NULL)
		TAILQ_FOREACH(w, &q->waiters, by_queue)
			if (w->rev == op->gen)
				break;
	if (r->status != 0) {
		if (q != NULL && w != NULL)
			w->leaving = false;
		op_fail(op, r, true);
		cl_op_free(op);
		return;
	}
	if (q != NULL && w != NULL)
		cl_waiter_remove(cl, w);
	cl_op_reply(op, 0, "", NULL, true);
	cl_op_free(op);
	cl_queues_kick(cl);
}

int
cluster_unregister(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, int64_t gen, char *why, size_t whylen)
{
	struct cl_entry *e = cl_cache_find(cl, name, len);
	struct cl_peer *p = cl_peer_find(cl, peer);
	struct cl_waiter *w = NULL;
	char key[CL_KEY_MAX];
	struct cl_op *op;
	int r;
	size_t klen;

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if (p != NULL && e->owner != p)
		LIST_FOREACH(w, &p->waits, by_peer)
			if (w->q->name_len == len &&
			    memcmp(w->q->name, name, len) == 0)
				break;
	if (w != NULL) {
		/* A waiter gives up its place (with a gen, only while the
		 * entry has it). */
		if ((r = may_write(cl, e, p, false, gen, why, whylen)) != 0)
			return r;
		if ((op = cl_op_new(cl, OP_LEAVE_QUEUE, p, msgid, name,
		    len)) == NULL)
			goto nomem;
		op->gen = w->rev;
		klen = cl_waiter_key(cl, name, len, cl->node, cl->node_len,
		    w->conn, key);
		if (delete_one(cl, op, PR_DOWN_UNREGISTERED, key, klen,
		    on_leave_queue) < 0) {
			cl_op_free(op);
			goto nomem;
		}
		w->leaving = true;
		return 0;
	}
	if ((r = may_write(cl, e, p, true, gen, why, whylen)) != 0)
		return r;
	if ((op = cl_op_new(cl, OP_UNREGISTER, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	klen = cl_key(cl, "names/", name, len, key);
	if (delete_one(cl, op, PR_DOWN_UNREGISTERED, key, klen,
	    on_unregister) < 0) {
		cl_op_free(op);
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
	struct cl_entry *e = cl_cache_find(cl, name, len);
	struct cl_peer *p = NULL;
	char key[CL_KEY_MAX];
	struct cl_op *op;
	size_t klen;

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if (!cl_writable(cl, why, whylen))
		return PR_ERR_UNAVAILABLE;
	if ((p = cl_peer_get(cl, peer)) == NULL ||
	    (op = cl_op_new(cl, OP_EVICT, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	klen = cl_key(cl, "names/", name, len, key);
	if (delete_one(cl, op, PR_DOWN_EVICTED, key, klen, on_unregister) <
	    0) {
		cl_op_free(op);
		goto nomem;
	}
	return 0;
nomem:
	if (p != NULL)
		cl_peer_put(cl, p);
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
		cl_op_free(op);
		return;
	}
	if (!r->succeeded) {
		/* The key is not the one the owner holds any more. */
		cl_op_reply(op, PR_ERR_STALE, "the name's entry has another "
		    "generation in the cluster", NULL, false);
		cl_op_free(op);
		return;
	}
	e = cl_cache_put(cl, op->name, op->name_len, op->value, op->value_len,
	    op->gen);
	cl_op_reply(op, e != NULL ? 0 : PR_ERR_UNAVAILABLE, "out of memory", e,
	    false);
	cl_op_free(op);
}

int
cluster_update(struct cluster *cl, void *peer, uint32_t msgid,
    const char *name, size_t len, const void *value, size_t vlen,
    int64_t gen, char *why, size_t whylen)
{
	struct cl_entry *e = cl_cache_find(cl, name, len);
	struct cl_peer *p = cl_peer_find(cl, peer);
	struct etcd_txn *t = NULL;
	struct cl_owner o;
	struct cl_op *op;
	int r;
	char key[CL_KEY_MAX];
	size_t klen, elen;

	if (e == NULL) {
		snprintf(why, whylen, "the name is not registered");
		return PR_ERR_NOT_FOUND;
	}
	if ((r = may_write(cl, e, p, true, gen, why, whylen)) != 0)
		return r;
	if ((op = cl_op_new(cl, OP_UPDATE, p, msgid, name, len)) == NULL)
		goto nomem;
	op->gen = e->gen;
	o = (struct cl_owner){ peer, e->conn, e->pid, e->uid, e->gid };
	if ((op->value = cl_entry_encode(cl, &o, e->since_ms, value, vlen,
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
	cl_op_free(op);
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
		cl_op_free(op);
		return;
	}
	if (r->nkvs > 0) {
		/* What etcd holds now is newer than or as new as the
		 * cache: it goes in (the watch brings the same again). */
		e = cl_cache_put(cl, op->name, op->name_len, r->kvs[0].value,
		    r->kvs[0].value_len, r->kvs[0].create_rev);
	}
	cl_op_reply(op, 0, "", e, false);
	cl_op_free(op);
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
	if ((p = cl_peer_get(cl, peer)) == NULL ||
	    (op = cl_op_new(cl, OP_READ, p, msgid, name, len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return PR_ERR_UNAVAILABLE;
	}
	klen = cl_key(cl, "names/", name, len, key);
	if (etcd_range(cl->etcd, key, klen, NULL, on_read, op) < 0) {
		cl_op_free(op);
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
	const uint8_t *rest;
	size_t rlen;

	cl->doom_inflight--;
	for (size_t i = 0; i < op->n; i++) {
		struct etcd_kv kv = { .key = (const uint8_t *)op->keys[i],
		    .key_len = op->klens[i] };
		const char *name, *node;
		size_t len, nlen;
		uint64_t conn;

		if (cl_key_kind(cl, &kv, "names/", &rest, &rlen)) {
			struct cl_entry *e = cl_cache_find(cl,
			    (const char *)rest, rlen);

			if (e == NULL || e->gen != op->gens[i])
				continue;	/* gone meanwhile */
			if (r->status == 0)
				cl_entry_remove(cl, e, PR_DOWN_DISCONNECTED,
				    false);
			else
				cl_entry_doom(cl, e);
		} else if (cl_key_kind(cl, &kv, "queue/", &rest, &rlen) &&
		    cl_waiter_parse(rest, rlen, &name, &len, &node, &nlen,
		    &conn) == 0) {
			struct cl_waiter *w = cl_waiter_find(cl, name, len,
			    node, nlen, conn);

			if (w == NULL || w->rev != op->gens[i])
				continue;
			if (r->status == 0)
				cl_waiter_remove(cl, w);
			else
				cl_waiter_doom(cl, w);
		}
	}
	if (r->status != 0) {
		cl_log(cl, LOG_WARNING, "cluster: deleting %zu keys of "
		    "closed connections failed (%s%s%s); retrying", op->n,
		    etcd_strerror(r->status), *r->errmsg ? ": " : "",
		    r->errmsg);
		cl->doom_after_us = now_mono_us() + CL_RETRY_MS * 1000;
	}
	cl_op_free(op);
	cl_queues_kick(cl);
	cl_doom_flush(cl);
}

/* Put op's key i back on the doomed lists (it was not deleted). */
static void
undoom(struct cluster *cl, const struct cl_op *op, size_t i)
{
	struct etcd_kv kv = { .key = (const uint8_t *)op->keys[i],
	    .key_len = op->klens[i] };
	const char *name, *node;
	const uint8_t *rest;
	size_t rlen, len, nlen;
	uint64_t conn;

	if (cl_key_kind(cl, &kv, "names/", &rest, &rlen)) {
		struct cl_entry *e = cl_cache_find(cl, (const char *)rest,
		    rlen);

		if (e != NULL)
			cl_entry_doom(cl, e);
	} else if (cl_key_kind(cl, &kv, "queue/", &rest, &rlen) &&
	    cl_waiter_parse(rest, rlen, &name, &len, &node, &nlen,
	    &conn) == 0) {
		struct cl_waiter *w = cl_waiter_find(cl, name, len, node, nlen,
		    conn);

		if (w != NULL)
			cl_waiter_doom(cl, w);
	}
}

/* Send the doomed names' and places' deletes, at most one transaction's
 * worth per batch, a few batches at once. */
void
cl_doom_flush(struct cluster *cl)
{
	while ((!TAILQ_EMPTY(&cl->doomed) || !TAILQ_EMPTY(&cl->doomed_w)) &&
	    cl->doom_inflight < 4 && !cl->leaving &&
	    cl->state == CL_UP && now_mono_us() >= cl->doom_after_us) {
		/* A fenced delete is a nested transaction: etcd counts its
		 * compare and its delete, so one why and 63 of them fill
		 * a transaction of 128 operations. */
		size_t max = (ETCD_TXN_MAX_OPS - 1) / 2, n = 0;
		struct cl_op *op = cl_op_new(cl, OP_DELETES, NULL, 0, NULL, 0);
		char key[CL_KEY_MAX];
		struct etcd_txn *t;
		struct cl_waiter *w;
		struct cl_entry *e;
		size_t klen;

		if (op == NULL || (op->keys = calloc(max,
		    sizeof(*op->keys))) == NULL ||
		    (op->klens = calloc(max, sizeof(*op->klens))) == NULL ||
		    (op->gens = calloc(max, sizeof(*op->gens))) == NULL)
			goto later;
		while (n < max) {
			e = TAILQ_FIRST(&cl->doomed);
			w = e == NULL ? TAILQ_FIRST(&cl->doomed_w) : NULL;
			if (e == NULL && w == NULL)
				break;
			klen = e != NULL ? cl_key(cl, "names/", e->data,
			    e->name_len, key) : cl_waiter_key(cl, w->q->name,
			    w->q->name_len, w->node->name, w->node->name_len,
			    w->conn, key);
			if ((op->keys[n] = malloc(klen)) == NULL)
				break;
			memcpy(op->keys[n], key, klen);
			op->klens[n] = klen;
			op->gens[n] = e != NULL ? e->gen : w->rev;
			op->n = ++n;
			if (e != NULL) {
				TAILQ_REMOVE(&cl->doomed, e, doom_link);
				e->doomed = false;
			} else {
				TAILQ_REMOVE(&cl->doomed_w, w, doom_link);
				w->doomed = false;
			}
		}
		if ((t = delete_txn(cl, PR_DOWN_DISCONNECTED, op->keys,
		    op->klens, op->gens, n)) == NULL ||
		    etcd_txn(cl->etcd, t, on_deletes, op) < 0)
			goto later;
		cl->doom_inflight++;
		continue;
later:
		/* Out of memory: put them back, try on a later tick. */
		if (op != NULL) {
			for (size_t i = 0; i < op->n; i++)
				undoom(cl, op, i);
			cl_op_free(op);
		}
		cl->doom_after_us = now_mono_us() + CL_RETRY_MS * 1000;
		return;
	}
}

void
cluster_peer_gone(struct cluster *cl, void *peer)
{
	struct cl_peer *p = cl_peer_find(cl, peer);
	struct cl_monitor *m;
	struct cl_waiter *w;
	struct cl_entry *e;
	struct cl_op *op;

	if (p == NULL)
		return;
	/* The lists are emptied by hand: cl_peer_put would free the record
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
			cl_entry_doom(cl, e);
	}
	p->nnames = 0;
	while ((w = LIST_FIRST(&p->waits)) != NULL) {
		LIST_REMOVE(w, by_peer);
		w->peer = NULL;
		if (!cl->leaving)
			cl_waiter_doom(cl, w);
	}
	p->nwaits = 0;
	htab_remove(&cl->peers, cl_peer_hash(p->peer), p);
	free(p);
	cl_doom_flush(cl);
}
