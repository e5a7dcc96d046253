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

	config_defaults(&cfg);
	switch (config_parse_args(&cfg, argc, argv, stdout, stderr)) {
	case CONFIG_EXIT_OK:
		return 0;
	case CONFIG_USAGE:
		return 2;
	case CONFIG_RUN:
		break;
	}
	if ((s = malloc(sizeof(*s))) == NULL) {
		fprintf(stderr, "procregd: out of memory\n");
		return 1;
	}
	if (server_init(s, &cfg) == 0 && server_run(s) == 0)
		rc = 0;
	server_deinit(s);
	free(s);
	return rc;
}
