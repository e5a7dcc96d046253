/*
 * etcd.h: an asynchronous etcd v3 client for one libevent loop.
 *
 * It speaks etcd's JSON gateway (HTTP/1.1 POST /v3/...; keys and values
 * base64, 64-bit numbers as strings) with libevent's HTTP client, over
 * plain TCP or TLS (OpenSSL bufferevents).  Nothing blocks and there are
 * no threads: every operation returns at once and answers through its
 * callback from the loop, always exactly once (unless the context is
 * freed first: then never).  Keys and values are bytes, not strings.
 *
 * Status codes, one convention for every answer:
 *   0			done
 *   ETCD_NOLEASE, ...	(small positive) etcd's "no"; a transaction whose
 *			compares failed is not one: it is 0 with
 *			succeeded == false
 *   -ETIMEDOUT		no answer within the request timeout
 *   -ECONNREFUSED	etcd unavailable: could not connect, the connection
 *			broke, or etcd said it has no leader
 *   -EPROTO		the answer was not what the gateway sends (not
 *			JSON, a field missing or of the wrong type, bad
 *			base64, an unexpected HTTP status)
 *   -EMSGSIZE		the answer, or one watch message, was over the bound
 *   -ENOMEM, -EINVAL	local: out of memory, bad arguments
 *
 * Fail-over: endpoints are used in turn; the current one stays until a
 * request to it fails to connect, breaks or times out, and then the next
 * one becomes current.  A request that failed so is retried once on the
 * next endpoint when repeating it cannot change anything: range, lease
 * keep-alive and time-to-live, and a watch until etcd has confirmed its
 * creation.  Everything that writes (txn, delete-range, lease grant and
 * revoke, compaction) is answered -ETIMEDOUT or -ECONNREFUSED instead:
 * the first attempt may have been applied (etcd commits a transaction
 * that the answer to never arrived), and a blind repeat of "create if
 * absent" would then report the name taken by its own owner.  The
 * caller, who knows what the write meant, reads back and decides.
 * With -ETIMEDOUT from a write, its outcome is unknown.
 *
 * Leases are plain IDs here; the caller drives the keep-alive period.
 * Each answer carries the monotonic time its request was sent: the lease
 * is alive until at least that time plus the TTL the answer gives, which
 * is what a partitioned node must count from.  Handing a lease to a
 * successor process is handing over those three numbers (ID, TTL, last
 * keep-alive's send time on CLOCK_MONOTONIC, which exec does not reset);
 * the successor confirms with etcd_lease_ttl and keeps it alive.
 *
 * A callback may start new operations and cancel watches, but must not
 * free the context.  The process must ignore SIGPIPE (procregd does):
 * libevent writes to sockets that etcd may have closed.
 */
#ifndef ETCD_H
#define ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct etcd;
struct etcd_txn;
struct etcd_watch;

enum etcd_status {
	ETCD_OK = 0,
	ETCD_NOLEASE,		/* the lease does not exist (expired, revoked) */
	ETCD_COMPACTED,		/* the revision asked for is compacted away */
	ETCD_REFUSED		/* any other error etcd answered (etcd_code) */
};

#define ETCD_TIMEOUT_MS		2000
#define ETCD_MAX_BODY		(4u << 20)
#define ETCD_TXN_MAX_OPS	128	/* etcd's default --max-txn-ops */
/* Reads and writes sent at once (one connection each); more wait their
 * turn.  Lease keep-alives and watches are never held back. */
#define ETCD_MAX_INFLIGHT	64

struct etcd_config {
	const char	*endpoints;	/* URLs, comma-separated: http://h:p */
	int		 timeout_ms;	/* per request; 0: ETCD_TIMEOUT_MS */
	size_t		 max_body;	/* answer, watch message; 0: default */
	const char	*ca_file;	/* https: CA to trust; NULL: system's */
	const char	*cert_file;	/* https: client certificate chain */
	const char	*key_file;	/* https: its private key */
};

/* A key-value pair as etcd reports it; bytes valid in the callback. */
struct etcd_kv {
	const uint8_t	*key;
	size_t		 key_len;
	const uint8_t	*value;
	size_t		 value_len;
	int64_t		 create_rev;
	int64_t		 mod_rev;
	int64_t		 version;
	int64_t		 lease;
};

/* The answer to one operation; the fields its operation fills are set,
 * the others zero.  Valid during the callback only. */
struct etcd_result {
	int			 status;
	const char		*errmsg;	/* "" when status is 0 */
	int			 etcd_code;	/* gRPC code of etcd's error */
	int64_t			 revision;	/* the store's, from the header */
	uint64_t		 sent_us;	/* now_mono_us() at the send */
	int64_t			 lease_id;	/* grant, keepalive, ttl */
	int64_t			 ttl;		/* grant, keepalive, ttl */
	int64_t			 granted_ttl;	/* ttl */
	bool			 succeeded;	/* txn: the compares held */
	const struct etcd_kv	*kvs;		/* range; txn: first get */
	size_t			 nkvs;
	bool			 more;		/* range: more keys follow */
	int64_t			 count;		/* range: keys in the range */
	int64_t			 deleted;	/* delete-range */
};

typedef void	etcd_cb(const struct etcd_result *, void *arg);

enum etcd_event_type {
	ETCD_EV_CREATE,		/* a put that created the key */
	ETCD_EV_PUT,		/* a put to an existing key */
	ETCD_EV_DELETE		/* kv holds the key and mod_rev only */
};

struct etcd_event {
	enum etcd_event_type	 type;
	struct etcd_kv		 kv;
};

enum etcd_watch_kind {
	ETCD_WATCH_CREATED,	/* etcd confirmed; revision is current */
	ETCD_WATCH_EVENTS,	/* events, in revision order */
	ETCD_WATCH_PROGRESS,	/* nothing changed up to revision */
	ETCD_WATCH_END		/* the watch is over: see status */
};

/*
 * One message of a watch.  END's status: ETCD_COMPACTED (compact_rev is
 * the oldest revision still available), ETCD_REFUSED (etcd cancelled the
 * watch), or negative (the stream failed or ended).  After END the watch
 * is gone; watch again from last_rev + 1.
 */
struct etcd_watch_msg {
	enum etcd_watch_kind	 kind;
	int64_t			 revision;
	const struct etcd_event	*events;
	size_t			 nevents;
	int			 status;
	const char		*errmsg;
	int64_t			 compact_rev;
	int64_t			 last_rev;	/* newest revision delivered */
};

typedef void	etcd_watch_cb(const struct etcd_watch_msg *, void *arg);

struct etcd_range_opts {
	const void	*range_end;	/* NULL: the key alone */
	size_t		 range_end_len;
	int64_t		 revision;	/* 0: the newest */
	int64_t		 limit;		/* 0: no limit */
	bool		 keys_only;
	bool		 count_only;
};

struct etcd_watch_opts {
	const void	*range_end;	/* NULL: the key alone */
	size_t		 range_end_len;
	int64_t		 start_rev;	/* 0: from now */
	bool		 progress_notify;
};

/*
 * A context on base: 0, or -EINVAL with a sentence in err (a URL that does
 * not parse, TLS files that do not load), or -ENOMEM.
 */
int		 etcd_new(struct etcd **, struct event_base *,
		    const struct etcd_config *, char *err, size_t errlen);
/* Drop every pending operation and watch without calling back. */
struct etcd	*etcd_free(struct etcd *);
/* "endpoint=URL state=up|down|unknown inflight=N last_error=..." */
size_t		 etcd_state_str(const struct etcd *, char *buf, size_t len);
const char	*etcd_strerror(int status);

/* Leases.  keepalive answers ETCD_NOLEASE when the lease is gone. */
int		 etcd_lease_grant(struct etcd *, int64_t ttl, int64_t id,
		    etcd_cb *, void *);
int		 etcd_lease_keepalive(struct etcd *, int64_t id, etcd_cb *,
		    void *);
int		 etcd_lease_revoke(struct etcd *, int64_t id, etcd_cb *,
		    void *);
int		 etcd_lease_ttl(struct etcd *, int64_t id, etcd_cb *, void *);

/* Reads, deletes, compaction. */
int		 etcd_range(struct etcd *, const void *key, size_t key_len,
		    const struct etcd_range_opts *, etcd_cb *, void *);
int		 etcd_delete_range(struct etcd *, const void *key,
		    size_t key_len, const void *range_end,
		    size_t range_end_len, etcd_cb *, void *);
int		 etcd_compact(struct etcd *, int64_t revision, etcd_cb *,
		    void *);
/* The end of the range of keys that begin with prefix (out: len bytes);
 * its length, 1 (the byte 0: every key) when prefix is all 0xff. */
size_t		 etcd_prefix_end(const void *prefix, size_t len,
		    uint8_t *out);

/*
 * Transactions: compares, then the ops run on success or on failure.
 * Each list holds at most ETCD_TXN_MAX_OPS (-E2BIG past it).  The builder
 * is consumed by etcd_txn, whatever it answers.
 */
struct etcd_txn	*etcd_txn_new(void);
struct etcd_txn	*etcd_txn_free(struct etcd_txn *);
int		 etcd_txn_cmp_create(struct etcd_txn *, const void *key,
		    size_t key_len, int64_t create_rev);
int		 etcd_txn_cmp_mod(struct etcd_txn *, const void *key,
		    size_t key_len, int64_t mod_rev);
int		 etcd_txn_put(struct etcd_txn *, bool on_success,
		    const void *key, size_t key_len, const void *value,
		    size_t value_len, int64_t lease);
int		 etcd_txn_get(struct etcd_txn *, bool on_success,
		    const void *key, size_t key_len);
/* The keys from key to range_end, without their values (the answer's
 * kvs when it is the branch's first read). */
int		 etcd_txn_keys(struct etcd_txn *, bool on_success,
		    const void *key, size_t key_len, const void *range_end,
		    size_t range_end_len);
int		 etcd_txn_del(struct etcd_txn *, bool on_success,
		    const void *key, size_t key_len);
/* A delete of key fenced by its create revision, as a nested txn, so a
 * batch of them deletes each key that still is the one it names. */
int		 etcd_txn_del_if_created(struct etcd_txn *, const void *key,
		    size_t key_len, int64_t create_rev);
int		 etcd_txn(struct etcd *, struct etcd_txn *, etcd_cb *, void *);

/* The recipes.  Create key with value under lease if absent, else get
 * it (succeeded false, kvs: the holder). */
int		 etcd_txn_create(struct etcd *, const void *key,
		    size_t key_len, const void *value, size_t value_len,
		    int64_t lease, etcd_cb *, void *);
/* Delete key if its create revision is still create_rev. */
int		 etcd_txn_delete_created(struct etcd *, const void *key,
		    size_t key_len, int64_t create_rev, etcd_cb *, void *);
/* Put value if key's mod revision is still mod_rev (the lease kept). */
int		 etcd_txn_put_if_mod(struct etcd *, const void *key,
		    size_t key_len, const void *value, size_t value_len,
		    int64_t lease, int64_t mod_rev, etcd_cb *, void *);

/*
 * Watch key (to range_end) from start_rev; *w is the handle to cancel it.
 * Every message goes to cb; END comes once, last.
 */
int		 etcd_watch(struct etcd *, const void *key, size_t key_len,
		    const struct etcd_watch_opts *, etcd_watch_cb *, void *,
		    struct etcd_watch **w);
/* Stop a watch: no callback after this, also from within one. */
void		 etcd_watch_cancel(struct etcd_watch *);

#endif /* ETCD_H */
