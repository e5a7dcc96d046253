/*
 * check_daemon_limits.c: integration tests of the daemon's bounds and
 * framing: pipelined and trickled input, invalid msgpack, messages too
 * large or nested too deep, valid msgpack that is not a request, the
 * per-connection and daemon-wide limits, replies capped by max_message,
 * the command line and socket paths.
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

/* The next object is the push [2, "error", [code, str]]. */
static void
expect_error_push(struct tclient *c, const char *code)
{
	msgpack_object *pa = t_push(c, "error");

	ck_assert_uint_eq(pa->via.array.size, 2);
	check_str(at(pa, 0), code);
	ck_assert_int_eq(at(pa, 1)->type, MSGPACK_OBJECT_STR);
}

/* Fatal input: the error push with code, then EOF. */
static void
expect_fatal(struct tclient *c, const char *code)
{
	expect_error_push(c, code);
	expect_eof(c);
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
	char *val = t_filled(300, 'v');	/* a str16 header to split too */

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

	t_expect_quiet(a);
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
	t_expect_quiet(a);

	tp_free(&p);
	t_close(a);
	t_daemon_stop(&d);
}
END_TEST

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
	t_expect_quiet(c);

	t_close(c);
	t_daemon_stop(&d);
}
END_TEST

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
	char *v = t_filled(vlen, 'v');

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
		n = t_filled(250, ch);
		t_call_ok(a, "register", "s", n);
		free(n);
	}
	n = t_filled(100, 'd');
	t_call_ok(a, "register", "s", n);
	free(n);
	/* str8 names of 32 to 255 bytes: one byte of name, one of response. */
	size = response_size(o, t_request(o, "keys", "u", ca), &ok);
	ck_assert(ok);
	ck_assert_uint_lt(size, 1024);
	l = 100 + 1024 - size;
	ck_assert_uint_le(l + 1, 255);

	n = t_filled(100, 'd');
	check_bool(t_call_ok(a, "unregister", "s", n), true);
	free(n);
	n = t_filled(l, 'd');
	t_call_ok(a, "register", "s", n);
	size = response_size(o, t_request(o, "keys", "u", ca), &ok);
	ck_assert_msg(ok, "a keys response of 1024 bytes was refused with "
	    "max_message 1024");
	ck_assert_uint_eq(size, 1024);
	check_bool(t_call_ok(a, "unregister", "s", n), true);
	free(n);

	n = t_filled(l + 1, 'd');
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

static Suite *
limits_suite(void)
{
	Suite *s = suite_create("daemon_limits");
	TCase *tc;

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

	tc = tcase_create("entries");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_members_too_large);
	tcase_add_test(tc, test_keys_too_large);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(limits_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
