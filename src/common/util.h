/*
 * util.h: small helpers with no state.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * True when the bytes are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF).  Written here because the Debian
 * libraries that offer it (libunistring, glib) ship no pkg-config file or
 * are far larger than the 30 lines it takes.
 */
bool		 utf8_valid(const char *s, size_t len);
/* Wall-clock time in Unix epoch milliseconds. */
uint64_t	 now_epoch_ms(void);
/* Monotonic time in milliseconds. */
uint64_t	 now_mono_ms(void);
/* Monotonic time in microseconds. */
uint64_t	 now_mono_us(void);

#endif /* UTIL_H */
