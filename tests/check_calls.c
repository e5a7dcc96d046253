/*
 * check_calls.c: unit tests of the calls module with no sockets: a call's
 * life (made, replied, timed out, its caller or callee gone, its
 * registration ended), the per-peer limit and a full callee, and awaits
 * (answered on registration, in slices, timed out, their peer gone).
 * Timers run on a private event base, with zero timeouts or none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>

#include "calls.h"
#include "dispatch_impl.h"
#include "fakepeer.h"
#include "registry.h"

static struct event_base *base;
static struct registry reg;
static struct calls cs;
static struct fakepeer pa, pb, pc;

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

/* The registry's event hook, as the daemon wires it for awaits. */
static void
on_event(void *arg, const struct reg_event *ev)
{
	(void)arg;
	if (ev->kind == REG_EV_REGISTERED)
		calls_registered(&cs, ev->name);
}

static void
setup(void)
{
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_int_eq(registry_init(&reg, 100000, 1000, ignore_down, NULL),
	    0);
	reg.event = on_event;
	ck_assert_int_eq(calls_init(&cs, base, &reg, 4, &fakepeer_ops, NULL),
	    0);
	fakepeer_init(&pa);
	fakepeer_init(&pb);
	fakepeer_init(&pc);
}

static void
teardown(void)
{
	calls_deinit(&cs);
	registry_deinit(&reg);
	event_base_free(base);
	fakepeer_deinit(&pa);
	fakepeer_deinit(&pb);
	fakepeer_deinit(&pc);
}

/* What the daemon's dispatch_call passes calls_start. */
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

/* Call b from a (request msgid) with payload v, by conn id or gen. */
static int
call(struct fakepeer *from, uint32_t msgid, struct fakepeer *to,
    uint64_t gen, uint64_t timeout_ms, uint64_t v)
{
	struct push p = {
		.t = { NULL, 0, 2 },
		.caller = 1,
		.payload = { .type = MSGPACK_OBJECT_POSITIVE_INTEGER,
		    .via.u64 = v },
	};

	return calls_start(&cs, from, msgid, to, gen, timeout_ms, encode, &p);
}

/* The call push b got: its id. */
static uint64_t
call_id_of_push(struct fakepeer *p, uint64_t v)
{
	const msgpack_object *params = fakepeer_push(p, PR_PUSH_CALL);

	ck_assert_uint_eq(params->via.array.size, 4);
	ck_assert_uint_eq(params->via.array.ptr[3].via.u64, v);
	return params->via.array.ptr[0].via.u64;
}

/* Run the timers that are due now. */
static void
run_due(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

START_TEST(call_and_reply)
{
	pr_value result = { .type = MSGPACK_OBJECT_POSITIVE_INTEGER,
	    .via.u64 = 42 };
	const msgpack_object *r;
	uint64_t id;

	ck_assert_int_eq(call(&pa, 7, &pb, 0, 60000, 5), 0);
	ck_assert_uint_eq(cs.pending, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pb), 0);
	id = call_id_of_push(&pb, 5);
	ck_assert_uint_eq(id, 1);
	/* Only the callee answers. */
	ck_assert_int_eq(calls_reply(&cs, &pc, id, &result, NULL, 0, NULL, 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_int_eq(calls_reply(&cs, &pa, id, &result, NULL, 0, NULL, 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_uint_eq(cs.replies_late, 0);
	ck_assert_int_eq(calls_reply(&cs, &pb, id, &result, NULL, 0, NULL, 0),
	    0);
	r = fakepeer_response(&pa, 7, 0);
	ck_assert_uint_eq(r->via.u64, 42);
	ck_assert_uint_eq(cs.pending, 0);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 0);
	/* A second answer is late; an id never given is not. */
	ck_assert_int_eq(calls_reply(&cs, &pb, id, &result, NULL, 0, NULL, 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_uint_eq(cs.replies_late, 1);
	ck_assert_int_eq(calls_reply(&cs, &pb, 99, &result, NULL, 0, NULL, 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_uint_eq(cs.replies_late, 1);
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	/* Its timer went with it. */
	run_due();
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
}
END_TEST

START_TEST(reply_with_an_error)
{
	const msgpack_object *m, *err;
	uint64_t id;

	ck_assert_int_eq(call(&pa, 3, &pb, 0, 60000, 1), 0);
	id = call_id_of_push(&pb, 1);
	ck_assert_int_eq(calls_reply(&cs, &pb, id, NULL, "nope", 4, "no way",
	    6), 0);
	m = fakepeer_next(&pa);
	ck_assert_ptr_nonnull(m);
	err = &m->via.array.ptr[2];
	ck_assert(fakepeer_str_is(&err->via.array.ptr[0], "nope"));
	ck_assert(fakepeer_str_is(&err->via.array.ptr[1], "no way"));
	ck_assert_int_eq(m->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
}
END_TEST

START_TEST(call_times_out)
{
	ck_assert_int_eq(call(&pa, 9, &pb, 0, 0, 1), 0);
	ck_assert_int_eq(call(&pa, 10, &pb, 0, 60000, 2), 0);
	run_due();
	ck_assert_ptr_null(fakepeer_response(&pa, 9, PR_ERR_TIMEOUT));
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_uint_eq(cs.pending, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 1);
	/* The callee's answer to the timed-out call is late. */
	ck_assert_int_eq(calls_reply(&cs, &pb, 1, NULL, "x", 1, "", 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_uint_eq(cs.replies_late, 1);
}
END_TEST

START_TEST(caller_gone)
{
	ck_assert_int_eq(call(&pa, 1, &pb, 0, 0, 1), 0);
	ck_assert_int_eq(call(&pa, 2, &pb, 5, 0, 2), 0);
	ck_assert_int_eq(call(&pc, 1, &pb, 0, 0, 3), 0);
	calls_peer_gone(&cs, &pa);
	/* Cancelled without a word: nobody waits for the answer. */
	ck_assert_uint_eq(cs.pending, 1);
	ck_assert_uint_eq(cs.by_gen.count, 0);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 0);
	run_due();
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_ptr_null(fakepeer_response(&pc, 1, PR_ERR_TIMEOUT));
	ck_assert_uint_eq(cs.pending, 0);
	/* A record stays until its peer goes; going twice is quiet. */
	ck_assert_uint_eq(cs.peers.count, 2);
	calls_peer_gone(&cs, &pa);
	calls_peer_gone(&cs, &pb);
	calls_peer_gone(&cs, &pc);
	ck_assert_uint_eq(cs.peers.count, 0);
}
END_TEST

START_TEST(callee_gone)
{
	ck_assert_int_eq(call(&pa, 1, &pb, 0, 60000, 1), 0);
	ck_assert_int_eq(call(&pc, 4, &pb, 0, 60000, 2), 0);
	ck_assert_int_eq(call(&pa, 2, &pc, 0, 60000, 3), 0);
	ck_assert_uint_eq(call_id_of_push(&pc, 3), 3);
	calls_peer_gone(&cs, &pb);
	ck_assert_ptr_null(fakepeer_response(&pa, 1, PR_ERR_DOWN));
	ck_assert_ptr_null(fakepeer_response(&pc, 4, PR_ERR_DOWN));
	ck_assert_uint_eq(cs.pending, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pc), 0);
	/* Stopping: calls end without a word. */
	cs.quiet = true;
	calls_peer_gone(&cs, &pc);
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_uint_eq(cs.pending, 0);
}
END_TEST

START_TEST(registration_ends)
{
	ck_assert_int_eq(call(&pa, 1, &pb, 7, 60000, 1), 0);
	ck_assert_int_eq(call(&pc, 2, &pb, 7, 60000, 2), 0);
	ck_assert_int_eq(call(&pa, 3, &pb, 8, 60000, 3), 0);
	ck_assert_int_eq(call(&pa, 4, &pb, 0, 60000, 4), 0);
	ck_assert_uint_eq(cs.by_gen.count, 2);
	calls_gen_gone(&cs, 9);
	ck_assert_uint_eq(cs.pending, 4);
	calls_gen_gone(&cs, 7);
	ck_assert_ptr_null(fakepeer_response(&pa, 1, PR_ERR_DOWN));
	ck_assert_ptr_null(fakepeer_response(&pc, 2, PR_ERR_DOWN));
	ck_assert_uint_eq(cs.pending, 2);
	ck_assert_uint_eq(cs.by_gen.count, 1);
	/* A reply through the ended registration is late. */
	ck_assert_int_eq(calls_reply(&cs, &pb, 1, NULL, "x", 1, "", 0),
	    CALLS_E_NOT_FOUND);
	ck_assert_uint_eq(cs.replies_late, 1);
	ck_assert_int_eq(calls_reply(&cs, &pb, 3, NULL, "x", 1, "", 0), 0);
	ck_assert_uint_eq(cs.by_gen.count, 0);
}
END_TEST

START_TEST(limits_and_a_full_callee)
{
	/* max_calls counts calls and awaits together. */
	ck_assert_int_eq(call(&pa, 1, &pb, 0, 60000, 1), 0);
	ck_assert_int_eq(call(&pa, 2, &pb, 0, 60000, 2), 0);
	ck_assert_int_eq(calls_await(&cs, &pa, 3, "x", 1, 60000), 0);
	ck_assert_int_eq(call(&pa, 4, &pb, 0, 60000, 4), 0);
	ck_assert_int_eq(call(&pa, 5, &pb, 0, 60000, 5), CALLS_E_LIMIT);
	ck_assert_int_eq(calls_await(&cs, &pa, 6, "y", 1, 60000),
	    CALLS_E_LIMIT);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 4);
	/* Others are not held back by a's. */
	ck_assert_int_eq(call(&pc, 1, &pb, 0, 60000, 6), 0);
	/* A callee whose output is full gets nothing, and nothing stays. */
	pa.bound = 1;
	ck_assert_int_eq(call(&pc, 2, &pa, 0, 60000, 7), CALLS_E_FULL);
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_uint_eq(calls_pending_of(&cs, &pc), 1);
	ck_assert_uint_eq(cs.pending, 4);
	/* No memory to queue the push: the callee took nothing either.
	 * For the caller it is the callee's trouble, as for send: busy. */
	pb.fail = true;
	ck_assert_int_eq(call(&pc, 3, &pb, 0, 60000, 8), CALLS_E_FAILED);
	ck_assert_uint_eq(pb.oom, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pc), 1);
	ck_assert_uint_eq(cs.pending, 4);
	ck_assert_int_eq(dispatch_calls_err(CALLS_E_FAILED), PR_ERR_BUSY);
	ck_assert_int_eq(dispatch_calls_err(CALLS_E_FULL), PR_ERR_BUSY);
	ck_assert_int_eq(dispatch_calls_err(CALLS_E_LIMIT), PR_ERR_LIMIT);
	pb.fail = false;
	/* The limit follows a reload. */
	cs.max_calls = 5;
	ck_assert_int_eq(call(&pa, 5, &pb, 0, 60000, 5), 0);
}
END_TEST

START_TEST(awaits_answered_on_registration)
{
	struct reg_client *rc = registry_client_new(&reg, 1, 1, 0, 0, &pc);
	const msgpack_object *r;
	struct reg_name *n;

	ck_assert_ptr_nonnull(rc);
	ck_assert_int_eq(calls_await(&cs, &pa, 11, "svc", 3, 60000), 0);
	ck_assert_int_eq(calls_await(&cs, &pb, 12, "svc", 3, 60000), 0);
	ck_assert_int_eq(calls_await(&cs, &pb, 13, "other", 5, 60000), 0);
	ck_assert_uint_eq(cs.nawaits, 3);
	ck_assert_uint_eq(cs.awaits.count, 2);	/* one record per name */
	ck_assert_int_eq(registry_register(&reg, rc, "svc", 3, "\xa1v", 2, 0,
	    &n), 0);
	r = fakepeer_response(&pa, 11, 0);
	ck_assert_int_eq(r->type, MSGPACK_OBJECT_MAP);
	r = fakepeer_response(&pb, 12, 0);
	ck_assert_int_eq(r->type, MSGPACK_OBJECT_MAP);
	ck_assert_uint_eq(cs.nawaits, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 0);
	ck_assert_uint_eq(calls_pending_of(&cs, &pb), 1);
	/* The other one's peer goes: its await with it. */
	calls_peer_gone(&cs, &pb);
	ck_assert_uint_eq(cs.nawaits, 0);
	ck_assert_uint_eq(cs.awaits.count, 0);
	ck_assert_int_eq(registry_register(&reg, rc, "other", 5, NULL, 0, 0,
	    &n), 0);
	ck_assert_uint_eq(fakepeer_unread(&pb), 0);
}
END_TEST

START_TEST(awaits_in_slices)
{
	enum { N = AWAIT_SLICE + 10 };
	struct reg_client *rc = registry_client_new(&reg, 1, 1, 0, 0, &pc);
	static struct fakepeer many[N];
	struct reg_name *n;
	size_t answered = 0;

	ck_assert_ptr_nonnull(rc);
	for (size_t i = 0; i < N; i++) {
		fakepeer_init(&many[i]);
		ck_assert_int_eq(calls_await(&cs, &many[i], (uint32_t)i, "x",
		    1, 60000), 0);
	}
	ck_assert_int_eq(registry_register(&reg, rc, "x", 1, NULL, 0, 0, &n),
	    0);
	for (size_t i = 0; i < N; i++)
		answered += fakepeer_unread(&many[i]) > 0;
	ck_assert_uint_eq(answered, AWAIT_SLICE);
	ck_assert_uint_eq(cs.nawaits, N - AWAIT_SLICE);
	/* An await made now waits for the next registration. */
	ck_assert_int_eq(calls_await(&cs, &pa, 1, "x", 1, 60000), 0);
	run_due();
	answered = 0;
	for (size_t i = 0; i < N; i++) {
		answered += fakepeer_unread(&many[i]) > 0;
		fakepeer_deinit(&many[i]);
	}
	ck_assert_uint_eq(answered, N);
	ck_assert_uint_eq(cs.nawaits, 1);
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
}
END_TEST

START_TEST(await_times_out)
{
	ck_assert_int_eq(calls_await(&cs, &pa, 5, "late", 4, 0), 0);
	ck_assert_int_eq(calls_await(&cs, &pa, 6, "late", 4, 60000), 0);
	run_due();
	ck_assert_ptr_null(fakepeer_response(&pa, 5, PR_ERR_TIMEOUT));
	ck_assert_uint_eq(fakepeer_unread(&pa), 0);
	ck_assert_uint_eq(cs.nawaits, 1);
	ck_assert_uint_eq(calls_pending_of(&cs, &pa), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("calls");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, call_and_reply);
	tcase_add_test(tc, reply_with_an_error);
	tcase_add_test(tc, call_times_out);
	tcase_add_test(tc, caller_gone);
	tcase_add_test(tc, callee_gone);
	tcase_add_test(tc, registration_ends);
	tcase_add_test(tc, limits_and_a_full_callee);
	tcase_add_test(tc, awaits_answered_on_registration);
	tcase_add_test(tc, awaits_in_slices);
	tcase_add_test(tc, await_times_out);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
