#!/usr/bin/env bash
# exact_claimloss.sh -- an order claim lost in a failover must not let one
# order be deducted on two partitions (issue 10, "Exact II": "A claim lost the
# same way lets one order be deducted on two partitions").
#
# The claim {o:SKU:ORDER} names the one partition that decides an order; it
# lives on its own slot, so usually on another master than that partition.
# The scenario, on a Redis Cluster of its own (a failover is destructive;
# cluster node timeout 1 s, as exact_failover.sh):
#   - a SKU with 2 partitions PA and PB on two masters; the third master X
#     holds no partition. Order O is an id whose claim key lives on X, and O
#     is sent when the scheduler's round-robin names PA (two warm-up orders
#     show the alternation; the claim on X, read back, confirms "PA:1");
#   - X's replica is caught up, then frozen (SIGSTOP) and its link killed
#     (CLIENT KILL TYPE replica), so nothing X takes from now on reaches it;
#   - O is deducted once: the claim is written on X only, DEDUCT runs on PA
#     (whose master replicates normally);
#   - X is killed -9 and its replica resumed: it is promoted WITHOUT the
#     claim (checked); the killed node is restarted and rejoins as a replica
#     (under `replica` a master without replica answers 503 no_replica);
#   - O is retried (same order id, same user) until it gets a final answer.
#     With the claim gone the node takes the retry for a new order and claims
#     the partition the scheduler routes it to. The test makes that PB: the
#     scheduler alternates PA/PB, and while O's claim is absent a filler order
#     is sent whenever the next turn is PA's. The retry must be answered by
#     PB (a retry on PA would meet O's own record there and prove nothing);
#   - six more orders, and every order without a final answer is retried.
#
# Two variants (the durability of the nodes and of the pool):
#   replica (default, exact_claimloss.sh): claim loss is impossible. The first
#     attempt must not be answered ok (503: X's replica never held the claim),
#     and afterwards O is held by AT MOST ONE partition: every partition's
#     order hash ({s:SKU:P:K}:o, a record "QTY,SEQ,RELSEQ,USER" with RELSEQ 0
#     is held; "t,VER" is a tombstone), and after sync MySQL has at most one
#     detail row of O with qty > 0; Redis's net deducted equals the units
#     answered ok, and the audit is clean.
#     A node that confirms a claim only with the round's one replication
#     barrier, after DEDUCT already ran on PA, FAILS here at "partitions
#     holding O": PA holds O from the first attempt (503, but recorded), PB
#     from the retry, which found no claim after the failover. The claim must
#     be confirmed by a replica before DEDUCT runs.
#   leader (CLAIMLOSS_DURABILITY=leader, exact_claimloss_leader.sh): claim
#     loss is detected. Nothing waits for a replica, so the double happens
#     and the test shows it: the first attempt is answered ok by PA, the retry
#     ok by PB (not as a duplicate), O is held by two partitions in Redis and
#     is in MySQL twice; then `stockctl audit` must exit 1 and its JSON check
#     `orders_once` must be broken and name O (needs the audit's orders_once
#     check: an order held by two partitions / twice per SKU in MySQL).
#
# Anything that keeps the scenario from happening (routing not alternating,
# the claim not on X, the promoted replica holding the claim, the retry
# routed to PA) fails the test as a setup failure, never passes it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

DUR=${CLAIMLOSS_DURABILITY:-replica}
case "$DUR" in
replica) ;;
leader) T_NAME="$T_NAME-leader" ;;
*) fail "CLAIMLOSS_DURABILITY must be replica or leader, not '$DUR'" ;;
esac

say "durability $DUR"
t_own_infra
# The lease key may live on the master this test kills: it must outlast the
# failover.
t_start_daemons --nodes 1 --scheduler-opt lease.ttl_ms=20000 --scheduler-opt lease.wait_ms=1000 \
    --node-opt "deduct.durability=$DUR" --scheduler-opt "pool.durability=$DUR"

sku=$(t_sku claimloss)
t_sku_load "$sku" --total 1000 --partitions 2

# ---- helpers -------------------------------------------------------------------------------

# rport KEY: the master owning KEY's slot, asked directly (the seed node of
# t_rcli may be the one this test kills).
rport() { t_slot_owner "$1"; }
# rget PORT CMD...: one command on the node on PORT ("" on error).
rget() { timeout 5 redis-cli -p "$1" "${@:2}" 2>/dev/null || true; }

answers="$T_DIR/answers.txt" # ORDER STATUS PARTITION REASON, one line per answer
: >"$answers"
# order ID: one deduction of 1 unit by user u-ID; sets T_STATUS/T_BODY, logs it.
order() {
    local part reason
    t_deduct "$sku" "$1" "u-$1" 1
    part=$(t_json_get partition <<<"$T_BODY")
    reason=$(t_json_get reason <<<"$T_BODY")
    echo "$1 $T_STATUS ${part:--} ${reason:--}" >>"$answers"
    say "order $1 -> $T_STATUS $T_BODY"
}
# final STATUS: an answer a client would not retry.
final() { [ "$1" != 503 ] && [ "$1" != 000 ]; }

# caught_up PORT: the master on PORT's replica acked its whole stream
# (slave0's offset == master_repl_offset; acks come every second).
caught_up() {
    local i info mo so
    for ((i = 0; i < 60; i++)); do
        info=$(timeout 5 redis-cli -p "$1" INFO replication | tr -d '\r')
        mo=$(sed -n 's/^master_repl_offset://p' <<<"$info")
        so=$(sed -n 's/^slave0:.*offset=\([0-9]*\).*/\1/p' <<<"$info")
        if [ -n "$so" ] && [ "$so" = "$mo" ]; then return 0; fi
        sleep 0.1
    done
    return 1
}

salts=()
okeys=()
for p in 0 1; do
    salts[p]=$(t_redis_pool "$sku" "t.$p")
    okeys[p]="{s:$sku:$p:${salts[p]}}:o"
done
# held_by ORDER: the partitions whose order hash holds ORDER (a record
# "QTY,SEQ,RELSEQ,USER" with RELSEQ 0), space-separated; logs every record.
held_by() {
    local p v held=""
    for p in 0 1; do
        v=$(rget "$(rport "${okeys[p]}")" HGET "${okeys[p]}" "$1")
        say "partition $p order record of $1: '${v}'" >&2
        if [[ "$v" =~ ^[0-9]+,[0-9]+,0(,|$) ]]; then held+="$p "; fi
    done
    echo "${held% }"
}

# ---- the layout: two partitions on two masters, X the third ---------------------------------

order w1
t_expect "warm-up order w1" 200
order w2
t_expect "warm-up order w2" 200
pw1=$(awk '$1 == "w1" { print $3 }' "$answers")
pw2=$(awk '$1 == "w2" { print $3 }' "$answers")
[ "$pw1" != "$pw2" ] || fail "setup: routing did not alternate (w1 and w2 both on partition $pw1)"
PA=$pw1 # the scheduler's next turn
PB=$pw2
mA=$(rport "{s:$sku:$PA:${salts[PA]}}:st")
mB=$(rport "{s:$sku:$PB:${salts[PB]}}:st")
[ "$mA" != "$mB" ] || fail "setup: both partitions on master $mA"
X=""
for p in $REDIS_PORTS; do
    if [ "$(rget "$p" ROLE | head -1)" = master ] && [ "$p" != "$mA" ] && [ "$p" != "$mB" ]; then
        X=$p
    fi
done
[ -n "$X" ] || fail "setup: no master without a partition of $sku"
rX=$(t_replica_of "$X")
[[ "$rX" =~ ^[0-9]+$ ]] || fail "setup: master $X has no replica"

O=""
for ((i = 1; i <= 300; i++)); do
    if [ "$(rport "{o:$sku:cl$i}")" = "$X" ]; then
        O="cl$i"
        break
    fi
done
[ -n "$O" ] || fail "setup: no order id cl1..cl300 has its claim on master $X"
claim="{o:$sku:$O}"
say "PA = partition $PA (master $mA), PB = partition $PB (master $mB);" \
    "order $O: claim $claim slot $(rget "$X" CLUSTER KEYSLOT "$claim") on master X = $X, replica $rX"

# ---- the first attempt while X's replica is frozen and cut off ------------------------------

caught_up "$X" || fail "setup: the replica $rX of $X did not catch up"
T_FROZEN=$(t_redis_pid "$rX")
[[ "$T_FROZEN" =~ ^[0-9]+$ ]] || fail "no pid for the redis-server on port $rX"
kill -STOP "$T_FROZEN"
rget "$X" CLIENT KILL TYPE replica >/dev/null
t_wait_replicas "$X" 0 5
assert_eq "replicas attached to X while frozen" 0 "$(t_replicas_attached "$X")"
say "froze X's replica $rX (pid $T_FROZEN) and cut its link"

order "$O"
first_body=$T_BODY
assert_eq "O's claim on X (the scheduler routed O to PA)" "$PA:1" "$(rget "$X" GET "$claim")"
if [ "$DUR" = replica ]; then
    # X's replica cannot hold the claim: nothing may be answered ok.
    t_expect "first attempt of $O (no replica of X holds its claim)" 503 unavailable
    reason=$(t_json_get reason <<<"$first_body")
    case "$reason" in
    replication_timeout | no_replica) say "ok: reason $reason" ;;
    *) fail "first attempt of $O: reason '$reason', expected replication_timeout or no_replica" ;;
    esac
else
    t_expect "first attempt of $O under leader (nothing waits for X's replica)" 200
    assert_eq "answered by" "$PA" "$(t_json_get partition <<<"$first_body")"
fi

# ---- failover: X killed, its replica promoted without the claim -----------------------------

xpid=$(t_redis_pid "$X")
say "kill -9 X (port $X, pid $xpid), resume its replica"
kill -KILL "$xpid"
for _ in $(seq 1 50); do kill -0 "$xpid" 2>/dev/null || break; sleep 0.1; done
kill -CONT "$T_FROZEN"
T_FROZEN=""
t_wait_role "$rX" master 30
assert_eq "X's replica was promoted" master "$(rget "$rX" ROLE | head -1)"
assert_eq "the promoted replica holds no claim of $O" "" "$(rget "$rX" GET "$claim")"

say "restart X (it rejoins as a replica of $rX)"
redis-server "$T_OWN_INFRA/redis/$X/redis.conf" >/dev/null
t_wait_role "$X" slave 30
assert_eq "X's role after the restart" slave "$(rget "$X" ROLE | head -1)"
t_wait_replicas "$rX" 1 30
assert_eq "replicas attached to the new master" 1 "$(t_replicas_attached "$rX")"
for p in $REDIS_PORTS; do
    t_wait_cluster_ok "$p" 20 || fail "node $p: cluster state not ok"
done
assert_eq "claim of $O after the failover" "" "$(rget "$rX" GET "$claim")"

# ---- the retry, routed to PB ----------------------------------------------------------------
# The scheduler alternates PA, PB: O's first attempt took PA's turn, so PB's
# is next. Every deduction routed since moves the turn on (whatever its
# answer); while O has no claim, a filler order takes PA's turn.

next=$PB
nfill=0
other() { if [ "$1" = "$PA" ]; then echo "$PB"; else echo "$PA"; fi; }
for ((try = 1; try <= 20; try++)); do
    if [ -z "$(rget "$rX" GET "$claim")" ]; then
        while [ "$next" = "$PA" ]; do
            nfill=$((nfill + 1))
            order "f$nfill"
            if [ "$T_STATUS" = 200 ] && [ "$(t_json_get partition <<<"$T_BODY")" != "$PA" ]; then
                fail "setup: filler f$nfill answered by partition $(t_json_get partition <<<"$T_BODY"), expected PA = $PA"
            fi
            next=$(other "$next")
        done
    fi
    order "$O"
    next=$(other "$next")
    if final "$T_STATUS"; then break; fi
    sleep 0.5
done
retry_body=$T_BODY
t_expect "the retry of $O gets a final answer" 200
assert_eq "the retry of $O was decided by PB" "$PB" "$(t_json_get partition <<<"$retry_body")"
say "claim of $O now: $(rget "$rX" GET "$claim")"

for i in 1 2 3 4 5 6; do order "n$i"; done
# Every order without a final answer is asked again until it has one.
for _ in $(seq 1 10); do
    pending=$(awk '{ last[$1] = $2 } END { for (o in last) if (last[o] == 503 || last[o] == "000") print o }' "$answers")
    [ -z "$pending" ] && break
    sleep 0.5
    for o in $pending; do order "$o"; done
done
[ -z "$pending" ] || fail "orders still without a final answer: $pending"
say "answers: $(tr '\n' ';' <"$answers")"
ok_orders=$(awk '$2 == 200 { print $1 }' "$answers" | sort -u)
n_ok=$(wc -w <<<"$ok_orders")

# ---- the verdicts ---------------------------------------------------------------------------

held=$(held_by "$O")
n_held=$(wc -w <<<"$held")
say "order $O is held by partition(s): ${held:-none}"
if [ "$DUR" = replica ]; then
    # The first attempt was not answered ok, so Redis must not hold O where the
    # lost claim pointed while the retry's claim points elsewhere.
    assert_le "partitions holding $O" "$n_held" 1
    assert_eq "the partition holding $O" "$PB" "$held"
    t_wait_synced "$sku" 60
    assert_le "MySQL detail rows of $O with qty > 0" \
        "$(t_mysql_q "SELECT COUNT(*) FROM deduction_detail WHERE sku_id='$sku' AND order_id='$O' AND qty>0" | tail -1)" 1
    assert_eq "Redis net deducted = units answered ok" "$n_ok" "$(t_redis_sum "$sku" ded)"
    t_audit "$sku"
    t_pass
fi

# leader: the double happens, and the audit must name it.
assert_eq "partitions holding $O under leader (the double)" "$PA $PB" "$held"
t_wait_synced "$sku" 60
assert_eq "MySQL detail rows of $O with qty > 0 under leader" 2 \
    "$(t_mysql_q "SELECT COUNT(*) FROM deduction_detail WHERE sku_id='$sku' AND order_id='$O' AND qty>0" | tail -1)"
assert_eq "Redis net deducted = units answered ok + O's second unit" $((n_ok + 1)) \
    "$(t_redis_sum "$sku" ded)"

rc=0
out=$(t_ctl audit "$sku" 2>&1) || rc=$?
printf '%s\n' "$out"
a=$(t_ctl --json audit "$sku" 2>/dev/null) || true
chk=$(t_audit_check orders_once <<<"$a")
[ "$rc" = 1 ] || fail "stockctl audit exited $rc with $O held by two partitions, expected 1"
say "ok: stockctl audit exits 1"
[ -n "$chk" ] || fail "the audit has no check orders_once: $(tr '\n' ' ' <<<"$a")"
assert_eq "audit check orders_once" broken "${chk%%$'\t'*}"
assert_contains "orders_once names the order" "${chk#*$'\t'}" "$O"
t_pass
