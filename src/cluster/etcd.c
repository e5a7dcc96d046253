/*
 * etcd.c: the etcd client's transport (see etcd.h): endpoints and their
 * fail-over, one HTTP connection per request, timeouts, TLS, the answers'
 * bounds and decoding, and watches over a streamed answer.
 *
 * Each request has a connection of its own: libevent queues requests on a
 * connection one behind the other, so a shared one would make every
 * request wait for a slow one, and a watch holds its connection for as
 * long as it lives.  (Reusing idle connections, to spare TLS handshakes,
 * is left for when the cluster code measures it.)  A connection is never
 * freed inside one of its own callbacks, where libevent still uses it:
 * a finished operation goes to a list that a deferred event empties.
 */
#include <sys/queue.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "etcd_impl.h"
#include "jsplit.h"
#include "now.h"

#define ETCD_MAX_HEADERS	(64 * 1024)
/* A watch's stream may idle: progress notices come every 10 min. */
#define ETCD_WATCH_IDLE_S	3600

enum etcd_ep_state { ETCD_EP_UNKNOWN, ETCD_EP_UP, ETCD_EP_DOWN };

struct etcd_ep {
	char			*url;
	char			*host;		/* no IPv6 brackets */
	char			*hosthdr;	/* Host: as in the URL */
	int			 port;
	bool			 tls;
	enum etcd_ep_state	 state;
	char			 err[128];
};

struct etcd_op {
	TAILQ_ENTRY(etcd_op)	 link;
	struct etcd		*e;
	enum etcd_opkind	 kind;
	char			*body;
	size_t			 body_len;
	int			 attempt;
	size_t			 ep;		/* endpoint of this attempt */
	struct evhttp_connection *evcon;
	struct evhttp_connection *old;	/* the last attempt's, to free */
	struct event		*timer;
	int			 http_err;	/* evhttp's error, or -1 */
	bool			 finished;
	bool			 bulk;		/* counts under ETCD_MAX_INFLIGHT */
	uint64_t		 queued_us;	/* waiting for its turn since */
	uint64_t		 sent_us;
	etcd_cb			*cb;
	etcd_watch_cb		*wcb;
	void			*arg;
	/* Watches. */
	struct jsplit		 js;
	bool			 created;
	int64_t			 start_rev;
	int64_t			 last_rev;
	char			 errmsg[192];
};

/* A watch handle is its operation. */
struct etcd_watch {
	struct etcd_op		 op;
};

TAILQ_HEAD(etcd_ops, etcd_op);

struct etcd {
	struct event_base	*base;
	struct evdns_base	*dns;
	SSL_CTX			*ssl;
	struct etcd_ep		*eps;
	size_t			 neps;
	size_t			 cur;
	struct timeval		 timeout;
	size_t			 max_body;
	struct etcd_ops		 live;
	struct etcd_ops		 done;
	struct etcd_ops		 waiting;	/* not sent yet: the cap */
	size_t			 inflight;
	size_t			 nbulk;		/* reads and writes sent */
	size_t			 nwaiting;
	struct event		*reap;
};

static const struct {
	const char	*path;
	bool		 idempotent;
} etcd_kinds[] = {
	[ETCD_OP_GRANT] =	{ "/v3/lease/grant", false },
	[ETCD_OP_KEEPALIVE] =	{ "/v3/lease/keepalive", true },
	[ETCD_OP_REVOKE] =	{ "/v3/lease/revoke", false },
	[ETCD_OP_TTL] =		{ "/v3/lease/timetolive", true },
	[ETCD_OP_TXN] =		{ "/v3/kv/txn", false },
	[ETCD_OP_RANGE] =	{ "/v3/kv/range", true },
	[ETCD_OP_DELRANGE] =	{ "/v3/kv/deleterange", false },
	[ETCD_OP_COMPACT] =	{ "/v3/kv/compaction", false },
	[ETCD_OP_WATCH] =	{ "/v3/watch", true },
};

static int	etcd_send(struct etcd_op *);
static void	etcd_op_error(struct etcd_op *, int, const char *, ...)
	    __attribute__((format(printf, 3, 4)));

const char *
etcd_strerror(int status)
{
	switch (status) {
	case ETCD_OK:
		return "ok";
	case ETCD_NOLEASE:
		return "no such lease";
	case ETCD_COMPACTED:
		return "revision compacted";
	case ETCD_REFUSED:
		return "refused by etcd";
	case -ETIMEDOUT:
		return "timed out";
	case -ECONNREFUSED:
		return "etcd unavailable";
	case -EPROTO:
		return "bad answer from etcd";
	case -EMSGSIZE:
		return "answer too large";
	case -ENOMEM:
		return "out of memory";
	case -EINVAL:
		return "invalid argument";
	case -E2BIG:
		return "too many operations";
	default:
		return "error";
	}
}

/* Parse one URL into ep. */
static int
etcd_ep_parse(struct etcd_ep *ep, const char *url, size_t len, char *err,
    size_t errlen)
{
	struct evhttp_uri *u = NULL;
	const char *scheme, *host, *path;
	char buf[512];
	size_t hl;
	int rc = -EINVAL;

	if (len == 0 || len >= sizeof(buf)) {
		snprintf(err, errlen, "bad etcd endpoint: %.*s", (int)len, url);
		return -EINVAL;
	}
	memcpy(buf, url, len);
	buf[len] = '\0';
	if ((u = evhttp_uri_parse(buf)) == NULL ||
	    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL || *host == '\0' ||
	    evhttp_uri_get_userinfo(u) != NULL ||
	    evhttp_uri_get_query(u) != NULL ||
	    evhttp_uri_get_fragment(u) != NULL ||
	    ((path = evhttp_uri_get_path(u)) != NULL && *path != '\0' &&
	    strcmp(path, "/") != 0)) {
		snprintf(err, errlen, "bad etcd endpoint: %s", buf);
		goto fail;
	}
	if (strcmp(scheme, "https") == 0)
		ep->tls = true;
	else if (strcmp(scheme, "http") != 0) {
		snprintf(err, errlen, "etcd endpoint not http or https: %s",
		    buf);
		goto fail;
	}
	ep->port = evhttp_uri_get_port(u);
	if (ep->port <= 0)
		ep->port = 2379;
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	rc = -ENOMEM;
	ep->url = strdup(buf);
	ep->host = strndup(host, hl);
	if (ep->url == NULL || ep->host == NULL)
		goto fail;
	if (asprintf(&ep->hosthdr, "%s:%d", evhttp_uri_get_host(u),
	    ep->port) < 0) {
		ep->hosthdr = NULL;
		goto fail;
	}
	evhttp_uri_free(u);
	return 0;
fail:
	if (u != NULL)
		evhttp_uri_free(u);
	return rc;
}

static bool
etcd_host_numeric(const char *host)
{
	unsigned char a[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, a) == 1 ||
	    inet_pton(AF_INET6, host, a) == 1;
}

/* The TLS context: the CA to trust, our certificate, peers verified. */
static int
etcd_tls_init(struct etcd *e, const struct etcd_config *c, char *err,
    size_t errlen)
{
	if ((e->ssl = SSL_CTX_new(TLS_client_method())) == NULL)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(e->ssl, TLS1_2_VERSION);
	SSL_CTX_set_verify(e->ssl, SSL_VERIFY_PEER, NULL);
	if ((c->ca_file != NULL ? SSL_CTX_load_verify_locations(e->ssl,
	    c->ca_file, NULL) : SSL_CTX_set_default_verify_paths(e->ssl)) !=
	    1) {
		snprintf(err, errlen, "etcd CA %s: cannot load",
		    c->ca_file ? c->ca_file : "(system)");
		return -EINVAL;
	}
	if ((c->cert_file == NULL) != (c->key_file == NULL)) {
		snprintf(err, errlen, "etcd client certificate and key go "
		    "together");
		return -EINVAL;
	}
	if (c->cert_file != NULL &&
	    (SSL_CTX_use_certificate_chain_file(e->ssl, c->cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(e->ssl, c->key_file,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(e->ssl) != 1)) {
		snprintf(err, errlen, "etcd client certificate %s or key %s: "
		    "cannot load", c->cert_file, c->key_file);
		return -EINVAL;
	}
	ERR_clear_error();
	return 0;
}

/* Free op, its connections and timer. */
static void
etcd_op_free(struct etcd_op *op)
{
	if (op->evcon != NULL)
		evhttp_connection_free(op->evcon);
	if (op->old != NULL)
		evhttp_connection_free(op->old);
	if (op->timer != NULL)
		event_free(op->timer);
	jsplit_deinit(&op->js);
	free(op->body);
	free(op);
}

/*
 * Send what waits for its turn, as room frees up.  Reads and writes
 * beyond ETCD_MAX_INFLIGHT wait here (keep-alives and watches never do:
 * a burst of writes must not starve the lease); one that waited longer
 * than the request timeout was never sent, so it fails "unavailable"
 * with a known outcome: nothing was applied.
 */
static void
etcd_pump(struct etcd *e)
{
	struct etcd_op *op;
	uint64_t now = now_mono_us(), max_us = (uint64_t)e->timeout.tv_sec *
	    1000000 + (uint64_t)e->timeout.tv_usec;
	int rc;

	while ((op = TAILQ_FIRST(&e->waiting)) != NULL &&
	    e->nbulk < ETCD_MAX_INFLIGHT) {
		TAILQ_REMOVE(&e->waiting, op, link);
		e->nwaiting--;
		TAILQ_INSERT_TAIL(&e->live, op, link);
		e->inflight++;
		if (now - op->queued_us > max_us) {
			op->bulk = false;	/* never counted in nbulk */
			etcd_op_error(op, -ECONNREFUSED, "not sent: %d requests "
			    "to etcd were in flight for longer than the timeout",
			    ETCD_MAX_INFLIGHT);
			continue;
		}
		e->nbulk++;
		if ((rc = etcd_send(op)) != 0)
			etcd_op_error(op, rc, "cannot send the request");
	}
}

/* Free every connection that is no longer in use (a deferred event). */
static void
etcd_reap(evutil_socket_t fd, short what, void *arg)
{
	struct etcd *e = arg;
	struct etcd_op *op;

	(void)fd;
	(void)what;
	TAILQ_FOREACH(op, &e->live, link) {
		if (op->old != NULL) {
			evhttp_connection_free(op->old);
			op->old = NULL;
		}
	}
	while ((op = TAILQ_FIRST(&e->done)) != NULL) {
		TAILQ_REMOVE(&e->done, op, link);
		etcd_op_free(op);
	}
	etcd_pump(e);
}

int
etcd_new(struct etcd **ep, struct event_base *base,
    const struct etcd_config *c, char *err, size_t errlen)
{
	struct etcd *e;
	const char *p, *q;
	size_t n;
	bool tls = false, names = false;
	int rc = -ENOMEM;

	*ep = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (c->endpoints == NULL || *c->endpoints == '\0') {
		snprintf(err, errlen, "no etcd endpoint");
		return -EINVAL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return -ENOMEM;
	e->base = base;
	TAILQ_INIT(&e->live);
	TAILQ_INIT(&e->waiting);
	TAILQ_INIT(&e->done);
	n = c->timeout_ms > 0 ? (size_t)c->timeout_ms : ETCD_TIMEOUT_MS;
	e->timeout.tv_sec = n / 1000;
	e->timeout.tv_usec = n % 1000 * 1000;
	e->max_body = c->max_body ? c->max_body : ETCD_MAX_BODY;
	for (n = 1, p = c->endpoints; *p; p++)
		n += *p == ',';
	if ((e->eps = calloc(n, sizeof(*e->eps))) == NULL)
		goto fail;
	for (p = c->endpoints; ; p = q + 1) {
		q = strchrnul(p, ',');
		if ((rc = etcd_ep_parse(&e->eps[e->neps], p, q - p, err,
		    errlen)) != 0)
			goto fail;
		tls |= e->eps[e->neps].tls;
		names |= !etcd_host_numeric(e->eps[e->neps].host);
		e->neps++;
		if (*q == '\0')
			break;
	}
	rc = -ENOMEM;
	/* Without a DNS base libevent would resolve names blocking. */
	if (names && (e->dns = evdns_base_new(base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL) {
		snprintf(err, errlen, "etcd: no DNS resolver");
		goto fail;
	}
	if (tls && (rc = etcd_tls_init(e, c, err, errlen)) != 0)
		goto fail;
	if ((e->reap = event_new(base, -1, 0, etcd_reap, e)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	*ep = e;
	return 0;
fail:
	if (rc == -ENOMEM && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "out of memory");
	etcd_free(e);
	return rc;
}

struct etcd *
etcd_free(struct etcd *e)
{
	struct etcd_op *op;
	size_t i;

	if (e == NULL)
		return NULL;
	while ((op = TAILQ_FIRST(&e->live)) != NULL) {
		TAILQ_REMOVE(&e->live, op, link);
		TAILQ_INSERT_TAIL(&e->done, op, link);
	}
	while ((op = TAILQ_FIRST(&e->waiting)) != NULL) {
		TAILQ_REMOVE(&e->waiting, op, link);
		TAILQ_INSERT_TAIL(&e->done, op, link);
	}
	e->nbulk = ETCD_MAX_INFLIGHT;	/* the reap sends nothing more */
	if (e->reap != NULL) {
		etcd_reap(-1, 0, e);
		event_free(e->reap);
	}
	for (i = 0; i < e->neps; i++) {
		free(e->eps[i].url);
		free(e->eps[i].host);
		free(e->eps[i].hosthdr);
	}
	free(e->eps);
	if (e->dns != NULL)
		evdns_base_free(e->dns, 0);
	if (e->ssl != NULL)
		SSL_CTX_free(e->ssl);
	free(e);
	return NULL;
}

size_t
etcd_state_str(const struct etcd *e, char *buf, size_t len)
{
	const struct etcd_ep *ep = &e->eps[e->cur];
	static const char *const names[] = { "unknown", "up", "down" };
	int n;

	n = snprintf(buf, len, "endpoint=%s state=%s endpoints=%zu "
	    "inflight=%zu last_error=\"%s\"", ep->url, names[ep->state],
	    e->neps, e->inflight, ep->err);
	return n < 0 ? 0 : (size_t)n;
}

/* A connection to endpoint ep, over TLS when its URL says https. */
static struct evhttp_connection *
etcd_conn_new(struct etcd *e, struct etcd_ep *ep)
{
	struct bufferevent *bev;
	X509_VERIFY_PARAM *vp;
	SSL *ssl;

	if (!ep->tls)
		return evhttp_connection_base_bufferevent_new(e->base, e->dns,
		    NULL, ep->host, ep->port);
	if ((ssl = SSL_new(e->ssl)) == NULL)
		return NULL;
	vp = SSL_get0_param(ssl);
	if (etcd_host_numeric(ep->host)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, ep->host) != 1)
			goto fail;
	} else {
		X509_VERIFY_PARAM_set_hostflags(vp,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (X509_VERIFY_PARAM_set1_host(vp, ep->host, 0) != 1 ||
		    SSL_set_tlsext_host_name(ssl, ep->host) != 1)
			goto fail;
	}
	/* The bufferevent owns ssl from here, freed with it. */
	if ((bev = bufferevent_openssl_socket_new(e->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL)
		goto fail;
	/* etcd (Go) may close without a TLS close_notify. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return evhttp_connection_base_bufferevent_new(e->base, e->dns, bev,
	    ep->host, ep->port);
fail:
	SSL_free(ssl);
	return NULL;
}

/* The operation is over: no more callbacks; freed on the next turn. */
static void
etcd_op_finish(struct etcd_op *op)
{
	struct etcd *e = op->e;

	if (op->finished)
		return;
	op->finished = true;
	if (op->timer != NULL)
		evtimer_del(op->timer);
	TAILQ_REMOVE(&e->live, op, link);
	TAILQ_INSERT_TAIL(&e->done, op, link);
	e->inflight--;
	if (op->bulk)
		e->nbulk--;
	event_active(e->reap, 0, 0);
}

/* Answer op with an error (status, the sentence in fmt) and finish. */
static void
etcd_op_error(struct etcd_op *op, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
etcd_op_error(struct etcd_op *op, int status, const char *fmt, ...)
{
	struct etcd_result r;
	struct etcd_watch_msg m;
	char msg[sizeof(op->errmsg)];
	va_list ap;

	/* The arguments may be op->errmsg itself. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(op->errmsg, msg, sizeof(msg));
	if (op->kind == ETCD_OP_WATCH) {
		memset(&m, 0, sizeof(m));
		m.kind = ETCD_WATCH_END;
		m.status = status;
		m.errmsg = op->errmsg;
		m.last_rev = op->last_rev;
		op->wcb(&m, op->arg);
	} else {
		memset(&r, 0, sizeof(r));
		r.status = status;
		r.errmsg = op->errmsg;
		r.sent_us = op->sent_us;
		op->cb(&r, op->arg);
	}
	etcd_op_finish(op);
}

/*
 * A transport failure of op's attempt (from a callback of its connection
 * when in_cb): the endpoint is marked down and the next one made current;
 * op is retried there once when that is safe, else answered.
 */
static void
etcd_op_failed(struct etcd_op *op, int status, const char *what, bool in_cb)
{
	struct etcd *e = op->e;
	struct etcd_ep *ep = &e->eps[op->ep];
	bool retry;

	ep->state = ETCD_EP_DOWN;
	snprintf(ep->err, sizeof(ep->err), "%s", what);
	if (e->cur == op->ep)
		e->cur = (e->cur + 1) % e->neps;
	retry = (etcd_kinds[op->kind].idempotent && !op->created) &&
	    op->attempt == 0 && e->neps > 1;
	if (op->kind == ETCD_OP_WATCH && op->created)
		status = status == -ETIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	if (retry) {
		evtimer_del(op->timer);
		if (in_cb) {
			/* libevent still holds it: freed on the next turn. */
			op->old = op->evcon;
			event_active(e->reap, 0, 0);
		} else
			evhttp_connection_free(op->evcon);
		op->evcon = NULL;
		jsplit_deinit(&op->js);
		jsplit_init(&op->js, e->max_body);
		op->attempt++;
		if ((status = etcd_send(op)) == 0)
			return;
		what = "cannot send the retry";
	}
	etcd_op_error(op, status, "%s: %s", ep->url, what);
}

static void
etcd_op_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_op *op = arg;

	(void)fd;
	(void)what;
	if (op->finished)
		return;
	etcd_op_failed(op, -ETIMEDOUT, "timed out", false);
}

static void
etcd_op_http_error(enum evhttp_request_error err, void *arg)
{
	struct etcd_op *op = arg;

	op->http_err = err;
}

/*
 * etcd's error answer (HTTP 4xx/5xx, or a stream's error object): its
 * status and sentence.  Unavailable (no leader) and deadline exceeded are
 * transport troubles: another member may do better.
 */
static int
etcd_error_status(const json_t *root, int http, char *msg, size_t len)
{
	const json_t *err = json_object_get(root, "error");
	const json_t *code, *text;

	code = json_object_get(root, "code");
	text = json_object_get(root, "message");
	if (json_is_object(err)) {
		code = json_object_get(err, "grpc_code");
		text = json_object_get(err, "message");
	} else if (text == NULL)
		text = err;
	if (!json_is_integer(code)) {
		snprintf(msg, len, "HTTP %d without an etcd error", http);
		return -EPROTO;
	}
	snprintf(msg, len, "etcd: %s (code %" JSON_INTEGER_FORMAT ")",
	    json_is_string(text) ? json_string_value(text) : "?",
	    json_integer_value(code));
	switch (json_integer_value(code)) {
	case 4:		/* DeadlineExceeded */
		return -ETIMEDOUT;
	case 5:		/* NotFound: a lease */
		return ETCD_NOLEASE;
	case 11:	/* OutOfRange: compacted */
		return ETCD_COMPACTED;
	case 14:	/* Unavailable */
		return -ECONNREFUSED;
	default:
		return ETCD_REFUSED;
	}
}

/* Decode a unary answer into r (kvs and mem to free). */
static int
etcd_decode(struct etcd_op *op, json_t *root, struct etcd_result *r,
    struct etcd_kv **kvs, uint8_t **mem)
{
	json_t *hdr, *res, *a, *rr;
	size_t i;
	int rc;

	if (op->kind == ETCD_OP_KEEPALIVE) {
		/* A stream's message: {"result": {...}}. */
		if (etcd_json_obj(root, "result", &root) != 0) {
			snprintf(op->errmsg, sizeof(op->errmsg),
			    "keepalive answer without result");
			return -EPROTO;
		}
	}
	if (etcd_json_obj(root, "header", &hdr) != 0 ||
	    etcd_json_i64(hdr, "revision", &r->revision) != 0) {
		snprintf(op->errmsg, sizeof(op->errmsg),
		    "answer without a header");
		return -EPROTO;
	}
	rc = 0;
	switch (op->kind) {
	case ETCD_OP_GRANT:
	case ETCD_OP_KEEPALIVE:
	case ETCD_OP_TTL:
		if (etcd_json_i64(root, "ID", &r->lease_id) != 0 ||
		    etcd_json_i64(root, "TTL", &r->ttl) != 0 ||
		    etcd_json_i64(root, "grantedTTL", &r->granted_ttl) != 0)
			rc = -EPROTO;
		else if ((op->kind == ETCD_OP_KEEPALIVE && r->ttl <= 0) ||
		    (op->kind == ETCD_OP_TTL && r->ttl < 0))
			rc = ETCD_NOLEASE;
		else if (op->kind == ETCD_OP_GRANT && (r->ttl <= 0 ||
		    r->lease_id == 0))
			rc = -EPROTO;
		break;
	case ETCD_OP_TXN:
		if (etcd_json_bool(root, "succeeded", &r->succeeded) != 0) {
			rc = -EPROTO;
			break;
		}
		a = json_object_get(root, "responses");
		if (a != NULL && !json_is_array(a)) {
			rc = -EPROTO;
			break;
		}
		for (i = 0; a != NULL && i < json_array_size(a); i++) {
			res = json_array_get(a, i);
			if (!json_is_object(res)) {
				rc = -EPROTO;
				break;
			}
			rr = json_object_get(res, "response_range");
			if (rr == NULL || *kvs != NULL)
				continue;
			if (!json_is_object(rr) ||
			    (rc = etcd_json_kvs(json_object_get(rr, "kvs"), kvs,
			    &r->nkvs, mem)) != 0)
				break;
		}
		break;
	case ETCD_OP_RANGE:
		if (etcd_json_bool(root, "more", &r->more) != 0 ||
		    etcd_json_i64(root, "count", &r->count) != 0)
			rc = -EPROTO;
		else
			rc = etcd_json_kvs(json_object_get(root, "kvs"), kvs,
			    &r->nkvs, mem);
		break;
	case ETCD_OP_DELRANGE:
		if (etcd_json_i64(root, "deleted", &r->deleted) != 0)
			rc = -EPROTO;
		break;
	default:
		break;
	}
	if (rc == -EPROTO)
		snprintf(op->errmsg, sizeof(op->errmsg),
		    "a field of the answer has the wrong type");
	else if (rc == ETCD_NOLEASE)
		snprintf(op->errmsg, sizeof(op->errmsg), "lease %" PRId64
		    " not found", r->lease_id);
	r->kvs = *kvs;
	return rc;
}

/* A unary answer arrived (status code known): decode and answer. */
static void
etcd_op_answer(struct etcd_op *op, struct evhttp_request *req)
{
	struct etcd *e = op->e;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	int http = evhttp_request_get_response_code(req);
	struct etcd_result r;
	struct etcd_kv *kvs = NULL;
	uint8_t *mem = NULL;
	json_error_t jerr;
	json_t *root;
	size_t len = evbuffer_get_length(in);
	int rc;

	memset(&r, 0, sizeof(r));
	r.sent_us = op->sent_us;
	r.errmsg = "";
	root = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0,
	    &jerr);
	if (root == NULL || !json_is_object(root)) {
		snprintf(op->errmsg, sizeof(op->errmsg), "HTTP %d: not a JSON "
		    "object: %s", http, root ? "" : jerr.text);
		rc = -EPROTO;
	} else if (http != 200 || json_object_get(root, "error") != NULL) {
		rc = etcd_error_status(root, http, op->errmsg,
		    sizeof(op->errmsg));
		r.etcd_code = (int)json_integer_value(json_object_get(root,
		    "code"));
		if (rc == -ECONNREFUSED || rc == -ETIMEDOUT) {
			json_decref(root);
			etcd_op_failed(op, rc, op->errmsg, true);
			return;
		}
	} else
		rc = etcd_decode(op, root, &r, &kvs, &mem);
	e->eps[op->ep].state = ETCD_EP_UP;
	r.status = rc;
	if (rc != 0) {
		r.errmsg = op->errmsg;
		r.kvs = NULL;
		r.nkvs = 0;
	}
	op->cb(&r, op->arg);
	free(kvs);
	free(mem);
	json_decref(root);
	etcd_op_finish(op);
}

/* One message of a watch's stream; false when the watch ended. */
static bool
etcd_watch_msg(struct etcd_op *op, const uint8_t *p, size_t len)
{
	struct etcd_watch_msg m;
	struct etcd_event *evs = NULL;
	json_error_t jerr;
	json_t *root, *res, *hdr, *a, *ev, *kv, *type;
	uint8_t *mem = NULL, *q;
	size_t i, size;
	bool flag, canceled;
	int rc;

	memset(&m, 0, sizeof(m));
	if ((root = json_loadb((const char *)p, len, 0, &jerr)) == NULL ||
	    !json_is_object(root)) {
		json_decref(root);
		etcd_op_error(op, -EPROTO, "watch: not a JSON object");
		return false;
	}
	if (json_object_get(root, "error") != NULL) {
		rc = etcd_error_status(root, 200, op->errmsg,
		    sizeof(op->errmsg));
		json_decref(root);
		etcd_op_error(op, rc, "watch: %s", op->errmsg);
		return false;
	}
	rc = -EPROTO;
	if (etcd_json_obj(root, "result", &res) != 0 ||
	    etcd_json_obj(res, "header", &hdr) != 0 ||
	    etcd_json_i64(hdr, "revision", &m.revision) != 0 ||
	    etcd_json_bool(res, "created", &flag) != 0 ||
	    etcd_json_bool(res, "canceled", &canceled) != 0 ||
	    etcd_json_i64(res, "compact_revision", &m.compact_rev) != 0)
		goto fail;
	if (canceled) {
		json_t *why = json_object_get(res, "cancel_reason");

		m.kind = ETCD_WATCH_END;
		m.status = m.compact_rev > 0 ? ETCD_COMPACTED : ETCD_REFUSED;
		snprintf(op->errmsg, sizeof(op->errmsg), "watch cancelled: %s",
		    json_is_string(why) ? json_string_value(why) :
		    m.compact_rev > 0 ? "revision compacted" : "?");
		m.errmsg = op->errmsg;
		m.last_rev = op->last_rev;
		op->wcb(&m, op->arg);
		json_decref(root);
		etcd_op_finish(op);
		return false;
	}
	if (flag && !op->created) {
		op->created = true;
		evtimer_del(op->timer);
		op->e->eps[op->ep].state = ETCD_EP_UP;
		op->last_rev = op->start_rev > 0 ? op->start_rev - 1 :
		    m.revision;
		m.kind = ETCD_WATCH_CREATED;
		m.last_rev = op->last_rev;
		op->wcb(&m, op->arg);
		json_decref(root);
		return !op->finished;
	}
	if (!op->created)
		goto fail;
	a = json_object_get(res, "events");
	if (a != NULL && !json_is_array(a))
		goto fail;
	m.kind = ETCD_WATCH_PROGRESS;
	if (a != NULL && json_array_size(a) > 0) {
		m.kind = ETCD_WATCH_EVENTS;
		m.nevents = json_array_size(a);
		size = 1;
		for (i = 0; i < m.nevents; i++)
			size += etcd_json_kv_size(json_object_get(
			    json_array_get(a, i), "kv"));
		evs = calloc(m.nevents, sizeof(*evs));
		mem = q = malloc(size);
		if (evs == NULL || mem == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
		for (i = 0; i < m.nevents; i++) {
			ev = json_array_get(a, i);
			if (!json_is_object(ev) ||
			    etcd_json_obj(ev, "kv", &kv) != 0 ||
			    etcd_json_kv(kv, &evs[i].kv, &q) != 0)
				goto fail;
			type = json_object_get(ev, "type");
			if (type != NULL && !json_is_string(type))
				goto fail;
			if (type != NULL && strcmp(json_string_value(type),
			    "DELETE") == 0)
				evs[i].type = ETCD_EV_DELETE;
			else if (type != NULL && strcmp(json_string_value(type),
			    "PUT") != 0)
				goto fail;
			else if (evs[i].kv.create_rev == evs[i].kv.mod_rev)
				evs[i].type = ETCD_EV_CREATE;
			else
				evs[i].type = ETCD_EV_PUT;
			if (evs[i].kv.mod_rev > op->last_rev)
				op->last_rev = evs[i].kv.mod_rev;
		}
		m.events = evs;
	} else if (m.revision > op->last_rev)
		op->last_rev = m.revision;
	m.last_rev = op->last_rev;
	op->wcb(&m, op->arg);
	free(evs);
	free(mem);
	json_decref(root);
	return !op->finished;
fail:
	free(evs);
	free(mem);
	json_decref(root);
	etcd_op_error(op, rc, "watch: %s", rc == -ENOMEM ? "out of memory" :
	    "a message has a field missing or of the wrong type");
	return false;
}

/* Bytes of a watch's stream: split into messages, each handled. */
static void
etcd_watch_chunk(struct evhttp_request *req, void *arg)
{
	struct etcd_op *op = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const uint8_t *obj;
	size_t olen;
	int rc;

	if (op->finished) {
		evbuffer_drain(in, len);
		return;
	}
	rc = jsplit_feed(&op->js, evbuffer_pullup(in, -1), len);
	evbuffer_drain(in, len);
	if (rc != 0) {
		etcd_op_error(op, rc, "watch: out of memory");
		return;
	}
	while ((rc = jsplit_next(&op->js, &obj, &olen)) == 1)
		if (!etcd_watch_msg(op, obj, olen))
			return;
	if (rc < 0)
		etcd_op_error(op, rc, "watch: %s", rc == -EMSGSIZE ?
		    "a message over the size bound" : "not a JSON stream");
}

/* Why op's TLS connection failed, in buf; "" when TLS said nothing. */
static void
etcd_tls_why(struct etcd_op *op, char *buf, size_t len)
{
	struct bufferevent *bev;
	unsigned long err;
	SSL *ssl;
	long vr;

	buf[0] = '\0';
	if (!op->e->eps[op->ep].tls || op->evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(op->evcon)) == NULL)
		return;
	if ((ssl = bufferevent_openssl_get_ssl(bev)) != NULL &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
		snprintf(buf, len, "TLS: etcd's certificate not accepted: %s",
		    X509_verify_cert_error_string(vr));
	/* OpenSSL's errors; libevent also queues bare SSL_ERROR_* codes
	 * (library 0, no reason string), which say nothing. */
	while ((err = bufferevent_get_openssl_error(bev)) != 0)
		if (buf[0] == '\0' && ERR_GET_LIB(err) != 0 &&
		    ERR_reason_error_string(err) != NULL)
			snprintf(buf, len, "TLS: %s",
			    ERR_reason_error_string(err));
	/* etcd's refusal of our certificate is an alert that is often lost
	 * when it closes at once: once the handshake began (the TCP
	 * connection was made), say what the likely cause is. */
	if (buf[0] == '\0' && ssl != NULL && !SSL_in_before(ssl) &&
	    SSL_get_certificate(ssl) != NULL)
		snprintf(buf, len, "TLS: etcd closed the connection (does it "
		    "accept our client certificate?)");
}

/* A request's end, in every way it can end. */
static void
etcd_op_done(struct evhttp_request *req, void *arg)
{
	struct etcd_op *op = arg;
	int err = op->http_err;

	if (op->finished)
		return;
	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		if (err == EVREQ_HTTP_DATA_TOO_LONG)
			etcd_op_error(op, -EMSGSIZE, "%s: answer over %zu bytes",
			    op->e->eps[op->ep].url, op->e->max_body);
		else if (err == EVREQ_HTTP_INVALID_HEADER)
			etcd_op_error(op, -EPROTO, "%s: bad HTTP answer",
			    op->e->eps[op->ep].url);
		else {
			char why[160];

			etcd_tls_why(op, why, sizeof(why));
			etcd_op_failed(op, err == EVREQ_HTTP_TIMEOUT ?
			    -ETIMEDOUT : -ECONNREFUSED, why[0] ? why :
			    err < 0 ? "cannot connect" : "connection lost",
			    true);
		}
		return;
	}
	if (op->kind != ETCD_OP_WATCH) {
		etcd_op_answer(op, req);
		return;
	}
	/* A watch's answer ended: an error status, or the stream closed. */
	if (evhttp_request_get_response_code(req) != 200 && !op->finished)
		etcd_op_error(op, -EPROTO, "watch: HTTP %d",
		    evhttp_request_get_response_code(req));
	else if (!op->created)
		etcd_op_failed(op, -ECONNREFUSED, "watch ended unconfirmed",
		    true);
	else
		etcd_op_error(op, -ECONNREFUSED, "watch stream ended");
}

/* Send op's attempt to the current endpoint. */
static int
etcd_send(struct etcd_op *op)
{
	struct etcd *e = op->e;
	struct etcd_ep *ep = &e->eps[e->cur];
	struct evhttp_request *req;
	struct evkeyvalq *h;
	struct timeval tv = e->timeout;

	op->ep = e->cur;
	op->http_err = -1;
	if ((op->evcon = etcd_conn_new(e, ep)) == NULL)
		return -ENOMEM;
	if (op->kind == ETCD_OP_WATCH) {
		tv.tv_sec = ETCD_WATCH_IDLE_S;
		tv.tv_usec = 0;
	} else {
		/* Ours fires first; libevent's is the backstop. */
		tv.tv_sec++;
		evhttp_connection_set_max_body_size(op->evcon, e->max_body);
	}
	evhttp_connection_set_timeout_tv(op->evcon, &tv);
	evhttp_connection_set_max_headers_size(op->evcon, ETCD_MAX_HEADERS);
	if ((req = evhttp_request_new(etcd_op_done, op)) == NULL)
		return -ENOMEM;
	evhttp_request_set_error_cb(req, etcd_op_http_error);
	if (op->kind == ETCD_OP_WATCH)
		evhttp_request_set_chunked_cb(req, etcd_watch_chunk);
	h = evhttp_request_get_output_headers(req);
	if (evhttp_add_header(h, "Host", ep->hosthdr) != 0 ||
	    evhttp_add_header(h, "Content-Type", "application/json") != 0 ||
	    evbuffer_add(evhttp_request_get_output_buffer(req), op->body,
	    op->body_len) != 0) {
		evhttp_request_free(req);
		return -ENOMEM;
	}
	/* On failure libevent has freed req. */
	if (evhttp_make_request(op->evcon, req, EVHTTP_REQ_POST,
	    etcd_kinds[op->kind].path) != 0)
		return -ENOMEM;
	op->sent_us = now_mono_us();
	if (op->kind != ETCD_OP_WATCH || !op->created)
		evtimer_add(op->timer, &e->timeout);
	return 0;
}

/* A new operation of kind with body (taken), in the live list. */
static struct etcd_op *
etcd_op_new(struct etcd *e, enum etcd_opkind kind, json_t *body)
{
	struct etcd_op *op;

	if (body == NULL)
		return NULL;
	op = calloc(1, kind == ETCD_OP_WATCH ? sizeof(struct etcd_watch) :
	    sizeof(*op));
	if (op == NULL)
		goto fail;
	op->e = e;
	op->kind = kind;
	jsplit_init(&op->js, e->max_body);
	if ((op->body = json_dumps(body, JSON_COMPACT)) == NULL ||
	    (op->timer = evtimer_new(e->base, etcd_op_timeout, op)) == NULL)
		goto fail;
	op->body_len = strlen(op->body);
	json_decref(body);
	TAILQ_INSERT_TAIL(&e->live, op, link);
	e->inflight++;
	return op;
fail:
	if (op != NULL) {
		free(op->body);
		free(op);
	}
	json_decref(body);
	return NULL;
}

/* Undo etcd_op_new for an operation that never started: nothing of it
 * is in a libevent callback, so it goes at once. */
static void
etcd_op_drop(struct etcd_op *op)
{
	TAILQ_REMOVE(&op->e->live, op, link);
	op->e->inflight--;
	etcd_op_free(op);
}

int
etcd_op_start(struct etcd *e, enum etcd_opkind kind, json_t *body,
    etcd_cb *cb, void *arg)
{
	struct etcd_op *op;
	int rc;

	if ((op = etcd_op_new(e, kind, body)) == NULL)
		return -ENOMEM;
	op->cb = cb;
	op->arg = arg;
	op->bulk = kind == ETCD_OP_TXN || kind == ETCD_OP_RANGE ||
	    kind == ETCD_OP_DELRANGE || kind == ETCD_OP_COMPACT;
	if (op->bulk && (e->nbulk >= ETCD_MAX_INFLIGHT ||
	    !TAILQ_EMPTY(&e->waiting))) {
		/* Its turn comes from etcd_pump, in order. */
		TAILQ_REMOVE(&e->live, op, link);
		e->inflight--;
		op->queued_us = now_mono_us();
		TAILQ_INSERT_TAIL(&e->waiting, op, link);
		e->nwaiting++;
		return 0;
	}
	if ((rc = etcd_send(op)) != 0) {
		etcd_op_drop(op);
		return rc;
	}
	if (op->bulk)
		e->nbulk++;
	return 0;
}

/* {"ID": id} and, for a grant, the TTL. */
static int
etcd_lease_op(struct etcd *e, enum etcd_opkind kind, int64_t id,
    int64_t ttl, etcd_cb *cb, void *arg)
{
	json_t *b;

	if ((b = json_object()) == NULL)
		return -ENOMEM;
	if ((id != 0 && etcd_json_set(b, "ID", etcd_json_int(id)) != 0) ||
	    (kind == ETCD_OP_GRANT &&
	    etcd_json_set(b, "TTL", etcd_json_int(ttl)) != 0)) {
		json_decref(b);
		return -ENOMEM;
	}
	return etcd_op_start(e, kind, b, cb, arg);
}

int
etcd_lease_grant(struct etcd *e, int64_t ttl, int64_t id, etcd_cb *cb,
    void *arg)
{
	if (ttl <= 0 || id < 0)
		return -EINVAL;
	return etcd_lease_op(e, ETCD_OP_GRANT, id, ttl, cb, arg);
}

int
etcd_lease_keepalive(struct etcd *e, int64_t id, etcd_cb *cb, void *arg)
{
	return id <= 0 ? -EINVAL :
	    etcd_lease_op(e, ETCD_OP_KEEPALIVE, id, 0, cb, arg);
}

int
etcd_lease_revoke(struct etcd *e, int64_t id, etcd_cb *cb, void *arg)
{
	return id <= 0 ? -EINVAL :
	    etcd_lease_op(e, ETCD_OP_REVOKE, id, 0, cb, arg);
}

int
etcd_lease_ttl(struct etcd *e, int64_t id, etcd_cb *cb, void *arg)
{
	return id <= 0 ? -EINVAL :
	    etcd_lease_op(e, ETCD_OP_TTL, id, 0, cb, arg);
}

/* {"key": b64} with range_end when there is one. */
static json_t *
etcd_key_body(const void *key, size_t key_len, const void *end,
    size_t end_len)
{
	json_t *b;

	if ((b = json_object()) == NULL)
		return NULL;
	if (etcd_json_set(b, "key", etcd_json_b64(key, key_len)) != 0 ||
	    (end != NULL && etcd_json_set(b, "range_end",
	    etcd_json_b64(end, end_len)) != 0)) {
		json_decref(b);
		return NULL;
	}
	return b;
}

int
etcd_range(struct etcd *e, const void *key, size_t key_len,
    const struct etcd_range_opts *o, etcd_cb *cb, void *arg)
{
	static const struct etcd_range_opts none;
	json_t *b;

	if (o == NULL)
		o = &none;
	if (o->revision < 0 || o->limit < 0)
		return -EINVAL;
	if ((b = etcd_key_body(key, key_len, o->range_end,
	    o->range_end_len)) == NULL)
		return -ENOMEM;
	if ((o->revision && etcd_json_set(b, "revision",
	    etcd_json_int(o->revision)) != 0) ||
	    (o->limit && etcd_json_set(b, "limit",
	    etcd_json_int(o->limit)) != 0) ||
	    (o->keys_only && etcd_json_set(b, "keys_only", json_true())) ||
	    (o->count_only && etcd_json_set(b, "count_only", json_true()))) {
		json_decref(b);
		return -ENOMEM;
	}
	return etcd_op_start(e, ETCD_OP_RANGE, b, cb, arg);
}

int
etcd_delete_range(struct etcd *e, const void *key, size_t key_len,
    const void *range_end, size_t range_end_len, etcd_cb *cb, void *arg)
{
	return etcd_op_start(e, ETCD_OP_DELRANGE, etcd_key_body(key, key_len,
	    range_end, range_end_len), cb, arg);
}

int
etcd_compact(struct etcd *e, int64_t revision, etcd_cb *cb, void *arg)
{
	json_t *b;

	if (revision <= 0)
		return -EINVAL;
	if ((b = json_object()) == NULL ||
	    etcd_json_set(b, "revision", etcd_json_int(revision)) != 0) {
		json_decref(b);
		return -ENOMEM;
	}
	return etcd_op_start(e, ETCD_OP_COMPACT, b, cb, arg);
}

size_t
etcd_prefix_end(const void *prefix, size_t len, uint8_t *out)
{
	const uint8_t *p = prefix;

	while (len > 0 && p[len - 1] == 0xff)
		len--;
	if (len == 0) {
		out[0] = 0;
		return 1;
	}
	memcpy(out, p, len);
	out[len - 1]++;
	return len;
}

int
etcd_watch(struct etcd *e, const void *key, size_t key_len,
    const struct etcd_watch_opts *o, etcd_watch_cb *cb, void *arg,
    struct etcd_watch **w)
{
	static const struct etcd_watch_opts none;
	struct etcd_op *op;
	json_t *b, *cr;
	int rc;

	*w = NULL;
	if (o == NULL)
		o = &none;
	if (o->start_rev < 0)
		return -EINVAL;
	if ((cr = etcd_key_body(key, key_len, o->range_end,
	    o->range_end_len)) == NULL)
		return -ENOMEM;
	if ((o->start_rev && etcd_json_set(cr, "start_revision",
	    etcd_json_int(o->start_rev)) != 0) ||
	    (o->progress_notify && etcd_json_set(cr, "progress_notify",
	    json_true()) != 0) ||
	    (b = json_object()) == NULL) {
		json_decref(cr);
		return -ENOMEM;
	}
	if (json_object_set_new(b, "create_request", cr) != 0) {
		json_decref(b);
		return -ENOMEM;
	}
	if ((op = etcd_op_new(e, ETCD_OP_WATCH, b)) == NULL)
		return -ENOMEM;
	op->wcb = cb;
	op->arg = arg;
	op->start_rev = o->start_rev;
	if ((rc = etcd_send(op)) != 0) {
		etcd_op_drop(op);
		return rc;
	}
	*w = (struct etcd_watch *)op;
	return 0;
}

void
etcd_watch_cancel(struct etcd_watch *w)
{
	if (w != NULL)
		etcd_op_finish(&w->op);
}
