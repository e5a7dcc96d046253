/*
 * dispatch_cluster.c: where requests meet the cluster (src/cluster): the
 * scope option, cluster register, unregister, whereis, monitor, list and
 * nodes, and the hooks through which the cluster's deferred answers,
 * downs and losses reach connections.
 *
 * The namespace rule (PROTOCOL.md §12): a lookup without a scope finds the
 * local name first, then the cluster name.  A node never creates a shadow
 * itself: a local register of a name its cache knows in the cluster is
 * taken, and so is a cluster register of a name registered here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <event2/event.h>

#include "args.h"
#include "cluster.h"
#include "conn.h"
#include "dispatch.h"
#include "dispatch_impl.h"
#include "policy.h"
#include "server.h"

#define NOT_CLUSTERED	"this daemon is not in a cluster (it runs without " \
			"--etcd)"

int
dispatch_scope(struct call *k, const struct pr_opt *o, unsigned allowed,
    enum dispatch_scope *out)
{
	static const struct {
		const char		*s;
		enum dispatch_scope	 v;
	} names[] = {
		{ "any", SCOPE_ANY }, { "local", SCOPE_LOCAL },
		{ "cluster", SCOPE_CLUSTER }, { "all", SCOPE_ALL },
	};

	if (!o->set)
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i].s) == o->len &&
		    memcmp(names[i].s, o->s, o->len) == 0 &&
		    (allowed & (1u << names[i].v))) {
			*out = names[i].v;
			return 0;
		}
	}
	return dispatch_fail(k, PR_ERR_BAD_REQUEST, "scope must be one of %s",
	    allowed == (1u << SCOPE_LOCAL | 1u << SCOPE_CLUSTER) ?
	    "\"local\" and \"cluster\"" : allowed == (1u << SCOPE_LOCAL |
	    1u << SCOPE_CLUSTER | 1u << SCOPE_ALL) ? "\"local\", \"cluster\" "
	    "and \"all\"" : "\"any\", \"local\" and \"cluster\"");
}

const struct cl_entry *
dispatch_cluster_lookup(struct server *s, const char *name, size_t len)
{
	return s->cluster != NULL ? cluster_lookup(s->cluster, name, len) :
	    NULL;
}

int
dispatch_reply_cluster_entry(struct call *k, const struct cl_entry *e)
{
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_cluster_entry(&k->s->out, e,
	    cluster_stale(k->s->cluster)) < 0)
		return -ENOMEM;
	return 0;
}

int
dispatch_cluster_register(struct call *k, const char *name, size_t len,
    const char *val, size_t vlen, bool queue)
{
	struct server *s = k->s;
	struct reg_client *rc = k->c->rc;
	struct reg_name *n;
	struct cl_owner o;
	int r;

	if (s->cluster == NULL)
		return dispatch_fail(k, PR_ERR_UNAVAILABLE, NOT_CLUSTERED);
	if ((n = registry_lookup(&s->reg, name, len)) != NULL)
		return dispatch_fail(k, PR_ERR_TAKEN, "the name is registered "
		    "on this node by conn %llu (scope local)",
		    (unsigned long long)n->owner->id);
	if (rc->nnames + rc->nwaits + cluster_names_of(s->cluster, k->c) >=
	    s->cfg.max_names)
		return dispatch_fail(k, PR_ERR_LIMIT, "this connection holds "
		    "%u names, %u cluster names and %u places in queues, the "
		    "limit", rc->nnames, cluster_names_of(s->cluster, k->c),
		    rc->nwaits);
	o.peer = k->c;
	o.conn = rc->id;
	o.pid = rc->pid;
	o.uid = rc->uid;
	o.gid = rc->gid;
	if ((r = cluster_register(s->cluster, &o, k->rq->msgid, name, len,
	    val, vlen, queue, k->why, sizeof(k->why))) != 0)
		return r;
	k->deferred = true;
	return 0;
}

int
dispatch_cluster_unregister(struct call *k, const char *name, size_t len,
    const uint64_t *gen)
{
	int r;

	if ((r = cluster_unregister(k->s->cluster, k->c, k->rq->msgid, name,
	    len, gen != NULL ? (int64_t)*gen : 0, k->why,
	    sizeof(k->why))) != 0)
		return r;
	k->deferred = true;
	return 0;
}

int
dispatch_cluster_update(struct call *k, const char *name, size_t len,
    const char *val, size_t vlen, const uint64_t *gen)
{
	int r;

	if (vlen > k->s->cfg.max_message)
		return dispatch_fail(k, PR_ERR_TOO_LARGE, "the value is too "
		    "large");
	if ((r = cluster_update(k->s->cluster, k->c, k->rq->msgid, name, len,
	    val, vlen, gen != NULL ? (int64_t)*gen : 0, k->why,
	    sizeof(k->why))) != 0)
		return r;
	k->deferred = true;
	return 0;
}

int
dispatch_cluster_evict(struct call *k, const char *name, size_t len)
{
	int r;

	if ((r = cluster_evict(k->s->cluster, k->c, k->rq->msgid, name, len,
	    k->why, sizeof(k->why))) != 0)
		return r;
	k->s->metrics.evictions++;
	k->deferred = true;
	return 0;
}

/* A cluster name's line: {"node", "conn"} maps, since a connection id
 * alone names nothing across nodes. */
int
dispatch_cluster_queue(struct call *k, const char *name, size_t len)
{
	const struct cl_waiter **w;
	struct server *s = k->s;
	size_t n;
	int r = 0;

	if ((w = calloc(PR_LIST_MAX, sizeof(*w))) == NULL)
		return -ENOMEM;
	n = cluster_queue(s->cluster, name, len, w, PR_LIST_MAX);
	s->work += n;
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, (uint32_t)n) < 0)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		uint64_t conn;
		const char *node = cluster_waiter_node(w[i], &conn);

		if (proto_put_map(&s->out, 2) < 0 ||
		    proto_put_str(&s->out, "node", 4) < 0 ||
		    proto_put_str(&s->out, node, strlen(node)) < 0 ||
		    proto_put_str(&s->out, "conn", 4) < 0 ||
		    proto_put_uint(&s->out, conn) < 0)
			r = -ENOMEM;
	}
	free(w);
	return r;
}

int
dispatch_cluster_snapshot(struct call *k, const char *prefix, size_t plen)
{
	struct server *s = k->s;
	const struct cl_entry **e = NULL;
	size_t n = 0, size = proto_out_len(&s->out) + 5;
	struct cluster_stats st;
	int r = 0;

	cluster_stats(s->cluster, &st);
	if (plen <= PR_NAME_MAX && st.names > 0) {
		if ((e = calloc(st.names, sizeof(*e))) == NULL)
			return -ENOMEM;
		n = cluster_list(s->cluster, prefix, plen, NULL, 0, e,
		    st.names);
	}
	s->work += n + 1;
	for (size_t i = 0; i < n; i++) {
		size += proto_cluster_entry_size(e[i]);
		if (dispatch_too_large(s, size - 5 + proto_array_size(i + 1))) {
			free(e);
			return dispatch_fail(k, PR_ERR_TOO_LARGE, "the cluster "
			    "names under the prefix do not fit in max_message");
		}
	}
	if (proto_put_array(&s->out, (uint32_t)n) < 0)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		if (proto_put_cluster_entry(&s->out, e[i], false) < 0)
			r = -ENOMEM;
	free(e);
	return r;
}

int
dispatch_cluster_whereis(struct call *k, const char *name, size_t len,
    enum dispatch_scope scope, bool consistent)
{
	struct server *s = k->s;
	struct reg_name *n = NULL;
	int r;

	if (scope != SCOPE_CLUSTER &&
	    (n = registry_lookup(&s->reg, name, len)) != NULL)
		return dispatch_reply_entry(k, n);
	if (scope == SCOPE_LOCAL)
		return dispatch_reply_entry(k, NULL);
	if (s->cluster == NULL) {
		if (scope == SCOPE_CLUSTER || consistent)
			return dispatch_fail(k, PR_ERR_UNAVAILABLE,
			    NOT_CLUSTERED);
		return dispatch_reply_entry(k, NULL);
	}
	if (consistent) {
		if ((r = cluster_read(s->cluster, k->c, k->rq->msgid, name,
		    len, k->why, sizeof(k->why))) != 0)
			return r;
		k->deferred = true;
		return 0;
	}
	{
		const struct cl_entry *e = cluster_lookup(s->cluster, name,
		    len);

		if (e == NULL)
			return dispatch_reply_entry(k, NULL);
		return dispatch_reply_cluster_entry(k, e);
	}
}

int
dispatch_cluster_monitor(struct call *k, const char *name, size_t len,
    uint32_t nsubs, uint64_t *ref)
{
	struct server *s = k->s;
	struct reg_client *rc = k->c->rc;
	uint32_t held = rc->nmonitors + nsubs +
	    cluster_monitors_of(s->cluster, k->c);
	int r;

	if (held >= s->cfg.max_monitors)
		return dispatch_fail(k, PR_ERR_LIMIT, "this connection holds "
		    "%u monitors and subscriptions, the limit", held);
	/* Refs come from the one counter, so they never collide with the
	 * registry's monitors of the same connection. */
	*ref = rc->next_ref++;
	r = cluster_monitor(s->cluster, k->c, rc->id, *ref, name, len);
	return r == -ENOMEM ? -ENOMEM : 0;
}

bool
dispatch_cluster_demonitor(struct call *k, uint64_t ref)
{
	return k->s->cluster != NULL &&
	    cluster_demonitor(k->s->cluster, k->c, ref);
}

int
dispatch_nodes(struct call *k)
{
	const struct cl_node **nodes;
	struct server *s = k->s;
	size_t n;
	int r = 0;

	if (s->cluster == NULL)
		return dispatch_fail(k, PR_ERR_UNAVAILABLE, NOT_CLUSTERED);
	if ((nodes = calloc(PR_LIST_MAX, sizeof(*nodes))) == NULL)
		return -ENOMEM;
	n = cluster_nodes(s->cluster, nodes, PR_LIST_MAX);
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, (uint32_t)n) < 0)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		if (proto_put_node(&s->out, nodes[i], strcmp(nodes[i]->name,
		    cluster_node(s->cluster)) == 0) < 0)
			r = -ENOMEM;
	free(nodes);
	return r;
}

/* ------------------------------------------------------------------ */
/* The cluster's hooks.                                                 */

static void
cl_reply(void *arg, void *peer, uint32_t msgid, int err, const char *why,
    const struct cl_entry *e, bool is_bool, uint64_t queued)
{
	struct server *s = arg;
	struct conn *c = peer;
	struct pr_out *o = &s->push;
	int r;

	proto_out_reset(o);
	if (err != 0)
		r = proto_reply_error(o, msgid, (enum pr_err)err, "%s", why);
	else if (is_bool)
		r = proto_reply_begin(o, msgid) < 0 ? -1 :
		    proto_put_bool(o, true);
	else if (queued > 0)
		r = proto_reply_begin(o, msgid) < 0 ||
		    proto_put_map(o, 1) < 0 ||
		    proto_put_str(o, "queued", 6) < 0 ? -1 :
		    proto_put_uint(o, queued);
	else
		r = proto_reply_begin(o, msgid) < 0 ? -1 : e != NULL ?
		    proto_put_cluster_entry(o, e, cluster_stale(s->cluster)) :
		    proto_put_nil(o);
	if (r < 0) {
		conn_out_of_memory(c);
		return;
	}
	conn_write(c, proto_out_data(o), proto_out_len(o), false);
}

static void
cl_down(void *arg, void *peer, uint64_t ref, const char *name, size_t len,
    enum pr_down_reason why)
{
	struct server *s = arg;
	struct reg_target t = { .name = name, .len = len };

	if (s->stopping)
		return;
	proto_out_reset(&s->push);
	if (proto_push_down(&s->push, ref, &t, why) < 0) {
		conn_out_of_memory(peer);
		return;
	}
	if (conn_write(peer, proto_out_data(&s->push),
	    proto_out_len(&s->push), false) == 0)
		s->stats.downs++;
}

static void
cl_lost(void *arg, void *peer, const char *name, size_t len,
    enum pr_down_reason why)
{
	struct server *s = arg;

	if (s->stopping)
		return;
	proto_out_reset(&s->push);
	if (proto_push_lost(&s->push, name, len, why) < 0) {
		conn_out_of_memory(peer);
		return;
	}
	conn_write(peer, proto_out_data(&s->push), proto_out_len(&s->push),
	    false);
}

static int
encode_cluster_entry(struct pr_out *o, const void *arg)
{
	/* Awaits are answered the moment the entry arrives: fresh. */
	return proto_put_cluster_entry(o, arg, false);
}

static void
cl_registered(void *arg, const struct cl_entry *e)
{
	struct server *s = arg;

	/* A local name of the same name answered its awaits already. */
	if (registry_lookup(&s->reg, e->data, e->name_len) == NULL)
		calls_registered_as(&s->calls, e->data, e->name_len,
		    encode_cluster_entry, e);
}

static void
cl_acquired(void *arg, void *peer, const struct cl_entry *e)
{
	struct server *s = arg;

	proto_out_reset(&s->push);
	if (proto_push_acquired_cluster(&s->push, e) < 0) {
		conn_out_of_memory(peer);
		return;
	}
	/* Never dropped: the connection must learn that it owns it. */
	conn_write(peer, proto_out_data(&s->push), proto_out_len(&s->push),
	    false);
}

static void
cl_log(void *arg, int prio, const char *msg)
{
	struct server *s = arg;

	log_msg(&s->log, prio <= LOG_ERR ? LOG_LVL_ERR : prio == LOG_WARNING ?
	    LOG_LVL_WARN : prio == LOG_DEBUG ? LOG_LVL_DEBUG : LOG_LVL_INFO,
	    "%s", msg);
}

static void
cl_fatal(void *arg, const char *msg)
{
	struct server *s = arg;

	log_err(&s->log, "%s", msg);
	s->failed = true;
	event_base_loopexit(s->base, NULL);
}

struct cl_gone {
	const struct cl_view	*v;
	enum pr_down_reason	 why;
};

static int
encode_view(struct pr_out *o, const void *arg)
{
	return proto_put_cluster_view(o, arg, false);
}

static int
encode_gone(struct pr_out *o, const void *arg)
{
	const struct cl_gone *g = arg;

	return proto_put_name_reason(o, g->v->name, g->v->name_len, g->why);
}

/* The cluster's event stream: seq is the etcd revision. */
static void
cl_changed(void *arg, int64_t rev, enum cl_change kind,
    const struct cl_view *v, enum pr_down_reason why)
{
	struct server *s = arg;
	struct cl_gone g = { v, why };

	if (s->stopping)
		return;
	if (kind == CL_UNREGISTERED)
		subs_event_as(&s->csubs, (uint64_t)rev, REG_EV_UNREGISTERED,
		    v->name, v->name_len, encode_gone, &g);
	else
		subs_event_as(&s->csubs, (uint64_t)rev, kind == CL_REGISTERED ?
		    REG_EV_REGISTERED : REG_EV_UPDATED, v->name, v->name_len,
		    encode_view, v);
}

static void
cl_synced(void *arg, int64_t rev, bool again)
{
	struct server *s = arg;

	/* A re-read follows a gap (compaction, a lost lease): the live
	 * subscriptions end as a slow one's would, and resume from their
	 * last event with a fresh snapshot (gap true). */
	if (again)
		subs_end_all(&s->csubs, subs_seq(&s->csubs));
	subs_floor(&s->csubs, (uint64_t)rev);
}

static void
cl_left(void *arg)
{
	struct server *s = arg;

	/* The stop waits for this: look again. */
	event_active(s->ev_flush, EV_TIMEOUT, 0);
}

const struct cluster_ops dispatch_cluster_ops = {
	.reply = cl_reply,
	.down = cl_down,
	.lost = cl_lost,
	.registered = cl_registered,
	.acquired = cl_acquired,
	.log = cl_log,
	.fatal = cl_fatal,
	.left = cl_left,
	.changed = cl_changed,
	.synced = cl_synced,
};
