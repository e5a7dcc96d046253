/*
 * echo-floor.c: the floor for procreg-bench.  A bare libevent echo server
 * on a Unix socket: one read() per readiness event, and the bytes read are
 * written straight back with write(2) at the end of the same callback.
 * Only what the socket does not take at once is queued in an evbuffer and
 * flushed when the socket is writable again.  No parsing, no framing: the
 * cheapest a single-threaded libevent daemon on this transport can be.
 *
 *	echo-floor -s PATH		(SIGTERM or SIGINT to stop)
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CHUNK	(64 * 1024)

struct econn {
	int		 fd;
	struct event	*ev_read;
	struct event	*ev_write;
	struct evbuffer	*pending;	/* what write(2) did not take */
};

static char rbuf[CHUNK];

static void
econn_free(struct econn *c)
{
	event_free(c->ev_read);
	event_free(c->ev_write);
	evbuffer_free(c->pending);
	close(c->fd);
	free(c);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct econn *c = arg;

	(void)what;
	if (evbuffer_write(c->pending, fd) < 0 && errno != EAGAIN &&
	    errno != EINTR) {
		econn_free(c);
		return;
	}
	if (evbuffer_get_length(c->pending) == 0) {
		event_del(c->ev_write);
		event_add(c->ev_read, NULL);
	}
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct econn *c = arg;
	ssize_t n, w;

	(void)what;
	n = read(fd, rbuf, sizeof(rbuf));
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		econn_free(c);
		return;
	}
	if (n < 0)
		return;
	w = write(fd, rbuf, (size_t)n);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			econn_free(c);
			return;
		}
		w = 0;
	}
	if (w < n) {
		/* Keep order: stop reading until the rest is out. */
		evbuffer_add(c->pending, rbuf + w, (size_t)(n - w));
		event_del(c->ev_read);
		event_add(c->ev_write, NULL);
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct event_base *base = arg;
	struct econn *c;

	(void)l;
	(void)sa;
	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->pending = evbuffer_new();
	c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
	if (c->pending == NULL || c->ev_read == NULL || c->ev_write == NULL) {
		fprintf(stderr, "echo-floor: out of memory\n");
		exit(1);
	}
	event_add(c->ev_read, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sun;
	struct evconnlistener *l;
	struct event_base *base;
	struct event *sint, *sterm;
	const char *path = NULL;
	int opt, fd;

	while ((opt = getopt(argc, argv, "s:")) != -1) {
		if (opt != 's') {
			fprintf(stderr, "usage: echo-floor -s SOCKET\n");
			return 2;
		}
		path = optarg;
	}
	if (path == NULL || strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "usage: echo-floor -s SOCKET\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror("echo-floor: bind");
		return 1;
	}
	if ((base = event_base_new()) == NULL)
		return 1;
	l = evconnlistener_new(base, accept_cb, base,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024, fd);
	if (l == NULL) {
		perror("echo-floor: listen");
		return 1;
	}
	sint = evsignal_new(base, SIGINT, signal_cb, base);
	sterm = evsignal_new(base, SIGTERM, signal_cb, base);
	event_add(sint, NULL);
	event_add(sterm, NULL);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_free(sint);
	event_free(sterm);
	event_base_free(base);
	unlink(path);
	return 0;
}
