-- 001_baseline.sql -- migration 1: the schema of the stock server as first shipped.
--
-- Applied by the sync worker's migration runner (sync-worker/sw_migrate.c), which
-- creates the database named by mysql.database (CHARACTER SET utf8mb4, COLLATE
-- utf8mb4_unicode_ci) and selects it before running this file, and records
-- version 1 in schema_version once every statement below has succeeded. A
-- database made by the former sql/schema.sql already holds these tables and the
-- row version = 1, so the runner starts above it.
--
-- Only the sync worker writes these tables; tests, `stockctl audit` and the
-- load generator read them, by these exact table and column names.
-- Every statement is idempotent (CREATE ... IF NOT EXISTS), so running the
-- file twice is harmless (a crash half-way re-runs it). All tables are InnoDB,
-- utf8mb4.
--
-- Tables:
--   schema_version   one row per schema version applied; tools check it before
--                    trusting the layout.
--   sku              the catalog master row of a SKU: its total stock (initial
--                    units plus every restock) and sale parameters. The scheduler
--                    loads SKUs from here through the sync worker.
--   stock_partition  one row per (SKU, partition): the sync high-water mark
--                    (synced_seq) and running counters. The sync worker locks
--                    this row (SELECT ... FOR UPDATE) in every batch transaction,
--                    skips details whose seq <= synced_seq and advances it, which
--                    is what makes re-sent batches harmless.
--   deduction_detail every deduction (qty > 0) and release (qty < 0) exactly
--                    once, keyed by (sku, partition, seq); seq is gap-free per
--                    partition, assigned in Redis by the deduction script.
--   restock          one row per restock id, so a restock retried with the same
--                    id adds its units to sku.total only once.
--
-- Ids (sku_id, order_id, user_id, restock_id) use the binary collation
-- utf8mb4_bin: they are case-sensitive in the API and in Redis, so 'A1' and
-- 'a1' must be different rows here too.
--
-- Invariant once sync has drained (DESIGN.md section 8):
--   stock_partition.deducted = SUM(deduction_detail.qty) for that partition,
--   stock_partition.detail_rows = COUNT(*) of its details,
--   SUM(stock_partition.deducted) over a SKU <= sku.total.

CREATE TABLE IF NOT EXISTS schema_version (
    version    INT       NOT NULL                           COMMENT 'schema version number; one row per version applied',
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP COMMENT 'when this version was applied',
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='schema versions applied to this database';

CREATE TABLE IF NOT EXISTS sku (
    sku_id         VARCHAR(64) COLLATE utf8mb4_bin NOT NULL            COMMENT 'SKU id, as used in the API and in Redis keys',
    name           VARCHAR(128)      NOT NULL DEFAULT '' COMMENT 'display name, informational only',
    total          BIGINT            NOT NULL            COMMENT 'total units for sale: initial stock plus every restock',
    start_ms       BIGINT            NOT NULL DEFAULT 0  COMMENT 'sale start, ms since the Unix epoch; 0 = already open',
    per_user_limit INT UNSIGNED      NOT NULL DEFAULT 0  COMMENT 'max net units one user may hold; 0 = no limit',
    partitions     SMALLINT UNSIGNED NOT NULL            COMMENT 'number of stock partitions (Redis slots) of this SKU',
    min_chunk      INT UNSIGNED      NOT NULL            COMMENT 'smallest grant from the pool to a partition, in units',
    max_chunk      INT UNSIGNED      NOT NULL            COMMENT 'largest grant from the pool to a partition, in units',
    created_at     TIMESTAMP         NOT NULL DEFAULT CURRENT_TIMESTAMP
                                                         COMMENT 'when the SKU row was created',
    updated_at     TIMESTAMP         NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
                                                         COMMENT 'when the SKU row last changed (e.g. a restock)',
    PRIMARY KEY (sku_id),
    CONSTRAINT chk_sku_total      CHECK (total >= 0),
    CONSTRAINT chk_sku_partitions CHECK (partitions BETWEEN 1 AND 256),
    CONSTRAINT chk_sku_min_chunk  CHECK (min_chunk >= 1),
    CONSTRAINT chk_sku_max_chunk  CHECK (max_chunk >= min_chunk)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='catalog master row of each SKU';

CREATE TABLE IF NOT EXISTS stock_partition (
    sku_id       VARCHAR(64) COLLATE utf8mb4_bin NOT NULL           COMMENT 'SKU id (sku.sku_id)',
    partition_id SMALLINT UNSIGNED NOT NULL           COMMENT 'partition number within the SKU, 0 .. partitions-1',
    synced_seq   BIGINT UNSIGNED   NOT NULL DEFAULT 0 COMMENT 'high-water mark: every detail with seq <= this is applied',
    deducted     BIGINT            NOT NULL DEFAULT 0 COMMENT 'net units deducted = SUM(qty) of the applied details',
    detail_rows  BIGINT UNSIGNED   NOT NULL DEFAULT 0 COMMENT 'number of detail rows applied for this partition',
    updated_at   TIMESTAMP         NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
                                                      COMMENT 'when the last batch was applied',
    PRIMARY KEY (sku_id, partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='per-partition sync high-water mark; the row the sync worker locks';

CREATE TABLE IF NOT EXISTS deduction_detail (
    sku_id       VARCHAR(64) COLLATE utf8mb4_bin NOT NULL            COMMENT 'SKU id (sku.sku_id)',
    partition_id SMALLINT UNSIGNED NOT NULL            COMMENT 'partition that applied the deduction or release',
    seq          BIGINT UNSIGNED   NOT NULL            COMMENT 'per-partition gap-free sequence number, assigned in Redis',
    order_id     VARCHAR(64) COLLATE utf8mb4_bin NOT NULL            COMMENT 'order id given by the caller',
    user_id      VARCHAR(64) COLLATE utf8mb4_bin NOT NULL DEFAULT '' COMMENT 'user id given by the caller; empty if none',
    qty          INT               NOT NULL            COMMENT 'units, signed: positive = deduction, negative = release',
    sub_domain   TINYINT UNSIGNED  NOT NULL            COMMENT 'sub-domain counter (0 or 1) the units came from or went to',
    created_ms   BIGINT            NOT NULL            COMMENT 'when Redis applied it, ms since the Unix epoch',
    PRIMARY KEY (sku_id, partition_id, seq),
    KEY idx_sku_order (sku_id, order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='every deduction and release, exactly once';

CREATE TABLE IF NOT EXISTS restock (
    restock_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL                           COMMENT 'caller-chosen restock id; a retry with the same id is a no-op',
    sku_id     VARCHAR(64) COLLATE utf8mb4_bin NOT NULL                           COMMENT 'SKU id (sku.sku_id) restocked',
    units      BIGINT      NOT NULL                           COMMENT 'units added to sku.total by this restock',
    created_at TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP COMMENT 'when the restock was applied',
    PRIMARY KEY (restock_id),
    KEY idx_restock_sku (sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='restocks applied, one row per restock id (idempotency)';
