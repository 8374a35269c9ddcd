/* sh_audit.h -- reads one SKU's state from Redis and checks the invariants.
 *
 * DESIGN.md 8.1 (conservation): total = pool avail + units in journaled grants
 * not yet applied + units taken by journaled returns not yet applied
 * + sum over partitions of (s0 + s1 + ded); and 8.2: no counter negative,
 * sum of ded <= total. The keys live on several slots, so a read during
 * traffic is not one snapshot: sh_audit_sku reads until two passes agree
 * (bounded) and reports whether it got a stable read. Used by the tests, the
 * scheduler's admin `audit` and stockctl. */
#ifndef SH_AUDIT_H
#define SH_AUDIT_H

#include "sh_err.h"

#include <stdint.h>

struct sh_cluster;

typedef struct sh_audit {
    int64_t total;                /* pool total */
    int64_t avail;                /* pool avail */
    int64_t pending_grant_units;  /* journaled grants not yet in their partition */
    int64_t pending_return_units; /* taken by returns not yet back in the pool */
    int64_t partition_units;      /* sum of s0 + s1 */
    int64_t deducted;             /* sum of ded (net) */
    int64_t details_pending;      /* details in the partitions' streams (not yet trimmed) */
    uint64_t seq_sum;             /* sum of partition seqs */
    int partitions;
    int stable;          /* 1 when two consecutive reads agreed */
    int conservation_ok; /* 8.1: total = the sum of where the units are */
    int no_negative_ok;  /* 8.2: no counter below zero, no stream ack past its seq */
    int no_oversell_ok;  /* 8.2: sum of net deducted <= total */
    int ok;              /* 1 when every invariant holds */
    char broken[200];    /* the first broken invariant, "" when ok */
} sh_audit;

/* Reads SKU sku through router c and fills *out. Returns SH_ENOTFOUND when the
 * SKU has no pool, SH_OK otherwise (out->ok tells whether invariants held),
 * or the router's error. */
sh_err sh_audit_sku(struct sh_cluster *c, const char *sku, sh_audit *out);

#endif
