/*
 * registry.h: the name and monitor tables.  Pure data, no I/O: the daemon
 * and the unit tests drive it alike.
 *
 * Every name is linked into the hash index, the ordered index and its
 * owner's list; every monitor into its target's (a name's or a client's)
 * and its holder's list and the ref index; every group membership into
 * its group's list (join order) and its client's.  Purging a client walks
 * only what it owns: O(names + monitors on them and on it + monitors it
 * holds + memberships).
 *
 * Return convention: 0 success, a positive enum reg_err for an expected
 * refusal (dispatch turns it into the wire's error code), a negative
 * errno for an unexpected failure (only -ENOMEM).
 */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "btree.h"
#include "htab.h"
#include "procreg-protocol.h"

struct reg_name;
struct reg_monitor;
struct reg_member;
struct reg_waiter;
struct reg_queue;

/* The registry's refusals; its own, whatever a client is told. */
enum reg_err {
	REG_E_TAKEN = 1,	/* registered (or a member) already */
	REG_E_DUPLICATE,	/* register_many: a name given twice */
	REG_E_LIMIT,		/* the client's max_names or max_monitors */
	REG_E_LIMIT_UID,	/* its user's max_names_per_uid */
	REG_E_TOO_LARGE,	/* a value (or name) too large to store */
	REG_E_NOT_FOUND,
	REG_E_NOT_OWNER,
	REG_E_STALE		/* the entry has another generation */
};

/* Flags of a registration, and of a register request. */
#define REG_QUEUE		0x01	/* queue: true */
#define REG_ALLOW_REPLACEMENT	0x02	/* allow_replacement: true */
#define REG_REPLACE		0x04	/* replace: true (request only) */
#define REG_HAS_MONITORS	0x40	/* monitors watch the name */
#define REG_HAS_QUEUE		0x80	/* connections wait for the name */

/* What one user holds across its connections, for per-uid caps. */
struct reg_uid {
	uint32_t	uid;
	uint32_t	conns;		/* descriptors held (uid_hold) */
	uint32_t	clients;	/* records, purging ones included */
	uint64_t	names;
	uint64_t	waits;		/* places in queues */
};

/*
 * The registry's view of one client.  The registry allocates and frees it:
 * once its connection closes (registry_client_close) the record outlives
 * it on the registry's purge queue until its last name is gone, so the
 * connection never waits for a purge.
 */
struct reg_client {
	LIST_ENTRY(reg_client)		 link;	/* registry's client list */
	TAILQ_ENTRY(reg_client)		 purge_link; /* purge queue (dying) */
	void				*conn;	/* the caller's connection;
						   NULL once closed */
	LIST_HEAD(, reg_name)		 names;	/* names it owns */
	LIST_HEAD(, reg_monitor)	 monitors; /* monitors it holds */
	LIST_HEAD(, reg_monitor)	 watchers; /* monitors on it */
	LIST_HEAD(, reg_member)		 members; /* its memberships */
	LIST_HEAD(, reg_waiter)		 waits;	/* queues it waits in */
	LIST_HEAD(, reg_queue)		 queues; /* queues of names it owns */
	uint64_t			 id;
	uint64_t			 next_ref;
	int64_t				 pid;
	uint32_t			 uid;
	uint32_t			 gid;
	uint32_t			 nnames;
	uint32_t			 nmonitors;
	uint32_t			 nmembers;
	uint32_t			 nwaits;
	bool				 dying;	/* closed: purge under way */
	bool				 uncapped; /* no per-uid caps (admins) */
	struct reg_uid			*usage;	/* its user's totals */
};

/* A registered name.  The name bytes, then the value's msgpack bytes. */
struct reg_name {
	LIST_ENTRY(reg_name)		 owner_link;
	struct reg_client		*owner;
	uint64_t			 since_ms;
	uint64_t			 gen;
	uint32_t			 value_len;
	uint8_t				 name_len;
	uint8_t				 flags;	/* REG_* */
	char				 data[];
};

/*
 * The monitors on a name.  Only watched names have one (found by name in
 * the watched index), so that the other names, nearly all of them at a
 * million, do not carry a list head.
 */
struct reg_watch {
	LIST_HEAD(, reg_monitor)	 monitors;
	struct reg_name			*name;
};

/*
 * The connections waiting for a registered name, first in line first.
 * Only names with waiters have one (found by name in the queues index),
 * so names cost nothing for the feature.
 */
struct reg_queue {
	LIST_ENTRY(reg_queue)		 by_owner;
	TAILQ_HEAD(, reg_waiter)	 waiters;
	struct reg_name			*name;
	uint32_t			 n;
};

/*
 * A place in a queue.  The registration it will become is allocated when
 * it queues, so that a hand-over never allocates and cannot fail.
 */
struct reg_waiter {
	TAILQ_ENTRY(reg_waiter)		 by_queue;
	LIST_ENTRY(reg_waiter)		 by_client;
	struct reg_queue		*q;
	struct reg_name			*ready;	/* owner, name, value, flags */
};

/* A monitor watches a name (target) or a client (target_client). */
struct reg_monitor {
	LIST_ENTRY(reg_monitor)		 by_target;
	LIST_ENTRY(reg_monitor)		 by_holder;
	struct reg_client		*holder;
	struct reg_name			*target;
	struct reg_client		*target_client;
	uint64_t			 ref;
};

/* A group: a name many clients hold at once.  Exists while it has
 * members. */
struct reg_group {
	TAILQ_HEAD(, reg_member)	 members;	/* in join order */
	uint32_t			 nmembers;
	uint8_t				 name_len;
	char				 name[];
};

/* One client's membership of a group, with its value's msgpack bytes. */
struct reg_member {
	TAILQ_ENTRY(reg_member)		 by_group;
	LIST_ENTRY(reg_member)		 by_client;
	struct reg_group		*group;
	struct reg_client		*client;
	uint64_t			 since_ms;
	uint64_t			 gen;
	uint32_t			 value_len;
	char				 value[];
};

/*
 * What a firing monitor watched: a name (name != NULL) or a client (its
 * id in conn).
 */
struct reg_target {
	const char	*name;
	size_t		 len;
	uint64_t	 conn;
};

/*
 * Called for each monitor that fires, before the name is freed.  It must
 * not call back into the registry.
 */
typedef void	reg_down_fn(void *arg, struct reg_client *holder, uint64_t ref,
		    const struct reg_target *target, enum pr_down_reason reason);
/*
 * Called when a registration ends (whatever the reason), after its
 * monitors fired, with its generation: calls addressed to it must fail.
 * It must not call back into the registry.
 */
typedef void	reg_gone_fn(void *arg, uint64_t gen);

/* A change, for subscriptions and awaits. */
enum reg_ev_kind {
	REG_EV_REGISTERED,	/* name */
	REG_EV_UNREGISTERED,	/* name (about to be freed), why */
	REG_EV_UPDATED,		/* name */
	REG_EV_HANDOVER,	/* name: the new owner's; prev, why, acquired */
	REG_EV_JOINED,		/* member */
	REG_EV_LEFT		/* member (about to be freed) */
};

struct reg_event {
	enum reg_ev_kind		 kind;
	const struct reg_name		*name;
	const struct reg_member		*member;
	struct reg_client		*prev;	/* HANDOVER: the old owner */
	enum pr_down_reason		 why;
	bool				 acquired; /* HANDOVER from the queue */
};

/* Called after each change; it must not call back into the registry. */
typedef void	reg_event_fn(void *arg, const struct reg_event *);

struct registry {
	struct htab			 names;
	struct htab			 monitors;
	struct htab			 uids;		/* struct reg_uid */
	struct htab			 ids;		/* clients by id */
	struct htab			 groups;
	struct htab			 queues;	/* struct reg_queue */
	struct htab			 watched;	/* struct reg_watch */
	struct btree			 order;		/* names, by name */
	struct btree			 gorder;	/* groups, by name */
	LIST_HEAD(, reg_client)		 clients;
	TAILQ_HEAD(, reg_client)	 purging;	/* closed, names left */
	unsigned char			 hkey[16];	/* SipHash key */
	struct {					/* registry_hint */
		const char		*name;
		size_t			 len;
		uint64_t		 hash;
	}				 hint;
	uint64_t			 nnames;
	uint64_t			 nmonitors;
	uint64_t			 ngroups;
	uint64_t			 nmembers;
	uint64_t			 nwaiters;
	uint64_t			 gen;		/* the last one given */
	/*
	 * Entries the ordered walks stepped over, those of dying owners
	 * included: the daemon charges them to the request's turn.
	 */
	uint64_t			 walked;
	uint32_t			 max_names;	/* per client */
	uint32_t			 max_monitors;	/* per client */
	uint64_t			 max_names_per_uid; /* 0: no cap */
	reg_down_fn			*down;
	reg_gone_fn			*gone;		/* may be NULL */
	reg_event_fn			*event;		/* may be NULL */
	void				*down_arg;	/* for all three */
	uint64_t			(*clock)(void);	/* epoch ms; NULL: 0 */
	bool				 mute;		/* no events (batch) */
};

/* Set up an empty registry with a random hash key; 0 or -ENOMEM. */
int	 registry_init(struct registry *, uint32_t max_names,
	    uint32_t max_monitors, reg_down_fn *down, void *down_arg);
/* Free every name and monitor (no notifications) and the indexes. */
void	 registry_deinit(struct registry *);

/*
 * A new client record with its peer credentials, for the caller's
 * connection (reg_client->conn until it closes); NULL
 * when out of memory.  The registry owns the record.
 */
struct reg_client *registry_client_new(struct registry *, uint64_t id,
	    int64_t pid, uint32_t uid, uint32_t gid, void *owner);
/* The attached client with this id, or NULL (also while it is being
 * purged). */
struct reg_client *registry_client_find(const struct registry *,
	    uint64_t id);
/*
 * Descriptors a user holds, for max_conns_per_uid: the connection layer
 * holds one from accept until its socket is closed, which may be before
 * or after its client record's purge ends.  hold: 0 or -ENOMEM.
 */
int	 registry_uid_hold(struct registry *, uint32_t uid);
void	 registry_uid_put(struct registry *, uint32_t uid);
uint32_t registry_uid_conns(const struct registry *, uint32_t uid);
/*
 * The client's connection is gone: the record is the registry's alone
 * (conn becomes NULL, so nothing is addressed to it any more).  Drops
 * its monitors silently, its memberships and places in queues, hands the
 * names others wait for to the first in line, fires PR_DOWN_DISCONNECTED
 * on the monitors of it, and makes all its names invisible at once
 * (lookups, listing, monitor and unregister see them as absent; register
 * takes such a name over, firing its monitors first); then removes at
 * most budget names, firing PR_DOWN_DISCONNECTED on their monitors.  True
 * when that was all (the record is freed); false when the rest waits on
 * the purge queue for registry_purge_slice.
 */
bool	 registry_client_close(struct registry *, struct reg_client *,
	    size_t budget);
/*
 * Remove at most budget names of the clients on the purge queue, oldest
 * first, so that a client with a million names does not stall everyone
 * else.  True when some remain for another slice.
 */
bool	 registry_purge_slice(struct registry *, size_t budget);

/* Pointer to a name's bytes and its value's msgpack bytes. */
static inline const char *
reg_name_str(const struct reg_name *n)
{
	return n->data;
}
static inline const char *
reg_name_value(const struct reg_name *n)
{
	return n->data + n->name_len;
}

/*
 * Walks of what the registry links, for readers: a client's names (newest
 * first) and memberships, a group's members (in join order), a queue's
 * waiters (first in line first).  NULL after the last; valid until the
 * registry changes.
 */
static inline struct reg_name *
registry_client_names(const struct reg_client *c)
{
	return LIST_FIRST(&c->names);
}
static inline struct reg_name *
registry_client_names_next(const struct reg_name *n)
{
	return LIST_NEXT(n, owner_link);
}
static inline struct reg_member *
registry_client_members(const struct reg_client *c)
{
	return LIST_FIRST(&c->members);
}
static inline struct reg_member *
registry_client_members_next(const struct reg_member *mb)
{
	return LIST_NEXT(mb, by_client);
}
static inline struct reg_member *
registry_group_members(const struct reg_group *g)
{
	return TAILQ_FIRST(&g->members);
}
static inline struct reg_member *
registry_group_members_next(const struct reg_member *mb)
{
	return TAILQ_NEXT(mb, by_group);
}
static inline struct reg_waiter *
registry_queue_waiters(const struct reg_queue *q)
{
	return TAILQ_FIRST(&q->waiters);
}
static inline struct reg_waiter *
registry_queue_waiters_next(const struct reg_waiter *w)
{
	return TAILQ_NEXT(w, by_queue);
}

/* The registry's keyed hash of a name, for other indexes of names. */
uint64_t registry_hash(const struct registry *, const char *s, size_t len);

/* True when the bytes are a valid name: 1..255 bytes of UTF-8, no NUL. */
bool	 registry_name_valid(const char *name, size_t len);

/*
 * Register name for the client with a value (msgpack bytes, copied).
 * REG_E_TAKEN sets *out to the current entry; REG_E_LIMIT when the
 * client holds max_names names, REG_E_LIMIT_UID when its user holds
 * max_names_per_uid; -ENOMEM.
 * The name must be valid.
 */
int	 registry_register(struct registry *, struct reg_client *,
	    const char *name, size_t len, const void *value, size_t vlen,
	    uint64_t now_ms, struct reg_name **out);
/*
 * The same with REG_QUEUE, REG_ALLOW_REPLACEMENT and REG_REPLACE flags.
 * With REG_QUEUE a registered name puts the client in its queue: 0 with
 * *queued set to its position (else 0).  REG_REPLACE takes a name whose
 * owner allowed replacement.  REG_E_TAKEN (*out the entry) also when
 * the client owns or waits for the name; REG_E_LIMIT when its names and
 * places reach max_names.
 */
int	 registry_register_opts(struct registry *, struct reg_client *,
	    const char *name, size_t len, const void *value, size_t vlen,
	    unsigned flags, uint64_t now_ms, struct reg_name **out,
	    uint32_t *queued);
/* The queue of a registered name, or NULL when nobody waits. */
struct reg_queue *registry_queue(const struct registry *, const char *name,
	    size_t len);
/*
 * Register n names at once, all or none.  REG_E_TAKEN (*bad: the index
 * of the first registered name, *out[0] its entry), REG_E_DUPLICATE
 * (*bad: the index of a name given twice), REG_E_LIMIT, -ENOMEM.  On
 * success out[0..n-1] are the new entries.  The names must be valid.
 */
int	 registry_register_many(struct registry *, struct reg_client *,
	    size_t n, const char *const *names, const size_t *lens,
	    const void *const *values, const size_t *vlens, uint64_t now_ms,
	    struct reg_name **out, size_t *bad);
/*
 * The first index of names[0..n-1] whose name came earlier in the array;
 * false when all differ.  O(n log n), no allocation beyond idx (n slots).
 */
bool	 registry_first_duplicate(const char *const *names, const size_t *lens,
	    size_t n, size_t *idx, size_t *dup);
/*
 * Replace the value of the client's name (the entry may move: *out is
 * where it is now).  REG_E_NOT_FOUND, REG_E_NOT_OWNER, REG_E_TOO_LARGE,
 * -ENOMEM (the old value stays).
 */
int	 registry_update(struct registry *, struct reg_client *,
	    const char *name, size_t len, const void *value, size_t vlen,
	    struct reg_name **out);
/* Checks that the entry has generation gen first: REG_E_STALE. */
int	 registry_update_gen(struct registry *, struct reg_client *,
	    const char *name, size_t len, const void *value, size_t vlen,
	    const uint64_t *gen, struct reg_name **out);
/* Remove a name whoever holds it, firing PR_DOWN_EVICTED; or
 * REG_E_NOT_FOUND. */
int	 registry_evict(struct registry *, const char *name, size_t len);
/* Remove the client's name, firing PR_DOWN_UNREGISTERED; or
 * REG_E_NOT_FOUND / REG_E_NOT_OWNER. */
int	 registry_unregister(struct registry *, struct reg_client *,
	    const char *name, size_t len);
/*
 * The same, fenced: with gen non-NULL, REG_E_STALE unless the entry has
 * that generation.  A client waiting for the name gives up its place.
 * When others wait, the first becomes the owner in the same step.
 */
int	 registry_unregister_gen(struct registry *, struct reg_client *,
	    const char *name, size_t len, const uint64_t *gen);
/* The entry of a name, or NULL (also while its owner is being purged). */
struct reg_name	*registry_lookup(const struct registry *, const char *name,
	    size_t len);
/*
 * Remember that the name at this address hashes to h (registry_hash),
 * until the next call; name NULL forgets.  The bytes must stay put
 * meanwhile.  The connection layer hashes a batch's names ahead for its
 * cache hints: the lookups then do not hash them again.
 */
void	 registry_hint(struct registry *, const char *name, size_t len,
	    uint64_t h);
/*
 * Cache hints for a lookup of a name (h = registry_hash of it) that comes
 * soon: stage 0 fetches its hash slot, stage 1 (after the slots of a batch
 * had time to arrive) its registration.  At a million names each lookup
 * otherwise waits for memory twice, one request after the other.
 */
void	 registry_prefetch(const struct registry *, uint64_t h, size_t len,
	    int stage);

/*
 * Has the client room for another monitor, with others (its
 * subscriptions) counted against max_monitors too?  The one place the
 * monitor limit is decided.
 */
bool	 registry_monitor_room(const struct registry *,
	    const struct reg_client *, uint32_t others);
/*
 * Monitor a name.  Sets *ref to a new per-client ref.  *target is the name
 * watched, or NULL when it is not registered: then nothing is stored and
 * the caller owes the holder a PR_DOWN_NOPROC.  REG_E_LIMIT (no room,
 * others counted), -ENOMEM.
 */
int	 registry_monitor(struct registry *, struct reg_client *,
	    uint32_t others, const char *name, size_t len, uint64_t *ref,
	    struct reg_name **target);
/*
 * Monitor a client by id.  *found is false (nothing stored, the caller
 * owes a PR_DOWN_NOPROC) when no such client is attached.
 */
int	 registry_monitor_client(struct registry *, struct reg_client *,
	    uint32_t others, uint64_t id, uint64_t *ref, bool *found);
/* Cancel an active monitor; false when it fired already or never was. */
bool	 registry_demonitor(struct registry *, struct reg_client *,
	    uint64_t ref);

/* A place in name order; valid until the registry changes. */
struct reg_iter {
	struct btree_iter	 at;
};

/*
 * Ordered iteration: the first entry whose name is >= key (> key when
 * strictly), or NULL; then registry_next.
 */
struct reg_name	*registry_seek(struct registry *, const char *key, size_t len,
	    bool strictly, struct reg_iter *);
struct reg_name	*registry_next(struct registry *, struct reg_iter *);

/*
 * Join a group with a value (msgpack bytes, copied).  REG_E_TAKEN when
 * the client is a member already, REG_E_LIMIT when it is a member of
 * max_names groups, -ENOMEM.  The group name must be valid.
 */
int	 registry_join(struct registry *, struct reg_client *,
	    const char *group, size_t len, const void *value, size_t vlen,
	    uint64_t now_ms, struct reg_member **out);
/* Leave a group; REG_E_NOT_FOUND when not a member. */
int	 registry_leave(struct registry *, struct reg_client *,
	    const char *group, size_t len);
/* A group with members, or NULL. */
struct reg_group *registry_group(const struct registry *, const char *group,
	    size_t len);
/*
 * Groups in name order: the first whose name is >= key, or NULL; then
 * registry_group_next.  The iterator is valid until the registry changes.
 */
struct reg_group *registry_group_seek(struct registry *, const char *key,
	    size_t len, struct reg_iter *);
struct reg_group *registry_group_next(struct registry *, struct reg_iter *);

/*
 * Verify every cross-link and count.  NULL when all hold, else a static
 * description of the first violation.
 */
const char	*registry_check(struct registry *);

#endif /* REGISTRY_H */
