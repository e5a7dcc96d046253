/*
 * policy.h: who may own which names.  Ordered allow/deny rules match a
 * connection's peer credentials (uid, gid, group membership) and a name
 * pattern (fnmatch glob, with ${uid} standing for the connection's uid);
 * the first rule that matches decides, else the default.  Names of users
 * and groups are resolved when the configuration is read, never when a
 * request is answered.  Plain data: it lives in struct config.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_MAX_RULES	64
#define POLICY_MAX_MEMBERS	64

enum policy_subject {
	POLICY_ANY,		/* * */
	POLICY_UID,		/* uid:N or user:NAME */
	POLICY_GROUP		/* gid:N or group:NAME */
};

struct policy_rule {
	bool			 allow;
	enum policy_subject	 kind;
	uint32_t		 id;		/* uid or gid */
	uint32_t		 nmembers;	/* a group's members, as uids */
	uint32_t		 members[POLICY_MAX_MEMBERS];
	char			 pattern[128];
	char			 text[192];	/* as written, for messages */
};

struct policy {
	struct policy_rule	 rules[POLICY_MAX_RULES];
	uint32_t		 nrules;
	bool			 deny_default;
	bool			 has_admin_group;
	uint32_t		 admin_gid;
	uint32_t		 nadmins;	/* the admin group's members */
	uint32_t		 admins[POLICY_MAX_MEMBERS];
};

/* Append a rule "allow|deny SUBJECT PATTERN"; NULL, or what is wrong. */
const char	*policy_add_rule(struct policy *, const char *text);
/* Name the administrators' group; NULL, or what is wrong. */
const char	*policy_set_admin_group(struct policy *, const char *name);
/*
 * May a connection with these credentials own name?  When not, why
 * names the rule (or the default) that said no.
 */
bool		 policy_allows(const struct policy *, uint32_t uid,
		    uint32_t gid, const char *name, size_t len, char *why,
		    size_t whysize);
/* Administrators: uid 0, the daemon's own user, the admin group. */
bool		 policy_is_admin(const struct policy *, uint32_t uid,
		    uint32_t gid, uint32_t daemon_uid);

#endif /* POLICY_H */
