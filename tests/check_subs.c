/*
 * check_subs.c: unit tests of the event stream with no sockets:
 * subscriptions with and without since, their ids, prefix buckets and the
 * groups flag, the history ring (eviction, resume, replay), overflow of a
 * full subscriber, unsubscribe, and a subscriber gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "fakepeer.h"
#include "registry.h"
#include "subs.h"

static struct registry reg;
static struct subs ss;
static struct fakepeer pa, pb;
static struct reg_client *rc;

static void
ignore_down(void *arg, struct reg_client *holder, uint64_t ref,
    const struct reg_target *t, enum pr_down_reason why)
{
	(void)arg;
	(void)holder;
	(void)ref;
	(void)t;
	(void)why;
}

/* The registry's event hook, as the daemon wires it. */
static void
on_event(void *arg, const struct reg_event *ev)
{
	(void)arg;
	subs_event(&ss, ev);
}

static void
setup(void)
{
	ck_assert_int_eq(registry_init(&reg, 100000, 1000, ignore_down, NULL),
	    0);
	reg.event = on_event;
	ck_assert_int_eq(subs_init(&ss, 16, &reg, &fakepeer_ops, NULL), 0);
	ck_assert_ptr_nonnull(rc = registry_client_new(&reg, 1, 1, 0, 0,
	    &reg));
	fakepeer_init(&pa);
	fakepeer_init(&pb);
}

static void
teardown(void)
{
	subs_deinit(&ss);
	ck_assert_ptr_null(registry_check(&reg));
	registry_deinit(&reg);
	fakepeer_deinit(&pa);
	fakepeer_deinit(&pb);
}

static void
reg_ok(const char *name)
{
	struct reg_name *n;

	ck_assert_int_eq(registry_register(&reg, rc, name, strlen(name), NULL,
	    0, 0, &n), 0);
}

/* Subscribe without since; its id. */
static uint64_t
sub(struct fakepeer *p, const char *prefix, bool groups)
{
	struct sub *sb;
	uint64_t id;
	bool resumable = true;

	ck_assert_int_eq(subs_start(&ss, p, prefix, strlen(prefix), groups,
	    NULL, &resumable, &id, &sb), 0);
	ck_assert(!resumable);
	ck_assert_uint_eq(sb->id, id);
	return id;
}

/* The next message p got is an event of sub id, seq, kind. */
static void
expect_event(struct fakepeer *p, uint64_t id, uint64_t seq, const char *kind)
{
	const msgpack_object *a = fakepeer_push(p, PR_PUSH_EVENT);

	ck_assert_uint_eq(a->via.array.size, 4);
	ck_assert_uint_eq(a->via.array.ptr[0].via.u64, id);
	ck_assert_uint_eq(a->via.array.ptr[1].via.u64, seq);
	ck_assert(fakepeer_str_is(&a->via.array.ptr[2], kind));
	/* An entry or a member, but [name, reason] for an unregister. */
	ck_assert_int_eq(a->via.array.ptr[3].type,
	    strcmp(kind, "unregistered") == 0 ? MSGPACK_OBJECT_ARRAY :
	    MSGPACK_OBJECT_MAP);
}

START_TEST(ids_and_prefixes)
{
	uint64_t a1 = sub(&pa, "a/", false), a2 = sub(&pa, "", false);
	uint64_t b1 = sub(&pb, "a/", false);

	/* Ids count per peer. */
	ck_assert_uint_eq(a1, 1);
	ck_assert_uint_eq(a2, 2);
	ck_assert_uint_eq(b1, 1);
	ck_assert_uint_eq(subs_count_of(&ss, &pa), 2);
	ck_assert_uint_eq(ss.nsubs, 3);
	/* One bucket per prefix (and flag), shared. */
	ck_assert_uint_eq(ss.buckets.count, 2);
	reg_ok("a/x");
	ck_assert_uint_eq(subs_seq(&ss), 1);
	/* Shorter prefixes first. */
	expect_event(&pa, a2, 1, "registered");
	expect_event(&pa, a1, 1, "registered");
	expect_event(&pb, b1, 1, "registered");
	reg_ok("b");
	expect_event(&pa, a2, 2, "registered");
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_uint_eq(fakepeer_unread(&pb), 0);
	ck_assert_int_eq(registry_unregister(&reg, rc, "a/x", 3), 0);
	expect_event(&pa, a2, 3, "unregistered");
	expect_event(&pa, a1, 3, "unregistered");
	expect_event(&pb, b1, 3, "unregistered");
}
END_TEST

START_TEST(groups_flag)
{
	uint64_t g = sub(&pa, "g", true), n = sub(&pb, "g", false);
	struct reg_member *m;

	ck_assert_uint_eq(ss.buckets.count, 2);
	ck_assert_int_eq(registry_join(&reg, rc, "g1", 2, NULL, 0, 0, &m), 0);
	expect_event(&pa, g, 1, "joined");
	ck_assert_uint_eq(fakepeer_unread(&pb), 0);
	/* Names reach both. */
	reg_ok("g2");
	expect_event(&pa, g, 2, "registered");
	expect_event(&pb, n, 2, "registered");
	ck_assert_int_eq(registry_leave(&reg, rc, "g1", 2), 0);
	expect_event(&pa, g, 3, "left");
	ck_assert_uint_eq(fakepeer_unread(&pb), 0);
}
END_TEST

START_TEST(since_and_history)
{
	uint64_t since, id;
	struct sub *sb;
	bool resumable;
	char name[8];

	ck_assert_int_eq(subs_resize(&ss, 4), 0);
	for (int i = 1; i <= 6; i++) {
		snprintf(name, sizeof(name), "%c%d", i % 2 ? 'x' : 'y', i);
		reg_ok(name);
	}
	/* Four kept: 3 to 6; events up to 2 are gone. */
	ck_assert_uint_eq(ss.count, 4);
	ck_assert_uint_eq(ss.floor, 2);
	since = 7;
	ck_assert_int_eq(subs_start(&ss, &pa, "", 0, false, &since,
	    &resumable, &id, &sb), SUBS_E_FUTURE);
	ck_assert_uint_eq(subs_count_of(&ss, &pa), 0);
	since = 1;
	ck_assert_int_eq(subs_start(&ss, &pa, "", 0, false, &since,
	    &resumable, &id, &sb), 0);
	ck_assert(!resumable);
	since = 2;
	ck_assert_int_eq(subs_start(&ss, &pb, "x", 1, false, &since,
	    &resumable, &id, &sb), 0);
	ck_assert(resumable);
	/* The replay sends what matches after since: x3 and x5. */
	ck_assert_uint_eq(subs_replay(&ss, sb, since), 4);
	expect_event(&pb, id, 3, "registered");
	expect_event(&pb, id, 5, "registered");
	ck_assert_uint_eq(fakepeer_unread(&pb), 0);
	/* A new history size starts empty: nothing before now resumes. */
	ck_assert_int_eq(subs_resize(&ss, 8), 0);
	ck_assert_uint_eq(ss.count, 0);
	ck_assert_uint_eq(ss.floor, 6);
	since = 5;
	ck_assert_int_eq(subs_start(&ss, &pb, "", 0, false, &since,
	    &resumable, &id, &sb), 0);
	ck_assert(!resumable);
	/* Without a history, nothing resumes either. */
	ck_assert_int_eq(subs_resize(&ss, 0), 0);
	reg_ok("z");
	ck_assert_uint_eq(ss.floor, 7);
	ck_assert_uint_eq(ss.count, 0);
}
END_TEST

START_TEST(full_subscriber_overflows)
{
	uint64_t id = sub(&pa, "", false), other = sub(&pb, "", false);
	const msgpack_object *a;

	pa.bound = 1;
	reg_ok("n");
	/* It loses the subscription with the seq to resume after. */
	a = fakepeer_push(&pa, PR_PUSH_OVERFLOW);
	ck_assert_uint_eq(a->via.array.size, 2);
	ck_assert_uint_eq(a->via.array.ptr[0].via.u64, id);
	ck_assert_uint_eq(a->via.array.ptr[1].via.u64, 0);
	ck_assert_uint_eq(subs_count_of(&ss, &pa), 0);
	ck_assert_uint_eq(ss.nsubs, 1);
	expect_event(&pb, other, 1, "registered");
	pa.bound = 0;
	reg_ok("m");
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	/* Its next subscription has a new id. */
	ck_assert_uint_eq(sub(&pa, "", false), id + 1);
}
END_TEST

START_TEST(stop_abort_and_gone)
{
	uint64_t a1 = sub(&pa, "p", false), a2 = sub(&pa, "q", false);
	struct sub *sb;
	uint64_t id;
	bool resumable;

	ck_assert(!subs_stop(&ss, &pa, 99));
	ck_assert(!subs_stop(&ss, &pb, a1));
	ck_assert(subs_stop(&ss, &pa, a1));
	ck_assert(!subs_stop(&ss, &pa, a1));
	/* Its bucket went with its last subscription. */
	ck_assert_uint_eq(ss.buckets.count, 1);
	ck_assert_uint_eq(ss.nbuckets[1], 1);
	reg_ok("p1");
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	/* A start undone in the same request gives its id again. */
	ck_assert_int_eq(subs_start(&ss, &pa, "r", 1, false, NULL,
	    &resumable, &id, &sb), 0);
	ck_assert_uint_eq(id, a2 + 1);
	subs_abort(&ss, sb);
	ck_assert_uint_eq(sub(&pa, "r", false), a2 + 1);
	subs_peer_gone(&ss, &pa);
	ck_assert_uint_eq(ss.nsubs, 0);
	ck_assert_uint_eq(ss.buckets.count, 0);
	ck_assert_uint_eq(ss.peers.count, 0);
	reg_ok("q1");
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	subs_peer_gone(&ss, &pa);	/* twice: nothing */
}
END_TEST

START_TEST(prefix_longer_than_any_name)
{
	static char prefix[PR_NAME_MAX + 2];
	struct sub *sb;
	uint64_t id;
	bool resumable;

	memset(prefix, 'a', sizeof(prefix) - 1);
	ck_assert_int_eq(subs_start(&ss, &pa, prefix, sizeof(prefix) - 1,
	    false, NULL, &resumable, &id, &sb), 0);
	ck_assert(sb->none);
	ck_assert_uint_eq(ss.buckets.count, 0);
	ck_assert(!subs_match(sb, prefix, PR_NAME_MAX, false));
	reg_ok("aaa");
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert(subs_stop(&ss, &pa, id));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("subs");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, ids_and_prefixes);
	tcase_add_test(tc, groups_flag);
	tcase_add_test(tc, since_and_history);
	tcase_add_test(tc, full_subscriber_overflows);
	tcase_add_test(tc, stop_abort_and_gone);
	tcase_add_test(tc, prefix_longer_than_any_name);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
