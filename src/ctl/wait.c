/*
 * wait.c: the loop of the commands that wait (hold, recv, join, monitor,
 * watch): notifications, signals through a signalfd, the guardian's
 * messages, and a lost connection.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* How often a hold retries a lost daemon connection, ms. */
#define RETRY_MS	100

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
 * Wait, without spinning, until w->done.  A hold (auto_reconnect) rides
 * out a lost connection, retrying every RETRY_MS; the others end with
 * exit 3 (4 when the daemon said why it closed it).
 */
int
wait_loop(struct waiter *w)
{
	procreg_t *p = w->c->p;
	int r;

	while (!w->done) {
		struct pollfd pfd[3];
		int fd, n = 0, gi = -1;

		if ((r = wait_dispatch(w)) != PROCREG_OK &&
		    !w->c->cmd->reconnect) {
			return out_error(w->c, w->daemon_error ? EXIT_ERROR :
			    out_status_exit(r), out_code(r), NULL, "%s: %s",
			    procreg_strstatus(r), procreg_errmsg(p));
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
