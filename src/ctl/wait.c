/*
 * wait.c: the loop of the commands that wait (hold, recv, join, monitor,
 * watch): notifications, signals through a signalfd, the guardian's
 * messages, and a lost connection, ridden out or not (--no-reconnect).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* Block sigs and open a signalfd for them; -1 (reported) on failure. */
int
wait_signals(const int *sigs, size_t n, sigset_t *old)
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
wait_read_signals(struct waiter *w)
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
wait_dispatch(struct waiter *w)
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
 * The connection was lost (auto_reconnect): say so once, until it is
 * back.  hold says what it means for NAME; the others that they wait.
 */
void
wait_went_away(struct waiter *w)
{
	if (!w->connected)
		return;
	w->connected = false;
	/*
	 * A cluster name outlives its daemon by up to the lease's TTL,
	 * then another node may take it: with no daemon to keep the lease
	 * alive, CMD must not go on as if it still held NAME.
	 */
	if (w->c->cmd->bit == C_HOLD && w->c->cluster && !w->waiting)
		run_hold_lost(w, "the daemon went away, and nothing here "
		    "keeps the cluster name's lease alive");
	else if (w->c->cmd->bit == C_HOLD)
		fprintf(stderr, "procregctl: lost the daemon (%s); %s is not "
		    "held until it is back\n", procreg_errmsg(w->c->p),
		    w->name);
	else
		fprintf(stderr, "procregctl: the daemon went away (%s); "
		    "reconnecting...\n", procreg_errmsg(w->c->p));
}

/*
 * recv, serve, join, watch (on_reconnect, arg the waiter): the
 * connection is back, with NAME registered (GROUP joined) again unless
 * lost lists it.  A name another took meanwhile ends recv and serve with
 * EXIT_LOST, as hold's does; a group the new daemon refuses ends join
 * with EXIT_NO.  watch resumes on the subscription's own event.
 */
void
wait_reconnected(procreg_t *p, int fd, const char *const *lost,
    size_t nlost, void *arg)
{
	struct waiter *w = arg;
	unsigned bit = w->c->cmd->bit;

	(void)p;
	(void)fd;
	/* Lost and back within one call: the loss was not seen yet. */
	wait_went_away(w);
	w->connected = true;
	w->reconnected = true;
	if (nlost > 0 && bit == C_JOIN) {
		fprintf(stderr, "procregctl: the daemon is back, but %s could "
		    "not be joined again\n", lost[0]);
		w->done = true;
		w->exit = EXIT_NO;
	} else if (nlost > 0) {
		fprintf(stderr, "procregctl: the daemon is back, but %s %s\n",
		    lost[0], w->c->cluster ? "could not be registered again "
		    "(taken meanwhile, or the cluster unavailable)" :
		    "was taken meanwhile");
		w->lost = true;
		w->done = true;
		w->exit = EXIT_LOST;
	} else if (bit == C_WATCH)
		fprintf(stderr, "procregctl: the daemon is back\n");
	else
		fprintf(stderr, "procregctl: the daemon is back; %s is %s "
		    "again\n", w->name, bit == C_JOIN ? "joined" :
		    "registered");
}

/*
 * Wait, without spinning, until w->done.  With auto_reconnect (hold, and
 * recv, join, watch without --no-reconnect) a lost connection is ridden
 * out, retried every WAIT_RETRY_MS; otherwise it ends with exit 3 (4 when the
 * daemon said why it closed it).
 */
int
wait_loop(struct waiter *w)
{
	procreg_t *p = w->c->p;
	int r;

	while (!w->done) {
		struct pollfd pfd[3];
		int fd, n = 0, gi = -1;

		if ((r = wait_dispatch(w)) != PROCREG_OK && !w->c->reconnect) {
			return out_error(w->c, w->daemon_error ? EXIT_ERROR :
			    out_status_exit(r), out_code(r), NULL, "%s: %s",
			    procreg_strstatus(r), procreg_errmsg(p));
		}
		if ((fd = procreg_fd(p)) < 0)
			wait_went_away(w);
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
		/* Disconnected: dispatch retries in WAIT_RETRY_MS. */
		if (poll(pfd, (nfds_t)n, fd >= 0 ? -1 : WAIT_RETRY_MS) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "procregctl: poll: %s\n",
			    strerror(errno));
			return EXIT_ERROR;
		}
		if (gi >= 0 && pfd[gi].revents)
			guard_read(&w->g, true);
		if (w->sigfd >= 0 && pfd[0].revents)
			wait_read_signals(w);
	}
	return w->exit;
}

/* recv: SIGINT or SIGTERM end it cleanly. */
void
wait_stop(struct waiter *w, const struct signalfd_siginfo *si)
{
	(void)si;
	w->done = true;
}
