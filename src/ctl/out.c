/*
 * out.c: what procregctl prints: entries and members as aligned lines,
 * tables or JSON documents, payloads, times and ages, and a failed call's
 * report with its exit status.
 */
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "ctl.h"
#include "now.h"

/* The exit status of a failed call's status. */
int
out_status_exit(int status)
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
	case PROCREG_E_UNAVAILABLE:	/* the daemon is there, the cluster
					   is not: not a "no" about a name */
	default:
		return EXIT_ERROR;
	}
}

/* The error code a status is reported under with --json: the protocol's,
 * or a word of ours for the library's own failures. */
const char *
out_code(int status)
{
	const char *code = procreg_status_code(status);

	if (code != NULL)
		return code;
	switch (status) {
	case PROCREG_E_CONNECT:
		return "connect";
	case PROCREG_E_CLOSED:
		return "closed";
	case PROCREG_E_TIMEOUT:
		return "timeout";
	case PROCREG_E_PROTOCOL:
		return "protocol";
	case PROCREG_E_NOMEM:
		return "nomem";
	default:
		return "error";
	}
}

/* out_error with a va_list. */
static int
out_verror(const struct ctl *c, int ex, const char *code, const char *hint,
    const char *fmt, va_list ap)
{
	char msg[1024];
	json_t *j;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (c == NULL || !c->json) {
		fprintf(stderr, "procregctl: %s\n", msg);
		if (hint != NULL)
			fprintf(stderr, "%s\n", hint);
		return ex;
	}
	/* Names and messages may hold bytes that are not UTF-8. */
	value_scrub(msg, strlen(msg));
	j = json_pack("{s:s, s:s, s:s*}", "error", code, "message", msg,
	    "hint", hint);
	if (j == NULL || json_dumpf(j, stderr, JSON_COMPACT |
	    JSON_PRESERVE_ORDER) < 0)
		fprintf(stderr, "procregctl: %s", msg);
	fputc('\n', stderr);
	json_decref(j);
	return ex;
}

/*
 * Report an error on stderr and return ex: "procregctl: MESSAGE" (and the
 * hint, may be NULL, on a line of its own), or with --json one object,
 * {"error": code, "message": MESSAGE[, "hint": HINT]}, on one line.
 */
int
out_error(const struct ctl *c, int ex, const char *code, const char *hint,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ex = out_verror(c, ex, code, hint, fmt, ap);
	va_end(ap);
	return ex;
}

/* out_error for args.c's usage errors (code "usage", exit 2). */
int
out_usage(const struct ctl *c, const char *hint, const char *fmt, va_list ap)
{
	return out_verror(c, EXIT_USAGE, "usage", hint, fmt, ap);
}

/*
 * Report a failed call ("[WHAT: ]STATUS: MESSAGE") and return its exit
 * status.  A connection the daemon closed may have been explained by an
 * error notification (too_large, limit, ...): that is reported instead,
 * as exit 4.  A daemon that cannot be reached at all is explained by
 * out_unreachable.
 */
int
out_report(struct ctl *c, int status, const char *what)
{
	struct procreg_event *ev = NULL;
	char msg[256];
	int ex;

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
		ex = out_error(c, EXIT_ERROR, ev->reason, NULL, "%s%sthe daemon "
		    "closed the connection: %s: %s", what ? what : "",
		    what ? ": " : "", ev->reason, ev->message);
		procreg_event_free(ev);
		return ex;
	}
	procreg_event_free(ev);
	if (status == PROCREG_E_CONNECT)
		return out_unreachable(c, msg);
	return out_error(c, out_status_exit(status), out_code(status),
	    status == PROCREG_E_UNAVAILABLE ? "The daemon runs without --etcd "
	    "(no cluster mode), or its node cannot reach etcd or has no "
	    "lease: procregctl stats shows its cluster state." : NULL,
	    "%s%s%s: %s", what ? what : "", what ? ": " : "",
	    procreg_strstatus(status), msg);
}

/*
 * The socket's path into buf, as the library resolves it; returns where
 * it came from, in words.
 */
const char *
out_socket_path(const struct ctl *c, char *buf, size_t size)
{
	const char *env = getenv("PROCREG_SOCKET");

	if (c->socket != NULL) {
		snprintf(buf, size, "%s", c->socket);
		return "given with -s";
	}
	if (env != NULL && env[0] != '\0') {
		snprintf(buf, size, "%s", env);
		return "from $PROCREG_SOCKET";
	}
	if (procreg_default_path(buf, size) < 0)
		buf[0] = '\0';
	return "the default; neither -s nor $PROCREG_SOCKET is set";
}

/*
 * The daemon cannot be reached (msg: the library's why): say what is at
 * the socket's path and how to point at another daemon.
 */
int
out_unreachable(struct ctl *c, const char *msg)
{
	char path[512], hint[1024];
	const char *where = out_socket_path(c, path, sizeof(path));
	struct stat st;

	if (stat(path, &st) < 0 && errno == ENOENT)
		snprintf(hint, sizeof(hint), "No daemon is listening there: "
		    "%s (%s) does not exist.  Start procregd, or point at a "
		    "running daemon's socket with -s PATH or "
		    "PROCREG_SOCKET=PATH.", path, where);
	else if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		snprintf(hint, sizeof(hint), "%s (%s) is no socket.  Point at "
		    "the daemon's socket with -s PATH or PROCREG_SOCKET=PATH.",
		    path, where);
	else if (strstr(msg, strerror(ECONNREFUSED)) != NULL)
		snprintf(hint, sizeof(hint), "No daemon is listening on %s "
		    "(%s): the socket is left from one that is gone.  Start "
		    "procregd, or point at a running daemon's socket with -s "
		    "PATH or PROCREG_SOCKET=PATH.", path, where);
	else if (strstr(msg, strerror(EACCES)) != NULL)
		snprintf(hint, sizeof(hint), "The socket %s (%s) is not open "
		    "to you: the daemon's socket_mode and your groups decide "
		    "(see procreg.conf(5)).", path, where);
	else
		snprintf(hint, sizeof(hint), "The socket is %s (%s); -s PATH "
		    "or PROCREG_SOCKET=PATH point at another.", path, where);
	return out_error(c, EXIT_UNREACHABLE, "connect", hint, "%s: %s",
	    procreg_strstatus(PROCREG_E_CONNECT), msg);
}

/* Print one JSON document (dump flags added) and a newline, and free it;
 * false on failure. */
bool
out_json(json_t *j, size_t flags)
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

/*
 * An entry as a JSON object (value embedded as JSON, since in ms); a
 * cluster name's with "scope": "cluster", "node" and, answered from the
 * daemon's cache, "stale": true, as the protocol has them (a local
 * entry has none of these keys).
 */
json_t *
out_entry_json(const struct procreg_entry *e)
{
	json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o?, s:I, s:I}",
	    "name", e->name, "conn", (json_int_t)e->conn,
	    "pid", (json_int_t)e->pid, "uid", (json_int_t)e->uid,
	    "gid", (json_int_t)e->gid,
	    "value", value_json(e->value, e->value_len),
	    "since", (json_int_t)e->since_ms, "gen", (json_int_t)e->gen);

	if (j == NULL || e->scope != PROCREG_SCOPE_CLUSTER)
		return j;
	if (json_object_set_new(j, "scope", json_string("cluster")) < 0 ||
	    json_object_set_new(j, "node", e->node != NULL ?
	    json_stringn(e->node, strlen(e->node)) : json_null()) < 0 ||
	    (e->stale && json_object_set_new(j, "stale", json_true()) < 0)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* A member entry as a JSON object, the same way. */
json_t *
out_member_json(const struct procreg_member *m)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:o?, s:I, s:I}",
	    "group", m->group, "conn", (json_int_t)m->conn,
	    "pid", (json_int_t)m->pid, "uid", (json_int_t)m->uid,
	    "gid", (json_int_t)m->gid,
	    "value", value_json(m->value, m->value_len),
	    "since", (json_int_t)m->since_ms, "gen", (json_int_t)m->gen);
}

/* A name made safe for a terminal: control bytes as \xNN. */
char *
out_safe_text(const char *s)
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

/* Columns a UTF-8 string takes (one per code point): a table not for a
 * terminal is laid out by these, as it always was. */
static size_t
out_text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

/*
 * The length in bytes and the columns on a terminal (wcwidth, in the
 * locale's LC_CTYPE) of the character at s; one column for what the
 * locale cannot decode or print.
 */
static size_t
out_char(const char *s, size_t *cols)
{
	mbstate_t st;
	wchar_t wc;
	size_t k;
	int w;

	memset(&st, 0, sizeof(st));
	k = mbrtowc(&wc, s, MB_CUR_MAX, &st);
	if (k == 0 || k == (size_t)-1 || k == (size_t)-2) {
		/* Undecodable: a byte and its continuation bytes. */
		k = 1;
		while ((s[k] & 0xc0) == 0x80)
			k++;
		*cols = 1;
		return k;
	}
	w = wcwidth(wc);
	*cols = w < 0 ? 1 : (size_t)w;
	return k;
}

/* Columns a string takes on a terminal. */
static size_t
out_display_width(const char *s)
{
	size_t w = 0, cols;

	while (*s) {
		s += out_char(s, &cols);
		w += cols;
	}
	return w;
}

/*
 * The columns of the terminal on standard output; 0 when standard output
 * is no terminal, so that scripts get the same output wherever they run.
 */
size_t
out_tty_width(void)
{
	struct winsize ws;
	const char *env;
	uint64_t cols;

	if (!isatty(STDOUT_FILENO))
		return 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	if ((env = getenv("COLUMNS")) != NULL && args_num(env, 1, 10000,
	    &cols))
		return (size_t)cols;
	return 80;
}

/*
 * Print line, cut to width columns when it is wider: the last column
 * then shows that it was cut (an ellipsis where the locale can show one).
 */
static void
out_cut_line(const char *line, size_t width)
{
	const char *mark = MB_CUR_MAX > 1 ? "\xe2\x80\xa6" : "~";
	size_t used = 0, cols, k;
	const char *p = line;

	if (out_display_width(line) <= width) {
		fputs(line, stdout);
		return;
	}
	while (*p) {
		k = out_char(p, &cols);
		if (used + cols > width - 1)
			break;
		fwrite(p, 1, k, stdout);
		used += cols;
		p += k;
	}
	fputs(mark, stdout);
}

/* A duration in its largest whole unit: 5s, 3m, 2h, 4d. */
void
out_fmt_age(char *buf, size_t size, uint64_t ms)
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
void
out_fmt_since_age(char *buf, size_t size, uint64_t since_ms)
{
	uint64_t now = now_epoch_ms();

	out_fmt_age(buf, size, now > since_ms ? now - since_ms : 0);
}

/* An epoch time in ms as ISO 8601 UTC with milliseconds. */
static void
out_fmt_time(char *buf, size_t size, uint64_t ms)
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

/*
 * A cluster name's lines after the others (nothing for a local entry):
 * scope, node, and stale when the daemon answered from its cache.
 */
static bool
out_entry_cluster(const struct procreg_entry *e)
{
	char *node;
	bool ok;

	if (e->scope != PROCREG_SCOPE_CLUSTER)
		return true;
	if ((node = out_safe_text(e->node != NULL ? e->node : "?")) == NULL) {
		fprintf(stderr, "procregctl: out of memory\n");
		return false;
	}
	ok = printf("scope: cluster\nnode:  %s\n", node) > 0 &&
	    (!e->stale || printf("stale: yes (the daemon's cache; "
	    "--consistent asks etcd)\n") > 0);
	free(node);
	return ok;
}

/* Print an entry as aligned "key: value" lines. */
bool
out_entry(const struct procreg_entry *e)
{
	char *name = out_safe_text(e->name), *value = value_text(e->value,
	    e->value_len);
	char when[64], age[32];
	bool ok = name != NULL && value != NULL;

	if (ok) {
		out_fmt_time(when, sizeof(when), e->since_ms);
		out_fmt_since_age(age, sizeof(age), e->since_ms);
		printf("name:  %s\nconn:  %" PRIu64 "\npid:   %" PRId64 "\n"
		    "uid:   %" PRId64 "\ngid:   %" PRId64 "\nvalue: %s\n"
		    "since: %s (%s ago)\ngen:   %" PRIu64 "\n", name, e->conn,
		    e->pid, e->uid, e->gid, value, when, age, e->gen);
		ok = out_entry_cluster(e);
	} else
		fprintf(stderr, "procregctl: out of memory\n");
	free(name);
	free(value);
	return ok;
}

/*
 * Print rows of ncols columns as a table with columns as wide as their
 * content.  For a terminal of tty columns (0: not a terminal) widths are
 * display widths and each line is cut to the terminal's width.
 */
void
out_table(struct out_row *rows, size_t n, size_t ncols, size_t tty)
{
	size_t (*wid)(const char *) = tty ? out_display_width :
	    out_text_width;
	size_t width[OUT_NCOLS] = { 0 }, len;
	char *line = NULL;
	FILE *f;

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < ncols; k++)
			if (wid(rows[i].col[k]) > width[k])
				width[k] = wid(rows[i].col[k]);
	for (size_t i = 0; i < n; i++) {
		/* A terminal's line is built first, then cut. */
		if (tty == 0 || (f = open_memstream(&line, &len)) == NULL)
			f = stdout;
		for (size_t k = 0; k < ncols; k++) {
			fputs(rows[i].col[k], f);
			if (k == ncols - 1)
				break;
			for (size_t w = wid(rows[i].col[k]); w < width[k] + 2;
			    w++)
				putc(' ', f);
		}
		if (f != stdout) {
			fclose(f);
			out_cut_line(line, tty);
			free(line);
			line = NULL;
		}
		putchar('\n');
	}
}

/*
 * Print msgpack bytes as one line, for recv and join: a str with a
 * backslash, a newline, a carriage return and the other control
 * characters but tab escaped (\\, \n, \r, \xNN), so that one message is
 * one line whatever it holds; anything else as JSON, one line too.
 * false when the output cannot be written.
 */
bool
out_payload_line(const void *mp, size_t len)
{
	msgpack_unpacked u;
	char *text;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, mp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_STR) {
		const char *p = u.data.via.str.ptr;

		for (uint32_t i = 0; i < u.data.via.str.size; i++) {
			unsigned char ch = (unsigned char)p[i];

			if (ch == '\\')
				fputs("\\\\", stdout);
			else if (ch == '\n')
				fputs("\\n", stdout);
			else if (ch == '\r')
				fputs("\\r", stdout);
			else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				printf("\\x%02x", ch);
			else
				putchar(ch);
		}
	} else if ((text = value_text(mp, len)) != NULL) {
		fputs(text, stdout);
		free(text);
	}
	msgpack_unpacked_destroy(&u);
	return putchar('\n') != EOF && fflush(stdout) != EOF;
}

/* Print msgpack bytes: a str as it is (a newline after it unless it ends
 * with one, or always when always_nl), anything else as JSON and a
 * newline.  false when the output cannot be written. */
bool
out_payload(const void *mp, size_t len, bool always_nl)
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
	} else if ((text = value_text(mp, len)) != NULL) {
		fputs(text, stdout);
		free(text);
	}
	msgpack_unpacked_destroy(&u);
	return (!nl || putchar('\n') != EOF) && fflush(stdout) != EOF;
}
