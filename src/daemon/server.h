/*
 * server.h: the daemon's one context struct and its event loop: the
 * listener, signals, and the once-per-loop-turn flush of every connection
 * with pending output.
 */
#ifndef SERVER_H
#define SERVER_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>

#include "calls.h"
#include "config.h"
#include "log.h"
#include "proto.h"
#include "registry.h"
#include "subs.h"

struct conn;

struct counters {
	uint64_t	requests;
	uint64_t	messages;
	uint64_t	downs;
	uint64_t	notifications_ignored;
	uint64_t	connections_total;
};

/* All mutable daemon state.  Passed explicitly; there are no globals. */
struct server {
	struct config		 cfg;
	struct logger		 log;
	struct event_base	*base;
	struct evconnlistener	*listener;
	struct event		*ev_flush;	/* runs after each I/O batch */
	struct event		*ev_accept_retry;
	struct event		*ev_purge;	/* the next purge slice */
	struct event		*ev_ready;	/* the ready list's next turn */
	struct event		*ev_answers;	/* the next slice of awaits */
	struct event		*ev_sigint;
	struct event		*ev_sigterm;
	struct event		*ev_sighup;
	struct event		*ev_heartbeat;	/* systemd watchdog, status */
	struct registry		 reg;
	struct calls		 calls;
	struct subs		 subs;
	struct pr_decoder	 dec;
	struct pr_out		 out;		/* replies */
	struct pr_out		 push;		/* notifications to others */
	struct pr_out		 scratch;	/* values being stored */
	struct evbuffer		*fanout;	/* conn_write_shared's staging */
	struct reg_name		**list_buf;	/* PR_LIST_MAX entries */
	void			*sort_buf;	/* keys' sorting, kept */
	size_t			 sort_bytes;
	TAILQ_HEAD(, conn)	 conns;		/* every connection */
	TAILQ_HEAD(, conn)	 pending;	/* output to flush */
	TAILQ_HEAD(, conn)	 reap;		/* closed, to free */
	TAILQ_HEAD(, conn)	 purging;	/* closed, names still going */
	TAILQ_HEAD(, conn)	 doomed;	/* to close (out of memory) */
	TAILQ_HEAD(, conn)	 ready;		/* input left for a later turn */
	TAILQ_HEAD(, conn)	 draining;	/* closed, flushing; oldest first */
	/*
	 * Work done for the connection being served this turn: entries
	 * walked, copies fanned out.  Handlers that walk a table add to it;
	 * conn ends the turn when it passes the budget.
	 */
	uint64_t		 work;
	uint64_t		 nconns;	/* holding a descriptor */
	uint64_t		 ndraining;	/* of which closed, flushing */
	uint64_t		 drain_bytes;	/* they held when they closed */
	uint64_t		 next_conn_id;
	struct counters		 stats;
	uint64_t		 start_mono_ms;
	char			 boot[33];
	char			 socket_path[108];
	dev_t			 socket_dev;	/* to unlink only our own */
	ino_t			 socket_ino;
	bool			 accept_paused;
	bool			 activated;	/* socket from systemd */
	bool			 stopping;	/* draining before exit */
	struct event		*ev_stop;	/* the drain's deadline */
	uint64_t		 heartbeat_us;	/* 0: none */
	int			 argc;		/* for reloads */
	char			**argv;
};

/*
 * Set up the context, the registry and the listening socket (the caller
 * sets argc and argv first).  0, or -1 after logging why (another daemon
 * answers on the path, the path is not a socket, ...).
 */
int	server_init(struct server *, const struct config *);
/* Run until SIGTERM or SIGINT; 0 on a clean stop. */
int	server_run(struct server *);
/* Close every connection, remove the socket file we created, free all. */
void	server_deinit(struct server *);
/* Make sure the flush event runs at the end of this loop turn. */
void	server_schedule_flush(struct server *);
/* Send a connection we will not keep a "limit" notice, close it. */
void	server_refuse(struct server *, int fd, const char *why);
/* Run a purge slice in the next loop turn, after polling for I/O. */
void	server_schedule_purge(struct server *);
/* Serve the ready list in the next loop turn, after polling for I/O. */
void	server_schedule_ready(struct server *);
/* Answer the next slice of awaits in the next loop turn. */
void	server_schedule_answers(struct server *);

#endif /* SERVER_H */
