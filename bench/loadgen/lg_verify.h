/* lg_verify.h -- --verify's judgement: what a run saw against what the server holds.
 *
 * Pure logic (cJSON only), so the unit tests include lg_verify.c; the admin
 * socket calls and the drain wait live in lg_verify_run.c. For each SKU the
 * run expects a net deducted in [lo, hi]: the units it saw answered ok (new
 * oks) minus the units it saw released, widened by the units of answers whose
 * outcome it cannot know (no answer, 503, another status, unfinished). Without
 * such answers lo == hi and the comparison is exact. The expectation is only
 * right when the run was the SKU's only client since the SKU was loaded: any
 * other client's deductions show up in the server's numbers and not in ours.
 *
 * The server's side is one `audit` reply of the admin socket (sch_admin.c):
 * Redis's net deducted, MySQL's net deducted (SUM(qty) of the detail rows),
 * the details still waiting in Redis for MySQL, and the audit's own verdict on
 * the invariants (DESIGN.md 8). */
#ifndef LG_VERIFY_H
#define LG_VERIFY_H

#include "lg_opts.h"
#include "lg_stats.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LG_VERIFY_TEXT_BYTES    256 /* one reason, one audit text */
#define LG_VERIFY_MESSAGE_BYTES 1024

/* The checks of one SKU, as bits of lg_verdict.failed. */
enum {
    LG_VCHK_ADMIN = 1u << 0,       /* the admin socket answered the audit */
    LG_VCHK_DRAINED = 1u << 1,     /* no detail waits in Redis for MySQL */
    LG_VCHK_MYSQL = 1u << 2,       /* the audit could read MySQL */
    LG_VCHK_INVARIANTS = 1u << 3,  /* the audit's invariants hold */
    LG_VCHK_UNITS_REDIS = 1u << 4, /* Redis net deducted within the expected range */
    LG_VCHK_UNITS_MYSQL = 1u << 5, /* MySQL net deducted within the expected range */
    LG_VCHK_COUNT_ = 6
};

/* The net units a SKU should hold. */
typedef struct lg_expect {
    int64_t lo, hi; /* the SKU's net deducted must lie in [lo, hi] */
    int from_run;   /* 1: counted by this run; 0: given by --expect-units */
    uint64_t units_ok, units_released, units_unknown, units_rel_unknown; /* from_run only */
} lg_expect;

/* What one audit reply says (fields absent from the reply stay 0). */
typedef struct lg_audit_facts {
    int reply_ok; /* "ok":true; else error and message say why */
    char error[64];
    char message[LG_VERIFY_TEXT_BYTES];
    int64_t total, avail, deducted, details_pending;
    int stable, mysql_verified, invariants_ok;
    int has_mysql; /* mysql_deducted and unsynced_details present */
    int64_t mysql_deducted, mysql_detail_rows, unsynced_details, unsynced_qty;
    char broken[LG_VERIFY_TEXT_BYTES];      /* the audit's first broken check */
    char mysql_error[LG_VERIFY_TEXT_BYTES]; /* why MySQL was not verified */
} lg_audit_facts;

/* The judgement of one SKU. */
typedef struct lg_verdict {
    unsigned failed;                       /* LG_VCHK_* bits */
    char message[LG_VERIFY_MESSAGE_BYTES]; /* "check: why; check: why" */
} lg_verdict;

/* One SKU's verification: the expectation, the last audit, the verdict. */
typedef struct lg_verify_sku {
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    lg_expect expect;
    int have_audit; /* audit holds a parsed reply */
    lg_audit_facts audit;
    char admin_error[LG_VERIFY_TEXT_BYTES]; /* no reply: why */
    /* From the start of the verification (right after the run's last answer)
     * to the audit that saw nothing waiting for MySQL; -1: not seen. */
    int64_t drain_ms;
    lg_verdict verdict;
} lg_verify_sku;

typedef struct lg_verify_result {
    size_t nskus;
    lg_verify_sku sku[LG_SKUS_MAX];
    double drain_timeout_s;
    int ok; /* every SKU passed every check */
} lg_verify_result;

/* The expectation from a run's counts of one SKU. */
void lg_expect_from_run(const lg_sku_stats *k, lg_expect *e);

/* The expectation "exactly n units" (--expect-units). */
void lg_expect_exact(int64_t n, lg_expect *e);

/* Whether the comparison is exact (lo == hi). */
int lg_expect_is_exact(const lg_expect *e);

/* Parses an audit reply line into out (always filled). Returns 0, or -1 when
 * the line is not a JSON object of the audit's shape (err says why). An error
 * reply ("ok":false) parses: reply_ok is 0 and error/message are set. */
int lg_audit_parse(const char *json, size_t len, lg_audit_facts *out, char *err, size_t errlen);

/* Whether the facts show nothing waiting in Redis for MySQL: MySQL read, and
 * no detail above its synced_seq. */
int lg_audit_drained(const lg_audit_facts *a);

/* From a registry reply: the sum of details_pending over sku's partitions.
 * Returns 1 (found, *pending set), 0 (sku not in the registry), -1 (not a
 * registry reply, or a partition without details_pending). */
int lg_registry_pending(const char *json, size_t len, const char *sku, int64_t *pending);

/* Judges one SKU from its expectation and, when have_audit, the audit facts;
 * admin_error says why there is no audit otherwise. */
void lg_verify_judge(const lg_expect *e, int have_audit, const lg_audit_facts *a,
                     const char *admin_error, lg_verdict *v);

/* Name of one check bit ("admin", "drained", ...). */
const char *lg_vchk_name(unsigned bit);

/* Judges every SKU of r and sets r->ok. */
void lg_verify_finish(lg_verify_result *r);

/* The human-readable verification report. */
void lg_verify_print(FILE *f, const lg_verify_result *r);

/* The members ,"verify":{...} for the --json object (no newline). Returns 0 or -1. */
int lg_verify_write_json(FILE *f, const lg_verify_result *r);

#endif
