/*
 * guard.c: the guardian, which runs hold's and serve's CMD in a process
 * group of its own.
 *
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "procreg-protocol.h"
#include "now.h"

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
int
guard_foreground_tty(void)
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
guard_close_cloexec(int keep, int keep2)
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
guard_stdio_null(void)
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
guard_group_empty(pid_t pg)
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
		if (done && guard_group_empty(pg))
			break;
		now = (int64_t)now_mono_ms();
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
			now = (int64_t)now_mono_ms();
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
	guard_close_cloexec(sock, tty);
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
	guard_stdio_null();
	guard_say(sock, GUARD_EXITED, guard_run(sock, tty, cmd, ppg,
	    kill_after_ms));
	_exit(0);
}

/*
 * Start CMD (argv) under a guardian; false (reported) when it cannot be.
 * tty: as guard_main's; setup(arg) runs in the guardian before CMD starts.
 */
bool
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
void
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
void
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
bool
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
