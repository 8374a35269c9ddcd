/* test_loadgen.c -- stock-loadgen's pure logic: options, generation, classification, report.
 *
 * The loadgen's modules are compiled into this test by #include (unit tests
 * link only libsh.a and the libraries, not the loadgen's objects); lg_run.c,
 * the libevent part, is exercised by the integration tests instead. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../bench/loadgen/lg_gen.c"
#include "../../bench/loadgen/lg_opts.c"
#include "../../bench/loadgen/lg_stats.c"

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
    lg_stats_init(s);
    lg_reply ok =
        reply_of(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":1,\"duplicate\":false}");
    lg_reply dup =
        reply_of(200, "{\"status\":\"ok\",\"partition\":1,\"seq\":1,\"duplicate\":true}");
    lg_reply so = reply_of(409, "{\"error\":\"sold_out\"}");
    lg_reply big = reply_of(413, "");
    lg_reply tr = reply_of(0, NULL);
    s->sent = 10;
    lg_stats_add_deduct(s, &ok, 3, 1000);
    lg_stats_add_deduct(s, &ok, 2, 2000);
    lg_stats_add_deduct(s, &dup, 3, 3000); /* a duplicate adds no units */
    for (int i = 0; i < 5; i++) {
        lg_stats_add_deduct(s, &so, 1, 4000);
    }
    lg_stats_add_deduct(s, &big, 1, 5000);
    lg_stats_add_deduct(s, &tr, 1, 100000);
    lg_reply rel;
    const char *rok = "{\"status\":\"ok\",\"partition\":1,\"seq\":2,\"duplicate\":false}";
    lg_classify_release(200, rok, strlen(rok), &rel);
    s->rel_sent = 1;
    lg_stats_add_release(s, &rel, 2, 500);
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
    assert_int_equal(lg_stats_write_json(f, s), 0);
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
    lg_stats_print(f, s);
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

int main(void)
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
    };
    return cmocka_run_group_tests_name("loadgen", tests, NULL, NULL);
}
