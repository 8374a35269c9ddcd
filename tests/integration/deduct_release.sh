#!/usr/bin/env bash
# deduct_release.sh -- releases give units back exactly once, and the units sell again.
#
# Sell out a SKU of 1,000 units; release half of the sold orders by order id
# (each 200, duplicate:false, with the order's partition); release one of them
# again (200, duplicate:true: idempotent, no second refund); release an order
# that never existed (404 unknown_order). The 500 released units must then sell
# again to new orders, exactly 500 of them, and the SKU is sold out again:
# released units returned to a partition are not stranded there (DESIGN 5.6,
# 8.5). Redis and the audit agree at every step.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

TOTAL=1000
HALF=500

t_start_daemons --nodes 2
sku=$(t_sku release)
t_sku_load "$sku" --total "$TOTAL" --partitions 4 --min-chunk 50 --max-chunk 300

say "sell out: 1,200 qty-1 orders"
rc=0
t_loadgen --skus "$sku" --requests 1200 --connections 32 --qty 1 --quiet --order-prefix "sell$$" \
    --json "$T_DIR/sell.json" --orders-out "$T_DIR/sell.txt" >"$T_DIR/sell.out" || rc=$?
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "ok answers" "$TOTAL" "$(t_lg "$T_DIR/sell.json" answers.ok)"
assert_eq "sold_out answers" 200 "$(t_lg "$T_DIR/sell.json" answers.sold_out)"
assert_eq "available after the sell-out" 0 "$(t_sku_field "$sku" available)"

say "release $HALF of the sold orders"
awk -v n="$HALF" '$5 == "ok" && $8 == "false" && picked < n { print $1, $6; picked++ }' \
    "$T_DIR/sell.txt" >"$T_DIR/released.txt"
assert_eq "orders picked for release" "$HALF" "$(wc -l <"$T_DIR/released.txt")"
awk -v sku="$sku" '{ printf "{\"sku\":\"%s\",\"order_id\":\"%s\"}\n", sku, $1 }' \
    "$T_DIR/released.txt" >"$T_DIR/release-bodies.txt"
t_post_many /v1/release "$T_DIR/release-bodies.txt" "$T_DIR/release-answers.txt"
# every answer: 200, duplicate:false, the partition the order was deducted on
bad=$(paste -d' ' "$T_DIR/released.txt" "$T_DIR/release-answers.txt" | "$T_PY" -c '
import json, sys
bad = 0
for line in sys.stdin:
    oid, part, status, body = line.rstrip("\n").split(" ", 3)
    try:
        j = json.loads(body)
    except ValueError:
        j = {}
    if status != "200" or j.get("duplicate") is not False or str(j.get("partition")) != part:
        bad += 1
        if bad <= 5:
            print("release %s (deducted on partition %s): %s %s" % (oid, part, status, body),
                  file=sys.stderr)
print(bad)
')
assert_eq "releases not answered 200, duplicate:false, same partition" 0 "$bad"
assert_eq "Redis net deducted after releases" $((TOTAL - HALF)) "$(t_redis_sum "$sku" ded)"
assert_eq "GET available after releases" "$HALF" "$(t_sku_field "$sku" available)"
t_audit "$sku"

read -r again _ < "$T_DIR/released.txt"
t_release "$sku" "$again"
t_expect "second release of $again" 200
assert_eq "second release is a duplicate" true "$(t_json_get duplicate <<<"$T_BODY")"
t_release "$sku" "never-sold-$$"
t_expect "release of an unknown order" 404 unknown_order
assert_eq "Redis net deducted unchanged" $((TOTAL - HALF)) "$(t_redis_sum "$sku" ded)"

say "sell again: 600 new orders for the $HALF released units"
rc=0
t_loadgen --skus "$sku" --requests 600 --connections 32 --qty 1 --quiet --order-prefix "again$$" \
    --json "$T_DIR/again.json" --orders-out "$T_DIR/again.txt" >"$T_DIR/again.out" || rc=$?
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "new orders ok" "$HALF" "$(t_lg "$T_DIR/again.json" answers.ok)"
assert_eq "then sold_out" 100 "$(t_lg "$T_DIR/again.json" answers.sold_out)"
assert_eq "other answers" 0 "$(t_lg_other "$T_DIR/again.json")"
assert_eq "available at the end" 0 "$(t_sku_field "$sku" available)"
assert_eq "Redis net deducted at the end" "$TOTAL" "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

t_pass
