/* lg_stats.h -- answers of a load run: classification, counters, the report.
 *
 * Pure logic (cJSON and sh_hist only), so the unit tests include lg_stats.c.
 * An answer is classified from (HTTP status, body) alone; status 0 means the
 * request got no HTTP answer at all (refused, reset, timed out): a transport
 * error. Latencies are recorded in microseconds into sh_hist. */
#ifndef LG_STATS_H
#define LG_STATS_H

#include "lg_opts.h"
#include "sh_hist.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Answers to POST /v1/deduct. Keep LG_ANS_NAMES in lg_stats.c in this order. */
typedef enum lg_answer {
    LG_ANS_OK = 0,          /* 200, duplicate:false: a new deduction */
    LG_ANS_DUPLICATE,       /* 200, duplicate:true: the order's first outcome */
    LG_ANS_SOLD_OUT,        /* 409 sold_out */
    LG_ANS_ORDER_CONFLICT,  /* 409 order_conflict */
    LG_ANS_USER_LIMIT,      /* 409 user_limit */
    LG_ANS_NOT_STARTED,     /* 425 */
    LG_ANS_RATE_LIMITED,    /* 429 */
    LG_ANS_INVALID_REQUEST, /* 400 */
    LG_ANS_UNKNOWN_SKU,     /* 404 */
    LG_ANS_UNAVAILABLE,     /* 503 */
    LG_ANS_OTHER_HTTP,      /* any other status, or a 200/409 whose body is not as specified */
    LG_ANS_TRANSPORT,       /* no HTTP answer */
    LG_ANS_COUNT_
} lg_answer;

/* Answers to POST /v1/release. */
typedef enum lg_rel_answer {
    LG_REL_OK = 0,    /* 200, duplicate:false */
    LG_REL_DUPLICATE, /* 200, duplicate:true */
    LG_REL_UNKNOWN,   /* 404 unknown_order */
    LG_REL_OTHER,     /* any other HTTP answer */
    LG_REL_TRANSPORT, /* no HTTP answer */
    LG_REL_COUNT_
} lg_rel_answer;

#define LG_HTTP_STATUS_MAX 600 /* other_http is counted per status below this */

typedef struct lg_reply {
    int status;    /* HTTP status, 0 = transport error */
    int answer;    /* lg_answer or lg_rel_answer */
    int has_place; /* partition and seq were present */
    int64_t partition;
    int64_t seq;
    int duplicate;  /* 200 with duplicate:true */
    char error[32]; /* the body's "error" code, "" when none */
} lg_reply;

/* One SKU of the run (the index into opts->skus): what --verify compares and
 * what a report per product needs. Units of an answer whose outcome is unknown
 * (no HTTP answer, 503, another status, unfinished at --timeout) are counted
 * apart: the server may or may not have applied them. */
typedef struct lg_sku_stats {
    uint64_t ok;                /* new oks */
    uint64_t sold_out;          /* 409 sold_out answers */
    uint64_t units_ok;          /* sum of qty of new oks */
    uint64_t units_released;    /* sum of qty of releases answered ok */
    uint64_t units_unknown;     /* deducts of unknown outcome */
    uint64_t units_rel_unknown; /* releases of unknown outcome */
    uint32_t sold_out_min_qty;  /* smallest qty answered sold_out; 0: none */
    /* Sold-out answers received after the SKU's last new ok (completion order):
     * the refusals the sale's end state must explain (no stranded stock). */
    uint64_t late_sold_out;
    uint32_t late_sold_out_min_qty; /* 0: none */
} lg_sku_stats;

typedef struct lg_stats {
    uint64_t sent; /* deduct requests sent (every copy) */
    uint64_t answers[LG_ANS_COUNT_];
    uint64_t other_status[LG_HTTP_STATUS_MAX]; /* LG_ANS_OTHER_HTTP by status */
    uint64_t rel_sent;
    uint64_t rel_answers[LG_REL_COUNT_];
    uint64_t rel_skipped; /* releases wanted but not sent (run ended, queue full) */
    uint64_t unfinished;  /* requests still in flight when --timeout fired */
    uint64_t backlog;     /* open loop: orders due but never sent when the run stopped */
    uint64_t units_ok;    /* sum of qty of new oks */
    uint64_t units_released;
    uint64_t elapsed_us; /* from the first send to the last answer */
    sh_hist lat_us;      /* deduct latency, us */
    sh_hist rel_lat_us;  /* release latency, us */
    size_t nskus;        /* SKUs of the run */
    lg_sku_stats sku[LG_SKUS_MAX];
} lg_stats;

/* Name of an answer class as used in the report, the JSON and --orders-out. */
const char *lg_answer_name(lg_answer a);
const char *lg_rel_answer_name(lg_rel_answer a);

/* Classifies a deduct answer. body need not be NUL-terminated; it may be NULL
 * when len is 0. Always fills *out. Returns out->answer. */
lg_answer lg_classify_deduct(int status, const char *body, size_t len, lg_reply *out);
lg_rel_answer lg_classify_release(int status, const char *body, size_t len, lg_reply *out);

/* Whether a deduct answer leaves the outcome unknown (the server may or may
 * not have deducted): transport, unavailable, other_http. */
int lg_answer_outcome_unknown(lg_answer a);

/* nskus: the SKUs of the run, 1..LG_SKUS_MAX. */
void lg_stats_init(lg_stats *s, size_t nskus);

/* Counts one deduct answer of qty units of SKU sku_idx with latency lat_us. */
void lg_stats_add_deduct(lg_stats *s, const lg_reply *r, uint32_t sku_idx, uint32_t qty,
                         uint64_t lat_us);
void lg_stats_add_release(lg_stats *s, const lg_reply *r, uint32_t sku_idx, uint32_t qty,
                          uint64_t lat_us);

/* A request still in flight when the run was cut off (--timeout): its outcome
 * is unknown. release: 1 for a release, 0 for a deduct. */
void lg_stats_add_unfinished(lg_stats *s, int release, uint32_t sku_idx, uint32_t qty);

/* Deduct answers that are not successes: everything but ok and duplicate. */
uint64_t lg_stats_errors(const lg_stats *s);

/* Transport errors (and unfinished requests) as a fraction of requests sent. */
double lg_stats_transport_ratio(const lg_stats *s);

/* The final report, human readable; o names the SKUs. */
void lg_stats_print(FILE *f, const lg_stats *s, const lg_opts *o);

/* The same numbers as one JSON object followed by a newline; o names the SKUs.
 * extra, when not NULL, is written just before the closing brace: further
 * members, each preceded by a comma (e.g. ",\"verify\":{...}"). Returns 0 or -1. */
int lg_stats_write_json(FILE *f, const lg_stats *s, const lg_opts *o, const char *extra);

/* One --orders-out line: "order sku qty http_status result partition seq duplicate".
 * partition, seq and duplicate are "-" when the answer has none. */
void lg_orders_line(FILE *f, const char *order_id, const char *sku, uint32_t qty,
                    const lg_reply *r);

#endif
