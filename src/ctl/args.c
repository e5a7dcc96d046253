/*
 * args.c: procregctl's command line: one command table (name, handler,
 * operands, help) and one option table (which commands take each option)
 * drive parsing and every --help.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "procreg-protocol.h"

enum opt_id {
	OPT_SOCKET, OPT_JSON, OPT_TIMEOUT, OPT_HELP, OPT_VERSION,
	OPT_JSON_PAYLOAD, OPT_CONN, OPT_GEN, OPT_VALUE, OPT_JSON_VALUE,
	OPT_WAIT, OPT_ALLOW_REPLACEMENT, OPT_REPLACE, OPT_NO_ECHO,
	OPT_MAX_TIME, OPT_COUNT, OPT_INTERVAL, OPT_GROUPS, OPT_SINCE,
	OPT_KILL_AFTER, OPT_PID, OPT_UID, OPT_NO_RECONNECT, OPT_CLUSTER,
	OPT_LOCAL, OPT_ALL, OPT_CONSISTENT, OPT__COUNT
};

/*
 * One row of the option table.  An option may have several rows, each
 * for other commands, so that each command's --help describes it as that
 * command uses it; no command is in two rows of one option.
 */
struct ctl_option {
	enum opt_id	 id;
	const char	*name;
	int		 shortopt;
	const char	*arg;		/* NULL: takes no argument */
	unsigned	 cmds;
	const char	*help;
};

/* The commands with a -t of their own (the daemon's timeout). */
#define C_OWN_TIMEOUT	(C_CALL | C_AWAIT)

static const struct ctl_option options[] = {
	{ OPT_SOCKET, "socket", 's', "PATH", C_ALL, "the daemon's socket "
	    "(default: $PROCREG_SOCKET, else $XDG_RUNTIME_DIR/procreg.sock, "
	    "else /run/procreg/procreg.sock for root, else "
	    "/tmp/procreg-UID/procreg.sock)" },
	{ OPT_JSON, "json", 0, NULL, C_TOP, "print JSON for scripts: one "
	    "document per item (list, members, queue, nodes: one array; recv, "
	    "join, "
	    "watch: one object per line); errors as one object on stderr, "
	    "{\"error\": CODE, \"message\": TEXT}" },
	{ OPT_JSON, "json", 0, NULL, C_ALL & ~C_TOP, "print JSON for "
	    "scripts, as said above; errors as one object on stderr, "
	    "{\"error\": CODE, \"message\": TEXT}" },
	{ OPT_TIMEOUT, "timeout", 't', "MS", C_TOP, "how long each request "
	    "may wait for its reply (default 10000; call and await use it "
	    "otherwise: see their --help)" },
	{ OPT_TIMEOUT, "timeout", 't', "MS", C_ALL & ~(C_TOP | C_OWN_TIMEOUT),
	    "how long each request may wait for its reply (default 10000)" },
	{ OPT_TIMEOUT, "timeout", 't', "MS", C_CALL, "how long the callee "
	    "has to reply (default 5000, at most 86400000)" },
	{ OPT_TIMEOUT, "timeout", 't', "MS", C_AWAIT, "how long to wait for "
	    "NAME (default 5000, at most 86400000)" },
	{ OPT_HELP, "help", 'h', NULL, C_ALL, "show this help and exit" },
	{ OPT_VERSION, "version", 'V', NULL, C_TOP, "show the version and "
	    "exit" },
	{ OPT_JSON_PAYLOAD, "json-payload", 0, NULL, C_SEND | C_CALL |
	    C_PUBLISH, "PAYLOAD is JSON, sent as the same msgpack value "
	    "(default: a str); PAYLOAD - reads the JSON from standard input" },
	{ OPT_CONN, "conn", 0, NULL, C_SEND | C_CALL | C_MONITOR, "NAME is "
	    "a connection id (its digits), not a name" },
	{ OPT_GEN, "gen", 0, "G", C_SEND, "send only while NAME's "
	    "registration has generation G (as whereis shows it); else exit "
	    "1, stale" },
	{ OPT_VALUE, "value", 0, "V", C_HOLD, "register NAME with value V "
	    "(a str; default: no value)" },
	{ OPT_JSON_VALUE, "json-value", 0, NULL, C_HOLD, "V is JSON, stored "
	    "as the same msgpack value" },
	{ OPT_JSON_VALUE, "json-value", 0, NULL, C_JOIN, "VALUE is JSON, "
	    "stored as the same msgpack value" },
	{ OPT_WAIT, "wait", 'w', NULL, C_HOLD, "when NAME is taken, wait in "
	    "its queue until it passes to us, then run CMD" },
	{ OPT_ALLOW_REPLACEMENT, "allow-replacement", 0, NULL, C_HOLD,
	    "let a hold --replace take NAME over (CMD is then stopped, and "
	    "hold exits 5)" },
	{ OPT_REPLACE, "replace", 0, NULL, C_HOLD, "take NAME over from a "
	    "holder that allows it" },
	{ OPT_NO_ECHO, "no-echo", 0, NULL, C_PUBLISH, "publish with echo "
	    "false (not to the publisher's own connection)" },
	{ OPT_MAX_TIME, "max-time", 0, "MS", C_SERVE, "kill CMD when it "
	    "runs longer than MS, and answer failed (default: no limit)" },
	{ OPT_COUNT, "count", 'c', "N", C_RECV, "stop after N messages "
	    "(default: none)" },
	{ OPT_COUNT, "count", 'c', "N", C_JOIN, "stop after N publishes "
	    "(default: none)" },
	{ OPT_COUNT, "count", 'c', "N", C_SERVE, "stop after N calls "
	    "(default: none)" },
	{ OPT_COUNT, "count", 'c', "N", C_PING, "ping N times (default 1); "
	    "more than once, a min/avg/max summary follows" },
	{ OPT_INTERVAL, "interval", 'i', "MS", C_PING, "wait MS between "
	    "pings (default 1000)" },
	{ OPT_GROUPS, "groups", 'g', NULL, C_WATCH, "the groups under "
	    "PREFIX too: their members joining and leaving" },
	{ OPT_SINCE, "since", 0, "SEQ", C_WATCH, "resume after event SEQ "
	    "(the last one a watch printed): no snapshot, the events since" },
	{ OPT_CLUSTER, "cluster", 0, NULL, C_HOLD, "register NAME in the "
	    "cluster: unique across every node, not only on this daemon "
	    "(which must run in cluster mode: else exit 4, unavailable); "
	    "NAME is lost (nodedown) if the daemon's node loses its lease.  "
	    "Queued (the wait option), it takes a place in NAME's line across "
	    "the nodes.  Replacement is not in this protocol version for "
	    "cluster names: with it the daemon answers bad_request" },
	{ OPT_CLUSTER, "cluster", 0, NULL, C_SERVE | C_RECV, "register NAME "
	    "in the cluster: unique across every node, not only on this "
	    "daemon (which must run in cluster mode: else exit 4, "
	    "unavailable); NAME is lost (nodedown) if the daemon's node loses "
	    "its lease" },
	{ OPT_CLUSTER, "cluster", 0, NULL, C_WHEREIS, "only the cluster's "
	    "NAME (default: this daemon's local NAME if there is one, else "
	    "the cluster's)" },
	{ OPT_LOCAL, "local", 0, NULL, C_WHEREIS, "only this daemon's local "
	    "NAME" },
	{ OPT_CONSISTENT, "consistent", 0, NULL, C_WHEREIS, "read a cluster "
	    "name from etcd, not from the daemon's cache: one round trip "
	    "more, never stale" },
	{ OPT_CLUSTER, "cluster", 0, NULL, C_LIST, "the cluster's names "
	    "instead of this daemon's local ones; a NODE column follows NAME" },
	{ OPT_ALL, "all", 0, NULL, C_LIST, "this daemon's local names and "
	    "the cluster's, in name order; a NODE column follows NAME (- for "
	    "a local name)" },
	{ OPT_CLUSTER, "cluster", 0, NULL, C_WATCH, "the cluster's names "
	    "instead of this daemon's local ones: SEQ is etcd's revision, the "
	    "entries have node=NODE, and a watch resumes after a restart of "
	    "the daemon too; not with the groups option (bad_request)" },
	{ OPT_PID, "pid", 0, "PID", C_LIST, "only the names held by "
	    "process PID" },
	{ OPT_UID, "uid", 0, "UID", C_LIST, "only the names held by user "
	    "UID (a number)" },
	{ OPT_NO_RECONNECT, "no-reconnect", 0, NULL, C_RECV | C_SERVE,
	    "when the daemon goes away, exit 3 instead of waiting for it to "
	    "come back and registering NAME again" },
	{ OPT_NO_RECONNECT, "no-reconnect", 0, NULL, C_JOIN, "when the "
	    "daemon goes away, exit 3 instead of waiting for it to come back "
	    "and joining GROUP again" },
	{ OPT_NO_RECONNECT, "no-reconnect", 0, NULL, C_WATCH, "when the "
	    "daemon goes away, exit 3 instead of waiting for it to come back "
	    "and resuming" },
	{ OPT_KILL_AFTER, "kill-after", 0, "MS", C_HOLD | C_SERVE, "when "
	    "CMD's process group is told to end (SIGTERM, or a signal passed "
	    "on), SIGKILL what is left of it MS later (default 5000; 0: at "
	    "once)" },
};
#define NOPTIONS	(sizeof(options) / sizeof(options[0]))

static const struct command commands[] = {
	{ "whereis", names_whereis, C_WHEREIS, 1, 1, false, "NAME",
	    "show who holds NAME",
	    "Print the registration of NAME: name, conn, pid, uid, gid, value "
	    "(as JSON) and since (when it was registered, UTC).  A cluster "
	    "name (a daemon in cluster mode) adds scope: cluster and node "
	    "(the node its holder is connected to, whose conn, pid, uid and "
	    "gid they are), and stale: yes when the daemon answered from its "
	    "cache, which may lag etcd; in JSON the keys scope, node and "
	    "stale.  By default this daemon's local NAME if there is one, "
	    "else the cluster's.  "
	    "Exit 1 when NAME is not registered; exit 4 (unavailable) when "
	    "the cluster cannot be asked." },
	{ "await", names_await, C_AWAIT, 1, 1, false, "NAME",
	    "wait until NAME is registered",
	    "Wait until NAME is registered (at once when it is) and print its "
	    "registration, as whereis does.  -t is how long to wait (default "
	    "5000, at most 86400000).  Exit 1 when NAME is still not "
	    "registered by then, so that `procregctl await db && start-app` "
	    "starts the app once db is there, without polling." },
	{ "list", names_list, C_LIST, 0, 1, false, "[PREFIX]",
	    "list the names (that start with PREFIX)",
	    "Print a table of every registered name that starts with PREFIX "
	    "(all names without one), in name order: NAME CONN PID UID VALUE "
	    "AGE; with --pid or --uid only the names of that process or "
	    "user.  With --cluster the cluster's names, with --all this "
	    "daemon's local names and the cluster's: NAME NODE CONN PID UID "
	    "VALUE AGE, the conn, pid and uid being the holder's on its node "
	    "(exit 4, unavailable, when the daemon is not in cluster mode or "
	    "cannot reach etcd).  On a terminal the table fits it: lines cut to its width, "
	    "wide characters counted as two columns, a bin value as <bin N "
	    "bytes>; elsewhere the output does not change with where it "
	    "goes.  With --json, one array of entry objects." },
	{ "send", msg_send, C_SEND, 2, 2, false, "NAME PAYLOAD",
	    "send a message to the holder of NAME",
	    "Send PAYLOAD to the connection that holds NAME: a msgpack str, or "
	    "with --json-payload the JSON value as msgpack (objects as maps, "
	    "reals as float64, null as nil).  Prints nothing on success.  Exit "
	    "1 when NAME is not registered or its holder is busy (its queue "
	    "is full: retry later), or with --gen when NAME's registration "
	    "has another generation (stale: it changed hands).  Put -- before "
	    "a PAYLOAD that starts with a dash; PAYLOAD - is read from "
	    "standard input.  With --conn, NAME is a connection id." },
	{ "call", msg_call, C_CALL, 2, 2, false, "NAME PAYLOAD",
	    "call the holder of NAME and print its reply",
	    "Call the connection that holds NAME with PAYLOAD (a str, or JSON "
	    "with --json-payload; - reads it from standard input) and print the reply: a str as it is (with a "
	    "newline unless it ends with one), anything else as JSON; with "
	    "--json, the reply as one JSON document.  -t is how long the "
	    "callee has to reply (default 5000, at most 86400000).  Exit 1 "
	    "when NAME is not registered, its holder is busy or goes away "
	    "before it replies (down), or the callee answers with an error "
	    "(printed as CODE: MESSAGE); exit 4 when it does not reply in "
	    "time (timeout).  With --conn, NAME is a connection id." },
	{ "hold", run_hold, C_HOLD, 2, -1, true, "NAME [--] CMD [ARGS...]",
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
	    "procregctl exits 5 once all of it has ended; so it does when "
	    "NAME is a cluster name (--cluster) and the daemon's node loses "
	    "its lease (nodedown).  The name is "
	    "someone else's before hold hears of it: a new holder may start "
	    "while the old CMD stops, for the time its SIGTERM takes (at most "
	    "--kill-after).  Options go before CMD: everything after NAME is "
	    "CMD's." },
	{ "serve", run_serve, C_SERVE, 2, -1, true, "NAME [--] CMD [ARGS...]",
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
	    "--kill-after, and its caller gets down).  If the daemon goes "
	    "away, serve says so on stderr, waits for it to come back, "
	    "registers NAME again and serves on (the calls pending then ended "
	    "with the old daemon; a CMD running for one is not answered); "
	    "with --no-reconnect it exits 3 instead.  Exit 1 when NAME is "
	    "taken, 5 when NAME is lost (an administrator evicted it, or "
	    "someone else registered it while the daemon restarted; a CMD "
	    "running then is stopped the same way).  Options go before CMD: "
	    "everything after NAME is CMD's." },
	{ "recv", msg_recv, C_RECV, 1, 1, true, "NAME",
	    "hold NAME and print the messages sent to it",
	    "Register NAME and print each message sent to it, one per line: a "
	    "str with backslash, newline, carriage return and the other "
	    "control characters but tab escaped (\\\\, \\n, \\r, \\xNN), "
	    "anything else as JSON.  With --json each line is "
	    "{\"name\": ..., \"sender\": CONN, \"payload\": JSON}.  Runs "
	    "until --count messages came, or SIGINT or SIGTERM (exit 0).  If "
	    "the daemon goes away, recv says so on stderr, waits for it to "
	    "come back and registers NAME again (messages sent meanwhile are "
	    "lost); with --no-reconnect it exits 3 instead.  Exit 1 when NAME "
	    "is taken, 5 when someone else registered it while the daemon "
	    "restarted." },
	{ "join", groups_join, C_JOIN, 1, 2, true, "GROUP [VALUE]",
	    "join GROUP and print what is published to it",
	    "Join GROUP (with VALUE, a str or with --json-value JSON; default: "
	    "no value) and print each payload published to it, one per line, "
	    "as recv prints messages.  With --json each line is "
	    "{\"group\": ..., \"sender\": CONN, \"payload\": JSON}.  The "
	    "membership lasts until --count publishes came, or SIGINT or "
	    "SIGTERM (exit 0).  If the daemon goes away, join says so on "
	    "stderr, waits for it to come back and joins GROUP again "
	    "(publishes meanwhile are lost); with --no-reconnect it exits 3 "
	    "instead.  Exit 1 when GROUP is forbidden to you (also by a new "
	    "daemon)." },
	{ "members", groups_members, C_MEMBERS, 1, 1, false, "GROUP",
	    "list the members of GROUP",
	    "Print a table of the members of GROUP, in the order they joined: "
	    "CONN PID UID VALUE AGE.  A group without members prints the "
	    "header only.  With --json, one array of member objects (group, "
	    "conn, pid, uid, gid, value, since, gen)." },
	{ "publish", groups_publish, C_PUBLISH, 2, 2, false, "GROUP PAYLOAD",
	    "send PAYLOAD to every member of GROUP",
	    "Publish PAYLOAD (a str, or JSON with --json-payload; - reads it "
	    "from standard input) to every "
	    "member of GROUP and print to how many it went, and which members "
	    "were busy (their queue is full) and did not get it; with --json, "
	    "{\"delivered\": N, \"busy\": [CONN, ...]}.  A group without "
	    "members is no error: delivered 0.  procregctl's own connection "
	    "is no member, so --no-echo only passes echo false on." },
	{ "monitor", events_monitor, C_MONITOR, 1, 1, false, "NAME",
	    "wait until NAME goes away",
	    "Monitor the current registration of NAME and wait until it ends; "
	    "print why (unregistered, disconnected, evicted, replaced, or "
	    "nodedown: a cluster name's holder was on a node that lost its "
	    "lease) and "
	    "exit 0; a hand-over to a waiter of the name ends it too, with the "
	    "old holder's reason.  When NAME is not registered, print noproc "
	    "and exit 1.  With --conn, NAME is a connection id: wait until "
	    "that connection goes away (disconnected).  Exit 3 when the "
	    "daemon goes away: the registration ended with it (a stopping "
	    "daemon sends no down), and a new daemon's NAME, if any, is "
	    "another registration." },
	{ "watch", events_watch, C_WATCH, 0, 1, true, "[PREFIX]",
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
	    "SEQ} for a gap.  If the daemon goes away, watch says so on "
	    "stderr and waits for it to come back: the same daemon, and it "
	    "resumes after the last change it printed; a new daemon (its "
	    "names are new, its SEQs start anew), and it prints the line SEQ "
	    "restarted ({\"seq\": SEQ, \"kind\": \"restarted\"}), SEQ "
	    "the new daemon's, and the new daemon's snapshot; the names "
	    "printed before are gone.  With --no-reconnect it exits 3 "
	    "instead.  Runs until SIGINT or SIGTERM (exit 0)." },
	{ "keys", names_keys, C_KEYS, 1, 1, false, "CONN",
	    "show the names and groups of a connection",
	    "Print the names that connection CONN holds and the groups it is "
	    "a member of, each sorted, one per line under names: and groups:.  "
	    "With --json, {\"names\": [...], \"groups\": [...]}.  Exit 1 when "
	    "no connection CONN is open." },
	{ "queue", names_queue, C_QUEUE, 1, 1, false, "NAME",
	    "list the connections waiting for NAME",
	    "Print the connection ids waiting in NAME's queue (hold --wait), "
	    "first in line first, one per line; nothing when none wait.  The "
	    "line of a cluster name is of connections on any node: CONN NODE "
	    "on each line.  With --json, one array: of connection ids, or of "
	    "{\"node\": NODE, \"conn\": CONN} for a cluster name." },
	{ "nodes", names_nodes, C_NODES, 0, 0, false, "",
	    "list the nodes of the cluster",
	    "Print a table of the nodes of the cluster the daemon belongs to "
	    "(those that hold a lease in etcd), in name order: NAME ADDRESS "
	    "AGE SELF, SELF yes for the daemon procregctl talks to.  With "
	    "--json, one array of node objects (name, address, since, "
	    "self).  Exit 4 (unavailable) when the daemon is not in cluster "
	    "mode (procregd --etcd) or cannot reach etcd." },
	{ "stats", admin_stats, C_STATS, 0, 0, false, "",
	    "show the daemon's counters",
	    "Print the daemon's gauges and counters, one per line, then its "
	    "pid (the socket's peer), socket, version, protocol and resident "
	    "memory (memory_rss_kb, from /proc) where they can be known, and "
	    "when it runs in cluster mode its cluster's: "
	    "cluster.node, cluster.state (joining, up, or lost: its lease "
	    "expired), cluster.etcd, cluster.lease_ttl, cluster.names, "
	    "cluster.nodes, cluster.revision.  With --json, one object (the "
	    "cluster's as the object cluster)." },
	{ "ping", admin_ping, C_PING, 0, 0, false, "",
	    "check that the daemon answers",
	    "Say hello to the daemon and print its version and the round-trip "
	    "time; after more than one ping (--count), a min/avg/max "
	    "summary." },
	{ "evict", admin_evict, C_EVICT, 1, 1, false, "NAME",
	    "remove NAME, whoever holds it (administrators)",
	    "Remove the registration of NAME whoever holds it; its monitors "
	    "fire with reason evicted, and its holder's connection stays "
	    "open.  For uid 0, the daemon's own user and the admin_group of "
	    "procreg.conf(5).  Exit 1 when NAME is not registered or evict is "
	    "forbidden to you." },
	{ "help", args_help, C_HELP, 0, 1, false, "[COMMAND]",
	    "show this help, or COMMAND's",
	    "Print procregctl's help, or with COMMAND the command's, as "
	    "procregctl --help and procregctl COMMAND --help do." },
};
#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* ---- help ---- */

/* Print words wrapped before column 79, starting at column indent, with
 * continuation lines indented as much. */
static void
args_wrapped(FILE *f, const char *text, size_t indent)
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
args_options(FILE *f, unsigned cmds)
{
	for (size_t i = 0; i < NOPTIONS; i++) {
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
		args_wrapped(f, o->help, 25);
	}
}

/* The tool's --help. */
static void
args_usage(FILE *f)
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
	args_options(f, C_TOP);
	fputs("\nExit status:\n"
	    "  0    success\n"
	    "  1    a \"no\": not registered, taken, busy, noproc, down, "
	    "forbidden, ...\n"
	    "  2    usage error\n"
	    "  3    cannot reach the daemon, or the connection was lost\n"
	    "  4    any other error (protocol error, limit, too large, "
	    "timeout, ...)\n"
	    "  5    hold, serve, recv: NAME lost (evicted, replaced, or taken "
	    "at a restart)\n"
	    "  hold exits with CMD's status (128+N if signal N killed it), 1 "
	    "when NAME\n  is taken, 127 when CMD cannot be run.\n", f);
}

/* A command's --help. */
static void
args_command_usage(FILE *f, const struct command *cmd)
{
	fprintf(f, "usage: procregctl %s [OPTIONS]%s%s\n\n", cmd->name,
	    cmd->synopsis[0] ? " " : "", cmd->synopsis);
	args_wrapped(f, cmd->help, 0);
	fputs("\nOptions:\n", f);
	args_options(f, cmd->bit);
}

/* Report a bad command line (with a hint at the right --help); returns
 * EXIT_USAGE. */
int
args_error(const struct ctl *c, const char *fmt, ...)
{
	const struct command *cmd = c->cmd;
	char hint[64];
	va_list ap;
	int r;

	snprintf(hint, sizeof(hint), "Try 'procregctl %s%s--help'.",
	    cmd ? cmd->name : "", cmd ? " " : "");
	va_start(ap, fmt);
	r = out_usage(c, hint, fmt, ap);
	va_end(ap);
	return r;
}

/* ---- command line ---- */

/* Parse a decimal number from min to max; false when s is not one. */
bool
args_num(const char *s, uint64_t min, uint64_t max, uint64_t *out)
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
args_apply(struct ctl *c, enum opt_id id)
{
	uint64_t v;

	switch (id) {
	case OPT_SOCKET:
		if (optarg[0] == '\0')
			return args_error(c, "--socket: empty path");
		c->socket = optarg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_TIMEOUT:
		if (!args_num(optarg, 1, INT_MAX, &v))
			return args_error(c, "--timeout: expected "
			    "milliseconds from 1 to %d", INT_MAX);
		c->timeout_ms = (int)v;
		break;
	case OPT_HELP:
		if (c->cmd != NULL)
			args_command_usage(stdout, c->cmd);
		else
			args_usage(stdout);
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
		if (!args_num(optarg, 1, INT_MAX, &c->max_time_ms))
			return args_error(c, "--max-time: expected "
			    "milliseconds from 1 to %d", INT_MAX);
		break;
	case OPT_VALUE:
		c->value = optarg;
		break;
	case OPT_JSON_VALUE:
		c->json_value = true;
		break;
	case OPT_COUNT:
		if (!args_num(optarg, 1, UINT64_MAX, &c->count))
			return args_error(c, "--count: expected a "
			    "number from 1");
		break;
	case OPT_INTERVAL:
		if (!args_num(optarg, 0, 3600000, &c->interval_ms))
			return args_error(c, "--interval: expected "
			    "milliseconds from 0 to 3600000");
		break;
	case OPT_GEN:
		if (!args_num(optarg, 1, UINT64_MAX, &c->gen))
			return args_error(c, "--gen: expected a "
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
		if (!args_num(optarg, 0, UINT64_MAX, &c->since))
			return args_error(c, "--since: expected an event "
			    "number (SEQ)");
		c->has_since = true;
		break;
	case OPT_PID:
		if (!args_num(optarg, 1, INT64_MAX, &v))
			return args_error(c, "--pid: expected a process id");
		c->pid = (int64_t)v;
		break;
	case OPT_UID:
		if (!args_num(optarg, 0, UINT32_MAX, &v))
			return args_error(c, "--uid: expected a user id (a "
			    "number)");
		c->uid = (int64_t)v;
		break;
	case OPT_NO_RECONNECT:
		c->no_reconnect = true;
		break;
	case OPT_CLUSTER:
		c->cluster = true;
		break;
	case OPT_LOCAL:
		c->local = true;
		break;
	case OPT_ALL:
		c->all = true;
		break;
	case OPT_CONSISTENT:
		c->consistent = true;
		break;
	case OPT_KILL_AFTER:
		if (!args_num(optarg, 0, INT_MAX, &c->kill_after_ms))
			return args_error(c, "--kill-after: expected "
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
int
args_parse(struct ctl *c, int argc, char **argv)
{
	unsigned cmds = c->cmd != NULL ? c->cmd->bit : C_TOP;
	struct option longopts[NOPTIONS + 1];
	char shortopts[2 * NOPTIONS + 3];
	size_t nl = 0, ns = 0;
	int ch, prev, r;

	memset(longopts, 0, sizeof(longopts));
	/* '+': stop at each operand; ':': report a missing argument. */
	shortopts[ns++] = '+';
	shortopts[ns++] = ':';
	for (size_t i = 0; i < NOPTIONS; i++) {
		if (!(options[i].cmds & cmds))
			continue;
		longopts[nl].name = options[i].name;
		longopts[nl].has_arg = options[i].arg ? required_argument :
		    no_argument;
		longopts[nl++].val = options[i].shortopt ? options[i].shortopt :
		    256 + (int)options[i].id;
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
		size_t i;

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
			return args_error(c, ch == ':' ? "option '%s' "
			    "needs an argument" : "unknown option '%s'", what);
		}
		/* The row of this command's that ch names. */
		for (i = 0; i < NOPTIONS; i++) {
			if ((options[i].cmds & cmds) &&
			    (ch == options[i].shortopt ||
			    ch == 256 + (int)options[i].id))
				break;
		}
		if (i == NOPTIONS)
			continue;	/* cannot happen: getopt knows ours */
		if ((r = args_apply(c, options[i].id)) >= 0)
			return r;
	}
}

/* Look up a command by name; NULL when there is none. */
const struct command *
args_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

/*
 * The edit distance of a and b (insertions, deletions, substitutions and
 * swaps of neighbours: "lsit" is one from "list"), up to 31 bytes each;
 * more than that is far.
 */
static size_t
args_distance(const char *a, const char *b)
{
	size_t d[32][32], n = strlen(a), m = strlen(b);

	if (n >= 32 || m >= 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= n; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= n; i++) {
		for (size_t j = 1; j <= m; j++) {
			size_t v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[n][m];
}

/* An unknown command: exit 2, naming the nearest command when it is
 * near enough to be a typo (one edit in a short name, two in others). */
int
args_unknown(const struct ctl *c, const char *name)
{
	const struct command *best = NULL;
	size_t bestd = SIZE_MAX, limit = strlen(name) <= 3 ? 1 : 2;

	for (size_t i = 0; i < NCOMMANDS; i++) {
		size_t d = args_distance(name, commands[i].name);

		if (d < bestd) {
			bestd = d;
			best = &commands[i];
		}
	}
	if (best != NULL && bestd <= limit)
		return args_error(c, "unknown command '%s'; did you mean "
		    "'%s'?", name, best->name);
	return args_error(c, "unknown command '%s'", name);
}

/* help [COMMAND]: the tool's --help, or COMMAND's. */
int
args_help(struct ctl *c)
{
	const struct command *cmd;

	if (c->nargs == 0)
		args_usage(stdout);
	else if ((cmd = args_find(c->args[0])) != NULL)
		args_command_usage(stdout, cmd);
	else {
		c->cmd = NULL;	/* the hint: procregctl --help */
		return args_unknown(c, c->args[0]);
	}
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/*
 * The hidden commands the completion scripts (conf/completion/) call, so
 * that they complete from these tables and cannot drift from them:
 * "__commands" prints each command's name, "__options [COMMAND]" the
 * options COMMAND (without one, procregctl itself) takes, one per line:
 * the long name, the short one and the argument, "-" for none of these.
 * -1 when argv names no hidden command, else the exit status.
 */
int
args_hidden(int argc, char **argv)
{
	const struct command *cmd = NULL;

	if (argc < 1)
		return -1;
	if (strcmp(argv[0], "__commands") == 0 && argc == 1) {
		for (size_t i = 0; i < NCOMMANDS; i++)
			printf("%s\n", commands[i].name);
		return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
	}
	if (strcmp(argv[0], "__options") != 0 || argc > 2)
		return -1;
	if (argc == 2 && (cmd = args_find(argv[1])) == NULL)
		return EXIT_USAGE;
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct ctl_option *o = &options[i];

		char shortopt[3] = { '-', (char)o->shortopt, '\0' };

		if (o->cmds & (cmd != NULL ? cmd->bit : C_TOP))
			printf("--%s %s %s\n", o->name, o->shortopt ?
			    shortopt : "-", o->arg ? o->arg : "-");
	}
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* Check a NAME operand as the daemon would (length only). */
bool
args_check_name(const struct ctl *c, const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > PR_NAME_MAX) {
		args_error(c, "a name is 1 to %d bytes", PR_NAME_MAX);
		return false;
	}
	return true;
}
