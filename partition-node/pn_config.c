/* pn_config.c -- the partition node's key table: one row per key in conf/node.ini. */
#include "pn_config.h"

#include "sh_limits.h"

#define F(field) offsetof(pn_config, field), sizeof(((pn_config *)0)->field)

const sh_config_key pn_config_keys[] = {
    {"log", "level", SH_CONFIG_STR, 4, 5, "info", F(log_level), "lowest level logged",
     "debug|info|warn|error"},
    {"node", "id", SH_CONFIG_INT, 1, 1024, "1", F(node_id), "this node's number, 1..1024", NULL},
    {"node", "count", SH_CONFIG_INT, 1, 1024, "1", F(node_count),
     "partition nodes in the deployment; node id ships partitions p with p % count == id - 1",
     NULL},
    {"node", "listen", SH_CONFIG_STR, 6, 255, "ipc:///tmp/stock-node-1.ipc", F(node_listen),
     "NNG URL the node serves deduct/release requests on (ipc:// or tcp://)", NULL},
    {"node", "contexts", SH_CONFIG_INT, 1, 1024, "64", F(node_contexts),
     "NNG rep contexts: requests in progress at once", NULL},
    {"redis", "seeds", SH_CONFIG_STR, 3, 255, "127.0.0.1:21000", F(redis_seeds),
     "host:port[,host:port] of Redis Cluster nodes", NULL},
    {"redis", "timeout_ms", SH_CONFIG_INT, 10, SH_CLUSTER_TIMEOUT_MS_MAX, "2000",
     F(redis_timeout_ms), "connect and command timeout, ms", NULL},
    {"deduct", "batch_items_max", SH_CONFIG_INT, 1, SH_DEDUCT_BATCH_ITEMS_MAX, "256",
     F(deduct_batch_items_max), "deductions coalesced into one script call", NULL},
    {"deduct", "low_water_units", SH_CONFIG_INT, 0, SH_CHUNK_UNITS_MAX, "0",
     F(deduct_low_water_units), "flip to the standby sub-domain at or below this, units", NULL},
    {"deduct", "claim_ttl_s", SH_CONFIG_INT, 60, 30 * 86400, "604800", F(deduct_claim_ttl_s),
     "order claims and outcomes are kept this long, s", NULL},
    {"deduct", "durability", SH_CONFIG_STR, 6, 7, "replica", F(deduct_durability),
     "replica: answer after a replica holds the round; leader: after the master", "replica|leader"},
    {"deduct", "wait_timeout_ms", SH_CONFIG_INT, SH_DURABLE_WAIT_MS_MIN, SH_DURABLE_WAIT_MS_MAX,
     "100", F(deduct_wait_timeout_ms), "replica: how long WAIT waits for a replica, ms", NULL},
    {"ship", "sync_urls", SH_CONFIG_STR, 6, 511, "ipc:///tmp/stock-syncd-1.ipc", F(ship_sync_urls),
     "comma-separated NNG URLs of the sync workers", NULL},
    {"ship", "threshold_details", SH_CONFIG_INT, 1, SH_SYNC_BATCH_DETAILS_MAX, "500",
     F(ship_threshold_details), "ship a partition's details when this many are pending", NULL},
    {"ship", "interval_ms", SH_CONFIG_INT, SH_SYNC_INTERVAL_MS_MIN, SH_SYNC_INTERVAL_MS_MAX, "1000",
     F(ship_interval_ms), "ship pending details at least this often, ms", NULL},
    {"ship", "ack_timeout_ms", SH_CONFIG_INT, 100, 600000, "3000", F(ship_ack_timeout_ms),
     "a batch without ack after this is sent again, ms", NULL},
    {"ship", "backoff_max_ms", SH_CONFIG_INT, 100, 600000, "5000", F(ship_backoff_max_ms),
     "cap of the resend backoff, ms", NULL},
};

const size_t pn_config_nkeys = sizeof pn_config_keys / sizeof pn_config_keys[0];
