#!/usr/bin/env bash
# exact_durability.sh -- durability = replica: nothing is answered, or shipped
# to MySQL, before a replica holds it (issue "Exact II").
#
# 1. A frozen replica (SIGSTOP; the master still counts it attached): WAIT
#    times out, the order is answered 503 "replication_timeout" with its
#    outcome recorded; its detail is held back from MySQL while no replica
#    holds it; once the replica runs again, a retry returns the first outcome
#    (200, duplicate) and the detail reaches MySQL exactly once.
# 2. A master with no replica attached (the replica frozen and its link
#    killed): 503 "no_replica"; after the replica reattaches, 200.
# 3. durability = leader on the nodes: the same frozen replica does not stop
#    a deduction (200 at once).
# 4. An order whose claim lives on the master with the frozen replica: the
#    claim is not confirmed, so DEDUCT never runs (503, nothing recorded on the
#    partition); once the replica runs again the retry is a first deduction.
# Which master holds an order's claim and a user's entry depends on the ids,
# so cases 1 and 2 use ids whose claim and user keys live on other masters
# (then DEDUCT runs and only the partition's master is unconfirmed), and case
# 4 an order id whose claim is on the partition's master.
# Each freeze lasts about 2 s, well below the cluster's node timeout (5 s), so
# no failover starts. The replicas are resumed by an exit hook whatever happens.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

FROZEN=""
thaw() {
    if [ -n "$FROZEN" ]; then
        kill -CONT "$FROZEN" 2>/dev/null || true
        FROZEN=""
    fi
}

freeze() {
    FROZEN=$(t_redis_pid "$1")
    [[ "$FROZEN" =~ ^[0-9]+$ ]] || fail "no pid for the redis-server on port $1"
    kill -STOP "$FROZEN"
    say "froze the replica on port $1 (pid $FROZEN)"
}

# dur_id PREFIX KIND SKU PORT WANT: the first PREFIXn (n = 1..500) whose key
# ({o:SKU:ID} for KIND o, {u:SKU:ID} for u) is (WANT on) or is not (WANT off)
# on the master at PORT.
dur_id() {
    local prefix=$1 kind=$2 sku=$3 port=$4 want=$5 n id owner
    for n in $(seq 1 500); do
        id="$prefix$n"
        owner=$(t_slot_owner "{$kind:$sku:$id}")
        if { [ "$want" = on ] && [ "$owner" = "$port" ]; } ||
            { [ "$want" = off ] && [ "$owner" != "$port" ]; }; then
            echo "$id"
            return 0
        fi
    done
    fail "no id $prefix* with its $kind key $want the master on port $port"
}

t_start_daemons --nodes 1
t_at_exit thaw

sku=$(t_sku durable)
t_sku_load "$sku" --total 100 --partitions 1
pm=$(t_slot_owner "$(t_part_key "$sku" 0 st)")
rp=$(t_replica_of "$pm")
[[ "$rp" =~ ^[0-9]+$ ]] || fail "the master on port $pm has no replica (ROLE: $(redis-cli -p "$pm" ROLE | tr '\n' ' '))"
say "partition master on port $pm, its replica on port $rp"
t_deduct "$sku" warm u0 1
t_expect "a deduction with the replica in step" 200

d1=$(dur_id d o "$sku" "$pm" off)
u1=$(dur_id u u "$sku" "$pm" off)
d2=$(dur_id e o "$sku" "$pm" off)
u2=$(dur_id v u "$sku" "$pm" off)
say "ids off the partition's master: orders $d1 $d2, users $u1 $u2"

# ---- 1. a frozen replica: WAIT times out -----------------------------------------------
freeze "$rp"
t_deduct "$sku" "$d1" "$u1" 1
t_expect "a deduction while the replica is frozen" 503
assert_eq "reason" replication_timeout "$(t_json_get reason <<<"$T_BODY")"
seq=$(t_rcli HGET "$(t_part_key "$sku" 0 st)" seq)
assert_eq "the outcome is recorded on the master (seq)" 2 "$seq"
sleep 2.2 # two ship intervals: the detail of d1 must stay out of MySQL
synced=$(t_mysql_q "SELECT COALESCE(MAX(synced_seq),0) FROM stock_partition WHERE sku_id='$sku'" | tail -1)
assert_le "MySQL's synced_seq while no replica holds seq 2" "$synced" 1
thaw
t_wait_synced "$sku" 30
t_deduct "$sku" "$d1" "$u1" 1
t_expect "d1 retried once the replica caught up" 200
assert_eq "... the first outcome" true "$(t_json_get duplicate <<<"$T_BODY")"
assert_eq "d1 in MySQL once" 1 "$(t_mysql_q "SELECT COUNT(*) FROM deduction_detail WHERE sku_id='$sku' AND order_id='$d1'" | tail -1)"

# ---- 2. no replica attached -------------------------------------------------------------
freeze "$rp"
timeout 5 redis-cli -p "$pm" CLIENT KILL TYPE replica >/dev/null
t_wait_replicas "$pm" 0 5
assert_eq "replicas attached to the master" 0 "$(t_replicas_attached "$pm")"
t_deduct "$sku" "$d2" "$u2" 1
t_expect "a deduction with no replica attached" 503
assert_eq "reason" no_replica "$(t_json_get reason <<<"$T_BODY")"
thaw
t_wait_replicas "$pm" 1 30
assert_eq "the replica reattached" 1 "$(t_replicas_attached "$pm")"
t_deduct "$sku" "$d2" "$u2" 1
t_expect "d2 retried after the replica reattached" 200
t_deduct "$sku" d3 u3 1
t_expect "a new order" 200
t_wait_synced "$sku" 30
t_audit "$sku"

# ---- 4. the claim on the frozen replica's master: DEDUCT never runs ----------------------
c1=$(dur_id c o "$sku" "$pm" on)
u5=$(dur_id w u "$sku" "$pm" off)
seq=$(t_rcli HGET "$(t_part_key "$sku" 0 st)" seq)
freeze "$rp"
t_deduct "$sku" "$c1" "$u5" 1
t_expect "an order whose claim no replica holds" 503
assert_eq "reason" replication_timeout "$(t_json_get reason <<<"$T_BODY")"
assert_eq "nothing deducted on the partition (seq)" "$seq" "$(t_rcli HGET "$(t_part_key "$sku" 0 st)" seq)"
assert_eq "no record of $c1 on the partition" "" "$(t_rcli HGET "$(t_part_key "$sku" 0 o)" "$c1")"
thaw
t_deduct "$sku" "$c1" "$u5" 1
t_expect "$c1 retried once the replica caught up" 200
assert_eq "... a first deduction" false "$(t_json_get duplicate <<<"$T_BODY")"
t_wait_synced "$sku" 30
t_audit "$sku"

# ---- 3. durability = leader ---------------------------------------------------------------
t_stop_daemons
t_start_daemons --nodes 1 --node-opt deduct.durability=leader --scheduler-opt pool.durability=leader
t_at_exit thaw
freeze "$rp"
t_deduct "$sku" l1 u4 1
t_expect "durability=leader: a deduction while the replica is frozen" 200
thaw
t_wait_synced "$sku" 30
t_audit "$sku"
t_pass
