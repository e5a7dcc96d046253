/*
 * procregctl.c: the command-line tool of procreg.  Looks names up, lists
 * them, sends messages, calls, holds a name while a command runs (or
 * waits in its queue first), serves calls with a command, receives
 * messages, joins groups and publishes to them, waits for a name to come
 * or to go away, watches the registry's changes, and shows the daemon's
 * counters.
 * Built on libprocreg (include/procreg.h) alone; jansson reads and writes
 * JSON, msgpack-c packs JSON payloads.
 *
 * One command table (name, handler, operands, help) and one option table
 * (which commands take each option) drive parsing and every --help.
 */
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>

#include "procreg-protocol.h"
#include "procreg.h"

/* Exit statuses (hold exits with its command's own status). */
enum {
	EXIT_NO = 1,		/* a "no": not found, taken, busy, noproc,
				   down, forbidden, a callee's error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* cannot connect, or the connection was lost */
	EXIT_ERROR = 4,		/* anything else */
	EXIT_LOST = 5,		/* hold, serve: the name was taken from us */
	EXIT_NOEXEC = 127	/* hold: the command cannot be run */
};

/* hold, serve: how long CMD's group has between SIGTERM and SIGKILL, ms
 * (--kill-after).  Enough for a service to shut down cleanly, short
 * enough that a lost name's old holder does not linger. */
#define KILL_AFTER_MS	5000

/* How often a hold retries a lost daemon connection, ms. */
#define RETRY_MS	100

/* Which commands take an option: one bit per command, C_TOP before one. */
enum {
	C_TOP = 1 << 0,
	C_WHEREIS = 1 << 1,
	C_LIST = 1 << 2,
	C_SEND = 1 << 3,
	C_HOLD = 1 << 4,
	C_RECV = 1 << 5,
	C_MONITOR = 1 << 6,
	C_STATS = 1 << 7,
	C_PING = 1 << 8,
	C_EVICT = 1 << 9,
	C_CALL = 1 << 10,
	C_SERVE = 1 << 11,
	C_JOIN = 1 << 12,
	C_MEMBERS = 1 << 13,
	C_PUBLISH = 1 << 14,
	C_KEYS = 1 << 15,
	C_AWAIT = 1 << 16,
	C_WATCH = 1 << 17,
	C_QUEUE = 1 << 18,
	C_ALL = (1 << 19) - 1
};

enum opt_id {
	OPT_SOCKET, OPT_JSON, OPT_TIMEOUT, OPT_HELP, OPT_VERSION,
	OPT_JSON_PAYLOAD, OPT_CONN, OPT_GEN, OPT_VALUE, OPT_JSON_VALUE,
	OPT_WAIT, OPT_ALLOW_REPLACEMENT, OPT_REPLACE, OPT_NO_ECHO,
	OPT_MAX_TIME, OPT_COUNT, OPT_INTERVAL, OPT_GROUPS, OPT_SINCE,
	OPT_KILL_AFTER, OPT__COUNT
};

struct ctl_option {
	const char	*name;
	int		 shortopt;
	const char	*arg;		/* NULL: takes no argument */
	unsigned	 cmds;
	const char	*help;
};

static const struct ctl_option options[OPT__COUNT] = {
	[OPT_SOCKET] = { "socket", 's', "PATH", C_ALL, "the daemon's socket "
	    "(default: $PROCREG_SOCKET, else $XDG_RUNTIME_DIR/procreg.sock, "
	    "else /run/procreg/procreg.sock for root, else "
	    "/tmp/procreg-UID/procreg.sock)" },
	[OPT_JSON] = { "json", 0, NULL, C_ALL, "print JSON for scripts: one "
	    "document per item (list, members, queue: one array; recv, join, "
	    "watch: one object per line)" },
	[OPT_TIMEOUT] = { "timeout", 't', "MS", C_ALL, "how long each request "
	    "may wait for its reply (default 10000; call: how long the callee "
	    "has to reply, default 5000; await: how long to wait for NAME, "
	    "default 5000)" },
	[OPT_HELP] = { "help", 'h', NULL, C_ALL, "show this help and exit" },
	[OPT_VERSION] = { "version", 'V', NULL, C_TOP, "show the version and "
	    "exit" },
	[OPT_JSON_PAYLOAD] = { "json-payload", 0, NULL, C_SEND | C_CALL |
	    C_PUBLISH, "PAYLOAD is JSON, sent as the same msgpack value "
	    "(default: a str)" },
	[OPT_CONN] = { "conn", 0, NULL, C_SEND | C_CALL | C_MONITOR, "NAME is "
	    "a connection id (its digits), not a name" },
	[OPT_GEN] = { "gen", 0, "G", C_SEND, "send only while NAME's "
	    "registration has generation G (as whereis shows it); else exit "
	    "1, stale" },
	[OPT_VALUE] = { "value", 0, "V", C_HOLD, "register NAME with value V "
	    "(a str; default: no value)" },
	[OPT_JSON_VALUE] = { "json-value", 0, NULL, C_HOLD | C_JOIN, "the "
	    "value (V, VALUE) is JSON, stored as the same msgpack value" },
	[OPT_WAIT] = { "wait", 'w', NULL, C_HOLD, "when NAME is taken, wait in "
	    "its queue until it passes to us, then run CMD" },
	[OPT_ALLOW_REPLACEMENT] = { "allow-replacement", 0, NULL, C_HOLD,
	    "let a hold --replace take NAME over (CMD is then stopped, and "
	    "hold exits 5)" },
	[OPT_REPLACE] = { "replace", 0, NULL, C_HOLD, "take NAME over from a "
	    "holder that allows it" },
	[OPT_NO_ECHO] = { "no-echo", 0, NULL, C_PUBLISH, "publish with echo "
	    "false (not to the publisher's own connection)" },
	[OPT_MAX_TIME] = { "max-time", 0, "MS", C_SERVE, "kill CMD when it "
	    "runs longer than MS, and answer failed (default: no limit)" },
	[OPT_COUNT] = { "count", 'c', "N", C_RECV | C_JOIN | C_SERVE | C_PING,
	    "stop after N (recv: messages, join: publishes, serve: calls, "
	    "ping: pings; default ping: 1, others: none)" },
	[OPT_INTERVAL] = { "interval", 'i', "MS", C_PING, "wait MS between "
	    "pings (default 1000)" },
	[OPT_GROUPS] = { "groups", 'g', NULL, C_WATCH, "the groups under "
	    "PREFIX too: their members joining and leaving" },
	[OPT_SINCE] = { "since", 0, "SEQ", C_WATCH, "resume after event SEQ "
	    "(the last one a watch printed): no snapshot, the events since" },
	[OPT_KILL_AFTER] = { "kill-after", 0, "MS", C_HOLD | C_SERVE, "when "
	    "CMD's process group is told to end (SIGTERM, or a signal passed "
	    "on), SIGKILL what is left of it MS later (default 5000; 0: at "
	    "once)" },
};

struct command;

/* The parsed command line and the connection: all the tool's state. */
struct ctl {
	const struct command	*cmd;
	const char		*socket;	/* NULL: the default path */
	int			 timeout_ms;	/* 0: the library's default */
	bool			 json;
	bool			 json_payload;
	const char		*value;
	bool			 json_value;
	uint64_t		 count;		/* 0: not given */
	uint64_t		 interval_ms;
	bool			 conn;		/* NAME is a conn id */
	bool			 no_echo;
	uint64_t		 max_time_ms;	/* 0: none */
	uint64_t		 kill_after_ms;
	bool			 has_gen;
	uint64_t		 gen;
	bool			 wait;		/* hold --wait */
	bool			 allow_replacement;
	bool			 replace;
	bool			 groups;	/* watch --groups */
	bool			 has_since;
	uint64_t		 since;
	char			**args;		/* the operands */
	int			 nargs;
	procreg_t		*p;
};

struct command {
	const char	*name;
	int		(*run)(struct ctl *);
	unsigned	 bit;
	int		 min_args, max_args;	/* max -1: no limit */
	bool		 reconnect;	/* connect with auto_reconnect */
	const char	*synopsis;	/* the operands */
	const char	*summary;	/* one line for procregctl --help */
	const char	*help;		/* the rest of COMMAND --help */
};

static int	cmd_whereis(struct ctl *);
static int	cmd_list(struct ctl *);
static int	cmd_send(struct ctl *);
static int	cmd_hold(struct ctl *);
static int	cmd_recv(struct ctl *);
static int	cmd_monitor(struct ctl *);
static int	cmd_stats(struct ctl *);
static int	cmd_ping(struct ctl *);
static int	cmd_evict(struct ctl *);
static int	cmd_call(struct ctl *);
static int	cmd_serve(struct ctl *);
static int	cmd_join(struct ctl *);
static int	cmd_members(struct ctl *);
static int	cmd_publish(struct ctl *);
static int	cmd_keys(struct ctl *);
static int	cmd_await(struct ctl *);
static int	cmd_watch(struct ctl *);
static int	cmd_queue(struct ctl *);

static const struct command commands[] = {
	{ "whereis", cmd_whereis, C_WHEREIS, 1, 1, false, "NAME",
	    "show who holds NAME",
	    "Print the registration of NAME: name, conn, pid, uid, gid, value "
	    "(as JSON) and since (when it was registered, UTC).  Exit 1 when "
	    "NAME is not registered." },
	{ "await", cmd_await, C_AWAIT, 1, 1, false, "NAME",
	    "wait until NAME is registered",
	    "Wait until NAME is registered (at once when it is) and print its "
	    "registration, as whereis does.  -t is how long to wait (default "
	    "5000, at most 86400000).  Exit 1 when NAME is still not "
	    "registered by then, so that `procregctl await db && start-app` "
	    "starts the app once db is there, without polling." },
	{ "list", cmd_list, C_LIST, 0, 1, false, "[PREFIX]",
	    "list the names (that start with PREFIX)",
	    "Print a table of every registered name that starts with PREFIX "
	    "(all names without one), in name order: NAME CONN PID UID VALUE "
	    "AGE.  With --json, one array of entry objects." },
	{ "send", cmd_send, C_SEND, 2, 2, false, "NAME PAYLOAD",
	    "send a message to the holder of NAME",
	    "Send PAYLOAD to the connection that holds NAME: a msgpack str, or "
	    "with --json-payload the JSON value as msgpack (objects as maps, "
	    "reals as float64, null as nil).  Prints nothing on success.  Exit "
	    "1 when NAME is not registered or its holder is busy (its queue "
	    "is full: retry later), or with --gen when NAME's registration "
	    "has another generation (stale: it changed hands).  Put -- before "
	    "a PAYLOAD that starts with a dash.  With --conn, NAME is a "
	    "connection id." },
	{ "call", cmd_call, C_CALL, 2, 2, false, "NAME PAYLOAD",
	    "call the holder of NAME and print its reply",
	    "Call the connection that holds NAME with PAYLOAD (a str, or JSON "
	    "with --json-payload) and print the reply: a str as it is (with a "
	    "newline unless it ends with one), anything else as JSON; with "
	    "--json, the reply as one JSON document.  -t is how long the "
	    "callee has to reply (default 5000, at most 86400000).  Exit 1 "
	    "when NAME is not registered, its holder is busy or goes away "
	    "before it replies (down), or the callee answers with an error "
	    "(printed as CODE: MESSAGE); exit 4 when it does not reply in "
	    "time (timeout).  With --conn, NAME is a connection id." },
	{ "hold", cmd_hold, C_HOLD, 2, -1, true, "NAME [--] CMD [ARGS...]",
	    "hold NAME for as long as CMD runs",
	    "Register NAME, run CMD, and exit with CMD's status (128+N when a "
	    "signal N killed it); the name goes away when CMD ends.  NAME is "
	    "held by procregctl's own connection: its pid is procregctl's.  "
	    "CMD runs in a process group of its own, under a guardian process "
	    "of procregctl's, and everything it starts there is stopped with "
	    "it: when CMD ends, what it left gets SIGTERM; hold exits once "
	    "the whole group has ended.  When procregctl runs in the "
	    "foreground of the terminal on its standard input, CMD's group "
	    "takes the terminal, so that CMD can read it and ^C and ^Z reach "
	    "CMD (^Z stops procregctl too).  SIGINT, SIGTERM and SIGHUP sent "
	    "to procregctl are passed on to CMD's group, and SIGKILL "
	    "--kill-after MS later if any of it is left.  If procregctl itself "
	    "is killed, even by SIGKILL, the name goes away at once and the "
	    "guardian stops CMD's group the same way (SIGTERM, then SIGKILL).  "
	    "If the daemon restarts, NAME is registered again.  Exit 1 at "
	    "once when NAME is taken (the holder's conn and pid are printed), "
	    "127 when CMD cannot be run.  With --wait, a taken NAME is waited "
	    "for instead: procregctl queues for it, prints its place in the "
	    "queue on stderr, and runs CMD once NAME passes to it, when the "
	    "holder and the waiters before it have gone away (each holder has "
	    "a new generation); SIGINT, SIGTERM or SIGHUP while it waits end "
	    "it with 128+N.  If NAME is lost while CMD runs (an administrator "
	    "evicted it, it was taken over with --replace from a hold "
	    "--allow-replacement, or someone else registered it while the "
	    "daemon restarted; with --wait, another waiter got it first), "
	    "CMD's group gets SIGTERM, SIGKILL after --kill-after, and "
	    "procregctl exits 5 once all of it has ended.  The name is "
	    "someone else's before hold hears of it: a new holder may start "
	    "while the old CMD stops, for the time its SIGTERM takes (at most "
	    "--kill-after).  Options go before CMD: everything after NAME is "
	    "CMD's." },
	{ "serve", cmd_serve, C_SERVE, 2, -1, false, "NAME [--] CMD [ARGS...]",
	    "hold NAME and answer each call by running CMD",
	    "Register NAME and answer each call to it by running CMD with the "
	    "call's payload on its standard input (a str as it is, anything "
	    "else as JSON and a newline) and PROCREG_CALLER set to the "
	    "caller's conn: the reply is CMD's standard output, as a str.  "
	    "When CMD exits with a non-zero status (or is killed), the reply "
	    "is the error failed, its message CMD's standard error or its exit "
	    "status.  Calls are answered one at a time, in the order they "
	    "came; meanwhile procregctl keeps reading its connection, so that "
	    "the daemon's output to it keeps draining, and a caller whose "
	    "call times out while it waits gets timeout.  Each CMD runs in a "
	    "process group of its own, as hold's does, and ends with all it "
	    "started.  Runs until --count calls were answered, or SIGINT or "
	    "SIGTERM (exit 0; a CMD running then gets SIGTERM, SIGKILL after "
	    "--kill-after, and its caller gets down).  Exit 1 when NAME is "
	    "taken, 3 when the daemon goes away, 5 when NAME is lost (an "
	    "administrator evicted it; a CMD running then is stopped the same "
	    "way).  Options go before CMD: everything after NAME is CMD's." },
	{ "recv", cmd_recv, C_RECV, 1, 1, false, "NAME",
	    "hold NAME and print the messages sent to it",
	    "Register NAME and print each message sent to it, one per line: a "
	    "str as it is, anything else as JSON.  With --json each line is "
	    "{\"name\": ..., \"sender\": CONN, \"payload\": JSON}.  Runs "
	    "until --count messages came, or SIGINT or SIGTERM (exit 0).  Exit "
	    "1 when NAME is taken." },
	{ "join", cmd_join, C_JOIN, 1, 2, false, "GROUP [VALUE]",
	    "join GROUP and print what is published to it",
	    "Join GROUP (with VALUE, a str or with --json-value JSON; default: "
	    "no value) and print each payload published to it, one per line: "
	    "a str as it is, anything else as JSON.  With --json each line is "
	    "{\"group\": ..., \"sender\": CONN, \"payload\": JSON}.  The "
	    "membership lasts until --count publishes came, or SIGINT or "
	    "SIGTERM (exit 0).  Exit 1 when GROUP is forbidden to you." },
	{ "members", cmd_members, C_MEMBERS, 1, 1, false, "GROUP",
	    "list the members of GROUP",
	    "Print a table of the members of GROUP, in the order they joined: "
	    "CONN PID UID VALUE AGE.  A group without members prints the "
	    "header only.  With --json, one array of member objects (group, "
	    "conn, pid, uid, gid, value, since, gen)." },
	{ "publish", cmd_publish, C_PUBLISH, 2, 2, false, "GROUP PAYLOAD",
	    "send PAYLOAD to every member of GROUP",
	    "Publish PAYLOAD (a str, or JSON with --json-payload) to every "
	    "member of GROUP and print to how many it went, and which members "
	    "were busy (their queue is full) and did not get it; with --json, "
	    "{\"delivered\": N, \"busy\": [CONN, ...]}.  A group without "
	    "members is no error: delivered 0.  procregctl's own connection "
	    "is no member, so --no-echo only passes echo false on." },
	{ "monitor", cmd_monitor, C_MONITOR, 1, 1, false, "NAME",
	    "wait until NAME goes away",
	    "Monitor the current registration of NAME and wait until it ends; "
	    "print why (unregistered, disconnected, evicted, replaced) and "
	    "exit 0; a hand-over to a waiter of the name ends it too, with the "
	    "old holder's reason.  When NAME is not registered, print noproc "
	    "and exit 1.  With --conn, NAME is a connection id: wait until "
	    "that connection goes away (disconnected)." },
	{ "watch", cmd_watch, C_WATCH, 0, 1, false, "[PREFIX]",
	    "print the names under PREFIX, then each change",
	    "Subscribe to the names that start with PREFIX (all without one) "
	    "and print, one line each: first the snapshot, SEQ entry NAME "
	    "conn=C pid=P gen=G value=JSON (SEQ: the last event so far; with "
	    "--groups, SEQ member GROUP ... for the members of the groups "
	    "under PREFIX), then each change as it happens, SEQ KIND NAME ...: "
	    "registered, updated and handover (the new holder) with the "
	    "entry's fields, unregistered NAME reason=R, and with --groups "
	    "joined and left GROUP with the member's.  With --since SEQ, no "
	    "snapshot: the changes after SEQ, then the live ones; when the "
	    "daemon no longer has them all, the line SEQ gap since=SEQ and a "
	    "new snapshot come instead.  If watch falls behind, the daemon "
	    "ends its subscription and watch resumes after the last change it "
	    "printed (a note on stderr; a gap line only when changes were "
	    "lost).  With --json each line is {\"seq\": SEQ, \"kind\": KIND, "
	    "\"payload\": ...}: the entry or member, [NAME, REASON] for "
	    "unregistered, and {\"seq\": SEQ, \"kind\": \"gap\", \"since\": "
	    "SEQ} for a gap.  Runs until SIGINT or SIGTERM (exit 0); exit 3 "
	    "when the daemon goes away." },
	{ "keys", cmd_keys, C_KEYS, 1, 1, false, "CONN",
	    "show the names and groups of a connection",
	    "Print the names that connection CONN holds and the groups it is "
	    "a member of, each sorted, one per line under names: and groups:.  "
	    "With --json, {\"names\": [...], \"groups\": [...]}.  Exit 1 when "
	    "no connection CONN is open." },
	{ "queue", cmd_queue, C_QUEUE, 1, 1, false, "NAME",
	    "list the connections waiting for NAME",
	    "Print the connection ids waiting in NAME's queue (hold --wait), "
	    "first in line first, one per line; nothing when none wait.  With "
	    "--json, one array." },
	{ "stats", cmd_stats, C_STATS, 0, 0, false, "",
	    "show the daemon's counters",
	    "Print the daemon's gauges and counters, one per line." },
	{ "ping", cmd_ping, C_PING, 0, 0, false, "",
	    "check that the daemon answers",
	    "Say hello to the daemon and print its version and the round-trip "
	    "time." },
	{ "evict", cmd_evict, C_EVICT, 1, 1, false, "NAME",
	    "remove NAME, whoever holds it (administrators)",
	    "Remove the registration of NAME whoever holds it; its monitors "
	    "fire with reason evicted, and its holder's connection stays "
	    "open.  For uid 0, the daemon's own user and the admin_group of "
	    "procreg.conf(5).  Exit 1 when NAME is not registered or evict is "
	    "forbidden to you." },
};
#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* One line of the stats table: a key and where struct procreg_stats
 * keeps it. */
static const struct {
	const char	*key;
	size_t		 offset;
} stats_keys[] = {
#define K(f) { #f, offsetof(struct procreg_stats, f) }
	K(connections), K(names), K(monitors), K(requests), K(messages),
	K(downs), K(notifications_ignored), K(connections_total),
	K(uptime_ms), K(groups), K(members), K(calls), K(replies_late),
	K(awaits), K(subscriptions), K(seq),
#undef K
};
#define NSTATS		(sizeof(stats_keys) / sizeof(stats_keys[0]))

/* ---- help ---- */

/* Print words wrapped before column 79, starting at column indent, with
 * continuation lines indented as much. */
static void
print_wrapped(FILE *f, const char *text, size_t indent)
{
	size_t col = indent;

	while (*text != '\0') {
		size_t n = strcspn(text, " ");

		if (col > indent && col + 1 + n > 79) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(text, 1, n, f);
		col += n;
		text += n;
		text += strspn(text, " ");
	}
	fputc('\n', f);
}

/* Print the options that cmds take, one per line. */
static void
print_options(FILE *f, unsigned cmds)
{
	for (size_t i = 0; i < OPT__COUNT; i++) {
		const struct ctl_option *o = &options[i];
		char left[40];

		if (!(o->cmds & cmds))
			continue;
		snprintf(left, sizeof(left), "%c%c%c --%s%s%s",
		    o->shortopt ? '-' : ' ', o->shortopt ? o->shortopt : ' ',
		    o->shortopt ? ',' : ' ', o->name, o->arg ? " " : "",
		    o->arg ? o->arg : "");
		/* A long option gets its help on the next line. */
		if (strlen(left) > 22)
			fprintf(f, "  %s\n%25s", left, "");
		else
			fprintf(f, "  %-22s ", left);
		print_wrapped(f, o->help, 25);
	}
}

/* The tool's --help. */
static void
usage(FILE *f)
{
	fputs("usage: procregctl [-s SOCKET] [--json] [-t MS] COMMAND "
	    "[ARGS...]\n"
	    "       procregctl COMMAND --help\n"
	    "       procregctl --version\n\n"
	    "Talk to procregd, the procreg process registry: look names up, "
	    "send messages,\ncall and serve calls, hold a name while a command "
	    "runs (or queue for it),\njoin groups and publish to them, wait for "
	    "a name to come or to go away,\nwatch the registry's changes.\n"
	    "\nCommands:\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char left[40];

		snprintf(left, sizeof(left), "%s %s", commands[i].name,
		    commands[i].synopsis);
		fprintf(f, "  %-30s %s\n", left, commands[i].summary);
	}
	fputs("\nOptions (before or after the command):\n", f);
	print_options(f, C_TOP);
	fputs("\nExit status:\n"
	    "  0    success\n"
	    "  1    a \"no\": not registered, taken, busy, noproc, down, "
	    "forbidden, ...\n"
	    "  2    usage error\n"
	    "  3    cannot reach the daemon, or the connection was lost\n"
	    "  4    any other error (protocol error, limit, too large, "
	    "timeout, ...)\n"
	    "  5    hold, serve: NAME was lost (evicted, replaced, or taken at "
	    "a restart)\n"
	    "  hold exits with CMD's status (128+N if signal N killed it), 1 "
	    "when NAME\n  is taken, 127 when CMD cannot be run.\n", f);
}

/* A command's --help. */
static void
command_usage(FILE *f, const struct command *cmd)
{
	fprintf(f, "usage: procregctl %s [OPTIONS]%s%s\n\n", cmd->name,
	    cmd->synopsis[0] ? " " : "", cmd->synopsis);
	print_wrapped(f, cmd->help, 0);
	fputs("\nOptions:\n", f);
	print_options(f, cmd->bit);
}

/* Report a bad command line; returns EXIT_USAGE. */
static int
usage_error(const struct command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("procregctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'procregctl %s%s--help'.\n",
	    cmd ? cmd->name : "", cmd ? " " : "");
	return EXIT_USAGE;
}

/* ---- command line ---- */

/* Parse a decimal number from min to max; false when s is not one. */
static bool
parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
	    v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Apply one option of the command line; -1 to go on, else the exit
 * status (--help and --version print their own output). */
static int
apply_option(struct ctl *c, enum opt_id id)
{
	uint64_t v;

	switch (id) {
	case OPT_SOCKET:
		if (optarg[0] == '\0')
			return usage_error(c->cmd, "--socket: empty path");
		c->socket = optarg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_TIMEOUT:
		if (!parse_num(optarg, 1, INT_MAX, &v))
			return usage_error(c->cmd, "--timeout: expected "
			    "milliseconds from 1 to %d", INT_MAX);
		c->timeout_ms = (int)v;
		break;
	case OPT_HELP:
		if (c->cmd != NULL)
			command_usage(stdout, c->cmd);
		else
			usage(stdout);
		return EXIT_SUCCESS;
	case OPT_VERSION:
		printf("procregctl %s (protocol %d)\n", PR_VERSION,
		    PR_PROTOCOL_VERSION);
		return EXIT_SUCCESS;
	case OPT_JSON_PAYLOAD:
		c->json_payload = true;
		break;
	case OPT_CONN:
		c->conn = true;
		break;
	case OPT_NO_ECHO:
		c->no_echo = true;
		break;
	case OPT_MAX_TIME:
		if (!parse_num(optarg, 1, INT_MAX, &c->max_time_ms))
			return usage_error(c->cmd, "--max-time: expected "
			    "milliseconds from 1 to %d", INT_MAX);
		break;
	case OPT_VALUE:
		c->value = optarg;
		break;
	case OPT_JSON_VALUE:
		c->json_value = true;
		break;
	case OPT_COUNT:
		if (!parse_num(optarg, 1, UINT64_MAX, &c->count))
			return usage_error(c->cmd, "--count: expected a "
			    "number from 1");
		break;
	case OPT_INTERVAL:
		if (!parse_num(optarg, 0, 3600000, &c->interval_ms))
			return usage_error(c->cmd, "--interval: expected "
			    "milliseconds from 0 to 3600000");
		break;
	case OPT_GEN:
		if (!parse_num(optarg, 1, UINT64_MAX, &c->gen))
			return usage_error(c->cmd, "--gen: expected a "
			    "generation (a number from 1)");
		c->has_gen = true;
		break;
	case OPT_WAIT:
		c->wait = true;
		break;
	case OPT_ALLOW_REPLACEMENT:
		c->allow_replacement = true;
		break;
	case OPT_REPLACE:
		c->replace = true;
		break;
	case OPT_GROUPS:
		c->groups = true;
		break;
	case OPT_SINCE:
		if (!parse_num(optarg, 0, UINT64_MAX, &c->since))
			return usage_error(c->cmd, "--since: expected an event "
			    "number (SEQ)");
		c->has_since = true;
		break;
	case OPT_KILL_AFTER:
		if (!parse_num(optarg, 0, INT_MAX, &c->kill_after_ms))
			return usage_error(c->cmd, "--kill-after: expected "
			    "milliseconds from 0 to %d", INT_MAX);
		break;
	case OPT__COUNT:
		break;
	}
	return -1;
}

/*
 * Parse argv: before the command (c->cmd NULL) the global options up to
 * the command's name; after it, the command's options and operands, in
 * any order, into c->args.  Everything after "--", and for hold and serve
 * everything after NAME (CMD and its own options), is operands.  -1 to go
 * on, else the exit status.
 */
static int
parse_args(struct ctl *c, int argc, char **argv)
{
	unsigned cmds = c->cmd != NULL ? c->cmd->bit : C_TOP;
	struct option longopts[OPT__COUNT + 1];
	char shortopts[2 * OPT__COUNT + 3];
	size_t nl = 0, ns = 0;
	int ch, prev, r;

	memset(longopts, 0, sizeof(longopts));
	/* '+': stop at each operand; ':': report a missing argument. */
	shortopts[ns++] = '+';
	shortopts[ns++] = ':';
	for (size_t i = 0; i < OPT__COUNT; i++) {
		if (!(options[i].cmds & cmds))
			continue;
		longopts[nl].name = options[i].name;
		longopts[nl].has_arg = options[i].arg ? required_argument :
		    no_argument;
		longopts[nl++].val = options[i].shortopt ? options[i].shortopt :
		    256 + (int)i;
		if (options[i].shortopt) {
			shortopts[ns++] = (char)options[i].shortopt;
			if (options[i].arg)
				shortopts[ns++] = ':';
		}
	}
	shortopts[ns] = '\0';
	optind = 0;		/* glibc: start afresh */
	opterr = 0;
	for (;;) {
		size_t id;

		prev = optind > 0 ? optind : 1;	/* 0 scans from 1 */
		ch = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (ch == -1) {
			bool dashdash = optind == prev + 1 &&
			    strcmp(argv[prev], "--") == 0;

			if (c->cmd == NULL || optind >= argc)
				return -1;
			if (dashdash || ((c->cmd->bit == C_HOLD ||
			    c->cmd->bit == C_SERVE) && c->nargs > 0)) {
				/* The rest are operands, as they are. */
				while (optind < argc)
					c->args[c->nargs++] = argv[optind++];
				return -1;
			}
			c->args[c->nargs++] = argv[optind++];
			continue;
		}
		if (ch == '?' || ch == ':') {
			const char *what = argv[optind - 1];
			char buf[3] = { '-', (char)optopt, '\0' };

			if (optopt > 0 && optopt < 256)
				what = buf;
			return usage_error(c->cmd, ch == ':' ? "option '%s' "
			    "needs an argument" : "unknown option '%s'", what);
		}
		for (id = 0; id < OPT__COUNT; id++) {
			if (ch == options[id].shortopt ||
			    ch == 256 + (int)id)
				break;
		}
		if ((r = apply_option(c, (enum opt_id)id)) >= 0)
			return r;
	}
}

/* Look up a command by name; NULL when there is none. */
static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

/* Check a NAME operand as the daemon would (length only). */
static bool
check_name(const struct ctl *c, const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > PR_NAME_MAX) {
		usage_error(c->cmd, "a name is 1 to %d bytes", PR_NAME_MAX);
		return false;
	}
	return true;
}

/* ---- errors ---- */

/* The exit status of a failed call's status. */
static int
status_exit(int status)
{
	switch (status) {
	case PROCREG_OK:
		return EXIT_SUCCESS;
	case PROCREG_E_TAKEN:
	case PROCREG_E_NOT_FOUND:
	case PROCREG_E_NOT_OWNER:
	case PROCREG_E_BUSY:
	case PROCREG_E_FORBIDDEN:
	case PROCREG_E_DOWN:
	case PROCREG_E_STALE:
		return EXIT_NO;
	case PROCREG_E_CONNECT:
	case PROCREG_E_CLOSED:
		return EXIT_UNREACHABLE;
	default:
		return EXIT_ERROR;
	}
}

/* The protocol's error code for a status from the daemon. */
static const char *
protocol_code(int status)
{
	static const char *const codes[] = {
		[PROCREG_E_BAD_REQUEST] = "bad_request",
		[PROCREG_E_UNKNOWN_METHOD] = "unknown_method",
		[PROCREG_E_TAKEN] = "taken",
		[PROCREG_E_NOT_FOUND] = "not_found",
		[PROCREG_E_NOT_OWNER] = "not_owner",
		[PROCREG_E_BUSY] = "busy",
		[PROCREG_E_LIMIT] = "limit",
		[PROCREG_E_TOO_LARGE] = "too_large",
		[PROCREG_E_FORBIDDEN] = "forbidden",
		[PROCREG_E_CALL_TIMEOUT] = "timeout",
		[PROCREG_E_DOWN] = "down",
		[PROCREG_E_STALE] = "stale",
	};

	if (status > 0 && (size_t)status < sizeof(codes) / sizeof(codes[0]) &&
	    codes[status] != NULL)
		return codes[status];
	return "error";
}

/*
 * Report a failed call on stderr ("procregctl: [WHAT: ]STATUS: MESSAGE")
 * and return its exit status.  A connection the daemon closed may have
 * been explained by an error notification (too_large, limit, ...): that
 * is reported instead, as exit 4.
 */
static int
report(struct ctl *c, int status, const char *what)
{
	struct procreg_event *ev = NULL;
	char msg[256];

	snprintf(msg, sizeof(msg), "%s", procreg_errmsg(c->p));
	if (c->p != NULL && (status == PROCREG_E_CLOSED ||
	    status == PROCREG_E_CONNECT)) {
		while (procreg_next_event(c->p, 0, &ev) == PROCREG_OK &&
		    ev->kind != PROCREG_EV_ERROR) {
			procreg_event_free(ev);
			ev = NULL;
		}
	}
	if (ev != NULL && ev->kind == PROCREG_EV_ERROR) {
		fprintf(stderr, "procregctl: %s%sthe daemon closed the "
		    "connection: %s: %s\n", what ? what : "", what ? ": " : "",
		    ev->reason, ev->message);
		procreg_event_free(ev);
		return EXIT_ERROR;
	}
	procreg_event_free(ev);
	fprintf(stderr, "procregctl: %s%s%s: %s\n", what ? what : "",
	    what ? ": " : "", procreg_strstatus(status), msg);
	return status_exit(status);
}

/* ---- text and JSON output ---- */

/* Replace each byte that is not part of well-formed UTF-8 by '?'. */
static void
utf8_scrub(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char b = (unsigned char)s[i];
		size_t n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 :
		    b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
		bool ok = n > 0 && i + n <= len;

		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (ok && n > 2) {
			unsigned char b1 = (unsigned char)s[i + 1];

			/* Overlong forms, surrogates, above U+10FFFF. */
			ok = !(b == 0xe0 && b1 < 0xa0) &&
			    !(b == 0xed && b1 >= 0xa0) &&
			    !(b == 0xf0 && b1 < 0x90) &&
			    !(b == 0xf4 && b1 >= 0x90);
		}
		if (!ok) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/* msgpack bytes as JSON text (procreg_format_json), in malloc'd memory. */
static char *
mp_text(const void *mp, size_t len)
{
	char small[256], *buf;
	int n;

	n = procreg_format_json(small, sizeof(small), mp, len);
	if (n < 0)
		return strdup("null");
	if ((buf = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if ((size_t)n < sizeof(small))
		memcpy(buf, small, (size_t)n + 1);
	else
		procreg_format_json(buf, (size_t)n + 1, mp, len);
	utf8_scrub(buf, (size_t)n);
	return buf;
}

/*
 * msgpack bytes as a jansson value.  What JSON cannot hold (NaN, integers
 * beyond int64) comes out as the string of its text.
 */
static json_t *
mp_json(const void *mp, size_t len)
{
	char *text = mp_text(mp, len);
	json_t *j;

	if (text == NULL)
		return NULL;
	j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (j == NULL)
		j = json_string(text);
	free(text);
	return j;
}

/* Print one JSON document (dump flags added) and a newline, and free it;
 * false on failure. */
static bool
put_json(json_t *j, size_t flags)
{
	int r;

	if (j == NULL) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	r = json_dumpf(j, stdout, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
	    flags);
	json_decref(j);
	if (r < 0 || putchar('\n') == EOF || fflush(stdout) == EOF) {
		fprintf(stderr, "procregctl: cannot write the output\n");
		return false;
	}
	return true;
}

/* An entry as a JSON object (value embedded as JSON, since in ms). */
static json_t *
entry_json(const struct procreg_entry *e)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:o?, s:I, s:I}",
	    "name", e->name, "conn", (json_int_t)e->conn,
	    "pid", (json_int_t)e->pid, "uid", (json_int_t)e->uid,
	    "gid", (json_int_t)e->gid,
	    "value", mp_json(e->value, e->value_len),
	    "since", (json_int_t)e->since_ms, "gen", (json_int_t)e->gen);
}

/* A member entry as a JSON object, the same way. */
static json_t *
member_json(const struct procreg_member *m)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:o?, s:I, s:I}",
	    "group", m->group, "conn", (json_int_t)m->conn,
	    "pid", (json_int_t)m->pid, "uid", (json_int_t)m->uid,
	    "gid", (json_int_t)m->gid,
	    "value", mp_json(m->value, m->value_len),
	    "since", (json_int_t)m->since_ms, "gen", (json_int_t)m->gen);
}

/* A name made safe for a terminal: control bytes as \xNN. */
static char *
safe_text(const char *s)
{
	size_t n = 0;
	char *d, *q;

	for (const char *p = s; *p; p++)
		n += (unsigned char)*p < 0x20 || *p == 0x7f ? 4 : 1;
	if ((d = malloc(n + 1)) == NULL)
		return NULL;
	for (q = d; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			q += sprintf(q, "\\x%02x", (unsigned char)*s);
		else
			*q++ = *s;
	}
	*q = '\0';
	return d;
}

/* Columns a UTF-8 string takes (one per code point). */
static size_t
text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

/* Now, in Unix epoch milliseconds. */
static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A duration in its largest whole unit: 5s, 3m, 2h, 4d. */
static void
fmt_age(char *buf, size_t size, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (s < 60)
		snprintf(buf, size, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRIu64 "m", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRIu64 "h", s / 3600);
	else
		snprintf(buf, size, "%" PRIu64 "d", s / 86400);
}

/* The age of a registration made at since_ms. */
static void
fmt_since_age(char *buf, size_t size, uint64_t since_ms)
{
	uint64_t now = now_ms();

	fmt_age(buf, size, now > since_ms ? now - since_ms : 0);
}

/* An epoch time in ms as ISO 8601 UTC with milliseconds. */
static void
fmt_time(char *buf, size_t size, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char day[32];

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(buf, size, "%" PRIu64 " ms", ms);
		return;
	}
	snprintf(buf, size, "%s.%03uZ", day, (unsigned)(ms % 1000));
}

/* Print an entry as aligned "key: value" lines. */
static bool
print_entry(const struct procreg_entry *e)
{
	char *name = safe_text(e->name), *value = mp_text(e->value,
	    e->value_len);
	char when[64], age[32];
	bool ok = name != NULL && value != NULL;

	if (ok) {
		fmt_time(when, sizeof(when), e->since_ms);
		fmt_since_age(age, sizeof(age), e->since_ms);
		printf("name:  %s\nconn:  %" PRIu64 "\npid:   %" PRId64 "\n"
		    "uid:   %" PRId64 "\ngid:   %" PRId64 "\nvalue: %s\n"
		    "since: %s (%s ago)\ngen:   %" PRIu64 "\n", name, e->conn,
		    e->pid, e->uid, e->gid, value, when, age, e->gen);
	} else
		fprintf(stderr, "procregctl: out of memory\n");
	free(name);
	free(value);
	return ok;
}

/* ---- msgpack from JSON ---- */

/* Pack a JSON value as msgpack: objects as maps, reals as float64. */
static int
pack_json(msgpack_packer *pk, json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;
	int r = 0;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		r = msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach(j, key, v) {
			if (r == 0)
				r = msgpack_pack_str_with_body(pk, key,
				    strlen(key));
			if (r == 0)
				r = pack_json(pk, v);
		}
		return r;
	case JSON_ARRAY:
		r = msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, v) {
			if (r == 0)
				r = pack_json(pk, v);
		}
		return r;
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(j),
		    json_string_length(j));
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, json_integer_value(j));
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(j));
	case JSON_TRUE:
		return msgpack_pack_true(pk);
	case JSON_FALSE:
		return msgpack_pack_false(pk);
	case JSON_NULL:
		return msgpack_pack_nil(pk);
	}
	return -1;
}

/*
 * Parse JSON text (what names it for errors) into msgpack bytes in sb;
 * false after a usage error was printed.
 */
static bool
json_to_mp(const struct ctl *c, const char *what, const char *text,
    msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	json_error_t err;
	json_t *j;
	int r;

	j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (j == NULL) {
		usage_error(c->cmd, "%s is not JSON: %s (column %d)", what,
		    err.text, err.column);
		return false;
	}
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	r = pack_json(&pk, j);
	json_decref(j);
	if (r != 0) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	return true;
}

/* The monotonic clock in milliseconds. */
static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the guardian: CMD in a process group of its own ---- */

/*
 * hold and serve run CMD under a guardian: a child of procregctl that
 * makes a process group (its id is the guardian's pid), starts CMD in it,
 * and steps back into procregctl's group.  Everything CMD starts is then
 * in that group, and one kill reaches all of it; the group's id cannot be
 * reused while the guardian lives, so the kill never reaches strangers;
 * and the guardian is out of reach of what it sends.  It is a
 * subreaper, so that CMD's orphans are its children and it sees them go.
 *
 * Over a socket pair procregctl sends it signal numbers: each goes to the
 * whole group, and SIGKILL follows after the grace (--kill-after) unless
 * the group has ended by then; SIGKILL itself is sent at once.  When
 * procregctl dies, even by SIGKILL, its end of the socket closes and the
 * guardian does the same with SIGTERM: PR_SET_PDEATHSIG would reach
 * CMD alone, not what CMD started.  When CMD ends by itself, what it left
 * running in the group is stopped the same way.  The guardian reports
 * CMD's wait status and exits only once the group is empty, so that
 * procregctl, which waits for it, releases its name after the last
 * process of CMD's has gone.
 */
struct guard {
	pid_t	 pid;		/* the guardian; 0: none */
	int	 fd;		/* our end of its socket; -1: none */
	bool	 eof;		/* the guardian closed its end */
	bool	 reported;	/* status came from the guardian */
	int	 status;	/* CMD's wait status */
};

/* What the guardian says: CMD's group stopped (^Z), or how CMD ended. */
#define GUARD_STOPPED	'S'
#define GUARD_EXITED	'X'
/* How long the guardian waits, after SIGKILL, for a group member that
 * is not its child to be reaped, ms. */
#define GUARD_REAP_MS	1000
/* How often it checks, while stopping CMD, that the group is empty. */
#define GUARD_POLL_MS	100

/*
 * 0 when standard input is a terminal that procregctl runs in the
 * foreground of, else -1.  CMD's group then takes the terminal, as a
 * shell's job would: CMD can read it, and ^C, ^Z reach CMD's group (not
 * procregctl, so nothing is delivered twice).  Standard input only: a
 * script's "hold ... &" reads /dev/null and keeps its terminal.
 */
static int
foreground_tty(void)
{
	return isatty(0) && tcgetpgrp(0) == getpgrp() ? 0 : -1;
}

/*
 * Close what an exec would close, but for keep and keep2: the guardian
 * does not exec, and must not hold procregctl's daemon connection (the
 * name would outlive procregctl) nor its other descriptors.  What
 * procregctl inherited without close-on-exec stays, for CMD.
 */
static void
close_cloexec(int keep, int keep2)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	int fd, fl;

	/* Without /proc, the descriptors procregctl can have opened. */
	for (fd = 3; d == NULL && fd < 1024; fd++) {
		if (fd != keep && fd != keep2 &&
		    (fl = fcntl(fd, F_GETFD)) >= 0 && (fl & FD_CLOEXEC))
			close(fd);
	}
	while (d != NULL && (de = readdir(d)) != NULL) {
		fd = atoi(de->d_name);
		if (fd < 3 || fd == keep || fd == keep2 || fd == dirfd(d))
			continue;
		if ((fl = fcntl(fd, F_GETFD)) >= 0 && (fl & FD_CLOEXEC))
			close(fd);
	}
	if (d != NULL)
		closedir(d);
}

/* Point fds 0-2 at /dev/null: the guardian keeps no pipe or terminal of
 * CMD's open. */
static void
stdio_null(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	for (int i = 0; i <= 2; i++) {
		if (fd < 0 || dup2(fd, i) < 0)
			close(i);
	}
	if (fd > 2)
		close(fd);
}

/* True when no process is left in group pg. */
static bool
group_empty(pid_t pg)
{
	return kill(-pg, 0) < 0 && errno == ESRCH;
}

/* Tell procregctl something; it may be gone. */
static void
guard_say(int sock, char what, int status)
{
	char msg[1 + sizeof(int)];

	msg[0] = what;
	memcpy(msg + 1, &status, sizeof(int));
	(void)send(sock, msg, what == GUARD_EXITED ? sizeof(msg) : 1,
	    MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * The guardian's loop: until CMD has ended and its group is empty, pass
 * on what procregctl asks for and stop the group when it goes; returns
 * CMD's wait status.  tty >= 0: CMD's group has the terminal, and a ^Z
 * of it is handed on to procregctl, so that the shell sees its job stop.
 */
static int
guard_run(int sock, int tty, pid_t cmd, pid_t ppg, uint64_t kill_after_ms)
{
	pid_t pg = getpid();
	int64_t kill_at = -1, give_up = -1;
	bool peer = true, done = false;
	sigset_t set;
	int sfd, status = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGCONT);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	for (;;) {
		struct signalfd_siginfo si;
		struct pollfd pfd[2];
		int64_t now;
		int st, n = 0, timeout = -1;
		pid_t r;

		while ((r = waitpid(-1, &st, WNOHANG |
		    (tty >= 0 ? WUNTRACED : 0))) > 0) {
			if (r != cmd)
				continue;	/* an orphan of CMD's */
			if (WIFSTOPPED(st)) {
				/* The shell takes its terminal back from
				 * procregctl's group, which stops too. */
				if (tcgetpgrp(tty) == pg)
					tcsetpgrp(tty, ppg);
				guard_say(sock, GUARD_STOPPED, 0);
				continue;
			}
			status = st;
			done = true;
		}
		if (done && group_empty(pg))
			break;
		now = mono_ms();
		if (done && kill_at < 0) {
			/* CMD ended: what it left must not outlive it. */
			kill(-pg, SIGTERM);
			kill(-pg, SIGCONT);
			kill_at = now + (int64_t)kill_after_ms;
		}
		if (kill_at >= 0 && give_up < 0 && now >= kill_at) {
			kill(-pg, SIGKILL);
			give_up = now + GUARD_REAP_MS;
		}
		/* A member nobody reaps (its parent outside the group) must
		 * not keep CMD's status from procregctl for ever. */
		if (done && give_up >= 0 && now >= give_up)
			break;
		if (kill_at >= 0) {
			int64_t until = give_up < 0 ? kill_at - now :
			    GUARD_POLL_MS;

			timeout = until < 0 ? 0 : until < GUARD_POLL_MS ?
			    (int)until : GUARD_POLL_MS;
		}
		if (peer)
			pfd[n++] = (struct pollfd){ sock, POLLIN, 0 };
		if (sfd >= 0)
			pfd[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		if (poll(pfd, (nfds_t)n, sfd >= 0 ? timeout : 10) < 0 &&
		    errno != EINTR)
			_exit(EXIT_ERROR);
		while (peer) {
			unsigned char sig;
			ssize_t k = recv(sock, &sig, 1, MSG_DONTWAIT);

			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (k <= 0) {
				/* procregctl is gone, and its name with it. */
				peer = false;
				sig = SIGTERM;
			}
			now = mono_ms();
			kill(-pg, sig);
			/* A stopped process acts on nothing but SIGKILL. */
			if (sig != SIGKILL)
				kill(-pg, SIGCONT);
			if (sig == SIGKILL && give_up < 0) {
				kill_at = now;
				give_up = now + GUARD_REAP_MS;
			} else if (kill_at < 0)
				kill_at = now + (int64_t)kill_after_ms;
		}
		while (sfd >= 0 && read(sfd, &si, sizeof(si)) ==
		    (ssize_t)sizeof(si)) {
			if (si.ssi_signo != SIGCONT)
				continue;
			/* fg gave the terminal to procregctl's group: pass
			 * it on to CMD's; bg did not. */
			if (tty >= 0 && tcgetpgrp(tty) == ppg)
				tcsetpgrp(tty, pg);
			kill(-pg, SIGCONT);
		}
	}
	if (tty >= 0 && tcgetpgrp(tty) == pg)
		tcsetpgrp(tty, ppg);
	return status;
}

/*
 * The guardian (never returns): see struct guard.  setup(arg), if any,
 * runs first (serve's pipes), tty >= 0 is procregctl's terminal, which
 * CMD's group takes over, and mask the signal mask CMD starts with.
 */
static void
guard_main(int sock, int tty, char **argv, const sigset_t *mask,
    uint64_t kill_after_ms, void (*setup)(void *), void *arg)
{
	pid_t ppg = getpgrp(), self = getpid(), cmd;
	sigset_t all;

	/* Nothing but SIGKILL may end the guardian: it outlives ^\ and
	 * the signals it sends itself. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (setup != NULL)
		setup(arg);
	if (tty >= 0)
		tty = fcntl(tty, F_DUPFD_CLOEXEC, 3);
	close_cloexec(sock, tty);
	if (setpgid(0, 0) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		fprintf(stderr, "procregctl: cannot make a process group for "
		    "CMD: %s\n", strerror(errno));
		guard_say(sock, GUARD_EXITED, W_EXITCODE(EXIT_NOEXEC, 0));
		_exit(EXIT_NOEXEC);
	}
	/* Before CMD runs: a CMD that reads the terminal at once must not
	 * find it someone else's. */
	if (tty >= 0 && tcsetpgrp(tty, self) < 0) {
		close(tty);
		tty = -1;
	}
	if ((cmd = fork()) == 0) {
		sigprocmask(SIG_SETMASK, mask, NULL);
		/* Should the guardian itself be killed, CMD at least goes. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != self)
			_exit(128 + SIGTERM);
		execvp(argv[0], argv);
		fprintf(stderr, "procregctl: %s: %s\n", argv[0],
		    strerror(errno));
		_exit(EXIT_NOEXEC);
	}
	if (cmd < 0) {
		fprintf(stderr, "procregctl: fork: %s\n", strerror(errno));
		if (tty >= 0)
			tcsetpgrp(tty, ppg);
		guard_say(sock, GUARD_EXITED, W_EXITCODE(EXIT_NOEXEC, 0));
		_exit(EXIT_NOEXEC);
	}
	/*
	 * Out of CMD's group: what the group is sent is not for us.  This
	 * fails only when procregctl's group is gone, procregctl with it:
	 * then the guardian dies with the group's SIGKILL, and nobody is
	 * left to wait for the rest anyway.
	 */
	(void)setpgid(0, ppg);
	stdio_null();
	guard_say(sock, GUARD_EXITED, guard_run(sock, tty, cmd, ppg,
	    kill_after_ms));
	_exit(0);
}

/*
 * Start CMD (argv) under a guardian; false (reported) when it cannot be.
 * tty: as guard_main's; setup(arg) runs in the guardian before CMD starts.
 */
static bool
guard_start(struct guard *g, char **argv, const sigset_t *mask,
    uint64_t kill_after_ms, int tty, void (*setup)(void *), void *arg)
{
	int sv[2];

	memset(g, 0, sizeof(*g));
	g->fd = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "procregctl: socketpair: %s\n",
		    strerror(errno));
		return false;
	}
	fflush(NULL);
	if ((g->pid = fork()) < 0) {
		fprintf(stderr, "procregctl: fork: %s\n", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		g->pid = 0;
		return false;
	}
	if (g->pid == 0) {
		close(sv[0]);
		guard_main(sv[1], tty, argv, mask, kill_after_ms, setup, arg);
	}
	close(sv[1]);
	g->fd = sv[0];
	return true;
}

/* Have sig sent to CMD's group (SIGKILL: at once; others: SIGKILL after
 * the grace, unless the group has ended). */
static void
guard_signal(struct guard *g, int sig)
{
	unsigned char b = (unsigned char)sig;

	if (g->pid > 0 && g->fd >= 0)
		(void)send(g->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * Read what the guardian said.  With stop, a stopped CMD (^Z) stops
 * procregctl too, so that its shell sees the job stop; fg continues both
 * (the guardian, in our group, passes SIGCONT on).
 */
static void
guard_read(struct guard *g, bool stop)
{
	char msg[1 + sizeof(int)];
	ssize_t n;

	while (g->fd >= 0 && !g->eof) {
		n = recv(g->fd, msg, sizeof(msg), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			g->eof = true;
			break;
		}
		if (msg[0] == GUARD_EXITED && n == (ssize_t)sizeof(msg)) {
			memcpy(&g->status, msg + 1, sizeof(int));
			g->reported = true;
		} else if (msg[0] == GUARD_STOPPED && stop)
			raise(SIGSTOP);
	}
}

/*
 * Reap the guardian once it has exited (with block, wait for that); true
 * then, with CMD's wait status in *status.  A guardian that was killed
 * said nothing: its group (still reserved, the guardian being a zombie
 * until reaped) gets SIGKILL from us, CMD having had its PDEATHSIG.
 */
static bool
guard_reap(struct guard *g, bool block, int *status)
{
	siginfo_t si;
	int st;

	if (g->pid <= 0)
		return false;
	memset(&si, 0, sizeof(si));
	while (waitid(P_PID, (id_t)g->pid, &si, WEXITED | WNOWAIT |
	    (block ? 0 : WNOHANG)) < 0) {
		if (errno != EINTR)
			return false;
	}
	if (si.si_pid != g->pid)
		return false;
	guard_read(g, false);
	if (!g->reported)
		kill(-g->pid, SIGKILL);
	while (waitpid(g->pid, &st, 0) < 0 && errno == EINTR)
		;
	*status = g->reported ? g->status : st;
	close(g->fd);
	g->fd = -1;
	g->pid = 0;
	return true;
}

/* ---- waiting for notifications and signals ---- */

/*
 * A command that waits: hold, recv and monitor.  Notifications reach the
 * callbacks set on the connection; signals (read from sigfd) reach
 * on_signal.  The loop ends when done is set.
 */
struct waiter {
	struct ctl	*c;
	int		 sigfd;		/* -1: none */
	void		(*on_signal)(struct waiter *,
			    const struct signalfd_siginfo *);
	void		(*on_event)(struct waiter *,
			    const struct procreg_event *);
	const char	*name;
	struct guard	 g;		/* hold: CMD's; pid 0: none yet */
	bool		 connected;	/* hold */
	bool		 waiting;	/* hold --wait: queued for the name */
	bool		 lost;		/* hold: the name was taken from us */
	struct procreg_subscribe_opts sopts;	/* watch */
	uint64_t	 sub;		/* watch: its subscription */
	uint64_t	 ref;		/* monitor */
	uint64_t	 received;	/* recv */
	bool		 daemon_error;	/* an error notification came */
	bool		 done;
	int		 exit;		/* the exit status once done */
};

/* Block sigs and open a signalfd for them; -1 (reported) on failure. */
static int
signals_open(const int *sigs, size_t n, sigset_t *old)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	for (size_t i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &set, old) < 0 ||
	    (fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "procregctl: signalfd: %s\n", strerror(errno));
		return -1;
	}
	return fd;
}

/* Hand every pending signal to the waiter. */
static void
read_signals(struct waiter *w)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		w->on_signal(w, &si);
}

/*
 * Hand every notification already received to the waiter, without
 * waiting; PROCREG_OK when none is left, else the failure (the connection
 * is lost).  This uses procreg_next_event(p, 0), not procreg_process():
 * that one reads before it parses what the last call left in the buffer,
 * and drops those notifications when the read finds the connection closed.
 */
static int
dispatch(struct waiter *w)
{
	struct procreg_event *ev;
	int r = PROCREG_OK;

	while (!w->done && (r = procreg_next_event(w->c->p, 0, &ev)) ==
	    PROCREG_OK) {
		if (ev->kind == PROCREG_EV_ERROR) {
			/* Protocol 1: limit or too_large, then a close. */
			fprintf(stderr, "procregctl: the daemon reports %s: "
			    "%s\n", ev->reason, ev->message);
			w->daemon_error = true;
		} else
			w->on_event(w, ev);
		procreg_event_free(ev);
	}
	return w->done || r == PROCREG_E_TIMEOUT ? PROCREG_OK : r;
}

/*
 * Wait, without spinning, until w->done.  A hold (auto_reconnect) rides
 * out a lost connection, retrying every RETRY_MS; the others end with
 * exit 3 (4 when the daemon said why it closed it).
 */
static int
wait_loop(struct waiter *w)
{
	procreg_t *p = w->c->p;
	int r;

	while (!w->done) {
		struct pollfd pfd[3];
		int fd, n = 0, gi = -1;

		if ((r = dispatch(w)) != PROCREG_OK && !w->c->cmd->reconnect) {
			fprintf(stderr, "procregctl: %s: %s\n",
			    procreg_strstatus(r), procreg_errmsg(p));
			return w->daemon_error ? EXIT_ERROR : status_exit(r);
		}
		if ((fd = procreg_fd(p)) < 0 && w->connected) {
			fprintf(stderr, "procregctl: lost the daemon (%s); "
			    "%s is not held until it is back\n",
			    procreg_errmsg(p), w->name);
			w->connected = false;
		}
		if (w->done)
			break;
		if (w->sigfd >= 0)
			pfd[n++] = (struct pollfd){ w->sigfd, POLLIN, 0 };
		if (fd >= 0)
			pfd[n++] = (struct pollfd){ fd, POLLIN, 0 };
		if (w->g.pid > 0 && w->g.fd >= 0 && !w->g.eof) {
			gi = n;
			pfd[n++] = (struct pollfd){ w->g.fd, POLLIN, 0 };
		}
		/* Disconnected (hold only): dispatch retries in RETRY_MS. */
		if (poll(pfd, (nfds_t)n, fd >= 0 ? -1 : RETRY_MS) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "procregctl: poll: %s\n",
			    strerror(errno));
			return EXIT_ERROR;
		}
		if (gi >= 0 && pfd[gi].revents)
			guard_read(&w->g, true);
		if (w->sigfd >= 0 && pfd[0].revents)
			read_signals(w);
	}
	return w->exit;
}

/* ---- commands ---- */

/* whereis NAME: print the entry, or exit 1. */
static int
cmd_whereis(struct ctl *c)
{
	struct procreg_entry *e;
	const char *name = c->args[0];
	int r;

	if (!check_name(c, name))
		return EXIT_USAGE;
	if ((r = procreg_whereis(c->p, name, &e)) != PROCREG_OK)
		return report(c, r, name);
	if (e == NULL) {
		fprintf(stderr, "procregctl: %s: not registered\n", name);
		return EXIT_NO;
	}
	r = (c->json ? put_json(entry_json(e), 0) : print_entry(e)) ?
	    EXIT_SUCCESS : EXIT_ERROR;
	procreg_entry_free(e);
	return r;
}

/* One row of a table (list, members), as the strings printed. */
#define NCOLS	6
struct row {
	char	*col[NCOLS];
};

/* Print rows of ncols columns as a table with columns as wide as their
 * content. */
static void
print_table(struct row *rows, size_t n, size_t ncols)
{
	size_t width[NCOLS] = { 0 };

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < ncols; k++)
			if (text_width(rows[i].col[k]) > width[k])
				width[k] = text_width(rows[i].col[k]);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < ncols; k++) {
			fputs(rows[i].col[k], stdout);
			if (k == ncols - 1)
				break;
			for (size_t w = text_width(rows[i].col[k]);
			    w < width[k] + 2; w++)
				putchar(' ');
		}
		putchar('\n');
	}
}

/* list [PREFIX]: a table, or a JSON array of entries. */
static int
cmd_list(struct ctl *c)
{
	struct procreg_entry **v;
	struct row *rows;
	size_t n;
	bool ok = true;
	int r;

	if ((r = procreg_list(c->p, c->nargs ? c->args[0] : NULL, &v, &n)) !=
	    PROCREG_OK)
		return report(c, r, NULL);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a, entry_json(v[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = put_json(a, 0);
		procreg_entries_free(v, n);
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL) {
		procreg_entries_free(v, n);
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	rows[0] = (struct row){ { strdup("NAME"), strdup("CONN"),
	    strdup("PID"), strdup("UID"), strdup("VALUE"), strdup("AGE") } };
	for (size_t i = 0; i < n; i++) {
		struct row *w = &rows[i + 1];
		char num[32], age[32];

		w->col[0] = safe_text(v[i]->name);
		snprintf(num, sizeof(num), "%" PRIu64, v[i]->conn);
		w->col[1] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->pid);
		w->col[2] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->uid);
		w->col[3] = strdup(num);
		w->col[4] = mp_text(v[i]->value, v[i]->value_len);
		fmt_since_age(age, sizeof(age), v[i]->since_ms);
		w->col[5] = strdup(age);
	}
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 6; k++)
			ok = ok && rows[i].col[k] != NULL;
	if (ok)
		print_table(rows, n + 1, 6);
	else
		fprintf(stderr, "procregctl: out of memory\n");
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 6; k++)
			free(rows[i].col[k]);
	free(rows);
	procreg_entries_free(v, n);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* evict NAME: an administrator removes a registration. */
static int
cmd_evict(struct ctl *c)
{
	const char *name = c->args[0];
	int r;

	if (!check_name(c, name))
		return EXIT_USAGE;
	r = procreg_evict(c->p, name);
	if (r == PROCREG_E_NOT_FOUND) {
		fprintf(stderr, "procregctl: %s: not registered\n", name);
		return EXIT_NO;
	}
	return r == PROCREG_OK ? EXIT_SUCCESS : report(c, r, name);
}

/*
 * The target operand: a name, or with --conn a connection id into *conn.
 * false after a usage error was printed.
 */
static bool
parse_target(const struct ctl *c, const char *op, uint64_t *conn)
{
	if (!c->conn)
		return check_name(c, op);
	if (!parse_num(op, 1, UINT64_MAX, conn)) {
		usage_error(c->cmd, "--conn: '%s' is no connection id (its "
		    "digits)", op);
		return false;
	}
	return true;
}

/* Say that the target op is not there (exit 1). */
static int
not_there(const struct ctl *c, const char *op)
{
	if (c->conn)
		fprintf(stderr, "procregctl: conn %s: no such connection\n",
		    op);
	else
		fprintf(stderr, "procregctl: %s: not registered\n", op);
	return EXIT_NO;
}

/* A PAYLOAD operand as msgpack into sb: a str, or JSON with
 * --json-payload.  false after a usage error was printed. */
static bool
payload_mp(const struct ctl *c, const char *text, msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	if (c->json_payload)
		return json_to_mp(c, "PAYLOAD", text, sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (msgpack_pack_str_with_body(&pk, text, strlen(text)) != 0) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	return true;
}

/* send NAME PAYLOAD: a str, or JSON as msgpack. */
static int
cmd_send(struct ctl *c)
{
	const char *name = c->args[0];
	msgpack_sbuffer sb;
	uint64_t conn = 0;
	int r;

	if (c->has_gen && c->conn)
		return usage_error(c->cmd, "--gen is for names, not --conn");
	if (!parse_target(c, name, &conn))
		return EXIT_USAGE;
	msgpack_sbuffer_init(&sb);
	if (!payload_mp(c, c->args[1], &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	r = c->conn ? procreg_send_conn(c->p, conn, sb.data, sb.size) :
	    c->has_gen ? procreg_send_gen(c->p, name, sb.data, sb.size,
	    c->gen) : procreg_send(c->p, name, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	if (r == PROCREG_E_NOT_FOUND)
		return not_there(c, name);
	if (r == PROCREG_E_STALE) {
		fprintf(stderr, "procregctl: %s: stale: its registration has "
		    "another generation than %" PRIu64 "\n", name, c->gen);
		return EXIT_NO;
	}
	if (r == PROCREG_E_BUSY) {
		fprintf(stderr, "procregctl: %s: busy (its holder is not "
		    "reading its messages); try again later\n", name);
		return EXIT_NO;
	}
	return r == PROCREG_OK ? EXIT_SUCCESS : report(c, r, name);
}

/* Print msgpack bytes: a str as it is (a newline after it unless it ends
 * with one, or always when always_nl), anything else as JSON and a
 * newline.  false when the output cannot be written. */
static bool
print_payload(const void *mp, size_t len, bool always_nl)
{
	msgpack_unpacked u;
	char *text;
	bool nl = true;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_STR) {
		if (u.data.via.str.size > 0)
			fwrite(u.data.via.str.ptr, 1, u.data.via.str.size,
			    stdout);
		nl = always_nl || u.data.via.str.size == 0 ||
		    u.data.via.str.ptr[u.data.via.str.size - 1] != '\n';
	} else if ((text = mp_text(mp, len)) != NULL) {
		fputs(text, stdout);
		free(text);
	}
	msgpack_unpacked_destroy(&u);
	return (!nl || putchar('\n') != EOF) && fflush(stdout) != EOF;
}

/* call NAME PAYLOAD: print the reply. */
static int
cmd_call(struct ctl *c)
{
	const char *name = c->args[0];
	msgpack_sbuffer sb;
	uint64_t conn = 0;
	void *res = NULL;
	size_t len = 0;
	bool ok;
	int r;

	if (!parse_target(c, name, &conn))
		return EXIT_USAGE;
	if ((unsigned)c->timeout_ms > PR_CALL_TIMEOUT_MAX)
		return usage_error(c->cmd, "--timeout: a call waits at most "
		    "%u ms", PR_CALL_TIMEOUT_MAX);
	msgpack_sbuffer_init(&sb);
	if (!payload_mp(c, c->args[1], &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	r = c->conn ? procreg_call_conn(c->p, conn, sb.data, sb.size,
	    c->timeout_ms, &res, &len) : procreg_call(c->p, name, sb.data,
	    sb.size, c->timeout_ms, &res, &len);
	msgpack_sbuffer_destroy(&sb);
	switch (r) {
	case PROCREG_OK:
		break;
	case PROCREG_E_NOT_FOUND:
		return not_there(c, name);
	case PROCREG_E_BUSY:
		fprintf(stderr, "procregctl: %s: busy (its holder is not "
		    "reading); try again later\n", name);
		return EXIT_NO;
	case PROCREG_E_DOWN:
		fprintf(stderr, "procregctl: %s: down: %s\n", name,
		    procreg_errmsg(c->p));
		return EXIT_NO;
	case PROCREG_E_CALL_TIMEOUT:
		fprintf(stderr, "procregctl: %s: timeout: %s\n", name,
		    procreg_errmsg(c->p));
		return EXIT_ERROR;
	case PROCREG_E_OTHER:
		/* The callee's own error: "code: message". */
		fprintf(stderr, "procregctl: %s: %s\n", name,
		    procreg_errmsg(c->p));
		return EXIT_NO;
	case PROCREG_E_TAKEN:
	case PROCREG_E_NOT_OWNER:
	case PROCREG_E_STALE:
		/* The daemon never answers a call with these: the callee's. */
		fprintf(stderr, "procregctl: %s: %s: %s\n", name,
		    protocol_code(r), procreg_errmsg(c->p));
		return EXIT_NO;
	case PROCREG_E_BAD_REQUEST:
	case PROCREG_E_UNKNOWN_METHOD:
	case PROCREG_E_LIMIT:
	case PROCREG_E_TOO_LARGE:
	case PROCREG_E_FORBIDDEN:
		/*
		 * The daemon's, or a callee's error with the same code: the
		 * protocol cannot tell them apart.  "code: message" either
		 * way; the exit status is the daemon's error's.
		 */
		fprintf(stderr, "procregctl: %s: %s: %s\n", name,
		    protocol_code(r), procreg_errmsg(c->p));
		return status_exit(r);
	default:
		return report(c, r, name);
	}
	ok = c->json ? put_json(mp_json(res, len), 0) :
	    print_payload(res, len, false);
	free(res);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* Say who holds name (after taken, or when we queue for it). */
static void
say_holder(struct ctl *c, const char *name, const char *what,
    const char *msg)
{
	struct procreg_entry *e = NULL;

	if (procreg_whereis(c->p, name, &e) == PROCREG_OK && e != NULL)
		fprintf(stderr, "procregctl: %s is held by conn %" PRIu64
		    " (pid %" PRId64 ")%s\n", name, e->conn, e->pid, what);
	else
		fprintf(stderr, "procregctl: %s is taken: %s\n", name, msg);
	procreg_entry_free(e);
}

/*
 * Register name for hold, serve and recv, with register flags; on taken,
 * say who holds it.  *queued (may be NULL): our place in its queue, 0
 * when it is ours.
 */
static int
register_name_opts(struct ctl *c, const char *name, const void *value,
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
		say_holder(c, name, what, "");
		if (queued != NULL)
			*queued = pos;
		return EXIT_SUCCESS;
	}
	if (r == PROCREG_OK)
		return EXIT_SUCCESS;
	if (r != PROCREG_E_TAKEN)
		return report(c, r, name);
	snprintf(msg, sizeof(msg), "%s", procreg_errmsg(c->p));
	say_holder(c, name, "", msg);
	return EXIT_NO;
}

static int
register_name(struct ctl *c, const char *name, const void *value,
    size_t len)
{
	return register_name_opts(c, name, value, len, 0, NULL);
}

/*
 * hold: NAME is no longer ours (why: the lost reason).  CMD must not run
 * without it: its group is stopped, and hold exits EXIT_LOST once it has
 * ended.
 */
static void
hold_lost(struct waiter *w, const char *why)
{
	if (w->lost)
		return;
	w->lost = true;
	if (w->g.pid <= 0) {
		fprintf(stderr, "procregctl: lost %s (%s)\n", w->name, why);
		w->done = true;
		w->exit = EXIT_LOST;
		return;
	}
	fprintf(stderr, "procregctl: lost %s (%s): stopping CMD\n", w->name,
	    why);
	guard_signal(&w->g, SIGTERM);
}

/*
 * hold: messages sent to NAME are dropped (only the name matters).  With
 * --wait, acquired ends the wait; lost (evicted, replaced, or after a
 * reconnect another waiter got NAME first) stops CMD.
 */
static void
hold_event(struct waiter *w, const struct procreg_event *ev)
{
	if (ev->name == NULL || strcmp(ev->name, w->name) != 0)
		return;
	if (ev->kind == PROCREG_EV_ACQUIRED && w->waiting) {
		fprintf(stderr, "procregctl: %s passed to us (gen %" PRIu64
		    ")\n", w->name, ev->entry->gen);
		w->waiting = false;
		w->done = true;		/* on to running CMD */
	} else if (ev->kind == PROCREG_EV_LOST && !w->waiting)
		hold_lost(w, ev->reason);
}

/* hold: the connection is back; say whether the name is ours again. */
static void
hold_reconnect(procreg_t *p, int fd, const char *const *lost, size_t nlost,
    void *arg)
{
	struct waiter *w = arg;

	(void)p;
	(void)fd;
	w->connected = true;
	if (nlost > 0) {
		fprintf(stderr, "procregctl: the daemon is back, but %s was "
		    "taken meanwhile: it is no longer held\n", lost[0]);
		hold_lost(w, "taken");
	} else if (w->c->wait)
		fprintf(stderr, "procregctl: the daemon is back; %s is "
		    "registered again (queued if another got it first)\n",
		    w->name);
	else
		fprintf(stderr, "procregctl: the daemon is back; %s is held "
		    "again\n", w->name);
}

/*
 * hold: reap the guardian (CMD's group has ended), or pass a signal on to
 * CMD's group.  A signal from the terminal never reached that group (it
 * has the terminal itself, or it is not the terminal's foreground), so
 * each is passed on once.  While hold --wait waits (no CMD yet), a signal
 * ends it with 128+N.
 */
static void
hold_signal(struct waiter *w, const struct signalfd_siginfo *si)
{
	int st;

	if (w->g.pid <= 0) {
		if (si->ssi_signo != SIGCHLD) {
			w->done = true;
			w->exit = 128 + (int)si->ssi_signo;
		}
		return;
	}
	if (si->ssi_signo != SIGCHLD) {
		guard_signal(&w->g, (int)si->ssi_signo);
		return;
	}
	if (!guard_reap(&w->g, false, &st))
		return;
	w->done = true;
	if (w->lost)
		w->exit = EXIT_LOST;
	else
		w->exit = WIFSIGNALED(st) ? 128 + WTERMSIG(st) :
		    WEXITSTATUS(st);
}

/* hold NAME CMD...: NAME is held for exactly as long as CMD runs. */
static int
cmd_hold(struct ctl *c)
{
	static const int sigs[] = { SIGCHLD, SIGINT, SIGTERM, SIGHUP };
	struct procreg_callbacks cb = { NULL, hold_reconnect };
	struct waiter w = { .c = c, .on_signal = hold_signal,
	    .on_event = hold_event, .name = c->args[0], .connected = true,
	    .g = { .fd = -1 } };
	msgpack_sbuffer sb;
	sigset_t old, ttou;
	uint32_t queued = 0;
	unsigned flags;
	int r;

	if (!check_name(c, w.name))
		return EXIT_USAGE;
	if (c->json_value && c->value == NULL)
		return usage_error(c->cmd, "--json-value needs --value");
	flags = (c->wait ? PROCREG_QUEUE : 0) | (c->allow_replacement ?
	    PROCREG_ALLOW_REPLACEMENT : 0) | (c->replace ? PROCREG_REPLACE :
	    0);
	msgpack_sbuffer_init(&sb);
	if (c->value != NULL && c->json_value) {
		if (!json_to_mp(c, "--value", c->value, &sb)) {
			msgpack_sbuffer_destroy(&sb);
			return EXIT_USAGE;
		}
	} else if (c->value != NULL) {
		msgpack_packer pk;

		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_str_with_body(&pk, c->value, strlen(c->value));
	}
	/* Blocked before registering: a signal while we wait in the
	 * queue, and no SIGCHLD of CMD, is missed. */
	if ((w.sigfd = signals_open(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    &old)) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_ERROR;
	}
	/* Once CMD's group has the terminal, our messages on it must not
	 * stop us (stty tostop). */
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, NULL);
	r = register_name_opts(c, w.name, c->value ? sb.data : NULL, sb.size,
	    flags, &queued);
	msgpack_sbuffer_destroy(&sb);
	if (r != EXIT_SUCCESS) {
		close(w.sigfd);
		return r;
	}
	procreg_set_callbacks(c->p, &cb, &w);
	if (queued > 0) {
		/* Until acquired (done, still no child) or a signal. */
		w.waiting = true;
		r = wait_loop(&w);
		if (w.waiting) {
			close(w.sigfd);
			return r;
		}
		w.done = false;
	}
	if (!guard_start(&w.g, c->args + 1, &old, c->kill_after_ms,
	    foreground_tty(), NULL, NULL)) {
		close(w.sigfd);
		return EXIT_ERROR;
	}
	r = wait_loop(&w);
	close(w.sigfd);
	return r;
}

/* recv and join: print one message or publish (stop at --count). */
static void
recv_event(struct waiter *w, const struct procreg_event *ev)
{
	bool join = w->c->cmd->bit == C_JOIN;

	if (w->done || ev->kind != (join ? PROCREG_EV_PUBLISH :
	    PROCREG_EV_MESSAGE))
		return;
	/* A message sent to our connection id has no name: null. */
	if (w->c->json ? !put_json(json_pack("{s:s?, s:I, s:o?}",
	    join ? "group" : "name", ev->name, "sender",
	    (json_int_t)ev->sender, "payload", mp_json(ev->payload,
	    ev->payload_len)), 0) : !print_payload(ev->payload,
	    ev->payload_len, true)) {
		w->done = true;
		w->exit = EXIT_ERROR;
		return;
	}
	if (++w->received == w->c->count)
		w->done = true;
}

/* recv: SIGINT or SIGTERM end it cleanly. */
static void
recv_signal(struct waiter *w, const struct signalfd_siginfo *si)
{
	(void)si;
	w->done = true;
}

/* recv NAME: hold NAME and print what is sent to it. */
static int
cmd_recv(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct waiter w = { .c = c, .on_signal = recv_signal,
	    .on_event = recv_event, .name = c->args[0] };
	int r;

	if (!check_name(c, w.name))
		return EXIT_USAGE;
	if ((w.sigfd = signals_open(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0)
		return EXIT_ERROR;
	if ((r = register_name(c, w.name, NULL, 0)) == EXIT_SUCCESS)
		r = wait_loop(&w);
	close(w.sigfd);
	return r;
}

/* join GROUP [VALUE]: be a member and print what is published to it. */
static int
cmd_join(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct waiter w = { .c = c, .on_signal = recv_signal,
	    .on_event = recv_event, .name = c->args[0] };
	msgpack_sbuffer sb;
	int r;

	if (!check_name(c, w.name))
		return EXIT_USAGE;
	if (c->json_value && c->nargs < 2)
		return usage_error(c->cmd, "--json-value needs VALUE");
	msgpack_sbuffer_init(&sb);
	if (c->nargs == 2 && c->json_value) {
		if (!json_to_mp(c, "VALUE", c->args[1], &sb)) {
			msgpack_sbuffer_destroy(&sb);
			return EXIT_USAGE;
		}
	} else if (c->nargs == 2) {
		msgpack_packer pk;

		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_str_with_body(&pk, c->args[1],
		    strlen(c->args[1]));
	}
	if ((w.sigfd = signals_open(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_ERROR;
	}
	r = procreg_join(c->p, w.name, c->nargs == 2 ? sb.data : NULL,
	    sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
	r = r == PROCREG_OK ? wait_loop(&w) : report(c, r, w.name);
	close(w.sigfd);
	return r;
}

/* members GROUP: a table, or a JSON array of member entries. */
static int
cmd_members(struct ctl *c)
{
	struct procreg_member **v;
	struct row *rows;
	size_t n;
	bool ok = true;
	int r;

	if (!check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_members(c->p, c->args[0], &v, &n)) != PROCREG_OK)
		return report(c, r, c->args[0]);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a, member_json(v[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = put_json(a, 0);
		procreg_members_free(v, n);
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL) {
		procreg_members_free(v, n);
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	rows[0] = (struct row){ { strdup("CONN"), strdup("PID"),
	    strdup("UID"), strdup("VALUE"), strdup("AGE") } };
	for (size_t i = 0; i < n; i++) {
		struct row *w = &rows[i + 1];
		char num[32], age[32];

		snprintf(num, sizeof(num), "%" PRIu64, v[i]->conn);
		w->col[0] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->pid);
		w->col[1] = strdup(num);
		snprintf(num, sizeof(num), "%" PRId64, v[i]->uid);
		w->col[2] = strdup(num);
		w->col[3] = mp_text(v[i]->value, v[i]->value_len);
		fmt_since_age(age, sizeof(age), v[i]->since_ms);
		w->col[4] = strdup(age);
	}
	for (size_t i = 0; i <= n; i++)
		for (size_t k = 0; k < 5; k++)
			ok = ok && rows[i].col[k] != NULL;
	if (ok)
		print_table(rows, n + 1, 5);
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
static int
cmd_publish(struct ctl *c)
{
	const char *group = c->args[0];
	msgpack_sbuffer sb;
	uint64_t delivered = 0, *busy = NULL;
	size_t nbusy = 0;
	bool ok;
	int r;

	if (!check_name(c, group))
		return EXIT_USAGE;
	msgpack_sbuffer_init(&sb);
	if (!payload_mp(c, c->args[1], &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	r = procreg_publish(c->p, group, sb.data, sb.size, !c->no_echo,
	    &delivered, &busy, &nbusy);
	msgpack_sbuffer_destroy(&sb);
	if (r != PROCREG_OK)
		return report(c, r, group);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < nbusy && a != NULL; i++) {
			if (json_array_append_new(a,
			    json_integer((json_int_t)busy[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = put_json(a == NULL ? NULL : json_pack("{s:I, s:o}",
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

/* Print a list of names under a heading, one per line, indented. */
static bool
print_list(const char *heading, char **v, size_t n)
{
	bool ok = printf("%s:\n", heading) > 0;

	for (size_t i = 0; i < n && ok; i++) {
		char *t = safe_text(v[i]);

		ok = t != NULL && printf("  %s\n", t) > 0;
		free(t);
	}
	return ok;
}

/* A vector of strings as a JSON array, or NULL. */
static json_t *
strv_json(char **v, size_t n)
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
static int
cmd_keys(struct ctl *c)
{
	char **names, **groups;
	size_t nn, ng;
	uint64_t conn;
	bool ok;
	int r;

	if (!parse_num(c->args[0], 1, UINT64_MAX, &conn))
		return usage_error(c->cmd, "'%s' is no connection id (its "
		    "digits)", c->args[0]);
	r = procreg_keys(c->p, conn, &names, &nn, &groups, &ng);
	if (r == PROCREG_E_NOT_FOUND) {
		fprintf(stderr, "procregctl: conn %s: no such connection\n",
		    c->args[0]);
		return EXIT_NO;
	}
	if (r != PROCREG_OK)
		return report(c, r, NULL);
	if (c->json) {
		json_t *jn = strv_json(names, nn), *jg = strv_json(groups, ng);

		ok = put_json(jn == NULL || jg == NULL ? NULL :
		    json_pack("{s:o, s:o}", "names", jn, "groups", jg), 0);
		if (jn == NULL || jg == NULL) {
			json_decref(jn);
			json_decref(jg);
		}
	} else {
		ok = print_list("names", names, nn) &&
		    print_list("groups", groups, ng) && fflush(stdout) == 0;
	}
	procreg_strv_free(names, nn);
	procreg_strv_free(groups, ng);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* await NAME: wait until NAME is registered, and print it. */
static int
cmd_await(struct ctl *c)
{
	struct procreg_entry *e = NULL;
	const char *name = c->args[0];
	int timeout = c->timeout_ms > 0 ? c->timeout_ms :
	    (int)PR_CALL_TIMEOUT_DEFAULT;
	int r;

	if (!check_name(c, name))
		return EXIT_USAGE;
	if ((unsigned)timeout > PR_CALL_TIMEOUT_MAX)
		return usage_error(c->cmd, "--timeout: await waits at most "
		    "%u ms", PR_CALL_TIMEOUT_MAX);
	r = procreg_await(c->p, name, timeout, &e);
	if (r == PROCREG_E_CALL_TIMEOUT) {
		fprintf(stderr, "procregctl: %s: not registered within %d "
		    "ms\n", name, timeout);
		return EXIT_NO;
	}
	if (r != PROCREG_OK)
		return report(c, r, name);
	r = (c->json ? put_json(entry_json(e), 0) : print_entry(e)) ?
	    EXIT_SUCCESS : EXIT_ERROR;
	procreg_entry_free(e);
	return r;
}

/* queue NAME: the connections waiting for NAME, first in line first. */
static int
cmd_queue(struct ctl *c)
{
	uint64_t *v = NULL;
	size_t n = 0;
	bool ok = true;
	int r;

	if (!check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_queue(c->p, c->args[0], &v, &n)) != PROCREG_OK)
		return report(c, r, c->args[0]);
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n && a != NULL; i++) {
			if (json_array_append_new(a,
			    json_integer((json_int_t)v[i])) < 0) {
				json_decref(a);
				a = NULL;
			}
		}
		ok = put_json(a, 0);
	} else {
		for (size_t i = 0; i < n && ok; i++)
			ok = printf("%" PRIu64 "\n", v[i]) > 0;
		ok = ok && fflush(stdout) == 0;
	}
	free(v);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* ---- watch ---- */

/*
 * One watch line: SEQ KIND, then NAME (or GROUP, may be NULL) and the
 * fields of an entry e or a member m (may be NULL), or reason=R.  false
 * when the output cannot be written.
 */
static bool
watch_line(uint64_t seq, const char *kind, const char *name,
    const struct procreg_entry *e, const struct procreg_member *m,
    const char *reason)
{
	char *n = NULL, *value = NULL;
	bool ok;

	if (name != NULL && (n = safe_text(name)) == NULL)
		return false;
	if (e != NULL)
		value = mp_text(e->value, e->value_len);
	else if (m != NULL)
		value = mp_text(m->value, m->value_len);
	printf("%" PRIu64 " %s", seq, kind);
	if (n != NULL)
		printf(" %s", n);
	if (e != NULL)
		printf(" conn=%" PRIu64 " pid=%" PRId64 " gen=%" PRIu64
		    " value=%s", e->conn, e->pid, e->gen, value ? value : "?");
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
watch_json(uint64_t seq, const char *kind, json_t *payload)
{
	return put_json(json_pack("{s:I, s:s, s:o?}", "seq", (json_int_t)seq,
	    "kind", kind, "payload", payload), 0);
}

/*
 * Subscribe (again, after an overflow, with since) and print what the
 * result shows: the snapshot, after a gap marker when since was given.
 * An exit status, or -1 to go on.
 */
static int
watch_subscribe(struct waiter *w)
{
	struct ctl *c = w->c;
	struct procreg_subscription s;
	bool ok = true;
	int r;

	r = procreg_subscribe(c->p, c->nargs ? c->args[0] : "", &w->sopts,
	    &s);
	if (r != PROCREG_OK)
		return report(c, r, NULL);
	w->sub = s.sub;
	if (s.gap) {
		if (c->json)
			ok = put_json(json_pack("{s:I, s:s, s:I}", "seq",
			    (json_int_t)s.seq, "kind", "gap", "since",
			    (json_int_t)w->sopts.since), 0);
		else
			ok = printf("%" PRIu64 " gap since=%" PRIu64 "\n",
			    s.seq, w->sopts.since) > 0 && fflush(stdout) == 0;
	}
	for (size_t i = 0; ok && i < s.nentries; i++)
		ok = c->json ? watch_json(s.seq, "entry",
		    entry_json(s.entries[i])) : watch_line(s.seq, "entry",
		    s.entries[i]->name, s.entries[i], NULL, NULL);
	for (size_t i = 0; ok && i < s.nmembers; i++)
		ok = c->json ? watch_json(s.seq, "member",
		    member_json(s.members[i])) : watch_line(s.seq, "member",
		    s.members[i]->group, NULL, s.members[i], NULL);
	procreg_subscription_free(&s);
	return ok ? -1 : EXIT_ERROR;
}

/* watch: print a change; after an overflow, resume where it stopped. */
static void
watch_event(struct waiter *w, const struct procreg_event *ev)
{
	struct ctl *c = w->c;
	bool ok;
	int r;

	if (w->done || ev->sub != w->sub)
		return;
	if (ev->kind == PROCREG_EV_OVERFLOW) {
		fprintf(stderr, "procregctl: watch fell behind after event "
		    "%" PRIu64 "; resuming\n", ev->seq);
		w->sopts.has_since = true;
		w->sopts.since = ev->seq;
		if ((r = watch_subscribe(w)) >= 0) {
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
		ok = watch_json(ev->seq, ev->change_name,
		    entry_json(ev->entry));
	else if (c->json && ev->member != NULL)
		ok = watch_json(ev->seq, ev->change_name,
		    member_json(ev->member));
	else if (c->json)
		ok = watch_json(ev->seq, ev->change_name,
		    mp_json(ev->payload, ev->payload_len));
	else
		ok = watch_line(ev->seq, ev->change_name, ev->name,
		    ev->entry, ev->member, ev->change ==
		    PROCREG_CH_UNREGISTERED ? ev->reason : NULL);
	if (!ok) {
		w->done = true;
		w->exit = EXIT_ERROR;
	}
}

/* watch [PREFIX]: the snapshot, then every change, as they happen. */
static int
cmd_watch(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct waiter w = { .c = c, .on_signal = recv_signal,
	    .on_event = watch_event, .name = c->nargs ? c->args[0] : "" };
	int r;

	w.sopts.groups = c->groups;
	w.sopts.has_since = c->has_since;
	w.sopts.since = c->since;
	if ((w.sigfd = signals_open(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0)
		return EXIT_ERROR;
	if ((r = watch_subscribe(&w)) < 0)
		r = wait_loop(&w);
	close(w.sigfd);
	return r;
}

/* ---- serve ---- */

/* The call being answered, and the CMD answering it. */
struct job {
	uint64_t	 call_id;
	uint64_t	 caller;
	struct guard	 g;		/* CMD's; pid 0: no call being
					   answered */
	bool		 reaped;
	int		 status;	/* waitpid's, once reaped */
	int		 in, out, err;	/* our ends of its pipes; -1: closed */
	char		*input;		/* what goes to its stdin */
	size_t		 input_len, input_off;
	char		*output;	/* its stdout, up to output_max */
	size_t		 output_len, output_max;
	bool		 output_over;	/* it wrote more */
	char		 errtext[1024];	/* the start of its stderr */
	size_t		 errlen;
	int64_t		 deadline;	/* --max-time, monotonic ms; 0: none */
	bool		 killed;	/* by --max-time */
};

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Read what one of the job's pipes has; EOF closes it. */
static void
job_read(struct job *j, int *fd)
{
	char buf[16384];
	ssize_t n;

	while ((n = read(*fd, buf, sizeof(buf))) > 0) {
		if (fd == &j->err) {
			size_t room = sizeof(j->errtext) - 1 - j->errlen;
			size_t k = (size_t)n < room ? (size_t)n : room;

			memcpy(j->errtext + j->errlen, buf, k);
			j->errlen += k;
			continue;
		}
		if (j->output_len + (size_t)n > j->output_max) {
			j->output_over = true;	/* drained, not kept */
			continue;
		}
		memcpy(j->output + j->output_len, buf, (size_t)n);
		j->output_len += (size_t)n;
	}
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		close_fd(fd);
}

/* Write what the job's stdin takes; all written (or EPIPE) closes it. */
static void
job_write(struct job *j)
{
	while (j->input_off < j->input_len) {
		ssize_t n = write(j->in, j->input + j->input_off,
		    j->input_len - j->input_off);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			break;		/* EPIPE: CMD does not read it all */
		}
		j->input_off += (size_t)n;
	}
	close_fd(&j->in);
}

/* Make sure fds 0, 1 and 2 are open, so that no pipe lands on them. */
static void
std_fds_open(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
			break;
	}
}

/* What the guardian of a serve CMD sets up: CMD's stdio on the pipes,
 * and its environment. */
struct job_setup {
	int		 in, out, err;	/* CMD's ends of the pipes */
	const char	*caller;
};

static void
job_setup(void *arg)
{
	const struct job_setup *js = arg;

	/* dup2 clears close-on-exec on the copies only. */
	if (dup2(js->in, 0) < 0 || dup2(js->out, 1) < 0 ||
	    dup2(js->err, 2) < 0)
		_exit(EXIT_NOEXEC);
	signal(SIGPIPE, SIG_DFL);
	setenv("PROCREG_CALLER", js->caller, 1);
}

/*
 * Start CMD for a call: the payload on its stdin (a str as it is, else
 * JSON and a newline), PROCREG_CALLER in its environment.  false (and a
 * message in why) when it cannot be started.
 */
static bool
job_start(struct job *j, char **argv, const struct procreg_event *ev,
    const sigset_t *mask, size_t output_max, uint64_t max_time_ms,
    uint64_t kill_after_ms, char *why, size_t whysize)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	struct job_setup js;
	char caller[32];
	msgpack_unpacked u;

	memset(j, 0, sizeof(*j));
	j->in = j->out = j->err = j->g.fd = -1;
	j->call_id = ev->call_id;
	j->caller = ev->sender;
	j->output_max = output_max;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, ev->payload, ev->payload_len, NULL) ==
	    MSGPACK_UNPACK_SUCCESS && u.data.type == MSGPACK_OBJECT_STR) {
		j->input_len = u.data.via.str.size;
		/* An empty str's ptr may be NULL: no memcpy from it. */
		if ((j->input = malloc(j->input_len + 1)) != NULL &&
		    j->input_len > 0)
			memcpy(j->input, u.data.via.str.ptr, j->input_len);
	} else if ((j->input = mp_text(ev->payload, ev->payload_len)) !=
	    NULL) {
		j->input_len = strlen(j->input);
		j->input[j->input_len++] = '\n';	/* the NUL's place */
	}
	msgpack_unpacked_destroy(&u);
	if (j->input == NULL || (j->output = malloc(output_max)) == NULL) {
		snprintf(why, whysize, "out of memory");
		goto fail;
	}
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(err, O_CLOEXEC) < 0) {
		snprintf(why, whysize, "pipe: %s", strerror(errno));
		goto fail;
	}
	snprintf(caller, sizeof(caller), "%" PRIu64, ev->sender);
	js = (struct job_setup){ in[0], out[1], err[1], caller };
	/* No terminal for CMD: serve itself stops on ^C. */
	if (!guard_start(&j->g, argv, mask, kill_after_ms, -1, job_setup,
	    &js)) {
		snprintf(why, whysize, "cannot start CMD");
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	j->in = in[1];
	j->out = out[0];
	j->err = err[0];
	fcntl(j->in, F_SETFL, O_NONBLOCK);
	fcntl(j->out, F_SETFL, O_NONBLOCK);
	fcntl(j->err, F_SETFL, O_NONBLOCK);
	if (max_time_ms > 0)
		j->deadline = mono_ms() + (int64_t)max_time_ms;
	job_write(j);
	return true;
fail:
	for (int k = 0; k < 2; k++) {
		close_fd(&in[k]);
		close_fd(&out[k]);
		close_fd(&err[k]);
	}
	free(j->input);
	free(j->output);
	j->input = j->output = NULL;
	return false;
}

static void
job_free(struct job *j)
{
	close_fd(&j->in);
	close_fd(&j->out);
	close_fd(&j->err);
	free(j->input);
	free(j->output);
	memset(j, 0, sizeof(*j));
	j->in = j->out = j->err = j->g.fd = -1;
}

/*
 * Answer the job's call from how CMD ended: its stdout as a str, or the
 * error failed.  A call that ended meanwhile (timeout, its caller gone)
 * is reported; the status of the reply otherwise.
 */
static int
job_reply(procreg_t *p, struct job *j, uint64_t max_time_ms)
{
	char msg[sizeof(j->errtext) + 64];
	size_t n = j->errlen;
	int st = j->status, r;

	if (!j->killed && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	    !j->output_over) {
		msgpack_sbuffer sb;
		msgpack_packer pk;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_str_with_body(&pk, j->output, j->output_len);
		r = procreg_reply(p, j->call_id, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	} else {
		while (n > 0 && strchr(" \t\r\n", j->errtext[n - 1]) != NULL)
			n--;
		j->errtext[n] = '\0';
		if (j->killed)
			snprintf(msg, sizeof(msg), "killed after %" PRIu64
			    " ms (--max-time)", max_time_ms);
		else if (WIFSIGNALED(st))
			snprintf(msg, sizeof(msg), "killed by signal %d",
			    WTERMSIG(st));
		else if (WEXITSTATUS(st) != 0)
			snprintf(msg, sizeof(msg), "exit status %d",
			    WEXITSTATUS(st));
		else
			snprintf(msg, sizeof(msg), "the output is larger than "
			    "%zu bytes", j->output_max);
		if (n > 0) {
			size_t len = strlen(msg);

			snprintf(msg + len, sizeof(msg) - len, ": %s",
			    j->errtext);
		}
		utf8_scrub(msg, strlen(msg));
		r = procreg_reply_error(p, j->call_id, "failed", msg);
	}
	if (r == PROCREG_E_NOT_FOUND) {
		fprintf(stderr, "procregctl: the call from conn %" PRIu64
		    " ended before CMD answered it (timeout, or its caller "
		    "went away)\n", j->caller);
		r = PROCREG_OK;
	}
	return r;
}

/* The calls waiting for CMD, first come first. */
struct callq {
	struct procreg_event	**v;
	size_t			 head, len, cap;
};

/* Queue a call event (ours now); false when out of memory. */
static bool
callq_push(struct callq *q, struct procreg_event *ev)
{
	if (q->head > 0 && q->len == q->cap) {
		memmove(q->v, q->v + q->head, (q->len - q->head) *
		    sizeof(*q->v));
		q->len -= q->head;
		q->head = 0;
	}
	if (q->len == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 16;
		struct procreg_event **v = realloc(q->v, cap * sizeof(*v));

		if (v == NULL)
			return false;
		q->v = v;
		q->cap = cap;
	}
	q->v[q->len++] = ev;
	return true;
}

/* The oldest call, or NULL. */
static struct procreg_event *
callq_pop(struct callq *q)
{
	return q->head < q->len ? q->v[q->head++] : NULL;
}

static void
callq_free(struct callq *q)
{
	struct procreg_event *ev;

	while ((ev = callq_pop(q)) != NULL)
		procreg_event_free(ev);
	free(q->v);
}

/*
 * serve NAME CMD...: answer each call to NAME by running CMD.  Every
 * notification is taken as it comes, calls into a queue of our own, so
 * that a lost NAME stops a CMD that is running (no other holder must be
 * answered beside).
 */
static int
cmd_serve(struct ctl *c)
{
	static const int sigs[] = { SIGCHLD, SIGINT, SIGTERM };
	struct procreg_hello h;
	struct procreg_event *ev;
	struct callq q = { 0 };
	struct job j;
	sigset_t old;
	size_t output_max;
	uint64_t served = 0;
	bool stopping = false, daemon_error = false, lost = false;
	char why[256];
	int sigfd, r = PROCREG_OK, ex = EXIT_SUCCESS;

	if (!check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_hello(c->p, &h)) != PROCREG_OK)
		return report(c, r, NULL);
	/* Room for the reply's framing in the daemon's max_message. */
	output_max = h.max_message > 2048 ? h.max_message - 1024 : 1024;
	if ((ex = register_name(c, c->args[0], NULL, 0)) != EXIT_SUCCESS)
		return ex;
	std_fds_open();
	signal(SIGPIPE, SIG_IGN);	/* a CMD that does not read stdin */
	if ((sigfd = signals_open(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    &old)) < 0)
		return EXIT_ERROR;
	memset(&j, 0, sizeof(j));
	j.in = j.out = j.err = j.g.fd = -1;
	while (!stopping) {
		struct pollfd pfd[5];
		struct signalfd_siginfo si;
		int n = 0, timeout = -1;

		while (r == PROCREG_OK && !lost &&
		    (r = procreg_next_event(c->p, 0, &ev)) == PROCREG_OK) {
			if (ev->kind == PROCREG_EV_ERROR) {
				fprintf(stderr, "procregctl: the daemon reports "
				    "%s: %s\n", ev->reason, ev->message);
				daemon_error = true;
			} else if (ev->kind == PROCREG_EV_LOST &&
			    strcmp(ev->name, c->args[0]) == 0) {
				fprintf(stderr, "procregctl: lost %s (%s)%s\n",
				    ev->name, ev->reason, j.g.pid != 0 ?
				    ": stopping CMD" : "");
				lost = true;
			} else if (ev->kind == PROCREG_EV_CALL &&
			    callq_push(&q, ev))
				continue;	/* the queue's now */
			else if (ev->kind == PROCREG_EV_CALL) {
				r = procreg_reply_error(c->p, ev->call_id,
				    "failed", "out of memory");
				if (r == PROCREG_E_NOT_FOUND)
					r = PROCREG_OK;
			}
			procreg_event_free(ev);
		}
		if (r == PROCREG_E_TIMEOUT)
			r = PROCREG_OK;
		if (r != PROCREG_OK || lost)
			break;
		/* Idle: take the next call, in the order they came. */
		while (j.g.pid == 0 && r == PROCREG_OK &&
		    (c->count == 0 || served < c->count) &&
		    (ev = callq_pop(&q)) != NULL) {
			if (!job_start(&j, c->args + 1, ev, &old, output_max,
			    c->max_time_ms, c->kill_after_ms, why,
			    sizeof(why))) {
				r = procreg_reply_error(c->p, ev->call_id,
				    "failed", why);
				if (r == PROCREG_E_NOT_FOUND)
					r = PROCREG_OK;
				served++;
			}
			procreg_event_free(ev);
		}
		if (r != PROCREG_OK)
			break;
		if (j.g.pid == 0 && c->count > 0 && served >= c->count)
			break;
		pfd[n++] = (struct pollfd){ sigfd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ procreg_fd(c->p), POLLIN, 0 };
		if (j.in >= 0)
			pfd[n++] = (struct pollfd){ j.in, POLLOUT, 0 };
		if (j.out >= 0)
			pfd[n++] = (struct pollfd){ j.out, POLLIN, 0 };
		if (j.err >= 0)
			pfd[n++] = (struct pollfd){ j.err, POLLIN, 0 };
		if (j.g.pid != 0 && j.deadline > 0 && !j.reaped) {
			int64_t left = j.deadline - mono_ms();

			timeout = left > 0 ? (int)left : 0;
		}
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			fprintf(stderr, "procregctl: poll: %s\n",
			    strerror(errno));
			ex = EXIT_ERROR;
			break;
		}
		/* The connection first: calls queue while CMD runs. */
		if (pfd[1].revents && (r = procreg_process(c->p)) !=
		    PROCREG_OK)
			break;
		if (j.in >= 0)
			job_write(&j);
		if (j.out >= 0)
			job_read(&j, &j.out);
		if (j.err >= 0)
			job_read(&j, &j.err);
		while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if (si.ssi_signo != SIGCHLD)
				stopping = true;
		}
		if (j.g.pid != 0 && !j.reaped &&
		    guard_reap(&j.g, false, &j.status))
			j.reaped = true;
		if (j.g.pid != 0 && !j.reaped && j.deadline > 0 &&
		    mono_ms() >= j.deadline && !j.killed) {
			guard_signal(&j.g, SIGKILL);
			j.killed = true;
		}
		if (j.reaped) {
			/* What it wrote before it ended is in the pipes; a
			 * background child of it may keep them open. */
			if (j.out >= 0)
				job_read(&j, &j.out);
			if (j.err >= 0)
				job_read(&j, &j.err);
			r = job_reply(c->p, &j, c->max_time_ms);
			served++;
			job_free(&j);
			if (r != PROCREG_OK)
				break;
		}
	}
	if (j.g.pid != 0 && !j.reaped) {
		/* Stopped while CMD runs: its caller gets down.  SIGTERM, and
		 * SIGKILL after --kill-after, the guardian sees to that. */
		guard_signal(&j.g, SIGTERM);
		(void)guard_reap(&j.g, true, &j.status);
	}
	job_free(&j);
	callq_free(&q);
	close(sigfd);
	if (ex != EXIT_SUCCESS)
		return ex;
	if (lost)
		return EXIT_LOST;
	if (r != PROCREG_OK) {
		ex = report(c, r, c->args[0]);
		return daemon_error ? EXIT_ERROR : ex;
	}
	return EXIT_SUCCESS;
}

/* monitor: our down came; print its reason. */
static void
monitor_event(struct waiter *w, const struct procreg_event *ev)
{
	bool ok;

	if (w->done || ev->kind != PROCREG_EV_DOWN || ev->ref != w->ref)
		return;
	if (w->c->json && ev->name == NULL)
		ok = put_json(json_pack("{s:I, s:s}", "conn",
		    (json_int_t)ev->target_conn, "reason", ev->reason), 0);
	else if (w->c->json)
		ok = put_json(json_pack("{s:s, s:s}", "name", ev->name,
		    "reason", ev->reason), 0);
	else
		ok = printf("%s\n", ev->reason) > 0 && fflush(stdout) == 0;
	w->done = true;
	w->exit = !ok ? EXIT_ERROR : strcmp(ev->reason, "noproc") == 0 ?
	    EXIT_NO : EXIT_SUCCESS;
}

/* monitor NAME: wait for the registration of NAME to end. */
static int
cmd_monitor(struct ctl *c)
{
	struct waiter w = { .c = c, .sigfd = -1, .on_event = monitor_event,
	    .name = c->args[0] };
	uint64_t conn = 0;
	int r;

	if (!parse_target(c, w.name, &conn))
		return EXIT_USAGE;
	r = c->conn ? procreg_monitor_conn(c->p, conn, &w.ref) :
	    procreg_monitor(c->p, w.name, &w.ref);
	if (r != PROCREG_OK)
		return report(c, r, w.name);
	return wait_loop(&w);
}

/* stats: the daemon's counters. */
static int
cmd_stats(struct ctl *c)
{
	struct procreg_stats st;
	json_t *j;
	char age[32];
	int r;

	if ((r = procreg_stats(c->p, &st)) != PROCREG_OK)
		return report(c, r, NULL);
	if (c->json) {
		j = json_object();
		for (size_t i = 0; i < NSTATS; i++)
			json_object_set_new_nocheck(j, stats_keys[i].key,
			    json_integer((json_int_t)*(const uint64_t *)
			    ((const char *)&st + stats_keys[i].offset)));
		return put_json(j, 0) ? EXIT_SUCCESS : EXIT_ERROR;
	}
	for (size_t i = 0; i < NSTATS; i++) {
		uint64_t v = *(const uint64_t *)((const char *)&st +
		    stats_keys[i].offset);

		printf("%-23s%" PRIu64, stats_keys[i].key, v);
		if (strcmp(stats_keys[i].key, "uptime_ms") == 0) {
			fmt_age(age, sizeof(age), v);
			printf(" (%s)", age);
		}
		putchar('\n');
	}
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* ping: hello, timed, --count times. */
static int
cmd_ping(struct ctl *c)
{
	struct procreg_hello h;
	struct timespec t0, t1, gap;
	uint64_t n = c->count ? c->count : 1;
	bool ok = true;
	int r;

	for (uint64_t i = 0; i < n && ok; i++) {
		double ms;

		gap.tv_sec = (time_t)(c->interval_ms / 1000);
		gap.tv_nsec = (long)(c->interval_ms % 1000) * 1000000;
		while (i > 0 && nanosleep(&gap, &gap) < 0 && errno == EINTR)
			;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if ((r = procreg_hello(c->p, &h)) != PROCREG_OK)
			return report(c, r, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		/* In whole microseconds, so that JSON shows 0.123, not
		 * 0.12300000000000001. */
		ms = (double)((t1.tv_sec - t0.tv_sec) * 1000000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000) / 1e3;
		if (c->json)
			ok = put_json(json_pack("{s:s, s:I, s:I, s:f}",
			    "version", h.version, "protocol",
			    (json_int_t)h.protocol, "conn", (json_int_t)h.conn,
			    "rtt_ms", ms), JSON_REAL_PRECISION(15));
		else
			ok = printf("pong from %s %s (protocol %" PRIu64
			    ", conn %" PRIu64 "): %.3f ms\n", PR_SERVER_NAME,
			    h.version, h.protocol, h.conn, ms) > 0 &&
			    fflush(stdout) == 0;
	}
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* Connect as the command wants; the exit status on failure, else 0. */
static int
connect_daemon(struct ctl *c)
{
	/*
	 * For call and await, -t is the daemon's timeout only: the library
	 * waits that long plus the handle's own (default) timeout.
	 */
	struct procreg_options o = { .path = c->socket, .label = NULL,
	    .timeout_ms = c->cmd->bit & (C_CALL | C_AWAIT) ? 0 : c->timeout_ms,
	    .auto_reconnect = c->cmd->reconnect };
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
	r = report(c, r, NULL);
	return r == EXIT_ERROR || r == EXIT_UNREACHABLE ? r :
	    EXIT_UNREACHABLE;
}

/* Parse the command line, connect, and run the command. */
int
main(int argc, char **argv)
{
	struct ctl c = { .interval_ms = 1000, .kill_after_ms = KILL_AFTER_MS };
	int r;

	if ((r = parse_args(&c, argc, argv)) >= 0)
		return r;
	if (optind >= argc)
		return usage_error(NULL, "no command given");
	if ((c.cmd = find_command(argv[optind])) == NULL)
		return usage_error(NULL, "unknown command '%s'",
		    argv[optind]);
	argc -= optind;
	argv += optind;
	if ((c.args = calloc((size_t)argc + 1, sizeof(*c.args))) == NULL) {
		fprintf(stderr, "procregctl: out of memory\n");
		return EXIT_ERROR;
	}
	if ((r = parse_args(&c, argc, argv)) >= 0)
		goto out;
	r = EXIT_USAGE;
	if (c.nargs < c.cmd->min_args)
		usage_error(c.cmd, "missing operand: %s %s", c.cmd->name,
		    c.cmd->synopsis);
	else if (c.cmd->max_args >= 0 && c.nargs > c.cmd->max_args)
		usage_error(c.cmd, "unexpected argument '%s'",
		    c.args[c.cmd->max_args]);
	else if ((r = connect_daemon(&c)) == EXIT_SUCCESS)
		r = c.cmd->run(&c);
out:
	procreg_free(c.p);
	free(c.args);
	return r;
}
