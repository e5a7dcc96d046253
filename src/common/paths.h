/*
 * paths.h: where the registry's socket lives by default.  The daemon and
 * the client tools resolve it the same way, so neither needs
 * configuration.
 */
#ifndef PATHS_H
#define PATHS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Write the default socket path into buf: $PROCREG_SOCKET, else
 * $XDG_RUNTIME_DIR/procreg.sock, else /run/procreg/procreg.sock for root,
 * else /tmp/procreg-UID/procreg.sock.  With make_dir, create the last
 * directory when missing (0755 under /run, 0700 under /tmp) and refuse a
 * /tmp directory that is not the caller's own and private.  0, or -1 with
 * a message in err.
 */
int	paths_default_socket(char *buf, size_t size, bool make_dir, char *err,
	    size_t errsize);

#endif /* PATHS_H */
