#!/usr/bin/env bash
# sync_worker_kill.sh -- kill -9 the sync worker mid-sale: sales go on, MySQL converges.
#
# DESIGN 10: with the only sync worker dead, deductions are still answered
# (shipping is off the deduction path) and details queue in Redis; when the
# worker is back the nodes resend what was never acked and MySQL converges
# with no duplicate (a batch the dead worker committed but never acked is
# skipped by seq on the resend).
#
# A ~7 s sale (16 connections, qty 1-2) on 8 partitions over 2 nodes; 1 s in,
# the worker (DIR/syncd-1.pid) gets SIGKILL and a second loadgen runs while it
# is down: its oks must be > 0 and its other answers 0. 5 s after the kill the
# same start.sh command restarts the worker alone (new pid, the others keep
# theirs). After the sale: MySQL == Redis per partition, no duplicate
# (partition, seq), SUM(qty) == net deducted == the oks answered, streams
# trimmed, audit exits 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

CONNS=16
LOAD_S=7
KILL_AFTER_S=1
DOWN_S=5
WINDOW_LOAD_S=3   # the second loadgen, inside the down window
CONVERGE_S=30     # after the sale: node resend backoff (<= 5 s) + the tail

t_start_daemons --nodes 2
t_at_exit t_tail_syncd_logs
sku=$(t_sku syncwkill)
t_sku_load "$sku" --total 10000000 --partitions 8 --min-chunk 100 --max-chunk 5000

say "sale: ${LOAD_S}s, kill -9 syncd-1 after ${KILL_AFTER_S}s, restart it ${DOWN_S}s later"
t_loadgen --skus "$sku" --duration "$LOAD_S" --connections "$CONNS" --qty 1-2 --quiet \
    --order-prefix "wk$$" --json "$T_DIR/main.json" >"$T_DIR/main.out" 2>&1 &
lg=$!
sleep "$KILL_AFTER_S"
others=(scheduler node-1 node-2)
before=()
for d in "${others[@]}"; do before+=("$(t_pid "$d")"); done
old_pid=$(t_pid syncd-1)
t_kill9 syncd-1
kill_ms=$(t_now_ms)

# While the worker is down: deductions are answered, details pile up in Redis.
rc=0
t_loadgen --skus "$sku" --duration "$WINDOW_LOAD_S" --connections 4 --qty 1 --quiet \
    --order-prefix "wkdown$$" --json "$T_DIR/down.json" >"$T_DIR/down.out" 2>&1 || rc=$?
assert_eq "loadgen while the worker is down: exit code" 0 "$rc"
down_ok=$(t_lg "$T_DIR/down.json" answers.ok)
assert_lt "ok answers while the worker is down" 0 "$down_ok"
assert_eq "other answers while the worker is down" 0 "$(t_lg_other "$T_DIR/down.json")"
pending_down=$(t_redis_parts "$sku" | awk '{ s += $2 - $4 } END { print s + 0 }')
say "details pending in Redis while the worker is down: $pending_down"
assert_lt "details queue in Redis while the worker is down" 0 "$pending_down"

sleep_ms=$((kill_ms + DOWN_S * 1000 - $(t_now_ms)))
if [ "$sleep_ms" -gt 0 ]; then sleep "$((sleep_ms / 1000)).$(printf '%03d' $((sleep_ms % 1000)))"; fi
t_restart
new_pid=$(t_pid syncd-1)
if [ -z "$new_pid" ] || [ "$new_pid" = "$old_pid" ] || ! kill -0 "$new_pid" 2>/dev/null; then
    fail "syncd-1 was not restarted (pid before $old_pid, after '$new_pid')"
fi
say "ok: syncd-1 restarted (pid $old_pid -> $new_pid) $(($(t_now_ms) - kill_ms)) ms after the kill"
for i in "${!others[@]}"; do
    assert_eq "${others[$i]} kept its pid (only syncd-1 restarted)" "${before[$i]}" \
        "$(t_pid "${others[$i]}")"
done

rc=0
wait "$lg" || rc=$?
cat "$T_DIR/main.out"
assert_eq "main loadgen exit code" 0 "$rc"
assert_eq "main loadgen: other answers" 0 "$(t_lg_other "$T_DIR/main.json")"

t_wait_synced "$sku" "$CONVERGE_S" 0.2
say "converged ${T_SYNC_WAIT_MS} ms after the sale's end"
oks=$(($(t_lg "$T_DIR/main.json" units_ok) + $(t_lg "$T_DIR/down.json" units_ok)))
redis_ded=$(t_redis_sum "$sku" ded)
assert_eq "Redis net deducted == units answered ok" "$oks" "$redis_ded"
t_assert_synced_exact "$sku"
assert_eq "MySQL SUM(qty) == Redis net deducted" "$redis_ded" "$T_MYSQL_SUM"
t_wait_acked "$sku" 10
t_audit "$sku"
t_stop_daemons
say "nodes' final ship lines:"
t_ship_final

t_pass
