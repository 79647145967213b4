/*
 * clock.h - the clocks castbus reads, in the units it uses.
 *
 * Monotonic time measures intervals and deadlines (timeouts, drains,
 * latencies); wall time stamps what leaves the process (messages, logs,
 * rows). cb_clock_deadline() turns an interval into the absolute
 * CLOCK_REALTIME time that pthread_cond_timedwait() expects.
 *
 * Thread safety: any thread.
 */
#ifndef CB_CLOCK_H
#define CB_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic clock, microseconds. */
int64_t cb_clock_mono_us(void);

/* Monotonic clock, milliseconds (the time base of drain deadlines). */
int64_t cb_clock_mono_ms(void);

/* Wall clock, milliseconds since the epoch. */
int64_t cb_clock_wall_ms(void);

/* *ts = now (CLOCK_REALTIME) + in_us, for pthread_cond_timedwait(). */
void cb_clock_deadline(struct timespec *ts, int64_t in_us);

#endif /* CB_CLOCK_H */
