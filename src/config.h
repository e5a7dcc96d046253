/*
 * config.h: procregd's settings, from one option table that drives the
 * command line and --help (and, later, the configuration file).
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "log.h"

struct config {
	char		socket_path[108];	/* empty: the default path */
	uint64_t	max_message;
	uint64_t	max_names;
	uint64_t	max_monitors;
	uint64_t	max_outbuf;
	uint64_t	max_conns;
	uint64_t	drain_ms;
	enum log_level	log_level;
};

enum config_result {
	CONFIG_RUN = 0,		/* start the daemon */
	CONFIG_EXIT_OK,		/* --help or --version was printed */
	CONFIG_USAGE		/* bad command line; message printed */
};

/* Fill in the documented defaults. */
void			config_defaults(struct config *);
/* Apply argv over the defaults; messages go to out/err. */
enum config_result	config_parse_args(struct config *, int argc,
			    char **argv, FILE *out, FILE *err);

#endif /* CONFIG_H */
