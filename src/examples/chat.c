/*
 * chat.c: chat rooms as named processes, an example of libprocreg.
 *
 * Each room is a process that registers the name "room/NAME"; users find
 * it by that name, never by pid.  A supervisor forks the rooms and starts
 * a room again when it dies; the new room registers the same name, and
 * the users, who hold a monitor on the room's name, get a "down", look the
 * name up again and carry on.  It is the Elixir chat room of a GenServer
 * registered through a via-tuple, restarted by its Supervisor, with
 * procregd as the registry and a connection as each process's lifeline.
 *
 *	chat [-s SOCKET] supervise ROOM...	run and restart the rooms
 *	chat [-s SOCKET] join ROOM USER		chat: lines from stdin
 *	chat [-s SOCKET] say ROOM USER TEXT	send one line and exit
 *
 * The people in a room are the group "room/NAME" (groups are a namespace
 * of their own, so it may be spelt as the room's name): a user joins it,
 * and each line is a publish to it, {"from": USER, "text": TEXT}, with
 * echo false so that it does not come back to its author.  The room
 * process is a member too, which is how it hears every line: it keeps the
 * last 50, and a user who joins reads them with a call, the seeds'
 * get_messages.  The members' lifelines are the group's business: who
 * goes away leaves it.  (Nothing checks that "from" is true: this is a
 * demo, not a chat server.)
 *
 *	$ procregd -s /tmp/chat.sock &
 *	$ export PROCREG_SOCKET=/tmp/chat.sock
 *	$ chat supervise lobby kitchen			# terminal 1
 *	chat: room lobby: registered room/lobby (conn 2, pid 4313)
 *	chat: room kitchen: registered room/kitchen (conn 3, pid 4314)
 *
 *	$ chat join lobby alice				# terminal 2
 *	*** joined room lobby (conn 2)
 *	hi bob
 *
 *	$ chat join lobby bob				# terminal 3
 *	*** joined room lobby (conn 2)
 *	[lobby] alice: hi bob
 *
 *	$ procregctl members room/lobby			# terminal 4
 *	$ procregctl call room/lobby get_messages
 *	$ procregctl whereis room/lobby			# pid 4313
 *	$ kill -9 4313
 *
 * Terminal 1 then shows the supervisor at work, and terminal 3 the client
 * (alice and bob go on talking meanwhile: the group is theirs):
 *
 *	chat: supervisor: room lobby (pid 4313) killed by signal 9,
 *	    restarting in 100 ms
 *	chat: room lobby: registered room/lobby (conn 6, pid 4327)
 *
 *	*** room lobby went down (disconnected), re-resolving…
 *	*** room lobby is back (conn 6)
 */
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "procreg.h"

#define NAME_SIZE		256	/* a procreg name: 255 bytes and NUL */
#define HISTORY_MAX		50	/* lines a room keeps for get_messages */
#define REGISTER_TRIES		40	/* room: 40 x 50 ms for its old self */
#define RESTART_DELAY_MS	100	/* supervisor: pause before a restart */
#define RESTART_MAX		5	/* ... give up on a room after this */
#define RESTART_WINDOW_MS	10000	/* ... many restarts in this time */
#define RESOLVE_MAX_MS		10000	/* client: time to find a room */
#define TEXT_MAX		4096	/* client: longest line sent at once */

/* A line of a room's history. */
struct line {
	char	*from;
	char	*text;
};

/* A room process: its connection and recent lines. */
struct room {
	procreg_t	*p;
	const char	*room;
	char		 name[NAME_SIZE];	/* and its group's */
	struct line	 history[HISTORY_MAX];
	size_t		 hfirst, hlen;
};

/* A user client (chat join): where it stands with its room. */
struct client {
	procreg_t	*p;
	const char	*room, *user;
	char		 roomname[NAME_SIZE], username[NAME_SIZE];
	bool		 in_room;	/* the room is there, and monitored */
	bool		 was_in;	/* found it before: say "back" */
	bool		 eof;		/* stdin is done */
	uint64_t	 ref;		/* our monitor on the room */
	int64_t		 retry_at, give_up_at;	/* while looking for it */
	int		 backoff_ms;
	char		 line[TEXT_MAX];
	size_t		 linelen;
};

/* A supervised room process. */
struct child {
	const char	*room;
	pid_t		 pid;		/* 0: not running */
	int64_t		 restart_at;	/* 0: no restart pending */
	int64_t		 restarts[RESTART_MAX];	/* when, a ring */
	size_t		 nrestarts;
};

/* Log a line to stderr, prefixed with the program's name. */
static void logmsg(const char *, ...) __attribute__((format(printf, 1, 2)));

static void
logmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("chat: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The monotonic clock in milliseconds, for delays and deadlines. */
static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Build the name prefix+s into buf; false when it is too long. */
static bool
make_name(char *buf, const char *prefix, const char *s)
{
	int n = snprintf(buf, NAME_SIZE, "%s%s", prefix, s);

	return *s != '\0' && n > 0 && n < NAME_SIZE;
}

/* Connect to procregd (path NULL: the default socket), or log why not. */
static procreg_t *
chat_connect(const char *path, const char *label)
{
	struct procreg_options opts = { .path = path, .label = label };
	procreg_t *p;
	int r;

	if ((r = procreg_connect(&p, &opts)) != PROCREG_OK) {
		logmsg("%s: %s", label, procreg_errmsg(p));
		procreg_free(p);
		return NULL;
	}
	return p;
}

/* Pack a C string as a msgpack str. */
static void
pack_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Pack a line as the map {"from": FROM, "text": TEXT}. */
static void
pack_line(msgpack_packer *pk, const char *from, const char *text)
{
	msgpack_pack_map(pk, 2);
	pack_cstr(pk, "from");
	pack_cstr(pk, from);
	pack_cstr(pk, "text");
	pack_cstr(pk, text);
}

/* Say a line to everyone in the room's group but ourselves; *delivered
 * (may be NULL) how many got it. */
static int
publish_line(procreg_t *p, const char *group, const char *from,
    const char *text, uint64_t *delivered)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int r;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_line(&pk, from, text);
	r = procreg_publish(p, group, sb.data, sb.size, false, delivered,
	    NULL, NULL);
	msgpack_sbuffer_destroy(&sb);
	return r;
}

/* The str under key in map m as a new C string, or NULL. */
static char *
map_str(const msgpack_object *m, const char *key)
{
	if (m->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;

		if (k->type != MSGPACK_OBJECT_STR ||
		    k->via.str.size != strlen(key) ||
		    memcmp(k->via.str.ptr, key, k->via.str.size) != 0)
			continue;
		if (v->type != MSGPACK_OBJECT_STR)
			return NULL;
		if (v->via.str.size == 0)	/* its ptr may be NULL */
			return strdup("");
		if (memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
			return NULL;
		return strndup(v->via.str.ptr, v->via.str.size);
	}
	return NULL;
}

/* A line map o into l (both strings new); false unless it is one. */
static bool
line_from(const msgpack_object *o, struct line *l)
{
	l->from = map_str(o, "from");
	l->text = map_str(o, "text");
	if (l->from != NULL && l->text != NULL)
		return true;
	free(l->from);
	free(l->text);
	return false;
}

/* ---- the room ---- */

/* A line was said in the room: keep it, forgetting the oldest if full. */
static void
room_keep(struct room *r, const struct procreg_event *ev)
{
	msgpack_unpacked u;
	struct line l;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, ev->payload, ev->payload_len, NULL) !=
	    MSGPACK_UNPACK_SUCCESS || !line_from(&u.data, &l)) {
		logmsg("room %s: ignored a publish from conn %" PRIu64,
		    r->room, ev->sender);
		msgpack_unpacked_destroy(&u);
		return;
	}
	msgpack_unpacked_destroy(&u);
	if (r->hlen == HISTORY_MAX) {
		free(r->history[r->hfirst].from);
		free(r->history[r->hfirst].text);
		r->hfirst = (r->hfirst + 1) % HISTORY_MAX;
		r->hlen--;
	}
	r->history[(r->hfirst + r->hlen++) % HISTORY_MAX] = l;
}

/* A call to the room: "get_messages" is answered with the history, an
 * array of line maps, oldest first. */
static int
room_call(struct room *r, const struct procreg_event *ev)
{
	static const unsigned char get[] = { 0xac, 'g', 'e', 't', '_', 'm',
	    'e', 's', 's', 'a', 'g', 'e', 's' };
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc;

	if (ev->payload_len != sizeof(get) ||
	    memcmp(ev->payload, get, sizeof(get)) != 0)
		rc = procreg_reply_error(r->p, ev->call_id, "unknown_call",
		    "this room answers get_messages only");
	else {
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, r->hlen);
		for (size_t i = 0; i < r->hlen; i++) {
			const struct line *l = &r->history[(r->hfirst + i) %
			    HISTORY_MAX];

			pack_line(&pk, l->from, l->text);
		}
		rc = procreg_reply(r->p, ev->call_id, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	}
	/* not_found: the caller gave up, or went away; not our failure. */
	return rc == PROCREG_E_NOT_FOUND ? PROCREG_OK : rc;
}

/* Join the group "room/NAME" and register the name "room/NAME", waiting a
 * little for a dead predecessor's name. */
static int
room_register(struct room *r)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct procreg_entry *e = NULL;
	struct timespec now;
	int rc;

	/* The value, for whoever looks: {"room": NAME, "started": ms}. */
	clock_gettime(CLOCK_REALTIME, &now);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	pack_cstr(&pk, "room");
	pack_cstr(&pk, r->room);
	pack_cstr(&pk, "started");
	msgpack_pack_int64(&pk, (int64_t)now.tv_sec * 1000 +
	    now.tv_nsec / 1000000);
	/*
	 * A member of its own group first: every line said there reaches it,
	 * from before anyone can find the room by its name.
	 */
	if ((rc = procreg_join(r->p, r->name, NULL, 0, NULL)) != PROCREG_OK) {
		logmsg("room %s: cannot join %s: %s", r->room, r->name,
		    procreg_errmsg(r->p));
		msgpack_sbuffer_destroy(&sb);
		return rc;
	}
	rc = PROCREG_E_TAKEN;
	/*
	 * The old room's name goes when procregd sees its connection close,
	 * which may not have happened yet; after that, "taken" means another
	 * room by this name runs, and we give up.
	 */
	for (int i = 0; i < REGISTER_TRIES && rc == PROCREG_E_TAKEN; i++) {
		if (i > 0)
			usleep(50 * 1000);
		rc = procreg_register(r->p, r->name, sb.data, sb.size, &e);
	}
	msgpack_sbuffer_destroy(&sb);
	if (rc != PROCREG_OK) {
		logmsg("room %s: cannot register %s: %s", r->room, r->name,
		    procreg_errmsg(r->p));
		return rc;
	}
	logmsg("room %s: registered %s (conn %" PRIu64 ", pid %" PRId64 ")",
	    r->room, r->name, e->conn, e->pid);
	procreg_entry_free(e);
	return PROCREG_OK;
}

/* Run one room until its connection fails; returns the exit status. */
static int
room_main(const char *path, const char *room)
{
	struct room r;
	struct procreg_event *ev;
	int rc;

	memset(&r, 0, sizeof(r));
	r.room = room;
	if (!make_name(r.name, "room/", room) ||
	    (r.p = chat_connect(path, r.name)) == NULL)
		return 1;
	if (room_register(&r) != PROCREG_OK)
		goto out;
	/* The room's whole life: one event at a time, for ever. */
	while ((rc = procreg_next_event(r.p, -1, &ev)) == PROCREG_OK) {
		if (ev->kind == PROCREG_EV_PUBLISH)
			room_keep(&r, ev);
		else if (ev->kind == PROCREG_EV_CALL)
			rc = room_call(&r, ev);
		else if (ev->kind == PROCREG_EV_ERROR)
			logmsg("room %s: daemon error %s: %s", room,
			    ev->reason, ev->message);
		procreg_event_free(ev);
		if (rc != PROCREG_OK)
			break;
	}
	logmsg("room %s: %s", room, procreg_errmsg(r.p));
out:
	procreg_free(r.p);
	for (size_t i = 0; i < r.hlen; i++) {
		free(r.history[(r.hfirst + i) % HISTORY_MAX].from);
		free(r.history[(r.hfirst + i) % HISTORY_MAX].text);
	}
	return 1;
}

/* ---- the supervisor ---- */

/* Fork a room process; its signal mask goes back to mask. */
static void
sup_start(struct child *c, const char *path, const sigset_t *mask)
{
	pid_t parent = getpid();

	fflush(NULL);	/* or the child would write our buffers again */
	if ((c->pid = fork()) < 0) {
		logmsg("supervisor: fork: %s", strerror(errno));
		c->pid = 0;
		c->restart_at = mono_ms() + RESTART_DELAY_MS;
		return;
	}
	if (c->pid > 0) {
		c->restart_at = 0;
		return;
	}
	/*
	 * The child: no exec, it runs the room here.  It connects only now:
	 * a connection inherited over fork would be a lifeline shared with
	 * the parent.  It dies with the supervisor (Linux's PDEATHSIG).
	 */
	sigprocmask(SIG_SETMASK, mask, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);
	exit(room_main(path, c->room));
}

/* A room died: restart it after a pause, unless it dies too often. */
static void
sup_died(struct child *c, int status)
{
	int64_t now = mono_ms();
	char how[64];

	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "killed by signal %d",
		    WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exited with status %d",
		    WEXITSTATUS(status));
	/* Erlang's restart intensity: RESTART_MAX in RESTART_WINDOW_MS. */
	if (c->nrestarts >= RESTART_MAX && now -
	    c->restarts[c->nrestarts % RESTART_MAX] < RESTART_WINDOW_MS) {
		logmsg("supervisor: room %s (pid %d) %s, %d restarts in %d s:"
		    " giving up on it", c->room, (int)c->pid, how,
		    RESTART_MAX, RESTART_WINDOW_MS / 1000);
		c->pid = 0;
		return;
	}
	logmsg("supervisor: room %s (pid %d) %s, restarting in %d ms",
	    c->room, (int)c->pid, how, RESTART_DELAY_MS);
	c->restarts[c->nrestarts++ % RESTART_MAX] = now;
	c->pid = 0;
	c->restart_at = now + RESTART_DELAY_MS;
}

/* Supervise one process per room until SIGINT or SIGTERM. */
static int
cmd_supervise(const char *path, char **rooms, int n)
{
	struct child *kids;
	sigset_t set, old;
	struct timespec ts;
	int64_t next, now;
	int i, sig, status, alive;
	pid_t pid;

	if ((kids = calloc((size_t)n, sizeof(*kids))) == NULL)
		return 1;
	/*
	 * The signals are blocked and taken with sigtimedwait, one at a time
	 * in this loop: no handlers, no flags, and the wait's timeout is the
	 * next restart that is due.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	for (i = 0; i < n; i++) {
		kids[i].room = rooms[i];
		sup_start(&kids[i], path, &old);
	}
	for (;;) {
		now = mono_ms();
		next = INT64_MAX;
		for (i = 0, alive = 0; i < n; i++) {
			if (kids[i].restart_at != 0 &&
			    kids[i].restart_at <= now)
				sup_start(&kids[i], path, &old);
			if (kids[i].restart_at != 0 &&
			    kids[i].restart_at < next)
				next = kids[i].restart_at;
			alive += kids[i].pid != 0 || kids[i].restart_at != 0;
		}
		if (alive == 0) {
			logmsg("supervisor: no room left");
			break;
		}
		if (next != INT64_MAX) {
			next -= mono_ms();
			next = next < 0 ? 0 : next;
			ts.tv_sec = next / 1000;
			ts.tv_nsec = (long)(next % 1000) * 1000000;
		}
		sig = sigtimedwait(&set, NULL, next == INT64_MAX ? NULL : &ts);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		/* SIGCHLD: reap every child that is done. */
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			for (i = 0; i < n; i++)
				if (kids[i].pid == pid)
					sup_died(&kids[i], status);
	}
	/* Stop: the rooms go, and their names with their connections. */
	for (i = 0; i < n; i++)
		if (kids[i].pid != 0)
			kill(kids[i].pid, SIGTERM);
	for (i = 0; i < n; i++)
		if (kids[i].pid != 0)
			waitpid(kids[i].pid, NULL, 0);
	sigprocmask(SIG_SETMASK, &old, NULL);
	free(kids);
	return alive == 0 ? 1 : 0;
}

/* ---- the user client ---- */

/* Print a line said in the room. */
static void
print_line(const struct client *c, const msgpack_object *o)
{
	struct line l;

	if (line_from(o, &l)) {
		printf("[%s] %s: %s\n", c->room, l.from, l.text);
		free(l.from);
		free(l.text);
	}
}

/* The room is gone (or not found yet): look for it from now on. */
static void
client_lost(struct client *c)
{
	c->in_room = false;
	c->backoff_ms = 50;
	c->retry_at = mono_ms();
	c->give_up_at = c->retry_at + RESOLVE_MAX_MS;
}

/* Print what was said before we came: the room's get_messages. */
static int
client_history(struct client *c)
{
	unsigned char get[16];
	msgpack_unpacked u;
	void *res;
	size_t len;
	int rc;

	rc = procreg_call(c->p, c->roomname, get, procreg_pack_str(get,
	    sizeof(get), "get_messages"), 0, &res, &len);
	/* The room may die meanwhile: its down is on the way. */
	if (rc == PROCREG_E_DOWN || rc == PROCREG_E_NOT_FOUND ||
	    rc == PROCREG_E_CALL_TIMEOUT)
		return PROCREG_OK;
	if (rc != PROCREG_OK)
		return rc;
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, res, len, NULL) ==
	    MSGPACK_UNPACK_SUCCESS && u.data.type == MSGPACK_OBJECT_ARRAY)
		for (uint32_t i = 0; i < u.data.via.array.size; i++)
			print_line(c, &u.data.via.array.ptr[i]);
	msgpack_unpacked_destroy(&u);
	free(res);
	return PROCREG_OK;
}

/* Look the room up; once it is there, monitor it (and the first time,
 * read its history). */
static int
client_resolve(struct client *c)
{
	struct procreg_entry *e;
	int rc;

	if ((rc = procreg_whereis(c->p, c->roomname, &e)) != PROCREG_OK)
		return rc;
	if (e == NULL) {
		if (mono_ms() >= c->give_up_at) {
			printf("*** no room %s, giving up\n", c->room);
			return PROCREG_E_NOT_FOUND;
		}
		c->retry_at = mono_ms() + c->backoff_ms;
		c->backoff_ms = c->backoff_ms < 500 ? 2 * c->backoff_ms : 1000;
		return PROCREG_OK;
	}
	/* Should the room die right now, the monitor fires anyway ("noproc"
	 * if it was already gone): we look again. */
	if ((rc = procreg_monitor(c->p, c->roomname, &c->ref)) == PROCREG_OK) {
		c->in_room = true;
		if (c->was_in)
			printf("*** room %s is back (conn %" PRIu64 ")\n",
			    c->room, e->conn);
		else
			printf("*** joined room %s (conn %" PRIu64 ")\n",
			    c->room, e->conn);
		if (!c->was_in)
			rc = client_history(c);
		c->was_in = true;
	}
	procreg_entry_free(e);
	return rc;
}

/* Handle a notification: a line said in the room, or the room's down. */
static void
client_event(struct client *c, const struct procreg_event *ev)
{
	msgpack_unpacked u;

	if (ev->kind == PROCREG_EV_PUBLISH) {
		msgpack_unpacked_init(&u);
		if (msgpack_unpack_next(&u, ev->payload, ev->payload_len,
		    NULL) == MSGPACK_UNPACK_SUCCESS)
			print_line(c, &u.data);
		msgpack_unpacked_destroy(&u);
	} else if (ev->kind == PROCREG_EV_DOWN && c->in_room &&
	    ev->ref == c->ref) {
		printf("*** room %s went down (%s), re-resolving…\n", c->room,
		    ev->reason);
		client_lost(c);
	} else if (ev->kind == PROCREG_EV_ERROR)
		logmsg("daemon error %s: %s", ev->reason, ev->message);
}

/* Read what stdin has into the line buffer; EOF sets c->eof. */
static void
client_read(struct client *c)
{
	ssize_t n;

	n = read(STDIN_FILENO, c->line + c->linelen,
	    sizeof(c->line) - 1 - c->linelen);
	if (n < 0 && errno != EINTR && errno != EAGAIN) {
		logmsg("stdin: %s", strerror(errno));
		c->eof = true;
	} else if (n == 0)
		c->eof = true;
	else if (n > 0)
		c->linelen += (size_t)n;
}

/* Say the complete lines read (at EOF also the rest) in the room. */
static int
client_flush(struct client *c)
{
	char *nl;
	size_t len;
	int rc = PROCREG_OK;

	while (rc == PROCREG_OK &&
	    (nl = memchr(c->line, '\n', c->linelen)) != NULL) {
		*nl = '\0';
		if (c->line[0] != '\0')
			rc = publish_line(c->p, c->roomname, c->user, c->line,
			    NULL);
		len = (size_t)(nl + 1 - c->line);
		memmove(c->line, nl + 1, c->linelen - len);
		c->linelen -= len;
	}
	/* A last line without \n, or one too long: say what there is. */
	if (rc == PROCREG_OK && c->linelen > 0 &&
	    (c->eof || c->linelen == sizeof(c->line) - 1)) {
		c->line[c->linelen] = '\0';
		c->linelen = 0;
		rc = publish_line(c->p, c->roomname, c->user, c->line, NULL);
	}
	return rc;
}

/* Join a room as user: stdin to the room, the room to stdout. */
static int
cmd_join(const char *path, const char *room, const char *user)
{
	unsigned char value[NAME_SIZE + 8];
	struct client c;
	struct procreg_event *ev;
	struct pollfd pfd[2];
	int64_t timeout;
	int rc;

	memset(&c, 0, sizeof(c));
	c.room = room;
	c.user = user;
	if (!make_name(c.roomname, "room/", room) ||
	    !make_name(c.username, "user/", user)) {
		logmsg("room or user name too long or empty");
		return 2;
	}
	if ((c.p = chat_connect(path, c.username)) == NULL)
		return 1;
	/*
	 * Our own name, so that one user is in at most once, and the room's
	 * group, our value the user's name (procregctl members shows it).
	 */
	if (procreg_register(c.p, c.username, NULL, 0, NULL) != PROCREG_OK ||
	    procreg_join(c.p, c.roomname, value, procreg_pack_str(value,
	    sizeof(value), user), NULL) != PROCREG_OK) {
		logmsg("%s: %s", c.username, procreg_errmsg(c.p));
		procreg_free(c.p);
		return 1;
	}
	client_lost(&c);
	for (;;) {
		if ((rc = client_flush(&c)) != PROCREG_OK)
			goto out;
		if (c.eof && c.linelen == 0)
			break;	/* our membership goes with the connection */
		if (!c.in_room && mono_ms() >= c.retry_at &&
		    (rc = client_resolve(&c)) != PROCREG_OK)
			goto out;
		/*
		 * Then every notification already here, after the calls
		 * above: a call may have read one along with its reply, and it
		 * waits in the library's buffer, where poll() cannot see it.
		 * procreg_next_event(0) hands it out without blocking.
		 */
		while ((rc = procreg_next_event(c.p, 0, &ev)) == PROCREG_OK) {
			client_event(&c, ev);
			procreg_event_free(ev);
		}
		if (rc != PROCREG_E_TIMEOUT)
			goto out;
		timeout = -1;
		if (!c.in_room)
			timeout = c.retry_at > mono_ms() ?
			    c.retry_at - mono_ms() : 0;
		pfd[0].fd = procreg_fd(c.p);
		pfd[0].events = POLLIN;
		pfd[1].fd = STDIN_FILENO;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		/* stdin only while the line buffer has room. */
		if (poll(pfd, !c.eof && c.linelen < sizeof(c.line) - 1 ? 2 : 1,
		    (int)timeout) < 0 && errno != EINTR) {
			rc = PROCREG_E_CLOSED;
			goto out;
		}
		if (pfd[1].revents != 0)
			client_read(&c);
	}
	rc = PROCREG_OK;
out:
	if (rc != PROCREG_OK && rc != PROCREG_E_NOT_FOUND)
		logmsg("%s", procreg_errmsg(c.p));
	procreg_free(c.p);
	return rc == PROCREG_OK ? 0 : 1;
}

/* Say one line in a room, without staying: exit 1 if nobody heard it. */
static int
cmd_say(const char *path, const char *room, const char *user,
    const char *text)
{
	char name[NAME_SIZE];
	uint64_t delivered = 0;
	procreg_t *p;
	int rc;

	if (!make_name(name, "room/", room))
		return 2;
	if ((p = chat_connect(path, "chat say")) == NULL)
		return 1;
	if ((rc = publish_line(p, name, user, text, &delivered)) !=
	    PROCREG_OK)
		logmsg("%s: %s", name, procreg_errmsg(p));
	else if (delivered == 0)
		logmsg("%s: nobody is there", name);
	procreg_free(p);
	return rc == PROCREG_OK && delivered > 0 ? 0 : 1;
}

/* Print the usage. */
static void
usage(void)
{
	fprintf(stderr, "usage: chat [-s socket] supervise room ...\n"
	    "       chat [-s socket] join room user\n"
	    "       chat [-s socket] say room user text\n");
}

int
main(int argc, char *argv[])
{
	const char *path = NULL;
	int ch;

	/* "+": options only before the command, so TEXT may start with -. */
	while ((ch = getopt(argc, argv, "+s:")) != -1) {
		if (ch != 's') {
			usage();
			return 2;
		}
		path = optarg;
	}
	argc -= optind;
	argv += optind;
	/* Line-buffered, so that a pipe sees each line as it is printed. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[0], "supervise") == 0)
		return cmd_supervise(path, argv + 1, argc - 1);
	if (argc == 3 && strcmp(argv[0], "join") == 0)
		return cmd_join(path, argv[1], argv[2]);
	if (argc == 4 && strcmp(argv[0], "say") == 0)
		return cmd_say(path, argv[1], argv[2], argv[3]);
	usage();
	return 2;
}
