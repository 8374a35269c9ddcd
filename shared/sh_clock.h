/* sh_clock.h -- the clocks: monotonic for durations, wall for timestamps.
 *
 * Durations and timeouts always use the monotonic clock, so a wall-clock step
 * cannot fire or stall a timer. Wall time is used only for values that leave
 * the process (detail created_ms, start_ms comparisons). Thread-safe. */
#ifndef SH_CLOCK_H
#define SH_CLOCK_H

#include <stdint.h>

uint64_t sh_clock_mono_ns(void); /* CLOCK_MONOTONIC, nanoseconds */
uint64_t sh_clock_mono_us(void);
uint64_t sh_clock_mono_ms(void);
uint64_t sh_clock_wall_ms(void); /* CLOCK_REALTIME, ms since the Unix epoch */

/* Sleeps for ms milliseconds, resuming after signals. */
void sh_clock_sleep_ms(uint64_t ms);

#endif
