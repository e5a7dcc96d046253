/*
 * htab.c: open-addressing hash table (see htab.h for the design).
 */
#include <errno.h>
#include <stdlib.h>

#include "htab.h"

#define HTAB_MIN	16

/*
 * A slot's home: the hash scaled to the capacity (Lemire's multiply-shift
 * instead of a mask), so that capacities need not be powers of two and
 * the table grows by half instead of doubling: a million names then cost
 * ~22 bytes of slots each instead of ~34.
 */
static inline size_t
home(uint64_t hash, size_t cap)
{
#ifdef __SIZEOF_INT128__
	return (size_t)(((unsigned __int128)hash * cap) >> 64);
#else
	return (size_t)(hash % cap);
#endif
}

static inline size_t
next(size_t i, size_t cap)
{
	return i + 1 == cap ? 0 : i + 1;
}

/* Room for count + 1 items at 3/4 load? */
static inline bool
full(size_t count, size_t cap)
{
	return (count + 1) * 4 > cap * 3;
}

int
htab_init(struct htab *t, size_t hint)
{
	size_t cap = HTAB_MIN;

	while (full(hint, cap) && cap < ((size_t)1 << 40))
		cap += cap / 2;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (t->slots == NULL)
		return -ENOMEM;
	t->cap = cap;
	t->count = 0;
	return 0;
}

void
htab_deinit(struct htab *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = 0;
	t->count = 0;
}

void *
htab_find(const struct htab *t, uint64_t hash, htab_eq_fn *eq, const void *key)
{
	size_t i = home(hash, t->cap);

	for (;;) {
		const struct htab_slot *s = &t->slots[i];

		if (s->item == NULL)
			return NULL;
		if (s->hash == hash && eq(s->item, key))
			return s->item;
		i = next(i, t->cap);
	}
}

/* Place without growing; the caller guarantees a free slot. */
static void
htab_place(struct htab_slot *slots, size_t cap, uint64_t hash, void *item)
{
	size_t i = home(hash, cap);

	while (slots[i].item != NULL)
		i = next(i, cap);
	slots[i].hash = hash;
	slots[i].item = item;
}

/* Grow by half; 0 or -ENOMEM (the table is unchanged then). */
static int
htab_grow(struct htab *t)
{
	size_t ncap = t->cap + t->cap / 2;
	struct htab_slot *ns;

	ns = calloc(ncap, sizeof(*ns));
	if (ns == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slots[i].item != NULL)
			htab_place(ns, ncap, t->slots[i].hash,
			    t->slots[i].item);
	}
	free(t->slots);
	t->slots = ns;
	t->cap = ncap;
	return 0;
}

int
htab_insert(struct htab *t, uint64_t hash, void *item)
{
	int r;

	if (full(t->count, t->cap)) {
		if ((r = htab_grow(t)) < 0)
			return r;
	}
	htab_place(t->slots, t->cap, hash, item);
	t->count++;
	return 0;
}

bool
htab_remove(struct htab *t, uint64_t hash, const void *item)
{
	size_t i = home(hash, t->cap), j;

	for (;;) {
		if (t->slots[i].item == NULL)
			return false;
		if (t->slots[i].item == item)
			break;
		i = next(i, t->cap);
	}
	/*
	 * Backward shift: pull later members of the probe run into the hole
	 * unless their home slot lies cyclically in (hole, j].
	 */
	for (j = next(i, t->cap); t->slots[j].item != NULL;
	    j = next(j, t->cap)) {
		size_t h = home(t->slots[j].hash, t->cap);
		bool stays = (i <= j) ? (i < h && h <= j) :
		    (i < h || h <= j);

		if (!stays) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].item = NULL;
	t->slots[i].hash = 0;
	t->count--;
	return true;
}

bool
htab_replace(struct htab *t, uint64_t hash, const void *old, void *item)
{
	size_t i = home(hash, t->cap);

	for (; t->slots[i].item != NULL; i = next(i, t->cap)) {
		if (t->slots[i].item == old) {
			t->slots[i].item = item;
			return true;
		}
	}
	return false;
}

int
htab_reserve(struct htab *t)
{
	if (full(t->count, t->cap))
		return htab_grow(t);
	return 0;
}

int
htab_reserve_n(struct htab *t, size_t n)
{
	int r;

	while (n > 0 && full(t->count + n - 1, t->cap)) {
		if ((r = htab_grow(t)) < 0)
			return r;
	}
	return 0;
}

void
htab_prefetch(const struct htab *t, uint64_t hash)
{
	__builtin_prefetch(&t->slots[home(hash, t->cap)]);
}

void
htab_prefetch_item(const struct htab *t, uint64_t hash, size_t span)
{
	const struct htab_slot *s = &t->slots[home(hash, t->cap)];

	if (s->item != NULL && s->hash == hash) {
		const char *p = s->item;

		/* The item's lines up to span bytes: what the caller's eq
		 * and its use of the item will read. */
		for (size_t off = 0; off < span; off += 64)
			__builtin_prefetch(p + off);
		__builtin_prefetch(p + span - 1);
	}
}
