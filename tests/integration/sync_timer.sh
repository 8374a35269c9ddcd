#!/usr/bin/env bash
# sync_timer.sh -- both shipping triggers: the timer (a trickle) and the threshold (a burst).
#
# DESIGN 7: a partition's pending details go out when ship.threshold_details
# are pending or when ship.interval_ms has passed, whichever is first.
#   - Timer: 10 deductions at about 1 per second (one curl each) on a SKU of
#     one partition, so its details come about one interval apart and never
#     near the threshold. Each detail must be in MySQL within ship.interval_ms
#     + 1 s of its answer: polled by order id right after the answer, bounded.
#     (A warm-up deduction, synced first, makes the node know the SKU:
#     discovering a new SKU is a separate, once-a-second step.)
#   - Threshold: a burst of 5,000 qty-1 deductions from 64 connections on a SKU
#     of 2 partitions (one per node), so each partition gets pending details
#     far faster than threshold per interval; the nodes' periodic summary lines
#     (every 10 s when there was traffic) must show batch_max >= the threshold.
#     Waited for, bounded.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

TRICKLE=10
BURST=5000
BURST_CONNS=64
SUMMARY_WAIT_S=25   # the summary period is 10 s; a line may have just gone

t_start_daemons --nodes 2
t_at_exit t_tail_syncd_logs
interval_ms=$(t_conf_value stock-node node.ini ship.interval_ms)
threshold=$(t_conf_value stock-node node.ini ship.threshold_details)
bound_ms=$((interval_ms + 1000))

# ---- timer path ---------------------------------------------------------------------
sku=$(t_sku synctimer)
t_sku_load "$sku" --total 100000 --partitions 1 --min-chunk 10 --max-chunk 1000
t_deduct "$sku" "warm$$" u0 1
t_expect "warm-up deduction" 200
t_wait_synced "$sku" 15
say "timer path: $TRICKLE deductions at 1/s, each in MySQL within $bound_ms ms of its answer"
lags=()
for ((i = 0; i < TRICKLE; i++)); do
    t0=$(t_now_ms)
    order="tick$$-$i"
    t_deduct "$sku" "$order" "v$i" 1
    t_expect "trickle deduction $i" 200
    answered=$(t_now_ms)
    arrived=""
    while :; do
        n=$(t_mysql_q "select count(*) from deduction_detail
                       where sku_id=$(t_sql_str "$sku") and order_id=$(t_sql_str "$order")")
        if [ "$n" = 1 ]; then
            arrived=$(t_now_ms)
            break
        fi
        [ "$n" = 0 ] || fail "order $order has $n detail rows in MySQL"
        [ $(($(t_now_ms) - answered)) -le $((bound_ms + 500)) ] || break
        sleep 0.02
    done
    [ -n "$arrived" ] || fail "detail of $order not in MySQL $((bound_ms + 500)) ms after its answer"
    lag=$((arrived - answered))
    lags+=("$lag")
    assert_le "detail of $order in MySQL within interval + 1 s (ms)" "$lag" "$bound_ms"
    left=$((t0 + 1000 - $(t_now_ms)))
    if [ "$left" -gt 0 ]; then sleep "0.$(printf '%03d' "$left")"; fi
done
say "timer path lags (answer -> row in MySQL, ms): ${lags[*]}"
t_wait_synced "$sku" 10
t_assert_synced_exact "$sku"

# ---- threshold path ----------------------------------------------------------------------
bsku=$(t_sku syncburst)
t_sku_load "$bsku" --total 100000 --partitions 2 --min-chunk 100 --max-chunk 5000
# the nodes learn new SKUs about once a second: let them, so the burst is shipped by size
t_deduct "$bsku" "bwarm$$-0" u0 1
t_deduct "$bsku" "bwarm$$-1" u1 1
t_wait_synced "$bsku" 15
say "threshold path: $BURST qty-1 deductions from $BURST_CONNS connections on 2 partitions"
rc=0
t_loadgen --skus "$bsku" --requests "$BURST" --connections "$BURST_CONNS" --qty 1 --quiet \
    --order-prefix "burst$$" --json "$T_DIR/burst.json" >"$T_DIR/burst.out" 2>&1 || rc=$?
cat "$T_DIR/burst.out"
assert_eq "burst loadgen exit code" 0 "$rc"
assert_eq "burst: ok answers" "$BURST" "$(t_lg "$T_DIR/burst.json" answers.ok)"
say "burst: $(t_lg "$T_DIR/burst.json" throughput_per_s) deductions/s"
t_wait_synced "$bsku" 10
t_assert_synced_exact "$bsku"

# The summary lines carry counters since start: the burst's batches are in the
# first line written after it. Wait for one per node with batch_max >= threshold.
burst_end_ms=$(t_now_ms)
deadline=$((burst_end_ms + SUMMARY_WAIT_S * 1000))
best=0
while :; do
    best=$(t_node_summaries | sed -n 's/.* batch_max=\([0-9][0-9]*\).*/\1/p' | sort -n | tail -n 1)
    best=${best:-0}
    [ "$best" -lt "$threshold" ] || break
    [ "$(t_now_ms)" -lt "$deadline" ] ||
        fail "no node summary with batch_max >= $threshold within ${SUMMARY_WAIT_S}s of the burst: $(t_node_summaries | tail -n 4)"
    sleep 0.5
done
assert_le "largest batch shipped (batch_max) reaches the threshold" "$threshold" "$best"
say "node summaries:"
t_node_summaries | tail -n 2

t_pass
