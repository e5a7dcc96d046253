/*
 * dispatch_impl.h: what the dispatch files share: the request being
 * handled, the helpers the handlers reply with, the handlers themselves.
 * Not for other modules: they go through dispatch.h.
 */
#ifndef DISPATCH_IMPL_H
#define DISPATCH_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "registry.h"

struct cl_entry;
struct conn;
struct pr_opt;
struct server;
struct sub;

/* A request's scope option (PROTOCOL.md §12). */
enum dispatch_scope {
	SCOPE_ANY,	/* the local name, else the cluster's */
	SCOPE_LOCAL,
	SCOPE_CLUSTER,
	SCOPE_ALL	/* list: both */
};
#define SCOPES(a, b)	(1u << (a) | 1u << (b))

/* One request being handled. */
struct call {
	struct server		*s;
	struct conn		*c;
	struct pr_request	*rq;
	char			 why[160];	/* message of an error reply */
	bool			 noproc;	/* owe a noproc down after */
	bool			 deferred;	/* answered later (call) */
	bool			 cluster_target; /* resolved a cluster name */
	uint64_t		 noproc_ref;
	struct reg_target	 noproc_target;
	struct sub		*replay;	/* events to send after */
	uint64_t		 replay_since;
};

/*
 * A handler writes its whole reply into s->out and returns 0, or returns
 * a positive pr_err with c->why set (the dispatcher writes the error), or
 * -ENOMEM.
 */
typedef int	handler_fn(struct call *);

#define BAD_NAME	"the name must be a str of 1 to 255 bytes of UTF-8 " \
			"without NUL"
#define BAD_GROUP	"the group must be a str of 1 to 255 bytes of UTF-8 " \
			"without NUL"

#define BAD_TARGET	"the target must be a name (a str of 1 to 255 bytes " \
			"of UTF-8 without NUL) or a connection id (a uint)"
#define STALE	"the name's entry has another generation"

int	 dispatch_fail(struct call *, int err, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/*
 * The wire's code for a module's refusal: each module answers in its own
 * terms (registry.h, calls.h, subs.h) and is translated here, once.
 */
enum pr_err dispatch_reg_err(int);
enum pr_err dispatch_calls_err(int);
enum pr_err dispatch_subs_err(int);
/* Reply with an entry, or a bool. */
int	 dispatch_reply_entry(struct call *, const struct reg_name *);
int	 dispatch_reply_bool(struct call *, bool);
/* The msgpack bytes to store for a value param (in s->scratch). */
int	 dispatch_stored_value(struct call *, const pr_value *,
	    const char **val, size_t *vlen);
/* The connection a target names, and the registration's gen (0 when the
 * target is a conn id). */
int	 dispatch_resolve(struct call *, const struct reg_target *,
	    struct conn **to, uint64_t *gen);
/* Would a response of this many bytes be larger than max_message? */
bool	 dispatch_too_large(const struct server *, size_t bytes);

/*
 * The cluster's side (dispatch_cluster.c).  dispatch_scope reads a scope
 * option (allowed: a mask of 1 << scope), leaving *out as it was when
 * the option is absent.  The others answer, or set k->deferred when the
 * cluster answers later.
 */
int	 dispatch_scope(struct call *, const struct pr_opt *, unsigned allowed,
	    enum dispatch_scope *out);
const struct cl_entry *dispatch_cluster_lookup(struct server *,
	    const char *name, size_t len);
int	 dispatch_reply_cluster_entry(struct call *, const struct cl_entry *);
int	 dispatch_cluster_register(struct call *, const char *name, size_t len,
	    const char *val, size_t vlen, bool queue);
int	 dispatch_cluster_unregister(struct call *, const char *name,
	    size_t len, const uint64_t *gen);
int	 dispatch_cluster_whereis(struct call *, const char *name, size_t len,
	    enum dispatch_scope, bool consistent);
int	 dispatch_cluster_monitor(struct call *, const char *name, size_t len,
	    uint32_t nsubs, uint64_t *ref);
bool	 dispatch_cluster_demonitor(struct call *, uint64_t ref);
int	 dispatch_cluster_update(struct call *, const char *name, size_t len,
	    const char *val, size_t vlen, const uint64_t *gen);
int	 dispatch_cluster_evict(struct call *, const char *name, size_t len);
int	 dispatch_cluster_queue(struct call *, const char *name, size_t len);
/* A cluster subscription's snapshot: the "entries" array. */
int	 dispatch_cluster_snapshot(struct call *, const char *prefix,
	    size_t plen);

/* The handlers, one per method but hello and stats (in dispatch.c). */
int	 dispatch_await(struct call *);
int	 dispatch_call(struct call *);
int	 dispatch_demonitor(struct call *);
int	 dispatch_evict(struct call *);
int	 dispatch_join(struct call *);
int	 dispatch_keys(struct call *);
int	 dispatch_leave(struct call *);
int	 dispatch_list(struct call *);
int	 dispatch_members(struct call *);
int	 dispatch_monitor(struct call *);
int	 dispatch_nodes(struct call *);
int	 dispatch_publish(struct call *);
int	 dispatch_queue(struct call *);
int	 dispatch_register(struct call *);
int	 dispatch_register_many(struct call *);
int	 dispatch_reply(struct call *);
int	 dispatch_send(struct call *);
int	 dispatch_subscribe(struct call *);
int	 dispatch_unregister(struct call *);
int	 dispatch_unsubscribe(struct call *);
int	 dispatch_update(struct call *);
int	 dispatch_whereis(struct call *);

#endif /* DISPATCH_IMPL_H */
