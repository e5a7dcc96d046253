/*
 * check_alloc.c: the allocation-failure sweep.  Each scenario is a list of
 * registry operations on a prepared registry.  A reference run records
 * every operation's result and a digest of the registry after it; then
 * for N = 1, 2, ... the scenario runs again with the Nth allocation
 * failed (allocfail.h), until a run no longer reaches an Nth allocation.
 * The operation that met the failure must return -ENOMEM and leave the
 * registry exactly as before it (same digest: names, values, owners,
 * gens, queues, groups, monitors, per-client and per-user counts, and no
 * down, gone or event fired); registry_check must hold; the registry
 * must go on working (the next operations run unarmed); a purge of every
 * client must leave it empty; and every block allocated must be freed
 * (allocfail_live, plus ASan's leak checker or valgrind when they run).
 *
 * The calls and subscription tables take a struct server and real
 * connections (calls.h, subs.h), so only their init and resize are swept
 * here.  A table that becomes drivable without sockets joins the sweep
 * as one more struct scenario: a setup, and ops returning the table's
 * result codes; digest() then needs to cover its state.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "allocfail.h"
#include "calls.h"
#include "registry.h"
#include "subs.h"

/* An assertion for hot loops: Check's own (in fork mode) write the line
 * they passed to a file each time, which a sweep would spend its time on. */
#define need(cond, ...)	do {						\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

#define NCLIENTS	64
#define MAXOPS		400
#define AFTER_OPS	8	/* ops run unarmed after a failure */

struct world {
	struct registry		 reg;
	struct reg_client	 cl[NCLIENTS];
	bool			 live;		/* reg is initialised */
	bool			 attached[NCLIENTS];
	bool			 purged[NCLIENTS];
	uint64_t		 refs[NCLIENTS][64];	/* monitors held */
	uint32_t		 nrefs[NCLIENTS];
	uint64_t		 ncb;		/* downs, gones, events */
	uint64_t		 cbhash;	/* and what they said */
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
}

/* A digest of everything observable in the registry and the hooks. */
static uint64_t
digest(struct world *w)
{
	struct registry *r = &w->reg;
	uint64_t h = 0xcbf29ce484222325ULL;
	struct reg_iter it;
	struct reg_name *n;
	struct reg_group *g;

	h_u64(&h, w->live);
	if (!w->live)
		return h;
	h_u64(&h, r->nnames);
	h_u64(&h, r->nmonitors);
	h_u64(&h, r->ngroups);
	h_u64(&h, r->nmembers);
	h_u64(&h, r->nwaiters);
	h_u64(&h, r->gen);
	h_u64(&h, w->ncb);
	h_u64(&h, w->cbhash);
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
	for (int i = 0; i < NCLIENTS; i++) {
		struct reg_client *c = &w->cl[i];
		struct reg_monitor *m;
		struct reg_name *o;
		struct reg_member *mb;
		struct reg_waiter *wt;

		h_u64(&h, w->attached[i]);
		if (!w->attached[i])
			continue;
		h_u64(&h, c->id);
		h_u64(&h, c->nnames);
		h_u64(&h, c->nmonitors);
		h_u64(&h, c->nmembers);
		h_u64(&h, c->nwaits);
		h_u64(&h, c->next_ref);
		h_u64(&h, c->dying);
		h_u64(&h, c->detached);
		if (c->usage != NULL) {
			h_u64(&h, c->usage->conns);
			h_u64(&h, c->usage->names);
			h_u64(&h, c->usage->waits);
		}
		LIST_FOREACH(m, &c->monitors, by_holder) {
			h_u64(&h, m->ref);
			if (m->target != NULL)
				h_bytes(&h, m->target->data,
				    m->target->name_len);
			if (m->target_client != NULL)
				h_u64(&h, m->target_client->id);
		}
		LIST_FOREACH(m, &c->watchers, by_target)
			h_u64(&h, m->holder->id ^ m->ref << 8);
		LIST_FOREACH(o, &c->names, owner_link)
			h_bytes(&h, o->data, o->name_len);
		LIST_FOREACH(mb, &c->members, by_client)
			h_bytes(&h, mb->group->name, mb->group->name_len);
		LIST_FOREACH(wt, &c->waits, by_client)
			h_bytes(&h, wt->ready->data, wt->ready->name_len);
	}
	return h;
}

/* The cross-checks beyond registry_check: lookups agree with the lists
 * and the counts. */
static void
check_consistent(struct world *w)
{
	struct registry *r = &w->reg;
	const char *bad;
	uint64_t names = 0, members = 0;

	if (!w->live)
		return;
	bad = registry_check(r);
	need(bad == NULL, "registry_check: %s", bad);
	for (int i = 0; i < NCLIENTS; i++) {
		struct reg_client *c = &w->cl[i];
		struct reg_name *n;
		struct reg_member *mb;
		struct reg_monitor *m;
		uint32_t k = 0;

		if (!w->attached[i])
			continue;
		need(registry_client_find(r, c->id) == (c->dying ? NULL : c),
		    "client %d: found as it is not", i);
		LIST_FOREACH(n, &c->names, owner_link) {
			need(n->owner == c && registry_lookup(r, n->data,
			    n->name_len) == (c->dying ? NULL : n),
			    "client %d: a name it owns is not found", i);
			k++;
		}
		need(k == c->nnames, "client %d: %u names listed, %u counted",
		    i, k, c->nnames);
		names += k;
		k = 0;
		LIST_FOREACH(mb, &c->members, by_client) {
			need(registry_group(r, mb->group->name,
			    mb->group->name_len) == mb->group,
			    "client %d: a group it is in is not found", i);
			k++;
		}
		need(k == c->nmembers, "client %d: %u memberships listed, %u "
		    "counted", i, k, c->nmembers);
		members += k;
		LIST_FOREACH(m, &c->monitors, by_holder) {
			need(m->target == NULL || registry_lookup(r,
			    m->target->data, m->target->name_len) ==
			    (m->target->owner->dying ? NULL : m->target),
			    "client %d: a name it watches is not found", i);
			need(m->target_client == NULL || c->dying ||
			    registry_client_find(r, m->target_client->id) ==
			    m->target_client,
			    "client %d: a client it watches is not found", i);
		}
	}
	need(names == r->nnames, "%llu names listed, %llu counted",
	    (unsigned long long)names, (unsigned long long)r->nnames);
	need(members == r->nmembers, "%llu memberships listed, %llu counted",
	    (unsigned long long)members, (unsigned long long)r->nmembers);
}

/* Purge every client: nothing may remain.  Then free the registry. */
static void
world_end(struct world *w)
{
	struct registry *r = &w->reg;
	struct reg_iter it;

	if (!w->live)
		return;
	for (int i = 0; i < NCLIENTS; i++) {
		if (w->attached[i])
			registry_client_purge(r, &w->cl[i]);
	}
	ck_assert_ptr_null(registry_check(r));
	ck_assert_uint_eq(r->nnames, 0);
	ck_assert_uint_eq(r->nmonitors, 0);
	ck_assert_uint_eq(r->ngroups, 0);
	ck_assert_uint_eq(r->nmembers, 0);
	ck_assert_uint_eq(r->nwaiters, 0);
	ck_assert_ptr_null(registry_seek(r, "", 0, false, &it));
	ck_assert_ptr_null(registry_group_seek(r, "", 0, &it));
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

/* Client i's credentials: ids from 1; uids shared by pairs. */
static int
attach(struct world *w, int i)
{
	int rc = registry_client_init(&w->reg, &w->cl[i], (uint64_t)i + 1,
	    1000 + i, 1000 + i / 2, 1000 + i / 2);

	if (rc == 0)
		w->attached[i] = true;
	return rc;
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

/* A value of some length from i, as msgpack bytes the registry copies. */
static const char *
val(int i, size_t *len)
{
	static char b[80];

	*len = (size_t)(i * 7) % 70;
	memset(b, 'a' + i % 26, *len);
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

	return registry_register_opts(&w->reg, &w->cl[c], b, len, v, vlen,
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
		return w->live ? attach(w, i - 1) : 100;
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
		return registry_register(&w->reg, &w->cl[i % 3], b, len, v,
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
		ck_assert_int_eq(registry_monitor_client(&w->reg, &w->cl[3],
		    w->cl[2].id, &ref, &found), 0);
}

/* Monitor names (registered or not) and clients (attached or not);
 * demonitor some. */
static int
op_monitor(struct world *w, int i)
{
	int h = i % 3, rc;
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
		rc = registry_monitor(&w->reg, &w->cl[h], b, len, &ref, &t);
		break;
	case 3:
		rc = registry_monitor_client(&w->reg, &w->cl[h],
		    i % 7 == 0 ? 999 : w->cl[(h + 1) % 4].id, &ref, &found);
		break;
	default:
		if (w->nrefs[h] == 0)
			return 0;
		return registry_demonitor(&w->reg, &w->cl[h],
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
		return registry_leave(&w->reg, &w->cl[i % 4], b, len);
	return registry_join(&w->reg, &w->cl[i % 4], b, len, v, vlen,
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
			return 100;
		return registry_unregister_gen(&w->reg, n->owner, b, len,
		    NULL);
	case 5:		/* a waiter gives up its place */
		return registry_unregister(&w->reg, &w->cl[c], b, len);
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
	return registry_register_many(&w->reg, &w->cl[i % 3], n, names,
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
			ck_assert_int_eq(registry_monitor(&w->reg, &w->cl[2],
			    b, len, &ref, &t), 0);
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
			return 100;
		gen = n->gen + (i % 12 == 3);	/* every other one stale */
		return registry_update_gen(&w->reg, n->owner, b, len, v, vlen,
		    &gen, &out);
	case 5:
		return registry_evict(&w->reg, b, len);
	default:
		if ((n = registry_lookup(&w->reg, b, len)) == NULL)
			return 100;
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
		ck_assert_int_eq(registry_monitor(&w->reg, &w->cl[(i + 1) % 4],
		    b, len, &ref, &t), 0);
		if (i % 3 == 0)
			ck_assert_int_eq(reg_as(w, i % 2 ? 0 : 2, "p", i,
			    REG_QUEUE), 0);
		if (i % 4 == 0)
			ck_assert_int_eq(reg_as(w, 3, "p", i, REG_QUEUE), 0);
		len = nm(b, sizeof(b), "pg", i % 9);
		(void)registry_join(&w->reg, &w->cl[i % 3], b, len, "x", 1, 0,
		    &mb);
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(registry_monitor_client(&w->reg, &w->cl[i],
		    w->cl[(i + 3) % 4].id, &ref, &found), 0);
}

/* Purge client 0 in slices, then client 1 at once, then register names
 * the purges freed or handed over. */
static int
op_purge(struct world *w, int i)
{
	if (!w->purged[0]) {
		w->purged[0] = registry_client_purge_step(&w->reg, &w->cl[0],
		    3);
		return w->purged[0];
	}
	if (!w->purged[1]) {
		registry_client_purge(&w->reg, &w->cl[1]);
		w->purged[1] = true;
		return 7;
	}
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
		return 100;
	return registry_unregister(&w->reg, n->owner, b, len);
}

static const struct scenario scenarios[] = {
	{ "init", setup_none, op_init, 1 + 60, true },
	{ "register", setup_filled, op_register, 80, true },
	{ "monitor", setup_monitors, op_monitor, 150, true },
	{ "group", setup_base, op_group, 160, true },
	{ "queue", setup_queues, op_queue, 150, true },
	{ "register_many", setup_filled, op_many, 24, true },
	{ "update_evict", setup_entries, op_entry, 60, true },
	{ "purge", setup_rich, op_purge, 40, true },
	/* Hand-overs use the registration allocated when the waiter queued
	 * (registry.h): ending names never allocates, so cannot fail. */
	{ "evict", setup_rich, op_evict, 60, false },
};

/* -------------------------------------------------------------------- */

static struct world *
world_new(const struct scenario *sc)
{
	struct world *w = calloc(1, sizeof(*w));

	ck_assert_ptr_nonnull(w);
	w->cbhash = 1;
	sc->setup(w);
	check_consistent(w);
	return w;
}

static void
world_free(struct world *w)
{
	world_end(w);
	free(w);
}

START_TEST(sweep)
{
	const struct scenario *sc = &scenarios[_i];
	static int rc_ref[MAXOPS];
	static uint64_t dig_ref[MAXOPS + 1];
	struct world *w;
	int64_t live0 = allocfail_live();
	uint64_t total, n, absorbed = 0;

	ck_assert_int_le(sc->nops, MAXOPS);
	/* The reference run; it counts the allocations the ops make. */
	w = world_new(sc);
	dig_ref[0] = digest(w);
	allocfail_arm(UINT64_MAX);
	for (int i = 0; i < sc->nops; i++) {
		rc_ref[i] = sc->op(w, i);
		need(rc_ref[i] != -ENOMEM, "%s: op %d: -ENOMEM unarmed",
		    sc->name, i);
		dig_ref[i + 1] = digest(w);
	}
	total = allocfail_seen();
	allocfail_disarm();
	check_consistent(w);
	world_free(w);
	ck_assert_int_eq(allocfail_live(), live0);
	ck_assert_msg((total > 0) == sc->allocates, "%s: %llu allocations",
	    sc->name, (unsigned long long)total);

	for (n = 1;; n++) {
		int i, rc = 0;

		ck_assert_uint_le(n, total + 1);
		w = world_new(sc);
		allocfail_arm(n);
		for (i = 0; i < sc->nops; i++) {
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
		if (rc == -ENOMEM) {
			ck_assert_msg(digest(w) == dig_ref[i], "%s: N=%llu: "
			    "op %d failed but changed the registry",
			    sc->name, (unsigned long long)n, i);
		} else {
			/* A failure the op could do without: then it must
			 * have done all it does without one. */
			ck_assert_msg(rc == rc_ref[i] &&
			    digest(w) == dig_ref[i + 1], "%s: N=%llu: op %d "
			    "met the failure and returned %d (unarmed %d), "
			    "not -ENOMEM", sc->name, (unsigned long long)n, i,
			    rc, rc_ref[i]);
			absorbed++;
		}
		check_consistent(w);
		/* The registry goes on working after the failure. */
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
	printf("%s: %llu allocations swept (%llu absorbed)\n", sc->name,
	    (unsigned long long)total, (unsigned long long)absorbed);
}
END_TEST

/* The calls and subscription tables' init and resize: -ENOMEM, and the
 * deinit server_deinit does afterwards frees all. */
START_TEST(sweep_tables)
{
	int64_t live0 = allocfail_live();
	uint64_t n;

	for (n = 1;; n++) {
		struct calls cs;
		struct subs ss;
		int rc;

		ck_assert_uint_le(n, 64);
		allocfail_arm(n);
		if ((rc = calls_init(&cs)) == 0) {
			if ((rc = subs_init(&ss, 100)) == 0) {
				rc = subs_resize(&ss, 1000);
				ck_assert(rc == 0 || ss.cap == 0);
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
