/*
 * fuzz_libreply.c: libFuzzer target for libprocreg's side of the wire:
 * the framing, the decoding of the daemon's responses (entries, lists,
 * stats, snapshots, keys, call results, errors) and of its notifications
 * into events, and auto_reconnect's translation of refs, call ids and
 * subscription ids on the way.
 *
 * A fake daemon: the handle's socket is one end of a socketpair, and the
 * input's bytes are what the daemon sent on the other end, followed by
 * end of file.  The input chooses the handle's options and a script of
 * public calls to make; each call reads its response from those bytes
 * (the handle numbers requests from 1, so the fuzzer can learn to answer
 * them).  Whatever comes, nothing may crash, hang or leak: every event
 * handed out is freed, then the handle.
 *
 * Input: byte 0: bit 0 auto_reconnect; byte 1: the number of calls (low
 * 4 bits); then one byte per call; the rest is the daemon's stream.
 */
#include <sys/socket.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Hand out and free every queued event. */
static void
fuzz_drain_events(procreg_t *p)
{
	struct procreg_event *ev;

	while (procreg_next_event(p, 0, &ev) == PROCREG_OK)
		procreg_event_free(ev);
}

/* One public call whose response comes from the fake daemon. */
static void
fuzz_call(procreg_t *p, uint8_t op, uint64_t *ref)
{
	struct procreg_subscribe_opts so = { .groups = true };
	struct procreg_subscription sub;
	struct procreg_entry *e = NULL, **ev = NULL;
	struct procreg_member **mv = NULL;
	struct procreg_stats st;
	struct procreg_hello h;
	const char *names[] = { "a", "b" };
	char **sv = NULL, **gv = NULL;
	uint64_t *conns = NULL, delivered;
	size_t n = 0, ng = 0, rlen = 0;
	void *res = NULL;
	uint32_t queued;
	bool active;

	switch (op % 20) {
	case 0:
		(void)procreg_whereis(p, "a", &e);
		break;
	case 1:
		(void)procreg_register(p, "a", "\x01", 1, &e);
		break;
	case 2:
		(void)procreg_register_opts(p, "a", NULL, 0, PROCREG_QUEUE, &e,
		    &queued);
		break;
	case 3:
		(void)procreg_list(p, NULL, &ev, &n);
		procreg_entries_free(ev, n);
		return;
	case 4:
		(void)procreg_stats(p, &st);
		break;
	case 5:
		(void)procreg_hello(p, &h);
		break;
	case 6:
		(void)procreg_monitor(p, "a", ref);
		break;
	case 7:
		(void)procreg_demonitor(p, *ref, &active);
		break;
	case 8:
		(void)procreg_call(p, "a", "\xc0", 1, 1, &res, &rlen);
		procreg_bytes_free(res);
		break;
	case 9:
		(void)procreg_reply(p, op, "\xc0", 1);
		break;
	case 10:
		(void)procreg_members(p, "g", &mv, &n);
		procreg_members_free(mv, n);
		break;
	case 11:
		(void)procreg_publish(p, "g", "\xc0", 1, false, &delivered,
		    &conns, &n);
		procreg_conns_free(conns);
		break;
	case 12:
		(void)procreg_keys(p, 1, &sv, &n, &gv, &ng);
		procreg_strv_free(sv, n);
		procreg_strv_free(gv, ng);
		break;
	case 13:
		(void)procreg_register_many(p, 2, names, NULL, NULL, &ev);
		procreg_entries_free(ev, ev != NULL ? 2 : 0);
		break;
	case 14:
		if (procreg_subscribe(p, "", &so, &sub) == PROCREG_OK)
			procreg_subscription_free(&sub);
		break;
	case 15:
		(void)procreg_unsubscribe(p, op, &active);
		break;
	case 16:
		(void)procreg_queue(p, "a", &conns, &n);
		procreg_conns_free(conns);
		break;
	case 17:
		(void)procreg_join(p, "g", NULL, 0, NULL);
		break;
	case 18:
		(void)procreg_update(p, "a", "\x02", 1, &e);
		break;
	default:
		(void)procreg_process(p);
		(void)procreg_pending(p);
		break;
	}
	procreg_entry_free(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct procreg_options o = { 0 };
	procreg_t *p = NULL;
	uint64_t ref = 1;
	size_t ncalls, off;
	int sv[2];

	if (size < 2)
		return 0;
	ncalls = data[1] & 0x0f;
	if (size < 2 + ncalls)
		return 0;
	off = 2 + ncalls;
	/* A path nobody listens on: a reconnect fails at once. */
	o.path = "/nonexistent/procreg-fuzz.sock";
	o.auto_reconnect = data[0] & 1;
	o.timeout_ms = 1;
	o.reconnect_max_ms = 1;
	if (handle_new(&p, &o, true) != PROCREG_OK) {
		procreg_free(p);
		return 0;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) < 0)
		abort();
	p->fd = sv[0];
	/* The daemon's whole stream, then end of file. */
	if (size > off && write(sv[1], data + off, size - off) < 0)
		abort();
	shutdown(sv[1], SHUT_WR);
	for (size_t i = 0; i < ncalls; i++) {
		fuzz_call(p, data[2 + i], &ref);
		fuzz_drain_events(p);
	}
	(void)procreg_process(p);
	fuzz_drain_events(p);
	procreg_free(p);
	close(sv[1]);
	return 0;
}
