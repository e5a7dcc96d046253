/*
 * metrics.c: the operators' counters and their Prometheus text (see
 * metrics.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "metrics.h"

void
metrics_latency(struct metrics *m, enum pr_method method, uint64_t ns)
{
	struct metrics_hist *h = &m->latency[method];
	uint64_t us = ns / 1000u, bound = 1;
	size_t i;

	/* The first bucket whose bound (1, 2, 4, ... µs) holds it. */
	for (i = 0; i < METRICS_BUCKETS && us > bound; i++)
		bound <<= 1;
	h->le[i]++;
	h->count++;
	h->sum_ns += ns;
}

/* Append printf-style text; -1 when out could not grow. */
static int
metrics_add(struct evbuffer *out, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	return r < 0 ? -1 : 0;
}

/* A metric's HELP and TYPE lines. */
static int
metrics_head(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	return metrics_add(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static int
metrics_gauge(struct evbuffer *out, const char *name, const char *help,
    uint64_t v)
{
	if (metrics_head(out, name, "gauge", help) < 0)
		return -1;
	return metrics_add(out, "%s %llu\n", name, (unsigned long long)v);
}

static int
metrics_counter(struct evbuffer *out, const char *name, const char *help,
    uint64_t v)
{
	if (metrics_head(out, name, "counter", help) < 0)
		return -1;
	return metrics_add(out, "%s_total %llu\n", name,
	    (unsigned long long)v);
}

static int
metrics_print_hist(const struct metrics *m, struct evbuffer *out)
{
	const char *name = "procreg_request_duration_seconds";

	if (metrics_head(out, name, "histogram", "time the daemon spent "
	    "serving a request, decoding to queued answer, for a sample of "
	    "one request in 64") < 0)
		return -1;
	for (int k = 0; k < PR_M__COUNT; k++) {
		const struct metrics_hist *h = &m->latency[k];
		const char *mn = pr_method_name((enum pr_method)k);
		uint64_t cum = 0, bound = 1;

		for (size_t i = 0; i < METRICS_BUCKETS; i++, bound <<= 1) {
			cum += h->le[i];
			if (metrics_add(out, "%s_bucket{method=\"%s\",le=\"%g\"} "
			    "%llu\n", name, mn, (double)bound / 1e6,
			    (unsigned long long)cum) < 0)
				return -1;
		}
		cum += h->le[METRICS_BUCKETS];
		if (metrics_add(out, "%s_bucket{method=\"%s\",le=\"+Inf\"} "
		    "%llu\n%s_sum{method=\"%s\"} %.9f\n"
		    "%s_count{method=\"%s\"} %llu\n", name, mn,
		    (unsigned long long)cum, name, mn, (double)h->sum_ns / 1e9,
		    name, mn, (unsigned long long)h->count) < 0)
			return -1;
	}
	return 0;
}

int
metrics_print(const struct metrics *m, const struct metrics_gauges *g,
    struct evbuffer *out)
{
	static const struct {
		const char	*name, *help;
		size_t		 off;
	} gauges[] = {
#define G(n, h)	{ "procreg_" #n, h, offsetof(struct metrics_gauges, n) }
		G(names, "names registered"),
		G(connections, "client connections open"),
		G(draining, "closed connections still sending their last "
		    "replies"),
		G(monitors, "monitors held"),
		G(calls, "calls pending"),
		G(awaits, "awaits pending"),
		G(groups, "groups with members"),
		G(members, "group memberships"),
		G(subscriptions, "subscriptions open"),
		G(unsent_bytes, "bytes queued for clients, not yet sent"),
		G(history_events, "events kept for subscribers that resume"),
		G(seq, "sequence number of the last event"),
		G(uptime_ms, "milliseconds since the daemon started"),
#undef G
	}, counters[] = {
#define C(n, f, h)	{ "procreg_" n, h, offsetof(struct metrics_gauges, f) }
		C("connections_accepted", connections_total,
		    "client connections accepted"),
		C("messages", messages, "messages delivered"),
		C("downs", downs, "down notifications sent"),
		C("notifications_ignored", notifications_ignored,
		    "notifications from clients, which need no answer"),
		C("replies_late", replies_late,
		    "replies to calls that had already ended"),
#undef C
	};

	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		if (metrics_gauge(out, gauges[i].name, gauges[i].help,
		    *(const uint64_t *)(const void *)((const char *)g +
		    gauges[i].off)) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		uint64_t v = *(const uint64_t *)(const void *)((const char *)g +
		    counters[i].off);

		if (metrics_counter(out, counters[i].name, counters[i].help,
		    v) < 0)
			return -1;
	}
	if (metrics_counter(out, "procreg_evictions", "names evicted",
	    m->evictions) < 0)
		return -1;
	if (metrics_head(out, "procreg_requests", "counter", "requests "
	    "served, by method") < 0)
		return -1;
	for (int k = 0; k < PR_M__COUNT; k++) {
		if (metrics_add(out, "procreg_requests_total{method=\"%s\"} "
		    "%llu\n", pr_method_name((enum pr_method)k),
		    (unsigned long long)m->requests[k]) < 0)
			return -1;
	}
	if (metrics_counter(out, "procreg_bad_requests", "requests refused "
	    "before any method ran (malformed, unknown method, wrong arity)",
	    m->bad_requests) < 0)
		return -1;
	if (metrics_head(out, "procreg_errors", "counter", "error answers, "
	    "by code (busy: the target's queue was full)") < 0)
		return -1;
	for (int e = 1; e < PR_ERR__COUNT; e++) {
		if (metrics_add(out, "procreg_errors_total{code=\"%s\"} %llu\n",
		    pr_err_name((enum pr_err)e),
		    (unsigned long long)m->errors[e]) < 0)
			return -1;
	}
	return metrics_print_hist(m, out);
}
