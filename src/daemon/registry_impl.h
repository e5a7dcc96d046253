/*
 * registry_impl.h: what the registry's files (registry.c: clients, names,
 * queues, monitors, purge; registry_group.c: groups; registry_check.c:
 * the invariant checker) share.  Not for other modules: they go through
 * registry.h.
 */
#ifndef REGISTRY_IMPL_H
#define REGISTRY_IMPL_H

#include "registry.h"

/* A name and its length, the key of the names index. */
struct name_key {
	const char	*s;
	size_t		 len;
};

/* The key of the monitors index. */
struct mon_key {
	const struct reg_client	*holder;
	uint64_t		 ref;
};

/* The hash of a monitor (holder id, ref) or of an id or uid (ref 0). */
uint64_t registry_mon_hash(uint64_t id, uint64_t ref);
bool	 registry_mon_eq(const void *item, const void *key);
/* Tell the event hook of a change (unless muted). */
void	 registry_emit(struct registry *, enum reg_ev_kind,
	    const struct reg_name *, const struct reg_member *,
	    struct reg_client *prev, enum pr_down_reason, bool acquired);
/* The entry of a name, dying owner or not (h: its registry_hash). */
struct reg_name *registry_lookup_any(const struct registry *,
	    const char *name, size_t len, uint64_t h);
/* The monitors on n, or NULL when it has none. */
struct reg_watch *registry_watch_of(const struct registry *,
	    const struct reg_name *);
/* n's queue, or NULL when nobody waits for it. */
struct reg_queue *registry_queue_of(const struct registry *,
	    const struct reg_name *);
/* The client's membership of g, or NULL. */
struct reg_member *registry_member_find(struct reg_client *,
	    struct reg_group *);
/* Unlink a membership (firing left), free it, its group once empty. */
void	 registry_member_free(struct registry *, struct reg_member *);

#endif /* REGISTRY_IMPL_H */
