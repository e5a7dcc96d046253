/*
 * policy.c: ownership rules from peer credentials (see policy.h).
 */
#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "procreg-protocol.h"

/* A decimal id, whole; false when it is not one. */
static bool
parse_id(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
	    v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A group's gid, looked up now (a bare number need not exist). */
static const char *
resolve_group(const char *name, uint32_t *gid)
{
	struct group *gr;

	if (parse_id(name, gid))
		return NULL;
	if ((gr = getgrnam(name)) == NULL)
		return "no such group";
	*gid = gr->gr_gid;
	return NULL;
}

const char *
policy_add_rule(struct policy *p, const char *text)
{
	char action[16], subject[96], pattern[160], extra[2];
	struct policy_rule *r;
	struct passwd *pw;
	const char *why;

	if (p->nrules == POLICY_MAX_RULES)
		return "too many rules (64)";
	if (strlen(text) >= sizeof(r->text))
		return "the rule is too long";
	if (sscanf(text, "%15s %95s %159s %1s", action, subject, pattern,
	    extra) != 3)
		return "expected: allow|deny SUBJECT PATTERN";
	r = &p->rules[p->nrules];
	memset(r, 0, sizeof(*r));
	if (strcmp(action, "allow") == 0)
		r->allow = true;
	else if (strcmp(action, "deny") != 0)
		return "the action must be allow or deny";
	if (strlen(pattern) >= sizeof(r->pattern))
		return "the pattern is too long";
	if (strcmp(subject, "*") == 0) {
		r->kind = POLICY_ANY;
	} else if (strncmp(subject, "uid:", 4) == 0) {
		r->kind = POLICY_UID;
		if (!parse_id(subject + 4, &r->id))
			return "uid: takes a number";
	} else if (strncmp(subject, "user:", 5) == 0) {
		r->kind = POLICY_UID;
		if ((pw = getpwnam(subject + 5)) == NULL)
			return "no such user";
		r->id = pw->pw_uid;
	} else if (strncmp(subject, "gid:", 4) == 0 ||
	    strncmp(subject, "group:", 6) == 0) {
		r->kind = POLICY_GROUP;
		why = resolve_group(strchr(subject, ':') + 1, &r->id);
		if (why != NULL)
			return why;
	} else {
		return "the subject must be *, uid:N, user:NAME, gid:N or "
		    "group:NAME";
	}
	strcpy(r->pattern, pattern);
	strcpy(r->text, text);
	p->nrules++;
	return NULL;
}

const char *
policy_set_admin_group(struct policy *p, const char *name)
{
	const char *why;

	if (name[0] == '\0') {
		p->has_admin_group = false;
		return NULL;
	}
	why = resolve_group(name, &p->admin_gid);
	if (why != NULL)
		return why;
	p->has_admin_group = true;
	return NULL;
}

/* Is the peer in group gid (primary or supplementary)? */
static bool
in_group(const struct policy_peer *peer, uint32_t gid)
{
	if (peer->gid == gid)
		return true;
	for (uint32_t i = 0; i < peer->ngroups; i++) {
		if (peer->groups[i] == gid)
			return true;
	}
	return false;
}

/* Does name match pattern, ${uid} standing for uid? */
static bool
name_matches(const char *pattern, uint32_t uid, const char *name, size_t len)
{
	char pat[256], nm[PR_NAME_MAX + 1];
	const char *at, *src = pattern;
	size_t o = 0;

	while ((at = strstr(src, "${uid}")) != NULL) {
		int n = snprintf(pat + o, sizeof(pat) - o, "%.*s%u",
		    (int)(at - src), src, (unsigned)uid);

		if (n < 0 || (size_t)n >= sizeof(pat) - o)
			return false;
		o += (size_t)n;
		src = at + 6;
	}
	if (snprintf(pat + o, sizeof(pat) - o, "%s", src) >=
	    (int)(sizeof(pat) - o))
		return false;
	memcpy(nm, name, len);
	nm[len] = '\0';
	return fnmatch(pat, nm, 0) == 0;
}

bool
policy_allows(const struct policy *p, const struct policy_peer *peer,
    const char *name, size_t len, char *why, size_t whysize)
{
	uint32_t uid = peer->uid;

	for (uint32_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];
		bool who;

		switch (r->kind) {
		case POLICY_ANY:
			who = true;
			break;
		case POLICY_UID:
			who = uid == r->id;
			break;
		default:
			who = in_group(peer, r->id);
			break;
		}
		if (!who || !name_matches(r->pattern, uid, name, len))
			continue;
		if (!r->allow)
			snprintf(why, whysize, "denied by rule %u: %s", i + 1,
			    r->text);
		return r->allow;
	}
	if (p->deny_default)
		snprintf(why, whysize, "denied by the default policy (deny)");
	return !p->deny_default;
}

bool
policy_is_admin(const struct policy *p, const struct policy_peer *peer,
    uint32_t daemon_uid)
{
	if (peer->uid == 0 || peer->uid == daemon_uid)
		return true;
	return p->has_admin_group && in_group(peer, p->admin_gid);
}
