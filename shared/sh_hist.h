/* sh_hist.h -- a latency histogram with log-linear buckets.
 *
 * Values below SH_HIST_SUB_BUCKETS are counted exactly; above, each power of two
 * is cut into SH_HIST_SUB_BUCKETS linear buckets, so a reported percentile is
 * at most 1/SH_HIST_SUB_BUCKETS (1.6%) above the true one and never below it.
 * Recording is two shifts and an add: cheap enough for the hot path. One
 * histogram is owned by one thread; threads merge theirs for reporting. The
 * unit is the caller's (the project records nanoseconds or microseconds). */
#ifndef SH_HIST_H
#define SH_HIST_H

#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>

#define SH_HIST_SUB_BITS  6
#define SH_HIST_BUCKETS   ((SH_HIST_MAGNITUDES - SH_HIST_SUB_BITS + 1) * SH_HIST_SUB_BUCKETS)
#define SH_HIST_VALUE_MAX ((1ull << SH_HIST_MAGNITUDES) - 1) /* larger values are clamped */

_Static_assert(SH_HIST_SUB_BUCKETS == (1 << SH_HIST_SUB_BITS), "sub-buckets are 2^SUB_BITS");

typedef struct sh_hist {
    uint64_t count;
    uint64_t sum; /* of recorded (clamped) values; saturates */
    uint64_t min;
    uint64_t max;
    uint64_t buckets[SH_HIST_BUCKETS];
} sh_hist;

typedef struct sh_hist_summary {
    uint64_t count, min, max, p50, p90, p99, p999;
    double mean;
} sh_hist_summary;

void sh_hist_init(sh_hist *h);

/* Records value n times (n >= 1). Values above SH_HIST_VALUE_MAX count as it. */
void sh_hist_record_n(sh_hist *h, uint64_t value, uint64_t n);
static inline void sh_hist_record(sh_hist *h, uint64_t value)
{
    sh_hist_record_n(h, value, 1);
}

/* Adds src's counts into dst. */
void sh_hist_merge(sh_hist *dst, const sh_hist *src);

/* Value at percentile pct in [0, 100] by the nearest-rank rule: the smallest
 * bucket bound such that at least pct% of the values are at or below it,
 * capped at the recorded max. 0 when the histogram is empty. */
uint64_t sh_hist_percentile(const sh_hist *h, double pct);

void sh_hist_summarize(const sh_hist *h, sh_hist_summary *out);

/* Bucket index and the bucket's upper bound; public for the tests. */
size_t sh_hist_bucket_of(uint64_t value);
uint64_t sh_hist_bucket_high(size_t idx);

#endif
