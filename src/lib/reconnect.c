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

/* Drop monitor i (order is not kept). */
static void
reconnect_forget_mon(procreg_t *p, size_t i)
{
	free(p->mons[i].name);
	p->mons[i] = p->mons[--p->nmons];
}

/* The user's ref for a daemon ref; forgets the monitor when it fired. */
uint64_t
reconnect_down_ref(procreg_t *p, uint64_t server_ref)
{
	for (size_t i = 0; i < p->nmons; i++) {
		if (p->mons[i].server_ref == server_ref && !p->mons[i].fired) {
			uint64_t u = p->mons[i].user_ref;

			/* restore() is walking the array: only mark it. */
			if (p->restoring)
				p->mons[i].fired = true;
			else
				reconnect_forget_mon(p, i);
			return u;
		}
	}
	return server_ref;
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
	    (h = reconnect_find(p->names, p->nnames, name)) != NULL)
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
void
reconnect_lost(procreg_t *p, const char *name, const char *reason)
{
	struct held_name *h;

	if (!p->auto_reconnect ||
	    (h = reconnect_find(p->names, p->nnames, name)) == NULL)
		return;
	if ((h->flags & PROCREG_QUEUE) && strcmp(reason, "replaced") == 0)
		h->waiting = true;
	else if (p->restoring)
		h->gone = true;		/* restore() walks the array */
	else
		reconnect_forget_name(p, name);
}

/* Drop the held names marked gone. */
static void
reconnect_sweep(procreg_t *p)
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
reconnect_end_subs(procreg_t *p, bool same_daemon)
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
reconnect_restore(procreg_t *p)
{
	char **lost = NULL, old_boot[sizeof(p->boot)];
	size_t nlost = 0, keep = 0, i;
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
	if (p->nnames + p->ngroups &&
	    (lost = calloc(p->nnames + p->ngroups, sizeof(*lost))) == NULL) {
		r = handle_fail(p, PROCREG_E_NOMEM, "out of memory");
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
		id = conn_req_register(p, h->name, h->value, h->value_len,
		    h->flags);
		if ((r = conn_call(p, id, &res)) < 0)
			break;
		h = &p->names[i];
		if (r != PROCREG_OK) {
			/* Taken meanwhile: no longer ours to restore. */
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
	reconnect_sweep(p);
	if (r < 0)
		goto out;
	/* The groups, the same way: one that cannot be joined is lost. */
	for (i = 0, keep = 0; i < p->ngroups; i++) {
		struct held_name *h = &p->groups[i];
		uint32_t id = conn_req_begin(p, "join", h->value ? 2 : 1);

		conn_pack_str(p, h->name);
		if (h->value)
			(void)conn_req_write(p, h->value, h->value_len);
		if ((r = conn_call(p, id, &res)) < 0)
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
		if (r == PROCREG_OK && decode_is_uint(res))
			m->server_ref = res->via.u64;
	}
	for (i = 0; i < p->nmons;) {
		if (p->mons[i].fired)
			reconnect_forget_mon(p, i);
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
	reconnect_sweep(p);
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

/* Remember a registered name (or a joined group) in *v for reconnects. */
int
reconnect_hold(procreg_t *p, struct held_name **v, size_t *n, size_t *cap,
    const char *name, const void *value, size_t vlen)
{
	struct held_name h = { 0 };

	if (!handle_grow((void **)v, cap, *n, sizeof(**v)))
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	h.name = strdup(name);
	h.value = value ? handle_dup_mem(value, vlen) : NULL;
	h.value_len = vlen;
	if (h.name == NULL || (value && h.value == NULL)) {
		free(h.name);
		free(h.value);
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	(*v)[(*n)++] = h;
	return PROCREG_OK;
}

/* The held name (or group) called name in v, or NULL. */
struct held_name *
reconnect_find(struct held_name *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (!v[i].gone && strcmp(v[i].name, name) == 0)
			return &v[i];
	}
	return NULL;
}

/* Forget a held name (or group). */
void
reconnect_forget(struct held_name *v, size_t *n, const char *name)
{
	struct held_name *h = reconnect_find(v, *n, name);

	if (h != NULL) {
		free(h->name);
		free(h->value);
		*h = v[--*n];
	}
}

int
reconnect_hold_name(procreg_t *p, const char *name, const void *value,
    size_t vlen)
{
	return reconnect_hold(p, &p->names, &p->nnames, &p->names_cap, name,
	    value,
	    vlen);
}

/* Remember a name registered with flags (waiting: we are queued). */
int
reconnect_hold_name_opts(procreg_t *p, const char *name, const void *value,
    size_t vlen, unsigned flags, bool waiting)
{
	int r;

	if ((r = reconnect_hold_name(p, name, value, vlen)) != PROCREG_OK)
		return r;
	p->names[p->nnames - 1].flags = flags;
	p->names[p->nnames - 1].waiting = waiting;
	return PROCREG_OK;
}

void
reconnect_forget_name(procreg_t *p, const char *name)
{
	reconnect_forget(p->names, &p->nnames, name);
}
