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

#include <stddef.h>
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
    int64_t per_user_limit;       /* pool field pul: 0 = none (no user entries are kept) */
    int partitions;
    int stable;          /* 1 when two consecutive reads agreed */
    int conservation_ok; /* 8.1: total = the sum of where the units are */
    int no_negative_ok;  /* 8.2: no counter below zero, no stream ack past its seq */
    int no_oversell_ok;  /* 8.2: sum of net deducted <= total */
    int diverged_part;   /* the first partition marked diverged (DIVERGE), -1 when none */
    int64_t diverged_seq;
    char diverged_why[64]; /* its reason and detail, as DIVERGE recorded them */
    int ok;                /* 1 when every invariant holds */
    char broken[200];      /* the first broken invariant, "" when ok */
} sh_audit;

/* Reads SKU sku through router c and fills *out. Returns SH_ENOTFOUND when the
 * SKU has no pool, SH_OK otherwise (out->ok tells whether invariants held),
 * or the router's error. */
sh_err sh_audit_sku(struct sh_cluster *c, const char *sku, sh_audit *out);

/* ---- per partition, and against MySQL -------------------------------------------
 * The scheduler's audit also compares each partition with what MySQL holds
 * (DESIGN.md 8.3): Redis's ded must equal MySQL's deducted plus the details
 * still waiting in the stream, and Redis's seq MySQL's synced_seq plus their
 * count. These functions read the Redis side of that. */

/* One partition's counters as one audit pass read them. */
typedef struct sh_audit_part_state {
    uint16_t index;
    uint16_t salt;
    int64_t s0, s1, ded;
    uint64_t seq; /* last detail seq written */
    uint64_t ack; /* last seq MySQL acked (the node trims the stream up to it); 0 = none */
} sh_audit_part_state;

/* As sh_audit_sku; parts[0..out->partitions) also get each partition's counters
 * from the same pass as the sums. cap must be >= SH_PARTITIONS_PER_SKU_MAX. */
sh_err sh_audit_sku_parts(struct sh_cluster *c, const char *sku, sh_audit *out,
                          sh_audit_part_state *parts, size_t cap);

/* One detail of a stream, as far as the audit needs it. */
typedef struct sh_audit_detail {
    uint64_t seq;
    int64_t qty; /* net: releases negative */
} sh_audit_detail;

/* Reads the details with after_seq < seq <= upto_seq of partition part (tag salt
 * salt) of sku's stream, in seq order, into out[0..*n), reading the entries with
 * ids after_seq+1 .. upto_seq page by page (XRANGE ... COUNT). An entry's id is
 * the last seq of its script call, so when upto_seq is the seq read from the
 * state hash no detail written after that read is counted. At most cap details;
 * *truncated = 1 when there were more. SH_EPROTO when an entry or a detail line
 * is malformed; the router's error otherwise. */
sh_err sh_audit_details_read(struct sh_cluster *c, const char *sku, unsigned part, unsigned salt,
                             uint64_t after_seq, uint64_t upto_seq, sh_audit_detail *out,
                             size_t cap, size_t *n, int *truncated);

/* How far one partition's details lag behind MySQL. */
typedef struct sh_audit_lag {
    uint64_t details_pending;       /* seq - ack: details MySQL has not acked */
    uint64_t oldest_pending_age_ms; /* now - created_ms of the oldest one; 0 when none */
} sh_audit_lag;

/* For partitions 0..nparts-1 of sku (salts[i] the tag salt of partition i), one
 * pipeline of HMGET st seq ack and XRANGE d - + COUNT 1 per partition; the age
 * is taken from the first detail with seq > ack in the first stream entry.
 * now_wall_ms is the wall clock. SH_EPROTO for a malformed reply; the router's
 * error otherwise (then out holds zeros). */
sh_err sh_audit_lag_read(struct sh_cluster *c, const char *sku, const uint16_t *salts,
                         size_t nparts, uint64_t now_wall_ms, sh_audit_lag *out);

/* ---- order records and user entries (the deep checks) -----------------------
 * The scheduler's audit also checks what the counters cannot show: MySQL's
 * detail rows against the deductions Redis recorded (order, qty at each seq),
 * and each user's entries against the orders the user holds. Both read every
 * record of a SKU, so they page: HSCAN ... COUNT SH_AUDIT_SCAN_COUNT per
 * command, user hashes SH_AUDIT_SCAN_COUNT per pipeline, and no command holds
 * Redis for more than one such page. */

/* The checksum of one detail: CRC-32 (zlib, the same as MySQL's CRC32()) of
 * "SEQ|ORDER|QTY" in decimal, QTY signed. MySQL sums it over a partition's rows
 * (sw_audit.c); the audit sums it over Redis's order records. */
uint64_t sh_audit_detail_chk(uint64_t seq, const char *order, size_t order_len, int64_t qty);

/* One order record of a partition's order hash: "QTY,SEQ,RELSEQ,USER". */
typedef struct sh_audit_record {
    const char *order;
    size_t order_len;
    const char *user;
    size_t user_len;
    int64_t qty;
    uint64_t seq;    /* the deduction's seq */
    uint64_t relseq; /* the release's seq, 0 while the order holds its units */
} sh_audit_record;

/* Called once per record (tombstones "t,VER" are skipped); the strings live
 * until it returns. Return non-zero to stop the scan. */
typedef int (*sh_audit_record_fn)(void *arg, const sh_audit_record *rec);

/* Scans the order hash of partition part (salt salt) of sku page by page and
 * calls fn for each record. *exists = 0 when the hash is absent (it expires
 * order_ttl after the partition's last deduction). A record may be seen twice
 * when the hash grows during the scan (HSCAN's guarantee is only that every
 * record present for the whole scan is seen). SH_EPROTO for a malformed
 * record, SH_ELIMIT when fn stopped it, the router's error otherwise. */
sh_err sh_audit_records_scan(struct sh_cluster *c, const char *sku, unsigned part, unsigned salt,
                             sh_audit_record_fn fn, void *arg, int *exists);

/* For users[0..n) of sku, the sum of the QTY of every entry of {u:SKU:USER}
 * into sums[0..n), pipelined SH_AUDIT_SCAN_COUNT users at a time. SH_EPROTO
 * for a malformed entry, the router's error otherwise. */
sh_err sh_audit_user_sums(struct sh_cluster *c, const char *sku, const char *const *users, size_t n,
                          int64_t *sums);

#endif
