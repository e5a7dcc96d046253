/*
 * testlib.c: integration-test helpers (see testlib.h).
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <linux/sockios.h>

#include <errno.h>
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

static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
t_procregd(void)
{
	const char *p = getenv("PROCREGD");

	return p != NULL ? p : "./procregd";
}

static int
try_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	t_unix_addr(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void	daemon_vstart(struct tdaemon *, const struct tdaemon_opts *,
		    va_list);

void
t_daemon_start(struct tdaemon *d, ...)
{
	struct tdaemon_opts o = { 0, 0, NULL };
	va_list ap;

	va_start(ap, d);
	daemon_vstart(d, &o, ap);
	va_end(ap);
}

void
t_daemon_start_opts(struct tdaemon *d, const struct tdaemon_opts *o, ...)
{
	va_list ap;

	va_start(ap, o);
	daemon_vstart(d, o, ap);
	va_end(ap);
}

static void
daemon_vstart(struct tdaemon *d, const struct tdaemon_opts *o, va_list ap)
{
	const char *argv[32];
	int argc = 0;
	long long deadline;
	const char *a;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/procreg-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->path, sizeof(d->path), "%s/s.sock", d->dir);
	argv[argc++] = t_procregd();
	argv[argc++] = "-s";
	argv[argc++] = d->path;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 30)
		argv[argc++] = a;
	argv[argc] = NULL;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		/* Never outlive the test process. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (o->nofile) {
			struct rlimit rl = { o->nofile, o->nofile };

			setrlimit(RLIMIT_NOFILE, &rl);
		}
		if (o->as) {
			struct rlimit rl = { o->as, o->as };

			setrlimit(RLIMIT_AS, &rl);
		}
		if (o->log != NULL)
			freopen(o->log, "w", stderr);
		else if (!getenv("T_DAEMON_LOG"))
			freopen("/dev/null", "w", stderr);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	/*
	 * Wait for the socket file rather than connecting, so that the test's
	 * first connection is the daemon's conn 1.
	 */
	deadline = mono_ms() + T_TIMEOUT_MS;
	for (;;) {
		struct stat st;

		if (stat(d->path, &st) == 0 && S_ISSOCK(st.st_mode))
			break;
		ck_assert_msg(t_daemon_alive(d), "procregd exited at start");
		ck_assert_msg(mono_ms() < deadline, "procregd did not start");
		usleep(2000);
	}
}

bool
t_daemon_alive(struct tdaemon *d)
{
	return waitpid(d->pid, NULL, WNOHANG) == 0;
}

void
t_daemon_stop(struct tdaemon *d)
{
	int status = 0;
	struct stat st;

	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(d->pid, &status, 0), d->pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "procregd did not exit cleanly (status %d)", status);
	/* A clean exit removes the socket it created. */
	ck_assert_int_ne(stat(d->path, &st), 0);
	rmdir(d->dir);
}

struct tclient *
t_connect(const char *path)
{
	struct tclient *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(c);
	/* A daemon still starting may not have its socket yet: retry. */
	for (int i = 0; (c->fd = try_connect(path)) < 0 && i < 500; i++)
		usleep(2000);
	ck_assert_msg(c->fd >= 0, "cannot connect to %s", path);
	ck_assert(msgpack_unpacker_init(&c->unp, 64 * 1024));
	msgpack_unpacked_init(&c->res);
	c->next_msgid = 1;
	return c;
}

void
t_close(struct tclient *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	msgpack_unpacked_destroy(&c->res);
	msgpack_unpacker_destroy(&c->unp);
	free(c);
}

/* 0 sent, or the errno that stopped it (EPIPE once the daemon closed). */
int
t_send_try(struct tclient *c, const void *p, size_t len)
{
	const char *b = p;

	while (len > 0) {
		ssize_t n = send(c->fd, b, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EPIPE;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

void
t_send_raw(struct tclient *c, const void *p, size_t len)
{
	int e = t_send_try(c, p, len);

	ck_assert_msg(e == 0, "send: %s", strerror(e));
}

void
t_send_pack(struct tclient *c, struct tpack *p)
{
	t_send_raw(c, p->buf.data, p->buf.size);
}

void
t_wait_drained(struct tclient *c)
{
	int queued = -1;

	for (int i = 0; i < T_POLL_ROUNDS * 10; i++) {
		ck_assert_int_eq(ioctl(c->fd, SIOCOUTQ, &queued), 0);
		if (queued == 0)
			return;
		usleep(T_POLL_US / 10);
	}
	ck_abort_msg("the daemon left %d bytes unread", queued);
}

/* Read more bytes into the unpacker; 1 data, 0 EOF, -1 timeout/error. */
static int
fill(struct tclient *c, long long deadline)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t n;
	long long left = deadline - mono_ms();

	if (left < 0)
		left = 0;
	if (poll(&pfd, 1, (int)left) <= 0)
		return -1;
	if (!msgpack_unpacker_reserve_buffer(&c->unp, 64 * 1024))
		return -1;
	n = read(c->fd, msgpack_unpacker_buffer(&c->unp),
	    msgpack_unpacker_buffer_capacity(&c->unp));
	if (n < 0)
		return errno == ECONNRESET ? 0 : -1;
	if (n == 0)
		return 0;
	msgpack_unpacker_buffer_consumed(&c->unp, (size_t)n);
	return 1;
}

msgpack_object *
t_recv(struct tclient *c, int timeout_ms)
{
	long long deadline = mono_ms() +
	    (timeout_ms < 0 ? T_TIMEOUT_MS : timeout_ms);

	for (;;) {
		msgpack_unpack_return r = msgpack_unpacker_next(&c->unp,
		    &c->res);

		if (r == MSGPACK_UNPACK_SUCCESS)
			return &c->res.data;
		ck_assert_msg(r == MSGPACK_UNPACK_CONTINUE,
		    "the daemon sent invalid msgpack");
		if (fill(c, deadline) <= 0)
			return NULL;
	}
}

bool
t_wait_eof(struct tclient *c, int timeout_ms)
{
	long long deadline = mono_ms() +
	    (timeout_ms < 0 ? T_TIMEOUT_MS : timeout_ms);

	for (;;) {
		int r = fill(c, deadline);

		if (r == 0)
			return true;
		if (r < 0)
			return false;
		while (msgpack_unpacker_next(&c->unp, &c->res) ==
		    MSGPACK_UNPACK_SUCCESS)
			;
	}
}

void
tp_init(struct tpack *p)
{
	msgpack_sbuffer_init(&p->buf);
	msgpack_packer_init(&p->pk, &p->buf, msgpack_sbuffer_write);
}

void
tp_free(struct tpack *p)
{
	msgpack_sbuffer_destroy(&p->buf);
}

void
tp_reset(struct tpack *p)
{
	msgpack_sbuffer_clear(&p->buf);
}

void
tp_req(struct tpack *p, uint32_t msgid, const char *method, uint32_t n)
{
	msgpack_pack_array(&p->pk, 4);
	msgpack_pack_uint8(&p->pk, 0);
	msgpack_pack_uint32(&p->pk, msgid);
	tp_str(p, method);
	msgpack_pack_array(&p->pk, n);
}

void
tp_str(struct tpack *p, const char *s)
{
	tp_strn(p, s, strlen(s));
}

void
tp_strn(struct tpack *p, const char *s, size_t n)
{
	msgpack_pack_str(&p->pk, n);
	msgpack_pack_str_body(&p->pk, s, n);
}

void
tp_uint(struct tpack *p, uint64_t u)
{
	msgpack_pack_uint64(&p->pk, u);
}

void
tp_int(struct tpack *p, int64_t i)
{
	msgpack_pack_int64(&p->pk, i);
}

void
tp_nil(struct tpack *p)
{
	msgpack_pack_nil(&p->pk);
}

void
tp_arr(struct tpack *p, uint32_t n)
{
	msgpack_pack_array(&p->pk, n);
}

void
tp_map(struct tpack *p, uint32_t n)
{
	msgpack_pack_map(&p->pk, n);
}

uint32_t
rq_begin(struct tclient *c, struct tpack *p, const char *method,
    uint32_t nparams)
{
	uint32_t id = c->next_msgid++;

	tp_req(p, id, method, nparams);
	return id;
}

void
rq_send(struct tclient *c, struct tpack *p)
{
	t_send_pack(c, p);
	tp_reset(p);
}

/* The params of fmt (a map is one); aborts on a malformed map. */
static uint32_t
fmt_params(const char *fmt)
{
	uint32_t n = 0;
	const char *end;

	for (const char *f = fmt; *f; f++, n++) {
		if (*f != '{')
			continue;
		end = strchr(f, '}');
		ck_assert_msg(end != NULL && memchr(f + 1, '{', end - f - 1) ==
		    NULL && (end - f - 1) % 2 == 0, "bad fmt \"%s\"", fmt);
		f = end;
	}
	return n;
}

static uint32_t
vrequest(struct tclient *c, const char *method, const char *fmt, va_list ap)
{
	struct tpack p;
	uint32_t id = c->next_msgid++;

	tp_init(&p);
	tp_req(&p, id, method, fmt_params(fmt));
	for (const char *f = fmt; *f; f++) {
		switch (*f) {
		case 's':
			tp_str(&p, va_arg(ap, const char *));
			break;
		case 'u':
			tp_uint(&p, va_arg(ap, uint64_t));
			break;
		case 'i':
			tp_int(&p, va_arg(ap, int64_t));
			break;
		case 't':
			msgpack_pack_true(&p.pk);
			break;
		case '{':
			tp_map(&p, (uint32_t)(strchr(f, '}') - f - 1) / 2);
			break;
		case '}':
			break;
		default:
			tp_nil(&p);
			break;
		}
	}
	t_send_pack(c, &p);
	tp_free(&p);
	return id;
}

uint32_t
t_request(struct tclient *c, const char *method, const char *fmt, ...)
{
	va_list ap;
	uint32_t id;

	va_start(ap, fmt);
	id = vrequest(c, method, fmt, ap);
	va_end(ap);
	return id;
}

/* Receive the response to msgid; fails the test on anything else. */
static msgpack_object *
recv_response(struct tclient *c, uint32_t msgid)
{
	msgpack_object *o = t_recv(c, -1);

	ck_assert_msg(o != NULL, "no response to msgid %u", msgid);
	ck_assert_msg(o->type == MSGPACK_OBJECT_ARRAY &&
	    o->via.array.size == 4, "expected a response array");
	ck_assert_uint_eq(o->via.array.ptr[0].via.u64, 1);
	ck_assert_uint_eq(o->via.array.ptr[1].via.u64, msgid);
	return o;
}

msgpack_object *
t_ok(struct tclient *c, uint32_t msgid)
{
	msgpack_object *o = recv_response(c, msgid);
	msgpack_object *e = &o->via.array.ptr[2];

	ck_assert_msg(e->type == MSGPACK_OBJECT_NIL,
	    "msgid %u: unexpected error %.*s", msgid,
	    e->type == MSGPACK_OBJECT_ARRAY &&
	    e->via.array.ptr[0].type == MSGPACK_OBJECT_STR ?
	    (int)e->via.array.ptr[0].via.str.size : 1,
	    e->type == MSGPACK_OBJECT_ARRAY &&
	    e->via.array.ptr[0].type == MSGPACK_OBJECT_STR ?
	    e->via.array.ptr[0].via.str.ptr : "?");
	return &o->via.array.ptr[3];
}

void
t_err(struct tclient *c, uint32_t msgid, const char *code)
{
	msgpack_object *o = recv_response(c, msgid);
	msgpack_object *e = &o->via.array.ptr[2];

	ck_assert_msg(e->type == MSGPACK_OBJECT_ARRAY &&
	    e->via.array.size == 2, "msgid %u: expected error %s", msgid, code);
	ck_assert_msg(o_is_str(&e->via.array.ptr[0], code),
	    "msgid %u: expected error %s, got %.*s", msgid, code,
	    (int)e->via.array.ptr[0].via.str.size,
	    e->via.array.ptr[0].via.str.ptr);
	ck_assert_int_eq(e->via.array.ptr[1].type, MSGPACK_OBJECT_STR);
	ck_assert_int_eq(o->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
}

msgpack_object *
t_call_ok(struct tclient *c, const char *method, const char *fmt, ...)
{
	va_list ap;
	uint32_t id;

	va_start(ap, fmt);
	id = vrequest(c, method, fmt, ap);
	va_end(ap);
	return t_ok(c, id);
}

void
t_call_err(struct tclient *c, const char *code, const char *method,
    const char *fmt, ...)
{
	va_list ap;
	uint32_t id;

	va_start(ap, fmt);
	id = vrequest(c, method, fmt, ap);
	va_end(ap);
	t_err(c, id, code);
}

msgpack_object *
t_push(struct tclient *c, const char *kind)
{
	msgpack_object *o = t_recv(c, -1);

	ck_assert_msg(o != NULL, "no %s notification", kind);
	ck_assert_msg(o->type == MSGPACK_OBJECT_ARRAY &&
	    o->via.array.size == 3 && o->via.array.ptr[0].via.u64 == 2,
	    "expected a notification");
	ck_assert_msg(o_is_str(&o->via.array.ptr[1], kind),
	    "expected a %s notification", kind);
	ck_assert_int_eq(o->via.array.ptr[2].type, MSGPACK_OBJECT_ARRAY);
	return &o->via.array.ptr[2];
}

bool
o_is_str(const msgpack_object *o, const char *s)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	    memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

msgpack_object *
o_get(const msgpack_object *map, const char *key)
{
	ck_assert_int_eq(map->type, MSGPACK_OBJECT_MAP);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		if (o_is_str(&map->via.map.ptr[i].key, key))
			return &map->via.map.ptr[i].val;
	}
	ck_abort_msg("no key %s in map", key);
	return NULL;
}

uint64_t
o_uint(const msgpack_object *o)
{
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	return o->via.u64;
}

msgpack_object *
at(const msgpack_object *a, uint32_t i)
{
	ck_assert_int_eq(a->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_lt(i, a->via.array.size);
	return &a->via.array.ptr[i];
}

bool
obj_eq(const msgpack_object *o, const struct tpack *p)
{
	msgpack_unpacked u;
	size_t off = 0;
	bool eq;

	msgpack_unpacked_init(&u);
	ck_assert_int_eq(msgpack_unpack_next(&u, p->buf.data, p->buf.size,
	    &off), MSGPACK_UNPACK_SUCCESS);
	eq = msgpack_object_equal(*o, u.data);
	msgpack_unpacked_destroy(&u);
	return eq;
}

void
check_str(const msgpack_object *o, const char *want)
{
	ck_assert_msg(o_is_str(o, want), "expected str \"%s\", got %s%.*s",
	    want, o->type == MSGPACK_OBJECT_STR ? "" : "a non-str",
	    o->type == MSGPACK_OBJECT_STR ? (int)o->via.str.size : 0,
	    o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : "");
}

void
check_bool(const msgpack_object *o, bool want)
{
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_BOOLEAN);
	ck_assert_int_eq(o->via.boolean, want);
}

void
check_nil(const msgpack_object *o)
{
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_NIL);
}

void
check_keys(const msgpack_object *map, const char *const *keys)
{
	uint32_t n = 0;

	ck_assert_int_eq(map->type, MSGPACK_OBJECT_MAP);
	while (keys[n] != NULL)
		n++;
	ck_assert_uint_eq(map->via.map.size, n);
	for (uint32_t i = 0; i < n; i++)
		check_str(&map->via.map.ptr[i].key, keys[i]);
}

const char *const entry_keys[] = { "name", "conn", "pid", "uid", "gid",
	"value", "since", "gen", NULL };
const char *const member_keys[] = { "group", "conn", "pid", "uid", "gid",
	"value", "since", "gen", NULL };

uint64_t
check_made_by(const msgpack_object *e, pid_t pid)
{
	long long now_ms = (long long)time(NULL) * 1000;
	uint64_t since, gen;

	ck_assert_uint_eq(o_uint(o_get(e, "pid")), (uint64_t)pid);
	ck_assert_uint_eq(o_uint(o_get(e, "uid")), (uint64_t)getuid());
	ck_assert_uint_eq(o_uint(o_get(e, "gid")), (uint64_t)getgid());
	/* Epoch milliseconds (a unit check, a day's slack either way). */
	since = o_uint(o_get(e, "since"));
	ck_assert_msg((long long)since > now_ms - 86400000LL &&
	    (long long)since < now_ms + 86400000LL,
	    "since %llu is not epoch ms", (unsigned long long)since);
	/* Generations start at 1. */
	gen = o_uint(o_get(e, "gen"));
	ck_assert_uint_ge(gen, 1);
	return gen;
}

void
check_down_name(const msgpack_object *pa, uint64_t ref, const char *name,
    const char *reason)
{
	ck_assert_uint_eq(pa->via.array.size, 3);
	ck_assert_uint_eq(o_uint(at(pa, 0)), ref);
	check_str(at(pa, 1), name);
	check_str(at(pa, 2), reason);
}

void
expect_down(struct tclient *c, uint64_t ref, const char *name,
    const char *reason)
{
	check_down_name(t_push(c, "down"), ref, name, reason);
}

uint64_t
t_conn_id(struct tclient *c)
{
	return o_uint(o_get(t_call_ok(c, "hello", ""), "conn"));
}

uint64_t
t_stat(struct tclient *c, const char *key)
{
	return o_uint(o_get(t_call_ok(c, "stats", ""), key));
}

void
t_wait_stat(struct tclient *c, const char *key, uint64_t want)
{
	uint64_t got = 0;

	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		if ((got = t_stat(c, key)) == want)
			return;
		usleep(T_POLL_US);
	}
	ck_abort_msg("stats %s is %llu, expected %llu", key,
	    (unsigned long long)got, (unsigned long long)want);
}

void
t_wait_gauges(struct tclient *c, uint64_t conns, uint64_t names,
    uint64_t monitors)
{
	uint64_t gc = 0, gn = 0, gm = 0;

	for (int i = 0; i < T_POLL_ROUNDS; i++) {
		msgpack_object *st = t_call_ok(c, "stats", "");

		gc = o_uint(o_get(st, "connections"));
		gn = o_uint(o_get(st, "names"));
		gm = o_uint(o_get(st, "monitors"));
		if (gc == conns && gn == names && gm == monitors)
			return;
		usleep(T_POLL_US);
	}
	ck_abort_msg("gauges connections=%llu names=%llu monitors=%llu, "
	    "expected %llu %llu %llu", (unsigned long long)gc,
	    (unsigned long long)gn, (unsigned long long)gm,
	    (unsigned long long)conns, (unsigned long long)names,
	    (unsigned long long)monitors);
}

void
t_unix_addr(struct sockaddr_un *sun, const char *path)
{
	size_t n = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (n >= sizeof(sun->sun_path))
		n = sizeof(sun->sun_path) - 1;
	memcpy(sun->sun_path, path, n);
}

bool
t_under_valgrind(void)
{
	return strstr(t_procregd(), "valgrind") != NULL;
}

void
t_raise_nofile(unsigned long n)
{
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= n)
		return;
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	ck_assert_msg(rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= n,
	    "RLIMIT_NOFILE hard limit %lu is below %lu",
	    (unsigned long)rl.rlim_max, n);
	rl.rlim_cur = n;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* Helpers shared by the check_daemon_* suites (split from
   check_daemon.c). */

/* Nothing but EOF follows. */
void
expect_eof(struct tclient *c)
{
	ck_assert_msg(t_recv(c, -1) == NULL, "an object arrived instead of EOF");
	ck_assert_msg(t_wait_eof(c, 0), "the connection is still open");
}

/* Nothing arrives within QUIET_MS, the connection is not closed, and a
 * request sent now is answered before anything else arrives. */
void
t_expect_quiet(struct tclient *c)
{
	msgpack_object *o = t_recv(c, QUIET_MS);

	ck_assert_msg(o == NULL, "unexpected object (type %d)",
	    o != NULL ? (int)o->type : -1);
	ck_assert_msg(!t_wait_eof(c, 0), "the daemon closed the connection");
	/*
	 * The window alone proves nothing when the daemon is slow.  But it
	 * handles one connection's requests in order, and a push caused by
	 * what another connection already got an answer for is queued before
	 * this probe's reply: so the reply must come first, with nothing
	 * ahead of it (recv_response fails on anything else).
	 */
	check_nil(t_call_ok(c, "whereis", "s", "t/quiet-probe"));
}

/* The connection is in sync and usable: a request gets its reply. */
void
expect_usable(struct tclient *c)
{
	check_nil(t_call_ok(c, "whereis", "s", "no-such-name"));
}

/* Receive a message push from sender to name; return its payload. */
msgpack_object *
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
void
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
void
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
void
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

/* A first client, once the daemon has forgotten t_daemon_start's probe
 * connection (its close is processed asynchronously). */
struct tclient *
connect_first(struct tdaemon *d)
{
	struct tclient *c = t_connect(d->path);

	t_wait_gauges(c, 1, 0, 0);
	return c;
}

/* A string of n copies of ch (caller frees). */
char *
t_filled(size_t n, char ch)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* A register request whose value is a str of vlen bytes. */
uint32_t
register_with_str(struct tclient *c, struct tpack *p, const char *name,
    size_t vlen)
{
	char *v = t_filled(vlen, 'v');
	uint32_t id = rq_begin(c, p, "register", 2);

	tp_str(p, name);
	tp_str(p, v);
	free(v);
	return id;
}

/* A value with every msgpack type whose identity the spec promises. */
void
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

/* register [name bytes] answers bad_request; the connection stays
 * usable. */
void
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

/* send [name, [seq, 1000-byte str]]; true on success, false on busy. */
bool
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

/* The encoded size of an object (the daemon encodes as msgpack-c does:
 * shortest integers, same headers). */
size_t
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

const char *const stats_keys[] = { "connections", "names",
	"monitors", "requests", "messages", "downs", "notifications_ignored",
	"connections_total", "uptime_ms", "groups", "members", "calls",
	"awaits", "subscriptions", "seq", "replies_late", "draining", NULL };

/* An array of str exactly equal to these (NULL-terminated). */
void
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

/* Append the object packed in obj to p (a param of a request begun in
 * p). */
void
tp_append(struct tpack *p, const struct tpack *obj)
{
	msgpack_sbuffer_write(&p->buf, obj->buf.data, obj->buf.size);
}

/* [obj, "payload"] as the params of method: bad_request. */
void
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
void
for_bad_targets(struct tclient *c, const char *method,
    void (*fn)(struct tclient *, const char *, const struct tpack *))
{
	struct tpack o;
	char *n256 = t_filled(256, 'n');

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

/* A register_many request of n entries: names[i] with the str value
 * values[i], or no value when values is NULL or values[i] is NULL. */
uint32_t
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
