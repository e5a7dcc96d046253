/*
 * reconnect.c: auto_reconnect's bookkeeping.  The handle remembers what it
 * registered, joined, monitors and subscribed to, and the calls it has
 * not answered; after the daemon comes back it registers, joins and
 * monitors again, and translates the new daemon's refs, call ids and
 * subscription ids into the ones the caller was given.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

/* FNV-1a over a name: the keys are the handle's own, not an attacker's. */
static uint64_t
reconnect_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* splitmix64's finaliser: refs and ids are counters, spread them. */
static uint64_t
reconnect_hash_u64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Prepare the handle's tables; PROCREG_OK or PROCREG_E_NOMEM. */
int
reconnect_init(procreg_t *p)
{
	if (htab_init(&p->names.by_name, 0) < 0 ||
	    htab_init(&p->groups.by_name, 0) < 0 ||
	    htab_init(&p->mons_by_user, 0) < 0 ||
	    htab_init(&p->mons_by_server, 0) < 0)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	return PROCREG_OK;
}

static void
reconnect_set_deinit(struct held_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		reconnect_name_free(set->v[i]);
	free(set->v);
	htab_deinit(&set->by_name);
}

/* Free everything auto_reconnect remembers (tables never made: fine). */
void
reconnect_deinit(procreg_t *p)
{
	reconnect_set_deinit(&p->names);
	reconnect_set_deinit(&p->groups);
	for (size_t i = 0; i < p->nmons; i++) {
		free(p->mons[i]->name);
		free(p->mons[i]);
	}
	free(p->mons);
	htab_deinit(&p->mons_by_user);
	htab_deinit(&p->mons_by_server);
	free(p->subs);
	free(p->calls);
}

/*
 * A held name with copies of name and value, in no set yet: made before
 * the request, so that remembering a name the daemon registered cannot
 * fail for want of memory afterwards.
 */
struct held_name *
reconnect_name_new(procreg_t *p, const char *name, const void *value,
    size_t vlen, unsigned flags)
{
	struct held_name *h;

	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->name = strdup(name)) == NULL ||
	    (value != NULL && (h->value = handle_dup_mem(value, vlen)) ==
	    NULL)) {
		reconnect_name_free(h);
		(void)handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		return NULL;
	}
	h->value_len = vlen;
	h->hash = reconnect_hash_str(name);
	h->flags = flags;
	return h;
}

void
reconnect_name_free(struct held_name *h)
{
	if (h == NULL)
		return;
	free(h->name);
	free(h->value);
	free(h);
}

/* Room for n more in set, so that the next n reconnect_set_add cannot
 * fail; PROCREG_OK or PROCREG_E_NOMEM. */
int
reconnect_set_reserve(procreg_t *p, struct held_set *set, size_t n)
{
	if (set->n + n > set->cap) {
		size_t cap = set->cap ? set->cap : 8;
		struct held_name **v;

		while (cap < set->n + n)
			cap *= 2;
		if ((v = realloc(set->v, cap * sizeof(*v))) == NULL)
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		set->v = v;
		set->cap = cap;
	}
	if (htab_reserve_n(&set->by_name, n) < 0)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	return PROCREG_OK;
}

/* Add h (room reserved). */
void
reconnect_set_add(struct held_set *set, struct held_name *h)
{
	h->idx = set->n;
	set->v[set->n++] = h;
	(void)htab_insert(&set->by_name, h->hash, h);
}

static bool
reconnect_name_eq(const void *item, const void *key)
{
	const struct held_name *h = item;

	/* Gone ones wait for the sweep; a new one may share the name. */
	return !h->gone && strcmp(h->name, key) == 0;
}

/* The held name (or group) called name, or NULL. */
struct held_name *
reconnect_set_find(const struct held_set *set, const char *name)
{
	if (set->by_name.cap == 0)
		return NULL;
	return htab_find(&set->by_name, reconnect_hash_str(name),
	    reconnect_name_eq, name);
}

/* Drop h from set and free it (order is not kept). */
static void
reconnect_set_remove(struct held_set *set, struct held_name *h)
{
	struct held_name *last = set->v[--set->n];

	(void)htab_remove(&set->by_name, h->hash, h);
	last->idx = h->idx;
	set->v[h->idx] = last;
	reconnect_name_free(h);
}

/* Forget a held name (or group). */
void
reconnect_set_forget(struct held_set *set, const char *name)
{
	struct held_name *h = reconnect_set_find(set, name);

	if (h != NULL)
		reconnect_set_remove(set, h);
}

/*
 * A held monitor of name (NULL: of connection conn), made before the
 * request with room for it reserved, so that adding it cannot fail once
 * the daemon has set the monitor.
 */
struct held_mon *
reconnect_mon_new(procreg_t *p, const char *name, uint64_t conn)
{
	struct held_mon *m;

	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (name != NULL && (m->name = strdup(name)) == NULL) ||
	    !handle_grow((void **)&p->mons, &p->mons_cap, p->nmons,
	    sizeof(*p->mons)) || htab_reserve(&p->mons_by_user) < 0 ||
	    htab_reserve(&p->mons_by_server) < 0) {
		if (m != NULL)
			free(m->name);
		free(m);
		(void)handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		return NULL;
	}
	m->conn = conn;
	return m;
}

/* Add m with a new user ref for the daemon's server_ref (room reserved
 * by reconnect_mon_new). */
void
reconnect_mon_add(procreg_t *p, struct held_mon *m, uint64_t server_ref)
{
	m->user_ref = p->next_user_ref++;
	m->idx = p->nmons;
	p->mons[p->nmons++] = m;
	(void)htab_insert(&p->mons_by_user, reconnect_hash_u64(m->user_ref),
	    m);
	m->server_ref = server_ref;
	(void)htab_insert(&p->mons_by_server,
	    reconnect_hash_u64(server_ref), m);
}

static bool
reconnect_mon_user_eq(const void *item, const void *key)
{
	return ((const struct held_mon *)item)->user_ref ==
	    *(const uint64_t *)key;
}

static bool
reconnect_mon_server_eq(const void *item, const void *key)
{
	const struct held_mon *m = item;

	return !m->fired && m->server_ref == *(const uint64_t *)key;
}

/* The held monitor the caller knows as ref, or NULL. */
struct held_mon *
reconnect_mon_by_user(const procreg_t *p, uint64_t ref)
{
	if (p->mons_by_user.cap == 0)
		return NULL;
	return htab_find(&p->mons_by_user, reconnect_hash_u64(ref),
	    reconnect_mon_user_eq, &ref);
}

/* Take m out of the server-ref table: its ref was the old daemon's. */
static void
reconnect_mon_unindex(procreg_t *p, struct held_mon *m)
{
	if (m->server_ref != 0)
		(void)htab_remove(&p->mons_by_server,
		    reconnect_hash_u64(m->server_ref), m);
	m->server_ref = 0;
}

/* Give m the new daemon's ref; PROCREG_OK or PROCREG_E_NOMEM. */
static int
reconnect_mon_index(procreg_t *p, struct held_mon *m, uint64_t server_ref)
{
	/* Never grows: as many were in the table before the reconnect. */
	if (htab_insert(&p->mons_by_server, reconnect_hash_u64(server_ref),
	    m) < 0)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	m->server_ref = server_ref;
	return PROCREG_OK;
}

/* Drop monitor m and free it (order is not kept). */
static void
reconnect_mon_remove(procreg_t *p, struct held_mon *m)
{
	struct held_mon *last = p->mons[--p->nmons];

	reconnect_mon_unindex(p, m);
	(void)htab_remove(&p->mons_by_user, reconnect_hash_u64(m->user_ref),
	    m);
	last->idx = m->idx;
	p->mons[m->idx] = last;
	free(m->name);
	free(m);
}

/* The user's ref for a daemon ref; forgets the monitor when it fired. */
uint64_t
reconnect_down_ref(procreg_t *p, uint64_t server_ref)
{
	struct held_mon *m;
	uint64_t u;

	if (p->mons_by_server.cap == 0 || (m = htab_find(&p->mons_by_server,
	    reconnect_hash_u64(server_ref), reconnect_mon_server_eq,
	    &server_ref)) == NULL)
		return server_ref;
	u = m->user_ref;
	/* restore() is walking the vector: only mark it. */
	if (p->restoring)
		m->fired = true;
	else
		reconnect_mon_remove(p, m);
	return u;
}

/* Remember a call id of this connection; the id the caller sees. */
uint64_t
reconnect_note_call(procreg_t *p, uint64_t id)
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
bool
reconnect_call_known(procreg_t *p, uint64_t *id, bool forget)
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

/* The held subscription whose daemon id is server_sub, or NULL. */
static struct held_sub *
reconnect_sub_by_server(procreg_t *p, uint64_t server_sub)
{
	for (size_t i = 0; i < p->nsubs; i++) {
		if (p->subs[i].server_sub == server_sub && !p->subs[i].ended)
			return &p->subs[i];
	}
	return NULL;
}

/* Drop held subscription i (order is not kept). */
void
reconnect_forget_sub(procreg_t *p, size_t i)
{
	p->subs[i] = p->subs[--p->nsubs];
}

/* An event's sub id as the caller knows it (and its last seq noted);
 * an overflow ends the subscription. */
uint64_t
reconnect_sub_id(procreg_t *p, uint64_t server_sub, uint64_t seq, bool ended)
{
	struct held_sub *h;
	uint64_t u;

	if (!p->auto_reconnect || (h = reconnect_sub_by_server(p,
	    server_sub)) == NULL)
		return server_sub;
	u = h->user_sub;
	h->last_seq = seq;
	if (ended) {
		/* restore() may be walking the array: only mark it then. */
		if (p->restoring)
			h->ended = true;
		else
			reconnect_forget_sub(p, (size_t)(h - p->subs));
	}
	return u;
}

/* acquired: the name we waited for is ours (we own it, no longer wait). */
void
reconnect_acquired(procreg_t *p, const char *name)
{
	struct held_name *h;

	if (p->auto_reconnect &&
	    (h = reconnect_set_find(&p->names, name)) != NULL)
		h->waiting = false;
}

/*
 * lost: replaced with QUEUE, we are first in line again; else (evicted,
 * replaced without QUEUE, or a cluster name's nodedown) the name is
 * gone, and a reconnect must not
 * register it again: an administrator took it away, and a holder that
 * got it back would run beside whoever holds it next.  A reason of a
 * later protocol counts as gone: forgetting too much never makes two
 * owners.
 */
void
reconnect_lost(procreg_t *p, const char *name, const char *reason)
{
	struct held_name *h;

	if (!p->auto_reconnect ||
	    (h = reconnect_set_find(&p->names, name)) == NULL)
		return;
	if ((h->flags & PROCREG_QUEUE) && strcmp(reason, "replaced") == 0)
		h->waiting = true;
	else if (p->restoring)
		h->gone = true;		/* restore() walks the vector */
	else
		reconnect_set_remove(&p->names, h);
}

/* Drop the held names (or groups) marked gone. */
static void
reconnect_sweep(struct held_set *set)
{
	for (size_t i = 0; i < set->n;) {
		if (set->v[i]->gone)
			reconnect_set_remove(set, set->v[i]);
		else
			i++;
	}
}

/*
 * A reconnect ends every subscription: an overflow when the daemon is the
 * same (it can resume from the last seq handed out), else "restarted";
 * a cluster subscription's seqs are etcd's revisions, which outlive the
 * daemon: an overflow always.
 */
static int
reconnect_end_subs(procreg_t *p, bool same_daemon)
{
	int r;

	while (p->nsubs > 0) {
		struct held_sub *h = &p->subs[p->nsubs - 1];

		if (!h->ended && (r = event_local(p, same_daemon || h->cluster ?
		    PROCREG_EV_OVERFLOW : PROCREG_EV_RESTARTED, NULL, NULL,
		    NULL, h->user_sub, h->last_seq)) != PROCREG_OK)
			return r;
		p->nsubs--;
	}
	return PROCREG_OK;
}

/* Register again, join again, monitor again, and tell the application. */
static int
reconnect_restore(procreg_t *p)
{
	char **lost = NULL, old_boot[sizeof(p->boot)];
	size_t nlost = 0, i;
	const msgpack_object *res;
	int r;

	p->restoring = true;
	p->ncalls = 0;		/* calls of the old connection */
	memcpy(old_boot, p->boot, sizeof(old_boot));
	if ((r = handle_hello(p, NULL)) != PROCREG_OK)
		goto out;
	/* Subscriptions do not come back; the old ones end, in order. */
	if ((r = reconnect_end_subs(p, old_boot[0] != '\0' &&
	    strcmp(old_boot, p->boot) == 0)) != PROCREG_OK)
		goto out;
	if (p->names.n + p->groups.n && (lost = calloc(p->names.n +
	    p->groups.n, sizeof(*lost))) == NULL) {
		r = handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		goto out;
	}
	/*
	 * Names lost here are only marked gone: a push parsed during these
	 * calls (acquired, lost) may look a held name up.
	 */
	for (i = 0; i < p->names.n; i++) {
		struct held_name *h = p->names.v[i];
		uint32_t id;
		bool was_owner = !h->waiting;

		if (h->gone)
			continue;
		/* With its flags: a cluster name comes back as one. */
		id = conn_req_register(p, h->name, h->value, h->value_len,
		    h->flags);
		if ((r = conn_call(p, id, &res)) < 0)
			break;
		if (r != PROCREG_OK) {
			/* Taken meanwhile (or, a cluster name, unavailable:
			 * the new daemon's node has no lease yet): no longer
			 * ours to restore. */
			if ((lost[nlost] = strdup(h->name)) == NULL) {
				r = handle_fail(p, PROCREG_E_NOMEM,
				    "out of memory");
				break;
			}
			nlost++;
			h->gone = true;
			continue;
		}
		if (!(h->flags & PROCREG_QUEUE))
			continue;
		/* Queued names say how it went: acquired, or lost. */
		if (decode_queued(res) > 0) {
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
	reconnect_sweep(&p->names);
	if (r < 0)
		goto out;
	/* The groups, the same way: one that cannot be joined is lost. */
	for (i = 0; i < p->groups.n; i++) {
		struct held_name *h = p->groups.v[i];
		uint32_t id = conn_req_begin(p, "join", h->value ? 2 : 1);

		conn_pack_str(p, h->name);
		if (h->value)
			(void)conn_req_write(p, h->value, h->value_len);
		if ((r = conn_call(p, id, &res)) < 0)
			break;
		if (r != PROCREG_OK && r != PROCREG_E_TAKEN) {
			/* The name goes to on_reconnect: no copy to fail. */
			lost[nlost++] = h->name;
			h->name = NULL;
			h->gone = true;
		}
	}
	reconnect_sweep(&p->groups);
	if (r < 0)
		goto out;
	/* The daemon numbers refs afresh: no old number may match a new. */
	for (i = 0; i < p->nmons; i++)
		reconnect_mon_unindex(p, p->mons[i]);
	for (i = 0; i < p->nmons; i++) {
		struct held_mon *m = p->mons[i];
		uint32_t id;

		if (m->name == NULL) {
			/*
			 * A connection of the old daemon: gone with it, and its
			 * number may be another connection's now.  Its down is
			 * ours to give.
			 */
			if (!m->fired && (r = event_down_local(p, m)) < 0)
				break;
			m->fired = true;
			continue;
		}
		id = conn_req_begin(p, "monitor", 1);
		conn_pack_str(p, m->name);
		if ((r = conn_call(p, id, &res)) < 0)
			break;
		/* A noproc down follows with the new ref and translates. */
		if (r == PROCREG_OK && decode_is_uint(res) &&
		    (r = reconnect_mon_index(p, m, res->via.u64)) < 0)
			break;
	}
	for (i = 0; i < p->nmons;) {
		if (p->mons[i]->fired)
			reconnect_mon_remove(p, p->mons[i]);
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
	reconnect_sweep(&p->names);
	reconnect_sweep(&p->groups);
	for (i = 0; i < p->nsubs;) {
		if (p->subs[i].ended)
			reconnect_forget_sub(p, i);
		else
			i++;
	}
	return r;
}

/*
 * Get a connection back, retrying with backoff until deadline (a
 * deadline in the past: one attempt if the backoff allows it).
 */
int
reconnect_try(procreg_t *p, int64_t deadline)
{
	int r;

	if (!p->auto_reconnect || p->restoring)
		return handle_fail(p, PROCREG_E_CLOSED, "not connected");
	for (;;) {
		int64_t now = (int64_t)now_mono_ms();

		if (now >= p->next_retry_ms) {
			if ((r = conn_open(p)) == PROCREG_OK &&
			    (r = reconnect_restore(p)) == PROCREG_OK) {
				p->backoff_ms = RECONNECT_MIN;
				return PROCREG_OK;
			}
			if (p->fd >= 0)
				conn_close(p);
			p->next_retry_ms =
			    (int64_t)now_mono_ms() + p->backoff_ms;
			p->backoff_ms *= 2;
			if (p->backoff_ms > p->reconnect_max_ms)
				p->backoff_ms = p->reconnect_max_ms;
			now = (int64_t)now_mono_ms();
		}
		if (now >= deadline)
			return handle_fail(p, PROCREG_E_CONNECT,
			    "cannot reach the "
			    "daemon at %s; retrying", p->path);
		usleep((useconds_t)((p->next_retry_ms < deadline ?
		    p->next_retry_ms : deadline) - now) * 1000);
	}
}

