#!/usr/bin/env bash
# deduct_oversell.sh -- no oversell and no stranded stock under concurrency and refills.
#
# A SKU of 5,000 units in 8 partitions (chunks of 50..500, so partitions must
# be refilled and flip sub-domains many times) is hit by 20,000 qty-1 orders,
# all distinct, from 64 keep-alive connections. Exactly 5,000 must be ok and
# 15,000 sold_out, nothing else: one more ok is oversell (DESIGN 8.2), one fewer
# is stranded stock (8.5). Then the API, Redis and `stockctl audit` must agree:
# available 0, net deducted 5,000 (8.3), conservation (8.1), and the registry
# shows that grants and flips did happen (or the test did not test them).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

TOTAL=5000
REQUESTS=20000

t_start_daemons --nodes 2
sku=$(t_sku oversell)
t_sku_load "$sku" --total "$TOTAL" --partitions 8 --min-chunk 50 --max-chunk 500

say "loadgen: $REQUESTS qty-1 orders, 64 connections"
json="$T_DIR/loadgen.json"
orders="$T_DIR/orders.txt"
rc=0
t_loadgen --skus "$sku" --requests "$REQUESTS" --connections 64 --qty 1 --quiet \
    --json "$json" --orders-out "$orders" >"$T_DIR/loadgen.txt" || rc=$?
cat "$T_DIR/loadgen.txt"
assert_eq "loadgen exit code" 0 "$rc"

assert_eq "answers received" "$REQUESTS" "$(wc -l <"$orders")"
assert_eq "distinct order ids sent" "$REQUESTS" "$(cut -d' ' -f1 "$orders" | sort -u | wc -l)"
assert_eq "new oks" "$TOTAL" "$(t_lg "$json" answers.ok)"
assert_eq "sold_out answers" $((REQUESTS - TOTAL)) "$(t_lg "$json" answers.sold_out)"
assert_eq "duplicate answers" 0 "$(t_lg "$json" answers.duplicate)"
assert_eq "other answers" 0 "$(t_lg_other "$json")"

assert_eq "GET /v1/skus available" 0 "$(t_sku_field "$sku" available)"
assert_eq "GET /v1/skus sold" "$TOTAL" "$(t_sku_field "$sku" sold)"
assert_eq "Redis: net deducted over partitions" "$TOTAL" "$(t_redis_sum "$sku" ded)"
assert_eq "Redis: pool avail" 0 "$(t_redis_pool "$sku" avail)"
assert_eq "Redis: units left in partitions" 0 \
    "$(($(t_redis_sum "$sku" s0) + $(t_redis_sum "$sku" s1)))"
t_audit "$sku"

reg=$(t_registry_sku "$sku")
grants=$(t_json_sum grants <<<"$reg")
flips=$(t_json_sum flips <<<"$reg")
assert_lt "registry: sum of grants above one per partition" 8 "$grants"
assert_lt "registry: flips happened" 0 "$flips"
assert_eq "Redis agrees on grants" "$grants" "$(t_redis_sum "$sku" grants)"

t_pass
