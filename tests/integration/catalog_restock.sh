#!/usr/bin/env bash
# catalog_restock.sh -- a restock adds its units once per restock id, in MySQL and Redis.
#
# DESIGN 6: `stockctl sku restock SKU UNITS --id RID` adds UNITS to sku.total
# (the catalog, through a sync worker) and then to the pool in Redis, each once
# per restock id:
#   - the same restock twice: MySQL's total and Redis's pool total and avail
#     rise once, one restock row; the second answer says "already applied";
#   - a restock id reused with other units, or for another SKU: an error, and
#     nothing changes;
#   - a restock that reached MySQL but not Redis (the scheduler died between the
#     two steps; made here by writing the MySQL side by hand) heals when the
#     same command is repeated: Redis catches up, MySQL does not count it twice;
#   - the audit holds after each step.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

cat_sql() {
    timeout "$T_CMD_TIMEOUT_S" mariadb --protocol=tcp -h "${MYSQL_HOST:-127.0.0.1}" \
        -P "${MYSQL_PORT:?}" -u "${MYSQL_USER:-root}" --connect-timeout=5 -N -B \
        "${MYSQL_DB:-stock}" -e "$1"
}

t_start_daemons --nodes 2
sku=$(t_sku restock)
other=$(t_sku restock2)
t_sku_load "$sku" --total 1000 --partitions 2
t_sku_load "$other" --total 10 --partitions 1
for i in 1 2 3; do
    t_deduct "$sku" "o-$$-$i" "u$i" 1
    t_expect "deduction $i" 200
done
avail0=$(t_redis_pool "$sku" avail)

# ---- the same restock twice ---------------------------------------------------------------
rid="r1-$$-$RANDOM"
out=$(t_ctl sku restock "$sku" 300 --id "$rid" 2>&1) || fail "restock $rid failed: $out"
assert_eq "first restock" "restock $rid: 300 units added" "$out"
out=$(t_ctl sku restock "$sku" 300 --id "$rid" 2>&1) || fail "restock $rid again failed: $out"
assert_eq "the same restock again" "restock $rid already applied (nothing changed)" "$out"
assert_eq "MySQL sku.total after restocking twice" 1300 \
    "$(cat_sql "select total from sku where sku_id='$sku'")"
assert_eq "MySQL restock rows of $rid" "1 300" \
    "$(cat_sql "select count(*), sum(units) from restock where restock_id='$rid'" | tr '\t' ' ')"
assert_eq "Redis pool total after restocking twice" 1300 "$(t_redis_pool "$sku" total)"
assert_eq "Redis pool avail after restocking twice" $((avail0 + 300)) "$(t_redis_pool "$sku" avail)"
t_audit "$sku"

# ---- a reused id with other units, or for another SKU ------------------------------------
rc=0
out=$(t_ctl sku restock "$sku" 200 --id "$rid" 2>&1) || rc=$?
assert_eq "restock id reused with other units: exit" 1 "$rc"
assert_contains "restock id reused with other units: error" "$out" "restock_conflict"
rc=0
out=$(t_ctl sku restock "$other" 300 --id "$rid" 2>&1) || rc=$?
assert_eq "restock id reused for another SKU: exit" 1 "$rc"
assert_contains "restock id reused for another SKU: error" "$out" "restock_conflict"
assert_eq "MySQL sku.total after the refusals" 1300 \
    "$(cat_sql "select total from sku where sku_id='$sku'")"
assert_eq "MySQL total of the other SKU" 10 "$(cat_sql "select total from sku where sku_id='$other'")"
assert_eq "Redis pool total after the refusals" 1300 "$(t_redis_pool "$sku" total)"
assert_eq "Redis pool total of the other SKU" 10 "$(t_redis_pool "$other" total)"

# ---- MySQL applied, Redis not: the repeated command heals -----------------------------------
rid2="r2-$$-$RANDOM"
cat_sql "insert into restock (restock_id, sku_id, units) values ('$rid2', '$sku', 50);
         update sku set total = total + 50 where sku_id = '$sku'" ||
    fail "cannot write the MySQL half of $rid2"
assert_eq "MySQL total with the half-done restock" 1350 \
    "$(cat_sql "select total from sku where sku_id='$sku'")"
assert_eq "Redis pool total before healing" 1300 "$(t_redis_pool "$sku" total)"
out=$(t_ctl --json sku restock "$sku" 50 --id "$rid2") || fail "restock $rid2 failed: $out"
assert_eq "healing restock: the catalog had it" false "$(t_json_get catalog_applied <<<"$out")"
assert_eq "healing restock: the pool took it" true "$(t_json_get pool_applied <<<"$out")"
assert_eq "MySQL total after healing (not counted twice)" 1350 \
    "$(cat_sql "select total from sku where sku_id='$sku'")"
assert_eq "Redis pool total after healing" 1350 "$(t_redis_pool "$sku" total)"
out=$(t_ctl sku restock "$sku" 50 --id "$rid2" 2>&1) || fail "restock $rid2 again failed: $out"
assert_eq "healed restock again" "restock $rid2 already applied (nothing changed)" "$out"
assert_eq "GET /v1/skus total" 1350 "$(t_sku_field "$sku" total)"
t_audit "$sku"

# ---- refusals --------------------------------------------------------------------------------
rc=0
out=$(t_ctl sku restock "$(t_sku restocknone)" 5 --id "r3-$$" 2>&1) || rc=$?
assert_eq "restock of a SKU not loaded: exit" 1 "$rc"
assert_contains "restock of a SKU not loaded: error" "$out" "unknown_sku"
rc=0
out=$(t_ctl sku restock "$sku" 5 2>&1) || rc=$?
assert_eq "restock without --id: usage error" 2 "$rc"

t_pass
