/* sch_config.h -- the scheduler's configuration (conf/scheduler.ini). */
#ifndef SCH_CONFIG_H
#define SCH_CONFIG_H

#include "sh_config.h"

#include <stdint.h>

typedef struct sch_config {
    char log_level[16];
    char http_listen[64];
    int64_t http_port;
    int64_t http_body_bytes_max;
    int64_t http_idle_timeout_s;
    int64_t http_max_qty;
    char admin_socket[108]; /* sun_path */
    char redis_seeds[256];
    int64_t redis_timeout_ms;
    char node_urls[1024];
    int64_t node_timeout_ms;
    int64_t node_batch_items_max;
    char sync_urls[512];
    int64_t sync_timeout_ms;
    int64_t pool_refill_horizon_ms;
    int64_t pool_grant_wait_ms;
    int64_t admission_rate_limit_per_s;
} sch_config;

extern const sh_config_key sch_config_keys[];
extern const size_t sch_config_nkeys;

#endif
