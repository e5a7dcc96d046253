/*
 * testlib.h: helpers for the integration tests: start the real procregd
 * on a private socket, talk msgpack-RPC to it through real sockets.
 * Every wait is bounded by a timeout so a broken daemon fails a test
 * rather than hanging it.  Tests never assert on elapsed time.
 */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <sys/types.h>
#include <sys/un.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define T_TIMEOUT_MS	10000	/* the longest any wait may take */
#define T_POLL_ROUNDS	1000	/* bounded polls: rounds of T_POLL_US */
#define T_POLL_US	10000

struct tdaemon {
	pid_t	 pid;
	char	 dir[64];
	char	 path[128];
};

struct tclient {
	int			 fd;
	msgpack_unpacker	 unp;
	msgpack_unpacked	 res;
	uint32_t		 next_msgid;
};

/* A packer over a growable buffer, for building requests. */
struct tpack {
	msgpack_sbuffer	 buf;
	msgpack_packer	 pk;
};

/* The path of the procregd binary ($PROCREGD, else ./procregd). */
const char	*t_procregd(void);
/* How to run the daemon beyond its arguments. */
struct tdaemon_opts {
	unsigned long	 nofile;	/* RLIMIT_NOFILE, 0: inherited */
	unsigned long	 as;		/* RLIMIT_AS bytes, 0: inherited */
	const char	*log;		/* stderr to this file, NULL: none */
};

/* Start procregd on a fresh temporary socket with extra args (NULL-ended
 * list); returns when the socket accepts connections.  Aborts the test on
 * failure. */
void		 t_daemon_start(struct tdaemon *, ...);
/* The same with options. */
void		 t_daemon_start_opts(struct tdaemon *,
		    const struct tdaemon_opts *, ...);
/* SIGTERM, wait, check a clean exit (0), remove the directory. */
void		 t_daemon_stop(struct tdaemon *);
/* Is the daemon process still running? */
bool		 t_daemon_alive(struct tdaemon *);

struct tclient	*t_connect(const char *path);
void		 t_close(struct tclient *);
/* Send raw bytes, all of them. */
int		 t_send_try(struct tclient *, const void *p, size_t len);
void		 t_send_raw(struct tclient *, const void *p, size_t len);
void		 t_send_pack(struct tclient *, struct tpack *);
/* The next object from the daemon, valid until the next t_recv on this
 * client; NULL on EOF or timeout (timeout_ms < 0: T_TIMEOUT_MS). */
msgpack_object	*t_recv(struct tclient *, int timeout_ms);
/* Wait (bounded) until the daemon has read every byte sent on c, so
 * that what is sent next arrives in a read of its own. */
void		 t_wait_drained(struct tclient *);
/* True when the daemon closed the connection (EOF) within the timeout,
 * discarding anything received before. */
bool		 t_wait_eof(struct tclient *, int timeout_ms);

void		 tp_init(struct tpack *);
void		 tp_free(struct tpack *);
void		 tp_reset(struct tpack *);
/* [0, msgid, method, [ then nparams params to follow. */
void		 tp_req(struct tpack *, uint32_t msgid, const char *method,
		    uint32_t nparams);
void		 tp_str(struct tpack *, const char *);
void		 tp_strn(struct tpack *, const char *, size_t);
void		 tp_uint(struct tpack *, uint64_t);
void		 tp_int(struct tpack *, int64_t);
void		 tp_nil(struct tpack *);
void		 tp_arr(struct tpack *, uint32_t);
void		 tp_map(struct tpack *, uint32_t);
/* Begin a request in p with c's next msgid, appending to what p holds
 * (so that requests can be pipelined); returns the msgid. */
uint32_t	 rq_begin(struct tclient *, struct tpack *p, const char *method,
		    uint32_t nparams);
/* Send what p holds and empty it. */
void		 rq_send(struct tclient *, struct tpack *p);

/*
 * One-call requests built from a tiny format: each char of fmt is a param:
 * 's' const char *, 'u' uint64_t, 'i' int64_t, 'n' nil, 't' true; and
 * '{' ... '}' is one param, a map whose keys and values alternate inside
 * (no map within): "s{su}" packs "x", "gen", (uint64_t)1 as
 * ["x", {"gen": 1}].
 */
uint32_t	 t_request(struct tclient *, const char *method,
		    const char *fmt, ...);
/* Receive the reply to msgid (checking that the next object is it and
 * is a success) and return its result. */
msgpack_object	*t_ok(struct tclient *, uint32_t msgid);
/* Receive the reply to msgid and check that it is an error with code. */
void		 t_err(struct tclient *, uint32_t msgid, const char *code);
/* Call and return the result / check the error. */
msgpack_object	*t_call_ok(struct tclient *, const char *method,
		    const char *fmt, ...);
void		 t_call_err(struct tclient *, const char *code,
		    const char *method, const char *fmt, ...);
/* Receive a notification of the given kind and return its params. */
msgpack_object	*t_push(struct tclient *, const char *kind);

/* Object helpers. */
bool		 o_is_str(const msgpack_object *, const char *);
msgpack_object	*o_get(const msgpack_object *map, const char *key);
uint64_t	 o_uint(const msgpack_object *);
/* Element i of an array object, bounds-checked. */
msgpack_object	*at(const msgpack_object *a, uint32_t i);
/* Is o equal to the (first) object packed in p? */
bool		 obj_eq(const msgpack_object *o, const struct tpack *p);

/* Checks of received objects: each fails the test unless o is as said. */
void		 check_str(const msgpack_object *o, const char *want);
void		 check_bool(const msgpack_object *o, bool want);
void		 check_nil(const msgpack_object *o);
/* The map has exactly these keys, in this order (NULL-ended). */
void		 check_keys(const msgpack_object *map, const char *const *keys);
/* The keys of an entry and of a member entry, in order (NULL-ended). */
extern const char *const entry_keys[];
extern const char *const member_keys[];
/* The fields of an entry or member entry that a connection of process
 * pid made: that pid, this process's uid and gid, since in epoch
 * milliseconds, a gen from 1.  Returns the gen. */
uint64_t	 check_made_by(const msgpack_object *e, pid_t pid);
/* The params [ref, name, reason] of a down push for a monitor on a name. */
void		 check_down_name(const msgpack_object *pa, uint64_t ref,
		    const char *name, const char *reason);
/* The next object on c is that down push. */
void		 expect_down(struct tclient *, uint64_t ref, const char *name,
		    const char *reason);

/* c's connection id, from hello. */
uint64_t	 t_conn_id(struct tclient *);
/* A stats gauge or counter by name. */
uint64_t	 t_stat(struct tclient *, const char *key);
/* Poll stats (bounded) until key reads want. */
void		 t_wait_stat(struct tclient *, const char *key, uint64_t want);
/* The same until the three gauges read these values. */
void		 t_wait_gauges(struct tclient *, uint64_t conns, uint64_t names,
		    uint64_t monitors);
/* The address of the Unix socket path (cut to fit sun_path). */
void		 t_unix_addr(struct sockaddr_un *, const char *path);

/* Is the daemon run under valgrind ($PROCREGD names the wrapper)?  Tests
 * scale their loops of thousands down then. */
bool		 t_under_valgrind(void);
/* Raise this process's soft RLIMIT_NOFILE to at least n (within the hard
 * limit); daemons started afterwards inherit it.  Fails the test when the
 * hard limit is lower. */
void		 t_raise_nofile(unsigned long n);

/* Shared by the check_daemon_* suites. */

#define QUIET_MS	300	/* "nothing more arrives" window */

/* Nothing but EOF follows. */
void		 expect_eof(struct tclient *c);

/* Nothing arrives within QUIET_MS, the connection is not closed, and a
 * request sent now is answered before anything else arrives. */
void		 t_expect_quiet(struct tclient *c);

/* The connection is in sync and usable: a request gets its reply. */
void		 expect_usable(struct tclient *c);

/* Receive a message push from sender to name; return its payload. */
msgpack_object	*expect_message(struct tclient *c, const char *name,
		    uint64_t sender);

/*
 * A request whose own push may come before or after its response (§2):
 * receive both; the result must equal want_result and the push want_push.
 */
void		 expect_result_and_push(struct tclient *c, uint32_t id,
		    const struct tpack *want_result,
		    const struct tpack *want_push);

/* The same for a result `true`. */
void		 expect_true_and_push(struct tclient *c, uint32_t id,
		    const struct tpack *want);

/*
 * The reply to id is the error code; its message is a UTF-8 str that does
 * not echo the client's bytes (§2), here the str `echo`.
 */
void		 expect_err_no_echo(struct tclient *c, uint32_t id,
		    const char *code, const char *echo);

/* A first client, once the daemon has forgotten t_daemon_start's probe
 * connection (its close is processed asynchronously). */
struct tclient	*connect_first(struct tdaemon *d);

/* A string of n copies of ch (caller frees). */
char		*t_filled(size_t n, char ch);

/* A register request whose value is a str of vlen bytes. */
uint32_t	 register_with_str(struct tclient *c, struct tpack *p,
		    const char *name, size_t vlen);

/* A value with every msgpack type whose identity the spec promises. */
void		 pack_rich_value(struct tpack *p);

/* register [name bytes] answers bad_request; the connection stays
 * usable. */
void		 bad_name(struct tclient *c, const char *method, const char *s,
		    size_t len);

#define BUSY_PAYLOAD	1000

#define BUSY_MAX_TRIES	20000	/* far above any socket buffer */

/* send [name, [seq, 1000-byte str]]; true on success, false on busy. */
bool		 send_seq(struct tclient *c, const char *name, uint64_t seq,
		    const char *fill);

/* The encoded size of an object (the daemon encodes as msgpack-c does:
 * shortest integers, same headers). */
size_t		 packed_size(const msgpack_object *o);

extern const char *const stats_keys[];

#define NO_CONN		999999		/* a connection id never handed out */

/* An array of str exactly equal to these (NULL-terminated). */
void		 check_strs(const msgpack_object *a, const char *const *want);

/* Append the object packed in obj to p (a param of a request begun in
 * p). */
void		 tp_append(struct tpack *p, const struct tpack *obj);

/* [obj, "payload"] as the params of method: bad_request. */
void		 bad_target(struct tclient *c, const char *method,
		    const struct tpack *obj);

/* Targets that are neither a name nor a connection id, packed in turn
 * into obj and handed to fn. */
void		 for_bad_targets(struct tclient *c, const char *method,
		    void (*fn)(struct tclient *, const char *,
		    const struct tpack *));

/* A register_many request of n entries: names[i] with the str value
 * values[i], or no value when values is NULL or values[i] is NULL. */
uint32_t	 register_many(struct tclient *c, const char *const *names,
		    const char *const *values);

#endif /* TESTLIB_H */
