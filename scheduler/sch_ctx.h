/* sch_ctx.h -- the scheduler's parts, wired together by main.c.
 *
 * One struct the loop thread passes around, so the admin socket can reach the
 * registry and the pool without globals. Everything in it belongs to the loop
 * thread; NNG callbacks never touch it (they hand replies over a queue). */
#ifndef SCH_CTX_H
#define SCH_CTX_H

#include "sch_config.h"
#include "sch_pool.h"
#include "sch_registry.h"

#include <stdint.h>

struct event_base;
struct sch_nodes;
struct sch_http;
struct sch_admin;
struct sch_sync;
struct sh_lease;

typedef struct sch_stats {
    uint64_t http_requests;  /* every HTTP request answered */
    uint64_t deduct_ok;      /* 200 on /v1/deduct, duplicates included */
    uint64_t deduct_dup;     /* of which duplicates */
    uint64_t sold_out;       /* 409 sold_out */
    uint64_t conflicts;      /* 409 order_conflict */
    uint64_t user_limit;     /* 409 user_limit */
    uint64_t bad_requests;   /* 400 and 413 */
    uint64_t unavailable;    /* 503 */
    uint64_t not_started;    /* 425 */
    uint64_t rate_limited;   /* 429 */
    uint64_t releases;       /* 200 on /v1/release */
    uint64_t node_messages;  /* messages sent to nodes */
    uint64_t node_items;     /* items carried by them */
    uint64_t retries;        /* items re-routed after a partition refused */
    uint64_t grants;         /* grants completed */
    uint64_t consolidations; /* consolidations run */
} sch_stats;

typedef struct sch_ctx {
    const sch_config *cfg;
    struct event_base *base;
    sch_registry *reg;
    sch_pool *pool;
    struct sch_nodes *nodes;
    struct sch_http *http;
    struct sch_admin *admin;
    struct sch_sync *sync; /* sync workers: catalog and MySQL sync state (admin only) */
    /* One scheduler at a time (DESIGN.md 5b): the lease this process holds and
     * its fencing epoch, acquired before the pool is opened and fixed for the
     * process's life (a lost lease stops the scheduler). Scripts that move
     * stock carry lease_epoch; sh_lease_epoch(lease) gives the same from any
     * thread. */
    struct sh_lease *lease;
    uint64_t lease_epoch;
    sch_stats stats;
} sch_ctx;

#endif
