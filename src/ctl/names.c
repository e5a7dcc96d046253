/*
 * names.c: the commands about names: whereis, await, list, keys, queue,
 * and the cluster's nodes; and registering a name for hold, serve and
 * recv.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "procreg-protocol.h"

/* whereis NAME: print the entry, or exit 1. */
int
names_whereis(struct ctl *c)
{
	struct procreg_whereis_opts o = { .scope = c->cluster ?
	    PROCREG_SCOPE_CLUSTER : c->local ? PROCREG_SCOPE_LOCAL :
	    PROCREG_SCOPE_DEFAULT, .consistent = c->consistent };
	struct procreg_entry *e;
	const char *name = c->args[0];
	int r;

	if (!args_check_name(c, name))
		return EXIT_USAGE;
	if (c->cluster && c->local)
		return args_error(c, "--local and --cluster: one or the other "
		    "(neither: the local name, else the cluster's)");
	if ((r = procreg_whereis_opts(c->p, name, &o, &e)) != PROCREG_OK)
		return out_report(c, r, name);
	if (e == NULL) {
		return out_error(c, EXIT_NO, "not_found", NULL, "%s: not "
		    "registered%s", name, c->cluster ? " in the cluster" :
		    c->local ? " on this daemon" : "");
	}
	r = (c->json ? out_json(out_entry_json(e), 0) : out_entry(e)) ?
	    EXIT_SUCCESS : EXIT_ERROR;
	procreg_entry_free(e);
	return r;
}

/* list [PREFIX]: a table, or a JSON array of entries; with --cluster or
 * --all a NODE column after NAME. */
int
names_list(struct ctl *c)
{
	struct procreg_list_opts o = { .scope = c->all ? PROCREG_SCOPE_ALL :
	    c->cluster ? PROCREG_SCOPE_CLUSTER : PROCREG_SCOPE_DEFAULT };
	struct procreg_entry **v;
	struct out_row *rows;
	size_t n, kept = 0, tty = out_tty_width();
	size_t ncols = o.scope != PROCREG_SCOPE_DEFAULT ? 7 : 6, k0;
	bool ok = true;
	int r;

	if (c->all && c->cluster)
		return args_error(c, "--all and --cluster: one or the other "
		    "(--all lists the cluster's names too)");
	if ((r = procreg_list_opts(c->p, c->nargs ? c->args[0] : NULL, &o, &v,
	    &n)) != PROCREG_OK)
		return out_report(c, r, NULL);
	/* --pid, --uid: the daemon lists by prefix only; the rest is ours. */
	for (size_t i = 0; i < n; i++) {
		if ((c->pid > 0 && v[i]->pid != c->pid) ||
		    (c->uid >= 0 && v[i]->uid != c->uid))
			procreg_entry_free(v[i]);
		else
			v[kept++] = v[i];
	}
	n = kept;
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a,
			    out_entry_json(v[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = out_json(a, 0);
		procreg_entries_free(v, n);
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL) {
		procreg_entries_free(v, n);
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	/* Columns from k0 on are the same with or without NODE. */
	k0 = ncols - 5;
	rows[0].col[0] = strdup("NAME");
	if (ncols == 7)
		rows[0].col[1] = strdup("NODE");
	rows[0].col[k0] = strdup("CONN");
	rows[0].col[k0 + 1] = strdup("PID");
	rows[0].col[k0 + 2] = strdup("UID");
	rows[0].col[k0 + 3] = strdup("VALUE");
	rows[0].col[k0 + 4] = strdup("AGE");
	for (size_t i = 0; i < n; i++) {
		struct out_row *w = &rows[i + 1];
		char num[32], age[32];

		w->col[0] = out_safe_text(v[i]->name);
		if (ncols == 7)
			w->col[1] = out_safe_text(v[i]->node != NULL ?
			    v[i]->node : "-");
		snprintf(num, sizeof(num), "%" PRIu64, v[i]->conn);
		w->col[k0] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->pid);
		w->col[k0 + 1] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->uid);
		w->col[k0 + 2] = strdup(num);
		w->col[k0 + 3] = tty ? value_cell(v[i]->value,
		    v[i]->value_len) : value_text(v[i]->value,
		    v[i]->value_len);
		out_fmt_since_age(age, sizeof(age), v[i]->since_ms);
		w->col[k0 + 4] = strdup(age);
	}
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < ncols; k++)
			ok = ok && rows[i].col[k] != NULL;
	if (ok)
		out_table(rows, n + 1, ncols, tty);
	else
		fprintf(stderr, "procregctl: out of memory\n");
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < ncols; k++)
			free(rows[i].col[k]);
	free(rows);
	procreg_entries_free(v, n);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* Print a list of names under a heading, one per line, indented. */
static bool
names_print_list(const char *heading, char **v, size_t n)
{
	bool ok = printf("%s:\n", heading) > 0;

	for (size_t i = 0; i < n && ok; i++) {
		char *t = out_safe_text(v[i]);

		ok = t != NULL && printf("  %s\n", t) > 0;
		free(t);
	}
	return ok;
}

/* A vector of strings as a JSON array, or NULL. */
static json_t *
names_strv_json(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n && a != NULL; i++) {
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			a = NULL;
		}
	}
	return a;
}

/* keys CONN: the names and groups of a connection. */
int
names_keys(struct ctl *c)
{
	char **names, **groups;
	size_t nn, ng;
	uint64_t conn;
	bool ok;
	int r;

	if (!args_num(c->args[0], 1, UINT64_MAX, &conn))
		return args_error(c, "'%s' is no connection id (its "
		    "digits)", c->args[0]);
	r = procreg_keys(c->p, conn, &names, &nn, &groups, &ng);
	if (r == PROCREG_E_NOT_FOUND) {
		return out_error(c, EXIT_NO, "not_found", NULL, "conn %s: no "
		    "such connection", c->args[0]);
	}
	if (r != PROCREG_OK)
		return out_report(c, r, NULL);
	if (c->json) {
		json_t *jn = names_strv_json(names, nn);
		json_t *jg = names_strv_json(groups, ng);

		ok = out_json(jn == NULL || jg == NULL ? NULL :
		    json_pack("{s:o, s:o}", "names", jn, "groups", jg), 0);
		if (jn == NULL || jg == NULL) {
			json_decref(jn);
			json_decref(jg);
		}
	} else {
		ok = names_print_list("names", names, nn) &&
		    names_print_list("groups", groups, ng) &&
		    fflush(stdout) == 0;
	}
	procreg_strv_free(names, nn);
	procreg_strv_free(groups, ng);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* await NAME: wait until NAME is registered, and print it. */
int
names_await(struct ctl *c)
{
	struct procreg_entry *e = NULL;
	const char *name = c->args[0];
	int timeout = c->timeout_ms > 0 ? c->timeout_ms :
	    (int)PR_CALL_TIMEOUT_DEFAULT;
	int r;

	if (!args_check_name(c, name))
		return EXIT_USAGE;
	if ((unsigned)timeout > PR_CALL_TIMEOUT_MAX)
		return args_error(c, "--timeout: await waits at most "
		    "%u ms", PR_CALL_TIMEOUT_MAX);
	r = procreg_await(c->p, name, timeout, &e);
	if (r == PROCREG_E_CALL_TIMEOUT) {
		return out_error(c, EXIT_NO, "timeout", NULL, "%s: not "
		    "registered within %d ms", name, timeout);
	}
	if (r != PROCREG_OK)
		return out_report(c, r, name);
	r = (c->json ? out_json(out_entry_json(e), 0) : out_entry(e)) ?
	    EXIT_SUCCESS : EXIT_ERROR;
	procreg_entry_free(e);
	return r;
}

/*
 * queue NAME: the connections waiting for NAME, first in line first: a
 * conn id each, and for a cluster name's line the node of each.
 */
int
names_queue(struct ctl *c)
{
	struct procreg_place **v = NULL;
	size_t n = 0;
	bool ok = true;
	int r;

	if (!args_check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_queue_places(c->p, c->args[0], &v, &n)) !=
	    PROCREG_OK)
		return out_report(c, r, c->args[0]);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			json_t *j = v[i]->node == NULL ?
			    json_integer((json_int_t)v[i]->conn) :
			    json_pack("{s:s, s:I}", "node", v[i]->node,
			    "conn", (json_int_t)v[i]->conn);

			if (json_array_append_new(a, j) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = out_json(a, 0);
	} else {
		for (size_t i = 0; i < n && ok; i++) {
			char *node = v[i]->node != NULL ?
			    out_safe_text(v[i]->node) : NULL;

			ok = printf("%" PRIu64 "%s%s\n", v[i]->conn,
			    node != NULL ? " " : "", node != NULL ? node :
			    "") > 0;
			free(node);
		}
		ok = ok && fflush(stdout) == 0;
	}
	procreg_places_free(v, n);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* nodes: the cluster's nodes, a table or a JSON array. */
int
names_nodes(struct ctl *c)
{
	struct procreg_node **v;
	struct out_row *rows;
	size_t n, tty = out_tty_width();
	bool ok = true;
	int r;

	if ((r = procreg_nodes(c->p, &v, &n)) != PROCREG_OK)
		return out_report(c, r, NULL);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a, json_pack("{s:s, s:s, "
			    "s:I, s:b}", "name", v[i]->name, "address",
			    v[i]->address, "since", (json_int_t)v[i]->since_ms,
			    "self", (int)v[i]->self)) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = out_json(a, 0);
		procreg_nodes_free(v, n);
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL) {
		procreg_nodes_free(v, n);
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	rows[0] = (struct out_row){ { strdup("NAME"), strdup("ADDRESS"),
	    strdup("AGE"), strdup("SELF") } };
	for (size_t i = 0; i < n; i++) {
		struct out_row *w = &rows[i + 1];
		char age[32];

		w->col[0] = out_safe_text(v[i]->name);
		w->col[1] = out_safe_text(v[i]->address[0] != '\0' ?
		    v[i]->address : "-");
		out_fmt_since_age(age, sizeof(age), v[i]->since_ms);
		w->col[2] = strdup(age);
		w->col[3] = strdup(v[i]->self ? "yes" : "no");
	}
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 4; k++)
			ok = ok && rows[i].col[k] != NULL;
	if (ok)
		out_table(rows, n + 1, 4, tty);
	else
		fprintf(stderr, "procregctl: out of memory\n");
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 4; k++)
			free(rows[i].col[k]);
	free(rows);
	procreg_nodes_free(v, n);
	return ok && fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* Say who holds name (after taken: an error, with --json as JSON; or
 * when we queue for it: a note). */
static void
names_say_holder(struct ctl *c, const char *name, const char *what,
    const char *msg)
{
	struct procreg_entry *e = NULL;
	const struct ctl note = { .json = false };
	const struct ctl *how = what[0] != '\0' ? &note : c;

	if (procreg_whereis(c->p, name, &e) == PROCREG_OK && e != NULL &&
	    e->node != NULL)
		out_error(how, EXIT_NO, "taken", NULL, "%s is held by conn %"
		    PRIu64 " (pid %" PRId64 ") on node %s%s", name, e->conn,
		    e->pid, e->node, what);
	else if (e != NULL)
		out_error(how, EXIT_NO, "taken", NULL, "%s is held by conn %"
		    PRIu64 " (pid %" PRId64 ")%s", name, e->conn, e->pid, what);
	else
		out_error(how, EXIT_NO, "taken", NULL, "%s is taken: %s", name,
		    msg);
	procreg_entry_free(e);
}

/*
 * Register name for hold, serve and recv, with register flags; on taken,
 * say who holds it.  *queued (may be NULL): our place in its queue, 0
 * when it is ours.
 */
int
names_register_opts(struct ctl *c, const char *name, const void *value,
    size_t len, unsigned flags, uint32_t *queued)
{
	char msg[256], what[64];
	uint32_t pos = 0;
	int r;

	if (queued != NULL)
		*queued = 0;
	r = procreg_register_opts(c->p, name, value, len, flags, NULL, &pos);
	if (r == PROCREG_OK && pos > 0) {
		snprintf(what, sizeof(what), "; waiting, number %" PRIu32
		    " in its queue", pos);
		names_say_holder(c, name, what, "");
		if (queued != NULL)
			*queued = pos;
		return EXIT_SUCCESS;
	}
	if (r == PROCREG_OK)
		return EXIT_SUCCESS;
	if (r != PROCREG_E_TAKEN)
		return out_report(c, r, name);
	snprintf(msg, sizeof(msg), "%s", procreg_errmsg(c->p));
	names_say_holder(c, name, "", msg);
	return EXIT_NO;
}

/* Register name for serve and recv (--cluster: a cluster name). */
int
names_register(struct ctl *c, const char *name, const void *value,
    size_t len)
{
	return names_register_opts(c, name, value, len, c->cluster ?
	    PROCREG_CLUSTER : 0, NULL);
}
