/*
 * check_registry.c: unit tests of the registry core and its hash table,
 * with no sockets: names, monitors, purge, ordering, invariants.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "btree.h"
#include "htab.h"
#include "registry.h"

/* Every down the registry fires, recorded. */
struct down_rec {
	struct reg_client	*holder;
	uint64_t		 ref;
	char			 name[256];	/* "" for a conn target */
	uint64_t		 conn;
	enum pr_down_reason	 why;
};

struct downs {
	struct down_rec	 rec[4096];
	int		 n;
	uint64_t	 gone[64];	/* gens the gone hook was told */
	int		 ngone;
	struct reg_event ev[256];	/* events, their pointers stale */
	int		 nev;
};

static void
record_down(void *arg, struct reg_client *holder, uint64_t ref,
    const struct reg_target *target, enum pr_down_reason why)
{
	struct downs *d = arg;

	ck_assert_int_lt(d->n, 4096);
	d->rec[d->n].holder = holder;
	d->rec[d->n].ref = ref;
	if (target->name != NULL)
		memcpy(d->rec[d->n].name, target->name, target->len);
	d->rec[d->n].name[target->name ? target->len : 0] = '\0';
	d->rec[d->n].conn = target->conn;
	d->rec[d->n].why = why;
	d->n++;
}

static void
record_event(void *arg, const struct reg_event *ev)
{
	struct downs *d = arg;

	if (d->nev < 256)
		d->ev[d->nev] = *ev;
	d->nev++;
}

static void
record_gone(void *arg, uint64_t gen)
{
	struct downs *d = arg;

	if (d->ngone < 64)
		d->gone[d->ngone] = gen;
	d->ngone++;
}

static struct registry reg;
static struct reg_iter it;	/* registry_seek's, in the ordered tests */
static struct downs downs;
static struct reg_client *ca, *cb, *cc;
/* What the clients' records point back to: stands for a connection. */
static int conn_a, conn_b, conn_c;

static void
setup(void)
{
	memset(&downs, 0, sizeof(downs));
	ck_assert_int_eq(registry_init(&reg, 1000, 1000, record_down, &downs),
	    0);
	reg.gone = record_gone;
	reg.event = record_event;
	ca = registry_client_new(&reg, 1, 100, 1000, 1000, &conn_a);
	cb = registry_client_new(&reg, 2, 200, 1001, 1001, &conn_b);
	cc = registry_client_new(&reg, 3, 300, 1002, 1002, &conn_c);
	ck_assert(ca != NULL && cb != NULL && cc != NULL);
}

/* The client's connection goes and its purge runs to the end. */
static void
purge(struct reg_client *c)
{
	ck_assert(registry_client_close(&reg, c, SIZE_MAX));
}

static void
teardown(void)
{
	ck_assert_ptr_null(registry_check(&reg));
	registry_deinit(&reg);
}

static struct reg_name *
reg_ok(struct reg_client *c, const char *name, const char *value)
{
	struct reg_name *n = NULL;

	ck_assert_int_eq(registry_register(&reg, c, name, strlen(name), value,
	    value ? strlen(value) : 0, 42, &n), 0);
	ck_assert_ptr_nonnull(n);
	return n;
}

START_TEST(register_lookup_unregister)
{
	struct reg_name *n = reg_ok(ca, "db", "\xa1x"), *t;

	ck_assert_ptr_eq(registry_lookup(&reg, "db", 2), n);
	ck_assert_ptr_eq(n->owner, ca);
	ck_assert_uint_eq(n->since_ms, 42);
	ck_assert_uint_eq(n->value_len, 2);
	ck_assert_mem_eq(reg_name_value(n), "\xa1x", 2);
	ck_assert_int_eq(registry_register(&reg, cb, "db", 2, NULL, 0, 1, &t),
	    REG_E_TAKEN);
	ck_assert_ptr_eq(t, n);
	ck_assert_int_eq(registry_register(&reg, ca, "db", 2, NULL, 0, 1, &t),
	    REG_E_TAKEN);
	ck_assert_int_eq(registry_unregister(&reg, cb, "db", 2),
	    REG_E_NOT_OWNER);
	ck_assert_int_eq(registry_unregister(&reg, ca, "nope", 4),
	    REG_E_NOT_FOUND);
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_int_eq(registry_unregister(&reg, ca, "db", 2), 0);
	ck_assert_ptr_null(registry_lookup(&reg, "db", 2));
	ck_assert_uint_eq(reg.nnames, 0);
	ck_assert_uint_eq(ca->nnames, 0);
}
END_TEST

START_TEST(names_are_bytes)
{
	reg_ok(ca, "a", NULL);
	reg_ok(ca, "ab", NULL);
	ck_assert_ptr_null(registry_lookup(&reg, "A", 1));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "ab", 2));
	ck_assert_ptr_null(registry_lookup(&reg, "abc", 3));
	ck_assert_ptr_null(registry_lookup(&reg, "a", 0));
}
END_TEST

START_TEST(name_validity)
{
	char big[257];

	memset(big, 'x', sizeof(big));
	ck_assert(registry_name_valid("db", 2));
	ck_assert(registry_name_valid(big, 255));
	ck_assert(!registry_name_valid(big, 256));
	ck_assert(!registry_name_valid("", 0));
	ck_assert(!registry_name_valid("a\0b", 3));
	ck_assert(registry_name_valid("\xc3\xa9t\xc3\xa9", 5));	/* été */
	ck_assert(registry_name_valid("\xf0\x9f\x98\x80", 4));	/* emoji */
	ck_assert(!registry_name_valid("\xff", 1));
	ck_assert(!registry_name_valid("\xc0\x80", 2));		/* overlong */
	ck_assert(!registry_name_valid("\xed\xa0\x80", 3));	/* surrogate */
	ck_assert(!registry_name_valid("\xf4\x90\x80\x80", 4));	/* > U+10FFFF */
	ck_assert(!registry_name_valid("\xe2\x82", 2));		/* truncated */
	/* Past the eight-byte ASCII fast path. */
	ck_assert(registry_name_valid("abcdefgh\xc3\xa9ijklmnop", 18));
	ck_assert(!registry_name_valid("abcdefghijklmnop\xff", 17));
	ck_assert(!registry_name_valid("abcdefghijklmnop\xc3", 17));
	ck_assert(!registry_name_valid("abcdefgh\xed\xa0\x80" "abcdefgh", 19));
}
END_TEST

START_TEST(per_client_limits)
{
	struct reg_name *n;
	struct reg_name *t;
	uint64_t ref;
	bool found;

	reg.max_names = 2;
	reg.max_monitors = 1;
	reg_ok(ca, "a", NULL);
	reg_ok(ca, "b", NULL);
	ck_assert_int_eq(registry_register(&reg, ca, "c", 1, NULL, 0, 0, &n),
	    REG_E_LIMIT);
	reg_ok(cb, "c", NULL);		/* per client, not global */
	/* What the caller holds besides (subscriptions) counts too. */
	ck_assert(registry_monitor_room(&reg, cb, 0));
	ck_assert(!registry_monitor_room(&reg, cb, 1));
	ck_assert_int_eq(registry_monitor(&reg, cb, 1, "a", 1, &ref, &t),
	    REG_E_LIMIT);
	ck_assert_int_eq(registry_monitor_client(&reg, cb, 1, 1, &ref,
	    &found), REG_E_LIMIT);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "a", 1, &ref, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "b", 1, &ref, &t),
	    REG_E_LIMIT);
	ck_assert_int_eq(registry_unregister(&reg, ca, "a", 1), 0);
	reg_ok(ca, "c2", NULL);
}
END_TEST

START_TEST(monitor_unregistered_fires_once)
{
	struct reg_name *t;
	uint64_t r1, r2;

	reg_ok(ca, "svc", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "svc", 3, &r1, &t), 0);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "svc", 3, &r2, &t), 0);
	ck_assert_uint_ne(r1, r2);
	ck_assert_uint_eq(reg.nmonitors, 2);
	ck_assert_int_eq(registry_unregister(&reg, ca, "svc", 3), 0);
	ck_assert_int_eq(downs.n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_ptr_eq(downs.rec[i].holder, cb);
		ck_assert_str_eq(downs.rec[i].name, "svc");
		ck_assert_int_eq(downs.rec[i].why, PR_DOWN_UNREGISTERED);
	}
	ck_assert(downs.rec[0].ref != downs.rec[1].ref);
	ck_assert_uint_eq(reg.nmonitors, 0);
	ck_assert_uint_eq(cb->nmonitors, 0);
	/* Fired monitors are gone: a new owner does not fire them. */
	reg_ok(cc, "svc", NULL);
	ck_assert_int_eq(registry_unregister(&reg, cc, "svc", 3), 0);
	ck_assert_int_eq(downs.n, 2);
	ck_assert(!registry_demonitor(&reg, cb, r1));
}
END_TEST

START_TEST(monitor_noproc_spends_a_ref)
{
	struct reg_name *t = (struct reg_name *)&t;
	uint64_t r1, r2;

	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "ghost", 5, &r1, &t), 0);
	ck_assert_ptr_null(t);
	ck_assert_uint_eq(reg.nmonitors, 0);
	reg_ok(ca, "ghost", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "ghost", 5, &r2, &t), 0);
	ck_assert_uint_eq(r2, r1 + 1);
	ck_assert_int_eq(downs.n, 0);	/* noproc is the caller's to send */
}
END_TEST

START_TEST(demonitor)
{
	struct reg_name *t;
	uint64_t r;

	reg_ok(ca, "x", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "x", 1, &r, &t), 0);
	ck_assert(!registry_demonitor(&reg, ca, r));	/* not a's ref */
	ck_assert(!registry_demonitor(&reg, cb, r + 1));
	ck_assert(registry_demonitor(&reg, cb, r));
	ck_assert(!registry_demonitor(&reg, cb, r));
	ck_assert_int_eq(registry_unregister(&reg, ca, "x", 1), 0);
	ck_assert_int_eq(downs.n, 0);
}
END_TEST

/*
 * A name carries its monitors in a watch of its own, made with the first
 * and dropped with the last, kept across a move (update), fired and
 * dropped when the name ends.
 */
START_TEST(watch_lifecycle)
{
	struct reg_name *t, *n, *u;
	uint64_t r1, r2, r3;
	char big[300];

	n = reg_ok(ca, "w", NULL);
	ck_assert(!(n->flags & REG_HAS_MONITORS));
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "w", 1, &r1, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "w", 1, &r2, &t), 0);
	ck_assert(n->flags & REG_HAS_MONITORS);
	ck_assert_uint_eq(reg.watched.count, 1);
	ck_assert(registry_demonitor(&reg, cb, r1));
	ck_assert_uint_eq(reg.watched.count, 1);
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert(registry_demonitor(&reg, cc, r2));
	ck_assert_uint_eq(reg.watched.count, 0);
	ck_assert(!(n->flags & REG_HAS_MONITORS));
	ck_assert_ptr_null(registry_check(&reg));

	/* A larger value moves the entry; its monitors follow it. */
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "w", 1, &r1, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "w", 1, &r2, &t), 0);
	memset(big, 'v', sizeof(big));
	big[0] = '\xd9';
	big[1] = (char)200;
	ck_assert_int_eq(registry_update(&reg, ca, "w", 1, big, 202, &u), 0);
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert(u->flags & REG_HAS_MONITORS);
	/* Its owner may watch it too: three downs. */
	ck_assert_int_eq(registry_monitor(&reg, ca, 0, "w", 1, &r3, &t), 0);
	ck_assert_ptr_eq(t, u);
	ck_assert_int_eq(registry_unregister(&reg, ca, "w", 1), 0);
	ck_assert_int_eq(downs.n, 3);
	for (int i = 0; i < downs.n; i++) {
		ck_assert_str_eq(downs.rec[i].name, "w");
		ck_assert_int_eq(downs.rec[i].why, PR_DOWN_UNREGISTERED);
	}
	ck_assert_uint_eq(reg.watched.count, 0);
	ck_assert_uint_eq(reg.nmonitors, 0);
	ck_assert_ptr_null(registry_check(&reg));

	/* Purging the holders drops the watches they made. */
	reg_ok(ca, "w", NULL);
	reg_ok(ca, "v", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "w", 1, &r1, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "v", 1, &r2, &t), 0);
	ck_assert_uint_eq(reg.watched.count, 2);
	purge(cb);
	ck_assert_uint_eq(reg.watched.count, 0);
	ck_assert_ptr_null(registry_check(&reg));
}
END_TEST

START_TEST(purge_fires_disconnected_and_drops_own_monitors)
{
	struct reg_name *t;
	uint64_t r;

	reg_ok(ca, "a1", NULL);
	reg_ok(ca, "a2", NULL);
	reg_ok(cb, "b1", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "a1", 2, &r, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "a2", 2, &r, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, ca, 0, "b1", 2, &r, &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, ca, 0, "a1", 2, &r, &t), 0);
	purge(ca);
	/* Two downs, to b and c; a's own monitors vanished silently. */
	ck_assert_int_eq(downs.n, 2);
	for (int i = 0; i < downs.n; i++) {
		ck_assert_ptr_ne(downs.rec[i].holder, ca);
		ck_assert_int_eq(downs.rec[i].why, PR_DOWN_DISCONNECTED);
	}
	ck_assert_ptr_null(registry_lookup(&reg, "a1", 2));
	ck_assert_ptr_null(registry_lookup(&reg, "a2", 2));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "b1", 2));
	ck_assert_uint_eq(reg.nnames, 1);
	ck_assert_uint_eq(reg.nmonitors, 0);
	ck_assert_ptr_null(registry_check(&reg));
	/* The record went with its last name. */
	ck_assert_ptr_null(registry_client_find(&reg, 1));
	ck_assert_int_eq(downs.n, 2);
	/* b's names fire nothing now: a's monitor on b1 is gone. */
	ck_assert_int_eq(registry_unregister(&reg, cb, "b1", 2), 0);
	ck_assert_int_eq(downs.n, 2);
}
END_TEST

START_TEST(purge_in_slices)
{
	struct reg_name *n, *t;
	char name[32];
	uint64_t r_last, r_first, r;
	int steps = 0;

	/* Owner lists are newest first: a/099 goes in the first slice,
	 * a/000 in the last. */
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "a/%03d", i);
		reg_ok(ca, name, NULL);
	}
	reg_ok(cb, "b", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "a/099", 5, &r_last, &t),
	    0);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "a/000", 5, &r_first,
	    &t), 0);
	ck_assert_int_eq(registry_monitor(&reg, ca, 0, "b", 1, &r, &t), 0);
	ck_assert(!registry_client_close(&reg, ca, 10));
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_ptr_null(ca->conn);
	ck_assert_int_eq(downs.n, 1);
	ck_assert_uint_eq(downs.rec[0].ref, r_last);
	/* Every name of a's is invisible at once, removed or not. */
	ck_assert_ptr_null(registry_lookup(&reg, "a/000", 5));
	ck_assert_ptr_null(registry_lookup(&reg, "a/050", 5));
	n = registry_seek(&reg, "", 0, false, &it);
	ck_assert_mem_eq(n->data, "b", 1);
	ck_assert_ptr_null(registry_next(&reg, &it));
	ck_assert_int_eq(registry_unregister(&reg, ca, "a/050", 5),
	    REG_E_NOT_FOUND);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "a/050", 5, &r, &t), 0);
	ck_assert_ptr_null(t);		/* noproc */
	/* Its own monitors went at once. */
	ck_assert_uint_eq(ca->nmonitors, 0);
	/* A dying name can be taken over; its monitors fire first. */
	reg_ok(cb, "a/000", NULL);
	ck_assert_int_eq(downs.n, 2);
	ck_assert_uint_eq(downs.rec[1].ref, r_first);
	ck_assert_int_eq(downs.rec[1].why, PR_DOWN_DISCONNECTED);
	ck_assert_ptr_eq(registry_lookup(&reg, "a/000", 5)->owner, cb);
	while (registry_purge_slice(&reg, 10)) {
		ck_assert_ptr_null(registry_check(&reg));
		steps++;
	}
	ck_assert_int_ge(steps, 7);
	ck_assert_uint_eq(reg.nnames, 2);	/* b and cb's a/000 */
	ck_assert_int_eq(downs.n, 2);
	ck_assert(TAILQ_EMPTY(&reg.purging));
	ck_assert(!registry_purge_slice(&reg, 10));
	/* b's unregister fires nothing: a's monitor on it is gone. */
	ck_assert_int_eq(registry_unregister(&reg, cb, "b", 1), 0);
	ck_assert_int_eq(downs.n, 2);
}
END_TEST

START_TEST(record_outlives_its_connection)
{
	struct reg_uid *u = ca->usage;
	char name[16];

	/* Descriptors are counted apart from the records: a connection
	 * holds its place until its socket is closed, which may come
	 * before or after its record's purge ends. */
	ck_assert_int_eq(registry_uid_hold(&reg, 1000), 0);
	ck_assert_int_eq(registry_uid_hold(&reg, 1000), 0);
	ck_assert_uint_eq(registry_uid_conns(&reg, 1000), 2);
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "a/%02d", i);
		reg_ok(ca, name, NULL);
	}
	ck_assert(!registry_client_close(&reg, ca, 10));
	ck_assert_ptr_null(ca->conn);
	ck_assert_ptr_null(registry_client_find(&reg, 1));
	registry_uid_put(&reg, 1000);
	registry_uid_put(&reg, 1000);
	ck_assert_uint_eq(registry_uid_conns(&reg, 1000), 0);
	/* The user's totals stay while its record has names left. */
	ck_assert_uint_eq(u->names, 20);
	ck_assert(registry_purge_slice(&reg, 10));
	ck_assert_uint_eq(u->names, 10);
	ck_assert(!registry_purge_slice(&reg, 10));
	ck_assert_uint_eq(reg.nnames, 0);
	ck_assert_uint_eq(reg.uids.count, 2);	/* b's and c's users */
	/* A put with nothing held changes nothing. */
	registry_uid_put(&reg, 1000);
	ck_assert_uint_eq(registry_uid_conns(&reg, 1000), 0);
	ck_assert_uint_eq(reg.uids.count, 2);
	/* Several records on the queue share a slice, oldest first. */
	reg_ok(cb, "b1", NULL);
	reg_ok(cb, "b2", NULL);
	reg_ok(cc, "c1", NULL);
	ck_assert(!registry_client_close(&reg, cb, 1));
	ck_assert(!registry_client_close(&reg, cc, 0));
	ck_assert(!registry_purge_slice(&reg, 2));
	ck_assert_uint_eq(reg.nnames, 0);
	ck_assert_uint_eq(reg.uids.count, 0);
}
END_TEST

START_TEST(gens_grow_and_gone_hook)
{
	struct reg_name *a = reg_ok(ca, "a", NULL), *b, *a2;
	struct reg_member *m;
	uint64_t ga = a->gen;

	b = reg_ok(cb, "b", NULL);
	ck_assert_uint_gt(b->gen, ga);
	ck_assert_int_eq(registry_join(&reg, cc, "g", 1, NULL, 0, 7, &m), 0);
	ck_assert_uint_gt(m->gen, b->gen);
	ck_assert_int_eq(registry_unregister(&reg, ca, "a", 1), 0);
	ck_assert_int_eq(downs.ngone, 1);
	ck_assert_uint_eq(downs.gone[0], ga);
	/* The same name registered again is a new registration. */
	a2 = reg_ok(ca, "a", NULL);
	ck_assert_uint_gt(a2->gen, m->gen);
	purge(cb);
	ck_assert_int_eq(downs.ngone, 2);
	ck_assert_uint_eq(downs.gone[1], 2);
}
END_TEST

START_TEST(groups_join_leave_purge)
{
	struct reg_member *m1, *m2, *m3, *t;
	struct reg_group *g;

	ck_assert_int_eq(registry_join(&reg, ca, "room", 4, "\xa1x", 2, 5,
	    &m1), 0);
	ck_assert_int_eq(registry_join(&reg, cb, "room", 4, NULL, 0, 6, &m2),
	    0);
	ck_assert_int_eq(registry_join(&reg, ca, "room", 4, NULL, 0, 6, &t),
	    REG_E_TAKEN);
	ck_assert_int_eq(registry_join(&reg, ca, "hall", 4, NULL, 0, 6, &m3),
	    0);
	/* A group is a namespace of its own. */
	reg_ok(cc, "room", NULL);
	ck_assert_uint_eq(reg.ngroups, 2);
	ck_assert_uint_eq(reg.nmembers, 3);
	g = registry_group(&reg, "room", 4);
	ck_assert_ptr_nonnull(g);
	ck_assert_uint_eq(g->nmembers, 2);
	/* Join order. */
	ck_assert_ptr_eq(TAILQ_FIRST(&g->members), m1);
	ck_assert_ptr_eq(TAILQ_NEXT(m1, by_group), m2);
	ck_assert_mem_eq(m1->value, "\xa1x", 2);
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_int_eq(registry_leave(&reg, cc, "room", 4),
	    REG_E_NOT_FOUND);
	ck_assert_int_eq(registry_leave(&reg, cb, "room", 4), 0);
	ck_assert_int_eq(registry_leave(&reg, cb, "room", 4),
	    REG_E_NOT_FOUND);
	/* The last member's connection goes: the groups go with it. */
	purge(ca);
	ck_assert_ptr_null(registry_group(&reg, "room", 4));
	ck_assert_ptr_null(registry_group(&reg, "hall", 4));
	ck_assert_uint_eq(reg.ngroups, 0);
	ck_assert_uint_eq(reg.nmembers, 0);
	ck_assert_ptr_nonnull(registry_lookup(&reg, "room", 4));
}
END_TEST

START_TEST(join_limit)
{
	struct reg_member *m;
	char name[16];

	reg.max_names = 3;
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		ck_assert_int_eq(registry_join(&reg, ca, name, strlen(name),
		    NULL, 0, 1, &m), 0);
	}
	ck_assert_int_eq(registry_join(&reg, ca, "g9", 2, NULL, 0, 1, &m),
	    REG_E_LIMIT);
	/* Names are counted apart. */
	reg_ok(ca, "n", NULL);
}
END_TEST

START_TEST(monitor_a_client)
{
	uint64_t r1, r2, r3;
	bool found;

	ck_assert_ptr_eq(registry_client_find(&reg, 2), cb);
	ck_assert_ptr_null(registry_client_find(&reg, 99));
	ck_assert_int_eq(registry_monitor_client(&reg, ca, 0, 2, &r1, &found),
	    0);
	ck_assert(found);
	ck_assert_int_eq(registry_monitor_client(&reg, cc, 0, 2, &r2, &found),
	    0);
	ck_assert_int_eq(registry_monitor_client(&reg, cc, 0, 99, &r3, &found),
	    0);
	ck_assert(!found);
	ck_assert_uint_eq(r3, r2 + 1);
	ck_assert_uint_eq(reg.nmonitors, 2);
	ck_assert(registry_demonitor(&reg, cc, r2));
	ck_assert_ptr_null(registry_check(&reg));
	reg_ok(cb, "b", NULL);
	ck_assert(!registry_client_close(&reg, cb, 0));
	/* Gone from the index as soon as its purge starts; a's monitor fired
	 * with b's id. */
	ck_assert_ptr_null(registry_client_find(&reg, 2));
	ck_assert_int_eq(downs.n, 1);
	ck_assert_ptr_eq(downs.rec[0].holder, ca);
	ck_assert_uint_eq(downs.rec[0].ref, r1);
	ck_assert_uint_eq(downs.rec[0].conn, 2);
	ck_assert_str_eq(downs.rec[0].name, "");
	ck_assert_int_eq(downs.rec[0].why, PR_DOWN_DISCONNECTED);
	ck_assert(!registry_purge_slice(&reg, 10));
	ck_assert_uint_eq(reg.nmonitors, 0);
	/* A holder that goes first takes its monitor on a client along. */
	ck_assert_int_eq(registry_monitor_client(&reg, ca, 0, 3, &r1, &found),
	    0);
	purge(ca);
	ck_assert_uint_eq(reg.nmonitors, 0);
	ck_assert_int_eq(downs.n, 1);
}
END_TEST

START_TEST(update_moves_and_keeps_links)
{
	static char big[4000];
	struct reg_name *n = reg_ok(ca, "db", "\xa1x"), *u, *t;
	uint64_t gen = n->gen, ref;

	memset(big, 'v', sizeof(big));
	reg_ok(ca, "da", NULL);
	reg_ok(ca, "dc", NULL);
	ck_assert_int_eq(registry_monitor(&reg, cb, 0, "db", 2, &ref, &t), 0);
	ck_assert_int_eq(registry_update(&reg, cb, "db", 2, "\xc0", 1, &u),
	    REG_E_NOT_OWNER);
	ck_assert_int_eq(registry_update(&reg, ca, "zz", 2, "\xc0", 1, &u),
	    REG_E_NOT_FOUND);
	/* Smaller: in place. */
	ck_assert_int_eq(registry_update(&reg, ca, "db", 2, "\x01", 1, &u), 0);
	ck_assert_ptr_eq(u, n);
	ck_assert_uint_eq(u->value_len, 1);
	/* Larger: it moves, with its monitors, order and owner links. */
	ck_assert_int_eq(registry_update(&reg, ca, "db", 2, big, sizeof(big),
	    &u), 0);
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_ptr_eq(registry_lookup(&reg, "db", 2), u);
	ck_assert_uint_eq(u->gen, gen);
	ck_assert_uint_eq(u->since_ms, 42);
	ck_assert_uint_eq(u->value_len, sizeof(big));
	ck_assert_mem_eq(reg_name_value(u), big, sizeof(big));
	ck_assert_ptr_nonnull(registry_seek(&reg, "da", 2, false, &it));
	ck_assert_ptr_eq(registry_next(&reg, &it), u);
	ck_assert_int_eq(registry_unregister(&reg, ca, "db", 2), 0);
	ck_assert_int_eq(downs.n, 1);
	ck_assert_uint_eq(downs.rec[0].ref, ref);
	ck_assert_str_eq(downs.rec[0].name, "db");
}
END_TEST

START_TEST(register_many_all_or_none)
{
	const char *names[] = { "m1", "m2", "m3", "m1" };
	const size_t lens[] = { 2, 2, 2, 2 };
	const void *vals[] = { "\x01", NULL, NULL, NULL };
	const size_t vlens[] = { 1, 0, 0, 0 };
	struct reg_name *out[4];
	uint64_t gen = reg.gen;
	size_t bad = 99;

	reg_ok(cb, "m3", NULL);
	gen = reg.gen;
	/* Taken: nothing happens, and the index says which. */
	ck_assert_int_eq(registry_register_many(&reg, ca, 3, names, lens,
	    vals, vlens, 1, out, &bad), REG_E_TAKEN);
	ck_assert_uint_eq(bad, 2);
	ck_assert_ptr_eq(out[0]->owner, cb);
	ck_assert_uint_eq(reg.nnames, 1);
	ck_assert_uint_eq(reg.gen, gen);
	/* A name twice: rolled back, gens too. */
	ck_assert_int_eq(registry_register_many(&reg, ca, 4, names + 0, lens,
	    vals, vlens, 1, out, &bad), REG_E_TAKEN);
	ck_assert_int_eq(registry_unregister(&reg, cb, "m3", 2), 0);
	ck_assert_int_eq(registry_register_many(&reg, ca, 4, names, lens,
	    vals, vlens, 1, out, &bad), REG_E_DUPLICATE);
	ck_assert_uint_eq(bad, 3);
	ck_assert_uint_eq(reg.nnames, 0);
	ck_assert_uint_eq(ca->nnames, 0);
	ck_assert_uint_eq(reg.gen, gen);
	ck_assert_ptr_null(registry_check(&reg));
	/* Over the limit: nothing. */
	reg.max_names = 2;
	ck_assert_int_eq(registry_register_many(&reg, ca, 3, names, lens,
	    vals, vlens, 1, out, &bad), REG_E_LIMIT);
	ck_assert_uint_eq(reg.nnames, 0);
	reg.max_names = 1000;
	ck_assert_int_eq(registry_register_many(&reg, ca, 3, names, lens,
	    vals, vlens, 1, out, &bad), 0);
	ck_assert_uint_eq(reg.nnames, 3);
	ck_assert_uint_eq(out[0]->gen, gen + 1);
	ck_assert_uint_eq(out[2]->gen, gen + 3);
	ck_assert_mem_eq(reg_name_value(out[0]), "\x01", 1);
}
END_TEST

START_TEST(first_duplicate)
{
	const char *names[] = { "b", "a", "c", "a", "b", "a" };
	const size_t lens[] = { 1, 1, 1, 1, 1, 1 };
	size_t idx[6], dup = 99;

	ck_assert(registry_first_duplicate(names, lens, 6, idx, &dup));
	ck_assert_uint_eq(dup, 3);
	ck_assert(!registry_first_duplicate(names, lens, 3, idx, &dup));
	ck_assert(!registry_first_duplicate(names, lens, 0, idx, &dup));
}
END_TEST

static struct reg_name *
queue_ok(struct reg_client *c, const char *name, unsigned flags,
    uint32_t want)
{
	struct reg_name *n = NULL;
	uint32_t q = 99;

	ck_assert_int_eq(registry_register_opts(&reg, c, name, strlen(name),
	    "\xa1q", 2, flags, 5, &n, &q), 0);
	ck_assert_uint_eq(q, want);
	ck_assert_ptr_null(registry_check(&reg));
	return n;
}

START_TEST(queue_hands_over_in_one_step)
{
	struct reg_name *n = queue_ok(ca, "x", REG_QUEUE, 0), *t;
	uint64_t gen = n->gen, ref, g2 = 7;
	struct reg_queue *q;
	uint32_t pos;

	queue_ok(cb, "x", REG_QUEUE, 1);
	queue_ok(cc, "x", REG_QUEUE, 2);
	/* The owner and a waiter cannot queue again. */
	ck_assert_int_eq(registry_register_opts(&reg, ca, "x", 1, NULL, 0,
	    REG_QUEUE, 5, &t, &pos), REG_E_TAKEN);
	ck_assert_int_eq(registry_register_opts(&reg, cb, "x", 1, NULL, 0,
	    REG_QUEUE, 5, &t, &pos), REG_E_TAKEN);
	q = registry_queue(&reg, "x", 1);
	ck_assert_uint_eq(q->n, 2);
	ck_assert_ptr_eq(TAILQ_FIRST(&q->waiters)->ready->owner, cb);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "x", 1, &ref, &t), 0);
	/* Fenced: a stale gen does nothing. */
	ck_assert_int_eq(registry_unregister_gen(&reg, ca, "x", 1, &g2),
	    REG_E_STALE);
	ck_assert_int_eq(registry_update_gen(&reg, ca, "x", 1, "\x01", 1,
	    &g2, &t), REG_E_STALE);
	downs.nev = 0;
	ck_assert_int_eq(registry_unregister_gen(&reg, ca, "x", 1, &gen), 0);
	ck_assert_ptr_null(registry_check(&reg));
	n = registry_lookup(&reg, "x", 1);
	ck_assert_ptr_eq(n->owner, cb);
	ck_assert_uint_gt(n->gen, gen);
	ck_assert_mem_eq(reg_name_value(n), "\xa1q", 2);
	ck_assert_int_eq(downs.n, 1);
	ck_assert_int_eq(downs.rec[0].why, PR_DOWN_UNREGISTERED);
	ck_assert_int_eq(downs.ngone, 1);
	ck_assert_uint_eq(downs.gone[0], gen);
	/* One event: a hand-over, never an unregistered in between. */
	ck_assert_int_eq(downs.nev, 1);
	ck_assert_int_eq(downs.ev[0].kind, REG_EV_HANDOVER);
	ck_assert(downs.ev[0].acquired);
	ck_assert_ptr_eq(downs.ev[0].prev, ca);
	ck_assert_uint_eq(ca->nnames, 0);
	ck_assert_uint_eq(cb->nnames, 1);
	ck_assert_uint_eq(cb->nwaits, 0);
	/* The last waiter gives up its place: the queue goes. */
	ck_assert_int_eq(registry_unregister(&reg, cc, "x", 1), 0);
	ck_assert_ptr_null(registry_queue(&reg, "x", 1));
	ck_assert_int_eq(n->flags & REG_HAS_QUEUE, 0);
	ck_assert_int_eq(registry_unregister(&reg, cc, "x", 1),
	    REG_E_NOT_OWNER);
}
END_TEST

START_TEST(purge_hands_over_at_once)
{
	struct reg_name *n;

	queue_ok(ca, "x", 0, 0);
	reg_ok(ca, "y", NULL);
	queue_ok(cb, "x", REG_QUEUE, 1);
	queue_ok(ca, "z", REG_QUEUE, 0);
	queue_ok(cc, "z", REG_QUEUE, 0 + 1);
	queue_ok(cb, "z", REG_QUEUE, 2);
	/* c waits for z; c goes: it leaves the queue. */
	purge(cc);
	ck_assert_uint_eq(registry_queue(&reg, "z", 1)->n, 1);
	/* a goes: even before its first slice, x and z have new owners. */
	ck_assert(!registry_client_close(&reg, ca, 0));
	n = registry_lookup(&reg, "x", 1);
	ck_assert_ptr_nonnull(n);
	ck_assert_ptr_eq(n->owner, cb);
	ck_assert_ptr_eq(registry_lookup(&reg, "z", 1)->owner, cb);
	ck_assert_ptr_null(registry_lookup(&reg, "y", 1));
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert(!registry_purge_slice(&reg, SIZE_MAX));
	ck_assert_uint_eq(reg.nnames, 2);
	ck_assert_uint_eq(reg.nwaiters, 0);
}
END_TEST

START_TEST(replace_with_and_without_consent)
{
	struct reg_name *n, *t;
	uint64_t ref;
	uint32_t pos;

	queue_ok(ca, "p", REG_ALLOW_REPLACEMENT | REG_QUEUE, 0);
	queue_ok(cb, "s", 0, 0);
	ck_assert_int_eq(registry_monitor(&reg, cc, 0, "p", 1, &ref, &t), 0);
	downs.nev = 0;
	n = queue_ok(cb, "p", REG_REPLACE, 0);
	ck_assert_ptr_eq(n->owner, cb);
	ck_assert_int_eq(downs.n, 1);
	ck_assert_int_eq(downs.rec[0].why, PR_DOWN_REPLACED);
	ck_assert_int_eq(downs.nev, 1);
	ck_assert_int_eq(downs.ev[0].kind, REG_EV_HANDOVER);
	ck_assert(!downs.ev[0].acquired);
	ck_assert_int_eq(downs.ev[0].why, PR_DOWN_REPLACED);
	/* a asked to queue: it waits at the head. */
	ck_assert_uint_eq(registry_queue(&reg, "p", 1)->n, 1);
	ck_assert_uint_eq(ca->nwaits, 1);
	ck_assert_uint_eq(ca->nnames, 0);
	/* b did not allow replacement. */
	ck_assert_int_eq(registry_register_opts(&reg, cc, "p", 1, NULL, 0,
	    REG_REPLACE, 5, &t, &pos), REG_E_TAKEN);
	queue_ok(cc, "p", REG_REPLACE | REG_QUEUE, 2);
	/* b lets go: a is back, and c is next. */
	ck_assert_int_eq(registry_unregister(&reg, cb, "p", 1), 0);
	n = registry_lookup(&reg, "p", 1);
	ck_assert_ptr_eq(n->owner, ca);
	ck_assert_int_eq(n->flags & (REG_ALLOW_REPLACEMENT | REG_QUEUE),
	    REG_ALLOW_REPLACEMENT | REG_QUEUE);
	ck_assert_uint_eq(registry_queue(&reg, "p", 1)->n, 1);
	/* A replaced owner that did not ask to queue just loses it. */
	queue_ok(ca, "r", REG_ALLOW_REPLACEMENT, 0);
	queue_ok(cc, "r", REG_REPLACE, 0);
	ck_assert_ptr_null(registry_queue(&reg, "r", 1));
	ck_assert_uint_eq(ca->nnames, 1);
}
END_TEST

/* A place in a queue counts against the per-user cap like the name it
 * will become, so that taking the name over never passes the cap. */
START_TEST(queue_places_count_per_uid)
{
	struct reg_name *t;
	uint32_t pos;

	reg.max_names_per_uid = 1;
	queue_ok(ca, "x", 0, 0);
	queue_ok(cb, "x", REG_QUEUE, 1);
	ck_assert_uint_eq(cb->usage->waits, 1);
	ck_assert_int_eq(registry_register_opts(&reg, cb, "y", 1, NULL, 0, 0,
	    5, &t, &pos), REG_E_LIMIT_UID);
	ck_assert_int_eq(registry_unregister(&reg, ca, "x", 1), 0);
	ck_assert_ptr_eq(registry_lookup(&reg, "x", 1)->owner, cb);
	ck_assert_uint_eq(cb->usage->names, 1);
	ck_assert_uint_eq(cb->usage->waits, 0);
}
END_TEST

START_TEST(events_and_muted_batches)
{
	const char *names[] = { "m1", "m2", "m1" };
	const size_t lens[] = { 2, 2, 2 };
	const void *vals[] = { NULL, NULL, NULL };
	const size_t vlens[] = { 0, 0, 0 };
	struct reg_name *out[3], *u;
	struct reg_member *m;
	size_t bad;

	reg_ok(ca, "a", NULL);
	ck_assert_int_eq(registry_update(&reg, ca, "a", 1, "\x01", 1, &u), 0);
	ck_assert_int_eq(registry_join(&reg, cb, "g", 1, NULL, 0, 1, &m), 0);
	ck_assert_int_eq(registry_leave(&reg, cb, "g", 1), 0);
	ck_assert_int_eq(registry_register_many(&reg, ca, 3, names, lens,
	    vals, vlens, 1, out, &bad), REG_E_DUPLICATE);
	ck_assert_int_eq(registry_register_many(&reg, ca, 2, names, lens,
	    vals, vlens, 1, out, &bad), 0);
	ck_assert_int_eq(registry_unregister(&reg, ca, "a", 1), 0);
	ck_assert_int_eq(downs.nev, 7);
	ck_assert_int_eq(downs.ev[0].kind, REG_EV_REGISTERED);
	ck_assert_int_eq(downs.ev[1].kind, REG_EV_UPDATED);
	ck_assert_int_eq(downs.ev[2].kind, REG_EV_JOINED);
	ck_assert_int_eq(downs.ev[3].kind, REG_EV_LEFT);
	/* The failed batch said nothing; the good one after it, in order. */
	ck_assert_int_eq(downs.ev[4].kind, REG_EV_REGISTERED);
	ck_assert_ptr_eq(downs.ev[4].name, out[0]);
	ck_assert_int_eq(downs.ev[5].kind, REG_EV_REGISTERED);
	ck_assert_int_eq(downs.ev[6].kind, REG_EV_UNREGISTERED);
	ck_assert_int_eq(downs.ev[6].why, PR_DOWN_UNREGISTERED);
}
END_TEST

START_TEST(ordered_seek_and_next)
{
	const char *names[] = { "b/1", "a/2", "a/10", "a/1", "c", "a" };
	const char *want[] = { "a", "a/1", "a/10", "a/2", "b/1", "c" };
	struct reg_name *n;
	int i = 0;

	for (size_t k = 0; k < 6; k++)
		reg_ok(ca, names[k], NULL);
	for (n = registry_seek(&reg, "", 0, false, &it); n != NULL;
	    n = registry_next(&reg, &it), i++) {
		ck_assert_uint_eq(n->name_len, strlen(want[i]));
		ck_assert_mem_eq(n->data, want[i], n->name_len);
	}
	ck_assert_int_eq(i, 6);
	n = registry_seek(&reg, "a/1", 3, false, &it);
	ck_assert_mem_eq(n->data, "a/1", 3);
	n = registry_seek(&reg, "a/1", 3, true, &it);
	ck_assert_mem_eq(n->data, "a/10", 4);
	n = registry_seek(&reg, "a/3", 3, false, &it);
	ck_assert_mem_eq(n->data, "b/1", 3);
	ck_assert_ptr_null(registry_seek(&reg, "d", 1, false, &it));
}
END_TEST

START_TEST(churn_keeps_invariants)
{
	/* Many clients, names and monitors; purge in a scattered order. */
	enum { NC = 50, NN = 40 };
	static struct reg_client *cl[NC];
	static int conn[NC];
	char name[32];
	struct reg_name *t;
	uint64_t r;

	reg.max_names = 100000;
	reg.max_monitors = 100000;
	for (int i = 0; i < NC; i++)
		ck_assert_ptr_nonnull(cl[i] = registry_client_new(&reg,
		    100 + (uint64_t)i, i, 0, 0, &conn[i]));
	for (int i = 0; i < NC; i++) {
		for (int j = 0; j < NN; j++) {
			snprintf(name, sizeof(name), "c%d/n%d", i, j);
			reg_ok(cl[i], name, "\xc0");
		}
	}
	for (int i = 0; i < NC; i++) {
		for (int j = 0; j < NN; j += 3) {
			snprintf(name, sizeof(name), "c%d/n%d", (i * 7 + j) % NC,
			    j);
			ck_assert_int_eq(registry_monitor(&reg, cl[i], 0, name,
			    strlen(name), &r, &t), 0);
		}
	}
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_uint_eq(reg.nnames, NC * NN);
	for (int i = 0; i < NC; i += 2) {
		ck_assert(registry_client_close(&reg, cl[(i * 13) % NC],
		    SIZE_MAX));
		cl[(i * 13) % NC] = NULL;
	}
	ck_assert_ptr_null(registry_check(&reg));
	for (int i = 0; i < NC; i++) {
		if (cl[i] != NULL)
			ck_assert(registry_client_close(&reg, cl[i],
			    SIZE_MAX));
	}
	ck_assert_ptr_null(registry_check(&reg));
	ck_assert_uint_eq(reg.nnames, 0);
	ck_assert_uint_eq(reg.nmonitors, 0);
	/* Every monitor fired at most once, on a purge of its target. */
	ck_assert_int_le(downs.n, NC * ((NN + 2) / 3));
	ck_assert_int_gt(downs.n, 0);
}
END_TEST

START_TEST(check_detects_corruption)
{
	struct reg_name *n = reg_ok(ca, "x", NULL);

	ck_assert_ptr_null(registry_check(&reg));
	ca->nnames++;
	ck_assert_ptr_nonnull(registry_check(&reg));
	ca->nnames--;
	n->owner = cb;
	ck_assert_ptr_nonnull(registry_check(&reg));
	n->owner = ca;
}
END_TEST

static bool
ptr_eq(const void *item, const void *key)
{
	return item == key;
}

START_TEST(htab_insert_find_remove)
{
	enum { N = 20000 };
	static int items[N];
	struct htab t;

	ck_assert_int_eq(htab_init(&t, 0), 0);
	/* Poor hashes on purpose: long probe runs, wrap-around, shifts. */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(htab_insert(&t, (uint64_t)(i % 97), &items[i]),
		    0);
	ck_assert_uint_eq(t.count, N);
	for (int i = 0; i < N; i += 2)
		ck_assert(htab_remove(&t, (uint64_t)(i % 97), &items[i]));
	ck_assert(!htab_remove(&t, 0, &items[0]));
	for (int i = 0; i < N; i++) {
		void *f = htab_find(&t, (uint64_t)(i % 97), ptr_eq, &items[i]);

		if (i % 2)
			ck_assert_ptr_eq(f, &items[i]);
		else
			ck_assert_ptr_null(f);
	}
	ck_assert_uint_eq(t.count, N / 2);
	/* Hashes whose home is the last slot wrap around to slot 0. */
	for (int i = 1; i < N; i += 2)
		ck_assert(htab_remove(&t, (uint64_t)(i % 97), &items[i]));
	ck_assert_uint_eq(t.count, 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(htab_insert(&t, UINT64_MAX, &items[i]), 0);
	for (int i = 0; i < 64; i += 3)
		ck_assert(htab_remove(&t, UINT64_MAX, &items[i]));
	for (int i = 0; i < 64; i++)
		ck_assert((htab_find(&t, UINT64_MAX, ptr_eq, &items[i]) != NULL) ==
		    (i % 3 != 0));
	htab_deinit(&t);
}
END_TEST

/* Against a model: random hashes, inserts and removes interleaved across
 * many growths (capacities that are not powers of two). */
START_TEST(htab_matches_a_model)
{
	enum { N = 50000 };
	static int items[N];
	static uint64_t hashes[N];
	static bool in[N];
	struct htab t;
	uint64_t x = 88172645463325252ULL;
	size_t count = 0;

	ck_assert_int_eq(htab_init(&t, 0), 0);
	for (int i = 0; i < N; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		/* Some collide in full, most do not. */
		hashes[i] = i % 10 == 0 ? hashes[i / 2] : x;
	}
	for (int round = 0; round < 4 * N; round++) {
		int i;

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		i = (int)(x % N);
		if (!in[i] && (x >> 32) % 3 != 0) {
			ck_assert_int_eq(htab_insert(&t, hashes[i], &items[i]),
			    0);
			in[i] = true;
			count++;
		} else if (in[i]) {
			ck_assert(htab_remove(&t, hashes[i], &items[i]));
			in[i] = false;
			count--;
		}
		ck_assert_uint_eq(t.count, count);
		ck_assert_uint_le(t.count * 4, t.cap * 3);
	}
	for (int i = 0; i < N; i++) {
		void *f = htab_find(&t, hashes[i], ptr_eq, &items[i]);

		ck_assert_ptr_eq(f, in[i] ? &items[i] : NULL);
		ck_assert(htab_remove(&t, hashes[i], &items[i]) == in[i]);
	}
	ck_assert_uint_eq(t.count, 0);
	htab_deinit(&t);
}
END_TEST

/* Items are ints compared by value; the model is a presence bitmap. */
static int
int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static void
btree_matches(const struct btree *t, const bool *in, int n)
{
	struct btree_iter bi;
	int *v, expect = 0;

	ck_assert_ptr_null(btree_check(t));
	for (v = btree_first(t, &bi); v != NULL; v = btree_next(&bi)) {
		while (expect < n && !in[expect])
			expect++;
		ck_assert_int_lt(expect, n);
		ck_assert_int_eq(*v, expect);
		expect++;
	}
	while (expect < n)
		ck_assert(!in[expect++]);
}

/*
 * Against a model: random inserts, removes and replaces (fresh copies of
 * the same key, so stale separators would be caught by ASan and by the
 * checker), ascending and descending runs that split at the ends, the
 * tree emptied and refilled; seeks at and between items.
 */
START_TEST(btree_matches_a_model)
{
	enum { N = 20000 };
	static int keys[2][N];
	static bool in[N];
	static int cur[N];		/* which copy of key i is indexed */
	struct btree t;
	struct btree_iter bi;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	size_t count = 0;

	for (int i = 0; i < N; i++)
		keys[0][i] = keys[1][i] = i;
	btree_init(&t, int_cmp);
	for (int phase = 0; phase < 3; phase++) {
		/* In order (phase 0), in reverse (1), at random (2). */
		for (int k = 0; k < N; k++) {
			int i = phase == 0 ? k : phase == 1 ? N - 1 - k :
			    (int)((x = x * 6364136223846793005ULL + 1) >> 33) % N;

			if (!in[i]) {
				ck_assert_int_eq(btree_insert(&t,
				    &keys[cur[i]][i]), 0);
				in[i] = true;
				count++;
			}
		}
		ck_assert_uint_eq(t.count, count);
		btree_matches(&t, in, N);
		for (int round = 0; round < 3 * N; round++) {
			int i = (int)((x = x * 6364136223846793005ULL + 1) >> 33)
			    % N, op = (int)(x >> 20) % 3;

			if (!in[i]) {
				ck_assert_int_eq(btree_insert(&t,
				    &keys[cur[i]][i]), 0);
				in[i] = true;
				count++;
			} else if (op == 0) {
				ck_assert(btree_replace(&t, &keys[cur[i]][i],
				    &keys[!cur[i]][i]));
				cur[i] = !cur[i];
			} else {
				/* The other copy compares equal but is not
				 * the item. */
				ck_assert(!btree_remove(&t,
				    &keys[!cur[i]][i]));
				ck_assert(btree_remove(&t, &keys[cur[i]][i]));
				in[i] = false;
				count--;
			}
			if (round % 4096 == 0)
				ck_assert_ptr_null(btree_check(&t));
		}
		ck_assert_uint_eq(t.count, count);
		btree_matches(&t, in, N);
		/* Seeks: at an item, strictly after it, before the first. */
		for (int i = 0; i < N; i += 97) {
			int *v = btree_seek(&t, &keys[0][i], false, &bi), j;

			for (j = i; j < N && !in[j]; j++)
				;
			if (j == N)
				ck_assert_ptr_null(v);
			else
				ck_assert_int_eq(*v, j);
			v = btree_seek(&t, &keys[0][i], true, &bi);
			for (j = i + 1; j < N && !in[j]; j++)
				;
			if (j == N)
				ck_assert_ptr_null(v);
			else
				ck_assert_int_eq(*v, j);
		}
		/* Empty it, the slow way for half, then start again. */
		for (int i = 0; i < N; i++) {
			if (in[i]) {
				ck_assert(btree_remove(&t, &keys[cur[i]][i]));
				in[i] = false;
				count--;
			}
			if (i == N / 2)
				btree_matches(&t, in, N);
		}
		ck_assert_uint_eq(t.count, 0);
		ck_assert_ptr_null(t.root);
		ck_assert_ptr_null(btree_first(&t, &bi));
		ck_assert_ptr_null(btree_check(&t));
	}
	btree_deinit(&t);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("core");
	TCase *th = tcase_create("htab");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, register_lookup_unregister);
	tcase_add_test(tc, names_are_bytes);
	tcase_add_test(tc, name_validity);
	tcase_add_test(tc, per_client_limits);
	tcase_add_test(tc, monitor_unregistered_fires_once);
	tcase_add_test(tc, monitor_noproc_spends_a_ref);
	tcase_add_test(tc, demonitor);
	tcase_add_test(tc, watch_lifecycle);
	tcase_add_test(tc, purge_fires_disconnected_and_drops_own_monitors);
	tcase_add_test(tc, ordered_seek_and_next);
	tcase_add_test(tc, purge_in_slices);
	tcase_add_test(tc, record_outlives_its_connection);
	tcase_add_test(tc, churn_keeps_invariants);
	tcase_add_test(tc, check_detects_corruption);
	tcase_add_test(tc, gens_grow_and_gone_hook);
	tcase_add_test(tc, groups_join_leave_purge);
	tcase_add_test(tc, join_limit);
	tcase_add_test(tc, monitor_a_client);
	tcase_add_test(tc, update_moves_and_keeps_links);
	tcase_add_test(tc, register_many_all_or_none);
	tcase_add_test(tc, first_duplicate);
	tcase_add_test(tc, queue_hands_over_in_one_step);
	tcase_add_test(tc, purge_hands_over_at_once);
	tcase_add_test(tc, replace_with_and_without_consent);
	tcase_add_test(tc, events_and_muted_batches);
	tcase_add_test(tc, queue_places_count_per_uid);
	/* Model runs of a million operations take seconds under ASan on a
	 * busy machine: Check's default of 4 s is for hangs, not for them. */
	tcase_set_timeout(th, 120);
	tcase_add_test(th, htab_insert_find_remove);
	tcase_add_test(th, htab_matches_a_model);
	tcase_add_test(th, btree_matches_a_model);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, th);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
