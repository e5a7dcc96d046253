/*
 * admin.c: the daemon's own commands: stats, ping, evict.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "procreg-protocol.h"
#include "now.h"

/* One line of the stats table: a key and where struct procreg_stats
 * keeps it. */
static const struct {
	const char	*key;
	size_t		 offset;
} stats_keys[] = {
#define K(f) { #f, offsetof(struct procreg_stats, f) }
	K(connections), K(names), K(monitors), K(requests), K(messages),
	K(downs), K(notifications_ignored), K(connections_total),
	K(uptime_ms), K(groups), K(members), K(calls), K(replies_late),
	K(awaits), K(subscriptions), K(seq),
#undef K
};
#define NSTATS		(sizeof(stats_keys) / sizeof(stats_keys[0]))

/* evict NAME: an administrator removes a registration. */
int
admin_evict(struct ctl *c)
{
	const char *name = c->args[0];
	int r;

	if (!args_check_name(c, name))
		return EXIT_USAGE;
	r = procreg_evict(c->p, name);
	if (r == PROCREG_E_NOT_FOUND) {
		return out_error(c, EXIT_NO, "not_found", NULL, "%s: not "
		    "registered", name);
	}
	return r == PROCREG_OK ? EXIT_SUCCESS : out_report(c, r, name);
}

/* stats: the daemon's counters. */
int
admin_stats(struct ctl *c)
{
	struct procreg_stats st;
	json_t *j;
	char age[32];
	int r;

	if ((r = procreg_stats(c->p, &st)) != PROCREG_OK)
		return out_report(c, r, NULL);
	if (c->json) {
		j = json_object();
		for (size_t i = 0; i < NSTATS; i++)
			json_object_set_new_nocheck(j, stats_keys[i].key,
			    json_integer((json_int_t)*(const uint64_t *)
			    ((const char *)&st + stats_keys[i].offset)));
		return out_json(j, 0) ? EXIT_SUCCESS : EXIT_ERROR;
	}
	for (size_t i = 0; i < NSTATS; i++) {
		uint64_t v = *(const uint64_t *)((const char *)&st +
		    stats_keys[i].offset);

		printf("%-23s%" PRIu64, stats_keys[i].key, v);
		if (strcmp(stats_keys[i].key, "uptime_ms") == 0) {
			out_fmt_age(age, sizeof(age), v);
			printf(" (%s)", age);
		}
		putchar('\n');
	}
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* ping: hello, timed, --count times. */
int
admin_ping(struct ctl *c)
{
	struct procreg_hello h;
	struct timespec gap;
	uint64_t n = c->count ? c->count : 1, t0;
	bool ok = true;
	int r;

	for (uint64_t i = 0; i < n && ok; i++) {
		double ms;

		gap.tv_sec = (time_t)(c->interval_ms / 1000);
		gap.tv_nsec = (long)(c->interval_ms % 1000) * 1000000;
		while (i > 0 && nanosleep(&gap, &gap) < 0 && errno == EINTR)
			;
		t0 = now_mono_us();
		if ((r = procreg_hello(c->p, &h)) != PROCREG_OK)
			return out_report(c, r, NULL);
		/* In whole microseconds, so that JSON shows 0.123, not
		 * 0.12300000000000001. */
		ms = (double)(now_mono_us() - t0) / 1e3;
		if (c->json)
			ok = out_json(json_pack("{s:s, s:I, s:I, s:f}",
			    "version", h.version, "protocol",
			    (json_int_t)h.protocol, "conn", (json_int_t)h.conn,
			    "rtt_ms", ms), JSON_REAL_PRECISION(15));
		else
			ok = printf("pong from %s %s (protocol %" PRIu64
			    ", conn %" PRIu64 "): %.3f ms\n", PR_SERVER_NAME,
			    h.version, h.protocol, h.conn, ms) > 0 &&
			    fflush(stdout) == 0;
	}
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}
