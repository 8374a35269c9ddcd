/* sh_hist.c -- log-linear latency histogram (see sh_hist.h for the error bound). */
#include "sh_hist.h"

#include "sh_log.h"

#include <math.h>
#include <string.h>

void sh_hist_init(sh_hist *h)
{
    SH_ASSERT(h != NULL);
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t sh_hist_bucket_of(uint64_t value)
{
    if (value > SH_HIST_VALUE_MAX) {
        value = SH_HIST_VALUE_MAX;
    }
    if (value < SH_HIST_SUB_BUCKETS) {
        return (size_t)value;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - SH_HIST_SUB_BITS;
    /* value >> shift lies in [SUB, 2*SUB): the linear sub-bucket of its power. */
    size_t idx = (size_t)shift * SH_HIST_SUB_BUCKETS + (size_t)(value >> shift);
    SH_ASSERT(idx < SH_HIST_BUCKETS);
    return idx;
}

uint64_t sh_hist_bucket_high(size_t idx)
{
    SH_ASSERT(idx < SH_HIST_BUCKETS);
    if (idx < 2 * SH_HIST_SUB_BUCKETS) {
        return idx; /* shift 0: exact values */
    }
    size_t shift = idx / SH_HIST_SUB_BUCKETS - 1;
    uint64_t top = (uint64_t)(idx - shift * SH_HIST_SUB_BUCKETS); /* in [SUB, 2*SUB) */
    return ((top + 1) << shift) - 1;
}

void sh_hist_record_n(sh_hist *h, uint64_t value, uint64_t n)
{
    SH_ASSERT(h != NULL && n >= 1);
    if (value > SH_HIST_VALUE_MAX) {
        value = SH_HIST_VALUE_MAX;
    }
    h->buckets[sh_hist_bucket_of(value)] += n;
    h->count += n;
    uint64_t add = value * n;
    if ((n != 0 && add / n != value) || h->sum + add < h->sum) {
        h->sum = UINT64_MAX;
    } else {
        h->sum += add;
    }
    if (value < h->min) {
        h->min = value;
    }
    if (value > h->max) {
        h->max = value;
    }
}

void sh_hist_merge(sh_hist *dst, const sh_hist *src)
{
    SH_ASSERT(dst != NULL && src != NULL);
    for (size_t i = 0; i < SH_HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum = (dst->sum + src->sum < dst->sum) ? UINT64_MAX : dst->sum + src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t sh_hist_percentile(const sh_hist *h, double pct)
{
    SH_ASSERT(h != NULL);
    if (h->count == 0) {
        return 0;
    }
    if (pct < 0.0) {
        pct = 0.0;
    }
    if (pct > 100.0) {
        pct = 100.0;
    }
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
    if (rank < 1) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < SH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t high = sh_hist_bucket_high(i);
            return high < h->max ? high : h->max;
        }
    }
    return h->max;
}

void sh_hist_summarize(const sh_hist *h, sh_hist_summary *out)
{
    SH_ASSERT(h != NULL && out != NULL);
    out->count = h->count;
    out->min = h->count ? h->min : 0;
    out->max = h->max;
    out->mean = h->count ? (double)h->sum / (double)h->count : 0.0;
    out->p50 = sh_hist_percentile(h, 50.0);
    out->p90 = sh_hist_percentile(h, 90.0);
    out->p99 = sh_hist_percentile(h, 99.0);
    out->p999 = sh_hist_percentile(h, 99.9);
}
