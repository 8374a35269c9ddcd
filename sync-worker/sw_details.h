/* sw_details.h -- SYNC_DETAILS: MySQL's details of one partition, a page, for reconcile.
 *
 * `stockctl partition reconcile` (scheduler/sch_reconcile.c) repairs a
 * partition whose Redis lost details MySQL holds. It needs every detail MySQL
 * holds of that partition, and MySQL's synced_seq, read consistently: each
 * page's SELECT of the details and of the stock_partition row run in one
 * REPEATABLE READ snapshot (as sw_audit.c does), so a batch committed between
 * them cannot make synced_seq and the page disagree. Read only; nothing is
 * locked, so reading never slows the apply path down. */
#ifndef SW_DETAILS_H
#define SW_DETAILS_H

#include "sh_wire.h"
#include "sw_mysql.h"
#include "sw_stats.h"

#include <stddef.h>

/* A reply under construction: rep is the SYNC_DETAILS_REP head, details[0..n)
 * its records in increasing seq order. */
typedef struct sw_details_out {
    sh_wire_sync_details_rep rep;
    sh_wire_detail *details; /* the caller's array, SH_WIRE_DETAILS_PAGE_MAX records */
    size_t n;
} sw_details_out;

/* Reads at most req->limit details of (req->sku, req->partition) with seq >
 * req->after_seq, in seq order, and the partition's synced_seq (0 without a
 * stock_partition row), on m into out. req was decoded and checked by the
 * codec. SH_EINVAL for an invalid sku id; SH_ERANGE for a row that breaks the
 * detail bounds (qty 0 or past SH_QTY_UNITS_MAX, a sub-domain past 1, an id
 * MySQL holds that the system would refuse), reported by seq, never sent on;
 * SH_EMYSQL / SH_ECLOSED when MySQL could not answer (message says why).
 * Counted in stats->catalog_ops (the worker's reads other than batches). */
void sw_details_run(sw_mysql *m, sw_stats *stats, const sh_wire_sync_details_req *req,
                    sw_details_out *out);

#endif
