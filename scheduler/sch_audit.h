/* sch_audit.h -- the invariant audit of one SKU (the admin command `audit`).
 *
 * Reads Redis and, through a sync worker, MySQL, and checks every invariant
 * of DESIGN.md section 8 plus the deep checks (sch_audit.c lists them). It
 * runs on the scheduler's operator thread (sch_jobs.h) with that thread's own
 * router and sync link, never on the loop thread: a large audit reads every
 * order record of the SKU. The loop thread contributes what only it knows
 * (sch_audit_input), taken when the command arrives. */
#ifndef SCH_AUDIT_H
#define SCH_AUDIT_H

#include "sch_json.h"

#include "sh_limits.h"

#include <cjson/cJSON.h>
#include <stdint.h>

struct sh_cluster;
struct sch_sync;

/* The loop thread's share of one audit. */
typedef struct sch_audit_input {
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint64_t pending_age_ms;     /* the oldest pending grant/return of the SKU, 0 = none */
    int pending_part;            /* its partition, -1 when none */
    uint64_t pending_age_ms_max; /* older pending work breaks the
                                    audit: 1..SH_AUDIT_PENDING_AGE_MS_MAX */
} sch_audit_input;

/* Runs the audit and returns its reply ({"ok":true, ...}), or NULL with *f set
 * (unknown_sku, internal). sync may be NULL (MySQL then stays unverified).
 * Blocks for the audit's duration: operator thread only. */
cJSON *sch_audit_run(struct sh_cluster *router, struct sch_sync *sync, const sch_audit_input *in,
                     sch_fail *f);

#endif
