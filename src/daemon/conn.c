/*
 * conn.c: client connection lifecycle (see conn.h).
 *
 * Input: one read() per readiness event straight into the input buffer,
 * then every complete object is framed by the guard, decoded and
 * dispatched; replies are appended to the output buffer and written once
 * per loop turn at its end (conn_end_turn), so a busy connection costs one read
 * and one write per batch of requests.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conn.h"
#include "proto.h"
#include "now.h"

#define READ_CHUNK	(64u * 1024u)
/*
 * A connection's turn: at most this many requests, units of work (table
 * entries walked, copies fanned out: handlers count them in s->work) or
 * microseconds, so that one client's pipeline never holds the others, or
 * the watchdog's heartbeat, for long.  What is left waits for a later
 * loop turn, after every other ready client.  A single request is never
 * cut: the walks stop at max_message, so none costs more than its answer.
 */
#define TURN_REQUESTS	128
#define TURN_WORK	20000
#define TURN_US		1000

static void	conn_read_cb(evutil_socket_t, short, void *);
static void	conn_write_cb(evutil_socket_t, short, void *);
static void	conn_drain_cb(evutil_socket_t, short, void *);
static void	conn_process(struct conn *);
static void	conn_release(struct conn *);

void
conn_table_init(struct conn_table *t)
{
	memset(t, 0, sizeof(*t));
	TAILQ_INIT(&t->all);
	TAILQ_INIT(&t->pending);
	TAILQ_INIT(&t->doomed);
	TAILQ_INIT(&t->ready);
	TAILQ_INIT(&t->draining);
	TAILQ_INIT(&t->closed);
}

uint64_t
conn_table_unsent(const struct conn_table *t)
{
	const struct conn *c;
	uint64_t n = 0;

	TAILQ_FOREACH(c, &t->all, link)
		n += evbuffer_get_length(c->out);
	return n;
}

/* Make sure the end of this loop turn comes (flush, close, free). */
static void
conn_schedule_end(struct conn_table *t)
{
	/*
	 * Same priority as I/O and appended to the active queue, so it runs
	 * once after every read callback of this loop turn.  Activating an
	 * active event is a no-op.
	 */
	event_active(t->ev_flush, EV_TIMEOUT, 0);
}

void
conn_refuse(struct conn_table *t, int fd, const char *why)
{
	struct pr_out o;

	(void)t;
	proto_out_init(&o);
	if (proto_push_error(&o, PR_ERR_LIMIT, why) == 0)
		(void)send(fd, proto_out_data(&o), proto_out_len(&o),
		    MSG_DONTWAIT | MSG_NOSIGNAL);
	proto_out_deinit(&o);
	close(fd);
}

/* An error notification for input that is not a request (best effort). */
static void
conn_error_notify(struct conn *c, enum pr_err e, const char *msg)
{
	struct pr_out o;

	proto_out_init(&o);
	if (proto_push_error(&o, e, msg) == 0)
		conn_write(c, proto_out_data(&o), proto_out_len(&o), false);
	proto_out_deinit(&o);
}

/*
 * No memory for this client's input or output: tell it (if that still
 * fits) and close it; the daemon and everyone else go on.
 */
void
conn_out_of_memory(struct conn *c)
{
	char note[64];
	size_t n;

	if (c->state != CONN_OPEN || (c->flags & CONN_DOOMED))
		return;
	/* Built on the stack, added without going through conn_write. */
	if ((n = proto_oom_notice(note, sizeof(note))) > 0)
		(void)evbuffer_add(c->out, note, n);
	c->flags |= CONN_DOOMED;
	event_del(c->ev_read);
	TAILQ_INSERT_TAIL(&c->tab->doomed, c, doom_link);
	conn_schedule_end(c->tab);
}

/*
 * The peer's supplementary groups as the kernel recorded them at
 * connect (SO_PEERGROUPS), into a copy the connection owns.  0, or -1
 * when they cannot be read: the connection is then refused, since a
 * peer whose groups are unknown could pass a "deny group:" rule.
 */
static int
read_peer_groups(int fd, struct policy_peer *peer)
{
	gid_t stack[64], *g = stack;
	socklen_t len = sizeof(stack);

	_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bits");
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		/* More than the stack holds: read into the copy itself.  A
		 * list that grew between the two calls is refused too. */
		if (errno != ERANGE || (g = malloc(len)) == NULL)
			return -1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
			free(g);
			return -1;
		}
	} else if (len > 0) {
		if ((g = malloc(len)) == NULL)
			return -1;
		memcpy(g, stack, len);
	}
	peer->ngroups = (uint32_t)(len / sizeof(gid_t));
	peer->groups = peer->ngroups > 0 ? (const uint32_t *)g : NULL;
	if (peer->ngroups == 0 && g != stack)
		free(g);
	return 0;
}

/* The oldest draining connection (of uid, unless any): its output is
 * dropped and its place given up.  False when there is none. */
static bool
drop_oldest_draining(struct conn_table *t, bool any, uint32_t uid)
{
	struct conn *c;

	TAILQ_FOREACH(c, &t->draining, state_link) {
		if (any || c->uid == uid)
			break;
	}
	if (c == NULL)
		return false;
	log_debug(t->log, "conn=%llu dropped %zu unsent bytes for a new "
	    "connection", (unsigned long long)c->id,
	    evbuffer_get_length(c->out));
	conn_release(c);
	return true;
}

/*
 * May a peer with these credentials have another descriptor?  Closing
 * connections still hold theirs, so the oldest of them (the peer's own,
 * for its user's cap) gives its place up first.  NULL, or why not.
 */
static const char *
conn_admit(struct conn_table *t, const struct policy_peer *peer, bool admin)
{
	uint64_t max = t->cfg->max_conns, reserved = t->cfg->reserved_conns;

	/* The user's own cap first: a connection it would refuse must not
	 * have cost another user's draining connection its place. */
	while (!admin && t->cfg->max_conns_per_uid != 0 &&
	    registry_uid_conns(t->reg, peer->uid) >=
	    t->cfg->max_conns_per_uid) {
		if (!drop_oldest_draining(t, false, peer->uid))
			return "this user has too many connections";
	}
	/* Some places stay free for an administrator to come and clean
	 * up, however many connections the others hold. */
	if (!admin)
		max -= reserved < max ? reserved : max - 1;
	while (t->nconns >= max) {
		if (!drop_oldest_draining(t, true, 0))
			return "too many connections; try again later";
	}
	return NULL;
}

struct conn *
conn_new(struct conn_table *t, int fd)
{
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t clen = sizeof(cred);
	struct policy_peer peer = { 0 };
	const char *why;
	struct conn *c = NULL;
	bool admin, held = false;

	/* Credentials are read once: the peer cannot change them later. */
	(void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
	peer.uid = (uint32_t)cred.uid;
	peer.gid = (uint32_t)cred.gid;
	if (read_peer_groups(fd, &peer) < 0) {
		log_warn(t->log, "refused uid=%u: cannot read its groups: %s",
		    (unsigned)peer.uid, strerror(errno));
		conn_refuse(t, fd, "the daemon cannot read this peer's "
		    "groups");
		return NULL;
	}
	admin = policy_is_admin(&t->cfg->policy, &peer, (uint32_t)getuid());
	if ((why = conn_admit(t, &peer, admin)) != NULL) {
		log_debug(t->log, "refused uid=%u: %s", (unsigned)peer.uid,
		    why);
		conn_refuse(t, fd, why);
		free((void *)peer.groups);
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->tab = t;
	c->fd = fd;
	c->peer = peer;
	c->uid = peer.uid;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->ev_read = event_new(t->base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	c->ev_write = event_new(t->base, fd, EV_WRITE | EV_PERSIST,
	    conn_write_cb, c);
	c->ev_drain = evtimer_new(t->base, conn_drain_cb, c);
	if (c->in == NULL || c->out == NULL || c->ev_read == NULL ||
	    c->ev_write == NULL || c->ev_drain == NULL)
		goto fail;
	if (event_add(c->ev_read, NULL) < 0)
		goto fail;
	if (registry_uid_hold(t->reg, peer.uid) < 0)
		goto fail;
	held = true;
	if ((c->rc = registry_client_new(t->reg, ++t->next_id, cred.pid,
	    cred.uid, cred.gid, c)) == NULL)
		goto fail;
	c->rc->uncapped = admin;
	c->id = t->next_id;
	guard_init(&c->guard, t->cfg->max_message);
	TAILQ_INSERT_TAIL(&t->all, c, link);
	t->nconns++;
	t->opened++;
	log_debug(t->log, "conn=%llu pid=%d uid=%u gid=%u groups=%u opened",
	    (unsigned long long)c->id, (int)cred.pid, (unsigned)cred.uid,
	    (unsigned)cred.gid, peer.ngroups);
	return c;
fail:
	log_warn(t->log, "cannot set up a connection: out of memory");
	if (held)
		registry_uid_put(t->reg, peer.uid);
	if (c != NULL) {
		if (c->ev_read)
			event_del(c->ev_read);
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		if (c->ev_drain)
			event_free(c->ev_drain);
		if (c->in)
			evbuffer_free(c->in);
		if (c->out)
			evbuffer_free(c->out);
		free(c);
	}
	free((void *)peer.groups);
	close(fd);
	return NULL;
}

void
conn_set_label(struct conn *c, const char *s, size_t len)
{
	size_t o = 0;

	/* Logs never carry raw client bytes: keep printable ASCII only. */
	for (size_t i = 0; i < len && o + 1 < sizeof(c->label); i++)
		c->label[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	c->label[o] = '\0';
}

/* Put c on the list the end of this loop turn flushes. */
static void
conn_schedule_flush(struct conn *c)
{
	if (!(c->flags & CONN_PENDING)) {
		c->flags |= CONN_PENDING;
		TAILQ_INSERT_TAIL(&c->tab->pending, c, pend_link);
		conn_schedule_end(c->tab);
	}
}

int
conn_write(struct conn *c, const void *p, size_t len, bool bounded)
{
	if (c->state != CONN_OPEN)
		return 0;	/* closed: nothing more is said to it */
	if (bounded && conn_would_block(c, len))
		return PR_ERR_BUSY;
	if (evbuffer_add(c->out, p, len) < 0) {
		conn_out_of_memory(c);
		return -ENOMEM;
	}
	conn_schedule_flush(c);
	return 0;
}

struct conn_shared *
conn_shared_new(const void *p, size_t len)
{
	struct conn_shared *sh = malloc(sizeof(*sh) + len);

	if (sh == NULL)
		return NULL;
	sh->refs = 1;
	sh->len = len;
	memcpy(sh->data, p, len);
	return sh;
}

void
conn_shared_put(struct conn_shared *sh)
{
	if (sh != NULL && --sh->refs == 0)
		free(sh);
}

static void
shared_done(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	conn_shared_put(arg);
}

bool
conn_would_block(const struct conn *c, size_t len)
{
	return evbuffer_get_length(c->out) + len > c->tab->cfg->max_outbuf;
}

int
conn_write_shared(struct conn *c, const void *head, size_t hlen,
    struct conn_shared *sh, bool bounded)
{
	struct evbuffer *msg = c->tab->fanout;

	if (c->state != CONN_OPEN)
		return 0;
	if (bounded && conn_would_block(c, hlen + sh->len))
		return PR_ERR_BUSY;
	/* Assembled aside, then moved whole: a failure half-way must not
	 * leave half a message in the stream. */
	if (hlen > 0 && evbuffer_add(msg, head, hlen) < 0)
		goto nomem;
	/* Small ones are cheaper copied than referenced (a reference
	 * costs a chain of its own). */
	if (sh->len <= 512) {
		if (evbuffer_add(msg, sh->data, sh->len) < 0)
			goto nomem;
	} else {
		if (evbuffer_add_reference(msg, sh->data, sh->len, shared_done,
		    sh) < 0)
			goto nomem;
		sh->refs++;
	}
	if (evbuffer_add_buffer(c->out, msg) < 0)
		goto nomem;
	conn_schedule_flush(c);
	return 0;
nomem:
	evbuffer_drain(msg, evbuffer_get_length(msg));
	conn_out_of_memory(c);
	return -ENOMEM;
}

/* Stop dispatching while the client's unread replies pass the bound. */
static bool
conn_over_bound(const struct conn *c)
{
	return evbuffer_get_length(c->out) >= c->tab->cfg->max_outbuf;
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evbuffer_iovec v;
	size_t want;
	ssize_t n;

	(void)what;
	if (c->state != CONN_OPEN || (c->flags & CONN_NO_INPUT))
		return;
	/*
	 * Reserve room for the rest of a large object in one piece, so that
	 * framing it does not copy it again at every read.
	 */
	want = READ_CHUNK;
	if (c->guard.skip > want)
		want = c->guard.skip < c->tab->cfg->max_message ?
		    (size_t)c->guard.skip : (size_t)c->tab->cfg->max_message;
	if (evbuffer_reserve_space(c->in, (ev_ssize_t)want, &v, 1) != 1) {
		conn_out_of_memory(c);
		return;
	}
	n = read(fd, v.iov_base, v.iov_len);
	v.iov_len = n > 0 ? (size_t)n : 0;
	evbuffer_commit_space(c->in, &v, 1);
	if (n > 0) {
		conn_process(c);
		return;
	}
	if (n == 0) {
		/* Every complete request was answered as it arrived. */
		conn_close(c, evbuffer_get_length(c->in) > 0 ?
		    "eof mid-message" : "eof", true);
		return;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return;
	conn_close(c, errno == ECONNRESET ? "reset" : "read error", false);
}

/* Read from the socket exactly when its input is wanted. */
static void
conn_arm_read(struct conn *c)
{
	if (c->state != CONN_OPEN || (c->flags & CONN_NO_INPUT))
		event_del(c->ev_read);
	else
		event_add(c->ev_read, NULL);
}

/* Its turn is over with input left: stop reading, queue for the next. */
static void
conn_yield(struct conn *c)
{
	static const struct timeval now = { 0, 0 };
	struct conn_table *t = c->tab;

	c->flags |= CONN_YIELDED;
	event_del(c->ev_read);
	TAILQ_INSERT_TAIL(&t->ready, c, ready_link);
	/* A zero timer, not an active event: other clients' I/O is polled
	 * and served before it runs. */
	if (!evtimer_pending(t->ev_ready, NULL))
		evtimer_add(t->ev_ready, &now);
}

void
conn_serve_ready(struct conn_table *t)
{
	struct conn *c;
	size_t n = 0;

	/* Only those waiting now: who yields again goes behind them, for
	 * the next turn.  Each stays on the ready list until served,
	 * where conn_close finds it. */
	TAILQ_FOREACH(c, &t->ready, ready_link)
		n++;
	while (n-- > 0 && (c = TAILQ_FIRST(&t->ready)) != NULL) {
		TAILQ_REMOVE(&t->ready, c, ready_link);
		c->flags &= ~CONN_YIELDED;
		conn_process(c);
		conn_arm_read(c);
	}
}

/* Frame the complete objects in the input and have them served, for at
 * most one turn. */
static void
conn_process(struct conn *c)
{
	struct conn_table *t = c->tab;
	enum guard_status st = GUARD_MORE;
	size_t len, off = 0, used, ends[CONN_BATCH];
	uint64_t work = 0, t0 = 0;
	const uint8_t *p;
	unsigned served = 0;

	len = evbuffer_get_length(c->in);
	if (len == 0 || c->state != CONN_OPEN || (c->flags & CONN_NO_INPUT))
		return;
	if ((p = evbuffer_pullup(c->in, -1)) == NULL) {
		conn_out_of_memory(c);
		return;
	}
	/*
	 * In batches: frame up to CONN_BATCH requests, let the layer above
	 * look at them together (it hints the caches about the names they
	 * look up), then have them served in order.
	 */
	while (st == GUARD_MORE && c->scanned < len) {
		size_t nb = 0, i;

		while (nb < CONN_BATCH && c->scanned < len) {
			st = guard_scan(&c->guard, p + c->scanned,
			    len - c->scanned, &used);
			c->scanned += used;
			if (st != GUARD_OBJECT)
				break;
			ends[nb++] = c->scanned;
			st = GUARD_MORE;
		}
		if (nb > 0)
			t->ops->batch(t->arg, c, (const char *)p, off, ends,
			    nb);
		for (i = 0; i < nb; i++) {
			uint64_t cost = 0;
			int r;

			if (c->state != CONN_OPEN ||
			    (c->flags & CONN_NO_INPUT)) {
				/* Framed but not served: scan them again
				 * when the connection resumes. */
				c->scanned = off;
				guard_init(&c->guard, c->guard.max);
				st = GUARD_MORE;
				goto out;
			}
			r = t->ops->request(t->arg, c, i, (const char *)p + off,
			    ends[i] - off, &cost);
			work += cost;
			off = ends[i];
			if (r < 0) {
				st = r == -ENOMEM ? GUARD_TOO_LARGE : GUARD_BAD;
				goto out;
			}
			if (c->state != CONN_OPEN || (c->flags & CONN_DOOMED))
				continue;	/* stops at the next */
			if (conn_over_bound(c)) {
				c->flags |= CONN_PAUSED;
				event_del(c->ev_read);
			} else if ((++served >= TURN_REQUESTS ||
			    work >= TURN_WORK) &&
			    (i + 1 < nb || c->scanned < len))
				conn_yield(c);
		}
		if (c->state != CONN_OPEN) {
			st = GUARD_MORE;
			goto out;
		}
		/* The clock is read only for pipelines longer than a batch. */
		if (!(c->flags & CONN_NO_INPUT) && c->scanned < len) {
			if (t0 == 0)
				t0 = now_mono_us();
			else if (now_mono_us() - t0 >= TURN_US)
				conn_yield(c);
		}
		if (c->flags & CONN_NO_INPUT) {
			if (c->scanned > off) {
				c->scanned = off;
				guard_init(&c->guard, c->guard.max);
			}
			st = GUARD_MORE;
			goto out;
		}
	}
out:
	if (c->state == CONN_CLOSED)
		return;		/* its buffers were emptied */
	evbuffer_drain(c->in, off);
	c->scanned -= off;
	switch (st) {
	case GUARD_BAD:
		conn_error_notify(c, PR_ERR_BAD_REQUEST,
		    "the input is not msgpack; closing");
		conn_close(c, "bad_msgpack", true);
		break;
	case GUARD_TOO_DEEP:
		conn_error_notify(c, PR_ERR_BAD_REQUEST,
		    "the input nests arrays and maps too deeply; closing");
		conn_close(c, "too_deep", true);
		break;
	case GUARD_TOO_LARGE:
		conn_error_notify(c, PR_ERR_TOO_LARGE,
		    "a message is larger than max_message; closing");
		conn_close(c, "too_large", true);
		break;
	default:
		break;
	}
}

/* Write queued output; at the end of the turn, or when writable. */
static void
conn_flush(struct conn *c)
{
	int n;

	if (c->state == CONN_CLOSED)
		return;
	if (evbuffer_get_length(c->out) > 0) {
		n = evbuffer_write(c->out, c->fd);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			if (c->state == CONN_OPEN)
				conn_close(c, errno == EPIPE ? "peer closed" :
				    "write error", false);
			else
				conn_release(c);
			return;
		}
	}
	if (evbuffer_get_length(c->out) > 0) {
		if (!(c->flags & CONN_WANT_WRITE)) {
			event_add(c->ev_write, NULL);
			c->flags |= CONN_WANT_WRITE;
		}
	} else if (c->flags & CONN_WANT_WRITE) {
		event_del(c->ev_write);
		c->flags &= ~CONN_WANT_WRITE;
	}
	if (c->state == CONN_DRAINING) {
		if (evbuffer_get_length(c->out) == 0)
			conn_release(c);
		return;
	}
	if ((c->flags & CONN_PAUSED) &&
	    evbuffer_get_length(c->out) <= c->tab->cfg->max_outbuf / 2) {
		/* Resume: first what is already buffered, then the socket. */
		c->flags &= ~CONN_PAUSED;
		conn_process(c);
		conn_arm_read(c);
	}
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_flush(arg);
}

static void
conn_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	log_debug(c->tab->log, "conn=%llu drain timed out with %zu bytes "
	    "unsent", (unsigned long long)c->id, evbuffer_get_length(c->out));
	conn_release(c);
}

void
conn_close(struct conn *c, const char *reason, bool drain)
{
	struct conn_table *t = c->tab;
	size_t held = evbuffer_get_length(c->out);
	struct timeval tv = {
		.tv_sec = (time_t)(t->cfg->drain_ms / 1000),
		.tv_usec = (suseconds_t)(t->cfg->drain_ms % 1000) * 1000,
	};
	bool keep;

	if (c->state != CONN_OPEN)
		return;
	event_del(c->ev_read);
	if (c->flags & CONN_DOOMED) {
		TAILQ_REMOVE(&t->doomed, c, doom_link);
		c->flags &= ~CONN_DOOMED;
	}
	if (c->flags & CONN_YIELDED) {
		TAILQ_REMOVE(&t->ready, c, ready_link);
		c->flags &= ~CONN_YIELDED;
	}
	/* One line per close; none when the daemon frees what is left. */
	if (reason != NULL)
		log_debug(t->log, "conn=%llu%s%s uid=%u names=%u monitors=%u "
		    "closed reason=%s", (unsigned long long)c->id,
		    c->label[0] ? " label=" : "", c->label, (unsigned)c->uid,
		    c->rc->nnames, c->rc->nmonitors, reason);
	/* What all closing connections hold together is bounded: past it,
	 * a closing connection's last replies are dropped. */
	keep = drain && held > 0 &&
	    t->drain_bytes + held <= t->cfg->max_drain_bytes;
	if (keep) {
		c->drain_held = held;
		t->drain_bytes += held;
		t->ndraining++;
		TAILQ_INSERT_TAIL(&t->draining, c, state_link);
	}
	/* Not open from here on: whatever the fan-out below writes (downs,
	 * failed calls) is not for it. */
	c->state = CONN_DRAINING;
	t->ops->gone(t->arg, c);
	if (!keep) {
		conn_release(c);
		return;
	}
	/* A half-closed peer may still read: stop our side's reads but let
	 * the writes through. */
	evtimer_add(c->ev_drain, &tv);
	conn_schedule_flush(c);
}

/*
 * Close the descriptor and give up the connection's place under the
 * caps and the bytes it still had to send; it is freed at the end of
 * the loop turn.
 */
static void
conn_release(struct conn *c)
{
	struct conn_table *t = c->tab;

	if (c->state == CONN_CLOSED)
		return;
	if (c->drain_held > 0) {
		TAILQ_REMOVE(&t->draining, c, state_link);
		t->ndraining--;
		t->drain_bytes -= c->drain_held;
		c->drain_held = 0;
	}
	c->state = CONN_CLOSED;
	TAILQ_INSERT_TAIL(&t->closed, c, state_link);
	event_del(c->ev_read);
	event_del(c->ev_write);
	evtimer_del(c->ev_drain);
	c->flags &= ~(CONN_WANT_WRITE | CONN_PAUSED);
	evbuffer_drain(c->in, evbuffer_get_length(c->in));
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
	close(c->fd);
	c->fd = -1;
	t->nconns--;
	registry_uid_put(t->reg, c->uid);
	conn_schedule_end(t);
}

/* Free a closed connection: the one deferred free. */
static void
conn_destroy(struct conn *c)
{
	struct conn_table *t = c->tab;

	TAILQ_REMOVE(&t->closed, c, state_link);
	if (c->flags & CONN_PENDING)
		TAILQ_REMOVE(&t->pending, c, pend_link);
	TAILQ_REMOVE(&t->all, c, link);
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_drain);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	free((void *)c->peer.groups);
	free(c);
}

void
conn_end_turn(struct conn_table *t)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&t->doomed)) != NULL)
		conn_close(c, "out of memory", true);	/* unlinks it */
	/* conn_flush may queue more (a resumed reader): drain the list. */
	while ((c = TAILQ_FIRST(&t->pending)) != NULL) {
		TAILQ_REMOVE(&t->pending, c, pend_link);
		c->flags &= ~CONN_PENDING;
		conn_flush(c);
	}
	while ((c = TAILQ_FIRST(&t->closed)) != NULL)
		conn_destroy(c);
}

void
conn_free(struct conn *c)
{
	conn_close(c, NULL, false);
	conn_release(c);
	conn_destroy(c);
}
