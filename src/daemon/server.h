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
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "registry.h"
#include "subs.h"

struct cluster;
struct cluster_ops;
struct evhttp;

/* The cluster's hooks into dispatch (dispatch_cluster.c). */
extern const struct cluster_ops dispatch_cluster_ops;

struct counters {
	uint64_t	requests;
	uint64_t	messages;
	uint64_t	downs;
	uint64_t	notifications_ignored;
};

/*
 * Names removed per loop turn when clients with many go: about 1.2 ms of
 * work at a million names (each leaves the hash index, the ordered index
 * and its owner's list), so a purge of a million names never holds up
 * other clients for long.
 */
#define SERVER_PURGE_SLICE	4096u

/* Cluster subscriptions' ids start above this (PROTOCOL.md §12). */
#define SERVER_CLUSTER_SUB_BASE	(UINT64_C(1) << 32)

/* What dispatch learnt of a batch of framed requests (dispatch_batch). */
struct server_batch {
	struct pr_peek	 peeks[CONN_BATCH];
	uint64_t	 hashes[CONN_BATCH];	/* of peeks[i].name, or 0 */
	size_t		 n;
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
	struct event		*ev_ready;	/* conns' ready list's turn */
	struct event		*ev_sigint;
	struct event		*ev_sigterm;
	struct event		*ev_sighup;
	struct event		*ev_heartbeat;	/* systemd watchdog, status */
	struct registry		 reg;
	struct calls		 calls;
	struct subs		 subs;
	struct subs		 csubs;		/* cluster scope (§12) */
	struct pr_decoder	 dec;
	struct pr_out		 out;		/* replies */
	/*
	 * Notifications to others: dispatch's alone, built and queued
	 * before the next registry call (a registry change comes back
	 * into dispatch_event, which builds its own in it).
	 */
	struct pr_out		 push;
	struct pr_out		 scratch;	/* values being stored */
	struct server_batch	 batch;
	struct reg_name		**list_buf;	/* PR_LIST_MAX entries */
	void			*sort_buf;	/* keys' sorting, kept */
	size_t			 sort_bytes;
	struct conn_table	 conns;
	/*
	 * Work done for the request being served: entries walked, copies
	 * fanned out.  Handlers that walk a table add to it; it is charged
	 * to the connection's turn.
	 */
	uint64_t		 work;
	struct counters		 stats;
	struct metrics		 metrics;	/* for operators (scrape.c) */
	struct evhttp		*scrape;	/* the metrics listener */
	struct cluster		*cluster;	/* NULL: single host */
	bool			 failed;	/* stop: exit non-zero */
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

#endif /* SERVER_H */
