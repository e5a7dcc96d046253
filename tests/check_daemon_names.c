/*
 * check_daemon_names.c: integration tests of procregd's name methods
 * against proto/PROTOCOL.md: hello, register, whereis, unregister, value
 * types, bad params, list and its pages, stats, update, keys,
 * register_many, generations.
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

static const char *const hello_keys[] = { "server", "version", "protocol",
	"conn", "boot", "max_message", NULL };

START_TEST(test_hello)
{
	struct tdaemon d;
	struct tclient *a, *b;
	msgpack_object *r, *boot;
	char boot_a[33];
	uint64_t ca, cb;
	char *label;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);

	r = t_call_ok(a, "hello", "");
	check_keys(r, hello_keys);
	check_str(o_get(r, "server"), "procreg");
	check_str(o_get(r, "version"), "0.1.0");
	ck_assert_uint_eq(o_uint(o_get(r, "protocol")), 3);
	ck_assert_uint_eq(o_uint(o_get(r, "max_message")), 1048576);
	ca = o_uint(o_get(r, "conn"));
	boot = o_get(r, "boot");
	ck_assert_int_eq(boot->type, MSGPACK_OBJECT_STR);
	ck_assert_uint_eq(boot->via.str.size, 32);
	for (uint32_t i = 0; i < 32; i++)
		ck_assert_ptr_nonnull(strchr("0123456789abcdef",
		    boot->via.str.ptr[i]));
	memcpy(boot_a, boot->via.str.ptr, 32);
	boot_a[32] = '\0';
	/* Same connection, same answer. */
	ck_assert_uint_eq(t_conn_id(a), ca);

	/* With a label; b connected after a, so it has the next id. */
	r = t_call_ok(b, "hello", "s", "worker-b");
	check_keys(r, hello_keys);
	cb = o_uint(o_get(r, "conn"));
	ck_assert_uint_ge(ca, 1);
	ck_assert_uint_eq(cb, ca + 1);
	check_str(o_get(r, "boot"), boot_a);
	/* Ids count every accepted connection, from 1. */
	ck_assert_uint_eq(t_stat(b, "connections_total"), cb);

	/* Labels: empty and 255 bytes are fine; 256 bytes, non-str, bad
	 * UTF-8 and extra params are not. */
	t_call_ok(a, "hello", "s", "");
	label = t_filled(255, 'l');
	t_call_ok(a, "hello", "s", label);
	free(label);
	label = t_filled(256, 'l');
	t_call_err(a, "bad_request", "hello", "s", label);
	free(label);
	t_call_err(a, "bad_request", "hello", "u", (uint64_t)5);
	t_call_err(a, "bad_request", "hello", "n");
	t_call_err(a, "bad_request", "hello", "s", "\xff\xfe");
	t_call_err(a, "bad_request", "hello", "ss", "x", "y");
	ck_assert_uint_eq(t_conn_id(a), ca);

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* An entry with these name and owner, owned by this test process. */
static void
check_entry(const msgpack_object *e, const char *name, uint64_t conn)
{
	check_keys(e, entry_keys);
	check_str(o_get(e, "name"), name);
	ck_assert_uint_eq(o_uint(o_get(e, "conn")), conn);
	check_made_by(e, getpid());
}

START_TEST(test_register_whereis_unregister)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p, want;
	msgpack_object *e;
	uint64_t ca, cb;
	uint32_t id;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	tp_init(&p);
	tp_init(&want);

	/* A map value round-trips. */
	id = rq_begin(a, &p, "register", 2);
	tp_str(&p, "db");
	tp_map(&p, 2);
	tp_str(&p, "port");
	tp_uint(&p, 5432);
	tp_str(&p, "tags");
	tp_arr(&p, 2);
	tp_str(&p, "x");
	tp_nil(&p);
	rq_send(a, &p);
	tp_map(&want, 2);
	tp_str(&want, "port");
	tp_uint(&want, 5432);
	tp_str(&want, "tags");
	tp_arr(&want, 2);
	tp_str(&want, "x");
	tp_nil(&want);
	e = t_ok(a, id);
	check_entry(e, "db", ca);
	ck_assert(obj_eq(o_get(e, "value"), &want));

	e = t_call_ok(b, "whereis", "s", "db");
	check_entry(e, "db", ca);
	ck_assert(obj_eq(o_get(e, "value"), &want));

	/* No value: nil. */
	e = t_call_ok(b, "register", "s", "cache");
	check_entry(e, "cache", cb);
	check_nil(o_get(e, "value"));
	check_nil(o_get(t_call_ok(a, "whereis", "s", "cache"), "value"));

	/* taken: by another connection, and by the caller itself. */
	t_call_err(b, "taken", "register", "s", "db");
	t_call_err(a, "taken", "register", "s", "db");
	/* Error sentences never echo the client's bytes. */
	t_call_ok(a, "register", "s", "Zq7SecretName");
	expect_err_no_echo(b, t_request(b, "register", "s", "Zq7SecretName"),
	    "taken", "Zq7SecretName");
	expect_err_no_echo(b, t_request(b, "unregister", "s",
	    "Zq7SecretName"), "not_owner", "Zq7SecretName");
	expect_err_no_echo(b, t_request(b, "unregister", "s", "Zq7Absent"),
	    "not_found", "Zq7Absent");
	expect_err_no_echo(b, t_request(b, "send", "ss", "Zq7Absent", "x"),
	    "not_found", "Zq7Absent");
	check_bool(t_call_ok(a, "unregister", "s", "Zq7SecretName"), true);
	t_call_err(a, "taken", "register", "ss", "cache", "v");
	ck_assert_uint_eq(o_uint(o_get(t_call_ok(b, "whereis", "s", "db"),
	    "conn")), ca);

	/* Absent names; names are compared as bytes. */
	check_nil(t_call_ok(a, "whereis", "s", "nope"));
	check_nil(t_call_ok(a, "whereis", "s", "DB"));
	check_nil(t_call_ok(a, "whereis", "s", "db "));

	/* unregister: not_found, not_owner (and the name stays). */
	t_call_err(a, "not_found", "unregister", "s", "nope");
	t_call_err(b, "not_owner", "unregister", "s", "db");
	check_entry(t_call_ok(b, "whereis", "s", "db"), "db", ca);
	check_bool(t_call_ok(a, "unregister", "s", "db"), true);
	check_nil(t_call_ok(b, "whereis", "s", "db"));
	t_call_err(a, "not_found", "unregister", "s", "db");

	/* Free again: anyone may take it. */
	check_entry(t_call_ok(b, "register", "s", "db"), "db", cb);
	ck_assert_uint_eq(t_stat(a, "names"), 2);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_value_types)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p, want;
	uint32_t id;
	uint64_t cb;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	cb = t_conn_id(b);
	tp_init(&p);
	tp_init(&want);
	pack_rich_value(&want);

	id = rq_begin(a, &p, "register", 2);
	tp_str(&p, "rich");
	pack_rich_value(&p);
	rq_send(a, &p);
	ck_assert(obj_eq(o_get(t_ok(a, id), "value"), &want));
	ck_assert(obj_eq(o_get(t_call_ok(b, "whereis", "s", "rich"), "value"),
	    &want));
	ck_assert(obj_eq(o_get(at(t_call_ok(b, "list", "s", "rich"), 0),
	    "value"), &want));

	/* An explicit nil value is nil. */
	check_nil(o_get(t_call_ok(a, "register", "sn", "nilval"), "value"));

	/* The same value as a message payload. */
	id = rq_begin(b, &p, "send", 2);
	tp_str(&p, "rich");
	pack_rich_value(&p);
	rq_send(b, &p);
	check_bool(t_ok(b, id), true);
	ck_assert(obj_eq(expect_message(a, "rich", cb), &want));

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_bad_params)
{
	struct tdaemon d;
	struct tclient *c;
	struct tpack p;
	msgpack_object *e;
	char *name;
	uint32_t id;

	t_daemon_start(&d, NULL);
	c = t_connect(d.path);
	tp_init(&p);

	bad_name(c, "register", "", 0);
	bad_name(c, "unregister", "", 0);
	bad_name(c, "whereis", "", 0);
	bad_name(c, "monitor", "", 0);
	name = t_filled(256, 'n');
	bad_name(c, "register", name, 256);
	bad_name(c, "whereis", name, 256);
	name[255] = '\0';
	e = t_call_ok(c, "register", "s", name);
	ck_assert_uint_eq(o_get(e, "name")->via.str.size, 255);
	check_str(o_get(e, "name"), name);
	free(name);
	/* Invalid UTF-8: garbage, truncated, overlong, surrogate, beyond
	 * U+10FFFF; then an embedded NUL. */
	bad_name(c, "register", "\xff\xfe", 2);
	bad_name(c, "register", "ab\xc3", 3);
	bad_name(c, "register", "\xc0\xaf", 2);
	bad_name(c, "register", "\xe0\x80\xaf", 3);
	bad_name(c, "register", "\xed\xa0\x80", 3);
	bad_name(c, "register", "\xf4\x90\x80\x80", 4);
	bad_name(c, "register", "a\0b", 3);
	/* Well-formed multibyte UTF-8 is fine. */
	check_str(o_get(t_call_ok(c, "register", "s", "caf\xc3\xa9-\xf0\x9f\x98\x80"),
	    "name"), "caf\xc3\xa9-\xf0\x9f\x98\x80");

	/* Not a str: an int, nil, a bin with the bytes of a valid name. */
	t_call_err(c, "bad_request", "register", "u", (uint64_t)42);
	expect_usable(c);
	t_call_err(c, "bad_request", "register", "n");
	expect_usable(c);
	id = rq_begin(c, &p, "register", 1);
	msgpack_pack_bin(&p.pk, 3);
	msgpack_pack_bin_body(&p.pk, "bin", 3);
	rq_send(c, &p);
	t_err(c, id, "bad_request");
	check_nil(t_call_ok(c, "whereis", "s", "bin"));

	/* Arity. */
	t_call_err(c, "bad_request", "register", "");
	expect_usable(c);
	t_call_err(c, "bad_request", "register", "sss", "x", "y", "z");
	expect_usable(c);
	check_nil(t_call_ok(c, "whereis", "s", "x"));
	t_call_err(c, "bad_request", "stats", "u", (uint64_t)1);
	expect_usable(c);
	t_call_err(c, "bad_request", "whereis", "");
	expect_usable(c);
	t_call_err(c, "bad_request", "send", "s", "x");
	expect_usable(c);
	t_call_err(c, "bad_request", "unregister", "ss", "x", "y");
	expect_usable(c);

	/* demonitor needs a uint ref. */
	t_call_err(c, "bad_request", "demonitor", "s", "x");
	expect_usable(c);
	t_call_err(c, "bad_request", "demonitor", "i", (int64_t)-1);
	expect_usable(c);

	/* list: limit 1..10000; the prefix must be a str. */
	t_call_err(c, "bad_request", "list", "su", "", (uint64_t)0);
	expect_usable(c);
	t_call_err(c, "bad_request", "list", "su", "", (uint64_t)10001);
	expect_usable(c);
	ck_assert_int_eq(t_call_ok(c, "list", "su", "", (uint64_t)10000)->type,
	    MSGPACK_OBJECT_ARRAY);
	t_call_err(c, "bad_request", "list", "u", (uint64_t)1);
	expect_usable(c);
	t_call_ok(c, "list", "sus", "", (uint64_t)1, "a");
	t_call_err(c, "bad_request", "list", "suu", "", (uint64_t)1,
	    (uint64_t)1);
	expect_usable(c);

	/* Nothing above was registered by mistake. */
	ck_assert_uint_eq(t_stat(c, "names"), 2);

	tp_free(&p);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* The result is an array of entries with exactly these names. */
static void
check_names(const msgpack_object *r, const char *const *names)
{
	uint32_t n = 0;

	ck_assert_int_eq(r->type, MSGPACK_OBJECT_ARRAY);
	while (names[n] != NULL)
		n++;
	ck_assert_uint_eq(r->via.array.size, n);
	for (uint32_t i = 0; i < n; i++) {
		check_keys(at(r, i), entry_keys);
		check_str(o_get(at(r, i), "name"), names[i]);
	}
}

START_TEST(test_list)
{
	static const char *const all[] = { "a/1", "a/2", "a/3", "b/1", NULL };
	static const char *const a3[] = { "a/1", "a/2", "a/3", NULL };
	static const char *const a12[] = { "a/1", "a/2", NULL };
	static const char *const only_a3[] = { "a/3", NULL };
	static const char *const only_b1[] = { "b/1", NULL };
	static const char *const none[] = { NULL };
	struct tdaemon d;
	struct tclient *a, *b;
	char *longp;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	/* Registered out of order, by two connections. */
	t_call_ok(a, "register", "s", "b/1");
	t_call_ok(b, "register", "s", "a/3");
	t_call_ok(a, "register", "s", "a/1");
	t_call_ok(b, "register", "s", "a/2");

	check_names(t_call_ok(a, "list", ""), all);
	check_names(t_call_ok(a, "list", "s", ""), all);
	check_names(t_call_ok(a, "list", "s", "a/"), a3);
	check_names(t_call_ok(a, "list", "su", "a/", (uint64_t)2), a12);
	check_names(t_call_ok(a, "list", "sus", "a/", (uint64_t)2, "a/2"),
	    only_a3);
	check_names(t_call_ok(a, "list", "sus", "a/", (uint64_t)2, "a/3"),
	    none);
	check_names(t_call_ok(a, "list", "s", "zzz"), none);
	check_names(t_call_ok(a, "list", "sus", "a/", (uint64_t)10, "b"),
	    none);
	check_names(t_call_ok(a, "list", "s", "a/1"), (const char *const[])
	    { "a/1", NULL });
	/* after need not be registered, and may sort before the prefix. */
	check_names(t_call_ok(a, "list", "sus", "a/", (uint64_t)10, "a/22"),
	    only_a3);
	check_names(t_call_ok(a, "list", "sus", "b/", (uint64_t)10, "a/9"),
	    only_b1);
	check_names(t_call_ok(a, "list", "sus", "", (uint64_t)10, "a/3"),
	    only_b1);
	/* A prefix longer than 255 bytes matches nothing. */
	longp = t_filled(300, 'a');
	check_names(t_call_ok(a, "list", "s", longp), none);
	free(longp);

	/* Pages of one walk everything, then an empty page. */
	{
		char after[8] = "";
		int n = 0;

		for (;;) {
			msgpack_object *r = n == 0 ?
			    t_call_ok(b, "list", "su", "", (uint64_t)1) :
			    t_call_ok(b, "list", "sus", "", (uint64_t)1, after);

			ck_assert_int_eq(r->type, MSGPACK_OBJECT_ARRAY);
			if (r->via.array.size == 0)
				break;
			ck_assert_uint_eq(r->via.array.size, 1);
			ck_assert_int_lt(n, 4);
			check_str(o_get(at(r, 0), "name"), all[n]);
			snprintf(after, sizeof(after), "%s", all[n]);
			n++;
		}
		ck_assert_int_eq(n, 4);
	}

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §4.8: "after: any str" (only prefix and limit are range-checked), so an
 * `after` longer than 255 bytes is valid, and a name equal to its first
 * 255 bytes sorts before it.
 */
START_TEST(test_list_after_any_str)
{
	static const char *const only_b[] = { "b", NULL };
	struct tdaemon d;
	struct tclient *c;
	char *n255 = t_filled(255, 'a'), *after = t_filled(256, 'a');
	msgpack_object *r;

	t_daemon_start(&d, NULL);
	c = t_connect(d.path);
	t_call_ok(c, "register", "s", n255);
	t_call_ok(c, "register", "s", "b");

	/* An after that is not UTF-8 is fine too. */
	check_names(t_call_ok(c, "list", "sus", "", (uint64_t)10, "\xff"),
	    (const char *const[]){ NULL });
	r = t_call_ok(c, "list", "sus", "", (uint64_t)10, "a");
	ck_assert_uint_eq(r->via.array.size, 2);

	/* n255 < after (a prefix sorts first) < "b". */
	check_names(t_call_ok(c, "list", "sus", "", (uint64_t)10, after),
	    only_b);

	free(n255);
	free(after);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* A page is cut short to stay within max_message, never empty. */
START_TEST(test_list_page_size)
{
	struct tdaemon d;
	struct tclient *c, *o;
	struct tpack p;
	char name[16], after[16] = "";
	uint32_t id;
	int seen = 0, pages = 0;

	t_daemon_start(&d, "--max-message", "1024", NULL);
	c = t_connect(d.path);
	o = t_connect(d.path);
	tp_init(&p);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		id = register_with_str(c, &p, name, 400);
		rq_send(c, &p);
		t_ok(c, id);
	}
	/* One entry that alone is larger than max_message. */
	id = register_with_str(c, &p, "p9", 990);
	rq_send(c, &p);
	t_ok(c, id);

	for (;;) {
		msgpack_object *resp, *r;

		id = seen == 0 ? t_request(o, "list", "") :
		    t_request(o, "list", "sus", "", (uint64_t)1000, after);
		resp = t_recv(o, -1);
		ck_assert_ptr_nonnull(resp);
		ck_assert_uint_eq(o_uint(at(resp, 1)), id);
		r = at(resp, 3);
		ck_assert_int_eq(r->type, MSGPACK_OBJECT_ARRAY);
		if (r->via.array.size == 0)
			break;
		ck_assert_msg(r->via.array.size == 1 ||
		    packed_size(resp) <= 1024, "a %u-entry page of %zu bytes",
		    r->via.array.size, packed_size(resp));
		for (uint32_t i = 0; i < r->via.array.size; i++) {
			snprintf(name, sizeof(name), "p%d", seen < 6 ? seen : 9);
			check_str(o_get(at(r, i), "name"), name);
			seen++;
		}
		snprintf(after, sizeof(after), "%s", name);
		ck_assert_int_lt(++pages, 8);
	}
	ck_assert_int_eq(seen, 7);
	ck_assert_int_gt(pages, 2);	/* 6 x ~480 bytes need >= 3 pages */

	tp_free(&p);
	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_stats)
{
	struct tdaemon d;
	struct tclient *o, *x;
	msgpack_object *st;
	uint64_t req0, req1, ref;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	st = t_call_ok(o, "stats", "");
	check_keys(st, stats_keys);
	for (uint32_t i = 0; i < st->via.map.size; i++)
		o_uint(&st->via.map.ptr[i].val);
	ck_assert_uint_eq(o_uint(o_get(st, "messages")), 0);
	ck_assert_uint_eq(o_uint(o_get(st, "downs")), 0);
	ck_assert_uint_eq(o_uint(o_get(st, "notifications_ignored")), 0);
	req0 = o_uint(o_get(st, "requests"));
	req1 = t_stat(o, "requests");
	ck_assert_uint_gt(req1, req0);
	t_call_ok(o, "register", "s", "o1");
	t_wait_gauges(o, 1, 1, 0);

	/* x holds names and monitors; o monitors one of x's names. */
	x = t_connect(d.path);
	t_call_ok(x, "register", "s", "x1");
	t_call_ok(x, "register", "s", "x2");
	t_call_ok(x, "register", "s", "x3");
	t_call_ok(x, "monitor", "s", "o1");
	t_call_ok(x, "monitor", "s", "x1");
	ref = o_uint(t_call_ok(o, "monitor", "s", "x2"));
	st = t_call_ok(o, "stats", "");
	ck_assert_uint_eq(o_uint(o_get(st, "connections")), 2);
	ck_assert_uint_eq(o_uint(o_get(st, "names")), 4);
	ck_assert_uint_eq(o_uint(o_get(st, "monitors")), 3);
	ck_assert_uint_gt(o_uint(o_get(st, "requests")), req1);
	ck_assert_uint_ge(o_uint(o_get(st, "connections_total")), 2);

	/* x goes: its down is the sign that it was purged, and a purge
	 * is immediate and complete. */
	t_close(x);
	expect_down(o, ref, "x2", "disconnected");
	st = t_call_ok(o, "stats", "");
	ck_assert_uint_eq(o_uint(o_get(st, "connections")), 1);
	ck_assert_uint_eq(o_uint(o_get(st, "names")), 1);
	ck_assert_uint_eq(o_uint(o_get(st, "monitors")), 0);
	ck_assert_uint_eq(o_uint(o_get(st, "downs")), 1);
	check_nil(t_call_ok(o, "whereis", "s", "x1"));

	/* Again without a monitor to sync on: poll. */
	x = t_connect(d.path);
	t_call_ok(x, "register", "s", "y1");
	t_call_ok(x, "monitor", "s", "o1");
	t_call_ok(x, "monitor", "s", "y1");
	t_call_ok(x, "send", "ss", "o1", "hello");
	expect_message(o, "o1", t_conn_id(x));
	t_wait_gauges(o, 2, 2, 2);
	t_close(x);
	t_wait_gauges(o, 1, 1, 0);
	ck_assert_uint_eq(t_stat(o, "messages"), 1);
	ck_assert_uint_eq(t_stat(o, "downs"), 1);

	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

static const char *const keys_keys[] = { "names", "groups", NULL };

/* Poll (bounded) until a registration made now has a since past ms. */
static void
wait_clock_past(struct tclient *c, uint64_t ms)
{
	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		uint64_t now = o_uint(o_get(t_call_ok(c, "register", "s",
		    "clock-probe"), "since"));

		check_bool(t_call_ok(c, "unregister", "s", "clock-probe"),
		    true);
		if (now > ms)
			return;
		usleep(T_POLL_US);
	}
	ck_abort_msg("the daemon's clock did not move past %llu",
	    (unsigned long long)ms);
}

START_TEST(test_update)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p, want;
	msgpack_object *e;
	uint64_t ca, since, gen, ref;
	uint32_t id;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	tp_init(&p);
	tp_init(&want);

	e = t_call_ok(a, "register", "su", "kv", (uint64_t)1);
	since = o_uint(o_get(e, "since"));
	gen = o_uint(o_get(e, "gen"));
	ref = o_uint(t_call_ok(b, "monitor", "s", "kv"));
	/* Until the daemon's clock has moved, a kept since means nothing. */
	wait_clock_past(b, since);

	pack_rich_value(&want);
	id = rq_begin(a, &p, "update", 2);
	tp_str(&p, "kv");
	pack_rich_value(&p);
	rq_send(a, &p);
	e = t_ok(a, id);
	check_entry(e, "kv", ca);
	ck_assert(obj_eq(o_get(e, "value"), &want));
	ck_assert_uint_eq(o_uint(o_get(e, "since")), since);
	ck_assert_uint_eq(o_uint(o_get(e, "gen")), gen);
	e = t_call_ok(b, "whereis", "s", "kv");
	check_entry(e, "kv", ca);
	ck_assert(obj_eq(o_get(e, "value"), &want));
	ck_assert_uint_eq(o_uint(o_get(e, "since")), since);
	ck_assert_uint_eq(o_uint(o_get(e, "gen")), gen);
	ck_assert(obj_eq(o_get(at(t_call_ok(b, "list", "s", "kv"), 0),
	    "value"), &want));
	/* To nil. */
	e = t_call_ok(a, "update", "sn", "kv");
	check_nil(o_get(e, "value"));
	ck_assert_uint_eq(o_uint(o_get(e, "gen")), gen);
	check_nil(o_get(t_call_ok(b, "whereis", "s", "kv"), "value"));
	/* The registration goes on: its monitor does not fire. */
	t_expect_quiet(b);

	/* Errors: not the owner, not registered, bad params. */
	t_call_err(b, "not_owner", "update", "ss", "kv", "mine");
	t_call_err(b, "not_found", "update", "ss", "nope", "x");
	t_call_err(a, "not_found", "update", "ss", "nope", "x");
	t_call_err(a, "bad_request", "update", "s", "kv");
	t_call_err(a, "bad_request", "update", "");
	t_call_err(a, "bad_request", "update", "sss", "kv", "x", "y");
	t_call_err(a, "bad_request", "update", "ss", "", "x");
	t_call_err(a, "bad_request", "update", "us", (uint64_t)ca, "x");
	check_nil(o_get(t_call_ok(b, "whereis", "s", "kv"), "value"));

	/* Once unregistered, update is not_found; the monitor fires once. */
	check_bool(t_call_ok(a, "unregister", "s", "kv"), true);
	expect_down(b, ref, "kv", "unregistered");
	t_call_err(a, "not_found", "update", "ss", "kv", "x");
	t_expect_quiet(b);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/*
 * keys sorts by an 8-byte head, then the tail: thousands of names that
 * share heads, end inside or just past them, and carry bytes over 0x7f
 * come back in bytewise order, every one of them.
 */
START_TEST(test_keys_sorted_many)
{
	static const char *const stems[] = { "", "svc.", "svc.inst",
	    "service.instance.", "\xc3\xa9t\xc3\xa9.", "\xef\xbf\xbd", "z" };
	enum { N = 3000 };
	struct tdaemon d;
	struct tclient *a, *o;
	msgpack_object *r, *names;
	struct tpack p;
	uint32_t id, seed = 12345;
	uint64_t ca;
	char name[64];

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	a = t_connect(d.path);
	ca = t_conn_id(a);
	tp_init(&p);
	id = rq_begin(a, &p, "register_many", 1);
	tp_arr(&p, N);
	for (int i = 0; i < N; i++) {
		size_t len;

		seed = seed * 1103515245u + 12345u;
		/* The index makes it unique; the stem and a varying
		 * length of filler put the difference anywhere. */
		len = (size_t)snprintf(name, sizeof(name), "%s%.*s%d",
		    stems[seed % 7], (int)(seed >> 8) % 12, "xxxxxxxxxxxx",
		    i);
		tp_arr(&p, 1);
		tp_strn(&p, name, len);
	}
	rq_send(a, &p);
	ck_assert_uint_eq(t_ok(a, id)->via.array.size, N);
	r = t_call_ok(o, "keys", "u", ca);
	names = o_get(r, "names");
	ck_assert_uint_eq(names->via.array.size, N);
	for (uint32_t i = 1; i < N; i++) {
		const msgpack_object_str *x = &names->via.array.ptr[i - 1].via.str;
		const msgpack_object_str *y = &names->via.array.ptr[i].via.str;
		uint32_t n = x->size < y->size ? x->size : y->size;
		int c = memcmp(x->ptr, y->ptr, n);

		ck_assert_msg(c < 0 || (c == 0 && x->size < y->size),
		    "keys out of order at %u", i);
	}
	tp_free(&p);
	t_close(a);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_keys)
{
	struct tdaemon d;
	struct tclient *a, *b, *o;
	msgpack_object *r;
	uint64_t ca, cb;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);

	/* Nothing yet. */
	r = t_call_ok(o, "keys", "u", ca);
	check_keys(r, keys_keys);
	check_strs(o_get(r, "names"), (const char *const[]){ NULL });
	check_strs(o_get(r, "groups"), (const char *const[]){ NULL });

	/* Sorted bytewise, whatever the order of registration. */
	t_call_ok(a, "register", "s", "zeta");
	t_call_ok(a, "register", "s", "abc");
	t_call_ok(a, "register", "s", "Mid");
	t_call_ok(a, "register", "s", "ab");
	t_call_ok(a, "register", "s", "\xc3\xa9t\xc3\xa9");
	t_call_ok(b, "register", "s", "b-only");
	t_call_ok(a, "join", "s", "g2");
	t_call_ok(a, "join", "s", "g10");
	t_call_ok(a, "join", "s", "g1");
	t_call_ok(b, "join", "s", "g1");
	r = t_call_ok(o, "keys", "u", ca);
	check_keys(r, keys_keys);
	check_strs(o_get(r, "names"), (const char *const[]){ "Mid", "ab",
	    "abc", "zeta", "\xc3\xa9t\xc3\xa9", NULL });
	check_strs(o_get(r, "groups"), (const char *const[]){ "g1", "g10",
	    "g2", NULL });
	/* One's own. */
	r = t_call_ok(b, "keys", "u", cb);
	check_strs(o_get(r, "names"), (const char *const[]){ "b-only",
	    NULL });
	check_strs(o_get(r, "groups"), (const char *const[]){ "g1", NULL });
	/* Changes show. */
	check_bool(t_call_ok(a, "unregister", "s", "abc"), true);
	check_bool(t_call_ok(a, "leave", "s", "g10"), true);
	r = t_call_ok(o, "keys", "u", ca);
	check_strs(o_get(r, "names"), (const char *const[]){ "Mid", "ab",
	    "zeta", "\xc3\xa9t\xc3\xa9", NULL });
	check_strs(o_get(r, "groups"), (const char *const[]){ "g1", "g2",
	    NULL });

	/* No such connection; bad params. */
	t_call_err(o, "not_found", "keys", "u", (uint64_t)NO_CONN);
	t_call_err(o, "not_found", "keys", "u", (uint64_t)0);
	t_call_err(o, "bad_request", "keys", "");
	t_call_err(o, "bad_request", "keys", "s", "1");
	t_call_err(o, "bad_request", "keys", "i", (int64_t)-1);
	t_call_err(o, "bad_request", "keys", "n");
	t_call_err(o, "bad_request", "keys", "uu", ca, cb);
	t_close(a);
	t_wait_gauges(o, 2, 1, 0);
	t_call_err(o, "not_found", "keys", "u", ca);

	t_close(b);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* register_many [[<obj>]] with one raw entry object: bad_request. */
static void
register_many_bad_entry(struct tclient *c, const struct tpack *entry)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "register_many", 1);
	tp_arr(&p, 2);
	tp_arr(&p, 1);
	tp_str(&p, "ok-first");
	tp_append(&p, entry);
	rq_send(c, &p);
	tp_free(&p);
	t_err(c, id, "bad_request");
}

START_TEST(test_register_many)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p, e;
	msgpack_object *r;
	uint64_t ca, g0, names;
	uint32_t id;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	tp_init(&p);
	tp_init(&e);
	t_call_ok(b, "register", "s", "b-name");

	/* In order, values as given, consecutive gens. */
	id = register_many(a, (const char *const[]){ "k1", "k2", "k3", NULL },
	    (const char *const[]){ "v1", NULL, "v3" });
	r = t_ok(a, id);
	ck_assert_int_eq(r->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(r->via.array.size, 3);
	check_entry(at(r, 0), "k1", ca);
	check_entry(at(r, 1), "k2", ca);
	check_entry(at(r, 2), "k3", ca);
	check_str(o_get(at(r, 0), "value"), "v1");
	check_nil(o_get(at(r, 1), "value"));
	check_str(o_get(at(r, 2), "value"), "v3");
	g0 = o_uint(o_get(at(r, 0), "gen"));
	ck_assert_uint_eq(o_uint(o_get(at(r, 1), "gen")), g0 + 1);
	ck_assert_uint_eq(o_uint(o_get(at(r, 2), "gen")), g0 + 2);
	r = t_call_ok(b, "whereis", "s", "k2");
	check_entry(r, "k2", ca);
	ck_assert_uint_eq(o_uint(o_get(r, "gen")), g0 + 1);
	/* One entry. */
	r = t_ok(a, register_many(a, (const char *const[]){ "k4", NULL },
	    NULL));
	ck_assert_uint_eq(r->via.array.size, 1);
	check_entry(at(r, 0), "k4", ca);
	ck_assert_uint_eq(o_uint(o_get(at(r, 0), "gen")), g0 + 3);
	names = t_stat(b, "names");
	ck_assert_uint_eq(names, 5);

	/* taken (by another or the caller): none registered. */
	t_err(a, register_many(a, (const char *const[]){ "n1", "b-name",
	    "n3", NULL }, NULL), "taken");
	t_err(a, register_many(a, (const char *const[]){ "n1", "n2", "k3",
	    NULL }, NULL), "taken");
	/* A name twice: bad_request, also before taken. */
	t_err(a, register_many(a, (const char *const[]){ "d1", "d2", "d1",
	    NULL }, NULL), "bad_request");
	t_err(a, register_many(a, (const char *const[]){ "b-name", "d1",
	    "d1", NULL }, NULL), "bad_request");
	check_nil(t_call_ok(b, "whereis", "s", "n1"));
	check_nil(t_call_ok(b, "whereis", "s", "n3"));
	check_nil(t_call_ok(b, "whereis", "s", "d1"));
	check_nil(t_call_ok(b, "whereis", "s", "d2"));

	/* Bad entries: not an array, empty, too long, a bad name. */
	tp_str(&e, "x");
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_arr(&e, 0);
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_arr(&e, 3);
	tp_str(&e, "x");
	tp_nil(&e);
	tp_nil(&e);
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_arr(&e, 1);
	tp_str(&e, "");
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_arr(&e, 1);
	tp_uint(&e, 7);
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_arr(&e, 1);
	tp_strn(&e, "x\xff", 2);
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	tp_nil(&e);
	register_many_bad_entry(a, &e);
	tp_reset(&e);
	check_nil(t_call_ok(b, "whereis", "s", "ok-first"));
	/* Bad params. */
	t_call_err(a, "bad_request", "register_many", "");
	t_call_err(a, "bad_request", "register_many", "s", "k9");
	t_call_err(a, "bad_request", "register_many", "n");
	id = rq_begin(a, &p, "register_many", 2);
	tp_arr(&p, 1);
	tp_arr(&p, 1);
	tp_str(&p, "k9");
	tp_arr(&p, 0);
	rq_send(a, &p);
	t_err(a, id, "bad_request");
	check_nil(t_call_ok(b, "whereis", "s", "k9"));

	/* Nothing above took a name or a gen. */
	ck_assert_uint_eq(t_stat(b, "names"), names);
	ck_assert_uint_eq(o_uint(o_get(t_call_ok(a, "register", "s", "next"),
	    "gen")), g0 + 4);

	tp_free(&p);
	tp_free(&e);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_register_many_limit)
{
	struct tdaemon d;
	struct tclient *a, *b;
	msgpack_object *r;

	t_daemon_start(&d, "--max-names", "3", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(a, "register", "s", "x1");
	/* 1 + 3 > 3: limit, and none registered. */
	t_err(a, register_many(a, (const char *const[]){ "y1", "y2", "y3",
	    NULL }, NULL), "limit");
	check_nil(t_call_ok(b, "whereis", "s", "y1"));
	ck_assert_uint_eq(t_stat(b, "names"), 1);
	/* 1 + 2 = 3 is fine. */
	r = t_ok(a, register_many(a, (const char *const[]){ "y1", "y2",
	    NULL }, NULL));
	ck_assert_uint_eq(r->via.array.size, 2);
	t_err(a, register_many(a, (const char *const[]){ "z", NULL }, NULL),
	    "limit");
	t_call_err(a, "limit", "register", "s", "z");
	/* taken comes before limit, and bad_request (a name twice) before
	 * both. */
	t_err(a, register_many(a, (const char *const[]){ "q", "y1", NULL },
	    NULL), "taken");
	t_err(a, register_many(a, (const char *const[]){ "q", "r", "q", NULL },
	    NULL), "bad_request");
	t_err(a, register_many(a, (const char *const[]){ "y1", "q", "q", NULL },
	    NULL), "bad_request");
	/* Per connection. */
	r = t_ok(b, register_many(b, (const char *const[]){ "b1", "b2", "b3",
	    NULL }, NULL));
	ck_assert_uint_eq(r->via.array.size, 3);
	ck_assert_uint_eq(t_stat(b, "names"), 6);

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* Generations: one daemon-wide counter from 1, taken by each successful
 * register (each name of a register_many) and join, nothing else. */
START_TEST(test_gen)
{
	struct tdaemon d;
	struct tclient *a, *b;
	msgpack_object *r;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);

#define GEN_OF(obj)	o_uint(o_get((obj), "gen"))
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "register", "s", "one")), 1);
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "join", "s", "grp")), 2);
	ck_assert_uint_eq(GEN_OF(t_call_ok(b, "register", "s", "two")), 3);
	/* Failures, updates, leaves, lookups take none. */
	t_call_err(b, "taken", "register", "s", "one");
	t_call_err(a, "taken", "join", "s", "grp");
	t_call_err(a, "bad_request", "register", "s", "");
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "update", "ss", "one", "v")), 1);
	ck_assert_uint_eq(GEN_OF(t_call_ok(b, "whereis", "s", "one")), 1);
	r = t_ok(a, register_many(a, (const char *const[]){ "m1", "m2", NULL },
	    NULL));
	ck_assert_uint_eq(GEN_OF(at(r, 0)), 4);
	ck_assert_uint_eq(GEN_OF(at(r, 1)), 5);
	/* A new registration of the same name: a new gen. */
	check_bool(t_call_ok(a, "unregister", "s", "one"), true);
	ck_assert_uint_eq(GEN_OF(t_call_ok(b, "register", "s", "one")), 6);
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "whereis", "s", "one")), 6);
	ck_assert_uint_eq(GEN_OF(at(t_call_ok(a, "list", "s", "one"), 0)), 6);
	check_bool(t_call_ok(b, "unregister", "s", "one"), true);
	ck_assert_uint_eq(GEN_OF(t_call_ok(b, "register", "s", "one")), 7);
	/* Joins: each member its own; a rejoin a new one. */
	ck_assert_uint_eq(GEN_OF(t_call_ok(b, "join", "s", "grp")), 8);
	r = t_call_ok(a, "members", "s", "grp");
	ck_assert_uint_eq(GEN_OF(at(r, 0)), 2);
	ck_assert_uint_eq(GEN_OF(at(r, 1)), 8);
	check_bool(t_call_ok(a, "leave", "s", "grp"), true);
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "join", "s", "grp")), 9);
	r = t_call_ok(a, "members", "s", "grp");
	ck_assert_uint_eq(GEN_OF(at(r, 0)), 8);
	ck_assert_uint_eq(GEN_OF(at(r, 1)), 9);
	/* A purged connection's gens are not reused. */
	t_close(b);
	t_wait_gauges(a, 1, 2, 0);
	ck_assert_uint_eq(GEN_OF(t_call_ok(a, "register", "s", "one")), 10);
#undef GEN_OF

	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

static Suite *
names_suite(void)
{
	Suite *s = suite_create("daemon_names");
	TCase *tc;

	tc = tcase_create("methods");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_register_whereis_unregister);
	tcase_add_test(tc, test_value_types);
	tcase_add_test(tc, test_bad_params);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_list_after_any_str);
	tcase_add_test(tc, test_list_page_size);
	tcase_add_test(tc, test_stats);
	suite_add_tcase(s, tc);

	tc = tcase_create("entries");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_keys_sorted_many);
	tcase_add_test(tc, test_register_many);
	tcase_add_test(tc, test_register_many_limit);
	tcase_add_test(tc, test_gen);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(names_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
