/*
 * check_events.c: integration tests of protocol 2's await, queued
 * ownership with hand-over, replacement, fencing by gen, and the event
 * stream (subscribe, resume, overflow), against proto/PROTOCOL.md
 * (§3 Generation, §4.2, §4.3, §4.5, §4.17, §4.20-§4.23, §5, §9).
 *
 * Every test starts its own daemon on a private socket and talks to it
 * through real sockets.  Every wait is bounded; no test asserts on
 * elapsed time beyond generous bounds.
 *
 * Longer than the house's ~1,200 lines: its cases are one family (who
 * holds a name over time, and the stream that tells it), sharing one
 * set of helpers (expect_event, the subscription readers) that no other
 * suite uses; split, they would move to testlib for this file alone.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testlib.h"

/* register options */
#define F_QUEUE		1u
#define F_ALLOW		2u
#define F_REPLACE	4u

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/*
 * An entry (keys: entry_keys) or member entry (member_keys) whose first
 * key, "name" or "group", is name, of conn, made by process pid, with a
 * str value (NULL: nil); its gen.
 */
static uint64_t
check_item(const msgpack_object *e, const char *const *keys, const char *name,
    uint64_t conn, const char *value, pid_t pid)
{
	check_keys(e, keys);
	check_str(o_get(e, keys[0]), name);
	ck_assert_uint_eq(o_uint(o_get(e, "conn")), conn);
	if (value != NULL)
		check_str(o_get(e, "value"), value);
	else
		check_nil(o_get(e, "value"));
	return check_made_by(e, pid);
}

/* An entry of name owned by conn with a str value (NULL: nil), made by
 * this process; its gen. */
static uint64_t
check_entry(const msgpack_object *e, const char *name, uint64_t conn,
    const char *value)
{
	return check_item(e, entry_keys, name, conn, value, getpid());
}

/* A member entry of group for conn with a str value (NULL: nil), made by
 * this process; its gen. */
static uint64_t
check_member(const msgpack_object *e, const char *group, uint64_t conn,
    const char *value)
{
	return check_item(e, member_keys, group, conn, value, getpid());
}

/* Keep a copy of o in p (received objects live until the next t_recv). */
static void
keep(struct tpack *p, const msgpack_object *o)
{
	tp_reset(p);
	ck_assert_int_eq(msgpack_pack_object(&p->pk, *o), 0);
}

static void
tp_bool(struct tpack *p, bool b)
{
	if (b)
		msgpack_pack_true(&p->pk);
	else
		msgpack_pack_false(&p->pk);
}

static void
tp_str_or_nil(struct tpack *p, const char *s)
{
	if (s != NULL)
		tp_str(p, s);
	else
		tp_nil(p);
}

/*
 * Nothing is queued for c: the answer to a request it sends now is the
 * next object.  The daemon applies requests one at a time, so every push
 * caused by a request already answered (to anyone) would come first.
 * (Only for causes that are requests: a close is seen asynchronously.)
 */
static void
expect_quiet(struct tclient *c)
{
	uint32_t id = t_request(c, "whereis", "s", "no such name");
	msgpack_object *o = t_recv(c, -1);

	ck_assert_msg(o != NULL, "no response to the sentinel request");
	ck_assert_msg(o->type == MSGPACK_OBJECT_ARRAY &&
	    o->via.array.size == 4 && o->via.array.ptr[0].via.u64 == 1 &&
	    o->via.array.ptr[1].via.u64 == id,
	    "an object arrived ahead of the sentinel's response%s%.*s",
	    o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3 &&
	    o->via.array.ptr[1].type == MSGPACK_OBJECT_STR ? ": a push " : "",
	    o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3 &&
	    o->via.array.ptr[1].type == MSGPACK_OBJECT_STR ?
	    (int)o->via.array.ptr[1].via.str.size : 0,
	    o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3 &&
	    o->via.array.ptr[1].type == MSGPACK_OBJECT_STR ?
	    o->via.array.ptr[1].via.str.ptr : "");
	check_nil(&o->via.array.ptr[2]);
	check_nil(&o->via.array.ptr[3]);
}

/* The same for several clients (NULL-ended). */
static void
expect_quiet_all(struct tclient *first, ...)
{
	struct tclient *c;
	va_list ap;

	expect_quiet(first);
	va_start(ap, first);
	while ((c = va_arg(ap, struct tclient *)) != NULL)
		expect_quiet(c);
	va_end(ap);
}

/* Is queue [name] exactly ids (n of them)? */
static bool
queue_is(struct tclient *c, const char *name, const uint64_t *ids, uint32_t n)
{
	msgpack_object *q = t_call_ok(c, "queue", "s", name);

	ck_assert_int_eq(q->type, MSGPACK_OBJECT_ARRAY);
	if (q->via.array.size != n)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (o_uint(at(q, i)) != ids[i])
			return false;
	}
	return true;
}

static void
check_queue(struct tclient *c, const char *name, const uint64_t *ids,
    uint32_t n)
{
	ck_assert_msg(queue_is(c, name, ids, n), "queue [%s] differs", name);
}

/* Poll (bounded) until queue [name] is exactly ids. */
static void
wait_queue(struct tclient *c, const char *name, const uint64_t *ids,
    uint32_t n)
{
	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		if (queue_is(c, name, ids, n))
			return;
		usleep(T_POLL_US);
	}
	ck_abort_msg("queue [%s] never became as expected", name);
}

/* Send register [name, value, opts] (opts from flags; value NULL: nil). */
static uint32_t
reg_send(struct tclient *c, const char *name, const char *value,
    unsigned flags)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "register", 3);
	tp_str(&p, name);
	tp_str_or_nil(&p, value);
	tp_map(&p, !!(flags & F_QUEUE) + !!(flags & F_ALLOW) +
	    !!(flags & F_REPLACE));
	if (flags & F_QUEUE) {
		tp_str(&p, "queue");
		tp_bool(&p, true);
	}
	if (flags & F_ALLOW) {
		tp_str(&p, "allow_replacement");
		tp_bool(&p, true);
	}
	if (flags & F_REPLACE) {
		tp_str(&p, "replace");
		tp_bool(&p, true);
	}
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

/* Register and become the owner: the entry's gen. */
static uint64_t
reg_own(struct tclient *c, uint64_t conn, const char *name, const char *value,
    unsigned flags)
{
	return check_entry(t_ok(c, reg_send(c, name, value, flags)), name,
	    conn, value);
}

/* Register with queue and be queued: the position. */
static uint64_t
reg_queued(struct tclient *c, const char *name, const char *value,
    unsigned flags)
{
	static const char *const keys[] = { "queued", NULL };
	msgpack_object *r = t_ok(c, reg_send(c, name, value, flags));

	check_keys(r, keys);
	return o_uint(o_get(r, "queued"));
}

static void
reg_err(struct tclient *c, const char *code, const char *name,
    const char *value, unsigned flags)
{
	t_err(c, reg_send(c, name, value, flags), code);
}

/* [2, "acquired", [name, entry]]: the entry (checked for name and conn). */
static msgpack_object *
expect_acquired(struct tclient *c, const char *name, uint64_t conn,
    const char *value)
{
	msgpack_object *pa = t_push(c, "acquired");

	ck_assert_uint_eq(pa->via.array.size, 2);
	check_str(at(pa, 0), name);
	check_entry(at(pa, 1), name, conn, value);
	return at(pa, 1);
}

static void
expect_lost_why(struct tclient *c, const char *name, const char *why)
{
	msgpack_object *pa = t_push(c, "lost");

	ck_assert_uint_eq(pa->via.array.size, 2);
	check_str(at(pa, 0), name);
	check_str(at(pa, 1), why);
}

static void
expect_lost(struct tclient *c, const char *name)
{
	expect_lost_why(c, name, "replaced");
}

/*
 * The next object is [2, "event", [sub, seq, kind, payload]]; checks sub
 * and kind, and seq when want_seq is not 0; *seq gets it.  The payload.
 */
static msgpack_object *
expect_event(struct tclient *c, uint64_t sub, uint64_t want_seq,
    const char *kind, uint64_t *seq)
{
	msgpack_object *pa = t_push(c, "event");
	uint64_t s;

	ck_assert_uint_eq(pa->via.array.size, 4);
	ck_assert_uint_eq(o_uint(at(pa, 0)), sub);
	s = o_uint(at(pa, 1));
	if (want_seq != 0)
		ck_assert_uint_eq(s, want_seq);
	check_str(at(pa, 2), kind);
	if (seq != NULL)
		*seq = s;
	return at(pa, 3);
}

/* An "unregistered" event's payload [name, reason]. */
static void
expect_unreg_event(struct tclient *c, uint64_t sub, uint64_t want_seq,
    const char *name, const char *reason, uint64_t *seq)
{
	msgpack_object *pl = expect_event(c, sub, want_seq, "unregistered",
	    seq);

	ck_assert_uint_eq(pl->via.array.size, 2);
	check_str(at(pl, 0), name);
	check_str(at(pl, 1), reason);
}

/* Send subscribe [prefix] or [prefix, opts]: groups < 0 leaves the key
 * out; since NULL too. */
static uint32_t
sub_send(struct tclient *c, const char *prefix, int groups,
    const uint64_t *since)
{
	struct tpack p;
	uint32_t id;
	bool opts = groups >= 0 || since != NULL;

	tp_init(&p);
	id = rq_begin(c, &p, "subscribe", opts ? 2 : 1);
	tp_str(&p, prefix);
	if (opts) {
		tp_map(&p, (groups >= 0) + (since != NULL));
		if (groups >= 0) {
			tp_str(&p, "groups");
			tp_bool(&p, groups > 0);
		}
		if (since != NULL) {
			tp_str(&p, "since");
			tp_uint(&p, *since);
		}
	}
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

/*
 * Subscribe without since: checks the result's keys; *sub and *seq get
 * them; returns the entries array.
 */
static msgpack_object *
subscribe(struct tclient *c, const char *prefix, int groups, uint64_t *sub,
    uint64_t *seq)
{
	static const char *const keys[] = { "sub", "seq", "entries", NULL };
	msgpack_object *r = t_ok(c, sub_send(c, prefix, groups, NULL)), *e;

	check_keys(r, keys);
	*sub = o_uint(o_get(r, "sub"));
	*seq = o_uint(o_get(r, "seq"));
	e = o_get(r, "entries");
	ck_assert_int_eq(e->type, MSGPACK_OBJECT_ARRAY);
	return e;
}

/* Subscribe with since and expect gap false. */
static void
resume(struct tclient *c, const char *prefix, int groups, uint64_t since,
    uint64_t *sub, uint64_t *seq)
{
	static const char *const keys[] = { "sub", "seq", "gap", NULL };
	msgpack_object *r = t_ok(c, sub_send(c, prefix, groups, &since));

	check_keys(r, keys);
	check_bool(o_get(r, "gap"), false);
	*sub = o_uint(o_get(r, "sub"));
	*seq = o_uint(o_get(r, "seq"));
}

/* Build the register_many request for names[i] with values[i] (NULL:
 * none, the [name] form). */
static uint32_t
reg_many_send(struct tclient *c, const char *const *names,
    const char *const *values, uint32_t n)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, "register_many", 1);
	tp_arr(&p, n);
	for (uint32_t i = 0; i < n; i++) {
		tp_arr(&p, values != NULL && values[i] != NULL ? 2 : 1);
		tp_str(&p, names[i]);
		if (values != NULL && values[i] != NULL)
			tp_str(&p, values[i]);
	}
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

/* send [name, payload, {"gen": gen}] */
static uint32_t
send_gen(struct tclient *c, const char *name, const char *payload,
    uint64_t gen)
{
	return t_request(c, "send", "ss{su}", name, payload, "gen", gen);
}

/*
 * For the child processes below, plain code with no Check assertions:
 * each failure exits with the status fail.  Connect to path (the child
 * lives a minute at most, and not past the test process).
 */
static int
child_connect(const char *path, int fail)
{
	struct sockaddr_un sun;
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(60);
	t_unix_addr(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		_exit(fail);
	return fd;
}

/* Write all that p holds. */
static void
child_write(int fd, const struct tpack *p, int fail)
{
	for (size_t off = 0; off < p->buf.size; ) {
		ssize_t n = write(fd, p->buf.data + off, p->buf.size - off);

		if (n <= 0)
			_exit(fail);
		off += (size_t)n;
	}
}

/* Read what comes next into unp (EOF is a failure). */
static void
child_read(int fd, msgpack_unpacker *unp, int fail)
{
	ssize_t n;

	if (!msgpack_unpacker_reserve_buffer(unp, 64 * 1024))
		_exit(fail);
	n = read(fd, msgpack_unpacker_buffer(unp),
	    msgpack_unpacker_buffer_capacity(unp));
	if (n <= 0)
		_exit(fail);
	msgpack_unpacker_buffer_consumed(unp, (size_t)n);
}

/*
 * A child process that connects, sends register [name, value,
 * {"queue": true}] and reports on wfd: 'o' when it became the owner,
 * 'q' when it was queued, 'a' for each acquired push.  Anything else
 * makes it exit.  Plain code: no Check assertions in the child.
 */
static void
holder_child(const char *path, const char *name, const char *value, int wfd)
{
	msgpack_unpacker unp;
	msgpack_unpacked res;
	struct tpack p;
	int fd = child_connect(path, 1);

	tp_init(&p);
	tp_req(&p, 1, "register", 3);
	tp_str(&p, name);
	tp_str(&p, value);
	tp_map(&p, 1);
	tp_str(&p, "queue");
	tp_bool(&p, true);
	child_write(fd, &p, 1);
	if (!msgpack_unpacker_init(&unp, 64 * 1024))
		_exit(1);
	msgpack_unpacked_init(&res);
	for (;;) {
		while (msgpack_unpacker_next(&unp, &res) ==
		    MSGPACK_UNPACK_SUCCESS) {
			msgpack_object *o = &res.data, *r;
			char ch;

			if (o->type != MSGPACK_OBJECT_ARRAY)
				_exit(1);
			if (o->via.array.size == 4 &&
			    o->via.array.ptr[0].via.u64 == 1 &&
			    o->via.array.ptr[1].via.u64 == 1 &&
			    o->via.array.ptr[2].type == MSGPACK_OBJECT_NIL) {
				r = &o->via.array.ptr[3];
				if (r->type != MSGPACK_OBJECT_MAP ||
				    r->via.map.size == 0)
					_exit(1);
				ch = o_is_str(&r->via.map.ptr[0].key,
				    "queued") ? 'q' : 'o';
			} else if (o->via.array.size == 3 &&
			    o->via.array.ptr[0].via.u64 == 2 &&
			    o_is_str(&o->via.array.ptr[1], "acquired"))
				ch = 'a';
			else
				_exit(1);
			if (write(wfd, &ch, 1) != 1)
				_exit(1);
		}
		child_read(fd, &unp, 1);
	}
}

struct holder {
	pid_t	 pid;
	int	 fd;	/* the read end of its reports */
};

static void
holder_start(struct holder *h, const char *path, const char *name,
    const char *value)
{
	int pfd[2];

	ck_assert_uint_lt(strlen(path), sizeof(((struct sockaddr_un *)0)->
	    sun_path));
	ck_assert_int_eq(pipe(pfd), 0);
	h->pid = fork();
	ck_assert_int_ge(h->pid, 0);
	if (h->pid == 0) {
		close(pfd[0]);
		holder_child(path, name, value, pfd[1]);
		_exit(1);
	}
	close(pfd[1]);
	h->fd = pfd[0];
}

/* The holder's next report within ms, 0 if none. */
static char
holder_report(struct holder *h, int ms)
{
	struct pollfd pfd = { .fd = h->fd, .events = POLLIN };
	char ch;

	if (poll(&pfd, 1, ms) != 1 || read(h->fd, &ch, 1) != 1)
		return 0;
	return ch;
}

static void
holder_kill(struct holder *h)
{
	int status;

	ck_assert_int_eq(kill(h->pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(h->pid, &status, 0), h->pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(h->fd);
}

/* How long a hand-over after a SIGKILL may take: generous. */
static int
acquire_ms(void)
{
	return t_under_valgrind() ? 5000 : 1000;
}

/* ------------------------------------------------------------------ */
/* await (§4.20)                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_await_immediate)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack e;
	uint64_t ca;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	tp_init(&e);

	keep(&e, t_call_ok(a, "register", "ss", "db", "v"));
	ck_assert(obj_eq(t_call_ok(b, "whereis", "s", "db"), &e));
	/* Registered: the entry at once (the one register answered), with
	 * or without a timeout, 0 included. */
	ck_assert(obj_eq(t_call_ok(b, "await", "s", "db"), &e));
	ck_assert(obj_eq(t_call_ok(b, "await", "su", "db", (uint64_t)0), &e));
	ck_assert(obj_eq(t_call_ok(b, "await", "su", "db", (uint64_t)1000),
	    &e));
	check_entry(t_call_ok(b, "await", "s", "db"), "db", ca, "v");
	/* timeout 0 on a free name: timeout at once, nothing left pending. */
	t_call_err(b, "timeout", "await", "su", "nope", (uint64_t)0);
	ck_assert_uint_eq(t_stat(b, "awaits"), 0);
	t_call_ok(a, "register", "s", "nope");
	expect_quiet(b);

	tp_free(&e);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_await_fulfilled)
{
	struct tdaemon d;
	struct tclient *a, *b, *c;
	struct tpack e, e2;
	const char *names[] = { "m1", "m2", "m3" };
	const char *vals[] = { "v1", NULL, "v3" };
	uint32_t id1, id2, id3, idc, idm;
	uint64_t cb;
	msgpack_object *r;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	cb = t_conn_id(b);
	tp_init(&e);
	tp_init(&e2);

	/* Two awaits on one connection and one on another, by register. */
	id1 = t_request(a, "await", "su", "svc", (uint64_t)60000);
	id2 = t_request(a, "await", "s", "svc");
	idc = t_request(c, "await", "su", "svc", (uint64_t)60000);
	/* Both are pending once later requests are answered. */
	check_nil(t_call_ok(a, "whereis", "s", "svc"));
	check_nil(t_call_ok(c, "whereis", "s", "svc"));
	ck_assert_uint_eq(t_stat(b, "awaits"), 3);
	keep(&e, t_call_ok(b, "register", "ss", "svc", "val"));
	/* Deferred responses: the two come in either order. */
	{
		bool got1 = false, got2 = false;

		for (int i = 0; i < 2; i++) {
			msgpack_object *o = t_recv(a, -1);
			uint64_t mid;

			ck_assert_ptr_nonnull(o);
			ck_assert_uint_eq(o->via.array.size, 4);
			mid = o_uint(at(o, 1));
			ck_assert(mid == id1 ? !got1 : mid == id2 && !got2);
			if (mid == id1)
				got1 = true;
			else
				got2 = true;
			check_nil(at(o, 2));
			check_entry(at(o, 3), "svc", cb, "val");
			ck_assert(obj_eq(at(o, 3), &e));
		}
	}
	ck_assert(obj_eq(t_ok(c, idc), &e));
	ck_assert_uint_eq(t_stat(a, "awaits"), 0);
	/* Answered once: later changes send nothing. */
	check_bool(t_call_ok(b, "unregister", "s", "svc"), true);
	t_call_ok(b, "register", "s", "svc");
	expect_quiet_all(a, c, NULL);

	/* By register_many: the entry of that name, from the batch. */
	id3 = t_request(a, "await", "su", "m2", (uint64_t)60000);
	check_nil(t_call_ok(a, "whereis", "s", "m2"));
	/* A failing batch (m3 taken by c) registers nothing: still pending. */
	t_call_ok(c, "register", "s", "m3");
	t_err(b, reg_many_send(b, names, vals, 3), "taken");
	expect_quiet(a);
	ck_assert_uint_eq(t_stat(b, "awaits"), 1);
	check_bool(t_call_ok(c, "unregister", "s", "m3"), true);
	idm = reg_many_send(b, names, vals, 3);
	r = t_ok(b, idm);
	ck_assert_uint_eq(r->via.array.size, 3);
	keep(&e2, at(r, 1));
	r = t_ok(a, id3);
	check_entry(r, "m2", cb, NULL);
	ck_assert(obj_eq(r, &e2));
	ck_assert_uint_eq(t_stat(a, "awaits"), 0);

	/* A connection may await a name it then registers itself: both
	 * responses come, the await's in either order (§2). */
	{
		uint32_t ida = t_request(a, "await", "su", "self",
		    (uint64_t)60000);
		uint32_t idr;
		bool got_a = false, got_r = false;

		check_nil(t_call_ok(a, "whereis", "s", "self"));
		idr = t_request(a, "register", "s", "self");
		for (int i = 0; i < 2; i++) {
			msgpack_object *o = t_recv(a, -1);

			ck_assert_ptr_nonnull(o);
			ck_assert_uint_eq(o->via.array.size, 4);
			check_nil(at(o, 2));
			check_str(o_get(at(o, 3), "name"), "self");
			if (o_uint(at(o, 1)) == ida) {
				ck_assert(!got_a);
				got_a = true;
			} else {
				ck_assert_uint_eq(o_uint(at(o, 1)), idr);
				ck_assert(!got_r);
				got_r = true;
			}
		}
	}

	tp_free(&e);
	tp_free(&e2);
	t_close(a);
	t_close(b);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_await_timeout_and_order)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p;
	uint32_t ida, idw;
	uint64_t cb;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	cb = t_conn_id(b);
	tp_init(&p);

	/* The timeout fires: a timeout error, nothing left pending, and a
	 * later register sends nothing. */
	ida = t_request(a, "await", "su", "late", (uint64_t)100);
	t_err(a, ida, "timeout");
	ck_assert_uint_eq(t_stat(a, "awaits"), 0);
	t_call_ok(b, "register", "s", "late");
	expect_quiet(a);

	/* The response comes after the responses to later requests. */
	ida = rq_begin(a, &p, "await", 2);
	tp_str(&p, "pw");
	tp_uint(&p, 60000);
	idw = rq_begin(a, &p, "whereis", 1);
	tp_str(&p, "late");
	rq_send(a, &p);
	check_entry(t_ok(a, idw), "late", cb, NULL);
	ck_assert_uint_eq(t_stat(a, "awaits"), 1);
	t_call_ok(b, "register", "s", "pw");
	check_entry(t_ok(a, ida), "pw", cb, NULL);

	/* Several pending awaits with different timeouts: the short one
	 * times out, the long ones stay pending. */
	ida = t_request(a, "await", "su", "x1", (uint64_t)60000);
	idw = t_request(a, "await", "su", "x2", (uint64_t)50);
	t_err(a, idw, "timeout");
	ck_assert_uint_eq(t_stat(a, "awaits"), 1);
	t_call_ok(b, "register", "s", "x1");
	check_entry(t_ok(a, ida), "x1", cb, NULL);

	tp_free(&p);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_await_close)
{
	struct tdaemon d;
	struct tclient *a, *b;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_request(a, "await", "su", "never", (uint64_t)86400000);
	t_request(a, "await", "s", "never");
	t_request(a, "await", "su", "other", (uint64_t)60000);
	check_nil(t_call_ok(a, "whereis", "s", "never"));
	ck_assert_uint_eq(t_stat(b, "awaits"), 3);
	t_close(a);
	t_wait_stat(b, "awaits", 0);
	/* The dropped awaits are forgotten: registering is uneventful. */
	t_call_ok(b, "register", "s", "never");
	t_call_ok(b, "register", "s", "other");
	ck_assert_uint_eq(t_stat(b, "connections"), 1);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_await_limit)
{
	struct tdaemon d;
	struct tclient *a, *b;
	msgpack_object *pa;
	uint32_t id1, id2, idc, idb;
	uint64_t ca, cb, call_id;

	t_daemon_start(&d, "--max-calls", "2", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	t_call_ok(b, "register", "s", "callee");

	id1 = t_request(a, "await", "su", "w1", (uint64_t)60000);
	id2 = t_request(a, "await", "su", "w2", (uint64_t)60000);
	check_nil(t_call_ok(a, "whereis", "s", "w1"));
	t_call_err(a, "limit", "await", "su", "w3", (uint64_t)60000);
	/* bad_request comes before limit. */
	t_call_err(a, "bad_request", "await", "su", "w3", (uint64_t)86400001);
	/* Awaits and calls share the limit. */
	t_call_err(a, "limit", "call", "ss", "callee", "ping");
	expect_quiet(b);
	ck_assert_uint_eq(t_stat(a, "awaits"), 2);
	/* Per connection: b has its own allowance. */
	idb = t_request(b, "await", "su", "bw", (uint64_t)60000);
	check_nil(t_call_ok(b, "whereis", "s", "bw"));
	ck_assert_uint_eq(t_stat(a, "awaits"), 3);

	/* One await answered frees a slot, which a call takes. */
	t_call_ok(b, "register", "s", "w1");
	check_entry(t_ok(a, id1), "w1", cb, NULL);
	idc = t_request(a, "call", "ssu", "callee", "ping", (uint64_t)60000);
	pa = t_push(b, "call");
	call_id = o_uint(at(pa, 0));
	check_str(at(pa, 1), "callee");
	ck_assert_uint_eq(o_uint(at(pa, 2)), ca);
	check_str(at(pa, 3), "ping");
	/* An await and a call: the limit for both. */
	t_call_err(a, "limit", "await", "su", "w3", (uint64_t)60000);
	t_call_err(a, "limit", "call", "ssu", "callee", "ping",
	    (uint64_t)60000);
	check_bool(t_call_ok(b, "reply", "us", call_id, "pong"), true);
	check_str(t_ok(a, idc), "pong");
	/* Free again: an await is accepted (and times out). */
	t_call_err(a, "timeout", "await", "su", "w3", (uint64_t)50);
	t_call_ok(b, "register", "s", "w2");
	check_entry(t_ok(a, id2), "w2", cb, NULL);
	/* (Registered by a: b's own register would answer in either order
	 * with its await, §2.) */
	t_call_ok(a, "register", "s", "bw");
	check_entry(t_ok(b, idb), "bw", ca, NULL);
	ck_assert_uint_eq(t_stat(a, "awaits"), 0);

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §4.20: limit only "when the await has to wait (the name is not
 * registered and timeout_ms is not 0)": at max-calls an await of a
 * registered name still answers at once, and timeout_ms 0 still answers
 * timeout.
 */
START_TEST(test_await_limit_only_when_waiting)
{
	struct tdaemon d;
	struct tclient *a;
	uint64_t ca;

	t_daemon_start(&d, "--max-calls", "1", NULL);
	a = t_connect(d.path);
	ca = t_conn_id(a);
	t_call_ok(a, "register", "s", "here");
	t_request(a, "await", "su", "w1", (uint64_t)60000);
	check_nil(t_call_ok(a, "whereis", "s", "w1"));
	t_call_err(a, "limit", "await", "su", "w2", (uint64_t)1000);
	t_call_err(a, "limit", "await", "s", "w2");
	t_call_err(a, "timeout", "await", "su", "w2", (uint64_t)0);
	check_entry(t_call_ok(a, "await", "s", "here"), "here", ca, NULL);
	check_entry(t_call_ok(a, "await", "su", "here", (uint64_t)0), "here",
	    ca, NULL);
	ck_assert_uint_eq(t_stat(a, "awaits"), 1);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_await_bad_params)
{
	struct tdaemon d;
	struct tclient *a;
	char name256[257];

	memset(name256, 'n', 256);
	name256[256] = '\0';
	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	t_call_err(a, "bad_request", "await", "");
	t_call_err(a, "bad_request", "await", "s", "");
	t_call_err(a, "bad_request", "await", "s", name256);
	t_call_err(a, "bad_request", "await", "u", (uint64_t)1);
	t_call_err(a, "bad_request", "await", "n");
	t_call_err(a, "bad_request", "await", "su", "n", (uint64_t)86400001);
	t_call_err(a, "bad_request", "await", "si", "n", (int64_t)-1);
	t_call_err(a, "bad_request", "await", "ss", "n", "5");
	t_call_err(a, "bad_request", "await", "sn", "n");
	t_call_err(a, "bad_request", "await", "suu", "n", (uint64_t)5,
	    (uint64_t)6);
	/* Nothing was left pending by a refused await. */
	ck_assert_uint_eq(t_stat(a, "awaits"), 0);
	/* The bounds themselves are fine. */
	t_call_err(a, "timeout", "await", "su", "n", (uint64_t)0);
	t_request(a, "await", "su", "n", (uint64_t)86400000);
	check_nil(t_call_ok(a, "whereis", "s", "n"));
	ck_assert_uint_eq(t_stat(a, "awaits"), 1);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* queued ownership (§4.21)                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_queue_positions)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *e;
	uint64_t ca, cb, cc, ce, ids[3];

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	e = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	ce = t_conn_id(e);

	/* Free name with queue: plain registration. */
	reg_own(a, ca, "q", "a", F_QUEUE);
	check_queue(a, "q", NULL, 0);
	ck_assert_uint_eq(reg_queued(b, "q", "b", F_QUEUE), 1);
	ck_assert_uint_eq(reg_queued(c, "q", "c", F_QUEUE), 2);
	ck_assert_uint_eq(reg_queued(e, "q", NULL, F_QUEUE), 3);
	ids[0] = cb;
	ids[1] = cc;
	ids[2] = ce;
	check_queue(a, "q", ids, 3);
	check_queue(e, "q", ids, 3);

	/* Owner and waiters registering again: taken, queue unchanged. */
	reg_err(a, "taken", "q", "a", F_QUEUE);
	reg_err(a, "taken", "q", "a", 0);
	reg_err(b, "taken", "q", "b", F_QUEUE);
	reg_err(b, "taken", "q", "b", 0);
	t_call_err(b, "taken", "register", "s", "q");
	reg_err(e, "taken", "q", NULL, F_QUEUE);
	check_queue(a, "q", ids, 3);
	/* Waiting is not owning: whereis shows the owner, names counts one. */
	check_entry(t_call_ok(b, "whereis", "s", "q"), "q", ca, "a");
	ck_assert_uint_eq(t_stat(a, "names"), 1);

	/* Not registered, or registered without waiters: empty. */
	check_queue(a, "free", NULL, 0);
	t_call_ok(a, "register", "s", "solo");
	check_queue(a, "solo", NULL, 0);
	t_call_err(a, "bad_request", "queue", "");
	t_call_err(a, "bad_request", "queue", "s", "");
	t_call_err(a, "bad_request", "queue", "u", (uint64_t)1);
	t_call_err(a, "bad_request", "queue", "ss", "q", "q");

	/* Unknown option keys, non-bool options and options that are not a
	 * map are bad_request. */
	t_call_err(b, "bad_request", "register", "sn{st}", "q2", "bogus");
	t_call_err(b, "bad_request", "register", "sn{su}", "q2", "queue",
	    (uint64_t)1);
	t_call_err(b, "bad_request", "register", "sns", "q2", "queue");
	check_nil(t_call_ok(b, "whereis", "s", "q2"));

	t_close(a);
	t_close(b);
	t_close(c);
	t_close(e);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_queue_handover)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *m, *s;
	struct tpack e;
	uint64_t ca, cb, cc, g1, g2, g3, ref, ref2, sub, seq, ev, ids[2];
	msgpack_object *x;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	m = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	tp_init(&e);

	g1 = reg_own(a, ca, "lock", "a", 0);
	ck_assert_uint_eq(reg_queued(b, "lock", "b", F_QUEUE), 1);
	ck_assert_uint_eq(reg_queued(c, "lock", "c", F_QUEUE), 2);
	ref = o_uint(t_call_ok(m, "monitor", "s", "lock"));
	x = subscribe(s, "lock", -1, &sub, &seq);
	ck_assert_uint_eq(x->via.array.size, 1);

	/* The owner unregisters: the head acquires with its own value and
	 * a higher gen, in the same step. */
	check_bool(t_call_ok(a, "unregister", "s", "lock"), true);
	x = expect_acquired(b, "lock", cb, "b");
	g2 = o_uint(o_get(x, "gen"));
	ck_assert_uint_gt(g2, g1);
	keep(&e, x);
	expect_down(m, ref, "lock", "unregistered");
	ck_assert(obj_eq(t_call_ok(m, "whereis", "s", "lock"), &e));
	x = expect_event(s, sub, seq + 1, "handover", &ev);
	ck_assert(obj_eq(x, &e));
	ids[0] = cc;
	check_queue(m, "lock", ids, 1);
	ck_assert_uint_eq(t_stat(m, "names"), 1);
	expect_quiet_all(a, c, NULL);

	/* The new owner is an owner like any other. */
	check_entry(t_call_ok(b, "update", "ss", "lock", "b2"), "lock", cb,
	    "b2");
	x = expect_event(s, sub, ev + 1, "updated", &ev);
	ck_assert_uint_eq(check_entry(x, "lock", cb, "b2"), g2);
	/* A latecomer queues behind c. */
	ck_assert_uint_eq(reg_queued(a, "lock", "a2", F_QUEUE), 2);
	ids[1] = ca;
	check_queue(m, "lock", ids, 2);

	/* Next hand-over, next gen. */
	ref2 = o_uint(t_call_ok(m, "monitor", "s", "lock"));
	check_bool(t_call_ok(b, "unregister", "s", "lock"), true);
	g3 = o_uint(o_get(expect_acquired(c, "lock", cc, "c"), "gen"));
	ck_assert_uint_gt(g3, g2);
	expect_down(m, ref2, "lock", "unregistered");
	check_entry(expect_event(s, sub, ev + 1, "handover", &ev), "lock",
	    cc, "c");
	check_queue(m, "lock", &ca, 1);
	check_bool(t_call_ok(c, "unregister", "s", "lock"), true);
	ck_assert_uint_gt(o_uint(o_get(expect_acquired(a, "lock", ca, "a2"),
	    "gen")), g3);
	check_entry(expect_event(s, sub, ev + 1, "handover", &ev), "lock",
	    ca, "a2");
	check_queue(m, "lock", NULL, 0);
	/* Nobody waits: the name goes. */
	check_bool(t_call_ok(a, "unregister", "s", "lock"), true);
	expect_unreg_event(s, sub, ev + 1, "lock", "unregistered", &ev);
	check_nil(t_call_ok(m, "whereis", "s", "lock"));
	ck_assert_uint_eq(t_stat(m, "names"), 0);
	expect_quiet_all(s, b, c, m, NULL);

	tp_free(&e);
	t_close(a);
	t_close(b);
	t_close(c);
	t_close(m);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A child process that asks whereis [name] in a tight loop (WATCH_WINDOW
 * requests in flight) until stop_fd reaches EOF, then reports on
 * report_fd: 'r' once its first answer came, then a struct watch_report.
 * It exits 0 when every answer was an entry of name, 1 otherwise.  Plain
 * code: no Check assertions in the child.
 */
#define WATCH_WINDOW	8

struct watch_report {
	uint64_t	 answers;
	uint64_t	 nils;		/* answers that were not an entry */
	uint64_t	 switches;	/* changes of the owner seen */
};

static void
watch_send(int fd, uint32_t msgid, const char *name)
{
	struct tpack p;

	tp_init(&p);
	tp_req(&p, msgid, "whereis", 1);
	tp_str(&p, name);
	child_write(fd, &p, 2);
	tp_free(&p);
}

static void
watcher_child(const char *path, const char *name, int stop_fd, int report_fd)
{
	struct watch_report rep = { 0, 0, 0 };
	msgpack_unpacker unp;
	msgpack_unpacked res;
	uint64_t last = 0;
	uint32_t next = 1, inflight = 0;
	bool stopping = false;
	int fd = child_connect(path, 2);

	if (!msgpack_unpacker_init(&unp, 64 * 1024))
		_exit(2);
	msgpack_unpacked_init(&res);
	for (; inflight < WATCH_WINDOW; inflight++)
		watch_send(fd, next++, name);
	while (inflight > 0) {
		struct pollfd pfd[2] = { { fd, POLLIN, 0 },
		    { stop_fd, POLLIN, 0 } };

		while (msgpack_unpacker_next(&unp, &res) ==
		    MSGPACK_UNPACK_SUCCESS) {
			msgpack_object *o = &res.data, *r;
			uint64_t owner = 0;
			bool named = false;

			if (o->type != MSGPACK_OBJECT_ARRAY ||
			    o->via.array.size != 4 ||
			    o->via.array.ptr[2].type != MSGPACK_OBJECT_NIL)
				_exit(2);
			r = &o->via.array.ptr[3];
			for (uint32_t i = 0; r->type == MSGPACK_OBJECT_MAP &&
			    i < r->via.map.size; i++) {
				msgpack_object_kv *kv = &r->via.map.ptr[i];

				if (o_is_str(&kv->key, "name"))
					named = o_is_str(&kv->val, name);
				else if (o_is_str(&kv->key, "conn"))
					owner = kv->val.via.u64;
			}
			if (!named)
				rep.nils++;
			else if (last != 0 && owner != last)
				rep.switches++;
			if (named)
				last = owner;
			if (rep.answers++ == 0 && write(report_fd, "r", 1) != 1)
				_exit(2);
			inflight--;
			if (!stopping) {
				watch_send(fd, next++, name);
				inflight++;
			}
		}
		if (inflight == 0)
			break;
		if (poll(pfd, stopping ? 1 : 2, -1) < 0)
			_exit(2);
		if (!stopping && (pfd[1].revents & (POLLIN | POLLHUP)))
			stopping = true;
		if (!(pfd[0].revents & (POLLIN | POLLHUP)))
			continue;
		child_read(fd, &unp, 2);
	}
	if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(2);
	_exit(rep.nils == 0 ? 0 : 1);
}

/*
 * "whereis never answers nil in between": the owner's unregister and the
 * waiter's hand-over are one step.  The name passes back and forth
 * between two connections while a third, in another process, asks
 * whereis in a tight loop: every answer is an entry.  The owner's own
 * whereis pipelined right after its unregister sees the new owner, and a
 * subscriber sees one handover event per change of hands, nothing else.
 */
START_TEST(test_queue_never_nil)
{
	struct tdaemon d;
	struct tclient *cl[2], *s;
	struct tpack p;
	struct watch_report rep;
	uint64_t id[2], sub, seq, ev, gen;
	int rounds = t_under_valgrind() ? 30 : 300, stop[2], report[2], status;
	pid_t pid;
	char ch;

	t_daemon_start(&d, NULL);
	cl[0] = t_connect(d.path);
	cl[1] = t_connect(d.path);
	s = t_connect(d.path);
	id[0] = t_conn_id(cl[0]);
	id[1] = t_conn_id(cl[1]);
	tp_init(&p);

	gen = reg_own(cl[0], id[0], "hot", "0", F_QUEUE);
	ck_assert_uint_eq(reg_queued(cl[1], "hot", "1", F_QUEUE), 1);
	subscribe(s, "hot", -1, &sub, &seq);
	ev = seq;

	ck_assert_int_eq(pipe(stop), 0);
	ck_assert_int_eq(pipe(report), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(stop[1]);
		close(report[0]);
		watcher_child(d.path, "hot", stop[0], report[1]);
		_exit(2);
	}
	close(stop[0]);
	close(report[1]);
	{
		struct pollfd pfd = { report[0], POLLIN, 0 };

		ck_assert_int_eq(poll(&pfd, 1, T_TIMEOUT_MS), 1);
		ck_assert_int_eq(read(report[0], &ch, 1), 1);
		ck_assert_int_eq(ch, 'r');
	}

	for (int r = 0; r < rounds; r++) {
		struct tclient *o = cl[r % 2], *n = cl[(r + 1) % 2];
		uint64_t cn = id[(r + 1) % 2], g;
		const char *nv = r % 2 ? "0" : "1";
		uint32_t iu, iw, ir;

		/* The owner gives up, looks, and queues again: one write. */
		iu = rq_begin(o, &p, "unregister", 1);
		tp_str(&p, "hot");
		iw = rq_begin(o, &p, "whereis", 1);
		tp_str(&p, "hot");
		ir = rq_begin(o, &p, "register", 3);
		tp_str(&p, "hot");
		tp_str(&p, r % 2 ? "1" : "0");
		tp_map(&p, 1);
		tp_str(&p, "queue");
		tp_bool(&p, true);
		rq_send(o, &p);

		check_bool(t_ok(o, iu), true);
		g = check_entry(t_ok(o, iw), "hot", cn, nv);
		ck_assert_uint_gt(g, gen);
		gen = g;
		ck_assert_uint_eq(o_uint(o_get(t_ok(o, ir), "queued")), 1);
		ck_assert_uint_eq(check_entry(expect_acquired(n, "hot", cn,
		    nv), "hot", cn, nv), g);
		ck_assert_uint_eq(check_entry(expect_event(s, sub, ev + 1,
		    "handover", &ev), "hot", cn, nv), g);
	}

	close(stop[1]);
	{
		struct pollfd pfd = { report[0], POLLIN, 0 };

		ck_assert_int_eq(poll(&pfd, 1, T_TIMEOUT_MS), 1);
		ck_assert_int_eq(read(report[0], &rep, sizeof(rep)),
		    (ssize_t)sizeof(rep));
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(rep.nils == 0, "whereis answered nil %llu times in "
	    "%llu", (unsigned long long)rep.nils,
	    (unsigned long long)rep.answers);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the watcher failed (status %d)", status);
	ck_assert_uint_gt(rep.answers, 0);
	if (getenv("T_VERBOSE") != NULL)
		fprintf(stderr, "never_nil: %llu answers, %llu switches seen\n",
		    (unsigned long long)rep.answers,
		    (unsigned long long)rep.switches);
	close(report[0]);
	expect_quiet(s);
	ck_assert_uint_eq(t_stat(s, "names"), 1);

	tp_free(&p);
	t_close(cl[0]);
	t_close(cl[1]);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* The owner is SIGKILLed: the waiter acquires, monitors fire. */
START_TEST(test_queue_owner_killed)
{
	struct tdaemon d;
	struct tclient *b, *m, *s;
	struct holder h;
	msgpack_object *x;
	uint64_t cb, ref, g0, g1, sub, seq;

	t_daemon_start(&d, NULL);
	m = t_connect(d.path);
	holder_start(&h, d.path, "lock", "child");
	ck_assert_int_eq(holder_report(&h, T_TIMEOUT_MS), 'o');
	b = t_connect(d.path);
	s = t_connect(d.path);
	cb = t_conn_id(b);
	x = t_call_ok(m, "whereis", "s", "lock");
	ck_assert_uint_eq(o_uint(o_get(x, "pid")), (uint64_t)h.pid);
	g0 = o_uint(o_get(x, "gen"));
	ck_assert_uint_eq(reg_queued(b, "lock", "b", F_QUEUE), 1);
	ref = o_uint(t_call_ok(m, "monitor", "s", "lock"));
	subscribe(s, "lock", -1, &sub, &seq);

	holder_kill(&h);
	x = t_recv(b, acquire_ms());
	ck_assert_msg(x != NULL, "the waiter did not acquire in time");
	ck_assert_uint_eq(x->via.array.size, 3);
	check_str(at(x, 1), "acquired");
	check_str(at(at(x, 2), 0), "lock");
	g1 = check_entry(at(at(x, 2), 1), "lock", cb, "b");
	ck_assert_uint_gt(g1, g0);
	expect_down(m, ref, "lock", "disconnected");
	ck_assert_uint_eq(check_entry(expect_event(s, sub, seq + 1,
	    "handover", NULL), "lock", cb, "b"), g1);
	ck_assert_uint_eq(check_entry(t_call_ok(m, "whereis", "s", "lock"),
	    "lock", cb, "b"), g1);
	check_queue(m, "lock", NULL, 0);
	expect_quiet_all(s, b, NULL);

	t_close(b);
	t_close(m);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_queue_evict)
{
	struct tdaemon d;
	struct tclient *a, *b, *m, *adm;
	uint64_t ca, cb, ref, g;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	m = t_connect(d.path);
	adm = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);

	g = reg_own(a, ca, "job", "a", 0);
	ck_assert_uint_eq(reg_queued(b, "job", "b", F_QUEUE), 1);
	ref = o_uint(t_call_ok(m, "monitor", "s", "job"));
	/* The tests run as the daemon's user: an administrator. */
	check_bool(t_call_ok(adm, "evict", "s", "job"), true);
	ck_assert_uint_gt(o_uint(o_get(expect_acquired(b, "job", cb, "b"),
	    "gen")), g);
	expect_down(m, ref, "job", "evicted");
	check_entry(t_call_ok(m, "whereis", "s", "job"), "job", cb, "b");
	/* The evicted holder is told, once, and is no longer the owner. */
	expect_lost_why(a, "job", "evicted");
	expect_quiet(a);
	t_call_err(a, "not_owner", "unregister", "s", "job");
	check_queue(m, "job", NULL, 0);

	t_close(a);
	t_close(b);
	t_close(m);
	t_close(adm);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_queue_waiters_leave)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *e, *m;
	uint64_t ca, cc, ce, g, ids[2];

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	e = t_connect(d.path);
	m = t_connect(d.path);
	ca = t_conn_id(a);
	t_conn_id(b);
	cc = t_conn_id(c);
	ce = t_conn_id(e);

	g = reg_own(a, ca, "n", "a", 0);
	ck_assert_uint_eq(reg_queued(b, "n", "b", F_QUEUE), 1);
	ck_assert_uint_eq(reg_queued(c, "n", "c", F_QUEUE), 2);
	/* Another connection's plain register: taken. */
	t_call_err(m, "taken", "register", "s", "n");

	/* A waiter whose connection goes away leaves the queue. */
	t_close(b);
	wait_queue(m, "n", &cc, 1);
	ck_assert_uint_eq(reg_queued(e, "n", "e", F_QUEUE), 2);
	ids[0] = cc;
	ids[1] = ce;
	check_queue(m, "n", ids, 2);

	/* A waiter's unregister gives up its place; it is then neither
	 * owner nor waiter.  With a gen, only while the entry has it. */
	t_call_err(c, "stale", "unregister", "su", "n", g + 1000);
	check_queue(m, "n", ids, 2);
	check_bool(t_call_ok(c, "unregister", "su", "n", g), true);
	check_queue(m, "n", &ce, 1);
	t_call_err(c, "not_owner", "unregister", "s", "n");
	check_entry(t_call_ok(m, "whereis", "s", "n"), "n", ca, "a");

	/* The owner goes: the one left waiting takes over. */
	check_bool(t_call_ok(a, "unregister", "s", "n"), true);
	expect_acquired(e, "n", ce, "e");
	expect_quiet(c);
	check_queue(m, "n", NULL, 0);
	/* c may queue again, now behind nobody, and leave again without a
	 * gen. */
	ck_assert_uint_eq(reg_queued(c, "n", "c", F_QUEUE), 1);
	check_bool(t_call_ok(c, "unregister", "s", "n"), true);
	check_queue(m, "n", NULL, 0);
	check_entry(t_call_ok(m, "whereis", "s", "n"), "n", ce, "e");
	ck_assert_uint_eq(reg_queued(c, "n", "c", F_QUEUE), 1);
	/* Its waiter leaving, the owner going: the name is free. */
	t_close(c);
	wait_queue(m, "n", NULL, 0);
	check_bool(t_call_ok(e, "unregister", "s", "n"), true);
	check_nil(t_call_ok(m, "whereis", "s", "n"));
	ck_assert_uint_eq(t_stat(m, "names"), 0);

	t_close(a);
	t_close(e);
	t_close(m);
	t_daemon_stop(&d);
}
END_TEST

/* An owner with several names others wait for goes away: each changes
 * hands; the one nobody waits for goes. */
START_TEST(test_queue_owner_closes_many)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *s;
	uint64_t ca, cb, cc, sub, seq;
	bool b1 = false, b3 = false, h1 = false, h2 = false, h3 = false;
	bool u4 = false;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);

	reg_own(a, ca, "cm.1", "a", 0);
	reg_own(a, ca, "cm.2", "a", F_QUEUE);
	reg_own(a, ca, "cm.3", "a", F_ALLOW);
	reg_own(a, ca, "cm.4", "a", 0);
	ck_assert_uint_eq(reg_queued(b, "cm.1", "b1", F_QUEUE), 1);
	ck_assert_uint_eq(reg_queued(c, "cm.2", "c2", F_QUEUE), 1);
	ck_assert_uint_eq(reg_queued(b, "cm.3", "b3", F_QUEUE), 1);
	subscribe(s, "cm.", -1, &sub, &seq);
	t_close(a);

	/* b acquires two names, in some order. */
	for (int i = 0; i < 2; i++) {
		msgpack_object *pa = t_push(b, "acquired");

		if (o_is_str(at(pa, 0), "cm.1")) {
			ck_assert(!b1);
			b1 = true;
			check_entry(at(pa, 1), "cm.1", cb, "b1");
		} else {
			ck_assert(!b3);
			b3 = true;
			check_entry(at(pa, 1), "cm.3", cb, "b3");
		}
	}
	expect_acquired(c, "cm.2", cc, "c2");
	/* Four events, consecutive, in some order across names. */
	for (int i = 0; i < 4; i++) {
		msgpack_object *pa = t_push(s, "event"), *pl;

		ck_assert_uint_eq(o_uint(at(pa, 0)), sub);
		ck_assert_uint_gt(o_uint(at(pa, 1)), seq);
		pl = at(pa, 3);
		if (o_is_str(at(pa, 2), "unregistered")) {
			ck_assert(!u4);
			u4 = true;
			check_str(at(pl, 0), "cm.4");
			check_str(at(pl, 1), "disconnected");
			continue;
		}
		check_str(at(pa, 2), "handover");
		if (o_is_str(o_get(pl, "name"), "cm.1")) {
			ck_assert(!h1);
			h1 = true;
			check_entry(pl, "cm.1", cb, "b1");
		} else if (o_is_str(o_get(pl, "name"), "cm.2")) {
			ck_assert(!h2);
			h2 = true;
			check_entry(pl, "cm.2", cc, "c2");
		} else {
			ck_assert(!h3);
			h3 = true;
			check_entry(pl, "cm.3", cb, "b3");
		}
	}
	ck_assert_uint_eq(t_stat(s, "seq"), seq + 4);
	ck_assert_uint_eq(t_stat(s, "names"), 3);
	check_nil(t_call_ok(s, "whereis", "s", "cm.4"));
	expect_quiet_all(b, c, s, NULL);

	t_close(b);
	t_close(c);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* A waiter's own flags go with it when it acquires; a waiter is not an
 * owner for update; replace with queue takes a name that allows it. */
START_TEST(test_queue_waiter_flags)
{
	struct tdaemon d;
	struct tclient *a, *w, *k;
	uint64_t ca, cw, ck;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	w = t_connect(d.path);
	k = t_connect(d.path);
	ca = t_conn_id(a);
	cw = t_conn_id(w);
	ck = t_conn_id(k);

	reg_own(a, ca, "wf", "a", 0);
	ck_assert_uint_eq(reg_queued(w, "wf", "w", F_QUEUE | F_ALLOW), 1);
	t_call_err(w, "not_owner", "update", "ss", "wf", "x");
	t_err(w, send_gen(w, "wf", "x", 999999), "stale");
	/* a did not allow replacement. */
	reg_err(k, "taken", "wf", "k", F_REPLACE);
	check_bool(t_call_ok(a, "unregister", "s", "wf"), true);
	expect_acquired(w, "wf", cw, "w");
	/* w allowed replacement when it queued: k may replace it, and with
	 * queue too k still becomes the owner (not queued). */
	reg_own(k, ck, "wf", "k", F_REPLACE | F_QUEUE);
	expect_lost(w, "wf");
	/* w registered with queue: back at the head. */
	check_queue(a, "wf", &cw, 1);
	expect_quiet_all(a, w, NULL);

	t_close(a);
	t_close(w);
	t_close(k);
	t_daemon_stop(&d);
}
END_TEST

/* Calls through the name to the old owner fail with down on hand-over. */
START_TEST(test_queue_calls_down)
{
	struct tdaemon d;
	struct tclient *a, *b, *c;
	msgpack_object *pa;
	uint64_t ca, cb, cc, call1, call2;
	uint32_t id1, id2, id3;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);

	reg_own(a, ca, "svc", "a", 0);
	ck_assert_uint_eq(reg_queued(b, "svc", "b", F_QUEUE), 1);
	id1 = t_request(c, "call", "ssu", "svc", "by-name", (uint64_t)60000);
	pa = t_push(a, "call");
	call1 = o_uint(at(pa, 0));
	check_str(at(pa, 1), "svc");
	ck_assert_uint_eq(o_uint(at(pa, 2)), cc);
	/* A call by connection id is not through the name: it survives. */
	id2 = t_request(c, "call", "usu", ca, "by-conn", (uint64_t)60000);
	pa = t_push(a, "call");
	call2 = o_uint(at(pa, 0));

	check_bool(t_call_ok(a, "unregister", "s", "svc"), true);
	expect_acquired(b, "svc", cb, "b");
	t_err(c, id1, "down");
	t_call_err(a, "not_found", "reply", "us", call1, "late");
	check_bool(t_call_ok(a, "reply", "us", call2, "ok"), true);
	check_str(t_ok(c, id2), "ok");

	/* Calls by name now reach the new owner. */
	id3 = t_request(c, "call", "ssu", "svc", "again", (uint64_t)60000);
	pa = t_push(b, "call");
	check_str(at(pa, 3), "again");
	check_bool(t_call_ok(b, "reply", "us", o_uint(at(pa, 0)), "b-ok"),
	    true);
	check_str(t_ok(c, id3), "b-ok");
	expect_quiet(a);

	t_close(a);
	t_close(b);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/*
 * The leader election of the issue: three processes queue for "leader";
 * each holder is killed in turn and the next takes over, in order, with a
 * growing gen.
 */
#define LEADERS	3

START_TEST(test_leader_election)
{
	struct tdaemon d;
	struct tclient *o, *s;
	struct holder h[LEADERS];
	char val[LEADERS][8];
	uint64_t conns[LEADERS], gen, sub, seq, ev, ref;
	msgpack_object *x;

	t_daemon_start(&d, NULL);
	o = t_connect(d.path);
	s = t_connect(d.path);
	for (int i = 0; i < LEADERS; i++) {
		snprintf(val[i], sizeof(val[i]), "node-%d", i);
		holder_start(&h[i], d.path, "leader", val[i]);
		/* One at a time, so that the queue order is known. */
		ck_assert_int_eq(holder_report(&h[i], T_TIMEOUT_MS),
		    i == 0 ? 'o' : 'q');
	}
	x = t_call_ok(o, "whereis", "s", "leader");
	conns[0] = o_uint(o_get(x, "conn"));
	gen = check_item(x, entry_keys, "leader", conns[0], val[0], h[0].pid);
	x = t_call_ok(o, "queue", "s", "leader");
	ck_assert_uint_eq(x->via.array.size, LEADERS - 1);
	for (int i = 1; i < LEADERS; i++) {
		conns[i] = o_uint(at(x, (uint32_t)i - 1));
		ck_assert_uint_gt(conns[i], conns[i - 1]);
	}
	subscribe(s, "leader", -1, &sub, &seq);
	ev = seq;

	for (int i = 0; i < LEADERS; i++) {
		ref = o_uint(t_call_ok(o, "monitor", "s", "leader"));
		holder_kill(&h[i]);
		expect_down(o, ref, "leader", "disconnected");
		if (i + 1 == LEADERS) {
			expect_unreg_event(s, sub, ev + 1, "leader",
			    "disconnected", &ev);
			break;
		}
		ck_assert_msg(holder_report(&h[i + 1], acquire_ms()) == 'a',
		    "node %d did not acquire", i + 1);
		x = expect_event(s, sub, ev + 1, "handover", &ev);
		ck_assert_uint_gt(check_item(x, entry_keys, "leader",
		    conns[i + 1], val[i + 1], h[i + 1].pid), gen);
		gen = o_uint(o_get(x, "gen"));
		x = t_call_ok(o, "whereis", "s", "leader");
		ck_assert_uint_eq(check_item(x, entry_keys, "leader",
		    conns[i + 1], val[i + 1], h[i + 1].pid), gen);
		check_queue(o, "leader", conns + i + 2,
		    (uint32_t)(LEADERS - i - 2));
	}
	check_nil(t_call_ok(o, "whereis", "s", "leader"));
	expect_quiet(s);

	t_close(o);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* replacement (§4.21)                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_replace_requeues)
{
	struct tdaemon d;
	struct tclient *h, *g, *w, *k, *m, *s, *c;
	struct tpack e;
	uint64_t ch, cg, cw, ck, cc, gh, gg, gh2, ref, sub, seq, ev, ids[2];
	msgpack_object *pa;
	uint32_t idc;

	t_daemon_start(&d, NULL);
	h = t_connect(d.path);
	g = t_connect(d.path);
	w = t_connect(d.path);
	k = t_connect(d.path);
	m = t_connect(d.path);
	s = t_connect(d.path);
	c = t_connect(d.path);
	ch = t_conn_id(h);
	cg = t_conn_id(g);
	cw = t_conn_id(w);
	ck = t_conn_id(k);
	cc = t_conn_id(c);
	tp_init(&e);

	gh = reg_own(h, ch, "primary", "h", F_ALLOW | F_QUEUE);
	ck_assert_uint_eq(reg_queued(w, "primary", "w", F_QUEUE), 1);
	ref = o_uint(t_call_ok(m, "monitor", "s", "primary"));
	subscribe(s, "primary", -1, &sub, &seq);
	idc = t_request(c, "call", "ssu", "primary", "q", (uint64_t)60000);
	pa = t_push(h, "call");
	check_str(at(pa, 1), "primary");
	ck_assert_uint_eq(o_uint(at(pa, 2)), cc);
	check_str(at(pa, 3), "q");

	/* Replaced: the caller owns it at once with a new gen. */
	gg = reg_own(g, cg, "primary", "g", F_REPLACE);
	ck_assert_uint_gt(gg, gh);
	keep(&e, &g->res.data.via.array.ptr[3]);
	expect_lost(h, "primary");
	expect_down(m, ref, "primary", "replaced");
	t_err(c, idc, "down");
	ck_assert(obj_eq(expect_event(s, sub, seq + 1, "handover", &ev), &e));
	ck_assert(obj_eq(t_call_ok(m, "whereis", "s", "primary"), &e));
	/* Queued, the replaced owner goes to the head of the queue. */
	ids[0] = ch;
	ids[1] = cw;
	check_queue(m, "primary", ids, 2);
	ck_assert_uint_eq(t_stat(m, "names"), 1);
	/* Waiting now, h is fenced too: its old gen acts on nothing. */
	t_call_err(h, "stale", "unregister", "su", "primary", gh);
	check_queue(m, "primary", ids, 2);
	/* The new owner did not allow replacement (flags are kept). */
	reg_err(k, "taken", "primary", "k", F_REPLACE);
	reg_err(h, "taken", "primary", "h", F_REPLACE);

	/* The new owner unregisters: the replaced owner comes back, with
	 * its value and its flags. */
	check_bool(t_call_ok(g, "unregister", "s", "primary"), true);
	gh2 = check_entry(expect_acquired(h, "primary", ch, "h"), "primary",
	    ch, "h");
	ck_assert_uint_gt(gh2, gg);
	check_entry(expect_event(s, sub, ev + 1, "handover", &ev), "primary",
	    ch, "h");
	check_queue(m, "primary", &cw, 1);
	ck_assert_uint_gt(reg_own(k, ck, "primary", "k", F_REPLACE), gh2);
	expect_lost(h, "primary");
	check_entry(expect_event(s, sub, ev + 1, "handover", &ev), "primary",
	    ck, "k");
	ids[0] = ch;
	ids[1] = cw;
	check_queue(m, "primary", ids, 2);
	expect_quiet_all(w, g, s, NULL);

	tp_free(&e);
	t_close(h);
	t_close(g);
	t_close(w);
	t_close(k);
	t_close(m);
	t_close(s);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_replace_without_queue)
{
	struct tdaemon d;
	struct tclient *h, *g, *m, *s;
	uint64_t ch, cg, gh, ref, sub, seq, ev;

	t_daemon_start(&d, NULL);
	h = t_connect(d.path);
	g = t_connect(d.path);
	m = t_connect(d.path);
	s = t_connect(d.path);
	ch = t_conn_id(h);
	cg = t_conn_id(g);

	gh = reg_own(h, ch, "p2", "h", F_ALLOW);
	ref = o_uint(t_call_ok(m, "monitor", "s", "p2"));
	subscribe(s, "p2", -1, &sub, &seq);
	ck_assert_uint_gt(reg_own(g, cg, "p2", "g", F_REPLACE), gh);
	expect_lost(h, "p2");
	expect_down(m, ref, "p2", "replaced");
	check_entry(expect_event(s, sub, seq + 1, "handover", &ev), "p2", cg,
	    "g");
	check_entry(t_call_ok(m, "whereis", "s", "p2"), "p2", cg, "g");
	/* It simply lost the name: not waiting, not owning. */
	check_queue(m, "p2", NULL, 0);
	t_call_err(h, "not_owner", "unregister", "s", "p2");
	ck_assert_uint_eq(t_stat(m, "names"), 1);
	check_bool(t_call_ok(g, "unregister", "s", "p2"), true);
	expect_unreg_event(s, sub, ev + 1, "p2", "unregistered", &ev);
	check_nil(t_call_ok(m, "whereis", "s", "p2"));
	/* replace on a free name registers it. */
	reg_own(h, ch, "fresh", "h", F_REPLACE);
	expect_quiet_all(h, s, NULL);

	t_close(h);
	t_close(g);
	t_close(m);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_replace_not_allowed)
{
	struct tdaemon d;
	struct tclient *x, *g, *s;
	uint64_t cx, cg, gx, sub, seq;

	t_daemon_start(&d, NULL);
	x = t_connect(d.path);
	g = t_connect(d.path);
	s = t_connect(d.path);
	cx = t_conn_id(x);
	cg = t_conn_id(g);

	gx = reg_own(x, cx, "p3", "x", 0);
	subscribe(s, "p3", -1, &sub, &seq);
	reg_err(g, "taken", "p3", "g", F_REPLACE);
	reg_err(g, "taken", "p3", "g", F_REPLACE | F_ALLOW);
	ck_assert_uint_eq(check_entry(t_call_ok(s, "whereis", "s", "p3"),
	    "p3", cx, "x"), gx);
	/* With queue too: queued. */
	ck_assert_uint_eq(reg_queued(g, "p3", "g", F_REPLACE | F_QUEUE), 1);
	check_queue(s, "p3", &cg, 1);
	ck_assert_uint_eq(t_stat(s, "seq"), seq);
	expect_quiet_all(x, s, NULL);
	/* A plain owner (allow_replacement false) hands over as usual. */
	check_bool(t_call_ok(x, "unregister", "s", "p3"), true);
	expect_acquired(g, "p3", cg, "g");
	check_entry(expect_event(s, sub, seq + 1, "handover", NULL), "p3", cg,
	    "g");

	t_close(x);
	t_close(g);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* fencing (§4.3, §4.5, §4.17, §4.21)                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_fencing)
{
	struct tdaemon d;
	struct tclient *a, *b;
	msgpack_object *pa;
	uint64_t ca, cb, g1, g2;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);

	g1 = reg_own(a, ca, "f", "v1", 0);
	check_bool(t_call_ok(a, "unregister", "su", "f", g1), true);
	g2 = reg_own(a, ca, "f", "v2", 0);
	ck_assert_uint_gt(g2, g1);

	/* Stale with an old gen, nothing done. */
	t_call_err(a, "stale", "unregister", "su", "f", g1);
	t_call_err(a, "stale", "unregister", "su", "f", g2 + 1000);
	t_call_err(a, "stale", "update", "ssu", "f", "x", g1);
	t_err(b, send_gen(b, "f", "hi", g1), "stale");
	t_err(b, send_gen(b, "f", "hi", g2 + 1000), "stale");
	check_entry(t_call_ok(b, "whereis", "s", "f"), "f", ca, "v2");
	expect_quiet(a);

	/* The current gen works; update keeps it. */
	ck_assert_uint_eq(check_entry(t_call_ok(a, "update", "ssu", "f", "v3",
	    g2), "f", ca, "v3"), g2);
	check_bool(t_ok(b, send_gen(b, "f", "hi", g2)), true);
	pa = t_push(a, "message");
	check_str(at(pa, 0), "f");
	ck_assert_uint_eq(o_uint(at(pa, 1)), cb);
	check_str(at(pa, 2), "hi");
	check_bool(t_call_ok(a, "unregister", "su", "f", g2), true);
	check_nil(t_call_ok(b, "whereis", "s", "f"));

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_fencing_errors)
{
	struct tdaemon d;
	struct tclient *a, *b, *w;
	msgpack_object *pa;
	uint64_t ca, cb, cw, g, g2;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	w = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cw = t_conn_id(w);
	g = reg_own(a, ca, "f", "a", 0);

	/* not_found > not_owner > stale. */
	t_call_err(b, "not_found", "unregister", "su", "nope", g);
	t_call_err(b, "not_found", "update", "ssu", "nope", "x", g);
	t_err(b, send_gen(b, "nope", "x", g), "not_found");
	t_call_err(b, "not_owner", "unregister", "su", "f", g + 1000);
	t_call_err(b, "not_owner", "unregister", "su", "f", g);
	t_call_err(b, "not_owner", "update", "ssu", "f", "x", g + 1000);
	t_call_err(b, "not_owner", "update", "ssu", "f", "x", g);
	t_call_err(a, "stale", "update", "ssu", "f", "x", g + 1000);

	/* send with opts to a connection id: bad_request (not even a send to
	 * a connection that exists, with its right gen of nothing). */
	t_call_err(b, "bad_request", "send", "us{su}", ca, "x", "gen", g);
	/* Other malformed opts. */
	t_call_err(b, "bad_request", "send", "ss{ss}", "f", "x", "gen", "1");
	t_call_err(b, "bad_request", "send", "ss{su}", "f", "x", "bogus", g);
	t_call_err(b, "bad_request", "send", "ss{si}", "f", "x", "gen",
	    (int64_t)-1);
	t_call_err(b, "bad_request", "send", "ssu", "f", "x", g);
	t_call_err(a, "bad_request", "unregister", "ss", "f", "1");
	t_call_err(a, "bad_request", "unregister", "si", "f", (int64_t)-1);
	t_call_err(a, "bad_request", "update", "sss", "f", "x", "1");
	expect_quiet(a);
	check_entry(t_call_ok(b, "whereis", "s", "f"), "f", ca, "a");

	/* After a hand-over: the old owner is not the owner, the new one is
	 * stale with the old gen, a send meant for the old one is stale. */
	ck_assert_uint_eq(reg_queued(w, "f", "w", F_QUEUE), 1);
	check_bool(t_call_ok(a, "unregister", "su", "f", g), true);
	g2 = check_entry(expect_acquired(w, "f", cw, "w"), "f", cw, "w");
	t_call_err(a, "not_owner", "unregister", "su", "f", g);
	t_call_err(a, "not_owner", "update", "ssu", "f", "x", g);
	t_call_err(w, "stale", "unregister", "su", "f", g);
	t_call_err(w, "stale", "update", "ssu", "f", "x", g);
	t_err(b, send_gen(b, "f", "for-a", g), "stale");
	expect_quiet(w);
	check_bool(t_ok(b, send_gen(b, "f", "for-w", g2)), true);
	pa = t_push(w, "message");
	check_str(at(pa, 0), "f");
	ck_assert_uint_eq(o_uint(at(pa, 1)), cb);
	check_str(at(pa, 2), "for-w");
	/* The new gen is the new owner's: update keeps it. */
	ck_assert_uint_eq(check_entry(t_call_ok(w, "update", "ssu", "f", "w2",
	    g2), "f", cw, "w2"), g2);

	t_close(a);
	t_close(b);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* §3: register (each name of a register_many), join and every change of
 * owner take the next number of one counter that starts at 1. */
START_TEST(test_gen_counter)
{
	struct tdaemon d;
	struct tclient *a, *w, *x, *y;
	const char *bc[] = { "b", "c" };
	const char *ab[] = { "z", "a" };
	uint64_t ca, cw, cx, cy;
	msgpack_object *r;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	w = t_connect(d.path);
	x = t_connect(d.path);
	y = t_connect(d.path);
	ca = t_conn_id(a);
	cw = t_conn_id(w);
	cx = t_conn_id(x);
	cy = t_conn_id(y);

	ck_assert_uint_eq(reg_own(a, ca, "a", NULL, 0), 1);
	ck_assert_uint_eq(check_member(t_call_ok(a, "join", "s", "grp"),
	    "grp", ca, NULL), 2);
	r = t_ok(a, reg_many_send(a, bc, NULL, 2));
	ck_assert_uint_eq(check_entry(at(r, 0), "b", ca, NULL), 3);
	ck_assert_uint_eq(check_entry(at(r, 1), "c", ca, NULL), 4);
	/* Refusals take no number. */
	t_err(w, reg_many_send(w, ab, NULL, 2), "taken");
	reg_err(w, "taken", "a", NULL, 0);
	t_call_err(a, "taken", "join", "s", "grp");
	ck_assert_uint_eq(check_entry(t_call_ok(a, "update", "ss", "a", "v"),
	    "a", ca, "v"), 1);
	ck_assert_uint_eq(reg_own(a, ca, "d", NULL, 0), 5);
	/* Changes of owner: hand-over, replacement. */
	ck_assert_uint_eq(reg_queued(w, "a", "w", F_QUEUE), 1);
	check_bool(t_call_ok(a, "unregister", "s", "a"), true);
	ck_assert_uint_eq(check_entry(expect_acquired(w, "a", cw, "w"), "a",
	    cw, "w"), 6);
	ck_assert_uint_eq(reg_own(x, cx, "r", NULL, F_ALLOW), 7);
	ck_assert_uint_eq(reg_own(y, cy, "r", NULL, F_REPLACE), 8);
	expect_lost(x, "r");
	ck_assert_uint_eq(check_member(t_call_ok(y, "join", "s", "grp"),
	    "grp", cy, NULL), 9);

	t_close(a);
	t_close(w);
	t_close(x);
	t_close(y);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* subscribe (§4.22)                                                   */
/* ------------------------------------------------------------------ */

START_TEST(test_subscribe_snapshot)
{
	struct tdaemon d;
	struct tclient *a, *s;
	struct tpack p;
	uint64_t ca, sub, sub2, seq, seq2;
	msgpack_object *e;
	char longp[300];
	static const char *const order[] = { "svc.", "svc.a", "svc.b",
	    "svc.b\x01", "svc.c" };

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	tp_init(&p);

	t_call_ok(a, "register", "ss", "svc.c", "c");
	t_call_ok(a, "register", "ss", "svc.a", "a");
	t_call_ok(a, "register", "s", "svc.b\x01");
	t_call_ok(a, "register", "ss", "svc.b", "b");
	t_call_ok(a, "register", "su", "svc.", (uint64_t)1);
	t_call_ok(a, "register", "s", "svc");
	t_call_ok(a, "register", "s", "svd.a");
	t_call_ok(a, "join", "ss", "svc.group", "m");

	/* Name order, bytewise; the seq is the last event's. */
	e = subscribe(s, "svc.", -1, &sub, &seq);
	ck_assert_uint_eq(e->via.array.size, 5);
	for (uint32_t i = 0; i < 5; i++) {
		check_keys(at(e, i), entry_keys);
		check_str(o_get(at(e, i), "name"), order[i]);
		ck_assert_uint_eq(o_uint(o_get(at(e, i), "conn")), ca);
	}
	ck_assert_uint_eq(o_uint(o_get(at(e, 0), "value")), 1);
	keep(&p, at(e, 1));
	ck_assert(obj_eq(t_call_ok(s, "whereis", "s", "svc.a"), &p));
	ck_assert_uint_eq(seq, t_stat(s, "seq"));
	ck_assert_uint_eq(seq, 8);

	/* Another subscription of the same connection gets another id. */
	e = subscribe(s, "", -1, &sub2, &seq2);
	ck_assert_uint_ne(sub2, sub);
	ck_assert_uint_eq(seq2, seq);
	ck_assert_uint_eq(e->via.array.size, 7);
	/* A prefix longer than 255 bytes matches nothing, and gets no
	 * events. */
	memset(longp, 's', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	e = subscribe(s, longp, 1, &sub2, &seq2);
	ck_assert_uint_eq(e->via.array.size, 0);
	/* Empty prefix, groups: names then members. */
	ck_assert_uint_eq(subscribe(s, "", 1, &sub2, &seq2)->via.array.size,
	    8);
	ck_assert_uint_eq(t_stat(s, "subscriptions"), 4);

	/* Bad params. */
	t_call_err(s, "bad_request", "subscribe", "");
	t_call_err(s, "bad_request", "subscribe", "u", (uint64_t)1);
	t_call_err(s, "bad_request", "subscribe", "ss", "svc.", "x");
	t_call_err(s, "bad_request", "subscribe", "sn", "svc.");
	t_call_err(s, "bad_request", "subscribe", "s{st}", "svc.", "bogus");
	t_call_err(s, "bad_request", "subscribe", "s{su}", "svc.", "groups",
	    (uint64_t)1);
	t_call_err(s, "bad_request", "subscribe", "s{si}", "svc.", "since",
	    (int64_t)-1);
	t_call_err(s, "bad_request", "subscribe", "s{ss}", "svc.", "since",
	    "1");
	t_call_err(s, "bad_request", "subscribe", "s{}u", "svc.", (uint64_t)1);
	t_call_err(s, "bad_request", "subscribe", "sss", "svc.", "x", "y");
	ck_assert_uint_eq(t_stat(s, "subscriptions"), 4);
	/* Nothing happened: no event. */
	expect_quiet(s);

	tp_free(&p);
	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_subscribe_events)
{
	struct tdaemon d;
	struct tclient *a, *o, *s;
	struct tpack p;
	uint64_t ca, co, sub, seq, ev, g;
	msgpack_object *x;
	uint32_t id;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	o = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	co = t_conn_id(o);
	tp_init(&p);

	t_call_ok(a, "register", "s", "ev.a");
	subscribe(s, "ev.", -1, &sub, &seq);

	/* registered: the entry, as register answered it. */
	keep(&p, t_call_ok(a, "register", "ss", "ev.c", "x"));
	x = expect_event(s, sub, seq + 1, "registered", &ev);
	ck_assert(obj_eq(x, &p));
	g = check_entry(x, "ev.c", ca, "x");
	/* updated: the entry with its new value, same gen. */
	keep(&p, t_call_ok(a, "update", "ss", "ev.c", "y"));
	x = expect_event(s, sub, ev + 1, "updated", &ev);
	ck_assert(obj_eq(x, &p));
	ck_assert_uint_eq(check_entry(x, "ev.c", ca, "y"), g);
	/* Events outside the prefix: none, but they take a seq. */
	t_call_ok(a, "register", "s", "zz");
	t_call_ok(a, "register", "s", "ev");
	/* unregistered: [name, reason]. */
	check_bool(t_call_ok(a, "unregister", "s", "ev.c"), true);
	expect_unreg_event(s, sub, ev + 3, "ev.c", "unregistered", &ev);
	/* a evicts its own name: it hears lost before the response. */
	id = t_request(a, "evict", "s", "ev.a");
	expect_lost_why(a, "ev.a", "evicted");
	check_bool(t_ok(a, id), true);
	expect_unreg_event(s, sub, ev + 1, "ev.a", "evicted", &ev);
	t_call_ok(o, "register", "s", "ev.o");
	check_entry(expect_event(s, sub, ev + 1, "registered", &ev), "ev.o",
	    co, NULL);
	t_close(o);
	expect_unreg_event(s, sub, ev + 1, "ev.o", "disconnected", &ev);
	ck_assert_uint_eq(t_stat(s, "seq"), ev);
	/* Groups without "groups": nothing. */
	t_call_ok(a, "join", "s", "ev.g");
	check_bool(t_call_ok(a, "leave", "s", "ev.g"), true);
	ck_assert_uint_eq(t_stat(s, "seq"), ev + 2);
	expect_quiet(s);

	tp_free(&p);
	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_subscribe_groups)
{
	struct tdaemon d;
	struct tclient *a, *b, *c, *s1, *s2;
	struct tpack p;
	uint64_t ca, cb, cc, sub1, sub2, seq1, seq2, ev, ev2;
	msgpack_object *e;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	c = t_connect(d.path);
	s1 = t_connect(d.path);
	s2 = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	cc = t_conn_id(c);
	tp_init(&p);

	t_call_ok(a, "join", "ss", "room.1", "a");
	t_call_ok(b, "join", "ss", "room.1", "b");
	t_call_ok(b, "join", "ss", "room.0", "b0");
	t_call_ok(a, "join", "s", "lobby");
	t_call_ok(a, "register", "ss", "room.x", "n");

	/* Names first, then the groups in name order, members in join
	 * order. */
	e = subscribe(s1, "room.", 1, &sub1, &seq1);
	ck_assert_uint_eq(e->via.array.size, 4);
	check_entry(at(e, 0), "room.x", ca, "n");
	check_member(at(e, 1), "room.0", cb, "b0");
	check_member(at(e, 2), "room.1", ca, "a");
	check_member(at(e, 3), "room.1", cb, "b");
	e = subscribe(s2, "room.", 0, &sub2, &seq2);
	ck_assert_uint_eq(e->via.array.size, 1);
	check_entry(at(e, 0), "room.x", ca, "n");
	ck_assert_uint_eq(seq1, seq2);

	/* joined, left (leave and disconnect): with groups only. */
	keep(&p, t_call_ok(c, "join", "ss", "room.2", "c"));
	e = expect_event(s1, sub1, seq1 + 1, "joined", &ev);
	ck_assert(obj_eq(e, &p));
	check_member(e, "room.2", cc, "c");
	check_bool(t_call_ok(b, "leave", "s", "room.1"), true);
	check_member(expect_event(s1, sub1, ev + 1, "left", &ev), "room.1",
	    cb, "b");
	t_call_ok(a, "join", "s", "other");
	t_close(c);
	check_member(expect_event(s1, sub1, ev + 2, "left", &ev), "room.2",
	    cc, "c");
	/* Names reach both, with the same seq. */
	t_call_ok(a, "register", "s", "room.y");
	check_entry(expect_event(s1, sub1, ev + 1, "registered", &ev),
	    "room.y", ca, NULL);
	check_entry(expect_event(s2, sub2, ev, "registered", &ev2), "room.y",
	    ca, NULL);
	expect_quiet_all(s1, s2, NULL);

	tp_free(&p);
	t_close(a);
	t_close(b);
	t_close(s1);
	t_close(s2);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A connection with several names and a membership under the prefix
 * closes: a subscription gets each name's "unregistered" (disconnected)
 * once, one with groups the "left" too, each in rising seq.
 */
START_TEST(test_subscribe_owner_closes)
{
	struct tdaemon d;
	struct tclient *a, *s;
	const char *names[] = { "oc.a", "oc.m1", "oc.m2" };
	uint64_t ca, sub[2], last[2];
	int seen[2][4] = { { 0 } };

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	for (int i = 0; i < 3; i++)
		t_call_ok(a, "register", "s", names[i]);
	t_call_ok(a, "register", "s", "other");
	t_call_ok(a, "join", "s", "oc.g");
	t_call_ok(a, "join", "s", "zz.g");
	subscribe(s, "oc.", -1, &sub[0], &last[0]);
	subscribe(s, "oc.", 1, &sub[1], &last[1]);
	t_close(a);

	/* Three for the first, four for the second, interleaved somehow. */
	for (int i = 0; i < 7; i++) {
		msgpack_object *pa = t_push(s, "event"), *pl;
		int w = o_uint(at(pa, 0)) == sub[0] ? 0 : 1, k;

		ck_assert_uint_eq(o_uint(at(pa, 0)), sub[w]);
		ck_assert_uint_gt(o_uint(at(pa, 1)), last[w]);
		last[w] = o_uint(at(pa, 1));
		pl = at(pa, 3);
		if (o_is_str(at(pa, 2), "left")) {
			check_member(pl, "oc.g", ca, NULL);
			seen[w][3]++;
			continue;
		}
		check_str(at(pa, 2), "unregistered");
		ck_assert_uint_eq(pl->via.array.size, 2);
		for (k = 0; k < 3 && !o_is_str(at(pl, 0), names[k]); k++)
			;
		ck_assert_msg(k < 3, "an event for another name");
		check_str(at(pl, 1), "disconnected");
		seen[w][k]++;
	}
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(seen[0][k], 1);
		ck_assert_int_eq(seen[1][k], 1);
	}
	ck_assert_int_eq(seen[0][3], 0);
	ck_assert_int_eq(seen[1][3], 1);
	expect_quiet(s);

	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_subscribe_register_many)
{
	struct tdaemon d;
	struct tclient *a, *b, *s;
	const char *names[] = { "m.a", "m.b", "m.x", "m.c" };
	const char *vals[] = { "va", NULL, NULL, "vc" };
	const char *dup[] = { "m.d", "m.e", "m.d" };
	const char *good[] = { "m.b", "m.a", "m.c" };
	const char *mixed[] = { "m.y", "zz", "m.z" };
	struct tpack p[3];
	uint64_t ca, cb, sub, seq, ev;
	msgpack_object *r;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	cb = t_conn_id(b);
	for (int i = 0; i < 3; i++)
		tp_init(&p[i]);

	subscribe(s, "m.", -1, &sub, &seq);
	t_call_ok(a, "register", "s", "m.x");
	check_entry(expect_event(s, sub, seq + 1, "registered", &ev), "m.x",
	    ca, NULL);
	/* Failing batches: no event, no seq. */
	t_err(b, reg_many_send(b, names, vals, 4), "taken");
	t_err(b, reg_many_send(b, dup, NULL, 3), "bad_request");
	ck_assert_uint_eq(t_stat(b, "seq"), ev);
	check_nil(t_call_ok(b, "whereis", "s", "m.a"));
	check_nil(t_call_ok(b, "whereis", "s", "m.d"));
	expect_quiet(s);
	/* An empty batch registers nothing: [], no event. */
	ck_assert_uint_eq(t_ok(b, reg_many_send(b, NULL, NULL, 0))->
	    via.array.size, 0);
	ck_assert_uint_eq(t_stat(b, "seq"), ev);
	/* A good batch: one event per name, in array order. */
	r = t_ok(b, reg_many_send(b, good, vals, 3));
	ck_assert_uint_eq(r->via.array.size, 3);
	for (uint32_t i = 0; i < 3; i++)
		keep(&p[i], at(r, i));
	for (uint32_t i = 0; i < 3; i++) {
		msgpack_object *x = expect_event(s, sub, ev + 1, "registered",
		    &ev);

		ck_assert(obj_eq(x, &p[i]));
		check_entry(x, good[i], cb, vals[i]);
	}
	ck_assert_uint_eq(t_stat(b, "seq"), ev);
	expect_quiet(s);
	/* A name outside the prefix takes its seq too. */
	r = t_ok(b, reg_many_send(b, mixed, NULL, 3));
	ck_assert_uint_eq(r->via.array.size, 3);
	check_entry(expect_event(s, sub, ev + 1, "registered", &ev), "m.y",
	    cb, NULL);
	check_entry(expect_event(s, sub, ev + 2, "registered", &ev), "m.z",
	    cb, NULL);
	ck_assert_uint_eq(t_stat(b, "seq"), ev);
	expect_quiet(s);

	for (int i = 0; i < 3; i++)
		tp_free(&p[i]);
	t_close(a);
	t_close(b);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_subscribe_resume)
{
	struct tdaemon d;
	struct tclient *a, *s;
	struct tpack p[4];
	uint64_t ca, sub, sub2, seq, s0, cur, ev, want[4];
	msgpack_object *x;
	uint32_t id;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);
	for (int i = 0; i < 4; i++)
		tp_init(&p[i]);

	t_call_ok(a, "register", "s", "r.0");
	subscribe(s, "r.", -1, &sub, &s0);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), true);

	/* Missed while away: four events under the prefix, one outside. */
	keep(&p[0], t_call_ok(a, "register", "ss", "r.1", "one"));
	keep(&p[1], t_call_ok(a, "update", "ss", "r.1", "uno"));
	t_call_ok(a, "register", "s", "x.1");
	check_bool(t_call_ok(a, "unregister", "s", "r.1"), true);
	keep(&p[3], t_call_ok(a, "register", "s", "r.2"));
	want[0] = s0 + 1;
	want[1] = s0 + 2;
	want[2] = s0 + 4;
	want[3] = s0 + 5;
	cur = t_stat(a, "seq");
	ck_assert_uint_eq(cur, s0 + 5);
	expect_quiet(s);

	/* The response first, then exactly the missed events, then live. */
	id = sub_send(s, "r.", -1, &s0);
	{
		static const char *const keys[] = { "sub", "seq", "gap", NULL };

		x = t_ok(s, id);
		check_keys(x, keys);
		check_bool(o_get(x, "gap"), false);
		ck_assert_uint_eq(o_uint(o_get(x, "seq")), cur);
		sub2 = o_uint(o_get(x, "sub"));
	}
	ck_assert(obj_eq(expect_event(s, sub2, want[0], "registered", NULL),
	    &p[0]));
	ck_assert(obj_eq(expect_event(s, sub2, want[1], "updated", NULL),
	    &p[1]));
	expect_unreg_event(s, sub2, want[2], "r.1", "unregistered", NULL);
	ck_assert(obj_eq(expect_event(s, sub2, want[3], "registered", NULL),
	    &p[3]));
	expect_quiet(s);
	t_call_ok(a, "register", "s", "r.3");
	check_entry(expect_event(s, sub2, cur + 1, "registered", &ev), "r.3",
	    ca, NULL);
	expect_quiet(s);

	/* since == seq: nothing to replay. */
	resume(s, "r.", -1, ev, &sub, &seq);
	ck_assert_uint_eq(seq, ev);
	expect_quiet(s);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), true);
	/* since 0 with all of history held: everything under the prefix. */
	resume(s, "r.", -1, 0, &sub, &seq);
	check_entry(expect_event(s, sub, 1, "registered", NULL), "r.0", ca,
	    NULL);
	for (uint32_t i = 0; i < 4; i++)
		expect_event(s, sub, want[i], i == 2 ? "unregistered" :
		    i == 1 ? "updated" : "registered", NULL);
	expect_event(s, sub, cur + 1, "registered", NULL);
	expect_quiet(s);
	/* since later than the last event. */
	{
		uint64_t future = ev + 1;

		t_err(s, sub_send(s, "r.", -1, &future), "bad_request");
		future = ev + 1000;
		t_err(s, sub_send(s, "r.", 1, &future), "bad_request");
	}
	/* Both live subscriptions see the next event (sub2, sub). */
	t_call_ok(a, "register", "s", "r.4");
	{
		bool got2 = false, got = false;

		for (int i = 0; i < 2; i++) {
			msgpack_object *pa = t_push(s, "event");
			uint64_t which = o_uint(at(pa, 0));

			ck_assert_uint_eq(o_uint(at(pa, 1)), ev + 1);
			if (which == sub2) {
				ck_assert(!got2);
				got2 = true;
			} else {
				ck_assert_uint_eq(which, sub);
				ck_assert(!got);
				got = true;
			}
		}
	}
	expect_quiet(s);

	for (int i = 0; i < 4; i++)
		tp_free(&p[i]);
	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* A since older than the history: gap true and a fresh snapshot. */
START_TEST(test_subscribe_gap)
{
	struct tdaemon d;
	struct tclient *a, *s;
	static const char *const keys[] = { "sub", "seq", "gap", "entries",
	    NULL };
	char name[16];
	uint64_t ca, sub, seq, since;
	msgpack_object *x, *e;

	t_daemon_start(&d, "--history", "5", NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);

	/* Ten events: 1-6 register h.0-h.5, 7-10 unregister h.0-h.3. */
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "h.%d", i);
		t_call_ok(a, "register", "s", name);
	}
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "h.%d", i);
		check_bool(t_call_ok(a, "unregister", "s", name), true);
	}
	ck_assert_uint_eq(t_stat(a, "seq"), 10);

	/* The history holds 6-10: since 5 resumes. */
	resume(s, "h.", -1, 5, &sub, &seq);
	ck_assert_uint_eq(seq, 10);
	check_entry(expect_event(s, sub, 6, "registered", NULL), "h.5", ca,
	    NULL);
	for (uint64_t i = 7; i <= 10; i++) {
		snprintf(name, sizeof(name), "h.%d", (int)(i - 7));
		expect_unreg_event(s, sub, i, name, "unregistered", NULL);
	}
	expect_quiet(s);

	/* since 4 and since 1: gap, a fresh snapshot, no replay. */
	for (int i = 0; i < 2; i++) {
		since = i == 0 ? 4 : 1;
		x = t_ok(s, sub_send(s, "h.", -1, &since));
		check_keys(x, keys);
		check_bool(o_get(x, "gap"), true);
		ck_assert_uint_eq(o_uint(o_get(x, "seq")), 10);
		ck_assert_uint_ne(o_uint(o_get(x, "sub")), sub);
		e = o_get(x, "entries");
		ck_assert_uint_eq(e->via.array.size, 2);
		check_entry(at(e, 0), "h.4", ca, NULL);
		check_entry(at(e, 1), "h.5", ca, NULL);
		expect_quiet(s);
	}
	/* 0 too, once event 1 is gone. */
	since = 0;
	check_bool(o_get(t_ok(s, sub_send(s, "h.", -1, &since)), "gap"),
	    true);
	expect_quiet(s);

	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_unsubscribe)
{
	struct tdaemon d;
	struct tclient *a, *b, *s;
	uint64_t sub, sub2, seq, seq2;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	s = t_connect(d.path);

	subscribe(s, "u.", -1, &sub, &seq);
	subscribe(s, "u.", -1, &sub2, &seq2);
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 2);
	/* Refs are per connection: b cannot end s's subscription. */
	check_bool(t_call_ok(b, "unsubscribe", "u", sub), false);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), true);
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 1);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), false);
	check_bool(t_call_ok(s, "unsubscribe", "u", (uint64_t)999), false);
	t_call_err(s, "bad_request", "unsubscribe", "");
	t_call_err(s, "bad_request", "unsubscribe", "s", "1");
	t_call_err(s, "bad_request", "unsubscribe", "i", (int64_t)-1);
	t_call_err(s, "bad_request", "unsubscribe", "uu", sub2, sub2);
	/* Only the live one gets the event. */
	t_call_ok(a, "register", "s", "u.1");
	expect_event(s, sub2, seq + 1, "registered", NULL);
	expect_quiet(s);
	/* No event for it follows the response, even pipelined. */
	{
		struct tpack p;
		uint32_t iu;

		tp_init(&p);
		iu = rq_begin(s, &p, "unsubscribe", 1);
		tp_uint(&p, sub2);
		rq_send(s, &p);
		check_bool(t_ok(s, iu), true);
		tp_free(&p);
	}
	t_call_ok(a, "register", "s", "u.2");
	check_bool(t_call_ok(a, "unregister", "s", "u.1"), true);
	expect_quiet(s);
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 0);
	/* Closing a connection ends its subscriptions. */
	subscribe(b, "", -1, &sub, &seq);
	subscribe(b, "u.", 1, &sub, &seq);
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 2);
	t_close(b);
	t_wait_stat(a, "subscriptions", 0);

	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/*
 * Overflow: a subscriber that does not read fills its socket and its
 * 4 KiB bound; its subscription ends with [2, "overflow", [sub, seq]]
 * after every event up to seq, and resuming from seq replays the rest.
 */
#define OV_MAX		20000
#define OV_MISSED	5
#define OV_VALUE	300

START_TEST(test_subscribe_overflow)
{
	struct tdaemon d;
	struct tclient *g, *s;
	char name[32], value[OV_VALUE + 1];
	uint64_t cg, sub, sub2, s0, seq, oseq, last, got = 0, n;
	uint32_t idw;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	g = t_connect(d.path);
	s = t_connect(d.path);
	cg = t_conn_id(g);
	memset(value, 'v', OV_VALUE);
	value[OV_VALUE] = '\0';

	subscribe(s, "ov.", -1, &sub, &s0);
	for (n = 0; n < OV_MAX; n++) {
		snprintf(name, sizeof(name), "ov.%06llu",
		    (unsigned long long)n);
		t_call_ok(g, "register", "ss", name, value);
		if (t_stat(g, "subscriptions") == 0)
			break;
	}
	ck_assert_msg(n < OV_MAX, "the subscription never overflowed");
	n++;
	/* Events after the overflow, which the subscriber misses. */
	for (int i = 0; i < OV_MISSED; i++) {
		snprintf(name, sizeof(name), "ov.z%d", i);
		t_call_ok(g, "register", "s", name);
	}
	last = t_stat(g, "seq");
	ck_assert_uint_eq(last, s0 + n + OV_MISSED);
	/* The connection is kept: a request sent now is answered after the
	 * backlog. */
	idw = t_request(s, "whereis", "s", "ov.000000");

	/* The backlog: events in order up to the overflow notice. */
	for (;;) {
		msgpack_object *x = t_recv(s, -1), *pa;

		ck_assert_ptr_nonnull(x);
		ck_assert_uint_eq(x->via.array.size, 3);
		pa = at(x, 2);
		if (o_is_str(at(x, 1), "overflow")) {
			ck_assert_uint_eq(pa->via.array.size, 2);
			ck_assert_uint_eq(o_uint(at(pa, 0)), sub);
			oseq = o_uint(at(pa, 1));
			break;
		}
		check_str(at(x, 1), "event");
		ck_assert_uint_eq(o_uint(at(pa, 0)), sub);
		ck_assert_uint_eq(o_uint(at(pa, 1)), s0 + got + 1);
		check_str(at(pa, 2), "registered");
		snprintf(name, sizeof(name), "ov.%06llu",
		    (unsigned long long)got);
		check_str(o_get(at(pa, 3), "name"), name);
		got++;
	}
	/* Every event up to oseq was sent (all concern it), none after. */
	check_entry(t_ok(s, idw), "ov.000000", cg, value);
	ck_assert_uint_eq(oseq, s0 + got);
	ck_assert_uint_lt(got, n);
	expect_quiet(s);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), false);
	ck_assert_uint_eq(t_stat(s, "subscriptions"), 0);

	/* Resume from oseq: exactly the missed events, gap false. */
	resume(s, "ov.", -1, oseq, &sub2, &seq);
	ck_assert_uint_eq(seq, last);
	for (uint64_t i = oseq + 1; i <= last; i++) {
		msgpack_object *x = expect_event(s, sub2, i, "registered",
		    NULL);

		if (i - s0 <= n)
			snprintf(name, sizeof(name), "ov.%06llu",
			    (unsigned long long)(i - s0 - 1));
		else
			snprintf(name, sizeof(name), "ov.z%d",
			    (int)(i - s0 - n - 1));
		check_str(o_get(x, "name"), name);
	}
	expect_quiet(s);
	/* And live again. */
	t_call_ok(g, "register", "s", "ov.live");
	check_str(o_get(expect_event(s, sub2, last + 1, "registered", NULL),
	    "name"), "ov.live");

	t_close(g);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* A resume replays only what the subscription would have received: no
 * joined/left without "groups". */
START_TEST(test_subscribe_resume_groups)
{
	struct tdaemon d;
	struct tclient *a, *s;
	uint64_t ca, sub, seq, s0;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	ca = t_conn_id(a);

	subscribe(s, "g.", 1, &sub, &s0);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), true);
	t_call_ok(a, "join", "ss", "g.1", "m");
	t_call_ok(a, "register", "ss", "g.n", "v");
	check_bool(t_call_ok(a, "leave", "s", "g.1"), true);
	t_call_ok(a, "join", "s", "h.1");

	resume(s, "g.", 0, s0, &sub, &seq);
	ck_assert_uint_eq(seq, s0 + 4);
	check_entry(expect_event(s, sub, s0 + 2, "registered", NULL), "g.n",
	    ca, "v");
	expect_quiet(s);
	resume(s, "g.", 1, s0, &sub, &seq);
	check_member(expect_event(s, sub, s0 + 1, "joined", NULL), "g.1", ca,
	    "m");
	check_entry(expect_event(s, sub, s0 + 2, "registered", NULL), "g.n",
	    ca, "v");
	check_member(expect_event(s, sub, s0 + 3, "left", NULL), "g.1", ca,
	    "m");
	expect_quiet(s);

	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A replay larger than the subscriber's bound overflows like live events
 * do; resuming again and again from each overflow's seq gets every event
 * once, in order, with gap false.
 */
#define RP_EVENTS	60

START_TEST(test_subscribe_replay_overflow)
{
	struct tdaemon d;
	struct tclient *g, *s;
	char name[32], value[OV_VALUE + 1];
	uint64_t sub, seq, s0, since, next;
	int resumes = 0, overflows = 0;

	t_daemon_start(&d, "--max-outbuf", "4096", NULL);
	g = t_connect(d.path);
	s = t_connect(d.path);
	memset(value, 'v', OV_VALUE);
	value[OV_VALUE] = '\0';

	subscribe(s, "rp.", -1, &sub, &s0);
	check_bool(t_call_ok(s, "unsubscribe", "u", sub), true);
	for (int i = 0; i < RP_EVENTS; i++) {
		snprintf(name, sizeof(name), "rp.%03d", i);
		t_call_ok(g, "register", "ss", name, value);
	}
	ck_assert_uint_eq(t_stat(g, "seq"), s0 + RP_EVENTS);

	since = s0;
	next = s0 + 1;
	while (next <= s0 + RP_EVENTS) {
		ck_assert_int_lt(resumes++, RP_EVENTS);
		resume(s, "rp.", -1, since, &sub, &seq);
		ck_assert_uint_eq(seq, s0 + RP_EVENTS);
		for (;;) {
			msgpack_object *x = t_recv(s, -1), *pa;

			ck_assert_ptr_nonnull(x);
			ck_assert_uint_eq(x->via.array.size, 3);
			pa = at(x, 2);
			ck_assert_uint_eq(o_uint(at(pa, 0)), sub);
			if (o_is_str(at(x, 1), "overflow")) {
				/* Everything up to its seq was sent. */
				ck_assert_uint_eq(o_uint(at(pa, 1)), next - 1);
				ck_assert_uint_gt(next - 1, since);
				since = next - 1;
				overflows++;
				break;
			}
			check_str(at(x, 1), "event");
			ck_assert_uint_eq(o_uint(at(pa, 1)), next);
			snprintf(name, sizeof(name), "rp.%03d",
			    (int)(next - s0 - 1));
			check_str(o_get(at(pa, 3), "name"), name);
			if (++next > s0 + RP_EVENTS)
				break;
		}
	}
	/* ~24 KiB of events through a 4 KiB bound: it did overflow. */
	ck_assert_int_gt(overflows, 0);
	expect_quiet(s);
	t_call_ok(g, "register", "s", "rp.live");
	expect_event(s, sub, s0 + RP_EVENTS + 1, "registered", NULL);

	t_close(g);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* Without history (--history 0) only since == seq resumes. */
START_TEST(test_subscribe_no_history)
{
	struct tdaemon d;
	struct tclient *a, *s;
	uint64_t sub, seq, since;
	msgpack_object *x;

	t_daemon_start(&d, "--history", "0", NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	t_call_ok(a, "register", "s", "nh.1");
	t_call_ok(a, "register", "s", "nh.2");
	resume(s, "nh.", -1, 2, &sub, &seq);
	ck_assert_uint_eq(seq, 2);
	expect_quiet(s);
	since = 1;
	x = t_ok(s, sub_send(s, "nh.", -1, &since));
	check_bool(o_get(x, "gap"), true);
	ck_assert_uint_eq(o_get(x, "entries")->via.array.size, 2);
	expect_quiet(s);
	/* Both get the live event. */
	t_call_ok(a, "register", "s", "nh.3");
	ck_assert_uint_eq(o_uint(at(t_push(s, "event"), 1)), 3);
	ck_assert_uint_eq(o_uint(at(t_push(s, "event"), 1)), 3);

	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* A snapshot that does not fit in max_message: too_large, and no
 * subscription; a narrower prefix, or a resume (no snapshot), works. */
START_TEST(test_subscribe_too_large)
{
	struct tdaemon d;
	struct tclient *a, *s;
	char name[32], value[601];
	uint64_t sub, seq, since = 0;

	t_daemon_start(&d, "--max-message", "4096", NULL);
	a = t_connect(d.path);
	s = t_connect(d.path);
	memset(value, 'v', 600);
	value[600] = '\0';
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "big.%d", i);
		t_call_ok(a, "register", "ss", name, value);
	}
	t_err(s, sub_send(s, "big.", -1, NULL), "too_large");
	t_err(s, sub_send(s, "", 1, NULL), "too_large");
	ck_assert_uint_eq(t_stat(s, "subscriptions"), 0);
	t_call_ok(a, "register", "s", "big.x");
	expect_quiet(s);
	ck_assert_uint_eq(subscribe(s, "big.1", -1, &sub, &seq)->via.array.size,
	    1);
	/* A resume has no snapshot: the 11 events are replayed. */
	resume(s, "big.", -1, since, &sub, &seq);
	for (uint64_t i = 1; i <= 11; i++)
		expect_event(s, sub, i, "registered", NULL);
	expect_quiet(s);
	ck_assert_uint_eq(t_stat(s, "subscriptions"), 2);

	t_close(a);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §8: a connection with many names is purged in slices; its names turn
 * invisible at once and register may take any of them, "the old
 * registration's monitors fire first".  The event stream must tell the
 * same story: the old registration's "unregistered" comes before the new
 * "registered", whether register or register_many takes the name.
 */
#define PG_BATCH	5000

static void
purge_takeover(bool many)
{
	struct tdaemon d;
	struct tclient *p, *q, *s, *m;
	struct tpack pk;
	char name[32];
	uint64_t cp, cq, ref, mref, sub, seq, e1, e2;
	msgpack_object *pa, *e;
	int n = t_under_valgrind() ? 30000 : 100000;

	t_daemon_start(&d, NULL);
	p = t_connect(d.path);
	q = t_connect(d.path);
	s = t_connect(d.path);
	m = t_connect(d.path);
	cp = t_conn_id(p);
	cq = t_conn_id(q);
	tp_init(&pk);

	/* p's names, the first registered last in its list. */
	for (int b = 0; b < n; b += PG_BATCH) {
		uint32_t id = rq_begin(p, &pk, "register_many", 1);

		tp_arr(&pk, PG_BATCH);
		for (int i = b; i < b + PG_BATCH; i++) {
			snprintf(name, sizeof(name), "pg.%06d", i);
			tp_arr(&pk, 1);
			tp_str(&pk, name);
		}
		rq_send(p, &pk);
		ck_assert_uint_eq(t_ok(p, id)->via.array.size, PG_BATCH);
	}
	ck_assert_uint_eq(t_stat(q, "names"), (uint64_t)n);
	e = subscribe(s, "pg.000000", -1, &sub, &seq);
	ck_assert_uint_eq(e->via.array.size, 1);
	check_entry(at(e, 0), "pg.000000", cp, NULL);
	ref = o_uint(t_call_ok(q, "monitor", "u", cp));
	mref = o_uint(t_call_ok(m, "monitor", "s", "pg.000000"));

	t_close(p);
	/* The purge has begun: every name is invisible; take one back. */
	pa = t_push(q, "down");
	ck_assert_uint_eq(o_uint(at(pa, 0)), ref);
	ck_assert_uint_eq(o_uint(at(pa, 1)), cp);
	check_str(at(pa, 2), "disconnected");
	if (many) {
		const char *names[] = { "pg.000000" };
		const char *vals[] = { "q" };

		check_entry(at(t_ok(q, reg_many_send(q, names, vals, 1)), 0),
		    "pg.000000", cq, "q");
	} else
		reg_own(q, cq, "pg.000000", "q", 0);
	check_nil(t_call_ok(q, "whereis", "s", "pg.000001"));

	expect_down(m, mref, "pg.000000", "disconnected");
	expect_unreg_event(s, sub, 0, "pg.000000", "disconnected", &e1);
	check_entry(expect_event(s, sub, 0, "registered", &e2), "pg.000000",
	    cq, "q");
	ck_assert_uint_gt(e1, seq);
	ck_assert_uint_gt(e2, e1);
	/* The purge ends; the name stays q's. */
	t_wait_stat(q, "names", 1);
	check_entry(t_call_ok(q, "whereis", "s", "pg.000000"), "pg.000000",
	    cq, "q");
	expect_quiet(s);

	tp_free(&pk);
	t_close(q);
	t_close(s);
	t_close(m);
	t_daemon_stop(&d);
}

START_TEST(test_purge_takeover_register)
{
	purge_takeover(false);
}
END_TEST

START_TEST(test_purge_takeover_register_many)
{
	purge_takeover(true);
}
END_TEST

START_TEST(test_subscribe_limit)
{
	struct tdaemon d;
	struct tclient *a, *b;
	uint64_t sub, sub2, seq, ref;

	t_daemon_start(&d, "--max-monitors", "2", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(b, "register", "s", "t");

	subscribe(a, "x", -1, &sub, &seq);
	ref = o_uint(t_call_ok(a, "monitor", "s", "t"));
	/* Monitors and subscriptions together reach max-monitors. */
	t_err(a, sub_send(a, "y", -1, NULL), "limit");
	t_call_err(a, "limit", "monitor", "s", "t");
	t_err(a, sub_send(a, "y", -1, &seq), "limit");
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 1);
	ck_assert_uint_eq(t_stat(a, "monitors"), 1);
	/* Two subscriptions, no monitor, is also the limit. */
	check_bool(t_call_ok(a, "demonitor", "u", ref), true);
	subscribe(a, "y", -1, &sub2, &seq);
	t_err(a, sub_send(a, "z", -1, NULL), "limit");
	t_call_err(a, "limit", "monitor", "s", "t");
	/* An ended subscription frees its slot, for a subscription or a
	 * monitor. */
	check_bool(t_call_ok(a, "unsubscribe", "u", sub), true);
	subscribe(a, "x", -1, &sub, &seq);
	t_call_err(a, "limit", "monitor", "s", "t");
	check_bool(t_call_ok(a, "unsubscribe", "u", sub), true);
	t_call_ok(a, "monitor", "s", "t");
	/* Per connection. */
	subscribe(b, "x", -1, &sub, &seq);
	subscribe(b, "x", -1, &sub, &seq);
	t_err(b, sub_send(b, "x", -1, NULL), "limit");
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 3);

	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_stats_gauges)
{
	struct tdaemon d;
	struct tclient *a, *b, *s;
	const char *names[] = { "k1", "k2", "k3" };
	uint64_t sub, sub1, seq, s0;
	uint32_t idaw;
	msgpack_object *st;
	static const char *const keys[] = { "connections", "names",
	    "monitors", "requests", "messages", "downs",
	    "notifications_ignored", "connections_total", "uptime_ms",
	    "groups", "members", "calls", "awaits", "subscriptions", "seq",
	    "replies_late", "draining", NULL };

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	s = t_connect(d.path);

	st = t_call_ok(a, "stats", "");
	check_keys(st, keys);
	ck_assert_uint_eq(o_uint(o_get(st, "seq")), 0);
	ck_assert_uint_eq(o_uint(o_get(st, "awaits")), 0);
	ck_assert_uint_eq(o_uint(o_get(st, "subscriptions")), 0);

	/* seq: one per change, whether or not anyone subscribes. */
	t_call_ok(a, "register", "s", "n1");
	ck_assert_uint_eq(t_stat(a, "seq"), 1);
	t_call_ok(a, "update", "ss", "n1", "v");
	ck_assert_uint_eq(t_stat(a, "seq"), 2);
	t_call_err(b, "taken", "register", "s", "n1");
	t_call_err(b, "not_owner", "update", "ss", "n1", "w");
	t_call_err(a, "stale", "update", "ssu", "n1", "w", (uint64_t)999);
	ck_assert_uint_eq(t_stat(a, "seq"), 2);
	t_ok(a, reg_many_send(a, names, NULL, 3));
	ck_assert_uint_eq(t_stat(a, "seq"), 5);
	t_call_ok(b, "join", "s", "grp");
	ck_assert_uint_eq(t_stat(a, "seq"), 6);
	/* Queueing changes no entry; the hand-over is one event. */
	ck_assert_uint_eq(reg_queued(b, "n1", NULL, F_QUEUE), 1);
	ck_assert_uint_eq(t_stat(a, "seq"), 6);
	check_bool(t_call_ok(a, "unregister", "s", "n1"), true);
	t_push(b, "acquired");
	ck_assert_uint_eq(t_stat(a, "seq"), 7);

	/* subscriptions and seq as a subscriber sees them. */
	subscribe(s, "", 1, &sub1, &s0);
	ck_assert_uint_eq(s0, 7);
	subscribe(s, "k", -1, &sub, &seq);
	ck_assert_uint_eq(t_stat(a, "subscriptions"), 2);
	check_bool(t_call_ok(a, "unregister", "s", "k2"), true);
	/* Both get it; their order is not specified. */
	{
		msgpack_object *pa = t_push(s, "event");
		uint64_t first = o_uint(at(pa, 0));

		ck_assert(first == sub || first == sub1);
		ck_assert_uint_eq(o_uint(at(pa, 1)), 8);
		expect_event(s, first == sub ? sub1 : sub, 8, "unregistered",
		    NULL);
	}
	ck_assert_uint_eq(t_stat(a, "seq"), 8);

	/* awaits. */
	idaw = t_request(b, "await", "su", "aw", (uint64_t)60000);
	t_request(b, "await", "su", "aw2", (uint64_t)60000);
	check_nil(t_call_ok(b, "whereis", "s", "aw"));
	ck_assert_uint_eq(t_stat(a, "awaits"), 2);
	ck_assert_uint_eq(t_stat(a, "calls"), 0);
	t_call_ok(a, "register", "s", "aw");
	check_str(o_get(t_ok(b, idaw), "name"), "aw");
	ck_assert_uint_eq(t_stat(a, "awaits"), 1);

	/* Closing: its subscriptions and awaits go. */
	t_close(s);
	t_close(b);
	t_wait_stat(a, "subscriptions", 0);
	t_wait_stat(a, "awaits", 0);

	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */

/*
 * A stopping daemon tells everyone "shutdown" and says nothing after it:
 * the names that vanish with it are not events.
 */
START_TEST(test_shutdown_is_the_last_word)
{
	struct tclient *a, *b;
	struct tdaemon d;
	msgpack_object *o;
	bool shutdown = false;
	int after = 0;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(a, "register", "s", "x");
	t_call_ok(a, "join", "s", "xg");
	t_call_ok(b, "subscribe", "s{st}", "x", "groups");
	t_daemon_stop(&d);
	while ((o = t_recv(b, 2000)) != NULL) {
		if (at(o, 0)->via.u64 == 2 && o_is_str(at(o, 1), "shutdown"))
			shutdown = true;
		else if (shutdown)
			after++;
	}
	ck_assert(shutdown);
	ck_assert_int_eq(after, 0);
	t_close(a);
	t_close(b);
}
END_TEST

static Suite *
events_suite(void)
{
	Suite *s = suite_create("events");
	TCase *tc;

	tc = tcase_create("await");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_await_immediate);
	tcase_add_test(tc, test_await_fulfilled);
	tcase_add_test(tc, test_await_timeout_and_order);
	tcase_add_test(tc, test_await_close);
	tcase_add_test(tc, test_await_limit);
	tcase_add_test(tc, test_await_limit_only_when_waiting);
	tcase_add_test(tc, test_await_bad_params);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_queue_positions);
	tcase_add_test(tc, test_queue_handover);
	tcase_add_test(tc, test_queue_never_nil);
	tcase_add_test(tc, test_queue_owner_killed);
	tcase_add_test(tc, test_queue_evict);
	tcase_add_test(tc, test_queue_owner_closes_many);
	tcase_add_test(tc, test_queue_waiter_flags);
	tcase_add_test(tc, test_queue_waiters_leave);
	tcase_add_test(tc, test_queue_calls_down);
	tcase_add_test(tc, test_leader_election);
	suite_add_tcase(s, tc);

	tc = tcase_create("replace");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_replace_requeues);
	tcase_add_test(tc, test_replace_without_queue);
	tcase_add_test(tc, test_replace_not_allowed);
	suite_add_tcase(s, tc);

	tc = tcase_create("fencing");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fencing);
	tcase_add_test(tc, test_fencing_errors);
	tcase_add_test(tc, test_gen_counter);
	suite_add_tcase(s, tc);

	tc = tcase_create("subscribe");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_subscribe_snapshot);
	tcase_add_test(tc, test_subscribe_events);
	tcase_add_test(tc, test_subscribe_groups);
	tcase_add_test(tc, test_subscribe_owner_closes);
	tcase_add_test(tc, test_subscribe_register_many);
	tcase_add_test(tc, test_subscribe_resume);
	tcase_add_test(tc, test_subscribe_gap);
	tcase_add_test(tc, test_unsubscribe);
	tcase_add_test(tc, test_subscribe_resume_groups);
	tcase_add_test(tc, test_subscribe_overflow);
	tcase_add_test(tc, test_subscribe_replay_overflow);
	tcase_add_test(tc, test_subscribe_no_history);
	tcase_add_test(tc, test_subscribe_too_large);
	tcase_add_test(tc, test_purge_takeover_register);
	tcase_add_test(tc, test_purge_takeover_register_many);
	tcase_add_test(tc, test_subscribe_limit);
	tcase_add_test(tc, test_stats_gauges);
	tcase_add_test(tc, test_shutdown_is_the_last_word);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(events_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
