/*
 * check_policy.c: unit tests of the ownership rules, no daemon: rule
 * parsing, first match wins, ${uid}, groups (primary and the peer's own
 * supplementary ones), the default, administrators.
 */
#include <string.h>

#include <check.h>

#include "policy.h"

static bool
allows(const struct policy *p, uint32_t uid, uint32_t gid, const char *name,
    char *why)
{
	struct policy_peer peer = { uid, gid, NULL, 0 };

	return policy_allows(p, &peer, name, strlen(name), why, 128);
}

static bool
is_admin(const struct policy *p, uint32_t uid, uint32_t gid,
    uint32_t daemon_uid)
{
	struct policy_peer peer = { uid, gid, NULL, 0 };

	return policy_is_admin(p, &peer, daemon_uid);
}

START_TEST(rules_parse)
{
	static struct policy p;

	memset(&p, 0, sizeof(p));
	ck_assert_ptr_null(policy_add_rule(&p, "allow * user.${uid}.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "deny uid:1000 app.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "allow user:root x.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "allow gid:0 y.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "allow group:root z.*"));
	ck_assert_uint_eq(p.nrules, 5);
	ck_assert_ptr_nonnull(policy_add_rule(&p, "maybe * x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow *"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow * x y"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow uid:abc x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow uid:-1 x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow who:me x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow user:no-such-user-xyz x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p,
	    "allow group:no-such-group-xyz x"));
	ck_assert_uint_eq(p.nrules, 5);	/* bad rules are not added */
	for (int i = 5; i < POLICY_MAX_RULES; i++)
		ck_assert_ptr_null(policy_add_rule(&p, "allow * x"));
	ck_assert_ptr_nonnull(policy_add_rule(&p, "allow * x"));
}
END_TEST

START_TEST(first_match_wins)
{
	static struct policy p;
	char why[128];

	memset(&p, 0, sizeof(p));
	ck_assert_ptr_null(policy_add_rule(&p, "deny uid:1000 app.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "allow * user.${uid}.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "deny * user.*"));
	ck_assert(!allows(&p, 1000, 1000, "app.web", why));
	ck_assert_str_eq(why, "denied by rule 1: deny uid:1000 app.*");
	ck_assert(allows(&p, 1001, 1001, "app.web", why));	/* default */
	ck_assert(allows(&p, 1000, 1000, "user.1000.x", why));
	ck_assert(!allows(&p, 1000, 1000, "user.1001.x", why));
	ck_assert_str_eq(why, "denied by rule 3: deny * user.*");
	/* ${uid} is the whole number: 100 is not a prefix of 1000. */
	ck_assert(!allows(&p, 100, 100, "user.1000.x", why));
	ck_assert(allows(&p, 0, 0, "user.0.x", why));
	/* A pattern is a glob over the whole name. */
	ck_assert(allows(&p, 1000, 1000, "xapp.web", why));
	p.deny_default = true;
	ck_assert(!allows(&p, 5, 5, "other", why));
	ck_assert_str_eq(why, "denied by the default policy (deny)");
	ck_assert(allows(&p, 5, 5, "user.5.a", why));
}
END_TEST

START_TEST(groups_and_admins)
{
	static struct policy p;
	char why[128];

	memset(&p, 0, sizeof(p));
	/* gid 0 (root's group): matched by the peer's primary gid. */
	ck_assert_ptr_null(policy_add_rule(&p, "allow gid:0 sys.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "deny * sys.*"));
	ck_assert(allows(&p, 1000, 0, "sys.x", why));
	ck_assert(!allows(&p, 1000, 1000, "sys.x", why));
	/* Administrators: uid 0, the daemon's user, the admin group. */
	ck_assert(is_admin(&p, 0, 0, 4242));
	ck_assert(is_admin(&p, 4242, 4242, 4242));
	ck_assert(!is_admin(&p, 1000, 0, 4242));
	ck_assert_ptr_null(policy_set_admin_group(&p, "0"));
	ck_assert(is_admin(&p, 1000, 0, 4242));
	ck_assert(!is_admin(&p, 1000, 1000, 4242));
	ck_assert_ptr_null(policy_set_admin_group(&p, ""));
	ck_assert(!is_admin(&p, 1000, 0, 4242));
	ck_assert_ptr_nonnull(policy_set_admin_group(&p, "no-such-group-xyz"));
}
END_TEST

START_TEST(supplementary_groups)
{
	static struct policy p;
	static const uint32_t in_7[] = { 5, 7 }, other[] = { 5, 6 };
	struct policy_peer with = { 1000, 1000, in_7, 2 };
	struct policy_peer without = { 1000, 1000, other, 2 };
	struct policy_peer none = { 1000, 1000, NULL, 0 };
	char why[128];

	/* Only the groups the peer's process is in count: a user listed in
	 * a group it dropped (setpriv --clear-groups) is not in it. */
	memset(&p, 0, sizeof(p));
	ck_assert_ptr_null(policy_add_rule(&p, "allow gid:7 app.*"));
	ck_assert_ptr_null(policy_add_rule(&p, "deny * app.*"));
	ck_assert(policy_allows(&p, &with, "app.x", 5, why, sizeof(why)));
	ck_assert(!policy_allows(&p, &without, "app.x", 5, why, sizeof(why)));
	ck_assert_str_eq(why, "denied by rule 2: deny * app.*");
	ck_assert(!policy_allows(&p, &none, "app.x", 5, why, sizeof(why)));
	ck_assert_ptr_null(policy_set_admin_group(&p, "7"));
	ck_assert(policy_is_admin(&p, &with, 4242));
	ck_assert(!policy_is_admin(&p, &without, 4242));
	ck_assert(!policy_is_admin(&p, &none, 4242));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("rules");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, rules_parse);
	tcase_add_test(tc, first_match_wins);
	tcase_add_test(tc, groups_and_admins);
	tcase_add_test(tc, supplementary_groups);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
