/*
 * calls.c: calls pending between connections (see calls.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "calls.h"
#include "conn.h"
#include "server.h"

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

static uint64_t
mix(uint64_t x)
{
	/* splitmix64 finaliser: ids and gens are ours, not a client's. */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static bool
id_eq(const void *item, const void *key)
{
	return ((const struct pcall *)item)->id == *(const uint64_t *)key;
}

static bool
gen_eq(const void *item, const void *key)
{
	return ((const struct callgen *)item)->gen == *(const uint64_t *)key;
}

struct an_key {
	const char	*s;
	size_t		 len;
};

static bool
an_eq(const void *item, const void *key)
{
	const struct awaitname *an = item;
	const struct an_key *k = key;

	return an->len == k->len && memcmp(an->name, k->s, k->len) == 0;
}

int
calls_init(struct calls *cs)
{
	memset(cs, 0, sizeof(*cs));
	if (htab_init(&cs->by_id, 64) < 0)
		return -ENOMEM;
	if (htab_init(&cs->by_gen, 64) < 0) {
		htab_deinit(&cs->by_id);
		return -ENOMEM;
	}
	if (htab_init(&cs->awaits, 64) < 0) {
		htab_deinit(&cs->by_id);
		htab_deinit(&cs->by_gen);
		return -ENOMEM;
	}
	TAILQ_INIT(&cs->answering);
	return 0;
}

/* Unlink a call from everything and free it; no word to anyone. */
static void
call_free(struct calls *cs, struct pcall *k)
{
	htab_remove(&cs->by_id, mix(k->id), k);
	LIST_REMOVE(k, by_caller);
	LIST_REMOVE(k, by_callee);
	k->caller->ncalls_out--;
	if (k->gen != 0) {
		struct callgen *g;

		LIST_REMOVE(k, by_gen);
		g = htab_find(&cs->by_gen, mix(k->gen), gen_eq, &k->gen);
		if (g != NULL && LIST_EMPTY(&g->calls)) {
			htab_remove(&cs->by_gen, mix(g->gen), g);
			free(g);
		}
	}
	event_free(k->timer);
	free(k);
	cs->pending--;
}

void
calls_deinit(struct calls *cs)
{
	struct htab *t = &cs->by_id;

	/* Connections are freed first and settle their calls; this only
	 * guards against a leak if one was not. */
	for (size_t i = 0; t->slots != NULL && i < t->cap; i++) {
		struct pcall *k = t->slots[i].item;

		if (k != NULL) {
			call_free(cs, k);
			i = (size_t)-1;	/* the table shifted: rescan */
		}
	}
	htab_deinit(&cs->by_id);
	htab_deinit(&cs->by_gen);
	htab_deinit(&cs->awaits);
}

/* Answer the caller with an error of ours, and forget the call. */
static void
call_fail(struct server *s, struct pcall *k, enum pr_err e, const char *why)
{
	struct conn *caller = k->caller;
	uint32_t msgid = k->msgid;

	call_free(&s->calls, k);
	if (s->stopping)
		return;
	proto_out_reset(&s->push);
	if (proto_reply_error(&s->push, msgid, e, "%s", why) < 0) {
		conn_out_of_memory(caller);
		return;
	}
	conn_write(caller, proto_out_data(&s->push), proto_out_len(&s->push),
	    false);
}

static void
call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pcall *k = arg;
	struct server *s = k->srv;

	(void)fd;
	(void)what;
	call_fail(s, k, PR_ERR_TIMEOUT, "no reply within the call's timeout");
}

int
calls_start(struct server *s, struct conn *caller, uint32_t msgid,
    struct conn *callee, uint64_t gen, uint64_t timeout_ms,
    int (*encode)(struct server *, uint64_t id, void *arg), void *arg)
{
	struct calls *cs = &s->calls;
	struct callgen *g = NULL;
	struct pcall *k;
	struct timeval tv;
	int r;

	if (caller->ncalls_out >= s->cfg.max_calls)
		return PR_ERR_LIMIT;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return -ENOMEM;
	k->srv = s;
	k->caller = caller;
	k->callee = callee;
	k->gen = gen;
	k->msgid = msgid;
	k->id = cs->last_id + 1;
	if ((k->timer = evtimer_new(s->base, call_timeout_cb, k)) == NULL)
		goto nomem;
	if (gen != 0 && (g = htab_find(&cs->by_gen, mix(gen), gen_eq,
	    &gen)) == NULL) {
		if ((g = malloc(sizeof(*g))) == NULL)
			goto nomem;
		g->gen = gen;
		LIST_INIT(&g->calls);
		if (htab_insert(&cs->by_gen, mix(gen), g) < 0) {
			free(g);
			g = NULL;
			goto nomem;
		}
	}
	if (htab_insert(&cs->by_id, mix(k->id), k) < 0)
		goto nomem;
	/* Linked everywhere before the push goes out, unlinked by the one
	 * free path if it does not. */
	cs->last_id++;
	cs->pending++;
	LIST_INSERT_HEAD(&caller->calls_out, k, by_caller);
	LIST_INSERT_HEAD(&callee->calls_in, k, by_callee);
	caller->ncalls_out++;
	if (g != NULL)
		LIST_INSERT_HEAD(&g->calls, k, by_gen);
	proto_out_reset(&s->push);
	if ((r = encode(s, k->id, arg)) == 0)
		r = conn_write(callee, proto_out_data(&s->push),
		    proto_out_len(&s->push), true);
	if (r != 0) {
		call_free(cs, k);
		return r == PR_ERR_BUSY ? r : -ENOMEM;
	}
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	evtimer_add(k->timer, &tv);
	return 0;
nomem:
	if (g != NULL && LIST_EMPTY(&g->calls)) {
		htab_remove(&cs->by_gen, mix(gen), g);
		free(g);
	}
	if (k->timer != NULL)
		event_free(k->timer);
	free(k);
	return -ENOMEM;
}

int
calls_reply(struct server *s, struct conn *callee, uint64_t id,
    const pr_value *result, const char *code, size_t clen, const char *msg,
    size_t mlen)
{
	struct calls *cs = &s->calls;
	struct pcall *k;
	struct conn *caller;
	uint32_t msgid;
	int r;

	k = htab_find(&cs->by_id, mix(id), id_eq, &id);
	if (k == NULL || k->callee != callee) {
		/* Ended already (answered, timed out, cancelled): late. */
		if (k == NULL && id != 0 && id <= cs->last_id)
			cs->replies_late++;
		return PR_ERR_NOT_FOUND;
	}
	caller = k->caller;
	msgid = k->msgid;
	call_free(cs, k);
	proto_out_reset(&s->push);
	if (result != NULL)
		r = proto_reply_begin(&s->push, msgid) < 0 ||
		    proto_put_value(&s->push, result) < 0 ? -ENOMEM : 0;
	else
		r = proto_reply_error_raw(&s->push, msgid, code, clen, msg,
		    mlen);
	if (r < 0) {
		/* The call is over either way: the caller must not hang. */
		conn_out_of_memory(caller);
		return 0;
	}
	conn_write(caller, proto_out_data(&s->push), proto_out_len(&s->push),
	    false);
	return 0;
}

/* Unlink an await and free it (its name's record too once empty). */
static void
await_free(struct server *s, struct pawait *a)
{
	struct calls *cs = &s->calls;
	struct awaitname *an = a->an;

	LIST_REMOVE(a, by_conn);
	LIST_REMOVE(a, by_name);
	a->c->ncalls_out--;
	if (LIST_EMPTY(&an->list)) {
		if (an->entry != NULL) {
			TAILQ_REMOVE(&cs->answering, an, answering);
			conn_shared_put(an->entry);
		} else
			htab_remove(&cs->awaits, registry_hash(&s->reg,
			    an->name, an->len), an);
		free(an);
	}
	event_free(a->timer);
	free(a);
	cs->nawaits--;
}

/* Answer an await of a registered name with its entry, and free it. */
static void
answer_await(struct server *s, struct pawait *a)
{
	struct conn *c = a->c;

	proto_out_reset(&s->push);
	if (proto_reply_begin(&s->push, a->msgid) < 0)
		conn_out_of_memory(c);
	else
		conn_write_shared(c, proto_out_data(&s->push),
		    proto_out_len(&s->push), a->an->entry, false);
	await_free(s, a);	/* with the last, the name's record */
}

static void
await_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pawait *a = arg;
	struct server *s = a->srv;
	struct conn *c = a->c;
	uint32_t msgid = a->msgid;

	(void)fd;
	(void)what;
	if (a->an->entry != NULL) {
		/* Registered in time, its answer not sent yet: now. */
		answer_await(s, a);
		return;
	}
	await_free(s, a);
	proto_out_reset(&s->push);
	if (proto_reply_error(&s->push, msgid, PR_ERR_TIMEOUT, "the name was "
	    "not registered in time") < 0) {
		conn_out_of_memory(c);
		return;
	}
	conn_write(c, proto_out_data(&s->push), proto_out_len(&s->push),
	    false);
}

int
calls_await(struct server *s, struct conn *c, uint32_t msgid,
    const char *name, size_t len, uint64_t timeout_ms)
{
	struct calls *cs = &s->calls;
	struct an_key key = { name, len };
	struct awaitname *an, *fresh = NULL;
	struct pawait *a;
	struct timeval tv;
	uint64_t h = registry_hash(&s->reg, name, len);

	if (c->ncalls_out >= s->cfg.max_calls)
		return PR_ERR_LIMIT;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return -ENOMEM;
	if ((a->timer = evtimer_new(s->base, await_timeout_cb, a)) == NULL)
		goto nomem;
	if ((an = htab_find(&cs->awaits, h, an_eq, &key)) == NULL) {
		if ((fresh = an = malloc(sizeof(*an) + len)) == NULL)
			goto nomem;
		LIST_INIT(&an->list);
		an->entry = NULL;
		an->len = (uint8_t)len;
		memcpy(an->name, name, len);
		if (htab_insert(&cs->awaits, h, an) < 0)
			goto nomem;
	}
	a->srv = s;
	a->c = c;
	a->an = an;
	a->msgid = msgid;
	LIST_INSERT_HEAD(&an->list, a, by_name);
	LIST_INSERT_HEAD(&c->awaits, a, by_conn);
	c->ncalls_out++;
	cs->nawaits++;
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	evtimer_add(a->timer, &tv);
	return 0;
nomem:
	free(fresh);
	if (a->timer != NULL)
		event_free(a->timer);
	free(a);
	return -ENOMEM;
}

void
calls_registered(struct server *s, const struct reg_name *n)
{
	struct calls *cs = &s->calls;
	struct an_key key = { n->data, n->name_len };
	uint64_t h;
	struct awaitname *an;

	if (cs->nawaits == 0)
		return;
	h = registry_hash(&s->reg, n->data, n->name_len);
	if ((an = htab_find(&cs->awaits, h, an_eq, &key)) == NULL)
		return;
	/*
	 * One encoded entry shared by every response: a register must not
	 * turn into thousands of copies of its value.  The record leaves
	 * the index (an await made from now on finds the name registered,
	 * or waits for its next registration) for the answering list.
	 */
	proto_out_reset(&s->push);
	if (proto_put_entry(&s->push, n) < 0 ||
	    (an->entry = conn_shared_new(proto_out_data(&s->push),
	    proto_out_len(&s->push))) == NULL) {
		struct pawait *a;

		while ((a = LIST_FIRST(&an->list)) != NULL) {
			conn_out_of_memory(a->c);
			await_free(s, a);
		}
		return;
	}
	htab_remove(&cs->awaits, h, an);
	TAILQ_INSERT_TAIL(&cs->answering, an, answering);
	if (calls_answer_slice(s))
		server_schedule_answers(s);
}

bool
calls_answer_slice(struct server *s)
{
	struct calls *cs = &s->calls;
	struct awaitname *an;
	size_t budget = AWAIT_SLICE;

	/* However many wait for a name, a loop turn answers a slice. */
	while (budget > 0 && (an = TAILQ_FIRST(&cs->answering)) != NULL) {
		bool last;

		do {
			struct pawait *a = LIST_FIRST(&an->list);

			last = LIST_NEXT(a, by_name) == NULL;
			answer_await(s, a);	/* frees an with the last */
		} while (--budget > 0 && !last);
	}
	return !TAILQ_EMPTY(&cs->answering);
}

void
calls_conn_closed(struct server *s, struct conn *c)
{
	struct pcall *k;
	struct pawait *a;

	while ((a = LIST_FIRST(&c->awaits)) != NULL)
		await_free(s, a);

	while ((k = LIST_FIRST(&c->calls_out)) != NULL)
		call_free(&s->calls, k);
	while ((k = LIST_FIRST(&c->calls_in)) != NULL)
		call_fail(s, k, PR_ERR_DOWN, "the callee's connection went "
		    "away before it replied");
}

void
calls_gone(void *arg, uint64_t gen)
{
	struct server *s = arg;
	struct callgen *g;

	if (s->calls.by_gen.count == 0)
		return;
	g = htab_find(&s->calls.by_gen, mix(gen), gen_eq, &gen);
	/* The last call_fail frees g with its list. */
	while (g != NULL) {
		struct pcall *k = LIST_FIRST(&g->calls);
		bool last = LIST_NEXT(k, by_gen) == NULL;

		call_fail(s, k, PR_ERR_DOWN, "the name's registration ended "
		    "before its owner replied");
		if (last)
			break;
	}
}
