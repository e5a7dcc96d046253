/*
 * check_daemon_monitors.c: integration tests of monitors (on names and
 * on connection ids) and of what happens when connections end: a client
 * killed with SIGKILL, one-shot clients that close at once, abrupt
 * closes with replies unread, SIGTERM with busy clients, a thousand
 * clients leaving at once.
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

/* Poll whereis (bounded) until name is unregistered. */
static void
wait_gone(struct tclient *c, const char *name)
{
	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		if (t_call_ok(c, "whereis", "s", name)->type ==
		    MSGPACK_OBJECT_NIL)
			return;
		usleep(T_POLL_US);
	}
	ck_abort_msg("%s is still registered", name);
}

START_TEST(test_monitor)
{
	struct tdaemon d;
	struct tclient *a, *b, *c;
	struct tpack p, want;
	uint64_t r1, r2, r3, r4, r5, r6, ra;
	uint32_t id1, id2;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	tp_init(&p);
	tp_init(&want);

	/* "unregistered", with the right ref and name. */
	t_call_ok(a, "register", "s", "svc");
	r1 = o_uint(t_call_ok(b, "monitor", "s", "svc"));
	ck_assert_uint_eq(r1, 1);
	check_bool(t_call_ok(a, "unregister", "s", "svc"), true);
	expect_down(b, r1, "svc", "unregistered");

	/* "disconnected" when the owner closes. */
	t_call_ok(a, "register", "s", "svc2");
	r2 = o_uint(t_call_ok(b, "monitor", "s", "svc2"));
	ck_assert_uint_eq(r2, 2);
	t_close(a);
	expect_down(b, r2, "svc2", "disconnected");
	check_nil(t_call_ok(b, "whereis", "s", "svc2"));

	/* noproc: right after the response, before the next reply. */
	id1 = rq_begin(b, &p, "monitor", 1);
	tp_str(&p, "ghost");
	id2 = rq_begin(b, &p, "whereis", 1);
	tp_str(&p, "ghost");
	rq_send(b, &p);
	r3 = o_uint(t_ok(b, id1));
	ck_assert_uint_eq(r3, 3);
	expect_down(b, r3, "ghost", "noproc");
	check_nil(t_ok(b, id2));

	/* demonitor: active -> true, then false; unknown -> false; fired
	 * -> false. */
	t_call_ok(c, "register", "s", "x");
	r4 = o_uint(t_call_ok(b, "monitor", "s", "x"));
	ck_assert_uint_eq(r4, 4);
	check_bool(t_call_ok(b, "demonitor", "u", r4), true);
	check_bool(t_call_ok(b, "demonitor", "u", r4), false);
	check_bool(t_call_ok(b, "demonitor", "u", (uint64_t)999), false);
	check_bool(t_call_ok(b, "demonitor", "u", r1), false);
	check_bool(t_call_ok(b, "demonitor", "u", r3), false);
	/* A cancelled monitor never fires. */
	check_bool(t_call_ok(c, "unregister", "s", "x"), true);
	t_expect_quiet(b);
	expect_usable(b);

	/* Refs are per connection: c cannot cancel b's monitor. */
	t_call_ok(c, "register", "s", "y");
	r5 = o_uint(t_call_ok(b, "monitor", "s", "y"));
	ck_assert_uint_eq(r5, 5);
	check_bool(t_call_ok(c, "demonitor", "u", r5), false);

	/* Exactly once: the monitor watched one registration only. */
	check_bool(t_call_ok(c, "unregister", "s", "y"), true);
	expect_down(b, r5, "y", "unregistered");
	t_call_ok(c, "register", "s", "y");
	check_bool(t_call_ok(c, "unregister", "s", "y"), true);
	t_call_ok(c, "register", "s", "y");
	t_close(c);
	t_expect_quiet(b);
	expect_usable(b);

	/* Several monitors on one name each fire once. */
	a = t_connect(d.path);
	t_call_ok(a, "register", "s", "multi");
	r5 = o_uint(t_call_ok(b, "monitor", "s", "multi"));
	r6 = o_uint(t_call_ok(b, "monitor", "s", "multi"));
	ck_assert_uint_eq(r5, 6);
	ck_assert_uint_eq(r6, 7);
	check_bool(t_call_ok(a, "unregister", "s", "multi"), true);
	{
		msgpack_object *pa = t_push(b, "down");
		uint64_t first = o_uint(at(pa, 0));

		ck_assert(first == r5 || first == r6);
		check_down_name(pa, first, "multi", "unregistered");
		expect_down(b, first == r5 ? r6 : r5, "multi", "unregistered");
	}
	t_expect_quiet(b);

	/* Monitoring one's own name: the down may come before or after
	 * the unregister's response. */
	t_call_ok(a, "register", "s", "mine");
	ra = o_uint(t_call_ok(a, "monitor", "s", "mine"));
	ck_assert_uint_eq(ra, 1);
	id1 = t_request(a, "unregister", "s", "mine");
	tp_arr(&want, 3);
	tp_uint(&want, 2);
	tp_str(&want, "down");
	tp_arr(&want, 3);
	tp_uint(&want, ra);
	tp_str(&want, "mine");
	tp_str(&want, "unregistered");
	expect_true_and_push(a, id1, &want);
	t_expect_quiet(a);

	ck_assert_uint_eq(t_stat(b, "monitors"), 0);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

#define VICTIM_NAMES	100

/* The child: plain code, no Check assertions; _exit on any failure. */
static void
victim_child(const char *path, int ready_fd)
{
	struct sockaddr_un sun;
	msgpack_unpacker unp;
	msgpack_unpacked res;
	struct tpack p;
	char name[32];
	int fd, replies = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(60);
	if (strlen(path) >= sizeof(sun.sun_path))
		_exit(1);
	t_unix_addr(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		_exit(1);
	tp_init(&p);
	tp_req(&p, 1, "register", 1);
	tp_str(&p, "victim");
	for (int i = 0; i < VICTIM_NAMES; i++) {
		snprintf(name, sizeof(name), "victim-%d", i);
		tp_req(&p, (uint32_t)(i + 2), "register", 1);
		tp_str(&p, name);
	}
	for (size_t off = 0; off < p.buf.size; ) {
		ssize_t n = write(fd, p.buf.data + off, p.buf.size - off);

		if (n <= 0)
			_exit(1);
		off += (size_t)n;
	}
	/* Wait for every reply (all successes) before saying ready. */
	if (!msgpack_unpacker_init(&unp, 64 * 1024))
		_exit(1);
	msgpack_unpacked_init(&res);
	while (replies < VICTIM_NAMES + 1) {
		ssize_t n;

		while (msgpack_unpacker_next(&unp, &res) ==
		    MSGPACK_UNPACK_SUCCESS) {
			msgpack_object *o = &res.data;

			if (o->type != MSGPACK_OBJECT_ARRAY ||
			    o->via.array.size != 4 ||
			    o->via.array.ptr[2].type != MSGPACK_OBJECT_NIL)
				_exit(1);
			replies++;
		}
		if (replies == VICTIM_NAMES + 1)
			break;
		if (!msgpack_unpacker_reserve_buffer(&unp, 64 * 1024))
			_exit(1);
		n = read(fd, msgpack_unpacker_buffer(&unp),
		    msgpack_unpacker_buffer_capacity(&unp));
		if (n <= 0)
			_exit(1);
		msgpack_unpacker_buffer_consumed(&unp, (size_t)n);
	}
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

START_TEST(test_lifeline_sigkill)
{
	struct tdaemon d;
	struct tclient *o;
	struct pollfd pfd;
	int pfds[2], status;
	uint64_t ref;
	pid_t pid;
	char ch;

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	ck_assert_int_eq(pipe(pfds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfds[0]);
		victim_child(d.path, pfds[1]);
		_exit(1);
	}
	close(pfds[1]);
	pfd.fd = pfds[0];
	pfd.events = POLLIN;
	ck_assert_msg(poll(&pfd, 1, T_TIMEOUT_MS) == 1, "the child is not ready");
	ck_assert_msg(read(pfds[0], &ch, 1) == 1, "the child failed");
	close(pfds[0]);

	/* The entry carries the child's credentials. */
	ck_assert_uint_eq(o_uint(o_get(t_call_ok(o, "whereis", "s", "victim"),
	    "pid")), (uint64_t)pid);
	ck_assert_uint_eq(t_stat(o, "names"), VICTIM_NAMES + 1);
	ref = o_uint(t_call_ok(o, "monitor", "s", "victim"));

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	expect_down(o, ref, "victim", "disconnected");
	check_nil(t_call_ok(o, "whereis", "s", "victim"));
	check_nil(t_call_ok(o, "whereis", "s", "victim-42"));
	t_wait_gauges(o, 1, 0, 0);
	t_expect_quiet(o);

	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

#define BIG_VALUE	(200 * 1024)

#define BIG_READS	10		/* 2 MB of replies */

START_TEST(test_oneshot_eof)
{
	static const uint8_t partial[] = { 0x94, 0x00, 0x63, 0xa8, 'r' };
	struct tdaemon d;
	struct tclient *c, *o;
	struct tpack p;
	uint32_t id1, id2;
	msgpack_object *e;

	/* A long drain: the big replies below must not be cut short. */
	t_daemon_start(&d, "--drain-ms", "60000", NULL);
	o = t_connect(d.path);
	c = t_connect(d.path);
	tp_init(&p);
	id1 = rq_begin(c, &p, "register", 1);
	tp_str(&p, "oneshot");
	id2 = rq_begin(c, &p, "whereis", 1);
	tp_str(&p, "oneshot");
	/* An incomplete trailing object is discarded without reply. */
	msgpack_sbuffer_write(&p.buf, (const char *)partial, sizeof(partial));
	rq_send(c, &p);
	ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);

	check_str(o_get(t_ok(c, id1), "name"), "oneshot");
	e = t_ok(c, id2);
	check_str(o_get(e, "name"), "oneshot");
	expect_eof(c);
	t_close(c);

	wait_gone(o, "oneshot");
	t_wait_gauges(o, 1, 0, 0);

	/* Same with a monitor held elsewhere: it fires "disconnected". */
	c = t_connect(d.path);
	t_call_ok(c, "register", "s", "oneshot2");
	{
		uint64_t ref = o_uint(t_call_ok(o, "monitor", "s",
		    "oneshot2"));

		id1 = rq_begin(c, &p, "stats", 0);
		rq_send(c, &p);
		ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
		check_keys(t_ok(c, id1), stats_keys);
		expect_eof(c);
		expect_down(o, ref, "oneshot2", "disconnected");
	}
	t_close(c);

	/* Replies far larger than the socket buffer still pending at EOF
	 * are flushed (§8 step 3), then the connection closes. */
	c = t_connect(d.path);
	id1 = register_with_str(c, &p, "big", BIG_VALUE);
	id2 = c->next_msgid;
	for (int i = 0; i < BIG_READS; i++) {
		rq_begin(c, &p, "whereis", 1);
		tp_str(&p, "big");
	}
	rq_send(c, &p);
	ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
	ck_assert_uint_eq(o_get(t_ok(c, id1), "value")->via.str.size,
	    BIG_VALUE);
	for (int i = 0; i < BIG_READS; i++) {
		e = t_ok(c, id2 + (uint32_t)i);
		ck_assert_uint_eq(o_get(e, "value")->via.str.size, BIG_VALUE);
	}
	expect_eof(c);
	t_close(c);
	t_wait_gauges(o, 1, 0, 0);

	tp_free(&p);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* Ask for BIG_READS replies of BIG_VALUE bytes each, reading none. */
static void
ask_big_replies(struct tclient *c, const char *name)
{
	struct tpack p;

	tp_init(&p);
	register_with_str(c, &p, name, BIG_VALUE);
	for (int i = 0; i < BIG_READS; i++) {
		rq_begin(c, &p, "whereis", 1);
		tp_str(&p, name);
	}
	rq_send(c, &p);
	tp_free(&p);
}

/* Clients that vanish with megabytes of replies unread. */
START_TEST(test_abrupt_close)
{
	struct tdaemon d;
	struct tclient *o, *c;
	char name[16];

	t_daemon_start(&d, NULL);
	o = connect_first(&d);
	for (int i = 0; i < 5; i++) {
		c = t_connect(d.path);
		snprintf(name, sizeof(name), "big%d", i);
		ask_big_replies(c, name);
		if (i % 2 == 1)
			ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
		t_close(c);
	}
	t_wait_gauges(o, 1, 0, 0);
	ck_assert(t_daemon_alive(&d));
	expect_usable(o);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* SIGTERM with busy clients: still a clean exit, and they all see EOF. */
START_TEST(test_sigterm_with_clients)
{
	static const uint8_t partial[] = { 0x94, 0x00, 0x01, 0xa8, 'r', 'e' };
	struct tdaemon d;
	struct tclient *a, *b, *c, *e;

	t_daemon_start(&d, "--drain-ms", "60000", NULL);
	a = connect_first(&d);
	b = t_connect(d.path);
	c = t_connect(d.path);
	e = t_connect(d.path);
	/* a: names and monitors; b: half a request; c: megabytes of
	 * unread replies; e: the same, then EOF, so it is draining. */
	t_call_ok(a, "register", "s", "a1");
	t_call_ok(a, "monitor", "s", "a1");
	t_call_ok(b, "register", "s", "b1");
	t_call_ok(a, "monitor", "s", "b1");
	t_call_ok(b, "monitor", "s", "a1");
	t_send_raw(b, partial, sizeof(partial));
	ask_big_replies(c, "c-big");
	ask_big_replies(e, "e-big");
	ck_assert_int_eq(shutdown(e->fd, SHUT_WR), 0);
	/* e is purged (not counted) while its replies drain. */
	t_wait_gauges(a, 3, 3, 3);

	t_daemon_stop(&d);
	ck_assert(t_wait_eof(a, -1));
	ck_assert(t_wait_eof(b, -1));
	ck_assert(t_wait_eof(c, -1));
	ck_assert(t_wait_eof(e, -1));
	t_close(a);
	t_close(b);
	t_close(c);
	t_close(e);
}
END_TEST

#define MASS_CLIENTS	200

#define MASS_NAMES	10

START_TEST(test_mass_disconnect)
{
	struct tdaemon d;
	struct tclient *obs, *cl[MASS_CLIENTS];
	uint64_t ref[MASS_CLIENTS];
	struct tpack p;
	char name[32];

	t_daemon_start(&d, NULL);
	obs = connect_first(&d);
	tp_init(&p);
	t_call_ok(obs, "monitor", "s", "nothing-yet");	/* noproc */
	expect_down(obs, 1, "nothing-yet", "noproc");

	/* Client 0 holds "hub" (among its 10); everyone monitors it. */
	for (int i = 0; i < MASS_CLIENTS; i++) {
		uint32_t first, mid;

		cl[i] = t_connect(d.path);
		first = cl[i]->next_msgid;
		for (int j = 0; j < MASS_NAMES; j++) {
			if (i == 0 && j == 0)
				snprintf(name, sizeof(name), "hub");
			else
				snprintf(name, sizeof(name), "c%d/%d", i, j);
			rq_begin(cl[i], &p, "register", 1);
			tp_str(&p, name);
		}
		mid = rq_begin(cl[i], &p, "monitor", 1);
		tp_str(&p, "hub");
		rq_send(cl[i], &p);
		for (uint32_t j = first; j < mid; j++)
			t_ok(cl[i], j);
		ref[i] = o_uint(t_ok(cl[i], mid));
		ck_assert_uint_eq(ref[i], 1);
	}
	t_wait_gauges(obs, MASS_CLIENTS + 1, MASS_CLIENTS * MASS_NAMES,
	    MASS_CLIENTS);

	/* Half the others go: their names and monitors vanish silently. */
	for (int i = 1; i < MASS_CLIENTS / 2; i++)
		t_close(cl[i]);
	t_wait_gauges(obs, MASS_CLIENTS / 2 + 2, MASS_CLIENTS / 2 * MASS_NAMES +
	    MASS_NAMES, MASS_CLIENTS / 2 + 1);
	check_nil(t_call_ok(obs, "whereis", "s", "c1/0"));

	/* Client 0 goes: each remaining holder gets its down, once. */
	t_close(cl[0]);
	for (int i = MASS_CLIENTS / 2; i < MASS_CLIENTS; i++)
		expect_down(cl[i], ref[i], "hub", "disconnected");
	t_wait_gauges(obs, MASS_CLIENTS / 2 + 1, MASS_CLIENTS / 2 * MASS_NAMES,
	    0);
	for (int i = MASS_CLIENTS / 2; i < MASS_CLIENTS; i++)
		t_close(cl[i]);
	t_wait_gauges(obs, 1, 0, 0);
	ck_assert_uint_eq(t_stat(obs, "downs"), 1 + MASS_CLIENTS / 2);
	t_expect_quiet(obs);

	tp_free(&p);
	t_close(obs);
	t_daemon_stop(&d);
}
END_TEST

/* A down push [ref, conn, reason] for a monitor on a connection id. */
static void
check_down_conn(const msgpack_object *pa, uint64_t ref, uint64_t conn,
    const char *reason)
{
	ck_assert_uint_eq(pa->via.array.size, 3);
	ck_assert_uint_eq(o_uint(at(pa, 0)), ref);
	ck_assert_int_eq(at(pa, 1)->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	ck_assert_uint_eq(o_uint(at(pa, 1)), conn);
	check_str(at(pa, 2), reason);
}

/* The object packed in obj, as the only param of method: bad_request. */
static void
bad_param1(struct tclient *c, const char *method, const struct tpack *obj)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, method, 1);
	tp_append(&p, obj);
	rq_send(c, &p);
	tp_free(&p);
	t_err(c, id, "bad_request");
}

START_TEST(test_monitor_conn)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *e;
	struct tpack p;
	uint64_t ca, cc, ce, r1, r2, r3, r4, r5;
	uint32_t id1, id2;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	e = t_connect(d.path);
	ca = t_conn_id(a);
	cc = t_conn_id(c);
	ce = t_conn_id(e);
	tp_init(&p);

	/* A monitor on a connection watches the connection, not its names. */
	r1 = o_uint(t_call_ok(b, "monitor", "u", ca));
	ck_assert_uint_eq(r1, 1);
	ck_assert_uint_eq(t_stat(b, "monitors"), 1);
	t_call_ok(a, "register", "s", "n");
	check_bool(t_call_ok(a, "unregister", "s", "n"), true);
	t_call_ok(a, "join", "s", "g");
	check_bool(t_call_ok(a, "leave", "s", "g"), true);
	t_expect_quiet(b);
	t_close(a);
	check_down_conn(t_push(b, "down"), r1, ca, "disconnected");
	ck_assert_uint_eq(t_stat(b, "monitors"), 0);
	check_bool(t_call_ok(b, "demonitor", "u", r1), false);

	/* A closed connection, one never given out, 0: noproc, right after
	 * the response. */
	id1 = rq_begin(b, &p, "monitor", 1);
	tp_uint(&p, ca);
	id2 = rq_begin(b, &p, "whereis", 1);
	tp_str(&p, "n");
	rq_send(b, &p);
	r2 = o_uint(t_ok(b, id1));
	ck_assert_uint_eq(r2, 2);
	check_down_conn(t_push(b, "down"), r2, ca, "noproc");
	check_nil(t_ok(b, id2));
	r3 = o_uint(t_call_ok(b, "monitor", "u", (uint64_t)NO_CONN));
	ck_assert_uint_eq(r3, 3);
	check_down_conn(t_push(b, "down"), r3, NO_CONN, "noproc");
	ck_assert_uint_eq(o_uint(t_call_ok(b, "monitor", "u", (uint64_t)0)),
	    4);
	check_down_conn(t_push(b, "down"), 4, 0, "noproc");

	/* demonitor: a cancelled connection monitor never fires. */
	r4 = o_uint(t_call_ok(b, "monitor", "u", cc));
	ck_assert_uint_eq(r4, 5);
	check_bool(t_call_ok(b, "demonitor", "u", r4), true);
	t_close(c);
	t_expect_quiet(b);

	/* A name monitor and a connection monitor on one connection: both
	 * fire, in either order. */
	t_call_ok(e, "register", "s", "svc");
	r4 = o_uint(t_call_ok(b, "monitor", "s", "svc"));
	r5 = o_uint(t_call_ok(b, "monitor", "u", ce));
	ck_assert_uint_eq(t_stat(b, "monitors"), 2);
	t_close(e);
	for (int i = 0; i < 2; i++) {
		msgpack_object *pa = t_push(b, "down");

		if (at(pa, 1)->type == MSGPACK_OBJECT_STR)
			check_down_name(pa, r4, "svc", "disconnected");
		else
			check_down_conn(pa, r5, ce, "disconnected");
	}
	t_expect_quiet(b);
	ck_assert_uint_eq(t_stat(b, "monitors"), 0);

	/* Neither a name nor an id. */
	{
		struct tpack o;

		tp_init(&o);
		tp_int(&o, -1);
		bad_param1(b, "monitor", &o);
		tp_reset(&o);
		tp_nil(&o);
		bad_param1(b, "monitor", &o);
		tp_reset(&o);
		msgpack_pack_double(&o.pk, 1.0);
		bad_param1(b, "monitor", &o);
		tp_reset(&o);
		tp_arr(&o, 0);
		bad_param1(b, "monitor", &o);
		tp_free(&o);
	}
	t_expect_quiet(b);

	tp_free(&p);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

static Suite *
monitors_suite(void)
{
	Suite *s = suite_create("daemon_monitors");
	TCase *tc;

	tc = tcase_create("methods");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_monitor);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifeline");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_lifeline_sigkill);
	tcase_add_test(tc, test_oneshot_eof);
	tcase_add_test(tc, test_mass_disconnect);
	tcase_add_test(tc, test_abrupt_close);
	tcase_add_test(tc, test_sigterm_with_clients);
	suite_add_tcase(s, tc);

	tc = tcase_create("targets");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_monitor_conn);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(monitors_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
