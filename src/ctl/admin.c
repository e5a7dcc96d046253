/*
 * admin.c: the daemon's own commands: stats, ping, evict.
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
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

/*
 * What the daemon's process says of itself: its pid (the socket's peer,
 * SO_PEERCRED: 0 when it is not visible from here, another pid
 * namespace) and its resident memory in kB (/proc/PID/status VmRSS: -1
 * when /proc does not say).
 */
static void
admin_process(struct ctl *c, pid_t *pid, long long *rss_kb)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char path[64], line[256];
	FILE *f;

	*pid = 0;
	*rss_kb = -1;
	if (getsockopt(procreg_fd(c->p), SOL_SOCKET, SO_PEERCRED, &cr,
	    &len) < 0 || cr.pid <= 0)
		return;
	*pid = cr.pid;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)cr.pid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %lld kB", rss_kb) == 1)
			break;
	}
	fclose(f);
}

/*
 * stats: the daemon's counters, then what is known of the daemon beside
 * them: its pid, socket, version and protocol (hello), and its memory
 * (from /proc, when the daemon's process is visible there).
 */
int
admin_stats(struct ctl *c)
{
	struct procreg_stats st;
	struct procreg_hello h;
	char age[32], path[512];
	long long rss;
	pid_t pid;
	json_t *j;
	int r;

	if ((r = procreg_stats(c->p, &st)) != PROCREG_OK ||
	    (r = procreg_hello(c->p, &h)) != PROCREG_OK)
		return out_report(c, r, NULL);
	admin_process(c, &pid, &rss);
	out_socket_path(c, path, sizeof(path));
	if (c->json) {
		j = json_object();
		for (size_t i = 0; i < NSTATS; i++)
			json_object_set_new_nocheck(j, stats_keys[i].key,
			    json_integer((json_int_t)*(const uint64_t *)
			    ((const char *)&st + stats_keys[i].offset)));
		if (pid > 0)
			json_object_set_new_nocheck(j, "pid",
			    json_integer(pid));
		json_object_set_new_nocheck(j, "socket", json_string(path));
		json_object_set_new_nocheck(j, "version",
		    json_string(h.version));
		json_object_set_new_nocheck(j, "protocol",
		    json_integer((json_int_t)h.protocol));
		if (rss >= 0)
			json_object_set_new_nocheck(j, "memory_rss_kb",
			    json_integer(rss));
		if (st.cluster_state[0] != '\0')
			json_object_set_new_nocheck(j, "cluster",
			    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
			    "node", st.cluster_node, "state", st.cluster_state,
			    "etcd", st.cluster_etcd, "lease_ttl",
			    (json_int_t)st.cluster_lease_ttl, "names",
			    (json_int_t)st.cluster_names, "nodes",
			    (json_int_t)st.cluster_nodes, "revision",
			    (json_int_t)st.cluster_revision));
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
	if (pid > 0)
		printf("%-23s%ld\n", "pid", (long)pid);
	printf("%-23s%s\n%-23s%s\n%-23s%" PRIu64 "\n", "socket", path,
	    "version", h.version, "protocol", h.protocol);
	if (rss >= 0)
		printf("%-23s%lld\n", "memory_rss_kb", rss);
	/* Cluster mode (--etcd): its state last, the names as stats' own. */
	if (st.cluster_state[0] != '\0')
		printf("%-23s%s\n%-23s%s\n%-23s%s\n%-23s%" PRIu64 "\n"
		    "%-23s%" PRIu64 "\n%-23s%" PRIu64 "\n%-23s%" PRIu64 "\n",
		    "cluster.node", st.cluster_node, "cluster.state",
		    st.cluster_state, "cluster.etcd", st.cluster_etcd,
		    "cluster.lease_ttl", st.cluster_lease_ttl, "cluster.names",
		    st.cluster_names, "cluster.nodes", st.cluster_nodes,
		    "cluster.revision", st.cluster_revision);
	return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

/* ping: hello, timed, --count times; more than once, a min/avg/max
 * summary at the end. */
int
admin_ping(struct ctl *c)
{
	struct procreg_hello h;
	struct timespec gap;
	uint64_t n = c->count ? c->count : 1, t0;
	double min = 0, max = 0, sum = 0;
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
		if (i == 0 || ms < min)
			min = ms;
		if (ms > max)
			max = ms;
		sum += ms;
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
	if (!ok || n == 1)
		return ok ? EXIT_SUCCESS : EXIT_ERROR;
	/* Rounded to whole microseconds, as each ping is. */
	sum = (double)(uint64_t)(sum / (double)n * 1e3 + 0.5) / 1e3;
	if (c->json)
		ok = out_json(json_pack("{s:I, s:f, s:f, s:f}", "count",
		    (json_int_t)n, "min_ms", min, "avg_ms", sum, "max_ms",
		    max), JSON_REAL_PRECISION(15));
	else
		ok = printf("%" PRIu64 " pings: min/avg/max %.3f/%.3f/%.3f "
		    "ms\n", n, min, sum, max) > 0 && fflush(stdout) == 0;
	return ok ? EXIT_SUCCESS : EXIT_ERROR;
}
