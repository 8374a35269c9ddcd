/* sch_config.c -- the scheduler's key table: one row per key in conf/scheduler.ini.
 *
 * Bounds come from sh_limits.h; the shipped file documents every key with the
 * same default as this table (a test compares the two). */
#include "sch_config.h"

#include "sh_limits.h"

#define K(sec, name, type, lo, hi, def, field, doc)                                                \
    {                                                                                              \
        sec, name, type, lo, hi, def, offsetof(sch_config, field),                                 \
            sizeof(((sch_config *)0)->field), doc, NULL                                            \
    }

const sh_config_key sch_config_keys[] = {
    {"log", "level", SH_CONFIG_STR, 4, 5, "info", offsetof(sch_config, log_level),
     sizeof(((sch_config *)0)->log_level), "lowest level logged", "debug|info|warn|error"},
    K("http", "listen", SH_CONFIG_STR, 7, 63, "127.0.0.1", http_listen, "IPv4 address to bind"),
    K("http", "port", SH_CONFIG_INT, 1, 65535, "8080", http_port, "TCP port"),
    K("http", "body_bytes_max", SH_CONFIG_INT, 64, SH_HTTP_BODY_BYTES_LIMIT, "4096",
      http_body_bytes_max, "largest request body, bytes; larger gets 413"),
    K("http", "idle_timeout_s", SH_CONFIG_INT, 1, 3600, "30", http_idle_timeout_s,
      "idle keep-alive connections close after this, seconds"),
    K("http", "max_qty", SH_CONFIG_INT, 1, SH_QTY_UNITS_MAX, "1000", http_max_qty,
      "largest qty one deduction may ask, units"),
    K("http", "pending_max", SH_CONFIG_INT, 1, SCH_PENDING_REQUESTS_LIMIT, "65536",
      http_pending_max, "deductions and releases waiting for a node at once; more get 503"),
    K("admin", "socket", SH_CONFIG_STR, 1, 107, "/tmp/stock-admin.sock", admin_socket,
      "Unix socket path of the admin interface (mode 0660)"),
    K("redis", "seeds", SH_CONFIG_STR, 3, 255, "127.0.0.1:21000", redis_seeds,
      "host:port[,host:port] of Redis Cluster nodes"),
    K("redis", "timeout_ms", SH_CONFIG_INT, 10, SH_CLUSTER_TIMEOUT_MS_MAX, "2000", redis_timeout_ms,
      "connect and command timeout, ms"),
    K("nodes", "urls", SH_CONFIG_STR, 6, 1023, "ipc:///tmp/stock-node-1.ipc", node_urls,
      "comma-separated NNG URLs of the partition nodes"),
    K("nodes", "timeout_ms", SH_CONFIG_INT, 10, 60000, "1000", node_timeout_ms,
      "a node request without reply after this is answered 503, ms"),
    K("nodes", "batch_items_max", SH_CONFIG_INT, 1, SH_DEDUCT_BATCH_ITEMS_MAX, "256",
      node_batch_items_max, "deductions carried by one message to a node"),
    K("nodes", "contexts", SH_CONFIG_INT, 1, SCH_NODE_CONTEXTS_LIMIT, "16", node_contexts,
      "messages in flight to one node at once (NNG req contexts)"),
    K("nodes", "outbox_items_max", SH_CONFIG_INT, 1, SCH_NODE_OUTBOX_ITEMS_LIMIT, "8192",
      node_outbox_items_max, "items waiting to be sent to one node; more get 503"),
    K("sync", "urls", SH_CONFIG_STR, 6, 511, "ipc:///tmp/stock-syncd-1.ipc", sync_urls,
      "comma-separated NNG URLs of the sync workers (catalog, restock and audit requests)"),
    K("sync", "timeout_ms", SH_CONFIG_INT, 10, 60000, "3000", sync_timeout_ms,
      "one catalog or audit request to one worker, ms; the next worker is tried after it"),
    K("pool", "refill_horizon_ms", SH_CONFIG_INT, 50, 60000, "1000", pool_refill_horizon_ms,
      "a grant holds about this much of a partition's observed sales, ms"),
    K("pool", "grant_wait_ms", SH_CONFIG_INT, 0, 10000, "500", pool_grant_wait_ms,
      "a request that waits on a refill or consolidation waits at most this, ms"),
    K("pool", "low_water_units", SH_CONFIG_INT, 0, SH_CHUNK_UNITS_MAX, "0", pool_low_water_units,
      "flip threshold a grant applies with; keep equal to the nodes' deduct.low_water_units"),
    {"pool", "durability", SH_CONFIG_STR, 6, 7, "replica", offsetof(sch_config, pool_durability),
     sizeof(((sch_config *)0)->pool_durability),
     "replica: each grant, return and restock step waits for a replica before the next one",
     "replica|leader"},
    K("pool", "wait_timeout_ms", SH_CONFIG_INT, SH_DURABLE_WAIT_MS_MIN, SH_DURABLE_WAIT_MS_MAX,
      "100", pool_wait_timeout_ms,
      "replica: how long WAIT waits for a replica to confirm a step, ms"),
    K("admission", "rate_limit_per_s", SH_CONFIG_INT, 0, 10000000, "0", admission_rate_limit_per_s,
      "deductions admitted per second per SKU; 0 = no limit"),
    K("lease", "ttl_ms", SH_CONFIG_INT, SH_LEASE_TTL_MS_MIN, SH_LEASE_TTL_MS_MAX, "5000",
      lease_ttl_ms, "the scheduler lease expires this long after its last renewal, ms"),
    K("lease", "wait_ms", SH_CONFIG_INT, 0, SH_LEASE_WAIT_MS_MAX, "7000", lease_wait_ms,
      "a start finding the lease held takes it over by force after this, ms (ttl + 2000)"),
};

const size_t sch_config_nkeys = sizeof sch_config_keys / sizeof sch_config_keys[0];
