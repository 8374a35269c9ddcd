/* sw_audit.h -- SYNC_STATE: what MySQL holds for one SKU, for the scheduler's audit.
 *
 * The scheduler's `audit` compares Redis with MySQL (DESIGN.md 8.3): for each
 * partition it needs the sync row (synced_seq, deducted, detail_rows) and what
 * the detail rows themselves add up to (COUNT(*), SUM(qty), MAX(seq), and the
 * sum of each row's CRC-32 of "SEQ|ORDER|QTY" for the identity check), and for
 * the SKU the orders with more than one deduction row. The SELECTs run in one
 * REPEATABLE READ snapshot, so a batch committed between them cannot make the
 * row and its details disagree. Read only; nothing is locked, so an audit
 * never slows the apply path down. */
#ifndef SW_AUDIT_H
#define SW_AUDIT_H

#include "sh_wire.h"
#include "sw_mysql.h"
#include "sw_stats.h"

#include <stddef.h>

/* A reply under construction: rep is the SYNC_STATE_REP head, parts[0..n) its
 * records in increasing partition order. */
typedef struct sw_audit_out {
    sh_wire_sync_state_rep rep;
    sh_wire_sync_part *parts; /* the caller's array, SH_PARTITIONS_PER_SKU_MAX records */
    size_t n;
} sw_audit_out;

/* Reads the sync state of req->sku (decoded and checked by the codec) on m into
 * out: one record per partition that has a stock_partition row or detail rows
 * (a SKU MySQL never saw gives n = 0 and SH_OK). SH_EINVAL for an invalid sku
 * id; SH_ERANGE when MySQL holds a partition id past SH_PARTITIONS_PER_SKU_MAX
 * or a count past INT64_MAX (reported, never trusted); SH_EMYSQL / SH_ECLOSED
 * when MySQL could not answer (message says why). Counted in stats->catalog_ops
 * (the worker's read requests other than batches). */
void sw_audit_run(sw_mysql *m, sw_stats *stats, const sh_wire_sync_state_req *req,
                  sw_audit_out *out);

#endif
