/*
 * dispatch_talk.c: the handlers of what passes between clients: send,
 * call and reply, await, and the event stream (subscribe, unsubscribe).
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
#include "utf8.h"

int
dispatch_send(struct call *k)
{
	struct server *s = k->s;
	const pr_value *payload;
	struct reg_target t;
	struct conn *owner;
	uint64_t gen;
	int r;

	struct pr_opt opts[] = { { .key = "gen", .type = PR_OPT_UINT } };

	if (args_target(&k->rq->args, &t) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	args_value(&k->rq->args, &payload);
	if (args_more(&k->rq->args) && (t.name == NULL ||
	    args_opts(&k->rq->args, opts, 1) != 0))
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map whose only key is \"gen\", a uint, and the "
		    "target a name");
	if ((r = dispatch_resolve(k, &t, &owner, &gen)) != 0)
		return r;
	if (opts[0].set && opts[0].u != gen)
		return dispatch_fail(k, PR_ERR_STALE, STALE);
	proto_out_reset(&s->push);
	if (proto_push_message(&s->push, &t, k->c->id, payload) < 0)
		return -ENOMEM;
	r = conn_write(owner, proto_out_data(&s->push),
	    proto_out_len(&s->push), true);
	if (r == PR_ERR_BUSY)
		return dispatch_fail(k, r, "the owner's outbound buffer is "
		    "full; nothing was queued");
	if (r < 0)
		return dispatch_fail(k, PR_ERR_BUSY, "the owner's connection "
		    "failed; nothing was queued");
	s->stats.messages++;
	return dispatch_reply_bool(k, true);
}

/* What dispatch_call hands calls_start to encode the push with. */
struct call_push {
	const struct reg_target	*target;
	uint64_t		 caller;
	const pr_value		*payload;
};

static int
encode_call(struct pr_out *o, uint64_t id, void *arg)
{
	struct call_push *cp = arg;

	return proto_push_call(o, id, cp->target, cp->caller, cp->payload);
}

int
dispatch_call(struct call *k)
{
	struct pr_args *a = &k->rq->args;
	uint64_t gen, timeout = PR_CALL_TIMEOUT_DEFAULT;
	struct call_push cp;
	struct reg_target t;
	struct conn *callee;
	int r;

	if (args_target(a, &t) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	args_value(a, &cp.payload);
	if (args_more(a) && (args_uint(a, &timeout) != 0 || timeout == 0 ||
	    timeout > PR_CALL_TIMEOUT_MAX))
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "timeout_ms must "
		    "be a uint from 1 to %u", PR_CALL_TIMEOUT_MAX);
	if ((r = dispatch_resolve(k, &t, &callee, &gen)) != 0)
		return r;
	/* A cluster name's gen is an etcd revision, not the registry's:
	 * the call follows its callee's connection alone. */
	if (k->cluster_target)
		gen = 0;
	cp.target = &t;
	cp.caller = k->c->id;
	r = calls_start(&k->s->calls, k->c, k->rq->msgid, callee, gen,
	    timeout, encode_call, &cp);
	if (r == CALLS_E_LIMIT)
		return dispatch_fail(k, dispatch_calls_err(r), "this "
		    "connection has %u calls pending, the limit",
		    calls_pending_of(&k->s->calls, k->c));
	if (r == CALLS_E_FULL)
		return dispatch_fail(k, dispatch_calls_err(r), "the callee's "
		    "outbound buffer is full; nothing was queued");
	if (r == CALLS_E_FAILED)
		return dispatch_fail(k, dispatch_calls_err(r), "the callee's "
		    "connection failed; nothing was queued");
	if (r != 0)
		return r;
	k->deferred = true;
	return 0;
}

int
dispatch_reply(struct call *k)
{
	struct pr_args *a = &k->rq->args;
	const char *code = NULL, *msg = NULL;
	const pr_value *result = NULL;
	size_t clen = 0, mlen = 0;
	uint64_t id;
	int r;

	if (args_uint(a, &id) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the call id must "
		    "be a uint");
	struct pr_args third = *a;

	third.i++;
	if (args_left(a) == 2 && !args_nil(&third)) {
		/* [call_id, nil, [code, message]] */
		if (!args_nil(a))
			return dispatch_fail(k, PR_ERR_BAD_REQUEST, "with an "
			    "error, the result must be nil");
		a->i++;
		if (args_error(a, &code, &clen, &msg, &mlen) != 0 ||
		    !utf8_valid(code, clen) || !utf8_valid(msg, mlen))
			return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the error "
			    "must be [code, message]: a str of 1 to %d bytes "
			    "and a str, both UTF-8", PR_CODE_MAX);
	} else
		args_value(a, &result);
	if ((r = calls_reply(&k->s->calls, k->c, id, result, code, clen, msg,
	    mlen)) != 0)
		return dispatch_fail(k, dispatch_calls_err(r), "no call with "
		    "this id is pending for this connection");
	return dispatch_reply_bool(k, true);
}

int
dispatch_await(struct call *k)
{
	uint64_t timeout = PR_CALL_TIMEOUT_DEFAULT;
	struct reg_name *n;
	const char *name;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args) && (args_uint(&k->rq->args, &timeout) !=
	    0 || timeout > PR_CALL_TIMEOUT_MAX))
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "timeout_ms must "
		    "be a uint from 0 to %u", PR_CALL_TIMEOUT_MAX);
	if ((n = registry_lookup(&k->s->reg, name, len)) != NULL)
		return dispatch_reply_entry(k, n);
	{
		const struct cl_entry *e = dispatch_cluster_lookup(k->s, name,
		    len);

		if (e != NULL)
			return dispatch_reply_cluster_entry(k, e);
	}
	if (timeout == 0)
		return dispatch_fail(k, PR_ERR_TIMEOUT, "the name was not "
		    "registered in time");
	r = calls_await(&k->s->calls, k->c, k->rq->msgid, name, len,
	    timeout);
	if (r == CALLS_E_LIMIT)
		return dispatch_fail(k, dispatch_calls_err(r), "this "
		    "connection has %u calls and awaits pending, the limit",
		    calls_pending_of(&k->s->calls, k->c));
	if (r != 0)
		return r;
	k->deferred = true;
	return 0;
}

/* Does a name of len bytes start with prefix? */
static bool
has_prefix(const char *name, size_t len, const char *prefix, size_t plen)
{
	return len >= plen && memcmp(name, prefix, plen) == 0;
}

/*
 * The snapshot of a subscription: the entries under the prefix, then
 * with groups the member entries of the groups under it, both in name
 * order.  Written as the "entries" value; PR_ERR_TOO_LARGE as soon as
 * it would not fit in max_message, so sizing it costs no more than
 * sending it.
 */
static int
put_snapshot(struct call *k, const char *prefix, size_t plen, bool groups)
{
	struct server *s = k->s;
	struct reg_member *mb;
	struct reg_group *g;
	struct reg_name *n;
	struct reg_iter it;
	/* What the response holds so far, the array's header (at most 5
	 * bytes) then the entries. */
	size_t count = 0, size = proto_out_len(&s->out) + 5;
	int r = 0;

	if (plen > PR_NAME_MAX)
		return proto_put_array(&s->out, 0);
	for (n = registry_seek(&s->reg, prefix, plen, false, &it); n != NULL &&
	    has_prefix(n->data, n->name_len, prefix, plen);
	    n = registry_next(&s->reg, &it)) {
		size += proto_entry_size(n);
		if (dispatch_too_large(s, size - 5 + proto_array_size(++count)))
			goto too_large;
	}
	for (g = groups ? registry_group_seek(&s->reg, prefix, plen, &it) :
	    NULL; g != NULL && has_prefix(g->name, g->name_len, prefix, plen);
	    g = registry_group_next(&s->reg, &it)) {
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			s->work++;
			size += proto_member_size(mb);
			if (dispatch_too_large(s, size - 5 +
			    proto_array_size(++count)))
				goto too_large;
		}
	}
	if (proto_put_array(&s->out, (uint32_t)count) < 0)
		return -ENOMEM;
	for (n = registry_seek(&s->reg, prefix, plen, false, &it); r == 0 &&
	    n != NULL && has_prefix(n->data, n->name_len, prefix, plen);
	    n = registry_next(&s->reg, &it))
		r = proto_put_entry(&s->out, n);
	for (g = groups ? registry_group_seek(&s->reg, prefix, plen, &it) :
	    NULL; r == 0 && g != NULL &&
	    has_prefix(g->name, g->name_len, prefix, plen);
	    g = registry_group_next(&s->reg, &it)) {
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			if ((r = proto_put_member(&s->out, mb)) != 0)
				break;
		}
	}
	return r;
too_large:
	return dispatch_fail(k, PR_ERR_TOO_LARGE, "the names%s under the "
	    "prefix do not fit in max_message", groups ? " and groups" : "");
}

/* Subscribe's response: {"sub", "seq"[, "gap"][, "entries"]}. */
static int
subscribe_reply(struct call *k, struct subs *ss, uint64_t id,
    const char *prefix, size_t plen, bool groups, bool since, bool resumable)
{
	struct server *s = k->s;

	if (proto_reply_begin(&s->out, k->rq->msgid) < 0)
		return -ENOMEM;
	if (proto_put_map(&s->out, since ? (resumable ? 3 : 4) : 3) < 0 ||
	    proto_put_str(&s->out, "sub", 3) < 0 ||
	    proto_put_uint(&s->out, id) < 0 ||
	    proto_put_str(&s->out, "seq", 3) < 0 ||
	    proto_put_uint(&s->out, subs_seq(ss)) < 0)
		return -ENOMEM;
	if (since && (proto_put_str(&s->out, "gap", 3) < 0 ||
	    proto_put_bool(&s->out, !resumable) < 0))
		return -ENOMEM;
	if (resumable)
		return 0;
	if (proto_put_str(&s->out, "entries", 7) < 0)
		return -ENOMEM;
	if (ss != &s->subs)
		return dispatch_cluster_snapshot(k, prefix, plen);
	return put_snapshot(k, prefix, plen, groups);
}

int
dispatch_subscribe(struct call *k)
{
	struct server *s = k->s;
	struct pr_opt opts[] = {
		{ .key = "groups", .type = PR_OPT_BOOL },
		{ .key = "since", .type = PR_OPT_UINT },
		{ .key = "scope", .type = PR_OPT_STR },
	};
	enum dispatch_scope scope = SCOPE_LOCAL;
	struct subs *ss = &s->subs;
	const char *prefix;
	bool resumable = false, groups;
	struct sub *sb;
	uint32_t nsubs;
	uint64_t id;
	size_t plen;
	int r;

	if (args_str(&k->rq->args, SIZE_MAX, &prefix, &plen) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the prefix must "
		    "be a str");
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 3) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map of \"groups\", a bool, \"since\", a uint, and "
		    "\"scope\", a str");
	if ((r = dispatch_scope(k, &opts[2], SCOPES(SCOPE_LOCAL,
	    SCOPE_CLUSTER), &scope)) != 0)
		return r;
	groups = opts[0].set && opts[0].b;
	if (scope == SCOPE_CLUSTER) {
		if (s->cluster == NULL)
			return dispatch_fail(k, PR_ERR_UNAVAILABLE, "this daemon "
			    "is not in a cluster (it runs without --etcd)");
		if (groups)
			return dispatch_fail(k, PR_ERR_BAD_REQUEST, "groups are "
			    "local in this version: no \"groups\" with scope "
			    "cluster");
		ss = &s->csubs;
		/* The stream is complete up to what the cache has seen. */
		subs_advance(ss, (uint64_t)cluster_revision(s->cluster));
	}
	if (opts[1].set && opts[1].u > subs_seq(ss))
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "since is later "
		    "than the last event");
	nsubs = subs_count_of(&s->subs, k->c) + (s->cluster != NULL ?
	    subs_count_of(&s->csubs, k->c) : 0);
	if (!registry_monitor_room(&s->reg, k->c->rc, nsubs))
		return dispatch_fail(k, PR_ERR_LIMIT, "this connection holds "
		    "%u monitors and subscriptions, the limit",
		    k->c->rc->nmonitors + nsubs);
	/*
	 * The subscription first, for its id; undone when the response (a
	 * snapshot may not fit) cannot be built.  The loop is
	 * single-threaded: no event comes in between.
	 */
	r = subs_start(ss, k->c, prefix, plen, groups,
	    opts[1].set ? &opts[1].u : NULL, &resumable, &id, &sb);
	if (r > 0)
		return dispatch_fail(k, dispatch_subs_err(r), "since is later "
		    "than the last event");
	if (r != 0)
		return r;
	if ((r = subscribe_reply(k, ss, id, prefix, plen, groups,
	    opts[1].set, resumable)) != 0) {
		subs_abort(ss, sb);
		return r;
	}
	if (resumable) {
		k->replay = sb;
		k->replay_since = opts[1].u;
	}
	return 0;
}

int
dispatch_unsubscribe(struct call *k)
{
	uint64_t id;

	if (args_uint(&k->rq->args, &id) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the sub must be a "
		    "uint");
	if (id > SERVER_CLUSTER_SUB_BASE && k->s->cluster != NULL)
		return dispatch_reply_bool(k, subs_stop(&k->s->csubs, k->c,
		    id));
	return dispatch_reply_bool(k, subs_stop(&k->s->subs, k->c, id));
}
