/* pn_round.h -- one group-commit round: every queued deduction and release, together.
 *
 * A round takes all items of all requests the executor picked up and runs them
 * against Redis Cluster in a fixed, small number of pipelined round trips,
 * whatever the number of items (DESIGN.md 5, 5a):
 *
 *   0. (only for SKUs not cached yet) HGETALL of the pools: partition salts.
 *   A. claims and user counters: SET {o:..} "P:1" NX GET EX ttl | EVALSHA
 *      CLAIM_MOVE | GET {o:..} (release), plus EVALSHA USER_TAKE {u:..} for
 *      items with a per-user limit (an entry order -> "QTY:ROUND_ID").
 *   B. one EVALSHA DEDUCT per (SKU, claim partition) group, at most
 *      batch_items_max items each, all groups in one pipeline.
 *   C. (only when needed) EVALSHA USER_BACK {u:..}: entries given back for
 *      deductions that did not happen and for releases that returned units.
 *
 * Durability = replica: before answering, one more pipelined round trip, the
 * router's replication barrier (SET + WAIT 1 on every master the round wrote
 * to). An item whose claim, user entry or partition lives on a master that a
 * replica did not confirm is answered UNAVAILABLE (flag NO_REPLICA or
 * NOT_REPLICATED): its outcome is recorded, so a retry gets it.
 *
 * Each round has an id (random per process + a counter). DEDUCT calls carry
 * it, so a call whose outcome the router could not tell (SH_EUNKNOWN, a
 * timeout) is asked again at once and answers as its first run did.
 *
 * Redis therefore sees one script call per partition per round, not one per
 * request. Every reply is validated; nothing read from Redis is asserted on.
 *
 * Threads: a round object is owned by the one thread that owns its router. */
#ifndef PN_ROUND_H
#define PN_ROUND_H

#include "sh_cluster.h"
#include "sh_err.h"
#include "sh_hist.h"
#include "sh_limits.h"
#include "sh_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Items one round carries: at least one full message, so any request fits a
 * round of its own; more items wait for the next round. */
#define PN_ROUND_ITEMS_MAX (2 * SH_WIRE_ITEMS_MAX)
_Static_assert(PN_ROUND_ITEMS_MAX >= SH_WIRE_ITEMS_MAX, "a full request fits one round");

typedef struct pn_round_config {
    uint32_t batch_items_max; /* items per DEDUCT script call, 1..SH_DEDUCT_BATCH_ITEMS_MAX */
    uint32_t low_water_units; /* the script's flip threshold, units */
    uint32_t claim_ttl_s;     /* retention of claims, outcomes and user counters, s */
    bool durable;             /* durability = replica: answer after a replica holds the round */
    uint32_t wait_ms;         /* ... WAIT's timeout, ms (below the router's timeout) */
} pn_round_config;

/* Counters since pn_round_new; all monotonic. */
typedef struct pn_round_stats {
    uint64_t rounds;
    uint64_t items;             /* items run (all outcomes) */
    uint64_t script_calls;      /* EVALSHA DEDUCT */
    uint64_t script_items;      /* items carried by those calls */
    uint64_t claim_moves;       /* EVALSHA CLAIM_MOVE */
    uint64_t pool_loads;        /* HGETALL of a pool (cache misses) */
    uint64_t pipelines;         /* sh_cluster_pipeline calls (round trips per master) */
    uint64_t redis_errors;      /* router failures, error and malformed replies (each logged) */
    uint64_t give_backs;        /* user entries given back or fixed (USER_BACK, HSET) */
    uint64_t reruns;            /* DEDUCT calls asked again after an unknown outcome */
    uint64_t settle_queued;     /* user entries of unknown outcomes queued for the sweep */
    uint64_t settled;           /* ... settled by it */
    uint64_t settle_kept;       /* ... whose order held units (entry kept) */
    uint64_t settle_given_back; /* ... whose entry was given back */
    uint64_t settle_dropped;    /* ... not queued: the queue was full (left to the ttl) */
    uint64_t barriers;          /* replication barriers run (durability = replica) */
    uint64_t not_durable;       /* items answered 503 because no replica confirmed them */
    uint64_t diverged;          /* seqs handed out again after being answered (marked) */
    sh_hist items_per_call;     /* items per DEDUCT call */
    sh_hist round_us;           /* wall time of a whole round (claims, scripts, give-backs), us */
} pn_round_stats;

typedef struct pn_round pn_round;

/* Allocates a round for router (borrowed: the caller keeps owning it and must
 * outlive the round) and adds SH_SCRIPT_DEDUCT and SH_SCRIPT_CLAIM_MOVE to it
 * (SCRIPT LOAD on every master). Returns the router's error when the scripts
 * cannot be loaded, SH_EINVAL for a bad cfg, SH_ENOMEM. *out NULL on failure. */
sh_err pn_round_new(pn_round **out, const pn_round_config *cfg, sh_cluster *router);

/* Frees the round (not the router). NULL is a no-op. */
void pn_round_free(pn_round *r);

/* Runs items[0..n) (1 <= n <= PN_ROUND_ITEMS_MAX; release[i] tells a release
 * from a deduction) and writes results[i] for every i: always a complete,
 * encodable result (status, tag, partition, claim_version, ...), never an
 * error return -- failures become SH_WIRE_OUT_UNAVAILABLE / ERROR per item.
 * Items must have passed sh_wire_items_decode; ids are validated again here. */
void pn_round_run(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                  sh_wire_result *results);

/* The sweep (DESIGN.md 5a): settles the user entries of items whose outcome
 * was unknown (DEDUCT or USER_TAKE gave no answer). For each due entry it
 * reads the order's claim, runs SETTLE on the partition the claim names (the
 * order's outcome decides, and a tombstone stops any late copy of the DEDUCT)
 * and gives the entry back when the order holds nothing. Entries Redis cannot
 * settle now come back later with a back-off. A few pipelines per call;
 * nothing when no entry is due. Owner thread only. */
void pn_round_settle(pn_round *r);

/* When the next entry is due (mono ms), UINT64_MAX when none is queued. */
uint64_t pn_round_settle_due_ms(const pn_round *r);

/* Makes every round forget, before its next run, the highest seq it answered
 * per partition (the answered_lost check's marks). Any thread; called when a
 * partition is marked diverged, by a round or by the shipper: a reconcile
 * renumbers the partition's seqs from MySQL's, which can be below the mark,
 * and the next answers there must not look like seqs handed out twice. Every
 * partition's mark goes (a check missed until it answers again, never a false
 * one); divergence is rare. */
void pn_round_forget_marks(void);

/* The counters; valid until pn_round_free. Owner thread only. */
const pn_round_stats *pn_round_stats_get(const pn_round *r);

#endif
