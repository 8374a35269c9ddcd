-- demo.sql -- the catalog rows `make demo` sells (scripts/demo.sh).
--
-- A SKU's master row lives in MySQL (table `sku`, sql/migrations/001_baseline.sql); the demo
-- creates its rows here and then loads each one with `stockctl sku load SKU`,
-- the catalog path: the scheduler asks a sync worker for the stored row and
-- builds the Redis pool and partitions from it.
--
-- INSERT IGNORE: running the file again (or against a database that already
-- holds these SKUs) changes nothing.
--
-- Chunks: a grant moves between min_chunk and max_chunk units from the pool
-- to one partition; the scheduler sizes it to about one second of that
-- partition's sales and shrinks it as the pool empties. The bounds here are
-- about 1/100 and 1/5 of a partition's fair share (total / partitions): small
-- enough that partitions run dry together at the end, large enough that the
-- first grants are not a stream of tiny refills.
--
-- `make demo` sells demo-10k, demo-100k and demo-1m; `make demo SMALL=1`
-- sells demo-1k, demo-10k and demo-100k.

USE stock;

INSERT IGNORE INTO sku (sku_id, name, total, start_ms, per_user_limit, partitions, min_chunk, max_chunk)
VALUES
    ('demo-1k',   'Demo headphones (1,000 units)',         1000, 0, 0,  2,   5,   100),
    ('demo-10k',  'Demo sneakers (10,000 units)',         10000, 0, 0,  4,  25,   500),
    ('demo-100k', 'Demo phone case (100,000 units)',     100000, 0, 0,  8, 125,  2500),
    ('demo-1m',   'Demo coffee beans (1,000,000 units)', 1000000, 0, 0, 16, 625, 12500);
