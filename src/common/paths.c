/*
 * paths.c: default socket path resolution (see paths.h).
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

/* Create dir with mode if missing; check a private dir is ours. */
static int
ensure_dir(const char *dir, mode_t mode, bool private, char *err,
    size_t errsize)
{
	struct stat st;

	if (mkdir(dir, mode) < 0 && errno != EEXIST) {
		snprintf(err, errsize, "cannot create %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(err, errsize, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errsize, "%s is not a directory", dir);
		return -1;
	}
	if (private && (st.st_uid != getuid() || (st.st_mode & 077) != 0)) {
		snprintf(err, errsize, "%s is not owned by uid %u with mode "
		    "0700: refusing to use it", dir, (unsigned)getuid());
		return -1;
	}
	return 0;
}

/* A missing directory is fine (no daemon yet); an existing one must be
 * the caller's own, private directory. */
static int
check_private(const char *dir, char *err, size_t errsize)
{
	struct stat st;

	if (lstat(dir, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
	    (st.st_mode & 077) != 0) {
		snprintf(err, errsize, "%s is not owned by uid %u with mode "
		    "0700: refusing to use it", dir, (unsigned)getuid());
		return -1;
	}
	return 0;
}

int
paths_default_socket(char *buf, size_t size, bool make_dir, char *err,
    size_t errsize)
{
	const char *env;
	char dir[64];
	int n;

	if ((env = getenv("PROCREG_SOCKET")) != NULL && *env != '\0') {
		n = snprintf(buf, size, "%s", env);
	} else if ((env = getenv("XDG_RUNTIME_DIR")) != NULL && *env != '\0') {
		n = snprintf(buf, size, "%s/procreg.sock", env);
	} else {
		bool root = getuid() == 0;

		if (root)
			snprintf(dir, sizeof(dir), "/run/procreg");
		else
			snprintf(dir, sizeof(dir), "/tmp/procreg-%u",
			    (unsigned)getuid());
		if (make_dir && ensure_dir(dir, root ? 0755 : 0700, !root, err,
		    errsize) < 0)
			return -1;
		/* A client must not talk to a socket in a /tmp directory that
		 * another user made. */
		if (!make_dir && !root && check_private(dir, err, errsize) < 0)
			return -1;
		n = snprintf(buf, size, "%s/procreg.sock", dir);
	}
	if (n < 0 || (size_t)n >= size) {
		snprintf(err, errsize, "the socket path is longer than %zu "
		    "bytes", size - 1);
		return -1;
	}
	return 0;
}
