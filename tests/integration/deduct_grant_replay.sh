#!/usr/bin/env bash
# deduct_grant_replay.sh -- a scheduler that dies in the middle of a grant and of
# a return replays both from the journal at its next start.
#
# The scheduler is killed (-9); then the state it would leave if it had died
# between phases is written into Redis by hand: a grant whose phase 1 ran (units
# taken from the pool avail and journaled "g:0:37") but not phase 2, and a
# return whose partition step ran (partition 1 emptied into its r.ID record) but
# not the pool step. Before the restart the units are in the journal and in the
# r.ID record, so conservation must already hold when they are counted there
# (the audit is run through a fresh scheduler only after the restart, so it is
# checked by hand here). After the restart: the journal is empty, the grant
# reached partition 0 exactly once, the return reached the pool exactly once,
# the audit passes, and the SKU still sells exactly its total.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

# A short scheduler lease: the restart after kill -9 waits for the dead
# scheduler's lease to expire (at most lease.ttl_ms), not the default 5 s.
t_start_daemons --nodes 2 --scheduler-opt lease.ttl_ms=1000 --scheduler-opt lease.wait_ms=3000
sku=$(t_sku replay)
TOTAL=1000
t_sku_load "$sku" --total $TOTAL --partitions 2 --min-chunk 10 --max-chunk 100
t_audit "$sku"

pool="{s:$sku}:pool"
jr="{s:$sku}:jrnl"
st() { echo "{s:$sku:$1:$(t_rcli HGET "$pool" "t.$1")}:st"; }
units() { echo $(($(t_rcli HGET "$(st "$1")" s0) + $(t_rcli HGET "$(st "$1")" s1))); }
conserved() {
    local avail ded r u0 u1 pend=$1 ret=$2
    avail=$(t_rcli HGET "$pool" avail)
    ded=$(t_redis_sum "$sku" ded)
    u0=$(units 0)
    u1=$(units 1)
    r=$((avail + pend + ret + u0 + u1 + ded))
    assert_eq "conservation by hand (avail $avail + pending $pend + returned $ret + partitions $u0+$u1 + ded $ded)" $TOTAL $r
}

say "kill -9 the scheduler"
t_kill9 scheduler

before0=$(units 0)
taken1=$(units 1)
say "forge a grant after phase 1 (37 units for partition 0)"
gid=$(t_rcli HINCRBY "$pool" nextid 1)
t_rcli HINCRBY "$pool" avail -37 >/dev/null
t_rcli HSET "$jr" "$gid" "g:0:37" >/dev/null
say "forge a return after its partition step (partition 1 holds $taken1 units)"
rid=$(t_rcli HINCRBY "$pool" nextid 1)
t_rcli HSET "$jr" "$rid" "r:1" >/dev/null
t_rcli HSET "$(st 1)" s0 0 s1 0 "r.$rid" "$taken1" >/dev/null
conserved 37 "$taken1"
avail_before=$(t_rcli HGET "$pool" avail)

say "restart the scheduler: it must replay the journal"
t_restart
assert_eq "journal entries after replay" 0 "$(t_rcli HLEN "$jr")"
assert_eq "return record r.$rid gone" 0 "$(t_rcli HEXISTS "$(st 1)" "r.$rid")"
g0=$(t_rcli HGET "$(st 0)" g)
assert_le "partition 0 applied grant $gid" "$gid" "$g0"
after0=$(units 0)
# Partition 0 got the 37 units (and possibly a top-up grant after the replay).
assert_le "partition 0 holds the replayed grant" $((before0 + 37)) "$after0"
avail_after=$(t_rcli HGET "$pool" avail)
say "pool avail $avail_before before replay, $avail_after after (return of $taken1 added, top-ups taken)"
conserved 0 0
t_audit "$sku"

say "the SKU still sells exactly its total"
json="$T_DIR/loadgen.json"
t_loadgen --skus "$sku" --requests $((TOTAL + 200)) --connections 16 --qty 1 --quiet \
    --json "$json" >"$T_DIR/loadgen.txt" || fail "loadgen failed: $(tail -5 "$T_DIR/loadgen.txt")"
assert_eq "ok answers" $TOTAL "$(t_lg "$json" answers.ok)"
assert_eq "sold_out answers" 200 "$(t_lg "$json" answers.sold_out)"
assert_eq "Redis net deducted" $TOTAL "$(t_redis_sum "$sku" ded)"
t_audit "$sku"
t_pass
