#!/usr/bin/env bash
# exact_reconcile.sh -- `stockctl partition reconcile SKU P` repairs a diverged
# partition (issue 10, "Exact II").
#
# Each case makes a partition diverge the way a failover to a lagging replica
# does under durability = leader (by hand, as exact_divergence.sh does), checks
# that the audit names it, reconciles, and then checks the repair:
#   A. Redis forgot an answered deduction MySQL holds (mysql_ahead): its record
#      comes back from MySQL, the unit comes from the partition, the audit is
#      clean, the order answers as a duplicate, the partition serves again and
#      MySQL converges; a second reconcile answers not_diverged, bad input gets
#      clear errors.
#   B. Redis lost seqs MySQL holds (orders c*) and handed them to other orders
#      (d*) (the worker's identity check marks it): both sets are kept, the d*
#      renumbered after MySQL's synced_seq, the c* records and claims restored,
#      user entries follow the union (per-user limit: written for c*, d*,
#      deleted for a released order), the audit is clean, every c* and d* is
#      in MySQL exactly once.
#   B2. The node's own check (answered_lost) marks it: reconcile renumbers what
#      only Redis holds, and the next order is served (the node forgot the seq
#      it had answered up to, which now lies above the partition's top).
#   C. As B with the partition's units moved to the pool: the units come from
#      the pool through a journaled grant and the audit is clean; then with
#      neither partition nor pool holding units: the oversold count is reported
#      (exit 1) and equals the shortfall, and the audit says so.
#   D. The shipper marks it (mysql_ahead) while the node had answered seqs
#      above what survives in MySQL and Redis: after reconcile the next order is
#      served, not taken for a seq handed out twice.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_start_daemons --nodes 1

# rc_run SKU P: `stockctl --json partition reconcile`; RC_JSON and RC_EXIT.
# A sync worker just (re)started may not be connected yet: "unavailable" is
# asked again, a bounded number of times.
RC_JSON=""
RC_EXIT=0
rc_run() {
    local try
    for try in $(seq 1 20); do
        RC_EXIT=0
        RC_JSON=$(t_ctl --json partition reconcile "$1" "$2" 2>&1) || RC_EXIT=$?
        [ "$(t_json_get error <<<"$RC_JSON")" = unavailable ] || break
        say "reconcile $1 $2: no sync worker yet (try $try)"
        sleep 0.5
    done
    say "reconcile $1 $2 (exit $RC_EXIT): $RC_JSON"
}
rc_get() { t_json_get "$1" <<<"$RC_JSON"; }

# wait_state ST STATE: polls partition state hash ST until its state is STATE (10 s).
wait_state() {
    for _ in $(seq 1 100); do
        [ "$(t_rcli HGET "$1" state)" = "$2" ] && return 0
        sleep 0.1
    done
    fail "state of $1 is '$(t_rcli HGET "$1" state)', not $2"
}

# wait_worker: until the scheduler reaches a sync worker (an audit verifies MySQL).
wait_worker() {
    local out
    for _ in $(seq 1 50); do
        out=$(t_ctl --json audit "$sku" 2>/dev/null || true) # exit 1: it is diverged
        [ "$(t_json_get mysql_verified <<<"$out")" = true ] && return 0
        sleep 0.2
    done
    fail "the scheduler reaches no sync worker"
}

# audit_broken SKU NEEDLE: `stockctl audit` exits 1 and its output holds NEEDLE.
audit_broken() {
    local out rc=0
    out=$(t_ctl audit "$1" 2>&1) || rc=$?
    assert_eq "stockctl audit $1 exit code" 1 "$rc"
    assert_contains "the audit names it" "$out" "$2"
}

# in_mysql SKU ORDER: how many deductions of ORDER MySQL holds.
in_mysql() {
    t_mysql_q "SELECT COUNT(*) FROM deduction_detail WHERE sku_id=$(t_sql_str "$1")
               AND order_id=$(t_sql_str "$2") AND qty > 0"
}

# once_each SKU ORDER...: every ORDER is deducted in MySQL exactly once.
once_each() {
    local sku=$1 o bad=""
    shift
    for o in "$@"; do
        [ "$(in_mysql "$sku" "$o")" = 1 ] || bad+=" $o($(in_mysql "$sku" "$o"))"
    done
    [ -z "$bad" ] || fail "$sku: orders not in MySQL exactly once:$bad"
    say "ok: $sku: $# orders in MySQL exactly once"
}

# reuse_seqs SKU K PREFIX: with the daemons stopped, partition 0 of SKU as a
# promoted replica that lacked its last K deductions (MySQL holds them) and
# then gave their seqs to K new orders PREFIX1..K (qty 1 each): their records,
# claims and stream entry replace the lost ones', the lost orders' claims and
# user entries are gone (they lived on the lost master too), and `ack` goes
# back K (the replica lacked that write too).
reuse_seqs() {
    local sku=$1 k=$2 pre=$3 st ok dk seq a lines="" i s o now
    st=$(t_part_key "$sku" 0 st)
    ok=$(t_part_key "$sku" 0 o)
    dk=$(t_part_key "$sku" 0 d)
    seq=$(t_rcli HGET "$st" seq)
    a=$(t_rcli HGET "$st" a)
    now=$(t_now_ms)
    for ((i = 1; i <= k; i++)); do
        s=$((seq - k + i))
        o=$(t_mysql_q "SELECT order_id FROM deduction_detail WHERE sku_id=$(t_sql_str "$sku")
                       AND partition_id=0 AND seq=$s")
        [ -n "$o" ] || fail "MySQL holds no detail at seq $s of $sku"
        t_rcli HDEL "$ok" "$o" >/dev/null
        t_rcli DEL "{o:$sku:$o}" >/dev/null
        t_rcli DEL "{u:$sku:u-$o}" >/dev/null # another slot: a DEL of its own
        t_rcli HSET "$ok" "$pre$i" "1,$s,0,u-$pre$i" >/dev/null
        t_rcli SET "{o:$sku:$pre$i}" "0:1" EX 3600 >/dev/null
        lines+="${lines:+$'\n'}$s|1|$a|$now|$pre$i|u-$pre$i"
    done
    t_rcli DEL "$dk" >/dev/null
    t_rcli XADD "$dk" "$seq-0" n "$k" b "$lines" >/dev/null
    t_rcli HSET "$st" ack $((seq - k)) >/dev/null
    say "partition 0 of $sku: seqs $((seq - k + 1))..$seq now hold ${pre}1..$pre$k in Redis"
}

# sell_then_reuse SKU K ORDER...: sells each ORDER (1 unit, user u-ORDER) on
# SKU's one partition and waits until MySQL holds them; then, daemons stopped,
# reuse_seqs SKU K d; daemons started again, until the shipper's batch of the
# d* meets MySQL's c* (the worker's identity check) and the partition is
# diverged. Sets st and orders (the orders sold).
sell_then_reuse() {
    local sku=$1 k=$2 o
    shift 2
    orders=()
    for o in "$@"; do
        t_deduct "$sku" "$o" "u-$o" 1
        t_expect "order $o" 200
        orders+=("$o")
    done
    t_wait_synced "$sku" 30
    st=$(t_part_key "$sku" 0 st)
    t_stop_daemons
    reuse_seqs "$sku" "$k" d
    t_restart
    wait_state "$st" diverged
    assert_eq "why" identity "$(t_rcli HGET "$st" dwhy)"
}

# ---- A. Redis forgot an answered deduction MySQL holds --------------------------------
sku=$(t_sku recA)
t_sku_load "$sku" --total 1000 --partitions 2
ok_a=()
for i in $(seq 1 8); do
    t_deduct "$sku" "o$i" "u$i" 1
    t_expect "order o$i" 200
    ok_a+=("o$i")
done
t_wait_synced "$sku" 30
st=$(t_part_key "$sku" 0 st)
seq=$(t_rcli HGET "$st" seq)
[ "$seq" -ge 2 ] || fail "partition 0 has only $seq deductions"
lost=$(t_mysql_q "SELECT order_id FROM deduction_detail WHERE sku_id='$sku' AND partition_id=0 AND seq=$seq")
ded0=$(t_rcli HGET "$st" ded)
say "A: partition 0 at seq $seq; Redis forgets its last deduction (order $lost)"
t_stop_daemons
a=$(t_rcli HGET "$st" a)
s_a=$(t_rcli HGET "$st" "s$a")
t_rcli HSET "$st" seq $((seq - 1)) ded $((ded0 - 1)) ack $((seq - 1)) "s$a" $((s_a + 1)) >/dev/null
t_rcli HDEL "$(t_part_key "$sku" 0 o)" "$lost" >/dev/null
t_restart
wait_state "$st" diverged
assert_eq "why" mysql_ahead "$(t_rcli HGET "$st" dwhy)"
audit_broken "$sku" "partition 0 diverged from MySQL"

wait_worker
out=$(t_ctl partition reconcile "$sku" 0 2>&1) || fail "stockctl partition reconcile failed: $out"
say "stockctl partition reconcile $sku 0:"$'\n'"$out"
assert_contains "the table says what came back" "$out" "1 restored from MySQL"
assert_contains "the table says it is open" "$out" "state             open"
assert_eq "state in Redis" open "$(t_rcli HGET "$st" state)"
assert_eq "seq in Redis" "$seq" "$(t_rcli HGET "$st" seq)"
assert_eq "ded in Redis" "$ded0" "$(t_rcli HGET "$st" ded)"
assert_eq "ack in Redis (MySQL's synced_seq)" "$seq" "$(t_rcli HGET "$st" ack)"
assert_eq "$lost's record, from MySQL" "1,$seq,0,u${lost#o}" \
    "$(t_rcli HGET "$(t_part_key "$sku" 0 o)" "$lost")"
assert_eq "dwhy gone" "" "$(t_rcli HGET "$st" dwhy)"
t_audit "$sku"
t_deduct "$sku" "$lost" "u${lost#o}" 1
t_expect "the lost order again" 200
assert_eq "answered as a duplicate" true "$(t_json_get duplicate <<<"$T_BODY")"
assert_eq "by partition 0" 0 "$(t_json_get partition <<<"$T_BODY")"
served=0
for i in $(seq 1 12); do
    t_deduct "$sku" "n$i" "v$i" 1
    t_expect "new order n$i" 200
    ok_a+=("n$i")
    if [ "$(t_json_get partition <<<"$T_BODY")" = 0 ]; then
        served=$((served + 1))
        assert_lt "its seq is past MySQL's" "$seq" "$(t_json_get seq <<<"$T_BODY")"
    fi
done
assert_le "partition 0 served new orders" 1 "$served"
t_wait_synced "$sku" 30
t_assert_synced_exact "$sku"
once_each "$sku" "${ok_a[@]}"
t_audit "$sku"

rc_run "$sku" 0
assert_eq "a second reconcile: exit code" 1 "$RC_EXIT"
assert_eq "a second reconcile: error" not_diverged "$(rc_get error)"
assert_contains "it names the reconcile that opened it" "$(rc_get message)" "last reconcile rc."
rc_run nosuch-sku 0
assert_eq "unknown SKU" unknown_sku "$(rc_get error)"
rc_run "$sku" 2
assert_eq "unknown partition" unknown_partition "$(rc_get error)"
out=$(printf '{"cmd":"partition_reconcile","sku":"%s","partition":-1}\n' "$sku" |
    timeout 5 socat - "UNIX-CONNECT:$ADMIN_SOCKET" 2>/dev/null || true)
if [ -n "$out" ]; then
    assert_eq "a negative partition" bad_request "$(t_json_get error <<<"$out")"
fi
t_ctl stats >/dev/null || fail "the scheduler is not answering after bad input"

# ---- B. Redis reused seqs MySQL holds -------------------------------------------------
sku=$(t_sku recB)
t_sku_load "$sku" --total 100 --partitions 1 --per-user-limit 5
t_deduct "$sku" r1 u-r1 1
t_expect "order r1" 200
t_release "$sku" r1
t_expect "release of r1" 200
sell_then_reuse "$sku" 3 a1 a2 a3 c1 c2 c3
# A user entry the lost master had deleted (r1's release) is back on the
# promoted one: r1 holds nothing in the union, so it goes.
t_rcli HSET "{u:$sku:u-r1}" r1 "1:stale" >/dev/null
audit_broken "$sku" "partition 0 diverged from MySQL"
rc_run "$sku" 0
assert_eq "exit code" 0 "$RC_EXIT"
assert_eq "MySQL's synced_seq" 8 "$(rc_get mysql_synced_seq)"
assert_eq "kept from MySQL" 8 "$(rc_get kept_from_mysql)"
assert_eq "renumbered" 3 "$(rc_get renumbered)"
assert_eq "renumbered from" 9 "$(rc_get renumbered_first)"
assert_eq "renumbered to" 11 "$(rc_get renumbered_last)"
assert_eq "records restored (c*)" 3 "$(rc_get records_restored)"
assert_eq "claims set (c*)" 3 "$(rc_get claims_set)"
assert_eq "user entries fixed (c*, d* written, r1's deleted)" 7 "$(rc_get user_entries_fixed)"
assert_eq "r1's entry" 0 "$(t_rcli HEXISTS "{u:$sku:u-r1}" r1)"
assert_eq "ded before" 6 "$(rc_get ded_before)"
assert_eq "ded after" 9 "$(rc_get ded_after)"
assert_eq "units from the partition" 3 "$(rc_get units_from_partition)"
assert_eq "oversold" 0 "$(rc_get oversold)"
assert_eq "reopened" true "$(rc_get reopened)"
for i in 1 2 3; do
    assert_eq "d$i renumbered" "1,$((8 + i)),0,u-d$i" "$(t_rcli HGET "$(t_part_key "$sku" 0 o)" "d$i")"
    assert_eq "c$i restored" "1,$((5 + i)),0,u-c$i" "$(t_rcli HGET "$(t_part_key "$sku" 0 o)" "c$i")"
    assert_eq "c$i's claim" "0:1" "$(t_rcli GET "{o:$sku:c$i}")"
    assert_eq "c$i's user entry" "1:$(rc_get reconcile_id)" "$(t_rcli HGET "{u:$sku:u-c$i}" "c$i")"
    assert_eq "d$i's user entry" "1:$(rc_get reconcile_id)" "$(t_rcli HGET "{u:$sku:u-d$i}" "d$i")"
    orders+=("d$i")
done
t_deduct "$sku" e1 u-e1 1
t_expect "the partition serves again" 200
assert_eq "e1's seq" 12 "$(t_json_get seq <<<"$T_BODY")"
orders+=(e1)
t_deduct "$sku" d2 u-d2 1
t_expect "d2 again" 200
assert_eq "d2 answered as a duplicate" true "$(t_json_get duplicate <<<"$T_BODY")"
t_wait_synced "$sku" 30
t_assert_synced_exact "$sku"
once_each "$sku" "${orders[@]}" r1
assert_eq "d1..d3 in MySQL at 9..11" "9 10 11" "$(t_mysql_q "SELECT seq FROM deduction_detail
    WHERE sku_id='$sku' AND order_id IN ('d1','d2','d3') ORDER BY seq" | tr '\n' ' ' | sed 's/ $//')"
t_audit "$sku"

# ---- B2. the node's answered_lost check marks it ------------------------------------------
sku=$(t_sku recB2)
t_sku_load "$sku" --total 100 --partitions 1
t_kill9 syncd-1 # nothing reaches MySQL: only the node can tell
for i in 1 2 3; do
    t_deduct "$sku" "b$i" "ub$i" 1
    t_expect "order b$i" 200
done
st=$(t_part_key "$sku" 0 st)
dk=$(t_part_key "$sku" 0 d)
a=$(t_rcli HGET "$st" a)
s_a=$(t_rcli HGET "$st" "s$a")
t_rcli HSET "$st" seq 1 ded 1 "s$a" $((s_a + 2)) >/dev/null
t_rcli HDEL "$(t_part_key "$sku" 0 o)" b2 b3 >/dev/null
t_rcli XDEL "$dk" 2-0 3-0 >/dev/null
t_rcli XSETID "$dk" 1-0 >/dev/null
t_deduct "$sku" b4 ub4 1
t_expect "an order given seq 2 a second time" 503
assert_eq "why" answered_lost "$(t_rcli HGET "$st" dwhy)"
t_restart # the sync worker again
rc_run "$sku" 0
assert_eq "exit code" 0 "$RC_EXIT"
assert_eq "nothing in MySQL" 0 "$(rc_get kept_from_mysql)"
assert_eq "renumbered (b1, b4)" 2 "$(rc_get renumbered)"
assert_eq "top seq" 2 "$(rc_get seq_after)"
t_deduct "$sku" b5 ub5 1
t_expect "the next order, seq 3: below the seq the node had answered, and served" 200
assert_eq "b5's seq" 3 "$(t_json_get seq <<<"$T_BODY")"
t_deduct "$sku" b4 ub4 1
t_expect "b4 again: it was recorded, and kept" 200
t_wait_synced "$sku" 30
once_each "$sku" b1 b4 b5
t_audit "$sku"

# ---- C. units from the pool, then units short ---------------------------------------------
sku=$(t_sku recC)
t_sku_load "$sku" --total 10 --partitions 1 --min-chunk 10 --max-chunk 10
sell_then_reuse "$sku" 3 c1 c2 c3 c4
# The partition's units go back to the pool (as a return would; nothing moves
# units of a diverged partition meanwhile): the union's extra units must then
# come through a grant.
s01=$(($(t_rcli HGET "$st" s0) + $(t_rcli HGET "$st" s1)))
t_rcli HSET "$st" s0 0 s1 0 >/dev/null
t_rcli HINCRBY "{s:$sku}:pool" avail "$s01" >/dev/null
avail=$(t_redis_pool "$sku" avail)
say "C: partition units moved to the pool: avail $avail"
rc_run "$sku" 0
assert_eq "exit code" 0 "$RC_EXIT"
assert_eq "units from the partition" 0 "$(rc_get units_from_partition)"
assert_eq "units from the pool" 3 "$(rc_get units_from_pool)"
assert_lt "a grant" 0 "$(rc_get grant_id)"
assert_eq "oversold" 0 "$(rc_get oversold)"
assert_eq "pool avail" $((avail - 3)) "$(t_redis_pool "$sku" avail)"
assert_eq "the grant is applied" "$(rc_get grant_id)" "$(t_rcli HGET "$st" g)"
assert_eq "and out of the journal" "" "$(t_rcli HGET "{s:$sku}:jrnl" "$(rc_get grant_id)")"
orders+=(d1 d2 d3)
t_wait_synced "$sku" 30
once_each "$sku" "${orders[@]}"
t_audit "$sku"

sku=$(t_sku recC2)
t_sku_load "$sku" --total 6 --partitions 1 --min-chunk 6 --max-chunk 6
sell_then_reuse "$sku" 3 c1 c2 c3 c4 c5 c6
short=$(($(t_rcli HGET "$st" s0) + $(t_rcli HGET "$st" s1) + $(t_redis_pool "$sku" avail)))
assert_eq "no unit left in partition or pool" 0 "$short"
rc_run "$sku" 0
assert_eq "exit code: units oversold" 1 "$RC_EXIT"
assert_eq "the reply is a success" true "$(rc_get ok)"
assert_eq "oversold = the shortfall (3 answered, nothing to back them)" 3 "$(rc_get oversold)"
assert_eq "ded after" 9 "$(rc_get ded_after)"
out=$(t_ctl partition reconcile "$sku" 0 2>&1 || true)
assert_contains "a second run: not diverged" "$out" "not_diverged"
assert_eq "state" open "$(t_rcli HGET "$st" state)"
orders+=(d1 d2 d3)
t_wait_synced "$sku" 30
once_each "$sku" "${orders[@]}"
audit_broken "$sku" "oversell"

# ---- D. the shipper marks it; the node had answered past what survives ----------------------
sku=$(t_sku recD)
t_sku_load "$sku" --total 100 --partitions 1
for i in 1 2 3; do
    t_deduct "$sku" "f$i" "uf$i" 1
    t_expect "order f$i" 200
done
t_wait_synced "$sku" 30
t_kill9 syncd-1
for i in 4 5; do
    t_deduct "$sku" "f$i" "uf$i" 1
    t_expect "order f$i (MySQL does not get it)" 200
done
st=$(t_part_key "$sku" 0 st)
dk=$(t_part_key "$sku" 0 d)
a=$(t_rcli HGET "$st" a)
s_a=$(t_rcli HGET "$st" "s$a")
# A replica that had seqs 1..2 only: MySQL holds 1..3, the node answered up to 5.
t_rcli HDEL "$(t_part_key "$sku" 0 o)" f3 f4 f5 >/dev/null
t_rcli XDEL "$dk" 3-0 4-0 5-0 >/dev/null
t_rcli XSETID "$dk" 2-0 >/dev/null
t_rcli HSET "$st" seq 2 ded 2 ack 2 "s$a" $((s_a + 3)) >/dev/null
wait_state "$st" diverged
assert_eq "why" mysql_ahead "$(t_rcli HGET "$st" dwhy)"
# A batch the shipper sent to the killed worker before the mark waits for a
# worker until ship.ack_timeout_ms: one started sooner would still apply it
# (f4 at seq 4, after the reconcile read MySQL: the reconcile reports
# mysql_moved and the partition diverges again). Let it time out first.
ack_ms=$(t_conf_value stock-node node.ini ship.ack_timeout_ms)
sleep "$(((ack_ms + 999) / 1000 + 1))"
t_restart # the sync worker again
rc_run "$sku" 0
assert_eq "exit code" 0 "$RC_EXIT"
assert_eq "f3 restored" 1 "$(rc_get records_restored)"
assert_eq "top seq: MySQL's" 3 "$(rc_get seq_after)"
assert_eq "MySQL did not move meanwhile" false "$(rc_get mysql_moved)"
t_deduct "$sku" f6 uf6 1
t_expect "the next order, seq 4: below the seq the node had answered, and served" 200
assert_eq "f6's seq" 4 "$(t_json_get seq <<<"$T_BODY")"
t_wait_synced "$sku" 30
once_each "$sku" f1 f2 f3 f6
t_audit "$sku"
t_pass
