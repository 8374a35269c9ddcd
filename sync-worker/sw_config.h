/* sw_config.h -- the sync worker's configuration (conf/syncd.ini). */
#ifndef SW_CONFIG_H
#define SW_CONFIG_H

#include "sh_config.h"

#include <stdint.h>

typedef struct sw_config {
    char log_level[16];
    char syncd_listen[256];
    int64_t syncd_contexts;
    int64_t syncd_threads;
    char mysql_host[64];
    int64_t mysql_port;
    char mysql_socket[108];
    char mysql_user[64];
    char mysql_password[128];
    char mysql_database[64];
    int64_t mysql_connect_timeout_s;
    int64_t mysql_rw_timeout_s;
    int64_t mysql_retry_backoff_max_ms;
    int64_t mysql_retry_attempts_max;
    int64_t mysql_retry_time_max_ms;
    int64_t mysql_lock_wait_timeout_s;
    int64_t apply_group_batches_max;
    int migrate_on_start;
    int64_t migrate_lock_timeout_s;
} sw_config;

extern const sh_config_key sw_config_keys[];
extern const size_t sw_config_nkeys;

#endif
