/*
 * conn.c: the handle's socket and its framing.  One non-blocking socket
 * per handle.  A request is packed into the handle's buffer, written in
 * full, then objects are read until its own response arrives; any
 * notification read on the way goes to decode.c's queue, so nothing that
 * arrives during a call is lost.  Caller-given msgpack bytes (values,
 * payloads) are checked here to be exactly one object before they are
 * copied into a request.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

/*
 * The deepest nesting conn_scan follows: msgpack-c's unpacker stack
 * (MSGPACK_EMBED_STACK_SIZE), above the protocol's PR_NESTING_MAX.
 */
#define CONN_SCAN_DEPTH_MAX	32

enum conn_scan {
	CONN_SCAN_OBJECT,
	CONN_SCAN_MORE,
	CONN_SCAN_BAD
};

static enum conn_scan conn_scan(const void *, size_t, unsigned max_depth,
		    size_t *end);

/*
 * The next object from the unpacker, handed to msgpack-c only once
 * conn_scan found it whole: a daemon's claimed container size never
 * becomes an allocation before the bytes are there.
 */
static msgpack_unpack_return
conn_unpack(procreg_t *p, msgpack_unpacked *u)
{
	size_t end;

	switch (conn_scan(p->unp.buffer + p->unp.off, p->unp.used - p->unp.off,
	    CONN_SCAN_DEPTH_MAX, &end)) {
	case CONN_SCAN_MORE:
		return MSGPACK_UNPACK_CONTINUE;
	case CONN_SCAN_BAD:
		return MSGPACK_UNPACK_PARSE_ERROR;
	case CONN_SCAN_OBJECT:
		break;
	}
	return msgpack_unpacker_next(&p->unp, u);
}

/*
 * Close the connection.  Notifications already read are queued first (as
 * procreg_process would), unless the stream is known to be garbage.
 */
static void
conn_close_how(procreg_t *p, bool keep_parsed)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (!p->unp_ready)
		return;
	if (keep_parsed) {
		msgpack_unpacked u;

		msgpack_unpacked_init(&u);
		while (conn_unpack(p, &u) == MSGPACK_UNPACK_SUCCESS) {
			const msgpack_object *o = &u.data, *a;

			if (o->type != MSGPACK_OBJECT_ARRAY ||
			    o->via.array.size < 3)
				continue;
			a = o->via.array.ptr;
			if (decode_is_uint(&a[0]) &&
			    a[0].via.u64 == PR_MSG_NOTIFY &&
			    a[1].type == MSGPACK_OBJECT_STR)
				(void)decode_push(p, o);
		}
		msgpack_unpacked_destroy(&u);
	}
	/*
	 * Bytes of the old stream must not mix with the new one.  A failed
	 * init leaves the handle without an unpacker: conn_open makes one
	 * before the next connection, or fails it for want of memory.
	 */
	msgpack_unpacker_reset(&p->unp);
	msgpack_unpacker_destroy(&p->unp);
	p->unp_ready = msgpack_unpacker_init(&p->unp, READ_SIZE);
}

void
conn_close(procreg_t *p)
{
	conn_close_how(p, true);
}

int
conn_open(procreg_t *p)
{
	struct sockaddr_un sun;
	int fd;

	if (!p->unp_ready &&
	    !(p->unp_ready = msgpack_unpacker_init(&p->unp, READ_SIZE)))
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p->path);
	/* CLOEXEC: a child the caller execs must not hold our lifeline. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return handle_fail(p, PROCREG_E_CONNECT, "socket: %s",
		    strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		return handle_fail(p, PROCREG_E_CONNECT,
		    "cannot connect to %s: %s",
		    p->path, strerror(e));
	}
	p->fd = fd;
	return PROCREG_OK;
}

/*
 * Write a request in full, waiting for room up to deadline; *sent counts
 * the bytes that left.
 */
static int
conn_write_all(procreg_t *p, const char *b, size_t len, int64_t deadline,
    size_t *sent)
{
	*sent = 0;
	while (len > 0) {
		ssize_t n = send(p->fd, b, len, MSG_NOSIGNAL);

		if (n > 0) {
			b += n;
			len -= (size_t)n;
			*sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = p->fd, .events = POLLOUT };
			int64_t left = deadline - (int64_t)now_mono_ms();

			if (left <= 0 && *sent > 0) {
				/* Half a request: the stream is beyond repair. */
				conn_close(p);
				return handle_fail(p, PROCREG_E_CLOSED,
				    "timed out "
				    "writing to the daemon; disconnected");
			}
			if (left <= 0)
				return handle_fail(p, PROCREG_E_TIMEOUT,
				    "timed out writing to the daemon");
			if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
				int e = errno;

				if (*sent > 0)
					conn_close(p);
				return handle_fail(p, PROCREG_E_CLOSED,
				    "poll: %s",
				    strerror(e));
			}
			continue;
		}
		conn_close(p);
		return handle_fail(p, PROCREG_E_CLOSED, "connection lost: %s",
		    strerror(errno));
	}
	return PROCREG_OK;
}

/* Read once: 1 bytes read, 0 nothing to read, or a negative status. */
int
conn_read_some(procreg_t *p)
{
	ssize_t n;

	if (!msgpack_unpacker_reserve_buffer(&p->unp, READ_SIZE))
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	n = read(p->fd, msgpack_unpacker_buffer(&p->unp),
	    msgpack_unpacker_buffer_capacity(&p->unp));
	if (n > 0) {
		msgpack_unpacker_buffer_consumed(&p->unp, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return 0;
	conn_close(p);
	return handle_fail(p, PROCREG_E_CLOSED,
	    n == 0 ? "the daemon closed the "
	    "connection" : "connection lost: %s", strerror(errno));
}

/*
 * Take the next object from the unpacker: 1 when it is the response to
 * msgid (left in p->res), 2 when it was something else (a notification,
 * now queued, or a late response), 0 when no object is complete yet,
 * negative on failure (the stream is then closed).
 */
static int
conn_next_object(procreg_t *p, uint32_t msgid, bool want_response)
{
	msgpack_unpack_return r = conn_unpack(p, &p->res);
	const msgpack_object *o = &p->res.data, *a;

	if (r == MSGPACK_UNPACK_CONTINUE)
		return 0;
	if (r != MSGPACK_UNPACK_SUCCESS) {
		conn_close_how(p, false);
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "the daemon sent bytes "
		    "that are not msgpack");
	}
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3)
		return 2;
	a = o->via.array.ptr;
	if (decode_is_uint(&a[0]) && a[0].via.u64 == PR_MSG_NOTIFY &&
	    a[1].type == MSGPACK_OBJECT_STR) {
		int e = decode_push(p, o);

		return e < 0 ? e : 2;
	}
	if (want_response && o->via.array.size == 4 && decode_is_uint(&a[0]) &&
	    a[0].via.u64 == PR_MSG_RESPONSE && decode_is_uint(&a[1]) &&
	    a[1].via.u64 == msgid)
		return 1;
	return 2;	/* a late response to a call that timed out */
}

/* Big-endian unsigned of n bytes at b. */
static uint64_t
conn_be_uint(const unsigned char *b, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | b[i];
	return v;
}

/*
 * Scan the msgpack object at the start of [b, b + len) without decoding
 * it: CONN_SCAN_OBJECT when it is all there (its length in *end),
 * CONN_SCAN_MORE when bytes are missing, CONN_SCAN_BAD for the byte
 * msgpack never uses or containers nested deeper than max_depth.  A
 * container claiming more elements than bytes are left needs more bytes
 * (each element takes one at least), which is what makes it safe to hand
 * a whole object to msgpack-c: its unpacker allocates for the claimed
 * count before the elements arrive.  One pass, no allocation: the open
 * containers' counts of elements still to come are a fixed stack.
 */
static enum conn_scan
conn_scan(const void *v, size_t len, unsigned max_depth, size_t *end)
{
	const unsigned char *b = v;
	uint64_t remain[CONN_SCAN_DEPTH_MAX];
	unsigned top = 0;
	size_t off = 0;

	for (;;) {
		unsigned c, hdr = 1, lenb = 0;
		uint64_t n = 0, body = 0;
		bool container = false;

		if (off >= len)
			return CONN_SCAN_MORE;
		c = b[off];
		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 ||
		    c == 0xc3)
			;
		else if (c <= 0x8f) {
			container = true;
			n = 2 * (uint64_t)(c & 0x0f);
		} else if (c <= 0x9f) {
			container = true;
			n = c & 0x0f;
		} else if (c <= 0xbf)
			body = c & 0x1f;
		else {
			switch (c) {
			case 0xc4: case 0xd9: lenb = 1; break;
			case 0xc5: case 0xda: lenb = 2; break;
			case 0xc6: case 0xdb: lenb = 4; break;
			case 0xc7: lenb = 1; body = 1; break;	/* + type */
			case 0xc8: lenb = 2; body = 1; break;
			case 0xc9: lenb = 4; body = 1; break;
			case 0xca: body = 4; break;
			case 0xcb: body = 8; break;
			case 0xcc: case 0xd0: body = 1; break;
			case 0xcd: case 0xd1: body = 2; break;
			case 0xce: case 0xd2: body = 4; break;
			case 0xcf: case 0xd3: body = 8; break;
			case 0xd4: body = 2; break;
			case 0xd5: body = 3; break;
			case 0xd6: body = 5; break;
			case 0xd7: body = 9; break;
			case 0xd8: body = 17; break;
			case 0xdc: lenb = 2; container = true; break;
			case 0xdd: lenb = 4; container = true; break;
			case 0xde: lenb = 2; container = true; break;
			case 0xdf: lenb = 4; container = true; break;
			default:
				return CONN_SCAN_BAD;	/* 0xc1, never used */
			}
			hdr += lenb;
			if (lenb > len - off - 1)
				return CONN_SCAN_MORE;
			if (container)
				n = conn_be_uint(b + off + 1, lenb) *
				    (c >= 0xde ? 2 : 1);
			else
				body += conn_be_uint(b + off + 1, lenb);
		}
		off += hdr;
		if (body > len - off)
			return CONN_SCAN_MORE;
		off += (size_t)body;
		if (container) {
			if (top + 1 > max_depth ||
			    top + 1 > CONN_SCAN_DEPTH_MAX)
				return CONN_SCAN_BAD;
			/* Each element takes a byte at least. */
			if (n > len - off)
				return CONN_SCAN_MORE;
			if (n > 0) {
				remain[top++] = n;
				continue;
			}
		}
		/* A value ended: close the containers it completes. */
		while (top > 0 && --remain[top - 1] == 0)
			top--;
		if (top == 0) {
			*end = off;
			return CONN_SCAN_OBJECT;
		}
	}
}

/*
 * Refuse value bytes (NULL: none, always fine) that are not one msgpack
 * object at `above` levels of a request.
 */
int
conn_check_value(procreg_t *p, const void *v, size_t len, unsigned above,
    const char *what)
{
	size_t end;

	/* Exactly one object: all there, and nothing after it. */
	if (v == NULL || (conn_scan(v, len, PR_NESTING_MAX - above, &end) ==
	    CONN_SCAN_OBJECT && end == len))
		return PROCREG_OK;
	return handle_fail(p, PROCREG_E_INVAL,
	    "the %s is not exactly one msgpack "
	    "object (at most %u levels deep)", what,
	    PR_NESTING_MAX - above);
}

/*
 * The packer's writer: the first failure sticks, and call_wait refuses
 * to send what it left incomplete.
 */
int
conn_req_write(void *data, const char *buf, size_t len)
{
	procreg_t *p = data;

	if (p->req_err == PROCREG_OK &&
	    msgpack_sbuffer_write(&p->sbuf, buf, len) != 0)
		p->req_err = PROCREG_E_NOMEM;
	return p->req_err == PROCREG_OK ? 0 : -1;
}

/* Start a request [0, msgid, method, [ with n params to be packed. */
uint32_t
conn_req_begin(procreg_t *p, const char *method, uint32_t n)
{
	uint32_t id = p->next_msgid++;

	if (p->next_msgid == 0)
		p->next_msgid = 1;
	msgpack_sbuffer_clear(&p->sbuf);
	p->req_err = PROCREG_OK;
	msgpack_pack_array(&p->pk, 4);
	msgpack_pack_uint8(&p->pk, PR_MSG_REQUEST);
	msgpack_pack_uint32(&p->pk, id);
	msgpack_pack_str(&p->pk, strlen(method));
	msgpack_pack_str_body(&p->pk, method, strlen(method));
	msgpack_pack_array(&p->pk, n);
	return id;
}

void
conn_pack_str(procreg_t *p, const char *s)
{
	msgpack_pack_str(&p->pk, strlen(s));
	msgpack_pack_str_body(&p->pk, s, strlen(s));
}

/*
 * Send the packed request and wait up to wait_ms for its response.  On
 * PROCREG_OK the result is *result (valid until the next read on this
 * handle).  A request bound to this connection (reconnected not NULL: it
 * names a daemon ref or call id) is never sent on a new one: when the
 * connection was found lost before any of it left, the handle reconnects,
 * *reconnected says so, and the status is PROCREG_E_CLOSED; the caller
 * decides what its request means now.
 */
static int
conn_send_wait(procreg_t *p, uint32_t msgid, const msgpack_object **result,
    int64_t wait_ms, bool *reconnected)
{
	int64_t deadline = (int64_t)now_mono_ms() + wait_ms;
	size_t sent = 0, len = p->sbuf.size;
	char *saved;
	int r;

	if (p->req_err != PROCREG_OK)
		return handle_fail(p, p->req_err, "out of memory building the "
		    "request");
	if (p->fd < 0)
		r = handle_fail(p, PROCREG_E_CLOSED, "not connected");
	else
		r = conn_write_all(p, p->sbuf.data, len, deadline, &sent);
	if (r == PROCREG_E_CLOSED && sent == 0 && p->auto_reconnect &&
	    !p->restoring && reconnected != NULL) {
		/* Its refs or ids mean nothing to the new connection. */
		if ((r = reconnect_try(p, deadline)) != PROCREG_OK)
			return r;
		*reconnected = true;
		return handle_fail(p, PROCREG_E_CLOSED, "connection lost; "
		    "reconnected, the request was not sent");
	}
	if (r == PROCREG_E_CLOSED && sent == 0 && p->auto_reconnect &&
	    !p->restoring) {
		/*
		 * None of it reached the daemon, so it is safe to send it on a
		 * new connection.  Restoring reuses the request buffer: keep a
		 * copy.
		 */
		if ((saved = handle_dup_mem(p->sbuf.data, len)) == NULL)
			return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
		/*
		 * The request goes out only now: its wait starts now, not
		 * before a restore that may have made thousands of calls.
		 */
		if ((r = reconnect_try(p, deadline)) == PROCREG_OK) {
			deadline = (int64_t)now_mono_ms() + wait_ms;
			r = conn_write_all(p, saved, len, deadline, &sent);
		}
		free(saved);
	}
	if (r != PROCREG_OK)
		return r;
	for (;;) {
		while ((r = conn_next_object(p, msgid, true)) == 2)
			;
		if (r < 0)
			return r;
		if (r == 1) {
			const msgpack_object *a = p->res.data.via.array.ptr;

			if ((r = decode_status(p, &a[2])) != PROCREG_OK)
				return r;
			*result = &a[3];
			return PROCREG_OK;
		}
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int64_t left = deadline - (int64_t)now_mono_ms();

		if (left <= 0)
			return handle_fail(p, PROCREG_E_TIMEOUT,
			    "no reply from the "
			    "daemon in %" PRId64 " ms", wait_ms);
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return handle_fail(p, PROCREG_E_CLOSED, "poll: %s",
			    strerror(errno));
		if ((r = conn_read_some(p)) < 0)
			return r;
	}
}

/* Send the packed request and wait up to wait_ms for its response. */
int
conn_call_wait(procreg_t *p, uint32_t msgid, const msgpack_object **result,
    int64_t wait_ms)
{
	return conn_send_wait(p, msgid, result, wait_ms, NULL);
}

/* Send the packed request and wait for its response (the handle's
 * timeout). */
int
conn_call(procreg_t *p, uint32_t msgid, const msgpack_object **result)
{
	return conn_send_wait(p, msgid, result, p->timeout_ms, NULL);
}

/*
 * The same for a request that names things of this connection (a daemon
 * ref, a call id): *reconnected true when it was not sent because the
 * handle reconnected first.
 */
int
conn_call_bound(procreg_t *p, uint32_t msgid, const msgpack_object **result,
    bool *reconnected)
{
	*reconnected = false;
	return conn_send_wait(p, msgid, result, p->timeout_ms, reconnected);
}

/* Start a register request for held name h, with its value and flags. */
uint32_t
conn_req_register(procreg_t *p, const char *name, const void *value,
    size_t vlen,
    unsigned flags)
{
	uint32_t id = conn_req_begin(p, "register", flags ? 3 : value ? 2 : 1);
	unsigned nopts = 0;

	conn_pack_str(p, name);
	if (value != NULL)
		(void)conn_req_write(p, value, vlen);
	else if (flags)
		msgpack_pack_nil(&p->pk);
	if (!flags)
		return id;
	for (unsigned f = flags; f; f &= f - 1)
		nopts++;
	msgpack_pack_map(&p->pk, nopts);
	if (flags & PROCREG_QUEUE) {
		conn_pack_str(p, "queue");
		msgpack_pack_true(&p->pk);
	}
	if (flags & PROCREG_ALLOW_REPLACEMENT) {
		conn_pack_str(p, "allow_replacement");
		msgpack_pack_true(&p->pk);
	}
	if (flags & PROCREG_REPLACE) {
		conn_pack_str(p, "replace");
		msgpack_pack_true(&p->pk);
	}
	if (flags & PROCREG_CLUSTER) {
		conn_pack_str(p, "scope");
		conn_pack_str(p, "cluster");
	}
	return id;
}

/* Parse every complete object already read (queueing notifications). */
int
conn_drain(procreg_t *p)
{
	int r;

	while ((r = conn_next_object(p, 0, false)) == 2)
		;
	return r < 0 ? r : PROCREG_OK;
}
