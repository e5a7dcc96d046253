/*
 * fuzz_procregd.c: libFuzzer target for the daemon's input path.
 *
 * The input is a script of chunks for a few simulated clients, each a
 * real socketpair adopted by the real connection code: framing, decoding,
 * validation, dispatch, replies, pushes between clients and purges all
 * run exactly as in procregd.  After every chunk the registry's invariant
 * checker must pass; after every input all clients are closed and the
 * registry must be empty again.
 *
 * Chunk format: one op byte (low 2 bits: client 0..3; bits 2-3: 0 write,
 * 1 write, 2 close and reopen, 3 half-close and reopen), a length byte,
 * then that many bytes to write.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "server.h"

#define NCLIENTS	4

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Run the loop until it has nothing left to do right now. */
static void
settle(struct server *s)
{
	for (int i = 0; i < 16; i++)
		event_base_loop(s->base, EVLOOP_NONBLOCK);
}

/* Read and discard what the daemon sent a client. */
static void
drain(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static int
open_client(struct server *s)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) < 0)
		abort();
	if (conn_new(&s->conns, sv[0]) == NULL)
		abort();
	return sv[1];
}

static void
check(struct server *s)
{
	const char *why = registry_check(&s->reg);

	if (why != NULL) {
		fprintf(stderr, "registry invariant broken: %s\n", why);
		abort();
	}
}

static struct server *fuzz_server;

/* Remove the (unused) listening socket when the fuzzer exits. */
static void
cleanup(void)
{
	if (fuzz_server != NULL)
		unlink(fuzz_server->socket_path);
}

static struct server *
server_once(void)
{
	struct server *s = fuzz_server;
	struct config cfg;

	if (s != NULL)
		return s;
	config_defaults(&cfg);
	/* Small limits so that inputs reach them. */
	cfg.max_message = 4096;
	cfg.max_names = 16;
	cfg.max_monitors = 16;
	cfg.max_outbuf = 16384;
	cfg.drain_ms = 0;
	cfg.log_level = LOG_LVL_ERR;
	snprintf(cfg.socket_path, sizeof(cfg.socket_path),
	    "/tmp/procreg-fuzz.%d.sock", (int)getpid());
	if ((s = malloc(sizeof(*s))) == NULL || server_init(s, &cfg) < 0)
		abort();
	fuzz_server = s;
	atexit(cleanup);
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct server *s = server_once();
	int fds[NCLIENTS];
	size_t i = 0;

	for (int k = 0; k < NCLIENTS; k++)
		fds[k] = open_client(s);
	while (i + 2 <= size) {
		int k = data[i] & 3, op = (data[i] >> 2) & 3;
		size_t len = data[i + 1];

		i += 2;
		if (len > size - i)
			len = size - i;
		if (op == 2 || op == 3) {
			if (op == 3)
				shutdown(fds[k], SHUT_WR);
			else
				close(fds[k]);
			settle(s);
			if (op == 3) {
				drain(fds[k]);
				close(fds[k]);
			}
			fds[k] = open_client(s);
		}
		if (len > 0 && write(fds[k], data + i, len) < 0 &&
		    errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
			abort();
		i += len;
		settle(s);
		for (int c = 0; c < NCLIENTS; c++)
			drain(fds[c]);
		settle(s);
		check(s);
	}
	for (int k = 0; k < NCLIENTS; k++)
		close(fds[k]);
	settle(s);
	check(s);
	/* Every lifeline is gone: nothing may remain. */
	if (s->reg.nnames != 0 || s->reg.nmonitors != 0 ||
	    s->conns.nconns != 0) {
		fprintf(stderr, "leftovers: names=%llu monitors=%llu conns=%llu\n",
		    (unsigned long long)s->reg.nnames,
		    (unsigned long long)s->reg.nmonitors,
		    (unsigned long long)s->conns.nconns);
		abort();
	}
	return 0;
}
