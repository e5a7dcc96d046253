/*
 * htab.c: open-addressing hash table (see htab.h for the design).
 */
#include <errno.h>
#include <stdlib.h>

#include "htab.h"

#define HTAB_MIN	16

int
htab_init(struct htab *t, size_t hint)
{
	size_t cap = HTAB_MIN;

	while (cap < hint + hint / 3 && cap < ((size_t)1 << 40))
		cap <<= 1;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (t->slots == NULL)
		return -ENOMEM;
	t->mask = cap - 1;
	t->count = 0;
	return 0;
}

void
htab_deinit(struct htab *t)
{
	free(t->slots);
	t->slots = NULL;
	t->mask = 0;
	t->count = 0;
}

void *
htab_find(const struct htab *t, uint64_t hash, htab_eq_fn *eq, const void *key)
{
	size_t i = hash & t->mask;

	for (;;) {
		const struct htab_slot *s = &t->slots[i];

		if (s->item == NULL)
			return NULL;
		if (s->hash == hash && eq(s->item, key))
			return s->item;
		i = (i + 1) & t->mask;
	}
}

/* Place without growing; the caller guarantees a free slot. */
static void
htab_place(struct htab_slot *slots, size_t mask, uint64_t hash, void *item)
{
	size_t i = hash & mask;

	while (slots[i].item != NULL)
		i = (i + 1) & mask;
	slots[i].hash = hash;
	slots[i].item = item;
}

/* Double the capacity; 0 or -ENOMEM (the table is unchanged then). */
static int
htab_grow(struct htab *t)
{
	size_t ncap = (t->mask + 1) * 2;
	struct htab_slot *ns;

	ns = calloc(ncap, sizeof(*ns));
	if (ns == NULL)
		return -ENOMEM;
	for (size_t i = 0; i <= t->mask; i++) {
		if (t->slots[i].item != NULL)
			htab_place(ns, ncap - 1, t->slots[i].hash,
			    t->slots[i].item);
	}
	free(t->slots);
	t->slots = ns;
	t->mask = ncap - 1;
	return 0;
}

int
htab_insert(struct htab *t, uint64_t hash, void *item)
{
	int r;

	if ((t->count + 1) * 4 > (t->mask + 1) * 3) {
		if ((r = htab_grow(t)) < 0)
			return r;
	}
	htab_place(t->slots, t->mask, hash, item);
	t->count++;
	return 0;
}

bool
htab_remove(struct htab *t, uint64_t hash, const void *item)
{
	size_t i = hash & t->mask, j;

	for (;;) {
		if (t->slots[i].item == NULL)
			return false;
		if (t->slots[i].item == item)
			break;
		i = (i + 1) & t->mask;
	}
	/*
	 * Backward shift: pull later members of the probe run into the hole
	 * unless their home slot lies cyclically in (hole, j].
	 */
	for (j = (i + 1) & t->mask; t->slots[j].item != NULL;
	    j = (j + 1) & t->mask) {
		size_t home = t->slots[j].hash & t->mask;
		bool stays = (i <= j) ? (i < home && home <= j) :
		    (i < home || home <= j);

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
	size_t i = hash & t->mask;

	for (; t->slots[i].item != NULL; i = (i + 1) & t->mask) {
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
	if ((t->count + 1) * 4 > (t->mask + 1) * 3)
		return htab_grow(t);
	return 0;
}

void
htab_prefetch(const struct htab *t, uint64_t hash)
{
	__builtin_prefetch(&t->slots[hash & t->mask]);
}

void
htab_prefetch_item(const struct htab *t, uint64_t hash, size_t span)
{
	const struct htab_slot *s = &t->slots[hash & t->mask];

	if (s->item != NULL && s->hash == hash) {
		const char *p = s->item;

		/* The item's lines up to span bytes: what the caller's eq
		 * and its use of the item will read. */
		for (size_t off = 0; off < span; off += 64)
			__builtin_prefetch(p + off);
		__builtin_prefetch(p + span - 1);
	}
}
