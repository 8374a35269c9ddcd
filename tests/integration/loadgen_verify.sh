#!/usr/bin/env bash
# loadgen_verify.sh -- stock-loadgen --verify passes a clean sale and fails a broken one.
#
# DESIGN 8.3 (exactness) checked by the load generator itself, through the
# scheduler's admin socket (registry for the drain, audit for the numbers):
#   1. a short sale (qty 1..3, demand above supply, some releases) run with
#      --verify exits 0: shipping drained, the audit's invariants hold, and the
#      net units the run saw answered ok equal Redis's and MySQL's net
#      deducted, exactly (no answer of unknown outcome);
#   2. --verify-only --expect-units <actual + 1> exits 3 and names both unit
#      checks (Redis and MySQL): a wrong expectation must not pass;
#   3. --verify-only against an admin socket that does not exist exits 3 and
#      names the admin check (no audit is not a pass);
#   4. MySQL broken on purpose (one deduction_detail row of the SKU deleted):
#      --verify-only --expect-units <actual> (which passed just before) exits 3
#      and names the audit's invariants and MySQL's units. A verifier that
#      cannot fail proves nothing: deliberately broken audit input must fail it.
# Exit code 3 is the loadgen's "a verification check failed" (usage errors are
# 2, transport errors 1), so each step checks for 3 exactly.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

TOTAL=2000
REQUESTS=1500 # qty 1..3 (mean 2) with 10% released: demand ~2700 units for 2000
EXIT_VERIFY_FAILED=3

# lv_sql SQL: one statement on the harness's MariaDB (the stock database).
lv_sql() {
    if declare -F t_mysql >/dev/null; then
        t_mysql -e "$1"
    else
        timeout "$T_CMD_TIMEOUT_S" mariadb --protocol=tcp -h "${MYSQL_HOST:-127.0.0.1}" \
            -P "${MYSQL_PORT:?MYSQL_PORT not set}" -u "${MYSQL_USER:-root}" --connect-timeout=5 \
            -N -B "${MYSQL_DB:-stock}" -e "$1"
    fi
}

# lv_verify_only OUT.json ARGS...: stock-loadgen --verify-only on this test's
# admin socket (unless ARGS give another); prints the exit code.
lv_verify_only() {
    local json=$1 rc=0
    shift
    timeout --kill-after=10 120 "$T_BIN/stock-loadgen" --verify-only --skus "$sku" \
        --drain-timeout 20 --json "$json" "$@" >"$json.out" 2>&1 || rc=$?
    echo "$rc"
}

# lv_failed JSON: the failed checks of the first SKU of a --json file, comma-separated.
lv_failed() {
    "$T_PY" -c '
import json, sys
v = json.load(open(sys.argv[1]))["verify"]["skus"][0]
print(",".join(v["failed"]))' "$1"
}

t_start_daemons --nodes 2
sku=$(t_sku lgverify)
t_sku_load "$sku" --total "$TOTAL" --partitions 4 --min-chunk 20 --max-chunk 200

# ---- 1. a clean sale verifies ---------------------------------------------------------------
say "sale: $REQUESTS orders of qty 1..3, 10% released, with --verify"
json="$T_DIR/run.json"
rc=0
t_loadgen --skus "$sku" --requests "$REQUESTS" --connections 16 --qty 1-3 --release-ratio 0.1 \
    --seed 11 --order-prefix "lv$$" --quiet --json "$json" \
    --verify --admin-socket "$ADMIN_SOCKET" --drain-timeout 30 >"$T_DIR/run.out" 2>&1 || rc=$?
cat "$T_DIR/run.out"
assert_eq "loadgen --verify exit code" 0 "$rc"
assert_eq "verify.ok" true "$(t_lg "$json" verify.ok)"
assert_eq "no check failed" "" "$(lv_failed "$json")"
assert_eq "the comparison was exact" true "$(t_lg "$json" verify.skus.0.exact)"
assert_eq "sold out (demand above supply)" 0 "$(t_lg "$json" verify.skus.0.left)"
units_ok=$(t_lg "$json" units_ok)
units_released=$(t_lg "$json" units_released)
actual=$((units_ok - units_released))
assert_eq "expected units = units ok - units released" "$actual" \
    "$(t_lg "$json" verify.skus.0.expected_lo)"
assert_eq "Redis net deducted (verify) = the run's net units" "$actual" \
    "$(t_lg "$json" verify.skus.0.redis_deducted)"
assert_eq "MySQL net deducted (verify) = the run's net units" "$actual" \
    "$(t_lg "$json" verify.skus.0.mysql_deducted)"
assert_eq "Redis net deducted, read from Redis itself" "$actual" "$(t_redis_sum "$sku" ded)"
assert_lt "some units were released" 0 "$units_released"

# the same check without load passes too (the baseline for step 4)
rc=$(lv_verify_only "$T_DIR/same.json" --admin-socket "$ADMIN_SOCKET" --expect-units "$actual")
assert_eq "--verify-only --expect-units $actual exit code" 0 "$rc"

# ---- 2. a wrong expectation fails ------------------------------------------------------------
rc=$(lv_verify_only "$T_DIR/plus1.json" --admin-socket "$ADMIN_SOCKET" \
    --expect-units $((actual + 1)))
cat "$T_DIR/plus1.json.out"
assert_eq "--verify-only --expect-units $((actual + 1)) exit code" "$EXIT_VERIFY_FAILED" "$rc"
assert_eq "failed checks (actual + 1)" "units_redis,units_mysql" "$(lv_failed "$T_DIR/plus1.json")"
assert_contains "stderr names the SKU and the numbers" "$(cat "$T_DIR/plus1.json.out")" \
    "verification failed for sku $sku: units_redis: Redis net deducted $actual, expected $((actual + 1))"

# ---- 3. no audit is not a pass -----------------------------------------------------------------
rc=$(lv_verify_only "$T_DIR/nosock.json" --admin-socket "$T_DIR/no-such.sock" \
    --expect-units "$actual")
assert_eq "--verify-only on a missing admin socket exit code" "$EXIT_VERIFY_FAILED" "$rc"
assert_eq "failed checks (no admin socket)" "admin" "$(lv_failed "$T_DIR/nosock.json")"

# ---- 4. MySQL broken on purpose ------------------------------------------------------------------
row=$(lv_sql "select partition_id, seq, qty from deduction_detail
              where sku_id='$sku' and qty > 0 order by partition_id, seq limit 1") ||
    fail "cannot read a detail row of $sku"
read -r d_part d_seq d_qty <<<"$row"
[ -n "${d_qty:-}" ] || fail "no deduction_detail row of $sku to delete"
lv_sql "delete from deduction_detail where sku_id='$sku' and partition_id=$d_part and seq=$d_seq" ||
    fail "cannot delete the detail row"
say "deleted deduction_detail ($sku, partition $d_part, seq $d_seq, qty $d_qty)"
rc=$(lv_verify_only "$T_DIR/broken.json" --admin-socket "$ADMIN_SOCKET" --expect-units "$actual")
cat "$T_DIR/broken.json.out"
assert_eq "--verify-only after the corruption exit code" "$EXIT_VERIFY_FAILED" "$rc"
failed=$(lv_failed "$T_DIR/broken.json")
assert_contains "the audit's invariants fail" "$failed" "invariants"
assert_contains "MySQL's units fail" "$failed" "units_mysql"
assert_eq "MySQL net deducted seen by verify" $((actual - d_qty)) \
    "$(t_lg "$T_DIR/broken.json" verify.skus.0.mysql_deducted)"
assert_eq "Redis itself still agrees with the run" "$actual" \
    "$(t_lg "$T_DIR/broken.json" verify.skus.0.redis_deducted)"

t_pass
