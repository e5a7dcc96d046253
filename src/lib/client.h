/*
 * client.h: libprocreg's private header: the handle (struct procreg), what
 * auto_reconnect remembers, and the functions the library's files share.
 * The library's files, by job: handle.c (connect, free, statuses), conn.c
 * (socket, framing, requests), decode.c (replies and notifications into
 * the caller's structs and events), event.c (the event queue, next_event,
 * process), reconnect.c (auto_reconnect's bookkeeping and restore),
 * api.c and api2.c (the protocol-1 and protocol-2 calls), json.c
 * (procreg_format_json).
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "htab.h"
#include "now.h"
#include "procreg-protocol.h"
#include "procreg.h"

#define DEFAULT_TIMEOUT_MS	10000
#define DEFAULT_RECONNECT_MAX	2000
#define RECONNECT_MIN		50
#define READ_SIZE		(64 * 1024)

/* A name held (or waited for), or a group joined, remembered to be
 * registered (joined) again. */
struct held_name {
	char	*name;		/* NULL once handed to on_reconnect */
	void	*value;		/* NULL: registered bare */
	size_t	 value_len;
	uint64_t hash;		/* of name, for the set's table */
	size_t	 idx;		/* in the set's vector */
	unsigned flags;		/* PROCREG_QUEUE, ... as registered */
	bool	 waiting;	/* in the name's queue, not its owner */
	bool	 gone;		/* lost during a restore: swept after it */
};

/*
 * Held names (or groups): a vector to walk in restore, a table to find
 * one by name, so that a handle with many names pays O(1) per lookup
 * (lost, acquired, unregister, update).
 */
struct held_set {
	struct held_name	**v;
	size_t			 n, cap;
	struct htab		 by_name;
};

/* A subscription, remembered for id translation and its end at a
 * reconnect. */
struct held_sub {
	uint64_t	 user_sub;	/* what the caller was given */
	uint64_t	 server_sub;	/* the daemon's id */
	uint64_t	 last_seq;	/* the last event handed out */
	bool		 ended;		/* overflow during a restore */
	bool		 cluster;	/* scope cluster: its seqs are etcd's
					   revisions, which outlive a daemon */
};

/* A monitor held, remembered for re-monitoring and ref translation. */
struct held_mon {
	uint64_t	 user_ref;	/* what the caller was given */
	uint64_t	 server_ref;	/* what the daemon uses now; 0: none */
	char		*name;		/* NULL: a monitor on connection conn */
	uint64_t	 conn;
	size_t		 idx;		/* in the handle's mons */
	bool		 fired;		/* its down came during a restore */
};

struct procreg {
	int			 fd;
	char			 path[108];
	char			*label;
	int			 timeout_ms;
	bool			 auto_reconnect;
	int			 reconnect_max_ms;
	int			 backoff_ms;
	int64_t			 next_retry_ms;
	uint32_t		 next_msgid;
	uint64_t		 conn_id;
	uint64_t		 protocol;	/* hello's, 0: not known */
	char			 boot[33];	/* hello's, "": not known */
	msgpack_unpacker	 unp;
	bool			 unp_ready;	/* unp initialised */
	msgpack_unpacked	 res;
	msgpack_sbuffer		 sbuf;
	msgpack_packer		 pk;
	/* The request in sbuf is incomplete (out of memory): not sent. */
	int			 req_err;
	char			 errmsg[256];
	/* Queued notifications: a ring of pointers. */
	struct procreg_event	**q;
	size_t			 q_head, q_len, q_cap;
	/* Reconnect state (kept only with auto_reconnect). */
	struct held_set		 names;
	struct held_set		 groups;	/* joined, to join again */
	struct held_mon		**mons;
	size_t			 nmons, mons_cap;
	struct htab		 mons_by_user;	/* by user_ref */
	struct htab		 mons_by_server; /* by server_ref, unless 0
						   or fired */
	uint64_t		 next_user_ref;
	struct held_sub		*subs;
	size_t			 nsubs, subs_cap;
	uint64_t		 next_user_sub;
	struct procreg_callbacks cb;
	void			*cb_arg;
	bool			 restoring;
	/*
	 * Calls received on this connection, not yet replied to
	 * (auto_reconnect only): the caller sees ids of our own, never
	 * reused, as a new daemon may reuse its numbers.  A reply to an id
	 * not here is not sent.
	 */
	struct held_call { uint64_t user_id, server_id; } *calls;
	size_t			 ncalls, calls_cap;
	uint64_t		 next_user_call;
};

/* Call ids remembered for replies; the oldest are forgotten beyond. */
#define CALLS_MAX	4096

/* Levels of a request above a param: the request, its params. */
#define PARAM_LEVELS	2

/*
 * The sizes of the caller's structs in this soname's first release: what
 * the plain-named entry points (for bindings and function pointers) use.
 * A field appended later must not change them: the asserts say so.
 */
#define PROCREG_OPTIONS_SIZE_1		sizeof(struct procreg_options)
#define PROCREG_CALLBACKS_SIZE_1	sizeof(struct procreg_callbacks)
#define PROCREG_HELLO_SIZE_1		\
	STRUCT_END(struct procreg_hello, max_message)
#define PROCREG_STATS_SIZE_1		\
	STRUCT_END(struct procreg_stats, draining)
#define PROCREG_SUBSCRIBE_OPTS_SIZE_1	\
	STRUCT_END(struct procreg_subscribe_opts, since)
#define PROCREG_SUBSCRIPTION_SIZE_1	sizeof(struct procreg_subscription)
/* Protocol 3's: hello grew node, stats the cluster's, subscribe options
 * a scope; these two are new. */
#define PROCREG_WHEREIS_OPTS_SIZE_1	sizeof(struct procreg_whereis_opts)
#define PROCREG_LIST_OPTS_SIZE_1	sizeof(struct procreg_list_opts)
/* Where a struct ends after field f, tail padding included. */
#define STRUCT_END(T, f)	((offsetof(T, f) + sizeof(((T *)0)->f) +	\
	    _Alignof(T) - 1) / _Alignof(T) * _Alignof(T))
_Static_assert(
    sizeof(struct procreg_options) ==
    STRUCT_END(struct procreg_options, reconnect_max_ms) &&
    sizeof(struct procreg_callbacks) ==
    STRUCT_END(struct procreg_callbacks, on_reconnect) &&
    offsetof(struct procreg_hello, node) >=
    STRUCT_END(struct procreg_hello, max_message) &&
    sizeof(struct procreg_hello) ==
    STRUCT_END(struct procreg_hello, node) &&
    offsetof(struct procreg_stats, cluster_node) >=
    STRUCT_END(struct procreg_stats, draining) &&
    sizeof(struct procreg_stats) ==
    STRUCT_END(struct procreg_stats, cluster_revision) &&
    offsetof(struct procreg_subscribe_opts, scope) >=
    STRUCT_END(struct procreg_subscribe_opts, since) &&
    sizeof(struct procreg_subscribe_opts) ==
    STRUCT_END(struct procreg_subscribe_opts, scope) &&
    sizeof(struct procreg_subscription) ==
    STRUCT_END(struct procreg_subscription, nmembers) &&
    sizeof(struct procreg_whereis_opts) ==
    STRUCT_END(struct procreg_whereis_opts, consistent) &&
    sizeof(struct procreg_list_opts) ==
    STRUCT_END(struct procreg_list_opts, scope),
    "a public struct grew: keep the _SIZE_1 values its first size");

/* handle.c */
bool		 handle_copy_in(void *ours, size_t size, const void *in,
		    size_t in_size);
void		 handle_copy_out(void *out, size_t out_size, const void *ours,
		    size_t size);
int		 handle_fail(procreg_t *, int status, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
char		*handle_dup_bytes(const char *, size_t);
void		*handle_dup_mem(const void *, size_t);
bool		 handle_grow(void **v, size_t *cap, size_t len, size_t size);
int		 handle_new(procreg_t **out, const struct procreg_options *,
		    bool known);
int		 handle_hello(procreg_t *, struct procreg_hello *out);

/* conn.c */
int		 conn_open(procreg_t *);
void		 conn_close(procreg_t *);
int		 conn_read_some(procreg_t *);
int		 conn_drain(procreg_t *);
int		 conn_check_value(procreg_t *, const void *, size_t,
		    unsigned above, const char *what);
int		 conn_req_write(void *handle, const char *, size_t);
uint32_t	 conn_req_begin(procreg_t *, const char *method, uint32_t n);
void		 conn_pack_str(procreg_t *, const char *);
uint32_t	 conn_req_register(procreg_t *, const char *name,
		    const void *value, size_t vlen, unsigned flags);
int		 conn_call_wait(procreg_t *, uint32_t msgid,
		    const msgpack_object **result, int64_t wait_ms);
int		 conn_call(procreg_t *, uint32_t msgid,
		    const msgpack_object **result);
int		 conn_call_bound(procreg_t *, uint32_t msgid,
		    const msgpack_object **result, bool *reconnected);

/* decode.c */
bool		 decode_is_str(const msgpack_object *, const char *);
bool		 decode_is_uint(const msgpack_object *);
int64_t		 decode_int(const msgpack_object *);
void		*decode_encode(const msgpack_object *, size_t *len);
struct procreg_entry *decode_entry(const msgpack_object *);
struct procreg_entry *decode_entry_new(const char *name, size_t vlen,
		    bool cluster);
bool		 decode_entry_fill(struct procreg_entry *,
		    const msgpack_object *);
struct procreg_member *decode_member(const msgpack_object *);
bool		 decode_strv(const msgpack_object *, char ***out, size_t *n);
bool		 decode_snapshot(const msgpack_object *,
		    struct procreg_subscription *out);
uint32_t	 decode_queued(const msgpack_object *);
int		 decode_status(procreg_t *, const msgpack_object *err);
int		 decode_push(procreg_t *, const msgpack_object *);

/* event.c */
int		 event_push(procreg_t *, struct procreg_event *);
struct procreg_event *event_pop(procreg_t *);
int		 event_local(procreg_t *, enum procreg_event_kind,
		    const char *name, const char *reason,
		    const msgpack_object *entry, uint64_t sub, uint64_t seq);
int		 event_down_local(procreg_t *, const struct held_mon *);
void		 event_drop_sub(procreg_t *, uint64_t sub);

/* reconnect.c */
int		 reconnect_try(procreg_t *, int64_t deadline);
uint64_t	 reconnect_note_call(procreg_t *, uint64_t id);
bool		 reconnect_call_known(procreg_t *, uint64_t *id, bool forget);
uint64_t	 reconnect_down_ref(procreg_t *, uint64_t server_ref);
uint64_t	 reconnect_sub_id(procreg_t *, uint64_t server_sub,
		    uint64_t seq, bool ended);
void		 reconnect_forget_sub(procreg_t *, size_t i);
void		 reconnect_acquired(procreg_t *, const char *name);
void		 reconnect_lost(procreg_t *, const char *name,
		    const char *reason);
int		 reconnect_init(procreg_t *);
void		 reconnect_deinit(procreg_t *);
struct held_name *reconnect_name_new(procreg_t *, const char *name,
		    const void *value, size_t vlen, unsigned flags);
void		 reconnect_name_free(struct held_name *);
int		 reconnect_set_reserve(procreg_t *, struct held_set *,
		    size_t n);
void		 reconnect_set_add(struct held_set *, struct held_name *);
struct held_name *reconnect_set_find(const struct held_set *,
		    const char *name);
void		 reconnect_set_forget(struct held_set *, const char *name);
struct held_mon	*reconnect_mon_new(procreg_t *, const char *name,
		    uint64_t conn);
void		 reconnect_mon_add(procreg_t *, struct held_mon *,
		    uint64_t server_ref);
struct held_mon	*reconnect_mon_by_user(const procreg_t *, uint64_t ref);

/* api.c */
int		 api_need_status(procreg_t *, int r, uint64_t need);
int		 api_p2_status(procreg_t *, int r);
int		 api_check_name(procreg_t *, const char *name);
int		 api_register(procreg_t *, const char *name, const void *value,
		    size_t vlen, unsigned flags, struct procreg_entry **out,
		    uint32_t *queued);
int		 api_unregister(procreg_t *, const char *name,
		    const uint64_t *gen);
int		 api_send(procreg_t *, const char *name, const void *payload,
		    size_t len, const uint64_t *gen);

#endif /* CLIENT_H */
