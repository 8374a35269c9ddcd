/* lg_opts.c -- stock-loadgen's command line: parse, validate, default.
 *
 * Hand-rolled rather than getopt_long: getopt keeps global state (optind),
 * and the unit tests parse many command lines in one process. Both
 * "--opt value" and "--opt=value" are accepted. Numbers are parsed strictly
 * (the whole string, within bounds) so a typo is a usage error, not a
 * surprising run. */
#include "lg_opts.h"

#include "sh_id.h"
#include "sh_log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Base-36 digits of v into buf (NUL-terminated); returns the length. */
static size_t base36(uint64_t v, char *buf, size_t buflen)
{
    SH_ASSERT(buflen >= 14);
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v != 0 && n < sizeof tmp);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
    return n;
}

void lg_opts_defaults(lg_opts *o, uint64_t wall_ms, long pid)
{
    SH_ASSERT(o != NULL);
    memset(o, 0, sizeof *o);
    o->connections = 16;
    o->request_timeout_s = 10;
    o->qty_min = 1;
    o->qty_max = 1;
    o->users = 1000000;
    o->dup_concurrent = 1;
    o->error_backoff_ms = 100;
    o->drain_timeout_s = LG_DRAIN_TIMEOUT_S_DEFAULT;
    /* splitmix-style scramble of time and pid: distinct runs, distinct seeds */
    uint64_t s = wall_ms * 0x9E3779B97F4A7C15ull ^ (uint64_t)pid * 0xBF58476D1CE4E5B9ull;
    o->seed = s ^ (s >> 31);
    /* "lg" + base36(ms) + "p" + base36(pid): at most 2 + 9 + 1 + 13 < 40 chars */
    char t[16], p[16];
    base36(wall_ms, t, sizeof t);
    base36((uint64_t)(pid < 0 ? -pid : pid), p, sizeof p);
    snprintf(o->order_prefix, sizeof o->order_prefix, "lg%sp%s", t, p);
    SH_ASSERT(strlen(o->order_prefix) <= LG_PREFIX_CHARS_MAX);
}

/* Whole-string unsigned integer in [lo, hi]. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* Whole-string finite double in [lo, hi]. */
static int parse_double(const char *s, double lo, double hi, double *out)
{
    if (s == NULL || *s == '\0') {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

int lg_parse_url(const char *url, char *host, size_t hostlen, uint16_t *port)
{
    SH_ASSERT(host != NULL && port != NULL && hostlen > 0);
    static const char scheme[] = "http://";
    if (url == NULL || strncmp(url, scheme, sizeof scheme - 1) != 0) {
        return -1;
    }
    const char *h = url + sizeof scheme - 1;
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h || (size_t)(colon - h) >= hostlen ||
        (size_t)(colon - h) > LG_HOST_CHARS_MAX) {
        return -1;
    }
    for (const char *c = h; c < colon; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '.' || *c == '-';
        if (!ok) {
            return -1;
        }
    }
    char portbuf[8];
    const char *p = colon + 1;
    size_t plen = strcspn(p, "/");
    if (plen == 0 || plen >= sizeof portbuf || (p[plen] == '/' && p[plen + 1] != '\0')) {
        return -1; /* a path other than "/" is not ours to choose */
    }
    memcpy(portbuf, p, plen);
    portbuf[plen] = '\0';
    uint64_t v;
    if (parse_u64(portbuf, 1, 65535, &v) != 0) {
        return -1;
    }
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int lg_parse_qty(const char *s, uint32_t *lo, uint32_t *hi)
{
    SH_ASSERT(lo != NULL && hi != NULL);
    if (s == NULL) {
        return -1;
    }
    char buf[32];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof buf) {
        return -1;
    }
    memcpy(buf, s, len + 1);
    char *dash = strchr(buf, '-');
    uint64_t a, b;
    if (dash == NULL) {
        if (parse_u64(buf, 1, SH_QTY_UNITS_MAX, &a) != 0) {
            return -1;
        }
        b = a;
    } else {
        *dash = '\0';
        if (parse_u64(buf, 1, SH_QTY_UNITS_MAX, &a) != 0 ||
            parse_u64(dash + 1, 1, SH_QTY_UNITS_MAX, &b) != 0 || a > b) {
            return -1;
        }
    }
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return 0;
}

int lg_parse_skus(const char *s, char out[][SH_SKU_ID_CHARS_MAX + 1], size_t max)
{
    SH_ASSERT(out != NULL && max > 0);
    if (s == NULL || *s == '\0') {
        return -1;
    }
    size_t n = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (n >= max || sh_id_check_sku(p, len) != SH_OK) {
            return -1;
        }
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        n++;
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    return (int)n;
}

int lg_parse_units_list(const char *s, int64_t *out, size_t max)
{
    SH_ASSERT(out != NULL && max > 0);
    if (s == NULL || *s == '\0') {
        return -1;
    }
    size_t n = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        char buf[24];
        uint64_t v;
        if (n >= max || len == 0 || len >= sizeof buf) {
            return -1;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (parse_u64(buf, 0, (uint64_t)SH_SKU_TOTAL_UNITS_MAX, &v) != 0) {
            return -1;
        }
        out[n++] = (int64_t)v;
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    return (int)n;
}

/* Option table: one place that knows each option's name and whether it takes
 * a value, so "--x value" and "--x=value" are handled the same way. */
typedef enum opt_id {
    OPT_URL,
    OPT_CONNECTIONS,
    OPT_REQUESTS,
    OPT_DURATION,
    OPT_RATE,
    OPT_SKUS,
    OPT_QTY,
    OPT_USERS,
    OPT_ORDER_PREFIX,
    OPT_DUP_RATIO,
    OPT_DUP_CONCURRENT,
    OPT_RELEASE_RATIO,
    OPT_SEED,
    OPT_JSON,
    OPT_ORDERS_OUT,
    OPT_QUIET,
    OPT_TIMEOUT,
    OPT_REQUEST_TIMEOUT,
    OPT_ERROR_BACKOFF,
    OPT_VERIFY,
    OPT_VERIFY_ONLY,
    OPT_ADMIN_SOCKET,
    OPT_DRAIN_TIMEOUT,
    OPT_EXPECT_UNITS,
    OPT_HELP,
} opt_id;

static const struct {
    const char *name;
    opt_id id;
    int has_value;
} opt_table[] = {
    {"--url", OPT_URL, 1},
    {"--connections", OPT_CONNECTIONS, 1},
    {"--requests", OPT_REQUESTS, 1},
    {"--duration", OPT_DURATION, 1},
    {"--rate", OPT_RATE, 1},
    {"--skus", OPT_SKUS, 1},
    {"--qty", OPT_QTY, 1},
    {"--users", OPT_USERS, 1},
    {"--order-prefix", OPT_ORDER_PREFIX, 1},
    {"--dup-ratio", OPT_DUP_RATIO, 1},
    {"--dup-concurrent", OPT_DUP_CONCURRENT, 1},
    {"--release-ratio", OPT_RELEASE_RATIO, 1},
    {"--seed", OPT_SEED, 1},
    {"--json", OPT_JSON, 1},
    {"--orders-out", OPT_ORDERS_OUT, 1},
    {"--quiet", OPT_QUIET, 0},
    {"--timeout", OPT_TIMEOUT, 1},
    {"--request-timeout", OPT_REQUEST_TIMEOUT, 1},
    {"--error-backoff-ms", OPT_ERROR_BACKOFF, 1},
    {"--verify", OPT_VERIFY, 0},
    {"--verify-only", OPT_VERIFY_ONLY, 0},
    {"--admin-socket", OPT_ADMIN_SOCKET, 1},
    {"--drain-timeout", OPT_DRAIN_TIMEOUT, 1},
    {"--expect-units", OPT_EXPECT_UNITS, 1},
    {"--help", OPT_HELP, 0},
    {"-h", OPT_HELP, 0},
};

static int copy_path(char *dst, size_t dstlen, const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || len >= dstlen) {
        return -1;
    }
    memcpy(dst, v, len + 1);
    return 0;
}

/* Applies one option; returns 0, or -1 with err set. */
static int apply(lg_opts *o, opt_id id, const char *name, const char *v, char *err, size_t errlen)
{
    uint64_t u;
    double d;
    int n;
    switch (id) {
    case OPT_URL:
        if (lg_parse_url(v, o->host, sizeof o->host, &o->port) != 0 || strlen(v) >= sizeof o->url) {
            set_err(err, errlen, "%s: want http://HOST:PORT, got '%s'", name, v);
            return -1;
        }
        memcpy(o->url, v, strlen(v) + 1);
        return 0;
    case OPT_CONNECTIONS:
        if (parse_u64(v, 1, LG_CONNECTIONS_MAX, &u) != 0) {
            set_err(err, errlen, "%s: want an integer in 1..%d, got '%s'", name, LG_CONNECTIONS_MAX,
                    v);
            return -1;
        }
        o->connections = (uint32_t)u;
        return 0;
    case OPT_REQUESTS:
        if (parse_u64(v, 1, LG_REQUESTS_MAX, &u) != 0) {
            set_err(err, errlen, "%s: want an integer in 1..%llu, got '%s'", name,
                    (unsigned long long)LG_REQUESTS_MAX, v);
            return -1;
        }
        o->requests = u;
        return 0;
    case OPT_DURATION:
        if (parse_double(v, 0.001, LG_DURATION_S_MAX, &d) != 0) {
            set_err(err, errlen, "%s: want seconds in 0.001..%.0f, got '%s'", name,
                    LG_DURATION_S_MAX, v);
            return -1;
        }
        o->duration_s = d;
        return 0;
    case OPT_RATE:
        if (parse_double(v, 0.001, LG_RATE_PER_S_MAX, &d) != 0) {
            set_err(err, errlen, "%s: want requests per second in 0.001..%.0f, got '%s'", name,
                    LG_RATE_PER_S_MAX, v);
            return -1;
        }
        o->rate_per_s = d;
        return 0;
    case OPT_SKUS:
        n = lg_parse_skus(v, o->skus, LG_SKUS_MAX);
        if (n <= 0) {
            set_err(err, errlen,
                    "%s: want 1..%d comma-separated SKU ids of [A-Za-z0-9_.-], got '%s'", name,
                    LG_SKUS_MAX, v);
            return -1;
        }
        o->nskus = (size_t)n;
        return 0;
    case OPT_QTY:
        if (lg_parse_qty(v, &o->qty_min, &o->qty_max) != 0) {
            set_err(err, errlen, "%s: want N or LO-HI within 1..%d, got '%s'", name,
                    SH_QTY_UNITS_MAX, v);
            return -1;
        }
        return 0;
    case OPT_USERS:
        if (parse_u64(v, 1, 1000000000000ull, &u) != 0) {
            set_err(err, errlen, "%s: want an integer in 1..1e12, got '%s'", name, v);
            return -1;
        }
        o->users = u;
        return 0;
    case OPT_ORDER_PREFIX:
        if (strlen(v) > LG_PREFIX_CHARS_MAX || sh_id_check_order(v, strlen(v)) != SH_OK) {
            set_err(err, errlen, "%s: want 1..%d chars of [A-Za-z0-9_.:-], got '%s'", name,
                    LG_PREFIX_CHARS_MAX, v);
            return -1;
        }
        memcpy(o->order_prefix, v, strlen(v) + 1);
        return 0;
    case OPT_DUP_RATIO:
    case OPT_RELEASE_RATIO:
        if (parse_double(v, 0.0, 1.0, &d) != 0) {
            set_err(err, errlen, "%s: want a fraction in 0..1, got '%s'", name, v);
            return -1;
        }
        if (id == OPT_DUP_RATIO) {
            o->dup_ratio = d;
        } else {
            o->release_ratio = d;
        }
        return 0;
    case OPT_DUP_CONCURRENT:
        if (parse_u64(v, 1, LG_DUP_CONCURRENT_MAX, &u) != 0) {
            set_err(err, errlen, "%s: want an integer in 1..%d, got '%s'", name,
                    LG_DUP_CONCURRENT_MAX, v);
            return -1;
        }
        o->dup_concurrent = (uint32_t)u;
        return 0;
    case OPT_SEED:
        if (parse_u64(v, 0, UINT64_MAX, &u) != 0) {
            set_err(err, errlen, "%s: want an unsigned integer, got '%s'", name, v);
            return -1;
        }
        o->seed = u;
        return 0;
    case OPT_JSON:
    case OPT_ORDERS_OUT:
        if (copy_path(id == OPT_JSON ? o->json_path : o->orders_out, LG_PATH_CHARS_MAX, v) != 0) {
            set_err(err, errlen, "%s: want a file path, got '%s'", name, v);
            return -1;
        }
        return 0;
    case OPT_TIMEOUT:
        if (parse_double(v, 0.1, LG_TIMEOUT_S_MAX, &d) != 0) {
            set_err(err, errlen, "%s: want seconds in 0.1..%.0f, got '%s'", name, LG_TIMEOUT_S_MAX,
                    v);
            return -1;
        }
        o->timeout_s = d;
        return 0;
    case OPT_REQUEST_TIMEOUT:
        if (parse_u64(v, 1, LG_REQUEST_TIMEOUT_S_MAX, &u) != 0) {
            set_err(err, errlen, "%s: want whole seconds in 1..%d, got '%s'", name,
                    LG_REQUEST_TIMEOUT_S_MAX, v);
            return -1;
        }
        o->request_timeout_s = (uint32_t)u;
        return 0;
    case OPT_ERROR_BACKOFF:
        if (parse_u64(v, 0, 60000, &u) != 0) {
            set_err(err, errlen, "%s: want ms in 0..60000, got '%s'", name, v);
            return -1;
        }
        o->error_backoff_ms = (uint32_t)u;
        return 0;
    case OPT_QUIET:
        o->quiet = 1;
        return 0;
    case OPT_VERIFY:
        o->verify = 1;
        return 0;
    case OPT_VERIFY_ONLY:
        o->verify = 1;
        o->verify_only = 1;
        return 0;
    case OPT_ADMIN_SOCKET:
        if (copy_path(o->admin_socket, sizeof o->admin_socket, v) != 0) {
            set_err(err, errlen, "%s: want a Unix socket path of 1..%d chars, got '%s'", name,
                    LG_ADMIN_PATH_CHARS_MAX, v);
            return -1;
        }
        return 0;
    case OPT_DRAIN_TIMEOUT:
        if (parse_double(v, 0.0, LG_DRAIN_TIMEOUT_S_MAX, &d) != 0) {
            set_err(err, errlen, "%s: want seconds in 0..%.0f, got '%s'", name,
                    LG_DRAIN_TIMEOUT_S_MAX, v);
            return -1;
        }
        o->drain_timeout_s = d;
        return 0;
    case OPT_EXPECT_UNITS:
        n = lg_parse_units_list(v, o->expect_units, LG_SKUS_MAX);
        if (n <= 0) {
            set_err(err, errlen, "%s: want 1..%d comma-separated unit counts in 0..%lld, got '%s'",
                    name, LG_SKUS_MAX, (long long)SH_SKU_TOTAL_UNITS_MAX, v);
            return -1;
        }
        o->nexpect = (size_t)n;
        return 0;
    case OPT_HELP:
        return 0;
    }
    set_err(err, errlen, "internal: unhandled option %s", name);
    return -1;
}

/* The verification options go together: --verify and --verify-only need the
 * admin socket; --expect-units belongs to --verify-only, which sends no load. */
static int check_verify(const lg_opts *o, int drain_given, char *err, size_t errlen)
{
    if (o->verify && o->admin_socket[0] == '\0') {
        set_err(err, errlen, "%s needs --admin-socket PATH (the scheduler's admin socket)",
                o->verify_only ? "--verify-only" : "--verify");
        return -1;
    }
    if (!o->verify && o->admin_socket[0] != '\0') {
        set_err(err, errlen, "--admin-socket goes with --verify or --verify-only");
        return -1;
    }
    if (!o->verify && drain_given) {
        set_err(err, errlen, "--drain-timeout goes with --verify or --verify-only");
        return -1;
    }
    if (!o->verify_only && o->nexpect > 0) {
        set_err(err, errlen, "--expect-units goes with --verify-only (a run counts its own units)");
        return -1;
    }
    if (o->verify_only && o->nexpect == 0) {
        set_err(err, errlen, "--verify-only needs --expect-units N[,N...] (one per SKU)");
        return -1;
    }
    if (o->verify_only && (o->requests > 0 || o->duration_s > 0)) {
        set_err(err, errlen, "--verify-only sends no load: drop --requests and --duration");
        return -1;
    }
    return 0;
}

lg_parse_rc lg_opts_parse(lg_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    SH_ASSERT(o != NULL && argc >= 0);
    int timeout_given = 0, drain_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        size_t k;
        size_t nopts = sizeof opt_table / sizeof opt_table[0];
        for (k = 0; k < nopts; k++) {
            if (strlen(opt_table[k].name) == nlen && strncmp(opt_table[k].name, arg, nlen) == 0) {
                break;
            }
        }
        if (k == nopts) {
            set_err(err, errlen, "unknown option '%s'", arg);
            return LG_PARSE_ERROR;
        }
        if (opt_table[k].id == OPT_HELP) {
            return LG_PARSE_HELP;
        }
        const char *value = NULL;
        if (opt_table[k].has_value) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                set_err(err, errlen, "%s needs a value", opt_table[k].name);
                return LG_PARSE_ERROR;
            }
        } else if (eq != NULL) {
            set_err(err, errlen, "%s takes no value", opt_table[k].name);
            return LG_PARSE_ERROR;
        }
        if (apply(o, opt_table[k].id, opt_table[k].name, value, err, errlen) != 0) {
            return LG_PARSE_ERROR;
        }
        if (opt_table[k].id == OPT_TIMEOUT) {
            timeout_given = 1;
        } else if (opt_table[k].id == OPT_DRAIN_TIMEOUT) {
            drain_given = 1;
        }
    }
    /* cross-option checks */
    if (check_verify(o, drain_given, err, errlen) != 0) {
        return LG_PARSE_ERROR;
    }
    if (o->nskus == 0) {
        set_err(err, errlen, "--skus is required");
        return LG_PARSE_ERROR;
    }
    /* --verify compares per SKU: a SKU listed twice would split its units */
    for (size_t i = 0; o->verify && i < o->nskus; i++) {
        for (size_t j = i + 1; j < o->nskus; j++) {
            if (strcmp(o->skus[i], o->skus[j]) == 0) {
                set_err(err, errlen, "--verify needs distinct SKUs in --skus ('%s' twice)",
                        o->skus[i]);
                return LG_PARSE_ERROR;
            }
        }
    }
    if (o->verify_only) {
        if (o->nexpect != o->nskus) {
            set_err(err, errlen, "--expect-units has %zu value(s) for %zu SKU(s) in --skus",
                    o->nexpect, o->nskus);
            return LG_PARSE_ERROR;
        }
        return LG_PARSE_OK; /* nothing of the load is used */
    }
    if (o->url[0] == '\0') {
        set_err(err, errlen, "--url is required");
        return LG_PARSE_ERROR;
    }
    if (o->requests == 0 && o->duration_s == 0) {
        set_err(err, errlen, "one of --requests or --duration is required");
        return LG_PARSE_ERROR;
    }
    if (o->dup_concurrent > o->connections) {
        set_err(err, errlen, "--dup-concurrent %u needs at least as many --connections (have %u)",
                o->dup_concurrent, o->connections);
        return LG_PARSE_ERROR;
    }
    if (!timeout_given) {
        o->timeout_s =
            o->duration_s > 0 ? o->duration_s + LG_TIMEOUT_S_SLACK : LG_TIMEOUT_S_DEFAULT;
    }
    SH_ASSERT(o->qty_min >= 1 && o->qty_min <= o->qty_max);
    SH_ASSERT(o->timeout_s > 0);
    return LG_PARSE_OK;
}

void lg_opts_usage(FILE *f)
{
    fprintf(
        f,
        "usage: stock-loadgen --url URL --skus A[,B...] (--requests N | --duration S) [options]\n"
        "       stock-loadgen --verify-only --admin-socket PATH --skus A[,B...]\n"
        "                     --expect-units N[,N...] [--drain-timeout S] [--json FILE]\n"
        "\n"
        "Sends POST /v1/deduct over keep-alive HTTP/1.1 connections and reports throughput,\n"
        "latency percentiles and the count of every kind of answer.\n"
        "\n"
        "  --url URL              scheduler address, http://HOST:PORT (required)\n"
        "  --connections C        keep-alive connections (default 16, max %d)\n"
        "  --requests N           orders to send, --dup-ratio re-sends included (each sent\n"
        "                         --dup-concurrent times); releases come on top\n"
        "  --duration SEC         stop sending after SEC seconds (with --requests: first wins)\n"
        "  --rate R               open loop: order i is due at start + i/R; latency counts from\n"
        "                         that due time (no coordinated omission). Default: closed loop,\n"
        "                         each connection sends when its previous answer arrives\n"
        "  --skus A,B,C           SKUs, round-robin over order numbers (required)\n"
        "  --qty N | LO-HI        units per order, uniform in [LO, HI] (default 1)\n"
        "  --users N              user ids u0..uN-1, chosen by seed (default 1000000)\n"
        "  --order-prefix STR     order ids are STR-<n> (default from time and pid)\n"
        "  --dup-ratio F          fraction of requests re-sending an earlier order, same qty\n"
        "  --dup-concurrent K     send every order K times at once on K connections (default 1)\n"
        "  --release-ratio F      after a new ok, release that order with probability F\n"
        "  --seed S               seed for qty, users, duplicates, releases\n"
        "  --timeout SEC          bound on the whole run (default duration+30, else 300)\n"
        "  --request-timeout SEC  one request's bound; then a transport error (default 10)\n"
        "  --error-backoff-ms MS  a connection rests after a transport error (default 100)\n"
        "  --json FILE            write the final numbers as one JSON object\n"
        "  --orders-out FILE      one line per deduct answer:\n"
        "                         order sku qty http_status result partition seq duplicate\n"
        "  --quiet                no progress lines on stderr\n"
        "\n"
        "Verification (the scheduler's admin socket: registry and audit):\n"
        "  --verify               after the run, for each SKU: wait until shipping has drained\n"
        "                         (no detail waits in Redis for MySQL), run the audit, and check\n"
        "                         that its invariants hold and that the net units this run saw\n"
        "                         answered ok (new oks minus units released) equal Redis's and\n"
        "                         MySQL's net deducted. Exact only when this run was the SKU's\n"
        "                         only client since it was loaded: anyone else's deductions\n"
        "                         count against it. Answers of unknown outcome (transport\n"
        "                         errors, 503, unfinished) widen the expected range by their\n"
        "                         units; the report says whether the comparison was exact\n"
        "  --verify-only          send no load: verify the SKUs of --skus against --expect-units\n"
        "  --expect-units N,...   --verify-only: expected net units, one per SKU of --skus\n"
        "  --admin-socket PATH    the scheduler's admin socket (required by both)\n"
        "  --drain-timeout SEC    bound on the wait for shipping to drain, all SKUs together\n"
        "                         (default %.0f)\n"
        "\n"
        "Exit: 0 run completed (and verified), 1 transport errors above 1%%, 2 usage error or\n"
        "the run could not start, 3 a verification check failed (the report names it).\n",
        LG_CONNECTIONS_MAX, LG_DRAIN_TIMEOUT_S_DEFAULT);
}
