/*
 * now.h: the clocks, one definition for the daemon, the library and the
 * tool.  Monotonic for deadlines and durations, epoch for what is shown.
 */
#ifndef NOW_H
#define NOW_H

#include <stdint.h>

/* Wall-clock time in Unix epoch milliseconds. */
uint64_t	 now_epoch_ms(void);
/* Monotonic time in milliseconds. */
uint64_t	 now_mono_ms(void);
/* Monotonic time in microseconds. */
uint64_t	 now_mono_us(void);
/* Monotonic time in nanoseconds. */
uint64_t	 now_mono_ns(void);

#endif /* NOW_H */
