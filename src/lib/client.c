/*
 * client.c: libprocreg, the C client library (include/procreg.h).
 *
 * One non-blocking socket per handle.  A synchronous call writes its
 * request, then reads objects until its own response arrives; any
 * notification read on the way is copied into the handle's queue, so
 * nothing that arrives during a call is lost.  With auto_reconnect the
 * handle remembers what it registered, joined and monitors, and puts it
 * back after the daemon restarts.
 *
 * Protocol 2 (call, groups, publish, connection targets, ...) is used
 * without asking hello's protocol first: a protocol-1 daemon answers
 * unknown_method (or bad_request for a connection target), and the
 * message then says that the daemon speaks protocol 1.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "paths.h"
#include "procreg-protocol.h"
#include "procreg.h"

#define DEFAULT_TIMEOUT_MS	10000
#define DEFAULT_RECONNECT_MAX	2000
#define RECONNECT_MIN		50
#define READ_SIZE		(64 * 1024)

/* A name held (or waited for), remembered for re-registration. */
struct held_name {
	char	*name;
	void	*value;		/* NULL: registered bare */
	size_t	 value_len;
	unsigned flags;		/* PROCREG_QUEUE, ... as registered */
	bool	 waiting;	/* in the name's queue, not its owner */
	bool	 gone;		/* lost during a restore: swept after it */
};

/* A subscription, remembered for id translation and its end at a
 * reconnect. */
struct held_sub {
	uint64_t	 user_sub;	/* what the caller was given */
	uint64_t	 server_sub;	/* the daemon's id */
	uint64_t	 last_seq;	/* the last event handed out */
	bool		 ended;		/* overflow during a restore */
};

/* A monitor held, remembered for re-monitoring and ref translation. */
struct held_mon {
	uint64_t	 user_ref;	/* what the caller was given */
	uint64_t	 server_ref;	/* what the daemon uses now; 0: none */
	char		*name;		/* NULL: a monitor on connection conn */
	uint64_t	 conn;
	bool		 fired;		/* its down came during a restore */
};

struct procreg {
	int			 fd;
	char			 path[108];
	char			*label;
	int			 timeout_ms;
	bool			 auto_reconnect;
	int			 reconnect_max_ms;
	int			 backoff_ms;
	int64_t			 next_retry_ms;
	uint32_t		 next_msgid;
	uint64_t		 conn_id;
	uint64_t		 protocol;	/* hello's, 0: not known */
	char			 boot[33];	/* hello's, "": not known */
	msgpack_unpacker	 unp;
	msgpack_unpacked	 res;
	msgpack_sbuffer		 sbuf;
	msgpack_packer		 pk;
	/* The request in sbuf is incomplete (out of memory): not sent. */
	int			 req_err;
	char			 errmsg[256];
	/* Queued notifications: a ring of pointers. */
	struct procreg_event	**q;
	size_t			 q_head, q_len, q_cap;
	/* Reconnect state (kept only with auto_reconnect). */
	struct held_name	*names;
	size_t			 nnames, names_cap;
	struct held_name	*groups;	/* joined, to join again */
	size_t			 ngroups, groups_cap;
	struct held_mon		*mons;
	size_t			 nmons, mons_cap;
	uint64_t		 next_user_ref;
	struct held_sub		*subs;
	size_t			 nsubs, subs_cap;
	uint64_t		 next_user_sub;
	struct procreg_callbacks cb;
	void			*cb_arg;
	bool			 restoring;
	/*
	 * The request in sbuf names things of this connection (a daemon
	 * ref, a call id): after a reconnect it is not sent again, call_wait
	 * returns RECONNECTED and the caller decides.
	 */
	bool			 conn_bound;
	/*
	 * Calls received on this connection, not yet replied to
	 * (auto_reconnect only): the caller sees ids of our own, never
	 * reused, as a new daemon may reuse its numbers.  A reply to an id
	 * not here is not sent.
	 */
	struct held_call { uint64_t user_id, server_id; } *calls;
	size_t			 ncalls, calls_cap;
	uint64_t		 next_user_call;
};

/* call_wait: reconnected, the connection-bound request was not sent. */
#define RECONNECTED	1000
/* Call ids remembered for replies; the oldest are forgotten beyond. */
#define CALLS_MAX	4096

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
fail(procreg_t *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(procreg_t *p, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	return status;
}

static char *
dup_bytes(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	/* msgpack-c gives an empty str a NULL ptr: no memcpy from it. */
	if (d != NULL) {
		if (len > 0)
			memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static void *
dup_mem(const void *s, size_t len)
{
	void *d = malloc(len ? len : 1);

	if (d != NULL && len)
		memcpy(d, s, len);
	return d;
}

/* Grow an array to hold one more element; false when out of memory. */
static bool
grow(void **v, size_t *cap, size_t len, size_t size)
{
	size_t ncap;
	void *nv;

	if (len < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	if ((nv = realloc(*v, ncap * size)) == NULL)
		return false;
	*v = nv;
	*cap = ncap;
	return true;
}

int
procreg_default_path(char *buf, size_t size)
{
	char err[256];

	return paths_default_socket(buf, size, false, err, sizeof(err));
}

/* The wire table and the public statuses are one numbering. */
_Static_assert((int)PR_ERR_TIMEOUT == (int)PROCREG_E_CALL_TIMEOUT &&
    (int)PR_ERR_DOWN == (int)PROCREG_E_DOWN &&
    (int)PR_ERR_STALE == (int)PROCREG_E_STALE &&
    (int)PR_ERR__COUNT <= (int)PROCREG_E_OTHER,
    "enum procreg_status and enum pr_err differ");

const char *
procreg_status_code(int status)
{
	if (status > 0 && status < PR_ERR__COUNT)
		return pr_err_name((enum pr_err)status);
	return NULL;
}

const char *
procreg_strstatus(int status)
{
	switch (status) {
	case PROCREG_OK:
		return "success";
	case PROCREG_E_BAD_REQUEST:
		return "bad request";
	case PROCREG_E_UNKNOWN_METHOD:
		return "unknown method";
	case PROCREG_E_TAKEN:
		return "name taken";
	case PROCREG_E_NOT_FOUND:
		return "not found";
	case PROCREG_E_NOT_OWNER:
		return "not the owner";
	case PROCREG_E_BUSY:
		return "busy";
	case PROCREG_E_LIMIT:
		return "limit reached";
	case PROCREG_E_TOO_LARGE:
		return "too large";
	case PROCREG_E_FORBIDDEN:
		return "forbidden";
	case PROCREG_E_CALL_TIMEOUT:
		return "the daemon's timeout (no reply to the call, or the "
		    "awaited name, in time)";
	case PROCREG_E_DOWN:
		return "the callee went away";
	case PROCREG_E_STALE:
		return "stale generation";
	case PROCREG_E_OTHER:
		return "error";
	case PROCREG_E_CONNECT:
		return "cannot reach the daemon";
	case PROCREG_E_CLOSED:
		return "connection lost";
	case PROCREG_E_TIMEOUT:
		return "timed out";
	case PROCREG_E_PROTOCOL:
		return "protocol error";
	case PROCREG_E_NOMEM:
		return "out of memory";
	case PROCREG_E_INVAL:
		return "invalid argument";
	default:
		return "unknown status";
	}
}

const char *
procreg_errmsg(const procreg_t *p)
{
	return p != NULL ? p->errmsg : "out of memory";
}

int
procreg_fd(const procreg_t *p)
{
	return p->fd;
}

uint64_t
procreg_conn_id(const procreg_t *p)
{
	return p->conn_id;
}

/* ---- the event queue ---- */

void
procreg_event_free(struct procreg_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->name);
	free(ev->payload);
	free(ev->reason);
	free(ev->message);
	free(ev->change_name);
	procreg_entry_free(ev->entry);
	procreg_member_free(ev->member);
	free(ev);
}

static int
queue_push(procreg_t *p, struct procreg_event *ev)
{
	if (p->q_len == p->q_cap) {
		size_t ncap = p->q_cap ? p->q_cap * 2 : 16;
		struct procreg_event **nq = malloc(ncap * sizeof(*nq));

		if (nq == NULL)
			return PROCREG_E_NOMEM;
		for (size_t i = 0; i < p->q_len; i++)
			nq[i] = p->q[(p->q_head + i) % p->q_cap];
		free(p->q);
		p->q = nq;
		p->q_cap = ncap;
		p->q_head = 0;
	}
	p->q[(p->q_head + p->q_len) % p->q_cap] = ev;
	p->q_len++;
	return PROCREG_OK;
}

static struct procreg_event *
queue_pop(procreg_t *p)
{
	struct procreg_event *ev;

	if (p->q_len == 0)
		return NULL;
	ev = p->q[p->q_head];
	p->q_head = (p->q_head + 1) % p->q_cap;
	p->q_len--;
	return ev;
}

/* ---- msgpack helpers ---- */

static bool
is_str(const msgpack_object *o, const char *s)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	    memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static bool
is_uint(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

static int64_t
as_int(const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (int64_t)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return o->via.i64;
	return -1;
}

/* The msgpack encoding of o, in malloc'd memory. */
static void *
encode(const msgpack_object *o, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *o) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return NULL;
	}
	*len = sb.size;
	return msgpack_sbuffer_release(&sb);
}

void
procreg_entry_free(struct procreg_entry *e)
{
	if (e == NULL)
		return;
	free(e->name);
	free(e->value);
	free(e);
}

void
procreg_entries_free(struct procreg_entry **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		procreg_entry_free(v[i]);
	free(v);
}

/* The fields shared by an entry and a member entry. */
struct entry_fields {
	char		**key;		/* name or group */
	uint64_t	 *conn;
	int64_t		 *pid, *uid, *gid;
	void		**value;
	size_t		 *value_len;
	uint64_t	 *since_ms, *gen;
};

/*
 * Read an entry map (keyname: "name" or "group") into f; false when
 * malformed or out of memory (what was read is left for the caller to
 * free).
 */
static bool
fields_from(const msgpack_object *m, const char *keyname,
    const struct entry_fields *f)
{
	if (m->type != MSGPACK_OBJECT_MAP)
		return false;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		if (is_str(k, keyname) && v->type == MSGPACK_OBJECT_STR &&
		    *f->key == NULL)
			*f->key = dup_bytes(v->via.str.ptr, v->via.str.size);
		else if (is_str(k, "conn"))
			*f->conn = (uint64_t)as_int(v);
		else if (is_str(k, "pid"))
			*f->pid = as_int(v);
		else if (is_str(k, "uid"))
			*f->uid = as_int(v);
		else if (is_str(k, "gid"))
			*f->gid = as_int(v);
		else if (is_str(k, "since"))
			*f->since_ms = (uint64_t)as_int(v);
		else if (is_str(k, "gen"))
			*f->gen = (uint64_t)as_int(v);
		else if (is_str(k, "value") && *f->value == NULL)
			*f->value = encode(v, f->value_len);
		/* Keys of later protocol versions are ignored. */
	}
	return *f->key != NULL && *f->value != NULL;
}

/* An entry map into a new struct; NULL when malformed or out of memory. */
static struct procreg_entry *
entry_from(const msgpack_object *m)
{
	struct procreg_entry *e;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if (!fields_from(m, "name", &(struct entry_fields){ &e->name,
	    &e->conn, &e->pid, &e->uid, &e->gid, &e->value, &e->value_len,
	    &e->since_ms, &e->gen })) {
		procreg_entry_free(e);
		return NULL;
	}
	return e;
}

void
procreg_member_free(struct procreg_member *m)
{
	if (m == NULL)
		return;
	free(m->group);
	free(m->value);
	free(m);
}

void
procreg_members_free(struct procreg_member **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		procreg_member_free(v[i]);
	free(v);
}

/* A member entry map into a new struct; NULL when malformed or out of
 * memory. */
static struct procreg_member *
member_from(const msgpack_object *o)
{
	struct procreg_member *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if (!fields_from(o, "group", &(struct entry_fields){ &m->group,
	    &m->conn, &m->pid, &m->uid, &m->gid, &m->value, &m->value_len,
	    &m->since_ms, &m->gen })) {
		procreg_member_free(m);
		return NULL;
	}
	return m;
}

void
procreg_strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- connection ---- */

static int	enqueue_push(procreg_t *, const msgpack_object *);

/* Remember a call id of this connection; the id the caller sees. */
static uint64_t
note_call(procreg_t *p, uint64_t id)
{
	uint64_t u = ++p->next_user_call;

	if (p->ncalls == CALLS_MAX) {
		memmove(p->calls, p->calls + 1,
		    (p->ncalls - 1) * sizeof(*p->calls));
		p->ncalls--;
	}
	if (p->ncalls == p->calls_cap) {
		size_t cap = p->calls_cap ? p->calls_cap * 2 : 16;
		struct held_call *v = realloc(p->calls, cap * sizeof(*v));

		if (v == NULL)
			return 0;	/* never matches: the reply fails */
		p->calls = v;
		p->calls_cap = cap;
	}
	p->calls[p->ncalls].user_id = u;
	p->calls[p->ncalls++].server_id = id;
	return u;
}

/*
 * The daemon's id for the caller's call id *id, when it came on this
 * connection and is not replied to; false otherwise.
 */
static bool
call_known(procreg_t *p, uint64_t *id, bool forget)
{
	for (size_t i = 0; i < p->ncalls; i++) {
		if (p->calls[i].user_id == *id) {
			*id = p->calls[i].server_id;
			if (forget) {
				memmove(p->calls + i, p->calls + i + 1,
				    (p->ncalls - i - 1) * sizeof(*p->calls));
				p->ncalls--;
			}
			return true;
		}
	}
	return false;
}

/*
 * Close the connection.  Notifications already read are queued first (as
 * procreg_process would), unless the stream is known to be garbage.
 */
static void
disconnect_how(procreg_t *p, bool keep_parsed)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (keep_parsed) {
		msgpack_unpacked u;

		msgpack_unpacked_init(&u);
		while (msgpack_unpacker_next(&p->unp, &u) ==
		    MSGPACK_UNPACK_SUCCESS) {
			const msgpack_object *o = &u.data, *a;

			if (o->type != MSGPACK_OBJECT_ARRAY ||
			    o->via.array.size < 3)
				continue;
			a = o->via.array.ptr;
			if (is_uint(&a[0]) && a[0].via.u64 == PR_MSG_NOTIFY &&
			    a[1].type == MSGPACK_OBJECT_STR)
				(void)enqueue_push(p, o);
		}
		msgpack_unpacked_destroy(&u);
	}
	/* Bytes of the old stream must not mix with the new one. */
	msgpack_unpacker_reset(&p->unp);
	msgpack_unpacker_destroy(&p->unp);
	msgpack_unpacker_init(&p->unp, READ_SIZE);
}

static void
disconnect(procreg_t *p)
{
	disconnect_how(p, true);
}

static int
open_socket(procreg_t *p)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p->path);
	/* CLOEXEC: a child the caller execs must not hold our lifeline. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail(p, PROCREG_E_CONNECT, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		return fail(p, PROCREG_E_CONNECT, "cannot connect to %s: %s",
		    p->path, strerror(e));
	}
	p->fd = fd;
	return PROCREG_OK;
}

/*
 * Write a request in full, waiting for room up to deadline; *sent counts
 * the bytes that left.
 */
static int
write_all(procreg_t *p, const char *b, size_t len, int64_t deadline,
    size_t *sent)
{
	*sent = 0;
	while (len > 0) {
		ssize_t n = send(p->fd, b, len, MSG_NOSIGNAL);

		if (n > 0) {
			b += n;
			len -= (size_t)n;
			*sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = p->fd, .events = POLLOUT };
			int64_t left = deadline - mono_ms();

			if (left <= 0 && *sent > 0) {
				/* Half a request: the stream is beyond repair. */
				disconnect(p);
				return fail(p, PROCREG_E_CLOSED, "timed out "
				    "writing to the daemon; disconnected");
			}
			if (left <= 0)
				return fail(p, PROCREG_E_TIMEOUT,
				    "timed out writing to the daemon");
			if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
				int e = errno;

				if (*sent > 0)
					disconnect(p);
				return fail(p, PROCREG_E_CLOSED, "poll: %s",
				    strerror(e));
			}
			continue;
		}
		disconnect(p);
		return fail(p, PROCREG_E_CLOSED, "connection lost: %s",
		    strerror(errno));
	}
	return PROCREG_OK;
}

/* Read once: 1 bytes read, 0 nothing to read, or a negative status. */
static int
read_some(procreg_t *p)
{
	ssize_t n;

	if (!msgpack_unpacker_reserve_buffer(&p->unp, READ_SIZE))
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	n = read(p->fd, msgpack_unpacker_buffer(&p->unp),
	    msgpack_unpacker_buffer_capacity(&p->unp));
	if (n > 0) {
		msgpack_unpacker_buffer_consumed(&p->unp, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	disconnect(p);
	return fail(p, PROCREG_E_CLOSED, n == 0 ? "the daemon closed the "
	    "connection" : "connection lost: %s", strerror(errno));
}

/* Drop monitor i (order is not kept). */
static void
forget_mon(procreg_t *p, size_t i)
{
	free(p->mons[i].name);
	p->mons[i] = p->mons[--p->nmons];
}

/* The user's ref for a daemon ref; forgets the monitor when it fired. */
static uint64_t
translate_down(procreg_t *p, uint64_t server_ref)
{
	for (size_t i = 0; i < p->nmons; i++) {
		if (p->mons[i].server_ref == server_ref && !p->mons[i].fired) {
			uint64_t u = p->mons[i].user_ref;

			/* restore() is walking the array: only mark it. */
			if (p->restoring)
				p->mons[i].fired = true;
			else
				forget_mon(p, i);
			return u;
		}
	}
	return server_ref;
}

/*
 * A target (a name, or a connection id) into ev->name or ev->target_conn;
 * false when it is neither or out of memory.
 */
static bool
target_from(struct procreg_event *ev, const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_STR)
		return (ev->name = dup_bytes(o->via.str.ptr, o->via.str.size)) !=
		    NULL;
	if (is_uint(o)) {
		ev->target_conn = o->via.u64;
		return true;
	}
	return false;
}

static struct held_name *held_find(struct held_name *, size_t,
		    const char *);
static void	forget_name(procreg_t *, const char *);

/* The held subscription whose daemon id is server_sub, or NULL. */
static struct held_sub *
sub_by_server(procreg_t *p, uint64_t server_sub)
{
	for (size_t i = 0; i < p->nsubs; i++) {
		if (p->subs[i].server_sub == server_sub && !p->subs[i].ended)
			return &p->subs[i];
	}
	return NULL;
}

/* Drop held subscription i (order is not kept). */
static void
forget_sub(procreg_t *p, size_t i)
{
	p->subs[i] = p->subs[--p->nsubs];
}

/* An event's sub id as the caller knows it (and its last seq noted);
 * an overflow ends the subscription. */
static uint64_t
translate_sub(procreg_t *p, uint64_t server_sub, uint64_t seq, bool ended)
{
	struct held_sub *h;
	uint64_t u;

	if (!p->auto_reconnect || (h = sub_by_server(p, server_sub)) == NULL)
		return server_sub;
	u = h->user_sub;
	h->last_seq = seq;
	if (ended) {
		/* restore() may be walking the array: only mark it then. */
		if (p->restoring)
			h->ended = true;
		else
			forget_sub(p, (size_t)(h - p->subs));
	}
	return u;
}

/* acquired: the name we waited for is ours (we own it, no longer wait). */
static void
note_acquired(procreg_t *p, const char *name)
{
	struct held_name *h;

	if (p->auto_reconnect &&
	    (h = held_find(p->names, p->nnames, name)) != NULL)
		h->waiting = false;
}

/*
 * lost: replaced with QUEUE, we are first in line again; else (evicted,
 * or replaced without QUEUE) the name is gone, and a reconnect must not
 * register it again: an administrator took it away, and a holder that
 * got it back would run beside whoever holds it next.  A reason of a
 * later protocol counts as gone: forgetting too much never makes two
 * owners.
 */
static void
note_lost(procreg_t *p, const char *name, const char *reason)
{
	struct held_name *h;

	if (!p->auto_reconnect ||
	    (h = held_find(p->names, p->nnames, name)) == NULL)
		return;
	if ((h->flags & PROCREG_QUEUE) && strcmp(reason, "replaced") == 0)
		h->waiting = true;
	else if (p->restoring)
		h->gone = true;		/* restore() walks the array */
	else
		forget_name(p, name);
}

static const struct {
	const char		*name;
	enum procreg_change	 change;
} changes[] = {
	{ "registered", PROCREG_CH_REGISTERED },
	{ "unregistered", PROCREG_CH_UNREGISTERED },
	{ "updated", PROCREG_CH_UPDATED },
	{ "handover", PROCREG_CH_HANDOVER },
	{ "joined", PROCREG_CH_JOINED },
	{ "left", PROCREG_CH_LEFT },
};

/*
 * The params of an event push [sub, seq, kind, payload] into ev; false
 * when out of memory or malformed.
 */
static bool
sub_event_from(procreg_t *p, struct procreg_event *ev,
    const msgpack_object *v)
{
	const msgpack_object *pl = &v[3];

	ev->kind = PROCREG_EV_SUBSCRIPTION;
	ev->seq = v[1].via.u64;
	ev->sub = translate_sub(p, v[0].via.u64, ev->seq, false);
	if ((ev->change_name = dup_bytes(v[2].via.str.ptr,
	    v[2].via.str.size)) == NULL ||
	    (ev->payload = encode(pl, &ev->payload_len)) == NULL)
		return false;
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		if (is_str(&v[2], changes[i].name))
			ev->change = changes[i].change;
	}
	switch (ev->change) {
	case PROCREG_CH_REGISTERED:
	case PROCREG_CH_UPDATED:
	case PROCREG_CH_HANDOVER:
		return (ev->entry = entry_from(pl)) != NULL &&
		    (ev->name = strdup(ev->entry->name)) != NULL;
	case PROCREG_CH_JOINED:
	case PROCREG_CH_LEFT:
		return (ev->member = member_from(pl)) != NULL &&
		    (ev->name = strdup(ev->member->group)) != NULL;
	case PROCREG_CH_UNREGISTERED:
		if (pl->type != MSGPACK_OBJECT_ARRAY || pl->via.array.size < 2 ||
		    pl->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
		    pl->via.array.ptr[1].type != MSGPACK_OBJECT_STR)
			return false;
		return (ev->name = dup_bytes(pl->via.array.ptr[0].via.str.ptr,
		    pl->via.array.ptr[0].via.str.size)) != NULL &&
		    (ev->reason = dup_bytes(pl->via.array.ptr[1].via.str.ptr,
		    pl->via.array.ptr[1].via.str.size)) != NULL;
	case PROCREG_CH_UNKNOWN:
		break;
	}
	return true;		/* a later protocol's kind: payload only */
}

/* Copy a notification out of the unpacker's zone into the queue. */
static int
enqueue_push(procreg_t *p, const msgpack_object *o)
{
	const msgpack_object *a = o->via.array.ptr, *params = &a[2];
	struct procreg_event *ev;
	const msgpack_object *v;
	uint32_t n;

	if (params->type != MSGPACK_OBJECT_ARRAY)
		return PROCREG_OK;	/* unknown shapes are ignored */
	v = params->via.array.ptr;
	n = params->via.array.size;
	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	/*
	 * A shape this library does not know is skipped, as a later
	 * protocol's kind would be; only out of memory is a failure.  The
	 * parsers say NULL/false for both: errno (ENOMEM from the
	 * allocator) tells them apart.
	 */
	errno = 0;
	if (is_str(&a[1], "message") && n >= 3 &&
	    (v[0].type == MSGPACK_OBJECT_STR || is_uint(&v[0]))) {
		ev->kind = PROCREG_EV_MESSAGE;
		ev->sender = (uint64_t)as_int(&v[1]);
		if (!target_from(ev, &v[0]) ||
		    (ev->payload = encode(&v[2], &ev->payload_len)) == NULL)
			goto bad;
	} else if (is_str(&a[1], "call") && n >= 4 && is_uint(&v[0]) &&
	    (v[1].type == MSGPACK_OBJECT_STR || is_uint(&v[1]))) {
		ev->kind = PROCREG_EV_CALL;
		ev->call_id = v[0].via.u64;
		ev->sender = (uint64_t)as_int(&v[2]);
		if (!target_from(ev, &v[1]) ||
		    (ev->payload = encode(&v[3], &ev->payload_len)) == NULL)
			goto bad;
		if (p->auto_reconnect)
			ev->call_id = note_call(p, ev->call_id);
	} else if (is_str(&a[1], "publish") && n >= 3 &&
	    v[0].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_PUBLISH;
		ev->sender = (uint64_t)as_int(&v[1]);
		if (!target_from(ev, &v[0]) ||
		    (ev->payload = encode(&v[2], &ev->payload_len)) == NULL)
			goto bad;
	} else if (is_str(&a[1], "down") && n >= 3 && is_uint(&v[0]) &&
	    (v[1].type == MSGPACK_OBJECT_STR || is_uint(&v[1])) &&
	    v[2].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_DOWN;
		ev->ref = p->auto_reconnect ? translate_down(p, v[0].via.u64) :
		    v[0].via.u64;
		if (!target_from(ev, &v[1]) || (ev->reason =
		    dup_bytes(v[2].via.str.ptr, v[2].via.str.size)) == NULL)
			goto bad;
	} else if (is_str(&a[1], "error") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR && v[1].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_ERROR;
		ev->reason = dup_bytes(v[0].via.str.ptr, v[0].via.str.size);
		ev->message = dup_bytes(v[1].via.str.ptr, v[1].via.str.size);
		if (ev->reason == NULL || ev->message == NULL)
			goto bad;
	} else if (is_str(&a[1], "event") && n >= 4 && is_uint(&v[0]) &&
	    is_uint(&v[1]) && v[2].type == MSGPACK_OBJECT_STR) {
		if (!sub_event_from(p, ev, v))
			goto bad;
	} else if (is_str(&a[1], "overflow") && n >= 2 && is_uint(&v[0]) &&
	    is_uint(&v[1])) {
		ev->kind = PROCREG_EV_OVERFLOW;
		ev->seq = v[1].via.u64;
		ev->sub = translate_sub(p, v[0].via.u64, ev->seq, true);
	} else if (is_str(&a[1], "acquired") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_ACQUIRED;
		if ((ev->name = dup_bytes(v[0].via.str.ptr,
		    v[0].via.str.size)) == NULL ||
		    (ev->entry = entry_from(&v[1])) == NULL)
			goto bad;
		note_acquired(p, ev->name);
	} else if (is_str(&a[1], "lost") && n >= 2 &&
	    v[0].type == MSGPACK_OBJECT_STR &&
	    v[1].type == MSGPACK_OBJECT_STR) {
		ev->kind = PROCREG_EV_LOST;
		if ((ev->name = dup_bytes(v[0].via.str.ptr,
		    v[0].via.str.size)) == NULL || (ev->reason =
		    dup_bytes(v[1].via.str.ptr, v[1].via.str.size)) == NULL)
			goto bad;
		note_lost(p, ev->name, ev->reason);
	} else {
		free(ev);		/* a kind from a later protocol */
		return PROCREG_OK;
	}
	if (queue_push(p, ev) != PROCREG_OK)
		goto nomem;
	return PROCREG_OK;
bad:
	if (errno == ENOMEM)
		goto nomem;
	procreg_event_free(ev);	/* malformed: skipped */
	return PROCREG_OK;
nomem:
	procreg_event_free(ev);
	return fail(p, PROCREG_E_NOMEM, "out of memory");
}

/*
 * Take the next object from the unpacker: 1 when it is the response to
 * msgid (left in p->res), 0 when none is complete or it was something
 * else (notifications are queued), negative on failure.
 */
static int
next_object(procreg_t *p, uint32_t msgid, bool want_response)
{
	msgpack_unpack_return r = msgpack_unpacker_next(&p->unp, &p->res);
	const msgpack_object *o = &p->res.data, *a;

	if (r == MSGPACK_UNPACK_CONTINUE)
		return 0;
	if (r != MSGPACK_UNPACK_SUCCESS) {
		disconnect_how(p, false);
		return fail(p, PROCREG_E_PROTOCOL, "the daemon sent bytes "
		    "that are not msgpack");
	}
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3)
		return 2;
	a = o->via.array.ptr;
	if (is_uint(&a[0]) && a[0].via.u64 == PR_MSG_NOTIFY &&
	    a[1].type == MSGPACK_OBJECT_STR) {
		int e = enqueue_push(p, o);

		return e < 0 ? e : 2;
	}
	if (want_response && o->via.array.size == 4 && is_uint(&a[0]) &&
	    a[0].via.u64 == PR_MSG_RESPONSE && is_uint(&a[1]) &&
	    a[1].via.u64 == msgid)
		return 1;
	return 2;	/* a late response to a call that timed out */
}

/* Map a response's error to a status (0 when none). */
static int
response_status(procreg_t *p, const msgpack_object *err)
{
	const msgpack_object *code, *msg;

	if (err->type == MSGPACK_OBJECT_NIL)
		return PROCREG_OK;
	if (err->type != MSGPACK_OBJECT_ARRAY || err->via.array.size < 2)
		return fail(p, PROCREG_E_PROTOCOL, "malformed error");
	code = &err->via.array.ptr[0];
	msg = &err->via.array.ptr[1];
	snprintf(p->errmsg, sizeof(p->errmsg), "%.*s",
	    msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
	    msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
	for (int e = 1; e < PR_ERR__COUNT; e++) {
		if (is_str(code, pr_err_name((enum pr_err)e)))
			return e;
	}
	/*
	 * A code this library predates, or one a callee chose (call): the
	 * code goes in front of the message, as "code: message".
	 */
	snprintf(p->errmsg, sizeof(p->errmsg), "%.*s: %.*s",
	    code->type == MSGPACK_OBJECT_STR ? (int)code->via.str.size : 1,
	    code->type == MSGPACK_OBJECT_STR ? code->via.str.ptr : "?",
	    msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
	    msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
	return PROCREG_E_OTHER;
}

static int reconnect(procreg_t *, int64_t deadline);

/* Big-endian unsigned of n bytes at b. */
static uint64_t
be_uint(const unsigned char *b, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | b[i];
	return v;
}

/*
 * True when [b, b + len) is exactly one msgpack object that still fits
 * the protocol's nesting limit when it sits under `above` levels of the
 * request.  The caller's bytes go into the request as they are, so
 * anything else would make the daemon read the next request as part of
 * this one.  One pass, no allocation: the open containers' counts of
 * elements still to come are a fixed stack as deep as the limit.
 */
static bool
one_object(const void *v, size_t len, unsigned above)
{
	const unsigned char *b = v;
	uint64_t remain[PR_NESTING_MAX];
	unsigned top = 0;
	size_t off = 0;

	for (;;) {
		unsigned c, hdr = 1, lenb = 0;
		uint64_t n = 0, body = 0;
		bool container = false;

		if (off >= len)
			return false;
		c = b[off];
		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 ||
		    c == 0xc3)
			;
		else if (c <= 0x8f) {
			container = true;
			n = 2 * (uint64_t)(c & 0x0f);
		} else if (c <= 0x9f) {
			container = true;
			n = c & 0x0f;
		} else if (c <= 0xbf)
			body = c & 0x1f;
		else {
			switch (c) {
			case 0xc4: case 0xd9: lenb = 1; break;
			case 0xc5: case 0xda: lenb = 2; break;
			case 0xc6: case 0xdb: lenb = 4; break;
			case 0xc7: lenb = 1; body = 1; break;	/* + type */
			case 0xc8: lenb = 2; body = 1; break;
			case 0xc9: lenb = 4; body = 1; break;
			case 0xca: body = 4; break;
			case 0xcb: body = 8; break;
			case 0xcc: case 0xd0: body = 1; break;
			case 0xcd: case 0xd1: body = 2; break;
			case 0xce: case 0xd2: body = 4; break;
			case 0xcf: case 0xd3: body = 8; break;
			case 0xd4: body = 2; break;
			case 0xd5: body = 3; break;
			case 0xd6: body = 5; break;
			case 0xd7: body = 9; break;
			case 0xd8: body = 17; break;
			case 0xdc: lenb = 2; container = true; break;
			case 0xdd: lenb = 4; container = true; break;
			case 0xde: lenb = 2; container = true; break;
			case 0xdf: lenb = 4; container = true; break;
			default:
				return false;	/* 0xc1, never used */
			}
			hdr += lenb;
			if (lenb > len - off - 1)
				return false;
			if (container)
				n = be_uint(b + off + 1, lenb) *
				    (c >= 0xde ? 2 : 1);
			else
				body += be_uint(b + off + 1, lenb);
		}
		off += hdr;
		if (body > len - off)
			return false;
		off += (size_t)body;
		if (container) {
			if (above + top + 1 > PR_NESTING_MAX)
				return false;
			/* Each element takes a byte at least. */
			if (n > len - off)
				return false;
			if (n > 0) {
				remain[top++] = n;
				continue;
			}
		}
		/* A value ended: close the containers it completes. */
		while (top > 0 && --remain[top - 1] == 0)
			top--;
		if (top == 0)
			return off == len;
	}
}

/*
 * Refuse value bytes (NULL: none, always fine) that are not one msgpack
 * object at `above` levels of a request.
 */
static int
check_value(procreg_t *p, const void *v, size_t len, unsigned above,
    const char *what)
{
	if (v == NULL || one_object(v, len, above))
		return PROCREG_OK;
	return fail(p, PROCREG_E_INVAL, "the %s is not exactly one msgpack "
	    "object (at most %u levels deep)", what,
	    PR_NESTING_MAX - above);
}

/* Levels of a request above a param: the request, its params. */
#define PARAM_LEVELS	2

/*
 * The packer's writer: the first failure sticks, and call_wait refuses
 * to send what it left incomplete.
 */
static int
req_write(void *data, const char *buf, size_t len)
{
	procreg_t *p = data;

	if (p->req_err == PROCREG_OK &&
	    msgpack_sbuffer_write(&p->sbuf, buf, len) != 0)
		p->req_err = PROCREG_E_NOMEM;
	return p->req_err == PROCREG_OK ? 0 : -1;
}

/* Start a request [0, msgid, method, [ with n params to be packed. */
static uint32_t
req_begin(procreg_t *p, const char *method, uint32_t n)
{
	uint32_t id = p->next_msgid++;

	if (p->next_msgid == 0)
		p->next_msgid = 1;
	msgpack_sbuffer_clear(&p->sbuf);
	p->req_err = PROCREG_OK;
	msgpack_pack_array(&p->pk, 4);
	msgpack_pack_uint8(&p->pk, PR_MSG_REQUEST);
	msgpack_pack_uint32(&p->pk, id);
	msgpack_pack_str(&p->pk, strlen(method));
	msgpack_pack_str_body(&p->pk, method, strlen(method));
	msgpack_pack_array(&p->pk, n);
	return id;
}

static void
pack_str(procreg_t *p, const char *s)
{
	msgpack_pack_str(&p->pk, strlen(s));
	msgpack_pack_str_body(&p->pk, s, strlen(s));
}

/*
 * Send the packed request and wait up to wait_ms for its response.  On
 * PROCREG_OK the result is *result (valid until the next read on this
 * handle).
 */
static int
call_wait(procreg_t *p, uint32_t msgid, const msgpack_object **result,
    int64_t wait_ms)
{
	int64_t deadline = mono_ms() + wait_ms;
	size_t sent = 0, len = p->sbuf.size;
	char *saved;
	int r;

	if (p->req_err != PROCREG_OK)
		return fail(p, p->req_err, "out of memory building the "
		    "request");
	if (p->fd < 0)
		r = fail(p, PROCREG_E_CLOSED, "not connected");
	else
		r = write_all(p, p->sbuf.data, len, deadline, &sent);
	if (r == PROCREG_E_CLOSED && sent == 0 && p->auto_reconnect &&
	    !p->restoring && p->conn_bound) {
		/* Its refs or ids mean nothing to the new connection. */
		if ((r = reconnect(p, deadline)) == PROCREG_OK)
			r = RECONNECTED;
		return r;
	}
	if (r == PROCREG_E_CLOSED && sent == 0 && p->auto_reconnect &&
	    !p->restoring) {
		/*
		 * None of it reached the daemon, so it is safe to send it on a
		 * new connection.  Restoring reuses the request buffer: keep a
		 * copy.
		 */
		if ((saved = dup_mem(p->sbuf.data, len)) == NULL)
			return fail(p, PROCREG_E_NOMEM, "out of memory");
		if ((r = reconnect(p, deadline)) == PROCREG_OK)
			r = write_all(p, saved, len, deadline, &sent);
		free(saved);
	}
	if (r != PROCREG_OK)
		return r;
	for (;;) {
		while ((r = next_object(p, msgid, true)) == 2)
			;
		if (r < 0)
			return r;
		if (r == 1) {
			const msgpack_object *a = p->res.data.via.array.ptr;

			if ((r = response_status(p, &a[2])) != PROCREG_OK)
				return r;
			*result = &a[3];
			return PROCREG_OK;
		}
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int64_t left = deadline - mono_ms();

		if (left <= 0)
			return fail(p, PROCREG_E_TIMEOUT, "no reply from the "
			    "daemon in %" PRId64 " ms", wait_ms);
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return fail(p, PROCREG_E_CLOSED, "poll: %s",
			    strerror(errno));
		if ((r = read_some(p)) < 0)
			return r;
	}
}

/* Send the packed request and wait for its response (the handle's
 * timeout). */
static int
call(procreg_t *p, uint32_t msgid, const msgpack_object **result)
{
	return call_wait(p, msgid, result, p->timeout_ms);
}

/* hello, keeping our conn id; optionally filling out. */
static int
do_hello(procreg_t *p, struct procreg_hello *out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	id = req_begin(p, "hello", p->label ? 1 : 0);
	if (p->label)
		pack_str(p, p->label);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return r;
	if (res->type != MSGPACK_OBJECT_MAP)
		return fail(p, PROCREG_E_PROTOCOL, "malformed hello result");
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (is_str(k, "conn"))
			p->conn_id = (uint64_t)as_int(v);
		else if (is_str(k, "protocol"))
			p->protocol = (uint64_t)as_int(v);
		else if (is_str(k, "boot") && v->type == MSGPACK_OBJECT_STR)
			snprintf(p->boot, sizeof(p->boot), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
		if (out == NULL)
			continue;
		if (is_str(k, "conn"))
			out->conn = (uint64_t)as_int(v);
		else if (is_str(k, "protocol"))
			out->protocol = (uint64_t)as_int(v);
		else if (is_str(k, "max_message"))
			out->max_message = (uint64_t)as_int(v);
		else if (is_str(k, "version") && v->type == MSGPACK_OBJECT_STR)
			snprintf(out->version, sizeof(out->version), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
		else if (is_str(k, "boot") && v->type == MSGPACK_OBJECT_STR)
			snprintf(out->boot, sizeof(out->boot), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
	}
	return PROCREG_OK;
}

/* Queue a noproc down for monitor m, as the daemon would send it. */
static int
down_local(procreg_t *p, const struct held_mon *m)
{
	struct procreg_event *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	ev->kind = PROCREG_EV_DOWN;
	ev->ref = m->user_ref;
	ev->target_conn = m->conn;
	if ((ev->reason = strdup("noproc")) == NULL ||
	    queue_push(p, ev) != PROCREG_OK) {
		procreg_event_free(ev);
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	return PROCREG_OK;
}

/*
 * Queue an event made here, not by the daemon: kind with name, reason
 * (may be NULL) and a copy of entry (may be NULL), or sub and seq.
 */
static int
event_local(procreg_t *p, enum procreg_event_kind kind, const char *name,
    const char *reason, const msgpack_object *entry, uint64_t sub,
    uint64_t seq)
{
	struct procreg_event *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	ev->kind = kind;
	ev->sub = sub;
	ev->seq = seq;
	if ((name != NULL && (ev->name = strdup(name)) == NULL) ||
	    (reason != NULL && (ev->reason = strdup(reason)) == NULL) ||
	    (entry != NULL && (ev->entry = entry_from(entry)) == NULL) ||
	    queue_push(p, ev) != PROCREG_OK) {
		procreg_event_free(ev);
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	return PROCREG_OK;
}

/* Start a register request for held name h, with its value and flags. */
static uint32_t
req_register(procreg_t *p, const char *name, const void *value, size_t vlen,
    unsigned flags)
{
	uint32_t id = req_begin(p, "register", flags ? 3 : value ? 2 : 1);
	unsigned nopts = 0;

	pack_str(p, name);
	if (value != NULL)
		(void)req_write(p, value, vlen);
	else if (flags)
		msgpack_pack_nil(&p->pk);
	if (!flags)
		return id;
	for (unsigned f = flags; f; f &= f - 1)
		nopts++;
	msgpack_pack_map(&p->pk, nopts);
	if (flags & PROCREG_QUEUE) {
		pack_str(p, "queue");
		msgpack_pack_true(&p->pk);
	}
	if (flags & PROCREG_ALLOW_REPLACEMENT) {
		pack_str(p, "allow_replacement");
		msgpack_pack_true(&p->pk);
	}
	if (flags & PROCREG_REPLACE) {
		pack_str(p, "replace");
		msgpack_pack_true(&p->pk);
	}
	return id;
}

/* The position in a register result {"queued": n}, or 0 (an entry). */
static uint32_t
queued_from(const msgpack_object *res)
{
	if (res->type != MSGPACK_OBJECT_MAP || res->via.map.size != 1 ||
	    !is_str(&res->via.map.ptr[0].key, "queued") ||
	    !is_uint(&res->via.map.ptr[0].val))
		return 0;
	return (uint32_t)res->via.map.ptr[0].val.via.u64;
}

/* Drop the held names marked gone. */
static void
sweep_names(procreg_t *p)
{
	for (size_t i = 0; i < p->nnames;) {
		if (p->names[i].gone) {
			free(p->names[i].name);
			free(p->names[i].value);
			p->names[i] = p->names[--p->nnames];
		} else
			i++;
	}
}

/*
 * A reconnect ends every subscription: an overflow when the daemon is the
 * same (it can resume from the last seq handed out), else "restarted".
 */
static int
end_subs(procreg_t *p, bool same_daemon)
{
	int r;

	while (p->nsubs > 0) {
		struct held_sub *h = &p->subs[p->nsubs - 1];

		if (!h->ended && (r = event_local(p, same_daemon ?
		    PROCREG_EV_OVERFLOW : PROCREG_EV_RESTARTED, NULL, NULL,
		    NULL, h->user_sub, h->last_seq)) != PROCREG_OK)
			return r;
		p->nsubs--;
	}
	return PROCREG_OK;
}

/* Register again, join again, monitor again, and tell the application. */
static int
restore(procreg_t *p)
{
	char **lost = NULL, old_boot[sizeof(p->boot)];
	size_t nlost = 0, keep = 0, i;
	const msgpack_object *res;
	int r;

	p->restoring = true;
	p->ncalls = 0;		/* calls of the old connection */
	memcpy(old_boot, p->boot, sizeof(old_boot));
	if ((r = do_hello(p, NULL)) != PROCREG_OK)
		goto out;
	/* Subscriptions do not come back; the old ones end, in order. */
	if ((r = end_subs(p, old_boot[0] != '\0' &&
	    strcmp(old_boot, p->boot) == 0)) != PROCREG_OK)
		goto out;
	if (p->nnames + p->ngroups &&
	    (lost = calloc(p->nnames + p->ngroups, sizeof(*lost))) == NULL) {
		r = fail(p, PROCREG_E_NOMEM, "out of memory");
		goto out;
	}
	/*
	 * Names lost here are only marked gone: a push parsed during these
	 * calls (acquired, lost) may look a held name up.
	 */
	for (i = 0; i < p->nnames; i++) {
		struct held_name *h = &p->names[i];
		uint32_t id;
		bool was_owner = !h->waiting;

		if (h->gone)
			continue;
		id = req_register(p, h->name, h->value, h->value_len,
		    h->flags);
		if ((r = call(p, id, &res)) < 0)
			break;
		h = &p->names[i];
		if (r != PROCREG_OK) {
			/* Taken meanwhile: no longer ours to restore. */
			if ((lost[nlost] = strdup(h->name)) == NULL) {
				r = fail(p, PROCREG_E_NOMEM, "out of memory");
				break;
			}
			nlost++;
			h->gone = true;
			continue;
		}
		if (!(h->flags & PROCREG_QUEUE))
			continue;
		/* Queued names say how it went: acquired, or lost. */
		if (queued_from(res) > 0) {
			h->waiting = true;
			r = was_owner ? event_local(p, PROCREG_EV_LOST, h->name,
			    "disconnected", NULL, 0, 0) : PROCREG_OK;
		} else {
			h->waiting = false;
			r = event_local(p, PROCREG_EV_ACQUIRED, h->name, NULL,
			    res, 0, 0);
		}
		if (r != PROCREG_OK)
			break;
	}
	/* On a failure midway, the rest stays held for the next attempt. */
	sweep_names(p);
	if (r < 0)
		goto out;
	/* The groups, the same way: one that cannot be joined is lost. */
	for (i = 0, keep = 0; i < p->ngroups; i++) {
		struct held_name *h = &p->groups[i];
		uint32_t id = req_begin(p, "join", h->value ? 2 : 1);

		pack_str(p, h->name);
		if (h->value)
			(void)req_write(p, h->value, h->value_len);
		if ((r = call(p, id, &res)) < 0)
			break;
		if (r == PROCREG_OK || r == PROCREG_E_TAKEN) {
			p->groups[keep++] = *h;
		} else {
			lost[nlost++] = h->name;
			free(h->value);
		}
	}
	for (; i < p->ngroups; i++)
		p->groups[keep++] = p->groups[i];
	p->ngroups = keep;
	if (r < 0)
		goto out;
	/* The daemon numbers refs afresh: no old number may match a new. */
	for (i = 0; i < p->nmons; i++)
		p->mons[i].server_ref = 0;
	for (i = 0; i < p->nmons; i++) {
		struct held_mon *m = &p->mons[i];
		uint32_t id;

		if (m->name == NULL) {
			/*
			 * A connection of the old daemon: gone with it, and its
			 * number may be another connection's now.  Its down is
			 * ours to give.
			 */
			if (!m->fired && (r = down_local(p, m)) < 0)
				break;
			m->fired = true;
			continue;
		}
		id = req_begin(p, "monitor", 1);
		pack_str(p, m->name);
		if ((r = call(p, id, &res)) < 0)
			break;
		/* A noproc down follows with the new ref and translates. */
		if (r == PROCREG_OK && is_uint(res))
			m->server_ref = res->via.u64;
	}
	for (i = 0; i < p->nmons;) {
		if (p->mons[i].fired)
			forget_mon(p, i);
		else
			i++;
	}
	if (r < 0)
		goto out;
	if (p->cb.on_reconnect != NULL)
		p->cb.on_reconnect(p, p->fd, (const char *const *)lost, nlost,
		    p->cb_arg);
	r = PROCREG_OK;
out:
	for (i = 0; i < nlost; i++)
		free(lost[i]);
	free(lost);
	p->restoring = false;
	sweep_names(p);
	for (i = 0; i < p->nsubs;) {
		if (p->subs[i].ended)
			forget_sub(p, i);
		else
			i++;
	}
	return r;
}

/*
 * Get a connection back, retrying with backoff until deadline (a
 * deadline in the past: one attempt if the backoff allows it).
 */
static int
reconnect(procreg_t *p, int64_t deadline)
{
	int r;

	if (!p->auto_reconnect || p->restoring)
		return fail(p, PROCREG_E_CLOSED, "not connected");
	for (;;) {
		int64_t now = mono_ms();

		if (now >= p->next_retry_ms) {
			if ((r = open_socket(p)) == PROCREG_OK &&
			    (r = restore(p)) == PROCREG_OK) {
				p->backoff_ms = RECONNECT_MIN;
				return PROCREG_OK;
			}
			if (p->fd >= 0)
				disconnect(p);
			p->next_retry_ms = mono_ms() + p->backoff_ms;
			p->backoff_ms *= 2;
			if (p->backoff_ms > p->reconnect_max_ms)
				p->backoff_ms = p->reconnect_max_ms;
			now = mono_ms();
		}
		if (now >= deadline)
			return fail(p, PROCREG_E_CONNECT, "cannot reach the "
			    "daemon at %s; retrying", p->path);
		usleep((useconds_t)((p->next_retry_ms < deadline ?
		    p->next_retry_ms : deadline) - now) * 1000);
	}
}

int
procreg_connect(procreg_t **out, const struct procreg_options *opts)
{
	struct procreg_options def = { 0 };
	procreg_t *p;
	int r;

	*out = NULL;
	if (opts == NULL)
		opts = &def;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return PROCREG_E_NOMEM;
	*out = p;
	p->fd = -1;
	p->next_msgid = 1;
	p->next_user_ref = 1;
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms :
	    DEFAULT_TIMEOUT_MS;
	p->auto_reconnect = opts->auto_reconnect;
	p->reconnect_max_ms = opts->reconnect_max_ms > 0 ?
	    opts->reconnect_max_ms : DEFAULT_RECONNECT_MAX;
	p->backoff_ms = RECONNECT_MIN;
	msgpack_sbuffer_init(&p->sbuf);
	msgpack_packer_init(&p->pk, p, req_write);
	if (!msgpack_unpacker_init(&p->unp, READ_SIZE))
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	msgpack_unpacked_init(&p->res);
	if (opts->label != NULL && (p->label = strdup(opts->label)) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	if (opts->path != NULL) {
		if (strlen(opts->path) >= sizeof(p->path))
			return fail(p, PROCREG_E_INVAL, "socket path too long");
		strcpy(p->path, opts->path);
	} else {
		char err[256];

		if (paths_default_socket(p->path, sizeof(p->path), false, err,
		    sizeof(err)) < 0)
			return fail(p, PROCREG_E_CONNECT, "%s", err);
	}
	if ((r = open_socket(p)) != PROCREG_OK)
		return r;
	/* hello tells us our conn id (and the daemon our label). */
	if ((r = do_hello(p, NULL)) != PROCREG_OK) {
		disconnect(p);
		return r;
	}
	return PROCREG_OK;
}

void
procreg_free(procreg_t *p)
{
	struct procreg_event *ev;

	if (p == NULL)
		return;
	if (p->fd >= 0)
		close(p->fd);
	while ((ev = queue_pop(p)) != NULL)
		procreg_event_free(ev);
	free(p->q);
	for (size_t i = 0; i < p->nnames; i++) {
		free(p->names[i].name);
		free(p->names[i].value);
	}
	free(p->names);
	for (size_t i = 0; i < p->ngroups; i++) {
		free(p->groups[i].name);
		free(p->groups[i].value);
	}
	free(p->groups);
	for (size_t i = 0; i < p->nmons; i++)
		free(p->mons[i].name);
	free(p->mons);
	free(p->subs);
	free(p->calls);
	free(p->label);
	msgpack_unpacked_destroy(&p->res);
	msgpack_unpacker_destroy(&p->unp);
	msgpack_sbuffer_destroy(&p->sbuf);
	free(p);
}

int
procreg_hello(procreg_t *p, struct procreg_hello *out)
{
	return do_hello(p, out);
}

/*
 * A protocol-2 request's status: when a daemon of protocol 1 did not know
 * the method (or the connection target), the message says so.
 */
static int
p2_status(procreg_t *p, int r)
{
	size_t len = strlen(p->errmsg);

	if ((r == PROCREG_E_UNKNOWN_METHOD || r == PROCREG_E_BAD_REQUEST) &&
	    p->protocol > 0 && p->protocol < 2)
		snprintf(p->errmsg + len, sizeof(p->errmsg) - len, " (the "
		    "daemon speaks protocol %" PRIu64 ", this needs 2)",
		    p->protocol);
	return r;
}

/* Reject a NULL name; the daemon judges the rest (bad_request). */
static int
check_name(procreg_t *p, const char *name)
{
	if (name == NULL)
		return fail(p, PROCREG_E_INVAL, "the name is NULL");
	return PROCREG_OK;
}

/* Remember a registered name (or a joined group) in *v for reconnects. */
static int
hold_in(procreg_t *p, struct held_name **v, size_t *n, size_t *cap,
    const char *name, const void *value, size_t vlen)
{
	struct held_name h = { 0 };

	if (!grow((void **)v, cap, *n, sizeof(**v)))
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	h.name = strdup(name);
	h.value = value ? dup_mem(value, vlen) : NULL;
	h.value_len = vlen;
	if (h.name == NULL || (value && h.value == NULL)) {
		free(h.name);
		free(h.value);
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	(*v)[(*n)++] = h;
	return PROCREG_OK;
}

/* The held name (or group) called name in v, or NULL. */
static struct held_name *
held_find(struct held_name *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (!v[i].gone && strcmp(v[i].name, name) == 0)
			return &v[i];
	}
	return NULL;
}

/* Forget a held name (or group). */
static void
forget_in(struct held_name *v, size_t *n, const char *name)
{
	struct held_name *h = held_find(v, *n, name);

	if (h != NULL) {
		free(h->name);
		free(h->value);
		*h = v[--*n];
	}
}

static int
hold_name(procreg_t *p, const char *name, const void *value, size_t vlen)
{
	return hold_in(p, &p->names, &p->nnames, &p->names_cap, name, value,
	    vlen);
}

/* Remember a name registered with flags (waiting: we are queued). */
static int
hold_name_opts(procreg_t *p, const char *name, const void *value,
    size_t vlen, unsigned flags, bool waiting)
{
	int r;

	if ((r = hold_name(p, name, value, vlen)) != PROCREG_OK)
		return r;
	p->names[p->nnames - 1].flags = flags;
	p->names[p->nnames - 1].waiting = waiting;
	return PROCREG_OK;
}

static void
forget_name(procreg_t *p, const char *name)
{
	forget_in(p->names, &p->nnames, name);
}

int
procreg_register(procreg_t *p, const char *name, const void *value,
    size_t vlen, struct procreg_entry **out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if ((r = check_value(p, value, vlen, PARAM_LEVELS, "value")) != PROCREG_OK)
		return r;
	id = req_begin(p, "register", value ? 2 : 1);
	pack_str(p, name);
	if (value != NULL)
		(void)req_write(p, value, vlen);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return r;
	if (p->auto_reconnect && (r = hold_name(p, name, value, vlen)) != 0)
		return r;
	if (out != NULL && (*out = entry_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

size_t
procreg_pack_str(void *buf, size_t size, const char *s)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_str(&pk, strlen(s)) == 0 &&
	    msgpack_pack_str_body(&pk, s, strlen(s)) == 0 && sb.size <= size) {
		memcpy(buf, sb.data, sb.size);
		n = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	return n;
}

size_t
procreg_pack_int(void *buf, size_t size, int64_t v)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_int64(&pk, v) == 0 && sb.size <= size) {
		memcpy(buf, sb.data, sb.size);
		n = sb.size;
	}
	msgpack_sbuffer_destroy(&sb);
	return n;
}

int
procreg_register_str(procreg_t *p, const char *name, const char *value,
    struct procreg_entry **out)
{
	size_t len = value ? strlen(value) + 5 : 0;
	char *buf;
	int r;

	if (value == NULL)
		return procreg_register(p, name, NULL, 0, out);
	if ((buf = malloc(len)) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	len = procreg_pack_str(buf, len, value);
	r = procreg_register(p, name, buf, len, out);
	free(buf);
	return r;
}

int
procreg_register_int(procreg_t *p, const char *name, int64_t value,
    struct procreg_entry **out)
{
	char buf[9];

	return procreg_register(p, name, buf, procreg_pack_int(buf,
	    sizeof(buf), value), out);
}

/* unregister [name] or, gen not NULL, [name, gen]. */
static int
unregister_impl(procreg_t *p, const char *name, const uint64_t *gen)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	id = req_begin(p, "unregister", gen != NULL ? 2 : 1);
	pack_str(p, name);
	if (gen != NULL)
		msgpack_pack_uint64(&p->pk, *gen);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return gen != NULL ? p2_status(p, r) : r;
	/* Ours no more, or (a waiter) our place in its queue is given up. */
	forget_name(p, name);
	return PROCREG_OK;
}

int
procreg_unregister(procreg_t *p, const char *name)
{
	return unregister_impl(p, name, NULL);
}

int
procreg_evict(procreg_t *p, const char *name)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	id = req_begin(p, "evict", 1);
	pack_str(p, name);
	return call(p, id, &res);
}

int
procreg_whereis(procreg_t *p, const char *name, struct procreg_entry **out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	*out = NULL;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	id = req_begin(p, "whereis", 1);
	pack_str(p, name);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return r;
	if (res->type == MSGPACK_OBJECT_NIL)
		return PROCREG_OK;
	if ((*out = entry_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

/* send [name, payload] or, gen not NULL, [name, payload, {"gen": g}]. */
static int
send_impl(procreg_t *p, const char *name, const void *payload, size_t len,
    const uint64_t *gen)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if (payload == NULL)
		return fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = check_value(p, payload, len, PARAM_LEVELS, "payload")) != PROCREG_OK)
		return r;
	id = req_begin(p, "send", gen != NULL ? 3 : 2);
	pack_str(p, name);
	(void)req_write(p, payload, len);
	if (gen == NULL)
		return call(p, id, &res);
	msgpack_pack_map(&p->pk, 1);
	pack_str(p, "gen");
	msgpack_pack_uint64(&p->pk, *gen);
	return p2_status(p, call(p, id, &res));
}

int
procreg_send(procreg_t *p, const char *name, const void *payload, size_t len)
{
	return send_impl(p, name, payload, len, NULL);
}

int
procreg_send_str(procreg_t *p, const char *name, const char *text)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if (text == NULL)
		return fail(p, PROCREG_E_INVAL, "the text is NULL");
	id = req_begin(p, "send", 2);
	pack_str(p, name);
	pack_str(p, text);
	return call(p, id, &res);
}

/* Monitor name, or connection conn when name is NULL. */
static int
monitor_target(procreg_t *p, const char *name, uint64_t conn, uint64_t *ref)
{
	const msgpack_object *res;
	struct held_mon m = { 0 };
	uint32_t id;
	int r;

	id = req_begin(p, "monitor", 1);
	if (name != NULL)
		pack_str(p, name);
	else
		msgpack_pack_uint64(&p->pk, conn);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return name != NULL ? r : p2_status(p, r);
	if (!is_uint(res))
		return fail(p, PROCREG_E_PROTOCOL, "malformed ref");
	*ref = res->via.u64;
	if (!p->auto_reconnect)
		return PROCREG_OK;
	/*
	 * Refs handed out are ours from now on: after a reconnect the daemon
	 * numbers monitors afresh, and we translate.
	 */
	m.user_ref = p->next_user_ref++;
	m.server_ref = *ref;
	m.conn = conn;
	if ((name != NULL && (m.name = strdup(name)) == NULL) ||
	    !grow((void **)&p->mons, &p->mons_cap, p->nmons,
	    sizeof(*p->mons))) {
		free(m.name);
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	/* A noproc down comes after the response, so it is not parsed yet:
	 * it will find this entry and translate. */
	p->mons[p->nmons++] = m;
	*ref = m.user_ref;
	return PROCREG_OK;
}

int
procreg_monitor(procreg_t *p, const char *name, uint64_t *ref)
{
	int r;

	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	return monitor_target(p, name, 0, ref);
}

int
procreg_monitor_conn(procreg_t *p, uint64_t conn, uint64_t *ref)
{
	return monitor_target(p, NULL, conn, ref);
}

int
procreg_demonitor(procreg_t *p, uint64_t ref, bool *was_active)
{
	const msgpack_object *res;
	uint64_t server_ref = ref;
	size_t i;
	uint32_t id;
	int r, tries = 0;

again:
	if (p->auto_reconnect) {
		/* Looked up on the connection the request goes to: a
		 * reconnect renumbers the daemon's refs. */
		for (i = 0; i < p->nmons && p->mons[i].user_ref != ref; i++)
			;
		if (i == p->nmons) {
			if (was_active != NULL)
				*was_active = false;
			return PROCREG_OK;
		}
		server_ref = p->mons[i].server_ref;
	}
	id = req_begin(p, "demonitor", 1);
	msgpack_pack_uint64(&p->pk, server_ref);
	p->conn_bound = true;
	r = call(p, id, &res);
	p->conn_bound = false;
	if (r == RECONNECTED && ++tries < 3)
		goto again;
	if (r == RECONNECTED)
		return fail(p, PROCREG_E_CLOSED, "connection lost");
	if (r != PROCREG_OK)
		return r;
	if (was_active != NULL)
		*was_active = res->type == MSGPACK_OBJECT_BOOLEAN &&
		    res->via.boolean;
	if (p->auto_reconnect)
		(void)translate_down(p, server_ref);
	return PROCREG_OK;
}

int
procreg_list(procreg_t *p, const char *prefix, struct procreg_entry ***out,
    size_t *count)
{
	struct procreg_entry **v = NULL, *e;
	size_t n = 0, cap = 0;
	char *after = NULL;
	int r = PROCREG_OK;

	*out = NULL;
	*count = 0;
	if (prefix == NULL)
		prefix = "";
	for (;;) {
		const msgpack_object *res;
		uint32_t id = req_begin(p, "list", after ? 3 : 2);

		pack_str(p, prefix);
		msgpack_pack_uint32(&p->pk, PR_LIST_MAX);
		if (after)
			pack_str(p, after);
		if ((r = call(p, id, &res)) != PROCREG_OK)
			goto fail;
		if (res->type != MSGPACK_OBJECT_ARRAY) {
			r = fail(p, PROCREG_E_PROTOCOL, "malformed list");
			goto fail;
		}
		/* Pages may be cut short by size: the end is an empty page. */
		if (res->via.array.size == 0)
			break;
		for (uint32_t i = 0; i < res->via.array.size; i++) {
			if (!grow((void **)&v, &cap, n, sizeof(*v)) ||
			    (e = entry_from(&res->via.array.ptr[i])) == NULL) {
				r = fail(p, PROCREG_E_NOMEM, "out of memory or "
				    "malformed entry");
				goto fail;
			}
			v[n++] = e;
		}
		free(after);
		if ((after = strdup(v[n - 1]->name)) == NULL) {
			r = fail(p, PROCREG_E_NOMEM, "out of memory");
			goto fail;
		}
	}
	free(after);
	*out = v;
	*count = n;
	return PROCREG_OK;
fail:
	free(after);
	procreg_entries_free(v, n);
	return r;
}

int
procreg_stats(procreg_t *p, struct procreg_stats *out)
{
	static const struct {
		const char	*key;
		size_t		 off;
	} keys[] = {
#define K(f) { #f, offsetof(struct procreg_stats, f) }
		K(connections), K(names), K(monitors), K(requests),
		K(messages), K(downs), K(notifications_ignored),
		K(connections_total), K(uptime_ms), K(groups), K(members),
		K(calls), K(replies_late), K(awaits), K(subscriptions), K(seq),
#undef K
	};
	const msgpack_object *res;
	uint32_t id;
	int r;

	memset(out, 0, sizeof(*out));
	id = req_begin(p, "stats", 0);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return r;
	if (res->type != MSGPACK_OBJECT_MAP)
		return fail(p, PROCREG_E_PROTOCOL, "malformed stats");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			if (is_str(&res->via.map.ptr[i].key, keys[k].key))
				*(uint64_t *)((char *)out + keys[k].off) =
				    (uint64_t)as_int(&res->via.map.ptr[i].val);
		}
	}
	return PROCREG_OK;
}

/* ---- protocol 2 ---- */

int
procreg_send_conn(procreg_t *p, uint64_t conn, const void *payload,
    size_t len)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (payload == NULL)
		return fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = check_value(p, payload, len, PARAM_LEVELS, "payload")) != PROCREG_OK)
		return r;
	id = req_begin(p, "send", 2);
	msgpack_pack_uint64(&p->pk, conn);
	(void)req_write(p, payload, len);
	return p2_status(p, call(p, id, &res));
}

/*
 * call name, or connection conn when name is NULL.  The daemon answers
 * timeout itself when timeout_ms passes: our own wait is that plus the
 * handle's timeout, for the daemon to answer in.
 */
static int
call_target(procreg_t *p, const char *name, uint64_t conn,
    const void *payload, size_t len, int timeout_ms, void **result,
    size_t *result_len)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (result != NULL)
		*result = NULL;
	if (result_len != NULL)
		*result_len = 0;
	if (payload == NULL)
		return fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if (timeout_ms < 0)
		return fail(p, PROCREG_E_INVAL, "a negative call timeout");
	if ((r = check_value(p, payload, len, PARAM_LEVELS, "payload")) != PROCREG_OK)
		return r;
	id = req_begin(p, "call", timeout_ms > 0 ? 3 : 2);
	if (name != NULL)
		pack_str(p, name);
	else
		msgpack_pack_uint64(&p->pk, conn);
	(void)req_write(p, payload, len);
	if (timeout_ms > 0)
		msgpack_pack_uint32(&p->pk, (uint32_t)timeout_ms);
	r = call_wait(p, id, &res, (timeout_ms > 0 ? (int64_t)timeout_ms :
	    (int64_t)PR_CALL_TIMEOUT_DEFAULT) + p->timeout_ms);
	if (r != PROCREG_OK)
		return p2_status(p, r);
	if (result != NULL) {
		size_t n;

		if ((*result = encode(res, &n)) == NULL)
			return fail(p, PROCREG_E_NOMEM, "out of memory");
		if (result_len != NULL)
			*result_len = n;
	}
	return PROCREG_OK;
}

int
procreg_call(procreg_t *p, const char *name, const void *payload,
    size_t len, int timeout_ms, void **result, size_t *result_len)
{
	int r;

	if (result != NULL)
		*result = NULL;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	return call_target(p, name, 0, payload, len, timeout_ms, result,
	    result_len);
}

int
procreg_call_conn(procreg_t *p, uint64_t conn, const void *payload,
    size_t len, int timeout_ms, void **result, size_t *result_len)
{
	return call_target(p, NULL, conn, payload, len, timeout_ms, result,
	    result_len);
}

/* A call id this connection did not receive (it came before a
 * reconnect, or was answered): not sent to a daemon that never made it. */
static int
not_this_call(procreg_t *p, uint64_t call_id)
{
	return fail(p, PROCREG_E_NOT_FOUND, "no call %" PRIu64 " pending on "
	    "this connection (reconnected since?)", call_id);
}

/* Send a packed reply to (the caller's) call_id; never to a new
 * connection. */
static int
reply_call(procreg_t *p, uint32_t id, uint64_t call_id)
{
	const msgpack_object *res;
	int r;

	p->conn_bound = true;
	r = call(p, id, &res);
	p->conn_bound = false;
	if (r == RECONNECTED)
		return not_this_call(p, call_id);
	if (p->auto_reconnect && r != PROCREG_E_TIMEOUT &&
	    r != PROCREG_E_CLOSED)
		(void)call_known(p, &call_id, true);
	return p2_status(p, r);
}

int
procreg_reply(procreg_t *p, uint64_t call_id, const void *result,
    size_t len)
{
	uint64_t user_id = call_id;
	uint32_t id;
	int r;

	if ((r = check_value(p, result, len, PARAM_LEVELS, "result")) != PROCREG_OK)
		return r;
	if (p->auto_reconnect && !call_known(p, &call_id, false))
		return not_this_call(p, user_id);
	id = req_begin(p, "reply", 2);
	msgpack_pack_uint64(&p->pk, call_id);
	if (result != NULL)
		(void)req_write(p, result, len);
	else
		msgpack_pack_nil(&p->pk);
	return reply_call(p, id, user_id);
}

int
procreg_reply_error(procreg_t *p, uint64_t call_id, const char *code,
    const char *message)
{
	uint64_t user_id = call_id;
	uint32_t id;

	if (code == NULL)
		return fail(p, PROCREG_E_INVAL, "the error code is NULL");
	if (p->auto_reconnect && !call_known(p, &call_id, false))
		return not_this_call(p, user_id);
	id = req_begin(p, "reply", 3);
	msgpack_pack_uint64(&p->pk, call_id);
	msgpack_pack_nil(&p->pk);
	msgpack_pack_array(&p->pk, 2);
	pack_str(p, code);
	pack_str(p, message != NULL ? message : "");
	return reply_call(p, id, user_id);
}

int
procreg_join(procreg_t *p, const char *group, const void *value,
    size_t vlen, struct procreg_member **out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_name(p, group)) != PROCREG_OK)
		return r;
	if ((r = check_value(p, value, vlen, PARAM_LEVELS, "value")) != PROCREG_OK)
		return r;
	id = req_begin(p, "join", value ? 2 : 1);
	pack_str(p, group);
	if (value != NULL)
		(void)req_write(p, value, vlen);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (p->auto_reconnect && (r = hold_in(p, &p->groups, &p->ngroups,
	    &p->groups_cap, group, value, vlen)) != PROCREG_OK)
		return r;
	if (out != NULL && (*out = member_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed member entry");
	return PROCREG_OK;
}

int
procreg_leave(procreg_t *p, const char *group)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if ((r = check_name(p, group)) != PROCREG_OK)
		return r;
	id = req_begin(p, "leave", 1);
	pack_str(p, group);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	forget_in(p->groups, &p->ngroups, group);
	return PROCREG_OK;
}

int
procreg_members(procreg_t *p, const char *group,
    struct procreg_member ***out, size_t *count)
{
	const msgpack_object *res;
	struct procreg_member **v;
	uint32_t id, n;
	int r;

	*out = NULL;
	*count = 0;
	if ((r = check_name(p, group)) != PROCREG_OK)
		return r;
	id = req_begin(p, "members", 1);
	pack_str(p, group);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return fail(p, PROCREG_E_PROTOCOL, "malformed members");
	n = res->via.array.size;
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		if ((v[i] = member_from(&res->via.array.ptr[i])) == NULL) {
			procreg_members_free(v, i);
			return fail(p, PROCREG_E_NOMEM, "out of memory or "
			    "malformed member entry");
		}
	}
	*out = v;
	*count = n;
	return PROCREG_OK;
}

int
procreg_publish(procreg_t *p, const char *group, const void *payload,
    size_t len, bool echo, uint64_t *delivered, uint64_t **busy,
    size_t *nbusy)
{
	const msgpack_object *res;
	uint64_t *b = NULL;
	size_t nb = 0;
	uint32_t id;
	int r;

	if (delivered != NULL)
		*delivered = 0;
	if (busy != NULL)
		*busy = NULL;
	if (nbusy != NULL)
		*nbusy = 0;
	if ((r = check_name(p, group)) != PROCREG_OK)
		return r;
	if (payload == NULL)
		return fail(p, PROCREG_E_INVAL, "the payload is NULL");
	if ((r = check_value(p, payload, len, PARAM_LEVELS, "payload")) != PROCREG_OK)
		return r;
	/* Options only when they differ from the defaults. */
	id = req_begin(p, "publish", echo ? 2 : 3);
	pack_str(p, group);
	(void)req_write(p, payload, len);
	if (!echo) {
		msgpack_pack_map(&p->pk, 1);
		pack_str(p, "echo");
		msgpack_pack_false(&p->pk);
	}
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_MAP)
		return fail(p, PROCREG_E_PROTOCOL, "malformed publish result");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (is_str(k, "delivered") && delivered != NULL)
			*delivered = (uint64_t)as_int(v);
		else if (is_str(k, "busy") && v->type == MSGPACK_OBJECT_ARRAY &&
		    busy != NULL && b == NULL) {
			nb = v->via.array.size;
			if ((b = calloc(nb ? nb : 1, sizeof(*b))) == NULL)
				return fail(p, PROCREG_E_NOMEM,
				    "out of memory");
			for (size_t j = 0; j < nb; j++)
				b[j] = (uint64_t)as_int(&v->via.array.ptr[j]);
		}
	}
	if (busy != NULL)
		*busy = b;
	if (nbusy != NULL)
		*nbusy = nb;
	return PROCREG_OK;
}

/* update [name, value] or, gen not NULL, [name, value, gen]. */
static int
update_impl(procreg_t *p, const char *name, const void *value,
    size_t vlen, const uint64_t *gen, struct procreg_entry **out)
{
	const msgpack_object *res;
	struct held_name *h;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if ((r = check_value(p, value, vlen, PARAM_LEVELS, "value")) != PROCREG_OK)
		return r;
	id = req_begin(p, "update", gen != NULL ? 3 : 2);
	pack_str(p, name);
	if (value != NULL)
		(void)req_write(p, value, vlen);
	else
		msgpack_pack_nil(&p->pk);
	if (gen != NULL)
		msgpack_pack_uint64(&p->pk, *gen);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	/* A reconnect registers the name with its new value. */
	if ((h = held_find(p->names, p->nnames, name)) != NULL) {
		void *nv = value != NULL ? dup_mem(value, vlen) : NULL;

		if (value != NULL && nv == NULL)
			return fail(p, PROCREG_E_NOMEM, "out of memory");
		free(h->value);
		h->value = nv;
		h->value_len = vlen;
	}
	if (out != NULL && (*out = entry_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

int
procreg_update(procreg_t *p, const char *name, const void *value,
    size_t vlen, struct procreg_entry **out)
{
	return update_impl(p, name, value, vlen, NULL, out);
}

/* An array of str into a new NULL-free vector; false when malformed or
 * out of memory. */
static bool
strv_from(const msgpack_object *o, char ***out, size_t *n)
{
	char **v;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return false;
	if ((v = calloc(o->via.array.size + 1, sizeof(*v))) == NULL)
		return false;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];

		if (s->type != MSGPACK_OBJECT_STR || (v[i] =
		    dup_bytes(s->via.str.ptr, s->via.str.size)) == NULL) {
			procreg_strv_free(v, i);
			return false;
		}
	}
	*out = v;
	*n = o->via.array.size;
	return true;
}

int
procreg_keys(procreg_t *p, uint64_t conn, char ***names, size_t *nnames,
    char ***groups, size_t *ngroups)
{
	const msgpack_object *res, *on = NULL, *og = NULL;
	char **vn = NULL, **vg = NULL;
	size_t nn = 0, ng = 0;
	uint32_t id;
	int r;

	if (names != NULL)
		*names = NULL;
	if (nnames != NULL)
		*nnames = 0;
	if (groups != NULL)
		*groups = NULL;
	if (ngroups != NULL)
		*ngroups = 0;
	id = req_begin(p, "keys", 1);
	msgpack_pack_uint64(&p->pk, conn);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (res->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < res->via.map.size; i++) {
			if (is_str(&res->via.map.ptr[i].key, "names"))
				on = &res->via.map.ptr[i].val;
			else if (is_str(&res->via.map.ptr[i].key, "groups"))
				og = &res->via.map.ptr[i].val;
		}
	}
	if (on == NULL || og == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed keys result");
	if ((names != NULL && !strv_from(on, &vn, &nn)) ||
	    (groups != NULL && !strv_from(og, &vg, &ng))) {
		procreg_strv_free(vn, nn);
		return fail(p, PROCREG_E_NOMEM, "out of memory or malformed "
		    "keys result");
	}
	if (names != NULL)
		*names = vn;
	if (nnames != NULL)
		*nnames = nn;
	if (groups != NULL)
		*groups = vg;
	if (ngroups != NULL)
		*ngroups = ng;
	return PROCREG_OK;
}

int
procreg_register_many(procreg_t *p, size_t n, const char *const *names,
    const void *const *values, const size_t *value_lens,
    struct procreg_entry ***out)
{
	const msgpack_object *res;
	struct procreg_entry **v;
	uint32_t id;
	size_t i;
	int r;

	if (out != NULL)
		*out = NULL;
	if (n > 0 && names == NULL)
		return fail(p, PROCREG_E_INVAL, "the names are NULL");
	if (n > UINT32_MAX)
		return fail(p, PROCREG_E_INVAL, "too many names");
	for (i = 0; i < n; i++) {
		if (names[i] == NULL)
			return fail(p, PROCREG_E_INVAL, "name %zu is NULL",
			    i + 1);
		if (values != NULL && values[i] != NULL && value_lens == NULL)
			return fail(p, PROCREG_E_INVAL, "values without "
			    "value_lens");
		/* [names: [[name, value], ...]]: two levels more. */
		if (values != NULL && values[i] != NULL &&
		    (r = check_value(p, values[i],
		    value_lens[i], PARAM_LEVELS + 2, "value")) != PROCREG_OK)
			return r;
	}
	id = req_begin(p, "register_many", 1);
	msgpack_pack_array(&p->pk, (uint32_t)n);
	for (i = 0; i < n; i++) {
		bool has = values != NULL && values[i] != NULL;

		msgpack_pack_array(&p->pk, has ? 2 : 1);
		pack_str(p, names[i]);
		if (has)
			(void)req_write(p, values[i],
			    value_lens[i]);
	}
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	for (i = 0; p->auto_reconnect && i < n; i++) {
		bool has = values != NULL && values[i] != NULL;

		if ((r = hold_name(p, names[i], has ? values[i] : NULL,
		    has ? value_lens[i] : 0)) != PROCREG_OK)
			return r;
	}
	if (out == NULL)
		return PROCREG_OK;
	if (res->type != MSGPACK_OBJECT_ARRAY || res->via.array.size != n)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entries");
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if ((v[i] = entry_from(&res->via.array.ptr[i])) == NULL) {
			procreg_entries_free(v, i);
			return fail(p, PROCREG_E_NOMEM, "out of memory or "
			    "malformed entry");
		}
	}
	*out = v;
	return PROCREG_OK;
}

/* ---- protocol 2, part 2 ---- */

int
procreg_register_opts(procreg_t *p, const char *name, const void *value,
    size_t vlen, unsigned flags, struct procreg_entry **out,
    uint32_t *queued)
{
	const msgpack_object *res;
	uint32_t id, pos;
	int r;

	if (out != NULL)
		*out = NULL;
	if (queued != NULL)
		*queued = 0;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if (flags & ~(PROCREG_QUEUE | PROCREG_ALLOW_REPLACEMENT |
	    PROCREG_REPLACE))
		return fail(p, PROCREG_E_INVAL, "unknown register flags %#x",
		    flags);
	if ((r = check_value(p, value, vlen, PARAM_LEVELS, "value")) != PROCREG_OK)
		return r;
	id = req_register(p, name, value, vlen, flags);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return flags ? p2_status(p, r) : r;
	pos = queued_from(res);
	if (p->auto_reconnect && (r = hold_name_opts(p, name, value, vlen,
	    flags, pos > 0)) != PROCREG_OK)
		return r;
	if (pos > 0) {
		if (queued != NULL)
			*queued = pos;
		return PROCREG_OK;
	}
	if (out != NULL && (*out = entry_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

int
procreg_unregister_gen(procreg_t *p, const char *name, uint64_t gen)
{
	return unregister_impl(p, name, &gen);
}

int
procreg_update_gen(procreg_t *p, const char *name, const void *value,
    size_t vlen, uint64_t gen, struct procreg_entry **out)
{
	return update_impl(p, name, value, vlen, &gen, out);
}

int
procreg_send_gen(procreg_t *p, const char *name, const void *payload,
    size_t len, uint64_t gen)
{
	return send_impl(p, name, payload, len, &gen);
}

int
procreg_await(procreg_t *p, const char *name, int timeout_ms,
    struct procreg_entry **out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	if (timeout_ms < 0 || (unsigned)timeout_ms > PR_CALL_TIMEOUT_MAX)
		return fail(p, PROCREG_E_INVAL, "an await timeout is from 0 "
		    "to %u ms", PR_CALL_TIMEOUT_MAX);
	id = req_begin(p, "await", 2);
	pack_str(p, name);
	msgpack_pack_uint32(&p->pk, (uint32_t)timeout_ms);
	/* The daemon answers timeout itself: wait for it that long, plus
	 * the handle's timeout for the answer. */
	if ((r = call_wait(p, id, &res, (int64_t)timeout_ms +
	    p->timeout_ms)) != PROCREG_OK)
		return p2_status(p, r);
	if (out != NULL && (*out = entry_from(res)) == NULL)
		return fail(p, PROCREG_E_PROTOCOL, "malformed entry");
	return PROCREG_OK;
}

int
procreg_queue(procreg_t *p, const char *name, uint64_t **conns, size_t *n)
{
	const msgpack_object *res;
	uint64_t *v;
	uint32_t id;
	int r;

	*conns = NULL;
	*n = 0;
	if ((r = check_name(p, name)) != PROCREG_OK)
		return r;
	id = req_begin(p, "queue", 1);
	pack_str(p, name);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_ARRAY)
		return fail(p, PROCREG_E_PROTOCOL, "malformed queue");
	if (res->via.array.size == 0)
		return PROCREG_OK;
	if ((v = calloc(res->via.array.size, sizeof(*v))) == NULL)
		return fail(p, PROCREG_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < res->via.array.size; i++) {
		if (!is_uint(&res->via.array.ptr[i])) {
			free(v);
			return fail(p, PROCREG_E_PROTOCOL, "malformed queue");
		}
		v[i] = res->via.array.ptr[i].via.u64;
	}
	*conns = v;
	*n = res->via.array.size;
	return PROCREG_OK;
}

void
procreg_subscription_free(struct procreg_subscription *s)
{
	if (s == NULL)
		return;
	procreg_entries_free(s->entries, s->nentries);
	procreg_members_free(s->members, s->nmembers);
	memset(s, 0, sizeof(*s));
}

/* A snapshot (entries, then member entries) into out; false when
 * malformed or out of memory. */
static bool
snapshot_from(const msgpack_object *a, struct procreg_subscription *out)
{
	uint32_t n = a->via.array.size;

	if ((out->entries = calloc(n ? n : 1, sizeof(*out->entries))) ==
	    NULL || (out->members = calloc(n ? n : 1,
	    sizeof(*out->members))) == NULL)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *o = &a->via.array.ptr[i];
		bool member = false;

		if (o->type != MSGPACK_OBJECT_MAP)
			return false;
		for (uint32_t k = 0; k < o->via.map.size; k++)
			member = member || is_str(&o->via.map.ptr[k].key,
			    "group");
		if (member) {
			if ((out->members[out->nmembers] = member_from(o)) ==
			    NULL)
				return false;
			out->nmembers++;
		} else {
			if ((out->entries[out->nentries] = entry_from(o)) ==
			    NULL)
				return false;
			out->nentries++;
		}
	}
	return true;
}

int
procreg_subscribe(procreg_t *p, const char *prefix,
    const struct procreg_subscribe_opts *opts,
    struct procreg_subscription *out)
{
	struct procreg_subscribe_opts def = { 0 };
	const msgpack_object *res, *entries = NULL;
	struct held_sub h = { 0 };
	bool got_sub = false, got_seq = false;
	uint32_t id;
	int r;

	memset(out, 0, sizeof(*out));
	if (opts == NULL)
		opts = &def;
	if (prefix == NULL)
		prefix = "";
	id = req_begin(p, "subscribe", opts->groups || opts->has_since ? 2 :
	    1);
	pack_str(p, prefix);
	if (opts->groups || opts->has_since) {
		msgpack_pack_map(&p->pk, (opts->groups ? 1 : 0) +
		    (opts->has_since ? 1 : 0));
		if (opts->groups) {
			pack_str(p, "groups");
			msgpack_pack_true(&p->pk);
		}
		if (opts->has_since) {
			pack_str(p, "since");
			msgpack_pack_uint64(&p->pk, opts->since);
		}
	}
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (res->type != MSGPACK_OBJECT_MAP)
		return fail(p, PROCREG_E_PROTOCOL, "malformed subscribe result");
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (is_str(k, "sub") && is_uint(v)) {
			out->sub = v->via.u64;
			got_sub = true;
		} else if (is_str(k, "seq") && is_uint(v)) {
			out->seq = v->via.u64;
			got_seq = true;
		} else if (is_str(k, "gap") &&
		    v->type == MSGPACK_OBJECT_BOOLEAN)
			out->gap = v->via.boolean;
		else if (is_str(k, "entries") &&
		    v->type == MSGPACK_OBJECT_ARRAY)
			entries = v;
	}
	if (!got_sub || !got_seq || (entries == NULL &&
	    (!opts->has_since || out->gap)))
		return fail(p, PROCREG_E_PROTOCOL, "malformed subscribe result");
	/* Ours from now on, whatever follows: the daemon holds it. */
	h.server_sub = out->sub;
	h.last_seq = opts->has_since && !out->gap ? opts->since : out->seq;
	if (p->auto_reconnect) {
		if (!grow((void **)&p->subs, &p->subs_cap, p->nsubs,
		    sizeof(*p->subs)))
			return fail(p, PROCREG_E_NOMEM, "out of memory");
		h.user_sub = ++p->next_user_sub;
		p->subs[p->nsubs++] = h;
		out->sub = h.user_sub;
	}
	if (entries != NULL) {
		out->has_snapshot = true;
		if (!snapshot_from(entries, out)) {
			procreg_subscription_free(out);
			return fail(p, PROCREG_E_NOMEM, "out of memory or "
			    "malformed snapshot");
		}
	}
	return PROCREG_OK;
}

/* Drop the queued events of subscription sub. */
static void
drop_sub_events(procreg_t *p, uint64_t sub)
{
	size_t keep = 0;

	for (size_t i = 0; i < p->q_len; i++) {
		struct procreg_event *ev = p->q[(p->q_head + i) % p->q_cap];

		if ((ev->kind == PROCREG_EV_SUBSCRIPTION ||
		    ev->kind == PROCREG_EV_OVERFLOW ||
		    ev->kind == PROCREG_EV_RESTARTED) && ev->sub == sub)
			procreg_event_free(ev);
		else
			p->q[(p->q_head + keep++) % p->q_cap] = ev;
	}
	p->q_len = keep;
}

int
procreg_unsubscribe(procreg_t *p, uint64_t sub, bool *was_active)
{
	const msgpack_object *res;
	uint64_t server_sub = sub;
	size_t i = 0;
	uint32_t id;
	int r;

	if (was_active != NULL)
		*was_active = false;
	if (p->auto_reconnect) {
		for (i = 0; i < p->nsubs && p->subs[i].user_sub != sub; i++)
			;
		if (i == p->nsubs) {
			/* Ended (overflow, reconnect) or never ours. */
			drop_sub_events(p, sub);
			return PROCREG_OK;
		}
		server_sub = p->subs[i].server_sub;
	}
	id = req_begin(p, "unsubscribe", 1);
	msgpack_pack_uint64(&p->pk, server_sub);
	if ((r = call(p, id, &res)) != PROCREG_OK)
		return p2_status(p, r);
	if (was_active != NULL)
		*was_active = res->type == MSGPACK_OBJECT_BOOLEAN &&
		    res->via.boolean;
	if (p->auto_reconnect) {
		/* The call may have read its overflow: look it up again. */
		for (i = 0; i < p->nsubs && p->subs[i].user_sub != sub; i++)
			;
		if (i < p->nsubs)
			forget_sub(p, i);
	}
	/* Those read up to the response (its overflow too); none follows. */
	drop_sub_events(p, sub);
	return PROCREG_OK;
}

/* Parse every complete object already read (queueing notifications). */
static int
drain_parsed(procreg_t *p)
{
	int r;

	while ((r = next_object(p, 0, false)) == 2)
		;
	return r < 0 ? r : PROCREG_OK;
}

int
procreg_next_event(procreg_t *p, int timeout_ms, struct procreg_event **out)
{
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : mono_ms() + timeout_ms;
	int r;

	*out = NULL;
	for (;;) {
		if ((*out = queue_pop(p)) != NULL)
			return PROCREG_OK;
		if (p->fd < 0) {
			if ((r = reconnect(p, deadline)) != PROCREG_OK)
				return r;
			continue;
		}
		if ((r = drain_parsed(p)) < 0)
			goto lost;
		if (p->q_len > 0)
			continue;

		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int64_t left = deadline - mono_ms();

		if (left < 0)
			left = 0;
		r = poll(&pfd, 1, left > INT32_MAX ? -1 : (int)left);
		if (r < 0 && errno != EINTR)
			return fail(p, PROCREG_E_CLOSED, "poll: %s",
			    strerror(errno));
		if (r > 0 && (r = read_some(p)) < 0)
			goto lost;
		if (r <= 0 && mono_ms() >= deadline && p->q_len == 0)
			return fail(p, PROCREG_E_TIMEOUT, "no event");
		continue;
lost:
		if (!p->auto_reconnect || p->fd >= 0)
			return r;
	}
}

void
procreg_set_callbacks(procreg_t *p, const struct procreg_callbacks *cb,
    void *arg)
{
	if (cb != NULL)
		p->cb = *cb;
	else
		memset(&p->cb, 0, sizeof(p->cb));
	p->cb_arg = arg;
}

size_t
procreg_pending(procreg_t *p)
{
	if (p->fd >= 0)
		(void)drain_parsed(p);
	return p->q_len;
}

int
procreg_process(procreg_t *p)
{
	struct procreg_event *ev;
	int r = PROCREG_OK, err = PROCREG_OK;

	if (p->fd < 0 && p->q_len == 0 && (r = reconnect(p, 0)) != PROCREG_OK)
		return r;
	/*
	 * Parse what is buffered before each read: a read that finds the
	 * connection closed drops the buffer, and what a call left there
	 * must not go with it.
	 */
	if (p->fd >= 0 && (r = drain_parsed(p)) < 0)
		err = r;
	while (err == PROCREG_OK && p->fd >= 0 && (r = read_some(p)) == 1) {
		if ((r = drain_parsed(p)) < 0)
			err = r;
	}
	if (r < 0 && err == PROCREG_OK)
		err = r;
	/*
	 * A callback may make calls, which may read more: keep parsing and
	 * dispatching until nothing is left, so that no event waits unseen
	 * behind a socket that is no longer readable.  Events received
	 * before a failure are delivered before it is reported.
	 */
	for (;;) {
		if (p->fd >= 0 && (r = drain_parsed(p)) < 0 && err == PROCREG_OK)
			err = r;
		if (p->cb.on_event == NULL || (ev = queue_pop(p)) == NULL)
			break;
		p->cb.on_event(p, ev, p->cb_arg);
		procreg_event_free(ev);
	}
	/* With auto_reconnect a lost connection is retried, not reported. */
	if (err != PROCREG_OK && p->auto_reconnect && p->fd < 0)
		return PROCREG_OK;
	return err;
}

/* A JSON writer over a fixed buffer, counting what would not fit. */
struct jbuf {
	char	*b;
	size_t	 size;
	size_t	 len;
};

static void
jput(struct jbuf *j, const char *s, size_t n)
{
	if (j->len < j->size) {
		size_t room = j->size - j->len - 1;

		memcpy(j->b + j->len, s, n < room ? n : room);
	}
	j->len += n;
}

static void
jprintf(struct jbuf *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
jprintf(struct jbuf *j, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		jput(j, tmp, (size_t)n < sizeof(tmp) ? (size_t)n :
		    sizeof(tmp) - 1);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;

	if (s[0] < 0x80)
		return 1;
	k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	if (k == 0 || k > n || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;	/* overlong, surrogate, past U+10FFFF */
	return k;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void
jstring(struct jbuf *j, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	jput(j, "\"", 1);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(s + i, n - i);

		if (k == 0) {
			jput(j, "\\ufffd", 6);
			i++;
		} else if (s[i] == '"' || s[i] == '\\') {
			jput(j, "\\", 1);
			jput(j, (const char *)s + i, 1);
			i++;
		} else if (s[i] < 0x20) {
			jprintf(j, "\\u%04x", s[i]);
			i++;
		} else {
			jput(j, (const char *)s + i, k);
			i += k;
		}
	}
	jput(j, "\"", 1);
}

/* The shortest text that reads back as the same float; NaN and the
 * infinities, which JSON lacks, as null. */
static void
jfloat(struct jbuf *j, double v, bool single)
{
	char tmp[40];

	if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
		jput(j, "null", 4);
		return;
	}
	for (int prec = single ? 6 : 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (single ? (float)strtod(tmp, NULL) == (float)v :
		    strtod(tmp, NULL) == v)
			break;
	}
	/* Keep it a float for readers that tell 1 from 1.0. */
	if (strpbrk(tmp, ".e") == NULL)
		strcat(tmp, ".0");
	jput(j, tmp, strlen(tmp));
}

static void
jvalue(struct jbuf *j, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		jput(j, "null", 4);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		jput(j, o->via.boolean ? "true" : "false",
		    o->via.boolean ? 4 : 5);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		jprintf(j, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		jprintf(j, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		jfloat(j, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32);
		break;
	case MSGPACK_OBJECT_STR:
		jstring(j, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		/* JSON has no bytes: a bin shows as a string of its bytes. */
		jstring(j, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		jprintf(j, "{\"ext\":%d,\"size\":%u}", (int)o->via.ext.type,
		    (unsigned)o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		jput(j, "[", 1);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				jput(j, ",", 1);
			jvalue(j, &o->via.array.ptr[i]);
		}
		jput(j, "]", 1);
		break;
	case MSGPACK_OBJECT_MAP:
		jput(j, "{", 1);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;

			if (i)
				jput(j, ",", 1);
			/* JSON keys are strings: other keys are written as
			 * their JSON text, quoted. */
			if (k->type == MSGPACK_OBJECT_STR) {
				jvalue(j, k);
			} else {
				char tmp[256];
				struct jbuf kj = { tmp, sizeof(tmp), 0 };

				jvalue(&kj, k);
				jstring(j, tmp, kj.len < sizeof(tmp) ? kj.len :
				    sizeof(tmp) - 1);
			}
			jput(j, ":", 1);
			jvalue(j, &o->via.map.ptr[i].val);
		}
		jput(j, "}", 1);
		break;
	}
}

int
procreg_format_json(char *buf, size_t size, const void *mp, size_t len)
{
	struct jbuf j = { buf, size, 0 };
	msgpack_unpacked u;
	size_t off = 0;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, &off) != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&u);
		if (size > 0)
			buf[0] = '\0';
		return -1;
	}
	jvalue(&j, &u.data);
	msgpack_unpacked_destroy(&u);
	if (size > 0)
		buf[j.len < size ? j.len : size - 1] = '\0';
	return (int)j.len;
}
