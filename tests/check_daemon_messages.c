/*
 * check_daemon_messages.c: integration tests of send, to a name and to
 * a connection id, and of a sender's back-pressure: busy, the output
 * high watermark, reads paused while the output is full.
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

START_TEST(test_send)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p, want;
	msgpack_object *pl;
	uint64_t ca, cb;
	uint32_t id, first;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	tp_init(&p);
	tp_init(&want);
	t_call_ok(a, "register", "s", "inbox");

	/* A str payload. */
	check_bool(t_call_ok(b, "send", "ss", "inbox", "hi"), true);
	check_str(expect_message(a, "inbox", cb), "hi");

	/* A map payload keeps its contents and key order. */
	id = rq_begin(b, &p, "send", 2);
	tp_str(&p, "inbox");
	tp_map(&p, 3);
	tp_str(&p, "z");
	tp_uint(&p, 1);
	tp_str(&p, "a");
	tp_arr(&p, 1);
	tp_int(&p, -7);
	tp_str(&p, "m");
	tp_str(&p, "v");
	rq_send(b, &p);
	check_bool(t_ok(b, id), true);
	tp_map(&want, 3);
	tp_str(&want, "z");
	tp_uint(&want, 1);
	tp_str(&want, "a");
	tp_arr(&want, 1);
	tp_int(&want, -7);
	tp_str(&want, "m");
	tp_str(&want, "v");
	ck_assert(obj_eq(expect_message(a, "inbox", cb), &want));
	tp_reset(&want);

	/* A nil payload. */
	check_bool(t_call_ok(b, "send", "sn", "inbox"), true);
	check_nil(expect_message(a, "inbox", cb));

	/* A queued message is not recalled by a later unregister. */
	check_bool(t_call_ok(b, "send", "ss", "inbox", "before"), true);
	id = t_request(a, "unregister", "s", "inbox");
	check_str(expect_message(a, "inbox", cb), "before");
	check_bool(t_ok(a, id), true);
	t_call_err(b, "not_found", "send", "ss", "inbox", "after");
	t_call_ok(a, "register", "s", "inbox");

	/* Absent name. */
	t_call_err(b, "not_found", "send", "ss", "nobody", "x");
	t_expect_quiet(a);

	/* Order: 1000 sends pipelined in one write arrive in order. */
	first = b->next_msgid;
	for (uint64_t i = 0; i < 1000; i++) {
		rq_begin(b, &p, "send", 2);
		tp_str(&p, "inbox");
		tp_uint(&p, i);
	}
	rq_send(b, &p);
	for (uint32_t i = 0; i < 1000; i++)
		check_bool(t_ok(b, first + i), true);
	for (uint64_t i = 0; i < 1000; i++) {
		pl = expect_message(a, "inbox", cb);
		ck_assert_uint_eq(o_uint(pl), i);
	}
	t_expect_quiet(a);

	/* To one's own name: the push and the response, in either order. */
	id = t_request(a, "send", "ss", "inbox", "self");
	tp_arr(&want, 3);
	tp_uint(&want, 2);
	tp_str(&want, "message");
	tp_arr(&want, 3);
	tp_str(&want, "inbox");
	tp_uint(&want, ca);
	tp_str(&want, "self");
	expect_true_and_push(a, id, &want);

	ck_assert_uint_eq(t_stat(b, "messages"), 1005);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_busy)
{
	struct tdaemon d;
	struct tclient *a, *b;
	char *fill = t_filled(BUSY_PAYLOAD, 'p');
	uint64_t accepted = 0, cb;
	msgpack_object *pl;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	cb = t_conn_id(b);
	t_call_ok(a, "register", "s", "slow");

	/* a never reads: its socket buffer, then its 4 KiB bound fill. */
	while (accepted < BUSY_MAX_TRIES && send_seq(b, "slow", accepted, fill))
		accepted++;
	ck_assert_msg(accepted < BUSY_MAX_TRIES, "send never answered busy");
	ck_assert_uint_ge(accepted, 1);
	/* Still busy while a does not read; nothing queued meanwhile. */
	ck_assert(!send_seq(b, "slow", accepted, fill));
	ck_assert_uint_eq(t_stat(b, "messages"), accepted);

	/* Exactly the accepted messages, in order, nothing more. */
	for (uint64_t i = 0; i < accepted; i++) {
		pl = expect_message(a, "slow", cb);
		ck_assert_uint_eq(pl->via.array.size, 2);
		ck_assert_uint_eq(o_uint(at(pl, 0)), i);
		ck_assert_uint_eq(at(pl, 1)->via.str.size, BUSY_PAYLOAD);
	}
	t_expect_quiet(a);

	/* Drained: sends go through again. */
	ck_assert(send_seq(b, "slow", accepted, fill));
	pl = expect_message(a, "slow", cb);
	ck_assert_uint_eq(o_uint(at(pl, 0)), accepted);
	expect_usable(a);

	free(fill);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/*
 * Back-pressure (§9): a client that pipelines and never reads stalls only
 * itself; sends to its names answer busy, downs still reach it, and once
 * it reads it gets every reply, in order.
 */
#define BP_NAMES	10

#define BP_LISTS	300

START_TEST(test_backpressure)
{
	struct tdaemon d;
	struct tclient *r, *o;
	struct tpack p;
	char name[16];
	uint32_t first, next;
	uint64_t co, ref, msgs = 0, seq = 0;
	bool busy = false, got_down = false;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	r = t_connect(d.path);
	o = t_connect(d.path);
	co = t_conn_id(o);
	tp_init(&p);
	for (int i = 0; i < BP_NAMES; i++) {
		uint32_t id;

		snprintf(name, sizeof(name), "r%d", i);
		id = register_with_str(r, &p, name, 1000);
		rq_send(r, &p);
		t_ok(r, id);
	}
	t_call_ok(o, "register", "s", "o-name");
	ref = o_uint(t_call_ok(r, "monitor", "s", "o-name"));

	/* ~3 MB of replies asked for in one small write. */
	first = r->next_msgid;
	for (int i = 0; i < BP_LISTS; i++) {
		rq_begin(r, &p, "list", 1);
		tp_str(&p, "r");
	}
	rq_send(r, &p);

	/* o is served meanwhile; r's names soon answer busy. */
	for (int i = 0; i < T_POLL_ROUNDS && !busy; i++) {
		if (send_seq(o, "r0", seq, "x"))
			seq++;
		else
			busy = true;
	}
	ck_assert_msg(busy, "send to a stalled reader never answered busy");
	check_bool(t_call_ok(o, "unregister", "s", "o-name"), true);
	expect_usable(o);

	/* r reads: every reply in order, the messages in order, the down. */
	next = first;
	while (next < first + BP_LISTS || msgs < seq || !got_down) {
		msgpack_object *x = t_recv(r, -1), *pa;

		ck_assert_msg(x != NULL, "stalled: replies %u/%u, messages "
		    "%llu/%llu, down %d", next - first, BP_LISTS,
		    (unsigned long long)msgs, (unsigned long long)seq,
		    got_down);
		if (x->via.array.size == 4) {
			ck_assert_uint_eq(o_uint(at(x, 1)), next);
			check_nil(at(x, 2));
			ck_assert_uint_eq(at(x, 3)->via.array.size, BP_NAMES);
			next++;
			continue;
		}
		pa = at(x, 2);
		if (o_is_str(at(x, 1), "message")) {
			check_str(at(pa, 0), "r0");
			ck_assert_uint_eq(o_uint(at(pa, 1)), co);
			ck_assert_uint_eq(o_uint(at(at(pa, 2), 0)), msgs);
			msgs++;
		} else {
			ck_assert(!got_down);
			check_str(at(x, 1), "down");
			check_down_name(pa, ref, "o-name", "unregistered");
			got_down = true;
		}
	}
	t_expect_quiet(r);
	expect_usable(r);
	ck_assert(send_seq(o, "r0", seq, "x"));
	ck_assert_uint_eq(o_uint(at(expect_message(r, "r0", co), 0)), seq);

	tp_free(&p);
	t_close(r);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §9: "while a client's own unread output exceeds the bound, the daemon
 * stops reading from that client".  A client that writes requests without
 * reading soon cannot write any more (its socket fills); once it reads,
 * the daemon resumes and every request is answered, in order.
 */
#define PAUSE_REQS	100000		/* ~1.8 MB of requests */

START_TEST(test_read_pause)
{
	struct tdaemon d;
	struct tclient *c, *o;
	struct tpack p;
	struct pollfd pfd;
	size_t sent = 0, stalled_at;
	uint32_t first, next;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	c = t_connect(d.path);
	o = t_connect(d.path);
	tp_init(&p);
	first = c->next_msgid;
	for (int i = 0; i < PAUSE_REQS; i++) {
		rq_begin(c, &p, "whereis", 1);
		tp_str(&p, "nobody");
	}
	ck_assert_int_eq(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);

	/* Write without reading until the socket stays full for a while. */
	pfd.fd = c->fd;
	pfd.events = POLLOUT;
	while (sent < p.buf.size) {
		ssize_t n = send(c->fd, p.buf.data + sent, p.buf.size - sent,
		    MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EINTR),
		    "send: %s", strerror(errno));
		if (poll(&pfd, 1, QUIET_MS) == 0)
			break;		/* stalled: the daemon stopped reading */
	}
	stalled_at = sent;
	ck_assert_msg(stalled_at < p.buf.size, "the daemon read all %zu bytes "
	    "from a client that never reads its replies", sent);
	/* Only c stalls. */
	expect_usable(o);

	/* Read, and write the rest: all replies, in order. */
	next = first;
	while (next < first + PAUSE_REQS) {
		msgpack_object *x;
		bool progress = false;

		while ((x = t_recv(c, 0)) != NULL) {
			ck_assert_uint_eq(o_uint(at(x, 1)), next);
			check_nil(at(x, 3));
			next++;
			progress = true;
		}
		if (sent < p.buf.size) {
			ssize_t n = send(c->fd, p.buf.data + sent,
			    p.buf.size - sent, MSG_NOSIGNAL);

			if (n > 0) {
				sent += (size_t)n;
				progress = true;
			}
		}
		if (!progress) {
			pfd.events = POLLIN | (sent < p.buf.size ? POLLOUT : 0);
			ck_assert_msg(poll(&pfd, 1, T_TIMEOUT_MS) == 1,
			    "stuck after %u replies", next - first);
			ck_assert_msg(!(pfd.revents & (POLLHUP | POLLERR)),
			    "closed after %u replies", next - first);
		}
	}
	ck_assert_uint_eq(sent, p.buf.size);
	t_expect_quiet(c);

	tp_free(&p);
	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* Receive a message push [conn, sender, payload] sent to a connection id;
 * return its payload. */
static msgpack_object *
expect_message_conn(struct tclient *c, uint64_t target, uint64_t sender)
{
	msgpack_object *pa = t_push(c, "message");

	ck_assert_uint_eq(pa->via.array.size, 3);
	ck_assert_int_eq(at(pa, 0)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	ck_assert_uint_eq(o_uint(at(pa, 0)), target);
	ck_assert_uint_eq(o_uint(at(pa, 1)), sender);
	return at(pa, 2);
}

START_TEST(test_send_conn)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *o;
	struct tpack p;
	uint64_t ca, cb, cc, msgs;
	uint32_t first;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	tp_init(&p);
	msgs = t_stat(o, "messages");

	/* A connection without names is a target; the push carries the id. */
	check_bool(t_call_ok(b, "send", "us", ca, "hi"), true);
	check_str(expect_message_conn(a, ca, cb), "hi");
	/* By name, the name is in the target slot as before. */
	t_call_ok(a, "register", "s", "inbox");
	check_bool(t_call_ok(b, "send", "ss", "inbox", "by name"), true);
	check_str(expect_message(a, "inbox", cb), "by name");
	check_bool(t_call_ok(b, "send", "un", ca), true);
	check_nil(expect_message_conn(a, ca, cb));

	/* Order: 500 sends pipelined, mixing name and id, arrive in order. */
	first = b->next_msgid;
	for (uint64_t i = 0; i < 500; i++) {
		rq_begin(b, &p, "send", 2);
		if (i % 2)
			tp_uint(&p, ca);
		else
			tp_str(&p, "inbox");
		tp_uint(&p, i);
	}
	rq_send(b, &p);
	for (uint32_t i = 0; i < 500; i++)
		check_bool(t_ok(b, first + i), true);
	for (uint64_t i = 0; i < 500; i++) {
		if (i % 2)
			ck_assert_uint_eq(o_uint(expect_message_conn(a, ca, cb)),
			    i);
		else
			ck_assert_uint_eq(o_uint(expect_message(a, "inbox",
			    cb)), i);
	}
	t_expect_quiet(a);

	/* No such connection: never given out, 0, closed. */
	t_call_err(b, "not_found", "send", "us", (uint64_t)NO_CONN, "x");
	t_call_err(b, "not_found", "send", "us", (uint64_t)0, "x");
	t_close(c);
	t_wait_gauges(o, 3, 1, 0);
	t_call_err(b, "not_found", "send", "us", cc, "x");
	/* Neither a name nor an id. */
	for_bad_targets(b, "send", bad_target);
	t_expect_quiet(a);
	ck_assert_uint_eq(t_stat(o, "messages"), msgs + 3 + 500);

	tp_free(&p);
	t_close(a);
	t_close(b);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

static Suite *
messages_suite(void)
{
	Suite *s = suite_create("daemon_messages");
	TCase *tc;

	tc = tcase_create("methods");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_send);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_backpressure);
	tcase_add_test(tc, test_read_pause);
	suite_add_tcase(s, tc);

	tc = tcase_create("targets");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_send_conn);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(messages_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
