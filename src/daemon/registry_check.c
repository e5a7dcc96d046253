/*
 * registry_check.c: the registry's invariant checker (see registry.h):
 * every cross-link and count, for the unit tests and the fuzz target.
 */
#include <stddef.h>

#include "registry.h"
#include "registry_impl.h"

/* Is m on its target's list? */
static bool
on_target_list(const struct registry *reg, const struct reg_monitor *m)
{
	const struct reg_monitor *x;
	const struct reg_watch *w;

	if (m->target_client != NULL) {
		LIST_FOREACH(x, &m->target_client->watchers, by_target) {
			if (x == m)
				return true;
		}
		return false;
	}
	if ((w = registry_watch_of(reg, m->target)) == NULL)
		return false;
	LIST_FOREACH(x, &w->monitors, by_target) {
		if (x == m)
			return true;
	}
	return false;
}

const char *
registry_check(struct registry *reg)
{
	struct reg_client *c;
	struct reg_name *n;
	struct reg_monitor *m;
	struct reg_member *mb;
	struct reg_waiter *w;
	struct reg_queue *q;
	uint64_t names = 0, mons = 0, tree = 0, targeted = 0, members = 0;
	uint64_t queues = 0, waiters = 0, watched = 0;
	struct btree_iter it;
	const char *why;

	LIST_FOREACH(c, &reg->clients, link) {
		uint32_t cn = 0, cm = 0, cmb = 0, cw = 0;

		if (c->dying != (c->conn == NULL))
			return "a closed client still has its connection";
		LIST_FOREACH(n, &c->names, owner_link) {
			if (n->owner != c)
				return "a name is on the list of a client "
				    "that does not own it";
			if (registry_lookup_any(reg, n->data, n->name_len,
			    registry_hash(reg, n->data, n->name_len)) != n)
				return "an owned name is missing from the index";
			cn++;
		}
		LIST_FOREACH(m, &c->monitors, by_holder) {
			struct mon_key k = { c, m->ref };

			if (m->holder != c)
				return "a monitor is on the list of a client "
				    "that does not hold it";
			if ((m->target == NULL) == (m->target_client == NULL) ||
			    !on_target_list(reg, m))
				return "a held monitor is not on its "
				    "target's list";
			if (m->ref >= c->next_ref)
				return "a monitor ref was never handed out";
			if (htab_find(&reg->monitors,
			    registry_mon_hash(c->id, m->ref), registry_mon_eq,
			    &k) != m)
				return "a monitor is missing from the ref index";
			cm++;
		}
		LIST_FOREACH(m, &c->watchers, by_target) {
			if (m->target_client != c)
				return "a monitor is on the list of a client "
				    "it does not watch";
			targeted++;
		}
		LIST_FOREACH(mb, &c->members, by_client) {
			if (mb->client != c ||
			    registry_member_find(c, mb->group) != mb ||
			    registry_group(reg, mb->group->name,
			    mb->group->name_len) != mb->group)
				return "a membership is not linked both ways";
			cmb++;
		}
		LIST_FOREACH(q, &c->queues, by_owner) {
			uint32_t qn = 0;

			if (q->name->owner != c || !(q->name->flags &
			    REG_HAS_QUEUE) || registry_queue_of(reg, q->name) != q)
				return "a queue is not linked to its name";
			TAILQ_FOREACH(w, &q->waiters, by_queue) {
				if (w->q != q || w->ready->owner == c)
					return "a waiter is in the wrong queue";
				qn++;
			}
			if (qn != q->n || qn == 0)
				return "a queue's count is wrong";
			queues++;
		}
		LIST_FOREACH(w, &c->waits, by_client) {
			if (w->ready->owner != c)
				return "a waiter is on the wrong client";
			cw++;
		}
		if (cw != c->nwaits)
			return "a client's wait count is wrong";
		waiters += cw;
		if (registry_client_find(reg, c->id) != (c->dying ? NULL : c))
			return "a client is missing from the id index";
		if (cmb != c->nmembers)
			return "a client's membership count is wrong";
		members += cmb;
		if (cn != c->nnames)
			return "a client's name count is wrong";
		if (cm != c->nmonitors)
			return "a client's monitor count is wrong";
		names += cn;
		mons += cm;
	}
	if ((why = btree_check(&reg->order)) != NULL)
		return why;
	for (n = btree_first(&reg->order, &it); n != NULL;
	    n = btree_next(&it)) {
		struct reg_watch *rw = NULL;

		if (n->owner == NULL)
			return "a name's owner is gone";
		if ((n->flags & REG_HAS_MONITORS) &&
		    (rw = registry_watch_of(reg, n)) == NULL)
			return "a watched name has no watch";
		if (rw != NULL) {
			if (LIST_EMPTY(&rw->monitors))
				return "a name's watch is empty";
			LIST_FOREACH(m, &rw->monitors, by_target) {
				if (m->target != n)
					return "a monitor is on the list of a "
					    "name it does not watch";
				targeted++;
			}
			watched++;
		}
		tree++;
	}
	if (names != reg->nnames || tree != reg->nnames ||
	    reg->names.count != reg->nnames)
		return "the name counts disagree";
	if ((why = btree_check(&reg->gorder)) != NULL)
		return why;
	if (reg->gorder.count != reg->ngroups ||
	    reg->groups.count != reg->ngroups)
		return "the group counts disagree";
	for (struct reg_group *g = btree_first(&reg->gorder, &it); g != NULL;
	    g = btree_next(&it)) {
		if (registry_group(reg, g->name, g->name_len) != g ||
		    g->nmembers == 0)
			return "a group in the ordered index is not indexed";
	}
	if (mons != reg->nmonitors || targeted != reg->nmonitors ||
	    reg->monitors.count != reg->nmonitors)
		return "the monitor counts disagree";
	if (members != reg->nmembers || reg->groups.count != reg->ngroups)
		return "the membership counts disagree";
	if (queues != reg->queues.count || waiters != reg->nwaiters)
		return "the queue counts disagree";
	if (watched != reg->watched.count)
		return "the watch counts disagree";
	return NULL;
}
