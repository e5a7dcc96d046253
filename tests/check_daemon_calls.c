/*
 * check_daemon.c: integration tests of procregd against proto/PROTOCOL.md.
 * Protocol 2's await, queued ownership, replacement, fencing and event
 * stream are check_events.c's.
 *
 * Every test starts its own daemon on a private socket, talks to it
 * through real sockets and stops it with SIGTERM (t_daemon_stop checks a
 * clean exit and the removal of the socket).  Every wait is bounded; no
 * test asserts on elapsed time.
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

#define QUIET_MS	300	/* "nothing more arrives" window */

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* The next object is the push [2, "error", [code, str]]. */
static void
expect_error_push(struct tclient *c, const char *code)
{
	msgpack_object *pa = t_push(c, "error");

	ck_assert_uint_eq(pa->via.array.size, 2);
	check_str(at(pa, 0), code);
	ck_assert_int_eq(at(pa, 1)->type, MSGPACK_OBJECT_STR);
}

/* Nothing but EOF follows. */
static void
expect_eof(struct tclient *c)
{
	ck_assert_msg(t_recv(c, -1) == NULL, "an object arrived instead of EOF");
	ck_assert_msg(t_wait_eof(c, 0), "the connection is still open");
}

/* Fatal input: the error push with code, then EOF. */
static void
expect_fatal(struct tclient *c, const char *code)
{
	expect_error_push(c, code);
	expect_eof(c);
}

/* Nothing arrives within QUIET_MS (and the connection is not closed). */
static void
expect_quiet(struct tclient *c)
{
	msgpack_object *o = t_recv(c, QUIET_MS);

	ck_assert_msg(o == NULL, "unexpected object (type %d)",
	    o != NULL ? (int)o->type : -1);
	ck_assert_msg(!t_wait_eof(c, 0), "the daemon closed the connection");
}

/* The connection is in sync and usable: a request gets its reply. */
static void
expect_usable(struct tclient *c)
{
	check_nil(t_call_ok(c, "whereis", "s", "no-such-name"));
}

/* Receive a message push from sender to name; return its payload. */
static msgpack_object *
expect_message(struct tclient *c, const char *name, uint64_t sender)
{
	msgpack_object *pa = t_push(c, "message");

	ck_assert_uint_eq(pa->via.array.size, 3);
	check_str(at(pa, 0), name);
	ck_assert_uint_eq(o_uint(at(pa, 1)), sender);
	return at(pa, 2);
}

/*
 * A request whose own push may come before or after its response (§2):
 * receive both; the result must equal want_result and the push want_push.
 */
static void
expect_result_and_push(struct tclient *c, uint32_t id,
    const struct tpack *want_result, const struct tpack *want_push)
{
	bool got_reply = false, got_push = false;

	for (int i = 0; i < 2; i++) {
		msgpack_object *o = t_recv(c, -1);

		ck_assert_ptr_nonnull(o);
		ck_assert_int_eq(o->type, MSGPACK_OBJECT_ARRAY);
		if (o->via.array.size == 4) {
			ck_assert(!got_reply);
			ck_assert_uint_eq(o_uint(at(o, 0)), 1);
			ck_assert_uint_eq(o_uint(at(o, 1)), id);
			check_nil(at(o, 2));
			ck_assert_msg(obj_eq(at(o, 3), want_result),
			    "unexpected result");
			got_reply = true;
		} else {
			ck_assert(!got_push);
			ck_assert_msg(obj_eq(o, want_push), "unexpected push");
			got_push = true;
		}
	}
}

/* The same for a result `true`. */
static void
expect_true_and_push(struct tclient *c, uint32_t id, const struct tpack *want)
{
	struct tpack t;

	tp_init(&t);
	msgpack_pack_true(&t.pk);
	expect_result_and_push(c, id, &t, want);
	tp_free(&t);
}

/*
 * The reply to id is the error code; its message is a UTF-8 str that does
 * not echo the client's bytes (§2), here the str `echo`.
 */
static void
expect_err_no_echo(struct tclient *c, uint32_t id, const char *code,
    const char *echo)
{
	msgpack_object *o = t_recv(c, -1), *e, *msg;

	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o->via.array.size, 4);
	ck_assert_uint_eq(o_uint(at(o, 0)), 1);
	ck_assert_uint_eq(o_uint(at(o, 1)), id);
	e = at(o, 2);
	ck_assert_uint_eq(e->via.array.size, 2);
	check_str(at(e, 0), code);
	msg = at(e, 1);
	ck_assert_int_eq(msg->type, MSGPACK_OBJECT_STR);
	ck_assert_uint_gt(msg->via.str.size, 0);
	ck_assert_msg(memmem(msg->via.str.ptr, msg->via.str.size, echo,
	    strlen(echo)) == NULL, "the %s message echoes \"%s\": %.*s", code,
	    echo, (int)msg->via.str.size, msg->via.str.ptr);
	check_nil(at(o, 3));
}

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

/* A first client, once the daemon has forgotten t_daemon_start's probe
 * connection (its close is processed asynchronously). */
static struct tclient *
connect_first(struct tdaemon *d)
{
	struct tclient *c = t_connect(d->path);

	t_wait_gauges(c, 1, 0, 0);
	return c;
}

/* A string of n copies of ch (caller frees). */
static char *
filled(size_t n, char ch)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* A register request whose value is a str of vlen bytes. */
static uint32_t
register_with_str(struct tclient *c, struct tpack *p, const char *name,
    size_t vlen)
{
	char *v = filled(vlen, 'v');
	uint32_t id = rq_begin(c, p, "register", 2);

	tp_str(p, name);
	tp_str(p, v);
	free(v);
	return id;
}

/* Bounded waitpid: the exit status (128+sig if killed), -1 on timeout. */
static int
wait_exit(pid_t pid)
{
	int status;

	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status);
		ck_assert_int_eq(r, 0);
		usleep(T_POLL_US);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* Fork and exec procregd with these args (NULL-ended); stderr goes to
 * /dev/null, stdout to *outfd when non-NULL (a pipe's read end). */
static pid_t
spawn_procregd_env(int *outfd, const char *const *env,
    const char *const *args)
{
	const char *argv[32];
	int argc = 0, p[2] = { -1, -1 };
	pid_t pid;

	argv[argc++] = t_procregd();
	while (*args != NULL && argc < 31)
		argv[argc++] = *args++;
	argv[argc] = NULL;
	if (outfd != NULL)
		ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* "KEY=VALUE" sets, "KEY" unsets. */
		for (; env != NULL && *env != NULL; env++) {
			if (strchr(*env, '=') != NULL)
				putenv((char *)*env);
			else
				unsetenv(*env);
		}
		dup2(null, 2);
		dup2(outfd != NULL ? p[1] : null, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (outfd != NULL) {
		close(p[1]);
		*outfd = p[0];
	}
	return pid;
}

static pid_t
spawn_procregd(int *outfd, const char *const *args)
{
	return spawn_procregd_env(outfd, NULL, args);
}

/* Poll (bounded) until a daemon accepts connections on path. */
static void
wait_listening(pid_t pid, const char *path)
{
	struct sockaddr_un sun;

	ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
	t_unix_addr(&sun, path);
	for (int i = 0; ; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0), r;

		ck_assert_int_ge(fd, 0);
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		close(fd);
		if (r == 0)
			return;
		ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0,
		    "procregd exited instead of listening on %s", path);
		ck_assert_msg(i < T_POLL_ROUNDS, "procregd did not start");
		usleep(T_POLL_US);
	}
}

/* Run procregd to completion; its exit status, -1 on timeout.  The
 * first outsz-1 bytes of its stdout go to out when non-NULL. */
static int
run_procregd(char *out, size_t outsz, const char *const *args)
{
	int fd = -1, rc;
	pid_t pid = spawn_procregd(out != NULL ? &fd : NULL, args);

	rc = wait_exit(pid);
	if (out != NULL) {
		size_t got = 0;
		ssize_t n;

		/* The writer is gone: read to EOF without blocking forever. */
		while (got + 1 < outsz &&
		    (n = read(fd, out + got, outsz - 1 - got)) > 0)
			got += (size_t)n;
		out[got] = '\0';
		close(fd);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* hello                                                               */
/* ------------------------------------------------------------------ */

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
	ck_assert_uint_eq(o_uint(o_get(r, "protocol")), 2);
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
	label = filled(255, 'l');
	t_call_ok(a, "hello", "s", label);
	free(label);
	label = filled(256, 'l');
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

/* ------------------------------------------------------------------ */
/* register / whereis / unregister                                     */
/* ------------------------------------------------------------------ */

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

/* A value with every msgpack type whose identity the spec promises. */
static void
pack_rich_value(struct tpack *p)
{
	static const char ext[3] = { 1, 2, 3 };

	tp_arr(p, 16);
	msgpack_pack_bin(&p->pk, 3);			/* bin, not str */
	msgpack_pack_bin_body(&p->pk, "abc", 3);
	tp_str(p, "abc");
	tp_str(p, "");
	msgpack_pack_float(&p->pk, 1.5f);		/* float32 */
	msgpack_pack_double(&p->pk, 2.25);		/* float64 */
	msgpack_pack_ext_with_body(&p->pk, ext, 3, 5);	/* ext8 */
	msgpack_pack_ext_with_body(&p->pk, ext, 1, -7);	/* fixext1 */
	msgpack_pack_true(&p->pk);
	msgpack_pack_false(&p->pk);
	tp_int(p, -1);
	tp_int(p, INT64_MIN);
	tp_uint(p, UINT64_MAX);
	tp_map(p, 3);				/* key order, non-str keys */
	tp_str(p, "z");
	tp_nil(p);
	tp_uint(p, 1);
	tp_str(p, "one");
	tp_str(p, "a");
	tp_arr(p, 0);
	tp_map(p, 0);
	tp_arr(p, 0);
	tp_nil(p);
}

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

/* ------------------------------------------------------------------ */
/* bad_request for bad params                                          */
/* ------------------------------------------------------------------ */

/* register [name bytes] answers bad_request; the connection stays
 * usable. */
static void
bad_name(struct tclient *c, const char *method, const char *s, size_t len)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, method, 1);
	tp_strn(&p, s, len);
	rq_send(c, &p);
	t_err(c, id, "bad_request");
	tp_free(&p);
	expect_usable(c);
}

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
	name = filled(256, 'n');
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

/* ------------------------------------------------------------------ */
/* send                                                                */
/* ------------------------------------------------------------------ */

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
	expect_quiet(a);

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
	expect_quiet(a);

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

/* ------------------------------------------------------------------ */
/* busy                                                                */
/* ------------------------------------------------------------------ */

#define BUSY_PAYLOAD	1000
#define BUSY_MAX_TRIES	20000	/* far above any socket buffer */

/* send [name, [seq, 1000-byte str]]; true on success, false on busy. */
static bool
send_seq(struct tclient *c, const char *name, uint64_t seq, const char *fill)
{
	struct tpack p;
	msgpack_object *o;
	uint32_t id;
	bool ok;

	tp_init(&p);
	id = rq_begin(c, &p, "send", 2);
	tp_str(&p, name);
	tp_arr(&p, 2);
	tp_uint(&p, seq);
	tp_str(&p, fill);
	rq_send(c, &p);
	tp_free(&p);
	o = t_recv(c, -1);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o_uint(at(o, 0)), 1);
	ck_assert_uint_eq(o_uint(at(o, 1)), id);
	ok = at(o, 2)->type == MSGPACK_OBJECT_NIL;
	if (ok)
		check_bool(at(o, 3), true);
	else
		check_str(at(at(o, 2), 0), "busy");
	return ok;
}

START_TEST(test_busy)
{
	struct tdaemon d;
	struct tclient *a, *b;
	char *fill = filled(BUSY_PAYLOAD, 'p');
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
	expect_quiet(a);

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
	expect_quiet(r);
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
	expect_quiet(c);

	tp_free(&p);
	t_close(c);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* monitor / demonitor                                                 */
/* ------------------------------------------------------------------ */

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
	expect_quiet(b);
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
	expect_quiet(b);
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
	expect_quiet(b);

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
	expect_quiet(a);

	ck_assert_uint_eq(t_stat(b, "monitors"), 0);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* list                                                                */
/* ------------------------------------------------------------------ */

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
	longp = filled(300, 'a');
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
	char *n255 = filled(255, 'a'), *after = filled(256, 'a');
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

/* The encoded size of an object (the daemon encodes as msgpack-c does:
 * shortest integers, same headers). */
static size_t
packed_size(const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	ck_assert_int_eq(msgpack_pack_object(&pk, *o), 0);
	n = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return n;
}

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

/* ------------------------------------------------------------------ */
/* stats                                                               */
/* ------------------------------------------------------------------ */

static const char *const stats_keys[] = { "connections", "names",
	"monitors", "requests", "messages", "downs", "notifications_ignored",
	"connections_total", "uptime_ms", "groups", "members", "calls",
	"awaits", "subscriptions", "seq", "replies_late", "draining", NULL };

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

/* ------------------------------------------------------------------ */
/* lifeline: SIGKILL                                                   */
/* ------------------------------------------------------------------ */

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
	expect_quiet(o);

	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* chunking: pipelining and trickling                                  */
/* ------------------------------------------------------------------ */

#define PIPELINED	10000

START_TEST(test_pipeline_10000)
{
	struct tdaemon d;
	struct tclient *c;
	struct tpack p;
	char name[32];
	uint32_t first;

	t_daemon_start(&d, NULL);
	c = t_connect(d.path);
	tp_init(&p);
	first = c->next_msgid;
	for (int i = 0; i < PIPELINED; i++) {
		snprintf(name, sizeof(name), "n%05d", i);
		rq_begin(c, &p, "register", 1);
		tp_str(&p, name);
	}
	rq_send(c, &p);		/* one write */
	for (int i = 0; i < PIPELINED; i++) {
		snprintf(name, sizeof(name), "n%05d", i);
		check_str(o_get(t_ok(c, first + (uint32_t)i), "name"), name);
	}
	ck_assert_uint_eq(t_stat(c, "names"), PIPELINED);
	/* list: 1000 by default, up to 10000 on request, in order. */
	{
		msgpack_object *r = t_call_ok(c, "list", "");

		ck_assert_uint_eq(r->via.array.size, 1000);
		check_str(o_get(at(r, 999), "name"), "n00999");
		r = t_call_ok(c, "list", "su", "", (uint64_t)PIPELINED);
		ck_assert_uint_eq(r->via.array.size, PIPELINED);
		for (uint32_t i = 0; i < PIPELINED; i++) {
			snprintf(name, sizeof(name), "n%05u", i);
			check_str(o_get(at(r, i), "name"), name);
		}
	}

	tp_free(&p);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_trickle)
{
	struct tdaemon d;
	struct tclient *c;
	struct tpack p;
	uint32_t id1, id2;
	msgpack_object *e;
	char *val = filled(300, 'v');	/* a str16 header to split too */

	t_daemon_start(&d, NULL);
	c = t_connect(d.path);
	tp_init(&p);
	id1 = rq_begin(c, &p, "register", 2);
	tp_str(&p, "trickled");
	tp_str(&p, val);
	id2 = rq_begin(c, &p, "whereis", 1);
	tp_str(&p, "trickled");
	/* Each byte is read on its own: the next goes once the daemon has
	 * taken the last one from the socket. */
	for (size_t i = 0; i < p.buf.size; i++) {
		t_send_raw(c, p.buf.data + i, 1);
		t_wait_drained(c);
	}
	e = t_ok(c, id1);
	check_str(o_get(e, "name"), "trickled");
	check_str(o_get(e, "value"), val);
	check_str(o_get(t_ok(c, id2), "name"), "trickled");

	free(val);
	tp_free(&p);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* fatal input                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_invalid_msgpack)
{
	static const uint8_t c1 = 0xc1;
	struct tdaemon d;
	struct tclient *other, *bad;
	struct tpack p;
	uint32_t id;

	t_daemon_start(&d, NULL);
	other = t_connect(d.path);
	t_call_ok(other, "register", "s", "keep");

	/* Just the bad byte. */
	bad = t_connect(d.path);
	t_call_ok(bad, "register", "s", "bad1");
	t_send_raw(bad, &c1, 1);
	expect_fatal(bad, "bad_request");
	t_close(bad);
	/* Purged before the close: its name is gone at once. */
	check_nil(t_call_ok(other, "whereis", "s", "bad1"));

	/* A complete request before the bad byte is answered first; a
	 * request after it is discarded. */
	bad = t_connect(d.path);
	tp_init(&p);
	id = rq_begin(bad, &p, "whereis", 1);
	tp_str(&p, "keep");
	msgpack_sbuffer_write(&p.buf, (const char *)&c1, 1);
	rq_begin(bad, &p, "register", 1);
	tp_str(&p, "after-bad");
	rq_send(bad, &p);	/* one write */
	check_str(o_get(t_ok(bad, id), "name"), "keep");
	expect_fatal(bad, "bad_request");
	t_close(bad);

	/* The other connection never noticed. */
	check_str(o_get(t_call_ok(other, "whereis", "s", "keep"), "name"),
	    "keep");
	check_nil(t_call_ok(other, "whereis", "s", "after-bad"));
	t_wait_gauges(other, 1, 1, 0);

	tp_free(&p);
	t_close(other);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_too_large)
{
	/* [0, 1, "register", [<str32 of 0x7fffffff bytes>...: no body. */
	static const uint8_t str32[] = { 0x94, 0x00, 0x01, 0xa8, 'r', 'e',
		'g', 'i', 's', 't', 'e', 'r', 0x91, 0xdb, 0x7f, 0xff, 0xff,
		0xff };
	static const uint8_t arr32[] = { 0xdd, 0x7f, 0xff, 0xff, 0xff };
	struct tdaemon d;
	struct tclient *c, *other;
	struct tpack p;
	size_t fixed;
	uint32_t id;

	/* Default max_message: a 2 GB str header alone is enough. */
	t_daemon_start(&d, NULL);
	other = t_connect(d.path);
	t_call_ok(other, "register", "s", "other");
	c = t_connect(d.path);
	t_send_raw(c, str32, sizeof(str32));
	expect_fatal(c, "too_large");
	t_close(c);
	c = t_connect(d.path);
	t_send_raw(c, arr32, sizeof(arr32));
	expect_fatal(c, "too_large");
	t_close(c);
	/* A map32 header inside a request too. */
	c = t_connect(d.path);
	{
		static const uint8_t map32[] = { 0x94, 0x00, 0x02, 0xa4, 's',
			'e', 'n', 'd', 0x92, 0xa5, 'o', 't', 'h', 'e', 'r',
			0xdf, 0x40, 0x00, 0x00, 0x00 };

		t_send_raw(c, map32, sizeof(map32));
	}
	expect_fatal(c, "too_large");
	t_close(c);
	check_str(o_get(t_call_ok(other, "whereis", "s", "other"), "name"),
	    "other");

	/* Default max_message: a request of exactly 1 MiB fits (and comes
	 * back in a reply a little larger), one byte more does not. */
	tp_init(&p);
	register_with_str(other, &p, "mib", 100000);	/* str32 header */
	fixed = p.buf.size - 100000;
	tp_reset(&p);
	id = register_with_str(other, &p, "mib", 1048576 - fixed);
	ck_assert_uint_eq(p.buf.size, 1048576);
	rq_send(other, &p);
	ck_assert_uint_eq(o_get(t_ok(other, id), "value")->via.str.size,
	    1048576 - fixed);
	ck_assert_uint_eq(o_get(t_call_ok(other, "whereis", "s", "mib"),
	    "value")->via.str.size, 1048576 - fixed);
	c = t_connect(d.path);
	register_with_str(c, &p, "mib2", 1048576 - fixed);
	ck_assert_uint_eq(p.buf.size, 1048577);
	/* The str header already proves it: send no more than that (the
	 * daemon may close before reading a body). */
	t_send_raw(c, p.buf.data, p.buf.size - (1048576 - fixed));
	tp_reset(&p);
	expect_fatal(c, "too_large");
	t_close(c);
	tp_free(&p);
	t_close(other);
	t_daemon_stop(&d);

	/* --max-message 1024. */
	t_daemon_start(&d, "--max-message", "1024", NULL);
	c = t_connect(d.path);
	ck_assert_uint_eq(o_uint(o_get(t_call_ok(c, "hello", ""),
	    "max_message")), 1024);
	tp_init(&p);
	id = register_with_str(c, &p, "v500", 500);
	rq_send(c, &p);
	ck_assert_uint_eq(o_get(t_ok(c, id), "value")->via.str.size, 500);

	/* The boundary: exactly max_message bytes fit, one more does not
	 * (the value's str16 header keeps the framing constant). */
	register_with_str(c, &p, "edge", 300);
	fixed = p.buf.size - 300;
	tp_reset(&p);
	id = register_with_str(c, &p, "edge", 1024 - fixed);
	ck_assert_uint_eq(p.buf.size, 1024);
	rq_send(c, &p);
	t_ok(c, id);
	register_with_str(c, &p, "edge2", 1024 - fixed);
	ck_assert_uint_eq(p.buf.size, 1025);
	rq_send(c, &p);
	expect_fatal(c, "too_large");
	t_close(c);

	c = t_connect(d.path);
	register_with_str(c, &p, "big", 2000);
	rq_send(c, &p);
	expect_fatal(c, "too_large");
	t_close(c);
	c = t_connect(d.path);
	check_nil(t_call_ok(c, "whereis", "s", "big"));
	check_nil(t_call_ok(c, "whereis", "s", "edge2"));
	t_wait_gauges(c, 1, 0, 0);

	tp_free(&p);
	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* n nested one-element arrays around nil. */
static void
pack_nested(struct tpack *p, int n)
{
	for (int i = 0; i < n; i++)
		tp_arr(p, 1);
	tp_nil(p);
}

START_TEST(test_nesting)
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

	/* A 20-deep payload goes through intact. */
	t_call_ok(a, "register", "s", "deep");
	id = rq_begin(b, &p, "send", 2);
	tp_str(&p, "deep");
	pack_nested(&p, 20);
	rq_send(b, &p);
	check_bool(t_ok(b, id), true);
	pack_nested(&want, 20);
	ck_assert(obj_eq(expect_message(a, "deep", cb), &want));

	/* 30 levels (request 1, params 2, payload 3..30) are allowed. */
	id = rq_begin(b, &p, "send", 2);
	tp_str(&p, "deep");
	pack_nested(&p, 28);
	rq_send(b, &p);
	check_bool(t_ok(b, id), true);
	tp_reset(&want);
	pack_nested(&want, 28);
	ck_assert(obj_eq(expect_message(a, "deep", cb), &want));

	/* 30 nested arrays that are no request: answered, not fatal. */
	pack_nested(&p, 30);
	rq_send(b, &p);
	expect_error_push(b, "bad_request");
	expect_usable(b);

	/* 31 levels: fatal. */
	pack_nested(&p, 31);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);

	/* 40 levels, and inside a request. */
	b = t_connect(d.path);
	pack_nested(&p, 40);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);
	b = t_connect(d.path);
	rq_begin(b, &p, "send", 2);
	tp_str(&p, "deep");
	pack_nested(&p, 29);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);

	expect_quiet(a);
	expect_usable(a);

	tp_free(&p);
	tp_free(&want);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * §7: "nesting deeper than 30 arrays/maps" is fatal.  An empty array or
 * map is an array or map too: 30 arrays around [] (or {}) are 31 levels.
 */
START_TEST(test_nesting_empty_innermost)
{
	struct tdaemon d;
	struct tclient *a, *b;
	struct tpack p;

	t_daemon_start(&d, NULL);
	a = t_connect(d.path);
	t_call_ok(a, "register", "s", "deep");
	tp_init(&p);

	/* 29 arrays around []: 30 levels, fine (a non-request). */
	b = t_connect(d.path);
	for (int i = 0; i < 29; i++)
		tp_arr(&p, 1);
	tp_arr(&p, 0);
	rq_send(b, &p);
	expect_error_push(b, "bad_request");
	expect_usable(b);

	/* 30 arrays around []: 31 levels. */
	for (int i = 0; i < 30; i++)
		tp_arr(&p, 1);
	tp_arr(&p, 0);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);

	/* 30 arrays around {}. */
	b = t_connect(d.path);
	for (int i = 0; i < 30; i++)
		tp_arr(&p, 1);
	tp_map(&p, 0);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);

	/* A send whose payload puts [] at level 31 is not forwarded. */
	b = t_connect(d.path);
	rq_begin(b, &p, "send", 2);
	tp_str(&p, "deep");
	for (int i = 0; i < 28; i++)
		tp_arr(&p, 1);
	tp_arr(&p, 0);
	rq_send(b, &p);
	expect_fatal(b, "bad_request");
	t_close(b);
	expect_quiet(a);

	tp_free(&p);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* valid msgpack that is not a good request                            */
/* ------------------------------------------------------------------ */

#define RAW(c, ...) do {						\
	static const uint8_t raw_[] = { __VA_ARGS__ };			\
	t_send_raw((c), raw_, sizeof(raw_));				\
} while (0)

#define STATS_STR	0xa5, 's', 't', 'a', 't', 's'

START_TEST(test_non_requests)
{
	struct tdaemon d;
	struct tclient *c;
	uint64_t ign;

	t_daemon_start(&d, NULL);
	c = t_connect(d.path);

	/* Error pushes, connection kept. */
	RAW(c, 0x2a);					/* 42 */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0xff, STATS_STR, 0x90);	/* msgid -1 */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	    0x00, STATS_STR, 0x90);			/* msgid 2^32 */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x80);					/* {} */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x90);					/* [] */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0xa5, 's', 't', 'a', 't', 's');		/* "stats" */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x01, 0x05, 0xc0, 0xc0);		/* a response */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x93, 0x02, 0x05, 0x90);		/* [2, 5, []] */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x93, 0x02, 0xa1, 'x', 0x80);		/* [2, "x", {}] */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x05, 0x01, STATS_STR, 0x90);	/* kind 5 */
	expect_error_push(c, "bad_request");
	expect_usable(c);

	/* Responses with the msgid. */
	RAW(c, 0x94, 0x00, 0x07, 0x2a, 0x90);		/* method 42 */
	t_err(c, 7, "bad_request");
	expect_usable(c);
	RAW(c, 0x93, 0x00, 0x08, STATS_STR);		/* 3 elements */
	t_err(c, 8, "bad_request");
	expect_usable(c);
	RAW(c, 0x95, 0x00, 0x08, STATS_STR, 0x90, 0xc0);	/* 5 elements */
	t_err(c, 8, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0x09, STATS_STR, 0x80);	/* params {} */
	t_err(c, 9, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0x0a, 0xaa, 'f', 'r', 'o', 'b', 'n', 'i', 'c',
	    'a', 't', 'e', 0x90);
	expect_err_no_echo(c, 10, "unknown_method", "frobnicate");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0x0b, 0xa5, 'S', 'T', 'A', 'T', 'S', 0x90);
	t_err(c, 11, "unknown_method");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0x0c, 0xc4, 0x05, 's', 't', 'a', 't', 's', 0x90);
	t_err(c, 12, "bad_request");			/* bin method */
	expect_usable(c);

	RAW(c, 0x92, 0x00, 0x0f);			/* [0, 15] */
	t_err(c, 15, "bad_request");
	expect_usable(c);
	RAW(c, 0x91, 0x00);				/* [0] */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0xca, 0x3f, 0x80, 0x00, 0x00, STATS_STR, 0x90);
	expect_error_push(c, "bad_request");		/* msgid 1.0f */
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0xa1, '1', STATS_STR, 0x90);	/* msgid "1" */
	expect_error_push(c, "bad_request");
	expect_usable(c);
	RAW(c, 0x94, 0x00, 0x10, 0xa7, 'w', 'h', 'e', 'r', 'e', 'i', 's',
	    0x91, 0xa6, 'Z', 'q', '7', 'a', 'b', 'c');
	check_nil(t_ok(c, 16));				/* sanity */
	RAW(c, 0x94, 0x00, 0x11, 0xa7, 'Z', 'q', '7', 'm', 'e', 't', 'h',
	    0x90);
	expect_err_no_echo(c, 17, "unknown_method", "Zq7meth");
	RAW(c, 0x94, 0x00, 0x12, 0xa8, 'r', 'e', 'g', 'i', 's', 't', 'e',
	    'r', 0x91, 0xa6, 'Z', 'q', '7', 0xff, 'x', 'y');
	expect_err_no_echo(c, 18, "bad_request", "Zq7");	/* bad UTF-8 */

	/* msgid: any uint encoding, up to 2^32-1. */
	RAW(c, 0x94, 0x00, 0xd0, 0x0d, STATS_STR, 0x90);	/* int8 13 */
	check_keys(t_ok(c, 13), stats_keys);
	RAW(c, 0x94, 0x00, 0xce, 0xff, 0xff, 0xff, 0xff, STATS_STR, 0x90);
	check_keys(t_ok(c, 4294967295u), stats_keys);
	RAW(c, 0x94, 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x0e, STATS_STR,
	    0x90);					/* uint64 14 */
	check_keys(t_ok(c, 14), stats_keys);

	/* A client notification: no reply at all, but counted. */
	ign = t_stat(c, "notifications_ignored");
	ck_assert_uint_eq(ign, 0);
	RAW(c, 0x93, 0x02, 0xa8, 'w', 'h', 'a', 't', 'e', 'v', 'e', 'r',
	    0x90);
	RAW(c, 0x93, 0x02, 0xa5, 's', 't', 'a', 't', 's', 0x91, 0x01);
	/* The next object is the reply to the following request. */
	ck_assert_uint_eq(t_stat(c, "notifications_ignored"), 2);
	expect_quiet(c);

	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* end of file                                                         */
/* ------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------ */
/* limits                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_limit_names)
{
	struct tdaemon d;
	struct tclient *a, *b;

	t_daemon_start(&d, "--max-names", "2", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(a, "register", "s", "n1");
	t_call_ok(a, "register", "s", "n2");
	t_call_err(a, "limit", "register", "s", "n3");
	check_nil(t_call_ok(a, "whereis", "s", "n3"));
	/* taken comes before limit. */
	t_call_err(a, "taken", "register", "s", "n1");
	/* Per connection: b has its own allowance. */
	t_call_ok(b, "register", "s", "n3");
	t_call_ok(b, "register", "s", "n4");
	t_call_err(b, "limit", "register", "s", "n5");
	check_bool(t_call_ok(a, "unregister", "s", "n1"), true);
	t_call_ok(a, "register", "s", "n5");
	t_call_err(a, "limit", "register", "s", "n6");
	ck_assert_uint_eq(t_stat(a, "names"), 4);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_limit_monitors)
{
	struct tdaemon d;
	struct tclient *a, *b;
	uint64_t r1, r2;

	t_daemon_start(&d, "--max-monitors", "2", NULL);
	a = t_connect(d.path);
	b = t_connect(d.path);
	t_call_ok(b, "register", "s", "t");
	r1 = o_uint(t_call_ok(a, "monitor", "s", "t"));
	r2 = o_uint(t_call_ok(a, "monitor", "s", "t"));
	t_call_err(a, "limit", "monitor", "s", "t");
	t_call_err(a, "limit", "monitor", "s", "ghost");
	expect_usable(a);
	/* A cancelled monitor frees its slot. */
	check_bool(t_call_ok(a, "demonitor", "u", r1), true);
	ck_assert_uint_gt(o_uint(t_call_ok(a, "monitor", "s", "t")), r2);
	t_call_err(a, "limit", "monitor", "s", "t");
	ck_assert_uint_eq(t_stat(a, "monitors"), 2);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_limit_conns)
{
	struct tdaemon d;
	struct tclient *a, *b, *c;

	t_daemon_start(&d, "--max-conns", "2", NULL);
	a = connect_first(&d);
	t_call_ok(a, "register", "s", "a");
	b = t_connect(d.path);
	t_call_ok(b, "register", "s", "b");

	c = t_connect(d.path);
	expect_fatal(c, "limit");
	t_close(c);

	check_str(o_get(t_call_ok(a, "whereis", "s", "b"), "name"), "b");
	check_str(o_get(t_call_ok(b, "whereis", "s", "a"), "name"), "a");
	ck_assert_uint_eq(t_stat(a, "connections"), 2);

	/* A slot frees when a connection closes. */
	t_close(b);
	t_wait_gauges(a, 1, 1, 0);
	c = t_connect(d.path);
	check_nil(t_call_ok(c, "whereis", "s", "b"));
	t_close(c);

	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* command line                                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_cmdline)
{
	char dir[] = "/tmp/procreg-cmdline.XXXXXX", path[128], out[4096];
	struct tdaemon d, d2;
	struct tclient *c;
	struct sockaddr_un sun;
	struct stat st;
	char buf[64];
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);

	ck_assert_int_eq(run_procregd(out, sizeof(out),
	    (const char *[]){ "--help", NULL }), 0);
	ck_assert_ptr_nonnull(strstr(out, "--max-message"));
	ck_assert_int_eq(run_procregd(out, sizeof(out),
	    (const char *[]){ "--version", NULL }), 0);
	ck_assert_ptr_nonnull(strstr(out, "0.1.0"));
	/* Bad command lines: 2, and no daemon ran. */
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "--frobnicate", NULL }), 2);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "--max-message", "abc", NULL }), 2);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "--max-message", "63", NULL }), 2);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "--max-names", "-1", NULL }), 2);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "--max-conns", NULL }), 2);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, "extra", NULL }), 2);
	ck_assert_int_ne(lstat(path, &st), 0);

	/* A second daemon on a live socket: 1; the first keeps going. */
	t_daemon_start(&d, NULL);
	c = t_connect(d.path);
	t_call_ok(c, "register", "s", "first");
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", d.path, NULL }), 1);
	check_str(o_get(t_call_ok(c, "whereis", "s", "first"), "name"),
	    "first");
	{
		struct tclient *c2 = t_connect(d.path);

		check_str(o_get(t_call_ok(c2, "whereis", "s", "first"),
		    "name"), "first");
		t_close(c2);
	}
	t_close(c);
	t_daemon_stop(&d);

	/* A regular file at the path is left alone. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "keep me\n", 8), 8);
	close(fd);
	ck_assert_int_eq(run_procregd(NULL, 0,
	    (const char *[]){ "-s", path, NULL }), 1);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 8);
	ck_assert(memcmp(buf, "keep me\n", 8) == 0);
	close(fd);
	ck_assert_int_eq(unlink(path), 0);

	/* A stale socket (bound, closed, never unlinked) is replaced. */
	ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
	t_unix_addr(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	memset(&d2, 0, sizeof(d2));
	snprintf(d2.dir, sizeof(d2.dir), "%s", dir);
	snprintf(d2.path, sizeof(d2.path), "%s", path);
	d2.pid = spawn_procregd(NULL, (const char *[]){ "-s", path, NULL });
	wait_listening(d2.pid, path);
	c = t_connect(path);
	check_str(o_get(t_call_ok(c, "hello", ""), "server"), "procreg");
	t_close(c);
	/* SIGTERM: exit 0, socket removed, directory removed. */
	t_daemon_stop(&d2);
	ck_assert_int_ne(lstat(dir, &st), 0);
}
END_TEST

/* A daemon run by hand in dir, listening on path; stop it with
 * t_daemon_stop. */
static void
hand_daemon(struct tdaemon *d, const char *dir, const char *path,
    const char *const *env, const char *const *args)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	snprintf(d->path, sizeof(d->path), "%s", path);
	d->pid = spawn_procregd_env(NULL, env, args);
	wait_listening(d->pid, path);
}

START_TEST(test_socket_paths)
{
	char dir[] = "/tmp/procreg-paths.XXXXXX", path[128], envp[160];
	char xdg[160], xdgpath[128];
	struct tdaemon d;
	struct tclient *c;
	struct stat st;

	ck_assert_ptr_nonnull(mkdtemp(dir));

	/* The socket's mode: 0600 for a user, 0666 for root (§1). */
	t_daemon_start(&d, NULL);
	ck_assert_int_eq(stat(d.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, getuid() == 0 ? 0666 : 0600);
	t_daemon_stop(&d);

	/* $PROCREG_SOCKET. */
	snprintf(path, sizeof(path), "%s/env.sock", dir);
	snprintf(envp, sizeof(envp), "PROCREG_SOCKET=%s", path);
	hand_daemon(&d, dir, path, (const char *[]){ envp, NULL },
	    (const char *[]){ NULL });
	c = t_connect(path);
	expect_usable(c);
	t_close(c);
	/* SIGINT is a clean shutdown too. */
	ck_assert_int_eq(kill(d.pid, SIGINT), 0);
	ck_assert_int_eq(wait_exit(d.pid), 0);
	ck_assert_int_ne(lstat(path, &st), 0);

	/* -s wins over $PROCREG_SOCKET. */
	snprintf(xdgpath, sizeof(xdgpath), "%s/s.sock", dir);
	hand_daemon(&d, dir, xdgpath, (const char *[]){ envp, NULL },
	    (const char *[]){ "-s", xdgpath, NULL });
	ck_assert_int_ne(lstat(path, &st), 0);
	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	ck_assert_int_eq(wait_exit(d.pid), 0);
	ck_assert_int_ne(lstat(xdgpath, &st), 0);

	/* An empty $PROCREG_SOCKET falls through to $XDG_RUNTIME_DIR. */
	snprintf(xdg, sizeof(xdg), "XDG_RUNTIME_DIR=%s", dir);
	snprintf(xdgpath, sizeof(xdgpath), "%s/procreg.sock", dir);
	hand_daemon(&d, dir, xdgpath,
	    (const char *[]){ "PROCREG_SOCKET=", xdg, NULL },
	    (const char *[]){ NULL });
	c = t_connect(xdgpath);
	expect_usable(c);
	t_close(c);
	t_daemon_stop(&d);	/* removes the socket and dir */
}
END_TEST

/* ------------------------------------------------------------------ */
/* mass disconnect                                                     */
/* ------------------------------------------------------------------ */

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
	expect_quiet(obs);

	tp_free(&p);
	t_close(obs);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* protocol 2: helpers                                                 */
/* ------------------------------------------------------------------ */

#define DAY_MS		86400000ULL	/* the largest call timeout_ms */
#define NO_CONN		999999		/* a connection id never handed out */

static const char *const publish_keys[] = { "delivered", "busy", NULL };
static const char *const keys_keys[] = { "names", "groups", NULL };

/* How long a "down" that must come at once may take to arrive: generous,
 * and more so under valgrind.  Not a performance bound. */
static int
at_once_ms(void)
{
	return t_under_valgrind() ? 5000 : 1000;
}

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

/* An array of str exactly equal to these (NULL-terminated). */
static void
check_strs(const msgpack_object *a, const char *const *want)
{
	uint32_t n = 0;

	ck_assert_int_eq(a->type, MSGPACK_OBJECT_ARRAY);
	while (want[n] != NULL)
		n++;
	ck_assert_uint_eq(a->via.array.size, n);
	for (uint32_t i = 0; i < n; i++)
		check_str(at(a, i), want[i]);
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

/* Append the object packed in obj to p (a param of a request begun in
 * p). */
static void
tp_append(struct tpack *p, const struct tpack *obj)
{
	msgpack_sbuffer_write(&p->buf, obj->buf.data, obj->buf.size);
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

/* [obj, "payload"] as the params of method: bad_request. */
static void
bad_target(struct tclient *c, const char *method, const struct tpack *obj)
{
	struct tpack p;
	uint32_t id;

	tp_init(&p);
	id = rq_begin(c, &p, method, 2);
	tp_append(&p, obj);
	tp_str(&p, "payload");
	rq_send(c, &p);
	tp_free(&p);
	t_err(c, id, "bad_request");
}

/* Targets that are neither a name nor a connection id, packed in turn
 * into obj and handed to fn. */
static void
for_bad_targets(struct tclient *c, const char *method,
    void (*fn)(struct tclient *, const char *, const struct tpack *))
{
	struct tpack o;
	char *n256 = filled(256, 'n');

	tp_init(&o);
	tp_nil(&o);
	fn(c, method, &o);
	tp_reset(&o);
	msgpack_pack_true(&o.pk);
	fn(c, method, &o);
	tp_reset(&o);
	tp_int(&o, -1);
	fn(c, method, &o);
	tp_reset(&o);
	msgpack_pack_double(&o.pk, 2.0);
	fn(c, method, &o);
	tp_reset(&o);
	msgpack_pack_bin(&o.pk, 2);
	msgpack_pack_bin_body(&o.pk, "kv", 2);
	fn(c, method, &o);
	tp_reset(&o);
	tp_arr(&o, 1);
	tp_str(&o, "kv");
	fn(c, method, &o);
	tp_reset(&o);
	tp_map(&o, 0);
	fn(c, method, &o);
	tp_reset(&o);
	tp_str(&o, "");
	fn(c, method, &o);
	tp_reset(&o);
	tp_str(&o, n256);
	fn(c, method, &o);
	tp_reset(&o);
	tp_strn(&o, "k\xff", 2);
	fn(c, method, &o);
	tp_free(&o);
	free(n256);
	expect_usable(c);
}

/* ------------------------------------------------------------------ */
/* call / reply                                                        */
/* ------------------------------------------------------------------ */

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
	expect_quiet(c);

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
	code64 = filled(64, 'e');
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
	expect_quiet(c);
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
	expect_quiet(s);
	expect_quiet(c);
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
	expect_quiet(c);

	cid = expect_call(s, "kv", cc, "slow");
	check_bool(t_call_ok(s, "reply", "us", cid, "done"), true);
	check_str(t_ok(c, id1), "done");
	expect_quiet(c);

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
	expect_quiet(s);
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
	code65 = filled(65, 'e');
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
	expect_quiet(c);
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
	expect_quiet(s);

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
	expect_quiet(c);

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
	char *fill = filled(BUSY_PAYLOAD, 'p');
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
	expect_quiet(s);
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
	char *fill = filled(BUSY_PAYLOAD, 'p');
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
	expect_quiet(c);
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
	expect_quiet(c);
	/* Changing the value keeps the registration: no call ends. */
	t_call_ok(s, "update", "ss", "kv", "new value");
	expect_quiet(c);

	check_bool(t_call_ok(s, "unregister", "s", "kv"), true);
	expect_errors_any_order(c, &id1, 1, "down", at_once_ms());
	expect_quiet(c);
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
	expect_quiet(x);
	expect_quiet(c);
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
	expect_quiet(c);
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
	expect_quiet(s);
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
	expect_quiet(s);
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
	expect_quiet(c);
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

/* ------------------------------------------------------------------ */
/* groups: join / leave / members / publish                            */
/* ------------------------------------------------------------------ */

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
		char *n256 = filled(256, 'g');

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
	expect_quiet(x);

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
	expect_quiet(a);
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
	expect_quiet(a);
	expect_quiet(b);

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
	expect_quiet(a);
	expect_quiet(b);
	expect_quiet(c);

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
	char *fill = filled(BUSY_PAYLOAD, 'p');
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
	expect_quiet(m1);
	for (uint64_t i = 0; i < n2; i++)
		ck_assert_uint_eq(o_uint(at(expect_publish(m2, "room", cx), 0)),
		    got2[i]);
	expect_quiet(m2);

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

/* ------------------------------------------------------------------ */
/* connection ids as targets of send and monitor                       */
/* ------------------------------------------------------------------ */

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
	expect_quiet(a);

	/* No such connection: never given out, 0, closed. */
	t_call_err(b, "not_found", "send", "us", (uint64_t)NO_CONN, "x");
	t_call_err(b, "not_found", "send", "us", (uint64_t)0, "x");
	t_close(c);
	t_wait_gauges(o, 3, 1, 0);
	t_call_err(b, "not_found", "send", "us", cc, "x");
	/* Neither a name nor an id. */
	for_bad_targets(b, "send", bad_target);
	expect_quiet(a);
	ck_assert_uint_eq(t_stat(o, "messages"), msgs + 3 + 500);

	tp_free(&p);
	t_close(a);
	t_close(b);
	t_close(o);
	t_daemon_stop(&d);
}
END_TEST

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
	expect_quiet(b);
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
	expect_quiet(b);

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
	expect_quiet(b);
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
	expect_quiet(b);

	tp_free(&p);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* update, keys, register_many, gen                                    */
/* ------------------------------------------------------------------ */

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
	expect_quiet(b);

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
	expect_quiet(b);

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

/* A register_many request of n entries: names[i] with the str value
 * values[i], or no value when values is NULL or values[i] is NULL. */
static uint32_t
register_many(struct tclient *c, const char *const *names,
    const char *const *values)
{
	struct tpack p;
	uint32_t id, n = 0;

	while (names[n] != NULL)
		n++;
	tp_init(&p);
	id = rq_begin(c, &p, "register_many", 1);
	tp_arr(&p, n);
	for (uint32_t i = 0; i < n; i++) {
		bool v = values != NULL && values[i] != NULL;

		tp_arr(&p, v ? 2 : 1);
		tp_str(&p, names[i]);
		if (v)
			tp_str(&p, values[i]);
	}
	rq_send(c, &p);
	tp_free(&p);
	return id;
}

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

/* The whole response to a request of c (success or not) and its encoded
 * size; *ok tells success. */
static size_t
response_size(struct tclient *c, uint32_t id, bool *ok)
{
	msgpack_object *o = t_recv(c, -1);

	ck_assert_msg(o != NULL, "no response to msgid %u", id);
	ck_assert_uint_eq(o->via.array.size, 4);
	ck_assert_uint_eq(o_uint(at(o, 1)), id);
	*ok = at(o, 2)->type == MSGPACK_OBJECT_NIL;
	if (!*ok)
		check_str(at(at(o, 2), 0), "too_large");
	return packed_size(o);
}

/* join group with a str value of vlen bytes. */
static void
join_with_str(struct tclient *c, const char *group, size_t vlen)
{
	char *v = filled(vlen, 'v');

	t_call_ok(c, "join", "ss", group, v);
	free(v);
}

/*
 * members answers too_large only when the response would be larger than
 * max_message: one of exactly max_message bytes is served, one byte more
 * is refused.
 */
START_TEST(test_members_too_large)
{
	struct tdaemon d;
	struct tclient *o, *a, *b;
	size_t size, l;
	bool ok;

	t_daemon_start(&d, "--max-message", "1024", NULL);
	o = t_connect(d.path);
	a = t_connect(d.path);
	b = t_connect(d.path);
	join_with_str(a, "g", 500);
	join_with_str(b, "g", 300);
	/* str16 values from 256 bytes: one more byte of value, one more
	 * byte of response. */
	size = response_size(o, t_request(o, "members", "s", "g"), &ok);
	ck_assert(ok);
	ck_assert_uint_lt(size, 1024);
	l = 300 + 1024 - size;
	ck_assert_uint_ge(l, 256);

	check_bool(t_call_ok(b, "leave", "s", "g"), true);
	join_with_str(b, "g", l);
	size = response_size(o, t_request(o, "members", "s", "g"), &ok);
	ck_assert_msg(ok, "a members response of 1024 bytes was refused with "
	    "max_message 1024");
	ck_assert_uint_eq(size, 1024);

	check_bool(t_call_ok(b, "leave", "s", "g"), true);
	join_with_str(b, "g", l + 1);
	response_size(o, t_request(o, "members", "s", "g"), &ok);
	ck_assert_msg(!ok, "a members response of 1025 bytes was served with "
	    "max_message 1024");
	expect_usable(o);

	t_close(o);
	t_close(a);
	t_close(b);
	t_daemon_stop(&d);
}
END_TEST

/* The same for keys. */
START_TEST(test_keys_too_large)
{
	struct tdaemon d;
	struct tclient *o, *a;
	char *n;
	size_t size, l;
	uint64_t ca;
	bool ok;

	t_daemon_start(&d, "--max-message", "1024", NULL);
	o = t_connect(d.path);
	a = t_connect(d.path);
	ca = t_conn_id(a);
	for (char ch = 'a'; ch <= 'c'; ch++) {
		n = filled(250, ch);
		t_call_ok(a, "register", "s", n);
		free(n);
	}
	n = filled(100, 'd');
	t_call_ok(a, "register", "s", n);
	free(n);
	/* str8 names of 32 to 255 bytes: one byte of name, one of response. */
	size = response_size(o, t_request(o, "keys", "u", ca), &ok);
	ck_assert(ok);
	ck_assert_uint_lt(size, 1024);
	l = 100 + 1024 - size;
	ck_assert_uint_le(l + 1, 255);

	n = filled(100, 'd');
	check_bool(t_call_ok(a, "unregister", "s", n), true);
	free(n);
	n = filled(l, 'd');
	t_call_ok(a, "register", "s", n);
	size = response_size(o, t_request(o, "keys", "u", ca), &ok);
	ck_assert_msg(ok, "a keys response of 1024 bytes was refused with "
	    "max_message 1024");
	ck_assert_uint_eq(size, 1024);
	check_bool(t_call_ok(a, "unregister", "s", n), true);
	free(n);

	n = filled(l + 1, 'd');
	t_call_ok(a, "register", "s", n);
	free(n);
	response_size(o, t_request(o, "keys", "u", ca), &ok);
	ck_assert_msg(!ok, "a keys response of 1025 bytes was served with "
	    "max_message 1024");
	expect_usable(o);

	t_close(o);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc;

	tc = tcase_create("methods");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_register_whereis_unregister);
	tcase_add_test(tc, test_value_types);
	tcase_add_test(tc, test_bad_params);
	tcase_add_test(tc, test_send);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_backpressure);
	tcase_add_test(tc, test_read_pause);
	tcase_add_test(tc, test_monitor);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_list_after_any_str);
	tcase_add_test(tc, test_list_page_size);
	tcase_add_test(tc, test_stats);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifeline");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_lifeline_sigkill);
	tcase_add_test(tc, test_oneshot_eof);
	tcase_add_test(tc, test_mass_disconnect);
	tcase_add_test(tc, test_abrupt_close);
	tcase_add_test(tc, test_sigterm_with_clients);
	suite_add_tcase(s, tc);

	tc = tcase_create("framing");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pipeline_10000);
	tcase_add_test(tc, test_trickle);
	tcase_add_test(tc, test_invalid_msgpack);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_nesting);
	tcase_add_test(tc, test_nesting_empty_innermost);
	tcase_add_test(tc, test_non_requests);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_limit_names);
	tcase_add_test(tc, test_limit_monitors);
	tcase_add_test(tc, test_limit_conns);
	tcase_add_test(tc, test_cmdline);
	tcase_add_test(tc, test_socket_paths);
	suite_add_tcase(s, tc);

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

	tc = tcase_create("targets");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_send_conn);
	tcase_add_test(tc, test_monitor_conn);
	suite_add_tcase(s, tc);

	tc = tcase_create("entries");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_keys_sorted_many);
	tcase_add_test(tc, test_register_many);
	tcase_add_test(tc, test_register_many_limit);
	tcase_add_test(tc, test_gen);
	tcase_add_test(tc, test_members_too_large);
	tcase_add_test(tc, test_keys_too_large);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
