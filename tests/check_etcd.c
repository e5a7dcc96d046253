/*
 * check_etcd.c: the etcd client (src/cluster) against a real etcd that
 * the suite starts on free loopback ports with a temporary data dir (and
 * stops and removes at the end; a PR_SET_PDEATHSIG child, so it never
 * outlives the suite), against a listener that never answers, and against
 * an in-process fake gateway (an evhttp server) that answers hostile
 * things; and the watch stream's splitter on crafted input.  Every wait
 * is bounded; nothing is timed.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "etcd.h"
#include "jsplit.h"

#define WAIT_S		10	/* the longest any wait may take */
#define MAX_EVENTS	64

/* The real etcd, started once for the suite by the parent process. */
static pid_t	 etcd_pid;
static char	 etcd_dir[64];
static char	 etcd_url[64];

/* What one operation answered. */
struct res {
	bool		 done;
	int		 status;
	char		 errmsg[256];
	int64_t		 revision, lease_id, ttl, granted_ttl, count, deleted;
	uint64_t	 sent_us;
	bool		 succeeded, more;
	size_t		 nkvs;
	char		 key[8][64];
	char		 value[8][64];
	int64_t		 create_rev[8], mod_rev[8], lease[8];
};

/* What a watch delivered. */
struct wres {
	bool		 created;
	bool		 ended;
	int		 status;
	char		 errmsg[256];
	int64_t		 compact_rev, last_rev;
	size_t		 n;
	int		 type[MAX_EVENTS];
	char		 key[MAX_EVENTS][64];
	char		 value[MAX_EVENTS][64];
	int64_t		 create_rev[MAX_EVENTS], mod_rev[MAX_EVENTS];
};

static int
free_port(int *keep)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (keep != NULL)
		*keep = fd;
	else
		close(fd);
	return ntohs(a.sin_port);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

static void
copy_str(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

static void
on_result(const struct etcd_result *r, void *arg)
{
	struct res *x = arg;
	size_t i;

	ck_assert(!x->done);
	x->done = true;
	x->status = r->status;
	snprintf(x->errmsg, sizeof(x->errmsg), "%s", r->errmsg);
	x->revision = r->revision;
	x->sent_us = r->sent_us;
	x->lease_id = r->lease_id;
	x->ttl = r->ttl;
	x->granted_ttl = r->granted_ttl;
	x->count = r->count;
	x->deleted = r->deleted;
	x->succeeded = r->succeeded;
	x->more = r->more;
	x->nkvs = r->nkvs;
	ck_assert(r->status == 0 || r->errmsg[0] != '\0');
	for (i = 0; i < r->nkvs && i < 8; i++) {
		copy_str(x->key[i], 64, r->kvs[i].key, r->kvs[i].key_len);
		copy_str(x->value[i], 64, r->kvs[i].value,
		    r->kvs[i].value_len);
		x->create_rev[i] = r->kvs[i].create_rev;
		x->mod_rev[i] = r->kvs[i].mod_rev;
		x->lease[i] = r->kvs[i].lease;
	}
}

static void
on_watch(const struct etcd_watch_msg *m, void *arg)
{
	struct wres *w = arg;
	size_t i;

	ck_assert(!w->ended);
	w->last_rev = m->last_rev;
	switch (m->kind) {
	case ETCD_WATCH_CREATED:
		ck_assert(!w->created);
		w->created = true;
		break;
	case ETCD_WATCH_EVENTS:
		ck_assert(w->created);
		for (i = 0; i < m->nevents && w->n < MAX_EVENTS; i++, w->n++) {
			w->type[w->n] = m->events[i].type;
			copy_str(w->key[w->n], 64, m->events[i].kv.key,
			    m->events[i].kv.key_len);
			copy_str(w->value[w->n], 64, m->events[i].kv.value,
			    m->events[i].kv.value_len);
			w->create_rev[w->n] = m->events[i].kv.create_rev;
			w->mod_rev[w->n] = m->events[i].kv.mod_rev;
		}
		break;
	case ETCD_WATCH_PROGRESS:
		break;
	case ETCD_WATCH_END:
		w->ended = true;
		w->status = m->status;
		w->compact_rev = m->compact_rev;
		snprintf(w->errmsg, sizeof(w->errmsg), "%s", m->errmsg);
		break;
	}
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Run base until *flag, at most WAIT_S seconds. */
static void
run_until(struct event_base *base, const bool *flag)
{
	struct timeval tv = { WAIT_S, 0 };
	bool expired = false;
	struct event *ev = evtimer_new(base, on_deadline, &expired);

	evtimer_add(ev, &tv);
	while (!*flag && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(ev);
	ck_assert_msg(*flag, "no answer in %d s", WAIT_S);
}

/* Run base for one more turn, so deferred frees happen. */
static void
settle(struct event_base *base)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static struct etcd *
client(struct event_base *base, const char *urls, int timeout_ms,
    size_t max_body)
{
	struct etcd_config c = { .endpoints = urls, .timeout_ms = timeout_ms,
	    .max_body = max_body };
	struct etcd *e;
	char err[256];

	ck_assert_msg(etcd_new(&e, base, &c, err, sizeof(err)) == 0, "%s",
	    err);
	return e;
}

/* A key unique to this run and test. */
static size_t
tkey(char *buf, size_t cap, const char *name)
{
	return (size_t)snprintf(buf, cap, "/t%d/%s", (int)getppid(), name);
}

static void
etcd_start(void)
{
	char client_url[64], peer_url[64], cluster[96], log[96];
	struct event_base *base;
	struct etcd *e;
	int tries;

	snprintf(etcd_dir, sizeof(etcd_dir), "/tmp/procreg-etcd.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(etcd_dir));
	snprintf(client_url, sizeof(client_url), "http://127.0.0.1:%d",
	    free_port(NULL));
	snprintf(peer_url, sizeof(peer_url), "http://127.0.0.1:%d",
	    free_port(NULL));
	snprintf(cluster, sizeof(cluster), "e1=%s", peer_url);
	snprintf(log, sizeof(log), "%s/etcd.log", etcd_dir);
	snprintf(etcd_url, sizeof(etcd_url), "%s", client_url);
	etcd_pid = fork();
	ck_assert_int_ge(etcd_pid, 0);
	if (etcd_pid == 0) {
		char data[96];
		int fd;

		/* Never outlive the suite. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(data, sizeof(data), "%s/data", etcd_dir);
		if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("etcd", "etcd", "--name", "e1", "--data-dir", data,
		    "--listen-client-urls", client_url,
		    "--advertise-client-urls", client_url,
		    "--listen-peer-urls", peer_url,
		    "--initial-advertise-peer-urls", peer_url,
		    "--initial-cluster", cluster, (char *)NULL);
		_exit(127);
	}
	/* Wait until it answers a read. */
	base = event_base_new();
	e = client(base, etcd_url, 500, 0);
	for (tries = 0; tries < 4 * WAIT_S; tries++) {
		struct res r = { 0 };

		ck_assert_int_eq(etcd_range(e, "x", 1, NULL, on_result, &r), 0);
		run_until(base, &r.done);
		if (r.status == 0)
			break;
		ck_assert_msg(waitpid(etcd_pid, NULL, WNOHANG) == 0,
		    "etcd exited at start (see %s)", log);
		usleep(250000);
	}
	etcd_free(e);
	event_base_free(base);
	ck_assert_msg(tries < 4 * WAIT_S, "etcd did not start");
}

static void
etcd_stop(void)
{
	if (etcd_pid > 0) {
		kill(etcd_pid, SIGTERM);
		waitpid(etcd_pid, NULL, 0);
		etcd_pid = 0;
	}
	if (etcd_dir[0] != '\0')
		nftw(etcd_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Per test: a loop and a client of the real etcd. */
static struct event_base *base;
static struct etcd *e;

static void
setup(void)
{
	base = event_base_new();
	e = client(base, etcd_url, 0, 0);
}

/* Per test of the fakes: a loop, the client made by the test. */
static void
setup_fake(void)
{
	base = event_base_new();
	e = NULL;
}

static void
teardown(void)
{
	settle(base);
	e = etcd_free(e);
	event_base_free(base);
}

/* Start an operation (rc must be 0) and wait for its answer. */
#define WAIT(r, call) do {						\
	memset(&(r), 0, sizeof(r));					\
	ck_assert_int_eq((call), 0);					\
	run_until(base, &(r).done);					\
} while (0)

START_TEST(test_lease)
{
	struct res r;
	int64_t id;

	WAIT(r, etcd_lease_grant(e, 30, 0, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	ck_assert_int_gt(r.lease_id, 0);
	ck_assert_int_eq(r.ttl, 30);
	id = r.lease_id;
	WAIT(r, etcd_lease_keepalive(e, id, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	ck_assert_int_eq(r.lease_id, id);
	ck_assert_int_eq(r.ttl, 30);
	ck_assert_uint_gt(r.sent_us, 0);
	WAIT(r, etcd_lease_ttl(e, id, on_result, &r));
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(r.granted_ttl, 30);
	ck_assert(r.ttl > 0 && r.ttl <= 30);
	WAIT(r, etcd_lease_revoke(e, id, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	WAIT(r, etcd_lease_keepalive(e, id, on_result, &r));
	ck_assert_int_eq(r.status, ETCD_NOLEASE);
	WAIT(r, etcd_lease_ttl(e, id, on_result, &r));
	ck_assert_int_eq(r.status, ETCD_NOLEASE);
	WAIT(r, etcd_lease_revoke(e, id, on_result, &r));
	ck_assert_int_eq(r.status, ETCD_NOLEASE);
	ck_assert_int_eq(etcd_lease_keepalive(e, 0, on_result, &r), -EINVAL);
}
END_TEST

START_TEST(test_create_twice)
{
	struct res r;
	char k[64];
	size_t kl = tkey(k, sizeof(k), "twice");
	int64_t rev;

	WAIT(r, etcd_txn_create(e, k, kl, "one", 3, 0, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	ck_assert(r.succeeded);
	rev = r.revision;
	WAIT(r, etcd_txn_create(e, k, kl, "two", 3, 0, on_result, &r));
	ck_assert_int_eq(r.status, 0);
	ck_assert(!r.succeeded);
	/* The failure branch read the holder. */
	ck_assert_uint_eq(r.nkvs, 1);
	ck_assert_str_eq(r.key[0], k);
	ck_assert_str_eq(r.value[0], "one");
	ck_assert_int_eq(r.create_rev[0], rev);
	/* Fenced writes: the wrong revision does nothing. */
	WAIT(r, etcd_txn_put_if_mod(e, k, kl, "x", 1, 0, rev + 100,
	    on_result, &r));
	ck_assert(r.status == 0 && !r.succeeded);
	WAIT(r, etcd_txn_delete_created(e, k, kl, rev + 100, on_result, &r));
	ck_assert(r.status == 0 && !r.succeeded);
	WAIT(r, etcd_txn_delete_created(e, k, kl, rev, on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
}
END_TEST

START_TEST(test_range_paging)
{
	struct etcd_range_opts o = { 0 };
	struct etcd_txn *t;
	struct res r;
	char p[64], k[80], got[8][64];
	uint8_t end[64];
	size_t pl = tkey(p, sizeof(p), "page/"), n = 0, i;
	int64_t rev = 0;

	ck_assert_ptr_nonnull(t = etcd_txn_new());
	for (i = 0; i < 5; i++) {
		int kl = snprintf(k, sizeof(k), "%s%zu", p, i);

		ck_assert_int_eq(etcd_txn_put(t, true, k, kl, "v", 1, 0), 0);
	}
	WAIT(r, etcd_txn(e, t, on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
	o.range_end = end;
	o.range_end_len = etcd_prefix_end(p, pl, end);
	o.limit = 2;
	memcpy(k, p, pl);
	for (;;) {
		WAIT(r, etcd_range(e, k, pl, &o, on_result, &r));
		ck_assert_msg(r.status == 0, "%s", r.errmsg);
		ck_assert_int_eq(r.count, 5 - (int64_t)n);
		ck_assert_uint_le(r.nkvs, 2);
		if (rev == 0)
			rev = o.revision = r.revision;
		for (i = 0; i < r.nkvs; i++)
			snprintf(got[n++], 64, "%s", r.key[i]);
		if (!r.more)
			break;
		/* The next page starts just after the last key. */
		pl = strlen(got[n - 1]) + 1;
		memcpy(k, got[n - 1], pl);
	}
	ck_assert_uint_eq(n, 5);
	for (i = 0; i < 5; i++) {
		snprintf(k, sizeof(k), "%s%zu", p, i);
		ck_assert_str_eq(got[i], k);
	}
	WAIT(r, etcd_delete_range(e, p, strlen(p), end,
	    etcd_prefix_end(p, strlen(p), end), on_result, &r));
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(r.deleted, 5);
}
END_TEST

START_TEST(test_watch_order)
{
	struct etcd_watch_opts o = { 0 };
	struct etcd_watch *w;
	struct wres wr = { 0 };
	struct res r;
	char p[64], k[80];
	uint8_t end[64];
	size_t pl = tkey(p, sizeof(p), "w/");
	int kl = snprintf(k, sizeof(k), "%sa", p);
	int64_t start, created;

	WAIT(r, etcd_txn_create(e, k, kl, "v1", 2, 0, on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
	start = created = r.revision;
	WAIT(r, etcd_txn_put_if_mod(e, k, kl, "v2", 2, 0, created,
	    on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
	WAIT(r, etcd_txn_delete_created(e, k, kl, created, on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
	/* Watch from the creation: all three, in order. */
	o.range_end = end;
	o.range_end_len = etcd_prefix_end(p, pl, end);
	o.start_rev = start;
	ck_assert_int_eq(etcd_watch(e, p, pl, &o, on_watch, &wr, &w), 0);
	run_until(base, &wr.created);
	while (wr.n < 3 && !wr.ended)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert(!wr.ended);
	ck_assert_uint_eq(wr.n, 3);
	ck_assert_int_eq(wr.type[0], ETCD_EV_CREATE);
	ck_assert_str_eq(wr.value[0], "v1");
	ck_assert_int_eq(wr.create_rev[0], created);
	ck_assert_int_eq(wr.type[1], ETCD_EV_PUT);
	ck_assert_str_eq(wr.value[1], "v2");
	ck_assert_int_eq(wr.create_rev[1], created);
	ck_assert_int_eq(wr.type[2], ETCD_EV_DELETE);
	ck_assert_str_eq(wr.key[2], k);
	ck_assert(wr.mod_rev[0] < wr.mod_rev[1] && wr.mod_rev[1] < wr.mod_rev[2]);
	ck_assert_int_eq(wr.last_rev, wr.mod_rev[2]);
	etcd_watch_cancel(w);
}
END_TEST

START_TEST(test_lease_revoked_deletes)
{
	struct etcd_watch_opts o = { 0 };
	struct etcd_watch *w;
	struct wres wr = { 0 };
	struct res r;
	char k[64];
	size_t kl = tkey(k, sizeof(k), "leased");
	int64_t id;

	WAIT(r, etcd_lease_grant(e, 30, 0, on_result, &r));
	ck_assert_int_eq(r.status, 0);
	id = r.lease_id;
	WAIT(r, etcd_txn_create(e, k, kl, "mine", 4, id, on_result, &r));
	ck_assert(r.status == 0 && r.succeeded);
	WAIT(r, etcd_range(e, k, kl, NULL, on_result, &r));
	ck_assert_uint_eq(r.nkvs, 1);
	ck_assert_int_eq(r.lease[0], id);
	ck_assert_int_eq(etcd_watch(e, k, kl, &o, on_watch, &wr, &w), 0);
	run_until(base, &wr.created);
	WAIT(r, etcd_lease_revoke(e, id, on_result, &r));
	ck_assert_int_eq(r.status, 0);
	while (wr.n < 1 && !wr.ended)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_uint_eq(wr.n, 1);
	ck_assert_int_eq(wr.type[0], ETCD_EV_DELETE);
	ck_assert_str_eq(wr.key[0], k);
	WAIT(r, etcd_range(e, k, kl, NULL, on_result, &r));
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_eq(r.nkvs, 0);
	etcd_watch_cancel(w);
}
END_TEST

START_TEST(test_compacted)
{
	struct etcd_watch_opts o = { 0 };
	struct etcd_watch *w;
	struct wres wr = { 0 };
	struct etcd_range_opts ro = { 0 };
	struct res r;
	char k[64];
	size_t kl = tkey(k, sizeof(k), "compact");
	int64_t first, rev;
	int i;

	WAIT(r, etcd_txn_create(e, k, kl, "0", 1, 0, on_result, &r));
	rev = first = r.revision;
	for (i = 0; i < 3; i++) {
		WAIT(r, etcd_txn_put_if_mod(e, k, kl, "n", 1, 0, rev,
		    on_result, &r));
		ck_assert(r.status == 0 && r.succeeded);
		rev = r.revision;
	}
	WAIT(r, etcd_compact(e, rev, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	ro.revision = first;
	WAIT(r, etcd_range(e, k, kl, &ro, on_result, &r));
	ck_assert_int_eq(r.status, ETCD_COMPACTED);
	o.start_rev = first;
	ck_assert_int_eq(etcd_watch(e, k, kl, &o, on_watch, &wr, &w), 0);
	run_until(base, &wr.ended);
	ck_assert_int_eq(wr.status, ETCD_COMPACTED);
	ck_assert_int_gt(wr.compact_rev, first);
}
END_TEST

START_TEST(test_failover)
{
	struct etcd *f;
	struct res r;
	char urls[160], state[256];
	int dead = free_port(NULL);

	etcd_free(e);
	snprintf(urls, sizeof(urls), "http://127.0.0.1:%d,%s", dead,
	    etcd_url);
	/* A write against the dead one is answered, not retried. */
	e = f = client(base, urls, 0, 0);
	WAIT(r, etcd_txn_create(f, "/fo", 3, "x", 1, 0, on_result, &r));
	ck_assert_int_eq(r.status, -ECONNREFUSED);
	etcd_state_str(f, state, sizeof(state));
	ck_assert_msg(strstr(state, etcd_url) != NULL, "%s", state);
	e = f = etcd_free(f);
	/* A read is retried on the next endpoint. */
	e = f = client(base, urls, 0, 0);
	WAIT(r, etcd_range(f, "/fo", 3, NULL, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
	etcd_state_str(f, state, sizeof(state));
	ck_assert_msg(strstr(state, etcd_url) != NULL &&
	    strstr(state, "state=up") != NULL, "%s", state);
	/* The current endpoint stays: writes now go there. */
	WAIT(r, etcd_txn_delete_created(f, "/fo", 3, 1, on_result, &r));
	ck_assert_msg(r.status == 0, "%s", r.errmsg);
}
END_TEST

START_TEST(test_timeout)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct res r;
	char url[64];
	int fd, port = free_port(&fd);

	/* The kernel accepts into the backlog; nobody ever answers. */
	(void)a;
	ck_assert_int_eq(listen(fd, 8), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	etcd_free(e);
	e = client(base, url, 200, 0);
	WAIT(r, etcd_range(e, "k", 1, NULL, on_result, &r));
	ck_assert_int_eq(r.status, -ETIMEDOUT);
	WAIT(r, etcd_txn_create(e, "k", 1, "v", 1, 0, on_result, &r));
	ck_assert_int_eq(r.status, -ETIMEDOUT);
	close(fd);
}
END_TEST

/* --- the fake gateway ------------------------------------------------ */

struct fake {
	const char	*status_line;	/* NULL: 200 */
	int		 code;
	const char	*body;
	size_t		 repeat;	/* the body this many times */
	bool		 stream;	/* chunked, then ended */
};

static void
fake_cb(struct evhttp_request *req, void *arg)
{
	struct fake *f = arg;
	struct evbuffer *b = evbuffer_new();
	size_t i;

	for (i = 0; i < (f->repeat ? f->repeat : 1); i++)
		evbuffer_add(b, f->body, strlen(f->body));
	if (f->stream) {
		evhttp_send_reply_start(req, 200, "OK");
		evhttp_send_reply_chunk(req, b);
		evhttp_send_reply_end(req);
	} else
		evhttp_send_reply(req, f->code ? f->code : 200,
		    f->status_line ? f->status_line : "OK", b);
	evbuffer_free(b);
}

START_TEST(test_hostile)
{
	static const struct {
		const char	*name;
		int		 op;	/* 0 range, 1 txn, 2 keepalive, 3 grant */
		struct fake	 f;
		int		 want;
	} cases[] = {
		{ "not json", 0, { .body = "{not json" }, -EPROTO },
		{ "an array", 0, { .body = "[1]" }, -EPROTO },
		{ "empty", 0, { .body = "" }, -EPROTO },
		{ "no header", 0, { .body = "{}" }, -EPROTO },
		{ "revision a list", 0,
		    { .body = "{\"header\":{\"revision\":[]}}" }, -EPROTO },
		{ "revision not a number", 0,
		    { .body = "{\"header\":{\"revision\":\"12x\"}}" }, -EPROTO },
		{ "kvs a string", 0,
		    { .body = "{\"header\":{},\"kvs\":\"x\"}" }, -EPROTO },
		{ "kv a number", 0,
		    { .body = "{\"header\":{},\"kvs\":[7]}" }, -EPROTO },
		{ "bad base64", 0, { .body = "{\"header\":{},"
		    "\"kvs\":[{\"key\":\"@@@=\"}]}" }, -EPROTO },
		{ "base64 cut", 0, { .body = "{\"header\":{},"
		    "\"kvs\":[{\"key\":\"YWJj\",\"value\":\"YW\"}]}" }, -EPROTO },
		{ "more a string", 0, { .body = "{\"header\":{},"
		    "\"more\":\"yes\"}" }, -EPROTO },
		{ "succeeded a string", 1, { .body = "{\"header\":{},"
		    "\"succeeded\":\"yes\"}" }, -EPROTO },
		{ "responses an object", 1, { .body = "{\"header\":{},"
		    "\"responses\":{}}" }, -EPROTO },
		{ "keepalive without result", 2, { .body = "{\"header\":{}}" },
		    -EPROTO },
		{ "grant without an ID", 3, { .body = "{\"header\":{},"
		    "\"TTL\":\"5\"}" }, -EPROTO },
		{ "HTTP 500 text", 0, { .code = 500, .status_line = "Oops",
		    .body = "internal error" }, -EPROTO },
		{ "HTTP 400 etcd error", 1, { .code = 400, .status_line = "Bad",
		    .body = "{\"error\":\"too many operations\",\"code\":3}" },
		    ETCD_REFUSED },
		{ "no leader", 1, { .code = 503, .status_line = "Unavailable",
		    .body = "{\"error\":\"etcdserver: no leader\",\"code\":14}" },
		    -ECONNREFUSED },
		{ "error of the wrong type", 0, { .code = 400,
		    .status_line = "Bad", .body = "{\"error\":1,\"code\":\"x\"}" },
		    -EPROTO },
		{ "past the bound", 0, { .body = "{\"header\":{}}          ",
		    .repeat = 10000 }, -EMSGSIZE },
	};
	struct evhttp *http;
	struct fake f;
	struct res r;
	char url[64];
	size_t i;
	int port = free_port(NULL);
	int rc;

	etcd_free(e);
	http = evhttp_new(base);
	ck_assert_int_eq(evhttp_bind_socket(http, "127.0.0.1", port), 0);
	evhttp_set_gencb(http, fake_cb, &f);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	e = client(base, url, 0, 64 * 1024);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f = cases[i].f;
		memset(&r, 0, sizeof(r));
		switch (cases[i].op) {
		case 0:
			rc = etcd_range(e, "k", 1, NULL, on_result, &r);
			break;
		case 1:
			rc = etcd_txn_create(e, "k", 1, "v", 1, 0, on_result,
			    &r);
			break;
		case 2:
			rc = etcd_lease_keepalive(e, 7, on_result, &r);
			break;
		default:
			rc = etcd_lease_grant(e, 5, 0, on_result, &r);
			break;
		}
		ck_assert_int_eq(rc, 0);
		run_until(base, &r.done);
		ck_assert_msg(r.status == cases[i].want, "%s: %d (%s), not %d",
		    cases[i].name, r.status, r.errmsg, cases[i].want);
	}
	settle(base);
	e = etcd_free(e);
	evhttp_free(http);
}
END_TEST

START_TEST(test_hostile_watch)
{
	static const struct {
		const char	*name;
		const char	*body;
		size_t		 repeat;
		bool		 created;
		int		 want;
	} cases[] = {
		{ "garbage", "hello", 1, false, -EPROTO },
		{ "an endless line", "{\"result\":\"aaaaaaaaaaaaaaaaaaaaaaaaa",
		    10000, false, -EMSGSIZE },
		{ "not JSON inside", "{\"result\":{,}}", 1, false, -EPROTO },
		{ "events before created", "{\"result\":{\"header\":{},"
		    "\"events\":[]}}", 1, false, -EPROTO },
		{ "a bad kv", "{\"result\":{\"header\":{},\"created\":true}}\n"
		    "{\"result\":{\"header\":{},\"events\":[{\"kv\":3}]}}", 1,
		    true, -EPROTO },
		{ "a bad type", "{\"result\":{\"header\":{},\"created\":true}}"
		    "{\"result\":{\"header\":{},\"events\":[{\"type\":\"BOOM\","
		    "\"kv\":{}}]}}", 1, true, -EPROTO },
		{ "bad base64 in an event", "{\"result\":{\"header\":{},"
		    "\"created\":true}}{\"result\":{\"header\":{},\"events\":"
		    "[{\"kv\":{\"key\":\"!!\"}}]}}", 1, true, -EPROTO },
		{ "an error object", "{\"result\":{\"header\":{},"
		    "\"created\":true}}{\"error\":{\"grpc_code\":14,"
		    "\"message\":\"gone\"}}", 1, true, -ECONNREFUSED },
		{ "the stream ends", "{\"result\":{\"header\":{},"
		    "\"created\":true}}", 1, true, -ECONNREFUSED },
	};
	struct evhttp *http;
	struct etcd_watch *w;
	struct fake f = { .stream = true };
	struct wres wr;
	char url[64];
	size_t i;
	int port = free_port(NULL);

	etcd_free(e);
	http = evhttp_new(base);
	ck_assert_int_eq(evhttp_bind_socket(http, "127.0.0.1", port), 0);
	evhttp_set_gencb(http, fake_cb, &f);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	e = client(base, url, 0, 64 * 1024);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f.body = cases[i].body;
		f.repeat = cases[i].repeat;
		memset(&wr, 0, sizeof(wr));
		ck_assert_int_eq(etcd_watch(e, "k", 1, NULL, on_watch, &wr, &w),
		    0);
		run_until(base, &wr.ended);
		ck_assert_msg(wr.status == cases[i].want &&
		    wr.created == cases[i].created, "%s: %d (%s)",
		    cases[i].name, wr.status, wr.errmsg);
		settle(base);
	}
	e = etcd_free(e);
	evhttp_free(http);
}
END_TEST

/* --- the splitter ---------------------------------------------------- */

static const char stream3[] =
    "{\"a\":\"}{\\\"\"}\n{\"b\":[1,{\"c\":2}]}  \r\n{\"d\":\"\\\\\"}";

static const char *const objs3[] = {
	"{\"a\":\"}{\\\"\"}", "{\"b\":[1,{\"c\":2}]}", "{\"d\":\"\\\\\"}"
};

/* Feed stream3 cut at cut (and whole if cut is its length). */
static void
split_at(size_t cut)
{
	struct jsplit j;
	const uint8_t *o;
	size_t len, n = 0, sl = strlen(stream3);
	int rc;

	jsplit_init(&j, 1024);
	ck_assert_int_eq(jsplit_feed(&j, stream3, cut), 0);
	while ((rc = jsplit_next(&j, &o, &len)) == 1) {
		ck_assert_uint_lt(n, 3);
		ck_assert_uint_eq(len, strlen(objs3[n]));
		ck_assert(memcmp(o, objs3[n], len) == 0);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(jsplit_feed(&j, stream3 + cut, sl - cut), 0);
	while ((rc = jsplit_next(&j, &o, &len)) == 1) {
		ck_assert_uint_lt(n, 3);
		ck_assert_uint_eq(len, strlen(objs3[n]));
		ck_assert(memcmp(o, objs3[n], len) == 0);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(n, 3);
	jsplit_deinit(&j);
}

START_TEST(test_split_every_byte)
{
	size_t cut;

	for (cut = 0; cut <= strlen(stream3); cut++)
		split_at(cut);
}
END_TEST

START_TEST(test_split_byte_by_byte)
{
	struct jsplit j;
	const uint8_t *o;
	size_t i, len, n = 0;
	int rc;

	jsplit_init(&j, 1024);
	for (i = 0; i < strlen(stream3); i++) {
		ck_assert_int_eq(jsplit_feed(&j, stream3 + i, 1), 0);
		while ((rc = jsplit_next(&j, &o, &len)) == 1) {
			ck_assert(memcmp(o, objs3[n], len) == 0);
			n++;
		}
		ck_assert_int_eq(rc, 0);
	}
	ck_assert_uint_eq(n, 3);
	jsplit_deinit(&j);
}
END_TEST

START_TEST(test_split_refuses)
{
	struct jsplit j;
	const uint8_t *o;
	size_t len, i;

	jsplit_init(&j, 16);
	ck_assert_int_eq(jsplit_feed(&j, " x{}", 4), 0);
	ck_assert_int_eq(jsplit_next(&j, &o, &len), -EPROTO);
	jsplit_deinit(&j);
	/* An object of exactly the bound passes, one byte more does not. */
	jsplit_init(&j, 16);
	ck_assert_int_eq(jsplit_feed(&j, "{\"k\":\"123456789\"}", 17), 0);
	ck_assert_int_eq(jsplit_next(&j, &o, &len), -EMSGSIZE);
	jsplit_deinit(&j);
	jsplit_init(&j, 16);
	ck_assert_int_eq(jsplit_feed(&j, "{\"k\":\"12345678\"}", 16), 0);
	ck_assert_int_eq(jsplit_next(&j, &o, &len), 1);
	ck_assert_uint_eq(len, 16);
	jsplit_deinit(&j);
	/* An endless line is refused as soon as it passes the bound. */
	jsplit_init(&j, 64);
	ck_assert_int_eq(jsplit_feed(&j, "{\"", 2), 0);
	for (i = 0; i < 100; i++) {
		int rc;

		ck_assert_int_eq(jsplit_feed(&j, "a", 1), 0);
		rc = jsplit_next(&j, &o, &len);
		if (rc != 0) {
			ck_assert_int_eq(rc, -EMSGSIZE);
			break;
		}
	}
	ck_assert_uint_eq(i, 62);
	jsplit_deinit(&j);
	/* Whitespace between objects is not kept. */
	jsplit_init(&j, 16);
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(jsplit_feed(&j, "\n", 1), 0);
	ck_assert_int_eq(jsplit_next(&j, &o, &len), 0);
	ck_assert_int_eq(jsplit_feed(&j, "{}", 2), 0);
	ck_assert_int_eq(jsplit_next(&j, &o, &len), 1);
	ck_assert_uint_eq(len, 2);
	jsplit_deinit(&j);
}
END_TEST

START_TEST(test_config)
{
	struct etcd_config c = { 0 };
	struct etcd *x;
	char err[256], state[256];

	c.endpoints = "ftp://h:1";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(x);
	c.endpoints = "http://127.0.0.1:1,";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), -EINVAL);
	c.endpoints = "http://127.0.0.1:1/path";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), -EINVAL);
	c.endpoints = "";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), -EINVAL);
	c.endpoints = "https://127.0.0.1:1";
	c.ca_file = "/nonexistent/ca.pem";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "CA") != NULL, "%s", err);
	c.ca_file = NULL;
	c.endpoints = "http://[::1]:2379,http://127.0.0.1";
	ck_assert_int_eq(etcd_new(&x, base, &c, err, sizeof(err)), 0);
	etcd_state_str(x, state, sizeof(state));
	ck_assert_msg(strstr(state, "endpoint=http://[::1]:2379 state=unknown")
	    != NULL, "%s", state);
	etcd_free(x);
}
END_TEST

static Suite *
etcd_suite(void)
{
	Suite *s = suite_create("etcd");
	TCase *tc;

	tc = tcase_create("split");
	tcase_add_test(tc, test_split_every_byte);
	tcase_add_test(tc, test_split_byte_by_byte);
	tcase_add_test(tc, test_split_refuses);
	suite_add_tcase(s, tc);

	tc = tcase_create("fake");
	tcase_add_checked_fixture(tc, setup_fake, teardown);
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_hostile);
	tcase_add_test(tc, test_hostile_watch);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("real");
	tcase_add_unchecked_fixture(tc, etcd_start, etcd_stop);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_lease);
	tcase_add_test(tc, test_create_twice);
	tcase_add_test(tc, test_range_paging);
	tcase_add_test(tc, test_watch_order);
	tcase_add_test(tc, test_lease_revoked_deletes);
	tcase_add_test(tc, test_compacted);
	tcase_add_test(tc, test_failover);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(etcd_suite());
	int failed;

	/* As in procregd: a peer gone mid-write is an error, not a death. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
