/* sch_registry.h -- the scheduler's live table of SKUs and partitions, and routing.
 *
 * Owned by the scheduler's loop thread: every function here is called from it
 * only (no locks). The registry is a cache of Redis, never the authority: the
 * Lua scripts guard every unit, so a stale entry costs a retry, never a unit.
 * It is rebuilt from Redis at start (sch_pool_rebuild) and refreshed from every
 * node reply (each carries the partition's a/s0/s1/flags) and every grant. */
#ifndef SCH_REGISTRY_H
#define SCH_REGISTRY_H

#include "sh_err.h"
#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sch_part {
    uint16_t index;             /* partition number within the SKU */
    uint16_t salt;              /* tag salt: keys are {s:SKU:index:salt}:... */
    int node;                   /* index of the partition node its requests go to */
    char master[48];            /* "host:port" owning its slot when last looked */
    int active;                 /* 0 | 1 */
    int64_t s0, s1;             /* last known sub-domain stock, units */
    int64_t deducted;           /* last known net deducted, units */
    uint64_t seq;               /* last known detail seq */
    int closed;                 /* state == closed: not routed to */
    int diverged;               /* state == diverged (Redis and MySQL disagree): not routed to */
    uint8_t flags;              /* last SH_PART_F_* seen */
    int64_t inflight_units;     /* units of deductions sent to it and not answered */
    uint64_t flips;             /* flips seen (from Redis at rebuild, then replies) */
    uint64_t grants;            /* grants applied */
    uint64_t sold_units_window; /* units sold since window_start_ms (rate estimate) */
    uint64_t window_start_ms;
    double rate_units_per_s; /* smoothed sales rate, for chunk sizing */
    /* Pool work left pending by a failed or unknown step (sch_pool.c). Each is
     * retried by the pool's timer and before any new grant to this partition,
     * whatever the pool holds: grant ids must reach a partition in order. */
    uint64_t stuck_grant_id;   /* a journaled grant whose partition step failed */
    int64_t stuck_grant_units; /* ... and its units */
    uint64_t doubt_grant_id;   /* a GRANT_BEGIN whose outcome is unknown */
    int64_t doubt_grant_units; /* ... and the units it asked for */
    uint64_t return_id;        /* a return begun (or in doubt) and not finished */
    uint64_t pending_since_ms; /* mono: when the oldest of these began; 0 = none */
} sch_part;

typedef struct sch_sku {
    char id[SH_SKU_ID_CHARS_MAX + 1];
    char name[SH_SKU_NAME_CHARS_MAX + 1];
    int64_t total;           /* units: initial + restocks */
    int64_t avail;           /* pool units not granted, as last seen */
    int64_t pending_units;   /* units in journaled grants not yet applied */
    int64_t start_ms;        /* sale start, ms since epoch; 0 = open */
    uint32_t per_user_limit; /* units per user, 0 = none */
    uint32_t min_chunk, max_chunk;
    uint16_t nparts;
    sch_part *parts;  /* nparts entries, owned */
    uint32_t rr;      /* round-robin cursor */
    uint64_t next_id; /* journal ids: the last one this scheduler chose (pool's nextid) */
    /* counters for /metrics and the admin socket */
    uint64_t ok, sold_out, duplicates, conflicts, releases;
} sch_sku;

typedef struct sch_registry sch_registry;

sh_err sch_registry_new(sch_registry **out, int nnodes);
void sch_registry_free(sch_registry *r);

/* Adds a SKU (copied, parts copied) or returns SH_EEXIST. nparts <= SH_PARTITIONS_PER_SKU_MAX,
 * at most SH_SKUS_MAX SKUs (SH_ELIMIT). Assigns each partition's node. */
sh_err sch_registry_add(sch_registry *r, const sch_sku *sku, sch_sku **out);
sch_sku *sch_registry_find(sch_registry *r, const char *id, size_t len);
size_t sch_registry_count(const sch_registry *r);
sch_sku *sch_registry_at(sch_registry *r, size_t i);

/* Whether the partition takes deductions and grants: neither closed nor diverged. */
int sch_part_open(const sch_part *p);

/* Whether the partition has pool work pending (a grant or return to finish). */
int sch_part_pending(const sch_part *p);

/* Units a partition can still promise: s0 + s1 - inflight_units (never below 0). */
int64_t sch_part_free(const sch_part *p);

/* Picks the next open partition, round-robin, whose free units cover qty,
 * skipping `skip` (-1 for none). Returns its index or -1. */
int sch_registry_route(sch_sku *s, uint32_t qty, int skip);

/* Everything the SKU could still sell as far as the registry knows:
 * avail + pending_units + sum of partition s0 + s1. */
int64_t sch_sku_remaining(const sch_sku *s);

/* Records a node's view of a partition after a script call. */
void sch_part_observe(sch_part *p, int active, int64_t s0, int64_t s1, uint8_t flags);

#endif
