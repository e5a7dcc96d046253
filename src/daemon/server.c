/*
 * server.c: the context, the listener and the loop (see server.h).
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <sodium.h>
#include <systemd/sd-daemon.h>

#include "cluster.h"
#include "conn.h"
#include "dispatch.h"
#include "paths.h"
#include "scrape.h"
#include "server.h"
#include "now.h"

#define ACCEPT_RETRY_MS	200
/* However long drain_ms is, a stop waits at most this for slow readers. */
#define SHUTDOWN_DRAIN_MS	3000
#define LISTEN_BACKLOG	1024

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	conn_end_turn(&s->conns);
	/* Stopping, every client has taken its last bytes, and the
	 * cluster has its lease back: done (ev_stop bounds the wait). */
	if (s->stopping && TAILQ_EMPTY(&s->conns.all) &&
	    (s->cluster == NULL || cluster_left(s->cluster)))
		event_base_loopexit(s->base, NULL);
}

static void server_schedule_purge(struct server *);

static void
purge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (registry_purge_slice(&s->reg, SERVER_PURGE_SLICE))
		server_schedule_purge(s);
}

/* A zero timer, not an active event: other clients' I/O is polled and
 * served before it runs. */
static void
schedule_next_turn(struct event *ev)
{
	static const struct timeval now = { 0, 0 };

	if (!evtimer_pending(ev, NULL))
		evtimer_add(ev, &now);
}

/* Run a purge slice in the next loop turn, after polling for I/O. */
static void
server_schedule_purge(struct server *s)
{
	schedule_next_turn(s->ev_purge);
}

/*
 * The connection layer's gone hook: c closed, nothing more is written to
 * it.  Its calls settle first (callers waiting on it hear down now), then
 * its subscriptions end, then its registry record goes to the purge
 * queue: its names vanish at once and the downs of PROTOCOL.md section 8
 * fire, but for a slice's worth of names, the rest in later loop turns.
 */
static void
server_conn_gone(void *arg, struct conn *c)
{
	struct server *s = arg;

	calls_peer_gone(&s->calls, c);
	subs_peer_gone(&s->subs, c);
	if (s->cluster != NULL)
		subs_peer_gone(&s->csubs, c);
	if (s->cluster != NULL)
		cluster_peer_gone(s->cluster, c);
	if (!registry_client_close(&s->reg, c->rc, SERVER_PURGE_SLICE))
		server_schedule_purge(s);
	c->rc = NULL;
}

static const struct conn_ops server_conn_ops = {
	.batch = dispatch_batch,
	.request = dispatch_request,
	.gone = server_conn_gone,
};

/* How calls and subscriptions reach their peers: connections. */
static int
server_peer_write(void *arg, void *peer, const void *p, size_t len,
    bool bounded)
{
	(void)arg;
	return conn_write(peer, p, len, bounded);
}

static int
server_peer_write_shared(void *arg, void *peer, const void *head,
    size_t hlen, struct conn_shared *sh, bool bounded)
{
	(void)arg;
	return conn_write_shared(peer, head, hlen, sh, bounded);
}

static void
server_peer_out_of_memory(void *arg, void *peer)
{
	(void)arg;
	conn_out_of_memory(peer);
}

static const struct peer_ops server_peer_ops = {
	.write = server_peer_write,
	.write_shared = server_peer_write_shared,
	.out_of_memory = server_peer_out_of_memory,
};

/* The registry's gone hook: calls made through the registration fail. */
static void
server_reg_gone(void *arg, uint64_t gen)
{
	struct server *s = arg;

	calls_gen_gone(&s->calls, gen);
}

static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	conn_serve_ready(&s->conns);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct server *s = arg;

	(void)l;
	(void)sa;
	(void)salen;
	if (s->accept_paused) {
		log_info(&s->log, "accepting connections again");
		s->accept_paused = false;
	}
	/* conn_new applies max_conns: administrators have reserved places,
	 * and who they are is known only from the peer's credentials. */
	conn_new(&s->conns, fd);
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	/* accept_paused stays set until an accept succeeds: one log line
	 * per shortage, not one per retry. */
	evconnlistener_enable(s->listener);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct server *s = arg;
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	/*
	 * Out of descriptors: the pending connection keeps the listener
	 * readable, so retrying at once would spin.  Pause, retry later.
	 */
	evconnlistener_disable(l);
	if (!s->accept_paused)
		log_warn(&s->log, "accept: %s; pausing accepts, retrying "
		    "every %d ms", evutil_socket_error_to_string(err),
		    ACCEPT_RETRY_MS);
	s->accept_paused = true;
	evtimer_add(s->ev_accept_retry, &tv);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	event_base_loopexit(s->base, NULL);
}

/*
 * SIGTERM, SIGINT: stop accepting, tell every client, let their output
 * drain for at most drain_ms, then leave the loop.  A second signal
 * leaves at once.
 */
static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	uint64_t ms = s->cfg.drain_ms < SHUTDOWN_DRAIN_MS ? s->cfg.drain_ms :
	    SHUTDOWN_DRAIN_MS;
	struct timeval tv = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_usec = (suseconds_t)(ms % 1000) * 1000,
	};
	const char *why = sig == SIGINT ? "interrupted" : "terminated";
	struct pr_out note;
	struct conn *c;

	(void)what;
	if (s->stopping) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	log_info(&s->log, "received signal %d, shutting down", (int)sig);
	sd_notify(0, "STOPPING=1");
	s->stopping = true;
	s->calls.quiet = true;
	/* The node goes with its lease: the others see nodedown at once,
	 * not a TTL later. */
	if (s->cluster != NULL)
		cluster_leave(s->cluster);
	if (s->listener != NULL)
		evconnlistener_disable(s->listener);
	event_del(s->ev_accept_retry);
	/* Its own buffer: s->push is dispatch's. */
	proto_out_init(&note);
	if (proto_push_shutdown(&note, why) == 0) {
		TAILQ_FOREACH(c, &s->conns.all, link)
			conn_write(c, proto_out_data(&note),
			    proto_out_len(&note), false);
	}
	proto_out_deinit(&note);
	/* Close with drain: what is queued still goes out.  (conn_close
	 * frees nothing, so walking the list is safe.) */
	TAILQ_FOREACH(c, &s->conns.all, link)
		conn_close(c, "shutdown", true);
	evtimer_add(s->ev_stop, &tv);
	event_active(s->ev_flush, EV_TIMEOUT, 0);
}

/* Tell systemd how we are doing (a no-op without NOTIFY_SOCKET). */
static void
notify_status(struct server *s, const char *extra)
{
	sd_notifyf(0, "%sSTATUS=%llu connections, %llu names, %llu monitors",
	    extra, (unsigned long long)(s->conns.nconns - s->conns.ndraining),
	    (unsigned long long)s->reg.nnames,
	    (unsigned long long)s->reg.nmonitors);
}

/* The watchdog ping comes from the loop itself: a hung loop misses it. */
static void
heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	notify_status(s, "WATCHDOG=1\n");
}

/*
 * SIGHUP: build the configuration again (defaults, file, command line);
 * swap in limits and log level only if it is valid.
 */
static void
reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	struct config cfg;
	struct conn *c;

	(void)sig;
	(void)what;
	sd_notify(0, "RELOADING=1");
	if (config_build(&cfg, s->argc, s->argv, stderr, stderr) !=
	    CONFIG_RUN) {
		log_err(&s->log, "reload: %s is invalid; keeping the running "
		    "configuration", s->cfg.config_path[0] ?
		    s->cfg.config_path : "the command line");
		notify_status(s, "READY=1\n");
		return;
	}
	if (strcmp(cfg.socket_path, s->cfg.socket_path) != 0 ||
	    cfg.socket_mode != s->cfg.socket_mode ||
	    strcmp(cfg.socket_group, s->cfg.socket_group) != 0)
		log_warn(&s->log, "reload: socket settings change at the next "
		    "start");
	if (strcmp(cfg.metrics, s->cfg.metrics) != 0)
		log_warn(&s->log, "reload: the metrics address changes at the "
		    "next start");
	s->cfg.max_message = cfg.max_message;
	s->cfg.max_names = cfg.max_names;
	s->cfg.max_monitors = cfg.max_monitors;
	s->cfg.max_calls = cfg.max_calls;
	s->calls.max_calls = (uint32_t)cfg.max_calls;
	if (cfg.history != s->cfg.history) {
		if (subs_resize(&s->subs, (size_t)cfg.history) < 0) {
			log_err(&s->log, "reload: no memory for a history of "
			    "%llu events; keeping none",
			    (unsigned long long)cfg.history);
			cfg.history = 0;
		}
		s->cfg.history = cfg.history;
	}
	s->cfg.max_outbuf = cfg.max_outbuf;
	s->cfg.max_conns = cfg.max_conns;
	s->cfg.drain_ms = cfg.drain_ms;
	s->cfg.log_level = cfg.log_level;
	s->log.level = cfg.log_level;
	s->reg.max_names = (uint32_t)cfg.max_names;
	s->reg.max_monitors = (uint32_t)cfg.max_monitors;
	s->reg.max_names_per_uid = cfg.max_names_per_uid;
	s->cfg.max_conns_per_uid = cfg.max_conns_per_uid;
	s->cfg.reserved_conns = cfg.reserved_conns;
	s->cfg.max_drain_bytes = cfg.max_drain_bytes;
	strcpy(s->cfg.admin_group, cfg.admin_group);
	/* The new rules judge the next request; names held stay held. */
	s->cfg.policy = cfg.policy;
	/* Messages under way keep the bound they started with. */
	TAILQ_FOREACH(c, &s->conns.all, link) {
		if (c->guard.size == 0)
			c->guard.max = cfg.max_message;
	}
	log_info(&s->log, "reloaded %s: max_message=%llu max_conns=%llu",
	    cfg.config_path[0] ? cfg.config_path : "the configuration",
	    (unsigned long long)cfg.max_message,
	    (unsigned long long)cfg.max_conns);
	notify_status(s, "READY=1\n");
}

/*
 * Is a daemon answering on path?  1 live, 0 stale, -1 on error (errno).
 * Blocking connect is fine: it runs once, before the loop starts.
 */
static int
socket_is_live(const struct sockaddr_un *sun)
{
	int fd, r;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (r == 0)
		return 1;
	if (errno == ECONNREFUSED || errno == ENOENT)
		return 0;
	return -1;
}

/* The socket file's mode, as configured or by who runs the daemon. */
static mode_t
socket_mode(const struct server *s)
{
	if (s->cfg.socket_mode != UINT64_MAX)
		return (mode_t)s->cfg.socket_mode;
	/* Private per-user registry; a root daemon serves every user. */
	return getuid() == 0 ? 0666 : 0600;
}

/* The socket file's group, as configured. */
static int
set_socket_group(struct server *s, const char *path)
{
	struct group *gr;

	if (s->cfg.socket_group[0] == '\0')
		return 0;
	/* Looked up once at start, never in the loop. */
	if ((gr = getgrnam(s->cfg.socket_group)) == NULL) {
		log_err(&s->log, "socket_group: no group '%s'",
		    s->cfg.socket_group);
		return -1;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) < 0) {
		log_err(&s->log, "chown %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Bind and listen on the configured or default path. */
/* Name the socket systemd passed in the logs: its path when it has one. */
static void
server_activated_path(struct server *s, int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);

	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path) &&
	    sun.sun_path[0] != '\0')
		snprintf(s->socket_path, sizeof(s->socket_path),
		    "%.*s (from systemd)", (int)(len -
		    offsetof(struct sockaddr_un, sun_path)), sun.sun_path);
	else
		snprintf(s->socket_path, sizeof(s->socket_path),
		    "(a socket from systemd)");
}

static int
server_listen(struct server *s)
{
	struct sockaddr_un sun;
	struct stat st;
	char err[256], final[sizeof(sun.sun_path)];
	bool staged;
	mode_t old;
	int fd = -1;

	/* Socket activation: systemd holds the socket across restarts. */
	switch (sd_listen_fds(1)) {
	case 0:
		break;
	case 1:
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			log_err(&s->log, "the socket systemd passed is not a "
			    "listening Unix stream socket");
			return -1;
		}
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
		s->activated = true;
		server_activated_path(s, fd);
		s->listener = evconnlistener_new(s->base, accept_cb, s,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (s->listener == NULL) {
			log_err(&s->log, "cannot listen on the socket from "
			    "systemd");
			return -1;
		}
		evconnlistener_set_error_cb(s->listener, accept_error_cb);
		return 0;
	default:
		log_err(&s->log, "systemd passed more than one socket");
		return -1;
	}
	if (s->cfg.socket_path[0] != '\0')
		snprintf(s->socket_path, sizeof(s->socket_path), "%s",
		    s->cfg.socket_path);
	else if (paths_default_socket(s->socket_path, sizeof(s->socket_path),
	    true, err, sizeof(err)) < 0) {
		log_err(&s->log, "%s", err);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(s->socket_path) >= sizeof(sun.sun_path)) {
		log_err(&s->log, "socket path too long: %s", s->socket_path);
		return -1;
	}
	strcpy(sun.sun_path, s->socket_path);
	if (lstat(s->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err(&s->log, "%s exists and is not a socket; "
			    "leaving it alone", s->socket_path);
			return -1;
		}
		switch (socket_is_live(&sun)) {
		case 1:
			log_err(&s->log, "another procregd is running on %s",
			    s->socket_path);
			return -1;
		case 0:
			log_info(&s->log, "removing stale socket %s",
			    s->socket_path);
			if (unlink(s->socket_path) < 0 && errno != ENOENT) {
				log_err(&s->log, "cannot remove %s: %s",
				    s->socket_path, strerror(errno));
				return -1;
			}
			break;
		default:
			log_err(&s->log, "cannot probe %s: %s", s->socket_path,
			    strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_err(&s->log, "socket: %s", strerror(errno));
		return -1;
	}
	/*
	 * Bound and listening under a name of its own, then renamed into
	 * place: whoever finds the path finds a socket that accepts (a
	 * client waiting for the file never meets "connection refused").
	 */
	strcpy(final, sun.sun_path);
	staged = (size_t)snprintf(sun.sun_path, sizeof(sun.sun_path),
	    "%s.%ld~", final, (long)getpid()) < sizeof(sun.sun_path);
	if (!staged)
		strcpy(sun.sun_path, final);
	else
		unlink(sun.sun_path);	/* left by a crash of this pid's */
	/* The file is born with its mode: no window with another one. */
	old = umask(~socket_mode(s) & 0777);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		log_err(&s->log, "bind %s: %s", sun.sun_path, strerror(errno));
		goto fail;
	}
	umask(old);
	if (set_socket_group(s, sun.sun_path) < 0)
		goto fail_unlink;
	if (stat(sun.sun_path, &st) == 0) {
		s->socket_dev = st.st_dev;
		s->socket_ino = st.st_ino;
	}
	s->listener = evconnlistener_new(s->base, accept_cb, s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, LISTEN_BACKLOG, fd);
	if (s->listener == NULL) {
		log_err(&s->log, "listen %s: %s", s->socket_path,
		    strerror(errno));
		goto fail_unlink;
	}
	fd = -1;	/* the listener's now */
	if (staged && rename(sun.sun_path, final) < 0) {
		log_err(&s->log, "rename %s to %s: %s", sun.sun_path, final,
		    strerror(errno));
		goto fail_unlink;
	}
	evconnlistener_set_error_cb(s->listener, accept_error_cb);
	return 0;
fail_unlink:
	unlink(sun.sun_path);
fail:
	if (s->listener != NULL) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	if (fd >= 0)
		close(fd);
	s->socket_ino = 0;
	return -1;
}

/* Each connection is a descriptor: take every one the hard limit allows. */
static void
raise_fd_limit(struct server *s)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	log_info(&s->log, "file descriptor limit %llu",
	    (unsigned long long)rl.rlim_cur);
}

/*
 * Under systemd: ping the watchdog at half its period, else refresh the
 * status line now and then; nothing at all without NOTIFY_SOCKET.
 */
static void
start_heartbeat(struct server *s)
{
	uint64_t usec = 0;
	struct timeval tv;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
		s->heartbeat_us = usec / 2;
	else
		s->heartbeat_us = 5000000;
	tv.tv_sec = (time_t)(s->heartbeat_us / 1000000);
	tv.tv_usec = (suseconds_t)(s->heartbeat_us % 1000000);
	event_add(s->ev_heartbeat, &tv);
	notify_status(s, "READY=1\n");
}

/* Is v exactly one msgpack object within the wire's limits? */
static bool
server_value_ok(const void *v, size_t len)
{
	struct guard g;
	size_t used;

	guard_init(&g, len);
	return guard_scan(&g, v, len, &used) == GUARD_OBJECT && used == len;
}

/* The registry's name hash, for the cluster's index too: a request's
 * name, hashed ahead for the batch, costs nothing more. */
static uint64_t
server_name_hash(const void *reg, const char *name, size_t len)
{
	return registry_hash(reg, name, len);
}

/* Join the cluster when one is configured (in the background: local
 * names are served at once). */
static int
server_cluster_start(struct server *s)
{
	const struct config *cfg = &s->cfg;
	struct cluster_config cc = {
		.etcd = cfg->etcd,
		.node = cfg->node,
		.prefix = cfg->cluster_prefix,
		.address = "",
		.lease_ttl = (unsigned)cfg->lease_ttl,
		.timeout_ms = (unsigned)cfg->etcd_timeout_ms,
		.ca_file = cfg->etcd_ca[0] ? cfg->etcd_ca : NULL,
		.cert_file = cfg->etcd_cert[0] ? cfg->etcd_cert : NULL,
		.key_file = cfg->etcd_key[0] ? cfg->etcd_key : NULL,
	};
	uint8_t key[16];
	char err[256];

	if (cfg->etcd[0] == '\0')
		return 0;
	randombytes_buf(key, sizeof(key));
	cc.hash_key = key;
	cc.value_ok = server_value_ok;
	cc.hash = server_name_hash;
	cc.hash_arg = &s->reg;
	/* Cluster subscriptions: ids from 2^32 up, so that one
	 * unsubscribe id names one subscription of either scope. */
	if (subs_init(&s->csubs, (size_t)cfg->history, &s->reg,
	    &server_peer_ops, s) < 0) {
		log_err(&s->log, "out of memory");
		return -1;
	}
	s->csubs.id_base = SERVER_CLUSTER_SUB_BASE;
	if (cluster_new(&s->cluster, s->base, &cc, &dispatch_cluster_ops, s,
	    err, sizeof(err)) < 0) {
		log_err(&s->log, "cluster: %s", err);
		subs_deinit(&s->csubs);
		return -1;
	}
	log_info(&s->log, "cluster: joining as node %s through %s (prefix %s, "
	    "lease TTL %llu s)", cfg->node, cfg->etcd, cfg->cluster_prefix,
	    (unsigned long long)cfg->lease_ttl);
	return 0;
}

int
server_init(struct server *s, const struct config *cfg)
{
	int argc = s->argc;
	char **argv = s->argv;

	unsigned char rnd[16];

	memset(s, 0, sizeof(*s));
	s->argc = argc;
	s->argv = argv;
	s->cfg = *cfg;
	log_init(&s->log, "procregd", cfg->log_level);
	conn_table_init(&s->conns);
	s->conns.ops = &server_conn_ops;
	s->conns.arg = s;
	s->conns.log = &s->log;
	s->conns.cfg = &s->cfg;
	s->conns.reg = &s->reg;
	proto_out_init(&s->out);
	proto_out_init(&s->push);
	proto_out_init(&s->scratch);
	s->start_mono_ms = now_mono_ms();
	if (registry_init(&s->reg, (uint32_t)cfg->max_names,
	    (uint32_t)cfg->max_monitors, dispatch_down, s) < 0 ||
	    subs_init(&s->subs, (size_t)cfg->history, &s->reg,
	    &server_peer_ops, s) < 0 ||
	    proto_decoder_init(&s->dec) < 0 ||
	    (s->list_buf = calloc(PR_LIST_MAX, sizeof(*s->list_buf))) == NULL) {
		log_err(&s->log, "out of memory");
		return -1;
	}
	s->reg.max_names_per_uid = cfg->max_names_per_uid;
	s->reg.gone = server_reg_gone;
	s->reg.event = dispatch_event;
	s->reg.clock = now_epoch_ms;
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(s->boot, sizeof(s->boot), rnd, sizeof(rnd));
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(s);
	if ((s->base = event_base_new()) == NULL) {
		log_err(&s->log, "cannot create the event loop");
		return -1;
	}
	s->conns.base = s->base;
	if (calls_init(&s->calls, s->base, &s->reg, (uint32_t)cfg->max_calls,
	    &server_peer_ops, s) < 0) {
		log_err(&s->log, "out of memory");
		return -1;
	}
	if ((s->conns.fanout = evbuffer_new()) == NULL) {
		log_err(&s->log, "out of memory");
		return -1;
	}
	s->ev_flush = event_new(s->base, -1, 0, flush_cb, s);
	s->ev_accept_retry = evtimer_new(s->base, accept_retry_cb, s);
	s->ev_purge = evtimer_new(s->base, purge_cb, s);
	s->ev_ready = evtimer_new(s->base, ready_cb, s);
	s->ev_stop = evtimer_new(s->base, stop_cb, s);
	s->ev_sigint = evsignal_new(s->base, SIGINT, signal_cb, s);
	s->ev_sigterm = evsignal_new(s->base, SIGTERM, signal_cb, s);
	s->ev_sighup = evsignal_new(s->base, SIGHUP, reload_cb, s);
	s->ev_heartbeat = event_new(s->base, -1, EV_PERSIST, heartbeat_cb, s);
	s->conns.ev_flush = s->ev_flush;
	s->conns.ev_ready = s->ev_ready;
	if (s->ev_flush == NULL || s->ev_accept_retry == NULL ||
	    s->ev_purge == NULL || s->ev_ready == NULL ||
	    s->ev_stop == NULL ||
	    s->ev_sigint == NULL || s->ev_sigterm == NULL ||
	    s->ev_sighup == NULL || s->ev_heartbeat == NULL ||
	    event_add(s->ev_sigint, NULL) < 0 ||
	    event_add(s->ev_sigterm, NULL) < 0 ||
	    event_add(s->ev_sighup, NULL) < 0) {
		log_err(&s->log, "cannot set up events");
		return -1;
	}
	if (server_listen(s) < 0 || scrape_start(s) < 0 ||
	    server_cluster_start(s) < 0)
		return -1;
	start_heartbeat(s);
	log_info(&s->log, "listening on %s (protocol %d, max_message=%llu "
	    "max_conns=%llu)", s->socket_path, PR_PROTOCOL_VERSION,
	    (unsigned long long)cfg->max_message,
	    (unsigned long long)cfg->max_conns);
	return 0;
}

int
server_run(struct server *s)
{
	if (event_base_dispatch(s->base) < 0) {
		log_err(&s->log, "event loop failed");
		return -1;
	}
	return s->failed ? -1 : 0;
}

void
server_deinit(struct server *s)
{
	struct conn *c;
	struct stat st;

	while ((c = TAILQ_FIRST(&s->conns.all)) != NULL)
		conn_free(c);
	if (s->cluster != NULL)
		subs_deinit(&s->csubs);
	cluster_free(s->cluster);
	s->cluster = NULL;
	scrape_stop(s);
	if (s->listener != NULL)
		evconnlistener_free(s->listener);
	/* Remove the socket only if it is still the one we bound. */
	if (s->socket_ino != 0 && stat(s->socket_path, &st) == 0 &&
	    st.st_dev == s->socket_dev && st.st_ino == s->socket_ino)
		unlink(s->socket_path);
	if (s->ev_flush)
		event_free(s->ev_flush);
	if (s->ev_accept_retry)
		event_free(s->ev_accept_retry);
	if (s->ev_purge)
		event_free(s->ev_purge);
	if (s->ev_ready)
		event_free(s->ev_ready);
	if (s->ev_stop)
		event_free(s->ev_stop);
	if (s->ev_sigint)
		event_free(s->ev_sigint);
	if (s->ev_sigterm)
		event_free(s->ev_sigterm);
	if (s->ev_sighup)
		event_free(s->ev_sighup);
	if (s->ev_heartbeat)
		event_free(s->ev_heartbeat);
	calls_deinit(&s->calls);
	subs_deinit(&s->subs);
	if (s->conns.fanout != NULL)
		evbuffer_free(s->conns.fanout);
	if (s->base)
		event_base_free(s->base);
	registry_deinit(&s->reg);
	proto_decoder_deinit(&s->dec);
	proto_out_deinit(&s->out);
	proto_out_deinit(&s->push);
	proto_out_deinit(&s->scratch);
	free(s->list_buf);
	free(s->sort_buf);
}
