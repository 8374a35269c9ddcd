/* sh_clock.c -- clock_gettime wrappers. */
#define _POSIX_C_SOURCE 200809L
#include "sh_clock.h"

#include <errno.h>
#include <time.h>

static uint64_t sh_clock_read_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) {
        return 0; /* cannot happen for the two clocks used here */
    }
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sh_clock_mono_ns(void)
{
    return sh_clock_read_ns(CLOCK_MONOTONIC);
}
uint64_t sh_clock_mono_us(void)
{
    return sh_clock_mono_ns() / 1000ull;
}
uint64_t sh_clock_mono_ms(void)
{
    return sh_clock_mono_ns() / 1000000ull;
}
uint64_t sh_clock_wall_ms(void)
{
    return sh_clock_read_ns(CLOCK_REALTIME) / 1000000ull;
}

void sh_clock_sleep_ms(uint64_t ms)
{
    struct timespec req = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    struct timespec rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR) {
        req = rem;
    }
}
