#!/usr/bin/env bash
# deduct_user_limit.sh -- the per-user limit holds under concurrency.
#
# per_user_limit 2 (units); one user sends 10 distinct qty-1 orders at once on
# 10 connections. Exactly 2 must be ok and 8 answered user_limit: the counter
# is taken atomically before the deduction (DESIGN 5a), so racing orders of
# one user cannot all pass the check. Redis holds 2 deducted units and the
# user's counter holds 2 orders.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_start_daemons --nodes 2
sku=$(t_sku ulimit)
t_sku_load "$sku" --total 1000 --partitions 4 --per-user-limit 2

json="$T_DIR/loadgen.json"
orders="$T_DIR/orders.txt"
rc=0
say "loadgen: user u0 sends 10 orders at once"
t_loadgen --skus "$sku" --requests 10 --connections 10 --users 1 --qty 1 --quiet \
    --json "$json" --orders-out "$orders" >"$T_DIR/loadgen.txt" || rc=$?
cat "$orders"
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "ok answers" 2 "$(t_lg "$json" answers.ok)"
assert_eq "user_limit answers" 8 "$(t_lg "$json" answers.user_limit)"
assert_eq "Redis net deducted" 2 "$(t_redis_sum "$sku" ded)"
# The counter is a hash order -> "QTY:ROUND": one entry per order held.
assert_eq "Redis per-user entries {u:SKU:u0}" 2 "$(t_rcli HLEN "{u:$sku:u0}")"
# another user is not limited by u0's orders
t_deduct "$sku" "other-1" "u1" 2
t_expect "another user's order of 2 units" 200
t_deduct "$sku" "other-2" "u1" 1
t_expect "that user's third unit" 409 user_limit
t_audit "$sku"

t_pass
