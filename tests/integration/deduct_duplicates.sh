#!/usr/bin/env bash
# deduct_duplicates.sh -- idempotency under racing retries (DESIGN 8.4).
#
# 3,000 orders, each sent 3 times at the same moment on 3 different
# connections (--dup-concurrent 3), so the copies race through the scheduler,
# possibly to different partitions. With enough stock every copy must be ok;
# per order exactly one copy is the new deduction (duplicate:false) and all
# three name the same partition and seq (the order's one outcome). Redis must
# hold exactly one unit per order. Then an order re-sent with another qty is
# an order_conflict and changes nothing, and re-sent as it was is a duplicate
# with the original partition and seq.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

ORDERS=3000
COPIES=3

t_start_daemons --nodes 2
sku=$(t_sku dups)
t_sku_load "$sku" --total 20000 --partitions 8 --min-chunk 50 --max-chunk 1000

json="$T_DIR/loadgen.json"
orders="$T_DIR/orders.txt"
rc=0
say "loadgen: $ORDERS orders x $COPIES concurrent copies, 48 connections"
t_loadgen --skus "$sku" --requests "$ORDERS" --dup-concurrent "$COPIES" --connections 48 \
    --qty 1 --users 1 --quiet --json "$json" --orders-out "$orders" >"$T_DIR/loadgen.txt" || rc=$?
cat "$T_DIR/loadgen.txt"
assert_eq "loadgen exit code" 0 "$rc"
assert_eq "answers received" $((ORDERS * COPIES)) "$(wc -l <"$orders")"
assert_eq "new oks" "$ORDERS" "$(t_lg "$json" answers.ok)"
assert_eq "duplicate oks" $((ORDERS * (COPIES - 1))) "$(t_lg "$json" answers.duplicate)"
assert_eq "other answers" 0 "$(t_lg_other "$json")"

# Per order: COPIES lines, all ok, one partition and seq, exactly one duplicate:false.
bad=$("$T_PY" - "$orders" "$COPIES" <<'PY'
import sys
from collections import defaultdict
copies = int(sys.argv[2])
by = defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    by[f[0]].append(f)
bad = []
for oid, rows in by.items():
    why = None
    if len(rows) != copies:
        why = "%d answers" % len(rows)
    elif any(r[4] != "ok" for r in rows):
        why = "not all ok: " + ",".join(r[4] for r in rows)
    elif len({(r[5], r[6]) for r in rows}) != 1:
        why = "partition/seq differ: " + ",".join(r[5] + "/" + r[6] for r in rows)
    elif sum(r[7] == "false" for r in rows) != 1:
        why = "%d copies with duplicate:false" % sum(r[7] == "false" for r in rows)
    if why:
        bad.append(oid + ": " + why)
print(len(bad))
for b in bad[:10]:
    print(b, file=sys.stderr)
PY
)
assert_eq "orders whose copies disagree" 0 "$bad"

assert_eq "Redis net deducted (one unit per order)" "$ORDERS" "$(t_redis_sum "$sku" ded)"
assert_eq "GET /v1/skus sold" "$ORDERS" "$(t_sku_field "$sku" sold)"
t_audit "$sku"

# One order again, with another qty: a conflict, nothing changes.
read -r oid _ _ _ _ part seq _ < <(awk '$8 == "false" { print; exit }' "$orders")
t_deduct "$sku" "$oid" u0 2
t_expect "order $oid re-sent with qty 2" 409 order_conflict
assert_eq "Redis net deducted after the conflict" "$ORDERS" "$(t_redis_sum "$sku" ded)"
assert_eq "GET sold after the conflict" "$ORDERS" "$(t_sku_field "$sku" sold)"
# ... and exactly as it was (every loadgen order has user u0: --users 1): a
# duplicate carrying the original partition and seq.
t_deduct "$sku" "$oid" u0 1
t_expect "order $oid re-sent unchanged" 200
assert_eq "re-sent order is a duplicate" true "$(t_json_get duplicate <<<"$T_BODY")"
assert_eq "re-sent order keeps its partition" "$part" "$(t_json_get partition <<<"$T_BODY")"
assert_eq "re-sent order keeps its seq" "$seq" "$(t_json_get seq <<<"$T_BODY")"
assert_eq "Redis net deducted at the end" "$ORDERS" "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

t_pass
