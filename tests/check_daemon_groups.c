/*
 * check_daemon_groups.c: integration tests of groups: join, leave,
 * members, publish (and its busy members, and a group of a thousand),
 * memberships that end with their connection, the join limit, and the
 * access policy applied to join and register_many.
 *
 * Split from check_daemon.c by method family; the shared helpers are
 * testlib's.  Every test starts its own daemon on a private socket, talks
 * to it through real sockets and stops it with SIGTERM (t_daemon_stop
 * checks a clean exit and the removal of the socket).  Every wait is
 * bounded; no test asserts on elapsed time.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "testlib.h"

static const char *const publish_keys[] = { "delivered", "busy", NULL };

/* A member entry of group for conn, joined by this test process. */
static void
check_member(const msgpack_object *e, const char *group, uint64_t conn)
{
	check_keys(e, member_keys);
	check_str(o_get(e, "group"), group);
	ck_assert_uint_eq(o_uint(o_get(e, "conn")), conn);
	check_made_by(e, getpid());
}

/* members [group] is exactly these connections, in this order. */
static void
check_members(struct tclient *c, const char *group, const uint64_t *conns,
    uint32_t n)
{
	msgpack_object *r = t_call_ok(c, "members", "s", group);

	ck_assert_int_eq(r->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(r->via.array.size, n);
	for (uint32_t i = 0; i < n; i++)
		check_member(at(r, i), group, conns[i]);
}

/* Pack the publish result {"delivered": n, "busy": [busy...]}. */
static void
pack_publish_result(struct tpack *p, uint64_t delivered,
    const uint64_t *busy, uint32_t nbusy)
{
	tp_map(p, 2);
	tp_str(p, "delivered");
	tp_uint(p, delivered);
	tp_str(p, "busy");
	tp_arr(p, nbusy);
	for (uint32_t i = 0; i < nbusy; i++)
		tp_uint(p, busy[i]);
}

/* Check a publish result. */
static void
check_publish_result(const msgpack_object *r, uint64_t delivered,
    const uint64_t *busy, uint32_t nbusy)
{
	msgpack_object *b;

	check_keys(r, publish_keys);
	ck_assert_uint_eq(o_uint(o_get(r, "delivered")), delivered);
	b = o_get(r, "busy");
	ck_assert_int_eq(b->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(b->via.array.size, nbusy);
	for (uint32_t i = 0; i < nbusy; i++)
		ck_assert_uint_eq(o_uint(at(b, i)), busy[i]);
}

/* Receive a publish push [group, sender, payload]; return its payload. */
static msgpack_object *
expect_publish(struct tclient *c, const char *group, uint64_t sender)
{
	msgpack_object *pa = t_push(c, "publish");

	ck_assert_uint_eq(pa->via.array.size, 3);
	check_str(at(pa, 0), group);
	ck_assert_uint_eq(o_uint(at(pa, 1)), sender);
	return at(pa, 2);
}

START_TEST(test_join_leave_members)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *o;
	struct tpack p, want;
	msgpack_object *e;
	uint64_t ca, cb, cc, g1, g2, g3;
	uint32_t id;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	tp_init(&p);
	tp_init(&want);
	check_strs(t_call_ok(o, "members", "s", "room"),
	    (const char *const[]){ NULL });

	/* Joined in the order b, a, c; a with a str, c with a map value. */
	e = t_call_ok(b, "join", "s", "room");
	check_member(e, "room", cb);
	check_nil(o_get(e, "value"));
	g1 = o_uint(o_get(e, "gen"));
	e = t_call_ok(a, "join", "ss", "room", "alice");
	check_member(e, "room", ca);
	check_str(o_get(e, "value"), "alice");
	g2 = o_uint(o_get(e, "gen"));
	ck_assert_uint_gt(g2, g1);
	pack_rich_value(&want);
	id = rq_begin(c, &p, "join", 2);
	tp_str(&p, "room");
	pack_rich_value(&p);
	rq_send(c, &p);
	e = t_ok(c, id);
	check_member(e, "room", cc);
	ck_assert(obj_eq(o_get(e, "value"), &want));
	g3 = o_uint(o_get(e, "gen"));
	ck_assert_uint_gt(g3, g2);

	/* A member already: taken (with or without a value). */
	t_call_err(a, "taken", "join", "s", "room");
	t_call_err(a, "taken", "join", "ss", "room", "again");

	/* members: in join order, each with its value and gen. */
	e = t_call_ok(o, "members", "s", "room");
	ck_assert_uint_eq(e->via.array.size, 3);
	check_member(at(e, 0), "room", cb);
	check_nil(o_get(at(e, 0), "value"));
	ck_assert_uint_eq(o_uint(o_get(at(e, 0), "gen")), g1);
	check_member(at(e, 1), "room", ca);
	check_str(o_get(at(e, 1), "value"), "alice");
	ck_assert_uint_eq(o_uint(o_get(at(e, 1), "gen")), g2);
	check_member(at(e, 2), "room", cc);
	ck_assert(obj_eq(o_get(at(e, 2), "value"), &want));
	ck_assert_uint_eq(o_uint(o_get(at(e, 2), "gen")), g3);
	ck_assert_uint_eq(t_stat(o, "groups"), 1);
	ck_assert_uint_eq(t_stat(o, "members"), 3);

	/* leave: true, then not_found; never a member: not_found. */
	check_bool(t_call_ok(b, "leave", "s", "room"), true);
	t_call_err(b, "not_found", "leave", "s", "room");
	t_call_err(o, "not_found", "leave", "s", "room");
	t_call_err(o, "not_found", "leave", "s", "no-such-group");
	check_members(o, "room", (const uint64_t[]){ ca, cc }, 2);
	/* A new join goes last, with a new gen. */
	e = t_call_ok(b, "join", "s", "room");
	ck_assert_uint_gt(o_uint(o_get(e, "gen")), g3);
	check_members(o, "room", (const uint64_t[]){ ca, cc, cb }, 3);
	ck_assert_uint_eq(t_stat(o, "members"), 3);

	/* Groups and names are two namespaces. */
	t_call_ok(o, "register", "s", "room");
	check_str(o_get(t_call_ok(a, "whereis", "s", "room"), "name"), "room");
	check_members(o, "room", (const uint64_t[]){ ca, cc, cb }, 3);
	t_call_err(o, "not_found", "send", "ss", "hall", "x");
	check_member(t_call_ok(a, "join", "s", "hall"), "hall", ca);
	t_call_err(o, "not_found", "send", "ss", "hall", "x");
	check_nil(t_call_ok(o, "whereis", "s", "hall"));
	ck_assert_uint_eq(t_stat(o, "groups"), 2);
	ck_assert_uint_eq(t_stat(o, "members"), 4);
	ck_assert_uint_eq(t_stat(o, "names"), 1);

	/* Bad params. */
	bad_name(a, "join", "", 0);
	bad_name(a, "leave", "", 0);
	bad_name(a, "members", "", 0);
	bad_name(a, "join", "\xff\xfe", 2);
	{
		char *n256 = t_filled(256, 'g');

		bad_name(a, "join", n256, 256);
		bad_name(a, "members", n256, 256);
		free(n256);
	}
	t_call_err(a, "bad_request", "join", "");
	t_call_err(a, "bad_request", "join", "u", (uint64_t)1);
	t_call_err(a, "bad_request", "join", "ssn", "g", "v");
	t_call_err(a, "bad_request", "leave", "");
	t_call_err(a, "bad_request", "leave", "u", (uint64_t)1);
	t_call_err(a, "bad_request", "leave", "ss", "room", "x");
	t_call_err(a, "bad_request", "members", "");
	t_call_err(a, "bad_request", "members", "n");
	t_call_err(a, "bad_request", "members", "ss", "room", "x");
	check_members(o, "room", (const uint64_t[]){ ca, cc, cb }, 3);
	ck_assert_uint_eq(t_stat(o, "members"), 4);

	/* Everyone leaves: the group is gone, its members empty. */
	check_bool(t_call_ok(a, "leave", "s", "room"), true);
	check_bool(t_call_ok(b, "leave", "s", "room"), true);
	check_bool(t_call_ok(c, "leave", "s", "room"), true);
	check_bool(t_call_ok(a, "leave", "s", "hall"), true);
	check_strs(t_call_ok(o, "members", "s", "room"),
	    (const char *const[]){ NULL });
	ck_assert_uint_eq(t_stat(o, "groups"), 0);
	ck_assert_uint_eq(t_stat(o, "members"), 0);
	/* The name of the same spelling is still there. */
	check_str(o_get(t_call_ok(a, "whereis", "s", "room"), "name"), "room");

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* publish [group, payload] with opts packed by the caller (or none). */
static uint32_t
publish_opts(struct tclient *c, const char *group, const char *payload,
    const struct tpack *opts)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "publish", opts != NULL ? 3 : 2);
	tp_str(&p, group);
	tp_str(&p, payload);
	if (opts != NULL)
		tp_append(&p, opts);
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

/* The push [2, "publish", [group, sender, payload]]. */
static void
pack_publish_push(struct tpack *p, const char *group, uint64_t sender,
    const char *payload)
{
	tp_arr(p, 3);
	tp_uint(p, 2);
	tp_str(p, "publish");
	tp_arr(p, 3);
	tp_str(p, group);
	tp_uint(p, sender);
	tp_str(p, payload);
}

START_TEST(test_publish)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *x;
	struct tpack opts, res, push, p, want;
	uint64_t ca, cb, cc, cx, msgs;
	uint32_t id, first;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	x = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	cx = t_conn_id(x);
	tp_init(&opts);
	tp_init(&res);
	tp_init(&push);
	tp_init(&p);
	tp_init(&want);
	t_call_ok(a, "join", "s", "room");
	t_call_ok(b, "join", "s", "room");
	t_call_ok(c, "join", "s", "room");
	check_members(x, "room", (const uint64_t[]){ ca, cb, cc }, 3);
	msgs = t_stat(x, "messages");

	/* From a non-member: every member gets it. */
	check_publish_result(t_call_ok(x, "publish", "ss", "room", "hi"),
	    3, NULL, 0);
	check_str(expect_publish(a, "room", cx), "hi");
	check_str(expect_publish(b, "room", cx), "hi");
	check_str(expect_publish(c, "room", cx), "hi");
	t_expect_quiet(x);

	/* From a member, echo by default: the sender too, its push before
	 * or after the response. */
	pack_publish_result(&res, 3, NULL, 0);
	pack_publish_push(&push, "room", ca, "echo default");
	id = publish_opts(a, "room", "echo default", NULL);
	expect_result_and_push(a, id, &res, &push);
	check_str(expect_publish(b, "room", ca), "echo default");
	check_str(expect_publish(c, "room", ca), "echo default");
	/* echo true; an empty opts map is the default. */
	tp_map(&opts, 1);
	tp_str(&opts, "echo");
	msgpack_pack_true(&opts.pk);
	tp_reset(&push);
	pack_publish_push(&push, "room", ca, "echo true");
	id = publish_opts(a, "room", "echo true", &opts);
	expect_result_and_push(a, id, &res, &push);
	check_str(expect_publish(b, "room", ca), "echo true");
	check_str(expect_publish(c, "room", ca), "echo true");
	tp_reset(&opts);
	tp_map(&opts, 0);
	tp_reset(&push);
	pack_publish_push(&push, "room", ca, "empty opts");
	id = publish_opts(a, "room", "empty opts", &opts);
	expect_result_and_push(a, id, &res, &push);
	check_str(expect_publish(b, "room", ca), "empty opts");
	check_str(expect_publish(c, "room", ca), "empty opts");
	/* echo false: not the sender. */
	tp_reset(&opts);
	tp_map(&opts, 1);
	tp_str(&opts, "echo");
	msgpack_pack_false(&opts.pk);
	id = publish_opts(a, "room", "no echo", &opts);
	check_publish_result(t_ok(a, id), 2, NULL, 0);
	check_str(expect_publish(b, "room", ca), "no echo");
	check_str(expect_publish(c, "room", ca), "no echo");
	t_expect_quiet(a);
	/* echo false from a non-member changes nothing. */
	id = publish_opts(x, "room", "x no echo", &opts);
	check_publish_result(t_ok(x, id), 3, NULL, 0);
	check_str(expect_publish(a, "room", cx), "x no echo");
	check_str(expect_publish(b, "room", cx), "x no echo");
	check_str(expect_publish(c, "room", cx), "x no echo");

	/* Bad opts: an unknown key, echo not a bool, not a map. */
	tp_reset(&opts);
	tp_map(&opts, 2);
	tp_str(&opts, "echo");
	msgpack_pack_false(&opts.pk);
	tp_str(&opts, "zq7");
	tp_uint(&opts, 1);
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	tp_reset(&opts);
	tp_map(&opts, 1);
	tp_str(&opts, "ttl");
	tp_uint(&opts, 1);
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	tp_reset(&opts);
	tp_map(&opts, 1);
	tp_str(&opts, "echo");
	tp_uint(&opts, 0);
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	tp_reset(&opts);
	tp_str(&opts, "echo");
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	tp_reset(&opts);
	tp_nil(&opts);
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	tp_reset(&opts);
	tp_arr(&opts, 0);
	t_err(x, publish_opts(x, "room", "bad", &opts), "bad_request");
	t_call_err(x, "bad_request", "publish", "s", "room");
	t_call_err(x, "bad_request", "publish", "");
	t_call_err(x, "bad_request", "publish", "ss", "", "bad");
	t_call_err(x, "bad_request", "publish", "us", (uint64_t)ca, "bad");
	tp_reset(&opts);
	tp_map(&opts, 0);
	id = rq_begin(x, &p, "publish", 4);
	tp_str(&p, "room");
	tp_str(&p, "bad");
	tp_map(&p, 0);
	tp_nil(&p);
	rq_send(x, &p);
	t_err(x, id, "bad_request");
	t_expect_quiet(a);
	t_expect_quiet(b);

	/* No members: delivered to nobody, not an error. */
	check_publish_result(t_call_ok(x, "publish", "ss", "empty", "?"), 0,
	    NULL, 0);

	/* Any payload, kept as it is. */
	pack_rich_value(&want);
	id = rq_begin(x, &p, "publish", 2);
	tp_str(&p, "room");
	pack_rich_value(&p);
	rq_send(x, &p);
	check_publish_result(t_ok(x, id), 3, NULL, 0);
	ck_assert(obj_eq(expect_publish(a, "room", cx), &want));
	ck_assert(obj_eq(expect_publish(b, "room", cx), &want));
	ck_assert(obj_eq(expect_publish(c, "room", cx), &want));

	/* Order: 200 publishes pipelined arrive at each member in order. */
	first = x->next_msgid;
	for (uint64_t i = 0; i < 200; i++) {
		rq_begin(x, &p, "publish", 2);
		tp_str(&p, "room");
		tp_uint(&p, i);
	}
	rq_send(x, &p);
	for (uint32_t i = 0; i < 200; i++)
		check_publish_result(t_ok(x, first + i), 3, NULL, 0);
	for (uint64_t i = 0; i < 200; i++) {
		ck_assert_uint_eq(o_uint(expect_publish(a, "room", cx)), i);
		ck_assert_uint_eq(o_uint(expect_publish(b, "room", cx)), i);
		ck_assert_uint_eq(o_uint(expect_publish(c, "room", cx)), i);
	}
	t_expect_quiet(a);
	t_expect_quiet(b);
	t_expect_quiet(c);

	/* Each publish push counts as a message. */
	ck_assert_uint_eq(t_stat(x, "messages"),
	    msgs + 3 + 3 + 3 + 3 + 2 + 3 + 0 + 3 + 200 * 3);

	tp_free(&opts);
	tp_free(&res);
	tp_free(&push);
	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_close(c);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/*
 * publish skips and reports members whose outbound buffer is full: two
 * members that never read (joined m2 first, then m1) and one that does.
 */
START_TEST(test_publish_busy)
{
	struct tdaemon d;
	struct tclient *m1, *m2, *n, *x;
	struct tpack p;
	char *fill = t_filled(BUSY_PAYLOAD, 'p');
	uint64_t cm1, cm2, cx, seq;
	uint64_t *got1, *got2, n1 = 0, n2 = 0;
	bool busy1 = false, busy2 = false;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	m1 = t_connect(d.path);
	m2 = t_connect(d.path);
	n = t_connect(d.path);
	x = t_connect(d.path);
	cm1 = t_conn_id(m1);
	cm2 = t_conn_id(m2);
	cx = t_conn_id(x);
	tp_init(&p);
	got1 = calloc(BUSY_MAX_TRIES, sizeof(*got1));
	got2 = calloc(BUSY_MAX_TRIES, sizeof(*got2));
	ck_assert(got1 != NULL && got2 != NULL);
	t_call_ok(m2, "join", "s", "room");
	t_call_ok(m1, "join", "s", "room");
	t_call_ok(n, "join", "s", "room");

	/* Publish until both silent members are busy at once. */
	for (seq = 0; seq < BUSY_MAX_TRIES && !(busy1 && busy2); seq++) {
		msgpack_object *r, *b;
		uint32_t id = rq_begin(x, &p, "publish", 2);

		tp_str(&p, "room");
		tp_arr(&p, 2);
		tp_uint(&p, seq);
		tp_str(&p, fill);
		rq_send(x, &p);
		r = t_ok(x, id);
		check_keys(r, publish_keys);
		b = o_get(r, "busy");
		ck_assert_int_eq(b->type, MSGPACK_OBJECT_ARRAY);
		ck_assert_uint_le(b->via.array.size, 2);
		ck_assert_uint_eq(o_uint(o_get(r, "delivered")) +
		    b->via.array.size, 3);
		busy1 = busy2 = false;
		for (uint32_t i = 0; i < b->via.array.size; i++) {
			uint64_t bc = o_uint(at(b, i));

			ck_assert(bc == cm1 || bc == cm2);
			/* In join order: m2 before m1. */
			if (bc == cm2)
				ck_assert_uint_eq(i, 0);
			busy1 |= bc == cm1;
			busy2 |= bc == cm2;
		}
		if (!busy1)
			got1[n1++] = seq;
		if (!busy2)
			got2[n2++] = seq;
		/* n reads, so it is never busy. */
		ck_assert_uint_eq(o_uint(at(expect_publish(n, "room", cx), 0)),
		    seq);
	}
	ck_assert_msg(busy1 && busy2, "publish never reported both busy");
	ck_assert_uint_ge(n1, 1);
	ck_assert_uint_ge(n2, 1);

	/* The silent members got exactly what was delivered, in order. */
	for (uint64_t i = 0; i < n1; i++) {
		msgpack_object *pl = expect_publish(m1, "room", cx);

		ck_assert_uint_eq(o_uint(at(pl, 0)), got1[i]);
		ck_assert_uint_eq(at(pl, 1)->via.str.size, BUSY_PAYLOAD);
	}
	t_expect_quiet(m1);
	for (uint64_t i = 0; i < n2; i++)
		ck_assert_uint_eq(o_uint(at(expect_publish(m2, "room", cx), 0)),
		    got2[i]);
	t_expect_quiet(m2);

	/* Drained: everyone gets the next one. */
	check_publish_result(t_call_ok(x, "publish", "ss", "room", "all"), 3,
	    NULL, 0);
	check_str(expect_publish(m2, "room", cx), "all");
	check_str(expect_publish(m1, "room", cx), "all");
	check_str(expect_publish(n, "room", cx), "all");

	free(got1);
	free(got2);
	free(fill);
	tp_free(&p);
	t_close(m1);
	t_close(m2);
	t_close(n);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* One publish reaches a group of 1,000 connections. */
#define BIG_GROUP	1000

#define BIG_GROUP_VG	250

START_TEST(test_publish_1000)
{
	struct tdaemon d;
	struct tclient *x, **m;
	uint64_t *conns, cx;
	msgpack_object *r;
	int nm = t_under_valgrind() ? BIG_GROUP_VG : BIG_GROUP;

	/* 1,000 sockets here and as many in the daemon, which inherits the
	 * limit. */
	t_raise_nofile((unsigned long)nm + 256);
	t_daemon_start(&d, NULL);
	x = connect_first(&d);
	cx = t_conn_id(x);
	m = calloc((size_t)nm, sizeof(*m));
	conns = calloc((size_t)nm, sizeof(*conns));
	ck_assert(m != NULL && conns != NULL);
	for (int i = 0; i < nm; i++) {
		m[i] = t_connect(d.path);
		r = t_call_ok(m[i], "join", "ss", "big", "member");
		conns[i] = o_uint(o_get(r, "conn"));
	}
	ck_assert_uint_eq(t_stat(x, "groups"), 1);
	ck_assert_uint_eq(t_stat(x, "members"), (uint64_t)nm);
	/* members: all of them, in join order. */
	r = t_call_ok(x, "members", "s", "big");
	ck_assert_uint_eq(r->via.array.size, (uint32_t)nm);
	for (int i = 0; i < nm; i++) {
		check_str(o_get(at(r, (uint32_t)i), "group"), "big");
		ck_assert_uint_eq(o_uint(o_get(at(r, (uint32_t)i), "conn")),
		    conns[i]);
	}

	check_publish_result(t_call_ok(x, "publish", "ss", "big", "to all"),
	    (uint64_t)nm, NULL, 0);
	for (int i = 0; i < nm; i++)
		check_str(expect_publish(m[i], "big", cx), "to all");

	/* They all go: the group goes with them. */
	for (int i = 0; i < nm; i++)
		t_close(m[i]);
	t_wait_stat(x, "members", 0);
	ck_assert_uint_eq(t_stat(x, "groups"), 0);
	t_wait_gauges(x, 1, 0, 0);
	check_strs(t_call_ok(x, "members", "s", "big"),
	    (const char *const[]){ NULL });
	check_publish_result(t_call_ok(x, "publish", "ss", "big", "anyone?"),
	    0, NULL, 0);

	free(m);
	free(conns);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* A membership ends with its connection (§8). */
START_TEST(test_group_lifeline)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *o;
	uint64_t ca, cc, co;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	co = t_conn_id(o);
	ca = t_conn_id(a);
	cc = t_conn_id(c);
	t_call_ok(a, "join", "s", "room");
	t_call_ok(b, "join", "s", "room");
	t_call_ok(c, "join", "s", "room");
	t_call_ok(a, "join", "s", "hall");
	ck_assert_uint_eq(t_stat(o, "groups"), 2);
	ck_assert_uint_eq(t_stat(o, "members"), 4);

	t_close(b);
	t_wait_stat(o, "members", 3);
	check_members(o, "room", (const uint64_t[]){ ca, cc }, 2);
	check_publish_result(t_call_ok(o, "publish", "ss", "room", "hi"), 2,
	    NULL, 0);
	check_str(expect_publish(a, "room", co), "hi");
	check_str(expect_publish(c, "room", co), "hi");

	t_close(a);
	t_wait_stat(o, "members", 1);
	ck_assert_uint_eq(t_stat(o, "groups"), 1);
	check_members(o, "room", (const uint64_t[]){ cc }, 1);
	check_strs(t_call_ok(o, "members", "s", "hall"),
	    (const char *const[]){ NULL });

	t_close(c);
	t_wait_stat(o, "members", 0);
	ck_assert_uint_eq(t_stat(o, "groups"), 0);
	t_wait_gauges(o, 1, 0, 0);
	check_strs(t_call_ok(o, "members", "s", "room"),
	    (const char *const[]){ NULL });

	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* Memberships are capped by --max-names, apart from names. */
START_TEST(test_join_limit)
{
	struct tdaemon d;
	struct tclient *a, *b;

	t_daemon_start(&d, "--max-names", "2", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(a, "register", "s", "n1");
	t_call_ok(a, "register", "s", "n2");
	t_call_err(a, "limit", "register", "s", "n3");
	/* Holding max-names names does not stop joins. */
	t_call_ok(a, "join", "s", "g1");
	t_call_ok(a, "join", "s", "g2");
	t_call_err(a, "limit", "join", "s", "g3");
	t_call_err(a, "limit", "join", "ss", "g3", "v");
	/* taken comes before limit. */
	t_call_err(a, "taken", "join", "s", "g1");
	check_strs(o_get(t_call_ok(b, "keys", "u", t_conn_id(a)), "groups"),
	    (const char *const[]){ "g1", "g2", NULL });
	/* Per connection: b has its own allowance. */
	t_call_ok(b, "join", "s", "g1");
	t_call_ok(b, "join", "s", "g3");
	t_call_err(b, "limit", "join", "s", "g2");
	/* Leaving frees a slot; joins do not take register's. */
	check_bool(t_call_ok(a, "leave", "s", "g1"), true);
	t_call_ok(a, "join", "s", "g3");
	t_call_err(a, "limit", "join", "s", "g1");
	t_call_err(a, "limit", "register", "s", "n3");
	ck_assert_uint_eq(t_stat(a, "members"), 4);
	ck_assert_uint_eq(t_stat(a, "names"), 2);

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* The access policy applies to join and register_many as to register. */
START_TEST(test_policy_v2)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p;
	uint32_t id;

	t_daemon_start(&d, "--rule", "deny * secret.*", "--max-names", "1",
	    NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	tp_init(&p);

	t_call_err(a, "forbidden", "register", "s", "secret.name");
	t_call_err(a, "forbidden", "join", "s", "secret.room");
	t_call_err(a, "forbidden", "join", "ss", "secret.room", "v");
	/* forbidden comes before limit. */
	t_call_ok(a, "join", "s", "open");
	t_call_err(a, "forbidden", "join", "s", "secret.room");
	t_call_err(a, "limit", "join", "s", "open2");
	check_strs(o_get(t_call_ok(b, "keys", "u", t_conn_id(a)), "groups"),
	    (const char *const[]){ "open", NULL });
	check_strs(t_call_ok(b, "members", "s", "secret.room"),
	    (const char *const[]){ NULL });
	/* publish and members are not owning: the policy does not apply. */
	check_publish_result(t_call_ok(b, "publish", "ss", "secret.room",
	    "x"), 0, NULL, 0);

	/* register_many: one refused name refuses all; forbidden comes
	 * before taken and limit. */
	id = rq_begin(b, &p, "register_many", 1);
	tp_arr(&p, 2);
	tp_arr(&p, 1);
	tp_str(&p, "fine");
	tp_arr(&p, 1);
	tp_str(&p, "secret.x");
	rq_send(b, &p);
	t_err(b, id, "forbidden");
	check_nil(t_call_ok(b, "whereis", "s", "fine"));
	t_call_ok(a, "register", "s", "mine");
	id = rq_begin(a, &p, "register_many", 1);
	tp_arr(&p, 2);
	tp_arr(&p, 1);
	tp_str(&p, "mine");
	tp_arr(&p, 1);
	tp_str(&p, "secret.y");
	rq_send(a, &p);
	t_err(a, id, "forbidden");
	id = rq_begin(a, &p, "register_many", 1);
	tp_arr(&p, 1);
	tp_arr(&p, 1);
	tp_str(&p, "secret.z");
	rq_send(a, &p);
	t_err(a, id, "forbidden");
	ck_assert_uint_eq(t_stat(a, "names"), 1);

	tp_free(&p);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

static Suite *
groups_suite(void)
{
	Suite *s = suite_create("daemon_groups");
	TCase *tc;

	tc = tcase_create("groups");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_join_leave_members);
	tcase_add_test(tc, test_publish);
	tcase_add_test(tc, test_publish_busy);
	tcase_add_test(tc, test_publish_1000);
	tcase_add_test(tc, test_group_lifeline);
	tcase_add_test(tc, test_join_limit);
	tcase_add_test(tc, test_policy_v2);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(groups_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
