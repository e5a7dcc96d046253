/*
 * conn.h: one client connection's lifecycle: reading and framing input,
 * queueing output, backpressure, and the single close path.  The only
 * module that touches client sockets.
 */
#ifndef CONN_H
#define CONN_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guard.h"
#include "policy.h"
#include "registry.h"

struct server;
struct pcall;
struct pawait;
struct sub;
struct evbuffer;
struct event;

enum conn_flag {
	CONN_PENDING = 1 << 0,	/* on the server's flush list */
	CONN_DEAD = 1 << 1,	/* closed: purged, reads no more */
	CONN_DRAINING = 1 << 2,	/* dead, flushing its last replies (on the
				   server's draining list) */
	CONN_PAUSED = 1 << 3,	/* its unread replies passed the bound */
	CONN_REAP = 1 << 4,	/* on the server's reap list */
	CONN_WANT_WRITE = 1 << 5, /* write event armed */
	CONN_PURGING = 1 << 6,	/* its names are still being removed */
	CONN_REAP_WAIT = 1 << 7, /* free once the purge is done */
	CONN_DOOMED = 1 << 8,	/* to close at the end of the loop turn */
	CONN_YIELDED = 1 << 9	/* used its turn: on the server's ready list */
};

/* Input is not read or dispatched while any of these is set. */
#define CONN_NO_INPUT	(CONN_DEAD | CONN_PAUSED | CONN_DOOMED | CONN_YIELDED)

struct conn {
	TAILQ_ENTRY(conn)	 link;		/* server's conns */
	TAILQ_ENTRY(conn)	 pend_link;	/* flush list */
	TAILQ_ENTRY(conn)	 reap_link;	/* reap list */
	TAILQ_ENTRY(conn)	 purge_link;	/* purging list */
	TAILQ_ENTRY(conn)	 doom_link;	/* doomed list */
	TAILQ_ENTRY(conn)	 ready_link;	/* ready list: input left over */
	TAILQ_ENTRY(conn)	 drain_link;	/* draining list, oldest first */
	struct reg_client	 rc;		/* what it owns */
	struct server		*srv;
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_drain;
	struct evbuffer		*in;
	struct evbuffer		*out;
	LIST_HEAD(, pcall)	 calls_out;	/* it made, pending */
	LIST_HEAD(, pcall)	 calls_in;	/* made to it, pending */
	LIST_HEAD(, pawait)	 awaits;	/* its awaits pending */
	LIST_HEAD(, sub)	 subs;		/* its subscriptions */
	uint32_t		 ncalls_out;	/* calls and awaits */
	uint32_t		 nsubs;
	uint64_t		 next_sub;
	struct guard		 guard;
	size_t			 scanned;	/* bytes of in scanned */
	size_t			 drain_held;	/* output when it began to drain */
	struct policy_peer	 peer;		/* groups: its own copy */
	uint64_t		 id;
	int			 fd;		/* -1 once released */
	unsigned		 flags;
	char			 label[64];	/* printable, for logs */
};

/* Adopt an accepted socket; NULL (fd closed) on failure. */
struct conn	*conn_new(struct server *, int fd);
/*
 * Queue bytes for the client and schedule a flush.  With bounded, refuse
 * (return PR_ERR_BUSY) when they would take its output past max_outbuf.
 * 0, PR_ERR_BUSY, or -ENOMEM (then the connection is closed).
 */
int		 conn_write(struct conn *, const void *p, size_t len,
		    bool bounded);
/*
 * The one close path: idempotent.  Purges the registry state at once;
 * with drain, flushes what is queued (bounded by drain_ms and, over all
 * draining connections, by max_drain_bytes) before the socket closes.
 * Until its descriptor is closed a connection keeps its place under
 * max_conns and max_conns_per_uid.  Freed later, never under a caller's
 * feet.
 */
void		 conn_close(struct conn *, const char *reason, bool drain);
/*
 * No memory for this client: a best-effort "limit" notice, then a close at
 * the end of the loop turn (it may be called from inside a registry
 * callback, where purging another client at once is not safe).
 */
void		 conn_out_of_memory(struct conn *);
/*
 * Bytes that many connections send alike (a publish, the entry that
 * answers many awaits, an event for many subscribers): queued by
 * reference, so a fan-out holds one copy however many connections it
 * reaches.  Freed when the last connection has written (or dropped) it.
 */
struct conn_shared {
	unsigned	 refs;
	size_t		 len;
	char		 data[];
};

/* A shared copy of len bytes, its one reference the caller's; NULL. */
struct conn_shared *conn_shared_new(const void *p, size_t len);
void		 conn_shared_put(struct conn_shared *);
/*
 * Like conn_write, for head (copied) then the shared bytes; the bound
 * counts both.  0, PR_ERR_BUSY, or -ENOMEM (the connection is doomed,
 * and nothing of this message was queued).
 */
int		 conn_write_shared(struct conn *, const void *head,
		    size_t hlen, struct conn_shared *, bool bounded);
/* Would len more bytes take c's output past its bound? */
bool		 conn_would_block(const struct conn *, size_t len);
/* Close the connections doomed this loop turn. */
void		 conn_close_doomed(struct server *);
/* Write queued output; called by the server's flush. */
void		 conn_flush(struct conn *);
/* Release everything now (the purge finished at once if need be). */
void		 conn_free(struct conn *);
/* Free the connections closed this loop turn (not those still purging). */
void		 conn_reap_all(struct server *);
/* Remove the next slice of purging connections' names; true when more
 * remain for the next loop turn. */
bool		 conn_purge_slices(struct server *);
/*
 * Serve, one turn each, the connections whose input outlasted their last
 * turn; those that use up this one too wait for the next.
 */
void		 conn_serve_ready(struct server *);
/* Set the label shown in logs (bytes already checked as UTF-8). */
void		 conn_set_label(struct conn *, const char *s, size_t len);

/* The connection that embeds a registry client. */
static inline struct conn *
conn_of(struct reg_client *rc)
{
	return (struct conn *)(void *)((char *)rc - offsetof(struct conn, rc));
}
#endif /* CONN_H */
