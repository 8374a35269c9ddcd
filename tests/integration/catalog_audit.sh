#!/usr/bin/env bash
# catalog_audit.sh -- `stockctl audit` checks Redis against MySQL, and says when it cannot.
#
# DESIGN 8.3: after a small sale (releases included) whose details the nodes
# have shipped:
#   - `stockctl audit` exits 0, and the MySQL numbers it reports (--json
#     mysql_deducted, mysql_detail_rows) are what a plain
#     `select sum(qty), count(*) from deduction_detail` gives; the registry
#     shows details_pending 0 for every partition;
#   - MySQL broken on purpose (one detail row deleted): the audit exits 1 and
#     names the exactness check;
#   - the sync workers stopped: the audit exits 1 and says MySQL was not
#     verified; new deductions then wait in Redis, and the registry shows them
#     (details_pending, oldest_pending_age_ms).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

DRAIN_TIMEOUT_S=20

cat_sql() {
    timeout "$T_CMD_TIMEOUT_S" mariadb --protocol=tcp -h "${MYSQL_HOST:-127.0.0.1}" \
        -P "${MYSQL_PORT:?}" -u "${MYSQL_USER:-root}" --connect-timeout=5 -N -B \
        "${MYSQL_DB:-stock}" -e "$1"
}

# cat_audit_field JSON KEY: a top-level field of an audit reply.
cat_audit_field() { t_json_get "$2" <<<"$1"; }

# cat_wait_drained SKU: polls the audit until nothing waits in Redis for MySQL.
cat_wait_drained() {
    local deadline=$((SECONDS + DRAIN_TIMEOUT_S)) a=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        a=$(t_ctl --json audit "$1" 2>/dev/null) || true
        if [ "$(cat_audit_field "$a" mysql_verified)" = true ] &&
            [ "$(cat_audit_field "$a" unsynced_details)" = 0 ] &&
            [ "$(cat_audit_field "$a" details_pending)" = 0 ]; then
            say "ok: shipping drained for $1"
            return 0
        fi
        sleep 0.2
    done
    fail "details of $1 still pending after ${DRAIN_TIMEOUT_S}s: $a"
}

t_start_daemons --nodes 2
sku=$(t_sku cataudit)
t_sku_load "$sku" --total 1000 --partitions 4 --min-chunk 20 --max-chunk 100

say "sale: 300 requests, qty 1-2, 10% released"
rc=0
t_loadgen --skus "$sku" --requests 300 --connections 8 --qty 1-2 --release-ratio 0.1 --seed 3 \
    --quiet --order-prefix "au$$" --json "$T_DIR/lg.json" >"$T_DIR/lg.out" 2>&1 || rc=$?
assert_eq "loadgen exit code" 0 "$rc"
cat_wait_drained "$sku"

# ---- all holds, and the audit's MySQL numbers are MySQL's ----------------------------------
out=$(t_ctl audit "$sku" 2>&1) || fail "stockctl audit $sku exited non-zero: $out"
printf '%s\n' "$out"
assert_contains "audit table: MySQL net deducted" "$out" "net deducted in MySQL"
assert_contains "audit table: exactness" "$out" "exactness                 ok"
a=$(t_ctl --json audit "$sku") || fail "stockctl --json audit failed: $a"
read -r q_sum q_rows <<<"$(cat_sql "select coalesce(sum(qty),0), count(*) from deduction_detail
                                   where sku_id='$sku'")"
assert_eq "audit MySQL net deducted == select sum(qty)" "$q_sum" "$(cat_audit_field "$a" mysql_deducted)"
assert_eq "audit MySQL detail rows == select count(*)" "$q_rows" \
    "$(cat_audit_field "$a" mysql_detail_rows)"
assert_eq "MySQL SUM(qty) == Redis net deducted" "$(t_redis_sum "$sku" ded)" "$q_sum"
assert_eq "MySQL rows == Redis seqs" "$(t_redis_sum "$sku" seq)" "$q_rows"
entry=$(t_registry_sku "$sku")
assert_eq "registry: details_pending summed over partitions" 0 \
    "$(t_json_sum details_pending <<<"$entry")"
assert_eq "registry: oldest_pending_age_ms of every partition" 0 \
    "$("$T_PY" -c '
import json, sys
print(max(p["oldest_pending_age_ms"] for p in json.load(sys.stdin)["partitions"]))' <<<"$entry")"
reg=$(t_ctl registry) || fail "stockctl registry failed: $reg"
assert_contains "stockctl registry: the lag columns" "$reg" "unsynced  oldest_ms"

# ---- MySQL broken on purpose ---------------------------------------------------------------
victim=$(cat_sql "select partition_id, seq from deduction_detail where sku_id='$sku'
                  order by partition_id, seq limit 1")
read -r vp vs <<<"$victim"
[ -n "$vs" ] || fail "no detail row to delete"
cat_sql "delete from deduction_detail where sku_id='$sku' and partition_id=$vp and seq=$vs"
say "deleted detail row (partition $vp, seq $vs)"
rc=0
out=$(t_ctl audit "$sku" 2>&1) || rc=$?
printf '%s\n' "$out"
assert_eq "audit with a detail row missing: exit" 1 "$rc"
assert_contains "the exactness check is broken" "$out" "exactness                 BROKEN"
assert_contains "stderr names exactness" "$out" "invariant broken for $sku: exactness"
assert_contains "each detail once is broken too" "$out" "each detail once          BROKEN"

# ---- no sync worker ---------------------------------------------------------------------------
pid=$(t_pid syncd-1)
[ -n "$pid" ] || fail "no syncd-1 pid file"
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "syncd-1 (pid $pid) did not stop"
say "stopped syncd-1 (pid $pid)"
rc=0
out=$(t_ctl audit "$sku" 2>&1) || rc=$?
printf '%s\n' "$out"
assert_eq "audit without a sync worker: exit" 1 "$rc"
assert_contains "the MySQL lines are not verified" "$out" "detail rows in MySQL      not verified"
assert_contains "stderr says MySQL was not verified" "$out" "MySQL not verified for $sku"
a=$(t_ctl --json audit "$sku" 2>/dev/null) || true
assert_eq "--json: mysql_verified" false "$(cat_audit_field "$a" mysql_verified)"

# New deductions wait in Redis; the registry shows how many and how old.
for i in 1 2 3; do
    t_deduct "$sku" "late-$$-$i" "u$i" 1
    [ "$T_STATUS" = 200 ] || [ "$T_STATUS" = 409 ] || fail "late deduction $i: HTTP $T_STATUS"
done
sleep 0.3
entry=$(t_registry_sku "$sku")
pending=$(t_json_sum details_pending <<<"$entry")
say "registry with the worker down: details_pending $pending"
assert_lt "details wait in Redis" 0 "$pending"
oldest=$("$T_PY" -c '
import json, sys
print(max(p["oldest_pending_age_ms"] for p in json.load(sys.stdin)["partitions"]))' <<<"$entry")
assert_le "the oldest pending detail is at least 300 ms old" 300 "$oldest"

t_pass
