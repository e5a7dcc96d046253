/*
 * subs.h: the event stream: every registry change gets the next sequence
 * number, goes into a bounded history (for resuming), and to each
 * subscription whose prefix matches.  A subscriber that cannot take an
 * event loses its subscription with an overflow notice, never the
 * daemon's memory.
 *
 * Subscribers are opaque peers reached through struct peer_ops; the
 * module owns its encoding buffers, so it runs (and is unit-tested)
 * without sockets.
 */
#ifndef SUBS_H
#define SUBS_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "htab.h"
#include "peer.h"
#include "proto.h"
#include "registry.h"

struct sub_bucket;
struct subs_peer;

/* The module's refusals; dispatch turns them into wire codes. */
enum subs_err {
	SUBS_E_FUTURE = 1	/* since is later than the last event */
};

struct sub {
	TAILQ_ENTRY(sub)	 all;
	LIST_ENTRY(sub)		 by_peer;
	TAILQ_ENTRY(sub)	 in_bucket;
	struct sub_bucket	*bucket;	/* NULL when none */
	struct subs_peer	*p;
	uint64_t		 id;
	bool			 groups;
	bool			 none;		/* prefix > 255 bytes: nothing */
	uint8_t			 plen;
	char			 prefix[PR_NAME_MAX];
};

/* One event of the history: name bytes, then the encoded payload, in a
 * buffer the slot keeps from one event to the next. */
struct hev {
	uint64_t		 seq;
	struct pr_out		 buf;
	uint8_t			 kind;
	uint8_t			 name_len;
	bool			 group;
};

/*
 * The subscriptions with one prefix (and one groups flag), in the order
 * they were made.  An event looks up the buckets of its name's prefixes,
 * of the lengths some bucket has: the subscriptions it does not concern
 * cost nothing, however many there are.
 */
struct sub_bucket {
	TAILQ_HEAD(, sub)	 subs;
	uint64_t		 hash;
	bool			 groups;
	uint8_t			 plen;
	char			 prefix[];
};

struct subs {
	const struct peer_ops	*ops;
	void			*arg;		/* for ops */
	const struct registry	*reg;		/* its name hash */
	TAILQ_HEAD(, sub)	 all;
	struct htab		 buckets;
	struct htab		 peers;		/* struct subs_peer */
	uint32_t		 nbuckets[PR_NAME_MAX + 1]; /* by prefix length */
	uint64_t		 nsubs;
	uint64_t		 seq;		/* the last event's */
	uint64_t		 id_base;	/* added to every sub id */
	uint64_t		 floor;		/* events <= floor are gone */
	struct hev		*ring;
	size_t			 cap;		/* history size; 0: none */
	size_t			 head;		/* oldest */
	size_t			 count;
	size_t			 bytes;		/* held by the live events */
	struct pr_out		 payload;	/* the event, without history */
	struct pr_out		 push;		/* subs.c's alone */
};

/* Set up with a history of that many events; prefixes are hashed with
 * reg's key.  0 or -ENOMEM. */
int	 subs_init(struct subs *, size_t history, const struct registry *,
	    const struct peer_ops *, void *arg);
void	 subs_deinit(struct subs *);
/* A new history size (reload): the history restarts empty. */
int	 subs_resize(struct subs *, size_t history);
/* The registry's event hook's part: number, keep, deliver. */
void	 subs_event(struct subs *, const struct reg_event *);
/*
 * An event of another source (the cluster's cache, PROTOCOL.md §12): its
 * seq given (never below the last: the events of one etcd revision share
 * it), its kind and name, and the payload encode writes.
 */
void	 subs_event_as(struct subs *, uint64_t seq, enum reg_ev_kind,
	    const char *name, size_t nlen,
	    int (*encode)(struct pr_out *, const void *), const void *arg);
/* The last event's sequence number. */
uint64_t subs_seq(const struct subs *);
/* Nothing up to seq is in the history (the stream began there, or
 * missed what came before): the seq is at least that, and no resume
 * from before it is taken for complete. */
void	 subs_floor(struct subs *, uint64_t seq);
/* End every subscription with an overflow notice [sub, seq]: what came
 * after seq cannot be told (the cluster's history was compacted). */
void	 subs_end_all(struct subs *, uint64_t seq);
/* The stream is known to be complete up to seq (nothing of the
 * subscriptions' concern happened in between). */
void	 subs_advance(struct subs *, uint64_t seq);
/*
 * Start a subscription for the peer; *id is its id (the peer's next).
 * With since: *resumable tells whether the history still holds every
 * event after it (then call subs_replay after the response).
 * SUBS_E_FUTURE (since is later than the last event), -ENOMEM.
 */
int	 subs_start(struct subs *, void *peer, const char *prefix,
	    size_t plen, bool groups, const uint64_t *since, bool *resumable,
	    uint64_t *id, struct sub **out);
/*
 * Undo the subs_start of this request (its response could not be
 * built): as if it never was; the peer's next subscription gets its id.
 */
void	 subs_abort(struct subs *, struct sub *);
/*
 * Send the events after since that match the subscription; the number
 * of events of the history it looked at.
 */
size_t	 subs_replay(struct subs *, struct sub *, uint64_t since);
/* Does the subscription take this name or group? */
bool	 subs_match(const struct sub *, const char *name, size_t len,
	    bool group);
/* End the peer's subscription id; false when it has none by that id. */
bool	 subs_stop(struct subs *, void *peer, uint64_t id);
/* The peer's subscriptions. */
uint32_t subs_count_of(const struct subs *, const void *peer);
/* The peer is gone: its subscriptions end. */
void	 subs_peer_gone(struct subs *, void *peer);

#endif /* SUBS_H */
