/*
 * args.h: reading a request's params through a typed cursor (struct
 * pr_args, filled by proto_parse).  Each reader checks the type and bounds
 * of one param and advances; handlers never see msgpack.
 */
#ifndef ARGS_H
#define ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "registry.h"

/* Params: each returns 0 or PR_ERR_BAD_REQUEST and advances. */
bool	 args_more(const struct pr_args *);
int	 args_name(struct pr_args *, const char **s, size_t *len);
int	 args_str(struct pr_args *, size_t max, const char **s, size_t *len);
int	 args_uint(struct pr_args *, uint64_t *);
int	 args_value(struct pr_args *, const pr_value **);
/* Is the next param nil?  (Does not advance.) */
bool	 args_nil(const struct pr_args *);
/* Params left. */
uint32_t args_left(const struct pr_args *);
/* A name or a uint connection id. */
int	 args_target(struct pr_args *, struct reg_target *);
/* An array param: sub becomes a cursor over its elements. */
int	 args_array(struct pr_args *, struct pr_args *sub);
/* An error array [code, message]: code 1..PR_CODE_MAX bytes, both strs
 * (UTF-8 is the caller's check). */
int	 args_error(struct pr_args *, const char **code, size_t *clen,
	    const char **msg, size_t *mlen);

/* An options map: each key at most once, of its type; unknown keys are
 * bad_request. */
struct pr_opt {
	const char	*key;
	enum { PR_OPT_BOOL, PR_OPT_UINT, PR_OPT_STR } type;
	bool		 set;
	bool		 b;
	uint64_t	 u;
	const char	*s;		/* PR_OPT_STR: not NUL-terminated */
	size_t		 len;
};
int	 args_opts(struct pr_args *, struct pr_opt *, size_t n);

#endif /* ARGS_H */
