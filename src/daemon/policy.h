/*
 * policy.h: who may own which names.  Ordered allow/deny rules match a
 * connection's peer credentials (uid, primary gid, and the supplementary
 * groups the kernel reports for the peer, SO_PEERGROUPS) and a name
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

enum policy_subject {
	POLICY_ANY,		/* * */
	POLICY_UID,		/* uid:N or user:NAME */
	POLICY_GROUP		/* gid:N or group:NAME */
};

struct policy_rule {
	bool			 allow;
	enum policy_subject	 kind;
	uint32_t		 id;		/* uid or gid */
	char			 pattern[128];
	char			 text[192];	/* as written, for messages */
};

struct policy {
	struct policy_rule	 rules[POLICY_MAX_RULES];
	uint32_t		 nrules;
	bool			 deny_default;
	bool			 has_admin_group;
	uint32_t		 admin_gid;
};

/*
 * Who is asking, as the kernel vouches for it when the peer connected:
 * SO_PEERCRED's uid and gid, SO_PEERGROUPS' supplementary groups.  The
 * group file is never consulted: a process that dropped a group
 * (setgroups, setpriv --clear-groups) is no longer in it.
 */
struct policy_peer {
	uint32_t		 uid;
	uint32_t		 gid;
	const uint32_t		*groups;
	uint32_t		 ngroups;
};

/* Append a rule "allow|deny SUBJECT PATTERN"; NULL, or what is wrong. */
const char	*policy_add_rule(struct policy *, const char *text);
/* Name the administrators' group; NULL, or what is wrong. */
const char	*policy_set_admin_group(struct policy *, const char *name);
/*
 * May a connection with these credentials own name?  When not, why
 * names the rule (or the default) that said no.
 */
bool		 policy_allows(const struct policy *,
		    const struct policy_peer *, const char *name, size_t len,
		    char *why, size_t whysize);
/* Administrators: uid 0, the daemon's own user, the admin group. */
bool		 policy_is_admin(const struct policy *,
		    const struct policy_peer *, uint32_t daemon_uid);

#endif /* POLICY_H */
