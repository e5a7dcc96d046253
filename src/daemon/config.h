/*
 * config.h: procregd's settings, from one option table that drives the
 * configuration file, the command line and --help.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "policy.h"

#define CONFIG_DEFAULT_FILE	"/etc/procreg/procreg.conf"
#define CONFIG_MAX_ETCD_URLS	8

struct config {
	char		socket_path[108];	/* empty: the default path */
	char		socket_group[64];	/* empty: the daemon's group */
	uint64_t	socket_mode;		/* UINT64_MAX: by who runs it */
	uint64_t	max_message;
	uint64_t	max_names;
	uint64_t	max_monitors;
	uint64_t	max_calls;
	uint64_t	history;
	uint64_t	max_outbuf;
	uint64_t	max_conns;
	uint64_t	drain_ms;
	uint64_t	max_conns_per_uid;	/* 0: no cap */
	uint64_t	max_names_per_uid;	/* 0: no cap */
	uint64_t	reserved_conns;		/* of max_conns, for admins */
	uint64_t	max_drain_bytes;	/* all closing conns' output */
	enum log_level	log_level;
	char		admin_group[64];
	char		metrics[72];		/* ADDR:PORT; empty: off */
	/* [cluster] (issue 14).  etcd empty: the single-host daemon, and
	 * the other cluster settings, still checked one by one, are unused.
	 * Read at start only: a reload does not apply them. */
	char		etcd[1024];		/* http[s]://HOST:PORT[/],... */
	char		node[64];		/* after config_build: set when
						 * etcd is (else the host name) */
	char		cluster_prefix[128];	/* starts and ends with '/' */
	uint64_t	lease_ttl;		/* seconds */
	uint64_t	etcd_timeout_ms;	/* bound on each etcd answer */
	char		etcd_ca[256];		/* empty: the system's CAs */
	char		etcd_cert[256];		/* with etcd_key, or neither */
	char		etcd_key[256];
	struct policy	policy;
	/* Not settings but what the command line asked for. */
	char		config_path[256];	/* -c, or the default if it exists */
	bool		check_only;		/* --check-config */
	bool		system;			/* --system */
};

enum config_result {
	CONFIG_RUN = 0,		/* start the daemon */
	CONFIG_EXIT_OK,		/* --help or --version was printed */
	CONFIG_USAGE,		/* bad command line; message printed */
	CONFIG_INVALID		/* the file has errors; each printed */
};

/*
 * Fill in the documented defaults.  Some depend on whether the daemon is
 * the system's (runs as root: every local user shares it) or a user's.
 */
void			config_defaults(struct config *);
/* Split "ADDR:PORT" (numeric IPv4, or [IPv6]) into host and port: 0, or
 * -1 when it is not one. */
int			config_parse_addr(const char *, char *host,
			    size_t size, uint16_t *port);
/* The same, for the system daemon (root) or a user's. */
void			config_defaults_for(struct config *, bool system);
/*
 * The whole configuration: defaults, then the file (-c FILE, else the
 * default file when it exists), then the command line over both.  Errors
 * go to err as "FILE:LINE: message" or "procregd: ...".
 */
enum config_result	config_build(struct config *, int argc, char **argv,
			    FILE *out, FILE *err);

#endif /* CONFIG_H */
