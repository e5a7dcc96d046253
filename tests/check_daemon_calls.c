/*
 * check_daemon_calls.c: integration tests of call and reply: results
 * and errors, order, bad params, not_found, timeouts, busy callees,
 * calls that end with down when their callee or its name goes, a caller
 * that goes, the per-connection limit, and ten thousand calls.
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

#define DAY_MS		86400000ULL	/* the largest call timeout_ms */

/* How long a "down" that must come at once may take to arrive: generous,
 * and more so under valgrind.  Not a performance bound. */
static int
at_once_ms(void)
{
	return t_under_valgrind() ? 5000 : 1000;
}

/* call [name, payload, timeout_ms] / call [conn, payload, timeout_ms]. */
static uint32_t
call_name(struct tclient *c, const char *name, const char *payload,
    uint64_t timeout_ms)
{
	return t_request(c, "call", "ssu", name, payload, timeout_ms);
}

static uint32_t
call_conn(struct tclient *c, uint64_t conn, const char *payload,
    uint64_t timeout_ms)
{
	return t_request(c, "call", "usu", conn, payload, timeout_ms);
}

/* The next object is the push [2, "call", [call_id, target, caller,
 * payload]]; its params. */
static msgpack_object *
call_push(struct tclient *c, uint64_t caller)
{
	msgpack_object *pa = t_push(c, "call");

	ck_assert_uint_eq(pa->via.array.size, 4);
	(void)o_uint(at(pa, 0));
	ck_assert_uint_eq(o_uint(at(pa, 2)), caller);
	return pa;
}

/* ... addressed to the name, with a str payload: its call id. */
static uint64_t
expect_call(struct tclient *c, const char *name, uint64_t caller,
    const char *payload)
{
	msgpack_object *pa = call_push(c, caller);

	check_str(at(pa, 1), name);
	check_str(at(pa, 3), payload);
	return o_uint(at(pa, 0));
}

/* ... addressed to a connection id. */
static uint64_t
expect_call_conn(struct tclient *c, uint64_t target, uint64_t caller,
    const char *payload)
{
	msgpack_object *pa = call_push(c, caller);

	ck_assert_int_eq(at(pa, 1)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	ck_assert_uint_eq(o_uint(at(pa, 1)), target);
	check_str(at(pa, 3), payload);
	return o_uint(at(pa, 0));
}

/* reply [call_id, nil, [code, message]]: its msgid. */
static uint32_t
reply_error(struct tclient *c, uint64_t call_id, const char *code,
    const char *msg)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "reply", 3);
	tp_uint(&p, call_id);
	tp_nil(&p);
	tp_arr(&p, 2);
	tp_str(&p, code);
	tp_str(&p, msg);
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

/* The response to id is exactly the error [code, msg]. */
static void
expect_error_exact(struct tclient *c, uint32_t id, const char *code,
    const char *msg)
{
	msgpack_object *o = t_recv(c, -1), *e;

	ck_assert_msg(o != NULL, "no response to msgid %u", id);
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(o->via.array.size, 4);
	ck_assert_uint_eq(o_uint(at(o, 0)), 1);
	ck_assert_uint_eq(o_uint(at(o, 1)), id);
	e = at(o, 2);
	ck_assert_int_eq(e->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(e->via.array.size, 2);
	check_str(at(e, 0), code);
	check_str(at(e, 1), msg);
	check_nil(at(o, 3));
}

/*
 * Receive n responses, in any order, within bound_ms each: the errors
 * code for exactly the msgids in ids.
 */
static void
expect_errors_any_order(struct tclient *c, const uint32_t *ids, int n,
    const char *code, int bound_ms)
{
	bool seen[16] = { false };

	ck_assert_int_le(n, 16);
	for (int k = 0; k < n; k++) {
		msgpack_object *o = t_recv(c, bound_ms), *e;
		uint64_t id;
		int i;

		ck_assert_msg(o != NULL, "%d of %d %s responses arrived", k, n,
		    code);
		ck_assert_uint_eq(o->via.array.size, 4);
		ck_assert_uint_eq(o_uint(at(o, 0)), 1);
		id = o_uint(at(o, 1));
		for (i = 0; i < n && ids[i] != id; i++)
			;
		ck_assert_msg(i < n, "unexpected response to msgid %llu",
		    (unsigned long long)id);
		ck_assert(!seen[i]);
		seen[i] = true;
		e = at(o, 2);
		ck_assert_int_eq(e->type, MSGPACK_OBJECT_ARRAY);
		check_str(at(e, 0), code);
		ck_assert_int_eq(at(e, 1)->type, MSGPACK_OBJECT_STR);
		check_nil(at(o, 3));
	}
}

START_TEST(test_call_reply)
{
	struct tdaemon d;
	struct tclient *s, *c, *x;
	struct tpack p, want;
	msgpack_object *pa;
	uint64_t cs, cc, cid, cid2;
	uint32_t id, id2, rid;
	char *code64;

	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	x = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	tp_init(&p);
	tp_init(&want);
	t_call_ok(s, "register", "s", "kv");
	ck_assert_uint_eq(t_stat(x, "calls"), 0);

	/* By name: the push carries the name as given; the call's result
	 * is the reply's. */
	id = call_name(c, "kv", "get color", DAY_MS);
	cid = expect_call(s, "kv", cc, "get color");
	ck_assert_uint_eq(t_stat(x, "calls"), 1);
	check_bool(t_call_ok(s, "reply", "us", cid, "blue"), true);
	check_str(t_ok(c, id), "blue");
	ck_assert_uint_eq(t_stat(x, "calls"), 0);
	/* A second reply finds no call. */
	t_call_err(s, "not_found", "reply", "us", cid, "green");
	t_expect_quiet(c);

	/* By connection id, default timeout; [call_id, result, nil]. */
	id = t_request(c, "call", "us", cs, "get size");
	cid2 = expect_call_conn(s, cs, cc, "get size");
	ck_assert_uint_ne(cid2, cid);
	check_bool(t_call_ok(s, "reply", "usn", cid2, "large"), true);
	check_str(t_ok(c, id), "large");

	/* An error reply reaches the caller unchanged, whatever its code. */
	id = call_conn(c, cs, "get weight", DAY_MS);
	cid = expect_call_conn(s, cs, cc, "get weight");
	rid = reply_error(s, cid, "no_such_key",
	    "weight is not set, caf\xc3\xa9");
	check_bool(t_ok(s, rid), true);
	expect_error_exact(c, id, "no_such_key",
	    "weight is not set, caf\xc3\xa9");
	/* A code of 64 bytes, an empty message; a code of the protocol's. */
	code64 = t_filled(64, 'e');
	id = call_name(c, "kv", "x", DAY_MS);
	cid = expect_call(s, "kv", cc, "x");
	check_bool(t_ok(s, reply_error(s, cid, code64, "")), true);
	expect_error_exact(c, id, code64, "");
	free(code64);
	id = call_name(c, "kv", "y", DAY_MS);
	cid = expect_call(s, "kv", cc, "y");
	check_bool(t_ok(s, reply_error(s, cid, "not_found", "no y")), true);
	expect_error_exact(c, id, "not_found", "no y");

	/* Any value as payload and as result, kept as it is; nil too. */
	pack_rich_value(&want);
	id = rq_begin(c, &p, "call", 3);
	tp_str(&p, "kv");
	pack_rich_value(&p);
	tp_uint(&p, DAY_MS);
	rq_send(c, &p);
	pa = call_push(s, cc);
	check_str(at(pa, 1), "kv");
	ck_assert(obj_eq(at(pa, 3), &want));
	cid = o_uint(at(pa, 0));
	rid = rq_begin(s, &p, "reply", 2);
	tp_uint(&p, cid);
	pack_rich_value(&p);
	rq_send(s, &p);
	check_bool(t_ok(s, rid), true);
	ck_assert(obj_eq(t_ok(c, id), &want));
	id = call_name(c, "kv", "nil please", DAY_MS);
	cid = expect_call(s, "kv", cc, "nil please");
	check_bool(t_call_ok(s, "reply", "un", cid), true);
	check_nil(t_ok(c, id));

	/* Only the connection the call went to can answer it: not another
	 * one, not the caller. */
	id = call_name(c, "kv", "who", DAY_MS);
	cid = expect_call(s, "kv", cc, "who");
	t_call_err(x, "not_found", "reply", "us", cid, "x");
	t_call_err(c, "not_found", "reply", "us", cid, "c");
	t_expect_quiet(c);
	check_bool(t_call_ok(s, "reply", "us", cid, "s"), true);
	check_str(t_ok(c, id), "s");
	/* A call id that was never given out. */
	t_call_err(s, "not_found", "reply", "us", (uint64_t)NO_CONN, "x");

	/* Two pending calls answered in reverse order: responses follow
	 * the replies, matched by msgid. */
	id = call_name(c, "kv", "first", DAY_MS);
	id2 = call_conn(c, cs, "second", DAY_MS);
	cid = expect_call(s, "kv", cc, "first");
	cid2 = expect_call_conn(s, cs, cc, "second");
	ck_assert_uint_ne(cid, cid2);
	ck_assert_uint_eq(t_stat(x, "calls"), 2);
	check_bool(t_call_ok(s, "reply", "us", cid2, "two"), true);
	check_bool(t_call_ok(s, "reply", "us", cid, "one"), true);
	check_str(t_ok(c, id2), "two");
	check_str(t_ok(c, id), "one");

	ck_assert_uint_eq(t_stat(x, "calls"), 0);
	t_expect_quiet(s);
	t_expect_quiet(c);
	tp_free(&p);
	tp_free(&want);
	t_close(s);
	t_close(c);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* A request is applied or refused: a call after a pipelined call is
 * answered first, while the call waits for its reply. */
START_TEST(test_call_order)
{
	struct tdaemon d;
	struct tclient *s, *c;
	struct tpack p;
	uint64_t cc, cid;
	uint32_t id1, id2, id3, id4;

	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	cc = t_conn_id(c);
	tp_init(&p);
	t_call_ok(s, "register", "s", "kv");

	/* One write: call, whereis, call that fails at once, whereis. */
	id1 = rq_begin(c, &p, "call", 3);
	tp_str(&p, "kv");
	tp_str(&p, "slow");
	tp_uint(&p, DAY_MS);
	id2 = rq_begin(c, &p, "whereis", 1);
	tp_str(&p, "kv");
	id3 = rq_begin(c, &p, "call", 2);
	tp_str(&p, "nobody");
	tp_str(&p, "x");
	id4 = rq_begin(c, &p, "whereis", 1);
	tp_str(&p, "nobody");
	rq_send(c, &p);
	check_str(o_get(t_ok(c, id2), "name"), "kv");
	t_err(c, id3, "not_found");
	check_nil(t_ok(c, id4));
	t_expect_quiet(c);

	cid = expect_call(s, "kv", cc, "slow");
	check_bool(t_call_ok(s, "reply", "us", cid, "done"), true);
	check_str(t_ok(c, id1), "done");
	t_expect_quiet(c);

	tp_free(&p);
	t_close(s);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* reply [call_id, <result>, <the object in err>]: bad_request. */
static void
bad_reply(struct tclient *c, uint64_t call_id, bool with_result,
    struct tpack *err)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "reply", 3);
	tp_uint(&p, call_id);
	if (with_result)
		tp_str(&p, "r");
	else
		tp_nil(&p);
	tp_append(&p, err);
	rq_send(c, &p);
	tp_free(&p);
	tp_reset(err);
	t_err(c, id, "bad_request");
}

START_TEST(test_call_bad_params)
{
	struct tdaemon d;
	struct tclient *s, *c;
	struct tpack e;
	uint64_t cs, cc, cid;
	uint32_t id;
	char *code65;

	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	tp_init(&e);
	t_call_ok(s, "register", "s", "kv");

	/* call: arity, timeout_ms 1..86400000 and a uint, target a name or
	 * a uint. */
	t_call_err(c, "bad_request", "call", "");
	t_call_err(c, "bad_request", "call", "s", "kv");
	t_call_err(c, "bad_request", "call", "ssuu", "kv", "p",
	    (uint64_t)1000, (uint64_t)1);
	t_call_err(c, "bad_request", "call", "ssu", "kv", "p", (uint64_t)0);
	t_call_err(c, "bad_request", "call", "ssu", "kv", "p", DAY_MS + 1);
	t_call_err(c, "bad_request", "call", "ssu", "kv", "p",
	    (uint64_t)UINT64_MAX);
	t_call_err(c, "bad_request", "call", "ssi", "kv", "p", (int64_t)-5);
	t_call_err(c, "bad_request", "call", "sss", "kv", "p", "1000");
	t_call_err(c, "bad_request", "call", "ssn", "kv", "p");
	for_bad_targets(c, "call", bad_target);
	/* bad_request comes before not_found. */
	t_call_err(c, "bad_request", "call", "ssu", "nobody", "p",
	    (uint64_t)0);
	t_call_err(c, "bad_request", "call", "usu", (uint64_t)NO_CONN, "p",
	    DAY_MS + 1);
	/* Nothing reached the callee, nothing is pending. */
	t_expect_quiet(s);
	ck_assert_uint_eq(t_stat(c, "calls"), 0);

	/* The bounds themselves are valid. */
	id = call_name(c, "kv", "one ms", 1);
	cid = expect_call(s, "kv", cc, "one ms");
	t_err(c, id, "timeout");
	t_call_err(s, "not_found", "reply", "us", cid, "late");
	id = call_conn(c, cs, "a day", DAY_MS);
	cid = expect_call_conn(s, cs, cc, "a day");

	/* reply: arity, call_id a uint, error [code, message] of strs, code
	 * 1..64 bytes, both UTF-8, result nil when an error is given. */
	t_call_err(s, "bad_request", "reply", "");
	t_call_err(s, "bad_request", "reply", "u", cid);
	t_call_err(s, "bad_request", "reply", "usnn", cid, "r");
	t_call_err(s, "bad_request", "reply", "ss", "1", "r");
	t_call_err(s, "bad_request", "reply", "is", (int64_t)-1, "r");
	t_call_err(s, "bad_request", "reply", "ns", "r");
	tp_str(&e, "err");
	bad_reply(s, cid, false, &e);			/* not an array */
	tp_arr(&e, 0);
	bad_reply(s, cid, false, &e);
	tp_arr(&e, 1);
	tp_str(&e, "code");
	bad_reply(s, cid, false, &e);
	tp_arr(&e, 3);
	tp_str(&e, "code");
	tp_str(&e, "msg");
	tp_str(&e, "extra");
	bad_reply(s, cid, false, &e);
	tp_arr(&e, 2);
	tp_uint(&e, 42);
	tp_str(&e, "msg");
	bad_reply(s, cid, false, &e);			/* code not a str */
	tp_arr(&e, 2);
	msgpack_pack_bin(&e.pk, 4);
	msgpack_pack_bin_body(&e.pk, "code", 4);
	tp_str(&e, "msg");
	bad_reply(s, cid, false, &e);			/* code a bin */
	tp_arr(&e, 2);
	tp_str(&e, "code");
	tp_uint(&e, 42);
	bad_reply(s, cid, false, &e);			/* message not a str */
	tp_arr(&e, 2);
	tp_nil(&e);
	tp_nil(&e);
	bad_reply(s, cid, false, &e);
	tp_arr(&e, 2);
	tp_str(&e, "");
	tp_str(&e, "msg");
	bad_reply(s, cid, false, &e);			/* empty code */
	code65 = t_filled(65, 'e');
	tp_arr(&e, 2);
	tp_str(&e, code65);
	tp_str(&e, "msg");
	bad_reply(s, cid, false, &e);			/* 65 bytes */
	free(code65);
	tp_arr(&e, 2);
	tp_strn(&e, "c\xff", 2);
	tp_str(&e, "msg");
	bad_reply(s, cid, false, &e);			/* not UTF-8 */
	tp_arr(&e, 2);
	tp_str(&e, "code");
	tp_strn(&e, "m\xc0\xaf", 3);
	bad_reply(s, cid, false, &e);
	tp_arr(&e, 2);
	tp_str(&e, "code");
	tp_str(&e, "msg");
	bad_reply(s, cid, true, &e);			/* result and error */
	expect_usable(s);

	/* None of these answered the call: it is still pending. */
	t_expect_quiet(c);
	ck_assert_uint_eq(t_stat(c, "calls"), 1);
	check_bool(t_call_ok(s, "reply", "us", cid, "fine"), true);
	check_str(t_ok(c, id), "fine");

	tp_free(&e);
	t_close(s);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_call_not_found)
{
	struct tdaemon d;
	struct tclient *s, *c, *x;
	uint64_t cx;

	t_daemon_start(&d, NULL);
	s = connect_first(&d);
	c = t_connect(d.path);
	x = t_connect(d.path);
	cx = t_conn_id(x);
	t_call_ok(x, "register", "s", "gone-soon");

	t_call_err(c, "not_found", "call", "ss", "nobody", "p");
	expect_err_no_echo(c, t_request(c, "call", "ss", "Zq7Absent", "p"),
	    "not_found", "Zq7Absent");
	t_call_err(c, "not_found", "call", "usu", (uint64_t)NO_CONN, "p",
	    DAY_MS);
	t_call_err(c, "not_found", "call", "us", (uint64_t)0, "p");
	/* Names are not connection ids: "3" is a name. */
	t_call_err(c, "not_found", "call", "ss", "3", "p");

	/* A connection that closed, and its names, are targets no more. */
	t_close(x);
	t_wait_gauges(c, 2, 0, 0);
	t_call_err(c, "not_found", "call", "us", cx, "p");
	t_call_err(c, "not_found", "call", "ss", "gone-soon", "p");
	ck_assert_uint_eq(t_stat(c, "calls"), 0);
	t_expect_quiet(s);

	t_close(s);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_call_timeout)
{
	struct tdaemon d;
	struct tclient *s, *c, *x;
	uint64_t cc, cid, cid2, cid3, late;
	uint32_t id, id2, id3;

	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	x = t_connect(d.path);
	cc = t_conn_id(c);
	t_call_ok(s, "register", "s", "kv");

	/* A long call pending meanwhile is unaffected. */
	id2 = call_name(c, "kv", "long", DAY_MS);
	cid2 = expect_call(s, "kv", cc, "long");
	id = call_name(c, "kv", "short", 50);
	cid = expect_call(s, "kv", cc, "short");
	t_err(c, id, "timeout");
	ck_assert_uint_eq(t_stat(x, "calls"), 1);

	/* The late reply: not_found, counted, and nothing for the caller. */
	late = t_stat(x, "replies_late");
	t_call_err(s, "not_found", "reply", "us", cid, "too late");
	ck_assert_uint_eq(t_stat(x, "replies_late"), late + 1);
	/* A late error reply too. */
	id3 = call_name(c, "kv", "short again", 20);
	cid3 = expect_call(s, "kv", cc, "short again");
	t_err(c, id3, "timeout");
	t_err(s, reply_error(s, cid3, "oops", "late"), "not_found");
	ck_assert_uint_eq(t_stat(x, "replies_late"), late + 2);
	t_expect_quiet(c);

	check_bool(t_call_ok(s, "reply", "us", cid2, "in time"), true);
	check_str(t_ok(c, id2), "in time");
	ck_assert_uint_eq(t_stat(x, "calls"), 0);
	/* An answered call's reply was not late. */
	ck_assert_uint_eq(t_stat(x, "replies_late"), late + 2);

	t_close(s);
	t_close(c);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* call [name, [seq, fill], a day] then whereis: true when the call is
 * pending (no response yet), false when it was refused with busy. */
static bool
call_seq(struct tclient *c, const char *name, uint64_t seq, const char *fill)
{
	struct tpack p;
	msgpack_object *o;
	uint32_t id, wid;

	tp_init(&p);
	id = rq_begin(c, &p, "call", 3);
	tp_str(&p, name);
	tp_arr(&p, 2);
	tp_uint(&p, seq);
	tp_str(&p, fill);
	tp_uint(&p, DAY_MS);
	wid = rq_begin(c, &p, "whereis", 1);
	tp_str(&p, "nobody");
	rq_send(c, &p);
	tp_free(&p);
	o = t_recv(c, -1);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o_uint(at(o, 0)), 1);
	if (o_uint(at(o, 1)) == id) {
		/* A refused call ends at once: its response comes in order. */
		ck_assert_int_eq(at(o, 2)->type, MSGPACK_OBJECT_ARRAY);
		check_str(at(at(o, 2), 0), "busy");
		check_nil(t_ok(c, wid));
		return false;
	}
	ck_assert_uint_eq(o_uint(at(o, 1)), wid);
	check_nil(at(o, 3));
	return true;
}

START_TEST(test_call_busy)
{
	struct tdaemon d;
	struct tclient *s, *c;
	char *fill = t_filled(BUSY_PAYLOAD, 'p');
	uint64_t accepted = 0, cc, *cids;
	uint32_t first;
	msgpack_object *pa;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	cc = t_conn_id(c);
	t_call_ok(s, "register", "s", "slow");

	/* s never reads: its socket, then its 4 KiB bound, fill up. */
	first = c->next_msgid;
	while (accepted < BUSY_MAX_TRIES && call_seq(c, "slow", accepted, fill))
		accepted++;
	ck_assert_msg(accepted < BUSY_MAX_TRIES, "call never answered busy");
	ck_assert_uint_ge(accepted, 1);
	/* Still busy; nothing queued, only the accepted calls pending. */
	ck_assert(!call_seq(c, "slow", accepted, fill));
	ck_assert_uint_eq(t_stat(c, "calls"), accepted);

	/* Exactly the accepted calls, in order; each answered. */
	cids = calloc(accepted, sizeof(*cids));
	ck_assert_ptr_nonnull(cids);
	for (uint64_t i = 0; i < accepted; i++) {
		pa = call_push(s, cc);
		check_str(at(pa, 1), "slow");
		ck_assert_uint_eq(o_uint(at(at(pa, 3), 0)), i);
		ck_assert_uint_eq(at(at(pa, 3), 1)->via.str.size,
		    BUSY_PAYLOAD);
		cids[i] = o_uint(at(pa, 0));
	}
	t_expect_quiet(s);
	for (uint64_t i = 0; i < accepted; i++)
		check_bool(t_call_ok(s, "reply", "uu", cids[i], i), true);
	/* The calls were msgids first, first+2, ... (each with a whereis). */
	for (uint64_t i = 0; i < accepted; i++)
		ck_assert_uint_eq(o_uint(t_ok(c, first + 2 * (uint32_t)i)), i);

	/* Drained: calls go through again. */
	ck_assert(call_seq(c, "slow", accepted, fill));
	pa = call_push(s, cc);
	ck_assert_uint_eq(o_uint(at(at(pa, 3), 0)), accepted);
	check_bool(t_call_ok(s, "reply", "us", o_uint(at(pa, 0)), "ok"),
	    true);
	check_str(t_ok(c, c->next_msgid - 2), "ok");

	free(cids);
	free(fill);
	t_close(s);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §9: a call's response is always queued, whatever the caller's buffer
 * holds: a caller that stopped reading with two calls pending, its
 * buffer full of messages, still gets the reply and the down.
 */
START_TEST(test_call_response_always_queued)
{
	struct tdaemon d;
	struct tclient *c, *s, *x;
	char *fill = t_filled(BUSY_PAYLOAD, 'p');
	uint64_t cc, cx, cid1, accepted = 0, msgs = 0;
	uint32_t id1, id2;
	bool got1 = false, got2 = false;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	c = t_connect(d.path);
	s = t_connect(d.path);
	x = t_connect(d.path);
	cc = t_conn_id(c);
	cx = t_conn_id(x);
	t_call_ok(c, "register", "s", "caller");
	t_call_ok(s, "register", "s", "srv");
	t_call_ok(s, "register", "s", "srv2");
	id1 = call_name(c, "srv", "one", DAY_MS);
	id2 = call_name(c, "srv2", "two", DAY_MS);
	cid1 = expect_call(s, "srv", cc, "one");
	expect_call(s, "srv2", cc, "two");

	/* c reads nothing: fill its buffer until sends to it are busy. */
	while (accepted < BUSY_MAX_TRIES && send_seq(x, "caller", accepted,
	    fill))
		accepted++;
	ck_assert_msg(accepted < BUSY_MAX_TRIES, "send never answered busy");

	/* The reply is accepted and the down is sent regardless. */
	check_bool(t_call_ok(s, "reply", "us", cid1, "answer"), true);
	check_bool(t_call_ok(s, "unregister", "s", "srv2"), true);
	ck_assert_uint_eq(t_stat(x, "calls"), 0);

	/* c reads: every message in order, and both responses. */
	while (msgs < accepted || !got1 || !got2) {
		msgpack_object *o = t_recv(c, -1);

		ck_assert_msg(o != NULL, "stalled: %llu/%llu messages, "
		    "responses %d %d", (unsigned long long)msgs,
		    (unsigned long long)accepted, got1, got2);
		if (o->via.array.size == 3) {
			msgpack_object *pa = at(o, 2);

			check_str(at(o, 1), "message");
			check_str(at(pa, 0), "caller");
			ck_assert_uint_eq(o_uint(at(pa, 1)), cx);
			ck_assert_uint_eq(o_uint(at(at(pa, 2), 0)), msgs);
			msgs++;
		} else if (o_uint(at(o, 1)) == id1) {
			ck_assert(!got1);
			check_nil(at(o, 2));
			check_str(at(o, 3), "answer");
			got1 = true;
		} else {
			ck_assert(!got2);
			ck_assert_uint_eq(o_uint(at(o, 1)), id2);
			check_str(at(at(o, 2), 0), "down");
			got2 = true;
		}
	}
	t_expect_quiet(c);
	expect_usable(c);

	free(fill);
	t_close(c);
	t_close(s);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* The callee unregisters (or loses) the name: a call by name ends with
 * down at once; a call by connection id does not. */
START_TEST(test_call_down_unregister)
{
	struct tdaemon d;
	struct tclient *s, *c, *x;
	uint64_t cs, cc, cid1, cid2, cid3;
	uint32_t id1, id2, id3;
	msgpack_object *at_lost;

	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	x = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	t_call_ok(s, "register", "s", "kv");
	t_call_ok(s, "register", "s", "other");
	t_call_ok(s, "register", "s", "unrelated");

	id1 = call_name(c, "kv", "by name", DAY_MS);
	id2 = call_conn(c, cs, "by conn", DAY_MS);
	id3 = call_name(c, "other", "by other name", DAY_MS);
	cid1 = expect_call(s, "kv", cc, "by name");
	cid2 = expect_call_conn(s, cs, cc, "by conn");
	cid3 = expect_call(s, "other", cc, "by other name");

	/* Another name of the callee goes: no call ends. */
	check_bool(t_call_ok(s, "unregister", "s", "unrelated"), true);
	t_expect_quiet(c);
	/* Changing the value keeps the registration: no call ends. */
	t_call_ok(s, "update", "ss", "kv", "new value");
	t_expect_quiet(c);

	check_bool(t_call_ok(s, "unregister", "s", "kv"), true);
	expect_errors_any_order(c, &id1, 1, "down", at_once_ms());
	t_expect_quiet(c);
	ck_assert_uint_eq(t_stat(x, "calls"), 2);
	/* The callee's answer comes too late. */
	t_call_err(s, "not_found", "reply", "us", cid1, "late");

	/* Evicted (the test runs as the daemon's user: an administrator). */
	check_bool(t_call_ok(x, "evict", "s", "other"), true);
	at_lost = t_push(s, "lost");
	check_str(at(at_lost, 0), "other");
	check_str(at(at_lost, 1), "evicted");
	expect_errors_any_order(c, &id3, 1, "down", at_once_ms());
	t_call_err(s, "not_found", "reply", "us", cid3, "late");

	/* A new owner of the name: a call made before it does not go to
	 * the new one, and the call by connection id is still pending. */
	t_call_ok(x, "register", "s", "kv");
	t_expect_quiet(x);
	t_expect_quiet(c);
	ck_assert_uint_eq(t_stat(x, "calls"), 1);
	check_bool(t_call_ok(s, "reply", "us", cid2, "still here"), true);
	check_str(t_ok(c, id2), "still here");

	t_close(s);
	t_close(c);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/* The callee's connection goes: every call on it ends with down at once. */
START_TEST(test_call_down_close)
{
	struct tdaemon d;
	struct tclient *s, *c, *o;
	uint64_t cs, cc;
	uint32_t ids[3];

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	s = t_connect(d.path);
	c = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	t_call_ok(s, "register", "s", "kv");
	t_call_ok(s, "register", "s", "kv2");

	ids[0] = call_name(c, "kv", "a", DAY_MS);
	ids[1] = call_conn(c, cs, "b", DAY_MS);
	ids[2] = call_name(c, "kv2", "c", DAY_MS);
	expect_call(s, "kv", cc, "a");
	expect_call_conn(s, cs, cc, "b");
	expect_call(s, "kv2", cc, "c");
	ck_assert_uint_eq(t_stat(o, "calls"), 3);

	t_close(s);
	expect_errors_any_order(c, ids, 3, "down", at_once_ms());
	/* The purge is complete once its effects are seen. */
	ck_assert_uint_eq(t_stat(o, "calls"), 0);
	t_wait_gauges(o, 2, 0, 0);
	t_expect_quiet(c);
	expect_usable(c);

	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* The caller's connection goes: its calls are cancelled; the callee's
 * replies find nothing and are counted late. */
START_TEST(test_call_caller_gone)
{
	struct tdaemon d;
	struct tclient *s, *c, *o;
	uint64_t cs, cc, cid[3], late;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	s = t_connect(d.path);
	c = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	t_call_ok(s, "register", "s", "kv");

	call_name(c, "kv", "a", DAY_MS);
	call_conn(c, cs, "b", DAY_MS);
	call_name(c, "kv", "c", DAY_MS);
	cid[0] = expect_call(s, "kv", cc, "a");
	cid[1] = expect_call_conn(s, cs, cc, "b");
	cid[2] = expect_call(s, "kv", cc, "c");
	ck_assert_uint_eq(t_stat(o, "calls"), 3);
	late = t_stat(o, "replies_late");

	t_close(c);
	t_wait_stat(o, "calls", 0);
	t_wait_gauges(o, 2, 1, 0);
	for (int i = 0; i < 3; i++)
		t_call_err(s, "not_found", "reply", "us", cid[i], "late");
	ck_assert_uint_eq(t_stat(o, "replies_late"), late + 3);
	t_expect_quiet(s);
	expect_usable(s);

	t_close(s);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_call_limit)
{
	struct tdaemon d;
	struct tclient *s, *c, *x;
	uint64_t cs, cc, cx, cid[3], cidx;
	uint32_t id[3], idx, id4;

	t_daemon_start(&d, "--max-calls", "3", NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	x = t_connect(d.path);
	cs = t_conn_id(s);
	cc = t_conn_id(c);
	cx = t_conn_id(x);
	t_call_ok(s, "register", "s", "kv");

	for (int i = 0; i < 3; i++) {
		id[i] = call_name(c, "kv", "p", DAY_MS);
		cid[i] = expect_call(s, "kv", cc, "p");
	}
	t_call_err(c, "limit", "call", "ssu", "kv", "p", DAY_MS);
	t_call_err(c, "limit", "call", "usu", cs, "p", DAY_MS);
	/* bad_request and not_found come before limit. */
	t_call_err(c, "bad_request", "call", "ssu", "kv", "p", (uint64_t)0);
	t_call_err(c, "not_found", "call", "ssu", "nobody", "p", DAY_MS);
	t_expect_quiet(s);
	ck_assert_uint_eq(t_stat(x, "calls"), 3);

	/* Per caller connection: x has its own allowance. */
	idx = call_conn(x, cs, "from x", DAY_MS);
	cidx = expect_call_conn(s, cs, cx, "from x");
	check_bool(t_call_ok(s, "reply", "us", cidx, "to x"), true);
	check_str(t_ok(x, idx), "to x");

	/* An answered call frees its slot. */
	check_bool(t_call_ok(s, "reply", "us", cid[1], "one"), true);
	check_str(t_ok(c, id[1]), "one");
	id4 = call_name(c, "kv", "again", DAY_MS);
	cid[1] = expect_call(s, "kv", cc, "again");
	t_call_err(c, "limit", "call", "ssu", "kv", "p", DAY_MS);
	/* So does a timed-out one. */
	check_bool(t_call_ok(s, "reply", "us", cid[0], "zero"), true);
	check_str(t_ok(c, id[0]), "zero");
	idx = call_name(c, "kv", "brief", 20);
	expect_call(s, "kv", cc, "brief");
	t_err(c, idx, "timeout");
	idx = call_name(c, "kv", "after", DAY_MS);
	cid[0] = expect_call(s, "kv", cc, "after");
	t_call_err(c, "limit", "call", "ssu", "kv", "p", DAY_MS);

	check_bool(t_call_ok(s, "reply", "us", cid[0], "a"), true);
	check_bool(t_call_ok(s, "reply", "us", cid[1], "b"), true);
	check_bool(t_call_ok(s, "reply", "us", cid[2], "c"), true);
	check_str(t_ok(c, idx), "a");
	check_str(t_ok(c, id4), "b");
	check_str(t_ok(c, id[2]), "c");
	ck_assert_uint_eq(t_stat(x, "calls"), 0);

	t_close(s);
	t_close(c);
	t_close(x);
	t_daemon_stop(&d);
}
END_TEST

/*
 * 10,000 calls pending at once on one connection, pipelined in one write.
 * Call i: i % 3 == 0 has a short timeout and is never answered; i % 3 == 1
 * is answered with a result, i % 3 == 2 with an error.  Every msgid gets
 * exactly one response, the right one; late replies are all refused.
 */
#define MANY_CALLS	10000

#define MANY_CALLS_VG	2000

#define LATE_REPLIES	100

START_TEST(test_call_10000)
{
	struct tdaemon d;
	struct tclient *s, *c, *o;
	struct tpack p;
	uint64_t cc, *cid, late, ncalls, nshort = 0, got = 0;
	uint32_t first;
	bool *seen;
	char code[32];

	ncalls = t_under_valgrind() ? MANY_CALLS_VG : MANY_CALLS;
	t_daemon_start(&d, NULL);
	s = t_connect(d.path);
	c = t_connect(d.path);
	o = t_connect(d.path);
	cc = t_conn_id(c);
	tp_init(&p);
	cid = calloc(ncalls, sizeof(*cid));
	seen = calloc(ncalls, sizeof(*seen));
	ck_assert(cid != NULL && seen != NULL);
	t_call_ok(s, "register", "s", "srv");

	first = c->next_msgid;
	for (uint64_t i = 0; i < ncalls; i++) {
		rq_begin(c, &p, "call", 3);
		tp_str(&p, "srv");
		tp_uint(&p, i);
		tp_uint(&p, i % 3 == 0 ? 100 : DAY_MS);
		nshort += i % 3 == 0;
	}
	rq_send(c, &p);		/* one write */

	/* Every call reaches the callee once, in order, with its own id. */
	for (uint64_t i = 0; i < ncalls; i++) {
		msgpack_object *pa = call_push(s, cc);

		check_str(at(pa, 1), "srv");
		ck_assert_uint_eq(o_uint(at(pa, 3)), i);
		cid[i] = o_uint(at(pa, 0));
		if (i > 0)
			ck_assert_uint_ne(cid[i], cid[i - 1]);
	}

	/* The short ones time out while the others wait for a reply. */
	for (uint64_t k = 0; k < nshort; k++) {
		msgpack_object *x = t_recv(c, -1);
		uint64_t i;

		ck_assert_msg(x != NULL, "%llu of %llu timeouts",
		    (unsigned long long)k, (unsigned long long)nshort);
		ck_assert_uint_eq(x->via.array.size, 4);
		i = o_uint(at(x, 1)) - first;
		ck_assert_uint_lt(i, ncalls);
		ck_assert_msg(i % 3 == 0, "call %llu ended before its reply",
		    (unsigned long long)i);
		ck_assert(!seen[i]);
		seen[i] = true;
		check_str(at(at(x, 2), 0), "timeout");
		check_nil(at(x, 3));
		got++;
	}
	ck_assert_uint_eq(t_stat(o, "calls"), ncalls - nshort);

	/* Replies to all the others, and late ones to some short ones, in
	 * one write. */
	late = t_stat(o, "replies_late");
	for (uint64_t i = 0; i < ncalls; i++) {
		if (i % 3 == 0) {
			if (i / 3 >= LATE_REPLIES)
				continue;
			rq_begin(s, &p, "reply", 2);
			tp_uint(&p, cid[i]);
			tp_str(&p, "late");
		} else if (i % 3 == 1) {
			rq_begin(s, &p, "reply", 2);
			tp_uint(&p, cid[i]);
			tp_uint(&p, i * 2);
		} else {
			snprintf(code, sizeof(code), "e%llu",
			    (unsigned long long)i);
			rq_begin(s, &p, "reply", 3);
			tp_uint(&p, cid[i]);
			tp_nil(&p);
			tp_arr(&p, 2);
			tp_str(&p, code);
			tp_str(&p, "failed");
		}
	}
	rq_send(s, &p);
	for (uint64_t i = 0; i < ncalls; i++) {
		msgpack_object *x;

		if (i % 3 == 0 && i / 3 >= LATE_REPLIES)
			continue;
		x = t_recv(s, -1);
		ck_assert_ptr_nonnull(x);
		ck_assert_uint_eq(x->via.array.size, 4);
		if (i % 3 == 0) {
			check_str(at(at(x, 2), 0), "not_found");
		} else {
			check_nil(at(x, 2));
			check_bool(at(x, 3), true);
		}
	}

	/* The answered calls: each once, with its own answer. */
	while (got < ncalls) {
		msgpack_object *x = t_recv(c, -1);
		uint64_t i;

		ck_assert_msg(x != NULL, "%llu of %llu responses",
		    (unsigned long long)got, (unsigned long long)ncalls);
		ck_assert_uint_eq(x->via.array.size, 4);
		i = o_uint(at(x, 1)) - first;
		ck_assert_uint_lt(i, ncalls);
		ck_assert(!seen[i]);
		seen[i] = true;
		ck_assert_uint_ne(i % 3, 0);
		if (i % 3 == 1) {
			check_nil(at(x, 2));
			ck_assert_uint_eq(o_uint(at(x, 3)), i * 2);
		} else {
			snprintf(code, sizeof(code), "e%llu",
			    (unsigned long long)i);
			check_str(at(at(x, 2), 0), code);
			check_str(at(at(x, 2), 1), "failed");
			check_nil(at(x, 3));
		}
		got++;
	}
	t_expect_quiet(c);
	ck_assert_uint_eq(t_stat(o, "calls"), 0);
	ck_assert_uint_eq(t_stat(o, "replies_late"), late + LATE_REPLIES);

	free(cid);
	free(seen);
	tp_free(&p);
	t_close(s);
	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

static Suite *
calls_suite(void)
{
	Suite *s = suite_create("daemon_calls");
	TCase *tc;

	tc = tcase_create("calls");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_call_reply);
	tcase_add_test(tc, test_call_order);
	tcase_add_test(tc, test_call_bad_params);
	tcase_add_test(tc, test_call_not_found);
	tcase_add_test(tc, test_call_timeout);
	tcase_add_test(tc, test_call_busy);
	tcase_add_test(tc, test_call_response_always_queued);
	tcase_add_test(tc, test_call_down_unregister);
	tcase_add_test(tc, test_call_down_close);
	tcase_add_test(tc, test_call_caller_gone);
	tcase_add_test(tc, test_call_limit);
	tcase_add_test(tc, test_call_10000);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(calls_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
