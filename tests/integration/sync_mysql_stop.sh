#!/usr/bin/env bash
# sync_mysql_stop.sh -- MariaDB frozen for 10 s mid-sale: sales go on, MySQL converges.
#
# DESIGN 10: MySQL stopped for a while must not stop the sale; the details
# wait in Redis while the worker's transactions hang or fail, the nodes resend
# with backoff, and once MySQL answers again it converges with no duplicate.
#
# MariaDB is frozen with SIGSTOP on the harness's mysqld (INFRA_DIR/mysql/
# mysqld.pid), which is harsher than a clean stop: connections stay open and
# nothing answers, so the worker's reads block until its timeouts. SIGCONT is
# sent 10 s later, and ALSO from the exit hook, so a failing test never leaves
# MariaDB frozen for the tests after it. While it is frozen a second loadgen
# must get oks (and nothing else), and this script never queries MySQL.
# After: MySQL converges within CONVERGE_S (the worker's rw timeout, 30 s by
# default, plus the node's backoff, capped at 5 s), no duplicate (partition,
# seq), SUM(qty) == Redis net deducted == oks, audit exits 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

CONNS=16
STOP_AFTER_S=2
STOPPED_S=10
TAIL_S=2          # the sale goes on this long after MariaDB is back
CONVERGE_S=60

MYSQLD_PID=""
# shellcheck disable=SC2317 # run by the exit hook
mysqld_cont() {
    if [ -n "$MYSQLD_PID" ]; then
        kill -CONT "$MYSQLD_PID" 2>/dev/null || true
    fi
}

t_start_daemons --nodes 2
t_at_exit mysqld_cont
t_at_exit t_tail_syncd_logs
MYSQLD_PID_FILE="$INFRA_DIR/mysql/mysqld.pid"
pid=$(tr -dc '0-9' <"$MYSQLD_PID_FILE" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    fail "no live mysqld in $MYSQLD_PID_FILE (pid '$pid')"
fi
case "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" in
    *mariadbd* | *mysqld*) ;;
    *) fail "pid $pid of $MYSQLD_PID_FILE is not a MariaDB server" ;;
esac

sku=$(t_sku syncmystop)
t_sku_load "$sku" --total 10000000 --partitions 8 --min-chunk 100 --max-chunk 5000
load_s=$((STOP_AFTER_S + STOPPED_S + TAIL_S))

say "sale: ${load_s}s; MariaDB (pid $pid) frozen after ${STOP_AFTER_S}s for ${STOPPED_S}s"
t_loadgen --skus "$sku" --duration "$load_s" --connections "$CONNS" --qty 1-2 --quiet \
    --order-prefix "ms$$" --json "$T_DIR/main.json" >"$T_DIR/main.out" 2>&1 &
lg=$!
sleep "$STOP_AFTER_S"
pending_before=$(t_redis_parts "$sku" | awk '{ s += $2 - $4 } END { print s + 0 }')
MYSQLD_PID=$pid   # from here on the exit hook sends SIGCONT
kill -STOP "$pid"
stop_ms=$(t_now_ms)
say "MariaDB stopped (SIGSTOP); details pending in Redis then: $pending_before"

rc=0
t_loadgen --skus "$sku" --duration $((STOPPED_S - 3)) --connections 4 --qty 1 --quiet \
    --order-prefix "msdown$$" --json "$T_DIR/down.json" >"$T_DIR/down.out" 2>&1 || rc=$?
pending_down=$(t_redis_parts "$sku" | awk '{ s += $2 - $4 } END { print s + 0 }')
sleep_ms=$((stop_ms + STOPPED_S * 1000 - $(t_now_ms)))
if [ "$sleep_ms" -gt 0 ]; then sleep "$((sleep_ms / 1000)).$(printf '%03d' $((sleep_ms % 1000)))"; fi
kill -CONT "$pid"
say "MariaDB continued (SIGCONT) after $(($(t_now_ms) - stop_ms)) ms"

assert_eq "loadgen while MariaDB is frozen: exit code" 0 "$rc"
assert_lt "ok answers while MariaDB is frozen" 0 "$(t_lg "$T_DIR/down.json" answers.ok)"
assert_eq "other answers while MariaDB is frozen" 0 "$(t_lg_other "$T_DIR/down.json")"
say "details pending in Redis while MariaDB is frozen: $pending_down"
assert_lt "details queue in Redis while MariaDB is frozen" "$pending_before" "$pending_down"

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
