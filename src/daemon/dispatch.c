/*
 * dispatch.c: request handling: the table of handlers, one per protocol
 * method (dispatch_<method>, in dispatch_names.c, dispatch_groups.c and
 * dispatch_talk.c), the batch and request hooks the connection layer
 * calls, the registry's down and event hooks, and what the handlers share.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cluster.h"
#include "conn.h"
#include "dispatch.h"
#include "dispatch_impl.h"
#include "policy.h"
#include "server.h"
#include "now.h"
#include "utf8.h"

int
dispatch_fail(struct call *k, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(k->why, sizeof(k->why), fmt, ap);
	va_end(ap);
	return err;
}

static int
dispatch_hello(struct call *k)
{
	struct pr_hello h;
	const char *label;
	size_t len;

	if (args_more(&k->rq->args)) {
		if (args_str(&k->rq->args, PR_NAME_MAX, &label, &len) != 0 ||
		    !utf8_valid(label, len))
			return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the label "
			    "must be a str of at most 255 bytes of UTF-8");
		conn_set_label(k->c, label, len);
	}
	h.conn = k->c->id;
	h.boot = k->s->boot;
	h.max_message = k->s->cfg.max_message;
	h.node = k->s->cluster != NULL ? cluster_node(k->s->cluster) : NULL;
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_hello(&k->s->out, &h) < 0)
		return -ENOMEM;
	return 0;
}

enum pr_err
dispatch_reg_err(int e)
{
	switch (e) {
	case REG_E_TAKEN:
		return PR_ERR_TAKEN;
	case REG_E_DUPLICATE:
		return PR_ERR_BAD_REQUEST;	/* the request's own fault */
	case REG_E_LIMIT:
	case REG_E_LIMIT_UID:
		return PR_ERR_LIMIT;
	case REG_E_TOO_LARGE:
		return PR_ERR_TOO_LARGE;
	case REG_E_NOT_FOUND:
		return PR_ERR_NOT_FOUND;
	case REG_E_NOT_OWNER:
		return PR_ERR_NOT_OWNER;
	case REG_E_STALE:
	default:
		return PR_ERR_STALE;
	}
}

enum pr_err
dispatch_calls_err(int e)
{
	switch (e) {
	case CALLS_E_LIMIT:
		return PR_ERR_LIMIT;
	case CALLS_E_FULL:
	case CALLS_E_FAILED:
		return PR_ERR_BUSY;	/* as for send: nothing was queued */
	case CALLS_E_NOT_FOUND:
	default:
		return PR_ERR_NOT_FOUND;
	}
}

enum pr_err
dispatch_subs_err(int e)
{
	(void)e;	/* SUBS_E_FUTURE: the request asks the impossible */
	return PR_ERR_BAD_REQUEST;
}

/* Reply with an entry. */
int
dispatch_reply_entry(struct call *k, const struct reg_name *n)
{
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    (n ? proto_put_entry(&k->s->out, n) :
	    proto_put_nil(&k->s->out)) < 0)
		return -ENOMEM;
	return 0;
}

int
dispatch_reply_bool(struct call *k, bool b)
{
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_bool(&k->s->out, b) < 0)
		return -ENOMEM;
	return 0;
}

/* The msgpack bytes to store for a value param (in s->scratch). */
int
dispatch_stored_value(struct call *k, const pr_value *v, const char **val,
    size_t *vlen)
{
	proto_out_reset(&k->s->scratch);
	if (proto_encode_value(&k->s->scratch, v) < 0)
		return -ENOMEM;
	*val = proto_out_data(&k->s->scratch);
	*vlen = proto_out_len(&k->s->scratch);
	return 0;
}

/* The connection a target names, and the registration's gen (0 when the
 * target is a conn id). */
int
dispatch_resolve(struct call *k, const struct reg_target *t, struct conn **to,
    uint64_t *gen)
{
	struct reg_client *rc;
	struct reg_name *n;

	if (t->name == NULL) {
		if ((rc = registry_client_find(&k->s->reg, t->conn)) == NULL)
			return dispatch_fail(k, PR_ERR_NOT_FOUND, "no such "
			    "connection is open");
		*to = rc->conn;
		*gen = 0;
		return 0;
	}
	if ((n = registry_lookup(&k->s->reg, t->name, t->len)) == NULL) {
		const struct cl_entry *e = dispatch_cluster_lookup(k->s,
		    t->name, t->len);

		if (e == NULL)
			return dispatch_fail(k, PR_ERR_NOT_FOUND, "the name is "
			    "not registered");
		if ((*to = cluster_entry_peer(e)) == NULL)
			return dispatch_fail(k, PR_ERR_UNAVAILABLE, "the name "
			    "is owned on node %s; messages between nodes are "
			    "not built yet", e->node->name);
		*gen = (uint64_t)e->gen;
		k->cluster_target = true;
		return 0;
	}
	*to = n->owner->conn;
	*gen = n->gen;
	return 0;
}

/* Would a response of this many bytes be larger than max_message? */
bool
dispatch_too_large(const struct server *s, size_t bytes)
{
	return bytes > s->cfg.max_message;
}

static int
dispatch_stats(struct call *k)
{
	struct server *s = k->s;
	struct pr_stats st = {
		.connections = s->conns.nconns - s->conns.ndraining,
		.names = s->reg.nnames,
		.monitors = s->reg.nmonitors,
		.requests = s->stats.requests,
		.messages = s->stats.messages,
		.downs = s->stats.downs,
		.notifications_ignored = s->stats.notifications_ignored,
		.connections_total = s->conns.opened,
		.uptime_ms = now_mono_ms() - s->start_mono_ms,
		.groups = s->reg.ngroups,
		.members = s->reg.nmembers,
		.calls = s->calls.pending,
		.awaits = s->calls.nawaits,
		.subscriptions = s->subs.nsubs,
		.seq = subs_seq(&s->subs),
		.replies_late = s->calls.replies_late,
		.draining = s->conns.ndraining,
	};
	struct cluster_stats cs;

	if (s->cluster != NULL) {
		cluster_stats(s->cluster, &cs);
		st.cluster = &cs;
		st.node = cluster_node(s->cluster);
		st.lease_ttl = s->cfg.lease_ttl;
	}

	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_stats(&s->out, &st) < 0)
		return -ENOMEM;
	return 0;
}

/* One handler per row of PR_METHODS: a row without its dispatch_<name>
 * does not compile, so no request can reach a NULL handler. */
static handler_fn *const handlers[PR_M__COUNT] = {
#define H(id, name, lo, hi, fl)	[PR_M_##id] = dispatch_##name,
	PR_METHODS(H)
#undef H
};

/* Queue a down notification for a holder. */
static void
notify_down(struct server *s, struct conn *holder, uint64_t ref,
    const struct reg_target *t, enum pr_down_reason why)
{
	proto_out_reset(&s->push);
	if (proto_push_down(&s->push, ref, t, why) < 0) {
		conn_out_of_memory(holder);
		return;
	}
	/* Unbounded: a down is never dropped; the monitor limit bounds it. */
	if (conn_write(holder, proto_out_data(&s->push),
	    proto_out_len(&s->push), false) == 0)
		s->stats.downs++;
}

void
dispatch_down(void *arg, struct reg_client *holder, uint64_t ref,
    const struct reg_target *target, enum pr_down_reason why)
{
	struct server *s = arg;

	/* Stopping: every client has been told; its names did not go
	 * down, the daemon did. */
	if (s->stopping)
		return;
	/* A closed holder's monitors were dropped with it: a holder is
	 * always open, but a down is never written to a closed one. */
	if (holder->conn != NULL)
		notify_down(s, holder->conn, ref, target, why);
}

void
dispatch_event(void *arg, const struct reg_event *ev)
{
	struct server *s = arg;
	struct conn *c;

	/* Stopping: "shutdown" was everyone's last word, and names that go
	 * with the daemon are not changes anyone should hear of. */
	if (s->stopping)
		return;
	subs_event(&s->subs, ev);
	if (ev->kind == REG_EV_REGISTERED)
		calls_registered(&s->calls, ev->name);
	if (ev->kind != REG_EV_HANDOVER || s->stopping)
		return;
	/* Never dropped, like a down: bounded by the names it concerns. */
	if (ev->acquired && (c = ev->name->owner->conn) != NULL) {
		proto_out_reset(&s->push);
		if (proto_push_acquired(&s->push, ev->name) < 0)
			conn_out_of_memory(c);
		else
			conn_write(c, proto_out_data(&s->push),
			    proto_out_len(&s->push), false);
	}
	if (ev->why == PR_DOWN_REPLACED && (c = ev->prev->conn) != NULL) {
		proto_out_reset(&s->push);
		if (proto_push_lost(&s->push, ev->name->data,
		    ev->name->name_len, ev->why) < 0)
			conn_out_of_memory(c);
		else
			conn_write(c, proto_out_data(&s->push),
			    proto_out_len(&s->push), false);
	}
}

void
dispatch_error_notify(struct server *s, struct conn *c, enum pr_err e,
    const char *msg)
{
	proto_out_reset(&s->push);
	if (proto_push_error(&s->push, e, msg) == 0)
		conn_write(c, proto_out_data(&s->push),
		    proto_out_len(&s->push), false);
}

static void
dispatch_object(struct server *s, struct conn *c, const pr_value *obj,
    const struct pr_peek *hint)
{
	struct pr_request rq;
	struct call k;
	uint64_t t0 = 0;
	int r;

	memset(&k, 0, sizeof(k));
	k.s = s;
	k.c = c;
	k.rq = &rq;
	proto_parse(obj, hint, &rq);
	switch (rq.kind) {
	case PR_KIND_NOTIFY:
		s->stats.notifications_ignored++;
		return;
	case PR_KIND_BAD_OBJECT:
		dispatch_error_notify(s, c, rq.err, rq.why);
		return;
	case PR_KIND_BAD_REQUEST:
		s->metrics.bad_requests++;
		s->metrics.errors[rq.err]++;
		proto_out_reset(&s->out);
		r = proto_reply_error(&s->out, rq.msgid, rq.err, "%s", rq.why);
		break;
	case PR_KIND_REQUEST:
	default:
		if (metrics_sample(&s->metrics))
			t0 = now_mono_ns();
		proto_out_reset(&s->out);
		r = handlers[rq.method](&k);
		s->work += s->reg.walked + 1;
		s->reg.walked = 0;
		if (r == 0 && k.deferred) {
			s->stats.requests++;
			metrics_request(&s->metrics, rq.method, PR_OK);
			if (t0 != 0)
				metrics_latency(&s->metrics, rq.method,
				    now_mono_ns() - t0);
			return;		/* answered when the call ends */
		}
		metrics_request(&s->metrics, rq.method, r > 0 ? (enum pr_err)r :
		    r < 0 ? PR_ERR_LIMIT : PR_OK);
		if (r > 0) {
			proto_out_reset(&s->out);
			r = proto_reply_error(&s->out, rq.msgid, r, "%s",
			    k.why);
		} else if (r < 0) {
			proto_out_reset(&s->out);
			r = proto_reply_error(&s->out, rq.msgid, PR_ERR_LIMIT,
			    "the daemon is out of memory");
		}
		break;
	}
	s->stats.requests++;
	if (r < 0) {
		conn_out_of_memory(c);
		return;
	}
	r = conn_write(c, proto_out_data(&s->out), proto_out_len(&s->out),
	    false);
	if (t0 != 0)
		metrics_latency(&s->metrics, rq.method, now_mono_ns() - t0);
	if (r != 0)
		return;		/* conn_write closed it */
	if (k.noproc)
		notify_down(s, c, k.noproc_ref, &k.noproc_target,
		    PR_DOWN_NOPROC);
	if (k.replay != NULL) {
		/* A resume walks the history: charged to the turn. */
		s->work += subs_replay(k.replay->id > SERVER_CLUSTER_SUB_BASE &&
		    s->cluster != NULL ? &s->csubs : &s->subs, k.replay,
		    k.replay_since);
	}
}

void
dispatch_batch(void *arg, struct conn *c, const char *p, size_t off,
    const size_t *ends, size_t n)
{
	struct server *s = arg;
	struct server_batch *b = &s->batch;
	size_t i;

	(void)c;
	/*
	 * Hash the names the requests look up and hint the caches about
	 * their slots, then (when the slots had time to arrive) about the
	 * entries: at a million names each lookup otherwise waits for
	 * memory twice, one request after the other.
	 */
	b->n = n < CONN_BATCH ? n : CONN_BATCH;
	for (i = 0; i < b->n; i++) {
		size_t start = i == 0 ? off : ends[i - 1];
		struct pr_peek *pk = &b->peeks[i];

		b->hashes[i] = 0;
		if (proto_peek((const uint8_t *)p + start, ends[i] - start,
		    pk)) {
			b->hashes[i] = registry_hash(&s->reg, pk->name,
			    pk->nlen);
			registry_prefetch(&s->reg, b->hashes[i], pk->nlen, 0);
		} else
			pk->name = NULL;
	}
	for (i = 0; i < b->n && b->n > 1; i++) {
		if (b->peeks[i].name != NULL)
			registry_prefetch(&s->reg, b->hashes[i],
			    b->peeks[i].nlen, 1);
	}
}

int
dispatch_request(void *arg, struct conn *c, size_t i, const char *p,
    size_t len, uint64_t *work)
{
	struct server *s = arg;
	struct server_batch *b = &s->batch;
	const pr_value *obj;
	int r;

	s->work = 0;
	r = proto_decode(&s->dec, p, len, &obj);
	/* The lookups of this request find its name's hash computed. */
	if (i < b->n && b->peeks[i].name != NULL)
		registry_hint(&s->reg, b->peeks[i].name, b->peeks[i].nlen,
		    b->hashes[i]);
	if (r == 0)
		dispatch_object(s, c, obj, i < b->n ? &b->peeks[i] : NULL);
	registry_hint(&s->reg, NULL, 0, 0);
	proto_decoded(&s->dec);
	*work = s->work;
	return r;
}
