#!/usr/bin/env bash
# exact_divergence.sh -- a partition whose Redis lost details MySQL holds is
# stopped and named, never shipped past or skipped (issue "Exact II").
#
# What a failover to a replica that lagged does under durability = leader is
# made by hand while the daemons are stopped: partition P's Redis state goes
# back one deduction (seq, ded, ack, the order's record), as if the promoted
# replica never had the last one. On restart the node's shipper learns
# MySQL's synced_seq, finds Redis below it and marks P diverged (DIVERGE):
#   - the registry shows P "diverged", and routing goes around it;
#   - an order whose claim names P gets 503 "diverged", the others are served
#     by the other partition;
#   - `stockctl audit` exits 1 and names P (check not_diverged);
#   - nothing more of P is shipped: MySQL keeps exactly what it had.
# B. With nothing shipped yet, Redis forgets an answered deduction and hands
# its seq to the next order: the node, which remembers the highest seq it
# answered per partition, marks the partition diverged (answered_lost) and
# answers that order 503; the audit names the partition and the seq.
# (Before: the shipper logged "MySQL is ahead" and went on, the reused seqs
# were skipped by the worker, and the audit was clean.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_start_daemons --nodes 1
sku=$(t_sku diverge)
t_sku_load "$sku" --total 1000 --partitions 2
for i in $(seq 1 8); do
    t_deduct "$sku" "o$i" "u$i" 1
    t_expect "order o$i" 200
done
t_wait_synced "$sku" 30
salt0=$(t_rcli HGET "{s:$sku}:pool" t.0)
st="{s:$sku:0:$salt0}:st"
ok="{s:$sku:0:$salt0}:o"
seq=$(t_rcli HGET "$st" seq)
[ "$seq" -ge 2 ] || fail "partition 0 has only $seq deductions"
synced=$(t_mysql_q "SELECT synced_seq FROM stock_partition WHERE sku_id='$sku' AND partition_id=0")
assert_eq "MySQL holds partition 0 up to" "$seq" "$synced"
lost=$(t_mysql_q "SELECT order_id FROM deduction_detail WHERE sku_id='$sku' AND partition_id=0 AND seq=$seq")
say "partition 0 at seq $seq; Redis will forget its last deduction (order $lost)"

t_stop_daemons
a=$(t_rcli HGET "$st" a)
s_a=$(t_rcli HGET "$st" "s$a")
t_rcli HSET "$st" seq $((seq - 1)) ded $(($(t_rcli HGET "$st" ded) - 1)) ack $((seq - 1)) \
    "s$a" $((s_a + 1)) >/dev/null
t_rcli HDEL "$ok" "$lost" >/dev/null
t_restart

for _ in $(seq 1 100); do
    [ "$(t_rcli HGET "$st" state)" = diverged ] && break
    sleep 0.1
done
assert_eq "partition 0's state in Redis" diverged "$(t_rcli HGET "$st" state)"
assert_eq "why" mysql_ahead "$(t_rcli HGET "$st" dwhy)"
grep -q "partition diverged from MySQL sku=$sku partition=0" "$T_DIR"/node-1.log ||
    fail "the node did not log the divergence"

# The registry learns it from the first refusal or the next read of Redis.
t_deduct "$sku" "$lost" "u-lost" 1 # the lost order's claim still names partition 0
t_expect "an order whose claim names the diverged partition" 503
assert_eq "reason" diverged "$(t_json_get reason <<<"$T_BODY")"
state0=$(t_ctl --json registry | "$T_PY" -c '
import json, sys
r = json.load(sys.stdin)
for s in r["skus"]:
    if s["sku"] == sys.argv[1]:
        print(s["partitions"][0]["state"])
' "$sku")
assert_eq "registry state of partition 0" diverged "$state0"
for i in $(seq 9 14); do
    t_deduct "$sku" "n$i" "u$i" 1
    t_expect "new order n$i (served by partition 1)" 200
    assert_eq "n$i's partition" 1 "$(t_json_get partition <<<"$T_BODY")"
done

rc=0
out=$(t_ctl audit "$sku" 2>&1) || rc=$?
say "audit: $(tr '\n' ' ' <<<"$out")"
assert_eq "stockctl audit exit code" 1 "$rc"
assert_contains "the audit names the partition" "$out" "partition 0 diverged from MySQL"
sleep 1.5 # a ship interval: nothing more of partition 0 may reach MySQL
assert_eq "MySQL's synced_seq of partition 0 is kept" "$seq" \
    "$(t_mysql_q "SELECT synced_seq FROM stock_partition WHERE sku_id='$sku' AND partition_id=0")"

# ---- B. the node sees a seq it answered handed out again ---------------------------------
# Nothing reaches MySQL here (the sync worker is stopped), so only the node
# can tell: it remembers the highest seq it answered per partition.
say "B: stop the sync worker, sell 3 units, then Redis forgets the last one"
sku=$(t_sku divb)
t_sku_load "$sku" --total 100 --partitions 1 # the catalog needs the worker
t_kill9 syncd-1
for i in 1 2 3; do
    t_deduct "$sku" "b$i" "ub$i" 1
    t_expect "order b$i" 200
done
st=$(t_part_key "$sku" 0 st)
a=$(t_rcli HGET "$st" a)
s_a=$(t_rcli HGET "$st" "s$a")
t_rcli HSET "$st" seq 2 ded 2 "s$a" $((s_a + 1)) >/dev/null
t_rcli HDEL "$(t_part_key "$sku" 0 o)" b3 >/dev/null
t_rcli XDEL "$(t_part_key "$sku" 0 d)" 3-0 >/dev/null
t_rcli XSETID "$(t_part_key "$sku" 0 d)" 2-0 >/dev/null # as a replica that never had seq 3
t_deduct "$sku" b4 ub4 1
t_expect "an order given seq 3 a second time" 503
assert_eq "reason" diverged "$(t_json_get reason <<<"$T_BODY")"
assert_eq "partition 0's state in Redis" diverged "$(t_rcli HGET "$st" state)"
assert_eq "why" answered_lost "$(t_rcli HGET "$st" dwhy)"
assert_eq "at seq" 3 "$(t_rcli HGET "$st" dseq)"
t_deduct "$sku" b5 ub5 1
t_expect "the next order: the partition refuses before writing" 503
assert_eq "Redis seq unchanged by the refusal" 3 "$(t_rcli HGET "$st" seq)"
rc=0
out=$(t_ctl audit "$sku" 2>&1) || rc=$?
assert_eq "stockctl audit exit code" 1 "$rc"
assert_contains "the audit names the partition and the seq" "$out" \
    "partition 0 diverged from MySQL at seq 3 (answered_lost"
t_pass
