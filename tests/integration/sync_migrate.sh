#!/usr/bin/env bash
# sync_migrate.sh -- schema migrations on a real MariaDB: fresh, upgrade in place, races, refusals.
#
# The runner (sync-worker/sw_migrate.c) carries sql/migrations compiled in; N is
# the number of files there. Every case works in databases of its own
# (mig_<pid>_<case>, dropped on exit; -o mysql.database=...), never in the
# harness's `stock`, except the last, which asks the running daemons (whose
# `stock` infra.sh already migrated) through `stockctl db migrate`.
#   fresh     --migrate on an empty server: schema_version lists 1..N; a second
#             run changes nothing (same rows, same applied_at, same tables).
#   upgrade   a database made the old way (the baseline statements plus the row
#             version = 1, as sql/schema.sql used to) with rows in every table,
#             upgraded by the fault build with one more migration
#             (STOCK_FAULT_MIGRATION_EXTRA, compiled only into
#             bin/tests/stock-syncd-fault): version N+1 recorded, rows kept,
#             the new column there. Then a crash after the DDL but before the
#             version row (the row deleted by hand): the next run re-applies it.
#   race      two runners at once on one fresh database, the extra migration
#             holding the lock for a second (DO SLEEP(1)): both exit 0 and
#             every version is recorded once.
#   too new   a database at version 999: --migrate and a normal start both exit
#             non-zero naming both versions; the worker never serves.
#   stockctl  `stockctl db migrate` through the scheduler answers version N.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_require_infra
SYNCD="$T_BIN/stock-syncd"
FAULT="$T_BIN/tests/stock-syncd-fault"
[ -x "$SYNCD" ] || fail "$SYNCD missing (make)"
[ -x "$FAULT" ] || fail "$FAULT missing (make builds it)"
N=$(find "$T_ROOT/sql/migrations" -maxdepth 1 -name '[0-9][0-9][0-9]_*.sql' | wc -l)
[ "$N" -ge 1 ] || fail "no migrations in $T_ROOT/sql/migrations"
EXPECT_1_N=$(seq -s, 1 "$N")
EXPECT_1_N1=$(seq -s, 1 $((N + 1)))
RUN_TIMEOUT_S=60
WORK=$(mktemp -d /tmp/stock-mig-XXXXXX)
DBS=()

# shellcheck disable=SC2317 # run by the exit hook
drop_dbs() {
    local d
    for d in "${DBS[@]}"; do
        t_mysql -e "DROP DATABASE IF EXISTS \`$d\`" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
t_at_exit drop_dbs

# new_db CASE: sets db to a fresh database name of this run (dropped on exit).
new_db() {
    db="mig_$$_$1"
    DBS+=("$db")
    t_mysql -e "DROP DATABASE IF EXISTS \`$db\`" || fail "cannot drop $db"
}

# run_migrate BIN DB [env...]: BIN --migrate on DB; output in $WORK/DB.out, exit code echoed.
run_migrate() {
    local bin=$1 db=$2 rc=0
    shift 2
    env "$@" timeout "$RUN_TIMEOUT_S" "$bin" --migrate -o "mysql.host=$MYSQL_HOST" \
        -o "mysql.port=$MYSQL_PORT" -o "mysql.user=${MYSQL_USER:-root}" \
        -o "mysql.database=$db" -o mysql.retry_attempts_max=3 >>"$WORK/$db.out" 2>&1 || rc=$?
    echo "$rc"
}

versions() { t_mysql_q "SELECT GROUP_CONCAT(version ORDER BY version) FROM \`$1\`.schema_version"; }
schema_dump() {
    local t
    t_mysql_q "SELECT version, applied_at FROM \`$1\`.schema_version ORDER BY version"
    for t in $(t_mysql_q "SHOW TABLES FROM \`$1\`"); do
        t_mysql_q "SHOW CREATE TABLE \`$1\`.\`$t\`" | sed 's/ AUTO_INCREMENT=[0-9]*//'
    done
}

# The test-only migration N+1: a real change to a baseline table, a new table,
# and comment lines holding ';' that the splitter must not cut at.
EXTRA="$WORK/extra.sql"
cat >"$EXTRA" <<'EOF'
-- test_extra -- a test-only migration; a comment ending in a semicolon;
# another comment style;
ALTER TABLE sku
    ADD COLUMN IF NOT EXISTS mig_note VARCHAR(32) NOT NULL DEFAULT 'none'
        COMMENT 'added by the test-only migration';

CREATE TABLE IF NOT EXISTS mig_probe (
    id INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;
EOF
SLOW="$WORK/slow.sql"
{ cat "$EXTRA"; echo "DO SLEEP(1);"; } >"$SLOW"

# ---- fresh ---------------------------------------------------------------------
new_db fresh
assert_eq "fresh: --migrate exit" 0 "$(run_migrate "$SYNCD" "$db")"
assert_eq "fresh: versions" "$EXPECT_1_N" "$(versions "$db")"
for t in sku stock_partition deduction_detail restock schema_version; do
    assert_eq "fresh: table $t" 1 \
        "$(t_mysql_q "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$db' AND table_name='$t'")"
done
before=$(schema_dump "$db")
sleep 1 # a second run that wrote anything would show a later applied_at
assert_eq "fresh: second --migrate exit" 0 "$(run_migrate "$SYNCD" "$db")"
after=$(schema_dump "$db")
[ "$before" = "$after" ] || fail "a second run changed the schema:\n$before\n---\n$after"
say "ok: a second run changed nothing"
grep -q "before=$N after=$N" "$WORK/$db.out" || fail "second run did not log before=$N after=$N"

# ---- upgrade in place -----------------------------------------------------------
new_db upgrade
{
    echo "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    echo "USE \`$db\`;"
    cat "$T_ROOT/sql/migrations/001_baseline.sql"
    echo "INSERT IGNORE INTO schema_version (version) VALUES (1);"
    echo "INSERT INTO sku (sku_id, total, partitions, min_chunk, max_chunk) VALUES ('m1', 100, 2, 1, 10);"
    echo "INSERT INTO stock_partition (sku_id, partition_id, synced_seq, deducted, detail_rows) VALUES ('m1', 0, 2, 3, 2);"
    echo "INSERT INTO deduction_detail (sku_id, partition_id, seq, order_id, qty, sub_domain, created_ms) VALUES ('m1', 0, 1, 'o1', 1, 0, 1), ('m1', 0, 2, 'o2', 2, 0, 2);"
    echo "INSERT INTO restock (restock_id, sku_id, units) VALUES ('r1', 'm1', 50);"
} | t_mysql || fail "cannot build the old-style database $db"
assert_eq "upgrade: old database at version" 1 "$(versions "$db")"
assert_eq "upgrade: exit" 0 "$(run_migrate "$FAULT" "$db" STOCK_FAULT_MIGRATION_EXTRA="$EXTRA")"
assert_eq "upgrade: versions" "$EXPECT_1_N1" "$(versions "$db")"
grep -q "before=1 after=$((N + 1))" "$WORK/$db.out" || fail "upgrade did not log before=1 after=$((N + 1))"
assert_eq "upgrade: sku row kept, new column defaulted" "m1	100	2	none" \
    "$(t_mysql_q "SELECT sku_id, total, partitions, mig_note FROM \`$db\`.sku")"
assert_eq "upgrade: partition row kept" "2	3	2" \
    "$(t_mysql_q "SELECT synced_seq, deducted, detail_rows FROM \`$db\`.stock_partition")"
assert_eq "upgrade: details kept" "2	3" \
    "$(t_mysql_q "SELECT COUNT(*), SUM(qty) FROM \`$db\`.deduction_detail")"
assert_eq "upgrade: restock kept" "r1	50" "$(t_mysql_q "SELECT restock_id, units FROM \`$db\`.restock")"
assert_eq "upgrade: new table" 0 "$(t_mysql_q "SELECT COUNT(*) FROM \`$db\`.mig_probe")"
# A crash after the migration's DDL and before its version row: the row is
# missing, the DDL done. The next run applies it again, harmlessly.
t_mysql_q "DELETE FROM \`$db\`.schema_version WHERE version = $((N + 1))" >/dev/null
assert_eq "re-run after a crash: exit" 0 \
    "$(run_migrate "$FAULT" "$db" STOCK_FAULT_MIGRATION_EXTRA="$EXTRA")"
assert_eq "re-run after a crash: versions" "$EXPECT_1_N1" "$(versions "$db")"
assert_eq "re-run after a crash: rows kept" "m1	100	none" \
    "$(t_mysql_q "SELECT sku_id, total, mig_note FROM \`$db\`.sku")"
# The release build knows only N: this database is now newer than it.
assert_eq "release build on an N+1 database: exit" 1 "$(run_migrate "$SYNCD" "$db")"

# ---- two runners at once ------------------------------------------------------------
new_db race
run_migrate "$FAULT" "$db" STOCK_FAULT_MIGRATION_EXTRA="$SLOW" >"$WORK/race1.rc" &
p1=$!
run_migrate "$FAULT" "$db" STOCK_FAULT_MIGRATION_EXTRA="$SLOW" >"$WORK/race2.rc" &
p2=$!
wait "$p1" "$p2" || true
assert_eq "race: runner 1 exit" 0 "$(cat "$WORK/race1.rc")"
assert_eq "race: runner 2 exit" 0 "$(cat "$WORK/race2.rc")"
assert_eq "race: versions" "$EXPECT_1_N1" "$(versions "$db")"
assert_eq "race: each version once" "$((N + 1))" \
    "$(t_mysql_q "SELECT COUNT(*) FROM \`$db\`.schema_version")"
assert_eq "race: migration N+1 applied by one runner" 1 \
    "$(grep -c "applied version=$((N + 1))" "$WORK/$db.out")"

# ---- a database newer than the binary --------------------------------------------
new_db toonew
assert_eq "too new: first --migrate exit" 0 "$(run_migrate "$SYNCD" "$db")"
t_mysql_q "INSERT INTO \`$db\`.schema_version (version) VALUES (999)" >/dev/null
assert_eq "too new: --migrate exit" 1 "$(run_migrate "$SYNCD" "$db")"
assert_contains "too new: --migrate names both versions" "$(cat "$WORK/$db.out")" \
    "is at schema version 999, newer than this binary's $N"
rc=0
out=$(timeout "$RUN_TIMEOUT_S" "$SYNCD" -o "mysql.host=$MYSQL_HOST" -o "mysql.port=$MYSQL_PORT" \
    -o "mysql.database=$db" -o "syncd.listen=ipc://$WORK/toonew.ipc" 2>&1) || rc=$?
assert_eq "too new: worker start exit" 1 "$rc"
assert_contains "too new: worker names both versions" "$out" \
    "is at schema version 999, newer than this binary's $N"
case "$out" in *"server listening"*) fail "the worker served a database newer than itself" ;; esac
say "ok: the worker refused to start"

# ---- stockctl db migrate through the scheduler ------------------------------------
t_start_daemons --nodes 1
trap t_run_exit_hooks EXIT # t_start_daemons armed t_cleanup alone; the hooks call it
out=$(t_ctl db migrate) || fail "stockctl db migrate failed: $out"
assert_eq "stockctl db migrate" "schema version $N (up to date)" "$out"
json=$(t_ctl --json db migrate) || fail "stockctl --json db migrate failed: $json"
assert_eq "db migrate: schema_before" "$N" "$(t_json_get schema_before <<<"$json")"
assert_eq "db migrate: schema_after" "$N" "$(t_json_get schema_after <<<"$json")"
assert_eq "db migrate: applied" "false" "$(t_json_get applied <<<"$json")"

t_pass
