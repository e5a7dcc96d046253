/*
 * etcd-rtt: the round trip of a bare etcd transaction through procregd's
 * own etcd client (src/cluster/etcd.[ch], the JSON gateway over libevent),
 * the floor under a cluster register and unregister (proto/PROTOCOL.md
 * §12).  Each pair is what a node sends for one cluster name: the create
 * (etcd_txn_create: create the key under the lease if absent, else get
 * it), then, once etcd has answered, the delete in the shape of the
 * node's unregister (a put of P why/NODE under the lease and the key's
 * delete fenced by its create revision, a nested transaction).  Keys are
 * P names/rtt-<chain>.<seq> under a prefix of the run's own, values 40
 * bytes (a cluster entry's header and a short node name), all under one
 * lease, revoked at the end (which deletes anything left).
 *
 *   etcd-rtt --etcd URL [-n PAIRS] [-c CHAINS] [--batch K] [--watchers W]
 *            [--drop N [--how HOW]] [--prefix P] [--csv]
 *
 * -c chains run at once (each sequential: create, delete, next create);
 * -c 1 is the sequential round trip.  --watchers W: W watches on the
 * run's prefix meanwhile (in this process), as the W nodes of a cluster
 * each watch theirs and see every write.  Printed: pairs/s and the p50, p99
 * and max of the create's, the delete's and the pair's latency in µs, and
 * this process's CPU time per pair (what the etcd client costs).
 *
 * --batch K: each pair creates K keys (one transaction of K puts) and
 * deletes them in one transaction shaped like a node's deletes of a
 * closed connection's names (cl_doom_flush: the why put and K fenced
 * deletes; the node sends 63, at most 4 at once: --batch 63 -c 4).
 *
 * --drop N: one drop of N keys, as a node drops a closed connection's
 * names: N keys are created under a lease of their own (transactions of
 * 127 puts), then deleted, 4 transactions at once, --how
 *   fenced  the node's way: the why put and 63 deletes, each fenced by its
 *           create revision (a nested transaction, which etcd counts as
 *           two operations)
 *   plain   the why put and 127 deletes, unfenced
 *   flat    127 deletes fenced together: 127 compares, the why put and 127
 *           deletes in one transaction (compares are a list of their own
 *           for etcd's 128-operation bound); all or none, so a node would
 *           redo a batch that fails the nested way
 *   revoke  one revoke of their lease
 * with --watchers W watches on the keys' prefix meanwhile (as W nodes
 * watch theirs).  Printed: the time until the last delete was answered
 * and until every watcher had seen every delete.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "etcd.h"
#include "now.h"

#define WARMUP		20	/* pairs not counted, per run */
#define VALUE_LEN	40
#define MAX_BATCH	63	/* (128 - the why put) / 2, as cl_doom_flush */

struct lat {
	uint64_t	*v;
	size_t		 n;
};

struct chain;

struct run {
	struct event_base	*base;
	struct etcd		*etcd;
	const char		*prefix;
	int64_t			 lease;
	uint64_t		 n, issued, done;
	unsigned		 batch;
	uint64_t		 t_start;	/* after the warm-up */
	double			 cpu_start;
	struct lat		 create, del, pair;
	struct chain		*chains;
	unsigned		 nchains;
	bool			 failed;
};

struct chain {
	struct run	*r;
	unsigned	 idx;
	uint64_t	 seq;
	char		 key[MAX_BATCH][128];
	size_t		 klen[MAX_BATCH];
	uint64_t	 t0, t1;
	bool		 counted;
};

static void
fail(const char *what, int status, const char *msg)
{
	fprintf(stderr, "etcd-rtt: %s: %s%s%s\n", what, etcd_strerror(status),
	    msg && *msg ? ": " : "", msg ? msg : "");
	exit(1);
}

static void
lat_add(struct lat *l, uint64_t ns, uint64_t cap)
{
	if (l->v == NULL && (l->v = calloc(cap, sizeof(*l->v))) == NULL) {
		fprintf(stderr, "etcd-rtt: out of memory\n");
		exit(1);
	}
	if (l->n < cap)
		l->v[l->n++] = ns;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct(struct lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)ceil(q * (double)l->n);
	if (i > 0)
		i--;
	if (i >= l->n)
		i = l->n - 1;
	return (double)l->v[i] / 1000.0;
}

static void	chain_next(struct chain *);
static double	cpu_s(void);

static void
on_delete(const struct etcd_result *res, void *arg)
{
	struct chain *c = arg;
	struct run *r = c->r;
	uint64_t now = now_mono_ns();

	if (res->status != 0)
		fail("delete", res->status, res->errmsg);
	if (c->counted) {
		lat_add(&r->del, now - c->t1, r->n);
		lat_add(&r->pair, now - c->t0, r->n);
		r->done++;
	}
	chain_next(c);
}

static void
on_create(const struct etcd_result *res, void *arg)
{
	struct chain *c = arg;
	struct run *r = c->r;
	char why_key[160];
	uint8_t why[2] = { 1, 0 };
	struct etcd_txn *t;
	int n;

	c->t1 = now_mono_ns();
	if (res->status != 0)
		fail("create", res->status, res->errmsg);
	if (!res->succeeded)
		fail("create", 0, "the key exists (a prefix in use?)");
	if (res->revision <= 0)
		fail("create", 0, "no revision in the answer");
	if (c->counted)
		lat_add(&r->create, c->t1 - c->t0, r->n);
	/* the node's unregister: why/NODE under the lease, fenced delete */
	n = snprintf(why_key, sizeof(why_key), "%swhy/rtt", r->prefix);
	if ((t = etcd_txn_new()) == NULL ||
	    etcd_txn_put(t, true, why_key, (size_t)n, why, sizeof(why),
	    r->lease) < 0)
		fail("delete", -ENOMEM, NULL);
	for (unsigned i = 0; i < r->batch; i++)
		if (etcd_txn_del_if_created(t, c->key[i], c->klen[i],
		    res->revision) < 0)
			fail("delete", -ENOMEM, NULL);
	if (etcd_txn(r->etcd, t, on_delete, c) < 0)
		fail("delete", -ENOMEM, NULL);
}

static void
chain_next(struct chain *c)
{
	struct run *r = c->r;
	uint8_t value[VALUE_LEN];
	struct etcd_txn *t;
	int n;

	if (r->issued >= r->n + WARMUP) {
		bool idle = true;

		c->t0 = 0;
		for (unsigned i = 0; i < r->nchains; i++)
			if (r->chains[i].t0 != 0)
				idle = false;
		if (idle)
			event_base_loopbreak(r->base);
		return;
	}
	/* the first WARMUP pairs of the run warm etcd and the client */
	c->counted = r->issued >= WARMUP;
	if (r->issued == WARMUP) {
		r->t_start = now_mono_ns();
		r->cpu_start = cpu_s();
	}
	r->issued++;
	for (unsigned i = 0; i < r->batch; i++) {
		n = snprintf(c->key[i], sizeof(c->key[i]),
		    "%snames/rtt-%u.%" PRIu64 ".%u", r->prefix, c->idx, c->seq,
		    i);
		c->klen[i] = (size_t)n;
	}
	c->seq++;
	memset(value, 0, sizeof(value));
	value[0] = 1;
	value[2] = 4;
	memcpy(value + 36, "node", 4);
	c->t0 = now_mono_ns();
	if (r->batch == 1) {
		if (etcd_txn_create(r->etcd, c->key[0], c->klen[0], value,
		    sizeof(value), r->lease, on_create, c) < 0)
			fail("create", -ENOMEM, NULL);
		return;
	}
	/* K keys in one transaction: its revision is each one's create
	 * revision */
	if ((t = etcd_txn_new()) == NULL)
		fail("create", -ENOMEM, NULL);
	for (unsigned i = 0; i < r->batch; i++)
		if (etcd_txn_put(t, true, c->key[i], c->klen[i], value,
		    sizeof(value), r->lease) < 0)
			fail("create", -ENOMEM, NULL);
	if (etcd_txn(r->etcd, t, on_create, c) < 0)
		fail("create", -ENOMEM, NULL);
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct sync_res {
	bool	 done;
	int	 status;
	int64_t	 lease;
	char	 msg[256];
};

static void
on_sync(const struct etcd_result *res, void *arg)
{
	struct sync_res *s = arg;

	s->done = true;
	s->status = res->status;
	s->lease = res->lease_id;
	snprintf(s->msg, sizeof(s->msg), "%s", res->errmsg);
}

static void
wait_sync(struct run *r, struct sync_res *s)
{
	while (!s->done)
		event_base_loop(r->base, EVLOOP_ONCE);
}

/* ---- --drop ----------------------------------------------------------- */

enum how { HOW_FENCED, HOW_PLAIN, HOW_FLAT, HOW_REVOKE };

struct drop {
	struct run		*r;
	uint64_t		 n;
	enum how		 how;
	int64_t			 lease;
	int64_t			*rev;		/* each key's create revision */
	uint64_t		 next;		/* keys sent (create, delete) */
	uint64_t		 answered;
	unsigned		 inflight;
	bool			 deleting;
	uint64_t		 t_answered;
	unsigned		 nwatch;
	struct etcd_watch	**w;
	uint64_t		*seen_puts, *seen_dels;
	unsigned		 created;	/* watches confirmed */
	uint64_t		 t_seen;
};

struct drop_txn {
	struct drop	*d;
	uint64_t	 first, n;
};

static int
drop_key(const struct drop *d, uint64_t i, char *key, size_t sz)
{
	return snprintf(key, sz, "%snames/drop-%07" PRIu64, d->r->prefix, i);
}

static void	drop_pump(struct drop *);

static void
on_drop_txn(const struct etcd_result *res, void *arg)
{
	struct drop_txn *x = arg;
	struct drop *d = x->d;

	if (res->status != 0)
		fail(d->deleting ? "drop: delete" : "drop: create", res->status,
		    res->errmsg);
	if (!d->deleting)
		for (uint64_t i = 0; i < x->n; i++)
			d->rev[x->first + i] = res->revision;
	d->answered += x->n;
	d->inflight--;
	free(x);
	if (d->deleting && d->answered == d->n)
		d->t_answered = now_mono_ns();
	drop_pump(d);
}

/* Keep 4 transactions in flight, as cl_doom_flush does. */
static void
drop_pump(struct drop *d)
{
	struct run *r = d->r;
	char key[160];
	uint8_t value[VALUE_LEN] = { 1, 0, 4 };
	uint8_t why[2] = { 1, 1 };

	while (d->next < d->n && d->inflight < 4) {
		uint64_t per = !d->deleting ? 127 : d->how == HOW_FENCED ?
		    MAX_BATCH : 127;
		struct drop_txn *x = calloc(1, sizeof(*x));
		struct etcd_txn *t = etcd_txn_new();
		int n;

		if (x == NULL || t == NULL)
			fail("drop", -ENOMEM, NULL);
		x->d = d;
		x->first = d->next;
		x->n = d->n - d->next < per ? d->n - d->next : per;
		if (d->deleting) {
			n = snprintf(key, sizeof(key), "%swhy/rtt", r->prefix);
			if (etcd_txn_put(t, true, key, (size_t)n, why,
			    sizeof(why), d->lease) < 0)
				fail("drop", -ENOMEM, NULL);
		}
		for (uint64_t i = x->first; i < x->first + x->n; i++) {
			n = drop_key(d, i, key, sizeof(key));
			if (!d->deleting ? etcd_txn_put(t, true, key,
			    (size_t)n, value, sizeof(value), d->lease) :
			    d->how == HOW_FENCED ? etcd_txn_del_if_created(t,
			    key, (size_t)n, d->rev[i]) : etcd_txn_del(t, true,
			    key, (size_t)n))
				fail("drop", -ENOMEM, NULL);
			/* flat: every key's fence a compare of the one txn */
			if (d->deleting && d->how == HOW_FLAT &&
			    etcd_txn_cmp_create(t, key, (size_t)n, d->rev[i]))
				fail("drop", -ENOMEM, NULL);
		}
		d->next += x->n;
		d->inflight++;
		if (etcd_txn(r->etcd, t, on_drop_txn, x) < 0)
			fail("drop", -ENOMEM, NULL);
	}
}

struct wctx {
	struct drop	*d;
	unsigned	 i;
};

static void
on_watch(const struct etcd_watch_msg *m, void *arg)
{
	struct wctx *w = arg;
	struct drop *d = w->d;

	switch (m->kind) {
	case ETCD_WATCH_CREATED:
		d->created++;
		break;
	case ETCD_WATCH_EVENTS:
		for (size_t k = 0; k < m->nevents; k++) {
			if (m->events[k].kv.key_len < strlen(d->r->prefix) +
			    6 || memcmp(m->events[k].kv.key +
			    strlen(d->r->prefix), "names/", 6) != 0)
				continue;
			if (m->events[k].type == ETCD_EV_DELETE)
				d->seen_dels[w->i]++;
			else
				d->seen_puts[w->i]++;
		}
		if (d->seen_dels[w->i] == d->n) {
			uint64_t now = now_mono_ns();

			if (now > d->t_seen)
				d->t_seen = now;
		}
		break;
	case ETCD_WATCH_PROGRESS:
		break;
	case ETCD_WATCH_END:
		fail("drop: watch", m->status, m->errmsg);
	}
}

static bool
drop_watchers_at(const struct drop *d, const uint64_t *seen)
{
	for (unsigned i = 0; i < d->nwatch; i++)
		if (seen[i] < d->n)
			return false;
	return true;
}

/* d->nwatch watches on the run's prefix, confirmed by etcd; d->r, d->n
 * set.  The contexts, to free after the watches are cancelled. */
static struct wctx *
watchers_start(struct drop *d)
{
	struct run *r = d->r;
	unsigned nwatch = d->nwatch;
	struct etcd_watch_opts wo;
	uint8_t end[128];
	uint64_t deadline;
	struct wctx *wc;

	if ((d->w = calloc(nwatch + 1, sizeof(*d->w))) == NULL ||
	    (d->seen_puts = calloc(nwatch + 1, sizeof(uint64_t))) == NULL ||
	    (d->seen_dels = calloc(nwatch + 1, sizeof(uint64_t))) == NULL ||
	    (wc = calloc(nwatch + 1, sizeof(*wc))) == NULL)
		fail("watch", -ENOMEM, NULL);
	memset(&wo, 0, sizeof(wo));
	wo.range_end = end;
	wo.range_end_len = etcd_prefix_end(r->prefix, strlen(r->prefix), end);
	for (unsigned i = 0; i < nwatch; i++) {
		wc[i].d = d;
		wc[i].i = i;
		if (etcd_watch(r->etcd, r->prefix, strlen(r->prefix), &wo,
		    on_watch, &wc[i], &d->w[i]) < 0)
			fail("watch", -ENOMEM, NULL);
	}
	deadline = now_mono_ns() + 30000000000ull;
	while (d->created < nwatch && now_mono_ns() < deadline)
		event_base_loop(r->base, EVLOOP_ONCE);
	if (d->created < nwatch)
		fail("watch", -ETIMEDOUT, "etcd did not confirm the watches");
	return wc;
}

static void
watchers_stop(struct drop *d, struct wctx *wc)
{
	for (unsigned i = 0; i < d->nwatch; i++)
		etcd_watch_cancel(d->w[i]);
	free(d->w);
	free(d->seen_puts);
	free(d->seen_dels);
	free(wc);
}

static int
run_drop(struct run *r, uint64_t n, enum how how, unsigned nwatch, bool csv)
{
	static const char *const hows[] = { "fenced", "plain", "flat",
	    "revoke" };
	struct drop dd, *d = &dd;
	struct sync_res s;
	struct wctx *wc;
	uint64_t t0, deadline;
	double c0, cpu;

	memset(d, 0, sizeof(*d));
	d->r = r;
	d->n = n;
	d->how = how;
	d->nwatch = nwatch;
	d->lease = r->lease;
	if ((d->rev = calloc(n, sizeof(*d->rev))) == NULL)
		fail("drop", -ENOMEM, NULL);
	wc = watchers_start(d);
	deadline = now_mono_ns() + 30000000000ull;
	/* the keys, and every watcher has seen them */
	drop_pump(d);
	while ((d->answered < n || !drop_watchers_at(d, d->seen_puts)) &&
	    now_mono_ns() < deadline)
		event_base_loop(r->base, EVLOOP_ONCE);
	if (d->answered < n || !drop_watchers_at(d, d->seen_puts))
		fail("drop", -ETIMEDOUT, "creating the keys");
	/* the drop */
	d->deleting = true;
	d->next = d->answered = 0;
	c0 = cpu_s();
	t0 = now_mono_ns();
	if (how == HOW_REVOKE) {
		memset(&s, 0, sizeof(s));
		if (etcd_lease_revoke(r->etcd, d->lease, on_sync, &s) < 0)
			fail("drop: revoke", -ENOMEM, NULL);
		wait_sync(r, &s);
		if (s.status != 0)
			fail("drop: revoke", s.status, s.msg);
		d->t_answered = now_mono_ns();
		d->answered = n;
		r->lease = 0;
	} else
		drop_pump(d);
	deadline = now_mono_ns() + 60000000000ull;
	while ((d->answered < n || !drop_watchers_at(d, d->seen_dels)) &&
	    now_mono_ns() < deadline)
		event_base_loop(r->base, EVLOOP_ONCE);
	cpu = (cpu_s() - c0) * 1e3;
	if (d->answered < n || !drop_watchers_at(d, d->seen_dels))
		fail("drop", -ETIMEDOUT, "deleting the keys");
	if (nwatch == 0)
		d->t_seen = d->t_answered;
	if (csv)
		printf("test,keys,how,watchers,answered_ms,seen_ms,txns,"
		    "client_cpu_ms\ndrop,%" PRIu64 ",%s,%u,%.1f,%.1f,%" PRIu64
		    ",%.1f\n", n, hows[how], nwatch,
		    (double)(d->t_answered - t0) / 1e6,
		    (double)(d->t_seen - t0) / 1e6, how == HOW_REVOKE ? 1 :
		    (n + (how == HOW_FENCED ? MAX_BATCH : 127) - 1) /
		    (how == HOW_FENCED ? MAX_BATCH : 127), cpu);
	else
		printf("etcd-rtt: drop of %" PRIu64 " keys (%s), %u watcher(s):"
		    " last delete answered after %.1f ms, seen by every "
		    "watcher after %.1f ms; client CPU %.1f ms\n", n, hows[how],
		    nwatch, (double)(d->t_answered - t0) / 1e6,
		    (double)(d->t_seen - t0) / 1e6, cpu);
	watchers_stop(d, wc);
	free(d->rev);
	return 0;
}

static void
usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: etcd-rtt --etcd URL [-n PAIRS] [-c CHAINS] [--batch K] [--watchers W]\n"
"                [--drop N [--how HOW]] [--prefix P] [--csv]\n"
"  --etcd URL    etcd's client URL(s), as procregd's --etcd\n"
"  -n PAIRS      create+delete pairs timed (default 2000; %d more first,\n"
"                not timed)\n"
"  -c CHAINS     pairs in flight at once, each chain sequential (default 1)\n"
"  --batch K     K keys per pair: a K-put create, a delete shaped like a\n"
"                node's batch for a closed connection (default 1, at most\n"
"                %d)\n"
"  --watchers W  W watches on the prefix meanwhile, as W nodes' (default 0)\n"
"  --drop N      instead: drop N keys, --how fenced (the node's way,\n"
"                default), plain, flat or revoke\n"
"  --prefix P    key prefix (default /procreg-etcd-rtt-PID/)\n"
"  --csv         one CSV line per figure\n", WARMUP, MAX_BATCH);
	exit(status);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "etcd", required_argument, NULL, 'e' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "csv", no_argument, NULL, 'C' },
		{ "batch", required_argument, NULL, 'b' },
		{ "drop", required_argument, NULL, 'd' },
		{ "how", required_argument, NULL, 'w' },
		{ "watchers", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct etcd_config cfg;
	struct sync_res s;
	struct run rr, *r = &rr;
	const char *url = NULL;
	char err[256], prefix[64];
	bool csv = false;
	double secs, cpu;
	uint64_t drop_n = 0;
	enum how how = HOW_FENCED;
	unsigned nwatch = 0;
	struct drop pw;
	struct wctx *pwc = NULL;
	int opt;

	memset(r, 0, sizeof(*r));
	r->n = 2000;
	r->nchains = 1;
	r->batch = 1;
	snprintf(prefix, sizeof(prefix), "/procreg-etcd-rtt-%d/", (int)getpid());
	r->prefix = prefix;
	while ((opt = getopt_long(argc, argv, "n:c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e': url = optarg; break;
		case 'p': r->prefix = optarg; break;
		case 'C': csv = true; break;
		case 'b': r->batch = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'd': drop_n = strtoull(optarg, NULL, 10); break;
		case 'w':
			if (strcmp(optarg, "fenced") == 0)
				how = HOW_FENCED;
			else if (strcmp(optarg, "plain") == 0)
				how = HOW_PLAIN;
			else if (strcmp(optarg, "flat") == 0)
				how = HOW_FLAT;
			else if (strcmp(optarg, "revoke") == 0)
				how = HOW_REVOKE;
			else
				usage(2);
			break;
		case 'W': nwatch = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': r->n = strtoull(optarg, NULL, 10); break;
		case 'c': r->nchains = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (url == NULL || optind != argc || r->n == 0 || r->nchains == 0 ||
	    strlen(r->prefix) > 64 || r->batch == 0 || r->batch > MAX_BATCH)
		usage(2);
	signal(SIGPIPE, SIG_IGN);
	if ((r->base = event_base_new()) == NULL)
		fail("event_base_new", -ENOMEM, NULL);
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoints = url;
	if (etcd_new(&r->etcd, r->base, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "etcd-rtt: %s\n", err);
		return 1;
	}
	/* a lease, as a node's names have */
	memset(&s, 0, sizeof(s));
	if (etcd_lease_grant(r->etcd, 60, 0, on_sync, &s) < 0)
		fail("lease grant", -ENOMEM, NULL);
	wait_sync(r, &s);
	if (s.status != 0)
		fail("lease grant", s.status, s.msg);
	r->lease = s.lease;
	if (drop_n > 0) {
		run_drop(r, drop_n, how, nwatch, csv);
		if (r->lease != 0) {
			memset(&s, 0, sizeof(s));
			if (etcd_lease_revoke(r->etcd, r->lease, on_sync,
			    &s) == 0)
				wait_sync(r, &s);
		}
		etcd_free(r->etcd);
		event_base_free(r->base);
		return 0;
	}
	if (nwatch > 0) {
		/* watches that see every pair's events, as the nodes' do */
		memset(&pw, 0, sizeof(pw));
		pw.r = r;
		pw.n = UINT64_MAX;
		pw.nwatch = nwatch;
		pwc = watchers_start(&pw);
	}
	if ((r->chains = calloc(r->nchains, sizeof(*r->chains))) == NULL)
		fail("calloc", -ENOMEM, NULL);
	for (unsigned i = 0; i < r->nchains; i++) {
		r->chains[i].r = r;
		r->chains[i].idx = i;
	}
	for (unsigned i = 0; i < r->nchains; i++)
		chain_next(&r->chains[i]);
	event_base_dispatch(r->base);
	secs = (double)(now_mono_ns() - r->t_start) / 1e9;
	cpu = (cpu_s() - r->cpu_start) * 1e6 / (double)r->done;
	if (pwc != NULL)
		watchers_stop(&pw, pwc);
	memset(&s, 0, sizeof(s));
	if (etcd_lease_revoke(r->etcd, r->lease, on_sync, &s) == 0)
		wait_sync(r, &s);
	qsort(r->create.v, r->create.n, sizeof(uint64_t), cmp_u64);
	qsort(r->del.v, r->del.n, sizeof(uint64_t), cmp_u64);
	qsort(r->pair.v, r->pair.n, sizeof(uint64_t), cmp_u64);
	if (csv) {
		static const char *const names[3] = { "pair", "create",
		    "delete" };
		struct lat *ls[3] = { &r->pair, &r->create, &r->del };

		printf("test,chains,batch,pairs,secs,pairs_per_s,p50_us,p99_us,"
		    "max_us,cpu_us_per_pair\n");
		for (int k = 0; k < 3; k++)
			printf("etcd-txn-%s,%u,%u,%" PRIu64 ",%.3f,%.0f,%.1f,"
			    "%.1f,%.1f,%.1f\n", names[k],
			    r->nchains, r->batch, r->done, secs,
			    (double)r->done / secs, pct(ls[k], .5),
			    pct(ls[k], .99), pct(ls[k], 1), cpu);
	} else {
		printf("etcd-rtt: %" PRIu64 " pairs of %u key(s), %u chain(s), "
		    "%.0f pairs/s, client CPU %.1f us/pair\n", r->done,
		    r->batch, r->nchains, (double)r->done / secs, cpu);
		printf("  create  p50 %8.1f us  p99 %8.1f us  max %8.1f us\n",
		    pct(&r->create, .5), pct(&r->create, .99),
		    pct(&r->create, 1));
		printf("  delete  p50 %8.1f us  p99 %8.1f us  max %8.1f us\n",
		    pct(&r->del, .5), pct(&r->del, .99), pct(&r->del, 1));
		printf("  pair    p50 %8.1f us  p99 %8.1f us  max %8.1f us\n",
		    pct(&r->pair, .5), pct(&r->pair, .99), pct(&r->pair, 1));
	}
	etcd_free(r->etcd);
	event_base_free(r->base);
	free(r->chains);
	free(r->create.v);
	free(r->del.v);
	free(r->pair.v);
	return 0;
}
