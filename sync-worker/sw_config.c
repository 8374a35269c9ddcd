/* sw_config.c -- the sync worker's key table: one row per key in conf/syncd.ini. */
#include "sw_config.h"

#include "sh_limits.h"

#define F(field) offsetof(sw_config, field), sizeof(((sw_config *)0)->field)

const sh_config_key sw_config_keys[] = {
    {"log", "level", SH_CONFIG_STR, 4, 5, "info", F(log_level), "lowest level logged",
     "debug|info|warn|error"},
    {"syncd", "listen", SH_CONFIG_STR, 6, 255, "ipc:///tmp/stock-syncd-1.ipc", F(syncd_listen),
     "NNG URL the worker serves batches and catalog requests on", NULL},
    {"syncd", "contexts", SH_CONFIG_INT, 1, 256, "16", F(syncd_contexts),
     "NNG rep contexts: requests in progress at once", NULL},
    {"syncd", "threads", SH_CONFIG_INT, 1, 64, "2", F(syncd_threads),
     "worker threads, each with its own MySQL connection", NULL},
    {"mysql", "host", SH_CONFIG_STR, 0, 63, "127.0.0.1", F(mysql_host),
     "MySQL/MariaDB host (TCP); empty with socket set uses the socket", NULL},
    {"mysql", "port", SH_CONFIG_INT, 1, 65535, "21020", F(mysql_port), "TCP port", NULL},
    {"mysql", "socket", SH_CONFIG_STR, 0, 107, "", F(mysql_socket),
     "Unix socket path; used when host is empty", NULL},
    {"mysql", "user", SH_CONFIG_STR, 1, 63, "root", F(mysql_user), "user name", NULL},
    {"mysql", "password", SH_CONFIG_STR, 0, 127, "", F(mysql_password), "password", NULL},
    {"mysql", "database", SH_CONFIG_STR, 1, 63, "stock", F(mysql_database), "schema name", NULL},
    {"mysql", "connect_timeout_s", SH_CONFIG_INT, 1, 600, "5", F(mysql_connect_timeout_s),
     "connect timeout, s", NULL},
    {"mysql", "rw_timeout_s", SH_CONFIG_INT, 1, 3600, "30", F(mysql_rw_timeout_s),
     "read and write timeout of one statement, s", NULL},
    {"mysql", "retry_backoff_max_ms", SH_CONFIG_INT, 10, 600000, "5000",
     F(mysql_retry_backoff_max_ms), "cap of the reconnect backoff, ms", NULL},
    {"mysql", "retry_attempts_max", SH_CONFIG_INT, 1, 100, "8", F(mysql_retry_attempts_max),
     "attempts at one transaction (deadlock, lost connection) before an error reply", NULL},
    {"mysql", "retry_time_max_ms", SH_CONFIG_INT, 10, 600000, "10000", F(mysql_retry_time_max_ms),
     "no new attempt at one transaction after this, ms", NULL},
    {"mysql", "lock_wait_timeout_s", SH_CONFIG_INT, 1, 3600, "10", F(mysql_lock_wait_timeout_s),
     "innodb_lock_wait_timeout of the session, s; below rw_timeout_s", NULL},
    {"apply", "group_batches_max", SH_CONFIG_INT, 1, 64, "8", F(apply_group_batches_max),
     "detail batches applied in one transaction at most", NULL},
    {"migrate", "on_start", SH_CONFIG_BOOL, 0, 1, "yes", F(migrate_on_start),
     "apply the schema migrations before serving; a failure stops the worker", NULL},
    {"migrate", "lock_timeout_s", SH_CONFIG_INT, 1, SH_MIGRATE_LOCK_TIMEOUT_S_MAX, "60",
     F(migrate_lock_timeout_s), "wait for another worker's migration (GET_LOCK), s", NULL},
};

const size_t sw_config_nkeys = sizeof sw_config_keys / sizeof sw_config_keys[0];
