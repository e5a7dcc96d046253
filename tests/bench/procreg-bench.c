/*
 * procreg-bench: a load generator for procregd in the spirit of
 * redis-benchmark, with a --redis mode that drives redis-server with the
 * same client design (for comparison), an --echo mode against the bare
 * libevent echo floor (tests/bench/echo-floor) and a --dbus mode that asks
 * a D-Bus broker (dbus-broker, a private bus) GetNameOwner, the nearest
 * thing the usual Linux service registry has to whereis.
 *
 * Client design, so that the client is not the bottleneck: every request
 * is encoded before the clock starts (a test only patches a send
 * timestamp into a pre-encoded payload); each connection keeps DEPTH
 * operations in flight and refills with one writev per readable event;
 * replies are parsed with msgpack-c's streaming unpacker (msgpack_unpacker)
 * or, for Redis, a minimal RESP parser, or, for D-Bus, by the fixed part
 * of the message header; one epoll set for everything.  D-Bus messages are
 * encoded by hand (little-endian, calls on the bus driver only), so that
 * no D-Bus library's per-message cost is in the client.
 *
 * The daemon's CPU time (utime+stime of /proc/PID/stat, PID from --pid or
 * from SO_PEERCRED of the connection) is read before and after each test
 * and reported per operation.
 *
 * --scope cluster (a daemon that is a cluster node, proto/PROTOCOL.md
 * §12): the set-up registers the --names names as cluster names, in
 * windows small enough for the daemon's etcd client, and whereis stays
 * [name] (it finds the cluster name since no local one exists); the
 * register test then chains each register and its unregister (a cluster
 * register is answered once etcd has committed it, out of order with the
 * requests behind it), DEPTH such chains per connection, replies matched
 * by msgid.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

enum mode { MODE_PROCREG, MODE_REDIS, MODE_ECHO, MODE_DBUS };

enum test {
	T_WHEREIS, T_WHEREIS_MISS, T_REGISTER, T_SEND, T_MONITOR, T_PURGE,
	T_CONNS, T_NTESTS
};

static const char *const test_names[T_NTESTS] = {
	"whereis", "whereis-miss", "register", "send", "monitor", "purge",
	"conns"
};

/* Names of the tests in Redis terms (NULL: not available there). */
static const char *const redis_names[T_NTESTS] = {
	"get", "get-miss", "setnx-del", "publish", NULL, NULL, "conns-get"
};

/* And in D-Bus terms: GetNameOwner, RequestName+ReleaseName. */
static const char *const dbus_names[T_NTESTS] = {
	"getnameowner", "getnameowner-miss", "request-release", NULL, NULL,
	NULL, "conns-getnameowner"
};

enum role {
	R_SETUP,	/* synchronous set-up calls, counts replies */
	R_LOAD,		/* a load connection: DEPTH ops in flight */
	R_SINK,		/* receives send/PUBLISH deliveries */
	R_OWNER,	/* monitor test: registers and unregisters */
	R_WATCHER,	/* monitor/purge tests: monitors, receives downs */
	R_PROBE,	/* purge test: whereis at depth 1 during the purge */
	R_CREG		/* register test on cluster names: chained pairs */
};

/* One chain of the cluster register test: register, then unregister. */
struct creg_slot {
	uint64_t	 t0;		/* the register's send time */
	uint64_t	 t1;		/* the unregister's */
	char		 name[32];
	bool		 unreg;		/* the unregister is in flight */
	bool		 busy;
};

/* Pre-encoded operations: nops back-to-back ops of opsz bytes each. */
struct pool {
	uint8_t		*buf;
	size_t		 opsz;
	uint32_t	 nops;
	int		 ts_off;	/* where to patch the send time, or -1 */
	int		 rpo;		/* replies per op */
	bool		 shared;
};

struct conn {
	int		 fd;
	unsigned	 idx;
	enum role	 role;
	struct conn	*peer;		/* monitor test: the other side */
	msgpack_unpacker up;		/* procreg replies */
	msgpack_unpacked res;
	char		*rb;		/* redis and D-Bus replies */
	size_t		 rlen, rcap;
	uint64_t	 rx;		/* echo: bytes not yet counted */
	uint8_t		*out;		/* what writev did not take */
	size_t		 outlen, outcap;
	bool		 want_out;
	struct pool	*pool;
	uint32_t	 pos;		/* next op in the pool */
	uint64_t	*t0;		/* send time of each op in flight */
	uint32_t	 head, inflight, depth;
	int		 partial;	/* replies received for the head op */
	uint64_t	 got;		/* replies counted (setup, monitor) */
	uint64_t	 downs;
	uint64_t	 msgid;		/* of the reply being handled */
	struct creg_slot *slots;	/* R_CREG */
	uint64_t	 seq;		/* R_CREG: names used */
	/* monitor test state */
	int		 phase;
	uint32_t	 pending;
	uint64_t	 phase_t0;
};

struct lat {
	uint64_t	*v;
	size_t		 n, cap;
};

struct bench {
	enum mode	 mode;
	const char	*sock;
	unsigned	 conns, depth;
	uint64_t	 n;
	size_t		 dsz;
	uint64_t	 names;
	unsigned	 holders;
	bool		 csv, preloaded, hold, quiet;
	pid_t		 pid;
	double		 timeout;
	uint64_t	 purge_names, purge_monitors;
	unsigned	 purge_watchers;
	bool		 probe, probe_stop;
	uint64_t	 seed;
	bool		 cluster;	/* --scope cluster */

	int		 ep;
	enum test	 test;
	uint64_t	 issued, done, accepted, delivered, errors, busy;
	uint64_t	 downs;
	uint64_t	 last_delivery;
	bool		 lat_on_delivery;
	struct lat	 lat, plat;	/* load latencies, probe latencies */
	struct lat	 lat_reg, lat_unreg;	/* cluster register test */
	struct conn	**holder;
	unsigned	 nholder;
	struct pool	 shared_hit, shared_miss;
	uint64_t	 rng;
	double		 connect_ms;
	double		 self0;		/* own CPU time at the test's start */
	long		 hz;
};

static volatile sig_atomic_t stop_signal;

static void die(const char *, ...) __attribute__((format(printf, 1, 2),
    noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("procreg-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n ? n : 1)) == NULL)
		die("out of memory");
	return p;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
rnd(struct bench *b)
{
	/* xorshift64* */
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ull;
}

static void
lat_add(struct lat *l, uint64_t v)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 65536;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = v;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Percentile in microseconds of sorted latencies. */
static double
pct(const struct lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)ceil(q * (double)l->n);
	if (i > 0)
		i--;
	if (i >= l->n)
		i = l->n - 1;
	return (double)l->v[i] / 1000.0;
}

/* utime+stime of the daemon, in clock ticks. */
static uint64_t
daemon_ticks(const struct bench *b)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	ssize_t n;
	int fd;

	if (b->pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)b->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return 0;
	/* After ")": state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &ut, &st) != 2)
		return 0;
	return ut + st;
}

/* Resident set of the daemon in bytes (/proc/PID/statm). */
static uint64_t
daemon_rss(const struct bench *b)
{
	char path[64];
	unsigned long long size = 0, res = 0;
	FILE *f;

	if (b->pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)b->pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- connections ---------------------------------------------------- */

static void dbus_hello(struct conn *);

static struct conn *
conn_open(struct bench *b, enum role role, unsigned idx)
{
	struct sockaddr_un sun;
	struct epoll_event ev;
	struct conn *c;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(b->sock) >= sizeof(sun.sun_path))
		die("socket path too long");
	strcpy(sun.sun_path, b->sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		die("socket: %s", strerror(errno));
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			/* listen backlog full: the daemon is accepting */
			usleep(1000);
			continue;
		}
		die("connect %s: %s", b->sock, strerror(errno));
	}
	/* not for D-Bus: the listening socket is the launcher's, and so is
	 * the pid that the bus itself reports */
	if (b->pid == 0 && b->mode != MODE_DBUS) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
			b->pid = cr.pid;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		die("out of memory");
	c->fd = fd;
	c->idx = idx;
	c->role = role;
	if (b->mode == MODE_DBUS)
		dbus_hello(c);	/* blocking, before O_NONBLOCK */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (b->mode == MODE_PROCREG) {
		if (!msgpack_unpacker_init(&c->up, 16384))
			die("out of memory");
		msgpack_unpacked_init(&c->res);
	}
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	return c;
}

static void
conn_close(struct bench *b, struct conn *c)
{
	if (c == NULL)
		return;
	epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (b->mode == MODE_PROCREG) {
		msgpack_unpacked_destroy(&c->res);
		msgpack_unpacker_destroy(&c->up);
	}
	if (c->pool != NULL && !c->pool->shared) {
		free(c->pool->buf);
		free(c->pool);
	}
	free(c->rb);
	free(c->out);
	free(c->t0);
	free(c->slots);
	free(c);
}

static void
set_want_out(struct bench *b, struct conn *c, bool on)
{
	struct epoll_event ev;

	if (c->want_out == on)
		return;
	c->want_out = on;
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
out_append(struct conn *c, const void *p, size_t len)
{
	if (c->outlen + len > c->outcap) {
		c->outcap = (c->outlen + len) * 2;
		c->out = xrealloc(c->out, c->outcap);
	}
	memcpy(c->out + c->outlen, p, len);
	c->outlen += len;
}

/* One writev; what the socket does not take waits for EPOLLOUT. */
static void
conn_writev(struct bench *b, struct conn *c, struct iovec *iov, int cnt)
{
	ssize_t w = 0;

	if (c->outlen == 0) {
		w = writev(c->fd, iov, cnt);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				die("write: %s", strerror(errno));
			w = 0;
		}
	}
	for (int i = 0; i < cnt; i++) {
		size_t skip = (size_t)w < iov[i].iov_len ? (size_t)w :
		    iov[i].iov_len;

		w -= (ssize_t)skip;
		if (skip < iov[i].iov_len)
			out_append(c, (char *)iov[i].iov_base + skip,
			    iov[i].iov_len - skip);
	}
	if (c->outlen > 0)
		set_want_out(b, c, true);
}

static void
conn_write(struct bench *b, struct conn *c, const void *p, size_t len)
{
	struct iovec iov = { (void *)(uintptr_t)p, len };

	conn_writev(b, c, &iov, 1);
}

static void
conn_flush_out(struct bench *b, struct conn *c)
{
	ssize_t w;

	if (c->outlen == 0) {
		set_want_out(b, c, false);
		return;
	}
	w = write(c->fd, c->out, c->outlen);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR)
			die("write: %s", strerror(errno));
		return;
	}
	memmove(c->out, c->out + w, c->outlen - (size_t)w);
	c->outlen -= (size_t)w;
	if (c->outlen == 0)
		set_want_out(b, c, false);
}

/* ---- encoding --------------------------------------------------------- */

static void
pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

/* [0, 1, method, [name]] */
static void
enc_call1(msgpack_sbuffer *sb, const char *method, const char *name)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, 1);
	pk_str(&pk, method);
	msgpack_pack_array(&pk, 1);
	pk_str(&pk, name);
}

/* [0, msgid, "register", [name]], or with --scope cluster [0, msgid,
 * "register", [name, nil, {"scope": "cluster"}]]. */
static void
enc_register(const struct bench *b, msgpack_sbuffer *sb, uint32_t msgid,
    const char *name)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, msgid);
	pk_str(&pk, "register");
	if (!b->cluster) {
		msgpack_pack_array(&pk, 1);
		pk_str(&pk, name);
		return;
	}
	msgpack_pack_array(&pk, 3);
	pk_str(&pk, name);
	msgpack_pack_nil(&pk);
	msgpack_pack_map(&pk, 1);
	pk_str(&pk, "scope");
	pk_str(&pk, "cluster");
}

/* [0, 1, "send", [name, bin(dsz)]]: the payload ends the request. */
static void
enc_send(msgpack_sbuffer *sb, const char *name, size_t dsz)
{
	msgpack_packer pk;
	char *zero = calloc(1, dsz);

	if (zero == NULL)
		die("out of memory");
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, 1);
	pk_str(&pk, "send");
	msgpack_pack_array(&pk, 2);
	pk_str(&pk, name);
	msgpack_pack_bin(&pk, dsz);
	msgpack_pack_bin_body(&pk, zero, dsz);
	free(zero);
}

/* A RESP command from argv (lengths given, binary-safe). */
static void
enc_resp(msgpack_sbuffer *sb, int argc, const char *const *argv,
    const size_t *lens)
{
	char hdr[32];
	int n;

	n = snprintf(hdr, sizeof(hdr), "*%d\r\n", argc);
	msgpack_sbuffer_write(sb, hdr, (size_t)n);
	for (int i = 0; i < argc; i++) {
		n = snprintf(hdr, sizeof(hdr), "$%zu\r\n", lens[i]);
		msgpack_sbuffer_write(sb, hdr, (size_t)n);
		msgpack_sbuffer_write(sb, argv[i], lens[i]);
		msgpack_sbuffer_write(sb, "\r\n", 2);
	}
}

static void
enc_resp2(msgpack_sbuffer *sb, const char *a, const char *k)
{
	const char *argv[2] = { a, k };
	size_t lens[2] = { strlen(a), strlen(k) };

	enc_resp(sb, 2, argv, lens);
}

/* The --names names: PREFIX (default n) and seven digits. */
static const char *name_prefix = "n";

static void
name_hit(char *buf, size_t sz, uint64_t i)
{
	snprintf(buf, sz, "%s%07" PRIu64, name_prefix, i);
}

/*
 * D-Bus.  Every message here is a method call on the bus driver
 * (org.freedesktop.DBus) with no argument, one string, or a string and a
 * uint32.  Alignment in the wire format is relative to the message's
 * start, which in a pool is not the buffer's: hence start.
 */
enum {
	DBUS_CALL = 1, DBUS_RETURN = 2, DBUS_ERROR = 3, DBUS_SIGNAL = 4
};
enum {
	DBUS_F_PATH = 1, DBUS_F_INTERFACE = 2, DBUS_F_MEMBER = 3,
	DBUS_F_ERROR_NAME = 4, DBUS_F_DESTINATION = 6, DBUS_F_SIGNATURE = 8
};
/* RequestName: fail at once rather than queue for a name that is taken */
#define DBUS_NAME_DO_NOT_QUEUE	4
/* the largest message the specification allows */
#define DBUS_MAX_MSG		(128u << 20)

static const char dbus_driver[] = "org.freedesktop.DBus";
static const char dbus_no_owner[] = "org.freedesktop.DBus.Error.NameHasNoOwner";

/* Bytes, not chars. */
static void
dbus_write(msgpack_sbuffer *sb, const void *p, size_t len)
{
	msgpack_sbuffer_write(sb, p, len);
}

static void
dbus_pad(msgpack_sbuffer *sb, size_t start, size_t align)
{
	static const char zero[8];

	dbus_write(sb, zero, (align - (sb->size - start) % align) %
	    align);
}

static void
dbus_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t
dbus_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
dbus_u32(msgpack_sbuffer *sb, size_t start, uint32_t v)
{
	uint8_t le[4];

	dbus_pad(sb, start, 4);
	dbus_put32(le, v);
	dbus_write(sb, le, 4);
}

/* A string or object path: length, bytes, NUL. */
static void
dbus_str(msgpack_sbuffer *sb, size_t start, const char *s)
{
	size_t n = strlen(s);

	dbus_u32(sb, start, (uint32_t)n);
	dbus_write(sb, s, n + 1);
}

/* One header field: a struct (byte code, variant) of type o, s or g. */
static void
dbus_field(msgpack_sbuffer *sb, size_t start, uint8_t code, char type,
    const char *v)
{
	uint8_t h[4] = { code, 1, (uint8_t)type, 0 };

	dbus_pad(sb, start, 8);
	dbus_write(sb, h, sizeof(h));
	if (type == 'g') {
		uint8_t n = (uint8_t)strlen(v);

		dbus_write(sb, &n, 1);
		dbus_write(sb, v, (size_t)n + 1);
	} else
		dbus_str(sb, start, v);
}

/*
 * member(arg[, u]) on the bus driver; arg NULL: no body.  The serial is
 * ours to choose (nonzero); replies are matched by order, not by it.
 */
static void
enc_dbus_call(msgpack_sbuffer *sb, uint32_t serial, const char *member,
    const char *arg, bool with_u, uint32_t u)
{
	/* endianness, type, flags, version; body length and serial later;
	 * the header fields' length later */
	static const uint8_t fixed[16] = { 'l', DBUS_CALL, 0, 1 };
	size_t start = sb->size, fields, body;

	dbus_write(sb, fixed, sizeof(fixed));
	dbus_field(sb, start, DBUS_F_PATH, 'o', "/org/freedesktop/DBus");
	dbus_field(sb, start, DBUS_F_DESTINATION, 's', dbus_driver);
	dbus_field(sb, start, DBUS_F_INTERFACE, 's', dbus_driver);
	dbus_field(sb, start, DBUS_F_MEMBER, 's', member);
	if (arg != NULL)
		dbus_field(sb, start, DBUS_F_SIGNATURE, 'g', with_u ? "su" :
		    "s");
	fields = sb->size - start - 16;
	dbus_pad(sb, start, 8);		/* the body starts 8-aligned */
	body = sb->size;
	if (arg != NULL) {
		dbus_str(sb, start, arg);
		if (with_u)
			dbus_u32(sb, start, u);
	}
	dbus_put32((uint8_t *)sb->data + start + 4, (uint32_t)(sb->size - body));
	dbus_put32((uint8_t *)sb->data + start + 8, serial);
	dbus_put32((uint8_t *)sb->data + start + 12, (uint32_t)fields);
}

/* Serials: 1 is Hello's; the rest wrap short of 0. */
static uint32_t
dbus_serial(uint64_t i)
{
	return (uint32_t)(i % 0xfffffff0u) + 2;
}

/* Well-known names need two elements, none starting with a digit. */
static void
dbus_name(char *buf, size_t sz, char kind, uint64_t i)
{
	snprintf(buf, sz, "bench.%c%07" PRIu64, kind, i);
}

/* Length of the complete message at p, 0 when it is not all there. */
static size_t
dbus_msg_len(const uint8_t *p, size_t avail)
{
	uint64_t n;

	if (avail < 16)
		return 0;
	if (p[0] != 'l')
		die("the bus sent a message that is not little-endian");
	n = 16 + (((uint64_t)dbus_get32(p + 12) + 7) & ~(uint64_t)7) +
	    dbus_get32(p + 4);
	if (n > DBUS_MAX_MSG)
		die("the bus sent a message of %" PRIu64 " bytes", n);
	return avail < n ? 0 : (size_t)n;
}

/* The body of a complete message. */
static const uint8_t *
dbus_body(const uint8_t *m, uint32_t *len)
{
	*len = dbus_get32(m + 4);
	return m + 16 + ((dbus_get32(m + 12) + 7) & ~7u);
}

/* The ERROR_NAME field of a complete error message, for messages. */
static void
dbus_error_name(const uint8_t *m, const char **name, size_t *len)
{
	size_t pos = 16, end = 16 + dbus_get32(m + 12), n;

	*name = "?";
	*len = 1;
	while (pos + 3 < end) {
		uint8_t code = m[pos], sl = m[pos + 1];
		char type = (char)m[pos + 2];

		pos += 3 + sl;		/* code, signature (length, NUL) */
		switch (type) {
		case 's':
		case 'o':
			pos = (pos + 3) & ~(size_t)3;
			if (pos + 4 > end)
				return;
			n = dbus_get32(m + pos);
			if (code == DBUS_F_ERROR_NAME && pos + 4 + n <= end) {
				*name = (const char *)m + pos + 4;
				*len = n;
				return;
			}
			pos += 4 + n + 1;
			break;
		case 'g':
			pos += (size_t)m[pos] + 2;
			break;
		case 'u':
			pos = ((pos + 3) & ~(size_t)3) + 4;
			break;
		default:
			return;		/* not from the driver: give up */
		}
		pos = (pos + 7) & ~(size_t)7;
	}
}

static void
rb_reserve(struct conn *c, size_t want)
{
	if (c->rcap - c->rlen < want) {
		c->rcap = c->rlen + want + 16384;
		c->rb = xrealloc(c->rb, c->rcap);
	}
}

/*
 * SASL EXTERNAL with our uid, BEGIN and Hello in one write, as sd-bus
 * does; then wait for OK and Hello's reply.  What follows them (the
 * NameAcquired signal of the unique name) stays in c->rb for conn_read.
 */
static void
dbus_hello(struct conn *c)
{
	msgpack_sbuffer sb;
	char uid[32], line[128], *eol;
	size_t len, off = 0;
	int n;

	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	n = snprintf(line, sizeof(line), "%cAUTH EXTERNAL ", '\0');
	for (const char *p = uid; *p; p++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x",
		    (unsigned char)*p);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "\r\nBEGIN\r\n");
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_write(&sb, line, (size_t)n);
	enc_dbus_call(&sb, 1, "Hello", NULL, false, 0);
	if (write(c->fd, sb.data, sb.size) != (ssize_t)sb.size)
		die("dbus: cannot write the handshake: %s", strerror(errno));
	msgpack_sbuffer_destroy(&sb);
	for (;;) {
		ssize_t r;

		rb_reserve(c, 4096);
		if ((r = read(c->fd, c->rb + c->rlen, c->rcap - c->rlen)) <= 0)
			die("dbus: the bus closed the connection during the "
			    "handshake (auth refused?)");
		c->rlen += (size_t)r;
		if (off == 0) {
			if ((eol = memmem(c->rb, c->rlen, "\r\n", 2)) == NULL)
				continue;
			if (c->rlen < 3 || memcmp(c->rb, "OK ", 3) != 0)
				die("dbus: auth refused: %.*s",
				    (int)(eol - c->rb), c->rb);
			off = (size_t)(eol - c->rb) + 2;
		}
		while ((len = dbus_msg_len((uint8_t *)c->rb + off,
		    c->rlen - off)) > 0) {
			const uint8_t *m = (uint8_t *)c->rb + off;

			off += len;
			if (m[1] == DBUS_ERROR) {
				const char *e;
				size_t elen;

				dbus_error_name(m, &e, &elen);
				die("dbus: Hello failed: %.*s", (int)elen, e);
			}
			if (m[1] == DBUS_RETURN) {
				c->rlen -= off;
				memmove(c->rb, c->rb + off, c->rlen);
				return;
			}
		}
	}
}

/* Redis keys stand for an entry: a value of 24 bytes, about what procreg
 * stores beside a name (conn, pid, uid, gid, since). */
static const char redis_value[] = "0123456789abcdef01234567";

/* Build a pool by calling enc(i) for each op; every op has one size. */
static struct pool *
pool_build(struct bench *b, struct pool *p, uint32_t nops, int rpo,
    void (*enc)(struct bench *, msgpack_sbuffer *, uint32_t, void *),
    void *arg)
{
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	p->nops = nops;
	p->rpo = rpo;
	p->ts_off = -1;
	for (uint32_t i = 0; i < nops; i++) {
		size_t before = sb.size;

		enc(b, &sb, i, arg);
		if (i == 0)
			p->opsz = sb.size;
		else if (sb.size - before != p->opsz)
			die("internal: ops of unequal size");
	}
	p->buf = (uint8_t *)msgpack_sbuffer_release(&sb);
	msgpack_sbuffer_destroy(&sb);
	return p;
}

static void
enc_whereis_op(struct bench *b, msgpack_sbuffer *sb, uint32_t i, void *arg)
{
	bool miss = arg != NULL;
	char name[32];
	uint64_t k = b->names ? rnd(b) % b->names : 0;

	if (b->mode == MODE_DBUS) {
		dbus_name(name, sizeof(name), miss ? 'm' : 'n', k);
		enc_dbus_call(sb, dbus_serial(i), "GetNameOwner", name, false,
		    0);
		return;
	}
	if (miss)
		snprintf(name, sizeof(name), "m%07" PRIu64, k);
	else
		name_hit(name, sizeof(name), k);
	if (b->mode == MODE_REDIS)
		enc_resp2(sb, "GET", name);
	else
		enc_call1(sb, "whereis", name);
}

static void
enc_register_op(struct bench *b, msgpack_sbuffer *sb, uint32_t i, void *arg)
{
	const struct conn *c = arg;
	char name[32];

	if (b->mode == MODE_DBUS) {
		/* no element may start with a digit */
		snprintf(name, sizeof(name), "bench.r%05u_%04u",
		    c->idx % 100000, i % 10000);
		enc_dbus_call(sb, dbus_serial(2 * (uint64_t)i), "RequestName",
		    name, true, DBUS_NAME_DO_NOT_QUEUE);
		enc_dbus_call(sb, dbus_serial(2 * (uint64_t)i + 1),
		    "ReleaseName", name, false, 0);
		return;
	}
	snprintf(name, sizeof(name), "r%05u.%04u", c->idx % 100000, i % 10000);
	if (b->mode == MODE_REDIS) {
		const char *argv[4] = { "SET", name, "v", "NX" };
		size_t lens[4] = { 3, strlen(name), 1, 2 };

		enc_resp(sb, 4, argv, lens);
		enc_resp2(sb, "DEL", name);
	} else {
		enc_call1(sb, "register", name);
		enc_call1(sb, "unregister", name);
	}
}

static const char sink_name[] = "bench.sink";

static void
enc_send_op(struct bench *b, msgpack_sbuffer *sb, uint32_t i, void *arg)
{
	(void)i;
	(void)arg;
	if (b->mode == MODE_REDIS) {
		char *payload = calloc(1, b->dsz);
		const char *argv[3] = { "PUBLISH", sink_name, payload };
		size_t lens[3] = { 7, strlen(sink_name), b->dsz };

		if (payload == NULL)
			die("out of memory");
		enc_resp(sb, 3, argv, lens);
		free(payload);
	} else
		enc_send(sb, sink_name, b->dsz);
}

/* ---- reply parsing ---------------------------------------------------- */

static void on_response(struct bench *, struct conn *, bool err,
    const char *code, size_t codelen, uint64_t now);
static void on_message(struct bench *, struct conn *, const void *payload,
    size_t len, uint64_t now);
static void on_down(struct bench *, struct conn *, uint64_t now);

static bool
str_is(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);

	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	    memcmp(o->via.str.ptr, s, n) == 0;
}

static void
pr_object(struct bench *b, struct conn *c, const msgpack_object *o,
    uint64_t now)
{
	const msgpack_object *a;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3)
		die("unexpected object from the daemon");
	a = o->via.array.ptr;
	if (a[0].via.u64 == 1 && o->via.array.size == 4) {
		const msgpack_object *e = &a[2];

		c->msgid = a[1].via.u64;
		if (e->type == MSGPACK_OBJECT_NIL)
			on_response(b, c, false, NULL, 0, now);
		else if (e->type == MSGPACK_OBJECT_ARRAY &&
		    e->via.array.size >= 1 &&
		    e->via.array.ptr[0].type == MSGPACK_OBJECT_STR)
			on_response(b, c, true, e->via.array.ptr[0].via.str.ptr,
			    e->via.array.ptr[0].via.str.size, now);
		else
			on_response(b, c, true, "?", 1, now);
		return;
	}
	if (a[0].via.u64 == 2 && a[2].type == MSGPACK_OBJECT_ARRAY) {
		const msgpack_object *pa = a[2].via.array.ptr;
		uint32_t pn = a[2].via.array.size;

		if (str_is(&a[1], "message") && pn == 3) {
			if (pa[2].type == MSGPACK_OBJECT_BIN)
				on_message(b, c, pa[2].via.bin.ptr,
				    pa[2].via.bin.size, now);
			else
				on_message(b, c, NULL, 0, now);
		} else if (str_is(&a[1], "down"))
			on_down(b, c, now);
		else if (str_is(&a[1], "error")) {
			if (pn >= 2 && pa[1].type == MSGPACK_OBJECT_STR)
				die("the daemon sent an error push: %.*s",
				    (int)pa[1].via.str.size, pa[1].via.str.ptr);
			die("the daemon sent an error push");
		}
		return;
	}
	die("unexpected object from the daemon");
}

/* One parsed RESP value (enough for replies and pubsub pushes). */
struct resp {
	char		 type;
	bool		 nil;
	const char	*s;		/* bulk or line */
	size_t		 len;
	int		 nel;		/* arrays: elements, first three kept */
	struct { char type; const char *s; size_t len; } el[3];
};

/*
 * Parse one value at p; returns its end, NULL when incomplete.  Nested
 * arrays are skipped.
 */
static const char *
resp_one(const char *p, const char *end, struct resp *r, int depth)
{
	const char *eol;
	long long n;

	if (p >= end)
		return NULL;
	if ((eol = memchr(p, '\r', (size_t)(end - p))) == NULL ||
	    eol + 1 >= end)
		return NULL;
	r->type = *p;
	r->nil = false;
	r->nel = 0;
	switch (*p) {
	case '+':
	case '-':
	case ':':
		r->s = p + 1;
		r->len = (size_t)(eol - p - 1);
		return eol + 2;
	case '$':
		n = strtoll(p + 1, NULL, 10);
		if (n < 0) {
			r->nil = true;
			return eol + 2;
		}
		if (end - (eol + 2) < n + 2)
			return NULL;
		r->s = eol + 2;
		r->len = (size_t)n;
		return eol + 2 + n + 2;
	case '*': {
		const char *q = eol + 2;

		n = strtoll(p + 1, NULL, 10);
		if (n < 0) {
			r->nil = true;
			return q;
		}
		if (depth > 8)
			die("redis reply nests too deeply");
		for (long long i = 0; i < n; i++) {
			struct resp e;

			if ((q = resp_one(q, end, &e, depth + 1)) == NULL)
				return NULL;
			if (i < 3) {
				r->el[i].type = e.type;
				r->el[i].s = e.s;
				r->el[i].len = e.nil ? 0 : e.len;
			}
		}
		r->nel = (int)n;
		return q;
	}
	default:
		die("malformed redis reply");
	}
}

static void
redis_value_cb(struct bench *b, struct conn *c, const struct resp *r,
    uint64_t now)
{
	if (r->type == '*' && r->nel == 3 && r->el[0].len == 7 &&
	    memcmp(r->el[0].s, "message", 7) == 0) {
		on_message(b, c, r->el[2].s, r->el[2].len, now);
		return;
	}
	if (r->type == '-')
		on_response(b, c, true, r->s, r->len, now);
	else if (c->role == R_LOAD && b->test == T_REGISTER && r->type == '$'
	    && r->nil)
		/* SET NX refused: the key existed */
		on_response(b, c, true, "exists", 6, now);
	else if (c->role == R_LOAD && b->test == T_SEND && r->type == ':' &&
	    r->len == 1 && r->s[0] == '0')
		on_response(b, c, true, "nosub", 5, now);
	else
		on_response(b, c, false, NULL, 0, now);
}

/*
 * A complete D-Bus message.  Signals (NameAcquired, NameLost) are not
 * replies.  RequestName and ReleaseName answer 1 when they did it.
 */
static void
dbus_msg_cb(struct bench *b, struct conn *c, const uint8_t *m, uint64_t now)
{
	const uint8_t *body;
	const char *e;
	size_t elen;
	uint32_t blen;

	switch (m[1]) {
	case DBUS_RETURN:
		if (c->role == R_SETUP || (c->role == R_LOAD &&
		    b->test == T_REGISTER)) {
			body = dbus_body(m, &blen);
			if (blen != 4 || dbus_get32(body) != 1) {
				on_response(b, c, true, "not-done", 8, now);
				return;
			}
		}
		on_response(b, c, false, NULL, 0, now);
		return;
	case DBUS_ERROR:
		dbus_error_name(m, &e, &elen);
		/* the miss test's answer, as nil is procreg's */
		if (c->role == R_LOAD && b->test == T_WHEREIS_MISS &&
		    elen == sizeof(dbus_no_owner) - 1 &&
		    memcmp(e, dbus_no_owner, elen) == 0)
			on_response(b, c, false, NULL, 0, now);
		else
			on_response(b, c, true, e, elen, now);
		return;
	default:
		return;
	}
}

/* One read, then every complete reply.  false at EOF. */
static bool
conn_read(struct bench *b, struct conn *c)
{
	uint64_t now;
	ssize_t n;

	if (b->mode == MODE_PROCREG) {
		msgpack_unpack_return ur;

		/* ask for little: ten thousand connections must not each grow
		 * a big buffer (the initial 16 KiB is read in one go) */
		if (!msgpack_unpacker_reserve_buffer(&c->up, 4096))
			die("out of memory");
		n = read(c->fd, msgpack_unpacker_buffer(&c->up),
		    msgpack_unpacker_buffer_capacity(&c->up));
		if (n <= 0)
			goto eof;
		now = now_ns();
		msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
		while ((ur = msgpack_unpacker_next(&c->up, &c->res)) ==
		    MSGPACK_UNPACK_SUCCESS)
			pr_object(b, c, &c->res.data, now);
		if (ur == MSGPACK_UNPACK_PARSE_ERROR)
			die("bad msgpack from the daemon");
		return true;
	}
	if (b->mode == MODE_ECHO) {
		static char sink[65536];
		size_t opsz = c->pool->opsz;

		n = read(c->fd, sink, sizeof(sink));
		if (n <= 0)
			goto eof;
		now = now_ns();
		c->rx += (uint64_t)n;
		while (c->rx >= opsz) {
			c->rx -= opsz;
			on_response(b, c, false, NULL, 0, now);
		}
		return true;
	}
	/* redis and D-Bus */
	rb_reserve(c, 4096);
	n = read(c->fd, c->rb + c->rlen, c->rcap - c->rlen);
	if (n <= 0)
		goto eof;
	now = now_ns();
	c->rlen += (size_t)n;
	if (b->mode == MODE_DBUS) {
		const uint8_t *p = (uint8_t *)c->rb;
		size_t left = c->rlen, len;

		while ((len = dbus_msg_len(p, left)) > 0) {
			dbus_msg_cb(b, c, p, now);
			p += len;
			left -= len;
		}
		c->rlen = left;
		memmove(c->rb, p, left);
	} else {
		const char *p = c->rb, *end = c->rb + c->rlen, *q;
		struct resp r;

		while ((q = resp_one(p, end, &r, 0)) != NULL) {
			redis_value_cb(b, c, &r, now);
			p = q;
		}
		c->rlen = (size_t)(end - p);
		memmove(c->rb, p, c->rlen);
	}
	return true;
eof:
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	return false;
}

/* ---- the load engine -------------------------------------------------- */

/* Issue ops until DEPTH are in flight: one writev. */
static void
refill(struct bench *b, struct conn *c)
{
	struct pool *p = c->pool;
	struct iovec iov[2];
	uint32_t k, first;
	uint64_t now;
	int cnt = 0;

	if (c->inflight >= c->depth || c->outlen > 0)
		return;
	k = c->depth - c->inflight;
	if (c->role == R_PROBE) {
		if (b->probe_stop)
			return;
	} else {
		if (b->issued >= b->n)
			return;
		if (k > b->n - b->issued)
			k = (uint32_t)(b->n - b->issued);
		b->issued += k;
	}
	now = now_ns();
	for (uint32_t i = 0; i < k; i++) {
		uint32_t slot = (c->head + c->inflight + i) % c->depth;

		c->t0[slot] = now;
		if (p->ts_off >= 0)
			memcpy(p->buf + (size_t)((c->pos + i) % p->nops) *
			    p->opsz + (size_t)p->ts_off, &now, sizeof(now));
	}
	first = p->nops - c->pos < k ? p->nops - c->pos : k;
	iov[cnt].iov_base = p->buf + (size_t)c->pos * p->opsz;
	iov[cnt++].iov_len = first * p->opsz;
	if (first < k) {
		iov[cnt].iov_base = p->buf;
		iov[cnt++].iov_len = (k - first) * p->opsz;
	}
	c->pos = (c->pos + k) % p->nops;
	c->inflight += k;
	conn_writev(b, c, iov, cnt);
}

static void
op_complete(struct bench *b, struct conn *c, uint64_t now)
{
	uint64_t t0 = c->t0[c->head];

	c->head = (c->head + 1) % c->depth;
	c->inflight--;
	c->partial = 0;
	if (c->role == R_PROBE) {
		lat_add(&b->plat, now - t0);
		return;
	}
	b->done++;
	if (!b->lat_on_delivery)
		lat_add(&b->lat, now - t0);
}

static void monitor_response(struct bench *, struct conn *, bool, uint64_t);
static void creg_response(struct bench *, struct conn *, bool, const char *,
    size_t, uint64_t);

static void
on_response(struct bench *b, struct conn *c, bool err, const char *code,
    size_t codelen, uint64_t now)
{
	switch (c->role) {
	case R_SETUP:
	case R_SINK:
		c->got++;
		if (err) {
			b->errors++;
			if (!b->quiet)
				fprintf(stderr, "procreg-bench: set-up call "
				    "failed: %.*s\n", (int)codelen, code);
		}
		return;
	case R_OWNER:
	case R_WATCHER:
		c->got++;
		if (err)
			b->errors++;
		if (b->test == T_MONITOR)
			monitor_response(b, c, err, now);
		return;
	case R_CREG:
		creg_response(b, c, err, code, codelen, now);
		return;
	case R_LOAD:
	case R_PROBE:
		break;
	}
	if (c->inflight == 0)
		die("a reply with no request in flight");
	if (err) {
		if (c->role == R_LOAD)
			b->errors++;
		if (codelen == 4 && memcmp(code, "busy", 4) == 0)
			b->busy++;
	} else if (b->test == T_SEND && c->role == R_LOAD)
		b->accepted++;
	if (++c->partial == c->pool->rpo)
		op_complete(b, c, now);
}

static void
on_message(struct bench *b, struct conn *c, const void *payload, size_t len,
    uint64_t now)
{
	uint64_t t0;

	if (c->role != R_SINK)
		die("a message to a connection that is not the sink");
	b->delivered++;
	b->last_delivery = now;
	if (payload != NULL && len >= sizeof(t0) && b->lat_on_delivery) {
		memcpy(&t0, payload, sizeof(t0));
		lat_add(&b->lat, now - t0);
	}
}

static void monitor_down(struct bench *, struct conn *, uint64_t);

static void
on_down(struct bench *b, struct conn *c, uint64_t now)
{
	c->downs++;
	b->downs++;
	if (b->test == T_MONITOR && c->role == R_WATCHER)
		monitor_down(b, c, now);
	else if (b->test == T_PURGE)
		c->got++;
}

/* Run the loop until done() or the timeout; false on timeout. */
static bool
loop_until(struct bench *b, bool (*done)(struct bench *), double secs)
{
	struct epoll_event ev[256];
	uint64_t deadline = now_ns() + (uint64_t)(secs * 1e9);

	while (!done(b)) {
		int n = epoll_wait(b->ep, ev, 256, 100);

		if (stop_signal)
			die("interrupted");
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (ev[i].events & EPOLLOUT) {
				conn_flush_out(b, c);
				if (c->role == R_LOAD || c->role == R_PROBE)
					refill(b, c);
			}
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				if (!conn_read(b, c))
					die("the server closed a connection");
				if (c->role == R_LOAD || c->role == R_PROBE)
					refill(b, c);
			}
		}
		if (now_ns() > deadline)
			return false;
	}
	return true;
}

/* Wait for c->got to reach target, serving every connection meanwhile. */
static struct conn *wait_conn;
static uint64_t wait_target;

static bool
wait_done(struct bench *b)
{
	(void)b;
	return wait_conn->got >= wait_target;
}

static void
wait_replies(struct bench *b, struct conn *c, uint64_t target)
{
	wait_conn = c;
	wait_target = target;
	if (!loop_until(b, wait_done, b->timeout))
		die("timed out waiting for set-up replies");
}

/*
 * Send nreq pre-encoded requests in windows of 1024, wait for replies.
 * Cluster registers go in windows of 64: each is an etcd transaction on
 * a connection of its own, and the daemon sends them all at once (a few
 * thousand at once time out in etcd's queue).
 */
static void
setup_calls(struct bench *b, struct conn *c, uint64_t nreq,
    void (*enc)(struct bench *, msgpack_sbuffer *, uint64_t, void *),
    void *arg)
{
	msgpack_sbuffer sb;
	uint64_t i = 0, win = b->cluster ? 64 : 1024;

	msgpack_sbuffer_init(&sb);
	while (i < nreq) {
		uint64_t k = nreq - i < win ? nreq - i : win;

		sb.size = 0;
		for (uint64_t j = 0; j < k; j++)
			enc(b, &sb, i + j, arg);
		conn_write(b, c, sb.data, sb.size);
		i += k;
		/* keep up to two windows in flight */
		if (c->got + 2 * win < i)
			wait_replies(b, c, i - win);
	}
	wait_replies(b, c, nreq);
	msgpack_sbuffer_destroy(&sb);
}

static void
enc_preload(struct bench *b, msgpack_sbuffer *sb, uint64_t i, void *arg)
{
	uint64_t base = *(uint64_t *)arg;
	char name[32];

	if (b->mode == MODE_DBUS) {
		dbus_name(name, sizeof(name), 'n', base + i);
		enc_dbus_call(sb, dbus_serial(i), "RequestName", name, true,
		    DBUS_NAME_DO_NOT_QUEUE);
		return;
	}
	name_hit(name, sizeof(name), base + i);
	if (b->mode == MODE_REDIS) {
		const char *argv[3] = { "SET", name, redis_value };
		size_t lens[3] = { 3, strlen(name), sizeof(redis_value) - 1 };

		enc_resp(sb, 3, argv, lens);
	} else
		enc_register(b, sb, 1, name);
}

/* Register names n0000000.. over the holders (or SET them in Redis). */
static void
preload(struct bench *b)
{
	uint64_t t0 = now_ns(), per;
	unsigned h = b->holders;

	if (b->names == 0 || b->preloaded || b->mode == MODE_ECHO)
		return;
	if (b->mode == MODE_REDIS)
		h = 1;	/* keys outlive the connection */
	if (h == 0)
		h = (unsigned)((b->names + 99999) / 100000);
	if (h < 4 && b->mode == MODE_PROCREG)
		h = 4;
	if (h > b->names)
		h = (unsigned)b->names;
	b->holder = xmalloc(h * sizeof(*b->holder));
	b->nholder = h;
	per = (b->names + h - 1) / h;
	for (unsigned i = 0; i < h; i++) {
		uint64_t base = (uint64_t)i * per;
		uint64_t cnt = base >= b->names ? 0 : (b->names - base < per ?
		    b->names - base : per);

		b->holder[i] = conn_open(b, R_SETUP, i);
		setup_calls(b, b->holder[i], cnt, enc_preload, &base);
	}
	if (b->errors)
		die("%" PRIu64 " set-up calls failed (names already "
		    "registered? use --preloaded%s)", b->errors, b->cluster ?
		    "; or not a cluster node" : "");
	if (!b->quiet)
		fprintf(stderr, "procreg-bench: %s %" PRIu64 " names over %u "
		    "connection(s) in %.2f s\n", b->mode == MODE_REDIS ?
		    "SET" : b->mode == MODE_DBUS ? "requested" : "registered", b->names, h,
		    (double)(now_ns() - t0) / 1e9);
}

/* ---- reporting -------------------------------------------------------- */

static bool csv_header_done;

/* This process's own CPU time, to show that the client is not the
 * bottleneck. */
static double
self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
report(struct bench *b, const char *test, const char *unit, uint64_t ops,
    double secs, uint64_t ticks, struct lat *l, bool timed_out)
{
	const char *target = b->mode == MODE_REDIS ? "redis" :
	    b->mode == MODE_ECHO ? "echo" : b->mode == MODE_DBUS ? "dbus" :
	    "procreg";
	double rate = secs > 0 ? (double)ops / secs : 0;
	double cpu_s = (double)ticks / (double)b->hz;
	double cpu_us = ops ? cpu_s * 1e6 / (double)ops : 0;
	double cpu_pct = secs > 0 ? 100.0 * cpu_s / secs : 0;
	double client_pct = secs > 0 ? 100.0 * (self_cpu_s() - b->self0) /
	    secs : 0;

	qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
	if (b->csv) {
		if (!csv_header_done)
			printf("target,test,conns,depth,names,ops,unit,secs,"
			    "ops_per_s,p50_us,p99_us,p999_us,max_us,"
			    "cpu_us_per_op,cpu_pct,errors,connect_ms,"
			    "timed_out,client_cpu_pct\n");
		csv_header_done = true;
		printf("%s,%s,%u,%u,%" PRIu64 ",%" PRIu64 ",%s,%.3f,%.0f,%.1f,"
		    "%.1f,%.1f,%.1f,%.3f,%.1f,%" PRIu64 ",%.1f,%d,%.1f\n",
		    target, test, b->conns, b->depth, b->names, ops, unit, secs,
		    rate, pct(l, .5), pct(l, .99), pct(l, .999), pct(l, 1),
		    cpu_us, cpu_pct, b->errors, b->connect_ms, timed_out,
		    client_pct);
	} else {
		printf("%-8s %-13s c=%-5u P=%-3u %9" PRIu64 " %-9s %9.0f/s  "
		    "p50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  max %8.1f us"
		    "  daemon %6.3f us/%s (%3.0f%% cpu)", target, test,
		    b->conns, b->depth, ops, unit, rate, pct(l, .5),
		    pct(l, .99), pct(l, .999), pct(l, 1), cpu_us,
		    strcmp(unit, "requests") == 0 ? "req" : unit, cpu_pct);
		printf("  client %3.0f%% cpu", client_pct);
		if (b->errors)
			printf("  errors %" PRIu64, b->errors);
		if (b->busy)
			printf(" (busy %" PRIu64 ")", b->busy);
		if (b->connect_ms > 0)
			printf("  connect %.1f ms", b->connect_ms);
		if (timed_out)
			printf("  TIMED OUT");
		putchar('\n');
	}
	fflush(stdout);
}

static void
reset_counters(struct bench *b)
{
	b->issued = b->done = b->accepted = b->delivered = b->errors = 0;
	b->busy = b->downs = 0;
	b->lat.n = b->plat.n = b->lat_reg.n = b->lat_unreg.n = 0;
	b->lat_on_delivery = false;
	b->connect_ms = 0;
}

/* ---- tests ------------------------------------------------------------ */

static bool
load_done(struct bench *b)
{
	if (b->done < b->n)
		return false;
	if (b->test == T_SEND)
		return b->delivered >= b->accepted;
	return true;
}

static void
enc_subscribe(struct bench *b, msgpack_sbuffer *sb, uint64_t i, void *arg)
{
	(void)i;
	(void)arg;
	if (b->mode == MODE_REDIS)
		enc_resp2(sb, "SUBSCRIBE", sink_name);
	else
		enc_call1(sb, "register", sink_name);
}

static struct pool *
shared_pool(struct bench *b, bool miss)
{
	struct pool *p = miss ? &b->shared_miss : &b->shared_hit;

	if (p->buf == NULL) {
		uint32_t nops = 262144;

		if (nops > b->n * 2 + 64)
			nops = (uint32_t)(b->n * 2 + 64);
		pool_build(b, p, nops, 1, enc_whereis_op, miss ? p : NULL);
		p->shared = true;
	}
	return p;
}

static void run_creg(struct bench *);

static void
run_load(struct bench *b, enum test t)
{
	struct conn **cs, *sink = NULL;
	uint64_t t0, t1, k0, k1, ops;
	const char *name, *unit = "requests";
	bool ok;

	reset_counters(b);
	b->test = t;
	name = b->mode == MODE_REDIS ? redis_names[t] :
	    b->mode == MODE_DBUS ? dbus_names[t] : test_names[t];
	if (b->mode == MODE_ECHO) {
		if (t != T_WHEREIS && t != T_CONNS)
			return;
		name = t == T_CONNS ? "conns-echo" : "echo";
	}
	if (name == NULL)
		return;
	if (t == T_REGISTER && b->cluster && b->mode == MODE_PROCREG) {
		run_creg(b);
		return;
	}
	if (t == T_REGISTER)
		unit = "pairs";
	if (t == T_SEND) {
		unit = "delivered";
		b->lat_on_delivery = true;
		sink = conn_open(b, R_SINK, 0);
		setup_calls(b, sink, 1, enc_subscribe, NULL);
		if (b->errors)
			die("cannot set up the sink");
	}
	cs = xmalloc(b->conns * sizeof(*cs));
	t0 = now_ns();
	for (unsigned i = 0; i < b->conns; i++) {
		struct conn *c = cs[i] = conn_open(b, R_LOAD, i);

		c->depth = b->depth;
		c->t0 = xmalloc(c->depth * sizeof(*c->t0));
		if (t == T_WHEREIS || t == T_WHEREIS_MISS || t == T_CONNS) {
			c->pool = shared_pool(b, t == T_WHEREIS_MISS);
			c->pos = (uint32_t)(rnd(b) % c->pool->nops);
		} else {
			uint32_t nops = t == T_SEND ? b->depth : 4096;
			uint64_t per = b->n / b->conns + 1;

			if (t == T_REGISTER && nops > per + b->depth)
				nops = (uint32_t)(per + b->depth);
			c->pool = calloc(1, sizeof(*c->pool));
			if (c->pool == NULL)
				die("out of memory");
			pool_build(b, c->pool, nops, t == T_REGISTER ? 2 : 1,
			    t == T_SEND ? enc_send_op : enc_register_op, c);
			if (t == T_SEND)	/* RESP ends with CRLF */
				c->pool->ts_off = (int)(c->pool->opsz - b->dsz -
				    (b->mode == MODE_REDIS ? 2 : 0));
		}
	}
	if (t == T_CONNS)
		b->connect_ms = (double)(now_ns() - t0) / 1e6;
	t0 = now_ns();
	k0 = daemon_ticks(b);
	b->self0 = self_cpu_s();
	for (unsigned i = 0; i < b->conns; i++)
		refill(b, cs[i]);
	ok = loop_until(b, load_done, b->timeout);
	t1 = t == T_SEND ? b->last_delivery : now_ns();
	k1 = daemon_ticks(b);
	ops = t == T_SEND ? b->delivered : b->done;
	report(b, name, unit, ops, (double)(t1 - t0) / 1e9, k1 - k0, &b->lat,
	    !ok);
	for (unsigned i = 0; i < b->conns; i++)
		conn_close(b, cs[i]);
	conn_close(b, sink);
	free(cs);
}

/*
 * register with --scope cluster: each connection keeps DEPTH chains
 * going; a chain registers a fresh cluster name (r<conn>.<seq>), sends
 * its unregister when the register's answer comes and starts the next
 * when the unregister's does.  The msgid (the slot + 1) says which chain
 * a reply belongs to.  Reported: pairs with their latency, and a row each
 * for the register's and the unregister's own latency.
 */
static void
creg_send(struct bench *b, struct conn *c, uint32_t slot, bool unreg)
{
	struct creg_slot *s = &c->slots[slot];
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	if (unreg) {
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint32(&pk, 0);
		msgpack_pack_uint32(&pk, slot + 1);
		pk_str(&pk, "unregister");
		msgpack_pack_array(&pk, 1);
		pk_str(&pk, s->name);
	} else
		enc_register(b, &sb, slot + 1, s->name);
	s->unreg = unreg;
	s->busy = true;
	if (unreg)
		s->t1 = now_ns();
	else
		s->t0 = now_ns();
	conn_write(b, c, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* Start the next chain in slot, if any is left to issue. */
static void
creg_next(struct bench *b, struct conn *c, uint32_t slot)
{
	struct creg_slot *s = &c->slots[slot];

	s->busy = false;
	if (b->issued >= b->n)
		return;
	b->issued++;
	snprintf(s->name, sizeof(s->name), "r%05u.%07" PRIu64,
	    c->idx % 100000, c->seq++ % 10000000);
	creg_send(b, c, slot, false);
}

static void
creg_response(struct bench *b, struct conn *c, bool err, const char *code,
    size_t codelen, uint64_t now)
{
	struct creg_slot *s;

	if (c->msgid == 0 || c->msgid > c->depth ||
	    !c->slots[c->msgid - 1].busy)
		die("register: a reply to no request in flight");
	s = &c->slots[c->msgid - 1];
	if (err) {
		b->errors++;
		if (codelen == 4 && memcmp(code, "busy", 4) == 0)
			b->busy++;
		if (!b->quiet && b->errors <= 5)
			fprintf(stderr, "procreg-bench: %s of %s: %.*s\n",
			    s->unreg ? "unregister" : "register", s->name,
			    (int)codelen, code);
	}
	if (!s->unreg) {
		lat_add(&b->lat_reg, now - s->t0);
		if (!err) {
			creg_send(b, c, (uint32_t)(c->msgid - 1), true);
			return;
		}
	} else
		lat_add(&b->lat_unreg, now - s->t1);
	lat_add(&b->lat, now - s->t0);
	b->done++;
	creg_next(b, c, (uint32_t)(c->msgid - 1));
}

static void
run_creg(struct bench *b)
{
	struct conn **cs = xmalloc(b->conns * sizeof(*cs));
	uint64_t t0, t1, k0, k1;
	bool ok;

	reset_counters(b);
	b->test = T_REGISTER;
	for (unsigned i = 0; i < b->conns; i++) {
		cs[i] = conn_open(b, R_CREG, i);
		cs[i]->depth = b->depth;
		cs[i]->slots = calloc(b->depth, sizeof(*cs[i]->slots));
		if (cs[i]->slots == NULL)
			die("out of memory");
	}
	t0 = now_ns();
	k0 = daemon_ticks(b);
	b->self0 = self_cpu_s();
	for (unsigned i = 0; i < b->conns; i++)
		for (uint32_t j = 0; j < b->depth; j++)
			creg_next(b, cs[i], j);
	ok = loop_until(b, load_done, b->timeout);
	t1 = now_ns();
	k1 = daemon_ticks(b);
	report(b, "register-cluster", "pairs", b->done,
	    (double)(t1 - t0) / 1e9, k1 - k0, &b->lat, !ok);
	/* the two halves' own latencies (no CPU figure of their own) */
	report(b, "register-cluster:reg", "pairs", b->done,
	    (double)(t1 - t0) / 1e9, 0, &b->lat_reg, !ok);
	report(b, "register-cluster:unreg", "pairs", b->done,
	    (double)(t1 - t0) / 1e9, 0, &b->lat_unreg, !ok);
	for (unsigned i = 0; i < b->conns; i++)
		conn_close(b, cs[i]);
	free(cs);
}

/*
 * monitor: per pair of connections (owner, watcher), cycles of: the owner
 * registers DEPTH names, the watcher monitors them, the owner unregisters
 * them, the watcher receives DEPTH downs.  An op is one monitor fired; its
 * latency runs from the unregister batch's write to the down's arrival.
 */
enum { PH_REG, PH_MON, PH_UNREG };

static void
enc_mon_name(char *buf, size_t sz, const struct conn *owner, uint32_t j)
{
	snprintf(buf, sz, "mon%05u.%04u", owner->idx % 100000, j % 10000);
}

static void
monitor_batch(struct bench *b, struct conn *owner, const char *method,
    struct conn *to)
{
	msgpack_sbuffer sb;
	char name[32];

	msgpack_sbuffer_init(&sb);
	for (uint32_t j = 0; j < owner->depth; j++) {
		enc_mon_name(name, sizeof(name), owner, j);
		enc_call1(&sb, method, name);
	}
	conn_write(b, to, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	(void)b;
}

static void
monitor_step(struct bench *b, struct conn *o, uint64_t now)
{
	struct conn *w = o->peer;

	if (o->pending > 0)
		return;
	switch (o->phase) {
	case PH_REG:
		o->phase = PH_MON;
		o->pending = o->depth;
		monitor_batch(b, o, "monitor", w);
		break;
	case PH_MON:
		o->phase = PH_UNREG;
		o->pending = 2 * o->depth;	/* unregister replies + downs */
		o->phase_t0 = now_ns();
		monitor_batch(b, o, "unregister", o);
		break;
	case PH_UNREG:
		if (b->issued >= b->n)
			return;
		b->issued += o->depth;
		o->phase = PH_REG;
		o->pending = o->depth;
		monitor_batch(b, o, "register", o);
		break;
	}
	(void)now;
}

static void
monitor_response(struct bench *b, struct conn *c, bool err, uint64_t now)
{
	struct conn *o = c->role == R_OWNER ? c : c->peer;

	(void)err;
	if (o->pending == 0)
		die("monitor test: unexpected reply");
	o->pending--;
	monitor_step(b, o, now);
}

static void
monitor_down(struct bench *b, struct conn *w, uint64_t now)
{
	struct conn *o = w->peer;

	if (o->phase != PH_UNREG || o->pending == 0)
		die("monitor test: unexpected down");
	b->done++;
	lat_add(&b->lat, now - o->phase_t0);
	o->pending--;
	monitor_step(b, o, now);
}

static bool
monitor_done(struct bench *b)
{
	return b->done >= b->issued && b->issued >= b->n;
}

static void
run_monitor(struct bench *b)
{
	unsigned np = b->conns;
	struct conn **os = xmalloc(np * sizeof(*os));
	struct conn **ws = xmalloc(np * sizeof(*ws));
	uint64_t t0, t1, k0, k1;
	bool ok;

	if (b->mode != MODE_PROCREG)
		return;
	reset_counters(b);
	b->test = T_MONITOR;
	for (unsigned i = 0; i < np; i++) {
		os[i] = conn_open(b, R_OWNER, i);
		ws[i] = conn_open(b, R_WATCHER, i);
		os[i]->peer = ws[i];
		ws[i]->peer = os[i];
		os[i]->depth = b->depth;
		os[i]->phase = PH_UNREG;	/* so that the step starts REG */
	}
	t0 = now_ns();
	k0 = daemon_ticks(b);
	b->self0 = self_cpu_s();
	for (unsigned i = 0; i < np; i++)
		monitor_step(b, os[i], t0);
	ok = loop_until(b, monitor_done, b->timeout);
	t1 = now_ns();
	k1 = daemon_ticks(b);
	report(b, "monitor", "fired", b->done, (double)(t1 - t0) / 1e9,
	    k1 - k0, &b->lat, !ok);
	for (unsigned i = 0; i < np; i++) {
		conn_close(b, os[i]);
		conn_close(b, ws[i]);
	}
	free(os);
	free(ws);
}

/*
 * purge: a connection holding purge_names names, purge_monitors monitors
 * on them spread over purge_watchers other connections; the holder closes.
 * Reported: the time from close() to the last down, and to a whereis of
 * one of its names answering nil.  With --probe, another connection runs
 * whereis at depth 1 (random names among --names) throughout, and its
 * latencies for requests that overlapped the purge are reported.
 */
static void
enc_purge_name(char *buf, size_t sz, uint64_t i)
{
	snprintf(buf, sz, "pg%07" PRIu64, i);
}

static void
enc_purge_reg(struct bench *b, msgpack_sbuffer *sb, uint64_t i, void *arg)
{
	char name[32];

	(void)b;
	(void)arg;
	enc_purge_name(name, sizeof(name), i);
	enc_call1(sb, "register", name);
}

struct mon_arg {
	uint64_t	 first, step;
};

static void
enc_purge_mon(struct bench *b, msgpack_sbuffer *sb, uint64_t i, void *arg)
{
	const struct mon_arg *m = arg;
	char name[32];

	enc_purge_name(name, sizeof(name),
	    ((m->first + i) * m->step) % b->purge_names);
	enc_call1(sb, "monitor", name);
}

static bool
purge_downs_done(struct bench *b)
{
	return b->downs >= b->purge_monitors;
}

static struct conn *probe_conn;

static bool
probe_count(struct bench *b)
{
	return b->plat.n >= wait_target;
}

static bool
probe_idle(struct bench *b)
{
	(void)b;
	return probe_conn->inflight == 0;
}

static void
run_purge(struct bench *b)
{
	struct conn *h, **ws, *probe = NULL;
	uint64_t t0, t_downs, t_gone, k0, k1, per, probe_before = 0;
	unsigned nw = b->purge_watchers;
	char name[32];
	msgpack_sbuffer sb;
	bool ok;

	if (b->mode != MODE_PROCREG)
		return;
	reset_counters(b);
	b->test = T_PURGE;
	if (nw == 0)
		nw = 1;
	h = conn_open(b, R_SETUP, 0);
	t0 = now_ns();
	setup_calls(b, h, b->purge_names, enc_purge_reg, NULL);
	if (b->errors)
		die("purge: cannot register %" PRIu64 " names (start the "
		    "daemon with --max-names %" PRIu64 " or more)",
		    b->purge_names, b->purge_names);
	if (!b->quiet)
		fprintf(stderr, "procreg-bench: purge: %" PRIu64 " names "
		    "registered in %.2f s\n", b->purge_names,
		    (double)(now_ns() - t0) / 1e9);
	ws = xmalloc(nw * sizeof(*ws));
	per = (b->purge_monitors + nw - 1) / nw;
	for (unsigned i = 0; i < nw; i++) {
		struct mon_arg m;
		uint64_t first = (uint64_t)i * per;
		uint64_t cnt = first >= b->purge_monitors ? 0 :
		    (b->purge_monitors - first < per ?
		    b->purge_monitors - first : per);

		m.first = first;
		/* spread the monitors over the names */
		m.step = b->purge_monitors ?
		    (b->purge_names / b->purge_monitors) : 1;
		if (m.step == 0)
			m.step = 1;
		ws[i] = conn_open(b, R_SETUP, i);
		setup_calls(b, ws[i], cnt, enc_purge_mon, &m);
		ws[i]->role = R_WATCHER;
		ws[i]->got = 0;
	}
	if (b->errors)
		die("purge: monitor failed");
	if (b->probe) {
		probe = probe_conn = conn_open(b, R_PROBE, 0);
		probe->depth = 1;
		probe->t0 = xmalloc(sizeof(*probe->t0));
		probe->pool = shared_pool(b, b->names == 0);
		b->probe_stop = false;
		refill(b, probe);
		/* warm up: 2000 requests before the purge */
		wait_target = 2000;
		if (!loop_until(b, probe_count, b->timeout))
			die("purge: the probe does not get replies");
	}
	/* The purge: close the holder. */
	t0 = now_ns();
	k0 = daemon_ticks(b);
	b->self0 = self_cpu_s();
	probe_before = b->plat.n;
	epoll_ctl(b->ep, EPOLL_CTL_DEL, h->fd, NULL);
	close(h->fd);
	h->fd = -1;
	ok = loop_until(b, purge_downs_done, b->timeout);
	t_downs = now_ns();
	/* the names are gone: whereis of the last one answers nil */
	msgpack_sbuffer_init(&sb);
	enc_purge_name(name, sizeof(name), b->purge_names - 1);
	enc_call1(&sb, "whereis", name);
	ws[0]->role = R_SETUP;
	ws[0]->got = 0;
	conn_write(b, ws[0], sb.data, sb.size);
	wait_replies(b, ws[0], 1);
	t_gone = now_ns();
	k1 = daemon_ticks(b);
	msgpack_sbuffer_destroy(&sb);
	{
		struct lat one = { &(uint64_t){ t_downs - t0 }, 1, 1 };
		char label[64];

		snprintf(label, sizeof(label), "purge-%" PRIu64 "n-%" PRIu64
		    "m", b->purge_names, b->purge_monitors);
		b->conns = nw;
		b->depth = 1;
		report(b, label, "downs", b->downs, (double)(t_downs - t0) / 1e9,
		    k1 - k0, &one, !ok);
		if (!b->csv)
			printf("         purge: last down after %.2f ms, names "
			    "gone (whereis nil) after %.2f ms\n",
			    (double)(t_downs - t0) / 1e6,
			    (double)(t_gone - t0) / 1e6);
	}
	if (probe != NULL) {
		/* the probe's samples from the close to the end of the purge,
		 * plus the one in flight at the end */
		uint64_t after = b->plat.n;
		struct lat w;

		wait_target = after + 200;
		loop_until(b, probe_count, b->timeout);
		b->probe_stop = true;
		loop_until(b, probe_idle, b->timeout);
		w.v = b->plat.v + probe_before;
		w.n = after + 1 - probe_before;
		w.cap = 0;
		b->errors = 0;
		b->conns = 1;
		b->self0 = self_cpu_s();	/* not measured for the probe */
		report(b, "purge-probe-whereis", "requests", w.n,
		    (double)(t_gone - t0) / 1e9, 0, &w, false);
		conn_close(b, probe);
	}
	h->fd = -1;
	free(h->t0);
	msgpack_unpacked_destroy(&h->res);
	msgpack_unpacker_destroy(&h->up);
	free(h->out);
	free(h);
	for (unsigned i = 0; i < nw; i++)
		conn_close(b, ws[i]);
	free(ws);
}

/* ---- main ------------------------------------------------------------- */

static void
usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: procreg-bench [-s SOCKET] [-c CONNS] [-P DEPTH] [-n REQUESTS]\n"
"                     [-d PAYLOAD_BYTES] [-t TESTS] [--names N] [--csv]\n"
"                     [--pid PID] [--redis | --echo | --dbus] [more options]\n"
"\n"
"  -s SOCKET       Unix socket (default $PROCREG_SOCKET)\n"
"  -c CONNS        load connections (default 50)\n"
"  -P DEPTH        operations in flight per connection (default 1)\n"
"  -n REQUESTS     operations per test (default 100000)\n"
"  -d BYTES        send/PUBLISH payload size, at least 8 (default 16)\n"
"  -t TESTS        comma list: whereis,whereis-miss,register,send,monitor,\n"
"                  purge,conns, or none (default whereis,whereis-miss,\n"
"                  register,send); Redis names get,get-miss,setnx-del,\n"
"                  publish and D-Bus names getnameowner,getnameowner-miss,\n"
"                  request-release,conns-getnameowner are accepted too\n"
"  --names N       pre-register N names n0000000.. (Redis: SET N keys);\n"
"                  whereis/GET pick random names among them (default 1000)\n"
"  --holders H     connections holding the names (default N/100000, >= 4)\n"
"  --preloaded     the names are already there (held by --hold elsewhere)\n"
"  --hold          register the names, print 'ready', hold until SIGTERM\n"
"  --pid PID       daemon pid for CPU time (default: SO_PEERCRED; none\n"
"                  for --dbus, where that is the launcher's)\n"
"  --redis         drive redis-server: GET, SET NX+DEL, PUBLISH\n"
"  --echo          drive the echo floor with whereis-sized requests\n"
"  --dbus          drive a D-Bus broker's driver: GetNameOwner, RequestName\n"
"                  (DO_NOT_QUEUE) + ReleaseName; names bench.n0000000..\n"
"  --purge-names N, --purge-monitors M, --purge-watchers W\n"
"                  purge test shape (default 100000, 10000, 10)\n"
"  --probe         purge: a whereis client at depth 1 during the purge\n"
"  --scope SCOPE   local (default) or cluster: register the --names names\n"
"                  (and the register test's) as cluster names on a daemon\n"
"                  that is a cluster node; whereis stays [name]; with\n"
"                  cluster, register chains each register and unregister,\n"
"                  DEPTH chains per connection (monitor, purge: local only)\n"
"  --prefix P      the --names names are P0000000.. (default n)\n"
"  --timeout S     give up on a test after S seconds (default 120)\n"
"  --seed S        random seed\n"
"  --csv           CSV output\n"
"  -q              quiet set-up messages\n"
"\n"
"Units: whereis/send/echo count requests (send: messages delivered to the\n"
"receiving connection); register counts register+unregister pairs\n"
"(Redis: SET NX + DEL pairs, D-Bus: RequestName + ReleaseName pairs);\n"
"monitor counts monitors fired (each one a register, monitor, unregister\n"
"and down); purge counts downs.  Daemon CPU is utime+stime from\n"
"/proc/PID/stat over the test, per unit.\n");
	exit(status);
}

static uint64_t
num(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0')
		die("bad %s: %s", what, s);
	return v;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_signal = 1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "names", required_argument, NULL, 'N' },
		{ "holders", required_argument, NULL, 'H' },
		{ "preloaded", no_argument, NULL, 'L' },
		{ "hold", no_argument, NULL, 'O' },
		{ "pid", required_argument, NULL, 'p' },
		{ "redis", no_argument, NULL, 'R' },
		{ "echo", no_argument, NULL, 'E' },
		{ "dbus", no_argument, NULL, 'D' },
		{ "csv", no_argument, NULL, 'C' },
		{ "purge-names", required_argument, NULL, 1 },
		{ "purge-monitors", required_argument, NULL, 2 },
		{ "purge-watchers", required_argument, NULL, 3 },
		{ "probe", no_argument, NULL, 4 },
		{ "timeout", required_argument, NULL, 5 },
		{ "seed", required_argument, NULL, 6 },
		{ "scope", required_argument, NULL, 7 },
		{ "prefix", required_argument, NULL, 8 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct bench bb, *b = &bb;
	const char *tests = "whereis,whereis-miss,register,send";
	bool want[T_NTESTS] = { false };
	struct rlimit rl;
	char *list, *tok, *save;
	int opt;

	memset(b, 0, sizeof(*b));
	b->mode = MODE_PROCREG;
	b->sock = getenv("PROCREG_SOCKET");
	b->conns = 50;
	b->depth = 1;
	b->n = 100000;
	b->dsz = 16;
	b->names = 1000;
	b->timeout = 120;
	b->purge_names = 100000;
	b->purge_monitors = 10000;
	b->purge_watchers = 10;
	b->seed = 0x9e3779b97f4a7c15ull;
	while ((opt = getopt_long(argc, argv, "s:c:P:n:d:t:qh", longopts,
	    NULL)) != -1) {
		switch (opt) {
		case 's': b->sock = optarg; break;
		case 'c': b->conns = (unsigned)num(optarg, "-c"); break;
		case 'P': b->depth = (unsigned)num(optarg, "-P"); break;
		case 'n': b->n = num(optarg, "-n"); break;
		case 'd': b->dsz = num(optarg, "-d"); break;
		case 't': tests = optarg; break;
		case 'q': b->quiet = true; break;
		case 'N': b->names = num(optarg, "--names"); break;
		case 'H': b->holders = (unsigned)num(optarg, "--holders");
			break;
		case 'L': b->preloaded = true; break;
		case 'O': b->hold = true; break;
		case 'p': b->pid = (pid_t)num(optarg, "--pid"); break;
		case 'R': b->mode = MODE_REDIS; break;
		case 'E': b->mode = MODE_ECHO; break;
		case 'D': b->mode = MODE_DBUS; break;
		case 'C': b->csv = true; break;
		case 1: b->purge_names = num(optarg, "--purge-names"); break;
		case 2: b->purge_monitors = num(optarg, "--purge-monitors");
			break;
		case 3: b->purge_watchers = (unsigned)num(optarg,
			    "--purge-watchers");
			break;
		case 4: b->probe = true; break;
		case 5: b->timeout = (double)num(optarg, "--timeout"); break;
		case 6: b->seed = num(optarg, "--seed") | 1; break;
		case 7:
			if (strcmp(optarg, "cluster") == 0)
				b->cluster = true;
			else if (strcmp(optarg, "local") != 0)
				die("--scope: local or cluster");
			break;
		case 8:
			if (*optarg == '\0' || strlen(optarg) > 16)
				die("--prefix: 1 to 16 bytes");
			name_prefix = optarg;
			break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	if (b->sock == NULL || *b->sock == '\0')
		die("no socket: give -s SOCKET or set PROCREG_SOCKET");
	if (b->conns == 0 || b->depth == 0 || b->n == 0)
		die("-c, -P and -n must be positive");
	if (b->dsz < 8)
		b->dsz = 8;
	if (b->purge_names == 0)
		die("--purge-names must be positive");
	if (b->purge_monitors > b->purge_names)
		die("--purge-monitors must not exceed --purge-names");
	list = strdup(tests);
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		int i;

		if (strcmp(tok, "none") == 0)
			continue;	/* set-up only (--names, --hold) */
		for (i = 0; i < T_NTESTS; i++)
			if (strcmp(tok, test_names[i]) == 0 ||
			    (redis_names[i] && strcmp(tok, redis_names[i]) == 0) ||
			    (dbus_names[i] && strcmp(tok, dbus_names[i]) == 0))
				break;
		if (i == T_NTESTS)
			die("unknown test: %s", tok);
		want[i] = true;
	}
	free(list);
	if (b->cluster && b->mode != MODE_PROCREG)
		die("--scope cluster is for procregd");
	if (b->cluster && (want[T_MONITOR] || want[T_PURGE]))
		die("monitor and purge register local names only");
	b->rng = b->seed;
	b->hz = sysconf(_SC_CLK_TCK);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* ten thousand connections need descriptors */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((b->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	preload(b);
	if (b->hold) {
		printf("ready %" PRIu64 " names pid %d rss %" PRIu64 "\n",
		    b->names, (int)b->pid, daemon_rss(b));
		fflush(stdout);
		while (!stop_signal)
			pause();
		return 0;
	}
	for (int i = 0; i < T_NTESTS; i++) {
		if (!want[i])
			continue;
		switch (i) {
		case T_MONITOR:
			run_monitor(b);
			break;
		case T_PURGE:
			run_purge(b);
			break;
		case T_CONNS:
			run_load(b, T_CONNS);
			break;
		default:
			run_load(b, (enum test)i);
			break;
		}
	}
	for (unsigned i = 0; i < b->nholder; i++)
		conn_close(b, b->holder[i]);
	free(b->holder);
	free(b->shared_hit.buf);
	free(b->shared_miss.buf);
	free(b->lat.v);
	free(b->plat.v);
	free(b->lat_reg.v);
	free(b->lat_unreg.v);
	close(b->ep);
	return 0;
}
