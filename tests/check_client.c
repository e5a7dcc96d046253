/*
 * check_client.c: tests of libprocreg (include/procreg.h) against the real
 * procregd.
 *
 * Every test starts its own daemon on a private socket (testlib) and talks
 * to it through the public API only; testlib's raw clients are used where
 * a second, independent view of the daemon helps.  Every wait is bounded;
 * no test asserts on elapsed time.
 *
 * Why one file of this length: it is the library's whole public API in
 * one suite, and its helpers (connecting with retries, event checks, the
 * reconnect callbacks' record, killing and restarting the daemon) are
 * shared by every family of tests.  Its test cases follow the API's
 * families (connect, names, events, reconnect, protocol2, part2); each
 * could become a tests/check_client_<family>.c over a shared helper file
 * once the Makefile has a rule per binary (today one explicit rule links
 * tests/check_client against libprocreg) -- a split not done yet.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "procreg.h"
#include "testlib.h"

#define EV_WAIT_MS	5000	/* the longest a test waits for one event */
#define ROUNDS		500	/* bounded polling loops: rounds of ROUND_US */
#define ROUND_US	10000

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Connect with opts (path filled in by the caller), retrying while the
 * daemon has bound its socket but does not listen yet. */
static procreg_t *
xconnect_opts(const struct procreg_options *o)
{
	procreg_t *p = NULL;
	int r = PROCREG_E_CONNECT;

	for (int i = 0; i < ROUNDS; i++) {
		r = procreg_connect(&p, o);
		if (r != PROCREG_E_CONNECT)
			break;
		procreg_free(p);
		p = NULL;
		usleep(2000);
	}
	ck_assert_msg(r == PROCREG_OK, "procreg_connect: %d (%s)", r,
	    p != NULL ? procreg_errmsg(p) : "?");
	ck_assert_ptr_nonnull(p);
	return p;
}

static procreg_t *
xconnect(const char *path)
{
	struct procreg_options o = { 0 };

	o.path = path;
	return xconnect_opts(&o);
}

/* Assert a call returned r == want, showing errmsg otherwise. */
#define CK_CALL(p, call, want) do {					\
	int r_ = (call);						\
	ck_assert_msg(r_ == (want), "%s: got %d (%s), want %d", #call,	\
	    r_, procreg_errmsg(p), (int)(want));			\
} while (0)

#define CK_OK(p, call)	CK_CALL(p, call, PROCREG_OK)

/* The next event, waiting up to EV_WAIT_MS; fails the test (naming the
 * caller's line) when none comes. */
static struct procreg_event *
xevent_at(procreg_t *p, int line)
{
	struct procreg_event *ev = NULL;
	int r = procreg_next_event(p, EV_WAIT_MS, &ev);

	ck_assert_msg(r == PROCREG_OK, "line %d: procreg_next_event: %d (%s)",
	    line, r, procreg_errmsg(p));
	ck_assert_ptr_nonnull(ev);
	return ev;
}

#define xevent(p)	xevent_at((p), __LINE__)

/* Nothing is queued: checked after a sync call, whose response comes
 * after anything the daemon had sent before it. */
static void
expect_no_event(procreg_t *p)
{
	struct procreg_stats st;
	struct procreg_event *ev = NULL;
	int r;

	CK_OK(p, procreg_stats(p, &st));
	r = procreg_next_event(p, 0, &ev);
	ck_assert_msg(r == PROCREG_E_TIMEOUT, "unexpected event: r=%d kind=%d "
	    "name=%s reason=%s", r, ev ? (int)ev->kind : -1,
	    ev && ev->name ? ev->name : "-",
	    ev && ev->reason ? ev->reason : "-");
	ck_assert_ptr_null(ev);
}

static void
check_bytes(const void *got, size_t got_len, const void *want,
    size_t want_len)
{
	ck_assert_uint_eq(got_len, want_len);
	ck_assert_ptr_nonnull(got);
	ck_assert_msg(memcmp(got, want, want_len) == 0, "bytes differ");
}

static void
check_json(const void *mp, size_t len, const char *want)
{
	char buf[512];
	int n = procreg_format_json(buf, sizeof(buf), mp, len);

	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_str_eq(buf, want);
}

static void
check_message(const struct procreg_event *ev, const char *name,
    uint64_t sender, const void *payload, size_t len)
{
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_str_eq(ev->name, name);
	ck_assert_uint_eq(ev->sender, sender);
	check_bytes(ev->payload, ev->payload_len, payload, len);
}

static void
check_down(const struct procreg_event *ev, uint64_t ref, const char *name,
    const char *reason)
{
	ck_assert_msg(ev->kind == PROCREG_EV_DOWN, "expected a down, got "
	    "kind %d", (int)ev->kind);
	ck_assert_uint_eq(ev->ref, ref);
	ck_assert_str_eq(ev->name, name);
	ck_assert_str_eq(ev->reason, reason);
}

/* Owner's own checks of an entry. */
static void
check_entry(const struct procreg_entry *e, const char *name, uint64_t conn)
{
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->name, name);
	ck_assert_uint_eq(e->conn, conn);
	ck_assert_int_eq(e->pid, (int64_t)getpid());
	ck_assert_int_eq(e->uid, (int64_t)getuid());
	ck_assert_int_eq(e->gid, (int64_t)getgid());
	ck_assert_uint_gt(e->since_ms, 0);
	ck_assert_ptr_nonnull(e->value);
}

/* Wait (bounded) until whereis of name from p is absent. */
static void
wait_absent(procreg_t *p, const char *name)
{
	struct procreg_entry *e = NULL;

	for (int i = 0; i < ROUNDS; i++) {
		CK_OK(p, procreg_whereis(p, name, &e));
		if (e == NULL)
			return;
		procreg_entry_free(e);
		usleep(ROUND_US);
	}
	ck_abort_msg("%s is still registered", name);
}

/* Is anything accepting connections on path? */
static bool
connectable(const char *path)
{
	struct sockaddr_un sun;
	int fd, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return false;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return r == 0;
}

/* SIGKILL the daemon and reap it; its socket file stays behind. */
static void
kill_daemon(struct tdaemon *d)
{
	int status;

	ck_assert_int_eq(kill(d->pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(d->pid, &status, 0), d->pid);
	ck_assert(WIFSIGNALED(status));
}

/*
 * Start a new procregd on d's (stale) socket path and wait until it
 * accepts connections; d->pid becomes the new daemon, so that
 * t_daemon_stop stops it.
 */
static void
restart_daemon(struct tdaemon *d)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (!getenv("T_DAEMON_LOG"))
			(void)!freopen("/dev/null", "w", stderr);
		execl(t_procregd(), t_procregd(), "-s", d->path, (char *)NULL);
		_exit(127);
	}
	d->pid = pid;
	for (int i = 0; i < ROUNDS * 2; i++) {
		if (connectable(d->path))
			return;
		ck_assert_msg(t_daemon_alive(d), "procregd exited at restart");
		usleep(ROUND_US);
	}
	ck_abort_msg("procregd did not restart");
}

/* ------------------------------------------------------------------ */
/* 1, 2. connect, hello                                                */
/* ------------------------------------------------------------------ */

START_TEST(test_connect_explicit)
{
	struct tdaemon d;
	struct procreg_hello h;
	procreg_t *p, *q;

	t_daemon_start(&d, NULL);
	p = xconnect(d.path);
	ck_assert_int_ge(procreg_fd(p), 0);
	/* The first connection of a fresh daemon is conn 1. */
	ck_assert_uint_eq(procreg_conn_id(p), 1);
	CK_OK(p, procreg_hello(p, &h));
	ck_assert_uint_eq(h.conn, procreg_conn_id(p));
	ck_assert_ptr_nonnull(procreg_errmsg(p));

	q = xconnect(d.path);
	ck_assert_int_ge(procreg_fd(q), 0);
	ck_assert_int_ne(procreg_fd(q), procreg_fd(p));
	ck_assert_uint_eq(procreg_conn_id(q), 2);
	CK_OK(q, procreg_hello(q, &h));
	ck_assert_uint_eq(h.conn, 2);
	procreg_free(q);
	procreg_free(p);
	procreg_free(NULL);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_connect_label_timeout_opts)
{
	struct tdaemon d;
	struct procreg_options o = { 0 };
	struct procreg_hello h;
	procreg_t *p;

	t_daemon_start(&d, NULL);
	o.path = d.path;
	o.label = "check-client label";
	o.timeout_ms = 3000;
	p = xconnect_opts(&o);
	CK_OK(p, procreg_hello(p, &h));
	ck_assert_uint_eq(h.conn, procreg_conn_id(p));
	procreg_free(p);
	/* An empty label is valid too. */
	o.label = "";
	p = xconnect_opts(&o);
	CK_OK(p, procreg_hello(p, &h));
	procreg_free(p);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_connect_default_path)
{
	struct tdaemon d;
	struct procreg_options o = { 0 };
	char buf[256];
	procreg_t *p;
	struct procreg_hello h;

	t_daemon_start(&d, NULL);
	ck_assert_int_eq(setenv("PROCREG_SOCKET", d.path, 1), 0);
	ck_assert_int_eq(procreg_default_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, d.path);

	p = xconnect_opts(NULL);
	CK_OK(p, procreg_hello(p, &h));
	ck_assert_uint_eq(h.conn, procreg_conn_id(p));
	ck_assert_uint_eq(h.conn, 1);
	procreg_free(p);

	/* Options with path NULL resolve the default path as well. */
	o.label = "default";
	p = xconnect_opts(&o);
	ck_assert_uint_eq(procreg_conn_id(p), 2);
	procreg_free(p);
	ck_assert_int_eq(unsetenv("PROCREG_SOCKET"), 0);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_connect_missing)
{
	char dir[] = "/tmp/procreg-client.XXXXXX";
	char path[128];
	struct procreg_options o = { 0 };
	procreg_t *p = NULL;
	int r;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/nothing.sock", dir);
	o.path = path;
	r = procreg_connect(&p, &o);
	ck_assert_int_eq(r, PROCREG_E_CONNECT);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(procreg_errmsg(p));
	ck_assert_uint_gt(strlen(procreg_errmsg(p)), 0);
	ck_assert_int_eq(procreg_fd(p), -1);
	procreg_free(p);

	/* Same with auto_reconnect: connect itself does not retry for ever. */
	o.auto_reconnect = true;
	p = NULL;
	r = procreg_connect(&p, &o);
	ck_assert_int_eq(r, PROCREG_E_CONNECT);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_gt(strlen(procreg_errmsg(p)), 0);
	procreg_free(p);

	/* Through PROCREG_SOCKET and opts NULL. */
	ck_assert_int_eq(setenv("PROCREG_SOCKET", path, 1), 0);
	p = NULL;
	r = procreg_connect(&p, NULL);
	ck_assert_int_eq(r, PROCREG_E_CONNECT);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_gt(strlen(procreg_errmsg(p)), 0);
	procreg_free(p);
	ck_assert_int_eq(unsetenv("PROCREG_SOCKET"), 0);

	/* A path that cannot fit in sockaddr_un fails, with a message. */
	{
		char longpath[300];

		memset(longpath, 'x', sizeof(longpath) - 1);
		longpath[0] = '/';
		longpath[sizeof(longpath) - 1] = '\0';
		o.path = longpath;
		o.auto_reconnect = false;
		p = NULL;
		r = procreg_connect(&p, &o);
		ck_assert_int_lt(r, 0);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_gt(strlen(procreg_errmsg(p)), 0);
		procreg_free(p);
	}
	rmdir(dir);
}
END_TEST

START_TEST(test_evict)
{
	struct procreg_event *ev;
	struct tdaemon d;
	procreg_t *p, *q;
	uint64_t ref;

	/* The test runs as the daemon's user, an administrator. */
	t_daemon_start(&d, NULL);
	p = xconnect(d.path);
	q = xconnect(d.path);
	CK_OK(p, procreg_register(p, "evictee", NULL, 0, NULL));
	CK_OK(q, procreg_monitor(q, "evictee", &ref));
	CK_OK(q, procreg_evict(q, "evictee"));
	CK_CALL(q, procreg_evict(q, "evictee"), PROCREG_E_NOT_FOUND);
	CK_OK(q, procreg_next_event(q, 5000, &ev));
	ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
	ck_assert_uint_eq(ev->ref, ref);
	ck_assert_str_eq(ev->reason, "evicted");
	procreg_event_free(ev);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_FORBIDDEN), "forbidden");
	ck_assert_str_eq(procreg_strstatus(PROCREG_E_FORBIDDEN), "forbidden");
	/* The holder lost the name, not its connection. */
	CK_OK(p, procreg_register(p, "evictee", NULL, 0, NULL));
	procreg_free(p);
	procreg_free(q);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_hello)
{
	struct tdaemon d;
	struct procreg_hello h, h2;
	procreg_t *p, *q;

	t_daemon_start(&d, NULL);
	p = xconnect(d.path);
	q = xconnect(d.path);
	memset(&h, 0x55, sizeof(h));
	CK_OK(p, procreg_hello(p, &h));
	ck_assert_str_eq(h.version, "0.1.0");
	ck_assert_uint_eq(h.protocol, 3);
	ck_assert_uint_eq(h.conn, procreg_conn_id(p));
	ck_assert_uint_eq(strlen(h.boot), 32);
	for (int i = 0; i < 32; i++)
		ck_assert_msg(strchr("0123456789abcdef", h.boot[i]) != NULL &&
		    h.boot[i] != '\0', "boot is not lowercase hex: %s", h.boot);
	ck_assert_uint_eq(h.max_message, 1048576);

	/* Same daemon, same boot; another connection, another id. */
	CK_OK(q, procreg_hello(q, &h2));
	ck_assert_str_eq(h2.boot, h.boot);
	ck_assert_uint_ne(h2.conn, h.conn);
	ck_assert_uint_eq(h2.conn, procreg_conn_id(q));
	/* hello again on the same connection changes nothing. */
	CK_OK(p, procreg_hello(p, &h2));
	ck_assert_uint_eq(h2.conn, h.conn);
	procreg_free(q);
	procreg_free(p);
	t_daemon_stop(&d);

	/* A custom max_message shows up in hello. */
	t_daemon_start(&d, "--max-message", "65536", NULL);
	p = xconnect(d.path);
	CK_OK(p, procreg_hello(p, &h2));
	ck_assert_uint_eq(h2.max_message, 65536);
	ck_assert_str_ne(h2.boot, h.boot);
	procreg_free(p);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 3. register, whereis, unregister                                    */
/* ------------------------------------------------------------------ */

START_TEST(test_register_values)
{
	static const unsigned char map_a1[] = { 0x81, 0xa1, 'a', 0x01 };
	static const unsigned char hello_mp[] = { 0xa5, 'h', 'e', 'l', 'l',
	    'o' };
	static const unsigned char nil_mp[] = { 0xc0 };
	static const unsigned char arr_mp[] = { 0x93, 0x01, 0xc3, 0xa1, 'x' };
	struct tdaemon d;
	struct procreg_entry *e = NULL, *w = NULL;
	unsigned char ibuf[16];
	size_t ilen;
	procreg_t *p;
	uint64_t me;

	t_daemon_start(&d, NULL);
	p = xconnect(d.path);
	me = procreg_conn_id(p);

	CK_OK(p, procreg_register_str(p, "greeter", "hello", &e));
	check_entry(e, "greeter", me);
	/* The first registration of a fresh daemon is gen 1. */
	ck_assert_uint_eq(e->gen, 1);
	check_bytes(e->value, e->value_len, hello_mp, sizeof(hello_mp));
	check_json(e->value, e->value_len, "\"hello\"");
	procreg_entry_free(e);
	CK_OK(p, procreg_whereis(p, "greeter", &w));
	check_entry(w, "greeter", me);
	check_bytes(w->value, w->value_len, hello_mp, sizeof(hello_mp));
	ck_assert_uint_eq(w->gen, 1);
	procreg_entry_free(w);

	CK_OK(p, procreg_register_int(p, "answer", 42, &e));
	check_entry(e, "answer", me);
	ck_assert_uint_eq(e->gen, 2);
	ilen = procreg_pack_int(ibuf, sizeof(ibuf), 42);
	ck_assert_uint_eq(ilen, 1);
	ck_assert_uint_eq(ibuf[0], 0x2a);
	check_bytes(e->value, e->value_len, ibuf, ilen);
	check_json(e->value, e->value_len, "42");
	procreg_entry_free(e);
	CK_OK(p, procreg_whereis(p, "answer", &w));
	check_json(w->value, w->value_len, "42");
	procreg_entry_free(w);

	CK_OK(p, procreg_register_int(p, "negative", -123456789012LL, &e));
	check_json(e->value, e->value_len, "-123456789012");
	procreg_entry_free(e);

	CK_OK(p, procreg_register(p, "map", map_a1, sizeof(map_a1), &e));
	check_entry(e, "map", me);
	check_bytes(e->value, e->value_len, map_a1, sizeof(map_a1));
	check_json(e->value, e->value_len, "{\"a\":1}");
	procreg_entry_free(e);
	CK_OK(p, procreg_whereis(p, "map", &w));
	check_bytes(w->value, w->value_len, map_a1, sizeof(map_a1));
	procreg_entry_free(w);

	CK_OK(p, procreg_register(p, "array", arr_mp, sizeof(arr_mp), NULL));
	CK_OK(p, procreg_whereis(p, "array", &w));
	check_entry(w, "array", me);
	check_bytes(w->value, w->value_len, arr_mp, sizeof(arr_mp));
	check_json(w->value, w->value_len, "[1,true,\"x\"]");
	procreg_entry_free(w);

	/* No value: nil. */
	CK_OK(p, procreg_register(p, "bare", NULL, 0, &e));
	check_entry(e, "bare", me);
	check_bytes(e->value, e->value_len, nil_mp, sizeof(nil_mp));
	check_json(e->value, e->value_len, "null");
	procreg_entry_free(e);
	CK_OK(p, procreg_register_str(p, "bare2", NULL, &e));
	check_bytes(e->value, e->value_len, nil_mp, sizeof(nil_mp));
	procreg_entry_free(e);
	/* An explicit nil value. */
	CK_OK(p, procreg_register(p, "nil", nil_mp, 1, &e));
	check_bytes(e->value, e->value_len, nil_mp, sizeof(nil_mp));
	procreg_entry_free(e);

	/* Absent: OK and NULL. */
	w = (struct procreg_entry *)&w;
	CK_OK(p, procreg_whereis(p, "absent", &w));
	ck_assert_ptr_null(w);

	/* A large value survives the round trip. */
	{
		size_t n = 300 * 1024;
		char *big = malloc(n + 1);
		unsigned char *mp = malloc(n + 8);
		size_t mlen;

		ck_assert_ptr_nonnull(big);
		ck_assert_ptr_nonnull(mp);
		for (size_t i = 0; i < n; i++)
			big[i] = (char)('a' + i % 26);
		big[n] = '\0';
		mlen = procreg_pack_str(mp, n + 8, big);
		ck_assert_uint_eq(mlen, n + 5);
		CK_OK(p, procreg_register_str(p, "big", big, &e));
		check_bytes(e->value, e->value_len, mp, mlen);
		procreg_entry_free(e);
		CK_OK(p, procreg_whereis(p, "big", &w));
		check_bytes(w->value, w->value_len, mp, mlen);
		procreg_entry_free(w);
		free(mp);
		free(big);
	}
	procreg_free(p);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_register_errors)
{
	struct tdaemon d;
	struct procreg_entry *e = NULL, *w = NULL;
	procreg_t *a, *b;
	char want[64];

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(a, procreg_register_str(a, "svc", "v", NULL));

	/* taken, by anyone, the caller included. */
	e = (struct procreg_entry *)&e;
	CK_CALL(a, procreg_register(a, "svc", NULL, 0, &e), PROCREG_E_TAKEN);
	ck_assert_ptr_null(e);
	CK_CALL(b, procreg_register_str(b, "svc", "other", &e),
	    PROCREG_E_TAKEN);
	ck_assert_ptr_null(e);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_TAKEN), "taken");
	snprintf(want, sizeof(want), "conn %" PRIu64, procreg_conn_id(a));
	ck_assert_msg(strstr(procreg_errmsg(b), want) != NULL,
	    "errmsg \"%s\" does not mention %s", procreg_errmsg(b), want);
	CK_CALL(b, procreg_register_int(b, "svc", 1, NULL), PROCREG_E_TAKEN);
	/* The value did not change. */
	CK_OK(b, procreg_whereis(b, "svc", &w));
	check_entry(w, "svc", procreg_conn_id(a));
	check_json(w->value, w->value_len, "\"v\"");
	procreg_entry_free(w);

	/* unregister: not_found, not_owner, then success. */
	CK_CALL(a, procreg_unregister(a, "nothing"), PROCREG_E_NOT_FOUND);
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	CK_CALL(b, procreg_unregister(b, "svc"), PROCREG_E_NOT_OWNER);
	ck_assert_msg(strstr(procreg_errmsg(b), want) != NULL,
	    "errmsg \"%s\" does not mention %s", procreg_errmsg(b), want);
	CK_OK(a, procreg_unregister(a, "svc"));
	CK_OK(b, procreg_whereis(b, "svc", &w));
	ck_assert_ptr_null(w);
	CK_CALL(a, procreg_unregister(a, "svc"), PROCREG_E_NOT_FOUND);
	/* Now b may take it. */
	CK_OK(b, procreg_register(b, "svc", NULL, 0, &e));
	check_entry(e, "svc", procreg_conn_id(b));
	procreg_entry_free(e);
	CK_OK(a, procreg_whereis(a, "svc", &w));
	ck_assert_uint_eq(w->conn, procreg_conn_id(b));
	procreg_entry_free(w);

	/* The lifeline: b's names vanish when b is freed. */
	procreg_free(b);
	wait_absent(a, "svc");
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_strstatus)
{
	static const int all[] = {
		PROCREG_OK, PROCREG_E_BAD_REQUEST, PROCREG_E_UNKNOWN_METHOD,
		PROCREG_E_TAKEN, PROCREG_E_NOT_FOUND, PROCREG_E_NOT_OWNER,
		PROCREG_E_BUSY, PROCREG_E_LIMIT, PROCREG_E_TOO_LARGE,
		PROCREG_E_FORBIDDEN, PROCREG_E_CALL_TIMEOUT, PROCREG_E_DOWN,
		PROCREG_E_STALE, PROCREG_E_UNAVAILABLE, PROCREG_E_OTHER,
		PROCREG_E_CONNECT, PROCREG_E_CLOSED,
		PROCREG_E_TIMEOUT, PROCREG_E_PROTOCOL, PROCREG_E_NOMEM,
		PROCREG_E_INVAL,
	};
	static const struct {
		int		 st;
		const char	*code;
	} codes[] = {
		{ PROCREG_E_BAD_REQUEST, "bad_request" },
		{ PROCREG_E_UNKNOWN_METHOD, "unknown_method" },
		{ PROCREG_E_TAKEN, "taken" },
		{ PROCREG_E_NOT_FOUND, "not_found" },
		{ PROCREG_E_NOT_OWNER, "not_owner" },
		{ PROCREG_E_BUSY, "busy" },
		{ PROCREG_E_LIMIT, "limit" },
		{ PROCREG_E_TOO_LARGE, "too_large" },
		{ PROCREG_E_FORBIDDEN, "forbidden" },
		{ PROCREG_E_CALL_TIMEOUT, "timeout" },
		{ PROCREG_E_DOWN, "down" },
		{ PROCREG_E_STALE, "stale" },
		{ PROCREG_E_UNAVAILABLE, "unavailable" },
	};
	size_t n = sizeof(all) / sizeof(all[0]);

	for (size_t i = 0; i < n; i++) {
		const char *s = procreg_strstatus(all[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_msg(strlen(s) > 0, "empty text for %d", all[i]);
		/* Each status has its own text. */
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(s, procreg_strstatus(all[j]));
	}
	/* Unknown numbers still get some text. */
	ck_assert_ptr_nonnull(procreg_strstatus(12345));
	ck_assert_uint_gt(strlen(procreg_strstatus(12345)), 0);
	ck_assert_uint_gt(strlen(procreg_strstatus(-12345)), 0);

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *c = procreg_status_code(codes[i].st);

		ck_assert_ptr_nonnull(c);
		ck_assert_str_eq(c, codes[i].code);
	}
	ck_assert_ptr_null(procreg_status_code(PROCREG_OK));
	ck_assert_ptr_null(procreg_status_code(PROCREG_E_OTHER));
	ck_assert_ptr_null(procreg_status_code(PROCREG_E_TIMEOUT));
	ck_assert_ptr_null(procreg_status_code(PROCREG_E_CONNECT));
	ck_assert_ptr_null(procreg_status_code(PROCREG_E_CLOSED));
	ck_assert_ptr_null(procreg_status_code(PROCREG_E_INVAL));
}
END_TEST

START_TEST(test_pack_and_json)
{
	unsigned char buf[64];
	char out[64];
	int n;

	/* pack_str: fixstr; too small a buffer gives 0. */
	ck_assert_uint_eq(procreg_pack_str(buf, sizeof(buf), "abc"), 4);
	ck_assert_uint_eq(buf[0], 0xa3);
	ck_assert_int_eq(memcmp(buf + 1, "abc", 3), 0);
	ck_assert_uint_eq(procreg_pack_str(buf, 3, "abc"), 0);
	ck_assert_uint_eq(procreg_pack_str(buf, sizeof(buf), ""), 1);
	ck_assert_uint_eq(buf[0], 0xa0);
	/* pack_int: shortest forms. */
	ck_assert_uint_eq(procreg_pack_int(buf, sizeof(buf), 0), 1);
	ck_assert_uint_eq(buf[0], 0x00);
	ck_assert_uint_eq(procreg_pack_int(buf, sizeof(buf), -1), 1);
	ck_assert_uint_eq(buf[0], 0xff);
	ck_assert_uint_eq(procreg_pack_int(buf, sizeof(buf), INT64_MIN), 9);
	check_json(buf, 9, "-9223372036854775808");
	ck_assert_uint_eq(procreg_pack_int(buf, sizeof(buf), INT64_MAX), 9);
	check_json(buf, 9, "9223372036854775807");
	ck_assert_uint_eq(procreg_pack_int(buf, 4, INT64_MAX), 0);

	/* JSON: escapes, nesting, bools, nil, bin. */
	{
		static const unsigned char s[] = { 0xa4, 'a', '"', '\\', '\n' };
		static const unsigned char m[] = { 0x82, 0xa1, 'k', 0x92, 0xc2,
		    0xc0, 0x01, 0xa1, 'v' };
		static const unsigned char bin[] = { 0xc4, 0x02, 'h', 'i' };

		check_json(s, sizeof(s), "\"a\\\"\\\\\\u000a\"");
		check_json(m, sizeof(m), "{\"k\":[false,null],\"1\":\"v\"}");
		check_json(bin, sizeof(bin), "\"hi\"");
		/* Truncation behaves like snprintf. */
		n = procreg_format_json(out, 5, m, sizeof(m));
		ck_assert_int_eq(n, (int)strlen("{\"k\":[false,null],\"1\":\"v\"}"));
		ck_assert_str_eq(out, "{\"k\"");
		n = procreg_format_json(NULL, 0, m, sizeof(m));
		ck_assert_int_eq(n, (int)strlen("{\"k\":[false,null],\"1\":\"v\"}"));
		/* Not msgpack (or truncated): -1 and an empty string. */
		out[0] = 'x';
		n = procreg_format_json(out, sizeof(out), m, 3);
		ck_assert_int_eq(n, -1);
		ck_assert_str_eq(out, "");
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* 4. send and events                                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_send_events)
{
	static const unsigned char raw[] = { 0x93, 0x01, 0xa3, 't', 'w', 'o',
	    0xc0 };
	struct tdaemon d;
	struct procreg_event *ev;
	unsigned char ping[8];
	size_t plen;
	procreg_t *a, *b;
	int r;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(a, procreg_register(a, "inbox", NULL, 0, NULL));

	/* Nothing queued: timeouts 0 and 100 answer E_TIMEOUT. */
	ev = (struct procreg_event *)&ev;
	r = procreg_next_event(a, 0, &ev);
	ck_assert_int_eq(r, PROCREG_E_TIMEOUT);
	ck_assert_ptr_null(ev);
	ev = (struct procreg_event *)&ev;
	r = procreg_next_event(a, 100, &ev);
	ck_assert_int_eq(r, PROCREG_E_TIMEOUT);
	ck_assert_ptr_null(ev);

	CK_OK(b, procreg_send_str(b, "inbox", "ping"));
	CK_OK(b, procreg_send(b, "inbox", raw, sizeof(raw)));
	plen = procreg_pack_str(ping, sizeof(ping), "ping");

	ev = xevent(a);
	check_message(ev, "inbox", procreg_conn_id(b), ping, plen);
	check_json(ev->payload, ev->payload_len, "\"ping\"");
	procreg_event_free(ev);
	ev = xevent(a);
	check_message(ev, "inbox", procreg_conn_id(b), raw, sizeof(raw));
	check_json(ev->payload, ev->payload_len, "[1,\"two\",null]");
	procreg_event_free(ev);
	expect_no_event(a);
	/* The sender got nothing. */
	expect_no_event(b);

	/* A send to oneself. */
	CK_OK(a, procreg_send_str(a, "inbox", "self"));
	ev = xevent(a);
	plen = procreg_pack_str(ping, sizeof(ping), "self");
	check_message(ev, "inbox", procreg_conn_id(a), ping, plen);
	procreg_event_free(ev);

	/* A large payload. */
	{
		size_t n = 200 * 1024;
		unsigned char *big = malloc(n + 5);

		ck_assert_ptr_nonnull(big);
		big[0] = 0xc6;		/* bin 32 */
		big[1] = (unsigned char)(n >> 24);
		big[2] = (unsigned char)(n >> 16);
		big[3] = (unsigned char)(n >> 8);
		big[4] = (unsigned char)n;
		for (size_t i = 0; i < n; i++)
			big[5 + i] = (unsigned char)(i * 7);
		CK_OK(b, procreg_send(b, "inbox", big, n + 5));
		ev = xevent(a);
		ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
		check_bytes(ev->payload, ev->payload_len, big, n + 5);
		procreg_event_free(ev);
		free(big);
	}

	/* not_found for an unknown name; procreg_event_free(NULL) is fine. */
	CK_CALL(b, procreg_send_str(b, "nobody", "x"), PROCREG_E_NOT_FOUND);
	CK_CALL(b, procreg_send(b, "nobody", raw, sizeof(raw)),
	    PROCREG_E_NOT_FOUND);
	procreg_event_free(NULL);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_send_order_1000)
{
	struct tdaemon d;
	procreg_t *a, *b, *c;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	c = xconnect(d.path);
	CK_OK(a, procreg_register(a, "q", NULL, 0, NULL));
	for (int i = 0; i < 1000; i++) {
		unsigned char buf[16];
		size_t n = procreg_pack_int(buf, sizeof(buf), i);

		CK_OK(b, procreg_send(b, "q", buf, n));
		/* A second sender, interleaved. */
		if (i % 10 == 0)
			CK_OK(c, procreg_send(c, "q", buf, n));
	}
	{
		int next_b = 0, next_c = 0;

		for (int k = 0; k < 1100; k++) {
			struct procreg_event *ev = xevent(a);
			unsigned char buf[16];
			size_t n;

			ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
			ck_assert_str_eq(ev->name, "q");
			if (ev->sender == procreg_conn_id(b)) {
				n = procreg_pack_int(buf, sizeof(buf), next_b);
				next_b++;
			} else {
				ck_assert_uint_eq(ev->sender,
				    procreg_conn_id(c));
				n = procreg_pack_int(buf, sizeof(buf), next_c);
				next_c += 10;
			}
			check_bytes(ev->payload, ev->payload_len, buf, n);
			procreg_event_free(ev);
		}
		ck_assert_int_eq(next_b, 1000);
		ck_assert_int_eq(next_c, 1000);
	}
	expect_no_event(a);
	procreg_free(c);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 5. pushes during synchronous calls                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_pushes_during_calls)
{
	struct tdaemon d;
	struct procreg_entry *e, **v;
	struct procreg_stats st;
	struct procreg_hello h;
	uint64_t ref;
	size_t n;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(a, procreg_register(a, "x", NULL, 0, NULL));
	for (int i = 0; i < 100; i++) {
		unsigned char buf[16];

		CK_OK(b, procreg_send(b, "x", buf, procreg_pack_int(buf,
		    sizeof(buf), i)));
	}
	/* Every push is now in a's stream, ahead of any reply to a. */
	CK_OK(a, procreg_whereis(a, "x", &e));
	check_entry(e, "x", procreg_conn_id(a));
	procreg_entry_free(e);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.messages, 100);
	CK_OK(a, procreg_hello(a, &h));
	CK_OK(a, procreg_list(a, NULL, &v, &n));
	ck_assert_uint_eq(n, 1);
	procreg_entries_free(v, n);
	CK_OK(a, procreg_register(a, "y", NULL, 0, NULL));
	CK_CALL(a, procreg_register(a, "y", NULL, 0, NULL), PROCREG_E_TAKEN);
	CK_OK(a, procreg_monitor(a, "y", &ref));
	/* Messages to a's own names, after b's. */
	for (int i = 100; i < 105; i++) {
		unsigned char buf[16];

		CK_OK(a, procreg_send(a, "x", buf, procreg_pack_int(buf,
		    sizeof(buf), i)));
	}
	CK_OK(a, procreg_whereis(a, "x", &e));
	procreg_entry_free(e);

	for (int i = 0; i < 105; i++) {
		struct procreg_event *ev;
		unsigned char buf[16];
		size_t len = procreg_pack_int(buf, sizeof(buf), i);

		/* Queued: no waiting needed. */
		ck_assert_int_eq(procreg_next_event(a, 0, &ev), PROCREG_OK);
		check_message(ev, "x", i < 100 ? procreg_conn_id(b) :
		    procreg_conn_id(a), buf, len);
		procreg_event_free(ev);
	}
	expect_no_event(a);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 6. monitor, demonitor                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_monitor)
{
	struct tdaemon d;
	struct procreg_event *ev;
	uint64_t r1, r2, r3, r4, r5;
	bool active;
	procreg_t *a, *b, *c;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	c = xconnect(d.path);

	/* unregistered */
	CK_OK(b, procreg_register(b, "svc", NULL, 0, NULL));
	CK_OK(a, procreg_monitor(a, "svc", &r1));
	expect_no_event(a);
	CK_OK(b, procreg_unregister(b, "svc"));
	ev = xevent(a);
	check_down(ev, r1, "svc", "unregistered");
	procreg_event_free(ev);
	expect_no_event(a);

	/* disconnected: the owner's handle is freed */
	CK_OK(b, procreg_register_str(b, "svc", "again", NULL));
	CK_OK(a, procreg_monitor(a, "svc", &r2));
	ck_assert_uint_ne(r2, r1);
	procreg_free(b);
	ev = xevent(a);
	check_down(ev, r2, "svc", "disconnected");
	procreg_event_free(ev);

	/* noproc, with the returned ref */
	CK_OK(a, procreg_monitor(a, "ghost", &r3));
	ck_assert_uint_ne(r3, r2);
	ck_assert_uint_ne(r3, r1);
	ev = xevent(a);
	check_down(ev, r3, "ghost", "noproc");
	procreg_event_free(ev);
	/* A fired monitor is no longer active. */
	CK_OK(a, procreg_demonitor(a, r3, &active));
	ck_assert(!active);

	/* demonitor: true then false, and the down never comes */
	CK_OK(c, procreg_register(c, "z", NULL, 0, NULL));
	CK_OK(a, procreg_monitor(a, "z", &r4));
	active = false;
	CK_OK(a, procreg_demonitor(a, r4, &active));
	ck_assert(active);
	active = true;
	CK_OK(a, procreg_demonitor(a, r4, &active));
	ck_assert(!active);
	CK_OK(a, procreg_demonitor(a, 999999, NULL));
	CK_OK(c, procreg_unregister(c, "z"));
	expect_no_event(a);

	/* Several monitors on one name all fire; and one on one's own name. */
	CK_OK(a, procreg_register(a, "mine", NULL, 0, NULL));
	CK_OK(a, procreg_monitor(a, "mine", &r4));
	CK_OK(c, procreg_monitor(c, "mine", &r5));
	CK_OK(a, procreg_unregister(a, "mine"));
	ev = xevent(a);
	check_down(ev, r4, "mine", "unregistered");
	procreg_event_free(ev);
	ev = xevent(c);
	check_down(ev, r5, "mine", "unregistered");
	procreg_event_free(ev);
	expect_no_event(a);
	expect_no_event(c);
	procreg_free(c);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 7. list                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_list)
{
	static const char *const names_a[] = { "svc.b", "svc.c", "other",
	    "svc" };
	static const char *const names_b[] = { "svc.a", "zeta", "svc.aa" };
	struct tdaemon d;
	struct procreg_entry **v = NULL;
	size_t n = 99;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);

	CK_OK(a, procreg_list(a, NULL, &v, &n));
	ck_assert_uint_eq(n, 0);
	procreg_entries_free(v, n);

	for (size_t i = 0; i < 4; i++)
		CK_OK(a, procreg_register_int(a, names_a[i], (int64_t)i, NULL));
	for (size_t i = 0; i < 3; i++)
		CK_OK(b, procreg_register_str(b, names_b[i], names_b[i], NULL));

	CK_OK(a, procreg_list(a, "svc.", &v, &n));
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(v[0]->name, "svc.a");
	ck_assert_uint_eq(v[0]->conn, procreg_conn_id(b));
	check_json(v[0]->value, v[0]->value_len, "\"svc.a\"");
	ck_assert_str_eq(v[1]->name, "svc.aa");
	ck_assert_uint_eq(v[1]->conn, procreg_conn_id(b));
	ck_assert_str_eq(v[2]->name, "svc.b");
	ck_assert_uint_eq(v[2]->conn, procreg_conn_id(a));
	check_json(v[2]->value, v[2]->value_len, "0");
	ck_assert_str_eq(v[3]->name, "svc.c");
	check_json(v[3]->value, v[3]->value_len, "1");
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(v[i]->pid, (int64_t)getpid());
		ck_assert_uint_gt(v[i]->since_ms, 0);
	}
	procreg_entries_free(v, n);

	/* All, in byte order, with NULL and "" alike. */
	{
		static const char *const all[] = { "other", "svc", "svc.a",
		    "svc.aa", "svc.b", "svc.c", "zeta" };

		CK_OK(b, procreg_list(b, NULL, &v, &n));
		ck_assert_uint_eq(n, 7);
		for (size_t i = 0; i < n; i++)
			ck_assert_str_eq(v[i]->name, all[i]);
		procreg_entries_free(v, n);
		CK_OK(b, procreg_list(b, "", &v, &n));
		ck_assert_uint_eq(n, 7);
		for (size_t i = 0; i < n; i++)
			ck_assert_str_eq(v[i]->name, all[i]);
		procreg_entries_free(v, n);
	}

	CK_OK(a, procreg_list(a, "nomatch", &v, &n));
	ck_assert_uint_eq(n, 0);
	procreg_entries_free(v, n);
	CK_OK(a, procreg_list(a, "svc", &v, &n));
	ck_assert_uint_eq(n, 5);
	procreg_entries_free(v, n);

	/* b's names go with b. */
	procreg_free(b);
	wait_absent(a, "zeta");
	CK_OK(a, procreg_list(a, "svc.", &v, &n));
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(v[0]->name, "svc.b");
	ck_assert_str_eq(v[1]->name, "svc.c");
	procreg_entries_free(v, n);
	procreg_entries_free(NULL, 0);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_list_paging)
{
	enum { N = 10050 };
	struct tdaemon d;
	struct procreg_entry **v = NULL;
	size_t n = 0;
	procreg_t *a, *b;
	char name[32];

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "n%05d", i);
		CK_OK(a, procreg_register_int(a, name, i, NULL));
	}
	CK_OK(b, procreg_list(b, NULL, &v, &n));
	ck_assert_uint_eq(n, N);
	for (int i = 0; i < N; i++) {
		char want[16];
		unsigned char buf[16];
		size_t len = procreg_pack_int(buf, sizeof(buf), i);

		snprintf(want, sizeof(want), "n%05d", i);
		ck_assert_str_eq(v[i]->name, want);
		ck_assert_uint_eq(v[i]->conn, procreg_conn_id(a));
		check_bytes(v[i]->value, v[i]->value_len, buf, len);
	}
	procreg_entries_free(v, n);

	/* A prefix that spans the page boundary's tail. */
	CK_OK(b, procreg_list(b, "n1", &v, &n));
	ck_assert_uint_eq(n, 50);
	ck_assert_str_eq(v[0]->name, "n10000");
	ck_assert_str_eq(v[49]->name, "n10049");
	procreg_entries_free(v, n);

	/* Exactly one full page. */
	CK_OK(b, procreg_list(b, "n0", &v, &n));
	ck_assert_uint_eq(n, 10000);
	ck_assert_str_eq(v[0]->name, "n00000");
	ck_assert_str_eq(v[9999]->name, "n09999");
	procreg_entries_free(v, n);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 8. stats                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_stats)
{
	struct tdaemon d;
	struct procreg_stats s0, s;
	uint64_t ref;
	procreg_t *a, *b;
	int i;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	memset(&s0, 0x55, sizeof(s0));
	CK_OK(a, procreg_stats(a, &s0));
	ck_assert_uint_eq(s0.connections, 1);
	ck_assert_uint_eq(s0.names, 0);
	ck_assert_uint_eq(s0.monitors, 0);
	ck_assert_uint_eq(s0.messages, 0);
	ck_assert_uint_eq(s0.downs, 0);
	ck_assert_uint_eq(s0.notifications_ignored, 0);
	ck_assert_uint_eq(s0.connections_total, 1);
	ck_assert_uint_eq(s0.groups, 0);
	ck_assert_uint_eq(s0.members, 0);
	ck_assert_uint_eq(s0.calls, 0);
	ck_assert_uint_eq(s0.replies_late, 0);
	ck_assert_uint_eq(s0.awaits, 0);
	ck_assert_uint_eq(s0.subscriptions, 0);
	/* hello (from connect) and this stats. */
	ck_assert_uint_ge(s0.requests, 1);

	b = xconnect(d.path);
	CK_OK(a, procreg_register(a, "s1", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "s2", NULL, 0, NULL));
	CK_OK(b, procreg_register(b, "s3", NULL, 0, NULL));
	CK_OK(b, procreg_monitor(b, "s1", &ref));
	CK_OK(b, procreg_monitor(b, "s2", &ref));
	CK_OK(b, procreg_send_str(b, "s1", "m"));
	CK_OK(a, procreg_join(a, "g1", NULL, 0, NULL));
	CK_OK(a, procreg_join(a, "g2", NULL, 0, NULL));
	CK_OK(b, procreg_join(b, "g1", NULL, 0, NULL));
	CK_OK(a, procreg_stats(a, &s));
	ck_assert_uint_eq(s.groups, 2);
	ck_assert_uint_eq(s.members, 3);
	ck_assert_uint_eq(s.connections, 2);
	ck_assert_uint_eq(s.names, 3);
	ck_assert_uint_eq(s.monitors, 2);
	ck_assert_uint_eq(s.messages, 1);
	ck_assert_uint_eq(s.downs, 0);
	ck_assert_uint_eq(s.connections_total, 2);
	ck_assert_uint_gt(s.requests, s0.requests);
	ck_assert_uint_ge(s.uptime_ms, s0.uptime_ms);

	/* a's names vanish with a: downs fire, b's monitors are gone. */
	procreg_free(a);
	for (i = 0; i < ROUNDS; i++) {
		CK_OK(b, procreg_stats(b, &s));
		if (s.connections == 1)
			break;
		usleep(ROUND_US);
	}
	ck_assert_uint_eq(s.connections, 1);
	ck_assert_uint_eq(s.names, 1);
	ck_assert_uint_eq(s.monitors, 0);
	ck_assert_uint_eq(s.groups, 1);
	ck_assert_uint_eq(s.members, 1);
	ck_assert_uint_eq(s.downs, 2);
	ck_assert_uint_eq(s.connections_total, 2);
	procreg_free(b);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 9. event-loop integration                                           */
/* ------------------------------------------------------------------ */

struct seen {
	int		 count;
	procreg_t	*handle;
	void		*arg_seen;
	uint64_t	 senders[64];
	unsigned char	 first[64];	/* first payload byte (a fixint) */
	int		 kinds[64];
	/* on_reconnect */
	int		 reconnects;
	int		 fd;
	size_t		 nlost;
	char		 lost[8][64];
};

static void
on_event(procreg_t *p, const struct procreg_event *ev, void *arg)
{
	struct seen *s = arg;

	ck_assert_ptr_eq(p, s->handle);
	s->arg_seen = arg;
	if (s->count < 64) {
		s->kinds[s->count] = (int)ev->kind;
		if (ev->kind == PROCREG_EV_MESSAGE) {
			s->senders[s->count] = ev->sender;
			s->first[s->count] = ev->payload_len > 0 ?
			    ((unsigned char *)ev->payload)[0] : 0xc1;
		}
	}
	s->count++;
}

static void
on_reconnect(procreg_t *p, int fd, const char *const *lost, size_t nlost,
    void *arg)
{
	struct seen *s = arg;

	ck_assert_ptr_eq(p, s->handle);
	s->reconnects++;
	s->fd = fd;
	s->nlost = nlost;
	for (size_t i = 0; i < nlost && i < 8; i++)
		snprintf(s->lost[i], sizeof(s->lost[i]), "%s", lost[i]);
}

/* poll(procreg_fd) + procreg_process until s->count reaches want. */
static void
pump_until(procreg_t *p, struct seen *s, int want)
{
	for (int i = 0; i < ROUNDS && s->count < want; i++) {
		struct pollfd pfd = { .fd = procreg_fd(p), .events = POLLIN };

		if (poll(&pfd, 1, ROUND_US / 1000) > 0)
			CK_OK(p, procreg_process(p));
	}
	ck_assert_int_eq(s->count, want);
}

START_TEST(test_loop_callbacks)
{
	struct tdaemon d;
	struct procreg_callbacks cb = { 0 };
	struct procreg_stats st;
	struct seen s;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	memset(&s, 0, sizeof(s));
	s.handle = a;
	cb.on_event = on_event;
	procreg_set_callbacks(a, &cb, &s);
	CK_OK(a, procreg_register(a, "loop", NULL, 0, NULL));

	/* Nothing readable: process is harmless and calls nothing. */
	CK_OK(a, procreg_process(a));
	ck_assert_int_eq(s.count, 0);

	for (int i = 0; i < 50; i++) {
		unsigned char buf[4];

		CK_OK(b, procreg_send(b, "loop", buf, procreg_pack_int(buf,
		    sizeof(buf), i)));
	}
	pump_until(a, &s, 50);
	ck_assert_ptr_eq(s.arg_seen, &s);
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(s.kinds[i], PROCREG_EV_MESSAGE);
		ck_assert_uint_eq(s.senders[i], procreg_conn_id(b));
		ck_assert_uint_eq(s.first[i], (unsigned)i);
	}

	/* Pushes read during a sync call are handed out by the next
	 * procreg_process, even with nothing left to read. */
	for (int i = 0; i < 5; i++) {
		unsigned char buf[4];

		CK_OK(b, procreg_send(b, "loop", buf, procreg_pack_int(buf,
		    sizeof(buf), 50 + i)));
	}
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_int_eq(s.count, 50);	/* not from inside a call */
	CK_OK(a, procreg_process(a));
	ck_assert_int_eq(s.count, 55);
	for (int i = 50; i < 55; i++)
		ck_assert_uint_eq(s.first[i], (unsigned)i);
	/*
	 * A down through the callback too.  The noproc down follows the
	 * monitor response at once, so the call may already have read it
	 * from the socket: procreg_fd is then not readable, and only a
	 * procreg_process after the call hands it out (as for any push read
	 * during a call).
	 */
	{
		uint64_t ref;

		CK_OK(a, procreg_monitor(a, "nobody", &ref));
		CK_OK(a, procreg_process(a));
		pump_until(a, &s, 56);
		ck_assert_int_eq(s.kinds[55], PROCREG_EV_DOWN);
	}

	/* Without on_event, events stay queued for procreg_next_event. */
	procreg_set_callbacks(a, NULL, NULL);
	for (int i = 0; i < 3; i++)
		CK_OK(b, procreg_send_str(b, "loop", "q"));
	for (int i = 0; i < ROUNDS; i++) {
		struct pollfd pfd = { .fd = procreg_fd(a), .events = POLLIN };

		if (poll(&pfd, 1, 0) == 0)
			break;
		CK_OK(a, procreg_process(a));
	}
	CK_OK(a, procreg_process(a));
	ck_assert_int_eq(s.count, 56);
	for (int i = 0; i < 3; i++) {
		struct procreg_event *ev = xevent(a);

		ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
		ck_assert_uint_eq(ev->sender, procreg_conn_id(b));
		procreg_event_free(ev);
	}
	/* Callbacks with only on_reconnect: still queued. */
	cb.on_event = NULL;
	cb.on_reconnect = on_reconnect;
	procreg_set_callbacks(a, &cb, &s);
	CK_OK(b, procreg_send_str(b, "loop", "r"));
	CK_OK(a, procreg_stats(a, &st));
	CK_OK(a, procreg_process(a));
	ck_assert_int_eq(s.count, 56);
	{
		struct procreg_event *ev = xevent(a);

		ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
		procreg_event_free(ev);
	}
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 10. auto_reconnect                                                  */
/* ------------------------------------------------------------------ */

static procreg_t *
reconnecting(const char *path, struct seen *s)
{
	struct procreg_options o = { 0 };
	struct procreg_callbacks cb = { 0 };
	procreg_t *p;

	o.path = path;
	o.auto_reconnect = true;
	o.reconnect_max_ms = 200;
	o.timeout_ms = 3000;
	p = xconnect_opts(&o);
	memset(s, 0, sizeof(*s));
	s->handle = p;
	s->fd = -2;
	cb.on_reconnect = on_reconnect;
	procreg_set_callbacks(p, &cb, s);
	return p;
}

/* Call procreg_process (no on_event set) until on_reconnect fired once. */
static void
process_until_reconnected(procreg_t *a, const struct seen *s)
{
	for (int i = 0; i < ROUNDS && s->reconnects == 0; i++) {
		int r = procreg_process(a);

		ck_assert(r == PROCREG_OK || r == PROCREG_E_CONNECT);
		if (s->reconnects == 0)
			usleep(ROUND_US);
	}
	ck_assert_int_eq(s->reconnects, 1);
}

START_TEST(test_reconnect)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *e;
	struct procreg_hello h1, h2;
	struct seen s;
	uint64_t ref_other, ref_burn;
	procreg_t *a, *o, *f;
	bool active;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	o = xconnect(d.path);
	CK_OK(a, procreg_hello(a, &h1));
	CK_OK(a, procreg_register_str(a, "svc", "v1", NULL));
	CK_OK(a, procreg_register(a, "svc2", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "dropped", NULL, 0, NULL));
	CK_OK(a, procreg_unregister(a, "dropped"));
	CK_OK(o, procreg_register(o, "other", NULL, 0, NULL));
	/* Use up a few refs so that the new daemon's refs differ. */
	for (int i = 0; i < 3; i++) {
		CK_OK(a, procreg_monitor(a, "other", &ref_burn));
		CK_OK(a, procreg_demonitor(a, ref_burn, &active));
		ck_assert(active);
	}
	CK_OK(a, procreg_monitor(a, "other", &ref_other));
	expect_no_event(a);

	kill_daemon(&d);
	procreg_free(o);	/* the owner of "other" does not come back */
	restart_daemon(&d);

	/* next_event notices, reconnects, restores, reports. */
	ev = xevent(a);
	check_down(ev, ref_other, "other", "noproc");
	procreg_event_free(ev);
	ck_assert_int_eq(s.reconnects, 1);
	ck_assert_int_ge(s.fd, 0);
	ck_assert_int_eq(s.fd, procreg_fd(a));
	ck_assert_uint_eq(s.nlost, 0);

	CK_OK(a, procreg_hello(a, &h2));
	ck_assert_str_ne(h2.boot, h1.boot);
	ck_assert_uint_eq(h2.conn, procreg_conn_id(a));

	f = xconnect(d.path);
	CK_OK(f, procreg_whereis(f, "svc", &e));
	ck_assert_ptr_nonnull(e);
	check_entry(e, "svc", procreg_conn_id(a));
	check_json(e->value, e->value_len, "\"v1\"");
	procreg_entry_free(e);
	CK_OK(f, procreg_whereis(f, "svc2", &e));
	ck_assert_ptr_nonnull(e);
	check_entry(e, "svc2", procreg_conn_id(a));
	check_json(e->value, e->value_len, "null");
	procreg_entry_free(e);
	/* An unregistered name is not put back. */
	CK_OK(f, procreg_whereis(f, "dropped", &e));
	ck_assert_ptr_null(e);

	/* The restored names work: messages reach a. */
	CK_OK(f, procreg_send_str(f, "svc", "after"));
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_uint_eq(ev->sender, procreg_conn_id(f));
	check_json(ev->payload, ev->payload_len, "\"after\"");
	procreg_event_free(ev);

	/* The fired monitor is gone. */
	CK_OK(a, procreg_demonitor(a, ref_other, &active));
	ck_assert(!active);
	expect_no_event(a);
	ck_assert_int_eq(s.reconnects, 1);

	procreg_free(f);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_reconnect_lost_name)
{
	struct tdaemon d;
	struct procreg_entry *e;
	struct seen s;
	procreg_t *a, *t;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	CK_OK(a, procreg_register_int(a, "keep", 7, NULL));
	CK_OK(a, procreg_register(a, "contested", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "keep2", NULL, 0, NULL));

	kill_daemon(&d);
	restart_daemon(&d);
	/* Someone else takes "contested" during the outage. */
	t = xconnect(d.path);
	CK_OK(t, procreg_register_str(t, "contested", "mine now", NULL));

	/* The loop way: poll + procreg_process until on_reconnect fired. */
	for (int i = 0; i < ROUNDS && s.reconnects == 0; i++) {
		struct pollfd pfd = { .fd = procreg_fd(a), .events = POLLIN };

		if (pfd.fd < 0 || poll(&pfd, 1, ROUND_US / 1000) >= 0) {
			int r = procreg_process(a);

			ck_assert_msg(r == PROCREG_OK || r == PROCREG_E_CONNECT,
			    "procreg_process: %d (%s)", r, procreg_errmsg(a));
		}
		if (procreg_fd(a) < 0)
			usleep(ROUND_US);
	}
	ck_assert_int_eq(s.reconnects, 1);
	ck_assert_int_ge(procreg_fd(a), 0);
	ck_assert_int_eq(s.fd, procreg_fd(a));
	ck_assert_uint_eq(s.nlost, 1);
	ck_assert_str_eq(s.lost[0], "contested");

	CK_OK(t, procreg_whereis(t, "contested", &e));
	ck_assert_uint_eq(e->conn, procreg_conn_id(t));
	check_json(e->value, e->value_len, "\"mine now\"");
	procreg_entry_free(e);
	CK_OK(t, procreg_whereis(t, "keep", &e));
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->conn, procreg_conn_id(a));
	check_json(e->value, e->value_len, "7");
	procreg_entry_free(e);
	CK_OK(t, procreg_whereis(t, "keep2", &e));
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->conn, procreg_conn_id(a));
	procreg_entry_free(e);
	/* The lost name is not a's any more. */
	CK_CALL(a, procreg_unregister(a, "contested"), PROCREG_E_NOT_OWNER);

	procreg_free(t);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A synchronous call is what brings the connection back: the handle saw
 * the daemon go (procreg_process read EOF) and the first thing after the
 * restart is procreg_whereis.  The call must reconnect, restore, and then
 * answer its own request.
 */
START_TEST(test_reconnect_sync_call)
{
	struct tdaemon d;
	struct procreg_entry *e = NULL;
	struct seen s;
	procreg_t *a;
	int r;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	CK_OK(a, procreg_register_str(a, "svc", "v1", NULL));
	CK_OK(a, procreg_register_str(a, "svc2", "v2", NULL));

	kill_daemon(&d);
	/* The handle notices the loss (EOF is readable now). */
	for (int i = 0; i < ROUNDS && procreg_fd(a) >= 0; i++) {
		r = procreg_process(a);
		ck_assert_msg(r == PROCREG_OK || r == PROCREG_E_CONNECT ||
		    r == PROCREG_E_CLOSED, "procreg_process: %d", r);
	}
	ck_assert_int_eq(procreg_fd(a), -1);
	restart_daemon(&d);

	r = procreg_whereis(a, "svc", &e);
	ck_assert_msg(r == PROCREG_OK, "whereis after the restart: %d (%s)",
	    r, procreg_errmsg(a));
	ck_assert_ptr_nonnull(e);
	check_entry(e, "svc", procreg_conn_id(a));
	check_json(e->value, e->value_len, "\"v1\"");
	procreg_entry_free(e);
	ck_assert_int_eq(s.reconnects, 1);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * The daemon restarts while the handle still holds the old socket: the
 * first call may report the loss, but calls after it must work.
 */
START_TEST(test_reconnect_sync_call_unnoticed)
{
	struct tdaemon d;
	struct procreg_entry *e = NULL;
	struct seen s;
	procreg_t *a;
	int r;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	CK_OK(a, procreg_register_str(a, "svc", "v1", NULL));
	kill_daemon(&d);
	restart_daemon(&d);

	r = procreg_whereis(a, "svc", &e);
	if (r != PROCREG_OK) {
		ck_assert_msg(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT,
		    "first whereis: %d (%s)", r, procreg_errmsg(a));
		ck_assert_ptr_null(e);
		r = procreg_whereis(a, "svc", &e);
		ck_assert_msg(r == PROCREG_OK, "second whereis after the "
		    "restart (the first said the connection was lost): %d "
		    "(%s)", r, procreg_errmsg(a));
	}
	ck_assert_ptr_nonnull(e);
	check_entry(e, "svc", procreg_conn_id(a));
	check_json(e->value, e->value_len, "\"v1\"");
	procreg_entry_free(e);
	ck_assert_int_eq(s.reconnects, 1);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * Several monitors are restored: one on a name that did not come back
 * (noproc, listed first) and two on names the handle itself restores.
 * Every monitor must be active again with its original ref.
 */
START_TEST(test_reconnect_monitors)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct seen s;
	uint64_t ref_gone, ref_own1, ref_own2, burn;
	procreg_t *a, *o;
	bool active;
	int r;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	o = xconnect(d.path);
	CK_OK(o, procreg_register(o, "gone", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "own1", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "own2", NULL, 0, NULL));
	for (int i = 0; i < 4; i++) {
		CK_OK(a, procreg_monitor(a, "gone", &burn));
		CK_OK(a, procreg_demonitor(a, burn, NULL));
	}
	CK_OK(a, procreg_monitor(a, "gone", &ref_gone));
	CK_OK(a, procreg_monitor(a, "own1", &ref_own1));
	CK_OK(a, procreg_monitor(a, "own2", &ref_own2));
	ck_assert_uint_ne(ref_own1, ref_own2);

	kill_daemon(&d);
	procreg_free(o);
	restart_daemon(&d);

	ev = xevent(a);
	check_down(ev, ref_gone, "gone", "noproc");
	procreg_event_free(ev);
	ck_assert_int_eq(s.reconnects, 1);
	expect_no_event(a);

	/* Both monitors on a's own names are active again. */
	CK_OK(a, procreg_unregister(a, "own2"));
	ev = NULL;
	r = procreg_next_event(a, EV_WAIT_MS, &ev);
	ck_assert_msg(r == PROCREG_OK, "no down for own2 after unregistering "
	    "it: its monitor (ref %" PRIu64 ") was not restored (r=%d, %s)",
	    ref_own2, r, procreg_errmsg(a));
	check_down(ev, ref_own2, "own2", "unregistered");
	procreg_event_free(ev);
	CK_OK(a, procreg_demonitor(a, ref_own1, &active));
	ck_assert_msg(active, "the monitor on own1 is not active after the "
	    "reconnect");
	expect_no_event(a);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * After a reconnect the daemon numbers refs afresh while the handle keeps
 * giving out its own: a new monitor's daemon ref can equal the user ref
 * of a down still in the queue.  Each down must keep its own ref: first
 * the restored monitor's noproc (its original ref), then the new one's.
 */
START_TEST(test_reconnect_ref_after_restore)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_stats st;
	struct seen s;
	uint64_t ref_old, ref_new, burn;
	procreg_t *a, *o;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	o = xconnect(d.path);
	CK_OK(o, procreg_register(o, "gone", NULL, 0, NULL));
	CK_OK(a, procreg_monitor(a, "gone", &burn));
	CK_OK(a, procreg_demonitor(a, burn, NULL));
	CK_OK(a, procreg_monitor(a, "gone", &ref_old));

	kill_daemon(&d);
	procreg_free(o);
	restart_daemon(&d);

	/* Reconnect through procreg_process with no on_event set: the
	 * restored monitor's noproc down stays queued. */
	process_until_reconnected(a, &s);
	CK_OK(a, procreg_stats(a, &st));

	CK_OK(a, procreg_monitor(a, "gone", &ref_new));
	ck_assert_uint_ne(ref_new, ref_old);
	ev = xevent(a);
	ck_assert_msg(ev->kind == PROCREG_EV_DOWN && ev->ref == ref_old,
	    "first down: ref %" PRIu64 ", want the restored monitor's %"
	    PRIu64, ev->ref, ref_old);
	check_down(ev, ref_old, "gone", "noproc");
	procreg_event_free(ev);
	ev = xevent(a);
	ck_assert_msg(ev->kind == PROCREG_EV_DOWN && ev->ref == ref_new,
	    "second down: ref %" PRIu64 ", want the new monitor's %" PRIu64,
	    ev->ref, ref_new);
	check_down(ev, ref_new, "gone", "noproc");
	procreg_event_free(ev);
	expect_no_event(a);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * demonitor whose call discovers the daemon restarted: the ref is looked
 * up after the reconnect renumbered them, so it cancels its own monitor.
 */
START_TEST(test_reconnect_demonitor_renumbered)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct seen s;
	uint64_t rk, rx, ry;
	bool act = false;
	procreg_t *h, *m;
	int r;

	t_daemon_start(&d, NULL);
	m = reconnecting(d.path, &s);
	h = xconnect(d.path);
	CK_OK(h, procreg_register(h, "x", NULL, 0, NULL));
	CK_OK(h, procreg_register(h, "y", NULL, 0, NULL));
	/* A connection monitor is not restored: x and y get new numbers. */
	CK_OK(m, procreg_monitor_conn(m, procreg_conn_id(h), &rk));
	CK_OK(m, procreg_monitor(m, "x", &rx));
	CK_OK(m, procreg_monitor(m, "y", &ry));
	kill_daemon(&d);
	procreg_free(h);
	restart_daemon(&d);
	h = xconnect(d.path);
	CK_OK(h, procreg_register(h, "x", NULL, 0, NULL));
	CK_OK(h, procreg_register(h, "y", NULL, 0, NULL));
	CK_OK(m, procreg_demonitor(m, rx, &act));
	ck_assert(act);
	/* The connection monitor's down, given by the library. */
	ev = xevent(m);
	ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
	ck_assert_uint_eq(ev->ref, rk);
	procreg_event_free(ev);
	CK_OK(h, procreg_unregister(h, "x"));
	CK_OK(h, procreg_unregister(h, "y"));
	ev = xevent(m);
	ck_assert_msg(ev->kind == PROCREG_EV_DOWN && ev->ref == ry,
	    "down ref %" PRIu64 " (%s), want y's %" PRIu64, ev->ref,
	    ev->name ? ev->name : "-", ry);
	check_down(ev, ry, "y", "unregistered");
	procreg_event_free(ev);
	r = procreg_next_event(m, 300, &ev);
	ck_assert_msg(r == PROCREG_E_TIMEOUT, "another event: %d (ref %"
	    PRIu64 ")", r, r == PROCREG_OK ? ev->ref : 0);
	procreg_free(h);
	procreg_free(m);
	t_daemon_stop(&d);
}
END_TEST

/* A child calls name and exits 0 when the result is the str want. */
static pid_t
call_child(const char *path, const char *name, const char *want)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct procreg_options o = { 0 };
		unsigned char buf[64], wbuf[64];
		void *res = NULL;
		size_t len = 0, wlen;
		procreg_t *c;
		int r;

		o.path = path;
		if (procreg_connect(&c, &o) != PROCREG_OK)
			_exit(2);
		r = procreg_call(c, name, buf, procreg_pack_str(buf,
		    sizeof(buf), "q"), 5000, &res, &len);
		if (want == NULL)
			_exit(0);
		wlen = procreg_pack_str(wbuf, sizeof(wbuf), want);
		_exit(r == PROCREG_OK && len == wlen &&
		    memcmp(res, wbuf, len) == 0 ? 0 : 1);
	}
	return pid;
}

/* A call id of the old daemon is not replied to on the new one. */
START_TEST(test_reconnect_reply_old_call)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct seen s;
	unsigned char buf[64];
	uint64_t old_id;
	procreg_t *a;
	pid_t c1, c2;
	int status;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	CK_OK(a, procreg_register(a, "svc", NULL, 0, NULL));
	c1 = call_child(d.path, "svc", NULL);
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_CALL);
	old_id = ev->call_id;
	procreg_event_free(ev);
	kill_daemon(&d);
	ck_assert_int_eq(waitpid(c1, &status, 0), c1);
	restart_daemon(&d);
	process_until_reconnected(a, &s);
	c2 = call_child(d.path, "svc", "right");
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_CALL);
	/* The old id is not sent, whatever the new daemon numbers. */
	CK_CALL(a, procreg_reply(a, old_id, buf, procreg_pack_str(buf,
	    sizeof(buf), "wrong")), PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_reply_error(a, old_id, "wrong", "x"),
	    PROCREG_E_NOT_FOUND);
	CK_OK(a, procreg_reply(a, ev->call_id, buf, procreg_pack_str(buf,
	    sizeof(buf), "right")));
	procreg_event_free(ev);
	ck_assert_int_eq(waitpid(c2, &status, 0), c2);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the new caller got another reply (status %d)", status);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_no_reconnect)
{
	struct tdaemon d;
	struct procreg_entry *e = NULL;
	struct procreg_event *ev = NULL;
	struct procreg_stats st;
	procreg_t *a;
	uint64_t ref;
	int r;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	CK_OK(a, procreg_register(a, "svc", NULL, 0, NULL));
	kill_daemon(&d);

	r = procreg_whereis(a, "svc", &e);
	ck_assert_msg(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT,
	    "whereis after the daemon died: %d", r);
	ck_assert_ptr_null(e);
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	/* And so on: nothing aborts, nothing reconnects. */
	r = procreg_stats(a, &st);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	ck_assert_int_eq(procreg_fd(a), -1);
	r = procreg_register(a, "x", NULL, 0, NULL);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	r = procreg_send_str(a, "svc", "x");
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	r = procreg_monitor(a, "svc", &ref);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	r = procreg_next_event(a, 0, &ev);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	ck_assert_ptr_null(ev);
	r = procreg_process(a);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);

	/* Even with the daemon back, this handle stays closed. */
	restart_daemon(&d);
	r = procreg_whereis(a, "svc", &e);
	ck_assert(r == PROCREG_E_CLOSED || r == PROCREG_E_CONNECT);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* A daemon that does not answer in time: E_TIMEOUT; its late reply to
 * that call is not taken for the next call's. */
START_TEST(test_timeout_late_reply)
{
	struct tdaemon d;
	struct procreg_options o = { 0 };
	struct procreg_entry *e = NULL;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	o.path = d.path;
	o.timeout_ms = 300;
	a = xconnect_opts(&o);
	CK_OK(a, procreg_register_str(a, "one", "1", NULL));
	CK_OK(a, procreg_register_str(a, "two", "2", NULL));
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	CK_CALL(a, procreg_whereis(a, "one", &e), PROCREG_E_TIMEOUT);
	ck_assert_ptr_null(e);
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
	CK_OK(a, procreg_whereis(a, "two", &e));
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->name, "two");
	check_json(e->value, e->value_len, "\"2\"");
	procreg_entry_free(e);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A write that times out with part of the request sent: the stream cannot
 * be continued, so the handle disconnects (E_CLOSED); the receiver never
 * sees a torn message.
 */
START_TEST(test_partial_write_disconnects)
{
	static char big[300001];
	struct tdaemon d;
	struct procreg_options o = { 0 };
	struct procreg_event *ev;
	procreg_t *a, *rcv;
	int r = PROCREG_OK, i;

	memset(big, 'x', sizeof(big) - 1);
	t_daemon_start(&d, NULL);
	rcv = xconnect(d.path);
	CK_OK(rcv, procreg_register(rcv, "sink", NULL, 0, NULL));
	o.path = d.path;
	o.timeout_ms = 200;
	a = xconnect_opts(&o);
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	for (i = 0; i < 40; i++) {
		r = procreg_send_str(a, "sink", big);
		if (r == PROCREG_E_TIMEOUT) {
			/* Nothing of it left: the connection is still clean. */
			ck_assert_int_ge(procreg_fd(a), 0);
			continue;
		}
		if (r != PROCREG_OK)
			break;
	}
	ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
	ck_assert_msg(r == PROCREG_E_CLOSED, "send with the daemon stopped: "
	    "%d (%s), want E_CLOSED", r, procreg_errmsg(a));
	ck_assert_int_eq(procreg_fd(a), -1);
	/* Whatever arrived is whole. */
	while (procreg_next_event(rcv, 500, &ev) == PROCREG_OK) {
		ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
		ck_assert_uint_eq(ev->payload_len, sizeof(big) - 1 + 5);
		procreg_event_free(ev);
	}
	procreg_free(a);
	procreg_free(rcv);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A down read together with the monitor's response, still unparsed when
 * a later write finds the daemon gone: it is queued, not dropped.
 */
START_TEST(test_buffered_push_survives_lost_write)
{
	struct tdaemon d;
	struct procreg_event *ev;
	procreg_t *a;
	uint64_t ref;
	int r;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	CK_OK(a, procreg_monitor(a, "ghost", &ref));
	kill_daemon(&d);
	r = procreg_send_str(a, "ghost", "x");
	ck_assert_msg(r == PROCREG_E_CLOSED, "send: %d", r);
	ck_assert_int_eq(procreg_next_event(a, 0, &ev), PROCREG_OK);
	check_down(ev, ref, "ghost", "noproc");
	procreg_event_free(ev);
	procreg_free(a);
	restart_daemon(&d);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 11. independent handles                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_two_handles)
{
	struct tdaemon d;
	struct procreg_options oa = { 0 }, ob = { 0 };
	struct procreg_event *ev;
	struct procreg_entry *e;
	struct procreg_entry **v;
	size_t n;
	uint64_t ra, rb;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	oa.path = d.path;
	oa.timeout_ms = 2000;
	ob.path = d.path;
	ob.auto_reconnect = true;
	a = xconnect_opts(&oa);
	b = xconnect_opts(&ob);
	ck_assert_uint_ne(procreg_conn_id(a), procreg_conn_id(b));

	CK_OK(a, procreg_register_str(a, "a", "A", NULL));
	CK_OK(b, procreg_register_str(b, "b", "B", NULL));
	CK_OK(a, procreg_send_str(a, "b", "to b"));
	CK_OK(b, procreg_send_str(b, "a", "to a"));
	CK_OK(a, procreg_monitor(a, "b", &ra));
	ck_assert_uint_gt(ra, 0);
	CK_OK(b, procreg_monitor(b, "a", &rb));
	CK_OK(a, procreg_whereis(a, "b", &e));
	ck_assert_uint_eq(e->conn, procreg_conn_id(b));
	procreg_entry_free(e);
	CK_OK(b, procreg_list(b, NULL, &v, &n));
	ck_assert_uint_eq(n, 2);
	procreg_entries_free(v, n);
	/* Errors stay on their handle. */
	CK_CALL(a, procreg_unregister(a, "b"), PROCREG_E_NOT_OWNER);
	CK_OK(b, procreg_whereis(b, "a", &e));
	procreg_entry_free(e);
	ck_assert_str_ne(procreg_errmsg(a), procreg_errmsg(b));

	ev = xevent(b);
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_str_eq(ev->name, "b");
	ck_assert_uint_eq(ev->sender, procreg_conn_id(a));
	check_json(ev->payload, ev->payload_len, "\"to b\"");
	procreg_event_free(ev);
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_str_eq(ev->name, "a");
	ck_assert_uint_eq(ev->sender, procreg_conn_id(b));
	check_json(ev->payload, ev->payload_len, "\"to a\"");
	procreg_event_free(ev);
	expect_no_event(a);
	expect_no_event(b);

	/* Freeing a leaves b working; b's monitor on "a" fires. */
	procreg_free(a);
	ev = xevent(b);
	check_down(ev, rb, "a", "disconnected");
	procreg_event_free(ev);
	CK_OK(b, procreg_whereis(b, "a", &e));
	ck_assert_ptr_null(e);
	CK_OK(b, procreg_whereis(b, "b", &e));
	ck_assert_ptr_nonnull(e);
	procreg_entry_free(e);
	procreg_free(b);
	t_daemon_stop(&d);
}
END_TEST

/* Threads are not needed to show independence: a handle's queue and
 * state are its own even when both own names and get pushes at once. */
START_TEST(test_two_handles_interleaved_events)
{
	struct tdaemon d;
	procreg_t *a, *b, *c;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	c = xconnect(d.path);
	CK_OK(a, procreg_register(a, "qa", NULL, 0, NULL));
	CK_OK(b, procreg_register(b, "qb", NULL, 0, NULL));
	for (int i = 0; i < 200; i++) {
		unsigned char buf[16];
		size_t n = procreg_pack_int(buf, sizeof(buf), i);

		CK_OK(c, procreg_send(c, (i & 1) ? "qb" : "qa", buf, n));
	}
	for (int i = 0; i < 200; i++) {
		procreg_t *p = (i & 1) ? b : a;
		struct procreg_event *ev = xevent(p);
		unsigned char buf[16];
		size_t n = procreg_pack_int(buf, sizeof(buf), i);

		check_message(ev, (i & 1) ? "qb" : "qa", procreg_conn_id(c),
		    buf, n);
		procreg_event_free(ev);
	}
	expect_no_event(a);
	expect_no_event(b);
	procreg_free(c);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 13. protocol 2: calls                                               */
/* ------------------------------------------------------------------ */

/*
 * A callee: its own procreg_t on a thread of this process, answering each
 * call by the str command it carries:
 *
 *	"echo"		the payload itself
 *	"who"		[name or nil, target_conn, sender, call_id]
 *	"fail"		the error ["no_such_key", "size is not set"]
 *	"park"		nothing (the call times out); its id is kept
 *	"late"		replies to the parked call (too late), then answers
 *			with that reply's status
 *	"twice"		"once", then a second reply: its status is kept
 *	"relay"		sends "relayed" to the name "inbox" first, then "ok"
 *	"callback"	calls its caller back (100 ms) before it answers
 *			with that call's status: the caller, inside its own
 *			call, cannot answer
 *	"drop"		unregisters its name and registers it again, with
 *			no reply: the call by name ends with down
 *
 * The thread asserts nothing (a failure there would not be the test's):
 * it keeps its first failure for callee_stop to report.
 */
struct callee {
	const char	*path;
	const char	*name;
	procreg_t	*p;
	uint64_t	 conn;
	int		 ready[2];
	atomic_bool	 stop;
	pthread_t	 tid;
	uint64_t	 parked;
	int		 late_status, second_status, callback_status;
	int		 calls;
	int		 failed;	/* a status; 0: none */
	char		 why[256];
};

static void
callee_failed(struct callee *c, int r, const char *what)
{
	if (c->failed == 0) {
		c->failed = r != 0 ? r : -100;
		snprintf(c->why, sizeof(c->why), "%s: %d (%s)", what, r,
		    c->p != NULL ? procreg_errmsg(c->p) : "");
	}
}

/* Is this payload the msgpack str cmd? */
static bool
is_cmd(const struct procreg_event *ev, const char *cmd)
{
	unsigned char buf[64];
	size_t n = procreg_pack_str(buf, sizeof(buf), cmd);

	return n > 0 && ev->payload_len == n &&
	    memcmp(ev->payload, buf, n) == 0;
}

/* Reply with a str, or an int. */
static int
reply_str(procreg_t *p, uint64_t id, const char *s)
{
	unsigned char buf[64];

	return procreg_reply(p, id, buf, procreg_pack_str(buf, sizeof(buf),
	    s));
}

static int
reply_int(procreg_t *p, uint64_t id, int64_t v)
{
	unsigned char buf[16];

	return procreg_reply(p, id, buf, procreg_pack_int(buf, sizeof(buf),
	    v));
}

/* Answer one call as its command says. */
static void
callee_answer(struct callee *c, const struct procreg_event *ev)
{
	procreg_t *p = c->p;
	unsigned char buf[128];
	int r = PROCREG_OK;

	c->calls++;
	if (is_cmd(ev, "who")) {
		msgpack_sbuffer sb;
		msgpack_packer pk;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, 4);
		if (ev->name != NULL)
			msgpack_pack_str_with_body(&pk, ev->name,
			    strlen(ev->name));
		else
			msgpack_pack_nil(&pk);
		msgpack_pack_uint64(&pk, ev->target_conn);
		msgpack_pack_uint64(&pk, ev->sender);
		msgpack_pack_uint64(&pk, ev->call_id);
		r = procreg_reply(p, ev->call_id, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	} else if (is_cmd(ev, "fail")) {
		r = procreg_reply_error(p, ev->call_id, "no_such_key",
		    "size is not set");
	} else if (is_cmd(ev, "park")) {
		c->parked = ev->call_id;
	} else if (is_cmd(ev, "late")) {
		c->late_status = reply_str(p, c->parked, "too late");
		r = reply_int(p, ev->call_id, c->late_status);
	} else if (is_cmd(ev, "twice")) {
		r = reply_str(p, ev->call_id, "once");
		c->second_status = reply_str(p, ev->call_id, "again");
	} else if (is_cmd(ev, "relay")) {
		r = procreg_send(p, "inbox", buf, procreg_pack_str(buf,
		    sizeof(buf), "relayed"));
		if (r == PROCREG_OK)
			r = reply_str(p, ev->call_id, "ok");
	} else if (is_cmd(ev, "callback")) {
		c->callback_status = procreg_call_conn(p, ev->sender, buf,
		    procreg_pack_str(buf, sizeof(buf), "are you there"), 100,
		    NULL, NULL);
		r = reply_int(p, ev->call_id, c->callback_status);
	} else if (is_cmd(ev, "drop")) {
		r = procreg_unregister(p, c->name);
		if (r == PROCREG_OK)
			r = procreg_register(p, c->name, NULL, 0, NULL);
	} else {
		r = procreg_reply(p, ev->call_id, ev->payload,
		    ev->payload_len);
	}
	if (r != PROCREG_OK)
		callee_failed(c, r, "answering a call");
}

static void *
callee_main(void *arg)
{
	struct callee *c = arg;
	struct procreg_options o = { 0 };
	struct procreg_event *ev;
	char ok = 'f';
	int r;

	o.path = c->path;
	if ((r = procreg_connect(&c->p, &o)) != PROCREG_OK)
		callee_failed(c, r, "connect");
	else if (c->name != NULL && (r = procreg_register(c->p, c->name, NULL,
	    0, NULL)) != PROCREG_OK)
		callee_failed(c, r, "register");
	else {
		c->conn = procreg_conn_id(c->p);
		ok = 'r';
	}
	(void)!write(c->ready[1], &ok, 1);
	while (ok == 'r' && !atomic_load(&c->stop)) {
		r = procreg_next_event(c->p, 20, &ev);
		if (r == PROCREG_E_TIMEOUT)
			continue;
		if (r != PROCREG_OK) {
			callee_failed(c, r, "next_event");
			break;
		}
		if (ev->kind == PROCREG_EV_CALL)
			callee_answer(c, ev);
		procreg_event_free(ev);
	}
	return NULL;
}

/* Start a callee registering name (NULL: none) and wait until it is. */
static void
callee_start(struct callee *c, const char *path, const char *name)
{
	struct pollfd pfd;
	char ok = 0;

	memset(c, 0, sizeof(*c));
	c->path = path;
	c->name = name;
	atomic_init(&c->stop, false);
	ck_assert_int_eq(pipe(c->ready), 0);
	ck_assert_int_eq(pthread_create(&c->tid, NULL, callee_main, c), 0);
	pfd = (struct pollfd){ c->ready[0], POLLIN, 0 };
	ck_assert_int_eq(poll(&pfd, 1, EV_WAIT_MS), 1);
	ck_assert_int_eq(read(c->ready[0], &ok, 1), 1);
	ck_assert_msg(ok == 'r', "the callee did not start: %s", c->why);
}

/* Stop the callee thread; fail the test if it failed. */
static void
callee_stop(struct callee *c)
{
	atomic_store(&c->stop, true);
	ck_assert_int_eq(pthread_join(c->tid, NULL), 0);
	close(c->ready[0]);
	close(c->ready[1]);
	procreg_free(c->p);
	ck_assert_msg(c->failed == 0, "callee: %s", c->why);
}

/* Call with a str command; the status, *res and *len the result. */
static int
call_cmd(procreg_t *p, const char *name, const char *cmd, int timeout_ms,
    void **res, size_t *len)
{
	unsigned char buf[64];

	return procreg_call(p, name, buf, procreg_pack_str(buf, sizeof(buf),
	    cmd), timeout_ms, res, len);
}

/* The JSON text of mp starts with want. */
static void
check_json_prefix(const void *mp, size_t len, const char *want)
{
	char buf[512];

	ck_assert_int_ge(procreg_format_json(buf, sizeof(buf), mp, len), 0);
	ck_assert_msg(strncmp(buf, want, strlen(want)) == 0, "%s does not "
	    "start with %s", buf, want);
}

/* Wait (bounded) until name is registered; its entry. */
static struct procreg_entry *
wait_present(procreg_t *p, const char *name)
{
	struct procreg_entry *e = NULL;

	for (int i = 0; i < ROUNDS; i++) {
		CK_OK(p, procreg_whereis(p, name, &e));
		if (e != NULL)
			return e;
		usleep(ROUND_US);
	}
	ck_abort_msg("%s is not registered", name);
	return NULL;
}

/* Is this result the msgpack int v? */
static void
check_int(const void *mp, size_t len, int64_t v)
{
	unsigned char buf[16];

	check_bytes(mp, len, buf, procreg_pack_int(buf, sizeof(buf), v));
}

START_TEST(test_call)
{
	static const unsigned char map_mp[] = { 0x82, 0xa1, 'k', 0x92, 0x01,
	    0xc3, 0xa1, 'f', 0xcb, 0x40, 0x09, 0x21, 0xf9, 0xf0, 0x1b, 0x86,
	    0x6e };
	struct tdaemon d;
	struct callee c;
	struct procreg_stats st;
	struct procreg_event *ev;
	unsigned char buf[64];
	char want[128];
	void *res;
	size_t len, n;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	callee_start(&c, d.path, "kv");
	a = xconnect(d.path);

	/* Any value comes back as it went. */
	CK_OK(a, procreg_call(a, "kv", map_mp, sizeof(map_mp), 0, &res,
	    &len));
	check_bytes(res, len, map_mp, sizeof(map_mp));
	procreg_bytes_free(res);
	n = procreg_pack_str(buf, sizeof(buf), "echo");
	CK_OK(a, procreg_call(a, "kv", buf, n, 2000, &res, &len));
	check_bytes(res, len, buf, n);
	free(res);
	/* The result may be dropped. */
	CK_OK(a, procreg_call(a, "kv", buf, n, 0, NULL, NULL));
	/* An empty str (msgpack-c may give it a NULL ptr). */
	CK_OK(a, procreg_call(a, "kv", "\xa0", 1, 0, &res, &len));
	check_json(res, len, "\"\"");
	free(res);

	/* What the callee saw: by name, then by connection id. */
	CK_OK(a, call_cmd(a, "kv", "who", 0, &res, &len));
	ck_assert_int_gt(snprintf(want, sizeof(want), "[\"kv\",0,%" PRIu64,
	    procreg_conn_id(a)), 0);
	check_json_prefix(res, len, want);
	free(res);
	n = procreg_pack_str(buf, sizeof(buf), "who");
	CK_OK(a, procreg_call_conn(a, c.conn, buf, n, 0, &res, &len));
	snprintf(want, sizeof(want), "[null,%" PRIu64 ",%" PRIu64, c.conn,
	    procreg_conn_id(a));
	check_json_prefix(res, len, want);
	free(res);

	/* The callee's own error code: PROCREG_E_OTHER, "code: message". */
	res = (void *)&res;
	CK_CALL(a, call_cmd(a, "kv", "fail", 0, &res, &len), PROCREG_E_OTHER);
	ck_assert_ptr_null(res);
	ck_assert_str_eq(procreg_errmsg(a), "no_such_key: size is not set");

	/* No such name or connection. */
	CK_CALL(a, call_cmd(a, "nobody", "echo", 0, NULL, NULL),
	    PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_call_conn(a, 999999, buf, n, 0, NULL, NULL),
	    PROCREG_E_NOT_FOUND);

	/* A second reply to one call is not_found for the callee. */
	CK_OK(a, call_cmd(a, "kv", "twice", 0, &res, &len));
	check_json(res, len, "\"once\"");
	free(res);

	/* Pushes that come during a call wait in the queue. */
	CK_OK(a, procreg_register(a, "inbox", NULL, 0, NULL));
	CK_OK(a, call_cmd(a, "kv", "relay", 0, &res, &len));
	check_json(res, len, "\"ok\"");
	free(res);
	CK_OK(a, procreg_next_event(a, 0, &ev));
	check_message(ev, "inbox", c.conn, buf, procreg_pack_str(buf,
	    sizeof(buf), "relayed"));
	procreg_event_free(ev);

	/* So do calls to us: the callee's call to us times out meanwhile,
	 * and our late reply is refused. */
	CK_OK(a, call_cmd(a, "kv", "callback", 0, &res, &len));
	check_int(res, len, PROCREG_E_CALL_TIMEOUT);
	free(res);
	CK_OK(a, procreg_next_event(a, 0, &ev));
	ck_assert_int_eq(ev->kind, PROCREG_EV_CALL);
	ck_assert_ptr_null(ev->name);
	ck_assert_uint_eq(ev->target_conn, procreg_conn_id(a));
	ck_assert_uint_eq(ev->sender, c.conn);
	ck_assert_uint_gt(ev->call_id, 0);
	check_json(ev->payload, ev->payload_len, "\"are you there\"");
	CK_CALL(a, procreg_reply(a, ev->call_id, NULL, 0),
	    PROCREG_E_NOT_FOUND);
	procreg_event_free(ev);
	expect_no_event(a);

	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.calls, 0);
	ck_assert_uint_ge(st.replies_late, 1);	/* ours, at least */
	procreg_free(a);
	callee_stop(&c);
	ck_assert_int_eq(c.second_status, PROCREG_E_NOT_FOUND);
	ck_assert_int_eq(c.callback_status, PROCREG_E_CALL_TIMEOUT);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_call_timeout)
{
	struct tdaemon d;
	struct callee c;
	struct procreg_stats st;
	struct procreg_event *ev;
	void *res;
	size_t len;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	callee_start(&c, d.path, "slow");
	a = xconnect(d.path);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.replies_late, 0);

	/* No reply within 100 ms: the daemon says timeout. */
	res = (void *)&res;
	CK_CALL(a, call_cmd(a, "slow", "park", 100, &res, &len),
	    PROCREG_E_CALL_TIMEOUT);
	ck_assert_ptr_null(res);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_CALL_TIMEOUT),
	    "timeout");
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	/* The callee's reply after that is late: not_found, counted. */
	CK_OK(a, call_cmd(a, "slow", "late", 0, &res, &len));
	check_int(res, len, PROCREG_E_NOT_FOUND);
	free(res);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.replies_late, 1);
	ck_assert_uint_eq(st.calls, 0);

	/* A handle that calls itself cannot answer: timeout, and the call
	 * is queued for it. */
	CK_OK(a, procreg_register(a, "me", NULL, 0, NULL));
	CK_CALL(a, call_cmd(a, "me", "hello me", 100, NULL, NULL),
	    PROCREG_E_CALL_TIMEOUT);
	CK_OK(a, procreg_next_event(a, 0, &ev));
	ck_assert_int_eq(ev->kind, PROCREG_EV_CALL);
	ck_assert_str_eq(ev->name, "me");
	ck_assert_uint_eq(ev->target_conn, 0);
	ck_assert_uint_eq(ev->sender, procreg_conn_id(a));
	check_json(ev->payload, ev->payload_len, "\"hello me\"");
	procreg_event_free(ev);

	procreg_free(a);
	callee_stop(&c);
	t_daemon_stop(&d);
}
END_TEST

/* A callee that kills itself (SIGKILL) when the first call comes. */
static pid_t
doomed_callee(const char *path, const char *name)
{
	struct pollfd pfd;
	int ready[2];
	char ok = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct procreg_options o = { 0 };
		struct procreg_event *ev;
		procreg_t *p = NULL;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		o.path = path;
		if (procreg_connect(&p, &o) != PROCREG_OK ||
		    procreg_register(p, name, NULL, 0, NULL) != PROCREG_OK)
			_exit(1);
		(void)!write(ready[1], "r", 1);
		while (procreg_next_event(p, -1, &ev) == PROCREG_OK) {
			if (ev->kind == PROCREG_EV_CALL)
				raise(SIGKILL);
			procreg_event_free(ev);
		}
		_exit(1);
	}
	close(ready[1]);
	pfd = (struct pollfd){ ready[0], POLLIN, 0 };
	ck_assert_int_eq(poll(&pfd, 1, EV_WAIT_MS), 1);
	ck_assert_int_eq(read(ready[0], &ok, 1), 1);
	ck_assert_int_eq(ok, 'r');
	close(ready[0]);
	return pid;
}

START_TEST(test_call_down)
{
	struct tdaemon d;
	struct callee c;
	struct procreg_entry *e;
	struct procreg_stats st;
	int status;
	void *res;
	size_t len;
	pid_t pid;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);

	/* The callee dies with the call pending: down, at once. */
	pid = doomed_callee(d.path, "doomed");
	res = (void *)&res;
	CK_CALL(a, call_cmd(a, "doomed", "echo", 60000, &res, &len),
	    PROCREG_E_DOWN);
	ck_assert_ptr_null(res);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_DOWN), "down");
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	wait_absent(a, "doomed");

	/* The name changes hands while the call is pending: down too. */
	callee_start(&c, d.path, "fickle");
	CK_CALL(a, call_cmd(a, "fickle", "drop", 60000, NULL, NULL),
	    PROCREG_E_DOWN);
	/* The callee registers it again, and answers as before. */
	e = wait_present(a, "fickle");
	ck_assert_uint_eq(e->conn, c.conn);
	procreg_entry_free(e);
	CK_OK(a, call_cmd(a, "fickle", "echo", 0, &res, &len));
	check_json(res, len, "\"echo\"");
	free(res);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.calls, 0);
	procreg_free(a);
	callee_stop(&c);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_reply_errors)
{
	struct tdaemon d;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	/* No such call pending for this connection. */
	CK_CALL(a, procreg_reply(a, 12345, "\xc0", 1), PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_reply(a, 12345, NULL, 0), PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_reply_error(a, 12345, "nope", "no"),
	    PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_reply_error(a, 12345, "nope", NULL),
	    PROCREG_E_NOT_FOUND);
	/* A code of 65 bytes, or empty, is the daemon's bad_request. */
	CK_CALL(a, procreg_reply_error(a, 12345, "", "x"),
	    PROCREG_E_BAD_REQUEST);
	{
		char code[66];

		memset(code, 'c', 65);
		code[65] = '\0';
		CK_CALL(a, procreg_reply_error(a, 12345, code, "x"),
		    PROCREG_E_BAD_REQUEST);
	}
	CK_CALL(a, procreg_reply_error(a, 12345, NULL, "x"), PROCREG_E_INVAL);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 14. protocol 2: groups                                              */
/* ------------------------------------------------------------------ */

static void
check_member(const struct procreg_member *m, const char *group,
    uint64_t conn, const char *value_json)
{
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->group, group);
	ck_assert_uint_eq(m->conn, conn);
	ck_assert_int_eq(m->pid, (int64_t)getpid());
	ck_assert_int_eq(m->uid, (int64_t)getuid());
	ck_assert_int_eq(m->gid, (int64_t)getgid());
	ck_assert_uint_gt(m->since_ms, 0);
	ck_assert_uint_gt(m->gen, 0);
	check_json(m->value, m->value_len, value_json);
}

static void
check_publish(const struct procreg_event *ev, const char *group,
    uint64_t sender, const char *payload_json)
{
	ck_assert_msg(ev->kind == PROCREG_EV_PUBLISH, "expected a publish, "
	    "got kind %d", (int)ev->kind);
	ck_assert_str_eq(ev->name, group);
	ck_assert_uint_eq(ev->target_conn, 0);
	ck_assert_uint_eq(ev->sender, sender);
	check_json(ev->payload, ev->payload_len, payload_json);
}

START_TEST(test_groups)
{
	struct tdaemon d;
	struct procreg_member *m = NULL, **v;
	struct procreg_entry *e;
	struct procreg_stats st;
	struct procreg_event *ev;
	unsigned char buf[64];
	uint64_t delivered, *busy, gen_a;
	size_t n, nbusy;
	procreg_t *a, *b, *c;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	c = xconnect(d.path);

	CK_OK(a, procreg_join(a, "room", buf, procreg_pack_str(buf,
	    sizeof(buf), "alice"), &m));
	check_member(m, "room", procreg_conn_id(a), "\"alice\"");
	gen_a = m->gen;
	procreg_member_free(m);
	m = (struct procreg_member *)&m;
	CK_CALL(a, procreg_join(a, "room", NULL, 0, &m), PROCREG_E_TAKEN);
	ck_assert_ptr_null(m);
	CK_OK(b, procreg_join(b, "room", NULL, 0, NULL));
	/* A group and a name may be spelt alike. */
	CK_OK(c, procreg_register(c, "room", NULL, 0, &e));
	ck_assert_uint_gt(e->gen, gen_a);
	procreg_entry_free(e);

	CK_OK(c, procreg_members(c, "room", &v, &n));
	ck_assert_uint_eq(n, 2);
	check_member(v[0], "room", procreg_conn_id(a), "\"alice\"");
	check_member(v[1], "room", procreg_conn_id(b), "null");
	ck_assert_uint_eq(v[0]->gen, gen_a);
	ck_assert_uint_gt(v[1]->gen, v[0]->gen);
	procreg_members_free(v, n);
	CK_OK(c, procreg_members(c, "empty", &v, &n));
	ck_assert_uint_eq(n, 0);
	procreg_members_free(v, n);
	CK_OK(c, procreg_stats(c, &st));
	ck_assert_uint_eq(st.groups, 1);
	ck_assert_uint_eq(st.members, 2);

	/* Publish with echo: every member, the sender too. */
	n = procreg_pack_str(buf, sizeof(buf), "hi all");
	busy = (uint64_t *)&busy;
	CK_OK(a, procreg_publish(a, "room", buf, n, true, &delivered, &busy,
	    &nbusy));
	ck_assert_uint_eq(delivered, 2);
	ck_assert_uint_eq(nbusy, 0);
	free(busy);
	ev = xevent(a);
	check_publish(ev, "room", procreg_conn_id(a), "\"hi all\"");
	procreg_event_free(ev);
	ev = xevent(b);
	check_publish(ev, "room", procreg_conn_id(a), "\"hi all\"");
	procreg_event_free(ev);
	/* Without echo: not back to the sender. */
	n = procreg_pack_str(buf, sizeof(buf), "not to me");
	CK_OK(a, procreg_publish(a, "room", buf, n, false, &delivered, NULL,
	    NULL));
	ck_assert_uint_eq(delivered, 1);
	ev = xevent(b);
	check_publish(ev, "room", procreg_conn_id(a), "\"not to me\"");
	procreg_event_free(ev);
	expect_no_event(a);
	/* From outside the group, and to a group without members. */
	CK_OK(c, procreg_publish(c, "room", "\x01", 1, false, &delivered, NULL,
	    NULL));
	ck_assert_uint_eq(delivered, 2);
	ev = xevent(a);
	check_publish(ev, "room", procreg_conn_id(c), "1");
	procreg_event_free(ev);
	ev = xevent(b);
	check_publish(ev, "room", procreg_conn_id(c), "1");
	procreg_event_free(ev);
	CK_OK(c, procreg_publish(c, "empty", "\x01", 1, true, &delivered, NULL,
	    NULL));
	ck_assert_uint_eq(delivered, 0);
	CK_OK(c, procreg_publish(c, "empty", "\x01", 1, true, NULL, NULL,
	    NULL));
	expect_no_event(c);

	/* Pushes from one sender to one group keep their order. */
	for (int i = 0; i < 100; i++)
		CK_OK(c, procreg_publish(c, "room", buf, procreg_pack_int(buf,
		    sizeof(buf), i), true, NULL, NULL, NULL));
	for (int i = 0; i < 100; i++) {
		ev = xevent(b);
		ck_assert_int_eq(ev->kind, PROCREG_EV_PUBLISH);
		check_int(ev->payload, ev->payload_len, i);
		procreg_event_free(ev);
		ev = xevent(a);
		check_int(ev->payload, ev->payload_len, i);
		procreg_event_free(ev);
	}

	/* leave, then leave again. */
	CK_OK(a, procreg_leave(a, "room"));
	CK_CALL(a, procreg_leave(a, "room"), PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_leave(a, "never"), PROCREG_E_NOT_FOUND);
	CK_OK(c, procreg_members(c, "room", &v, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(v[0]->conn, procreg_conn_id(b));
	procreg_members_free(v, n);
	/* Joining again: a new membership, a new gen, at the end. */
	CK_OK(a, procreg_join(a, "room", NULL, 0, &m));
	ck_assert_uint_gt(m->gen, gen_a);
	procreg_member_free(m);
	CK_OK(c, procreg_members(c, "room", &v, &n));
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(v[1]->conn, procreg_conn_id(a));
	procreg_members_free(v, n);

	/* Memberships go with the connection. */
	procreg_free(a);
	procreg_free(b);
	for (int i = 0; i < ROUNDS; i++) {
		CK_OK(c, procreg_stats(c, &st));
		if (st.members == 0)
			break;
		usleep(ROUND_US);
	}
	ck_assert_uint_eq(st.members, 0);
	ck_assert_uint_eq(st.groups, 0);
	CK_OK(c, procreg_members(c, "room", &v, &n));
	ck_assert_uint_eq(n, 0);
	procreg_members_free(v, n);
	procreg_members_free(NULL, 0);
	procreg_member_free(NULL);
	procreg_free(c);
	t_daemon_stop(&d);
}
END_TEST

/* A member that does not read is reported busy, and skipped. */
START_TEST(test_publish_busy)
{
	struct tdaemon d;
	uint64_t delivered = 0, *busy = NULL;
	size_t nbusy = 0, big = 16000, i;
	unsigned char *payload;
	procreg_t *reader, *sleeper, *pub;
	bool seen = false;

	t_daemon_start(&d, "--max-outbuf", "65536", NULL);
	reader = xconnect(d.path);
	sleeper = xconnect(d.path);
	pub = xconnect(d.path);
	CK_OK(sleeper, procreg_join(sleeper, "g", NULL, 0, NULL));
	CK_OK(reader, procreg_join(reader, "g", NULL, 0, NULL));
	payload = malloc(big + 8);
	ck_assert_ptr_nonnull(payload);
	memset(payload, 'p', big + 8);
	payload[0] = 0xc5;			/* bin 16 */
	payload[1] = (unsigned char)(big >> 8);
	payload[2] = (unsigned char)big;
	for (i = 0; i < 500 && !seen; i++) {
		CK_OK(pub, procreg_publish(pub, "g", payload, big + 3, true,
		    &delivered, &busy, &nbusy));
		if (nbusy > 0) {
			ck_assert_uint_eq(nbusy, 1);
			ck_assert_uint_eq(busy[0], procreg_conn_id(sleeper));
			ck_assert_uint_eq(delivered, 1);
			seen = true;
		} else
			ck_assert_uint_eq(delivered, 2);
		procreg_conns_free(busy);
		/* The reader keeps up. */
		for (;;) {
			struct procreg_event *ev;

			if (procreg_next_event(reader, 0, &ev) != PROCREG_OK)
				break;
			procreg_event_free(ev);
		}
	}
	ck_assert_msg(seen, "a member that never reads was never busy");
	free(payload);
	procreg_free(pub);
	procreg_free(sleeper);
	procreg_free(reader);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 15. protocol 2: connection targets, update, keys, register_many     */
/* ------------------------------------------------------------------ */

START_TEST(test_conn_targets)
{
	struct tdaemon d;
	struct procreg_event *ev;
	unsigned char buf[32];
	uint64_t ref, ref2, bconn;
	size_t n;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	bconn = procreg_conn_id(b);

	n = procreg_pack_str(buf, sizeof(buf), "to your conn");
	CK_OK(a, procreg_send_conn(a, bconn, buf, n));
	ev = xevent(b);
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_ptr_null(ev->name);
	ck_assert_uint_eq(ev->target_conn, bconn);
	ck_assert_uint_eq(ev->sender, procreg_conn_id(a));
	check_bytes(ev->payload, ev->payload_len, buf, n);
	procreg_event_free(ev);
	CK_CALL(a, procreg_send_conn(a, 999999, buf, n), PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_send_conn(a, bconn, NULL, 0), PROCREG_E_INVAL);

	/* A monitor on a connection fires when it goes. */
	CK_OK(a, procreg_monitor_conn(a, bconn, &ref));
	expect_no_event(a);
	procreg_free(b);
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
	ck_assert_uint_eq(ev->ref, ref);
	ck_assert_ptr_null(ev->name);
	ck_assert_uint_eq(ev->target_conn, bconn);
	ck_assert_str_eq(ev->reason, "disconnected");
	procreg_event_free(ev);
	/* One that is not open: noproc at once; ids are never reused. */
	CK_OK(a, procreg_monitor_conn(a, bconn, &ref2));
	ck_assert_uint_ne(ref2, ref);
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
	ck_assert_uint_eq(ev->ref, ref2);
	ck_assert_ptr_null(ev->name);
	ck_assert_uint_eq(ev->target_conn, bconn);
	ck_assert_str_eq(ev->reason, "noproc");
	procreg_event_free(ev);
	/* Our own connection, then demonitor. */
	CK_OK(a, procreg_monitor_conn(a, procreg_conn_id(a), &ref));
	{
		bool active = false;

		CK_OK(a, procreg_demonitor(a, ref, &active));
		ck_assert(active);
	}
	expect_no_event(a);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_update)
{
	struct tdaemon d;
	struct procreg_entry *e0, *e, *w;
	unsigned char buf[32];
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(a, procreg_register_int(a, "u", 1, &e0));
	ck_assert_uint_gt(e0->gen, 0);
	CK_OK(a, procreg_update(a, "u", buf, procreg_pack_str(buf,
	    sizeof(buf), "two"), &e));
	check_entry(e, "u", procreg_conn_id(a));
	check_json(e->value, e->value_len, "\"two\"");
	ck_assert_uint_eq(e->since_ms, e0->since_ms);
	ck_assert_uint_eq(e->gen, e0->gen);
	procreg_entry_free(e);
	CK_OK(b, procreg_whereis(b, "u", &w));
	check_json(w->value, w->value_len, "\"two\"");
	ck_assert_uint_eq(w->gen, e0->gen);
	procreg_entry_free(w);
	/* NULL: nil; out may be NULL. */
	CK_OK(a, procreg_update(a, "u", NULL, 0, NULL));
	CK_OK(b, procreg_whereis(b, "u", &w));
	check_json(w->value, w->value_len, "null");
	procreg_entry_free(w);

	e = (struct procreg_entry *)&e;
	CK_CALL(b, procreg_update(b, "u", "\x01", 1, &e), PROCREG_E_NOT_OWNER);
	ck_assert_ptr_null(e);
	CK_CALL(a, procreg_update(a, "missing", "\x01", 1, NULL),
	    PROCREG_E_NOT_FOUND);
	CK_CALL(a, procreg_update(a, NULL, "\x01", 1, NULL), PROCREG_E_INVAL);
	procreg_entry_free(e0);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_keys)
{
	struct tdaemon d;
	char **names, **groups;
	size_t nn, ng;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(b, procreg_keys(b, procreg_conn_id(a), &names, &nn, &groups,
	    &ng));
	ck_assert_uint_eq(nn, 0);
	ck_assert_uint_eq(ng, 0);
	procreg_strv_free(names, nn);
	procreg_strv_free(groups, ng);

	CK_OK(a, procreg_register(a, "zz", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "aa", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "m\xc3\xa9", NULL, 0, NULL));
	CK_OK(a, procreg_join(a, "g1", NULL, 0, NULL));
	CK_OK(a, procreg_join(a, "g0", NULL, 0, NULL));
	CK_OK(b, procreg_keys(b, procreg_conn_id(a), &names, &nn, &groups,
	    &ng));
	ck_assert_uint_eq(nn, 3);
	ck_assert_str_eq(names[0], "aa");
	ck_assert_str_eq(names[1], "m\xc3\xa9");
	ck_assert_str_eq(names[2], "zz");
	ck_assert_uint_eq(ng, 2);
	ck_assert_str_eq(groups[0], "g0");
	ck_assert_str_eq(groups[1], "g1");
	procreg_strv_free(names, nn);
	procreg_strv_free(groups, ng);
	/* Only one of the two, and our own connection. */
	CK_OK(a, procreg_keys(a, procreg_conn_id(a), NULL, NULL, &groups,
	    &ng));
	ck_assert_uint_eq(ng, 2);
	procreg_strv_free(groups, ng);
	CK_OK(a, procreg_keys(a, procreg_conn_id(a), &names, &nn, NULL, NULL));
	ck_assert_uint_eq(nn, 3);
	procreg_strv_free(names, nn);

	names = (char **)&names;
	CK_CALL(b, procreg_keys(b, 999999, &names, &nn, &groups, &ng),
	    PROCREG_E_NOT_FOUND);
	ck_assert_ptr_null(names);
	ck_assert_uint_eq(nn, 0);
	procreg_strv_free(NULL, 0);
	procreg_free(a);
	procreg_free(b);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_register_many)
{
	static const char *const three[] = { "k1", "k2", "k3" };
	static const char *const clash[] = { "k4", "k2" };
	static const char *const twice[] = { "d", "e", "d" };
	const void *values[3];
	size_t lens[3];
	unsigned char v1[8];
	struct tdaemon d;
	struct procreg_entry **v, *e;
	struct procreg_stats st;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	values[0] = v1;
	lens[0] = procreg_pack_int(v1, sizeof(v1), 1);
	values[1] = NULL;
	lens[1] = 0;
	values[2] = "\xa1x";
	lens[2] = 2;
	CK_OK(a, procreg_register_many(a, 3, three, values, lens, &v));
	for (int i = 0; i < 3; i++) {
		check_entry(v[i], three[i], procreg_conn_id(a));
		if (i > 0)
			ck_assert_uint_gt(v[i]->gen, v[i - 1]->gen);
	}
	check_json(v[0]->value, v[0]->value_len, "1");
	check_json(v[1]->value, v[1]->value_len, "null");
	check_json(v[2]->value, v[2]->value_len, "\"x\"");
	procreg_entries_free(v, 3);

	/* All or none: k2 is taken, so k4 is not registered either. */
	v = (struct procreg_entry **)&v;
	CK_CALL(b, procreg_register_many(b, 2, clash, NULL, NULL, &v),
	    PROCREG_E_TAKEN);
	ck_assert_ptr_null(v);
	ck_assert_msg(strstr(procreg_errmsg(b), "2") != NULL,
	    "errmsg \"%s\" does not say which name", procreg_errmsg(b));
	CK_OK(b, procreg_whereis(b, "k4", &e));
	ck_assert_ptr_null(e);
	/* A name twice: bad_request, and none registered. */
	CK_CALL(b, procreg_register_many(b, 3, twice, NULL, NULL, NULL),
	    PROCREG_E_BAD_REQUEST);
	CK_OK(b, procreg_whereis(b, "e", &e));
	ck_assert_ptr_null(e);
	CK_OK(b, procreg_stats(b, &st));
	ck_assert_uint_eq(st.names, 3);
	/* Without values and without out. */
	CK_OK(b, procreg_register_many(b, 2, (const char *const[]){ "k5",
	    "k6" }, NULL, NULL, NULL));
	CK_OK(a, procreg_whereis(a, "k6", &e));
	check_entry(e, "k6", procreg_conn_id(b));
	procreg_entry_free(e);

	CK_CALL(a, procreg_register_many(a, 2, NULL, NULL, NULL, NULL),
	    PROCREG_E_INVAL);
	CK_CALL(a, procreg_register_many(a, 2, (const char *const[]){ "x",
	    NULL }, NULL, NULL, NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_register_many(a, 1, three, values, NULL, NULL),
	    PROCREG_E_INVAL);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* Groups, register_many names, updated values and connection monitors
 * across a daemon restart. */
START_TEST(test_reconnect_p2)
{
	static const char *const many[] = { "m1", "m2" };
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_member **v;
	struct procreg_entry *e;
	struct seen s;
	unsigned char buf[32];
	uint64_t ref, oconn;
	size_t n;
	procreg_t *a, *o, *f;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	o = xconnect(d.path);
	oconn = procreg_conn_id(o);
	CK_OK(a, procreg_join(a, "grp", buf, procreg_pack_str(buf,
	    sizeof(buf), "member value"), NULL));
	CK_OK(a, procreg_join(a, "left", NULL, 0, NULL));
	CK_OK(a, procreg_leave(a, "left"));
	CK_OK(a, procreg_register_many(a, 2, many, NULL, NULL, NULL));
	CK_OK(a, procreg_register_int(a, "counter", 1, NULL));
	CK_OK(a, procreg_update(a, "counter", buf, procreg_pack_int(buf,
	    sizeof(buf), 2), NULL));
	CK_OK(a, procreg_monitor_conn(a, oconn, &ref));
	expect_no_event(a);

	kill_daemon(&d);
	procreg_free(o);
	restart_daemon(&d);

	/* The old daemon's connection is gone: a local noproc. */
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
	ck_assert_uint_eq(ev->ref, ref);
	ck_assert_ptr_null(ev->name);
	ck_assert_uint_eq(ev->target_conn, oconn);
	ck_assert_str_eq(ev->reason, "noproc");
	procreg_event_free(ev);
	ck_assert_int_eq(s.reconnects, 1);
	ck_assert_uint_eq(s.nlost, 0);

	f = xconnect(d.path);
	CK_OK(f, procreg_members(f, "grp", &v, &n));
	ck_assert_uint_eq(n, 1);
	check_member(v[0], "grp", procreg_conn_id(a), "\"member value\"");
	procreg_members_free(v, n);
	CK_OK(f, procreg_members(f, "left", &v, &n));
	ck_assert_uint_eq(n, 0);
	procreg_members_free(v, n);
	for (int i = 0; i < 2; i++) {
		CK_OK(f, procreg_whereis(f, many[i], &e));
		check_entry(e, many[i], procreg_conn_id(a));
		procreg_entry_free(e);
	}
	CK_OK(f, procreg_whereis(f, "counter", &e));
	check_entry(e, "counter", procreg_conn_id(a));
	check_json(e->value, e->value_len, "2");
	procreg_entry_free(e);
	/* Publishes reach the restored membership. */
	CK_OK(f, procreg_publish(f, "grp", "\x07", 1, true, NULL, NULL, NULL));
	ev = xevent(a);
	check_publish(ev, "grp", procreg_conn_id(f), "7");
	procreg_event_free(ev);
	/* The fired monitor is gone. */
	{
		bool active = true;

		CK_OK(a, procreg_demonitor(a, ref, &active));
		ck_assert(!active);
	}
	expect_no_event(a);
	procreg_free(f);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 12. invalid arguments                                               */
/* ------------------------------------------------------------------ */

/*
 * Value and payload bytes must be exactly one msgpack object: the library
 * copies them into the request as they are, so a length-0 value, a
 * truncated object or two objects would make the daemon read the next
 * request as part of this one (issue 13: register "a" with "" timed out,
 * and "register b" became a's value).  Each is refused before anything
 * is sent, and the connection stays in step.
 */
static const struct {
	const char	*bytes;
	size_t		 len;
	const char	*what;
} bad_values[] = {
	{ "", 0, "empty" },
	{ "\x92\x01", 2, "truncated array" },
	{ "\xa5" "ab", 3, "truncated str" },
	{ "\xcd\x01", 2, "truncated uint16" },
	{ "\x01\x02", 2, "two objects" },
	{ "\x81\x01\x02\x03", 4, "trailing byte after a map" },
	{ "\x01\xc1", 2, "trailing garbage" },
	{ "\xc1", 1, "the never-used byte" },
	{ "\x91\xc1", 2, "the never-used byte inside an array" },
};

/* The probe name is still a's with value 7, and a's stream is in step. */
static void
check_in_step(procreg_t *a, const char *what, const char *api)
{
	struct procreg_entry *e = NULL;
	int r = procreg_whereis(a, "probe", &e);

	ck_assert_msg(r == PROCREG_OK, "%s after %s (%s): whereis %d (%s)",
	    api, what, "stream out of step", r, procreg_errmsg(a));
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->conn, procreg_conn_id(a));
	check_json(e->value, e->value_len, "7");
	procreg_entry_free(e);
}

#define CK_BAD(p, call, what) do {					\
	int r_ = (call);						\
	ck_assert_msg(r_ == PROCREG_E_INVAL, "%s with %s: got %d (%s), "	\
	    "want PROCREG_E_INVAL", #call, (what), r_, procreg_errmsg(p));	\
	check_in_step((p), (what), #call);				\
} while (0)

START_TEST(test_bad_value_bytes)
{
	struct procreg_options o = { 0 };
	struct procreg_entry *e, **ev;
	struct procreg_stats st;
	struct tdaemon d;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	o.path = d.path;
	/* A desynchronised stream shows as a timeout: keep it short. */
	o.timeout_ms = 2000;
	a = xconnect_opts(&o);
	b = xconnect_opts(&o);
	CK_OK(a, procreg_register_int(a, "probe", 7, NULL));
	CK_OK(a, procreg_join(a, "g", NULL, 0, NULL));
	for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]);
	    i++) {
		const void *v = bad_values[i].bytes;
		size_t n = bad_values[i].len;
		const char *w = bad_values[i].what;
		const char *names[] = { "m1", "m2" };
		const void *vals[] = { "\x01", v };
		size_t lens[] = { 1, n };
		void *res = (void *)&res;
		size_t rlen = 5;
		uint32_t q = 9;

		e = (struct procreg_entry *)&e;
		CK_BAD(a, procreg_register(a, "bad", v, n, &e), w);
		ck_assert_ptr_null(e);
		CK_BAD(a, procreg_register_opts(a, "bad", v, n, PROCREG_QUEUE,
		    NULL, &q), w);
		ck_assert_uint_eq(q, 0);
		CK_BAD(a, procreg_join(a, "bad", v, n, NULL), w);
		CK_BAD(a, procreg_send(a, "probe", v, n), w);
		CK_BAD(a, procreg_send_conn(a, procreg_conn_id(b), v, n), w);
		CK_BAD(a, procreg_send_gen(a, "probe", v, n, 1), w);
		CK_BAD(a, procreg_call(a, "probe", v, n, 0, &res, &rlen), w);
		ck_assert_ptr_null(res);
		ck_assert_uint_eq(rlen, 0);
		CK_BAD(a, procreg_call_conn(a, procreg_conn_id(b), v, n, 0,
		    NULL, NULL), w);
		CK_BAD(a, procreg_reply(a, 1, v, n), w);
		CK_BAD(a, procreg_publish(a, "g", v, n, true, NULL, NULL,
		    NULL), w);
		CK_BAD(a, procreg_update(a, "probe", v, n, NULL), w);
		CK_BAD(a, procreg_update_gen(a, "probe", v, n, 1, NULL), w);
		ev = (struct procreg_entry **)&ev;
		CK_BAD(a, procreg_register_many(a, 2, names, vals, lens, &ev),
		    w);
		ck_assert_ptr_null(ev);
	}
	/* Nothing of it reached b, and nothing was registered or joined. */
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.names, 1);
	ck_assert_uint_eq(st.groups, 1);
	ck_assert_uint_eq(st.members, 1);
	expect_no_event(b);
	expect_no_event(a);
	/*
	 * The protocol's nesting limit (30 levels, the request and its
	 * params the first two): deeper would make the daemon close the
	 * connection, so the library refuses it instead.
	 */
	{
		char deep[40];
		const char *names[] = { "deep-m" };
		const void *vals[] = { deep };
		size_t lens[1];

		memset(deep, 0x91, sizeof(deep));
		deep[28] = (char)0xc0;
		CK_OK(a, procreg_register(a, "deep", deep, 29, NULL));
		deep[29] = (char)0xc0;
		CK_BAD(a, procreg_register(a, "deeper", deep, 30, NULL),
		    "29 levels");
		/* register_many's values sit two levels lower. */
		deep[26] = (char)0xc0;
		lens[0] = 27;
		CK_OK(a, procreg_register_many(a, 1, names, vals, lens, NULL));
		deep[26] = (char)0x91;
		lens[0] = 28;
		CK_BAD(a, procreg_register_many(a, 1, names, vals, lens, NULL),
		    "27 levels in register_many");
		CK_OK(a, procreg_unregister(a, "deep"));
		CK_OK(a, procreg_unregister(a, "deep-m"));
	}
	/* NULL is still nil (no value), and one whole object still goes. */
	CK_OK(a, procreg_register(a, "nil", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "one", "\x92\x01\xa1x", 4, &e));
	check_json(e->value, e->value_len, "[1,\"x\"]");
	procreg_entry_free(e);
	CK_OK(b, procreg_send(b, "probe", "\xc0", 1));
	{
		struct procreg_event *m = xevent(a);

		check_message(m, "probe", procreg_conn_id(b), "\xc0", 1);
		procreg_event_free(m);
	}
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * auto_reconnect at scale: 20,000 names and 1,000 monitors come back (or
 * are reported lost, or fire noproc) after a restart, and names given up
 * afterwards stay given up at the next restart.  The handle finds a held
 * name or monitor by hashing; the linear lookups it had made this
 * quadratic.  Nothing here is timed: it must be right at this size.
 */
#define MANY_NAMES	20000
#define MANY_MONS	1000
#define MANY_BATCH	1000
#define MANY_DROPPED	2000

START_TEST(test_reconnect_many_names)
{
	static char names[MANY_NAMES][16], other[MANY_MONS][16];
	static uint64_t refs[MANY_MONS];
	static bool fired[MANY_MONS];
	const char *batch[MANY_BATCH];
	struct tdaemon d;
	struct procreg_event *ev;
	struct seen s;
	char **keys = NULL;
	size_t nkeys = 0, i, j;
	struct procreg_hello h;
	procreg_t *a, *o, *f;
	bool active;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	o = xconnect(d.path);
	for (i = 0; i < MANY_NAMES; i++)
		snprintf(names[i], sizeof(names[i]), "n%05zu", i);
	for (i = 0; i < MANY_MONS; i++)
		snprintf(other[i], sizeof(other[i]), "o%05zu", i);
	for (i = 0; i < MANY_NAMES; i += MANY_BATCH) {
		for (j = 0; j < MANY_BATCH; j++)
			batch[j] = names[i + j];
		CK_OK(a, procreg_register_many(a, MANY_BATCH, batch, NULL,
		    NULL, NULL));
	}
	for (i = 0; i < MANY_MONS; i++)
		batch[i] = other[i];
	CK_OK(o, procreg_register_many(o, MANY_MONS, batch, NULL, NULL,
	    NULL));
	for (i = 0; i < MANY_MONS; i++)
		CK_OK(a, procreg_monitor(a, other[i], &refs[i]));
	expect_no_event(a);

	/* o does not come back; f takes two of a's names first. */
	kill_daemon(&d);
	procreg_free(o);
	restart_daemon(&d);
	f = xconnect(d.path);
	CK_OK(f, procreg_register(f, names[7], NULL, 0, NULL));
	CK_OK(f, procreg_register(f, names[MANY_NAMES - 1], NULL, 0, NULL));

	/* Every monitor fires noproc once, with the ref the caller got. */
	for (i = 0; i < MANY_MONS; i++) {
		ev = xevent(a);
		ck_assert_int_eq(ev->kind, PROCREG_EV_DOWN);
		ck_assert_str_eq(ev->reason, "noproc");
		ck_assert_ptr_nonnull(ev->name);
		ck_assert_int_eq(ev->name[0], 'o');
		j = (size_t)strtoul(ev->name + 1, NULL, 10);
		ck_assert_uint_lt(j, MANY_MONS);
		ck_assert_uint_eq(ev->ref, refs[j]);
		ck_assert(!fired[j]);
		fired[j] = true;
		procreg_event_free(ev);
	}
	ck_assert_int_eq(s.reconnects, 1);
	ck_assert_uint_eq(s.nlost, 2);
	ck_assert_str_eq(s.lost[0], names[7]);
	ck_assert_str_eq(s.lost[1], names[MANY_NAMES - 1]);
	CK_OK(f, procreg_keys(f, procreg_conn_id(a), &keys, &nkeys, NULL,
	    NULL));
	ck_assert_uint_eq(nkeys, MANY_NAMES - 2);
	procreg_strv_free(keys, nkeys);
	/* The fired monitors are forgotten. */
	CK_OK(a, procreg_demonitor(a, refs[MANY_MONS / 2], &active));
	ck_assert(!active);

	/* Names given up are not put back by the next reconnect. */
	for (i = 0; i < MANY_DROPPED; i++)
		CK_OK(a, procreg_unregister(a, names[100 + i]));
	procreg_free(f);
	kill_daemon(&d);
	restart_daemon(&d);
	f = xconnect(d.path);
	/* Any call notices the lost connection and reconnects first. */
	CK_OK(a, procreg_hello(a, &h));
	ck_assert_int_eq(s.reconnects, 2);
	ck_assert_uint_eq(s.nlost, 0);
	CK_OK(f, procreg_keys(f, procreg_conn_id(a), &keys, &nkeys, NULL,
	    NULL));
	ck_assert_uint_eq(nkeys, MANY_NAMES - 2 - MANY_DROPPED);
	for (i = 0, j = 0; i < MANY_NAMES; i++) {
		if (i == 7 || i == MANY_NAMES - 1 ||
		    (i >= 100 && i < 100 + MANY_DROPPED))
			continue;
		ck_assert_str_eq(keys[j], names[i]);
		j++;
	}
	procreg_strv_free(keys, nkeys);
	expect_no_event(a);
	procreg_free(f);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * The ABI policy (procreg.h): caller-allocated structs travel with their
 * size.  A caller built against an older header (a smaller struct) gets
 * only what its struct holds; one built against a newer header gets its
 * unknown output fields zeroed, and is refused when it sets input fields
 * this library does not know.  The plain-named functions stay exported.
 */
START_TEST(test_abi_sized)
{
	struct {
		struct procreg_stats	st;
		uint64_t		future;
	} big;
	struct {
		struct procreg_options	o;
		uint64_t		future;
	} newer;
	struct {
		struct procreg_subscribe_opts	so;
		uint64_t			future;
	} newer_so;
	struct procreg_subscription sub;
	struct procreg_stats st;
	struct procreg_hello h;
	struct tdaemon d;
	procreg_t *a, *q = NULL;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);

	/* An older caller's stats end before draining: left alone. */
	memset(&st, 0xa5, sizeof(st));
	CK_OK(a, procreg_stats_sized(a, &st,
	    offsetof(struct procreg_stats, draining)));
	ck_assert_uint_eq(st.connections, 1);
	ck_assert_uint_eq(st.draining, 0xa5a5a5a5a5a5a5a5ULL);
	/* Today's caller sees draining (none draining now). */
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.connections, 1);
	ck_assert_uint_eq(st.draining, 0);
	/* A newer caller's unknown counter reads 0. */
	memset(&big, 0xa5, sizeof(big));
	CK_OK(a, procreg_stats_sized(a, &big.st, sizeof(big)));
	ck_assert_uint_eq(big.st.connections, 1);
	ck_assert_uint_eq(big.future, 0);
	/* The exported plain-named entry points still work. */
	memset(&st, 0xa5, sizeof(st));
	CK_OK(a, (procreg_stats)(a, &st));
	ck_assert_uint_eq(st.draining, 0);
	memset(&h, 0, sizeof(h));
	CK_OK(a, (procreg_hello)(a, &h));
	ck_assert_uint_eq(h.conn, procreg_conn_id(a));
	CK_OK(a, procreg_hello_sized(a, &h, offsetof(struct procreg_hello,
	    boot)));
	ck_assert_uint_eq(h.conn, procreg_conn_id(a));

	/* Input: a newer caller's unknown option is refused, zero is not. */
	memset(&newer, 0, sizeof(newer));
	newer.o.path = d.path;
	newer.future = 1;
	CK_CALL(q, procreg_connect_sized(&q, &newer.o, sizeof(newer)),
	    PROCREG_E_INVAL);
	ck_assert_ptr_nonnull(q);
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(q), "older"));
	procreg_free(q);
	newer.future = 0;
	CK_OK(q, procreg_connect_sized(&q, &newer.o, sizeof(newer)));
	CK_OK(q, procreg_stats(q, &st));
	ck_assert_uint_eq(st.connections, 2);
	procreg_free(q);
	q = NULL;
	CK_OK(q, (procreg_connect)(&q, &newer.o));
	procreg_free(q);

	memset(&newer_so, 0, sizeof(newer_so));
	newer_so.future = 1;
	CK_CALL(a, procreg_subscribe_sized(a, "", &newer_so.so,
	    sizeof(newer_so), &sub, sizeof(sub)), PROCREG_E_INVAL);
	newer_so.future = 0;
	CK_OK(a, procreg_subscribe_sized(a, "", &newer_so.so,
	    sizeof(newer_so), &sub, sizeof(sub)));
	ck_assert(sub.has_snapshot);
	ck_assert_uint_eq(sub.nentries, 0);
	procreg_subscription_free(&sub);
	CK_OK(a, (procreg_subscribe)(a, "", NULL, &sub));
	(procreg_subscription_free)(&sub);
	ck_assert_ptr_null(sub.entries);

	/* The library's frees accept NULL. */
	procreg_bytes_free(NULL);
	procreg_conns_free(NULL);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_invalid_args)
{
	struct tdaemon d;
	struct procreg_entry *e;
	struct procreg_stats st;
	char name[300];
	uint64_t ref = 0;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);

	CK_CALL(a, procreg_register(a, NULL, NULL, 0, NULL), PROCREG_E_INVAL);
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	e = (struct procreg_entry *)&e;
	CK_CALL(a, procreg_register(a, NULL, NULL, 0, &e), PROCREG_E_INVAL);
	ck_assert_ptr_null(e);
	CK_CALL(a, procreg_register_str(a, NULL, "v", NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_register_int(a, NULL, 1, NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_unregister(a, NULL), PROCREG_E_INVAL);
	e = (struct procreg_entry *)&e;
	CK_CALL(a, procreg_whereis(a, NULL, &e), PROCREG_E_INVAL);
	ck_assert_ptr_null(e);
	CK_CALL(a, procreg_send(a, NULL, "\xc0", 1), PROCREG_E_INVAL);
	CK_CALL(a, procreg_send(a, "x", NULL, 0), PROCREG_E_INVAL);
	CK_CALL(a, procreg_send_str(a, NULL, "x"), PROCREG_E_INVAL);
	CK_CALL(a, procreg_send_str(a, "x", NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_monitor(a, NULL, &ref), PROCREG_E_INVAL);
	/* Protocol 2. */
	{
		void *res = (void *)&res;
		size_t len = 7;
		struct procreg_member *m = (struct procreg_member *)&m;
		struct procreg_member **mv = (struct procreg_member **)&mv;

		CK_CALL(a, procreg_call(a, NULL, "\xc0", 1, 0, &res, &len),
		    PROCREG_E_INVAL);
		ck_assert_ptr_null(res);
		CK_CALL(a, procreg_call(a, "x", NULL, 0, 0, &res, &len),
		    PROCREG_E_INVAL);
		CK_CALL(a, procreg_call(a, "x", "\xc0", 1, -1, &res, &len),
		    PROCREG_E_INVAL);
		CK_CALL(a, procreg_call_conn(a, 1, NULL, 0, 0, &res, &len),
		    PROCREG_E_INVAL);
		CK_CALL(a, procreg_join(a, NULL, NULL, 0, &m),
		    PROCREG_E_INVAL);
		ck_assert_ptr_null(m);
		CK_CALL(a, procreg_leave(a, NULL), PROCREG_E_INVAL);
		CK_CALL(a, procreg_members(a, NULL, &mv, &len),
		    PROCREG_E_INVAL);
		ck_assert_ptr_null(mv);
		CK_CALL(a, procreg_publish(a, NULL, "\xc0", 1, true, NULL,
		    NULL, NULL), PROCREG_E_INVAL);
		CK_CALL(a, procreg_publish(a, "g", NULL, 0, true, NULL, NULL,
		    NULL), PROCREG_E_INVAL);
	}

	/* 256 bytes: the daemon's bad_request; 255 bytes is fine. */
	memset(name, 'n', 256);
	name[256] = '\0';
	CK_CALL(a, procreg_register(a, name, NULL, 0, NULL),
	    PROCREG_E_BAD_REQUEST);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_BAD_REQUEST),
	    "bad_request");
	ck_assert_uint_gt(strlen(procreg_errmsg(a)), 0);
	CK_CALL(a, procreg_whereis(a, name, &e), PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_send_str(a, name, "x"), PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_monitor(a, name, &ref), PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_unregister(a, name), PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_join(a, name, NULL, 0, NULL),
	    PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_call(a, name, "\xc0", 1, 0, NULL, NULL),
	    PROCREG_E_BAD_REQUEST);
	/* A call timeout over a day is the daemon's bad_request. */
	CK_CALL(a, procreg_call(a, "x", "\xc0", 1, 86400001, NULL, NULL),
	    PROCREG_E_BAD_REQUEST);
	name[255] = '\0';
	CK_OK(a, procreg_register(a, name, NULL, 0, &e));
	ck_assert_str_eq(e->name, name);
	procreg_entry_free(e);
	/* Empty, invalid UTF-8. */
	CK_CALL(a, procreg_register(a, "", NULL, 0, NULL),
	    PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_register(a, "\xff\xfe", NULL, 0, NULL),
	    PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_register(a, "\xc0\x80", NULL, 0, NULL),
	    PROCREG_E_BAD_REQUEST);
	/* A UTF-8 name is fine and compared as bytes. */
	CK_OK(a, procreg_register(a, "caf\xc3\xa9", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "Caf\xc3\xa9", NULL, 0, NULL));

	/* The handle is still in sync after all that. */
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.names, 3);
	ck_assert_uint_eq(st.connections, 1);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 13. protocol 2, part 2: queues, replacement, fencing, await,       */
/*     subscriptions                                                   */
/* ------------------------------------------------------------------ */

/* The next event, which must be of kind; fails the test otherwise. */
static struct procreg_event *
xevent_kind_at(procreg_t *p, enum procreg_event_kind kind, int line)
{
	struct procreg_event *ev = xevent_at(p, line);

	ck_assert_msg(ev->kind == kind, "line %d: expected event kind %d, got "
	    "%d (name %s, reason %s)", line, (int)kind, (int)ev->kind,
	    ev->name ? ev->name : "-", ev->reason ? ev->reason : "-");
	return ev;
}

#define xevent_kind(p, k)	xevent_kind_at((p), (k), __LINE__)

/* The next event: a subscription event of sub, seq and change. */
static struct procreg_event *
xsub_event_at(procreg_t *p, uint64_t sub, uint64_t seq,
    enum procreg_change change, const char *name, int line)
{
	struct procreg_event *ev = xevent_kind_at(p, PROCREG_EV_SUBSCRIPTION,
	    line);

	ck_assert_msg(ev->sub == sub && ev->seq == seq && ev->change == change,
	    "line %d: expected sub %" PRIu64 " seq %" PRIu64 " change %d, "
	    "got sub %" PRIu64 " seq %" PRIu64 " change %d (%s)", line, sub,
	    seq, (int)change, ev->sub, ev->seq, (int)ev->change,
	    ev->change_name ? ev->change_name : "-");
	ck_assert_ptr_nonnull(ev->change_name);
	ck_assert_ptr_nonnull(ev->payload);
	if (name != NULL)
		ck_assert_str_eq(ev->name, name);
	return ev;
}

#define xsub_event(p, sub, seq, ch, name) \
	xsub_event_at((p), (sub), (seq), (ch), (name), __LINE__)

static uint64_t
cur_seq(procreg_t *p)
{
	struct procreg_stats st;

	CK_OK(p, procreg_stats(p, &st));
	return st.seq;
}

START_TEST(test_queue_ownership)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *e = NULL, *ea = NULL;
	unsigned char buf[16];
	uint64_t *conns, ref;
	uint32_t pos = 99;
	size_t n;
	procreg_t *a, *b, *c, *o;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	c = xconnect(d.path);
	o = xconnect(d.path);

	/* Free: ours at once, an entry and position 0. */
	CK_OK(a, procreg_register_opts(a, "lock", buf, procreg_pack_str(buf,
	    sizeof(buf), "a"), PROCREG_QUEUE, &ea, &pos));
	check_entry(ea, "lock", procreg_conn_id(a));
	check_json(ea->value, ea->value_len, "\"a\"");
	ck_assert_uint_eq(pos, 0);
	/* Taken: in line, no entry. */
	e = (struct procreg_entry *)&e;
	CK_OK(b, procreg_register_opts(b, "lock", buf, procreg_pack_str(buf,
	    sizeof(buf), "b"), PROCREG_QUEUE, &e, &pos));
	ck_assert_ptr_null(e);
	ck_assert_uint_eq(pos, 1);
	CK_OK(c, procreg_register_opts(c, "lock", NULL, 0, PROCREG_QUEUE,
	    NULL, &pos));
	ck_assert_uint_eq(pos, 2);
	CK_OK(o, procreg_queue(o, "lock", &conns, &n));
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(conns[0], procreg_conn_id(b));
	ck_assert_uint_eq(conns[1], procreg_conn_id(c));
	free(conns);
	/* A waiter queues once; without queue, taken. */
	CK_CALL(b, procreg_register_opts(b, "lock", NULL, 0, PROCREG_QUEUE,
	    NULL, &pos), PROCREG_E_TAKEN);
	CK_CALL(o, procreg_register_opts(o, "lock", NULL, 0, 0, NULL, &pos),
	    PROCREG_E_TAKEN);
	ck_assert_uint_eq(pos, 0);
	/* No queue for a free name, or an unregistered one. */
	CK_OK(o, procreg_queue(o, "nobody", &conns, &n));
	ck_assert_ptr_null(conns);
	ck_assert_uint_eq(n, 0);

	/* Fenced unregister: a wrong gen is stale, and nothing changes. */
	CK_CALL(a, procreg_unregister_gen(a, "lock", ea->gen + 100),
	    PROCREG_E_STALE);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_STALE), "stale");
	CK_OK(o, procreg_monitor(o, "lock", &ref));
	CK_OK(a, procreg_unregister_gen(a, "lock", ea->gen));

	/* b is the owner in the same step, with a new gen and its value. */
	ev = xevent_kind(b, PROCREG_EV_ACQUIRED);
	ck_assert_str_eq(ev->name, "lock");
	check_entry(ev->entry, "lock", procreg_conn_id(b));
	check_json(ev->entry->value, ev->entry->value_len, "\"b\"");
	ck_assert_uint_gt(ev->entry->gen, ea->gen);
	CK_OK(o, procreg_whereis(o, "lock", &e));
	check_entry(e, "lock", procreg_conn_id(b));
	ck_assert_uint_eq(e->gen, ev->entry->gen);
	procreg_entry_free(e);
	procreg_event_free(ev);
	/* The monitor watched a's registration: down, with a's reason. */
	ev = xevent(o);
	check_down(ev, ref, "lock", "unregistered");
	procreg_event_free(ev);
	expect_no_event(a);
	expect_no_event(c);
	CK_OK(o, procreg_queue(o, "lock", &conns, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(conns[0], procreg_conn_id(c));
	free(conns);

	/* A waiter's unregister gives up its place. */
	CK_OK(c, procreg_unregister(c, "lock"));
	CK_OK(o, procreg_queue(o, "lock", &conns, &n));
	ck_assert_uint_eq(n, 0);
	free(conns);
	/* and it may queue again; b's connection going away hands over. */
	CK_OK(c, procreg_register_opts(c, "lock", NULL, 0, PROCREG_QUEUE,
	    NULL, &pos));
	ck_assert_uint_eq(pos, 1);
	procreg_free(b);
	ev = xevent_kind(c, PROCREG_EV_ACQUIRED);
	check_entry(ev->entry, "lock", procreg_conn_id(c));
	check_json(ev->entry->value, ev->entry->value_len, "null");
	procreg_event_free(ev);
	expect_no_event(a);

	procreg_entry_free(ea);
	procreg_free(o);
	procreg_free(c);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_replacement)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *eh = NULL, *eg = NULL;
	uint64_t *conns, ref;
	uint32_t pos;
	size_t n;
	procreg_t *h, *g, *o;

	t_daemon_start(&d, NULL);
	h = xconnect(d.path);
	g = xconnect(d.path);
	o = xconnect(d.path);

	CK_OK(h, procreg_register_opts(h, "primary", "\xa1h", 2,
	    PROCREG_ALLOW_REPLACEMENT | PROCREG_QUEUE, &eh, &pos));
	check_entry(eh, "primary", procreg_conn_id(h));
	CK_OK(o, procreg_monitor(o, "primary", &ref));
	/* replace takes it at once, a new gen; h hears it and queues. */
	CK_OK(g, procreg_register_opts(g, "primary", "\xa1g", 2,
	    PROCREG_REPLACE, &eg, &pos));
	check_entry(eg, "primary", procreg_conn_id(g));
	check_json(eg->value, eg->value_len, "\"g\"");
	ck_assert_uint_gt(eg->gen, eh->gen);
	ck_assert_uint_eq(pos, 0);
	ev = xevent_kind(h, PROCREG_EV_LOST);
	ck_assert_str_eq(ev->name, "primary");
	ck_assert_str_eq(ev->reason, "replaced");
	procreg_event_free(ev);
	ev = xevent(o);
	check_down(ev, ref, "primary", "replaced");
	procreg_event_free(ev);
	CK_OK(o, procreg_queue(o, "primary", &conns, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(conns[0], procreg_conn_id(h));
	free(conns);
	/* g did not allow replacement: h cannot take it back. */
	CK_CALL(h, procreg_unregister(h, "primary"), PROCREG_OK);
	CK_CALL(h, procreg_register_opts(h, "primary", NULL, 0,
	    PROCREG_REPLACE, NULL, &pos), PROCREG_E_TAKEN);
	/* With queue too, replace that does not apply queues. */
	CK_OK(h, procreg_register_opts(h, "primary", NULL, 0,
	    PROCREG_REPLACE | PROCREG_QUEUE, NULL, &pos));
	ck_assert_uint_eq(pos, 1);
	/* Without queue, a replaced owner simply loses the name. */
	CK_OK(o, procreg_register_opts(o, "solo", NULL, 0,
	    PROCREG_ALLOW_REPLACEMENT, NULL, NULL));
	CK_OK(g, procreg_register_opts(g, "solo", NULL, 0, PROCREG_REPLACE,
	    NULL, NULL));
	ev = xevent_kind(o, PROCREG_EV_LOST);
	ck_assert_str_eq(ev->name, "solo");
	procreg_event_free(ev);
	CK_OK(o, procreg_queue(o, "solo", &conns, &n));
	ck_assert_uint_eq(n, 0);
	free(conns);
	/* Unknown flags are the caller's mistake. */
	CK_CALL(o, procreg_register_opts(o, "x", NULL, 0, 0x100, NULL, NULL),
	    PROCREG_E_INVAL);
	expect_no_event(g);

	procreg_entry_free(eh);
	procreg_entry_free(eg);
	procreg_free(o);
	procreg_free(g);
	procreg_free(h);
	t_daemon_stop(&d);
}
END_TEST

/*
 * An administrator evicts two names of a reconnecting handle, one of them
 * registered with PROCREG_QUEUE and waited for: the owner hears lost,
 * "evicted", for each, the waiter takes the queued one over, and the
 * owner is not queued for it.  After a daemon restart the handle
 * registers the name it kept and neither evicted one: a holder that got
 * an evicted name back would run beside its next owner.
 */
START_TEST(test_evict_lost_reconnect)
{
	static const char *const evicted[] = { "evictee", "qevictee" };
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *e;
	struct seen s;
	uint64_t *conns;
	uint32_t pos;
	size_t n;
	procreg_t *a, *adm, *w, *f;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &s);
	adm = xconnect(d.path);		/* the test runs as root */
	w = xconnect(d.path);
	CK_OK(a, procreg_register(a, "kept", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "evictee", NULL, 0, NULL));
	CK_OK(a, procreg_register_opts(a, "qevictee", NULL, 0, PROCREG_QUEUE,
	    NULL, &pos));
	ck_assert_uint_eq(pos, 0);
	CK_OK(w, procreg_register_opts(w, "qevictee", NULL, 0, PROCREG_QUEUE,
	    NULL, &pos));
	ck_assert_uint_eq(pos, 1);

	for (size_t i = 0; i < 2; i++) {
		CK_OK(adm, procreg_evict(adm, evicted[i]));
		ev = xevent_kind(a, PROCREG_EV_LOST);
		ck_assert_str_eq(ev->name, evicted[i]);
		ck_assert_str_eq(ev->reason, "evicted");
		procreg_event_free(ev);
	}
	ev = xevent_kind(w, PROCREG_EV_ACQUIRED);
	ck_assert_str_eq(ev->name, "qevictee");
	ck_assert_uint_eq(ev->entry->conn, procreg_conn_id(w));
	procreg_event_free(ev);
	CK_OK(adm, procreg_queue(adm, "qevictee", &conns, &n));
	ck_assert_uint_eq(n, 0);
	free(conns);
	expect_no_event(a);

	/* The waiter does not come back with the new daemon. */
	procreg_free(w);
	kill_daemon(&d);
	restart_daemon(&d);
	process_until_reconnected(a, &s);
	ck_assert_uint_eq(s.nlost, 0);
	f = xconnect(d.path);
	CK_OK(f, procreg_whereis(f, "kept", &e));
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->conn, procreg_conn_id(a));
	procreg_entry_free(e);
	for (size_t i = 0; i < 2; i++) {
		CK_OK(f, procreg_whereis(f, evicted[i], &e));
		ck_assert_msg(e == NULL, "%s was registered again", evicted[i]);
	}
	CK_OK(f, procreg_queue(f, "qevictee", &conns, &n));
	ck_assert_uint_eq(n, 0);
	free(conns);
	/* Nor was it queued for and acquired: no event at all. */
	expect_no_event(a);

	procreg_free(f);
	procreg_free(adm);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_fencing)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *e = NULL, *u = NULL;
	unsigned char buf[16];
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(a, procreg_register_int(a, "f", 1, &e));

	/* send: only to the registration with that gen. */
	CK_CALL(b, procreg_send_gen(b, "f", "\x01", 1, e->gen + 1),
	    PROCREG_E_STALE);
	CK_OK(b, procreg_send_gen(b, "f", "\x02", 1, e->gen));
	ev = xevent(a);
	check_message(ev, "f", procreg_conn_id(b), "\x02", 1);
	procreg_event_free(ev);
	CK_CALL(b, procreg_send_gen(b, "nobody", "\x01", 1, 1),
	    PROCREG_E_NOT_FOUND);
	CK_CALL(b, procreg_send_gen(b, "f", NULL, 0, 1), PROCREG_E_INVAL);

	/* update: stale keeps the value; the right gen changes it and
	 * keeps gen and since. */
	CK_CALL(a, procreg_update_gen(a, "f", buf, procreg_pack_int(buf,
	    sizeof(buf), 2), e->gen + 1, &u), PROCREG_E_STALE);
	ck_assert_ptr_null(u);
	CK_OK(a, procreg_update_gen(a, "f", buf, procreg_pack_int(buf,
	    sizeof(buf), 3), e->gen, &u));
	check_json(u->value, u->value_len, "3");
	ck_assert_uint_eq(u->gen, e->gen);
	ck_assert_uint_eq(u->since_ms, e->since_ms);
	procreg_entry_free(u);
	CK_CALL(b, procreg_update_gen(b, "f", NULL, 0, e->gen, NULL),
	    PROCREG_E_NOT_OWNER);

	/* unregister: not_owner before stale for another's name. */
	CK_CALL(b, procreg_unregister_gen(b, "f", e->gen), PROCREG_E_NOT_OWNER);
	CK_OK(a, procreg_unregister_gen(a, "f", e->gen));
	CK_CALL(a, procreg_unregister_gen(a, "f", e->gen),
	    PROCREG_E_NOT_FOUND);
	/* A new registration of the name: the old gen is stale. */
	CK_OK(a, procreg_register(a, "f", NULL, 0, NULL));
	CK_CALL(b, procreg_send_gen(b, "f", "\x01", 1, e->gen),
	    PROCREG_E_STALE);
	CK_CALL(a, procreg_unregister_gen(a, "f", e->gen), PROCREG_E_STALE);
	expect_no_event(a);
	procreg_entry_free(e);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A second handle in a thread: once the daemon holds an await (stats
 * says so), a message to "box", then the registration of "late", held
 * until the main thread says it has seen it (a byte on done[0]).  Waiting
 * for the await, not for a pause, makes sure the await is answered by
 * the registration and not at once.
 */
struct late_reg {
	const char	*path;
	int		 status;
	int		 done[2];
};

static void *
register_late(void *arg)
{
	struct late_reg *l = arg;
	struct procreg_options o = { 0 };
	struct procreg_stats st = { 0 };
	struct pollfd pfd;
	procreg_t *p = NULL;
	int i;

	o.path = l->path;
	if ((l->status = procreg_connect(&p, &o)) != PROCREG_OK)
		goto out;
	for (i = 0; i < ROUNDS; i++) {
		if ((l->status = procreg_stats(p, &st)) != PROCREG_OK ||
		    st.awaits > 0)
			break;
		usleep(ROUND_US);
	}
	if (l->status != PROCREG_OK)
		goto out;
	if (st.awaits == 0) {
		l->status = -101;	/* the await never reached the daemon */
		goto out;
	}
	if ((l->status = procreg_send_str(p, "box", "meanwhile")) ==
	    PROCREG_OK)
		l->status = procreg_register_str(p, "late", "here", NULL);
	pfd.fd = l->done[0];
	pfd.events = POLLIN;
	(void)poll(&pfd, 1, T_TIMEOUT_MS);
out:
	procreg_free(p);
	return NULL;
}

START_TEST(test_await)
{
	struct tdaemon d;
	struct procreg_event *ev;
	struct procreg_entry *e = NULL;
	struct procreg_stats st;
	struct late_reg l = { 0 };
	pthread_t t;
	procreg_t *a, *b;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	CK_OK(b, procreg_register_str(b, "there", "v", NULL));
	CK_OK(a, procreg_register(a, "box", NULL, 0, NULL));

	/* Registered: at once (0 only checks). */
	CK_OK(a, procreg_await(a, "there", 0, &e));
	check_entry(e, "there", procreg_conn_id(b));
	check_json(e->value, e->value_len, "\"v\"");
	procreg_entry_free(e);
	CK_OK(a, procreg_await(a, "there", 1000, NULL));
	/* Not registered: the daemon's timeout. */
	e = (struct procreg_entry *)&e;
	CK_CALL(a, procreg_await(a, "missing", 0, &e),
	    PROCREG_E_CALL_TIMEOUT);
	ck_assert_ptr_null(e);
	CK_CALL(a, procreg_await(a, "missing", 50, NULL),
	    PROCREG_E_CALL_TIMEOUT);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_CALL_TIMEOUT),
	    "timeout");

	/* Registered later by another client: the await answers then, and
	 * a message that came meanwhile waits in the queue. */
	l.path = d.path;
	l.status = -100;
	ck_assert_int_eq(pipe(l.done), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, register_late, &l), 0);
	CK_OK(a, procreg_await(a, "late", 10000, &e));
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->name, "late");
	ck_assert_uint_ne(e->conn, procreg_conn_id(a));
	check_json(e->value, e->value_len, "\"here\"");
	procreg_entry_free(e);
	ev = xevent(a);
	ck_assert_int_eq(ev->kind, PROCREG_EV_MESSAGE);
	ck_assert_str_eq(ev->name, "box");
	check_json(ev->payload, ev->payload_len, "\"meanwhile\"");
	procreg_event_free(ev);
	ck_assert_int_eq(write(l.done[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(l.status, PROCREG_OK);
	close(l.done[0]);
	close(l.done[1]);

	/* Bad timeouts are ours to refuse; no await is left pending. */
	CK_CALL(a, procreg_await(a, "x", -1, NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_await(a, "x", 86400001, NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_await(a, NULL, 0, NULL), PROCREG_E_INVAL);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.awaits, 0);
	expect_no_event(a);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_subscribe)
{
	struct tdaemon d;
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription s1, s2, s3;
	struct procreg_event *ev;
	uint64_t seq, base, *conns, sub1, sub2, sub3;
	uint32_t pos;
	size_t n;
	bool active;
	procreg_t *a, *b, *w;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	b = xconnect(d.path);
	w = xconnect(d.path);
	CK_OK(a, procreg_register_int(a, "sub/x", 1, NULL));
	CK_OK(a, procreg_register(a, "other", NULL, 0, NULL));
	CK_OK(a, procreg_join(a, "sub/g", "\xa1m", 2, NULL));
	seq = cur_seq(w);

	/* Names only: the snapshot of the names under the prefix. */
	CK_OK(w, procreg_subscribe(w, "sub/", NULL, &s1));
	ck_assert(s1.has_snapshot);
	ck_assert(!s1.gap);
	ck_assert_uint_eq(s1.seq, seq);
	ck_assert_uint_eq(s1.nentries, 1);
	check_entry(s1.entries[0], "sub/x", procreg_conn_id(a));
	check_json(s1.entries[0]->value, s1.entries[0]->value_len, "1");
	ck_assert_uint_eq(s1.nmembers, 0);
	sub1 = s1.sub;
	/* With groups: the members too. */
	so.groups = true;
	CK_OK(w, procreg_subscribe(w, "sub/", &so, &s2));
	ck_assert_uint_ne(s2.sub, s1.sub);
	ck_assert_uint_eq(s2.nentries, 1);
	ck_assert_uint_eq(s2.nmembers, 1);
	check_member(s2.members[0], "sub/g", procreg_conn_id(a), "\"m\"");
	sub2 = s2.sub;
	procreg_subscription_free(&s2);
	ck_assert_ptr_null(s2.entries);
	ck_assert_uint_eq(s2.nentries, 0);

	/* Each change, to both, in order, with the same seq. */
	CK_OK(a, procreg_register_str(a, "sub/y", "y", NULL));
	CK_OK(a, procreg_register(a, "other2", NULL, 0, NULL));
	CK_OK(a, procreg_update(a, "sub/y", "\x05", 1, NULL));
	CK_OK(a, procreg_unregister(a, "sub/y"));
	CK_OK(b, procreg_join(b, "sub/g", NULL, 0, NULL));
	CK_OK(b, procreg_leave(b, "sub/g"));
	ev = xsub_event(w, sub1, seq + 1, PROCREG_CH_REGISTERED, "sub/y");
	ck_assert_str_eq(ev->change_name, "registered");
	check_entry(ev->entry, "sub/y", procreg_conn_id(a));
	check_json(ev->entry->value, ev->entry->value_len, "\"y\"");
	/* The raw payload is the entry too. */
	ck_assert_uint_gt(ev->payload_len, 0);
	ck_assert_uint_eq(((unsigned char *)ev->payload)[0] & 0xf0, 0x80);
	procreg_event_free(ev);
	ev = xsub_event(w, sub2, seq + 1, PROCREG_CH_REGISTERED, "sub/y");
	procreg_event_free(ev);
	/* "other2" is not under the prefix: seq + 2 is not ours. */
	for (uint64_t sb = 0; sb < 2; sb++) {
		ev = xsub_event(w, sb ? sub2 : sub1, seq + 3,
		    PROCREG_CH_UPDATED, "sub/y");
		check_json(ev->entry->value, ev->entry->value_len, "5");
		procreg_event_free(ev);
	}
	for (uint64_t sb = 0; sb < 2; sb++) {
		ev = xsub_event(w, sb ? sub2 : sub1, seq + 4,
		    PROCREG_CH_UNREGISTERED, "sub/y");
		ck_assert_str_eq(ev->reason, "unregistered");
		ck_assert_ptr_null(ev->entry);
		check_json(ev->payload, ev->payload_len,
		    "[\"sub/y\",\"unregistered\"]");
		procreg_event_free(ev);
	}
	/* Groups to the groups subscription only. */
	ev = xsub_event(w, sub2, seq + 5, PROCREG_CH_JOINED, "sub/g");
	ck_assert_str_eq(ev->change_name, "joined");
	check_member(ev->member, "sub/g", procreg_conn_id(b), "null");
	procreg_event_free(ev);
	ev = xsub_event(w, sub2, seq + 6, PROCREG_CH_LEFT, "sub/g");
	check_member(ev->member, "sub/g", procreg_conn_id(b), "null");
	procreg_event_free(ev);
	expect_no_event(w);

	/* A hand-over is one event: the new owner's entry. */
	CK_OK(a, procreg_register_opts(a, "sub/q", NULL, 0, PROCREG_QUEUE,
	    NULL, NULL));
	CK_OK(b, procreg_register_opts(b, "sub/q", "\x07", 1, PROCREG_QUEUE,
	    NULL, &pos));
	ck_assert_uint_eq(pos, 1);
	CK_OK(a, procreg_unregister(a, "sub/q"));
	ev = xevent_kind(b, PROCREG_EV_ACQUIRED);
	procreg_event_free(ev);
	ev = xsub_event(w, sub1, seq + 7, PROCREG_CH_REGISTERED, "sub/q");
	check_entry(ev->entry, "sub/q", procreg_conn_id(a));
	procreg_event_free(ev);
	ev = xsub_event(w, sub2, seq + 7, PROCREG_CH_REGISTERED, "sub/q");
	procreg_event_free(ev);
	for (uint64_t sb = 0; sb < 2; sb++) {
		ev = xsub_event(w, sb ? sub2 : sub1, seq + 8,
		    PROCREG_CH_HANDOVER, "sub/q");
		check_entry(ev->entry, "sub/q", procreg_conn_id(b));
		check_json(ev->entry->value, ev->entry->value_len, "7");
		procreg_event_free(ev);
	}
	CK_OK(w, procreg_queue(w, "sub/q", &conns, &n));
	ck_assert_uint_eq(n, 0);
	free(conns);

	/* unsubscribe: true once, then false; no event follows. */
	CK_OK(w, procreg_unsubscribe(w, sub2, &active));
	ck_assert(active);
	CK_OK(w, procreg_unsubscribe(w, sub2, &active));
	ck_assert(!active);
	CK_OK(w, procreg_unsubscribe(w, 999, NULL));

	/* Resume after seq + 3: the events after it under the prefix are
	 * replayed, then the stream goes on live. */
	base = cur_seq(w);
	so.groups = false;
	so.has_since = true;
	so.since = seq + 3;
	CK_OK(w, procreg_subscribe(w, "sub/", &so, &s3));
	ck_assert(!s3.has_snapshot);
	ck_assert(!s3.gap);
	ck_assert_uint_eq(s3.seq, base);
	ck_assert_uint_eq(s3.nentries, 0);
	ck_assert_ptr_null(s3.entries);
	sub3 = s3.sub;
	ev = xsub_event(w, sub3, seq + 4, PROCREG_CH_UNREGISTERED, "sub/y");
	procreg_event_free(ev);
	ev = xsub_event(w, sub3, seq + 7, PROCREG_CH_REGISTERED, "sub/q");
	procreg_event_free(ev);
	ev = xsub_event(w, sub3, seq + 8, PROCREG_CH_HANDOVER, "sub/q");
	procreg_event_free(ev);
	CK_OK(a, procreg_register(a, "sub/z", NULL, 0, NULL));
	ev = xsub_event(w, sub1, base + 1, PROCREG_CH_REGISTERED, "sub/z");
	procreg_event_free(ev);
	ev = xsub_event(w, sub3, base + 1, PROCREG_CH_REGISTERED, "sub/z");
	procreg_event_free(ev);
	procreg_subscription_free(&s3);

	/* A since later than the last event is refused. */
	so.since = base + 100;
	CK_CALL(w, procreg_subscribe(w, "sub/", &so, &s3),
	    PROCREG_E_BAD_REQUEST);
	ck_assert_ptr_null(s3.entries);

	/* Events already queued in the handle go with their subscription:
	 * none is handed out after unsubscribe. */
	CK_OK(a, procreg_register(a, "sub/z2", NULL, 0, NULL));
	CK_OK(a, procreg_register(a, "sub/z3", NULL, 0, NULL));
	ck_assert_uint_eq(cur_seq(w), base + 3);	/* read them */
	ck_assert_uint_ge(procreg_pending(w), 1);
	CK_OK(w, procreg_unsubscribe(w, sub1, &active));
	ck_assert(active);
	ev = xsub_event(w, sub3, base + 2, PROCREG_CH_REGISTERED, "sub/z2");
	procreg_event_free(ev);
	ev = xsub_event(w, sub3, base + 3, PROCREG_CH_REGISTERED, "sub/z3");
	procreg_event_free(ev);
	expect_no_event(w);
	procreg_subscription_free(&s1);

	procreg_free(w);
	procreg_free(b);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* A since older than the history: a gap and a fresh snapshot. */
START_TEST(test_subscribe_gap)
{
	struct tdaemon d;
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription s;
	struct procreg_event *ev;
	procreg_t *a, *w;

	t_daemon_start(&d, "--history", "2", NULL);
	a = xconnect(d.path);
	w = xconnect(d.path);
	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "g%d", i);
		CK_OK(a, procreg_register(a, name, NULL, 0, NULL));
	}
	CK_OK(a, procreg_unregister(a, "g0"));
	so.has_since = true;
	so.since = 1;
	CK_OK(w, procreg_subscribe(w, "g", &so, &s));
	ck_assert(s.gap);
	ck_assert(s.has_snapshot);
	ck_assert_uint_eq(s.seq, 6);
	ck_assert_uint_eq(s.nentries, 4);
	ck_assert_str_eq(s.entries[0]->name, "g1");
	ck_assert_str_eq(s.entries[3]->name, "g4");
	procreg_subscription_free(&s);
	/* The last two are still there: no gap. */
	so.since = 4;
	CK_OK(w, procreg_subscribe(w, "g", &so, &s));
	ck_assert(!s.gap);
	ck_assert(!s.has_snapshot);
	ev = xsub_event(w, s.sub, 5, PROCREG_CH_REGISTERED, "g4");
	procreg_event_free(ev);
	ev = xsub_event(w, s.sub, 6, PROCREG_CH_UNREGISTERED, "g0");
	procreg_event_free(ev);
	expect_no_event(w);
	procreg_subscription_free(&s);
	procreg_free(w);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A subscriber that does not read: the daemon ends its subscription with
 * an overflow, and since = its seq resumes with nothing lost or doubled.
 */
START_TEST(test_subscribe_overflow)
{
	enum { NAMES = 400, VALUE = 4096 };
	struct tdaemon d;
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription s;
	struct procreg_event *ev;
	static char value[VALUE + 8];
	uint64_t seq0, next, last, sub, rounds = 0;
	size_t vlen;
	bool overflowed = false, active;
	procreg_t *a, *w;

	t_daemon_start(&d, "--max-outbuf", "65536", NULL);
	a = xconnect(d.path);
	w = xconnect(d.path);
	memset(value, 'v', VALUE);
	value[VALUE] = '\0';
	vlen = procreg_pack_str(value + 0, sizeof(value), value);
	ck_assert_uint_gt(vlen, VALUE);
	CK_OK(w, procreg_subscribe(w, "o/", NULL, &s));
	seq0 = s.seq;
	sub = s.sub;
	procreg_subscription_free(&s);
	/* 400 events of 4 kB: far past 64 kB and the socket's buffers. */
	for (int i = 0; i < NAMES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "o/%03d", i);
		CK_OK(a, procreg_register(a, name, value, vlen, NULL));
	}
	last = cur_seq(a);
	ck_assert_uint_eq(last, seq0 + NAMES);
	/* Every event once, in order, across the overflow and resume. */
	for (next = seq0 + 1; next <= last;) {
		ev = xevent(w);
		if (ev->kind == PROCREG_EV_OVERFLOW) {
			/* A replay larger than the buffer overflows again:
			 * each round moves on by at least one event. */
			ck_assert_uint_lt(rounds++, NAMES);
			ck_assert_uint_eq(ev->sub, sub);
			ck_assert_uint_eq(ev->seq, next - 1);
			overflowed = true;
			so.has_since = true;
			so.since = ev->seq;
			procreg_event_free(ev);
			CK_OK(w, procreg_subscribe(w, "o/", &so, &s));
			ck_assert(!s.gap);
			CK_OK(w, procreg_unsubscribe(w, sub, &active));
			ck_assert(!active);	/* it had ended */
			sub = s.sub;
			procreg_subscription_free(&s);
			continue;
		}
		ck_assert_int_eq(ev->kind, PROCREG_EV_SUBSCRIPTION);
		ck_assert_uint_eq(ev->sub, sub);
		ck_assert_uint_eq(ev->seq, next);
		ck_assert_int_eq(ev->change, PROCREG_CH_REGISTERED);
		ck_assert_uint_eq(ev->entry->value_len, vlen);
		next++;
		procreg_event_free(ev);
	}
	ck_assert(overflowed);
	expect_no_event(w);
	procreg_free(w);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * auto_reconnect: queued names come back with their flags (acquired,
 * lost), and subscriptions end: restarted after a new daemon, an
 * overflow (resumable) after a reconnect to the same one.
 */
START_TEST(test_reconnect_part2)
{
	struct tdaemon d;
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription s;
	struct procreg_event *ev;
	struct procreg_entry *e, *rq_old = NULL;
	struct seen st;
	uint64_t sub1, last;
	uint32_t pos;
	procreg_t *a, *o, *z;

	t_daemon_start(&d, NULL);
	a = reconnecting(d.path, &st);
	o = xconnect(d.path);
	/* rq: owned with queue; rw: waited for; rl: owned, to be lost;
	 * plain: no queue, comes back silently. */
	CK_OK(a, procreg_register_opts(a, "rq", "\x01", 1, PROCREG_QUEUE,
	    &rq_old, NULL));
	CK_OK(o, procreg_register(o, "rw", NULL, 0, NULL));
	CK_OK(a, procreg_register_opts(a, "rw", "\x02", 1, PROCREG_QUEUE, NULL,
	    &pos));
	ck_assert_uint_eq(pos, 1);
	CK_OK(a, procreg_register_opts(a, "rl", NULL, 0, PROCREG_QUEUE, NULL,
	    NULL));
	CK_OK(a, procreg_register(a, "plain", NULL, 0, NULL));
	CK_OK(a, procreg_subscribe(a, "r", NULL, &s));
	sub1 = s.sub;
	procreg_subscription_free(&s);
	CK_OK(o, procreg_register(o, "r1", NULL, 0, NULL));
	ev = xsub_event(a, sub1, cur_seq(o), PROCREG_CH_REGISTERED, "r1");
	last = ev->seq;
	procreg_event_free(ev);
	expect_no_event(a);

	kill_daemon(&d);
	procreg_free(o);
	restart_daemon(&d);
	/* Before a reconnects, another client takes rl. */
	z = xconnect(d.path);
	CK_OK(z, procreg_register(z, "rl", NULL, 0, NULL));

	/* The subscription cannot resume on a new daemon. */
	ev = xevent_kind(a, PROCREG_EV_RESTARTED);
	ck_assert_uint_eq(ev->sub, sub1);
	ck_assert_uint_eq(ev->seq, last);
	procreg_event_free(ev);
	ck_assert_int_eq(st.reconnects, 1);
	ck_assert_uint_eq(st.nlost, 0);
	/* rq: ours again, a new registration (acquired, its new entry). */
	ev = xevent_kind(a, PROCREG_EV_ACQUIRED);
	ck_assert_str_eq(ev->name, "rq");
	check_entry(ev->entry, "rq", procreg_conn_id(a));
	check_json(ev->entry->value, ev->entry->value_len, "1");
	procreg_event_free(ev);
	/* rw: its owner did not come back: ours now. */
	ev = xevent_kind(a, PROCREG_EV_ACQUIRED);
	ck_assert_str_eq(ev->name, "rw");
	check_entry(ev->entry, "rw", procreg_conn_id(a));
	check_json(ev->entry->value, ev->entry->value_len, "2");
	procreg_event_free(ev);
	/* rl: z got it first; we are in its queue, no longer its owner. */
	ev = xevent_kind(a, PROCREG_EV_LOST);
	ck_assert_str_eq(ev->name, "rl");
	ck_assert_str_eq(ev->reason, "disconnected");
	procreg_event_free(ev);
	expect_no_event(a);
	CK_OK(z, procreg_whereis(z, "plain", &e));
	check_entry(e, "plain", procreg_conn_id(a));
	procreg_entry_free(e);
	/* and it passes to us when z lets go. */
	CK_OK(z, procreg_unregister(z, "rl"));
	ev = xevent_kind(a, PROCREG_EV_ACQUIRED);
	ck_assert_str_eq(ev->name, "rl");
	check_entry(ev->entry, "rl", procreg_conn_id(a));
	procreg_event_free(ev);

	/* A new subscription has a new id, never the old one's. */
	CK_OK(a, procreg_subscribe(a, "r", NULL, &s));
	ck_assert_uint_ne(s.sub, sub1);
	sub1 = s.sub;
	last = s.seq;
	procreg_subscription_free(&s);
	/* The same daemon closes our connection (too large a message): the
	 * subscription ends with an overflow, and since resumes it. */
	{
		size_t size = (1 << 20) + 4096;
		char *big = malloc(size);

		ck_assert_ptr_nonnull(big);
		memset(big, 'x', size - 1);
		big[size - 1] = '\0';
		ck_assert_int_lt(procreg_send_str(a, "rq", big), 0);
		free(big);
	}
	CK_OK(z, procreg_register(z, "r2", NULL, 0, NULL));
	for (;;) {
		ev = xevent(a);
		if (ev->kind == PROCREG_EV_OVERFLOW)
			break;
		/* The daemon's last word on the old connection. */
		ck_assert_int_eq(ev->kind, PROCREG_EV_ERROR);
		procreg_event_free(ev);
	}
	ck_assert_int_eq(st.reconnects, 2);
	ck_assert_uint_eq(ev->sub, sub1);
	ck_assert_uint_eq(ev->seq, last);
	procreg_event_free(ev);
	/* The names came back, acquired again (rq and rl; rw too). */
	for (int i = 0; i < 3; i++) {
		ev = xevent_kind(a, PROCREG_EV_ACQUIRED);
		procreg_event_free(ev);
	}
	so.has_since = true;
	so.since = last;
	CK_OK(a, procreg_subscribe(a, "r", &so, &s));
	ck_assert(!s.gap);
	ck_assert_uint_ne(s.sub, sub1);
	/*
	 * Replayed after last, in order, nothing missed: the old connection's
	 * names going (disconnected; "plain" is not under the prefix), r2,
	 * and our names registered again.
	 */
	{
		uint64_t prev = last;
		int seen_r2 = 0, gone = 0, back = 0;

		for (int i = 0; i < 7; i++) {
			ev = xevent_kind(a, PROCREG_EV_SUBSCRIPTION);
			ck_assert_uint_eq(ev->sub, s.sub);
			ck_assert_uint_gt(ev->seq, prev);
			prev = ev->seq;
			if (ev->change == PROCREG_CH_REGISTERED &&
			    strcmp(ev->name, "r2") == 0)
				seen_r2++;
			else if (ev->change == PROCREG_CH_UNREGISTERED) {
				ck_assert_str_eq(ev->reason, "disconnected");
				gone++;
			} else if (ev->change == PROCREG_CH_REGISTERED) {
				ck_assert_uint_eq(ev->entry->conn,
				    procreg_conn_id(a));
				back++;
			}
			procreg_event_free(ev);
		}
		ck_assert_int_eq(seen_r2, 1);
		ck_assert_int_eq(gone, 3);	/* rq, rw, rl */
		ck_assert_int_eq(back, 3);
	}
	expect_no_event(a);
	procreg_subscription_free(&s);

	procreg_entry_free(rq_old);
	procreg_free(z);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(test_invalid_args_part2)
{
	struct tdaemon d;
	struct procreg_subscription s;
	uint64_t *conns = (uint64_t *)&conns;
	size_t n = 7;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	CK_CALL(a, procreg_register_opts(a, NULL, NULL, 0, PROCREG_QUEUE,
	    NULL, NULL), PROCREG_E_INVAL);
	CK_CALL(a, procreg_unregister_gen(a, NULL, 1), PROCREG_E_INVAL);
	CK_CALL(a, procreg_update_gen(a, NULL, NULL, 0, 1, NULL),
	    PROCREG_E_INVAL);
	CK_CALL(a, procreg_send_gen(a, NULL, "\xc0", 1, 1), PROCREG_E_INVAL);
	CK_CALL(a, procreg_queue(a, NULL, &conns, &n), PROCREG_E_INVAL);
	ck_assert_ptr_null(conns);
	ck_assert_uint_eq(n, 0);
	CK_CALL(a, procreg_queue(a, "", &conns, &n), PROCREG_E_BAD_REQUEST);
	CK_CALL(a, procreg_await(a, "", 0, NULL), PROCREG_E_BAD_REQUEST);
	/* A NULL prefix is every name; a prefix of any length is fine. */
	CK_OK(a, procreg_subscribe(a, NULL, NULL, &s));
	ck_assert(s.has_snapshot);
	ck_assert_uint_eq(s.nentries, 0);
	procreg_subscription_free(&s);
	procreg_subscription_free(NULL);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 16. protocol 3: cluster mode, without a cluster                     */
/* ------------------------------------------------------------------ */

/*
 * The real daemon without --etcd: cluster requests are unavailable,
 * local ones work as before, and the options that mean "local" send what
 * protocol 2 sent.
 */
START_TEST(test_cluster_without_etcd)
{
	struct procreg_whereis_opts wo = { 0 };
	struct procreg_list_opts lo = { 0 };
	struct procreg_entry *e = NULL, *w = NULL, **v = NULL;
	struct procreg_node **nodes = (struct procreg_node **)&nodes;
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription sub;
	struct procreg_stats st;
	struct procreg_hello h;
	struct tdaemon d;
	size_t n = 7;
	uint32_t queued = 9;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	memset(&h, 0x55, sizeof(h));
	CK_OK(a, procreg_hello(a, &h));
	ck_assert_uint_eq(h.protocol, 3);
	ck_assert_str_eq(h.node, "");

	/* A cluster name: unavailable, said so, nothing registered. */
	e = (struct procreg_entry *)&e;
	CK_CALL(a, procreg_register_opts(a, "c", NULL, 0, PROCREG_CLUSTER, &e,
	    &queued), PROCREG_E_UNAVAILABLE);
	ck_assert_ptr_null(e);
	ck_assert_uint_eq(queued, 0);
	ck_assert_str_eq(procreg_status_code(PROCREG_E_UNAVAILABLE),
	    "unavailable");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(a), "etcd"));
	CK_OK(a, procreg_whereis(a, "c", &w));
	ck_assert_ptr_null(w);
	/* With queue: unavailable too; with replacement: the daemon's
	 * bad_request, passed through. */
	CK_CALL(a, procreg_register_opts(a, "c", NULL, 0, PROCREG_CLUSTER |
	    PROCREG_QUEUE, NULL, NULL), PROCREG_E_UNAVAILABLE);
	CK_CALL(a, procreg_register_opts(a, "c", NULL, 0, PROCREG_CLUSTER |
	    PROCREG_ALLOW_REPLACEMENT, NULL, NULL), PROCREG_E_BAD_REQUEST);
	/* A flag this library does not know is still refused. */
	CK_CALL(a, procreg_register_opts(a, "c", NULL, 0, 0x10, NULL, NULL),
	    PROCREG_E_INVAL);

	/* nodes: unavailable, nothing returned. */
	CK_CALL(a, procreg_nodes(a, &nodes, &n), PROCREG_E_UNAVAILABLE);
	ck_assert_ptr_null(nodes);
	ck_assert_uint_eq(n, 0);
	procreg_nodes_free(NULL, 0);

	/* whereis_opts: local and default are whereis; cluster is not. */
	CK_OK(a, procreg_register_str(a, "l", "v", &e));
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_LOCAL);
	ck_assert_ptr_null(e->node);
	ck_assert(!e->stale);
	procreg_entry_free(e);
	for (int s = PROCREG_SCOPE_DEFAULT; s <= PROCREG_SCOPE_ALL; s++) {
		if (s == PROCREG_SCOPE_CLUSTER)
			continue;
		wo.scope = (enum procreg_scope)s;
		CK_OK(a, procreg_whereis_opts(a, "l", &wo, &w));
		check_entry(w, "l", procreg_conn_id(a));
		check_json(w->value, w->value_len, "\"v\"");
		ck_assert_int_eq(w->scope, PROCREG_SCOPE_LOCAL);
		ck_assert_ptr_null(w->node);
		ck_assert(!w->stale);
		procreg_entry_free(w);
		w = (struct procreg_entry *)&w;
		CK_OK(a, procreg_whereis_opts(a, "absent", &wo, &w));
		ck_assert_ptr_null(w);
	}
	CK_OK(a, procreg_whereis_opts(a, "l", NULL, &w));
	check_entry(w, "l", procreg_conn_id(a));
	procreg_entry_free(w);
	wo.scope = PROCREG_SCOPE_CLUSTER;
	w = (struct procreg_entry *)&w;
	CK_CALL(a, procreg_whereis_opts(a, "l", &wo, &w),
	    PROCREG_E_UNAVAILABLE);
	ck_assert_ptr_null(w);
	wo.scope = (enum procreg_scope)9;
	CK_CALL(a, procreg_whereis_opts(a, "l", &wo, &w), PROCREG_E_INVAL);
	wo.scope = PROCREG_SCOPE_DEFAULT;
	CK_CALL(a, procreg_whereis_opts(a, NULL, &wo, &w), PROCREG_E_INVAL);

	/* list_opts: local is list; cluster and all are unavailable. */
	CK_OK(a, procreg_list_opts(a, NULL, NULL, &v, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(v[0]->name, "l");
	procreg_entries_free(v, n);
	lo.scope = PROCREG_SCOPE_LOCAL;
	CK_OK(a, procreg_list_opts(a, "", &lo, &v, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0]->scope, PROCREG_SCOPE_LOCAL);
	procreg_entries_free(v, n);
	lo.scope = PROCREG_SCOPE_CLUSTER;
	CK_CALL(a, procreg_list_opts(a, "", &lo, &v, &n),
	    PROCREG_E_UNAVAILABLE);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(n, 0);
	lo.scope = PROCREG_SCOPE_ALL;
	CK_CALL(a, procreg_list_opts(a, "", &lo, &v, &n),
	    PROCREG_E_UNAVAILABLE);
	lo.scope = (enum procreg_scope)9;
	CK_CALL(a, procreg_list_opts(a, "", &lo, &v, &n), PROCREG_E_INVAL);

	/* A cluster subscription: unavailable; a local one as before. */
	so.scope = PROCREG_SCOPE_CLUSTER;
	CK_CALL(a, procreg_subscribe(a, "", &so, &sub), PROCREG_E_UNAVAILABLE);
	so.scope = PROCREG_SCOPE_LOCAL;
	CK_OK(a, procreg_subscribe(a, "", &so, &sub));
	ck_assert_uint_eq(sub.nentries, 1);
	ck_assert_int_eq(sub.entries[0]->scope, PROCREG_SCOPE_LOCAL);
	procreg_subscription_free(&sub);

	/* stats: no cluster map. */
	memset(&st, 0x55, sizeof(st));
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_uint_eq(st.names, 1);
	ck_assert_str_eq(st.cluster_state, "");
	ck_assert_str_eq(st.cluster_node, "");
	ck_assert_uint_eq(st.cluster_revision, 0);
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/* The sized option structs and the grown output structs keep the ABI. */
START_TEST(test_cluster_abi_sized)
{
	struct {
		struct procreg_whereis_opts	o;
		uint64_t			future;
	} newer_wo;
	struct {
		struct procreg_list_opts	o;
		uint64_t			future;
	} newer_lo;
	struct procreg_entry *w = NULL, **v = NULL;
	struct procreg_hello h;
	struct procreg_stats st;
	struct tdaemon d;
	size_t n;
	procreg_t *a;

	t_daemon_start(&d, NULL);
	a = xconnect(d.path);
	CK_OK(a, procreg_register(a, "x", NULL, 0, NULL));

	memset(&newer_wo, 0, sizeof(newer_wo));
	newer_wo.future = 1;
	CK_CALL(a, procreg_whereis_opts_sized(a, "x", &newer_wo.o,
	    sizeof(newer_wo), &w), PROCREG_E_INVAL);
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(a), "older"));
	newer_wo.future = 0;
	CK_OK(a, procreg_whereis_opts_sized(a, "x", &newer_wo.o,
	    sizeof(newer_wo), &w));
	ck_assert_str_eq(w->name, "x");
	procreg_entry_free(w);
	CK_OK(a, (procreg_whereis_opts)(a, "x", &newer_wo.o, &w));
	ck_assert_str_eq(w->name, "x");
	procreg_entry_free(w);

	memset(&newer_lo, 0, sizeof(newer_lo));
	newer_lo.future = 1;
	CK_CALL(a, procreg_list_opts_sized(a, "", &newer_lo.o,
	    sizeof(newer_lo), &v, &n), PROCREG_E_INVAL);
	newer_lo.future = 0;
	CK_OK(a, procreg_list_opts_sized(a, "", &newer_lo.o, sizeof(newer_lo),
	    &v, &n));
	ck_assert_uint_eq(n, 1);
	procreg_entries_free(v, n);
	CK_OK(a, (procreg_list_opts)(a, "", NULL, &v, &n));
	ck_assert_uint_eq(n, 1);
	procreg_entries_free(v, n);

	/* A caller built before hello's node and stats' cluster fields:
	 * the bytes past its struct are left alone. */
	memset(&h, 0xa5, sizeof(h));
	CK_OK(a, procreg_hello_sized(a, &h, offsetof(struct procreg_hello,
	    node)));
	ck_assert_uint_eq(h.protocol, 3);
	ck_assert_uint_eq((unsigned char)h.node[0], 0xa5);
	CK_OK(a, (procreg_hello)(a, &h));
	ck_assert_uint_eq((unsigned char)h.node[0], 0xa5);
	memset(&st, 0xa5, sizeof(st));
	CK_OK(a, procreg_stats_sized(a, &st, offsetof(struct procreg_stats,
	    cluster_node)));
	ck_assert_uint_eq(st.names, 1);
	ck_assert_uint_eq(st.draining, 0);
	ck_assert_uint_eq((unsigned char)st.cluster_node[0], 0xa5);
	ck_assert_uint_eq(st.cluster_revision, 0xa5a5a5a5a5a5a5a5ULL);
	CK_OK(a, procreg_stats(a, &st));
	ck_assert_str_eq(st.cluster_state, "");
	procreg_free(a);
	t_daemon_stop(&d);
}
END_TEST

/*
 * A fake daemon, for what a daemon without etcd cannot show (cluster
 * entries, nodes, the cluster's stats, nodedown) and for a protocol-2
 * daemon: a child process on a private socket that serves one connection
 * after another.  It logs each request it gets, before answering it, as
 * the line "CONN METHOD PARAMS" (CONN: 1 for the first connection,
 * PARAMS as JSON) on a pipe the test reads, and answers as fake_answer
 * says.
 */
struct fake {
	pid_t	 pid;
	int	 log;		/* read end of the request log */
	char	 dir[64];
	char	 path[128];
};

/* The fake's state while it answers one request. */
struct fake_req {
	unsigned		 protocol;	/* what hello says */
	unsigned		 nconn;		/* this connection's number */
	uint32_t		 msgid;
	const msgpack_object	*params;
	msgpack_sbuffer		 out;
	msgpack_packer		 pk;
	bool			 close;		/* after the answer */
};

static void
fk_str(struct fake_req *r, const char *s)
{
	msgpack_pack_str(&r->pk, strlen(s));
	msgpack_pack_str_body(&r->pk, s, strlen(s));
}

/* [1, msgid, nil, (the result follows) */
static void
fk_ok(struct fake_req *r)
{
	msgpack_pack_array(&r->pk, 4);
	msgpack_pack_uint32(&r->pk, 1);
	msgpack_pack_uint32(&r->pk, r->msgid);
	msgpack_pack_nil(&r->pk);
}

static void
fk_err(struct fake_req *r, const char *code, const char *msg)
{
	msgpack_pack_array(&r->pk, 4);
	msgpack_pack_uint32(&r->pk, 1);
	msgpack_pack_uint32(&r->pk, r->msgid);
	msgpack_pack_array(&r->pk, 2);
	fk_str(r, code);
	fk_str(r, msg);
	msgpack_pack_nil(&r->pk);
}

/* An entry: a cluster one when node is not NULL (stale: with "stale"). */
static void
fk_entry(struct fake_req *r, const char *name, const char *node,
    bool stale)
{
	msgpack_pack_map(&r->pk, 8 + (node != NULL ? 2 : 0) + stale);
	fk_str(r, "name");
	fk_str(r, name);
	fk_str(r, "conn");
	msgpack_pack_uint32(&r->pk, node != NULL ? 5 : r->nconn);
	fk_str(r, "pid");
	msgpack_pack_uint32(&r->pk, 4242);
	fk_str(r, "uid");
	msgpack_pack_uint32(&r->pk, 1000);
	fk_str(r, "gid");
	msgpack_pack_uint32(&r->pk, 1000);
	fk_str(r, "value");
	fk_str(r, "v");
	fk_str(r, "since");
	msgpack_pack_uint64(&r->pk, 1795000001234ULL);
	fk_str(r, "gen");
	msgpack_pack_uint32(&r->pk, node != NULL ? 70 + r->nconn : 1);
	if (node != NULL) {
		fk_str(r, "scope");
		fk_str(r, "cluster");
		fk_str(r, "node");
		fk_str(r, node);
	}
	if (stale) {
		fk_str(r, "stale");
		msgpack_pack_true(&r->pk);
	}
}

static void
fk_push(struct fake_req *r, const char *kind, const char *a, const char *b)
{
	msgpack_pack_array(&r->pk, 3);
	msgpack_pack_uint32(&r->pk, 2);
	fk_str(r, kind);
	msgpack_pack_array(&r->pk, 2);
	fk_str(r, a);
	fk_str(r, b);
}

/* Param i, or NULL. */
static const msgpack_object *
fk_param(const struct fake_req *r, uint32_t i)
{
	return i < r->params->via.array.size ? &r->params->via.array.ptr[i] :
	    NULL;
}

/* Does param i (a map) hold key = the str value? */
static bool
fk_opt(const struct fake_req *r, uint32_t i, const char *key,
    const char *value)
{
	const msgpack_object *m = fk_param(r, i);

	if (m == NULL || m->type != MSGPACK_OBJECT_MAP)
		return false;
	for (uint32_t k = 0; k < m->via.map.size; k++) {
		const msgpack_object *kk = &m->via.map.ptr[k].key;
		const msgpack_object *vv = &m->via.map.ptr[k].val;

		if (kk->type == MSGPACK_OBJECT_STR &&
		    kk->via.str.size == strlen(key) &&
		    memcmp(kk->via.str.ptr, key, strlen(key)) == 0 &&
		    vv->type == MSGPACK_OBJECT_STR &&
		    vv->via.str.size == strlen(value) &&
		    memcmp(vv->via.str.ptr, value, strlen(value)) == 0)
			return true;
	}
	return false;
}

static bool
fk_name_is(const struct fake_req *r, const char *name)
{
	const msgpack_object *o = fk_param(r, 0);

	return o != NULL && o->type == MSGPACK_OBJECT_STR &&
	    o->via.str.size == strlen(name) &&
	    memcmp(o->via.str.ptr, name, strlen(name)) == 0;
}

/* A node name longer than any a daemon takes (and than the room the
 * library makes beforehand). */
#define FK_LONG_NODE	"n-with-a-name-longer-than-the-sixty-three-bytes-" \
	"a-node-name-may-have"

/*
 * The fake's answers.  A protocol-2 fake refuses what protocol 2 does
 * (register options, a second whereis param, a fourth list param, the
 * nodes method).  A protocol-3 fake, node n1: register with scope
 * cluster gives a cluster entry (on node FK_LONG_NODE for the name
 * "long"); whereis "c" a stale cluster entry of node n2, "l" a local
 * one; list a local "a", a cluster "a" and a cluster "b"; nodes n1 and
 * n2; stats a cluster map; monitor a ref 1 and a nodedown down; send to
 * "kick" a lost nodedown of "held", to "drop" the close of the
 * connection after the answer.
 */
static void
fake_answer(struct fake_req *r, const char *method)
{
	uint32_t np = r->params->via.array.size;

	if (strcmp(method, "hello") == 0) {
		fk_ok(r);
		msgpack_pack_map(&r->pk, r->protocol >= 3 ? 7 : 6);
		fk_str(r, "server");
		fk_str(r, "procreg");
		fk_str(r, "version");
		fk_str(r, "0.1.0");
		fk_str(r, "protocol");
		msgpack_pack_uint32(&r->pk, r->protocol);
		fk_str(r, "conn");
		msgpack_pack_uint32(&r->pk, r->nconn);
		fk_str(r, "boot");	/* a new daemon each connection */
		{
			char boot[33];

			snprintf(boot, sizeof(boot), "%032x", r->nconn);
			fk_str(r, boot);
		}
		fk_str(r, "max_message");
		msgpack_pack_uint32(&r->pk, 1048576);
		if (r->protocol >= 3) {
			fk_str(r, "node");
			fk_str(r, "n1");
		}
		return;
	}
	if (r->protocol < 3 && (strcmp(method, "nodes") == 0)) {
		fk_err(r, "unknown_method", "no such method");
		return;
	}
	if (r->protocol < 3 && ((strcmp(method, "whereis") == 0 && np > 1) ||
	    (strcmp(method, "list") == 0 && np > 3) ||
	    (strcmp(method, "register") == 0 && fk_opt(r, 2, "scope",
	    "cluster")))) {
		fk_err(r, "bad_request", "wrong number of params");
		return;
	}
	if (strcmp(method, "register") == 0) {
		const msgpack_object *o = fk_param(r, 0);
		char name[256];

		snprintf(name, sizeof(name), "%.*s", o != NULL &&
		    o->type == MSGPACK_OBJECT_STR ? (int)o->via.str.size : 0,
		    o != NULL ? o->via.str.ptr : "");
		fk_ok(r);
		fk_entry(r, name, !fk_opt(r, 2, "scope", "cluster") ? NULL :
		    fk_name_is(r, "long") ? FK_LONG_NODE : "n1", false);
	} else if (strcmp(method, "whereis") == 0) {
		fk_ok(r);
		if (fk_name_is(r, "c"))
			fk_entry(r, "c", "n2", !fk_opt(r, 1, "scope", "local"));
		else if (fk_name_is(r, "l"))
			fk_entry(r, "l", NULL, false);
		else
			msgpack_pack_nil(&r->pk);
	} else if (strcmp(method, "list") == 0) {
		const msgpack_object *after = fk_param(r, 2);

		fk_ok(r);
		if (after != NULL && after->type == MSGPACK_OBJECT_STR) {
			msgpack_pack_array(&r->pk, 0);
			return;
		}
		msgpack_pack_array(&r->pk, 3);
		fk_entry(r, "a", NULL, false);
		fk_entry(r, "a", "n2", false);
		fk_entry(r, "b", "n1", false);
	} else if (strcmp(method, "nodes") == 0) {
		fk_ok(r);
		msgpack_pack_array(&r->pk, 2);
		msgpack_pack_map(&r->pk, 4);
		fk_str(r, "name");
		fk_str(r, "n1");
		fk_str(r, "since");
		msgpack_pack_uint64(&r->pk, 1795000000000ULL);
		fk_str(r, "address");
		fk_str(r, "");
		fk_str(r, "self");
		msgpack_pack_true(&r->pk);
		msgpack_pack_map(&r->pk, 5);
		fk_str(r, "name");
		fk_str(r, "n2");
		fk_str(r, "since");
		msgpack_pack_uint64(&r->pk, 1795000000001ULL);
		fk_str(r, "address");
		fk_str(r, "10.0.0.2:7000");
		fk_str(r, "self");
		msgpack_pack_false(&r->pk);
		fk_str(r, "later");	/* a key of a later protocol */
		msgpack_pack_uint32(&r->pk, 1);
	} else if (strcmp(method, "stats") == 0) {
		fk_ok(r);
		msgpack_pack_map(&r->pk, 2);
		fk_str(r, "names");
		msgpack_pack_uint32(&r->pk, 3);
		fk_str(r, "cluster");
		msgpack_pack_map(&r->pk, 7);
		fk_str(r, "node");
		fk_str(r, "n1");
		fk_str(r, "state");
		fk_str(r, "up");
		fk_str(r, "etcd");
		fk_str(r, "http://127.0.0.1:2379");
		fk_str(r, "lease_ttl");
		msgpack_pack_uint32(&r->pk, 10);
		fk_str(r, "names");
		msgpack_pack_uint32(&r->pk, 2);
		fk_str(r, "nodes");
		msgpack_pack_uint32(&r->pk, 2);
		fk_str(r, "revision");
		msgpack_pack_uint32(&r->pk, 42);
	} else if (strcmp(method, "queue") == 0) {
		fk_ok(r);
		if (fk_name_is(r, "line")) {
			msgpack_pack_array(&r->pk, 2);
			msgpack_pack_map(&r->pk, 2);
			fk_str(r, "node");
			fk_str(r, "n2");
			fk_str(r, "conn");
			msgpack_pack_uint32(&r->pk, 4);
			msgpack_pack_map(&r->pk, 2);
			fk_str(r, "node");
			fk_str(r, "n1");
			fk_str(r, "conn");
			msgpack_pack_uint32(&r->pk, 1);
		} else {
			msgpack_pack_array(&r->pk, 2);
			msgpack_pack_uint32(&r->pk, 3);
			msgpack_pack_uint32(&r->pk, 5);
		}
	} else if (strcmp(method, "subscribe") == 0) {
		bool cluster = fk_opt(r, 1, "scope", "cluster");

		fk_ok(r);
		msgpack_pack_map(&r->pk, 3);
		fk_str(r, "sub");
		msgpack_pack_uint64(&r->pk, cluster ? (1ULL << 32) + 1 : 1);
		fk_str(r, "seq");
		msgpack_pack_uint32(&r->pk, cluster ? 700 : 3);
		fk_str(r, "entries");
		msgpack_pack_array(&r->pk, 1);
		fk_entry(r, "b", cluster ? "n1" : NULL, false);
	} else if (strcmp(method, "monitor") == 0) {
		fk_ok(r);
		msgpack_pack_uint32(&r->pk, 1);
		msgpack_pack_array(&r->pk, 3);
		msgpack_pack_uint32(&r->pk, 2);
		fk_str(r, "down");
		msgpack_pack_array(&r->pk, 3);
		msgpack_pack_uint32(&r->pk, 1);
		fk_str(r, "c");
		fk_str(r, "nodedown");
	} else if (strcmp(method, "send") == 0) {
		fk_ok(r);
		msgpack_pack_true(&r->pk);
		if (fk_name_is(r, "kick"))
			fk_push(r, "lost", "held", "nodedown");
		r->close = fk_name_is(r, "drop");
	} else {
		fk_ok(r);
		msgpack_pack_true(&r->pk);
	}
}

/* Serve one connection until it closes or an answer closes it. */
static void
fake_serve(int fd, int log, unsigned protocol, unsigned nconn)
{
	msgpack_unpacker unp;
	msgpack_unpacked res;
	char params[4096], line[4300];
	bool done = false;

	msgpack_unpacker_init(&unp, 65536);
	msgpack_unpacked_init(&res);
	while (!done) {
		ssize_t got;

		msgpack_unpacker_reserve_buffer(&unp, 65536);
		got = read(fd, msgpack_unpacker_buffer(&unp), 65536);
		if (got <= 0)
			break;
		msgpack_unpacker_buffer_consumed(&unp, (size_t)got);
		while (!done && msgpack_unpacker_next(&unp, &res) ==
		    MSGPACK_UNPACK_SUCCESS) {
			const msgpack_object *o = &res.data;
			struct fake_req r = { .protocol = protocol,
			    .nconn = nconn };
			char method[64];
			void *enc;
			size_t len;

			if (o->type != MSGPACK_OBJECT_ARRAY ||
			    o->via.array.size != 4 ||
			    o->via.array.ptr[2].type != MSGPACK_OBJECT_STR ||
			    o->via.array.ptr[3].type != MSGPACK_OBJECT_ARRAY)
				_exit(3);
			snprintf(method, sizeof(method), "%.*s",
			    (int)o->via.array.ptr[2].via.str.size,
			    o->via.array.ptr[2].via.str.ptr);
			r.msgid = (uint32_t)o->via.array.ptr[1].via.u64;
			r.params = &o->via.array.ptr[3];
			/* Logged before the answer: a call that returned has
			 * its line in the pipe. */
			msgpack_sbuffer_init(&r.out);
			msgpack_packer_init(&r.pk, &r.out,
			    msgpack_sbuffer_write);
			msgpack_pack_object(&r.pk, *r.params);
			enc = r.out.data;
			len = r.out.size;
			procreg_format_json(params, sizeof(params), enc, len);
			msgpack_sbuffer_clear(&r.out);
			snprintf(line, sizeof(line), "%u %s %s\n", nconn, method,
			    params);
			if (write(log, line, strlen(line)) < 0)
				_exit(3);
			fake_answer(&r, method);
			if (write(fd, r.out.data, r.out.size) < 0)
				done = true;
			done = done || r.close;
			msgpack_sbuffer_destroy(&r.out);
		}
	}
	msgpack_unpacked_destroy(&res);
	msgpack_unpacker_destroy(&unp);
	close(fd);
}

static void
fake_start(struct fake *f, unsigned protocol)
{
	struct sockaddr_un sun;
	int lfd, pfd[2];

	snprintf(f->dir, sizeof(f->dir), "/tmp/procreg-fake.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, f->path, strlen(f->path) + 1);
	ck_assert_int_ge(lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC,
	    0), 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	ck_assert_int_ge(f->pid = fork(), 0);
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(pfd[0]);
		for (unsigned n = 1;; n++) {
			int fd = accept(lfd, NULL, NULL);

			if (fd < 0)
				_exit(0);
			fake_serve(fd, pfd[1], protocol, n);
		}
	}
	close(lfd);
	close(pfd[1]);
	f->log = pfd[0];
}

static void
fake_stop(struct fake *f)
{
	int status;

	kill(f->pid, SIGKILL);
	ck_assert_int_eq(waitpid(f->pid, &status, 0), f->pid);
	close(f->log);
	unlink(f->path);
	rmdir(f->dir);
}

/* The next line of the fake's log (without its newline), waiting at most
 * EV_WAIT_MS; fails the test when none comes. */
static void
fake_line(struct fake *f, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		struct pollfd pfd = { f->log, POLLIN, 0 };
		char c;

		ck_assert_msg(poll(&pfd, 1, EV_WAIT_MS) == 1, "the fake daemon "
		    "logged no request (so far: \"%.*s\")", (int)n, buf);
		ck_assert_int_eq(read(f->log, &c, 1), 1);
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = '\0';
}

/* The next logged request is want. */
static void
fake_expect(struct fake *f, const char *want)
{
	char line[4400];

	fake_line(f, line, sizeof(line));
	ck_assert_str_eq(line, want);
}

/* Decoding a protocol-3 daemon's answers, and what is sent for them. */
START_TEST(test_cluster_fake_decode)
{
	struct procreg_whereis_opts wo = { .scope = PROCREG_SCOPE_CLUSTER,
	    .consistent = true };
	struct procreg_list_opts lo = { .scope = PROCREG_SCOPE_ALL };
	struct procreg_subscribe_opts so = { 0 };
	struct procreg_subscription sub;
	struct procreg_entry *e = NULL, **v = NULL;
	struct procreg_node **nodes = NULL;
	struct procreg_place **places = NULL;
	struct procreg_event *ev;
	struct procreg_stats st;
	struct procreg_hello h;
	struct fake f;
	uint64_t ref, *conns;
	size_t n;
	procreg_t *p;

	fake_start(&f, 3);
	p = xconnect(f.path);
	fake_expect(&f, "1 hello []");
	CK_OK(p, procreg_hello(p, &h));
	fake_expect(&f, "1 hello []");
	ck_assert_uint_eq(h.protocol, 3);
	ck_assert_str_eq(h.node, "n1");

	/* register a cluster name: the option sent, the entry read (its
	 * node into the room made beforehand, or new memory when longer). */
	CK_OK(p, procreg_register_opts(p, "held", NULL, 0, PROCREG_CLUSTER,
	    &e, NULL));
	fake_expect(&f, "1 register [\"held\",null,{\"scope\":\"cluster\"}]");
	ck_assert_str_eq(e->name, "held");
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_CLUSTER);
	ck_assert_str_eq(e->node, "n1");
	ck_assert(!e->stale);
	ck_assert_uint_eq(e->gen, 71);
	check_json(e->value, e->value_len, "\"v\"");
	procreg_entry_free(e);
	CK_OK(p, procreg_register_opts(p, "long", "\xa1x", 2, PROCREG_CLUSTER,
	    &e, NULL));
	fake_expect(&f, "1 register [\"long\",\"x\",{\"scope\":\"cluster\"}]");
	ck_assert_str_eq(e->node, FK_LONG_NODE);
	procreg_entry_free(e);
	CK_OK(p, procreg_register_opts(p, "loc", NULL, 0, 0, &e, NULL));
	fake_expect(&f, "1 register [\"loc\"]");
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_LOCAL);
	ck_assert_ptr_null(e->node);
	procreg_entry_free(e);

	/* whereis: a stale cluster entry; the options as asked. */
	CK_OK(p, procreg_whereis(p, "c", &e));
	fake_expect(&f, "1 whereis [\"c\"]");
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_CLUSTER);
	ck_assert_str_eq(e->node, "n2");
	ck_assert(e->stale);
	ck_assert_uint_eq(e->conn, 5);
	procreg_entry_free(e);
	CK_OK(p, procreg_whereis_opts(p, "c", &wo, &e));
	fake_expect(&f, "1 whereis [\"c\",{\"scope\":\"cluster\","
	    "\"consistent\":true}]");
	ck_assert_str_eq(e->node, "n2");
	procreg_entry_free(e);
	wo.scope = PROCREG_SCOPE_LOCAL;
	wo.consistent = false;
	CK_OK(p, procreg_whereis_opts(p, "l", &wo, &e));
	fake_expect(&f, "1 whereis [\"l\",{\"scope\":\"local\"}]");
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_LOCAL);
	procreg_entry_free(e);
	wo.scope = PROCREG_SCOPE_ALL;
	CK_OK(p, procreg_whereis_opts(p, "nobody", &wo, &e));
	fake_expect(&f, "1 whereis [\"nobody\",{\"scope\":\"any\"}]");
	ck_assert_ptr_null(e);

	/* list all: both scopes, the same name twice, paged with nil. */
	CK_OK(p, procreg_list_opts(p, "", &lo, &v, &n));
	fake_expect(&f, "1 list [\"\",10000,null,{\"scope\":\"all\"}]");
	fake_expect(&f, "1 list [\"\",10000,\"b\",{\"scope\":\"all\"}]");
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(v[0]->name, "a");
	ck_assert_int_eq(v[0]->scope, PROCREG_SCOPE_LOCAL);
	ck_assert_ptr_null(v[0]->node);
	ck_assert_str_eq(v[1]->name, "a");
	ck_assert_int_eq(v[1]->scope, PROCREG_SCOPE_CLUSTER);
	ck_assert_str_eq(v[1]->node, "n2");
	ck_assert_str_eq(v[2]->node, "n1");
	procreg_entries_free(v, n);
	lo.scope = PROCREG_SCOPE_CLUSTER;
	CK_OK(p, procreg_list_opts(p, "b", &lo, &v, &n));
	fake_expect(&f, "1 list [\"b\",10000,null,{\"scope\":\"cluster\"}]");
	fake_expect(&f, "1 list [\"b\",10000,\"b\",{\"scope\":\"cluster\"}]");
	procreg_entries_free(v, n);

	/* nodes, in the daemon's order; a later key ignored. */
	CK_OK(p, procreg_nodes(p, &nodes, &n));
	fake_expect(&f, "1 nodes []");
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(nodes[0]->name, "n1");
	ck_assert_str_eq(nodes[0]->address, "");
	ck_assert(nodes[0]->self);
	ck_assert_uint_eq(nodes[0]->since_ms, 1795000000000ULL);
	ck_assert_str_eq(nodes[1]->name, "n2");
	ck_assert_str_eq(nodes[1]->address, "10.0.0.2:7000");
	ck_assert(!nodes[1]->self);
	procreg_nodes_free(nodes, n);

	/* stats' cluster map. */
	CK_OK(p, procreg_stats(p, &st));
	fake_expect(&f, "1 stats []");
	ck_assert_uint_eq(st.names, 3);
	ck_assert_str_eq(st.cluster_node, "n1");
	ck_assert_str_eq(st.cluster_state, "up");
	ck_assert_str_eq(st.cluster_etcd, "http://127.0.0.1:2379");
	ck_assert_uint_eq(st.cluster_lease_ttl, 10);
	ck_assert_uint_eq(st.cluster_names, 2);
	ck_assert_uint_eq(st.cluster_nodes, 2);
	ck_assert_uint_eq(st.cluster_revision, 42);

	/* A cluster name's line is of places on nodes; a local one's of
	 * connection ids. */
	conns = (uint64_t *)&conns;
	CK_CALL(p, procreg_queue(p, "line", &conns, &n), PROCREG_E_INVAL);
	fake_expect(&f, "1 queue [\"line\"]");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(p), "procreg_queue_places"));
	ck_assert_ptr_null(conns);
	CK_OK(p, procreg_queue_places(p, "line", &places, &n));
	fake_expect(&f, "1 queue [\"line\"]");
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(places[0]->node, "n2");
	ck_assert_uint_eq(places[0]->conn, 4);
	ck_assert_str_eq(places[1]->node, "n1");
	ck_assert_uint_eq(places[1]->conn, 1);
	procreg_places_free(places, n);
	CK_OK(p, procreg_queue_places(p, "lq", &places, &n));
	fake_expect(&f, "1 queue [\"lq\"]");
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_null(places[0]->node);
	ck_assert_uint_eq(places[1]->conn, 5);
	procreg_places_free(places, n);
	procreg_places_free(NULL, 0);

	/* A cluster subscription: the scope sent, the cluster's snapshot. */
	so.scope = PROCREG_SCOPE_CLUSTER;
	so.has_since = true;
	so.since = 650;
	CK_OK(p, procreg_subscribe(p, "", &so, &sub));
	fake_expect(&f, "1 subscribe [\"\",{\"since\":650,\"scope\":"
	    "\"cluster\"}]");
	ck_assert_uint_eq(sub.sub, (1ULL << 32) + 1);
	ck_assert_uint_eq(sub.seq, 700);
	ck_assert_uint_eq(sub.nentries, 1);
	ck_assert_str_eq(sub.entries[0]->node, "n1");
	procreg_subscription_free(&sub);
	so.scope = PROCREG_SCOPE_ALL;
	CK_CALL(p, procreg_subscribe(p, "", &so, &sub), PROCREG_E_INVAL);

	/* nodedown: a down, and a lost. */
	CK_OK(p, procreg_monitor(p, "c", &ref));
	fake_expect(&f, "1 monitor [\"c\"]");
	ev = xevent(p);
	check_down(ev, ref, "c", "nodedown");
	procreg_event_free(ev);
	CK_OK(p, procreg_send_str(p, "kick", "x"));
	fake_expect(&f, "1 send [\"kick\",\"x\"]");
	ev = xevent(p);
	ck_assert_int_eq(ev->kind, PROCREG_EV_LOST);
	ck_assert_str_eq(ev->name, "held");
	ck_assert_str_eq(ev->reason, "nodedown");
	procreg_event_free(ev);
	procreg_free(p);
	fake_stop(&f);
}
END_TEST

/*
 * auto_reconnect registers a cluster name again as a cluster name (and a
 * local one as a local one); once its node went down, not at all.
 */
START_TEST(test_cluster_fake_reconnect)
{
	struct procreg_options o = { 0 };
	struct procreg_subscribe_opts so = { .scope = PROCREG_SCOPE_CLUSTER };
	struct procreg_subscription lsub, csub;
	uint64_t lsub_id, csub_id;
	struct procreg_stats st;
	struct procreg_event *ev;
	struct fake f;
	procreg_t *p;
	int r = PROCREG_E_CLOSED;

	fake_start(&f, 3);
	o.path = f.path;
	o.auto_reconnect = true;
	o.reconnect_max_ms = 50;
	p = xconnect_opts(&o);
	fake_expect(&f, "1 hello []");
	CK_OK(p, procreg_subscribe(p, "", NULL, &lsub));
	fake_expect(&f, "1 subscribe [\"\"]");
	lsub_id = lsub.sub;
	procreg_subscription_free(&lsub);
	CK_OK(p, procreg_subscribe(p, "", &so, &csub));
	fake_expect(&f, "1 subscribe [\"\",{\"scope\":\"cluster\"}]");
	csub_id = csub.sub;
	procreg_subscription_free(&csub);
	CK_OK(p, procreg_register_opts(p, "held", NULL, 0, PROCREG_CLUSTER,
	    NULL, NULL));
	fake_expect(&f, "1 register [\"held\",null,{\"scope\":\"cluster\"}]");
	CK_OK(p, procreg_register(p, "loc", NULL, 0, NULL));
	fake_expect(&f, "1 register [\"loc\"]");
	/* The fake closes the connection after this answer. */
	CK_OK(p, procreg_send_str(p, "drop", "x"));
	fake_expect(&f, "1 send [\"drop\",\"x\"]");
	for (int i = 0; i < 5 && r != PROCREG_OK; i++)
		r = procreg_stats(p, &st);
	ck_assert_int_eq(r, PROCREG_OK);
	fake_expect(&f, "2 hello []");
	/* The restore goes in the handle's order: whichever comes first. */
	{
		char l1[256], l2[256];

		fake_line(&f, l1, sizeof(l1));
		fake_line(&f, l2, sizeof(l2));
		if (strstr(l1, "loc") != NULL) {
			char t[256];

			memcpy(t, l1, sizeof(t));
			memcpy(l1, l2, sizeof(l1));
			memcpy(l2, t, sizeof(l2));
		}
		ck_assert_str_eq(l1, "2 register [\"held\",null,"
		    "{\"scope\":\"cluster\"}]");
		ck_assert_str_eq(l2, "2 register [\"loc\"]");
	}
	fake_expect(&f, "2 stats []");
	/* A new daemon (another boot): the local subscription cannot
	 * resume, the cluster one can (etcd's revisions). */
	for (int i = 0; i < 2; i++) {
		ev = xevent(p);
		if (ev->sub == lsub_id)
			ck_assert_int_eq(ev->kind, PROCREG_EV_RESTARTED);
		else {
			ck_assert_uint_eq(ev->sub, csub_id);
			ck_assert_int_eq(ev->kind, PROCREG_EV_OVERFLOW);
			ck_assert_uint_eq(ev->seq, 700);
		}
		procreg_event_free(ev);
	}

	/* nodedown: held is lost, and forgotten. */
	CK_OK(p, procreg_send_str(p, "kick", "x"));
	fake_expect(&f, "2 send [\"kick\",\"x\"]");
	ev = xevent(p);
	ck_assert_int_eq(ev->kind, PROCREG_EV_LOST);
	ck_assert_str_eq(ev->reason, "nodedown");
	procreg_event_free(ev);
	CK_OK(p, procreg_send_str(p, "drop", "x"));
	fake_expect(&f, "2 send [\"drop\",\"x\"]");
	r = PROCREG_E_CLOSED;
	for (int i = 0; i < 5 && r != PROCREG_OK; i++)
		r = procreg_stats(p, &st);
	ck_assert_int_eq(r, PROCREG_OK);
	fake_expect(&f, "3 hello []");
	fake_expect(&f, "3 register [\"loc\"]");
	fake_expect(&f, "3 stats []");
	procreg_free(p);
	fake_stop(&f);
}
END_TEST

/* A protocol-2 daemon: what worked still does; the protocol-3 requests
 * are refused and say why; LOCAL options send protocol 2's requests. */
START_TEST(test_cluster_fake_protocol2)
{
	struct procreg_whereis_opts wo = { .scope = PROCREG_SCOPE_LOCAL };
	struct procreg_list_opts lo = { .scope = PROCREG_SCOPE_LOCAL };
	struct procreg_entry *e = NULL, **v = NULL;
	struct procreg_node **nodes = NULL;
	struct procreg_hello h;
	struct fake f;
	size_t n;
	procreg_t *p;

	fake_start(&f, 2);
	p = xconnect(f.path);
	fake_expect(&f, "1 hello []");
	CK_OK(p, procreg_hello(p, &h));
	fake_expect(&f, "1 hello []");
	ck_assert_uint_eq(h.protocol, 2);
	ck_assert_str_eq(h.node, "");

	CK_OK(p, procreg_whereis_opts(p, "l", &wo, &e));
	fake_expect(&f, "1 whereis [\"l\"]");
	ck_assert_int_eq(e->scope, PROCREG_SCOPE_LOCAL);
	procreg_entry_free(e);
	CK_OK(p, procreg_list_opts(p, "", &lo, &v, &n));
	fake_expect(&f, "1 list [\"\",10000]");
	fake_expect(&f, "1 list [\"\",10000,\"b\"]");
	procreg_entries_free(v, n);

	wo.scope = PROCREG_SCOPE_CLUSTER;
	CK_CALL(p, procreg_whereis_opts(p, "c", &wo, &e),
	    PROCREG_E_BAD_REQUEST);
	fake_expect(&f, "1 whereis [\"c\",{\"scope\":\"cluster\"}]");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(p), "the daemon speaks "
	    "protocol 2, this needs 3"));
	lo.scope = PROCREG_SCOPE_CLUSTER;
	CK_CALL(p, procreg_list_opts(p, "", &lo, &v, &n),
	    PROCREG_E_BAD_REQUEST);
	fake_expect(&f, "1 list [\"\",10000,null,{\"scope\":\"cluster\"}]");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(p), "this needs 3"));
	CK_CALL(p, procreg_register_opts(p, "c", NULL, 0, PROCREG_CLUSTER,
	    NULL, NULL), PROCREG_E_BAD_REQUEST);
	fake_expect(&f, "1 register [\"c\",null,{\"scope\":\"cluster\"}]");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(p), "this needs 3"));
	CK_CALL(p, procreg_nodes(p, &nodes, &n), PROCREG_E_UNKNOWN_METHOD);
	fake_expect(&f, "1 nodes []");
	ck_assert_ptr_nonnull(strstr(procreg_errmsg(p), "this needs 3"));
	/* Protocol 2's own calls are as they were. */
	CK_OK(p, procreg_register_opts(p, "loc", NULL, 0, 0, &e, NULL));
	fake_expect(&f, "1 register [\"loc\"]");
	procreg_entry_free(e);
	CK_OK(p, procreg_whereis(p, "l", &e));
	fake_expect(&f, "1 whereis [\"l\"]");
	procreg_entry_free(e);
	procreg_free(p);
	fake_stop(&f);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
client_suite(void)
{
	Suite *s = suite_create("libprocreg");
	TCase *tc;

	tc = tcase_create("connect");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_connect_explicit);
	tcase_add_test(tc, test_evict);
	tcase_add_test(tc, test_connect_label_timeout_opts);
	tcase_add_test(tc, test_connect_default_path);
	tcase_add_test(tc, test_connect_missing);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_abi_sized);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_register_values);
	tcase_add_test(tc, test_register_errors);
	tcase_add_test(tc, test_strstatus);
	tcase_add_test(tc, test_pack_and_json);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_list_paging);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_invalid_args);
	tcase_add_test(tc, test_bad_value_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("events");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_send_events);
	tcase_add_test(tc, test_send_order_1000);
	tcase_add_test(tc, test_pushes_during_calls);
	tcase_add_test(tc, test_monitor);
	tcase_add_test(tc, test_loop_callbacks);
	tcase_add_test(tc, test_two_handles);
	tcase_add_test(tc, test_two_handles_interleaved_events);
	tcase_add_test(tc, test_timeout_late_reply);
	tcase_add_test(tc, test_partial_write_disconnects);
	tcase_add_test(tc, test_buffered_push_survives_lost_write);
	suite_add_tcase(s, tc);

	tc = tcase_create("reconnect");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_reconnect_lost_name);
	tcase_add_test(tc, test_reconnect_sync_call);
	tcase_add_test(tc, test_reconnect_sync_call_unnoticed);
	tcase_add_test(tc, test_reconnect_monitors);
	tcase_add_test(tc, test_reconnect_ref_after_restore);
	tcase_add_test(tc, test_reconnect_demonitor_renumbered);
	tcase_add_test(tc, test_reconnect_reply_old_call);
	tcase_add_test(tc, test_no_reconnect);
	tcase_add_test(tc, test_reconnect_p2);
	suite_add_tcase(s, tc);

	/* Slow under valgrind: tens of thousands of round trips. */
	tc = tcase_create("reconnect_many");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_reconnect_many_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("protocol2");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_call);
	tcase_add_test(tc, test_call_timeout);
	tcase_add_test(tc, test_call_down);
	tcase_add_test(tc, test_reply_errors);
	tcase_add_test(tc, test_groups);
	tcase_add_test(tc, test_publish_busy);
	tcase_add_test(tc, test_conn_targets);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_register_many);
	suite_add_tcase(s, tc);

	tc = tcase_create("part2");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_queue_ownership);
	tcase_add_test(tc, test_replacement);
	tcase_add_test(tc, test_evict_lost_reconnect);
	tcase_add_test(tc, test_fencing);
	tcase_add_test(tc, test_await);
	tcase_add_test(tc, test_subscribe);
	tcase_add_test(tc, test_subscribe_gap);
	tcase_add_test(tc, test_subscribe_overflow);
	tcase_add_test(tc, test_reconnect_part2);
	tcase_add_test(tc, test_invalid_args_part2);
	suite_add_tcase(s, tc);

	tc = tcase_create("cluster");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_cluster_without_etcd);
	tcase_add_test(tc, test_cluster_abi_sized);
	tcase_add_test(tc, test_cluster_fake_decode);
	tcase_add_test(tc, test_cluster_fake_reconnect);
	tcase_add_test(tc, test_cluster_fake_protocol2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
