/*
 * scrape.c: the metrics listener (see scrape.h).
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "now.h"
#include "scrape.h"
#include "server.h"

/* A scraper gets this long to send its request and read the page. */
#define SCRAPE_TIMEOUT_S	10
/* A GET has no body; its headers fit in this. */
#define SCRAPE_MAX_HEADERS	8192

/* What the server holds now, for the page's gauges. */
static void
scrape_gauges(const struct server *s, struct metrics_gauges *g)
{
	memset(g, 0, sizeof(*g));
	g->names = s->reg.nnames;
	g->connections = s->conns.nconns - s->conns.ndraining;
	g->draining = s->conns.ndraining;
	g->monitors = s->reg.nmonitors;
	g->calls = s->calls.pending;
	g->awaits = s->calls.nawaits;
	g->groups = s->reg.ngroups;
	g->members = s->reg.nmembers;
	g->subscriptions = s->subs.nsubs;
	g->unsent_bytes = conn_table_unsent(&s->conns);
	g->history_events = s->subs.count;
	g->connections_total = s->conns.opened;
	g->messages = s->stats.messages;
	g->downs = s->stats.downs;
	g->notifications_ignored = s->stats.notifications_ignored;
	g->replies_late = s->calls.replies_late;
	g->uptime_ms = now_mono_ms() - s->start_mono_ms;
	g->seq = subs_seq(&s->subs);
}

static void
scrape_cb(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	struct metrics_gauges g;
	struct evbuffer *out;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, 405, "GET /metrics");
		return;
	}
	if ((out = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 503, "out of memory");
		return;
	}
	scrape_gauges(s, &g);
	if (metrics_print(&s->metrics, &g, out) < 0) {
		evhttp_send_error(req, 503, "out of memory");
		evbuffer_free(out);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* Anything but /metrics. */
static void
scrape_other_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, 404, "the metrics are at /metrics");
}

int
scrape_start(struct server *s)
{
	char host[64];
	uint16_t port;

	if (s->cfg.metrics[0] == '\0')
		return 0;
	if (config_parse_addr(s->cfg.metrics, host, sizeof(host), &port) < 0) {
		log_err(&s->log, "metrics: bad address %s", s->cfg.metrics);
		return -1;
	}
	if ((s->scrape = evhttp_new(s->base)) == NULL) {
		log_err(&s->log, "metrics: out of memory");
		return -1;
	}
	evhttp_set_timeout(s->scrape, SCRAPE_TIMEOUT_S);
	evhttp_set_max_headers_size(s->scrape, SCRAPE_MAX_HEADERS);
	evhttp_set_max_body_size(s->scrape, 0);
	evhttp_set_allowed_methods(s->scrape, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD);
	evhttp_set_cb(s->scrape, "/metrics", scrape_cb, s);
	evhttp_set_gencb(s->scrape, scrape_other_cb, s);
	/* A numeric address: resolving it cannot block the loop. */
	if (evhttp_bind_socket(s->scrape, host, port) < 0) {
		log_err(&s->log, "metrics: cannot listen on %s",
		    s->cfg.metrics);
		evhttp_free(s->scrape);
		s->scrape = NULL;
		return -1;
	}
	log_info(&s->log, "metrics on http://%s/metrics", s->cfg.metrics);
	return 0;
}

void
scrape_stop(struct server *s)
{
	if (s->scrape != NULL)
		evhttp_free(s->scrape);
	s->scrape = NULL;
}
