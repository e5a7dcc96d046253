/*
 * btree.h: an ordered index of item pointers (a B+tree).
 *
 * The registry's names in name order, for paging through list, keys and
 * snapshots.  Items sit up to BT_LEAF_MAX to a leaf, so an indexed name
 * costs ~10 bytes of leaf instead of the 32 of an intrusive red-black
 * node inside every entry.  Items are the caller's: the tree orders them
 * with its cmp (no two may compare equal) and never frees them.
 *
 * A separator is a pointer to the first item of the subtree on its right,
 * rewritten when that item leaves or is replaced, so that no separator
 * ever points at a freed item.  Leaves and inner nodes are freed when
 * they empty but not merged otherwise: the tree never holds more nodes
 * than it did at its largest.  Inserts that fill the last leaf leave it
 * full, so names registered in order pack their leaves.
 */
#ifndef BTREE_H
#define BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_LEAF_MAX	30
#define BT_INNER_MAX	30
/*
 * Inner nodes are not merged, so height is bounded by inserts, not items:
 * each level above the first takes some 30 * 15^(h-1) inserts in all.  16
 * is out of reach; btree_reserve refuses to grow past it.
 */
#define BT_HEIGHT_MAX	16

typedef int	btree_cmp_fn(const void *, const void *);

struct bt_node;
struct bt_leaf;
struct bt_inner;

struct btree {
	struct bt_node	*root;		/* NULL when empty */
	btree_cmp_fn	*cmp;
	size_t		 count;
	unsigned	 height;	/* 0 empty, 1 the root is a leaf */
	/* Nodes set aside by btree_reserve for the next insert. */
	struct bt_leaf	*spare_leaf;
	struct bt_inner	*spare_inner[BT_HEIGHT_MAX];
	unsigned	 nspare_inner;
};

/* A position between calls; valid while the tree is not changed. */
struct btree_iter {
	struct bt_leaf	*leaf;
	unsigned	 i;
};

void	 btree_init(struct btree *, btree_cmp_fn *cmp);
/* Free every node (not the items). */
void	 btree_deinit(struct btree *);
/* Make room for one insert that then cannot fail; 0 or -ENOMEM. */
int	 btree_reserve(struct btree *);
/* Add item (absent: nothing compares equal to it); 0 or -ENOMEM. */
int	 btree_insert(struct btree *, void *item);
/* Remove exactly this item; false when it is not there. */
bool	 btree_remove(struct btree *, const void *item);
/* Put item where old is (they compare equal); false when old is not
 * there.  Never allocates. */
bool	 btree_replace(struct btree *, const void *old, void *item);
/*
 * The first item not less than key (strictly: greater than key), key
 * being anything cmp accepts as its first argument, or NULL at the end.
 */
void	*btree_seek(const struct btree *, const void *key, bool strictly,
	    struct btree_iter *);
/* The first item, or NULL. */
void	*btree_first(const struct btree *, struct btree_iter *);
/* The item after the iterator's, or NULL. */
void	*btree_next(struct btree_iter *);
/* NULL when the structure is sound, else what is wrong. */
const char *btree_check(const struct btree *);

#endif /* BTREE_H */
