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

/*
 * The connection layer's batch hook: peek at the names these framed
 * requests look up, hash them and hint the caches, for dispatch_request.
 */
void	dispatch_batch(void *srv, struct conn *, const char *p, size_t off,
	    const size_t *ends, size_t n);
/*
 * The connection layer's request hook: decode request i of the batch,
 * run its handler, queue the reply; *work is what it cost.  0, or the
 * decoder's negative errno (the connection is then closed).
 */
int	dispatch_request(void *srv, struct conn *, size_t i, const char *p,
	    size_t len, uint64_t *work);
/* The registry's down callback: notify the monitor's holder. */
void	dispatch_down(void *srv, struct reg_client *holder, uint64_t ref,
	    const struct reg_target *target, enum pr_down_reason why);
/* The registry's event hook: subscriptions, awaits, acquired and lost. */
void	dispatch_event(void *srv, const struct reg_event *);
/* Send c an error notification (input that is not a request). */
void	dispatch_error_notify(struct server *, struct conn *, enum pr_err,
	    const char *msg);

#endif /* DISPATCH_H */
