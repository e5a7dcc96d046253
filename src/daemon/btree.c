/*
 * btree.c: the ordered index (see btree.h for the design).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "btree.h"

struct bt_node {
	uint16_t	 n;	/* items (leaf) or children (inner) */
	bool		 leaf;
};

struct bt_leaf {
	struct bt_node	 h;
	struct bt_leaf	*prev;
	struct bt_leaf	*next;
	void		*item[BT_LEAF_MAX];
};

struct bt_inner {
	struct bt_node	 h;
	/* key[i] (i >= 1): the first item under child[i].  key[0] unused. */
	void		*key[BT_INNER_MAX];
	struct bt_node	*child[BT_INNER_MAX];
};

/* The way down to a leaf: each inner node passed and the child taken. */
struct bt_path {
	struct bt_inner	*node[BT_HEIGHT_MAX];
	unsigned	 ci[BT_HEIGHT_MAX];
	unsigned	 depth;		/* inner nodes passed */
};

static struct bt_leaf *
as_leaf(struct bt_node *n)
{
	return (struct bt_leaf *)(void *)n;
}

static struct bt_inner *
as_inner(struct bt_node *n)
{
	return (struct bt_inner *)(void *)n;
}

void
btree_init(struct btree *t, btree_cmp_fn *cmp)
{
	memset(t, 0, sizeof(*t));
	t->cmp = cmp;
}

static void
free_node(struct bt_node *n)
{
	if (!n->leaf) {
		struct bt_inner *in = as_inner(n);

		for (unsigned i = 0; i < in->h.n; i++)
			free_node(in->child[i]);
	}
	free(n);
}

void
btree_deinit(struct btree *t)
{
	if (t->root != NULL)
		free_node(t->root);
	free(t->spare_leaf);
	while (t->nspare_inner > 0)
		free(t->spare_inner[--t->nspare_inner]);
	btree_init(t, t->cmp);
}

int
btree_reserve(struct btree *t)
{
	/* A split may climb to a new root: an inner node per level. */
	if (t->height + 1 >= BT_HEIGHT_MAX)
		return -ENOMEM;
	if (t->spare_leaf == NULL &&
	    (t->spare_leaf = malloc(sizeof(*t->spare_leaf))) == NULL)
		return -ENOMEM;
	while (t->nspare_inner < t->height) {
		struct bt_inner *in = malloc(sizeof(*in));

		if (in == NULL)
			return -ENOMEM;
		t->spare_inner[t->nspare_inner++] = in;
	}
	return 0;
}

static struct bt_leaf *
take_leaf(struct btree *t)
{
	struct bt_leaf *l = t->spare_leaf;

	t->spare_leaf = NULL;
	l->h.leaf = true;
	l->h.n = 0;
	l->prev = l->next = NULL;
	return l;
}

static struct bt_inner *
take_inner(struct btree *t)
{
	struct bt_inner *in = t->spare_inner[--t->nspare_inner];

	in->h.leaf = false;
	in->h.n = 0;
	in->key[0] = NULL;
	return in;
}

/* The child of in whose range holds x: the last i with i == 0 or
 * key[i] <= x. */
static unsigned
inner_slot(const struct btree *t, const struct bt_inner *in, const void *x)
{
	unsigned lo = 1, hi = in->h.n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (t->cmp(x, in->key[mid]) < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo - 1;
}

/* The first index whose item is not less than x (strictly: greater). */
static unsigned
leaf_slot(const struct btree *t, const struct bt_leaf *l, const void *x,
    bool strictly)
{
	unsigned lo = 0, hi = l->h.n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = t->cmp(x, l->item[mid]);

		if (c > 0 || (strictly && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct bt_leaf *
descend(const struct btree *t, const void *x, struct bt_path *p)
{
	struct bt_node *n = t->root;

	p->depth = 0;
	while (!n->leaf) {
		struct bt_inner *in = as_inner(n);
		unsigned ci = inner_slot(t, in, x);

		p->node[p->depth] = in;
		p->ci[p->depth] = ci;
		p->depth++;
		n = in->child[ci];
	}
	return as_leaf(n);
}

/*
 * The first item under the node below level `from` of the path is now
 * first.  The one separator naming it sits at the lowest level above
 * where the way turned right; there is none on the leftmost way.
 */
static void
fix_first(struct bt_path *p, unsigned from, void *first)
{
	for (unsigned d = from; d-- > 0;) {
		if (p->ci[d] > 0) {
			p->node[d]->key[p->ci[d]] = first;
			return;
		}
	}
}

static void
inner_put(struct bt_inner *in, unsigned at, void *sep, struct bt_node *child)
{
	unsigned n = in->h.n;

	memmove(&in->key[at + 1], &in->key[at], (n - at) * sizeof(void *));
	memmove(&in->child[at + 1], &in->child[at],
	    (n - at) * sizeof(struct bt_node *));
	in->key[at] = sep;
	in->child[at] = child;
	in->h.n++;
}

static void
leaf_put(struct bt_leaf *l, unsigned at, void *item)
{
	memmove(&l->item[at + 1], &l->item[at], (l->h.n - at) * sizeof(void *));
	l->item[at] = item;
	l->h.n++;
}

/* right, first item sep, now follows the path's bottom node: give it a
 * place in the parent, splitting full nodes up to a new root. */
static void
split_up(struct btree *t, struct bt_path *p, struct bt_node *left, void *sep,
    struct bt_node *right)
{
	struct bt_inner *root;

	for (unsigned d = p->depth; d-- > 0;) {
		struct bt_inner *in = p->node[d], *r;
		unsigned at = p->ci[d] + 1, half = BT_INNER_MAX / 2;

		if (in->h.n < BT_INNER_MAX) {
			inner_put(in, at, sep, right);
			return;
		}
		r = take_inner(t);
		r->h.n = (uint16_t)(BT_INNER_MAX - half);
		memcpy(r->key, &in->key[half], r->h.n * sizeof(void *));
		memcpy(r->child, &in->child[half],
		    r->h.n * sizeof(struct bt_node *));
		in->h.n = (uint16_t)half;
		if (at <= half)
			inner_put(in, at, sep, right);
		else
			inner_put(r, at - half, sep, right);
		/* r's key[0], unused inside r, is its separator above. */
		sep = r->key[0];
		left = &in->h;
		right = &r->h;
	}
	root = take_inner(t);
	root->h.n = 2;
	root->child[0] = left;
	root->child[1] = right;
	root->key[1] = sep;
	t->root = &root->h;
	t->height++;
}

int
btree_insert(struct btree *t, void *item)
{
	struct bt_path p;
	struct bt_leaf *l, *r;
	unsigned pos, half = BT_LEAF_MAX / 2;
	int rc;

	if ((rc = btree_reserve(t)) < 0)
		return rc;
	t->count++;
	if (t->root == NULL) {
		l = take_leaf(t);
		leaf_put(l, 0, item);
		t->root = &l->h;
		t->height = 1;
		return 0;
	}
	l = descend(t, item, &p);
	pos = leaf_slot(t, l, item, false);
	/* pos is 0 only in the leftmost leaf: no separator names it. */
	if (l->h.n < BT_LEAF_MAX) {
		leaf_put(l, pos, item);
		return 0;
	}
	r = take_leaf(t);
	if (pos == BT_LEAF_MAX && l->next == NULL) {
		/* Appending past the last item: l stays full. */
		leaf_put(r, 0, item);
	} else {
		r->h.n = (uint16_t)(BT_LEAF_MAX - half);
		memcpy(r->item, &l->item[half], r->h.n * sizeof(void *));
		l->h.n = (uint16_t)half;
		if (pos <= half)
			leaf_put(l, pos, item);
		else
			leaf_put(r, pos - half, item);
	}
	r->prev = l;
	r->next = l->next;
	if (l->next != NULL)
		l->next->prev = r;
	l->next = r;
	split_up(t, &p, &l->h, r->item[0], &r->h);
	return 0;
}

/* A root with one child hands over to it. */
static void
collapse(struct btree *t)
{
	while (!t->root->leaf && t->root->n == 1) {
		struct bt_inner *in = as_inner(t->root);

		t->root = in->child[0];
		free(in);
		t->height--;
	}
}

/* The path's bottom node was freed: take it out of its parent, and the
 * parent out of its own when it empties, and so on. */
static void
drop_child(struct btree *t, struct bt_path *p)
{
	while (p->depth > 0) {
		unsigned d = p->depth - 1, ci = p->ci[d];
		struct bt_inner *in = p->node[d];
		unsigned n = in->h.n;

		if (n > 1) {
			void *first = in->key[1];

			memmove(&in->key[ci], &in->key[ci + 1],
			    (n - ci - 1) * sizeof(void *));
			memmove(&in->child[ci], &in->child[ci + 1],
			    (n - ci - 1) * sizeof(struct bt_node *));
			in->h.n--;
			if (ci == 0)
				fix_first(p, d, first);
			collapse(t);
			return;
		}
		free(in);
		p->depth--;
	}
	t->root = NULL;
	t->height = 0;
}

/* The leaf and index of exactly this item, with the way down; NULL when
 * it is not there. */
static struct bt_leaf *
find(const struct btree *t, const void *item, struct bt_path *p,
    unsigned *pos)
{
	struct bt_leaf *l;

	if (t->root == NULL)
		return NULL;
	l = descend(t, item, p);
	*pos = leaf_slot(t, l, item, false);
	return *pos < l->h.n && l->item[*pos] == item ? l : NULL;
}

bool
btree_remove(struct btree *t, const void *item)
{
	struct bt_path p;
	struct bt_leaf *l;
	unsigned pos;

	if ((l = find(t, item, &p, &pos)) == NULL)
		return false;
	memmove(&l->item[pos], &l->item[pos + 1],
	    (l->h.n - pos - 1) * sizeof(void *));
	l->h.n--;
	t->count--;
	if (l->h.n > 0) {
		if (pos == 0)
			fix_first(&p, p.depth, l->item[0]);
		return true;
	}
	if (l->prev != NULL)
		l->prev->next = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	free(l);
	drop_child(t, &p);
	return true;
}

bool
btree_replace(struct btree *t, const void *old, void *item)
{
	struct bt_path p;
	struct bt_leaf *l;
	unsigned pos;

	if ((l = find(t, old, &p, &pos)) == NULL)
		return false;
	l->item[pos] = item;
	if (pos == 0)
		fix_first(&p, p.depth, item);
	return true;
}

/* Past a leaf's end: on to the next leaf (none is empty). */
static void *
settle(struct btree_iter *it)
{
	if (it->leaf != NULL && it->i >= it->leaf->h.n) {
		it->leaf = it->leaf->next;
		it->i = 0;
	}
	return it->leaf != NULL ? it->leaf->item[it->i] : NULL;
}

void *
btree_seek(const struct btree *t, const void *key, bool strictly,
    struct btree_iter *it)
{
	struct bt_path p;

	it->leaf = NULL;
	it->i = 0;
	if (t->root == NULL)
		return NULL;
	it->leaf = descend(t, key, &p);
	it->i = leaf_slot(t, it->leaf, key, strictly);
	return settle(it);
}

void *
btree_first(const struct btree *t, struct btree_iter *it)
{
	struct bt_node *n = t->root;

	it->leaf = NULL;
	it->i = 0;
	if (n == NULL)
		return NULL;
	while (!n->leaf)
		n = as_inner(n)->child[0];
	it->leaf = as_leaf(n);
	return settle(it);
}

void *
btree_next(struct btree_iter *it)
{
	if (it->leaf == NULL)
		return NULL;
	it->i++;
	return settle(it);
}

struct check {
	const struct btree	*t;
	const struct bt_leaf	*prev;
	size_t			 count;
};

/* Check the subtree at n, depth levels below the root; *first gets its
 * first item. */
static const char *
check_node(struct check *k, const struct bt_node *n, unsigned depth,
    void **first)
{
	const char *why;

	if (n->leaf) {
		const struct bt_leaf *l = (const struct bt_leaf *)(const void *)n;

		if (depth + 1 != k->t->height)
			return "the leaves are not all at one depth";
		if (l->h.n == 0 || l->h.n > BT_LEAF_MAX)
			return "a leaf holds no item or too many";
		if (l->prev != k->prev || (k->prev != NULL && k->prev->next != l))
			return "the leaf chain is broken";
		if (k->prev != NULL && k->t->cmp(k->prev->item[k->prev->h.n - 1],
		    l->item[0]) >= 0)
			return "two leaves are out of order";
		for (unsigned i = 1; i < l->h.n; i++) {
			if (k->t->cmp(l->item[i - 1], l->item[i]) >= 0)
				return "a leaf is out of order";
		}
		k->prev = l;
		k->count += l->h.n;
		*first = l->item[0];
		return NULL;
	} else {
		const struct bt_inner *in =
		    (const struct bt_inner *)(const void *)n;

		if (in->h.n == 0 || in->h.n > BT_INNER_MAX ||
		    (depth == 0 && in->h.n < 2))
			return "an inner node has too few or too many children";
		for (unsigned i = 0; i < in->h.n; i++) {
			void *f;

			if ((why = check_node(k, in->child[i], depth + 1, &f)) !=
			    NULL)
				return why;
			if (i == 0)
				*first = f;
			else if (in->key[i] != f)
				return "a separator is not the first item on "
				    "its right";
		}
		return NULL;
	}
}

const char *
btree_check(const struct btree *t)
{
	struct check k = { t, NULL, 0 };
	const char *why;
	void *first;

	if (t->root == NULL)
		return t->count == 0 && t->height == 0 ? NULL :
		    "an empty tree has items or height";
	if ((why = check_node(&k, t->root, 0, &first)) != NULL)
		return why;
	if (k.prev->next != NULL)
		return "the last leaf has a next";
	if (k.count != t->count)
		return "the item count is wrong";
	return NULL;
}
