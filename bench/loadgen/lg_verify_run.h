/* lg_verify_run.h -- --verify's I/O: wait for shipping to drain, then audit, per SKU.
 *
 * Talks to the scheduler's admin socket only (sh_admin_client.h); the judgement is
 * lg_verify.h's. The wait is bounded by --drain-timeout over all SKUs
 * together; while details still wait in Redis it polls the cheap `registry`
 * (details_pending per partition) rather than the audit, because every admin
 * command runs on the scheduler's loop thread and an audit costs more. */
#ifndef LG_VERIFY_RUN_H
#define LG_VERIFY_RUN_H

#include "lg_opts.h"
#include "lg_stats.h"
#include "lg_verify.h"

#include <stdio.h>

#define LG_VERIFY_POLL_MS         200   /* between two looks at the drain */
#define LG_VERIFY_CALL_TIMEOUT_MS 30000 /* one admin call (an audit may take seconds) */
#define LG_VERIFY_PROGRESS_MS     2000  /* at most one "waiting" line per this */

/* Verifies the SKUs of o (o->verify set): expectations from the run's stats
 * st, or from o->expect_units when st is NULL (--verify-only). Fills r
 * completely (a SKU whose audit could not be had fails the "admin" check) and
 * judges it. Progress lines go to progress (may be NULL). Returns 0 when every
 * check of every SKU passed, -1 otherwise. */
int lg_verify_exec(const lg_opts *o, const lg_stats *st, lg_verify_result *r, FILE *progress);

#endif
