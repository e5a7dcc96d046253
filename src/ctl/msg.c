/*
 * msg.c: the commands about messages and calls: send, call, recv.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "procreg-protocol.h"

/*
 * The target operand: a name, or with --conn a connection id into *conn.
 * false after a usage error was printed.
 */
bool
msg_target(const struct ctl *c, const char *op, uint64_t *conn)
{
	if (!c->conn)
		return args_check_name(c, op);
	if (!args_num(op, 1, UINT64_MAX, conn)) {
		args_error(c, "--conn: '%s' is no connection id (its "
		    "digits)", op);
		return false;
	}
	return true;
}

/* Say that the target op is not there (exit 1). */
static int
msg_not_there(const struct ctl *c, const char *op)
{
	if (c->conn)
		return out_error(c, EXIT_NO, "not_found", NULL, "conn %s: no "
		    "such connection", op);
	return out_error(c, EXIT_NO, "not_found", NULL, "%s: not registered",
	    op);
}

/* send NAME PAYLOAD: a str, or JSON as msgpack. */
int
msg_send(struct ctl *c)
{
	const char *name = c->args[0];
	msgpack_sbuffer sb;
	uint64_t conn = 0;
	int r;

	if (c->has_gen && c->conn)
		return args_error(c, "--gen is for names, not --conn");
	if (!msg_target(c, name, &conn))
		return EXIT_USAGE;
	msgpack_sbuffer_init(&sb);
	if (!value_payload(c, c->args[1], &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	r = c->conn ? procreg_send_conn(c->p, conn, sb.data, sb.size) :
	    c->has_gen ? procreg_send_gen(c->p, name, sb.data, sb.size,
	    c->gen) : procreg_send(c->p, name, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	if (r == PROCREG_E_NOT_FOUND)
		return msg_not_there(c, name);
	if (r == PROCREG_E_STALE) {
		return out_error(c, EXIT_NO, "stale", NULL, "%s: stale: its "
		    "registration has another generation than %" PRIu64,
		    name, c->gen);
	}
	if (r == PROCREG_E_BUSY) {
		return out_error(c, EXIT_NO, "busy", NULL, "%s: busy (its "
		    "holder is not reading its messages); try again later",
		    name);
	}
	return r == PROCREG_OK ? EXIT_SUCCESS : out_report(c, r, name);
}

/* A callee's own error, "code: message" in errmsg: reported under its
 * code (exit 1). */
static int
msg_callee_error(const struct ctl *c, const char *name)
{
	const char *msg = procreg_errmsg(c->p), *colon = strstr(msg, ": ");
	char code[64];

	snprintf(code, sizeof(code), "%.*s", colon != NULL ?
	    (int)(colon - msg) : 5, colon != NULL ? msg : "error");
	return out_error(c, EXIT_NO, code, NULL, "%s: %s", name, msg);
}

/* call NAME PAYLOAD: print the reply. */
int
msg_call(struct ctl *c)
{
	const char *name = c->args[0];
	msgpack_sbuffer sb;
	uint64_t conn = 0;
	void *res = NULL;
	size_t len = 0;
	bool ok;
	int r;

	if (!msg_target(c, name, &conn))
		return EXIT_USAGE;
	if ((unsigned)c->timeout_ms > PR_CALL_TIMEOUT_MAX)
		return args_error(c, "--timeout: a call waits at most "
		    "%u ms", PR_CALL_TIMEOUT_MAX);
	msgpack_sbuffer_init(&sb);
	if (!value_payload(c, c->args[1], &sb)) {
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
		return msg_not_there(c, name);
	case PROCREG_E_BUSY:
		return out_error(c, EXIT_NO, "busy", NULL, "%s: busy (its "
		    "holder is not reading); try again later", name);
	case PROCREG_E_DOWN:
		return out_error(c, EXIT_NO, "down", NULL, "%s: down: %s",
		    name, procreg_errmsg(c->p));
	case PROCREG_E_CALL_TIMEOUT:
		return out_error(c, EXIT_ERROR, "timeout", NULL, "%s: "
		    "timeout: %s", name, procreg_errmsg(c->p));
	case PROCREG_E_OTHER:
		/* The callee's own error: "code: message". */
		return msg_callee_error(c, name);
	case PROCREG_E_TAKEN:
	case PROCREG_E_NOT_OWNER:
	case PROCREG_E_STALE:
		/* The daemon never answers a call with these: the callee's. */
		return out_error(c, EXIT_NO, procreg_status_code(r), NULL,
		    "%s: %s: %s", name, procreg_status_code(r),
		    procreg_errmsg(c->p));
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
		return out_error(c, out_status_exit(r),
		    procreg_status_code(r), NULL, "%s: %s: %s", name,
		    procreg_status_code(r), procreg_errmsg(c->p));
	default:
		return out_report(c, r, name);
	}
	ok = c->json ? out_json(value_json(res, len), 0) :
	    out_payload(res, len, false);
	free(res);
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* recv and join: print one message or publish (stop at --count). */
void
msg_recv_event(struct waiter *w, const struct procreg_event *ev)
{
	bool join = w->c->cmd->bit == C_JOIN;

	if (w->done || ev->kind != (join ? PROCREG_EV_PUBLISH :
	    PROCREG_EV_MESSAGE))
		return;
	/* A message sent to our connection id has no name: null. */
	if (w->c->json ? !out_json(json_pack("{s:s?, s:I, s:o?}",
	    join ? "group" : "name", ev->name, "sender",
	    (json_int_t)ev->sender, "payload", value_json(ev->payload,
	    ev->payload_len)), 0) : !out_payload_line(ev->payload,
	    ev->payload_len)) {
		w->done = true;
		w->exit = EXIT_ERROR;
		return;
	}
	if (++w->received == w->c->count)
		w->done = true;
}

/* recv NAME: hold NAME and print what is sent to it; after a daemon
 * restart, NAME is registered again (auto_reconnect). */
int
msg_recv(struct ctl *c)
{
	static const int sigs[] = { SIGINT, SIGTERM };
	struct procreg_callbacks cb = { NULL, wait_reconnected };
	struct waiter w = { .c = c, .on_signal = wait_stop,
	    .on_event = msg_recv_event, .name = c->args[0],
	    .connected = true };
	int r;

	if (!args_check_name(c, w.name))
		return EXIT_USAGE;
	procreg_set_callbacks(c->p, &cb, &w);
	if ((w.sigfd = wait_signals(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    NULL)) < 0)
		return EXIT_ERROR;
	if ((r = names_register(c, w.name, NULL, 0)) == EXIT_SUCCESS)
		r = wait_loop(&w);
	close(w.sigfd);
	return r;
}
