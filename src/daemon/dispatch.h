/*
 * dispatch.h: request handling.  Checks each decoded object's shape
 * through the protocol layer, runs the method's handler against the
 * registry, and queues the reply.
 */
#ifndef DISPATCH_H
#define DISPATCH_H

#include "proto.h"
#include "registry.h"

struct server;
struct conn;

/* Handle one decoded top-level object received from c. */
void	dispatch_object(struct server *, struct conn *, const pr_value *);
/* The registry's down callback: notify the monitor's holder. */
void	dispatch_down(void *srv, struct reg_client *holder, uint64_t ref,
	    const struct reg_target *target, enum pr_down_reason why);
/* The registry's event hook: subscriptions, awaits, acquired and lost. */
void	dispatch_event(void *srv, const struct reg_event *);
/* Send c an error notification (input that is not a request). */
void	dispatch_error_notify(struct server *, struct conn *, enum pr_err,
	    const char *msg);

#endif /* DISPATCH_H */
