/* pn_config.h -- the partition node's configuration (conf/node.ini). */
#ifndef PN_CONFIG_H
#define PN_CONFIG_H

#include "sh_config.h"

#include <stdint.h>

typedef struct pn_config {
    char log_level[16];
    int64_t node_id;
    int64_t node_count; /* node_id <= node_count, checked at start */
    char node_listen[256];
    int64_t node_contexts;
    char redis_seeds[256];
    int64_t redis_timeout_ms;
    int64_t deduct_batch_items_max;
    int64_t deduct_low_water_units;
    int64_t deduct_claim_ttl_s;
    char deduct_durability[16]; /* "replica" | "leader" */
    int64_t deduct_wait_timeout_ms;
    char ship_sync_urls[512];
    int64_t ship_threshold_details;
    int64_t ship_interval_ms;
    int64_t ship_ack_timeout_ms;
    int64_t ship_backoff_max_ms;
} pn_config;

extern const sh_config_key pn_config_keys[];
extern const size_t pn_config_nkeys;

#endif
