/* sch_reconcile.h -- `stockctl partition reconcile SKU P`: repair a diverged partition.
 *
 * A partition is diverged (DIVERGE, shared/sh_stock.c) when Redis lost
 * details that MySQL holds, or handed their seqs to other deductions: a
 * failover to a lagging replica under deduct.durability = leader. Routing
 * skips it and DEDUCT refuses it until this repair opens it again:
 *
 *   - every detail MySQL holds stays, with its seq (MySQL is what the books
 *     say; those orders were answered ok);
 *   - every deduction or release answered by Redis that MySQL does not hold
 *     (an order MySQL has no row of, or a release MySQL lacks), including
 *     those that reused seqs MySQL holds, is renumbered after MySQL's
 *     synced_seq, gap-free, in Redis's order, and kept;
 *   - an order MySQL holds that Redis deducted again under another seq (a
 *     retry after the loss) is kept once, MySQL's; its extra units go back;
 *   - the partition's counters, order records and stream are rebuilt from
 *     that union in one RECONCILE script, which takes the units the union
 *     deducted beyond Redis's from the partition, then from the pool through
 *     a journaled grant, and reports what neither holds as oversold; units
 *     the union deducted less go back to the partition;
 *   - claims of the union's orders are set when missing (a claim naming
 *     another partition is reported, not moved) and, with a per-user limit,
 *     user entries follow the union;
 *   - the partition opens, and its node's shipper ships the renumbered
 *     details from MySQL's synced_seq on.
 *
 * Thread-agnostic: it uses only the router and the sync link it is given
 * (each owned by the calling thread), so an operator thread with its own
 * handles may run it as well as the scheduler's loop thread. It blocks for
 * a few round trips per page read (MySQL through a sync worker, Redis) and is
 * bounded: SH_RECONCILE_ORDERS_MAX orders of the partition in memory (about
 * 250 bytes each), SH_RECONCILE_RENUMBER_MAX renumbered details per run. */
#ifndef SCH_RECONCILE_H
#define SCH_RECONCILE_H

#include "sh_err.h"
#include "sh_limits.h"
#include "sh_stock.h"
#include "sh_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sh_cluster;
struct sch_sync;

#define SCH_RECONCILE_ATTEMPTS_MAX 3 /* reads + script when the partition changed meanwhile */
#define SCH_RECONCILE_TTL_S_DEFAULT                                                                \
    604800                            /* claims and records when the order hash has no TTL, s      \
                                         (conf/node.ini deduct.claim_ttl_s's default) */
#define SCH_RECONCILE_ID_CHARS_MAX 48 /* "rc.EPOCH.WALL_MS.N" */

typedef struct sch_reconcile_opts {
    uint64_t epoch;   /* the scheduler's lease epoch: grants and RECONCILE are fenced by it */
    bool durable;     /* pool.durability = replica: each step waits for a replica */
    uint32_t wait_ms; /* ... WAIT's timeout, ms (below the router's timeout) */
} sch_reconcile_opts;

/* What a run found and changed; every count is of this partition. */
typedef struct sch_reconcile_out {
    const char *error; /* on failure: a JSON error code (below); NULL on success */
    char id[SCH_RECONCILE_ID_CHARS_MAX + 1];
    uint64_t mysql_synced_seq;   /* stock_partition.synced_seq */
    uint64_t mysql_max_seq;      /* MAX(seq) of its details (== synced_seq) */
    uint64_t redis_seq_before;   /* seq in Redis when the run read it */
    uint64_t redis_ack_before;   /* ack in Redis then */
    uint64_t kept_from_mysql;    /* MySQL's details, all kept with their seqs */
    uint64_t renumbered;         /* details only Redis held, given new seqs */
    uint64_t renumbered_first;   /* ... synced_seq + 1 (0 when none) */
    uint64_t renumbered_last;    /* ... the new seq */
    uint64_t dropped_duplicates; /* orders MySQL holds that Redis deducted again */
    uint64_t records_restored;   /* order records written from MySQL (Redis had none) */
    uint64_t records_fixed;      /* records Redis had that now read the union's */
    uint64_t grants_finished;    /* journaled grants to this partition applied first */
    uint64_t seq_after;          /* the partition's new top seq */
    int64_t ded_before, ded_after;
    int64_t from_partition;      /* units the union needed more, taken from s0/s1 */
    int64_t from_pool;           /* ... from the pool (journaled grant grant_id) */
    int64_t given_back;          /* units the union needed less, back to the partition */
    int64_t oversold;            /* units answered that neither partition nor pool backs */
    uint64_t grant_id;           /* 0 when the pool was not asked */
    uint64_t claims_set;         /* claims written "P:1" where none was */
    uint64_t claims_elsewhere;   /* claims naming another partition (reported, kept) */
    uint64_t user_entries_fixed; /* user entries written or deleted (per-user limit) */
    uint64_t mysql_synced_after; /* synced_seq read again after the script */
    int mysql_moved;             /* ... past mysql_synced_seq: a batch in flight when the
                                    partition was marked landed; it will diverge again
                                    (identity) and wants another run */
    int already;                 /* the script had run before (an unknown outcome re-sent) */
    int reopened;                /* the partition is open again */
    int attempts;                /* reads + script runs it took */
} sch_reconcile_out;

/* Error codes in out->error:
 *   bad_request        sku id or partition out of bounds
 *   unknown_sku        no pool in Redis
 *   unknown_partition  part >= the SKU's partitions
 *   not_diverged       nothing to repair (why says the state, and the last reconcile)
 *   unavailable        no sync worker answered, or Redis could not be reached
 *   mysql_inconsistent MySQL's details are not 1..synced_seq, or a release without its deduction
 *   too_large          past SH_RECONCILE_ORDERS_MAX or SH_RECONCILE_RENUMBER_MAX
 *   changed            the partition kept changing under the run (attempts ran out)
 *   internal           a malformed reply or another failure (why says) */

/* Repairs partition part of sku (see the top of this file) through router
 * and sync, both owned by the calling thread. SH_OK with *out filled; on
 * failure out->error and a one-line why. Running it again after a success
 * answers not_diverged. Blocks; see above for its bounds. */
sh_err sch_reconcile_run(struct sh_cluster *router, struct sch_sync *sync,
                         const sch_reconcile_opts *opts, const char *sku, unsigned part,
                         sch_reconcile_out *out, char *why, size_t whylen);

/* ---- the union: pure, no I/O (tests/unit/test_reconcile.c drives it) ------------ */

typedef struct sch_rc_union sch_rc_union;

/* One order of the partition, as the sources told and as the union decides. */
typedef struct sch_rc_order {
    char id[SH_ORDER_ID_CHARS_MAX + 1];
    char user[SH_USER_ID_CHARS_MAX + 1];
    /* MySQL */
    uint64_t my_ded_seq, my_rel_seq; /* 0: none */
    int64_t my_qty;
    /* Redis: the order record, then the stream */
    int rec_kind; /* 0 none, 1 "QTY,SEQ,RELSEQ,USER", 2 tombstone "t,VER" */
    uint64_t rec_seq, rec_rel;
    int64_t rec_qty;
    uint64_t st_ded_seq, st_rel_seq; /* stream details, 0: none */
    int64_t st_qty, st_ded_ms, st_rel_ms;
    uint8_t st_ded_sd, st_rel_sd;
    /* the union (after sch_rc_union_plan) */
    int held;         /* the union holds it on this partition (a deduction, maybe released) */
    int64_t qty;      /* its units */
    uint64_t ded_seq; /* its deduction's seq, MySQL's or renumbered */
    uint64_t rel_seq; /* its release's seq, 0 when not released */
    int write;        /* its record must be (re)written: 1 from MySQL alone, 2 renumbered */
    int restored;     /* Redis had no record of it */
    int duplicate;    /* Redis deducted it again under another seq or qty */
} sch_rc_order;

/* A renumbered detail: seq, the DEDUCT-format line of the stream. */
typedef struct sch_rc_line {
    uint64_t seq;
    int64_t qty;
    uint8_t sub_domain;
    int64_t created_ms;
    uint32_t order; /* index of its order */
} sch_rc_line;

typedef struct sch_rc_plan {
    uint64_t synced_seq;
    uint64_t kept;     /* MySQL's details */
    int64_t mysql_net; /* their SUM(qty) */
    int64_t new_ded;   /* mysql_net + the renumbered details' qty */
    uint64_t new_seq;  /* synced_seq + nlines */
    size_t nlines;     /* renumbered details, in new seq order */
    const sch_rc_line *lines;
    uint64_t duplicates, restored, fixed;
} sch_rc_plan;

sh_err sch_rc_union_new(sch_rc_union **out);
void sch_rc_union_free(sch_rc_union *u);

/* Adds MySQL's details in seq order. SH_EPROTO when seqs do not run 1, 2, ...;
 * SH_ELIMIT past SH_RECONCILE_ORDERS_MAX orders; SH_ENOMEM. */
sh_err sch_rc_union_add_mysql(sch_rc_union *u, const sh_wire_detail *d);

/* Adds one field/value of the order hash. SH_EPROTO for a malformed record. */
sh_err sch_rc_union_add_record(sch_rc_union *u, const char *order, size_t olen, const char *rec,
                               size_t rlen);

/* Adds one detail of the partition's stream (any seq). */
sh_err sch_rc_union_add_stream(sch_rc_union *u, const sh_stock_detail *d);

/* Decides the union (see the top of this file) given MySQL's synced_seq, the
 * partition's active sub-domain and the wall clock (for renumbered details the
 * stream no longer holds). SH_EPROTO when MySQL's details are not 1..synced_seq
 * or MySQL holds a release without its deduction (why says); SH_ELIMIT past
 * SH_RECONCILE_RENUMBER_MAX renumbered details. *plan stays valid until the
 * union is freed. */
sh_err sch_rc_union_plan(sch_rc_union *u, uint64_t synced_seq, int active, int64_t now_ms,
                         sch_rc_plan *plan, char *why, size_t whylen);

/* The orders, 0..count-1, in no particular order; valid until the next add. */
size_t sch_rc_union_count(const sch_rc_union *u);
const sch_rc_order *sch_rc_union_at(const sch_rc_union *u, size_t i);

/* The record the union writes for o ("QTY,SEQ,RELSEQ,USER") and the stream line
 * of l ("SEQ|QTY|SD|MS|ORDER|USER"), NUL-terminated into buf; their lengths. */
#define SCH_RC_TEXT_BYTES (4 * 24 + SH_ORDER_ID_CHARS_MAX + SH_USER_ID_CHARS_MAX + 8)
size_t sch_rc_record_text(const sch_rc_order *o, char *buf, size_t cap);
size_t sch_rc_line_text(const sch_rc_union *u, const sch_rc_line *l, char *buf, size_t cap);

#endif
