/*
 * event.c: the handle's queue of notifications and the ways it is handed
 * out: procreg_next_event, and procreg_process with its callbacks.  Events
 * made by the library itself (a reconnect's downs and subscription ends)
 * are queued here too.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

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

int
event_push(procreg_t *p, struct procreg_event *ev)
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

struct procreg_event *
event_pop(procreg_t *p)
{
	struct procreg_event *ev;

	if (p->q_len == 0)
		return NULL;
	ev = p->q[p->q_head];
	p->q_head = (p->q_head + 1) % p->q_cap;
	p->q_len--;
	return ev;
}

/* Queue a noproc down for monitor m, as the daemon would send it. */
int
event_down_local(procreg_t *p, const struct held_mon *m)
{
	struct procreg_event *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	ev->kind = PROCREG_EV_DOWN;
	ev->ref = m->user_ref;
	ev->target_conn = m->conn;
	if ((ev->reason = strdup("noproc")) == NULL ||
	    event_push(p, ev) != PROCREG_OK) {
		procreg_event_free(ev);
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	return PROCREG_OK;
}

/*
 * Queue an event made here, not by the daemon: kind with name, reason
 * (may be NULL) and a copy of entry (may be NULL), or sub and seq.
 */
int
event_local(procreg_t *p, enum procreg_event_kind kind, const char *name,
    const char *reason, const msgpack_object *entry, uint64_t sub,
    uint64_t seq)
{
	struct procreg_event *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	ev->kind = kind;
	ev->sub = sub;
	ev->seq = seq;
	if ((name != NULL && (ev->name = strdup(name)) == NULL) ||
	    (reason != NULL && (ev->reason = strdup(reason)) == NULL) ||
	    (entry != NULL && (ev->entry = decode_entry(entry)) == NULL) ||
	    event_push(p, ev) != PROCREG_OK) {
		procreg_event_free(ev);
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	}
	return PROCREG_OK;
}

/* Drop the queued events of subscription sub. */
void
event_drop_sub(procreg_t *p, uint64_t sub)
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
procreg_next_event(procreg_t *p, int timeout_ms, struct procreg_event **out)
{
	int64_t deadline =
	    timeout_ms < 0 ? INT64_MAX : (int64_t)now_mono_ms() + timeout_ms;
	int r;

	*out = NULL;
	for (;;) {
		if ((*out = event_pop(p)) != NULL)
			return PROCREG_OK;
		if (p->fd < 0) {
			if ((r = reconnect_try(p, deadline)) != PROCREG_OK)
				return r;
			continue;
		}
		if ((r = conn_drain(p)) < 0)
			goto lost;
		if (p->q_len > 0)
			continue;

		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int64_t left = deadline - (int64_t)now_mono_ms();

		if (left < 0)
			left = 0;
		r = poll(&pfd, 1, left > INT32_MAX ? -1 : (int)left);
		if (r < 0 && errno != EINTR)
			return handle_fail(p, PROCREG_E_CLOSED, "poll: %s",
			    strerror(errno));
		if (r > 0 && (r = conn_read_some(p)) < 0)
			goto lost;
		if (r <= 0 && (int64_t)now_mono_ms() >= deadline &&
		    p->q_len == 0)
			return handle_fail(p, PROCREG_E_TIMEOUT, "no event");
		continue;
lost:
		if (!p->auto_reconnect || p->fd >= 0)
			return r;
	}
}

int
procreg_set_callbacks_sized(procreg_t *p, const struct procreg_callbacks *cb,
    size_t size, void *arg)
{
	struct procreg_callbacks c;

	if (!handle_copy_in(&c, sizeof(c), cb, size))
		return handle_fail(p, PROCREG_E_INVAL, "callbacks this "
		    "library does not know (it is older than the caller's "
		    "header)");
	p->cb = c;
	p->cb_arg = arg;
	return PROCREG_OK;
}

void
(procreg_set_callbacks)(procreg_t *p, const struct procreg_callbacks *cb,
    void *arg)
{
	(void)procreg_set_callbacks_sized(p, cb, PROCREG_CALLBACKS_SIZE_1, arg);
}

size_t
procreg_pending(procreg_t *p)
{
	if (p->fd >= 0)
		(void)conn_drain(p);
	return p->q_len;
}

int
procreg_process(procreg_t *p)
{
	struct procreg_event *ev;
	int r = PROCREG_OK, err = PROCREG_OK;

	if (p->fd < 0 && p->q_len == 0 && (r = reconnect_try(p,
	    0)) != PROCREG_OK)
		return r;
	/*
	 * Parse what is buffered before each read: a read that finds the
	 * connection closed drops the buffer, and what a call left there
	 * must not go with it.
	 */
	if (p->fd >= 0 && (r = conn_drain(p)) < 0)
		err = r;
	while (err == PROCREG_OK && p->fd >= 0 && (r =
	    conn_read_some(p)) == 1) {
		if ((r = conn_drain(p)) < 0)
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
		if (p->fd >= 0 && (r = conn_drain(p)) < 0 && err == PROCREG_OK)
			err = r;
		if (p->cb.on_event == NULL || (ev = event_pop(p)) == NULL)
			break;
		p->cb.on_event(p, ev, p->cb_arg);
		procreg_event_free(ev);
	}
	/* With auto_reconnect a lost connection is retried, not reported. */
	if (err != PROCREG_OK && p->auto_reconnect && p->fd < 0)
		return PROCREG_OK;
	return err;
}
