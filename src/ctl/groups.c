/*
 * groups.c: the commands about groups: join, members, publish.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* join GROUP [VALUE]: be a member and print what is published to it;
 * after a daemon restart, a member again (auto_reconnect). */
int
groups_join(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct procreg_callbacks cb = { NULL, wait_reconnected };
	struct waiter w = { .c = c, .on_signal = wait_stop,
	    .on_event = msg_recv_event, .name = c->args[0],
	    .connected = true };
	msgpack_sbuffer sb;
	int r;

	if (!args_check_name(c, w.name))
		return EXIT_USAGE;
	procreg_set_callbacks(c->p, &cb, &w);
	if (c->json_value && c->nargs < 2)
		return args_error(c, "--json-value needs VALUE");
	msgpack_sbuffer_init(&sb);
	if (c->nargs == 2 && !value_operand(c, "VALUE", c->args[1],
	    c->json_value, &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	if ((w.sigfd = wait_signals(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_ERROR;
	}
	r = procreg_join(c->p, w.name, c->nargs == 2 ? sb.data : NULL,
	    sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
	r = r == PROCREG_OK ? wait_loop(&w) : out_report(c, r, w.name);
	close(w.sigfd);
	return r;
}

/* members GROUP: a table, or a JSON array of member entries. */
int
groups_members(struct ctl *c)
{
	struct procreg_member **v;
	struct out_row *rows;
	size_t n, tty = out_tty_width();
	bool ok = true;
	int r;

	if (!args_check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_members(c->p, c->args[0], &v, &n)) != PROCREG_OK)
		return out_report(c, r, c->args[0]);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a,
			    out_member_json(v[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = out_json(a, 0);
		procreg_members_free(v, n);
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL) {
		procreg_members_free(v, n);
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	rows[0] = (struct out_row){ { strdup("CONN"), strdup("PID"),
	    strdup("UID"), strdup("VALUE"), strdup("AGE") } };
	for (size_t i = 0; i < n; i++) {
		struct out_row *w = &rows[i + 1];
		char num[32], age[32];

		snprintf(num, sizeof(num), "%" PRIu64, v[i]->conn);
		w->col[0] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->pid);
		w->col[1] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->uid);
		w->col[2] = strdup(num);
		w->col[3] = tty ? value_cell(v[i]->value, v[i]->value_len) :
		    value_text(v[i]->value, v[i]->value_len);
		out_fmt_since_age(age, sizeof(age), v[i]->since_ms);
		w->col[4] = strdup(age);
	}
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 5; k++)
			ok = ok && rows[i].col[k] != NULL;
	if (ok)
		out_table(rows, n + 1, 5, tty);
	else
		fprintf(stderr, "procregctl: out of memory\n");
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 5; k++)
			free(rows[i].col[k]);
	free(rows);
	procreg_members_free(v, n);
	return ok && fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* publish GROUP PAYLOAD: to every member; say how many got it. */
int
groups_publish(struct ctl *c)
{
	const char *group = c->args[0];
	msgpack_sbuffer sb;
	uint64_t delivered = 0, *busy = NULL;
	size_t nbusy = 0;
	bool ok;
	int r;

	if (!args_check_name(c, group))
		return EXIT_USAGE;
	msgpack_sbuffer_init(&sb);
	if (!value_payload(c, c->args[1], &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	r = procreg_publish(c->p, group, sb.data, sb.size, !c->no_echo,
	    &delivered, &busy, &nbusy);
	msgpack_sbuffer_destroy(&sb);
	if (r != PROCREG_OK)
		return out_report(c, r, group);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < nbusy && a != NULL; i++) {
			if (json_array_append_new(a,
			    json_integer((json_int_t)busy[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = out_json(a == NULL ? NULL : json_pack("{s:I, s:o}",
		    "delivered", (json_int_t)delivered, "busy", a), 0);
	} else {
		printf("delivered: %" PRIu64 "\nbusy:     ", delivered);
		for (size_t i = 0; i < nbusy; i++)
			printf(" %" PRIu64, busy[i]);
		ok = printf("%s\n", nbusy ? "" : " none") > 0 &&
		    fflush(stdout) == 0;
	}
	free(busy);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}
