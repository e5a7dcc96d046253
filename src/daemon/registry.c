/*
 * registry.c: the name and monitor tables (see registry.h).
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "registry.h"
#include "registry_impl.h"
#include "utf8.h"

/* The ordered index's comparison: names as bytes, shorter first. */
/* Bytewise order of two names, the shorter first on a common start. */
static int
name_order(const char *a, uint8_t al, const char *b, uint8_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c != 0 ? c : (int)al - (int)bl;
}

static int
order_cmp(const void *x, const void *y)
{
	const struct reg_name *a = x, *b = y;

	return name_order(a->data, a->name_len, b->data, b->name_len);
}

static int
group_order_cmp(const void *x, const void *y)
{
	const struct reg_group *a = x, *b = y;

	return name_order(a->name, a->name_len, b->name, b->name_len);
}

static uint64_t
name_hash(const struct registry *reg, const char *s, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	if (s == reg->hint.name && len == reg->hint.len)
		return reg->hint.hash;
	/* Keyed SipHash: clients choose names, so they must not choose
	 * collisions. */
	crypto_shorthash(out, (const unsigned char *)s, len, reg->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

uint64_t
registry_hash(const struct registry *reg, const char *s, size_t len)
{
	return name_hash(reg, s, len);
}

static bool
name_eq(const void *item, const void *key)
{
	const struct reg_name *n = item;
	const struct name_key *k = key;

	return n->name_len == k->len && memcmp(n->data, k->s, k->len) == 0;
}

uint64_t
registry_mon_hash(uint64_t id, uint64_t ref)
{
	/* splitmix64 finaliser: ids and refs are ours, not the client's. */
	uint64_t x = id * 0x9e3779b97f4a7c15ULL ^ ref;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static bool
uid_eq(const void *item, const void *key)
{
	return ((const struct reg_uid *)item)->uid == *(const uint32_t *)key;
}

/* A user's totals, or NULL. */
static struct reg_uid *
uid_find(const struct registry *reg, uint32_t uid)
{
	return htab_find(&reg->uids, registry_mon_hash(uid, 0), uid_eq, &uid);
}

/* Forget a user's totals once nothing of theirs is left. */
static void
uid_release(struct registry *reg, struct reg_uid *u)
{
	if (u->conns != 0 || u->clients != 0 || u->names != 0 ||
	    u->waits != 0)
		return;
	htab_remove(&reg->uids, registry_mon_hash(u->uid, 0), u);
	free(u);
}

static bool
id_eq(const void *item, const void *key)
{
	return ((const struct reg_client *)item)->id == *(const uint64_t *)key;
}

bool
registry_mon_eq(const void *item, const void *key)
{
	const struct reg_monitor *m = item;
	const struct mon_key *k = key;

	return m->holder == k->holder && m->ref == k->ref;
}

int
registry_init(struct registry *reg, uint32_t max_names, uint32_t max_monitors,
    reg_down_fn *down, void *down_arg)
{
	memset(reg, 0, sizeof(*reg));
	if (sodium_init() < 0)
		return -ENOMEM;
	randombytes_buf(reg->hkey, sizeof(reg->hkey));
	if (htab_init(&reg->names, 1024) < 0)
		return -ENOMEM;
	if (htab_init(&reg->monitors, 1024) < 0) {
		htab_deinit(&reg->names);
		return -ENOMEM;
	}
	if (htab_init(&reg->uids, 64) < 0 || htab_init(&reg->ids, 64) < 0 ||
	    htab_init(&reg->groups, 64) < 0 ||
	    htab_init(&reg->queues, 64) < 0 ||
	    htab_init(&reg->watched, 64) < 0) {
		htab_deinit(&reg->names);
		htab_deinit(&reg->monitors);
		htab_deinit(&reg->uids);
		htab_deinit(&reg->ids);
		htab_deinit(&reg->groups);
		htab_deinit(&reg->queues);
		htab_deinit(&reg->watched);
		return -ENOMEM;
	}
	btree_init(&reg->order, order_cmp);
	btree_init(&reg->gorder, group_order_cmp);
	LIST_INIT(&reg->clients);
	TAILQ_INIT(&reg->purging);
	reg->max_names = max_names;
	reg->max_monitors = max_monitors;
	reg->down = down;
	reg->down_arg = down_arg;
	return 0;
}

void
registry_deinit(struct registry *reg)
{
	struct reg_client *c;

	reg->down = NULL;
	reg->gone = NULL;
	reg->event = NULL;
	while (registry_purge_slice(reg, SIZE_MAX))
		;
	while ((c = LIST_FIRST(&reg->clients)) != NULL)
		(void)registry_client_close(reg, c, SIZE_MAX);
	/* Users whose descriptors were never put back (their caller did not
	 * get that far). */
	for (size_t i = 0; i < reg->uids.cap; i++)
		free(reg->uids.slots[i].item);
	htab_deinit(&reg->names);
	htab_deinit(&reg->monitors);
	htab_deinit(&reg->uids);
	htab_deinit(&reg->ids);
	htab_deinit(&reg->groups);
	htab_deinit(&reg->queues);
	htab_deinit(&reg->watched);
	btree_deinit(&reg->order);
	btree_deinit(&reg->gorder);
}

/* The totals of uid, made when missing; NULL when out of memory. */
static struct reg_uid *
uid_get(struct registry *reg, uint32_t uid)
{
	struct reg_uid *u;

	if ((u = uid_find(reg, uid)) != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	if (htab_insert(&reg->uids, registry_mon_hash(uid, 0), u) < 0) {
		free(u);
		return NULL;
	}
	return u;
}

struct reg_client *
registry_client_new(struct registry *reg, uint64_t id, int64_t pid,
    uint32_t uid, uint32_t gid, void *conn)
{
	struct reg_client *c;
	struct reg_uid *u;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((u = uid_get(reg, uid)) == NULL)
		goto fail;
	c->id = id;
	if (htab_insert(&reg->ids, registry_mon_hash(id, 0), c) < 0) {
		uid_release(reg, u);
		goto fail;
	}
	u->clients++;
	c->usage = u;
	c->conn = conn;
	LIST_INIT(&c->names);
	LIST_INIT(&c->monitors);
	LIST_INIT(&c->watchers);
	LIST_INIT(&c->members);
	LIST_INIT(&c->waits);
	LIST_INIT(&c->queues);
	c->pid = pid;
	c->uid = uid;
	c->gid = gid;
	c->next_ref = 1;
	LIST_INSERT_HEAD(&reg->clients, c, link);
	return c;
fail:
	free(c);
	return NULL;
}

int
registry_uid_hold(struct registry *reg, uint32_t uid)
{
	struct reg_uid *u;

	if ((u = uid_get(reg, uid)) == NULL)
		return -ENOMEM;
	u->conns++;
	return 0;
}

void
registry_uid_put(struct registry *reg, uint32_t uid)
{
	struct reg_uid *u = uid_find(reg, uid);

	if (u == NULL || u->conns == 0)
		return;
	u->conns--;
	uid_release(reg, u);
}

struct reg_client *
registry_client_find(const struct registry *reg, uint64_t id)
{
	struct reg_client *c = htab_find(&reg->ids, registry_mon_hash(id, 0),
	    id_eq, &id);

	return c != NULL && !c->dying ? c : NULL;
}

uint32_t
registry_uid_conns(const struct registry *reg, uint32_t uid)
{
	const struct reg_uid *u = uid_find(reg, uid);

	return u != NULL ? u->conns : 0;
}

static bool
watch_eq(const void *item, const void *key)
{
	return ((const struct reg_watch *)item)->name == key;
}

/* The monitors on n, or NULL when it has none. */
struct reg_watch *
registry_watch_of(const struct registry *reg, const struct reg_name *n)
{
	if (!(n->flags & REG_HAS_MONITORS))
		return NULL;
	return htab_find(&reg->watched, name_hash(reg, n->data, n->name_len),
	    watch_eq, n);
}

/* Drop a name's (empty) watch. */
static void
watch_free(struct registry *reg, struct reg_watch *w)
{
	htab_remove(&reg->watched, name_hash(reg, w->name->data,
	    w->name->name_len), w);
	w->name->flags &= ~REG_HAS_MONITORS;
	free(w);
}

/* Unlink a monitor from both lists and the index, and free it; its
 * target's watch, if it empties, is the caller's. */
static void
monitor_unlink(struct registry *reg, struct reg_monitor *m)
{
	htab_remove(&reg->monitors, registry_mon_hash(m->holder->id, m->ref),
	    m);
	LIST_REMOVE(m, by_target);
	LIST_REMOVE(m, by_holder);
	m->holder->nmonitors--;
	reg->nmonitors--;
	free(m);
}

/* The same, and the name it watched drops its watch with its last
 * monitor. */
static void
monitor_free(struct registry *reg, struct reg_monitor *m)
{
	struct reg_watch *w = m->target != NULL ?
	    registry_watch_of(reg, m->target) : NULL;

	monitor_unlink(reg, m);
	if (w != NULL && LIST_EMPTY(&w->monitors))
		watch_free(reg, w);
}

static uint64_t
reg_now(const struct registry *reg)
{
	return reg->clock != NULL ? reg->clock() : 0;
}

/* Tell the event hook about a change (not while a batch is muted). */
void
registry_emit(struct registry *reg, enum reg_ev_kind kind,
    const struct reg_name *n, const struct reg_member *mb, struct reg_client *prev,
    enum pr_down_reason why, bool acquired)
{
	struct reg_event ev = { kind, n, mb, prev, why, acquired };

	if (reg->event != NULL && !reg->mute)
		reg->event(reg->down_arg, &ev);
}

/* Fire every monitor on a list (a name's or a client's) and free it. */
static void
monitors_fire(struct registry *reg, struct reg_monitor *first,
    const struct reg_target *t, enum pr_down_reason why)
{
	struct reg_monitor *m, *next;

	for (m = first; m != NULL; m = next) {
		next = LIST_NEXT(m, by_target);
		if (reg->down != NULL)
			reg->down(reg->down_arg, m->holder, m->ref, t, why);
		monitor_unlink(reg, m);
	}
}

/* Fire every monitor on the name n (it ends: why). */
static void
name_fire(struct registry *reg, struct reg_name *n, enum pr_down_reason why)
{
	struct reg_target t = { n->data, n->name_len, 0 };
	struct reg_watch *w = registry_watch_of(reg, n);

	if (w == NULL)
		return;
	monitors_fire(reg, LIST_FIRST(&w->monitors), &t, why);
	watch_free(reg, w);
}

/* Fire every monitor of n with reason, unlink n everywhere, free it. */
static void
name_remove(struct registry *reg, struct reg_name *n, enum pr_down_reason why)
{
	name_fire(reg, n, why);
	/* A muted batch removes only its own names when it fails: they never
	 * were, and their gens will be given again. */
	if (reg->gone != NULL && !reg->mute)
		reg->gone(reg->down_arg, n->gen);
	registry_emit(reg, REG_EV_UNREGISTERED, n, NULL, NULL, why, false);
	htab_remove(&reg->names, name_hash(reg, n->data, n->name_len), n);
	(void)btree_remove(&reg->order, n);
	LIST_REMOVE(n, owner_link);
	n->owner->nnames--;
	n->owner->usage->names--;
	reg->nnames--;
	free(n);
}

static bool
queue_eq(const void *item, const void *key)
{
	const struct reg_queue *q = item;
	const struct name_key *k = key;

	return q->name->name_len == k->len &&
	    memcmp(q->name->data, k->s, k->len) == 0;
}

struct reg_queue *
registry_queue_of(const struct registry *reg, const struct reg_name *n)
{
	struct name_key k = { n->data, n->name_len };

	if (!(n->flags & REG_HAS_QUEUE))
		return NULL;
	return htab_find(&reg->queues, name_hash(reg, n->data, n->name_len),
	    queue_eq, &k);
}

/* Forget an empty queue. */
static void
queue_drop(struct registry *reg, struct reg_queue *q)
{
	htab_remove(&reg->queues, name_hash(reg, q->name->data,
	    q->name->name_len), q);
	LIST_REMOVE(q, by_owner);
	q->name->flags &= ~REG_HAS_QUEUE;
	free(q);
}

/* Take a waiter out of its queue and its client's list; its prepared
 * registration is returned, no longer owned by anything. */
static struct reg_name *
waiter_unlink(struct registry *reg, struct reg_waiter *w)
{
	struct reg_queue *q = w->q;
	struct reg_name *ready = w->ready;

	TAILQ_REMOVE(&q->waiters, w, by_queue);
	LIST_REMOVE(w, by_client);
	ready->owner->nwaits--;
	ready->owner->usage->waits--;
	reg->nwaiters--;
	free(w);
	if (--q->n == 0)
		queue_drop(reg, q);
	return ready;
}

/* The client's place in n's queue, or NULL: walks the shorter list. */
static struct reg_waiter *
waiter_find(const struct registry *reg, struct reg_client *c,
    const struct reg_name *n)
{
	struct reg_queue *q;
	struct reg_waiter *w;

	if (c->nwaits == 0 || (q = registry_queue_of(reg, n)) == NULL)
		return NULL;
	if (q->n < c->nwaits) {
		TAILQ_FOREACH(w, &q->waiters, by_queue) {
			if (w->ready->owner == c)
				return w;
		}
		return NULL;
	}
	LIST_FOREACH(w, &c->waits, by_client) {
		if (w->q == q)
			return w;
	}
	return NULL;
}

/* A registration block, not linked anywhere yet. */
static struct reg_name *
name_alloc(struct reg_client *c, const char *name, size_t len,
    const void *value, size_t vlen, unsigned flags, uint64_t now_ms)
{
	struct reg_name *n = malloc(sizeof(*n) + len + vlen);

	if (n == NULL)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->owner = c;
	n->since_ms = now_ms;
	n->name_len = (uint8_t)len;
	n->value_len = (uint32_t)vlen;
	n->flags = (uint8_t)(flags & (REG_QUEUE | REG_ALLOW_REPLACEMENT));
	memcpy(n->data, name, len);
	if (vlen > 0)
		memcpy(n->data + len, value, vlen);
	return n;
}

/*
 * n's owner gives the name up (why) to nn, a registration prepared for
 * the next owner, in one step: n's monitors fire and calls through it
 * fail, nn takes n's place in every index, with a new gen, and takes its
 * queue along.  n is freed, or with requeue becomes its old owner's place
 * at the head of the queue (q_spare: a queue to use if there is none).
 * Nothing here allocates.
 */
static void
name_handover(struct registry *reg, struct reg_name *n, struct reg_name *nn,
    enum pr_down_reason why, bool acquired, struct reg_waiter *requeue,
    struct reg_queue *q_spare)
{
	struct reg_client *prev = n->owner, *to = nn->owner;
	uint64_t h = name_hash(reg, n->data, n->name_len);
	struct reg_queue *q;

	name_fire(reg, n, why);
	if (reg->gone != NULL)
		reg->gone(reg->down_arg, n->gen);
	q = registry_queue_of(reg, n);
	nn->since_ms = reg_now(reg);
	nn->gen = ++reg->gen;
	htab_replace(&reg->names, h, n, nn);
	(void)btree_replace(&reg->order, n, nn);
	LIST_REMOVE(n, owner_link);
	prev->nnames--;
	prev->usage->names--;
	LIST_INSERT_HEAD(&to->names, nn, owner_link);
	to->nnames++;
	to->usage->names++;
	nn->flags &= ~REG_HAS_QUEUE;
	n->flags &= ~REG_HAS_QUEUE;
	if (requeue != NULL && q == NULL) {
		q = q_spare;
		q_spare = NULL;
		TAILQ_INIT(&q->waiters);
		q->n = 0;
		q->name = nn;
		/* Cannot fail: the caller reserved the room. */
		(void)htab_insert(&reg->queues, h, q);
		LIST_INSERT_HEAD(&prev->queues, q, by_owner);
	}
	if (q != NULL) {
		q->name = nn;
		LIST_REMOVE(q, by_owner);
		LIST_INSERT_HEAD(&to->queues, q, by_owner);
		nn->flags |= REG_HAS_QUEUE;
	}
	free(q_spare);
	if (requeue != NULL) {
		/* The old block is its owner's next registration. */
		requeue->q = q;
		requeue->ready = n;
		TAILQ_INSERT_HEAD(&q->waiters, requeue, by_queue);
		LIST_INSERT_HEAD(&prev->waits, requeue, by_client);
		prev->nwaits++;
		prev->usage->waits++;
		reg->nwaiters++;
		q->n++;
	} else
		free(n);
	registry_emit(reg, REG_EV_HANDOVER, nn, NULL, prev, why, acquired);
}

/* The first waiter becomes n's owner. */
static void
name_promote(struct registry *reg, struct reg_name *n, enum pr_down_reason why)
{
	struct reg_queue *q = registry_queue_of(reg, n);
	struct reg_name *nn = waiter_unlink(reg, TAILQ_FIRST(&q->waiters));

	name_handover(reg, n, nn, why, true, NULL, NULL);
}

/* A registration ends: the queue's head takes over, or the name goes. */
static void
name_end(struct registry *reg, struct reg_name *n, enum pr_down_reason why)
{
	if (n->flags & REG_HAS_QUEUE)
		name_promote(reg, n, why);
	else
		name_remove(reg, n, why);
}

/*
 * Remove at most budget of a dying client's names; when none is left,
 * free the record.  True when it is gone.
 */
static bool
client_purge_names(struct registry *reg, struct reg_client *c, size_t budget)
{
	struct reg_name *n;

	while (budget-- > 0 && (n = LIST_FIRST(&c->names)) != NULL)
		name_remove(reg, n, PR_DOWN_DISCONNECTED);
	if (!LIST_EMPTY(&c->names))
		return false;
	LIST_REMOVE(c, link);
	c->usage->clients--;
	uid_release(reg, c->usage);
	free(c);
	return true;
}

bool
registry_client_close(struct registry *reg, struct reg_client *c,
    size_t budget)
{
	struct reg_target t = { NULL, 0, c->id };
	struct reg_monitor *m;
	struct reg_member *mb;
	struct reg_waiter *w;
	struct reg_queue *q;

	if (c->dying)
		return false;	/* on the purge queue already */
	c->conn = NULL;
	/* Its own monitors first, so none of its names fires back at it;
	 * from now on its names are invisible. */
	while ((m = LIST_FIRST(&c->monitors)) != NULL)
		monitor_free(reg, m);
	while ((mb = LIST_FIRST(&c->members)) != NULL)
		registry_member_free(reg, mb);
	while ((w = LIST_FIRST(&c->waits)) != NULL)
		free(waiter_unlink(reg, w));
	/* Names others wait for change hands now, before they could look
	 * free. */
	while ((q = LIST_FIRST(&c->queues)) != NULL)
		name_promote(reg, q->name, PR_DOWN_DISCONNECTED);
	c->dying = true;
	htab_remove(&reg->ids, registry_mon_hash(c->id, 0), c);
	monitors_fire(reg, LIST_FIRST(&c->watchers), &t, PR_DOWN_DISCONNECTED);
	if (client_purge_names(reg, c, budget))
		return true;
	TAILQ_INSERT_TAIL(&reg->purging, c, purge_link);
	return false;
}

bool
registry_purge_slice(struct registry *reg, size_t budget)
{
	struct reg_client *c;

	while (budget > 0 && (c = TAILQ_FIRST(&reg->purging)) != NULL) {
		uint32_t before = c->nnames;

		TAILQ_REMOVE(&reg->purging, c, purge_link);
		if (!client_purge_names(reg, c, budget)) {
			TAILQ_INSERT_HEAD(&reg->purging, c, purge_link);
			break;
		}
		budget -= before < budget ? before : budget;
	}
	return !TAILQ_EMPTY(&reg->purging);
}

bool
registry_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > PR_NAME_MAX)
		return false;
	if (memchr(name, '\0', len) != NULL)
		return false;
	return utf8_valid(name, len);
}

/* The entry of a name, dying owner or not. */
struct reg_name *
registry_lookup_any(const struct registry *reg, const char *name, size_t len,
    uint64_t h)
{
	struct name_key k = { name, len };

	return htab_find(&reg->names, h, name_eq, &k);
}

struct reg_name *
registry_lookup(const struct registry *reg, const char *name, size_t len)
{
	struct reg_name *n = registry_lookup_any(reg, name, len,
	    name_hash(reg, name, len));

	return n != NULL && !n->owner->dying ? n : NULL;
}

void
registry_hint(struct registry *reg, const char *name, size_t len,
    uint64_t h)
{
	reg->hint.name = name;
	reg->hint.len = len;
	reg->hint.hash = h;
}

void
registry_prefetch(const struct registry *reg, uint64_t h, size_t len,
    int stage)
{
	if (stage == 0)
		htab_prefetch(&reg->names, h);
	else
		htab_prefetch_item(&reg->names, h,
		    offsetof(struct reg_name, data) + len);
}

/* Has the client room for n more names or places?  0 or the limit. */
static int
room_for(const struct registry *reg, const struct reg_client *c, size_t n)
{
	/* A place in a queue is a name to be: it counts, so that taking
	 * the name over never passes a limit.  n is bounded by
	 * max_message: the sums cannot overflow. */
	if (c->nnames + c->nwaits + n > reg->max_names)
		return REG_E_LIMIT;
	if (reg->max_names_per_uid != 0 && !c->uncapped &&
	    c->usage->names + c->usage->waits + n > reg->max_names_per_uid)
		return REG_E_LIMIT_UID;
	return 0;
}

/* Queue the client for n (registered, not its own). */
static int
name_enqueue(struct registry *reg, struct reg_client *c, struct reg_name *n,
    const void *value, size_t vlen, unsigned flags, uint32_t *queued)
{
	struct reg_queue *q = registry_queue_of(reg, n), *nq = NULL;
	struct reg_waiter *w;
	struct reg_name *ready;
	int r;

	if ((r = room_for(reg, c, 1)) != 0)
		return r;
	ready = name_alloc(c, n->data, n->name_len, value, vlen, flags, 0);
	w = malloc(sizeof(*w));
	if (q == NULL)
		nq = q = malloc(sizeof(*q));
	if (ready == NULL || w == NULL || q == NULL)
		goto nomem;
	if (nq != NULL) {
		TAILQ_INIT(&q->waiters);
		q->n = 0;
		q->name = n;
		if (htab_insert(&reg->queues, name_hash(reg, n->data,
		    n->name_len), q) < 0)
			goto nomem;
		LIST_INSERT_HEAD(&n->owner->queues, q, by_owner);
		n->flags |= REG_HAS_QUEUE;
	}
	w->q = q;
	w->ready = ready;
	TAILQ_INSERT_TAIL(&q->waiters, w, by_queue);
	LIST_INSERT_HEAD(&c->waits, w, by_client);
	c->nwaits++;
	c->usage->waits++;
	reg->nwaiters++;
	*queued = ++q->n;
	return 0;
nomem:
	free(ready);
	free(w);
	free(nq);
	return -ENOMEM;
}

/* Take n from an owner that allowed replacement. */
static int
name_replace(struct registry *reg, struct reg_client *c, struct reg_name *n,
    const void *value, size_t vlen, unsigned flags, struct reg_name **out)
{
	struct reg_waiter *w = NULL;
	struct reg_queue *q = NULL;
	struct reg_name *nn;
	int r;

	if ((r = room_for(reg, c, 1)) != 0)
		return r;
	/* Everything the hand-over needs, before anything changes. */
	nn = name_alloc(c, n->data, n->name_len, value, vlen, flags, 0);
	if (n->flags & REG_QUEUE) {
		w = malloc(sizeof(*w));
		if (!(n->flags & REG_HAS_QUEUE))
			q = malloc(sizeof(*q));
	}
	if (nn == NULL || ((n->flags & REG_QUEUE) && (w == NULL ||
	    (!(n->flags & REG_HAS_QUEUE) && (q == NULL ||
	    htab_reserve(&reg->queues) < 0))))) {
		free(nn);
		free(w);
		free(q);
		return -ENOMEM;
	}
	name_handover(reg, n, nn, PR_DOWN_REPLACED, false, w, q);
	*out = nn;
	return 0;
}

int
registry_register_opts(struct registry *reg, struct reg_client *c,
    const char *name, size_t len, const void *value, size_t vlen,
    unsigned flags, uint64_t now_ms, struct reg_name **out, uint32_t *queued)
{
	struct reg_name *n;
	uint64_t h;
	int r;

	*queued = 0;
	if (vlen > UINT32_MAX || len > PR_NAME_MAX)
		return REG_E_TOO_LARGE;
	h = name_hash(reg, name, len);
	if ((n = registry_lookup_any(reg, name, len, h)) != NULL &&
	    n->owner->dying) {
		/* Its owner is being purged (nobody waits for it: those names
		 * changed hands when the purge began): finish it now. */
		name_remove(reg, n, PR_DOWN_DISCONNECTED);
		n = NULL;
	}
	if (n != NULL) {
		*out = n;
		if (n->owner == c || waiter_find(reg, c, n) != NULL)
			return REG_E_TAKEN;
		if ((flags & REG_REPLACE) && (n->flags & REG_ALLOW_REPLACEMENT))
			return name_replace(reg, c, n, value, vlen, flags, out);
		if (flags & REG_QUEUE)
			return name_enqueue(reg, c, n, value, vlen, flags,
			    queued);
		return REG_E_TAKEN;
	}
	if ((r = room_for(reg, c, 1)) != 0)
		return r;
	if ((n = name_alloc(c, name, len, value, vlen, flags, now_ms)) == NULL)
		return -ENOMEM;
	if (btree_reserve(&reg->order) < 0 ||
	    htab_insert(&reg->names, h, n) < 0) {
		free(n);
		return -ENOMEM;
	}
	n->gen = ++reg->gen;
	/* Cannot fail: reserved. */
	(void)btree_insert(&reg->order, n);
	LIST_INSERT_HEAD(&c->names, n, owner_link);
	c->nnames++;
	c->usage->names++;
	reg->nnames++;
	*out = n;
	registry_emit(reg, REG_EV_REGISTERED, n, NULL, NULL,
	    PR_DOWN_UNREGISTERED, false);
	return 0;
}

int
registry_register(struct registry *reg, struct reg_client *c, const char *name,
    size_t len, const void *value, size_t vlen, uint64_t now_ms,
    struct reg_name **out)
{
	uint32_t queued;

	return registry_register_opts(reg, c, name, len, value, vlen, 0,
	    now_ms, out, &queued);
}

struct reg_queue *
registry_queue(const struct registry *reg, const char *name, size_t len)
{
	struct reg_name *n = registry_lookup(reg, name, len);

	return n != NULL ? registry_queue_of(reg, n) : NULL;
}

struct dup_ctx {
	const char *const	*names;
	const size_t		*lens;
};

static int
dup_cmp(const void *a, const void *b, void *arg)
{
	const struct dup_ctx *d = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	size_t lx = d->lens[x], ly = d->lens[y];
	int c = memcmp(d->names[x], d->names[y], lx < ly ? lx : ly);

	if (c == 0)
		c = lx < ly ? -1 : lx > ly;
	if (c == 0)
		c = x < y ? -1 : x > y;
	return c;
}

bool
registry_first_duplicate(const char *const *names, const size_t *lens,
    size_t n, size_t *idx, size_t *dup)
{
	struct dup_ctx d = { names, lens };
	bool found = false;

	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), dup_cmp, &d);
	/* Equal names sit together, in array order: the second of each run
	 * is where that name repeats first. */
	for (size_t i = 1; i < n; i++) {
		size_t a = idx[i - 1], b = idx[i];

		if (lens[a] != lens[b] || memcmp(names[a], names[b],
		    lens[a]) != 0)
			continue;
		if (i >= 2 && lens[idx[i - 2]] == lens[a] &&
		    memcmp(names[idx[i - 2]], names[a], lens[a]) == 0)
			continue;	/* a third or later copy */
		if (!found || b < *dup)
			*dup = b;
		found = true;
	}
	return found;
}

int
registry_register_many(struct registry *reg, struct reg_client *c, size_t n,
    const char *const *names, const size_t *lens, const void *const *values,
    const size_t *vlens, uint64_t now_ms, struct reg_name **out, size_t *bad)
{
	uint64_t gen = reg->gen;
	size_t i;
	int r = 0;

	/* Every refusal that does not depend on the batch itself first, so
	 * that nothing is touched when one applies. */
	for (i = 0; i < n; i++) {
		if ((out[0] = registry_lookup(reg, names[i], lens[i])) != NULL) {
			*bad = i;
			return REG_E_TAKEN;
		}
	}
	if ((r = room_for(reg, c, n)) != 0)
		return r;
	/* Names of connections being purged go first, out loud: their end
	 * is no part of the batch, whatever becomes of it. */
	for (i = 0; i < n; i++) {
		struct reg_name *d = registry_lookup_any(reg, names[i], lens[i],
		    name_hash(reg, names[i], lens[i]));

		if (d != NULL && d->owner->dying)
			name_remove(reg, d, PR_DOWN_DISCONNECTED);
	}
	/* Quiet until it is sure: the batch shows as all or nothing. */
	reg->mute = true;
	for (i = 0; i < n; i++) {
		r = registry_register(reg, c, names[i], lens[i], values[i],
		    vlens[i], now_ms, &out[i]);
		if (r != 0)
			break;
	}
	if (r == 0) {
		reg->mute = false;
		for (i = 0; i < n; i++)
			registry_emit(reg, REG_EV_REGISTERED, out[i], NULL, NULL,
			    PR_DOWN_UNREGISTERED, false);
		return 0;
	}
	/* Only a name given twice can be taken now; or memory ran out.
	 * The new names have no monitors yet: remove them quietly. */
	*bad = i;
	while (i-- > 0)
		name_remove(reg, out[i], PR_DOWN_UNREGISTERED);
	reg->mute = false;
	reg->gen = gen;
	return r == REG_E_TAKEN ? REG_E_DUPLICATE : r;
}

int
registry_update(struct registry *reg, struct reg_client *c, const char *name,
    size_t len, const void *value, size_t vlen, struct reg_name **out)
{
	return registry_update_gen(reg, c, name, len, value, vlen, NULL, out);
}

int
registry_update_gen(struct registry *reg, struct reg_client *c,
    const char *name, size_t len, const void *value, size_t vlen,
    const uint64_t *gen, struct reg_name **out)
{
	struct reg_name *n, *nn;
	struct reg_monitor *m;
	struct reg_watch *w;
	struct reg_queue *q;
	uint64_t h;

	if ((n = registry_lookup(reg, name, len)) == NULL)
		return REG_E_NOT_FOUND;
	if (n->owner != c)
		return REG_E_NOT_OWNER;
	if (gen != NULL && *gen != n->gen)
		return REG_E_STALE;
	if (vlen > UINT32_MAX)
		return REG_E_TOO_LARGE;
	if (vlen <= n->value_len) {
		/* Fits where the old one was (shrinking keeps the block). */
		if (vlen > 0)
			memcpy(n->data + n->name_len, value, vlen);
		n->value_len = (uint32_t)vlen;
		*out = n;
		registry_emit(reg, REG_EV_UPDATED, n, NULL, NULL,
		    PR_DOWN_UNREGISTERED, false);
		return 0;
	}
	/*
	 * A larger value moves the entry: a fresh block, every link moved
	 * over, then the old block freed.  Updates are rare next to lookups,
	 * which is why the value lives inline rather than behind a pointer.
	 */
	if ((nn = malloc(sizeof(*nn) + len + vlen)) == NULL)
		return -ENOMEM;
	q = registry_queue_of(reg, n);
	w = registry_watch_of(reg, n);
	memcpy(nn, n, sizeof(*nn) + len);
	memcpy(nn->data + len, value, vlen);
	nn->value_len = (uint32_t)vlen;
	h = name_hash(reg, name, len);
	htab_replace(&reg->names, h, n, nn);
	(void)btree_replace(&reg->order, n, nn);
	LIST_INSERT_BEFORE(n, nn, owner_link);
	LIST_REMOVE(n, owner_link);
	if (w != NULL) {
		w->name = nn;
		LIST_FOREACH(m, &w->monitors, by_target)
			m->target = nn;
	}
	if (q != NULL)
		q->name = nn;
	free(n);
	*out = nn;
	registry_emit(reg, REG_EV_UPDATED, nn, NULL, NULL, PR_DOWN_UNREGISTERED,
	    false);
	return 0;
}

int
registry_evict(struct registry *reg, const char *name, size_t len)
{
	struct reg_name *n;

	if ((n = registry_lookup(reg, name, len)) == NULL)
		return REG_E_NOT_FOUND;
	name_end(reg, n, PR_DOWN_EVICTED);
	return 0;
}

int
registry_unregister(struct registry *reg, struct reg_client *c,
    const char *name, size_t len)
{
	return registry_unregister_gen(reg, c, name, len, NULL);
}

int
registry_unregister_gen(struct registry *reg, struct reg_client *c,
    const char *name, size_t len, const uint64_t *gen)
{
	struct reg_waiter *w;
	struct reg_name *n;

	if ((n = registry_lookup(reg, name, len)) == NULL)
		return REG_E_NOT_FOUND;
	w = n->owner != c ? waiter_find(reg, c, n) : NULL;
	if (n->owner != c && w == NULL)
		return REG_E_NOT_OWNER;
	/* Fenced, a waiter's too: it acts only on the entry it knew. */
	if (gen != NULL && *gen != n->gen)
		return REG_E_STALE;
	if (w != NULL)
		free(waiter_unlink(reg, w));
	else
		name_end(reg, n, PR_DOWN_UNREGISTERED);
	return 0;
}

/* Store a monitor of c's on a name or a client, under the next ref. */
static int
monitor_add(struct registry *reg, struct reg_client *c, struct reg_name *n,
    struct reg_client *t, uint64_t *ref)
{
	struct reg_watch *w = n != NULL ? registry_watch_of(reg, n) : NULL;
	struct reg_monitor *m;

	if (htab_reserve(&reg->monitors) < 0)
		return -ENOMEM;
	if ((m = malloc(sizeof(*m))) == NULL)
		return -ENOMEM;
	if (n != NULL && w == NULL) {
		/* The name's first monitor. */
		if (htab_reserve(&reg->watched) < 0 ||
		    (w = malloc(sizeof(*w))) == NULL) {
			free(m);
			return -ENOMEM;
		}
		LIST_INIT(&w->monitors);
		w->name = n;
		/* Cannot fail: reserved. */
		(void)htab_insert(&reg->watched, name_hash(reg, n->data,
		    n->name_len), w);
		n->flags |= REG_HAS_MONITORS;
	}
	m->holder = c;
	m->target = n;
	m->target_client = t;
	m->ref = c->next_ref++;
	/* Cannot fail: reserved. */
	(void)htab_insert(&reg->monitors, registry_mon_hash(c->id, m->ref), m);
	if (n != NULL)
		LIST_INSERT_HEAD(&w->monitors, m, by_target);
	else
		LIST_INSERT_HEAD(&t->watchers, m, by_target);
	LIST_INSERT_HEAD(&c->monitors, m, by_holder);
	c->nmonitors++;
	reg->nmonitors++;
	*ref = m->ref;
	return 0;
}

bool
registry_monitor_room(const struct registry *reg, const struct reg_client *c,
    uint32_t others)
{
	return c->nmonitors + others < reg->max_monitors;
}

int
registry_monitor(struct registry *reg, struct reg_client *c, uint32_t others,
    const char *name, size_t len, uint64_t *ref, struct reg_name **target)
{
	struct reg_name *n;

	if (!registry_monitor_room(reg, c, others))
		return REG_E_LIMIT;
	n = registry_lookup(reg, name, len);
	*target = n;
	if (n == NULL) {
		/* noproc: the ref is spent, nothing is stored. */
		*ref = c->next_ref++;
		return 0;
	}
	return monitor_add(reg, c, n, NULL, ref);
}

int
registry_monitor_client(struct registry *reg, struct reg_client *c,
    uint32_t others, uint64_t id, uint64_t *ref, bool *found)
{
	struct reg_client *t;

	if (!registry_monitor_room(reg, c, others))
		return REG_E_LIMIT;
	t = registry_client_find(reg, id);
	*found = t != NULL;
	if (t == NULL) {
		*ref = c->next_ref++;
		return 0;
	}
	return monitor_add(reg, c, NULL, t, ref);
}

bool
registry_demonitor(struct registry *reg, struct reg_client *c, uint64_t ref)
{
	struct mon_key k = { c, ref };
	struct reg_monitor *m;

	m = htab_find(&reg->monitors, registry_mon_hash(c->id, ref),
	    registry_mon_eq, &k);
	if (m == NULL)
		return false;
	monitor_free(reg, m);
	return true;
}

struct reg_name *
registry_seek(struct registry *reg, const char *key, size_t len, bool strictly,
    struct reg_iter *it)
{
	/* A stack element to compare against: header plus the longest name. */
	alignas(struct reg_name) char buf[sizeof(struct reg_name) + PR_NAME_MAX];
	struct reg_name *k = (struct reg_name *)buf, *n;

	if (len > PR_NAME_MAX)
		len = PR_NAME_MAX;
	k->name_len = (uint8_t)len;
	memcpy(k->data, key, len);
	n = btree_seek(&reg->order, k, strictly, &it->at);
	reg->walked++;
	while (n != NULL && n->owner->dying) {
		n = btree_next(&it->at);
		reg->walked++;
	}
	return n;
}

struct reg_name *
registry_next(struct registry *reg, struct reg_iter *it)
{
	struct reg_name *n;

	do {
		n = btree_next(&it->at);
		reg->walked++;
	} while (n != NULL && n->owner->dying);
	return n;
}

