/*
 * dispatch_names.c: the handlers of the methods on names: register and
 * its variants, unregister, evict, whereis, update, queue, monitor and
 * demonitor, list and keys.
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

/* Why register refused: the registry's code, told the client's way. */
static int
register_refused(struct call *k, int r, const struct reg_name *n,
    unsigned flags)
{
	struct reg_client *rc = k->c->rc;
	enum pr_err e = dispatch_reg_err(r);

	if (r == REG_E_TAKEN && n->owner != rc && (flags & REG_QUEUE))
		return dispatch_fail(k, e, "this connection is waiting for the "
		    "name");
	if (r == REG_E_TAKEN)
		return dispatch_fail(k, e, "the name is registered by conn "
		    "%llu", (unsigned long long)n->owner->id);
	if (r == REG_E_LIMIT_UID)
		return dispatch_fail(k, e, "uid %u holds %llu names and %llu "
		    "places in queues, the limit", (unsigned)rc->uid,
		    (unsigned long long)rc->usage->names,
		    (unsigned long long)rc->usage->waits);
	if (r == REG_E_LIMIT)
		return dispatch_fail(k, e, "this connection holds %u names and "
		    "%u places in queues, the limit", rc->nnames, rc->nwaits);
	return dispatch_fail(k, e, "the value is too large");
}

int
dispatch_register(struct call *k)
{
	struct server *s = k->s;
	struct pr_opt opts[] = {
		{ .key = "queue", .type = PR_OPT_BOOL },
		{ .key = "allow_replacement", .type = PR_OPT_BOOL },
		{ .key = "replace", .type = PR_OPT_BOOL },
		{ .key = "scope", .type = PR_OPT_STR },
	};
	enum dispatch_scope scope = SCOPE_LOCAL;
	const struct cl_entry *ce;
	const pr_value *v = NULL;
	struct reg_name *n;
	const char *name, *val = NULL;
	size_t len, vlen = 0;
	unsigned flags = 0;
	uint32_t queued;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args))
		args_value(&k->rq->args, &v);
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 4) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map of \"queue\", \"allow_replacement\" and "
		    "\"replace\", bools, and \"scope\", a str");
	if ((r = dispatch_scope(k, &opts[3], SCOPES(SCOPE_LOCAL,
	    SCOPE_CLUSTER), &scope)) != 0)
		return r;
	flags |= opts[0].set && opts[0].b ? REG_QUEUE : 0;
	flags |= opts[1].set && opts[1].b ? REG_ALLOW_REPLACEMENT : 0;
	flags |= opts[2].set && opts[2].b ? REG_REPLACE : 0;
	if (!policy_allows(&s->cfg.policy, &k->c->peer, name, len, k->why,
	    sizeof(k->why)))
		return PR_ERR_FORBIDDEN;
	if (v != NULL && dispatch_stored_value(k, v, &val, &vlen) < 0)
		return -ENOMEM;
	if (scope == SCOPE_CLUSTER) {
		if (flags & ~REG_QUEUE)
			return dispatch_fail(k, PR_ERR_BAD_REQUEST, "\"replace\" "
			    "and \"allow_replacement\" are not available for "
			    "cluster names in this version");
		if (vlen > s->cfg.max_message)
			return dispatch_fail(k, PR_ERR_TOO_LARGE, "the value is "
			    "too large");
		return dispatch_cluster_register(k, name, len, val, vlen,
		    flags & REG_QUEUE);
	}
	/* No shadow made here: a name this node knows in the cluster is
	 * taken for a local register too. */
	if ((ce = dispatch_cluster_lookup(s, name, len)) != NULL &&
	    registry_lookup(&s->reg, name, len) == NULL)
		return dispatch_fail(k, PR_ERR_TAKEN, "the name is registered "
		    "in the cluster by node %s conn %llu (scope cluster)",
		    ce->node->name, (unsigned long long)ce->conn);
	r = registry_register_opts(&s->reg, k->c->rc, name, len, val, vlen,
	    flags, now_epoch_ms(), &n, &queued);
	if (r != 0)
		return r < 0 ? r : register_refused(k, r, n, flags);
	if (queued > 0) {
		if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
		    proto_put_map(&s->out, 1) < 0 ||
		    proto_put_str(&s->out, "queued", 6) < 0 ||
		    proto_put_uint(&s->out, queued) < 0)
			return -ENOMEM;
		return 0;
	}
	return dispatch_reply_entry(k, n);
}

int
dispatch_unregister(struct call *k)
{
	struct reg_name *n;
	const char *name;
	uint64_t gen;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (args_more(&k->rq->args) && args_uint(&k->rq->args, &gen) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the gen must be a "
		    "uint");
	r = registry_unregister_gen(&k->s->reg, k->c->rc, name, len,
	    k->rq->args.n > 1 ? &gen : NULL);
	if (r == REG_E_NOT_FOUND && dispatch_cluster_lookup(k->s, name, len))
		return dispatch_cluster_unregister(k, name, len,
		    k->rq->args.n > 1 ? &gen : NULL);
	if (r == REG_E_NOT_FOUND)
		return dispatch_fail(k, dispatch_reg_err(r), "the name is not "
		    "registered");
	if (r == REG_E_NOT_OWNER && (n = registry_lookup(&k->s->reg, name,
	    len)) != NULL)
		return dispatch_fail(k, dispatch_reg_err(r), "the name is "
		    "registered by conn %llu",
		    (unsigned long long)n->owner->id);
	if (r == REG_E_STALE)
		return dispatch_fail(k, dispatch_reg_err(r), STALE);
	return dispatch_reply_bool(k, true);
}

int
dispatch_evict(struct call *k)
{
	struct reg_name *n;
	struct conn *owner;
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (!policy_is_admin(&k->s->cfg.policy, &k->c->peer,
	    (uint32_t)getuid()))
		return dispatch_fail(k, PR_ERR_FORBIDDEN, "evict is for uid 0, "
		    "the daemon's user and the admin group");
	if ((n = registry_lookup(&k->s->reg, name, len)) == NULL &&
	    dispatch_cluster_lookup(k->s, name, len) != NULL)
		return dispatch_cluster_evict(k, name, len);
	if (n == NULL)
		return dispatch_fail(k, PR_ERR_NOT_FOUND, "the name is not "
		    "registered");
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
	k->s->metrics.evictions++;
	return dispatch_reply_bool(k, true);
}

int
dispatch_whereis(struct call *k)
{
	struct pr_opt opts[] = {
		{ .key = "scope", .type = PR_OPT_STR },
		{ .key = "consistent", .type = PR_OPT_BOOL },
	};
	enum dispatch_scope scope = SCOPE_ANY;
	struct reg_name *n;
	const char *name;
	size_t len;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	/* The hot paths: no options, a local name, else a cached one. */
	if (!args_more(&k->rq->args)) {
		const struct cl_entry *ce;

		if ((n = registry_lookup(&k->s->reg, name, len)) != NULL ||
		    (ce = dispatch_cluster_lookup(k->s, name, len)) == NULL)
			return dispatch_reply_entry(k, n);
		return dispatch_reply_cluster_entry(k, ce);
	}
	if (args_more(&k->rq->args) && args_opts(&k->rq->args, opts, 2) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map of \"scope\", a str, and \"consistent\", a "
		    "bool");
	if ((r = dispatch_scope(k, &opts[0], SCOPES(SCOPE_ANY, SCOPE_LOCAL) |
	    1u << SCOPE_CLUSTER, &scope)) != 0)
		return r;
	return dispatch_cluster_whereis(k, name, len, scope, opts[1].set &&
	    opts[1].b);
}

int
dispatch_monitor(struct call *k)
{
	struct reg_name *target;
	struct reg_target t;
	uint32_t nsubs;
	uint64_t ref;
	bool found;
	int r;

	if (args_target(&k->rq->args, &t) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_TARGET);
	/* Subscriptions count against the monitor limit too. */
	nsubs = subs_count_of(&k->s->subs, k->c);
	if (t.name != NULL && registry_lookup(&k->s->reg, t.name, t.len) ==
	    NULL && dispatch_cluster_lookup(k->s, t.name, t.len) != NULL) {
		if ((r = dispatch_cluster_monitor(k, t.name, t.len, nsubs,
		    &ref)) != 0)
			return r;
		if (proto_reply_begin(&k->s->out, k->rq->msgid) < 0 ||
		    proto_put_uint(&k->s->out, ref) < 0)
			return -ENOMEM;
		return 0;
	}
	if (t.name != NULL) {
		r = registry_monitor(&k->s->reg, k->c->rc, nsubs, t.name,
		    t.len, &ref, &target);
		found = target != NULL;
	} else
		r = registry_monitor_client(&k->s->reg, k->c->rc, nsubs,
		    t.conn, &ref, &found);
	if (r == REG_E_LIMIT)
		return dispatch_fail(k, dispatch_reg_err(r), "this connection "
		    "holds %u monitors and subscriptions, the limit",
		    k->c->rc->nmonitors + nsubs);
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

int
dispatch_demonitor(struct call *k)
{
	uint64_t ref;

	if (args_uint(&k->rq->args, &ref) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the ref must be a "
		    "uint");
	return dispatch_reply_bool(k, registry_demonitor(&k->s->reg, k->c->rc,
	    ref) || dispatch_cluster_demonitor(k, ref));
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

int
dispatch_list(struct call *k)
{
	struct server *s = k->s;
	struct pr_args *a = &k->rq->args;
	const char *prefix = "", *after = NULL;
	size_t plen = 0, alen = 0, budget, used = 0;
	uint64_t limit = PR_LIST_DEFAULT;
	struct pr_opt opts[] = { { .key = "scope", .type = PR_OPT_STR } };
	enum dispatch_scope scope = SCOPE_LOCAL;
	const struct cl_entry **cl = NULL;
	size_t ncl = 0, icl = 0;
	struct reg_name *n = NULL;
	struct reg_iter it;
	uint32_t count = 0, nlocal = 0;
	int r;

	if (args_more(a) && args_str(a, SIZE_MAX, &prefix, &plen) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the prefix must "
		    "be a str");
	if (args_more(a) && (args_uint(a, &limit) != 0 || limit == 0 ||
	    limit > PR_LIST_MAX))
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the limit must be "
		    "a uint from 1 to %d", PR_LIST_MAX);
	/* A longer after works too: registry_seek compares its first 255
	 * bytes strictly, which no name of 255 bytes or less can equal. */
	if (args_more(a) && args_left(a) > 1 && args_nil(a))
		a->i++;		/* no after, but options follow */
	else if (args_more(a) && args_str(a, SIZE_MAX, &after, &alen) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "after must be a "
		    "str");
	if (args_more(a) && args_opts(a, opts, 1) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the options must "
		    "be a map whose only key is \"scope\", a str");
	if ((r = dispatch_scope(k, &opts[0], SCOPES(SCOPE_LOCAL,
	    SCOPE_CLUSTER) | 1u << SCOPE_ALL, &scope)) != 0)
		return r;
	if (scope != SCOPE_LOCAL && s->cluster == NULL)
		return dispatch_fail(k, PR_ERR_UNAVAILABLE, "this daemon is "
		    "not in a cluster (it runs without --etcd)");
	if (scope != SCOPE_LOCAL && plen <= PR_NAME_MAX) {
		if ((cl = calloc(limit, sizeof(*cl))) == NULL)
			return -ENOMEM;
		ncl = cluster_list(s->cluster, prefix, plen, after, alen, cl,
		    limit);
		s->work += ncl + 1;
	}
	if (scope != SCOPE_CLUSTER && plen <= PR_NAME_MAX) {
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
		/* Cluster names that sort before it come first. */
		while (icl < ncl && count < limit && bytes_cmp(cl[icl]->data,
		    cl[icl]->name_len, n->data, n->name_len) < 0) {
			sz = proto_cluster_entry_size(cl[icl]);
			if (count > 0 && used + proto_array_size(count + 1) +
			    sz > budget)
				goto full;
			used += sz;
			s->list_buf[count++] = NULL;	/* cl[icl] */
			icl++;
		}
		if (count >= limit)
			break;
		sz = proto_entry_size(n);
		if (count > 0 && used + proto_array_size(count + 1) + sz >
		    budget)
			break;
		/* A name in both scopes: its two entries share a page, or
		 * after would pass the second (a page may then hold one
		 * entry more than limit). */
		if (icl < ncl && bytes_cmp(cl[icl]->data, cl[icl]->name_len,
		    n->data, n->name_len) == 0) {
			size_t both = sz + proto_cluster_entry_size(cl[icl]);

			if (count > 0 && (count + 2 > limit ||
			    used + proto_array_size(count + 2) + both >
			    budget))
				break;
			used += both;
			s->list_buf[count++] = n;
			s->list_buf[count++] = NULL;
			icl++;
			nlocal++;
			continue;
		}
		used += sz;
		s->list_buf[count++] = n;
		nlocal++;
	}
	while (icl < ncl && count < limit) {
		size_t sz = proto_cluster_entry_size(cl[icl]);

		if (count > 0 && used + proto_array_size(count + 1) + sz >
		    budget)
			break;
		used += sz;
		s->list_buf[count++] = NULL;
		icl++;
	}
full:
	if (proto_reply_begin(&s->out, k->rq->msgid) < 0 ||
	    proto_put_array(&s->out, count) < 0)
		goto nomem;
	icl = 0;
	for (uint32_t i = 0; i < count; i++) {
		/* NULL slots stand for the cluster entries, in order. */
		if ((s->list_buf[i] != NULL ? proto_put_entry(&s->out,
		    s->list_buf[i]) : proto_put_cluster_entry(&s->out,
		    cl[icl++], cluster_stale(s->cluster))) < 0)
			goto nomem;
	}
	free(cl);
	(void)nlocal;
	return 0;
nomem:
	free(cl);
	return -ENOMEM;
}

int
dispatch_update(struct call *k)
{
	struct reg_name *n;
	const pr_value *v;
	const char *name, *val;
	size_t len, vlen;
	uint64_t gen;
	int r;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	args_value(&k->rq->args, &v);
	if (args_more(&k->rq->args) && args_uint(&k->rq->args, &gen) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the gen must be a "
		    "uint");
	if (dispatch_stored_value(k, v, &val, &vlen) < 0)
		return -ENOMEM;
	if (registry_lookup(&k->s->reg, name, len) == NULL &&
	    dispatch_cluster_lookup(k->s, name, len) != NULL)
		return dispatch_cluster_update(k, name, len, val, vlen,
		    k->rq->args.n > 2 ? &gen : NULL);
	r = registry_update_gen(&k->s->reg, k->c->rc, name, len, val, vlen,
	    k->rq->args.n > 2 ? &gen : NULL, &n);
	if (r < 0)
		return r;
	if (r == REG_E_STALE)
		return dispatch_fail(k, dispatch_reg_err(r), STALE);
	if (r == REG_E_NOT_FOUND)
		return dispatch_fail(k, dispatch_reg_err(r), "the name is not "
		    "registered");
	if (r == REG_E_NOT_OWNER)
		return dispatch_fail(k, dispatch_reg_err(r), "the name is "
		    "registered by conn %llu", (unsigned long long)
		    registry_lookup(&k->s->reg, name, len)->owner->id);
	if (r != 0)
		return dispatch_fail(k, dispatch_reg_err(r), "the value is too "
		    "large");
	return dispatch_reply_entry(k, n);
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

int
dispatch_keys(struct call *k)
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
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the conn must be "
		    "a uint");
	if ((rc = registry_client_find(&s->reg, id)) == NULL)
		return dispatch_fail(k, PR_ERR_NOT_FOUND, "no such connection "
		    "is open");
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
		if (dispatch_too_large(s, size))
			goto too_large;
		keys[nn++] = key_of(n->data, n->name_len);
	}
	for (mb = registry_client_members(rc); mb != NULL;
	    mb = registry_client_members_next(mb)) {
		size += proto_str_size(mb->group->name_len);
		if (dispatch_too_large(s, size))
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
	return dispatch_fail(k, PR_ERR_TOO_LARGE, "%u names and %u groups do "
	    "not fit in max_message", rc->nnames, rc->nmembers);
}

int
dispatch_register_many(struct call *k)
{
	struct server *s = k->s;
	struct pr_args list, e;
	const char **names = NULL;
	const void **vals = NULL;
	size_t *lens = NULL, *vlens = NULL, *voff = NULL, n, i, bad = 0;
	struct reg_name **out = NULL;
	int r;

	if (args_array(&k->rq->args, &list) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, "the param must be "
		    "an array of [name] or [name, value] arrays");
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
			r = dispatch_fail(k, PR_ERR_BAD_REQUEST, "entry %zu "
			    "must be [name] or [name, value] with a valid name",
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
		r = dispatch_fail(k, PR_ERR_BAD_REQUEST, "name %zu of the "
		    "array appears before it in the array", bad + 1);
		goto done;
	}
	for (i = 0; i < n; i++) {
		if (!policy_allows(&s->cfg.policy, &k->c->peer, names[i],
		    lens[i], k->why, sizeof(k->why))) {
			r = PR_ERR_FORBIDDEN;
			goto done;
		}
	}
	/* The no-shadow rule of register (PROTOCOL.md §12), name by name. */
	for (i = 0; s->cluster != NULL && i < n; i++) {
		const struct cl_entry *ce = dispatch_cluster_lookup(s,
		    names[i], lens[i]);

		if (ce != NULL && registry_lookup(&s->reg, names[i],
		    lens[i]) == NULL) {
			r = dispatch_fail(k, PR_ERR_TAKEN, "name %zu of the "
			    "array is registered in the cluster by node %s "
			    "conn %llu (scope cluster)", i + 1, ce->node->name,
			    (unsigned long long)ce->conn);
			goto done;
		}
	}
	r = registry_register_many(&s->reg, k->c->rc, n, names, lens, vals,
	    vlens, now_epoch_ms(), out, &bad);
	if (r == REG_E_TAKEN)
		r = dispatch_fail(k, dispatch_reg_err(r), "name %zu of the "
		    "array is registered by conn %llu", bad + 1,
		    (unsigned long long)out[0]->owner->id);
	else if (r == REG_E_DUPLICATE)
		r = dispatch_fail(k, dispatch_reg_err(r), "name %zu of the "
		    "array appears before it in the array", bad + 1);
	else if (r == REG_E_LIMIT || r == REG_E_LIMIT_UID)
		r = dispatch_fail(k, dispatch_reg_err(r), "%zu more names "
		    "would pass this connection's or its user's limit", n);
	else if (r > 0)
		r = dispatch_fail(k, dispatch_reg_err(r), "a value is too "
		    "large");
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

int
dispatch_queue(struct call *k)
{
	struct reg_waiter *w;
	struct reg_queue *q;
	const char *name;
	size_t len;

	if (args_name(&k->rq->args, &name, &len) != 0)
		return dispatch_fail(k, PR_ERR_BAD_REQUEST, BAD_NAME);
	if (registry_lookup(&k->s->reg, name, len) == NULL &&
	    dispatch_cluster_lookup(k->s, name, len) != NULL)
		return dispatch_cluster_queue(k, name, len);
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
