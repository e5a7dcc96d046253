/*
 * check_alloc.c: the allocation-failure sweep.  Each scenario is a list of
 * operations on a prepared world: a registry, and in the later scenarios
 * the calls and subscription tables wired to it as dispatch wires them,
 * reaching fake peers (fakepeer.h) through struct peer_ops.  A reference
 * run records every operation's result and a digest of the world after
 * it; then for N = 1, 2, ... the scenario runs again with the Nth
 * allocation failed (allocfail.h), until a run no longer reaches an Nth
 * allocation.
 *
 * The operation that met the failure must return -ENOMEM (the registry's,
 * the calls' and the subscriptions' out-of-memory code alike) and leave
 * the world exactly as before it (same digest: names, values, owners,
 * gens, queues, groups, monitors, client records and the purge queue,
 * per-client and per-user counts, no down, gone or event fired; pending
 * calls and awaits, subscriptions, the history, every module count; and
 * every byte each fake peer was sent); only a register of a name whose
 * closed owner is still being purged may, failing, have finished that
 * name's purge (out loud, for good: the purge is no part of the request),
 * and nothing else.  Or the op may do without the memory:
 * then it must have done all it does unarmed.  Or, where the module has
 * no caller to answer (an event, a registration answering awaits, a
 * timer, a reply), it may give up on the peers it owed something: those
 * are told out_of_memory, and must have been sent whole messages only;
 * every other peer must have got exactly what it got unarmed; the doomed
 * peers then go, as the daemon closes them at the end of the loop turn.
 * Then registry_check must hold; the world must go on working (the next
 * operations run unarmed); closing and purging every client and every
 * peer must leave it empty; and every block allocated must be freed
 * (allocfail_live, plus ASan's leak checker or valgrind when they run).
 *
 * Timers (calls' and awaits' timeouts) run on a private event base, with
 * zero timeouts run at once or timeouts long enough never to come due:
 * nothing is timed.  libevent's own allocations are not the daemon's and
 * are not failed.
 *
 * Longer than the house's ~1,200 lines: the digest that proves "nothing
 * changed" must see every table of the three modules at once, and the
 * scenarios share it; split, each part would need all of it.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>

#include "allocfail.h"
#include "calls.h"
#include "fakepeer.h"
#include "registry.h"
#include "subs.h"

/* An assertion for hot loops: Check's own (in fork mode) write the line
 * they passed to a file each time, which a sweep would spend its time on. */
#define need(cond, ...)	do {						\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

#define NCLIENTS	64
#define NPEERS		12
#define NACTIVE		4	/* peers the ops address at once */
#define MAXOPS		400
#define MAXIDS		256
#define AFTER_OPS	8	/* ops run unarmed after a failure */
#define SKIP		100	/* an op with nothing to do */

static struct event_base *base;

struct world {
	struct registry		 reg;
	struct reg_client	*cl[NCLIENTS];	/* NULL: none, or closed */
	bool			 live;		/* reg is initialised */
	bool			 held[NCLIENTS]; /* a uid hold of client i */
	uint64_t		 refs[NCLIENTS][64];	/* monitors held */
	uint32_t		 nrefs[NCLIENTS];
	uint64_t		 ncb;		/* downs, gones, events */
	uint64_t		 cbhash;	/* and what they said */
	/* The calls and subscriptions, and their peers: peer k is client
	 * k's connection; the ops address NACTIVE of them from off on. */
	struct calls		 cs;
	struct subs		 ss;
	bool			 calls_live;
	bool			 subs_live;
	struct fakepeer		 fp[NPEERS];
	bool			 gone[NPEERS];
	unsigned		 off;
	uint64_t		 ids[MAXIDS];	/* calls made: callee << 32 | id,
						   or subs: peer << 32 | id */
	uint32_t		 nids;
	bool			 dying_target;	/* the op names a name of a
						   closed client */
};

struct scenario {
	const char	*name;
	void		(*setup)(struct world *);
	int		(*op)(struct world *, int i);
	int		 nops;
	bool		 allocates;	/* false: the ops claim not to */
};

/* FNV-1a, over everything a digest covers. */
static void
h_bytes(uint64_t *h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		*h ^= b[i];
		*h *= 0x100000001b3ULL;
	}
}

static void
h_u64(uint64_t *h, uint64_t v)
{
	h_bytes(h, &v, sizeof(v));
}

/* Which of the world's peers p is (the modules know peers as pointers). */
static uint64_t
peer_index(const struct world *w, const void *p)
{
	const struct fakepeer *fp = p;

	if (fp >= w->fp && fp < w->fp + NPEERS)
		return (uint64_t)(fp - w->fp);
	return 1000;
}

static void
rec_down(void *arg, struct reg_client *holder, uint64_t ref,
    const struct reg_target *t, enum pr_down_reason why)
{
	struct world *w = arg;

	w->ncb++;
	h_u64(&w->cbhash, holder->id);
	h_u64(&w->cbhash, ref);
	if (t->name != NULL)
		h_bytes(&w->cbhash, t->name, t->len);
	h_u64(&w->cbhash, t->conn);
	h_u64(&w->cbhash, why);
}

static void
rec_gone(void *arg, uint64_t gen)
{
	struct world *w = arg;

	w->ncb++;
	h_u64(&w->cbhash, gen);
	if (w->calls_live)
		calls_gen_gone(&w->cs, gen);
}

static void
rec_event(void *arg, const struct reg_event *ev)
{
	struct world *w = arg;

	w->ncb++;
	h_u64(&w->cbhash, ev->kind);
	if (ev->name != NULL)
		h_bytes(&w->cbhash, reg_name_str(ev->name),
		    ev->name->name_len);
	if (ev->member != NULL)
		h_bytes(&w->cbhash, ev->member->group->name,
		    ev->member->group->name_len);
	h_u64(&w->cbhash, ev->prev != NULL ? ev->prev->id : 0);
	/* As dispatch_event wires them. */
	if (w->subs_live)
		subs_event(&w->ss, ev);
	if (w->calls_live && ev->kind == REG_EV_REGISTERED)
		calls_registered(&w->cs, ev->name);
}

/* Names held by the closed records of a user. */
static uint64_t
dying_names_of(const struct registry *r, const struct reg_uid *u)
{
	const struct reg_client *c;
	uint64_t k = 0;

	LIST_FOREACH(c, &r->clients, link) {
		if (c->dying && (u == NULL || c->usage == u))
			k += c->nnames;
	}
	return k;
}

/* Monitors the client holds on names of closed clients. */
static uint32_t
on_dying(const struct reg_client *c)
{
	const struct reg_monitor *m;
	uint32_t k = 0;

	LIST_FOREACH(m, &c->monitors, by_holder)
		k += m->target != NULL && m->target->owner->dying;
	return k;
}

/* A client record; with purge_free, leaving out the names still to be
 * purged (which a register may finish first: see digest). */
static void
digest_client(uint64_t *hp, const struct registry *r,
    const struct reg_client *c, bool purge_free)
{
	uint64_t h = *hp;
	struct reg_monitor *m;
	struct reg_name *o;
	struct reg_member *mb;
	struct reg_waiter *wt;
	struct reg_queue *q;

	h_u64(&h, c->id);
	h_u64(&h, c->conn != NULL);
	if (!purge_free || !c->dying)
		h_u64(&h, c->nnames);
	h_u64(&h, c->nmonitors - (purge_free ? on_dying(c) : 0));
	h_u64(&h, c->nmembers);
	h_u64(&h, c->nwaits);
	h_u64(&h, c->next_ref);
	h_u64(&h, c->dying);
	h_u64(&h, c->usage->uid);
	h_u64(&h, c->usage->conns);
	h_u64(&h, c->usage->clients);
	h_u64(&h, c->usage->names - (purge_free ?
	    dying_names_of(r, c->usage) : 0));
	h_u64(&h, c->usage->waits);
	LIST_FOREACH(m, &c->monitors, by_holder) {
		if (purge_free && m->target != NULL && m->target->owner->dying)
			continue;
		h_u64(&h, m->ref);
		if (m->target != NULL)
			h_bytes(&h, m->target->data, m->target->name_len);
		if (m->target_client != NULL)
			h_u64(&h, m->target_client->id);
	}
	LIST_FOREACH(m, &c->watchers, by_target)
		h_u64(&h, m->holder->id ^ m->ref << 8);
	if (!purge_free || !c->dying) {
		LIST_FOREACH(o, &c->names, owner_link)
			h_bytes(&h, o->data, o->name_len);
	}
	LIST_FOREACH(mb, &c->members, by_client)
		h_bytes(&h, mb->group->name, mb->group->name_len);
	LIST_FOREACH(wt, &c->waits, by_client)
		h_bytes(&h, wt->ready->data, wt->ready->name_len);
	LIST_FOREACH(q, &c->queues, by_owner)
		h_bytes(&h, q->name->data, q->name->name_len);
	*hp = h;
}

/* The calls' observable state: counts, and what each peer has pending. */
static void
digest_calls(uint64_t *hp, struct world *w)
{
	struct calls *cs = &w->cs;
	uint64_t h = *hp;

	h_u64(&h, cs->pending);
	h_u64(&h, cs->nawaits);
	h_u64(&h, cs->last_id);
	h_u64(&h, cs->replies_late);
	h_u64(&h, cs->by_id.count);
	h_u64(&h, cs->by_gen.count);
	h_u64(&h, cs->awaits.count);
	/* Not peers.count: a peer's record is made on its first call or
	 * await and kept until it goes (ids and counts stay put), so one
	 * made by a request that then failed is what its next request makes;
	 * world_end checks that every record goes with its peer. */
	h_u64(&h, TAILQ_EMPTY(&cs->answering));
	for (int k = 0; k < NPEERS; k++)
		h_u64(&h, calls_pending_of(cs, &w->fp[k]));
	*hp = h;
}

/* The subscriptions and the history, slot by slot. */
static void
digest_subs(uint64_t *hp, struct world *w)
{
	struct subs *ss = &w->ss;
	uint64_t h = *hp;
	struct sub *sb;

	h_u64(&h, ss->nsubs);
	h_u64(&h, ss->seq);
	h_u64(&h, ss->floor);
	h_u64(&h, ss->cap);
	h_u64(&h, ss->head);
	h_u64(&h, ss->count);
	h_u64(&h, ss->bytes);
	h_u64(&h, ss->buckets.count);
	/* Not peers.count: as in digest_calls (its next_id stays put). */
	for (size_t l = 0; l <= PR_NAME_MAX; l++)
		h_u64(&h, ss->nbuckets[l]);
	TAILQ_FOREACH(sb, &ss->all, all) {
		/* Whose it is is private (the per-peer counts below). */
		h_u64(&h, sb->id);
		h_u64(&h, sb->groups);
		h_u64(&h, sb->none);
		h_u64(&h, sb->bucket != NULL);
		h_bytes(&h, sb->prefix, sb->plen);
	}
	for (size_t i = 0; i < ss->count; i++) {
		const struct hev *e = &ss->ring[(ss->head + i) % ss->cap];

		h_u64(&h, e->seq);
		h_u64(&h, e->kind);
		h_u64(&h, e->name_len);
		h_u64(&h, e->group);
		h_bytes(&h, proto_out_data(&e->buf), proto_out_len(&e->buf));
	}
	for (int k = 0; k < NPEERS; k++)
		h_u64(&h, subs_count_of(ss, &w->fp[k]));
	*hp = h;
}

/* What a fake peer was sent, byte for byte, and its out_of_memory calls. */
static uint64_t
peer_digest(const struct fakepeer *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h_u64(&h, p->out.size);
	h_bytes(&h, p->out.data, p->out.size);
	h_u64(&h, p->oom);
	return h;
}

/*
 * A digest of everything observable in the world and the hooks.  With
 * purge_free, all but the names closed clients still have to be purged
 * and what their removal tells (downs, gones, events): a register of
 * such a name removes it first, out loud, for good, whether or not the
 * register then succeeds (registry_register_opts: the purge is no part
 * of the request).
 */
static uint64_t
digest_of(struct world *w, bool purge_free)
{
	struct registry *r = &w->reg;
	uint64_t h = 0xcbf29ce484222325ULL;
	struct reg_iter it;
	struct reg_name *n;
	struct reg_group *g;
	struct reg_client *c;

	h_u64(&h, w->live);
	if (!w->live)
		return h;
	h_u64(&h, r->nnames - (purge_free ? dying_names_of(r, NULL) : 0));
	if (!purge_free)
		h_u64(&h, r->nmonitors);
	h_u64(&h, r->ngroups);
	h_u64(&h, r->nmembers);
	h_u64(&h, r->nwaiters);
	h_u64(&h, r->gen);
	h_u64(&h, r->uids.count);
	h_u64(&h, r->ids.count);
	if (!purge_free) {
		h_u64(&h, w->ncb);
		h_u64(&h, w->cbhash);
	}
	/* The walk skips closed clients' names. */
	for (n = registry_seek(r, "", 0, false, &it); n != NULL;
	    n = registry_next(r, &it)) {
		struct reg_queue *q;
		struct reg_waiter *wt;

		h_bytes(&h, n->data, n->name_len + n->value_len);
		h_u64(&h, n->owner->id);
		h_u64(&h, n->since_ms);
		h_u64(&h, n->gen);
		h_u64(&h, n->flags);
		if ((q = registry_queue(r, n->data, n->name_len)) == NULL)
			continue;
		h_u64(&h, q->n);
		TAILQ_FOREACH(wt, &q->waiters, by_queue) {
			h_u64(&h, wt->ready->owner->id);
			h_u64(&h, wt->ready->flags);
			h_bytes(&h, wt->ready->data, wt->ready->name_len +
			    wt->ready->value_len);
		}
	}
	for (g = registry_group_seek(r, "", 0, &it); g != NULL;
	    g = registry_group_next(r, &it)) {
		struct reg_member *m;

		h_bytes(&h, g->name, g->name_len);
		h_u64(&h, g->nmembers);
		TAILQ_FOREACH(m, &g->members, by_group) {
			h_u64(&h, m->client->id);
			h_u64(&h, m->gen);
			h_u64(&h, m->since_ms);
			h_bytes(&h, m->value, m->value_len);
		}
	}
	/* Every record the registry holds, closed ones on the purge queue
	 * included, in its own order; then the purge queue's order. */
	LIST_FOREACH(c, &r->clients, link)
		digest_client(&h, r, c, purge_free);
	TAILQ_FOREACH(c, &r->purging, purge_link)
		h_u64(&h, c->id);
	for (int i = 0; i < NCLIENTS; i++) {
		h_u64(&h, w->cl[i] != NULL);
		if (w->held[i])
			h_u64(&h, registry_uid_conns(r, 1000 + i / 2));
	}
	if (w->calls_live)
		digest_calls(&h, w);
	if (w->subs_live)
		digest_subs(&h, w);
	for (int k = 0; k < NPEERS; k++)
		h_u64(&h, peer_digest(&w->fp[k]));
	return h;
}

static uint64_t
digest(struct world *w)
{
	return digest_of(w, false);
}

/* The cross-checks beyond registry_check: lookups agree with the lists
 * and the counts. */
static void
check_consistent(struct world *w)
{
	struct registry *r = &w->reg;
	struct reg_client *c;
	const char *bad;
	uint64_t names = 0, members = 0, nopen = 0, ndying = 0, npurging = 0;

	if (!w->live)
		return;
	bad = registry_check(r);
	need(bad == NULL, "registry_check: %s", bad);
	LIST_FOREACH(c, &r->clients, link) {
		struct reg_name *n;
		struct reg_member *mb;
		struct reg_monitor *m;
		uint32_t k = 0;

		if (c->dying)
			ndying++;
		else
			nopen++;
		need(c->dying == (c->conn == NULL), "client %llu: closed as "
		    "it is not", (unsigned long long)c->id);
		need(registry_client_find(r, c->id) == (c->dying ? NULL : c),
		    "client %llu: found as it is not",
		    (unsigned long long)c->id);
		LIST_FOREACH(n, &c->names, owner_link) {
			need(n->owner == c && registry_lookup(r, n->data,
			    n->name_len) == (c->dying ? NULL : n),
			    "client %llu: a name it owns is not found",
			    (unsigned long long)c->id);
			k++;
		}
		need(k == c->nnames, "client %llu: %u names listed, %u "
		    "counted", (unsigned long long)c->id, k, c->nnames);
		/* Only names keep a closed record. */
		need(!c->dying || (k > 0 && c->nmonitors == 0 &&
		    c->nmembers == 0 && c->nwaits == 0 &&
		    LIST_EMPTY(&c->watchers) && LIST_EMPTY(&c->queues)),
		    "client %llu: closed, holding more than names",
		    (unsigned long long)c->id);
		names += k;
		k = 0;
		LIST_FOREACH(mb, &c->members, by_client) {
			need(registry_group(r, mb->group->name,
			    mb->group->name_len) == mb->group,
			    "client %llu: a group it is in is not found",
			    (unsigned long long)c->id);
			k++;
		}
		need(k == c->nmembers, "client %llu: %u memberships listed, "
		    "%u counted", (unsigned long long)c->id, k, c->nmembers);
		members += k;
		LIST_FOREACH(m, &c->monitors, by_holder) {
			need(m->target == NULL || registry_lookup(r,
			    m->target->data, m->target->name_len) ==
			    (m->target->owner->dying ? NULL : m->target),
			    "client %llu: a name it watches is not found",
			    (unsigned long long)c->id);
			need(m->target_client == NULL ||
			    registry_client_find(r, m->target_client->id) ==
			    m->target_client, "client %llu: a client it "
			    "watches is not found", (unsigned long long)c->id);
		}
	}
	for (int i = 0; i < NCLIENTS; i++)
		need(w->cl[i] == NULL || (!w->cl[i]->dying &&
		    registry_client_find(r, w->cl[i]->id) == w->cl[i]),
		    "client %d: open but not found", i);
	TAILQ_FOREACH(c, &r->purging, purge_link) {
		need(c->dying, "an open client on the purge queue");
		npurging++;
	}
	/* A closed record lives on the purge queue, and only there. */
	need(nopen == r->ids.count && ndying == npurging, "%llu open, %llu "
	    "closed records; %llu ids, %llu purging",
	    (unsigned long long)nopen, (unsigned long long)ndying,
	    (unsigned long long)r->ids.count, (unsigned long long)npurging);
	need(names == r->nnames, "%llu names listed, %llu counted",
	    (unsigned long long)names, (unsigned long long)r->nnames);
	need(members == r->nmembers, "%llu memberships listed, %llu counted",
	    (unsigned long long)members, (unsigned long long)r->nmembers);
	if (w->calls_live)
		need(w->cs.pending == w->cs.by_id.count, "%llu calls pending, "
		    "%zu indexed", (unsigned long long)w->cs.pending,
		    w->cs.by_id.count);
}

/* Client i's user: uids shared by pairs. */
static uint32_t
uid_of(int i)
{
	return 1000 + (uint32_t)i / 2;
}

/* Peer k goes, as server_conn_gone takes a connection down: its calls
 * settle, its subscriptions end, its record goes to the purge queue;
 * then its socket closes (its uid hold).  Idempotent. */
static void
peer_gone(struct world *w, int k)
{
	if (w->gone[k])
		return;
	w->gone[k] = true;
	if (w->calls_live)
		calls_peer_gone(&w->cs, &w->fp[k]);
	if (w->subs_live)
		subs_peer_gone(&w->ss, &w->fp[k]);
	if (w->cl[k] != NULL) {
		/* Its purge runs in slices over the next loop turns, done
		 * before the next request here. */
		if (!registry_client_close(&w->reg, w->cl[k], 2))
			while (registry_purge_slice(&w->reg, 2))
				;
		w->cl[k] = NULL;
	}
	if (w->held[k]) {
		registry_uid_put(&w->reg, uid_of(k));
		w->held[k] = false;
	}
}

/* Every peer goes, every client closes and is purged in slices: nothing
 * may remain.  Then free the tables and the registry. */
static void
world_end(struct world *w)
{
	struct registry *r = &w->reg;
	struct reg_iter it;

	if (!w->live)
		return;
	for (int k = 0; k < NPEERS; k++)
		peer_gone(w, k);
	for (int i = 0; i < NCLIENTS; i++) {
		if (w->cl[i] != NULL)
			(void)registry_client_close(r, w->cl[i], 1);
		w->cl[i] = NULL;
	}
	while (registry_purge_slice(r, 5))
		ck_assert_ptr_null(registry_check(r));
	for (int i = 0; i < NCLIENTS; i++) {
		if (w->held[i])
			registry_uid_put(r, uid_of(i));
		w->held[i] = false;
	}
	ck_assert_ptr_null(registry_check(r));
	ck_assert_uint_eq(r->nnames, 0);
	ck_assert_uint_eq(r->nmonitors, 0);
	ck_assert_uint_eq(r->ngroups, 0);
	ck_assert_uint_eq(r->nmembers, 0);
	ck_assert_uint_eq(r->nwaiters, 0);
	ck_assert_uint_eq(r->ids.count, 0);
	ck_assert_uint_eq(r->uids.count, 0);
	ck_assert(LIST_EMPTY(&r->clients));
	ck_assert(TAILQ_EMPTY(&r->purging));
	ck_assert_ptr_null(registry_seek(r, "", 0, false, &it));
	ck_assert_ptr_null(registry_group_seek(r, "", 0, &it));
	if (w->calls_live) {
		ck_assert_uint_eq(w->cs.pending, 0);
		ck_assert_uint_eq(w->cs.nawaits, 0);
		ck_assert_uint_eq(w->cs.by_id.count, 0);
		ck_assert_uint_eq(w->cs.by_gen.count, 0);
		ck_assert_uint_eq(w->cs.awaits.count, 0);
		ck_assert_uint_eq(w->cs.peers.count, 0);
		ck_assert(TAILQ_EMPTY(&w->cs.answering));
		calls_deinit(&w->cs);
		w->calls_live = false;
	}
	if (w->subs_live) {
		ck_assert_uint_eq(w->ss.nsubs, 0);
		ck_assert_uint_eq(w->ss.buckets.count, 0);
		ck_assert_uint_eq(w->ss.peers.count, 0);
		ck_assert(TAILQ_EMPTY(&w->ss.all));
		subs_deinit(&w->ss);
		w->subs_live = false;
	}
	registry_deinit(r);
	w->live = false;
}

static void
hooks(struct world *w)
{
	w->reg.gone = rec_gone;
	w->reg.event = rec_event;
	w->reg.max_names = 100000;
	w->reg.max_monitors = 100000;
}

/* Client i connects: its socket holds a uid, then it gets a record (as
 * conn.c sets one up, and undoes the hold when the record fails); peer i
 * is its connection.  Ids from 1. */
static int
attach(struct world *w, int i)
{
	void *conn = i < NPEERS ? (void *)&w->fp[i] : (void *)&w->cl[i];

	if (registry_uid_hold(&w->reg, uid_of(i)) < 0)
		return -ENOMEM;
	w->cl[i] = registry_client_new(&w->reg, (uint64_t)i + 1, 1000 + i,
	    uid_of(i), uid_of(i), conn);
	if (w->cl[i] == NULL) {
		registry_uid_put(&w->reg, uid_of(i));
		return -ENOMEM;
	}
	w->held[i] = true;
	return 0;
}

/* Close client i's connection (its socket stays open, holding its uid,
 * until world_end): true when its purge is over at once. */
static int
close_client(struct world *w, int i, size_t budget)
{
	bool done;

	if (w->cl[i] == NULL)
		return SKIP;
	done = registry_client_close(&w->reg, w->cl[i], budget);
	w->cl[i] = NULL;
	return done;
}

/* A registry with four clients. */
static void
setup_base(struct world *w)
{
	ck_assert_int_eq(registry_init(&w->reg, 0, 0, rec_down, w), 0);
	w->live = true;
	hooks(w);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(attach(w, i), 0);
}

/* A value of some length from i, as bytes the registry copies. */
static const char *
val(int i, size_t *len)
{
	static char b[80];

	*len = (size_t)(i * 7) % 70;
	memset(b, 'a' + i % 26, *len);
	return b;
}

/* A value as msgpack bytes (a str of len bytes), for what gets encoded
 * for peers. */
static const char *
mval(int i, size_t len, size_t *vlen)
{
	static char b[4096];

	if (len < 256) {
		b[0] = (char)0xd9;
		b[1] = (char)len;
		*vlen = len + 2;
	} else {
		b[0] = (char)0xda;
		b[1] = (char)(len >> 8);
		b[2] = (char)len;
		*vlen = len + 3;
	}
	memset(b + *vlen - len, 'a' + i % 26, len);
	return b;
}

static size_t
nm(char *b, size_t sz, const char *prefix, int i)
{
	return (size_t)snprintf(b, sz, "%s%04d", prefix, i);
}

static int
reg_as(struct world *w, int c, const char *prefix, int i, unsigned flags)
{
	char b[32];
	size_t len = nm(b, sizeof(b), prefix, i), vlen;
	const char *v = val(i, &vlen);
	struct reg_name *out;
	uint32_t queued;

	if (w->cl[c] == NULL)
		return SKIP;
	return registry_register_opts(&w->reg, w->cl[c], b, len, v, vlen,
	    flags, 1000 + (uint64_t)i, &out, &queued);
}

/* -------------------------------------------------------------------- */

/* registry_init, then clients enough to grow the id and uid tables. */
static void
setup_none(struct world *w)
{
	(void)w;
}

static int
op_init(struct world *w, int i)
{
	int rc;

	if (i > 0)
		return w->live ? attach(w, i - 1) : SKIP;
	if ((rc = registry_init(&w->reg, 0, 0, rec_down, w)) < 0) {
		/* As server_deinit does after a failed server_init. */
		registry_deinit(&w->reg);
		return rc;
	}
	w->live = true;
	hooks(w);
	return 0;
}

/* A thousand names ahead, so that the ops grow the name table and split
 * the ordered index's nodes. */
static void
setup_filled(struct world *w)
{
	setup_base(w);
	for (int i = 0; i < 1020; i++)
		ck_assert_int_eq(reg_as(w, 3, "f", i * 2, 0), 0);
}

/* register and register_opts, some taken, some allowing replacement,
 * names among and past the filler. */
static int
op_register(struct world *w, int i)
{
	char b[32];
	size_t len, vlen;
	const char *v;
	struct reg_name *out;

	if (i % 9 == 8)		/* taken */
		return reg_as(w, i % 3, "f", i * 2, 0);
	if (i % 3 == 0) {
		len = nm(b, sizeof(b), "f", i * 2 + 1);
		v = val(i, &vlen);
		return registry_register(&w->reg, w->cl[i % 3], b, len, v,
		    vlen, 5000 + (uint64_t)i, &out);
	}
	return reg_as(w, i % 3, i % 2 ? "g" : "f", i * 2 + 1,
	    i % 4 == 1 ? REG_ALLOW_REPLACEMENT : 0);
}

/* Names to watch, and a thousand monitors of a client, so that the ops
 * grow the monitor and watched tables. */
static void
setup_monitors(struct world *w)
{
	uint64_t ref;
	bool found;

	setup_base(w);
	for (int i = 0; i < 80; i++)
		ck_assert_int_eq(reg_as(w, i % 2, "m", i, 0), 0);
	for (int i = 0; i < 1015; i++)
		ck_assert_int_eq(registry_monitor_client(&w->reg, w->cl[3], 0,
		    w->cl[2]->id, &ref, &found), 0);
}

/* Monitor names (registered or not) and clients (attached or not), some
 * with subscriptions counted against the limit; demonitor some. */
static int
op_monitor(struct world *w, int i)
{
	int h = i % 3, rc;
	uint32_t others = (uint32_t)(i % 4);
	uint64_t ref = 0;
	struct reg_name *t;
	bool found;
	char b[32];
	size_t len;

	switch (i % 5) {
	case 0:
	case 1:
	case 2:
		len = nm(b, sizeof(b), "m", i % 100);
		rc = registry_monitor(&w->reg, w->cl[h], others, b, len, &ref,
		    &t);
		break;
	case 3:
		rc = registry_monitor_client(&w->reg, w->cl[h], others,
		    i % 7 == 0 ? 999 : w->cl[(h + 1) % 4]->id, &ref, &found);
		break;
	default:
		if (w->nrefs[h] == 0)
			return 0;
		return registry_demonitor(&w->reg, w->cl[h],
		    w->refs[h][--w->nrefs[h]]) ? 1 : 2;
	}
	if (rc == 0 && ref != 0 && w->nrefs[h] < 64)
		w->refs[h][w->nrefs[h]++] = ref;
	return rc;
}

/* Joins over sixty groups (growing the group table), rejoins, leaves. */
static int
op_group(struct world *w, int i)
{
	char b[32];
	size_t len = nm(b, sizeof(b), "grp", (i * 7) % 61), vlen;
	const char *v = val(i, &vlen);
	struct reg_member *out;

	if (i % 6 == 5)
		return registry_leave(&w->reg, w->cl[i % 4], b, len);
	return registry_join(&w->reg, w->cl[i % 4], b, len, v, vlen,
	    100 + (uint64_t)i, &out);
}

/* Names some allowing replacement, owned by clients 0 and 1. */
static void
setup_queues(struct world *w)
{
	setup_base(w);
	for (int i = 0; i < 70; i++)
		ck_assert_int_eq(reg_as(w, i % 2, "q", i,
		    i % 3 == 0 ? REG_ALLOW_REPLACEMENT : 0), 0);
}

/* Queue for names (growing the queue table), replace, unregister with
 * hand-over, give up places. */
static int
op_queue(struct world *w, int i)
{
	char b[32];
	int k = (i * 11) % 70, c = 2 + i % 2;
	size_t len = nm(b, sizeof(b), "q", k);
	struct reg_name *n;

	switch (i % 7) {
	case 4:		/* the owner leaves; the first waiter takes over */
		if ((n = registry_lookup(&w->reg, b, len)) == NULL)
			return SKIP;
		return registry_unregister_gen(&w->reg, n->owner, b, len,
		    NULL);
	case 5:		/* a waiter gives up its place */
		return registry_unregister(&w->reg, w->cl[c], b, len);
	case 6:
		return reg_as(w, c, "q", k, REG_REPLACE |
		    REG_ALLOW_REPLACEMENT);
	default:
		return reg_as(w, c, "q", k, REG_QUEUE);
	}
}

/* Batches of names at once, all or none: fresh, taken, duplicated. */
static int
op_many(struct world *w, int i)
{
	static const size_t sizes[] = { 1, 2, 5, 20, 60, 3, 4, 30 };
	size_t n = sizes[i % 8], bad, lens[64], vlens[64];
	char bufs[64][32];
	const char *names[64];
	const void *vals[64];
	struct reg_name *out[64];

	for (size_t k = 0; k < n; k++) {
		lens[k] = nm(bufs[k], sizeof(bufs[k]), "many",
		    i * 64 + (int)k);
		names[k] = bufs[k];
		vals[k] = val((int)k, &vlens[k]);
	}
	if (i % 8 == 5)		/* one taken: by the filler */
		lens[1] = nm(bufs[1], sizeof(bufs[1]), "f", 10);
	if (i % 8 == 6)		/* a name twice */
		lens[3] = nm(bufs[3], sizeof(bufs[3]), "many", i * 64);
	return registry_register_many(&w->reg, w->cl[i % 3], n, names,
	    lens, vals, vlens, 7000 + (uint64_t)i, out, &bad);
}

/* Names with monitors and queues on them, to update and evict. */
static void
setup_entries(struct world *w)
{
	uint64_t ref;
	struct reg_name *t;
	char b[32];

	setup_base(w);
	for (int i = 0; i < 40; i++) {
		size_t len = nm(b, sizeof(b), "e", i);

		ck_assert_int_eq(reg_as(w, i % 2, "e", i, 0), 0);
		if (i % 3 == 0)
			ck_assert_int_eq(registry_monitor(&w->reg, w->cl[2],
			    0, b, len, &ref, &t), 0);
		if (i % 4 == 0)
			ck_assert_int_eq(reg_as(w, 3, "e", i, REG_QUEUE), 0);
	}
}

/* Updates that grow and shrink values, fenced updates, evictions. */
static int
op_entry(struct world *w, int i)
{
	char b[32];
	int k = (i * 3) % 40;
	size_t len = nm(b, sizeof(b), "e", k), vlen;
	const char *v = val(i * 5 + 1, &vlen);
	struct reg_name *n, *out;
	uint64_t gen;

	switch (i % 6) {
	case 3:
		if ((n = registry_lookup(&w->reg, b, len)) == NULL)
			return SKIP;
		gen = n->gen + (i % 12 == 3);	/* every other one stale */
		return registry_update_gen(&w->reg, n->owner, b, len, v, vlen,
		    &gen, &out);
	case 5:
		return registry_evict(&w->reg, b, len);
	default:
		if ((n = registry_lookup(&w->reg, b, len)) == NULL)
			return SKIP;
		return registry_update(&w->reg, n->owner, b, len, v, vlen,
		    &out);
	}
}

/*
 * Client 0 holds everything: names with values, some allowing
 * replacement, watched and with queues; monitors on names and on
 * clients; memberships; places in others' queues.  Others watch it and
 * its names.
 */
static void
setup_rich(struct world *w)
{
	uint64_t ref;
	struct reg_name *t;
	struct reg_member *mb;
	bool found;
	char b[32];

	setup_base(w);
	for (int i = 0; i < 50; i++) {
		size_t len = nm(b, sizeof(b), "p", i);

		ck_assert_int_eq(reg_as(w, i % 2, "p", i,
		    i % 5 == 0 ? REG_ALLOW_REPLACEMENT : 0), 0);
		ck_assert_int_eq(registry_monitor(&w->reg, w->cl[(i + 1) % 4],
		    0, b, len, &ref, &t), 0);
		if (i % 3 == 0)
			ck_assert_int_eq(reg_as(w, i % 2 ? 0 : 2, "p", i,
			    REG_QUEUE), 0);
		if (i % 4 == 0)
			ck_assert_int_eq(reg_as(w, 3, "p", i, REG_QUEUE), 0);
		len = nm(b, sizeof(b), "pg", i % 9);
		(void)registry_join(&w->reg, w->cl[i % 3], b, len, "x", 1, 0,
		    &mb);
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(registry_monitor_client(&w->reg, w->cl[i], 0,
		    w->cl[(i + 3) % 4]->id, &ref, &found), 0);
}

/* The rich world, where clients 0 and 1 own hundreds of names more, some
 * watched: their purges span many slices. */
static void
setup_purge(struct world *w)
{
	uint64_t ref;
	struct reg_name *t;
	char b[32];

	setup_rich(w);
	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(reg_as(w, i % 5 == 4, "pz", i, 0), 0);
		if (i % 7 == 0)
			ck_assert_int_eq(registry_monitor(&w->reg, w->cl[2],
			    0, b, nm(b, sizeof(b), "pz", i), &ref, &t), 0);
	}
}

/* Is the name one a closed client has still to be purged of? */
static bool
dying_name(struct world *w, const char *name, size_t len)
{
	struct reg_client *c;
	struct reg_name *n;

	LIST_FOREACH(c, &w->reg.clients, link) {
		if (!c->dying)
			continue;
		for (n = registry_client_names(c); n != NULL;
		    n = registry_client_names_next(n)) {
			if (n->name_len == len && memcmp(n->data, name, len) == 0)
				return true;
		}
	}
	return false;
}

/*
 * Close client 0 (its names others wait for change hands, the rest are
 * purged in slices from the purge queue), then client 1 behind it while
 * the first is still purging; meanwhile others register names of theirs
 * (taking over a dying owner's name); then register names the purges
 * freed or handed over.
 */
static int
op_purge(struct world *w, int i)
{
	if (i == 0)
		return close_client(w, 0, 16);
	if (i == 6)
		return close_client(w, 1, 16) + 2;
	if (i % 4 == 3) {
		char b[32];
		size_t len;
		const char *prefix = i % 8 == 3 ? "pz" : "p";
		int j = i % 8 == 3 ? (i * 7) % 300 : i % 50;

		len = nm(b, sizeof(b), prefix, j);
		w->dying_target = dying_name(w, b, len);
		return reg_as(w, 2 + i % 2, prefix, j, 0);
	}
	if (!TAILQ_EMPTY(&w->reg.purging))
		return registry_purge_slice(&w->reg, 16) + 4;
	return reg_as(w, 2 + i % 2, "p", i % 50, 0);
}

/* Evictions and unregistrations that end queues and fire monitors. */
static int
op_evict(struct world *w, int i)
{
	char b[32];
	size_t len = nm(b, sizeof(b), "p", (i * 7) % 50);
	struct reg_name *n;

	if (i % 2)
		return registry_evict(&w->reg, b, len);
	if ((n = registry_lookup(&w->reg, b, len)) == NULL)
		return SKIP;
	return registry_unregister(&w->reg, n->owner, b, len);
}

/* Closes and purge slices of every size alone (hand-overs, downs, the
 * purge queue with several records on it), then evictions. */
static int
op_close(struct world *w, int i)
{
	switch (i) {
	case 0:
		return close_client(w, 0, 16);
	case 3:
		return close_client(w, 1, 7) + 2;
	case 5:
		return close_client(w, 3, 0) + 2;
	}
	if (!TAILQ_EMPTY(&w->reg.purging))
		return registry_purge_slice(&w->reg, (size_t)(i % 5) * 4) + 4;
	return op_evict(w, i);
}

/* -------------------------------------------------------------------- */
/* Calls and awaits, subscriptions and the history, with fake peers. */

/* Peer k of the NACTIVE the ops address now, or -1 when it is gone. */
static int
active(const struct world *w, int k)
{
	int p = (int)w->off + k % NACTIVE;

	return p < NPEERS && !w->gone[p] ? p : -1;
}

/* The oldest active peer goes, and the next one becomes active. */
static int
op_peer_gone(struct world *w)
{
	if (w->off + NACTIVE >= NPEERS)
		return SKIP;
	peer_gone(w, (int)w->off++);
	return 0;
}

/* Run the timers due now: the zero timeouts. */
static void
run_due(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* What dispatch_call passes calls_start. */
struct push {
	struct reg_target	 t;
	uint64_t		 caller;
	pr_value		 payload;
};

static int
encode(struct pr_out *o, uint64_t id, void *arg)
{
	struct push *p = arg;

	return proto_push_call(o, id, &p->t, p->caller, &p->payload);
}

/* A str of len bytes, as a peer's payload or result. */
static pr_value
str_value(size_t len)
{
	static char b[1024];
	pr_value v = { .type = MSGPACK_OBJECT_STR };

	memset(b, 'r', sizeof(b));
	v.via.str.ptr = b;
	v.via.str.size = (uint32_t)(len < sizeof(b) ? len : sizeof(b));
	return v;
}

/* Call peer b from peer a (request msgid) with a payload of plen bytes;
 * a call made is remembered for a reply. */
static int
call(struct world *w, int a, uint32_t msgid, int b, uint64_t gen,
    uint64_t timeout_ms, size_t plen)
{
	struct push p = {
		.t = { NULL, 0, (uint64_t)b + 1 },
		.caller = (uint64_t)a + 1,
		.payload = str_value(plen),
	};
	int rc;

	rc = calls_start(&w->cs, &w->fp[a], msgid, &w->fp[b], gen,
	    timeout_ms, encode, &p);
	if (rc == 0 && w->nids < MAXIDS)
		w->ids[w->nids++] = (uint64_t)b << 32 | w->cs.last_id;
	return rc;
}

/* Peer k's client registers prefix-j with a msgpack value of vlen bytes,
 * or, owning it already, updates it. */
static int
reg_peer(struct world *w, int k, const char *prefix, int j, size_t vlen)
{
	char b[32];
	size_t len = nm(b, sizeof(b), prefix, j), mlen;
	const char *v = mval(j, vlen, &mlen);
	struct reg_name *n, *out;

	if (w->cl[k] == NULL)
		return SKIP;
	n = registry_lookup(&w->reg, b, len);
	if (n != NULL && n->owner == w->cl[k])
		return registry_update(&w->reg, w->cl[k], b, len, v, mlen,
		    &out) + 10;
	return registry_register(&w->reg, w->cl[k], b, len, v, mlen,
	    (uint64_t)j, &out);
}

/* Its owner unregisters prefix-j. */
static int
unreg_name(struct world *w, const char *prefix, int j)
{
	char b[32];
	size_t len = nm(b, sizeof(b), prefix, j);
	struct reg_name *n = registry_lookup(&w->reg, b, len);

	if (n == NULL)
		return SKIP;
	return registry_unregister(&w->reg, n->owner, b, len);
}

/* Every peer has a client record; names c0000..c0003 to call through. */
static void
setup_calls(struct world *w)
{
	ck_assert_int_eq(registry_init(&w->reg, 0, 0, rec_down, w), 0);
	w->live = true;
	hooks(w);
	for (int k = 0; k < NPEERS; k++)
		ck_assert_int_eq(attach(w, k), 0);
	ck_assert_int_eq(calls_init(&w->cs, base, &w->reg, 8, &fakepeer_ops,
	    NULL), 0);
	w->calls_live = true;
	for (int j = 0; j < 4; j++)
		ck_assert_int_eq(reg_peer(w, (j + 1) % NACTIVE, "c", j, 3), 0);
}

/*
 * Calls by peer and through a name's registration, with payloads that
 * grow the encoding buffer; replies with results and errors; awaits,
 * answered when the name is registered; zero timeouts that time out at
 * once (calls and awaits); registrations ending under calls; peers going
 * with calls made by them, to them, and awaits.
 */
static int
op_calls(struct world *w, int i)
{
	int a = active(w, i), b = active(w, i + 1), rc;
	pr_value result;
	char nb[32];
	uint64_t id;
	struct reg_name *n;
	size_t len;

	if (a < 0 || b < 0)
		return SKIP;
	switch (i % 10) {
	case 0:
		return call(w, a, (uint32_t)i, b, 0, 60000,
		    (size_t)(i * 37) % 600);
	case 1:
		len = nm(nb, sizeof(nb), "c", (i / 10) % 4);
		if ((n = registry_lookup(&w->reg, nb, len)) == NULL)
			return SKIP;
		b = (int)peer_index(w, n->owner->conn);
		return call(w, a, (uint32_t)i, b, n->gen, 60000,
		    (size_t)(i * 11) % 90);
	case 2:
	case 9:
		if (i % 20 == 9)
			return op_peer_gone(w);
		if (w->nids == 0)
			return SKIP;
		id = w->ids[--w->nids];
		if (i % 10 == 9)
			return calls_reply(&w->cs, &w->fp[id >> 32],
			    id & 0xffffffff, NULL, "oops", 4, "it broke", 8);
		result = str_value((size_t)(i * 53) % 700);
		return calls_reply(&w->cs, &w->fp[id >> 32], id & 0xffffffff,
		    &result, NULL, 0, NULL, 0);
	case 3:
		len = nm(nb, sizeof(nb), "w", (i * 5) % 12);
		return calls_await(&w->cs, &w->fp[a], (uint32_t)i, nb, len,
		    60000);
	case 4:
		len = nm(nb, sizeof(nb), "w", (i / 10) % 12);
		if (registry_lookup(&w->reg, nb, len) != NULL)
			return unreg_name(w, "w", (i / 10) % 12) + 20;
		return reg_peer(w, a, "w", (i / 10) % 12,
		    (size_t)(i * 13) % 300);
	case 5:
		rc = call(w, a, (uint32_t)i, b, 0, 0, (size_t)i);
		run_due();
		return rc;
	case 6:
		len = nm(nb, sizeof(nb), "never", i);
		rc = calls_await(&w->cs, &w->fp[a], (uint32_t)i, nb, len, 0);
		run_due();
		return rc;
	case 7:
		return unreg_name(w, "c", (i / 10) % 4);
	default:
		return reg_peer(w, b, "c", (i / 10) % 4, (size_t)i);
	}
}

/* Every peer has a client record; peer 1's output is small, so that its
 * subscriptions overflow; a history of 8 with five events in it. */
static void
setup_subs(struct world *w)
{
	ck_assert_int_eq(registry_init(&w->reg, 0, 0, rec_down, w), 0);
	w->live = true;
	hooks(w);
	for (int k = 0; k < NPEERS; k++)
		ck_assert_int_eq(attach(w, k), 0);
	ck_assert_int_eq(subs_init(&w->ss, 8, &w->reg, &fakepeer_ops, NULL),
	    0);
	w->subs_live = true;
	w->fp[1].bound = 600;
	for (int j = 0; j < 5; j++)
		ck_assert_int_eq(reg_peer(w, j % NACTIVE, "s", j, 8), 0);
}

/* A subscription made is remembered for an unsubscribe. */
static int
sub_start(struct world *w, int a, const char *prefix, bool groups,
    const uint64_t *since)
{
	struct sub *sb;
	uint64_t id;
	bool resumable;
	int rc;

	rc = subs_start(&w->ss, &w->fp[a], prefix, strlen(prefix), groups,
	    since, &resumable, &id, &sb);
	if (rc != 0)
		return rc;
	if (w->nids < MAXIDS)
		w->ids[w->nids++] = (uint64_t)a << 32 | id;
	/* As dispatch_subscribe: the replay follows the response. */
	if (since != NULL && resumable)
		(void)subs_replay(&w->ss, sb, *since);
	return resumable ? 1 : 0;
}

/*
 * Subscriptions with and without since (resumable or not, replayed),
 * prefixes sharing buckets or not, with the groups flag or without;
 * events into the history ring (wrapping, values large enough to give a
 * slot's memory back) and delivered, or overflowing a full subscriber;
 * group events; unsubscribes; peers going.
 */
static int
op_subs(struct world *w, int i)
{
	static const char *const prefixes[] = { "", "s", "s0", "g", "s00" };
	int a = active(w, i);
	uint64_t since, id;

	if (a < 0)
		return SKIP;
	switch (i % 10) {
	case 0:
		return sub_start(w, a, prefixes[(i / 10) % 5], i % 3 == 0,
		    NULL);
	case 1:
		since = w->ss.seq > (uint64_t)(i % 4) * 4 ?
		    w->ss.seq - (uint64_t)(i % 4) * 4 : 0;
		return sub_start(w, a, prefixes[(i / 10 + 1) % 5], i % 4 == 1,
		    &since);
	case 2:
		return reg_peer(w, a, "s", (i * 7) % 20, (size_t)(i * 3) % 60);
	case 3:
		return reg_peer(w, a, "s", (i * 3) % 20,
		    i % 20 == 3 ? 1100 : (size_t)i * 5);
	case 4:
	case 5: {
		char b[32];
		size_t len = nm(b, sizeof(b), "g", (i / 10) % 3), vlen;
		const char *v = mval(i, (size_t)i % 40, &vlen);
		struct reg_member *mb;

		if (w->cl[a] == NULL)
			return SKIP;
		if (i % 10 == 5)
			return registry_leave(&w->reg, w->cl[a], b, len);
		return registry_join(&w->reg, w->cl[a], b, len, v, vlen, 0,
		    &mb);
	}
	case 6:
		return unreg_name(w, "s", (i * 3) % 20);
	case 7:
		if (w->nids == 0)
			return SKIP;
		id = w->ids[--w->nids];
		return subs_stop(&w->ss, &w->fp[id >> 32], id & 0xffffffff);
	case 8:
		return sub_start(w, a, "s0", true, NULL);
	default:
		if (i % 20 == 9)
			return op_peer_gone(w);
		return registry_evict(&w->reg, "s0003", 5);
	}
}

static const struct scenario scenarios[] = {
	{ "init", setup_none, op_init, 1 + 60, true },
	{ "register", setup_filled, op_register, 80, true },
	{ "monitor", setup_monitors, op_monitor, 150, true },
	{ "group", setup_base, op_group, 160, true },
	{ "queue", setup_queues, op_queue, 150, true },
	{ "register_many", setup_filled, op_many, 24, true },
	{ "update_evict", setup_entries, op_entry, 60, true },
	{ "purge", setup_purge, op_purge, 60, true },
	/* Hand-overs use the registration allocated when the waiter queued
	 * (registry.h), and a purge frees what the client had: ending names
	 * and closing clients never allocates, so cannot fail. */
	{ "evict", setup_rich, op_evict, 60, false },
	{ "close", setup_purge, op_close, 60, false },
	{ "calls", setup_calls, op_calls, 120, true },
	{ "subs", setup_subs, op_subs, 120, true },
};

/* -------------------------------------------------------------------- */

static struct world *
world_new(const struct scenario *sc)
{
	struct world *w = calloc(1, sizeof(*w));

	ck_assert_ptr_nonnull(w);
	w->cbhash = 1;
	for (int k = 0; k < NPEERS; k++)
		fakepeer_init(&w->fp[k]);
	sc->setup(w);
	check_consistent(w);
	return w;
}

static void
world_free(struct world *w)
{
	world_end(w);
	for (int k = 0; k < NPEERS; k++)
		fakepeer_deinit(&w->fp[k]);
	free(w);
}

/* Was p sent whole messages only (responses and pushes)? */
static bool
whole(const struct fakepeer *p)
{
	msgpack_unpacked u;
	size_t off = 0;
	bool ok = true;

	msgpack_unpacked_init(&u);
	while (ok && off < p->out.size)
		ok = msgpack_unpack_next(&u, p->out.data, p->out.size, &off) ==
		    MSGPACK_UNPACK_SUCCESS &&
		    u.data.type == MSGPACK_OBJECT_ARRAY &&
		    (u.data.via.array.size == 3 || u.data.via.array.size == 4);
	msgpack_unpacked_destroy(&u);
	return ok;
}

START_TEST(sweep)
{
	const struct scenario *sc = &scenarios[_i];
	static int rc_ref[MAXOPS];
	static uint64_t dig_ref[MAXOPS + 1];
	static uint64_t out_ref[MAXOPS + 1][NPEERS];
	static uint64_t free_ref[MAXOPS + 1], dying_ref[MAXOPS + 1];
	struct world *w;
	int64_t live0;
	uint64_t total, n, absorbed = 0, gaveup = 0, lost = 0, purged = 0;

	ck_assert_ptr_nonnull(base = event_base_new());
	live0 = allocfail_live();
	ck_assert_int_le(sc->nops, MAXOPS);
	/* The reference run; it counts the allocations the ops make. */
	w = world_new(sc);
	dig_ref[0] = digest(w);
	allocfail_arm(UINT64_MAX);
	for (int i = 0; i < sc->nops; i++) {
		free_ref[i] = digest_of(w, true);
		dying_ref[i] = w->live ? dying_names_of(&w->reg, NULL) : 0;
		rc_ref[i] = sc->op(w, i);
		need(rc_ref[i] != -ENOMEM, "%s: op %d: -ENOMEM unarmed",
		    sc->name, i);
		dig_ref[i + 1] = digest(w);
		for (int k = 0; k < NPEERS; k++)
			out_ref[i + 1][k] = peer_digest(&w->fp[k]);
	}
	total = allocfail_seen();
	allocfail_disarm();
	check_consistent(w);
	world_free(w);
	ck_assert_int_eq(allocfail_live(), live0);
	ck_assert_msg((total > 0) == sc->allocates, "%s: %llu allocations",
	    sc->name, (unsigned long long)total);

	for (n = 1;; n++) {
		unsigned oom[NPEERS];
		int i, rc = 0;

		ck_assert_uint_le(n, total + 1);
		w = world_new(sc);
		allocfail_arm(n);
		for (i = 0; i < sc->nops; i++) {
			for (int k = 0; k < NPEERS; k++)
				oom[k] = w->fp[k].oom;
			w->dying_target = false;
			rc = sc->op(w, i);
			if (allocfail_fired())
				break;
			need(rc == rc_ref[i], "%s: N=%llu op %d: "
			    "%d, not %d as unarmed", sc->name,
			    (unsigned long long)n, i, rc, rc_ref[i]);
		}
		allocfail_disarm();
		if (i == sc->nops) {
			/* The whole run without a failure: the sweep is over,
			 * and it agreed with the reference throughout. */
			ck_assert_uint_eq(digest(w), dig_ref[sc->nops]);
			check_consistent(w);
			world_free(w);
			break;
		}
		if (rc == -ENOMEM && digest(w) != dig_ref[i]) {
			/* Only a register of a name its closed owner had
			 * still to be purged of may change one thing: that
			 * name is purged, out loud. */
			ck_assert_msg(w->dying_target &&
			    digest_of(w, true) == free_ref[i] &&
			    dying_names_of(&w->reg, NULL) + 1 == dying_ref[i] &&
			    w->ncb > 0, "%s: N=%llu: op %d failed but changed "
			    "the world", sc->name, (unsigned long long)n, i);
			purged++;
		} else if (rc == -ENOMEM) {
			/* Failed, and changed nothing. */
		} else if (rc == rc_ref[i] && digest(w) == dig_ref[i + 1]) {
			/* A failure the op could do without: it did all it
			 * does without one. */
			absorbed++;
		} else {
			/*
			 * The op has nobody to answer -ENOMEM to: it may give
			 * up on the peers it owed something (they are closed
			 * at the end of the turn), or on the history (which
			 * then restarts after the event, so that no resume
			 * skips it).  Whole messages only, and every other
			 * peer got exactly what it did unarmed.
			 */
			bool doomed = false;
			bool restarted = w->subs_live && w->ss.cap > 0 &&
			    w->ss.count == 0 && w->ss.floor == w->ss.seq;

			ck_assert_msg(rc == rc_ref[i], "%s: N=%llu: op %d met "
			    "the failure and returned %d (unarmed %d), not "
			    "-ENOMEM", sc->name, (unsigned long long)n, i, rc,
			    rc_ref[i]);
			for (int k = 0; k < NPEERS; k++) {
				struct fakepeer *p = &w->fp[k];

				ck_assert_msg(whole(p), "%s: N=%llu: op %d: "
				    "peer %d got part of a message", sc->name,
				    (unsigned long long)n, i, k);
				if (p->oom > oom[k]) {
					doomed = true;
					continue;
				}
				ck_assert_msg(peer_digest(p) == out_ref[i + 1][k],
				    "%s: N=%llu: op %d: peer %d got other than "
				    "unarmed", sc->name, (unsigned long long)n,
				    i, k);
			}
			ck_assert_msg(doomed || restarted, "%s: N=%llu: op %d "
			    "met the failure, changed the world otherwise than "
			    "unarmed, and gave up on nobody", sc->name,
			    (unsigned long long)n, i);
			check_consistent(w);
			for (int k = 0; k < NPEERS; k++) {
				if (w->fp[k].oom > oom[k])
					peer_gone(w, k);
			}
			if (doomed)
				gaveup++;
			else
				lost++;
		}
		check_consistent(w);
		/* The world goes on working after the failure. */
		for (int k = i + 1; k < sc->nops && k <= i + AFTER_OPS; k++) {
			need(sc->op(w, k) != -ENOMEM, "%s: N=%llu: op %d: "
			    "-ENOMEM unarmed", sc->name, (unsigned long long)n,
			    k);
			check_consistent(w);
		}
		world_free(w);
		ck_assert_msg(allocfail_live() == live0, "%s: N=%llu: %lld "
		    "blocks leaked", sc->name, (unsigned long long)n,
		    (long long)(allocfail_live() - live0));
	}
	event_base_free(base);
	base = NULL;
	printf("%s: %llu allocations swept (%llu absorbed, %llu gave up on "
	    "peers, %llu restarted the history, %llu finished a purged "
	    "name)\n", sc->name, (unsigned long long)total,
	    (unsigned long long)absorbed, (unsigned long long)gaveup,
	    (unsigned long long)lost, (unsigned long long)purged);
}
END_TEST

/* The calls and subscription tables' init and resize: -ENOMEM, and the
 * deinit server_deinit does afterwards frees all; a resize that fails
 * leaves no history, as the reload then says. */
START_TEST(sweep_tables)
{
	struct registry reg;
	int64_t live0;
	uint64_t n;

	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_int_eq(registry_init(&reg, 0, 0, rec_down, NULL), 0);
	live0 = allocfail_live();
	for (n = 1;; n++) {
		struct calls cs;
		struct subs ss;
		int rc;

		ck_assert_uint_le(n, 64);
		allocfail_arm(n);
		if ((rc = calls_init(&cs, base, &reg, 4, &fakepeer_ops,
		    NULL)) == 0) {
			if ((rc = subs_init(&ss, 100, &reg, &fakepeer_ops,
			    NULL)) == 0) {
				rc = subs_resize(&ss, 1000);
				ck_assert(rc == 0 || (ss.cap == 0 &&
				    ss.count == 0 && ss.floor == ss.seq));
			}
			subs_deinit(&ss);
			calls_deinit(&cs);
		}
		allocfail_disarm();
		ck_assert_int_eq(rc, allocfail_fired() ? -ENOMEM : 0);
		ck_assert_int_eq(allocfail_live(), live0);
		if (!allocfail_fired())
			break;
	}
	registry_deinit(&reg);
	event_base_free(base);
	base = NULL;
	printf("tables: %llu allocations swept\n", (unsigned long long)n - 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tcase_create("sweep");
	SRunner *sr;
	int failed;

	/* Each run builds and frees a registry: keep the heap's pages rather
	 * than return them and fault them in again, run after run. */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, sweep, 0,
	    (int)(sizeof(scenarios) / sizeof(scenarios[0])));
	tcase_add_test(tc, sweep_tables);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
