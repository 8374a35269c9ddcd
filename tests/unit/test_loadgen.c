/* test_loadgen.c -- stock-loadgen's pure logic: options, generation, classification, report,
 * and the --verify comparison.
 *
 * The loadgen's modules are compiled into this test by #include (unit tests
 * link only libsh.a and the libraries, not the loadgen's objects); lg_run.c,
 * the libevent part, and lg_verify_run.c, the admin socket part
 * of --verify, are exercised by the integration tests instead
 * (tests/integration/loadgen_verify.sh). The verification's comparison itself
 * (lg_verify.c) is pure and tested here. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "../../bench/loadgen/lg_gen.c"
#include "../../bench/loadgen/lg_opts.c"
#include "../../bench/loadgen/lg_stats.c"
#include "../../bench/loadgen/lg_verify.c"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static lg_parse_rc parse(lg_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    lg_opts_defaults(o, 1700000000000ull, 4242);
    return lg_opts_parse(o, argc, argv, err, errlen);
}

/* ---- options ---------------------------------------------------------------- */

static void test_opts_full_line(void **state)
{
    (void)state;
    lg_opts o;
    char err[256] = "";
    char *argv[] = {"lg",
                    "--url",
                    "http://127.0.0.1:8080/",
                    "--connections=64",
                    "--requests",
                    "20000",
                    "--skus",
                    "A,b-2,c_3.x",
                    "--qty",
                    "1-5",
                    "--users=10",
                    "--order-prefix",
                    "run7",
                    "--dup-ratio",
                    "0.25",
                    "--dup-concurrent",
                    "3",
                    "--release-ratio",
                    "0.5",
                    "--seed",
                    "99",
                    "--json",
                    "/tmp/x.json",
                    "--orders-out=/tmp/o",
                    "--quiet",
                    "--rate",
                    "1500.5"};
    assert_int_equal(parse(&o, ARGC(argv), argv, err, sizeof err), LG_PARSE_OK);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 8080);
    assert_int_equal(o.connections, 64);
    assert_int_equal(o.requests, 20000);
    assert_int_equal(o.nskus, 3);
    assert_string_equal(o.skus[1], "b-2");
    assert_string_equal(o.skus[2], "c_3.x");
    assert_int_equal(o.qty_min, 1);
    assert_int_equal(o.qty_max, 5);
    assert_int_equal(o.users, 10);
    assert_string_equal(o.order_prefix, "run7");
    assert_true(o.dup_ratio > 0.249 && o.dup_ratio < 0.251);
    assert_int_equal(o.dup_concurrent, 3);
    assert_true(o.release_ratio > 0.49 && o.release_ratio < 0.51);
    assert_int_equal(o.seed, 99);
    assert_string_equal(o.json_path, "/tmp/x.json");
    assert_string_equal(o.orders_out, "/tmp/o");
    assert_int_equal(o.quiet, 1);
    assert_true(o.rate_per_s > 1500.4 && o.rate_per_s < 1500.6);
    /* no --duration: the global bound is the 300 s default */
    assert_true(o.timeout_s > 299.9 && o.timeout_s < 300.1);
}

static void test_opts_defaults_and_timeout(void **state)
{
    (void)state;
    lg_opts o;
    char err[256];
    char *argv[] = {"lg", "--url", "http://localhost:1", "--duration", "7.5", "--skus", "S"};
    assert_int_equal(parse(&o, ARGC(argv), argv, err, sizeof err), LG_PARSE_OK);
    assert_int_equal(o.connections, 16);
    assert_int_equal(o.qty_min, 1);
    assert_int_equal(o.qty_max, 1);
    assert_int_equal(o.users, 1000000);
    assert_int_equal(o.dup_concurrent, 1);
    assert_int_equal(o.requests, 0);
    /* duration + 30 */
    assert_true(o.timeout_s > 37.49 && o.timeout_s < 37.51);
    /* an explicit --timeout wins */
    char *argv2[] = {"lg",     "--url", "http://h:2", "--duration", "5",
                     "--skus", "S",     "--timeout",  "3"};
    assert_int_equal(parse(&o, ARGC(argv2), argv2, err, sizeof err), LG_PARSE_OK);
    assert_true(o.timeout_s > 2.99 && o.timeout_s < 3.01);
    /* the default prefix is a valid id, and differs with the pid and the time */
    lg_opts a, b, c;
    lg_opts_defaults(&a, 1700000000000ull, 1);
    lg_opts_defaults(&b, 1700000000000ull, 2);
    lg_opts_defaults(&c, 1700000000001ull, 1);
    assert_int_equal(sh_id_check_order(a.order_prefix, strlen(a.order_prefix)), SH_OK);
    assert_string_not_equal(a.order_prefix, b.order_prefix);
    assert_string_not_equal(a.order_prefix, c.order_prefix);
    assert_true(a.seed != b.seed && a.seed != c.seed);
}

static void expect_usage_error(const char *needle, int argc, char **argv)
{
    lg_opts o;
    char err[256] = "";
    assert_int_equal(parse(&o, argc, argv, err, sizeof err), LG_PARSE_ERROR);
    if (strstr(err, needle) == NULL) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
}

static void test_opts_usage_errors(void **state)
{
    (void)state;
    char *no_url[] = {"lg", "--requests", "1", "--skus", "S"};
    expect_usage_error("--url", ARGC(no_url), no_url);
    char *no_bound[] = {"lg", "--url", "http://h:1", "--skus", "S"};
    expect_usage_error("--requests", ARGC(no_bound), no_bound);
    char *no_skus[] = {"lg", "--url", "http://h:1", "--requests", "1"};
    expect_usage_error("--skus", ARGC(no_skus), no_skus);
    char *bad_url[] = {"lg", "--url", "https://h:1", "--requests", "1", "--skus", "S"};
    expect_usage_error("--url", ARGC(bad_url), bad_url);
    char *bad_port[] = {"lg", "--url", "http://h:70000", "--requests", "1", "--skus", "S"};
    expect_usage_error("--url", ARGC(bad_port), bad_port);
    char *unknown[] = {"lg", "--url", "http://h:1", "--requests", "1", "--skus", "S", "--frob"};
    expect_usage_error("--frob", ARGC(unknown), unknown);
    char *missing_val[] = {"lg", "--url", "http://h:1", "--skus", "S", "--requests"};
    expect_usage_error("--requests", ARGC(missing_val), missing_val);
    char *brace_sku[] = {"lg", "--url", "http://h:1", "--requests", "1", "--skus", "A,{B}"};
    expect_usage_error("--skus", ARGC(brace_sku), brace_sku);
    char *colon_sku[] = {"lg", "--url", "http://h:1", "--requests", "1", "--skus", "A:B"};
    expect_usage_error("--skus", ARGC(colon_sku), colon_sku);
    char *empty_sku[] = {"lg", "--url", "http://h:1", "--requests", "1", "--skus", "A,,B"};
    expect_usage_error("--skus", ARGC(empty_sku), empty_sku);
    char *neg_req[] = {"lg", "--url", "http://h:1", "--requests", "-5", "--skus", "S"};
    expect_usage_error("--requests", ARGC(neg_req), neg_req);
    char *ratio[] = {"lg",     "--url", "http://h:1",  "--requests", "1",
                     "--skus", "S",     "--dup-ratio", "1.5"};
    expect_usage_error("--dup-ratio", ARGC(ratio), ratio);
    char *dupk[] = {"lg", "--url",         "http://h:1", "--requests",       "1", "--skus",
                    "S",  "--connections", "2",          "--dup-concurrent", "3"};
    expect_usage_error("--dup-concurrent", ARGC(dupk), dupk);
    char *prefix[] = {"lg",     "--url", "http://h:1",     "--requests", "1",
                      "--skus", "S",     "--order-prefix", "a{b"};
    expect_usage_error("--order-prefix", ARGC(prefix), prefix);
    char *quiet_val[] = {"lg", "--url",  "http://h:1", "--requests",
                         "1",  "--skus", "S",          "--quiet=1"};
    expect_usage_error("--quiet", ARGC(quiet_val), quiet_val);
    lg_opts o;
    char err[64];
    char *help[] = {"lg", "--url", "http://h:1", "-h"};
    assert_int_equal(parse(&o, ARGC(help), help, err, sizeof err), LG_PARSE_HELP);
}

static void test_parse_qty(void **state)
{
    (void)state;
    uint32_t lo = 0, hi = 0;
    assert_int_equal(lg_parse_qty("1", &lo, &hi), 0);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 1);
    assert_int_equal(lg_parse_qty("2-5", &lo, &hi), 0);
    assert_int_equal(lo, 2);
    assert_int_equal(hi, 5);
    assert_int_equal(lg_parse_qty("1000", &lo, &hi), 0);
    const char *bad[] = {"0",  "",   "5-2",   "1001", "1.5", "-1",
                         "1-", "-3", "1-2-3", "x",    "3 ",  "1-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lo = hi = 77;
        if (lg_parse_qty(bad[i], &lo, &hi) != -1) {
            fail_msg("qty '%s' accepted", bad[i]);
        }
        assert_int_equal(lo, 77); /* untouched on error */
    }
}

/* ---- generation ------------------------------------------------------------- */

static void gen_opts(lg_opts *o, uint32_t lo, uint32_t hi)
{
    lg_opts_defaults(o, 1, 1);
    o->seed = 12345;
    o->nskus = 3;
    strcpy(o->skus[0], "A");
    strcpy(o->skus[1], "B");
    strcpy(o->skus[2], "C");
    o->qty_min = lo;
    o->qty_max = hi;
    o->users = 7;
    strcpy(o->order_prefix, "pre");
}

static void test_qty_distribution(void **state)
{
    (void)state;
    lg_opts o;
    gen_opts(&o, 1, 5);
    enum { N = 100000 };
    uint64_t count[6] = {0}, users[7] = {0}, skus[3] = {0}, sum = 0;
    for (uint64_t n = 0; n < N; n++) {
        lg_order ord;
        lg_gen_order(&o, n, &ord);
        assert_true(ord.qty >= 1 && ord.qty <= 5);
        assert_true(ord.user < 7);
        assert_int_equal(ord.sku_idx, n % 3); /* round-robin */
        count[ord.qty]++;
        users[ord.user]++;
        skus[ord.sku_idx]++;
        sum += ord.qty;
    }
    /* uniform: each of 5 values within 5% of N/5 (the sd is about 0.6%) */
    for (int q = 1; q <= 5; q++) {
        assert_true(count[q] > N / 5 * 95 / 100 && count[q] < N / 5 * 105 / 100);
    }
    for (int u = 0; u < 7; u++) {
        assert_true(users[u] > N / 7 * 95 / 100 && users[u] < N / 7 * 105 / 100);
    }
    double mean = (double)sum / N;
    assert_true(mean > 2.97 && mean < 3.03);
    /* deterministic: the same seed re-creates order n exactly (duplicates rely on it) */
    lg_order a, b;
    lg_gen_order(&o, 4711, &a);
    lg_gen_order(&o, 4711, &b);
    assert_memory_equal(&a, &b, sizeof a);
    /* a fixed qty is fixed */
    gen_opts(&o, 3, 3);
    for (uint64_t n = 0; n < 1000; n++) {
        lg_order ord;
        lg_gen_order(&o, n, &ord);
        assert_int_equal(ord.qty, 3);
    }
}

static void test_order_ids_and_bodies(void **state)
{
    (void)state;
    lg_opts o;
    gen_opts(&o, 1, 5);
    char id[LG_ORDER_ID_BYTES];
    assert_int_equal(lg_gen_order_id(&o, 0, id), 5);
    assert_string_equal(id, "pre-0");
    lg_gen_order_id(&o, 123456789, id);
    assert_string_equal(id, "pre-123456789");
    /* the longest prefix with the largest n still makes a valid order id */
    memset(o.order_prefix, 'p', LG_PREFIX_CHARS_MAX);
    o.order_prefix[LG_PREFIX_CHARS_MAX] = '\0';
    size_t len = lg_gen_order_id(&o, LG_REQUESTS_MAX - 1, id);
    assert_int_equal(sh_id_check_order(id, len), SH_OK);
    strcpy(o.order_prefix, "pre");

    lg_order ord;
    lg_gen_order(&o, 41, &ord);
    char body[LG_BODY_BYTES_MAX];
    len = lg_gen_deduct_body(&o, &ord, body);
    cJSON *j = cJSON_ParseWithLength(body, len);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "sku")->valuestring, "C");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "order_id")->valuestring, "pre-41");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user_id");
    assert_true(cJSON_IsString(user)); /* ids are strings, never numbers */
    assert_int_equal(user->valuestring[0], 'u');
    const cJSON *qty = cJSON_GetObjectItemCaseSensitive(j, "qty");
    assert_true(cJSON_IsNumber(qty));
    assert_int_equal(qty->valueint, (int)ord.qty);
    cJSON_Delete(j);
    len = lg_gen_release_body(&o, &ord, body);
    j = cJSON_ParseWithLength(body, len);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "order_id")->valuestring, "pre-41");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "qty"));
    cJSON_Delete(j);
}

static void test_dup_and_release_draws(void **state)
{
    (void)state;
    lg_opts o;
    gen_opts(&o, 1, 1);
    o.dup_ratio = 0.3;
    o.release_ratio = 0.1;
    uint64_t created = 0, dups = 0, releases = 0, n;
    enum { J = 50000 };
    /* the first job can only be new */
    assert_int_equal(lg_gen_job(&o, 0, 0, &n), 0);
    assert_int_equal(n, 0);
    for (uint64_t j = 0; j < J; j++) {
        if (lg_gen_job(&o, j, created, &n)) {
            assert_true(n < created); /* a duplicate names an earlier order */
            dups++;
        } else {
            assert_int_equal(n, created);
            created++;
            releases += (uint64_t)lg_gen_wants_release(&o, n);
        }
    }
    assert_true(dups > J * 28 / 100 && dups < J * 32 / 100);
    assert_true(releases > created * 8 / 100 && releases < created * 12 / 100);
    o.dup_ratio = 0;
    o.release_ratio = 0;
    for (uint64_t j = 0; j < 1000; j++) {
        assert_int_equal(lg_gen_job(&o, j, j, &n), 0);
        assert_int_equal(lg_gen_wants_release(&o, j), 0);
    }
}

/* ---- classification ----------------------------------------------------------- */

static lg_answer cls(int status, const char *body)
{
    lg_reply r;
    return lg_classify_deduct(status, body, body ? strlen(body) : 0, &r);
}

static void test_classify_deduct(void **state)
{
    (void)state;
    lg_reply r;
    const char *ok =
        "{\"status\":\"ok\",\"partition\":3,\"seq\":9007199254740,\"duplicate\":false}";
    assert_int_equal(lg_classify_deduct(200, ok, strlen(ok), &r), LG_ANS_OK);
    assert_int_equal(r.has_place, 1);
    assert_int_equal(r.partition, 3);
    assert_int_equal(r.seq, 9007199254740LL);
    assert_int_equal(r.duplicate, 0);
    const char *dup = "{\"status\":\"ok\",\"partition\":1,\"seq\":2,\"duplicate\":true}";
    assert_int_equal(cls(200, dup), LG_ANS_DUPLICATE);
    /* a body that is not NUL-terminated is read only up to len */
    char buf[128];
    memcpy(buf, dup, strlen(dup));
    memset(buf + strlen(dup), '}', sizeof buf - strlen(dup));
    assert_int_equal(lg_classify_deduct(200, buf, strlen(dup), &r), LG_ANS_DUPLICATE);

    assert_int_equal(cls(409, "{\"error\":\"sold_out\",\"message\":\"x\"}"), LG_ANS_SOLD_OUT);
    assert_int_equal(cls(409, "{\"error\":\"order_conflict\"}"), LG_ANS_ORDER_CONFLICT);
    assert_int_equal(cls(409, "{\"error\":\"user_limit\"}"), LG_ANS_USER_LIMIT);
    assert_int_equal(cls(400, "{\"error\":\"invalid_request\"}"), LG_ANS_INVALID_REQUEST);
    assert_int_equal(cls(404, "{\"error\":\"unknown_sku\"}"), LG_ANS_UNKNOWN_SKU);
    assert_int_equal(cls(425, "{\"error\":\"not_started\"}"), LG_ANS_NOT_STARTED);
    assert_int_equal(cls(429, "{\"error\":\"rate_limited\"}"), LG_ANS_RATE_LIMITED);
    assert_int_equal(cls(503, "{\"error\":\"unavailable\"}"), LG_ANS_UNAVAILABLE);
    assert_int_equal(cls(0, NULL), LG_ANS_TRANSPORT);
    /* the promised shapes are checked: anything else is other_http */
    assert_int_equal(cls(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":2}"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(200, "{\"status\":\"ok\",\"duplicate\":\"false\"}"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(200, "not json"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(200, NULL), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(409, "{\"error\":\"SOLD_OUT\"}"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(404, "{\"error\":\"not_found\"}"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(413, "{\"error\":\"too_large\"}"), LG_ANS_OTHER_HTTP);
    assert_int_equal(cls(500, ""), LG_ANS_OTHER_HTTP);

    const char *rok = "{\"status\":\"ok\",\"partition\":0,\"seq\":5,\"duplicate\":false}";
    assert_int_equal(lg_classify_release(200, rok, strlen(rok), &r), LG_REL_OK);
    const char *rdup = "{\"status\":\"ok\",\"partition\":0,\"seq\":5,\"duplicate\":true}";
    assert_int_equal(lg_classify_release(200, rdup, strlen(rdup), &r), LG_REL_DUPLICATE);
    const char *unk = "{\"error\":\"unknown_order\"}";
    assert_int_equal(lg_classify_release(404, unk, strlen(unk), &r), LG_REL_UNKNOWN);
    assert_int_equal(lg_classify_release(503, NULL, 0, &r), LG_REL_OTHER);
    assert_int_equal(lg_classify_release(0, NULL, 0, &r), LG_REL_TRANSPORT);
}

/* ---- counters, report, JSON ---------------------------------------------------- */

static lg_reply reply_of(int status, const char *body)
{
    lg_reply r;
    lg_classify_deduct(status, body, body ? strlen(body) : 0, &r);
    return r;
}

static void test_stats_and_json(void **state)
{
    (void)state;
    lg_stats *s = malloc(sizeof *s);
    assert_non_null(s);
    lg_stats_init(s, 1);
    lg_opts o;
    lg_opts_defaults(&o, 1700000000000ull, 1);
    o.nskus = 1;
    snprintf(o.skus[0], sizeof o.skus[0], "S1");
    lg_reply ok =
        reply_of(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":1,\"duplicate\":false}");
    lg_reply dup =
        reply_of(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":1,\"duplicate\":true}");
    lg_reply so = reply_of(409, "{\"error\":\"sold_out\"}");
    lg_reply big = reply_of(413, "");
    lg_reply tr = reply_of(0, NULL);
    s->sent = 10;
    lg_stats_add_deduct(s, &ok, 0, 3, 1000);
    lg_stats_add_deduct(s, &ok, 0, 2, 2000);
    lg_stats_add_deduct(s, &dup, 0, 3, 3000); /* a duplicate adds no units */
    for (int i = 0; i < 5; i++) {
        lg_stats_add_deduct(s, &so, 0, 1, 4000);
    }
    lg_stats_add_deduct(s, &big, 0, 1, 5000);
    lg_stats_add_deduct(s, &tr, 0, 1, 100000);
    lg_reply rel;
    const char *rok = "{\"status\":\"ok\",\"partition\":1,\"seq\":2,\"duplicate\":false}";
    lg_classify_release(200, rok, strlen(rok), &rel);
    s->rel_sent = 1;
    lg_stats_add_release(s, &rel, 0, 2, 500);
    s->elapsed_us = 2000000;
    assert_int_equal(s->units_ok, 5);
    assert_int_equal(s->units_released, 2);
    assert_int_equal(s->answers[LG_ANS_SOLD_OUT], 5);
    assert_int_equal(s->other_status[413], 1);
    assert_int_equal(lg_stats_errors(s), 7);
    double ratio = lg_stats_transport_ratio(s); /* 1 of 11 */
    assert_true(ratio > 0.0908 && ratio < 0.0910);

    char *text = NULL;
    size_t textlen = 0;
    FILE *f = open_memstream(&text, &textlen);
    assert_non_null(f);
    assert_int_equal(lg_stats_write_json(f, s, &o, NULL), 0);
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) {
        fail_msg("--json output does not parse: %s", text);
    }
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(j, "answers");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ans, "ok")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ans, "duplicate")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ans, "sold_out")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ans, "other_http")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ans, "transport")->valueint, 1);
    const cJSON *other = cJSON_GetObjectItemCaseSensitive(j, "other_status");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(other, "413")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "units_ok")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "units_released")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "answered")->valueint, 10);
    /* 10 answers in 2 s */
    double tput = cJSON_GetObjectItemCaseSensitive(j, "throughput_per_s")->valuedouble;
    assert_true(tput > 4.99 && tput < 5.01);
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(j, "latency_ms");
    /* max is exact; p50 is the 5th of 10 values (4 ms), within the histogram's 1.6% */
    assert_true(cJSON_GetObjectItemCaseSensitive(lat, "max")->valuedouble > 99.99);
    double p50 = cJSON_GetObjectItemCaseSensitive(lat, "p50")->valuedouble;
    assert_true(p50 >= 4.0 && p50 <= 4.07);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "backlog")->valueint, 0);
    const cJSON *rels = cJSON_GetObjectItemCaseSensitive(j, "releases");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(rels, "ok")->valueint, 1);
    cJSON_Delete(j);
    free(text);

    /* the text report names every count */
    f = open_memstream(&text, &textlen);
    assert_non_null(f);
    lg_stats_print(f, s, &o);
    fclose(f);
    assert_non_null(strstr(text, "sold_out         5"));
    assert_non_null(strstr(text, "http 413"));
    assert_non_null(strstr(text, "units_ok       5"));
    free(text);
    free(s);
}

static void test_orders_line(void **state)
{
    (void)state;
    char *text = NULL;
    size_t textlen = 0;
    FILE *f = open_memstream(&text, &textlen);
    assert_non_null(f);
    lg_reply ok =
        reply_of(200, "{\"status\":\"ok\",\"partition\":4,\"seq\":17,\"duplicate\":false}");
    lg_reply dup =
        reply_of(200, "{\"status\":\"ok\",\"partition\":4,\"seq\":17,\"duplicate\":true}");
    lg_reply so = reply_of(409, "{\"error\":\"sold_out\"}");
    lg_reply tr = reply_of(0, NULL);
    lg_orders_line(f, "p-1", "S", 2, &ok);
    lg_orders_line(f, "p-1", "S", 2, &dup);
    lg_orders_line(f, "p-2", "S", 1, &so);
    lg_orders_line(f, "p-3", "S", 5, &tr);
    fclose(f);
    assert_string_equal(text, "p-1 S 2 200 ok 4 17 false\n"
                              "p-1 S 2 200 ok 4 17 true\n"
                              "p-2 S 1 409 sold_out - - -\n"
                              "p-3 S 5 0 transport - - -\n");
    free(text);
}

/* ---- --verify ------------------------------------------------------------------- */

static void test_opts_verify(void **state)
{
    (void)state;
    lg_opts o;
    char err[256] = "";
    char *run[] = {
        "lg",       "--url",          "http://h:1",  "--requests",      "10",  "--skus", "A,B",
        "--verify", "--admin-socket", "/tmp/a.sock", "--drain-timeout", "12.5"};
    assert_int_equal(parse(&o, ARGC(run), run, err, sizeof err), LG_PARSE_OK);
    assert_int_equal(o.verify, 1);
    assert_int_equal(o.verify_only, 0);
    assert_string_equal(o.admin_socket, "/tmp/a.sock");
    assert_true(o.drain_timeout_s > 12.49 && o.drain_timeout_s < 12.51);
    /* the default drain bound */
    char *run2[] = {"lg",     "--url", "http://h:1", "--requests",       "10",
                    "--skus", "A",     "--verify",   "--admin-socket=/s"};
    assert_int_equal(parse(&o, ARGC(run2), run2, err, sizeof err), LG_PARSE_OK);
    assert_true(o.drain_timeout_s > 29.9 && o.drain_timeout_s < 30.1);
    /* --verify-only: no --url, no --requests; one expected count per SKU */
    char *only[] = {"lg",     "--verify-only", "--admin-socket", "/s",
                    "--skus", "A,B,C",         "--expect-units", "0,10,1000000000"};
    assert_int_equal(parse(&o, ARGC(only), only, err, sizeof err), LG_PARSE_OK);
    assert_int_equal(o.verify, 1);
    assert_int_equal(o.verify_only, 1);
    assert_int_equal(o.nexpect, 3);
    assert_int_equal(o.expect_units[0], 0);
    assert_int_equal(o.expect_units[1], 10);
    assert_int_equal(o.expect_units[2], 1000000000);

    char *no_sock[] = {"lg", "--url", "http://h:1", "--requests", "1", "--skus", "A", "--verify"};
    expect_usage_error("--admin-socket", ARGC(no_sock), no_sock);
    char *sock_alone[] = {"lg",     "--url", "http://h:1",     "--requests", "1",
                          "--skus", "A",     "--admin-socket", "/s"};
    expect_usage_error("--admin-socket goes with", ARGC(sock_alone), sock_alone);
    char *drain_alone[] = {"lg",     "--url", "http://h:1",      "--requests", "1",
                           "--skus", "A",     "--drain-timeout", "3"};
    expect_usage_error("--drain-timeout", ARGC(drain_alone), drain_alone);
    char *expect_run[] = {
        "lg",       "--url",          "http://h:1", "--requests",     "1", "--skus", "A",
        "--verify", "--admin-socket", "/s",         "--expect-units", "5"};
    expect_usage_error("--expect-units goes with --verify-only", ARGC(expect_run), expect_run);
    char *only_no_expect[] = {"lg", "--verify-only", "--admin-socket", "/s", "--skus", "A"};
    expect_usage_error("--expect-units", ARGC(only_no_expect), only_no_expect);
    char *only_count[] = {"lg",     "--verify-only", "--admin-socket", "/s",
                          "--skus", "A,B",           "--expect-units", "5"};
    expect_usage_error("1 value(s) for 2 SKU(s)", ARGC(only_count), only_count);
    char *only_load[] = {"lg",
                         "--verify-only",
                         "--admin-socket",
                         "/s",
                         "--skus",
                         "A",
                         "--expect-units",
                         "5",
                         "--requests",
                         "9"};
    expect_usage_error("sends no load", ARGC(only_load), only_load);
    char *neg[] = {"lg", "--verify-only", "--admin-socket", "/s", "--skus", "A", "--expect-units",
                   "-1"};
    expect_usage_error("--expect-units", ARGC(neg), neg);
    char *too_big[] = {"lg", "--verify-only",  "--admin-socket", "/s", "--skus",
                       "A",  "--expect-units", "1000000001"};
    expect_usage_error("--expect-units", ARGC(too_big), too_big);
    char *empty_item[] = {"lg",     "--verify-only", "--admin-socket", "/s",
                          "--skus", "A,B",           "--expect-units", "1,"};
    expect_usage_error("--expect-units", ARGC(empty_item), empty_item);
    char long_path[LG_ADMIN_PATH_CHARS_MAX + 2];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    char *long_sock[] = {"lg",     "--url", "http://h:1", "--requests",     "1",
                         "--skus", "A",     "--verify",   "--admin-socket", long_path};
    expect_usage_error("--admin-socket", ARGC(long_sock), long_sock);
}

/* Per-SKU counts: units by SKU, sold-out tracking after the last ok, unknown outcomes. */
static void test_stats_per_sku(void **state)
{
    (void)state;
    lg_stats *s = malloc(sizeof *s);
    assert_non_null(s);
    lg_stats_init(s, 2);
    lg_reply ok =
        reply_of(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":1,\"duplicate\":false}");
    lg_reply so = reply_of(409, "{\"error\":\"sold_out\"}");
    lg_reply tr = reply_of(0, NULL);
    lg_reply un = reply_of(503, "{\"error\":\"unavailable\"}");
    lg_reply big = reply_of(500, "");
    lg_reply lim = reply_of(409, "{\"error\":\"user_limit\"}");
    lg_stats_add_deduct(s, &ok, 0, 4, 1);
    lg_stats_add_deduct(s, &so, 0, 2, 1); /* explained by the ok below */
    lg_stats_add_deduct(s, &ok, 0, 1, 1);
    lg_stats_add_deduct(s, &so, 0, 5, 1);
    lg_stats_add_deduct(s, &so, 0, 3, 1);
    lg_stats_add_deduct(s, &lim, 0, 1, 1); /* a definite refusal: known outcome */
    lg_stats_add_deduct(s, &ok, 1, 2, 1);
    lg_stats_add_deduct(s, &tr, 1, 3, 1);
    lg_stats_add_deduct(s, &un, 1, 4, 1);
    lg_stats_add_deduct(s, &big, 1, 5, 1);
    lg_stats_add_unfinished(s, 0, 1, 7);
    lg_stats_add_unfinished(s, 1, 0, 2);
    lg_reply rel;
    lg_classify_release(0, NULL, 0, &rel);
    lg_stats_add_release(s, &rel, 1, 2, 1);
    const char *rok = "{\"status\":\"ok\",\"partition\":1,\"seq\":2,\"duplicate\":false}";
    lg_classify_release(200, rok, strlen(rok), &rel);
    lg_stats_add_release(s, &rel, 0, 1, 1);

    const lg_sku_stats *a = &s->sku[0], *b = &s->sku[1];
    assert_int_equal(a->ok, 2);
    assert_int_equal(a->units_ok, 5);
    assert_int_equal(a->units_released, 1);
    assert_int_equal(a->sold_out, 3);
    assert_int_equal(a->sold_out_min_qty, 2);
    assert_int_equal(a->late_sold_out, 2);
    assert_int_equal(a->late_sold_out_min_qty, 3);
    assert_int_equal(a->units_unknown, 0);
    assert_int_equal(a->units_rel_unknown, 2); /* the unfinished release */
    assert_int_equal(b->ok, 1);
    assert_int_equal(b->units_ok, 2);
    assert_int_equal(b->units_unknown, 3 + 4 + 5 + 7);
    assert_int_equal(b->units_rel_unknown, 2);
    assert_int_equal(b->sold_out, 0);
    assert_int_equal(b->late_sold_out_min_qty, 0);
    assert_int_equal(s->units_ok, 7); /* the totals stay what they were */

    /* the JSON names each SKU */
    lg_opts o;
    lg_opts_defaults(&o, 1700000000000ull, 1);
    o.nskus = 2;
    snprintf(o.skus[0], sizeof o.skus[0], "A");
    snprintf(o.skus[1], sizeof o.skus[1], "B");
    char *text = NULL;
    size_t textlen = 0;
    FILE *f = open_memstream(&text, &textlen);
    assert_non_null(f);
    assert_int_equal(lg_stats_write_json(f, s, &o, ",\"extra\":7"), 0);
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) {
        fail_msg("--json output does not parse: %s", text);
    }
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "per_sku");
    assert_int_equal(cJSON_GetArraySize(ps), 2);
    const cJSON *pb = cJSON_GetArrayItem(ps, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(pb, "sku")->valuestring, "B");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(pb, "units_unknown")->valueint, 19);
    const cJSON *pa = cJSON_GetArrayItem(ps, 0);
    assert_int_equal(
        cJSON_GetObjectItemCaseSensitive(pa, "sold_out_after_last_ok_min_qty")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "extra")->valueint, 7);
    cJSON_Delete(j);
    free(text);
    free(s);
}

static void test_expect_from_run(void **state)
{
    (void)state;
    lg_sku_stats k;
    memset(&k, 0, sizeof k);
    lg_expect e;
    /* all answers known: exact, oks minus releases */
    k.units_ok = 5617;
    k.units_released = 617;
    lg_expect_from_run(&k, &e);
    assert_int_equal(e.lo, 5000);
    assert_int_equal(e.hi, 5000);
    assert_true(lg_expect_is_exact(&e));
    assert_int_equal(e.from_run, 1);
    /* unknown deducts may have taken units, unknown releases may have given some back */
    k.units_unknown = 7;
    k.units_rel_unknown = 3;
    lg_expect_from_run(&k, &e);
    assert_int_equal(e.lo, 4997);
    assert_int_equal(e.hi, 5007);
    assert_false(lg_expect_is_exact(&e));
    /* --expect-units */
    lg_expect_exact(42, &e);
    assert_int_equal(e.lo, 42);
    assert_int_equal(e.hi, 42);
    assert_int_equal(e.from_run, 0);
}

/* An audit reply as the scheduler prints it (sch_admin.c), shortened. */
static const char AUDIT_OK[] =
    "{\"ok\":true,\"sku\":\"v1\",\"total\":5000,\"avail\":0,\"pending_grant_units\":0,"
    "\"pending_return_units\":0,\"partition_units\":0,\"deducted\":5000,\"details_pending\":0,"
    "\"seq_sum\":2053,\"partitions\":4,\"stable\":true,\"passes\":1,\"mysql_verified\":true,"
    "\"invariants_ok\":true,\"broken\":\"\",\"mysql_deducted\":5000,\"mysql_detail_rows\":2053,"
    "\"mysql_deducted_counter\":5000,\"mysql_detail_rows_counter\":2053,"
    "\"mysql_synced_seq_sum\":2053,\"unsynced_details\":0,\"unsynced_qty\":0,"
    "\"invariants\":{\"conservation\":true},\"checks\":[],\"partition_report\":[]}";

static lg_audit_facts audit_of(const char *json)
{
    lg_audit_facts a;
    char err[128] = "";
    if (lg_audit_parse(json, strlen(json), &a, err, sizeof err) != 0) {
        fail_msg("audit reply does not parse: %s: %s", err, json);
    }
    return a;
}

static void test_audit_parse(void **state)
{
    (void)state;
    lg_audit_facts a = audit_of(AUDIT_OK);
    assert_int_equal(a.reply_ok, 1);
    assert_int_equal(a.total, 5000);
    assert_int_equal(a.deducted, 5000);
    assert_int_equal(a.mysql_deducted, 5000);
    assert_int_equal(a.mysql_detail_rows, 2053);
    assert_int_equal(a.has_mysql, 1);
    assert_int_equal(a.invariants_ok, 1);
    assert_true(lg_audit_drained(&a));

    /* MySQL not verified: no MySQL numbers, not drained */
    a = audit_of("{\"ok\":true,\"total\":10,\"avail\":2,\"deducted\":8,\"details_pending\":3,"
                 "\"stable\":true,\"mysql_verified\":false,\"invariants_ok\":false,"
                 "\"broken\":\"MySQL not verified: no sync worker answered\","
                 "\"mysql_error\":\"no sync worker answered (timeout)\"}");
    assert_int_equal(a.has_mysql, 0);
    assert_false(lg_audit_drained(&a));
    assert_string_equal(a.mysql_error, "no sync worker answered (timeout)");

    /* an error reply parses, as such */
    a = audit_of("{\"ok\":false,\"error\":\"unknown_sku\",\"message\":\"no SKU 'x' in Redis\"}");
    assert_int_equal(a.reply_ok, 0);
    assert_string_equal(a.error, "unknown_sku");
    assert_false(lg_audit_drained(&a));

    /* not an audit reply */
    lg_audit_facts b;
    char err[128];
    const char *bad[] = {
        "",
        "[1,2]",
        "{\"ok\":1}",
        "not json",
        /* a field the verdict needs is missing */
        "{\"ok\":true,\"total\":10,\"avail\":2,\"details_pending\":0,\"stable\":true,"
        "\"mysql_verified\":false,\"invariants_ok\":true}",
        /* a count that is not a whole number */
        "{\"ok\":true,\"total\":10,\"avail\":2,\"deducted\":1.5,\"details_pending\":0,"
        "\"stable\":true,\"mysql_verified\":false,\"invariants_ok\":true}",
        /* past 2^53: a double cannot hold it exactly */
        "{\"ok\":true,\"total\":10,\"avail\":2,\"deducted\":9007199254740993,"
        "\"details_pending\":0,\"stable\":true,\"mysql_verified\":false,\"invariants_ok\":true}",
        /* says MySQL was verified but carries no MySQL numbers */
        "{\"ok\":true,\"total\":10,\"avail\":2,\"deducted\":8,\"details_pending\":0,"
        "\"stable\":true,\"mysql_verified\":true,\"invariants_ok\":true}",
        /* a boolean as a string */
        "{\"ok\":true,\"total\":10,\"avail\":2,\"deducted\":8,\"details_pending\":0,"
        "\"stable\":\"true\",\"mysql_verified\":false,\"invariants_ok\":true}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (lg_audit_parse(bad[i], strlen(bad[i]), &b, err, sizeof err) == 0) {
            fail_msg("accepted as an audit reply: %s", bad[i]);
        }
        assert_true(err[0] != '\0');
    }
}

static void test_registry_pending(void **state)
{
    (void)state;
    const char *reg =
        "{\"ok\":true,\"skus\":[{\"sku\":\"a\",\"partitions\":[{\"index\":0,\"details_pending\":5},"
        "{\"index\":1,\"details_pending\":0}]},{\"sku\":\"b\",\"partitions\":"
        "[{\"index\":0,\"details_pending\":0}]},{\"sku\":\"c\",\"lag_error\":\"x\","
        "\"partitions\":[{\"index\":0}]}]}";
    int64_t p = -1;
    assert_int_equal(lg_registry_pending(reg, strlen(reg), "a", &p), 1);
    assert_int_equal(p, 5);
    assert_int_equal(lg_registry_pending(reg, strlen(reg), "b", &p), 1);
    assert_int_equal(p, 0);
    assert_int_equal(lg_registry_pending(reg, strlen(reg), "c", &p), -1); /* lag not read */
    assert_int_equal(lg_registry_pending(reg, strlen(reg), "zz", &p), 0);
    assert_int_equal(lg_registry_pending("{\"ok\":false}", 12, "a", &p), -1);
    assert_int_equal(lg_registry_pending("", 0, "a", &p), -1);
}

/* lg_verify_judge: the comparison of a run's units with the audit. */
static void test_verify_judge(void **state)
{
    (void)state;
    lg_expect e;
    lg_verdict v;
    lg_expect_exact(5000, &e);
    lg_audit_facts good = audit_of(AUDIT_OK);

    /* everything agrees */
    lg_verify_judge(&e, 1, &good, NULL, &v);
    assert_int_equal(v.failed, 0);
    assert_string_equal(v.message, "");

    /* one unit more answered ok than Redis and MySQL hold: both named */
    lg_expect_exact(5001, &e);
    lg_verify_judge(&e, 1, &good, NULL, &v);
    assert_int_equal(v.failed, LG_VCHK_UNITS_REDIS | LG_VCHK_UNITS_MYSQL);
    assert_non_null(strstr(v.message, "units_redis: Redis net deducted 5000, expected 5001"));
    assert_non_null(strstr(v.message, "units_mysql: MySQL net deducted 5000, expected 5001"));

    /* MySQL lost a detail (a row deleted): the audit breaks exactness, MySQL is short */
    lg_expect_exact(5000, &e);
    lg_audit_facts a = good;
    a.mysql_deducted = 4997;
    a.invariants_ok = 0;
    snprintf(a.broken, sizeof a.broken, "partition 2: Redis ded 1065 vs MySQL SUM(qty) 1062");
    lg_verify_judge(&e, 1, &a, NULL, &v);
    assert_int_equal(v.failed, LG_VCHK_INVARIANTS | LG_VCHK_UNITS_MYSQL);
    assert_non_null(strstr(v.message, "invariants: partition 2"));
    assert_non_null(strstr(v.message, "expected 5000"));

    /* Redis alone differs (someone else deducted): the run's count does not match */
    a = good;
    a.deducted = 5003;
    a.mysql_deducted = 5003;
    lg_verify_judge(&e, 1, &a, NULL, &v);
    assert_int_equal(v.failed, LG_VCHK_UNITS_REDIS | LG_VCHK_UNITS_MYSQL);

    /* shipping not drained: named, and MySQL is short of the run's units */
    a = good;
    a.mysql_deducted = 4990;
    a.unsynced_details = 4;
    a.unsynced_qty = 10;
    lg_verify_judge(&e, 1, &a, NULL, &v);
    assert_true(v.failed & LG_VCHK_DRAINED);
    assert_true(v.failed & LG_VCHK_UNITS_MYSQL);
    assert_false(v.failed & LG_VCHK_UNITS_REDIS);
    assert_non_null(strstr(v.message, "4 details (10 units) still wait"));

    /* MySQL not read */
    a = good;
    a.has_mysql = 0;
    a.mysql_verified = 0;
    a.invariants_ok = 0;
    snprintf(a.mysql_error, sizeof a.mysql_error, "no sync worker answered");
    lg_verify_judge(&e, 1, &a, NULL, &v);
    assert_true(v.failed & LG_VCHK_MYSQL);
    assert_false(v.failed & LG_VCHK_UNITS_MYSQL);
    assert_non_null(strstr(v.message, "no sync worker answered"));

    /* no audit at all, or an error reply */
    lg_verify_judge(&e, 0, NULL, "admin socket /x: cannot connect", &v);
    assert_int_equal(v.failed, LG_VCHK_ADMIN);
    assert_non_null(strstr(v.message, "cannot connect"));
    a = good;
    a.reply_ok = 0;
    snprintf(a.error, sizeof a.error, "unknown_sku");
    lg_verify_judge(&e, 1, &a, NULL, &v);
    assert_int_equal(v.failed, LG_VCHK_ADMIN);
    assert_non_null(strstr(v.message, "unknown_sku"));

    /* a range (answers of unknown outcome): inside passes, outside fails */
    lg_sku_stats k;
    memset(&k, 0, sizeof k);
    k.units_ok = 4998;
    k.units_unknown = 5;
    lg_expect_from_run(&k, &e); /* 4998..5003 */
    lg_verify_judge(&e, 1, &good, NULL, &v);
    assert_int_equal(v.failed, 0);
    k.units_ok = 4990; /* 4990..4995 */
    lg_expect_from_run(&k, &e);
    lg_verify_judge(&e, 1, &good, NULL, &v);
    assert_int_equal(v.failed, LG_VCHK_UNITS_REDIS | LG_VCHK_UNITS_MYSQL);
    assert_non_null(strstr(v.message, "expected 4990..4995"));
}

/* The result of several SKUs: one failing fails the whole; the JSON says which and why. */
static void test_verify_result_json(void **state)
{
    (void)state;
    lg_verify_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->nskus = 2;
    r->drain_timeout_s = 30;
    snprintf(r->sku[0].sku, sizeof r->sku[0].sku, "good");
    lg_expect_exact(5000, &r->sku[0].expect);
    r->sku[0].have_audit = 1;
    r->sku[0].audit = audit_of(AUDIT_OK);
    r->sku[0].drain_ms = 120;
    snprintf(r->sku[1].sku, sizeof r->sku[1].sku, "bad");
    lg_expect_exact(5001, &r->sku[1].expect);
    r->sku[1].have_audit = 1;
    r->sku[1].audit = audit_of(AUDIT_OK);
    r->sku[1].drain_ms = -1;
    lg_verify_finish(r);
    assert_int_equal(r->ok, 0);
    assert_int_equal(r->sku[0].verdict.failed, 0);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fputc('{', f);
    fprintf(f, "\"x\":1");
    assert_int_equal(lg_verify_write_json(f, r), 0);
    fputc('}', f);
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) {
        fail_msg("verify JSON does not parse: %s", text);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "verify");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(v, "ok")));
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(v, "skus");
    assert_int_equal(cJSON_GetArraySize(skus), 2);
    const cJSON *g = cJSON_GetArrayItem(skus, 0), *b = cJSON_GetArrayItem(skus, 1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "ok")));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(g, "left")->valueint, 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(g, "mysql_deducted")->valueint, 5000);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b, "ok")));
    const cJSON *failed = cJSON_GetObjectItemCaseSensitive(b, "failed");
    assert_int_equal(cJSON_GetArraySize(failed), 2);
    assert_string_equal(cJSON_GetArrayItem(failed, 0)->valuestring, "units_redis");
    assert_string_equal(cJSON_GetArrayItem(failed, 1)->valuestring, "units_mysql");
    cJSON_Delete(j);
    free(text);

    /* the text report names the failing SKU and the check */
    f = open_memstream(&text, &len);
    assert_non_null(f);
    lg_verify_print(f, r);
    fclose(f);
    assert_non_null(strstr(text, "FAILED for 1 of 2 SKU(s)"));
    assert_non_null(strstr(text, "sku bad: expected 5001"));
    assert_non_null(strstr(text, "sku good: expected 5000"));
    free(text);

    /* a message with quotes and a newline stays valid JSON */
    r->sku[1].have_audit = 0;
    snprintf(r->sku[1].admin_error, sizeof r->sku[1].admin_error, "say \"no\"\\\n");
    lg_verify_finish(r);
    f = open_memstream(&text, &len);
    assert_non_null(f);
    fputc('{', f);
    fprintf(f, "\"x\":1");
    assert_int_equal(lg_verify_write_json(f, r), 0);
    fputc('}', f);
    fclose(f);
    j = cJSON_Parse(text);
    if (j == NULL) {
        fail_msg("verify JSON with an escaped message does not parse: %s", text);
    }
    cJSON_Delete(j);
    free(text);
    free(r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_full_line),
        cmocka_unit_test(test_opts_defaults_and_timeout),
        cmocka_unit_test(test_opts_usage_errors),
        cmocka_unit_test(test_parse_qty),
        cmocka_unit_test(test_qty_distribution),
        cmocka_unit_test(test_order_ids_and_bodies),
        cmocka_unit_test(test_dup_and_release_draws),
        cmocka_unit_test(test_classify_deduct),
        cmocka_unit_test(test_stats_and_json),
        cmocka_unit_test(test_orders_line),
        cmocka_unit_test(test_opts_verify),
        cmocka_unit_test(test_stats_per_sku),
        cmocka_unit_test(test_expect_from_run),
        cmocka_unit_test(test_audit_parse),
        cmocka_unit_test(test_registry_pending),
        cmocka_unit_test(test_verify_judge),
        cmocka_unit_test(test_verify_result_json),
    };
    return T_CMOCKA_MAIN(argc, argv, "loadgen", tests, NULL, NULL);
}
