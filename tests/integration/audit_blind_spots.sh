#!/usr/bin/env bash
# audit_blind_spots.sh -- the audit sees what its counters alone cannot
# (issue "Exact II"). A small sale with a per-user limit and a release, fully
# shipped: every check is ok. Then each blind spot is injected by hand, the
# audit must exit 1 and name it, and the injection is undone:
#   - details_match: a MySQL detail row whose order is not the one Redis
#     deducted at that seq (same qty, so every sum still agrees);
#   - orders_once:   a MySQL row rewritten to another order's id, so one order
#     has two deductions;
#   - user_entries:  a user's counter skewed (an entry for an order the user
#     does not hold);
#   - pending_age:   the sync worker frozen (SIGSTOP), so a new deduction waits
#     in Redis past the bound the audit is given (--max-pending-age-ms).
# Before: the first three left every check ok, and the audit had no age check.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

# bs_expect_broken SKU CHECK WORD [AUDIT-ARGS...]: the audit exits 1, CHECK is
# broken, and its detail holds WORD.
bs_expect_broken() {
    local sku=$1 check=$2 word=$3 out rc=0 got
    shift 3
    out=$(t_ctl --json audit "$sku" "$@" 2>/dev/null) || rc=$?
    [ "$rc" -eq 1 ] || fail "audit of $sku exited $rc with $check injected, expected 1"
    got=$(t_audit_check "$check" <<<"$out")
    [ "${got%%$'\t'*}" = broken ] || fail "$check: expected broken, got '$got'"
    [[ "$got" == *"$word"* ]] || fail "$check: its detail does not name '$word': $got"
    say "ok: $check broken: ${got#*$'\t'}"
}

# bs_expect_ok SKU CHECK: the audit exits 0 and CHECK is ok.
bs_expect_ok() {
    local out got
    out=$(t_ctl --json audit "$1") || fail "audit of $1 is not clean: $out"
    got=$(t_audit_check "$2" <<<"$out")
    [ "${got%%$'\t'*}" = ok ] || fail "$2: expected ok, got '$got'"
    say "ok: $2 ok: ${got#*$'\t'}"
}

t_start_daemons --nodes 1
sku=$(t_sku blind)
t_sku_load "$sku" --total 1000 --partitions 2 --per-user-limit 3
for i in $(seq 1 12); do
    t_deduct "$sku" "o$i" "u$((i % 4))" 1
    t_expect "order o$i" 200
done
t_release "$sku" o1
t_expect "release o1" 200
t_wait_synced "$sku" 30
for c in details_match orders_once user_entries pending_age; do
    bs_expect_ok "$sku" "$c"
done

# details_match: the row of seq 2 on partition 0 names another order.
order=$(t_mysql_q "SELECT order_id FROM deduction_detail WHERE sku_id='$sku' AND partition_id=0 AND seq=2")
t_mysql_q "UPDATE deduction_detail SET order_id='forged' WHERE sku_id='$sku' AND partition_id=0 AND seq=2"
bs_expect_broken "$sku" details_match "partition 0"
t_mysql_q "UPDATE deduction_detail SET order_id='$order' WHERE sku_id='$sku' AND partition_id=0 AND seq=2"
bs_expect_ok "$sku" details_match

# orders_once: that row names an order deducted elsewhere.
other=$(t_mysql_q "SELECT order_id FROM deduction_detail WHERE sku_id='$sku' AND partition_id=1 AND qty>0 ORDER BY seq LIMIT 1")
t_mysql_q "UPDATE deduction_detail SET order_id='$other' WHERE sku_id='$sku' AND partition_id=0 AND seq=2"
bs_expect_broken "$sku" orders_once "$other"
t_mysql_q "UPDATE deduction_detail SET order_id='$order' WHERE sku_id='$sku' AND partition_id=0 AND seq=2"
bs_expect_ok "$sku" orders_once

# user_entries: u2 gets an entry for an order it does not hold.
t_rcli HSET "{u:$sku:u2}" ghost "1:x" >/dev/null
bs_expect_broken "$sku" user_entries "u2"
t_rcli HDEL "{u:$sku:u2}" ghost >/dev/null
bs_expect_ok "$sku" user_entries

# pending_age: with the sync worker frozen, a deduction waits in Redis.
syncd=$(t_pid syncd-1)
[ -n "$syncd" ] || fail "no sync worker pid"
kill -STOP "$syncd"
t_at_exit "kill -CONT $syncd 2>/dev/null || true"
t_deduct "$sku" late u9 1
t_expect "order late" 200
sleep 1.5
bs_expect_broken "$sku" pending_age "unshipped" --max-pending-age-ms 1000

# The audit runs on the operator thread: while one waits for the frozen sync
# worker (seconds), deductions are answered at once. (Before, the audit held
# the loop thread for all of it.)
t_ctl audit "$sku" >/dev/null 2>&1 &
audit_pid=$!
t_at_exit "kill $audit_pid 2>/dev/null || true"
sleep 0.3
for i in 1 2 3 4 5; do
    t0=$(t_now_ms)
    t_deduct "$sku" "during$i" "w$i" 1
    t_expect "order during$i, an audit running" 200
    took=$(($(t_now_ms) - t0))
    [ "$took" -lt 500 ] || fail "a deduction took $took ms while an audit ran (the loop waited?)"
done
kill -0 "$audit_pid" 2>/dev/null || fail "the audit ended before the deductions: the check proves nothing"
say "ok: 5 deductions answered in < 500 ms each while an audit waited for MySQL"
wait "$audit_pid" || true
kill -CONT "$syncd"
t_wait_synced "$sku" 30
bs_expect_ok "$sku" pending_age
t_audit "$sku"
t_pass
