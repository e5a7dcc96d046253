/*
 * calls.h: calls pending between clients (the protocol's call and reply)
 * and awaits.  A call is addressed to a peer, and, when it was made
 * through a name, to that registration (its gen): whichever ends first,
 * the call fails with down.  Every pending call is on its caller's and
 * its callee's list, so a peer that goes away settles its calls in
 * O(its calls).
 *
 * The module knows peers only as opaque pointers and reaches them
 * through struct peer_ops; it owns its timers and its encoding buffer,
 * so it runs (and is unit-tested) without sockets.
 */
#ifndef CALLS_H
#define CALLS_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stdint.h>

#include "htab.h"
#include "peer.h"
#include "proto.h"
#include "registry.h"

struct event;
struct event_base;
struct calls;
struct calls_peer;
struct awaitname;

struct pcall {
	LIST_ENTRY(pcall)	 by_caller;
	LIST_ENTRY(pcall)	 by_callee;
	LIST_ENTRY(pcall)	 by_gen;
	struct calls		*cs;
	struct calls_peer	*caller;
	struct calls_peer	*callee;
	struct event		*timer;
	uint64_t		 id;
	uint64_t		 gen;		/* 0: addressed by peer */
	uint32_t		 msgid;		/* the caller's request */
};

/* An await: a response owed when a name is registered. */
struct pawait {
	LIST_ENTRY(pawait)	 by_peer;
	LIST_ENTRY(pawait)	 by_name;
	struct calls		*cs;
	struct calls_peer	*p;
	struct event		*timer;
	struct awaitname	*an;
	uint32_t		 msgid;
};

/* The module's refusals; dispatch turns them into wire codes. */
enum calls_err {
	CALLS_E_LIMIT = 1,	/* the peer has max_calls calls and awaits */
	CALLS_E_FULL,		/* the callee's output is full */
	CALLS_E_FAILED,		/* the callee could not take the push for
				   lack of memory (it is being closed) */
	CALLS_E_NOT_FOUND	/* no such call pending for the peer */
};

/* Awaits answered per loop turn when a name many wait for is registered. */
#define AWAIT_SLICE	2048

struct calls {
	const struct peer_ops	*ops;
	void			*arg;		/* for ops */
	struct event_base	*base;
	const struct registry	*reg;		/* its name hash */
	struct event		*ev_answers;	/* the next slice of awaits */
	struct pr_out		 push;		/* calls.c's alone */
	uint32_t		 max_calls;	/* per peer, calls and awaits */
	bool			 quiet;		/* stopping: end calls unsaid */
	struct htab		 by_id;
	struct htab		 by_gen;	/* struct callgen */
	struct htab		 awaits;	/* struct awaitname */
	struct htab		 peers;		/* struct calls_peer */
	TAILQ_HEAD(, awaitname)	 answering;	/* registered, being answered */
	uint64_t		 last_id;
	uint64_t		 pending;
	uint64_t		 nawaits;
	uint64_t		 replies_late;
};

/* Set up, empty; names are hashed with reg's key.  0 or -ENOMEM. */
int	 calls_init(struct calls *, struct event_base *,
	    const struct registry *, uint32_t max_calls,
	    const struct peer_ops *, void *arg);
/* Free every pending call and await without a word. */
void	 calls_deinit(struct calls *);
/*
 * Start a call from caller (request msgid) to callee, through the
 * registration gen (0: by peer), pushing the call notification that
 * encode puts in o for the call's id.  0; CALLS_E_LIMIT (the caller has
 * max_calls calls and awaits pending); CALLS_E_FULL or CALLS_E_FAILED
 * (the callee cannot take the push: nothing queued, nothing pending);
 * -ENOMEM.
 */
int	 calls_start(struct calls *, void *caller, uint32_t msgid,
	    void *callee, uint64_t gen, uint64_t timeout_ms,
	    int (*encode)(struct pr_out *o, uint64_t id, void *arg),
	    void *arg);
/*
 * The callee answers call id with a result, or with an error (code and
 * message; result NULL).  CALLS_E_NOT_FOUND when no such call is pending
 * for it.
 */
int	 calls_reply(struct calls *, void *callee, uint64_t id,
	    const pr_value *result, const char *code, size_t clen,
	    const char *msg, size_t mlen);
/*
 * Owe the peer (request msgid) the entry of name once it is registered,
 * or a timeout error after timeout_ms.  0, CALLS_E_LIMIT (max_calls
 * counts calls and awaits), -ENOMEM.
 */
int	 calls_await(struct calls *, void *peer, uint32_t msgid,
	    const char *name, size_t len, uint64_t timeout_ms);
/*
 * name was registered (the entry n): answer its awaits, a slice now and
 * the rest in later loop turns.
 */
void	 calls_registered(struct calls *, const struct reg_name *n);
/* The same for an entry that encode writes (a cluster name's, §12). */
void	 calls_registered_as(struct calls *, const char *name, size_t len,
	    int (*encode)(struct pr_out *, const void *arg), const void *arg);
/* Calls and awaits the peer has pending. */
uint32_t calls_pending_of(const struct calls *, const void *peer);
/*
 * The peer is gone: cancel the calls it made, fail with down those made
 * to it, drop its awaits.
 */
void	 calls_peer_gone(struct calls *, void *peer);
/* A registration ended: calls made through it fail with down. */
void	 calls_gen_gone(struct calls *, uint64_t gen);

#endif /* CALLS_H */
