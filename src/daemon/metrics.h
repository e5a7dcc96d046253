/*
 * metrics.h: what the daemon counts for operators (requests per method,
 * answers per error code, a latency histogram per method) and its text in
 * the Prometheus exposition format.  Plain data and a printer: the
 * listener that serves it is the server's.
 *
 * The request path pays one increment per request and, for one request
 * in METRICS_SAMPLE, two reads of the monotonic clock: the histograms are
 * of a sample, which is what a percentile needs and all a hot path can
 * afford.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "procreg-protocol.h"

struct evbuffer;

/* One request in this many is timed. */
#define METRICS_SAMPLE		64u
/* Histogram buckets: 1 µs, 2 µs, ... 2^(N-1) µs, then +Inf. */
#define METRICS_BUCKETS		21

struct metrics_hist {
	uint64_t	 le[METRICS_BUCKETS + 1];	/* last: +Inf */
	uint64_t	 count;
	uint64_t	 sum_ns;
};

struct metrics {
	uint64_t		 requests[PR_M__COUNT];
	uint64_t		 bad_requests;	/* no method to count under */
	uint64_t		 errors[PR_ERR__COUNT];	/* answers per code */
	uint64_t		 evictions;
	uint64_t		 tick;		/* requests, for sampling */
	struct metrics_hist	 latency[PR_M__COUNT];
};

/* What the daemon holds now, read when the page is printed. */
struct metrics_gauges {
	uint64_t	 names, connections, draining, monitors, calls, awaits,
			 groups, members, subscriptions, unsent_bytes,
			 history_events, connections_total, messages, downs,
			 notifications_ignored, replies_late, uptime_ms, seq;
};

/* Should the request about to be served be timed? */
static inline bool
metrics_sample(struct metrics *m)
{
	return (++m->tick % METRICS_SAMPLE) == 0;
}

/* A request of this method was served, answered with err (PR_OK: not an
 * error). */
static inline void
metrics_request(struct metrics *m, enum pr_method method, enum pr_err err)
{
	m->requests[method]++;
	if (err != PR_OK && (unsigned)err < PR_ERR__COUNT)
		m->errors[err]++;
}

/* A sampled request of this method took ns nanoseconds. */
void	 metrics_latency(struct metrics *, enum pr_method, uint64_t ns);
/*
 * Append the exposition text of the counters and the gauges to out:
 * 0, or -1 when out could not grow.
 */
int	 metrics_print(const struct metrics *, const struct metrics_gauges *,
	    struct evbuffer *out);

#endif /* METRICS_H */
