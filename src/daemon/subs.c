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
	if (htab_init(&ss->buckets, 16) < 0)
		return -ENOMEM;
	return subs_resize(ss, history);
}

/* Retire the oldest event of the history. */
static void
ring_pop(struct subs *ss)
{
	struct hev *h = &ss->ring[ss->head];

	ss->floor = h->seq;
	ss->bytes -= proto_out_len(&h->buf);
	/* A slot keeps its buffer for the next event, unless a large value
	 * made it big: then the memory goes back. */
	if (h->buf.buf.alloc > 1024) {
		proto_out_deinit(&h->buf);
		proto_out_init(&h->buf);
	}
	ss->head = (ss->head + 1) % ss->cap;
	ss->count--;
}

static void
ring_free(struct subs *ss)
{
	for (size_t i = 0; ss->ring != NULL && i < ss->cap; i++)
		proto_out_deinit(&ss->ring[i].buf);
	free(ss->ring);
	ss->ring = NULL;
	ss->head = ss->count = ss->bytes = 0;
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
	for (size_t i = 0; i < history; i++)
		proto_out_init(&ss->ring[i].buf);
	ss->cap = history;
	return 0;
}

void
subs_deinit(struct subs *ss)
{
	ring_free(ss);
	proto_out_deinit(&ss->payload);
	proto_out_deinit(&ss->push);
	htab_deinit(&ss->buckets);
}

/* A bucket's key while it is looked up. */
struct bucket_key {
	const char	*prefix;
	size_t		 plen;
	bool		 groups;
};

static bool
bucket_eq(const void *item, const void *key)
{
	const struct sub_bucket *b = item;
	const struct bucket_key *k = key;

	return b->plen == k->plen && b->groups == k->groups &&
	    memcmp(b->prefix, k->prefix, k->plen) == 0;
}

static uint64_t
bucket_hash(const struct server *s, const char *prefix, size_t plen,
    bool groups)
{
	/* subs_event relies on the flag being the low bit. */
	return registry_hash(&s->reg, prefix, plen) ^ (groups ? 1 : 0);
}

static struct sub_bucket *
bucket_find(const struct server *s, uint64_t h, const char *prefix,
    size_t plen, bool groups)
{
	struct bucket_key k = { prefix, plen, groups };

	return htab_find(&s->subs.buckets, h, bucket_eq, &k);
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
	struct sub_bucket *b = sb->bucket;

	if (b != NULL) {
		TAILQ_REMOVE(&b->subs, sb, in_bucket);
		if (TAILQ_EMPTY(&b->subs)) {
			htab_remove(&s->subs.buckets, b->hash, b);
			s->subs.nbuckets[b->plen]--;
			free(b);
		}
	}
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
    struct conn_shared *payload)
{
	struct subs *ss = &s->subs;
	struct conn *c = sb->c;
	uint64_t id = sb->id;
	int r;

	/* The head is the subscriber's own; the payload is shared by all
	 * the subscribers of this event, so a fan-out costs one copy. */
	proto_out_reset(&ss->push);
	if (proto_push_event(&ss->push, id, seq, kind, NULL, 0) < 0) {
		conn_out_of_memory(c);
		sub_free(s, sb);
		return false;
	}
	r = conn_write_shared(c, proto_out_data(&ss->push),
	    proto_out_len(&ss->push), payload, true);
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

/* Encode an event's payload (the name, for filtering, goes first). */
static int
encode(struct pr_out *o, const struct reg_event *ev, const char *name,
    size_t nlen)
{
	proto_out_reset(o);
	if (proto_put_raw(o, name, nlen) < 0)
		return -ENOMEM;
	switch (ev->kind) {
	case REG_EV_UNREGISTERED:
		return proto_put_name_reason(o, name, nlen, ev->why);
	case REG_EV_JOINED:
	case REG_EV_LEFT:
		return proto_put_member(o, ev->member);
	default:
		return proto_put_entry(o, ev->name);
	}
}

void
subs_event(struct server *s, const struct reg_event *ev)
{
	struct subs *ss = &s->subs;
	struct pr_out *o = &ss->payload;
	struct conn_shared *sh = NULL;
	struct sub *sb, *next;
	const char *name;
	size_t nlen;
	bool group = ev->kind == REG_EV_JOINED || ev->kind == REG_EV_LEFT;

	if (group) {
		name = ev->member->group->name;
		nlen = ev->member->group->name_len;
	} else {
		name = ev->name->data;
		nlen = ev->name->name_len;
	}
	ss->seq++;
	if (ss->cap > 0) {
		/* Straight into the history's next slot, the oldest when it
		 * is full: its buffer is reused, no copy, no allocation. */
		struct hev *h;

		if (ss->count == ss->cap)
			ring_pop(ss);
		h = &ss->ring[(ss->head + ss->count) % ss->cap];
		if (encode(&h->buf, ev, name, nlen) == 0) {
			h->seq = ss->seq;
			h->kind = (uint8_t)ev->kind;
			h->name_len = (uint8_t)nlen;
			h->group = group;
			ss->count++;
			ss->bytes += proto_out_len(&h->buf);
			o = &h->buf;
			/* Large values: fewer events, never more memory. */
			while (ss->bytes > PR_HISTORY_BYTES && ss->count > 1)
				ring_pop(ss);
		} else {
			/* Lost: the history restarts after this event, so
			 * that no resume can skip it unknowingly. */
			while (ss->count > 0)
				ring_pop(ss);
			ss->floor = ss->seq;
		}
	} else
		ss->floor = ss->seq;
	if (ss->nsubs == 0)
		return;
	if (o == &ss->payload && encode(o, ev, name, nlen) < 0) {
		/* Not even this event fits in memory: no subscriber may
		 * think it saw everything. */
		while ((sb = TAILQ_FIRST(&ss->all)) != NULL) {
			conn_out_of_memory(sb->c);
			sub_free(s, sb);
		}
		return;
	}
	/* Shorter prefixes first; a name event reaches both flags'
	 * buckets, a group event only those that asked for groups. */
	for (size_t l = 0; l <= nlen; l++) {
		if (ss->nbuckets[l] == 0)
			continue;
		/* One hash of the prefix serves both flags' buckets. */
		uint64_t h = bucket_hash(s, name, l, false);

		for (int g = group ? 1 : 0; g <= 1; g++) {
			struct sub_bucket *b = bucket_find(s, h ^ (uint64_t)g,
			    name, l, g);

			for (sb = b ? TAILQ_FIRST(&b->subs) : NULL; sb != NULL;
			    sb = next) {
				/* Delivery may free sb, and with the bucket's
				 * last one the bucket: next is read first, and
				 * b is not touched once it is NULL. */
				next = TAILQ_NEXT(sb, in_bucket);
				if (sh == NULL && (sh = conn_shared_new(
				    proto_out_data(o) + nlen,
				    proto_out_len(o) - nlen)) == NULL) {
					conn_out_of_memory(sb->c);
					sub_free(s, sb);
					continue;
				}
				deliver(s, sb, ss->seq, kind_names[ev->kind],
				    sh);
			}
		}
	}
	conn_shared_put(sh);
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
		struct sub_bucket *b;
		uint64_t h = bucket_hash(s, prefix, plen, groups);

		sb->plen = (uint8_t)plen;
		memcpy(sb->prefix, prefix, plen);
		/* No name is longer than 255 bytes: a longer prefix matches
		 * nothing and has no bucket. */
		if ((b = bucket_find(s, h, prefix, plen, groups)) == NULL) {
			if ((b = malloc(sizeof(*b) + plen)) == NULL ||
			    htab_insert(&ss->buckets, h, b) < 0) {
				free(b);
				free(sb);
				return -ENOMEM;
			}
			TAILQ_INIT(&b->subs);
			b->hash = h;
			b->groups = groups;
			b->plen = (uint8_t)plen;
			memcpy(b->prefix, prefix, plen);
			ss->nbuckets[plen]++;
		}
		TAILQ_INSERT_TAIL(&b->subs, sb, in_bucket);
		sb->bucket = b;
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

		struct conn_shared *sh;
		bool more;

		if (h->seq <= since || !subs_match(sb,
		    proto_out_data(&h->buf), h->name_len, h->group))
			continue;
		/* The slot is reused by later events: the queue gets a copy. */
		sh = conn_shared_new(proto_out_data(&h->buf) + h->name_len,
		    proto_out_len(&h->buf) - h->name_len);
		if (sh == NULL) {
			conn_out_of_memory(sb->c);
			sub_free(s, sb);
			return;
		}
		more = deliver(s, sb, h->seq, kind_names[h->kind], sh);
		conn_shared_put(sh);
		if (!more)
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
