/*
 * run.c: hold and serve, the commands that hold NAME while CMD runs
 * (under the guardian of guard.c): hold for as long as one CMD runs, serve
 * to answer each call with a CMD of its own.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "now.h"

/* ---- hold ---- */

/*
 * hold: NAME is no longer ours (why: the lost reason).  CMD must not run
 * without it: its group is stopped, and hold exits EXIT_LOST once it has
 * ended.
 */
void
run_hold_lost(struct waiter *w, const char *why)
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
run_hold_event(struct waiter *w, const struct procreg_event *ev)
{
	if (ev->name == NULL || strcmp(ev->name, w->name) != 0)
		return;
	if (ev->kind == PROCREG_EV_ACQUIRED && w->waiting) {
		fprintf(stderr, "procregctl: %s passed to us (gen %" PRIu64
		    ")\n", w->name, ev->entry->gen);
		w->waiting = false;
		w->done = true;		/* on to running CMD */
	} else if (ev->kind == PROCREG_EV_LOST && !w->waiting)
		run_hold_lost(w, ev->reason);
}

/* hold: the connection is back; say whether the name is ours again. */
static void
run_hold_reconnect(procreg_t *p, int fd, const char *const *lost, size_t nlost,
    void *arg)
{
	struct waiter *w = arg;

	(void)p;
	(void)fd;
	w->connected = true;
	if (nlost > 0) {
		fprintf(stderr, "procregctl: the daemon is back, but %s %s: it "
		    "is no longer held\n", lost[0], w->c->cluster ? "could not "
		    "be registered again (taken meanwhile, or the cluster "
		    "unavailable)" : "was taken meanwhile");
		run_hold_lost(w, "taken");
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
run_hold_signal(struct waiter *w, const struct signalfd_siginfo *si)
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
int
run_hold(struct ctl *c)
{
	static const int sigs[] = { SIGCHLD, SIGINT, SIGTERM, SIGHUP };
	struct procreg_callbacks cb = { NULL, run_hold_reconnect };
	struct waiter w = { .c = c, .on_signal = run_hold_signal,
	    .on_event = run_hold_event, .name = c->args[0], .connected = true,
	    .g = { .fd = -1 } };
	msgpack_sbuffer sb;
	sigset_t old, ttou;
	uint32_t queued = 0;
	unsigned flags;
	int r;

	if (!args_check_name(c, w.name))
		return EXIT_USAGE;
	if (c->json_value && c->value == NULL)
		return args_error(c, "--json-value needs --value");
	flags = (c->cluster ? PROCREG_CLUSTER : 0) |
	    (c->wait ? PROCREG_QUEUE : 0) | (c->allow_replacement ?
	    PROCREG_ALLOW_REPLACEMENT : 0) | (c->replace ? PROCREG_REPLACE :
	    0);
	msgpack_sbuffer_init(&sb);
	if (c->value != NULL && !value_operand(c, "--value", c->value,
	    c->json_value, &sb)) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_USAGE;
	}
	/* Blocked before registering: a signal while we wait in the
	 * queue, and no SIGCHLD of CMD, is missed. */
	if ((w.sigfd = wait_signals(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    &old)) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return EXIT_ERROR;
	}
	/* Once CMD's group has the terminal, our messages on it must not
	 * stop us (stty tostop). */
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, NULL);
	r = names_register_opts(c, w.name, c->value ? sb.data : NULL, sb.size,
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
	    guard_foreground_tty(), NULL, NULL)) {
		close(w.sigfd);
		return EXIT_ERROR;
	}
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
run_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Read what one of the job's pipes has; EOF closes it. */
static void
run_job_read(struct job *j, int *fd)
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
		run_close_fd(fd);
}

/* Write what the job's stdin takes; all written (or EPIPE) closes it. */
static void
run_job_write(struct job *j)
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
	run_close_fd(&j->in);
}

/* Make sure fds 0, 1 and 2 are open, so that no pipe lands on them. */
static void
run_std_fds_open(void)
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
run_job_setup(void *arg)
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
run_job_start(struct job *j, char **argv, const struct procreg_event *ev,
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
	} else if ((j->input = value_text(ev->payload, ev->payload_len)) !=
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
	if (!guard_start(&j->g, argv, mask, kill_after_ms, -1, run_job_setup,
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
		j->deadline = (int64_t)now_mono_ms() + (int64_t)max_time_ms;
	run_job_write(j);
	return true;
fail:
	for (int k = 0; k < 2; k++) {
		run_close_fd(&in[k]);
		run_close_fd(&out[k]);
		run_close_fd(&err[k]);
	}
	free(j->input);
	free(j->output);
	j->input = j->output = NULL;
	return false;
}

static void
run_job_free(struct job *j)
{
	run_close_fd(&j->in);
	run_close_fd(&j->out);
	run_close_fd(&j->err);
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
run_job_reply(procreg_t *p, struct job *j, uint64_t max_time_ms)
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
		value_scrub(msg, strlen(msg));
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
run_callq_push(struct callq *q, struct procreg_event *ev)
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
run_callq_pop(struct callq *q)
{
	return q->head < q->len ? q->v[q->head++] : NULL;
}

static void
run_callq_free(struct callq *q)
{
	struct procreg_event *ev;

	while ((ev = run_callq_pop(q)) != NULL)
		procreg_event_free(ev);
	free(q->v);
}

/*
 * serve: a status from the connection.  With auto_reconnect a lost
 * connection is no failure: the loop waits for it to come back (the next
 * procreg_next_event retries), and the calls it had ended with the old
 * daemon.  PROCREG_OK for that, else r.
 */
static int
run_serve_status(struct waiter *w, int r)
{
	if (r != PROCREG_OK && w->c->reconnect && (r == PROCREG_E_CLOSED ||
	    r == PROCREG_E_CONNECT || procreg_fd(w->c->p) < 0)) {
		wait_went_away(w);
		return PROCREG_OK;
	}
	return r;
}

/*
 * serve NAME CMD...: answer each call to NAME by running CMD.  Every
 * notification is taken as it comes, calls into a queue of our own, so
 * that a lost NAME stops a CMD that is running (no other holder must be
 * answered beside).  After a daemon restart NAME is registered again
 * (auto_reconnect); taken meanwhile, it is lost.
 */
int
run_serve(struct ctl *c)
{
	static const int sigs[] = { SIGCHLD, SIGINT, SIGTERM };
	struct procreg_callbacks cb = { NULL, wait_reconnected };
	struct waiter w = { .c = c, .sigfd = -1, .name = c->args[0],
	    .connected = true };
	struct procreg_hello h;
	struct procreg_event *ev;
	struct callq q = { 0 };
	struct job j;
	sigset_t old;
	size_t output_max;
	uint64_t served = 0;
	bool stopping = false, daemon_error = false;
	char why[256];
	int sigfd, r = PROCREG_OK, ex = EXIT_SUCCESS;

	if (!args_check_name(c, c->args[0]))
		return EXIT_USAGE;
	if ((r = procreg_hello(c->p, &h)) != PROCREG_OK)
		return out_report(c, r, NULL);
	/* Room for the reply's framing in the daemon's max_message. */
	output_max = h.max_message > 2048 ? h.max_message - 1024 : 1024;
	if ((ex = names_register(c, c->args[0], NULL, 0)) != EXIT_SUCCESS)
		return ex;
	procreg_set_callbacks(c->p, &cb, &w);
	run_std_fds_open();
	signal(SIGPIPE, SIG_IGN);	/* a CMD that does not read stdin */
	if ((sigfd = wait_signals(sigs, sizeof(sigs) / sizeof(sigs[0]),
	    &old)) < 0)
		return EXIT_ERROR;
	memset(&j, 0, sizeof(j));
	j.in = j.out = j.err = j.g.fd = -1;
	while (!stopping) {
		struct pollfd pfd[5];
		struct signalfd_siginfo si;
		int n = 0, timeout = -1;

		while (r == PROCREG_OK && !w.lost &&
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
				w.lost = true;
			} else if (ev->kind == PROCREG_EV_CALL &&
			    run_callq_push(&q, ev))
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
		if ((r = run_serve_status(&w, r)) != PROCREG_OK || w.lost)
			break;
		/* Idle: take the next call, in the order they came. */
		while (j.g.pid == 0 && r == PROCREG_OK &&
		    (c->count == 0 || served < c->count) &&
		    (ev = run_callq_pop(&q)) != NULL) {
			if (!run_job_start(&j, c->args + 1, ev, &old,
			    output_max, c->max_time_ms, c->kill_after_ms, why,
			    sizeof(why))) {
				r = procreg_reply_error(c->p, ev->call_id,
				    "failed", why);
				if (r == PROCREG_E_NOT_FOUND)
					r = PROCREG_OK;
				r = run_serve_status(&w, r);
				served++;
			}
			procreg_event_free(ev);
		}
		if (r != PROCREG_OK)
			break;
		if (j.g.pid == 0 && c->count > 0 && served >= c->count)
			break;
		pfd[n++] = (struct pollfd){ sigfd, POLLIN, 0 };
		/* Disconnected (-1, which poll skips): retry in a while. */
		pfd[n++] = (struct pollfd){ procreg_fd(c->p), POLLIN, 0 };
		if (j.in >= 0)
			pfd[n++] = (struct pollfd){ j.in, POLLOUT, 0 };
		if (j.out >= 0)
			pfd[n++] = (struct pollfd){ j.out, POLLIN, 0 };
		if (j.err >= 0)
			pfd[n++] = (struct pollfd){ j.err, POLLIN, 0 };
		if (j.g.pid != 0 && j.deadline > 0 && !j.reaped) {
			int64_t left = j.deadline - (int64_t)now_mono_ms();

			timeout = left > 0 ? (int)left : 0;
		}
		if (procreg_fd(c->p) < 0 && (timeout < 0 ||
		    timeout > WAIT_RETRY_MS))
			timeout = WAIT_RETRY_MS;
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
			run_job_write(&j);
		if (j.out >= 0)
			run_job_read(&j, &j.out);
		if (j.err >= 0)
			run_job_read(&j, &j.err);
		while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if (si.ssi_signo != SIGCHLD)
				stopping = true;
		}
		if (j.g.pid != 0 && !j.reaped &&
		    guard_reap(&j.g, false, &j.status))
			j.reaped = true;
		if (j.g.pid != 0 && !j.reaped && j.deadline > 0 &&
		    (int64_t)now_mono_ms() >= j.deadline && !j.killed) {
			guard_signal(&j.g, SIGKILL);
			j.killed = true;
		}
		if (j.reaped) {
			/* What it wrote before it ended is in the pipes; a
			 * background child of it may keep them open. */
			if (j.out >= 0)
				run_job_read(&j, &j.out);
			if (j.err >= 0)
				run_job_read(&j, &j.err);
			r = run_serve_status(&w, run_job_reply(c->p, &j,
			    c->max_time_ms));
			served++;
			run_job_free(&j);
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
	run_job_free(&j);
	run_callq_free(&q);
	close(sigfd);
	if (ex != EXIT_SUCCESS)
		return ex;
	if (w.lost)
		return EXIT_LOST;
	if (r != PROCREG_OK) {
		ex = out_report(c, r, c->args[0]);
		return daemon_error ? EXIT_ERROR : ex;
	}
	return EXIT_SUCCESS;
}
