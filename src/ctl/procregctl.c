/*
 * procregctl.c: the command-line tool of procreg: parse the command line,
 * connect as the command wants, run it.  The commands live in their
 * families' files (names.c, msg.c, run.c, groups.c, events.c, admin.c),
 * the command and option tables in args.c; ctl.h says what they share.
 * Built on libprocreg (include/procreg.h) alone; jansson reads and writes
 * JSON, msgpack-c packs JSON payloads.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* Connect as the command wants; the exit status on failure, else 0. */
static int
ctl_connect(struct ctl *c)
{
	/*
	 * For call and await, -t is the daemon's timeout only: the library
	 * waits that long plus the handle's own (default) timeout.
	 */
	struct procreg_options o = { .path = c->socket, .label = NULL,
	    .timeout_ms = c->cmd->bit & (C_CALL | C_AWAIT) ? 0 : c->timeout_ms,
	    .auto_reconnect = c->reconnect };
	char label[64];
	int r;

	snprintf(label, sizeof(label), "procregctl %s", c->cmd->name);
	o.label = label;
	if ((r = procreg_connect(&c->p, &o)) == PROCREG_OK)
		return EXIT_SUCCESS;
	if (c->p == NULL) {
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	/* A failure to connect at all means the daemon is unreachable. */
	r = out_report(c, r, NULL);
	return r == EXIT_ERROR || r == EXIT_UNREACHABLE ? r :
	    EXIT_UNREACHABLE;
}

/* Parse the command line, connect, and run the command. */
int
main(int argc, char **argv)
{
	struct ctl c = { .interval_ms = 1000, .kill_after_ms = KILL_AFTER_MS,
	    .uid = -1 };
	int r;

	/* wcwidth: the width of names on a terminal (out_table). */
	setlocale(LC_CTYPE, "");
	/* --json makes errors JSON too, even those found before it is
	 * parsed (a CMD's own --json comes after "--"). */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		c.json = c.json || strcmp(argv[i], "--json") == 0;
	if ((r = args_parse(&c, argc, argv)) >= 0)
		return r;
	if (optind >= argc)
		return args_error(&c, "no command given");
	if ((r = args_hidden(argc - optind, argv + optind)) >= 0)
		return r;
	if ((c.cmd = args_find(argv[optind])) == NULL)
		return args_unknown(&c, argv[optind]);
	argc -= optind;
	argv += optind;
	if ((c.args = calloc((size_t)argc + 1, sizeof(*c.args))) == NULL) {
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	if ((r = args_parse(&c, argc, argv)) >= 0)
		goto out;
	r = EXIT_USAGE;
	if (c.nargs < c.cmd->min_args)
		args_error(&c, "missing operand: %s %s", c.cmd->name,
		    c.cmd->synopsis);
	else if (c.cmd->max_args >= 0 && c.nargs > c.cmd->max_args)
		args_error(&c, "unexpected argument '%s'",
		    c.args[c.cmd->max_args]);
	else if (c.cmd->bit == C_HELP)
		r = c.cmd->run(&c);
	else {
		c.reconnect = c.cmd->reconnect && !c.no_reconnect;
		if ((r = ctl_connect(&c)) == EXIT_SUCCESS)
			r = c.cmd->run(&c);
	}
out:
	procreg_free(c.p);
	free(c.args);
	return r;
}
