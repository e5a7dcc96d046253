/*
 * subs.c: the event stream (see subs.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "server.h"
#include "subs.h"

static const char *const kind_names[] = {
	[REG_EV_REGISTERED] = "registered",
	[REG_EV_UNREGISTERED] = "unregistered",
	[REG_EV_UPDATED] = "updated",
	[REG_EV_HANDOVER] = "handover",
	[REG_EV_JOINED] = "joined",
	[REG_EV_LEFT] = "left",
};

int
subs_init(struct subs *ss, size_t history)
{
	memset(ss, 0, sizeof(*ss));
	TAILQ_INIT(&ss->all);
	proto_out_init(&ss->payload);
	proto_out_init(&ss->push);
	return subs_resize(ss, history);
}

static void
ring_free(struct subs *ss)
{
	for (size_t i = 0; ss->ring != NULL && i < ss->cap; i++)
		free(ss->ring[i].buf);
	free(ss->ring);
	ss->ring = NULL;
	ss->head = ss->count = 0;
}

int
subs_resize(struct subs *ss, size_t history)
{
	ring_free(ss);
	ss->cap = 0;
	ss->floor = ss->seq;
	if (history == 0)
		return 0;
	if ((ss->ring = calloc(history, sizeof(*ss->ring))) == NULL)
		return -ENOMEM;
	ss->cap = history;
	return 0;
}

void
subs_deinit(struct subs *ss)
{
	ring_free(ss);
	proto_out_deinit(&ss->payload);
	proto_out_deinit(&ss->push);
}

bool
subs_match(const struct sub *sb, const char *name, size_t len, bool group)
{
	if (sb->none || (group && !sb->groups))
		return false;
	return len >= sb->plen && memcmp(name, sb->prefix, sb->plen) == 0;
}

static void
sub_free(struct server *s, struct sub *sb)
{
	TAILQ_REMOVE(&s->subs.all, sb, all);
	LIST_REMOVE(sb, by_conn);
	sb->c->nsubs--;
	s->subs.nsubs--;
	free(sb);
}

/*
 * Queue one event for a subscriber, or end the subscription with an
 * overflow notice when its buffer is full: it resumes from seq - 1.
 * False when the subscription ended.
 */
static bool
deliver(struct server *s, struct sub *sb, uint64_t seq, const char *kind,
    const char *payload, size_t len)
{
	struct subs *ss = &s->subs;
	struct conn *c = sb->c;
	uint64_t id = sb->id;
	int r;

	proto_out_reset(&ss->push);
	if (proto_push_event(&ss->push, id, seq, kind, payload, len) < 0) {
		conn_out_of_memory(c);
		sub_free(s, sb);
		return false;
	}
	r = conn_write(c, proto_out_data(&ss->push), proto_out_len(&ss->push),
	    true);
	if (r == 0)
		return true;
	sub_free(s, sb);
	if (r < 0)
		return false;	/* out of memory: the connection is doomed */
	proto_out_reset(&ss->push);
	if (proto_push_overflow(&ss->push, id, seq - 1) < 0) {
		conn_out_of_memory(c);
		return false;
	}
	/* Small and once per subscription: past the bound, like a down. */
	conn_write(c, proto_out_data(&ss->push), proto_out_len(&ss->push),
	    false);
	return false;
}

/* Keep an event in the history; on failure the history restarts after
 * it, so that a resume can never skip it unknowingly. */
static void
keep(struct subs *ss, uint8_t kind, const char *name, size_t nlen,
    bool group, const char *payload, size_t plen)
{
	struct hev *h;
	size_t need = nlen + plen;

	if (ss->cap == 0) {
		ss->floor = ss->seq;
		return;
	}
	if (ss->count == ss->cap) {
		ss->floor = ss->ring[ss->head].seq;
		ss->head = (ss->head + 1) % ss->cap;
		ss->count--;
	}
	h = &ss->ring[(ss->head + ss->count) % ss->cap];
	if (need > h->cap) {
		char *nb = realloc(h->buf, need);

		if (nb == NULL) {
			ss->head = ss->count = 0;
			ss->floor = ss->seq;
			return;
		}
		h->buf = nb;
		h->cap = (uint32_t)need;
	}
	memcpy(h->buf, name, nlen);
	memcpy(h->buf + nlen, payload, plen);
	h->len = (uint32_t)need;
	h->seq = ss->seq;
	h->kind = kind;
	h->name_len = (uint8_t)nlen;
	h->group = group;
	ss->count++;
}

void
subs_event(struct server *s, const struct reg_event *ev)
{
	struct subs *ss = &s->subs;
	const char *name;
	size_t nlen;
	bool group = false;
	int r;

	proto_out_reset(&ss->payload);
	switch (ev->kind) {
	case REG_EV_UNREGISTERED:
		name = ev->name->data;
		nlen = ev->name->name_len;
		r = proto_put_name_reason(&ss->payload, name, nlen, ev->why);
		break;
	case REG_EV_JOINED:
	case REG_EV_LEFT:
		name = ev->member->group->name;
		nlen = ev->member->group->name_len;
		group = true;
		r = proto_put_member(&ss->payload, ev->member);
		break;
	default:
		name = ev->name->data;
		nlen = ev->name->name_len;
		r = proto_put_entry(&ss->payload, ev->name);
		break;
	}
	ss->seq++;
	if (r < 0) {
		/* Not even the payload fits in memory: nobody may think
		 * they saw everything. */
		struct sub *sb;

		ss->head = ss->count = 0;
		ss->floor = ss->seq;
		while ((sb = TAILQ_FIRST(&ss->all)) != NULL) {
			conn_out_of_memory(sb->c);
			sub_free(s, sb);
		}
		return;
	}
	keep(ss, (uint8_t)ev->kind, name, nlen, group,
	    proto_out_data(&ss->payload), proto_out_len(&ss->payload));
	if (ss->nsubs > 0) {
		struct sub *sb, *next;

		for (sb = TAILQ_FIRST(&ss->all); sb != NULL; sb = next) {
			next = TAILQ_NEXT(sb, all);
			if (subs_match(sb, name, nlen, group))
				deliver(s, sb, ss->seq, kind_names[ev->kind],
				    proto_out_data(&ss->payload),
				    proto_out_len(&ss->payload));
		}
	}
}

int
subs_start(struct server *s, struct conn *c, const char *prefix, size_t plen,
    bool groups, const uint64_t *since, bool *resumable, struct sub **out)
{
	struct subs *ss = &s->subs;
	struct sub *sb;

	if (since != NULL && *since > ss->seq)
		return PR_ERR_BAD_REQUEST;
	if ((sb = calloc(1, sizeof(*sb))) == NULL)
		return -ENOMEM;
	sb->c = c;
	sb->id = ++c->next_sub;
	sb->groups = groups;
	sb->none = plen > PR_NAME_MAX;
	if (!sb->none) {
		sb->plen = (uint8_t)plen;
		memcpy(sb->prefix, prefix, plen);
	}
	TAILQ_INSERT_TAIL(&ss->all, sb, all);
	LIST_INSERT_HEAD(&c->subs, sb, by_conn);
	c->nsubs++;
	ss->nsubs++;
	*resumable = since != NULL && *since >= ss->floor;
	*out = sb;
	return 0;
}

void
subs_replay(struct server *s, struct sub *sb, uint64_t since)
{
	struct subs *ss = &s->subs;

	for (size_t i = 0; i < ss->count; i++) {
		struct hev *h = &ss->ring[(ss->head + i) % ss->cap];

		if (h->seq <= since || !subs_match(sb, h->buf, h->name_len,
		    h->group))
			continue;
		if (!deliver(s, sb, h->seq, kind_names[h->kind],
		    h->buf + h->name_len, h->len - h->name_len))
			return;
	}
}

bool
subs_stop(struct server *s, struct conn *c, uint64_t id)
{
	struct sub *sb;

	LIST_FOREACH(sb, &c->subs, by_conn) {
		if (sb->id == id) {
			sub_free(s, sb);
			return true;
		}
	}
	return false;
}

void
subs_conn_closed(struct server *s, struct conn *c)
{
	struct sub *sb;

	while ((sb = LIST_FIRST(&c->subs)) != NULL)
		sub_free(s, sb);
}
