/*
 * cluster.h: this daemon as one node of a cluster on etcd v3 (issue 14).
 *
 * The node holds one lease (its lifeline in the cluster), keeps it alive,
 * and keeps a cache of every cluster name and node fed by one watch on the
 * cluster prefix, so that lookups cost a local hash lookup.  Writes
 * (register, unregister, the deletes of a closed connection's names) are
 * etcd transactions; their answers come back through cluster_ops.  The
 * cache changes only on what etcd confirmed: a transaction's success or a
 * watch event.
 *
 * Local connections are opaque peers (the daemon's struct conn), given by
 * pointer with their connection id.  No msgpack here: the daemon encodes
 * entries from struct cl_entry (the protocol layer is the only place that
 * touches msgpack); values are stored and returned as opaque bytes.
 *
 * etcd layout under the prefix P (proto/PROTOCOL.md, "Cluster"):
 *   P nodes/NODE	the node, under its lease: since, address
 *   P names/NAME	a cluster name, under its node's lease: the entry
 *   P why/NODE		why the node's last deletes happened (a reason)
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "procreg-protocol.h"

struct event_base;
struct cluster;
struct cl_peer;
struct cl_monitor;

enum cl_state {
	CL_JOINING,	/* no lease yet, or no cache yet */
	CL_UP,		/* lease alive, cache fed by the watch */
	CL_LOST		/* TTL passed without a keepalive: rejoining */
};

/* A cluster name as the cache holds it: the name, then the value. */
struct cl_entry {
	LIST_ENTRY(cl_entry)		 owner_link;	/* its local owner's */
	TAILQ_ENTRY(cl_entry)		 doom_link;	/* to delete */
	LIST_HEAD(, cl_monitor)		 monitors;
	struct cl_node			*node;
	struct cl_peer			*owner;	/* local owner; NULL: none */
	uint64_t			 conn;
	int64_t				 pid;
	uint64_t			 since_ms;
	int64_t				 gen;	/* etcd create revision */
	uint64_t			 epoch;	/* of the sync that saw it */
	uint32_t			 uid;
	uint32_t			 gid;
	uint32_t			 value_len;
	uint8_t				 name_len;
	bool				 doomed;	/* to delete */
	bool				 unregistering;	/* its owner asked */
	char				 data[];
};

static inline const char *
cl_entry_value(const struct cl_entry *e)
{
	return e->data + e->name_len;
}

/* A cluster name's entry as one etcd key holds it (the cache's, or an
 * event's), for encoding; the bytes belong to whoever lent them. */
struct cl_view {
	const char	*name;
	size_t		 name_len;
	const char	*node;
	size_t		 node_len;
	uint64_t	 conn;
	int64_t		 pid;
	uint32_t	 uid;
	uint32_t	 gid;
	uint64_t	 since_ms;
	int64_t		 gen;
	const char	*value;		/* msgpack; value_len 0: nil */
	uint32_t	 value_len;
};

/* What a watch event did to a cluster name (cluster_ops.changed). */
enum cl_change {
	CL_REGISTERED,
	CL_UPDATED,
	CL_UNREGISTERED
};

/* A node as the cache holds it. */
struct cl_node {
	LIST_ENTRY(cl_node)	 link;
	uint64_t		 since_ms;
	int64_t			 lease;
	uint32_t		 nnames;	/* entries and waiters naming it */
	bool			 alive;		/* its nodes/ key exists */
	uint8_t			 name_len;
	char			 name[64];
	char			 address[128];
};

/* Who the entry's owner is, for the daemon's own checks. */
struct cl_owner {
	void		*peer;
	uint64_t	 conn;
	int64_t		 pid;
	uint32_t	 uid;
	uint32_t	 gid;
};

/*
 * What the cluster asks of the daemon.  All may be called from any etcd
 * answer or timer, never from inside a cluster_* call the daemon made
 * (those answer through their return value), so the daemon may use its
 * own buffers freely.
 *   reply: the deferred answer to request msgid of peer: err 0 and entry
 *	(register, a consistent whereis; NULL: nil) or, with is_bool, true,
 *	or with queued > 0 {"queued": queued}; or err (a pr_err) with why.
 *   down: a monitor peer holds fired.
 *   lost: peer no longer owns the name.
 *   registered: a cluster name appeared (or changed hands) in the cache.
 *   acquired: peer, first in the name's queue, now owns it.
 *   log: a line for the daemon's log (prio as syslog's).
 *   fatal: the node cannot run (its name is taken); the daemon exits.
 *   left: cluster_leave's revoke was answered.
 *   changed: what the watch reported of a name, in revision order (the
 *	cluster's event stream; why only for CL_UNREGISTERED).
 *   synced: the cache was read whole at rev: what happened before it
 *	is not in the stream; again: not the first read (a gap: the
 *	stream's subscribers cannot be told what they missed).
 */
struct cluster_ops {
	void	(*reply)(void *arg, void *peer, uint32_t msgid, int err,
		    const char *why, const struct cl_entry *, bool is_bool,
		    uint64_t queued);
	void	(*down)(void *arg, void *peer, uint64_t ref, const char *name,
		    size_t len, enum pr_down_reason);
	void	(*lost)(void *arg, void *peer, const char *name, size_t len,
		    enum pr_down_reason);
	void	(*registered)(void *arg, const struct cl_entry *);
	void	(*acquired)(void *arg, void *peer, const struct cl_entry *);
	void	(*log)(void *arg, int prio, const char *msg);
	void	(*fatal)(void *arg, const char *msg);
	void	(*left)(void *arg);
	void	(*changed)(void *arg, int64_t rev, enum cl_change,
		    const struct cl_view *, enum pr_down_reason why);
	void	(*synced)(void *arg, int64_t rev, bool again);
};

struct cluster_config {
	const char	*etcd;		/* endpoints */
	const char	*node;
	const char	*prefix;	/* ends in '/' */
	const char	*address;	/* advertised; "" until part 2 */
	unsigned	 lease_ttl;	/* s */
	unsigned	 timeout_ms;	/* of every etcd request */
	const char	*ca_file, *cert_file, *key_file;
	const uint8_t	*hash_key;	/* 16 bytes, for the name index */
	/* Is this exactly one msgpack object the daemon may send on?  A
	 * value that is not is ignored, as a key not ours. */
	bool		(*value_ok)(const void *, size_t);
	/* The name index's hash (NULL: SipHash with hash_key): the
	 * daemon's own, so that a request's name is hashed once for both
	 * scopes. */
	uint64_t	(*hash)(const void *arg, const char *, size_t);
	const void	*hash_arg;
};

struct cluster_stats {
	enum cl_state	 state;
	uint64_t	 names;
	uint64_t	 nodes;
	int64_t		 revision;
	bool		 stale;
	char		 etcd[160];
};

/* Start joining (asynchronously): 0, or -1 with err set. */
int	 cluster_new(struct cluster **, struct event_base *,
	    const struct cluster_config *, const struct cluster_ops *,
	    void *arg, char *err, size_t errlen);
/* Free everything (no callback after this).  NULL-safe. */
void	 cluster_free(struct cluster *);
/*
 * The daemon is stopping: revoke the lease (asynchronously: its names go
 * at once, and every node sees nodedown) and ask for nothing more.  A
 * hand-over to a new process (issue 16) must not call this.
 */
void	 cluster_leave(struct cluster *);
/* Has the revoke been answered (or failed)?  ops->left says when. */
bool	 cluster_left(const struct cluster *);
enum cl_state cluster_state(const struct cluster *);
/* The newest etcd revision the cache reflects. */
int64_t	 cluster_revision(const struct cluster *);
const char *cluster_node(const struct cluster *);
void	 cluster_stats(const struct cluster *, struct cluster_stats *);
/* Is the cache possibly behind etcd (the watch is not running)? */
bool	 cluster_stale(const struct cluster *);

void	 cluster_entry_view(const struct cl_entry *, struct cl_view *);

/* The cached entry of a cluster name, or NULL. */
const struct cl_entry *cluster_lookup(const struct cluster *,
	    const char *name, size_t len);
/* Entries with the prefix, after `after` (NULL: from the first), in name
 * order, at most max; the count.  O(names): for list, not hot paths. */
size_t	 cluster_list(const struct cluster *, const char *prefix,
	    size_t plen, const char *after, size_t alen,
	    const struct cl_entry **out, size_t max);
/* The live nodes in name order, at most max; the count. */
size_t	 cluster_nodes(const struct cluster *, const struct cl_node **out,
	    size_t max);
/* The local connection that owns the entry, or NULL (another node's,
 * or its owner closed). */
void	*cluster_entry_peer(const struct cl_entry *);
/* Cluster names the peer owns. */
uint32_t cluster_names_of(const struct cluster *, const void *peer);

/*
 * Requests.  Each returns 0 when the answer will come through ops->reply
 * (exactly once, unless the peer goes first: then never), or a pr_err
 * with why filled in (answered now, nothing pending).
 */
int	 cluster_register(struct cluster *, const struct cl_owner *,
	    uint32_t msgid, const char *name, size_t len, const void *value,
	    size_t vlen, bool queue, char *why, size_t whylen);
int	 cluster_unregister(struct cluster *, void *peer, uint32_t msgid,
	    const char *name, size_t len, int64_t gen, char *why,
	    size_t whylen);
/* Replace the value of a cluster name the peer owns (gen 0: any). */
int	 cluster_update(struct cluster *, void *peer, uint32_t msgid,
	    const char *name, size_t len, const void *value, size_t vlen,
	    int64_t gen, char *why, size_t whylen);
/* Remove a cluster name whoever owns it (the caller checked the
 * policy); its owner is told lost, its monitors fire evicted. */
int	 cluster_evict(struct cluster *, void *peer, uint32_t msgid,
	    const char *name, size_t len, char *why, size_t whylen);
/* A read of the name from etcd, not the cache. */
int	 cluster_read(struct cluster *, void *peer, uint32_t msgid,
	    const char *name, size_t len, char *why, size_t whylen);

/* The places in a cluster name's queue, first in line first (at most
 * max); the count.  A place's node and connection id. */
struct cl_waiter;
size_t	 cluster_queue(const struct cluster *, const char *name, size_t len,
	    const struct cl_waiter **out, size_t max);
const char *cluster_waiter_node(const struct cl_waiter *, uint64_t *conn);

/* Monitors: 0, or -ENOENT (no such cluster name), -ENOMEM. */
int	 cluster_monitor(struct cluster *, void *peer, uint64_t conn,
	    uint64_t ref, const char *name, size_t len);
bool	 cluster_demonitor(struct cluster *, void *peer, uint64_t ref);
uint32_t cluster_monitors_of(const struct cluster *, const void *peer);

/* The peer closed: its names are deleted from etcd (batched), its
 * monitors and pending requests dropped. */
void	 cluster_peer_gone(struct cluster *, void *peer);

#endif /* CLUSTER_H */
