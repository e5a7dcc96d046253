/*
 * config.c: the option table, which drives the configuration file (INI,
 * parsed by libinih), the command line and --help.
 */
#include <sys/stat.h>

#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "procreg-protocol.h"

enum opt_type { OPT_NUM, OPT_PATH, OPT_STR, OPT_MODE, OPT_LEVEL, OPT_RULE,
	OPT_ADMIN, OPT_DEFAULT, OPT_VERBOSE, OPT_QUIET, OPT_FOREGROUND,
	OPT_SYSTEM, OPT_ADDR, OPT_URLS, OPT_NODE, OPT_PREFIX, OPT_FILE,
	OPT_CONFIG, OPT_CHECK, OPT_HELP, OPT_VERSION };

struct option_def {
	const char	*name;		/* long option */
	int		 shortopt;
	enum opt_type	 type;
	const char	*section;	/* in the file; NULL: command line only */
	const char	*key;
	size_t		 offset;
	uint64_t	 def, min, max;	/* OPT_NODE, _PREFIX, _FILE: max is
					 * the field's size */
	const char	*arg;
	const char	*help;
};

#define NUM(n, sec, field, d, lo, hi, help) \
	{ n, 0, OPT_NUM, sec, #field, offsetof(struct config, field), d, lo, \
	    hi, "N", help }
/* A string of [cluster], whose checks need the field's size. */
#define CSTR(n, type, key, field, arg, help) \
	{ n, 0, type, "cluster", key, offsetof(struct config, field), 0, 0, \
	    sizeof(((struct config *)0)->field), arg, help }

static const struct option_def defs[] = {
	{ "config", 'c', OPT_CONFIG, NULL, NULL, 0, 0, 0, 0, "FILE",
	    "read the configuration from FILE (default: "
	    CONFIG_DEFAULT_FILE " when it exists)" },
	{ "check-config", 0, OPT_CHECK, NULL, NULL, 0, 0, 0, 0, NULL,
	    "check the configuration, print FILE:LINE: message for each "
	    "error, and exit" },
	{ "socket", 's', OPT_PATH, "daemon", "socket",
	    offsetof(struct config, socket_path), 0, 0,
	    0, "PATH", "listen on PATH (default: $PROCREG_SOCKET, else "
	    "$XDG_RUNTIME_DIR/procreg.sock, else /run/procreg/procreg.sock "
	    "for root, else /tmp/procreg-UID/procreg.sock)" },
	{ "socket-mode", 0, OPT_MODE, "daemon", "socket_mode",
	    offsetof(struct config, socket_mode), 0, 0, 0777, "MODE",
	    "the socket file's mode, octal (default 0600, 0666 for root)" },
	{ "socket-group", 0, OPT_STR, "daemon", "socket_group",
	    offsetof(struct config, socket_group), 0, 0, 0, "GROUP",
	    "the socket file's group (default: the daemon's)" },
	{ "log-level", 0, OPT_LEVEL, "daemon", "log_level",
	    offsetof(struct config, log_level), 0, 0, 0, "LEVEL",
	    "error, warning, info or debug (default info)" },
	{ "foreground", 'f', OPT_FOREGROUND, NULL, NULL, 0, 0, 0, 0, NULL,
	    "run in the foreground (always the case; accepted for service "
	    "managers)" },
	{ "system", 0, OPT_SYSTEM, NULL, NULL, 0, 0, 0, 0, NULL,
	    "serve every local user (the system unit passes it): the per-uid "
	    "caps and the reserved connections then default on, as when run "
	    "as root" },
	{ "verbose", 'v', OPT_VERBOSE, NULL, NULL, 0, 0, 0, 0, NULL,
	    "log at debug level: one line per connection opened and closed" },
	{ "quiet", 'q', OPT_QUIET, NULL, NULL, 0, 0, 0, 0, NULL,
	    "log errors only" },
	NUM("max-message", "limits", max_message, PR_DEFAULT_MAX_MESSAGE, 64,
	    (uint64_t)1 << 30, "largest message a client may send, bytes"),
	NUM("max-names", "limits", max_names, PR_DEFAULT_MAX_NAMES, 1,
	    UINT32_MAX, "names one connection may hold"),
	NUM("max-monitors", "limits", max_monitors, PR_DEFAULT_MAX_MONITORS, 1,
	    UINT32_MAX, "monitors one connection may hold"),
	NUM("max-calls", "limits", max_calls, PR_DEFAULT_MAX_CALLS, 1,
	    UINT32_MAX, "calls and awaits one connection may have pending"),
	NUM("history", "limits", history, PR_DEFAULT_HISTORY, 0, 10000000,
	    "events kept for subscribers that resume, 0 for none"),
	NUM("max-outbuf", "limits", max_outbuf, PR_DEFAULT_MAX_OUTBUF, 4096,
	    (uint64_t)1 << 34, "unsent bytes queued for one connection "
	    "before send to it answers busy"),
	NUM("max-conns", "limits", max_conns, PR_DEFAULT_MAX_CONNS, 1,
	    1u << 24, "concurrent client connections"),
	NUM("drain-ms", "daemon", drain_ms, PR_DEFAULT_DRAIN_MS, 0, 600000,
	    "time a closing connection gets to take its last replies, ms"),
	NUM("max-conns-per-uid", "limits", max_conns_per_uid, 0, 0, 1u << 24,
	    "connections one user may hold at once, closing ones included, 0 "
	    "for no cap (administrators are exempt)"),
	NUM("max-names-per-uid", "limits", max_names_per_uid, 0, 0,
	    UINT32_MAX,
	    "names one user may hold across connections, 0 for no cap "
	    "(administrators are exempt)"),
	NUM("reserved-conns", "limits", reserved_conns, 0, 0, 1u << 24,
	    "of max-conns, the connections only administrators may use"),
	NUM("max-drain-bytes", "limits", max_drain_bytes,
	    PR_DEFAULT_MAX_DRAIN_BYTES, 0, (uint64_t)1 << 34,
	    "unsent bytes all closing connections may hold together"),
	{ "rule", 0, OPT_RULE, "policy", "rule", 0, 0, 0, 0, "RULE",
	    "an ownership rule 'allow|deny SUBJECT PATTERN', repeatable, first "
	    "match wins (on the command line they replace the file's)" },
	{ "policy-default", 0, OPT_DEFAULT, "policy", "default", 0, 0, 0, 0,
	    "allow|deny", "what happens to a name no rule matches (default "
	    "allow)" },
	{ "admin-group", 0, OPT_ADMIN, "policy", "admin_group",
	    offsetof(struct config, admin_group), 0, 0, 0, "GROUP",
	    "administrators besides uid 0 and the daemon's user: may evict "
	    "names, use the reserved connections, pass the per-uid caps" },
	{ "metrics", 0, OPT_ADDR, "daemon", "metrics",
	    offsetof(struct config, metrics), 0, 0, 0, "ADDR:PORT",
	    "serve Prometheus metrics over HTTP at /metrics on ADDR:PORT, a "
	    "numeric IPv4 or [IPv6] address (default: off)" },
	{ "etcd", 0, OPT_URLS, "cluster", "etcd",
	    offsetof(struct config, etcd), 0, 0, 0, "URL[,URL...]",
	    "keep cluster names on this etcd v3 cluster: up to 8 endpoints, "
	    "http://HOST:PORT or https://HOST:PORT, separated by commas "
	    "(default: none, a single-host daemon; the options below take "
	    "effect only with it)" },
	CSTR("node", OPT_NODE, "node", node, "NAME",
	    "this daemon's name in the cluster, 1 to 63 bytes of A-Z a-z 0-9 "
	    ". _ - (default: the host name up to its first '.')"),
	CSTR("cluster-prefix", OPT_PREFIX, "cluster_prefix", cluster_prefix,
	    "PREFIX", "the cluster's keys in etcd start with PREFIX, which "
	    "starts and ends with '/' (default /procreg/)"),
	{ "lease-ttl", 0, OPT_NUM, "cluster", "lease_ttl",
	    offsetof(struct config, lease_ttl), 10, 2, 3600, "SECONDS",
	    "how long the cluster keeps this node's names after its last "
	    "keepalive to etcd, seconds" },
	{ "etcd-timeout", 0, OPT_NUM, "cluster", "etcd_timeout",
	    offsetof(struct config, etcd_timeout_ms), 2000, 100, 60000, "MS",
	    "how long any etcd request, a cluster write included, may wait "
	    "for its answer, ms" },
	CSTR("etcd-ca", OPT_FILE, "etcd_ca", etcd_ca, "FILE",
	    "the CA certificates that https:// endpoints are checked with "
	    "(default: the system's)"),
	CSTR("etcd-cert", OPT_FILE, "etcd_cert", etcd_cert, "FILE",
	    "a client certificate for https:// endpoints, with --etcd-key"),
	CSTR("etcd-key", OPT_FILE, "etcd_key", etcd_key, "FILE",
	    "the private key of --etcd-cert"),
	{ "help", 'h', OPT_HELP, NULL, NULL, 0, 0, 0, 0, NULL,
	    "show this help and exit" },
	{ "version", 'V', OPT_VERSION, NULL, NULL, 0, 0, 0, 0, NULL,
	    "show the version and exit" },
};
#define NDEFS	(sizeof(defs) / sizeof(defs[0]))

/*
 * The system daemon serves every local user through a 0666 socket: no
 * user may take all of it.  It runs as root, or (the system unit, with
 * DynamicUser=) says so with --system.  A user's own daemon keeps the
 * table's defaults (no caps).
 */
static const struct {
	size_t		 offset;
	uint64_t	 def;
} root_defaults[] = {
	{ offsetof(struct config, max_conns_per_uid),
	    PR_DEFAULT_MAX_CONNS_PER_UID_ROOT },
	{ offsetof(struct config, max_names_per_uid),
	    PR_DEFAULT_MAX_NAMES_PER_UID_ROOT },
	{ offsetof(struct config, reserved_conns),
	    PR_DEFAULT_RESERVED_CONNS_ROOT },
};

/* The default of a numeric option for a daemon run as root. */
static uint64_t
root_default(const struct option_def *d)
{
	for (size_t i = 0; i < sizeof(root_defaults) / sizeof(root_defaults[0]);
	    i++) {
		if (root_defaults[i].offset == d->offset)
			return root_defaults[i].def;
	}
	return d->def;
}

void
config_defaults(struct config *cfg)
{
	config_defaults_for(cfg, getuid() == 0);
}

void
config_defaults_for(struct config *cfg, bool root)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NDEFS; i++) {
		if (defs[i].type == OPT_NUM)
			*(uint64_t *)((char *)cfg + defs[i].offset) = root ?
			    root_default(&defs[i]) : defs[i].def;
	}
	cfg->log_level = LOG_LVL_INFO;
	cfg->socket_mode = UINT64_MAX;
	strcpy(cfg->cluster_prefix, "/procreg/");
}

/*
 * Print text, the cursor being at column at, in a column from col to 80,
 * breaking at spaces (a word longer than the room is printed whole).
 */
static void
usage_wrap(FILE *f, const char *text, size_t at, size_t col)
{
	const size_t width = 80;
	bool first = true;

	while (*text != '\0') {
		size_t n = strcspn(text, " ");

		if (at + 1 + n > width && (!first || at > col)) {
			fprintf(f, "\n%*s", (int)col, "");
			at = col;
		} else
			fputc(' ', f);
		fprintf(f, "%.*s", (int)n, text);
		at += (at == col ? 0 : 1) + n;
		first = false;
		text += n;
		while (*text == ' ')
			text++;
	}
	fputc('\n', f);
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: procregd [options]\n"
	    "The procreg process-registry daemon: names, messages and monitors\n"
	    "for local processes over a Unix socket (msgpack-RPC).\n\n");
	for (size_t i = 0; i < NDEFS; i++) {
		char left[48], text[512];
		const struct option_def *d = &defs[i];

		if (d->shortopt)
			snprintf(left, sizeof(left), "-%c, --%s%s%s",
			    d->shortopt, d->name, d->arg ? " " : "",
			    d->arg ? d->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", d->name,
			    d->arg ? " " : "", d->arg ? d->arg : "");
		if (d->type == OPT_NUM && root_default(d) != d->def)
			snprintf(text, sizeof(text), "%s (default %llu, %llu as "
			    "root or with --system)", d->help,
			    (unsigned long long)d->def,
			    (unsigned long long)root_default(d));
		else if (d->type == OPT_NUM)
			snprintf(text, sizeof(text), "%s (default %llu)", d->help,
			    (unsigned long long)d->def);
		else
			snprintf(text, sizeof(text), "%s", d->help);
		fprintf(f, "  %-24s", left);
		usage_wrap(f, text, 2 + (strlen(left) > 24 ? strlen(left) : 24),
		    27);
	}
	fprintf(f, "\nEvery setting but -c, --check-config, -v, -q, -f can be "
	    "set in the\nconfiguration file too (see procreg.conf(5)); the "
	    "command line wins.\nSIGHUP reloads the file; SIGTERM and SIGINT "
	    "stop the daemon.\n\nExit status: 0 after a clean shutdown "
	    "(SIGTERM, SIGINT), 1 when it cannot\nstart (e.g. another daemon "
	    "answers on the socket), 2 for a bad command line\nor an invalid "
	    "configuration.\n");
}

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "error", [LOG_LVL_WARN] = "warning",
	[LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

int
config_parse_addr(const char *s, char *host, size_t size, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hlen;
	struct in6_addr a6;
	struct in_addr a4;
	unsigned long p;
	char *end;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= size)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (s[0] == '[' ? inet_pton(AF_INET6, host, &a6) != 1 :
	    inet_pton(AF_INET, host, &a4) != 1)
		return -1;
	/* Digits only: strtoul would take a sign or leading blanks. */
	if (!isdigit((unsigned char)colon[1]))
		return -1;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p == 0 || p > 65535)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

/*
 * A host name in an etcd URL: labels of letters, digits, '-' and '_'
 * separated by single dots, none starting with '-', 253 bytes at most.
 * Digits and dots only must be an IPv4 address.
 */
static bool
valid_host_name(const char *h)
{
	size_t n = strlen(h), label = 0;
	struct in_addr a4;

	if (n == 0 || n > 253)
		return false;
	if (strspn(h, "0123456789.") == n)
		return inet_pton(AF_INET, h, &a4) == 1;
	for (const char *p = h; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '_' ||
		    (*p == '-' && label > 0))
			label++;
		else
			return false;
		if (label > 63)
			return false;
	}
	return label > 0;
}

/*
 * One etcd endpoint, len bytes at u: http://HOST:PORT or
 * https://HOST:PORT, HOST a name, a numeric IPv4 address or a bracketed
 * IPv6 one, PORT digits only from 1 to 65535, then an optional '/'.
 */
static bool
valid_etcd_url(const char *u, size_t len)
{
	const char *p, *end = u + len, *colon;
	char host[256];
	struct in6_addr a6;
	unsigned long port = 0;
	size_t hlen;

	if (len > 7 && strncmp(u, "http://", 7) == 0)
		p = u + 7;
	else if (len > 8 && strncmp(u, "https://", 8) == 0)
		p = u + 8;
	else
		return false;
	if (end[-1] == '/')
		end--;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (close == NULL || close + 1 >= end || close[1] != ':')
			return false;
		hlen = (size_t)(close - p - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return false;
		memcpy(host, p + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return false;
		colon = close + 1;
	} else {
		for (colon = end; colon > p && colon[-1] != ':'; colon--)
			;
		if (colon == p)
			return false;
		colon--;
		hlen = (size_t)(colon - p);
		if (hlen == 0 || hlen >= sizeof(host))
			return false;
		memcpy(host, p, hlen);
		host[hlen] = '\0';
		if (!valid_host_name(host))
			return false;
	}
	if (end - (colon + 1) < 1 || end - (colon + 1) > 5)
		return false;
	for (p = colon + 1; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	return port >= 1 && port <= 65535;
}

/* A node name: 1 to 63 bytes of [A-Za-z0-9._-], not starting with '.'
 * or '-'. */
static bool
valid_node(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	}
	return true;
}

#define NODE_RULE	"1 to 63 bytes of letters, digits, '.', '_' and '-', " \
			"not starting with '.' or '-'"

/* The etcd endpoints, comma-separated; NULL or why not, as set_value. */
static const char *
check_etcd_urls(const char *v, size_t size, char *buf, size_t bufsize)
{
	const char *p, *q;
	size_t n = 0;

	if (strlen(v) >= size) {
		snprintf(buf, bufsize, "expected at most %zu bytes", size - 1);
		return buf;
	}
	if (*v == '\0')
		return NULL;
	for (p = v; ; p = q + 1) {
		if ((q = strchr(p, ',')) == NULL)
			q = p + strlen(p);
		if (++n > CONFIG_MAX_ETCD_URLS) {
			snprintf(buf, bufsize, "expected at most %d URLs",
			    CONFIG_MAX_ETCD_URLS);
			return buf;
		}
		if (!valid_etcd_url(p, (size_t)(q - p))) {
			snprintf(buf, bufsize, "expected http://HOST:PORT or "
			    "https://HOST:PORT, separated by commas (HOST a "
			    "name, a numeric IPv4 or [IPv6] address; PORT from "
			    "1 to 65535), not '%.*s'", (int)(q - p > 80 ? 80 :
			    q - p), p);
			return buf;
		}
		if (*q == '\0')
			return NULL;
	}
}

/*
 * Set one option from its text, wherever it came from; NULL on success,
 * else what is wrong with the value (in buf when it needs numbers), worded
 * alike for the command line and the file.
 */
static const char *
set_value(struct config *cfg, const struct option_def *d, const char *v,
    char *buf, size_t size)
{
	void *field = (char *)cfg + d->offset;
	const char *why;
	unsigned long long n;
	char *end;

	switch (d->type) {
	case OPT_NUM:
	case OPT_MODE:
		errno = 0;
		n = strtoull(v, &end, d->type == OPT_MODE ? 8 : 10);
		if (errno != 0 || end == v || *end != '\0' || v[0] == '-' ||
		    n < d->min || n > d->max) {
			if (d->type == OPT_MODE)
				return "expected an octal mode from 0 to 0777";
			snprintf(buf, size, "expected a number from %llu to "
			    "%llu", (unsigned long long)d->min,
			    (unsigned long long)d->max);
			return buf;
		}
		*(uint64_t *)field = n;
		return NULL;
	case OPT_PATH:
		if (strlen(v) == 0 || strlen(v) >= sizeof(cfg->socket_path))
			return "the path must be 1 to 107 bytes";
		strcpy(field, v);
		return NULL;
	case OPT_STR:
		if (strlen(v) >= sizeof(cfg->socket_group))
			return "too long";
		strcpy(field, v);
		return NULL;
	case OPT_RULE:
		return policy_add_rule(&cfg->policy, v);
	case OPT_DEFAULT:
		if (strcmp(v, "allow") != 0 && strcmp(v, "deny") != 0)
			return "expected allow or deny";
		cfg->policy.deny_default = strcmp(v, "deny") == 0;
		return NULL;
	case OPT_ADDR: {
		char host[64];
		uint16_t port;

		if (strlen(v) >= sizeof(cfg->metrics) ||
		    config_parse_addr(v, host, sizeof(host), &port) < 0)
			return "expected ADDR:PORT, a numeric IPv4 or [IPv6] "
			    "address and a port from 1 to 65535";
		strcpy(cfg->metrics, v);
		return NULL;
	}
	case OPT_URLS:
		if ((why = check_etcd_urls(v, sizeof(cfg->etcd), buf, size)) !=
		    NULL)
			return why;
		strcpy(cfg->etcd, v);
		return NULL;
	case OPT_NODE:
		/* Empty: the host name's, when etcd is set. */
		if (*v != '\0' && !valid_node(v))
			return "expected " NODE_RULE;
		strcpy(field, v);
		return NULL;
	case OPT_PREFIX: {
		size_t len = strlen(v);

		if (len < 2 || len >= d->max || v[0] != '/' ||
		    v[len - 1] != '/')
			goto bad_prefix;
		for (size_t i = 0; i < len; i++) {
			if (v[i] <= ' ' || v[i] > '~')
				goto bad_prefix;
		}
		strcpy(field, v);
		return NULL;
bad_prefix:
		snprintf(buf, size, "expected 2 to %llu bytes of printable "
		    "ASCII without spaces, starting and ending with '/'",
		    (unsigned long long)d->max - 1);
		return buf;
	}
	case OPT_FILE:
		/* Empty: none. */
		if (strlen(v) >= d->max) {
			snprintf(buf, size, "the path must be at most %llu bytes",
			    (unsigned long long)d->max - 1);
			return buf;
		}
		strcpy(field, v);
		return NULL;
	case OPT_ADMIN:
		if (strlen(v) >= sizeof(cfg->admin_group))
			return "too long";
		strcpy(cfg->admin_group, v);
		return policy_set_admin_group(&cfg->policy, v);
	case OPT_LEVEL:
		for (int i = 0; i < 8; i++) {
			if (i < (int)(sizeof(level_names) /
			    sizeof(level_names[0])) && level_names[i] != NULL &&
			    strcmp(v, level_names[i]) == 0) {
				*(enum log_level *)field = (enum log_level)i;
				return NULL;
			}
		}
		return "expected error, warning, info or debug";
	default:
		return "not a setting";
	}
}

/* The file being read: libinih calls us for each key. */
struct ini_ctx {
	FILE		*f;
	const char	*path;
	FILE		*err;
	struct config	*cfg;
	int		 line;
	int		 errors;
	bool		 syntax;	/* a malformed line was reported */
	int		 seen[NDEFS];	/* line each key was set on */
};

/*
 * libinih's reader: counts lines, so that errors can name theirs, and
 * reports every malformed line (libinih itself returns only the first).
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct ini_ctx *c = stream;
	const char *p;

	if (fgets(str, num, c->f) == NULL)
		return NULL;
	c->line++;
	for (p = str; *p == ' ' || *p == '\t'; p++)
		;
	if (*p != '\0' && *p != '\n' && *p != '\r' && *p != '#' &&
	    *p != ';' && *p != '[' && strpbrk(p, "=:") == NULL) {
		fprintf(c->err, "%s:%d: expected 'key = value', '[section]' "
		    "or a comment\n", c->path, c->line);
		c->errors++;
		c->syntax = true;
	}
	return str;
}

static int
on_key(void *user, const char *section, const char *key,
    const char *value)
{
	struct ini_ctx *c = user;
	char why_buf[256];
	const char *why;

	for (size_t i = 0; i < NDEFS; i++) {
		const struct option_def *d = &defs[i];

		if (d->section == NULL || strcmp(d->section, section) != 0 ||
		    strcmp(d->key, key) != 0)
			continue;
		/* Twice is a mistake (or libinih's continuation of an
		 * indented line): say so rather than keep the last. */
		if (c->seen[i] != 0 && d->type != OPT_RULE) {
			fprintf(c->err, "%s:%d: %s is already set on line %d\n",
			    c->path, c->line, key, c->seen[i]);
			c->errors++;
			return 1;
		}
		c->seen[i] = c->line;
		if ((why = set_value(c->cfg, d, value, why_buf,
		    sizeof(why_buf))) != NULL) {
			fprintf(c->err, "%s:%d: %s: %s\n", c->path, c->line,
			    key, why);
			c->errors++;
		}
		return 1;
	}
	/* Unknown keys are errors: a typo must not go unnoticed. */
	fprintf(c->err, "%s:%d: unknown key '%s' in section [%s]\n", c->path,
	    c->line, key, section);
	c->errors++;
	return 1;
}

/* Apply a configuration file; the number of errors, each printed.  The
 * line each setting is on goes to lines[i] (0: not in the file). */
static int
load_file(struct config *cfg, const char *path, FILE *err, int *lines)
{
	struct ini_ctx c = { .path = path, .err = err, .cfg = cfg };
	int r;

	if ((c.f = fopen(path, "r")) == NULL) {
		fprintf(err, "%s: %s\n", path, strerror(errno));
		return 1;
	}
	r = ini_parse_stream(read_line, &c, on_key, &c);
	fclose(c.f);
	memcpy(lines, c.seen, sizeof(c.seen));
	if (r > 0 && !c.syntax) {
		/* Something read_line's check let through. */
		fprintf(err, "%s:%d: syntax error\n", path, r);
		c.errors++;
	} else if (r < 0) {
		fprintf(err, "%s: cannot parse\n", path);
		c.errors++;
	}
	return c.errors;
}

/* Apply the command line over cfg; set from[i] to -1 for each setting
 * it gives (from may be NULL). */
static enum config_result
parse_args(struct config *cfg, int argc, char **argv, FILE *out, FILE *err,
    int *from)
{
	struct option longopts[NDEFS + 1];
	char shortopts[2 * NDEFS + 1];
	size_t ns = 0;
	int verbose = 0, quiet = 0, ch, idx;
	bool cli_rules = false;

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
		case OPT_PATH:
		case OPT_STR:
		case OPT_MODE:
		case OPT_RULE:
		case OPT_DEFAULT:
		case OPT_ADMIN:
		case OPT_ADDR:
		case OPT_URLS:
		case OPT_NODE:
		case OPT_PREFIX:
		case OPT_FILE:
		case OPT_LEVEL: {
			char why_buf[256];
			const char *why;

			/* Rules on the command line replace the file's. */
			if (d->type == OPT_RULE && !cli_rules) {
				cfg->policy.nrules = 0;
				cli_rules = true;
			}
			why = set_value(cfg, d, optarg, why_buf,
			    sizeof(why_buf));
			if (why != NULL) {
				fprintf(err, "procregd: --%s: %s\n", d->name,
				    why);
				return CONFIG_USAGE;
			}
			if (from != NULL)
				from[d - defs] = -1;
			break;
		}
		case OPT_CONFIG:
			if (strlen(optarg) == 0 ||
			    strlen(optarg) >= sizeof(cfg->config_path)) {
				fprintf(err, "procregd: --config: bad path\n");
				return CONFIG_USAGE;
			}
			strcpy(cfg->config_path, optarg);
			break;
		case OPT_CHECK:
			cfg->check_only = true;
			break;
		case OPT_VERBOSE:
			verbose++;
			break;
		case OPT_QUIET:
			quiet = 1;
			break;
		case OPT_FOREGROUND:
			break;
		case OPT_SYSTEM:
			cfg->system = true;
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

/*
 * A setting's error found once the file and the command line are read,
 * worded as theirs: "FILE:LINE: key: why" for a key of the file,
 * "procregd: --option: why" for a flag.
 */
static void
setting_error(const struct config *cfg, const int *from, const char *key,
    const char *why, FILE *err)
{
	for (size_t i = 0; i < NDEFS; i++) {
		if (defs[i].section == NULL || strcmp(defs[i].key, key) != 0)
			continue;
		if (from[i] > 0)
			fprintf(err, "%s:%d: %s: %s\n", cfg->config_path,
			    from[i], key, why);
		else
			fprintf(err, "procregd: --%s: %s\n", defs[i].name, why);
		return;
	}
}

/*
 * [cluster] as a whole, once the file and the command line are read: the
 * number of errors, each printed.  Without etcd nothing is checked
 * beyond each value's own form: the daemon is single-host and ignores
 * the rest.
 */
static int
check_cluster(struct config *cfg, const int *from, FILE *err)
{
	const struct {
		const char	*key;
		const char	*path;
	} files[] = {
		{ "etcd_ca", cfg->etcd_ca },
		{ "etcd_cert", cfg->etcd_cert },
		{ "etcd_key", cfg->etcd_key },
	};
	bool tls = strstr(cfg->etcd, "https://") != NULL;
	char host[256], why[300];
	size_t len;
	int errors = 0;

	if (cfg->etcd[0] == '\0')
		return 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (files[i].path[0] == '\0')
			continue;
		if (!tls) {
			setting_error(cfg, from, files[i].key, "only applies "
			    "to https:// endpoints, and etcd has none", err);
			errors++;
		} else if (cfg->check_only && access(files[i].path, R_OK) < 0) {
			snprintf(why, sizeof(why), "%s: %s", files[i].path,
			    strerror(errno));
			setting_error(cfg, from, files[i].key, why, err);
			errors++;
		}
	}
	if (tls && (cfg->etcd_cert[0] == '\0') != (cfg->etcd_key[0] == '\0')) {
		if (cfg->etcd_cert[0] != '\0')
			setting_error(cfg, from, "etcd_cert", "must be given "
			    "with etcd_key (--etcd-key): a client certificate "
			    "and its key go together", err);
		else
			setting_error(cfg, from, "etcd_key", "must be given "
			    "with etcd_cert (--etcd-cert): a client certificate "
			    "and its key go together", err);
		errors++;
	}
	if (cfg->node[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0) {
			fprintf(err, "procregd: cannot read the host name for "
			    "the node name (%s): set --node or node in "
			    "[cluster]\n", strerror(errno));
			return errors + 1;
		}
		host[sizeof(host) - 1] = '\0';
		len = strcspn(host, ".");
		if (len < sizeof(cfg->node)) {
			memcpy(cfg->node, host, len);
			cfg->node[len] = '\0';
		}
		if (len >= sizeof(cfg->node) || !valid_node(cfg->node)) {
			cfg->node[0] = '\0';
			fprintf(err, "procregd: the host name '%.80s' up to its "
			    "first '.' is no node name (" NODE_RULE "): set "
			    "--node or node in [cluster]\n", host);
			return errors + 1;
		}
	}
	return errors;
}

enum config_result
config_build(struct config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
	char path[sizeof(cfg->config_path)];
	enum config_result r;
	struct stat st;
	bool check, system;
	int from[NDEFS] = { 0 };	/* line in the file, -1: flag */

	/* First pass: where the file is, whether only to check it, and
	 * whether this is the system's daemon. */
	config_defaults(cfg);
	if ((r = parse_args(cfg, argc, argv, out, err, NULL)) != CONFIG_RUN)
		return r;
	strcpy(path, cfg->config_path);
	check = cfg->check_only;
	system = cfg->system || getuid() == 0;
	if (path[0] == '\0' && stat(CONFIG_DEFAULT_FILE, &st) == 0)
		strcpy(path, CONFIG_DEFAULT_FILE);
	/* Then defaults, the file, and the command line over it. */
	config_defaults_for(cfg, system);
	if (path[0] != '\0' && load_file(cfg, path, err, from) > 0)
		return CONFIG_INVALID;
	if ((r = parse_args(cfg, argc, argv, out, err, from)) != CONFIG_RUN)
		return r;
	strcpy(cfg->config_path, path);
	cfg->check_only = check;
	if (check_cluster(cfg, from, err) > 0)
		return CONFIG_INVALID;
	return CONFIG_RUN;
}
