/*
 * subs.c: the event stream (see subs.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "subs.h"

/* One peer's subscriptions; kept until it goes, so ids never repeat. */
struct subs_peer {
	void			*peer;
	LIST_HEAD(, sub)	 subs;
	uint32_t		 n;
	uint64_t		 next_id;	/* the last one given */
};

static const char *const kind_names[] = {
	[REG_EV_REGISTERED] = "registered",
	[REG_EV_UNREGISTERED] = "unregistered",
	[REG_EV_UPDATED] = "updated",
	[REG_EV_HANDOVER] = "handover",
	[REG_EV_JOINED] = "joined",
	[REG_EV_LEFT] = "left",
};

int
subs_init(struct subs *ss, size_t history, const struct registry *reg,
    const struct peer_ops *ops, void *arg)
{
	memset(ss, 0, sizeof(*ss));
	ss->reg = reg;
	ss->ops = ops;
	ss->arg = arg;
	TAILQ_INIT(&ss->all);
	proto_out_init(&ss->payload);
	proto_out_init(&ss->push);
	if (htab_init(&ss->buckets, 16) < 0 || htab_init(&ss->peers, 16) < 0)
		return -ENOMEM;
	return subs_resize(ss, history);
}

uint64_t
subs_seq(const struct subs *ss)
{
	return ss->seq;
}

static bool
subs_peer_eq(const void *item, const void *key)
{
	return ((const struct subs_peer *)item)->peer == key;
}

/* The peer's record, or NULL when it never subscribed. */
static struct subs_peer *
subs_peer_find(const struct subs *ss, const void *peer)
{
	return htab_find(&ss->peers, peer_hash(peer), subs_peer_eq, peer);
}

uint32_t
subs_count_of(const struct subs *ss, const void *peer)
{
	const struct subs_peer *p = subs_peer_find(ss, peer);

	return p != NULL ? p->n : 0;
}

/* Retire the oldest event of the history. */
static void
subs_ring_pop(struct subs *ss)
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
subs_ring_free(struct subs *ss)
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
	subs_ring_free(ss);
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

static void	subs_free(struct subs *, struct sub *);

void
subs_deinit(struct subs *ss)
{
	struct htab *t = &ss->peers;
	struct sub *sb;

	/* The peers are normally gone first: this frees what is left. */
	while ((sb = TAILQ_FIRST(&ss->all)) != NULL)
		subs_free(ss, sb);
	for (size_t i = 0; t->slots != NULL && i < t->cap; i++)
		free(t->slots[i].item);
	htab_deinit(&ss->peers);
	subs_ring_free(ss);
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
subs_bucket_eq(const void *item, const void *key)
{
	const struct sub_bucket *b = item;
	const struct bucket_key *k = key;

	return b->plen == k->plen && b->groups == k->groups &&
	    memcmp(b->prefix, k->prefix, k->plen) == 0;
}

static uint64_t
subs_bucket_hash(const struct subs *ss, const char *prefix, size_t plen,
    bool groups)
{
	/* subs_event relies on the flag being the low bit. */
	return registry_hash(ss->reg, prefix, plen) ^ (groups ? 1 : 0);
}

static struct sub_bucket *
subs_bucket_find(const struct subs *ss, uint64_t h, const char *prefix,
    size_t plen, bool groups)
{
	struct bucket_key k = { prefix, plen, groups };

	return htab_find(&ss->buckets, h, subs_bucket_eq, &k);
}

bool
subs_match(const struct sub *sb, const char *name, size_t len, bool group)
{
	if (sb->none || (group && !sb->groups))
		return false;
	return len >= sb->plen && memcmp(name, sb->prefix, sb->plen) == 0;
}

static void
subs_free(struct subs *ss, struct sub *sb)
{
	struct sub_bucket *b = sb->bucket;

	if (b != NULL) {
		TAILQ_REMOVE(&b->subs, sb, in_bucket);
		if (TAILQ_EMPTY(&b->subs)) {
			htab_remove(&ss->buckets, b->hash, b);
			ss->nbuckets[b->plen]--;
			free(b);
		}
	}
	TAILQ_REMOVE(&ss->all, sb, all);
	LIST_REMOVE(sb, by_peer);
	sb->p->n--;
	ss->nsubs--;
	free(sb);
}

/*
 * Queue one event for a subscriber, or end the subscription with an
 * overflow notice when its buffer is full: it resumes from seq - 1.
 * False when the subscription ended.
 */
static bool
subs_deliver(struct subs *ss, struct sub *sb, uint64_t seq, const char *kind,
    struct conn_shared *payload)
{
	void *peer = sb->p->peer;
	uint64_t id = sb->id;
	int r;

	/* The head is the subscriber's own; the payload is shared by all
	 * the subscribers of this event, so a fan-out costs one copy. */
	proto_out_reset(&ss->push);
	if (proto_push_event(&ss->push, id, seq, kind, NULL, 0) < 0) {
		ss->ops->out_of_memory(ss->arg, peer);
		subs_free(ss, sb);
		return false;
	}
	r = ss->ops->write_shared(ss->arg, peer, proto_out_data(&ss->push),
	    proto_out_len(&ss->push), payload, true);
	if (r == 0)
		return true;
	subs_free(ss, sb);
	if (r < 0)
		return false;	/* out of memory: the connection is doomed */
	proto_out_reset(&ss->push);
	if (proto_push_overflow(&ss->push, id, seq - 1) < 0) {
		ss->ops->out_of_memory(ss->arg, peer);
		return false;
	}
	/* Small and once per subscription: past the bound, like a down. */
	ss->ops->write(ss->arg, peer, proto_out_data(&ss->push),
	    proto_out_len(&ss->push), false);
	return false;
}

/* A registry event's payload. */
static int
subs_encode_reg(struct pr_out *o, const void *arg)
{
	const struct reg_event *ev = arg;

	switch (ev->kind) {
	case REG_EV_UNREGISTERED:
		return proto_put_name_reason(o, ev->name->data,
		    ev->name->name_len, ev->why);
	case REG_EV_JOINED:
	case REG_EV_LEFT:
		return proto_put_member(o, ev->member);
	default:
		return proto_put_entry(o, ev->name);
	}
}

/* Encode an event's payload (the name, for filtering, goes first). */
static int
subs_encode(struct pr_out *o, const char *name, size_t nlen,
    int (*encode)(struct pr_out *, const void *), const void *arg)
{
	proto_out_reset(o);
	if (proto_put_raw(o, name, nlen) < 0)
		return -ENOMEM;
	return encode(o, arg);
}

void
subs_event(struct subs *ss, const struct reg_event *ev)
{
	bool group = ev->kind == REG_EV_JOINED || ev->kind == REG_EV_LEFT;

	if (group)
		subs_event_as(ss, ss->seq + 1, ev->kind, ev->member->group->name,
		    ev->member->group->name_len, subs_encode_reg, ev);
	else
		subs_event_as(ss, ss->seq + 1, ev->kind, ev->name->data,
		    ev->name->name_len, subs_encode_reg, ev);
}

void
subs_event_as(struct subs *ss, uint64_t seq, enum reg_ev_kind kind,
    const char *name, size_t nlen,
    int (*encode)(struct pr_out *, const void *), const void *arg)
{
	struct pr_out *o = &ss->payload;
	struct conn_shared *sh = NULL;
	struct sub *sb, *next;
	bool group = kind == REG_EV_JOINED || kind == REG_EV_LEFT;

	ss->seq = seq > ss->seq ? seq : ss->seq;
	if (ss->cap > 0) {
		/* Straight into the history's next slot, the oldest when it
		 * is full: its buffer is reused, no copy, no allocation. */
		struct hev *h;

		if (ss->count == ss->cap)
			subs_ring_pop(ss);
		h = &ss->ring[(ss->head + ss->count) % ss->cap];
		if (subs_encode(&h->buf, name, nlen, encode, arg) == 0) {
			h->seq = ss->seq;
			h->kind = (uint8_t)kind;
			h->name_len = (uint8_t)nlen;
			h->group = group;
			ss->count++;
			ss->bytes += proto_out_len(&h->buf);
			o = &h->buf;
			/* Large values: fewer events, never more memory. */
			while (ss->bytes > PR_HISTORY_BYTES && ss->count > 1)
				subs_ring_pop(ss);
		} else {
			/* Lost: the history restarts after this event, so
			 * that no resume can skip it unknowingly. */
			while (ss->count > 0)
				subs_ring_pop(ss);
			ss->floor = ss->seq;
		}
	} else
		ss->floor = ss->seq;
	if (ss->nsubs == 0)
		return;
	if (o == &ss->payload && subs_encode(o, name, nlen, encode, arg) < 0) {
		/* Not even this event fits in memory: no subscriber may
		 * think it saw everything. */
		while ((sb = TAILQ_FIRST(&ss->all)) != NULL) {
			ss->ops->out_of_memory(ss->arg, sb->p->peer);
			subs_free(ss, sb);
		}
		return;
	}
	/* Shorter prefixes first; a name event reaches both flags'
	 * buckets, a group event only those that asked for groups. */
	for (size_t l = 0; l <= nlen; l++) {
		if (ss->nbuckets[l] == 0)
			continue;
		/* One hash of the prefix serves both flags' buckets. */
		uint64_t h = subs_bucket_hash(ss, name, l, false);

		for (int g = group ? 1 : 0; g <= 1; g++) {
			struct sub_bucket *b = subs_bucket_find(ss,
			    h ^ (uint64_t)g,
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
					ss->ops->out_of_memory(ss->arg,
					    sb->p->peer);
					subs_free(ss, sb);
					continue;
				}
				subs_deliver(ss, sb, ss->seq,
				    kind_names[kind], sh);
			}
		}
	}
	conn_shared_put(sh);
}

/* The peer's record, made when missing; NULL when out of memory. */
static struct subs_peer *
subs_peer_get(struct subs *ss, void *peer)
{
	struct subs_peer *p = subs_peer_find(ss, peer);

	if (p != NULL)
		return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->peer = peer;
	LIST_INIT(&p->subs);
	if (htab_insert(&ss->peers, peer_hash(peer), p) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

void
subs_floor(struct subs *ss, uint64_t seq)
{
	if (seq > ss->seq)
		ss->seq = seq;
	if (seq > ss->floor) {
		while (ss->count > 0 && ss->ring[ss->head].seq <= seq)
			subs_ring_pop(ss);
		ss->floor = seq;
	}
}

void
subs_end_all(struct subs *ss, uint64_t seq)
{
	struct sub *sb;

	while ((sb = TAILQ_FIRST(&ss->all)) != NULL) {
		void *peer = sb->p->peer;
		uint64_t id = sb->id;

		subs_free(ss, sb);
		proto_out_reset(&ss->push);
		if (proto_push_overflow(&ss->push, id, seq) < 0) {
			ss->ops->out_of_memory(ss->arg, peer);
			continue;
		}
		ss->ops->write(ss->arg, peer, proto_out_data(&ss->push),
		    proto_out_len(&ss->push), false);
	}
}

void
subs_advance(struct subs *ss, uint64_t seq)
{
	if (seq > ss->seq)
		ss->seq = seq;
}

int
subs_start(struct subs *ss, void *peer, const char *prefix, size_t plen,
    bool groups, const uint64_t *since, bool *resumable, uint64_t *id,
    struct sub **out)
{
	struct subs_peer *p;
	struct sub *sb;

	if (since != NULL && *since > ss->seq)
		return SUBS_E_FUTURE;
	if ((p = subs_peer_get(ss, peer)) == NULL ||
	    (sb = calloc(1, sizeof(*sb))) == NULL)
		return -ENOMEM;
	sb->p = p;
	sb->groups = groups;
	sb->none = plen > PR_NAME_MAX;
	if (!sb->none) {
		struct sub_bucket *b;
		uint64_t h = subs_bucket_hash(ss, prefix, plen, groups);

		sb->plen = (uint8_t)plen;
		memcpy(sb->prefix, prefix, plen);
		/* No name is longer than 255 bytes: a longer prefix matches
		 * nothing and has no bucket. */
		if ((b = subs_bucket_find(ss, h, prefix, plen, groups)) ==
		    NULL) {
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
	sb->id = ss->id_base + ++p->next_id;
	TAILQ_INSERT_TAIL(&ss->all, sb, all);
	LIST_INSERT_HEAD(&p->subs, sb, by_peer);
	p->n++;
	ss->nsubs++;
	*resumable = since != NULL && *since >= ss->floor;
	*id = sb->id;
	*out = sb;
	return 0;
}

void
subs_abort(struct subs *ss, struct sub *sb)
{
	struct subs_peer *p = sb->p;

	if (sb->id == ss->id_base + p->next_id)
		p->next_id--;
	subs_free(ss, sb);
}

size_t
subs_replay(struct subs *ss, struct sub *sb, uint64_t since)
{
	size_t walked = ss->count;

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
			ss->ops->out_of_memory(ss->arg, sb->p->peer);
			subs_free(ss, sb);
			break;
		}
		more = subs_deliver(ss, sb, h->seq, kind_names[h->kind], sh);
		conn_shared_put(sh);
		if (!more)
			break;
	}
	return walked;
}

bool
subs_stop(struct subs *ss, void *peer, uint64_t id)
{
	struct subs_peer *p = subs_peer_find(ss, peer);
	struct sub *sb;

	if (p == NULL)
		return false;
	LIST_FOREACH(sb, &p->subs, by_peer) {
		if (sb->id == id) {
			subs_free(ss, sb);
			return true;
		}
	}
	return false;
}

void
subs_peer_gone(struct subs *ss, void *peer)
{
	struct subs_peer *p = subs_peer_find(ss, peer);
	struct sub *sb;

	if (p == NULL)
		return;
	while ((sb = LIST_FIRST(&p->subs)) != NULL)
		subs_free(ss, sb);
	htab_remove(&ss->peers, peer_hash(peer), p);
	free(p);
}
