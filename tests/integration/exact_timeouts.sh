#!/usr/bin/env bash
# exact_timeouts.sh -- nothing runs twice when Redis answers too late (issue "Exact I").
#
# The router never re-sends a command whose reply timed out: the outcome is
# unknown and the caller decides; every mutating script carries an id its
# caller chose, so the caller may run it again and get the first answer.
#
# 1. A slow partition master (DEBUG SLEEP 2.6 s, past the node's 2 s Redis
#    timeout) during a deduction of a user whose limit is 1: afterwards the
#    user holds at most one order, a second order of the same user is refused
#    user_limit while the first is held, and the user's counter lists exactly
#    the orders held. (On the old code the re-sent DEDUCT answered DUPLICATE,
#    the counter was given back and the second order got 200.)
#    1b. A 4.5 s sleep: the node's re-run times out too, the order is answered
#    unavailable, and the node's sweep settles it: the order's outcome decides
#    (a tombstone stops any late copy), and the user's entry is given back, so
#    the user is not locked out for the claim ttl (old code: 7 days).
# 2. A paused pool master (CLIENT PAUSE WRITE, past the scheduler's 2 s
#    timeout) while a consolidation grants the pool's last 10 units: the grant
#    is "in doubt", the retry timer runs GRANT_BEGIN again with the same
#    journal id (it answers its first result) and finishes it, so the order
#    asking for 25 units is served on its next try, never a false sold_out;
#    conservation holds before and after a scheduler restart, and the SKU
#    sells exactly its total. (On the old code GRANT_BEGIN ran twice: 10 units
#    waited in the journal and the SKU answered sold_out with 10 available.)
# 2b. A sleeping pool master (DEBUG SLEEP 2.6) during a refill: GRANT_BEGIN
#    runs once (re-run with its journal id it answers its first result), so
#    no unit is lost, before or after a restart. (On the old code it ran twice
#    under two journal ids, and the replay after a restart dropped one.)
# 3. Releases: a deduct retried after its release answers 409 order_released;
#    a release gives the user's units back (limit 1: another order then gets
#    200); a release that meets a tombstone follows the claim and answers 404
#    when the claim has not moved (no partition holds the order).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

# held_by USER_KEY: the orders a user's counter says it holds (a hash of
# order -> "QTY:ROUND"; an old-style string counter is read as its number, so
# this test can be run against older builds too).
held_by() {
    case "$(t_rcli TYPE "$1")" in
    hash) t_rcli HLEN "$1" ;;
    string) t_rcli GET "$1" ;;
    *) echo 0 ;;
    esac
}


# conserved SKU TOTAL: avail + journaled grants + partitions + net deducted = TOTAL.
conserved() {
    local sku=$1 total=$2 parts p avail jr pend=0 held=0 ded
    parts=$(t_rcli HGET "{s:$sku}:pool" parts)
    avail=$(t_rcli HGET "{s:$sku}:pool" avail)
    jr=$(t_rcli HGETALL "{s:$sku}:jrnl" | awk -F: 'NR % 2 == 0 && $1 == "g" { s += $3 } END { print s + 0 }')
    # a journaled grant is pending only while its partition has not applied it
    pend=$jr
    for ((p = 0; p < parts; p++)); do
        held=$((held + $(t_rcli HGET "$(t_part_key "$sku" "$p" st)" s0) + $(t_rcli HGET "$(t_part_key "$sku" "$p" st)" s1)))
    done
    ded=$(t_redis_sum "$sku" ded)
    assert_eq "conservation (avail $avail + journal $pend + partitions $held + ded $ded)" \
        "$total" $((avail + pend + held + ded))
}

# The scheduler's lease key lives on one of the masters this test puts to
# sleep for up to 4.5 s: a lease that outlives that, and a restart that takes
# it over after 1 s instead of waiting for it to expire.
t_start_daemons --nodes 1 --scheduler-opt lease.ttl_ms=20000 --scheduler-opt lease.wait_ms=1000

# ---- 1. slow partition master, per-user limit 1 ----------------------------------------
sku=$(t_sku slowpart)
t_sku_load "$sku" --total 100 --partitions 1 --per-user-limit 1
pm=$(t_slot_owner "$(t_part_key "$sku" 0 st)")
say "partition master on port $pm: DEBUG SLEEP 2.6 during the first order of u1"
t_deduct_asleep "$pm" 2.6 "$sku" a1 u1 1
say "first order a1 answered $T_STATUS: $T_BODY"
sleep 3 # the node's sweep settles an unknown outcome after 1 s
t_deduct "$sku" a2 u1 1
second=$T_STATUS
say "second order a2 answered $second: $T_BODY"
a1_rec=$(t_rcli HGET "{s:$sku:0:$(t_rcli HGET "{s:$sku}:pool" t.0)}:o" a1)
case "$a1_rec" in t,* | "") held_a1=0 ;; *) held_a1=1 ;; esac
ded=$(t_redis_sum "$sku" ded)
if [ "$held_a1" = 1 ]; then
    assert_eq "a1 is held, so a2 is refused" 409 "$second"
    t_expect "a2 refused" 409 user_limit
    assert_eq "units deducted (a1 only)" 1 "$ded"
else
    assert_eq "a1 is not held, so a2 is served" 200 "$second"
    assert_eq "units deducted (a2 only)" 1 "$ded"
fi
assert_eq "entries in u1's counter = orders held" 1 "$(held_by "{u:$sku:u1}")"
t_deduct "$sku" a1 u1 1
say "a1 retried: $T_STATUS $T_BODY"
assert_eq "units deducted after a1's retry" 1 "$(t_redis_sum "$sku" ded)"
assert_eq "entries in u1's counter after a1's retry" 1 "$(held_by "{u:$sku:u1}")"
t_audit "$sku"

# ---- 1b. slower still: the re-run times out too, and the sweep settles ------------------
say "partition master: DEBUG SLEEP 4.5 (the first send and the re-run both time out)"
t_deduct_asleep "$pm" 4.5 "$sku" b1 u9 1
say "b1 answered $T_STATUS: $T_BODY"
orders_key="{s:$sku:0:$(t_rcli HGET "{s:$sku}:pool" t.0)}:o"
for _ in $(seq 1 50); do
    [ "$(held_by "{u:$sku:u9}")" = 0 ] && break
    sleep 0.2
done
b1_rec=$(t_rcli HGET "$orders_key" b1)
case "$b1_rec" in
t,* | "")
    assert_eq "b1 holds nothing: the sweep gave u9's entry back" 0 "$(held_by "{u:$sku:u9}")"
    t_deduct "$sku" b2 u9 1
    t_expect "another order of u9 (not locked out by the unknown outcome)" 200
    ;;
*)
    assert_eq "b1 is held: u9's entry stays" 1 "$(held_by "{u:$sku:u9}")"
    ;;
esac
assert_eq "units deducted (a1, and b1 or b2)" 2 "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

# ---- 2. paused pool master during a grant of the pool's last units ---------------------
sku=$(t_sku slowpool)
TOTAL=30
t_sku_load "$sku" --total $TOTAL --partitions 1 --min-chunk 10 --max-chunk 10
assert_eq "pool after the first two chunks" 10 "$(t_redis_pool "$sku" avail)"
pool_key="{s:$sku}:pool"
pp=$(t_slot_owner "$pool_key")
say "pool master on port $pp: CLIENT PAUSE 2600 WRITE, then an order of 25 units"
timeout 5 redis-cli -p "$pp" CLIENT PAUSE 2600 WRITE >/dev/null
t_deduct "$sku" big-1 ub 25
say "the order of 25 answered $T_STATUS: $T_BODY"
[ "$T_STATUS" = 200 ] || [ "$T_STATUS" = 503 ] ||
    fail "order of 25 while the pool master is paused: expected 200 or 503, got $T_STATUS $T_BODY"
sleep 3.5 # the pause ends at 2.6 s; the pool's retry timer runs every 500 ms
grep -q "grant begin in doubt sku=$sku " "$T_DIR/scheduler.log" ||
    fail "the grant did not meet the pause (no 'grant begin in doubt' in the log)"
assert_eq "journal after the retry" 0 "$(t_rcli HLEN "{s:$sku}:jrnl")"
assert_eq "pool after the retry" 0 "$(t_redis_pool "$sku" avail)"
conserved "$sku" $TOTAL
t_deduct "$sku" big-1 ub 25
t_expect "the order of 25 on its next try (no false sold_out)" 200
assert_eq "units deducted" 25 "$(t_redis_sum "$sku" ded)"
conserved "$sku" $TOTAL
say "restart the scheduler"
t_kill9 scheduler
t_restart
conserved "$sku" $TOTAL
json="$T_DIR/loadgen.json"
t_loadgen --skus "$sku" --requests 20 --connections 4 --qty 1 --quiet --order-prefix "rest$$" \
    --json "$json" >"$T_DIR/loadgen.txt" || fail "loadgen failed: $(tail -5 "$T_DIR/loadgen.txt")"
assert_eq "the last 5 units sell" 5 "$(t_lg "$json" answers.ok)"
assert_eq "then sold out" 15 "$(t_lg "$json" answers.sold_out)"
assert_eq "units deducted: the whole total" $TOTAL "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

# ---- 2b. a sleeping pool master during a refill -----------------------------------------
# The partition's master must be another one, or the deduction that empties
# the standby would sleep too: load SKUs until the pool lands elsewhere.
for attempt in 1 2 3 4 5 6 7 8; do
    sku=$(t_sku slowrefill)
    t_sku_load "$sku" --total 40 --partitions 1 --min-chunk 10 --max-chunk 10
    pp=$(t_slot_owner "{s:$sku}:pool")
    pm=$(t_slot_owner "$(t_part_key "$sku" 0 st)")
    [ "$pp" != "$pm" ] && break
done
[ "$pp" != "$pm" ] || fail "every SKU's pool landed on its partition's master"
# ... and so must the order's claim.
for k in $(seq 1 30); do
    order="refill-$k"
    [ "$(t_slot_owner "{o:$sku:$order}")" != "$pp" ] && break
done
assert_eq "pool after the first two chunks" 20 "$(t_redis_pool "$sku" avail)"
say "pool master on port $pp (partition's on $pm): DEBUG SLEEP 2.6, then an order that empties the active sub-domain"
# One unit first, so the node has the SKU's layout (it reads it from the pool
# hash the first time) before the pool's master sleeps.
t_deduct "$sku" warm-1 uw 1
t_expect "a first unit" 200
t_deduct_asleep "$pp" 2.6 "$sku" "$order" ur 9
t_expect "the order of 9 that empties the active sub-domain (its refill meets the sleep)" 200
sleep 1.5 # the pool's retry timer runs every 500 ms
grep -q "grant begin in doubt sku=$sku " "$T_DIR/scheduler.log" ||
    fail "the refill's GRANT_BEGIN did not meet the sleep (no 'grant begin in doubt' in the log)"
assert_eq "journal after the retry" 0 "$(t_rcli HLEN "{s:$sku}:jrnl")"
assert_eq "pool after one refill of 10" 10 "$(t_redis_pool "$sku" avail)"
conserved "$sku" 40
say "restart the scheduler"
t_kill9 scheduler
t_restart
conserved "$sku" 40
t_loadgen --skus "$sku" --requests 40 --connections 4 --qty 1 --quiet --order-prefix "refill$$" \
    --json "$json" >"$T_DIR/loadgen.txt" || fail "loadgen failed: $(tail -5 "$T_DIR/loadgen.txt")"
assert_eq "the other 30 units sell" 30 "$(t_lg "$json" answers.ok)"
assert_eq "units deducted: the whole total" 40 "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

# ---- 3. releases -----------------------------------------------------------------------
sku=$(t_sku relsem)
t_sku_load "$sku" --total 100 --partitions 2 --per-user-limit 1
t_deduct "$sku" r1 u7 1
t_expect "r1 deducted" 200
t_release "$sku" r1
t_expect "r1 released" 200
t_deduct "$sku" r1 u7 1
t_expect "r1 retried after its release" 409 order_released
assert_eq "u7's counter after the release" 0 "$(held_by "{u:$sku:u7}")"
t_deduct "$sku" r2 u7 1
t_expect "another order of u7 after the release (the limit was given back)" 200
t_deduct "$sku" r3 u7 1
t_expect "and a third one is over the limit again" 409 user_limit
# A tombstone under the claim: partition 0 refused the order and the claim
# still names it, so no partition holds the order.
t_rcli SET "{o:$sku:t1}" "0:1" >/dev/null
t_rcli HSET "{s:$sku:0:$(t_rcli HGET "{s:$sku}:pool" t.0)}:o" t1 "t,1" >/dev/null
t_release "$sku" t1
t_expect "release of an order refused under its claim" 404 unknown_order
# A tombstone on the partition the claim does not name changes nothing: the
# release goes where the claim points.
t_deduct "$sku" t2 u8 1
t_expect "t2 deducted" 200
part=$(t_json_get partition <<<"$T_BODY")
other=$((1 - part))
ver=$(t_rcli GET "{o:$sku:t2}")
t_rcli HSET "{s:$sku:$other:$(t_rcli HGET "{s:$sku}:pool" t.$other)}:o" t2 "t,1" >/dev/null
t_release "$sku" t2
t_expect "release of t2 (claim $ver)" 200
assert_eq "released from the partition that holds it" "$part" "$(t_json_get partition <<<"$T_BODY")"
t_audit "$sku"

t_pass
