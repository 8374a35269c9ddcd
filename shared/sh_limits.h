/* sh_limits.h -- every limit of the system, in one place, with its unit.
 *
 * Config values are checked against these bounds at start (sh_config); the
 * wire codec refuses messages past them; the HTTP front refuses requests past
 * them. A name ends with its unit: _BYTES, _MS, _COUNT, _UNITS, _CHARS.
 * Related limits are tied together with _Static_assert below, so changing one
 * cannot silently break another. */
#ifndef SH_LIMITS_H
#define SH_LIMITS_H

#include <stdint.h>

/* ---- identifiers ------------------------------------------------------- */
#define SH_SKU_ID_CHARS_MAX     64  /* sku_id VARCHAR(64) */
#define SH_ORDER_ID_CHARS_MAX   64  /* order ids: 1..64 of [A-Za-z0-9_.:-] */
#define SH_USER_ID_CHARS_MAX    64  /* user ids: same alphabet */
#define SH_SKU_NAME_CHARS_MAX   128 /* sku.name VARCHAR(128) */
#define SH_RESTOCK_ID_CHARS_MAX 64  /* restock.restock_id VARCHAR(64) */
#define SH_MESSAGE_CHARS_MAX    200 /* error text carried in wire replies */

/* ---- stock quantities ---------------------------------------------------- */
#define SH_QTY_UNITS_MAX            1000 /* largest qty of one deduction (default max_qty) */
#define SH_SKU_TOTAL_UNITS_MAX      1000000000LL /* 1e9 units per SKU */
#define SH_PARTITIONS_PER_SKU_MAX   256          /* partitions of one SKU */
#define SH_SKUS_MAX                 4096         /* SKUs in the registry */
#define SH_CHUNK_UNITS_MIN          1
#define SH_CHUNK_UNITS_MAX          10000000 /* one grant */
#define SH_PER_USER_LIMIT_UNITS_MAX 1000000

/* ---- wire codec ------------------------------------------------------- */
#define SH_WIRE_HEADER_BYTES  16
#define SH_WIRE_MSG_BYTES_MAX (4u * 1024u * 1024u) /* one NNG message; RECVMAXSZ */
#define SH_WIRE_ITEMS_MAX     4096                 /* items in one deduct/release message */
#define SH_WIRE_DETAILS_MAX   8192                 /* details in one batch */

/* ---- reconcile (`stockctl partition reconcile`, scheduler/sch_reconcile.c) ---- */
#define SH_WIRE_DETAILS_PAGE_MAX  1000    /* details in one SYNC_DETAILS_REP (MySQL's, a page) */
#define SH_RECONCILE_ORDERS_MAX   1000000 /* orders of one partition held in memory, ~250 B each */
#define SH_RECONCILE_RENUMBER_MAX 16384   /* details one RECONCILE script renumbers */

/* ---- batching ----------------------------------------------------------- */
#define SH_DEDUCT_BATCH_ITEMS_MAX 1024 /* deductions coalesced into one script call */
#define SH_SYNC_BATCH_DETAILS_MAX SH_WIRE_DETAILS_MAX
#define SH_SYNC_INTERVAL_MS_MIN   10
#define SH_SYNC_INTERVAL_MS_MAX   60000

/* ---- HTTP ---------------------------------------------------------------- */
#define SH_HTTP_BODY_BYTES_MAX    4096  /* default body limit; larger -> 413 */
#define SH_HTTP_BODY_BYTES_LIMIT  65536 /* the most a config may allow */
#define SH_HTTP_HEADERS_BYTES_MAX 8192

/* ---- Redis Cluster router ----------------------------------------------- */
#define SH_CLUSTER_SLOTS              16384
#define SH_CLUSTER_NODES_MAX          64 /* nodes the router connects to */
#define SH_CLUSTER_REDIRECTS_MAX      5  /* MOVED/ASK/TRYAGAIN hops per command */
#define SH_CLUSTER_TIMEOUT_MS_DEFAULT 2000
#define SH_CLUSTER_TIMEOUT_MS_MAX     60000
#define SH_CLUSTER_REFRESH_MS_MIN     100   /* map refreshes at most this often */
#define SH_CLUSTER_SCRIPTS_MAX        16    /* scripts a router loads on every master */
#define SH_CLUSTER_ARGS_MAX           65536 /* arguments of one command */
#define SH_DURABLE_WAIT_MS_MIN        1     /* deduct.wait_timeout_ms: WAIT for a replica, ms */
#define SH_DURABLE_WAIT_MS_MAX        10000 /* ... below every Redis timeout it runs under */

/* ---- leases (sh_lease) ---------------------------------------------------- */
#define SH_LEASE_TTL_MS_MIN      300    /* renewals every ttl/3: >= 100 ms apart */
#define SH_LEASE_TTL_MS_MAX      60000  /* a crashed holder blocks its successor this long */
#define SH_LEASE_WAIT_MS_MAX     600000 /* start-up waits at most this before taking over */
#define SH_LEASE_KEY_CHARS_MAX   128    /* the lease's key name */
#define SH_LEASE_OWNER_CHARS_MAX 128    /* holder identity ("host:pid:start_ms") */
#define SH_LEASE_POLL_MS_MAX     100    /* start-up retries at least this often */
#define SH_LEASE_LOG_MS_MIN      1000   /* "lease held by ..." logged at most this often */

/* ---- audit (scheduler/sch_audit.c, shared/sh_audit.c) --------------------
 * The audit runs on its own thread with its own Redis and sync worker
 * connections, so the loop thread only queues it and writes its reply. What
 * it costs a deduction is the Redis side: one audit command at a time holds a
 * master for at most one page: SH_AUDIT_SCAN_COUNT records or user hashes
 * (HSCAN COUNT 1000 over order records: 1.2 ms per call measured, 50,000
 * records in 50 calls, INFO commandstats), or 64 stream entries per XRANGE. */
/* clang-format off */
#define SH_AUDIT_SCAN_COUNT         1000    /* order records per HSCAN, user hashes per pipeline */
#define SH_AUDIT_HOLDERS_MAX        1000000 /* held orders compared with user entries (~72 MB) */
#define SH_AUDIT_PENDING_AGE_MS_MAX 60000   /* pending work or an unshipped detail older: broken */
#define SH_AUDIT_QUEUE_MAX          16      /* operator commands queued or running; more: busy */
/* clang-format on */

/* ---- config ------------------------------------------------------------- */
#define SH_CONFIG_LINE_BYTES_MAX   1024
#define SH_CONFIG_STRING_BYTES_MAX 256
#define SH_CONFIG_KEYS_MAX         128

/* ---- schema migrations (sql/migrations, sync-worker/sw_migrate.c) ------ */
#define SH_MIGRATIONS_MAX                999     /* files NNN_name.sql: versions 1..999 */
#define SH_MIGRATION_BYTES_MAX           1048576 /* one migration file, bytes */
#define SH_MIGRATION_STATEMENT_BYTES_MAX 65536   /* one statement of a migration, bytes */
#define SH_MIGRATE_LOCK_TIMEOUT_S_MAX    3600    /* GET_LOCK wait of one runner, s */

/* ---- logging ---------------------------------------------------------- */
#define SH_LOG_LINE_BYTES_MAX 1024

/* ---- histogram ---------------------------------------------------------- */
#define SH_HIST_SUB_BUCKETS 64 /* linear buckets per power of two: <= 1.6% error */
#define SH_HIST_MAGNITUDES  40 /* powers of two covered: up to 2^40 (ns: 18 min) */

_Static_assert(SH_ORDER_ID_CHARS_MAX < 256, "ids travel with an 8-bit length");
_Static_assert(SH_USER_ID_CHARS_MAX < 256, "ids travel with an 8-bit length");
_Static_assert(SH_SKU_ID_CHARS_MAX < 256, "ids travel with an 8-bit length");
_Static_assert(SH_DEDUCT_BATCH_ITEMS_MAX <= SH_WIRE_ITEMS_MAX, "a batch fits one message");
_Static_assert(SH_SYNC_BATCH_DETAILS_MAX <= SH_WIRE_DETAILS_MAX, "a batch fits one message");
_Static_assert((uint64_t)SH_WIRE_DETAILS_MAX *(32 + 2 * 64 + 2) < SH_WIRE_MSG_BYTES_MAX,
               "a full detail batch fits one message");
_Static_assert(SH_WIRE_DETAILS_PAGE_MAX <= SH_WIRE_DETAILS_MAX, "a details page is a small batch");
_Static_assert(SH_HTTP_BODY_BYTES_MAX <= SH_HTTP_BODY_BYTES_LIMIT, "default within limit");
_Static_assert(SH_MIGRATION_STATEMENT_BYTES_MAX <= SH_MIGRATION_BYTES_MAX,
               "a statement fits its file");
_Static_assert(SH_MIGRATIONS_MAX <= INT32_MAX, "versions fit schema_version.version INT");
_Static_assert(SH_LEASE_TTL_MS_MIN / 3 >= SH_LEASE_POLL_MS_MAX, "renewals no denser than polls");
_Static_assert(SH_LEASE_TTL_MS_MAX <= SH_LEASE_WAIT_MS_MAX, "a wait can outlast any TTL");
_Static_assert(SH_CHUNK_UNITS_MAX <= SH_SKU_TOTAL_UNITS_MAX, "a chunk fits a SKU");

#endif
