/* sch_config.h -- the scheduler's configuration (conf/scheduler.ini). */
#ifndef SCH_CONFIG_H
#define SCH_CONFIG_H

#include "sh_config.h"

#include <stdint.h>

/* Scheduler-only limits (the shared ones live in sh_limits.h); config values
 * are checked against them at start. */
#define SCH_PENDING_REQUESTS_LIMIT  1048576 /* http.pending_max: requests awaiting a node */
#define SCH_NODES_MAX               64      /* URLs in nodes.urls */
#define SCH_NODE_CONTEXTS_LIMIT     1024    /* nodes.contexts: messages in flight per node */
#define SCH_NODE_OUTBOX_ITEMS_LIMIT 1048576 /* nodes.outbox_items_max: items queued per node */

typedef struct sch_config {
    char log_level[16];
    char http_listen[64];
    int64_t http_port;
    int64_t http_body_bytes_max;
    int64_t http_idle_timeout_s;
    int64_t http_max_qty;
    int64_t http_pending_max;
    char admin_socket[108]; /* sun_path */
    char redis_seeds[256];
    int64_t redis_timeout_ms;
    char node_urls[1024];
    int64_t node_timeout_ms;
    int64_t node_batch_items_max;
    int64_t node_contexts;
    int64_t node_outbox_items_max;
    char sync_urls[512];
    int64_t sync_timeout_ms;
    int64_t pool_refill_horizon_ms;
    int64_t pool_grant_wait_ms;
    int64_t pool_low_water_units;
    char pool_durability[16]; /* "replica" | "leader" */
    int64_t pool_wait_timeout_ms;
    int64_t admission_rate_limit_per_s;
    int64_t lease_ttl_ms;
    int64_t lease_wait_ms;
} sch_config;

extern const sh_config_key sch_config_keys[];
extern const size_t sch_config_nkeys;

#endif
