#!/usr/bin/env bash
# exact_failover.sh -- a lagging replica, then its master killed -9 mid-sale:
# under durability = replica no answered deduction is lost (issue "Exact II").
#
# The scenario of the issue, on a Redis Cluster of its own (a failover is
# destructive, so the suite's shared cluster is left alone; cluster node
# timeout 1 s, so the failover takes seconds):
#   - the partition master's replica is frozen (SIGSTOP) and its link killed;
#   - orders c1..c6 are sent: none may be answered ok (no replica holds them);
#   - the master is killed -9 and the replica resumed: it is promoted without
#     c1..c6; the killed master is restarted and rejoins as its replica (under
#     durability = replica a master with no replica answers nothing);
#   - 25 more orders, and c1..c6 again.
# Then: every order answered ok is in MySQL exactly once, Redis's net deducted
# equals the units answered ok, nothing is oversold, and the audit is clean.
# (On code without durability c1..c6 were answered ok, lost in the failover,
# their seqs reused by new orders, which MySQL then skipped.)
#
# FAILOVER_DURABILITY=leader (exact_failover_leader.sh) runs the same scenario
# with durability = leader, where c1..c6 ARE answered ok and lost with the
# master. The loss must show, never be skipped: the partition is diverged, the
# audit is not clean and names it, then `stockctl partition reconcile` repairs
# it (oversold count printed) and the audit is clean; every order is in MySQL
# at most once, every one answered ok after the failover exactly once, and the
# answered ones that neither MySQL nor Redis kept are counted and shown.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_own_infra
# The lease key may live on the master this test kills: it must outlast the
# failover.
DUR=${FAILOVER_DURABILITY:-replica}
case "$DUR" in replica | leader) ;; *) fail "FAILOVER_DURABILITY=$DUR: replica or leader" ;; esac
say "durability = $DUR"
t_start_daemons --nodes 1 --scheduler-opt lease.ttl_ms=20000 --scheduler-opt lease.wait_ms=1000 \
    --node-opt "deduct.durability=$DUR" --scheduler-opt "pool.durability=$DUR"


TOTAL=1000
sku=$(t_sku failover)
t_sku_load "$sku" --total $TOTAL --partitions 1
stkey=$(t_part_key "$sku" 0 st)
pm=$(t_slot_owner "$stkey")
rp=$(timeout 5 redis-cli -p "$pm" ROLE | sed -n 4p)
[[ "$rp" =~ ^[0-9]+$ ]] || fail "master $pm has no replica"
say "partition master on port $pm, replica on port $rp"

answers="$T_DIR/answers.txt"
: >"$answers"
order() { # order ID: one deduction, its status appended to answers.txt
    t_deduct "$sku" "$1" "u-$1" 1
    echo "$1 $T_STATUS" >>"$answers"
}
for i in 1 2 3 4 5; do order "a$i"; done

say "freeze the replica and cut its link"
T_FROZEN=$(t_redis_pid "$rp")
kill -STOP "$T_FROZEN"
timeout 5 redis-cli -p "$pm" CLIENT KILL TYPE replica >/dev/null
for i in 1 2 3 4 5 6; do order "c$i"; done
okc=$(awk '$1 ~ /^c/ && $2 == 200' "$answers" | wc -l)
if [ "$DUR" = replica ]; then
    assert_eq "orders answered ok while no replica holds them" 0 "$okc"
else
    assert_eq "orders answered ok while no replica holds them (leader)" 6 "$okc"
fi

say "kill -9 the master (pid $(t_redis_pid "$pm")), resume the replica"
kill -KILL "$(t_redis_pid "$pm")"
kill -CONT "$T_FROZEN"
T_FROZEN=""
t_wait_role "$rp" master 30
assert_eq "the replica was promoted" master "$(timeout 2 redis-cli -p "$rp" ROLE | head -1)"
t_wait_cluster_ok "$rp" 20 || true

# Under durability = replica the new master answers nothing until a replica
# is attached: the killed master comes back and rejoins as its replica.
say "restart the killed master (it rejoins as a replica of the new one)"
redis-server "$T_OWN_INFRA/redis/$pm/redis.conf" >/dev/null
t_wait_replicas "$rp" 1 30

say "25 new orders and the six again"
for i in $(seq 1 25); do order "d$i"; done
for i in 1 2 3 4 5 6; do order "c$i"; done
if [ "$DUR" = leader ]; then
    # Redis lost answered deductions: the partition is stopped and named.
    for _ in $(seq 1 100); do
        [ "$(t_rcli HGET "$stkey" state)" = diverged ] && break
        sleep 0.1
    done
    assert_eq "the partition after the failover" diverged "$(t_rcli HGET "$stkey" state)"
    say "diverged: $(t_rcli HGET "$stkey" dwhy) at seq $(t_rcli HGET "$stkey" dseq)"
    rc=0
    out=$(t_ctl audit "$sku" 2>&1) || rc=$?
    say "audit: $(tr '\n' ' ' <<<"$out")"
    assert_eq "stockctl audit exit code (the loss shows)" 1 "$rc"
    assert_contains "the audit names the partition and the seq" "$out" \
        "partition 0 diverged from MySQL at seq"
    rc=0
    for _ in $(seq 1 20); do # the sync worker link may need a moment after the failover
        rc=0
        out=$(t_ctl partition reconcile "$sku" 0 2>&1) || rc=$?
        grep -q 'unavailable' <<<"$out" || break
        sleep 0.5
    done
    say "stockctl partition reconcile $sku 0 (exit $rc):"$'\n'"$out"
    assert_contains "the reconcile prints the oversold count" "$out" "oversold"
    assert_eq "stockctl partition reconcile exit code" 0 "$rc"
    assert_eq "the partition after the reconcile" open "$(t_rcli HGET "$stkey" state)"
    t_audit "$sku"
fi
# A few may meet the failover (503); retry those once the router caught up.
sleep 1
for o in $(awk '$2 != 200 { print $1 }' "$answers" | sort -u); do
    if ! awk -v o="$o" '$1 == o && $2 == 200' "$answers" | grep -q .; then order "$o"; fi
done
ok_orders=$(awk '$2 == 200 { print $1 }' "$answers" | sort -u)
n_ok=$(wc -w <<<"$ok_orders")
say "orders answered ok: $n_ok"
assert_le "at least 20 orders answered ok after the failover" 20 \
    "$(awk '$1 ~ /^d/ && $2 == 200' "$answers" | sort -u | wc -l)"

t_wait_synced "$sku" 60
in_mysql=$(t_mysql_q "SELECT order_id, COUNT(*) FROM deduction_detail WHERE sku_id='$sku' GROUP BY order_id")
missing=0
lost=0
for o in $ok_orders; do
    c=$(awk -v o="$o" '$1 == o { print $2 }' <<<"$in_mysql")
    # Under leader an order answered ok before the failover (a*, c*) that
    # neither MySQL nor the promoted replica had is the loss leader allows:
    # counted, shown, not repaired. Twice is never allowed.
    if [ "$DUR" = leader ] && [ "${c:-0}" = 0 ] &&
        ! awk -v o="$o" '$1 == o && $2 == 200 { n++ } END { exit !(n > 1) }' "$answers"; then
        lost=$((lost + 1))
        say "order $o answered ok before the failover was lost with the master (durability = leader)"
    elif [ "${c:-0}" != 1 ]; then
        missing=$((missing + 1))
        say "order $o answered ok is in MySQL ${c:-0} times"
    fi
done
say "orders answered ok and lost with the master: $lost"
assert_eq "Redis net deducted = orders answered ok and kept" $((n_ok - lost)) \
    "$(t_redis_sum "$sku" ded)"
if [ "$missing" != 0 ]; then
    say "MySQL's details (seq order qty): $(t_mysql_q "SELECT seq, order_id, qty FROM deduction_detail WHERE sku_id='$sku' ORDER BY seq" | tr '\n' ' ')"
    say "Redis: $(t_rcli HGETALL "$stkey" | tr '\n' ' ')"
    grep -h 'ship\|diverg\|ahead' "$T_DIR"/node-1.log | grep -v 'stats' | tail -20 >&2 || true
fi
assert_eq "orders answered ok not in MySQL exactly once" 0 "$missing"
assert_eq "MySQL rows = orders answered ok and kept" $((n_ok - lost)) "$(wc -l <<<"$in_mysql")"
assert_le "no oversell" "$(t_redis_sum "$sku" ded)" $TOTAL
t_audit "$sku"
t_pass
