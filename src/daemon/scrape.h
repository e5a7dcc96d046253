/*
 * scrape.h: the opt-in metrics listener (procreg.conf's `metrics`,
 * --metrics): GET /metrics on a loopback or private address answers the
 * daemon's counters in the Prometheus text format (metrics.h).  It runs
 * on the daemon's loop through libevent's HTTP server; a scrape costs a
 * walk over the connections (for the unsent bytes), nothing on the
 * request path.
 */
#ifndef SCRAPE_H
#define SCRAPE_H

struct server;

/* Start listening on s->cfg.metrics when set: 0, or -1 after logging
 * why (the address is taken, ...). */
int	 scrape_start(struct server *);
/* Stop listening and drop the scrapes in flight. */
void	 scrape_stop(struct server *);

#endif /* SCRAPE_H */
