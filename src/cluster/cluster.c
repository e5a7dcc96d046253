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

#include "cluster_impl.h"
#include "now.h"

static void	cl_join(struct cluster *);
static void	join_failed(struct cluster *, const char *,
	    const struct etcd_result *);
static void	cl_sync(struct cluster *);

void
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
		else if (n == NULL || (w[i].len == n->name_len &&
		    memcmp(w[i].node, n->name, n->name_len) == 0))
			return PR_DOWN_NODEDOWN;	/* n NULL: not cached */
	}
	return r;
}


/*
 * A place in a queue came or went.  One of ours that went without our
 * asking (its give-up, its hand-over) went with the lease, or someone
 * removed it: its connection must not wait for ever.
 */
static void
queue_event(struct cluster *cl, const uint8_t *rest, size_t rlen,
    const struct etcd_event *ev, const struct rev_why *wv, size_t nw)
{
	const char *name, *node;
	struct cl_waiter *w;
	size_t len, nlen;
	uint64_t conn;

	if (ev->type != ETCD_EV_DELETE) {
		cl_waiter_put(cl, rest, rlen, ev->kv.value, ev->kv.value_len,
		    ev->kv.create_rev);
		return;
	}
	if (cl_waiter_parse(rest, rlen, &name, &len, &node, &nlen,
	    &conn) != 0 || (w = cl_waiter_find(cl, name, len, node, nlen,
	    conn)) == NULL)
		return;
	if (w->peer != NULL && !w->leaving && !w->acquiring) {
		enum pr_down_reason why = wv != NULL ? why_of(wv, nw,
		    ev->kv.mod_rev, w->node) : PR_DOWN_UNREGISTERED;

		cl->ops->lost(cl->arg, w->peer->peer, w->q->name,
		    w->q->name_len, why == PR_DOWN_NODEDOWN ? why :
		    PR_DOWN_EVICTED);
	}
	cl_waiter_remove(cl, w);
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

		if (cl_key_kind(cl, kv, "nodes/", &rest, &rlen) &&
		    ev[i].type == ETCD_EV_DELETE)
			w[nw++] = (struct rev_why){ kv->mod_rev, rest, rlen,
			    PR_DOWN_NODEDOWN };
		else if (cl_key_kind(cl, kv, "why/", &rest, &rlen) &&
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
		if (cl_key_kind(cl, kv, "nodes/", &rest, &rlen))
			cl_cache_node(cl, rest, rlen, kv,
			    ev[i].type == ETCD_EV_DELETE);
		else if (cl_key_kind(cl, kv, "queue/", &rest, &rlen))
			queue_event(cl, rest, rlen, &ev[i], w, nw);
		else if (!cl_key_kind(cl, kv, "names/", &rest, &rlen))
			continue;
		else if (ev[i].type != ETCD_EV_DELETE) {
			struct cl_view v;

			if (cl_view_parse(cl, (const char *)rest, rlen,
			    kv->value, kv->value_len, kv->create_rev,
			    &v) == 0) {
				cl_cache_put(cl, (const char *)rest, rlen,
				    kv->value, kv->value_len, kv->create_rev);
				cl->ops->changed(cl->arg, kv->mod_rev,
				    ev[i].type == ETCD_EV_CREATE ?
				    CL_REGISTERED : CL_UPDATED, &v, 0);
			} else if ((e = cl_cache_find(cl, (const char *)rest,
			    rlen)) != NULL) {
				/* Overwritten by someone else with what no
				 * node would write: the entry is gone. */
				v = (struct cl_view){ .name = e->data,
				    .name_len = e->name_len };
				cl->ops->changed(cl->arg, kv->mod_rev,
				    CL_UNREGISTERED, &v, PR_DOWN_EVICTED);
				cl_entry_remove(cl, e, PR_DOWN_EVICTED, true);
			}
		} else {
			struct cl_view v = { .name = (const char *)rest,
			    .name_len = rlen };
			enum pr_down_reason why;

			e = cl_cache_find(cl, (const char *)rest, rlen);
			why = w != NULL ? why_of(w, nw, kv->mod_rev, e != NULL ?
			    e->node : NULL) : PR_DOWN_UNREGISTERED;
			if (e != NULL)
				cl_entry_remove(cl, e, why, true);
			if (cl_name_ok((const char *)rest, rlen))
				cl->ops->changed(cl->arg, kv->mod_rev,
				    CL_UNREGISTERED, &v, why);
		}
	}
	free(w);
	/* A name freed, a new head of a line: one of ours may take it. */
	cl_queues_kick(cl);
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
		cl->syncing = false;
		join_failed(cl, "reading the cluster", r);
		return;
	}
	if (cl->rev == 0 || r->revision < cl->rev)
		cl->rev = r->revision;	/* the first page's: read at it */
	for (size_t i = 0; i < r->nkvs; i++) {
		const struct etcd_kv *kv = &r->kvs[i];

		if (cl_key_kind(cl, kv, "nodes/", &rest, &rlen))
			cl_cache_node(cl, rest, rlen, kv, false);
		else if (cl_key_kind(cl, kv, "names/", &rest, &rlen))
			cl_cache_put(cl, (const char *)rest, rlen, kv->value,
			    kv->value_len, kv->create_rev);
		else if (cl_key_kind(cl, kv, "queue/", &rest, &rlen))
			cl_waiter_put(cl, rest, rlen, kv->value, kv->value_len,
			    kv->create_rev);
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
				cl_entry_remove(cl, gone[i], gone[i]->node->alive ?
				    PR_DOWN_UNREGISTERED : PR_DOWN_NODEDOWN,
				    true);
			free(gone);
		}
	}
	cl_queues_sync_done(cl);
	cl->ops->synced(cl->arg, cl->rev, cl->synced_once);
	cl->synced_once = true;
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

/*
 * A join step failed: again after a pause that doubles up to 8 s, and
 * a log line at the 1st, 2nd, 4th, 8th... failure in a row, so that a
 * node that cannot reach etcd (down, or refusing our certificate) says
 * why without filling the journal.
 */
static void
join_failed(struct cluster *cl, const char *what,
    const struct etcd_result *r)
{
	unsigned n = ++cl->join_fails;

	if ((n & (n - 1)) == 0)
		cl_log(cl, LOG_WARNING, "cluster: %s failed (%u in a row): "
		    "%s%s%s; retrying", what, n, etcd_strerror(r->status),
		    *r->errmsg ? ": " : "", r->errmsg);
	cl->join_after_us = now_mono_us() + ((uint64_t)CL_RETRY_MS * 1000 <<
	    (n < 4 ? n - 1 : 4));
}

static void
on_node_key(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;
	uint64_t now = now_mono_us();

	cl->join_inflight = false;
	if (r->status != 0) {
		join_failed(cl, "creating the node key", r);
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
	cl_put_u64(val + 4, cl->since_ms);
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
		join_failed(cl, "lease grant", r);
		return;
	}
	cl->join_fails = 0;
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
on_leave_revoke(const struct etcd_result *r, void *arg)
{
	struct cluster *cl = arg;

	cl->revoking = false;
	if (r->status != 0)
		cl_log(cl, LOG_WARNING, "cluster: revoking the lease failed "
		    "(%s): the node's names go when it expires",
		    etcd_strerror(r->status));
	cl->ops->left(cl->arg);
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

/* Our places in queues went with the lease: their connections hear
 * lost nodedown for the names, since nobody else will tell them. */
static void
lose_places(struct cluster *cl)
{
	for (size_t i = 0; i < cl->queues.cap; i++) {
		struct cl_queue *q = cl->queues.slots[i].item;
		struct cl_waiter *w, *next;

		if (q == NULL)
			continue;
		/* Removing the last place frees q: hold it with acquiring. */
		q->acquiring = true;
		for (w = TAILQ_FIRST(&q->waiters); w != NULL; w = next) {
			next = TAILQ_NEXT(w, by_queue);
			if (!cl_node_is_self(cl, w->node))
				continue;
			/* A hand-over in flight: its op tells (cl_lose). */
			if (w->peer != NULL && !w->acquiring)
				cl->ops->lost(cl->arg, w->peer->peer, q->name,
				    q->name_len, PR_DOWN_NODEDOWN);
			cl_waiter_remove(cl, w);
		}
		q->acquiring = false;
	}
	cl_queues_gc(cl);
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
		if (op->kind != OP_READ && op->kind != OP_DELETES) {
			/* A hand-over is the node's own write: nobody asked,
			 * nobody is answered, but its waiter must hear that
			 * the place (or the name, if etcd took the write)
			 * went with the lease. */
			if (op->kind != OP_ACQUIRE)
				cl_op_reply(op, PR_ERR_UNAVAILABLE, "this node "
				    "lost its lease in the cluster", NULL, false);
			else if (op->peer != NULL)
				cl->ops->lost(cl->arg, op->peer->peer, op->name,
				    op->name_len, PR_DOWN_NODEDOWN);
			if (op->peer != NULL) {
				LIST_REMOVE(op, by_peer);
				cl_peer_put(cl, op->peer);
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
			cl_entry_remove(cl, mine[i], PR_DOWN_NODEDOWN, true);
		free(mine);
	}
	lose_places(cl);
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
	if (r->status != 0) {
		/* The deadline decides; meanwhile try again soon, not a
		 * third of the TTL later: a few short outages in a row
		 * must not add up to a lost lease. */
		uint64_t period = (uint64_t)cl->ttl_s * 1000000 / 3;

		if (period > CL_RETRY_MS * 1000)
			cl->ka_sent_us = now_mono_us() - period +
			    CL_RETRY_MS * 1000;
		return;
	}
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
	if (cl->queues_dirty)
		cl_queues_kick(cl);
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
	cl->value_ok = cfg->value_ok;
	cl->hash = cfg->hash;
	cl->hash_arg = cfg->hash_arg;
	cl->state = CL_JOINING;
	LIST_INIT(&cl->nodes);
	LIST_INIT(&cl->pending);
	TAILQ_INIT(&cl->doomed);
	TAILQ_INIT(&cl->doomed_w);
	if (htab_init(&cl->names, 64) < 0 || htab_init(&cl->peers, 16) < 0 ||
	    htab_init(&cl->queues, 16) < 0) {
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
		cl_op_free(op);
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
	cl_queues_free(cl);
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
	if (cl->lease != 0 && etcd_lease_revoke(cl->etcd, cl->lease,
	    on_leave_revoke, cl) == 0)
		cl->revoking = true;
	cl_log(cl, LOG_INFO, "cluster: node %s leaves the cluster", cl->node);
}

bool
cluster_left(const struct cluster *cl)
{
	return cl->leaving && !cl->revoking;
}

int64_t
cluster_revision(const struct cluster *cl)
{
	return cl->rev;
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
