/* lg_opts.h -- the command line of stock-loadgen, parsed and validated.
 *
 * Pure logic (no libevent, no I/O beyond the usage text), so the unit tests
 * include lg_opts.c directly. Every option is bounded here: a run is limited by
 * --requests or --duration and always by --timeout, so the process exits. */
#ifndef LG_OPTS_H
#define LG_OPTS_H

#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LG_SKUS_MAX              64      /* SKUs one run spreads over */
#define LG_CONNECTIONS_MAX       4096    /* keep-alive connections */
#define LG_DUP_CONCURRENT_MAX    16      /* copies of one order sent at once */
#define LG_HOST_CHARS_MAX        255     /* host part of --url */
#define LG_PREFIX_CHARS_MAX      40      /* order prefix; "PREFIX-<n>" stays <= 64 chars */
#define LG_PATH_CHARS_MAX        4096    /* --json / --orders-out */
#define LG_DURATION_S_MAX        86400.0 /* one day */
#define LG_TIMEOUT_S_MAX         90000.0
#define LG_REQUEST_TIMEOUT_S_MAX 600
#define LG_RATE_PER_S_MAX        10000000.0
#define LG_REQUESTS_MAX          1000000000000ull /* 1e12: n fits in the order id */
#define LG_TIMEOUT_S_DEFAULT     300.0            /* without --duration */
#define LG_TIMEOUT_S_SLACK       30.0             /* with --duration: duration + this */

/* --verify, --verify-only */
#define LG_ADMIN_PATH_CHARS_MAX    107  /* sun_path is 108 bytes with its NUL */
#define LG_DRAIN_TIMEOUT_S_DEFAULT 30.0 /* wait this long for MySQL to hold every detail */
#define LG_DRAIN_TIMEOUT_S_MAX     3600.0

_Static_assert(LG_PREFIX_CHARS_MAX + 1 + 13 <= SH_ORDER_ID_CHARS_MAX,
               "PREFIX-<n> with n < 1e13 fits an order id");

/* Parse results. */
typedef enum lg_parse_rc {
    LG_PARSE_OK = 0,
    LG_PARSE_HELP = 1,   /* -h/--help: print usage, exit 0 */
    LG_PARSE_ERROR = -1, /* usage error: message in err, exit 2 */
} lg_parse_rc;

typedef struct lg_opts {
    /* target */
    char url[LG_HOST_CHARS_MAX + 32];
    char host[LG_HOST_CHARS_MAX + 1];
    uint16_t port;
    uint32_t connections;
    /* bounds: requests == 0 means "not given"; duration_s == 0 means "not given" */
    uint64_t requests; /* logical orders sent (each sent dup_concurrent times) */
    double duration_s;
    double timeout_s; /* global bound on the whole run */
    uint32_t request_timeout_s;
    /* load shape */
    double rate_per_s; /* 0: closed loop */
    char skus[LG_SKUS_MAX][SH_SKU_ID_CHARS_MAX + 1];
    size_t nskus;
    uint32_t qty_min, qty_max;
    uint64_t users;
    char order_prefix[LG_PREFIX_CHARS_MAX + 1];
    double dup_ratio;
    uint32_t dup_concurrent;
    double release_ratio;
    uint64_t seed;
    uint32_t error_backoff_ms; /* a connection rests this long after a transport error */
    /* output */
    char json_path[LG_PATH_CHARS_MAX];
    char orders_out[LG_PATH_CHARS_MAX];
    int quiet;
    /* verification: after the run (--verify) or instead of it (--verify-only) */
    int verify;      /* drain, audit and compare; set by --verify-only too */
    int verify_only; /* no load: the SKUs of --skus against --expect-units */
    char admin_socket[LG_ADMIN_PATH_CHARS_MAX + 1];
    double drain_timeout_s;
    int64_t expect_units[LG_SKUS_MAX]; /* --verify-only: net units per SKU, in --skus order */
    size_t nexpect;
} lg_opts;

/* Fills o with the defaults. seed and the order prefix derive from wall_ms and
 * pid, so two runs never share order ids unless --order-prefix says so. */
void lg_opts_defaults(lg_opts *o, uint64_t wall_ms, long pid);

/* Parses argv[1..argc) into o (which must hold the defaults). On LG_PARSE_ERROR
 * err holds one line naming the option. Does not print. */
lg_parse_rc lg_opts_parse(lg_opts *o, int argc, char **argv, char *err, size_t errlen);

/* "http://HOST:PORT" with an optional trailing "/"; HOST is an IPv4 address or
 * a name of [A-Za-z0-9.-]. Returns 0 or -1. */
int lg_parse_url(const char *url, char *host, size_t hostlen, uint16_t *port);

/* "N" or "LO-HI" with 1 <= LO <= HI <= SH_QTY_UNITS_MAX. Returns 0 or -1. */
int lg_parse_qty(const char *s, uint32_t *lo, uint32_t *hi);

/* "A,B,C": each a valid SKU id, at most LG_SKUS_MAX. Returns the count or -1. */
int lg_parse_skus(const char *s, char out[][SH_SKU_ID_CHARS_MAX + 1], size_t max);

/* "N[,N...]": each an integer in 0..SH_SKU_TOTAL_UNITS_MAX, at most max of
 * them. Returns the count or -1. */
int lg_parse_units_list(const char *s, int64_t *out, size_t max);

void lg_opts_usage(FILE *f);

#endif
