/*
 * registry_group.c: groups, names many clients hold at once, each member
 * with a value of its own (see registry.h).  A group exists while it has
 * members; it is in the groups index and the groups' ordered index.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "registry_impl.h"

static bool
group_eq(const void *item, const void *key)
{
	const struct reg_group *g = item;
	const struct name_key *k = key;

	return g->name_len == k->len && memcmp(g->name, k->s, k->len) == 0;
}

/* Unlink a membership, free it, and its group once empty. */
void
registry_member_free(struct registry *reg, struct reg_member *mb)
{
	struct reg_group *g = mb->group;

	registry_emit(reg, REG_EV_LEFT, NULL, mb, NULL, PR_DOWN_UNREGISTERED,
	    false);
	TAILQ_REMOVE(&g->members, mb, by_group);
	LIST_REMOVE(mb, by_client);
	mb->client->nmembers--;
	reg->nmembers--;
	free(mb);
	if (--g->nmembers == 0) {
		htab_remove(&reg->groups, registry_hash(reg, g->name,
		    g->name_len), g);
		(void)btree_remove(&reg->gorder, g);
		reg->ngroups--;
		free(g);
	}
}

struct reg_group *
registry_group_seek(struct registry *reg, const char *key, size_t len,
    struct reg_iter *it)
{
	alignas(struct reg_group) char buf[sizeof(struct reg_group) +
	    PR_NAME_MAX];
	struct reg_group *k = (struct reg_group *)buf;

	if (len > PR_NAME_MAX)
		len = PR_NAME_MAX;
	k->name_len = (uint8_t)len;
	memcpy(k->name, key, len);
	reg->walked++;
	return btree_seek(&reg->gorder, k, false, &it->at);
}

struct reg_group *
registry_group_next(struct registry *reg, struct reg_iter *it)
{
	reg->walked++;
	return btree_next(&it->at);
}

struct reg_group *
registry_group(const struct registry *reg, const char *group, size_t len)
{
	struct name_key k = { group, len };

	return htab_find(&reg->groups, registry_hash(reg, group, len), group_eq,
	    &k);
}

/* The client's membership of g, or NULL: walks the shorter list. */
struct reg_member *
registry_member_find(struct reg_client *c, struct reg_group *g)
{
	struct reg_member *mb;

	if (g->nmembers < c->nmembers) {
		TAILQ_FOREACH(mb, &g->members, by_group) {
			if (mb->client == c)
				return mb;
		}
		return NULL;
	}
	LIST_FOREACH(mb, &c->members, by_client) {
		if (mb->group == g)
			return mb;
	}
	return NULL;
}

int
registry_join(struct registry *reg, struct reg_client *c, const char *group,
    size_t len, const void *value, size_t vlen, uint64_t now_ms,
    struct reg_member **out)
{
	struct reg_group *g = registry_group(reg, group, len);
	struct reg_member *mb;

	if (g != NULL && registry_member_find(c, g) != NULL)
		return REG_E_TAKEN;
	if (c->nmembers >= reg->max_names)
		return REG_E_LIMIT;
	if (vlen > UINT32_MAX || len > PR_NAME_MAX)
		return REG_E_TOO_LARGE;
	if ((mb = malloc(sizeof(*mb) + vlen)) == NULL)
		return -ENOMEM;
	if (g == NULL) {
		if ((g = malloc(sizeof(*g) + len)) == NULL) {
			free(mb);
			return -ENOMEM;
		}
		TAILQ_INIT(&g->members);
		g->nmembers = 0;
		g->name_len = (uint8_t)len;
		memcpy(g->name, group, len);
		/* Reserved first: the insert after the hash's cannot fail. */
		if (btree_reserve(&reg->gorder) < 0 ||
		    htab_insert(&reg->groups, registry_hash(reg, group, len),
		    g) < 0) {
			free(g);
			free(mb);
			return -ENOMEM;
		}
		(void)btree_insert(&reg->gorder, g);
		reg->ngroups++;
	}
	mb->group = g;
	mb->client = c;
	mb->since_ms = now_ms;
	mb->gen = ++reg->gen;
	mb->value_len = (uint32_t)vlen;
	if (vlen > 0)
		memcpy(mb->value, value, vlen);
	TAILQ_INSERT_TAIL(&g->members, mb, by_group);
	LIST_INSERT_HEAD(&c->members, mb, by_client);
	g->nmembers++;
	c->nmembers++;
	reg->nmembers++;
	*out = mb;
	registry_emit(reg, REG_EV_JOINED, NULL, mb, NULL, PR_DOWN_UNREGISTERED,
	    false);
	return 0;
}

int
registry_leave(struct registry *reg, struct reg_client *c, const char *group,
    size_t len)
{
	struct reg_group *g = registry_group(reg, group, len);
	struct reg_member *mb;

	if (g == NULL || (mb = registry_member_find(c, g)) == NULL)
		return REG_E_NOT_FOUND;
	registry_member_free(reg, mb);
	return 0;
}

