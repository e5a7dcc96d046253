/*
 * events.c: the commands that follow the registry's changes: watch (a
 * subscription) and monitor (one registration or connection).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/*
 * One watch line: SEQ KIND, then NAME (or GROUP, may be NULL) and the
 * fields of an entry e or a member m (may be NULL), or reason=R.  false
 * when the output cannot be written.
 */
static bool
events_line(uint64_t seq, const char *kind, const char *name,
    const struct procreg_entry *e, const struct procreg_member *m,
    const char *reason)
{
	char *n = NULL, *value = NULL;
	bool ok;

	if (name != NULL && (n = out_safe_text(name)) == NULL)
		return false;
	if (e != NULL)
		value = value_text(e->value, e->value_len);
	else if (m != NULL)
		value = value_text(m->value, m->value_len);
	printf("%" PRIu64 " %s", seq, kind);
	if (n != NULL)
		printf(" %s", n);
	if (e != NULL)
		printf(" conn=%" PRIu64 " pid=%" PRId64 " gen=%" PRIu64
		    " value=%s", e->conn, e->pid, e->gen, value ? value : "?");
	if (e != NULL && e->node != NULL) {
		char *node = out_safe_text(e->node);

		printf(" node=%s", node != NULL ? node : "?");
		free(node);
	}
	else if (m != NULL)
		printf(" conn=%" PRIu64 " pid=%" PRId64 " gen=%" PRIu64
		    " value=%s", m->conn, m->pid, m->gen, value ? value : "?");
	if (reason != NULL)
		printf(" reason=%s", reason);
	ok = putchar('\n') != EOF && fflush(stdout) == 0;
	free(n);
	free(value);
	return ok;
}

/* A watch line with --json: {"seq": SEQ, "kind": KIND, "payload": j}. */
static bool
events_json(uint64_t seq, const char *kind, json_t *payload)
{
	return out_json(json_pack("{s:I, s:s, s:o?}", "seq", (json_int_t)seq,
	    "kind", kind, "payload", payload), 0);
}

/*
 * Subscribe (again, after an overflow, with since) and print what the
 * result shows: the snapshot, after a gap marker when since was given,
 * or after a restarted marker when a new daemon replaced the one the
 * lines so far came from (restarted).  The markers carry the new
 * subscription's seq, so that the last SEQ printed is always one for
 * --since.  An exit status, or -1 to go on.
 */
static int
events_subscribe(struct waiter *w, bool restarted)
{
	struct ctl *c = w->c;
	struct procreg_subscription s;
	bool ok = true;
	int r;

	r = procreg_subscribe(c->p, c->nargs ? c->args[0] : "", &w->sopts,
	    &s);
	if (r != PROCREG_OK)
		return out_report(c, r, NULL);
	w->sub = s.sub;
	if (restarted) {
		if (c->json)
			ok = out_json(json_pack("{s:I, s:s}", "seq",
			    (json_int_t)s.seq, "kind", "restarted"), 0);
		else
			ok = printf("%" PRIu64 " restarted\n", s.seq) > 0 &&
			    fflush(stdout) == 0;
	} else if (s.gap) {
		if (c->json)
			ok = out_json(json_pack("{s:I, s:s, s:I}", "seq",
			    (json_int_t)s.seq, "kind", "gap", "since",
			    (json_int_t)w->sopts.since), 0);
		else
			ok = printf("%" PRIu64 " gap since=%" PRIu64 "\n",
			    s.seq, w->sopts.since) > 0 && fflush(stdout) == 0;
	}
	for (size_t i = 0; ok && i < s.nentries; i++)
		ok = c->json ? events_json(s.seq, "entry",
		    out_entry_json(s.entries[i])) : events_line(s.seq, "entry",
		    s.entries[i]->name, s.entries[i], NULL, NULL);
	for (size_t i = 0; ok && i < s.nmembers; i++)
		ok = c->json ? events_json(s.seq, "member",
		    out_member_json(s.members[i])) : events_line(s.seq,
		    "member", s.members[i]->group, NULL, s.members[i], NULL);
	procreg_subscription_free(&s);
	return ok ? -1 : EXIT_ERROR;
}

/*
 * watch: print a change.  After an overflow (we fell behind, or the
 * connection to the same daemon was lost and is back) resume where it
 * stopped; after a restart (a new daemon, whose seqs start anew, and
 * whose names are not the old one's) subscribe afresh, the marker first.
 */
static void
events_change(struct waiter *w, const struct procreg_event *ev)
{
	struct ctl *c = w->c;
	bool ok;
	int r;

	if (w->done || ev->sub != w->sub)
		return;
	if (ev->kind == PROCREG_EV_OVERFLOW) {
		if (w->reconnected && c->cluster)
			fprintf(stderr, "procregctl: the daemon is back: "
			    "resuming after revision %" PRIu64 "\n", ev->seq);
		else if (w->reconnected)
			fprintf(stderr, "procregctl: the same daemon: "
			    "resuming after event %" PRIu64 "\n", ev->seq);
		else
			fprintf(stderr, "procregctl: watch fell behind after "
			    "event %" PRIu64 "; resuming\n", ev->seq);
		w->reconnected = false;
		w->sopts.has_since = true;
		w->sopts.since = ev->seq;
		if ((r = events_subscribe(w, false)) >= 0) {
			w->done = true;
			w->exit = r;
		}
		return;
	}
	if (ev->kind == PROCREG_EV_RESTARTED) {
		fprintf(stderr, "procregctl: a new daemon: the names so far "
		    "are gone; a new snapshot follows\n");
		w->sopts.has_since = false;
		w->reconnected = false;
		if ((r = events_subscribe(w, true)) >= 0) {
			w->done = true;
			w->exit = r;
		}
		return;
	}
	if (ev->kind != PROCREG_EV_SUBSCRIPTION)
		return;
	/* Entries and members as the snapshot prints them: a value that
	 * cannot be a JSON number must not turn the payload into a str. */
	if (c->json && ev->entry != NULL)
		ok = events_json(ev->seq, ev->change_name,
		    out_entry_json(ev->entry));
	else if (c->json && ev->member != NULL)
		ok = events_json(ev->seq, ev->change_name,
		    out_member_json(ev->member));
	else if (c->json)
		ok = events_json(ev->seq, ev->change_name,
		    value_json(ev->payload, ev->payload_len));
	else
		ok = events_line(ev->seq, ev->change_name, ev->name,
		    ev->entry, ev->member, ev->change ==
		    PROCREG_CH_UNREGISTERED ? ev->reason : NULL);
	if (!ok) {
		w->done = true;
		w->exit = EXIT_ERROR;
	}
}

/* watch [PREFIX]: the snapshot, then every change, as they happen. */
int
events_watch(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct procreg_callbacks cb = { NULL, wait_reconnected };
	struct waiter w = { .c = c, .on_signal = wait_stop,
	    .on_event = events_change, .name = c->nargs ? c->args[0] : "",
	    .connected = true };
	int r;

	procreg_set_callbacks(c->p, &cb, &w);
	w.sopts.groups = c->groups;
	w.sopts.has_since = c->has_since;
	w.sopts.since = c->since;
	w.sopts.scope = c->cluster ? PROCREG_SCOPE_CLUSTER :
	    PROCREG_SCOPE_DEFAULT;
	if ((w.sigfd = wait_signals(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0)
		return EXIT_ERROR;
	if ((r = events_subscribe(&w, false)) < 0)
		r = wait_loop(&w);
	close(w.sigfd);
	return r;
}

/* monitor: our down came; print its reason. */
static void
events_down(struct waiter *w, const struct procreg_event *ev)
{
	bool ok;

	if (w->done || ev->kind != PROCREG_EV_DOWN || ev->ref != w->ref)
		return;
	if (w->c->json && ev->name == NULL)
		ok = out_json(json_pack("{s:I, s:s}", "conn",
		    (json_int_t)ev->target_conn, "reason", ev->reason), 0);
	else if (w->c->json)
		ok = out_json(json_pack("{s:s, s:s}", "name", ev->name,
		    "reason", ev->reason), 0);
	else
		ok = printf("%s\n", ev->reason) > 0 && fflush(stdout) == 0;
	w->done = true;
	w->exit = !ok ? EXIT_ERROR : strcmp(ev->reason, "noproc") == 0 ?
	    EXIT_NO : EXIT_SUCCESS;
}

/* monitor NAME: wait for the registration of NAME to end. */
int
events_monitor(struct ctl *c)
{
	struct waiter w = { .c = c, .sigfd = -1, .on_event = events_down,
	    .name = c->args[0] };
	uint64_t conn = 0;
	int r;

	if (!msg_target(c, w.name, &conn))
		return EXIT_USAGE;
	r = c->conn ? procreg_monitor_conn(c->p, conn, &w.ref) :
	    procreg_monitor(c->p, w.name, &w.ref);
	if (r != PROCREG_OK)
		return out_report(c, r, w.name);
	return wait_loop(&w);
}
