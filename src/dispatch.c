/*
 * dispatch.c: request handlers, one per protocol method, in a table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
	uint64_t		 noproc_ref;
	const char		*noproc_name;
	size_t			 noproc_len;
};

/*
 * A handler writes its whole reply into s->out and returns 0, or returns
 * a positive pr_err with c->why set (the dispatcher writes the error), or
 * -ENOMEM.
 */
typedef int	handler_fn(struct call *);

#define BAD_NAME	"the name must be a str of 1 to 255 bytes of UTF-8 " \
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

static int
h_register(struct call *k)
{
	struct server *s = k->s;
	const pr_value *v = NULL;
	struct reg_name *n;
	const char *name, *val = NULL;
	size_t len, vlen = 0;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (!policy_allows(&s->cfg.policy, k->c->rc.uid, k->c->rc.gid, name,
	    len, k->why, sizeof(k->why)))
		return PR_ERR_FORBIDDEN;
	if (args_more(&k->rq->args)) {
		args_value(&k->rq->args, &v);
		proto_out_reset(&s->scratch);
		if (proto_encode_value(&s->scratch, v) < 0)
			return -ENOMEM;
		val = proto_out_data(&s->scratch);
		vlen = proto_out_len(&s->scratch);
	}
	r = registry_register(&s->reg, &k->c->rc, name, len, val, vlen,
	    now_epoch_ms(), &n);
	if (r == PR_ERR_TAKEN)
		return fail(k, r, "the name is registered by conn %llu",
		    (unsigned long long)n->owner->id);
	if (r == PR_ERR_LIMIT && k->c->rc.nnames < s->reg.max_names)
		return fail(k, r, "uid %u holds %llu names, the limit",
		    (unsigned)k->c->rc.uid,
		    (unsigned long long)k->c->rc.usage->names);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection holds %u names, the limit",
		    k->c->rc.nnames);
	if (r != 0)
		return r < 0 ? r : fail(k, r, "the value is too large");
	return reply_entry(k, n);
}

static int
h_unregister(struct call *k)
{
	struct reg_name *n;
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	n = registry_lookup(&k->s->reg, name, len);
	if (n == NULL)
		return fail(k, PR_ERR_NOT_FOUND, "the name is not registered");
	if (n->owner != &k->c->rc)
		return fail(k, PR_ERR_NOT_OWNER, "the name is registered by "
		    "conn %llu", (unsigned long long)n->owner->id);
	registry_unregister(&k->s->reg, &k->c->rc, name, len);
	return reply_bool(k, true);
}

static int
h_evict(struct call *k)
{
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (!policy_is_admin(&k->s->cfg.policy, k->c->rc.uid, k->c->rc.gid,
	    (uint32_t)getuid()))
		return fail(k, PR_ERR_FORBIDDEN, "evict is for uid 0, the "
		    "daemon's user and the admin group");
	if (registry_evict(&k->s->reg, name, len) != 0)
		return fail(k, PR_ERR_NOT_FOUND, "the name is not registered");
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
	struct reg_name *n;
	struct conn *owner;
	const char *name;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	args_value(&k->rq->args, &payload);
	if ((n = registry_lookup(&s->reg, name, len)) == NULL)
		return fail(k, PR_ERR_NOT_FOUND, "the name is not registered");
	owner = conn_of(n->owner);
	proto_out_reset(&s->push);
	if (proto_push_message(&s->push, name, len, k->c->id, payload) < 0)
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
	const char *name;
	uint64_t ref;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	r = registry_monitor(&k->s->reg, &k->c->rc, name, len, &ref, &target);
	if (r == PR_ERR_LIMIT)
		return fail(k, r, "this connection holds %u monitors, the "
		    "limit", k->c->rc.nmonitors);
	if (r != 0)
		return r;
	if (target == NULL) {
		k->noproc = true;
		k->noproc_ref = ref;
		k->noproc_name = name;
		k->noproc_len = len;
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
	return reply_bool(k, registry_demonitor(&k->s->reg, &k->c->rc, ref));
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
			n = registry_seek(&s->reg, after, alen, true);
		else
			n = registry_seek(&s->reg, prefix, plen, false);
	}
	/* Keep a page within max_message, but always make progress. */
	budget = s->cfg.max_message > 64 ? s->cfg.max_message - 64 : 0;
	for (; n != NULL && count < limit; n = registry_next(&s->reg, n)) {
		size_t sz;

		if (n->name_len < plen || memcmp(n->data, prefix, plen) != 0)
			break;
		sz = proto_entry_size(n);
		if (count > 0 && used + sz > budget)
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

static int
h_stats(struct call *k)
{
	struct server *s = k->s;
	struct pr_stats st = {
		.connections = s->nconns,
		.names = s->reg.nnames,
		.monitors = s->reg.nmonitors,
		.requests = s->stats.requests,
		.messages = s->stats.messages,
		.downs = s->stats.downs,
		.notifications_ignored = s->stats.notifications_ignored,
		.connections_total = s->stats.connections_total,
		.uptime_ms = now_mono_ms() - s->start_mono_ms,
	};

	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_stats(&s->out, &st) < 0)
		return -ENOMEM;
	return 0;
}

static handler_fn *const handlers[PR_M__COUNT] = {
	[PR_M_HELLO] = h_hello,
	[PR_M_REGISTER] = h_register,
	[PR_M_UNREGISTER] = h_unregister,
	[PR_M_WHEREIS] = h_whereis,
	[PR_M_SEND] = h_send,
	[PR_M_MONITOR] = h_monitor,
	[PR_M_DEMONITOR] = h_demonitor,
	[PR_M_LIST] = h_list,
	[PR_M_STATS] = h_stats,
	[PR_M_EVICT] = h_evict,
};

/* Queue a down notification for a holder. */
static void
notify_down(struct server *s, struct conn *holder, uint64_t ref,
    const char *name, size_t len, enum pr_down_reason why)
{
	proto_out_reset(&s->push);
	if (proto_push_down(&s->push, ref, name, len, why) < 0) {
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
    const struct reg_name *target, enum pr_down_reason why)
{
	struct server *s = arg;

	/* Stopping: every client has been told; its names did not go
	 * down, the daemon did. */
	if (s->stopping)
		return;
	notify_down(s, conn_of(holder), ref, target->data, target->name_len,
	    why);
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

void
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
		notify_down(s, c, k.noproc_ref, k.noproc_name, k.noproc_len,
		    PR_DOWN_NOPROC);
}
