/*
 * ctl.h: what procregctl's files share: the tool's state (struct ctl), the
 * command table's row, the exit statuses, the guardian and the waiter, and
 * each file's functions, under the file's name.
 */
#ifndef CTL_H
#define CTL_H

#include <sys/signalfd.h>

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <msgpack.h>

#include "procreg.h"

/* Exit statuses (hold exits with its command's own status). */
enum {
	EXIT_NO = 1,		/* a "no": not found, taken, busy, noproc,
				   down, forbidden, a callee's error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,	/* cannot connect, or the connection was lost */
	EXIT_ERROR = 4,		/* anything else */
	EXIT_LOST = 5,		/* hold, serve, recv: the name was taken
				   from us */
	EXIT_NOEXEC = 127	/* hold: the command cannot be run */
};

/* hold, serve: how long CMD's group has between SIGTERM and SIGKILL, ms
 * (--kill-after).  Enough for a service to shut down cleanly, short
 * enough that a lost name's old holder does not linger. */
#define KILL_AFTER_MS	5000

/* How often a command retries a lost daemon connection, ms. */
#define WAIT_RETRY_MS	100

/* Which commands take an option: one bit per command, C_TOP before one. */
enum {
	C_TOP = 1 << 0,
	C_WHEREIS = 1 << 1,
	C_LIST = 1 << 2,
	C_SEND = 1 << 3,
	C_HOLD = 1 << 4,
	C_RECV = 1 << 5,
	C_MONITOR = 1 << 6,
	C_STATS = 1 << 7,
	C_PING = 1 << 8,
	C_EVICT = 1 << 9,
	C_CALL = 1 << 10,
	C_SERVE = 1 << 11,
	C_JOIN = 1 << 12,
	C_MEMBERS = 1 << 13,
	C_PUBLISH = 1 << 14,
	C_KEYS = 1 << 15,
	C_AWAIT = 1 << 16,
	C_WATCH = 1 << 17,
	C_QUEUE = 1 << 18,
	C_NODES = 1 << 19,
	C_HELP = 1 << 20,	/* needs no daemon */
	C_ALL = (1 << 21) - 1
};

/* The parsed command line and the connection: all the tool's state. */
struct ctl {
	const struct command	*cmd;
	const char		*socket;	/* NULL: the default path */
	int			 timeout_ms;	/* 0: the library's default */
	bool			 json;
	bool			 json_payload;
	const char		*value;
	bool			 json_value;
	uint64_t		 count;		/* 0: not given */
	uint64_t		 interval_ms;
	bool			 conn;		/* NAME is a conn id */
	bool			 no_echo;
	uint64_t		 max_time_ms;	/* 0: none */
	uint64_t		 kill_after_ms;
	bool			 has_gen;
	uint64_t		 gen;
	bool			 wait;		/* hold --wait */
	bool			 allow_replacement;
	bool			 replace;
	bool			 groups;	/* watch --groups */
	bool			 has_since;
	uint64_t		 since;
	int64_t			 pid;		/* list --pid; 0: any */
	int64_t			 uid;		/* list --uid; -1: any */
	bool			 cluster;	/* --cluster: the cluster's
						   names (protocol 3) */
	bool			 local;		/* whereis --local */
	bool			 all;		/* list --all: local and
						   cluster */
	bool			 consistent;	/* whereis --consistent */
	bool			 no_reconnect;	/* --no-reconnect */
	bool			 reconnect;	/* auto_reconnect: the command's,
						   unless --no-reconnect */
	char			**args;		/* the operands */
	int			 nargs;
	procreg_t		*p;
};

struct command {
	const char	*name;
	int		(*run)(struct ctl *);
	unsigned	 bit;
	int		 min_args, max_args;	/* max -1: no limit */
	bool		 reconnect;	/* connect with auto_reconnect */
	const char	*synopsis;	/* the operands */
	const char	*summary;	/* one line for procregctl --help */
	const char	*help;		/* the rest of COMMAND --help */
};

/* CMD of hold or serve under its guardian (guard.c). */
struct guard {
	pid_t	 pid;		/* the guardian; 0: none */
	int	 fd;		/* our end of its socket; -1: none */
	bool	 eof;		/* the guardian closed its end */
	bool	 reported;	/* status came from the guardian */
	int	 status;	/* CMD's wait status */
};

/*
 * A command that waits: hold, recv, join, monitor, watch (and serve, for
 * what a reconnect tells).  Notifications reach on_event; signals (read
 * from sigfd) reach on_signal.  The loop ends when done is set.
 */
struct waiter {
	struct ctl	*c;
	int		 sigfd;		/* -1: none */
	void		(*on_signal)(struct waiter *,
			    const struct signalfd_siginfo *);
	void		(*on_event)(struct waiter *,
			    const struct procreg_event *);
	const char	*name;
	struct guard	 g;		/* hold: CMD's; pid 0: none yet */
	bool		 connected;	/* the daemon was there when last
					   looked at (auto_reconnect) */
	bool		 reconnected;	/* watch: the overflow to come is
					   the reconnect's, not ours */
	bool		 waiting;	/* hold --wait: queued for the name */
	bool		 lost;		/* hold, serve, recv: the name was
					   taken from us */
	struct procreg_subscribe_opts sopts;	/* watch */
	uint64_t	 sub;		/* watch: its subscription */
	uint64_t	 ref;		/* monitor */
	uint64_t	 received;	/* recv */
	bool		 daemon_error;	/* an error notification came */
	bool		 done;
	int		 exit;		/* the exit status once done */
};

/* run.c: hold's NAME is no longer ours: CMD is stopped, hold exits
 * EXIT_LOST once it has ended. */
void		 run_hold_lost(struct waiter *, const char *why);

/* args.c: the command line. */
int		 args_parse(struct ctl *, int, char **);
const struct command *args_find(const char *);
int		 args_unknown(const struct ctl *, const char *);
int		 args_help(struct ctl *);
int		 args_hidden(int, char **);
int		 args_error(const struct ctl *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
bool		 args_num(const char *, uint64_t, uint64_t, uint64_t *);
bool		 args_check_name(const struct ctl *, const char *);

/* out.c: what procregctl prints. */
int		 out_status_exit(int);
const char	*out_code(int);
int		 out_error(const struct ctl *, int, const char *, const char *,
		    const char *, ...) __attribute__((format(printf, 5, 6)));
int		 out_usage(const struct ctl *, const char *, const char *,
		    va_list) __attribute__((format(printf, 3, 0)));
int		 out_report(struct ctl *, int, const char *);
int		 out_unreachable(struct ctl *, const char *);
const char	*out_socket_path(const struct ctl *, char *, size_t);
bool		 out_json(json_t *, size_t);
json_t		*out_entry_json(const struct procreg_entry *);
json_t		*out_member_json(const struct procreg_member *);
char		*out_safe_text(const char *);
void		 out_fmt_age(char *, size_t, uint64_t);
void		 out_fmt_since_age(char *, size_t, uint64_t);
bool		 out_entry(const struct procreg_entry *);
bool		 out_payload(const void *, size_t, bool);
bool		 out_payload_line(const void *, size_t);

/* One row of a table (list, members), as the strings printed. */
#define OUT_NCOLS	7
struct out_row {
	char	*col[OUT_NCOLS];
};
void		 out_table(struct out_row *, size_t, size_t, size_t);
size_t		 out_tty_width(void);

/* value.c: values between msgpack, JSON and text. */
void		 value_scrub(char *, size_t);
char		*value_text(const void *, size_t);
char		*value_cell(const void *, size_t);
json_t		*value_json(const void *, size_t);
bool		 value_operand(const struct ctl *, const char *, const char *,
		    bool, msgpack_sbuffer *);
bool		 value_payload(const struct ctl *, const char *,
		    msgpack_sbuffer *);

/* guard.c: CMD in a process group of its own. */
int		 guard_foreground_tty(void);
bool		 guard_start(struct guard *, char **, const sigset_t *,
		    uint64_t, int, void (*)(void *), void *);
void		 guard_signal(struct guard *, int);
void		 guard_read(struct guard *, bool);
bool		 guard_reap(struct guard *, bool, int *);

/* wait.c: waiting for notifications and signals. */
int		 wait_signals(const int *, size_t, sigset_t *);
int		 wait_loop(struct waiter *);
void		 wait_went_away(struct waiter *);
void		 wait_reconnected(procreg_t *, int, const char *const *, size_t,
		    void *);
void		 wait_stop(struct waiter *, const struct signalfd_siginfo *);

/* names.c: whereis, await, list, keys, queue, nodes. */
int		 names_whereis(struct ctl *);
int		 names_await(struct ctl *);
int		 names_list(struct ctl *);
int		 names_keys(struct ctl *);
int		 names_queue(struct ctl *);
int		 names_nodes(struct ctl *);
int		 names_register_opts(struct ctl *, const char *, const void *,
		    size_t, unsigned, uint32_t *);
int		 names_register(struct ctl *, const char *, const void *,
		    size_t);

/* msg.c: send, call, recv. */
int		 msg_send(struct ctl *);
int		 msg_call(struct ctl *);
int		 msg_recv(struct ctl *);
bool		 msg_target(const struct ctl *, const char *, uint64_t *);
void		 msg_recv_event(struct waiter *, const struct procreg_event *);

/* run.c: hold and serve, which run CMD while they hold NAME. */
int		 run_hold(struct ctl *);
int		 run_serve(struct ctl *);

/* groups.c: join, members, publish. */
int		 groups_join(struct ctl *);
int		 groups_members(struct ctl *);
int		 groups_publish(struct ctl *);

/* events.c: watch and monitor. */
int		 events_watch(struct ctl *);
int		 events_monitor(struct ctl *);

/* admin.c: stats, ping, evict. */
int		 admin_stats(struct ctl *);
int		 admin_ping(struct ctl *);
int		 admin_evict(struct ctl *);

#endif /* CTL_H */
