/*
 * utf8.h: UTF-8 validation, shared by the daemon, the library and the
 * tool (names, labels and printable output must be UTF-8).
 */
#ifndef UTF8_H
#define UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True when the bytes are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF).  Written here because the Debian
 * libraries that offer it (libunistring, glib) ship no pkg-config file or
 * are far larger than the 30 lines it takes.
 */
bool	utf8_valid(const char *s, size_t len);

#endif /* UTF8_H */
