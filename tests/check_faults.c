/*
 * check_faults.c: fault injection against the real daemon: clients killed
 * mid-message and while holding thousands of names and monitors, a minute
 * of connection churn with no leak, a slow consumer, and file-descriptor
 * exhaustion.  Every wait is bounded; nothing asserts on elapsed time.
 * Each test prints the numbers the README's reliability section quotes.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
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

/*
 * Under AddressSanitizer the daemon's RSS holds the allocator's
 * quarantine, so memory bounds are only checked in plain builds (the
 * sanitized run checks leaks itself, at exit).
 */
static bool
rss_meaningful(void)
{
	const char *e = getenv("PROCREG_SANITIZED");

	return e == NULL || strcmp(e, "1") != 0;
}

/* Open descriptors of a process. */
static int
fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Resident memory of a process, KiB. */
static long
rss_kib(pid_t pid)
{
	char path[64];
	long pages = 0, rss = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	ck_assert_int_eq(fscanf(f, "%ld %ld", &pages, &rss), 2);
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* CPU time used by a process, clock ticks. */
static long
cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name (which may hold spaces). */
	ck_assert_ptr_nonnull(p = strrchr(buf, ')'));
	ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
	    "%*u %*u %lu %lu", &ut, &st), 2);
	return (long)(ut + st);
}

/* Fork a client process that runs fn, tells us through a pipe that it is
 * ready, then sleeps until killed. */
static pid_t
spawn_client(const char *path, void (*fn)(struct tclient *, void *),
    void *arg)
{
	int pfd[2];
	pid_t pid;
	char ok;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct tclient *c;

		close(pfd[0]);
		c = t_connect(path);
		fn(c, arg);
		if (write(pfd[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &ok, 1), 1);
	close(pfd[0]);
	return pid;
}

static void
kill_wait(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}

/* Register "victim", then leave half a request in the daemon's buffer. */
static void
half_request(struct tclient *c, void *arg)
{
	struct tpack p;

	(void)arg;
	t_call_ok(c, "register", "s", "victim");
	tp_init(&p);
	tp_req(&p, 99, "register", 2);
	tp_str(&p, "never-finished");
	tp_strn(&p, "0123456789abcdef", 16);
	t_send_raw(c, p.buf.data, p.buf.size / 2);
	tp_free(&p);
}

START_TEST(kill_mid_message)
{
	struct tdaemon d;
	struct tclient *w;
	msgpack_object *down;
	uint64_t ref;
	pid_t pid;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	pid = spawn_client(d.path, half_request, NULL);
	ref = o_uint(t_call_ok(w, "monitor", "s", "victim"));
	kill_wait(pid);
	down = t_push(w, "down");
	ck_assert_uint_eq(o_uint(&down->via.array.ptr[0]), ref);
	ck_assert(o_is_str(&down->via.array.ptr[2], "disconnected"));
	ck_assert_int_eq(t_call_ok(w, "whereis", "s", "never-finished")->type,
	    MSGPACK_OBJECT_NIL);
	t_wait_gauges(w, 1, 0, 0);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* More names than one purge slice (8192): the purge spans loop turns. */
enum { HOLD_NAMES = 20000, HOLD_MONITORED = 2000 };

/* Register HOLD_NAMES names in one pipelined write. */
static void
hold_many(struct tclient *c, void *arg)
{
	struct tpack p;
	char name[32];

	(void)arg;
	tp_init(&p);
	for (int i = 0; i < HOLD_NAMES; i++) {
		snprintf(name, sizeof(name), "held/%05d", i);
		tp_req(&p, (uint32_t)i + 1, "register", 1);
		tp_str(&p, name);
	}
	t_send_pack(c, &p);
	for (int i = 0; i < HOLD_NAMES; i++)
		t_ok(c, (uint32_t)i + 1);
	tp_free(&p);
}

START_TEST(kill_holding_thousands)
{
	static bool seen[HOLD_MONITORED + 1];
	struct tdaemon d;
	struct tclient *w;
	struct tpack p;
	char name[32];
	pid_t pid;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	pid = spawn_client(d.path, hold_many, NULL);
	ck_assert_uint_eq(t_stat(w, "names"), HOLD_NAMES);
	/*
	 * Monitor 2000 of the newest (refs 1..2000), pipelined: owner lists
	 * are newest first, so these go in the purge's first slice.
	 */
	tp_init(&p);
	for (int i = 0; i < HOLD_MONITORED; i++) {
		snprintf(name, sizeof(name), "held/%05d", HOLD_NAMES - 1 - i * 2);
		tp_req(&p, 1000 + (uint32_t)i, "monitor", 1);
		tp_str(&p, name);
	}
	t_send_pack(w, &p);
	for (int i = 0; i < HOLD_MONITORED; i++)
		ck_assert_uint_eq(o_uint(t_ok(w, 1000 + (uint32_t)i)),
		    (uint64_t)i + 1);
	w->next_msgid = 50000;
	kill_wait(pid);
	/*
	 * Every monitor fires exactly once.  After the first down the purge
	 * has begun, and the oldest name, removed in a later slice, must
	 * already look free: ask, and expect the reply among the downs.
	 */
	memset(seen, 0, sizeof(seen));
	for (int downs = 0, asked = 0, answered = 0;
	    downs < HOLD_MONITORED || !answered;) {
		msgpack_object *o = t_recv(w, -1), *a;

		ck_assert_ptr_nonnull(o);
		a = o->via.array.ptr;
		if (o_uint(&a[0]) == 1) {
			ck_assert(asked && !answered);
			ck_assert_int_eq(a[2].type, MSGPACK_OBJECT_NIL);
			ck_assert_int_eq(a[3].type, MSGPACK_OBJECT_NIL);
			answered = 1;
			continue;
		}
		ck_assert(o_is_str(&a[1], "down"));
		uint64_t ref = o_uint(&a[2].via.array.ptr[0]);

		ck_assert_uint_ge(ref, 1);
		ck_assert_uint_le(ref, HOLD_MONITORED);
		ck_assert(!seen[ref]);
		seen[ref] = true;
		ck_assert(o_is_str(&a[2].via.array.ptr[2], "disconnected"));
		if (downs++ == 0) {
			t_request(w, "whereis", "s", "held/00000");
			asked = 1;
		}
	}
	t_wait_gauges(w, 1, 0, 0);
	/* The names are free at once for a new owner. */
	for (int i = 0; i < HOLD_NAMES; i += 499) {
		snprintf(name, sizeof(name), "held/%05d", i);
		t_call_ok(w, "register", "s", name);
	}
	printf("faults: a client holding %d names with %d monitors on them "
	    "was killed; %d downs delivered, names gauge back to 0\n",
	    HOLD_NAMES, HOLD_MONITORED, HOLD_MONITORED);
	tp_free(&p);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(half_close_purges)
{
	struct tdaemon d;
	struct tclient *w, *c;
	msgpack_object *down;
	uint64_t ref;
	uint32_t id;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	c = t_connect(d.path);
	t_call_ok(c, "register", "s", "half");
	ref = o_uint(t_call_ok(w, "monitor", "s", "half"));
	id = t_request(c, "whereis", "s", "half");
	ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
	/* The reply still comes (the names went already), then EOF. */
	t_ok(c, id);
	ck_assert(t_wait_eof(c, -1));
	down = t_push(w, "down");
	ck_assert_uint_eq(o_uint(&down->via.array.ptr[0]), ref);
	t_wait_gauges(w, 1, 0, 0);
	t_close(c);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* Seconds of churn: $PROCREG_CHURN_SECONDS, default 60. */
static int
churn_seconds(void)
{
	const char *e = getenv("PROCREG_CHURN_SECONDS");

	return e != NULL && atoi(e) > 0 ? atoi(e) : 60;
}

enum { CHURN_BATCH = 50 };

/* One round: open a batch, register, monitor, send, drop them all. */
static void
churn_round(const char *path, int round)
{
	struct tclient *c[CHURN_BATCH];
	char name[48], other[48];

	for (int i = 0; i < CHURN_BATCH; i++) {
		c[i] = t_connect(path);
		snprintf(name, sizeof(name), "churn/%d/%d", round, i);
		t_call_ok(c[i], "register", "s", name);
	}
	for (int i = 0; i < CHURN_BATCH; i++) {
		snprintf(other, sizeof(other), "churn/%d/%d", round,
		    (i + 1) % CHURN_BATCH);
		t_call_ok(c[i], "monitor", "s", other);
	}
	/* Sends cross: each client gets a message push besides its reply. */
	for (int i = 0; i < CHURN_BATCH; i++) {
		snprintf(other, sizeof(other), "churn/%d/%d", round,
		    (i + 1) % CHURN_BATCH);
		t_request(c[i], "send", "ss", other, "hello");
	}
	/* Half read something; all leave with unread output, and half with
	 * a request in flight. */
	for (int i = 0; i < CHURN_BATCH; i++) {
		if (i % 2) {
			ck_assert_ptr_nonnull(t_recv(c[i], -1));
			t_request(c[i], "stats", "");
		}
		t_close(c[i]);
	}
}

START_TEST(churn_without_leaks)
{
	struct tdaemon d;
	struct tclient *w;
	long long end, half;
	long rss0, rss1, rss2;
	int fds0, rounds = 0, secs = churn_seconds();

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	/* Warm up once so allocator pools exist before the baseline. */
	churn_round(d.path, -1);
	t_wait_gauges(w, 1, 0, 0);
	fds0 = fd_count(d.pid);
	rss0 = rss_kib(d.pid);
	half = mono_ms() + secs * 500LL;
	end = mono_ms() + secs * 1000LL;
	while (mono_ms() < half)
		churn_round(d.path, rounds++);
	t_wait_gauges(w, 1, 0, 0);
	rss1 = rss_kib(d.pid);
	while (mono_ms() < end)
		churn_round(d.path, rounds++);
	t_wait_gauges(w, 1, 0, 0);
	rss2 = rss_kib(d.pid);
	ck_assert_int_eq(fd_count(d.pid), fds0);
	/* A leak grows with the rounds: the second half may not add to the
	 * first (allocator slack allowed), nor either to the baseline. */
	if (rss_meaningful()) {
		ck_assert_msg(rss2 <= rss1 + 1024, "rss grew %ld -> %ld KiB",
		    rss1, rss2);
		ck_assert_msg(rss2 <= rss0 + 8192, "rss grew %ld -> %ld KiB",
		    rss0, rss2);
	}
	printf("faults: %d connections opened and dropped in %d s (%d "
	    "rounds); fds %d -> %d, rss %ld -> %ld -> %ld KiB\n",
	    rounds * CHURN_BATCH, secs, rounds, fds0, fd_count(d.pid), rss0,
	    rss1, rss2);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

START_TEST(slow_consumer_loses_nothing)
{
	enum { TRIES = 3000, PAYLOAD = 1000 };
	struct tdaemon d;
	struct tclient *slow, *s;
	char payload[PAYLOAD + 16];
	uint64_t accepted = 0, busy = 0;
	long rss0, rss1;

	t_daemon_start(&d, "--max-outbuf", "65536", NULL);
	slow = t_connect(d.path);
	s = t_connect(d.path);
	t_call_ok(slow, "register", "s", "slow");
	rss0 = rss_kib(d.pid);
	for (int i = 0; i < TRIES; i++) {
		struct tpack p;
		uint32_t id = s->next_msgid++;
		msgpack_object *o, *e;

		snprintf(payload, sizeof(payload), "%08llu",
		    (unsigned long long)accepted);
		memset(payload + 8, 'x', PAYLOAD - 8);
		payload[PAYLOAD] = '\0';
		tp_init(&p);
		tp_req(&p, id, "send", 2);
		tp_str(&p, "slow");
		tp_str(&p, payload);
		t_send_pack(s, &p);
		tp_free(&p);
		o = t_recv(s, -1);
		ck_assert_ptr_nonnull(o);
		e = &o->via.array.ptr[2];
		if (e->type == MSGPACK_OBJECT_NIL) {
			accepted++;
		} else {
			ck_assert(o_is_str(&e->via.array.ptr[0], "busy"));
			busy++;
		}
	}
	rss1 = rss_kib(d.pid);
	ck_assert_uint_gt(accepted, 0);
	ck_assert_uint_gt(busy, 0);
	/* Nothing is queued past the bound: memory stays flat. */
	if (rss_meaningful())
		ck_assert_msg(rss1 <= rss0 + 4096, "rss %ld -> %ld KiB", rss0,
		    rss1);
	/* Now the consumer reads: every accepted message, in order. */
	for (uint64_t i = 0; i < accepted; i++) {
		msgpack_object *m = t_push(slow, "message");
		char want[24];

		snprintf(want, sizeof(want), "%08llu", (unsigned long long)i);
		ck_assert_int_eq(m->via.array.ptr[2].type, MSGPACK_OBJECT_STR);
		ck_assert_int_eq(memcmp(m->via.array.ptr[2].via.str.ptr, want,
		    8), 0);
	}
	ck_assert_ptr_null(t_recv(slow, 300));
	ck_assert_uint_eq(t_stat(s, "messages"), accepted);
	printf("faults: slow consumer: %llu sends accepted, %llu answered "
	    "busy, %llu delivered in order, rss %ld -> %ld KiB\n",
	    (unsigned long long)accepted, (unsigned long long)busy,
	    (unsigned long long)accepted, rss0, rss1);
	t_close(slow);
	t_close(s);
	t_daemon_stop(&d);
}
END_TEST

/* Count the lines of a file that contain needle. */
static int
count_lines(const char *path, const char *needle)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

START_TEST(fd_exhaustion)
{
	enum { LIMIT = 40, CLIENTS = 60 };
	struct tdaemon_opts o = { LIMIT, 0, NULL };
	struct tclient *c[CLIENTS];
	struct tdaemon d;
	char log[64];
	long t0, t1;
	int served = 0, pauses, resumes;

	snprintf(log, sizeof(log), "/tmp/procreg-fdtest.%d.log", (int)getpid());
	o.log = log;
	t_daemon_start_opts(&d, &o, NULL);
	/* More connections than descriptors: the kernel queues the rest. */
	for (int i = 0; i < CLIENTS; i++)
		c[i] = t_connect(d.path);
	/* The first ones are served while the daemon is out of fds. */
	t_call_ok(c[0], "register", "s", "first");
	for (int i = 1; i < 10; i++)
		t_call_ok(c[i], "whereis", "s", "first");
	t0 = cpu_ticks(d.pid);
	sleep(1);
	t1 = cpu_ticks(d.pid);
	/* Paused, not spinning: well under half a CPU over that second. */
	ck_assert_msg(t1 - t0 < sysconf(_SC_CLK_TCK) / 2,
	    "daemon used %ld ticks while out of descriptors", t1 - t0);
	/* Free descriptors: the queued connections get in and are served. */
	for (int i = 1; i < 30; i++) {
		t_close(c[i]);
		c[i] = NULL;
	}
	for (int i = 30; i < CLIENTS; i++) {
		t_call_ok(c[i], "whereis", "s", "first");
		served++;
	}
	/*
	 * One line per shortage, not per retry (it retried at least 5 times
	 * in the second above).  Freeing fds may race with the queued
	 * accepts, so a second, short shortage can happen.
	 */
	pauses = count_lines(log, "pausing accepts");
	resumes = count_lines(log, "accepting connections again");
	ck_assert_int_ge(pauses, 1);
	ck_assert_int_le(pauses, 3);
	ck_assert(resumes == pauses || resumes + 1 == pauses);
	printf("faults: RLIMIT_NOFILE=%d, %d clients: %d shortage(s) logged, "
	    "%ld ticks of CPU in 1 s while out of fds, %d late clients "
	    "served\n", LIMIT, CLIENTS, pauses, t1 - t0, served);
	for (int i = 0; i < CLIENTS; i++)
		t_close(c[i]);
	t_daemon_stop(&d);
	unlink(log);
}
END_TEST

START_TEST(allocation_failure)
{
	/* 96 MiB of address space; values of 1 MiB fill it fast. */
	struct tdaemon_opts o = { 0, 96ul << 20, NULL };
	static char value[1000 * 1000];
	struct tclient *c, *w;
	struct tdaemon d;
	int accepted = 0, refused = 0, closed = 0;

	/* Sanitizers and valgrind need far more address space than this. */
	if (!rss_meaningful() || strstr(t_procregd(), "valgrind") != NULL)
		return;
	memset(value, 'v', sizeof(value));
	value[sizeof(value) - 1] = '\0';
	t_daemon_start_opts(&d, &o, "--max-message", "2000000", NULL);
	w = t_connect(d.path);
	c = t_connect(d.path);
	for (int i = 0; i < 400 && refused == 0; i++) {
		char name[32];
		struct tpack p;
		msgpack_object *r;
		uint32_t id = c->next_msgid++;
		int e;

		snprintf(name, sizeof(name), "big/%d", i);
		tp_init(&p);
		tp_req(&p, id, "register", 2);
		tp_str(&p, name);
		tp_str(&p, value);
		/*
		 * The daemon may run out of memory half-way through this
		 * request and close: EPIPE here, and its last word is still
		 * queued for us to read.
		 */
		e = t_send_try(c, p.buf.data, p.buf.size);
		ck_assert_msg(e == 0 || e == EPIPE || e == ECONNRESET,
		    "send: %s", strerror(e));
		tp_free(&p);
		r = t_recv(c, -1);
		ck_assert_msg(r != NULL, "closed without a word");
		if (r->via.array.ptr[0].via.u64 == 2) {
			/* No memory for its input: told why, then closed. */
			ck_assert(o_is_str(&r->via.array.ptr[1], "error"));
			ck_assert(o_is_str(&r->via.array.ptr[2].via.array.ptr[0],
			    "limit"));
			ck_assert(t_wait_eof(c, -1));
			closed = 1;
			refused++;
			break;
		}
		if (r->via.array.ptr[2].type == MSGPACK_OBJECT_NIL) {
			accepted++;
		} else {
			ck_assert(o_is_str(&r->via.array.ptr[2].via.array.ptr[0],
			    "limit"));
			refused++;
		}
	}
	/* Memory ran out, was refused, and the daemon lives on. */
	ck_assert_int_gt(accepted, 0);
	ck_assert_int_eq(refused, 1);
	ck_assert(t_daemon_alive(&d));
	ck_assert_uint_eq(t_stat(w, "connections"), closed ? 1 : 2);
	t_close(c);
	t_wait_gauges(w, 1, 0, 0);
	/* Freed memory serves new requests again. */
	t_call_ok(w, "register", "ss", "after", "fine");
	printf("faults: RLIMIT_AS=96 MiB: %d values of 1 MB stored, then "
	    "refused with limit (%s); daemon serving afterwards\n", accepted,
	    closed ? "no room for the input: error notification, closed" :
	    "a limit reply");
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* Protocol 2: calls and memberships of clients killed with SIGKILL. */
enum { KILL_CALLS = 1000, KILL_GROUPS = 5000 };
#define A_DAY_MS	86400000u

/* Register two names, then never read. */
static void
register_srv(struct tclient *c, void *arg)
{
	(void)arg;
	t_call_ok(c, "register", "s", "srv");
	t_call_ok(c, "register", "s", "srv2");
}

/* The callee dies with 1,000 calls pending on it (by both names and by its
 * connection id): every one ends with down. */
START_TEST(kill_callee_mid_calls)
{
	static bool seen[KILL_CALLS];
	struct tdaemon d;
	struct tclient *w, *c;
	struct tpack p;
	uint64_t callee;
	uint32_t first;
	pid_t pid;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	c = t_connect(d.path);
	pid = spawn_client(d.path, register_srv, NULL);
	callee = o_uint(o_get(t_call_ok(w, "whereis", "s", "srv"), "conn"));
	tp_init(&p);
	first = c->next_msgid;
	for (int i = 0; i < KILL_CALLS; i++) {
		tp_req(&p, c->next_msgid++, "call", 3);
		if (i % 3 == 0)
			tp_str(&p, "srv");
		else if (i % 3 == 1)
			tp_str(&p, "srv2");
		else
			tp_uint(&p, callee);
		tp_uint(&p, (uint64_t)i);
		tp_uint(&p, A_DAY_MS);
	}
	t_send_pack(c, &p);
	tp_free(&p);
	t_wait_stat(w, "calls", KILL_CALLS);
	kill_wait(pid);
	memset(seen, 0, sizeof(seen));
	/* "At once": each within a generous second, not a timeout. */
	for (int k = 0; k < KILL_CALLS; k++) {
		msgpack_object *o = t_recv(c, 1000), *a;
		uint64_t i;

		ck_assert_msg(o != NULL, "%d of %d calls ended", k, KILL_CALLS);
		ck_assert_uint_eq(o->via.array.size, 4);
		a = o->via.array.ptr;
		ck_assert_uint_eq(o_uint(&a[0]), 1);
		i = o_uint(&a[1]) - first;
		ck_assert_uint_lt(i, KILL_CALLS);
		ck_assert(!seen[i]);
		seen[i] = true;
		ck_assert_int_eq(a[2].type, MSGPACK_OBJECT_ARRAY);
		ck_assert(o_is_str(&a[2].via.array.ptr[0], "down"));
		ck_assert_int_eq(a[3].type, MSGPACK_OBJECT_NIL);
	}
	ck_assert_uint_eq(t_stat(w, "calls"), 0);
	t_wait_gauges(w, 2, 0, 0);
	ck_assert_ptr_null(t_recv(c, 300));
	printf("faults: a callee with %d calls pending was killed; %d down "
	    "errors, calls gauge back to 0\n", KILL_CALLS, KILL_CALLS);
	t_close(c);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* 1,000 calls to "srv" pipelined, then never read. */
static void
call_many(struct tclient *c, void *arg)
{
	struct tpack p;

	(void)arg;
	tp_init(&p);
	for (int i = 0; i < KILL_CALLS; i++) {
		tp_req(&p, (uint32_t)i + 1, "call", 3);
		tp_str(&p, "srv");
		tp_uint(&p, (uint64_t)i);
		tp_uint(&p, A_DAY_MS);
	}
	t_send_pack(c, &p);
	tp_free(&p);
}

/* The caller dies with 1,000 calls pending: they are cancelled, and the
 * callee's replies are refused and counted late. */
START_TEST(kill_caller_mid_calls)
{
	static uint64_t ids[KILL_CALLS];
	struct tdaemon d;
	struct tclient *w, *s;
	struct tpack p;
	uint64_t late;
	uint32_t first;
	pid_t pid;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	s = t_connect(d.path);
	t_call_ok(s, "register", "s", "srv");
	pid = spawn_client(d.path, call_many, NULL);
	for (int i = 0; i < KILL_CALLS; i++) {
		msgpack_object *pa = t_push(s, "call");

		ck_assert_uint_eq(pa->via.array.size, 4);
		ck_assert(o_is_str(&pa->via.array.ptr[1], "srv"));
		ck_assert_uint_eq(o_uint(&pa->via.array.ptr[3]), (uint64_t)i);
		ids[i] = o_uint(&pa->via.array.ptr[0]);
	}
	ck_assert_uint_eq(t_stat(w, "calls"), KILL_CALLS);
	late = t_stat(w, "replies_late");
	kill_wait(pid);
	t_wait_stat(w, "calls", 0);
	t_wait_gauges(w, 2, 1, 0);
	tp_init(&p);
	first = s->next_msgid;
	for (int i = 0; i < KILL_CALLS; i++) {
		tp_req(&p, s->next_msgid++, "reply", 2);
		tp_uint(&p, ids[i]);
		tp_str(&p, "too late");
	}
	t_send_pack(s, &p);
	tp_free(&p);
	for (int i = 0; i < KILL_CALLS; i++)
		t_err(s, first + (uint32_t)i, "not_found");
	ck_assert_uint_eq(t_stat(w, "replies_late"), late + KILL_CALLS);
	ck_assert_uint_eq(t_stat(w, "calls"), 0);
	printf("faults: a caller with %d calls pending was killed; %d "
	    "replies refused as late\n", KILL_CALLS, KILL_CALLS);
	t_close(s);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/* Join 5,000 groups and "room" in one write; wait for every answer. */
static void
join_many(struct tclient *c, void *arg)
{
	struct tpack p;
	char group[32];

	(void)arg;
	tp_init(&p);
	for (int i = 0; i < KILL_GROUPS; i++) {
		snprintf(group, sizeof(group), "grp/%05d", i);
		tp_req(&p, (uint32_t)i + 1, "join", 1);
		tp_str(&p, group);
	}
	tp_req(&p, KILL_GROUPS + 1, "join", 1);
	tp_str(&p, "room");
	t_send_pack(c, &p);
	for (int i = 0; i <= KILL_GROUPS; i++)
		t_ok(c, (uint32_t)i + 1);
	tp_free(&p);
}

/* A publish's delivered count. */
static uint64_t
publish_delivered(struct tclient *c, const char *group, const char *payload)
{
	msgpack_object *r = t_call_ok(c, "publish", "ss", group, payload);

	ck_assert_uint_eq(o_get(r, "busy")->via.array.size, 0);
	return o_uint(o_get(r, "delivered"));
}

/* A member of 5,001 groups dies: its memberships end with it. */
START_TEST(kill_member_holding_groups)
{
	struct tdaemon d;
	struct tclient *w, *m;
	msgpack_object *r;
	uint64_t cw, cm;
	pid_t pid;

	t_daemon_start(&d, NULL);
	w = t_connect(d.path);
	m = t_connect(d.path);
	cw = t_conn_id(w);
	cm = t_conn_id(m);
	t_call_ok(m, "join", "s", "room");
	pid = spawn_client(d.path, join_many, NULL);
	ck_assert_uint_eq(t_stat(w, "groups"), KILL_GROUPS + 1);
	ck_assert_uint_eq(t_stat(w, "members"), KILL_GROUPS + 2);
	ck_assert_uint_eq(publish_delivered(w, "room", "before"), 2);
	kill_wait(pid);
	t_wait_stat(w, "members", 1);
	ck_assert_uint_eq(t_stat(w, "groups"), 1);
	t_wait_gauges(w, 2, 0, 0);
	r = t_call_ok(w, "members", "s", "room");
	ck_assert_uint_eq(r->via.array.size, 1);
	ck_assert_uint_eq(o_uint(o_get(&r->via.array.ptr[0], "conn")), cm);
	ck_assert_uint_eq(t_call_ok(w, "members", "s", "grp/00042")->
	    via.array.size, 0);
	ck_assert_uint_eq(publish_delivered(w, "room", "after"), 1);
	for (int i = 0; i < 2; i++) {
		msgpack_object *pa = t_push(m, "publish");

		ck_assert(o_is_str(&pa->via.array.ptr[0], "room"));
		ck_assert_uint_eq(o_uint(&pa->via.array.ptr[1]), cw);
		ck_assert(o_is_str(&pa->via.array.ptr[2],
		    i == 0 ? "before" : "after"));
	}
	printf("faults: a member of %d groups was killed; groups and members "
	    "gauges back to 1\n", KILL_GROUPS + 1);
	t_close(m);
	t_close(w);
	t_daemon_stop(&d);
}
END_TEST

/*
 * Fan-outs hold one copy of what they send: one register answering many
 * awaits, one publish reaching many members.  Without sharing, a 1 MB
 * value answering 200 awaits would queue 200 MB.
 */
START_TEST(fanout_shares_one_copy)
{
	enum { AWAITS = 200, MEMBERS = 100, VALUE = 1000000, PAYLOAD = 700000 };
	static char value[VALUE + 1], payload[PAYLOAD + 1];
	bool seen[AWAITS] = { false };
	struct tclient *w, *r, *pub, *m[MEMBERS];
	uint32_t first;
	struct tdaemon d;
	long rss0, rss1, rss2;

	memset(value, 'v', VALUE);
	memset(payload, 'p', PAYLOAD);
	t_daemon_start(&d, "--max-message", "2000000", NULL);
	w = t_connect(d.path);
	r = t_connect(d.path);
	pub = t_connect(d.path);
	for (int i = 0; i < MEMBERS; i++) {
		m[i] = t_connect(d.path);
		t_call_ok(m[i], "join", "s", "fan");
	}
	first = w->next_msgid;
	for (int i = 0; i < AWAITS; i++)
		t_request(w, "await", "su", "big", (uint64_t)60000);
	t_wait_stat(r, "awaits", AWAITS);
	rss0 = rss_kib(d.pid);
	t_call_ok(r, "register", "ss", "big", value);
	rss1 = rss_kib(d.pid);
	t_call_ok(pub, "publish", "ss", "fan", payload);
	rss2 = rss_kib(d.pid);
	printf("faults: a 1 MB value answering %d awaits: rss %ld -> %ld KiB; "
	    "a 700 kB publish to %d members: -> %ld KiB\n", AWAITS, rss0,
	    rss1, MEMBERS, rss2);
	if (rss_meaningful()) {
		ck_assert_msg(rss1 - rss0 < 16 * 1024, "awaits: rss %ld -> %ld "
		    "KiB", rss0, rss1);
		ck_assert_msg(rss2 - rss1 < 16 * 1024, "publish: rss %ld -> %ld "
		    "KiB", rss1, rss2);
	}
	/* And every one of them gets the whole of it (in no set order). */
	for (int i = 0; i < AWAITS; i++) {
		msgpack_object *o = t_recv(w, -1);
		uint64_t id;

		ck_assert_ptr_nonnull(o);
		id = at(o, 1)->via.u64;
		ck_assert_uint_ge(id, first);
		ck_assert_uint_lt(id, first + AWAITS);
		ck_assert(!seen[id - first]);
		seen[id - first] = true;
		check_nil(at(o, 2));
		ck_assert_uint_eq(o_get(at(o, 3), "value")->via.str.size, VALUE);
	}
	for (int i = 0; i < MEMBERS; i++) {
		msgpack_object *pp = t_push(m[i], "publish");

		ck_assert_uint_eq(at(pp, 2)->via.str.size, PAYLOAD);
		t_close(m[i]);
	}
	t_close(w);
	t_close(r);
	t_close(pub);
	t_daemon_stop(&d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("faults");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, kill_mid_message);
	tcase_add_test(tc, kill_holding_thousands);
	tcase_add_test(tc, half_close_purges);
	tcase_add_test(tc, slow_consumer_loses_nothing);
	tcase_add_test(tc, fd_exhaustion);
	tcase_add_test(tc, allocation_failure);
	tcase_add_test(tc, kill_callee_mid_calls);
	tcase_add_test(tc, kill_caller_mid_calls);
	tcase_add_test(tc, kill_member_holding_groups);
	tcase_add_test(tc, fanout_shares_one_copy);
	tcase_add_test(tc, churn_without_leaks);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
