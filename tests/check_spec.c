/*
 * check_spec.c: replays every worked example of proto/PROTOCOL.md against
 * a fresh procregd, in document order, so that the spec and the code
 * cannot drift apart.
 *
 * Inside ```msgpack blocks, "X> HEX" sends bytes on client X (opened at
 * its first use), "X< HEX" receives the next object on X and compares it
 * with the decoded HEX, and "X close" closes X.  Values that differ from
 * run to run (credentials, times, the boot id, counters) and the text of
 * error messages are compared by type only.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "testlib.h"

#define MAX_CLIENTS	26

static const char *const loose_keys[] = {
	"pid", "uid", "gid", "since", "boot", "version", "uptime_ms",
	"requests", "messages", "downs", "notifications_ignored",
	"connections_total", "replies_late", NULL
};

static const char *
spec_path(void)
{
	const char *p = getenv("SPEC");

	return p != NULL ? p : "proto/PROTOCOL.md";
}

static bool
is_loose_key(const msgpack_object *k)
{
	for (int i = 0; loose_keys[i] != NULL; i++) {
		if (o_is_str(k, loose_keys[i]))
			return true;
	}
	return false;
}

static bool
same_type(const msgpack_object *a, const msgpack_object *b)
{
	return a->type == b->type;
}

/* Deep equality, except loose map values compare by type. */
static bool
same(const msgpack_object *a, const msgpack_object *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case MSGPACK_OBJECT_ARRAY:
		if (a->via.array.size != b->via.array.size)
			return false;
		for (uint32_t i = 0; i < a->via.array.size; i++) {
			if (!same(&a->via.array.ptr[i], &b->via.array.ptr[i]))
				return false;
		}
		return true;
	case MSGPACK_OBJECT_MAP:
		if (a->via.map.size != b->via.map.size)
			return false;
		/* Key order is part of the spec: compare pairwise. */
		for (uint32_t i = 0; i < a->via.map.size; i++) {
			const msgpack_object_kv *x = &a->via.map.ptr[i];
			const msgpack_object_kv *y = &b->via.map.ptr[i];

			if (!same(&x->key, &y->key))
				return false;
			if (is_loose_key(&x->key) ? !same_type(&x->val, &y->val) :
			    !same(&x->val, &y->val))
				return false;
		}
		return true;
	default:
		return msgpack_object_equal(*a, *b);
	}
}

/* The [code, message] pair inside a response or an error notification. */
static msgpack_object *
error_pair(const msgpack_object *o)
{
	msgpack_object *a;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3)
		return NULL;
	a = o->via.array.ptr;
	if (o->via.array.size == 4 && a[0].via.u64 == 1 &&
	    a[2].type == MSGPACK_OBJECT_ARRAY && a[2].via.array.size == 2)
		return &a[2];
	if (o->via.array.size == 3 && a[0].via.u64 == 2 &&
	    o_is_str(&a[1], "error") && a[2].type == MSGPACK_OBJECT_ARRAY &&
	    a[2].via.array.size == 2)
		return &a[2];
	return NULL;
}

static bool
same_message(const msgpack_object *want, const msgpack_object *got)
{
	msgpack_object *ew = error_pair(want), *eg = error_pair(got);
	msgpack_object saved;
	bool r;

	if (ew == NULL || eg == NULL)
		return same(want, got);
	/* The message text is free-form: compare it by type only. */
	if (!same_type(&ew->via.array.ptr[1], &eg->via.array.ptr[1]))
		return false;
	saved = ew->via.array.ptr[1];
	ew->via.array.ptr[1] = eg->via.array.ptr[1];
	r = same(want, got);
	ew->via.array.ptr[1] = saved;
	return r;
}

static size_t
parse_hex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;

	while (*s != '\0' && *s != '\n') {
		unsigned v;

		if (*s == ' ') {
			s++;
			continue;
		}
		ck_assert_msg(isxdigit((unsigned char)s[0]) &&
		    isxdigit((unsigned char)s[1]), "bad hex in spec: %s", s);
		sscanf(s, "%2x", &v);
		ck_assert_uint_lt(n, max);
		out[n++] = (unsigned char)v;
		s += 2;
	}
	return n;
}

START_TEST(spec_examples)
{
	static unsigned char bytes[1 << 16];
	struct tclient *clients[MAX_CLIENTS] = { 0 };
	struct tdaemon d;
	char line[1 << 18];
	FILE *f;
	int lineno = 0, sent = 0, received = 0;
	bool in_block = false;

	f = fopen(spec_path(), "r");
	ck_assert_msg(f != NULL, "cannot open %s", spec_path());
	t_daemon_start(&d, NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		int x;

		lineno++;
		if (strncmp(line, "```", 3) == 0) {
			/* msgpack-cluster blocks need a cluster: they are
			 * test_cluster's to replay. */
			in_block = strncmp(line, "```msgpack", 10) == 0 &&
			    strncmp(line, "```msgpack-cluster", 18) != 0;
			continue;
		}
		if (!in_block || line[0] < 'A' || line[0] > 'Z')
			continue;
		x = line[0] - 'A';
		if (strncmp(line + 1, " close", 6) == 0) {
			ck_assert_ptr_nonnull(clients[x]);
			t_close(clients[x]);
			clients[x] = NULL;
			continue;
		}
		if ((line[1] != '>' && line[1] != '<') || line[2] != ' ')
			continue;
		size_t n = parse_hex(line + 3, bytes, sizeof(bytes));
		if (line[1] == '>') {
			if (clients[x] == NULL)
				clients[x] = t_connect(d.path);
			t_send_raw(clients[x], bytes, n);
			sent++;
		} else {
			msgpack_zone zone;
			msgpack_object want, *got;
			size_t off = 0;

			ck_assert_msg(clients[x] != NULL, "%s:%d: client %c "
			    "receives before it connects", spec_path(), lineno,
			    line[0]);
			msgpack_zone_init(&zone, 4096);
			ck_assert_int_eq(msgpack_unpack((const char *)bytes, n,
			    &off, &zone, &want), MSGPACK_UNPACK_SUCCESS);
			got = t_recv(clients[x], -1);
			ck_assert_msg(got != NULL, "%s:%d: nothing received",
			    spec_path(), lineno);
			if (!same_message(&want, got)) {
				fprintf(stderr, "%s:%d: expected ", spec_path(),
				    lineno);
				msgpack_object_print(stderr, want);
				fprintf(stderr, "\n  received ");
				msgpack_object_print(stderr, *got);
				fprintf(stderr, "\n");
				ck_abort_msg("%s:%d: the daemon's answer differs "
				    "from the spec", spec_path(), lineno);
			}
			msgpack_zone_destroy(&zone);
			received++;
		}
	}
	fclose(f);
	/* A spec without examples would pass vacuously. */
	ck_assert_int_ge(sent, 20);
	ck_assert_int_ge(received, 20);
	for (int i = 0; i < MAX_CLIENTS; i++)
		t_close(clients[i]);
	t_daemon_stop(&d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("spec");
	TCase *tc = tcase_create("examples");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, spec_examples);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
