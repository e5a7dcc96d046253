/*
 * calls.h: calls pending between connections (the protocol's call and
 * reply).  A call is addressed to a connection, and, when it was made
 * through a name, to that registration (its gen): whichever ends first,
 * the call fails with down.  Every pending call is on its caller's and its
 * callee's list, so a connection that goes away settles its calls in
 * O(its calls).
 */
#ifndef CALLS_H
#define CALLS_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stdint.h>

#include "htab.h"
#include "proto.h"

struct conn;
struct server;
struct event;

struct pcall {
	LIST_ENTRY(pcall)	 by_caller;
	LIST_ENTRY(pcall)	 by_callee;
	LIST_ENTRY(pcall)	 by_gen;
	struct server		*srv;
	struct conn		*caller;
	struct conn		*callee;
	struct event		*timer;
	uint64_t		 id;
	uint64_t		 gen;		/* 0: addressed by conn id */
	uint32_t		 msgid;		/* the caller's request */
};

/* An await: a response owed when a name is registered. */
struct pawait {
	LIST_ENTRY(pawait)	 by_conn;
	LIST_ENTRY(pawait)	 by_name;
	struct server		*srv;
	struct conn		*c;
	struct event		*timer;
	struct awaitname	*an;
	uint32_t		 msgid;
};

struct awaitname;

/* Awaits answered per loop turn when a name many wait for is registered. */
#define AWAIT_SLICE	2048

struct calls {
	struct htab		 by_id;
	struct htab		 by_gen;	/* struct callgen */
	struct htab		 awaits;	/* struct awaitname */
	TAILQ_HEAD(, awaitname)	 answering;	/* registered, being answered */
	uint64_t		 last_id;
	uint64_t		 pending;
	uint64_t		 nawaits;
	uint64_t		 replies_late;
};

int	 calls_init(struct calls *);
/* Free every pending call without a word (the daemon is going away). */
void	 calls_deinit(struct calls *);
/*
 * Start a call from caller (request msgid) to callee, through the
 * registration gen (0: by conn id), pushing the encoded call notification
 * built by the caller of this function with the id it is given: encode is
 * called with the new call's id and must leave the push in s->push.
 * 0; PR_ERR_LIMIT (caller has max_calls pending); PR_ERR_BUSY (callee's
 * buffer full: nothing queued); -ENOMEM.
 */
int	 calls_start(struct server *, struct conn *caller, uint32_t msgid,
	    struct conn *callee, uint64_t gen, uint64_t timeout_ms,
	    int (*encode)(struct server *, uint64_t id, void *arg), void *arg);
/*
 * The callee answers call id with a result, or with an error (code and
 * message; result NULL).  PR_ERR_NOT_FOUND when no such call is pending
 * for it.
 */
int	 calls_reply(struct server *, struct conn *callee, uint64_t id,
	    const pr_value *result, const char *code, size_t clen,
	    const char *msg, size_t mlen);
/*
 * Owe c (request msgid) the entry of name once it is registered, or a
 * timeout error after timeout_ms.  0, PR_ERR_LIMIT (max_calls counts
 * calls and awaits), -ENOMEM.
 */
int	 calls_await(struct server *, struct conn *c, uint32_t msgid,
	    const char *name, size_t len, uint64_t timeout_ms);
/*
 * name was registered (the entry n): answer its awaits, a slice now and
 * the rest in later loop turns (server_schedule_answers).
 */
void	 calls_registered(struct server *, const struct reg_name *n);
/* Answer the next slice of awaits; true when more remain. */
bool	 calls_answer_slice(struct server *);
/* A connection closes: cancel the calls it made, fail those made to it,
 * drop its awaits. */
void	 calls_conn_closed(struct server *, struct conn *);
/* The registry's gone hook: calls through registration gen fail. */
void	 calls_gone(void *srv, uint64_t gen);

#endif /* CALLS_H */
