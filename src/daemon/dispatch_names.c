/*
 * dispatch.c: request handlers, one per protocol method, in a table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "conn.h"
#include "dispatch.h"
#include "policy.h"
#include "server.h"
#include "util.h"

/* One request being handled. */
struct call {
	struct server		*s;
	struct conn		*c;
	struct pr_request	*rq;
	char			 why[160];	/* message of an error reply */
	bool			 noproc;	/* owe a noproc down after */
	bool			 deferred;	/* answered later (call) */
	uint64_t		 noproc_ref;
	struct reg_target	 noproc_target;
	struct sub		*replay;	/* events to send after */
	uint64_t		 replay_since;
};

/*
 * A handler writes its whole reply into s->out and returns 0, or returns
 * a positive pr_err with c->why set (the dispatcher writes the error), or
 * -ENOMEM.
 */
typedef int	handler_fn(struct call *);

#define BAD_NAME	"the name must be a str of 1 to 255 bytes of UTF-8 " \
			"without NUL"
#define BAD_GROUP	"the group must be a str of 1 to 255 bytes of UTF-8 " \
			"without NUL"

static int
fail(struct call *k, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct call *k, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(k->why, sizeof(k->why), fmt, ap);
	va_end(ap);
	return err;
}

static int
h_hello(struct call *k)
{
	struct pr_hello h;
	const char *label;
	size_t len;

	if (args_more(&k->rq->args)) {
		if (args_str(&k->rq->args, PR_NAME_MAX, &label, &len) != 0 ||
		    !utf8_valid(label, len))
			return fail(k, PR_ERR_BAD_REQUEST, "the label must be "
			    "a str of at most 255 bytes of UTF-8");
		conn_set_label(k->c, label, len);
	}
	h.conn = k->c->id;
	h.boot = k->s->boot;
	h.max_message = k->s->cfg.max_message;
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_hello(&k->s->out, &h) < 0)
		return -ENOMEM;
	return 0;
}

/* Reply with an entry. */
static int
reply_entry(struct call *k, const struct reg_name *n)
{
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    (n ? proto_put_entry(&k->s->out, n) : proto_put_nil(&k->s->out)) < 0)
		return -ENOMEM;
	return 0;
}

static int
reply_bool(struct call *k, bool b)
{
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_bool(&k->s->out, b) < 0)
		return -ENOMEM;
	return 0;
}

/* The msgpack bytes to store for a value param (in s->scratch). */
static int
stored_value(struct call *k, const pr_value *v, const char **val,
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
static int
resolve(struct call *k, const struct reg_target *t, struct conn **to,
    uint64_t *gen)
{
	struct reg_client *rc;
	struct reg_name *n;

	if (t->name == NULL) {
		if ((rc = registry_client_find(&k->s->reg, t->conn)) == NULL)
			return fail(k, PR_ERR_NOT_FOUND, "no such connection "
			    "is open");
		*to = rc->conn;
		*gen = 0;
		return 0;
	}
	if ((n = registry_lookup(&k->s->reg, t->name, t->len)) == NULL)
		return fail(k, PR_ERR_NOT_FOUND, "the name is not registered");
	*to = n->owner->conn;
	*gen = n->gen;
	return 0;
}

#define BAD_TARGET	"the target must be a name (a str of 1 to 255 bytes " \
			"of UTF-8 without NUL) or a connection id (a uint)"

static int
h_register(struct call *k)
{
	struct server *s = k->s;
	struct pr_opt opts[] = {
		{ .key = "queue", .type = PR_OPT_BOOL },
		{ .key = "allow_replacement", .type = PR_OPT_BOOL },
		{ .key = "replace", .type = PR_OPT_BOOL },
	};
	const pr_value *v = NULL;
	struct reg_name *n;
	const char *name, *val = NULL;
	size_t len, vlen = 0;
	unsigned flags = 0;
	uint32_t queued;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args))
		args_value(&k->rq->args, &v);
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 3) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the options must be a map "
		    "of \"queue\", \"allow_replacement\" and \"replace\", "
		    "bools");
	flags |= opts[0].set && opts[0].b ? REG_QUEUE : 0;
	flags |= opts[1].set && opts[1].b ? REG_ALLOW_REPLACEMENT : 0;
	flags |= opts[2].set && opts[2].b ? REG_REPLACE : 0;
	if (!policy_allows(&s->cfg.policy, &k->c->peer, name, len, k->why,
	    sizeof(k->why)))
		return PR_ERR_FORBIDDEN;
	if (v != NULL && stored_value(k, v, &val, &vlen) < 0)
		return -ENOMEM;
	r = registry_register_opts(&s->reg, k->c->rc, name, len, val, vlen,
	    flags, now_epoch_ms(), &n, &queued);
	if (r == PR_ERR_TAKEN && n->owner != k->c->rc &&
	    (flags & REG_QUEUE))
		return fail(k, r, "this connection is waiting for the name");
	if (r == PR_ERR_TAKEN)
		return fail(k, r, "the name is registered by conn %llu",
		    (unsigned long long)n->owner->id);
	if (r == PR_ERR_LIMIT && k->c->rc->nnames + k->c->rc->nwaits <
	    s->reg.max_names)
		return fail(k, r, "uid %u holds %llu names and %llu places in "
		    "queues, the limit", (unsigned)k->c->rc->uid,
		    (unsigned long long)k->c->rc->usage->names,
		    (unsigned long long)k->c->rc->usage->waits);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection holds %u names and %u places "
		    "in queues, the limit", k->c->rc->nnames, k->c->rc->nwaits);
	if (r != 0)
		return r < 0 ? r : fail(k, r, "the value is too large");
	if (queued > 0) {
		if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
		    proto_put_map(&s->out, 1) < 0 ||
		    proto_put_str(&s->out, "queued", 6) < 0 ||
		    proto_put_uint(&s->out, queued) < 0)
			return -ENOMEM;
		return 0;
	}
	return reply_entry(k, n);
}

#define STALE	"the name's entry has another generation"

static int
h_unregister(struct call *k)
{
	struct reg_name *n;
	const char *name;
	uint64_t gen;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args) && args_uint(&k->rq->args, &gen) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the gen must be a uint");
	r = registry_unregister_gen(&k->s->reg, k->c->rc, name, len,
	    k->rq->args.n > 1 ? &gen : NULL);
	if (r == PR_ERR_NOT_FOUND)
		return fail(k, r, "the name is not registered");
	if (r == PR_ERR_NOT_OWNER && (n = registry_lookup(&k->s->reg, name,
	    len)) != NULL)
		return fail(k, r, "the name is registered by conn %llu",
		    (unsigned long long)n->owner->id);
	if (r == PR_ERR_STALE)
		return fail(k, r, STALE);
	return reply_bool(k, true);
}

static int
h_evict(struct call *k)
{
	struct reg_name *n;
	struct conn *owner;
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (!policy_is_admin(&k->s->cfg.policy, &k->c->peer,
	    (uint32_t)getuid()))
		return fail(k, PR_ERR_FORBIDDEN, "evict is for uid 0, the "
		    "daemon's user and the admin group");
	if ((n = registry_lookup(&k->s->reg, name, len)) == NULL)
		return fail(k, PR_ERR_NOT_FOUND, "the name is not registered");
	/*
	 * The owner hears it first: a holder that keeps running after its
	 * name went to someone else is two leaders (hold stops its command
	 * on lost).  Never dropped, like a down.
	 */
	owner = n->owner->conn;
	proto_out_reset(&k->s->push);
	if (proto_push_lost(&k->s->push, name, len, PR_DOWN_EVICTED) < 0)
		conn_out_of_memory(owner);
	else
		conn_write(owner, proto_out_data(&k->s->push),
		    proto_out_len(&k->s->push), false);
	(void)registry_evict(&k->s->reg, name, len);
	return reply_bool(k, true);
}

static int
h_whereis(struct call *k)
{
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	return reply_entry(k, registry_lookup(&k->s->reg, name, len));
}

static int
h_send(struct call *k)
{
	struct server *s = k->s;
	const pr_value *payload;
	struct reg_target t;
	struct conn *owner;
	uint64_t gen;
	int r;

	struct pr_opt opts[] = { { .key = "gen", .type = PR_OPT_UINT } };

	if (args_target(&k->rq->args, &t) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	args_value(&k->rq->args, &payload);
	if (args_more(&k->rq->args) && (t.name == NULL ||
	    args_opts(&k->rq->args, opts, 1) != 0))
		return fail(k, PR_ERR_BAD_REQUEST, "the options must be a map "
		    "whose only key is \"gen\", a uint, and the target a name");
	if ((r = resolve(k, &t, &owner, &gen)) != 0)
		return r;
	if (opts[0].set && opts[0].u != gen)
		return fail(k, PR_ERR_STALE, STALE);
	proto_out_reset(&s->push);
	if (proto_push_message(&s->push, &t, k->c->id, payload) < 0)
		return -ENOMEM;
	r = conn_write(owner, proto_out_data(&s->push),
	    proto_out_len(&s->push), true);
	if (r == PR_ERR_BUSY)
		return fail(k, r, "the owner's outbound buffer is full; "
		    "nothing was queued");
	if (r < 0)
		return fail(k, PR_ERR_BUSY, "the owner's connection failed; "
		    "nothing was queued");
	s->stats.messages++;
	return reply_bool(k, true);
}

static int
h_monitor(struct call *k)
{
	struct reg_name *target;
	struct reg_target t;
	uint32_t nsubs;
	uint64_t ref;
	bool found;
	int r;

	if (args_target(&k->rq->args, &t) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	nsubs = subs_count_of(&k->s->subs, k->c);
	if (k->c->rc->nmonitors + nsubs >= k->s->reg.max_monitors)
		return fail(k, PR_ERR_LIMIT, "this connection holds %u monitors "
		    "and subscriptions, the limit",
		    k->c->rc->nmonitors + nsubs);
	if (t.name != NULL) {
		r = registry_monitor(&k->s->reg, k->c->rc, t.name, t.len,
		    &ref, &target);
		found = target != NULL;
	} else
		r = registry_monitor_client(&k->s->reg, k->c->rc, t.conn,
		    &ref, &found);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection holds %u monitors, the "
		    "limit", k->c->rc->nmonitors);
	if (r != 0)
		return r;
	if (!found) {
		k->noproc = true;
		k->noproc_ref = ref;
		k->noproc_target = t;
	}
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_uint(&k->s->out, ref) < 0)
		return -ENOMEM;
	return 0;
}

static int
h_demonitor(struct call *k)
{
	uint64_t ref;

	if (args_uint(&k->rq->args, &ref) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the ref must be a uint");
	return reply_bool(k, registry_demonitor(&k->s->reg, k->c->rc, ref));
}

/* Bytewise order of two strings, shorter first on a common prefix. */
static int
bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

static int
h_list(struct call *k)
{
	struct server *s = k->s;
	struct pr_args *a = &k->rq->args;
	const char *prefix = "", *after = NULL;
	size_t plen = 0, alen = 0, budget, used = 0;
	uint64_t limit = PR_LIST_DEFAULT;
	struct reg_name *n = NULL;
	struct reg_iter it;
	uint32_t count = 0;

	if (args_more(a) && args_str(a, SIZE_MAX, &prefix, &plen) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the prefix must be a str");
	if (args_more(a) && (args_uint(a, &limit) != 0 || limit == 0 ||
	    limit > PR_LIST_MAX))
		return fail(k, PR_ERR_BAD_REQUEST, "the limit must be a uint "
		    "from 1 to %d", PR_LIST_MAX);
	/* A longer after works too: registry_seek compares its first 255
	 * bytes strictly, which no name of 255 bytes or less can equal. */
	if (args_more(a) && args_str(a, SIZE_MAX, &after, &alen) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "after must be a str");
	if (plen <= PR_NAME_MAX) {
		if (after != NULL && bytes_cmp(after, alen, prefix, plen) >= 0)
			n = registry_seek(&s->reg, after, alen, true, &it);
		else
			n = registry_seek(&s->reg, prefix, plen, false, &it);
	}
	/* Keep a page within max_message, but always make progress. */
	budget = s->cfg.max_message;
	used = proto_reply_size(k->rq->msgid);
	for (; n != NULL && count < limit; n = registry_next(&s->reg, &it)) {
		size_t sz;

		if (n->name_len < plen || memcmp(n->data, prefix, plen) != 0)
			break;
		sz = proto_entry_size(n);
		if (count > 0 && used + proto_array_size(count + 1) + sz >
		    budget)
			break;
		used += sz;
		s->list_buf[count++] = n;
	}
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, count) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		if (proto_put_entry(&s->out, s->list_buf[i]) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* What h_call hands calls_start to encode the push with. */
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

static int
h_call(struct call *k)
{
	struct pr_args *a = &k->rq->args;
	uint64_t gen, timeout = PR_CALL_TIMEOUT_DEFAULT;
	struct call_push cp;
	struct reg_target t;
	struct conn *callee;
	int r;

	if (args_target(a, &t) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	args_value(a, &cp.payload);
	if (args_more(a) && (args_uint(a, &timeout) != 0 || timeout == 0 ||
	    timeout > PR_CALL_TIMEOUT_MAX))
		return fail(k, PR_ERR_BAD_REQUEST, "timeout_ms must be a uint "
		    "from 1 to %u", PR_CALL_TIMEOUT_MAX);
	if ((r = resolve(k, &t, &callee, &gen)) != 0)
		return r;
	cp.target = &t;
	cp.caller = k->c->id;
	r = calls_start(&k->s->calls, k->c, k->rq->msgid, callee, gen,
	    timeout, encode_call, &cp);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection has %u calls pending, the "
		    "limit", calls_pending_of(&k->s->calls, k->c));
	if (r == PR_ERR_BUSY)
		return fail(k, r, "the callee's outbound buffer is full; "
		    "nothing was queued");
	if (r != 0)
		return r;
	k->deferred = true;
	return 0;
}

static int
h_reply(struct call *k)
{
	struct pr_args *a = &k->rq->args;
	const char *code = NULL, *msg = NULL;
	const pr_value *result = NULL;
	size_t clen = 0, mlen = 0;
	uint64_t id;

	if (args_uint(a, &id) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the call id must be a uint");
	struct pr_args third = *a;

	third.i++;
	if (args_left(a) == 2 && !args_nil(&third)) {
		/* [call_id, nil, [code, message]] */
		if (!args_nil(a))
			return fail(k, PR_ERR_BAD_REQUEST, "with an error, "
			    "the result must be nil");
		a->i++;
		if (args_error(a, &code, &clen, &msg, &mlen) != 0 ||
		    !utf8_valid(code, clen) || !utf8_valid(msg, mlen))
			return fail(k, PR_ERR_BAD_REQUEST, "the error must be "
			    "[code, message]: a str of 1 to %d bytes and a "
			    "str, both UTF-8", PR_CODE_MAX);
	} else
		args_value(a, &result);
	if (calls_reply(&k->s->calls, k->c, id, result, code, clen, msg, mlen) != 0)
		return fail(k, PR_ERR_NOT_FOUND, "no call with this id is "
		    "pending for this connection");
	return reply_bool(k, true);
}

static int
h_join(struct call *k)
{
	struct server *s = k->s;
	const char *group, *val = NULL;
	struct reg_member *mb;
	const pr_value *v;
	size_t len, vlen = 0;
	int r;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	if (!policy_allows(&s->cfg.policy, &k->c->peer, group, len, k->why,
	    sizeof(k->why)))
		return PR_ERR_FORBIDDEN;
	if (args_more(&k->rq->args)) {
		args_value(&k->rq->args, &v);
		if (stored_value(k, v, &val, &vlen) < 0)
			return -ENOMEM;
	}
	r = registry_join(&s->reg, k->c->rc, group, len, val, vlen,
	    now_epoch_ms(), &mb);
	if (r == PR_ERR_TAKEN)
		return fail(k, r, "this connection is a member already");
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection is a member of %u groups, "
		    "the limit", k->c->rc->nmembers);
	if (r != 0)
		return r < 0 ? r : fail(k, r, "the value is too large");
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_member(&s->out, mb) < 0)
		return -ENOMEM;
	return 0;
}

static int
h_leave(struct call *k)
{
	const char *group;
	size_t len;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	if (registry_leave(&k->s->reg, k->c->rc, group, len) != 0)
		return fail(k, PR_ERR_NOT_FOUND, "this connection is not a "
		    "member");
	return reply_bool(k, true);
}

/* Would a response of this many bytes be larger than max_message? */
static bool
too_large(const struct server *s, size_t bytes)
{
	return bytes > s->cfg.max_message;
}

static int
h_members(struct call *k)
{
	struct server *s = k->s;
	struct reg_member *mb;
	struct reg_group *g;
	const char *group;
	size_t len, size = 0;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	g = registry_group(&s->reg, group, len);
	if (g != NULL) {
		size = proto_reply_size(k->rq->msgid) +
		    proto_array_size(g->nmembers);
		/* Stops as soon as it is too large: never more work than
		 * the answer. */
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			s->work++;
			size += proto_member_size(mb);
			if (too_large(s, size))
				return fail(k, PR_ERR_TOO_LARGE, "%u members "
				    "do not fit in max_message", g->nmembers);
		}
		s->work += g->nmembers;		/* the answer's copies */
	}
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, g != NULL ? g->nmembers : 0) < 0)
		return -ENOMEM;
	if (g != NULL) {
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			if (proto_put_member(&s->out, mb) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static int
h_publish(struct call *k)
{
	struct server *s = k->s;
	struct pr_opt opts[] = { { .key = "echo", .type = PR_OPT_BOOL } };
	uint64_t *busy = NULL, delivered = 0;
	struct conn_shared *sh;
	uint32_t nbusy = 0;
	const pr_value *payload;
	struct reg_member *mb;
	struct reg_group *g;
	const char *group;
	size_t len;
	int r = 0;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	args_value(&k->rq->args, &payload);
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 1) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the options must be a map "
		    "whose only key is \"echo\", a bool");
	g = registry_group(&s->reg, group, len);
	if (g != NULL) {
		bool echo = !opts[0].set || opts[0].b;

		proto_out_reset(&s->push);
		if (proto_push_publish(&s->push, group, len, k->c->id,
		    payload) < 0)
			return -ENOMEM;
		/* One copy for every member, however many. */
		if ((sh = conn_shared_new(proto_out_data(&s->push),
		    proto_out_len(&s->push))) == NULL)
			return -ENOMEM;
		/* conn_write never closes a connection on the spot, so the
		 * member list holds still while we walk it. */
		s->work += g->nmembers;
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			if (!echo && mb->client == k->c->rc)
				continue;
			if (conn_write_shared(mb->client->conn, NULL, 0, sh,
			    true) == 0) {
				delivered++;
				continue;
			}
			if (busy == NULL && (busy = malloc(g->nmembers *
			    sizeof(*busy))) == NULL) {
				conn_shared_put(sh);
				return -ENOMEM;
			}
			busy[nbusy++] = mb->client->id;
		}
		conn_shared_put(sh);
	}
	s->stats.messages += delivered;
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_map(&s->out, 2) < 0 ||
	    proto_put_str(&s->out, "delivered", 9) < 0 ||
	    proto_put_uint(&s->out, delivered) < 0 ||
	    proto_put_str(&s->out, "busy", 4) < 0 ||
	    proto_put_array(&s->out, nbusy) < 0)
		r = -ENOMEM;
	for (uint32_t i = 0; r == 0 && i < nbusy; i++)
		r = proto_put_uint(&s->out, busy[i]);
	free(busy);
	return r;
}

static int
h_update(struct call *k)
{
	struct reg_name *n;
	const pr_value *v;
	const char *name, *val;
	size_t len, vlen;
	uint64_t gen;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	args_value(&k->rq->args, &v);
	if (args_more(&k->rq->args) && args_uint(&k->rq->args, &gen) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the gen must be a uint");
	if (stored_value(k, v, &val, &vlen) < 0)
		return -ENOMEM;
	r = registry_update_gen(&k->s->reg, k->c->rc, name, len, val, vlen,
	    k->rq->args.n > 2 ? &gen : NULL, &n);
	if (r == PR_ERR_STALE)
		return fail(k, r, STALE);
	if (r == PR_ERR_NOT_FOUND)
		return fail(k, r, "the name is not registered");
	if (r == PR_ERR_NOT_OWNER)
		return fail(k, r, "the name is registered by conn %llu",
		    (unsigned long long)registry_lookup(&k->s->reg, name,
		    len)->owner->id);
	if (r != 0)
		return r < 0 ? r : fail(k, r, "the value is too large");
	return reply_entry(k, n);
}

/*
 * A name or group as bytes, for sorting keys.  Its first 8 bytes ride
 * along as a big-endian number: most comparisons end there, in the
 * array, instead of at two names scattered over the heap.
 */
struct key {
	uint64_t	 head;
	const char	*s;
	size_t		 len;
};

static struct key
key_of(const char *s, size_t len)
{
	struct key k = { 0, s, len };

	for (size_t i = 0; i < 8; i++)
		k.head = k.head << 8 | (i < len ? (uint8_t)s[i] : 0);
	return k;
}

static int
key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;

	if (x->head != y->head)
		return x->head < y->head ? -1 : 1;
	/* Zero padding: "ab" and "ab\0" share a head; so do names with a
	 * common start, whose tails are short: a loop, not a call. */
	for (size_t i = 8; i < n; i++) {
		if (x->s[i] != y->s[i])
			return (uint8_t)x->s[i] < (uint8_t)y->s[i] ? -1 : 1;
	}
	return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * Sort keys[0..n) using tmp (n more slots): insertion-sorted runs of 8,
 * then bottom-up merges.  glibc's qsort would allocate, and fault in, a
 * buffer of its own at every call; this one is the server's, kept.
 */
static void
keys_sort(struct key *a, struct key *tmp, size_t n)
{
	struct key *src = a, *dst = tmp, *t;

	for (size_t i = 0; i < n; i += 8) {
		size_t e = i + 8 < n ? i + 8 : n;

		for (size_t j = i + 1; j < e; j++) {
			struct key x = a[j];
			size_t m = j;

			for (; m > i && key_cmp(&a[m - 1], &x) > 0; m--)
				a[m] = a[m - 1];
			a[m] = x;
		}
	}
	for (size_t w = 8; w < n; w *= 2) {
		for (size_t i = 0; i < n; i += 2 * w) {
			size_t l = i, m = i + w < n ? i + w : n;
			size_t e = i + 2 * w < n ? i + 2 * w : n, r = m, o = i;

			while (l < m && r < e)
				dst[o++] = key_cmp(&src[r], &src[l]) < 0 ?
				    src[r++] : src[l++];
			while (l < m)
				dst[o++] = src[l++];
			while (r < e)
				dst[o++] = src[r++];
		}
		t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
}

/* The server's sort buffer, room for n keys and n more to merge into. */
static struct key *
sort_buf(struct server *s, size_t n)
{
	size_t need = 2 * (n + 1) * sizeof(struct key);
	void *p;

	if (need > s->sort_bytes) {
		if ((p = realloc(s->sort_buf, need)) == NULL)
			return NULL;
		s->sort_buf = p;
		s->sort_bytes = need;
	}
	return s->sort_buf;
}

static int
h_keys(struct call *k)
{
	struct server *s = k->s;
	struct reg_client *rc;
	struct reg_member *mb;
	struct reg_name *n;
	struct key *keys;
	size_t nn = 0, ng = 0, size, cap;
	uint64_t id;
	int r = 0;

	if (args_uint(&k->rq->args, &id) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the conn must be a uint");
	if ((rc = registry_client_find(&s->reg, id)) == NULL)
		return fail(k, PR_ERR_NOT_FOUND, "no such connection is open");
	/* {"names": [...], "groups": [...]} */
	size = proto_reply_size(k->rq->msgid) + 1 + proto_str_size(5) +
	    proto_array_size(rc->nnames) + proto_str_size(6) +
	    proto_array_size(rc->nmembers);
	/* Each key takes at least 2 bytes of the answer: no more than
	 * max_message / 2 are collected before it is too large. */
	cap = (size_t)rc->nnames + rc->nmembers;
	if (cap > s->cfg.max_message / 2 + 1)
		cap = s->cfg.max_message / 2 + 1;
	if ((keys = sort_buf(s, cap)) == NULL)
		return -ENOMEM;
	/* Collected and sized at once, stopping as soon as it is too
	 * large: a refusal costs no more than the answer would. */
	for (n = registry_client_names(rc); n != NULL;
	    n = registry_client_names_next(n)) {
		size += proto_str_size(n->name_len);
		if (too_large(s, size))
			goto too_large;
		keys[nn++] = key_of(n->data, n->name_len);
	}
	for (mb = registry_client_members(rc); mb != NULL;
	    mb = registry_client_members_next(mb)) {
		size += proto_str_size(mb->group->name_len);
		if (too_large(s, size))
			goto too_large;
		keys[nn + ng++] = key_of(mb->group->name,
		    mb->group->name_len);
	}
	/* Sorting costs n log n: charged so the turn ends sooner. */
	s->work += 4 * (nn + ng);
	keys_sort(keys, keys + cap, nn);
	keys_sort(keys + nn, keys + cap, ng);
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_map(&s->out, 2) < 0 ||
	    proto_put_str(&s->out, "names", 5) < 0 ||
	    proto_put_array(&s->out, (uint32_t)nn) < 0)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < nn + ng; i++) {
		if (i == nn && (proto_put_str(&s->out, "groups", 6) < 0 ||
		    proto_put_array(&s->out, (uint32_t)ng) < 0))
			r = -ENOMEM;
		else if (proto_put_str(&s->out, keys[i].s, keys[i].len) < 0)
			r = -ENOMEM;
	}
	if (r == 0 && ng == 0 && (proto_put_str(&s->out, "groups", 6) < 0 ||
	    proto_put_array(&s->out, 0) < 0))
		r = -ENOMEM;
	return r;
too_large:
	s->work += nn + ng + 1;		/* what was walked */
	return fail(k, PR_ERR_TOO_LARGE, "%u names and %u groups do not fit "
	    "in max_message", rc->nnames, rc->nmembers);
}

static int
h_register_many(struct call *k)
{
	struct server *s = k->s;
	struct pr_args list, e;
	const char **names = NULL;
	const void **vals = NULL;
	size_t *lens = NULL, *vlens = NULL, *voff = NULL, n, i, bad = 0;
	struct reg_name **out = NULL;
	int r;

	if (args_array(&k->rq->args, &list) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the param must be an "
		    "array of [name] or [name, value] arrays");
	n = args_left(&list);
	s->work += n;
	names = calloc(n + 1, sizeof(*names));
	vals = calloc(n + 1, sizeof(*vals));
	lens = calloc(n + 1, sizeof(*lens));
	vlens = calloc(n + 1, sizeof(*vlens));
	voff = calloc(n + 1, sizeof(*voff));
	out = calloc(n + 1, sizeof(*out));
	if (!names || !vals || !lens || !vlens || !voff || !out) {
		r = -ENOMEM;
		goto done;
	}
	/* Every value goes into scratch back to back; pointers are taken
	 * once it stops growing. */
	proto_out_reset(&s->scratch);
	for (i = 0; i < n; i++) {
		const pr_value *v = NULL;

		if (args_array(&list, &e) != 0 || args_left(&e) < 1 ||
		    args_left(&e) > 2 ||
		    args_name(&e, &names[i], &lens[i]) != 0) {
			r = fail(k, PR_ERR_BAD_REQUEST, "entry %zu must be "
			    "[name] or [name, value] with a valid name",
			    i + 1);
			goto done;
		}
		voff[i] = proto_out_len(&s->scratch);
		if (args_more(&e)) {
			args_value(&e, &v);
			if (proto_encode_value(&s->scratch, v) < 0) {
				r = -ENOMEM;
				goto done;
			}
		}
		vlens[i] = proto_out_len(&s->scratch) - voff[i];
	}
	/* voff doubles as the index array: its offsets are used up below. */
	for (i = 0; i < n; i++)
		vals[i] = proto_out_data(&s->scratch) + voff[i];
	if (registry_first_duplicate(names, lens, n, voff, &bad)) {
		r = fail(k, PR_ERR_BAD_REQUEST, "name %zu of the array appears "
		    "before it in the array", bad + 1);
		goto done;
	}
	for (i = 0; i < n; i++) {
		if (!policy_allows(&s->cfg.policy, &k->c->peer, names[i],
		    lens[i], k->why, sizeof(k->why))) {
			r = PR_ERR_FORBIDDEN;
			goto done;
		}
	}
	r = registry_register_many(&s->reg, k->c->rc, n, names, lens, vals,
	    vlens, now_epoch_ms(), out, &bad);
	if (r == PR_ERR_TAKEN)
		r = fail(k, r, "name %zu of the array is registered by conn "
		    "%llu", bad + 1, (unsigned long long)out[0]->owner->id);
	else if (r == PR_ERR_BAD_REQUEST)
		r = fail(k, r, "name %zu of the array appears before it in "
		    "the array", bad + 1);
	else if (r == PR_ERR_LIMIT)
		r = fail(k, r, "%zu more names would pass this connection's "
		    "or its user's limit", n);
	else if (r == PR_ERR_TOO_LARGE)
		r = fail(k, r, "a value is too large");
	if (r != 0)
		goto done;
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, (uint32_t)n) < 0)
		r = -ENOMEM;
	for (i = 0; r == 0 && i < n; i++)
		r = proto_put_entry(&s->out, out[i]);
done:
	free(names);
	free(vals);
	free(lens);
	free(vlens);
	free(voff);
	free(out);
	return r;
}

static int
h_await(struct call *k)
{
	uint64_t timeout = PR_CALL_TIMEOUT_DEFAULT;
	struct reg_name *n;
	const char *name;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args) && (args_uint(&k->rq->args, &timeout) !=
	    0 || timeout > PR_CALL_TIMEOUT_MAX))
		return fail(k, PR_ERR_BAD_REQUEST, "timeout_ms must be a uint "
		    "from 0 to %u", PR_CALL_TIMEOUT_MAX);
	if ((n = registry_lookup(&k->s->reg, name, len)) != NULL)
		return reply_entry(k, n);
	if (timeout == 0)
		return fail(k, PR_ERR_TIMEOUT, "the name was not registered "
		    "in time");
	r = calls_await(&k->s->calls, k->c, k->rq->msgid, name, len,
	    timeout);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection has %u calls and awaits "
		    "pending, the limit", calls_pending_of(&k->s->calls, k->c));
	if (r != 0)
		return r;
	k->deferred = true;
	return 0;
}

static int
h_queue(struct call *k)
{
	struct reg_waiter *w;
	struct reg_queue *q;
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	q = registry_queue(&k->s->reg, name, len);
	k->s->work += q != NULL ? q->n : 0;
	if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&k->s->out, q != NULL ? q->n : 0) < 0)
		return -ENOMEM;
	if (q != NULL) {
		for (w = registry_queue_waiters(q); w != NULL;
		    w = registry_queue_waiters_next(w)) {
			if (proto_put_uint(&k->s->out, w->ready->owner->id) < 0)
				return -ENOMEM;
		}
	}
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
		if (too_large(s, size - 5 + proto_array_size(++count)))
			goto too_large;
	}
	for (g = groups ? registry_group_seek(&s->reg, prefix, plen, &it) :
	    NULL; g != NULL && has_prefix(g->name, g->name_len, prefix, plen);
	    g = registry_group_next(&s->reg, &it)) {
		for (mb = registry_group_members(g); mb != NULL;
		    mb = registry_group_members_next(mb)) {
			s->work++;
			size += proto_member_size(mb);
			if (too_large(s, size - 5 + proto_array_size(++count)))
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
	return fail(k, PR_ERR_TOO_LARGE, "the names%s under the prefix do not "
	    "fit in max_message", groups ? " and groups" : "");
}

/* Subscribe's response: {"sub", "seq"[, "gap"][, "entries"]}. */
static int
subscribe_reply(struct call *k, uint64_t id, const char *prefix,
    size_t plen, bool groups, bool since, bool resumable)
{
	struct server *s = k->s;

	if (proto_reply_begin(&s->out, k->rq->msgid) < 0)
		return -ENOMEM;
	if (proto_put_map(&s->out, since ? (resumable ? 3 : 4) : 3) < 0 ||
	    proto_put_str(&s->out, "sub", 3) < 0 ||
	    proto_put_uint(&s->out, id) < 0 ||
	    proto_put_str(&s->out, "seq", 3) < 0 ||
	    proto_put_uint(&s->out, subs_seq(&s->subs)) < 0)
		return -ENOMEM;
	if (since && (proto_put_str(&s->out, "gap", 3) < 0 ||
	    proto_put_bool(&s->out, !resumable) < 0))
		return -ENOMEM;
	if (resumable)
		return 0;
	if (proto_put_str(&s->out, "entries", 7) < 0)
		return -ENOMEM;
	return put_snapshot(k, prefix, plen, groups);
}

static int
h_subscribe(struct call *k)
{
	struct server *s = k->s;
	struct pr_opt opts[] = {
		{ .key = "groups", .type = PR_OPT_BOOL },
		{ .key = "since", .type = PR_OPT_UINT },
	};
	const char *prefix;
	bool resumable = false, groups;
	struct sub *sb;
	uint32_t nsubs;
	uint64_t id;
	size_t plen;
	int r;

	if (args_str(&k->rq->args, SIZE_MAX, &prefix, &plen) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the prefix must be a str");
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 2) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the options must be a map "
		    "of \"groups\", a bool, and \"since\", a uint");
	groups = opts[0].set && opts[0].b;
	if (opts[1].set && opts[1].u > subs_seq(&s->subs))
		return fail(k, PR_ERR_BAD_REQUEST, "since is later than the "
		    "last event");
	nsubs = subs_count_of(&s->subs, k->c);
	if (k->c->rc->nmonitors + nsubs >= s->reg.max_monitors)
		return fail(k, PR_ERR_LIMIT, "this connection holds %u monitors "
		    "and subscriptions, the limit",
		    k->c->rc->nmonitors + nsubs);
	/*
	 * The subscription first, for its id; undone when the response (a
	 * snapshot may not fit) cannot be built.  The loop is
	 * single-threaded: no event comes in between.
	 */
	r = subs_start(&s->subs, k->c, prefix, plen, groups,
	    opts[1].set ? &opts[1].u : NULL, &resumable, &id, &sb);
	if (r != 0)
		return r;
	if ((r = subscribe_reply(k, id, prefix, plen, groups, opts[1].set,
	    resumable)) != 0) {
		subs_abort(&s->subs, sb);
		return r;
	}
	if (resumable) {
		k->replay = sb;
		k->replay_since = opts[1].u;
	}
	return 0;
}

static int
h_unsubscribe(struct call *k)
{
	uint64_t id;

	if (args_uint(&k->rq->args, &id) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, "the sub must be a uint");
	return reply_bool(k, subs_stop(&k->s->subs, k->c, id));
}

static int
h_stats(struct call *k)
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

	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_stats(&s->out, &st) < 0)
		return -ENOMEM;
	return 0;
}

/* One handler per row of PR_METHODS: a row without its h_<name> does not
 * compile, so no request can reach a NULL handler. */
static handler_fn *const handlers[PR_M__COUNT] = {
#define H(id, name, lo, hi, fl)	[PR_M_##id] = h_##name,
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
dispatch_object(struct server *s, struct conn *c, const pr_value *obj)
{
	struct pr_request rq;
	struct call k;
	int r;

	memset(&k, 0, sizeof(k));
	k.s = s;
	k.c = c;
	k.rq = &rq;
	proto_parse(obj, &rq);
	switch (rq.kind) {
	case PR_KIND_NOTIFY:
		s->stats.notifications_ignored++;
		return;
	case PR_KIND_BAD_OBJECT:
		dispatch_error_notify(s, c, rq.err, rq.why);
		return;
	case PR_KIND_BAD_REQUEST:
		proto_out_reset(&s->out);
		r = proto_reply_error(&s->out, rq.msgid, rq.err, "%s", rq.why);
		break;
	case PR_KIND_REQUEST:
	default:
		proto_out_reset(&s->out);
		r = handlers[rq.method](&k);
		s->work += s->reg.walked + 1;
		s->reg.walked = 0;
		if (r == 0 && k.deferred) {
			s->stats.requests++;
			return;		/* answered when the call ends */
		}
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
	if (conn_write(c, proto_out_data(&s->out), proto_out_len(&s->out),
	    false) != 0)
		return;		/* conn_write closed it */
	if (k.noproc)
		notify_down(s, c, k.noproc_ref, &k.noproc_target,
		    PR_DOWN_NOPROC);
	if (k.replay != NULL) {
		/* A resume walks the history: charged to the turn. */
		s->work += subs_replay(&s->subs, k.replay, k.replay_since);
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

		b->names[i] = NULL;
		b->lens[i] = 0;
		b->hashes[i] = 0;
		if (proto_peek_name((const uint8_t *)p + start,
		    ends[i] - start, &b->names[i], &b->lens[i])) {
			b->hashes[i] = registry_hash(&s->reg, b->names[i],
			    b->lens[i]);
			registry_prefetch(&s->reg, b->hashes[i], b->lens[i], 0);
		}
	}
	for (i = 0; i < b->n && b->n > 1; i++) {
		if (b->names[i] != NULL)
			registry_prefetch(&s->reg, b->hashes[i], b->lens[i], 1);
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
	if (i < b->n)
		registry_hint(&s->reg, b->names[i], b->lens[i], b->hashes[i]);
	if (r == 0)
		dispatch_object(s, c, obj);
	registry_hint(&s->reg, NULL, 0, 0);
	proto_decoded(&s->dec);
	*work = s->work;
	return r;
}
