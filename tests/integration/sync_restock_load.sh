#!/usr/bin/env bash
# sync_restock_load.sh -- restock and load are idempotent, in Redis and in MySQL.
#
# DESIGN 6: a restock adds its units to the pool and to MySQL's sku.total once
# per restock id, however often it is retried; loading a SKU again changes
# nothing (neither the catalog row nor the pool, nor the partitions' state).
#   - load (1,000 units, 4 partitions), sell 10 units, sync; load again with
#     the same arguments, then with another total: Redis pool total/avail,
#     partitions' ded/seq and MySQL sku.total/partitions and stock_partition
#     are unchanged;
#   - `stockctl sku restock SKU 500 --id R1` twice (the second answers
#     applied:false), then R1 with 600 units (refused, or applied:false): pool
#     total and avail and sku.total up by 500 once, one restock row for R1; a
#     restock R2 of 250 then adds 250;
#   - audit exits 0 after each step.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

TOTAL=1000
PARTS=4

t_start_daemons --nodes 2
t_at_exit t_tail_syncd_logs
sku=$(t_sku syncrestock)
q_sku=$(t_sql_str "$sku")

# snapshot: Redis pool total+avail, partitions' seq/ded, MySQL sku row, stock_partition rows
snapshot() {
    printf 'pool total=%s avail=%s parts=%s\n' "$(t_redis_pool "$sku" total)" \
        "$(t_redis_pool "$sku" avail)" "$(t_redis_pool "$sku" parts)"
    t_redis_parts "$sku" | awk '{ print "redis p" $1, "seq=" $2, "ded=" $3 }'
    t_mysql_q "select concat('mysql sku total=', total, ' partitions=', partitions)
               from sku where sku_id=$q_sku"
    t_mysql_q "select concat('mysql p', partition_id, ' synced=', synced_seq,
                             ' deducted=', deducted) from stock_partition
               where sku_id=$q_sku order by partition_id"
}

# ---- load twice ---------------------------------------------------------------------
out=$(t_ctl --json sku load "$sku" --total "$TOTAL" --partitions "$PARTS") ||
    fail "first sku load failed: $out"
assert_eq "first load creates the SKU" true "$(t_json_get created <<<"$out")"
assert_eq "MySQL sku.total after the load" "$TOTAL" \
    "$(t_mysql_q "select total from sku where sku_id=$q_sku")"
assert_eq "Redis pool total after the load" "$TOTAL" "$(t_redis_pool "$sku" total)"
for ((i = 0; i < 10; i++)); do
    t_deduct "$sku" "o$$-$i" "u$i" 1
    t_expect "deduction $i" 200
done
t_wait_synced "$sku" 15
before=$(snapshot)
printf '%s\n' "$before"

out=$(t_ctl --json sku load "$sku" --total "$TOTAL" --partitions "$PARTS") ||
    fail "second sku load (same arguments) failed: $out"
assert_eq "second load with the same arguments creates nothing" false \
    "$(t_json_get created <<<"$out")"
rc=0
out=$(t_ctl --json sku load "$sku" --total $((TOTAL * 5)) --partitions $((PARTS * 2))) || rc=$?
say "third load, another total and partition count: exit $rc: $out"
if [ "$rc" -eq 0 ]; then
    assert_eq "a load with other arguments creates nothing" false "$(t_json_get created <<<"$out")"
fi
after=$(snapshot)
[ "$before" = "$after" ] || fail "loading again changed the SKU: before: $before | after: $after"
say "ok: loading again changed nothing in Redis or MySQL"
assert_eq "Redis net deducted kept" 10 "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

# ---- restock twice with one id ---------------------------------------------------------------
avail0=$(t_redis_pool "$sku" avail)
rid="r1-$$-$RANDOM"
out=$(t_ctl --json sku restock "$sku" 500 --id "$rid") || fail "restock $rid failed: $out"
assert_eq "first restock $rid applied" true "$(t_json_get applied <<<"$out")"
out=$(t_ctl --json sku restock "$sku" 500 --id "$rid") || fail "restock $rid again failed: $out"
assert_eq "second restock $rid applied" false "$(t_json_get applied <<<"$out")"
rc=0
out=$(t_ctl --json sku restock "$sku" 600 --id "$rid") || rc=$?
say "restock $rid a third time with other units: exit $rc: $out"
if [ "$rc" -eq 0 ]; then
    assert_eq "restock $rid with other units applied" false "$(t_json_get applied <<<"$out")"
fi
assert_eq "Redis pool total after restocking $rid twice" $((TOTAL + 500)) \
    "$(t_redis_pool "$sku" total)"
assert_eq "Redis pool avail after restocking $rid twice" $((avail0 + 500)) \
    "$(t_redis_pool "$sku" avail)"
assert_eq "MySQL sku.total after restocking $rid twice" $((TOTAL + 500)) \
    "$(t_mysql_q "select total from sku where sku_id=$q_sku")"
assert_eq "MySQL restock rows for $rid" "1 500" \
    "$(t_mysql_q "select count(*), coalesce(sum(units),0) from restock
                  where restock_id=$(t_sql_str "$rid") and sku_id=$q_sku" | tr '\t' ' ')"
t_audit "$sku"

rid2="r2-$$-$RANDOM"
out=$(t_ctl --json sku restock "$sku" 250 --id "$rid2") || fail "restock $rid2 failed: $out"
assert_eq "Redis pool total after a second restock id" $((TOTAL + 750)) \
    "$(t_redis_pool "$sku" total)"
assert_eq "MySQL sku.total after a second restock id" $((TOTAL + 750)) \
    "$(t_mysql_q "select total from sku where sku_id=$q_sku")"
assert_eq "GET /v1/skus total" $((TOTAL + 750)) "$(t_sku_field "$sku" total)"
t_audit "$sku"

t_pass
