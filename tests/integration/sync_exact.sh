#!/usr/bin/env bash
# sync_exact.sh -- every detail of a sale reaches MySQL exactly once, soon after the sale.
#
# DESIGN 7 and 8.3: a 20,000-request sale (qty 1-3, 64 connections, 10% of the
# oks released again) on a SKU of 8 partitions over 2 nodes and one sync
# worker. Once the load ends, shipping must drain within ship.interval_ms + 2 s
# (the timer ships the tail; 3 s with the shipped conf), and then:
#   - MySQL's SUM(qty) of the SKU == Redis's net deducted == the loadgen's
#     units_ok - units_released (what the API answered);
#   - every (partition, seq) is in deduction_detail once; per partition the
#     rows, max seq, stock_partition.synced_seq and detail_rows equal Redis's
#     seq, and SUM(qty) == stock_partition.deducted == Redis's ded;
#   - the streams are trimmed (ack == seq, XLEN 0) and the registry's
#     details_pending sums to 0;
#   - `stockctl audit` exits 0, and the MySQL numbers it prints (--json) are the
#     ones a plain `select sum(qty), count(*)` on deduction_detail gives.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

REQUESTS=20000
CONNS=64
PARTS=8
DRAIN_SLACK_MS=2000   # on top of ship.interval_ms

t_start_daemons --nodes 2
t_at_exit t_tail_syncd_logs
interval_ms=$(t_conf_value stock-node node.ini ship.interval_ms)
sku=$(t_sku syncexact)
t_sku_load "$sku" --total 1000000 --partitions "$PARTS" --min-chunk 100 --max-chunk 5000

say "sale: $REQUESTS requests, qty 1-3, $CONNS connections, release ratio 0.1"
rc=0
t_loadgen --skus "$sku" --requests "$REQUESTS" --connections "$CONNS" --qty 1-3 \
    --release-ratio 0.1 --seed 7 --quiet --order-prefix "ex$$" --json "$T_DIR/lg.json" \
    >"$T_DIR/lg.out" 2>&1 || rc=$?
cat "$T_DIR/lg.out"
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "answers other than ok" 0 "$(t_lg_other "$T_DIR/lg.json")"
assert_eq "ok answers" "$REQUESTS" "$(t_lg "$T_DIR/lg.json" answers.ok)"
released=$(t_lg "$T_DIR/lg.json" units_released)
net=$(($(t_lg "$T_DIR/lg.json" units_ok) - released))
assert_lt "some units were released" 0 "$released"

# Shipping drains within interval + slack of the load's end.
t_wait_synced "$sku" 20 0.05
assert_le "sync drained within ship.interval_ms + ${DRAIN_SLACK_MS} ms of the sale's end" \
    "$T_SYNC_WAIT_MS" $((interval_ms + DRAIN_SLACK_MS))

redis_ded=$(t_redis_sum "$sku" ded)
assert_eq "Redis net deducted == units ok - released (API)" "$net" "$redis_ded"
t_assert_synced_exact "$sku"
assert_eq "MySQL SUM(qty) == Redis net deducted" "$redis_ded" "$T_MYSQL_SUM"
t_wait_acked "$sku" 5
pending=$(t_registry_pending "$sku")
[ -n "$pending" ] || fail "stockctl registry has no details_pending for $sku: $(t_registry_sku "$sku")"
assert_eq "registry: sum of details_pending" 0 "$pending"

t_audit "$sku"
audit=$(t_ctl --json audit "$sku") || fail "stockctl --json audit $sku failed: $audit"
read -r a_sum a_rows <<<"$(t_audit_mysql_numbers <<<"$audit")" ||
    fail "no MySQL numbers in the audit: $audit"
row=$(t_mysql_q "select sku_id, sum(qty), count(*) from deduction_detail
                 where sku_id=$(t_sql_str "$sku") group by sku_id")
IFS=$'\t' read -r q_sku q_sum q_rows <<<"$row"
assert_eq "mariadb: the SKU" "$sku" "$q_sku"
assert_eq "audit's MySQL SUM(qty) == mariadb's" "$q_sum" "$a_sum"
assert_eq "audit's MySQL detail rows == mariadb's count(*)" "$q_rows" "$a_rows"
say "figures: requests $REQUESTS, net units $net, detail rows $q_rows, drain ${T_SYNC_WAIT_MS} ms"
t_stop_daemons
say "nodes' final ship lines (batch sizes, lag from a detail's creation to its ack):"
t_ship_final

t_pass
