/* sw_apply.h -- the batch transaction: detail batches into MySQL exactly once.
 *
 * A batch is a contiguous seq range of one partition (sh_wire.h). Applying it
 * locks the partition's stock_partition row, skips what is at or below its
 * synced_seq (a batch re-sent by NNG or by the node), refuses a gap, inserts
 * the rest and advances synced_seq and the counters, all in one transaction:
 * the row lock is what serialises several workers on one partition, and the
 * commit is what makes "inserted" and "synced_seq advanced" one fact.
 *
 * Several batches of different partitions may share one transaction (fewer
 * commits, so fewer log flushes); each still gets its own outcome. */
#ifndef SW_APPLY_H
#define SW_APPLY_H

#include "sh_err.h"
#include "sh_limits.h"
#include "sh_wire.h"
#include "sw_mysql.h"
#include "sw_stats.h"

#include <stddef.h>
#include <stdint.h>

#define SW_APPLY_GROUP_MAX       64   /* batches in one transaction (apply.group_batches_max) */
#define SW_APPLY_INSERT_ROWS_MAX 1000 /* detail rows in one INSERT statement */

/* One batch and its outcome. The caller fills the input; sw_apply_* fill the rest. */
typedef struct sw_apply_item {
    /* input: a batch the codec accepted (and whose ids the caller checked) */
    const sh_wire_batch *head;
    const sh_wire_detail *details; /* head->first_seq .. last_seq, n of them */
    size_t n;
    /* outcome */
    sh_err status; /* SH_OK (applied or already there), SH_EINVAL (gap), SH_EMYSQL, SH_ECLOSED */
    uint64_t synced_seq; /* the partition's synced_seq after this batch (SH_OK and gap) */
    uint64_t inserted;   /* details written */
    uint64_t skipped;    /* details at or below synced_seq, not written again */
    char message[SH_MESSAGE_CHARS_MAX + 1];
    /* scratch of the transaction */
    uint64_t old_synced;
    int64_t qty_sum;
    int write;
    size_t sku_esc_len;
    char sku_esc[2 * SH_SKU_ID_CHARS_MAX + 1];
} sw_apply_item;

typedef struct sw_apply sw_apply;

/* Allocates one thread's apply state (its SQL buffer). SH_ENOMEM. */
sh_err sw_apply_new(sw_apply **out, sw_stats *stats);
void sw_apply_free(sw_apply *a);

/* Applies items[0..n) (1 <= n <= SW_APPLY_GROUP_MAX, each with n >= 1 details,
 * no two of the same partition) in one transaction on m and fills every item's
 * outcome. If the group fails for a reason tied to its data (a duplicate key,
 * say) and n > 1, each batch is tried again alone so one bad batch cannot hold
 * back the others. Counts outcomes in the stats. The order of items is kept;
 * rows are locked in (sku, partition) order so two workers cannot deadlock. */
void sw_apply_batches(sw_apply *a, sw_mysql *m, sw_apply_item *items, size_t n);

/* Answers a count-0 batch: item->synced_seq is the partition's synced_seq, 0
 * when it has no row. status SH_OK, or SH_EMYSQL/SH_ECLOSED. */
void sw_apply_query(sw_apply *a, sw_mysql *m, sw_apply_item *item);

#endif
