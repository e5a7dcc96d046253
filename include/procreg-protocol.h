/*
 * procreg-protocol.h: the one protocol table shared by procregd, libprocreg
 * and procregctl.  proto/PROTOCOL.md is the normative text; this header is
 * its machine-readable mirror and must change in the same commit.
 */
#ifndef PROCREG_PROTOCOL_H
#define PROCREG_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Bump PR_PROTOCOL_VERSION when methods, error codes, notification kinds or
 * map keys are added.  Existing meanings never change (PROTOCOL.md, "Room
 * to grow").
 */
#define PR_PROTOCOL_VERSION	3
#define PR_SERVER_NAME		"procreg"
#define PR_VERSION		"0.1.0"

/* msgpack-RPC message types. */
#define PR_MSG_REQUEST		0
#define PR_MSG_RESPONSE		1
#define PR_MSG_NOTIFY		2

/* Fixed limits of the wire format. */
#define PR_NAME_MAX		255	/* bytes of a name, a label, a list prefix */
#define PR_NESTING_MAX		30	/* nested arrays/maps in one message */
#define PR_LIST_DEFAULT		1000
#define PR_LIST_MAX		10000
#define PR_CODE_MAX		64	/* bytes of a callee's error code */
#define PR_CALL_TIMEOUT_DEFAULT	5000u	/* ms */
#define PR_CALL_TIMEOUT_MAX	86400000u /* ms: one day */

/* Defaults of the configurable limits (procregd --help lists the flags). */
#define PR_DEFAULT_MAX_MESSAGE	(1024u * 1024u)
#define PR_DEFAULT_MAX_NAMES	100000u		/* per connection */
#define PR_DEFAULT_MAX_MONITORS	100000u		/* per connection */
#define PR_DEFAULT_MAX_OUTBUF	(8u * 1024u * 1024u) /* per connection */
#define PR_DEFAULT_MAX_CONNS	10000u
#define PR_DEFAULT_DRAIN_MS	2000u
#define PR_DEFAULT_MAX_CALLS	100000u		/* pending, per caller */
#define PR_DEFAULT_HISTORY	10000u		/* events kept for resuming */
/* Unsent bytes all closing connections may hold together. */
#define PR_DEFAULT_MAX_DRAIN_BYTES	(64u * 1024u * 1024u)
/* The system daemon's (run as root) defaults; a user's daemon has none. */
#define PR_DEFAULT_MAX_CONNS_PER_UID_ROOT	256u
#define PR_DEFAULT_MAX_NAMES_PER_UID_ROOT	1000000u
#define PR_DEFAULT_RESERVED_CONNS_ROOT		8u
#define PR_HISTORY_BYTES	(64u * 1024u * 1024u) /* and their bytes */

/*
 * Error codes.  0 is success; the positive values map 1:1 to the wire's
 * error strings, in this order.
 */
enum pr_err {
	PR_OK = 0,
	PR_ERR_BAD_REQUEST,
	PR_ERR_UNKNOWN_METHOD,
	PR_ERR_TAKEN,
	PR_ERR_NOT_FOUND,
	PR_ERR_NOT_OWNER,
	PR_ERR_BUSY,
	PR_ERR_LIMIT,
	PR_ERR_TOO_LARGE,
	PR_ERR_FORBIDDEN,
	PR_ERR_TIMEOUT,
	PR_ERR_DOWN,
	PR_ERR_STALE,
	PR_ERR_UNAVAILABLE,
	PR_ERR__COUNT
};

/*
 * The method table, in PROTOCOL.md order: the one place a method is
 * declared.  X(ID, name, min params, max params, flags) generates the enum
 * below, the library's and the daemon's name and arity tables (src/common/pr.c)
 * and the daemon's handler table (dispatch.c, where a row without a
 * handler dispatch_<name> does not compile).  Adding a method is a row
 * here, its handler, and its library call, CLI command and spec section.
 *
 * PR_MF_NAME: the first param is the name of a registration, so the
 * daemon may look it up ahead of decoding (a cache hint for a batch).
 */
#define PR_MF_NAME	0x1u

#define PR_METHODS(X)						\
	X(HELLO,	 hello,		0, 1, 0)		\
	X(REGISTER,	 register,	1, 3, PR_MF_NAME)	\
	X(UNREGISTER,	 unregister,	1, 2, PR_MF_NAME)	\
	X(WHEREIS,	 whereis,	1, 2, PR_MF_NAME)	\
	X(SEND,		 send,		2, 3, PR_MF_NAME)	\
	X(MONITOR,	 monitor,	1, 1, PR_MF_NAME)	\
	X(DEMONITOR,	 demonitor,	1, 1, 0)		\
	X(LIST,		 list,		0, 4, 0)		\
	X(STATS,	 stats,		0, 0, 0)		\
	X(EVICT,	 evict,		1, 1, 0)		\
	X(CALL,		 call,		2, 3, PR_MF_NAME)	\
	X(REPLY,	 reply,		2, 3, 0)		\
	X(JOIN,		 join,		1, 2, 0)		\
	X(LEAVE,	 leave,		1, 1, 0)		\
	X(MEMBERS,	 members,	1, 1, 0)		\
	X(PUBLISH,	 publish,	2, 3, 0)		\
	X(UPDATE,	 update,	2, 3, PR_MF_NAME)	\
	X(KEYS,		 keys,		1, 1, 0)		\
	X(REGISTER_MANY, register_many,	1, 1, 0)		\
	X(AWAIT,	 await,		1, 2, PR_MF_NAME)	\
	X(QUEUE,	 queue,		1, 1, 0)		\
	X(SUBSCRIBE,	 subscribe,	1, 2, 0)		\
	X(UNSUBSCRIBE,	 unsubscribe,	1, 1, 0)		\
	X(NODES,	 nodes,		0, 0, 0)

enum pr_method {
#define PR_X_ENUM(id, name, lo, hi, fl)	PR_M_##id,
	PR_METHODS(PR_X_ENUM)
#undef PR_X_ENUM
	PR_M__COUNT
};

/* Reasons carried by a "down" notification. */
enum pr_down_reason {
	PR_DOWN_UNREGISTERED = 0,
	PR_DOWN_DISCONNECTED,
	PR_DOWN_NOPROC,
	PR_DOWN_EVICTED,
	PR_DOWN_REPLACED,
	PR_DOWN_NODEDOWN,
	PR_DOWN__COUNT
};

/* Server notification kinds. */
#define PR_PUSH_MESSAGE		"message"
#define PR_PUSH_DOWN		"down"
#define PR_PUSH_ERROR		"error"
#define PR_PUSH_SHUTDOWN	"shutdown"
#define PR_PUSH_CALL		"call"
#define PR_PUSH_PUBLISH		"publish"
#define PR_PUSH_ACQUIRED	"acquired"
#define PR_PUSH_LOST		"lost"
#define PR_PUSH_EVENT		"event"
#define PR_PUSH_OVERFLOW	"overflow"

/* The wire string of an error code, or NULL when out of range. */
const char	*pr_err_name(enum pr_err);
/* The wire string of a method, or NULL when out of range. */
const char	*pr_method_name(enum pr_method);
/* The method named by the len bytes at s, or -1. */
int		 pr_method_lookup(const char *s, size_t len);
/* Minimum and maximum number of params of a method. */
void		 pr_method_arity(enum pr_method, unsigned *min, unsigned *max);
/* The method's PR_MF_* flags. */
unsigned	 pr_method_flags(enum pr_method);
/* The wire string of a down reason, or NULL when out of range. */
const char	*pr_down_reason_name(enum pr_down_reason);

#endif /* PROCREG_PROTOCOL_H */
