/*
 * htab.h: an open-addressing hash table of item pointers.
 *
 * Items are owned by the caller; the table stores (hash, pointer) pairs so
 * that probes and resizes never touch the items themselves, except to
 * confirm a match.  Linear probing with backward-shift deletion: no
 * tombstones, so lookups stay short after heavy churn.  The table grows by
 * half at 3/4 load and never shrinks on removal, so a mass purge never pays for a
 * rehash in the middle of it.
 */
#ifndef HTAB_H
#define HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct htab_slot {
	uint64_t	 hash;
	void		*item;		/* NULL: empty */
};

struct htab {
	struct htab_slot	*slots;
	size_t			 cap;	/* slots */
	size_t			 count;
};

typedef bool	htab_eq_fn(const void *item, const void *key);

/* Prepare an empty table; 0 or -ENOMEM. */
int	 htab_init(struct htab *, size_t capacity_hint);
/* Release the slot array (not the items). */
void	 htab_deinit(struct htab *);
/* The item with this hash for which eq(item, key) holds, or NULL. */
void	*htab_find(const struct htab *, uint64_t hash, htab_eq_fn *eq,
	    const void *key);
/* Add item (the caller has checked it is absent); 0 or -ENOMEM. */
int	 htab_insert(struct htab *, uint64_t hash, void *item);
/* Remove exactly this item pointer; false when it was not there. */
bool	 htab_remove(struct htab *, uint64_t hash, const void *item);
/* Make room for one insert that then cannot fail; 0 or -ENOMEM. */
int	 htab_reserve(struct htab *);
/* Make room for n inserts that then cannot fail; 0 or -ENOMEM. */
int	 htab_reserve_n(struct htab *, size_t n);
/* Put item where old was (same key, e.g. a moved item); false when old
 * was not there. */
bool	 htab_replace(struct htab *, uint64_t hash, const void *old,
	    void *item);
/*
 * Cache hints for a find of this hash that will come soon, so that the
 * finds of a batch wait for memory together instead of one after the
 * other: htab_prefetch fetches the home slot; htab_prefetch_item, called
 * once that slot has had time to arrive, the item it holds if the hash
 * matches.  They change nothing.
 */
void	 htab_prefetch(const struct htab *, uint64_t hash);
void	 htab_prefetch_item(const struct htab *, uint64_t hash, size_t span);

#endif /* HTAB_H */
