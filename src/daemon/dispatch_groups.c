/*
 * dispatch_groups.c: the handlers of the methods on groups: join, leave,
 * members and publish.
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
#include "dispatch_impl.h"
#include "policy.h"
#include "server.h"
#include "now.h"

int
dispatch_join(struct call *k)
{
	struct server *s = k->s;
	const char *group, *val = NULL;
	struct reg_member *mb;
	const pr_value *v;
	size_t len, vlen = 0;
	int r;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	if (!policy_allows(&s->cfg.policy, &k->c->peer, group, len, k->why,
	    sizeof(k->why)))
		return PR_ERR_FORBIDDEN;
	if (args_more(&k->rq->args)) {
		args_value(&k->rq->args, &v);
		if (dispatch_stored_value(k, v, &val, &vlen) < 0)
			return -ENOMEM;
	}
	r = registry_join(&s->reg, k->c->rc, group, len, val, vlen,
	    now_epoch_ms(), &mb);
	if (r < 0)
		return r;
	if (r == REG_E_TAKEN)
		return dispatch_fail(k, dispatch_reg_err(r), "this connection "
		    "is a member already");
	if (r == REG_E_LIMIT)
		return dispatch_fail(k, dispatch_reg_err(r), "this connection "
		    "is a member of %u groups, the limit", k->c->rc->nmembers);
	if (r != 0)
		return dispatch_fail(k, dispatch_reg_err(r), "the value is too "
		    "large");
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_member(&s->out, mb) < 0)
		return -ENOMEM;
	return 0;
}

int
dispatch_leave(struct call *k)
{
	const char *group;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	if ((r = registry_leave(&k->s->reg, k->c->rc, group, len)) != 0)
		return dispatch_fail(k, dispatch_reg_err(r), "this connection "
		    "is not a member");
	return dispatch_reply_bool(k, true);
}

int
dispatch_members(struct call *k)
{
	struct server *s = k->s;
	struct reg_member *mb;
	struct reg_group *g;
	const char *group;
	size_t len, size = 0;

	if (args_name(&k->rq->args, &group, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
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
			if (dispatch_too_large(s, size))
				return dispatch_fail(k, PR_ERR_TOO_LARGE, "%u "
				    "members do not fit in max_message",
				    g->nmembers);
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

int
dispatch_publish(struct call *k)
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
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_GROUP);
	args_value(&k->rq->args, &payload);
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 1) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map whose only key is \"echo\", a bool");
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
