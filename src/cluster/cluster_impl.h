/*
 * cluster_impl.h: what the cluster's files share and nobody else sees:
 * the node's state (struct cluster), the records of local connections,
 * monitors and pending writes, and the helpers between the files.
 *
 *   cluster.c		the lease, the watch and the read that fill the
 *			cache, setup and teardown
 *   cluster_cache.c	the cache: entries, nodes, connections' records,
 *			monitors (plain data, no etcd)
 *   cluster_write.c	requests that go to etcd: register, unregister,
 *			update, evict, reads, a closed connection's deletes
 */
#ifndef CLUSTER_IMPL_H
#define CLUSTER_IMPL_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "cluster.h"
#include "etcd.h"
#include "htab.h"

struct event;

/* Keys read per page when the cache is filled. */
#define CL_PAGE			1000
/* The tick: lease deadline checks, keepalives, retries. */
#define CL_TICK_MS		100
/* Retry a failed join step or a failed batch of deletes after this. */
#define CL_RETRY_MS		500
/* Entry and node value formats (proto/PROTOCOL.md, "Cluster"). */
#define CL_VALUE_V1		1
#define CL_ENTRY_HDR		36
#define CL_NODE_HDR		12
/* P queue/ NAME NUL NODE / CONN, the longest key. */
#define CL_KEY_MAX		512

/* One local connection's part in the cluster. */
struct cl_peer {
	void			*peer;
	LIST_HEAD(, cl_entry)	 names;
	LIST_HEAD(, cl_monitor)	 monitors;
	LIST_HEAD(, cl_op)	 ops;
	LIST_HEAD(, cl_waiter)	 waits;		/* its places in queues */
	uint32_t		 nnames;
	uint32_t		 nmonitors;
	uint32_t		 nwaits;
};

/* The waiters for one cluster name, in line by create revision. */
struct cl_queue {
	TAILQ_HEAD(cl_waiters, cl_waiter) waiters;
	uint32_t		 n;
	bool			 acquiring;	/* the head's txn in flight */
	uint8_t			 name_len;
	char			 name[];
};

/* A place in a cluster queue: P queue/NAME NUL NODE/CONN, under the
 * waiter's node's lease, its value what names/NAME will hold. */
struct cl_waiter {
	TAILQ_ENTRY(cl_waiter)	 by_queue;
	LIST_ENTRY(cl_waiter)	 by_peer;
	TAILQ_ENTRY(cl_waiter)	 doom_link;
	struct cl_queue		*q;
	struct cl_node		*node;
	struct cl_peer		*peer;		/* ours, its conn open */
	uint64_t		 conn;
	int64_t			 rev;		/* its place: create revision */
	uint64_t		 epoch;
	bool			 doomed;
	bool			 leaving;	/* its give-up is in flight */
	bool			 acquiring;	/* its hand-over is in flight */
	uint32_t		 value_len;
	uint8_t			 value[];
};

struct cl_monitor {
	LIST_ENTRY(cl_monitor)	 by_entry;
	LIST_ENTRY(cl_monitor)	 by_holder;
	struct cl_entry		*e;
	struct cl_peer		*holder;
	uint64_t		 ref;
};

enum cl_op_kind {
	OP_REGISTER,
	OP_UNREGISTER,
	OP_UPDATE,
	OP_EVICT,
	OP_READ,
	OP_DELETES,	/* closed connections' keys, a batch */
	OP_ACQUIRE,	/* the head of a queue takes the name */
	OP_LEAVE_QUEUE	/* a waiter gives up its place */
};

/* A write or read waiting for etcd.  peer NULL: its connection went. */
struct cl_op {
	LIST_ENTRY(cl_op)	 by_peer;
	LIST_ENTRY(cl_op)	 all;
	struct cluster		*cl;
	struct cl_peer		*peer;
	enum cl_op_kind		 kind;
	bool			 queue;		/* register: wait if taken */
	uint32_t		 msgid;
	int64_t			 gen;
	struct cl_owner		 owner;
	/* OP_DELETES: n (name, gen) pairs; the others: one name. */
	size_t			 n;
	char			**keys;		/* whole keys */
	size_t			*klens;
	int64_t			*gens;		/* their create revisions */
	uint8_t			 name_len;
	char			 name[256];
	uint32_t		 value_len;
	uint8_t			*value;
};

struct cluster {
	struct event_base	*base;
	struct etcd		*etcd;
	const struct cluster_ops *ops;
	void			*arg;
	char			 node[64];
	size_t			 node_len;
	char			 prefix[128];
	size_t			 prefix_len;
	char			 address[128];
	unsigned		 ttl_s;
	uint8_t			 hkey[crypto_shorthash_KEYBYTES];
	bool			(*value_ok)(const void *, size_t);
	uint64_t		(*hash)(const void *, const char *, size_t);
	const void		*hash_arg;
	enum cl_state		 state;
	/* The lease. */
	int64_t			 lease;
	int64_t			 old_lease;	/* to revoke after a loss */
	uint64_t		 alive_until_us; /* by our clock, conservative */
	uint64_t		 ka_sent_us;
	bool			 ka_inflight;
	bool			 join_inflight;
	unsigned		 join_fails;	/* in a row: backoff, logs */
	bool			 have_key;	/* our nodes/ key, this lease */
	int64_t			 ka_lease;	/* the keepalive in flight's */
	/* A register timed out: a key of ours may have no owner. */
	bool			 orphans_possible;
	uint64_t		 join_after_us;	/* next attempt */
	uint64_t		 taken_since_us; /* our node key held by another */
	uint64_t		 since_ms;
	/* The cache. */
	struct htab		 names;
	uint64_t		 nnames;
	LIST_HEAD(, cl_node)	 nodes;
	uint64_t		 epoch;		/* of the running sync */
	int64_t			 rev;		/* newest revision applied */
	struct etcd_watch	*watch;
	bool			 watch_up;	/* created and not ended */
	unsigned		 watch_fails;	/* in a row: the backoff */
	bool			 syncing;
	bool			 synced_once;	/* the cache was read before */
	bool			 leaving;	/* cluster_leave: no more writes */
	bool			 revoking;	/* leaving: revoke in flight */
	/* Connections and what waits for etcd. */
	struct htab		 peers;
	LIST_HEAD(, cl_op)	 pending;
	TAILQ_HEAD(, cl_entry)	 doomed;	/* to delete, not yet sent */
	TAILQ_HEAD(, cl_waiter)	 doomed_w;	/* places, the same */
	struct htab		 queues;	/* struct cl_queue by name */
	bool			 queues_dirty;	/* an acquire failed: retry */
	uint64_t		 doom_after_us;
	unsigned		 doom_inflight;
	struct event		*tick;
};

/* Logging through the daemon (cluster.c). */
void		 cl_log(struct cluster *, int prio, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

/* Keys and values (cluster_cache.c): P kind NAME into buf (CL_KEY_MAX),
 * its length; whether kv's key is P kind..., the rest after it. */
size_t		 cl_key(const struct cluster *, const char *kind,
		    const char *name, size_t len, char *buf);
bool		 cl_key_kind(const struct cluster *, const struct etcd_kv *,
		    const char *kind, const uint8_t **rest, size_t *rlen);
void		 cl_put_u64(uint8_t *, uint64_t);
uint64_t	 cl_get_u64(const uint8_t *);
/* The value of a names/ key for owner o (malloc'd, *len bytes). */
uint8_t		*cl_entry_encode(const struct cluster *, const struct cl_owner *,
		    uint64_t since_ms, const void *val, size_t vlen,
		    size_t *len);

/* The view of a names/ key's value (gen its create revision): 0, or -1
 * when it is not one this node would have written. */
int		 cl_view_parse(const struct cluster *, const char *name,
		    size_t len, const uint8_t *v, size_t vlen, int64_t gen,
		    struct cl_view *);

/* The cache (cluster_cache.c). */
struct cl_entry	*cl_cache_find(const struct cluster *, const char *name,
		    size_t len);
/* What etcd says of a name (value as stored, gen its create revision):
 * the entry, or NULL (a value not ours, or no memory). */
struct cl_entry	*cl_cache_put(struct cluster *, const char *name, size_t len,
		    const uint8_t *v, size_t vlen, int64_t gen);
void		 cl_cache_node(struct cluster *, const uint8_t *name,
		    size_t len, const struct etcd_kv *, bool deleted);
/* Fire its monitors with why, tell a local owner lost (tell_owner,
 * unless it asked), free it. */
void		 cl_entry_remove(struct cluster *, struct cl_entry *,
		    enum pr_down_reason why, bool tell_owner);
void		 cl_entry_set_owner(struct cluster *, struct cl_entry *,
		    struct cl_peer *);
bool		 cl_entry_is_self(const struct cluster *, const struct cl_entry *);
bool		 cl_node_is_self(const struct cluster *, const struct cl_node *);
/* Queue its key for deletion (its owner is gone). */
void		 cl_entry_doom(struct cluster *, struct cl_entry *);
/* Is this a name a client could have registered (PROTOCOL.md §3)? */
bool		 cl_name_ok(const char *, size_t);
/* Is this a node name procregd would accept (config.c's rule)? */
bool		 cl_node_name_ok(const uint8_t *, size_t);
/* Node records, counted by the entries and waiters that name them. */
struct cl_node	*cl_node_get(struct cluster *, const char *name, size_t len);
void		 cl_node_put(struct cluster *, struct cl_node *);
/* Local connections' records: made on first use, freed when empty. */
uint64_t	 cl_peer_hash(const void *peer);
struct cl_peer	*cl_peer_find(const struct cluster *, const void *peer);
struct cl_peer	*cl_peer_get(struct cluster *, void *peer);
void		 cl_peer_put(struct cluster *, struct cl_peer *);

/* Is a register of this name waiting for etcd? (A walk.) */
bool		 cl_register_pending(const struct cluster *, const char *name,
		    size_t len);
/* Pending writes (cluster_write.c).  peer NULL: nobody to answer. */
struct cl_op	*cl_op_new(struct cluster *, enum cl_op_kind,
		    struct cl_peer *, uint32_t msgid, const char *name,
		    size_t len);
void		 cl_op_free(struct cl_op *);
void		 cl_op_reply(struct cl_op *, int err, const char *why,
		    const struct cl_entry *, bool is_bool);
/* Send the doomed keys' deletes (when up, and not too many in flight). */
void		 cl_doom_flush(struct cluster *);

/* Queues (cluster_queue.c). */
size_t		 cl_waiter_key(const struct cluster *, const char *name,
		    size_t len, const char *node, size_t nlen, uint64_t conn,
		    char *buf);
/* The key's parts: 0, or -1 when it is not a waiter's key. */
int		 cl_waiter_parse(const uint8_t *rest, size_t rlen,
		    const char **name, size_t *len, const char **node,
		    size_t *nlen, uint64_t *conn);
struct cl_queue	*cl_queue_find(const struct cluster *, const char *name,
		    size_t len);
struct cl_waiter *cl_waiter_find(const struct cluster *, const char *name,
		    size_t len, const char *node, size_t nlen, uint64_t conn);
/* A waiter etcd reports (P queue/... put), or NULL. */
struct cl_waiter *cl_waiter_put(struct cluster *, const uint8_t *rest,
		    size_t rlen, const uint8_t *v, size_t vlen, int64_t rev);
void		 cl_waiter_remove(struct cluster *, struct cl_waiter *);
void		 cl_waiter_set_peer(struct cluster *, struct cl_waiter *,
		    struct cl_peer *);
void		 cl_waiter_doom(struct cluster *, struct cl_waiter *);
/* For every queue whose name is free and whose head is one of ours,
 * try to hand the name to it. */
void		 cl_queues_kick(struct cluster *);
void		 cl_queues_free(struct cluster *);
/* Free the queues left without places. */
void		 cl_queues_gc(struct cluster *);
/* A read of the whole prefix ended: places it did not see are gone. */
void		 cl_queues_sync_done(struct cluster *);

#endif /* CLUSTER_IMPL_H */
