/* sch_pool.h -- the pre-allocation pool: SKU loading, grants, returns, rebuild.
 *
 * Every operation here is a short sequence of Lua scripts (shared/sh_stock.h)
 * run through the scheduler's own Redis Cluster router, synchronously, on the
 * loop thread. Grants are rare (about one per partition per refill horizon),
 * and a grant is three round trips of ~50 us each, so a pool thread would buy
 * nothing but a hand-off; consolidation at the end of a sale is rarer still.
 * Each step is journaled so that a crash at any point, followed by
 * sch_pool_rebuild at the next start, loses and duplicates nothing. */
#ifndef SCH_POOL_H
#define SCH_POOL_H

#include "sch_registry.h"
#include "sh_err.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sch_pool sch_pool;

typedef struct sch_pool_config {
    const char *redis_seeds;
    uint32_t redis_timeout_ms;
    uint32_t refill_horizon_ms; /* a grant holds about this much of a partition's sales */
    int64_t low_water_units;    /* flip threshold used in grant_apply (node's low_water) */
    bool durable;               /* durability = replica: each step waits for a replica */
    uint32_t wait_ms;           /* ... WAIT's timeout, ms (below redis_timeout_ms) */
} sch_pool_config;

/* What `sku load` asks for. */
typedef struct sch_sku_spec {
    char id[SH_SKU_ID_CHARS_MAX + 1];
    char name[SH_SKU_NAME_CHARS_MAX + 1];
    int64_t total;
    int64_t start_ms;
    uint32_t per_user_limit;
    uint16_t partitions;
    uint32_t min_chunk, max_chunk;
} sch_sku_spec;

sh_err sch_pool_open(sch_pool **out, const sch_pool_config *cfg);
void sch_pool_close(sch_pool *p);

/* Reads every SKU of the index from Redis into reg (pool, partitions' state),
 * replays pending journal entries (grants and returns) to the end, then tops
 * up partitions whose standby is empty. Called once at start. */
sh_err sch_pool_rebuild(sch_pool *p, sch_registry *reg);

/* Creates the SKU in Redis once (partitions placed on distinct masters where
 * there are enough), adds it to reg and grants the first chunks. Loading an
 * existing SKU changes nothing and sets *created = 0 (reg gets it if missing).
 * msg receives a human-readable reason on failure. */
sh_err sch_pool_load_sku(sch_pool *p, sch_registry *reg, const sch_sku_spec *spec, int *created,
                         char *msg, size_t msglen);

/* Grants one chunk to part's standby sub-domain (3 phases). Chunk size follows
 * the partition's observed rate within [min_chunk, max_chunk] and shrinks as the
 * pool empties. Sets *granted to the units moved (0 when the pool is empty). */
sh_err sch_pool_refill(sch_pool *p, sch_sku *s, sch_part *part, int64_t *granted);

/* Makes one partition able to serve qty when the SKU as a whole can: grants
 * from the pool, or first takes remnants back from partitions (reverse
 * two-phase transfer) and then grants. *part_out = the partition index, or -1
 * when the SKU cannot serve qty (sold out for this qty). */
sh_err sch_pool_consolidate(sch_pool *p, sch_sku *s, uint32_t qty, int *part_out);

/* Adds units to the pool once per restock id (*applied = 1 the first time). */
sh_err sch_pool_restock(sch_pool *p, sch_sku *s, const char *restock_id, int64_t units,
                        int *applied);

/* Re-reads pool and partition counters of s from Redis into the registry. */
sh_err sch_pool_refresh(sch_pool *p, sch_sku *s);

/* The lease epoch every grant and return script carries from now on (the
 * scripts refuse an epoch below what the keys are stamped with; rebuild
 * stamps ours). Call before sch_pool_rebuild; epochs only grow. */
void sch_pool_set_epoch(sch_pool *p, uint64_t epoch);

/* Retries the pool work that a failed or unknown step left pending on any
 * partition (sch_part_pending): a grant in doubt, a grant to apply, a return
 * to finish -- whatever the pool holds. *left gets the partitions still
 * pending; returns the first failure, SH_OK when none is left. Called by the
 * scheduler's timer every SCH_POOL_RETRY_MS. */
#define SCH_POOL_RETRY_MS 500
sh_err sch_pool_retry(sch_pool *p, sch_registry *reg, size_t *left);

/* The router, for the admin socket's audit (sh_audit_sku). */
struct sh_cluster *sch_pool_router(sch_pool *p);

#endif
