/*
 * main.c: procregd's entry point.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "server.h"

int
main(int argc, char **argv)
{
	struct server *s;
	struct config cfg;
	int rc = 1;

	switch (config_build(&cfg, argc, argv, stdout, stderr)) {
	case CONFIG_EXIT_OK:
		return 0;
	case CONFIG_USAGE:
	case CONFIG_INVALID:
		return 2;
	case CONFIG_RUN:
		break;
	}
	if (cfg.check_only) {
		printf("%s: ok\n", cfg.config_path[0] ? cfg.config_path :
		    "(no configuration file: the defaults)");
		return 0;
	}
	if ((s = malloc(sizeof(*s))) == NULL) {
		fprintf(stderr, "procregd: out of memory\n");
		return 1;
	}
	/* SIGHUP rebuilds the configuration from the same command line. */
	s->argc = argc;
	s->argv = argv;
	if (server_init(s, &cfg) == 0 && server_run(s) == 0)
		rc = 0;
	server_deinit(s);
	free(s);
	return rc;
}
