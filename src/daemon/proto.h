/*
 * proto.h: decoding requests and encoding replies and notifications.  The
 * only module that touches msgpack: the rest of the daemon sees names as
 * bytes, values as opaque decoded objects, and output as byte strings.
 */
#ifndef PROTO_H
#define PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "procreg-protocol.h"
#include "registry.h"

struct cl_entry;
struct cl_node;
struct cl_view;
struct cluster_stats;

/* A decoded msgpack value the caller only passes along. */
typedef msgpack_object	pr_value;

/* Decoder for complete objects (framed by the guard). */
struct pr_decoder {
	msgpack_zone	*zone;
	size_t		 zone_big;	/* bytes decoded since the zone was new */
	msgpack_object	 obj;		/* the last object decoded */
};

int	 proto_decoder_init(struct pr_decoder *);
void	 proto_decoder_deinit(struct pr_decoder *);
/* Decode one complete object; the result lives until proto_decoded(). */
int	 proto_decode(struct pr_decoder *, const char *p, size_t len,
	    const pr_value **out);
/* Release what the last decode allocated. */
void	 proto_decoded(struct pr_decoder *);
/*
 * A glance at a framed object's bytes, before decoding.  For requests of
 * a method whose first param names a registration it finds that name
 * (true, pk->name): a cache hint.  It also notes which method the bytes
 * name and where (pk->method, pk->method_at), so that proto_parse of the
 * same bytes need not look the method up again.  A false answer costs
 * nothing: the request is still checked in full when it is decoded.
 */
struct pr_peek {
	const char	*method_at;	/* the method's bytes, or NULL */
	int		 method;	/* its enum pr_method, or -1 */
	const char	*name;
	size_t		 nlen;
};
bool	 proto_peek(const uint8_t *p, size_t len, struct pr_peek *pk);

/* What a top-level object turned out to be. */
enum pr_kind {
	PR_KIND_REQUEST,	/* method and params valid, method known */
	PR_KIND_NOTIFY,		/* well-formed client notification */
	PR_KIND_BAD_REQUEST,	/* msgid readable: answer with an error */
	PR_KIND_BAD_OBJECT	/* no msgid: error notification */
};

/* Typed cursor over a request's params. */
struct pr_args {
	const msgpack_object	*v;
	uint32_t		 n;
	uint32_t		 i;
};

struct pr_request {
	enum pr_kind		 kind;
	enum pr_err		 err;		/* for the BAD kinds */
	const char		*why;		/* for the BAD kinds */
	uint32_t		 msgid;
	enum pr_method		 method;
	struct pr_args		 args;
};

/* Is o a non-negative integer?  (msgpack-c decodes non-negative ints
 * encoded as signed ones as POSITIVE_INTEGER already.) */
static inline bool
proto_is_uint(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

/* Classify and check the shape and arity of a decoded object; hint, when
 * not NULL, is proto_peek's glance at the bytes it was decoded from. */
void	 proto_parse(const pr_value *, const struct pr_peek *hint,
	    struct pr_request *);

/* An output buffer for one message at a time. */
struct pr_out {
	msgpack_sbuffer	 buf;
	msgpack_packer	 pk;
};

struct pr_stats {
	uint64_t	connections, names, monitors, requests, messages, downs,
			notifications_ignored, connections_total, uptime_ms,
			groups, members, calls, awaits, subscriptions, seq,
			replies_late, draining;
	/* With a cluster: its figures, the node's name and lease TTL. */
	const struct cluster_stats *cluster;
	const char	*node;
	uint64_t	 lease_ttl;
};

struct pr_hello {
	uint64_t	 conn;
	const char	*boot;
	uint64_t	 max_message;
	const char	*node;		/* NULL: not in a cluster */
};

void	 proto_out_init(struct pr_out *);
void	 proto_out_deinit(struct pr_out *);
/* Empty the buffer (keeping its memory) for the next message. */
void	 proto_out_reset(struct pr_out *);
static inline const char *
proto_out_data(const struct pr_out *o)
{
	return o->buf.data;
}
static inline size_t
proto_out_len(const struct pr_out *o)
{
	return o->buf.size;
}

/*
 * Replies.  proto_reply_begin writes [1, msgid, nil, and the caller then
 * writes exactly one result with the proto_put_* functions.  Every
 * encoder returns 0 or -ENOMEM.
 */
int	 proto_reply_begin(struct pr_out *, uint32_t msgid);
int	 proto_reply_error(struct pr_out *, uint32_t msgid, enum pr_err,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* An error response with a code of the client's own (a callee's). */
int	 proto_reply_error_raw(struct pr_out *, uint32_t msgid,
	    const char *code, size_t clen, const char *msg, size_t mlen);
int	 proto_put_nil(struct pr_out *);
int	 proto_put_bool(struct pr_out *, bool);
int	 proto_put_uint(struct pr_out *, uint64_t);
int	 proto_put_entry(struct pr_out *, const struct reg_name *);
/* A cluster name's entry: the same keys, then scope and node, then
 * "stale": true when the cache may be behind etcd. */
int	 proto_put_cluster_entry(struct pr_out *, const struct cl_entry *,
	    bool stale);
int	 proto_put_cluster_view(struct pr_out *, const struct cl_view *,
	    bool stale);
size_t	 proto_cluster_entry_size(const struct cl_entry *);
/* A node of nodes' answer. */
int	 proto_put_node(struct pr_out *, const struct cl_node *, bool self);
int	 proto_put_array(struct pr_out *, uint32_t n);
int	 proto_put_map(struct pr_out *, uint32_t n);
int	 proto_put_str(struct pr_out *, const char *s, size_t len);
int	 proto_put_value(struct pr_out *, const pr_value *);
int	 proto_put_member(struct pr_out *, const struct reg_member *);
/* Encoded size of a member entry (an upper bound). */
size_t	 proto_member_size(const struct reg_member *);
int	 proto_put_stats(struct pr_out *, const struct pr_stats *);
int	 proto_put_hello(struct pr_out *, const struct pr_hello *);
/* Exact encoded sizes, for keeping responses within max_message: a
 * response's head, an array or map header, a str. */
size_t	 proto_reply_size(uint32_t msgid);
size_t	 proto_array_size(uint32_t n);
size_t	 proto_str_size(size_t len);
/* Encoded size of an entry in a reply, for budgeting. */
size_t	 proto_entry_size(const struct reg_name *);

/* Server notifications. */
int	 proto_push_message(struct pr_out *, const struct reg_target *,
	    uint64_t sender, const pr_value *payload);
int	 proto_push_call(struct pr_out *, uint64_t call_id,
	    const struct reg_target *, uint64_t caller, const pr_value *payload);
int	 proto_push_publish(struct pr_out *, const char *group, size_t len,
	    uint64_t sender, const pr_value *payload);
int	 proto_push_down(struct pr_out *, uint64_t ref,
	    const struct reg_target *, enum pr_down_reason);
int	 proto_push_error(struct pr_out *, enum pr_err, const char *msg);
/* [2, "event", [sub, seq, kind, payload]], payload already encoded. */
int	 proto_push_event(struct pr_out *, uint64_t sub, uint64_t seq,
	    const char *kind, const void *payload, size_t len);
int	 proto_push_overflow(struct pr_out *, uint64_t sub, uint64_t seq);
int	 proto_push_acquired(struct pr_out *, const struct reg_name *);
int	 proto_push_acquired_cluster(struct pr_out *, const struct cl_entry *);
int	 proto_push_lost(struct pr_out *, const char *name, size_t len,
	    enum pr_down_reason);
/* [name, reason], an unregistered event's payload. */
int	 proto_put_name_reason(struct pr_out *, const char *name, size_t len,
	    enum pr_down_reason);
/* Already encoded bytes. */
int	 proto_put_raw(struct pr_out *, const void *p, size_t len);
int	 proto_push_shutdown(struct pr_out *, const char *reason);
/* The error notification "limit: out of memory" into a caller's buffer of
 * at least 64 bytes, with no allocation; its length (0: too small). */
size_t	 proto_oom_notice(char *buf, size_t size);

/* Encode a value alone (for storing it); the bytes are in the out. */
int	 proto_encode_value(struct pr_out *, const pr_value *);
/* The msgpack encoding of nil, the value of an entry registered bare. */
extern const char	proto_nil_value[1];

#endif /* PROTO_H */
