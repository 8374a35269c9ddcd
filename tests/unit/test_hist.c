/* test_hist.c -- sh_hist percentiles against a sorted reference. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t ref_pct(const uint64_t *v, size_t n, double pct)
{
    size_t rank = (size_t)ceil(pct / 100.0 * (double)n);
    if (rank < 1) {
        rank = 1;
    }
    return v[rank - 1];
}

static void check_against_reference(uint64_t *vals, size_t n)
{
    sh_hist *h = malloc(sizeof *h);
    assert_non_null(h);
    sh_hist_init(h);
    for (size_t i = 0; i < n; i++) {
        sh_hist_record(h, vals[i]);
    }
    qsort(vals, n, sizeof vals[0], cmp_u64);
    const double pcts[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        uint64_t want = ref_pct(vals, n, pcts[i]);
        uint64_t got = sh_hist_percentile(h, pcts[i]);
        /* Never below the truth, at most 1/64 above it. */
        assert_true(got >= want);
        assert_true((double)got <= (double)want * (1.0 + 1.0 / SH_HIST_SUB_BUCKETS) + 1.0);
    }
    assert_int_equal(h->count, n);
    assert_int_equal(h->min, vals[0]);
    assert_int_equal(h->max, vals[n - 1]);
    assert_int_equal(sh_hist_percentile(h, 100), vals[n - 1]);
    free(h);
}

static void test_uniform(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *v = malloc(N * sizeof *v);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < N; i++) {
        v[i] = xorshift(&s) % 5000000;
    }
    check_against_reference(v, N);
    free(v);
}

static void test_long_tail(void **state)
{
    (void)state;
    enum { N = 50000 };
    uint64_t *v = malloc(N * sizeof *v);
    uint64_t s = 1234567;
    for (size_t i = 0; i < N; i++) {
        /* log-uniform over 1 .. 2^34: microseconds to hours in ns */
        unsigned bits = (unsigned)(xorshift(&s) % 34);
        v[i] = (xorshift(&s) & ((1ull << bits) - 1)) | (1ull << bits);
    }
    check_against_reference(v, N);
    free(v);
}

static void test_small_exact(void **state)
{
    (void)state;
    sh_hist h;
    sh_hist_init(&h);
    for (uint64_t i = 1; i <= 100; i++) {
        sh_hist_record(&h, i);
    }
    /* Below 128 every value has its own bucket: percentiles are exact. */
    assert_int_equal(sh_hist_percentile(&h, 50), 50);
    assert_int_equal(sh_hist_percentile(&h, 90), 90);
    assert_int_equal(sh_hist_percentile(&h, 99), 99);
    assert_int_equal(sh_hist_percentile(&h, 99.9), 100);
    sh_hist_summary sum;
    sh_hist_summarize(&h, &sum);
    assert_int_equal(sum.count, 100);
    assert_int_equal(sum.min, 1);
    assert_int_equal(sum.max, 100);
    assert_true(fabs(sum.mean - 50.5) < 1e-9);
}

static void test_empty_and_clamp(void **state)
{
    (void)state;
    sh_hist h;
    sh_hist_init(&h);
    assert_int_equal(sh_hist_percentile(&h, 99), 0);
    sh_hist_summary sum;
    sh_hist_summarize(&h, &sum);
    assert_int_equal(sum.count, 0);
    assert_int_equal(sum.min, 0);
    sh_hist_record(&h, UINT64_MAX);
    assert_int_equal(h.max, SH_HIST_VALUE_MAX);
    assert_int_equal(sh_hist_percentile(&h, 50), SH_HIST_VALUE_MAX);
}

static void test_buckets_monotonic(void **state)
{
    (void)state;
    /* Every value maps into a bucket whose upper bound is >= it, and bucket
     * indexes never decrease as values grow. */
    size_t last = 0;
    uint64_t s = 99;
    for (uint64_t v = 0; v < 300000; v += 1 + xorshift(&s) % 7) {
        size_t b = sh_hist_bucket_of(v);
        assert_true(b >= last);
        assert_true(sh_hist_bucket_high(b) >= v);
        if (b > 0) {
            assert_true(sh_hist_bucket_high(b - 1) < v);
        }
        last = b;
    }
}

static void test_merge(void **state)
{
    (void)state;
    sh_hist *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
    sh_hist_init(a);
    sh_hist_init(b);
    sh_hist_init(all);
    uint64_t s = 42;
    for (int i = 0; i < 20000; i++) {
        uint64_t v = xorshift(&s) % 100000;
        sh_hist_record(i % 2 ? a : b, v);
        sh_hist_record(all, v);
    }
    sh_hist_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->sum, all->sum);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->buckets, all->buckets, sizeof a->buckets);
    sh_hist_record_n(b, 7, 1000);
    assert_int_equal(b->count, 10000 + 1000);
    free(a);
    free(b);
    free(all);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),           cmocka_unit_test(test_long_tail),
        cmocka_unit_test(test_small_exact),       cmocka_unit_test(test_empty_and_clamp),
        cmocka_unit_test(test_buckets_monotonic), cmocka_unit_test(test_merge),
    };
    return T_CMOCKA_MAIN(argc, argv, "hist", tests, NULL, NULL);
}
