#!/usr/bin/env bash
# catalog_load.sh -- `sku load` goes through the catalog row in MySQL, once.
#
# DESIGN 2 and 6: the SKU's master row lives in MySQL; the scheduler writes it
# through a sync worker (insert only if absent) and loads the STORED row into
# Redis, so:
#   - loading twice with --total initialises once: the second answer says
#     created false, the pool's total and the row stay; a third load with other
#     numbers changes nothing either and says so in a note;
#   - a row inserted directly into MySQL is loaded by `stockctl sku load SKU`
#     (no --total): the pool, partitions and sale parameters are the row's,
#     and the SKU sells;
#   - a SKU MySQL does not know is refused (unknown_sku), and --total without
#     --partitions is a usage error.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

# cat_sql SQL: one statement on the harness's MariaDB, bare tab-separated output.
cat_sql() {
    timeout "$T_CMD_TIMEOUT_S" mariadb --protocol=tcp -h "${MYSQL_HOST:-127.0.0.1}" \
        -P "${MYSQL_PORT:?}" -u "${MYSQL_USER:-root}" --connect-timeout=5 -N -B \
        "${MYSQL_DB:-stock}" -e "$1"
}

t_start_daemons --nodes 2
[ -S "$T_DIR/syncd-1.ipc" ] || fail "start.sh started no sync worker (no $T_DIR/syncd-1.ipc)"

# ---- load twice with numbers ------------------------------------------------------
sku=$(t_sku catload)
out=$(t_ctl --json sku load "$sku" --total 1000 --partitions 4 --min-chunk 20 --max-chunk 200) ||
    fail "first sku load failed: $out"
assert_eq "first load: created in Redis" true "$(t_json_get created <<<"$out")"
assert_eq "first load: catalog row created" true "$(t_json_get row_created <<<"$out")"
assert_eq "MySQL row: total partitions min_chunk max_chunk" "1000 4 20 200" \
    "$(cat_sql "select total, partitions, min_chunk, max_chunk from sku where sku_id='$sku'" |
        tr '\t' ' ')"
assert_eq "Redis pool total" 1000 "$(t_redis_pool "$sku" total)"
avail0=$(t_redis_pool "$sku" avail)

out=$(t_ctl --json sku load "$sku" --total 1000 --partitions 4 --min-chunk 20 --max-chunk 200) ||
    fail "second sku load failed: $out"
assert_eq "second load: created" false "$(t_json_get created <<<"$out")"
assert_eq "second load: row created" false "$(t_json_get row_created <<<"$out")"
assert_eq "second load: no note (same numbers)" "" "$(t_json_get note <<<"$out")"

out=$(t_ctl sku load "$sku" --total 5000 --partitions 8 2>&1) || fail "third sku load failed: $out"
say "third load, other numbers: $out"
assert_contains "third load: nothing changed" "$out" "already loaded (nothing changed)"
assert_contains "third load: the note names the kept row" "$out" \
    "note: the catalog row already existed and was kept: total 1000 (asked 5000), partitions 4 (asked 8)"
assert_eq "Redis pool total after three loads" 1000 "$(t_redis_pool "$sku" total)"
assert_eq "Redis pool avail after three loads" "$avail0" "$(t_redis_pool "$sku" avail)"
assert_eq "Redis partitions after three loads" 4 "$(t_redis_pool "$sku" parts)"
assert_eq "MySQL row after three loads" "1000 4" \
    "$(cat_sql "select total, partitions from sku where sku_id='$sku'" | tr '\t' ' ')"
assert_eq "MySQL rows of the SKU" 1 "$(cat_sql "select count(*) from sku where sku_id='$sku'")"

# ---- a row made in MySQL directly ----------------------------------------------------
sku2=$(t_sku catrow)
cat_sql "insert into sku (sku_id, name, total, start_ms, per_user_limit, partitions, min_chunk,
         max_chunk) values ('$sku2', 'made by hand', 777, 0, 5, 3, 10, 50)" ||
    fail "cannot insert the row of $sku2"
out=$(t_ctl sku load "$sku2" 2>&1) || fail "sku load $sku2 (no --total) failed: $out"
assert_eq "load of a hand-made row" "sku $sku2 loaded from its catalog row: total 777, 3 partitions" \
    "$out"
assert_eq "Redis pool: total parts minc maxc pul" "777 3 10 50 5" \
    "$(t_rcli HMGET "{s:$sku2}:pool" total parts minc maxc pul | tr '\n' ' ' | sed 's/ $//')"
entry=$(t_registry_sku "$sku2")
assert_eq "registry: name from the row" "made by hand" "$(t_json_get name <<<"$entry")"
assert_eq "registry: partitions from the row" 3 \
    "$("$T_PY" -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"]))' <<<"$entry")"
out=$(t_ctl sku load "$sku2" 2>&1) || fail "second sku load $sku2 failed: $out"
assert_contains "loading the row again" "$out" "already loaded (nothing changed)"
t_deduct "$sku2" "o-$$-1" "u1" 2
t_expect "a deduction on the SKU loaded from its row" 200
t_deduct "$sku2" "o-$$-2" "u1" 4
t_expect "the row's per-user limit (5) holds" 409 user_limit

# ---- refusals --------------------------------------------------------------------------
rc=0
out=$(t_ctl sku load "$(t_sku catnone)" 2>&1) || rc=$?
assert_eq "load of a SKU MySQL does not know: exit" 1 "$rc"
assert_contains "load of a SKU MySQL does not know: error" "$out" "unknown_sku"
rc=0
out=$(t_ctl sku load "$sku" --total 10 2>&1) || rc=$?
assert_eq "--total without --partitions: usage error" 2 "$rc"

t_audit "$sku"
t_audit "$sku2"
t_pass
