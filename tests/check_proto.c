/*
 * check_proto.c: unit tests of the protocol layer with no sockets: the
 * framing guard (splits, limits, depth, bad bytes) and request
 * classification.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "guard.h"
#include "proto.h"
#include "testlib.h"

/* Feed a buffer in chunks of `step` bytes; count objects and the status
 * that ended the scan. */
static enum guard_status
scan_all(struct guard *g, const uint8_t *p, size_t n, size_t step,
    int *objects)
{
	size_t off = 0;

	*objects = 0;
	while (off < n) {
		size_t chunk = n - off < step ? n - off : step, used, at = 0;
		enum guard_status st;

		while (at < chunk) {
			st = guard_scan(g, p + off + at, chunk - at, &used);
			at += used;
			if (st == GUARD_OBJECT)
				(*objects)++;
			else if (st != GUARD_MORE)
				return st;
		}
		off += chunk;
	}
	return GUARD_MORE;
}

START_TEST(guard_frames_every_type_at_every_split)
{
	struct tpack p;
	struct guard g;
	int objs;

	tp_init(&p);
	/* One object of each kind msgpack has. */
	msgpack_pack_nil(&p.pk);
	msgpack_pack_true(&p.pk);
	msgpack_pack_int8(&p.pk, -5);
	msgpack_pack_uint8(&p.pk, 200);
	msgpack_pack_uint16(&p.pk, 60000);
	msgpack_pack_uint32(&p.pk, 4000000000u);
	msgpack_pack_uint64(&p.pk, 1ull << 60);
	msgpack_pack_int16(&p.pk, -30000);
	msgpack_pack_int32(&p.pk, -2000000000);
	msgpack_pack_int64(&p.pk, -(1ll << 60));
	msgpack_pack_float(&p.pk, 1.5f);
	msgpack_pack_double(&p.pk, 2.5);
	tp_str(&p, "");
	tp_str(&p, "short");
	{
		char s[300];

		memset(s, 'x', sizeof(s));
		tp_strn(&p, s, 40);	/* str8 */
		tp_strn(&p, s, 300);	/* str16 */
		msgpack_pack_bin(&p.pk, 300);
		msgpack_pack_bin_body(&p.pk, s, 300);
		msgpack_pack_bin(&p.pk, 3);
		msgpack_pack_bin_body(&p.pk, s, 3);
		for (int len = 1; len <= 20; len++) {	/* fixext and ext8 */
			msgpack_pack_ext(&p.pk, (size_t)len, 7);
			msgpack_pack_ext_body(&p.pk, s, (size_t)len);
		}
		msgpack_pack_ext(&p.pk, 300, 1);	/* ext16 */
		msgpack_pack_ext_body(&p.pk, s, 300);
	}
	tp_arr(&p, 0);
	tp_map(&p, 0);
	tp_arr(&p, 20);		/* array16 */
	for (int i = 0; i < 20; i++)
		tp_uint(&p, (uint64_t)i);
	tp_map(&p, 2);
	tp_str(&p, "k");
	tp_arr(&p, 1);
	tp_map(&p, 0);
	tp_str(&p, "k2");
	tp_nil(&p);
	tp_req(&p, 1, "stats", 0);
	for (size_t step = 1; step <= 9; step++) {
		guard_init(&g, 1 << 20);
		ck_assert_int_eq(scan_all(&g, (uint8_t *)p.buf.data, p.buf.size,
		    step, &objs), GUARD_MORE);
		ck_assert_int_eq(objs, 44);
		ck_assert_uint_eq(g.size, 0);	/* ended on a boundary */
	}
	tp_free(&p);
}
END_TEST

START_TEST(guard_reports_object_ends)
{
	const uint8_t two[] = { 0x92, 0x01, 0x02, 0x93, 0x01 };
	struct guard g;
	size_t used;

	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, two, sizeof(two), &used), GUARD_OBJECT);
	ck_assert_uint_eq(used, 3);
	ck_assert_int_eq(guard_scan(&g, two + 3, 2, &used), GUARD_MORE);
	ck_assert_uint_eq(used, 2);
}
END_TEST

START_TEST(guard_rejects_c1)
{
	const uint8_t bad[] = { 0x92, 0x01, 0xc1 };
	struct guard g;
	size_t used;

	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, bad, sizeof(bad), &used), GUARD_BAD);
}
END_TEST

START_TEST(guard_too_large_from_headers_alone)
{
	/* Each of these declares more than fits, in a handful of bytes. */
	const uint8_t str32[] = { 0x94, 0x00, 0x01, 0xdb, 0x7f, 0xff, 0xff,
	    0xff };
	const uint8_t arr32[] = { 0xdd, 0x7f, 0xff, 0xff, 0xff };
	const uint8_t map32[] = { 0xdf, 0x00, 0x01, 0x00, 0x00 };
	const uint8_t bin16[] = { 0xc5, 0x04, 0x01 };	/* 1025 bytes */
	const uint8_t ext32[] = { 0xc9, 0x00, 0x10, 0x00, 0x00, 0x01 };
	const uint8_t *cases[] = { str32, arr32, map32, bin16, ext32 };
	const size_t lens[] = { sizeof(str32), sizeof(arr32), sizeof(map32),
	    sizeof(bin16), sizeof(ext32) };
	struct guard g;
	size_t used;

	for (int i = 0; i < 5; i++) {
		guard_init(&g, 1024);
		ck_assert_int_eq(guard_scan(&g, cases[i], lens[i], &used),
		    GUARD_TOO_LARGE);
	}
}
END_TEST

START_TEST(guard_size_bound_is_exact)
{
	/* A str8 of 253 bytes: 255 bytes in all. */
	uint8_t buf[255];
	struct guard g;
	size_t used;

	buf[0] = 0xd9;
	buf[1] = 253;
	memset(buf + 2, 'a', 253);
	guard_init(&g, 255);
	ck_assert_int_eq(guard_scan(&g, buf, sizeof(buf), &used), GUARD_OBJECT);
	ck_assert_uint_eq(used, 255);
	guard_init(&g, 254);
	ck_assert_int_eq(guard_scan(&g, buf, sizeof(buf), &used),
	    GUARD_TOO_LARGE);
	/* Many small elements add up too. */
	{
		uint8_t arr[3 + 300];

		arr[0] = 0xdc;
		arr[1] = 0x01;
		arr[2] = 0x2c;		/* 300 elements */
		memset(arr + 3, 0xc0, 300);
		guard_init(&g, 303);
		ck_assert_int_eq(guard_scan(&g, arr, sizeof(arr), &used),
		    GUARD_OBJECT);
		guard_init(&g, 302);
		ck_assert_int_eq(guard_scan(&g, arr, sizeof(arr), &used),
		    GUARD_TOO_LARGE);
	}
}
END_TEST

START_TEST(guard_depth)
{
	uint8_t buf[64];
	struct guard g;
	size_t used;

	memset(buf, 0x91, PR_NESTING_MAX);
	buf[PR_NESTING_MAX] = 0xc0;
	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, buf, PR_NESTING_MAX + 1, &used),
	    GUARD_OBJECT);
	memset(buf, 0x91, PR_NESTING_MAX + 1);
	buf[PR_NESTING_MAX + 1] = 0xc0;
	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, buf, PR_NESTING_MAX + 2, &used),
	    GUARD_TOO_DEEP);
	/* An empty array or map innermost is one level more. */
	memset(buf, 0x91, PR_NESTING_MAX);
	buf[PR_NESTING_MAX] = 0x90;
	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, buf, PR_NESTING_MAX + 1, &used),
	    GUARD_TOO_DEEP);
	buf[PR_NESTING_MAX] = 0x80;
	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, buf, PR_NESTING_MAX + 1, &used),
	    GUARD_TOO_DEEP);
	buf[PR_NESTING_MAX - 1] = 0x90;
	guard_init(&g, 1024);
	ck_assert_int_eq(guard_scan(&g, buf, PR_NESTING_MAX, &used),
	    GUARD_OBJECT);
}
END_TEST

START_TEST(decoder_handles_max_depth)
{
	/* The guard's limit must be within what msgpack-c can decode. */
	uint8_t buf[64];
	struct pr_decoder d;
	const pr_value *v;

	memset(buf, 0x91, PR_NESTING_MAX);
	buf[PR_NESTING_MAX] = 0xc0;
	ck_assert_int_eq(proto_decoder_init(&d), 0);
	ck_assert_int_eq(proto_decode(&d, (char *)buf, PR_NESTING_MAX + 1, &v),
	    0);
	ck_assert_int_eq(v->type, MSGPACK_OBJECT_ARRAY);
	proto_decoded(&d);
	proto_decoder_deinit(&d);
}
END_TEST

/* Decode bytes and classify them, with and without the peek's hint of
 * the same bytes: both ways must agree. */
static void
classify(const void *bytes, size_t len, struct pr_request *rq)
{
	struct pr_decoder d;
	struct pr_request hinted;
	struct pr_peek pk;
	const pr_value *v;

	ck_assert_int_eq(proto_decoder_init(&d), 0);
	ck_assert_int_eq(proto_decode(&d, bytes, len, &v), 0);
	proto_parse(v, NULL, rq);
	(void)proto_peek(bytes, len, &pk);
	proto_parse(v, &pk, &hinted);
	ck_assert_int_eq(hinted.kind, rq->kind);
	ck_assert_int_eq(hinted.err, rq->err);
	ck_assert_int_eq(hinted.msgid, rq->msgid);
	if (rq->kind == PR_KIND_REQUEST)
		ck_assert_int_eq(hinted.method, rq->method);
	ck_assert(hinted.why == rq->why);
	/* The request points into the zone: copy what the tests read. */
	rq->args.v = NULL;
	proto_decoded(&d);
	proto_decoder_deinit(&d);
}

START_TEST(parse_classifies)
{
	struct pr_request rq;

	/* [0, 5, "stats", []] */
	classify("\x94\x00\x05\xa5stats\x90", 10, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_REQUEST);
	ck_assert_int_eq(rq.method, PR_M_STATS);
	ck_assert_uint_eq(rq.msgid, 5);
	/* [0, 5, "stats", [1]]: arity */
	classify("\x94\x00\x05\xa5stats\x91\x01", 11, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_REQUEST);
	ck_assert_int_eq(rq.err, PR_ERR_BAD_REQUEST);
	/* [0, 6, "nope", []] */
	classify("\x94\x00\x06\xa4nope\x90", 9, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_REQUEST);
	ck_assert_int_eq(rq.err, PR_ERR_UNKNOWN_METHOD);
	ck_assert_uint_eq(rq.msgid, 6);
	/* [0, 6, "nope", ["x"]] and [0, 6, "whereis", ["x"]]: the peek reads
	 * both methods, the hint must agree with the lookup (in classify). */
	classify("\x94\x00\x06\xa4nope\x91\xa1x", 11, &rq);
	ck_assert_int_eq(rq.err, PR_ERR_UNKNOWN_METHOD);
	classify("\x94\x00\x06\xa7whereis\x91\xa1x", 14, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_REQUEST);
	ck_assert_int_eq(rq.method, PR_M_WHEREIS);
	/* [0, 7, 1, []]: method not a str */
	classify("\x94\x00\x07\x01\x90", 5, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_REQUEST);
	/* [0, 8, "stats"]: three elements */
	classify("\x93\x00\x08\xa5stats", 9, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_REQUEST);
	ck_assert_uint_eq(rq.msgid, 8);
	/* [0, -1, "stats", []]: no msgid */
	classify("\x94\x00\xff\xa5stats\x90", 10, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	/* [0, 2^32, "stats", []] */
	classify("\x94\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa5stats\x90",
	    18, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	/* [2, "x", []]: a client notification */
	classify("\x93\x02\xa1x\x90", 5, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_NOTIFY);
	/* [2, "x", {}]: malformed notification */
	classify("\x93\x02\xa1x\x80", 5, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	/* 42, {}, [], [1, 1, nil, nil] */
	classify("\x2a", 1, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	classify("\x80", 1, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	classify("\x90", 1, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
	classify("\x94\x01\x01\xc0\xc0", 5, &rq);
	ck_assert_int_eq(rq.kind, PR_KIND_BAD_OBJECT);
}
END_TEST

/* Decode what an out holds into zone; the object must fill it exactly. */
static msgpack_object
decoded(struct pr_out *o, msgpack_zone *z)
{
	msgpack_object obj;
	size_t off = 0;

	ck_assert_int_eq(msgpack_unpack(proto_out_data(o), proto_out_len(o),
	    &off, z, &obj), MSGPACK_UNPACK_SUCCESS);
	ck_assert_uint_eq(off, proto_out_len(o));
	return obj;
}

START_TEST(encoder_boundaries)
{
	static const uint64_t uints[] = { 0, 1, 127, 128, 255, 256, 65535,
	    65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX };
	static const int64_t pids[] = { -1, -32, -33, -128, -129, -32768,
	    -32769, INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN, 0, 4242 };
	static const size_t lens[] = { 1, 31, 32, 255 };
	struct reg_target t = { NULL, 0, 0 };
	struct pr_out o;
	msgpack_zone z;

	proto_out_init(&o);
	msgpack_zone_init(&z, 4096);
	for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++) {
		msgpack_object v;

		proto_out_reset(&o);
		ck_assert_int_eq(proto_put_uint(&o, uints[i]), 0);
		v = decoded(&o, &z);
		ck_assert_int_eq(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
		ck_assert_uint_eq(v.via.u64, uints[i]);
		/* The reply header carries any uint32 msgid. */
		if (uints[i] <= UINT32_MAX) {
			proto_out_reset(&o);
			ck_assert_int_eq(proto_reply_begin(&o, (uint32_t)uints[i]),
			    0);
			ck_assert_int_eq(proto_put_bool(&o, true), 0);
			v = decoded(&o, &z);
			ck_assert_uint_eq(v.via.array.size, 4);
			ck_assert_uint_eq(v.via.array.ptr[1].via.u64, uints[i]);
			ck_assert_int_eq(v.via.array.ptr[2].type,
			    MSGPACK_OBJECT_NIL);
			ck_assert(v.via.array.ptr[3].via.boolean);
		}
	}
	for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			char buf[sizeof(struct reg_name) + 256 + 8];
			struct reg_name *n = (struct reg_name *)(void *)buf;
			struct reg_client c = { .id = uints[i % 11], .pid = pids[i],
			    .uid = 1000, .gid = UINT32_MAX };
			msgpack_object v;

			memset(n, 0, sizeof(*n));
			n->owner = &c;
			n->name_len = (uint8_t)lens[k];
			memset(n->data, 'n', lens[k]);
			n->data[lens[k]] = 0x2a;	/* value: 42 */
			n->value_len = k % 2;		/* or none: nil */
			n->since_ms = 1795000000000ULL;
			n->gen = UINT64_MAX - uints[i % 11];
			proto_out_reset(&o);
			ck_assert_int_eq(proto_put_entry(&o, n), 0);
			ck_assert_uint_eq(proto_out_len(&o), proto_entry_size(n));
			v = decoded(&o, &z);
			ck_assert_int_eq(v.type, MSGPACK_OBJECT_MAP);
			ck_assert_uint_eq(v.via.map.size, 8);
			ck_assert_uint_eq(o_get(&v, "gen")->via.u64,
			    UINT64_MAX - uints[i % 11]);
			ck_assert_uint_eq(o_get(&v, "name")->via.str.size,
			    lens[k]);
			ck_assert_uint_eq(o_get(&v, "conn")->via.u64, c.id);
			ck_assert(pids[i] < 0 ?
			    o_get(&v, "pid")->via.i64 == pids[i] :
			    o_get(&v, "pid")->via.u64 == (uint64_t)pids[i]);
			ck_assert_uint_eq(o_get(&v, "gid")->via.u64, UINT32_MAX);
			if (k % 2)
				ck_assert_uint_eq(o_get(&v, "value")->via.u64, 42);
			else
				ck_assert_int_eq(o_get(&v, "value")->type,
				    MSGPACK_OBJECT_NIL);
			ck_assert_uint_eq(o_get(&v, "since")->via.u64,
			    1795000000000ULL);
			/* A down for the same name decodes too. */
			proto_out_reset(&o);
			t.name = n->data;
			t.len = lens[k];
			ck_assert_int_eq(proto_push_down(&o, uints[i % 11],
			    &t, PR_DOWN_DISCONNECTED), 0);
			v = decoded(&o, &z);
			ck_assert(o_is_str(&v.via.array.ptr[1], "down"));
			ck_assert_uint_eq(v.via.array.ptr[2].via.array.ptr[0]
			    .via.u64, uints[i % 11]);
			ck_assert(o_is_str(&v.via.array.ptr[2].via.array.ptr[2],
			    "disconnected"));
		}
	}
	msgpack_zone_destroy(&z);
	proto_out_deinit(&o);
}
END_TEST

/* Peek on an exact-size heap copy, so ASan sees any read past the end. */
static bool
peek(const void *bytes, size_t len, char *name, size_t *nlen)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct pr_peek pk;
	const char *n;
	bool r;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, bytes, len);
	r = proto_peek(copy, len, &pk);
	n = pk.name;
	*nlen = pk.nlen;
	if (r) {
		ck_assert(n >= (const char *)copy &&
		    (size_t)(n - (const char *)copy) + *nlen <= len);
		memcpy(name, n, *nlen);
		name[*nlen] = '\0';
	}
	free(copy);
	return r;
}

START_TEST(peek_finds_names_of_lookups)
{
	static const char wh[] = "\x94\x00\x05\xa7whereis\x91\xa3" "abc";
	char name[256], big[300];
	size_t nlen;

	ck_assert(peek(wh, sizeof(wh) - 1, name, &nlen));
	ck_assert_str_eq(name, "abc");
	/* A uint32 msgid, more params, a str8 name. */
	ck_assert(peek("\x94\x00\xce\x00\x01\x00\x00\xa4send\x92\xd9\x02"
	    "ab\xc0", 17, name, &nlen));
	ck_assert_str_eq(name, "ab");
	big[0] = '\x94'; big[1] = 0; big[2] = 1; big[3] = '\xa8';
	memcpy(big + 4, "register", 8);
	big[12] = '\x91'; big[13] = '\xd9'; big[14] = (char)255;
	memset(big + 15, 'x', 255);
	ck_assert(peek(big, 270, name, &nlen));
	ck_assert_uint_eq(nlen, 255);

	/* Not a lookup of a registration: groups, no name, notifications,
	 * a connection id as target, an empty name. */
	ck_assert(!peek("\x94\x00\x05\xa7members\x91\xa3" "abc", 14, name,
	    &nlen));
	ck_assert(!peek("\x94\x00\x05\xa5stats\x90", 10, name, &nlen));
	ck_assert(!peek("\x93\x02\xa7whereis\x91\xa3" "abc", 13, name, &nlen));
	ck_assert(!peek("\x94\x00\x05\xa7monitor\x91\x07", 12, name, &nlen));
	ck_assert(!peek("\x94\x00\x05\xa7whereis\x91\xa0", 12, name, &nlen));
	ck_assert(!peek("\x94\x00\xff\xa7whereis\x91\xa1x", 13, name, &nlen));

	/* Every truncation is refused without reading past its end. */
	for (size_t n = 0; n < sizeof(wh) - 1; n++)
		ck_assert(!peek(wh, n, name, &nlen));
	for (size_t n = 0; n < 270; n++)
		ck_assert(!peek(big, n, name, &nlen));
}
END_TEST

START_TEST(protocol_tables)
{
	ck_assert_str_eq(pr_err_name(PR_ERR_TOO_LARGE), "too_large");
	ck_assert_ptr_null(pr_err_name(PR_ERR__COUNT));
	for (int m = 0; m < PR_M__COUNT; m++) {
		const char *n = pr_method_name((enum pr_method)m);

		ck_assert_int_eq(pr_method_lookup(n, strlen(n)), m);
	}
	ck_assert_int_eq(pr_method_lookup("Stats", 5), -1);
	ck_assert_int_eq(pr_method_lookup("stat", 4), -1);
	/* Same length as a method, not a method. */
	ck_assert_int_eq(pr_method_lookup("sand", 4), -1);
	ck_assert_int_eq(pr_method_lookup("", 0), -1);
	ck_assert_str_eq(pr_down_reason_name(PR_DOWN_NOPROC), "noproc");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proto");
	TCase *tg = tcase_create("guard");
	TCase *tp = tcase_create("parse");
	SRunner *sr;
	int failed;

	tcase_add_test(tg, guard_frames_every_type_at_every_split);
	tcase_add_test(tg, guard_reports_object_ends);
	tcase_add_test(tg, guard_rejects_c1);
	tcase_add_test(tg, guard_too_large_from_headers_alone);
	tcase_add_test(tg, guard_size_bound_is_exact);
	tcase_add_test(tg, guard_depth);
	tcase_add_test(tg, decoder_handles_max_depth);
	tcase_add_test(tp, parse_classifies);
	tcase_add_test(tp, protocol_tables);
	tcase_add_test(tp, peek_finds_names_of_lookups);
	tcase_add_test(tp, encoder_boundaries);
	suite_add_tcase(s, tg);
	suite_add_tcase(s, tp);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
