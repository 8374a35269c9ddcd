/* test_stockctl.c -- stockctl without a scheduler: arguments, numbers, replies, tables.
 *
 * The stockctl sources are compiled into this test directly (unit tests link
 * only libsh.a, cJSON and cmocka). Tables are checked byte for byte, because
 * scripts and people read them. The socket exchange is checked against small
 * servers forked here: missing socket, a peer that never answers, a peer that
 * hangs up, one that answers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "../../scheduler/stockctl/ctl_args.c"
#include "../../scheduler/stockctl/ctl_fmt.c"
#include "../../scheduler/stockctl/ctl_sock.c"
#include "sh_clock.h"

#include <signal.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

typedef struct capture {
    char *buf;
    size_t len;
    FILE *f;
} capture;

static void cap_open(capture *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
}

/* Closes the stream and returns its text (owned by c). */
static const char *cap_text(capture *c)
{
    assert_int_equal(fclose(c->f), 0);
    c->f = NULL;
    return c->buf;
}

static void cap_free(capture *c)
{
    if (c->f != NULL) {
        fclose(c->f);
    }
    free(c->buf);
}

/* Parses the words after "stockctl", given as a NULL-terminated array
 * (W("stats", NULL)). */
#define W(...) ((const char *[]){__VA_ARGS__})

static int parse(ctl_args *a, const char *env, char *err, size_t errlen, const char *const *words)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"stockctl";
    for (size_t i = 0; words[i] != NULL && argc < 31; i++) {
        argv[argc++] = (char *)words[i];
    }
    argv[argc] = NULL;
    return ctl_args_parse(a, argc, argv, env, err, errlen);
}

static cJSON *reply_of(const char *text)
{
    char err[128];
    cJSON *r = ctl_reply_parse(text, strlen(text), err, sizeof err);
    if (r == NULL) {
        fail_msg("reply did not parse: %s: %s", err, text);
    }
    return r;
}

/* ---- numbers ------------------------------------------------------------- */

static void test_parse_i64(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_int_equal(ctl_parse_i64("0", 0, 10, &v), SH_OK);
    assert_int_equal(v, 0);
    assert_int_equal(ctl_parse_i64("1000000000", 1, SH_SKU_TOTAL_UNITS_MAX, &v), SH_OK);
    assert_int_equal(v, 1000000000);
    assert_int_equal(ctl_parse_i64("-5", -10, 10, &v), SH_OK);
    assert_int_equal(v, -5);
    assert_int_equal(ctl_parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v), SH_OK);
    assert_true(v == INT64_MAX);
    v = 7;
    const char *bad[] = {"", "-", "+5", " 5", "5 ", "0x10", "1e3", "1.0", "5x", "--5", "٣"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ctl_parse_i64(bad[i], INT64_MIN, INT64_MAX, &v), SH_EINVAL);
    }
    assert_int_equal(v, 7); /* untouched on error */
    assert_int_equal(ctl_parse_i64("1000000001", 1, SH_SKU_TOTAL_UNITS_MAX, &v), SH_ERANGE);
    assert_int_equal(ctl_parse_i64("0", 1, 10, &v), SH_ERANGE);
    assert_int_equal(ctl_parse_i64("9223372036854775808", INT64_MIN, INT64_MAX, &v), SH_ERANGE);
    assert_int_equal(ctl_parse_i64("-9223372036854775809", INT64_MIN, INT64_MAX, &v), SH_ERANGE);
    assert_int_equal(ctl_parse_i64(NULL, 0, 1, &v), SH_EINVAL);
    assert_int_equal(v, 7);
}

/* ---- arguments -------------------------------------------------------------- */

static void test_args_socket_choice(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("stats", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_STATS);
    assert_string_equal(a.socket_path, CTL_SOCKET_DEFAULT);
    assert_int_equal(a.timeout_ms, CTL_TIMEOUT_MS_DEFAULT);
    assert_int_equal(a.json, 0);
    assert_int_equal(parse(&a, "/tmp/env.sock", err, sizeof err, W("stats", NULL)), 0);
    assert_string_equal(a.socket_path, "/tmp/env.sock");
    assert_int_equal(parse(&a, "", err, sizeof err, W("stats", NULL)), 0);
    assert_string_equal(a.socket_path, CTL_SOCKET_DEFAULT);
    assert_int_equal(
        parse(&a, "/tmp/env.sock", err, sizeof err, W("--socket", "/tmp/x.sock", "registry", NULL)),
        0);
    assert_string_equal(a.socket_path, "/tmp/x.sock");
    assert_int_equal(a.cmd, CTL_CMD_REGISTRY);
    /* Global options after the command, and the --opt=value form. */
    assert_int_equal(
        parse(&a, NULL, err, sizeof err,
              W("registry", "--json", "--socket=/tmp/y.sock", "--timeout-ms", "250", NULL)),
        0);
    assert_int_equal(a.json, 1);
    assert_string_equal(a.socket_path, "/tmp/y.sock");
    assert_int_equal(a.timeout_ms, 250);
    assert_int_equal(
        parse(&a, NULL, err, sizeof err, W("--socket", "/a", "--socket", "/b", "stats", NULL)), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--socket", NULL)), -1);
    assert_non_null(strstr(err, "--socket needs a path"));
    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--socket", longpath, "stats", NULL)), -1);
    assert_non_null(strstr(err, "longer than 107"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--timeout-ms", "0", "stats", NULL)), -1);
    assert_non_null(strstr(err, "--timeout-ms: 0 is outside 1..600000"));
}

static void test_args_help_and_errors(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--help", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_HELP);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("-h", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_HELP);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("help", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_HELP);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("sku", "load", "--help", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_HELP);

    assert_int_equal(parse(&a, NULL, err, sizeof err, W(NULL)), -1);
    assert_non_null(strstr(err, "no command"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("frob", NULL)), -1);
    assert_non_null(strstr(err, "unknown command 'frob'"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--frob", "stats", NULL)), -1);
    assert_non_null(strstr(err, "unknown option '--frob'"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("stats", "extra", NULL)), -1);
    assert_non_null(strstr(err, "unexpected argument 'extra'"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("registry", "--total", "5", NULL)), -1);
    assert_non_null(strstr(err, "unknown option '--total'"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("audit", NULL)), -1);
    assert_non_null(strstr(err, "usage: stockctl audit SKU"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("audit", "a", "b", NULL)), -1);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("audit", "a{b}", NULL)), -1);
    assert_non_null(strstr(err, "bad SKU id 'a{b}'"));
    assert_int_equal(
        parse(&a, NULL, err, sizeof err, W("audit", "a", "--max-pending-age-ms", "60001", NULL)),
        -1);
    assert_non_null(strstr(err, "--max-pending-age-ms: 60001 is outside 1..60000"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("audit", "a", "--total", "5", NULL)), -1);
    assert_non_null(strstr(err, "unknown option '--total'"));
    assert_int_equal(
        parse(&a, NULL, err, sizeof err, W("sku", "load", "a", "--max-pending-age-ms", "5", NULL)),
        -1);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("sku", NULL)), -1);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("sku", "drop", "x", NULL)), -1);
    assert_non_null(strstr(err, "sku load"));
}

static void test_args_sku_load(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(
        parse(&a, NULL, err, sizeof err,
              W("sku", "load", "flash-1", "--total", "1000", "--partitions", "4", NULL)),
        0);
    assert_int_equal(a.cmd, CTL_CMD_SKU_LOAD);
    assert_string_equal(a.sku, "flash-1");
    assert_int_equal(a.total, 1000);
    assert_int_equal(a.partitions, 4);
    assert_false(a.has_min_chunk || a.has_max_chunk || a.has_start_ms || a.has_per_user_limit);
    assert_null(a.name);

    /* Every option, options before the SKU, the = form. */
    assert_int_equal(parse(&a, NULL, err, sizeof err,
                           W("sku", "load", "--total=5000", "--min-chunk", "10", "x.1",
                             "--max-chunk=20", "--partitions", "256", "--start", "1795000000123",
                             "--per-user-limit", "3", "--name", "Big sale", NULL)),
                     0);
    assert_string_equal(a.sku, "x.1");
    assert_int_equal(a.total, 5000);
    assert_int_equal(a.partitions, 256);
    assert_true(a.has_min_chunk && a.min_chunk == 10);
    assert_true(a.has_max_chunk && a.max_chunk == 20);
    assert_true(a.has_start_ms && a.start_ms == 1795000000123LL);
    assert_true(a.has_per_user_limit && a.per_user_limit == 3);
    assert_string_equal(a.name, "Big sale");

    /* A SKU that starts with '-' after "--". */
    assert_int_equal(
        parse(&a, NULL, err, sizeof err,
              W("sku", "load", "--total", "1", "--partitions", "1", "--", "-odd", NULL)),
        0);
    assert_string_equal(a.sku, "-odd");

    /* Without --total and --partitions: the catalog row is loaded as it is. */
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("sku", "load", "from-row", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_SKU_LOAD);
    assert_string_equal(a.sku, "from-row");
    assert_false(a.has_total || a.has_partitions);

    struct {
        const char *words[8];
        const char *msg;
    } bad[] = {
        {{"--min-chunk", "5", NULL}, "sale parameters need --total and --partitions"},
        {{"--name", "x", NULL}, "sale parameters need --total and --partitions"},
        {{"--total", "10", NULL}, "needs --partitions"},
        {{"--partitions", "1", NULL}, "needs --total"},
        {{"--total", "0", "--partitions", "1", NULL}, "--total: 0 is outside 1..1000000000"},
        {{"--total", "1000000001", "--partitions", "1", NULL}, "outside"},
        {{"--total", "-5", "--partitions", "1", NULL}, "outside"},
        {{"--total", "10k", "--partitions", "1", NULL}, "'10k' is not a whole decimal number"},
        {{"--total", "10", "--partitions", "257", NULL}, "--partitions: 257 is outside 1..256"},
        {{"--total", "10", "--partitions", "1", "--min-chunk", "0", NULL}, "--min-chunk: 0"},
        {{"--total", "10", "--partitions", "1", "--max-chunk", "10000001", NULL}, "--max-chunk"},
        {{"--total", "10", "--partitions", "1", "--min-chunk", "9", "--max-chunk", "8"},
         "--min-chunk 9 is larger than --max-chunk 8"},
        {{"--total", "10", "--partitions", "1", "--start", "-1", NULL}, "--start"},
        {{"--total", "10", "--partitions", "1", "--per-user-limit", "1000001", NULL},
         "--per-user-limit"},
        {{"--total", "10", "--partitions", "1", "--total", "10", NULL}, "--total given twice"},
        {{"--total", "10", "--partitions", "1", "--name", "a", "--name", "b"},
         "--name given twice"},
        {{"--total", "10", "--partitions", "1", "--name", "a\nb", NULL}, "control character"},
        {{"--total", "10", "--partitions", "1", "--total", NULL}, "--total needs a value"},
        {{"--total", "10", "--partitions", "1", "--bogus", NULL}, "unknown option '--bogus'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[16] = {(char *)"stockctl", (char *)"sku", (char *)"load", (char *)"s1"};
        int argc = 4;
        for (size_t k = 0; k < 8 && bad[i].words[k] != NULL; k++) {
            argv[argc++] = (char *)bad[i].words[k];
        }
        err[0] = '\0';
        assert_int_equal(ctl_args_parse(&a, argc, argv, NULL, err, sizeof err), -1);
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
        }
    }
    char name[SH_SKU_NAME_CHARS_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_int_equal(
        parse(&a, NULL, err, sizeof err,
              W("sku", "load", "s", "--total", "1", "--partitions", "1", "--name", name, NULL)),
        -1);
    assert_non_null(strstr(err, "--name is longer than 128"));
    name[SH_SKU_NAME_CHARS_MAX] = '\0';
    assert_int_equal(
        parse(&a, NULL, err, sizeof err,
              W("sku", "load", "s", "--total", "1", "--partitions", "1", "--name", name, NULL)),
        0);
}

static void test_args_sku_restock(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(parse(&a, NULL, err, sizeof err,
                           W("sku", "restock", "flash-1", "500", "--id", "r:2026.11-a", NULL)),
                     0);
    assert_int_equal(a.cmd, CTL_CMD_SKU_RESTOCK);
    assert_string_equal(a.sku, "flash-1");
    assert_int_equal(a.units, 500);
    assert_string_equal(a.restock_id, "r:2026.11-a");
    assert_int_equal(
        parse(&a, NULL, err, sizeof err, W("sku", "restock", "--id=r1", "s", "1000000000", NULL)),
        0);
    assert_int_equal(a.units, 1000000000);
    assert_string_equal(a.restock_id, "r1");

    struct {
        const char *words[8];
        const char *msg;
    } bad[] = {
        {{"s", "5", NULL}, "sku restock needs --id RESTOCK_ID"},
        {{"s", "--id", "r", NULL}, "usage: stockctl sku restock SKU UNITS --id RESTOCK_ID"},
        {{"s", "5", "6", "--id", "r", NULL}, "unexpected argument '6'"},
        {{"s", "0", "--id", "r", NULL}, "UNITS: 0 is outside 1..1000000000"},
        {{"s", "1000000001", "--id", "r", NULL}, "outside"},
        {{"s", "5x", "--id", "r", NULL}, "'5x' is not a whole decimal number"},
        {{"s", "5", "--id", "r{1}", NULL}, "bad restock id 'r{1}'"},
        {{"s", "5", "--id", "", NULL}, "bad restock id ''"},
        {{"s", "5", "--id", "a", "--id", "b", NULL}, "--id given twice"},
        {{"s", "5", "--id", NULL}, "--id needs a value"},
        {{"s", "5", "--id", "r", "--total", "3", NULL}, "unknown option '--total'"},
        {{"s{", "5", "--id", "r", NULL}, "bad SKU id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[16] = {(char *)"stockctl", (char *)"sku", (char *)"restock"};
        int argc = 3;
        for (size_t k = 0; k < 8 && bad[i].words[k] != NULL; k++) {
            argv[argc++] = (char *)bad[i].words[k];
        }
        err[0] = '\0';
        assert_int_equal(ctl_args_parse(&a, argc, argv, NULL, err, sizeof err), -1);
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
        }
    }
}

static void test_request_build(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    struct {
        const char *words[20];
        const char *json;
    } cases[] = {
        {{"registry", NULL}, "{\"cmd\":\"registry\"}"},
        {{"stats", NULL}, "{\"cmd\":\"stats\"}"},
        {{"db", "migrate", NULL}, "{\"cmd\":\"db_migrate\"}"},
        {{"audit", "flash-1", NULL}, "{\"cmd\":\"audit\",\"sku\":\"flash-1\"}"},
        {{"audit", "flash-1", "--max-pending-age-ms", "1500", NULL},
         "{\"cmd\":\"audit\",\"sku\":\"flash-1\",\"max_pending_age_ms\":1500}"},
        {{"partition", "reconcile", "flash-1", "255", NULL},
         "{\"cmd\":\"partition_reconcile\",\"sku\":\"flash-1\",\"partition\":255}"},
        {{"sku", "load", "a", NULL}, "{\"cmd\":\"sku_load\",\"sku\":\"a\"}"},
        {{"sku", "restock", "a", "1000000000", "--id", "r-1", NULL},
         "{\"cmd\":\"sku_restock\",\"sku\":\"a\",\"units\":1000000000,\"restock_id\":\"r-1\"}"},
        {{"sku", "load", "a", "--total", "10", "--partitions", "2", NULL},
         "{\"cmd\":\"sku_load\",\"sku\":\"a\",\"total\":10,\"partitions\":2}"},
        {{"sku", "load", "a", "--total", "1000000000", "--partitions", "2", "--min-chunk", "5",
          "--max-chunk", "50", "--start", "253402300799999", "--per-user-limit", "0", "--name",
          "Q \"1\"", NULL},
         "{\"cmd\":\"sku_load\",\"sku\":\"a\",\"total\":1000000000,\"partitions\":2,"
         "\"min_chunk\":5,\"max_chunk\":50,\"start_ms\":253402300799999,\"per_user_limit\":0,"
         "\"name\":\"Q \\\"1\\\"\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[24] = {(char *)"stockctl"};
        int argc = 1;
        for (size_t k = 0; cases[i].words[k] != NULL; k++) {
            argv[argc++] = (char *)cases[i].words[k];
        }
        assert_int_equal(ctl_args_parse(&a, argc, argv, NULL, err, sizeof err), 0);
        char *req = ctl_request_build(&a);
        assert_non_null(req);
        assert_string_equal(req, cases[i].json);
        cJSON_free(req);
    }
    a.cmd = CTL_CMD_HELP;
    assert_null(ctl_request_build(&a));
}

/* ---- exact integers in replies ---------------------------------------------- */

static void test_quote_ints(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"{\"a\":1}", "{\"a\":\"1\"}"},
        {"{\"a\":-12,\"b\":0,\"c\":-0}", "{\"a\":\"-12\",\"b\":\"0\",\"c\":\"-0\"}"},
        {"{\"r\":12.5,\"e\":1e3,\"f\":-2E-2}", "{\"r\":12.5,\"e\":1e3,\"f\":-2E-2}"},
        {"{\"s\":\"a1 \\\"2\\\" 3\",\"n\":4}", "{\"s\":\"a1 \\\"2\\\" 3\",\"n\":\"4\"}"},
        {"{\"s\":\"x\\\\\",\"n\":5}", "{\"s\":\"x\\\\\",\"n\":\"5\"}"},
        {"[1, 2 ,3]", "[\"1\", \"2\" ,\"3\"]"},
        {"{\"t\":true,\"f\":false,\"z\":null}", "{\"t\":true,\"f\":false,\"z\":null}"},
        {"{\"big\":18446744073709551615}", "{\"big\":\"18446744073709551615\"}"},
        /* Malformed numbers stay malformed. */
        {"{\"a\":01}", "{\"a\":01}"},
        {"{\"a\":1-2}", "{\"a\":1-2}"},
        {"{\"a\":-}", "{\"a\":-}"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = ctl_json_quote_ints(cases[i].in, strlen(cases[i].in));
        assert_non_null(out);
        assert_string_equal(out, cases[i].out);
        free(out);
    }
}

static void test_reply_parse_exact(void **state)
{
    (void)state;
    cJSON *r = reply_of("{\"ok\":true,\"seq\":9007199254740993,\"neg\":-9007199254740993,"
                        "\"max\":9223372036854775807,\"d\":12.0,\"s\":\"77\",\"x\":\"7a\"}\n");
    int64_t v = 0;
    assert_int_equal(ctl_json_i64(r, "seq", &v), 0);
    assert_true(v == 9007199254740993LL);
    assert_int_equal(ctl_json_i64(r, "neg", &v), 0);
    assert_true(v == -9007199254740993LL);
    assert_int_equal(ctl_json_i64(r, "max", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(ctl_json_i64(r, "d", &v), 0); /* a number that is an exact integer */
    assert_int_equal(v, 12);
    assert_int_equal(ctl_json_i64(r, "s", &v), 0);
    assert_int_equal(ctl_json_i64(r, "x", &v), -1);
    assert_int_equal(ctl_json_i64(r, "missing", &v), -1);
    assert_int_equal(ctl_json_i64(r, "ok", &v), -1);
    assert_int_equal(ctl_reply_ok(r), 1);
    cJSON_Delete(r);

    char err[128];
    const char *bad[] = {"",    "not json",   "{\"ok\":true} trailing",
                         "[1]", "{\"ok\":1}", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(ctl_reply_parse(bad[i], strlen(bad[i]), err, sizeof err));
        assert_true(err[0] != '\0');
    }
    /* Not NUL-terminated at len. */
    const char buf[] = "{\"ok\":false}XYZ";
    r = ctl_reply_parse(buf, 12, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(ctl_reply_ok(r), 0);
    cJSON_Delete(r);
}

static void test_format_start(void **state)
{
    (void)state;
    char buf[64];
    ctl_format_start(0, buf, sizeof buf);
    assert_string_equal(buf, "none");
    ctl_format_start(1795000000123LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-18T11:06:40.123Z");
    ctl_format_start(1000, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:01.000Z");
}

/* ---- tables ---------------------------------------------------------------- */

static const char registry_reply[] =
    "{\"ok\":true,\"skus\":["
    "{\"sku\":\"flash-1\",\"name\":\"Flash sale 1\",\"total\":1000000,\"avail\":996000,"
    "\"pending\":0,\"remaining\":999980,\"per_user_limit\":2,\"start_ms\":1795000000123,"
    "\"min_chunk\":100,\"max_chunk\":10000,\"ok\":20,\"sold_out\":0,\"partitions\":["
    "{\"index\":0,\"salt\":3,\"node\":0,\"master\":\"127.0.0.1:25201\",\"state\":\"open\","
    "\"active\":1,\"s0\":980,\"s1\":1000,\"deducted\":20,\"seq\":9007199254740993,\"flips\":1,"
    "\"grants\":3,\"inflight\":0,\"rate_units_per_s\":12.5,\"details_pending\":20,"
    "\"oldest_pending_age_ms\":1234},"
    "{\"index\":1,\"salt\":0,\"node\":1,\"master\":\"127.0.0.1:25202\",\"state\":\"closed\","
    "\"active\":0,\"s0\":0,\"s1\":0,\"deducted\":0,\"seq\":0,\"flips\":0,"
    "\"grants\":18446744073709551615,\"inflight\":0,\"rate_units_per_s\":0,"
    "\"details_pending\":0,\"oldest_pending_age_ms\":0}]},"
    "{\"sku\":\"tiny\",\"name\":\"tiny\",\"total\":5,\"avail\":0,\"pending\":0,\"remaining\":5,"
    "\"per_user_limit\":0,\"start_ms\":0,\"min_chunk\":5,\"max_chunk\":10000,\"ok\":0,"
    "\"sold_out\":0,\"partitions\":[{\"index\":0,\"salt\":0,\"node\":0,\"master\":\"m:1\","
    "\"state\":\"open\",\"active\":0,\"s0\":5,\"s1\":0,\"deducted\":0,\"seq\":0,\"flips\":0,"
    "\"grants\":1,\"inflight\":0,\"rate_units_per_s\":0,\"pending_work\":{\"grant_id\":7,"
    "\"grant_units\":5,\"doubt_grant_id\":0,\"return_id\":0,\"age_ms\":1500}}]}]}";

static void test_registry_table(void **state)
{
    (void)state;
    cJSON *r = reply_of(registry_reply);
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_registry(out.f, err.f, r), 0);
    const char *want =
        "sku flash-1 \"Flash sale 1\"  total 1000000  pool avail 996000  pending 0  remaining "
        "999980  per-user limit 2  start 2026-11-18T11:06:40.123Z\n"
        "  P  master           node  state   active   s0    s1  deducted               seq  flips"
        "                grants  unsynced  oldest_ms\n"
        "  0  127.0.0.1:25201     0  open         1  980  1000        20  9007199254740993      1"
        "                     3        20       1234\n"
        "  1  127.0.0.1:25202     1  closed       0    0     0         0                 0      0"
        "  18446744073709551615         0          0\n"
        "\n"
        "sku tiny  total 5  pool avail 0  pending 0  remaining 5  per-user limit none  start none\n"
        "  P  master  node  state  active  s0  s1  deducted  seq  flips  grants  unsynced  "
        "oldest_ms\n"
        "  0  m:1        0  open        0   5   0         0    0      0       1         -          "
        "-\n"
        "  pending on P0: grant 7 (5 units) to apply, grant 0 in doubt, return 0; for 1500 ms\n";
    assert_string_equal(cap_text(&out), want);
    assert_string_equal(cap_text(&err), "");
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    r = reply_of("{\"ok\":true,\"skus\":[]}");
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_registry(out.f, err.f, r), 0);
    assert_string_equal(cap_text(&out), "no SKUs loaded\n");
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);
}

static void test_registry_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"ok\":true}",
        "{\"ok\":true,\"skus\":{}}",
        "{\"ok\":true,\"skus\":[{\"sku\":\"a\"}]}",
        "{\"ok\":true,\"skus\":[{\"sku\":\"a\",\"total\":1,\"avail\":1,\"pending\":0,"
        "\"remaining\":1,\"per_user_limit\":0,\"start_ms\":0,\"partitions\":[{\"index\":0}]}]}",
        "{\"ok\":true,\"skus\":[{\"sku\":\"a\",\"total\":1.5,\"avail\":1,\"pending\":0,"
        "\"remaining\":1,\"per_user_limit\":0,\"start_ms\":0,\"partitions\":[]}]}",
    };
    const char *field[] = {"'skus'", "'skus'", "'total'", "'node'", "'total'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *r = reply_of(bad[i]);
        capture out, err;
        cap_open(&out);
        cap_open(&err);
        assert_int_equal(ctl_print_registry(out.f, err.f, r), 2);
        const char *e = cap_text(&err);
        if (strstr(e, "malformed registry reply") == NULL || strstr(e, field[i]) == NULL) {
            fail_msg("case %zu: %s", i, e);
        }
        cap_free(&out);
        cap_free(&err);
        cJSON_Delete(r);
    }
}

static const char audit_ok_reply[] =
    "{\"ok\":true,\"sku\":\"flash-1\",\"total\":1000000,\"avail\":996000,"
    "\"pending_grant_units\":100,\"pending_return_units\":0,\"partition_units\":3880,"
    "\"deducted\":20,\"details_pending\":20,\"seq_sum\":20,\"partitions\":4,\"stable\":true,"
    "\"invariants_ok\":true,\"broken\":\"\",\"invariants\":{\"conservation\":true,"
    "\"no_negative\":true,\"no_oversell\":true}}";

static void test_audit_table_ok(void **state)
{
    (void)state;
    cJSON *r = reply_of(audit_ok_reply);
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_audit(out.f, err.f, r), 0);
    const char *want =
        "audit flash-1: 4 partitions, stable read\n"
        "  total                     1000000\n"
        "  pool avail                 996000\n"
        "  units in pending grants       100\n"
        "  units in pending returns        0\n"
        "  units in partitions          3880\n"
        "  net deducted in Redis          20\n"
        "  details pending in Redis       20\n"
        "  conservation              ok  total 1000000 = pool 996000 + grants 100 + returns 0 + "
        "partitions 3880 + deducted 20\n"
        "  no negative counter       ok\n"
        "  no oversell               ok  deducted 20 <= total 1000000\n";
    assert_string_equal(cap_text(&out), want);
    assert_string_equal(cap_text(&err), "");
    assert_int_equal(ctl_json_status(r), 0);
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);
}

/* Runs ctl_print_audit on text; checks its status, a line of out and err. */
static void audit_case(const char *text, int status, const char *out_has, const char *err_has)
{
    cJSON *r = reply_of(text);
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_audit(out.f, err.f, r), status);
    if (status != 2) {
        assert_int_equal(ctl_json_status(r), status);
    }
    const char *o = cap_text(&out);
    const char *e = cap_text(&err);
    if (strstr(o, out_has) == NULL) {
        fail_msg("stdout lacks '%s':\n%s", out_has, o);
    }
    if (strstr(e, err_has) == NULL) {
        fail_msg("stderr lacks '%s':\n%s", err_has, e);
    }
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);
}

static void test_audit_broken(void **state)
{
    (void)state;
    /* A negative counter in one partition: the sums hold, the scheduler says no. */
    audit_case("{\"ok\":true,\"sku\":\"s\",\"total\":10,\"avail\":0,\"pending_grant_units\":0,"
               "\"pending_return_units\":0,\"partition_units\":10,\"deducted\":0,"
               "\"details_pending\":0,\"partitions\":2,\"stable\":true,\"invariants_ok\":false,"
               "\"broken\":\"negative counter: partition 1 s0=-3 s1=13 ded=0\","
               "\"invariants\":{\"conservation\":true,\"no_negative\":false,"
               "\"no_oversell\":true}}",
               1, "  no negative counter       BROKEN  negative counter: partition 1 s0=-3 s1=13",
               "stockctl: invariant broken for s: no negative counter (negative counter: "
               "partition 1 s0=-3 s1=13 ded=0)\n");
    /* Conservation recomputed here even though the reply claims it holds. */
    audit_case("{\"ok\":true,\"sku\":\"s\",\"total\":10,\"avail\":1,\"pending_grant_units\":0,"
               "\"pending_return_units\":0,\"partition_units\":10,\"deducted\":0,"
               "\"details_pending\":0,\"partitions\":1,\"stable\":true,\"invariants_ok\":true,"
               "\"broken\":\"\"}",
               1,
               "  conservation              BROKEN  total 10 != pool 1 + grants 0 + returns 0 + "
               "partitions 10 + deducted 0\n",
               "invariant broken for s: conservation (total 10 != pool 1 + grants 0");
    /* Oversell, with an unstable read noted. */
    audit_case("{\"ok\":true,\"sku\":\"s\",\"total\":10,\"avail\":0,\"pending_grant_units\":0,"
               "\"pending_return_units\":0,\"partition_units\":-2,\"deducted\":12,"
               "\"details_pending\":12,\"partitions\":1,\"stable\":false,"
               "\"invariants_ok\":false,\"broken\":\"oversell: deducted 12 > total 10\"}",
               1, "audit s: 1 partition, UNSTABLE read",
               "no negative counter, no oversell (a sum is negative)\n"
               "stockctl: the read was not stable");
    /* Malformed: a field missing. */
    audit_case("{\"ok\":true,\"sku\":\"s\",\"total\":10}", 2, "",
               "malformed audit reply from the scheduler: field 'avail'");
}

/* The reply of a scheduler that compared Redis with MySQL. */
#define AUDIT_MYSQL_HEAD                                                                           \
    "{\"ok\":true,\"sku\":\"m\",\"total\":1000,\"avail\":700,\"pending_grant_units\":0,"           \
    "\"pending_return_units\":0,\"partition_units\":200,\"deducted\":100,\"details_pending\":"     \
    "40,\"seq_sum\":90,\"partitions\":2,\"stable\":true,\"passes\":1,"

#define AUDIT_CHECK(name, label, state, detail)                                                    \
    "{\"name\":\"" name "\",\"label\":\"" label "\",\"state\":\"" state "\",\"detail\":\"" detail  \
    "\"}"

static void test_audit_mysql(void **state)
{
    (void)state;
    const char *ok = AUDIT_MYSQL_HEAD
        "\"mysql_verified\":true,\"invariants_ok\":true,\"broken\":\"\",\"mysql_deducted\":60,"
        "\"mysql_detail_rows\":50,\"unsynced_details\":40,\"unsynced_qty\":40,\"checks\":"
        "[" AUDIT_CHECK("conservation", "conservation", "ok", "total 1000 = ...") "," AUDIT_CHECK(
            "no_negative", "no negative counter", "ok",
            "") "," AUDIT_CHECK("no_oversell", "no oversell", "ok",
                                "Redis 100 <= total 1000") "," AUDIT_CHECK("exactness", "exactness",
                                                                           "ok",
                                                                           "Redis 100 = MySQL 60 + "
                                                                           "pending 40") "," AUDIT_CHECK("details_once",
                                                                                                         "each detail "
                                                                                                         "once",
                                                                                                         "ok",
                                                                                                         "rows 50 = "
                                                                                                         "...") "," AUDIT_CHECK("no_lost_detail",
                                                                                                                                "no lost detail",
                                                                                                                                "ok",
                                                                                                                                "Redis seq 90 = ...") "]}";
    cJSON *r = reply_of(ok);
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_audit(out.f, err.f, r), 0);
    assert_string_equal(cap_text(&out), "audit m: 2 partitions, stable read\n"
                                        "  total                     1000\n"
                                        "  pool avail                 700\n"
                                        "  units in pending grants      0\n"
                                        "  units in pending returns     0\n"
                                        "  units in partitions        200\n"
                                        "  net deducted in Redis      100\n"
                                        "  details pending in Redis    40\n"
                                        "  net deducted in MySQL       60\n"
                                        "  detail rows in MySQL        50\n"
                                        "  conservation              ok  total 1000 = ...\n"
                                        "  no negative counter       ok\n"
                                        "  no oversell               ok  Redis 100 <= total 1000\n"
                                        "  exactness                 ok  Redis 100 = MySQL 60 + "
                                        "pending 40\n"
                                        "  each detail once          ok  rows 50 = ...\n"
                                        "  no lost detail            ok  Redis seq 90 = ...\n");
    assert_string_equal(cap_text(&err), "");
    assert_int_equal(ctl_json_status(r), 0);
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    /* MySQL broken on purpose: the scheduler names exactness and details_once. */
    audit_case(
        AUDIT_MYSQL_HEAD
        "\"mysql_verified\":true,\"invariants_ok\":false,\"broken\":\"x\","
        "\"mysql_deducted\":59,\"mysql_detail_rows\":49,\"unsynced_details\":40,"
        "\"unsynced_qty\":40,\"checks\":[" AUDIT_CHECK(
            "conservation", "conservation", "ok",
            "") "," AUDIT_CHECK("exactness", "exactness", "broken",
                                "partition 1: Redis ded 50 vs "
                                "MySQL SUM(qty) 9 + pending 40") "," AUDIT_CHECK("details_once",
                                                                                 "each detail once",
                                                                                 "broken",
                                                                                 "partition 1: "
                                                                                 "rows 9") "]}",
        1, "  exactness                 BROKEN  partition 1: Redis ded 50",
        "stockctl: invariant broken for m: exactness, each detail once (partition 1: "
        "Redis ded 50 vs MySQL SUM(qty) 9 + pending 40)\n");
    /* The scheduler says exact, the sums say otherwise: the sums win. */
    audit_case(AUDIT_MYSQL_HEAD
               "\"mysql_verified\":true,\"invariants_ok\":true,\"broken\":\"\",\"mysql_deducted\":"
               "59,\"mysql_detail_rows\":50,\"unsynced_details\":40,\"unsynced_qty\":40,"
               "\"checks\":[" AUDIT_CHECK("exactness", "exactness", "ok", "fine") "]}",
               1, "  exactness                 BROKEN  Redis 100 != MySQL 59 + pending 40\n",
               "invariant broken for m: exactness (Redis 100 != MySQL 59 + pending 40)");
    /* No sync worker: the MySQL lines are not verified, exit 1 with the reason. */
    audit_case(AUDIT_MYSQL_HEAD
               "\"mysql_verified\":false,\"mysql_error\":\"no sync worker answered (ipc:///x: no "
               "answer in time)\",\"invariants_ok\":false,\"broken\":\"MySQL not verified\","
               "\"checks\":[" AUDIT_CHECK("conservation", "conservation", "ok", "") "," AUDIT_CHECK(
                   "exactness", "exactness", "not_verified", "MySQL not verified") "]}",
               1,
               "  net deducted in MySQL     not verified\n"
               "  detail rows in MySQL      not verified\n"
               "  conservation              ok\n"
               "  exactness                 NOT VERIFIED  MySQL not verified\n",
               "stockctl: MySQL not verified for m: no sync worker answered (ipc:///x: no answer "
               "in time); the MySQL checks did not run");
    /* Too many pending details: a check not verified with MySQL reachable. */
    audit_case(AUDIT_MYSQL_HEAD
               "\"mysql_verified\":true,\"invariants_ok\":false,\"broken\":\"too many\","
               "\"mysql_deducted\":60,\"mysql_detail_rows\":50,\"unsynced_details\":40,"
               "\"unsynced_qty\":40,\"checks\":[" AUDIT_CHECK("no_lost_detail", "no lost detail",
                                                              "not_verified",
                                                              "too many pending to verify") "]}",
               1, "NOT VERIFIED  too many pending to verify",
               "stockctl: not verified for m: no lost detail (too many pending to verify)\n");
    /* A check entry without its state, and a state nobody knows. */
    audit_case(AUDIT_MYSQL_HEAD "\"invariants_ok\":true,\"checks\":[{\"name\":\"a\"}]}", 2, "",
               "malformed audit reply from the scheduler: field 'checks'");
    audit_case(AUDIT_MYSQL_HEAD
               "\"invariants_ok\":true,\"checks\":[" AUDIT_CHECK("a", "a", "fine", "") "]}",
               2, "", "field 'checks'");
    audit_case(AUDIT_MYSQL_HEAD "\"invariants_ok\":true,\"mysql_verified\":true,\"checks\":[]}", 2,
               "", "field 'mysql_deducted'");
}

static void test_stats_load_error(void **state)
{
    (void)state;
    cJSON *r = reply_of("{\"ok\":true,\"http_requests\":42,\"deduct_ok\":7,"
                        "\"consolidations\":18446744073709551615,\"skus\":2}");
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_stats(out.f, err.f, r), 0);
    assert_string_equal(cap_text(&out), "http_requests                     42\n"
                                        "deduct_ok                          7\n"
                                        "consolidations  18446744073709551615\n"
                                        "skus                               2\n");
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    r = reply_of("{\"ok\":true,\"created\":true}");
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_sku_load(out.f, err.f, "a", r), 0);
    assert_string_equal(cap_text(&out), "sku a loaded\n");
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    r = reply_of("{\"ok\":true,\"created\":false}");
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_sku_load(out.f, err.f, "a", r), 0);
    assert_string_equal(cap_text(&out), "sku a already loaded (nothing changed)\n");
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    r = reply_of("{\"ok\":true}");
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(ctl_print_sku_load(out.f, err.f, "a", r), 2);
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);

    r = reply_of("{\"ok\":false,\"error\":\"unknown_sku\",\"message\":\"no SKU 'x' in Redis\"}");
    cap_open(&err);
    assert_int_equal(ctl_print_error(err.f, r), 1);
    assert_string_equal(cap_text(&err),
                        "stockctl: the scheduler answered unknown_sku: no SKU 'x' in Redis\n");
    assert_int_equal(ctl_json_status(r), 1);
    cap_free(&err);
    cJSON_Delete(r);
}

/* Prints reply with print and checks the exit status and the text on out. */
static void expect_print(int (*print)(FILE *, FILE *, const cJSON *), const char *reply, int status,
                         const char *want_out)
{
    cJSON *r = reply_of(reply);
    capture out, err;
    cap_open(&out);
    cap_open(&err);
    assert_int_equal(print(out.f, err.f, r), status);
    assert_string_equal(cap_text(&out), want_out);
    cap_free(&out);
    cap_free(&err);
    cJSON_Delete(r);
}

static void test_db_migrate(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("db", "migrate", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_DB_MIGRATE);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("--json", "db", "migrate", NULL)), 0);
    assert_int_equal(a.cmd, CTL_CMD_DB_MIGRATE);
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("db", NULL)), -1);
    assert_non_null(strstr(err, "usage: stockctl db migrate"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("db", "drop", NULL)), -1);
    assert_non_null(strstr(err, "usage: stockctl db migrate"));
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("db", "migrate", "now", NULL)), -1);
    assert_non_null(strstr(err, "unexpected argument 'now'"));

    static const struct {
        const char *reply;
        int status;
        const char *out;
    } cases[] = {
        {"{\"ok\":true,\"schema_before\":0,\"schema_after\":3,\"applied\":true}", 0,
         "schema version 3 (was 0)\n"},
        {"{\"ok\":true,\"schema_before\":3,\"schema_after\":3,\"applied\":false}", 0,
         "schema version 3 (up to date)\n"},
        {"{\"ok\":true,\"schema_after\":3}", 2, ""},
        {"{\"ok\":true,\"schema_before\":1,\"schema_after\":\"x\"}", 2, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_print(ctl_print_db_migrate, cases[i].reply, cases[i].status, cases[i].out);
    }
}

#define RC_REPLY(oversold)                                                                         \
    "{\"ok\":true,\"sku\":\"s1\",\"partition\":0,\"reconcile_id\":\"rc.4.1700000000000.1\","       \
    "\"mysql_synced_seq\":8,\"mysql_max_seq\":8,\"redis_seq_before\":7,\"redis_ack_before\":5,"    \
    "\"kept_from_mysql\":8,\"renumbered\":3,\"renumbered_first\":9,\"renumbered_last\":11,"        \
    "\"seq_after\":11,\"dropped_duplicates\":1,\"records_restored\":2,\"records_fixed\":4,"        \
    "\"grants_finished\":0,\"ded_before\":7,\"ded_after\":11,\"units_from_partition\":1,"          \
    "\"units_from_pool\":2,\"units_given_back\":0,\"oversold\":" #oversold ",\"grant_id\":17,"     \
    "\"claims_set\":3,\"claims_elsewhere\":1,\"user_entries_fixed\":0,"                            \
    "\"already_applied\":false,\"attempts\":1,\"reopened\":true}"

/* partition reconcile: strict arguments, the table of what changed, exit 1
 * when units are oversold (also with --json), 2 for a reply missing a field. */
static void test_partition_reconcile(void **state)
{
    (void)state;
    ctl_args a;
    char err[256];
    assert_int_equal(parse(&a, NULL, err, sizeof err, W("partition", "reconcile", "s1", "3", NULL)),
                     0);
    assert_int_equal(a.cmd, CTL_CMD_PARTITION_RECONCILE);
    assert_string_equal(a.sku, "s1");
    assert_int_equal(a.partition, 3);
    static const struct {
        const char *words[8];
        const char *msg;
    } bad[] = {
        {{"partition", NULL}, "usage: stockctl partition reconcile SKU P"},
        {{"partition", "fix", "s1", "0", NULL}, "usage: stockctl partition reconcile SKU P"},
        {{"partition", "reconcile", "s1", NULL}, "usage: stockctl partition reconcile SKU P"},
        {{"partition", "reconcile", "s1", "0", "1", NULL}, "unexpected argument '1'"},
        {{"partition", "reconcile", "s1", "256", NULL}, "P: 256 is outside 0..255"},
        {{"partition", "reconcile", "s1", "x", NULL}, "P: 'x' is not a whole decimal number"},
        {{"partition", "reconcile", "s:1", "0", NULL}, "bad SKU id 's:1'"},
        {{"partition", "reconcile", "s1", "0", "--id", "x", NULL}, "unknown option '--id'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(&a, NULL, err, sizeof err, bad[i].words), -1);
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("case %zu: '%s' not in '%s'", i, bad[i].msg, err);
        }
    }
    expect_print(ctl_print_reconcile, RC_REPLY(0), 0,
                 "partition 0 of s1 reconciled (rc.4.1700000000000.1)\n"
                 "  MySQL             synced_seq 8, max seq 8\n"
                 "  kept              8 details, with their seqs\n"
                 "  Redis before      seq 7, ack 5\n"
                 "  renumbered        3 only Redis answered, now seqs 9..11\n"
                 "  duplicates        1 (Redis deducted them again; kept once, MySQL's)\n"
                 "  order records     2 restored from MySQL, 4 rewritten\n"
                 "  deducted          7 -> 11 (seq 11)\n"
                 "  units taken       1 from the partition, 2 from the pool (grant 17)\n"
                 "  units given back  0\n"
                 "  oversold          0\n"
                 "  claims            3 set, 1 naming another partition\n"
                 "  user entries      0 fixed\n"
                 "  state             open\n");
    cJSON *r = reply_of(RC_REPLY(2));
    capture out, errc;
    cap_open(&out);
    cap_open(&errc);
    assert_int_equal(ctl_print_reconcile(out.f, errc.f, r), 1);
    assert_non_null(strstr(cap_text(&out), "  oversold          2\n"));
    assert_non_null(strstr(cap_text(&errc), "stockctl: 2 units oversold on s1"));
    cap_free(&out);
    cap_free(&errc);
    assert_int_equal(ctl_json_status(r), 1);
    cJSON_Delete(r);
    r = reply_of(RC_REPLY(0));
    assert_int_equal(ctl_json_status(r), 0);
    cJSON_Delete(r);
    /* MySQL moved during the run (a batch in flight landed): it wants another. */
    char moved[2048];
    snprintf(moved, sizeof moved, "%.*s,\"mysql_moved\":true,\"mysql_synced_after\":9}",
             (int)strlen(RC_REPLY(0)) - 1, RC_REPLY(0));
    r = reply_of(moved);
    cap_open(&out);
    cap_open(&errc);
    assert_int_equal(ctl_print_reconcile(out.f, errc.f, r), 1);
    assert_non_null(strstr(cap_text(&errc), "moved from 8 to 9"));
    cap_free(&out);
    cap_free(&errc);
    assert_int_equal(ctl_json_status(r), 1);
    cJSON_Delete(r);
    expect_print(ctl_print_reconcile, "{\"ok\":true,\"sku\":\"s1\",\"partition\":0}", 2, "");
}

static void test_load_restock_print(void **state)
{
    (void)state;
    struct {
        const char *reply, *out, *err;
        int status;
    } cases[] = {
        {"{\"ok\":true,\"created\":true,\"row_created\":true,\"sku\":\"a\",\"total\":100,"
         "\"partitions\":4}",
         "sku a loaded, catalog row created: total 100, 4 partitions\n", "", 0},
        {"{\"ok\":true,\"created\":true,\"row_created\":false,\"total\":7,\"partitions\":1}",
         "sku a loaded from its catalog row: total 7, 1 partition\n", "", 0},
        {"{\"ok\":true,\"created\":false,\"row_created\":false,\"total\":100,\"partitions\":4,"
         "\"note\":\"the catalog row already existed and was kept: total 100 (asked 200)\"}",
         "sku a already loaded (nothing changed): total 100, 4 partitions\n",
         "stockctl: note: the catalog row already existed and was kept: total 100 (asked 200)\n",
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *r = reply_of(cases[i].reply);
        capture out, err;
        cap_open(&out);
        cap_open(&err);
        assert_int_equal(ctl_print_sku_load(out.f, err.f, "a", r), cases[i].status);
        assert_string_equal(cap_text(&out), cases[i].out);
        assert_string_equal(cap_text(&err), cases[i].err);
        cap_free(&out);
        cap_free(&err);
        cJSON_Delete(r);
    }

    struct {
        const char *reply, *out;
        int status;
    } rcases[] = {
        {"{\"ok\":true,\"sku\":\"a\",\"restock_id\":\"r1\",\"units\":50,\"applied\":true}",
         "restock r1: 50 units added\n", 0},
        {"{\"ok\":true,\"sku\":\"a\",\"restock_id\":\"r1\",\"units\":50,\"applied\":false}",
         "restock r1 already applied (nothing changed)\n", 0},
        {"{\"ok\":true,\"restock_id\":\"r1\",\"units\":50}", "", 2},
        {"{\"ok\":true,\"applied\":true,\"units\":50}", "", 2},
    };
    for (size_t i = 0; i < sizeof rcases / sizeof rcases[0]; i++) {
        expect_print(ctl_print_sku_restock, rcases[i].reply, rcases[i].status, rcases[i].out);
    }
}

/* ---- the socket exchange --------------------------------------------------- */

/* Listens on a fresh path under /tmp; returns the fd and fills path. */
static int listen_tmp(char *path, size_t len)
{
    snprintf(path, len, "/tmp/test_stockctl.%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* Forks a server that accepts one client, reads one line, then answers with
 * reply (NULL: hangs up without a word). Returns its pid. */
static pid_t serve_once(int lfd, const char *reply)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        int c = accept(lfd, NULL, NULL);
        char buf[256];
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = read(c, buf + got, sizeof buf - got);
            if (n <= 0 || memchr(buf + got, '\n', (size_t)n) != NULL) {
                break;
            }
            got += (size_t)n;
        }
        if (reply != NULL) {
            size_t n = strlen(reply);
            for (size_t off = 0; off < n;) {
                ssize_t w = write(c, reply + off, n - off);
                if (w <= 0) {
                    break;
                }
                off += (size_t)w;
            }
        }
        close(c);
        _exit(0);
    }
    return pid;
}

static void test_sock_errors(void **state)
{
    (void)state;
    char err[512], *reply = (char *)"untouched";
    size_t len = 99;
    assert_int_equal(ctl_sock_call("/tmp/test_stockctl.nonexistent.sock", "{}", 1000, &reply, &len,
                                   err, sizeof err),
                     SH_EIO);
    assert_null(reply);
    assert_non_null(strstr(err, "/tmp/test_stockctl.nonexistent.sock"));
    assert_non_null(strstr(err, "is stock-scheduler running?"));

    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(ctl_sock_call(longpath, "{}", 1000, &reply, &len, err, sizeof err), SH_EINVAL);

    /* A listener that never accepts: connect succeeds (backlog), the reply
     * never comes, and the call returns at the deadline. */
    char path[108];
    int lfd = listen_tmp(path, sizeof path);
    uint64_t t0 = sh_clock_mono_ms();
    assert_int_equal(ctl_sock_call(path, "{}", 200, &reply, &len, err, sizeof err), SH_ETIMEDOUT);
    uint64_t took = sh_clock_mono_ms() - t0;
    assert_true(took >= 190 && took < 2000);
    assert_non_null(strstr(err, "no reply within the timeout"));

    /* A peer that hangs up, then one that sends half a line. A new listener,
     * so the abandoned connection above is not the one accepted. */
    close(lfd);
    lfd = listen_tmp(path, sizeof path);
    pid_t pid = serve_once(lfd, NULL);
    assert_int_equal(ctl_sock_call(path, "{}", 3000, &reply, &len, err, sizeof err), SH_EIO);
    assert_non_null(strstr(err, "without replying"));
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    pid = serve_once(lfd, "{\"ok\":tr");
    assert_int_equal(ctl_sock_call(path, "{}", 3000, &reply, &len, err, sizeof err), SH_EIO);
    assert_non_null(strstr(err, "in the middle of its reply"));
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    close(lfd);
    unlink(path);
}

static void test_sock_reply(void **state)
{
    (void)state;
    char path[108], err[512], *reply = NULL;
    size_t len = 0;
    int lfd = listen_tmp(path, sizeof path);
    pid_t pid = serve_once(lfd, "{\"ok\":true,\"n\":1}\nextra");
    assert_int_equal(
        ctl_sock_call(path, "{\"cmd\":\"stats\"}", 3000, &reply, &len, err, sizeof err), SH_OK);
    assert_string_equal(reply, "{\"ok\":true,\"n\":1}");
    assert_int_equal(len, strlen("{\"ok\":true,\"n\":1}"));
    free(reply);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    close(lfd);
    unlink(path);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_args_socket_choice),
        cmocka_unit_test(test_args_help_and_errors),
        cmocka_unit_test(test_args_sku_load),
        cmocka_unit_test(test_args_sku_restock),
        cmocka_unit_test(test_request_build),
        cmocka_unit_test(test_quote_ints),
        cmocka_unit_test(test_reply_parse_exact),
        cmocka_unit_test(test_format_start),
        cmocka_unit_test(test_registry_table),
        cmocka_unit_test(test_registry_malformed),
        cmocka_unit_test(test_audit_table_ok),
        cmocka_unit_test(test_audit_broken),
        cmocka_unit_test(test_audit_mysql),
        cmocka_unit_test(test_load_restock_print),
        cmocka_unit_test(test_stats_load_error),
        cmocka_unit_test(test_db_migrate),
        cmocka_unit_test(test_partition_reconcile),
        cmocka_unit_test(test_sock_errors),
        cmocka_unit_test(test_sock_reply),
    };
    return T_CMOCKA_MAIN(argc, argv, "stockctl", tests, NULL, NULL);
}
