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

#include "config.h"
#include "guard.h"
#include "log.h"
#include "policy.h"
#include "registry.h"

struct conn;
struct evbuffer;
struct event;
struct event_base;

/*
 * Where a connection is in its life.  Open: read and served.  Draining:
 * closed (the layers above have let it go), its last replies still being
 * written.  Closed: its descriptor is closed; freed at the end of the
 * loop turn, so nobody up the stack holds a dangling pointer.
 */
enum conn_state {
	CONN_OPEN,
	CONN_DRAINING,
	CONN_CLOSED
};

enum conn_flag {
	CONN_PENDING = 1 << 0,	/* on the table's flush list */
	CONN_PAUSED = 1 << 1,	/* its unread replies passed the bound */
	CONN_WANT_WRITE = 1 << 2, /* write event armed */
	CONN_DOOMED = 1 << 3,	/* open, to close at the end of the turn */
	CONN_YIELDED = 1 << 4	/* used its turn: on the ready list */
};

/* Requests framed together and handed up as one batch, at most. */
#define CONN_BATCH	16

/*
 * What the connection layer asks of the layer above (the server).
 * batch: these framed requests (request i is p[ends[i - 1]..ends[i]),
 * the first from off) are about to be served, for cache hints.  request:
 * serve one; *work is what it cost (table entries walked, copies fanned
 * out, at least 1); 0, or -ENOMEM or -EINVAL when it does not decode.
 * gone: the connection closed; what is kept about it elsewhere must go
 * now, since nothing more is written to it.
 */
struct conn_ops {
	void	(*batch)(void *arg, struct conn *, const char *p, size_t off,
		    const size_t *ends, size_t n);
	int	(*request)(void *arg, struct conn *, size_t i, const char *p,
		    size_t len, uint64_t *work);
	void	(*gone)(void *arg, struct conn *);
};

/* Every connection, and the lists a loop turn works through. */
struct conn_table {
	const struct conn_ops	*ops;
	void			*arg;		/* for ops */
	struct event_base	*base;
	struct logger		*log;
	const struct config	*cfg;		/* changes on reload */
	struct registry		*reg;		/* records, per-uid counts */
	struct event		*ev_flush;	/* the end of the loop turn */
	struct event		*ev_ready;	/* the ready list's next turn */
	struct evbuffer		*fanout;	/* conn_write_shared's */
	TAILQ_HEAD(, conn)	 all;
	TAILQ_HEAD(, conn)	 pending;	/* output to flush */
	TAILQ_HEAD(, conn)	 doomed;	/* to close (out of memory) */
	TAILQ_HEAD(, conn)	 ready;		/* input left for later */
	TAILQ_HEAD(, conn)	 draining;	/* oldest first */
	TAILQ_HEAD(, conn)	 closed;	/* to free */
	uint64_t		 nconns;	/* holding a descriptor */
	uint64_t		 ndraining;	/* of which draining */
	uint64_t		 drain_bytes;	/* they held when they closed */
	uint64_t		 next_id;
	uint64_t		 opened;	/* ever */
};

/* Input is not read or dispatched while any of these is set. */
#define CONN_NO_INPUT	(CONN_PAUSED | CONN_DOOMED | CONN_YIELDED)

struct conn {
	TAILQ_ENTRY(conn)	 link;		/* table's all */
	TAILQ_ENTRY(conn)	 pend_link;	/* flush list */
	TAILQ_ENTRY(conn)	 doom_link;	/* doomed list */
	TAILQ_ENTRY(conn)	 ready_link;	/* ready list: input left over */
	TAILQ_ENTRY(conn)	 state_link;	/* draining or closed list */
	struct conn_table	*tab;
	struct reg_client	*rc;		/* NULL once it is gone */
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_drain;
	struct evbuffer		*in;
	struct evbuffer		*out;
	struct guard		 guard;
	size_t			 scanned;	/* bytes of in scanned */
	size_t			 drain_held;	/* output when it began to drain */
	struct policy_peer	 peer;		/* groups: its own copy */
	uint64_t		 id;
	uint32_t		 uid;		/* holds a descriptor of uid */
	int			 fd;		/* -1 once closed */
	enum conn_state		 state;
	unsigned		 flags;
	char			 label[64];	/* printable, for logs */
};

/* An empty table; the caller fills in ops, arg and the rest. */
void		 conn_table_init(struct conn_table *);
/* Bytes queued for every connection, not yet written (a walk: for
 * reports, not for the request path). */
uint64_t	 conn_table_unsent(const struct conn_table *);
/* Adopt an accepted socket; NULL (fd closed) on failure. */
struct conn	*conn_new(struct conn_table *, int fd);
/*
 * Queue bytes for the client and schedule a flush.  With bounded, refuse
 * (return PR_ERR_BUSY) when they would take its output past max_outbuf.
 * 0, PR_ERR_BUSY, or -ENOMEM (then the connection is closed).
 */
int		 conn_write(struct conn *, const void *p, size_t len,
		    bool bounded);
/*
 * The one close path: idempotent.  The table's gone hook lets the layers
 * above drop the connection at once; with drain, what is queued is
 * flushed (bounded by drain_ms and, over all draining connections, by
 * max_drain_bytes) before the socket closes.  Until its descriptor is
 * closed a connection keeps its place under max_conns and
 * max_conns_per_uid.  Freed at the end of the loop turn, never under a
 * caller's feet.  The reason goes to the log (NULL: no line).
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
/*
 * The end of a loop turn: close the connections doomed in it, write
 * every pending output, free the connections closed.
 */
void		 conn_end_turn(struct conn_table *);
/* Close it (without draining) and free it now: the daemon is exiting. */
void		 conn_free(struct conn *);
/* Send a connection we will not keep a "limit" notice, close it. */
void		 conn_refuse(struct conn_table *, int fd, const char *why);
/*
 * Serve, one turn each, the connections whose input outlasted their last
 * turn; those that use up this one too wait for the next.
 */
void		 conn_serve_ready(struct conn_table *);
/* Set the label shown in logs (bytes already checked as UTF-8). */
void		 conn_set_label(struct conn *, const char *s, size_t len);

#endif /* CONN_H */
