/*
 * handle.c: the libprocreg handle: connect and free, hello, the status
 * strings and the last error's message, and the small allocation helpers
 * every part of the library uses.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "paths.h"

int
handle_fail(procreg_t *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int
handle_fail(procreg_t *p, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	return status;
}

char *
handle_dup_bytes(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	/* msgpack-c gives an empty str a NULL ptr: no memcpy from it. */
	if (d != NULL) {
		if (len > 0)
			memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

void *
handle_dup_mem(const void *s, size_t len)
{
	void *d = malloc(len ? len : 1);

	if (d != NULL && len)
		memcpy(d, s, len);
	return d;
}

/* Grow an array to hold one more element; false when out of memory. */
bool
handle_grow(void **v, size_t *cap, size_t len, size_t size)
{
	size_t ncap;
	void *nv;

	if (len < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	if ((nv = realloc(*v, ncap * size)) == NULL)
		return false;
	*v = nv;
	*cap = ncap;
	return true;
}

int
procreg_default_path(char *buf, size_t size)
{
	char err[256];

	return paths_default_socket(buf, size, false, err, sizeof(err));
}

/* The wire table and the public statuses are one numbering. */
_Static_assert((int)PR_ERR_TIMEOUT == (int)PROCREG_E_CALL_TIMEOUT &&
    (int)PR_ERR_DOWN == (int)PROCREG_E_DOWN &&
    (int)PR_ERR_STALE == (int)PROCREG_E_STALE &&
    (int)PR_ERR_UNAVAILABLE == (int)PROCREG_E_UNAVAILABLE &&
    (int)PR_ERR__COUNT <= (int)PROCREG_E_OTHER,
    "enum procreg_status and enum pr_err differ");

const char *
procreg_status_code(int status)
{
	if (status > 0 && status < PR_ERR__COUNT)
		return pr_err_name((enum pr_err)status);
	return NULL;
}

const char *
procreg_strstatus(int status)
{
	switch (status) {
	case PROCREG_OK:
		return "success";
	case PROCREG_E_BAD_REQUEST:
		return "bad request";
	case PROCREG_E_UNKNOWN_METHOD:
		return "unknown method";
	case PROCREG_E_TAKEN:
		return "name taken";
	case PROCREG_E_NOT_FOUND:
		return "not found";
	case PROCREG_E_NOT_OWNER:
		return "not the owner";
	case PROCREG_E_BUSY:
		return "busy";
	case PROCREG_E_LIMIT:
		return "limit reached";
	case PROCREG_E_TOO_LARGE:
		return "too large";
	case PROCREG_E_FORBIDDEN:
		return "forbidden";
	case PROCREG_E_CALL_TIMEOUT:
		return "the daemon's timeout (no reply to the call, or the "
		    "awaited name, in time)";
	case PROCREG_E_DOWN:
		return "the callee went away";
	case PROCREG_E_STALE:
		return "stale generation";
	case PROCREG_E_UNAVAILABLE:
		return "cluster unavailable";
	case PROCREG_E_OTHER:
		return "error";
	case PROCREG_E_CONNECT:
		return "cannot reach the daemon";
	case PROCREG_E_CLOSED:
		return "connection lost";
	case PROCREG_E_TIMEOUT:
		return "timed out";
	case PROCREG_E_PROTOCOL:
		return "protocol error";
	case PROCREG_E_NOMEM:
		return "out of memory";
	case PROCREG_E_INVAL:
		return "invalid argument";
	default:
		return "unknown status";
	}
}

const char *
procreg_errmsg(const procreg_t *p)
{
	return p != NULL ? p->errmsg : "out of memory";
}

int
procreg_fd(const procreg_t *p)
{
	return p->fd;
}

uint64_t
procreg_conn_id(const procreg_t *p)
{
	return p->conn_id;
}

/* hello, keeping our conn id; optionally filling out. */
int
handle_hello(procreg_t *p, struct procreg_hello *out)
{
	const msgpack_object *res;
	uint32_t id;
	int r;

	id = conn_req_begin(p, "hello", p->label ? 1 : 0);
	if (p->label)
		conn_pack_str(p, p->label);
	if ((r = conn_call(p, id, &res)) != PROCREG_OK)
		return r;
	if (res->type != MSGPACK_OBJECT_MAP)
		return handle_fail(p, PROCREG_E_PROTOCOL,
		    "malformed hello result");
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < res->via.map.size; i++) {
		const msgpack_object *k = &res->via.map.ptr[i].key;
		const msgpack_object *v = &res->via.map.ptr[i].val;

		if (decode_is_str(k, "conn"))
			p->conn_id = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "protocol"))
			p->protocol = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "boot") &&
		    v->type == MSGPACK_OBJECT_STR)
			snprintf(p->boot, sizeof(p->boot), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
		if (out == NULL)
			continue;
		if (decode_is_str(k, "conn"))
			out->conn = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "protocol"))
			out->protocol = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "max_message"))
			out->max_message = (uint64_t)decode_int(v);
		else if (decode_is_str(k, "version") &&
		    v->type == MSGPACK_OBJECT_STR)
			snprintf(out->version, sizeof(out->version), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
		else if (decode_is_str(k, "boot") &&
		    v->type == MSGPACK_OBJECT_STR)
			snprintf(out->boot, sizeof(out->boot), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
		else if (decode_is_str(k, "node") &&
		    v->type == MSGPACK_OBJECT_STR)
			snprintf(out->node, sizeof(out->node), "%.*s",
			    (int)v->via.str.size, v->via.str.ptr);
	}
	return PROCREG_OK;
}

/*
 * Copy a caller's input struct of in_size bytes into ours (size bytes,
 * zeroed first): false when the caller's struct is newer than ours and
 * sets something beyond it, a feature this library does not have.
 */
bool
handle_copy_in(void *ours, size_t size, const void *in, size_t in_size)
{
	memset(ours, 0, size);
	if (in == NULL)
		return true;
	memcpy(ours, in, in_size < size ? in_size : size);
	for (size_t i = size; i < in_size; i++) {
		if (((const unsigned char *)in)[i] != 0)
			return false;
	}
	return true;
}

/* Copy our output struct into the caller's of out_size bytes: what it
 * has room for; what ours lacks, zeroed. */
void
handle_copy_out(void *out, size_t out_size, const void *ours, size_t size)
{
	memcpy(out, ours, out_size < size ? out_size : size);
	if (out_size > size)
		memset((char *)out + size, 0, out_size - size);
}

/*
 * A new handle for opts, not connected yet: *out is set unless memory ran
 * out, even on failure (for procreg_errmsg).  Known false: the caller's
 * options went beyond what this library knows.
 */
int
handle_new(procreg_t **out, const struct procreg_options *opts, bool known)
{
	procreg_t *p;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return PROCREG_E_NOMEM;
	*out = p;
	p->fd = -1;
	p->next_msgid = 1;
	p->next_user_ref = 1;
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms :
	    DEFAULT_TIMEOUT_MS;
	p->auto_reconnect = opts->auto_reconnect;
	p->reconnect_max_ms = opts->reconnect_max_ms > 0 ?
	    opts->reconnect_max_ms : DEFAULT_RECONNECT_MAX;
	p->backoff_ms = RECONNECT_MIN;
	msgpack_sbuffer_init(&p->sbuf);
	msgpack_packer_init(&p->pk, p, conn_req_write);
	msgpack_unpacked_init(&p->res);
	if (!(p->unp_ready = msgpack_unpacker_init(&p->unp, READ_SIZE)) ||
	    reconnect_init(p) != PROCREG_OK)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	if (!known)
		return handle_fail(p, PROCREG_E_INVAL, "options this library "
		    "does not know (it is older than the caller's header)");
	if (opts->label != NULL && (p->label = strdup(opts->label)) == NULL)
		return handle_fail(p, PROCREG_E_NOMEM, "out of memory");
	if (opts->path != NULL) {
		if (strlen(opts->path) >= sizeof(p->path))
			return handle_fail(p, PROCREG_E_INVAL,
			    "socket path too long");
		strcpy(p->path, opts->path);
	} else {
		char err[256];

		if (paths_default_socket(p->path, sizeof(p->path), false, err,
		    sizeof(err)) < 0)
			return handle_fail(p, PROCREG_E_CONNECT, "%s", err);
	}
	return PROCREG_OK;
}

int
procreg_connect_sized(procreg_t **out, const struct procreg_options *in,
    size_t in_size)
{
	struct procreg_options opts;
	bool known = handle_copy_in(&opts, sizeof(opts), in, in_size);
	procreg_t *p;
	int r;

	if ((r = handle_new(out, &opts, known)) != PROCREG_OK)
		return r;
	p = *out;
	if ((r = conn_open(p)) != PROCREG_OK)
		return r;
	/* hello tells us our conn id (and the daemon our label). */
	if ((r = handle_hello(p, NULL)) != PROCREG_OK) {
		conn_close(p);
		return r;
	}
	return PROCREG_OK;
}

void
procreg_free(procreg_t *p)
{
	struct procreg_event *ev;

	if (p == NULL)
		return;
	if (p->fd >= 0)
		close(p->fd);
	while ((ev = event_pop(p)) != NULL)
		procreg_event_free(ev);
	free(p->q);
	reconnect_deinit(p);
	free(p->label);
	msgpack_unpacked_destroy(&p->res);
	if (p->unp_ready)
		msgpack_unpacker_destroy(&p->unp);
	msgpack_sbuffer_destroy(&p->sbuf);
	free(p);
}

int
(procreg_connect)(procreg_t **out, const struct procreg_options *opts)
{
	return procreg_connect_sized(out, opts, PROCREG_OPTIONS_SIZE_1);
}

int
procreg_hello_sized(procreg_t *p, struct procreg_hello *out, size_t size)
{
	struct procreg_hello h;
	int r;

	if ((r = handle_hello(p, &h)) == PROCREG_OK)
		handle_copy_out(out, size, &h, sizeof(h));
	return r;
}

int
(procreg_hello)(procreg_t *p, struct procreg_hello *out)
{
	return procreg_hello_sized(p, out, PROCREG_HELLO_SIZE_1);
}
