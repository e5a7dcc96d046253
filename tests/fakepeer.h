/*
 * fakepeer.h: peers for the unit suites of the modules that reach
 * clients through struct peer_ops (calls, subscriptions): each keeps
 * what it was sent, in order, for the test to decode, with a bound on
 * its output like a connection's, and can fail like one out of memory.
 */
#ifndef FAKEPEER_H
#define FAKEPEER_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <msgpack.h>

#include "conn.h"
#include "peer.h"
#include "procreg-protocol.h"

struct fakepeer {
	msgpack_sbuffer	 out;		/* everything queued */
	size_t		 read;		/* how far fakepeer_next decoded */
	size_t		 bound;		/* 0: none */
	unsigned	 oom;		/* out_of_memory calls */
	bool		 fail;		/* writes fail for lack of memory */
	msgpack_unpacked msg;		/* the last decoded */
};

static inline void
fakepeer_init(struct fakepeer *p)
{
	memset(p, 0, sizeof(*p));
	msgpack_sbuffer_init(&p->out);
	msgpack_unpacked_init(&p->msg);
}

static inline void
fakepeer_deinit(struct fakepeer *p)
{
	msgpack_sbuffer_destroy(&p->out);
	msgpack_unpacked_destroy(&p->msg);
}

static inline int
fakepeer_write(void *arg, void *peer, const void *b, size_t len,
    bool bounded)
{
	struct fakepeer *p = peer;

	(void)arg;
	if (p->fail) {
		p->oom++;	/* a connection closes itself */
		return -ENOMEM;
	}
	if (bounded && p->bound != 0 && p->out.size - p->read + len > p->bound)
		return PR_ERR_BUSY;
	msgpack_sbuffer_write(&p->out, b, len);
	return 0;
}

static inline int
fakepeer_write_shared(void *arg, void *peer, const void *head, size_t hlen,
    struct conn_shared *sh, bool bounded)
{
	struct fakepeer *p = peer;

	(void)arg;
	if (p->fail) {
		p->oom++;
		return -ENOMEM;
	}
	if (bounded && p->bound != 0 &&
	    p->out.size - p->read + hlen + sh->len > p->bound)
		return PR_ERR_BUSY;
	msgpack_sbuffer_write(&p->out, head, hlen);
	msgpack_sbuffer_write(&p->out, sh->data, sh->len);
	return 0;
}

static inline void
fakepeer_out_of_memory(void *arg, void *peer)
{
	(void)arg;
	((struct fakepeer *)peer)->oom++;
}

static const struct peer_ops fakepeer_ops = {
	.write = fakepeer_write,
	.write_shared = fakepeer_write_shared,
	.out_of_memory = fakepeer_out_of_memory,
};

/* Decode the next message sent to p; NULL when there is none. */
static inline const msgpack_object *
fakepeer_next(struct fakepeer *p)
{
	if (p->read == p->out.size)
		return NULL;
	ck_assert_int_eq(msgpack_unpack_next(&p->msg, p->out.data,
	    p->out.size, &p->read), MSGPACK_UNPACK_SUCCESS);
	return &p->msg.data;
}

/* Messages sent to p not decoded yet. */
static inline size_t
fakepeer_unread(const struct fakepeer *p)
{
	return p->out.size - p->read;
}

/* Is the str object s? */
static inline bool
fakepeer_str_is(const msgpack_object *o, const char *s)
{
	return o->type == MSGPACK_OBJECT_STR &&
	    o->via.str.size == strlen(s) &&
	    memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The next message is a push of that method: its params. */
static inline const msgpack_object *
fakepeer_push(struct fakepeer *p, const char *method)
{
	const msgpack_object *m = fakepeer_next(p);

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(m->via.array.size, 3);
	ck_assert_uint_eq(m->via.array.ptr[0].via.u64, PR_MSG_NOTIFY);
	ck_assert(fakepeer_str_is(&m->via.array.ptr[1], method));
	ck_assert_int_eq(m->via.array.ptr[2].type, MSGPACK_OBJECT_ARRAY);
	return &m->via.array.ptr[2];
}

/*
 * The next message is the response to msgid: its result, or NULL when
 * it is the error e.
 */
static inline const msgpack_object *
fakepeer_response(struct fakepeer *p, uint32_t msgid, int e)
{
	const msgpack_object *m = fakepeer_next(p), *err;

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(m->via.array.size, 4);
	ck_assert_uint_eq(m->via.array.ptr[0].via.u64, PR_MSG_RESPONSE);
	ck_assert_uint_eq(m->via.array.ptr[1].via.u64, msgid);
	err = &m->via.array.ptr[2];
	if (e == 0) {
		ck_assert_int_eq(err->type, MSGPACK_OBJECT_NIL);
		return &m->via.array.ptr[3];
	}
	ck_assert_int_eq(err->type, MSGPACK_OBJECT_ARRAY);
	ck_assert(fakepeer_str_is(&err->via.array.ptr[0],
	    pr_err_name((enum pr_err)e)));
	ck_assert_int_eq(m->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
	return NULL;
}

#endif /* FAKEPEER_H */
