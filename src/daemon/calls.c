/*
 * calls.c: calls pending between clients, and awaits (see calls.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "calls.h"
#include "conn.h"

/* One peer's part: what it made and what was made to it. */
struct calls_peer {
	void			*peer;
	LIST_HEAD(, pcall)	 out;		/* it made, pending */
	LIST_HEAD(, pcall)	 in;		/* made to it, pending */
	LIST_HEAD(, pawait)	 awaits;
	uint32_t		 nout;		/* calls and awaits it made */
};

/* The awaits of one name. */
struct awaitname {
	LIST_HEAD(, pawait)	 list;
	/* Registered: its awaits are being answered with this entry, a
	 * slice per loop turn, from the calls' answering list. */
	struct conn_shared	*entry;
	TAILQ_ENTRY(awaitname)	 answering;
	uint8_t			 len;
	char			 name[];
};

/* The calls made through one registration. */
struct callgen {
	uint64_t		 gen;
	LIST_HEAD(, pcall)	 calls;
};

static void	calls_answers_cb(evutil_socket_t, short, void *);

static uint64_t
calls_mix(uint64_t x)
{
	/* splitmix64 finaliser: ids and gens are ours, not a client's. */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static bool
calls_id_eq(const void *item, const void *key)
{
	return ((const struct pcall *)item)->id == *(const uint64_t *)key;
}

static bool
calls_gen_eq(const void *item, const void *key)
{
	return ((const struct callgen *)item)->gen == *(const uint64_t *)key;
}

static bool
calls_peer_eq(const void *item, const void *key)
{
	return ((const struct calls_peer *)item)->peer == key;
}

struct an_key {
	const char	*s;
	size_t		 len;
};

static bool
calls_an_eq(const void *item, const void *key)
{
	const struct awaitname *an = item;
	const struct an_key *k = key;

	return an->len == k->len && memcmp(an->name, k->s, k->len) == 0;
}

int
calls_init(struct calls *cs, struct event_base *base,
    const struct registry *reg, uint32_t max_calls,
    const struct peer_ops *ops, void *arg)
{
	memset(cs, 0, sizeof(*cs));
	cs->ops = ops;
	cs->arg = arg;
	cs->base = base;
	cs->reg = reg;
	cs->max_calls = max_calls;
	proto_out_init(&cs->push);
	TAILQ_INIT(&cs->answering);
	if (htab_init(&cs->by_id, 64) < 0 || htab_init(&cs->by_gen, 64) < 0 ||
	    htab_init(&cs->awaits, 64) < 0 || htab_init(&cs->peers, 64) < 0 ||
	    (cs->ev_answers = evtimer_new(base, calls_answers_cb, cs)) ==
	    NULL) {
		calls_deinit(cs);
		return -ENOMEM;
	}
	return 0;
}

/* The peer's record, or NULL when it has had nothing to do with calls. */
static struct calls_peer *
calls_peer_find(const struct calls *cs, const void *peer)
{
	return htab_find(&cs->peers, peer_hash(peer), calls_peer_eq, peer);
}

/* The peer's record, made when missing; NULL when out of memory. */
static struct calls_peer *
calls_peer_get(struct calls *cs, void *peer)
{
	struct calls_peer *p = calls_peer_find(cs, peer);

	if (p != NULL)
		return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->peer = peer;
	LIST_INIT(&p->out);
	LIST_INIT(&p->in);
	LIST_INIT(&p->awaits);
	if (htab_insert(&cs->peers, peer_hash(peer), p) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

uint32_t
calls_pending_of(const struct calls *cs, const void *peer)
{
	const struct calls_peer *p = calls_peer_find(cs, peer);

	return p != NULL ? p->nout : 0;
}

/* Unlink a call from everything and free it; no word to anyone. */
static void
calls_free_call(struct calls *cs, struct pcall *k)
{
	htab_remove(&cs->by_id, calls_mix(k->id), k);
	LIST_REMOVE(k, by_caller);
	LIST_REMOVE(k, by_callee);
	k->caller->nout--;
	if (k->gen != 0) {
		struct callgen *g;

		LIST_REMOVE(k, by_gen);
		g = htab_find(&cs->by_gen, calls_mix(k->gen), calls_gen_eq,
		    &k->gen);
		if (g != NULL && LIST_EMPTY(&g->calls)) {
			htab_remove(&cs->by_gen, calls_mix(g->gen), g);
			free(g);
		}
	}
	event_free(k->timer);
	free(k);
	cs->pending--;
}

/* Queue what cs->push holds for a peer; no memory: the peer is closed. */
static void
calls_send(struct calls *cs, void *peer, int built)
{
	if (built < 0) {
		cs->ops->out_of_memory(cs->arg, peer);
		return;
	}
	cs->ops->write(cs->arg, peer, proto_out_data(&cs->push),
	    proto_out_len(&cs->push), false);
}

/* Answer the caller with an error of ours, and forget the call. */
static void
calls_fail(struct calls *cs, struct pcall *k, enum pr_err e, const char *why)
{
	void *caller = k->caller->peer;
	uint32_t msgid = k->msgid;

	calls_free_call(cs, k);
	if (cs->quiet)
		return;
	proto_out_reset(&cs->push);
	calls_send(cs, caller, proto_reply_error(&cs->push, msgid, e, "%s",
	    why));
}

static void
calls_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pcall *k = arg;

	(void)fd;
	(void)what;
	calls_fail(k->cs, k, PR_ERR_TIMEOUT,
	    "no reply within the call's timeout");
}

static void
calls_set_timer(struct event *ev, uint64_t ms)
{
	struct timeval tv = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_usec = (suseconds_t)(ms % 1000) * 1000,
	};

	evtimer_add(ev, &tv);
}

int
calls_start(struct calls *cs, void *caller, uint32_t msgid, void *callee,
    uint64_t gen, uint64_t timeout_ms,
    int (*encode)(struct pr_out *, uint64_t, void *), void *arg)
{
	struct calls_peer *from, *to;
	struct callgen *g = NULL;
	struct pcall *k;
	int r;

	if (calls_pending_of(cs, caller) >= cs->max_calls)
		return CALLS_E_LIMIT;
	if ((from = calls_peer_get(cs, caller)) == NULL ||
	    (to = calls_peer_get(cs, callee)) == NULL)
		return -ENOMEM;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return -ENOMEM;
	k->cs = cs;
	k->caller = from;
	k->callee = to;
	k->gen = gen;
	k->msgid = msgid;
	k->id = cs->last_id + 1;
	if ((k->timer = evtimer_new(cs->base, calls_timeout_cb, k)) == NULL)
		goto nomem;
	if (gen != 0 && (g = htab_find(&cs->by_gen, calls_mix(gen),
	    calls_gen_eq, &gen)) == NULL) {
		if ((g = malloc(sizeof(*g))) == NULL)
			goto nomem;
		g->gen = gen;
		LIST_INIT(&g->calls);
		if (htab_insert(&cs->by_gen, calls_mix(gen), g) < 0) {
			free(g);
			g = NULL;
			goto nomem;
		}
	}
	if (htab_insert(&cs->by_id, calls_mix(k->id), k) < 0)
		goto nomem;
	/* Linked everywhere before the push goes out, unlinked by the one
	 * free path if it does not. */
	cs->last_id++;
	cs->pending++;
	LIST_INSERT_HEAD(&from->out, k, by_caller);
	LIST_INSERT_HEAD(&to->in, k, by_callee);
	from->nout++;
	if (g != NULL)
		LIST_INSERT_HEAD(&g->calls, k, by_gen);
	proto_out_reset(&cs->push);
	if ((r = encode(&cs->push, k->id, arg)) < 0) {
		/* Nobody saw the id: it was never issued, and the next call
		 * gets it (a reply naming it is no late reply). */
		calls_free_call(cs, k);
		cs->last_id--;
		return -ENOMEM;
	}
	/* Full or failed, the callee took nothing: a busy callee either
	 * way (the caller's side is fine), not the daemon's shortage. */
	if ((r = cs->ops->write(cs->arg, callee, proto_out_data(&cs->push),
	    proto_out_len(&cs->push), true)) != 0) {
		calls_free_call(cs, k);
		return r < 0 ? CALLS_E_FAILED : CALLS_E_FULL;
	}
	calls_set_timer(k->timer, timeout_ms);
	return 0;
nomem:
	if (g != NULL && LIST_EMPTY(&g->calls)) {
		htab_remove(&cs->by_gen, calls_mix(gen), g);
		free(g);
	}
	if (k->timer != NULL)
		event_free(k->timer);
	free(k);
	return -ENOMEM;
}

int
calls_reply(struct calls *cs, void *callee, uint64_t id,
    const pr_value *result, const char *code, size_t clen, const char *msg,
    size_t mlen)
{
	struct pcall *k;
	void *caller;
	uint32_t msgid;
	int r;

	k = htab_find(&cs->by_id, calls_mix(id), calls_id_eq, &id);
	if (k == NULL || k->callee->peer != callee) {
		/* Ended already (answered, timed out, cancelled): late. */
		if (k == NULL && id != 0 && id <= cs->last_id)
			cs->replies_late++;
		return CALLS_E_NOT_FOUND;
	}
	caller = k->caller->peer;
	msgid = k->msgid;
	calls_free_call(cs, k);
	proto_out_reset(&cs->push);
	if (result != NULL)
		r = proto_reply_begin(&cs->push, msgid) < 0 ||
		    proto_put_value(&cs->push, result) < 0 ? -ENOMEM : 0;
	else
		r = proto_reply_error_raw(&cs->push, msgid, code, clen, msg,
		    mlen);
	/* The call is over either way: without memory for the answer the
	 * caller is closed rather than left hanging. */
	calls_send(cs, caller, r);
	return 0;
}

/* Unlink an await and free it (its name's record too once empty). */
static void
calls_free_await(struct calls *cs, struct pawait *a)
{
	struct awaitname *an = a->an;

	LIST_REMOVE(a, by_peer);
	LIST_REMOVE(a, by_name);
	a->p->nout--;
	if (LIST_EMPTY(&an->list)) {
		if (an->entry != NULL) {
			TAILQ_REMOVE(&cs->answering, an, answering);
			conn_shared_put(an->entry);
		} else
			htab_remove(&cs->awaits, registry_hash(cs->reg,
			    an->name, an->len), an);
		free(an);
	}
	event_free(a->timer);
	free(a);
	cs->nawaits--;
}

/* Answer an await of a registered name with its entry, and free it. */
static void
calls_answer(struct calls *cs, struct pawait *a)
{
	void *peer = a->p->peer;

	proto_out_reset(&cs->push);
	if (proto_reply_begin(&cs->push, a->msgid) < 0)
		cs->ops->out_of_memory(cs->arg, peer);
	else
		cs->ops->write_shared(cs->arg, peer,
		    proto_out_data(&cs->push), proto_out_len(&cs->push),
		    a->an->entry, false);
	calls_free_await(cs, a);	/* with the last, the name's record */
}

static void
calls_await_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pawait *a = arg;
	struct calls *cs = a->cs;
	void *peer = a->p->peer;
	uint32_t msgid = a->msgid;

	(void)fd;
	(void)what;
	if (a->an->entry != NULL) {
		/* Registered in time, its answer not sent yet: now. */
		calls_answer(cs, a);
		return;
	}
	calls_free_await(cs, a);
	proto_out_reset(&cs->push);
	calls_send(cs, peer, proto_reply_error(&cs->push, msgid,
	    PR_ERR_TIMEOUT, "the name was not registered in time"));
}

int
calls_await(struct calls *cs, void *peer, uint32_t msgid, const char *name,
    size_t len, uint64_t timeout_ms)
{
	struct an_key key = { name, len };
	struct awaitname *an, *fresh = NULL;
	struct calls_peer *p;
	struct pawait *a;
	uint64_t h = registry_hash(cs->reg, name, len);

	if (calls_pending_of(cs, peer) >= cs->max_calls)
		return CALLS_E_LIMIT;
	if ((p = calls_peer_get(cs, peer)) == NULL)
		return -ENOMEM;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return -ENOMEM;
	if ((a->timer = evtimer_new(cs->base, calls_await_timeout_cb, a)) ==
	    NULL)
		goto nomem;
	if ((an = htab_find(&cs->awaits, h, calls_an_eq, &key)) == NULL) {
		if ((fresh = an = malloc(sizeof(*an) + len)) == NULL)
			goto nomem;
		LIST_INIT(&an->list);
		an->entry = NULL;
		an->len = (uint8_t)len;
		memcpy(an->name, name, len);
		if (htab_insert(&cs->awaits, h, an) < 0)
			goto nomem;
	}
	a->cs = cs;
	a->p = p;
	a->an = an;
	a->msgid = msgid;
	LIST_INSERT_HEAD(&an->list, a, by_name);
	LIST_INSERT_HEAD(&p->awaits, a, by_peer);
	p->nout++;
	cs->nawaits++;
	calls_set_timer(a->timer, timeout_ms);
	return 0;
nomem:
	free(fresh);
	if (a->timer != NULL)
		event_free(a->timer);
	free(a);
	return -ENOMEM;
}

/* Answer the next slice of awaits; true when more remain. */
static bool
calls_answer_slice(struct calls *cs)
{
	struct awaitname *an;
	size_t budget = AWAIT_SLICE;

	/* However many wait for a name, a loop turn answers a slice. */
	while (budget > 0 && (an = TAILQ_FIRST(&cs->answering)) != NULL) {
		bool last;

		do {
			struct pawait *a = LIST_FIRST(&an->list);

			last = LIST_NEXT(a, by_name) == NULL;
			calls_answer(cs, a);	/* frees an with the last */
		} while (--budget > 0 && !last);
	}
	return !TAILQ_EMPTY(&cs->answering);
}

/* Answer the rest in the next loop turn, after polling for I/O. */
static void
calls_schedule_answers(struct calls *cs)
{
	static const struct timeval now = { 0, 0 };

	if (!evtimer_pending(cs->ev_answers, NULL))
		evtimer_add(cs->ev_answers, &now);
}

static void
calls_answers_cb(evutil_socket_t fd, short what, void *arg)
{
	struct calls *cs = arg;

	(void)fd;
	(void)what;
	if (calls_answer_slice(cs))
		calls_schedule_answers(cs);
}

static int
calls_encode_entry(struct pr_out *o, const void *arg)
{
	return proto_put_entry(o, arg);
}

void
calls_registered(struct calls *cs, const struct reg_name *n)
{
	calls_registered_as(cs, n->data, n->name_len, calls_encode_entry, n);
}

void
calls_registered_as(struct calls *cs, const char *name, size_t len,
    int (*encode)(struct pr_out *, const void *arg), const void *arg)
{
	struct an_key key = { name, len };
	struct awaitname *an;
	uint64_t h;

	if (cs->nawaits == 0)
		return;
	h = registry_hash(cs->reg, name, len);
	if ((an = htab_find(&cs->awaits, h, calls_an_eq, &key)) == NULL)
		return;
	/*
	 * One encoded entry shared by every response: a register must not
	 * turn into thousands of copies of its value.  The record leaves
	 * the index (an await made from now on finds the name registered,
	 * or waits for its next registration) for the answering list.
	 */
	proto_out_reset(&cs->push);
	if (encode(&cs->push, arg) < 0 ||
	    (an->entry = conn_shared_new(proto_out_data(&cs->push),
	    proto_out_len(&cs->push))) == NULL) {
		struct pawait *a, *next;

		/* The last calls_free_await frees an with its list: next is
		 * read first, and an is not touched after the last. */
		for (a = LIST_FIRST(&an->list); a != NULL; a = next) {
			next = LIST_NEXT(a, by_name);
			cs->ops->out_of_memory(cs->arg, a->p->peer);
			calls_free_await(cs, a);
		}
		return;
	}
	htab_remove(&cs->awaits, h, an);
	TAILQ_INSERT_TAIL(&cs->answering, an, answering);
	if (calls_answer_slice(cs))
		calls_schedule_answers(cs);
}

/* Drop what the peer made, fail what was made to it, forget it. */
static void
calls_peer_free(struct calls *cs, struct calls_peer *p)
{
	struct pcall *k;
	struct pawait *a;

	while ((a = LIST_FIRST(&p->awaits)) != NULL)
		calls_free_await(cs, a);
	while ((k = LIST_FIRST(&p->out)) != NULL)
		calls_free_call(cs, k);
	while ((k = LIST_FIRST(&p->in)) != NULL)
		calls_fail(cs, k, PR_ERR_DOWN, "the callee's connection went "
		    "away before it replied");
	htab_remove(&cs->peers, peer_hash(p->peer), p);
	free(p);
}

void
calls_peer_gone(struct calls *cs, void *peer)
{
	struct calls_peer *p = calls_peer_find(cs, peer);

	if (p != NULL)
		calls_peer_free(cs, p);
}

void
calls_gen_gone(struct calls *cs, uint64_t gen)
{
	struct callgen *g;

	if (cs->by_gen.count == 0)
		return;
	g = htab_find(&cs->by_gen, calls_mix(gen), calls_gen_eq, &gen);
	/* The last calls_fail frees g with its list. */
	while (g != NULL) {
		struct pcall *k = LIST_FIRST(&g->calls);
		bool last = LIST_NEXT(k, by_gen) == NULL;

		calls_fail(cs, k, PR_ERR_DOWN, "the name's registration ended "
		    "before its owner replied");
		if (last)
			break;
	}
}

void
calls_deinit(struct calls *cs)
{
	struct htab *t = &cs->peers;

	/* The peers are normally gone first; this frees, without a word,
	 * what any left behind. */
	cs->quiet = true;
	for (size_t i = 0; t->slots != NULL && i < t->cap; i++) {
		struct calls_peer *p = t->slots[i].item;

		if (p != NULL) {
			calls_peer_free(cs, p);
			i = (size_t)-1;	/* the table shifted: rescan */
		}
	}
	if (cs->ev_answers != NULL)
		event_free(cs->ev_answers);
	cs->ev_answers = NULL;
	htab_deinit(&cs->by_id);
	htab_deinit(&cs->by_gen);
	htab_deinit(&cs->awaits);
	htab_deinit(&cs->peers);
	proto_out_deinit(&cs->push);
}
