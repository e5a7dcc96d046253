/*
 * config.c: the option table, argv parsing and --help.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "procreg-protocol.h"

enum opt_type { OPT_NUM, OPT_PATH, OPT_VERBOSE, OPT_QUIET, OPT_FOREGROUND,
	OPT_HELP, OPT_VERSION };

struct option_def {
	const char	*name;
	int		 shortopt;
	enum opt_type	 type;
	size_t		 offset;
	uint64_t	 def, min, max;
	const char	*arg;
	const char	*help;
};

#define NUM(n, field, d, lo, hi, help) \
	{ n, 0, OPT_NUM, offsetof(struct config, field), d, lo, hi, "N", help }

static const struct option_def defs[] = {
	{ "socket", 's', OPT_PATH, offsetof(struct config, socket_path), 0, 0,
	    0, "PATH", "listen on PATH (default: $PROCREG_SOCKET, else "
	    "$XDG_RUNTIME_DIR/procreg.sock, else /run/procreg/procreg.sock "
	    "for root, else /tmp/procreg-UID/procreg.sock)" },
	{ "foreground", 'f', OPT_FOREGROUND, 0, 0, 0, 0, NULL,
	    "run in the foreground (always the case; accepted for service "
	    "managers)" },
	{ "verbose", 'v', OPT_VERBOSE, 0, 0, 0, 0, NULL,
	    "log at debug level: one line per connection opened and closed" },
	{ "quiet", 'q', OPT_QUIET, 0, 0, 0, 0, NULL, "log errors only" },
	NUM("max-message", max_message, PR_DEFAULT_MAX_MESSAGE, 64,
	    (uint64_t)1 << 30, "largest message a client may send, bytes"),
	NUM("max-names", max_names, PR_DEFAULT_MAX_NAMES, 1, UINT32_MAX,
	    "names one connection may hold"),
	NUM("max-monitors", max_monitors, PR_DEFAULT_MAX_MONITORS, 1,
	    UINT32_MAX, "monitors one connection may hold"),
	NUM("max-outbuf", max_outbuf, PR_DEFAULT_MAX_OUTBUF, 4096,
	    (uint64_t)1 << 34, "unsent bytes queued for one connection "
	    "before send to it answers busy"),
	NUM("max-conns", max_conns, PR_DEFAULT_MAX_CONNS, 1, 1u << 24,
	    "concurrent client connections"),
	NUM("drain-ms", drain_ms, PR_DEFAULT_DRAIN_MS, 0, 600000,
	    "time a closing connection gets to take its last replies, ms"),
	{ "help", 'h', OPT_HELP, 0, 0, 0, 0, NULL, "show this help and exit" },
	{ "version", 'V', OPT_VERSION, 0, 0, 0, 0, NULL,
	    "show the version and exit" },
};
#define NDEFS	(sizeof(defs) / sizeof(defs[0]))

void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NDEFS; i++) {
		if (defs[i].type == OPT_NUM)
			*(uint64_t *)((char *)cfg + defs[i].offset) = defs[i].def;
	}
	cfg->log_level = LOG_LVL_INFO;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: procregd [options]\n"
	    "The procreg process-registry daemon: names, messages and monitors "
	    "for local processes over a Unix socket (msgpack-RPC).\n\n");
	for (size_t i = 0; i < NDEFS; i++) {
		char left[48];
		const struct option_def *d = &defs[i];

		if (d->shortopt)
			snprintf(left, sizeof(left), "-%c, --%s%s%s",
			    d->shortopt, d->name, d->arg ? " " : "",
			    d->arg ? d->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", d->name,
			    d->arg ? " " : "", d->arg ? d->arg : "");
		fprintf(f, "  %-24s %s", left, d->help);
		if (d->type == OPT_NUM)
			fprintf(f, " (default %llu)", (unsigned long long)d->def);
		fputc('\n', f);
	}
	fprintf(f, "\nExit status: 0 after a clean shutdown (SIGTERM, SIGINT), "
	    "1 when it cannot start\n(e.g. another daemon answers on the "
	    "socket), 2 for a bad command line.\n");
}

static int
parse_num(const struct option_def *d, const char *s, uint64_t *out, FILE *err)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
	    v < d->min || v > d->max) {
		fprintf(err, "procregd: --%s: expected a number from %llu to "
		    "%llu\n", d->name, (unsigned long long)d->min,
		    (unsigned long long)d->max);
		return -1;
	}
	*out = v;
	return 0;
}

enum config_result
config_parse_args(struct config *cfg, int argc, char **argv, FILE *out,
    FILE *err)
{
	struct option longopts[NDEFS + 1];
	char shortopts[2 * NDEFS + 1];
	size_t ns = 0;
	int verbose = 0, quiet = 0, ch, idx;

	memset(longopts, 0, sizeof(longopts));
	for (size_t i = 0; i < NDEFS; i++) {
		longopts[i].name = defs[i].name;
		longopts[i].has_arg = defs[i].arg ? required_argument :
		    no_argument;
		longopts[i].val = defs[i].shortopt ? defs[i].shortopt :
		    256 + (int)i;
		if (defs[i].shortopt) {
			shortopts[ns++] = (char)defs[i].shortopt;
			if (defs[i].arg)
				shortopts[ns++] = ':';
		}
	}
	shortopts[ns] = '\0';
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, shortopts, longopts, &idx)) != -1) {
		const struct option_def *d = NULL;

		for (size_t i = 0; i < NDEFS; i++) {
			if (ch == defs[i].shortopt || ch == 256 + (int)i)
				d = &defs[i];
		}
		if (d == NULL) {
			fprintf(err, "procregd: unknown or incomplete option "
			    "'%s'\nTry 'procregd --help'.\n", argv[optind - 1]);
			return CONFIG_USAGE;
		}
		switch (d->type) {
		case OPT_NUM:
			if (parse_num(d, optarg, (uint64_t *)((char *)cfg +
			    d->offset), err) < 0)
				return CONFIG_USAGE;
			break;
		case OPT_PATH:
			if (strlen(optarg) == 0 ||
			    strlen(optarg) >= sizeof(cfg->socket_path)) {
				fprintf(err, "procregd: --%s: the path must be "
				    "1 to %zu bytes\n", d->name,
				    sizeof(cfg->socket_path) - 1);
				return CONFIG_USAGE;
			}
			strcpy(cfg->socket_path, optarg);
			break;
		case OPT_VERBOSE:
			verbose++;
			break;
		case OPT_QUIET:
			quiet = 1;
			break;
		case OPT_FOREGROUND:
			break;
		case OPT_HELP:
			usage(out);
			return CONFIG_EXIT_OK;
		case OPT_VERSION:
			fprintf(out, "procregd %s (protocol %d)\n", PR_VERSION,
			    PR_PROTOCOL_VERSION);
			return CONFIG_EXIT_OK;
		}
	}
	if (optind < argc) {
		fprintf(err, "procregd: unexpected argument '%s'\n"
		    "Try 'procregd --help'.\n", argv[optind]);
		return CONFIG_USAGE;
	}
	if (quiet)
		cfg->log_level = LOG_LVL_ERR;
	else if (verbose > 0)
		cfg->log_level = LOG_LVL_DEBUG;
	return CONFIG_RUN;
}
