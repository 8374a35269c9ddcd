#!/usr/bin/env bash
# sync_dup_batch.sh -- lost acks: the node resends, MySQL still counts each detail once.
#
# DESIGN 7: a batch without an ack is sent again, and the worker skips the
# seqs at or below synced_seq, so an ack lost on the way (the batch applied,
# the node never told) changes nothing in MySQL. End to end with the test-only
# build bin/tests/stock-syncd-fault under STOCK_FAULT_DROP_ACKS=3: it applies
# the first 3 detail batches and answers none of them.
#
# The fault build runs as THE sync worker of the directory, started by the same
# start.sh with the same options as a real one: a bin dir of this test's own
# holds links to the real scheduler and node and a copy of the fault build
# named stock-syncd (a copy, not a link, so stop.sh, which checks the program
# name of a pid, owns it). A small sale (2,000 qty-1 deductions at 1,000/s over
# 4 partitions on 2 nodes). Then:
#   - the worker logged 3 withheld acks, the nodes count >= 3 resends and the
#     worker >= 1 duplicate detail skipped (its summary lines);
#   - MySQL: per partition rows == seq == synced_seq, no duplicate (partition,
#     seq), SUM(qty) == Redis net deducted == oks; streams trimmed; audit 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

DROP_ACKS=3
REQUESTS=2000
RATE=1000
CONVERGE_S=30   # ack timeout (3 s) + backoff, a few rounds

fault_bin="$T_BIN/tests/stock-syncd-fault"
[ -x "$fault_bin" ] || fail "$fault_bin missing (make test-bins)"
FAULT_BIN_DIR=$(mktemp -d /tmp/stock-t-faultbin-XXXXXX)
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup_bin_dir() { rm -rf "$FAULT_BIN_DIR"; }
trap cleanup_bin_dir EXIT   # replaced by t_start_daemons' trap; hooked again below
for b in stock-scheduler stock-node; do ln -s "$T_BIN/$b" "$FAULT_BIN_DIR/$b"; done
cp "$fault_bin" "$FAULT_BIN_DIR/stock-syncd"

STOCK_BIN=$FAULT_BIN_DIR STOCK_FAULT_DROP_ACKS=$DROP_ACKS t_start_daemons --nodes 2
t_at_exit cleanup_bin_dir
t_at_exit t_tail_syncd_logs
syncd_pid=$(t_pid syncd-1)
[ "$(readlink "/proc/$syncd_pid/exe")" = "$FAULT_BIN_DIR/stock-syncd" ] ||
    fail "syncd-1 (pid $syncd_pid) does not run the fault build: $(readlink "/proc/$syncd_pid/exe")"
t_wait_log_line "$T_DIR/syncd-1.log" -- "the first $DROP_ACKS batch acks will be withheld" 5 \
    >/dev/null || fail "the worker did not arm STOCK_FAULT_DROP_ACKS=$DROP_ACKS"
say "ok: syncd-1 is the fault build with $DROP_ACKS acks to withhold"

sku=$(t_sku syncdup)
t_sku_load "$sku" --total 100000 --partitions 4 --min-chunk 100 --max-chunk 2000
rc=0
t_loadgen --skus "$sku" --requests "$REQUESTS" --rate "$RATE" --connections 32 --qty 1 --quiet \
    --order-prefix "dup$$" --json "$T_DIR/lg.json" >"$T_DIR/lg.out" 2>&1 || rc=$?
cat "$T_DIR/lg.out"
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "ok answers" "$REQUESTS" "$(t_lg "$T_DIR/lg.json" answers.ok)"

t_wait_synced "$sku" "$CONVERGE_S" 0.2
say "converged ${T_SYNC_WAIT_MS} ms after the sale's end"
withheld=$(grep -c 'withholding a batch ack' "$T_DIR/syncd-1.log" || true)
assert_eq "acks the worker withheld" "$DROP_ACKS" "$withheld"
redis_ded=$(t_redis_sum "$sku" ded)
assert_eq "Redis net deducted == oks" "$REQUESTS" "$redis_ded"
t_assert_synced_exact "$sku"
assert_eq "MySQL SUM(qty) == Redis net deducted" "$redis_ded" "$T_MYSQL_SUM"
assert_eq "MySQL detail rows == oks" "$REQUESTS" "$T_MYSQL_ROWS"
t_wait_acked "$sku" 10
t_audit "$sku"

# Counters: stop the daemons (scheduler, nodes, worker) so each logs its final line.
t_stop_daemons
resends=$(t_ship_final | sed -n 's/.* ship_resends=\([0-9]*\).*/\1/p' |
    awk '{ s += $1 } END { print s + 0 }')
say "nodes' final ship lines:"
t_ship_final
assert_le "batches the nodes resent (ship_resends)" "$DROP_ACKS" "$resends"
dups=$(sed -n 's/.* details_duplicate=\([0-9]*\).*/\1/p' "$T_DIR/syncd-1.log" |
    awk '{ s += $1 } END { print s + 0 }')
say "worker summaries:"
grep 'summary requests=' "$T_DIR/syncd-1.log" || true
assert_lt "details the worker skipped as already applied (details_duplicate)" 0 "$dups"

t_pass
