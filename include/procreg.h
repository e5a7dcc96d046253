/*
 * procreg.h: libprocreg, the C client library of the procreg process
 * registry.  Build with `pkg-config --cflags --libs procreg`.
 *
 * One procreg_t is one connection to procregd: the lifeline of the names
 * it registers.  Calls are synchronous: each sends one request and waits
 * for its reply.  Notifications that arrive meanwhile (messages sent to
 * the connection's names, calls to it, publishes to its groups, downs of
 * its monitors) are queued, never lost, and handed out by
 * procreg_next_event() or, after procreg_process(), to the callbacks set
 * with procreg_set_callbacks().
 *
 * Status convention of every call returning int: PROCREG_OK (0) on
 * success; a positive enum procreg_status for a "no" from the daemon (the
 * protocol's error codes, same numbers as the wire table); a negative one
 * for a local failure (cannot connect, connection lost, timeout, ...).
 * procreg_errmsg() then tells more; for PROCREG_E_OTHER (an error code
 * the library does not know, e.g. one a callee chose) it is "code:
 * message".  Nothing in the library aborts or exits the process, and
 * there is no global state.
 *
 * The protocol-2 calls (below "Protocol 2") do not check hello's protocol
 * first: a protocol-1 daemon answers PROCREG_E_UNKNOWN_METHOD (or
 * PROCREG_E_BAD_REQUEST for a connection target), and procreg_errmsg()
 * then says that the daemon speaks protocol 1.  The protocol-3 calls and
 * options (below "Protocol 3": cluster scope, whereis and list options,
 * nodes) do the same with a protocol-2 daemon, which answers
 * PROCREG_E_UNKNOWN_METHOD or PROCREG_E_BAD_REQUEST (it refuses options
 * it does not know: a cluster name is never registered as a local one by
 * mistake).  procreg_hello() tells the protocol for those who want to
 * know before.  Everything else works unchanged with a protocol-2 daemon.
 *
 * Threads: a procreg_t must be used by one thread at a time; separate
 * connections are independent, so one connection per thread is safe.
 *
 * With auto_reconnect, a call that finds the connection lost before any
 * of its request was sent reconnects (re-registering, re-joining and
 * re-monitoring) and goes on; one whose request may have reached the old
 * daemon returns PROCREG_E_CLOSED, and the next call reconnects.  What a
 * reconnect does to queued names and subscriptions is told at
 * procreg_register_opts and procreg_subscribe.
 *
 * ABI and ownership policy (soname libprocreg.so.1):
 *
 * - Structs the caller allocates and the library reads or fills
 *   (procreg_options, procreg_callbacks, procreg_hello, procreg_stats,
 *   procreg_subscribe_opts, procreg_subscription, procreg_whereis_opts,
 *   procreg_list_opts) travel with their size.  The names below are macros over *_sized entry points that
 *   pass sizeof the struct as the caller's header knows it, so source
 *   compiles unchanged.  The library fills or reads only what that size
 *   covers: a field is appended at the end of a struct, never inserted,
 *   and starts at or past the struct's previous size (explicit padding
 *   first if it would fit in the tail padding, which an older caller
 *   passes uninitialised); an older caller simply does not see it.  A
 *   newer caller's bytes beyond what this library knows must be zero in
 *   an input struct
 *   (else PROCREG_E_INVAL: a feature this library lacks) and are zeroed
 *   in an output one.  The plain-named functions are still exported for
 *   bindings and function pointers; they use the sizes of this soname's
 *   first release.
 * - Structs the library allocates (procreg_entry, procreg_member,
 *   procreg_event, procreg_node, procreg_place) may grow at their end without a size:
 *   the caller only reads them (through pointers: arrays of them are
 *   arrays of pointers), and frees them with the library's function.
 * - Everything the library allocates for the caller is released by a
 *   procreg_*_free named for what it frees: procreg_entry_free,
 *   procreg_entries_free, procreg_member_free, procreg_members_free,
 *   procreg_strv_free, procreg_event_free, procreg_subscription_free,
 *   procreg_nodes_free, procreg_places_free,
 *   procreg_bytes_free (procreg_call's result) and procreg_conns_free
 *   (procreg_publish's busy ids, procreg_queue's ids).  The last two are
 *   plain malloc'd memory, and free() stays valid for them.
 * - New options go into a sized options struct, not into more
 *   _str/_int/_conn/_gen/_opts variants; no entry point is removed
 *   within a soname.  A change that breaks any of this bumps the soname.
 */
#ifndef PROCREG_H
#define PROCREG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PROCREG_API	__attribute__((visibility("default")))
#else
#define PROCREG_API
#endif

enum procreg_status {
	PROCREG_OK = 0,
	/* The daemon's answers (the protocol's error codes). */
	PROCREG_E_BAD_REQUEST = 1,
	PROCREG_E_UNKNOWN_METHOD = 2,
	PROCREG_E_TAKEN = 3,
	PROCREG_E_NOT_FOUND = 4,
	PROCREG_E_NOT_OWNER = 5,
	PROCREG_E_BUSY = 6,
	PROCREG_E_LIMIT = 7,
	PROCREG_E_TOO_LARGE = 8,
	PROCREG_E_FORBIDDEN = 9,	/* the daemon's access policy said no */
	PROCREG_E_CALL_TIMEOUT = 10,	/* the daemon's "timeout": call: the
					   callee did not reply; await: the
					   name did not come */
	PROCREG_E_DOWN = 11,		/* call: the callee went away */
	PROCREG_E_STALE = 12,		/* a name's entry has another gen */
	PROCREG_E_UNAVAILABLE = 13,	/* protocol 3: the cluster is not
					   there: etcd could not be reached
					   in time, this node has no lease,
					   or the daemon runs without --etcd */
	PROCREG_E_OTHER = 99,		/* an error code this library predates,
					   or a callee's own (procreg_call) */
	/* Local failures. */
	PROCREG_E_CONNECT = -1,		/* cannot reach the daemon */
	PROCREG_E_CLOSED = -2,		/* the connection was lost */
	PROCREG_E_TIMEOUT = -3,		/* no answer in time */
	PROCREG_E_PROTOCOL = -4,	/* the daemon sent something unexpected */
	PROCREG_E_NOMEM = -5,
	PROCREG_E_INVAL = -6		/* a bad argument (e.g. a NULL name) */
};

/*
 * Protocol 3 (cluster mode): where a name lives.  A local name is this
 * daemon's own (as in protocols 1 and 2); a cluster name is held in the
 * cluster's etcd, unique across every node of the cluster, and owned by a
 * connection to one of its nodes.
 */
enum procreg_scope {
	PROCREG_SCOPE_DEFAULT = 0,	/* the call's own default: whereis
					   looks at both (the local name
					   first), list is local */
	PROCREG_SCOPE_LOCAL = 1,	/* this daemon's local names */
	PROCREG_SCOPE_CLUSTER = 2,	/* the cluster's names */
	PROCREG_SCOPE_ALL = 3		/* both: whereis "any", list "all" */
};

/* A registration, as whereis/register/list return it. */
struct procreg_entry {
	char		*name;		/* NUL-terminated */
	uint64_t	 conn;		/* the owner's connection id */
	int64_t		 pid;
	int64_t		 uid;
	int64_t		 gid;
	void		*value;		/* msgpack bytes (nil: c0) */
	size_t		 value_len;
	uint64_t	 since_ms;	/* Unix epoch milliseconds */
	uint64_t	 gen;		/* the registration's generation (of
					   a cluster name: etcd's create
					   revision of its key) */
	/* Protocol 3.  An entry of a protocol-2 daemon is LOCAL. */
	enum procreg_scope scope;	/* PROCREG_SCOPE_LOCAL or _CLUSTER */
	char		*node;		/* CLUSTER: the node the owner's
					   connection is to (conn, pid, uid
					   and gid are that node's); LOCAL:
					   NULL */
	bool		 stale;		/* CLUSTER: answered from the
					   daemon's cache, which may be
					   behind etcd (see
					   procreg_whereis_opts) */
};

/* A group membership, as join/members return it. */
struct procreg_member {
	char		*group;		/* NUL-terminated */
	uint64_t	 conn;		/* the member's connection id */
	int64_t		 pid;
	int64_t		 uid;
	int64_t		 gid;
	void		*value;		/* msgpack bytes (nil: c0) */
	size_t		 value_len;
	uint64_t	 since_ms;
	uint64_t	 gen;
};

enum procreg_event_kind {
	PROCREG_EV_MESSAGE = 1,		/* a send to one of our names */
	PROCREG_EV_DOWN,		/* one of our monitors fired */
	PROCREG_EV_ERROR,		/* the daemon's error notification */
	PROCREG_EV_CALL,		/* a call to one of our names or to us:
					   answer with procreg_reply */
	PROCREG_EV_PUBLISH,		/* a publish to a group we joined */
	/* Protocol 2, part 2. */
	PROCREG_EV_ACQUIRED,		/* a name we queued for is ours now */
	PROCREG_EV_LOST,		/* a name we owned is no longer ours */
	PROCREG_EV_SUBSCRIPTION,	/* a change under a subscription */
	PROCREG_EV_OVERFLOW,		/* a subscription ended; it can resume
					   with since = seq */
	PROCREG_EV_RESTARTED		/* a subscription ended with the
					   daemon (auto_reconnect): it cannot
					   resume; subscribe afresh */
};

/* What a PROCREG_EV_SUBSCRIPTION reports (the protocol's event kinds). */
enum procreg_change {
	PROCREG_CH_UNKNOWN = 0,		/* a kind of a later protocol: see
					   change_name and payload */
	PROCREG_CH_REGISTERED,		/* entry: the new registration */
	PROCREG_CH_UNREGISTERED,	/* name and reason (as in a down) */
	PROCREG_CH_UPDATED,		/* entry, with its new value */
	PROCREG_CH_HANDOVER,		/* entry: the new owner's */
	PROCREG_CH_JOINED,		/* member (subscribed with groups) */
	PROCREG_CH_LEFT			/* member */
};

struct procreg_event {
	enum procreg_event_kind	 kind;
	char			*name;		/* MESSAGE, DOWN, CALL: the name;
						   NULL when the target was a
						   conn id (then target_conn);
						   PUBLISH: the group */
	uint64_t		 target_conn;	/* the conn id when name is
						   NULL; else 0 */
	uint64_t		 sender;	/* MESSAGE, CALL, PUBLISH:
						   sender's conn */
	uint64_t		 call_id;	/* CALL: for procreg_reply */
	void			*payload;	/* MESSAGE, CALL, PUBLISH:
						   msgpack bytes */
	size_t			 payload_len;
	uint64_t		 ref;		/* DOWN: the monitor's ref */
	char			*reason;	/* DOWN: "unregistered",
						   "disconnected", "noproc",
						   "evicted", "replaced",
						   protocol 3's "nodedown"
						   (a cluster name's owner
						   was on a node that lost
						   its lease);
						   ERROR: the code; LOST:
						   "replaced", "evicted"
						   (see procreg_evict),
						   "disconnected" (see
						   procreg_register_opts)
						   or "nodedown" (see
						   PROCREG_CLUSTER);
						   SUBSCRIPTION unregistered:
						   the down reason */
	char			*message;	/* ERROR: the daemon's text */
	/*
	 * Protocol 2, part 2.  ACQUIRED: name and entry (its new gen).
	 * LOST: name and reason.  SUBSCRIPTION: sub, seq, change and
	 * change_name (the kind as the daemon spelt it), payload (the
	 * event's payload as msgpack bytes, whatever its kind), name (the
	 * name, or the group for joined and left; NULL for an unknown
	 * kind), and entry or member or reason as enum procreg_change
	 * says.  OVERFLOW: sub, and seq: every event up to it was handed
	 * out (procreg_subscribe with since = seq resumes).  RESTARTED:
	 * sub, and seq: the last one handed out, which the new daemon
	 * does not know.
	 */
	uint64_t		 sub;
	uint64_t		 seq;
	enum procreg_change	 change;
	char			*change_name;
	struct procreg_entry	*entry;
	struct procreg_member	*member;
};

struct procreg_hello {
	char		 version[32];	/* the daemon's software version */
	uint64_t	 protocol;
	uint64_t	 conn;		/* this connection's id */
	char		 boot[33];	/* changes when the daemon restarts */
	uint64_t	 max_message;
	/* Protocol 3: the daemon's node name when it runs in cluster mode
	 * (--etcd; 1 to 63 bytes), else "". */
	char		 node[64];
};

struct procreg_stats {
	uint64_t	connections, names, monitors, requests, messages,
			downs, notifications_ignored, connections_total,
			uptime_ms, groups, members, calls, replies_late,
			awaits, subscriptions, seq;
	uint64_t	draining;	/* closed connections still sending
					   their last replies */
	/*
	 * Protocol 3: stats' "cluster" map, when the daemon runs with
	 * --etcd (else cluster_state is "" and the rest zero).  Strings
	 * longer than their array are cut.
	 */
	char		cluster_node[64];	/* this daemon's node name */
	char		cluster_state[16];	/* "joining", "up", "lost" */
	char		cluster_etcd[256];	/* the etcd endpoints */
	uint64_t	cluster_lease_ttl,	/* seconds */
			cluster_names,		/* cluster names known */
			cluster_nodes,		/* nodes known */
			cluster_revision;	/* etcd revision seen */
	/* New counters are appended here (see the policy at the top). */
};

struct procreg;
typedef struct procreg procreg_t;

struct procreg_options {
	/* Socket path; NULL: the default path, resolved as procregd does. */
	const char	*path;
	/* Label for the daemon's logs (sent with hello), or NULL. */
	const char	*label;
	/* Milliseconds a call may wait for its reply; 0: 10000. */
	int		 timeout_ms;
	/*
	 * Reconnect when the daemon goes away: with backoff from 50 ms to
	 * reconnect_max_ms (0: 2000), then register the names, join the
	 * groups and set the monitors again.  A monitor whose name did not
	 * come back fires a down with reason "noproc", and so does every
	 * monitor on a connection id (a new daemon's ids are not the old
	 * one's); a name another connection took meanwhile (or a group the
	 * new daemon refuses) is reported to on_reconnect as lost.  Calls
	 * pending on either side are not retried: they ended with the old
	 * daemon.
	 */
	bool		 auto_reconnect;
	int		 reconnect_max_ms;
};

struct procreg_callbacks {
	/* A message, call, publish or down (or error notification).  The
	 * event is freed after the callback returns; a call may be replied
	 * to from the callback or later, by its call_id. */
	void	(*on_event)(procreg_t *, const struct procreg_event *,
		    void *arg);
	/*
	 * After an automatic reconnect: the new socket (procreg_fd changed)
	 * and the names that could not be registered again (and the groups
	 * that could not be joined again).
	 */
	void	(*on_reconnect)(procreg_t *, int fd, const char *const *lost,
		    size_t nlost, void *arg);
};

/* The default socket path into buf (as procregd resolves it); 0 or -1. */
PROCREG_API int	procreg_default_path(char *buf, size_t size);

/*
 * Connect.  opts may be NULL (defaults).  On failure *out is still set to
 * a handle (for procreg_errmsg) unless memory ran out; free it either way.
 */
PROCREG_API int	procreg_connect_sized(procreg_t **out,
		    const struct procreg_options *opts, size_t opts_size);
PROCREG_API int	(procreg_connect)(procreg_t **out,
		    const struct procreg_options *opts);
#define procreg_connect(out, opts)					\
	procreg_connect_sized((out), (opts), sizeof(struct procreg_options))
/* Close the connection (its names vanish) and free everything. */
PROCREG_API void procreg_free(procreg_t *);

/* The last failure's message (never NULL). */
PROCREG_API const char	*procreg_errmsg(const procreg_t *);
/* A short description of a status. */
PROCREG_API const char	*procreg_strstatus(int status);
/* The protocol's error code string of a positive status, or NULL. */
PROCREG_API const char	*procreg_status_code(int status);

/* The socket, for poll/epoll/libevent; -1 while disconnected. */
PROCREG_API int	procreg_fd(const procreg_t *);
/* This connection's id, as the daemon numbers it. */
PROCREG_API uint64_t procreg_conn_id(const procreg_t *);

PROCREG_API int	procreg_hello_sized(procreg_t *, struct procreg_hello *out,
		    size_t size);
PROCREG_API int	(procreg_hello)(procreg_t *, struct procreg_hello *out);
#define procreg_hello(p, out)						\
	procreg_hello_sized((p), (out), sizeof(struct procreg_hello))

/*
 * Register name with an optional value given as msgpack bytes (value NULL:
 * no value).  *out (may be NULL) receives the new entry, or on TAKEN the
 * current owner's conn id is in procreg_errmsg.
 */
PROCREG_API int	procreg_register(procreg_t *, const char *name,
		    const void *value, size_t value_len,
		    struct procreg_entry **out);
/* Register with a str value or an integer value. */
PROCREG_API int	procreg_register_str(procreg_t *, const char *name,
		    const char *value, struct procreg_entry **out);
PROCREG_API int	procreg_register_int(procreg_t *, const char *name,
		    int64_t value, struct procreg_entry **out);
PROCREG_API int	procreg_unregister(procreg_t *, const char *name);
/* *out is the entry, or NULL when the name is not registered (PROCREG_OK
 * either way). */
PROCREG_API int	procreg_whereis(procreg_t *, const char *name,
		    struct procreg_entry **out);
PROCREG_API void procreg_entry_free(struct procreg_entry *);

/* Send payload (msgpack bytes) to the owner of name. */
PROCREG_API int	procreg_send(procreg_t *, const char *name,
		    const void *payload, size_t len);
PROCREG_API int	procreg_send_str(procreg_t *, const char *name,
		    const char *text);

/* Monitor name: *ref identifies the down that will come (a noproc down
 * is queued at once when name is not registered). */
PROCREG_API int	procreg_monitor(procreg_t *, const char *name, uint64_t *ref);
/* *was_active (may be NULL): the monitor had not fired yet. */
PROCREG_API int	procreg_demonitor(procreg_t *, uint64_t ref,
		    bool *was_active);

/*
 * Every entry whose name starts with prefix (NULL or "": all), in name
 * order, paging through the daemon's limit.  Free with
 * procreg_entries_free.
 */
PROCREG_API int	procreg_list(procreg_t *, const char *prefix,
		    struct procreg_entry ***entries, size_t *count);
PROCREG_API void procreg_entries_free(struct procreg_entry **, size_t count);

PROCREG_API int	procreg_stats_sized(procreg_t *, struct procreg_stats *out,
		    size_t size);
PROCREG_API int	(procreg_stats)(procreg_t *, struct procreg_stats *out);
#define procreg_stats(p, out)						\
	procreg_stats_sized((p), (out), sizeof(struct procreg_stats))

/* Protocol 2. */

/* send and monitor addressed to a connection id instead of a name. */
PROCREG_API int	procreg_send_conn(procreg_t *, uint64_t conn,
		    const void *payload, size_t len);
PROCREG_API int	procreg_monitor_conn(procreg_t *, uint64_t conn,
		    uint64_t *ref);

/*
 * Call the owner of name (or connection conn) with payload and wait up to
 * timeout_ms (0: the daemon's default, 5000; at most 86400000) for its
 * reply.  *result (msgpack bytes, free with procreg_bytes_free; result
 * may be NULL) on PROCREG_OK.  PROCREG_E_NOT_FOUND, PROCREG_E_BUSY, PROCREG_E_LIMIT,
 * PROCREG_E_CALL_TIMEOUT (the daemon's verdict), PROCREG_E_DOWN (the
 * callee went away, or the name changed hands); an error code the callee
 * chose gives PROCREG_E_OTHER with "code: message" in procreg_errmsg,
 * except the codes this library knows (a callee answering "not_found"
 * looks like the daemon's not_found).  The daemon ends every call, so
 * this waits timeout_ms plus the handle's timeout_ms before giving up
 * with PROCREG_E_TIMEOUT.  Notifications arriving meanwhile (calls to us
 * included) are queued: a handle that calls itself cannot answer and
 * gets PROCREG_E_CALL_TIMEOUT.
 */
PROCREG_API int	procreg_call(procreg_t *, const char *name,
		    const void *payload, size_t len, int timeout_ms,
		    void **result, size_t *result_len);
PROCREG_API int	procreg_call_conn(procreg_t *, uint64_t conn,
		    const void *payload, size_t len, int timeout_ms,
		    void **result, size_t *result_len);
/* Free procreg_call's result (free() does too); NULL is fine. */
PROCREG_API void procreg_bytes_free(void *);
/*
 * Answer a PROCREG_EV_CALL with result (msgpack bytes; NULL: nil), or
 * with an error: code of 1 to 64 bytes, message (NULL: "") for people.
 * The caller's procreg_call returns PROCREG_E_OTHER with "code: message"
 * (unless the code is one of the protocol's).  PROCREG_E_NOT_FOUND when
 * the call is no longer pending (timed out, its caller went away, or
 * answered already).  With auto_reconnect, call ids are the library's
 * (never reused), and a call received before a reconnect gets
 * PROCREG_E_NOT_FOUND without anything being sent to the new daemon.
 */
PROCREG_API int	procreg_reply(procreg_t *, uint64_t call_id,
		    const void *result, size_t len);
PROCREG_API int	procreg_reply_error(procreg_t *, uint64_t call_id,
		    const char *code, const char *message);

/*
 * Groups: join with an optional value (msgpack bytes, NULL: none); *out
 * (may be NULL) the member entry.  PROCREG_E_TAKEN when already a member.
 * Membership ends with leave (PROCREG_E_NOT_FOUND: not a member) or with
 * the connection.  members: every member, in join order (none: count 0).
 */
PROCREG_API int	procreg_join(procreg_t *, const char *group,
		    const void *value, size_t value_len,
		    struct procreg_member **out);
PROCREG_API int	procreg_leave(procreg_t *, const char *group);
PROCREG_API int	procreg_members(procreg_t *, const char *group,
		    struct procreg_member ***members, size_t *count);
PROCREG_API void procreg_member_free(struct procreg_member *);
PROCREG_API void procreg_members_free(struct procreg_member **,
		    size_t count);
/*
 * Publish payload to every member of group (not to ourselves when echo is
 * false).  *delivered (may be NULL): how many got it; *busy and *nbusy
 * (may be NULL): the conn ids of the members whose buffer was full
 * (free with procreg_conns_free), which did not get it.  A group without members is no
 * error: 0 delivered.
 */
PROCREG_API int	procreg_publish(procreg_t *, const char *group,
		    const void *payload, size_t len, bool echo,
		    uint64_t *delivered, uint64_t **busy, size_t *nbusy);
/* Free procreg_publish's busy ids or procreg_queue's ids (free() does
 * too); NULL is fine. */
PROCREG_API void procreg_conns_free(uint64_t *);

/* Change the value of a name we own (value NULL: nil); *out (may be NULL)
 * the entry, its since and gen kept.  PROCREG_E_NOT_FOUND,
 * PROCREG_E_NOT_OWNER. */
PROCREG_API int	procreg_update(procreg_t *, const char *name,
		    const void *value, size_t value_len,
		    struct procreg_entry **out);
/* Names and groups of a connection, sorted bytewise; free each vector
 * with procreg_strv_free (names or groups may be NULL: not wanted).
 * PROCREG_E_NOT_FOUND when no such connection is open. */
PROCREG_API int	procreg_keys(procreg_t *, uint64_t conn, char ***names,
		    size_t *nnames, char ***groups, size_t *ngroups);
PROCREG_API void procreg_strv_free(char **, size_t count);
/*
 * Register n names at once, all or none (values NULL, or values[i] NULL:
 * no value; value_lens[i] the length of values[i]).  On TAKEN
 * procreg_errmsg tells which (its position from 1, and its owner); a name
 * given twice is PROCREG_E_BAD_REQUEST.  *out (may be NULL): the n
 * entries, free with procreg_entries_free.
 */
PROCREG_API int	procreg_register_many(procreg_t *, size_t n,
		    const char *const *names, const void *const *values,
		    const size_t *value_lens, struct procreg_entry ***out);

/*
 * Administrators only: remove name, whoever holds it; its monitors fire
 * "evicted", and the next in its queue (if any) takes it over.  The
 * holder (protocol 2) gets PROCREG_EV_LOST with reason "evicted" before
 * anything else the eviction causes, and is not queued for the name:
 * with auto_reconnect its handle forgets the name, so that a reconnect
 * does not register it again.  A holder should stop acting as the
 * name's owner on that event.  PROCREG_E_FORBIDDEN for others,
 * PROCREG_E_NOT_FOUND.
 */
PROCREG_API int	procreg_evict(procreg_t *, const char *name);

/* Protocol 2, part 2: queued ownership, fencing, await, subscriptions. */

/* Flags of procreg_register_opts (PROTOCOL.md 4.21). */
#define PROCREG_QUEUE			0x1u	/* wait in line when taken */
#define PROCREG_ALLOW_REPLACEMENT	0x2u	/* a REPLACE may take it */
#define PROCREG_REPLACE			0x4u	/* take it from an owner
						   that allows it */
/*
 * Protocol 3: register a cluster name (the register option "scope":
 * "cluster") instead of a local one.  The scope of a registration is a
 * flag, not a field of an options struct: procreg_register_opts takes
 * flags, and a library older than the flag refuses it with
 * PROCREG_E_INVAL instead of registering a local name.  With QUEUE it
 * takes a place in the name's cluster-wide line; ALLOW_REPLACEMENT and
 * REPLACE are sent as asked, and a protocol-3 daemon answers
 * PROCREG_E_BAD_REQUEST (not in this protocol version).
 */
#define PROCREG_CLUSTER			0x8u

/*
 * Register name with flags (0: as procreg_register).  On PROCREG_OK
 * either the name is ours, *out (may be NULL) its entry and *queued (may
 * be NULL) 0; or, with PROCREG_QUEUE and the name taken, we wait in its
 * queue: *out is NULL and *queued our position (1: next in line).  A
 * PROCREG_EV_ACQUIRED comes when the name passes to us; with
 * PROCREG_ALLOW_REPLACEMENT a PROCREG_EV_LOST ("replaced") when another
 * connection takes it with PROCREG_REPLACE (with PROCREG_QUEUE too, we
 * are then first in its queue); a PROCREG_EV_LOST ("evicted") when an
 * administrator evicts it (with or without PROCREG_QUEUE, we are then
 * neither its owner nor in its queue).  PROCREG_E_TAKEN when the name is taken
 * and neither QUEUE nor REPLACE applies, or we wait for it already.
 * procreg_unregister gives up a place in the queue.
 *
 * auto_reconnect registers the name again with the same flags.  For a
 * name registered with PROCREG_QUEUE the application hears how that
 * went: PROCREG_EV_ACQUIRED (its new entry and gen) when the name is
 * ours on the new connection, and PROCREG_EV_LOST with reason
 * "disconnected" when we owned it and are now only queued (another
 * client got it first).  A name without QUEUE is as procreg_register's:
 * on_reconnect lists it when it could not be registered again.
 *
 * With PROCREG_CLUSTER (protocol 3) the name is the cluster's: unique
 * across every node, its entry's scope PROCREG_SCOPE_CLUSTER, its node
 * our daemon's and its gen etcd's create revision.  PROCREG_E_TAKEN when
 * any connection to any node holds it, or our daemon has a local name of
 * that name; PROCREG_E_UNAVAILABLE when the daemon runs without --etcd,
 * cannot reach etcd in time or has no lease; PROCREG_E_FORBIDDEN,
 * PROCREG_E_LIMIT, PROCREG_E_BAD_REQUEST as for a local name.  With
 * PROCREG_QUEUE a taken cluster name queues us in its line across the
 * nodes (see procreg_queue_places); it passes to us in a second step (a
 * PROCREG_EV_ACQUIRED about one etcd round trip after its owner let it
 * go, meanwhile whereis finds no owner).  When our daemon's node loses
 * its lease, the name (or our place in its line) is no longer ours:
 * PROCREG_EV_LOST with reason "nodedown" (its monitors fire "nodedown"),
 * and, as after "evicted", auto_reconnect forgets it.  auto_reconnect
 * registers a cluster name again as a cluster name; one the new daemon
 * refuses (taken, or unavailable while its node has no lease yet) goes
 * to on_reconnect as lost.
 */
PROCREG_API int	procreg_register_opts(procreg_t *, const char *name,
		    const void *value, size_t value_len, unsigned flags,
		    struct procreg_entry **out, uint32_t *queued);

/*
 * Fencing: act only while name's entry has generation gen, else
 * PROCREG_E_STALE (the name changed hands, or was registered again).
 * Otherwise as procreg_unregister, procreg_update and procreg_send.
 */
PROCREG_API int	procreg_unregister_gen(procreg_t *, const char *name,
		    uint64_t gen);
PROCREG_API int	procreg_update_gen(procreg_t *, const char *name,
		    const void *value, size_t value_len, uint64_t gen,
		    struct procreg_entry **out);
PROCREG_API int	procreg_send_gen(procreg_t *, const char *name,
		    const void *payload, size_t len, uint64_t gen);

/*
 * Wait until name is registered: *out its entry, at once when it is.
 * timeout_ms from 0 (only check) to 86400000; PROCREG_E_CALL_TIMEOUT
 * (the daemon's "timeout") when it passes with the name still not
 * registered.  Synchronous, like procreg_call: notifications arriving
 * meanwhile are queued, and our own wait is timeout_ms plus the handle's.
 */
PROCREG_API int	procreg_await(procreg_t *, const char *name, int timeout_ms,
		    struct procreg_entry **out);

/* The connection ids waiting for name, first in line first (none: NULL
 * and 0); free *conns with procreg_conns_free.  The line of a cluster
 * name (protocol 3) is of places on several nodes, which connection ids
 * alone do not name: PROCREG_E_INVAL then, and procreg_queue_places
 * tells them. */
PROCREG_API int	procreg_queue(procreg_t *, const char *name,
		    uint64_t **conns, size_t *n);

struct procreg_subscribe_opts {
	bool		 groups;	/* group memberships too */
	bool		 has_since;	/* resume after seq since */
	uint64_t	 since;
	/* Protocol 3: DEFAULT or LOCAL, this daemon's names; CLUSTER, the
	 * cluster's (see procreg_subscribe); ALL is PROCREG_E_INVAL. */
	enum procreg_scope scope;
};

/* What procreg_subscribe returns; free its content with
 * procreg_subscription_free. */
struct procreg_subscription {
	uint64_t		  sub;		/* the subscription's id */
	uint64_t		  seq;		/* the last event so far */
	/*
	 * Without has_since, or with it and gap: the snapshot, and events
	 * follow from seq + 1.  With has_since and !gap: no snapshot
	 * (has_snapshot false): the events after since are handed out
	 * first, then the live ones.
	 */
	bool			  has_snapshot;
	bool			  gap;		/* since was too old */
	struct procreg_entry	**entries;	/* the names, in name order */
	size_t			  nentries;
	struct procreg_member	**members;	/* with groups: the members,
						   groups in name order */
	size_t			  nmembers;
};

/*
 * Subscribe to the changes of the names that start with prefix (NULL or
 * "": all), and with opts->groups of the groups that do (opts NULL:
 * defaults).  Each change is a PROCREG_EV_SUBSCRIPTION, in seq order;
 * when we fall behind, the daemon ends the subscription with a
 * PROCREG_EV_OVERFLOW: subscribe again with since = its seq once the
 * events queued before it are handled.  A since later than the daemon's
 * last event is PROCREG_E_BAD_REQUEST; PROCREG_E_TOO_LARGE when the
 * snapshot does not fit in max_message; PROCREG_E_LIMIT.
 *
 * With auto_reconnect, subscription ids are the handle's own (they never
 * come back after a reconnect), and a reconnect ends every subscription:
 * when the daemon is the same one (hello's boot), with a
 * PROCREG_EV_OVERFLOW whose seq is the last event handed out, so that
 * since = seq resumes without a gap; when the daemon restarted, with a
 * PROCREG_EV_RESTARTED: seq numbers start again with each daemon, so
 * nothing can resume.  Forget what the subscription showed (the old
 * daemon's names are gone, with no event) and subscribe without since.
 *
 * Protocol 3: with opts->scope PROCREG_SCOPE_CLUSTER the subscription
 * follows the cluster's names under prefix as the node's watch on etcd
 * reports them: registered (a cluster entry), updated, unregistered (a
 * queue's hand-over is an unregistered then a registered), seq being the
 * etcd revision of the change (the events of one revision share it), and
 * the snapshot the node's cache (a change this node made may show in the
 * snapshot and once more as an event: same name and gen, already seen).
 * With groups it is PROCREG_E_BAD_REQUEST; without --etcd
 * PROCREG_E_UNAVAILABLE.  Its seqs are the cluster's, not the daemon's:
 * a reconnect ends it with PROCREG_EV_OVERFLOW even after a restart, and
 * since = seq resumes it (with a gap and a fresh snapshot when the node
 * no longer has those revisions).
 */
PROCREG_API int	procreg_subscribe_sized(procreg_t *, const char *prefix,
		    const struct procreg_subscribe_opts *opts,
		    size_t opts_size, struct procreg_subscription *out,
		    size_t out_size);
PROCREG_API int	(procreg_subscribe)(procreg_t *, const char *prefix,
		    const struct procreg_subscribe_opts *opts,
		    struct procreg_subscription *out);
#define procreg_subscribe(p, prefix, opts, out)				\
	procreg_subscribe_sized((p), (prefix), (opts),			\
	    sizeof(struct procreg_subscribe_opts), (out),		\
	    sizeof(struct procreg_subscription))
PROCREG_API void procreg_subscription_free_sized(
		    struct procreg_subscription *, size_t size);
PROCREG_API void (procreg_subscription_free)(struct procreg_subscription *);
#define procreg_subscription_free(s)					\
	procreg_subscription_free_sized((s),				\
	    sizeof(struct procreg_subscription))
/*
 * End a subscription: *was_active (may be NULL) false when it had ended
 * already (overflow) or never existed.  Its events still queued in the
 * handle are dropped: none is handed out after this returns.
 */
PROCREG_API int	procreg_unsubscribe(procreg_t *, uint64_t sub,
		    bool *was_active);

/* Protocol 3: cluster mode (PROCREG_CLUSTER above for registering). */

/* Options of procreg_whereis_opts (NULL: as procreg_whereis). */
struct procreg_whereis_opts {
	enum procreg_scope scope;	/* DEFAULT or ALL: the local name if
					   there is one, else the cluster's;
					   LOCAL or CLUSTER: only that one */
	bool		 consistent;	/* a cluster name is read from etcd
					   (one round trip), never stale;
					   false: from the daemon's cache,
					   which lags etcd by the watch's
					   delay (the entry then says
					   stale) */
};

/*
 * whereis with options: *out the entry (its scope says which), or NULL
 * when the name is not registered in that scope (PROCREG_OK either way).
 * Default options send the request procreg_whereis sends; so does LOCAL
 * to a daemon known to speak protocol 2 (all its names are local).
 * PROCREG_E_UNAVAILABLE for scope CLUSTER or consistent on a daemon
 * without --etcd, or when etcd does not answer a consistent read in time.
 * unregister, update, evict, send, call, monitor and await keep their
 * parameters: the daemon finds the local name first, else the cluster
 * name (send and call to a cluster name's owner on another node:
 * PROCREG_E_UNAVAILABLE in protocol 3, which has no links between nodes).
 */
PROCREG_API int	procreg_whereis_opts_sized(procreg_t *, const char *name,
		    const struct procreg_whereis_opts *opts, size_t opts_size,
		    struct procreg_entry **out);
PROCREG_API int	(procreg_whereis_opts)(procreg_t *, const char *name,
		    const struct procreg_whereis_opts *opts,
		    struct procreg_entry **out);
#define procreg_whereis_opts(p, name, opts, out)			\
	procreg_whereis_opts_sized((p), (name), (opts),			\
	    sizeof(struct procreg_whereis_opts), (out))

/* Options of procreg_list_opts (NULL: as procreg_list). */
struct procreg_list_opts {
	enum procreg_scope scope;	/* DEFAULT or LOCAL: this daemon's
					   local names; CLUSTER: the
					   cluster's; ALL: both, in name
					   order */
};

/*
 * list with options: every entry in the scope whose name starts with
 * prefix, paged as procreg_list.  LOCAL sends procreg_list's requests
 * (so it works with a protocol-2 daemon); CLUSTER and ALL
 * PROCREG_E_UNAVAILABLE without --etcd.
 */
PROCREG_API int	procreg_list_opts_sized(procreg_t *, const char *prefix,
		    const struct procreg_list_opts *opts, size_t opts_size,
		    struct procreg_entry ***entries, size_t *count);
PROCREG_API int	(procreg_list_opts)(procreg_t *, const char *prefix,
		    const struct procreg_list_opts *opts,
		    struct procreg_entry ***entries, size_t *count);
#define procreg_list_opts(p, prefix, opts, entries, count)		\
	procreg_list_opts_sized((p), (prefix), (opts),			\
	    sizeof(struct procreg_list_opts), (entries), (count))

/* A place in a name's line, as procreg_queue_places returns it. */
struct procreg_place {
	uint64_t	 conn;		/* the waiting connection's id */
	char		*node;		/* a cluster name's line: the node of
					   that connection; a local one: NULL */
};

/*
 * The places in name's line, first in line first (none: NULL and 0), an
 * array of *count pointers freed with procreg_places_free: a local name's
 * line has connection ids of our daemon, a cluster name's line
 * connections on any node.  Against a protocol-2 daemon as
 * procreg_queue.
 */
PROCREG_API int	procreg_queue_places(procreg_t *, const char *name,
		    struct procreg_place ***places, size_t *count);
PROCREG_API void procreg_places_free(struct procreg_place **,
		    size_t count);

/* A node of the cluster, as procreg_nodes returns it. */
struct procreg_node {
	char		*name;		/* NUL-terminated */
	uint64_t	 since_ms;	/* when it joined: Unix epoch ms */
	char		*address;	/* its peer address, as it published
					   it ("" when none) */
	bool		 self;		/* the node we are connected to */
};

/*
 * The nodes of the cluster (those holding a lease), in name order: *nodes
 * an array of *count pointers (none: NULL and 0), freed with
 * procreg_nodes_free.  PROCREG_E_UNAVAILABLE when the daemon runs
 * without --etcd or cannot reach etcd.
 */
PROCREG_API int	procreg_nodes(procreg_t *, struct procreg_node ***nodes,
		    size_t *count);
PROCREG_API void procreg_nodes_free(struct procreg_node **, size_t count);

/*
 * The next notification: a queued one at once, else wait up to
 * timeout_ms (0: do not wait, -1: for ever).  PROCREG_E_TIMEOUT when none
 * came.  Free the event with procreg_event_free.
 */
PROCREG_API int	procreg_next_event(procreg_t *, int timeout_ms,
		    struct procreg_event **out);
PROCREG_API void procreg_event_free(struct procreg_event *);

/* Callbacks for procreg_process; NULL removes them. */
PROCREG_API int	procreg_set_callbacks_sized(procreg_t *,
		    const struct procreg_callbacks *, size_t size, void *arg);
PROCREG_API void (procreg_set_callbacks)(procreg_t *,
		    const struct procreg_callbacks *, void *arg);
#define procreg_set_callbacks(p, cb, arg)				\
	((void)procreg_set_callbacks_sized((p), (cb),			\
	    sizeof(struct procreg_callbacks), (arg)))
/*
 * For event loops: read whatever is readable without blocking, then hand
 * every queued notification to the callbacks (events stay queued for
 * procreg_next_event when no on_event is set).  Call it when procreg_fd
 * is readable, and after synchronous calls: notifications read during a
 * call wait in the queue, where the socket no longer shows them.  While
 * procreg_fd is -1 (lost, auto_reconnect) call it from a timer: each call
 * makes one reconnect attempt when the backoff allows.
 */
PROCREG_API int	procreg_process(procreg_t *);
/* Notifications already received and waiting (no I/O). */
PROCREG_API size_t procreg_pending(procreg_t *);

/*
 * Small msgpack helpers for values and payloads: encode a str or an int
 * into buf (returns the length, or 0 when buf is too small), and format
 * any msgpack bytes as JSON text into buf (returns what snprintf would).
 */
PROCREG_API size_t procreg_pack_str(void *buf, size_t size, const char *s);
PROCREG_API size_t procreg_pack_int(void *buf, size_t size, int64_t v);
PROCREG_API int	procreg_format_json(char *buf, size_t size, const void *mp,
		    size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PROCREG_H */
